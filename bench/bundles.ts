import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { PROJECT_ROOT } from '../local/runner.ts';
import { cleanUp, log, onInterrupt, readCommandLine, runMain, stats, wholeNumber } from './harness.ts';
import { markdownTable, ratio } from './table.ts';

/**
 * Each Lambda function's bundle as `serverless package` builds it: the minified
 * handler's size and its cold initialisation, measured as the time a fresh Node
 * process takes to import the handler module (module-scope code: config checked,
 * clients created), with the function's own environment from the template.
 * Given --base REF, the same is measured for that commit in the same run,
 * alternating, so the ratios hold however noisy the machine is. Given
 * --sdk-outside, the other side is the same handlers built with the AWS SDK left
 * out of the bundle and resolved from node_modules instead, as the Lambda
 * runtime's own copy would be: what bundling the SDK costs in size and saves or
 * costs in cold initialisation.
 *
 *   npm run bench:bundles -- [--base REF | --sdk-outside] [--repeat 7]
 */

const USAGE = `Usage: npm run bench:bundles -- [--base REF | --sdk-outside] [--repeat N]

  --base REF     also package this commit (a git worktree in a temporary folder) and compare
  --sdk-outside  compare with the same handlers built without the AWS SDK inside (resolved from node_modules)
  --repeat N   cold imports of every handler on each side (default 7); medians are reported`;

interface Bundle {
  size: number;
  dir: string;
  env: Record<string, string>;
}

type Template = {
  Resources: Record<
    string,
    { Type: string; Properties?: { Handler?: string; Environment?: { Variables?: Record<string, unknown> } } }
  >;
};

/** A template value as a plain string: a CloudFormation reference (a bucket, a topic) becomes a well-formed stand-in. */
const plain = (name: string, value: unknown): string =>
  typeof value === 'string'
    ? value
    : name.endsWith('_ARN')
      ? 'arn:aws:sns:us-east-1:123456789012:bench'
      : 'bench-stand-in';

/** Packages the service in `root` into `out` and unzips each function: name → its handler bundle. */
function packageService(root: string, out: string): Map<string, Bundle> {
  execFileSync('npx', ['serverless', 'package', '--stage', 'bench', '--package', out], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const template = JSON.parse(
    readFileSync(join(out, 'cloudformation-template-update-stack.json'), 'utf8'),
  ) as Template;
  const bundles = new Map<string, Bundle>();
  for (const zip of readdirSync(out).filter((f) => f.endsWith('.zip') && f !== 'kennel-backup.zip')) {
    const name = zip.replace(/\.zip$/, '');
    const dir = join(out, name);
    execFileSync('unzip', ['-q', '-o', join(out, zip), '-d', dir]);
    // serverless names a function's resource after it: planBackup → PlanBackupLambdaFunction.
    const resource = template.Resources[`${name[0]?.toUpperCase()}${name.slice(1)}LambdaFunction`];
    const variables = resource?.Properties?.Environment?.Variables ?? {};
    const env = Object.fromEntries(Object.entries(variables).map(([k, v]) => [k, plain(k, v)]));
    const handler = join(dir, handlerFile(resource?.Properties?.Handler ?? ''));
    bundles.set(name, { size: statSync(handler).size, dir: handler, env });
  }
  return bundles;
}

/**
 * Each packaged function's handler built again as serverless.yml's custom.esbuild
 * builds it, but with the AWS SDK external, beside a node_modules that holds it.
 */
async function withSdkOutside(bundles: Map<string, Bundle>, out: string): Promise<Map<string, Bundle>> {
  symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(out, 'node_modules'));
  const outside = new Map<string, Bundle>();
  for (const [name, bundle] of bundles) {
    const kebab = name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    const outfile = join(out, name, 'handler.mjs');
    await build({
      entryPoints: [join(PROJECT_ROOT, 'functions', kebab, 'handler.ts')],
      outfile,
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'node',
      target: 'node24',
      mainFields: ['module', 'main'],
      banner: {
        js: "import { createRequire as kbCreateRequire } from 'node:module'; const require = kbCreateRequire(import.meta.url);",
      },
      external: ['pg-native', '@aws-sdk/*'],
      logLevel: 'error',
    });
    outside.set(name, { size: statSync(outfile).size, dir: outfile, env: bundle.env });
  }
  return outside;
}

const handlerFile = (handler: string) => `${handler.slice(0, handler.lastIndexOf('.'))}.mjs`;

/** Milliseconds a fresh Node process spends importing the handler module, as it measures itself. */
function coldImport(bundle: Bundle): number {
  const code = `const t = performance.now(); await import(${JSON.stringify(`file://${bundle.dir}`)}); process.stdout.write(String(performance.now() - t));`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    env: { PATH: process.env.PATH ?? '', AWS_REGION: 'us-east-1', ...bundle.env },
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(`importing ${bundle.dir} failed:\n${child.stderr.slice(-2000)}`);
  return Number(child.stdout);
}

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    base: { type: 'string' },
    'sdk-outside': { type: 'boolean' },
    repeat: { type: 'string' },
  });
  if (!values) return 0;
  if (values.base && values['sdk-outside'])
    throw new Error(`Give --base or --sdk-outside, not both.\n\n${USAGE}`);
  const repeat = wholeNumber(values.repeat ?? '7', 1);
  if (repeat === undefined) throw new Error(`--repeat takes a whole number ≥ 1.\n\n${USAGE}`);
  const tmp = mkdtempSync(join(tmpdir(), 'kennel-backup-bench-bundles-'));
  const removeWorktree = async () => {
    if (values.base)
      spawnSync('git', ['worktree', 'remove', '--force', join(tmp, 'base')], { cwd: PROJECT_ROOT });
  };
  onInterrupt();
  try {
    log(`packaging the working tree …`);
    const now = packageService(PROJECT_ROOT, join(tmp, 'now'));
    let base: Map<string, Bundle> | undefined;
    if (values.base) {
      log(`packaging ${values.base} …`);
      execFileSync('git', ['worktree', 'add', '--detach', '-q', join(tmp, 'base'), values.base], {
        cwd: PROJECT_ROOT,
      });
      symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(tmp, 'base', 'node_modules'));
      base = packageService(join(tmp, 'base'), join(tmp, 'base-out'));
    } else if (values['sdk-outside']) {
      log('building the handlers with the AWS SDK outside …');
      base = await withSdkOutside(now, tmp);
    }
    const label = values.base ?? 'SDK outside';
    const names = [...now.keys()].sort();
    const times = new Map(names.map((n) => [n, { now: [] as number[], base: [] as number[] }]));
    for (let i = 0; i < repeat; i++) {
      log(`cold imports, round ${i + 1} of ${repeat} …`);
      for (const name of names) {
        const t = times.get(name);
        const b = base?.get(name);
        if (b) t?.base.push(coldImport(b));
        t?.now.push(coldImport(now.get(name) as Bundle));
      }
    }
    const kib = (bytes: number) => (bytes / 1024).toFixed(0);
    const rows = names.map((name) => {
      const n = now.get(name) as Bundle;
      const b = base?.get(name);
      const t = times.get(name) ?? { now: [], base: [] };
      const nowMs = stats(t.now);
      const cells = [
        name,
        kib(n.size),
        `${nowMs.median.toFixed(0)} (${nowMs.min.toFixed(0)}–${nowMs.max.toFixed(0)})`,
      ];
      if (!base) return cells;
      const baseMs = b ? stats(t.base) : undefined;
      return [
        name,
        b ? kib(b.size) : '—',
        kib(n.size),
        baseMs ? `${baseMs.median.toFixed(0)}` : '—',
        `${nowMs.median.toFixed(0)}`,
        baseMs ? ratio(nowMs.median / baseMs.median) : 'n/a',
      ];
    });
    const header = base
      ? ['function', `${label} KiB`, 'now KiB', `${label} import ms`, 'now import ms', `now/${label}`]
      : ['function', 'handler KiB (minified)', 'cold import ms, median (min–max)'];
    console.log(
      `Bundles and cold initialisation, ${repeat} fresh imports each; ${cpus().length} cores, load ${loadavg()[0]?.toFixed(1)}\n`,
    );
    console.log(markdownTable(header, rows));
    return 0;
  } finally {
    await cleanUp(tmp, removeWorktree);
  }
}

await runMain(main);

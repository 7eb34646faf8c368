import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOCAL_DATABASE, type LocalEnvironment } from '../local/environment.ts';
import { databaseRun } from '../shared/backup/database-plan.ts';
import { BACKUP_HOST_COMMANDS, exactPattern } from '../shared/backup/host-commands.ts';
import { excludedTablesOf, localPathOf } from '../shared/catalog/manifest-builder.ts';
import { CODECS, DEFAULT_CODEC } from '../shared/core/codecs.ts';
import { type Config, findTarget, parseConfig, type Target } from '../shared/core/config.ts';
import { renderHostCommand } from '../shared/host/scripts.ts';
import { shellQuote } from '../shared/host/shell.ts';
import {
  createPgbenchDatabase,
  hostScript,
  log,
  machine,
  machineLine,
  printResult,
  queryValue,
  readCommandLine,
  runMain,
  type Stats,
  saveResult,
  settle,
  sh,
  stats,
  wholeNumber,
  withLocalStack,
} from './harness.ts';
import { mib, ratio, table } from './table.ts';

/**
 * What the dump stage costs over the bare tool (issue 12, point 7: production is
 * read once, and the stage stays within 1.15× of `pg_dump | zstd`), side by side
 * in one run on one cluster (the local stack: PostgreSQL archiving its WAL, the
 * local S3 over TLS):
 *  - bare: `pg_dump | zstd -3 -T0 > /dev/null` of the data the kind dumps (a full
 *    leaves out the rows of EXCLUDED_TABLES, a monthly dump nothing);
 *  - ours: host/database-backup.sh as StartDump renders it for that kind, run by
 *    the local host from send to exit: the snapshot session, pg_dump, zstd, the
 *    host's copy and the upload to S3 (the AWS CLI), and its result line.
 * The sample database is measured as a full and as a monthly dump.
 * The two alternate, after an untimed warm-up of each; the ratio is taken pair by
 * pair and its median reported. The warm-up of ours runs with the AWS CLI behind
 * a shim that counts its starts. Optionally a pgbench database of several GB
 * (--pgbench-scale; 170 ≈ 2.5 GB) is measured the same way.
 *
 *   npm run bench:dump -- [--scale 20] [--pgbench-scale 170] [--repeat 3]
 */

const USAGE = `Usage: npm run bench:dump -- [--scale N] [--pgbench-scale N] [--repeat N]

  --scale N          sample data size (default 20 ≈ 310 MB; 1 for a quick smoke run)
  --pgbench-scale N  also a pgbench database of this scale (15 MB each; 170 ≈ 2.5 GB); default none
  --repeat N         timed pairs per database (default 3); medians are reported

Results: a table on stdout and JSON in bench/results/dump-<timestamp>.json.`;

const PGBENCH = 'kb_pgbench';

interface Ctx {
  environment: LocalEnvironment;
  config: Config;
  target: Target;
  tmp: string;
}

/** The kinds measured: the daily full (the log tables' rows left out) and the monthly dump of everything. */
type Kind = 'full' | 'monthly';

/** The bare tool on `database`: the data our `kind` dumps, compressed alike, written nowhere. */
function bareDump(ctx: Ctx, database: string, kind: Kind): string {
  const excluded = excludedTablesOf(ctx.config, kind)
    .map((t) => `--exclude-table-data=${shellQuote(exactPattern(t))}`)
    .join(' ');
  return `pg_dump --no-password --format=plain ${excluded} -d ${shellQuote(database)} | ${CODECS[DEFAULT_CODEC].compress} > /dev/null`;
}

/** Our dump stage of `database`, rendered for a fresh run and run on the local host; its copy removed after. */
async function ourDump(
  ctx: Ctx,
  database: string,
  kind: Kind,
  hostEnv: Record<string, string>,
): Promise<number> {
  const startedAt = new Date().toISOString();
  const executionId = `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-database-backup:bench-${Date.now()}`;
  const plan = databaseRun(ctx.config, {
    kind,
    target: ctx.target,
    database,
    executionId,
    startedAt,
    idSource: executionId,
  });
  const script = renderHostCommand(ctx.config, ctx.target, BACKUP_HOST_COMMANDS['database-backup'], {
    script: 'database-backup',
    plan,
  });
  const { ms, stdout } = await hostScript(hostEnv, ctx.target, script, {
    what: `Our dump stage of ${database}`,
    timeoutSeconds: ctx.config.HOST_COMMAND_TIMEOUT_SECONDS,
  });
  if (!/^KB-RESULT /m.test(stdout)) throw new Error(`Our dump stage of ${database} printed no result line.`);
  rmSync(localPathOf(plan), { force: true });
  return ms;
}

/**
 * The host's environment with an `aws` first on PATH that logs each start to
 * `log` and runs the real one: how many times a dump starts the AWS CLI.
 */
function countingAws(ctx: Ctx, logFile: string): Record<string, string> {
  const dir = join(ctx.tmp, 'shim');
  mkdirSync(dir, { recursive: true });
  // `command -v` waits on nothing the local S3 serves: run synchronously.
  const real = execFileSync('bash', ['-c', 'command -v aws'], {
    env: ctx.environment.hostEnv,
    encoding: 'utf8',
  }).trim();
  const shim = join(dir, 'aws');
  writeFileSync(shim, `#!/bin/bash\necho "$*" >> ${shellQuote(logFile)}\nexec ${shellQuote(real)} "$@"\n`);
  chmodSync(shim, 0o755);
  return { ...ctx.environment.hostEnv, PATH: `${dir}:${ctx.environment.hostEnv.PATH ?? ''}` };
}

interface Measured {
  database: string;
  kind: Kind;
  bytes: number;
  bare: Stats;
  ours: Stats;
  /** Ours over bare, pair by pair. */
  ratio: Stats;
  awsStarts: number;
}

async function measure(ctx: Ctx, database: string, kind: Kind, repeat: number): Promise<Measured> {
  const env = ctx.environment.hostEnv;
  const bytes = Number(
    queryValue(ctx.environment.postgres, database, 'SELECT pg_database_size(current_database())'),
  );
  log(`${database} ${kind} (${mib(bytes)} MiB): warm-up, bare and ours (counting AWS CLI starts) …`);
  await sh(bareDump(ctx, database, kind), env);
  const awsLog = join(ctx.tmp, `aws-${database}-${kind}.log`);
  await ourDump(ctx, database, kind, countingAws(ctx, awsLog));
  const awsStarts = readFileSync(awsLog, 'utf8').split('\n').filter(Boolean).length;
  const bare: number[] = [];
  const ours: number[] = [];
  for (let i = 1; i <= repeat; i += 1) {
    log(`${database} ${kind}: pair ${i} of ${repeat} …`);
    bare.push((await sh(bareDump(ctx, database, kind), env)).ms);
    ours.push(await ourDump(ctx, database, kind, env));
  }
  return {
    database,
    kind,
    bytes,
    bare: stats(bare),
    ours: stats(ours),
    ratio: stats(ours.map((o, i) => o / (bare[i] as number))),
    awsStarts,
  };
}

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    'pgbench-scale': { type: 'string' },
    repeat: { type: 'string', default: '3' },
  });
  if (!values) return 0;
  const scale = wholeNumber(values.scale, 1);
  const pgbenchScale = values['pgbench-scale'] === undefined ? 0 : wholeNumber(values['pgbench-scale'], 1);
  const repeat = wholeNumber(values.repeat, 1);
  if (scale === undefined || pgbenchScale === undefined || repeat === undefined) {
    console.error(`Bad arguments: ${JSON.stringify(values)}\n\n${USAGE}`);
    return 2;
  }
  const startedAt = new Date();
  return withLocalStack('dump', scale, async (env, tmp) => {
    if (pgbenchScale > 0) await createPgbenchDatabase(env, PGBENCH, pgbenchScale);
    settle(env.postgres, [LOCAL_DATABASE, ...(pgbenchScale > 0 ? [PGBENCH] : [])]);
    const config = parseConfig(env.functionEnv);
    const target = findTarget(config, 'local');
    if (!target) throw new Error('no local target');
    const ctx: Ctx = { environment: env, config, target, tmp };
    const measured: Measured[] = [];
    // The sample's full leaves out two thirds of it (the log tables' rows); its monthly dump is all of it.
    measured.push(await measure(ctx, LOCAL_DATABASE, 'full', repeat));
    measured.push(await measure(ctx, LOCAL_DATABASE, 'monthly', repeat));
    if (pgbenchScale > 0) measured.push(await measure(ctx, PGBENCH, 'full', repeat));

    const sec = (ms: number) => (ms / 1000).toFixed(2);
    const rows = measured.map((m) => [
      `${m.database} (${mib(m.bytes, 0)} MiB), ${m.kind}`,
      sec(m.bare.median),
      sec(m.ours.median),
      ratio(m.ratio.median),
      `${ratio(m.ratio.min)}–${ratio(m.ratio.max)}`,
      String(m.awsStarts),
    ]);
    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { scale, pgbenchScale, repeat },
      machine: machine(),
      notes: [
        "Wall clock. bare: pg_dump | zstd -3 -T0 > /dev/null of the data the kind dumps (a full leaves out the excluded tables' rows); ours: host/database-backup.sh of that kind (snapshot session, pg_dump, zstd, the host's copy, the upload to the local S3, its result line), from send to exit.",
        "The local S3 runs on the same machine: its share of the CPU is the upload's, which S3 does not take from a host in AWS.",
        'Ratios are ours over bare, pair by pair (each pair run back to back); medians, with the spread.',
      ],
      measured,
    };
    const resultFile = saveResult('dump', startedAt, result);
    printResult(
      `kennel-backup dump bench: ${repeat} pair(s) each; ${machineLine()}`,
      table(['database', 'bare s', 'ours s', 'ours / bare', 'spread', 'AWS CLI starts'], rows),
      resultFile,
    );
    return 0;
  });
}

await runMain(main);

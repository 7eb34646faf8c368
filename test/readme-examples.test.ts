import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql } from '../local/environment.ts';
import { findPostgresBinDir } from '../local/postgres.ts';
import type { ExecutionSummary } from '../local/runner.ts';
import { LOCAL_S3_CREDENTIALS } from '../local/s3.ts';
import { openLocalStack, type StackInfo } from '../local/stack.ts';
import { Catalog } from '../shared/catalog/catalog.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { parseConfig } from '../shared/core/config.ts';
import type { PrepareReport } from '../shared/host/prepare.ts';
import type { Info } from '../shared/watch/info.ts';
import { type RunState, runIn, type TestWorld } from './support/environment.ts';
import { type Finished, runProcess } from './support/process.ts';
import { bashBlocks, inlineCommands, README, readmeInputs } from './support/readme.ts';

/**
 * Every example command and console input of the README, run from the README's
 * own text (issue 14), so that none can go stale: the `npm run local -- …`
 * commands as processes, as an operator pastes them, on one local stack that
 * the README's own `npm run local -- up` starts (and its `down` and `reset`
 * end); the console inputs through the local runner with the real state
 * machines, on that same stack, in an order that lets one backup of each kind
 * feed every restore. The values the README names that the local world does not
 * have (a run id, a second, the target `primary`) are replaced by one table,
 * STAND_INS. What needs AWS is listed in PARSED_ONLY with why and checked as far
 * as it can be offline. An example in the README that no step runs and no list
 * names fails the first test.
 */

/** The README's examples: each command as written, each input as `<workflow> <json>`. */
function readmeExamples(): string[] {
  return [
    ...new Set([
      ...bashBlocks().flat(),
      ...inlineCommands(),
      ...readmeInputs().map((i) => `${i.workflow} ${i.json}`),
    ]),
  ];
}

/** What the world has that the README's examples name otherwise; filled in as the steps make it. */
const world = {
  fullRunId: '',
  applicationRunId: '',
  targetTime: '',
  /** The files a files restore set aside, under the host's restore-aside/. */
  asideFile: '',
  month: new Date().toISOString().slice(0, 7),
  stack: undefined as StackInfo | undefined,
};

/** The one mapping from the README's values to the local world's. */
const STAND_INS: { readme: string; means: string; local: () => string }[] = [
  {
    readme: '20261126T020000Z_1a2b3c4d',
    means: 'a full backup',
    local: () => world.fullRunId,
  },
  {
    readme: '20261125T031500Z_5e6f7a8b',
    means: 'an application backup',
    local: () => world.applicationRunId,
  },
  {
    readme: '2026-11-26T10:30:00Z',
    means: 'a second of the point-in-time window',
    local: () => world.targetTime,
  },
  {
    readme: '2026-11-26T11:30:00+01:00',
    means: 'the same second at +01:00',
    local: () =>
      new Date(Date.parse(world.targetTime) + 3_600_000).toISOString().replace(/\.000Z$/, '+01:00'),
  },
  { readme: '<backupDir>', means: "the host's backup directory", local: () => stack.env.paths.backupDir },
  { readme: '<file>', means: 'the files a restore set aside', local: () => world.asideFile },
  { readme: 's3://<bucket>', means: 'the bucket', local: () => `s3://${world.stack?.bucket}` },
  { readme: '"target": "primary"', means: 'the target', local: () => '"target": "local"' },
  { readme: '"confirm": "<target name>"', means: 'the target', local: () => '"confirm": "local"' },
  {
    readme: '"month": "2026-11"',
    means: 'a month with executions',
    local: () => `"month": "${world.month}"`,
  },
  { readme: '--month 2026-11', means: 'a month with executions', local: () => `--month ${world.month}` },
  {
    readme: 'DATABASE_URL=postgres://user@127.0.0.1:5432/kennel_prod',
    means: 'a database of ones own',
    local: () => `DATABASE_URL=${world.stack?.databaseUrl}`,
  },
  {
    readme: 'S3_ENDPOINT_URL=http://127.0.0.1:9000',
    means: 'an S3-compatible server (with its CA, as the README says for a private one)',
    local: () => `S3_ENDPOINT_URL=${world.stack?.s3Endpoint} AWS_CA_BUNDLE=${world.stack?.s3CaFile}`,
  },
];

const toLocal = (example: string) =>
  STAND_INS.reduce(
    (text, { readme, local }) => (text.includes(readme) ? text.replaceAll(readme, local()) : text),
    example,
  );

/**
 * The commands that cannot run here, each with why, and what is checked of it
 * instead (the CLI's argument parsing, an npm script's existence).
 */
const PARSED_ONLY: Record<string, string> = {
  'bash .ci/setup':
    'installs system packages and runs `npm ci`, which would replace the node_modules the running suite uses; CI runs it on every clean clone (.ci/run, test/unit/readme-commands.test.ts)',
  'npm test': 'the whole suite, this file included; CI runs it (.ci/run)',
  'npm run test:unit': 'the unit project of `npm test`, which CI runs',
  'npx serverless package --stage prod --region eu-west-1':
    'renders the template offline; test/template.test.ts packages the same serverless.yml twice (default and every optional param): a third packaging costs a minute of CPU in a CI that is at its limit',
  "npx serverless deploy --stage prod --region eu-west-1 --param 'database=kennel_prod' --param 'targetTagValue=db' --param 'restoreTestSubnetIds=subnet-0abc…,subnet-0def…' --param 'restoreTestSecurityGroupIds=sg-0123…' --param 'hostRoleArn=arn:aws:iam::123456789012:role/kennel-db-host' --param 'alertEmail=ops@example.com'":
    'deploys to AWS; its params are checked by the functions packaging runs (serverless/params.cjs)',
  "npx serverless deploy --config serverless-vault.yml --stage prod --param 'vaultRegion=eu-central-1' --param 'backupRegion=eu-west-1' --param 'objectLockMode=governance'":
    'deploys to AWS; its params are checked by name against serverless-vault.yml',
  "npx serverless deploy --stage prod --region eu-west-1 --param 'vaultRegion=eu-central-1' --param 'vaultKeyArn=<VaultKeyArn output of step 1>'":
    'deploys to AWS, with the output of the vault stack; its params are checked by name against serverless.yml',
  'aws sts assume-role --role-arn <KeyBreakGlassRoleArn> --role-session-name "$USER-backup-key" --serial-number arn:aws:iam::<account>:mfa/<your device> --token-code <code>':
    'STS and an MFA device: AWS only',
  'aws kms schedule-key-deletion --key-id <BackupKeyArn> --pending-window-in-days 30': 'KMS: AWS only',
  'aws kms cancel-key-deletion --key-id <BackupKeyArn>': 'KMS: AWS only',
  'aws kms enable-key --key-id <BackupKeyArn>': 'KMS: AWS only',
  "aws ssm put-parameter --type SecureString --name /kennel-backup/prod/alert-webhook-url --value 'https://hooks.slack.com/services/…'":
    'SSM Parameter Store: AWS only (the local runner reads no parameter)',
  "aws ssm put-parameter --type SecureString --name /kennel-backup/prod/restore-check-database-url --value 'postgres://kennel_backup:…@db.internal:5432'":
    'SSM Parameter Store: AWS only',
  'npm run bench': 'a benchmark: minutes of CPU by design (bench/)',
  'npm run bench:physical': 'a benchmark: minutes of CPU by design (bench/)',
  'npm run bench:bundles -- --base <commit>': 'a benchmark against another commit (bench/)',
  'npm run bench:rpo': 'a benchmark that kills the database host under load (bench/)',
};

/**
 * Examples that could run here but cost more than they prove, in a CI at its
 * time limit: each with what it would cost and what is checked instead.
 */
const TOO_COSTLY: Record<string, string> = {
  'S3_ENDPOINT_URL=http://127.0.0.1:9000 npm run local -- start database-backup':
    'a third full backup (a dump and a pgBackRest full, each verified and restore-tested: about 12 CPU-seconds and 25 s here) to show the CLI takes S3_ENDPOINT_URL and AWS_CA_BUNDLE; the step `S3_ENDPOINT_URL=…` runs `info` with that environment instead, through the same stack opening as `start`',
};

/** Inline code that names a command without being an example to run: a synopsis, a fragment, another program's. */
const NOT_EXAMPLES: Record<string, string> = {
  'aws s3 cp': "the source document's upload, in prose",
  'npm run': "npm's banner, in prose",
  'npm run local -- start': 'the synopsis Ctrl-C interrupts: the Ctrl-C step runs it',
  'npm run local -- start <workflow>': 'the synopsis of every `start` example below it',
  'npm run -s local -- …': 'the synopsis of every `-s` example',
  "npm run local -- start <workflow> --input '<json>'": 'the synopsis of every console input, each run below',
  'aws ssm put-parameter': "a fix the check names, in the check's table",
  'aws sns subscribe': "a fix the check names, in the check's table",
  'npm run build': "the kennel application's own build, an afterFilesRestore default",
  'npx kennel-backup': 'the bin, in the Layout table; its commands are examples below',
  'npx kennel-backup info --stage <stage>':
    'the synopsis of `npx kennel-backup info --stage prod`, run below',
};

/** serverless/params.cjs, whose functions osls calls at packaging with each `--param`. */
const PARAMS = createRequire(import.meta.url)('../serverless/params.cjs') as Record<
  string,
  ((context: { resolveVariable: (name: string) => Promise<unknown> }) => Promise<unknown>) | undefined
>;

/** A shell command line as argv, single and double quotes honoured ($databaseUrl stays a word). */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map(([, a, b, c]) => a ?? b ?? c ?? '');
}

/**
 * The environment the commands run with: this process's as it started, before
 * the console inputs' runs gave it the functions' (S3_ENDPOINT_URL would make
 * every command after them an "external S3" one).
 */
const CLEAN_ENV = { ...process.env };

/**
 * The `npm run local` examples run through npm itself: the first screen's, and
 * the one showing that `-s` keeps stdout to the JSON. The others run
 * package.json's `local` script directly: npm's own start is half a CPU-second
 * a command, in a CI at its limit.
 */
const VIA_NPM = new Set([
  'npm run -s local -- start database-backup',
  'npm run -s local -- executions --json',
]);
const LOCAL_SCRIPT = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> })
  .scripts.local as string;

let dataDir: string;
let stack: TestWorld;
/** The examples the steps below ran. */
const ran = new Set<string>();

/** Runs a README command as written (after STAND_INS), leading VAR=value words as its environment. */
async function command(example: string, extraEnv: Record<string, string> = {}): Promise<Finished> {
  ran.add(example);
  // The input it starts its workflow with, as the README's inputs list it.
  const started = /(?:start ([a-z-]+)|(check)) .*--input '(\{[^']*\})'/.exec(example);
  if (started) ran.add(`${started[1] ?? started[2]} ${started[3]}`);
  const argv = words(toLocal(example));
  const env: Record<string, string> = { KENNEL_BACKUP_DIR: dataDir, ...extraEnv };
  while (/^[A-Z][A-Z0-9_]*=/.test(argv[0] ?? '')) {
    const [name = '', ...value] = (argv.shift() ?? '').split('=');
    env[name] = value.join('=');
  }
  let [program = '', ...args] = argv;
  const local = /^npm run (?:-s )?local -- /.exec(argv.join(' '));
  if (local && !VIA_NPM.has(example)) {
    // package.json's `local` script, as npm runs it, without npm's own start.
    [program = '', ...args] = [...words(LOCAL_SCRIPT), ...args.slice(args.indexOf('--') + 1)];
    if (program === 'node') program = process.execPath;
  }
  return runProcess(program, args, { ...CLEAN_ENV, ...env });
}

/** Starts a README console input on its workflow in this process, on the stack's cluster and S3. */
async function consoleInput(
  workflow: string,
  json: string,
  extra: Parameters<typeof runIn>[1] = {},
): ReturnType<typeof runIn> {
  const example = `${workflow} ${json}`;
  expect(readmeExamples()).toContain(example);
  ran.add(example);
  return runIn(stack, { workflow, input: JSON.parse(toLocal(json)), ...extra });
}

/** A README console input started as consoleInput does, which must succeed. */
async function succeeded(...args: Parameters<typeof consoleInput>): ReturnType<typeof consoleInput> {
  const run = await consoleInput(...args);
  expect(run.record.status, `${args[0]} ${args[1]}: ${run.record.cause}`).toBe('SUCCEEDED');
  return run;
}

/** The execution output a `npm run local` command printed on stdout (after npm's banner without -s). */
function outputOf<T>(run: Finished): T {
  return JSON.parse(run.stdout.slice(run.stdout.search(/^[{[]/m))) as T;
}

/** The local cluster's password, which no output may show. */
const password = () => readFileSync(join(dataDir, 'postgres', 'password'), 'utf8').trim();
const sql = (database: string, query: string) => stack.sql(database, query);
const markers = (database: string) =>
  sql(database, "SELECT string_agg(name, ' ' ORDER BY at) FROM readme_marker");
const count = (database: string, table: string) => Number(sql(database, `SELECT count(*) FROM ${table}`));

describe("the README's examples", () => {
  it('are each run below, stood in for, or listed as parsed only with why; no list names one the README lost', () => {
    const examples = readmeExamples();
    expect(examples.length).toBeGreaterThan(60);
    const listed = new Set([
      ...Object.keys(PARSED_ONLY),
      ...Object.keys(TOO_COSTLY),
      ...Object.keys(NOT_EXAMPLES),
      ...RUN_BY_STEPS,
    ]);
    expect(examples.filter((e) => !listed.has(e))).toEqual([]);
    expect([...listed].filter((e) => !examples.includes(e))).toEqual([]);
    expect(STAND_INS.filter((s) => !README.includes(s.readme)).map((s) => s.readme)).toEqual([]);
  });

  it("parsed only: the npm scripts exist, the bin prints its usage, the deploy params are the templates'", async () => {
    const scripts = Object.keys(
      (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts,
    );
    for (const bench of ['bench', 'bench:physical', 'bench:bundles', 'bench:rpo', 'test:unit', 'test'])
      expect(scripts).toContain(bench);
    for (const deploy of Object.keys(PARSED_ONLY).filter((c) => c.startsWith('npx serverless deploy'))) {
      const config = /--config (\S+)/.exec(deploy)?.[1] ?? 'serverless.yml';
      const given = Object.fromEntries(
        [...deploy.matchAll(/--param '([A-Za-z]+)=([^']*)'/g)].map(([, name = '', value = '']) => [
          name,
          value,
        ]),
      );
      expect(Object.keys(given).length).toBeGreaterThan(0);
      // Each is a param of that stack (its `params.default`), as osls refuses none it does not know.
      const defaults = /^params:\n {2}default:\n([\s\S]*?)^\S/m.exec(readFileSync(config, 'utf8'))?.[1] ?? '';
      for (const name of Object.keys(given))
        expect(defaults, `${config} --param ${name}`).toMatch(new RegExp(`^ {4}${name}:`, 'm'));
      // The e-mail address is one packaging accepts (serverless/params.cjs refuses any other).
      if (given.alertEmail !== undefined)
        expect(
          await PARAMS.alertEmail?.({
            resolveVariable: async (v: string) => given[v.replace(/^param:/, '')],
          }),
        ).toBe(given.alertEmail);
    }
  });
});

/** Every example a step below runs; the first test holds it to the README. */
const RUN_BY_STEPS = [
  'npm run local -- up',
  'bash .ci/setup && npm run -s local -- start database-backup',
  'npm run -s local -- start database-backup',
  'npm run local -- start database-backup',
  'npm run local -- start database-backup --input \'{"kind": "monthly"}\'',
  'npm run local -- start database-backup --input \'{"kind": "incremental"}\'',
  'npm run local -- start database-backup --input \'{"kind": "transaction-logs"}\'',
  'npm run local -- start files-backup --input \'{"kind": "configuration"}\'',
  'npm run local -- start database-backup --input \'{"database": "kennel_prod"}\'',
  'DATABASE_URL=postgres://user@127.0.0.1:5432/kennel_prod npm run local -- start database-backup',
  'npm run -s local -- start database-backup --name nightly-2026-11-30',
  'npm run -s local -- start database-restore --input \'{"database": "kennel_prod", "targetDatabase": "kennel_from_vault", "source": "vault"}\'',
  'npm run -s local -- info',
  'npm run -s local -- info --json',
  'npx kennel-backup info --stage prod',
  'npm run -s local -- check',
  'npm run -s local -- check --input \'{"target": "local"}\' --json',
  'npx kennel-backup check --stage prod',
  'npx kennel-backup check --stage prod --target primary',
  'npm run -s local -- executions',
  'npm run -s local -- executions --json',
  'npm run local -- down',
  'npm run local -- reset',
  'psql "$databaseUrl"',
  'npm run local -- start prepare-host',
  'npm run local -- start prepare-host --input \'{"dryRun": true}\'',
  'npm run local -- start daily-verification',
  'npm run local -- start restore-drill --input \'{"pick": "latest"}\'',
  'npm run local -- start recovery-drill',
  'npm run local -- start monitoring',
  'npm run local -- report --month 2026-11',
  'zstd -dc <backupDir>/restore-aside/<file> | tar -x -C /',
  'b=s3://<bucket>',
  'for m in $(aws s3 ls "$b/database/" --recursive | awk \'/manifest\\.json$/ {print $4}\'); do',
  'aws s3 cp "$b/$m" - | jq -c \'{kind, target, database, runId, until: .window.until, verification: .verification.state, restoreTest: .verification.restoreTest.state}\'',
  'done',
  // The inputs the commands above pass.
  'database-backup {"kind": "monthly"}',
  'database-backup {"kind": "incremental"}',
  'database-backup {"kind": "transaction-logs"}',
  'files-backup {"kind": "configuration"}',
  'database-backup {"database": "kennel_prod"}',
  'prepare-host {"dryRun": true}',
  'restore-drill {"pick": "latest"}',
  'check {"target": "local"}',
  'audit-report {"month": "2026-11"}',
  // The console inputs.
  'database-restore {"database": "kennel_prod", "targetDatabase": "kennel_restored_1126"}',
  'database-restore {"database": "kennel_prod", "backup": "20261126T020000Z_1a2b3c4d", "targetDatabase": "kennel_check"}',
  'database-restore {"database": "kennel_prod", "targetDatabase": "kennel_prod", "confirm": "kennel_prod"}',
  'database-restore {"database": "kennel_prod", "targetDatabase": "kennel_copy", "missingRoles": "omit"}',
  'database-restore {"database": "kennel_prod", "targetDatabase": "kennel_from_vault", "source": "vault"}',
  'point-in-time-recovery {"database": "kennel_prod", "targetTime": "2026-11-26T10:30:00Z", "targetDatabase": "kennel_at_1030"}',
  'point-in-time-recovery {"database": "kennel_prod", "targetTime": "2026-11-26T10:30:00Z", "targetDatabase": "kennel_at_1030", "source": "vault"}',
  'point-in-time-recovery {"database": "kennel_prod", "targetTime": "2026-11-26T11:30:00+01:00", "targetDatabase": "kennel_prod", "confirm": "kennel_prod"}',
  'point-in-time-recovery {"database": "kennel_prod", "targetTime": "latest", "targetDatabase": "kennel_latest"}',
  'point-in-time-recovery {"scope": "cluster", "targetTime": "2026-11-26T10:30:00Z", "confirm": "<target name>"}',
  'files-restore {"kind": "configuration", "confirm": "configuration"}',
  'files-restore {"kind": "application", "backup": "20261125T031500Z_5e6f7a8b", "confirm": "application"}',
  'files-restore {"kind": "application", "dryRun": true}',
  'files-restore {"kind": "application", "confirm": "application", "source": "vault"}',
  'prepare-host {"target": "primary", "dryRun": true}',
  'prepare-host {"target": "primary"}',
  'audit-report {"month": "2026-11", "budgetUsd": 40}',
];

/** The README block that lists the catalog with the AWS CLI and jq, as one script. */
const CATALOG_LOOP = /```bash\n(b=s3:\/\/<bucket>[\s\S]*?)```/.exec(README)?.[1] ?? '';

describe("the README's examples, run on one local stack that its own `up` starts", () => {
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'kennel-backup-readme-'));
    // The local cluster lives inside it, and its server user must get through.
    chmodSync(dataDir, 0o711);
  });
  afterAll(async () => {
    // What a failed step left running: `down` is idempotent.
    await runProcess(process.execPath, ['local/cli.ts', 'down'], {
      ...CLEAN_ENV,
      KENNEL_BACKUP_DIR: dataDir,
    });
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('npm run local -- up: starts the stack, and prints the JSON line the README shows', async () => {
    const up = await command('npm run local -- up');
    expect(up.code, up.stderr).toBe(0);
    world.stack = JSON.parse(up.stdout.trim().split('\n').at(-1) ?? '') as StackInfo;
    const shown = JSON.parse(/`up` prints[\s\S]*?```json\n(.*)\n```/.exec(README)?.[1] ?? '') as StackInfo;
    expect(Object.keys(world.stack)).toEqual(Object.keys(shown));
    expect(world.stack).toMatchObject({
      pgData: join(dataDir, 'postgres', 'data'),
      pgpassFile: join(dataDir, 'pgpass'),
      s3CaFile: join(dataDir, 'tls', 'cert.pem'),
      bucket: shown.bucket,
      stanza: shown.stanza,
      physical: shown.physical,
      stateFile: join(dataDir, 'stack.json'),
    });
    // The URL names the password file instead of holding the password.
    expect(world.stack.databaseUrl).toMatch(
      /^postgres:\/\/kennel_admin@127\.0\.0\.1:\d+\/kennel_prod\?passfile=/,
    );
    expect(up.stdout + up.stderr).not.toContain(password());
    // This process's view of the same stack, for the console inputs and the checks below.
    const { environment } = await openLocalStack({ dataDir });
    const s3 = createS3Client(parseConfig(environment.functionEnv));
    stack = {
      env: environment,
      s3,
      catalog: new Catalog(s3, environment.bucket),
      sql: (database, query) => psql(environment.postgres, database, ['-A', '-t', '-c', query]).trim(),
      stop: () => environment.stop(),
    };
    expect(environment.vaultBucket, 'the vault of the running stack').toBe(`${shown.bucket}-vault`);

    const psqlRun = spawnSync(
      join(findPostgresBinDir(), 'psql'),
      [world.stack.databaseUrl, '-X', '-A', '-t'],
      {
        input: 'SELECT current_database()',
        encoding: 'utf8',
      },
    );
    ran.add('psql "$databaseUrl"');
    expect(psqlRun.stdout.trim(), psqlRun.stderr).toBe('kennel_prod');
  });

  it('npm run -s local -- start database-backup (the first screen): the full backup on the running stack, progress on stderr, the output on stdout, the history kept', async () => {
    const run = await command('npm run -s local -- start database-backup');
    ran.add('bash .ci/setup && npm run -s local -- start database-backup');
    ran.add('npm run local -- start database-backup');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('Using the running local stack');
    // The full backup's states, one line each as they end.
    for (const state of 'PlanBackup StartDump CheckDump VerifyArchive RestoreTest PruneBackups BackupSucceeded'.split(
      ' ',
    ))
      expect(run.stderr).toMatch(new RegExp(`✓ ${state}\\s`));
    const { runs } = outputOf<{ runs: RunState[] }>(run);
    expect(
      runs.map((r) => `${r.plan.kind} ${r.status} ${r.verification?.state} ${r.restoreTest?.state}`),
    ).toContain('full succeeded verified passed');
    const historyFile = run.stderr.match(/history: (\S+\.json)/)?.[1] ?? '';
    expect(JSON.parse(readFileSync(historyFile, 'utf8')).status).toBe('SUCCEEDED');
  }, 300_000);

  it.each([
    ['npm run local -- start database-backup --input \'{"kind": "monthly"}\'', 'monthly'],
    ['npm run local -- start database-backup --input \'{"database": "kennel_prod"}\'', 'full'],
    ['npm run local -- start files-backup --input \'{"kind": "configuration"}\'', 'configuration'],
    ['npm run local -- start database-backup --input \'{"kind": "incremental"}\'', 'incremental'],
  ])(
    '%s: SUCCEEDED, its run verified',
    async (example, kind) => {
      const run = await command(example);
      expect(run.code, run.stderr).toBe(0);
      const { runs } = outputOf<{ runs: RunState[] }>(run);
      expect(runs.length).toBeGreaterThan(0);
      expect(runs.map((r) => r.status)).not.toContain('failed');
      expect(runs.map((r) => r.plan.kind)).toContain(kind);
    },
    300_000,
  );

  it('files-backup with the kinds its comment names (application, static): SUCCEEDED', async () => {
    for (const kind of ['application', 'static']) {
      const run = await runIn(stack, { workflow: 'files-backup', input: { kind } });
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    }
    const application = await stack.catalog.list('application', 'local', null);
    world.applicationRunId = application.at(-1)?.runId ?? '';
    world.fullRunId = (await stack.catalog.list('full', 'local', 'kennel_prod')).at(-1)?.runId ?? '';
    expect(world.applicationRunId).toMatch(/^\d{8}T\d{6}Z_[0-9a-f]{8}$/);
    expect(world.fullRunId).toMatch(/^\d{8}T\d{6}Z_[0-9a-f]{8}$/);
  }, 300_000);

  it('DATABASE_URL=… npm run local -- start database-backup: that database, by the logical dump alone, no password shown', async () => {
    const run = await command(
      'DATABASE_URL=postgres://user@127.0.0.1:5432/kennel_prod npm run local -- start database-backup',
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(
      `PostgreSQL 127.0.0.1:${new URL(world.stack?.databaseUrl ?? '').port}/kennel_prod`,
    );
    // Without PGDATA the server is not one pgBackRest can reach: the full backup is its logical dump alone.
    expect(run.stderr).toContain('The full backup runs its logical dump only.');
    expect(run.stdout + run.stderr).not.toContain(password());
    const { runs } = outputOf<{ runs: RunState[] }>(run);
    expect(runs.map((r) => `${r.plan.kind} ${r.status}`)).toEqual([
      'full succeeded',
      // pgBackRest's run: skipped, as the target has no pgbackrest settings without PGDATA.
      'full skipped',
    ]);
    // Every earlier full of kennel_prod is within its retention: pruning keeps them all.
    expect(runs[0]?.prune?.kept).toBe(3);
  }, 300_000);

  it('S3_ENDPOINT_URL=… (too costly to start a backup with, see TOO_COSTLY): the CLI reads that S3 server, not one it starts', async () => {
    const example = 'S3_ENDPOINT_URL=http://127.0.0.1:9000 npm run local -- start database-backup';
    // The same environment with `info`: the catalog of the bucket on that server, found there.
    const run = await command(example.replace('start database-backup', 'info --json'));
    ran.delete(example.replace('start database-backup', 'info --json'));
    expect(run.code, run.stderr).toBe(0);
    expect((JSON.parse(run.stdout) as Info).catalogs.find((c) => c.kind === 'full')?.backups).toHaveLength(3);
  });

  it('npm run -s local -- start database-backup --name nightly-2026-11-30: the history under that name; the name refused a second time', async () => {
    const run = await command('npm run -s local -- start database-backup --name nightly-2026-11-30');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(
      join(dataDir, 'executions', 'database-backup.SUCCEEDED.nightly-2026-11-30.json'),
    );
    const again = await command('npm run -s local -- start database-backup --name nightly-2026-11-30');
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('An execution of database-backup named nightly-2026-11-30 exists already');
    expect(again.stderr).toContain('Nothing was started.');
    expect(again.stderr).not.toContain('Starting local services');
  }, 300_000);

  it('a second of the point-in-time window, then npm run local -- start database-backup --input \'{"kind": "transaction-logs"}\' archives past it', async () => {
    sql(
      'kennel_prod',
      "CREATE TABLE readme_marker (name text, at timestamptz DEFAULT clock_timestamp()); INSERT INTO readme_marker (name) VALUES ('before')",
    );
    // The next whole second: every commit so far is before it.
    world.targetTime = sql(
      'postgres',
      `SELECT to_char((date_trunc('second', clock_timestamp()) + interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`,
    );
    while (Date.now() < Date.parse(world.targetTime) + 200) await new Promise((r) => setTimeout(r, 100));
    sql('kennel_prod', "INSERT INTO readme_marker (name) VALUES ('after')");
    const run = await command(
      'npm run local -- start database-backup --input \'{"kind": "transaction-logs"}\'',
    );
    expect(run.code, run.stderr).toBe(0);
    expect(outputOf<{ runs: RunState[] }>(run).runs.map((r) => `${r.plan.kind} ${r.status}`)).toEqual([
      'transaction-logs succeeded',
    ]);
  }, 300_000);

  it('npm run -s local -- info (and --json): every kind, the WAL range', async () => {
    const table = await command('npm run -s local -- info');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^TARGET {2}DATABASE {5}KIND/);
    expect(table.stdout).toMatch(/local\s+kennel_prod\s+full\s+\S+Z\s+\S+ [kM]B\s+STANDARD\s+restore-tested/);
    expect(table.stdout).toMatch(
      /local\s+kennel_prod\s+monthly\s+\S+Z\s+\S+ [kM]B\s+STANDARD\s+restore-tested/,
    );
    expect(table.stdout).toMatch(
      /local\s+\(cluster\)\s+physical\s+\S+Z\s+\S+ MB\s+STANDARD\s+restore-tested/,
    );
    expect(table.stdout).toMatch(/WAL of local: recoverable from \S+Z to \S+Z \(\d+ segments; no gap\)/);
    const json = await command('npm run -s local -- info --json');
    const read = JSON.parse(json.stdout) as Info;
    // The first screen's, --database, DATABASE_URL and --name runs: four dumps.
    expect(read.catalogs.find((c) => c.kind === 'full')?.backups).toHaveLength(4);
  }, 120_000);

  it('npm run -s local -- check (and with --input and --json): a line per need, each OK', async () => {
    const run = await command('npm run -s local -- check');
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(
      lines.every((l) => l.startsWith('OK   ')),
      run.stdout,
    ).toBe(true);
    expect(run.stdout).toContain(
      'OK   local      pgbackrest       pgbackrest.conf is the rendered one and pgbackrest check passed',
    );
    expect(run.stderr).toContain('✓ ReportCheck');
    const json = await command('npm run -s local -- check --input \'{"target": "local"}\' --json');
    expect(json.code, json.stderr).toBe(0);
    const { summary } = JSON.parse(json.stdout) as { summary: string };
    expect(
      summary.split('\n').every((l) => l.startsWith('OK   ')),
      summary,
    ).toBe(true);
  }, 180_000);

  it('point-in-time-recovery, beside production: to the second the README names, from the backup bucket and from the vault, and to the latest', async () => {
    await succeeded(
      'point-in-time-recovery',
      '{"database": "kennel_prod", "targetTime": "2026-11-26T10:30:00Z", "targetDatabase": "kennel_at_1030"}',
    );
    expect(markers('kennel_at_1030')).toBe('before');
    // The same second from the vault's copy of the repository, into the same name.
    sql('postgres', 'DROP DATABASE kennel_at_1030');
    const fromVault = await succeeded(
      'point-in-time-recovery',
      '{"database": "kennel_prod", "targetTime": "2026-11-26T10:30:00Z", "targetDatabase": "kennel_at_1030", "source": "vault"}',
    );
    expect((fromVault.record.output as { source?: string }).source).toBe('vault');
    expect(markers('kennel_at_1030')).toBe('before');
    await succeeded(
      'point-in-time-recovery',
      '{"database": "kennel_prod", "targetTime": "latest", "targetDatabase": "kennel_latest"}',
    );
    expect(markers('kennel_latest')).toBe('before after');
    expect(markers('kennel_prod')).toBe('before after');
  }, 900_000);

  it('database-restore, its console inputs: copies beside production (latest, a given backup, roles omitted, from the vault), then production replaced', async () => {
    const rows = count('kennel_prod', 'customers');
    for (const [json, database] of [
      ['{"database": "kennel_prod", "targetDatabase": "kennel_restored_1126"}', 'kennel_restored_1126'],
      [
        '{"database": "kennel_prod", "backup": "20261126T020000Z_1a2b3c4d", "targetDatabase": "kennel_check"}',
        'kennel_check',
      ],
      ['{"database": "kennel_prod", "targetDatabase": "kennel_copy", "missingRoles": "omit"}', 'kennel_copy'],
    ] as const) {
      await succeeded('database-restore', json);
      expect(count(database, 'customers'), database).toBe(rows);
      expect(readFileSync(stack.env.paths.applicationState, 'utf8').trim()).toBe('running');
    }
    // From the vault as the README's vault section starts it: through the CLI, on the running
    // stack, whose local S3 replicates to the vault; the bytes are read there, not on the host.
    const vault = await command(
      `npm run -s local -- start database-restore --input '{"database": "kennel_prod", "targetDatabase": "kennel_from_vault", "source": "vault"}'`,
    );
    expect(vault.code, vault.stderr).toBe(0);
    expect(outputOf<{ readFrom: string }>(vault).readFrom).toBe('vault');
    expect(count('kennel_from_vault', 'customers')).toBe(rows);

    const over = await succeeded(
      'database-restore',
      '{"database": "kennel_prod", "targetDatabase": "kennel_prod", "confirm": "kennel_prod"}',
    );
    const { replacedDatabase } = over.record.output as { replacedDatabase: string };
    // The marker table was made after the backup: the replaced database has it, production no longer.
    expect(markers(replacedDatabase)).toBe('before after');
    expect(sql('kennel_prod', "SELECT to_regclass('readme_marker') IS NULL")).toBe('t');
    expect(count('kennel_prod', 'customers')).toBe(rows);
    expect(readFileSync(stack.env.paths.applicationState, 'utf8').trim()).toBe('running');
  }, 900_000);

  it('point-in-time-recovery over production, at the same second given at +01:00', async () => {
    await succeeded(
      'point-in-time-recovery',
      '{"database": "kennel_prod", "targetTime": "2026-11-26T11:30:00+01:00", "targetDatabase": "kennel_prod", "confirm": "kennel_prod"}',
    );
    expect(markers('kennel_prod')).toBe('before');
    expect(readFileSync(stack.env.paths.applicationState, 'utf8').trim()).toBe('running');
  }, 900_000);

  it("files-restore, its console inputs: a dry run changes nothing; configuration, a given application tarball and the vault's put the files back", async () => {
    const env = join(stack.env.paths.hostRoot, 'opt/kennel/.env.production');
    const backedUp = readFileSync(env, 'utf8');
    writeFileSync(env, 'NODE_ENV=changed-after-the-backup\n');
    await succeeded('files-restore', '{"kind": "application", "dryRun": true}');
    expect(readFileSync(env, 'utf8')).toBe('NODE_ENV=changed-after-the-backup\n');

    await succeeded('files-restore', '{"kind": "configuration", "confirm": "configuration"}');
    expect(readFileSync(env, 'utf8')).toBe(backedUp);
    expect(readFileSync(stack.env.paths.afterRestoreLog, 'utf8')).toContain('configuration restored: reload');

    // The README's undo: the files set aside before the restore, back in place.
    const aside = readdirSync(join(stack.env.paths.backupDir, 'restore-aside')).find((f) =>
      f.startsWith('local_configuration_before_'),
    );
    expect(aside).toBeDefined();
    world.asideFile = aside ?? '';
    const undo = spawnSync(
      'bash',
      ['-c', toLocal('zstd -dc <backupDir>/restore-aside/<file> | tar -x -C /')],
      { encoding: 'utf8' },
    );
    ran.add('zstd -dc <backupDir>/restore-aside/<file> | tar -x -C /');
    expect(undo.status, undo.stderr).toBe(0);
    expect(readFileSync(env, 'utf8')).toBe('NODE_ENV=changed-after-the-backup\n');

    for (const json of [
      '{"kind": "application", "backup": "20261125T031500Z_5e6f7a8b", "confirm": "application"}',
      '{"kind": "application", "confirm": "application", "source": "vault"}',
    ]) {
      await succeeded('files-restore', json);
    }
    expect(readFileSync(stack.env.paths.afterRestoreLog, 'utf8')).toContain('application restored');
  }, 600_000);

  it('prepare-host: its console inputs and npm run local -- start prepare-host (with and without a dry run) find the stack prepared and change nothing', async () => {
    for (const json of ['{"target": "primary", "dryRun": true}', '{"target": "primary"}']) {
      const run = await succeeded('prepare-host', json);
      const report = run.record.output as PrepareReport;
      expect(report.targets.map((t) => t.result.settings.changed)).toEqual([[]]);
    }
    for (const example of [
      'npm run local -- start prepare-host',
      'npm run local -- start prepare-host --input \'{"dryRun": true}\'',
    ]) {
      const run = await command(example);
      expect(run.code, run.stderr).toBe(0);
      expect(outputOf<PrepareReport>(run).restartNeeded).toBe(false);
    }
  }, 300_000);

  it.each([
    'npm run local -- start daily-verification',
    'npm run local -- start restore-drill --input \'{"pick": "latest"}\'',
    'npm run local -- start recovery-drill',
    'npm run local -- start monitoring',
  ])(
    '%s: SUCCEEDED',
    async (example) => {
      const run = await command(example);
      expect(run.code, run.stderr.slice(-3000)).toBe(0);
    },
    600_000,
  );

  it("npm run local -- report --month 2026-11, and the console input with a budget: the month's report, its files copied", async () => {
    const run = await command('npm run local -- report --month 2026-11');
    ran.add('audit-report {"month": "2026-11"}');
    expect(run.code, run.stderr).toBe(0);
    for (const ext of ['json', 'md', 'html'])
      expect(existsSync(join(dataDir, 'reports', `${world.month}.${ext}`)), ext).toBe(true);
    const budget = await succeeded('audit-report', '{"month": "2026-11", "budgetUsd": 40}');
    expect(JSON.stringify(budget.record.output)).toContain('40');
  }, 300_000);

  it('Ctrl-C during npm run local -- start: aborts a restore over production after the application stopped, cleans it up as restore-cleanup does in AWS, and leaves no host script or temporary file', async () => {
    ran.add('npm run local -- start');
    const tmp = mkdtempSync(join(tmpdir(), 'kennel-backup-ctrl-c-'));
    const applicationState = stack.env.paths.applicationState;
    const input = { database: 'kennel_prod', targetDatabase: 'kennel_prod', confirm: 'kennel_prod' };
    // In a process group of its own, which gets the SIGINT, as a terminal's foreground job does.
    const child = spawn(
      process.execPath,
      ['local/cli.ts', 'start', 'database-restore', '--input', JSON.stringify(input)],
      {
        env: { ...CLEAN_ENV, KENNEL_BACKUP_DIR: dataDir, TMPDIR: tmp },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    child.stdout?.resume();
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      for (let i = 0; i < 6000; i += 1) {
        if (readFileSync(applicationState, 'utf8').trim() === 'stopped') break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(readFileSync(applicationState, 'utf8').trim(), stderr).toBe('stopped');
      process.kill(-(child.pid as number), 'SIGINT');
      expect(await exited, stderr).toBe(130);
    } finally {
      if (child.exitCode === null) process.kill(-(child.pid as number), 'SIGKILL');
    }
    expect(stderr).toContain('Aborting the execution');
    expect(stderr).toMatch(/Then restore-cleanup: SUCCEEDED/);
    expect(readFileSync(applicationState, 'utf8').trim()).toBe('running');
    // Nothing of the run is left: its host scripts and their files; the running stack still runs.
    const scripts = readdirSync('/proc')
      .filter((pid) => /^\d+$/.test(pid))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(tmp);
        } catch {
          return false;
        }
      });
    expect(scripts).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
    rmSync(tmp, { recursive: true, force: true });
    expect(sql('postgres', 'SELECT 1')).toBe('1');

    // The clean-up's alert says what is left, and so it is.
    const alerts = readFileSync(stack.env.paths.alertsFile, 'utf8').trim().split('\n');
    const alert = (JSON.parse(alerts.at(-1) ?? '') as { text: string }).text;
    expect(alert).toContain('restore-cleanup SUCCEEDED');
    expect(alert).toMatch(/The database-restore execution \S+ was aborted in /);
    expect(alert).toContain('The application was stopped for the restore and has been started again.');
    const left = sql(
      'postgres',
      "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'kb_%'",
    );
    expect(left).not.toMatch(/kb_restoring_/);
    if (/was not replaced/.test(alert))
      expect(alert).toMatch(/The staging database kb_restoring_\S+ was dropped\./);
    else expect(alert).toMatch(/the database it replaced is kept as kb_replaced_/);
  }, 300_000);

  it('npm run -s local -- executions (and --json): newest first, by workflow, name and status; stdout the JSON alone', async () => {
    const table = await command('npm run -s local -- executions');
    expect(table.code, table.stderr).toBe(0);
    const [header, newest, ...rest] = table.stdout.trim().split('\n');
    expect(header).toMatch(/^WORKFLOW\s+NAME\s+STATUS\s+STARTED\s+DURATION$/);
    expect(newest).toMatch(/^restore-cleanup\s+\S+\s+SUCCEEDED\s+\S+Z\s+\d+ s$/);
    expect(rest.some((r) => /^database-backup\s+nightly-2026-11-30\s+SUCCEEDED\s/.test(r))).toBe(true);
    const json = await command('npm run -s local -- executions --json');
    expect(json.code, json.stderr).toBe(0);
    const list = JSON.parse(json.stdout) as ExecutionSummary[];
    expect(list).toHaveLength(rest.length + 1);
    expect(basename(list[0]?.historyFile ?? '')).toMatch(/^restore-cleanup\.SUCCEEDED\./);
    // Every execution the examples started succeeded, but the one Ctrl-C aborted.
    expect(list.filter((e) => e.status !== 'SUCCEEDED').map((e) => `${e.workflow} ${e.status}`)).toEqual([
      'database-restore ABORTED',
    ]);
  });

  it('the catalog listed with the AWS CLI and jq, as the README gives it for the local stack', async () => {
    const s = world.stack as StackInfo;
    const script = toLocal(CATALOG_LOOP);
    for (const line of CATALOG_LOOP.split('\n').filter((l) => l.trim() && !l.trimStart().startsWith('#')))
      ran.add(
        line
          .replace(/\s+#\s.*$/, '')
          .replace(/\s+/g, ' ')
          .trim(),
      );
    const run = await runProcess('bash', ['-c', script], {
      ...CLEAN_ENV,
      // The README's comment: the stack of `npm run local -- up`.
      AWS_ENDPOINT_URL: s.s3Endpoint,
      AWS_CA_BUNDLE: s.s3CaFile,
      ...LOCAL_S3_CREDENTIALS,
      AWS_DEFAULT_REGION: 'us-east-1',
    });
    expect(run.code, run.stderr).toBe(0);
    const rows = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, string>);
    expect(rows.filter((r) => r.kind === 'full')).toHaveLength(4);
    expect(rows.find((r) => r.runId === world.fullRunId)).toMatchObject({
      kind: 'full',
      target: 'local',
      database: 'kennel_prod',
      verification: 'verified',
      restoreTest: 'passed',
    });
  }, 120_000);

  it.each([
    'npx kennel-backup info --stage prod',
    'npx kennel-backup check --stage prod',
    'npx kennel-backup check --stage prod --target primary',
  ])(
    '%s: its arguments parse, and it gets as far as its first AWS call (here to a port nothing answers on)',
    async (example) => {
      const run = await command(example, {
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
        AWS_ACCESS_KEY_ID: 'not-an-account',
        AWS_SECRET_ACCESS_KEY: 'not-an-account',
        AWS_MAX_ATTEMPTS: '1',
        npm_config_offline: 'true',
      });
      // Exit 2 and the usage would be a refused command line.
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toContain('kennel-backup: connect ECONNREFUSED 127.0.0.1:9');
      expect(run.stderr).not.toContain('Usage:');
    },
    60_000,
  );

  it('point-in-time-recovery of the whole cluster (last: it rewinds every database): back to the second, and the full backup after it asked for', async () => {
    const started: { workflow: string; input: unknown }[] = [];
    const run = await consoleInput(
      'point-in-time-recovery',
      '{"scope": "cluster", "targetTime": "2026-11-26T10:30:00Z", "confirm": "<target name>"}',
      {
        // The full backup it starts is the steps' above: taken, not run again.
        startExecution: async (request) => {
          started.push(request);
        },
      },
    );
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(started).toEqual([{ workflow: 'database-backup', input: { kind: 'full' } }]);
    expect(markers('kennel_prod')).toBe('before');
    // The databases made after that second are gone with everything else written since.
    expect(
      sql(
        'postgres',
        "SELECT count(*) FROM pg_database WHERE datname IN ('kennel_at_1030', 'kennel_latest', 'kennel_copy')",
      ),
    ).toBe('0');
    expect(sql('postgres', 'SELECT pg_is_in_recovery()')).toBe('f');
  }, 900_000);

  it('npm run local -- down (twice: safe to repeat), up again (the same cluster and S3 data), reset (all deleted)', async () => {
    const s = world.stack as StackInfo;
    const { s3 } = JSON.parse(readFileSync(s.stateFile, 'utf8')) as { s3: { pid: number } };
    const down = await command('npm run local -- down');
    expect(down.code, down.stderr).toBe(0);
    expect(down.stderr).toContain(`Stopped PostgreSQL and the local S3 (pid ${s3.pid}).`);
    expect(existsSync(`/proc/${s3.pid}/cmdline`) && readFileSync(`/proc/${s3.pid}/cmdline`).length > 0).toBe(
      false,
    );
    expect((await command('npm run local -- down')).stderr).toContain('Nothing was running.');

    const up = await command('npm run local -- up');
    expect(up.code, up.stderr).toBe(0);
    const again = JSON.parse(up.stdout.trim().split('\n').at(-1) ?? '') as StackInfo;
    expect(again.pgData).toBe(s.pgData);
    const kept = spawnSync(
      join(findPostgresBinDir(), 'psql'),
      [again.databaseUrl, '-X', '-A', '-t', '-c', 'SELECT name FROM readme_marker'],
      { encoding: 'utf8' },
    );
    expect(kept.stdout.trim(), kept.stderr).toBe('before');
    const info = await command('npm run -s local -- info --json');
    expect((JSON.parse(info.stdout) as Info).catalogs.find((c) => c.kind === 'full')?.backups).toHaveLength(
      4,
    );

    const reset = await command('npm run local -- reset');
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stderr).toContain(`deleted the local state in ${dataDir}`);
    expect(existsSync(dataDir)).toBe(false);
  }, 300_000);

  it('ran every example the first test says a step runs', () => {
    expect(RUN_BY_STEPS.filter((e) => !ran.has(e))).toEqual([]);
  });
});

import { chmodSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LOCAL_DATABASE, type LocalEnvironment, psql, startLocalEnvironment } from '../local/environment.ts';
import { localHost } from '../local/host.ts';
import { type ExecutionRecord, PROJECT_ROOT, runWorkflow } from '../local/runner.ts';
import { planSchema } from '../shared/backup/database-plan.ts';
import { BACKUP_HOST_COMMANDS } from '../shared/backup/host-commands.ts';
import { Catalog } from '../shared/catalog/catalog.ts';
import type { DatabaseKind } from '../shared/catalog/keys.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { CODECS } from '../shared/core/codecs.ts';
import { type Config, parseConfig, type Target } from '../shared/core/config.ts';
import { qualifiedName } from '../shared/core/identifiers.ts';
import { renderHostCommand } from '../shared/host/scripts.ts';
import {
  checkInterrupted,
  cleanUp,
  importHandlers,
  log,
  onInterrupt,
  queryValue,
  readCommandLine,
  rowCounts,
  runMain,
  type Stats,
  sh,
  span,
  stats,
  stopOnce,
  wholeNumber,
} from './harness.ts';
import { markdownTable, mib, ratio } from './table.ts';

/**
 * How long a restore takes, in one run on one database (local host, local S3):
 *  1. the same full backup restored three ways, each into a new database that is
 *     checked row for row against the manifest and dropped again:
 *     (a) the source document's `gunzip -c archive.sql.gz | psql` (after its
 *         CREATE DATABASE), from the project's zstd archive recompressed to gzip once;
 *     (b) our host script alone (host/restore-archive.sh as the restore test renders
 *         it: sha256 check, createdb, `zstd -dc | psql --single-transaction`);
 *     (c) the whole database-restore workflow (plan, restore into staging, row-count
 *         check, swap), with its own totalSeconds and stages;
 * Point-in-time recovery is pgBackRest's (the point-in-time-recovery workflow), not
 * a chain of dumps: its figures belong with the physical bench.
 * The machine is small and noisy: the ratios and medians, measured side by side,
 * are the result.
 *
 *   npm run bench:restore -- [--scale 20] [--repeat 3]
 */

const USAGE = `Usage: npm run bench:restore -- [--scale N] [--repeat N] [--wait-ms MS]

  --scale N      sample data size (default 20 ≈ 310 MB database; 2 for a quick run)
  --repeat N     runs of every timed restore (default 3); medians are reported
  --wait-ms MS   every Wait state of the workflows, locally (default 50: the polling granularity)

Results: a Markdown table on stdout and JSON in .local/bench/restore.json.`;

const DATABASE = LOCAL_DATABASE;
const RESULT_FILE = join(PROJECT_ROOT, '.local', 'bench', 'restore.json');

// ---------------------------------------------------------------------------
// The local world: the database, the catalog, workflows.

interface Context {
  env: LocalEnvironment;
  config: Config;
  target: Target;
  catalog: Catalog;
  waitMs: number;
}

const sql = (ctx: Context, database: string, query: string) => queryValue(ctx.env.postgres, database, query);

const dropDatabase = (ctx: Context, name: string) =>
  psql(ctx.env.postgres, 'postgres', ['-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]);

/** Fails loudly unless every table has exactly the rows expected. */
function expectRows(label: string, actual: Record<string, number>, expected: Record<string, number>): void {
  const wrong = Object.entries(expected).filter(([table, n]) => actual[table] !== n);
  if (wrong.length > 0) {
    const detail = wrong.map(([t, n]) => `${t}: ${actual[t] ?? 'absent'}, expected ${n}`).join('; ');
    throw new Error(`${label}: the restored database is wrong: ${detail}.`);
  }
}

/** Runs a workflow to its end; anything but SUCCEEDED fails the benchmark. */
async function runToSuccess(
  ctx: Context,
  workflow: string,
  input: Record<string, unknown>,
  label: string,
): Promise<{ ms: number; record: ExecutionRecord }> {
  checkInterrupted();
  const started = performance.now();
  const record = await runWorkflow(
    { workflow, input, historyDir: ctx.env.paths.historyDir, waitMs: ctx.waitMs },
    {
      host: localHost(ctx.env.hostEnv),
      databaseUrl: ctx.env.postgres.url,
      alertsFile: ctx.env.paths.alertsFile,
      // The first line of each alert (a restore's summary) is enough in the progress log.
      print: (text) => log(`alert: ${text.trim().split('\n')[0] ?? ''}`),
    },
  );
  const ms = performance.now() - started;
  if (record.status !== 'SUCCEEDED')
    throw new Error(`${label}: ${workflow} ended ${record.status}: ${record.error}: ${record.cause}`);
  return { ms, record };
}

/** One state's wall time in an execution, from its first entry to its last exit. */
const stateMs = (record: ExecutionRecord, state: string) => span(record.events, state, state) ?? Number.NaN;

/** A backup through the database-backup workflow; its manifest must be in the catalog, verified. */
async function backup(ctx: Context, kind: DatabaseKind): Promise<DatabaseManifest> {
  log(`${kind} backup …`);
  const { record } = await runToSuccess(ctx, 'database-backup', { kind }, `${kind} backup`);
  const manifest = (await ctx.catalog.list(kind, ctx.target.name, DATABASE)).find(
    (m) => m.executionId === record.executionArn,
  );
  if (!manifest) throw new Error(`No ${kind} manifest in the catalog for ${record.executionArn}.`);
  if (manifest.verification.state !== 'verified')
    throw new Error(`The ${kind} backup ${manifest.archive.key} is ${manifest.verification.state}.`);
  return manifest;
}

interface RestoreOutput {
  from: unknown[];
  totalSeconds: number;
  stages: { stage: string; seconds: number | null }[];
}

interface WorkflowRestore {
  wallMs: number;
  totalSeconds: number;
  planMs: number;
  archives: number;
  stages: Record<string, number>;
}

async function restoreWorkflow(
  ctx: Context,
  workflow: 'database-restore' | 'point-in-time-recovery',
  input: Record<string, unknown>,
  label: string,
): Promise<WorkflowRestore> {
  const { ms, record } = await runToSuccess(ctx, workflow, { database: DATABASE, ...input }, label);
  const output = record.output as RestoreOutput;
  return {
    wallMs: ms,
    totalSeconds: output.totalSeconds,
    planMs: stateMs(record, 'PlanRestore'),
    archives: output.from.length,
    stages: Object.fromEntries(output.stages.map((s) => [s.stage, s.seconds ?? Number.NaN])),
  };
}

// ---------------------------------------------------------------------------
// 1. One full backup, restored three ways.

type Method = 'source' | 'script' | 'workflow';

const METHODS: Record<Method, string> = {
  source: '(a) source: createdb; gunzip -c | psql',
  script: '(b) host/restore-archive.sh (sha256, createdb, zstd -dc | psql --single-transaction)',
  workflow: '(c) database-restore workflow, wall clock',
};

interface FullRestores {
  ms: Record<Method, number[]>;
  workflow: WorkflowRestore[];
}

/** The restore test's rendering of host/restore-archive.sh, into `into`, from the full backup's archive. */
function restoreScript(ctx: Context, full: DatabaseManifest, into: string): string {
  const plan = planSchema.parse({
    kind: full.kind,
    since: full.window.since,
    target: full.target,
    database: full.database,
    runId: full.runId,
    executionId: full.executionId,
    startedAt: full.startedAt,
    bucket: ctx.env.bucket,
    archiveKey: full.archive.key,
    manifestKey: `${full.archive.key}.manifest.json`,
    fileName: basename(full.archive.localPath),
    localDir: dirname(full.archive.localPath),
    codec: full.archive.compression,
    scratchDatabase: into,
  });
  return renderHostCommand(ctx.config, ctx.target, BACKUP_HOST_COMMANDS['restore-test'], {
    script: 'restore-test',
    plan,
    sha256: full.archive.sha256,
  });
}

async function restoreFullThreeWays(
  ctx: Context,
  full: DatabaseManifest,
  gzipPath: string,
  repeat: number,
): Promise<FullRestores> {
  const result: FullRestores = { ms: { source: [], script: [], workflow: [] }, workflow: [] };
  const restore: Record<Method, (into: string) => Promise<number>> = {
    source: async (into) => {
      const { ms, stderr } = await sh(
        'createdb "$INTO"\ngunzip -c "$ARCHIVE" | psql -X -d "$INTO" >/dev/null',
        {
          ...ctx.env.hostEnv,
          INTO: into,
          ARCHIVE: gzipPath,
        },
      );
      // Without ON_ERROR_STOP psql carries on after an error: it must still fail the measurement.
      if (/ERROR:/.test(stderr)) throw new Error(`(a) reported errors:\n${stderr.slice(-2000)}`);
      return ms;
    },
    script: async (into) => (await sh(restoreScript(ctx, full, into), ctx.env.hostEnv)).ms,
    workflow: async (into) => {
      const run = await restoreWorkflow(
        ctx,
        'database-restore',
        { targetDatabase: into, backup: full.runId },
        '(c) database-restore',
      );
      if (run.archives !== 1)
        throw new Error(`(c) applied ${run.archives} archives, not the one full backup.`);
      result.workflow.push(run);
      return run.wallMs;
    },
  };
  const expected = Object.fromEntries(full.tables.map((t) => [qualifiedName(t), t.rows]));
  const order: Method[] = ['source', 'script', 'workflow'];
  for (let round = 1; round <= repeat; round += 1) {
    // Each method goes first in some round: the first restore after a pause pays for cold caches.
    const rotated = [...order.slice((round - 1) % 3), ...order.slice(0, (round - 1) % 3)];
    for (const method of rotated) {
      const into = `bench_${method}_${round}`;
      log(`round ${round}/${repeat}: ${METHODS[method]} …`);
      try {
        result.ms[method].push(await restore[method](into));
        expectRows(METHODS[method], rowCounts(ctx.env.postgres, into, Object.keys(expected)), expected);
      } finally {
        dropDatabase(ctx, into);
      }
    }
  }
  return result;
}

// ---------------------------------------------------------------------------
// Output.

const inMiB = (bytes: number) => `${mib(bytes)} MiB`;
const seconds = (s: number) => (Number.isFinite(s) ? s.toFixed(2) : 'n/a');
/** A median in seconds, and with several runs their range. */
const spread = (s: Stats, unit: 'ms' | 's') => {
  const k = unit === 'ms' ? 1000 : 1;
  return s.runs.length > 1
    ? `${seconds(s.median / k)} (${seconds(s.min / k)}–${seconds(s.max / k)})`
    : seconds(s.median / k);
};
// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    repeat: { type: 'string', default: '3' },
    'wait-ms': { type: 'string', default: '50' },
  });
  if (!values) return 0;
  const scale = wholeNumber(values.scale, 1);
  const repeat = wholeNumber(values.repeat, 1);
  const waitMs = wholeNumber(values['wait-ms'], 0);
  if (scale === undefined || repeat === undefined || waitMs === undefined) {
    console.error(`Bad arguments: ${JSON.stringify(values)}.\n\n${USAGE}`);
    return 2;
  }

  const startedAt = new Date();
  const tmp = mkdtempSync(join(tmpdir(), 'kennel-backup-bench-restore-'));
  // The local cluster lives inside it, and its server user must get through.
  chmodSync(tmp, 0o711);
  let environment: LocalEnvironment | undefined;
  const stopEnvironment = stopOnce('the local environment', () => environment);
  onInterrupt((signal) => {
    log(`${signal}: stopping PostgreSQL so that the running restore fails fast …`);
    void stopEnvironment();
  });

  try {
    log(`throwaway PostgreSQL, ${DATABASE} seeded at scale ${scale}, local S3 …`);
    environment = await startLocalEnvironment({ dataDir: join(tmp, 'local'), seedScale: scale });
    const env = environment;
    Object.assign(process.env, env.functionEnv);
    const config = parseConfig(env.functionEnv);
    const target = config.BACKUP_TARGETS[0];
    if (!target) throw new Error('The local environment configured no backup target.');
    const ctx: Context = {
      env,
      config,
      target,
      catalog: new Catalog(createS3Client(config), config.BACKUP_BUCKET),
      waitMs,
    };
    // Autovacuum off: no vacuum of a fresh restore runs inside the next measurement,
    // and none holds a transaction that pulls a backup window's end back.
    sql(ctx, DATABASE, 'ALTER SYSTEM SET autovacuum = off');
    sql(ctx, DATABASE, 'SELECT pg_reload_conf()');
    sql(ctx, DATABASE, 'VACUUM (ANALYZE)');
    const databaseBytes = Number(sql(ctx, DATABASE, `SELECT pg_database_size('${DATABASE}')`));
    log(`${DATABASE}: ${inMiB(databaseBytes)}`);
    // Handlers imported once beforehand: no cold start in the first workflow's time.
    await importHandlers();

    const full = await backup(ctx, 'full');

    log('recompressing the full archive to gzip (untimed) …');
    const gzipPath = join(tmp, 'full.sql.gz');
    await sh(`${CODECS.zstd.decompress} < "$SOURCE" | ${CODECS.gzip.compress} > "$TARGET"`, {
      ...env.hostEnv,
      SOURCE: full.archive.localPath,
      TARGET: gzipPath,
    });
    const gzipBytes = statSync(gzipPath).size;
    const loadStart = loadavg();

    // ---- 1.
    const fullRestores = await restoreFullThreeWays(ctx, full, gzipPath, repeat);

    const loadEnd = loadavg();

    // ---- Results.
    const method = (m: Method) => stats(fullRestores.ms[m]);
    const source = method('source');
    const script = method('script');
    const workflow = method('workflow');
    const totalSeconds = stats(fullRestores.workflow.map((w) => w.totalSeconds));
    const planMs = stats(fullRestores.workflow.map((w) => w.planMs));
    const stageNames = Object.keys(fullRestores.workflow[0]?.stages ?? {});
    const workflowStages = Object.fromEntries(
      stageNames.map((name) => [name, stats(fullRestores.workflow.map((w) => w.stages[name] ?? Number.NaN))]),
    );
    const ratios = {
      scriptVsSource: script.median / source.median,
      workflowWallVsSource: workflow.median / source.median,
      workflowTotalSecondsVsSource: (totalSeconds.median * 1000) / source.median,
    };
    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { scale, repeat, waitMs },
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', loadStart, loadEnd },
      notes: [
        'Wall clock in ms (*Ms) or as the workflow reports it in s (*Seconds, 0.1 s resolution); Stats hold every run.',
        'Each restore went into a new database, was checked table by table against the expected row counts, and was dropped.',
        '(a) includes its createdb, as the source document runs CREATE DATABASE first; (b) includes the sha256 check of the archive and the existence checks.',
        `Wait states last ${waitMs} ms locally: each polled host command may overshoot by up to that.`,
        'The cluster runs with fsync=off and autovacuum off; methods rotate their order from round to round.',
      ],
      database: {
        name: DATABASE,
        sizeBytes: databaseBytes,
        fullArchive: { key: full.archive.key, zstdBytes: full.archive.size, gzipBytes, tables: full.tables },
      },
      fullRestore: {
        sourceMs: source,
        scriptMs: script,
        workflowWallMs: workflow,
        workflowTotalSeconds: totalSeconds,
        workflowPlanMs: planMs,
        workflowStages,
        ratios,
      },
    };
    mkdirSync(dirname(RESULT_FILE), { recursive: true });
    writeFileSync(RESULT_FILE, `${JSON.stringify(result, null, 2)}\n`);

    const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' / ');
    const head = repeat > 1 ? `median (min–max) of ${repeat}, s` : 's';
    const out = [
      `### Restore bench — scale ${scale}: ${DATABASE} ${inMiB(databaseBytes)}; full archive ${inMiB(full.archive.size)} zstd, ${inMiB(gzipBytes)} gzip`,
      '',
      `${cpus().length} CPUs; load average (1/5/15 min) ${load(loadStart)} at start, ${load(loadEnd)} at end; waits ${waitMs} ms.`,
      '',
      markdownTable(
        ['restore of the same full backup into a new database', head, 'vs (a)'],
        [
          [METHODS.source, spread(source, 'ms'), ratio(1)],
          [METHODS.script, spread(script, 'ms'), ratio(ratios.scriptVsSource)],
          [METHODS.workflow, spread(workflow, 'ms'), ratio(ratios.workflowWallVsSource)],
          [
            '(c) its output totalSeconds',
            spread(totalSeconds, 's'),
            ratio(ratios.workflowTotalSecondsVsSource),
          ],
          ['… PlanRestore (execution events)', spread(planMs, 'ms'), ''],
          ...stageNames.map((name) => [`… ${name}`, spread(workflowStages[name] ?? stats([]), 's'), '']),
        ],
      ),
      '',
      `JSON: ${RESULT_FILE}`,
    ];
    console.log(out.join('\n'));
    return 0;
  } finally {
    await cleanUp(tmp, stopEnvironment);
  }
}

await runMain(main);

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
import { renderHostCommand } from '../shared/host/scripts.ts';
import type { RestorePlan } from '../shared/restore/database-schemas.ts';
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
  wholeNumbers,
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
 *  2. point-in-time recovery as the chain grows: writes, an incremental and a
 *     transaction-log backup per step; after chosen numbers of steps, a recovery to
 *     just after the last backup (and a dry run, which only plans from the catalog).
 * The machine is small and noisy: the ratios and medians, measured side by side,
 * are the result.
 *
 *   npm run bench:restore -- [--scale 20] [--repeat 3] [--chain 1,4,8]
 */

const USAGE = `Usage: npm run bench:restore -- [--scale N] [--repeat N] [--chain a,b,c] [--wait-ms MS]

  --scale N      sample data size (default 20 ≈ 310 MB database; 2 for a quick run)
  --repeat N     runs of every timed restore (default 3); medians are reported
  --chain a,b,c  incrementals after the full at which point-in-time recovery is timed (default 1,4,8)
  --wait-ms MS   every Wait state of the workflows, locally (default 50: the polling granularity)

Results: a Markdown table on stdout and JSON in .local/bench/restore.json.`;

const DATABASE = LOCAL_DATABASE;
const RESULT_FILE = join(PROJECT_ROOT, '.local', 'bench', 'restore.json');

/** The writes of one step of the chain: a few hundred business rows and log rows. */
const BOOKINGS_UPDATED = 300;
const CUSTOMERS_INSERTED = 100;
const AUDIT_ROWS_INSERTED = 300;
const SESSION_ROWS_INSERTED = 50;

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

/** The database's clock, as a point in time a person would type (ISO 8601, UTC, with Z). */
const databaseNow = (ctx: Context) =>
  sql(ctx, DATABASE, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);

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
  const order: Method[] = ['source', 'script', 'workflow'];
  for (let round = 1; round <= repeat; round += 1) {
    // Each method goes first in some round: the first restore after a pause pays for cold caches.
    const rotated = [...order.slice((round - 1) % 3), ...order.slice(0, (round - 1) % 3)];
    for (const method of rotated) {
      const into = `bench_${method}_${round}`;
      log(`round ${round}/${repeat}: ${METHODS[method]} …`);
      try {
        result.ms[method].push(await restore[method](into));
        expectRows(METHODS[method], rowCounts(ctx.env.postgres, into, Object.keys(full.tables)), full.tables);
      } finally {
        dropDatabase(ctx, into);
      }
    }
  }
  return result;
}

// ---------------------------------------------------------------------------
// 2. Point-in-time recovery as the chain grows.

function writeStep(ctx: Context, step: number): void {
  sql(
    ctx,
    DATABASE,
    `UPDATE bookings SET notes = 'bench step ${step}'
       WHERE id IN (SELECT id FROM bookings ORDER BY id LIMIT ${BOOKINGS_UPDATED} OFFSET ${BOOKINGS_UPDATED * (step - 1)});
     INSERT INTO customers (first_name, last_name, email)
       SELECT 'Bench', 'Step ${step}', 'bench-${step}-' || g || '@example.test' FROM generate_series(1, ${CUSTOMERS_INSERTED}) g;
     INSERT INTO audit_logs (actor, action, entity, entity_id)
       SELECT 'bench', 'step ${step}', 'booking', g FROM generate_series(1, ${AUDIT_ROWS_INSERTED}) g;
     INSERT INTO session_logs (staff_user, ip)
       SELECT 'bench', '10.0.0.1' FROM generate_series(1, ${SESSION_ROWS_INSERTED})`,
  );
}

interface ChainPoint {
  incrementals: number;
  targetTime: string;
  archives: number;
  archiveBytes: number;
  dryRun: { wallMs: Stats; planMs: Stats };
  recovery: { wallMs: Stats; planMs: Stats; totalSeconds: Stats; stages: Record<string, Stats> };
}

async function measureChain(
  ctx: Context,
  incrementals: number,
  full: DatabaseManifest,
  sizes: ReadonlyMap<string, number>,
  repeat: number,
): Promise<ChainPoint> {
  const targetTime = databaseNow(ctx);
  const wanted = 1 + 2 * incrementals;
  const dry: { wallMs: number; planMs: number }[] = [];
  const runs: WorkflowRestore[] = [];
  let plan: RestorePlan | undefined;
  for (let round = 1; round <= repeat; round += 1) {
    log(`${incrementals} incremental(s), round ${round}/${repeat}: dry run …`);
    const planned = await runToSuccess(
      ctx,
      'point-in-time-recovery',
      { database: DATABASE, targetDatabase: 'bench_pitr_dry_run', targetTime, dryRun: true },
      'point-in-time dry run',
    );
    plan = (planned.record.output as { plan: RestorePlan }).plan;
    if (plan.archives.length !== wanted || plan.notApplied.length > 0)
      throw new Error(
        `The dry run planned ${plan.archives.length} archives (${plan.notApplied.length} not applied), not the full, ${incrementals} incremental(s) and ${incrementals} log archive(s).`,
      );
    dry.push({ wallMs: planned.ms, planMs: stateMs(planned.record, 'PlanRestore') });

    const into = `bench_pitr_${incrementals}_${round}`;
    log(`${incrementals} incremental(s), round ${round}/${repeat}: point-in-time recovery …`);
    try {
      const run = await restoreWorkflow(
        ctx,
        'point-in-time-recovery',
        { targetDatabase: into, targetTime },
        'point-in-time recovery',
      );
      if (run.archives !== wanted)
        throw new Error(`The recovery applied ${run.archives} archives, not ${wanted}.`);
      runs.push(run);
      expectRecovered(ctx, into, full, plan, `point-in-time recovery, ${incrementals} incremental(s)`);
    } finally {
      dropDatabase(ctx, into);
    }
  }
  if (!plan) throw new Error('No dry run ran.');
  const stageNames = Object.keys(runs[0]?.stages ?? {});
  return {
    incrementals,
    targetTime,
    archives: wanted,
    archiveBytes: plan.archives.reduce((sum, a) => sum + (sizes.get(a.key) ?? Number.NaN), 0),
    dryRun: { wallMs: stats(dry.map((d) => d.wallMs)), planMs: stats(dry.map((d) => d.planMs)) },
    recovery: {
      wallMs: stats(runs.map((r) => r.wallMs)),
      planMs: stats(runs.map((r) => r.planMs)),
      totalSeconds: stats(runs.map((r) => r.totalSeconds)),
      stages: Object.fromEntries(
        stageNames.map((name) => [name, stats(runs.map((r) => r.stages[name] ?? Number.NaN))]),
      ),
    },
  };
}

/**
 * Nothing is written after the target time, so the business tables must equal
 * production's; the log tables hold the rows from the first log archive's window
 * on (the full dump leaves them out; older rows are in older log archives).
 */
function expectRecovered(
  ctx: Context,
  into: string,
  full: DatabaseManifest,
  plan: RestorePlan,
  label: string,
): void {
  const business = Object.keys(full.tables);
  expectRows(
    label,
    rowCounts(ctx.env.postgres, into, business),
    rowCounts(ctx.env.postgres, DATABASE, business),
  );
  const since = plan.archives.find((a) => a.kind === 'transaction-logs')?.window.since;
  const logTables = ctx.config.EXCLUDED_TABLES;
  expectRows(
    `${label} (log tables)`,
    rowCounts(ctx.env.postgres, into, logTables),
    // The log tables' window.
    rowCounts(ctx.env.postgres, DATABASE, logTables, since ? `created_at >= '${since}'` : 'true'),
  );
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

/** --chain: whole numbers in ascending order. */
function parseLengths(text: string): number[] | undefined {
  const list = wholeNumbers(text);
  return list?.every((n, i) => n >= (list[i - 1] ?? n)) ? list : undefined;
}

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    repeat: { type: 'string', default: '3' },
    chain: { type: 'string', default: '1,4,8' },
    'wait-ms': { type: 'string', default: '50' },
  });
  if (!values) return 0;
  const scale = wholeNumber(values.scale, 1);
  const repeat = wholeNumber(values.repeat, 1);
  const lengths = parseLengths(values.chain);
  const waitMs = wholeNumber(values['wait-ms'], 0);
  if (scale === undefined || repeat === undefined || !lengths || waitMs === undefined) {
    console.error(
      `Bad arguments: ${JSON.stringify(values)} (--chain takes ascending whole numbers).\n\n${USAGE}`,
    );
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

    // A log backup before the full one, as in production where they run every 15
    // minutes: the log archives after the full then hold only the new rows.
    const sizes = new Map<string, number>();
    const keep = (m: DatabaseManifest) => {
      sizes.set(m.archive.key, m.archive.size);
      return m;
    };
    const firstLogs = keep(await backup(ctx, 'transaction-logs'));
    const full = keep(await backup(ctx, 'full'));

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

    // ---- 2.
    const chain: ChainPoint[] = [];
    const maxLength = lengths.at(-1) ?? 0;
    for (let step = 1; step <= maxLength; step += 1) {
      checkInterrupted();
      log(`chain step ${step}/${maxLength}: writes …`);
      writeStep(ctx, step);
      keep(await backup(ctx, 'incremental'));
      keep(await backup(ctx, 'transaction-logs'));
      if (lengths.includes(step)) chain.push(await measureChain(ctx, step, full, sizes, repeat));
    }
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
    const [shortest, longest] = [chain[0], chain.at(-1)];
    const marginal =
      shortest && longest && longest !== shortest
        ? {
            between: [shortest.archives, longest.archives],
            totalSeconds:
              (longest.recovery.totalSeconds.median - shortest.recovery.totalSeconds.median) /
              (longest.archives - shortest.archives),
            staging:
              ((longest.recovery.stages['restore into staging']?.median ?? Number.NaN) -
                (shortest.recovery.stages['restore into staging']?.median ?? Number.NaN)) /
              (longest.archives - shortest.archives),
          }
        : null;
    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { scale, repeat, chain: lengths, waitMs },
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', loadStart, loadEnd },
      notes: [
        'Wall clock in ms (*Ms) or as the workflow reports it in s (*Seconds, 0.1 s resolution); Stats hold every run.',
        'Each restore went into a new database, was checked table by table against the expected row counts, and was dropped.',
        '(a) includes its createdb, as the source document runs CREATE DATABASE first; (b) includes the sha256 check of the archive and the existence checks.',
        `Wait states last ${waitMs} ms locally: each polled host command may overshoot by up to that.`,
        'The cluster runs with fsync=off and autovacuum off; methods rotate their order from round to round.',
        'A transaction-log backup ran before the full one (whole log tables); the chain then holds one incremental and one log archive per step.',
      ],
      database: {
        name: DATABASE,
        sizeBytes: databaseBytes,
        fullArchive: { key: full.archive.key, zstdBytes: full.archive.size, gzipBytes, tables: full.tables },
        firstLogArchiveBytes: firstLogs.archive.size,
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
      pointInTime: { chain, marginalSecondsPerArchive: marginal },
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
      markdownTable(
        [
          'point-in-time recovery',
          'archives applied',
          'archive bytes',
          'PlanRestore (dry run) s',
          `dry run wall, ${head}`,
          `recovery wall, ${head}`,
          'totalSeconds',
          'restore into staging s',
          'vs (c) totalSeconds',
        ],
        chain.map((c) => [
          `full + ${c.incrementals} incremental + ${c.incrementals} log`,
          String(c.archives),
          inMiB(c.archiveBytes),
          seconds(c.dryRun.planMs.median / 1000),
          spread(c.dryRun.wallMs, 'ms'),
          spread(c.recovery.wallMs, 'ms'),
          spread(c.recovery.totalSeconds, 's'),
          seconds(c.recovery.stages['restore into staging']?.median ?? Number.NaN),
          ratio(c.recovery.totalSeconds.median / totalSeconds.median),
        ]),
      ),
      marginal
        ? `\nEach archive added to the chain (${marginal.between.join(' → ')} archives) costs ${seconds(marginal.totalSeconds)} s of totalSeconds, ${seconds(marginal.staging)} s of it restoring into staging (medians).`
        : '',
      '',
      `Each step: ${BOOKINGS_UPDATED} bookings updated, ${CUSTOMERS_INSERTED} customers, ${AUDIT_ROWS_INSERTED} audit_logs and ${SESSION_ROWS_INSERTED} session_logs rows inserted, then an incremental and a transaction-log backup; target time = the database clock after the last backup.`,
      `The first log backup (before the full: no watermark, so the whole log tables) was ${inMiB(firstLogs.archive.size)}; a chain whose log backups start after its full applies such an archive too.`,
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

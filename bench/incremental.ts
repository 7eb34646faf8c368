import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { type LocalEnvironment, psql, startLocalEnvironment } from '../local/environment.ts';
import { localHost } from '../local/host.ts';
import { type PostgresServer, startPostgres } from '../local/postgres.ts';
import { PROJECT_ROOT, runWorkflow } from '../local/runner.ts';
import type { DatabaseKind } from '../shared/catalog/keys.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import {
  checkInterrupted,
  cleanUp,
  importHandlers,
  log,
  onInterrupt,
  queryValue,
  readCommandLine,
  runMain,
  span,
  stopOnce,
  timedSeed,
  visits,
  wholeNumber,
  wholeNumbers,
} from './harness.ts';
import { MiB, mib, ratio, table } from './table.ts';

/**
 * What incremental and transaction-log backups cost next to a full one, in one run on
 * one database, through the real database-backup workflow (local host, local S3):
 *  - a full backup;
 *  - incremental backups after updating N bookings (plus one after no change at all,
 *    which is the fixed cost of the method); each manifest must count exactly N
 *    bookings and the whole lookup table, or the benchmark fails;
 *  - a first transaction-log backup (no watermark yet: the whole log tables), then one
 *    after inserting M audit_logs rows (its manifest must count exactly M).
 * The machine is small and noisy: the ratios to the full backup, measured side by
 * side, are the result.
 *
 *   npm run bench:incremental -- [--scale 20]
 */

const USAGE = `Usage: npm run bench:incremental -- [--scale N] [--rows a,b,c] [--log-rows M] [--wait-ms MS]

  --scale N      sample data size (default 20 ≈ 310 MB database; 1 for a quick smoke run)
  --rows a,b,c   bookings updated before each incremental backup
                 (default 1000,10000,100000; at scale 1: 100,1000,5000; capped at the table's size)
  --log-rows M   audit_logs rows inserted before the measured log backup (default 10000; at scale 1: 1000)
  --wait-ms MS   every Wait state of the workflow, locally (default 50: the polling granularity)

Results: a table on stdout and JSON in bench/results/incremental-<timestamp>.json.`;

const DATABASE = 'kennel_prod';
const RESULTS_DIR = join(PROJECT_ROOT, 'bench', 'results');

const count = (server: PostgresServer, table: string) =>
  Number(queryValue(server, DATABASE, `SELECT count(*) FROM ${table}`));

/** Runs SQL and times it (the writes between backups are not part of any backup's time). */
function timedSql(server: PostgresServer, sql: string): number {
  const started = performance.now();
  psql(server, DATABASE, ['-c', sql]);
  return performance.now() - started;
}

// ---------------------------------------------------------------------------
// One backup through the workflow.

interface Stages {
  /** Reads the chain's manifests from the catalog to find the window's start. */
  plan: number;
  /** StartDump…DumpFinished: the host script, polled every --wait-ms. */
  dumpLoop: number;
  verify: number;
  /** StartRestoreTest…RestoreTest: full backups only. */
  restoreTest: number | null;
  /** PruneBackups…LocalPruneFinished. */
  prune: number;
  /** The rest of the wall clock: Pass/Choice states, the runner's own work. */
  other: number;
}

interface BackupRun {
  label: string;
  kind: DatabaseKind;
  /** Rows written just before this backup (updated bookings, inserted audit_logs); null for none. */
  written: number | null;
  writeMs: number | null;
  /** Wall clock around runWorkflow. */
  ms: number;
  stages: Stages;
  dumpPolls: number;
  archiveKey: string;
  archiveBytes: number;
  /** VerifyArchive's own output: must equal the manifest's size. */
  verifiedBytes: number;
  verificationDetail: string;
  window: DatabaseManifest['window'];
  tables: Record<string, number>;
  capture: DatabaseManifest['capture'];
}

interface Context {
  server: PostgresServer;
  environment: LocalEnvironment;
  catalog: { list(kind: DatabaseKind, target: string, database: string): Promise<DatabaseManifest[]> };
  target: string;
  waitMs: number;
}

async function backup(
  ctx: Context,
  kind: DatabaseKind,
  label: string,
  write?: { rows: number; ms: number },
): Promise<BackupRun> {
  checkInterrupted();
  log(`${label} …`);
  const started = performance.now();
  const record = await runWorkflow(
    {
      workflow: 'database-backup',
      input: { kind },
      historyDir: ctx.environment.paths.historyDir,
      waitMs: ctx.waitMs,
    },
    {
      host: localHost(ctx.environment.hostEnv),
      databaseUrl: ctx.server.url,
      alertsFile: ctx.environment.paths.alertsFile,
      print: log,
    },
  );
  const ms = performance.now() - started;
  if (record.status !== 'SUCCEEDED')
    throw new Error(`${label}: the workflow ended ${record.status}: ${record.error}: ${record.cause}`);

  const { events } = record;
  const plan = span(events, 'PlanBackup', 'PlanBackup');
  const dumpLoop = span(events, 'StartDump', 'DumpFinished');
  const verify = span(events, 'VerifyArchive', 'VerifyArchive');
  const prune = span(events, 'PruneBackups', 'LocalPruneFinished');
  const restoreTest = span(events, 'StartRestoreTest', 'RestoreTest');
  if (plan === null || dumpLoop === null || verify === null || prune === null)
    throw new Error(`${label}: the execution skipped a stage (plan, dump, verify or prune).`);
  if ((restoreTest === null) !== (kind !== 'full'))
    throw new Error(`${label}: a restore test ran for a ${kind} backup, or none for a full one.`);

  const manifest = (await ctx.catalog.list(kind, ctx.target, DATABASE)).find(
    (m) => m.executionId === record.executionArn,
  );
  if (!manifest) throw new Error(`${label}: no ${kind} manifest in the catalog for ${record.executionArn}.`);
  if (manifest.verification.state !== 'verified')
    throw new Error(`${label}: the manifest says ${manifest.verification.state}, not verified.`);
  const verified = events.findLast((e) => e.type === 'StateExited' && e.state?.name === 'VerifyArchive')
    ?.state?.output as { verification?: { size?: number } } | undefined;
  const verifiedBytes = verified?.verification?.size ?? Number.NaN;
  if (verifiedBytes !== manifest.archive.size)
    throw new Error(
      `${label}: VerifyArchive read ${verifiedBytes} bytes, the manifest says ${manifest.archive.size}.`,
    );

  return {
    label,
    kind,
    written: write?.rows ?? null,
    writeMs: write?.ms ?? null,
    ms,
    stages: {
      plan,
      dumpLoop,
      verify,
      restoreTest,
      prune,
      other: ms - plan - dumpLoop - verify - prune - (restoreTest ?? 0),
    },
    dumpPolls: visits(events, 'CheckDump'),
    archiveKey: manifest.archive.key,
    archiveBytes: manifest.archive.size,
    verifiedBytes,
    verificationDetail: manifest.verification.detail ?? '',
    window: manifest.window,
    tables: manifest.tables,
    capture: manifest.capture,
  };
}

/** Fails loudly unless the manifest counts exactly the rows expected (tables not named: 0 rows). */
function expectRows(run: BackupRun, expected: Record<string, number>): void {
  const all = { ...Object.fromEntries(Object.keys(run.tables).map((t) => [t, 0])), ...expected };
  const wrong = Object.entries(all).filter(([table, n]) => run.tables[table] !== n);
  if (wrong.length > 0) {
    const detail = wrong.map(([t, n]) => `${t}: ${run.tables[t] ?? 'absent'}, expected ${n}`).join('; ');
    throw new Error(
      `${run.label}: the manifest's row counts are wrong: ${detail} (window ${JSON.stringify(run.window)}).`,
    );
  }
}

// ---------------------------------------------------------------------------
// Output.

const size = (bytes: number) => (bytes >= MiB ? `${mib(bytes)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`);
const sec = (ms: number | null) => (ms === null ? '' : (ms / 1000).toFixed(2));
/** An incremental's ratio to the full can be far below 0.1: one more digit there. */
const ratioToFull = (x: number) => ratio(x, x < 0.1 ? 3 : 2);
const thousands = (n: number) => n.toLocaleString('en-GB').replaceAll(',', ' ');

/** The manifest's non-zero counts, short names. */
const manifestRows = (run: BackupRun) =>
  Object.entries(run.tables)
    .filter(([, n]) => n > 0)
    .map(([t, n]) => `${t.replace(/^public\./, '')} ${thousands(n)}`)
    .join(', ') || 'none';

// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    rows: { type: 'string' },
    'log-rows': { type: 'string' },
    'wait-ms': { type: 'string', default: '50' },
  });
  if (!values) return 0;
  const scale = wholeNumber(values.scale, 1);
  const small = scale === 1;
  const defaultRows = small ? [100, 1_000, 5_000] : [1_000, 10_000, 100_000];
  const rows = values.rows === undefined ? defaultRows : wholeNumbers(values.rows);
  const defaultLogRows = small ? 1_000 : 10_000;
  const logRows = values['log-rows'] === undefined ? defaultLogRows : wholeNumber(values['log-rows'], 1);
  const waitMs = wholeNumber(values['wait-ms'], 0);
  if (scale === undefined || !rows || logRows === undefined || waitMs === undefined) {
    console.error(`Bad arguments: ${JSON.stringify(values)}\n\n${USAGE}`);
    return 2;
  }

  const startedAt = new Date();
  const tmp = mkdtempSync(join(tmpdir(), 'kennel-backup-bench-incremental-'));
  let server: PostgresServer | undefined;
  let environment: LocalEnvironment | undefined;
  const stopServer = stopOnce('PostgreSQL', () => server);
  const stopEnvironment = stopOnce('the local S3', () => environment);
  onInterrupt((signal) => {
    log(`${signal}: stopping PostgreSQL so that the running backup fails fast …`);
    void stopServer();
  });

  try {
    log(`throwaway PostgreSQL cluster, seeding ${DATABASE} at scale ${scale} …`);
    server = await startPostgres();
    const cluster = server;
    const seedMs = timedSeed(cluster, DATABASE, scale);
    // Autovacuum off, an explicit VACUUM ANALYZE after each write instead: the same
    // work, but never inside a measured backup (and no autovacuum transaction can pull
    // a snapshot's `until` back before the rows just written).
    psql(cluster, DATABASE, ['-c', 'ALTER SYSTEM SET autovacuum = off', '-c', 'SELECT pg_reload_conf()']);
    psql(cluster, DATABASE, ['-c', 'VACUUM (ANALYZE)']);
    const databaseBytes = Number(queryValue(cluster, DATABASE, `SELECT pg_database_size('${DATABASE}')`));
    log(`${DATABASE}: ${mib(databaseBytes)} MiB (seeded in ${(seedMs / 1000).toFixed(1)} s)`);

    environment = await startLocalEnvironment({
      dataDir: join(tmp, 'local'),
      databaseUrl: `${cluster.url}/${DATABASE}`,
    });
    const local = environment;
    Object.assign(process.env, local.functionEnv);
    const [{ getConfig }, { Catalog }, { createS3Client }] = await Promise.all([
      import('../shared/core/config.ts'),
      import('../shared/catalog/catalog.ts'),
      import('../shared/core/clients.ts'),
    ]);
    const config = getConfig();
    const target = config.BACKUP_TARGETS[0]?.name;
    if (!target) throw new Error('The local environment configured no backup target.');
    const ctx: Context = {
      server: cluster,
      environment: local,
      catalog: new Catalog(createS3Client(config), config.BACKUP_BUCKET),
      target,
      waitMs,
    };
    // Handlers imported once beforehand: no cold start in the first backup's time.
    await importHandlers();
    const hostEnv = { ...process.env, ...local.hostEnv };
    log('warm-up pg_dump of the whole database (untimed) …');
    execFileSync('pg_dump', ['-f', '/dev/null', '-d', DATABASE], { env: hostEnv, stdio: 'ignore' });

    // The fixed cost every backup script pays once (the archive's upload): one aws s3 cp.
    // Asynchronous: the local S3 answers from this very process.
    const uploadMs: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const started = performance.now();
      await promisify(execFile)(
        'bash',
        [
          '-c',
          `printf x | aws s3 cp - "s3://${local.bucket}/bench/probe" --endpoint-url "${local.s3Endpoint}" --only-show-errors`,
        ],
        { env: hostEnv },
      );
      uploadMs.push(performance.now() - started);
    }
    const loadBefore = loadavg();

    // ---- 1. Full.
    const full = await backup(ctx, 'full', 'full backup');
    const bookings = count(cluster, 'bookings');

    // ---- 2. Incrementals: no change (the floor), then N updated bookings each.
    const wholeCounts = (run: BackupRun) =>
      Object.fromEntries((run.capture?.wholeTables ?? []).map((t) => [t, count(cluster, t)]));
    const incrementals: BackupRun[] = [];
    const floor = await backup(ctx, 'incremental', 'incremental, no change');
    expectRows(floor, wholeCounts(floor));
    incrementals.push(floor);
    for (const wanted of rows) {
      const n = Math.min(wanted, bookings);
      checkInterrupted();
      log(`updating ${thousands(n)} bookings …`);
      const ms = timedSql(
        cluster,
        `UPDATE bookings SET notes = 'bench ' || id WHERE id IN (SELECT id FROM bookings ORDER BY id LIMIT ${n})`,
      );
      psql(cluster, DATABASE, ['-c', 'VACUUM (ANALYZE) bookings']);
      const run = await backup(ctx, 'incremental', `incremental, ${thousands(n)} bookings updated`, {
        rows: n,
        ms,
      });
      if (!run.capture?.changedRows.includes('public.bookings'))
        throw new Error(`${run.label}: public.bookings is not among the changed-rows tables.`);
      expectRows(run, { ...wholeCounts(run), 'public.bookings': n });
      incrementals.push(run);
    }

    // ---- 3. Transaction logs: the first (whole tables) sets the watermark, then M new rows.
    const logTables = ['public.audit_logs', 'public.session_logs'];
    const before = Object.fromEntries(logTables.map((t) => [t, count(cluster, t)]));
    const firstLog = await backup(ctx, 'transaction-logs', 'log backup #1 (no watermark: whole tables)');
    expectRows(firstLog, before);
    checkInterrupted();
    const audit = before['public.audit_logs'] ?? 0;
    if (audit === 0) throw new Error('audit_logs is empty: no rows to copy.');
    log(`inserting ${thousands(logRows)} audit_logs rows …`);
    // Copies of the first rows (new id, created_at now()): real row sizes and jsonb details.
    const insertMs = timedSql(
      cluster,
      `INSERT INTO audit_logs (actor, action, entity, entity_id, details)
       SELECT a.actor, a.action, a.entity, a.entity_id, a.details
       FROM generate_series(1, ${Math.ceil(logRows / audit)}) r
       CROSS JOIN (SELECT * FROM audit_logs ORDER BY id LIMIT ${logRows}) a
       LIMIT ${logRows}`,
    );
    psql(cluster, DATABASE, ['-c', 'VACUUM (ANALYZE) audit_logs']);
    const secondLog = await backup(
      ctx,
      'transaction-logs',
      `log backup #2, ${thousands(logRows)} audit_logs rows inserted`,
      { rows: logRows, ms: insertMs },
    );
    expectRows(secondLog, { 'public.audit_logs': logRows });
    const loadAfter = loadavg();

    // ---- Results.
    const versus = (run: BackupRun) => ({
      workflow: run.ms / full.ms,
      dumpLoop: run.stages.dumpLoop / full.stages.dumpLoop,
      size: run.archiveBytes / full.archiveBytes,
    });
    const changed = incrementals.filter((r) => r.written !== null);
    const last = changed.at(-1);
    const secondLast = changed.at(-2);
    const marginal =
      last && secondLast && last.written !== null && secondLast.written !== null
        ? {
            between: [secondLast.written, last.written],
            dumpLoopMsPerThousandRows:
              ((last.stages.dumpLoop - secondLast.stages.dumpLoop) / (last.written - secondLast.written)) *
              1000,
            archiveBytesPerRow:
              (last.archiveBytes - secondLast.archiveBytes) / (last.written - secondLast.written),
          }
        : null;
    const runs = [full, ...incrementals, firstLog, secondLog];
    const uploadMinMs = Math.min(...uploadMs);
    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { scale, rows, logRows, waitMs },
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', loadBefore, loadAfter },
      database: { sizeBytes: databaseBytes, seedMs, bookings, logTablesBefore: before },
      notes: [
        'Times are wall clock in ms, one run each. Stage times come from the execution events; other = the rest of the wall clock.',
        `Wait states last ${waitMs} ms locally: each polled loop (dump, restore test, local prune) may overshoot by up to that.`,
        'Autovacuum was off; VACUUM (ANALYZE) ran, untimed, after the seed and after each write.',
        'Only a full backup has a restore test: the incremental and log archives are read through and counted row by row by VerifyArchive.',
        'uploadProbeMs: `printf x | aws s3 cp -` to the same local S3; the host script runs one such upload (the archive; VerifyArchive writes the manifest).',
      ],
      uploadProbeMs: uploadMs,
      runs: runs.map((r) => ({ ...r, versusFull: versus(r) })),
      marginal,
    };
    mkdirSync(RESULTS_DIR, { recursive: true });
    const resultFile = join(RESULTS_DIR, `incremental-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(resultFile, `${JSON.stringify(result, null, 2)}\n`);

    const out = [
      `kennel-backup incremental bench — scale ${scale}, ${DATABASE} ${mib(databaseBytes)} MiB, ` +
        `bookings ${thousands(bookings)}, audit_logs ${thousands(audit)}; ${cpus().length} CPUs, ` +
        `load ${loadBefore.map((l) => l.toFixed(2)).join('/')} → ${loadAfter.map((l) => l.toFixed(2)).join('/')}; waits ${waitMs} ms`,
      '',
      table(
        [
          'backup (database-backup workflow)',
          'workflow s',
          'plan s',
          'dump loop s',
          'verify s',
          'restore test s',
          'prune s',
          'other s',
          'archive',
          'manifest rows (non-zero)',
        ],
        runs.map((r) => [
          r.label,
          sec(r.ms),
          sec(r.stages.plan),
          sec(r.stages.dumpLoop),
          sec(r.stages.verify),
          sec(r.stages.restoreTest),
          sec(r.stages.prune),
          sec(r.stages.other),
          size(r.archiveBytes),
          r.kind === 'full'
            ? `${Object.keys(r.tables).length} tables, ${thousands(Object.values(r.tables).reduce((a, b) => a + b, 0))}`
            : manifestRows(r),
        ]),
      ),
      '',
      table(
        ['ratio to the full backup (same run)', 'workflow', 'dump loop', 'archive size'],
        runs
          .filter((r) => r !== full)
          .map((r) => {
            const v = versus(r);
            return [r.label, ratioToFull(v.workflow), ratioToFull(v.dumpLoop), ratioToFull(v.size)];
          }),
      ),
      '',
      `one aws s3 cp of 1 byte to the local S3 (the host script runs two): ${uploadMs.map((m) => sec(m)).join(', ')} s (min ${sec(uploadMinMs)})`,
      marginal
        ? `marginal cost between ${thousands(marginal.between[0] ?? 0)} and ${thousands(marginal.between[1] ?? 0)} updated bookings: ` +
          `${marginal.dumpLoopMsPerThousandRows.toFixed(1)} ms of dump loop and ${((marginal.archiveBytesPerRow * 1000) / 1024).toFixed(1)} KiB of archive per 1 000 rows`
        : '',
      `writes (untimed in the backups): ${changed.map((r) => `UPDATE ${thousands(r.written ?? 0)} ${sec(r.writeMs)} s`).join(', ')}, INSERT ${thousands(logRows)} ${sec(insertMs)} s`,
      '',
      `JSON: ${resultFile}`,
    ];
    console.log(out.join('\n'));
    return 0;
  } finally {
    await cleanUp(tmp, stopEnvironment, stopServer);
  }
}

await runMain(main);

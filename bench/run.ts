import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { type LocalEnvironment, psql, startLocalEnvironment } from '../local/environment.ts';
import { localHost } from '../local/host.ts';
import { type PostgresServer, startPostgres } from '../local/postgres.ts';
import { PROJECT_ROOT, runWorkflow } from '../local/runner.ts';
import type { Manifest } from '../shared/catalog/manifest.ts';
import { CODECS, DEFAULT_CODEC } from '../shared/core/codecs.ts';
import {
  checkInterrupted,
  cleanUp,
  hostScript,
  importHandlers,
  log,
  onInterrupt,
  queryValue,
  readArchiveInChild,
  readCommandLine,
  rowCounts,
  runMain,
  type Stats,
  sh,
  span,
  stats,
  stopOnce,
  timedSeed,
  type VerifyReading,
  visits,
  wholeNumber,
} from './harness.ts';
import { mib, ratio, table } from './table.ts';

/**
 * Benchmark of the full database backup, in one run on one database:
 *  - the source document's `pg_dump | gzip` and a bare `pg_dump > /dev/null`;
 *  - the format/compression candidates behind shared/core/codecs.ts, each dumped and
 *    restored into a fresh database (restores are checked row for row);
 *  - our dump stage (the real rendered host script, local host, local S3);
 *  - the whole database-backup workflow, with its per-state durations;
 *  - the verify stage's memory on the archive, and each function's bundle size.
 * The machine is small and noisy: the ratios, measured side by side, are the result.
 *
 *   npm run bench -- [--scale 20] [--repeat 1]
 */

const USAGE = `Usage: npm run bench -- [--scale N] [--repeat N]

  --scale N    sample data size (default 20 ≈ 310 MB database; 1 for a quick smoke run)
  --repeat N   runs of every timed pipeline (default 1); with more, min and median are reported

Results: a table on stdout and JSON in bench/results/<timestamp>.json.`;

const DATABASE = 'kennel_prod';
const EXCLUDED = ['audit_logs', 'session_logs'];
const EXCLUDE_ARGS = EXCLUDED.map((t) => `--exclude-table=${t}`).join(' ');
const RESULTS_DIR = join(PROJECT_ROOT, 'bench', 'results');
/** What restore-test.sh runs (minus its sha256 check): one transaction, stop at the first error. */
const PSQL_RESTORE = 'psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$SCRATCH" >/dev/null';

interface Pipeline {
  id: string;
  label: string;
  /** Bash; the database is "$DB", the archive to write "$ARCHIVE". */
  dump: string;
  /** Bash; reads "$ARCHIVE" into the empty database "$SCRATCH". */
  restore?: string;
  /** The source's restore runs without ON_ERROR_STOP: an error there must still fail the measurement. */
  restoreErrorsOnStderr?: boolean;
}

const plainDump = `pg_dump --format=plain ${EXCLUDE_ARGS} "$DB"`;
const customDump = `pg_dump --format=custom ${EXCLUDE_ARGS}`;

const PIPELINES: Pipeline[] = [
  {
    id: 'source-gzip',
    label: 'source: pg_dump | gzip',
    dump: `${plainDump} | gzip > "$ARCHIVE"`,
    restore: 'gunzip -c "$ARCHIVE" | psql -X -d "$SCRATCH" >/dev/null',
    restoreErrorsOnStderr: true,
  },
  { id: 'devnull', label: 'pg_dump > /dev/null', dump: `${plainDump} > /dev/null` },
  {
    id: 'source-gzip-upload',
    label: 'source: pg_dump | gzip, then aws s3 cp',
    dump: `${plainDump} | gzip > "$ARCHIVE"
aws s3 cp "$ARCHIVE" "s3://$BUCKET/bench/source.sql.gz" --endpoint-url "$S3_ENDPOINT" --only-show-errors`,
  },
  ...(['gzip', 'zstd'] as const).map((codec) => ({
    id: `plain-${codec}`,
    label: `plain | ${CODECS[codec].compress}`,
    dump: `${plainDump} | ${CODECS[codec].compress} > "$ARCHIVE"`,
    restore: `${CODECS[codec].decompress} < "$ARCHIVE" | ${PSQL_RESTORE}`,
  })),
  {
    id: 'plain-zstd-1',
    label: 'plain | zstd -q -1 -T0 -c',
    dump: `${plainDump} | zstd -q -1 -T0 -c > "$ARCHIVE"`,
    restore: `zstd -q -d -c < "$ARCHIVE" | ${PSQL_RESTORE}`,
  },
  {
    id: 'custom',
    label: 'custom -Fc (internal gzip)',
    dump: `${customDump} -f "$ARCHIVE" "$DB"`,
    restore: 'pg_restore --single-transaction -d "$SCRATCH" "$ARCHIVE"',
  },
  {
    id: 'custom-z0-zstd',
    label: 'custom -Fc -Z0 | zstd -3 -T0',
    dump: `${customDump} -Z0 "$DB" | zstd -q -3 -T0 -c > "$ARCHIVE"`,
    restore: 'zstd -q -d -c < "$ARCHIVE" | pg_restore --single-transaction -d "$SCRATCH"',
  },
];

const DEFAULT_PIPELINE = `plain-${DEFAULT_CODEC}`;
/** Copies of the dump in the large control archive of the verify-memory measurement. */
const CONTROL_COPIES = 16;

// ---------------------------------------------------------------------------
// Small helpers.

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

function version(command: string, env: Record<string, string>): string {
  try {
    return execFileSync('bash', ['-c', `${command} 2>&1 | head -n 1`], { env, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------
// The database.

interface DatabaseFacts {
  scale: number;
  seedMs: number;
  sizeBytes: number;
  excludedTablesBytes: number;
  dumpedTablesBytes: number;
  /** Exact rows of every dumped table: each restore must reproduce them. */
  rows: Record<string, number>;
}

function dumpedTables(server: PostgresServer, database: string): string[] {
  const excluded = EXCLUDED.map((t) => `'${t}'`).join(', ');
  return queryValue(
    server,
    database,
    `SELECT string_agg(format('%I.%I', n.nspname, c.relname), ' ' ORDER BY 1) FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
       AND c.relname NOT IN (${excluded})`,
  )
    .split(' ')
    .filter(Boolean);
}

function describeDatabase(server: PostgresServer, scale: number, seedMs: number): DatabaseFacts {
  const excluded = EXCLUDED.map((t) => `'${t}'`).join(', ');
  const sizes = (where: string) =>
    Number(
      queryValue(
        server,
        DATABASE,
        `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname = 'public' AND ${where}`,
      ),
    );
  return {
    scale,
    seedMs,
    sizeBytes: Number(queryValue(server, DATABASE, `SELECT pg_database_size('${DATABASE}')`)),
    excludedTablesBytes: sizes(`c.relname IN (${excluded})`),
    dumpedTablesBytes: sizes(`c.relname NOT IN (${excluded})`),
    rows: rowCounts(server, DATABASE, dumpedTables(server, DATABASE)),
  };
}

/** Restores into a fresh database, checks every table's rows, drops the database whatever happens. */
async function timedRestore(
  pipeline: Pipeline & { restore: string },
  server: PostgresServer,
  env: Record<string, string>,
  facts: DatabaseFacts,
): Promise<number> {
  const scratch = `bench_restore_${pipeline.id.replaceAll('-', '_')}`;
  psql(server, 'postgres', [
    '-c',
    `DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`,
    '-c',
    `CREATE DATABASE ${scratch}`,
  ]);
  try {
    const { ms, stderr } = await sh(pipeline.restore, { ...env, SCRATCH: scratch });
    if (pipeline.restoreErrorsOnStderr && /ERROR:/.test(stderr)) {
      throw new Error(`The restore of ${pipeline.label} reported errors:\n${stderr.slice(-2000)}`);
    }
    const restored = rowCounts(server, scratch, Object.keys(facts.rows));
    const wrong = Object.entries(facts.rows).filter(([table, n]) => restored[table] !== n);
    if (wrong.length > 0) {
      const detail = wrong.map(([t, n]) => `${t}: ${restored[t]} rows, expected ${n}`).join('; ');
      throw new Error(`The restore of ${pipeline.label} is incomplete: ${detail}`);
    }
    return ms;
  } finally {
    psql(server, 'postgres', ['-c', `DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`]);
  }
}

// ---------------------------------------------------------------------------
// Our stages: the project's own modules, imported once the functions' environment is set.

async function loadProject() {
  const [
    { getConfig },
    { isDumpPlan, planBackup },
    { renderHostCommand },
    { BACKUP_HOST_COMMANDS },
    { Catalog },
    { createS3Client },
  ] = await Promise.all([
    import('../shared/core/config.ts'),
    import('../shared/backup/database-plan.ts'),
    import('../shared/host/scripts.ts'),
    import('../shared/backup/host-commands.ts'),
    import('../shared/catalog/catalog.ts'),
    import('../shared/core/clients.ts'),
  ]);
  const config = getConfig();
  const target = config.BACKUP_TARGETS[0];
  if (!target) throw new Error('The local environment configured no backup target.');
  return {
    config,
    target,
    planBackup,
    isDumpPlan,
    renderHostCommand,
    databaseBackup: BACKUP_HOST_COMMANDS['database-backup'],
    catalog: new Catalog(createS3Client(config), config.BACKUP_BUCKET),
  };
}

type Project = Awaited<ReturnType<typeof loadProject>>;

interface DumpStageRun {
  ms: number;
  archivePath: string;
  archiveBytes: number;
  manifestKey: string;
}

/** Renders database-backup for a fresh plan and runs it on the local host: from send to Success. */
async function runDumpStage(
  project: Project,
  environment: LocalEnvironment,
  round: number,
): Promise<DumpStageRun> {
  checkInterrupted();
  const executionId = `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-database-backup:bench-dump-${round}-${randomUUID().slice(0, 8)}`;
  const plans = await project.planBackup(project.config, project.catalog, {
    input: { target: project.target.name, database: DATABASE },
    executionId,
    startedAt: new Date().toISOString(),
  });
  const plan = plans
    .filter(project.isDumpPlan)
    .find((p) => p.target === project.target.name && p.database === DATABASE);
  if (!plan) throw new Error(`PlanBackup planned no run of ${DATABASE} on target ${project.target.name}.`);
  const script = project.renderHostCommand(project.config, project.target, project.databaseBackup, {
    script: 'database-backup',
    plan,
  });
  const { ms } = await hostScript(environment.hostEnv, project.target, script, {
    what: 'The dump stage',
    timeoutSeconds: project.config.HOST_COMMAND_TIMEOUT_SECONDS,
  });
  const archivePath = join(plan.localDir, plan.fileName);
  return { ms, archivePath, archiveBytes: statSync(archivePath).size, manifestKey: plan.manifestKey };
}

interface WorkflowRun {
  ms: number;
  archiveBytes: number;
  /** Wall time of each stage, from the execution's StateEntered/StateExited events. */
  stages: Record<string, { ms: number; polls?: number }>;
}

const WORKFLOW_STAGES: { name: string; first: string; last: string; poll?: string }[] = [
  { name: 'PlanBackup', first: 'PlanBackup', last: 'PlanBackup' },
  { name: 'dump loop (StartDump…DumpFinished)', first: 'StartDump', last: 'DumpFinished', poll: 'CheckDump' },
  { name: 'VerifyArchive', first: 'VerifyArchive', last: 'VerifyArchive' },
  {
    name: 'restore-test loop (StartRestoreTest…RestoreTestFinished)',
    first: 'StartRestoreTest',
    last: 'RestoreTestFinished',
    poll: 'CheckRestoreTest',
  },
  { name: 'RestoreTest', first: 'RestoreTest', last: 'RestoreTest' },
  { name: 'PruneBackups', first: 'PruneBackups', last: 'PruneBackups' },
  {
    name: 'local prune loop (StartLocalPrune…LocalPruneFinished)',
    first: 'StartLocalPrune',
    last: 'LocalPruneFinished',
    poll: 'CheckLocalPrune',
  },
];

async function runBackupWorkflow(
  environment: LocalEnvironment,
  server: PostgresServer,
): Promise<WorkflowRun> {
  checkInterrupted();
  const started = performance.now();
  const record = await runWorkflow(
    { workflow: 'database-backup', input: {}, historyDir: environment.paths.historyDir },
    {
      host: localHost(environment.hostEnv),
      databaseUrl: server.url,
      alertsFile: environment.paths.alertsFile,
      print: log,
    },
  );
  const ms = performance.now() - started;
  if (record.status !== 'SUCCEEDED') throw new Error(`The workflow failed: ${record.error}: ${record.cause}`);
  const stages: WorkflowRun['stages'] = {};
  for (const stage of WORKFLOW_STAGES) {
    const ms = span(record.events, stage.first, stage.last) ?? Number.NaN;
    stages[stage.name] = stage.poll ? { ms, polls: visits(record.events, stage.poll) } : { ms };
  }
  // VerifyArchive's own output, wherever the workflow keeps its runs.
  const verified = record.events.findLast(
    (e) => e.type === 'StateExited' && e.state?.name === 'VerifyArchive',
  );
  const output = verified?.state?.output as { verification?: { size?: number } } | undefined;
  return { ms, archiveBytes: output?.verification?.size ?? Number.NaN, stages };
}

// ---------------------------------------------------------------------------
// Verify stage memory and bundle sizes.

interface VerifyMemory extends VerifyReading {
  archive: string;
}

async function measureVerify(
  archive: string,
  archivePath: string,
  manifest: Manifest,
  dir: string,
): Promise<VerifyMemory> {
  const measured = await readArchiveInChild(archivePath, manifest, join(dir, `${archive}.manifest.json`));
  if (measured.problems.length > 0)
    throw new Error(`readArchive found problems in ${archive}: ${measured.problems.join('; ')}`);
  return { archive, ...measured };
}

interface Bundle {
  fn: string;
  bytes: number;
  gzipBytes: number;
  /** The packages that weigh most in the minified output. */
  heaviest: { name: string; bytes: number }[];
}

function packageOf(input: string): string {
  const parts = input.split('node_modules/').at(-1)?.split('/') ?? [];
  if (!input.includes('node_modules/')) return '(project)';
  return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? input);
}

async function bundleSizes(dir: string): Promise<Bundle[]> {
  const functions = readdirSync(join(PROJECT_ROOT, 'functions')).filter((f) =>
    existsSync(join(PROJECT_ROOT, 'functions', f, 'handler.ts')),
  );
  const bundles: Bundle[] = [];
  for (const fn of functions.sort()) {
    const outfile = join(dir, `${fn}.mjs`);
    const result = await build({
      entryPoints: [join(PROJECT_ROOT, 'functions', fn, 'handler.ts')],
      bundle: true,
      minify: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      external: ['pg-native'],
      outfile,
      metafile: true,
      logLevel: 'error',
    });
    const contents = readFileSync(outfile);
    const byPackage = new Map<string, number>();
    for (const output of Object.values(result.metafile.outputs)) {
      for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
        const name = packageOf(input);
        byPackage.set(name, (byPackage.get(name) ?? 0) + bytesInOutput);
      }
    }
    const heaviest = [...byPackage]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([name, bytes]) => ({ name, bytes }));
    bundles.push({ fn, bytes: contents.length, gzipBytes: gzipSync(contents).length, heaviest });
  }
  return bundles;
}

// ---------------------------------------------------------------------------
// Output.

const kib = (bytes: number) => (bytes / 1024).toFixed(0);
const sec = (s: Stats | undefined, repeat: number) =>
  s === undefined
    ? ''
    : repeat > 1
      ? `${(s.median / 1000).toFixed(2)} [${(s.min / 1000).toFixed(2)}]`
      : (s.median / 1000).toFixed(2);

// ---------------------------------------------------------------------------

interface PipelineResult {
  id: string;
  label: string;
  dumpCommand: string;
  restoreCommand?: string;
  dumpMs: Stats;
  restoreMs?: Stats;
  archiveBytes?: number;
  sha256?: string;
}

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, { repeat: { type: 'string', default: '1' } });
  if (!values) return 0;
  const scale = wholeNumber(values.scale, 1);
  const repeat = wholeNumber(values.repeat, 1);
  if (scale === undefined || repeat === undefined) {
    console.error(
      `--scale and --repeat take whole numbers ≥ 1 (got --scale ${values.scale} --repeat ${values.repeat}).\n\n${USAGE}`,
    );
    return 2;
  }

  onInterrupt();

  const startedAt = new Date();
  const tmp = mkdtempSync(join(tmpdir(), 'kennel-backup-bench-'));
  const archives = join(tmp, 'archives');
  mkdirSync(archives);
  let server: PostgresServer | undefined;
  let environment: LocalEnvironment | undefined;
  const stopServer = stopOnce('PostgreSQL', () => server);
  const stopEnvironment = stopOnce('the local S3', () => environment);
  try {
    log(`throwaway PostgreSQL cluster, seeding ${DATABASE} at scale ${scale} …`);
    server = await startPostgres();
    const cluster = server;
    const seedMs = timedSeed(cluster, DATABASE, scale);
    // Autovacuum would have run on a production database; without it the first reader
    // after the bulk load pays for hint bits and would make whichever runs first slow.
    psql(cluster, DATABASE, ['-c', 'VACUUM (ANALYZE)']);
    const database = describeDatabase(cluster, scale, seedMs);
    log(`${DATABASE}: ${mib(database.sizeBytes)} MiB (seeded in ${(seedMs / 1000).toFixed(1)} s)`);

    environment = await startLocalEnvironment({
      dataDir: join(tmp, 'local'),
      databaseUrl: `${cluster.url}/${DATABASE}`,
    });
    const local = environment;
    Object.assign(process.env, local.functionEnv);
    const project = await loadProject();
    // The workflow imports every handler; loaded here once, the cold start is not in its time.
    const importStarted = performance.now();
    await importHandlers();
    const handlersImportMs = performance.now() - importStarted;

    const shellEnv = { ...local.hostEnv, DB: DATABASE, BUCKET: local.bucket, S3_ENDPOINT: local.s3Endpoint };
    const versions = {
      node: process.version,
      pg_dump: version('pg_dump --version', shellEnv),
      server: queryValue(cluster, DATABASE, 'SHOW server_version'),
      zstd: version('zstd --version', shellEnv).replaceAll('*', '').trim(),
      gzip: version('gzip --version', shellEnv),
      aws: version('aws --version', shellEnv),
    };
    log('warm-up dump (untimed) …');
    await sh(`${plainDump} > /dev/null`, shellEnv);

    const dumpMs = new Map<string, number[]>(PIPELINES.map((p) => [p.id, []]));
    const restoreMs = new Map<string, number[]>(PIPELINES.map((p) => [p.id, []]));
    const archiveBytes = new Map<string, number>();
    const archiveSha = new Map<string, string>();
    const dumpStage: DumpStageRun[] = [];
    const workflow: WorkflowRun[] = [];
    const verify: VerifyMemory[] = [];
    let plainDumpBytes = Number.NaN;
    const loadBefore = loadavg();

    for (let round = 1; round <= repeat; round += 1) {
      for (const pipeline of PIPELINES) {
        const archive = join(archives, pipeline.id);
        const env = { ...shellEnv, ARCHIVE: archive };
        log(`round ${round}/${repeat}: ${pipeline.label} …`);
        const dumped = await sh(pipeline.dump, env);
        dumpMs.get(pipeline.id)?.push(dumped.ms);
        if (existsSync(archive)) {
          archiveBytes.set(pipeline.id, statSync(archive).size);
          archiveSha.set(pipeline.id, await sha256File(archive));
        }
        if (pipeline.restore) {
          log(`round ${round}/${repeat}: restore ${pipeline.label} …`);
          restoreMs
            .get(pipeline.id)
            ?.push(await timedRestore({ ...pipeline, restore: pipeline.restore }, cluster, env, database));
        }
        rmSync(archive, { force: true });
      }

      log(`round ${round}/${repeat}: our dump stage (database-backup host script) …`);
      const stage = await runDumpStage(project, local, round);
      dumpStage.push(stage);
      if (round === 1) {
        log('verify stage memory (readArchive in a child process) …');
        const manifest = await project.catalog.readManifest(stage.manifestKey);
        // Controls for "memory stays flat": a schema-only dump (a complete plain dump of a
        // few KB) and the dump sixteen times over, recompressed: past the point where V8's
        // lazy garbage collection levels off, with the first dump's header and the last one's trailer. Recompressed into one frame, because Node's
        // zstd decompressor stops at the end of the first frame of a concatenation.
        const control = async (label: string, path: string, command: string) => {
          await sh(command, { ...shellEnv, ARCHIVE: path, SOURCE: stage.archivePath });
          const archive = {
            ...manifest.archive,
            key: `bench/${basename(path)}`,
            size: statSync(path).size,
            sha256: await sha256File(path),
          };
          verify.push(await measureVerify(label, path, { ...manifest, archive }, tmp));
          rmSync(path, { force: true });
        };
        await control(
          'schema-only dump',
          join(archives, 'schema-only.sql.zst'),
          `pg_dump --schema-only "$DB" | ${CODECS.zstd.compress} > "$ARCHIVE"`,
        );
        verify.push(await measureVerify('archive of the dump stage', stage.archivePath, manifest, tmp));
        await control(
          `that dump ×${CONTROL_COPIES}, recompressed`,
          join(archives, 'x4.sql.zst'),
          `for i in $(seq ${CONTROL_COPIES}); do ${CODECS.zstd.decompress} < "$SOURCE"; done | ${CODECS.zstd.compress} > "$ARCHIVE"`,
        );
        plainDumpBytes =
          verify.find((v) => v.archive === 'archive of the dump stage')?.uncompressedSize ?? Number.NaN;
      }
      rmSync(stage.archivePath, { force: true });

      log(`round ${round}/${repeat}: the whole database-backup workflow …`);
      workflow.push(await runBackupWorkflow(local, cluster));
    }
    const loadAfter = loadavg();

    log('bundling every function with esbuild …');
    const bundles = await bundleSizes(join(tmp, 'bundles'));

    // ---- Results.
    const pipelines: PipelineResult[] = PIPELINES.map((p) => {
      const restore = restoreMs.get(p.id) ?? [];
      const bytes = archiveBytes.get(p.id);
      const sha = archiveSha.get(p.id);
      return {
        id: p.id,
        label: p.label,
        dumpCommand: p.dump,
        ...(p.restore ? { restoreCommand: p.restore } : {}),
        dumpMs: stats(dumpMs.get(p.id) ?? []),
        ...(restore.length > 0 ? { restoreMs: stats(restore) } : {}),
        ...(bytes !== undefined ? { archiveBytes: bytes } : {}),
        ...(sha !== undefined ? { sha256: sha } : {}),
      };
    });
    const byId = (id: string): PipelineResult => {
      const found = pipelines.find((p) => p.id === id);
      if (!found) throw new Error(`No pipeline ${id}`);
      return found;
    };
    const source = byId('source-gzip');
    const devnull = byId('devnull');
    const ours = byId(DEFAULT_PIPELINE);
    const stageMs = stats(dumpStage.map((d) => d.ms));
    const workflowMs = stats(workflow.map((w) => w.ms));
    const sourceBytes = source.archiveBytes ?? Number.NaN;
    const ourBytes = dumpStage.at(-1)?.archiveBytes ?? Number.NaN;
    const pick = (s: Stats | undefined, which: 'median' | 'min') => s?.[which] ?? Number.NaN;
    const ratiosBy = (which: 'median' | 'min'): Record<string, number> => ({
      workflowVsSourceDump: pick(workflowMs, which) / pick(source.dumpMs, which),
      workflowVsDevNull: pick(workflowMs, which) / pick(devnull.dumpMs, which),
      dumpStageVsSourceDump: pick(stageMs, which) / pick(source.dumpMs, which),
      dumpStageVsDevNull: pick(stageMs, which) / pick(devnull.dumpMs, which),
      dumpStageVsSourceDumpAndUpload: pick(stageMs, which) / pick(byId('source-gzip-upload').dumpMs, which),
      archiveSizeVsSource: ourBytes / sourceBytes,
      restoreVsSource: pick(ours.restoreMs, which) / pick(source.restoreMs, which),
    });
    const ratios = { median: ratiosBy('median'), min: ratiosBy('min') };

    const stageNames = WORKFLOW_STAGES.map((s) => s.name);
    const workflowStages = Object.fromEntries(
      stageNames.map((name) => {
        const runs = workflow.map((w) => w.stages[name]);
        return [
          name,
          { ms: stats(runs.map((r) => r?.ms ?? Number.NaN)), polls: runs.map((r) => r?.polls ?? null) },
        ];
      }),
    );

    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { scale, repeat },
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? 'unknown',
        totalMemBytes: totalmem(),
        loadBefore,
        loadAfter,
      },
      versions,
      notes: [
        'Times are wall clock in ms; with --repeat > 1, Stats has every run, min and median. Ratios use medians (and mins).',
        'The cluster runs with fsync=off (a throwaway test cluster): restore times are without disk flushes.',
        'One untimed pg_dump warmed the caches before the first timed run; the handlers were imported before the workflow ran.',
        'source-gzip-upload is an extra: the source pipeline followed by its aws s3 cp to the same local S3 as our dump stage.',
      ],
      database: { ...database, plainDumpBytes },
      handlersImportMs,
      pipelines,
      dumpStage: { ms: stageMs, archiveBytes: dumpStage.map((d) => d.archiveBytes) },
      workflow: { ms: workflowMs, archiveBytes: workflow.map((w) => w.archiveBytes), stages: workflowStages },
      ratios,
      verifyMemory: verify,
      bundles,
    };
    mkdirSync(RESULTS_DIR, { recursive: true });
    const resultFile = join(RESULTS_DIR, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(resultFile, `${JSON.stringify(result, null, 2)}\n`);

    // ---- Table.
    // Not byte-identical: since 15.14 every plain dump carries a random \restrict key.
    const same = Math.abs((byId('plain-gzip').archiveBytes ?? 0) / sourceBytes - 1) < 0.001;
    const timeHead = repeat > 1 ? ` s, median [min] of ${repeat}` : ' s';
    const out: string[] = [];
    out.push(
      `kennel-backup bench — scale ${scale}, ${DATABASE} ${mib(database.sizeBytes)} MiB (pg_database_size); ` +
        `dumped tables ${mib(database.dumpedTablesBytes)} MiB (plain dump ${mib(plainDumpBytes)} MiB), excluded ${EXCLUDED.join(', ')} ${mib(database.excludedTablesBytes)} MiB; ` +
        `${cpus().length} CPUs, load ${loadBefore.map((l) => l.toFixed(2)).join('/')} → ${loadAfter.map((l) => l.toFixed(2)).join('/')}`,
      `${versions.pg_dump}; server ${versions.server}; ${versions.zstd}; ${versions.gzip}; node ${versions.node}`,
      '',
      table(
        ['pipeline', `dump${timeHead}`, 'archive MiB', 'size vs source', `restore${timeHead}`],
        [
          ...pipelines.map((p) => [
            `${p.label}${p.id === DEFAULT_PIPELINE ? '  ← default' : ''}`,
            sec(p.dumpMs, repeat),
            p.archiveBytes !== undefined ? mib(p.archiveBytes, 2) : '',
            p.archiveBytes !== undefined ? ratio(p.archiveBytes / sourceBytes) : '',
            sec(p.restoreMs, repeat),
          ]),
          [
            'our dump stage (host script: snapshot, counts, zstd, tee, S3, manifest)',
            sec(stageMs, repeat),
            mib(ourBytes, 2),
            ratio(ourBytes / sourceBytes),
            '',
          ],
          [
            'whole database-backup workflow (local)',
            sec(workflowMs, repeat),
            mib(workflow.at(-1)?.archiveBytes ?? Number.NaN, 2),
            '',
            '',
          ],
        ],
      ),
      '',
      'Restores: source = gunzip -c | psql (no ON_ERROR_STOP, autocommit); plain = decompress | psql ON_ERROR_STOP --single-transaction;',
      'custom = pg_restore --single-transaction. Every restore went into a fresh database and was checked table by table, then dropped.',
      same
        ? 'source: pg_dump | gzip and plain | gzip -6 -c are one pipeline (gzip defaults to -6, same size): their gap is a noise gauge.'
        : '',
      '',
      table(
        [`workflow stage (from execution events)`, `time${timeHead}`, 'polls'],
        [
          ...stageNames.map((name) => [
            name,
            sec(workflowStages[name]?.ms, repeat),
            (workflowStages[name]?.polls ?? []).filter((p) => p !== null).join(', '),
          ]),
          ['whole workflow (wall clock around runWorkflow)', sec(workflowMs, repeat), ''],
        ],
      ),
      `(handler modules imported beforehand in ${(handlersImportMs / 1000).toFixed(2)} s: a cold start, not counted above)`,
      '',
      table(
        ['ratio (same run)', 'median', ...(repeat > 1 ? ['min'] : [])],
        [
          ['workflow / source pg_dump | gzip', 'workflowVsSourceDump'],
          ['workflow / pg_dump > /dev/null', 'workflowVsDevNull'],
          ['dump stage / source pg_dump | gzip', 'dumpStageVsSourceDump'],
          ['dump stage / pg_dump > /dev/null', 'dumpStageVsDevNull'],
          ['dump stage / source pg_dump | gzip + aws s3 cp (extra)', 'dumpStageVsSourceDumpAndUpload'],
          ['our archive size / source gzip size', 'archiveSizeVsSource'],
          ['our restore (zstd -dc | psql -1) / source restore (gunzip -c | psql)', 'restoreVsSource'],
        ].map(([label, key]) => [
          label ?? '',
          ratio(ratios.median[key ?? ''] ?? Number.NaN),
          ...(repeat > 1 ? [ratio(ratios.min[key ?? ''] ?? Number.NaN)] : []),
        ]),
      ),
      '',
      table(
        [
          'verify stage: readArchive in a child',
          'archive MiB',
          'dump MiB',
          'RSS before',
          'RSS peak (sampled)',
          'RSS after',
          'max RSS (getrusage)',
          'time s',
        ],
        verify.map((v) => [
          v.archive,
          mib(v.size),
          mib(v.uncompressedSize),
          mib(v.rssBefore),
          mib(v.rssPeakSampled),
          mib(v.rssAfter),
          mib(v.maxRss),
          (v.ms / 1000).toFixed(2),
        ]),
      ),
      '(RSS in MiB)',
      '',
      table(
        ['function bundle (esbuild, minified, esm, node24)', 'KiB', 'gzip KiB', 'heaviest inputs (KiB)'],
        bundles.map((b) => [
          b.fn,
          kib(b.bytes),
          kib(b.gzipBytes),
          b.heaviest.map((h) => `${h.name} ${kib(h.bytes)}`).join(', '),
        ]),
      ),
      '',
      `JSON: ${resultFile}`,
    );
    console.log(out.filter((line, i, all) => line !== '' || all[i - 1] !== '').join('\n'));
    return 0;
  } finally {
    await cleanUp(tmp, stopEnvironment, stopServer);
  }
}

await runMain(main);

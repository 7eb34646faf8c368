import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import {
  type LocalEnvironment,
  psql,
  seedKennelDatabase,
  startLocalEnvironment,
} from '../local/environment.ts';
import { localHost } from '../local/host.ts';
import { asServerUser, findPostgresBinDir, freePort, type PostgresServer } from '../local/postgres.ts';
import { type ExecutionRecord, PROJECT_ROOT, runWorkflow } from '../local/runner.ts';
import type { Manifest } from '../shared/catalog/manifest.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { type Config, parseConfig, type Target } from '../shared/core/config.ts';
import { shellQuote } from '../shared/host/shell.ts';

/**
 * What every benchmark script does the same way: its progress log, its interruption,
 * its shell commands, its statistics, its command-line numbers and its readings of the
 * database and of an execution's events. The scripts keep what they measure.
 */

/** Progress on stderr, so that stdout holds the results alone. */
export const log = (line: string) =>
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);

// ---------------------------------------------------------------------------
// Interruption.

/** The signal that interrupted the benchmark, if one did. */
let interrupted: string | undefined;

/** Fails the next step of an interrupted benchmark, so that it goes straight to its cleanup. */
export function checkInterrupted(): void {
  if (interrupted) throw new Error(`Interrupted by ${interrupted}; cleaning up.`);
}

/** Shell commands running now, so that an interruption stops them (their whole process group). */
const running = new Set<ChildProcess>();

/** Counts `child` among the running commands until it ends. */
export function track(child: ChildProcess): void {
  running.add(child);
  const forget = () => running.delete(child);
  child.on('error', forget);
  child.on('close', forget);
}

function stopChildren(): void {
  for (const child of running) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
}

/**
 * On SIGINT or SIGTERM: remember the signal (checkInterrupted then fails the next step),
 * stop the running shell commands and call `stop`. A workflow runs inside this process,
 * so no signal reaches it: `stop` takes PostgreSQL away from under it to make it fail fast.
 */
export function onInterrupt(stop?: (signal: string) => void): void {
  const onSignal = (signal: string) => {
    interrupted = signal;
    stopChildren();
    stop?.(signal);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

/**
 * Stops what `current` returns at most once, whether a signal or the cleanup asks first;
 * a failure to stop is logged, not thrown, so that the rest of the cleanup still runs.
 * Nothing started yet: nothing stopped, and the next call tries again.
 */
export function stopOnce(
  what: string,
  current: () => { stop(): Promise<void> } | undefined,
): () => Promise<void> {
  let stopped: Promise<void> | undefined;
  return () => {
    stopped ??= current()
      ?.stop()
      .catch((error: unknown) => log(`stopping ${what} failed: ${(error as Error).message}`));
    return stopped ?? Promise.resolve();
  };
}

/** The end of every benchmark, failed or not: its shell commands, then `stops` in order, then `tmp`. */
export async function cleanUp(tmp: string, ...stops: (() => Promise<void>)[]): Promise<void> {
  stopChildren();
  log('cleaning up: local S3, PostgreSQL cluster, temporary files …');
  for (const stop of stops) await stop();
  rmSync(tmp, { recursive: true, force: true });
}

/**
 * Runs `run` on a local stack of its own (a cluster seeded at `scale`, archiving
 * its WAL to the local S3) in a new temporary directory `tmp`; on every way out,
 * an interruption included, stops the stack and removes the directory.
 */
export async function withLocalStack<T>(
  name: string,
  scale: number,
  run: (environment: LocalEnvironment, tmp: string) => Promise<T>,
): Promise<T> {
  const tmp = mkdtempSync(join(tmpdir(), `kennel-backup-bench-${name}-`));
  // The cluster lives inside it, and its server user must get through: else
  // serverUserDir (local/postgres.ts) puts it under that user's home, which
  // removing `tmp` leaves behind (0.9 to 3.9 GB a run).
  chmodSync(tmp, 0o711);
  let environment: LocalEnvironment | undefined;
  const stopEnvironment = stopOnce('the local stack', () => environment);
  onInterrupt(() => void stopEnvironment());
  try {
    log(`local stack: a cluster seeded at scale ${scale}, archiving to the local S3 …`);
    environment = await startLocalEnvironment({ dataDir: join(tmp, 'local'), seedScale: scale });
    return await run(environment, tmp);
  } finally {
    await cleanUp(tmp, stopEnvironment);
  }
}

/** Runs a benchmark's main and sets the exit code: 130 after an interruption, 1 after a failure. */
export async function runMain(main: () => Promise<number>): Promise<void> {
  process.exitCode = await main().catch((error: unknown) => {
    const message = (error as Error).message;
    console.error(interrupted ? `bench: interrupted by ${interrupted} (${message})` : `bench: ${message}`);
    return interrupted ? 130 : 1;
  });
}

// ---------------------------------------------------------------------------
// Shell commands.

/** Runs bash (errexit and pipefail on) and times it by the wall clock, from spawn to exit. */
export function sh(command: string, env: Record<string, string>): Promise<{ ms: number; stderr: string }> {
  checkInterrupted();
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('bash', ['-c', `set -euo pipefail\n${command}`], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
      // A process group of its own, which stopChildren ends with every command of the pipeline.
      detached: true,
    });
    track(child);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 65_536) stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const ms = performance.now() - started;
      if (code === 0) resolve({ ms, stderr });
      else
        reject(
          new Error(`\`${command}\` failed (${signal ?? `exit ${code}`}):\n${stderr.trimEnd().slice(-2000)}`),
        );
    });
  });
}

/**
 * A rendered host script run as a host command stage sends it, on the local host:
 * timed from the send to the script's exit; fails unless it succeeded.
 */
export async function hostScript(
  hostEnv: Record<string, string>,
  target: Target,
  script: string,
  options: { what: string; timeoutSeconds: number },
): Promise<{ ms: number; stdout: string }> {
  checkInterrupted();
  const host = localHost(hostEnv);
  const started = performance.now();
  const { commandId, instanceId } = await host.send({
    target,
    script,
    comment: `${options.what} (bench)`,
    timeoutSeconds: options.timeoutSeconds,
  });
  await host.drain();
  const ms = performance.now() - started;
  const result = await host.get(commandId, instanceId);
  if (result.status !== 'Success')
    throw new Error(`${options.what} ended ${result.status}:\n${result.stderr.slice(-2000)}`);
  return { ms, stdout: result.stdout };
}

// ---------------------------------------------------------------------------
// Results.

/** The machine a result was measured on: its processors and their load average (1, 5, 15 min). */
export const machine = () => ({
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? 'unknown',
  load: loadavg(),
});

/** `2 CPUs, load 1.00/0.90/0.80`: the machine, for a result's first line. */
export const machineLine = () =>
  `${cpus().length} CPUs, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join('/')}`;

const RESULTS_DIR = join(PROJECT_ROOT, 'bench', 'results');

/** Writes a benchmark's result as JSON to bench/results/<name>-<its start>.json; returns the file. */
export function saveResult(name: string, startedAt: Date, result: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${name}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

/** Prints a result: its headline, its table and where its JSON is. */
export function printResult(headline: string, tableText: string, resultFile: string): void {
  console.log([headline, '', tableText, '', `JSON: ${resultFile}`].join('\n'));
}

/** What bench/verify-memory.ts prints of one readArchive. */
export interface VerifyReading {
  ms: number;
  size: number;
  uncompressedSize: number;
  rssBefore: number;
  rssPeakSampled: number;
  rssAfter: number;
  maxRss: number;
  heapUsedBefore: number;
  heapUsedAfter: number;
  problems: string[];
}

/**
 * The verify stage's readArchive on a local archive, in a child process of its
 * own (bench/verify-memory.ts), so that its time and peak memory are its alone;
 * the manifest is written beside as `manifestPath`.
 */
export async function readArchiveInChild(
  archivePath: string,
  manifest: Manifest,
  manifestPath: string,
): Promise<VerifyReading> {
  checkInterrupted();
  writeFileSync(manifestPath, JSON.stringify(manifest));
  const child = spawn(
    process.execPath,
    [join(PROJECT_ROOT, 'bench', 'verify-memory.ts'), archivePath, manifestPath],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new Error(`The verify-memory child failed (exit ${code}):\n${stderr.slice(-2000)}`);
  return JSON.parse(stdout) as VerifyReading;
}

// ---------------------------------------------------------------------------
// Statistics and the command line.

export interface Stats {
  runs: number[];
  median: number;
  min: number;
  max: number;
}

/** The median; NaN for no values. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export const stats = (runs: number[]): Stats => ({
  runs,
  median: median(runs),
  min: Math.min(...runs),
  max: Math.max(...runs),
});

const COMMON_OPTIONS = {
  scale: { type: 'string', default: '20' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * The command line: `options` and the two that every benchmark takes, --scale (the
 * sample data's size, as text) and --help. Undefined after --help, which prints `usage`.
 */
export function readCommandLine<const O extends ParseArgsOptionsConfig>(usage: string, options: O) {
  const { values } = parseArgs<{ options: typeof COMMON_OPTIONS & O }>({
    options: { ...COMMON_OPTIONS, ...options },
  });
  // TypeScript cannot resolve the parsed values of a generic O here; --help is in COMMON_OPTIONS.
  if ((values as { help?: boolean }).help) {
    console.error(usage);
    return undefined;
  }
  return values;
}

/** A whole number ≥ `min` from the command line; undefined for anything else. */
export function wholeNumber(text: string | undefined, min: number): number | undefined {
  const n = Number(text);
  return text !== undefined && Number.isInteger(n) && n >= min ? n : undefined;
}

/** Comma-separated whole numbers ≥ 1 (`1,4,8`); undefined if any is not. */
export function wholeNumbers(text: string): number[] | undefined {
  const list = text.split(',').map(Number);
  return list.every((n) => Number.isInteger(n) && n >= 1) ? list : undefined;
}

// ---------------------------------------------------------------------------
// The database and the workflows.

/** A pgbench database `name` at `scale` (about 15 MB each) on the local stack's cluster. */
export async function createPgbenchDatabase(environment: LocalEnvironment, name: string, scale: number) {
  log(`pgbench -i -s ${scale} …`);
  psql(environment.postgres, 'postgres', ['-c', `CREATE DATABASE ${name}`]);
  await sh(`pgbench -i -q -s ${scale} ${name}`, environment.hostEnv);
}

/**
 * What production would have had after a bulk load, untimed: each database
 * vacuumed and analyzed (else the first reader pays for hint bits) and a
 * checkpoint (else the first backup's own would write the load's pages).
 */
export function settle(server: PostgresServer, databases: readonly string[]): void {
  for (const database of databases) psql(server, database, ['-c', 'VACUUM (ANALYZE)']);
  psql(server, 'postgres', ['-c', 'CHECKPOINT']);
}

/** Seeds the sample data at `scale` into a new database; returns how long it took, in ms. */
export function timedSeed(server: PostgresServer, database: string, scale: number): number {
  const started = performance.now();
  seedKennelDatabase(server, database, scale);
  return performance.now() - started;
}

/** The one value a query returns, as text. */
export const queryValue = (server: PostgresServer, database: string, sql: string) =>
  psql(server, database, ['-A', '-t', '-c', sql]).trim();

/** Exact rows of each table; `where` restricts every count. */
export function rowCounts(
  server: PostgresServer,
  database: string,
  tables: readonly string[],
  where = 'true',
): Record<string, number> {
  const counts = tables.map((t) => `'${t}', (SELECT count(*) FROM ${t} WHERE ${where})`).join(', ');
  const json = queryValue(server, database, `SELECT json_build_object(${counts})`);
  return JSON.parse(json) as Record<string, number>;
}

/** Imports every handler once, so that no workflow's first run pays for their cold start. */
export async function importHandlers(): Promise<void> {
  for (const fn of readdirSync(join(PROJECT_ROOT, 'functions')))
    await import(join(PROJECT_ROOT, 'functions', fn, 'handler.ts'));
}

type Events = ExecutionRecord['events'];

/**
 * First entry into `first` to the last exit of `last`: a Start/Wait/Check loop, or one
 * state. Null if the execution never went there.
 */
export function span(events: Events, first: string, last: string): number | null {
  const entered = events.find((e) => e.type === 'StateEntered' && e.state?.name === first);
  const exited = events.findLast((e) => e.type === 'StateExited' && e.state?.name === last);
  return entered && exited ? exited.timestamp - entered.timestamp : null;
}

/** How many times the execution left `state`: the polls of a Check state. */
export const visits = (events: Events, state: string) =>
  events.filter((e) => e.type === 'StateExited' && e.state?.name === state).length;

// ---------------------------------------------------------------------------
// The bare engine.

/** pgBackRest on the local stanza as the server user, as one shell word list. */
export function pgbackrestCommand(target: Target, args: string[]): string {
  const pg = target.pgbackrest;
  if (!pg) throw new Error('The local target has no pgBackRest settings.');
  const [cmd, argv] = asServerUser('pgbackrest', [
    `--config=${pg.configFile}`,
    `--stanza=${target.name}`,
    ...args,
  ]);
  return `cd / && ${[cmd, ...argv].map(shellQuote).join(' ')}`;
}

/**
 * The bare engine's recovery, as an operator would run it by hand:
 * `pgbackrest restore <recoveryArgs> --target-action=promote --archive-mode=off`
 * into `scratch` (created for the server user; outside a private temporary
 * directory it cannot enter), then the instance started on a free port and
 * waited for until promoted. `query` (one value, in `database`) is read from the
 * promoted instance. The instance is stopped and `scratch` removed on every way
 * out. Milliseconds: restore (the files), recovery (start to promoted).
 */
export async function bareRecovery(
  hostEnv: Record<string, string>,
  target: Target,
  options: { recoveryArgs: string[]; scratch: string; database?: string; query?: string },
): Promise<{ restoreMs: number; recoveryMs: number; value: string }> {
  const { scratch } = options;
  const data = join(scratch, 'data');
  const sockets = join(scratch, 'sockets');
  const bin = findPostgresBinDir();
  const port = await freePort();
  const asServer = (command: string, args: string[]) => {
    const [cmd, argv] = asServerUser(command, args);
    return [cmd, ...argv].map(shellQuote).join(' ');
  };
  const query = (sql: string) =>
    asServer(join(bin, 'psql'), [
      '-X',
      '-qAt',
      '-h',
      sockets,
      '-p',
      String(port),
      '-d',
      options.database ?? 'postgres',
      '-c',
      sql,
    ]);
  await sh(
    `install -d -m 0700 -o postgres -g postgres ${[scratch, data, sockets].map(shellQuote).join(' ')}`,
    hostEnv,
  );
  try {
    const restore = await sh(
      pgbackrestCommand(target, [
        'restore',
        ...options.recoveryArgs,
        '--target-action=promote',
        '--archive-mode=off',
        `--pg1-path=${data}`,
      ]),
      hostEnv,
    );
    const serverOptions = `-p ${port} -k ${sockets} -c listen_addresses='' -c archive_mode=off`;
    const recovery = await sh(
      [
        `${asServer(join(bin, 'pg_ctl'), ['start', '-w', '-t', '86400', '-D', data, '-l', join(scratch, 'server.log'), '-o', serverOptions])} >/dev/null`,
        `until [[ $(${query('SELECT pg_is_in_recovery()')}) == f ]]; do sleep 0.1; done`,
      ].join('\n'),
      hostEnv,
    );
    let value = '';
    if (options.query) {
      const file = join(scratch, 'value');
      await sh(`${query(options.query)} > ${shellQuote(file)}`, hostEnv);
      value = readFileSync(file, 'utf8').trim();
    }
    return { restoreMs: restore.ms, recoveryMs: recovery.ms, value };
  } finally {
    await sh(
      `${asServer(join(bin, 'pg_ctl'), ['stop', '-m', 'immediate', '-D', data])} >/dev/null 2>&1 || true; rm -rf ${shellQuote(scratch)}`,
      hostEnv,
    );
  }
}

/**
 * The local target's configuration with its logical dump pointed at `database`
 * (an empty one, so that a workflow's dump beside its physical run is trivial and
 * the physical run has the machine to itself), set in this process's
 * environment for the handlers; every handler imported once after it.
 */
export async function physicalOnlyConfig(
  functionEnv: Record<string, string>,
  database: string,
): Promise<{ config: Config; target: Target }> {
  const targets = JSON.parse(functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
  const env = { ...functionEnv, BACKUP_TARGETS: JSON.stringify(targets.map((t) => ({ ...t, database }))) };
  Object.assign(process.env, env);
  const { parseConfig, findTarget } = await import('../shared/core/config.ts');
  const config = parseConfig(env);
  const target = findTarget(config, 'local');
  if (!target) throw new Error('no local target');
  await importHandlers();
  return { config, target };
}

/**
 * A workflow run end to end by the local runner on the local stack, timed by the
 * wall clock (ms); throws, naming `what`, unless it SUCCEEDED.
 */
export async function succeededWorkflow(
  environment: LocalEnvironment,
  what: string,
  options: { workflow: string; input: unknown; waitMs?: number },
): Promise<{ ms: number; record: ExecutionRecord }> {
  checkInterrupted();
  const started = performance.now();
  const record = await runWorkflow(
    { ...options, historyDir: environment.paths.historyDir },
    {
      host: localHost(environment.hostEnv, {}, createS3Client(parseConfig(environment.functionEnv))),
      databaseUrl: environment.postgres.url,
      alertsFile: environment.paths.alertsFile,
      print: log,
    },
  );
  const ms = performance.now() - started;
  if (record.status !== 'SUCCEEDED')
    throw new Error(`${what} ended ${record.status}: ${record.error}: ${record.cause}`);
  return { ms, record };
}

import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { paginateListObjectsV2, type S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';
import { type LocalEnvironment, psql, startLocalEnvironment } from '../local/environment.ts';
import {
  asServerUser,
  freePort,
  giveToServerUser,
  type PostgresServer,
  readIfExists,
} from '../local/postgres.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { parseConfig } from '../shared/core/config.ts';
import { pgbackrestOf, pgbackrestPath } from '../shared/host/pgbackrest-conf.ts';
import { MAX_ARCHIVE_TIMEOUT_SECONDS } from '../shared/host/prepare.ts';
import { shellQuote } from '../shared/host/shell.ts';
import {
  checkInterrupted,
  cleanUp,
  log,
  onInterrupt,
  queryValue,
  readCommandLine,
  runMain,
  type Stats,
  sh,
  stats,
  track,
  wholeNumber,
} from './harness.ts';
import { markdownTable, ratio } from './table.ts';

/**
 * RPO measured (issue 10, figures for the closing note): how much committed work is
 * lost with the database host when PostgreSQL archives its WAL through pgBackRest
 * and recovery has the repository alone. Each trial, on a throwaway local stack of
 * its own (local S3, cluster, stanza; the stack's archive_timeout is 60 s):
 *  1. a pgBackRest full backup (the bare `pgbackrest backup`, spawned, never blocking);
 *  2. load for a random 60–180 s: pgbench (paced) and ledger clients that commit one
 *     row at a time and append its id and the moment the client saw the COMMIT
 *     acknowledged to a file outside the cluster. That file is the ground truth:
 *     pgbench alone cannot say which of its transactions committed;
 *  3. at that moment the host is lost: the postmaster and every process under it are
 *     frozen (SIGSTOP) and killed (SIGKILL) — an archive-push in flight does not
 *     finish — and the data directory is deleted, so crash recovery from the local
 *     pg_wal cannot pass for a recovery;
 *  4. `pgbackrest restore` with its default type (to the end of the archived WAL)
 *     into a new data directory, started on another port and promoted; its ledger
 *     is compared with the client's file: the committed transactions lost, the age
 *     of the oldest lost one at the kill, the newest survivor's lag behind the kill.
 * Then one trial more with a lower archive_timeout (ALTER SYSTEM and a reload),
 * side by side.
 *
 * What the loss depends on. PostgreSQL hands archive_command completed WAL segments
 * only (16 MiB), so a commit leaves the host when its segment is closed: by filling
 * up, or by archive_timeout, which switches to a new segment "whenever this amount
 * of time has elapsed since the last segment file switch, and there has been any
 * database activity" (PostgreSQL 15 docs, archive_timeout). The segment being
 * written at the kill was never archived, nor were completed segments still queued
 * (.ready) behind the one being pushed. pgBackRest's archive-push runs synchronously
 * here (archive-async=n, its default): the archiver starts one pgbackrest per
 * segment and waits for its upload. So at a WAL rate below 16 MiB per
 * archive_timeout, the oldest lost commit is at most archive_timeout old, plus the
 * push of the segment just closed; at a higher rate segments close sooner, and only
 * a queue of segments the synchronous push cannot keep up with makes it older (the
 * table shows the queue at the kill). A lower archive_timeout narrows the window at
 * a price the docs name: "archived files that are closed early due to a forced
 * switch are still the same length as completely full files. Therefore, it is
 * unwise to use a very short archive_timeout — it will bloat your archive storage.
 * archive_timeout settings of a minute or so are usually reasonable." (streaming
 * replication is their answer below that). pgBackRest compresses each segment
 * (zstd), so what the forced switches cost in the repository is measured, not
 * assumed.
 *
 *   npm run bench:rpo -- [--repeat 3] [--low-timeout 10]
 */

const USAGE = `Usage: npm run bench:rpo -- [--repeat N] [--low-timeout S] [--min-seconds A] [--max-seconds B]
                           [--pgbench-rate TPS] [--ledger-rate TPS] [--clients N] [--scale N]

  --repeat N          trials at the stack's archive_timeout, ${MAX_ARCHIVE_TIMEOUT_SECONDS} s (default 3)
  --low-timeout S     archive_timeout of one more trial, in s (default 10; 0: none)
  --min-seconds A     load before the kill: uniformly random from A …
  --max-seconds B     … to B seconds (default 60 and 180)
  --pgbench-rate TPS  pgbench's paced rate (-R) over all its clients (default 20; 0: as fast as it goes)
  --ledger-rate TPS   ledger commits per second over all ledger clients (default 10)
  --clients N         pgbench clients, and as many ledger clients (default 2)
  --scale N           sample data size of kennel_prod, which every backup carries (default 1)

Each trial starts a throwaway stack of its own (local S3, PostgreSQL, stanza) and removes it.
Results: a Markdown table on stdout, then one line of JSON.`;

/** The issue's goal: no committed transaction older than this is lost (s); the stack's archive_timeout. */
const GOAL_SECONDS = MAX_ARCHIVE_TIMEOUT_SECONDS;
/** The database of the load: pgbench's tables and the ledger. */
const DATABASE = 'rpo';
/** pgbench's scale factor (-i -s): 100,000 accounts per unit. */
const PGBENCH_SCALE = 1;
/** PostgreSQL's default WAL segment size, the unit archive_command gets. */
const SEGMENT_BYTES = 16 * 1024 * 1024;
const KiB = 1024;

// ---------------------------------------------------------------------------
// What a trial started, stopped once in reverse order: at its end, after a failure,
// or on an interruption.

class Started {
  private readonly stops: { what: string; stop: () => Promise<void> }[] = [];
  private stopping: Promise<void> | undefined;

  add(what: string, stop: () => Promise<void>): void {
    this.stops.push({ what, stop });
  }

  stopAll(): Promise<void> {
    this.stopping ??= (async () => {
      for (const { what, stop } of this.stops.splice(0).reverse())
        await stop().catch((error: unknown) => log(`stopping ${what} failed: ${(error as Error).message}`));
    })();
    return this.stopping;
  }
}

/** Runs `bin args` as the cluster's OS user (pgBackRest reads and writes its files as it), without blocking. */
function asOwner(env: Record<string, string>, bin: string, ...args: string[]) {
  const [cmd, argv] = asServerUser(bin, args);
  return sh([cmd, ...argv].map(shellQuote).join(' '), env);
}

const connect = async (server: PostgresServer, port: number, database: string) => {
  const client = new pg.Client({
    host: server.host,
    port,
    user: server.user,
    password: server.password,
    database,
  });
  // A server that dies under an idle client makes it emit 'error'; unheard, that would end this process.
  client.on('error', () => {});
  await client.connect();
  return client;
};

// ---------------------------------------------------------------------------
// The load.

/** The client's record of one ledger row: acknowledged at `ackMs` (epoch ms), or in doubt (COMMIT sent, no answer). */
interface LedgerEntry {
  id: number;
  client: number;
  ackMs: number | null;
}

/** Why a client of the load stopped, and when (epoch ms): after the kill, that is the kill. */
interface Ended {
  atMs: number;
  message: string;
}

/** Fails when a client of the load stopped before the kill: the trial would measure a load that was not there. */
function expectEndedByKill(what: string, ended: Ended[], killMs: number): void {
  const early = ended.find((e) => e.atMs < killMs);
  if (early)
    throw new Error(
      `${what} stopped ${s1((killMs - early.atMs) / 1000)} s before the kill: ${early.message}`,
    );
}

/**
 * Ledger clients, each committing one row at a time (BEGIN, INSERT … RETURNING id,
 * COMMIT), paced to `rate` per second in all, appending `id,ackMs,client` to `file`
 * once the COMMIT is acknowledged (`id,,client` when it was sent and no answer came).
 * Each stops at its first error: the server is gone.
 */
async function startLedger(server: PostgresServer, file: string, clients: number, rate: number) {
  const connections = await Promise.all(
    Array.from({ length: clients }, () => connect(server, server.port, DATABASE)),
  );
  const out = createWriteStream(file);
  const ended: Ended[] = [];
  let stopping = false;
  const intervalMs = (clients * 1000) / rate;
  const loop = async (client: pg.Client, n: number) => {
    let next = performance.now();
    try {
      while (!stopping) {
        await client.query('BEGIN');
        const id = Number(
          (await client.query('INSERT INTO rpo_ledger (client) VALUES ($1) RETURNING id', [n])).rows[0]?.id,
        );
        try {
          await client.query('COMMIT');
        } catch (error) {
          out.write(`${id},,${n}\n`);
          throw error;
        }
        out.write(`${id},${Date.now()},${n}\n`);
        next += intervalMs;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
      }
    } catch (error) {
      ended.push({ atMs: Date.now(), message: (error as Error).message });
    } finally {
      await client.end().catch(() => {});
    }
  };
  const loops = connections.map((client, i) => loop(client, i + 1));
  let stopped: Promise<void> | undefined;
  return {
    ended,
    stop() {
      stopping = true;
      stopped ??= Promise.all(loops).then(() => new Promise<void>((resolve) => out.end(resolve)));
      return stopped;
    },
  };
}

function readLedger(file: string): LedgerEntry[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [id, ack, client] = line.split(',');
      return { id: Number(id), client: Number(client), ackMs: ack ? Number(ack) : null };
    });
}

/** pgbench, paced, for longer than any trial: the kill ends it. */
function startPgbench(env: LocalEnvironment, clients: number, rate: number, seconds: number) {
  const args = ['-n', '-c', String(clients), '-j', String(clients), '-T', String(seconds)];
  if (rate > 0) args.push('-R', String(rate));
  const child: ChildProcess = spawn(join(env.postgres.binDir, 'pgbench'), [...args, DATABASE], {
    env: env.hostEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  track(child);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    if (output.length < 65_536) output += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid)
      process.kill(-child.pid, 'SIGKILL');
    await exited;
  };
  return {
    stop,
    /** Transactions pgbench counted as processed, from its summary; null if it printed none. */
    async finish(): Promise<number | null> {
      // Without its server pgbench ends by itself; a stuck one is stopped.
      if ((await Promise.race([exited.then(() => true), sleep(30_000, false)])) === false) await stop();
      const processed = /number of transactions actually processed: (\d+)/.exec(output)?.[1];
      return processed === undefined ? null : Number(processed);
    },
  };
}

/** One reading of the WAL and of the archiver (pg_stat_archiver). */
interface Sample {
  atMs: number;
  /** WAL generated so far (pg_stat_wal.wal_bytes: records, not the padding of a switched segment). */
  walBytes: number;
  /** The segment being written, and its bytes so far: what is lost with it if it goes now. */
  segment: string;
  segmentOffset: number;
  archivedCount: number;
  lastArchivedWal: string | null;
  lastArchivedMs: number | null;
  failedCount: number;
}

/**
 * How often the sampler reads the server (ms): the resolution of a segment's switch
 * time, and so of the push latency (pgBackRest's synchronous archive-push writes no
 * log file of its own, and PostgreSQL logs no switch).
 */
const SAMPLE_MS = 100;

/** Reads the WAL and the archiver every SAMPLE_MS, until the server is gone. */
async function startSampler(server: PostgresServer) {
  const client = await connect(server, server.port, 'postgres');
  const samples: Sample[] = [];
  const ended: Ended[] = [];
  let stopping = false;
  const loop = (async () => {
    try {
      while (!stopping) {
        const { rows } = await client.query(
          `SELECT (SELECT wal_bytes FROM pg_stat_wal)::text AS wal_bytes,
                  pg_walfile_name(pg_current_wal_lsn()) AS segment,
                  (pg_walfile_name_offset(pg_current_wal_lsn())).file_offset AS segment_offset,
                  archived_count, last_archived_wal, failed_count,
                  (extract(epoch FROM last_archived_time) * 1000)::text AS last_archived_ms
             FROM pg_stat_archiver`,
        );
        const r = rows[0];
        samples.push({
          atMs: Date.now(),
          walBytes: Number(r.wal_bytes),
          segment: r.segment,
          segmentOffset: Number(r.segment_offset),
          archivedCount: Number(r.archived_count),
          lastArchivedWal: r.last_archived_wal,
          lastArchivedMs: r.last_archived_ms === null ? null : Number(r.last_archived_ms),
          failedCount: Number(r.failed_count),
        });
        await sleep(SAMPLE_MS);
      }
    } catch (error) {
      ended.push({ atMs: Date.now(), message: (error as Error).message });
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return {
    samples,
    ended,
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

// ---------------------------------------------------------------------------
// The lost host.

/** Every process under `root`, from /proc/<pid>/stat (its fourth field, after the command in parentheses). */
function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readIfExists(`/proc/${entry}/stat`);
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid > 0) children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  for (let queue = [root]; queue.length > 0; ) {
    const next = queue.flatMap((pid) => children.get(pid) ?? []);
    found.push(...next);
    queue = next;
  }
  return found;
}

const signal = (pid: number, sig: NodeJS.Signals) => {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already.
  }
};

/** Whether `pid` still runs (a zombie does not: it holds nothing, and no one may reap it here). */
const alive = (pid: number) => {
  const stat = readIfExists(`/proc/${pid}/stat`);
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
};

/**
 * The host is lost at once: the postmaster is frozen first (it forks nothing more),
 * then every process under it, round after round until a round finds none new (a
 * backend, the archiver, an archive-push and its children), then all are killed with
 * SIGKILL. Nothing runs on after the moment returned (epoch ms).
 */
async function loseHost(postmaster: number): Promise<{ atMs: number; processes: number }> {
  const atMs = Date.now();
  process.kill(postmaster, 'SIGSTOP');
  const frozen = new Set([postmaster]);
  for (let fresh = descendantsOf(postmaster); fresh.length > 0; ) {
    for (const pid of fresh) {
      signal(pid, 'SIGSTOP');
      frozen.add(pid);
    }
    fresh = descendantsOf(postmaster).filter((pid) => !frozen.has(pid));
  }
  for (const pid of frozen) signal(pid, 'SIGKILL');
  for (let waited = 0; [...frozen].some(alive); waited += 50) {
    if (waited > 10_000)
      throw new Error(`Processes of the killed cluster still run: ${[...frozen].filter(alive)}`);
    await sleep(50);
  }
  return { atMs, processes: frozen.size };
}

// ---------------------------------------------------------------------------
// The repository.

/** The WAL segments in the stanza's archive, every archive id (key → bytes, compressed). */
async function archivedSegments(s3: S3Client, bucket: string, stanza: string): Promise<Map<string, number>> {
  const segments = new Map<string, number>();
  const prefix = `${pgbackrestPath(stanza).slice(1)}/archive/${stanza}/`;
  for await (const page of paginateListObjectsV2({ client: s3 }, { Bucket: bucket, Prefix: prefix }))
    for (const o of page.Contents ?? [])
      if (o.Key && /\/[0-9A-F]{24}-[0-9a-f]{40}\.zst$/.test(o.Key)) segments.set(o.Key, o.Size ?? 0);
  return segments;
}

// ---------------------------------------------------------------------------
// One trial.

interface Options {
  minSeconds: number;
  maxSeconds: number;
  pgbenchRate: number;
  ledgerRate: number;
  clients: number;
  scale: number;
}

interface Trial {
  label: string;
  archiveTimeoutSeconds: number;
  /** The load's length before the kill, drawn at random (s). */
  loadSeconds: number;
  backupSeconds: number;
  /** Ledger transactions whose COMMIT the client saw acknowledged. */
  committed: number;
  lost: number;
  /** The kill minus the acknowledgement of the oldest lost transaction (s); null when none was lost. */
  oldestLostAgeSeconds: number | null;
  /** The kill minus the acknowledgement of the newest transaction recovered (s). */
  newestSurvivorLagSeconds: number | null;
  goalMet: boolean;
  /** COMMITs sent and not answered before the kill, and how many of them the restore has. */
  inDoubt: number;
  inDoubtRecovered: number;
  pgbenchTransactions: number | null;
  /**
   * The WAL generated per second over the load (bytes, pg_stat_wal: backends report it
   * about once a second), and that volume in segments: what would close segments without archive_timeout.
   */
  walBytesPerSecond: number;
  walInSegments: number;
  /** Segments the archiver pushed during the load (pg_stat_archiver). */
  segmentsArchived: number;
  /** Segments that reached the repository during the load, and their compressed bytes there. */
  repositorySegments: number;
  repositoryBytes: number;
  archiveFailures: number;
  /** The last reading before the kill (≤ 1 s before it): how long since a segment was pushed, and how full the current one was. */
  lastPushBeforeKillSeconds: number | null;
  currentSegmentBytes: number | null;
  /**
   * From a segment's switch to its push's end, for each segment of the load (ms; the
   * switch is placed at the last reading before it, so each is at most SAMPLE_MS too
   * long): what a segment closed by archive_timeout still waits before it is safe.
   */
  pushMs: Stats;
  /** Completed segments waiting for archive_command at the kill (pg_wal/archive_status/*.ready). */
  readyAtKill: number;
  processesKilled: number;
  restoreSeconds: number;
  recoverySeconds: number;
  /** What the restored server says of the last transaction it replayed (PostgreSQL's own clock), lag behind the kill (s). */
  replayedLagSeconds: number | null;
}

async function runTrial(
  tmp: string,
  label: string,
  archiveTimeoutSeconds: number,
  options: Options,
  started: Started,
): Promise<Trial> {
  const dir = join(tmp, label.replace(/\W+/g, '-'));
  mkdirSync(dir, { mode: 0o711 });
  started.add('the trial directory', async () => rmSync(dir, { recursive: true, force: true }));
  log(`${label}: throwaway stack (local S3, PostgreSQL, stanza) …`);
  const env = await startLocalEnvironment({ dataDir: join(dir, 'local'), seedScale: options.scale });
  started.add('the local environment', () => env.stop());
  const config = parseConfig(env.functionEnv);
  const target = config.BACKUP_TARGETS[0];
  if (!target || !env.pgData) throw new Error('The local environment configured no cluster for pgBackRest.');
  const pgData = env.pgData;
  const pgbr = pgbackrestOf(target);
  const pgbackrest = (...args: string[]) =>
    asOwner(env.hostEnv, 'pgbackrest', `--config=${pgbr.configFile}`, `--stanza=${target.name}`, ...args);
  const s3 = createS3Client(config);
  started.add('the S3 client', async () => s3.destroy());

  const server = env.postgres;
  psql(server, 'postgres', ['-c', `CREATE DATABASE ${DATABASE}`]);
  await sh(`pgbench -i -q -s ${PGBENCH_SCALE} ${DATABASE}`, env.hostEnv);
  psql(server, DATABASE, [
    '-c',
    `CREATE TABLE rpo_ledger (
       id bigserial PRIMARY KEY,
       client int NOT NULL,
       committed_at timestamptz NOT NULL DEFAULT clock_timestamp())`,
  ]);
  if (archiveTimeoutSeconds !== MAX_ARCHIVE_TIMEOUT_SECONDS) {
    // Two commands, two transactions: ALTER SYSTEM cannot run inside one.
    psql(server, 'postgres', [
      '-c',
      `ALTER SYSTEM SET archive_timeout = '${archiveTimeoutSeconds}s'`,
      '-c',
      'SELECT pg_reload_conf()',
    ]);
  }
  // The reload reaches the checkpointer (which switches segments) a moment later.
  for (let tries = 0; ; tries += 1) {
    const shown = queryValue(
      server,
      'postgres',
      "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'",
    );
    if (Number(shown) === archiveTimeoutSeconds) break;
    if (tries > 50) throw new Error(`archive_timeout is ${shown} s, not ${archiveTimeoutSeconds} s.`);
    await sleep(100);
  }

  log(`${label}: pgBackRest full backup …`);
  const backup = await pgbackrest('backup', '--type=full', '--start-fast');
  const before = await archivedSegments(s3, config.BACKUP_BUCKET, target.name);

  const loadSeconds = options.minSeconds + Math.random() * (options.maxSeconds - options.minSeconds);
  log(
    `${label}: load for ${loadSeconds.toFixed(1)} s (archive_timeout ${archiveTimeoutSeconds} s), then the kill …`,
  );
  const ledgerFile = join(dir, 'ledger.csv');
  const pgbench = startPgbench(
    env,
    options.clients,
    options.pgbenchRate,
    Math.ceil(options.maxSeconds) + 600,
  );
  started.add('pgbench', () => pgbench.stop());
  const ledger = await startLedger(server, ledgerFile, options.clients, options.ledgerRate);
  started.add('the ledger clients', () => ledger.stop());
  const sampler = await startSampler(server);
  started.add('the sampler', () => sampler.stop());
  for (const end = Date.now() + loadSeconds * 1000; Date.now() < end; ) {
    checkInterrupted();
    await sleep(Math.min(1000, end - Date.now()));
  }

  const postmaster = Number(readFileSync(join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const kill = await loseHost(postmaster);
  await Promise.all([ledger.stop(), sampler.stop()]);
  expectEndedByKill('A ledger client', ledger.ended, kill.atMs);
  expectEndedByKill('The sampler', sampler.ended, kill.atMs);
  const pgbenchTransactions = await pgbench.finish();
  const readyAtKill = readdirSync(join(pgData, 'pg_wal', 'archive_status')).filter((f) =>
    f.endsWith('.ready'),
  ).length;
  // The host's disk is gone with it: only the repository is left to recover from.
  rmSync(pgData, { recursive: true, force: true });
  log(
    `${label}: killed ${kill.processes} processes, data directory removed; restoring from the repository …`,
  );

  const restoreDir = join(dir, 'restored');
  const restoredData = join(restoreDir, 'data');
  mkdirSync(restoredData, { recursive: true, mode: 0o700 });
  chmodSync(restoreDir, 0o700);
  giveToServerUser(restoreDir);
  // Default type: recover to the end of the archived WAL; archiving off, so the restored
  // cluster, once promoted, pushes nothing into the repository.
  const restore = await pgbackrest('restore', `--pg1-path=${restoredData}`, '--archive-mode=off');
  const port = await freePort();
  const pgCtl = join(server.binDir, 'pg_ctl');
  const serverLog = join(restoreDir, 'server.log');
  const recoveryStarted = performance.now();
  started.add('the restored cluster', async () => {
    await asOwner(env.hostEnv, pgCtl, 'stop', '-m', 'immediate', '-w', '-D', restoredData).catch(() => {});
  });
  // The postmaster's environment carries the local S3's keys to restore_command (archive-get).
  await asOwner(
    env.hostEnv,
    pgCtl,
    'start',
    '-w',
    '-t',
    '600',
    '-D',
    restoredData,
    '-l',
    serverLog,
    '-o',
    `-p ${port} -k ${restoreDir} -c listen_addresses=127.0.0.1 -c archive_mode=off -c fsync=off`,
  );
  // pg_ctl returns once the server takes read-only connections; recovery goes on to the archive's end, then promotes.
  const restored = await connect(server, port, DATABASE);
  try {
    const deadline = Date.now() + 600_000;
    while ((await restored.query('SELECT pg_is_in_recovery() AS r')).rows[0]?.r) {
      if (Date.now() > deadline)
        throw new Error(`The restored cluster was still recovering after 600 s; see ${serverLog}.`);
      await sleep(200);
    }
    const recoverySeconds = (performance.now() - recoveryStarted) / 1000;
    const ids = new Set(
      (await restored.query<{ id: string }>('SELECT id::text FROM rpo_ledger')).rows.map((r) => Number(r.id)),
    );
    const entries = readLedger(ledgerFile);
    return {
      label,
      archiveTimeoutSeconds,
      loadSeconds,
      backupSeconds: backup.ms / 1000,
      processesKilled: kill.processes,
      readyAtKill,
      pgbenchTransactions,
      restoreSeconds: restore.ms / 1000,
      recoverySeconds,
      replayedLagSeconds: replayedLag(readIfExists(serverLog), kill.atMs),
      ...compareLedger(entries, ids, kill.atMs, options.clients),
      ...archiving(sampler.samples, kill.atMs),
      ...repositoryGrowth(before, await archivedSegments(s3, config.BACKUP_BUCKET, target.name)),
    };
  } finally {
    await restored.end().catch(() => {});
  }
}

/**
 * The restored ledger against the client's record. A row the client never saw
 * acknowledged may be there only if its COMMIT was in doubt at the kill (one per
 * client at most); any other is a row nobody wrote, and the trial fails.
 */
function compareLedger(entries: LedgerEntry[], restored: Set<number>, killMs: number, clients: number) {
  const acknowledged = entries.filter((e): e is LedgerEntry & { ackMs: number } => e.ackMs !== null);
  const inDoubt = entries.filter((e) => e.ackMs === null);
  const known = new Set(entries.map((e) => e.id));
  const unknown = [...restored].filter((id) => !known.has(id));
  if (unknown.length > 0 || inDoubt.length > clients)
    throw new Error(
      `The restored ledger has ${unknown.length} row(s) no client wrote (ids ${unknown.slice(0, 5).join(', ')}), with ${inDoubt.length} COMMIT(s) in doubt for ${clients} clients.`,
    );
  const lost = acknowledged.filter((e) => !restored.has(e.id));
  const survivors = acknowledged.filter((e) => restored.has(e.id));
  const oldestLost = lost.reduce((min, e) => Math.min(min, e.ackMs), Number.POSITIVE_INFINITY);
  const newestSurvivor = survivors.reduce((max, e) => Math.max(max, e.ackMs), Number.NEGATIVE_INFINITY);
  const oldestLostAgeSeconds = lost.length > 0 ? (killMs - oldestLost) / 1000 : null;
  return {
    committed: acknowledged.length,
    lost: lost.length,
    oldestLostAgeSeconds,
    newestSurvivorLagSeconds: survivors.length > 0 ? (killMs - newestSurvivor) / 1000 : null,
    goalMet: (oldestLostAgeSeconds ?? 0) <= GOAL_SECONDS,
    inDoubt: inDoubt.length,
    inDoubtRecovered: inDoubt.filter((e) => restored.has(e.id)).length,
  };
}

/** The WAL rate and the archiver over the load, and its state at the last reading before the kill. */
function archiving(samples: Sample[], killMs: number) {
  const first = samples[0];
  const last = samples.at(-1);
  if (!first || !last || last === first) throw new Error('The sampler read the server fewer than twice.');
  const walBytes = last.walBytes - first.walBytes;
  return {
    walBytesPerSecond: (walBytes * 1000) / (last.atMs - first.atMs),
    walInSegments: walBytes / SEGMENT_BYTES,
    segmentsArchived: last.archivedCount - first.archivedCount,
    archiveFailures: last.failedCount - first.failedCount,
    lastPushBeforeKillSeconds: last.lastArchivedMs === null ? null : (killMs - last.lastArchivedMs) / 1000,
    currentSegmentBytes: last.segmentOffset,
    pushMs: stats(pushLatencies(samples)),
  };
}

/**
 * Each segment closed during the load, from the last reading that still saw it being
 * written to the end of its push (pg_stat_archiver's last_archived_time, exact), in
 * ms. A segment whose push another one's overtook before a reading saw it is left out.
 */
function pushLatencies(samples: Sample[]): number[] {
  const latencies: number[] = [];
  samples.forEach((before, i) => {
    const after = samples[i + 1];
    if (!after || after.segment === before.segment) return;
    const pushed = samples.find((s) => s.lastArchivedWal !== null && s.lastArchivedWal >= before.segment);
    if (pushed?.lastArchivedWal === before.segment && pushed.lastArchivedMs !== null)
      latencies.push(pushed.lastArchivedMs - before.atMs);
  });
  return latencies;
}

function repositoryGrowth(before: Map<string, number>, after: Map<string, number>) {
  const added = [...after].filter(([key]) => !before.has(key));
  return {
    repositorySegments: added.length,
    repositoryBytes: added.reduce((sum, [, bytes]) => sum + bytes, 0),
  };
}

/** PostgreSQL logs at the end of recovery "last completed transaction was at log time …": its lag behind the kill (s). */
function replayedLag(serverLog: string, killMs: number): number | null {
  const at = /last completed transaction was at log time (\S+ \S+)/.exec(serverLog)?.[1];
  // timestamptz_to_str: "2025-01-01 02:00:00.123456+00"; Date.parse wants the offset as +00:00.
  const ms = at === undefined ? Number.NaN : Date.parse(at.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
  return Number.isFinite(ms) ? (killMs - ms) / 1000 : null;
}

// ---------------------------------------------------------------------------
// Output.

const s1 = (x: number | null) => (x === null || !Number.isFinite(x) ? '–' : x.toFixed(1));
const perMinute = (n: number, t: Trial) => (n * 60) / t.loadSeconds;

function trialRow(t: Trial): string[] {
  return [
    t.label,
    String(t.archiveTimeoutSeconds),
    s1(t.loadSeconds),
    String(t.committed),
    String(t.lost),
    s1(t.oldestLostAgeSeconds),
    t.goalMet ? 'yes' : 'NO',
    t.newestSurvivorLagSeconds === null ? `> ${s1(t.loadSeconds)}` : s1(t.newestSurvivorLagSeconds),
    s1(t.lastPushBeforeKillSeconds),
    t.pushMs.runs.length > 0 ? `${t.pushMs.median.toFixed(0)} / ${t.pushMs.max.toFixed(0)}` : '–',
    t.currentSegmentBytes === null ? '–' : (t.currentSegmentBytes / KiB).toFixed(0),
    String(t.readyAtKill),
    (t.walBytesPerSecond / KiB).toFixed(1),
    t.walInSegments.toFixed(2),
    `${t.segmentsArchived} (${perMinute(t.segmentsArchived, t).toFixed(1)})`,
    (perMinute(t.repositoryBytes, t) / KiB).toFixed(0),
    s1(t.restoreSeconds + t.recoverySeconds),
  ];
}

interface Side {
  archiveTimeoutSeconds: number;
  trials: number;
  oldestLostAgeSeconds: Stats;
  lost: Stats;
  newestSurvivorLagSeconds: Stats;
  segmentsPerMinute: Stats;
  repositoryKiBPerMinute: Stats;
  /** Every archive-push of the side's loads (ms). */
  pushMs: Stats;
  /**
   * The oldest a lost commit can be while segments are closed by archive_timeout
   * (s): the timeout, plus the slowest push of the segment it closed.
   */
  boundSeconds: number;
  goalMet: boolean;
}

function side(trials: Trial[]): Side | null {
  const [first] = trials;
  if (!first) return null;
  const of = (f: (t: Trial) => number) => stats(trials.map(f));
  const pushMs = stats(trials.flatMap((t) => t.pushMs.runs));
  return {
    archiveTimeoutSeconds: first.archiveTimeoutSeconds,
    trials: trials.length,
    // Nothing lost: no commit older than 0 s was.
    oldestLostAgeSeconds: of((t) => t.oldestLostAgeSeconds ?? 0),
    lost: of((t) => t.lost),
    // No ledger row survived: the newest survivor is older than the load.
    newestSurvivorLagSeconds: of((t) => t.newestSurvivorLagSeconds ?? t.loadSeconds),
    segmentsPerMinute: of((t) => perMinute(t.segmentsArchived, t)),
    repositoryKiBPerMinute: of((t) => perMinute(t.repositoryBytes, t) / KiB),
    pushMs,
    boundSeconds: first.archiveTimeoutSeconds + pushMs.max / 1000,
    goalMet: trials.every((t) => t.goalMet),
  };
}

const medianMax = (s: Stats) => (s.runs.length > 1 ? `${s1(s.median)} (max ${s1(s.max)})` : s1(s.median));

function sideBySide(stack: Side, low: Side | null): string {
  const sides = low ? [stack, low] : [stack];
  // A figure, and the Stats whose medians the ratio column compares.
  const rows: [string, (s: Side) => string, ((s: Side) => Stats)?][] = [
    ['trials', (s) => String(s.trials)],
    [
      'oldest lost commit, s before the kill: median (max)',
      (s) => medianMax(s.oldestLostAgeSeconds),
      (s) => s.oldestLostAgeSeconds,
    ],
    ['committed transactions lost: median (max)', (s) => medianMax(s.lost), (s) => s.lost],
    [
      'newest surviving commit, s before the kill: median (max)',
      (s) => medianMax(s.newestSurvivorLagSeconds),
      (s) => s.newestSurvivorLagSeconds,
    ],
    [`nothing older than ${GOAL_SECONDS} s lost, in every trial`, (s) => (s.goalMet ? 'yes' : 'NO')],
    [
      'segments archived per minute of load: median',
      (s) => s1(s.segmentsPerMinute.median),
      (s) => s.segmentsPerMinute,
    ],
    [
      'repository growth, KiB of WAL per minute: median',
      (s) => s1(s.repositoryKiBPerMinute.median),
      (s) => s.repositoryKiBPerMinute,
    ],
    ['archive-push of one segment, ms: median (max)', (s) => medianMax(s.pushMs), (s) => s.pushMs],
    ['bound: archive_timeout + slowest push, s', (s) => s1(s.boundSeconds)],
  ];
  return markdownTable(
    ['', ...sides.map((s) => `archive_timeout ${s.archiveTimeoutSeconds} s`), ...(low ? ['ratio'] : [])],
    rows.map(([name, cell, of]) => [
      name,
      ...sides.map(cell),
      ...(low ? [of ? ratio(of(low).median / of(stack).median) : ''] : []),
    ]),
  );
}

// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    scale: { type: 'string', default: '1' },
    repeat: { type: 'string', default: '3' },
    'low-timeout': { type: 'string', default: '10' },
    'min-seconds': { type: 'string', default: '60' },
    'max-seconds': { type: 'string', default: '180' },
    'pgbench-rate': { type: 'string', default: '20' },
    'ledger-rate': { type: 'string', default: '10' },
    clients: { type: 'string', default: '2' },
  });
  if (!values) return 0;
  const scale = wholeNumber(values.scale, 1);
  const repeat = wholeNumber(values.repeat, 1);
  const lowTimeout = wholeNumber(values['low-timeout'], 0);
  const minSeconds = wholeNumber(values['min-seconds'], 5);
  const maxSeconds = wholeNumber(values['max-seconds'], minSeconds ?? 5);
  const pgbenchRate = wholeNumber(values['pgbench-rate'], 0);
  const ledgerRate = wholeNumber(values['ledger-rate'], 1);
  const clients = wholeNumber(values.clients, 1);
  if (
    scale === undefined ||
    repeat === undefined ||
    lowTimeout === undefined ||
    lowTimeout >= MAX_ARCHIVE_TIMEOUT_SECONDS ||
    minSeconds === undefined ||
    maxSeconds === undefined ||
    pgbenchRate === undefined ||
    ledgerRate === undefined ||
    clients === undefined
  ) {
    console.error(
      `Bad arguments: ${JSON.stringify(values)} (--min-seconds at least 5, --max-seconds at least --min-seconds, --low-timeout below ${MAX_ARCHIVE_TIMEOUT_SECONDS}).\n\n${USAGE}`,
    );
    return 2;
  }
  const options: Options = { minSeconds, maxSeconds, pgbenchRate, ledgerRate, clients, scale };

  const startedAt = new Date();
  const tmp = mkdtempSync(join(tmpdir(), 'kennel-backup-bench-rpo-'));
  // The clusters live inside it, and their server user must get through.
  chmodSync(tmp, 0o711);
  let current = new Started();
  onInterrupt((sig) => {
    log(`${sig}: stopping the trial's clusters …`);
    void current.stopAll();
  });
  const loadStart = loadavg();
  const plan = [
    ...Array.from({ length: repeat }, (_, i) => ({
      label: `${MAX_ARCHIVE_TIMEOUT_SECONDS} s #${i + 1}`,
      timeout: MAX_ARCHIVE_TIMEOUT_SECONDS,
    })),
    ...(lowTimeout > 0 ? [{ label: `${lowTimeout} s #1`, timeout: lowTimeout }] : []),
  ];
  const trials: Trial[] = [];
  try {
    for (const { label, timeout } of plan) {
      checkInterrupted();
      current = new Started();
      try {
        const trial = await runTrial(tmp, label, timeout, options, current);
        log(
          `${label}: ${trial.lost} of ${trial.committed} lost; oldest ${s1(trial.oldestLostAgeSeconds)} s before the kill`,
        );
        trials.push(trial);
      } finally {
        await current.stopAll();
      }
    }
  } finally {
    await cleanUp(tmp, () => current.stopAll());
  }
  const loadEnd = loadavg();

  const stack = side(trials.filter((t) => t.archiveTimeoutSeconds === MAX_ARCHIVE_TIMEOUT_SECONDS));
  const low = side(trials.filter((t) => t.archiveTimeoutSeconds !== MAX_ARCHIVE_TIMEOUT_SECONDS));
  if (!stack) throw new Error('No trial ran.');
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' / ');
  console.log(
    [
      '### RPO bench — the host killed under load, recovered from the repository alone (pgBackRest, archive-async off)',
      '',
      `${cpus().length} CPUs; load average (1/5/15 min) ${load(loadStart)} at start, ${load(loadEnd)} at end. Load: pgbench ${pgbenchRate > 0 ? `at ${pgbenchRate} tps` : 'unthrottled'} (scale ${PGBENCH_SCALE}, ${clients} clients) and ${clients} ledger clients at ${ledgerRate} commits/s in all, for a random ${minSeconds}–${maxSeconds} s after a full backup.`,
      '',
      markdownTable(
        [
          'trial',
          'archive_timeout s',
          'load s',
          'committed',
          'lost',
          'oldest lost, s before kill',
          `≤ ${GOAL_SECONDS} s`,
          'newest survivor, s before kill',
          'last push, s before kill',
          'push ms median / max',
          'current segment KiB at kill',
          '.ready at kill',
          'WAL KiB/s',
          'WAL ÷ 16 MiB',
          'segments archived (/min)',
          'repository KiB/min',
          'restore + recovery s',
        ],
        trials.map(trialRow),
      ),
      '',
      sideBySide(stack, low),
      '',
      `The loss is what was committed after the last segment that reached the repository: the segment being written at the kill (its bytes so far above) and any completed ones still queued (.ready). Below ${SEGMENT_BYTES / KiB / KiB} MiB of WAL per archive_timeout, segments are closed by archive_timeout, so the oldest lost commit is at most archive_timeout old plus the synchronous push of the segment just closed (archive-async=n); a lower archive_timeout narrows that window and archives a segment per timeout whether full or not.`,
    ].join('\n'),
  );
  console.log(
    JSON.stringify({
      bench: 'rpo',
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { ...options, repeat, lowTimeout, pgbenchScale: PGBENCH_SCALE },
      machine: { cpus: cpus().length, loadStart, loadEnd },
      goalSeconds: GOAL_SECONDS,
      sides: { stack, low },
      trials,
    }),
  );
  return 0;
}

await runMain(main);

import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOCAL_DATABASE, type LocalEnvironment } from '../local/environment.ts';
import { PROJECT_ROOT } from '../local/runner.ts';
import { databaseRun } from '../shared/backup/database-plan.ts';
import { BACKUP_HOST_COMMANDS, exactPattern } from '../shared/backup/host-commands.ts';
import { excludedTablesOf, localPathOf } from '../shared/catalog/manifest-builder.ts';
import { CODECS, DEFAULT_CODEC } from '../shared/core/codecs.ts';
import { type Config, findTarget, parseConfig, type Target } from '../shared/core/config.ts';
import { renderHostCommand } from '../shared/host/scripts.ts';
import { s3PutProgram, shellQuote } from '../shared/host/shell.ts';
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
 * local S3 over TLS), three ways:
 *  - bare: `pg_dump | zstd -3 -T0 > /dev/null` of the data the kind dumps (a full
 *    leaves out the rows of EXCLUDED_TABLES, a monthly dump nothing);
 *  - bare + upload: the same, its output uploaded by host/common.sh's s3_put (one
 *    python3 with boto3, to the local S3) rather than thrown away: the least any stage that
 *    stores the dump off the host does;
 *  - ours: host/database-backup.sh as StartDump renders it for that kind, run by
 *    the local host from send to exit: the snapshot session, pg_dump, zstd, the
 *    host's copy, the sha256, the upload and its result line.
 * ours / bare is the measure; ours / (bare + upload) is what the stage
 * costs beyond the upload; the uploader's start is measured alone (an upload of
 * nothing). Each run's CPU is split three ways (Linux /proc): the run's own
 * processes, PostgreSQL's backends, and the local S3 server, which shares this
 * machine's cores as S3 does not share a host's in AWS.
 * The three alternate, in an order that rotates pair by pair, after an untimed
 * warm-up of each; ratios are taken pair by pair and their medians reported. The
 * warm-up of ours runs with python3 behind a shim that counts its starts (the
 * check that boto3 is there, and the uploader).
 * Optionally a pgbench database of several GB (--pgbench-scale; 170 ≈ 2.5 GB) is
 * measured the same way.
 *
 *   npm run bench:dump -- [--scale 20] [--pgbench-scale 170] [--repeat 3]
 */

const USAGE = `Usage: npm run bench:dump -- [--scale N] [--pgbench-scale N] [--repeat N]

  --scale N          sample data size (default 20 ≈ 310 MB; 1 for a quick smoke run)
  --pgbench-scale N  also a pgbench database of this scale (15 MB each; 170 ≈ 2.5 GB); default none
  --repeat N         timed rounds per database (default 3); medians are reported

Results: tables on stdout and JSON in bench/results/dump-<timestamp>.json.`;

const PGBENCH = 'kb_pgbench';

interface Ctx {
  environment: LocalEnvironment;
  config: Config;
  target: Target;
  tmp: string;
  /** The cluster's postmaster, whose reaped children are the backends. */
  postmasterPid: number;
}

/** The kinds measured: the daily full (the log tables' rows left out) and the monthly dump of everything. */
type Kind = 'full' | 'monthly';

/** The three ways of dumping that are compared. */
const WAYS = ['bare', 'upload', 'ours'] as const;
type Way = (typeof WAYS)[number];

// ---------------------------------------------------------------------------
// CPU time, from /proc/<pid>/stat.

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU seconds (user + system) of a process: its own, and its children's that it has waited for. */
function cpuSeconds(pid: number | 'self'): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The fields after the command's name, which may hold spaces, start at field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const field = (n: number) => Number(fields[n - 3]);
  return { own: (field(14) + field(15)) / CLOCK_TICKS, children: (field(16) + field(17)) / CLOCK_TICKS };
}

/**
 * CPU seconds of one run: `run`, the processes it started (this process's
 * children, which it waits for; the local S3 is a child that runs on and is
 * not counted); `postgres`, the backends that served it (the postmaster's
 * children, counted when they end; an autovacuum worker's too); `s3`, the local
 * S3 server's.
 */
interface Cpu {
  run: number;
  postgres: number;
  s3: number;
}

function cpuNow(ctx: Ctx): Cpu {
  const postmaster = cpuSeconds(ctx.postmasterPid);
  return {
    run: cpuSeconds('self').children,
    postgres: postmaster.own + postmaster.children,
    s3: cpuSeconds(ctx.environment.s3Pid).own,
  };
}

interface Run {
  ms: number;
  cpu: Cpu;
}

/** Times `run` (its own wall clock) and takes the CPU its processes, PostgreSQL and the local S3 spent meanwhile. */
async function measured(ctx: Ctx, run: () => Promise<number>): Promise<Run> {
  const before = cpuNow(ctx);
  const ms = await run();
  // The postmaster counts a backend once it has reaped it, just after the client left.
  await sleep(200);
  const after = cpuNow(ctx);
  return {
    ms,
    cpu: {
      run: after.run - before.run,
      postgres: after.postgres - before.postgres,
      s3: after.s3 - before.s3,
    },
  };
}

// ---------------------------------------------------------------------------
// The ways.

/**
 * The host's S3 helpers (host/common.sh) with the uploader and the parameters
 * s3_put reads, for a bash command. Uploads are create-only: each run's key is
 * new (KB_RUN, nanoseconds).
 */
function withS3Put(ctx: Ctx, command: string): string {
  return [
    s3PutProgram(),
    'KB_RUN=$(date +%s%N)',
    `KB_BUCKET=${shellQuote(ctx.config.BACKUP_BUCKET)}`,
    `KB_S3_ENDPOINT_URL=${shellQuote(ctx.config.S3_ENDPOINT_URL ?? '')}`,
    `source ${shellQuote(join(PROJECT_ROOT, 'host', 'common.sh'))}`,
    command,
  ].join('\n');
}

/**
 * The bare tool on `database`: the data our `kind` dumps, compressed alike, then
 * thrown away (`bare`) or uploaded (`upload`) by s3_put with the stage's upper
 * bound on its size (host/database-backup.sh: twice the database's), so with
 * the same part size.
 */
function bareDump(
  ctx: Ctx,
  database: string,
  kind: Kind,
  way: 'bare' | 'upload',
  databaseBytes: number,
): string {
  const excluded = excludedTablesOf(ctx.config, kind)
    .map((t) => `--exclude-table-data=${shellQuote(exactPattern(t))}`)
    .join(' ');
  const dump = `pg_dump --no-password --format=plain ${excluded} -d ${shellQuote(database)} | ${CODECS[DEFAULT_CODEC].compress}`;
  if (way === 'bare') return `${dump} > /dev/null`;
  const key = `bench/bare-upload/${database}-${kind}-$KB_RUN.sql.${CODECS[DEFAULT_CODEC].extension}`;
  return withS3Put(ctx, `${dump} | s3_put "${key}" application/octet-stream ${2 * databaseBytes}`);
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
 * The host's environment with a `python3` first on PATH that logs each start to
 * `log` and runs the real one: how many times a dump starts python3 (boto3).
 */
function countingPython(ctx: Ctx, logFile: string): Record<string, string> {
  const dir = join(ctx.tmp, 'shim');
  mkdirSync(dir, { recursive: true });
  // `command -v` waits on nothing the local S3 serves: run synchronously.
  const real = execFileSync('bash', ['-c', 'command -v python3'], {
    env: ctx.environment.hostEnv,
    encoding: 'utf8',
  }).trim();
  const shim = join(dir, 'python3');
  // One line a start, not its arguments: the uploader's are its whole program.
  writeFileSync(shim, `#!/bin/bash\necho start >> ${shellQuote(logFile)}\nexec ${shellQuote(real)} "$@"\n`);
  chmodSync(shim, 0o755);
  return { ...ctx.environment.hostEnv, PATH: `${dir}:${ctx.environment.hostEnv.PATH ?? ''}` };
}

// ---------------------------------------------------------------------------
// Measuring.

/** Medians of each part of the CPU of a way's runs, in seconds. */
const cpuMedians = (runs: Run[]): Cpu => ({
  run: stats(runs.map((r) => r.cpu.run)).median,
  postgres: stats(runs.map((r) => r.cpu.postgres)).median,
  s3: stats(runs.map((r) => r.cpu.s3)).median,
});

/** What a host pays: the run's processes and PostgreSQL's; the local S3's share is S3's in AWS. */
const hostCpu = (r: Run) => r.cpu.run + r.cpu.postgres;

interface Measured {
  database: string;
  kind: Kind;
  bytes: number;
  /** Wall clock of each way, ms. */
  wall: Record<Way, Stats>;
  /** Each way's CPU, medians in seconds. */
  cpu: Record<Way, Cpu>;
  /** Each way's CPU, run by run, in seconds. */
  cpuRuns: Record<Way, Cpu[]>;
  /** Ours over bare and over bare + upload, wall clock, round by round. */
  ratio: { oursOverBare: Stats; oursOverUpload: Stats; uploadOverBare: Stats };
  /** Host CPU (the run's processes and PostgreSQL's, the local S3 left out), ours over bare and over bare + upload, round by round. */
  hostCpuRatio: { oursOverBare: Stats; oursOverUpload: Stats };
  pythonStarts: number;
}

async function measure(ctx: Ctx, database: string, kind: Kind, repeat: number): Promise<Measured> {
  const env = ctx.environment.hostEnv;
  const bytes = Number(
    queryValue(ctx.environment.postgres, database, 'SELECT pg_database_size(current_database())'),
  );
  const runWay = async (way: Way, hostEnv = env) =>
    measured(ctx, async () =>
      way === 'ours'
        ? ourDump(ctx, database, kind, hostEnv)
        : (await sh(bareDump(ctx, database, kind, way, bytes), env)).ms,
    );
  log(
    `${database} ${kind} (${mib(bytes)} MiB): warm-up, bare, bare + upload and ours (counting python3 starts) …`,
  );
  await runWay('bare');
  await runWay('upload');
  const pythonLog = join(ctx.tmp, `python3-${database}-${kind}.log`);
  await runWay('ours', countingPython(ctx, pythonLog));
  const pythonStarts = readFileSync(pythonLog, 'utf8').split('\n').filter(Boolean).length;
  const runs: Record<Way, Run[]> = { bare: [], upload: [], ours: [] };
  for (let i = 0; i < repeat; i += 1) {
    // Each way first in turn: none always runs on the caches another left.
    const order = WAYS.map((_, j) => WAYS[(i + j) % WAYS.length] as Way);
    log(`${database} ${kind}: round ${i + 1} of ${repeat} (${order.join(', ')}) …`);
    for (const way of order) runs[way].push(await runWay(way));
  }
  const perRound = (f: (i: number) => number) => stats(runs.bare.map((_, i) => f(i)));
  const at = (way: Way, i: number) => runs[way][i] as Run;
  return {
    database,
    kind,
    bytes,
    wall: {
      bare: stats(runs.bare.map((r) => r.ms)),
      upload: stats(runs.upload.map((r) => r.ms)),
      ours: stats(runs.ours.map((r) => r.ms)),
    },
    cpu: { bare: cpuMedians(runs.bare), upload: cpuMedians(runs.upload), ours: cpuMedians(runs.ours) },
    cpuRuns: {
      bare: runs.bare.map((r) => r.cpu),
      upload: runs.upload.map((r) => r.cpu),
      ours: runs.ours.map((r) => r.cpu),
    },
    ratio: {
      oursOverBare: perRound((i) => at('ours', i).ms / at('bare', i).ms),
      oursOverUpload: perRound((i) => at('ours', i).ms / at('upload', i).ms),
      uploadOverBare: perRound((i) => at('upload', i).ms / at('bare', i).ms),
    },
    hostCpuRatio: {
      oursOverBare: perRound((i) => hostCpu(at('ours', i)) / hostCpu(at('bare', i))),
      oursOverUpload: perRound((i) => hostCpu(at('ours', i)) / hostCpu(at('upload', i))),
    },
    pythonStarts,
  };
}

/** The uploader's start alone: s3_put of nothing, after a warm-up; wall clock and CPU of each. */
async function uploaderStart(ctx: Ctx, repeat: number): Promise<{ wall: Stats; cpu: Stats }> {
  const command = withS3Put(ctx, 's3_put "bench/nothing-$KB_RUN" application/octet-stream < /dev/null');
  log('the uploader alone: an upload of nothing …');
  await sh(command, ctx.environment.hostEnv);
  const runs: Run[] = [];
  for (let i = 0; i < repeat; i += 1)
    runs.push(await measured(ctx, async () => (await sh(command, ctx.environment.hostEnv)).ms));
  return { wall: stats(runs.map((r) => r.ms)), cpu: stats(runs.map((r) => r.cpu.run)) };
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
    if (!env.pgData) throw new Error('no local cluster');
    // postmaster.pid: its first line is the postmaster's pid.
    const postmasterPid = Number(readFileSync(join(env.pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const ctx: Ctx = { environment: env, config, target, tmp, postmasterPid };
    const loadBefore = machine().load;
    const uploader = await uploaderStart(ctx, repeat);
    const results: Measured[] = [];
    // The sample's full leaves out two thirds of it (the log tables' rows); its monthly dump is all of it.
    results.push(await measure(ctx, LOCAL_DATABASE, 'full', repeat));
    results.push(await measure(ctx, LOCAL_DATABASE, 'monthly', repeat));
    if (pgbenchScale > 0) results.push(await measure(ctx, PGBENCH, 'full', repeat));

    const sec = (s: number) => s.toFixed(2);
    const name = (m: Measured) => `${m.database} (${mib(m.bytes, 0)} MiB), ${m.kind}`;
    const withSpread = (s: Stats) => `${ratio(s.median)} (${ratio(s.min)}–${ratio(s.max)})`;
    const wallTable = table(
      [
        'database',
        'bare s',
        '+ upload s',
        'ours s',
        'ours / bare',
        'ours / (bare + upload)',
        'python3 starts',
      ],
      results.map((m) => [
        name(m),
        sec(m.wall.bare.median / 1000),
        sec(m.wall.upload.median / 1000),
        sec(m.wall.ours.median / 1000),
        withSpread(m.ratio.oursOverBare),
        withSpread(m.ratio.oursOverUpload),
        String(m.pythonStarts),
      ]),
    );
    const cpuCell = (c: Cpu) => `${sec(c.run)} + ${sec(c.postgres)} + ${sec(c.s3)}`;
    const cpuTable = table(
      [
        'CPU s: run + PostgreSQL + local S3',
        'bare',
        'bare + upload',
        'ours',
        'host CPU ours / bare',
        'ours / (bare + upload)',
      ],
      results.map((m) => [
        name(m),
        cpuCell(m.cpu.bare),
        cpuCell(m.cpu.upload),
        cpuCell(m.cpu.ours),
        withSpread(m.hostCpuRatio.oursOverBare),
        withSpread(m.hostCpuRatio.oursOverUpload),
      ]),
    );
    const uploaderLine = `The uploader alone (s3_put of nothing): ${sec(uploader.wall.median / 1000)} s wall, ${sec(uploader.cpu.median)} s CPU (medians of ${repeat}).`;
    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { scale, pgbenchScale, repeat },
      machine: { ...machine(), loadBefore },
      notes: [
        "Wall clock. bare: pg_dump | zstd -3 -T0 > /dev/null of the data the kind dumps (a full leaves out the excluded tables' rows); bare + upload: the same piped to s3_put (python3 with boto3) to the local S3; ours: host/database-backup.sh of that kind (snapshot session, pg_dump, zstd, the host's copy, its sha256, the upload to the local S3, its result line), from send to exit.",
        "CPU: run = the run's own processes; PostgreSQL = its backends (counted when they end); local S3 = the local S3 server's, which runs on this machine's cores as S3 does not on a host in AWS. Host CPU = run + PostgreSQL.",
        'Ratios are taken round by round (the three ways back to back, in a rotating order); medians, with the spread.',
      ],
      uploaderStart: uploader,
      measured: results,
    };
    const resultFile = saveResult('dump', startedAt, result);
    printResult(
      `kennel-backup dump bench: ${repeat} round(s) each; ${machineLine()} (at the start ${loadBefore.map((l) => l.toFixed(2)).join('/')})`,
      [wallTable, '', cpuTable, '', uploaderLine].join('\n'),
      resultFile,
    );
    return 0;
  });
}

await runMain(main);

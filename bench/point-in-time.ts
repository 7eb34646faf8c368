import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type LocalEnvironment, psql } from '../local/environment.ts';
import type { Config, Target } from '../shared/core/config.ts';
import { shellQuote } from '../shared/host/shell.ts';
import { recoveryTargetTime } from '../shared/restore/point-in-time.ts';
import {
  bareRecovery,
  createPgbenchDatabase,
  log,
  machine,
  machineLine,
  physicalOnlyConfig,
  printResult,
  queryValue,
  readCommandLine,
  runMain,
  saveResult,
  settle,
  sh,
  succeededWorkflow,
  wholeNumber,
  wholeNumbers,
  withLocalStack,
} from './harness.ts';
import { mib, ratio, table } from './table.ts';

/**
 * What a point-in-time recovery costs, side by side in one run on one cluster
 * (the local stack: PostgreSQL archiving its WAL to the local S3 over TLS,
 * pgBackRest 2.45), on a pgbench database:
 *  - one full backup through the database-backup workflow (its record is the
 *    recovery's base), then pgbench writing until 1, 4 and 16 WAL segments'
 *    worth of changes (cumulative) lie after it, a target second marked after each;
 *  - for each target: the bare engine (`pgbackrest restore --type=time
 *    --target=<t> --target-action=promote` into a scratch data directory, the
 *    instance started and waited for until promoted) against ours (the
 *    point-in-time-recovery workflow into a new database: its host script's
 *    restore and recovery, then its checks and the copy into the production
 *    cluster, which the bare engine has none of);
 *  - the logical restore of the same data (`pg_dump -Fd -j` then `pg_restore -j`
 *    into a new database), the way the data would come back without the WAL.
 *
 *   npm run bench:point-in-time -- [--pgbench-scale 170] [--segments 1,4,16]
 */

const USAGE = `Usage: npm run bench:point-in-time -- [--pgbench-scale N] [--segments LIST] [--wait-ms MS]

  --pgbench-scale N  the pgbench database's scale (15 MB each; default 170 ≈ 2.5 GB; 5 for a quick smoke run)
  --segments LIST    WAL segments' worth of changes after the backup, cumulative, one target each (default 1,4,16)
  --wait-ms MS       every Wait state of the workflows, locally (default 50: the polling granularity)

Results: a table on stdout and JSON in bench/results/point-in-time-<timestamp>.json.`;

const PGBENCH = 'kb_pgbench';
/** The backup workflow's logical dump is of this empty database: the physical run has the machine to itself. */
const EMPTY = 'kb_bench_empty';
const SEGMENT_BYTES = 16 * 1024 * 1024;

interface Ctx {
  environment: LocalEnvironment;
  config: Config;
  target: Target;
  waitMs: number;
}

interface RecoveryTarget {
  segments: number;
  time: string;
  /** WAL bytes written between the backup's end and the target. */
  walBytes: number;
  /** pgbench's transaction count at the target: what the recovered database must hold. */
  history: number;
}

const sec = (ms: number) => (ms / 1000).toFixed(1);

const lsnBytes = (ctx: Ctx, from: string) =>
  Number(queryValue(ctx.environment.postgres, 'postgres', `SELECT pg_current_wal_lsn() - '${from}'::pg_lsn`));

/** pgbench writing (2 clients) for `seconds`. */
const pgbench = (ctx: Ctx, seconds: number) =>
  sh(`pgbench -n -c 2 -j 2 -T ${seconds} ${PGBENCH} >/dev/null`, ctx.environment.hostEnv);

/** pgbench writes until `bytes` of WAL lie after `from`; then a quiet second each side of the target second. */
async function markTarget(ctx: Ctx, from: string, segments: number): Promise<RecoveryTarget> {
  while (lsnBytes(ctx, from) < segments * SEGMENT_BYTES) await pgbench(ctx, 2);
  await sleep(1100);
  const time = new Date().toISOString();
  const history = Number(
    queryValue(ctx.environment.postgres, PGBENCH, 'SELECT count(*) FROM pgbench_history'),
  );
  await sleep(1100);
  return { segments, time, walBytes: lsnBytes(ctx, from), history };
}

interface Ours {
  ms: number;
  seconds: { restore: number; recovery: number; checks: number; copy: number; total: number };
  history: number;
}

/** Ours to `target`: the point-in-time-recovery workflow into a new database, its phases as the host script measured them. */
async function ourRecovery(ctx: Ctx, target: RecoveryTarget): Promise<Ours> {
  const targetDatabase = `${PGBENCH}_pitr_${target.segments}`;
  const { ms, record } = await succeededWorkflow(ctx.environment, `the recovery to ${target.time}`, {
    workflow: 'point-in-time-recovery',
    input: { database: PGBENCH, targetDatabase, targetTime: target.time },
    waitMs: ctx.waitMs,
  });
  const phases =
    /"seconds":\{"restore":([\d.]+),"recovery":([\d.]+),"checks":([\d.]+),"copy":([\d.]+),"total":([\d.]+)\}/.exec(
      JSON.stringify(record.events).replaceAll('\\"', '"').replaceAll(' ', ''),
    );
  if (!phases) throw new Error(`the recovery to ${target.time} reported no phases.`);
  const [restore, recovery, checks, copy, total] = phases.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const history = Number(
    queryValue(ctx.environment.postgres, targetDatabase, 'SELECT count(*) FROM pgbench_history'),
  );
  psql(ctx.environment.postgres, 'postgres', ['-c', `DROP DATABASE ${targetDatabase}`]);
  return { ms, seconds: { restore, recovery, checks, copy, total }, history };
}

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    'pgbench-scale': { type: 'string', default: '170' },
    segments: { type: 'string', default: '1,4,16' },
    'wait-ms': { type: 'string', default: '50' },
  });
  if (!values) return 0;
  const pgbenchScale = wholeNumber(values['pgbench-scale'], 1);
  const segments = wholeNumbers(values.segments);
  const waitMs = wholeNumber(values['wait-ms'], 0);
  if (pgbenchScale === undefined || segments === undefined || waitMs === undefined) {
    console.error(`Bad arguments: ${JSON.stringify(values)}\n\n${USAGE}`);
    return 2;
  }
  const goals = [...new Set(segments)].sort((a, b) => a - b);

  const startedAt = new Date();
  return withLocalStack('pitr', 1, async (env, tmp) => {
    const server = env.postgres;
    psql(server, 'postgres', ['-c', `CREATE DATABASE ${EMPTY}`]);
    await createPgbenchDatabase(env, PGBENCH, pgbenchScale);
    settle(server, [PGBENCH]);
    const databaseBytes = Number(queryValue(server, 'postgres', `SELECT pg_database_size('${PGBENCH}')`));
    log(`${PGBENCH}: ${mib(databaseBytes)} MiB`);

    const { config, target } = await physicalOnlyConfig(env.functionEnv, EMPTY);
    const ctx: Ctx = { environment: env, config, target, waitMs };

    log('our full backup (the recoveries’ base) …');
    await succeededWorkflow(env, 'the full backup', {
      workflow: 'database-backup',
      input: { kind: 'full' },
      waitMs,
    });
    const from = queryValue(server, 'postgres', 'SELECT pg_current_wal_lsn()');

    const marked: RecoveryTarget[] = [];
    for (const goal of goals) {
      log(`pgbench until ${goal} WAL segment(s) of changes lie after the backup …`);
      marked.push(await markTarget(ctx, from, goal));
    }
    // A commit after the last target, so that every target lies inside the WAL,
    // and that WAL archived (the bare engine, unlike ours, does not see to it).
    await pgbench(ctx, 2);
    const segment = queryValue(server, 'postgres', 'SELECT pg_walfile_name(pg_switch_wal())');
    while (queryValue(server, 'postgres', 'SELECT last_archived_wal FROM pg_stat_archiver') < segment)
      await sleep(200);

    const rows: string[][] = [];
    const measured: unknown[] = [];
    for (const t of marked) {
      log(`bare pgbackrest restore --type=time --target=${t.time} (${t.segments} segment(s)) …`);
      const recovered = await bareRecovery(env.hostEnv, target, {
        recoveryArgs: ['--type=time', `--target=${recoveryTargetTime(t.time)}`],
        scratch: join(tmpdir(), `kb-bench-pitr-${process.pid}`),
        database: PGBENCH,
        query: 'SELECT count(*) FROM pgbench_history',
      });
      const bare = { ...recovered, history: Number(recovered.value) };
      log(`our point-in-time-recovery to ${t.time} …`);
      const ours = await ourRecovery(ctx, t);
      for (const [who, history] of [
        ['bare', bare.history],
        ['ours', ours.history],
      ] as const)
        if (history !== t.history)
          throw new Error(
            `${who} recovered ${history} pgbench transactions to ${t.time}; ${t.history} were committed then.`,
          );
      const bareMs = bare.restoreMs + bare.recoveryMs;
      const oursMs = (ours.seconds.restore + ours.seconds.recovery) * 1000;
      rows.push(
        [
          `${t.segments} segment(s), ${mib(t.walBytes)} MiB of WAL: bare restore + recovery`,
          `${sec(bare.restoreMs)} + ${sec(bare.recoveryMs)}`,
          '',
        ],
        [
          '   ours: restore + recovery (host script)',
          `${ours.seconds.restore} + ${ours.seconds.recovery}`,
          ratio(oursMs / bareMs),
        ],
        [
          '   ours: checks, then the copy into production',
          `${ours.seconds.checks} + ${ours.seconds.copy}`,
          '',
        ],
        ['   ours: whole workflow', sec(ours.ms), ratio(ours.ms / bareMs)],
      );
      measured.push({ target: t, bare, ours });
    }

    log(`pg_dump -Fd -j 2 ${PGBENCH}, then pg_restore -j 2 into a new database …`);
    const dumpDir = join(tmp, 'dump');
    const dump = await sh(
      `pg_dump --no-password -Fd -j 2 -Z 0 -f ${shellQuote(dumpDir)} ${PGBENCH}`,
      env.hostEnv,
    );
    const logicalRestore = await sh(
      `createdb --no-password ${PGBENCH}_logical && pg_restore --no-password -j 2 -d ${PGBENCH}_logical ${shellQuote(dumpDir)}`,
      env.hostEnv,
    );
    psql(server, 'postgres', ['-c', `DROP DATABASE ${PGBENCH}_logical`]);
    const lastBare = measured.at(-1) as { bare: { restoreMs: number; recoveryMs: number } } | undefined;
    rows.push(
      ['logical: pg_dump -Fd -j 2 (the same data)', sec(dump.ms), ''],
      [
        'logical: pg_restore -j 2 into a new database',
        sec(logicalRestore.ms),
        lastBare ? ratio(logicalRestore.ms / (lastBare.bare.restoreMs + lastBare.bare.recoveryMs)) : '',
      ],
    );

    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { pgbenchScale, segments: goals, waitMs },
      machine: machine(),
      database: { name: PGBENCH, bytes: databaseBytes },
      notes: [
        'Wall clock, one run each. Each target is checked: the recovered pgbench_history holds exactly the transactions committed by the target second (bare and ours).',
        "Ours' restore and recovery are its host script's own figures (whole seconds); the ratios are to the bare restore plus recovery to the same target from the same backup. Its checks (pg_amcheck) and the copy into the production cluster (pg_dump -Fd | pg_restore, in parallel) have no bare counterpart.",
        'The logical restore ratio is to the bare recovery of the most WAL.',
      ],
      recoveries: measured,
      logical: { dumpMs: dump.ms, restoreMs: logicalRestore.ms },
    };
    const resultFile = saveResult('point-in-time', startedAt, result);
    printResult(
      `kennel-backup point-in-time bench: pgbench scale ${pgbenchScale} (${mib(databaseBytes)} MiB); ${machineLine()}; waits ${waitMs} ms`,
      table(['recovery', 'seconds', 'ratio to bare'], rows),
      resultFile,
    );
    return 0;
  });
}

await runMain(main);

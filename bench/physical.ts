import { readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type LocalEnvironment, psql } from '../local/environment.ts';
import type { PhysicalPlan } from '../shared/backup/physical-plan.ts';
import type { Config, Target } from '../shared/core/config.ts';
import { shellQuote } from '../shared/host/shell.ts';
import {
  bareRecovery,
  checkInterrupted,
  createPgbenchDatabase,
  hostScript,
  log,
  machine,
  machineLine,
  pgbackrestCommand,
  physicalOnlyConfig,
  printResult,
  queryValue,
  readCommandLine,
  runMain,
  saveResult,
  settle,
  sh,
  span,
  succeededWorkflow,
  wholeNumber,
  withLocalStack,
} from './harness.ts';
import { mib, ratio, table } from './table.ts';

/**
 * What a physical backup costs, side by side in one run on one cluster (the local
 * stack: PostgreSQL archiving its WAL to the local S3 over TLS, pgBackRest 2.45):
 *  - the bare engine: `pgbackrest backup --type=full --start-fast`, then `pgbackrest verify`;
 *  - our host command alone (host/pgbackrest-backup.sh: backup, verify, info);
 *  - our physical full through the database-backup workflow (backup and verify on
 *    the host, the record, the restore test, the expiry), the logical dump beside it made trivial
 *    (the workflow's database is an empty one) so that the two do not share the
 *    machine's cores;
 *  - the logical dump of the same data, `pg_dump | zstd -3 -T0` of every database;
 *  - an incremental after 1 % of the rows changed: the bare engine, and ours
 *    through the workflow (each after its own 1 % change);
 *  - restores of the full: the bare engine (`pgbackrest restore --type=immediate`
 *    into a scratch directory, the instance started and waited for until promoted)
 *    against our restore test's restore and recovery (its checks, which the bare
 *    engine has none of, aside), and the logical dump's restore (`zstd -d | psql`
 *    into a new database, per database).
 * Optionally a pgbench database of several GB is added to the cluster first
 * (--pgbench-scale; 170 ≈ 2.5 GB).
 *
 *   npm run bench:physical -- [--scale 20] [--pgbench-scale 170]
 */

const USAGE = `Usage: npm run bench:physical -- [--scale N] [--pgbench-scale N] [--wait-ms MS]

  --scale N          sample data size (default 20 ≈ 310 MB; 1 for a quick smoke run)
  --pgbench-scale N  also a pgbench database of this scale (15 MB each; 170 ≈ 2.5 GB); default none
  --wait-ms MS       every Wait state of the workflow, locally (default 50: the polling granularity)

Results: a table on stdout and JSON in bench/results/physical-<timestamp>.json.`;

const DATABASE = 'kennel_prod';
const PGBENCH = 'kb_pgbench';
/** The workflow's logical dump is of this empty database: the physical run has the machine to itself. */
const EMPTY = 'kb_bench_empty';

interface Ctx {
  environment: LocalEnvironment;
  config: Config;
  target: Target;
  waitMs: number;
}

/** pgBackRest on the stanza, as the server user, timed by the wall clock. */
function pgbackrest(ctx: Ctx, args: string[]): Promise<{ ms: number; stderr: string }> {
  return sh(pgbackrestCommand(ctx.target, args), ctx.environment.hostEnv);
}

interface Backup {
  label: string;
  type: string;
  info: { size: number; delta: number; repository: { size: number; delta: number } };
}

async function newestBackup(ctx: Ctx): Promise<Backup> {
  const file = join(tmpdir(), `kb-bench-info-${process.pid}.json`);
  await sh(
    `${pgbackrestCommand(ctx.target, ['info', '--output=json'])} > ${shellQuote(file)}`,
    ctx.environment.hostEnv,
  );
  const [stanza] = JSON.parse(readFileSync(file, 'utf8')) as { backup: Backup[] }[];
  const backup = stanza?.backup.at(-1);
  if (!backup) throw new Error('pgbackrest info lists no backup.');
  return backup;
}

/** Our host command alone: host/pgbackrest-backup.sh rendered as the start stage renders it, run on the local host. */
async function hostCommand(ctx: Ctx, kind: 'full' | 'incremental'): Promise<{ ms: number; result: unknown }> {
  checkInterrupted();
  const [{ renderHostCommand }, { PHYSICAL_HOST_COMMANDS }] = await Promise.all([
    import('../shared/host/scripts.ts'),
    import('../shared/backup/physical-host-commands.ts'),
  ]);
  const plan: PhysicalPlan = {
    engine: 'pgbackrest',
    kind,
    target: ctx.target.name,
    runId: '20261126T020000Z_00000000',
    executionId: 'bench',
    startedAt: new Date().toISOString(),
    bucket: ctx.config.BACKUP_BUCKET,
    recordKey: 'catalog/pgbackrest/local/bench.json',
    base: null,
  };
  const command = PHYSICAL_HOST_COMMANDS['pgbackrest-backup'];
  const script = renderHostCommand(ctx.config, ctx.target, command, { script: 'pgbackrest-backup', plan });
  const { ms, stdout } = await hostScript(ctx.environment.hostEnv, ctx.target, script, {
    what: 'Our host command',
    timeoutSeconds: ctx.config.HOST_COMMAND_TIMEOUT_SECONDS,
  });
  const line = /^KB-RESULT (.*)$/m.exec(stdout)?.[1];
  return { ms, result: line ? JSON.parse(line) : null };
}

interface WorkflowRun {
  ms: number;
  /** The physical iteration: its first state to its last. */
  physical: number;
  hostCommand: number;
  record: number;
  /** The restore test (restore, recovery, amcheck, every row read) and its record. */
  restoreTest: number;
  /** The restore test's own phases as the host script measured them (s): restore, recovery, checks. */
  restoreTestSeconds: { restore: number; recovery: number; checks: number; total: number };
  expiry: number | null;
  recorded: { label: string; kind: string; state: string };
}

/** Our physical backup through the database-backup workflow (its dump beside it is of the empty database). */
async function workflow(ctx: Ctx, kind: 'full' | 'incremental'): Promise<WorkflowRun> {
  const { ms, record } = await succeededWorkflow(ctx.environment, `the ${kind} workflow`, {
    workflow: 'database-backup',
    input: { kind },
    waitMs: ctx.waitMs,
  });
  const { events } = record;
  const hostCommandMs = span(events, 'StartPhysicalBackup', 'PhysicalBackupFinished');
  const recordMs = span(events, 'RecordPhysicalBackup', 'RecordPhysicalBackup');
  const restoreTest = span(events, 'StartPhysicalRestoreTest', 'UpdatePhysicalRecord');
  const expiry = span(events, 'StartExpirePhysicalBackups', 'RecordPhysicalExpiry');
  const physical = span(
    events,
    'StartPhysicalBackup',
    expiry === null ? 'RecordPhysicalBackup' : 'RecordPhysicalExpiry',
  );
  if (hostCommandMs === null || recordMs === null || restoreTest === null || physical === null)
    throw new Error(`the ${kind} workflow ran no physical backup.`);
  const exited = events.findLast((e) => e.type === 'StateExited' && e.state?.name === 'RecordPhysicalBackup');
  const recorded = (exited?.state?.output as { physicalRecord?: WorkflowRun['recorded'] } | undefined)
    ?.physicalRecord;
  if (!recorded) throw new Error(`the ${kind} workflow recorded no physical backup.`);
  if (recorded.state !== 'verified') throw new Error(`the ${kind} backup was recorded ${recorded.state}.`);
  const phases =
    /"seconds":\{"restore":([\d.]+),"recovery":([\d.]+),"checks":([\d.]+),"total":([\d.]+)\}/.exec(
      JSON.stringify(events).replaceAll('\\"', '"').replaceAll(' ', ''),
    );
  if (!phases) throw new Error(`the ${kind} workflow's restore test reported no phases.`);
  const [restore, recovery, checks, total] = phases.slice(1).map(Number) as [number, number, number, number];
  return {
    ms,
    physical,
    hostCommand: hostCommandMs,
    record: recordMs,
    restoreTest,
    restoreTestSeconds: { restore, recovery, checks, total },
    expiry,
    recorded,
  };
}

/** Updates 1 % of the rows of the biggest tables (bookings; pgbench_accounts when there). */
function changeOnePercent(ctx: Ctx, withPgbench: boolean): number {
  const started = performance.now();
  psql(ctx.environment.postgres, DATABASE, [
    '-c',
    `UPDATE bookings SET notes = 'bench ' || id WHERE id % 100 = ${Math.floor(Math.random() * 100)}`,
  ]);
  if (withPgbench)
    psql(ctx.environment.postgres, PGBENCH, [
      '-c',
      `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = ${Math.floor(Math.random() * 100)}`,
    ]);
  return performance.now() - started;
}

const sec = (ms: number | null) => (ms === null ? '' : (ms / 1000).toFixed(1));

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    'pgbench-scale': { type: 'string' },
    'wait-ms': { type: 'string', default: '50' },
  });
  if (!values) return 0;
  const scale = wholeNumber(values.scale, 1);
  const pgbenchScale = values['pgbench-scale'] === undefined ? 0 : wholeNumber(values['pgbench-scale'], 1);
  const waitMs = wholeNumber(values['wait-ms'], 0);
  if (scale === undefined || pgbenchScale === undefined || waitMs === undefined) {
    console.error(`Bad arguments: ${JSON.stringify(values)}\n\n${USAGE}`);
    return 2;
  }

  const startedAt = new Date();
  return withLocalStack('physical', scale, async (env, tmp) => {
    const server = env.postgres;
    if (pgbenchScale > 0) await createPgbenchDatabase(env, PGBENCH, pgbenchScale);
    psql(server, 'postgres', ['-c', `CREATE DATABASE ${EMPTY}`]);
    // The seed's dirty pages written out now, untimed: else the first backup's own
    // checkpoint (--start-fast) would write them, and the bare full would pay for it.
    settle(server, [DATABASE, ...(pgbenchScale > 0 ? [PGBENCH] : [])]);
    const clusterBytes = Number(
      queryValue(server, 'postgres', 'SELECT sum(pg_database_size(oid)) FROM pg_database'),
    );
    log(`cluster: ${mib(clusterBytes)} MiB`);

    const { config, target } = await physicalOnlyConfig(env.functionEnv, EMPTY);
    const ctx: Ctx = { environment: env, config, target, waitMs };

    // ---- Fulls: the bare engine, our host command, our workflow.
    log('bare pgbackrest backup --type=full …');
    const bareFull = await pgbackrest(ctx, ['backup', '--type=full', '--start-fast']);
    const bareFullBackup = await newestBackup(ctx);
    log('bare pgbackrest verify …');
    const bareVerify = await pgbackrest(ctx, ['verify']);
    log('our host command (full) …');
    const ours = await hostCommand(ctx, 'full');
    // verify reads the whole repository: each of ours is compared with the bare
    // verify of the repository as ours found it (one more full each time).
    log('bare pgbackrest verify, of the repository our host command verified …');
    const bareVerifyAfterOurs = await pgbackrest(ctx, ['verify']);
    log('our workflow (full) …');
    const oursFull = await workflow(ctx, 'full');
    log('bare pgbackrest verify, of the repository our workflow verified …');
    const bareVerifyAfterWorkflow = await pgbackrest(ctx, ['verify']);
    const repositoryAfterFulls = (await newestBackup(ctx)).info.repository.size;

    // ---- Restores of the full: the bare engine, then ours' phases (from its restore test above).
    log(`bare pgbackrest restore --set=${bareFullBackup.label} --type=immediate, started until promoted …`);
    const bareRestored = await bareRecovery(env.hostEnv, target, {
      recoveryArgs: [`--set=${bareFullBackup.label}`, '--type=immediate'],
      scratch: join(tmpdir(), `kb-bench-restore-${process.pid}`),
    });

    // ---- The logical dump of the same data, and its restore into new databases.
    const dumped = [DATABASE, ...(pgbenchScale > 0 ? [PGBENCH] : [])];
    let dumpMs = 0;
    let dumpBytes = 0;
    let logicalRestoreMs = 0;
    for (const db of dumped) {
      const dumpFile = join(tmp, `${db}.sql.zst`);
      log(`pg_dump ${db} | zstd -3 -T0 …`);
      dumpMs += (
        await sh(`pg_dump --no-password -d ${db} | zstd -q -3 -T0 -c > ${shellQuote(dumpFile)}`, env.hostEnv)
      ).ms;
      dumpBytes += statSync(dumpFile).size;
    }
    for (const db of dumped) {
      const dumpFile = join(tmp, `${db}.sql.zst`);
      log(`zstd -d | psql into ${db}_restored …`);
      logicalRestoreMs += (
        await sh(
          `createdb --no-password ${db}_restored && zstd -q -d -c ${shellQuote(dumpFile)} | psql --no-password -X -q -v ON_ERROR_STOP=1 -d ${db}_restored >/dev/null`,
          env.hostEnv,
        )
      ).ms;
      psql(server, 'postgres', ['-c', `DROP DATABASE ${db}_restored`]);
    }

    // ---- Incrementals after 1 % of the rows changed: ours (workflow), then the bare engine.
    log('1 % of the rows changed; our workflow (incremental) …');
    const firstChangeMs = changeOnePercent(ctx, pgbenchScale > 0);
    const oursIncr = await workflow(ctx, 'incremental');
    const oursIncrBackup = await newestBackup(ctx);
    log('1 % of the rows changed; bare pgbackrest backup --type=incr …');
    const secondChangeMs = changeOnePercent(ctx, pgbenchScale > 0);
    const bareIncr = await pgbackrest(ctx, ['backup', '--type=incr', '--start-fast']);
    const bareIncrBackup = await newestBackup(ctx);
    const bareIncrVerify = await pgbackrest(ctx, ['verify']);

    const bareForHostCommand = bareFull.ms + bareVerifyAfterOurs.ms;
    const bareForWorkflow = bareFull.ms + bareVerifyAfterWorkflow.ms;
    const rows = [
      [
        'bare: pgbackrest backup --type=full',
        sec(bareFull.ms),
        '',
        `${mib(bareFullBackup.info.repository.delta)} MiB`,
      ],
      [
        'bare: pgbackrest verify (whole repository: 1 / 2 / 3 fulls)',
        `${sec(bareVerify.ms)} / ${sec(bareVerifyAfterOurs.ms)} / ${sec(bareVerifyAfterWorkflow.ms)}`,
        '',
        '',
      ],
      ['ours: host command (backup, verify, info)', sec(ours.ms), ratio(ours.ms / bareForHostCommand), ''],
      [
        'ours: workflow physical run, restore test aside',
        sec(oursFull.physical - oursFull.restoreTest),
        ratio((oursFull.physical - oursFull.restoreTest) / bareForWorkflow),
        '',
      ],
      ['   of which the host command loop', sec(oursFull.hostCommand), '', ''],
      ['   record / expiry', `${sec(oursFull.record)} / ${sec(oursFull.expiry)}`, '', ''],
      ['ours: restore test of the full (and its record)', sec(oursFull.restoreTest), '', ''],
      ['ours: whole workflow (empty dump beside)', sec(oursFull.ms), '', ''],
      [
        'logical: pg_dump | zstd -3 -T0 (all data)',
        sec(dumpMs),
        ratio(dumpMs / bareFull.ms),
        `${mib(dumpBytes)} MiB`,
      ],
      [
        'bare: incremental after 1 % changed',
        sec(bareIncr.ms),
        ratio(bareIncr.ms / bareFull.ms),
        `${mib(bareIncrBackup.info.repository.delta)} MiB`,
      ],
      ['bare: verify after it', sec(bareIncrVerify.ms), '', ''],
      [
        'ours: workflow incremental after 1 % changed, restore test aside',
        sec(oursIncr.physical - oursIncr.restoreTest),
        ratio((oursIncr.physical - oursIncr.restoreTest) / (bareIncr.ms + bareIncrVerify.ms)),
        `${mib(oursIncrBackup.info.repository.delta)} MiB`,
      ],
      ['ours: restore test of the incremental', sec(oursIncr.restoreTest), '', ''],
      [
        'bare: restore of the full (pgbackrest restore), then recovery until promoted',
        `${sec(bareRestored.restoreMs)} + ${sec(bareRestored.recoveryMs)}`,
        '',
        '',
      ],
      [
        "ours: the restore test's restore + recovery of the full, checks aside",
        `${oursFull.restoreTestSeconds.restore.toFixed(1)} + ${oursFull.restoreTestSeconds.recovery.toFixed(1)}`,
        ratio(
          ((oursFull.restoreTestSeconds.restore + oursFull.restoreTestSeconds.recovery) * 1000) /
            (bareRestored.restoreMs + bareRestored.recoveryMs),
        ),
        '',
      ],
      [
        '   its checks (pg_amcheck, every row read, counts)',
        oursFull.restoreTestSeconds.checks.toFixed(1),
        '',
        '',
      ],
      [
        'logical: zstd -d | psql into a new database (all data)',
        sec(logicalRestoreMs),
        ratio(logicalRestoreMs / (bareRestored.restoreMs + bareRestored.recoveryMs)),
        '',
      ],
    ];
    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { scale, pgbenchScale, waitMs },
      machine: machine(),
      cluster: { bytes: clusterBytes, repositoryAfterFulls },
      notes: [
        'Wall clock, one run each. Ratios of ours are to the bare backup plus verify (ours verifies every backup), its restore test aside (the bare engine has none); the dump and the bare incremental to the bare full.',
        "Restores: ours is the restore test's restore and recovery phases as its host script measured them (its checks aside), of our full; the bare one restores the bare full (same data, taken just before); the logical restore's ratio is to the bare restore plus recovery.",
        "Ours runs after the bare full, so its verify reads one more full backup than the bare verify did: the ratio overstates ours' overhead by that much.",
        'verify reads the whole repository (pgBackRest 2.45 has no --set for it): it grows with the backups and WAL kept.',
        'Every backup starts with its own checkpoint (--start-fast), bare and ours alike.',
      ],
      bare: {
        fullMs: bareFull.ms,
        verifyMs: bareVerify.ms,
        verifyAfterOursMs: bareVerifyAfterOurs.ms,
        verifyAfterWorkflowMs: bareVerifyAfterWorkflow.ms,
        incrementalMs: bareIncr.ms,
        incrementalVerifyMs: bareIncrVerify.ms,
        full: bareFullBackup,
        incremental: bareIncrBackup,
      },
      ours: {
        hostCommandMs: ours.ms,
        hostCommandResult: ours.result,
        full: oursFull,
        incremental: { ...oursIncr, backup: oursIncrBackup },
      },
      logical: { ms: dumpMs, bytes: dumpBytes, restoreMs: logicalRestoreMs },
      bareRestore: bareRestored,
      changes: { firstMs: firstChangeMs, secondMs: secondChangeMs },
    };
    const resultFile = saveResult('physical', startedAt, result);
    printResult(
      `kennel-backup physical bench: scale ${scale}${pgbenchScale ? ` + pgbench scale ${pgbenchScale}` : ''}, cluster ${mib(clusterBytes)} MiB; ${machineLine()}; waits ${waitMs} ms`,
      table(['backup', 'seconds', 'ratio', 'in the repository / dump size'], rows),
      resultFile,
    );
    return 0;
  });
}

await runMain(main);

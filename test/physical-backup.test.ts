import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST_COMMAND_SET } from '../functions/start-host-command/commands.ts';
import { localHost } from '../local/host.ts';
import { asServerUser } from '../local/postgres.ts';
import type { ExecutionRecord } from '../local/runner.ts';
import type { PhysicalPlan } from '../shared/backup/physical-plan.ts';
import { recordPhysicalExpiry } from '../shared/backup/physical-stages.ts';
import {
  keyOf,
  listPhysicalBackups,
  newestVerifiedPhysicalFull,
  type PhysicalRecord,
  readPhysicalRecord,
} from '../shared/catalog/physical.ts';
import { findTarget, parseConfig, type Target } from '../shared/core/config.ts';
import { HostCommandFailedError, InvalidInputError } from '../shared/core/errors.ts';
import { checkHostCommand, startHostCommand } from '../shared/host/command-stage.ts';
import { pgbackrestOf } from '../shared/host/pgbackrest-conf.ts';
import { runIn, startWorld, type TestWorld } from './support/environment.ts';
import { runProcess } from './support/process.ts';

/**
 * The physical half of the database backup workflow, for real: pgBackRest 2.45
 * backs up the local cluster (which archives its WAL to the local S3 over TLS)
 * while pgbench writes, verify reads every file back, our catalog records each
 * backup, and expire removes what the retention no longer needs. What is
 * asserted is pgBackRest's own account (`info`, `verify`), the records in S3,
 * the alerts and the execution's output.
 */

let world: TestWorld;
let target: Target;

beforeAll(async () => {
  world = await startWorld();
  const found = findTarget(parseConfig(world.env.functionEnv), 'local');
  if (!found) throw new Error('The local world has no target "local".');
  target = found;
}, 120_000);
afterAll(async () => {
  await world?.stop();
});

interface Info {
  backup: {
    label: string;
    type: string;
    prior: string | null;
    reference: string[] | null;
    archive: { start: string; stop: string };
  }[];
  archive: { min: string | null; max: string | null }[];
}

/** pgBackRest on the world's stanza, as the server user; asynchronous, so it never stalls anything it waits on. */
async function pgbackrest(...args: string[]): Promise<string> {
  const pg = pgbackrestOf(target);
  const [cmd, argv] = asServerUser('pgbackrest', [`--config=${pg.configFile}`, '--stanza=local', ...args]);
  const { stdout } = await promisify(execFile)(cmd, argv, {
    cwd: tmpdir(),
    env: world.env.hostEnv,
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

const info = async (): Promise<Info> =>
  (JSON.parse(await pgbackrest('info', '--output=json')) as Info[])[0] as Info;
const labels = async () => (await info()).backup.map((b) => b.label);

/** One iteration of BackUpEachTarget, as the runs of the execution's output (or its history) show it. */
interface Iteration {
  status: 'succeeded' | 'failed' | 'skipped';
  plan: PhysicalPlan & { off?: string; database?: string };
  physicalRecord?: {
    state: string;
    key: string;
    label: string;
    kind: string;
    requestedKind: string;
    note: string | null;
    restoreTest?: string;
    keep?: string;
    expiry?: string;
  };
  expiry?: { keep: string; expired: string[]; archive: unknown[]; marked: string[] };
}

/** The pgBackRest run of an execution: from its output, or from the history when the execution failed. */
function physicalRun(record: ExecutionRecord): Iteration {
  const ended = record.events
    .filter(
      (e) =>
        e.type === 'StateExited' && ['RunSucceeded', 'RunFailed', 'RunSkipped'].includes(e.state?.name ?? ''),
    )
    .map((e) => e.state?.output as Iteration);
  const physical = ended.filter((i) => (i.plan as { engine?: string }).engine === 'pgbackrest');
  expect(physical).toHaveLength(1);
  return physical[0] as Iteration;
}

/**
 * pgbench against its own database of the world's cluster, until stopped: writes
 * throughout the backups, at 20 transactions a second (unthrottled, two clients
 * would take the machine's two cores from the backups they are meant to overlap).
 */
async function startPgbench(): Promise<{ transactions(): number; stop(): Promise<void> }> {
  const bin = (name: string) => join(world.env.postgres.binDir, name);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...world.env.postgres.env };
  world.sql('postgres', 'CREATE DATABASE kb_pgbench');
  const init = await runProcess(bin('pgbench'), ['-i', '-q', '-s', '1', 'kb_pgbench'], env);
  if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
  const child: ChildProcess = spawn(
    bin('pgbench'),
    ['-n', '-c', '2', '-j', '2', '-R', '20', '-T', '3600', 'kb_pgbench'],
    {
      env,
      stdio: 'ignore',
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    // Each pgbench transaction adds one row to pgbench_history.
    transactions: () => Number(world.sql('kb_pgbench', 'SELECT count(*) FROM pgbench_history')),
    async stop() {
      child.kill('SIGINT');
      await exited;
    },
  };
}

/** s3rver keeps each object at `<directory>/<bucket>/<key>._S3rver_object`. */
const s3Bucket = () => join(dirname(world.env.paths.historyDir), 's3', world.env.bucket);
const repository = () => join(s3Bucket(), 'pgbackrest/local/backup/local');

/** The largest data file of a backup in the local S3's directory, and its path as verify names it. */
function largestDataFile(label: string): { file: string; name: string } {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory()
        ? walk(join(dir, e.name))
        : e.name.endsWith('._S3rver_object')
          ? [join(dir, e.name)]
          : [],
    );
  const [file] = walk(join(repository(), label, 'pg_data', 'base')).sort(
    (a, b) => statSync(b).size - statSync(a).size,
  );
  if (!file) throw new Error(`No data file in the backup ${label}`);
  return { file, name: relative(repository(), file).replace(/\._S3rver_object$/, '') };
}

describe('physical backups in the database backup workflow', () => {
  let full: Iteration;
  let incremental: Iteration;
  let fallback: Iteration;

  it('an incremental asked for when the repository holds no backup is taken as a full, and the record and output say so', async () => {
    expect(await labels()).toEqual([]);
    const run = await runIn(world, { input: { kind: 'incremental' } });
    expect(run.record.status).toBe('SUCCEEDED');
    fallback = physicalRun(run.record);
    expect(fallback.status).toBe('succeeded');
    expect(fallback.physicalRecord).toMatchObject({
      state: 'verified',
      kind: 'full',
      requestedKind: 'incremental',
    });
    expect(fallback.physicalRecord?.note).toContain(
      'pgBackRest took a full backup instead of the incremental',
    );
    const record = await readPhysicalRecord(world.catalog, fallback.plan.recordKey);
    expect(record).toMatchObject({ kind: 'full', requestedKind: 'incremental', prior: null, references: [] });
    expect(record.note).toBe(fallback.physicalRecord?.note);
    expect(record.verification.restoreTest?.state).toBe('passed');
    // The test's own start (its command sent, after the backup's verify) and end: the audit report's duration.
    const test = record.verification.restoreTest;
    expect(Date.parse(test?.startedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(record.finishedAt));
    expect(Date.parse(test?.checkedAt ?? '')).toBeGreaterThan(Date.parse(test?.startedAt ?? ''));
    expect(fallback.physicalRecord).toMatchObject({ restoreTest: 'passed', keep: record.label });
    expect((await info()).backup.map((b) => [b.label, b.type])).toEqual([[record.label, 'full']]);
  }, 300_000);

  it('takes a full, then an incremental, while pgbench writes: both verified, the incremental built on the full', async () => {
    const pgbench = await startPgbench();
    try {
      const before = pgbench.transactions();
      const fullRun = await runIn(world, { input: { kind: 'full' } });
      const during = pgbench.transactions();
      const dumpsBefore = await world.catalog.listKeys('database/');
      const incrementalRun = await runIn(world, { input: { kind: 'incremental' } });
      const after = pgbench.transactions();
      // An incremental is pgBackRest's alone: no dump, no row-window archive.
      expect(await world.catalog.listKeys('database/')).toEqual(dumpsBefore);
      expect(
        (incrementalRun.record.output as { runs: Iteration[] }).runs.map((r) => [r.plan.engine, r.status]),
      ).toEqual([['pgbackrest', 'succeeded']]);
      // pgbench committed throughout both runs.
      expect(during).toBeGreaterThan(before);
      expect(after).toBeGreaterThan(during);

      for (const run of [fullRun, incrementalRun])
        expect(run.record.status, JSON.stringify(run.alerts)).toBe('SUCCEEDED');
      full = physicalRun(fullRun.record);
      incremental = physicalRun(incrementalRun.record);
      expect(full.physicalRecord).toMatchObject({
        state: 'verified',
        kind: 'full',
        requestedKind: 'full',
        note: null,
      });
      expect(incremental.physicalRecord).toMatchObject({
        state: 'verified',
        kind: 'incremental',
        requestedKind: 'incremental',
        note: null,
      });

      // pgBackRest's own account: the incremental's prior is the full.
      const backups = (await info()).backup;
      const inc = backups.find((b) => b.label === incremental.physicalRecord?.label);
      expect(inc).toMatchObject({
        type: 'incr',
        prior: full.physicalRecord?.label,
        reference: [full.physicalRecord?.label],
      });
      expect(backups.find((b) => b.label === full.physicalRecord?.label)?.type).toBe('full');
    } finally {
      await pgbench.stop();
    }

    // Our catalog: both verified, with pgBackRest's facts; the reader finds the full.
    const records = await listPhysicalBackups(world.catalog, 'local');
    const byLabel = new Map(records.map((r) => [r.label, r]));
    const fullRecord = byLabel.get(full.physicalRecord?.label ?? '') as PhysicalRecord;
    const incRecord = byLabel.get(incremental.physicalRecord?.label ?? '') as PhysicalRecord;
    expect(fullRecord.verification).toMatchObject({
      state: 'verified',
      problems: [],
      repository: { status: 'ok', problemCount: 0 },
    });
    expect(incRecord.verification).toMatchObject({ state: 'verified', problems: [] });
    // Both restore-tested, each test's report beside the catalog.
    for (const record of [fullRecord, incRecord])
      expect(record.verification.restoreTest).toMatchObject({
        state: 'passed',
        reportKey: expect.stringMatching(/^reports\/restore-tests\/pgbackrest\/local\//),
      });
    expect(incRecord).toMatchObject({ prior: fullRecord.label, references: [fullRecord.label] });
    expect(incRecord.backup.archiveStart >= fullRecord.backup.archiveStop).toBe(true);
    expect(fullRecord.backup.databaseBytes).toBeGreaterThan(1_000_000);
    // The incremental copied what changed, far less than the cluster.
    expect(incRecord.backup.backupBytes).toBeLessThan(fullRecord.backup.backupBytes / 2);
    expect((await newestVerifiedPhysicalFull(world.catalog, 'local', { restoreTested: true }))?.label).toBe(
      fullRecord.label,
    );

    // Both runs expired with the conf's 35-day window, keeping the full: nothing went.
    for (const run of [full, incremental]) {
      expect(run.physicalRecord).toMatchObject({ restoreTest: 'passed', keep: fullRecord.label });
      expect(run.expiry).toMatchObject({ keep: fullRecord.label, expired: [], marked: [] });
    }
    expect((await labels()).filter((l) => l.startsWith(fullRecord.label))).toEqual([
      fullRecord.label,
      incRecord.label,
    ]);
  }, 600_000);

  it('a target without pgBackRest settings gets its dumps, and skipped physical and WAL runs saying what to add (incremental and transaction logs: nothing else)', async () => {
    const targets = JSON.parse(world.env.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
    const withoutPgbackrest = targets.map(({ pgbackrest: _, ...t }) => t);
    const before = await labels();
    const run = await runIn(world, {
      input: { kind: 'full' },
      functionEnv: { BACKUP_TARGETS: JSON.stringify(withoutPgbackrest) },
    });
    expect(run.record.status).toBe('SUCCEEDED');
    const off = physicalRun(run.record);
    expect(off.status).toBe('skipped');
    expect(off.plan.off).toContain('The target "local" has no pgbackrest settings in BACKUP_TARGETS');
    expect(off.plan.off).toContain('add "pgbackrest"');
    expect((run.record.output as { runs: Iteration[] }).runs).toContainEqual(
      expect.objectContaining({ status: 'skipped', plan: expect.objectContaining({ off: off.plan.off }) }),
    );
    expect(await labels()).toEqual(before);
    expect(run.host.sent.map((s) => s.script)).not.toContainEqual(
      expect.stringContaining('pgbackrest-backup'),
    );

    // Incremental and transaction logs are pgBackRest's alone: each run is skipped,
    // saying what is unprotected and what to add; nothing reaches the host, no dump is made.
    const dumps = await world.catalog.listKeys('database/');
    for (const [kind, says] of [
      [
        'incremental',
        'so no incremental backup was taken: nothing but the daily logical dump protects its data',
      ],
      [
        'transaction-logs',
        'so its WAL is not archived and no transaction-logs run was made: nothing but the daily logical dump protects its data (an RPO of a day, not a minute)',
      ],
    ] as const) {
      const skipped = await runIn(world, {
        input: { kind },
        functionEnv: { BACKUP_TARGETS: JSON.stringify(withoutPgbackrest) },
      });
      expect(skipped.record.status, kind).toBe('SUCCEEDED');
      const runs = (skipped.record.output as { runs: Iteration[] }).runs;
      expect(runs.map((r) => [r.plan.engine, r.plan.kind, r.status])).toEqual([
        [kind === 'incremental' ? 'pgbackrest' : 'wal', kind, 'skipped'],
      ]);
      expect(runs[0]?.plan.off).toContain(
        `The target "local" has no pgbackrest settings in BACKUP_TARGETS, ${says}`,
      );
      expect(runs[0]?.plan.off).toContain('add "pgbackrest": {"dataDirectory":');
      expect(skipped.record.events.map((e) => e.state?.name)).toContain('RunSkipped');
      expect(skipped.host.sent).toEqual([]);
    }
    expect(await world.catalog.listKeys('database/')).toEqual(dumps);
  }, 300_000);

  it('a corrupted file of the full fails the next run with an alert naming it; the incremental built on it is recorded as failed', async () => {
    const { file, name } = largestDataFile(full.physicalRecord?.label ?? '');
    const original = readFileSync(file);
    const damaged = Buffer.from(original);
    for (let i = 100; i < 104; i += 1) damaged[i] = (damaged[i] ?? 0) ^ 0xff;
    writeFileSync(file, damaged);
    try {
      const run = await runIn(world, { input: { kind: 'incremental' } });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.error).toBe('BackupRunsFailed');
      const failed = physicalRun(run.record);
      expect(failed.status).toBe('failed');
      const alert = run.alerts.find((a) => a.state === 'RecordPhysicalBackup');
      expect(alert?.error).toBe('RepositoryCorruptError');
      expect(alert?.cause).toContain(`invalid checksum '${name}'`);
      expect(alert?.text).toContain(name);
      // The dump beside it still ran.
      expect(run.alerts).toHaveLength(1);

      const records = await listPhysicalBackups(world.catalog, 'local');
      const latest = records.at(-1) as PhysicalRecord;
      expect(latest.runId).toBe(failed.plan.runId);
      expect(latest.references).toContain(full.physicalRecord?.label);
      expect(latest.verification.state).toBe('failed');
      expect(latest.verification.problems).toEqual([`invalid checksum '${name}'`]);
      expect(latest.verification.repository).toMatchObject({ status: 'error', problemCount: 1 });
    } finally {
      writeFileSync(file, original);
    }
    expect(await pgbackrest('verify', '--output=text', '--verbose')).toContain('status: ok');
  }, 300_000);
  it('the next incremental after one that failed builds on nothing that failed: it is taken as a full, and says why', async () => {
    const [failed] = (await listPhysicalBackups(world.catalog, 'local')).slice(-1);
    expect(failed?.verification.state).toBe('failed');
    const run = await runIn(world, { input: { kind: 'incremental' } });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const taken = physicalRun(run.record);
    expect(taken.plan.base).toBe(incremental.physicalRecord?.label);
    expect(taken.physicalRecord).toMatchObject({
      state: 'verified',
      kind: 'full',
      requestedKind: 'incremental',
      restoreTest: 'passed',
    });
    expect(taken.physicalRecord?.note).toBe(
      `The repository's newest backup, ${failed?.label}, is not ${incremental.physicalRecord?.label}, the newest that passed verification and its restore test, so a full backup was taken instead of an incremental built on it: a backup that failed is the base of nothing.`,
    );
    const backup = (await info()).backup.find((b) => b.label === taken.physicalRecord?.label);
    expect(backup).toMatchObject({ type: 'full', prior: null });
  }, 300_000);
});

describe('expiry of physical backups', () => {
  const config = () => parseConfig(world.env.functionEnv);

  /** The expire host command, sent and checked by the stages' own code. */
  async function expire(request: Record<string, unknown>) {
    const host = localHost(world.env.hostEnv);
    const sent = await startHostCommand(config(), host, HOST_COMMAND_SET, {
      script: 'pgbackrest-expire',
      execution: 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-database-backup:expiry',
      ...request,
    });
    await host.drain();
    return { host, command: await checkHostCommand(host, { command: sent }) };
  }

  /** The plan of the run that recorded `record`, as the expiry's request carries it. */
  const planOf = (record: PhysicalRecord, executionId = record.executionId): PhysicalPlan => ({
    engine: 'pgbackrest',
    kind: record.requestedKind,
    target: record.target,
    runId: record.runId,
    executionId,
    startedAt: record.startedAt,
    bucket: world.env.bucket,
    recordKey: keyOf(record),
    base: null,
  });

  async function fulls(): Promise<PhysicalRecord[]> {
    return (await listPhysicalBackups(world.catalog, 'local')).filter((r) => r.kind === 'full');
  }

  it('refuses bad input and changes nothing', async () => {
    const [oldest] = await fulls();
    if (!oldest) throw new Error('no full');
    const plan = planOf(oldest);
    const before = await labels();
    for (const bad of [
      { plan, keep: 'latest' },
      { plan, keep: oldest.label, keepFullCount: 0 },
      { plan, keep: `${oldest.label}; rm -rf /` },
      { plan: { ...plan, target: '../etc' }, keep: oldest.label },
    ]) {
      await expect(expire(bad)).rejects.toThrow(InvalidInputError);
    }
    // A label that is not in the repository: the host refuses before the dry run.
    await expect(expire({ plan, keep: '20200101-000000F', keepFullCount: 1 })).rejects.toThrow(
      /20200101-000000F.*is not in the repository of local; nothing was expired/,
    );
    expect(await labels()).toEqual(before);
  }, 120_000);

  it('refuses, expiring nothing, when the retention would remove the full to keep', async () => {
    const [oldest] = await fulls();
    if (!oldest) throw new Error('no full');
    const before = await labels();
    const plan = planOf(oldest);
    const refused = expire({ plan, keep: oldest.label, keepFullCount: 1 });
    await expect(refused).rejects.toThrow(HostCommandFailedError);
    await expect(refused).rejects.toThrow(`expire would remove ${oldest.label}`);
    await expect(refused).rejects.toThrow('nothing was expired');
    expect(await labels()).toEqual(before);
  }, 120_000);

  it('keeps the newest verified full and the WAL it needs, removes the rest, and marks their records expired', async () => {
    const newest = await newestVerifiedPhysicalFull(world.catalog, 'local', { restoreTested: true });
    if (!newest) throw new Error('no full passed verification and its restore test');
    const before = await info();
    const older = before.backup.filter((b) => !b.label.startsWith(newest.label)).map((b) => b.label);
    expect(older.length).toBeGreaterThan(0);
    const plan = planOf(newest, 'arn:test:expire');

    const { command } = await expire({ plan, keep: newest.label, keepFullCount: 1 });
    const result = command.result as {
      keep: string;
      expired: string[];
      archive: { id: string; start: string; stop: string }[];
    };
    expect(result.keep).toBe(newest.label);
    expect(new Set(result.expired)).toEqual(new Set(older));

    const after = await info();
    expect(after.backup.every((b) => b.label.startsWith(newest.label))).toBe(true);
    expect(after.backup.map((b) => b.label)).toContain(newest.label);
    // The WAL from the kept full's start on is still there; what went ended before it.
    const min = after.archive[0]?.min ?? 'Z';
    expect(min <= newest.backup.archiveStart).toBe(true);
    expect(result.archive.length).toBeGreaterThan(0);
    for (const range of result.archive) expect(range.stop < newest.backup.archiveStart).toBe(true);
    expect(await pgbackrest('verify', '--output=text', '--verbose')).toContain('status: ok');

    const recorded = await recordPhysicalExpiry(world.catalog, plan, result);
    expect(recorded.marked.length).toBeGreaterThanOrEqual(older.length);
    const records = await listPhysicalBackups(world.catalog, 'local');
    for (const record of records) {
      if (older.includes(record.label))
        expect(record.expired, record.label).toMatchObject({ executionId: 'arn:test:expire' });
      if (record.label.startsWith(newest.label)) expect(record.expired, record.label).toBeUndefined();
    }
    expect((await newestVerifiedPhysicalFull(world.catalog, 'local', { restoreTested: true }))?.label).toBe(
      newest.label,
    );
  }, 120_000);
});

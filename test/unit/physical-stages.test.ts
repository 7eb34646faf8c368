import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { type PhysicalPlan, physicalRuns } from '../../shared/backup/physical-plan.ts';
import {
  concernsBackup,
  type PhysicalBackupFacts,
  recordPhysicalBackup,
  recordPhysicalExpiry,
  recordPhysicalRestoreTest,
} from '../../shared/backup/physical-stages.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { type PhysicalRecord, physicalRecordSchema } from '../../shared/catalog/physical.ts';
import { InvalidInputError, RepositoryCorruptError } from '../../shared/core/errors.ts';
import { PRIMARY_WITH_PGBACKREST, testConfig } from '../support/config.ts';

/**
 * The record stage's logic against a faked S3 (the integration test runs it
 * against the local S3 and real pgBackRest): what it writes for each outcome the
 * host can report, what it refuses, and which full the expiry keeps.
 */

const s3 = mockClient(S3Client);
const config = testConfig({
  BACKUP_TARGETS: JSON.stringify([PRIMARY_WITH_PGBACKREST]),
});
const catalog = new Catalog(new S3Client({ region: 'eu-west-1' }), config.BACKUP_BUCKET);
const NOW = new Date('2026-11-26T08:05:00.000Z');

/** A run's plan as PlanBackup makes it, its base (an incremental's) read from the fake bucket. */
const planOf = async (kind: 'full' | 'incremental', startedAt = '2026-11-26T08:00:00.000Z') =>
  (
    await physicalRuns(config, catalog, config.BACKUP_TARGETS, {
      kind,
      executionId: `arn:aws:states:eu-west-1:123456789012:execution:kennel-backup-prod-database-backup:${kind}-${startedAt}`,
      startedAt,
    })
  )[0] as PhysicalPlan;

const FULL = '20261126-020001F';
const INCR = '20261126-020001F_20261126-080001I';

function facts(
  overrides: Partial<PhysicalBackupFacts['backup']> = {},
  verify?: PhysicalBackupFacts['verify'],
) {
  return {
    requestedType: 'incr',
    newestBefore: FULL,
    startedAt: '2026-11-26T08:00:01.000Z',
    finishedAt: '2026-11-26T08:01:30.000Z',
    backup: {
      label: INCR,
      type: 'incr',
      prior: FULL,
      reference: [FULL],
      error: false,
      timestamp: { start: 1_795_680_001, stop: 1_795_680_031 },
      archive: { start: '000000010000000000000010', stop: '000000010000000000000011' },
      lsn: { start: '0/10000028', stop: '0/11000100' },
      info: { size: 48_281_673, delta: 8_458, repository: { size: 7_527_850, delta: 388 } },
      ...overrides,
    },
    verify: verify ?? { status: 'ok', problemCount: 0, problems: [] },
  };
}

/** The records the fake bucket holds, by key; PutObject adds to them. */
let bucket: Map<string, string>;

beforeEach(() => {
  s3.reset();
  bucket = new Map();
  s3.on(PutObjectCommand).callsFake(async (input: { Key: string; Body: string }) => {
    bucket.set(input.Key, input.Body);
    return {};
  });
  s3.on(ListObjectsV2Command).callsFake(async (input: { Prefix: string; StartAfter?: string }) => ({
    Contents: [...bucket.keys()]
      .filter((k) => k.startsWith(input.Prefix) && (input.StartAfter === undefined || k > input.StartAfter))
      .map((Key) => ({ Key })),
  }));
  s3.on(GetObjectCommand).callsFake(async (input: { Key: string }) => ({
    Body: { transformToString: async () => bucket.get(input.Key) ?? '' },
  }));
});

const written = (key: string) => physicalRecordSchema.parse(JSON.parse(bucket.get(key) ?? 'null'));

/** RecordPhysicalRestoreTest's outcome of a passed test of `set`. */
const outcome = (set: string) => ({
  state: 'passed',
  set,
  checkedAt: NOW.toISOString(),
  detail: `${set} restored and checked`,
  failedIn: null,
  amcheck: 'passed',
  tables: 7,
  rows: 19_722,
  countsDigest: 'a'.repeat(64),
  seconds: 12,
  reportKey: 'reports/restore-tests/pgbackrest/primary/2026/11/26/x.json',
});

/** A full of the past, in the catalog, as its run recorded it. */
async function pastFull(restoreTest?: 'passed' | 'failed'): Promise<PhysicalRecord> {
  const plan = await planOf('full', '2026-11-26T02:00:00.000Z');
  await recordPhysicalBackup(
    catalog,
    plan,
    {
      ...facts({ label: FULL, type: 'full', prior: null, reference: null }),
      requestedType: 'full',
    },
    NOW,
  );
  const record = written(plan.recordKey);
  if (restoreTest === undefined) return record;
  const tested = {
    ...record,
    verification: {
      ...record.verification,
      restoreTest: { state: restoreTest, checkedAt: NOW.toISOString(), detail: 'x' },
    },
  };
  bucket.set(plan.recordKey, JSON.stringify(tested));
  return tested;
}

describe('RecordPhysicalBackup', () => {
  it("records a verified full under the plan's key with pgBackRest's facts", async () => {
    const plan = await planOf('full');
    const result = await recordPhysicalBackup(
      catalog,
      plan,
      { ...facts({ label: FULL, type: 'full', prior: null, reference: null }), requestedType: 'full' },
      NOW,
    );
    expect(result).toMatchObject({
      state: 'verified',
      key: plan.recordKey,
      label: FULL,
      kind: 'full',
      note: null,
    });
    expect([...bucket.keys()]).toEqual([plan.recordKey]);
    expect(plan.recordKey).toMatch(
      /^catalog\/pgbackrest\/primary\/2026\/11\/26\/20261126T080000Z_[0-9a-f]{8}\.json$/,
    );
    expect(written(plan.recordKey)).toMatchObject({
      engine: 'pgbackrest',
      target: 'primary',
      repository: { bucket: config.BACKUP_BUCKET, path: '/pgbackrest/primary' },
      runId: plan.runId,
      kind: 'full',
      requestedKind: 'full',
      label: FULL,
      prior: null,
      references: [],
      backup: {
        startedAt: '2026-11-26T08:00:01.000Z',
        stoppedAt: '2026-11-26T08:00:31.000Z',
        archiveStart: '000000010000000000000010',
        archiveStop: '000000010000000000000011',
        databaseBytes: 48_281_673,
        backupBytes: 8_458,
        repositoryBytes: 7_527_850,
        pageChecksumErrors: false,
      },
      verification: { state: 'verified', problems: [], repository: { status: 'ok', problemCount: 0 } },
    });
  });

  it('says so when pgBackRest took a full because there was nothing to build on', async () => {
    const plan = await planOf('incremental');
    expect(plan.base).toBeNull();
    const result = await recordPhysicalBackup(
      catalog,
      plan,
      { ...facts({ label: FULL, type: 'full', prior: null, reference: null }), newestBefore: null },
      NOW,
    );
    expect(result).toMatchObject({ kind: 'full', requestedKind: 'incremental' });
    expect(result.note).toBe(
      'No backup in the repository to build on, so pgBackRest took a full backup instead of the incremental asked for (its own rule).',
    );
    expect(written(plan.recordKey)).toMatchObject({
      kind: 'full',
      requestedKind: 'incremental',
      note: result.note,
    });
  });

  it("says so when the host took a full because the repository's newest backup is not the plan's base", async () => {
    await pastFull('passed');
    const plan = await planOf('incremental');
    // The full passed both checks: an incremental may build on it.
    expect(plan.base).toBe(FULL);
    const failedIncrement = '20261126-020001F_20261126-060001I';
    const result = await recordPhysicalBackup(
      catalog,
      plan,
      {
        ...facts({ label: '20261126-080001F', type: 'full', prior: null, reference: null }),
        newestBefore: failedIncrement,
      },
      NOW,
    );
    expect(result.note).toBe(
      `The repository's newest backup, ${failedIncrement}, is not ${FULL}, the newest that passed verification and its restore test, so a full backup was taken instead of an incremental built on it: a backup that failed is the base of nothing.`,
    );
  });

  it('an incremental builds on nothing that failed: its base is the newest backup that passed verification and its restore test', async () => {
    await pastFull('passed');
    const incrementPlan = await planOf('incremental');
    await recordPhysicalBackup(catalog, incrementPlan, facts(), NOW);
    // The increment is verified, but its restore test has not passed: not a base yet.
    expect((await planOf('incremental', '2026-11-26T09:00:00.000Z')).base).toBe(FULL);
    await recordPhysicalRestoreTest(catalog, incrementPlan, outcome(INCR));
    expect((await planOf('incremental', '2026-11-26T09:00:00.000Z')).base).toBe(INCR);
    // A full is never planned on a base.
    expect((await planOf('full', '2026-11-26T09:00:00.000Z')).base).toBeNull();
  });
});

describe('UpdatePhysicalRecord', () => {
  it('adds the passed restore test to the record and keeps the newest full that passed both; with none, expires nothing', async () => {
    await pastFull();
    const incrementPlan = await planOf('incremental');
    await recordPhysicalBackup(catalog, incrementPlan, facts(), NOW);
    const untested = await recordPhysicalRestoreTest(catalog, incrementPlan, outcome(INCR));
    expect(untested).toMatchObject({ state: 'verified', label: INCR, restoreTest: 'passed' });
    expect(untested.keep).toBeUndefined();
    expect(untested.expiry).toContain(
      'No full backup of primary has passed verification and its restore test yet',
    );
    expect(written(incrementPlan.recordKey).verification.restoreTest).toEqual({
      state: 'passed',
      checkedAt: NOW.toISOString(),
      detail: `${INCR} restored and checked`,
      reportKey: 'reports/restore-tests/pgbackrest/primary/2026/11/26/x.json',
    });

    const fullPlan = await planOf('full', '2026-11-27T02:00:00.000Z');
    const newFull = '20261127-020001F';
    await recordPhysicalBackup(
      catalog,
      fullPlan,
      { ...facts({ label: newFull, type: 'full', prior: null, reference: null }), requestedType: 'full' },
      NOW,
    );
    expect(await recordPhysicalRestoreTest(catalog, fullPlan, outcome(newFull))).toMatchObject({
      kind: 'full',
      keep: newFull,
      expiry: `Expires what the retention no longer needs, never ${newFull}.`,
    });
  });

  it("refuses an outcome that is not a passed test of the plan's verified backup, changing nothing", async () => {
    const plan = await planOf('incremental');
    await recordPhysicalBackup(catalog, plan, facts(), NOW);
    const before = bucket.get(plan.recordKey);
    for (const bad of [
      outcome('20261120-020000F'),
      { ...outcome(INCR), state: 'failed' },
      { ...outcome(INCR), reportKey: undefined },
      undefined,
    ]) {
      await expect(recordPhysicalRestoreTest(catalog, plan, bad)).rejects.toThrow(InvalidInputError);
    }
    expect(bucket.get(plan.recordKey)).toBe(before);
  });
});

describe('RecordPhysicalBackup when verify found bad files', () => {
  it('records the backup as failed and fails naming the file when verify found a bad file it builds on', async () => {
    const plan = await planOf('incremental');
    const bad = `invalid checksum '${FULL}/pg_data/base/5/2619.zst'`;
    const refused = recordPhysicalBackup(
      catalog,
      plan,
      facts({}, { status: 'error', problemCount: 1, problems: [bad] }),
      NOW,
    );
    await expect(refused).rejects.toThrow(RepositoryCorruptError);
    await expect(refused).rejects.toThrow(bad);
    await expect(refused).rejects.toThrow(`The new backup ${INCR} is recorded as failed`);
    expect(written(plan.recordKey).verification).toMatchObject({ state: 'failed', problems: [bad] });
  });

  it("records a backup verified when the bad file is another backup's, and still fails the run naming it", async () => {
    const plan = await planOf('incremental');
    const elsewhere = "invalid checksum '20261120-020000F/pg_data/base/5/2619.zst'";
    const refused = recordPhysicalBackup(
      catalog,
      plan,
      facts({}, { status: 'error', problemCount: 1, problems: [elsewhere] }),
      NOW,
    );
    await expect(refused).rejects.toThrow(elsewhere);
    expect(written(plan.recordKey).verification).toMatchObject({ state: 'verified', problems: [] });
    expect(written(plan.recordKey).verification.detail).toContain(`elsewhere: ${elsewhere}`);
  });

  it('fails the backup when its WAL is bad, when more files are bad than verify listed, or when pages were damaged', async () => {
    const wal =
      'invalid result 15-1/0000000100000000/000000010000000000000011-8c4ed9d9009ca1a8780e4988ccc96387a0da6c00.zst: [29] zst error';
    const many = {
      status: 'error' as const,
      problemCount: 11,
      problems: ["invalid checksum '20261120-020000F/pg_data/x.zst'"],
    };
    for (const [n, outcome] of [
      facts({}, { status: 'error', problemCount: 1, problems: [wal] }),
      facts({}, many),
      facts({ error: true }),
    ].entries()) {
      const plan = await planOf('incremental', `2026-11-26T08:0${n}:00.000Z`);
      await expect(recordPhysicalBackup(catalog, plan, outcome, NOW)).rejects.toThrow(RepositoryCorruptError);
      expect(written(plan.recordKey).verification.state).toBe('failed');
    }
  });

  it('refuses facts that are not what the host script reports, writing nothing', async () => {
    for (const bad of [
      undefined,
      { ...facts(), backup: { ...facts().backup, label: 'latest' } },
      { ...facts(), backup: { ...facts().backup, type: 'diff' } },
      { ...facts(), verify: { status: 'maybe', problemCount: 0, problems: [] } },
    ]) {
      await expect(recordPhysicalBackup(catalog, await planOf('incremental'), bad, NOW)).rejects.toThrow(
        InvalidInputError,
      );
    }
    await expect(
      recordPhysicalBackup(
        catalog,
        { ...(await planOf('incremental')), recordKey: 'catalog/pgbackrest/primary/elsewhere.json' },
        facts(),
        NOW,
      ),
    ).rejects.toThrow(/is not where its run's record belongs/);
    expect(bucket.size).toBe(0);
  });
});

describe('concernsBackup', () => {
  const backup = facts().backup as PhysicalBackupFacts['backup'];
  it.each([
    [`invalid checksum '${INCR}/pg_data/base/1/112.zst'`, true],
    [`invalid size '${FULL}/backup.manifest'`, true],
    ["invalid checksum '20261120-020000F/pg_data/base/1/112.zst'", false],
    [
      "file missing '15-1/0000000100000000/000000010000000000000010-0123456789abcdef0123456789abcdef01234567.zst'",
      true,
    ],
    [
      "file missing '15-1/0000000100000000/00000001000000000000000F-0123456789abcdef0123456789abcdef01234567.zst'",
      false,
    ],
    [
      "file missing '15-1/0000000100000000/000000010000000000000012-0123456789abcdef0123456789abcdef01234567.zst'",
      false,
    ],
    ['invalid result: something without a path', true],
  ])('%s concerns the backup: %s', (problem, expected) => {
    expect(concernsBackup(problem, backup)).toBe(expected);
  });
});

describe('RecordPhysicalExpiry', () => {
  it("marks the expired backups' records and leaves the others", async () => {
    await pastFull('passed');
    await recordPhysicalBackup(catalog, await planOf('incremental'), facts(), NOW);
    const newer = await planOf('full', '2026-11-27T02:00:00.000Z');
    await recordPhysicalBackup(
      catalog,
      newer,
      {
        ...facts({ label: '20261127-020001F', type: 'full', prior: null, reference: null }),
        requestedType: 'full',
      },
      NOW,
    );
    const result = await recordPhysicalExpiry(
      catalog,
      newer,
      {
        keep: '20261127-020001F',
        retention: "the conf's (repo1-retention-full-type=time)",
        expired: [INCR, FULL],
        archive: [{ id: '15-1', start: '000000010000000000000003', stop: '00000001000000000000001F' }],
      },
      NOW,
    );
    expect(result.marked).toHaveLength(2);
    for (const key of bucket.keys()) {
      const record = written(key);
      if (record.label === '20261127-020001F') expect(record.expired).toBeUndefined();
      else expect(record.expired).toEqual({ at: NOW.toISOString(), executionId: newer.executionId });
    }
  });

  it('refuses a report that is not the host script’s, marking nothing', async () => {
    await expect(
      recordPhysicalExpiry(
        catalog,
        await planOf('full'),
        { keep: FULL, retention: 'x', expired: ['all'], archive: [] },
        NOW,
      ),
    ).rejects.toThrow(InvalidInputError);
    expect(s3.commandCalls(PutObjectCommand)).toEqual([]);
  });
});

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { zstdCompressSync } from 'node:zlib';
import {
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  PutObjectRetentionCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { isDumpPlan, planBackup } from '../../shared/backup/database-plan.ts';
import { verifyArchive } from '../../shared/catalog/archive-check.ts';
import { archiveRecordSchema } from '../../shared/catalog/archive-record.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { archiveRecordKey, MANIFEST_SUFFIX } from '../../shared/catalog/keys.ts';
import { type DatabaseManifest, manifestSchema } from '../../shared/catalog/manifest.ts';
import { excludedTablesOf } from '../../shared/catalog/manifest-builder.ts';
import { ArchiveCorruptError, InvalidInputError } from '../../shared/core/errors.ts';
import { testConfig } from '../support/config.ts';
import { PROPERTIES, pastBackup, propertiesLine } from '../support/manifests.ts';

const s3 = mockClient(S3Client);
const client = new S3Client({ region: 'eu-west-1' });
const config = testConfig();
const catalog = new Catalog(client, config.BACKUP_BUCKET);
const excluded = (kind: Parameters<typeof excludedTablesOf>[1]) => excludedTablesOf(config, kind);
const NOW = () => new Date('2026-11-26T06:01:00.000Z');

/** The long-term monthly dump's plan: every table's rows, the log tables' included. */
async function monthlyPlan() {
  const [plan] = await planBackup(config, {} as Catalog, {
    input: { kind: 'monthly' },
    executionId: 'arn:aws:states:eu-west-1:123456789012:execution:kennel-backup-prod-database-backup:run-1',
    startedAt: '2026-11-26T06:00:00.000Z',
  });
  if (!plan || !isDumpPlan(plan)) throw new Error('no dump plan');
  return plan;
}

/** A plain-format dump as pg_dump writes it: each table's data after its TABLE DATA comment. */
const dumpOf = (tables: [string, string[]][]) =>
  zstdCompressSync(
    Buffer.from(
      [
        propertiesLine(),
        '--',
        '-- PostgreSQL database dump',
        '--',
        '',
        ...tables.flatMap(([table, rows]) => [
          '--',
          `-- Data for Name: ${table}; Type: TABLE DATA; Schema: public; Owner: kennel`,
          '--',
          '',
          `COPY public.${table} (id) FROM stdin;`,
          ...rows,
          '\\.',
          '',
        ]),
        '--',
        '-- PostgreSQL database dump complete',
        '--',
        '',
      ].join('\n'),
    ),
  );
const ARCHIVE = dumpOf([
  ['audit_logs', ['1', '2', '3']],
  ['bookings', ['1', '2']],
  ['"kennel.sizes"', []],
]);

const factsOf = (bytes: Buffer) => ({
  size: bytes.length,
  sha256: createHash('sha256').update(bytes).digest('hex'),
  startedAt: '2026-11-26T06:00:01.000Z',
  finishedAt: '2026-11-26T06:00:09.000Z',
  until: '2026-11-26T06:00:02.123456Z',
  serverVersion: '150020',
});

/** The manifests written, parsed as the catalog reads them. */
function written(): DatabaseManifest[] {
  return s3
    .commandCalls(PutObjectCommand)
    .filter((c) => c.args[0].input.Key?.endsWith(MANIFEST_SUFFIX))
    .map((c) => manifestSchema.parse(JSON.parse(String(c.args[0].input.Body))) as DatabaseManifest);
}

/** The version S3 gave the archive when the host wrote it, locked by the bucket's default for 42 days. */
const WRITTEN = {
  VersionId: 'v1-written-by-the-backup',
  LastModified: new Date('2026-11-26T06:00:09.000Z'),
  ObjectLockMode: 'GOVERNANCE' as const,
  ObjectLockRetainUntilDate: new Date('2027-01-07T06:00:09.000Z'),
};

/** The record of the archive's creation VerifyArchive wrote, as the catalog would serve it. */
function recordWritten() {
  const put = s3
    .commandCalls(PutObjectCommand)
    .find((c) => c.args[0].input.Key?.startsWith('catalog/archives/'));
  return {
    key: put?.args[0].input.Key ?? '',
    body: String(put?.args[0].input.Body),
    input: put?.args[0].input,
  };
}

beforeEach(() => {
  s3.reset();
  s3.on(HeadObjectCommand).resolves(WRITTEN);
  s3.on(GetObjectCommand).callsFake(async () => ({ Body: Readable.from([ARCHIVE]) }));
});

describe('VerifyArchive on a run just written', () => {
  it('lists the archive as unverified before reading it, then writes its verdict with the rows counted in the archive', async () => {
    const plan = await monthlyPlan();
    const manifest = (await verifyArchive(
      client,
      catalog,
      { plan, facts: factsOf(ARCHIVE) },
      excluded,
      NOW,
    )) as DatabaseManifest;

    // The archive is the only object read, in the version the backup wrote: there is no manifest yet to read.
    expect(s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input)).toEqual([
      { Bucket: config.BACKUP_BUCKET, Key: plan.archiveKey, VersionId: WRITTEN.VersionId },
    ]);
    const unverified = { ...manifest, tables: [], properties: null, verification: { state: 'unverified' } };
    expect(written()).toEqual([unverified, manifest]);
    // First the record of its creation, create-only, locked as long as a monthly dump is kept (7 years from its writing).
    expect(s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key)).toEqual([
      archiveRecordKey(plan.archiveKey),
      plan.manifestKey,
      plan.manifestKey,
    ]);
    const sevenYears = new Date('2033-11-26T06:00:09.000Z');
    const record = recordWritten();
    expect(record.input).toMatchObject({
      IfNoneMatch: '*',
      ObjectLockMode: 'GOVERNANCE',
      ObjectLockRetainUntilDate: sevenYears,
    });
    expect(archiveRecordSchema.parse(JSON.parse(record.body))).toEqual({
      version: 1,
      manifest: unverified,
      versionId: WRITTEN.VersionId,
      recordedAt: NOW().toISOString(),
      lockedUntil: sevenYears.toISOString(),
    });
    // The archive's version is locked as long too: the bucket's default would let it go after 42 days.
    expect(s3.commandCalls(PutObjectRetentionCommand).map((c) => c.args[0].input)).toEqual([
      {
        Bucket: config.BACKUP_BUCKET,
        Key: plan.archiveKey,
        VersionId: WRITTEN.VersionId,
        Retention: { Mode: 'GOVERNANCE', RetainUntilDate: sevenYears },
      },
    ]);
    expect(manifest).toMatchObject({
      kind: 'monthly',
      database: 'kennel_prod',
      runId: plan.runId,
      archive: {
        key: plan.archiveKey,
        localPath: `${plan.localDir}/${plan.fileName}`,
        format: 'plain',
        compression: 'zstd',
        size: ARCHIVE.length,
      },
      window: { since: null, until: '2026-11-26T06:00:02.123456Z' },
      serverVersion: '150020',
      // The monthly dump leaves no table out: the log tables' rows are in it, and counted.
      excludedTables: [],
      tables: [
        { schema: 'public', name: 'audit_logs', rows: 3 },
        { schema: 'public', name: 'bookings', rows: 2 },
        { schema: 'public', name: 'kennel.sizes', rows: 0 },
      ],
      properties: PROPERTIES,
      verification: { state: 'verified', checkedAt: '2026-11-26T06:01:00.000Z' },
    });
  });

  it('records an archive that differs from what the host reported as failed, with no tables, and throws', async () => {
    const plan = await monthlyPlan();
    const facts = { ...factsOf(ARCHIVE), sha256: 'f'.repeat(64) };
    await expect(verifyArchive(client, catalog, { plan, facts }, excluded, NOW)).rejects.toMatchObject({
      name: 'ArchiveCorruptError',
      message: expect.stringContaining(`the manifest says ${'f'.repeat(64)}`),
    });
    expect(written()).toMatchObject([
      { verification: { state: 'unverified' }, tables: [], properties: null },
      {
        verification: { state: 'failed' },
        tables: [],
        properties: null,
        archive: { sha256: 'f'.repeat(64) },
      },
    ]);
  });

  it("retried, finds its own run's record and still locks the archive; another run's record is refused", async () => {
    const plan = await monthlyPlan();
    await verifyArchive(client, catalog, { plan, facts: factsOf(ARCHIVE) }, excluded, NOW);
    const record = recordWritten();
    // The first try wrote the record and ended before it locked the archive.
    s3.reset();
    s3.on(HeadObjectCommand).resolves(WRITTEN);
    s3.on(GetObjectCommand).callsFake(async () => ({ Body: Readable.from([ARCHIVE]) }));
    s3.on(GetObjectCommand, { Key: record.key }).resolves({
      Body: { transformToString: async () => record.body } as never,
    });
    s3.on(PutObjectCommand, { Key: record.key }).rejects(
      Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), {
        name: 'PreconditionFailed',
        $metadata: { httpStatusCode: 412 },
      }),
    );
    const again = await verifyArchive(client, catalog, { plan, facts: factsOf(ARCHIVE) }, excluded, NOW);
    expect(again.verification.state).toBe('verified');
    expect(s3.commandCalls(PutObjectRetentionCommand)).toHaveLength(1);

    // A record of another run at that key: someone wrote it, or two runs wrote one key.
    const other = JSON.stringify({
      ...JSON.parse(record.body),
      manifest: { ...JSON.parse(record.body).manifest, runId: '20261126T060000Z_00000000' },
    });
    s3.on(GetObjectCommand, { Key: record.key }).resolves({
      Body: { transformToString: async () => other } as never,
    });
    await expect(
      verifyArchive(client, catalog, { plan, facts: factsOf(ARCHIVE) }, excluded, NOW),
    ).rejects.toThrow(
      `was already recorded at s3://${config.BACKUP_BUCKET}/${record.key} by the run 20261126T060000Z_00000000`,
    );
  });

  it('refuses facts that are not what the backup script reports, and records nothing', async () => {
    const plan = await monthlyPlan();
    const facts = { ...factsOf(ARCHIVE), size: '12', until: undefined };
    await expect(verifyArchive(client, catalog, { plan, facts }, excluded, NOW)).rejects.toMatchObject({
      name: 'HostCommandFailedError',
      message: expect.stringMatching(/size: .*; until: /),
    });
    expect(s3.commandCalls(PutObjectCommand)).toEqual([]);
    expect(s3.commandCalls(GetObjectCommand)).toEqual([]);
  });
});

describe('VerifyArchive on a backup in the catalog', () => {
  it('refuses a legacy row-window archive, reading nothing of it, with the way to a point in time', async () => {
    const legacy = pastBackup({ daysAgo: 3, now: NOW(), kind: 'incremental' });
    const key = `${legacy.archive.key}.manifest.json`;
    s3.reset();
    s3.on(GetObjectCommand, { Key: key }).resolves({
      Body: { transformToString: async () => JSON.stringify(legacy) } as never,
    });
    const refused = verifyArchive(client, catalog, { manifestKey: key }, excluded, NOW);
    await expect(refused).rejects.toThrow(InvalidInputError);
    await expect(refused).rejects.toThrow(`${legacy.archive.key} is a legacy row-window incremental archive`);
    await expect(refused).rejects.toThrow(/start the point-in-time-recovery workflow/);
    expect(s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input.Key)).toEqual([key]);
    expect(s3.commandCalls(PutObjectCommand)).toEqual([]);
  });

  /**
   * The catalog as S3 serves it after a run: its manifest (`stored`), the record
   * of the archive's creation that run wrote, the archive's current version and
   * its versions' bytes.
   */
  function inCatalog(
    plan: { manifestKey: string; archiveKey: string },
    stored: DatabaseManifest,
    bytes: { [version: string]: Buffer },
    current = WRITTEN.VersionId,
  ) {
    const record = recordWritten();
    s3.reset();
    s3.on(GetObjectCommand, { Key: plan.manifestKey }).resolves({
      Body: { transformToString: async () => JSON.stringify(stored) } as never,
    });
    s3.on(GetObjectCommand, { Key: record.key }).resolves({
      Body: { transformToString: async () => record.body } as never,
    });
    s3.on(HeadObjectCommand, { Key: plan.archiveKey }).resolves({ ...WRITTEN, VersionId: current });
    for (const [VersionId, body] of Object.entries(bytes))
      s3.on(GetObjectCommand, { Key: plan.archiveKey, VersionId }).callsFake(async () => ({
        Body: Readable.from([body]),
      }));
  }

  const restoreTested = (m: DatabaseManifest): DatabaseManifest => ({
    ...m,
    verification: {
      ...m.verification,
      restoreTest: { state: 'passed', checkedAt: '2026-11-26T06:02:00.000Z', detail: 'all rows' },
    },
  });

  it('checks the version its backup wrote against the record of its creation, and keeps its restore test', async () => {
    const plan = await monthlyPlan();
    const first = await verifyArchive(client, catalog, { plan, facts: factsOf(ARCHIVE) }, excluded, NOW);
    // The version the backup wrote no longer holds what the host reported (a fault of storage, say).
    const damaged = dumpOf([['bookings', ['1']]]);
    inCatalog(plan, restoreTested(first as DatabaseManifest), { [WRITTEN.VersionId]: damaged });
    const refused = verifyArchive(client, catalog, { manifestKey: plan.manifestKey }, excluded, NOW);
    await expect(refused).rejects.toThrow(ArchiveCorruptError);
    await expect(refused).rejects.toThrow(
      `${plan.archiveKey} (version ${WRITTEN.VersionId}) failed verification`,
    );
    await expect(refused).rejects.toThrow(
      `sha256 is ${factsOf(damaged).sha256}, the manifest says ${first.archive.sha256}`,
    );
    // What to do instead: another backup, or the vault's copy.
    await expect(refused).rejects.toThrow(
      'do not restore from it: restore an older backup instead (its run id as "backup"; info lists them), or this backup\'s copy in the vault, which replication kept apart ("source": "vault").',
    );
    expect(written()).toMatchObject([
      { verification: { state: 'failed', restoreTest: { state: 'passed' } } },
    ]);
  });

  it('names a replaced archive and a rewritten manifest, rebuilds the manifest from the record and names the version to restore from', async () => {
    const plan = await monthlyPlan();
    const first = await verifyArchive(client, catalog, { plan, facts: factsOf(ARCHIVE) }, excluded, NOW);
    // Someone put a new version of the archive and rewrote its manifest's sha256 and size to match.
    const forged = dumpOf([['bookings', ['9']]]);
    const rewritten: DatabaseManifest = {
      ...restoreTested(first as DatabaseManifest),
      archive: { ...first.archive, sha256: factsOf(forged).sha256, size: forged.length },
    };
    inCatalog(plan, rewritten, { [WRITTEN.VersionId]: ARCHIVE, v2: forged }, 'v2');
    const refused = verifyArchive(client, catalog, { manifestKey: plan.manifestKey }, excluded, NOW);
    await expect(refused).rejects.toMatchObject({
      name: 'TamperedArchiveError',
      message: expect.stringContaining(
        `s3://${config.BACKUP_BUCKET}/${plan.archiveKey} was changed after its backup: its manifest says sha256 ${factsOf(forged).sha256} (${forged.length} bytes), the record of its creation ${first.archive.sha256} (${ARCHIVE.length} bytes); its current version is v2, not ${WRITTEN.VersionId}, the version its backup wrote. The archive to restore from is version ${WRITTEN.VersionId} of s3://${config.BACKUP_BUCKET}/${plan.archiveKey}, the one its backup wrote (sha256 ${first.archive.sha256}), locked until 2033-11-26T06:00:09.000Z: it read back intact`,
      ),
    });
    // Only the version the backup wrote was read; the manifest is the first one again, verified, its tables counted anew.
    expect(
      s3
        .commandCalls(GetObjectCommand)
        .flatMap((c) => (c.args[0].input.Key === plan.archiveKey ? [c.args[0].input.VersionId] : [])),
    ).toEqual([WRITTEN.VersionId]);
    expect(written()).toEqual([
      { ...first, verification: { ...first.verification, checkedAt: NOW().toISOString() } },
    ]);
  });

  it("passes an intact plain dump whose recorded counts came from the database, not the archive (a parent's count(*) held its children)", async () => {
    const dump = dumpOf([['parent', ['1']]]);
    const [plan] = await planBackup(config, {} as Catalog, {
      input: { kind: 'full' },
      executionId: 'arn:aws:states:eu-west-1:123456789012:execution:kennel-backup-prod-database-backup:run-2',
      startedAt: '2026-11-26T02:00:00.000Z',
    });
    if (!plan || !isDumpPlan(plan)) throw new Error('no dump plan');
    s3.on(GetObjectCommand).callsFake(async () => ({ Body: Readable.from([dump]) }));
    const first = (await verifyArchive(
      client,
      catalog,
      { plan, facts: factsOf(dump) },
      excluded,
      NOW,
    )) as DatabaseManifest;
    expect(first.tables).toEqual([{ schema: 'public', name: 'parent', rows: 1 }]);
    const stored: DatabaseManifest = { ...first, tables: [{ schema: 'public', name: 'parent', rows: 3 }] };
    inCatalog(plan, stored, { [WRITTEN.VersionId]: dump });
    const again = await verifyArchive(client, catalog, { manifestKey: plan.manifestKey }, excluded, NOW);
    expect(again.verification.state).toBe('verified');
    expect(written()).toMatchObject([
      { tables: [{ schema: 'public', name: 'parent', rows: 3 }], verification: { state: 'verified' } },
    ]);
  });
});

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { zstdCompressSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { isDumpPlan, planBackup } from '../../shared/backup/database-plan.ts';
import { verifyArchive } from '../../shared/catalog/archive-check.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { type DatabaseManifest, manifestSchema } from '../../shared/catalog/manifest.ts';
import { excludedTablesOf } from '../../shared/catalog/manifest-builder.ts';
import { InvalidInputError } from '../../shared/core/errors.ts';
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
    .map((c) => manifestSchema.parse(JSON.parse(String(c.args[0].input.Body))) as DatabaseManifest);
}

beforeEach(() => {
  s3.reset();
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

    // The archive is the only object read: there is no manifest yet to read.
    expect(s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input.Key)).toEqual([plan.archiveKey]);
    expect(written()).toEqual([
      { ...manifest, tables: [], properties: null, verification: { state: 'unverified' } },
      manifest,
    ]);
    expect(s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key)).toEqual([
      plan.manifestKey,
      plan.manifestKey,
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

  it('checks the size and sha256 against the manifest and keeps its restore test', async () => {
    const plan = await monthlyPlan();
    const first = await verifyArchive(client, catalog, { plan, facts: factsOf(ARCHIVE) }, excluded, NOW);
    const stored: DatabaseManifest = {
      ...(first as DatabaseManifest),
      archive: { ...first.archive, sha256: 'e'.repeat(64) },
      verification: {
        state: 'verified',
        restoreTest: { state: 'passed', checkedAt: '2026-11-26T06:02:00.000Z', detail: 'all rows' },
      },
    };
    s3.reset();
    s3.on(GetObjectCommand, { Key: plan.manifestKey }).resolves({
      Body: { transformToString: async () => JSON.stringify(stored) } as never,
    });
    s3.on(GetObjectCommand, { Key: plan.archiveKey }).callsFake(async () => ({
      Body: Readable.from([ARCHIVE]),
    }));
    await expect(
      verifyArchive(client, catalog, { manifestKey: plan.manifestKey }, excluded, NOW),
    ).rejects.toThrow(`the manifest says ${'e'.repeat(64)}`);
    expect(written()).toMatchObject([
      { verification: { state: 'failed', restoreTest: { state: 'passed' } } },
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
    s3.reset();
    s3.on(GetObjectCommand, { Key: plan.manifestKey }).resolves({
      Body: { transformToString: async () => JSON.stringify(stored) } as never,
    });
    s3.on(GetObjectCommand, { Key: plan.archiveKey }).callsFake(async () => ({
      Body: Readable.from([dump]),
    }));
    const again = await verifyArchive(client, catalog, { manifestKey: plan.manifestKey }, excluded, NOW);
    expect(again.verification.state).toBe('verified');
    expect(written()).toMatchObject([
      { tables: [{ schema: 'public', name: 'parent', rows: 3 }], verification: { state: 'verified' } },
    ]);
  });
});

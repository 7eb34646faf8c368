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
import { testConfig } from '../support/config.ts';

const s3 = mockClient(S3Client);
const client = new S3Client({ region: 'eu-west-1' });
const config = testConfig();
const catalog = new Catalog(client, config.BACKUP_BUCKET);
const excluded = (kind: Parameters<typeof excludedTablesOf>[1]) => excludedTablesOf(config, kind);
const NOW = () => new Date('2026-11-26T06:01:00.000Z');

async function incrementalPlan() {
  const catalogWithFull = {
    newestOf: async () => ({ newestKey: undefined, newestVerified: undefined }),
  } as unknown as Catalog;
  const [plan] = await planBackup(config, catalogWithFull, {
    input: { kind: 'incremental', since: '2026-11-26T00:00:00.000Z' },
    executionId: 'arn:aws:states:eu-west-1:123456789012:execution:kennel-backup-prod-database-backup:run-1',
    startedAt: '2026-11-26T06:00:00.000Z',
  });
  if (!plan || !isDumpPlan(plan)) throw new Error('no dump plan');
  return plan;
}

const marker = (table: string, capture: string) =>
  `-- kennel-backup table: ${JSON.stringify({ schema: 'public', table, capture })}`;
const ARCHIVE = zstdCompressSync(
  Buffer.from(
    [
      '-- kennel-backup incremental archive',
      marker('bookings', 'changedRows'),
      'COPY kb_changes FROM stdin;',
      '1\tfirst',
      '2\tsecond',
      '\\.',
      marker('kennel.sizes', 'wholeTables'),
      'COPY kb_changes FROM stdin;',
      '\\.',
      marker('no_key', 'notCaptured'),
      '-- kennel-backup archive complete',
      '',
    ].join('\n'),
  ),
);

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
    const plan = await incrementalPlan();
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
      { ...manifest, tables: {}, capture: null, verification: { state: 'unverified' } },
      manifest,
    ]);
    expect(s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key)).toEqual([
      plan.manifestKey,
      plan.manifestKey,
    ]);
    expect(manifest).toMatchObject({
      kind: 'incremental',
      database: 'kennel_prod',
      runId: plan.runId,
      archive: {
        key: plan.archiveKey,
        localPath: `${plan.localDir}/${plan.fileName}`,
        format: 'changes',
        compression: 'zstd',
        size: ARCHIVE.length,
      },
      window: { since: '2026-11-26T00:00:00.000Z', until: '2026-11-26T06:00:02.123456Z' },
      serverVersion: '150020',
      excludedTables: ['audit_logs', 'session_logs'],
      tables: { 'public.bookings': 2, 'public.kennel.sizes': 0 },
      capture: {
        changedRows: ['public.bookings'],
        wholeTables: ['public.kennel.sizes'],
        notCaptured: ['public.no_key'],
      },
      verification: { state: 'verified', checkedAt: '2026-11-26T06:01:00.000Z' },
    });
    expect(manifest.capture?.note).toContain('Rows are chosen by updated_at in the window.');
  });

  it('records an archive that differs from what the host reported as failed, with no tables, and throws', async () => {
    const plan = await incrementalPlan();
    const facts = { ...factsOf(ARCHIVE), sha256: 'f'.repeat(64) };
    await expect(verifyArchive(client, catalog, { plan, facts }, excluded, NOW)).rejects.toMatchObject({
      name: 'ArchiveCorruptError',
      message: expect.stringContaining(`the manifest says ${'f'.repeat(64)}`),
    });
    expect(written()).toMatchObject([
      { verification: { state: 'unverified' }, tables: {} },
      { verification: { state: 'failed' }, tables: {}, capture: null, archive: { sha256: 'f'.repeat(64) } },
    ]);
  });

  it('refuses facts that are not what the backup script reports, and records nothing', async () => {
    const plan = await incrementalPlan();
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
  it('checks the rows against the manifest and keeps its restore test', async () => {
    const plan = await incrementalPlan();
    const first = await verifyArchive(client, catalog, { plan, facts: factsOf(ARCHIVE) }, excluded, NOW);
    const stored: DatabaseManifest = {
      ...(first as DatabaseManifest),
      tables: { 'public.bookings': 3 },
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
    ).rejects.toThrow(/public\.bookings has 2 rows in the archive, the manifest says 3/);
    expect(written()).toMatchObject([
      {
        tables: { 'public.bookings': 3 },
        verification: { state: 'failed', restoreTest: { state: 'passed' } },
      },
    ]);
  });

  it("passes an intact plain dump whose recorded counts came from the database, not the archive (a parent's count(*) held its children)", async () => {
    const dump = zstdCompressSync(
      Buffer.from(
        [
          '--',
          '-- PostgreSQL database dump',
          '--',
          '',
          '--',
          '-- Data for Name: parent; Type: TABLE DATA; Schema: public; Owner: kennel',
          '--',
          '',
          'COPY public.parent (id) FROM stdin;',
          '1',
          '\\.',
          '',
          '--',
          '-- PostgreSQL database dump complete',
          '--',
          '',
        ].join('\n'),
      ),
    );
    const catalogWithoutBackups = {
      newestOf: async () => ({ newestKey: undefined, newestVerified: undefined }),
    } as unknown as Catalog;
    const [plan] = await planBackup(config, catalogWithoutBackups, {
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
    expect(first.tables).toEqual({ 'public.parent': 1 });
    const stored: DatabaseManifest = { ...first, tables: { 'public.parent': 3 } };
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
      { tables: { 'public.parent': 3 }, verification: { state: 'verified' } },
    ]);
  });
});

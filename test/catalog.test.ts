import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LOCAL_S3_CREDENTIALS, type LocalS3, startLocalS3 } from '../local/s3.ts';
import type { Plan } from '../shared/backup/database-plan.ts';
import { pruneRun } from '../shared/backup/stages.ts';
import { Catalog } from '../shared/catalog/catalog.ts';
import { orphanArchives } from '../shared/catalog/leftovers.ts';
import { legacyArchives } from '../shared/catalog/legacy.ts';
import { listPhysicalBackups, newestVerifiedPhysicalFull } from '../shared/catalog/physical.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { parseConfig } from '../shared/core/config.ts';
import { BadManifestError, InvalidInputError } from '../shared/core/errors.ts';
import { logger } from '../shared/core/logger.ts';
import { findBackup } from '../shared/restore/find-backup.ts';
import { pastBackup } from './support/manifests.ts';

const BUCKET = 'kennel-backups-catalog-test';
const NOW = new Date();
let dir: string;
let server: LocalS3;
let s3: S3Client;
/** A client of the same server that does not trust its certificate. */
let untrusting: S3Client;
let catalog: Catalog;

// A minute past whole days, like a run that started on the hour.
const manifest = (kind: 'full' | 'incremental' | 'transaction-logs', daysAgo: number) =>
  pastBackup({ kind, daysAgo, now: NOW, extraMs: 60_000 });

/** The keys the catalog listed while `act` ran. */
async function listed(act: () => Promise<unknown>): Promise<number> {
  const spy = vi.spyOn(s3, 'send');
  try {
    await act();
    const counts = await Promise.all(
      spy.mock.calls.map(async ([command], i) =>
        command instanceof ListObjectsV2Command
          ? (((await spy.mock.results[i]?.value) as { KeyCount?: number } | undefined)?.KeyCount ?? 0)
          : 0,
      ),
    );
    return counts.reduce((a, b) => a + b, 0);
  } finally {
    spy.mockRestore();
  }
}

/** Counts the manifests and archives read through the client while `act` runs. */
async function reads(act: () => Promise<unknown>): Promise<number> {
  const spy = vi.spyOn(s3, 'send');
  try {
    await act();
    return spy.mock.calls.filter(([command]) => command instanceof GetObjectCommand).length;
  } finally {
    spy.mockRestore();
  }
}

beforeAll(async () => {
  Object.assign(process.env, LOCAL_S3_CREDENTIALS);
  dir = mkdtempSync(join(tmpdir(), 'kennel-backup-catalog-'));
  server = await startLocalS3(join(dir, 's3'), BUCKET, join(dir, 'tls'));
  const config = parseConfig({
    BACKUP_BUCKET: BUCKET,
    BACKUP_TARGETS: JSON.stringify([
      { name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/a',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
    S3_ENDPOINT_URL: server.endpoint,
    S3_CA_BUNDLE: server.caFile,
  });
  untrusting = createS3Client({ ...config, S3_CA_BUNDLE: undefined });
  s3 = createS3Client(config);
  catalog = new Catalog(s3, BUCKET);
  // A long history: a full a day for 60 days, and the legacy row-window archives
  // the earlier runs made: a log archive a day for 200 days, an incremental a day for 20.
  for (let d = 1; d <= 200; d += 1) await catalog.writeManifest(manifest('transaction-logs', d));
  for (let d = 1; d <= 20; d += 1) await catalog.writeManifest(manifest('incremental', d));
  for (let d = 1; d <= 60; d += 1) await catalog.writeManifest(manifest('full', d));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the catalog reads only what it needs, however long the history', () => {
  it('the newest verified backup is found by listing the last two days, not 60 of them', async () => {
    let newest: unknown;
    const keys = await listed(async () => {
      newest = (await catalog.newestOf('full', 'primary', 'kennel_prod', NOW)).newestUsable;
    });
    expect(newest).toEqual(manifest('full', 1));
    expect(keys).toBeLessThanOrEqual(4); // two days of archives and manifests at the most
  });

  it('when nothing that recent is verified, the whole catalog is listed: an old backup is still found', async () => {
    const recent = [manifest('full', 1), manifest('full', 2)];
    for (const m of recent) await catalog.writeManifest({ ...m, verification: { state: 'failed' } });
    try {
      const { newestUsable, newestKey } = await catalog.newestOf('full', 'primary', 'kennel_prod', NOW);
      expect(newestUsable).toEqual(manifest('full', 3));
      expect(newestKey).toBe(`${recent[0]?.archive.key}.manifest.json`);
    } finally {
      for (const m of recent) await catalog.writeManifest(m);
    }
  });

  it('lists the legacy row-window archives from their keys alone, as legacy', async () => {
    let listing: Awaited<ReturnType<typeof legacyArchives>> = [];
    const count = await reads(async () => {
      listing = await legacyArchives(catalog, 'primary', 'kennel_prod');
    });
    expect(count).toBe(0);
    expect(listing.map(({ note: _, ...l }) => l)).toEqual([
      {
        state: 'legacy',
        kind: 'incremental',
        target: 'primary',
        database: 'kennel_prod',
        archives: 20,
        oldest: manifest('incremental', 20).window.until.slice(0, 10),
        newest: manifest('incremental', 1).window.until.slice(0, 10),
      },
      {
        state: 'legacy',
        kind: 'transaction-logs',
        target: 'primary',
        database: 'kennel_prod',
        archives: 200,
        oldest: manifest('transaction-logs', 200).window.until.slice(0, 10),
        newest: manifest('transaction-logs', 1).window.until.slice(0, 10),
      },
    ]);
    expect(listing[0]?.note).toContain('refused for every restore');
    expect(await legacyArchives(catalog, 'primary', 'kennel_other')).toEqual([]);
  });

  it('refuses a legacy archive for a restore, named by run id or key, and points to the WAL path', async () => {
    const legacy = manifest('transaction-logs', 100); // no full of that day shares its run id
    for (const backup of [legacy.runId, legacy.archive.key, `${legacy.archive.key}.manifest.json`]) {
      const refused = findBackup(catalog, ['full', 'monthly', 'safety'], 'primary', 'kennel_prod', backup);
      await expect(refused).rejects.toThrow(InvalidInputError);
      await expect(refused).rejects.toThrow(
        `${legacy.archive.key} is a legacy row-window transaction-logs archive: its rows were chosen by a time window`,
      );
      await expect(refused).rejects.toThrow(
        /start the point-in-time-recovery workflow with \{"database", "targetTime"\}: it recovers from pgBackRest's backups and WAL.*Nothing was changed\.$/,
      );
    }
    // Asked for the legacy kind itself: refused before anything is read.
    const count = await reads(async () => {
      await expect(findBackup(catalog, ['incremental'], 'primary', 'kennel_prod', 'latest')).rejects.toThrow(
        /database\/incremental\/primary\/kennel_prod\/ is a legacy row-window incremental archive/,
      );
    });
    expect(count).toBe(0);
    // A full is found as before.
    const full = manifest('full', 5);
    expect(
      (await findBackup(catalog, ['full', 'monthly', 'safety'], 'primary', 'kennel_prod', full.runId)).archive
        .key,
    ).toBe(full.archive.key);
  });

  it('pruning a full reads the backups old enough to expire and the newest one, removes exactly the expired, and prunes the legacy archives by their old retention', async () => {
    const plan = { kind: 'full', target: 'primary', database: 'kennel_prod' } as Plan;
    let removed: string[] = [];
    const count = await reads(async () => {
      removed = (await pruneRun(catalog, plan, NOW, 86_400)).removedFromS3;
    });
    // Each is a minute older than its whole days: 30..60 days are past 30 days, 29 is not;
    // incrementals 7..20 days are past their 7; log archives keep their 7 years.
    const fulls = removed.filter((k) => k.startsWith('database/full/'));
    expect(fulls).toHaveLength(31);
    expect(fulls).toContain(manifest('full', 30).archive.key);
    expect(fulls).not.toContain(manifest('full', 29).archive.key);
    const incrementals = removed.filter((k) => k.startsWith('database/incremental/'));
    expect(incrementals.sort()).toEqual(
      Array.from({ length: 14 }, (_, i) => manifest('incremental', i + 7).archive.key).sort(),
    );
    expect(removed).toHaveLength(31 + 14);
    // The legacy kinds keep no newest one: the newest kept incremental is the 6-day-old one.
    expect((await catalog.manifestKeys('incremental', 'primary', 'kennel_prod')).length).toBe(6);
    expect((await catalog.manifestKeys('transaction-logs', 'primary', 'kennel_prod')).length).toBe(200);
    expect(count).toBeLessThanOrEqual(31 + 1 + 14);
  });
});

describe('a restore that names what is not there is told what is', () => {
  const refusal = async (database: string, backup: string) =>
    (await findBackup(catalog, ['full', 'monthly', 'safety'], 'primary', database, backup).catch(
      (e: unknown) => e,
    )) as Error;

  it('a misspelt database: the databases of the target that have backups are named', async () => {
    for (const backup of ['latest', 'nope']) {
      const error = await refusal('kennel_prd', backup);
      expect(error.name).toBe('NotFoundError');
      expect(error.message).toContain(
        'Backups exist for kennel_prod on target primary: did you mean one of them? Nothing was changed.',
      );
    }
  });

  it('an unknown backup: the newest of every kind the restore takes are listed, each marked by its state', async () => {
    const monthly = pastBackup({ kind: 'monthly', daysAgo: 0, now: NOW });
    const failed = manifest('full', 1);
    await catalog.writeManifest(monthly);
    await catalog.writeManifest({
      ...failed,
      verification: {
        state: 'verified',
        restoreTest: { state: 'failed', checkedAt: NOW.toISOString(), detail: 'rows differ' },
      },
    });
    try {
      const error = await refusal('kennel_prod', 'nope');
      expect(error.message).toContain(
        `No full, monthly or safety backup "nope" of kennel_prod; this restore takes full, monthly or safety backups. The newest are: ${monthly.archive.key}; ${failed.archive.key} (restore test failed: needs "acceptFailedRestoreTest": true); ${manifest('full', 2).archive.key};`,
      );
    } finally {
      await catalog.writeManifest(failed);
      await catalog.removeKeys([`${monthly.archive.key}.manifest.json`]);
    }
  });
});

describe('one unreadable catalog object blocks nothing', () => {
  const today = manifest('full', 0);
  const garbage = today.archive.key.replace(/_\w+\.sql\.zst$/, '_garbage.sql.zst.manifest.json');
  const wrongShape = today.archive.key.replace(/_\w+\.sql\.zst$/, '_shape.sql.zst.manifest.json');
  const record = 'catalog/pgbackrest/primary/2026/01/01/garbage.json';

  beforeAll(async () => {
    // Newer than every real manifest, so each reader meets them first.
    await catalog.writeObject(garbage, '{"version": 1, "kind": "full", tru', 'application/json');
    await catalog.writeObject(wrongShape, '{"version": 2}', 'application/json');
    await catalog.writeObject(record, 'not json', 'application/json');
  });
  afterAll(async () => {
    await catalog.removeKeys([garbage, wrongShape, record]);
  });

  it('every listing passes over it and names its key in the log; asked for by name, it is refused naming the key', async () => {
    const warned = vi.spyOn(logger, 'warn');
    try {
      expect((await catalog.newestOf('full', 'primary', 'kennel_prod', NOW)).newestUsable).toEqual(
        manifest('full', 1),
      );
      const all = await catalog.list('full', 'primary', 'kennel_prod');
      expect(all.length).toBeGreaterThan(0);
      expect(all.at(-1)).toEqual(manifest('full', 1));
      expect(
        (await findBackup(catalog, ['full', 'monthly', 'safety'], 'primary', 'kennel_prod', 'latest')).runId,
      ).toBe(manifest('full', 1).runId);
      expect(await listPhysicalBackups(catalog, 'primary')).toEqual([]);
      expect(await newestVerifiedPhysicalFull(catalog, 'primary', { restoreTested: false })).toBeUndefined();
      const pruned = await pruneRun(
        catalog,
        { kind: 'full', target: 'primary', database: 'kennel_prod' } as Plan,
        NOW,
        86_400,
      );
      expect(pruned.removedFromS3).toEqual([]);
      const skipped = warned.mock.calls.map(([, extra]) => (extra as { key?: string } | undefined)?.key);
      expect(new Set(skipped)).toEqual(new Set([garbage, wrongShape, record]));
    } finally {
      warned.mockRestore();
    }
    const named = findBackup(catalog, ['full'], 'primary', 'kennel_prod', garbage);
    await expect(named).rejects.toThrow(BadManifestError);
    await expect(named).rejects.toThrow(
      `The manifest s3://${BUCKET}/${garbage} is unreadable (not valid JSON: `,
    );
    await expect(catalog.readManifest(wrongShape)).rejects.toThrow(
      new RegExp(
        `^The manifest s3://${BUCKET}/${wrongShape} is unreadable \\(not a manifest: .*restore from another backup\\.$`,
      ),
    );
  });
});

describe('archives without a manifest', () => {
  it('pruning removes those older than the leftover age, and no younger one', async () => {
    const old =
      'database/full/primary/kennel_prod/2020/01/01/kennel_prod_full_20200101T020000Z_0ld0ld00.sql.zst';
    const young = manifest('full', 0).archive.key.replace(/\.sql\.zst$/, '_young.sql.zst');
    const safety =
      'database/safety/primary/kennel_prod/2020/01/01/kennel_prod_safety_20200101T020000Z_0ld0ld00.sql.zst';
    for (const key of [old, young, safety])
      await catalog.writeObject(key, 'cut short', 'application/octet-stream');
    // s3rver dates an object by its file: two days ago, as an upload of two days ago.
    const twoDaysAgo = new Date(NOW.getTime() - 2 * 86_400_000);
    for (const key of [old, safety])
      utimesSync(join(dir, 's3', BUCKET, `${key}._S3rver_object`), twoDaysAgo, twoDaysAgo);
    const orphans = await orphanArchives(catalog, 'full', 'primary', 'kennel_prod', NOW);
    expect(orphans.map((o) => [o.name, o.bytes, o.ageSeconds >= 2 * 86_400 - 60])).toEqual([
      [old, 9, true],
      [young, 9, false],
    ]);
    const plan = { kind: 'full', target: 'primary', database: 'kennel_prod' } as Plan;
    expect((await pruneRun(catalog, plan, NOW, 86_400)).removedLeftovers).toEqual([old, safety]);
    expect((await orphanArchives(catalog, 'full', 'primary', 'kennel_prod', NOW)).map((o) => o.name)).toEqual(
      [young],
    );
    await catalog.removeKeys([young]);
  });
});

describe('the local S3 speaks TLS with its own certificate', () => {
  it('a client given the certificate as its CA reads; one without it is refused, not let through', async () => {
    const listing = { Bucket: BUCKET };
    expect(server.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect((await s3.send(new ListObjectsV2Command(listing))).KeyCount).toBeGreaterThan(0);
    await expect(untrusting.send(new ListObjectsV2Command(listing))).rejects.toThrow(
      /self[- ]signed certificate/i,
    );
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LOCAL_S3_CREDENTIALS, type LocalS3, startLocalS3 } from '../local/s3.ts';
import { type Plan, windowStart } from '../shared/backup/database-plan.ts';
import { pruneRun } from '../shared/backup/stages.ts';
import { Catalog } from '../shared/catalog/catalog.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { parseConfig } from '../shared/core/config.ts';
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
const manifest = (kind: 'full' | 'transaction-logs', daysAgo: number) =>
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
  // A long history: a log backup a day for 200 days, a full a day for 60.
  for (let d = 1; d <= 200; d += 1) await catalog.writeManifest(manifest('transaction-logs', d));
  for (let d = 1; d <= 60; d += 1) await catalog.writeManifest(manifest('full', d));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the catalog reads only what it needs, however long the history', () => {
  it('a log window starts at the newest verified log backup, after one manifest read', async () => {
    let since: string | null = null;
    const count = await reads(async () => {
      since = await windowStart(catalog, 'transaction-logs', 'primary', 'kennel_prod', undefined, NOW);
    });
    expect(since).toBe(manifest('transaction-logs', 1).window.until);
    expect(count).toBe(1);
  });

  it('the newest verified backup is found by listing the last two days, not 200 of them', async () => {
    let newest: unknown;
    const keys = await listed(async () => {
      newest = (await catalog.newestOf('transaction-logs', 'primary', 'kennel_prod', NOW)).newestVerified;
    });
    expect(newest).toEqual(manifest('transaction-logs', 1));
    expect(keys).toBeLessThanOrEqual(4); // two days of archives and manifests at the most
  });

  it('when nothing that recent is verified, the whole catalog is listed: an old backup is still found', async () => {
    const recent = [manifest('transaction-logs', 1), manifest('transaction-logs', 2)];
    for (const m of recent) await catalog.writeManifest({ ...m, verification: { state: 'failed' } });
    try {
      const { newestVerified, newestKey } = await catalog.newestOf(
        'transaction-logs',
        'primary',
        'kennel_prod',
        NOW,
      );
      expect(newestVerified).toEqual(manifest('transaction-logs', 3));
      expect(newestKey).toBe(`${recent[0]?.archive.key}.manifest.json`);
    } finally {
      for (const m of recent) await catalog.writeManifest(m);
    }
  });

  it('pruning reads the backups old enough to expire and the newest one, and removes exactly the expired', async () => {
    const plan = { kind: 'full', target: 'primary', database: 'kennel_prod' } as Plan;
    let removed: string[] = [];
    const count = await reads(async () => {
      removed = (await pruneRun(catalog, plan, NOW)).removedFromS3;
    });
    // Each is a minute older than its whole days: 30..60 days are past 30 days, 29 is not.
    expect(removed).toHaveLength(31);
    expect(removed).toContain(manifest('full', 30).archive.key);
    expect(removed).not.toContain(manifest('full', 29).archive.key);
    expect(count).toBeLessThanOrEqual(32);
    const logs = { ...plan, kind: 'transaction-logs' } as Plan;
    const logReads = await reads(async () => {
      expect((await pruneRun(catalog, logs, NOW)).removedFromS3).toEqual([]);
    });
    expect(logReads).toBe(1);
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

import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../shared/catalog/manifest.ts';
import { newestVerifiedPhysicalFull, writePhysicalRecord } from '../shared/catalog/physical.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
import { pastBackup } from './support/manifests.ts';
import { pgbackrest } from './support/pgbackrest.ts';

let world: TestWorld;
const newest: Record<string, Manifest> = {};
const legacy = pastBackup({ daysAgo: 20, now: new Date(), kind: 'transaction-logs', target: 'local' });

async function backup(workflow: string, kind: string) {
  const run = await runIn(world, { workflow, input: { kind } });
  expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
  const key = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
  newest[kind] = await world.catalog.readManifest(key);
}

beforeAll(async () => {
  world = await startWorld();
  // The physical kinds' newest full, as pgBackRest's info reports it.
  await pgbackrest(world, 'backup', '--type=full');
  for (const kind of ['full', 'monthly']) await backup('database-backup', kind);
  // A row-window archive an earlier version made: listed as legacy, never read.
  await world.catalog.writeManifest(legacy);
  for (const kind of ['configuration', 'application', 'static']) await backup('files-backup', kind);
}, 120_000);
afterAll(async () => {
  await world?.stop();
});

const verify = () => runIn(world, { workflow: 'daily-verification', input: {} });

describe('the daily verification', () => {
  it('reports nothing for a clean catalog, and says what it checked', async () => {
    const run = await verify();
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(run.record.output).toEqual({
      checked: {
        // full and monthly dumps, and the three file kinds.
        newestBackups: 5,
        localCopies: 5,
        archivesReadBack: 5,
        repositoriesVerified: 1,
        walSegmentsProven: expect.any(Number),
      },
      findings: [],
      legacy: [
        {
          state: 'legacy',
          kind: 'transaction-logs',
          target: 'local',
          database: 'kennel_prod',
          archives: 1,
          oldest: legacy.window.until.slice(0, 10),
          newest: legacy.window.until.slice(0, 10),
          note: expect.stringContaining('refused for every restore'),
        },
      ],
    });
    // From the full's first segment to the one the verification switched: at least the full's own.
    expect(
      (run.record.output as { checked: { walSegmentsProven: number } }).checked.walSegmentsProven,
    ).toBeGreaterThanOrEqual(2);
    expect(run.alerts).toEqual([]);
  });

  it('reports a target without pgBackRest settings every day: its database has no WAL protection', async () => {
    const targets = JSON.parse(world.env.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
    const run = await runIn(world, {
      workflow: 'daily-verification',
      input: {},
      functionEnv: { BACKUP_TARGETS: JSON.stringify(targets.map(({ pgbackrest: _, ...t }) => t)) },
    });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('VerificationFailedError');
    const problems = (run.record.cause ?? '').split('\n').filter((l) => l.startsWith('- '));
    expect(problems).toEqual([
      '- the WAL archive of local: The target "local" has no pgbackrest settings in BACKUP_TARGETS, so it has no physical backups and no WAL archiving: nothing but the daily logical dump protects its data (an RPO of a day, not a minute), and no point-in-time recovery is possible; add "pgbackrest": {"dataDirectory": "<the cluster\'s data directory>"} to it and start the prepare-host workflow.',
    ]);
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]?.text).toContain('has no pgbackrest settings');
  });

  it('a stale kind, a missing local copy and a corrupted archive: exactly those three, in one alert', async () => {
    const stale = newest.static as Manifest;
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
    await world.catalog.writeManifest({ ...stale, window: { ...stale.window, until: twoDaysAgo } });
    rmSync(newest.configuration?.archive.localPath ?? '');
    const full = newest.full as Manifest;
    const bytes = await getBytes(world.s3, world.env.bucket, full.archive.key);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
    await putBytes(world.s3, world.env.bucket, full.archive.key, bytes);

    const run = await verify();
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('VerificationFailedError');
    const cause = run.record.cause ?? '';
    expect(cause).toContain('3 problem(s) found:');
    const problems = cause.split('\n').filter((l) => l.startsWith('- '));
    expect(problems).toHaveLength(3);
    expect(problems[0]).toBe(
      `- static backup of the files on local: the newest verified one is from ${twoDaysAgo} (48.0 h ago); one is expected every 24 h`,
    );
    expect(problems[1]).toBe(
      `- configuration backup of the files on local: the host's copy ${newest.configuration?.archive.localPath} is missing`,
    );
    expect(problems[2]).toMatch(/^- full backup of kennel_prod on local: ArchiveCorruptError: /);

    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]?.text).toContain('State: ReportVerification');
    for (const line of problems) expect(run.alerts[0]?.text).toContain(line.slice(2, 60));
  });

  it("says so when the newest physical full's restore test failed", async () => {
    const full = await newestVerifiedPhysicalFull(world.catalog, 'local', { restoreTested: true });
    if (!full?.verification.restoreTest)
      throw new Error('the physical full of beforeAll has no passed restore test');
    const failed = {
      ...full.verification.restoreTest,
      state: 'failed' as const,
      detail: `${full.label} failed its restore test in the amcheck phase (CheckPhysicalRestoreTest: HostCommandFailedError): pg_amcheck found corruption`,
    };
    await writePhysicalRecord(world.catalog, {
      ...full,
      verification: { ...full.verification, restoreTest: failed },
    });
    try {
      const run = await verify();
      expect(run.record.status).toBe('FAILED');
      const problems = (run.record.cause ?? '').split('\n').filter((l) => l.startsWith('- '));
      expect(problems).toContain(
        `- physical full backup ${full.label} of local: its restore test failed (${failed.detail}; report ${failed.reportKey}); it is the base of nothing: take a full backup now and find out why`,
      );
    } finally {
      await writePhysicalRecord(world.catalog, full);
    }
  });
});

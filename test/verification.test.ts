import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../shared/catalog/manifest.ts';
import { newestVerifiedPhysicalFull, writePhysicalRecord } from '../shared/catalog/physical.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
import { pgbackrest } from './support/pgbackrest.ts';

let world: TestWorld;
const newest: Record<string, Manifest> = {};

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
  for (const kind of ['full', 'incremental', 'transaction-logs']) await backup('database-backup', kind);
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
        newestBackups: 6,
        localCopies: 6,
        archivesReadBack: 6,
        repositoriesVerified: 1,
        walSegmentsProven: expect.any(Number),
      },
      findings: [],
    });
    // From the full's first segment to the one the verification switched: at least the full's own.
    expect(
      (run.record.output as { checked: { walSegmentsProven: number } }).checked.walSegmentsProven,
    ).toBeGreaterThanOrEqual(2);
    expect(run.alerts).toEqual([]);
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

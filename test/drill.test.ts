import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { seededRandom } from '../shared/watch/drill.ts';
import { databasesLike } from './support/checksums.ts';
import { getBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
import { pastBackup } from './support/manifests.ts';

let world: TestWorld;
/** Three real verified full backups, oldest first. */
const fulls: DatabaseManifest[] = [];

beforeAll(async () => {
  world = await startWorld();
  for (let i = 0; i < 3; i += 1) {
    const run = await runIn(world, { input: { kind: 'full' } });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const key = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
    fulls.push(await world.catalog.readDatabaseManifest(key));
  }
  // Never drilled: one too old, one that failed verification.
  const now = new Date();
  await world.catalog.writeManifest(pastBackup({ daysAgo: 8, now, target: 'local' }));
  await world.catalog.writeManifest(pastBackup({ daysAgo: 1, now, target: 'local', state: 'failed' }));
}, 600_000);
afterAll(async () => {
  await world?.stop();
});

async function markdownReports(): Promise<string[]> {
  const listed = await world.s3.send(
    new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: 'reports/drills/' }),
  );
  return (listed.Contents ?? []).map((o) => o.Key ?? '').filter((k) => k.endsWith('.md'));
}

const drill = (input: Record<string, unknown>) => runIn(world, { workflow: 'restore-drill', input });

interface DrillOutput {
  chosen: { key: string };
  seed: number | null;
  candidates: number;
  checks: { check: string; passed: boolean; detail: string }[];
  report: { json: string; markdown: string };
}

describe('the restore drill', () => {
  it('weekly: picks at random among the verified full backups of the last 7 days only, names its seed and choice, and restore-tests it', async () => {
    const seed = 20261126;
    const run = await drill({ pick: 'random', seed, pointInTimeMinutesAgo: 0 });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const output = run.record.output as DrillOutput;
    const expected = fulls[Math.floor(seededRandom(seed)() * fulls.length)];
    expect(output.seed).toBe(seed);
    expect(output.candidates).toBe(3);
    expect(output.chosen.key).toBe(expected?.archive.key);
    expect(output.checks.map((c) => [c.check.split(' to ')[0], c.passed])).toEqual([
      ['S3 reachable', true],
      ['restore test', true],
    ]);
    const manifest = await world.catalog.readDatabaseManifest(`${output.chosen.key}.manifest.json`);
    expect(manifest.verification.restoreTest?.state).toBe('passed');
    expect(databasesLike(world, 'kb_restore_test_')).toEqual([]);

    // The report is stored, and lists every check with its result.
    const report = JSON.parse(
      (await getBytes(world.s3, world.env.bucket, output.report.json)).toString(),
    ) as {
      passed: boolean;
      seed: number;
      chosen: { key: string };
      candidates: unknown[];
      checks: unknown[];
    };
    expect(report).toMatchObject({ passed: true, seed, chosen: { key: output.chosen.key } });
    expect(report.candidates).toHaveLength(3);
    const markdown = (await getBytes(world.s3, world.env.bucket, output.report.markdown)).toString();
    expect(markdown).toMatch(/^# Weekly restore drill \d{4}-\d{2}-\d{2}: passed/);
    for (const check of output.checks) expect(markdown).toContain(`| ${check.check} | passed |`);
    expect(run.alerts[0]?.text).toContain(`Report: s3://${world.env.bucket}/${output.report.markdown}`);
  });

  it('the same seed picks the same backup; every pick is one of the candidates', async () => {
    const picks = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const index = Math.floor(seededRandom(seed)() * 3);
      picks.add(fulls[index]?.archive.key ?? '');
      expect(Math.floor(seededRandom(seed)() * 3)).toBe(index);
    }
    expect([...picks].every((k) => fulls.some((f) => f.archive.key === k))).toBe(true);
    expect(picks.size).toBeGreaterThan(1);
  });

  it('monthly DR: the latest backup, restore-tested, and the stored report says so', async () => {
    const run = await drill({ pick: 'latest' });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const output = run.record.output as DrillOutput;
    expect(output.chosen.key).toBe(fulls[2]?.archive.key);
    const markdown = (await getBytes(world.s3, world.env.bucket, output.report.markdown)).toString();
    expect(markdown).toMatch(/^# Monthly DR drill \d{4}-\d{2}-\d{2}: passed/);
    expect(markdown).toContain('| restore test | passed |');
  });

  it('a restore test that fails is reported as such, with the report stored', async () => {
    const before = await markdownReports();
    const run = await runIn(world, {
      workflow: 'restore-drill',
      input: { pick: 'latest', pointInTimeMinutesAgo: 0 },
      // Rows lost in the restored copy: the row counts no longer match the manifest.
      beforeTask: async (state, input) => {
        if (state === 'RestoreTest') {
          const { plan } = input as { plan: { scratchDatabase: string } };
          world.sql(plan.scratchDatabase, 'DELETE FROM payments WHERE id % 2 = 0');
        }
      },
    });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('RestoreMismatchError');
    expect(run.alerts[0]?.text).toContain('State: RestoreTest');
    const added = (await markdownReports()).filter((k) => !before.includes(k));
    expect(added).toHaveLength(1);
    const reportKey = added[0] ?? '';
    expect(reportKey).toMatch(/^reports\/drills\/\d{4}\/\d{2}\/\d{2}\/\S+\.md$/);
    const markdown = (await getBytes(world.s3, world.env.bucket, reportKey)).toString();
    expect(markdown).toMatch(
      /\| restore test \| \*\*FAILED\*\* \| RestoreTest: RestoreMismatchError: .*public\.payments has \d+ rows, expected \d+/,
    );
    expect(databasesLike(world, 'kb_restore_test_')).toEqual([]);
  });
});

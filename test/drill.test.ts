import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratchDirectoryOf } from '../shared/backup/physical-restore-test.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { listPhysicalBackups, usable } from '../shared/catalog/physical.ts';
import { parseConfig } from '../shared/core/config.ts';
import { seededRandom } from '../shared/watch/drill.ts';
import { databasesLike } from './support/checksums.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
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

/** What restore tests left in the local target's scratch area (nothing, once each has ended). */
function scratchLeft(): string[] {
  const [local] = parseConfig(world.env.functionEnv).BACKUP_TARGETS;
  const area = join(scratchDirectoryOf(local as NonNullable<typeof local>), 'local');
  return existsSync(area) ? readdirSync(area) : [];
}

const drill = (input: Record<string, unknown>) => runIn(world, { workflow: 'restore-drill', input });

interface DrillOutput {
  chosen: { engine: 'logical' | 'physical'; key: string; label?: string };
  seed: number | null;
  candidates: number;
  checks: { check: string; passed: boolean; detail: string }[];
  report: { json: string; markdown: string };
}

describe('the restore drill', () => {
  it('weekly, logical: picks at random among the verified full backups of the last 7 days only, names its seed and choice, and restore-tests it', async () => {
    const seed = 20261126;
    const run = await drill({ pick: 'random', engine: 'logical', seed });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const output = run.record.output as DrillOutput;
    const expected = fulls[Math.floor(seededRandom(seed)() * fulls.length)];
    expect(output.seed).toBe(seed);
    expect(output.candidates).toBe(3);
    expect(output.chosen.key).toBe(expected?.archive.key);
    expect(output.checks.map((c) => [c.check, c.passed])).toEqual([
      ['S3 reachable', true],
      ['WAL continuity', true],
      ['restore test', true],
    ]);
    // The WAL was switched and proven from the oldest kept pgBackRest backup's start.
    expect(output.checks[1]?.detail).toMatch(
      /^every WAL segment from [0-9A-F]{24} \(the start of the backup \d{8}-\d{6}F\) to [0-9A-F]{24}, just switched, is in the repository: \d+ segments$/,
    );
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

  it('weekly, physical: restores the pgBackRest set picked into a scratch instance on the host, checks it, records the test, and leaves nothing', async () => {
    const records = (await listPhysicalBackups(world.catalog, 'local')).filter((r) => usable(r, true));
    expect(records).toHaveLength(3);
    const seed = 7;
    const run = await drill({ pick: 'random', engine: 'physical', seed });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const output = run.record.output as DrillOutput;
    const expected = records[Math.floor(seededRandom(seed)() * records.length)];
    expect(output.candidates).toBe(3);
    expect(output.chosen).toMatchObject({ engine: 'physical', label: expected?.label });
    // The host ran the physical restore test on that set, and the drill's report says so.
    const sent = run.host.sent.filter((c) => c.comment.includes(' physical-restore-test '));
    expect(sent).toHaveLength(1);
    expect(sent[0]?.script).toContain(`KB_SET='${expected?.label}'`);
    const test = output.checks.find((c) => c.check === 'restore test');
    expect(test?.passed).toBe(true);
    expect(test?.detail).toContain(`pgBackRest set ${expected?.label} restored into a scratch instance`);
    expect(test?.detail).toMatch(/pg_amcheck passed on \d+ databases; \d+ tables, \d+ rows read in full/);
    const reportKey =
      /\(report (reports\/restore-tests\/pgbackrest\/local\/\S+\.json)\)/.exec(test?.detail ?? '')?.[1] ?? '';
    const testReport = JSON.parse((await getBytes(world.s3, world.env.bucket, reportKey)).toString()) as {
      state: string;
      set: string;
    };
    expect(testReport).toMatchObject({ state: 'passed', set: expected?.label });
    const markdown = (await getBytes(world.s3, world.env.bucket, output.report.markdown)).toString();
    expect(markdown).toContain(`pgBackRest backup set ${expected?.label}`);
    expect(markdown).toContain('| restore test | passed |');
    expect(scratchLeft()).toEqual([]);
  });

  it('weekly, by default: picks among both engines', async () => {
    const seed = 424242;
    const run = await drill({ pick: 'random', seed });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const output = run.record.output as DrillOutput;
    const report = JSON.parse(
      (await getBytes(world.s3, world.env.bucket, output.report.json)).toString(),
    ) as {
      candidates: { engine: string; key: string; until: string }[];
    };
    expect(report.candidates.map((c) => c.engine).sort()).toEqual([
      'logical',
      'logical',
      'logical',
      'physical',
      'physical',
      'physical',
    ]);
    // Oldest first, the seed's pick among them.
    const untils = report.candidates.map((c) => Date.parse(c.until));
    expect(untils).toEqual([...untils].sort((a, b) => a - b));
    expect(output.chosen.key).toBe(report.candidates[Math.floor(seededRandom(seed)() * 6)]?.key);
    expect(scratchLeft()).toEqual([]);
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

  it('monthly DR: the latest backup; a WAL segment missing from the repository fails the drill, and the stored report names it', async () => {
    const segments = (await world.catalog.listKeys('pgbackrest/local/archive/')).filter((k) =>
      /\/[0-9A-F]{24}-[0-9a-f]{40}(\.\w+)?$/.test(k),
    );
    // The newest but one: after the oldest backup's start, before the segment the drill switches.
    const lostKey = segments.at(-2) ?? '';
    const lost = /\/([0-9A-F]{24})-/.exec(lostKey)?.[1] ?? '';
    expect(lost).not.toBe('');
    const bytes = await getBytes(world.s3, world.env.bucket, lostKey);
    await world.s3.send(new DeleteObjectCommand({ Bucket: world.env.bucket, Key: lostKey }));
    try {
      const run = await drill({ pick: 'latest' });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.error).toBe('DrillFailedError');
      expect(run.record.cause).toContain('Restore drill of the latest backup');
      expect(run.record.cause).toContain(
        `✗ WAL continuity: WalContinuityError: WAL segment ${lost} is missing from the repository`,
      );
      // The restore test still ran, and passed.
      expect(run.record.cause).toContain(`✓ restore test: ${fulls[2]?.archive.key} restored`);
      const reportKey = /Report: s3:\/\/[^/]+\/(\S+)/.exec(run.record.cause ?? '')?.[1] ?? '';
      const markdown = (await getBytes(world.s3, world.env.bucket, reportKey)).toString();
      expect(markdown).toContain('| restore test | passed |');
      expect(markdown).toMatch(
        new RegExp(
          `\\| WAL continuity \\| \\*\\*FAILED\\*\\* \\| WalContinuityError: WAL segment ${lost} is missing`,
        ),
      );
      expect(run.alerts).toHaveLength(1);
      expect(run.alerts[0]?.text).toContain('State: ReportDrill');
    } finally {
      await putBytes(world.s3, world.env.bucket, lostKey, bytes);
    }
  });

  it('a target without pgBackRest settings fails the WAL check, saying what to add; nothing WAL is sent to the host', async () => {
    const targets = JSON.parse(world.env.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
    const run = await runIn(world, {
      workflow: 'restore-drill',
      input: { pick: 'latest' },
      functionEnv: { BACKUP_TARGETS: JSON.stringify(targets.map(({ pgbackrest: _, ...t }) => t)) },
    });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.cause).toContain(
      '✗ WAL continuity: The target "local" has no pgbackrest settings in BACKUP_TARGETS, so its WAL is not archived and no point-in-time recovery is possible',
    );
    expect(run.record.cause).toContain('✓ restore test');
    expect(run.record.events.map((e) => e.state?.name)).not.toContain('StartWalSwitch');
  });

  it('a restore test that fails is reported as such, with the report stored', async () => {
    const before = await markdownReports();
    const run = await runIn(world, {
      workflow: 'restore-drill',
      input: { pick: 'latest' },
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

import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listPhysicalBackups } from '../shared/catalog/physical.ts';
import { newestRecoveryRecord } from '../shared/catalog/recoveries.ts';
import { type Config, parseConfig, type Target } from '../shared/core/config.ts';
import { parseComment } from '../shared/host/commands.ts';
import { type PointInTimePlan, recoverableBackups } from '../shared/restore/point-in-time.ts';
import { planRecoveryDrill } from '../shared/watch/recovery-drill.ts';
import { databasesLike } from './support/checksums.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
import { expectNoSideCluster } from './support/side-cluster.ts';

/**
 * The monthly DR drill, with real PostgreSQL, pgBackRest, bash and the local S3,
 * run by the real workflow: the cluster recovered to a random second after a full
 * backup in a scratch cluster, checked and removed; its measured rate used by a
 * point-in-time recovery's dry run.
 */

let world: TestWorld;
let config: Config;
let target: Target;
const DATABASE = 'drill';
const TIMEOUT = 600_000;

const sql = (query: string) => world.sql(DATABASE, query);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface DrillOutput {
  passed: boolean;
  targetTime: string;
  seed: number;
  set: string;
  stoppedBefore: string;
  secondsPerGB: number;
  measuredRateKey: string;
  checks: { check: string; passed: boolean; detail: string }[];
  report: { json: string; markdown: string };
  summary: string;
}

async function keysUnder(prefix: string): Promise<string[]> {
  const listed = await world.s3.send(new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => o.Key ?? '');
}

beforeAll(async () => {
  world = await startWorld();
  config = parseConfig(world.env.functionEnv);
  const [local] = config.BACKUP_TARGETS;
  if (!local) throw new Error('no local target');
  target = local;
  world.sql('postgres', `CREATE DATABASE ${DATABASE}`);
  // A DROP DATABASE under way: PostgreSQL (15.4 and later) first marks the database
  // invalid (datconnlimit -2) and commits that, so a recovery stopping inside the
  // drop has it, and no one can connect to it. Our own restore tests drop scratch
  // databases all day; the backup's restore test and the drill leave it unread.
  world.sql('postgres', 'CREATE DATABASE half_dropped');
  world.sql('postgres', "UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'half_dropped'");
  sql('CREATE TABLE visits (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
  sql('INSERT INTO visits SELECT FROM generate_series(1, 100)');
  const backup = await runIn(world, { input: { kind: 'full' } });
  expect(backup.record.status, JSON.stringify(backup.alerts.map((a) => a.text))).toBe('SUCCEEDED');
  // Writes after the backup, one commit a second: whatever second the drill draws, WAL is replayed to it.
  for (let i = 0; i < 15; i += 1) {
    sql('INSERT INTO visits DEFAULT VALUES');
    await sleep(1000);
  }
}, TIMEOUT);

afterAll(async () => {
  await world?.stop();
});

describe('the monthly DR drill (recovery-drill)', () => {
  it(
    'recovers the cluster to a random second since the backup in a scratch cluster, checks it, stores its report and records the measured rate a recovery dry run then uses',
    async () => {
      const databasesBefore = world.sql(
        'postgres',
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
      );
      const run = await runIn(world, { workflow: 'recovery-drill', input: {} });
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      expect(run.host.sent.map((s) => parseComment(s.comment)?.script)).toEqual(['point-in-time-restore']);
      const output = run.record.output as DrillOutput;
      expect(output.checks.map((c) => [c.check, c.passed])).toEqual([
        ['recoverable window', true],
        ['point-in-time recovery', true],
        ['pg_amcheck', true],
        ['every table readable', true],
      ]);
      // The window is younger than 24 h (the only backup is minutes old), and the drill says so.
      expect(output.checks[0]?.detail).toMatch(/the last 0 h \d+ min only, not 24 h: the oldest backup/);
      expect(output.stoppedBefore).toMatch(/^recovery stopping before commit of transaction \d+, time /);
      // PostgreSQL stopped at the first commit after the drawn second.
      const [, time = ''] = output.stoppedBefore.split(', time ');
      const stoppedAt = Date.parse(time.replace(' ', 'T').replace(/([+-]\d{2})$/, '$1:00'));
      expect(stoppedAt).toBeGreaterThan(Date.parse(output.targetTime));
      expect(output.secondsPerGB).toBeGreaterThan(0);
      expect(output.summary).toContain('Monthly DR drill');
      expect(output.summary).toContain(`${output.secondsPerGB} s per GB`);

      // Production untouched: no database made or dropped, nothing left on the host.
      expect(world.sql('postgres', "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")).toBe(
        databasesBefore,
      );
      expect(databasesLike(world, 'kb_')).toEqual([]);
      expectNoSideCluster(target);

      // The report, JSON and Markdown, names the second, the base set, the WAL, PostgreSQL's words and the rate.
      const keys = await keysUnder('reports/drills/');
      expect(keys).toEqual(expect.arrayContaining([output.report.json, output.report.markdown]));
      const markdown = (await getBytes(world.s3, world.env.bucket, output.report.markdown)).toString();
      expect(markdown).toContain(`**target second:** ${output.targetTime} on local`);
      expect(markdown).toContain(`**base backup:** ${output.set} (full`);
      expect(markdown).toMatch(/\*\*WAL replayed:\*\* [0-9A-F]{24} to /);
      expect(markdown).toContain(`**PostgreSQL:** ${output.stoppedBefore}`);
      expect(markdown).toContain(`**recovery rate:** ${output.secondsPerGB} s per GB`);
      const json = JSON.parse(
        (await getBytes(world.s3, world.env.bucket, output.report.json)).toString(),
      ) as {
        passed: boolean;
        seed: number;
        recovery: PointInTimePlan;
      };
      expect(json.passed).toBe(true);
      expect(json.seed).toBe(output.seed);
      expect(json.recovery.targetTime).toBe(output.targetTime);

      // The measured rate is the newest record, and a point-in-time recovery's dry run estimates from it.
      const rate = await newestRecoveryRecord(world.catalog, 'local');
      expect(rate?.key).toBe(output.measuredRateKey);
      expect(rate?.record.source).toBe('drill');
      expect(rate?.record.secondsPerGB).toBe(output.secondsPerGB);
      const dry = await runIn(world, {
        workflow: 'point-in-time-recovery',
        input: {
          database: DATABASE,
          targetTime: output.targetTime,
          targetDatabase: 'drill_copy',
          dryRun: true,
        },
      });
      expect(dry.record.status, dry.record.cause).toBe('SUCCEEDED');
      const { expected } = (dry.record.output as { plan: PointInTimePlan }).plan;
      expect(expected.secondsPerGB).toBe(output.secondsPerGB);
      expect(expected.seconds).toEqual(expect.any(Number));
      expect(expected.note).toContain(`measured by the drill ${rate?.record.runId}`);
    },
    TIMEOUT,
  );

  it('a seed draws the same second again over the same window, and a drill without one records the seed it drew', async () => {
    const now = new Date();
    const request = (seed?: number) => ({
      input: seed === undefined ? {} : { seed },
      executionId: 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-dev-recovery-drill:replay',
      startedAt: now.toISOString(),
    });
    const first = await planRecoveryDrill(config, world.catalog, request(), now);
    const again = await planRecoveryDrill(config, world.catalog, request(first.seed), now);
    expect(again.recovery.targetTime).toBe(first.recovery.targetTime);
    expect(again.window).toEqual(first.window);
    const at = Date.parse(first.recovery.targetTime);
    expect(at).toBeGreaterThanOrEqual(Date.parse(first.window.from));
    expect(at).toBeLessThanOrEqual(Date.parse(first.window.to));
    expect(first.recovery.scope).toBe('scratch');

    // Right after the only backup, no second is recoverable yet: the drill fails and says when it can run.
    const { oldestRecoverable } = await recoverableBackups(world.catalog, 'local');
    const early = new Date(Date.parse(oldestRecoverable) + 5000);
    await expect(
      planRecoveryDrill(config, world.catalog, { ...request(), startedAt: early.toISOString() }, early),
    ).rejects.toThrow(`recovers from ${oldestRecoverable}`);
  });

  it(
    'a damaged backup fails the drill: the report says so, the alert goes out, and no side cluster is left',
    async () => {
      const [{ label } = { label: '' }] = await listPhysicalBackups(world.catalog, 'local');
      const prefix = `pgbackrest/local/backup/local/${label}/pg_data/base/`;
      const [file] = (await keysUnder(prefix)).filter((k) => k.endsWith('.zst'));
      if (!file) throw new Error(`no compressed file under ${prefix}`);
      const bytes = await getBytes(world.s3, world.env.bucket, file);
      await putBytes(world.s3, world.env.bucket, file, Buffer.from('not zstd at all'));
      try {
        const run = await runIn(world, { workflow: 'recovery-drill', input: {} });
        expect(run.record.status).toBe('FAILED');
        // The alert carries the original error: pgBackRest's, naming the damaged file's format.
        expect(run.record.cause).toContain('CheckScratchRecovery');
        expect(run.record.cause).toContain('zst error');
        expect(run.alerts.map((a) => a.text).join('\n')).toContain('recovery-drill FAILED');
        const failed = [];
        for (const key of (await keysUnder('reports/drills/')).filter((k) => k.endsWith('.md'))) {
          const text = (await getBytes(world.s3, world.env.bucket, key)).toString();
          if (text.includes('FAILED')) failed.push(text);
        }
        expect(failed).toHaveLength(1);
        const [markdown = ''] = failed;
        expect(markdown).toMatch(/^# Monthly DR drill \d{4}-\d{2}-\d{2}: FAILED/);
        expect(markdown).toContain('| point-in-time recovery | **FAILED** |');
        expect(markdown).toContain('**recovery rate:** not measured');
        expectNoSideCluster(target);
      } finally {
        await putBytes(world.s3, world.env.bucket, file, bytes);
      }
    },
    TIMEOUT,
  );
});

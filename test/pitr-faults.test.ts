import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextSecond } from './support/checksums.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
import { archivedSegments, stanzaInfo } from './support/pgbackrest.ts';

/**
 * Faults a point-in-time recovery must not report as a success: a WAL segment
 * in the repository cut short (as a half-written upload leaves it: the name and
 * listing are right, the bytes are not), and target times around the timeline
 * switch a whole-cluster recovery makes. One small table, a row per
 * transaction, ids in commit order.
 */

let world: TestWorld;
const DATABASE = 'ledgerdb';
const TIMEOUT = 600_000;
const q = (database: string, query: string) => world.sql(database, query);
const sql = (query: string) => q(DATABASE, query);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ids = (database: string) => q(database, "SELECT string_agg(id::text, ',' ORDER BY id) FROM ledger");

/** The repository's object of a WAL segment, once archived (polled: archiving runs through this process's S3). */
async function archived(name: string): Promise<{ key: string }> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { archive } = await stanzaInfo(world);
    const found = (await archivedSegments(world, archive.at(-1)?.id ?? '')).find((s) => s.name === name);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`WAL segment ${name} was never archived`);
    await sleep(500);
  }
}

/** Commits a row, switches the WAL and waits until the segment holding the row is archived. */
async function rowInItsOwnSegment(id: number): Promise<{ key: string }> {
  const segment = sql(
    `INSERT INTO ledger (id) VALUES (${id}); SELECT pg_walfile_name(pg_current_wal_insert_lsn())`,
  );
  q('postgres', 'SELECT pg_switch_wal()');
  return archived(segment);
}

const recover = (input: Record<string, unknown>) =>
  runIn(world, { workflow: 'point-in-time-recovery', input, startExecution: async () => {} });

beforeAll(async () => {
  world = await startWorld();
  q('postgres', `CREATE DATABASE ${DATABASE}`);
  sql('CREATE TABLE ledger (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
  sql('INSERT INTO ledger (id) VALUES (1)');
  const backup = await runIn(world, { input: { kind: 'full' } });
  expect(backup.record.status, JSON.stringify(backup.alerts.map((a) => a.text))).toBe('SUCCEEDED');
}, TIMEOUT);

afterAll(async () => {
  await world?.stop();
});

describe('point-in-time recovery faults', () => {
  it(
    'a WAL segment cut short in the repository: neither "latest" nor a time after it succeeds without the rows it and later segments hold',
    async () => {
      const { key } = await rowInItsOwnSegment(2);
      await rowInItsOwnSegment(3);
      const after = await nextSecond(world);
      sql('INSERT INTO ledger (id) VALUES (4)');
      q('postgres', 'SELECT pg_switch_wal()');
      const bytes = await getBytes(world.s3, world.env.bucket, key);
      await putBytes(world.s3, world.env.bucket, key, bytes.subarray(0, Math.floor(bytes.length / 2)));
      try {
        const latest = await recover({
          database: DATABASE,
          targetTime: 'latest',
          targetDatabase: 'ledger_latest',
        });
        // Either every row, or a failure: never rows 2, 3 and 4 silently gone.
        if (latest.record.status === 'SUCCEEDED') expect(ids('ledger_latest')).toBe('1,2,3,4');
        else expect(latest.record.status).toBe('FAILED');

        const timed = await recover({
          database: DATABASE,
          targetTime: after,
          targetDatabase: 'ledger_timed',
        });
        expect(timed.record.status).toBe('FAILED');
        expect(timed.record.cause).toContain('unexpected eof in compressed data');
        expect(timed.record.cause).toContain('recovery ended before configured recovery target was reached');

        // In place, the segment is read before PostgreSQL stops: production keeps every row, no full backup starts.
        const started: unknown[] = [];
        const cluster = await runIn(world, {
          workflow: 'point-in-time-recovery',
          input: { scope: 'cluster', targetTime: 'latest', confirm: 'local' },
          startExecution: async (request) => {
            started.push(request);
          },
        });
        expect(cluster.record.status).toBe('FAILED');
        expect(cluster.record.cause).toContain(
          `WAL segment ${key.split('/').at(-1)?.slice(0, 24)} cannot be read`,
        );
        expect(cluster.record.cause).toContain('nothing was changed');
        expect(ids(DATABASE)).toBe('1,2,3,4');
        expect(started).toEqual([]);
      } finally {
        await putBytes(world.s3, world.env.bucket, key, bytes);
      }
    },
    TIMEOUT,
  );

  // Rows 10 (before t1), 11 (between t1 and t2), 12 (after t2); then the cluster back to t1.
  let t2 = '';
  it(
    'right after a whole-cluster recovery, before its new timeline has archived a segment, a recovery is not refused for a WAL gap that is not there',
    async () => {
      sql('INSERT INTO ledger (id) VALUES (10)');
      const t1 = await nextSecond(world);
      sql('INSERT INTO ledger (id) VALUES (11)');
      t2 = await nextSecond(world);
      sql('INSERT INTO ledger (id) VALUES (12)');
      const cluster = await recover({ scope: 'cluster', targetTime: t1, confirm: 'local' });
      expect(cluster.record.status, cluster.record.cause).toBe('SUCCEEDED');
      expect(ids(DATABASE)).toMatch(/,10$/);
      sql('INSERT INTO ledger (id) VALUES (20)');

      const dry = await recover({
        database: DATABASE,
        targetTime: 'latest',
        targetDatabase: 'ledger_dry',
        dryRun: true,
      });
      // On main: FAILED, "lies past a gap in the WAL: segment 00000002…NN is missing": the
      // segment the new timeline is still writing, expected in place of the old timeline's
      // last one, which the planner lists as on the new timeline's path.
      expect(dry.record.status, dry.record.cause).toBe('SUCCEEDED');
    },
    TIMEOUT,
  );

  it(
    'after a whole-cluster recovery to t1, a recovery to a later second t2 (before that recovery ran) holds what was committed by t2, or is refused',
    async () => {
      const current = q('postgres', 'SELECT pg_walfile_name(pg_current_wal_insert_lsn())');
      q('postgres', 'SELECT pg_switch_wal()');
      await archived(current);
      const run = await recover({ database: DATABASE, targetTime: t2, targetDatabase: 'ledger_t2' });
      // At t2 production held row 11 (on timeline 1). Following the newest timeline,
      // PostgreSQL leaves timeline 1 at t1's stop, before row 11, and stops before
      // the first commit on timeline 2: on main it reports t2 and holds t1's rows.
      // Recovered along timeline 1, production's at t2 (the plan reads when timeline 2 began).
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      expect(ids('ledger_t2')).toMatch(/,10,11$/);
    },
    TIMEOUT,
  );
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { databasesLike, tableChecksums } from './support/checksums.ts';
import { runIn, startWorld, type TestWorld } from './support/environment.ts';

/**
 * A day of backups with known writes in between, then recovery to a moment
 * between two of them. The timeline (t = the target time):
 *
 *   full · W1 · logs L1 · incremental I1 · W2 · logs L2 · incremental I2 · W3 · logs L3 ·
 *   W4 · t · W5 · logs L4 · incremental I3
 *
 * Business tables come back as of I2 (the newest incremental that ends before t;
 * W3 and W4 are lost, the documented limit of 6-hourly incrementals); log tables
 * come back exactly to t (W4's log rows in, W5's out).
 */

let world: TestWorld;
const backups: Record<string, DatabaseManifest> = {};
let targetTime: string;
let tables: string[];
/** The business tables' content when I2 was taken; the log rows written up to t. */
let atI2: Record<string, string>;
let logsAtTarget: { audit: string; sessions: string };

const sql = (query: string) => world.sql('kennel_prod', query);

async function backup(name: string, kind: string) {
  const run = await runIn(world, { input: { kind } });
  expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
  const key = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
  backups[name] = await world.catalog.readDatabaseManifest(key);
}

/** Business writes and log rows labelled with the step that wrote them. */
function write(step: string) {
  sql(
    `UPDATE bookings SET notes = '${step}' WHERE id IN (SELECT id FROM bookings ORDER BY id LIMIT 3 OFFSET ${3 * Number(step.slice(1))})`,
  );
  sql(
    `UPDATE payments SET status = 'refunded', paid_at = coalesce(paid_at, now()) WHERE id = ${10 + Number(step.slice(1))}`,
  );
  sql(
    `INSERT INTO customers (first_name, last_name, email, phone) VALUES ('${step}', 'Step', '${step.toLowerCase()}@example.test', '0100')`,
  );
  sql(
    `INSERT INTO audit_logs (actor, action, entity) SELECT 'test', '${step}', 'booking' FROM generate_series(1, 5)`,
  );
  sql(`INSERT INTO session_logs (staff_user, ip) VALUES ('${step}', '10.0.0.1')`);
}

const logs = (database: string) => ({
  audit: world.sql(
    database,
    "SELECT string_agg(action || ':' || count, ',' ORDER BY action) FROM (SELECT action, count(*) FROM audit_logs WHERE actor = 'test' GROUP BY action) a",
  ),
  sessions: world.sql(
    database,
    "SELECT string_agg(staff_user, ',' ORDER BY staff_user) FROM session_logs WHERE staff_user LIKE 'W%'",
  ),
});

beforeAll(async () => {
  world = await startWorld();
  await backup('full', 'full');
  tables = Object.keys(backups.full?.tables ?? {});
  write('W1');
  await backup('L1', 'transaction-logs');
  await backup('I1', 'incremental');
  write('W2');
  await backup('L2', 'transaction-logs');
  await backup('I2', 'incremental');
  atI2 = tableChecksums(world, 'kennel_prod', tables);
  write('W3');
  await backup('L3', 'transaction-logs');
  write('W4');
  targetTime = sql(
    'SELECT to_char(clock_timestamp() AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')',
  );
  logsAtTarget = logs('kennel_prod');
  await new Promise((resolve) => setTimeout(resolve, 20));
  write('W5');
  await backup('L4', 'transaction-logs');
  await backup('I3', 'incremental');
}, 240_000);
afterAll(async () => {
  await world?.stop();
});

const recover = (input: Record<string, unknown>) =>
  runIn(world, { workflow: 'point-in-time-recovery', input: { database: 'kennel_prod', ...input } });

describe('point-in-time recovery', () => {
  it('a dry run shows every archive with its window, and what it leaves out, changing nothing', async () => {
    const run = await recover({ targetDatabase: 'kennel_at_t', targetTime, dryRun: true });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const { plan } = run.record.output as {
      plan: {
        archives: { key: string; window: unknown }[];
        notApplied: { key: string }[];
        recoveredTo: unknown;
      };
    };
    const names = ['full', 'I1', 'I2', 'L1', 'L2', 'L3', 'L4'];
    expect(plan.archives).toEqual(
      names.map((n) => expect.objectContaining({ key: backups[n]?.archive.key, window: backups[n]?.window })),
    );
    expect(plan.notApplied.map((a) => a.key)).toEqual([backups.I3?.archive.key]);
    expect(plan.recoveredTo).toEqual({ tables: backups.I2?.window.until, logTables: targetTime });
    expect(run.host.sent).toEqual([]);
    expect(databasesLike(world, 'kennel_at_t')).toEqual([]);
  });

  it('recovers the business tables as of the last incremental before the target, and the logs exactly to it', async () => {
    const run = await recover({ targetDatabase: 'kennel_at_t', targetTime });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');

    expect(tableChecksums(world, 'kennel_at_t', tables)).toEqual(atI2);
    expect(logs('kennel_at_t')).toEqual(logsAtTarget);
    expect(logsAtTarget).toEqual({ audit: 'W1:5,W2:5,W3:5,W4:5', sessions: 'W1,W2,W3,W4' });
    // Not one row written after the target time, in any table.
    const after = world.sql(
      'kennel_at_t',
      `SELECT (SELECT count(*) FROM audit_logs WHERE created_at > '${targetTime}') + (SELECT count(*) FROM session_logs WHERE created_at > '${targetTime}') + (SELECT count(*) FROM customers WHERE updated_at > '${targetTime}')`,
    );
    expect(after).toBe('0');

    const output = run.record.output as {
      from: { key: string }[];
      checks: string[];
      recoveredTo: unknown;
      targetTime: string;
    };
    expect(output.from).toHaveLength(7);
    expect(output.targetTime).toBe(targetTime);
    expect(output.checks.join(' ')).toContain('at least the full backup');
    expect(databasesLike(world, 'kb_')).toEqual([]);
  });

  it.each([
    ['a time in the future', () => new Date(Date.now() + 3_600_000).toISOString(), 'is in the future'],
    [
      'a time before the oldest full backup',
      () => '2020-01-01T00:00:00Z',
      'before the oldest verified full backup',
    ],
    ['a time without a zone', () => '2026-11-26T10:00:00', 'targetTime'],
    ['no time at all', () => undefined, 'targetTime'],
  ])('refuses %s, changing nothing', async (_what, time, message) => {
    const before = tableChecksums(world, 'kennel_prod', tables);
    const run = await recover({ targetDatabase: 'kennel_never', targetTime: time() });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('InvalidInputError');
    expect(run.record.cause).toContain(message);
    expect(run.host.sent).toEqual([]);
    expect(tableChecksums(world, 'kennel_prod', tables)).toEqual(before);
    expect(databasesLike(world, 'kennel_never')).toEqual([]);
  });

  it('refuses a target across a gap in the chain, naming it', async () => {
    const i1 = backups.I1 as DatabaseManifest;
    // I1 lost: nothing holds the changes from the full backup to I2's start.
    await world.catalog.writeManifest({ ...i1, verification: { state: 'failed', detail: 'lost' } });
    try {
      const before = tableChecksums(world, 'kennel_prod', tables);
      const run = await recover({ targetDatabase: 'kennel_never', targetTime });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.error).toBe('InvalidInputError');
      expect(run.record.cause).toContain(
        `The incremental archives have a gap: nothing holds the data from ${backups.full?.window.until} to ${backups.I2?.window.since}`,
      );
      expect(run.host.sent).toEqual([]);
      expect(tableChecksums(world, 'kennel_prod', tables)).toEqual(before);
      // Before the gap, recovery still works: the chain up to it is whole.
      const early = await recover({
        targetDatabase: 'kennel_early',
        targetTime: i1.window.since ?? '',
        dryRun: true,
      });
      expect(early.record.status, early.record.cause).toBe('SUCCEEDED');
    } finally {
      await world.catalog.writeManifest(i1);
    }
  });

  it('takes only the point-in-time input', async () => {
    const run = await recover({ targetDatabase: 'kennel_never', backup: 'latest' });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.cause).toContain('Unrecognized key: "backup"');
  });
});

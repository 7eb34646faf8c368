import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { type Query, tableContents } from './support/contents.ts';
import { runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';

/**
 * A logical backup restores the database, not just its tables, whatever its
 * size: each test makes a database of its own, takes a full backup of it (its
 * restore test included) and restores it with the database-restore workflow,
 * comparing every table's content with a reference taken before the backup.
 */

let world: TestWorld;
const q: Query = (database, query) => world.sql(database, query);

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world?.stop();
});

/** A full backup of one database (the dump alone), and its manifest. */
async function fullBackupOf(database: string): Promise<DatabaseManifest> {
  const run = await runIn(world, { input: { kind: 'full', database } });
  expect(run.record.status, run.alerts[0]?.cause ?? run.record.cause).toBe('SUCCEEDED');
  return world.catalog.readDatabaseManifest(runsOf(run.record)[0]?.plan.manifestKey ?? '');
}

/** The database-restore workflow, from the newest full backup of `database` into `targetDatabase`. */
async function restoreInto(
  database: string,
  targetDatabase: string,
  options: Parameters<typeof runIn>[1] = {},
) {
  const run = await runIn(world, {
    workflow: 'database-restore',
    input: { database, targetDatabase },
    ...options,
  });
  expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
  return run;
}

function dropDatabases(...names: string[]) {
  for (const name of names) world.sql('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

describe('a database of 4,000 tables at the default lock settings', () => {
  it('passes its restore test and restores into a new database, every table exact', async () => {
    // The lock table holds max_locks_per_transaction (64) times the connections:
    // one transaction that creates 4,000 tables, each with an index and a TOAST
    // table, needs several times more.
    expect(world.sql('postgres', 'SHOW max_locks_per_transaction')).toBe('64');
    world.sql('postgres', 'CREATE DATABASE kb_many');
    try {
      // One DO block that commits every 250 tables stays within the lock table itself.
      world.sql(
        'kb_many',
        `DO $$ BEGIN
           FOR i IN 1..4000 LOOP
             EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, note text)', i);
             EXECUTE format('INSERT INTO t%s VALUES (%s, %L)', i, i, 'row ' || i);
             IF i % 250 = 0 THEN COMMIT; END IF;
           END LOOP;
         END $$`,
      );
      const reference = tableContents(q, 'kb_many');
      expect(Object.keys(reference)).toHaveLength(4000);

      const manifest = await fullBackupOf('kb_many');
      expect(manifest.tables).toHaveLength(4000);
      expect(manifest.verification.restoreTest).toMatchObject({
        state: 'passed',
        detail: '4000 tables, 4000 rows match the dump',
      });

      // The restore's plan carries every table's expected rows, and each poll of a
      // host command copies the state into the local history: polled less often, it stays small.
      await restoreInto('kb_many', 'kb_many_restored', { waitMs: 3000 });
      expect(tableContents(q, 'kb_many_restored')).toEqual(reference);
    } finally {
      dropDatabases('kb_many', 'kb_many_restored');
    }
  }, 600_000);
});

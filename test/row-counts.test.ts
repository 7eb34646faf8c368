import { spawnSync } from 'node:child_process';
import { zstdDecompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { qualifiedName } from '../shared/core/identifiers.ts';
import { getBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';

/**
 * The rows per table that VerifyArchive counts in the dump, and the restore test
 * that compares a scratch restore with them, against schemas that are not the
 * sample's: each database is made here, backed up in full, and dropped.
 */

let world: TestWorld;

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world?.stop();
});

async function fullBackupOf(database: string) {
  const run = await runIn(world, { input: { database } });
  const key = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
  const manifest = await world.catalog.readDatabaseManifest(key);
  return { run, manifest };
}

/** Each table's (and materialized view's) own rows, counted and checksummed, by manifest key. */
function contents(database: string): Record<string, string> {
  const json = world.sql(
    database,
    `SELECT json_object_agg(n.nspname || '.' || c.relname,
       (xpath('/row/c/text()', query_to_xml(format(
         'SELECT count(*) || '':'' || coalesce(md5(string_agg(x::text, ''|'' ORDER BY x::text)), '''') AS c FROM ONLY %I.%I x',
         n.nspname, c.relname), false, true, '')))[1]::text)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`,
  );
  return JSON.parse(json) as Record<string, string>;
}

/** Restores the run's archive, as stored in S3, into a new database. */
async function restoreInto(manifest: DatabaseManifest, database: string): Promise<void> {
  const dump = zstdDecompressSync(await getBytes(world.s3, world.env.bucket, manifest.archive.key));
  world.sql('postgres', `CREATE DATABASE ${database}`);
  const restore = spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', database], {
    input: dump,
    env: { ...process.env, ...world.env.hostEnv },
    encoding: 'utf8',
  });
  expect(restore.status, restore.stderr).toBe(0);
}

/** A manifest's row counts by each table's qualified name. */
function countsOf(manifest: DatabaseManifest): Record<string, number> {
  return Object.fromEntries(manifest.tables.map((t) => [qualifiedName(t), t.rows]));
}

function dropDatabases(...names: string[]) {
  for (const name of names) world.sql('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

describe('row counts of awkward schemas', () => {
  it('partitions, a default partition, no key, no columns, "\\." lines, a 3 MB value, a materialized view: exact counts and a faithful restore', async () => {
    world.sql('postgres', 'CREATE DATABASE kb_shapes');
    world.sql(
      'kb_shapes',
      String.raw`CREATE SCHEMA s1; CREATE SCHEMA s2;
       CREATE TABLE s1.dup (id int); INSERT INTO s1.dup VALUES (1);
       CREATE TABLE s2.dup (id int); INSERT INTO s2.dup VALUES (1), (2);
       CREATE TABLE parted (id int, k int) PARTITION BY RANGE (k);
       CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
       CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20) PARTITION BY LIST (id);
       CREATE TABLE parted_2a PARTITION OF parted_2 FOR VALUES IN (1, 2, 3);
       CREATE TABLE parted_2d PARTITION OF parted_2 DEFAULT;
       CREATE TABLE parted_def PARTITION OF parted DEFAULT;
       INSERT INTO parted SELECT g, g % 30 FROM generate_series(1, 100) g;
       CREATE TABLE nopk (a text); INSERT INTO nopk VALUES ('x'), ('x'), (NULL);
       CREATE TABLE zerocol (); INSERT INTO zerocol DEFAULT VALUES; INSERT INTO zerocol DEFAULT VALUES;
       CREATE TABLE gen (a int, b int GENERATED ALWAYS AS (a * 2) STORED); INSERT INTO gen (a) VALUES (1), (2);
       CREATE TABLE weird (id int, t text);
       INSERT INTO weird VALUES (1, E'\\.'), (2, E'a\n\\.\nb'), (3, E'tab\there\\back'), (4, E'\r\n'), (5, ''), (6, NULL),
         (7, repeat('x', 3000000) || E'\n\\.');
       CREATE MATERIALIZED VIEW mv AS SELECT g FROM generate_series(1, 5) g;
       CREATE SEQUENCE unowned; SELECT setval('unowned', 42);
       SELECT lo_from_bytea(0, 'large object');`,
    );
    try {
      const { run, manifest } = await fullBackupOf('kb_shapes');
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      expect(countsOf(manifest)).toEqual({
        's1.dup': 1,
        's2.dup': 2,
        'public.parted_1': 39,
        'public.parted_2a': 0,
        'public.parted_2d': 31,
        'public.parted_def': 30,
        'public.nopk': 3,
        'public.zerocol': 2,
        'public.gen': 2,
        'public.weird': 7,
      });
      expect(manifest.verification.restoreTest?.state).toBe('passed');
      await restoreInto(manifest, 'kb_shapes_restored');
      expect(contents('kb_shapes_restored')).toEqual(contents('kb_shapes'));
      expect(world.sql('kb_shapes_restored', 'SELECT last_value FROM unowned')).toBe('42');
      expect(world.sql('kb_shapes_restored', 'SELECT count(*) FROM pg_largeobject_metadata')).toBe('1');
    } finally {
      dropDatabases('kb_shapes', 'kb_shapes_restored');
    }
  });

  it("a parent table with inheritance children: the restore test counts the parent's own rows, as the dump holds them", async () => {
    // COPY in the dump holds only the parent's own rows; count(*) on the parent counts its children's too.
    world.sql('postgres', 'CREATE DATABASE kb_inherit');
    world.sql(
      'kb_inherit',
      `CREATE TABLE parent (id int); CREATE TABLE child (extra int) INHERITS (parent);
       INSERT INTO parent VALUES (1); INSERT INTO child VALUES (2, 2), (3, 3);`,
    );
    try {
      const { run, manifest } = await fullBackupOf('kb_inherit');
      expect(countsOf(manifest)).toEqual({ 'public.parent': 1, 'public.child': 2 });
      expect(run.record.status, run.alerts[0]?.cause).toBe('SUCCEEDED');
      expect(manifest.verification.restoreTest?.state).toBe('passed');
    } finally {
      dropDatabases('kb_inherit');
    }
  });

  it('a LATIN1 database with non-ASCII table names: each table keeps its own name and count', async () => {
    // pg_dump writes a LATIN1 database's names in LATIN1; read as UTF-8 both become "caf\uFFFD".
    world.sql(
      'postgres',
      "CREATE DATABASE kb_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    );
    // chr() gives the character in the database's own encoding: é is the byte E9, ë is EB, ÿ is FF.
    world.sql(
      'kb_latin1',
      `DO $$ BEGIN
         EXECUTE format('CREATE TABLE %I (id int, t text)', 'caf' || chr(233));
         EXECUTE format('INSERT INTO %I VALUES (1, %L), (2, %L)', 'caf' || chr(233), 'na' || chr(239) || 've', chr(255));
         EXECUTE format('CREATE TABLE %I (id int)', 'caf' || chr(235));
         EXECUTE format('INSERT INTO %I VALUES (1)', 'caf' || chr(235));
       END $$`,
    );
    try {
      const { run, manifest } = await fullBackupOf('kb_latin1');
      expect(countsOf(manifest)).toEqual({ 'public."café"': 2, 'public."cafë"': 1 });
      expect(run.record.status, run.alerts[0]?.cause).toBe('SUCCEEDED');
      expect(manifest.verification.restoreTest?.state).toBe('passed');
    } finally {
      dropDatabases('kb_latin1');
    }
  });
});

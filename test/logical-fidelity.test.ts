import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql } from '../local/environment.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { contents, databaseProperties, lastValue, type Query } from './support/contents.ts';
import { runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { type Finished, runProcess } from './support/process.ts';

/**
 * The logical path is exact for a database that has everything at once, while
 * the application writes: one LATIN1 database with range partitions and a
 * default one, an owned and two unowned sequences (one not yet called), foreign
 * keys (a self-reference, two deferrable ones naming each other), large objects,
 * a table without a primary key holding duplicate rows, a generated column,
 * non-ASCII text, names with dots, quotes, capitals and a non-ASCII letter, a
 * log table of such a name left out (EXCLUDED_TABLES), ALTER DATABASE and
 * ALTER ROLE … IN DATABASE settings, a role whose name has a space and a quote.
 *
 * Two writers commit changes to most of it throughout the dump. The reference is
 * read in the dump's own snapshot: the test imports the snapshot the dump
 * exported (pg_snapshots) while pg_dump waits for a lock the test holds on a
 * partitioned table without partitions (which pg_dump locks, and the content
 * checks do not read); the writers go on committing meanwhile, so a dump that
 * read anything but its snapshot would differ. The full backup (verification,
 * restore test) and a database-restore into a new database are the real
 * workflows; the restored database is compared with the reference per table
 * (count and md5 of its sorted rows), per sequence (value and is_called), per
 * large object (bytes) and in its properties.
 */

const DB = 'kb_logical';
const RESTORED = 'kb_logical_restored';
const READER = 'kb lf "reader"';
/** The log table: its definition is in the full, its rows are not. */
const LOG_TABLE = { schema: 'Kennel.Ops', name: 'Prüf "Log"' };
const EXCLUDED_TABLES = '"Kennel.Ops"."Prüf ""Log"""';
/** The sequences the writers advance: pg_dump reads a sequence as it is when it gets to it, not in the snapshot. */
const WRITTEN_SEQUENCES = [
  JSON.stringify(['Kennel.Ops', 'Pets.All_id_seq']),
  JSON.stringify(['public', 'visits_id_seq']),
  JSON.stringify(['Kennel.Ops', 'Prüf "Log"_id_seq']),
];

let world: TestWorld;
/** The cluster's psql, reading and writing UTF-8 whatever the database's encoding (psql's default is the database's). */
const server = () => ({
  ...world.env.postgres,
  env: { ...world.env.postgres.env, PGCLIENTENCODING: 'UTF8' },
});
const q: Query = (database, query) => psql(server(), database, ['-A', '-t', '-c', query]).trim();

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world?.stop();
});

const SCHEMA = String.raw`
ALTER DATABASE kb_logical SET work_mem = '6MB';
ALTER DATABASE kb_logical SET search_path = "Kennel.Ops", public;
DO $$ BEGIN
  -- chr() is the database's own encoding: ä is the byte E4.
  EXECUTE format('ALTER DATABASE kb_logical SET "app.motto" = %L', 'Tr' || chr(228) || 'ume, ''quoted''');
END $$;
ALTER ROLE "kb lf ""reader""" IN DATABASE kb_logical SET statement_timeout = '7s';
SET ROLE kb_lf_owner;
CREATE SCHEMA "Kennel.Ops";
CREATE TABLE "Kennel.Ops".households (id int PRIMARY KEY, name text NOT NULL, primary_pet int);
CREATE TABLE "Kennel.Ops"."Pets.All" (
  id serial PRIMARY KEY,
  name text NOT NULL,
  shout text GENERATED ALWAYS AS (upper(name) || '!') STORED,
  mother int REFERENCES "Kennel.Ops"."Pets.All",
  household int REFERENCES "Kennel.Ops".households DEFERRABLE INITIALLY DEFERRED);
ALTER TABLE "Kennel.Ops".households ADD FOREIGN KEY (primary_pet) REFERENCES "Kennel.Ops"."Pets.All" DEFERRABLE INITIALLY DEFERRED;
CREATE TABLE visits (id bigserial, pet int NOT NULL REFERENCES "Kennel.Ops"."Pets.All", at date NOT NULL, note text,
  PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE visits_2023 PARTITION OF visits FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE visits_2024 PARTITION OF visits FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE visits_other PARTITION OF visits DEFAULT;
CREATE TABLE weights (pet int, kg numeric, noted text);
CREATE TABLE breeds (id serial PRIMARY KEY, name text);
CREATE SEQUENCE ticket_no START 100;
CREATE SEQUENCE invoice_no;
CREATE TABLE "Kennel.Ops"."Prüf ""Log""" (id bigserial PRIMARY KEY, entry text NOT NULL);
CREATE TABLE kb_gate (x int) PARTITION BY LIST (x);
CREATE TABLE writer_control (stop boolean NOT NULL);
INSERT INTO writer_control VALUES (false);

INSERT INTO "Kennel.Ops".households SELECT h, 'Haus ' || chr(252) || h, NULL FROM generate_series(1, 5) h;
INSERT INTO "Kennel.Ops"."Pets.All" (name, household) SELECT 'Hund ' || chr(246) || p, 1 + p % 5 FROM generate_series(1, 20) p;
UPDATE "Kennel.Ops"."Pets.All" SET mother = id - 1 WHERE id > 1;
UPDATE "Kennel.Ops".households SET primary_pet = id;
INSERT INTO visits (pet, at, note)
  SELECT 1 + v % 20, date '2022-06-01' + v * 11, 'Besuch ' || chr(233) || ' ' || v FROM generate_series(1, 300) v;
INSERT INTO weights SELECT 1 + w % 7, 3.5, NULL FROM generate_series(1, 30) w;
INSERT INTO weights VALUES (1, 3.5, NULL), (1, 3.5, NULL), (2, NULL, E'tab\there, new\nline, back\\slash');
INSERT INTO breeds (name) VALUES ('Dackel'), ('M' || chr(246) || 'pse');
SELECT setval('ticket_no', 1234);
SELECT setval('invoice_no', 50, false);
INSERT INTO "Kennel.Ops"."Prüf ""Log""" (entry) SELECT 'old ' || e FROM generate_series(1, 10) e;
SELECT lo_from_bytea(0, convert_to('R' || chr(246) || 'ntgen', 'LATIN1') || '\x00ff0a5c2e'::bytea);
SELECT lo_from_bytea(0, '');
SELECT lo_from_bytea(0, decode(repeat('00ff', 40000), 'hex'));
GRANT USAGE ON SCHEMA "Kennel.Ops" TO "kb lf ""reader""";
GRANT SELECT ON "Kennel.Ops"."Pets.All" TO "kb lf ""reader""";
RESET ROLE;

-- A writer of the application: each loop is one transaction touching most of
-- the schema (the partitions, the self-reference and both deferred keys, the
-- duplicate rows, a large object, the log table), until writer_control says stop.
CREATE PROCEDURE kb_write(w int) LANGUAGE plpgsql AS $$
DECLARE
  i int := 0;
  p int;
  pup int;
BEGIN
  LOOP
    EXIT WHEN (SELECT stop FROM writer_control);
    i := i + 1;
    SELECT id INTO p FROM "Kennel.Ops"."Pets.All" ORDER BY random() LIMIT 1;
    INSERT INTO visits (pet, at, note) VALUES (p, date '2022-07-01' + (i * 37 + w) % 1200, 'w' || w || ' ' || chr(228) || i);
    UPDATE visits SET note = note || '+' WHERE id = (SELECT max(id) FROM visits WHERE id % 5 = i % 5);
    DELETE FROM visits WHERE id = (SELECT min(id) FROM visits);
    UPDATE "Kennel.Ops"."Pets.All" SET name = left(name, 30) || chr(223) WHERE id = p;
    INSERT INTO weights VALUES (p, i % 3, NULL), (p, i % 3, NULL);
    INSERT INTO "Kennel.Ops"."Prüf ""Log""" (entry) VALUES ('w' || w || ' ' || i);
    IF i % 4 = 0 THEN
      -- A household and its first pet name each other: the keys are checked at commit.
      INSERT INTO "Kennel.Ops"."Pets.All" (name, mother, household) VALUES ('Welpe ' || i, p, w * 100000 + i) RETURNING id INTO pup;
      INSERT INTO "Kennel.Ops".households VALUES (w * 100000 + i, 'Haus ' || i, pup);
    END IF;
    IF i % 6 = 0 THEN
      PERFORM lo_from_bytea(0, convert_to('scan ' || chr(252) || i, 'LATIN1'));
    END IF;
    COMMIT;
    PERFORM pg_sleep(0.005);
  END LOOP;
END $$;
`;

/** A query in another session that reads as of the exported snapshot `id` (it must still be open). */
function inSnapshot(id: string): Query {
  return (database, query) =>
    psql(server(), database, [
      '-A',
      '-t',
      '-c',
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
      '-c',
      `SET TRANSACTION SNAPSHOT '${id}'`,
      '-c',
      query,
    ]).trim();
}

function client(database: string): pg.Client {
  const url = new URL(world.env.postgres.url);
  url.pathname = `/${database}`;
  const c = new pg.Client({ connectionString: url.toString() });
  c.on('error', () => {});
  return c;
}

/** The writers: psql sessions that CALL kb_write as the tables' owner, until writer_control says stop. */
function startWriters(count: number): Promise<Finished>[] {
  const { binDir, env } = server();
  return Array.from({ length: count }, (_, w) =>
    runProcess(
      join(binDir, 'psql'),
      [
        '-X',
        '-q',
        '-v',
        'ON_ERROR_STOP=1',
        '-d',
        DB,
        '-c',
        'SET application_name = kb_writer',
        '-c',
        'SET ROLE kb_lf_owner',
        '-c',
        `CALL kb_write(${w + 1})`,
      ],
      { ...process.env, ...env },
    ),
  );
}

async function stopWriters(writers: Promise<Finished>[]): Promise<Finished[]> {
  q(DB, 'UPDATE writer_control SET stop = true');
  return Promise.all(writers);
}

/** An exported snapshot's id, once the dump's session has exported it. */
async function exportedSnapshot(admin: pg.Client): Promise<string> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const { rows } = await admin.query<{ id: string }>("SELECT pg_ls_dir('pg_snapshots') AS id");
    if (rows[0]) return rows[0].id;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the dump exported no snapshot in 120 s');
}

/** Each sequence's `last_value is_called`, by JSON [schema, name]. */
const sequencesOf = (database: string) => contents(q, database).sequences;

describe('the logical path, all at once', () => {
  it('a full backup taken while the application writes restores exactly what its snapshot held: every row, sequence, large object and property', async () => {
    world.sql('postgres', `CREATE ROLE kb_lf_owner LOGIN; CREATE ROLE "kb lf ""reader""" LOGIN`);
    world.sql(
      'postgres',
      `CREATE DATABASE ${DB} OWNER kb_lf_owner ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
    );
    const gate = client(DB);
    const admin = client(DB);
    let writers: Promise<Finished>[] = [];
    try {
      psql(server(), DB, [], SCHEMA);
      await gate.connect();
      await admin.connect();
      // pg_dump waits here, after the dump's snapshot is exported and before it reads a row.
      await gate.query('BEGIN; LOCK TABLE public.kb_gate IN ACCESS EXCLUSIVE MODE');
      writers = startWriters(2);
      const started = new Date();
      const backup = runIn(world, {
        input: { kind: 'full', database: DB },
        functionEnv: { EXCLUDED_TABLES },
      });
      const snapshot = await exportedSnapshot(admin);
      const exported = new Date();
      const atSnapshot = inSnapshot(snapshot);
      const reference = contents(atSnapshot, DB);
      const properties = databaseProperties(atSnapshot, DB);
      // The writers commit while pg_dump waits: a dump that read after its snapshot would hold their rows.
      const writtenBefore = q(DB, 'SELECT count(*) FROM weights');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(Number(q(DB, 'SELECT count(*) FROM weights'))).toBeGreaterThan(Number(writtenBefore));
      await gate.query('COMMIT');

      const run = await backup;
      expect(run.record.status, run.alerts[0]?.cause ?? run.record.cause).toBe('SUCCEEDED');
      const [state] = runsOf(run.record);
      const manifest: DatabaseManifest = await world.catalog.readDatabaseManifest(
        state?.plan.manifestKey ?? '',
      );
      expect(manifest.verification.state).toBe('verified');
      expect(manifest.verification.restoreTest?.state, manifest.verification.restoreTest?.detail).toBe(
        'passed',
      );
      // `until` is when the snapshot was taken.
      expect(Date.parse(manifest.window.until)).toBeGreaterThanOrEqual(started.getTime());
      expect(Date.parse(manifest.window.until)).toBeLessThanOrEqual(exported.getTime());
      // The rows VerifyArchive counted in the archive are the snapshot's, per table; the log table has no COPY block.
      const counted = Object.fromEntries(
        manifest.tables.map((t) => [JSON.stringify([t.schema, t.name]), t.rows]),
      );
      const expected = Object.fromEntries(
        Object.entries(reference.tables).map(([table, sum]) => [table, Number(sum.split(':')[0])]),
      );
      const logKey = JSON.stringify([LOG_TABLE.schema, LOG_TABLE.name]);
      delete expected[logKey];
      expect(counted).toEqual(expected);
      expect(manifest.excludedTables).toEqual([LOG_TABLE]);

      const final = sequencesOf(DB);
      for (const result of await stopWriters(writers)) expect(result.stderr).toBe('');
      writers = [];
      expect(contents(q, DB).tables).not.toEqual(reference.tables);

      const restore = await runIn(world, {
        workflow: 'database-restore',
        input: { database: DB, targetDatabase: RESTORED },
        functionEnv: { EXCLUDED_TABLES },
      });
      expect(restore.record.status, restore.alerts[0]?.cause ?? restore.record.cause).toBe('SUCCEEDED');
      const restored = contents(q, RESTORED);
      expect(restored.tables).toEqual({ ...reference.tables, [logKey]: '0:' });
      expect(restored.largeObjects).toBe(reference.largeObjects);
      expect(restored.database).toBe(reference.database);
      expect(databaseProperties(q, RESTORED)).toEqual(properties);
      const unwritten = (s: Record<string, string>) =>
        Object.fromEntries(Object.entries(s).filter(([name]) => !WRITTEN_SEQUENCES.includes(name)));
      expect(unwritten(restored.sequences)).toEqual(unwritten(reference.sequences));
      expect(unwritten(restored.sequences)).toMatchObject({
        [JSON.stringify(['public', 'ticket_no'])]: '1234 true',
        [JSON.stringify(['public', 'invoice_no'])]: '50 false',
        [JSON.stringify(['public', 'breeds_id_seq'])]: '2 true',
      });
      // A sequence the writers advanced comes back between its snapshot's value and its last,
      // and past every key the restored rows hold: the next insert collides with none.
      for (const name of WRITTEN_SEQUENCES) {
        const value = (s: Record<string, string>) => lastValue(s[name]);
        expect(value(restored.sequences)).toBeGreaterThanOrEqual(value(reference.sequences));
        expect(value(restored.sequences)).toBeLessThanOrEqual(value(final));
      }
      expect(
        q(
          RESTORED,
          `SELECT (SELECT max(id) FROM "Kennel.Ops"."Pets.All") <= (SELECT last_value FROM "Kennel.Ops"."Pets.All_id_seq")
              AND (SELECT max(id) FROM visits) <= (SELECT last_value FROM visits_id_seq)`,
        ),
      ).toBe('t');
      expect(
        q(RESTORED, `SELECT has_table_privilege('${READER}', '"Kennel.Ops"."Pets.All"', 'SELECT')`),
      ).toBe('t');
    } finally {
      if (writers.length > 0) await stopWriters(writers).catch(() => {});
      await gate.end().catch(() => {});
      await admin.end().catch(() => {});
      world.sql('postgres', `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
      world.sql('postgres', `DROP DATABASE IF EXISTS ${RESTORED} WITH (FORCE)`);
      world.sql('postgres', `DROP ROLE IF EXISTS kb_lf_owner, "kb lf ""reader"""`);
    }
  }, 180_000);
});

describe('a restore over production', () => {
  it("keeps every row of a partitioned log table and of one with inheritance children: the full leaves out their partitions' rows, the carry brings each partition's over", async () => {
    const LOGS = 'kb_logs';
    world.sql('postgres', `CREATE DATABASE ${LOGS}`);
    try {
      world.sql(
        LOGS,
        `CREATE TABLE pets (id serial PRIMARY KEY, name text);
         INSERT INTO pets (name) VALUES ('Rex'), ('Mia');
         CREATE TABLE audit_logs (id bigserial, pet int REFERENCES pets ON DELETE SET NULL, at date NOT NULL, entry text,
           stamped boolean NOT NULL DEFAULT false, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE audit_logs_2024 PARTITION OF audit_logs FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE audit_logs_rest PARTITION OF audit_logs DEFAULT;
         CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.stamped := true; RETURN NEW; END $$;
         CREATE TRIGGER stamp BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION stamp();
         CREATE TABLE session_logs (id bigserial PRIMARY KEY, entry text);
         CREATE TABLE session_logs_old (CHECK (id < 1000)) INHERITS (session_logs);
         INSERT INTO audit_logs (pet, at, entry) SELECT 1 + i % 2, date '2024-01-01' + i * 3, 'before ' || i FROM generate_series(1, 200) i;
         INSERT INTO session_logs_old (id, entry) SELECT i, 'old ' || i FROM generate_series(1, 20) i;
         INSERT INTO session_logs (id, entry) SELECT 1000 + i, 'new ' || i FROM generate_series(1, 5) i`,
      );
      const functionEnv = { EXCLUDED_TABLES: 'public.audit_logs,public.session_logs' };
      const backup = await runIn(world, { input: { kind: 'full', database: LOGS }, functionEnv });
      expect(backup.record.status, backup.alerts[0]?.cause).toBe('SUCCEEDED');
      const manifest = await world.catalog.readDatabaseManifest(
        runsOf(backup.record)[0]?.plan.manifestKey ?? '',
      );
      // The log tables' rows, in their partitions and children too, are not in the full.
      expect(manifest.tables.map((t) => t.name).sort()).toEqual(['pets']);

      // Production goes on logging after the backup, the trigger stamping what the application writes.
      world.sql(
        LOGS,
        `INSERT INTO audit_logs (pet, at, entry) SELECT 1 + i % 2, date '2024-06-01' + i * 5, 'after ' || i FROM generate_series(1, 80) i;
         INSERT INTO session_logs_old (id, entry) VALUES (500, 'late old');
         INSERT INTO session_logs (entry) VALUES ('late new')`,
      );
      const logTables = (database: string) =>
        Object.fromEntries(Object.entries(contents(q, database).tables).filter(([t]) => t.includes('_logs')));
      const reference = logTables(LOGS);
      expect(Object.keys(reference)).toHaveLength(4);
      const nextIds = world.sql(LOGS, 'SELECT last_value FROM audit_logs_id_seq');

      const over = await runIn(world, {
        workflow: 'database-restore',
        input: { database: LOGS, targetDatabase: LOGS, confirm: LOGS },
        functionEnv,
      });
      expect(over.record.status, over.alerts[0]?.cause ?? over.record.cause).toBe('SUCCEEDED');
      expect(over.alerts[0]?.text).toContain(
        'public.audit_logs: 280 rows carried over from the replaced database',
      );
      expect(over.alerts[0]?.text).toContain(
        'public.session_logs: 27 rows carried over from the replaced database',
      );
      expect(logTables(LOGS)).toEqual(reference);
      expect(world.sql(LOGS, 'SELECT last_value FROM audit_logs_id_seq')).toBe(nextIds);
      expect(world.sql(LOGS, "SELECT tgenabled FROM pg_trigger WHERE tgname = 'stamp' ORDER BY 1")).toBe(
        'O\nO\nO',
      );
      world.sql(
        'postgres',
        `DROP DATABASE ${(over.record.output as { replacedDatabase: string }).replacedDatabase}`,
      );
    } finally {
      world.sql('postgres', `DROP DATABASE IF EXISTS ${LOGS} WITH (FORCE)`);
    }
  }, 180_000);
});

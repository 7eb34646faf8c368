import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql } from '../local/environment.ts';
import { type ExecutionRecord, STATE_PAYLOAD_LIMIT_BYTES } from '../local/runner.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { OUTPUT_LIMITS } from '../shared/host/commands.ts';
import { type Query, tableContents } from './support/contents.ts';
import { runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';

/**
 * AWS's limits, which the local runner enforces (256 KiB per state, the first
 * 24,000 characters of stdout and 8,000 of stderr from GetCommandInvocation), met
 * by real workflows: a database of thousands of tables backed up and restored, a host
 * command whose error comes after pages of progress, and a restore that fails on
 * a row, whose data must reach no alert, log or execution.
 */

let world: TestWorld;
const q: Query = (database, query) => world.sql(database, query);
const MANY = 'kb_many_tables';
/**
 * Enough tables for their names and row counts to be over 256 KiB, as those of
 * 10,000 tables with short names are: 4,000 with names of PostgreSQL's 63
 * bytes, 40 % of the time in every stage that works per table (the dump, the
 * restore test, the restore and its check). This test with 10,000 short names
 * took 54 s here.
 */
const TABLES = 4_000;
const tableName = (i: number) => `t${String(i).padStart(5, '0')}_${'x'.repeat(56)}`;

beforeAll(async () => {
  world = await startWorld();
  // At PostgreSQL's default lock settings: the lock table holds
  // max_locks_per_transaction (64) times the connections, 4,608 slots here. pg_dump
  // takes one per table and fits; a restore in one transaction (one per table and
  // index, 8,000) would not, so restores apply the dump statement by statement.
  expect(world.sql('postgres', 'SHOW max_locks_per_transaction')).toBe('64');
  world.sql('postgres', `CREATE DATABASE ${MANY}`);
  // A thousand tables a transaction: each CREATE holds a lock to its commit.
  const batches = Array.from(
    { length: TABLES / 1000 },
    (_, b) =>
      `DO $$ BEGIN FOR i IN ${b * 1000 + 1}..${(b + 1) * 1000} LOOP
         EXECUTE format('CREATE TABLE %1$I (id int PRIMARY KEY); INSERT INTO %1$I VALUES (%2$s)',
                        't' || lpad(i::text, 5, '0') || '_' || repeat('x', 56), i);
       END LOOP; END $$;`,
  );
  psql(world.env.postgres, MANY, [], batches.join('\n'));
}, 300_000);
afterAll(async () => {
  await world?.stop();
});

/** The largest input or output of any state of the execution, in UTF-8 bytes of its JSON. */
function largestState(record: ExecutionRecord): { bytes: number; state: string } {
  let largest = { bytes: 0, state: '' };
  for (const event of record.events) {
    for (const value of [event.state?.input, event.state?.output]) {
      const bytes = value === undefined ? 0 : Buffer.byteLength(JSON.stringify(value));
      if (bytes > largest.bytes) largest = { bytes, state: event.state?.name ?? '' };
    }
  }
  return largest;
}

/** The id of the `script` command in an execution's state. */
function commandOf(state: unknown, script: string): string {
  if (typeof state !== 'object' || state === null) return '';
  const { script: name, commandId } = state as { script?: unknown; commandId?: unknown };
  if (name === script && typeof commandId === 'string') return commandId;
  return Object.values(state).reduce<string>((found, value) => found || commandOf(value, script), '');
}

describe('a database of thousands of tables, at the default lock settings', () => {
  it('is backed up, verified, restore-tested and restored, every table exact, with no state over 256 KiB: per-table data stays in S3', async () => {
    const reference = tableContents(q, MANY);
    expect(Object.keys(reference)).toHaveLength(TABLES);
    const backup = await runIn(world, {
      workflow: 'database-backup',
      input: { kind: 'full', database: MANY },
    });
    expect(backup.record.status, backup.record.cause).toBe('SUCCEEDED');
    const [run] = runsOf(backup.record);
    expect(run?.restoreTest?.state).toBe('passed');
    const manifest = (await world.catalog.readManifest(run?.plan.manifestKey ?? '')) as DatabaseManifest;
    expect(manifest.tables).toHaveLength(TABLES);
    expect(manifest.tables.find((t) => t.schema === 'public' && t.name === tableName(TABLES))?.rows).toBe(1);
    // The manifest holds the counts, more than a state may; a state holds its key.
    expect(Buffer.byteLength(JSON.stringify(manifest.tables))).toBeGreaterThan(STATE_PAYLOAD_LIMIT_BYTES);

    const restore = await runIn(world, {
      workflow: 'database-restore',
      input: { database: MANY, targetDatabase: 'kb_many_tables_copy' },
    });
    expect(restore.record.status, restore.record.cause).toBe('SUCCEEDED');
    // Every table back, each with its content exactly.
    expect(tableContents(q, 'kb_many_tables_copy')).toEqual(reference);
    // Keys and summaries only: far under the quota the runner enforces, whatever the table count.
    for (const record of [backup.record, restore.record]) {
      const largest = largestState(record);
      expect(largest.bytes, `${record.workflow}: ${largest.state}`).toBeLessThan(
        STATE_PAYLOAD_LIMIT_BYTES / 8,
      );
    }
  });
});

describe("a host command's output beyond what Run Command returns", () => {
  it('a failure after 24,000 characters of progress is reported with its real error, read from S3', async () => {
    // The commands after a static files restore: 600 lines of progress on each
    // stream, then the error, as a restore that fetches many archives prints.
    const progress =
      'for i in $(seq 1 600); do echo "fetching archive $i of 600 from the repository: done"; echo "progress: archive $i of 600 restored, checksums verified" >&2; done; echo "restore failed: could not write /srv/kennel/static: No space left on device" >&2; exit 1';
    const targets = JSON.parse(world.env.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
    const functionEnv = {
      BACKUP_TARGETS: JSON.stringify(
        targets.map((t) => ({
          ...t,
          afterFilesRestore: { ...(t.afterFilesRestore as object), static: [progress] },
        })),
      ),
    };
    const backup = await runIn(world, { workflow: 'files-backup', input: { kind: 'static' }, functionEnv });
    expect(backup.record.status, backup.record.cause).toBe('SUCCEEDED');
    const run = await runIn(world, {
      workflow: 'files-restore',
      input: { kind: 'static', confirm: 'static' },
      functionEnv,
    });
    expect(run.record.status).toBe('FAILED');

    const check = run.record.events.find(
      (e) => e.type === 'StateFailed' && e.state?.name === 'CheckAfterCommands',
    );
    expect(check?.Error).toBe('HostCommandFailedError');
    expect(String(check?.Cause)).toContain(
      'restore failed: could not write /srv/kennel/static: No space left on device',
    );
    expect(run.alerts[0]?.cause).toContain('No space left on device');
    expect(run.alerts[0]?.cause).not.toContain('archive 1 of 600');
    // What GetCommandInvocation gives of it: the first characters of each stream, without the error.
    const commandId = commandOf(check?.state?.input, 'after-files-restore');
    const invocation = await run.host.get(commandId, 'i-00000000000000000');
    expect(invocation.status).toBe('Failed');
    expect(invocation.stdout).toHaveLength(OUTPUT_LIMITS.stdout);
    expect(invocation.stderr).toHaveLength(OUTPUT_LIMITS.stderr);
    expect(invocation.stderr).not.toContain('No space left on device');
  });
});

describe('a restore that fails on a row', () => {
  /** A database of `schema`, whose full backup fails its restore test: the run, its first alert's cause. */
  async function failedRestoreTest(database: string, schema: string) {
    world.sql('postgres', `CREATE DATABASE ${database}`);
    psql(world.env.postgres, database, [], schema);
    const run = await runIn(world, { workflow: 'database-backup', input: { kind: 'full', database } });
    expect(run.record.status).toBe('FAILED');
    const [alert] = run.alerts;
    expect(alert?.state).toBe('CheckRestoreTest');
    return { run, cause: alert?.cause };
  }

  it("reports PostgreSQL's error without the row: no DETAIL or CONTEXT value in an alert, a log or the execution", async () => {
    // A CHECK through a function that reads another table: pg_dump restores
    // pets' rows before zz_codes has any, so the restore fails on the first row,
    // as a real schema's does (the constraint holds in production).
    const { run, cause } = await failedRestoreTest(
      'kb_pets',
      `CREATE TABLE zz_codes (code text PRIMARY KEY);
       INSERT INTO zz_codes VALUES ('A');
       CREATE FUNCTION code_allowed(c text) RETURNS boolean LANGUAGE sql STABLE
         AS $$ SELECT EXISTS (SELECT 1 FROM public.zz_codes WHERE code = c) $$;
       CREATE TABLE pets (id int PRIMARY KEY, owner_email text, code text CHECK (code_allowed(code)));
       INSERT INTO pets VALUES (1, 'rex.owner@example.com', 'A');`,
    );
    // The error names the constraint; its DETAIL and CONTEXT (the row, the COPY line) are gone.
    expect(cause).toContain('new row for relation "pets" violates check constraint "pets_code_check"');
    expect(cause).toMatch(/DETAIL: {2}\*\*\*\nCONTEXT: {2}\*\*\*/);
    expect(run.visibleText).toContain('violates check constraint "pets_code_check"');
    expect(run.visibleText).not.toContain('rex.owner@example.com');
  });

  it("reports an error a function of the database's own raised without its text, which quotes the row", async () => {
    // The CHECK's function RAISEs with the email in the message itself: the
    // restore test loads a_customers before allowed_domains has its row.
    const { run, cause } = await failedRestoreTest(
      'kb_raise',
      `CREATE TABLE allowed_domains (d text PRIMARY KEY);
       INSERT INTO allowed_domains VALUES ('example.net');
       CREATE FUNCTION email_ok(e text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM public.allowed_domains WHERE e LIKE '%@' || d) THEN
           RAISE EXCEPTION 'customer email % is not in an allowed domain', e USING HINT = 'ask ' || e;
         END IF;
         RETURN true;
       END $$;
       CREATE TABLE a_customers (id int PRIMARY KEY, email text CHECK (email_ok(email)));
       INSERT INTO a_customers VALUES (1, 'jane.private@example.net');`,
    );
    expect(cause).toContain("ERROR:  *** (a message the database's own function raised");
    expect(cause).toMatch(/HINT: {2}\*\*\*\nCONTEXT: {2}\*\*\*/);
    expect(run.visibleText).not.toContain('jane.private');
  });
});

import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zstdDecompressSync } from 'node:zlib';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql } from '../local/environment.ts';
import { manifestKey } from '../shared/catalog/keys.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { qualifiedName, type TableName } from '../shared/core/identifiers.ts';
import { tableChecksums } from './support/checksums.ts';
import { getBytes, putBytes, runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { pastBackup } from './support/manifests.ts';

// The first test runs a whole full (the dump and the physical run); the others are
// about the dump, so their input names the database: a run that plans the dump alone
// (physical-backup.test.ts covers pgBackRest), a third of the time each.
let world: TestWorld;
const DEBUG_LOGS = { POWERTOOLS_LOG_LEVEL: 'DEBUG' };

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world?.stop();
});

function scratchDatabases(): string[] {
  return world
    .sql('postgres', "SELECT datname FROM pg_database WHERE datname LIKE 'kb_restore_test_%'")
    .split('\n')
    .filter(Boolean);
}

/** The rows a manifest counted in one table. */
function rowsOf(manifest: DatabaseManifest, schema: string, name: string): number | undefined {
  return manifest.tables.find((t) => t.schema === schema && t.name === name)?.rows;
}

/** How a restore test describes a database of the local cluster's defaults (initdb's locale, the superuser's). */
const SAMPLE_DATABASE =
  'encoding UTF8, locale C.UTF-8/C.UTF-8, owner kennel_admin and 0 settings as backed up';

function localFiles(): string[] {
  const dir = join(world.env.paths.backupDir, 'database/full/kennel_prod');
  return existsSync(dir) ? readdirSync(dir) : [];
}

async function manifestsInS3(): Promise<DatabaseManifest[]> {
  return world.catalog.list('full', 'local', 'kennel_prod');
}

function expectNoSecret(text: string) {
  expect(text.length).toBeGreaterThan(0);
  expect(text).not.toContain(world.env.postgres.password);
  expect(text).not.toContain(encodeURIComponent(world.env.postgres.password));
}

/** A backup from the past, in S3 and on the host, as an earlier run would have left it. */
async function plantOldBackup(
  daysAgo: number,
  state: DatabaseManifest['verification']['state'],
): Promise<DatabaseManifest> {
  const localDir = join(world.env.paths.backupDir, 'database/full/kennel_prod');
  const manifest = pastBackup({ daysAgo, now: new Date(), target: 'local', state, localDir });
  mkdirSync(localDir, { recursive: true });
  writeFileSync(manifest.archive.localPath, 'old archive');
  // The host's copy is as old as the backup, as it would be on a real host.
  const until = new Date(manifest.window.until);
  utimesSync(manifest.archive.localPath, until, until);
  await putBytes(world.s3, world.env.bucket, manifest.archive.key, 'old archive');
  await world.catalog.writeManifest(manifest);
  return manifest;
}

describe('full database backup, end to end', () => {
  it('stores a verified archive that restores to the counted rows, prunes expired copies and leaves no scratch database', async () => {
    // An expired backup (40 days) and one inside the host's window only (10 days).
    const expired = await plantOldBackup(40, 'verified');
    const recent = await plantOldBackup(10, 'verified');

    const run = await runIn(world, { functionEnv: DEBUG_LOGS });

    expect(run.record.status).toBe('SUCCEEDED');
    const [output] = runsOf(run.record);
    if (!output?.prune) throw new Error('no run');
    const manifest = await world.catalog.readDatabaseManifest(output.plan.manifestKey);
    expect(manifest.verification.state).toBe('verified');
    expect(manifest.verification.restoreTest?.state).toBe('passed');
    // The test's own start (its command sent, after the verification) and end: the audit report's duration.
    const test = manifest.verification.restoreTest;
    expect(Date.parse(test?.startedAt ?? '')).toBeGreaterThanOrEqual(
      Date.parse(manifest.verification.checkedAt ?? ''),
    );
    expect(Date.parse(test?.checkedAt ?? '')).toBeGreaterThan(Date.parse(test?.startedAt ?? ''));
    expect(manifest.excludedTables).toEqual([
      { schema: 'public', name: 'audit_logs' },
      { schema: 'public', name: 'session_logs' },
    ]);
    expect(manifest.tables.map(qualifiedName)).not.toContain('public.audit_logs');

    // The bytes in S3 are the manifest's, and decompress to a dump that restores.
    const bytes = await getBytes(world.s3, world.env.bucket, output.plan.archiveKey);
    expect(bytes.length).toBe(manifest.archive.size);
    const dump = zstdDecompressSync(bytes).toString('utf8');
    expect(dump).toContain('-- PostgreSQL database dump complete');
    world.sql('postgres', 'CREATE DATABASE e2e_restore_check');
    const restore = spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'e2e_restore_check'], {
      input: dump,
      env: { ...process.env, ...world.env.hostEnv },
      encoding: 'utf8',
    });
    expect(restore.status, restore.stderr).toBe(0);
    for (const table of manifest.tables) {
      const name = qualifiedName(table);
      expect(Number(world.sql('e2e_restore_check', `SELECT count(*) FROM ${name}`)), name).toBe(table.rows);
      expect(Number(world.sql('kennel_prod', `SELECT count(*) FROM ${name}`)), name).toBe(table.rows);
    }
    expect(rowsOf(manifest, 'public', 'bookings')).toBeGreaterThan(1000);
    world.sql('postgres', 'DROP DATABASE e2e_restore_check');

    expect(scratchDatabases()).toEqual([]);

    // 40 days: gone from S3 and the host. 10 days: kept in S3 (30 d), gone from the host (7 d).
    expect(output.prune.removedFromS3).toEqual([expired.archive.key]);
    const keys = (await manifestsInS3()).map((m) => m.archive.key);
    expect(keys).not.toContain(expired.archive.key);
    expect(keys).toContain(recent.archive.key);
    expect(localFiles()).not.toContain(expired.archive.fileName);
    expect(localFiles()).not.toContain(recent.archive.fileName);
    expect(localFiles()).toContain(manifest.archive.fileName);

    // The local history lists every state the execution went through.
    const history = JSON.parse(readFileSync(run.record.historyFile, 'utf8')) as {
      events: { type: string; state?: { name: string } }[];
    };
    const visited = new Set(history.events.filter((e) => e.type === 'StateExited').map((e) => e.state?.name));
    for (const state of [
      'PlanBackup',
      'StartDump',
      'CheckDump',
      'VerifyArchive',
      'RestoreTest',
      'PruneBackups',
      'CheckLocalPrune',
    ]) {
      expect(visited).toContain(state);
    }
    expect(run.alerts).toEqual([]);
    expectNoSecret(run.visibleText);
  });

  it('counts rows in the dump snapshot even while the application writes', async () => {
    const writer = new pg.Client({ connectionString: `${world.env.postgres.url}/kennel_prod` });
    await writer.connect();
    let writing = true;
    const writes = (async () => {
      while (writing) {
        await writer.query(
          "INSERT INTO payments (booking_id, amount, method, status) SELECT id, 9.99, 'cash', 'pending' FROM bookings ORDER BY random() LIMIT 1",
        );
      }
    })();
    try {
      const run = await runIn(world, { input: { database: 'kennel_prod' } });
      expect(run.record.status).toBe('SUCCEEDED');
      const manifest = await world.catalog.readDatabaseManifest(
        runsOf(run.record)[0]?.plan.manifestKey ?? '',
      );
      expect(manifest.verification.restoreTest?.state).toBe('passed');
    } finally {
      writing = false;
      await writes;
      await writer.query(
        "DELETE FROM payments WHERE amount = 9.99 AND method = 'cash' AND status = 'pending'",
      );
      await writer.end();
    }
  });
});

describe('every failure ends in an alert and a failed execution, with nothing marked valid', () => {
  async function expectFailure(run: Awaited<ReturnType<typeof runIn>>, state: string, error: string) {
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('BackupRunsFailed');
    expect(run.record.cause).toContain('Backups failed for ["local"]');
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]).toMatchObject({ state, error });
    expect(run.alerts[0]?.text).toContain(`State: ${state}`);
    expect(run.alerts[0]?.text).toMatch(/Target: local \(\w+, full\)/);
    expect(run.alerts[0]?.text).toContain('Console: https://us-east-1.console.aws.amazon.com/states/');
    expect(scratchDatabases()).toEqual([]);
    expectNoSecret(run.visibleText);
  }

  it('an unknown database', async () => {
    const before = (await manifestsInS3()).length;
    const run = await runIn(world, { input: { database: 'no_such_database' } });
    await expectFailure(run, 'CheckDump', 'HostCommandFailedError');
    expect(run.alerts[0]?.cause).toContain('database "no_such_database" does not exist');
    expect(await world.catalog.list('full', 'local', 'no_such_database')).toEqual([]);
    expect((await manifestsInS3()).length).toBe(before);
  });

  it('an unreachable database server', async () => {
    const run = await runIn(world, { input: { database: 'kennel_prod' }, hostEnv: { PGPORT: '1' } });
    await expectFailure(run, 'CheckDump', 'HostCommandFailedError');
    expect(run.alerts[0]?.cause).toMatch(/connection to server at "127\.0\.0\.1", port 1 failed/);
  });

  it('a host command that outlives its timeout is stopped', async () => {
    const locker = new pg.Client({ connectionString: `${world.env.postgres.url}/kennel_prod` });
    await locker.connect();
    // pg_dump waits for its lock on bookings as long as this transaction holds it.
    await locker.query('BEGIN; LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE');
    const filesBefore = localFiles();
    try {
      // The dump alone (a named database plans no pgBackRest run, which would time out as well).
      const run = await runIn(world, {
        input: { database: 'kennel_prod' },
        functionEnv: { HOST_COMMAND_TIMEOUT_SECONDS: '3' },
      });
      await expectFailure(run, 'CheckDump', 'HostCommandTimedOutError');
      expect(run.alerts[0]?.cause).toContain('ran out of time');
      expect(localFiles()).toEqual(filesBefore);
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
  });

  it('a byte flipped in the archive after upload', async () => {
    const run = await runIn(world, {
      input: { database: 'kennel_prod' },
      beforeTask: async (state, input) => {
        if (state !== 'VerifyArchive') return;
        const { archiveKey } = (input as { plan: { archiveKey: string } }).plan;
        const bytes = await getBytes(world.s3, world.env.bucket, archiveKey);
        const middle = Math.floor(bytes.length / 2);
        bytes[middle] = (bytes[middle] ?? 0) ^ 0x01;
        await putBytes(world.s3, world.env.bucket, archiveKey, bytes);
      },
    });
    await expectFailure(run, 'VerifyArchive', 'ArchiveCorruptError');
    // A corrupt archive is terminal: retrying cannot mend it.
    expect(run.record.events.filter((e) => e.type === 'StateRetried')).toEqual([]);
    const manifestKeyOfRun = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
    const manifest = await world.catalog.readDatabaseManifest(manifestKeyOfRun);
    expect(manifest.verification.state).toBe('failed');
    expect(manifest.verification.detail).toMatch(
      /sha256 is [0-9a-f]{64}, the manifest says|does not decompress/,
    );
  });

  it('a restored table whose row count does not match', async () => {
    let scratch = '';
    const run = await runIn(world, {
      input: { database: 'kennel_prod' },
      beforeTask: async (state, input) => {
        if (state !== 'RestoreTest') return;
        scratch = (input as { plan: { scratchDatabase: string } }).plan.scratchDatabase;
        world.sql(scratch, 'DELETE FROM payments WHERE id IN (SELECT id FROM payments LIMIT 3)');
      },
    });
    await expectFailure(run, 'RestoreTest', 'RestoreMismatchError');
    expect(run.alerts[0]?.cause).toMatch(/public\.payments has \d+ rows, expected \d+/);
    expect(scratch).not.toBe('');
    const manifest = await world.catalog.readDatabaseManifest(
      JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '',
    );
    expect(manifest.verification.restoreTest?.state).toBe('failed');
  });

  it('an unreachable S3: the run lock cannot be taken, so nothing reaches the host', async () => {
    const dead = 'http://127.0.0.1:1';
    const run = await runIn(world, {
      input: { database: 'kennel_prod' },
      functionEnv: { S3_ENDPOINT_URL: dead },
    });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('TransientError');
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]).toMatchObject({ state: 'TakeRunLock', error: 'TransientError' });
    expect(run.alerts[0]?.cause).toContain('Taking the run lock locks/local/full failed (ECONNREFUSED)');
    expect(run.host.sent).toEqual([]);
  });

  /** The archive a run planned: not in S3, and none of its parts left in an unfinished upload. */
  async function expectNoArchive(run: Awaited<ReturnType<typeof runIn>>) {
    const key = JSON.stringify(run.record.events).match(/"archiveKey":"([^"]+)"/)?.[1] ?? '';
    expect(key).toMatch(/^database\/full\/local\/kennel_prod\/.+\.sql\.zst$/);
    const listed = await world.s3.send(new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: key }));
    expect(listed.Contents ?? []).toEqual([]);
    // s3rver keeps an unfinished multipart upload's parts in a folder of its own (it lists none).
    const uploads = join(world.env.paths.hostRoot, '..', '..', 's3', world.env.bucket, '._S3rver_uploads');
    expect(existsSync(uploads) ? readdirSync(uploads) : []).toEqual([]);
  }

  it('a pg_dump killed after several parts were uploaded: no object, no part left', async () => {
    const before = localFiles();
    const bin = mkdtempSync(join(tmpdir(), 'kennel-backup-killed-dump-'));
    const real = spawnSync('sh', ['-c', 'command -v pg_dump'], {
      encoding: 'utf8',
      env: { PATH: world.env.hostEnv.PATH },
    }).stdout.trim();
    // The whole dump, then 20 MiB that zstd cannot shrink (parts of 8 MiB), then SIGKILL.
    writeFileSync(
      join(bin, 'pg_dump'),
      `#!/bin/bash\n${JSON.stringify(real)} "$@" || exit\nhead -c 20971520 /dev/urandom\nkill -9 $$\n`,
      { mode: 0o755 },
    );
    try {
      const run = await runIn(world, {
        input: { database: 'kennel_prod' },
        hostEnv: { PATH: `${bin}:${world.env.hostEnv.PATH}` },
      });
      await expectFailure(run, 'CheckDump', 'HostCommandFailedError');
      expect(run.alerts[0]?.cause).toContain(
        'a stage feeding it failed: dump (status 137); nothing was written',
      );
      await expectNoArchive(run);
      expect(localFiles()).toEqual(before);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('a table the role cannot read: pg_dump stops before the first part, and no object is made', async () => {
    const password = world.env.postgres.password.replaceAll("'", "''");
    world.sql('postgres', `CREATE ROLE kb_cannot_read LOGIN PASSWORD '${password}'`);
    try {
      const run = await runIn(world, {
        input: { database: 'kennel_prod' },
        hostEnv: { PGUSER: 'kb_cannot_read' },
      });
      await expectFailure(run, 'CheckDump', 'HostCommandFailedError');
      expect(run.alerts[0]?.cause).toContain('permission denied for table');
      expect(run.alerts[0]?.cause).toMatch(/a stage feeding it failed: dump \(status 1\)/);
      await expectNoArchive(run);
    } finally {
      world.sql('postgres', 'DROP ROLE kb_cannot_read');
    }
  });

  it('an S3 the host cannot write to', async () => {
    const before = localFiles();
    // The dump alone (a named database plans no pgBackRest run, which would fail as well).
    const run = await runIn(world, {
      input: { database: 'kennel_prod' },
      hostEnv: { AWS_ACCESS_KEY_ID: 'NOT-A-KEY-OF-THIS-S3' },
    });
    await expectFailure(run, 'CheckDump', 'HostCommandFailedError');
    expect(run.alerts[0]?.cause).toMatch(/InvalidAccessKeyId|AccessDenied|access key/i);
    // The host keeps no copy (not even a partial one) of an archive that never reached S3.
    expect(localFiles()).toEqual(before);
  });
});

describe('transient errors are retried', () => {
  it('a TransientError in a stage is retried and the backup still succeeds', async () => {
    let attempts = 0;
    const run = await runIn(world, {
      input: { database: 'kennel_prod' },
      beforeTask: async (state) => {
        if (state !== 'VerifyArchive') return;
        attempts += 1;
        if (attempts === 1) {
          throw Object.assign(new Error('S3 answered 503 Slow Down'), { name: 'TransientError' });
        }
      },
    });
    expect(run.record.status).toBe('SUCCEEDED');
    expect(attempts).toBe(2);
    const retried = run.record.events.filter((e) => e.type === 'StateRetried');
    expect(retried.map((e) => (e as { state?: { name: string } }).state?.name)).toEqual(['VerifyArchive']);
    expect(run.alerts).toEqual([]);
  });
});

describe('bad input is refused before anything reaches the host', () => {
  it.each([
    ['a misspelt field', { databse: 'kennel_prod' }, 'InvalidInputError', 'databse'],
    [
      'shell metacharacters in the database name',
      { database: 'kennel_prod; rm -rf /' },
      'InvalidInputError',
      'database',
    ],
    ['a quoted database name', { database: "x'$(touch /tmp/pwned)'" }, 'InvalidInputError', 'database'],
    ['input that is not an object', 'kennel_prod', 'InvalidInputError', 'expected object'],
    ['an unknown target', { target: 'replica' }, 'NotFoundError', 'the configured targets are: local'],
  ])('%s', async (_name, input, error, mentions) => {
    const run = await runIn(world, { input });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe(error);
    expect(run.alerts[0]?.state).toBe('PlanBackup');
    expect(run.alerts[0]?.cause).toContain(mentions);
    expect(run.host.sent).toEqual([]);
    expect(existsSync('/tmp/pwned')).toBe(false);
  });
});

describe('manifest', () => {
  it('records where the archive is, what it holds and who made it', async () => {
    const run = await runIn(world, { input: { database: 'kennel_prod' } });
    const plan = (runsOf(run.record)[0] ?? { plan: { manifestKey: '', archiveKey: '', executionId: '' } })
      .plan;
    expect(plan.manifestKey).toBe(manifestKey(plan.archiveKey));
    const manifest = await world.catalog.readDatabaseManifest(plan.manifestKey);
    expect(manifest.executionId).toBe(plan.executionId);
    expect(manifest.archive.compression).toBe('zstd');
    expect(Number(manifest.serverVersion)).toBeGreaterThanOrEqual(150000);
    expect(Date.parse(manifest.window.until)).toBeGreaterThanOrEqual(Date.parse(manifest.startedAt) - 1000);
    expect(Date.parse(manifest.finishedAt)).toBeGreaterThanOrEqual(Date.parse(manifest.window.until));
    const local = readFileSync(manifest.archive.localPath);
    expect(local.length).toBe(manifest.archive.size);
    utimesSync(manifest.archive.localPath, new Date(), new Date());
  });
});

describe('row counts taken from the archive', () => {
  it('name each table by schema and name (a dot, a quote, an odd schema, an empty table, names that join alike), and leave out only the log tables of their own schema', async () => {
    world.sql('postgres', 'CREATE DATABASE kennel_odd');
    world.sql(
      'kennel_odd',
      `CREATE TABLE public."a.b" (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now());
       INSERT INTO public."a.b" (id) VALUES (1), (2);
       CREATE SCHEMA "Odd Schema";
       CREATE TABLE "Odd Schema"."say ""hi""" (id int PRIMARY KEY, note text);
       INSERT INTO "Odd Schema"."say ""hi""" VALUES (1, E'two\\nlines');
       CREATE TABLE public.empty (x int);
       -- Joined with a dot, both are "x.y.z": two tables all the same.
       CREATE SCHEMA x; CREATE SCHEMA "x.y";
       CREATE TABLE x."y.z" (n int); INSERT INTO x."y.z" VALUES (1);
       CREATE TABLE "x.y".z (n int); INSERT INTO "x.y".z VALUES (1), (2), (3);
       -- The log table (EXCLUDED_TABLES: public.audit_logs), and a billing table of the same name that is not one.
       CREATE TABLE public.audit_logs (n int); INSERT INTO public.audit_logs VALUES (1), (2), (3), (4), (5);
       CREATE SCHEMA billing;
       CREATE TABLE billing.audit_logs (n int); INSERT INTO billing.audit_logs VALUES (1), (2);`,
    );
    try {
      const full = await runIn(world, { input: { database: 'kennel_odd' } });
      expect(full.record.status, full.record.cause).toBe('SUCCEEDED');
      const fullManifest = await world.catalog.readDatabaseManifest(
        runsOf(full.record)[0]?.plan.manifestKey ?? '',
      );
      const byName = (a: TableName, b: TableName) => qualifiedName(a).localeCompare(qualifiedName(b));
      expect(fullManifest.tables.toSorted(byName)).toEqual(
        [
          { schema: 'public', name: 'a.b', rows: 2 },
          { schema: 'Odd Schema', name: 'say "hi"', rows: 1 },
          { schema: 'public', name: 'empty', rows: 0 },
          { schema: 'x', name: 'y.z', rows: 1 },
          { schema: 'x.y', name: 'z', rows: 3 },
          { schema: 'billing', name: 'audit_logs', rows: 2 },
        ].toSorted(byName),
      );
      expect(fullManifest.verification.restoreTest?.state).toBe('passed');
      expect(fullManifest.verification.restoreTest?.detail).toBe(
        `6 tables, 9 rows match the dump; ${SAMPLE_DATABASE}`,
      );
      // The log table's definition is in the dump, its rows are not.
      const dump = zstdDecompressSync(await getBytes(world.s3, world.env.bucket, fullManifest.archive.key));
      expect(dump.toString('utf8')).toContain('CREATE TABLE public.audit_logs');
      expect(dump.toString('utf8')).not.toContain('COPY public.audit_logs');
      // It has no public.session_logs: the manifest, and so a restore, names only the log table it has.
      expect(fullManifest.excludedTables).toEqual([{ schema: 'public', name: 'audit_logs' }]);
      const restore = await runIn(world, {
        workflow: 'database-restore',
        input: { database: 'kennel_odd', targetDatabase: 'kennel_odd_restored', dryRun: true },
      });
      expect(restore.record.status, restore.record.cause).toBe('SUCCEEDED');
      const tables = JSON.stringify(restore.record.output);
      expect(tables).toContain('public.audit_logs');
      expect(tables).not.toContain('session_logs');
    } finally {
      world.sql('postgres', 'DROP DATABASE kennel_odd WITH (FORCE)');
    }
  });

  it('are a minimum for a table an extension owns, which CREATE EXTENSION fills before the restore', async () => {
    // As PostGIS does with spatial_ref_sys: the extension fills its table, the dump holds only the rows added later.
    const run = await runIn(world, {
      input: { database: 'kennel_prod' },
      beforeTask: async (state, input) => {
        if (state !== 'RestoreTest') return;
        const scratch = (input as { plan: { scratchDatabase: string } }).plan.scratchDatabase;
        world.sql(
          scratch,
          "CREATE EXTENSION hstore; ALTER EXTENSION hstore ADD TABLE kennel_sizes; INSERT INTO kennel_sizes VALUES ('XXL', 'added by the extension', 90)",
        );
      },
    });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const manifest = await world.catalog.readDatabaseManifest(runsOf(run.record)[0]?.plan.manifestKey ?? '');
    expect(manifest.verification.restoreTest?.state).toBe('passed');
  });
});

describe('the monthly dump, the long-term copy', () => {
  it("holds every table, the log tables' rows included, passes its restore test, and restores exactly", async () => {
    const tables: TableName[] = world
      .sql('kennel_prod', "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
      .split('\n')
      .map((name) => ({ schema: 'public', name }));
    expect(tables.map(qualifiedName)).toEqual(
      expect.arrayContaining(['public.audit_logs', 'public.session_logs']),
    );
    // Nothing writes to kennel_prod in these tests: the reference taken before the run is the data at the dump.
    const reference = tableChecksums(world, 'kennel_prod', tables);
    const sequences = world.sql(
      'kennel_prod',
      "SELECT string_agg(format('%I.%I=%s', schemaname, sequencename, last_value), ',' ORDER BY schemaname, sequencename) FROM pg_sequences",
    );

    const run = await runIn(world, { input: { kind: 'monthly' } });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const runs = runsOf(run.record);
    // The dump alone: no physical run, no WAL run.
    expect(runs.map((r) => ['engine' in r.plan ? 'physical' : r.plan.kind, r.status])).toEqual([
      ['monthly', 'succeeded'],
    ]);
    const manifest = await world.catalog.readDatabaseManifest(runs[0]?.plan.manifestKey ?? '');
    expect(manifest.kind).toBe('monthly');
    expect(manifest.archive.key).toMatch(/^database\/monthly\/local\/kennel_prod\/\d{4}\/\d{2}\/\d{2}\//);
    expect(manifest.excludedTables).toEqual([]);
    const logRows = Number(world.sql('kennel_prod', 'SELECT count(*) FROM audit_logs'));
    expect(logRows).toBeGreaterThan(0);
    expect(rowsOf(manifest, 'public', 'audit_logs')).toBe(logRows);
    expect(rowsOf(manifest, 'public', 'session_logs')).toBe(
      Number(world.sql('kennel_prod', 'SELECT count(*) FROM session_logs')),
    );
    // Its restore test counted the log tables too.
    expect(manifest.verification.restoreTest?.state).toBe('passed');
    expect(manifest.verification.restoreTest?.detail).toBe(
      `${manifest.tables.length} tables, ${manifest.tables.reduce((sum, t) => sum + t.rows, 0)} rows match the dump; ${SAMPLE_DATABASE}`,
    );
    expect(tableChecksums(world, 'kennel_prod', tables)).toEqual(reference);

    // Restored from the bytes in S3 into a new database: every table's content and every sequence as they were.
    const sql = zstdDecompressSync(await getBytes(world.s3, world.env.bucket, manifest.archive.key));
    world.sql('postgres', 'CREATE DATABASE kennel_monthly_check');
    try {
      psql(world.env.postgres, 'kennel_monthly_check', [], sql.toString('utf8'));
      expect(tableChecksums(world, 'kennel_monthly_check', tables)).toEqual(reference);
      expect(
        world.sql(
          'kennel_monthly_check',
          "SELECT string_agg(format('%I.%I=%s', schemaname, sequencename, last_value), ',' ORDER BY schemaname, sequencename) FROM pg_sequences",
        ),
      ).toBe(sequences);
    } finally {
      world.sql('postgres', 'DROP DATABASE kennel_monthly_check WITH (FORCE)');
    }
  });
});

describe('a database in docker compose', () => {
  it('runs every PostgreSQL tool through `docker compose -f FILE exec -T SERVICE`', async () => {
    // No Docker engine here: a stand-in `docker` checks the exact compose prefix,
    // records it, and runs the tool as the db container would.
    const bin = mkdtempSync(join(tmpdir(), 'kennel-backup-docker-'));
    const log = join(bin, 'calls.log');
    writeFileSync(
      join(bin, 'docker'),
      `#!/bin/bash
[[ $1 == compose && $2 == -f && $3 == /opt/kennel/docker-compose.prod.yml && $4 == exec && $5 == -T && $6 == db ]] || { echo "unexpected docker call: $*" >&2; exit 64; }
echo "\${*:7:1}" >>${JSON.stringify(log)}
exec "\${@:7}"
`,
      { mode: 0o755 },
    );
    const targets = JSON.parse(world.env.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
    // The logical dump's tools; without pgBackRest settings, the physical run is skipped.
    const { pgbackrest: _, ...local } = targets[0] ?? {};
    const docker = [
      {
        ...local,
        postgres: { mode: 'docker', composeFile: '/opt/kennel/docker-compose.prod.yml', service: 'db' },
      },
    ];
    try {
      const run = await runIn(world, {
        functionEnv: { BACKUP_TARGETS: JSON.stringify(docker) },
        hostEnv: { PATH: `${bin}:${world.env.hostEnv.PATH}` },
      });
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      const tools = readFileSync(log, 'utf8').trim().split('\n');
      // The dump's snapshot session and pg_dump; the restore test's name check, roles, CREATE DATABASE,
      // dump and settings; last, LocalPrune's listing of leftover databases, through compose as every other tool.
      expect(tools).toEqual(['psql', 'pg_dump', 'psql', 'psql', 'psql', 'psql', 'psql', 'psql']);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});

describe('several targets', () => {
  it('backs up the good target when another is unreachable, then fails naming the bad one', async () => {
    const [local] = JSON.parse(world.env.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
    // The branch office is another host: its physical backups are off (no pgBackRest settings).
    const { pgbackrest: _, ...branch } = local ?? {};
    const targets = [local, { ...branch, name: 'branch-office', instanceIds: ['i-0000000000000dead'] }];
    const run = await runIn(world, {
      // The dumps alone, as in the tests above: every target's run of one execution is the point.
      input: { database: 'kennel_prod' },
      functionEnv: { BACKUP_TARGETS: JSON.stringify(targets) },
      // The second "host" cannot reach its database.
      hostEnvByInstance: { 'i-0000000000000dead': { PGPORT: '1' } },
    });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('BackupRunsFailed');
    expect(run.record.cause).toContain('Backups failed for ["branch-office"]');
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]).toMatchObject({
      target: 'branch-office',
      state: 'CheckDump',
      error: 'HostCommandFailedError',
    });

    // The good target's dump (a pgBackRest run, were one planned, would end in RunSucceeded too).
    const good = run.record.events.find(
      (e) =>
        e.type === 'StateExited' &&
        e.state?.name === 'RunSucceeded' &&
        !('engine' in ((e.state.output as { plan?: object } | undefined)?.plan ?? {})),
    ) as { state: { output: { plan: { manifestKey: string; target: string } } } } | undefined;
    expect(good?.state.output.plan.target).toBe('local');
    const manifest = await world.catalog.readDatabaseManifest(good?.state.output.plan.manifestKey ?? '');
    expect(manifest.verification.state).toBe('verified');
    expect(manifest.verification.restoreTest?.state).toBe('passed');
    expect(await world.catalog.list('full', 'branch-office', 'kennel_prod')).toEqual([]);
    expect(scratchDatabases()).toEqual([]);
  });
});

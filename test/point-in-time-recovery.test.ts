import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostScript } from '../local/host.ts';
import { asServerUser } from '../local/postgres.ts';
import { scratchDirectoryOf } from '../shared/backup/physical-restore-test.ts';
import type { Leftover } from '../shared/catalog/leftovers.ts';
import { newestRecoveryRecord } from '../shared/catalog/recoveries.ts';
import { type Config, parseConfig, type Target } from '../shared/core/config.ts';
import { parseComment } from '../shared/host/commands.ts';
import { pgbackrestOf } from '../shared/host/pgbackrest-conf.ts';
import { renderHostCommand } from '../shared/host/scripts.ts';
import type { CleanupFacts, CleanupPlan } from '../shared/restore/cleanup.ts';
import { RESTORE_HOST_COMMANDS } from '../shared/restore/host-commands.ts';
import { POINT_IN_TIME_HOST_COMMANDS, type PointInTimePlan } from '../shared/restore/point-in-time.ts';
import { WATCH_HOST_COMMANDS } from '../shared/watch/host-commands.ts';
import { SWAP_COMMAND } from '../statemachines/staged-swap.ts';
import { databaseExists, databasesLike } from './support/checksums.ts';
import { type Contents, contents, lastValue } from './support/contents.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
import { archivedSegments, stanzaInfo } from './support/pgbackrest.ts';
import { expectNoSideCluster, guardsOf } from './support/side-cluster.ts';

/**
 * Point-in-time recovery from pgBackRest's repository, exact to the second, with
 * real PostgreSQL, pgBackRest, bash and the local S3, run by the real workflow.
 *
 * The database recovered (`pitr`) is LATIN1, runs in America/Los_Angeles (its
 * zone-less timestamp columns are local times), has ALTER DATABASE settings, a
 * table whose name has a dot, a table without a primary key, a partitioned table
 * whose rows move between partitions, foreign keys between its business tables
 * and from its log table to them, a sequence no column owns, and large objects.
 * pgbench and two writers of our own change it throughout, deleting rows too; a
 * transaction is held open from before the backup until after the target.
 *
 * The reference. recovery_target_time stops recovery before the first commit
 * whose commit time is after the target (recovery_target_inclusive, the
 * default, keeps a commit exactly at it): the recovered database holds exactly
 * the transactions that committed by then. A snapshot taken while writers commit
 * is not that set (a commit's timestamp is taken before it becomes visible, and
 * a snapshot is not a time), so the writers pause for a moment around the
 * target: a row is committed (`before`), the reference is taken, the target is
 * the next whole second once the clock has passed it, and the first commit after
 * it is another row (`after`); then the writers go on. Nothing commits between
 * `before` and `after` but the reference's own read-only queries (autovacuum may
 * commit there; it touches no table's content). The held transaction stays open
 * across the pause and commits after the target: its rows are in production, not
 * in the recovery. Sequences are not transactional, and PostgreSQL WAL-logs
 * nextval 32 values ahead (SEQ_LOG_VALS), so a recovery shows a sequence up to 32
 * past the primary: at the pause each sequence is pinned with setval to its own
 * value (WAL-logged exactly), and the markers use no sequence, so nothing logs a
 * sequence between the pin and the stop.
 */

let world: TestWorld;
let config: Config;
let target: Target;
const DATABASE = 'pitr';
const work = mkdtempSync(join(tmpdir(), 'kennel-backup-pitr-'));
/** The target second, and the database as it was then. */
let targetTime: string;
let reference: Contents;
/** Production once the writers stopped: what "latest" recovers. */
let final: Contents;
const RECOVERY_TIMEOUT = 600_000;

const q = (database: string, query: string) => world.sql(database, query);
const sql = (query: string) => q(DATABASE, query);

const SCHEMA = `
CREATE TABLE owners (id bigserial PRIMARY KEY, name text NOT NULL, note text);
CREATE TABLE pets (id bigserial PRIMARY KEY, owner_id bigint NOT NULL REFERENCES owners (id) ON DELETE CASCADE,
  name text NOT NULL, born timestamp without time zone NOT NULL DEFAULT localtimestamp);
CREATE TABLE audit_logs (id bigserial PRIMARY KEY, pet_id bigint REFERENCES pets (id) ON DELETE SET NULL,
  at timestamp without time zone NOT NULL DEFAULT localtimestamp, what text NOT NULL);
CREATE SEQUENCE invoice_numbers;
CREATE SEQUENCE stay_ids;
CREATE TABLE stays (id bigint NOT NULL, pet_id bigint, kennel text NOT NULL, since date NOT NULL) PARTITION BY LIST (kennel);
CREATE TABLE stays_north PARTITION OF stays FOR VALUES IN ('north');
CREATE TABLE stays_south PARTITION OF stays FOR VALUES IN ('south');
CREATE TABLE readings (pet_id bigint, grams int, at timestamp without time zone);
CREATE TABLE "kennel.rooms" (id int PRIMARY KEY, label text);
CREATE TABLE markers (name text PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO owners (name, note) SELECT 'Zoë ' || g, 'Müller ' || g FROM generate_series(1, 200) g;
INSERT INTO pets (owner_id, name) SELECT id, 'Pet ' || id FROM owners;
INSERT INTO audit_logs (pet_id, what) SELECT id, 'created' FROM pets;
INSERT INTO stays SELECT nextval('stay_ids'), id, CASE WHEN id % 2 = 0 THEN 'north' ELSE 'south' END, date '2026-01-01' + id::int FROM pets;
INSERT INTO readings SELECT id, 1000 + id::int, localtimestamp FROM pets;
INSERT INTO readings SELECT id, 1000 + id::int, localtimestamp FROM pets WHERE id < 20;
INSERT INTO "kennel.rooms" SELECT g, 'Room ' || g FROM generate_series(1, 30) g;
SELECT setval('invoice_numbers', 5000);
SELECT lo_from_bytea(0, convert_to('signed boarding contract', 'LATIN1'));
SELECT lo_from_bytea(0, decode(repeat('00ff7f80', 20000), 'hex'));
`;

/** Writer A: the business tables, with moves between partitions and updates of a table without a key. */
const WRITER_A = `
INSERT INTO owners (name, note) VALUES ('Åsa ' || nextval('invoice_numbers'), 'Straße');
INSERT INTO pets (owner_id, name) SELECT max(id), 'Puppy' FROM owners;
INSERT INTO audit_logs (pet_id, what) SELECT max(id), 'created' FROM pets;
INSERT INTO stays SELECT nextval('stay_ids'), max(id), 'north', current_date FROM pets;
UPDATE stays SET kennel = 'south' WHERE id = (SELECT min(id) FROM stays_north);
UPDATE readings SET grams = grams + 1 WHERE pet_id = (SELECT min(pet_id) FROM readings);
INSERT INTO readings SELECT max(id), 42, localtimestamp FROM pets;`;

/** Writer B: deletes (cascading to pets, nulling the log's references), large objects, the dotted table. */
const WRITER_B = `
DELETE FROM owners WHERE id = (SELECT id FROM owners ORDER BY id OFFSET 5 LIMIT 1);
INSERT INTO audit_logs (pet_id, what) SELECT min(id), 'visited' FROM pets;
SELECT lo_from_bytea(0, convert_to(md5(random()::text), 'LATIN1'));
SELECT lo_unlink(min(oid)) FROM pg_largeobject_metadata WHERE oid > (SELECT min(oid) + 1 FROM pg_largeobject_metadata);
UPDATE "kennel.rooms" SET label = label || '+' WHERE id = 1 + (SELECT count(*) FROM markers) % 30;`;

interface Writer {
  child: ChildProcess;
  pause: string;
  paused: string;
  stop: string;
}

/** A loop of one transaction after another, in bash and psql (never blocking this process's event loop), a tenth of a second apart: each is a new psql and connection. */
function startWriter(name: string, statements: string): Writer {
  const dir = mkdtempSync(join(work, `${name}-`));
  const writer = {
    pause: join(dir, 'pause'),
    paused: join(dir, 'paused'),
    stop: join(dir, 'stop'),
  };
  writeFileSync(join(dir, 'statements.sql'), statements);
  // It also ends when its directory is gone: a test run killed before its
  // clean-up removed the work directory leaves no writer looping for ever.
  const script = `
while [[ ! -e $STOP && -d $DIR ]]; do
  if [[ -e $PAUSE ]]; then touch "$PAUSED"; sleep 0.05; continue; fi
  rm -f "$PAUSED"
  psql -X -q -d ${DATABASE} -v ON_ERROR_STOP=1 -c "$(cat "$DIR/statements.sql")" >/dev/null 2>>"$DIR/errors" || true
  sleep 0.1
done`;
  const child = spawn('bash', ['-c', script], {
    env: {
      ...process.env,
      ...world.env.postgres.env,
      PATH: `${world.env.postgres.binDir}:${process.env.PATH}`,
      DIR: dir,
      PAUSE: writer.pause,
      PAUSED: writer.paused,
      STOP: writer.stop,
    },
    stdio: 'ignore',
  });
  return { child, ...writer };
}

/**
 * pgbench until stopped, at 20 transactions a second: unthrottled, its two
 * clients take the machine's two cores from the backup and the recoveries they
 * are meant to overlap (as in physical-backup.test.ts).
 */
function startPgbench(): ChildProcess {
  return spawn(
    join(world.env.postgres.binDir, 'pgbench'),
    ['-n', '-c', '2', '-R', '20', '-T', '3600', DATABASE],
    {
      env: { ...process.env, ...world.env.postgres.env },
      stdio: 'ignore',
    },
  );
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, probe: () => boolean, seconds = 60): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`Gave up waiting for ${what}.`);
    await sleep(50);
  }
}

/** The held transaction: a psql session fed on its stdin. */
function holdTransaction(): { child: ChildProcess; output: () => string } {
  const child = spawn(join(world.env.postgres.binDir, 'psql'), ['-X', '-q', '-A', '-t', '-d', DATABASE], {
    env: { ...process.env, ...world.env.postgres.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stdin?.write(
    "BEGIN;\nINSERT INTO owners (name, note) VALUES ('held open', 'across the backup');\nINSERT INTO readings VALUES (NULL, 7, localtimestamp);\nSELECT 'held-ready';\n",
  );
  return { child, output: () => out };
}

const production = (database: string) => contents(q, database);

async function recover(input: Record<string, unknown>, extra: Parameters<typeof runIn>[1] = {}) {
  return runIn(world, { workflow: 'point-in-time-recovery', input, ...extra });
}

const planOf = (output: unknown) => (output as { plan: PointInTimePlan }).plan;

/** Every process's pid, and one's command line (NULs as spaces): read from /proc. */
const pids = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p));
const cmdline = (pid: string) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');

/** What the daily verification's host command lists on this host (host_leftovers). */
async function hostLeftovers(): Promise<Leftover[]> {
  const script = renderHostCommand(config, target, WATCH_HOST_COMMANDS['check-local-copies'], {
    script: 'check-local-copies',
    plan: { target: target.name, runId: '20261130T020000Z_0123abcd', copies: [] },
  });
  const { code, stdout, stderr } = await runHostScript(world.env.hostEnv, script);
  expect(code, stderr).toBe(0);
  return (JSON.parse(/^KB-RESULT (.*)$/m.exec(stdout)?.[1] ?? '{}') as { leftovers: Leftover[] }).leftovers;
}

beforeAll(async () => {
  world = await startWorld();
  config = parseConfig(world.env.functionEnv);
  const [local] = config.BACKUP_TARGETS;
  if (!local) throw new Error('no local target');
  target = local;

  q(
    'postgres',
    `CREATE DATABASE ${DATABASE} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
  );
  q(
    'postgres',
    `ALTER DATABASE ${DATABASE} SET timezone TO 'America/Los_Angeles';
     ALTER DATABASE ${DATABASE} SET search_path TO public, "$user";
     ALTER DATABASE ${DATABASE} SET work_mem TO '7MB'`,
  );
  sql(SCHEMA);
  await new Promise<void>((resolve, reject) => {
    const init = spawn(join(world.env.postgres.binDir, 'pgbench'), ['-i', '-q', '-s', '1', DATABASE], {
      env: { ...process.env, ...world.env.postgres.env },
      stdio: 'ignore',
    });
    init.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`pgbench -i exited ${code}`))));
  });

  // Writes from before the backup until after the target.
  const held = holdTransaction();
  await until('the held transaction', () => held.output().includes('held-ready'));
  const writers = [startWriter('a', WRITER_A), startWriter('b', WRITER_B)];
  let pgbench = startPgbench();
  const backup = await runIn(world, { input: { kind: 'full' } });
  expect(backup.record.status, JSON.stringify(backup.alerts.map((a) => a.text))).toBe('SUCCEEDED');
  await sleep(4000);

  // The pause around the target (see above).
  await stopProcess(pgbench);
  for (const w of writers) writeFileSync(w.pause, '');
  await until('the writers to pause', () => writers.every((w) => existsSync(w.paused)));
  sql(`DO $$
    DECLARE s regclass; v bigint; c boolean;
    BEGIN
      FOR s IN SELECT oid FROM pg_class WHERE relkind = 'S' LOOP
        EXECUTE format('SELECT last_value, is_called FROM %s', s) INTO v, c;
        PERFORM setval(s, v, c);
      END LOOP;
    END $$`);
  sql("INSERT INTO markers (name) VALUES ('before')");
  reference = production(DATABASE);
  // The next whole second after the reference: every commit so far is before it.
  targetTime = q(
    'postgres',
    `SELECT to_char((date_trunc('second', clock_timestamp()) + interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`,
  );
  await until('the clock to pass the target', () => Date.now() > Date.parse(targetTime) + 200, 5);
  sql("INSERT INTO markers (name) VALUES ('after')");
  expect(Date.parse(sql("SELECT at FROM markers WHERE name = 'after'"))).toBeGreaterThan(
    Date.parse(targetTime),
  );
  expect(Date.parse(sql("SELECT at FROM markers WHERE name = 'before'"))).toBeLessThan(
    Date.parse(targetTime),
  );

  pgbench = startPgbench();
  for (const w of writers) rmSync(w.pause);
  await sleep(4000);
  held.child.stdin?.end('COMMIT;\n');
  await new Promise((resolve) => held.child.once('exit', resolve));
  await sleep(2000);
  await stopProcess(pgbench);
  for (const w of writers) writeFileSync(w.stop, '');
  await Promise.all(writers.map((w) => new Promise((resolve) => w.child.once('exit', resolve))));
  final = production(DATABASE);
}, RECOVERY_TIMEOUT);

afterAll(async () => {
  await world?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('point-in-time recovery from the WAL', () => {
  it(
    'recovers the database to the target second into a new database: every table, sequence, large object and setting as it was then',
    async () => {
      // The writes went on after the target: production differs from the reference.
      expect(final.tables).not.toEqual(reference.tables);
      expect(sql("SELECT count(*) FROM owners WHERE name = 'held open'")).toBe('1');

      const run = await recover({ database: DATABASE, targetTime, targetDatabase: 'pitr_recovered' });
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      expect(run.host.sent.map((s) => parseComment(s.comment)?.script)).toEqual([
        'point-in-time-restore',
        'database-swap',
      ]);

      const recovered = production('pitr_recovered');
      expect(recovered.tables).toEqual(reference.tables);
      expect(recovered.sequences).toEqual(reference.sequences);
      expect(recovered.largeObjects).toEqual(reference.largeObjects);
      expect(recovered.database).toEqual(reference.database);
      expect(recovered.database).toMatch(/^LATIN1 C C .*TimeZone=America\/Los_Angeles/);
      // Just before the target: there; just after: not; the held transaction committed after it: not.
      expect(q('pitr_recovered', "SELECT string_agg(name, ',' ORDER BY name) FROM markers")).toBe('before');
      expect(q('pitr_recovered', "SELECT count(*) FROM owners WHERE name = 'held open'")).toBe('0');
      expect(Number(q('pitr_recovered', 'SELECT count(*) FROM stays_south'))).toBeGreaterThan(0);

      const output = run.record.output as { stoppedBefore: string; measuredRateKey: string; summary: string };
      expect(output.stoppedBefore).toMatch(/^recovery stopping before commit of transaction \d+, time /);
      expect(output.summary).toContain(`pitr_recovered on local recovered to ${targetTime}`);
      const rate = await newestRecoveryRecord(world.catalog, 'local');
      expect(rate?.key).toBe(output.measuredRateKey);
      expect(rate?.record.secondsPerGB).toBeGreaterThan(0);
      expect(databasesLike(world, 'kb_restoring')).toEqual([]);
      expectNoSideCluster(target);
    },
    RECOVERY_TIMEOUT,
  );

  it(
    'recovers "latest": everything committed, the held transaction too',
    async () => {
      // An unlogged table: in no WAL and no backup, so empty after any recovery, and named.
      sql(`CREATE UNLOGGED TABLE cart_sessions (id int);
           INSERT INTO cart_sessions SELECT generate_series(1, 100)`);
      const run = await recover({ database: DATABASE, targetTime: 'latest', targetDatabase: 'pitr_latest' });
      sql('DROP TABLE cart_sessions');
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      expect(q('pitr_latest', 'SELECT count(*) FROM cart_sessions')).toBe('0');
      const output = run.record.output as { unlogged: unknown; summary: string };
      expect(output.unlogged).toEqual({
        relations: [[DATABASE, 'public', 'cart_sessions', 'table']],
        count: 1,
      });
      expect(output.summary).toContain('back empty, whatever the target: table public.cart_sessions');
      const latest = production('pitr_latest');
      const { [JSON.stringify(['public', 'cart_sessions'])]: cart, ...tables } = latest.tables;
      expect(cart).toMatch(/^0:/);
      expect(tables).toEqual(final.tables);
      // Sequences come back at most 32 past the primary: WAL-logged ahead, and none was pinned at the end.
      for (const [name, value] of Object.entries(final.sequences)) {
        const got = lastValue(latest.sequences[name]);
        expect(got, name).toBeGreaterThanOrEqual(lastValue(value));
        expect(got, name).toBeLessThanOrEqual(lastValue(value) + 32);
      }
      expect(latest.largeObjects).toEqual(final.largeObjects);
      expect(q('pitr_latest', "SELECT count(*) FROM owners WHERE name = 'held open'")).toBe('1');
      expect(q('pitr_latest', "SELECT string_agg(name, ',' ORDER BY name) FROM markers")).toBe(
        'after,before',
      );
      expectNoSideCluster(target);
    },
    RECOVERY_TIMEOUT,
  );

  it('a dry run names the backup set, the WAL range, the measured rate and what would be replaced, and changes nothing', async () => {
    const run = await recover({
      database: DATABASE,
      targetTime,
      targetDatabase: DATABASE,
      confirm: DATABASE,
      dryRun: true,
    });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(run.host.sent).toEqual([]);
    const plan = planOf(run.record.output);
    expect(plan.base.label).toMatch(/^\d{8}-\d{6}F$/);
    expect(plan.wal.from).toMatch(/^[0-9A-F]{24}$/);
    expect(plan.wal.to).toMatch(/^[0-9A-F]{24}$/);
    expect(plan.wal.to && plan.wal.to >= plan.wal.from).toBe(true);
    expect(plan.wal.timeline).toBe(Number.parseInt(plan.wal.to?.slice(0, 8) ?? '', 16));
    expect(plan.wal.timelineReason).toContain("production's timeline at the target time");
    expect(plan.expected.seconds).toEqual(expect.any(Number));
    expect(plan.expected.note).toContain('s per GB, measured by the point-in-time-recovery');
    expect(plan.replaces).toContain(`${DATABASE} on local: the application is stopped for the swap only`);
    expect(plan.replaces).toContain(
      `tables of ${DATABASE} that its recovery to ${targetTime} lacks (created since) are not restored: their rows stay only in ${plan.replacedDatabase} and the safety dump`,
    );
  });

  it(
    'into a database that exists, or of a database neither the backup set nor production has: the dry run says what the host checks, and the run refuses before restoring anything',
    async () => {
      q('postgres', 'CREATE DATABASE pitr_existing');
      const dry = await recover({
        database: DATABASE,
        targetTime,
        targetDatabase: 'pitr_existing',
        dryRun: true,
      });
      expect(dry.record.status, dry.record.cause).toBe('SUCCEEDED');
      const { replaces, base } = planOf(dry.record.output);
      expect(replaces).toContain('nothing, if pitr_existing does not exist on local: it is created there');
      expect(replaces).toContain('refuses an existing pitr_existing before restoring anything');
      expect(replaces).toContain(
        `${DATABASE} must have existed at ${targetTime}. The run refuses a name that is neither in the backup set ${base.label} nor on local now before restoring anything`,
      );
      for (const [input, message] of [
        [
          { database: DATABASE, targetDatabase: 'pitr_existing' },
          'the database pitr_existing already exists',
        ],
        [
          { database: 'nosuch', targetDatabase: 'pitr_nosuch' },
          `the database nosuch is neither in the backup set ${base.label} nor on local now`,
        ],
      ] as const) {
        const run = await recover({ ...input, targetTime });
        expect(run.record.status).toBe('FAILED');
        expect(run.record.cause).toContain(message);
        expect(run.record.cause).toContain('Nothing was changed');
        // Refused in the script's first phase, before pgBackRest restored anything.
        expect(run.record.cause).toMatch(/point-in-time-restore to [^(]+ \(prepare\): /);
      }
      expect(q('pitr_existing', "SELECT count(*) FROM pg_class WHERE relname = 'owners'")).toBe('0');
      expect(databaseExists(world, 'pitr_nosuch')).toBe(false);
      q('postgres', 'DROP DATABASE pitr_existing');
      expectNoSideCluster(target);
    },
    RECOVERY_TIMEOUT,
  );

  it.each([
    ['a target in the future', { targetTime: '2099-01-01T00:00:00Z' }, 'is in the future (now is'],
    [
      'a target without a zone',
      { targetTime: '2026-11-30T10:00:00' },
      'has no zone, so it could be any zone',
    ],
    [
      'a target before the oldest recoverable point',
      { targetTime: '2020-01-01T00:00:00Z' },
      'is before the oldest recoverable point',
    ],
    [
      'over production without confirm',
      { targetTime: 'latest', targetDatabase: DATABASE },
      `add "confirm": "${DATABASE}"`,
    ],
    [
      '"latest" over production, confirmed: the writes during the side restore would be lost',
      { targetTime: 'latest', targetDatabase: DATABASE, confirm: DATABASE },
      'would lose what the application commits while the recovery runs',
    ],
    [
      '"latest" over production in a dry run too',
      { targetTime: 'latest', targetDatabase: DATABASE, confirm: DATABASE, dryRun: true },
      'recover beside production',
    ],
    [
      'the whole cluster without confirm',
      { targetTime: 'latest', scope: 'cluster', database: undefined, targetDatabase: undefined },
      'add "confirm": "local"',
    ],
    [
      'the whole cluster with a confirm that does not match',
      {
        targetTime: 'latest',
        scope: 'cluster',
        database: undefined,
        targetDatabase: undefined,
        confirm: 'locl',
      },
      `"confirm" does not match: it must be exactly the target's name, local (it was "locl")`,
    ],
  ])('refuses %s, sending nothing to the host', async (_what, change, message) => {
    const input = JSON.parse(
      JSON.stringify({ database: DATABASE, targetDatabase: 'pitr_refused', ...change }),
    );
    const run = await recover(input);
    expect(run.record.status).toBe('FAILED');
    expect(run.record.cause).toContain(message);
    expect(run.record.cause).toMatch(/[Nn]othing was (changed|started)/);
    expect(run.host.sent).toEqual([]);
    expect(databaseExists(world, 'pitr_refused')).toBe(false);
  });

  it(
    'over production: the staged swap, the application stopped only for it, a safety dump first, the replaced database kept',
    async () => {
      // A table created after the target: the recovery lacks it, and the summary says so.
      sql('CREATE TABLE grooming_notes AS SELECT g AS id FROM generate_series(1, 50) g');
      const run = await recover({
        database: DATABASE,
        targetTime,
        targetDatabase: DATABASE,
        confirm: DATABASE,
      });
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      expect(run.host.sent.map((s) => parseComment(s.comment)?.script)).toEqual([
        'point-in-time-restore',
        'application-stop',
        'database-backup',
        'database-swap',
        'application-start',
        'prune-local',
      ]);
      const now = production(DATABASE);
      expect(now.tables).toEqual(reference.tables);
      expect(now.sequences).toEqual(reference.sequences);
      expect(now.largeObjects).toEqual(reference.largeObjects);
      const [replaced] = databasesLike(world, 'kb_replaced');
      expect(replaced).toBeDefined();
      const { [JSON.stringify(['public', 'grooming_notes'])]: notes, ...kept } = production(
        replaced as string,
      ).tables;
      expect(kept).toEqual(final.tables);
      expect(notes).toMatch(/^50:/);
      const { warnings, summary } = run.record.output as { warnings: string[]; summary: string };
      const warning = `Not in the restore, though the replaced database had them (1 table, 50 rows): public.grooming_notes (50 rows). Their rows are only in ${replaced}`;
      expect(warnings).toEqual(expect.arrayContaining([expect.stringContaining(warning)]));
      expect(summary).toContain(`Warning: ${warning}`);
      expect(readFileSync(world.env.paths.applicationState, 'utf8').trim()).toBe('running');
    },
    RECOVERY_TIMEOUT,
  );

  it(
    'a recovery stopped on the host (SIGTERM, as a cancel or timeout) leaves no side cluster, scratch directory or process',
    async () => {
      const hold = join(work, 'hold');
      const plan = planOf(
        (
          await recover({
            database: DATABASE,
            targetTime,
            targetDatabase: 'pitr_cancelled',
            dryRun: true,
          })
        ).record.output,
      );
      const command = POINT_IN_TIME_HOST_COMMANDS['point-in-time-restore'];
      const file = join(work, 'point-in-time-restore.sh');
      writeFileSync(
        file,
        renderHostCommand(config, target, command, { script: 'point-in-time-restore', plan }),
      );
      const child = spawn('bash', [file], {
        env: { ...world.env.hostEnv, KB_TEST_HOLD_FILE: hold },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (d) => {
        stderr += d;
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      await until(
        'the side cluster to be up',
        () => existsSync(hold) && readFileSync(hold, 'utf8').endsWith('\n'),
        300,
      );
      const [socket = ''] = readFileSync(hold, 'utf8').split(' ');
      expect(existsSync(socket)).toBe(true);
      // It runs: a postmaster in the scratch area.
      expect(readdirSync(join(scratchDirectoryOf(target), `point-in-time-${target.name}`))).toHaveLength(1);
      process.kill(-(child.pid as number), 'SIGTERM');
      expect(await exited).toBe(143);
      expect(stderr).toContain('stopped by a signal');
      rmSync(hold, { force: true });
      expectNoSideCluster(target, socket);
      expect(databaseExists(world, 'pitr_cancelled')).toBe(false);
      expect(databasesLike(world, 'kb_restoring')).toEqual([]);
    },
    RECOVERY_TIMEOUT,
  );

  it(
    'a recovery aborted while its side cluster runs (SIGKILL, as the agent cancels; its guard killed too): the daily verification lists the side cluster, and the clean-up stops and removes it and the work directory, and says so',
    async () => {
      const hold = join(work, 'hold-abort');
      const area = join(scratchDirectoryOf(target), `point-in-time-${target.name}`);
      const stop = new AbortController();
      let runId = '';
      const found: { running: string[]; listed: Leftover[] } = { running: [], listed: [] };
      const running = recover(
        { database: DATABASE, targetTime: 'latest', targetDatabase: 'pitr_aborted' },
        {
          signal: stop.signal,
          hostEnv: { KB_TEST_HOLD_FILE: hold },
          // What the killed run left, as its clean-up meets it.
          beforeTask: async (state) => {
            if (state !== SWAP_COMMAND.cleanUp.start) return;
            found.running = pids().filter((pid) => {
              try {
                return cmdline(pid).includes(join(area, runId));
              } catch {
                return false;
              }
            });
            found.listed = await hostLeftovers();
          },
        },
      );
      await until(
        'the side cluster to be up',
        () => existsSync(hold) && readFileSync(hold, 'utf8').endsWith('\n'),
        300,
      );
      const [socket = ''] = readFileSync(hold, 'utf8').split(' ');
      [runId = ''] = readdirSync(area);
      // A running recovery's side cluster is no leftover.
      expect((await hostLeftovers()).filter((l) => l.where === 'side')).toEqual([]);
      // The guard (host/side-cluster.sh) would remove it once the script is killed: killed first, so that the clean-up alone must.
      const guards = guardsOf(hold);
      expect(guards).toHaveLength(1);
      for (const pid of guards) process.kill(pid, 'SIGKILL');
      stop.abort();
      const run = await running;
      rmSync(hold, { force: true });

      expect(run.record.status).toBe('ABORTED');
      expect(found.running.length).toBeGreaterThan(0);
      expect(found.listed).toContainEqual(
        expect.objectContaining({ where: 'side', name: join(area, runId) }),
      );
      expect(found.listed).toContainEqual(
        expect.objectContaining({
          where: 'work',
          name: expect.stringContaining(join(world.env.paths.hostTmp, `kennel-backup.${runId}.`)),
        }),
      );
      const [cleanup] = run.record.started;
      expect(cleanup).toMatchObject({ workflow: 'restore-cleanup', status: 'SUCCEEDED' });
      const text = run.alerts.at(-1)?.text ?? '';
      expect(text).toContain('restore-cleanup SUCCEEDED');
      expect(text).toContain('pitr_aborted was not created.');
      expect(text).toContain(
        `The recovery's side cluster (a restored copy of the cluster, point-in-time-local/${runId} under the target's scratch directory) was left running: the clean-up stopped it and removed its directories.`,
      );
      expect(text).toContain('Its work directories on the host (1) were left, and are removed.');
      // And so it is: no postgres of the run, no directory, no socket directory, no work directory, no database.
      expectNoSideCluster(target, socket);
      expect(readdirSync(world.env.paths.hostTmp).filter((n) => n.startsWith('kennel-backup.'))).toEqual([]);
      expect(databasesLike(world, 'kb_restoring')).toEqual([]);
      expect(databaseExists(world, 'pitr_aborted')).toBe(false);
    },
    RECOVERY_TIMEOUT,
  );

  it('refuses a target past a gap in the WAL, naming the missing segment and the latest recoverable time before it', async () => {
    const plan = planOf(
      (await recover({ database: DATABASE, targetTime, targetDatabase: 'pitr_gap', dryRun: true })).record
        .output,
    );
    const { archive } = await stanzaInfo(world);
    const id = archive.at(-1)?.id ?? '';
    // The segment after the last one archived before the target: without it, the target is out of reach.
    const segments = (await archivedSegments(world, id)).filter((s) => s.name >= plan.wal.from);
    const i = segments.findLastIndex((s) => s.lastModified.getTime() < Date.parse(targetTime));
    const [before, lost] = [segments[i], segments[i + 1]];
    if (!lost || !before) throw new Error('too few segments archived after the backup');
    const bytes = await getBytes(world.s3, world.env.bucket, lost.key);
    await world.s3.send(new DeleteObjectCommand({ Bucket: world.env.bucket, Key: lost.key }));
    try {
      const run = await recover({ database: DATABASE, targetTime, targetDatabase: 'pitr_gap' });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.cause).toContain(`segment ${lost.name}`);
      expect(run.record.cause).toContain(
        `The latest recoverable time before the gap is ${new Date(Math.floor(before.lastModified.getTime() / 1000) * 1000).toISOString()} (when ${before.name} was archived)`,
      );
      expect(run.record.cause).toContain('Nothing was changed');
      expect(run.host.sent).toEqual([]);
    } finally {
      await putBytes(world.s3, world.env.bucket, lost.key, bytes);
    }
  });

  it(
    'a whole-cluster recovery aborted while pgBackRest restores over the data directory: PostgreSQL stays stopped (no pg_control: it cannot start on it), and the clean-up says so and how to finish',
    async () => {
      const { dataDirectory, configFile } = pgbackrestOf(target);
      const control = join(dataDirectory, 'global', 'pg_control');
      const stop = new AbortController();
      const running = recover({ scope: 'cluster', targetTime, confirm: 'local' }, { signal: stop.signal });
      await until('the restore over the data directory to begin', () => !existsSync(control), 300);
      // Frozen midway (SIGSTOP), so that the cancel's SIGKILL finds it there however fast it restores.
      const restoring = pids().filter((pid) => {
        try {
          const line = cmdline(pid);
          return line.includes(`--config=${configFile}`) && line.includes(' restore');
        } catch {
          return false;
        }
      });
      expect(restoring.length).toBeGreaterThan(0);
      for (const pid of restoring) process.kill(Number(pid), 'SIGSTOP');
      stop.abort();
      const run = await running;

      expect(run.record.status).toBe('ABORTED');
      // Something is left to do by hand: the clean-up fails, and its alert says what.
      const [cleanup] = run.record.started;
      expect(cleanup).toMatchObject({ workflow: 'restore-cleanup', status: 'FAILED' });
      const text = run.alerts.at(-1)?.text ?? '';
      expect(text).toContain('restore-cleanup FAILED');
      expect(text).toContain(
        'Database: PostgreSQL of local is stopped: the restore over its data directory was cut short, and pgBackRest removes pg_control until a restore has finished, so PostgreSQL cannot start on it (and must not).',
      );
      expect(text).toContain(
        `To finish the recovery, start point-in-time-recovery again with {"scope": "cluster", "targetTime": "${targetTime}", "confirm": "local"}`,
      );
      // As said: nothing runs on the data directory, and nothing can.
      expect(existsSync(join(dataDirectory, 'postmaster.pid'))).toBe(false);
      expect(existsSync(control)).toBe(false);
    },
    RECOVERY_TIMEOUT,
  );

  it(
    'recovers the whole cluster in place to the target and starts a full backup: run again as the clean-up above says, over the data directory the aborted one cut short',
    async () => {
      const started: { workflow: string; input: unknown }[] = [];
      const run = await recover(
        { scope: 'cluster', targetTime, confirm: 'local' },
        {
          startExecution: async (request) => {
            started.push(request);
          },
        },
      );
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      expect(run.host.sent.map((s) => parseComment(s.comment)?.script)).toEqual(['point-in-time-restore']);
      expect(started).toEqual([{ workflow: 'database-backup', input: { kind: 'full' } }]);
      expect((run.record.output as { stoppedBefore: string }).stoppedBefore).toMatch(
        /^recovery stopping before commit of transaction \d+, time /,
      );
      const now = production(DATABASE);
      expect(now.tables).toEqual(reference.tables);
      expect(now.sequences).toEqual(reference.sequences);
      // The databases created after the target are gone with everything else written since.
      expect(databaseExists(world, 'pitr_recovered')).toBe(false);
      expect(q('postgres', 'SELECT pg_is_in_recovery()')).toBe('f');
      expect(Number(q('postgres', 'SELECT timeline_id FROM pg_control_checkpoint()'))).toBeGreaterThan(1);
    },
    RECOVERY_TIMEOUT,
  );

  it('the clean-up of a whole-cluster recovery stopped once it had stopped PostgreSQL (before pgBackRest touched the data directory) starts it again as it ran', async () => {
    const { dataDirectory } = pgbackrestOf(target);
    // What the recovery's `pg_ctl stop` leaves, killed or not: the server shut down, its data directory whole.
    // Not blocking: the server archives its last WAL through the local S3 in this process as it stops.
    const [cmd, args] = asServerUser(join(world.env.postgres.binDir, 'pg_ctl'), [
      'stop',
      '-D',
      dataDirectory,
      '-m',
      'fast',
      '-w',
    ]);
    await promisify(execFile)(cmd, args);
    const plan: CleanupPlan = {
      target: target.name,
      runId: '20261130T030000Z_0c1a5700',
      database: null,
      overProduction: false,
      targetDatabase: null,
      stagingDatabase: 'kb_restoring_20261130t030000z_0c1a5700',
      replacedDatabase: 'kb_replaced_20261130t030000z_0c1a5700',
      recovery: 'cluster',
      failedAt: 'WaitForClusterRecovery',
      startApplication: false,
      safetyDump: null,
    };
    const script = renderHostCommand(config, target, RESTORE_HOST_COMMANDS['restore-cleanup'], {
      script: 'restore-cleanup',
      plan,
    });
    const { code, stdout, stderr } = await runHostScript(world.env.hostEnv, script);
    expect(code, stderr).toBe(0);
    const facts = JSON.parse(/^KB-RESULT (.*)$/m.exec(stdout)?.[1] ?? '{}') as CleanupFacts;
    expect(facts.cluster).toEqual({
      state: 'running',
      started: true,
      restored: false,
      timeline: expect.any(Number),
    });
    // With the options it ran with (its port and socket directory): the world's own connection reaches it.
    expect(q('postgres', 'SELECT pg_is_in_recovery()')).toBe('f');
  });
});

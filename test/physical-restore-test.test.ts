import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql } from '../local/environment.ts';
import {
  countsDigest,
  PHYSICAL_RESTORE_TEST_HOST_COMMANDS,
  type PhysicalRestoreTestOutcome,
  type PhysicalRestoreTestResult,
  physicalRestoreTestResultSchema,
  recordPhysicalRestoreTestRun,
  scratchDirectoryOf,
} from '../shared/backup/physical-restore-test.ts';
import { type Config, type PgbackrestTarget, parseConfig, type Target } from '../shared/core/config.ts';
import { RestoreTestFailedError } from '../shared/core/errors.ts';
import { type CommandState, checkHostCommand } from '../shared/host/command-stage.ts';
import { executionRef } from '../shared/host/commands.ts';
import { pgbackrestOf, pgbackrestPath } from '../shared/host/pgbackrest-conf.ts';
import { renderScript } from '../shared/host/shell.ts';
import { type Contents, contents, ident } from './support/contents.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
import type { Finished } from './support/process.ts';

/**
 * The restore test of a pgBackRest backup set, host/physical-restore-test.sh, run
 * with real bash against real backups in the local S3 of the local cluster. The
 * fidelity check holds the script's own scratch instance (KB_TEST_HOLD_FILE) and
 * compares it with a reference taken before the backup.
 */

let world: TestWorld;
let config: Config;
let target: Target;
let pg: PgbackrestTarget;
let area: string;
let fullSet: string;
let reference: Record<string, Contents>;
/**
 * Each restore runs a few seconds alone; the suite's other files share the two
 * cores, so a test of one or two restores gets room beyond the default 90 s.
 */
const RESTORES_TIMEOUT = 300_000;
const work = mkdtempSync(join(tmpdir(), 'kennel-backup-physical-restore-test-'));

const DATABASES = ['kennel_prod', 'kennel "archive"', 'kennel_latin1'];

/** An unlogged table of kennel_prod with 100 rows, which no physical backup holds. */
const CART = JSON.stringify(['public', 'cart_sessions']);
const withoutCart = (tables: Record<string, string>) =>
  Object.fromEntries(Object.entries(tables).filter(([k]) => k !== CART));

const production = (database: string, query: string) =>
  psql(world.env.postgres, database, ['-A', '-t', '-c', query]).trim();

/** pgBackRest as the server user, asynchronously (the local S3 may answer from this process's children). */
async function pgbackrest(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(
    'runuser',
    ['-u', pg.osUser, '--', 'pgbackrest', `--config=${pg.configFile}`, `--stanza=${target.name}`, ...args],
    { cwd: tmpdir(), env: world.env.hostEnv, encoding: 'utf8' },
  );
  return stdout;
}

async function backup(type: 'full' | 'incr'): Promise<string> {
  await pgbackrest('backup', `--type=${type}`, '--start-fast');
  const info = JSON.parse(await pgbackrest('info', '--output=json')) as { backup: { label: string }[] }[];
  return info[0]?.backup.at(-1)?.label ?? '';
}

interface Running {
  child: ChildProcess;
  done: Promise<Finished>;
  /** The rendered script's file: its guard runs from it too. */
  file: string;
}

/** Runs the rendered script as Run Command would: from a file, in its own process group, in the host's environment. */
function start(
  set: string,
  extra: Record<string, string> = {},
  env: Record<string, string> = {},
  on: Target = target,
): Running {
  const command = PHYSICAL_RESTORE_TEST_HOST_COMMANDS['physical-restore-test'];
  const request = {
    script: 'physical-restore-test' as const,
    plan: { target: on.name, runId: '20260101T000000Z_00000000' },
    set,
  };
  const file = join(mkdtempSync(join(work, 'cmd-')), '_script.sh');
  writeFileSync(file, renderScript(command.script, { ...command.params(config, on, request), ...extra }));
  const child = spawn('bash', [file], {
    env: { ...world.env.hostEnv, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<Finished>((resolve) => {
    child.on('close', (code, signal) =>
      resolve({ code: code ?? (signal === 'SIGKILL' ? 137 : -1), stdout, stderr }),
    );
  });
  return { child, done, file };
}

/**
 * The script's guard: the process running the same file as the leader of a
 * process group of its own (the script's forks, a moment before they exec, share
 * the script's group).
 */
function guardOf(running: Running): number {
  const pids = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p) && Number(p) !== running.child.pid)
    .filter((p) => {
      try {
        const group = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.split(' ')[2];
        return group === p && readFileSync(`/proc/${p}/cmdline`, 'utf8') === `bash\0${running.file}\0`;
      } catch {
        return false;
      }
    });
  expect(pids).toHaveLength(1);
  return Number(pids[0]);
}

/** Waits (without blocking the event loop, 60 s at most) until no scratch directory or process is left. */
async function nothingLeftSoon(): Promise<void> {
  for (let i = 0; i < 300 && (leftovers().length > 0 || scratchProcesses().length > 0); i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  expectNothingLeft();
}

function resultOf(finished: Finished): PhysicalRestoreTestResult {
  const line = /^KB-RESULT (.*)$/m.exec(finished.stdout)?.[1];
  expect(line, finished.stderr).toBeDefined();
  return physicalRestoreTestResultSchema.parse(JSON.parse(line ?? ''));
}

/** Waits (without blocking the event loop) until the held script has written where its instance listens. */
async function held(file: string, running: Running): Promise<{ socket: string; port: string; user: string }> {
  let exited = false;
  void running.done.then(() => {
    exited = true;
  });
  for (let i = 0; i < 600 && !exited; i += 1) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (text.endsWith('\n')) {
      const [socket = '', port = '', user = ''] = text.trim().split(' ');
      return { socket, port, user };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const finished = await running.done;
  throw new Error(`the script ended before holding its instance:\n${finished.stdout}\n${finished.stderr}`);
}

/** Every process (but zombies) working in the scratch area: by its directory or its command line. */
function scratchProcesses(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cwd.startsWith(area) || cmdline.includes(area)) found.push(`${pid} ${cmdline}`);
    } catch {
      // Gone, or a kernel thread.
    }
  }
  return found;
}

const PLAN = { target: 'local', runId: '20261130T020000Z_0123abcd', startedAt: '2026-11-30T02:00:00.000Z' };

/**
 * RecordPhysicalRestoreTest on what a run of the script printed, as the workflow
 * hands it over: the real check stage reads the output, and its error (a failed
 * command) is caught as Step Functions records a Lambda's.
 */
async function record(set: string, finished: Finished): Promise<PhysicalRestoreTestOutcome> {
  const sent: CommandState = {
    script: 'physical-restore-test',
    hostScript: 'physical-restore-test',
    target: 'local',
    commandId: 'cmd-1',
    instanceId: 'i-00000000000000000',
    deadline: '2099-01-01T00:00:00.000Z',
    status: 'InProgress',
    sentAt: new Date(Date.now() - 30_000).toISOString(),
  };
  const host = {
    send: async () => ({ commandId: 'cmd-1', instanceId: null }),
    get: async () => ({
      status: finished.code === 0 ? ('Success' as const) : ('Failed' as const),
      instanceId: 'i-00000000000000000',
      stdout: finished.stdout,
      stderr: finished.stderr,
    }),
  };
  let state: Record<string, unknown> = { plan: PLAN, physicalRestoreTestCommand: sent };
  try {
    state = { ...state, physicalRestoreTestCommand: await checkHostCommand(host, { command: sent }) };
  } catch (error) {
    const { name, message } = error as Error;
    const Cause = JSON.stringify({ errorType: name, errorMessage: message });
    state = { ...state, failed: { CheckPhysicalRestoreTest: { Error: name, Cause } } };
  }
  return recordPhysicalRestoreTestRun(world.catalog, { set, state });
}

async function report(key: string): Promise<Record<string, unknown>> {
  return JSON.parse((await getBytes(world.s3, world.env.bucket, key)).toString('utf8'));
}

/** No scratch directory, and no process working in one. */
function expectNothingLeft(): void {
  expect(leftovers()).toEqual([]);
  expect(scratchProcesses()).toEqual([]);
}

const leftovers = () => (existsSync(area) ? readdirSync(area) : []);

beforeAll(async () => {
  world = await startWorld();
  config = parseConfig(world.env.functionEnv);
  const [local] = config.BACKUP_TARGETS;
  if (!local) throw new Error('no local target');
  target = local;
  pg = pgbackrestOf(target);
  area = join(scratchDirectoryOf(target), target.name);

  // What a restore must carry besides the sample schema: names with dots and quotes
  // (kept as pairs), TOASTed values, a partitioned table, an inheritance parent
  // with its own rows, a materialized view, sequences, a second database.
  production(
    'kennel_prod',
    `CREATE SCHEMA "Odd.Schema";
     CREATE TABLE "Odd.Schema"."a.b ""c""" (id serial PRIMARY KEY, big text);
     INSERT INTO "Odd.Schema"."a.b ""c""" (big)
       SELECT (SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, 300) g WHERE g > i - i) FROM generate_series(1, 40) i;
     CREATE TABLE stays (id int, at date) PARTITION BY RANGE (at);
     CREATE TABLE stays_2025 PARTITION OF stays FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
     CREATE TABLE stays_2026 PARTITION OF stays FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
     INSERT INTO stays SELECT i, date '2025-06-01' + i FROM generate_series(1, 400) i;
     CREATE TABLE notes (id int, note text);
     CREATE TABLE vet_notes (vet text) INHERITS (notes);
     INSERT INTO notes VALUES (1, 'parent row');
     INSERT INTO vet_notes VALUES (2, 'child row', 'dr who'), (3, 'child row', 'dr no');
     CREATE MATERIALIZED VIEW pets_per_species AS SELECT species, count(*) FROM pets GROUP BY species;
     CREATE SEQUENCE loose_seq; SELECT setval('loose_seq', 4242);
     SELECT lo_from_bytea(0, convert_to('signed boarding contract', 'UTF8'));
     SELECT lo_from_bytea(0, decode(repeat('00ff7f80', 50000), 'hex'));
     ALTER DATABASE kennel_prod SET statement_timeout = '5min';
     CREATE UNLOGGED TABLE cart_sessions (id int, token text);
     INSERT INTO cart_sessions SELECT i, md5(i::text) FROM generate_series(1, 100) i;`,
  );
  // A database in LATIN1, with text outside ASCII: the bytes come back as they were.
  production(
    'postgres',
    "CREATE DATABASE kennel_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
  );
  production(
    'kennel_latin1',
    "CREATE TABLE owners (id int PRIMARY KEY, name text); INSERT INTO owners VALUES (1, 'Zoë Müller'), (2, 'Ångström')",
  );
  production('postgres', `CREATE DATABASE ${ident('kennel "archive"')}`);
  production(
    'kennel "archive"',
    'CREATE TABLE ledger (id bigserial, amount numeric); INSERT INTO ledger (amount) SELECT i FROM generate_series(1, 250) i',
  );

  reference = Object.fromEntries(DATABASES.map((d) => [d, contents(production, d)]));
  fullSet = await backup('full');
  // After the backup: a restore to its consistent point must not hold this.
  production('kennel_prod', "INSERT INTO kennel_sizes VALUES ('ZZ', 'written after the backup', 10)");
}, RESTORES_TIMEOUT);

afterAll(async () => {
  await world?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('the restore test of a pgBackRest backup set', () => {
  it(
    // One restore serves both: sweeping what a killed run left, then the run's own checks.
    'removes what a run and its guard killed with SIGKILL left (as a reboot would) and names it; then restores, recovers and checks the set: its scratch instance matches the reference taken before the backup, and is removed',
    async () => {
      const killedHold = join(work, 'hold-kill');
      const killed = start(fullSet, { KB_TEST_HOLD_FILE: killedHold });
      await held(killedHold, killed);
      process.kill(guardOf(killed), 'SIGKILL');
      process.kill(-(killed.child.pid ?? 0), 'SIGKILL');
      await killed.done;
      rmSync(killedHold, { force: true });
      // No trap and no guard: the postmaster (its own session) and the directory stay.
      expect(leftovers()).toEqual([fullSet]);
      expect(scratchProcesses().some((p) => p.includes('postgres'))).toBe(true);

      const hold = join(work, 'hold');
      const running = start(fullSet, { KB_TEST_HOLD_FILE: hold });
      const scratch = await held(hold, running);
      const inScratch = (database: string, query: string) =>
        psql(
          {
            ...world.env.postgres,
            host: scratch.socket,
            port: Number(scratch.port),
            user: scratch.user,
            env: {},
          },
          `dbname='${database.replace(/['\\]/g, (c) => `\\${c}`)}'`,
          ['-h', scratch.socket, '-p', scratch.port, '-U', scratch.user, '-A', '-t', '-c', query],
        ).trim();
      try {
        // An unlogged table comes back empty from any physical backup (no WAL, not in the set): the rest as it was.
        const restored = contents(inScratch, 'kennel_prod');
        expect(restored.tables[CART]).toMatch(/^0:/);
        const wanted = reference.kennel_prod as Contents;
        expect({ ...restored, tables: withoutCart(restored.tables) }).toEqual({
          ...wanted,
          tables: withoutCart(wanted.tables),
        });
        for (const database of DATABASES.filter((d) => d !== 'kennel_prod'))
          expect(contents(inScratch, database), database).toEqual(reference[database]);
        // Its own instance: promoted, archiving nothing, listening on no TCP address.
        expect(
          inScratch(
            'postgres',
            "SELECT pg_is_in_recovery(), current_setting('archive_mode'), current_setting('listen_addresses')",
          ),
        ).toBe('f|off|');
        expect(Number(scratch.port)).not.toBe(pg.port);
      } finally {
        rmSync(hold, { force: true });
      }
      const finished = await running.done;
      expect(finished.code, finished.stderr).toBe(0);
      expect(finished.stderr).toContain('removed what an interrupted restore test left');
      const result = resultOf(finished);

      expect(result).toMatchObject({
        set: fullSet,
        state: 'passed',
        amcheck: 'passed',
        countsListed: true,
        swept: [join(area, fullSet)],
        // Counted (0 rows) like the others, and named.
        unlogged: [['kennel_prod', 'public', 'cart_sessions', 'table']],
        unloggedCount: 1,
      });
      const expected = Object.fromEntries(
        DATABASES.map((d) => [
          d,
          Object.fromEntries(
            Object.entries(reference[d]?.tables ?? {}).map(([k, v]) => [
              k,
              k === CART ? 0 : Number(v.split(':')[0]),
            ]),
          ),
        ]),
      );
      for (const database of DATABASES) {
        const listed = result.databases.find((d) => d.name === database);
        const counts = Object.fromEntries(
          (listed?.counts ?? []).map(([s, t, n]) => [JSON.stringify([s, t]), n]),
        );
        expect(counts, database).toEqual(expected[database]);
      }
      expect(result.databases.find((d) => d.name === 'kennel_prod')?.counts).toContainEqual([
        'Odd.Schema',
        'a.b "c"',
        40,
      ]);
      // FROM ONLY: the inheritance parent's own row, the partitioned parent not at all.
      expect(result.databases.find((d) => d.name === 'kennel_prod')?.counts).toContainEqual([
        'public',
        'notes',
        1,
      ]);
      expect(result.countsDigest).toBe(
        countsDigest(result.databases.map((d) => ({ name: d.name, counts: d.counts ?? [] }))),
      );
      expect(result.databases.map((d) => d.name)).toEqual([
        'kennel "archive"',
        'kennel_latin1',
        'kennel_prod',
        'postgres',
        'template1',
      ]);

      expectNothingLeft();
      // The promoted scratch instance pushed nothing: no timeline history in the repository.
      const prefix = `${pgbackrestPath(target.name).slice(1)}/archive/`;
      const listed = await world.s3.send(
        new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: prefix }),
      );
      const keys = (listed.Contents ?? []).map((o) => o.Key ?? '');
      expect(keys.some((k) => k.endsWith('.history'))).toBe(false);
      expect(keys.some((k) => /\/00000002[0-9A-F]{16}/.test(k))).toBe(false);

      // RecordPhysicalRestoreTest: the outcome for the backup's record, every count in the report.
      const outcome = await record(fullSet, finished);
      expect(outcome).toMatchObject({
        state: 'passed',
        set: fullSet,
        failedIn: null,
        amcheck: 'passed',
        tables: result.tables,
        rows: result.rows,
        countsDigest: result.countsDigest,
        seconds: result.seconds.total,
        reportKey: `reports/restore-tests/pgbackrest/local/2026/11/30/${PLAN.runId}.json`,
      });
      expect(outcome.detail).toContain(`${result.tables} tables, ${result.rows} rows read in full`);
      expect(outcome.detail).toContain(
        'back empty, whatever the target: table public.cart_sessions (kennel_prod)',
      );
      expect(await report(outcome.reportKey)).toMatchObject({ state: 'passed', result });
    },
    RESTORES_TIMEOUT,
  );

  it(
    'stopped by SIGTERM mid-test, stops its instance and removes its scratch directory',
    async () => {
      const hold = join(work, 'hold-term');
      const running = start(fullSet, { KB_TEST_HOLD_FILE: hold });
      await held(hold, running);
      expect(leftovers()).toEqual([fullSet]);
      expect(scratchProcesses()).not.toEqual([]);
      // As the local host and SSM stop a command: its whole process group.
      process.kill(-(running.child.pid ?? 0), 'SIGTERM');
      const finished = await running.done;
      rmSync(hold, { force: true });
      expect(finished.code).toBe(143);
      expect(finished.stderr).toContain(
        `physical-restore-test of ${fullSet} (read): stopped by a signal (exit 143)`,
      );
      expectNothingLeft();
    },
    RESTORES_TIMEOUT,
  );

  it(
    'killed with SIGKILL, as the SSM agent stops a cancelled or timed-out command: its guard stops the instance and removes the scratch directory',
    async () => {
      const hold = join(work, 'hold-cancel');
      const killed = start(fullSet, { KB_TEST_HOLD_FILE: hold });
      await held(hold, killed);
      guardOf(killed);
      // The agent's cancel: SIGKILL to the command's whole process group; no trap runs.
      process.kill(-(killed.child.pid ?? 0), 'SIGKILL');
      const finished = await killed.done;
      rmSync(hold, { force: true });
      expect(finished.code).toBe(137);
      await nothingLeftSoon();
    },
    RESTORES_TIMEOUT,
  );

  it(
    // Before the tests below damage the repository: the incremental run must reach its restore test.
    'an execution aborted during it: the host command is cancelled (SIGKILL, as the agent does); the guard leaves no scratch directory or postgres process; the alert names the execution and the stage',
    async () => {
      const hold = join(work, 'hold-abort');
      const controller = new AbortController();
      let sawInstance = false;
      const run = await runIn(world, {
        input: { kind: 'incremental' },
        // The test holds the checked instance, so the command is surely still running when the abort comes.
        hostEnv: { KB_TEST_HOLD_FILE: hold },
        beforeTask: async (state) => {
          if (state !== 'CheckPhysicalRestoreTest' || controller.signal.aborted) return;
          // Abort once the scratch postmaster runs: recovering, or just recovered.
          for (let i = 0; i < 600 && !sawInstance; i += 1) {
            sawInstance = scratchProcesses().some((p) => p.includes('postgres'));
            if (!sawInstance) await new Promise((resolve) => setTimeout(resolve, 100));
          }
          controller.abort();
        },
        signal: controller.signal,
      });
      rmSync(hold, { force: true });
      expect(sawInstance).toBe(true);
      expect(run.record.status, run.record.cause).toBe('ABORTED');
      const sent = run.host.sent.map((s) => s.comment);
      const testComment = sent.find((c) => c.includes(' physical-restore-test '));
      expect(testComment).toBe(
        `kennel-backup ${executionRef(run.record.executionArn)} physical-restore-test ${run.record.executionArn.split(':').at(-1)}`.slice(
          0,
          100,
        ),
      );
      // The cancel stage found the command by its Comment and cancelled it: the agent's status.
      const alert = run.alerts.find((a) => a.error === 'HostCommandsCancelled');
      expect(alert?.state).toBe('physical-restore-test');
      expect(alert?.text).toContain(run.record.executionArn);
      expect(alert?.text).toContain('database-backup ABORTED, host commands cancelled');
      const commandId = /physical-restore-test \(command ([0-9a-f-]{36})/.exec(alert?.text ?? '')?.[1] ?? '';
      expect((await run.host.get(commandId, null)).status).toBe('Cancelled');
      expect(run.alerts.filter((a) => a.error === 'HostCommandsCancelled')).toHaveLength(1);
      await nothingLeftSoon();
    },
    RESTORES_TIMEOUT,
  );

  it(
    'fails clearly when the scratch filesystem lacks room for the backup, before restoring anything',
    async () => {
      const bin = mkdtempSync(join(work, 'bin-'));
      writeFileSync(
        join(bin, 'df'),
        '#!/bin/bash\necho "Filesystem 1-blocks Used Available Capacity Mounted on"\necho "/dev/full 1000000 999000 1000 100% /"\n',
        { mode: 0o755 },
      );
      const finished = await start(fullSet, {}, { PATH: `${bin}:${world.env.hostEnv.PATH}` }).done;
      expect(finished.code).toBe(1);
      expect(finished.stderr).toMatch(
        new RegExp(
          `physical-restore-test of ${fullSet} \\(prepare\\): needs \\d+ bytes free in ${area} .*and its filesystem has 1000; free space there or set pgbackrest.scratchDirectory`,
        ),
      );
      expect(finished.stdout).not.toContain('restoring');
      expect(leftovers()).toEqual([]);
    },
    RESTORES_TIMEOUT,
  );

  let incremental = '';

  it(
    'fails when pg_amcheck finds an index corrupt in a backup pgBackRest took intact, and leaves nothing behind',
    async () => {
      // Corruption pgBackRest cannot see (the cluster has no data checksums): an index
      // page overwritten on disk after a checkpoint, so the backup copies it as it is.
      production(
        'kennel_prod',
        'CREATE TABLE amcheck_target (id int PRIMARY KEY); INSERT INTO amcheck_target SELECT generate_series(1, 2000); CHECKPOINT',
      );
      const file = join(
        pg.dataDirectory,
        production('kennel_prod', "SELECT pg_relation_filepath('amcheck_target_pkey')"),
      );
      const bytes = readFileSync(file);
      bytes.fill(0x7f, 8192 + 4096, 8192 * 2 - 16);
      writeFileSync(file, bytes);
      production('kennel_prod', "UPDATE customers SET notes = 'changed for the incremental'");
      incremental = await backup('incr');

      const finished = await start(incremental).done;
      expect(finished.code).toBe(1);
      expect(finished.stderr).toContain('amcheck_target_pkey');
      expect(finished.stderr).toContain(
        `physical-restore-test of ${incremental} (amcheck): pg_amcheck found corruption or could not check the restored cluster`,
      );
      expect(finished.stdout).not.toContain('KB-RESULT');
      expectNothingLeft();

      // Recorded as failed in amcheck, then the stage throws: the backup is the base of nothing.
      const failure = await record(incremental, finished).catch((error: Error) => error);
      expect(failure).toBeInstanceOf(RestoreTestFailedError);
      expect((failure as Error).message).toContain(
        `${incremental} failed its restore test in the amcheck phase`,
      );
      expect((failure as Error).message).toContain(`pgbackrest expire --set=${incremental}`);
      const kept = await report(`reports/restore-tests/pgbackrest/local/2026/11/30/${PLAN.runId}.json`);
      expect(kept).toMatchObject({
        state: 'failed',
        set: incremental,
        failedIn: 'amcheck',
        amcheck: 'failed',
        tables: null,
      });
      expect(kept.seconds).toBeGreaterThanOrEqual(30);
      expect(JSON.stringify(kept.failure)).toContain('amcheck_target_pkey');
    },
    RESTORES_TIMEOUT,
  );

  it(
    'fails on a damaged file of the backup, and leaves no scratch directory or process',
    async () => {
      const prefix = `${pgbackrestPath(target.name).slice(1)}/backup/${target.name}/${incremental}/pg_data/base/`;
      const listed = await world.s3.send(
        new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: prefix }),
      );
      const largest = (listed.Contents ?? []).sort((a, b) => (b.Size ?? 0) - (a.Size ?? 0))[0]?.Key ?? '';
      expect(largest).not.toBe('');
      await putBytes(world.s3, world.env.bucket, largest, Buffer.alloc(4096, 0x5a));

      // pgBackRest retries a failed file after 0 and 15 s by default; once is enough here.
      const finished = await start(incremental, {}, { PGBACKREST_JOB_RETRY: '0' }).done;
      expect(finished.code).toBe(1);
      expect(finished.stderr).toMatch(/ERROR: \[\d+\]: .*zst error/);
      expect(finished.stderr).toContain(
        `physical-restore-test of ${incremental} (restore): pgbackrest restore failed`,
      );
      expect(finished.stdout).not.toContain('KB-RESULT');
      await expect(record(incremental, finished)).rejects.toThrow(
        /failed its restore test in the restore phase/,
      );
      expect(
        await report(`reports/restore-tests/pgbackrest/local/2026/11/30/${PLAN.runId}.json`),
      ).toMatchObject({
        failedIn: 'restore',
        amcheck: 'not run',
      });
      expectNothingLeft();
    },
    RESTORES_TIMEOUT,
  );

  it(
    'runs pgBackRest, the scratch instance and its checks inside the database service for a docker target',
    async () => {
      // No Docker engine here: a stand-in `docker` checks the exact compose call, records
      // the user and tool, and runs the tool as the db container would, with the
      // container's PATH; on the host's PATH the PostgreSQL tools and pgBackRest fail.
      const bin = mkdtempSync(join(work, 'docker-'));
      const log = join(bin, 'calls.log');
      writeFileSync(
        join(bin, 'docker'),
        `#!/bin/bash
[[ $1 == compose && $2 == -f && $3 == /opt/kennel/docker-compose.prod.yml && $4 == exec && $5 == -T ]] || { echo "unexpected docker call: $*" >&2; exit 64; }
shift 5
user=''
if [[ $1 == -u ]]; then user=$2; shift 2; fi
[[ $1 == db ]] || { echo "unexpected service: $1" >&2; exit 64; }
shift
echo "\${user:-root} \${1##*/}" >>${JSON.stringify(log)}
export PATH=${JSON.stringify(world.env.hostEnv.PATH)}
if [[ -n $user ]]; then exec runuser -u "$user" -- "$@"; else exec "$@"; fi
`,
        { mode: 0o755 },
      );
      const hostOnly = mkdtempSync(join(work, 'host-only-'));
      for (const tool of ['pgbackrest', 'psql', 'pg_ctl', 'pg_amcheck', 'pg_isready', 'postgres']) {
        writeFileSync(
          join(hostOnly, tool),
          `#!/bin/bash\necho "${tool} ran on the host, not in the container" >&2\nexit 97\n`,
          {
            mode: 0o755,
          },
        );
      }
      const docker: Target = {
        ...target,
        postgres: { mode: 'docker', composeFile: '/opt/kennel/docker-compose.prod.yml', service: 'db' },
      };
      const finished = await start(fullSet, {}, { PATH: `${bin}:${hostOnly}:/usr/bin:/bin` }, docker).done;
      expect(finished.code, finished.stderr).toBe(0);
      // The sample schema's tables, the ones added above, and the unlogged cart_sessions;
      // the run before it left nothing, so this one sweeps nothing.
      expect(resultOf(finished)).toMatchObject({
        state: 'passed',
        amcheck: 'passed',
        tables: 18,
        unloggedCount: 1,
        swept: [],
      });
      const calls = new Set(readFileSync(log, 'utf8').trim().split('\n'));
      expect([...calls].sort()).toEqual([
        'postgres bash',
        'postgres env',
        // The restored set's pg_tblspc and production's tablespaces, compared (side-cluster.sh side_new_tablespaces).
        'postgres ls',
        'postgres pg_ctl',
        'postgres pg_isready',
        'postgres pgbackrest',
        'postgres touch',
        'root bash',
        'root chown',
        'root df',
        'root mkdir',
        'root psql',
        'root sha256sum',
        'root test',
      ]);
      expectNothingLeft();
    },
    RESTORES_TIMEOUT,
  );
});

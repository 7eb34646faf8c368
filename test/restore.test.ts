import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecutionRecord } from '../local/runner.ts';
import { restoreTestPlanOf } from '../shared/backup/database-plan.ts';
import { BACKUP_HOST_COMMANDS } from '../shared/backup/host-commands.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { parseConfig } from '../shared/core/config.ts';
import { qualifiedName } from '../shared/core/identifiers.ts';
import { parseComment } from '../shared/host/commands.ts';
import { renderHostCommand } from '../shared/host/scripts.ts';
import { planRestore } from '../shared/restore/database-plan.ts';
import type { RestorePlan } from '../shared/restore/database-schemas.ts';
import { RESTORE_HOST_COMMANDS } from '../shared/restore/host-commands.ts';
import { planDrill } from '../shared/watch/drill.ts';
import { SWAP_COMMAND } from '../statemachines/staged-swap.ts';
import { databaseExists, databasesLike, tableChecksums } from './support/checksums.ts';
import { putBytes, runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { pastBackup } from './support/manifests.ts';
import { runProcess } from './support/process.ts';

let world: TestWorld;
/** The full backup every test restores, and each table's content when it was taken. */
let verified: DatabaseManifest;
let atBackup: Record<string, string>;
let tables: DatabaseManifest['tables'];

beforeAll(async () => {
  world = await startWorld();
  // Every restore here is of the logical dump: naming the database plans the dump
  // alone, without the pgBackRest backup and its restore test a full would add.
  const run = await runIn(world, { input: { kind: 'full', database: 'kennel_prod' } });
  verified = await world.catalog.readDatabaseManifest(runsOf(run.record)[0]?.plan.manifestKey ?? '');
  tables = verified.tables;
  atBackup = tableChecksums(world, 'kennel_prod', tables);
});
afterAll(async () => {
  await world?.stop();
});

/** Changes and deletes rows of production after the backup, as a bad deploy would. */
function damageProduction() {
  world.sql(
    'kennel_prod',
    `UPDATE payments SET amount = amount + 1 WHERE id <= 20;
     DELETE FROM invoices WHERE id <= 5;
     UPDATE bookings SET notes = 'overwritten' WHERE id <= 50;
     INSERT INTO kennel_sizes (code, description, max_weight_kg) VALUES ('XXXL', 'Giant', 120) ON CONFLICT DO NOTHING`,
  );
}

const restore = (input: unknown, extra: Parameters<typeof runIn>[1] = {}) =>
  runIn(world, { workflow: 'database-restore', input, ...extra });

/** The host scripts' work directories (common.sh work_dir) left in the host's TMPDIR: all, or one run's. */
const workDirs = (runId = '') =>
  readdirSync(world.env.paths.hostTmp).filter((name) => name.startsWith(`kennel-backup.${runId}`));

/** A checksum of every row a query gives (as tableChecksums takes of a table). */
const checksumOf = (database: string, query: string) =>
  world.sql(
    database,
    `SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM (${query}) t`,
  );

/** The manifest key a backup execution's run wrote. */
const manifestKeyOf = (record: ExecutionRecord) =>
  JSON.stringify(record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';

const stagesOf = (output: unknown) => (output as { stages: { stage: string; seconds: number }[] }).stages;

describe('the database-restore workflow', () => {
  it('round trip: restores into a new database whose every table equals the backup, and records how', async () => {
    damageProduction();
    const run = await restore({ database: 'kennel_prod', targetDatabase: 'kennel_restored' });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');

    expect(tableChecksums(world, 'kennel_restored', tables)).toEqual(atBackup);
    expect(tableChecksums(world, 'kennel_prod', tables)).not.toEqual(atBackup);
    expect(databasesLike(world, 'kb_')).toEqual([]);

    const output = run.record.output as Record<string, unknown>;
    expect(output).toMatchObject({
      restored: 'kennel_restored',
      from: [{ kind: 'full', key: verified.archive.key, window: verified.window }],
      replacedDatabase: null,
      safetyDump: null,
      applicationDownSeconds: null,
      readFrom: 'host',
    });
    expect(output.summary).toContain(`Read from: the host's own copy of ${verified.archive.key}`);
    expect(output.checks).toContain(
      `all ${tables.length} tables of the dump are present with exactly the row counts of the full dump (${verified.tables.reduce((sum, t) => sum + t.rows, 0)} rows); a full dump leaves out the rows of ${verified.excludedTables.map(qualifiedName).join('; ')} by design`,
    );
    // The log tables' rows are not in the daily full: the record says so, and where they are.
    expect(output.rows).toEqual([
      'public.audit_logs: empty (0 rows): the daily full leaves its rows out; they are in kennel_prod itself, and in a point-in-time recovery (the point-in-time-recovery workflow) within the point-in-time window',
      'public.session_logs: empty (0 rows): the daily full leaves its rows out; they are in kennel_prod itself, and in a point-in-time recovery (the point-in-time-recovery workflow) within the point-in-time window',
      ...tables.map((t) => `${qualifiedName(t)}: ${t.rows} rows from the backup`),
    ]);
    expect(world.sql('kennel_restored', 'SELECT count(*) FROM audit_logs')).toBe('0');
    expect(stagesOf(output).map((s) => s.stage)).toEqual([
      'restore into staging',
      'check row counts',
      'swap into place',
    ]);
    for (const s of stagesOf(output)) expect(s.seconds).toBeGreaterThanOrEqual(0);
    expect(run.host.sent.map((s) => parseComment(s.comment)?.script)).toEqual([
      'database-restore',
      'database-swap',
    ]);
    // The summary alert is the operator's record in Slack.
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]?.text).toContain('kennel_restored restored on local from a backup of kennel_prod');
    expect(run.visibleText).not.toContain(world.env.postgres.password);
  });

  it('over production: stops the application, keeps a safety dump and the old database, carries the log tables over, swaps, starts it again', async () => {
    // Production goes on after the backup: new log rows, and a new customer's session,
    // which the restore (of the day before) takes the customer of away.
    world.sql(
      'kennel_prod',
      `INSERT INTO audit_logs (actor, action, entity, entity_id) VALUES ('staff:ann', 'refund', 'payments', 7);
       WITH c AS (INSERT INTO customers (first_name, last_name, email) VALUES ('Nia', 'Late', 'nia@example.com') RETURNING id)
       INSERT INTO session_logs (customer_id, ip) SELECT id, '192.0.2.7' FROM c`,
    );
    // A table created after the backup: the restore lacks it, and the summary says where its rows are.
    world.sql('kennel_prod', 'CREATE TABLE grooming_notes AS SELECT g AS id FROM generate_series(1, 50) g');
    const orphan = world.sql('kennel_prod', 'SELECT max(id) FROM session_logs');
    const logRows = {
      audit: world.sql('kennel_prod', 'SELECT count(*) FROM audit_logs'),
      sessions: world.sql('kennel_prod', 'SELECT count(*) FROM session_logs'),
    };
    // The new customer's session as the restore must leave it: its customer is not in the backup.
    const logTables = [
      'SELECT * FROM audit_logs',
      `SELECT id, CASE WHEN id = ${orphan} THEN NULL ELSE customer_id END, staff_user, ip, user_agent, created_at FROM session_logs`,
    ];
    const logsBefore = logTables.map((q) => checksumOf('kennel_prod', q));
    const sequencesBefore = world.sql('kennel_prod', 'SELECT last_value FROM audit_logs_id_seq');
    const beforeRestore = tableChecksums(world, 'kennel_prod', tables);
    // A safety dump from an earlier restore, past its 30 days: this restore prunes it.
    const old = pastBackup({ daysAgo: 40, now: new Date(), kind: 'safety', target: 'local' });
    await putBytes(world.s3, world.env.bucket, old.archive.key, 'old safety dump');
    await world.catalog.writeManifest(old);
    const run = await restore({
      database: 'kennel_prod',
      targetDatabase: 'kennel_prod',
      confirm: 'kennel_prod',
    });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(tableChecksums(world, 'kennel_prod', tables)).toEqual(atBackup);
    // The log tables hold exactly what production held, and their ids go on from there.
    expect(logTables.map((q) => checksumOf('kennel_prod', q))).toEqual(logsBefore);
    expect(
      world.sql('kennel_prod', `SELECT customer_id IS NULL FROM session_logs WHERE id = ${orphan}`),
    ).toBe('t');
    expect(world.sql('kennel_prod', 'SELECT last_value FROM audit_logs_id_seq')).toBe(sequencesBefore);
    world.sql(
      'kennel_prod',
      "INSERT INTO audit_logs (actor, action, entity) VALUES ('staff:ann', 'login', 'staff')",
    );

    const output = run.record.output as {
      replacedDatabase: string;
      safetyDump: string;
      applicationDownSeconds: number;
    };
    expect(tableChecksums(world, output.replacedDatabase, tables)).toEqual(beforeRestore);
    expect(databaseExists(world, 'kennel_prod')).toBe(true);
    expect(world.sql('kennel_prod', "SELECT to_regclass('grooming_notes') IS NULL")).toBe('t');
    expect(world.sql(output.replacedDatabase, 'SELECT count(*) FROM grooming_notes')).toBe('50');
    const notRestored = `Not in the restore, though the replaced database had them (1 table, 50 rows): public.grooming_notes (50 rows). Their rows are only in ${output.replacedDatabase} and the safety dump ${output.safetyDump};`;
    expect((output as unknown as { warnings: string[] }).warnings).toEqual([
      expect.stringContaining(notRestored),
    ]);
    expect(run.alerts[0]?.text).toContain(notRestored);
    const safety = await world.catalog.readDatabaseManifest(`${output.safetyDump}.manifest.json`);
    expect(safety).toMatchObject({ kind: 'safety', database: 'kennel_prod', excludedTables: [] });
    expect(safety.verification.state).toBe('verified');
    expect(safety.tables).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ schema: 'public', name: 'audit_logs' }),
        expect.objectContaining({ schema: 'public', name: 'session_logs' }),
      ]),
    );

    expect(run.host.sent.map((s) => parseComment(s.comment)?.script)).toEqual([
      'database-restore',
      'application-stop',
      'database-backup',
      'carry-log-rows',
      'database-swap',
      'application-start',
      'prune-local',
    ]);
    expect(readFileSync(world.env.paths.applicationState, 'utf8').trim()).toBe('running');
    expect(output.applicationDownSeconds).toBeGreaterThan(0);
    expect(await world.catalog.manifestKeys('safety', 'local', 'kennel_prod')).toEqual([
      `${output.safetyDump}.manifest.json`,
    ]);
    expect((output as unknown as { rows: string[] }).rows).toEqual(
      expect.arrayContaining([
        `public.audit_logs: ${logRows.audit} rows carried over from the replaced database`,
        `public.session_logs: ${logRows.sessions} rows carried over from the replaced database (1 referring to rows the backup does not have, their reference set to NULL (ON DELETE SET NULL))`,
        `public.pets: ${tables.find((t) => t.name === 'pets')?.rows} rows from the backup`,
      ]),
    );
    expect(run.alerts[0]?.text).toContain(
      `public.audit_logs: ${logRows.audit} rows carried over from the replaced database`,
    );
    expect(stagesOf(output).map((s) => s.stage)).toEqual([
      'restore into staging',
      'check row counts',
      'stop application',
      'safety dump',
      'verify safety dump',
      'carry log rows over',
      'swap into place',
      'start application',
      'prune old safety dumps',
    ]);
    world.sql('postgres', `DROP DATABASE ${output.replacedDatabase}`);
  });

  it('a failure after the application stopped, before the swap: starts it again, says the database was not replaced, and names the safety dump without offering it (production is newer)', async () => {
    damageProduction();
    const beforeRestore = tableChecksums(world, 'kennel_prod', tables);
    const run = await restore(
      { database: 'kennel_prod', targetDatabase: 'kennel_prod', confirm: 'kennel_prod' },
      {
        // The staging database vanishes just before the swap (an operator's DROP, a full disk).
        beforeTask: async (state, input) => {
          if (state === 'StartSwap') {
            const { plan } = input as { plan: { stagingDatabase: string } };
            world.sql('postgres', `DROP DATABASE ${plan.stagingDatabase}`);
          }
        },
      },
    );
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('HostCommandFailedError');
    expect(readFileSync(world.env.paths.applicationState, 'utf8').trim()).toBe('running');
    expect(run.host.sent.map((s) => parseComment(s.comment)?.script)).toEqual([
      'database-restore',
      'application-stop',
      'database-backup',
      'carry-log-rows',
      'database-swap',
      'application-start',
      'restore-cleanup',
    ]);
    expect(tableChecksums(world, 'kennel_prod', tables)).toEqual(beforeRestore);

    expect(run.alerts).toHaveLength(1);
    const alert = run.alerts[0]?.text ?? '';
    expect(alert).toContain('State: CheckSwap');
    expect(alert).toContain('The application was stopped for the restore and has been started again.');
    expect(alert).toMatch(
      /The safety dump database\/safety\/local\/kennel_prod\/\S+ \(verified\) holds kennel_prod as it was when the application stopped; kennel_prod was not replaced, so nothing needs it: do not restore it/,
    );
    expect(alert).not.toContain('"backup":');
    const safetyRunId = /kennel_prod_safety_(\d{8}T\d{6}Z_[0-9a-f]{8})\.sql/.exec(alert)?.[1];
    expect(safetyRunId).toBeDefined();

    // The dump it names is whole: it brings back the state from before the restore.
    const back = await restore({
      database: 'kennel_prod',
      targetDatabase: 'kennel_before',
      backup: safetyRunId,
    });
    expect(back.record.status, back.record.cause).toBe('SUCCEEDED');
    expect(tableChecksums(world, 'kennel_before', tables)).toEqual(beforeRestore);
  });
});

describe('a restore stopped midway leaves nothing stopped or half-done', () => {
  /** The host's copy of a dump: whole, or still being written. */
  const copiesOf = (run: { localDir: string; fileName: string }) => {
    const path = `${run.localDir}/${run.fileName}`;
    return [path, `${path}.partial`];
  };
  const overProduction = { database: 'kennel_prod', targetDatabase: 'kennel_prod', confirm: 'kennel_prod' };

  it("aborted after the application stopped: its commands are cancelled, the application runs again, the staging database and the killed dump's work directory are gone, and the alert says what is left", async () => {
    const before = tableChecksums(world, 'kennel_prod', tables);
    const stop = new AbortController();
    let plan: RestorePlan | undefined;
    let atAbort: { application: string; staging: string[] } | undefined;
    let copyBeforeCleanUp: boolean | undefined;
    let workBeforeCleanUp: string[] = [];
    const run = await restore(overProduction, {
      signal: stop.signal,
      beforeTask: async (state, input) => {
        if (state === SWAP_COMMAND.applicationStop.start) plan = (input as { plan: RestorePlan }).plan;
        // In the clean-up: whether the stopped dump had begun its host copy, and the work directory it left (killed, it ran no trap).
        if (state === SWAP_COMMAND.cleanUp.start && plan?.safetyDump) {
          copyBeforeCleanUp = copiesOf(plan.safetyDump).some(existsSync);
          workBeforeCleanUp = workDirs(plan.safetyDump.runId);
        }
        if (state !== 'CheckSafetyDump' || stop.signal.aborted || !plan?.safetyDump) return;
        // Once the dump has begun its copy on the host: what a stopped dump leaves.
        const { safetyDump } = plan;
        for (let i = 0; i < 200 && !copiesOf(safetyDump).some(existsSync); i += 1)
          await new Promise((r) => setTimeout(r, 25));
        atAbort = {
          application: readFileSync(world.env.paths.applicationState, 'utf8').trim(),
          staging: databasesLike(world, 'kb_restoring_'),
        };
        stop.abort();
      },
    });
    expect(run.record.status, run.record.cause).toBe('ABORTED');
    if (!plan?.safetyDump) throw new Error('the restore did not reach its safety dump');
    expect(atAbort).toEqual({ application: 'stopped', staging: [plan.stagingDatabase] });
    expect(copyBeforeCleanUp).toBe(true);
    expect(workBeforeCleanUp).toHaveLength(1);
    const [cleanup] = run.record.started;
    expect(cleanup).toMatchObject({ workflow: 'restore-cleanup', status: 'SUCCEEDED' });

    // What is really left: the application running, no staging database, production as it was.
    expect(readFileSync(world.env.paths.applicationState, 'utf8').trim()).toBe('running');
    expect(databasesLike(world, 'kb_')).toEqual([]);
    expect(tableChecksums(world, 'kennel_prod', tables)).toEqual(before);
    expect(copiesOf(plan.safetyDump).filter(existsSync)).toEqual([]);
    expect(workDirs()).toEqual([]);
    // Its run lock is given back, as its own end states would have.
    expect(await world.catalog.listKeys('locks/')).toEqual([]);
    const inS3 = (await world.catalog.listKeys(plan.safetyDump.archiveKey)).includes(
      plan.safetyDump.archiveKey,
    );

    // One alert, the clean-up's, and every claim in it is true.
    expect(run.alerts.map((a) => a.error)).toEqual(['Succeeded']);
    const text = run.alerts[0]?.text ?? '';
    expect(text).toContain(':white_check_mark: kennel-backup (local): restore-cleanup SUCCEEDED');
    expect(text).toMatch(/The database-restore execution \S+ was aborted in (WaitFor|Check)SafetyDump/);
    expect(text).toContain(
      `kennel_prod is unchanged: it was not replaced (there is no ${plan.replacedDatabase}).`,
    );
    expect(text).toContain(`The staging database ${plan.stagingDatabase} was dropped.`);
    expect(text).toContain(
      `The safety dump ${plan.safetyDump.archiveKey} was never verified (the run stopped first): it is not a backup; its copy on the host was removed; ${inS3 ? 'its object reached S3 without a manifest' : 'nothing of it is in S3'}`,
    );
    expect(text).toContain('The application was stopped for the restore and has been started again.');
    expect(text).toContain('Its work directories on the host (1) were left, and are removed.');
    expect(cleanup?.output).toMatchObject({ status: 'ABORTED', cleanedUp: run.record.executionArn });
  });

  it("a restore that outlives its host command's timeout (killed, as the agent does): the alert says the staging database and its work directory are gone, and they are", async () => {
    // A load slow enough that the restore outlives its 3 s: the psql that loads the
    // dump into the staging database (once made) waits first.
    const slow = mkdtempSync(join(tmpdir(), 'kennel-backup-slow-'));
    const psql = execFileSync('bash', ['-c', 'command -v psql'], {
      encoding: 'utf8',
      env: world.env.hostEnv,
    }).trim();
    writeFileSync(
      join(slow, 'psql'),
      `#!/bin/bash\n[[ " $* " == *" -f - "* ]] && sleep 60\nexec ${psql} "$@"\n`,
      { mode: 0o755 },
    );
    let stagingBeforeCleanUp: string[] = [];
    let workBeforeCleanUp: string[] = [];
    try {
      const run = await restore(
        { database: 'kennel_prod', targetDatabase: 'kennel_slow' },
        {
          functionEnv: { HOST_COMMAND_TIMEOUT_SECONDS: '3' },
          hostEnv: { PATH: `${slow}:${world.env.hostEnv.PATH}` },
          hostOptions: { timeoutSignal: 'SIGKILL' },
          beforeTask: async (state, input) => {
            if (state !== SWAP_COMMAND.cleanUp.start) return;
            stagingBeforeCleanUp = databasesLike(world, 'kb_restoring_');
            workBeforeCleanUp = workDirs((input as { plan: { runId: string } }).plan.runId);
          },
        },
      );
      expect(run.record.status).toBe('FAILED');
      expect(run.alerts.map((a) => [a.state, a.error])).toEqual([
        ['CheckRestore', 'HostCommandTimedOutError'],
      ]);
      // The killed restore left its staging database and its work directory: the clean-up found them, removed them, and says so.
      expect(stagingBeforeCleanUp).toHaveLength(1);
      expect(workBeforeCleanUp).toHaveLength(1);
      expect(databasesLike(world, 'kb_')).toEqual([]);
      expect(workDirs()).toEqual([]);
      expect(databaseExists(world, 'kennel_slow')).toBe(false);
      expect(run.alerts[0]?.text).toContain(
        `Database: kennel_slow was not created. The staging database ${stagingBeforeCleanUp[0]} was dropped. Its work directories on the host (1) were left, and are removed.`,
      );
    } finally {
      rmSync(slow, { recursive: true, force: true });
    }
  });
});

describe('refusals change nothing', () => {
  it.each([
    [
      'restore over production without confirm',
      { database: 'kennel_prod', targetDatabase: 'kennel_prod' },
      'InvalidInputError',
      'add "confirm": "kennel_prod" to the input',
    ],
    [
      'a confirm that does not match',
      { database: 'kennel_prod', targetDatabase: 'kennel_prod', confirm: 'kennel_pro' },
      'InvalidInputError',
      `"confirm" does not match: it must be exactly the target database's name, kennel_prod (it was "kennel_pro")`,
    ],
    [
      'an unknown backup',
      { database: 'kennel_prod', targetDatabase: 'x', backup: '20200101T000000Z_00000000' },
      'NotFoundError',
      'No full, monthly or safety backup "20200101T000000Z_00000000" of kennel_prod; this restore takes full, monthly or safety backups. The newest are:',
    ],
    [
      'a database without backups',
      { database: 'no_backups_here', targetDatabase: 'x' },
      'NotFoundError',
      'on target local: did you mean one of them?',
    ],
    [
      'a bad identifier',
      { database: 'kennel_prod', targetDatabase: 'x; DROP DATABASE kennel_prod' },
      'InvalidInputError',
      'targetDatabase: must be a lower-case PostgreSQL identifier',
    ],
    ['a missing target database', { database: 'kennel_prod' }, 'InvalidInputError', 'targetDatabase'],
    [
      'a misspelt field',
      { database: 'kennel_prod', targetDatabase: 'x', bakup: 'latest' },
      'InvalidInputError',
      'Unrecognized key',
    ],
    [
      'a point in time given to the backup restore',
      { database: 'kennel_prod', targetDatabase: 'x', targetTime: '2026-11-26T00:00:00Z' },
      'InvalidInputError',
      'Unrecognized key',
    ],
    ['input that is not an object', 'kennel_prod', 'InvalidInputError', 'expected object'],
  ])('%s', async (_what, input, error, message) => {
    const before = tableChecksums(world, 'kennel_prod', tables);
    const databases = world.sql(
      'postgres',
      "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
    );
    const run = await restore(input);
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe(error);
    expect(run.record.cause).toContain(message);
    expect(run.record.cause).toMatch(/[Nn]othing was (changed|started)/);
    expect(run.host.sent).toEqual([]);
    expect(run.alerts.map((a) => a.state)).toEqual(['PlanRestore']);
    expect(tableChecksums(world, 'kennel_prod', tables)).toEqual(before);
    expect(world.sql('postgres', "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")).toBe(
      databases,
    );
  });

  it('a target database that already exists: refused by the host before anything is created', async () => {
    const run = await restore({ database: 'kennel_prod', targetDatabase: 'kennel_restored' });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.cause).toContain('the database kennel_restored already exists');
    expect(run.alerts[0]?.text).toMatch(
      /Database: kennel_restored was not touched\. No staging database kb_restoring_\S+ was left\./,
    );
    expect(tableChecksums(world, 'kennel_restored', tables)).toEqual(atBackup);
    expect(databasesLike(world, 'kb_restoring_')).toEqual([]);
  });

  it('a restore into a database another running restore holds: refused, naming it; every restore above gave its lock back', async () => {
    // Succeeded or failed after taking it, each restore above gave its lock back.
    expect(await world.catalog.listKeys('locks/')).toEqual([]);
    const name = 'restoring-kennel-copy';
    const holder = `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-database-restore:${name}`;
    const now = new Date();
    const lock = 'locks/local/database/kennel_copy';
    await putBytes(
      world.s3,
      world.env.bucket,
      lock,
      JSON.stringify({
        version: 1,
        workflow: 'database-restore',
        executionArn: holder,
        startedAt: now.toISOString(),
        takenAt: now.toISOString(),
        validUntil: new Date(now.getTime() + 43_200_000).toISOString(),
      }),
    );
    // The runner's record of an execution in progress (local/runner.ts localExecutions), here this process's.
    const running = join(world.env.paths.historyDir, `${name}.running`);
    writeFileSync(running, String(process.pid));
    try {
      const run = await restore({ database: 'kennel_prod', targetDatabase: 'kennel_copy' });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.error).toBe('RunLockHeldError');
      expect(run.record.cause).toContain(`Another database-restore run holds ${lock}: execution ${holder}`);
      expect(run.alerts.map((a) => a.state)).toEqual(['TakeRunLock']);
      expect(run.host.sent).toEqual([]);
      expect(databaseExists(world, 'kennel_copy')).toBe(false);
      expect(await world.catalog.listKeys('locks/')).toEqual([lock]);
    } finally {
      rmSync(running, { force: true });
      await world.catalog.removeKeys([lock]);
    }
  });

  it('a backup that failed verification, saying why', async () => {
    await world.catalog.writeManifest({
      ...verified,
      verification: { state: 'failed', detail: 'sha256 mismatch' },
    });
    try {
      const run = await restore({ database: 'kennel_prod', targetDatabase: 'x', backup: verified.runId });
      expect(run.record.cause).toContain(
        `The backup ${verified.archive.key} is failed (sha256 mismatch); restore only from a verified backup.`,
      );
      expect(databaseExists(world, 'x')).toBe(false);
    } finally {
      await world.catalog.writeManifest(verified);
    }
  });
});

describe('planning a restore', () => {
  const plan = (input: unknown) =>
    planRestore(
      parseConfig(world.env.functionEnv),
      { primary: world.catalog, vault: undefined },
      {
        input,
        executionId:
          'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-database-restore:r1',
        startedAt: new Date().toISOString(),
        stateMachine: 'kennel-backup-local-database-restore',
      },
    );

  it('names a backup by run id or key, and stages the restore under its own name', async () => {
    for (const backup of [verified.runId, verified.archive.key, `${verified.archive.key}.manifest.json`]) {
      const planned = await plan({ database: 'kennel_prod', targetDatabase: 'x', backup });
      expect(planned.archives.map((a) => a.key)).toEqual([verified.archive.key]);
      expect(planned.stagingDatabase).toMatch(/^kb_restoring_\d{8}t\d{6}z_[0-9a-f]{8}$/);
      expect(planned.safetyDump).toBeNull();
    }
  });

  it('a dry run plans and changes nothing', async () => {
    const run = await restore({
      database: 'kennel_prod',
      targetDatabase: 'kennel_prod',
      confirm: 'kennel_prod',
      dryRun: true,
    });
    expect(run.record.status).toBe('SUCCEEDED');
    expect(run.record.output).toMatchObject({
      dryRun: true,
      changed: 'nothing',
      plan: {
        archives: [{ key: verified.archive.key, restoreTest: 'passed' }],
        overProduction: true,
        carry: [
          { schema: 'public', name: 'audit_logs' },
          { schema: 'public', name: 'session_logs' },
        ],
      },
    });
    // Where every table's rows come from: the log tables' from production itself.
    const { rowSources } = (run.record.output as { plan: RestorePlan }).plan;
    expect(rowSources.listed.slice(0, 2)).toEqual([
      expect.objectContaining({ table: 'public.audit_logs', from: 'replaced database', rows: null }),
      expect.objectContaining({ table: 'public.session_logs', from: 'replaced database', rows: null }),
    ]);
    expect(rowSources.listed.slice(2)).toEqual(
      tables.map((t) => ({ table: qualifiedName(t), from: 'backup', rows: t.rows })),
    );
    expect(rowSources.unlisted).toEqual({ tables: 0, rows: 0 });
    // Production's tables the backup lacks: the plan cannot read them, and says what becomes of them.
    expect(rowSources.notInBackup).toContain(
      'tables of kennel_prod that the backup lacks (created since) are not restored: their rows stay only in kb_replaced_',
    );
    expect(run.host.sent).toEqual([]);
  });
});

describe('the restore-archive host script', () => {
  const render = (into: string) => {
    const config = parseConfig(world.env.functionEnv);
    const [target] = config.BACKUP_TARGETS;
    if (!target) throw new Error('no target');
    return renderHostCommand(config, target, BACKUP_HOST_COMMANDS['restore-test'], {
      script: 'restore-test',
      sha256: verified.archive.sha256,
      plan: restoreTestPlanOf(verified, target, world.env.bucket, into),
    });
  };

  it('fetches the archive from S3 when the host no longer has its copy, and restores every row', async () => {
    rmSync(verified.archive.localPath);
    const result = await runProcess('bash', ['-c', render('kennel_from_s3')], world.env.hostEnv);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('no intact copy');
    expect(result.stdout).toMatch(/"readFrom" ?: ?"primary"/);
    expect(tableChecksums(world, 'kennel_from_s3', tables)).toEqual(atBackup);
  });

  it('never writes into an existing database, and leaves it as it was', async () => {
    const result = await runProcess('bash', ['-c', render('kennel_from_s3')], world.env.hostEnv);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('the database kennel_from_s3 already exists');
    expect(tableChecksums(world, 'kennel_from_s3', tables)).toEqual(atBackup);
  });
});

describe('the database-swap host script', () => {
  it('over a database, names the first 50 of its tables the restore lacks with their rows, and counts them all: its result stays small however many there are', async () => {
    const config = parseConfig(world.env.functionEnv);
    const [target] = config.BACKUP_TARGETS;
    if (!target) throw new Error('no target');
    world.sql('postgres', 'CREATE DATABASE swap_prod');
    world.sql('postgres', 'CREATE DATABASE swap_staging');
    world.sql('swap_staging', 'CREATE TABLE kept (id int)');
    // 60 tables the restore lacks: t<i> with i rows, and one whose name needs quoting.
    world.sql(
      'swap_prod',
      `CREATE TABLE kept (id int);
       CREATE TABLE "odd ""name""" AS SELECT 1 AS id;
       DO $$ BEGIN FOR i IN 1..59 LOOP
         EXECUTE format('CREATE TABLE t%s AS SELECT g AS id FROM generate_series(1, %s) g', lpad(i::text, 2, '0'), i);
       END LOOP; END $$`,
    );
    const script = renderHostCommand(config, target, RESTORE_HOST_COMMANDS['database-swap'], {
      script: 'database-swap',
      plan: {
        target: 'local',
        runId: '20261130T000000Z_0000abcd',
        overProduction: true,
        targetDatabase: 'swap_prod',
        stagingDatabase: 'swap_staging',
        replacedDatabase: 'swap_replaced',
      },
    });
    const result = await runProcess('bash', ['-c', script], world.env.hostEnv);
    expect(result.code, result.stderr).toBe(0);
    const line = /^KB-RESULT (.*)$/m.exec(result.stdout)?.[1] ?? '';
    const facts = JSON.parse(line) as { onlyInReplaced: [string, string, number][] };
    expect(facts).toMatchObject({ onlyInReplacedCount: 60, onlyInReplacedRows: 1 + (59 * 60) / 2 });
    expect(facts.onlyInReplaced).toHaveLength(50);
    expect(facts.onlyInReplaced.slice(0, 3)).toEqual([
      ['public', 'odd "name"', 1],
      ['public', 't01', 1],
      ['public', 't02', 2],
    ]);
    expect(line.length).toBeLessThan(4000);
    expect(world.sql('swap_prod', "SELECT to_regclass('t01') IS NULL, to_regclass('kept') IS NULL")).toBe(
      't|f',
    );
    expect(world.sql('swap_replaced', 'SELECT count(*) FROM t59')).toBe('59');
    for (const db of ['swap_prod', 'swap_replaced']) world.sql('postgres', `DROP DATABASE ${db}`);
  });
});

describe('the carry-log-rows host script', () => {
  const carry = async (tables: { schema: string; name: string }[]) => {
    const config = parseConfig(world.env.functionEnv);
    const [target] = config.BACKUP_TARGETS;
    if (!target) throw new Error('no target');
    const script = renderHostCommand(config, target, RESTORE_HOST_COMMANDS['carry-log-rows'], {
      script: 'carry-log-rows',
      plan: {
        target: 'local',
        runId: '20261130T000000Z_0000abcd',
        stagingDatabase: 'carry_into',
        targetDatabase: 'carry_from',
        carry: tables,
      },
    });
    return runProcess('bash', ['-c', script], world.env.hostEnv);
  };
  const schema = `CREATE TABLE owners (id int PRIMARY KEY);
    CREATE TABLE events (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      owner_id int REFERENCES owners ON DELETE CASCADE,
      at timestamptz NOT NULL,
      kind text,
      kind_upper text GENERATED ALWAYS AS (upper(kind)) STORED);
    CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.at := now(); RETURN NEW; END $$;
    CREATE TRIGGER stamp BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION stamp();
    CREATE TABLE shapes (id int);
    CREATE TABLE ranged (at date NOT NULL) PARTITION BY RANGE (at);
    CREATE TABLE ranged_2024 PARTITION OF ranged FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');`;

  beforeAll(() => {
    for (const db of ['carry_from', 'carry_into']) {
      world.sql('postgres', `CREATE DATABASE ${db}`);
      world.sql(db, schema);
    }
    // Production has an owner the backup lacks, and an event of it; the trigger stamps only new rows.
    world.sql(
      'carry_from',
      `INSERT INTO owners VALUES (1), (2);
       ALTER TABLE events DISABLE TRIGGER stamp;
       INSERT INTO events (owner_id, at, kind) VALUES (1, '2020-01-01', 'a'), (2, '2020-01-02', 'b'), (NULL, '2020-01-03', 'c');
       ALTER TABLE events ENABLE TRIGGER stamp;
       ALTER TABLE shapes ADD COLUMN added text;
       CREATE TABLE ranged_2025 PARTITION OF ranged FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
       INSERT INTO ranged VALUES ('2024-05-01'), ('2025-05-01')`,
    );
    world.sql('carry_into', 'INSERT INTO owners VALUES (1)');
  });
  afterAll(() => {
    for (const db of ['carry_from', 'carry_into']) world.sql('postgres', `DROP DATABASE IF EXISTS ${db}`);
  });

  it('copies the rows as they were, leaves out a row its ON DELETE CASCADE key would remove, carries the identity on, and skips a table the database lacks', async () => {
    const result = await carry([
      { schema: 'public', name: 'events' },
      { schema: 'public', name: 'no_such_log' },
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(/^KB-RESULT (.*)$/m.exec(result.stdout)?.[1] ?? '')).toEqual({
      tables: [
        { schema: 'public', name: 'events', present: true, copied: 3, rows: 2, nulled: 0, leftOut: 1 },
        { schema: 'public', name: 'no_such_log', present: false },
      ],
    });
    expect(checksumOf('carry_into', 'SELECT * FROM events')).toBe(
      checksumOf('carry_from', 'SELECT * FROM events WHERE owner_id IS DISTINCT FROM 2'),
    );
    expect(world.sql('carry_into', "SELECT tgenabled FROM pg_trigger WHERE tgname = 'stamp'")).toBe('O');
    expect(
      world.sql('carry_into', "SELECT last_value FROM pg_sequences WHERE sequencename = 'events_id_seq'"),
    ).toBe('3');
    expect(world.sql('carry_into', "SELECT count(*) FROM pg_namespace WHERE nspname = 'kb_carry'")).toBe('0');
  });

  it('refuses a table whose columns differ from the backup, one with a partition the backup lacks, and one that already has rows', async () => {
    const shapes = await carry([{ schema: 'public', name: 'shapes' }]);
    expect(shapes.code).toBe(1);
    expect(shapes.stderr).toContain(
      'the log table public.shapes has other columns in carry_from than in the backup',
    );
    // A partition made since the backup: its rows would have nowhere to go.
    const ranged = await carry([{ schema: 'public', name: 'ranged' }]);
    expect(ranged.code).toBe(1);
    expect(ranged.stderr).toContain(
      'the log table public.ranged has a partition (or child table) public.ranged_2025 in carry_from that the backup does not have',
    );
    expect(world.sql('carry_into', 'SELECT count(*) FROM ranged')).toBe('0');
    const again = await carry([{ schema: 'public', name: 'events' }]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('the restored events already holds 2 rows');
  });
});

describe('a full whose restore test failed is demoted', () => {
  /** Newer than `verified`: a full whose run ended before its restore test, then one whose test failed. */
  let untested: DatabaseManifest;
  let failed: DatabaseManifest;
  let failedRun: Awaited<ReturnType<typeof runIn>>;

  beforeAll(async () => {
    // Aborted as its restore test starts: verified, and never tested.
    const stop = new AbortController();
    const aborted = await runIn(world, {
      input: { kind: 'full', database: 'kennel_prod' },
      signal: stop.signal,
      beforeTask: async (state) => {
        if (state === 'StartRestoreTest') stop.abort();
      },
    });
    expect(aborted.record.status).toBe('ABORTED');
    untested = await world.catalog.readDatabaseManifest(manifestKeyOf(aborted.record));

    // A real fault: a CHECK constraint calls a function whose body names a table
    // without its schema. pg_dump's script runs with an empty search_path, so the
    // dump no longer loads: it verifies (its bytes are whole), but does not restore.
    world.sql(
      'kennel_prod',
      `CREATE FUNCTION kennel_size_known(size text) RETURNS boolean LANGUAGE sql STABLE
         AS $$ SELECT EXISTS (SELECT 1 FROM kennel_sizes WHERE code = size) $$;
       CREATE TABLE kennel_size_notes (code text PRIMARY KEY CHECK (kennel_size_known(code)), note text);
       INSERT INTO kennel_size_notes SELECT code, 'seen' FROM kennel_sizes ORDER BY code LIMIT 1`,
    );
    try {
      failedRun = await runIn(world, { input: { kind: 'full', database: 'kennel_prod' } });
    } finally {
      world.sql('kennel_prod', 'DROP TABLE kennel_size_notes; DROP FUNCTION kennel_size_known');
    }
    failed = await world.catalog.readDatabaseManifest(manifestKeyOf(failedRun.record));
  });

  it('the restore that failed on the host is recorded in the manifest, with the error, and alerted', () => {
    expect(failedRun.record.status).toBe('FAILED');
    expect(failedRun.alerts.map((a) => [a.state, a.error])).toEqual([
      ['CheckRestoreTest', 'HostCommandFailedError'],
    ]);
    expect(failed.verification.state).toBe('verified');
    expect(failed.verification.restoreTest).toMatchObject({ state: 'failed' });
    expect(failed.verification.restoreTest?.detail).toMatch(
      /^the dump did not restore on the host: HostCommandFailedError: .*relation "kennel_sizes" does not exist/s,
    );
    expect(failed.verification.restoreTest?.detail).not.toMatch(/CONTEXT|COPY kennel_size_notes/);
    expect(untested.verification.state).toBe('verified');
    expect(untested.verification.restoreTest).toBeUndefined();
    expect(databasesLike(world, 'kb_')).toEqual([]);
  });

  it('`latest` never picks it: the newest usable full is restored, and the plan says its restore test never ran', async () => {
    const run = await restore({ database: 'kennel_prod', targetDatabase: 'x', dryRun: true });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(run.record.output).toMatchObject({
      plan: { archives: [{ key: untested.archive.key, restoreTest: 'never ran' }] },
    });
  });

  it('named, it is refused, saying why and how to confirm; confirmed, it is planned', async () => {
    const refused = await restore({ database: 'kennel_prod', targetDatabase: 'x', backup: failed.runId });
    expect(refused.record.status).toBe('FAILED');
    expect(refused.record.error).toBe('InvalidInputError');
    expect(refused.record.cause).toContain(
      `The backup ${failed.archive.key} failed its restore test at ${failed.verification.restoreTest?.checkedAt}: the dump did not restore on the host: HostCommandFailedError:`,
    );
    expect(refused.record.cause).toContain('relation "kennel_sizes" does not exist');
    expect(refused.record.cause).toContain('add "acceptFailedRestoreTest": true to the input');
    expect(refused.record.cause).toContain('Nothing was changed.');
    expect(refused.host.sent).toEqual([]);

    const confirmed = await restore({
      database: 'kennel_prod',
      targetDatabase: 'x',
      backup: failed.runId,
      acceptFailedRestoreTest: true,
      dryRun: true,
    });
    expect(confirmed.record.status, confirmed.record.cause).toBe('SUCCEEDED');
    expect(confirmed.record.output).toMatchObject({
      plan: { archives: [{ key: failed.archive.key, restoreTest: 'failed' }] },
    });
  });

  it('no drill picks it', async () => {
    const planned = await planDrill(parseConfig(world.env.functionEnv), world.catalog, {
      input: { pick: 'random', engine: 'logical' },
      executionId: 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-restore-drill:d1',
      startedAt: new Date().toISOString(),
    });
    expect(planned.candidates.map((c) => c.key)).toEqual([verified.archive.key, untested.archive.key]);
  });

  it('the daily verification alerts on it, names the backup restores use instead, and reports the untested one', async () => {
    const run = await runIn(world, { workflow: 'daily-verification', input: {} });
    expect(run.record.status).toBe('FAILED');
    const problems = (run.record.cause ?? '').split('\n').filter((l) => l.startsWith('- '));
    const subject = '- full backup of kennel_prod on local:';
    expect(problems).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^${subject} the newest archive ${failed.archive.key} failed its restore test at .*relation "kennel_sizes" does not exist.*: it did not restore as it was dumped; restores and drills use ${untested.archive.key} \\(data of ${untested.window.until}\\) instead`,
        ),
      ),
    );
    expect(problems).toContain(
      `${subject} the newest usable one, ${untested.archive.key}, has no restore test result (its run ended before the test, or is still testing it): it is verified but no restore has proven it; a \`latest\` restore uses it and checks its rows before replacing anything. Take a full backup now, or run the restore-drill workflow`,
    );
    // Judged by the newest usable full, the kind is fresh.
    expect(problems.filter((p) => p.startsWith(subject))).toHaveLength(2);
  });
});

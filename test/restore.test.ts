import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreTestPlanOf } from '../shared/backup/database-plan.ts';
import { BACKUP_HOST_COMMANDS } from '../shared/backup/host-commands.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { parseConfig } from '../shared/core/config.ts';
import type { TableName } from '../shared/core/identifiers.ts';
import { parseComment } from '../shared/host/commands.ts';
import { renderHostCommand } from '../shared/host/scripts.ts';
import { planRestore } from '../shared/restore/database-plan.ts';
import { databaseExists, databasesLike, tableChecksums } from './support/checksums.ts';
import { putBytes, runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { pastBackup } from './support/manifests.ts';
import { runProcess } from './support/process.ts';

let world: TestWorld;
/** The full backup every test restores, and each table's content when it was taken. */
let verified: DatabaseManifest;
let atBackup: Record<string, string>;
let tables: TableName[];

beforeAll(async () => {
  world = await startWorld();
  const run = await runIn(world, { input: { kind: 'full' } });
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
    });
    expect(output.checks).toContain(
      `all ${tables.length} tables of the backup are present with exactly the row counts of the dump (${verified.tables.reduce((sum, t) => sum + t.rows, 0)} rows)`,
    );
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

  it('over production: stops the application, keeps a safety dump and the old database, swaps, starts it again', async () => {
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

    const output = run.record.output as {
      replacedDatabase: string;
      safetyDump: string;
      applicationDownSeconds: number;
    };
    expect(tableChecksums(world, output.replacedDatabase, tables)).toEqual(beforeRestore);
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
      'database-swap',
      'application-start',
      'prune-local',
    ]);
    expect(readFileSync(world.env.paths.applicationState, 'utf8').trim()).toBe('running');
    expect(output.applicationDownSeconds).toBeGreaterThan(0);
    expect(await world.catalog.manifestKeys('safety', 'local', 'kennel_prod')).toEqual([
      `${output.safetyDump}.manifest.json`,
    ]);
    expect(stagesOf(output).map((s) => s.stage)).toEqual([
      'restore into staging',
      'check row counts',
      'stop application',
      'safety dump',
      'verify safety dump',
      'swap into place',
      'start application',
      'prune old safety dumps',
    ]);
    world.sql('postgres', `DROP DATABASE ${output.replacedDatabase}`);
  });

  it('a failure after the application stopped: starts it again, and the alert names the safety dump that brings the database back', async () => {
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
      'database-swap',
      'application-start',
    ]);
    expect(tableChecksums(world, 'kennel_prod', tables)).toEqual(beforeRestore);

    expect(run.alerts).toHaveLength(1);
    const alert = run.alerts[0]?.text ?? '';
    expect(alert).toContain('State: CheckSwap');
    expect(alert).toContain('The application was stopped for the restore and has been started again.');
    const safetyRunId = /"backup": "(\d{8}T\d{6}Z_[0-9a-f]{8})"/.exec(alert)?.[1];
    expect(alert).toMatch(
      /The safety dump database\/safety\/local\/kennel_prod\/\S+ \(verified\) holds kennel_prod/,
    );
    expect(safetyRunId).toBeDefined();

    // What the alert says to do brings back the state from before the restore.
    const back = await restore({
      database: 'kennel_prod',
      targetDatabase: 'kennel_before',
      backup: safetyRunId,
    });
    expect(back.record.status, back.record.cause).toBe('SUCCEEDED');
    expect(tableChecksums(world, 'kennel_before', tables)).toEqual(beforeRestore);
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
      'add "confirm": "kennel_prod"',
    ],
    [
      'an unknown backup',
      { database: 'kennel_prod', targetDatabase: 'x', backup: '20200101T000000Z_00000000' },
      'NotFoundError',
      'No full, monthly or safety backup "20200101T000000Z_00000000" of kennel_prod. The newest are:',
    ],
    [
      'a database without backups',
      { database: 'no_backups_here', targetDatabase: 'x' },
      'NotFoundError',
      'There is no verified full backup',
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
    expect(run.alerts[0]?.text).toContain('kennel_restored was not touched (it was not created)');
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
    planRestore(parseConfig(world.env.functionEnv), world.catalog, {
      input,
      executionId: 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-database-restore:r1',
      startedAt: new Date().toISOString(),
      stateMachine: 'kennel-backup-local-database-restore',
    });

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
      plan: { archives: [{ key: verified.archive.key }], overProduction: true },
    });
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
    expect(tableChecksums(world, 'kennel_from_s3', tables)).toEqual(atBackup);
  });

  it('never writes into an existing database, and leaves it as it was', async () => {
    const result = await runProcess('bash', ['-c', render('kennel_from_s3')], world.env.hostEnv);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('the database kennel_from_s3 already exists');
    expect(tableChecksums(world, 'kennel_from_s3', tables)).toEqual(atBackup);
  });
});

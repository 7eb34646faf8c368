import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql } from '../local/environment.ts';
import { checkExecutionName, listExecutions } from '../local/runner.ts';
import { listPhysicalBackups } from '../shared/catalog/physical.ts';
import { parseConfig } from '../shared/core/config.ts';
import type { CheckReport } from '../shared/watch/check.ts';
import { formatInfo, type Info, readInfo } from '../shared/watch/info.ts';
import { runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { archivedSegments } from './support/pgbackrest.ts';
import { commitAndSwitch } from './support/wal.ts';

// One world: a full backup (its dump and pgBackRest's full), then info, check and
// the executions' histories read from it.
let world: TestWorld;
let pathWithoutZstd: string;

beforeAll(async () => {
  world = await startWorld();
  const run = await runIn(world, { input: { kind: 'full' }, executionName: 'first-full' });
  expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
  expect(runsOf(run.record).every((r) => r.status === 'succeeded')).toBe(true);
  pathWithoutZstd = mkdtempSync(join(tmpdir(), 'kennel-backup-path-'));
  // pgBackRest runs as the cluster's OS user, who must get in too.
  chmodSync(pathWithoutZstd, 0o755);
  // Every command of the system's PATH but zstd, as a host without the package has them.
  for (const dir of ['/usr/local/bin', '/usr/bin', '/usr/sbin', '/bin', '/sbin'])
    for (const file of existsSync(dir) ? readdirSync(dir) : [])
      if (file !== 'zstd' && !existsSync(join(pathWithoutZstd, file)))
        symlinkSync(join(dir, file), join(pathWithoutZstd, file));
});
afterAll(async () => {
  await world?.stop();
  if (pathWithoutZstd) rmSync(pathWithoutZstd, { recursive: true, force: true });
});

const info = () => {
  const config = parseConfig(world.env.functionEnv);
  return readInfo(config, world.catalog, world.s3);
};

const catalogOf = (read: Info, kind: string) => read.catalogs.find((c) => c.kind === kind);

describe('info', () => {
  it("lists each backup with its time, size, class and state, and the WAL's recoverable range", async () => {
    const read = await info();
    const [dump] = (await world.catalog.list('full', 'local', 'kennel_prod')).slice(-1);
    expect(catalogOf(read, 'full')?.backups).toEqual([
      {
        time: dump?.window.until,
        name: dump?.archive.key,
        bytes: dump?.archive.size,
        storageClass: 'STANDARD',
        state: 'restore-tested',
        usable: true,
        detail: null,
      },
    ]);
    expect(catalogOf(read, 'monthly')?.backups).toEqual([]);
    const [record] = await listPhysicalBackups(world.catalog, 'local');
    expect(catalogOf(read, 'physical')?.backups).toEqual([
      {
        time: record?.backup.stoppedAt,
        name: `${record?.label} (full)`,
        bytes: record?.backup.repositoryDeltaBytes,
        storageClass: 'STANDARD',
        state: 'restore-tested',
        usable: true,
        detail: null,
      },
    ]);
    const [wal] = read.wal;
    // The backup's consistent point is its stop (whole seconds); the next second is recoverable.
    expect(wal?.oldestRecoverable).toBe(
      new Date(Date.parse(record?.backup.stoppedAt ?? '') + 1000).toISOString(),
    );
    expect(Date.parse(wal?.newestRecoverable ?? '')).toBeGreaterThanOrEqual(
      Date.parse(wal?.oldestRecoverable ?? ''),
    );
    expect(wal).toMatchObject({ target: 'local', gaps: 0, missingSegments: 0, unavailable: null });
    expect(wal?.segments).toBeGreaterThan(0);

    const table = formatInfo(read);
    expect(table).toContain('TARGET  DATABASE     KIND');
    expect(table).toMatch(/local\s+kennel_prod\s+full\s+\S+Z\s+[\d.]+ kB\s+STANDARD\s+restore-tested/);
    expect(table).toMatch(/local\s+kennel_prod\s+monthly\s+-\s+-\s+-\s+none/);
    expect(table).toContain(`WAL of local: recoverable from ${wal?.oldestRecoverable?.replace('.000', '')}`);
  });

  it('shows a dump whose restore test failed as not usable, and why', async () => {
    const [dump] = await world.catalog.list('full', 'local', 'kennel_prod');
    if (!dump) throw new Error('no dump');
    const failed = {
      ...dump,
      verification: {
        ...dump.verification,
        restoreTest: {
          state: 'failed' as const,
          checkedAt: dump.finishedAt,
          detail: 'public.payments: 3 rows, not 4',
        },
      },
    };
    await world.catalog.writeManifest(failed);
    try {
      const [backup] = catalogOf(await info(), 'full')?.backups ?? [];
      expect(backup).toMatchObject({
        state: 'restore-test-failed',
        usable: false,
        detail: `restore test failed at ${dump.finishedAt}: public.payments: 3 rows, not 4`,
      });
    } finally {
      await world.catalog.writeManifest(dump);
    }
  });

  it('names a gap in the WAL and the times around it', async () => {
    for (let i = 0; i < 3; i += 1) commitAndSwitch(world);
    const archiveId = '15-1';
    const [record] = await listPhysicalBackups(world.catalog, 'local');
    // Listed asynchronously: the local S3 answers from this process.
    let segments: Awaited<ReturnType<typeof archivedSegments>> = [];
    for (let i = 0; i < 150 && segments.length < 4; i += 1) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 1000));
      segments = (await archivedSegments(world, archiveId)).filter(
        (s) => s.name >= (record?.backup.archiveStart ?? ''),
      );
    }
    const lost = segments[2];
    if (!lost) throw new Error('too few segments');
    await world.s3.send(new DeleteObjectCommand({ Bucket: world.env.bucket, Key: lost.key }));
    const read = await info();
    const [wal] = read.wal;
    expect(wal).toMatchObject({ gaps: 1, missingSegments: 1 });
    expect(wal?.gapList[0]).toMatchObject({ first: lost.name, last: lost.name, count: 1 });
    // No backup since: nothing after the gap's start can be recovered.
    expect(wal?.gapList[0]?.resumes).toBeNull();
    expect(formatInfo(read)).toContain(`  gap: ${lost.name}: nothing from `);
    expect(formatInfo(read)).toContain(' on can be recovered: no backup was taken since');
    expect(wal?.windows).toEqual([{ from: wal?.oldestRecoverable, to: wal?.gapList[0]?.after }]);
  });
});

const checkLines = (report: CheckReport | undefined, cause: string | undefined) =>
  report?.summary ?? cause ?? '';

describe('check', () => {
  it('says OK to every need on the local stack, and notes an unlogged table (no physical backup holds its rows)', async () => {
    psql(world.env.postgres, 'kennel_prod', ['-c', 'CREATE UNLOGGED TABLE cart_sessions (id int)']);
    const run = await runIn(world, { workflow: 'check', input: {} });
    psql(world.env.postgres, 'kennel_prod', ['-c', 'DROP TABLE cart_sessions']);
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const report = run.record.output as CheckReport;
    expect(report.ok).toBe(true);
    expect(report.lines.map((l) => l.check)).toEqual([
      'tools',
      'database',
      'grants',
      'unlogged',
      ...Array(5).fill('archive-settings'),
      'pgbackrest',
      's3',
      'alerts',
    ]);
    expect(report.lines.find((l) => l.check === 'tools')?.text).toBe(
      'pg_dump, psql, zstd, aws, python3-boto3, pgbackrest found',
    );
    expect(report.summary).toContain(
      'OK   local      s3               wrote and removed a probe under s3://',
    );
    expect(report.summary).toContain(
      'NOTE  local      unlogged         After a point-in-time recovery or a pgBackRest restore, 1 unlogged relation comes back empty, whatever the target: table public.cart_sessions (kennel_prod).',
    );
    // The probe is gone again.
    expect(await world.catalog.listKeys('check/')).toEqual([]);
  });

  it('names zstd and its package when it is not on the PATH', async () => {
    const run = await runIn(world, {
      workflow: 'check',
      input: {},
      hostEnv: { PATH: [world.env.postgres.binDir, pathWithoutZstd].filter(Boolean).join(':') },
    });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('CheckFailedError');
    const lines = checkLines(undefined, run.record.cause);
    expect(lines).toContain(
      "FIX  local      tools            zstd not found on the host's PATH: apt-get install -y zstd",
    );
    expect(lines).toContain('1 check(s) need a fix');
    expect(lines).toContain(
      'OK   local      pgbackrest       pgbackrest.conf is the rendered one and pgbackrest check passed',
    );
    expect(run.alerts[0]?.error).toBe('CheckFailedError');
  });

  it('names S3 when it does not answer', async () => {
    const dead = 'https://127.0.0.1:9';
    const run = await runIn(world, { workflow: 'check', input: {}, functionEnv: { S3_ENDPOINT_URL: dead } });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.cause).toMatch(
      new RegExp(
        `FIX  local      s3               S3 is not writable from the host \\(.+\\): check that ${dead} answers`,
      ),
    );
    expect(run.record.cause).toContain('OK   local      tools');
  });

  it('never advises a restart that would turn archiving off (archive_mode = off waiting for one)', async () => {
    world.sql('postgres', 'ALTER SYSTEM SET archive_mode = off');
    world.sql('postgres', 'SELECT pg_reload_conf()');
    try {
      const run = await runIn(world, { workflow: 'check', input: {} });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.cause).toContain(
        "FIX  local      archive-settings archive_mode is 'on' and a PostgreSQL restart would make it 'off', not 'on': do not restart for it; start the prepare-host workflow for local",
      );
      expect(run.record.cause).toContain('1 check(s) need a fix');
    } finally {
      world.sql('postgres', 'ALTER SYSTEM SET archive_mode = on');
      world.sql('postgres', 'SELECT pg_reload_conf()');
    }
  });
});

describe('executions', () => {
  it('keeps each history under its workflow, status and name, lists them newest first, and refuses a name used', () => {
    const list = listExecutions(world.env.paths.historyDir);
    const first = list.find((e) => e.name === 'first-full');
    expect(first).toMatchObject({ workflow: 'database-backup', status: 'SUCCEEDED' });
    expect(basename(first?.historyFile ?? '')).toBe('database-backup.SUCCEEDED.first-full.json');
    expect(list.at(-1)?.name).toBe('first-full');
    expect(list.slice(0, 2).map((e) => `${e.workflow} ${e.status}`)).toEqual([
      'check FAILED',
      'check FAILED',
    ]);
    const starts = list.map((e) => Date.parse(e.startDate));
    expect(starts).toEqual([...starts].sort((a, b) => b - a));
    expect(() => checkExecutionName(world.env.paths.historyDir, 'database-backup', 'first-full')).toThrow(
      'An execution of database-backup named first-full exists already',
    );
    expect(() => checkExecutionName(world.env.paths.historyDir, 'database-backup', 'no spaces')).toThrow(
      'give 1 to 80 letters, digits, "-" or "_"',
    );
    // Another workflow may use the name, as in Step Functions (names are per state machine).
    expect(() => checkExecutionName(world.env.paths.historyDir, 'check', 'first-full')).not.toThrow();
  });
});

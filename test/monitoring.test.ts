import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../local/postgres.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { runIn, startWorld, type TestWorld } from './support/environment.ts';
import {
  archiverRow,
  commitAndSwitch,
  repositorySize,
  restartPostmaster,
  segmentsInRepository,
  segmentsWaiting,
  severableRoute,
  until,
} from './support/wal.ts';

let world: TestWorld;
let full: DatabaseManifest;
let backupLogs: string;

beforeAll(async () => {
  world = await startWorld();
  const run = await runIn(world, { input: { kind: 'full' } });
  expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
  const key = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
  full = await world.catalog.readDatabaseManifest(key);
  backupLogs = run.visibleText;
});
afterAll(async () => {
  await world?.stop();
});

/** The backup directory's filesystem, as df itself reports it. */
function measuredPercent(): number {
  const df = spawnSync('df', ['-P', world.env.paths.backupDir], { encoding: 'utf8' });
  return Number(/(\d+)%/.exec(df.stdout.trim().split('\n').at(-1) ?? '')?.[1]);
}

const monitor = (env: Record<string, string> = {}, hostEnv: Record<string, string> = {}) =>
  runIn(world, { workflow: 'monitoring', input: {}, functionEnv: env, hostEnv });

/** The embedded-metric-format lines the functions printed: what CloudWatch makes metrics of. */
function metricLines(logs: string): { name: string; value: number; dimensions: Record<string, string> }[] {
  return logs
    .split('\n')
    .filter((l) => l.includes('"_aws"'))
    .flatMap((l) => {
      const emf = JSON.parse(l) as Record<string, unknown> & {
        _aws: {
          CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[];
        };
      };
      const [directive] = emf._aws.CloudWatchMetrics;
      if (!directive) return [];
      const dimensions = Object.fromEntries((directive.Dimensions[0] ?? []).map((d) => [d, String(emf[d])]));
      return directive.Metrics.map((m) => ({ name: m.Name, value: Number(emf[m.Name]), dimensions }));
    });
}

describe('metrics', () => {
  it('a verified archive: its size and how long the backup took, per kind and target', () => {
    const metrics = metricLines(backupLogs);
    const dimensions = { service: 'kennel-backup', Stage: 'local', Target: 'local', Kind: 'full' };
    expect(metrics.find((m) => m.name === 'ArchiveSizeBytes')).toEqual({
      name: 'ArchiveSizeBytes',
      value: full.archive.size,
      dimensions,
    });
    expect(metrics.find((m) => m.name === 'BackupDurationSeconds')).toEqual({
      name: 'BackupDurationSeconds',
      value: (Date.parse(full.finishedAt) - Date.parse(full.startedAt)) / 1000,
      dimensions,
    });
  });
});

describe('the hourly monitoring', () => {
  it('under the threshold: passes, measures the real disk, and emits the age and disk metrics', async () => {
    const run = await monitor({ DISK_USAGE_ALERT_PERCENT: '100' });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const output = run.record.output as {
      disks: { target: string; usedPercent: number; backupDirBytes: number }[];
    };
    expect(output.disks).toHaveLength(1);
    expect(output.disks[0]?.usedPercent).toBe(measuredPercent());
    expect(output.disks[0]?.backupDirBytes).toBeGreaterThanOrEqual(full.archive.size);
    expect(run.alerts).toEqual([]);

    const metrics = metricLines(run.visibleText);
    const age = metrics.find((m) => m.name === 'BackupAgeSeconds' && m.dimensions.Kind === 'full');
    expect(age?.dimensions).toEqual({
      service: 'kennel-backup',
      Stage: 'local',
      Target: 'local',
      Kind: 'full',
      Database: 'kennel_prod',
    });
    expect(age?.value).toBeGreaterThanOrEqual(0);
    expect(age?.value).toBeLessThan(600);
    expect(metrics.find((m) => m.name === 'BackupDiskUsedPercent')).toMatchObject({
      value: measuredPercent(),
      dimensions: { service: 'kennel-backup', Stage: 'local', Target: 'local' },
    });
    // Kinds never backed up here have no age: no metric, which the alarm treats as breaching.
    expect(metrics.filter((m) => m.name === 'BackupAgeSeconds').map((m) => m.dimensions.Kind)).toEqual([
      'full',
    ]);
  });

  it('over the threshold: fails and alerts with the measurement', async () => {
    const percent = measuredPercent();
    expect(percent).toBeGreaterThan(1);
    const run = await monitor({ DISK_USAGE_ALERT_PERCENT: String(percent - 1) });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('MonitoringFailedError');
    expect(run.record.cause).toContain(
      `- the backup disk of local: ${percent}% full, over the ${percent - 1}% threshold (${world.env.paths.backupDir} holds`,
    );
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]?.text).toContain('State: ReportMonitoring');
  });

  it('a missing daily full backup', async () => {
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
    await world.catalog.writeManifest({ ...full, window: { ...full.window, until: twoDaysAgo } });
    try {
      const run = await monitor({ DISK_USAGE_ALERT_PERCENT: '100' });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.cause).toContain(
        `1 problem(s):\n- the daily full backup of kennel_prod on local: the newest verified one is from ${twoDaysAgo} (48.0 h ago); one is expected every 24 h`,
      );
    } finally {
      await world.catalog.writeManifest(full);
    }
  });

  it('S3 not answering: the plan stage fails after its retries, and the alert says so', async () => {
    const run = await monitor({ S3_ENDPOINT_URL: 'http://127.0.0.1:9' });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('TransientError');
    expect(run.alerts[0]?.text).toContain('State: PlanMonitoring');
    expect(run.host.sent).toEqual([]);
  });
});

/** What the monitoring reports of a target's WAL archiving (shared/watch/monitoring.ts). */
interface Archiving {
  target: string;
  walArchiveAgeSeconds: number | null;
  archiver: { lastArchivedWal: string | null; currentWal: string; failedCount: number };
  repository: { statusCode: number; archiveMin: string | null; archiveMax: string | null; backups: number };
  repositoryError: string | null;
}

describe('WAL archiving', () => {
  it("the hourly run reports the archiver's state and the repository, and emits the archive age and the repository's size", async () => {
    const segment = commitAndSwitch(world);
    await until(`${segment} archived`, () => (archiverRow(world).last_archived_wal ?? '') >= segment);
    const before = await repositorySize(world);
    const run = await monitor({ DISK_USAGE_ALERT_PERCENT: '100' });
    const after = await repositorySize(world);
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const { archiving, repositories } = run.record.output as {
      archiving: Archiving[];
      repositories: { target: string; bytes: number; objects: number }[];
    };
    expect(archiving).toHaveLength(1);
    const [local] = archiving;
    expect(local?.target).toBe('local');
    expect(local?.archiver.lastArchivedWal && local.archiver.lastArchivedWal >= segment).toBe(true);
    expect(local?.archiver.failedCount).toBe(0);
    // pgBackRest's own account: the segment is within its archive; the one backup is the physical
    // half of the full backup run before these tests.
    expect(local?.repository).toMatchObject({ statusCode: 0, backups: 1 });
    expect(local?.repository.archiveMin && local.repository.archiveMin <= segment).toBe(true);
    expect(local?.repository.archiveMax && local.repository.archiveMax >= segment).toBe(true);
    expect(local?.repositoryError).toBeNull();
    expect(await segmentsInRepository(world)).toContain(segment);

    const metrics = metricLines(run.visibleText);
    const dimensions = { service: 'kennel-backup', Stage: 'local', Target: 'local' };
    // 0 when the current segment is the newest archived one, else the seconds since that one was archived.
    const age = metrics.filter((m) => m.name === 'WalArchiveAgeSeconds');
    expect(age).toEqual([{ name: 'WalArchiveAgeSeconds', value: local?.walArchiveAgeSeconds, dimensions }]);
    expect(local?.walArchiveAgeSeconds).toBeGreaterThanOrEqual(0);
    // The repository's size as S3 lists it, WAL archive included (a segment may land during the run).
    const size = metrics.filter((m) => m.name === 'PgbackrestRepositoryBytes');
    expect(size).toHaveLength(1);
    expect(size[0]?.dimensions).toEqual(dimensions);
    expect([before.bytes, after.bytes]).toContain(size[0]?.value);
    expect(repositories).toEqual([{ target: 'local', bytes: size[0]?.value, objects: expect.any(Number) }]);
    expect(before.bytes).toBeGreaterThan(0);
  });

  it("every minute: a read-only query on the host gives each target's archive age as a metric", async () => {
    const run = await runIn(world, { workflow: 'wal-archive-age', input: {} });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const { ages } = run.record.output as { ages: { target: string; ageSeconds: number }[] };
    expect(ages).toEqual([{ target: 'local', ageSeconds: expect.any(Number) }]);
    expect(metricLines(run.visibleText)).toEqual([
      {
        name: 'WalArchiveAgeSeconds',
        value: ages[0]?.ageSeconds,
        dimensions: { service: 'kennel-backup', Stage: 'local', Target: 'local' },
      },
    ]);
    // The light measurement: pg_stat_archiver only, neither the server log nor the repository.
    expect(run.host.sent).toHaveLength(1);
    expect(run.host.sent[0]?.script).toContain("KB_DETAIL='age'");
    expect(run.alerts).toEqual([]);
  });

  // Last: the failure it causes is reported by every run for the next hour.
  it('the host cannot reach the repository: the run alerts with the failing segment and the reason; once it can, the segments arrive', async () => {
    // The repository's endpoint as PostgreSQL's archive_command and the host's commands see it is a
    // port where nothing answers, until the route to the local S3 opens there (pgBackRest takes
    // PGBACKREST_* variables over its configuration file, which stays the rendered one). Its
    // retries are cut to seconds, instead of four of 60 s.
    const archived = commitAndSwitch(world);
    await until(`${archived} archived`, () => (archiverRow(world).last_archived_wal ?? '') >= archived);
    const port = await freePort();
    const route = severableRoute(world, port);
    const cut = { PGBACKREST_REPO1_STORAGE_PORT: String(port), PGBACKREST_IO_TIMEOUT: '2' };
    restartPostmaster(world, cut);
    let segment = '';
    try {
      segment = commitAndSwitch(world, 500);
      await until(`a failure to archive ${segment}`, () => archiverRow(world).last_failed_wal === segment);
      // PostgreSQL keeps the segment until it is archived.
      expect(segmentsWaiting(world)).toContain(segment);

      const run = await monitor({ DISK_USAGE_ALERT_PERCENT: '100' }, cut);
      expect(run.record.status).toBe('FAILED');
      expect(run.record.error).toBe('MonitoringFailedError');
      const cause = run.record.cause ?? '';
      expect(cause).toContain(
        `- WAL archiving on local: failing: WAL segment ${segment} could not be archived`,
      );
      // The server log's own lines: PostgreSQL's exit code and pgBackRest's error, not its generic hints.
      expect(cause).toMatch(
        new RegExp(
          `PostgreSQL's log: archive command failed with exit code \\d+: ERROR: \\[\\d+\\]: .*unable to connect to 'localhost:${port}'.*Connection refused`,
        ),
      );
      expect(cause).not.toContain('HINT');
      expect(cause).toContain(
        '- the pgBackRest repository of local: pgBackRest reports status 99 ([HostConnectError]',
      );
      expect(run.alerts).toHaveLength(1);
      expect(run.alerts[0]?.text).toContain(`WAL segment ${segment} could not be archived`);
      expect(run.alerts[0]?.text).toContain('State: ReportMonitoring');
      // The alarm's minute-by-minute source still measures: the archive is behind since `archived`.
      const measured = await runIn(world, { workflow: 'wal-archive-age', input: {} });
      const { ages } = measured.record.output as { ages: { ageSeconds: number }[] };
      expect(ages[0]?.ageSeconds).toBeGreaterThan(0);

      // The route is back: the archiver retries (a new segment wakes it at once).
      await route.open();
      const after = commitAndSwitch(world);
      await until(`${after} archived`, () => (archiverRow(world).last_archived_wal ?? '') >= after);
      expect(segmentsWaiting(world)).toEqual([]);
      const arrived = await segmentsInRepository(world);
      expect(arrived).toContain(segment);
      expect(arrived).toContain(after);
    } finally {
      // As the stack started it; its shutdown archives anything left, the route being open.
      await route.open();
      restartPostmaster(world);
      await route.close();
    }

    // The next run still names the failure of the past hour, and that archiving recovered.
    const next = await monitor({ DISK_USAGE_ALERT_PERCENT: '100' });
    expect(next.record.status).toBe('FAILED');
    expect(next.record.cause).toContain(
      `- WAL archiving on local: failed within the last hour: WAL segment ${segment} could not be archived at`,
    );
    expect(next.record.cause).toContain('archiving has recovered since (the newest archived is');
    expect(next.record.cause).not.toContain('pgBackRest repository');
  });
});

import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { runIn, startWorld, type TestWorld } from './support/environment.ts';

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

const monitor = (env: Record<string, string> = {}) =>
  runIn(world, { workflow: 'monitoring', input: {}, functionEnv: env });

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

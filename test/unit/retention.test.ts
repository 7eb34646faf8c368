import { describe, expect, it } from 'vitest';
import type { DatabaseManifest as Manifest } from '../../shared/manifest.ts';
import { baseOfIncrementals, expired, newestVerified, RETENTION } from '../../shared/retention.ts';

const NOW = new Date('2026-11-26T02:00:00Z');

function backup(daysAgo: number, state: Manifest['verification']['state'] = 'verified'): Manifest {
  const until = new Date(NOW.getTime() - daysAgo * 86_400_000).toISOString();
  return {
    version: 1,
    kind: 'full',
    target: 'db',
    database: 'kennel_prod',
    runId: `20261126T020000Z_${String(daysAgo).padStart(8, '0')}`,
    executionId: `e-${daysAgo}`,
    archive: {
      key: `database/full/kennel_prod/${daysAgo}.sql.zst`,
      localPath: `/opt/backup/${daysAgo}.sql.zst`,
      fileName: `${daysAgo}.sql.zst`,
      size: 1,
      sha256: 'a'.repeat(64),
      format: 'plain',
      compression: 'zstd',
    },
    window: { since: null, until },
    startedAt: until,
    finishedAt: until,
    serverVersion: '150018',
    excludedTables: [],
    tables: {},
    capture: null,
    verification: { state },
  };
}

const ages = (ms: Manifest[]) => ms.map((m) => m.executionId);

describe('retention of full backups', () => {
  it('follows the source document: full 30 days in S3 and 7 on the host, incremental 7, logs 1 on the host and 7 years in S3, configuration 90, application 30, static 7', () => {
    expect(RETENTION).toEqual({
      full: { s3Days: 30, localDays: 7 },
      incremental: { s3Days: 7, localDays: 7 },
      'transaction-logs': { s3Days: 2555, localDays: 1 },
      configuration: { s3Days: 90, localDays: 90 },
      application: { s3Days: 30, localDays: 30 },
      static: { s3Days: 7, localDays: 7 },
    });
  });

  it('removes only what is older than the window', () => {
    const all = [0, 1, 6, 8, 29, 31, 45, 400].map((d) => backup(d));
    expect(ages(expired(all, NOW, 30))).toEqual(['e-31', 'e-45', 'e-400']);
    expect(ages(expired(all, NOW, 7))).toEqual(['e-8', 'e-29', 'e-31', 'e-45', 'e-400']);
  });

  it('always keeps the newest verified backup, even older than the window', () => {
    const all = [backup(2, 'failed'), backup(5, 'unverified'), backup(40), backup(60), backup(90, 'failed')];
    expect(newestVerified(all)?.executionId).toBe('e-40');
    expect(ages(expired(all, NOW, 30))).toEqual(['e-60', 'e-90']);
    expect(ages(expired(all, NOW, 1))).toEqual(['e-2', 'e-5', 'e-60', 'e-90']);
  });

  it('keeps everything when nothing is old, and removes every expired copy when none is verified', () => {
    expect(expired([backup(1), backup(2)], NOW, 30)).toEqual([]);
    expect(ages(expired([backup(31, 'failed'), backup(35, 'unverified')], NOW, 30))).toEqual([
      'e-31',
      'e-35',
    ]);
  });
});

describe('the incremental chain', () => {
  it('keeps the full backup that the oldest kept incremental builds on, however old', () => {
    const base = backup(40);
    const older = backup(45);
    const incremental = {
      ...backup(3),
      kind: 'incremental' as const,
      window: { since: base.window.until, until: backup(3).window.until },
    };
    expect(baseOfIncrementals([older, base, backup(1)], [incremental])?.executionId).toBe('e-40');
    expect(ages(expired([older, base, backup(1)], NOW, 30, [base]))).toEqual(['e-45']);
    expect(baseOfIncrementals([older, base], [])).toBeUndefined();
  });
});

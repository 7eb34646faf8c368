import { describe, expect, it } from 'vitest';
import type { DatabaseManifest as Manifest } from '../../shared/catalog/manifest.ts';
import { baseOfIncrementals, expired, newestVerified, RETENTION } from '../../shared/catalog/retention.ts';
import { pastBackup } from '../support/manifests.ts';

const NOW = new Date('2026-11-26T02:00:00Z');

const backup = (daysAgo: number, state: Manifest['verification']['state'] = 'verified') =>
  pastBackup({ daysAgo, now: NOW, state });

/** The ages, in days, of the given backups. */
const ages = (ms: Manifest[]) => ms.map((m) => `e-${m.executionId.split('-').at(-1)}`);

describe('retention of full backups', () => {
  it('follows the source document: full 30 days in S3 and 7 on the host, incremental 7, logs 1 on the host and 7 years in S3, configuration 90, application 30, static 7', () => {
    expect(RETENTION).toEqual({
      full: { s3Days: 30, localDays: 7 },
      incremental: { s3Days: 7, localDays: 7 },
      'transaction-logs': { s3Days: 2555, localDays: 1 },
      configuration: { s3Days: 90, localDays: 90 },
      application: { s3Days: 30, localDays: 30 },
      static: { s3Days: 7, localDays: 7 },
      safety: { s3Days: 30, localDays: 7 },
    });
  });

  it('removes only what is older than the window', () => {
    const all = [0, 1, 6, 8, 29, 31, 45, 400].map((d) => backup(d));
    expect(ages(expired(all, NOW, 30))).toEqual(['e-31', 'e-45', 'e-400']);
    expect(ages(expired(all, NOW, 7))).toEqual(['e-8', 'e-29', 'e-31', 'e-45', 'e-400']);
  });

  it('always keeps the newest verified backup, even older than the window', () => {
    const all = [backup(2, 'failed'), backup(5, 'unverified'), backup(40), backup(60), backup(90, 'failed')];
    expect(newestVerified(all)?.executionId).toBe('e-full-40');
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
    expect(baseOfIncrementals([older, base, backup(1)], [incremental])?.executionId).toBe('e-full-40');
    expect(ages(expired([older, base, backup(1)], NOW, 30, [base]))).toEqual(['e-45']);
    expect(baseOfIncrementals([older, base], [])).toBeUndefined();
  });
});

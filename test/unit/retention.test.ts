import { describe, expect, it } from 'vitest';
import { AUDIT_PREFIX } from '../../shared/catalog/keys.ts';
import type { DatabaseManifest as Manifest } from '../../shared/catalog/manifest.ts';
import {
  AUDIT_DAYS,
  DATA_CLASSES,
  expired,
  keptDays,
  lifecycleRules,
  newestVerified,
  POINT_IN_TIME_DAYS,
  RETENTION,
  reachesPrefix,
} from '../../shared/catalog/retention.ts';
import { pastBackup } from '../support/manifests.ts';

const NOW = new Date('2026-11-26T02:00:00Z');

const backup = (daysAgo: number, state: Manifest['verification']['state'] = 'verified') =>
  pastBackup({ daysAgo, now: NOW, state });

/** The ages, in days, of the given backups. */
const ages = (ms: Manifest[]) => ms.map((m) => `e-${m.executionId.split('-').at(-1)}`);

describe('retention of full backups', () => {
  it('follows the source document: full 30 days in S3 and 7 on the host, the monthly dump 7 years (the host keeps the newest), configuration 90, application 30, static 7; the legacy row-window kinds keep their old retention', () => {
    const days = Object.fromEntries(
      Object.entries(RETENTION).map(([kind, r]) => [kind, { s3Days: r.s3Days, localDays: r.localDays }]),
    );
    expect(days).toEqual({
      full: { s3Days: 30, localDays: 7 },
      monthly: { s3Days: 2557, localDays: 1 },
      safety: { s3Days: 30, localDays: 7 },
      incremental: { s3Days: 7, localDays: 7 },
      'transaction-logs': { s3Days: 2557, localDays: 1 },
      configuration: { s3Days: 90, localDays: 90 },
      application: { s3Days: 30, localDays: 30 },
      static: { s3Days: 7, localDays: 7 },
    });
    // Each row says which copy it is and for which class of data.
    expect(RETENTION.monthly.serves).toMatch(
      /every table, the log tables included.*Financial data.*7 years.*operational data.*3 years/s,
    );
    expect(RETENTION.full.serves).toContain("The log tables' rows are left out");
    expect(RETENTION.incremental.serves).toMatch(/^Legacy row-window/);
    expect(RETENTION['transaction-logs'].serves).toMatch(/^Legacy row-window/);
  });

  it('keeps every class of data at least as long as the source document asks, by the copy that serves it', () => {
    expect(DATA_CLASSES.map((c) => [c.data, c.keptBy])).toEqual([
      ['every committed change, to any second', 'pgbackrest'],
      ['a database as of a day (full backups)', 'full'],
      ['financial data (payments, invoices, refunds)', 'monthly'],
      ['operational data (users, pets, bookings, logs, audit trails)', 'monthly'],
      ['configuration', 'configuration'],
    ]);
    for (const c of DATA_CLASSES) expect(keptDays(c.keptBy), c.data).toBeGreaterThanOrEqual(c.keepDays);
    // 7 and 3 years, leap days included.
    expect(DATA_CLASSES[2]?.keepDays).toBe(7 * 365 + 2);
    expect(DATA_CLASSES[3]?.keepDays).toBe(3 * 365 + 1);
    expect(keptDays('pgbackrest')).toBe(POINT_IN_TIME_DAYS);
  });

  it('keeps the audit trail as long as the longest class of data, and longer than every archive', () => {
    expect(AUDIT_DAYS).toBe(7 * 365 + 2);
    expect(AUDIT_DAYS).toBe(Math.max(...DATA_CLASSES.map((c) => c.keepDays)));
    expect(AUDIT_DAYS).toBeGreaterThanOrEqual(Math.max(...Object.values(RETENTION).map((r) => r.s3Days)));
    // No lifecycle rule expires or moves it: a report reads a month's histories back.
    expect(lifecycleRules().filter((r) => reachesPrefix(r, AUDIT_PREFIX))).toEqual([]);
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

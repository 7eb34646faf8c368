import { describe, expect, it } from 'vitest';
import { micros } from '../../shared/catalog/manifest.ts';
import { expectedSeconds, recoveryRecord } from '../../shared/catalog/recoveries.ts';
import { recoveryTargetTime } from '../../shared/restore/point-in-time.ts';

describe('micros', () => {
  it('orders PostgreSQL microsecond times against times a person typed, which text comparison gets wrong', () => {
    const fromPostgres = '2026-11-26T05:03:04.231459Z';
    const typed = '2026-11-26T05:03:04.231Z';
    expect(fromPostgres < typed).toBe(true); // as text: wrong
    expect(micros(fromPostgres)).toBeGreaterThan(micros(typed));
    expect(micros(fromPostgres) - micros(typed)).toBe(459);
  });

  it('reads a zone offset and a missing fraction', () => {
    expect(micros('2026-11-26T11:30:00+01:00')).toBe(micros('2026-11-26T10:30:00.000000Z'));
    expect(micros('2026-11-26T10:30:00.5Z') - micros('2026-11-26T10:30:00Z')).toBe(500_000);
  });
});

describe('recoveryTargetTime', () => {
  it('writes an ISO time with its zone as recovery_target_time reads it, every digit kept', () => {
    expect(recoveryTargetTime('2026-11-26T10:30:00Z')).toBe('2026-11-26 10:30:00+00');
    expect(recoveryTargetTime('2026-11-26T11:30:00.123456+01:00')).toBe('2026-11-26 11:30:00.123456+01:00');
    expect(() => recoveryTargetTime('2026-11-26 10:30:00')).toThrow('with a zone');
  });
});

describe('the measured recovery rate', () => {
  const measured = {
    target: 'local',
    source: 'point-in-time-recovery' as const,
    runId: '20261130T020000Z_0123abcd',
    executionId: 'x',
    measuredAt: '2026-11-30T02:00:00.000Z',
    set: '20261130-010000F',
  };

  it('is seconds of restore and replay per GB of the restored cluster, and gives a set of another size its time', () => {
    const record = recoveryRecord({ ...measured, backupBytes: 2e9, restoreSeconds: 30, recoverySeconds: 10 });
    expect(record.secondsPerGB).toBe(20);
    expect(expectedSeconds(record, 5e9)).toBe(100);
  });

  it('counts a set under 1 MB as 1 MB, so an empty cluster gives no infinite rate', () => {
    const record = recoveryRecord({ ...measured, backupBytes: 0, restoreSeconds: 1, recoverySeconds: 1 });
    expect(record.secondsPerGB).toBe(2000);
  });
});

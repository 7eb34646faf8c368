import { describe, expect, it } from 'vitest';
import { micros } from '../../shared/catalog/manifest.ts';
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

import { describe, expect, it } from 'vitest';
import { micros } from '../../shared/catalog/manifest.ts';
import type { PhysicalRecord } from '../../shared/catalog/physical.ts';
import { expectedSeconds, recoveryRecord } from '../../shared/catalog/recoveries.ts';
import {
  recoverableWindows,
  recoveryTargetTime,
  recoveryTimeline,
  resumesAfter,
} from '../../shared/restore/point-in-time.ts';

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

describe('the timeline a recovery follows', () => {
  // Timeline 2 began (its history file archived) at 10:00, timeline 3 at 11:00.
  const at = (time: string) => Date.parse(`2026-11-30T${time}Z`);
  const begun = [
    { timeline: 2, at: at('10:00:00') },
    { timeline: 3, at: at('11:00:00') },
  ];

  it('is the newest for a recovery to the end of the WAL', () => {
    expect(recoveryTimeline(1, 3, begun).timeline).toBe(3);
  });

  it("is production's at the target time: a target before a whole-cluster recovery's promotion stays on the old timeline", () => {
    const before = recoveryTimeline(1, 3, begun, at('09:59:59'));
    expect(before.timeline).toBe(1);
    expect(before.reason).toContain('timeline 2 began only at 2026-11-30T10:00:00.000Z, after the target');
    expect(recoveryTimeline(1, 3, begun, at('10:30:00')).timeline).toBe(2);
    const newest = recoveryTimeline(1, 3, begun, at('11:00:00'));
    expect(newest).toEqual({
      timeline: 3,
      reason:
        "production's timeline at the target time (production's since 2026-11-30T11:00:00.000Z), the newest",
    });
  });

  it("is never older than the base backup's", () => {
    expect(recoveryTimeline(2, 3, [{ timeline: 3, at: at('11:00:00') }], at('10:30:00')).timeline).toBe(2);
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

describe('a gap in the WAL', () => {
  // A full before the gap, one segment lost, the newest full taken after it.
  const backup = (label: string, archiveStart: string, stoppedAt: string) =>
    ({ label, backup: { archiveStart, stoppedAt } }) as PhysicalRecord;
  const backups = [
    backup('20261130-230000F', '000000010000000000000002', '2026-11-30T23:00:00.000Z'),
    backup('20261130-230740F', '000000010000000000000007', '2026-11-30T23:07:43.000Z'),
  ];
  const gap = {
    first: '000000010000000000000005',
    last: '000000010000000000000005',
    after: '2026-11-30T23:05:45.000Z',
  };

  it('loses everything from its start until the consistent point of the first backup taken after it', () => {
    const resumes = resumesAfter(gap, backups);
    expect(resumes).toEqual({ label: '20261130-230740F', at: '2026-11-30T23:07:44.000Z' });
    expect(
      recoverableWindows('2026-11-30T23:00:01.000Z', '2026-11-30T23:10:00.000Z', [{ ...gap, resumes }]),
    ).toEqual([
      { from: '2026-11-30T23:00:01.000Z', to: '2026-11-30T23:05:45.000Z' },
      { from: '2026-11-30T23:07:44.000Z', to: '2026-11-30T23:10:00.000Z' },
    ]);
  });

  it('ends the last window at a gap no backup was taken after', () => {
    const late = {
      ...gap,
      first: '000000010000000000000009',
      last: '000000010000000000000009',
      after: '2026-11-30T23:09:10.000Z',
    };
    expect(resumesAfter(late, backups)).toBeUndefined();
    expect(
      recoverableWindows('2026-11-30T23:00:01.000Z', '2026-11-30T23:20:00.000Z', [
        { ...gap, resumes: resumesAfter(gap, backups) },
        { ...late, resumes: undefined },
      ]),
    ).toEqual([
      { from: '2026-11-30T23:00:01.000Z', to: '2026-11-30T23:05:45.000Z' },
      { from: '2026-11-30T23:07:44.000Z', to: '2026-11-30T23:09:10.000Z' },
    ]);
  });

  it('merges a second gap that falls where recovery was already lost', () => {
    const second = {
      ...gap,
      first: '000000010000000000000006',
      last: '000000010000000000000006',
      after: '2026-11-30T23:06:30.000Z',
    };
    expect(
      recoverableWindows('2026-11-30T23:00:01.000Z', '2026-11-30T23:10:00.000Z', [
        { ...gap, resumes: resumesAfter(gap, backups) },
        { ...second, resumes: resumesAfter(second, backups) },
      ]),
    ).toEqual([
      { from: '2026-11-30T23:00:01.000Z', to: '2026-11-30T23:05:45.000Z' },
      { from: '2026-11-30T23:07:44.000Z', to: '2026-11-30T23:10:00.000Z' },
    ]);
  });
});

import type { FileKind, SCHEDULED_DATABASE_KINDS } from './keys.ts';

export type ScheduledKind = (typeof SCHEDULED_DATABASE_KINDS)[number] | FileKind;

/**
 * How often each scheduled backup runs (UTC), from the source document. The
 * EventBridge schedules in serverless.yml run these crons; the daily
 * verification and the monitoring call a kind stale when its newest verified
 * backup is older than its interval plus a grace period.
 */
export const SCHEDULES: Record<ScheduledKind, { cron: string; everyMinutes: number }> = {
  full: { cron: 'cron(0 2 * * ? *)', everyMinutes: 24 * 60 },
  // The long-term dump, on the first of each month after the daily work (the
  // full at 02:00, the files from 03:00); the longest month is its interval.
  monthly: { cron: 'cron(0 4 1 * ? *)', everyMinutes: 31 * 24 * 60 },
  incremental: { cron: 'cron(0 */6 * * ? *)', everyMinutes: 6 * 60 },
  'transaction-logs': { cron: 'cron(0/15 * * * ? *)', everyMinutes: 15 },
  configuration: { cron: 'cron(0 3 * * ? *)', everyMinutes: 24 * 60 },
  application: { cron: 'cron(15 3 * * ? *)', everyMinutes: 24 * 60 },
  static: { cron: 'cron(30 3 * * ? *)', everyMinutes: 24 * 60 },
};

/**
 * How old the newest archived WAL may get: a segment switched now must be in the
 * repository within this. The 15-minute WAL run and the daily verification wait
 * this long for the segment they switch (archive_timeout is 60 s, and pushing a
 * 16 MiB segment takes seconds), so a slower archive fails them.
 */
export const WAL_ARCHIVE_MAX_AGE_SECONDS = 300;

/** A run may be late or take a while: an hour, or one interval for the 15-minute WAL runs. */
export function maxAgeMinutes(kind: ScheduledKind): number {
  const { everyMinutes } = SCHEDULES[kind];
  return everyMinutes + Math.min(60, everyMinutes);
}

import type { Catalog } from '../catalog/catalog.ts';
import { FILE_KINDS, SCHEDULED_DUMP_KINDS } from '../catalog/keys.ts';
import type { Manifest } from '../catalog/manifest.ts';
import { maxAgeMinutes, SCHEDULES, type ScheduledKind } from '../catalog/schedule.ts';
import type { Config } from '../core/config.ts';

/** The newest backups of one kind, target and database (none for files), as the catalog has them. */
export interface Newest {
  target: string;
  kind: ScheduledKind;
  database: string | null;
  /** `full backup of kennel_prod on primary`, for people. */
  subject: string;
  /** The newest manifest key of any state, verified or not. */
  newestKey: string | undefined;
  /** The newest usable one (verified, and not failed its restore test): what a `latest` restore would use. */
  newestUsable: Manifest | undefined;
}

/**
 * The newest usable archive (verified, and not failed its restore test) of every
 * scheduled dump and file kind of every target (and database): a listing of the last days and a few reads each,
 * however long the history. The physical kinds are judged from pgBackRest's own
 * info (the daily verification's WAL runs).
 */
export async function newestBackups(config: Config, catalog: Catalog, now = new Date()): Promise<Newest[]> {
  const all: Newest[] = [];
  for (const target of config.BACKUP_TARGETS) {
    const catalogs: { kind: ScheduledKind; database: string | null }[] = [
      ...(target.databases ?? [target.database]).flatMap((database) =>
        SCHEDULED_DUMP_KINDS.map((kind) => ({ kind, database })),
      ),
      ...FILE_KINDS.map((kind) => ({ kind, database: null })),
    ];
    for (const { kind, database } of catalogs) {
      all.push({
        target: target.name,
        kind,
        database,
        subject: `${kind} backup of ${database ?? 'the files'} on ${target.name}`,
        ...(await catalog.newestOf(kind, target.name, database, now)),
      });
    }
  }
  return all;
}

const MINUTE_MS = 60_000;

/** How old the newest usable backup's data is, in seconds; null when there is none. */
export function ageSeconds(newest: Newest, now: Date): number | null {
  const until = newest.newestUsable?.window.until;
  return until === undefined ? null : Math.round((now.getTime() - Date.parse(until)) / 1000);
}

function age(seconds: number): string {
  const minutes = Math.round(seconds / 60);
  return minutes < 120 ? `${minutes} min` : `${(minutes / 60).toFixed(1)} h`;
}

const every = (minutes: number) => (minutes < 60 ? `${minutes} min` : `${minutes / 60} h`);

/**
 * What is wrong with a kind's freshness, in words; undefined when its newest
 * usable backup is recent enough. A backup that failed its restore test does not
 * count: no implicit restore would use it.
 */
export function staleness(newest: Newest, now: Date): string | undefined {
  return stalenessOf(newest.newestUsable?.window.until, newest.kind, now, {
    none: 'there is no usable backup at all (verified, and not failed its restore test)',
    newest: 'the newest verified one',
  });
}

/**
 * The same judgement of a backup known otherwise (a pgBackRest backup, from its
 * info): `until` is when its data ends (ISO time), `words` how to name it.
 */
export function stalenessOf(
  until: string | undefined,
  kind: ScheduledKind,
  now: Date,
  words: { none: string; newest: string },
): string | undefined {
  if (until === undefined) return words.none;
  const seconds = Math.round((now.getTime() - Date.parse(until)) / 1000);
  if (seconds * 1000 <= maxAgeMinutes(kind) * MINUTE_MS) return undefined;
  return `${words.newest} is from ${until} (${age(seconds)} ago); one is expected every ${every(SCHEDULES[kind].everyMinutes)}`;
}

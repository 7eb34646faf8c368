import type { Catalog } from './catalog.ts';
import { keyDay, LEGACY_DUMP_KINDS, type LegacyDumpKind } from './keys.ts';

/**
 * The row-window archives of the past (keys.ts's LEGACY_DUMP_KINDS): what is
 * said of them wherever the catalog is listed, verified or restored from.
 */

/** Why a legacy archive is never restored, and where to go instead: the one wording. */
export function legacyArchiveNote(kind: LegacyDumpKind, key: string): string {
  return `${key} is a legacy row-window ${kind} archive: its rows were chosen by a time window, which misses deleted rows, rows written by a transaction open across a backup and rows stamped behind the server's clock, so it is never restored. To recover to a point in time, start the point-in-time-recovery workflow with {"database", "targetTime"}: it recovers from pgBackRest's backups and WAL, to any second of the point-in-time window. To restore a whole database, name a full, monthly or safety backup.`;
}

/** A legacy catalog of one target and database, as its keys show it (no manifest is read). */
export interface LegacyListing {
  state: 'legacy';
  kind: LegacyDumpKind;
  target: string;
  database: string;
  archives: number;
  /** The days (YYYY-MM-DD) of the oldest and newest archive's run. */
  oldest: string | null;
  newest: string | null;
  note: string;
}

/**
 * The legacy archives of a target's database, one entry per kind that has any:
 * counted from a listing of their manifest keys, which are pruned by the kinds'
 * old retention (shared/backup/stages.ts) until none is left.
 */
export async function legacyArchives(
  catalog: Catalog,
  target: string,
  database: string,
): Promise<LegacyListing[]> {
  const listings = await Promise.all(
    LEGACY_DUMP_KINDS.map(async (kind): Promise<LegacyListing | undefined> => {
      const keys = await catalog.manifestKeys(kind, target, database);
      if (keys.length === 0) return undefined;
      return {
        state: 'legacy',
        kind,
        target,
        database,
        archives: keys.length,
        oldest: keyDay(keys[0] as string) ?? null,
        newest: keyDay(keys.at(-1) as string) ?? null,
        note: `Row-window ${kind} archives, no longer made: kept until their old retention runs out and refused for every restore; a point in time is recovered by the point-in-time-recovery workflow from pgBackRest's backups and WAL.`,
      };
    }),
  );
  return listings.filter((l) => l !== undefined);
}

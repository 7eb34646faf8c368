import { MAX_EXECUTION_SECONDS } from '../../statemachines/steps.ts';
import type { Config } from '../core/config.ts';
import * as z from '../core/schema.ts';
import type { Catalog, ListedObject } from './catalog.ts';
import { type BackupKind, kindPrefix, MANIFEST_SUFFIX, manifestKey } from './keys.ts';

/**
 * What a run leaves behind when it ends without cleaning up (a host command
 * killed by its timeout or a cancel runs no trap; a Lambda that dies writes no
 * manifest): an archive in S3 without its manifest (a dump cut short, a disk
 * full on the host after the upload), a partial archive or a work directory on
 * the host, a side cluster (a restore test's or a recovery's), a scratch or
 * staging database. The daily verification reports them; pruning removes them
 * once they are older than `leftoverMinAgeSeconds`, and the next restore test or
 * recovery of the target removes a side cluster.
 */

/**
 * How old a leftover must be, in seconds, before it is removed: a day, or the
 * host command timeout when that is longer. The rule is the workflows' maximum
 * duration, not the run lock: Step Functions ends every execution within
 * MAX_EXECUTION_SECONDS (a day) whatever it is doing, and a host command ends
 * within its own timeout even if nothing cancels it, so whatever a run made
 * longer ago than both belongs to a run that has ended. The lock could not say
 * as much: only backups and restores take one, while restore tests, drills and
 * recoveries leave scratch databases too, and a crashed run's lock is itself
 * what is stale. The age of S3 objects and host files is their last write
 * (never before the run started); a database's is the run's start in its name.
 */
export function leftoverMinAgeSeconds(config: Pick<Config, 'HOST_COMMAND_TIMEOUT_SECONDS'>): number {
  return Math.max(MAX_EXECUTION_SECONDS, config.HOST_COMMAND_TIMEOUT_SECONDS);
}

/** One leftover, as the verification reports it and pruning names what it removed. */
export const leftoverSchema = z.object({
  /**
   * `s3`: an archive without manifest; `file`: a partial archive on the host;
   * `work`: a host script's work directory; `side`: a side cluster's directory
   * whose run has ended (no run holds its area's lock: host/common.sh
   * host_leftovers), whatever its age; `database`: a scratch or staging database.
   */
  where: z.enum(['s3', 'file', 'work', 'side', 'database']),
  /** The object key, the path on the host, or the database's name. */
  name: z.string().check(z.maxLength(1024)),
  bytes: z.int().check(z.nonnegative()),
  ageSeconds: z.int(),
});

export type Leftover = z.infer<typeof leftoverSchema>;

/** Every object of one catalog (kind, target and database; none for files) that is an archive with no manifest beside it. */
export async function orphanArchives(
  catalog: Catalog,
  kind: BackupKind,
  target: string,
  database: string | null,
  now: Date,
): Promise<Leftover[]> {
  return orphansAmong(await catalog.listObjects(kindPrefix(kind, target, database)), now);
}

/** The archives among one catalog's listed objects that have no manifest beside them. */
export function orphansAmong(objects: readonly ListedObject[], now: Date): Leftover[] {
  const keys = new Set(objects.map((o) => o.key));
  return objects
    .filter((o) => !o.key.endsWith(MANIFEST_SUFFIX) && !keys.has(manifestKey(o.key)))
    .map((o) => ({
      where: 's3' as const,
      name: o.key,
      bytes: o.bytes,
      ageSeconds: Math.floor((now.getTime() - o.lastModified.getTime()) / 1000),
    }));
}

/** `12.3 MiB, 26.0 h old`: a leftover's size and age for people. */
export function describeLeftover(leftover: Leftover): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let size = leftover.bytes;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  const what = {
    s3: 'archive without a manifest',
    file: 'partial archive on the host',
    work: "host script's work directory",
    side: 'side cluster (a restored copy of the cluster, its postgres perhaps still running) of a restore test or recovery that has ended',
    database: 'scratch or staging database',
  }[leftover.where];
  return `${what} ${leftover.name} (${unit === 0 ? size : size.toFixed(1)} ${units[unit]}, ${(leftover.ageSeconds / 3600).toFixed(1)} h old)`;
}

import { DAY_MS } from '../core/time.ts';
import { type BackupKind, KIND_PREFIX, PGBACKREST_PREFIX } from './keys.ts';
import type { Manifest } from './manifest.ts';

/**
 * The one retention table, from the source document. The prune stage and the
 * bucket's lifecycle rules are both derived from it.
 */
export const RETENTION: Record<BackupKind, { s3Days: number; localDays: number }> = {
  full: { s3Days: 30, localDays: 7 },
  incremental: { s3Days: 7, localDays: 7 },
  // The full dump leaves the audit and session logs out, so these archives are
  // their only copy: audit data is kept 7 years in S3 (the compliance class);
  // the source document's 24 hours applies to the host's copies.
  'transaction-logs': { s3Days: 7 * 365, localDays: 1 },
  // What a restore replaced: long enough to notice a restore was the wrong one.
  safety: { s3Days: 30, localDays: 7 },
  configuration: { s3Days: 90, localDays: 90 },
  application: { s3Days: 30, localDays: 30 },
  static: { s3Days: 7, localDays: 7 },
};

/**
 * The point-in-time window, in days: pgBackRest keeps the full backups (and every
 * WAL segment after the oldest of them) that a recovery to any second of the last
 * this many days needs (repo1-retention-full-type=time), and never its newest full.
 */
export const POINT_IN_TIME_DAYS = 35;

/** The newest backup whose archive passed verification: never pruned, however old. */
export function newestVerified<M extends Manifest>(manifests: readonly M[]): M | undefined {
  return manifests
    .filter((m) => m.verification.state === 'verified')
    .reduce<M | undefined>((best, m) => (!best || m.window.until > best.window.until ? m : best), undefined);
}

/**
 * The backups older than `days` at `now`, by the time their data was taken,
 * except those to keep: by default the newest verified one among them. A caller
 * that passes only the old part of a catalog passes the newest verified of the
 * whole catalog instead.
 */
export function expired<M extends Manifest>(
  manifests: readonly M[],
  now: Date,
  days: number,
  keep: readonly (Manifest | undefined)[] = [newestVerified(manifests)],
): M[] {
  const kept = new Set(keep.filter((m) => m !== undefined).map((m) => m.archive.key));
  const cutoff = now.getTime() - days * DAY_MS;
  return manifests.filter((m) => !kept.has(m.archive.key) && Date.parse(m.window.until) < cutoff);
}

/**
 * The full backup that the oldest incremental still kept builds on: the newest
 * verified full taken at or before that incremental's window starts. A restore
 * of any kept incremental needs it, however old.
 */
export function baseOfIncrementals(
  fulls: readonly Manifest[],
  keptIncrementals: readonly Manifest[],
): Manifest | undefined {
  const starts = keptIncrementals.map((m) => m.window.since).filter((s): s is string => s !== null);
  const [oldest] = starts.sort(); // ISO 8601 times sort as text
  if (oldest === undefined) return undefined;
  return newestVerified(fulls.filter((f) => f.window.until <= oldest));
}

/** Storage classes the lifecycle moves archives to, cheapest last. */
export type StorageClass = 'STANDARD_IA' | 'GLACIER' | 'DEEP_ARCHIVE';

export interface StorageTransitions {
  /** Lifecycle rule id, shown in the S3 console. */
  id: string;
  prefix: string;
  transitions: readonly { days: number; storageClass: StorageClass }[];
}

/** The one table of storage transitions per prefix, from the source document's "Cloud Storage Lifecycle". */
export const STORAGE_TRANSITIONS: readonly StorageTransitions[] = [
  {
    id: 'DatabaseBackups',
    prefix: 'database/',
    transitions: [
      { days: 30, storageClass: 'STANDARD_IA' },
      { days: 90, storageClass: 'GLACIER' },
      { days: 365, storageClass: 'DEEP_ARCHIVE' },
    ],
  },
];

/** Incomplete multipart uploads (an interrupted `aws s3 cp` from the host) are billed until aborted. */
export const ABORT_INCOMPLETE_UPLOAD_DAYS = 1;

/** A rule of `AWS::S3::Bucket` `LifecycleConfiguration.Rules`, as CloudFormation spells it. */
export interface LifecycleRule {
  Id: string;
  Status: 'Enabled';
  Prefix: string;
  /** Only where the source document moves the prefix to cheaper storage (database/). */
  Transitions?: { TransitionInDays: number; StorageClass: StorageClass }[];
  NoncurrentVersionExpiration: { NoncurrentDays: number };
  ExpiredObjectDeleteMarker: true;
  AbortIncompleteMultipartUpload: { DaysAfterInitiation: number };
}

/**
 * The bucket's lifecycle rules, derived from STORAGE_TRANSITIONS and RETENTION.
 *
 * No rule expires current versions (`ExpirationInDays`): retention is enforced by
 * the prune stage, which keeps the newest verified backup however old it is. A
 * lifecycle expiry cannot read manifests; after a month of failed backups it would
 * delete the last good one. Pruning leaves delete markers (the bucket is
 * versioned): the noncurrent versions are kept as long as the kind's retention, so
 * a wrong prune can be undone for that long, and the markers left without versions
 * are then removed.
 */
export function lifecycleRules(): LifecycleRule[] {
  return (Object.keys(RETENTION) as BackupKind[]).map((kind) => {
    const prefix = `${KIND_PREFIX[kind]}/`;
    const covering = STORAGE_TRANSITIONS.find((t) => prefix.startsWith(t.prefix));
    return {
      Id: `${covering?.id ?? 'Backups'}-${kind}`,
      Status: 'Enabled' as const,
      Prefix: prefix,
      ...(covering
        ? {
            Transitions: covering.transitions.map((t) => ({
              TransitionInDays: t.days,
              StorageClass: t.storageClass,
            })),
          }
        : {}),
      NoncurrentVersionExpiration: { NoncurrentDays: RETENTION[kind].s3Days },
      ExpiredObjectDeleteMarker: true as const,
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: ABORT_INCOMPLETE_UPLOAD_DAYS },
    };
  });
}

/**
 * Whether a lifecycle rule can act on some object whose key starts with
 * `prefix`. S3 applies a rule to the keys that start with its prefix (no prefix,
 * or an empty one, is every key); its other filters (tags, sizes) only narrow
 * that, and cannot be relied on to leave out objects nobody here tags or sizes.
 * So the rule reaches the prefix exactly when one of the two prefixes starts
 * with the other.
 */
export function reachesPrefix(rule: { Prefix?: string }, prefix: string): boolean {
  const own = rule.Prefix ?? '';
  return prefix.startsWith(own) || own.startsWith(prefix);
}

/**
 * The bucket's whole `LifecycleConfiguration`. Objects under 128 KB never
 * transition: manifests are small and every catalog listing reads them, which
 * GetObject cannot do once they are in Glacier or Deep Archive. No rule may
 * reach pgBackRest's repositories: pgBackRest expires them itself (after a
 * restore test passed), and a transition would leave WAL it must read in an
 * archive class it cannot read from.
 */
export function lifecycleConfiguration(): {
  Rules: LifecycleRule[];
  TransitionDefaultMinimumObjectSize: 'all_storage_classes_128K';
} {
  const rules = lifecycleRules();
  const reaching = rules.filter((r) => reachesPrefix(r, PGBACKREST_PREFIX)).map((r) => r.Id);
  if (reaching.length > 0) {
    throw new Error(
      `The lifecycle rules ${reaching.join(', ')} would act on ${PGBACKREST_PREFIX}, which pgBackRest alone manages; give them a prefix outside it.`,
    );
  }
  return { Rules: rules, TransitionDefaultMinimumObjectSize: 'all_storage_classes_128K' };
}

import { DAY_MS } from '../core/time.ts';
import { type BackupKind, HOST_OUTPUT_PREFIX, KIND_PREFIX, LOCK_PREFIX, PGBACKREST_PREFIX } from './keys.ts';
import type { Manifest } from './manifest.ts';

/** `years` whole years in days, a leap day every four: what "kept 7 years" must cover. */
const years = (n: number) => n * 365 + Math.ceil(n / 4);

export interface Retention {
  /** Days an archive is kept in S3, from when its data was taken; the prune stage never removes a kind's newest verified one. */
  s3Days: number;
  /** Days the host keeps its copies (the newest verified one however old). */
  localDays: number;
  /** Which copy this is and which class of data it keeps, from the source document. */
  serves: string;
}

/**
 * The one retention table of the archives, from the source document. The prune
 * stage and the bucket's lifecycle rules are both derived from it. pgBackRest's
 * backups and WAL are not archives of this table: they serve the point-in-time
 * window (POINT_IN_TIME_DAYS below), expired by pgBackRest itself, and no
 * lifecycle rule reaches them. DATA_CLASSES says which copy keeps which class.
 */
export const RETENTION: Record<BackupKind, Retention> = {
  full: {
    s3Days: 30,
    localDays: 7,
    serves:
      "The daily logical dump (source document: full backups, 30 days): portable restores of one database as of a day of the last 30. The log tables' rows are left out (EXCLUDED_TABLES): the physical backups and WAL keep them for the point-in-time window, the monthly dump for the long term.",
  },
  monthly: {
    s3Days: years(7),
    localDays: 1,
    serves:
      'The long-term copy: a logical dump of every table, the log tables included, on the first of each month. Financial data (payments, invoices, refunds) must be kept 7 years and operational data (users, pets, bookings, logs and audit trails) 3 years; one dump holds both, so it is kept for the longer. The host keeps only the newest.',
  },
  // What a restore replaced: long enough to notice a restore was the wrong one.
  safety: {
    s3Days: 30,
    localDays: 7,
    serves:
      'What a restore replaced: a dump of everything, long enough to notice the restore was the wrong one.',
  },
  incremental: {
    s3Days: 7,
    localDays: 7,
    serves:
      'Legacy row-window incrementals, no longer made: pruned by their old retention (7 days), never restored.',
  },
  'transaction-logs': {
    s3Days: years(7),
    localDays: 1,
    serves:
      "Legacy row-window log archives, no longer made: they were the log tables' only copy, so they keep their 7 years; never restored.",
  },
  configuration: { s3Days: 90, localDays: 90, serves: 'Configuration (source document: 90 days).' },
  application: { s3Days: 30, localDays: 30, serves: 'The application tree, for a rebuild of the host.' },
  static: { s3Days: 7, localDays: 7, serves: 'Static files, for a rebuild of the host.' },
};

/**
 * The point-in-time window, in days: pgBackRest keeps the full backups (and every
 * WAL segment after the oldest of them) that a recovery to any second of the last
 * this many days needs (repo1-retention-full-type=time), and never its newest full.
 */
export const POINT_IN_TIME_DAYS = 35;

/**
 * The source document's classes of data, how long each must be recoverable and
 * the copy that keeps it that long (`pgbackrest`: the physical backups and the
 * WAL, for the point-in-time window). A unit test holds each copy's retention to
 * its class.
 */
export const DATA_CLASSES: readonly { data: string; keepDays: number; keptBy: BackupKind | 'pgbackrest' }[] =
  [
    { data: 'every committed change, to any second', keepDays: POINT_IN_TIME_DAYS, keptBy: 'pgbackrest' },
    { data: 'a database as of a day (full backups)', keepDays: 30, keptBy: 'full' },
    { data: 'financial data (payments, invoices, refunds)', keepDays: years(7), keptBy: 'monthly' },
    {
      data: 'operational data (users, pets, bookings, logs, audit trails)',
      keepDays: years(3),
      keptBy: 'monthly',
    },
    { data: 'configuration', keepDays: 90, keptBy: 'configuration' },
  ];

/**
 * Object Lock's modes, as S3 names them: `GOVERNANCE` (a principal granted
 * s3:BypassGovernanceRetention may still shorten a lock or delete a locked
 * version, so a mistaken deploy can be undone) or `COMPLIANCE` (no one may,
 * the account's root user included, until the version's date).
 */
export const OBJECT_LOCK_MODES = ['GOVERNANCE', 'COMPLIANCE'] as const;
export type ObjectLockMode = (typeof OBJECT_LOCK_MODES)[number];

/**
 * Days every version written to the bucket is locked from its creation: the
 * bucket's default retention, which S3 keeps one of per bucket. It protects
 * what no writer locks itself: pgBackRest's repository (pgBackRest sends no
 * retention), the manifests, the records and the run locks. It covers every
 * repository file a recovery within the point-in-time window needs: the base
 * full is the newest one older than the window (a day older with daily fulls),
 * and a week more leaves time for fulls that fail before the daily
 * verification's alert is acted on.
 */
export const DEFAULT_LOCK_DAYS = POINT_IN_TIME_DAYS + 7;

/**
 * Days an archive of `kind` is locked from its creation: its S3 retention,
 * and never less than the bucket's default (DEFAULT_LOCK_DAYS), which every
 * version gets the moment it is written: a lock can be lengthened, but
 * shortening one needs s3:BypassGovernanceRetention in governance mode and is
 * impossible in compliance mode, so VerifyArchive only lengthens it.
 */
export function lockDays(kind: BackupKind): number {
  return Math.max(RETENTION[kind].s3Days, DEFAULT_LOCK_DAYS);
}

/** The date until which an archive of `kind` written at `createdAt` stays locked (its retain-until date). */
export function lockedUntil(kind: BackupKind, createdAt: Date): Date {
  return new Date(createdAt.getTime() + lockDays(kind) * DAY_MS);
}

/** The bucket's `ObjectLockConfiguration`, as CloudFormation spells it: every new version locked DEFAULT_LOCK_DAYS in `mode`. */
export function objectLockConfiguration(mode: ObjectLockMode): {
  ObjectLockEnabled: 'Enabled';
  Rule: { DefaultRetention: { Mode: ObjectLockMode; Days: number } };
} {
  return {
    ObjectLockEnabled: 'Enabled',
    Rule: { DefaultRetention: { Mode: mode, Days: DEFAULT_LOCK_DAYS } },
  };
}

/**
 * Days the audit trail (keys.ts AUDIT_PREFIX: the exported execution histories
 * and the monthly audit reports) is kept: the longest class of the source
 * document, 7 years (financial data; its compliance note is HIPAA's, whose
 * documentation must be kept 6 years), so that the record of every backup
 * outlives the backups it describes. Nothing prunes or expires it; the bucket's
 * Object Lock locks each object for this long once it has one.
 */
export const AUDIT_DAYS = years(7);

/** How many days a copy keeps its data: an archive kind's S3 retention, or the point-in-time window. */
export function keptDays(copy: BackupKind | 'pgbackrest'): number {
  return copy === 'pgbackrest' ? POINT_IN_TIME_DAYS : RETENTION[copy].s3Days;
}

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

/** Incomplete multipart uploads (an interrupted upload from the host, host/s3-put.py) are billed until aborted. */
export const ABORT_INCOMPLETE_UPLOAD_DAYS = 1;

/**
 * Days a host command's whole output is kept (keys.ts HOST_OUTPUT_PREFIX): as
 * long as Step Functions keeps the history of the execution that sent it. It is
 * no backup, and may quote rows.
 */
export const HOST_OUTPUT_DAYS = 90;

/** A rule of `AWS::S3::Bucket` `LifecycleConfiguration.Rules`, as CloudFormation spells it. */
export interface LifecycleRule {
  Id: string;
  Status: 'Enabled';
  Prefix: string;
  /** Only where the source document moves the prefix to cheaper storage (database/). */
  Transitions?: { TransitionInDays: number; StorageClass: StorageClass }[];
  /** Only for what is no backup (host output): backups are expired by the prune stage, pgBackRest's files by pgBackRest. */
  ExpirationInDays?: number;
  NoncurrentVersionExpiration: { NoncurrentDays: number };
  /** S3 takes it only in a rule without ExpirationInDays, which removes the markers itself. */
  ExpiredObjectDeleteMarker?: true;
  AbortIncompleteMultipartUpload: { DaysAfterInitiation: number };
}

/**
 * The bucket's lifecycle rules, derived from STORAGE_TRANSITIONS and RETENTION,
 * the expiry of the host commands' output (HOST_OUTPUT_DAYS), and the removal
 * of the old versions pgBackRest and the run locks leave.
 *
 * No rule expires a backup's current version (`ExpirationInDays`): retention is enforced by
 * the prune stage, which keeps the newest verified backup however old it is. A
 * lifecycle expiry cannot read manifests; after a month of failed backups it would
 * delete the last good one. Pruning leaves delete markers (the bucket is
 * versioned): the noncurrent versions are kept as long as the kind's retention, so
 * a wrong prune can be undone for that long, and the markers left without versions
 * are then removed. A rule never removes a locked version: S3's lifecycle waits
 * for its retain-until date (Object Lock), then acts.
 *
 * pgBackRest overwrites backup.info and archive.info and its expire deletes the
 * current versions of what leaves the point-in-time window: each such version
 * stays locked until its date (DEFAULT_LOCK_DAYS from its writing), then goes a
 * day after it stopped being current. Nothing else reaches pgbackrest/. Every
 * run lock taken leaves a version behind it too: the same.
 */
export function lifecycleRules(): LifecycleRule[] {
  const backups = (Object.keys(RETENTION) as BackupKind[]).map((kind) => {
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
  const hostOutput: LifecycleRule = {
    Id: 'HostCommandOutput',
    Status: 'Enabled',
    Prefix: `${HOST_OUTPUT_PREFIX}/`,
    ExpirationInDays: HOST_OUTPUT_DAYS,
    NoncurrentVersionExpiration: { NoncurrentDays: 1 },
    AbortIncompleteMultipartUpload: { DaysAfterInitiation: ABORT_INCOMPLETE_UPLOAD_DAYS },
  };
  const oldVersionsOnly = (Id: string, Prefix: string): LifecycleRule => ({
    Id,
    Status: 'Enabled',
    Prefix,
    NoncurrentVersionExpiration: { NoncurrentDays: 1 },
    ExpiredObjectDeleteMarker: true,
    AbortIncompleteMultipartUpload: { DaysAfterInitiation: ABORT_INCOMPLETE_UPLOAD_DAYS },
  });
  return [
    ...backups,
    hostOutput,
    oldVersionsOnly('PgbackrestOldVersions', PGBACKREST_PREFIX),
    oldVersionsOnly('RunLockOldVersions', LOCK_PREFIX),
  ];
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
 * transition or expire a current version in pgBackRest's repositories:
 * pgBackRest expires them itself (after a restore test passed), and a
 * transition would leave WAL it must read in an archive class it cannot read
 * from; only the versions pgBackRest replaced or deleted are removed there,
 * once their lock has passed.
 */
export function lifecycleConfiguration(): {
  Rules: LifecycleRule[];
  TransitionDefaultMinimumObjectSize: 'all_storage_classes_128K';
} {
  const rules = lifecycleRules();
  const reaching = rules
    .filter((r) => reachesPrefix(r, PGBACKREST_PREFIX) && ('Transitions' in r || 'ExpirationInDays' in r))
    .map((r) => r.Id);
  if (reaching.length > 0) {
    throw new Error(
      `The lifecycle rules ${reaching.join(', ')} would transition or expire current versions under ${PGBACKREST_PREFIX}, which pgBackRest alone manages; give them a prefix outside it.`,
    );
  }
  return { Rules: rules, TransitionDefaultMinimumObjectSize: 'all_storage_classes_128K' };
}

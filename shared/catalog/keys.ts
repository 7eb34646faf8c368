import { createHash } from 'node:crypto';
import { CODECS, type CodecName } from '../core/codecs.ts';

/**
 * The one S3 key layout. Keys sort by time and are unique per run:
 *   database/full/<target>/<db>/2026/11/26/<db>_full_20261126T020000Z_1a2b3c4d.sql.zst
 * and every archive's manifest sits beside it at `<archive key>.manifest.json`.
 */

/**
 * The database family's kinds. The workflow takes one of the scheduled kinds as
 * input: `full` (daily: pgBackRest's full backup and the daily logical dump),
 * `monthly` (the logical dump of every table, the log tables' rows included,
 * kept for the long-term classes), `incremental` (pgBackRest's incremental
 * backup only) and `transaction-logs` (the WAL run only: a segment switch and
 * the proof that the archive has no gap).
 */
export const SCHEDULED_DATABASE_KINDS = ['full', 'monthly', 'incremental', 'transaction-logs'] as const;
export type ScheduledDatabaseKind = (typeof SCHEDULED_DATABASE_KINDS)[number];

/**
 * The logical dumps made now, each an archive with its manifest under its kind's
 * prefix. A `safety` dump is a dump of everything (log tables too) that a
 * restore takes of the database it is about to replace; it is kept apart from
 * the fulls.
 */
export const DUMP_KINDS = ['full', 'monthly', 'safety'] as const;
export type DumpKind = (typeof DUMP_KINDS)[number];

/** The dumps a schedule makes: their catalogs are checked for freshness, monitored and alarmed on. */
export const SCHEDULED_DUMP_KINDS = ['full', 'monthly'] as const satisfies readonly DumpKind[];

/**
 * The row-window archives of the past (rows chosen by updated_at or created_at
 * in a window): no longer made, since they lost rows silently (deleted rows,
 * transactions open across a snapshot, zone-less timestamps). Those already in a
 * catalog are listed as legacy, pruned by their old retention and refused for
 * every restore: a point in time is recovered from pgBackRest's backups and WAL.
 */
export const LEGACY_DUMP_KINDS = ['incremental', 'transaction-logs'] as const;
export type LegacyDumpKind = (typeof LEGACY_DUMP_KINDS)[number];

/** Every kind a database manifest may carry: the dumps made now and the legacy ones. */
export const DATABASE_KINDS = [...DUMP_KINDS, ...LEGACY_DUMP_KINDS] as const;
export type DatabaseKind = (typeof DATABASE_KINDS)[number];

export function isLegacyKind(kind: string): kind is LegacyDumpKind {
  return (LEGACY_DUMP_KINDS as readonly string[]).includes(kind);
}

/** The files family's kinds: tarballs of paths on the host; one workflow takes the kind as input. */
export const FILE_KINDS = ['configuration', 'application', 'static'] as const;
export type FileKind = (typeof FILE_KINDS)[number];

export type BackupKind = DatabaseKind | FileKind;

export const KIND_PREFIX: Record<BackupKind, string> = {
  full: 'database/full',
  monthly: 'database/monthly',
  incremental: 'database/incremental',
  'transaction-logs': 'database/transaction-logs',
  safety: 'database/safety',
  configuration: 'configuration',
  application: 'application',
  static: 'static',
};

/** Where archives live: the DB host may write under these and nothing else. */
export const BACKUP_PREFIXES = ['database/', 'configuration/', 'application/', 'static/'] as const;

/**
 * pgBackRest's repositories, one per target under `pgbackrest/<target>/`: managed
 * by pgBackRest alone (it writes, reads and expires them), so no lifecycle rule
 * reaches them and the DB host's grants there are pgBackRest's own.
 */
export const PGBACKREST_PREFIX = 'pgbackrest/';

/** A target's pgBackRest repository in the bucket: `pgbackrest/<target>/`. */
export const pgbackrestPrefix = (target: string) => `${PGBACKREST_PREFIX}${target}/`;

export const MANIFEST_SUFFIX = '.manifest.json';

/**
 * Where SSM Run Command puts the whole output of every host command
 * (SendCommand's OutputS3KeyPrefix): GetCommandInvocation returns only its first
 * characters. Raw host output may quote rows (a PostgreSQL DETAIL line), so it
 * stays in this bucket, under its key, and expires (retention.ts HOST_OUTPUT_DAYS).
 */
export const HOST_OUTPUT_PREFIX = 'host-output';

/**
 * The object the SSM agent writes for one stream of a command, when the stream
 * is not empty: `<prefix>/<command id>/<instance id>/awsrunShellScript/0.awsrunShellScript/<stream>`
 * (the folders of AWS-RunShellScript's one step, aws:runShellScript).
 */
export function hostOutputKey(commandId: string, instanceId: string, stream: 'stdout' | 'stderr'): string {
  return `${HOST_OUTPUT_PREFIX}/${commandId}/${instanceId}/awsrunShellScript/0.awsrunShellScript/${stream}`;
}

/**
 * The kinds pgBackRest takes (full and incremental backups of a whole cluster).
 * Their records live apart from the archives' manifests, under
 * PHYSICAL_RECORD_PREFIX: one per backup run,
 *   catalog/pgbackrest/<target>/2026/11/30/<run id>.json
 * The backup itself is in pgBackRest's repository (pgbackrest/<target>/), which
 * the host writes; the records are the Lambda's alone, so they sit under neither.
 */
export const PHYSICAL_KINDS = ['full', 'incremental'] as const;
export type PhysicalKind = (typeof PHYSICAL_KINDS)[number];
export const PHYSICAL_RECORD_PREFIX = 'catalog/pgbackrest/';

/** The record of one physical backup run of a target, by the run's start and id. */
export function physicalRecordKey(target: string, startedAt: string, id: string): string {
  const [y, m, d] = (startedAt.split('T')[0] ?? '').split('-');
  return `${physicalRecordsOf(target)}${y}/${m}/${d}/${id}.json`;
}

/** Where a target's physical records are listed from. */
export const physicalRecordsOf = (target: string) => `${PHYSICAL_RECORD_PREFIX}${target}/`;

/**
 * The record of each archive's creation (shared/catalog/archive-record.ts), one
 * JSON object per archive at `catalog/archives/<archive key>.json`: written once,
 * create-only, by VerifyArchive when it first sees the archive, locked as long
 * as the archive, and never under a backup prefix, where the DB host writes.
 */
export const ARCHIVE_RECORD_PREFIX = 'catalog/archives/';
export const archiveRecordKey = (archive: string) => `${ARCHIVE_RECORD_PREFIX}${archive}.json`;

/**
 * The measured recoveries of a target, one JSON object each (shared/catalog/recoveries.ts):
 * `catalog/recoveries/<target>/2026/11/30/<run id>.json`. Point-in-time recoveries
 * and drills write them; dry runs read the newest for the expected duration.
 */
export const RECOVERY_RECORD_PREFIX = 'catalog/recoveries/';
export const recoveriesOf = (target: string) => `${RECOVERY_RECORD_PREFIX}${target}/`;

export function recoveryRecordKey(target: string, measuredAt: string, id: string): string {
  const [y, m, d] = (measuredAt.split('T')[0] ?? '').split('-');
  return `${recoveriesOf(target)}${y}/${m}/${d}/${id}.json`;
}

/**
 * The check workflow's probes (shared/watch/check.ts): `check/<target>/<run id>.probe`,
 * written by the host as a backup is and removed by it at once. Nothing else is
 * kept there, so the host may delete under it and nowhere else.
 */
export const CHECK_PROBE_PREFIX = 'check/';

/**
 * The run locks (shared/core/run-lock.ts), one object each:
 * `locks/<target>/<scope>`, the scope a backup kind (`locks/primary/full`) or
 * `database/<name>` for restores into that database.
 */
export const LOCK_PREFIX = 'locks/';
export const lockKey = (target: string, scope: string) => `${LOCK_PREFIX}${target}/${scope}`;

/** Drill reports, kept for the auditor: `reports/drills/2026/11/26/<run id>.json` and `.md`. */
export function drillReportKey(startedAt: string, id: string, extension: 'json' | 'md'): string {
  const [y, m, d] = (startedAt.split('T')[0] ?? '').split('-');
  return `reports/drills/${y}/${m}/${d}/${id}.${extension}`;
}

/**
 * The report of a physical backup's restore test, beside the drills' for the
 * auditor: `reports/restore-tests/pgbackrest/<target>/2026/11/30/<run id>.json`.
 */
export function restoreTestReportKey(target: string, startedAt: string, id: string): string {
  const [y, m, d] = (startedAt.split('T')[0] ?? '').split('-');
  return `reports/restore-tests/pgbackrest/${target}/${y}/${m}/${d}/${id}.json`;
}

/**
 * The audit trail, kept beyond Step Functions' 90 days of history
 * (retention.ts AUDIT_DAYS): every ended execution's whole history, written
 * once when it ends (shared/audit/history-export.ts), and the monthly audit
 * reports (shared/audit/report.ts).
 */
export const AUDIT_PREFIX = 'audit/';
export const AUDIT_EXECUTIONS_PREFIX = `${AUDIT_PREFIX}executions/`;
export const AUDIT_REPORTS_PREFIX = `${AUDIT_PREFIX}reports/`;

/** A month as the audit trail names it: `2026-11`. */
export type AuditMonth = `${number}-${number}`;

/** Where a workflow's executions started in `month` (UTC) are: `audit/executions/database-backup/2026/11/`. */
export function executionHistoriesOf(workflow: string, month: string): string {
  return `${AUDIT_EXECUTIONS_PREFIX}${workflow}/${month.replace('-', '/')}/`;
}

/**
 * An ended execution's exported history, by the month it started in (UTC),
 * gzip-compressed JSON: `audit/executions/database-backup/2026/11/<execution name>.json.gz`.
 * Execution names are unique per state machine, so one key per execution.
 */
export function executionHistoryKey(workflow: string, startDate: string, name: string): string {
  return `${executionHistoriesOf(workflow, startDate.slice(0, 7))}${name}.json.gz`;
}

/** A month's audit report: `audit/reports/2026-11.json`, `.md` and `.html`. */
export function auditReportKey(month: string, extension: 'json' | 'md' | 'html'): string {
  return `${AUDIT_REPORTS_PREFIX}${month}.${extension}`;
}

/** `20261126T020000Z`: sortable, and safe in keys, file names and identifiers. */
export function compactStamp(iso: string): string {
  return `${iso.slice(0, 19).replace(/[-:]/g, '')}Z`;
}

/** Execution ids and names may be anything a person typed; the key gets 8 hex digits of them. */
export function runId(startedAt: string, executionId: string): string {
  const suffix = createHash('sha256').update(executionId).digest('hex').slice(0, 8);
  return `${compactStamp(startedAt)}_${suffix}`;
}

export function archiveFileName(database: string, kind: DatabaseKind, id: string, codec: CodecName): string {
  return `${database}_${kind}_${id}.sql.${CODECS[codec].extension}`;
}

export function tarballFileName(target: string, kind: FileKind, id: string, codec: CodecName): string {
  return `${target}_${kind}_${id}.tar.${CODECS[codec].extension}`;
}

/**
 * One catalog per kind, target and database (two hosts may both hold a
 * `kennel_prod`); file kinds have no database.
 */
export function kindPrefix(kind: BackupKind, target: string, database: string | null): string {
  return `${KIND_PREFIX[kind]}/${target}/${database === null ? '' : `${database}/`}`;
}

export function archiveKey(
  kind: BackupKind,
  target: string,
  database: string | null,
  startedAt: string,
  fileName: string,
): string {
  const [date] = startedAt.split('T');
  const [y, m, d] = (date ?? '').split('-');
  return `${kindPrefix(kind, target, database)}${y}/${m}/${d}/${fileName}`;
}

export function manifestKey(archive: string): string {
  return `${archive}${MANIFEST_SUFFIX}`;
}

/** Names of a restore's databases: staged, then renamed into place, the replaced one kept. */
export function stagingDatabase(id: string): string {
  return `kb_restoring_${id.toLowerCase()}`;
}

export function replacedDatabase(id: string): string {
  return `kb_replaced_${id.toLowerCase()}`;
}

/** A scratch database name for one run's restore test (at most 63 characters). */
export function scratchDatabase(id: string): string {
  return `kb_restore_test_${id.toLowerCase()}`;
}

/** The day a key was made on (`YYYY-MM-DD`, from its date folders), or undefined for a key of another shape. */
export function keyDay(key: string): string | undefined {
  const match = /\/(\d{4})\/(\d{2})\/(\d{2})\/[^/]+$/.exec(key);
  return match ? `${match[1]}-${match[2]}-${match[3]}` : undefined;
}

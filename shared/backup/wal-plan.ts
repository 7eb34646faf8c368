import { runId } from '../catalog/keys.ts';
import type { Target } from '../core/config.ts';
import { runIdentifier, targetName } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { pgbackrestOff } from '../host/pgbackrest-conf.ts';

/**
 * How far back a WAL run proves the repository whole: from the newest backup's
 * archive start (what a recovery from it to now replays: the 15-minute
 * transaction-logs run, which guards the RPO), or from the oldest kept
 * backup's (every window the point-in-time recovery offers: the daily
 * verification and the drill). A gap before the newest backup breaks only the
 * older windows: the daily verification names it, once a day, until those
 * backups expire, rather than every run of the day.
 */
export const WAL_PROOF_SCOPES = ['newest-backup', 'every-kept-backup'] as const;
export type WalProofScope = (typeof WAL_PROOF_SCOPES)[number];

/**
 * A WAL run: force a segment switch on a target's cluster, wait until that
 * segment is archived, and prove that every segment from a kept pgBackRest
 * backup (`proves`) to it is in the repository. The archiving itself is
 * PostgreSQL's (archive_command); this run makes the RPO hold even if
 * archive_timeout were unset, and catches a segment lost from the repository.
 * It writes nothing: the repository is pgBackRest's own catalog.
 */
export const walPlanSchema = z.object({
  /** What RouteRun (statemachines/database-backup.ts) sends a run to its states by. */
  engine: z.literal('wal'),
  kind: z.literal('transaction-logs'),
  target: targetName,
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  startedAt: z.iso.datetime({ offset: true }),
  /** From which backup the run proves the WAL whole (WAL_PROOF_SCOPES). */
  proves: z.enum(WAL_PROOF_SCOPES),
});

export type WalPlan = z.infer<typeof walPlanSchema>;

/** The targets whose WAL pgBackRest archives: those with a `pgbackrest` block. */
export function walTargets(targets: readonly Target[]): Target[] {
  return targets.filter((target) => target.pgbackrest !== undefined);
}

/**
 * A target whose WAL is not archived (no pgbackrest block in BACKUP_TARGETS):
 * its transaction-logs run shows as skipped in the execution's output, saying
 * what to add; never a run that succeeds having protected nothing. The daily
 * verification reports such a target every day.
 */
export interface WalPlanOff {
  engine: 'wal';
  kind: 'transaction-logs';
  target: string;
  runId: string;
  off: string;
}

/** One target's WAL run in an execution (a backup's, or a verification's), proving `proves` (every kept backup's WAL by default). */
export function walRun(
  target: Target,
  executionId: string,
  startedAt: string,
  proves: WalProofScope = 'every-kept-backup',
): WalPlan {
  return {
    engine: 'wal',
    kind: 'transaction-logs',
    target: target.name,
    // Its own id: the dump runs of the same execution hash the database in too.
    runId: runId(new Date(startedAt).toISOString(), `${executionId}/${target.name}/wal`),
    executionId,
    startedAt,
    proves,
  };
}

/** The transaction-logs run of each target: a WAL run when it has pgBackRest settings, shown as off when not. */
export function walRuns(
  targets: readonly Target[],
  executionId: string,
  startedAt: string,
): (WalPlan | WalPlanOff)[] {
  return targets.map((target) => {
    // Every 15 minutes: the WAL a recovery from the newest backup replays (the RPO's).
    const run = walRun(target, executionId, startedAt, 'newest-backup');
    if (target.pgbackrest) return run;
    const off = pgbackrestOff(
      target,
      'its WAL is not archived and no transaction-logs run was made: nothing but the daily logical dump protects its data (an RPO of a day, not a minute)',
    );
    return { engine: run.engine, kind: run.kind, target: run.target, runId: run.runId, off };
  });
}

/** A WAL segment's file name: timeline, log id, segment, in upper-case hex. */
const segmentName = z.string().check(z.regex(/^[0-9A-F]{24}$/, 'is not a WAL segment name'));
const isoTime = z.iso.datetime({ offset: true });
/** pgBackRest's backup labels: `20261126-020000F`, `20261126-020000F_20261126-080000I`. */
const backupLabel = z
  .string()
  .check(z.regex(/^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$/, 'is not a pgBackRest backup label'));
const backupType = z.enum(['full', 'diff', 'incr']);

/**
 * What host/wal-switch.sh reports (its KB-RESULT line): the segment it switched
 * and PostgreSQL archived, and pgBackRest's own account of the repository
 * (`info --output=json`, the current database's archive and backups only).
 */
export const walSwitchFactsSchema = z.object({
  /** The newest completed segment: the one the switch completed, or, on an idle server, the last one. */
  segment: segmentName,
  /** No WAL had been written since the last switch, so nothing was switched. */
  idle: z.boolean(),
  /** The cluster's wal_segment_size, in bytes. */
  walSegmentSize: z.int().check(z.positive()),
  switchedAt: isoTime,
  /** When the host saw PostgreSQL's archiver done with the segment. */
  archivedAt: isoTime,
  /** The archive of the current database: its id (`15-1`, the repository's folder) and oldest and newest segment. */
  archive: z.nullable(
    z.object({
      id: z.string().check(z.regex(/^\d+(\.\d+)?-\d+$/, 'is not a pgBackRest archive id')),
      min: z.nullable(segmentName),
      max: z.nullable(segmentName),
    }),
  ),
  /** The oldest kept backup starting on each timeline: where a recovery of that timeline's WAL can begin. */
  backups: z.array(
    z.object({ label: backupLabel, type: backupType, archiveStart: segmentName, startedAt: isoTime }),
  ),
  newestFull: z.nullable(z.object({ label: backupLabel, stoppedAt: isoTime })),
  newestBackup: z.nullable(
    z.object({
      label: backupLabel,
      type: backupType,
      archiveStart: segmentName,
      startedAt: isoTime,
      stoppedAt: isoTime,
    }),
  ),
});

export type WalSwitchFacts = z.infer<typeof walSwitchFactsSchema>;

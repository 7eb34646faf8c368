import { WAL_ARCHIVE_AGE_RESULT, WAL_ARCHIVE_AGE_STATE } from '../../statemachines/wal-archive-age.ts';
import { runId as makeRunId } from '../catalog/keys.ts';
import type { Config, Target } from '../core/config.ts';
import { failedStatesSchema, firstFailure } from '../core/errors.ts';
import { runIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';

/**
 * WAL archiving as the monitoring sees it: what host/wal-archiving.sh reports
 * (pg_stat_archiver, the current WAL segment, the reason of the last failure from
 * the server log, pgBackRest's info), the age of the archive, and what is wrong.
 * PostgreSQL archives continuously through pgBackRest's archive-push; nothing here
 * archives anything.
 */

/** A host whose archiver is checked: its target and the run the command belongs to. */
export const archiverCheckPlanSchema = z.object({ target: targetName, runId: runIdentifier });

export type ArchiverCheckPlan = z.infer<typeof archiverCheckPlanSchema>;

/** A file PostgreSQL archives: a WAL segment, a timeline history, a backup history, a partial segment. */
const walFileName = z
  .string()
  .check(
    z.regex(
      /^[0-9A-F]{8}(?:[0-9A-F]{16}(?:\.[0-9A-F]{8}\.backup|\.partial)?|\.history)$/,
      'must be a WAL file name',
    ),
  );
const instant = z.iso.datetime({ offset: true });

/** pg_stat_archiver, archive_mode and the segment of the current WAL position, read at `checkedAt` (the database's clock). */
export const archiverSchema = z.object({
  archiveMode: z.string(),
  archivedCount: z.int(),
  lastArchivedWal: z.nullable(walFileName),
  lastArchivedAt: z.nullable(instant),
  failedCount: z.int(),
  lastFailedWal: z.nullable(walFileName),
  lastFailedAt: z.nullable(instant),
  /** Since when the counts run (a crash resets them). */
  statsResetAt: z.nullable(instant),
  currentWal: walFileName,
  checkedAt: instant,
});

export type Archiver = z.infer<typeof archiverSchema>;

/** pgBackRest's `info --output=json` for the stanza, summarized on the host (the whole of it outgrows a result line). */
const repositorySchema = z.object({
  /** pgBackRest's status code: 0 ok, 2 no backup yet, anything else a problem with the stanza or repository. */
  statusCode: z.int(),
  status: z.string(),
  archiveMin: z.nullable(walFileName),
  archiveMax: z.nullable(walFileName),
  backups: z.int(),
  newestBackup: z.nullable(z.object({ label: z.string(), type: z.string(), stoppedAt: instant })),
});

/** The `KB-RESULT` of host/wal-archiving.sh: the archiver always, the rest with KB_DETAIL=full. */
export const walArchivingResultSchema = z.object({
  archiver: archiverSchema,
  /** The server log's lines about the last failed segment, trimmed on the host (redacted as every result is, by the check stage). */
  reason: z.optional(z.nullable(z.string())),
  repository: z.optional(z.nullable(repositorySchema)),
  /** Why the repository could not be read (pgBackRest's error, or a configuration that is not the rendered one). */
  repositoryError: z.optional(z.nullable(z.string())),
});

export type WalArchivingResult = z.infer<typeof walArchivingResultSchema>;

/** The targets whose archiving is watched: those with pgBackRest settings. */
export function archivingTargets(config: Config): Target[] {
  return config.BACKUP_TARGETS.filter((t) => t.pgbackrest !== undefined);
}

const seconds = (from: string, to: string) =>
  Math.max(0, Math.round((Date.parse(to) - Date.parse(from)) / 1000));

/**
 * WAL archive age: how long written WAL may have waited to reach the repository,
 * in seconds, by the database's clock. 0 when the segment of the current WAL
 * position is the newest archived one (everything written is archived: an idle
 * database is not behind, however long ago its last segment was); otherwise the
 * seconds since the newest segment was archived, which bounds the wait of
 * everything after it. null when unknown (archiving off, or nothing archived
 * since the counts were reset): no metric, which the alarm treats as breaching.
 */
export function walArchiveAgeSeconds(archiver: Archiver): number | null {
  if (!isArchiving(archiver)) return null;
  if (archiver.currentWal === archiver.lastArchivedWal) return 0;
  if (archiver.lastArchivedAt === null) return null;
  return seconds(archiver.lastArchivedAt, archiver.checkedAt);
}

const isArchiving = (archiver: Archiver) => ['on', 'always'].includes(archiver.archiveMode);

/** The monitoring runs hourly: a failure in the hour before a run is that run's to report. */
export const MONITORING_PERIOD_SECONDS = 3600;

/** pgBackRest info status codes that are no problem of the repository: ok, and no backup taken yet (the backup-age alarms see that). */
const HEALTHY_STATUS = new Set([0, 2]);

/**
 * What is wrong with one target's archiving: archiving off; the archiver
 * failing (a failure newer than its last success) or having failed since the
 * previous run, naming the segment and the server log's reason; the repository
 * not readable. Each with what to do.
 */
export function archivingFindings(
  target: string,
  { archiver: a, reason, repository, repositoryError }: WalArchivingResult,
): { subject: string; problem: string }[] {
  const subject = `WAL archiving on ${target}`;
  const findings: { subject: string; problem: string }[] = [];
  if (!isArchiving(a)) {
    findings.push({
      subject,
      problem: `archive_mode is ${a.archiveMode}: no WAL segment reaches the repository, so nothing after the newest backup can be recovered. Start the prepare-host workflow for ${target}; it sets archive_mode and says when PostgreSQL must restart.`,
    });
  }
  if (a.lastFailedWal !== null && a.lastFailedAt !== null) {
    const newest = a.lastArchivedWal
      ? `the newest archived is ${a.lastArchivedWal} (${a.lastArchivedAt})`
      : `nothing has been archived since ${a.statsResetAt ?? 'the counts were reset'}`;
    const why = reason ? ` PostgreSQL's log: ${reason.replace(/[\s.]+$/, '')}.` : '';
    const failing = a.lastArchivedAt === null || Date.parse(a.lastFailedAt) > Date.parse(a.lastArchivedAt);
    if (failing) {
      findings.push({
        subject,
        problem: `failing: WAL segment ${a.lastFailedWal} could not be archived (last attempt ${a.lastFailedAt}, ${a.failedCount} failure(s) since ${a.statsResetAt ?? 'the counts were reset'}); ${newest}.${why} PostgreSQL keeps every segment until it is archived: fix the cause and archiving catches up by itself; watch the space of pg_wal meanwhile.`,
      });
    } else if (seconds(a.lastFailedAt, a.checkedAt) <= MONITORING_PERIOD_SECONDS) {
      findings.push({
        subject,
        problem: `failed within the last hour: WAL segment ${a.lastFailedWal} could not be archived at ${a.lastFailedAt}, and archiving has recovered since (${newest}).${why} Look for what made the repository fail before it recurs.`,
      });
    }
  }
  if (repositoryError) {
    findings.push({
      subject: `the pgBackRest repository of ${target}`,
      problem: `not readable: ${repositoryError}`,
    });
  } else if (repository && !HEALTHY_STATUS.has(repository.statusCode)) {
    findings.push({
      subject: `the pgBackRest repository of ${target}`,
      problem: `pgBackRest reports status ${repository.statusCode} (${repository.status}); run \`pgbackrest --stanza=${target} info\` on the host.`,
    });
  }
  return findings;
}

/** The every-minute measurement's plan: the hosts whose archive age it reads. */
export const walArchiveAgePlanSchema = z.object({ hosts: z.array(archiverCheckPlanSchema) });

export function planWalArchiveAge(config: Config, request: unknown): z.infer<typeof walArchiveAgePlanSchema> {
  const { executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${WAL_ARCHIVE_AGE_STATE.plan} request`,
  );
  const iso = new Date(startedAt).toISOString();
  return {
    hosts: archivingTargets(config).map((t) => ({
      target: t.name,
      runId: makeRunId(iso, `${executionId}/${t.name}`),
    })),
  };
}

/** One host's archiver check as a Map over hosts leaves it: its plan, and the command's result or how it failed. */
function archiverChecksSchema() {
  const R = WAL_ARCHIVE_AGE_RESULT;
  return z.array(
    z.object({
      [R.host]: archiverCheckPlanSchema,
      [R.command]: z.optional(z.object({ result: walArchivingResultSchema })),
      [R.failed]: z.pipe(z.optional(failedStatesSchema), z.transform(firstFailure)),
    }),
  );
}

/** Where the WAL archive age goes: a CloudWatch metric per target. */
export interface ArchiveAgeSink {
  walArchiveAge(target: string, seconds: number): void;
}

/**
 * The every-minute report: emits each measured target's WAL archive age and
 * returns them. It never fails on what it measured: a target not measured, or
 * whose age is unknown, emits nothing, and the alarm treats the missing minute as
 * breaching (one alarm, instead of an alert every minute).
 */
export function reportWalArchiveAge(request: unknown, metrics: ArchiveAgeSink) {
  const R = WAL_ARCHIVE_AGE_RESULT;
  const { archivers } = parseInput(
    z.object({ [R.archivers]: archiverChecksSchema() }),
    request,
    `The ${WAL_ARCHIVE_AGE_STATE.report} request`,
  );
  const ages = archivers.map(({ host, command, failed }) => {
    const ageSeconds = command ? walArchiveAgeSeconds(command.result.archiver) : null;
    if (ageSeconds !== null) metrics.walArchiveAge(host.target, ageSeconds);
    return { target: host.target, ageSeconds, ...(failed ? { notMeasured: failed.Error } : {}) };
  });
  return { ages };
}

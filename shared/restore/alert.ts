import { FILES_RESTORE_COMMAND, FILES_RESTORE_RESULT } from '../../statemachines/files-restore.ts';
import { SWAP_COMMAND, SWAP_RESULT } from '../../statemachines/staged-swap.ts';
import { FAILED, PLAN } from '../../statemachines/steps.ts';
import { CODECS } from '../core/codecs.ts';
import { caughtErrorSchema, causeMessage, failedStatesSchema, firstFailure } from '../core/errors.ts';
import * as z from '../core/schema.ts';
import { type CleanupFacts, cleanupFactsSchema, cleanupPlanSchema, swappedPlanSchema } from './cleanup.ts';
import { filesRestorePlanSchema } from './files-plan.ts';

const RESULT = { ...SWAP_RESULT, plan: PLAN, failed: FAILED } as const;

/** Whether a host command finished: all a failure's alert reads of one. */
const commandStatusSchema = z.object({ status: z.string() });

/** The parts of a failed (or stopped) restore's or database recovery's state that say what it left. */
const failedRestoreSchema = z.object({
  [RESULT.plan]: z.optional(swappedPlanSchema),
  [RESULT.stop]: z.optional(z.unknown()),
  [RESULT.swap]: z.optional(commandStatusSchema),
  [RESULT.start]: z.optional(commandStatusSchema),
  [RESULT.restart]: z.optional(commandStatusSchema),
  [RESULT.restartFailed]: z.optional(caughtErrorSchema),
  [RESULT.cleanupPlan]: z.optional(cleanupPlanSchema),
  [RESULT.cleanup]: z.optional(z.object({ status: z.string(), result: z.optional(cleanupFactsSchema) })),
  [RESULT.cleanupFailed]: z.optional(caughtErrorSchema),
  [RESULT.failed]: z.optional(failedStatesSchema),
});

type FailedRestore = z.infer<typeof failedRestoreSchema>;

/** The states of the swap, one transaction: a run stopped in one of them may have swapped. */
const SWAP: readonly string[] = Object.values(SWAP_COMMAND.swap);

/**
 * For the alert of a failed restore: exactly what state the database is in, and
 * which safety dump brings it back. Undefined when the state is not a restore's.
 */
export function describeRestoreFailure(state: unknown): string | undefined {
  const files = failedFilesRestoreSchema.safeParse(state);
  if (files.success) return describeFilesRestoreFailure(files.data);
  return leftoversOfState(state)?.lines.join(' ');
}

/** What a failed or stopped run left (leftoversOf), when the state is a restore's or a database recovery's. */
export function leftoversOfState(state: unknown): ReturnType<typeof leftoversOf> | undefined {
  const parsed = failedRestoreSchema.safeParse(state);
  return parsed.success && parsed.data.plan ? leftoversOf(parsed.data) : undefined;
}

/**
 * What a failed or stopped run left, from its clean-up's facts (the host's word
 * on which databases exist, the catalog's on the safety dump) rather than from
 * how far it got: each line for people, and the ones someone must act on.
 */
function leftoversOf(s: FailedRestore): { lines: string[]; problems: string[] } {
  const plan = s.plan as NonNullable<FailedRestore['plan']>;
  const { cleanupPlan } = s;
  const facts = s.cleanup?.status === 'Success' ? s.cleanup.result : undefined;
  const failedAt = cleanupPlan?.failedAt ?? firstFailure(s.failed)?.state ?? '';
  const lines: string[] = [];
  const problems: string[] = [];
  const problem = (line: string) => {
    lines.push(line);
    problems.push(line);
  };
  const hostFiles = () => {
    if (facts && facts.workRemoved > 0)
      lines.push(`Its work directories on the host (${facts.workRemoved}) were left, and are removed.`);
  };
  if (plan.scope === 'cluster' || plan.targetDatabase === null || plan.database === null) {
    clusterLeftovers(plan, s, facts, { line: (l) => lines.push(l), problem });
    hostFiles();
    return { lines, problems };
  }
  const target = plan.targetDatabase;
  const database = plan.database;

  // The database: checked on the host after the clean-up.
  const swapped = facts
    ? plan.overProduction
      ? facts.exists.replaced
      : s.swap?.status === 'Success' || (SWAP.includes(failedAt) && facts.exists.target)
    : s.swap?.status === 'Success';
  if (swapped) {
    lines.push(
      `${target} now holds the restored database (checked)${plan.overProduction ? `; the database it replaced is kept as ${plan.replacedDatabase}` : ''}.`,
    );
  } else if (facts) {
    lines.push(
      plan.overProduction
        ? `${target} is unchanged: it was not replaced (there is no ${plan.replacedDatabase}).`
        : facts.exists.target
          ? `${target} was not touched.`
          : `${target} was not created.`,
    );
  }
  if (facts) {
    if (facts.exists.staging)
      problem(
        `The staging database ${plan.stagingDatabase} still exists: drop it by hand (DROP DATABASE ${plan.stagingDatabase}).`,
      );
    else if (facts.stagingDropped) lines.push(`The staging database ${plan.stagingDatabase} was dropped.`);
    else if (!swapped) lines.push(`No staging database ${plan.stagingDatabase} was left.`);
    const { dropped, left } = facts.standIns;
    if (dropped.length > 0)
      lines.push(`The roles made to stand in for the omitted roles were dropped: ${dropped.join(', ')}.`);
    if (left.length > 0)
      problem(
        `The roles ${left.join(', ')}, made to stand in for omitted roles, are used by another database (a restore running at the same time took them for roles of this cluster): drop them once it has ended (DROP ROLE ${left.join(', ')}).`,
      );
  } else {
    problem(
      `${cleanupNotFinished(s)}, so what is left is not known: look on the host; if ${plan.stagingDatabase} exists, drop it; if ${plan.overProduction ? plan.replacedDatabase : target} exists, ${target} holds the restore${plan.scope === 'database' ? `; a side cluster of the recovery (${sideClusterPlace(plan)}) still running is removed by the next recovery of ${plan.target}` : ''}.`,
    );
  }
  const side = facts?.sideCluster;
  if (side?.exists)
    problem(
      `The recovery's side cluster (a restored copy of the cluster, ${sideClusterPlace(plan)}) is still on the host: stop the postgres running in it and remove it, or start a point-in-time recovery of ${plan.target}, which removes it first.`,
    );
  else if (side?.removed)
    lines.push(
      `The recovery's side cluster (a restored copy of the cluster, ${sideClusterPlace(plan)}) was left running: the clean-up stopped it and removed its directories.`,
    );
  else if (side) lines.push('No side cluster of the recovery was left.');
  hostFiles();

  // The safety dump: the catalog's word.
  const dump = cleanupPlan?.safetyDump;
  if (dump?.manifest === 'verified') {
    // Not replaced (as the host found), the database has taken writes since the
    // application started again: the dump is older, and restoring it loses them.
    lines.push(
      swapped || !facts
        ? `The safety dump ${dump.archiveKey} (verified) holds ${database} as it was when the application stopped: restore it with {"database": "${database}", "backup": "${dump.runId}", "targetDatabase": "${database}", "confirm": "${database}"}.`
        : `The safety dump ${dump.archiveKey} (verified) holds ${database} as it was when the application stopped; ${database} was not replaced, so nothing needs it: do not restore it (the database is newer).`,
    );
  } else if (dump) {
    const copy = facts?.safetyCopyRemoved
      ? 'its copy on the host was removed'
      : 'the host keeps no copy of it';
    const object = dump.inS3
      ? dump.manifest === 'failed'
        ? 'its object in S3 is pruned with the safety dumps'
        : 'its object reached S3 without a manifest: the daily verification names it, and pruning removes it after a day'
      : 'nothing of it is in S3';
    lines.push(
      `The safety dump ${dump.archiveKey} ${dump.manifest === 'failed' ? 'failed its verification' : 'was never verified (the run stopped first)'}: it is not a backup; ${copy}; ${object}.`,
    );
  } else if (plan.overProduction && (s.stop !== undefined || cleanupPlan?.startApplication) && !swapped) {
    lines.push(`No safety dump was taken; ${database} was not replaced, so none is needed.`);
  }

  // The application: started again by the run or by its clean-up.
  const restarted = s.start?.status === 'Success' || s.restart?.status === 'Success';
  if (restarted) lines.push('The application was stopped for the restore and has been started again.');
  else if (s.restartFailed)
    problem(
      `The application was stopped and could NOT be started again (${s.restartFailed.Error}): start it by hand now.`,
    );
  else if (cleanupPlan?.startApplication || (!cleanupPlan && s.stop !== undefined))
    problem('The application was stopped and did NOT start: start it by hand now.');
  return { lines, problems };
}

/** How a clean-up on the host that did not report failed, as the alert's words begin. */
function cleanupNotFinished(s: FailedRestore): string {
  return `The clean-up on the host did not finish${s.cleanupFailed ? ` (${s.cleanupFailed.Error}: ${causeMessage(s.cleanupFailed.Cause).split('\n')[0]})` : ''}`;
}

/** Where a recovery's side cluster is on the host (host/common.sh side_area), in words. */
function sideClusterPlace(plan: NonNullable<FailedRestore['plan']>): string {
  return `point-in-time-${plan.target}/${plan.runId} under the target's scratch directory`;
}

/**
 * What a whole-cluster recovery left, from its clean-up's facts: PostgreSQL
 * running (as it was, or recovered), recovering, or stopped, with what to do.
 */
function clusterLeftovers(
  plan: NonNullable<FailedRestore['plan']>,
  s: FailedRestore,
  facts: CleanupFacts | undefined,
  say: { line: (line: string) => void; problem: (line: string) => void },
) {
  const pg = `PostgreSQL of ${plan.target}`;
  const to =
    plan.targetTime === undefined || plan.targetTime === 'latest' ? 'the end of the WAL' : plan.targetTime;
  const fromVault = plan.source === 'vault' ? ', "source": "vault"' : '';
  const again = `start point-in-time-recovery again with {"scope": "cluster", "targetTime": "${plan.targetTime ?? 'latest'}", "confirm": "${plan.target}"${fromVault}}`;
  const fullBackup =
    'start database-backup with {"kind": "full"} (the backups from before the recovery hold the abandoned timeline)';
  const cluster = facts?.cluster;
  if (!cluster) {
    say.problem(
      `${cleanupNotFinished(s)}, so the state of ${pg} is not known: look on the host. If it is stopped and its data directory has no global/pg_control, the restore over it was cut short: ${again} to finish it; if it is stopped otherwise, start it.`,
    );
    return;
  }
  const started = cluster.started ? ' the clean-up started it again, and it' : ' it';
  switch (cluster.state) {
    case 'cut-short':
      say.problem(
        `${pg} is stopped: the restore over its data directory was cut short, and pgBackRest removes pg_control until a restore has finished, so PostgreSQL cannot start on it (and must not). To finish the recovery, ${again}; to bring back instead the newest state the repository's WAL holds, give "targetTime": "latest".`,
      );
      return;
    case 'stopped':
      say.problem(
        `${pg} is stopped and did not start when the clean-up started it (its log in pgBackRest's log path, ${plan.target}-postgresql-recovery-${plan.runId}.log, says why): start it by hand${cluster.restored ? `; it recovers to ${to} and promotes, then ${fullBackup}` : ''}.`,
      );
      return;
    case 'recovering':
      say.problem(
        `The backup was restored over ${pg}:${started} is recovering to ${to}, and promotes by itself once there; then ${fullBackup}.`,
      );
      return;
    case 'running':
      if (cluster.restored)
        say.problem(
          `${pg} was recovered to ${to} and has promoted (timeline ${cluster.timeline ?? 'unknown'}), but the full backup a recovery starts was not: ${fullBackup}.`,
        );
      else
        say.line(
          cluster.started
            ? `${pg} was stopped for the recovery, which restored nothing: the clean-up started it again, as it was.`
            : `${pg} runs as it was: the recovery stopped before it changed anything.`,
        );
  }
}

const failedFilesRestoreSchema = z.object({
  [FILES_RESTORE_RESULT.plan]: filesRestorePlanSchema,
  [FILES_RESTORE_RESULT.restore]: z.optional(commandStatusSchema),
  [FILES_RESTORE_RESULT.failed]: z.optional(failedStatesSchema),
});

function describeFilesRestoreFailure({
  plan,
  restore,
  failed,
}: z.infer<typeof failedFilesRestoreSchema>): string {
  const failedAt = firstFailure(failed)?.state ?? '';
  const putBack = `\`${CODECS[plan.archive.codec].decompress} ${plan.asidePath} | tar -x -C /\` on the host puts them back`;
  if (restore?.status === 'Success') {
    return `The ${plan.kind} files are restored from ${plan.archive.key}, but a command after the restore failed: run the rest by hand (${plan.afterCommands.join('; ')}). The files from before are kept in ${plan.asidePath}; ${putBack}.`;
  }
  if (failedAt === FILES_RESTORE_COMMAND.filesRestore.start)
    return `The ${plan.kind} files were not touched.`;
  return `The ${plan.kind} files are as they were: the restore stops before touching them when the tarball does not check out, and puts them back from ${plan.asidePath} when the extraction fails (its output on the host says which). If in doubt, ${putBack}.`;
}

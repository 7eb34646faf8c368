import { FILES_RESTORE_COMMAND, FILES_RESTORE_RESULT } from '../../statemachines/files-restore.ts';
import { SWAP_COMMAND, SWAP_RESULT } from '../../statemachines/staged-swap.ts';
import { FAILED, PLAN } from '../../statemachines/steps.ts';
import { CODECS } from '../core/codecs.ts';
import { caughtErrorSchema, causeMessage, failedStatesSchema, firstFailure } from '../core/errors.ts';
import * as z from '../core/schema.ts';
import { cleanupFactsSchema, cleanupPlanSchema, swappedPlanSchema } from './cleanup.ts';
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
  const target = plan.targetDatabase;
  const lines: string[] = [];
  const problems: string[] = [];
  const problem = (line: string) => {
    lines.push(line);
    problems.push(line);
  };

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
      `The clean-up on the host did not finish${s.cleanupFailed ? ` (${s.cleanupFailed.Error}: ${causeMessage(s.cleanupFailed.Cause).split('\n')[0]})` : ''}, so what is left is not known: look on the host; if ${plan.stagingDatabase} exists, drop it; if ${plan.overProduction ? plan.replacedDatabase : target} exists, ${target} holds the restore.`,
    );
  }

  // The safety dump: the catalog's word.
  const dump = cleanupPlan?.safetyDump;
  if (dump?.manifest === 'verified') {
    // Not replaced (as the host found), the database has taken writes since the
    // application started again: the dump is older, and restoring it loses them.
    lines.push(
      swapped || !facts
        ? `The safety dump ${dump.archiveKey} (verified) holds ${plan.database} as it was when the application stopped: restore it with {"database": "${plan.database}", "backup": "${dump.runId}", "targetDatabase": "${plan.database}", "confirm": "${plan.database}"}.`
        : `The safety dump ${dump.archiveKey} (verified) holds ${plan.database} as it was when the application stopped; ${plan.database} was not replaced, so nothing needs it: do not restore it (the database is newer).`,
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
    lines.push(`No safety dump was taken; ${plan.database} was not replaced, so none is needed.`);
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

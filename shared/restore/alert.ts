import { RESTORE_COMMAND, RESTORE_RESULT, RESTORE_STATE } from '../../statemachines/database-restore.ts';
import { FILES_RESTORE_COMMAND, FILES_RESTORE_RESULT } from '../../statemachines/files-restore.ts';
import { POINT_IN_TIME_COMMAND } from '../../statemachines/point-in-time-recovery.ts';
import { planSchema } from '../backup/database-plan.ts';
import { CODECS } from '../core/codecs.ts';
import { failedStatesSchema, firstFailure } from '../core/errors.ts';
import { sqlIdentifier } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { swapPlanSchema } from './database-schemas.ts';
import { filesRestorePlanSchema } from './files-plan.ts';

/** Whether a host command finished: all a failure's alert reads of one. */
const commandStatusSchema = z.object({ status: z.string() });

/** What the alert reads of a restore's or a database recovery's plan: the staged swap's part. */
const swappedPlanSchema = z.extend(swapPlanSchema, {
  database: sqlIdentifier,
  safetyDump: z.nullable(planSchema),
});

/** The parts of a failed restore's (or database recovery's) state that say how far it got. */
const failedRestoreSchema = z.object({
  [RESTORE_RESULT.plan]: z.optional(swappedPlanSchema),
  [RESTORE_RESULT.stop]: z.optional(z.unknown()),
  [RESTORE_RESULT.safetyDumpVerification]: z.optional(z.unknown()),
  [RESTORE_RESULT.swap]: z.optional(commandStatusSchema),
  [RESTORE_RESULT.start]: z.optional(commandStatusSchema),
  [RESTORE_RESULT.restart]: z.optional(commandStatusSchema),
  [RESTORE_RESULT.restartFailed]: z.optional(z.unknown()),
  [RESTORE_RESULT.failed]: z.optional(failedStatesSchema),
});

/** The stages of the swap, one transaction. */
const SWAP: readonly string[] = [RESTORE_COMMAND.swap.start, RESTORE_COMMAND.swap.check];
/** The stages that fail before the target is touched; the staging database is dropped when they do. */
const BEFORE_SWAP: readonly string[] = [
  RESTORE_COMMAND.restore.start,
  RESTORE_COMMAND.restore.check,
  RESTORE_STATE.checkRestoredDatabase,
  POINT_IN_TIME_COMMAND.restore.start,
  POINT_IN_TIME_COMMAND.restore.check,
];

/**
 * For the alert of a failed restore: exactly what state the database is in, and
 * which safety dump brings it back. Undefined when the state is not a restore's.
 */
export function describeRestoreFailure(state: unknown): string | undefined {
  const files = failedFilesRestoreSchema.safeParse(state);
  if (files.success) return describeFilesRestoreFailure(files.data);
  const parsed = failedRestoreSchema.safeParse(state);
  if (!parsed.success || !parsed.data.plan) return undefined;
  const { plan, stop, safetyDumpVerification, swap, start, restart, restartFailed } = parsed.data;
  const failedAt = firstFailure(parsed.data.failed)?.state ?? '';
  const lines: string[] = [];
  const swapped = swap?.status === 'Success';
  if (swapped) {
    lines.push(
      `${plan.targetDatabase} now holds the restored database (checked)${plan.overProduction ? `; the database it replaced is kept as ${plan.replacedDatabase}` : ''}.`,
    );
  } else if (SWAP.includes(failedAt)) {
    lines.push(
      `The swap is one transaction and it did not report success: ${plan.targetDatabase} is unchanged${plan.overProduction ? '' : ' (it was not created)'} and the checked restore is in ${plan.stagingDatabase}, unless a database ${plan.overProduction ? plan.replacedDatabase : plan.targetDatabase} now exists, in which case the swap did complete.`,
    );
  } else if (BEFORE_SWAP.includes(failedAt)) {
    lines.push(
      `${plan.targetDatabase} was not touched${plan.overProduction ? '' : ' (it was not created)'}; the staging database ${plan.stagingDatabase} was dropped.`,
    );
  } else {
    lines.push(
      `${plan.targetDatabase} is unchanged: it was not replaced${plan.overProduction ? '' : ' (it was not created)'}. The checked restore is in ${plan.stagingDatabase}; drop it or start the restore again.`,
    );
  }
  if (plan.overProduction && safetyDumpVerification !== undefined && plan.safetyDump) {
    lines.push(
      `The safety dump ${plan.safetyDump.archiveKey} (verified) holds ${plan.database} as it was when the application stopped: restore it with {"database": "${plan.database}", "backup": "${plan.safetyDump.runId}", "targetDatabase": "${plan.database}", "confirm": "${plan.database}"}.`,
    );
  } else if (plan.overProduction && stop !== undefined) {
    lines.push(`No verified safety dump was taken; ${plan.database} was not replaced, so none is needed.`);
  }
  if (stop !== undefined) {
    lines.push(
      start?.status === 'Success' || restart?.status === 'Success'
        ? 'The application was stopped for the restore and has been started again.'
        : restartFailed !== undefined
          ? 'The application was stopped and could NOT be started again: start it by hand now.'
          : 'The application was stopped and did NOT start: start it by hand now.',
    );
  }
  return lines.join(' ');
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

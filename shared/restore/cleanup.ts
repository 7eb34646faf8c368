import { SWAP_COMMAND, SWAP_RESULT } from '../../statemachines/staged-swap.ts';
import { planSchema } from '../backup/database-plan.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { manifestKey } from '../catalog/keys.ts';
import { failedStatesSchema, firstFailure } from '../core/errors.ts';
import { fileName, objectKey, runIdentifier, sqlIdentifier } from '../core/identifiers.ts';
import { parseInput } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { POINT_IN_TIME_PLAN_SCOPES, POINT_IN_TIME_SCOPES, swapPlanSchema } from './database-schemas.ts';
import { RESTORE_SOURCES } from './source.ts';

/**
 * The clean-up of a restore or a point-in-time recovery that failed, was aborted
 * or timed out: what the run may have left is worked out from how far it got
 * (its state), and checked where it can be (the catalog's word on its safety
 * dump here; the host's on the rest in host/restore-cleanup.sh). The application
 * it stopped is started again, its staging database dropped, the host's copy of a
 * safety dump never verified removed, its work directories removed; a recovery's
 * side cluster is stopped and removed, and PostgreSQL stopped by a whole-cluster
 * recovery is started again where its data directory is whole. The alert then
 * says what is left, from those facts.
 *
 * A failed run cleans up in its own execution (the staged swap's Catch). An
 * aborted or timed-out one runs none of its states: cancelHostCommands starts
 * the restore-cleanup workflow, which reads the run's state from its history
 * (stopped-run.ts).
 */

/** The workflows whose stopped runs restore-cleanup cleans up. */
export const CLEANED_UP_WORKFLOWS: readonly string[] = ['database-restore', 'point-in-time-recovery'];
/** The workflow that cleans up after them. */
export const CLEANUP_WORKFLOW = 'restore-cleanup';

/**
 * What a clean-up reads of the run's plan: the staged swap's part, with the
 * database and its safety dump, and a point-in-time recovery's scope. A
 * whole-cluster recovery swaps no database: its database and target are null.
 */
export const swappedPlanSchema = z.extend(swapPlanSchema, {
  targetDatabase: z.nullable(sqlIdentifier),
  database: z.nullable(sqlIdentifier),
  safetyDump: z.nullable(planSchema),
  scope: z.optional(z.enum(POINT_IN_TIME_PLAN_SCOPES)),
  /** A recovery's target time, as asked (`latest`, or ISO 8601). */
  targetTime: z.optional(z.string()),
  /** Where a restore or recovery read its backups. */
  source: z.optional(z.enum(RESTORE_SOURCES)),
});

const commandStatusSchema = z.object({ status: z.string() });

/** The parts of a run's state that say how far it got. */
export const runStateSchema = z.object({
  plan: swappedPlanSchema,
  [SWAP_RESULT.stop]: z.optional(z.unknown()),
  [SWAP_RESULT.safetyDump]: z.optional(z.unknown()),
  [SWAP_RESULT.safetyDumpVerification]: z.optional(z.unknown()),
  [SWAP_RESULT.swap]: z.optional(commandStatusSchema),
  [SWAP_RESULT.start]: z.optional(commandStatusSchema),
  [SWAP_RESULT.restart]: z.optional(commandStatusSchema),
  failed: z.optional(failedStatesSchema),
});

export const cleanupPlanSchema = z.object({
  target: z.string(),
  runId: runIdentifier,
  /** Null for a whole-cluster recovery, as `targetDatabase`. */
  database: z.nullable(sqlIdentifier),
  overProduction: z.boolean(),
  targetDatabase: z.nullable(sqlIdentifier),
  stagingDatabase: sqlIdentifier,
  replacedDatabase: sqlIdentifier,
  /**
   * A point-in-time recovery's scope: `database` made a side cluster on the host,
   * `cluster` stopped PostgreSQL and restored over its data directory; null for a
   * restore.
   */
  recovery: z.nullable(z.enum(POINT_IN_TIME_SCOPES)),
  /** The state the run failed in, or was in when it was stopped. */
  failedAt: z.string(),
  /** The run stopped the application (or may have: its stop was sent) and did not start it again. */
  startApplication: z.boolean(),
  /** The safety dump the run began, if it did, as the catalog has it. */
  safetyDump: z.nullable(
    z.object({
      runId: runIdentifier,
      archiveKey: objectKey,
      fileName,
      /** Its manifest: verified (a backup like any other), failed, or none (its run stopped before VerifySafetyDump). */
      manifest: z.enum(['verified', 'failed', 'none']),
      /** Whether its archive reached S3 whole (an upload cut short leaves no object). */
      inS3: z.boolean(),
    }),
  ),
});

export type CleanupPlan = z.infer<typeof cleanupPlanSchema>;

/**
 * The clean-up of a run, from its state: whether its application is to be
 * started again, and its safety dump as the catalog has it. A stage whose
 * request may have been sent before it failed (or was stopped) counts as sent:
 * starting a running application again does no harm, leaving it stopped does.
 */
export async function cleanupPlanOf(catalog: Catalog, state: unknown): Promise<CleanupPlan> {
  const s = parseInput(runStateSchema, state, "The failed run's state");
  const { plan } = s;
  const failed = Object.keys(s.failed ?? {});
  const sent = (result: unknown, start: string) => result !== undefined || failed.includes(start);
  const stopped = plan.overProduction && sent(s.stop, SWAP_COMMAND.applicationStop.start);
  const started = s.start?.status === 'Success' || s.restart?.status === 'Success';
  const dump = plan.safetyDump && sent(s.safetyDump, SWAP_COMMAND.safetyDump.start) ? plan.safetyDump : null;
  return {
    target: plan.target,
    runId: plan.runId,
    database: plan.database,
    overProduction: plan.overProduction,
    targetDatabase: plan.targetDatabase,
    stagingDatabase: plan.stagingDatabase,
    replacedDatabase: plan.replacedDatabase,
    recovery: plan.scope === 'database' || plan.scope === 'cluster' ? plan.scope : null,
    failedAt: firstFailure(s.failed)?.state ?? 'unknown',
    startApplication: stopped && !started,
    safetyDump: dump && {
      runId: dump.runId,
      archiveKey: dump.archiveKey,
      fileName: dump.fileName,
      ...(await archiveState(catalog, dump.archiveKey)),
    },
  };
}

/** Whether an archive and its manifest are in S3 (one listing), and the manifest's verdict. */
async function archiveState(catalog: Catalog, key: string) {
  const keys = await catalog.listKeys(key);
  const manifest = manifestKey(key);
  if (!keys.includes(manifest)) return { manifest: 'none' as const, inS3: keys.includes(key) };
  const verified = (await catalog.readManifest(manifest)).verification.state === 'verified';
  return { manifest: verified ? ('verified' as const) : ('failed' as const), inS3: keys.includes(key) };
}

/** What host/restore-cleanup.sh reports: what it did, and what of the run exists now. */
export const cleanupFactsSchema = z.object({
  stagingDropped: z.boolean(),
  safetyCopyRemoved: z.boolean(),
  /** The roles the run made to stand in for omitted ones (missing-roles.ts): dropped, or still used elsewhere. */
  standIns: z.object({ dropped: z.array(z.string()), left: z.array(z.string()) }),
  /** How many of the run's work directories (its and its safety dump's) were left, and are removed. */
  workRemoved: z.int().check(z.nonnegative()),
  /** A recovery's side cluster: whether it was still there (and is stopped and removed), and whether it still is. */
  sideCluster: z.nullable(z.object({ removed: z.boolean(), exists: z.boolean() })),
  /**
   * A whole-cluster recovery's PostgreSQL as the clean-up leaves it: running
   * (accepting writes, on `timeline`), recovering (towards the target; it
   * promotes by itself), cut-short (stopped: the restore over its data directory
   * did not finish, so it cannot start), or stopped (it did not start); `started`
   * when the clean-up started it, `restored` when the run's restore had finished.
   */
  cluster: z.nullable(
    z.object({
      state: z.enum(['running', 'recovering', 'cut-short', 'stopped']),
      started: z.boolean(),
      restored: z.boolean(),
      timeline: z.nullable(z.int()),
    }),
  ),
  exists: z.object({ staging: z.boolean(), target: z.boolean(), replaced: z.boolean() }),
});

export type CleanupFacts = z.infer<typeof cleanupFactsSchema>;

/** The execution restore-cleanup cleans up after, as its report names it. */
export const stoppedExecutionSchema = z.object({
  workflow: z.string(),
  executionArn: z.string(),
  status: z.enum(['ABORTED', 'TIMED_OUT']),
  cancelled: z.array(z.string()),
});

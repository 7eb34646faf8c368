import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { readExecutionFinding } from '../alert/execution-history.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { parseInput } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { cancelEventSchema } from '../host/cancel.ts';
import { cleanupPlanOf, runStateSchema } from './cleanup.ts';

/**
 * An aborted or timed-out restore or database recovery, as restore-cleanup
 * finds it: cancelHostCommands hands over its status change and the commands it
 * cancelled, and its history gives its state (shared/restore/cleanup.ts cleans
 * up from there as after a failure).
 */

/** How an execution that ran no state to its end was stopped, as its alert and its clean-up name it. */
const STOPPED = {
  ABORTED: { error: 'ExecutionAborted', cause: 'The execution was aborted (StopExecution) in this state.' },
  TIMED_OUT: {
    error: 'ExecutionTimedOut',
    cause: 'The execution ran past its time limit in this state and Step Functions stopped it.',
  },
} as const;

/**
 * An aborted or timed-out run's state, from its history (newest event first):
 * the output of the last state it finished, with the state it was in recorded
 * as where it failed, so that a stage stopped midway counts as sent. Undefined
 * when it finished no state.
 */
export function stoppedRunState(events: readonly HistoryEvent[], status: keyof typeof STOPPED) {
  const output = events.find((e) => e.stateExitedEventDetails?.output !== undefined)?.stateExitedEventDetails
    ?.output;
  if (output === undefined) return undefined;
  const state = JSON.parse(output) as Record<string, unknown>;
  const inFlight = readExecutionFinding(events).state;
  const stopped = { Error: STOPPED[status].error, Cause: STOPPED[status].cause };
  return {
    ...state,
    failed: { ...(state.failed as object | undefined), ...(inFlight ? { [inFlight]: stopped } : {}) },
  };
}

/** What cancelHostCommands hands to restore-cleanup: the status change, and the commands it cancelled. */
export const cleanupRequestSchema = z.object({
  event: cancelEventSchema,
  cancelled: z.array(
    z.object({ commandId: z.string(), script: z.string(), instanceIds: z.array(z.string()) }),
  ),
});

/**
 * PlanCleanUp of restore-cleanup: the stopped run's state (from its history)
 * with its clean-up plan and what stopped it, which the clean-up's states and
 * its report read as a failed run's; `nothing` when the run finished no state
 * with a plan (nothing was created).
 */
export async function planStoppedRunCleanUp(
  catalog: Catalog,
  history: (executionArn: string) => Promise<HistoryEvent[]>,
  input: unknown,
  workflowOf: (stateMachineArn: string) => string,
): Promise<Record<string, unknown>> {
  const { event, cancelled } = parseInput(cleanupRequestSchema, input, 'The clean-up request');
  const { detail } = event;
  const stopped = {
    workflow: workflowOf(detail.stateMachineArn),
    executionArn: detail.executionArn,
    status: detail.status,
    cancelled: cancelled.map((c) => `${c.script} (command ${c.commandId})`),
  };
  const state = stoppedRunState(await history(detail.executionArn), detail.status);
  if (!runStateSchema.safeParse(state).success) return { stopped, nothing: true };
  return { ...state, stopped, cleanupPlan: await cleanupPlanOf(catalog, state) };
}

import { GetExecutionHistoryCommand, type HistoryEvent, type SFNClient } from '@aws-sdk/client-sfn';
import { NOTIFY_FAILURE, NOTIFY_RUN_FAILURE } from '../../statemachines/steps.ts';

/**
 * EventBridge's event of a failed execution names no state: its history does.
 * Read newest first, it says where the execution stood when it ended, and
 * whether the workflow's own failure alert already reached someone.
 */

/** The failure alert states of the workflows (statemachines/steps.ts): each posts what its Catch caught. */
export const FAILURE_ALERT_STATES: readonly string[] = [NOTIFY_FAILURE, NOTIFY_RUN_FAILURE];

/** What an execution's history says about how it ended. */
export interface ExecutionFinding {
  /**
   * The state the execution failed in: the state still running when it ended
   * (an uncaught error, a timeout, an abort), or, when it ended in a Fail state,
   * the state whose error led there. Undefined when the history names none.
   */
  state: string | undefined;
  /**
   * The execution ended in a Fail state after one of its failure alert states
   * reached an operator: EventBridge's event would only say it again.
   */
  alreadyAlerted: boolean;
  /** The execution's own error and cause, from its last event. */
  error?: string;
  cause?: string;
}

/** Every history event that reports a state's failure (a task, an activity, a JSONata expression). */
const FAILURE_EVENTS = new Set<string>([
  'ActivityFailed',
  'ActivityScheduleFailed',
  'ActivityTimedOut',
  'EvaluationFailed',
  'LambdaFunctionFailed',
  'LambdaFunctionScheduleFailed',
  'LambdaFunctionStartFailed',
  'LambdaFunctionTimedOut',
  'TaskFailed',
  'TaskStartFailed',
  'TaskSubmitFailed',
  'TaskTimedOut',
]);

/** A Lambda task named by its ARN reports LambdaFunctionSucceeded; through the lambda:invoke integration, TaskSucceeded. */
function succeededOutput(event: HistoryEvent): string | undefined {
  if (event.type === 'LambdaFunctionSucceeded')
    return event.lambdaFunctionSucceededEventDetails?.output ?? '';
  if (event.type === 'TaskSucceeded') return event.taskSucceededEventDetails?.output ?? '';
  return undefined;
}

/**
 * Whether a Notify state's result shows the alert reached someone: sendAlert
 * returns `deliveredTo`; a result it cannot read counts as delivered, since a
 * second alert is only worth sending when the first one certainly reached no one.
 */
function reachedSomeone(output: string): boolean {
  try {
    const parsed = JSON.parse(output) as { Payload?: unknown };
    const result = (parsed.Payload ?? parsed) as { deliveredTo?: unknown; delivered?: unknown };
    if (Array.isArray(result.deliveredTo)) return result.deliveredTo.length > 0;
    return result.delivered !== false;
  } catch {
    return true;
  }
}

/**
 * Reads an execution's history, newest event first (GetExecutionHistory with
 * reverseOrder): which state it failed in, and whether its own failure alert
 * already went out.
 */
export function readExecutionFinding(events: readonly HistoryEvent[]): ExecutionFinding {
  const byId = new Map(events.map((e) => [e.id, e]));
  /**
   * The state an event belongs to: its chain of previous events leads back to
   * the state's entry. Should the chain leave the pages read, the nearest older
   * entry stands in.
   */
  const stateOf = (event: HistoryEvent, index: number): string | undefined => {
    const seen = new Set<number | undefined>();
    for (let e: HistoryEvent | undefined = event; e && !seen.has(e.id); e = byId.get(e.previousEventId)) {
      if (e.stateEnteredEventDetails?.name) return e.stateEnteredEventDetails.name;
      seen.add(e.id);
      if (e.previousEventId === undefined) break;
    }
    return events.slice(index + 1).find((e) => e.stateEnteredEventDetails?.name)?.stateEnteredEventDetails
      ?.name;
  };

  // The newest state entered and never exited: where the execution stood when it ended.
  const exits = new Map<string, number>();
  let unfinished: { name: string; isFail: boolean } | undefined;
  for (const event of events) {
    const exited = event.stateExitedEventDetails?.name;
    if (exited !== undefined) {
      exits.set(exited, (exits.get(exited) ?? 0) + 1);
      continue;
    }
    const entered = event.stateEnteredEventDetails?.name;
    if (entered === undefined) continue;
    const pending = exits.get(entered) ?? 0;
    if (pending > 0) exits.set(entered, pending - 1);
    else {
      unfinished = { name: entered, isFail: event.type === 'FailStateEntered' };
      break;
    }
  }

  const failures = events.flatMap((event, index) =>
    event.type !== undefined && FAILURE_EVENTS.has(event.type) ? [stateOf(event, index)] : [],
  );
  // A failed alert state is a second failure; the state whose error it was posting comes first.
  const lastFailure =
    failures.find((s) => s === undefined || !FAILURE_ALERT_STATES.includes(s)) ?? failures[0];
  const state = unfinished && !unfinished.isFail ? unfinished.name : (lastFailure ?? unfinished?.name);

  const alerted = events.some((event, index) => {
    const output = succeededOutput(event);
    if (output === undefined) return false;
    const owner = stateOf(event, index);
    return owner !== undefined && FAILURE_ALERT_STATES.includes(owner) && reachedSomeone(output);
  });

  const end = events.find(
    (e) => e.executionFailedEventDetails ?? e.executionTimedOutEventDetails ?? e.executionAbortedEventDetails,
  );
  const details =
    end?.executionFailedEventDetails ??
    end?.executionTimedOutEventDetails ??
    end?.executionAbortedEventDetails;
  return {
    state,
    alreadyAlerted: unfinished?.isFail === true && alerted,
    ...(details?.error ? { error: details.error } : {}),
    ...(details?.cause ? { cause: details.cause } : {}),
  };
}

/** The failing state when the history could not be read at all. */
export const HISTORY_NOT_READABLE = 'unknown (history not readable)';
/** The failing state when the history was read but names none. */
export const STATE_NOT_IN_HISTORY = 'unknown (not in the execution history)';

/** Reads an execution's history, newest event first. */
export type ExecutionHistoryReader = (executionArn: string) => Promise<HistoryEvent[]>;

/**
 * The newest events of an execution, up to `maxPages` pages of 1000: its end,
 * and the alerts its Notify states sent, are there. A history longer than that
 * (a restore polling a host command for hours) is read in part; at worst an
 * operator is told twice.
 */
export function sfnExecutionHistory(client: SFNClient, maxPages = 3): ExecutionHistoryReader {
  return async (executionArn) => {
    const events: HistoryEvent[] = [];
    let nextToken: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const result = await client.send(
        new GetExecutionHistoryCommand({
          executionArn,
          reverseOrder: true,
          maxResults: 1000,
          // The Notify states' results say whether their alert reached anyone.
          includeExecutionData: true,
          ...(nextToken ? { nextToken } : {}),
        }),
      );
      events.push(...(result.events ?? []));
      nextToken = result.nextToken;
      if (!nextToken) break;
    }
    return events;
  };
}

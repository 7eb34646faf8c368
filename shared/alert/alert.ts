import { GetExecutionHistoryCommand, type HistoryEvent, type SFNClient } from '@aws-sdk/client-sfn';
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { FAILED, NOTIFY_FAILURE, NOTIFY_RUN_FAILURE, PLAN } from '../../statemachines/steps.ts';
import { causeMessage, failedStatesSchema, firstFailure } from '../core/errors.ts';
import * as z from '../core/schema.ts';
import { describeRestoreFailure } from '../restore/alert.ts';

/**
 * The alert every failed execution sends. It names the workflow, the execution,
 * the state that failed, the error and its cause, and links to the console; it
 * never carries a secret (see `redact`). Two ways in: a workflow's own Notify
 * states (`alertRequestSchema`), and EventBridge's status change of any
 * execution that failed, timed out or was aborted (`executionStatusChangeSchema`),
 * which also covers what no Catch can see.
 */

export const alertRequestSchema = z.object({
  /** The workflow's name, or its state machine's name when one definition serves two. */
  workflow: z.string().check(z.regex(/^[a-z0-9-]+$/)),
  executionId: z.string().check(z.minLength(1)),
  startedAt: z.string(),
  /** The execution's state when it failed; Catch paths write `failed.<StateName>`. */
  state: z.unknown(),
  /** Set for a warning: the run goes on, an operator should look. */
  warning: z.optional(z.string()),
  /** Set when the execution succeeded and reports what it did (a restore's record). */
  summary: z.optional(z.string()),
});

export interface Alert {
  workflow: string;
  executionId: string;
  /** The target whose run failed; null when the execution failed before any target ran. */
  target: string | null;
  state: string;
  error: string;
  cause: string;
  consoleUrl: string;
  /** One line, ASCII, under SNS's 100 characters: the e-mail's subject. */
  subject: string;
  text: string;
}

/**
 * The parts of the execution's state an alert reads, each on its own: what
 * failed, and the plan of the failed run (a watch workflow's plan names no target).
 */
const stateSchema = z.object({
  [FAILED]: z.catch(z.optional(failedStatesSchema), undefined),
  [PLAN]: z.catch(
    z.optional(
      z.object({ target: z.string(), database: z.optional(z.string()), kind: z.optional(z.string()) }),
    ),
    undefined,
  ),
});

/** Removes anything that looks like a credential, in case a tool printed one. */
export function redact(text: string): string {
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/\s@]+:)[^@\s/]+@/gi, '$1***@')
    .replace(/hooks\.slack\.com\/services\/[A-Za-z0-9/]+/g, 'hooks.slack.com/services/***')
    .replace(/\b(PGPASSWORD|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|password)(\s*[=:]\s*)\S+/gi, '$1$2***');
}

export function consoleUrl(region: string, executionId: string): string {
  return `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${encodeURIComponent(executionId)}`;
}

/**
 * SNS refuses a subject of 100 characters or more, or with a line break or a
 * control character; e-mail shows it as is, so it stays plain ASCII.
 */
function subjectOf(headline: string): string {
  const ascii = headline.replace(/[^\x20-\x7e]/g, '?');
  return ascii.length < 100 ? ascii : `${ascii.slice(0, 96)}...`;
}

/** A failure (the first `failed.<State>` of the state), a warning or a summary when the request carries one. */
export function formatAlert(
  request: z.infer<typeof alertRequestSchema>,
  stage: string,
  region: string,
): Alert {
  const parsed = stateSchema.safeParse(request.state);
  const plan = parsed.success ? parsed.data.plan : undefined;
  const failure = firstFailure(parsed.success ? parsed.data.failed : undefined);
  const warning = request.warning !== undefined;
  const summary = request.summary !== undefined;
  const state = summary ? 'summary' : warning ? 'warning' : (failure?.state ?? 'unknown');
  const error = summary ? 'Succeeded' : warning ? 'Warning' : (failure?.Error ?? 'UnknownFailure');
  const cause = redact(
    request.summary ??
      request.warning ??
      (failure
        ? causeMessage(failure.Cause)
        : 'The execution failed without a recorded cause; open its history.'),
  );
  const database = summary || warning ? undefined : describeRestoreFailure(request.state);
  const headline = `kennel-backup (${stage}): ${request.workflow} ${summary ? 'SUCCEEDED' : warning ? 'WARNING' : 'FAILED'}`;
  return composeAlert(
    {
      workflow: request.workflow,
      executionId: request.executionId,
      target: plan?.target ?? null,
      state,
      error,
      cause,
    },
    {
      icon: summary ? ':white_check_mark:' : warning ? ':warning:' : ':rotating_light:',
      headline,
      lines: [
        ...(plan
          ? [`Target: ${plan.target} (${[plan.database, plan.kind].filter(Boolean).join(', ')})`]
          : []),
        ...(summary
          ? [cause]
          : warning
            ? [`Warning: ${cause}`]
            : [`State: ${state}`, `Error: ${error}`, `Cause: ${cause}`]),
        ...(database ? [`Database: ${redact(database)}`] : []),
      ],
      started: request.startedAt,
      region,
    },
  );
}

/** The parts every alert has: the headline, its lines, the execution and the console link. */
function composeAlert(
  fields: Omit<Alert, 'consoleUrl' | 'subject' | 'text'>,
  layout: { icon: string; headline: string; lines: string[]; started: string; region: string },
): Alert {
  const url = consoleUrl(layout.region, fields.executionId);
  const text = [
    `${layout.icon} ${layout.headline}`,
    ...layout.lines,
    `Execution: ${fields.executionId} (started ${layout.started})`,
    `Console: ${url}`,
  ].join('\n');
  return { ...fields, consoleUrl: url, subject: subjectOf(layout.headline), text };
}

/** The statuses the EventBridge rule forwards: every way an execution can end badly. */
export const ALERTED_STATUSES = ['FAILED', 'TIMED_OUT', 'ABORTED'] as const;

/**
 * EventBridge's "Step Functions Execution Status Change" event. Dates are epoch
 * milliseconds; error and cause are null when the execution has none (an abort
 * without a reason, most timeouts).
 */
export const executionStatusChangeSchema = z.object({
  source: z.literal('aws.states'),
  'detail-type': z.literal('Step Functions Execution Status Change'),
  detail: z.object({
    executionArn: z.string().check(z.regex(/^arn:aws[\w-]*:states:[\w-]+:\d{12}:execution:[^:\s]+:[^:\s]+$/)),
    stateMachineArn: z.string().check(z.regex(/^arn:aws[\w-]*:states:[\w-]+:\d{12}:stateMachine:[^:\s]+$/)),
    name: z.string().check(z.minLength(1)),
    status: z.enum(ALERTED_STATUSES),
    startDate: z.number(),
    stopDate: z.nullish(z.number()),
    error: z.nullish(z.string()),
    cause: z.nullish(z.string()),
  }),
});

export type ExecutionStatusChange = z.infer<typeof executionStatusChangeSchema>['detail'];

/** Whether sendAlert's input came from EventBridge rather than from a workflow's Notify state. */
export function isEventBridgeEvent(input: unknown): boolean {
  return typeof input === 'object' && input !== null && 'detail-type' in input;
}

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

/** What an execution's own event leaves out, said for an operator. */
const DEFAULT_FAILURE: Record<ExecutionStatusChange['status'], { error: string; cause: string }> = {
  FAILED: {
    error: 'ExecutionFailed',
    cause: 'The execution failed without a recorded cause; open its history.',
  },
  TIMED_OUT: {
    error: 'ExecutionTimedOut',
    cause:
      "The execution ran past its time limit and Step Functions stopped it; no Catch runs for a timeout, so the workflow's own alert never ran. Open its history to see how far it got.",
  },
  ABORTED: {
    error: 'ExecutionAborted',
    cause:
      'The execution was stopped (from the console or with StopExecution) before it finished; open its history to see how far it got.',
  },
};

/** The workflow a state machine runs: its name without the `kennel-backup-<stage>-` prefix. */
export function workflowOf(stateMachineArn: string, stage: string): string {
  const name = stateMachineArn.slice(stateMachineArn.lastIndexOf(':') + 1);
  const prefix = `kennel-backup-${stage}-`;
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** The alert for an execution that EventBridge reports as failed, timed out or aborted. */
export function formatExecutionAlert(
  detail: ExecutionStatusChange,
  finding: Pick<ExecutionFinding, 'state' | 'error' | 'cause'>,
  stage: string,
  region: string,
): Alert {
  const workflow = workflowOf(detail.stateMachineArn, stage);
  const fallback = DEFAULT_FAILURE[detail.status];
  const state = finding.state ?? STATE_NOT_IN_HISTORY;
  const error = redact(detail.error || finding.error || fallback.error);
  const cause = redact(causeMessage(detail.cause || finding.cause || fallback.cause));
  const ended = detail.stopDate ? `, ended ${new Date(detail.stopDate).toISOString()}` : '';
  return composeAlert(
    { workflow, executionId: detail.executionArn, target: null, state, error, cause },
    {
      icon: ':rotating_light:',
      headline: `kennel-backup (${stage}): ${workflow} ${detail.status}`,
      lines: [`State: ${state}`, `Error: ${error}`, `Cause: ${cause}`],
      started: `${new Date(detail.startDate).toISOString()}${ended}`,
      region,
    },
  );
}

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

/** Delivers an alert; Slack and SNS in AWS, the terminal and a file locally. */
export type Notifier = (alert: Alert) => Promise<void>;

/** Every channel an alert goes to, by name; each is tried whatever the others do. */
export type Channels = Readonly<Record<string, Notifier>>;

export interface Delivery {
  deliveredTo: string[];
  failed: { channel: string; reason: string }[];
}

/** Sends the alert on every channel at once; a channel that fails is reported, never thrown. */
export async function deliver(alert: Alert, channels: Channels): Promise<Delivery> {
  const names = Object.keys(channels);
  const results = await Promise.allSettled(names.map((name) => (channels[name] as Notifier)(alert)));
  const delivery: Delivery = { deliveredTo: [], failed: [] };
  results.forEach((result, i) => {
    const channel = names[i] as string;
    if (result.status === 'fulfilled') delivery.deliveredTo.push(channel);
    else delivery.failed.push({ channel, reason: redact(errorText(result.reason)) });
  });
  return delivery;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Publishes the alert to the SNS topic that e-mails the operators. */
export function snsNotifier(client: SNSClient, topicArn: string): Notifier {
  return async (alert) => {
    await client.send(
      new PublishCommand({ TopicArn: topicArn, Subject: alert.subject, Message: alert.text }),
    );
  };
}

export function slackNotifier(webhookUrl: () => Promise<string>): Notifier {
  return async (alert) => {
    const response = await fetch(await webhookUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: alert.text }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!response.ok) throw new Error(`Slack answered ${response.status} ${response.statusText}`);
  };
}

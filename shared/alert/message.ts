import { FAILED, PLAN } from '../../statemachines/steps.ts';
import { causeMessage, failedStatesSchema, firstFailure } from '../core/errors.ts';
import { redact } from '../core/redact.ts';
import * as z from '../core/schema.ts';
import { describeRestoreFailure } from '../restore/alert.ts';
import { type ExecutionFinding, STATE_NOT_IN_HISTORY } from './execution-history.ts';

/**
 * The alert every failed execution sends. It names the workflow, the execution,
 * the state that failed, the error and its cause, and links to the console; it
 * never carries a secret or a row (core/redact.ts). Two ways in: a workflow's own Notify
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
      z.object({
        target: z.string(),
        /** Null in a pgBackRest run's plan: it backs up the whole cluster. */
        database: z.optional(z.nullable(z.string())),
        kind: z.optional(z.string()),
        /** A backup run's archive: the failed run's backup, by the key (and run id) a restore names it with. */
        archiveKey: z.optional(z.nullable(z.string())),
      }),
    ),
    undefined,
  ),
});

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
        ...(plan?.archiveKey && !summary ? [`Backup: ${plan.archiveKey}`] : []),
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

/** A host command an aborted or timed-out execution left running, once cancelled. */
export interface CancelledCommand {
  commandId: string;
  /** The host command (`physical-restore-test`): the stage that was running on the host. */
  script: string;
  instanceIds: string[];
}

/**
 * The alert of an execution that was aborted or timed out while host commands
 * ran: which were cancelled, where, and what the host does about what they left.
 */
export function formatCancelAlert(
  detail: ExecutionStatusChange,
  cancelled: readonly CancelledCommand[],
  stage: string,
  region: string,
): Alert {
  const workflow = workflowOf(detail.stateMachineArn, stage);
  const scripts = [...new Set(cancelled.map((c) => c.script))].join(', ');
  const ended = detail.stopDate ? `, ended ${new Date(detail.stopDate).toISOString()}` : '';
  const cause = `The execution was ${detail.status === 'ABORTED' ? 'aborted' : 'timed out'} while ${cancelled.length} host command(s) ran; each was cancelled, which stops its processes at once (SIGKILL, no clean-up of its own): ${cancelled
    .map(
      (c) =>
        `${c.script} (command ${c.commandId}${c.instanceIds.length > 0 ? ` on ${c.instanceIds.join(', ')}` : ''})`,
    )
    .join(
      '; ',
    )}. A restore test's guard removes its scratch instance right after; anything else a command left is removed by the next run of that command.`;
  return composeAlert(
    {
      workflow,
      executionId: detail.executionArn,
      target: null,
      state: scripts,
      error: 'HostCommandsCancelled',
      cause,
    },
    {
      icon: ':octagonal_sign:',
      headline: `kennel-backup (${stage}): ${workflow} ${detail.status}, host commands cancelled`,
      lines: [`Stage on the host: ${scripts}`, `Cancelled: ${cause}`],
      started: `${new Date(detail.startDate).toISOString()}${ended}`,
      region,
    },
  );
}

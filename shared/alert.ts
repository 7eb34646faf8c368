import { z } from 'zod';
import { describeRestoreFailure } from './restore-alert.ts';

/**
 * The alert every failed execution sends. It names the workflow, the execution,
 * the state that failed, the error and its cause, and links to the console; it
 * never carries a secret (see `redact`).
 */

export const alertRequestSchema = z.object({
  /** The workflow's name, or its state machine's name when one definition serves two. */
  workflow: z.string().regex(/^[a-z0-9-]+$/),
  executionId: z.string().min(1),
  startedAt: z.string(),
  /** The execution's state when it failed; Catch paths write `failed.<StateName>`. */
  state: z.unknown(),
  /** Set for a warning: the run goes on, an operator should look. */
  warning: z.string().optional(),
  /** Set when the execution succeeded and reports what it did (a restore's record). */
  summary: z.string().optional(),
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
  text: string;
}

/** The parts of the execution's state an alert reads: the plan of the failed run, and what failed. */
const stateSchema = z.object({
  failed: z.record(z.string(), z.object({ Error: z.string(), Cause: z.unknown() })).optional(),
  plan: z
    .object({ target: z.string(), database: z.string().optional(), kind: z.string().optional() })
    .optional(),
});

/** Lambda errors arrive as a JSON Cause ({ errorType, errorMessage, trace }); show the message. */
function causeText(cause: unknown): string {
  if (typeof cause !== 'string') return JSON.stringify(cause ?? '');
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (typeof parsed.errorMessage === 'string') return parsed.errorMessage;
  } catch {
    // Not JSON: a Step Functions runtime error or a local error message.
  }
  return cause;
}

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

/** A failure (the first `failed.<State>` of the state), a warning or a summary when the request carries one. */
export function formatAlert(
  request: z.infer<typeof alertRequestSchema>,
  stage: string,
  region: string,
): Alert {
  const parsed = stateSchema.safeParse(request.state);
  const plan = parsed.success ? parsed.data.plan : undefined;
  const [failedState, failure] = Object.entries((parsed.success && parsed.data.failed) || {})[0] ?? [];
  const warning = request.warning !== undefined;
  const summary = request.summary !== undefined;
  const state = summary ? 'summary' : warning ? 'warning' : (failedState ?? 'unknown');
  const error = summary ? 'Succeeded' : warning ? 'Warning' : (failure?.Error ?? 'UnknownFailure');
  const cause = redact(
    request.summary ??
      request.warning ??
      (failure
        ? causeText(failure.Cause)
        : 'The execution failed without a recorded cause; open its history.'),
  );
  const database = summary || warning ? undefined : describeRestoreFailure(request.state);
  const url = consoleUrl(region, request.executionId);
  const text = [
    summary
      ? `:white_check_mark: kennel-backup (${stage}): ${request.workflow} SUCCEEDED`
      : warning
        ? `:warning: kennel-backup (${stage}): ${request.workflow} WARNING`
        : `:rotating_light: kennel-backup (${stage}): ${request.workflow} FAILED`,
    ...(plan ? [`Target: ${plan.target} (${[plan.database, plan.kind].filter(Boolean).join(', ')})`] : []),
    ...(summary
      ? [cause]
      : warning
        ? [`Warning: ${cause}`]
        : [`State: ${state}`, `Error: ${error}`, `Cause: ${cause}`]),
    ...(database ? [`Database: ${redact(database)}`] : []),
    `Execution: ${request.executionId} (started ${request.startedAt})`,
    `Console: ${url}`,
  ].join('\n');
  return {
    workflow: request.workflow,
    executionId: request.executionId,
    target: plan?.target ?? null,
    state,
    error,
    cause,
    consoleUrl: url,
    text,
  };
}

/** Delivers an alert; Slack in AWS, the terminal and a file locally. */
export type Notifier = (alert: Alert) => Promise<void>;

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

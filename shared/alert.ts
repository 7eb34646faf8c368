import { z } from 'zod';

/**
 * The alert every failed execution sends. It names the workflow, the execution,
 * the state that failed, the error and its cause, and links to the console; it
 * never carries a secret (see `redact`).
 */

export const alertRequestSchema = z.object({
  workflow: z.string().regex(/^[a-z-]+$/),
  executionId: z.string().min(1),
  startedAt: z.string(),
  /** The execution's state when it failed; Catch paths write `failed.<StateName>`. */
  state: z.unknown(),
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

const failureSchema = z.object({
  failed: z.record(z.string(), z.object({ Error: z.string(), Cause: z.unknown() })),
  plan: z.object({ target: z.string(), database: z.string(), kind: z.string() }).optional(),
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

export function formatAlert(
  request: z.infer<typeof alertRequestSchema>,
  stage: string,
  region: string,
): Alert {
  const failures = failureSchema.safeParse(request.state);
  const [state, failure] = failures.success ? (Object.entries(failures.data.failed)[0] ?? []) : [];
  const plan = failures.success ? failures.data.plan : undefined;
  const error = failure?.Error ?? 'UnknownFailure';
  const cause = redact(
    failure ? causeText(failure.Cause) : 'The execution failed without a recorded cause; open its history.',
  );
  const url = consoleUrl(region, request.executionId);
  const text = [
    `:rotating_light: kennel-backup (${stage}): ${request.workflow} FAILED`,
    ...(plan ? [`Target: ${plan.target} (${plan.database}, ${plan.kind})`] : []),
    `State: ${state ?? 'unknown'}`,
    `Error: ${error}`,
    `Cause: ${cause}`,
    `Execution: ${request.executionId} (started ${request.startedAt})`,
    `Console: ${url}`,
  ].join('\n');
  return {
    workflow: request.workflow,
    executionId: request.executionId,
    target: plan?.target ?? null,
    state: state ?? 'unknown',
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

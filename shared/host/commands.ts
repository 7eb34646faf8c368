import { createHash } from 'node:crypto';
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  InvalidCommandId,
  InvocationDoesNotExist,
  ListCommandInvocationsCommand,
  paginateListCommands,
  SendCommandCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { HOST_OUTPUT_PREFIX } from '../catalog/keys.ts';
import type { Target } from '../core/config.ts';
import { classifyAwsError, InvalidInputError } from '../core/errors.ts';
import { redact } from '../core/redact.ts';

/**
 * Runs rendered host scripts on the DB host. In AWS this is SSM Run Command; the
 * local runner has its own implementation that runs the same text with bash.
 */
export interface HostCommands {
  send(request: SendRequest): Promise<{ commandId: string; instanceId: string | null }>;
  get(commandId: string, instanceId: string | null): Promise<Invocation>;
  /** The commands sent since `since` that are still pending or running. */
  inFlight(since: Date): Promise<SentCommand[]>;
  /** Asks the host to stop a command; the SSM agent kills its whole process group with SIGKILL. */
  cancel(commandId: string): Promise<void>;
}

/** A command as ListCommands describes it. */
export interface SentCommand {
  commandId: string;
  comment: string;
  /** The instances it was sent to; empty for a tag target. */
  instanceIds: string[];
}

const COMMENT_PREFIX = 'kennel-backup';

/**
 * The execution's reference in its commands' Comment: 16 hex digits of its ARN's
 * sha256. The ARN itself (state machine and name) does not fit in SSM's 100
 * characters, and ListCommands filters on no field but time, status and
 * document, so this is how an execution finds its own commands.
 */
export function executionRef(executionArn: string): string {
  return createHash('sha256').update(executionArn).digest('hex').slice(0, 16);
}

/** `kennel-backup <execution ref> <command> <execution name>`, cut to SSM's 100 characters. */
export function commandComment(executionArn: string, script: string): string {
  const name = executionArn.slice(executionArn.lastIndexOf(':') + 1);
  return `${COMMENT_PREFIX} ${executionRef(executionArn)} ${script} ${name}`.slice(0, 100);
}

/** The execution reference and the command a Comment names; undefined for a command not sent by this project. */
export function parseComment(comment: string): { ref: string; script: string } | undefined {
  const [prefix, ref, script] = comment.split(' ');
  if (prefix !== COMMENT_PREFIX || !ref || !/^[0-9a-f]{16}$/.test(ref) || !script) return undefined;
  return { ref, script };
}

export interface SendRequest {
  target: Target;
  script: string;
  comment: string;
  timeoutSeconds: number;
  /** The bucket the command's whole output goes to, under HOST_OUTPUT_PREFIX (keys.ts hostOutputKey); none without. */
  outputBucket?: string;
}

export type InvocationStatus = 'InProgress' | 'Success' | 'Failed' | 'TimedOut' | 'Cancelled';

/**
 * What GetCommandInvocation returns of a command's output: the first 24,000
 * characters of its stdout (StandardOutputContent) and the first 8,000 of its
 * stderr (StandardErrorContent). The whole output is in S3 (SendRequest.outputBucket).
 */
export const OUTPUT_LIMITS = { stdout: 24_000, stderr: 8_000 } as const;

export type OutputStream = keyof typeof OUTPUT_LIMITS;

export interface Invocation {
  status: InvocationStatus;
  /** The instance that ran it, once known (a tag target resolves after sending). */
  instanceId: string | null;
  /** Up to OUTPUT_LIMITS of each, as Run Command returns them. */
  stdout: string;
  stderr: string;
}

/** What starts an output's tail that was cut: the text before it was left out. */
export const CUT = '…';

/**
 * The last lines of a command's output, redacted: enough to say what failed,
 * short enough for a Cause, and nothing a log or an alert must not hold. At
 * most `lines` lines and `chars` characters; cut to fit, it starts at a line's
 * start (a line longer than `chars` is cut inside) after a line of CUT.
 */
export function tail(text: string, lines = 20, chars = 2000): string {
  // Redacted whole, then cut: a field's value may run over the lines the cut keeps.
  const kept = redact(text).trimEnd().split('\n').slice(-lines).join('\n');
  if (kept.length <= chars) return kept;
  const last = kept.slice(-(chars - CUT.length - 1));
  const lineStart = last.indexOf('\n');
  return `${CUT}\n${lineStart === -1 ? last : last.slice(lineStart + 1)}`;
}

const SSM_STATUS: Record<string, InvocationStatus> = {
  Pending: 'InProgress',
  InProgress: 'InProgress',
  Delayed: 'InProgress',
  Success: 'Success',
  Failed: 'Failed',
  TimedOut: 'TimedOut',
  Cancelled: 'Cancelled',
  Cancelling: 'InProgress',
};

export function ssmHostCommands(ssm: SSMClient): HostCommands {
  return {
    async send({ target, script, comment, timeoutSeconds, outputBucket }) {
      try {
        const response = await ssm.send(
          new SendCommandCommand({
            DocumentName: 'AWS-RunShellScript',
            ...(target.instanceIds
              ? { InstanceIds: target.instanceIds.slice(0, 1) }
              : {
                  Targets: [{ Key: `tag:${target.tag?.key}`, Values: [target.tag?.value ?? ''] }],
                  MaxConcurrency: '1',
                  MaxErrors: '0',
                }),
            Parameters: { commands: [script], executionTimeout: [String(timeoutSeconds)] },
            TimeoutSeconds: Math.min(timeoutSeconds, 2_592_000),
            Comment: comment.slice(0, 100),
            // The whole output, in the bucket only: GetCommandInvocation cuts it, and
            // it may quote rows, which no log may hold (core/redact.ts).
            ...(outputBucket
              ? { OutputS3BucketName: outputBucket, OutputS3KeyPrefix: HOST_OUTPUT_PREFIX }
              : {}),
          }),
        );
        const commandId = response.Command?.CommandId;
        if (!commandId) throw new Error('SSM SendCommand returned no command id');
        return { commandId, instanceId: target.instanceIds?.[0] ?? null };
      } catch (error) {
        throw classifyAwsError(error, `Sending the ${comment} command to target ${target.name}`);
      }
    },

    async get(commandId, knownInstance) {
      try {
        let instanceId = knownInstance;
        if (instanceId === null) {
          const listed = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId }));
          const ids = (listed.CommandInvocations ?? [])
            .map((i) => i.InstanceId)
            .filter((i): i is string => !!i);
          if (ids.length > 1) {
            throw new InvalidInputError(
              `The target's tag matched ${ids.length} instances (${ids.join(', ')}); a backup must run on exactly one. Narrow the tag or use instanceIds.`,
            );
          }
          instanceId = ids[0] ?? null;
          if (instanceId === null) return { status: 'InProgress', instanceId, stdout: '', stderr: '' };
        }
        const invocation = await ssm.send(
          new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
        );
        return {
          status: SSM_STATUS[invocation.Status ?? 'Pending'] ?? 'Failed',
          instanceId,
          stdout: invocation.StandardOutputContent ?? '',
          stderr: invocation.StandardErrorContent ?? '',
        };
      } catch (error) {
        // Just after SendCommand the invocation may not be registered yet.
        if (error instanceof InvocationDoesNotExist)
          return { status: 'InProgress', instanceId: knownInstance, stdout: '', stderr: '' };
        throw classifyAwsError(error, `Reading the status of command ${commandId}`);
      }
    },

    async inFlight(since) {
      try {
        const found: SentCommand[] = [];
        const pages = paginateListCommands(
          { client: ssm },
          {
            Filters: [
              { key: 'InvokedAfter', value: since.toISOString() },
              // Pending, InProgress, Delayed and Cancelling: what can still run.
              { key: 'ExecutionStage', value: 'Executing' },
            ],
          },
        );
        for await (const page of pages) {
          for (const c of page.Commands ?? []) {
            if (!c.CommandId) continue;
            found.push({
              commandId: c.CommandId,
              comment: c.Comment ?? '',
              instanceIds: c.InstanceIds ?? [],
            });
          }
        }
        return found;
      } catch (error) {
        throw classifyAwsError(error, `Listing the commands sent since ${since.toISOString()}`);
      }
    },

    async cancel(commandId) {
      try {
        await ssm.send(new CancelCommandCommand({ CommandId: commandId }));
      } catch (error) {
        // Ended between the listing and the cancel: nothing left to stop.
        if (error instanceof InvalidCommandId) return;
        throw classifyAwsError(error, `Cancelling command ${commandId}`);
      }
    },
  };
}

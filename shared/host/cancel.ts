import { type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import {
  type CancelledCommand,
  type ExecutionStatusChange,
  executionStatusChangeSchema,
} from '../alert/message.ts';
import { classifyAwsError } from '../core/errors.ts';
import { parseInput } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { CLEANUP_WORKFLOW } from '../restore/cleanup.ts';
import { executionRef, type HostCommands, parseComment } from './commands.ts';

/**
 * An execution that is aborted or times out runs no Catch and no state after the
 * one it was in: a host command it sent goes on running on the host (a restore
 * test's scratch instance with it) until the command's own timeout. EventBridge
 * hands its status change to the cancel stage, which finds the execution's
 * commands by the reference in their Comment and cancels them.
 */

/** The statuses that leave commands running: a FAILED execution ended in a state of its own, after its command. */
export const CANCELLED_STATUSES = ['ABORTED', 'TIMED_OUT'] as const;

export const cancelEventSchema = z.object({
  ...executionStatusChangeSchema.shape,
  detail: z.object({
    ...executionStatusChangeSchema.shape.detail.shape,
    status: z.enum(CANCELLED_STATUSES),
  }),
});

/** ListCommands' InvokedAfter is compared with the service's clock, which may be a little behind the execution's start. */
export const CLOCK_SKEW_MS = 60_000;

/**
 * Cancels every host command the execution sent that is still pending or
 * running. Returns them, with the execution's details for the alert.
 */
export async function cancelHostCommands(
  host: HostCommands,
  event: unknown,
): Promise<{ detail: ExecutionStatusChange; cancelled: CancelledCommand[] }> {
  const { detail } = parseInput(cancelEventSchema, event, 'The EventBridge status change event');
  const ref = executionRef(detail.executionArn);
  const cancelled: CancelledCommand[] = [];
  for (const command of await host.inFlight(new Date(detail.startDate - CLOCK_SKEW_MS))) {
    const named = parseComment(command.comment);
    if (named?.ref !== ref) continue;
    await host.cancel(command.commandId);
    cancelled.push({ commandId: command.commandId, script: named.script, instanceIds: command.instanceIds });
  }
  return { detail, cancelled };
}

/**
 * Waits until none of `commandIds` is in flight any more: a cancelled command's
 * processes are killed by the agent within seconds, but CancelCommand returns
 * before. Polls every `pollMs` for at most `maxMs`; returns those still running.
 */
export async function waitUntilEnded(
  host: Pick<HostCommands, 'inFlight'>,
  since: Date,
  commandIds: readonly string[],
  options: { maxMs?: number; pollMs?: number; sleep?: (ms: number) => Promise<void> } = {},
): Promise<string[]> {
  const { maxMs = 60_000, pollMs = 2_000, sleep = (ms) => new Promise((r) => setTimeout(r, ms)) } = options;
  const deadline = Date.now() + maxMs;
  for (;;) {
    const running = new Set((await host.inFlight(since)).map((c) => c.commandId));
    const left = commandIds.filter((id) => running.has(id));
    if (left.length === 0 || Date.now() >= deadline) return left;
    await sleep(pollMs);
  }
}

/** The start of a stopped run's clean-up (restore-cleanup): the status change and what was cancelled; returns its execution's ARN. */
export type CleanUpStarter = (request: { event: unknown; cancelled: CancelledCommand[] }) => Promise<string>;

/**
 * StartExecution of restore-cleanup, the state machine beside the stopped one
 * (`kennel-backup-<stage>-restore-cleanup`), named after the stopped execution:
 * an event EventBridge delivers twice starts it once (StartExecution with the
 * same name and input returns the running execution).
 */
export function sfnCleanUpStarter(sfn: SFNClient, stage: string): CleanUpStarter {
  return async (request) => {
    const { detail } = parseInput(cancelEventSchema, request.event, 'The EventBridge status change event');
    const arn = detail.stateMachineArn;
    const machine = `${arn.slice(0, arn.lastIndexOf(':') + 1)}kennel-backup-${stage}-${CLEANUP_WORKFLOW}`;
    try {
      const started = await sfn.send(
        new StartExecutionCommand({
          stateMachineArn: machine,
          name: `cleanup-${detail.name}`.slice(0, 80),
          input: JSON.stringify(request),
        }),
      );
      return started.executionArn ?? '';
    } catch (error) {
      throw classifyAwsError(error, `Starting ${CLEANUP_WORKFLOW} for ${detail.executionArn}`);
    }
  };
}

import {
  type CancelledCommand,
  type ExecutionStatusChange,
  executionStatusChangeSchema,
} from '../alert/message.ts';
import { parseInput } from '../core/input.ts';
import * as z from '../core/schema.ts';
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
const CLOCK_SKEW_MS = 60_000;

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

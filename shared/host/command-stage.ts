import { type Config, findTarget } from '../core/config.ts';
import {
  ConfigError,
  HostCommandFailedError,
  HostCommandTimedOutError,
  NotFoundError,
} from '../core/errors.ts';
import { parseInput } from '../core/input.ts';
import { redact, redactValues } from '../core/redact.ts';
import * as z from '../core/schema.ts';
import { commandComment, type HostCommands, tail } from './commands.ts';
import { type HostOutput, outputOf } from './output.ts';
import {
  type HostCommand,
  type HostCommandSet,
  type HostCommandsByName,
  REPORTING_SCRIPTS,
  renderHostCommand,
} from './scripts.ts';
import { HOST_SCRIPTS } from './shell.ts';

/** A host command in flight, as the Wait/Check loop carries it. */
export const commandStateSchema = z.object({
  /** The command the workflow asked for (`restore-test`), and the bash file that ran it (`restore-archive`). */
  script: z.string().check(z.regex(/^[a-z][a-z-]*$/)),
  hostScript: z.enum(HOST_SCRIPTS),
  target: z.string(),
  commandId: z.string().check(z.minLength(1)),
  instanceId: z.nullable(z.string()),
  deadline: z.iso.datetime(),
  status: z.enum(['InProgress', 'Success']),
  output: z.optional(z.string()),
  /** When the command was sent, and when a check first saw it done: the stage's time, to the poll interval. */
  sentAt: z.iso.datetime(),
  finishedAt: z.optional(z.iso.datetime()),
  /** What a script reports for the workflow: the JSON of its `KB-RESULT` line, if it prints one. */
  result: z.optional(z.unknown()),
});

export type CommandState = z.infer<typeof commandStateSchema>;

/** Commands that are never picked up (instance stopped, agent down) still end: after the timeout plus this. */
const DEADLINE_GRACE_MS = 120_000;

/** Sends one of `set`'s commands, rendered from the request in `event`, to its target. */
export async function startHostCommand<C extends HostCommandsByName>(
  config: Config,
  host: HostCommands,
  set: HostCommandSet<C>,
  event: unknown,
  now = new Date(),
): Promise<CommandState> {
  const request = parseInput(set.request, event, 'The host command request');
  // The execution's id (the Start state passes $$.Execution.Id): its commands carry
  // it in their Comment, so that an aborted or timed-out execution's are found and cancelled.
  const { execution } = parseInput(
    z.object({ execution: z.string().check(z.minLength(1)) }),
    event,
    'The host command request',
  );
  const command: HostCommand | undefined = (set.commands as HostCommandsByName)[request.script];
  if (!command)
    throw new ConfigError(
      `No host command ${request.script} is deployed, though its request parsed: the commands' keys and request schemas disagree; fix HOST_COMMANDS and redeploy.`,
    );
  const target = findTarget(config, request.plan.target);
  if (!target) {
    throw new NotFoundError(
      `The plan names target "${request.plan.target}", which is not configured; start a new execution.`,
    );
  }
  const script = renderHostCommand(config, target, command, request);
  const timeoutSeconds = config.HOST_COMMAND_TIMEOUT_SECONDS;
  const sent = await host.send({
    target,
    script,
    comment: commandComment(execution, request.script),
    timeoutSeconds,
    outputBucket: config.BACKUP_BUCKET,
  });
  return {
    script: request.script,
    hostScript: command.script,
    target: target.name,
    commandId: sent.commandId,
    instanceId: sent.instanceId,
    deadline: new Date(now.getTime() + timeoutSeconds * 1000 + DEADLINE_GRACE_MS).toISOString(),
    status: 'InProgress',
    sentAt: now.toISOString(),
  };
}

/** The line a reporting script prints last: `KB-RESULT {json}`. */
export const RESULT_LINE = /^KB-RESULT (.*)$/m;

/**
 * The JSON of a script's `KB-RESULT` line, every string in it redacted (a
 * reason may quote a server log); a script that must report one and did not has failed.
 */
function resultOf(command: CommandState, stdout: string, where: string): { result?: unknown } {
  const line = RESULT_LINE.exec(stdout)?.[1];
  if (line === undefined) {
    if (!REPORTING_SCRIPTS.has(command.hostScript)) return {};
    throw new HostCommandFailedError(
      `The ${where} ended without its KB-RESULT line, so what it wrote is unknown and nothing was recorded in the catalog. Check that the host runs the scripts of this deployment. Its output ends with:\n${tail(stdout) || '(nothing)'}`,
    );
  }
  try {
    return { result: redactValues(JSON.parse(line) as unknown) };
  } catch {
    throw new HostCommandFailedError(
      `The ${where} printed a result that is not JSON: ${redact(line).slice(0, 200)}`,
    );
  }
}

const NO_OUTPUT: HostOutput = { end: async () => undefined };

/**
 * Polls a host command. A finished one's output is read whole: Run Command
 * returns only the first characters of each stream, and the rest is read from S3
 * (output.ts), so a result line or an error printed after any amount of progress
 * is still the one reported. What reaches the state is redacted (core/redact.ts).
 */
export async function checkHostCommand(
  host: Pick<HostCommands, 'get'>,
  event: unknown,
  {
    output = NO_OUTPUT,
    now = new Date(),
  }: {
    /** Where the whole output is read; without it, a stream Run Command cut is reported cut. */
    output?: HostOutput;
    now?: Date;
  } = {},
): Promise<CommandState> {
  const { command } = parseInput(z.object({ command: commandStateSchema }), event, 'The host command check');
  const invocation = await host.get(command.commandId, command.instanceId);
  const where = `${command.script} on ${invocation.instanceId ?? command.target} (command ${command.commandId})`;
  const read = (stream: 'stdout' | 'stderr') =>
    outputOf(output, command.commandId, invocation, stream, `the bucket's host-output/${command.commandId}/`);
  switch (invocation.status) {
    case 'Success': {
      const stdout = await read('stdout');
      return {
        ...command,
        instanceId: invocation.instanceId,
        status: 'Success',
        output: tail(stdout, 5, 500),
        finishedAt: now.toISOString(),
        ...resultOf(command, stdout, where),
      };
    }
    case 'Failed':
    case 'Cancelled':
      throw new HostCommandFailedError(
        `The ${where} ${invocation.status.toLowerCase()}. Its stderr ends with:\n${tail(await read('stderr')) || '(nothing)'}`,
      );
    case 'TimedOut':
      throw new HostCommandTimedOutError(
        `The ${where} ran out of time and was stopped. Raise HOST_COMMAND_TIMEOUT_SECONDS if the database has grown, or look for locks held on the host. Its stderr ends with:\n${tail(await read('stderr')) || '(nothing)'}`,
      );
    case 'InProgress':
      if (now.getTime() > Date.parse(command.deadline)) {
        throw new HostCommandTimedOutError(
          `The ${where} has not finished by its deadline ${command.deadline}; check that the SSM agent on the instance is online.`,
        );
      }
      return { ...command, instanceId: invocation.instanceId, status: 'InProgress' };
  }
}

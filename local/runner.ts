import { randomUUID } from 'node:crypto';
import {
  accessSync,
  appendFileSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HistoryEvent } from '@aws-sdk/client-sfn';
import {
  ExecutionAbortedError,
  ExecutionError,
  ExecutionTimeoutError,
  StateMachine,
} from 'aws-local-stepfunctions';
import type { Notifier } from '../shared/alert/delivery.ts';
import type { Alert } from '../shared/alert/message.ts';
import type { Executions } from '../shared/core/run-lock.ts';
import { CLEANUP_WORKFLOW } from '../shared/restore/cleanup.ts';
import type { Definition, States } from '../statemachines/steps.ts';
import { isWorkflow, WORKFLOWS } from '../statemachines/workflows.ts';
import type { LocalHost } from './host.ts';

/**
 * Runs a workflow in-process with aws-local-stepfunctions, from the definition
 * the builder in statemachines/ renders for serverless.yml, its Task states
 * bound to the real handlers. The Lambda-only pieces are swapped for local ones:
 * SSM Run Command for bash on this machine, Slack for the terminal and a file,
 * the SSM parameter for the local database URL. An execution aborted or timed
 * out gets what EventBridge does with it in AWS: its status change event goes to
 * the cancelHostCommands function (the HostCommandCancelRule of serverless.yml);
 * every ended execution's goes to exportExecutionHistory (ExecutionEndedRule),
 * which writes its history to the audit trail in the local bucket.
 */

export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

export function workflows(): string[] {
  return Object.keys(WORKFLOWS).sort();
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const START_EXECUTION = 'arn:aws:states:::states:startExecution';
const localMachineArn = (workflow: string) =>
  `arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-local-${workflow}`;

/** `DatabaseBackupStateMachine` (a state machine's logical id in serverless.yml) is the workflow `database-backup`. */
function workflowOfLogicalId(id: string): string {
  return id
    .replace(/StateMachine$/, '')
    .replace(/[A-Z]/g, (c, i: number) => `${i === 0 ? '' : '-'}${c.toLowerCase()}`);
}

/**
 * The deployed template turns `Fn::GetAtt: [fn, Arn]` into the function's ARN;
 * locally it becomes a placeholder ARN. A state that starts another workflow
 * (`states:startExecution`, its StateMachineArn built from the machine's
 * `Fn::GetAtt: [<logical id>, Name]`) is listed in `startsOf` with the workflow it starts.
 */
export function loadDefinition(workflow: string): {
  definition: Definition;
  functionOf: Map<string, string>;
  startsOf: Map<string, string>;
} {
  if (!isWorkflow(workflow)) {
    throw new Error(`Unknown workflow "${workflow}". Known workflows: ${workflows().join(', ')}.`);
  }
  const definition = WORKFLOWS[workflow]();
  const functionOf = new Map<string, string>();
  const startsOf = new Map<string, string>();
  const visit = (states: States) => {
    for (const [name, state] of Object.entries(states)) {
      const parameters = state.Parameters as
        | { StateMachineArn?: { 'Fn::Sub'?: [string, { Name?: { 'Fn::GetAtt'?: [string, string] } }] } }
        | undefined;
      const ref = parameters?.StateMachineArn?.['Fn::Sub']?.[1].Name?.['Fn::GetAtt']?.[0];
      if (state.Resource === START_EXECUTION && ref) {
        const started = workflowOfLogicalId(ref);
        if (!isWorkflow(started)) throw new Error(`${name} starts ${ref}, which is no workflow.`);
        startsOf.set(name, started);
        (state.Parameters as Record<string, unknown>).StateMachineArn = localMachineArn(started);
      }
      const getAtt = (state.Resource as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt'];
      if (getAtt) {
        functionOf.set(name, getAtt[0]);
        state.Resource = `arn:aws:lambda:us-east-1:123456789012:function:kennel-backup-local-${getAtt[0]}`;
      }
      const inner = state.ItemProcessor as { States: States } | undefined;
      if (inner) visit(inner.States);
    }
  };
  visit(definition.States);
  return { definition, functionOf, startsOf };
}

/**
 * Step Functions' quota on what a state takes and gives: 256 KiB, the UTF-8
 * bytes of its JSON (the execution's input, a state's input after Parameters, a
 * task's result, a state's output). Over it a state fails with
 * States.DataLimitExceeded, which no Catch of States.ALL catches and no Retry
 * retries: the execution fails. Locally as in AWS, so that per-table data
 * carried through a workflow fails here, not in production.
 */
export const STATE_PAYLOAD_LIMIT_BYTES = 262_144;

const payloadBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8');

/** States.DataLimitExceeded; aws-local-stepfunctions reads isRetryable and isCatchable of an error it meets. */
class DataLimitExceeded extends Error {
  override readonly name = 'States.DataLimitExceeded';
  readonly isRetryable = false;
  readonly isCatchable = false;
}

/** Throws States.DataLimitExceeded, in Step Functions' words, when `value` is over the quota. */
function checkPayload(value: unknown, said: () => string): void {
  const bytes = payloadBytes(value);
  if (bytes > STATE_PAYLOAD_LIMIT_BYTES)
    throw new DataLimitExceeded(
      `${said()} a size exceeding the maximum number of bytes service limit (${bytes} bytes; at most ${STATE_PAYLOAD_LIMIT_BYTES}).`,
    );
}

/**
 * aws-local-stepfunctions 3 has no hook on a state's output. Every machine it
 * runs, each Map iteration's too, goes through StateMachine.prototype.execute
 * with its own event logger, which is handed each state's output as the state
 * exits, inside the loop whose failure fails the execution: the check sits there.
 */
function enforcePayloadLimit(): void {
  type Logger = {
    dispatchStateExitedEvent(name: string, type: string, input: unknown, output: unknown): void;
  };
  const prototype = StateMachine.prototype as unknown as {
    execute?: (
      this: unknown,
      input: unknown,
      options: { eventLogger: Logger },
      ...rest: unknown[]
    ) => unknown;
    payloadLimit?: true;
  };
  const execute = prototype.execute;
  if (typeof execute !== 'function')
    throw new Error(
      'aws-local-stepfunctions changed: StateMachine.prototype.execute is gone, so the runner cannot enforce the 256 KiB payload limit.',
    );
  if (prototype.payloadLimit) return;
  prototype.payloadLimit = true;
  prototype.execute = function (input, options, ...rest) {
    const logger = options.eventLogger;
    const exited = logger.dispatchStateExitedEvent.bind(logger);
    logger.dispatchStateExitedEvent = (name, type, stateInput, output) => {
      checkPayload(output, () => `The state/task '${name}' returned a result with`);
      exited(name, type, stateInput, output);
    };
    return execute.call(this, input, options, ...rest);
  };
}
enforcePayloadLimit();

type Handler = (event: unknown, context: unknown) => Promise<unknown>;

/** The fields of aws-local-stepfunctions' event log entries that the runner reads. */
interface EventLog {
  type: string;
  timestamp: number;
  state?: { name: string; type?: string; input?: unknown; output?: unknown };
  Error?: string;
  Cause?: unknown;
  retry?: { attempt: number };
  catch?: { catcher: { Next: string } };
}

export interface LocalWiring {
  host: LocalHost;
  databaseUrl: string;
  alertsFile: string;
  /** Where alerts are printed as they are sent. */
  print: (line: string) => void;
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * DescribeExecution's answer locally, for the run locks: an execution runs while
 * its `<name>.running` marker in the history directory names a live process
 * (the runner running it). One that ended, or whose runner died, is not
 * running, as Step Functions says of an ended execution.
 */
export function localExecutions(historyDir: string): Executions {
  return {
    async isRunning(executionArn) {
      const name = executionArn.split(':').at(-1) ?? '';
      try {
        process.kill(Number(readFileSync(join(historyDir, `${name}.running`), 'utf8')), 0);
        return true;
      } catch {
        return false; // no marker, or its process is gone
      }
    },
  };
}

/**
 * What EventBridge and Step Functions do beside an execution, locally: start
 * another workflow (restore-cleanup, which cancelHostCommands starts), keep each
 * ended execution's history for GetExecutionHistory, and say which run
 * (DescribeExecution, from the history directory).
 */
interface LocalServices {
  startWorkflow: (workflow: string, input: unknown) => string;
  histories: Map<string, HistoryEvent[]>;
  historyDir: string;
}

/** Imports the handler of each function; the modules read their config from process.env now. */
async function loadHandlers(
  functionNames: Iterable<string>,
  wiring: LocalWiring,
  services: LocalServices,
): Promise<Map<string, Handler>> {
  const notify: Notifier = async (alert: Alert) => {
    wiring.print(`\n${alert.text}\n`);
    appendFileSync(wiring.alertsFile, `${JSON.stringify(alert)}\n`);
  };
  const databaseUrl = async () => wiring.databaseUrl;
  // What each function's createHandler takes instead of its AWS dependency.
  const localDependency: Record<string, unknown> = {
    startHostCommand: wiring.host,
    checkHostCommand: wiring.host,
    restoreTest: databaseUrl,
    checkRestore: databaseUrl,
    sendAlert: notify,
    cancelHostCommands: {
      host: wiring.host,
      channels: { local: notify },
      startCleanUp: async (request: unknown) => services.startWorkflow(CLEANUP_WORKFLOW, request),
    },
    planCleanUp: async (executionArn: string) => {
      const history = services.histories.get(executionArn);
      if (!history) throw new Error(`No local execution ${executionArn} has ended.`);
      return history;
    },
    runLock: localExecutions(services.historyDir),
    // Locally an alert goes to the terminal and a file: the file's directory must take it.
    reportCheck: async () => {
      try {
        accessSync(dirname(wiring.alertsFile), constants.W_OK);
        return [{ ok: true, text: `local: alerts go to the terminal and ${wiring.alertsFile}` }];
      } catch (error) {
        return [
          {
            ok: false,
            text: `local: alerts cannot be written to ${wiring.alertsFile} (${(error as Error).message}): make its directory writable`,
          },
        ];
      }
    },
    // GetExecutionHistory's pages, oldest event first: here one page of the ended execution's events.
    exportExecutionHistory: async function* (executionArn: string) {
      const history = services.histories.get(executionArn);
      if (!history) throw new Error(`No local execution ${executionArn} has ended.`);
      yield [...history].reverse();
    },
  };
  const handlers = new Map<string, Handler>();
  for (const fn of new Set(functionNames)) {
    const module = (await import(join(PROJECT_ROOT, 'functions', kebab(fn), 'handler.ts'))) as {
      handler: Handler;
      createHandler?: (dep: unknown) => Handler;
    };
    const dependency = localDependency[fn];
    handlers.set(
      fn,
      dependency !== undefined && module.createHandler ? module.createHandler(dependency) : module.handler,
    );
  }
  return handlers;
}

export interface RunOptions {
  workflow: string;
  input: unknown;
  executionName?: string;
  historyDir: string;
  /** Called before a Task state's handler runs (tests use it to break things on purpose). */
  beforeTask?: (state: string, input: unknown) => Promise<void>;
  /** One line per state event, as the execution runs. */
  progress?: (line: string) => void;
  /** Milliseconds for every Wait state and retry interval locally (the definitions wait for real in AWS). */
  waitMs?: number;
  /** Aborts the execution, as StopExecution does. */
  signal?: AbortSignal;
  /** The execution's time limit instead of the definition's TimeoutSeconds. */
  timeoutSeconds?: number;
  /**
   * What a `states:startExecution` state does locally: by default the started
   * workflow runs once this one has ended (its record in `started`); tests may
   * take the request instead.
   */
  startExecution?: (request: { workflow: string; input: unknown }) => Promise<void>;
}

/** Step Functions' statuses of an ended execution. */
export type ExecutionStatus = 'SUCCEEDED' | 'FAILED' | 'ABORTED' | 'TIMED_OUT';

/** The function the rule on aborted and timed-out executions targets. */
const CANCEL_FUNCTION = 'cancelHostCommands';
/** The function the rule on every ended execution targets: the audit trail. */
const EXPORT_FUNCTION = 'exportExecutionHistory';

export interface ExecutionRecord {
  executionArn: string;
  workflow: string;
  status: ExecutionStatus;
  input: unknown;
  output?: unknown;
  error?: string;
  cause?: string;
  startDate: string;
  stopDate: string;
  historyFile: string;
  events: (EventLog & { timestampIso: string })[];
  /** The workflows this one started, run after it. */
  started: ExecutionRecord[];
}

export async function runWorkflow(options: RunOptions, wiring: LocalWiring): Promise<ExecutionRecord> {
  // StartExecution refuses a larger input before anything runs.
  if (payloadBytes(options.input) > STATE_PAYLOAD_LIMIT_BYTES)
    throw new Error(
      `The execution input is ${payloadBytes(options.input)} bytes; StartExecution takes at most ${STATE_PAYLOAD_LIMIT_BYTES}.`,
    );
  const { definition, functionOf, startsOf } = loadDefinition(options.workflow);
  if (options.timeoutSeconds !== undefined) definition.TimeoutSeconds = options.timeoutSeconds;
  const queued: { workflow: string; input: unknown }[] = [];
  const handlers = await loadHandlers([...functionOf.values(), CANCEL_FUNCTION, EXPORT_FUNCTION], wiring, {
    startWorkflow: (workflow, input) => {
      queued.push({ workflow, input });
      return `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-${workflow}:local-started-${randomUUID().slice(0, 8)}`;
    },
    histories: HISTORIES,
    historyDir: options.historyDir,
  });
  const name = options.executionName ?? defaultExecutionName();
  checkExecutionName(options.historyDir, options.workflow, name);
  const stateMachineArn = `arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-local-${options.workflow}`;
  const executionArn = `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-${options.workflow}:${name}`;
  const startDate = new Date().toISOString();
  const waitMs = options.waitMs ?? 200;

  const taskResourceLocalHandlers: Record<string, (input: Json) => Promise<Json>> = {};
  for (const [state, fn] of functionOf) {
    const handler = handlers.get(fn) as Handler;
    taskResourceLocalHandlers[state] = async (input) => {
      checkPayload(input, () => `The input to the state/task '${state}' has`);
      await options.beforeTask?.(state, input);
      const result = (await handler(input, lambdaContext(fn))) as Json;
      checkPayload(result, () => `The state/task '${state}' returned a result with`);
      return result;
    };
  }
  for (const [state, workflow] of startsOf) {
    taskResourceLocalHandlers[state] = async (parameters) => {
      const input = (parameters as { Input?: unknown }).Input ?? {};
      if (options.startExecution) await options.startExecution({ workflow, input });
      else queued.push({ workflow, input });
      const id = `local-started-${randomUUID().slice(0, 8)}`;
      return {
        ExecutionArn: `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-${workflow}:${id}`,
        StartDate: new Date().toISOString(),
      };
    };
  }
  const waitTimeOverrides: Record<string, number> = {};
  const retryIntervalOverrides: Record<string, number> = {};
  const override = (states: States) => {
    for (const [state, def] of Object.entries(states)) {
      if (def.Type === 'Wait') waitTimeOverrides[state] = waitMs;
      if (def.Retry) retryIntervalOverrides[state] = waitMs;
      const inner = def.ItemProcessor as { States: States } | undefined;
      if (inner) override(inner.States);
    }
  };
  override(definition.States);

  // While this marker is there, the execution is running (localExecutions); removed once its history is written.
  mkdirSync(options.historyDir, { recursive: true });
  const running = join(options.historyDir, `${name}.running`);
  writeFileSync(running, String(process.pid));
  const machine = new StateMachine(definition as never, {
    validationOptions: { checkArn: true, checkPaths: true },
  });
  const execution = machine.run(options.input as Json, {
    overrides: { taskResourceLocalHandlers, waitTimeOverrides, retryIntervalOverrides },
    context: {
      Execution: {
        Id: executionArn,
        Name: name,
        StartTime: startDate,
        Input: options.input as Json,
        RoleArn: 'local',
      },
      StateMachine: { Id: stateMachineArn, Name: `kennel-backup-local-${options.workflow}` },
    },
  });

  const events: ExecutionRecord['events'] = [];
  const progress = progressPrinter(options.progress ?? (() => {}));
  const abort = () => execution.abort();
  options.signal?.addEventListener('abort', abort, { once: true });
  const collecting = (async () => {
    for await (const logged of execution.eventLogs) {
      const event = logged as EventLog;
      events.push({ ...event, timestampIso: new Date(event.timestamp).toISOString() });
      progress(event);
    }
  })();

  let record: Omit<ExecutionRecord, 'events' | 'stopDate' | 'historyFile' | 'started'>;
  try {
    const output = await execution.result;
    record = {
      executionArn,
      workflow: options.workflow,
      status: 'SUCCEEDED',
      input: options.input,
      output,
      startDate,
    };
  } catch (error) {
    const failure =
      error instanceof ExecutionError
        ? (error.cause as { name?: string; message?: string } | undefined)
        : undefined;
    record = {
      executionArn,
      workflow: options.workflow,
      status:
        error instanceof ExecutionAbortedError
          ? 'ABORTED'
          : error instanceof ExecutionTimeoutError
            ? 'TIMED_OUT'
            : 'FAILED',
      input: options.input,
      error: failure?.name ?? (error as Error).name,
      cause: failure?.message ?? (error as Error).message,
      startDate,
    };
  } finally {
    options.signal?.removeEventListener('abort', abort);
  }
  await collecting;
  const stopDate = new Date().toISOString();
  HISTORIES.set(executionArn, historyOf(events, record));
  const statusChange = statusChangeEvent({ ...record, stopDate, stateMachineArn, name });
  if (record.status === 'ABORTED' || record.status === 'TIMED_OUT') {
    await (handlers.get(CANCEL_FUNCTION) as Handler)(statusChange, lambdaContext(CANCEL_FUNCTION));
  }
  // As in AWS, the export is beside the execution: its failure (a local S3 a
  // test stopped) is said, and changes nothing of the execution's outcome.
  try {
    await (handlers.get(EXPORT_FUNCTION) as Handler)(statusChange, lambdaContext(EXPORT_FUNCTION));
  } catch (error) {
    wiring.print(`The history of ${name} was not exported to the audit trail: ${(error as Error).message}`);
  }
  await wiring.host.drain();
  mkdirSync(options.historyDir, { recursive: true });
  const historyFile = join(options.historyDir, historyFileName(options.workflow, record.status, name));
  const full: ExecutionRecord = { ...record, stopDate, historyFile, events, started: [] };
  writeFileSync(historyFile, `${JSON.stringify(full, null, 2)}\n`);
  rmSync(running, { force: true });
  const { executionName: _, ...same } = options;
  for (const next of queued) {
    options.progress?.(`starts ${next.workflow} ${JSON.stringify(next.input)}`);
    full.started.push(await runWorkflow({ ...same, workflow: next.workflow, input: next.input }, wiring));
  }
  return full;
}

/**
 * An execution's name, as Step Functions takes one from the console or
 * StartExecution (1 to 80 characters), narrowed to letters, digits, `-` and `_`
 * so that it is safe in a file name and in the ARN.
 */
const EXECUTION_NAME = /^[A-Za-z0-9_-]{1,80}$/;

/** A name when none is given: when it started, and 8 hex digits that keep two starts in one second apart. */
function defaultExecutionName(): string {
  return `local-${new Date().toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 8)}`;
}

/**
 * An ended execution's history file: `<workflow>.<STATUS>.<name>.json`, so that
 * a listing of the directory reads like the console's list of executions.
 */
export function historyFileName(workflow: string, status: ExecutionStatus, name: string): string {
  return `${workflow}.${status}.${name}.json`;
}

const HISTORY_FILE = /^([a-z][a-z-]*)\.(SUCCEEDED|FAILED|ABORTED|TIMED_OUT)\.([A-Za-z0-9_-]{1,80})\.json$/;

/**
 * Refuses a name that is not one (EXECUTION_NAME) or that this workflow has
 * used already, ended or running, as StartExecution does (ExecutionAlreadyExists).
 * Throws an Error saying what to give instead; nothing has started.
 */
export function checkExecutionName(historyDir: string, workflow: string, name: string): void {
  if (!EXECUTION_NAME.test(name))
    throw new Error(
      `The execution name ${JSON.stringify(name.slice(0, 100))} is not one: give 1 to 80 letters, digits, "-" or "_".`,
    );
  const used =
    existsSync(join(historyDir, `${name}.running`)) ||
    (existsSync(historyDir) &&
      readdirSync(historyDir).some((file) => {
        const match = HISTORY_FILE.exec(file);
        return match?.[1] === workflow && match[3] === name;
      }));
  if (used)
    throw new Error(
      `An execution of ${workflow} named ${name} exists already (${historyDir}); give another --name.`,
    );
}

/** One line of `npm run local -- executions`: an ended execution, from its history file. */
export interface ExecutionSummary {
  workflow: string;
  name: string;
  status: ExecutionStatus;
  startDate: string;
  stopDate: string;
  /** Whole seconds from start to stop. */
  durationSeconds: number;
  historyFile: string;
}

/**
 * The ended executions whose histories are in `historyDir`, newest start first,
 * as the console lists them. A file that is not a history (another name, or
 * JSON without its dates) is passed over.
 */
export function listExecutions(historyDir: string): ExecutionSummary[] {
  if (!existsSync(historyDir)) return [];
  const found: ExecutionSummary[] = [];
  for (const file of readdirSync(historyDir)) {
    const match = HISTORY_FILE.exec(file);
    if (!match) continue;
    const historyFile = join(historyDir, file);
    let dates: { startDate?: unknown; stopDate?: unknown };
    try {
      dates = JSON.parse(readFileSync(historyFile, 'utf8')) as typeof dates;
    } catch {
      continue;
    }
    const { startDate, stopDate } = dates;
    if (typeof startDate !== 'string' || typeof stopDate !== 'string') continue;
    found.push({
      workflow: match[1] as string,
      status: match[2] as ExecutionStatus,
      name: match[3] as string,
      startDate,
      stopDate,
      durationSeconds: Math.round((Date.parse(stopDate) - Date.parse(startDate)) / 1000),
      historyFile,
    });
  }
  return found.sort((a, b) => Date.parse(b.startDate) - Date.parse(a.startDate));
}

/** The ended executions' histories, by ARN, for the handlers that read one (GetExecutionHistory in AWS). */
const HISTORIES = new Map<string, HistoryEvent[]>();

/**
 * An execution's events as GetExecutionHistory gives them with reverseOrder:
 * newest first: its start with its input, each state's entry and exit with its
 * input and output, and the execution's end with its output or error.
 */
function historyOf(
  events: readonly EventLog[],
  execution: Pick<ExecutionRecord, 'status' | 'input' | 'output' | 'error' | 'cause' | 'startDate'>,
): HistoryEvent[] {
  const history: HistoryEvent[] = [
    {
      id: 1,
      previousEventId: 0,
      timestamp: new Date(execution.startDate),
      type: 'ExecutionStarted',
      executionStartedEventDetails: { input: JSON.stringify(execution.input ?? null), roleArn: 'local' },
    },
  ];
  let id = 1;
  for (const event of events) {
    const state = event.state;
    if (!state || (event.type !== 'StateEntered' && event.type !== 'StateExited')) continue;
    id += 1;
    const kind = `${state.type ?? 'Task'}State${event.type === 'StateEntered' ? 'Entered' : 'Exited'}`;
    history.push({
      id,
      previousEventId: id - 1,
      timestamp: new Date(event.timestamp),
      type: kind as HistoryEvent['type'],
      ...(event.type === 'StateEntered'
        ? { stateEnteredEventDetails: { name: state.name, input: JSON.stringify(state.input ?? null) } }
        : { stateExitedEventDetails: { name: state.name, output: JSON.stringify(state.output ?? null) } }),
    });
  }
  const failure = { error: execution.error, cause: execution.cause };
  const end = {
    SUCCEEDED: {
      type: 'ExecutionSucceeded',
      executionSucceededEventDetails: { output: JSON.stringify(execution.output ?? null) },
    },
    FAILED: { type: 'ExecutionFailed', executionFailedEventDetails: failure },
    ABORTED: { type: 'ExecutionAborted', executionAbortedEventDetails: failure },
    TIMED_OUT: { type: 'ExecutionTimedOut', executionTimedOutEventDetails: failure },
  } as const;
  history.push({ id: id + 1, previousEventId: id, timestamp: new Date(), ...end[execution.status] });
  return history.reverse();
}

/** EventBridge's "Step Functions Execution Status Change" event of an ended execution. */
function statusChangeEvent(execution: {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: ExecutionStatus;
  startDate: string;
  stopDate: string;
  input: unknown;
  output?: unknown;
  error?: string;
  cause?: string;
}) {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Step Functions Execution Status Change',
    source: 'aws.states',
    account: '123456789012',
    time: execution.stopDate,
    region: 'us-east-1',
    resources: [execution.executionArn],
    detail: {
      executionArn: execution.executionArn,
      stateMachineArn: execution.stateMachineArn,
      name: execution.name,
      status: execution.status,
      startDate: Date.parse(execution.startDate),
      stopDate: Date.parse(execution.stopDate),
      input: JSON.stringify(execution.input),
      output: execution.status === 'SUCCEEDED' ? JSON.stringify(execution.output ?? null) : null,
      error: execution.error ?? null,
      cause: execution.cause ?? null,
    },
  };
}

/**
 * Turns the event log into progress lines: one per state, and one per Wait/Check
 * loop (with its number of polls) rather than one per poll.
 */
function progressPrinter(print: (line: string) => void) {
  const entered = new Map<string, number>();
  const caught = new Set<string>();
  let loop: { name: string; since: number; until: number; polls: number } | undefined;
  const flush = () => {
    if (!loop) return;
    const polls = loop.polls > 1 ? ` (${loop.polls} polls)` : '';
    print(`  ✓ ${loop.name.padEnd(22)} ${((loop.until - loop.since) / 1000).toFixed(1)}s${polls}`);
    loop = undefined;
  };
  return (event: EventLog) => {
    const name = event.state?.name;
    if (name === undefined) return flush();
    switch (event.type) {
      case 'StateEntered':
        entered.set(name, event.timestamp);
        if (loop && loop.name !== name && event.state?.type !== 'Wait' && event.state?.type !== 'Choice')
          flush();
        return;
      case 'StateExited': {
        if (event.state?.type === 'Wait' || event.state?.type === 'Choice' || caught.delete(name)) return;
        if (loop?.name === name) {
          loop.polls += 1;
          loop.until = event.timestamp;
          return;
        }
        flush();
        loop = { name, since: entered.get(name) ?? event.timestamp, until: event.timestamp, polls: 1 };
        return;
      }
      case 'StateFailed':
        flush();
        return print(`  ✗ ${name.padEnd(22)} ${event.Error}`);
      case 'StateRetried':
        flush();
        return print(`  ↻ ${name.padEnd(22)} retry ${event.retry?.attempt}`);
      case 'StateCaught':
        flush();
        caught.add(name);
        return print(`  ⤷ ${name.padEnd(22)} caught, going to ${event.catch?.catcher.Next}`);
    }
  };
}

function lambdaContext(functionName: string) {
  return {
    functionName: `kennel-backup-local-${functionName}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:kennel-backup-local-${functionName}`,
    memoryLimitInMB: '512',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/kennel-backup-local-${functionName}`,
    logStreamName: 'local',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => 900_000,
  };
}

import type { HostCommandName } from '../functions/start-host-command/commands.ts';

/**
 * The steps every workflow is built from: one retry policy, a Lambda task, a
 * host command (send, wait, check), an alert, a Map over plans, and the end of
 * a failed execution. Each returns plain Amazon States Language (JSONPath) that
 * serverless.yml deploys and the local runner runs as it is.
 *
 * Handlers import state names and result paths from the workflow modules, so
 * their top levels hold literals only (and calls marked pure): a bundle keeps the
 * constants it reads and drops the rest.
 */

/** A state of Amazon States Language, as loose as the language; asl-validator checks every definition. */
export interface State {
  Type: 'Task' | 'Pass' | 'Choice' | 'Wait' | 'Map' | 'Succeed' | 'Fail';
  Comment?: string;
  [field: string]: unknown;
}
export type States = Record<string, State>;
export type Parameters = Record<string, unknown>;

export interface Definition {
  Comment: string;
  StartAt: string;
  TimeoutSeconds: number;
  States: States;
}

/**
 * The functions the workflows invoke, each with the seconds its Task waits: at
 * least the function's own timeout in serverless.yml, so that a Task never gives
 * up on a function that is still running (the template test checks).
 */
export const TASK_SECONDS = {
  planBackup: 60,
  planFilesBackup: 60,
  planRestore: 60,
  planPointInTimeRecovery: 120,
  planFilesRestore: 60,
  planVerification: 120,
  planMonitoring: 120,
  planWalArchiveAge: 30,
  planDrill: 120,
  planRecoveryDrill: 120,
  planCleanUp: 60,
  startHostCommand: 60,
  checkHostCommand: 60,
  checkWalContinuity: 900,
  verifyArchive: 900,
  restoreTest: 300,
  recordPhysicalRestoreTest: 60,
  checkRestore: 300,
  pruneBackups: 120,
  recordPhysicalBackup: 60,
  recordPhysicalExpiry: 60,
  reportRestore: 60,
  reportPointInTimeRecovery: 60,
  reportVerification: 60,
  reportMonitoring: 60,
  reportWalArchiveAge: 30,
  reportDrill: 60,
  reportRecoveryDrill: 60,
  planPrepareHost: 60,
  reportPrepareHost: 60,
  planCheck: 60,
  reportCheck: 60,
  writeAuditReport: 900,
  sendAlert: 60,
  runLock: 30,
} as const;

export type LambdaName = keyof typeof TASK_SECONDS;

/**
 * The longest any workflow runs: the largest TimeoutSeconds of a definition,
 * where Step Functions ends an execution whatever it is doing. Whatever a run
 * left (an archive without its manifest, a partial file, a scratch database) is
 * provably no running execution's once the run started longer ago than this.
 * A unit test holds every workflow to it.
 */
export const MAX_EXECUTION_SECONDS = 86_400;

/**
 * The retry policy, the only one. A stage is retried when a dependency did not
 * answer (shared/core/errors.ts's TransientError) or Lambda failed to run it (a
 * service fault, throttling): three times, after up to 2, 4 and 8 s (full jitter,
 * so that the iterations of a Map do not retry in step). An alert is also
 * retried when it timed out (a slow webhook), but twice only, after 2 and 4 s:
 * the execution's failure must not wait long on it. Plain literals, so that a
 * bundle importing a state name drops them.
 */
export const RETRY = {
  stage: {
    ErrorEquals: [
      'TransientError',
      'Lambda.ServiceException',
      'Lambda.AWSLambdaException',
      'Lambda.SdkClientException',
      'Lambda.TooManyRequestsException',
    ],
    IntervalSeconds: 2,
    MaxAttempts: 3,
    BackoffRate: 2,
    JitterStrategy: 'FULL',
  },
  alert: {
    ErrorEquals: [
      'States.Timeout',
      'Lambda.ServiceException',
      'Lambda.AWSLambdaException',
      'Lambda.SdkClientException',
      'Lambda.TooManyRequestsException',
    ],
    IntervalSeconds: 2,
    MaxAttempts: 2,
    BackoffRate: 2,
  },
} as const;

/** Where every Catch of a failing stage writes its error: `failed.<StateName>`, so its key names the failing state. */
export const FAILED = 'failed';
/** A run's plan: the plan stage's result, or a Map iteration's item. The alert reads its target from it. */
export const PLAN = 'plan';
/** What the alert stage returns: the execution's error and cause for its Fail state. */
export const ALERT = 'alert';
/** A report stage's result, which is the execution's output. */
export const REPORT = 'report';
/** In a Map over the hosts: the iteration's host plan, and its command's state. */
export const HOST = 'host';
export const COMMAND = 'command';

/** The first state of every workflow: it wraps the input, so that even a malformed one reaches the plan stage. */
export const RECEIVE_REQUEST = 'ReceiveRequest';
/** The failure alerts: before any run, and of one run in a Map (the other runs go on). */
export const NOTIFY_FAILURE = 'NotifyFailure';
export const NOTIFY_RUN_FAILURE = 'NotifyRunFailure';
/** The end of an execution whose failure alert could not be sent. */
const ALERT_NOT_SENT = 'AlertNotSent';

/** The JSONPath of a result: `at('plan', 'manifestKey')` is `$.plan.manifestKey`. */
export function at(...keys: string[]): string {
  return ['$', ...keys].join('.');
}

/** Parameters that pass these results on as they are: `{ "plan.$": "$.plan", … }`. */
export function select(...keys: string[]): Parameters {
  return Object.fromEntries(keys.map((key) => [`${key}.$`, at(key)]));
}

/** The execution's id (its ARN), from the context object. */
const EXECUTION_ID = '$$.Execution.Id';
/** The execution's id and start, from the context object. */
const EXECUTION = { 'executionId.$': EXECUTION_ID, 'startedAt.$': '$$.Execution.StartTime' };

/** Where a Catch goes, and where it writes the error (`failed.<StateName>` unless said otherwise). */
export interface OnError {
  next: string;
  resultPath?: string;
}

function lambda(fn: LambdaName) {
  return { 'Fn::GetAtt': [fn, 'Arn'] };
}

export interface TaskOptions {
  comment: string;
  parameters: Parameters;
  resultPath: string;
  onError: OnError;
  next: string;
}

/** A Lambda stage: retried by the policy, its error caught and recorded, its result kept beside the input. */
export function task(name: string, fn: LambdaName, options: TaskOptions): States {
  return {
    [name]: {
      Type: 'Task',
      Comment: options.comment,
      Resource: lambda(fn),
      Parameters: options.parameters,
      ResultPath: options.resultPath,
      TimeoutSeconds: TASK_SECONDS[fn],
      Retry: [RETRY.stage],
      Catch: [
        {
          ErrorEquals: ['States.ALL'],
          ResultPath: options.onError.resultPath ?? at(FAILED, name),
          Next: options.onError.next,
        },
      ],
      Next: options.next,
    },
  };
}

export interface PlanOptions {
  /** What ReceiveRequest's wrapping is for in this workflow. */
  receiveComment: string;
  comment: string;
  resultPath: string;
  next: string;
  /** Where a failed plan goes: NotifyFailure unless the workflow must never alert by itself. */
  onError?: OnError;
}

/**
 * ReceiveRequest, then the plan stage: it gets the input with the execution's id
 * and start, and a failure goes to NotifyFailure before anything ran.
 */
export function plan(name: string, fn: LambdaName, options: PlanOptions): States {
  return {
    [RECEIVE_REQUEST]: {
      Type: 'Pass',
      Comment: options.receiveComment,
      Parameters: { 'input.$': '$' },
      Next: name,
    },
    ...task(name, fn, {
      comment: options.comment,
      parameters: {
        'input.$': at('input'),
        ...EXECUTION,
      },
      resultPath: options.resultPath,
      onError: options.onError ?? { next: NOTIFY_FAILURE },
      next: options.next,
    }),
  };
}

/** The four states of a host command, named after what it does: StartDump, WaitForDump, CheckDump, DumpFinished. */
export function hostCommandNames<N extends string, S extends string = `Start${N}`>(noun: N, start?: S) {
  return {
    start: start ?? (`Start${noun}` as S),
    wait: `WaitFor${noun}` as const,
    check: `Check${noun}` as const,
    finished: `${noun}Finished` as const,
  };
}

export type HostCommandNames = ReturnType<typeof hostCommandNames>;

export interface HostCommandOptions {
  /** What the command does, on its Start state. */
  comment: string;
  script: HostCommandName;
  /** The script's input besides its name: its plan, and what else it takes. */
  parameters: Parameters;
  resultPath: string;
  pollSeconds: number;
  onError: OnError;
  /** Where to go once the command has succeeded. */
  next: string;
}

/**
 * A command on the DB host through SSM Run Command: sent with a deadline, then
 * polled (host commands run for minutes; a waiting Lambda would be paid for and
 * time out). The check throws when the command failed, was cancelled or is past
 * its deadline, and the send and the check both catch to `onError`.
 */
export function hostCommand(names: string | HostCommandNames, options: HostCommandOptions): States {
  const { start, wait, check, finished } = typeof names === 'string' ? hostCommandNames(names) : names;
  return {
    ...task(start, 'startHostCommand', {
      comment: options.comment,
      // The execution's id goes into the command's Comment: an aborted execution's commands are found by it.
      parameters: { script: options.script, 'execution.$': EXECUTION_ID, ...options.parameters },
      resultPath: options.resultPath,
      onError: options.onError,
      next: wait,
    }),
    [wait]: {
      Type: 'Wait',
      Comment: 'Host commands take a while; poll instead of holding a Lambda open.',
      Seconds: options.pollSeconds,
      Next: check,
    },
    ...task(check, 'checkHostCommand', {
      comment:
        "Reads the command's status and result line; throws on failure or when its deadline has passed.",
      parameters: { 'command.$': options.resultPath },
      resultPath: options.resultPath,
      onError: options.onError,
      next: finished,
    }),
    [finished]: {
      Type: 'Choice',
      Comment: 'Loops until the command has succeeded (failures and the deadline throw in the check).',
      Choices: [{ Variable: `${options.resultPath}.status`, StringEquals: 'Success', Next: options.next }],
      Default: wait,
    },
  };
}

export interface NotifyOptions {
  /** The workflow's name. */
  workflow: string;
  comment: string;
  /** A succeeded execution's summary, or a warning; neither: a failure alert. */
  message?: { 'summary.$': string } | { 'warning.$': string };
  resultPath?: string;
  next: string;
  /** Where to go when the alert itself failed, and where its error goes. */
  ifNotSent?: { next: string; resultPath: string };
}

/**
 * A post to Slack and the alert topic. It gets the whole state, from which the
 * alert reads the failing state (`failed.<StateName>`) and the run's plan; an
 * alert that cannot be sent never hides what it was posting.
 */
export function notify(name: string, options: NotifyOptions): States {
  const { next, resultPath = at(ALERT) } = options;
  const ifNotSent = options.ifNotSent ?? { next, resultPath: at('alertFailure') };
  const workflow = options.workflow.startsWith('$$.')
    ? { 'workflow.$': options.workflow }
    : { workflow: options.workflow };
  return {
    [name]: {
      Type: 'Task',
      Comment: options.comment,
      Resource: lambda('sendAlert'),
      Parameters: { ...workflow, ...EXECUTION, 'state.$': '$', ...options.message },
      ResultPath: resultPath,
      TimeoutSeconds: TASK_SECONDS.sendAlert,
      Retry: [RETRY.alert],
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: ifNotSent.resultPath, Next: ifNotSent.next }],
      Next: next,
    },
  };
}

export interface FailureEndOptions {
  workflow: string;
  /** The workflow takes a run lock (takeRunLock): a failure gives it back after the alert, when it was taken. */
  runLock?: boolean;
  /** What NotifyFailure posts. */
  comment: string;
  /** The Fail state that ends the execution with the original error and cause. */
  failed: { name: string; comment: string };
  /** The error and cause when the alert itself could not be sent. */
  alertNotSent: { error: string; cause: string };
}

/** NotifyFailure, then a Fail state with the original error; AlertNotSent when the alert failed too. */
export function failureEnd(options: FailureEndOptions): States {
  const afterAlert = options.runLock ? WAS_RUN_LOCK_TAKEN : options.failed.name;
  return {
    ...notify(NOTIFY_FAILURE, {
      workflow: options.workflow,
      comment: options.comment,
      next: afterAlert,
      ifNotSent: { next: options.runLock ? afterAlert : ALERT_NOT_SENT, resultPath: at('alertFailure') },
    }),
    ...(options.runLock
      ? {
          [WAS_RUN_LOCK_TAKEN]: {
            Type: 'Choice',
            Comment:
              'Gives the run lock back when this run took it; a run refused at TakeRunLock holds none.',
            Choices: [{ Variable: at(RUN_LOCK), IsPresent: true, Next: 'ReleaseRunLockAfterFailure' }],
            Default: 'WasAlertSent',
          },
          ...releaseRunLock('ReleaseRunLockAfterFailure', 'WasAlertSent'),
          WasAlertSent: {
            Type: 'Choice',
            Comment: 'Ends with the original error, or says the alert itself failed.',
            Choices: [{ Variable: at('alertFailure'), IsPresent: true, Next: ALERT_NOT_SENT }],
            Default: options.failed.name,
          },
        }
      : {}),
    [options.failed.name]: {
      Type: 'Fail',
      Comment: options.failed.comment,
      ErrorPath: at(ALERT, 'error'),
      CausePath: at(ALERT, 'cause'),
    },
    [ALERT_NOT_SENT]: {
      Type: 'Fail',
      Comment: 'The alert stage failed: the execution still fails, and the history keeps both errors.',
      Error: options.alertNotSent.error,
      Cause: options.alertNotSent.cause,
    },
  };
}

export interface ForEachOptions {
  comment: string;
  itemsPath: string;
  /** The name each iteration's item goes under. */
  item: string;
  startAt: string;
  states: States;
  resultPath: string;
  next: string;
}

/**
 * A Map over planned items, two at a time; each iteration catches its own
 * failure, so one bad target or archive does not stop the others.
 */
export function forEach(name: string, options: ForEachOptions): States {
  return {
    [name]: {
      Type: 'Map',
      Comment: options.comment,
      ItemsPath: options.itemsPath,
      MaxConcurrency: 2,
      ItemSelector: { [`${options.item}.$`]: '$$.Map.Item.Value' },
      ItemProcessor: {
        ProcessorConfig: { Mode: 'INLINE' },
        StartAt: options.startAt,
        States: options.states,
      },
      ResultPath: options.resultPath,
      Next: options.next,
    },
  };
}

/** IsDryRun, and ReturnPlan: with `dryRun` in the plan, the plan is the output and nothing changes. */
export function dryRun(options: { returnComment: string; next: string }): States {
  return {
    IsDryRun: {
      Type: 'Choice',
      Comment: 'dryRun: the plan is the output, and nothing is changed.',
      Choices: [{ Variable: at(PLAN, 'dryRun'), BooleanEquals: true, Next: 'ReturnPlan' }],
      Default: options.next,
    },
    ReturnPlan: {
      Type: 'Pass',
      Comment: options.returnComment,
      Parameters: { dryRun: true, changed: 'nothing', 'plan.$': at(PLAN) },
      End: true,
    },
  };
}

export interface ReportOptions {
  comment: string;
  parameters: Parameters;
  onError: OnError;
  /** The alert that posts the report's summary, when it has one. */
  summary?: { name: string; workflow: string; comment: string };
  /** The Succeed state whose output is the report. */
  succeeded: { name: string; comment: string };
}

/** A report stage, whose result is the execution's output; posted as a summary when it has one. */
export function report(name: string, fn: LambdaName, options: ReportOptions): States {
  const { summary, succeeded } = options;
  return {
    ...task(name, fn, {
      comment: options.comment,
      parameters: options.parameters,
      resultPath: at(REPORT),
      onError: options.onError,
      next: summary?.name ?? succeeded.name,
    }),
    ...(summary
      ? notify(summary.name, {
          workflow: summary.workflow,
          comment: summary.comment,
          message: { 'summary.$': at(REPORT, 'summary') },
          next: succeeded.name,
        })
      : {}),
    [succeeded.name]: { Type: 'Succeed', Comment: succeeded.comment, OutputPath: at(REPORT) },
  };
}

export interface OnEachHostOptions {
  comment: string;
  /** The hosts to run on: the plan's `hosts` unless said otherwise. */
  itemsPath?: string;
  command: { noun: string; comment: string; script: HostCommandName; pollSeconds: number };
  /** The Succeed state of a host whose command ran. */
  done: string;
  /** The Succeed state of a host whose command failed: a finding for the report, not a failure. */
  notDone: { name: string; comment: string };
  resultPath: string;
  next: string;
}

/** A host command on every target's host (the plan's `hosts`), each iteration under `host` with its `command`. */
export function onEachHost(name: string, options: OnEachHostOptions): States {
  const { command, done, notDone } = options;
  return forEach(name, {
    comment: options.comment,
    itemsPath: options.itemsPath ?? at(PLAN, 'hosts'),
    item: HOST,
    startAt: `Start${command.noun}`,
    states: {
      ...hostCommand(command.noun, {
        comment: command.comment,
        script: command.script,
        parameters: { 'plan.$': at(HOST) },
        resultPath: at(COMMAND),
        pollSeconds: command.pollSeconds,
        onError: { next: notDone.name },
        next: done,
      }),
      [done]: { Type: 'Succeed' },
      [notDone.name]: { Type: 'Succeed', Comment: notDone.comment },
    },
    resultPath: options.resultPath,
    next: options.next,
  });
}

/** Where TakeRunLock's result goes: the lock keys taken and till when; ReleaseRunLock reads them. */
export const RUN_LOCK = 'runLock';
const WAS_RUN_LOCK_TAKEN = 'WasRunLockTaken';

export interface TakeRunLockOptions {
  /** The workflow's name, recorded in the lock for whoever finds it held. */
  workflow: string;
  /** The workflow's TimeoutSeconds: the lock holds until the run's start plus this. */
  timeoutSeconds: number;
  /** JSONPath (or an intrinsic) giving the targets locked, and the scope: a backup kind, or `database/<name>`. */
  targets: string;
  scope: string;
  next: string;
}

/**
 * TakeRunLock (shared/core/run-lock.ts): the run's locks, before it changes
 * anything; another running execution holding one fails this run with
 * RunLockHeldError, caught to NotifyFailure.
 */
export function takeRunLock(options: TakeRunLockOptions): States {
  return task('TakeRunLock', 'runLock', {
    comment:
      'Takes the lock of this kind (or target database) on each target by a conditional S3 write; refuses, naming the holder, when another running execution holds one. A lock whose execution has ended, or whose validity passed, is taken over.',
    parameters: {
      action: 'take',
      workflow: options.workflow,
      timeoutSeconds: options.timeoutSeconds,
      'targets.$': options.targets,
      'scope.$': options.scope,
      'execution.$': EXECUTION_ID,
      'startedAt.$': '$$.Execution.StartTime',
    },
    resultPath: at(RUN_LOCK),
    onError: { next: NOTIFY_FAILURE },
    next: options.next,
  });
}

/**
 * Gives this run's locks back (those it still holds). A failure to do so is
 * recorded and passed over: the next run finds the lock's execution ended and
 * takes it over.
 */
export function releaseRunLock(name: string, next: string): States {
  return task(name, 'runLock', {
    comment:
      'Gives back the run locks this execution holds (a conditional delete on the ETag read); one it no longer holds is left alone.',
    parameters: { action: 'release', 'keys.$': at(RUN_LOCK, 'keys'), 'execution.$': EXECUTION_ID },
    resultPath: at('runLockReleased'),
    onError: { next, resultPath: at('runLockNotReleased') },
    next,
  });
}

/**
 * Where a one-command-per-target workflow (plan, the command on each host, a
 * report: check, prepare-host) keeps each stage's result in its state, and in
 * each host's iteration; its report reads them.
 */
export const ON_EACH_HOST_RESULT = {
  failed: FAILED,
  plan: PLAN,
  /** One iteration per target: its `host` plan, and the command's `command` or how it `failed`. */
  hosts: 'hosts',
  host: HOST,
  command: COMMAND,
  report: REPORT,
} as const;

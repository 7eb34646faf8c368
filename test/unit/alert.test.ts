import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetExecutionHistoryCommand, type HistoryEvent, SFNClient } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { FAILURE_ALERT_STATES } from '../../shared/alert/execution-history.ts';
import { formatAlert } from '../../shared/alert/message.ts';
import { WORKFLOWS } from '../../statemachines/workflows.ts';

const ssm = mockClient(SSMClient);
const sns = mockClient(SNSClient);
const sfn = mockClient(SFNClient);
const SECRET_HOOK_PATH = '/services/T000/B000/very-secret-token';
const TOPIC_ARN = 'arn:aws:sns:eu-west-1:123456789012:kennel-backup-prod-alerts';
let received: { path: string; body: string }[] = [];
let status = 200;
let url = '';
const server = createServer((req: IncomingMessage, res) => {
  let body = '';
  req.on('data', (d) => {
    body += d;
  });
  req.on('end', () => {
    received.push({ path: req.url ?? '', body });
    res.statusCode = status;
    res.end();
  });
});

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${SECRET_HOOK_PATH}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  received = [];
  status = 200;
  ssm.reset();
  ssm
    .on(GetParameterCommand)
    .resolves({ Parameter: { Name: '/kennel-backup/prod/alert-webhook-url', Value: url } });
  sns.reset();
  sns.on(PublishCommand).resolves({ MessageId: 'message-1' });
  sfn.reset();
});

const failedState = {
  plan: { runId: '20261126T020000Z_1a2b3c4d', target: 'primary', database: 'kennel_prod', kind: 'full' },
  failed: {
    VerifyArchive: {
      Error: 'ArchiveCorruptError',
      Cause: JSON.stringify({
        errorType: 'ArchiveCorruptError',
        errorMessage: 'sha256 mismatch; connecting with postgres://kennel:hunter2@db:5432 failed',
        trace: ['at x'],
      }),
    },
  },
};
const event = {
  workflow: 'database-backup',
  executionId: 'arn:aws:states:eu-west-1:123456789012:execution:kennel-backup-prod-database-backup:run-1',
  startedAt: '2026-11-26T02:00:00.000Z',
  state: failedState,
};

async function alertHandler() {
  vi.resetModules();
  Object.assign(process.env, {
    STAGE: 'prod',
    AWS_REGION: 'eu-west-1',
    BACKUP_BUCKET: 'kennel-backups-prod',
    BACKUP_TARGETS: JSON.stringify([
      { name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/kennel-backup/prod/alert-webhook-url',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/prod/restore-check-database-url',
    ALERT_TOPIC_ARN: TOPIC_ARN,
  });
  return (await import('../../functions/send-alert/handler.ts')).handler;
}
const context = {
  awsRequestId: 'test',
  functionName: 'sendAlert',
  getRemainingTimeInMillis: () => 60_000,
} as never;

/** Runs `act` with stdout and stderr captured; the logger's JSON lines come back parsed. */
async function withLogs<T>(act: () => Promise<T>): Promise<{ result: T; logs: Record<string, unknown>[] }> {
  const lines: string[] = [];
  const capture = (chunk: unknown) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  };
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(capture);
  try {
    const result = await act();
    return {
      result,
      logs: lines.map((line) => {
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          return { raw: line };
        }
      }),
    };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

const slackTexts = () => received.map((r) => (JSON.parse(r.body) as { text: string }).text);
const published = () => sns.commandCalls(PublishCommand).map((c) => c.args[0].input);

describe('the alert', () => {
  it('names the workflow, execution, failing state, error, cause and console link, without secrets', () => {
    const alert = formatAlert(event, 'prod', 'eu-west-1');
    expect(alert.state).toBe('VerifyArchive');
    expect(alert.error).toBe('ArchiveCorruptError');
    expect(alert.cause).toBe('sha256 mismatch; connecting with postgres://kennel:***@db:5432 failed');
    expect(alert.text.split('\n')).toEqual([
      ':rotating_light: kennel-backup (prod): database-backup FAILED',
      'Target: primary (kennel_prod, full)',
      'State: VerifyArchive',
      'Error: ArchiveCorruptError',
      'Cause: sha256 mismatch; connecting with postgres://kennel:***@db:5432 failed',
      `Execution: ${event.executionId} (started 2026-11-26T02:00:00.000Z)`,
      `Console: https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/${encodeURIComponent(event.executionId)}`,
    ]);
    expect(alert.subject).toBe('kennel-backup (prod): database-backup FAILED');
    expect(alert.text).not.toContain('hunter2');
  });

  it("names a backup run's archive, by the key a restore names it with (its run id at the end)", () => {
    const archiveKey =
      'database/full/primary/kennel_prod/2026/11/26/kennel_prod_full_20261126T020000Z_1a2b3c4d.sql.zst';
    const state = { ...failedState, plan: { ...failedState.plan, archiveKey } };
    const lines = formatAlert({ ...event, state }, 'prod', 'eu-west-1').text.split('\n');
    expect(lines.slice(1, 3)).toEqual(['Target: primary (kennel_prod, full)', `Backup: ${archiveKey}`]);
    // A pgBackRest run's plan has none (null): the target is still named, and no backup line.
    const physical = {
      ...failedState,
      plan: { target: 'primary', database: null, kind: 'full', archiveKey: null },
    };
    expect(
      formatAlert({ ...event, state: physical }, 'prod', 'eu-west-1')
        .text.split('\n')
        .slice(1, 3),
    ).toEqual(['Target: primary (full)', 'State: VerifyArchive']);
  });

  it("keeps the e-mail subject one ASCII line under SNS's 100 characters", () => {
    const long = formatAlert({ ...event, workflow: 'w'.repeat(120) }, 'prod', 'eu-west-1');
    expect(long.subject).toBe(`kennel-backup (prod): ${'w'.repeat(74)}...`);
    expect(long.subject).toHaveLength(99);
  });

  it("knows every workflow's failure alert state by name, to recognise an execution already alerted", () => {
    /** Every Task naming sendAlert, in every workflow, those inside Map states too. */
    type State = {
      Type: string;
      Resource?: unknown;
      Parameters?: object;
      ItemProcessor?: { States: States };
    };
    type States = Record<string, State>;
    const alertTasks = (states: States): [string, State][] =>
      Object.entries(states).flatMap(([name, state]) => [
        ...(JSON.stringify(state.Resource ?? null).includes('"sendAlert"')
          ? [[name, state] as [string, State]]
          : []),
        ...(state.ItemProcessor ? alertTasks(state.ItemProcessor.States) : []),
      ]);
    const tasks = Object.values(WORKFLOWS).flatMap((definition) => alertTasks(definition().States as States));
    // A request with neither a summary nor a warning is a failure alert.
    const failureAlerts = tasks
      .filter(([, s]) => !Object.keys(s.Parameters ?? {}).some((k) => /^(summary|warning)(\.\$)?$/.test(k)))
      .map(([name]) => name);
    expect(failureAlerts.length).toBeGreaterThan(0);
    expect(new Set(failureAlerts)).toEqual(new Set(FAILURE_ALERT_STATES));
  });

  it('is posted to the Slack webhook read from SSM Parameter Store (decrypted) and published to the alert topic', async () => {
    const handler = await alertHandler();
    const result = await handler(event, context);
    expect(result).toMatchObject({
      error: 'ArchiveCorruptError',
      state: 'VerifyArchive',
      delivered: true,
      deliveredTo: ['slack', 'sns'],
    });
    expect(result.cause).toContain('VerifyArchive: sha256 mismatch');
    expect(ssm.commandCalls(GetParameterCommand)[0]?.args[0].input).toEqual({
      Name: '/kennel-backup/prod/alert-webhook-url',
      WithDecryption: true,
    });
    expect(received).toHaveLength(1);
    expect(received[0]?.path).toBe(SECRET_HOOK_PATH);
    const [text] = slackTexts();
    expect(text).toContain('Error: ArchiveCorruptError');
    expect(published()).toEqual([
      { TopicArn: TOPIC_ARN, Subject: 'kennel-backup (prod): database-backup FAILED', Message: text },
    ]);
    // A workflow's own request names its state: no history is read.
    expect(sfn.commandCalls(GetExecutionHistoryCommand)).toEqual([]);
  });

  it('does not hide the original failure when the webhook is down: SNS still gets it, the delivery failure is logged', async () => {
    status = 503;
    const handler = await alertHandler();
    const { result, logs } = await withLogs(() => handler(event, context));
    expect(result).toMatchObject({ error: 'ArchiveCorruptError', delivered: false, deliveredTo: ['sns'] });
    expect(published()).toHaveLength(1);
    expect(published()[0]?.Message).toContain('Error: ArchiveCorruptError');
    expect(logs.filter((l) => l.message === 'alert not delivered')).toEqual([
      expect.objectContaining({
        level: 'ERROR',
        channel: 'slack',
        workflow: 'database-backup',
        executionId: event.executionId,
        reason: expect.stringContaining('Slack answered 503'),
      }),
    ]);
    expect(JSON.stringify(logs)).not.toContain('very-secret-token');
  });
});

/**
 * Executions that EventBridge reports. Their histories are written oldest first,
 * as they happened, each event following the one before, and served newest
 * first, as GetExecutionHistory with reverseOrder returns them.
 */
describe('an execution EventBridge reports as failed, timed out or aborted', () => {
  const STATE_MACHINE_ARN =
    'arn:aws:states:eu-west-1:123456789012:stateMachine:kennel-backup-prod-database-backup';
  const EXECUTION_ARN =
    'arn:aws:states:eu-west-1:123456789012:execution:kennel-backup-prod-database-backup:8c3e4b0a-2f1d-4c55-9a7e-1b2c3d4e5f60';
  const CONSOLE = `Console: https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/${encodeURIComponent(EXECUTION_ARN)}`;
  const EXECUTION_LINE = `Execution: ${EXECUTION_ARN} (started 2026-11-26T02:00:00.000Z, ended 2026-11-26T02:07:30.000Z)`;

  function statusChange(
    executionStatus: 'FAILED' | 'TIMED_OUT' | 'ABORTED',
    error: string | null,
    cause: string | null,
  ) {
    return {
      version: '0',
      id: '315c1398-40ff-a850-213b-158f73e60175',
      'detail-type': 'Step Functions Execution Status Change',
      source: 'aws.states',
      account: '123456789012',
      time: '2026-11-26T02:07:30Z',
      region: 'eu-west-1',
      resources: [EXECUTION_ARN],
      detail: {
        executionArn: EXECUTION_ARN,
        stateMachineArn: STATE_MACHINE_ARN,
        name: '8c3e4b0a-2f1d-4c55-9a7e-1b2c3d4e5f60',
        status: executionStatus,
        startDate: Date.parse('2026-11-26T02:00:00.000Z'),
        stopDate: Date.parse('2026-11-26T02:07:30.000Z'),
        input: '{"kind":"full"}',
        inputDetails: { included: true },
        output: null,
        outputDetails: null,
        error,
        cause,
      },
    };
  }

  type Step = Omit<HistoryEvent, 'id' | 'previousEventId' | 'timestamp'>;
  function history(...steps: Step[]): HistoryEvent[] {
    return steps
      .map((step, i) => ({
        ...step,
        id: i + 1,
        previousEventId: i,
        timestamp: new Date(Date.parse('2026-11-26T02:00:00.000Z') + i * 1000),
      }))
      .reverse();
  }
  const entered = (type: Step['type'], name: string): Step => ({
    type,
    stateEnteredEventDetails: { name, input: '{}' },
  });
  const exited = (type: Step['type'], name: string): Step => ({
    type,
    stateExitedEventDetails: { name, output: '{}' },
  });
  /** A Task state whose Lambda function succeeds, returning `result`. */
  const task = (name: string, result: unknown = {}): Step[] => [
    entered('TaskStateEntered', name),
    { type: 'LambdaFunctionScheduled' },
    { type: 'LambdaFunctionStarted' },
    {
      type: 'LambdaFunctionSucceeded',
      lambdaFunctionSucceededEventDetails: { output: JSON.stringify(result) },
    },
    exited('TaskStateExited', name),
  ];
  /** A Task state whose Lambda function throws `error`; a Catch (or a Retry) follows, or nothing does. */
  const failingLambda = (name: string, error: string, cause: string): Step[] => [
    entered('TaskStateEntered', name),
    { type: 'LambdaFunctionScheduled' },
    { type: 'LambdaFunctionStarted' },
    { type: 'LambdaFunctionFailed', lambdaFunctionFailedEventDetails: { error, cause } },
  ];
  const beforeTheDump: Step[] = [
    { type: 'ExecutionStarted' },
    ...task('PlanBackup'),
    entered('MapStateEntered', 'BackUpEachTarget'),
    { type: 'MapStateStarted' },
    { type: 'MapIterationStarted', mapIterationStartedEventDetails: { name: 'BackUpEachTarget', index: 0 } },
    ...task('StartDump'),
    entered('WaitStateEntered', 'WaitForDump'),
    exited('WaitStateExited', 'WaitForDump'),
  ];
  /** The dump finished (after one retried check): the archive is being verified. */
  const dumped: Step[] = [
    ...beforeTheDump,
    // Retried and then successful: not where the execution failed.
    ...failingLambda('CheckDump', 'TransientError', 'SSM did not answer'),
    { type: 'LambdaFunctionScheduled' },
    { type: 'LambdaFunctionStarted' },
    {
      type: 'LambdaFunctionSucceeded',
      lambdaFunctionSucceededEventDetails: { output: '{"status":"Success"}' },
    },
    exited('TaskStateExited', 'CheckDump'),
    entered('ChoiceStateEntered', 'DumpFinished'),
    exited('ChoiceStateExited', 'DumpFinished'),
  ];
  /**
   * VerifyArchive's Lambda function succeeded, then Step Functions could not
   * apply its ResultSelector: a States.Runtime error, which no Catch takes.
   */
  const RUNTIME_CAUSE =
    "An error occurred while executing the state 'VerifyArchive' (entered at the event id #28). The JSONPath '$.verdict' specified for the field 'verdict.$' could not be found in the input '{\"status\":\"ok\"}'";
  const runtimeFailure = (cause: string) =>
    history(
      ...dumped,
      entered('TaskStateEntered', 'VerifyArchive'),
      { type: 'LambdaFunctionScheduled' },
      { type: 'LambdaFunctionStarted' },
      { type: 'LambdaFunctionSucceeded', lambdaFunctionSucceededEventDetails: { output: '{"status":"ok"}' } },
      { type: 'MapIterationFailed', mapIterationFailedEventDetails: { name: 'BackUpEachTarget', index: 0 } },
      { type: 'MapStateFailed' },
      { type: 'ExecutionFailed', executionFailedEventDetails: { error: 'States.Runtime', cause } },
    );
  const historyRequest = {
    executionArn: EXECUTION_ARN,
    reverseOrder: true,
    maxResults: 1000,
    includeExecutionData: true,
  };

  it('a failure no Catch took: the state from the history, sent to Slack and SNS with the same text', async () => {
    sfn.on(GetExecutionHistoryCommand).resolves({ events: runtimeFailure(RUNTIME_CAUSE) });
    const handler = await alertHandler();
    const result = await handler(statusChange('FAILED', 'States.Runtime', RUNTIME_CAUSE), context);

    const text = [
      ':rotating_light: kennel-backup (prod): database-backup FAILED',
      'State: VerifyArchive',
      'Error: States.Runtime',
      `Cause: ${RUNTIME_CAUSE}`,
      EXECUTION_LINE,
      CONSOLE,
    ].join('\n');
    expect(sfn.commandCalls(GetExecutionHistoryCommand).map((c) => c.args[0].input)).toEqual([
      historyRequest,
    ]);
    expect(published()).toEqual([
      { TopicArn: TOPIC_ARN, Subject: 'kennel-backup (prod): database-backup FAILED', Message: text },
    ]);
    expect(slackTexts()).toEqual([text]);
    expect(result).toEqual({
      error: 'States.Runtime',
      cause: `VerifyArchive: ${RUNTIME_CAUSE}`,
      state: 'VerifyArchive',
      delivered: true,
      deliveredTo: ['slack', 'sns'],
      alreadyAlerted: false,
    });
  });

  /** The notify output of a workflow's failure alert that reached Slack and SNS. */
  const notified = { error: 'ArchiveCorruptError', cause: 'VerifyArchive: sha256 mismatch', delivered: true };
  /**
   * An iteration's failure that the Catch took to NotifyRunFailure; the
   * execution then failed in SomeRunsFailed, naming the target.
   */
  const caughtAndNotified = (notifyResult: unknown) =>
    history(
      ...dumped,
      ...failingLambda('VerifyArchive', 'ArchiveCorruptError', 'sha256 mismatch'),
      exited('TaskStateExited', 'VerifyArchive'),
      ...task('NotifyRunFailure', notifyResult),
      entered('PassStateEntered', 'RunFailed'),
      exited('PassStateExited', 'RunFailed'),
      {
        type: 'MapIterationSucceeded',
        mapIterationSucceededEventDetails: { name: 'BackUpEachTarget', index: 0 },
      },
      { type: 'MapStateSucceeded' },
      exited('MapStateExited', 'BackUpEachTarget'),
      entered('PassStateEntered', 'CheckRuns'),
      exited('PassStateExited', 'CheckRuns'),
      entered('ChoiceStateEntered', 'AllRunsSucceeded'),
      exited('ChoiceStateExited', 'AllRunsSucceeded'),
      entered('PassStateEntered', 'NameFailedRuns'),
      exited('PassStateExited', 'NameFailedRuns'),
      entered('FailStateEntered', 'SomeRunsFailed'),
      {
        type: 'ExecutionFailed',
        executionFailedEventDetails: { error: 'BackupRunsFailed', cause: 'Backups failed for ["primary"]' },
      },
    );

  it("a failure the workflow's own NotifyRunFailure already alerted: no second alert, and that is logged", async () => {
    sfn
      .on(GetExecutionHistoryCommand)
      .resolves({ events: caughtAndNotified({ ...notified, deliveredTo: ['slack', 'sns'] }) });
    const handler = await alertHandler();
    const { result, logs } = await withLogs(() =>
      handler(statusChange('FAILED', 'BackupRunsFailed', 'Backups failed for ["primary"]'), context),
    );
    expect(published()).toEqual([]);
    expect(received).toEqual([]);
    expect(result).toMatchObject({ alreadyAlerted: true, deliveredTo: [] });
    expect(
      logs.filter((l) => l.message === 'execution already alerted by its workflow; no second alert'),
    ).toEqual([
      expect.objectContaining({
        level: 'INFO',
        workflow: 'database-backup',
        executionId: EXECUTION_ARN,
        state: 'VerifyArchive',
      }),
    ]);
  });

  it('a failure whose own alert reached no one is alerted now, naming the state that failed', async () => {
    sfn
      .on(GetExecutionHistoryCommand)
      .resolves({ events: caughtAndNotified({ ...notified, delivered: false, deliveredTo: [] }) });
    const handler = await alertHandler();
    await handler(statusChange('FAILED', 'BackupRunsFailed', 'Backups failed for ["primary"]'), context);
    const text = [
      ':rotating_light: kennel-backup (prod): database-backup FAILED',
      'State: VerifyArchive',
      'Error: BackupRunsFailed',
      'Cause: Backups failed for ["primary"]',
      EXECUTION_LINE,
      CONSOLE,
    ].join('\n');
    expect(slackTexts()).toEqual([text]);
    expect(published().map((p) => p.Message)).toEqual([text]);
  });

  /** The first target's check failed, was caught and alerted; the second target's dump is under way. */
  const firstTargetAlerted: Step[] = [
    ...beforeTheDump,
    ...failingLambda('CheckDump', 'HostCommandFailedError', 'pg_dump: error: connection refused'),
    exited('TaskStateExited', 'CheckDump'),
    ...task('NotifyRunFailure', { ...notified, deliveredTo: ['slack', 'sns'] }),
    entered('PassStateEntered', 'RunFailed'),
    exited('PassStateExited', 'RunFailed'),
    {
      type: 'MapIterationSucceeded',
      mapIterationSucceededEventDetails: { name: 'BackUpEachTarget', index: 0 },
    },
    { type: 'MapIterationStarted', mapIterationStartedEventDetails: { name: 'BackUpEachTarget', index: 1 } },
    ...task('StartDump'),
  ];
  /** Neither can be caught by the workflow, so each alerts even after a NotifyRunFailure for another target. */
  const cases = [
    {
      executionStatus: 'TIMED_OUT' as const,
      state: 'CheckDump',
      history: history(
        ...firstTargetAlerted,
        entered('WaitStateEntered', 'WaitForDump'),
        exited('WaitStateExited', 'WaitForDump'),
        entered('TaskStateEntered', 'CheckDump'),
        { type: 'LambdaFunctionScheduled' },
        { type: 'LambdaFunctionStarted' },
        { type: 'ExecutionTimedOut', executionTimedOutEventDetails: {} },
      ),
      error: 'ExecutionTimedOut',
      cause:
        "The execution ran past its time limit and Step Functions stopped it; no Catch runs for a timeout, so the workflow's own alert never ran. Open its history to see how far it got.",
    },
    {
      executionStatus: 'ABORTED' as const,
      state: 'WaitForDump',
      history: history(
        ...firstTargetAlerted,
        entered('WaitStateEntered', 'WaitForDump'),
        { type: 'WaitStateAborted' },
        {
          type: 'MapIterationAborted',
          mapIterationAbortedEventDetails: { name: 'BackUpEachTarget', index: 0 },
        },
        { type: 'MapStateAborted' },
        { type: 'ExecutionAborted', executionAbortedEventDetails: {} },
      ),
      error: 'ExecutionAborted',
      cause:
        'The execution was stopped (from the console or with StopExecution) before it finished; open its history to see how far it got.',
    },
  ];

  it.each(cases)(
    '$executionStatus alerts with the state that was running, from the history',
    async ({ executionStatus, state, history: events, error, cause }) => {
      sfn.on(GetExecutionHistoryCommand).resolves({ events });
      const handler = await alertHandler();
      const result = await handler(statusChange(executionStatus, null, null), context);
      const text = [
        `:rotating_light: kennel-backup (prod): database-backup ${executionStatus}`,
        `State: ${state}`,
        `Error: ${error}`,
        `Cause: ${cause}`,
        EXECUTION_LINE,
        CONSOLE,
      ].join('\n');
      expect(sfn.commandCalls(GetExecutionHistoryCommand).map((c) => c.args[0].input)).toEqual([
        historyRequest,
      ]);
      expect(published()).toEqual([
        {
          TopicArn: TOPIC_ARN,
          Subject: `kennel-backup (prod): database-backup ${executionStatus}`,
          Message: text,
        },
      ]);
      expect(slackTexts()).toEqual([text]);
      expect(result).toMatchObject({ state, alreadyAlerted: false, deliveredTo: ['slack', 'sns'] });
    },
  );

  it('a history that cannot be read still alerts, with the state unknown, and logs why', async () => {
    sfn.on(GetExecutionHistoryCommand).rejects(
      Object.assign(new Error('not authorized to perform: states:GetExecutionHistory'), {
        name: 'AccessDeniedException',
      }),
    );
    const handler = await alertHandler();
    const { logs } = await withLogs(() =>
      handler(statusChange('TIMED_OUT', 'States.Timeout', null), context),
    );
    const text = [
      ':rotating_light: kennel-backup (prod): database-backup TIMED_OUT',
      'State: unknown (history not readable)',
      'Error: States.Timeout',
      `Cause: ${cases[0]?.cause}`,
      EXECUTION_LINE,
      CONSOLE,
    ].join('\n');
    expect(slackTexts()).toEqual([text]);
    expect(published().map((p) => p.Message)).toEqual([text]);
    expect(logs.filter((l) => l.level === 'WARN')).toEqual([
      expect.objectContaining({
        message: 'execution history not readable; alerting without the failing state',
        executionArn: EXECUTION_ARN,
        reason: expect.stringContaining('states:GetExecutionHistory'),
      }),
    ]);
  });

  it('redacts a database password and a Slack webhook in the cause, in both channels', async () => {
    const cause =
      'The JSONPath \'$.verdict\' could not be found in the input \'{"databaseUrl":"postgres://kennel:hunter2@db:5432/kennel_prod","hook":"https://hooks.slack.com/services/T0AAA/B0BBB/xoxsecret42"}\'';
    sfn.on(GetExecutionHistoryCommand).resolves({ events: runtimeFailure(cause) });
    const handler = await alertHandler();
    await handler(statusChange('FAILED', 'States.Runtime', cause), context);
    const redacted =
      'Cause: The JSONPath \'$.verdict\' could not be found in the input \'{"databaseUrl":"postgres://kennel:***@db:5432/kennel_prod","hook":"https://hooks.slack.com/services/***"}\'';
    const delivered = [...slackTexts(), ...published().flatMap((p) => [p.Subject, p.Message])];
    expect(slackTexts()[0]?.split('\n')[3]).toBe(redacted);
    expect(published()[0]?.Message?.split('\n')[3]).toBe(redacted);
    for (const secret of ['hunter2', 'xoxsecret42', 'T0AAA', 'B0BBB']) {
      expect(delivered.join('\n')).not.toContain(secret);
    }
  });

  it('refuses an event of an execution that did not fail, and sends nothing', async () => {
    const handler = await alertHandler();
    const succeeded = statusChange('FAILED', null, null);
    (succeeded.detail as { status: string }).status = 'SUCCEEDED';
    await expect(handler(succeeded, context)).rejects.toThrow(
      /The EventBridge status change event is not valid.*\n- detail\.status: /s,
    );
    expect(sfn.commandCalls(GetExecutionHistoryCommand)).toEqual([]);
    expect(published()).toEqual([]);
    expect(received).toEqual([]);
  });

  it('an SNS that refuses the message does not stop Slack; the failure is logged', async () => {
    sfn.on(GetExecutionHistoryCommand).resolves({ events: runtimeFailure(RUNTIME_CAUSE) });
    sns
      .on(PublishCommand)
      .rejects(Object.assign(new Error('Internal service error'), { name: 'InternalErrorException' }));
    const handler = await alertHandler();
    const { result, logs } = await withLogs(() =>
      handler(statusChange('FAILED', 'States.Runtime', RUNTIME_CAUSE), context),
    );
    expect(slackTexts()).toHaveLength(1);
    expect(slackTexts()[0]).toContain('State: VerifyArchive');
    expect(result).toMatchObject({ error: 'States.Runtime', delivered: false, deliveredTo: ['slack'] });
    expect(logs.filter((l) => l.message === 'alert not delivered')).toEqual([
      expect.objectContaining({
        level: 'ERROR',
        channel: 'sns',
        executionId: EXECUTION_ARN,
        reason: 'InternalErrorException: Internal service error',
      }),
    ]);
  });
});

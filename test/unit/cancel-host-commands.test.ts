import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { CancelCommandCommand, ListCommandsCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Alert } from '../../shared/alert/message.ts';
import { commandComment } from '../../shared/host/commands.ts';

/**
 * cancelHostCommands, as HostCommandCancelRule invokes it: SSM is faked (no
 * local service answers ListCommands), so the exact requests are asserted.
 */

const ssm = mockClient(SSMClient);

const MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-prod-database-backup';
const ABORTED =
  'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-prod-database-backup:nightly-1';
const OTHER = 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-prod-database-backup:nightly-2';
const STARTED = Date.parse('2026-11-30T02:00:00.000Z');

const event = (status: string) => ({
  version: '0',
  'detail-type': 'Step Functions Execution Status Change',
  source: 'aws.states',
  detail: {
    executionArn: ABORTED,
    stateMachineArn: MACHINE,
    name: 'nightly-1',
    status,
    startDate: STARTED,
    stopDate: STARTED + 3_600_000,
    error: null,
    cause: null,
  },
});

const context = {
  awsRequestId: 'test',
  functionName: 'test',
  getRemainingTimeInMillis: () => 60_000,
} as never;

async function handler() {
  vi.resetModules();
  Object.assign(process.env, {
    STAGE: 'prod',
    BACKUP_BUCKET: 'kennel-backups-prod',
    BACKUP_TARGETS: JSON.stringify([
      { name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/kennel-backup/prod/alert-webhook-url',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/prod/restore-check-database-url',
  });
  const { createHandler } = await import('../../functions/cancel-host-commands/handler.ts');
  const { ssmHostCommands } = await import('../../shared/host/commands.ts');
  const alerts: Alert[] = [];
  const cleanUps: unknown[] = [];
  const handle = createHandler({
    host: ssmHostCommands(new SSMClient({ region: 'us-east-1' })),
    channels: { test: async (alert) => void alerts.push(alert) },
    startCleanUp: async (request) => {
      cleanUps.push(request);
      return 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-prod-restore-cleanup:cleanup-1';
    },
  });
  return { handle, alerts, cleanUps };
}

beforeEach(() => {
  ssm.reset();
});

describe('cancelHostCommands', () => {
  it("cancels the aborted execution's running commands and no other's, and names them in one alert", async () => {
    const { handle, alerts } = await handler();
    ssm
      .on(ListCommandsCommand)
      .resolvesOnce({
        Commands: [
          {
            CommandId: '11111111-1111-1111-1111-111111111111',
            Comment: commandComment(ABORTED, 'physical-restore-test'),
            InstanceIds: ['i-0123456789abcdef0'],
          },
          {
            CommandId: '22222222-2222-2222-2222-222222222222',
            Comment: commandComment(OTHER, 'database-backup'),
          },
        ],
        NextToken: 'page-2',
      })
      .resolvesOnce({
        Commands: [{ CommandId: '33333333-3333-3333-3333-333333333333', Comment: 'patching by hand' }],
      });
    ssm.on(CancelCommandCommand).resolves({});

    const result = await handle(event('ABORTED'), context);

    // The listing starts a minute before the execution (clock skew) and pages to the end
    // (the SDK's paginator reuses one input object, so the pages are compared by their fields).
    const listed = ssm.commandCalls(ListCommandsCommand).map((c) => c.args[0].input);
    expect(listed).toHaveLength(2);
    for (const input of listed) {
      expect(input.Filters).toEqual([
        { key: 'InvokedAfter', value: '2026-11-30T01:59:00.000Z' },
        { key: 'ExecutionStage', value: 'Executing' },
      ]);
    }
    expect(listed[1]?.NextToken).toBe('page-2');
    expect(ssm.commandCalls(CancelCommandCommand).map((c) => c.args[0].input)).toEqual([
      { CommandId: '11111111-1111-1111-1111-111111111111' },
    ]);
    expect(result).toEqual({
      cancelled: [
        {
          commandId: '11111111-1111-1111-1111-111111111111',
          script: 'physical-restore-test',
          instanceIds: ['i-0123456789abcdef0'],
        },
      ],
      deliveredTo: ['test'],
    });
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      workflow: 'database-backup',
      executionId: ABORTED,
      state: 'physical-restore-test',
      error: 'HostCommandsCancelled',
      subject: 'kennel-backup (prod): database-backup ABORTED, host commands cancelled',
    });
    expect(alerts[0]?.text).toContain(
      'physical-restore-test (command 11111111-1111-1111-1111-111111111111 on i-0123456789abcdef0)',
    );
  });

  it('with nothing of the execution running, cancels nothing and stays quiet (sendAlert reports the timeout)', async () => {
    const { handle, alerts } = await handler();
    ssm.on(ListCommandsCommand).resolves({
      Commands: [
        { CommandId: '22222222-2222-2222-2222-222222222222', Comment: commandComment(OTHER, 'wal-switch') },
      ],
    });
    expect(await handle(event('TIMED_OUT'), context)).toEqual({ cancelled: [], deliveredTo: [] });
    expect(ssm.commandCalls(CancelCommandCommand)).toEqual([]);
    expect(alerts).toEqual([]);
  });

  it('refuses a status that leaves no command running, cancelling nothing', async () => {
    const { handle } = await handler();
    await expect(handle(event('FAILED'), context)).rejects.toMatchObject({ name: 'InvalidInputError' });
    expect(ssm.commandCalls(ListCommandsCommand)).toEqual([]);
  });
});

describe('a stopped restore', () => {
  const RESTORE_MACHINE =
    'arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-prod-database-restore';
  const RESTORE_RUN =
    'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-prod-database-restore:restore-1';
  const restoreEvent = () => {
    const e = event('ABORTED');
    return {
      ...e,
      detail: { ...e.detail, executionArn: RESTORE_RUN, stateMachineArn: RESTORE_MACHINE, name: 'restore-1' },
    };
  };
  const running = {
    CommandId: '44444444-4444-4444-4444-444444444444',
    Comment: commandComment(RESTORE_RUN, 'database-backup'),
    InstanceIds: ['i-0123456789abcdef0'],
  };

  it('cancels its command, waits until the command has ended, then starts restore-cleanup with what it cancelled, and alerts nothing itself', async () => {
    const { handle, alerts, cleanUps } = await handler();
    // Listed to cancel, still cancelling at the first look, gone at the second.
    ssm
      .on(ListCommandsCommand)
      .resolvesOnce({ Commands: [running] })
      .resolvesOnce({ Commands: [running] })
      .resolves({ Commands: [] });
    ssm.on(CancelCommandCommand).resolves({});

    const result = await handle(restoreEvent(), context);

    expect(ssm.commandCalls(CancelCommandCommand).map((c) => c.args[0].input)).toEqual([
      { CommandId: running.CommandId },
    ]);
    expect(ssm.commandCalls(ListCommandsCommand)).toHaveLength(3);
    const cancelled = [
      { commandId: running.CommandId, script: 'database-backup', instanceIds: running.InstanceIds },
    ];
    expect(cleanUps).toEqual([{ event: restoreEvent(), cancelled }]);
    expect(result).toEqual({
      cancelled,
      cleanUp: 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-prod-restore-cleanup:cleanup-1',
      deliveredTo: [],
    });
    expect(alerts).toEqual([]);
  });

  it('restore-cleanup is the state machine beside it, named after the stopped execution, so that a second delivery starts it once', async () => {
    const sfn = mockClient(SFNClient);
    sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:cleanup', startDate: new Date() });
    const { sfnCleanUpStarter } = await import('../../shared/host/cancel.ts');
    const request = { event: restoreEvent(), cancelled: [] };
    expect(await sfnCleanUpStarter(new SFNClient({ region: 'us-east-1' }), 'prod')(request)).toBe(
      'arn:cleanup',
    );
    expect(sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input)).toEqual([
      {
        stateMachineArn:
          'arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-prod-restore-cleanup',
        name: 'cleanup-restore-1',
        input: JSON.stringify(request),
      },
    ]);
    sfn.restore();
  });
});

describe('the Comment of a command', () => {
  it("carries the execution's reference whole, however long the execution's name", () => {
    const long = `${ABORTED.slice(0, ABORTED.lastIndexOf(':'))}:${'n'.repeat(80)}`;
    const comment = commandComment(long, 'physical-restore-test');
    expect(comment).toHaveLength(100);
    expect(comment).toMatch(/^kennel-backup [0-9a-f]{16} physical-restore-test n+$/);
    expect(commandComment(ABORTED, 'x').split(' ')[1]).not.toBe(commandComment(OTHER, 'x').split(' ')[1]);
  });
});

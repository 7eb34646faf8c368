import {
  GetFunctionConfigurationCommand,
  LambdaClient,
  ResourceNotFoundException,
} from '@aws-sdk/client-lambda';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { deployedStage, runDeployedCheck } from '../../bin/deployed.ts';
import { parseConfig } from '../../shared/core/config.ts';

/**
 * `npx kennel-backup info --stage prod` reads the stage's config from one of its
 * functions: Lambda is faked (no local service answers it), so the exact request
 * is asserted; the S3 side is the same code `npm run local -- info` runs.
 */

const lambda = mockClient(LambdaClient);
const sfn = mockClient(SFNClient);

const TARGETS = [{ name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' }];

beforeEach(() => {
  lambda.reset();
  sfn.reset();
});

describe('deployedStage', () => {
  it("parses the stage's function environment as the function does, and names its account", async () => {
    lambda.on(GetFunctionConfigurationCommand).resolves({
      FunctionArn: 'arn:aws:lambda:eu-west-1:210987654321:function:kennel-backup-prod-planBackup',
      Environment: {
        Variables: {
          STAGE: 'prod',
          BACKUP_BUCKET: 'kennel-backup-210987654321-eu-west-1-prod',
          BACKUP_TARGETS: JSON.stringify(TARGETS),
          ALERT_WEBHOOK_PARAMETER: '/kennel-backup/prod/alert-webhook-url',
          RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/prod/restore-check-database-url',
        },
      },
    });
    const stage = await deployedStage(new LambdaClient({ region: 'eu-west-1' }), 'prod', 'eu-west-1');
    expect(lambda.commandCalls(GetFunctionConfigurationCommand).map((c) => c.args[0].input)).toEqual([
      { FunctionName: 'kennel-backup-prod-planBackup' },
    ]);
    expect(stage.config).toMatchObject({
      BACKUP_BUCKET: 'kennel-backup-210987654321-eu-west-1-prod',
      AWS_REGION: 'eu-west-1',
      BACKUP_TARGETS: [{ name: 'primary', database: 'kennel_prod' }],
    });
    expect(stage).toMatchObject({ account: '210987654321', partition: 'aws' });
  });

  it('says which stage and region to give when the stage is not deployed there', async () => {
    lambda
      .on(GetFunctionConfigurationCommand)
      .rejects(new ResourceNotFoundException({ message: 'Function not found', $metadata: {} }));
    await expect(
      deployedStage(new LambdaClient({ region: 'us-east-1' }), 'prod', 'us-east-1'),
    ).rejects.toThrow(
      'No function kennel-backup-prod-planBackup in us-east-1: the stage prod is not deployed there. Give the stage and region it was deployed with (--stage, --region or AWS_REGION).',
    );
  });

  it('refuses a stage name that is none before asking AWS', async () => {
    await expect(
      deployedStage(new LambdaClient({ region: 'us-east-1' }), 'prod; rm -rf', 'us-east-1'),
    ).rejects.toThrow('--stage "prod; rm -rf" is not a stage name');
    expect(lambda.commandCalls(GetFunctionConfigurationCommand)).toHaveLength(0);
  });
});

describe('runDeployedCheck', () => {
  const stage = {
    config: parseConfig({
      AWS_REGION: 'eu-west-1',
      BACKUP_BUCKET: 'kennel-backup-210987654321-eu-west-1-prod',
      BACKUP_TARGETS: JSON.stringify(TARGETS),
      ALERT_WEBHOOK_PARAMETER: '/a',
      RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
    }),
    account: '210987654321',
    partition: 'aws',
  };
  const EXECUTION = 'arn:aws:states:eu-west-1:210987654321:execution:kennel-backup-prod-check:x';

  it("starts the stage's check workflow, waits while it runs, and prints its lines", async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION });
    sfn
      .on(DescribeExecutionCommand)
      .resolvesOnce({ status: 'RUNNING' })
      .resolvesOnce({
        status: 'SUCCEEDED',
        output: JSON.stringify({ ok: true, summary: 'OK   primary    s3' }),
      });
    const waits: number[] = [];
    const checked = await runDeployedCheck(
      new SFNClient({}),
      stage,
      'prod',
      { target: 'primary' },
      async (ms) => {
        waits.push(ms);
      },
    );
    expect(sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input)).toEqual([
      {
        stateMachineArn: 'arn:aws:states:eu-west-1:210987654321:stateMachine:kennel-backup-prod-check',
        input: '{"target":"primary"}',
      },
    ]);
    expect(sfn.commandCalls(DescribeExecutionCommand).map((c) => c.args[0].input)).toEqual([
      { executionArn: EXECUTION },
      { executionArn: EXECUTION },
    ]);
    expect(waits).toEqual([5000]);
    expect(checked).toEqual({ ok: true, text: 'OK   primary    s3', executionArn: EXECUTION });
  });

  it("gives the failed check's lines from its cause", async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION });
    sfn.on(DescribeExecutionCommand).resolves({
      status: 'FAILED',
      error: 'CheckFailedError',
      cause: JSON.stringify({
        errorType: 'CheckFailedError',
        errorMessage: '1 check(s) need a fix:\nFIX  primary    tools  zstd',
      }),
    });
    const checked = await runDeployedCheck(new SFNClient({}), stage, 'prod', {}, async () => {});
    expect(checked).toEqual({
      ok: false,
      text: 'FAILED CheckFailedError: 1 check(s) need a fix:\nFIX  primary    tools  zstd',
      executionArn: EXECUTION,
    });
  });
});

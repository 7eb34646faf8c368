import {
  GetFunctionConfigurationCommand,
  type GetFunctionConfigurationCommandOutput,
  type LambdaClient,
} from '@aws-sdk/client-lambda';
import { DescribeExecutionCommand, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { type Config, parseConfig } from '../shared/core/config.ts';
import { ConfigError, causeMessage } from '../shared/core/errors.ts';

/**
 * A deployed stage, as an operator's own AWS credentials see it: the config its
 * functions run with, read from one of them, so that `info` and `check` read
 * exactly the bucket and targets the workflows use.
 */

/** serverless.yml's service; osls names each function `<service>-<stage>-<function>`. */
const SERVICE = 'kennel-backup';
/** A function every deployment has; all share the provider's environment. */
const CONFIG_FUNCTION = 'planBackup';

/** A stage name as serverless.yml takes it (--stage). */
const STAGE = /^[a-z0-9][a-z0-9-]{0,30}$/;

export interface DeployedStage {
  config: Config;
  /** The account and partition of the stage, from its function's ARN: where its state machines are. */
  account: string;
  partition: string;
}

/**
 * Reads the environment of `kennel-backup-<stage>-planBackup`
 * (lambda:GetFunctionConfiguration; no secret is in it: the SecureStrings stay
 * in SSM and only their names are there) and parses it as the function does.
 * Throws ConfigError for a stage name that is none, or a stage not deployed in
 * `region`; what the SDK throws otherwise (credentials, access denied).
 */
export async function deployedStage(
  lambda: LambdaClient,
  stage: string,
  region: string,
): Promise<DeployedStage> {
  if (!STAGE.test(stage))
    throw new ConfigError(
      `--stage ${JSON.stringify(stage)} is not a stage name: give the one it was deployed with (npx serverless deploy --stage prod).`,
    );
  const name = `${SERVICE}-${stage}-${CONFIG_FUNCTION}`;
  let answer: GetFunctionConfigurationCommandOutput;
  try {
    answer = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: name }));
  } catch (error) {
    if ((error as Error).name === 'ResourceNotFoundException')
      throw new ConfigError(
        `No function ${name} in ${region}: the stage ${stage} is not deployed there. Give the stage and region it was deployed with (--stage, --region or AWS_REGION).`,
        { cause: error },
      );
    throw error;
  }
  const [, partition = 'aws', , , account = ''] = (answer.FunctionArn ?? '').split(':');
  return {
    config: parseConfig({ ...answer.Environment?.Variables, AWS_REGION: region }),
    account,
    partition,
  };
}

/** How often a started check is asked whether it has ended. */
const POLL_MS = 5_000;

/**
 * Starts the stage's check workflow (`kennel-backup-<stage>-check`) with
 * `input` and waits for it to end (states:StartExecution and
 * states:DescribeExecution on it): its lines, from its report or from the cause
 * it failed with, and whether every one was OK. Throws what the SDK throws.
 */
export async function runDeployedCheck(
  sfn: SFNClient,
  stage: DeployedStage,
  stageName: string,
  input: { target?: string },
  wait: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): Promise<{ ok: boolean; text: string; executionArn: string }> {
  const region = stage.config.AWS_REGION;
  const stateMachineArn = `arn:${stage.partition}:states:${region}:${stage.account}:stateMachine:${SERVICE}-${stageName}-check`;
  const { executionArn } = await sfn.send(
    new StartExecutionCommand({ stateMachineArn, input: JSON.stringify(input) }),
  );
  if (!executionArn) throw new Error(`StartExecution on ${stateMachineArn} returned no execution.`);
  for (;;) {
    const execution = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (execution.status === 'SUCCEEDED') {
      const report = JSON.parse(execution.output ?? '{}') as { summary?: string };
      return { ok: true, text: report.summary ?? '', executionArn };
    }
    if (execution.status !== 'RUNNING' && execution.status !== 'PENDING_REDRIVE')
      return {
        ok: false,
        text: `${execution.status} ${execution.error ?? ''}: ${causeMessage(execution.cause ?? '')}`,
        executionArn,
      };
    await wait(POLL_MS);
  }
}

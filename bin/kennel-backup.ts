#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SFNClient } from '@aws-sdk/client-sfn';
import { Catalog } from '../shared/catalog/catalog.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { formatInfo, readInfo } from '../shared/watch/info.ts';
import { deployedStage, runDeployedCheck } from './deployed.ts';

/**
 * The operator's command for a deployed stage, with their own AWS credentials
 * (the SDK's default chain: AWS_PROFILE, SSO, environment): `npx kennel-backup
 * info --stage prod`. The local stack's counterpart is `npm run local -- info`;
 * both run shared/watch/info.ts.
 */

const USAGE = `Usage: npx kennel-backup <command> --stage <stage> [--region <region>] [--json]

  info                  every backup of every target, database and kind: time, size, storage
                        class, state (restore-tested, verified, failed and why); the WAL's
                        recoverable range and gaps. A table, or JSON with --json.
  check [--target <t>]  starts the stage's check workflow and waits for it: a line per need,
                        OK or the fix; exits 1 when one is not OK.

Needs lambda:GetFunctionConfiguration on kennel-backup-<stage>-planBackup (where the
stage's bucket and targets are read); for info s3:ListBucket and s3:GetObject on its
bucket, for check states:StartExecution and states:DescribeExecution on its check workflow.
The region: --region, else AWS_REGION, else us-east-1 (serverless.yml's default).`;

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      stage: { type: 'string' },
      target: { type: 'string' },
      region: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command] = positionals;
  if (values.help || (command !== 'info' && command !== 'check') || !values.stage) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const region = values.region ?? process.env.AWS_REGION ?? 'us-east-1';
  const stage = await deployedStage(new LambdaClient({ region }), values.stage, region);
  const { config } = stage;
  if (command === 'check') {
    const input = values.target === undefined ? {} : { target: values.target };
    const sfn = new SFNClient({ region });
    console.error(`Starting kennel-backup-${values.stage}-check …`);
    const checked = await runDeployedCheck(sfn, stage, values.stage, input);
    console.log(checked.text);
    console.error(`History: ${checked.executionArn}`);
    return checked.ok ? 0 : 1;
  }
  const s3 = createS3Client(config);
  const info = await readInfo(config, new Catalog(s3, config.BACKUP_BUCKET), s3);
  console.log(values.json ? JSON.stringify(info, null, 2) : formatInfo(info));
  return 0;
}

process.exitCode = await main().catch((error: unknown) => {
  console.error(`kennel-backup: ${(error as Error).message}`);
  return 1;
});

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { createS3Client, createSsmClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { checkHostCommand } from '../../shared/host/command-stage.ts';
import { type HostCommands, ssmHostCommands } from '../../shared/host/commands.ts';
import { s3HostOutput } from '../../shared/host/output.ts';

const config = getConfig();
// Where Run Command puts each command's whole output (the start stage sends it there): locally, the local S3.
const output = s3HostOutput(createS3Client(config), config.BACKUP_BUCKET);

export function createHandler(host: HostCommands) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => checkHostCommand(host, event, { output }));
}

export const handler = createHandler(ssmHostCommands(createSsmClient(config)));

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { createSsmClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { checkHostCommand } from '../../shared/host/command-stage.ts';
import { type HostCommands, ssmHostCommands } from '../../shared/host/commands.ts';

const config = getConfig();

export function createHandler(host: HostCommands) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => checkHostCommand(host, event));
}

export const handler = createHandler(ssmHostCommands(createSsmClient(config), config.HOST_COMMAND_LOG_GROUP));

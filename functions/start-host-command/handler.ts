import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { createSsmClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { startHostCommand } from '../../shared/host/command-stage.ts';
import { type HostCommands, ssmHostCommands } from '../../shared/host/commands.ts';
import { HOST_COMMAND_SET } from './commands.ts';

const config = getConfig();

export function createHandler(host: HostCommands) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const command = await startHostCommand(config, host, HOST_COMMAND_SET, event);
      logger.info('host command sent', {
        script: command.script,
        commandId: command.commandId,
        target: command.target,
      });
      return command;
    });
}

export const handler = createHandler(ssmHostCommands(createSsmClient(config)));

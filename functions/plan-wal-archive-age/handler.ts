import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planWalArchiveAge } from '../../shared/watch/archiving.ts';

const config = getConfig();

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => planWalArchiveAge(config, event));

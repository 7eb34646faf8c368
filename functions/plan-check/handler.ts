import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planCheck } from '../../shared/watch/check.ts';

const config = getConfig();

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = planCheck(config, event);
    logger.info('check planned', { targets: plan.hosts.map((h) => h.target) });
    return plan;
  });

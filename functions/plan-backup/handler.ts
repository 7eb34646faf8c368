import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/config.ts';
import { logger } from '../../shared/logger.ts';
import { planBackup } from '../../shared/plan.ts';

const config = getConfig();

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = planBackup(config, event);
    logger.info('planned backup', {
      runId: plan.runId,
      target: plan.target,
      database: plan.database,
      key: plan.archiveKey,
    });
    return plan;
  });

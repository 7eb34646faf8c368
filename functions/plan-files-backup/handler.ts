import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/config.ts';
import { planFilesBackup } from '../../shared/files-plan.ts';
import { logger } from '../../shared/logger.ts';

const config = getConfig();

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plans = planFilesBackup(config, event);
    for (const plan of plans) {
      logger.info('planned files backup', {
        kind: plan.kind,
        target: plan.target,
        runId: plan.runId,
        paths: plan.paths,
      });
    }
    return plans;
  });

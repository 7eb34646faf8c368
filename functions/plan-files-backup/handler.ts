import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { planFilesBackup } from '../../shared/backup/files-plan.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';

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

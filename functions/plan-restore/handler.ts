import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planRestore } from '../../shared/restore/database-plan.ts';
import { restoreCatalogs } from '../../shared/restore/source.ts';

const config = getConfig();
const catalogs = restoreCatalogs(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = await planRestore(config, catalogs, event);
    logger.info('planned restore', {
      database: plan.database,
      targetDatabase: plan.targetDatabase,
      overProduction: plan.overProduction,
      dryRun: plan.dryRun,
      archives: plan.archives.map((a) => a.key),
    });
    return plan;
  });

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planPointInTimeRecovery } from '../../shared/restore/point-in-time.ts';
import { restoreCatalogs } from '../../shared/restore/source.ts';

const config = getConfig();
const catalogs = restoreCatalogs(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = await planPointInTimeRecovery(config, catalogs, event);
    logger.info('planned point-in-time recovery', {
      scope: plan.scope,
      targetTime: plan.targetTime,
      database: plan.database,
      targetDatabase: plan.targetDatabase,
      overProduction: plan.overProduction,
      dryRun: plan.dryRun,
      source: plan.source,
      set: plan.base.label,
      wal: plan.wal,
    });
    return plan;
  });

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planPointInTimeRecovery } from '../../shared/restore/point-in-time.ts';

const config = getConfig();
const s3 = createS3Client(config);
const catalog = new Catalog(s3, config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = await planPointInTimeRecovery(config, catalog, s3, event);
    logger.info('planned point-in-time recovery', {
      scope: plan.scope,
      targetTime: plan.targetTime,
      database: plan.database,
      targetDatabase: plan.targetDatabase,
      overProduction: plan.overProduction,
      dryRun: plan.dryRun,
      set: plan.base.label,
      wal: plan.wal,
    });
    return plan;
  });

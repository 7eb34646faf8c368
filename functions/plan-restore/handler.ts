import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planRestore } from '../../shared/restore/database-plan.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = await planRestore(config, catalog, event);
    logger.info('planned restore', {
      database: plan.database,
      targetDatabase: plan.targetDatabase,
      overProduction: plan.overProduction,
      dryRun: plan.dryRun,
      archives: plan.archives.map((a) => a.key),
    });
    return plan;
  });

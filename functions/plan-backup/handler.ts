import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { isDumpPlan, planBackup } from '../../shared/backup/database-plan.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plans = await planBackup(config, catalog, event);
    for (const plan of plans) {
      if (isDumpPlan(plan)) {
        logger.info('planned backup', {
          kind: plan.kind,
          runId: plan.runId,
          target: plan.target,
          database: plan.database,
          key: plan.archiveKey,
        });
      } else if ('off' in plan) {
        logger.warn('run off: no pgBackRest settings', {
          kind: plan.kind,
          target: plan.target,
          reason: plan.off,
        });
      } else {
        logger.info('planned backup', {
          engine: plan.engine,
          kind: plan.kind,
          runId: plan.runId,
          target: plan.target,
          ...('recordKey' in plan ? { record: plan.recordKey, base: plan.base } : {}),
        });
      }
    }
    return plans;
  });

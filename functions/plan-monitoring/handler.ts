import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planMonitoring } from '../../shared/watch/monitoring.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = await planMonitoring(config, catalog, event);
    logger.info('monitoring planned', { findings: plan.findings.length, hosts: plan.hosts.length });
    return plan;
  });

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planVerification } from '../../shared/watch/verification.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = await planVerification(config, catalog, event);
    logger.info('planned verification', {
      findings: plan.findings.length,
      localCopies: plan.hosts.reduce((n, h) => n + h.copies.length, 0),
      archives: plan.archives.length,
      repositories: plan.repositories.length,
    });
    return plan;
  });

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { recordPhysicalRestoreTestRun } from '../../shared/backup/physical-restore-test.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const outcome = await recordPhysicalRestoreTestRun(catalog, event);
    logger.info('physical restore test passed', { set: outcome.set, report: outcome.reportKey });
    return outcome;
  });

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planDrill } from '../../shared/watch/drill.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const drill = await planDrill(config, catalog, event);
    logger.info('drill planned', {
      pick: drill.pick,
      seed: drill.seed,
      chosen: drill.chosen.key,
      candidates: drill.candidates.length,
    });
    return drill;
  });

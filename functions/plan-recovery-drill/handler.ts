import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planRecoveryDrill } from '../../shared/watch/recovery-drill.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const drill = await planRecoveryDrill(config, catalog, event);
    logger.info('recovery drill planned', {
      target: drill.target,
      seed: drill.seed,
      targetTime: drill.recovery.targetTime,
      window: drill.window,
      refused: drill.refused.length,
      set: drill.recovery.base.label,
    });
    return drill;
  });

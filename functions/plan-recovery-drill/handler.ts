import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planRecoveryDrill } from '../../shared/watch/recovery-drill.ts';

const config = getConfig();
const s3 = createS3Client(config);
const catalog = new Catalog(s3, config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const drill = await planRecoveryDrill(config, catalog, s3, event);
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

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { checkWalContinuity } from '../../shared/backup/wal-continuity.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';

const config = getConfig();
const s3 = createS3Client(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const proof = await checkWalContinuity(s3, config, event);
    logger.info('WAL archive continuous', { ...proof });
    return proof;
  });

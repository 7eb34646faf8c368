import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { logger } from '../../shared/core/logger.ts';
import { reportVerification } from '../../shared/watch/verification.ts';

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const report = reportVerification(event);
    logger.info('verification passed', report.checked);
    return report;
  });

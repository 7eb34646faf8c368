import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { logger } from '../../shared/core/logger.ts';
import { reportPrepareHost } from '../../shared/host/prepare.ts';

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const report = reportPrepareHost(event);
    logger.info('prepare-host reported', { restartNeeded: report.restartNeeded, dryRun: report.dryRun });
    return report;
  });

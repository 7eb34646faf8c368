import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { reportWalArchiveAge } from '../../shared/watch/archiving.ts';
import { createMetrics, metricsSink } from '../../shared/watch/metrics.ts';

const config = getConfig();
const metrics = createMetrics(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => reportWalArchiveAge(event, metricsSink(metrics)));

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { createMetrics, metricsSink } from '../../shared/watch/metrics.ts';
import { reportMonitoring } from '../../shared/watch/monitoring.ts';

const config = getConfig();
const metrics = createMetrics(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const report = reportMonitoring(event, config.DISK_USAGE_ALERT_PERCENT, metricsSink(metrics));
    logger.info('monitoring passed', { disks: report.disks });
    return report;
  });

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { z } from 'zod';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import { createMetrics, metricsSink } from '../../shared/watch/metrics.ts';
import { reportMonitoring } from '../../shared/watch/monitoring.ts';

const config = getConfig();
const metrics = createMetrics(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { state } = parseInput(z.object({ state: z.unknown() }), event, 'The ReportMonitoring request');
    const report = reportMonitoring(state, config.DISK_USAGE_ALERT_PERCENT, metricsSink(metrics));
    logger.info('monitoring passed', { disks: report.disks });
    return report;
  });

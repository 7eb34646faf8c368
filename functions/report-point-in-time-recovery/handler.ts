import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';
import { reportPointInTimeRecovery } from '../../shared/restore/point-in-time-report.ts';
import { POINT_IN_TIME_STATE } from '../../statemachines/point-in-time-recovery.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { state } = parseInput(
      z.object({ state: z.unknown() }),
      event,
      `The ${POINT_IN_TIME_STATE.report} request`,
    );
    const report = await reportPointInTimeRecovery(catalog, state, new Date().toISOString());
    logger.info('point-in-time recovery finished', {
      recovered: report.recovered,
      totalSeconds: report.totalSeconds,
      stages: report.stages,
      measuredRateKey: report.measuredRateKey,
    });
    return report;
  });

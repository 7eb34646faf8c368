import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';
import { cleanupReport, restoreReport } from '../../shared/restore/stages.ts';
import { RESTORE_STATE } from '../../statemachines/database-restore.ts';

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { state } = parseInput(
      z.object({ state: z.unknown() }),
      event,
      `The ${RESTORE_STATE.report} request`,
    );
    // restore-cleanup's report of a stopped run, or a restore's record.
    const cleanedUp = cleanupReport(state);
    if (cleanedUp) {
      logger.info('stopped run cleaned up', { ...cleanedUp });
      return cleanedUp;
    }
    const report = restoreReport(state, new Date().toISOString());
    logger.info('restore finished', {
      restored: report.restored,
      totalSeconds: report.totalSeconds,
      stages: report.stages,
    });
    return report;
  });

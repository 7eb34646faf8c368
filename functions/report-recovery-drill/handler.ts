import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';
import { reportRecoveryDrill } from '../../shared/watch/recovery-drill.ts';
import { RECOVERY_DRILL_STATE } from '../../statemachines/recovery-drill.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { state } = parseInput(
      z.object({ state: z.unknown() }),
      event,
      `The ${RECOVERY_DRILL_STATE.report} request`,
    );
    const report = await reportRecoveryDrill(catalog, state);
    logger.info('recovery drill passed', {
      targetTime: report.targetTime,
      secondsPerGB: report.secondsPerGB,
      report: report.report,
    });
    return report;
  });

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';
import { reportDrill } from '../../shared/watch/drill.ts';
import { DRILL_STATE } from '../../statemachines/restore-drill.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { state } = parseInput(
      z.object({ state: z.unknown() }),
      event,
      `The ${DRILL_STATE.report} request`,
    );
    const report = await reportDrill(catalog, state);
    logger.info('drill passed', { chosen: report.chosen.key, report: report.report });
    return report;
  });

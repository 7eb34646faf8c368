import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { z } from 'zod';
import { Catalog } from '../../shared/catalog.ts';
import { createS3Client } from '../../shared/clients.ts';
import { getConfig } from '../../shared/config.ts';
import { reportDrill } from '../../shared/drill.ts';
import { logger } from '../../shared/logger.ts';
import { parseInput } from '../../shared/plan.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { state } = parseInput(z.object({ state: z.unknown() }), event, 'The ReportDrill request');
    const report = await reportDrill(catalog, state);
    logger.info('drill passed', { chosen: report.chosen.key, report: report.report });
    return report;
  });

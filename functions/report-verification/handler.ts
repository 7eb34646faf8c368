import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { z } from 'zod';
import { logger } from '../../shared/logger.ts';
import { parseInput } from '../../shared/plan.ts';
import { reportVerification } from '../../shared/verification.ts';

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { state } = parseInput(z.object({ state: z.unknown() }), event, 'The ReportVerification request');
    const report = reportVerification(state);
    logger.info('verification passed', report.checked);
    return report;
  });

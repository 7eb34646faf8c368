import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { z } from 'zod';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import { reportVerification } from '../../shared/watch/verification.ts';

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { state } = parseInput(z.object({ state: z.unknown() }), event, 'The ReportVerification request');
    const report = reportVerification(state);
    logger.info('verification passed', report.checked);
    return report;
  });

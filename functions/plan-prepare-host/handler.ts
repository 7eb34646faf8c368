import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planPrepareHost } from '../../shared/host/prepare.ts';

const config = getConfig();

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = planPrepareHost(config, event);
    logger.info('prepare-host planned', {
      targets: plan.hosts.map((h) => h.target),
      dryRun: plan.dryRun,
      skipped: plan.skipped.map((s) => s.target),
    });
    return plan;
  });

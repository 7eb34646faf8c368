import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { planFilesRestore } from '../../shared/restore/files-plan.ts';
import { restoreCatalogs } from '../../shared/restore/source.ts';

const config = getConfig();
const catalogs = restoreCatalogs(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const plan = await planFilesRestore(config, catalogs, event);
    logger.info('planned files restore', {
      kind: plan.kind,
      target: plan.target,
      key: plan.archive.key,
      dryRun: plan.dryRun,
    });
    return plan;
  });

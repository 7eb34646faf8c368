import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { planSchema } from '../../shared/backup/database-plan.ts';
import { filesPlanSchema } from '../../shared/backup/files-plan.ts';
import { pruneRun } from '../../shared/backup/stages.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { leftoverMinAgeSeconds } from '../../shared/catalog/leftovers.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { plan } = parseInput(
      z.object({ plan: z.union([planSchema, filesPlanSchema]) }),
      event,
      'The PruneBackups request',
    );
    const result = await pruneRun(catalog, plan, new Date(), leftoverMinAgeSeconds(config));
    logger.info('pruned backups', {
      removed: result.removedFromS3.length,
      leftoversRemoved: result.removedLeftovers,
      kept: result.kept,
      localKeepDays: result.localKeepDays,
    });
    return result;
  });

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { planSchema } from '../../shared/backup/database-plan.ts';
import { recordRestoreTestFailure, restoreTestRun } from '../../shared/backup/stages.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { failedStatesSchema } from '../../shared/core/errors.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';
import { type DatabaseUrlProvider, ssmDatabaseUrl } from '../../shared/restore/check.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

export function createHandler(databaseUrl: DatabaseUrlProvider) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const { plan, failed, command } = parseInput(
        z.object({
          plan: planSchema,
          failed: z.optional(failedStatesSchema),
          // The restore's host command (its sentAt is the test's start); absent in RecordRestoreTestFailure.
          command: z.optional(z.object({ sentAt: z.iso.datetime() })),
        }),
        event,
        'The RestoreTest request',
      );
      // RecordRestoreTestFailure: the host's restore failed; recorded, then the failure goes on.
      if (failed) {
        const recorded = await recordRestoreTestFailure(catalog, plan, failed);
        logger.warn('restore test failed on the host', { key: plan.archiveKey, ...recorded });
        return recorded;
      }
      const result = await restoreTestRun(catalog, await databaseUrl(), plan, command?.sentAt);
      logger.info('restore test passed', { key: plan.archiveKey, ...result });
      return { state: 'passed', ...result, scratchDatabase: plan.scratchDatabase, dropped: true };
    });
}

export const handler = createHandler(ssmDatabaseUrl(config.RESTORE_CHECK_DATABASE_URL_PARAMETER));

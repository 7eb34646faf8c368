import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { physicalPlanSchema } from '../../shared/backup/physical-plan.ts';
import { recordPhysicalBackup, recordPhysicalRestoreTest } from '../../shared/backup/physical-stages.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

/**
 * RecordPhysicalBackup: the run's plan and the facts its pgbackrest-backup
 * command reported (its KB-RESULT line). UpdatePhysicalRecord: the plan and the
 * outcome of the backup's restore test.
 */
const requestSchema = z.union([
  z.strictObject({ plan: physicalPlanSchema, facts: z.unknown() }),
  z.strictObject({ plan: physicalPlanSchema, restoreTest: z.unknown() }),
]);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const request = parseInput(requestSchema, event, 'The physical backup record request');
    const result =
      'facts' in request
        ? await recordPhysicalBackup(catalog, request.plan, request.facts)
        : await recordPhysicalRestoreTest(catalog, request.plan, request.restoreTest);
    logger.info('physical backup recorded', { ...result });
    return result;
  });

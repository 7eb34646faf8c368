import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { physicalPlanSchema } from '../../shared/backup/physical-plan.ts';
import { recordPhysicalExpiry } from '../../shared/backup/physical-stages.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

/** The run's plan and what its pgbackrest-expire command reported (its KB-RESULT line). */
const requestSchema = z.object({ plan: physicalPlanSchema, facts: z.unknown() });

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { plan, facts } = parseInput(requestSchema, event, 'The RecordPhysicalExpiry request');
    const result = await recordPhysicalExpiry(catalog, plan, facts);
    logger.info('physical backups expired', {
      target: plan.target,
      expired: result.expired,
      marked: result.marked.length,
    });
    return result;
  });

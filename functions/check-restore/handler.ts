import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';
import { type DatabaseUrlProvider, ssmDatabaseUrl } from '../../shared/restore/check.ts';
import { restorePlanSchema } from '../../shared/restore/database-schemas.ts';
import { catalogOf, restoreCatalogs } from '../../shared/restore/source.ts';
import { checkRestore } from '../../shared/restore/stages.ts';
import { RESTORE_STATE } from '../../statemachines/database-restore.ts';

const config = getConfig();
const catalogs = restoreCatalogs(config);

export function createHandler(databaseUrl: DatabaseUrlProvider) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const { plan } = parseInput(
        z.object({ plan: restorePlanSchema }),
        event,
        `The ${RESTORE_STATE.checkRestoredDatabase} request`,
      );
      const result = await checkRestore(await databaseUrl(), catalogOf(catalogs, plan.source), plan);
      logger.info('restored database checked', {
        database: plan.stagingDatabase,
        tables: result.tables,
        rows: result.rows,
      });
      return result;
    });
}

export const handler = createHandler(ssmDatabaseUrl(config.RESTORE_CHECK_DATABASE_URL_PARAMETER));

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { planSchema } from '../../shared/backup/database-plan.ts';
import { filesPlanSchema } from '../../shared/backup/files-plan.ts';
import { verifyArchive } from '../../shared/catalog/archive-check.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { excludedTablesOf } from '../../shared/catalog/manifest-builder.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { objectKey } from '../../shared/core/identifiers.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';
import { createMetrics, recordArchive } from '../../shared/watch/metrics.ts';

const config = getConfig();
const s3 = createS3Client(config);
const catalog = new Catalog(s3, config.BACKUP_BUCKET);
const metrics = createMetrics(config);

/** A run's new archive (its plan and the facts its host command reported), or a backup in the catalog. */
const requestSchema = z.union([
  z.object({ plan: z.union([planSchema, filesPlanSchema]), facts: z.unknown() }),
  z.object({ manifestKey: objectKey }),
]);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const request = parseInput(requestSchema, event, 'The VerifyArchive request');
    const manifest = await verifyArchive(s3, catalog, request, (kind) => excludedTablesOf(config, kind));
    logger.info('archive verified', { key: manifest.archive.key, size: manifest.archive.size });
    recordArchive(metrics, {
      target: manifest.target,
      kind: manifest.kind,
      sizeBytes: manifest.archive.size,
      durationSeconds: (Date.parse(manifest.finishedAt) - Date.parse(manifest.startedAt)) / 1000,
    });
    return {
      state: manifest.verification.state,
      key: manifest.archive.key,
      size: manifest.archive.size,
      sha256: manifest.archive.sha256,
      detail: manifest.verification.detail,
      // Paths a files backup did not find; the workflow warns about them.
      missing: 'missing' in manifest ? manifest.missing : [],
    };
  });

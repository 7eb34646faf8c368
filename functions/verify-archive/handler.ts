import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { Catalog } from '../../shared/catalog.ts';
import { createS3Client } from '../../shared/clients.ts';
import { getConfig } from '../../shared/config.ts';
import { logger } from '../../shared/logger.ts';
import { createMetrics, recordArchive } from '../../shared/metrics.ts';
import { excludedTablesOf, parseInput } from '../../shared/plan.ts';
import { verifyArchive, verifyRequestSchema } from '../../shared/verify.ts';

const config = getConfig();
const s3 = createS3Client(config);
const catalog = new Catalog(s3, config.BACKUP_BUCKET);
const metrics = createMetrics(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const request = parseInput(verifyRequestSchema, event, 'The VerifyArchive request');
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

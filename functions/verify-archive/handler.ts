import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { z } from 'zod';
import { verifyArchive } from '../../shared/catalog/archive-check.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { objectKey } from '../../shared/core/identifiers.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import { createMetrics, recordArchive } from '../../shared/watch/metrics.ts';

const config = getConfig();
const s3 = createS3Client(config);
const catalog = new Catalog(s3, config.BACKUP_BUCKET);
const metrics = createMetrics(config);

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const { manifestKey } = parseInput(
      z.object({ manifestKey: objectKey }),
      event,
      'The VerifyArchive request',
    );
    const manifest = await verifyArchive(s3, catalog, config.BACKUP_BUCKET, manifestKey);
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

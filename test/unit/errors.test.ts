import { fileURLToPath } from 'node:url';
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { classifyAwsError, HostCommandFailedError, TransientError } from '../../shared/core/errors.ts';
import { testConfig } from '../support/config.ts';

// Public dummy keys: the request never leaves this machine.
Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });

const config = testConfig({ S3_ENDPOINT_URL: 'http://127.0.0.1:1' });

describe('error classes', () => {
  it('keep their names when minified as in the bundles, so Retry and Catch still match in AWS', async () => {
    const { outputFiles } = await build({
      entryPoints: [fileURLToPath(new URL('../../shared/core/errors.ts', import.meta.url))],
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'node',
      write: false,
    });
    const code = outputFiles[0]?.text ?? '';
    const bundled = (await import(
      `data:text/javascript;base64,${Buffer.from(code).toString('base64')}`
    )) as Record<string, unknown>;
    const classes = Object.entries(bundled).filter(
      ([, value]) =>
        typeof value === 'function' && (value as { prototype?: unknown }).prototype instanceof Error,
    );
    expect(classes.length).toBeGreaterThanOrEqual(11);
    for (const [exported, Class] of classes) {
      expect(new (Class as new (message: string) => Error)('x').name).toBe(exported);
    }
  });

  it('carry their own name, for Retry and Catch, and keep the cause', () => {
    const cause = new Error('root');
    const error = new HostCommandFailedError('failed', { cause });
    expect(error.name).toBe('HostCommandFailedError');
    expect(error.cause).toBe(cause);
  });

  it('an S3 that does not answer is a TransientError the workflow retries', async () => {
    const s3 = createS3Client(config);
    const failure = await s3
      .send(new HeadBucketCommand({ Bucket: config.BACKUP_BUCKET }))
      .catch((e: unknown) => e);
    const classified = classifyAwsError(failure, 'Checking the bucket');
    expect(classified).toBeInstanceOf(TransientError);
    expect(classified.message).toMatch(/^Checking the bucket failed \(ECONNREFUSED\)/);
    await expect(
      new Catalog(s3, config.BACKUP_BUCKET).list('full', 'primary', 'kennel_prod'),
    ).rejects.toBeInstanceOf(TransientError);
  });

  it('passes other errors on unchanged', () => {
    const denied = Object.assign(new Error('Access Denied'), {
      name: 'AccessDenied',
      $metadata: { httpStatusCode: 403 },
    });
    expect(classifyAwsError(denied, 'x')).toBe(denied);
  });
});

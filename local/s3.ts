import { mkdirSync } from 'node:fs';
import S3rver from 's3rver';

/** s3rver accepts only its own well-known keys; they are public, not secrets. */
export const LOCAL_S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' } as const;

export interface LocalS3 {
  endpoint: string;
  stop(): Promise<void>;
}

/** A local S3-compatible server whose data stays in `directory`, so later runs see earlier backups. */
export async function startLocalS3(directory: string, bucket: string): Promise<LocalS3> {
  mkdirSync(directory, { recursive: true });
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => server.close() };
}

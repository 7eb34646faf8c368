import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

/**
 * moto_server, an independent emulator of S3 that implements what the local S3
 * (s3rver) does not: versioning, Object Lock, and conditional writes of its own
 * making. Where it is not installed (`pip install "moto[server]"`), the tests that
 * need it say so once, naming what they could not check, and run against the
 * local S3 alone.
 */
export const MOTO_SERVER = spawnSync('sh', ['-c', 'command -v moto_server'], {
  encoding: 'utf8',
}).stdout.trim();

/** Says, once per test file, what could not be checked without moto_server. */
export function warnWithoutMoto(uncheckable: string): void {
  if (!MOTO_SERVER)
    console.warn(`moto_server is not on this machine (pip install "moto[server]"): ${uncheckable}`);
}

/** moto's keys: any will do. */
export const MOTO_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' } as const;

export interface Moto {
  endpoint: string;
  /** A client as a function has in AWS: the SDK's default checksums (which Object Lock requires of every upload). */
  s3: S3Client;
  stop(): void;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A moto_server on a free port of 127.0.0.1, once it answers, with `bucket`
 * created (its `options`: Object Lock, which turns versioning on); undefined
 * where moto_server is not installed.
 */
export async function startMoto(
  bucket: string,
  options: { objectLock?: boolean } = {},
): Promise<Moto | undefined> {
  if (!MOTO_SERVER) return undefined;
  const port = await freePort();
  const child: ChildProcess = spawn(MOTO_SERVER, ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: 'ignore',
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const s3 = new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: MOTO_CREDENTIALS.AWS_ACCESS_KEY_ID,
      secretAccessKey: MOTO_CREDENTIALS.AWS_SECRET_ACCESS_KEY,
    },
  });
  for (let waited = 0; ; waited += 200) {
    try {
      await s3.send(
        new CreateBucketCommand({
          Bucket: bucket,
          ...(options.objectLock ? { ObjectLockEnabledForBucket: true } : {}),
        }),
      );
      break;
    } catch (error) {
      if (waited > 20_000) {
        child.kill();
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  return { endpoint, s3, stop: () => child.kill() };
}

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import S3rver from 's3rver';

/** s3rver accepts only its own well-known keys; they are public, not secrets. */
export const LOCAL_S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' } as const;

export interface LocalS3 {
  endpoint: string;
  /** The certificate the server presents; every client trusts it as its CA (AWS_CA_BUNDLE). */
  caFile: string;
  stop(): Promise<void>;
}

export interface LocalTls {
  keyFile: string;
  certFile: string;
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost, made once in `directory`
 * and kept, so clients configured in an earlier run (pgBackRest's CA file) still
 * trust the server. pgBackRest speaks S3 only over HTTPS; its clients verify this
 * certificate rather than turning verification off.
 */
export function ensureLocalTls(directory: string): LocalTls {
  const keyFile = join(directory, 'key.pem');
  const certFile = join(directory, 'cert.pem');
  if (existsSync(keyFile) && existsSync(certFile)) return { keyFile, certFile };
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  // Written beside and renamed, so an interrupted run never leaves half a pair.
  const result = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '3650',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      `${keyFile}.new`,
      '-out',
      `${certFile}.new`,
    ],
    { encoding: 'utf8' },
  );
  if (result.error || result.status !== 0) {
    throw new Error(
      `Could not make the local S3's TLS certificate with openssl (install it, e.g. \`apt-get install openssl\`): ${result.error?.message ?? result.stderr}`,
    );
  }
  renameSync(`${keyFile}.new`, keyFile);
  renameSync(`${certFile}.new`, certFile);
  return { keyFile, certFile };
}

/**
 * A local S3-compatible server over HTTPS whose data stays in `directory`, so later
 * runs see earlier backups. Its certificate lives in `tlsDirectory`, outside
 * `directory`: s3rver takes every folder there for a bucket.
 */
export async function startLocalS3(
  directory: string,
  bucket: string,
  tlsDirectory: string,
): Promise<LocalS3> {
  mkdirSync(directory, { recursive: true });
  const tls = ensureLocalTls(tlsDirectory);
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    key: readFileSync(tls.keyFile),
    cert: readFileSync(tls.certFile),
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  return { endpoint: `https://127.0.0.1:${port}`, caFile: tls.certFile, stop: () => server.close() };
}

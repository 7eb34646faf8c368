import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
 *
 * It runs in a child process (local/s3-server.ts), never in this one: PostgreSQL's
 * archive_command pushes WAL to it at any moment, and a synchronous call here (a
 * psql whose statement waits on a checkpoint, say) would otherwise block the very
 * server the archiver is waiting for. The child ends when this process does
 * (its stdin closes).
 *
 * `port` serves on that port instead of a free one: a server stopped and started
 * again there is the same endpoint to every client configured for it (the
 * repository unreachable for a while, then back).
 */
export async function startLocalS3(
  directory: string,
  bucket: string,
  tlsDirectory: string,
  port?: number,
): Promise<LocalS3> {
  const tls = ensureLocalTls(tlsDirectory);
  const child = spawn(
    process.execPath,
    [
      fileURLToPath(new URL('./s3-server.ts', import.meta.url)),
      directory,
      bucket,
      tls.keyFile,
      tls.certFile,
      ...(port === undefined ? [] : [String(port)]),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const listening = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = /^listening (\d+)$/m.exec(out);
      if (line) resolve(Number(line[1]));
    });
    child.once('exit', (code) =>
      reject(new Error(`The local S3 server exited with status ${code} before it listened.`)),
    );
    child.once('error', reject);
  });
  return {
    endpoint: `https://127.0.0.1:${listening}`,
    caFile: tls.certFile,
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}

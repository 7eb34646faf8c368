import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** s3rver accepts only its own well-known keys; they are public, not secrets. */
export const LOCAL_S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' } as const;

export interface LocalS3 {
  endpoint: string;
  /** The certificate the server presents; every client trusts it as its CA (AWS_CA_BUNDLE). */
  caFile: string;
  /** The server's process. */
  pid: number;
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

export interface LocalS3Options {
  /** Outlive this process (`npm run local -- up`); its stderr goes to `logFile`. */
  detached?: { logFile: string };
  /** The port to serve on when it is free (the one an earlier run used, which pgbackrest.conf names). */
  port?: number;
  /** A second bucket, the vault, to which every object written to the bucket is replicated (local/s3-server.ts). */
  vaultBucket?: string;
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
 * (its stdin closes), unless it is detached.
 */
export async function startLocalS3(
  directory: string,
  bucket: string,
  tlsDirectory: string,
  options: LocalS3Options = {},
): Promise<LocalS3> {
  const tls = ensureLocalTls(tlsDirectory);
  if (options.port !== undefined) {
    try {
      return await spawnS3(directory, bucket, tls, options, options.port);
    } catch {
      // Taken since: any free port will do, and prepare-host rewrites pgbackrest.conf for it.
    }
  }
  return spawnS3(directory, bucket, tls, options, 0);
}

async function spawnS3(
  directory: string,
  bucket: string,
  tls: LocalTls,
  options: LocalS3Options,
  port: number,
): Promise<LocalS3> {
  const { detached } = options;
  const log = detached ? openSync(detached.logFile, 'a') : undefined;
  const child = spawn(
    process.execPath,
    [
      // s3rver seals a truncated listing's continuation token with DES, which
      // OpenSSL 3 keeps in its legacy provider: without it every listing longer
      // than one page (MaxKeys) answers 500.
      '--openssl-legacy-provider',
      S3_SERVER,
      `--port=${port}`,
      ...(detached ? ['--detached'] : []),
      ...(options.vaultBucket ? [`--vault=${options.vaultBucket}`] : []),
      directory,
      bucket,
      tls.keyFile,
      tls.certFile,
    ],
    // A session of its own either way: a Ctrl-C at the terminal goes to this
    // process, which still needs the server while it cleans up (and PostgreSQL's
    // archiver pushes WAL to it until the cluster has stopped); without
    // `detached` it still ends with this process, when its stdin closes.
    log !== undefined
      ? { detached: true, stdio: ['ignore', 'pipe', log] }
      : { detached: true, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  // The child has its own copy of the log's descriptor.
  if (log !== undefined) closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const listening = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = /^listening (\d+)$/m.exec(out);
      if (line) resolve(Number(line[1]));
    });
    child.once('exit', (code) =>
      reject(new Error(`The local S3 server exited with status ${code} before it listened.`)),
    );
    child.once('error', reject);
  });
  const pid = child.pid ?? 0;
  if (detached) {
    // Nothing more is read from it, and this process may end before it does.
    child.stdout?.destroy();
    child.unref();
  }
  return {
    endpoint: `https://127.0.0.1:${listening}`,
    caFile: tls.certFile,
    pid,
    async stop() {
      if (detached) await stopLocalS3(pid, directory);
      else {
        child.stdin?.end();
        await exited;
      }
    },
  };
}

const S3_SERVER = fileURLToPath(new URL('./s3-server.ts', import.meta.url));

/** Whether `pid` is the local S3 server serving `directory` (and not another process that got its pid since). */
export function isLocalS3(pid: number, directory: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.includes(S3_SERVER) && argv.includes(directory);
  } catch {
    return false;
  }
}

/** Stops a detached local S3 server (`npm run local -- down`); nothing when `pid` is no longer it. */
export async function stopLocalS3(pid: number, directory: string): Promise<void> {
  if (!isLocalS3(pid, directory)) return;
  process.kill(pid, 'SIGTERM');
  for (let waited = 0; isLocalS3(pid, directory); waited += 50) {
    if (waited > 10_000) throw new Error(`The local S3 server (pid ${pid}) did not stop within 10 s.`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

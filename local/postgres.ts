import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway PostgreSQL cluster from the local install, for the local runner,
 * the tests and the benchmark. Password authentication over TCP on 127.0.0.1, so
 * the scripts connect exactly as they would to a real server; the password is
 * random per cluster and only ever travels in environment variables.
 */

export interface PostgresServer {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Directory with this server's client tools (pg_dump, psql), to put first on PATH. */
  binDir: string;
  /** libpq URL of the server, without a database. */
  url: string;
  /** PG* variables for client tools. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** A cluster this process started: its files, for tools that work on them (pgBackRest). */
export interface LocalCluster extends PostgresServer {
  /** Owned by the server user; removed with the cluster. */
  dir: string;
  dataDir: string;
  /** Where the server's Unix socket lives (`-k`). */
  socketDir: string;
  /** Restarts the server with its command line, for settings that need it (archive_mode). */
  restart(env?: Record<string, string>): void;
}

export function findPostgresBinDir(): string {
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) {
    const resolved = execFileSync('readlink', ['-f', which.stdout.trim()], { encoding: 'utf8' }).trim();
    return resolved.replace(/\/initdb$/, '');
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  throw new Error(
    'No PostgreSQL server found (initdb, pg_ctl). Install one, e.g. `apt-get install postgresql`, or set DATABASE_URL to back up an existing database instead.',
  );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * PostgreSQL refuses to run as root; as root, the server runs as the `postgres` user,
 * and so must the tools that read its files or run from its archive_command.
 */
export function asServerUser(bin: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
}

/** Hands `path` to the server user when this process is root (a no-op otherwise). */
export function giveToServerUser(path: string): void {
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', path]);
}

function run(bin: string, args: string[], env?: Record<string, string>): void {
  const [cmd, argv] = asServerUser(bin, args);
  const result = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env } });
  if (result.status !== 0)
    throw new Error(`${bin} ${args[0] ?? ''} failed: ${result.stderr || result.stdout}`);
}

export async function startPostgres(): Promise<LocalCluster> {
  const binDir = findPostgresBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-pg-'));
  const data = join(dir, 'data');
  const password = randomBytes(18).toString('base64url');
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  giveToServerUser(dir);
  const user = 'kennel_admin';
  run(join(binDir, 'initdb'), [
    '-D',
    data,
    '-U',
    user,
    '--pwfile',
    pwfile,
    '-A',
    'scram-sha-256',
    '-E',
    'UTF8',
    '--locale=C.UTF-8',
    '--no-sync',
  ]);
  rmSync(pwfile);
  const port = await freePort();
  run(join(binDir, 'pg_ctl'), [
    '-D',
    data,
    '-w',
    '-l',
    join(dir, 'server.log'),
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`,
    'start',
  ]);
  const host = '127.0.0.1';
  return {
    host,
    port,
    user,
    password,
    binDir,
    url: `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}`,
    env: { PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password },
    dir,
    dataDir: data,
    socketDir: dir,
    restart(env) {
      // The postmaster passes its environment to archive_command.
      run(
        join(binDir, 'pg_ctl'),
        ['-D', data, '-m', 'fast', '-w', '-l', join(dir, 'server.log'), 'restart'],
        env,
      );
    },
    async stop() {
      try {
        run(join(binDir, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A server given by DATABASE_URL: the backup targets its database; nothing is started or stopped. */
export function externalPostgres(databaseUrl: string): PostgresServer & { database: string } {
  const url = new URL(databaseUrl);
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || 'postgres';
  const password = decodeURIComponent(url.password);
  const user = decodeURIComponent(url.username);
  const host = url.hostname || '127.0.0.1';
  const port = Number(url.port || 5432);
  url.pathname = '';
  let binDir = '';
  try {
    binDir = findPostgresBinDir();
  } catch {
    // Client tools on PATH are enough against an external server.
  }
  return {
    host,
    port,
    user,
    password,
    binDir,
    database,
    url: url.toString().replace(/\/$/, ''),
    env: { PGHOST: host, PGPORT: String(port), PGUSER: user, ...(password ? { PGPASSWORD: password } : {}) },
    async stop() {},
  };
}

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * PostgreSQL clusters from the local install: the local stack's, kept under its
 * state directory across runs, and throwaway ones for the tests and the
 * benchmarks. Password authentication over TCP on 127.0.0.1, so the scripts
 * connect exactly as they would to a real server; the password is random per
 * cluster, kept in a file of its own and only ever travels in environment
 * variables. fsync is off: these clusters serve development and tests, and one a
 * machine crash damaged is made again after `npm run local -- reset`.
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

/**
 * As `run`, without blocking this process: a server stopping archives its last
 * WAL segments to the local S3, which answers from this same process (a blocked
 * event loop leaves archive_command, and so the shutdown, waiting).
 */
async function runAsync(bin: string, args: string[], env?: Record<string, string>): Promise<void> {
  const [cmd, argv] = asServerUser(bin, args);
  try {
    await promisify(execFile)(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env } });
  } catch (error) {
    const { stderr, stdout } = error as { stderr?: string; stdout?: string };
    throw new Error(`${bin} ${args[0] ?? ''} failed: ${stderr || stdout || (error as Error).message}`);
  }
}

/** The role every local cluster is created with: a superuser, as pgBackRest needs. */
const CLUSTER_USER = 'kennel_admin';

/** Linux's limit on a Unix socket's path (sun_path), terminator included. */
const SOCKET_PATH_MAX = 107;

export interface ClusterOptions {
  /**
   * Environment of the postmaster, at every start and restart: it hands it to
   * archive_command (the local S3's keys for pgBackRest).
   */
  env?: Record<string, string>;
}

/** A cluster this process opened: whether it made it, and whether it started it (or found it running). */
export interface OpenedCluster extends LocalCluster {
  created: boolean;
  started: boolean;
}

/**
 * The cluster kept in `dir` across runs: made there on first use (initdb, a
 * random password kept in `dir/password`), started unless it runs already, on
 * the port it had if that is free. `stop()` stops it if it still runs and keeps its files.
 */
export async function openLocalCluster(dir: string, options: ClusterOptions = {}): Promise<OpenedCluster> {
  const binDir = findPostgresBinDir();
  const data = join(dir, 'data');
  const passwordFile = join(dir, 'password');
  const created = !existsSync(join(data, 'PG_VERSION'));
  if (created) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(passwordFile, `${randomBytes(18).toString('base64url')}\n`, { mode: 0o600 });
    giveToServerUser(dir);
    reachableByServerUser(dir);
    run(join(binDir, 'initdb'), [
      '-D',
      data,
      '-U',
      CLUSTER_USER,
      '--pwfile',
      passwordFile,
      '-A',
      'scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C.UTF-8',
      '--no-sync',
    ]);
  }
  const password = readFileSync(passwordFile, 'utf8').trim();
  const running = runningPort(binDir, data);
  let port = running;
  if (port === undefined) {
    const remembered = Number(readIfExists(join(dir, 'port')));
    port = remembered > 0 && (await portIsFree(remembered)) ? remembered : await freePort();
    if (`${dir}/.s.PGSQL.${port}`.length > SOCKET_PATH_MAX)
      throw new Error(
        `The local cluster's socket would be ${dir}/.s.PGSQL.${port}, longer than a Unix socket path may be (${SOCKET_PATH_MAX}); set KENNEL_BACKUP_DIR to a shorter path.`,
      );
    run(
      join(binDir, 'pg_ctl'),
      [
        '-D',
        data,
        '-w',
        '-l',
        join(dir, 'server.log'),
        '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`,
        'start',
      ],
      options.env,
    );
    writeFileSync(join(dir, 'port'), `${port}\n`);
  }
  return {
    ...clusterHandle(binDir, dir, data, port, password, options.env),
    created,
    started: running === undefined,
    async stop() {
      // A server that no longer runs (killed, its data directory lost: the RPO bench) has nothing to stop.
      if (runningPort(binDir, data) === undefined) return;
      await runAsync(join(binDir, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']);
    },
  };
}

/** A throwaway cluster in a new temporary directory, removed with it when stopped. */
export async function startPostgres(options: ClusterOptions = {}): Promise<LocalCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-pg-'));
  const cluster = await openLocalCluster(dir, options);
  return {
    ...cluster,
    async stop() {
      try {
        run(join(cluster.binDir, 'pg_ctl'), ['-D', cluster.dataDir, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Stops the cluster kept in `dir` if it runs (`npm run local -- down`); true when it did. */
export function stopLocalCluster(dir: string): boolean {
  const data = join(dir, 'data');
  if (!existsSync(join(data, 'PG_VERSION'))) return false;
  const binDir = findPostgresBinDir();
  if (runningPort(binDir, data) === undefined) return false;
  run(join(binDir, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']);
  return true;
}

function clusterHandle(
  binDir: string,
  dir: string,
  data: string,
  port: number,
  password: string,
  env: Record<string, string> | undefined,
): LocalCluster {
  const host = '127.0.0.1';
  return {
    host,
    port,
    user: CLUSTER_USER,
    password,
    binDir,
    url: `postgres://${CLUSTER_USER}:${encodeURIComponent(password)}@${host}:${port}`,
    env: { PGHOST: host, PGPORT: String(port), PGUSER: CLUSTER_USER, PGPASSWORD: password },
    dir,
    dataDir: data,
    socketDir: dir,
    restart(extra) {
      // pg_ctl restarts with the command line the server was started with.
      run(
        join(binDir, 'pg_ctl'),
        ['-D', data, '-m', 'fast', '-w', '-l', join(dir, 'server.log'), 'restart'],
        { ...env, ...extra },
      );
      // PostgreSQL 15's checkpointer computes its first sleep while still in
      // recovery and so ignores archive_timeout for up to checkpoint_timeout after
      // a start; a reload makes it take archive_timeout into account at once.
      run(join(binDir, 'pg_ctl'), ['-D', data, 'reload']);
    },
    async stop() {},
  };
}

/** The port of the server running on `data`, from its postmaster.pid; undefined when none runs. */
function runningPort(binDir: string, data: string): number | undefined {
  const [cmd, argv] = asServerUser(join(binDir, 'pg_ctl'), ['-D', data, 'status']);
  if (spawnSync(cmd, argv).status !== 0) return undefined;
  // postmaster.pid: pid, data directory, start time, port, ...
  const port = Number(readIfExists(join(data, 'postmaster.pid')).split('\n')[3]);
  return port > 0 ? port : undefined;
}

/** A file's text, or '' when it cannot be read. */
export function readIfExists(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * As root, the server runs as `postgres`, which must reach its directory: a
 * directory on the way that only root may enter stops it (a private temporary one).
 */
function reachableByServerUser(dir: string): void {
  if (process.getuid?.() !== 0) return;
  if (!canReach('postgres', dir))
    throw new Error(
      `The PostgreSQL server user (postgres) cannot reach ${dir}: a directory above it is closed to other users. Let them through (chmod o+x) or set KENNEL_BACKUP_DIR elsewhere.`,
    );
}

function canReach(user: string, dir: string): boolean {
  return spawnSync('runuser', ['-u', user, '--', 'test', '-x', dir]).status === 0;
}

/**
 * The directory `name` under the state directory, for files an OS user other
 * than this process's works on (the cluster's, as `postgres`; pgBackRest's).
 * As root with a state directory that user cannot reach (a clone under /root),
 * the directory lives in that user's home instead, `dataDir/name` a symbolic
 * link to it, so that pasting the README's lines works wherever the clone is.
 */
export function serverUserDir(dataDir: string, name: string, user = 'postgres'): string {
  const path = join(dataDir, name);
  if (existsSync(path)) return realpathSync(path);
  if (process.getuid?.() !== 0 || canReach(user, dataDir)) return path;
  const home = execFileSync('getent', ['passwd', user], { encoding: 'utf8' }).split(':')[5] ?? '';
  const real = join(
    home,
    'kennel-backup',
    `${name}-${createHash('sha256').update(resolve(path)).digest('hex').slice(0, 12)}`,
  );
  mkdirSync(real, { recursive: true });
  execFileSync('chown', [user, real]);
  symlinkSync(real, path);
  return real;
}

/** Deletes `dataDir/name`, and what it links to when serverUserDir put it elsewhere. */
export function removeServerUserDir(dataDir: string, name: string): void {
  const path = join(dataDir, name);
  if (existsSync(path) && lstatSync(path).isSymbolicLink())
    rmSync(realpathSync(path), { recursive: true, force: true });
  rmSync(path, { recursive: true, force: true });
}

/**
 * A server given by DATABASE_URL: the backup targets its database; nothing is
 * started or stopped. The password is the URL's, or found in the libpq password
 * file its `passfile` parameter names (as `npm run local -- up` prints it).
 */
export function externalPostgres(databaseUrl: string): PostgresServer & { database: string } {
  const url = new URL(databaseUrl);
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || 'postgres';
  const user = decodeURIComponent(url.username);
  const host = url.hostname || '127.0.0.1';
  const port = Number(url.port || 5432);
  const passfile = url.searchParams.get('passfile');
  const password =
    decodeURIComponent(url.password) ||
    (passfile ? (passwordFromPassfile(passfile, { host, port, database, user }) ?? '') : '');
  url.password = encodeURIComponent(password);
  url.pathname = '';
  url.search = '';
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

/**
 * The password of the first line of a libpq password file that matches the
 * connection (host:port:database:user:password, `*` for any, `\` escaping : and \).
 */
export function passwordFromPassfile(
  file: string,
  connection: { host: string; port: number; database: string; user: string },
): string | undefined {
  const wanted = [connection.host, String(connection.port), connection.database, connection.user];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const fields: string[] = [];
    let field = '';
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (c === '\\' && i + 1 < line.length) field += line[++i];
      else if (c === ':' && fields.length < 4) {
        fields.push(field);
        field = '';
      } else field += c;
    }
    fields.push(field);
    if (fields.length === 5 && wanted.every((value, i) => fields[i] === '*' || fields[i] === value))
      return fields[4];
  }
  return undefined;
}

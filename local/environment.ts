import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { findTarget, type PgbackrestTarget, parseConfig } from '../shared/core/config.ts';
import { archiveCommandOf, pgbackrestConfOf } from '../shared/host/pgbackrest-conf.ts';
import {
  asServerUser,
  externalPostgres,
  giveToServerUser,
  type LocalCluster,
  type PostgresServer,
  startPostgres,
} from './postgres.ts';
import { PROJECT_ROOT } from './runner.ts';
import { LOCAL_S3_CREDENTIALS, startLocalS3 } from './s3.ts';

/**
 * Everything the local runner needs, started on embedded defaults: a throwaway
 * PostgreSQL seeded with a sample kennel database (or DATABASE_URL), a local S3
 * whose data persists under .local/s3 (or S3_ENDPOINT_URL), and the environments
 * of the functions and of the "host".
 */

export const LOCAL_BUCKET = 'kennel-backups-local';
export const LOCAL_DATABASE = 'kennel_prod';

export interface LocalEnvironmentOptions {
  /** Root of local state: S3 data, the host's backup directory, histories, alerts. */
  dataDir: string;
  databaseUrl?: string | undefined;
  s3Endpoint?: string | undefined;
  /** CA certificate (PEM) of an external `s3Endpoint` over TLS with a private CA. */
  s3CaBundle?: string | undefined;
  bucket?: string;
  /** Sample data size for a throwaway cluster (1 ≈ a few MB). */
  seedScale?: number;
  /** Extra variables for the functions' environment (tests override the timeout, say). */
  functionEnv?: Record<string, string>;
}

export interface LocalEnvironment {
  postgres: PostgresServer;
  database: string;
  s3Endpoint: string;
  /** The CA certificate every client of the S3 endpoint trusts; empty for an external server with a public CA. */
  s3CaFile: string;
  bucket: string;
  /** The functions' environment: what serverless.yml sets in AWS. */
  functionEnv: Record<string, string>;
  /** The host's environment: credentials the scripts read, never see in their text. */
  hostEnv: Record<string, string>;
  paths: {
    backupDir: string;
    hostRoot: string;
    historyDir: string;
    alertsFile: string;
    /** The sample application's state, `running` or `stopped`, as its configured commands leave it. */
    applicationState: string;
    /** Where the commands after a files restore write what they did. */
    afterRestoreLog: string;
  };
  stop(): Promise<void>;
}

export function psql(server: PostgresServer, database: string, args: string[], input?: string): string {
  const bin = server.binDir ? join(server.binDir, 'psql') : 'psql';
  const result = spawnSync(bin, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', database, ...args], {
    env: { ...process.env, ...server.env },
    encoding: 'utf8',
    input,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`psql on ${database} failed: ${result.stderr}`);
  return result.stdout;
}

export function seedKennelDatabase(server: PostgresServer, database: string, scale: number): void {
  psql(server, 'postgres', ['-c', `CREATE DATABASE ${database}`]);
  psql(server, database, ['-f', join(PROJECT_ROOT, 'local/seed/schema.sql')]);
  psql(server, database, ['-v', `scale=${scale}`, '-f', join(PROJECT_ROOT, 'local/seed/data.sql')]);
}

/**
 * A small application host under `root`, laid out as the source document's
 * /opt/kennel and /etc, for the files backups. The .env holds a password made
 * up here, so that a configuration archive carries a secret as a real one does.
 */
export function seedHostFiles(root: string): Record<'configuration' | 'application' | 'static', string[]> {
  const files: Record<string, string> = {
    'opt/kennel/.env': `DATABASE_URL=postgres://kennel_user:${randomBytes(12).toString('hex')}@db:5432/kennel_prod\n`,
    'opt/kennel/.env.production': 'NODE_ENV=production\n',
    'opt/kennel/docker-compose.prod.yml':
      'services:\n  db:\n    image: postgres:15\n  app:\n    image: kennel-app\n',
    'opt/kennel/nginx.conf': 'server { listen 80; location / { proxy_pass http://app:3000; } }\n',
    'opt/kennel/ssl/kennel.crt': '-----BEGIN CERTIFICATE-----\nsample\n-----END CERTIFICATE-----\n',
    'opt/kennel/package.json': '{ "name": "kennel-app", "version": "1.0.0" }\n',
    'opt/kennel/src/app.ts': 'export const app = "kennel";\n',
    'opt/kennel/public/logo.svg': '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    'opt/kennel/.next/static/chunk.js': 'console.log("chunk");\n',
    'opt/kennel/.next/standalone/server.js': 'require("next");\n',
    'opt/kennel/node_modules/left-pad/index.js': 'module.exports = () => {};\n',
    'opt/kennel/.git/HEAD': 'ref: refs/heads/main\n',
    'opt/kennel/coverage/index.html': '<html></html>\n',
    'opt/kennel/dist/app.js': 'built\n',
    'etc/nginx/nginx.conf': 'events {}\n',
    'etc/ssl/openssl.cnf': '[req]\n',
    'etc/fail2ban/jail.local': '[sshd]\nenabled = true\n',
    'etc/ufw/ufw.conf': 'ENABLED=yes\n',
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content, { mode: 0o600 });
  }
  const at = (...paths: string[]) => paths.map((p) => join(root, p));
  return {
    configuration: at(
      'opt/kennel/.env',
      'opt/kennel/.env.production',
      'opt/kennel/docker-compose.prod.yml',
      'opt/kennel/nginx.conf',
      'opt/kennel/ssl',
      'etc/nginx',
      'etc/ssl',
      'etc/fail2ban',
      'etc/ufw',
    ),
    application: at('opt/kennel'),
    static: at('opt/kennel/public', 'opt/kennel/.next/static', 'opt/kennel/.next/standalone'),
  };
}

export async function startLocalEnvironment(options: LocalEnvironmentOptions): Promise<LocalEnvironment> {
  const bucket = options.bucket ?? LOCAL_BUCKET;
  const backupDir = join(options.dataDir, 'host', 'backup');
  const paths = {
    backupDir,
    hostRoot: join(options.dataDir, 'host', 'root'),
    historyDir: join(options.dataDir, 'executions'),
    alertsFile: join(options.dataDir, 'alerts.log'),
    applicationState: join(options.dataDir, 'host', 'application.state'),
    afterRestoreLog: join(options.dataDir, 'host', 'after-restore.log'),
  };
  mkdirSync(backupDir, { recursive: true });
  const files = seedHostFiles(paths.hostRoot);
  writeFileSync(paths.applicationState, 'running\n');

  const s3 = options.s3Endpoint
    ? { endpoint: options.s3Endpoint, caFile: options.s3CaBundle ?? '', stop: async () => {} }
    : await startLocalS3(join(options.dataDir, 's3'), bucket, join(options.dataDir, 'tls'));

  let postgres: PostgresServer;
  let cluster: LocalCluster | undefined;
  let database: string;
  if (options.databaseUrl) {
    const external = externalPostgres(options.databaseUrl);
    postgres = external;
    database = external.database;
  } else {
    cluster = await startPostgres();
    postgres = cluster;
    database = LOCAL_DATABASE;
    try {
      seedKennelDatabase(postgres, database, options.seedScale ?? 1);
    } catch (error) {
      await postgres.stop();
      await s3.stop();
      throw error;
    }
  }
  const pgbackrest = cluster && s3.caFile ? pgbackrestSettings(cluster, s3.caFile) : undefined;
  const caBundle = s3.caFile;

  Object.assign(process.env, LOCAL_S3_CREDENTIALS);
  const functionEnv: Record<string, string> = {
    STAGE: 'local',
    AWS_REGION: 'us-east-1',
    BACKUP_BUCKET: bucket,
    BACKUP_TARGETS: JSON.stringify([
      {
        name: 'local',
        instanceIds: ['i-00000000000000000'],
        database,
        postgres: { mode: 'host' },
        ...(pgbackrest ? { pgbackrest } : {}),
        backupDir,
        files,
        // The sample application is a state file: stopping and starting it is observable.
        application: {
          stop: [`echo stopped > ${paths.applicationState}`],
          start: [`echo running > ${paths.applicationState}`],
        },
        afterFilesRestore: {
          application: [`echo "application restored: reinstall, build, restart" >> ${paths.afterRestoreLog}`],
          configuration: [`echo "configuration restored: reload" >> ${paths.afterRestoreLog}`],
        },
      },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/kennel-backup/local/alert-webhook-url',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/local/restore-check-database-url',
    S3_ENDPOINT_URL: s3.endpoint,
    ...(caBundle ? { S3_CA_BUNDLE: caBundle } : {}),
    POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? 'WARN',
    ...options.functionEnv,
  };
  const hostEnv: Record<string, string> = {
    PATH: [postgres.binDir, process.env.PATH ?? '/usr/bin:/bin'].filter(Boolean).join(':'),
    HOME: process.env.HOME ?? '/tmp',
    LANG: 'C.UTF-8',
    ...postgres.env,
    ...LOCAL_S3_CREDENTIALS,
    ...PGBACKREST_S3_KEYS,
    AWS_DEFAULT_REGION: 'us-east-1',
    // Local S3 servers keep the CLI's default streaming checksum framing as part of the object.
    AWS_REQUEST_CHECKSUM_CALCULATION: 'when_required',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'when_required',
    // The CLI trusts the local S3's self-signed certificate through this, as pgBackRest does through its CA file.
    ...(caBundle ? { AWS_CA_BUNDLE: caBundle } : {}),
  };
  if (cluster && pgbackrest) {
    try {
      await startArchiving(cluster, functionEnv, pgbackrest);
    } catch (error) {
      await s3.stop();
      await cluster.stop();
      throw error;
    }
  }
  return {
    postgres,
    database,
    s3Endpoint: s3.endpoint,
    s3CaFile: caBundle,
    bucket,
    functionEnv,
    hostEnv,
    paths,
    async stop() {
      await s3.stop();
      await postgres.stop();
    },
  };
}

/**
 * pgBackRest's keys for the local S3 (s3rver's public ones): on AWS the instance
 * role signs and no key exists anywhere.
 */
const PGBACKREST_S3_KEYS = {
  PGBACKREST_REPO1_S3_KEY: LOCAL_S3_CREDENTIALS.AWS_ACCESS_KEY_ID,
  PGBACKREST_REPO1_S3_KEY_SECRET: LOCAL_S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY,
};

/**
 * The local cluster's pgBackRest settings: its files live in the cluster's own
 * directory, owned by the server user (who runs archive_command), with a copy
 * of the local S3's certificate it can read.
 */
function pgbackrestSettings(cluster: LocalCluster, caFile: string): PgbackrestTarget {
  const work = join(cluster.dir, 'pgbackrest');
  mkdirSync(join(work, 'lock'), { recursive: true });
  mkdirSync(join(work, 'log'), { recursive: true });
  copyFileSync(caFile, join(work, 'ca.pem'));
  giveToServerUser(work);
  return {
    dataDirectory: cluster.dataDir,
    port: cluster.port,
    socketPath: cluster.socketDir,
    user: cluster.user,
    osUser: process.getuid?.() === 0 ? 'postgres' : userInfo().username,
    configFile: join(work, 'pgbackrest.conf'),
    lockPath: join(work, 'lock'),
    logPath: join(work, 'log'),
    caFile: join(work, 'ca.pem'),
    processMax: 2,
    // The backup directory is the test process's (private to root); the server user reaches this one.
    scratchDirectory: join(cluster.dir, 'restore-test'),
  };
}

/**
 * Turns on WAL archiving to the local S3: the project's pgbackrest.conf,
 * archive_mode with pgBackRest's archive-push, a restart (archive_mode needs
 * one; the postmaster hands its environment, the local S3's keys, to
 * archive_command), and the stanza.
 */
async function startArchiving(
  cluster: LocalCluster,
  functionEnv: Record<string, string>,
  pg: PgbackrestTarget,
): Promise<void> {
  const config = parseConfig(functionEnv);
  const target = findTarget(config, 'local');
  if (!target) throw new Error('The local target is missing from BACKUP_TARGETS.');
  writeFileSync(pg.configFile, pgbackrestConfOf(config, target));
  giveToServerUser(pg.configFile);
  const set = (name: string, value: string) =>
    psql(cluster, 'postgres', ['-c', `ALTER SYSTEM SET ${name} = '${value.replaceAll("'", "''")}'`]);
  set('archive_mode', 'on');
  set('archive_command', archiveCommandOf(target));
  set('archive_timeout', '60');
  cluster.restart(PGBACKREST_S3_KEYS);
  // Asynchronous: the local S3 answers from this process, so a blocked event loop would stall pgBackRest.
  const [cmd, argv] = asServerUser('pgbackrest', [
    `--config=${pg.configFile}`,
    `--stanza=${target.name}`,
    'stanza-create',
  ]);
  try {
    await promisify(execFile)(cmd, argv, {
      cwd: tmpdir(),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...PGBACKREST_S3_KEYS, PGPASSWORD: cluster.password },
    });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`pgbackrest stanza-create for the local cluster failed: ${stdout ?? ''}${stderr ?? ''}`);
  }
}

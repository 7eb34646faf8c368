import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { runId as makeRunId } from '../shared/catalog/keys.ts';
import { findTarget, type PgbackrestTarget, parseConfig } from '../shared/core/config.ts';
import { parseInput } from '../shared/core/input.ts';
import { RESULT_LINE } from '../shared/host/command-stage.ts';
import { tail } from '../shared/host/commands.ts';
import {
  describePreparation,
  lackingOf,
  PREPARE_HOST_COMMANDS,
  type PrepareResult,
  prepareResultSchema,
} from '../shared/host/prepare.ts';
import { renderHostCommand } from '../shared/host/scripts.ts';
import { runHostScript } from './host.ts';
import {
  externalPostgres,
  type LocalCluster,
  type OpenedCluster,
  openLocalCluster,
  type PostgresServer,
  readIfExists,
  serverUserDir,
} from './postgres.ts';
import { PROJECT_ROOT } from './runner.ts';
import { LOCAL_S3_CREDENTIALS, type LocalS3, startLocalS3 } from './s3.ts';

/**
 * Everything the local runner needs, on embedded defaults: a PostgreSQL cluster
 * kept under the state directory, seeded once with a sample kennel database and
 * archiving its WAL to the local S3 (or DATABASE_URL, with PGDATA for the
 * physical kinds), a local S3 whose data persists there too (or S3_ENDPOINT_URL),
 * and the environments of the functions and of the "host".
 */

export const LOCAL_BUCKET = 'kennel-backups-local';
/** The local vault: the bucket's replica on the same local S3 (`<bucket>-vault`), as the vault region's bucket in AWS. */
export const vaultBucketOf = (bucket: string) => `${bucket}-vault`;
export const LOCAL_DATABASE = 'kennel_prod';

export interface LocalEnvironmentOptions {
  /** Root of local state: the cluster, S3 data, the host's backup directory, histories, alerts. */
  dataDir: string;
  databaseUrl?: string | undefined;
  /** With `databaseUrl`: that cluster's data directory on this machine, for the physical kinds. */
  pgData?: string | undefined;
  s3Endpoint?: string | undefined;
  /** CA certificate (PEM) of an external `s3Endpoint` over TLS with a private CA. */
  s3CaBundle?: string | undefined;
  /** With `s3Endpoint`: the bucket it replicates `bucket` to, the vault (a running stack's local S3: `<bucket>-vault`). */
  s3VaultBucket?: string | undefined;
  bucket?: string;
  /** Sample data size when the cluster is first made (1 ≈ a few MB). */
  seedScale?: number;
  /** Extra variables for the functions' environment (tests override the timeout, say). */
  functionEnv?: Record<string, string>;
  /** Start the local S3 so that it outlives this process (`npm run local -- up`). */
  detached?: boolean;
  /** Where a long step says what it does (the seeding): stderr for the CLI; nowhere by default. */
  progress?: (line: string) => void;
  /**
   * A local vault (true by default): the local S3 replicates every object it is
   * sent to `<bucket>-vault`, as S3 replicates to the vault's region. The tests
   * turn it off but where the vault is the point: it doubles every write,
   * pgBackRest's WAL and backups included, on the machine's two cores.
   */
  vault?: boolean;
}

/** Whether the cluster can be backed up by the physical kinds, and if not what it lacks (one line each). */
export interface PhysicalReadiness {
  ready: boolean;
  lacking: string[];
}

export interface LocalEnvironment {
  postgres: PostgresServer;
  database: string;
  /** The data directory of the cluster the physical kinds back up; undefined for DATABASE_URL alone. */
  pgData: string | undefined;
  physical: PhysicalReadiness;
  s3Endpoint: string;
  /** The CA certificate every client of the S3 endpoint trusts; empty for an external server with a public CA. */
  s3CaFile: string;
  /** The local S3 server's process; 0 for an external endpoint. */
  s3Pid: number;
  bucket: string;
  /** The vault's bucket, to which the local S3 replicates every object of `bucket`; none with an external S3. */
  vaultBucket: string | undefined;
  /** The functions' environment: what serverless.yml sets in AWS. */
  functionEnv: Record<string, string>;
  /** The host's environment: credentials the scripts read, never see in their text. */
  hostEnv: Record<string, string>;
  paths: {
    backupDir: string;
    hostRoot: string;
    /** The host's TMPDIR: its scripts' work directories, apart from every other stack's. */
    hostTmp: string;
    historyDir: string;
    alertsFile: string;
    /** The sample application's state, `running` or `stopped`, as its configured commands leave it. */
    applicationState: string;
    /** Where the commands after a files restore write what they did. */
    afterRestoreLog: string;
  };
  /** Stops what this call started; a stack that was running already is left running. */
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
  return hostFileSets(root);
}

/** The file sets of the host tree under `root`, as the source document lists them. */
function hostFileSets(root: string): Record<'configuration' | 'application' | 'static', string[]> {
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

/**
 * The local stack: the local S3 (or `s3Endpoint`), the PostgreSQL cluster kept
 * under `dataDir/postgres` and seeded once (or `databaseUrl`), the host tree,
 * and the functions' and host's environments. What is not running yet is
 * started, and `stop()` stops only that; the local cluster is prepared for
 * pgBackRest by the prepare-host host script whenever anything was started.
 */
export async function startLocalEnvironment(options: LocalEnvironmentOptions): Promise<LocalEnvironment> {
  const { dataDir } = options;
  const bucket = options.bucket ?? LOCAL_BUCKET;
  const backupDir = join(dataDir, 'host', 'backup');
  const paths = {
    backupDir,
    hostRoot: join(dataDir, 'host', 'root'),
    historyDir: join(dataDir, 'executions'),
    hostTmp: join(dataDir, 'host', 'tmp'),
    alertsFile: join(dataDir, 'alerts.log'),
    applicationState: join(dataDir, 'host', 'application.state'),
    afterRestoreLog: join(dataDir, 'host', 'after-restore.log'),
  };
  mkdirSync(backupDir, { recursive: true });
  mkdirSync(paths.hostTmp, { recursive: true });
  // Seeded once: a files restore's result stays for the next run to see.
  const files = existsSync(paths.hostRoot) ? hostFileSets(paths.hostRoot) : seedHostFiles(paths.hostRoot);
  if (!existsSync(paths.applicationState)) writeFileSync(paths.applicationState, 'running\n');

  const started: (() => Promise<void>)[] = [];
  // Each is stopped even when one before it fails (a cluster that is already gone), so
  // that no local S3 outlives the stack; the first failure is thrown once all were tried.
  const stop = async () => {
    const failures: unknown[] = [];
    for (const stopOne of started.splice(0).reverse())
      await stopOne().catch((e: unknown) => failures.push(e));
    if (failures.length > 0) throw failures[0];
  };
  // The local S3 comes up in its own process while initdb and the seeding run here.
  const remembered = Number(readIfExists(join(dataDir, S3_PORT_FILE)).trim());
  const s3Starting: Promise<Omit<LocalS3, 'stop'> & Partial<LocalS3>> = options.s3Endpoint
    ? Promise.resolve({ endpoint: options.s3Endpoint, caFile: options.s3CaBundle ?? '', pid: 0 })
    : startLocalS3(join(dataDir, 's3'), bucket, join(dataDir, 'tls'), {
        ...(options.vault === false ? {} : { vaultBucket: vaultBucketOf(bucket) }),
        ...(remembered > 0 ? { port: remembered } : {}),
        ...(options.detached ? { detached: { logFile: join(dataDir, 's3.log') } } : {}),
      });
  if (!options.s3Endpoint) {
    s3Starting.catch(() => {}); // awaited below; a failure is thrown there
    started.push(async () => {
      await (await s3Starting.catch(() => undefined))?.stop?.();
    });
  }
  try {
    let postgres: PostgresServer;
    let database: string;
    let cluster: OpenedCluster | undefined;
    let external: (PostgresServer & { database: string }) | undefined;
    if (options.databaseUrl) {
      external = externalPostgres(options.databaseUrl);
      postgres = external;
      database = external.database;
    } else {
      const opened = await openLocalCluster(serverUserDir(dataDir, 'postgres'), { env: PGBACKREST_S3_KEYS });
      cluster = opened;
      if (opened.started) started.push(() => opened.stop());
      seedOnce(opened, LOCAL_DATABASE, options.seedScale ?? 1, options.progress);
      postgres = opened;
      database = LOCAL_DATABASE;
    }
    const s3 = await s3Starting;
    if (!options.s3Endpoint) writeFileSync(join(dataDir, S3_PORT_FILE), `${new URL(s3.endpoint).port}\n`);

    let pgbackrest: PgbackrestTarget | undefined;
    const pgData = cluster ? cluster.dataDir : options.pgData && resolve(options.pgData);
    if (s3.caFile && cluster) pgbackrest = pgbackrestSettings(cluster, s3.caFile);
    if (s3.caFile && external && pgData)
      pgbackrest = externalPgbackrest(external, pgData, dataDir, s3.caFile);

    Object.assign(process.env, LOCAL_S3_CREDENTIALS);
    const vaultBucket = options.s3Endpoint
      ? options.s3VaultBucket
      : options.vault === false
        ? undefined
        : vaultBucketOf(bucket);
    const functionEnv = localFunctionEnv(options, {
      bucket,
      vaultBucket,
      database,
      s3,
      pgbackrest,
      backupDir,
      files,
      paths,
    });
    const hostEnv = localHostEnv(postgres, s3.caFile, paths.hostTmp);

    let physical: PhysicalReadiness;
    if (!pgbackrest) {
      physical = { ready: false, lacking: [withoutPgbackrest(options, postgres, database, s3.caFile)] };
    } else if (cluster) {
      // A stack found running was prepared when it started.
      if (!options.s3Endpoint || cluster.started) await prepareLocalCluster(cluster, functionEnv, hostEnv);
      physical = { ready: true, lacking: [] };
    } else {
      physical = await readinessOf(functionEnv, hostEnv);
    }
    return {
      postgres,
      database,
      pgData,
      physical,
      s3Endpoint: s3.endpoint,
      s3CaFile: s3.caFile,
      s3Pid: s3.pid,
      bucket,
      vaultBucket,
      functionEnv,
      hostEnv,
      paths,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Where the local S3's port is kept between runs: pgbackrest.conf names it, so it stays while it is free. */
const S3_PORT_FILE = 's3.port';

/** The name of the one target of the local stack: the stanza and the keys' folder. */
export const LOCAL_TARGET = 'local';

function localFunctionEnv(
  options: LocalEnvironmentOptions,
  parts: {
    bucket: string;
    vaultBucket: string | undefined;
    database: string;
    s3: { endpoint: string; caFile: string };
    pgbackrest: PgbackrestTarget | undefined;
    backupDir: string;
    files: Record<'configuration' | 'application' | 'static', string[]>;
    paths: LocalEnvironment['paths'];
  },
): Record<string, string> {
  const { paths, pgbackrest } = parts;
  return {
    STAGE: 'local',
    AWS_REGION: 'us-east-1',
    BACKUP_BUCKET: parts.bucket,
    BACKUP_TARGETS: JSON.stringify([
      {
        name: LOCAL_TARGET,
        instanceIds: ['i-00000000000000000'],
        database: parts.database,
        postgres: { mode: 'host' },
        ...(pgbackrest ? { pgbackrest } : {}),
        backupDir: parts.backupDir,
        files: parts.files,
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
    // The vault replica in the same "region": one local S3 serves both buckets.
    ...(parts.vaultBucket ? { VAULT_BUCKET: parts.vaultBucket, VAULT_REGION: 'us-east-1' } : {}),
    S3_ENDPOINT_URL: parts.s3.endpoint,
    ...(parts.s3.caFile ? { S3_CA_BUNDLE: parts.s3.caFile } : {}),
    POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? 'WARN',
    ...options.functionEnv,
  };
}

function localHostEnv(postgres: PostgresServer, caBundle: string, tmpDir: string): Record<string, string> {
  return {
    PATH: [postgres.binDir, process.env.PATH ?? '/usr/bin:/bin'].filter(Boolean).join(':'),
    HOME: process.env.HOME ?? '/tmp',
    TMPDIR: tmpDir,
    LANG: 'C.UTF-8',
    ...postgres.env,
    ...LOCAL_S3_CREDENTIALS,
    ...PGBACKREST_S3_KEYS,
    AWS_DEFAULT_REGION: 'us-east-1',
    // Local S3 servers keep the CLI's default streaming checksum framing as part of the object.
    AWS_REQUEST_CHECKSUM_CALCULATION: 'when_required',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'when_required',
    // The host's AWS CLI and boto3 (s3_put) trust the local S3's self-signed certificate through this, as pgBackRest does through its CA file.
    ...(caBundle ? { AWS_CA_BUNDLE: caBundle } : {}),
  };
}

/**
 * pgBackRest's keys for the local S3 (s3rver's public ones): on AWS the instance
 * role signs and no key exists anywhere.
 */
export const PGBACKREST_S3_KEYS = {
  PGBACKREST_REPO1_S3_KEY: LOCAL_S3_CREDENTIALS.AWS_ACCESS_KEY_ID,
  PGBACKREST_REPO1_S3_KEY_SECRET: LOCAL_S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY,
};

/** The sample database, made on the cluster's first run (again if that run stopped half way). */
export function seedOnce(
  cluster: OpenedCluster,
  database: string,
  scale: number,
  progress: (line: string) => void = () => {},
): void {
  const marker = join(cluster.dir, 'seeded');
  if (existsSync(marker)) return;
  progress(`Seeding the sample database ${database} (SEED_SCALE=${scale}, about ${scale * 25} MB) …`);
  psql(cluster, 'postgres', ['-c', `DROP DATABASE IF EXISTS ${database}`]);
  seedKennelDatabase(cluster, database, scale);
  writeFileSync(marker, `${database} scale ${scale}\n`);
}

/**
 * The local cluster's pgBackRest settings: its files live in the cluster's own
 * directory, owned by the server user (who runs archive_command), with a copy
 * of the local S3's certificate it can read. prepare-host writes the conf and
 * makes the lock and log directories.
 */
function pgbackrestSettings(cluster: LocalCluster, caFile: string): PgbackrestTarget {
  const work = join(cluster.dir, 'pgbackrest');
  return {
    dataDirectory: cluster.dataDir,
    port: cluster.port,
    socketPath: cluster.socketDir,
    user: cluster.user,
    osUser: process.getuid?.() === 0 ? 'postgres' : userInfo().username,
    ...pgbackrestFiles(work, caFile, process.getuid?.() === 0 ? 'postgres' : undefined),
    processMax: 2,
    // The backup directory is the test process's (private to root); the server user reaches this one.
    scratchDirectory: join(cluster.dir, 'restore-test'),
  };
}

/**
 * pgBackRest's settings for a cluster of one's own on this machine (DATABASE_URL
 * and PGDATA): it runs as the data directory's owner and connects through the
 * server's socket as DATABASE_URL's role, its files under the state directory.
 */
function externalPgbackrest(
  server: PostgresServer & { database: string },
  pgData: string,
  dataDir: string,
  caFile: string,
): PgbackrestTarget | undefined {
  if (!existsSync(pgData)) return undefined;
  const osUser = execFileSync('id', ['-nu', String(statSync(pgData).uid)], { encoding: 'utf8' }).trim();
  const work = serverUserDir(dataDir, 'pgbackrest', osUser);
  let socketPath = '/var/run/postgresql';
  try {
    socketPath =
      psql(server, server.database, ['-A', '-t', '-c', 'SHOW unix_socket_directories'])
        .split(',')[0]
        ?.trim() || socketPath;
  } catch {
    // Debian's default, where the server does not say.
  }
  return {
    dataDirectory: pgData,
    port: server.port,
    socketPath,
    user: server.user,
    osUser,
    ...pgbackrestFiles(work, caFile, process.getuid?.() === 0 ? osUser : undefined),
    processMax: 2,
  };
}

/** The conf's, lock's and log's paths under `work`, and a copy of the S3 certificate the OS user can read. */
function pgbackrestFiles(work: string, caFile: string, owner: string | undefined) {
  mkdirSync(work, { recursive: true });
  const ca = join(work, 'ca.pem');
  copyFileSync(caFile, ca);
  if (owner) execFileSync('chown', [owner, work, ca]);
  return {
    configFile: join(work, 'pgbackrest.conf'),
    lockPath: join(work, 'lock'),
    logPath: join(work, 'log'),
    caFile: ca,
  };
}

/** A run id for the preparations the local stack runs itself, outside any workflow. */
const localRunId = () => makeRunId(new Date().toISOString(), 'local-stack');

/**
 * Runs host/prepare-host.sh on this machine, as the workflow's host command
 * would (the same rendered text, with bash), and reads its result.
 */
export async function runPrepareHost(
  functionEnv: Record<string, string>,
  hostEnv: Record<string, string>,
  dryRun: boolean,
): Promise<PrepareResult> {
  const config = parseConfig(functionEnv);
  const target = findTarget(config, LOCAL_TARGET);
  if (!target) throw new Error('The local target is missing from BACKUP_TARGETS.');
  const command = PREPARE_HOST_COMMANDS['prepare-host'];
  const script = renderHostCommand(config, target, command, {
    script: 'prepare-host',
    plan: { target: target.name, runId: localRunId(), dryRun },
  });
  const run = await runHostScript(hostEnv, script);
  const line = RESULT_LINE.exec(run.stdout)?.[1];
  if (run.code !== 0 || line === undefined)
    throw new Error(
      `prepare-host ${dryRun ? '(dry run) ' : ''}failed: ${tail(run.stderr) || tail(run.stdout)}`,
    );
  return parseInput(prepareResultSchema, JSON.parse(line), "prepare-host's result");
}

/**
 * Readies the local cluster for pgBackRest with the host script itself: a run
 * (pgbackrest.conf, the settings), a restart when one is needed (the postmaster
 * gets the local S3's keys), and a run again (stanza-create, check).
 */
async function prepareLocalCluster(
  cluster: LocalCluster,
  functionEnv: Record<string, string>,
  hostEnv: Record<string, string>,
): Promise<void> {
  let result = await runPrepareHost(functionEnv, hostEnv, false);
  if (result.restartNeeded) {
    cluster.restart();
    result = await runPrepareHost(functionEnv, hostEnv, false);
  }
  if (result.check !== 'passed')
    throw new Error(
      `prepare-host did not ready the local cluster:\n${describePreparation(LOCAL_TARGET, result)}`,
    );
}

/** A cluster of one's own (DATABASE_URL and PGDATA): what prepare-host's dry run finds missing. */
async function readinessOf(
  functionEnv: Record<string, string>,
  hostEnv: Record<string, string>,
): Promise<PhysicalReadiness> {
  try {
    const lacking = lackingOf(LOCAL_TARGET, await runPrepareHost(functionEnv, hostEnv, true));
    return { ready: lacking.length === 0, lacking };
  } catch (error) {
    return { ready: false, lacking: [(error as Error).message] };
  }
}

/** Why a server has no pgBackRest settings here: what to set instead. */
function withoutPgbackrest(
  options: LocalEnvironmentOptions,
  server: PostgresServer,
  database: string,
  caFile: string,
): string {
  if (!caFile)
    return 'a local S3, or AWS_CA_BUNDLE with S3_ENDPOINT_URL: pgBackRest speaks to S3 over HTTPS only, with a CA it is given';
  if (options.pgData)
    return `PGDATA=${options.pgData} is no directory on this machine: set PGDATA to the data directory of the cluster DATABASE_URL names`;
  let reported = '';
  try {
    reported = psql(server, database, ['-A', '-t', '-c', 'SHOW data_directory']).trim();
  } catch {
    // Only a superuser, or pg_read_all_settings, may read it.
  }
  return `PGDATA, the data directory of the cluster DATABASE_URL names, on this machine${reported ? ` (the server says ${reported})` : ''}: set it beside DATABASE_URL`;
}

/**
 * The one refusal of the physical kinds for a cluster not ready for them:
 * everything it lacks, and how to give it.
 */
export function physicalKindsRefusal(lacking: string[]): string {
  return [
    "The physical kinds (incremental, transaction-logs, and full's pgBackRest backup) need a cluster ready for pgBackRest; this one lacks:",
    ...lacking.map((l) => `  - ${l}`),
    'prepare-host gives it what it lacks: `npm run local -- start prepare-host` with the same DATABASE_URL and PGDATA writes pgbackrest.conf and sets the settings; restart PostgreSQL with PGBACKREST_REPO1_S3_KEY=S3RVER and PGBACKREST_REPO1_S3_KEY_SECRET=S3RVER in its environment (archive_command pushes WAL to the local S3 with them), then start prepare-host again: it creates the stanza and checks archiving.',
  ].join('\n');
}

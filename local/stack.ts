import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  LOCAL_TARGET,
  type LocalEnvironment,
  type LocalEnvironmentOptions,
  startLocalEnvironment,
} from './environment.ts';
import { removeServerUserDir, serverUserDir, stopLocalCluster } from './postgres.ts';
import { isLocalS3, stopLocalS3 } from './s3.ts';

/**
 * The local stack left running between commands (`npm run local -- up`, `down`,
 * `reset`): the cluster under the state directory (pg_ctl keeps it running on
 * its own), the local S3 as a detached process, and `stack.json` saying where
 * they are. `start` uses it when it runs.
 */

const STATE_FILE = 'stack.json';
/** libpq's password file for the stack's cluster: the URL `up` prints names it instead of holding the password. */
const PASSFILE = 'pgpass';

interface StackState {
  /** The local S3; `vaultBucket`, where it replicates the bucket to (absent in a stack older than it: no vault). */
  s3: { pid: number; endpoint: string; caFile: string; vaultBucket?: string | undefined };
  /** The local cluster's postmaster (pg_ctl runs it; `down` stops it with pg_ctl); null for DATABASE_URL. */
  postgres: { pid: number; port: number; pgData: string } | null;
  startedAt: string;
}

/** What `up` prints, as one JSON line: where everything is. No secret: the password stays in `pgpassFile`. */
export interface StackInfo {
  databaseUrl: string;
  pgData: string | null;
  pgpassFile: string | null;
  s3Endpoint: string;
  s3CaFile: string;
  bucket: string;
  stanza: string;
  physical: LocalEnvironment['physical'];
  stateFile: string;
}

/** The state of a stack whose local S3 still runs; undefined when none does. */
export function runningStack(dataDir: string): StackState | undefined {
  let state: StackState;
  try {
    state = JSON.parse(readFileSync(join(dataDir, STATE_FILE), 'utf8')) as StackState;
  } catch {
    return undefined;
  }
  return isLocalS3(state.s3.pid, join(dataDir, 's3')) ? state : undefined;
}

/** The options that make startLocalEnvironment use a running stack's S3 rather than start one. */
function onRunning(options: LocalEnvironmentOptions, state: StackState | undefined): LocalEnvironmentOptions {
  return state && !options.s3Endpoint
    ? {
        ...options,
        s3Endpoint: state.s3.endpoint,
        s3CaBundle: state.s3.caFile,
        s3VaultBucket: state.s3.vaultBucket,
      }
    : options;
}

/**
 * For `start`: the running stack, used as it is (its `stop()` leaves it
 * running), or a stack started for the run and stopped by `stop()`.
 */
export async function openLocalStack(
  options: LocalEnvironmentOptions,
): Promise<{ environment: LocalEnvironment; running: boolean }> {
  const state = runningStack(options.dataDir);
  return {
    environment: await startLocalEnvironment(onRunning(options, state)),
    running: state !== undefined,
  };
}

/**
 * Starts the stack and leaves it running (idempotent: a running stack is
 * reported as it is, its cluster started again if it was stopped).
 */
export async function upLocalStack(options: LocalEnvironmentOptions): Promise<StackInfo> {
  const { dataDir } = options;
  const running = runningStack(dataDir);
  const environment = await startLocalEnvironment({ ...onRunning(options, running), detached: true });
  const { postgres, database, pgData } = environment;
  const state: StackState = {
    s3: running?.s3 ?? {
      pid: environment.s3Pid,
      endpoint: environment.s3Endpoint,
      caFile: environment.s3CaFile,
      vaultBucket: environment.vaultBucket,
    },
    postgres:
      options.databaseUrl || !pgData
        ? null
        : {
            // postmaster.pid: its first line is the postmaster's pid.
            pid: Number(readFileSync(join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]),
            port: postgres.port,
            pgData,
          },
    startedAt: running?.startedAt ?? new Date().toISOString(),
  };
  writeFileSync(join(dataDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  let databaseUrl: string;
  let pgpassFile: string | null = null;
  if (options.databaseUrl) {
    const url = new URL(options.databaseUrl);
    url.password = '';
    databaseUrl = url.toString();
  } else {
    pgpassFile = join(dataDir, PASSFILE);
    writeFileSync(pgpassFile, `${postgres.host}:${postgres.port}:*:${postgres.user}:${postgres.password}\n`, {
      mode: 0o600,
    });
    databaseUrl = `postgres://${postgres.user}@${postgres.host}:${postgres.port}/${database}?passfile=${encodeURIComponent(pgpassFile)}`;
  }
  return {
    databaseUrl,
    pgData: environment.pgData ?? null,
    pgpassFile,
    s3Endpoint: environment.s3Endpoint,
    s3CaFile: environment.s3CaFile,
    bucket: environment.bucket,
    stanza: LOCAL_TARGET,
    physical: environment.physical,
    stateFile: join(dataDir, STATE_FILE),
  };
}

/** Stops the stack (idempotent); says what it stopped. */
export async function downLocalStack(dataDir: string): Promise<string[]> {
  const stopped: string[] = [];
  // PostgreSQL first: at shutdown it archives the WAL it has left, to the local S3.
  if (existsSync(join(dataDir, 'postgres')) && stopLocalCluster(serverUserDir(dataDir, 'postgres')))
    stopped.push('PostgreSQL');
  const state = runningStack(dataDir);
  if (state) {
    await stopLocalS3(state.s3.pid, join(dataDir, 's3'));
    stopped.push(`the local S3 (pid ${state.s3.pid})`);
  }
  rmSync(join(dataDir, STATE_FILE), { force: true });
  rmSync(join(dataDir, PASSFILE), { force: true });
  return stopped;
}

/** What the local stack keeps in its state directory; `reset` deletes these and nothing else there. */
const STATE_ENTRIES = [
  'postgres',
  'pgbackrest',
  's3',
  'tls',
  'host',
  'executions',
  'alerts.log',
  's3.port',
  's3.log',
  STATE_FILE,
  PASSFILE,
  // `npm run local -- report` copies each report here to be opened.
  'reports',
];

/** Stops the stack and deletes its state: the cluster, the S3 data, the host tree, the histories. */
export async function resetLocalStack(dataDir: string): Promise<string[]> {
  const stopped = await downLocalStack(dataDir);
  for (const entry of STATE_ENTRIES) removeServerUserDir(dataDir, entry);
  // The directory itself only when nothing of anyone else's is left in it.
  if (existsSync(dataDir) && readdirSync(dataDir).length === 0) rmdirSync(dataDir);
  return stopped;
}

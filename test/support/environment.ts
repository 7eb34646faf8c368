import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { inject, vi } from 'vitest';
import {
  type LocalEnvironment,
  type LocalEnvironmentOptions,
  psql,
  startLocalEnvironment,
} from '../../local/environment.ts';
import { type LocalHost, localHost } from '../../local/host.ts';
import { type ExecutionRecord, type RunOptions, runWorkflow } from '../../local/runner.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { copySeededCluster } from './seeded-cluster.ts';

/** One local world per test file: a seeded PostgreSQL, a local S3, a host directory. */
export interface TestWorld {
  env: LocalEnvironment;
  s3: S3Client;
  catalog: Catalog;
  sql(database: string, query: string): string;
  stop(): Promise<void>;
}

/** `options` change the local stack, e.g. an S3 the test starts and stops itself. */
export async function startWorld(options: Partial<LocalEnvironmentOptions> = {}): Promise<TestWorld> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kennel-backup-test-'));
  // The cluster lives inside it, and its server user must get through.
  chmodSync(dataDir, 0o711);
  // The sample cluster the integration tier's global setup made once, copied (not made again here).
  const seeded = options.seedScale === undefined ? inject('seededCluster') : undefined;
  if (seeded) copySeededCluster(seeded, dataDir);
  // No local vault unless asked for (local/environment.ts): it doubles every write to the local S3.
  const env = await startLocalEnvironment({ vault: false, ...options, dataDir });
  const s3 = createS3Client(parseConfig(env.functionEnv));
  return {
    env,
    s3,
    catalog: new Catalog(s3, env.bucket),
    sql: (database, query) => psql(env.postgres, database, ['-A', '-t', '-c', query]).trim(),
    async stop() {
      await env.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface Run {
  record: ExecutionRecord;
  host: LocalHost;
  /** Alerts sent during this run, as JSON objects. */
  alerts: { state: string; error: string; cause: string; text: string }[];
  /** Everything this run wrote where a person or a log could read it. */
  visibleText: string;
}

/**
 * Runs a workflow with fresh handler modules, so each run reads the environment
 * it is given (a short timeout, a dead S3 endpoint) the way a cold start would.
 */
export async function runIn(
  world: TestWorld,
  options: Partial<RunOptions> & {
    functionEnv?: Record<string, string>;
    hostEnv?: Record<string, string>;
    hostEnvByInstance?: Record<string, Record<string, string>>;
    hostOptions?: Parameters<typeof localHost>[3];
    /** The restore check's URL (the cluster's superuser's by default). */
    databaseUrl?: string;
  } = {},
): Promise<Run> {
  const { functionEnv, hostEnv, hostEnvByInstance, hostOptions, databaseUrl, ...runOptions } = options;
  Object.assign(process.env, world.env.functionEnv, functionEnv);
  vi.resetModules();
  const host = localHost({ ...world.env.hostEnv, ...hostEnv }, hostEnvByInstance, world.s3, hostOptions);
  const alertsBefore = safeRead(world.env.paths.alertsFile).length;
  const logs: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    logs.push(String(chunk));
    return true;
  });
  const printed: string[] = [];
  let record: ExecutionRecord;
  try {
    record = await runWorkflow(
      {
        workflow: 'database-backup',
        input: {},
        historyDir: world.env.paths.historyDir,
        waitMs: 100,
        ...runOptions,
      },
      {
        host,
        databaseUrl: databaseUrl ?? world.env.postgres.url,
        alertsFile: world.env.paths.alertsFile,
        print: (l) => printed.push(l),
      },
    );
  } finally {
    spy.mockRestore();
    for (const name of Object.keys(functionEnv ?? {})) delete process.env[name];
    Object.assign(process.env, world.env.functionEnv);
  }
  const alertText = safeRead(world.env.paths.alertsFile).slice(alertsBefore);
  const alerts = alertText
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const visibleText = [
    ...host.sent.map((s) => s.script),
    readFileSync(record.historyFile, 'utf8'),
    JSON.stringify(record.output ?? null),
    record.cause ?? '',
    alertText,
    ...printed,
    ...logs,
  ].join('\n');
  return { record, host, alerts, visibleText };
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export async function getBytes(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(
    await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
  );
}

export async function putBytes(
  s3: S3Client,
  bucket: string,
  key: string,
  body: Buffer | string,
): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** What one iteration of BackUpEachTarget left: its plan and each stage's result. */
export interface RunState {
  status: 'succeeded' | 'failed' | 'skipped';
  plan: {
    kind: string;
    manifestKey: string;
    archiveKey: string;
    executionId: string;
    target: string;
    database: string;
    scratchDatabase: string;
  };
  verification?: { state: string };
  restoreTest?: { state: string };
  prune?: {
    removedFromS3: string[];
    removedLeftovers: string[];
    kept: number;
    localKeepDays: number;
    localKeepFile: string;
  };
}

/** The per-target results of a succeeded execution. */
export function runsOf(record: ExecutionRecord): RunState[] {
  return (record.output as { runs: RunState[] }).runs;
}

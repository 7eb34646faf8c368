import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedKennelDatabase } from '../local/environment.ts';
import { type PostgresServer, startPostgres } from '../local/postgres.ts';
import type { RunState } from './support/environment.ts';
import { type Finished, runProcess } from './support/process.ts';

type RunsOutput = { runs: RunState[] };

const CLI = join(import.meta.dirname, '..', 'local', 'cli.ts');
let dataDir: string;
let external: PostgresServer;

function cli(args: string[], env: Record<string, string> = {}): Promise<Finished> {
  return runProcess(process.execPath, [CLI, ...args], { ...process.env, KENNEL_BACKUP_DIR: dataDir, ...env });
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'kennel-backup-cli-'));
  // The local cluster lives inside it, and its server user must get through.
  chmodSync(dataDir, 0o711);
  external = await startPostgres();
  seedKennelDatabase(external, 'kennel_prod', 1);
});
afterAll(async () => {
  await external?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('npm run local -- start database-backup', () => {
  it('runs the full backup on embedded defaults, prints progress and the output, and keeps the history', async () => {
    const run = await cli(['start', 'database-backup']);
    expect(run.code, run.stderr).toBe(0);
    for (const state of [
      'PlanBackup',
      'StartDump',
      'CheckDump',
      'VerifyArchive',
      'RestoreTest',
      'PruneBackups',
      'BackupSucceeded',
    ]) {
      expect(run.stderr).toMatch(new RegExp(`✓ ${state}\\s`));
    }
    const output = JSON.parse(run.stdout) as RunsOutput;
    expect(output.runs[0]?.verification?.state).toBe('verified');
    expect(output.runs[0]?.restoreTest?.state).toBe('passed');
    const historyFile = run.stderr.match(/history: (\S+\.json)/)?.[1] ?? '';
    expect(existsSync(historyFile)).toBe(true);
    expect(JSON.parse(readFileSync(historyFile, 'utf8')).status).toBe('SUCCEEDED');
  });

  it('backs up DATABASE_URL instead, and a later run sees the earlier backups in the same local S3', async () => {
    const url = `${external.url}/kennel_prod`;
    const run = await cli(['start', 'database-backup'], { DATABASE_URL: url });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`PostgreSQL 127.0.0.1:${external.port}/kennel_prod`);
    const output = JSON.parse(run.stdout) as RunsOutput;
    expect(output.runs[0]?.prune?.kept).toBe(2);
    expect(run.stdout + run.stderr).not.toContain(external.password);
  });

  it('exits non-zero with the reason when the execution fails', async () => {
    const run = await cli(['start', 'database-backup', '--input', '{"database": "kennel-prod"}'], {
      DATABASE_URL: `${external.url}/kennel_prod`,
    });
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({ error: 'InvalidInputError' });
    expect(run.stderr).toContain('✗ PlanBackup');
    expect(run.stderr).toContain('database: must be a lower-case PostgreSQL identifier');
  });

  it.each([
    [
      ['start', 'nightly-magic'],
      'Unknown workflow "nightly-magic". Known workflows: daily-verification, database-backup, database-restore',
    ],
    [['start', 'database-backup', '--input', '{bad json'], '--input is not valid JSON'],
    [['stop'], 'Usage: npm run local -- <command>'],
  ])('refuses %j before starting anything', async (args, message) => {
    const run = await cli(args);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
    expect(run.stderr).not.toContain('Starting local services');
  });
});

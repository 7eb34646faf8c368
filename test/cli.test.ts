import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedKennelDatabase } from '../local/environment.ts';
import { type LocalCluster, startPostgres } from '../local/postgres.ts';
import type { PrepareReport } from '../shared/host/prepare.ts';
import { type Finished, runProcess } from './support/process.ts';

/**
 * The local CLI's refusals and a cluster of one's own (DATABASE_URL, PGDATA).
 * What the README shows of it (every `npm run local -- …` example, `up` to
 * `reset`, Ctrl-C) runs in test/readme-examples.test.ts, from the README's text.
 */

const CLI = join(import.meta.dirname, '..', 'local', 'cli.ts');
let dataDir: string;
let external: LocalCluster;

function cli(args: string[], env: Record<string, string> = {}): Promise<Finished> {
  return runProcess(process.execPath, [CLI, ...args], { ...process.env, KENNEL_BACKUP_DIR: dataDir, ...env });
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'kennel-backup-cli-'));
  chmodSync(dataDir, 0o711);
  external = await startPostgres();
  seedKennelDatabase(external, 'kennel_prod', 1);
});
afterAll(async () => {
  await external?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('npm run local -- start database-backup', () => {
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
      'Unknown workflow "nightly-magic". Known workflows: audit-report, check, daily-verification, database-backup, database-restore',
    ],
    [['start', 'database-backup', '--input', '{bad json'], '--input is not valid JSON'],
    [['start', 'database-backup', '--input', 'null'], '--input must be a JSON object, not null;'],
    [
      ['start', 'database-restore', '--input', '["kennel_prod"]'],
      '--input must be a JSON object, not a list;',
    ],
    [['stop'], 'Usage: npm run -s local -- <command>'],
    [
      ['start', 'database-backup', '--name', 'no spaces'],
      'give 1 to 80 letters, digits, "-" or "_". Nothing was started.',
    ],
  ])('refuses %j before starting anything', async (args, message) => {
    const run = await cli(args);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
    expect(run.stderr).not.toContain('Starting local services');
  });
});

describe('DATABASE_URL and PGDATA: the physical kinds on a cluster of ones own', () => {
  const url = () => `${external.url}/kennel_prod`;

  it('DATABASE_URL alone: refused, saying to set PGDATA (and what the server says it is)', async () => {
    const run = await cli(['start', 'database-backup', '--input', '{"kind": "incremental"}'], {
      DATABASE_URL: url(),
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("The incremental backups are pgBackRest's; nothing was started.");
    expect(run.stderr).toContain(
      `PGDATA, the data directory of the cluster DATABASE_URL names, on this machine (the server says ${external.dataDir}): set it beside DATABASE_URL`,
    );
    expect(run.stderr).not.toContain('Execution of');
  });

  it('with PGDATA: refused with the exact settings the cluster lacks, which prepare-host then sets', async () => {
    const env = { DATABASE_URL: url(), PGDATA: external.dataDir };
    const refused = await cli(['start', 'database-backup', '--input', '{"kind": "transaction-logs"}'], env);
    expect(refused.code).toBe(2);
    const conf = join(dataDir, 'pgbackrest', 'pgbackrest.conf');
    for (const line of [
      `- the rendered pgbackrest.conf at ${conf}`,
      `- archive_command = 'pgbackrest --config='${conf}' --stanza=local archive-push %p' (now '')`,
      "- archive_mode = 'on' (now 'off'; takes a restart)",
      "- archive_timeout = '60' (now '0')",
      '- the pgBackRest stanza local (stanza-create)',
      '`npm run local -- start prepare-host` with the same DATABASE_URL and PGDATA',
    ])
      expect(refused.stderr).toContain(line);
    expect(refused.stderr).not.toContain('Execution of');

    const prepared = await cli(['start', 'prepare-host'], env);
    expect(prepared.code, prepared.stderr).toBe(0);
    const report = JSON.parse(prepared.stdout) as PrepareReport;
    expect(report.restartNeeded).toBe(true);
    expect(report.targets[0]?.result.settings.changed.map((s) => s.name)).toEqual([
      'archive_command',
      'archive_mode',
      'archive_timeout',
    ]);
    expect(readFileSync(conf, 'utf8')).toContain(`pg1-path=${external.dataDir}\n`);
  });
});

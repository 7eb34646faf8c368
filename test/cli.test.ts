import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_BUCKET, seedKennelDatabase } from '../local/environment.ts';
import { findPostgresBinDir, type LocalCluster, startPostgres } from '../local/postgres.ts';
import type { ExecutionSummary } from '../local/runner.ts';
import { LOCAL_S3_CREDENTIALS } from '../local/s3.ts';
import type { StackInfo } from '../local/stack.ts';
import { Catalog } from '../shared/catalog/catalog.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { parseConfig } from '../shared/core/config.ts';
import type { PrepareReport } from '../shared/host/prepare.ts';
import type { Info } from '../shared/watch/info.ts';
import type { RunState } from './support/environment.ts';
import { type Finished, runProcess } from './support/process.ts';

type RunsOutput = { runs: RunState[] };

const CLI = join(import.meta.dirname, '..', 'local', 'cli.ts');
let dataDir: string;
let external: LocalCluster;

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
    // Without PGDATA the server is not one pgBackRest can reach: the full backup is its logical dump alone.
    expect(run.stderr).toContain('The full backup runs its logical dump only.');
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
      'Unknown workflow "nightly-magic". Known workflows: audit-report, check, daily-verification, database-backup, database-restore',
    ],
    [['start', 'database-backup', '--input', '{bad json'], '--input is not valid JSON'],
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

describe('npm run local -- check, info, executions: on the state the runs above left', () => {
  it('check: a line per need, each OK, on stdout alone; a name already used refused before anything starts', async () => {
    const run = await cli(['check', '--name', 'preflight-1']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(
      lines.every((l) => l.startsWith('OK   ')),
      run.stdout,
    ).toBe(true);
    expect(run.stdout).toContain(
      'OK   local      pgbackrest       pgbackrest.conf is the rendered one and pgbackrest check passed',
    );
    expect(run.stderr).toContain('✓ ReportCheck');

    const again = await cli(['check', '--name', 'preflight-1']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('An execution of check named preflight-1 exists already');
    expect(again.stderr).toContain('Nothing was started.');
    expect(again.stderr).not.toContain('Starting local services');
  });

  it('info: the table of every kind, the WAL range, and JSON for scripts', async () => {
    const table = await cli(['info']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^TARGET {2}DATABASE {5}KIND/);
    expect(table.stdout).toMatch(/local\s+kennel_prod\s+full\s+\S+Z\s+\S+ kB\s+STANDARD\s+restore-tested/);
    expect(table.stdout).toMatch(
      /local\s+\(cluster\)\s+physical\s+\S+Z\s+\S+ MB\s+STANDARD\s+restore-tested/,
    );
    expect(table.stdout).toMatch(/WAL of local: recoverable from \S+Z to \S+Z \(\d+ segments; no gap\)/);
    const json = await cli(['info', '--json']);
    const read = JSON.parse(json.stdout) as Info;
    // The embedded run and the DATABASE_URL run (same target and database): two dumps.
    expect(read.catalogs.find((c) => c.kind === 'full')?.backups).toHaveLength(2);
  });

  it('executions: newest first, by workflow, name and status; `npm run -s` keeps stdout to the JSON', async () => {
    const table = await cli(['executions']);
    const [header, newest] = table.stdout.split('\n');
    expect(header).toMatch(/^WORKFLOW\s+NAME\s+STATUS\s+STARTED\s+DURATION$/);
    expect(newest).toMatch(/^check\s+preflight-1\s+SUCCEEDED\s+\S+Z\s+\d+ s$/);
    const npm = await runProcess('npm', ['run', '-s', 'local', '--', 'executions', '--json'], {
      ...process.env,
      KENNEL_BACKUP_DIR: dataDir,
    });
    expect(npm.code, npm.stderr).toBe(0);
    const list = JSON.parse(npm.stdout) as ExecutionSummary[];
    expect(list.map((e) => `${e.workflow} ${e.status}`)).toEqual([
      'check SUCCEEDED',
      'database-backup FAILED',
      'database-backup SUCCEEDED',
      'database-backup SUCCEEDED',
    ]);
    expect(basename(list[0]?.historyFile ?? '')).toBe('check.SUCCEEDED.preflight-1.json');
  });
});

describe('Ctrl-C during npm run local -- start', () => {
  it('aborts a restore over production after the application stopped, cleans it up as restore-cleanup does in AWS, and leaves no server, host script or temporary file', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'kennel-backup-ctrl-c-'));
    const applicationState = join(dataDir, 'host', 'application.state');
    const input = { database: 'kennel_prod', targetDatabase: 'kennel_prod', confirm: 'kennel_prod' };
    // In a process group of its own, which gets the SIGINT, as a terminal's foreground job does.
    const child = spawn(
      process.execPath,
      [CLI, 'start', 'database-restore', '--input', JSON.stringify(input)],
      {
        env: { ...process.env, KENNEL_BACKUP_DIR: dataDir, TMPDIR: tmp },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    child.stdout?.resume();
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      for (let i = 0; i < 6000; i += 1) {
        if (existsSync(applicationState) && readFileSync(applicationState, 'utf8').trim() === 'stopped')
          break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(readFileSync(applicationState, 'utf8').trim(), stderr).toBe('stopped');
      process.kill(-(child.pid as number), 'SIGINT');
      expect(await exited, stderr).toBe(130);
    } finally {
      if (child.exitCode === null) process.kill(-(child.pid as number), 'SIGKILL');
    }
    expect(stderr).toContain('Aborting the execution');
    expect(stderr).toMatch(/Then restore-cleanup: SUCCEEDED/);
    expect(readFileSync(applicationState, 'utf8').trim()).toBe('running');
    // Nothing of the run is left: its host scripts, their files, the cluster and S3 it started.
    const scripts = readdirSync('/proc')
      .filter((pid) => /^\d+$/.test(pid))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(tmp);
        } catch {
          return false;
        }
      });
    expect(scripts).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
    expect(existsSync(join(dataDir, 'postgres', 'data', 'postmaster.pid'))).toBe(false);

    // The clean-up's alert says what is left, and so it is.
    const alerts = readFileSync(join(dataDir, 'alerts.log'), 'utf8').trim().split('\n');
    const alert = (JSON.parse(alerts.at(-1) ?? '') as { text: string }).text;
    expect(alert).toContain('restore-cleanup SUCCEEDED');
    expect(alert).toMatch(/The database-restore execution \S+ was aborted in /);
    expect(alert).toContain('The application was stopped for the restore and has been started again.');
    const up = await cli(['up']);
    try {
      const { databaseUrl } = JSON.parse(up.stdout.trim().split('\n').at(-1) ?? '') as StackInfo;
      const left = psqlWith(
        databaseUrl,
        "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'kb_%'",
      );
      expect(left.out).not.toMatch(/kb_restoring_/);
      const replaced = /kb_replaced_\S+/.exec(left.out)?.[0];
      if (replaced) expect(alert).toContain(`the database it replaced is kept as ${replaced}`);
      else {
        expect(alert).toMatch(/kennel_prod is unchanged: it was not replaced/);
        expect(alert).toMatch(/The staging database kb_restoring_\S+ was dropped\./);
      }
    } finally {
      await cli(['down']);
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 300_000);
});

/** psql with a URL as printed, as a person would run it; its status and output. */
function psqlWith(url: string, query: string) {
  const run = spawnSync(join(findPostgresBinDir(), 'psql'), [url, '-X', '-A', '-t', '-c', query], {
    encoding: 'utf8',
  });
  return { code: run.status, out: run.stdout.trim(), err: run.stderr };
}

const alive = (pid: number) =>
  existsSync(`/proc/${pid}/cmdline`) && readFileSync(`/proc/${pid}/cmdline`).length > 0;

describe('npm run local -- up, down, reset', () => {
  it('leaves the stack running for start, stops it, brings back the same cluster and S3 data, and deletes it all', async () => {
    const stackDir = join(dataDir, 'stack');
    const env = { KENNEL_BACKUP_DIR: stackDir };
    const up = await cli(['up'], env);
    expect(up.code, up.stderr).toBe(0);
    const info = JSON.parse(up.stdout.trim().split('\n').at(-1) ?? '') as StackInfo;
    expect(info).toMatchObject({
      pgData: join(stackDir, 'postgres', 'data'),
      pgpassFile: join(stackDir, 'pgpass'),
      s3CaFile: join(stackDir, 'tls', 'cert.pem'),
      bucket: LOCAL_BUCKET,
      stanza: 'local',
      physical: { ready: true, lacking: [] },
      stateFile: join(stackDir, 'stack.json'),
    });
    expect(info.s3Endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    // The URL names the password file instead of holding the password.
    expect(info.databaseUrl).toMatch(/^postgres:\/\/kennel_admin@127\.0\.0\.1:\d+\/kennel_prod\?passfile=/);
    const password = readFileSync(join(stackDir, 'postgres', 'password'), 'utf8').trim();
    expect(up.stdout + up.stderr).not.toContain(password);
    expect(psqlWith(info.databaseUrl, 'SHOW archive_mode')).toMatchObject({ code: 0, out: 'on' });
    expect(psqlWith(info.databaseUrl, 'CREATE TABLE kept_across_runs AS SELECT 42 AS answer').code).toBe(0);
    const { s3: s3Process } = JSON.parse(readFileSync(info.stateFile, 'utf8')) as { s3: { pid: number } };

    const start = await cli(['start', 'database-backup'], env);
    expect(start.code, start.stderr).toBe(0);
    expect(start.stderr).toContain('Using the running local stack');
    // Still running after the run.
    expect(alive(s3Process.pid)).toBe(true);
    expect(psqlWith(info.databaseUrl, 'SELECT answer FROM kept_across_runs').out).toBe('42');
    // The running stack's local S3 replicates to its vault: a restore plans from the vault's catalog.
    const vaultInput = { database: 'kennel_prod', targetDatabase: 'kennel_v', source: 'vault', dryRun: true };
    const fromVault = await cli(['start', 'database-restore', '--input', JSON.stringify(vaultInput)], env);
    expect(fromVault.code, fromVault.stderr).toBe(0);
    expect(fromVault.stdout + fromVault.stderr).not.toContain('This deployment has no vault');

    const down = await cli(['down'], env);
    expect(down.stderr).toContain(`Stopped PostgreSQL and the local S3 (pid ${s3Process.pid}).`);
    expect(alive(s3Process.pid)).toBe(false);
    expect(psqlWith(info.databaseUrl, 'SELECT 1').code).not.toBe(0);
    expect((await cli(['down'], env)).stderr).toContain('Nothing was running.');

    const again = await cli(['up'], env);
    expect(again.code, again.stderr).toBe(0);
    const second = JSON.parse(again.stdout.trim().split('\n').at(-1) ?? '') as StackInfo;
    expect(second.pgData).toBe(info.pgData);
    expect(psqlWith(second.databaseUrl, 'SELECT answer FROM kept_across_runs').out).toBe('42');
    const s3 = createS3Client(
      parseConfig({
        BACKUP_BUCKET: LOCAL_BUCKET,
        BACKUP_TARGETS: JSON.stringify([
          { name: 'local', instanceIds: ['i-00000000000000000'], database: 'kennel_prod' },
        ]),
        ALERT_WEBHOOK_PARAMETER: '/a',
        RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
        S3_ENDPOINT_URL: second.s3Endpoint,
        S3_CA_BUNDLE: second.s3CaFile,
        ...LOCAL_S3_CREDENTIALS,
      }),
    );
    Object.assign(process.env, LOCAL_S3_CREDENTIALS);
    // The backup the earlier session made is in the S3 data this one serves.
    expect(await new Catalog(s3, LOCAL_BUCKET).list('full', 'local', 'kennel_prod')).toHaveLength(1);

    const reset = await cli(['reset'], env);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stderr).toContain(`deleted the local state in ${stackDir}`);
    expect(existsSync(stackDir)).toBe(false);
    expect(psqlWith(second.databaseUrl, 'SELECT 1').code).not.toBe(0);
  }, 240_000); // six runs of the CLI, each starting or stopping the stack
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

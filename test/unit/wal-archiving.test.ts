import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderHostCommand } from '../../shared/host/scripts.ts';
import {
  type Archiver,
  archivingFindings,
  planWalArchiveAge,
  reportWalArchiveAge,
  type WalArchivingResult,
  walArchiveAgeSeconds,
  walArchivingResultSchema,
} from '../../shared/watch/archiving.ts';
import { WATCH_HOST_COMMANDS } from '../../shared/watch/host-commands.ts';
import { PRIMARY_WITH_PGBACKREST, testConfig } from '../support/config.ts';

/** The archiver of a cluster that archived segment 0A at 10:00:00 and is now (10:03:00) writing into 0B. */
const archiver = (changes: Partial<Archiver> = {}): Archiver => ({
  archiveMode: 'on',
  archivedCount: 10,
  lastArchivedWal: '00000001000000000000000A',
  lastArchivedAt: '2026-11-30T10:00:00.123456+00:00',
  failedCount: 0,
  lastFailedWal: null,
  lastFailedAt: null,
  statsResetAt: '2026-11-01T00:00:00+00:00',
  currentWal: '00000001000000000000000B',
  checkedAt: '2026-11-30T10:03:00.123456+00:00',
  ...changes,
});

describe('WAL archive age', () => {
  it('is 0 when the segment of the current WAL position is the newest archived one: nothing written waits', () => {
    // An idle cluster after a switch: however long ago, nothing is behind.
    expect(walArchiveAgeSeconds(archiver({ currentWal: '00000001000000000000000A' }))).toBe(0);
  });

  it("is otherwise the seconds since the newest segment was archived, by the database's clock", () => {
    expect(walArchiveAgeSeconds(archiver())).toBe(180);
    // A clock skew that puts the archive after the check is no negative age.
    expect(walArchiveAgeSeconds(archiver({ checkedAt: '2026-11-30T09:59:59+00:00' }))).toBe(0);
  });

  it('is unknown (no metric, which the alarm treats as breaching) with archiving off or nothing archived', () => {
    expect(walArchiveAgeSeconds(archiver({ archiveMode: 'off' }))).toBeNull();
    expect(walArchiveAgeSeconds(archiver({ lastArchivedWal: null, lastArchivedAt: null }))).toBeNull();
    expect(walArchiveAgeSeconds(archiver({ archiveMode: 'always' }))).toBe(180);
  });
});

describe('what is wrong with a target’s archiving', () => {
  const repository = {
    statusCode: 0,
    status: 'ok',
    archiveMin: '000000010000000000000001',
    archiveMax: '00000001000000000000000A',
    backups: 2,
    newestBackup: { label: '20261130-020000F', type: 'full', stoppedAt: '2026-11-30T02:05:00+00:00' },
  };
  const result = (a: Partial<Archiver>, rest: Partial<WalArchivingResult> = {}): WalArchivingResult => ({
    archiver: archiver(a),
    reason: null,
    repository,
    repositoryError: null,
    ...rest,
  });
  const failedAt = '2026-11-30T10:02:30+00:00';

  it('nothing, when it archives', () => {
    expect(archivingFindings('primary', result({}))).toEqual([]);
    // No backup yet is the backup-age alarms' to report, not the repository's.
    const empty = result({}, { repository: { ...repository, statusCode: 2, backups: 0 } });
    expect(archivingFindings('primary', empty)).toEqual([]);
  });

  it('a failure newer than the last success: failing, naming the segment, the log’s reason and what to do', () => {
    const findings = archivingFindings(
      'primary',
      result(
        { lastFailedWal: '00000001000000000000000B', lastFailedAt: failedAt, failedCount: 3 },
        { reason: "archive command failed with exit code 103: ERROR: [103]: unable to connect to 'x'." },
      ),
    );
    expect(findings).toEqual([
      {
        subject: 'WAL archiving on primary',
        problem: `failing: WAL segment 00000001000000000000000B could not be archived (last attempt ${failedAt}, 3 failure(s) since 2026-11-01T00:00:00+00:00); the newest archived is 00000001000000000000000A (2026-11-30T10:00:00.123456+00:00). PostgreSQL's log: archive command failed with exit code 103: ERROR: [103]: unable to connect to 'x'. PostgreSQL keeps every segment until it is archived: fix the cause and archiving catches up by itself; watch the space of pg_wal meanwhile.`,
      },
    ]);
  });

  it('failing too when nothing was ever archived since the counts were reset', () => {
    const [finding] = archivingFindings(
      'primary',
      result({
        lastArchivedWal: null,
        lastArchivedAt: null,
        lastFailedWal: '000000010000000000000001',
        lastFailedAt: failedAt,
      }),
    );
    expect(finding?.problem).toContain('failing: WAL segment 000000010000000000000001 could not be archived');
    expect(finding?.problem).toContain('nothing has been archived since 2026-11-01T00:00:00+00:00');
  });

  it('a failure within the hour that archiving has recovered from; none older', () => {
    const recovered = { lastFailedWal: '000000010000000000000009', failedCount: 1 };
    const [finding, ...others] = archivingFindings(
      'primary',
      result({ ...recovered, lastFailedAt: '2026-11-30T09:10:00+00:00' }, { reason: 'exit code 1' }),
    );
    expect(others).toEqual([]);
    expect(finding?.problem).toBe(
      "failed within the last hour: WAL segment 000000010000000000000009 could not be archived at 2026-11-30T09:10:00+00:00, and archiving has recovered since (the newest archived is 00000001000000000000000A (2026-11-30T10:00:00.123456+00:00)). PostgreSQL's log: exit code 1. Look for what made the repository fail before it recurs.",
    );
    expect(
      archivingFindings('primary', result({ ...recovered, lastFailedAt: '2026-11-30T09:02:59+00:00' })),
    ).toEqual([]);
  });

  it('archiving off', () => {
    expect(archivingFindings('primary', result({ archiveMode: 'off' }))).toEqual([
      {
        subject: 'WAL archiving on primary',
        problem:
          'archive_mode is off: no WAL segment reaches the repository, so nothing after the newest backup can be recovered. Start the prepare-host workflow for primary; it sets archive_mode and says when PostgreSQL must restart.',
      },
    ]);
  });

  it('a repository pgBackRest cannot read, or reports a problem with', () => {
    expect(
      archivingFindings('primary', result({}, { repository: null, repositoryError: 'no conf' })),
    ).toEqual([{ subject: 'the pgBackRest repository of primary', problem: 'not readable: no conf' }]);
    const unreachable = result(
      {},
      { repository: { ...repository, statusCode: 99, status: '[HostConnectError] refused' } },
    );
    expect(archivingFindings('primary', unreachable)).toEqual([
      {
        subject: 'the pgBackRest repository of primary',
        problem:
          'pgBackRest reports status 99 ([HostConnectError] refused); run `pgbackrest --stanza=primary info` on the host.',
      },
    ]);
  });
});

describe("the host's result line", () => {
  it('parses as PostgreSQL prints it (json_build_object: microseconds and an offset)', () => {
    const line = {
      archiver: archiver(),
      reason: null,
      repository: {
        statusCode: 2,
        status: 'no valid backups',
        archiveMin: null,
        archiveMax: null,
        backups: 0,
        newestBackup: null,
      },
      repositoryError: null,
    };
    expect(walArchivingResultSchema.parse(line)).toEqual(line);
    // The every-minute run reports the archiver only.
    expect(walArchivingResultSchema.parse({ archiver: archiver() })).toEqual({ archiver: archiver() });
  });

  it('refuses what is no WAL file name, and takes history and backup files', () => {
    expect(() =>
      walArchivingResultSchema.parse({ archiver: archiver({ currentWal: '0A; rm -rf /' }) }),
    ).toThrow();
    for (const name of [
      '00000002.history',
      '000000010000000000000003.00000028.backup',
      '000000010000000000000003.partial',
    ])
      expect(
        walArchivingResultSchema.parse({ archiver: archiver({ lastArchivedWal: name }) }).archiver
          .lastArchivedWal,
      ).toBe(name);
  });
});

describe('the every-minute measurement', () => {
  const config = testConfig({
    BACKUP_TARGETS: JSON.stringify([
      PRIMARY_WITH_PGBACKREST,
      { name: 'dumps-only', instanceIds: ['i-0123456789abcdef1'], database: 'kennel_prod' },
    ]),
  });
  const request = {
    input: {},
    executionId: 'arn:aws:states:us-east-1:1:express:m:e:1',
    startedAt: '2026-11-30T10:03:00Z',
  };

  it('plans the targets with pgBackRest settings only', () => {
    expect(planWalArchiveAge(config, request).hosts.map((h) => h.target)).toEqual(['primary']);
  });

  it('emits each measured age and fails on nothing it measured: a host not read, or an unknown age, leaves no metric', () => {
    const emitted: [string, number][] = [];
    const sink = { walArchiveAge: (target: string, seconds: number) => emitted.push([target, seconds]) };
    const host = (target: string) => ({ target, runId: '20261130T100300Z_1a2b3c4d' });
    const report = reportWalArchiveAge(
      {
        archivers: [
          { host: host('primary'), command: { result: { archiver: archiver() } } },
          {
            host: host('stopped'),
            failed: { StartArchiveAge: { Error: 'HostCommandFailedError', Cause: 'x' } },
          },
          { host: host('off'), command: { result: { archiver: archiver({ archiveMode: 'off' }) } } },
        ],
      },
      sink,
    );
    expect(emitted).toEqual([['primary', 180]]);
    expect(report.ages).toEqual([
      { target: 'primary', ageSeconds: 180 },
      { target: 'stopped', ageSeconds: null, notMeasured: 'HostCommandFailedError' },
      { target: 'off', ageSeconds: null },
    ]);
  });

  it('asks the host for the archiver only; the hourly run for the log and the repository too', () => {
    const target = config.BACKUP_TARGETS[0];
    if (!target) throw new Error('the test config has no target');
    const plan = { target: 'primary', runId: '20261130T100300Z_1a2b3c4d' };
    const light = renderHostCommand(config, target, WATCH_HOST_COMMANDS['wal-archive-age'], {
      script: 'wal-archive-age',
      plan,
    });
    const full = renderHostCommand(config, target, WATCH_HOST_COMMANDS['wal-archiving'], {
      script: 'wal-archiving',
      plan,
    });
    expect(light).toContain("KB_DETAIL='age'");
    expect(full).toContain("KB_DETAIL='full'");
    for (const script of [light, full]) {
      expect(script).toContain("KB_DATABASE='kennel_prod'");
      expect(script).toContain("KB_STANZA='primary'");
      expect(spawnSync('bash', ['-n'], { input: script }).status).toBe(0);
    }
  });
});

/** A function of host/wal-archiving.sh, run alone in bash on `input` (after `prelude`, with `env`). */
function runHostFunction(
  name: string,
  args: string[],
  input: string,
  { prelude = '', env = {} }: { prelude?: string; env?: Record<string, string> } = {},
): string {
  const script = readFileSync(new URL('../../host/wal-archiving.sh', import.meta.url), 'utf8');
  // A one-line function, or one that ends at a line holding only its closing brace.
  const body =
    new RegExp(`^${name}\\(\\) \\{.*\\}$`, 'm').exec(script)?.[0] ??
    new RegExp(`^${name}\\(\\) \\{[^\\n]*\\n[\\s\\S]*?^\\}$`, 'm').exec(script)?.[0];
  if (!body) throw new Error(`host/wal-archiving.sh has no function ${name}`);
  const result = spawnSync('bash', ['-c', `${prelude}\n${body}\n${name} "$@"`, name, ...args], {
    input,
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  expect(result.stderr).toBe('');
  return result.stdout.trim();
}

describe('the reason of a failure, from the server log', () => {
  const log = [
    '2026-11-30 07:27:01.403 UTC [3237] LOG:  archive command failed with exit code 82',
    '2026-11-30 07:27:01.403 UTC [3237] DETAIL:  The failed archive command was: pgbackrest --stanza=local archive-push pg_wal/000000010000000000000004',
    'ERROR: [103]: unable to find a valid repository:',
    "       repo1: [HostConnectError] unable to connect to 'localhost:36885': [111] Connection refused",
    '       HINT: is archive_command configured correctly in postgresql.conf?',
    '       HINT: has a stanza-create been performed?',
    // Another session, between pgBackRest's error and PostgreSQL's lines: it quotes a row.
    '2026-11-30 07:27:11.100 UTC [4100] ERROR:  duplicate key value violates unique constraint "owners_email_key"',
    '2026-11-30 07:27:11.100 UTC [4100] DETAIL:  Key (email)=(jane@example.com) already exists.',
    '2026-11-30 07:27:11.403 UTC [3237] LOG:  archive command failed with exit code 103',
    '2026-11-30 07:27:11.403 UTC [3237] DETAIL:  The failed archive command was: pgbackrest --stanza=local archive-push pg_wal/000000010000000000000005',
    '2026-11-30 07:27:12.000 UTC [3237] LOG:  archive command failed with exit code 7',
    '2026-11-30 07:27:12.000 UTC [3237] DETAIL:  The failed archive command was: pgbackrest --stanza=local archive-push pg_wal/000000010000000000000006',
    '',
  ].join('\n');

  it("is PostgreSQL's exit code and pgBackRest's error for that segment, without its hints or another session's lines", () => {
    expect(runHostFunction('failure_reason', ['000000010000000000000005'], log)).toBe(
      "archive command failed with exit code 103: ERROR: [103]: unable to find a valid repository: repo1: [HostConnectError] unable to connect to 'localhost:36885': [111] Connection refused",
    );
  });

  it('takes no error that another segment’s failure already used, and is empty for a segment the log does not name', () => {
    expect(runHostFunction('failure_reason', ['000000010000000000000006'], log)).toBe(
      'archive command failed with exit code 7',
    );
    expect(runHostFunction('failure_reason', ['000000010000000000000004'], log)).toBe(
      'archive command failed with exit code 82',
    );
    expect(runHostFunction('failure_reason', ['0000000100000000000000FF'], log)).toBe('');
  });

  it("is read from the logging collector's current file, as the data directory records it", () => {
    const data = mkdtempSync(join(tmpdir(), 'kennel-backup-pgdata-'));
    try {
      const where = { prelude: 'pg() { "$@"; }', env: { KB_PG_DATA: data, KB_PG_MODE: 'host' } };
      writeFileSync(
        join(data, 'current_logfiles'),
        'stderr log/postgresql-Mon.log\ncsvlog log/postgresql-Mon.csv\n',
      );
      expect(runHostFunction('server_log', [], '', where)).toBe(`${data}/log/postgresql-Mon.log`);
      writeFileSync(join(data, 'current_logfiles'), 'stderr /var/log/postgresql/main.log\n');
      expect(runHostFunction('server_log', [], '', where)).toBe('/var/log/postgresql/main.log');
      // Neither a collector nor a postmaster whose stderr is a file (docker logs): no log to read.
      rmSync(join(data, 'current_logfiles'));
      expect(runHostFunction('server_log', [], '', where)).toBe('');
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });
});

import { describe, expect, it } from 'vitest';
import { findTarget, type Target } from '../../shared/core/config.ts';
import {
  ConfigError,
  InvalidInputError,
  NotFoundError,
  PrepareHostFailedError,
} from '../../shared/core/errors.ts';
import { archiveCommandOf } from '../../shared/host/pgbackrest-conf.ts';
import {
  lackingOf,
  neededSettings,
  PREPARE_HOST_COMMANDS,
  type PrepareResult,
  planPrepareHost,
  reportPrepareHost,
} from '../../shared/host/prepare.ts';
import { renderHostCommand } from '../../shared/host/scripts.ts';
import { PRIMARY_WITH_PGBACKREST, testConfig } from '../support/config.ts';

const config = testConfig({
  BACKUP_TARGETS: JSON.stringify([
    PRIMARY_WITH_PGBACKREST,
    {
      name: 'compose',
      instanceIds: ['i-0123456789abcdef1'],
      database: 'kennel_prod',
      postgres: { mode: 'docker', composeFile: '/opt/kennel/docker-compose.prod.yml', service: 'db' },
      pgbackrest: { dataDirectory: '/var/lib/postgresql/data', user: 'backup_admin' },
    },
    { name: 'logical', instanceIds: ['i-0123456789abcdef2'], database: 'kennel_prod' },
  ]),
});
const primary = findTarget(config, 'primary') as Target;
const request = (input: unknown) => ({
  input,
  executionId: 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-prod-prepare-host:run-1',
  startedAt: '2026-11-26T09:00:00.000Z',
});

describe('planPrepareHost', () => {
  it('without a target: every target with pgbackrest settings, and the others named as skipped', () => {
    const plan = planPrepareHost(config, request({}));
    expect(plan.dryRun).toBe(false);
    expect(plan.hosts.map((h) => [h.target, h.dryRun])).toEqual([
      ['primary', false],
      ['compose', false],
    ]);
    expect(new Set(plan.hosts.map((h) => h.runId)).size).toBe(2);
    expect(plan.skipped).toEqual([
      { target: 'logical', reason: expect.stringContaining('no pgbackrest settings in BACKUP_TARGETS') },
    ]);
    expect(planPrepareHost(config, request({ target: 'compose', dryRun: true })).hosts).toEqual([
      { target: 'compose', runId: expect.any(String), dryRun: true },
    ]);
  });

  it('refuses a named target without pgbackrest settings, or a deployment where none has them', () => {
    expect(() => planPrepareHost(config, request({ target: 'logical' }))).toThrow(ConfigError);
    expect(() => planPrepareHost(config, request({ target: 'logical' }))).toThrow(
      'add "pgbackrest": {"dataDirectory": "<the cluster\'s data directory>"} to it',
    );
    expect(() => planPrepareHost(testConfig(), request({}))).toThrow(
      'The target "primary" has no pgbackrest settings',
    );
  });

  it('refuses unknown fields, a bad dryRun and an unknown target, naming what to do', () => {
    expect(() => planPrepareHost(config, request({ targets: ['primary'] }))).toThrow(InvalidInputError);
    expect(() => planPrepareHost(config, request({ targets: ['primary'] }))).toThrow(
      'Unrecognized key: "targets"',
    );
    expect(() => planPrepareHost(config, request({ dryRun: 1 }))).toThrow('dryRun: Invalid input');
    expect(() => planPrepareHost(config, request({ target: 'Primary' }))).toThrow(
      'target: must be lower case',
    );
    expect(() => planPrepareHost(config, request({ target: 'replica' }))).toThrow(NotFoundError);
  });
});

describe('the prepare-host command', () => {
  it('takes the rendered conf, the settings and where the cluster is from config, never from the request', () => {
    const command = PREPARE_HOST_COMMANDS['prepare-host'];
    const plan = planPrepareHost(config, request({ target: 'compose', dryRun: true })).hosts[0];
    if (!plan) throw new Error('no plan');
    const compose = findTarget(config, 'compose') as Target;
    const params = command.params(config, compose, { script: 'prepare-host', plan });
    expect(params).toMatchObject({
      KB_PG_MODE: 'docker',
      KB_COMPOSE_SERVICE: 'db',
      KB_STANZA: 'compose',
      KB_PGBACKREST_CONFIG: '/etc/pgbackrest/pgbackrest.conf',
      KB_PGBACKREST_USER: 'postgres',
      KB_PGBACKREST_DIRS: '/tmp/pgbackrest /var/log/pgbackrest',
      KB_PG_DATA: '/var/lib/postgresql/data',
      KB_PG_SOCKET: '/var/run/postgresql',
      KB_PG_PORT: '5432',
      KB_PG_USER: 'backup_admin',
      KB_DRY_RUN: 'true',
    });
    expect(params.KB_PGBACKREST_CONF).toContain('[compose]\npg1-path=/var/lib/postgresql/data\n');
    expect(JSON.parse(params.KB_SETTINGS ?? '')).toEqual(neededSettings(compose));
    // The role pgBackRest connects as defaults to the OS user's own (peer authentication).
    expect(command.params(config, primary, { script: 'prepare-host', plan }).KB_PG_USER).toBe('postgres');
    const script = renderHostCommand(config, compose, command, { script: 'prepare-host', plan });
    expect(script).toContain("KB_DRY_RUN='true'");
    expect(script).toContain('docker compose -f "$KB_COMPOSE_FILE" exec -T -u "$KB_PGBACKREST_USER"');
  });

  it("needs pgBackRest's archive_command, archiving on, a WAL level a recovery can replay, and a timeout of at most a minute", () => {
    expect(neededSettings(primary)).toEqual([
      { name: 'wal_level', accepted: ['replica', 'logical'], to: 'replica' },
      { name: 'archive_mode', accepted: ['on', 'always'], to: 'on' },
      { name: 'archive_command', accepted: [archiveCommandOf(primary)], to: archiveCommandOf(primary) },
      { name: 'archive_library', accepted: [''], to: '' },
      { name: 'archive_timeout', min: 1, max: 60, to: '60' },
    ]);
  });
});

const ready: PrepareResult = {
  dryRun: false,
  config: { file: '/etc/pgbackrest/pgbackrest.conf', existed: true, state: 'unchanged', changedOptions: [] },
  createdPaths: [],
  settings: { changed: [], awaitingRestart: [] },
  grants: { role: 'kennel_backup', granted: [] },
  restartNeeded: false,
  stanza: 'created',
  check: 'passed',
  error: null,
};
const firstRun: PrepareResult = {
  ...ready,
  config: { ...ready.config, existed: false, state: 'written', changedOptions: [] },
  settings: {
    changed: [
      { name: 'archive_mode', from: 'off', to: 'on', restart: true },
      { name: 'archive_timeout', from: '0', to: '60', restart: false },
    ],
    awaitingRestart: [],
  },
  grants: { role: 'kennel_backup', granted: ['pg_monitor', 'EXECUTE ON FUNCTION pg_switch_wal()'] },
  restartNeeded: true,
  stanza: 'skipped',
  check: 'skipped',
};
const host = (target: string) => ({ target, runId: '20261126T090000Z_0123abcd', dryRun: false });
const state = (results: [string, PrepareResult | undefined][], dryRun = false) => ({
  plan: { dryRun, hosts: results.map(([t]) => host(t)), skipped: [] },
  hosts: results.map(([target, result]) =>
    result
      ? { host: host(target), command: { status: 'Success', result } }
      : {
          host: host(target),
          command: { status: 'InProgress' },
          failed: {
            CheckPrepareHost: { Error: 'HostCommandFailedError', Cause: 'psql: connection refused' },
          },
        },
  ),
});

describe('reportPrepareHost', () => {
  it('says what changed and that PostgreSQL must restart, then start prepare-host again', () => {
    const report = reportPrepareHost(state([['primary', firstRun]]));
    expect(report.restartNeeded).toBe(true);
    expect(report.summary).toBe(
      [
        'primary:',
        '- pgbackrest.conf /etc/pgbackrest/pgbackrest.conf written (new file)',
        "- PostgreSQL settings set with ALTER SYSTEM: archive_mode 'off' → 'on' (takes a restart); archive_timeout '0' → '60'",
        "- granted pg_monitor and EXECUTE ON FUNCTION pg_switch_wal() to kennel_backup, the role the host's backups connect as",
        '- stanza-create and check wait for the restart',
        'Next: restart PostgreSQL on primary (e.g. systemctl restart postgresql, or restart its compose service), then start prepare-host again: it creates the stanza and runs check.',
      ].join('\n'),
    );
    expect(reportPrepareHost(state([['primary', ready]])).summary).toContain(
      'Ready: the physical backups can run.',
    );
  });

  it('in a dry run, never asks for a restart: nothing was changed', () => {
    const report = reportPrepareHost(state([['primary', { ...firstRun, dryRun: true }]], true));
    expect(report.restartNeeded).toBe(false);
    expect(report.summary).toMatch(/^Dry run, nothing was changed\./);
    expect(report.summary).toContain('A run would need a PostgreSQL restart afterwards.');
  });

  it('fails listing a target not prepared and a failed check, with what was done on the others', () => {
    const checkFailed: PrepareResult = {
      ...ready,
      check: 'failed',
      error: 'ERROR: [082]: WAL segment was not archived',
    };
    const attempt = () =>
      reportPrepareHost(
        state([
          ['primary', checkFailed],
          ['compose', undefined],
          ['replica', firstRun],
        ]),
      );
    expect(attempt).toThrow(PrepareHostFailedError);
    expect(attempt).toThrow('prepare-host did not prepare primary, compose:');
    expect(attempt).toThrow('pgbackrest check failed: ERROR: [082]: WAL segment was not archived');
    expect(attempt).toThrow(
      'compose: not prepared (HostCommandFailedError in CheckPrepareHost): psql: connection refused',
    );
    expect(attempt).toThrow('Next: restart PostgreSQL on replica');
  });
});

describe('lackingOf', () => {
  it("lists what a dry run found missing, as settings an operator would write, or nothing when it's ready", () => {
    expect(lackingOf('primary', { ...ready, stanza: 'exists' })).toEqual([]);
    expect(
      lackingOf('primary', {
        ...firstRun,
        dryRun: true,
        config: { ...firstRun.config, state: 'would-write' },
        createdPaths: ['/var/log/pgbackrest'],
        settings: {
          ...firstRun.settings,
          awaitingRestart: [{ name: 'wal_level', running: 'minimal', to: 'replica' }],
        },
        stanza: 'unknown',
      }),
    ).toEqual([
      'the rendered pgbackrest.conf at /etc/pgbackrest/pgbackrest.conf',
      "the directory /var/log/pgbackrest, owned by the cluster's OS user",
      "archive_mode = 'on' (now 'off'; takes a restart)",
      "archive_timeout = '60' (now '0')",
      "a PostgreSQL restart, for wal_level = 'replica' to take effect",
      "pg_monitor granted to the host's role kennel_backup",
      "EXECUTE ON FUNCTION pg_switch_wal() granted to the host's role kennel_backup",
      'the pgBackRest stanza primary (stanza-create)',
    ]);
  });
});

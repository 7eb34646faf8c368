import { copyFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PGBACKREST_S3_KEYS, psql } from '../local/environment.ts';
import { giveToServerUser, type LocalCluster, startPostgres } from '../local/postgres.ts';
import { findTarget, parseConfig, type Target } from '../shared/core/config.ts';
import { archiveCommandOf, pgbackrestConfOf } from '../shared/host/pgbackrest-conf.ts';
import type { PrepareReport, PrepareResult } from '../shared/host/prepare.ts';
import { dockerStandIn } from './support/docker.ts';
import { runIn, startWorld, type TestWorld } from './support/environment.ts';

/**
 * The prepare-host workflow, run by the local runner against real PostgreSQL
 * clusters, pgBackRest, bash and the local S3: a fresh cluster of its own
 * (target `fresh`, as a new DB host would be), the world's cluster (which the
 * local stack prepared with the same host script), and refusals.
 */

const FRESH_INSTANCE = 'i-0000000000000f00d';
const COMPOSE_FILE = '/opt/kennel/docker-compose.prod.yml';

let world: TestWorld;
let fresh: LocalCluster;
let targets: Record<string, unknown>[];
let freshTarget: Target;
let conf: string;

beforeAll(async () => {
  world = await startWorld();
  // The postmaster gets the local S3's keys from its start, as a host's service would.
  fresh = await startPostgres({ env: PGBACKREST_S3_KEYS });
  const caFile = join(fresh.dir, 'ca.pem');
  copyFileSync(world.env.s3CaFile, caFile);
  giveToServerUser(caFile);
  const work = join(fresh.dir, 'pgbackrest');
  conf = join(work, 'pgbackrest.conf');
  const [local] = JSON.parse(world.env.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
  targets = [
    local ?? {},
    {
      name: 'fresh',
      instanceIds: [FRESH_INSTANCE],
      database: 'postgres',
      pgbackrest: {
        dataDirectory: fresh.dataDir,
        port: fresh.port,
        socketPath: fresh.socketDir,
        user: fresh.user,
        osUser: 'postgres',
        configFile: conf,
        lockPath: join(work, 'lock'),
        logPath: join(work, 'log'),
        caFile,
      },
    },
    { name: 'logical-only', instanceIds: ['i-00000000000000001'], database: 'postgres' },
  ];
  const config = parseConfig({ ...world.env.functionEnv, BACKUP_TARGETS: JSON.stringify(targets) });
  freshTarget = findTarget(config, 'fresh') as Target;
}, 180_000);

afterAll(async () => {
  await fresh?.stop();
  await world?.stop();
});

const functionEnv = () => ({ BACKUP_TARGETS: JSON.stringify(targets) });

function prepare(input: unknown, options: { hostEnv?: Record<string, string> } = {}) {
  return runIn(world, {
    workflow: 'prepare-host',
    input,
    functionEnv: functionEnv(),
    hostEnvByInstance: { [FRESH_INSTANCE]: { ...fresh.env, ...options.hostEnv } },
  });
}

const freshSql = (query: string) => psql(fresh, 'postgres', ['-A', '-t', '-c', query]).trim();

/** The settings prepare-host looks at, as the server has them now (and whether each waits for a restart). */
const SETTINGS = "('wal_level', 'archive_mode', 'archive_command', 'archive_library', 'archive_timeout')";
const settingsNow = () =>
  freshSql(
    `SELECT string_agg(name || '=' || reset_val || ' ' || pending_restart, E'\\n' ORDER BY name) FROM pg_settings WHERE name IN ${SETTINGS}`,
  );

function reportOf(run: Awaited<ReturnType<typeof prepare>>): PrepareReport {
  expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
  return run.record.output as PrepareReport;
}
const resultOf = (report: PrepareReport): PrepareResult => {
  expect(report.targets.map((t) => t.target)).toEqual(['fresh']);
  return report.targets[0]?.result as PrepareResult;
};

async function keysUnder(prefix: string): Promise<string[]> {
  const listed = await world.s3.send(new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => o.Key ?? '');
}

describe('prepare-host on a fresh cluster', () => {
  it('a dry run says what a run would change, and changes nothing', async () => {
    const before = settingsNow();
    const run = await prepare({ target: 'fresh', dryRun: true });
    const report = reportOf(run);
    const result = resultOf(report);
    expect(report.dryRun).toBe(true);
    expect(result.config).toEqual({ file: conf, existed: false, state: 'would-write', changedOptions: [] });
    expect(result.createdPaths).toEqual([
      join(fresh.dir, 'pgbackrest/lock'),
      join(fresh.dir, 'pgbackrest/log'),
    ]);
    expect(result.settings.changed.map((s) => [s.name, s.to, s.restart])).toEqual([
      ['archive_command', archiveCommandOf(freshTarget), false],
      ['archive_mode', 'on', true],
      ['archive_timeout', '60', false],
    ]);
    expect(result).toMatchObject({ restartNeeded: true, stanza: 'unknown', check: 'skipped' });
    expect(settingsNow()).toBe(before);
    expect(existsSync(join(fresh.dir, 'pgbackrest'))).toBe(false);
    expect(run.alerts.map((a) => a.error)).toEqual(['Succeeded']);
    expect(run.alerts[0]?.text).toContain('Dry run, nothing was changed.');
  });

  it('the first run writes the conf and the settings, and says PostgreSQL must restart before stanza-create and check', async () => {
    const run = await prepare({ target: 'fresh' });
    const report = reportOf(run);
    const result = resultOf(report);
    expect(report.restartNeeded).toBe(true);
    expect(result.config).toMatchObject({ existed: false, state: 'written' });
    expect(run.alerts[0]?.text).toContain(`pgbackrest.conf ${conf} written (new file)`);
    expect(readFileSync(conf, 'utf8')).toBe(
      pgbackrestConfOf(parseConfig(world.env.functionEnv), freshTarget),
    );
    expect(statSync(conf).uid).toBe(statSync(fresh.dataDir).uid);
    expect(statSync(conf).mode & 0o777).toBe(0o640);
    for (const dir of result.createdPaths) expect(statSync(dir).uid).toBe(statSync(fresh.dataDir).uid);
    expect(result.settings.changed).toEqual([
      { name: 'archive_command', from: '', to: archiveCommandOf(freshTarget), restart: false },
      { name: 'archive_mode', from: 'off', to: 'on', restart: true },
      { name: 'archive_timeout', from: '0', to: '60', restart: false },
    ]);
    expect(result).toMatchObject({ stanza: 'skipped', check: 'skipped' });
    // Reloaded: archive_timeout is in effect; archive_mode waits for the restart.
    expect(freshSql('SHOW archive_timeout')).toBe('1min');
    expect(freshSql("SELECT pending_restart FROM pg_settings WHERE name = 'archive_mode'")).toBe('t');
    expect(await keysUnder('pgbackrest/fresh/')).toEqual([]);
    expect(run.alerts.map((a) => a.error)).toEqual(['Warning']);
    expect(run.alerts[0]?.text).toContain("archive_mode 'off' → 'on' (takes a restart)");
    expect(run.alerts[0]?.text).toContain('Next: restart PostgreSQL on fresh');

    // Again before the restart: nothing new to set, the same restart still to do.
    const again = resultOf(reportOf(await prepare({ target: 'fresh' })));
    expect(again.config.state).toBe('unchanged');
    expect(again.settings).toEqual({
      changed: [],
      awaitingRestart: [{ name: 'archive_mode', running: 'off', to: 'on' }],
    });
    expect(again).toMatchObject({ restartNeeded: true, stanza: 'skipped', check: 'skipped' });
  });

  it('after the restart, it creates the stanza and check passes: WAL reaches the repository', async () => {
    fresh.restart();
    const run = await prepare({ target: 'fresh' });
    const report = reportOf(run);
    const result = resultOf(report);
    expect(report.restartNeeded).toBe(false);
    expect(result).toMatchObject({
      config: { state: 'unchanged', changedOptions: [] },
      createdPaths: [],
      settings: { changed: [], awaitingRestart: [] },
      stanza: 'created',
      check: 'passed',
      error: null,
    });
    const keys = await keysUnder('pgbackrest/fresh/');
    expect(keys).toContain('pgbackrest/fresh/archive/fresh/archive.info');
    expect(keys).toContain('pgbackrest/fresh/backup/fresh/backup.info');
    expect(Number(freshSql('SELECT archived_count FROM pg_stat_archiver'))).toBeGreaterThan(0);
    expect(run.alerts.map((a) => a.error)).toEqual(['Succeeded']);
    expect(run.alerts[0]?.text).toContain('Ready: the physical backups can run.');
  });

  it('a third run changes nothing', async () => {
    const before = { settings: settingsNow(), conf: statSync(conf).mtimeMs };
    const result = resultOf(reportOf(await prepare({ target: 'fresh' })));
    expect(result).toMatchObject({
      config: { state: 'unchanged' },
      createdPaths: [],
      settings: { changed: [], awaitingRestart: [] },
      restartNeeded: false,
      stanza: 'created',
      check: 'passed',
    });
    expect({ settings: settingsNow(), conf: statSync(conf).mtimeMs }).toEqual(before);
  });

  it("grants the role the host's backups connect as what they need, once, and it then switches WAL and reads the archive status", async () => {
    freshSql("CREATE ROLE kb_host LOGIN PASSWORD 'kb-host-pw'");
    // The host's role by PGUSER; pgBackRest's superuser still connects as itself (by its
    // own user name), so both passwords come from a password file, as on a host.
    const passfile = join(fresh.dir, 'pgpass');
    writeFileSync(passfile, `*:*:*:kb_host:kb-host-pw\n*:*:*:${fresh.user}:${fresh.password}\n`, {
      mode: 0o600,
    });
    giveToServerUser(passfile);
    const asHost = { PGUSER: 'kb_host', PGPASSWORD: '', PGPASSFILE: passfile };
    const held = () =>
      freshSql(
        "SELECT pg_has_role('kb_host', 'pg_monitor', 'MEMBER') || ' ' || has_function_privilege('kb_host', 'pg_catalog.pg_switch_wal()', 'EXECUTE')",
      );
    expect(held()).toBe('false false');

    const dry = resultOf(reportOf(await prepare({ target: 'fresh', dryRun: true }, { hostEnv: asHost })));
    expect(dry.grants).toEqual({
      role: 'kb_host',
      granted: ['pg_monitor', 'EXECUTE ON FUNCTION pg_switch_wal()'],
    });
    expect(held()).toBe('false false');

    const run = await prepare({ target: 'fresh' }, { hostEnv: asHost });
    expect(resultOf(reportOf(run)).grants).toEqual({
      role: 'kb_host',
      granted: ['pg_monitor', 'EXECUTE ON FUNCTION pg_switch_wal()'],
    });
    expect(run.alerts[0]?.text).toContain(
      "granted pg_monitor and EXECUTE ON FUNCTION pg_switch_wal() to kb_host, the role the host's backups connect as",
    );
    expect(held()).toBe('true true');
    // What wal-switch.sh runs as that role now works.
    const asKbHost = { ...fresh, env: { ...fresh.env, ...asHost } };
    expect(
      psql(asKbHost, 'postgres', [
        '-A',
        '-t',
        '-c',
        'SELECT pg_switch_wal() IS NOT NULL, count(*) >= 0 FROM pg_ls_archive_statusdir()',
      ]).trim(),
    ).toBe('t|t');

    const again = resultOf(reportOf(await prepare({ target: 'fresh' }, { hostEnv: asHost })));
    expect(again.grants).toEqual({ role: 'kb_host', granted: [] });
    // A superuser, as the world's own role is, needs nothing.
    expect(resultOf(reportOf(await prepare({ target: 'fresh' }))).grants).toEqual({
      role: fresh.user,
      granted: [],
    });
  });

  it('in docker compose, a drifted conf is reported by option name, rewritten, and every tool runs in the service', async () => {
    const docker = dockerStandIn(COMPOSE_FILE, 'db');
    const rendered = readFileSync(conf, 'utf8');
    writeFileSync(
      conf,
      `${rendered.replace(/^pg1-port=\d+$/m, 'pg1-port=5999')}repo1-s3-key-secret=typed-in-by-hand\n`,
    );
    rmSync(join(fresh.dir, 'pgbackrest/log'), { recursive: true });
    const inDocker = targets.map((t) =>
      t.name === 'fresh'
        ? { ...t, postgres: { mode: 'docker', composeFile: COMPOSE_FILE, service: 'db' } }
        : t,
    );
    try {
      const run = await runIn(world, {
        workflow: 'prepare-host',
        input: { target: 'fresh' },
        functionEnv: { BACKUP_TARGETS: JSON.stringify(inDocker) },
        hostEnvByInstance: {
          [FRESH_INSTANCE]: { ...fresh.env, PATH: `${docker.bin}:${world.env.hostEnv.PATH}` },
        },
      });
      const result = resultOf(reportOf(run));
      expect(result).toMatchObject({
        config: {
          existed: true,
          state: 'written',
          changedOptions: ['fresh/pg1-port', 'fresh/repo1-s3-key-secret'],
        },
        createdPaths: [join(fresh.dir, 'pgbackrest/log')],
        settings: { changed: [], awaitingRestart: [] },
        stanza: 'created',
        check: 'passed',
      });
      expect(readFileSync(conf, 'utf8')).toBe(rendered);
      // Names only: what was typed into the file never reaches the history or the alert.
      expect(run.visibleText).not.toContain('typed-in-by-hand');
      expect(run.alerts[0]?.text).toContain(
        'options that differed: fresh/pg1-port, fresh/repo1-s3-key-secret',
      );
      // Files as the container's root, PostgreSQL and pgBackRest as the cluster's OS user.
      expect(docker.calls()).toEqual([
        'postgres psql',
        // The role the host's backups connect as: the service's own environment's.
        'root psql',
        'root sha256sum',
        'root cat',
        'root sh',
        'root sha256sum',
        'root test',
        'root test',
        'root sh',
        'postgres psql',
        // Its grants, judged as the superuser.
        'postgres psql',
        'postgres pgbackrest',
        'postgres pgbackrest',
      ]);
    } finally {
      docker.remove();
    }
  });
});

describe('the local stack', () => {
  it('prepared its own cluster with the same host script: the rendered conf, archiving on, the stanza in the repository', async () => {
    const config = parseConfig(world.env.functionEnv);
    const local = findTarget(config, 'local') as Target;
    expect(readFileSync(local.pgbackrest?.configFile ?? '', 'utf8')).toBe(pgbackrestConfOf(config, local));
    expect(world.sql('postgres', 'SHOW archive_mode')).toBe('on');
    expect(world.sql('postgres', 'SHOW archive_command')).toBe(archiveCommandOf(local));
    expect(world.sql('postgres', 'SHOW archive_timeout')).toBe('1min');
    expect(await keysUnder('pgbackrest/local/archive/local/')).toContain(
      'pgbackrest/local/archive/local/archive.info',
    );
    expect(world.env.physical).toEqual({ ready: true, lacking: [] });
  });
});

describe('prepare-host refuses, changing nothing', () => {
  it.each([
    [{ target: 'fresh', force: true }, 'InvalidInputError', '(input): Unrecognized key: "force"'],
    [{ target: 'fresh', dryRun: 'yes' }, 'InvalidInputError', 'dryRun: Invalid input: expected boolean'],
    [{ target: 'nowhere' }, 'NotFoundError', 'the configured targets are: local, fresh, logical-only'],
    [
      { target: 'logical-only' },
      'ConfigError',
      'The target "logical-only" has no pgbackrest settings in BACKUP_TARGETS, so its physical backups and WAL archiving are off; add "pgbackrest": {"dataDirectory": "<the cluster\'s data directory>"} to it and start the prepare-host workflow.',
    ],
  ])('%j', async (input, error, message) => {
    const run = await prepare(input);
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe(error);
    expect(run.record.cause).toContain(message);
    expect(run.host.sent).toEqual([]);
    expect(run.alerts.map((a) => a.state)).toEqual(['PlanPrepareHost']);
  });

  it('a target whose pgbackrest settings name another cluster: the host refuses before writing anything', async () => {
    const wrongConf = join(fresh.dir, 'wrong.conf');
    const wrong = targets.map((t) =>
      t.name === 'fresh'
        ? {
            ...t,
            pgbackrest: {
              ...(t.pgbackrest as object),
              dataDirectory: '/var/lib/postgresql/15/main',
              configFile: wrongConf,
            },
          }
        : t,
    );
    const before = settingsNow();
    const run = await runIn(world, {
      workflow: 'prepare-host',
      input: { target: 'fresh' },
      functionEnv: { BACKUP_TARGETS: JSON.stringify(wrong) },
      hostEnvByInstance: { [FRESH_INSTANCE]: fresh.env },
    });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error, run.record.cause).toBe('PrepareHostFailedError');
    expect(run.record.cause).toContain('prepare-host did not prepare fresh');
    expect(run.record.cause).toContain(
      `keeps its data in ${fresh.dataDir}, but the target's pgbackrest.dataDirectory is /var/lib/postgresql/15/main`,
    );
    expect(existsSync(wrongConf)).toBe(false);
    expect(settingsNow()).toBe(before);
  });
});

import { describe, expect, it } from 'vitest';
import { isDumpPlan, planBackup as plan } from '../../shared/backup/database-plan.ts';
import type { Catalog } from '../../shared/catalog/catalog.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { ConfigError, InvalidInputError, NotFoundError } from '../../shared/core/errors.ts';

/** Full backups do not read the catalog. */
const noCatalog = { list: async () => [] } as unknown as Catalog;
/** The logical dumps' runs (the WAL runs have tests of their own below). */
const planBackup = async (c: typeof config, r: unknown) => (await plan(c, noCatalog, r)).filter(isDumpPlan);

const config = parseConfig({
  BACKUP_BUCKET: 'kennel-backups-prod',
  BACKUP_TARGETS: JSON.stringify([
    { name: 'primary', tag: { key: 'kennel-backup-target', value: 'db' }, database: 'kennel_prod' },
    {
      name: 'reporting',
      instanceIds: ['i-0123456789abcdef0'],
      database: 'kennel_reports',
      backupDir: '/srv/backup',
    },
  ]),
  ALERT_WEBHOOK_PARAMETER: '/kennel-backup/prod/alert-webhook-url',
  RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/prod/restore-check-database-url',
});
const request = (input: unknown) => ({
  input,
  executionId: 'arn:aws:states:eu-west-1:123456789012:execution:kennel-backup-prod-database-backup:abc',
  startedAt: '2026-11-26T02:00:00.123Z',
});

describe('planBackup', () => {
  it('plans every target with its database by default, each with its own keys', async () => {
    const plans = await planBackup(config, request({}));
    expect(plans.map((p) => [p.target, p.database])).toEqual([
      ['primary', 'kennel_prod'],
      ['reporting', 'kennel_reports'],
    ]);
    expect(new Set(plans.map((p) => p.archiveKey)).size).toBe(2);
  });

  it('gives sortable per-run keys, a local directory and a scratch database', async () => {
    const [planned] = await planBackup(config, request({ target: 'primary' }));
    if (!planned) throw new Error('no plan');
    expect(planned.target).toBe('primary');
    expect(planned.database).toBe('kennel_prod');
    expect(planned.runId).toMatch(/^20261126T020000Z_[0-9a-f]{8}$/);
    expect(planned.archiveKey).toBe(
      `database/full/primary/kennel_prod/2026/11/26/kennel_prod_full_${planned.runId}.sql.zst`,
    );
    expect(planned.manifestKey).toBe(`${planned.archiveKey}.manifest.json`);
    expect(planned.localDir).toBe('/opt/backup/database/full/kennel_prod');
    expect(planned.scratchDatabase).toBe(`kb_restore_test_${planned.runId.toLowerCase()}`);
    expect(planned.scratchDatabase.length).toBeLessThanOrEqual(63);
  });

  it('takes the target and database from the input', async () => {
    const planned = await planBackup(config, request({ target: 'reporting', database: 'kennel_archive' }));
    expect(planned).toHaveLength(1);
    expect(planned[0]).toMatchObject({
      target: 'reporting',
      database: 'kennel_archive',
      localDir: '/srv/backup/database/full/kennel_archive',
    });
  });

  it('gives two executions started in the same second different keys', async () => {
    const [a] = await planBackup(config, request({}));
    const [b] = await planBackup(config, { ...request({}), executionId: `${request({}).executionId}-2` });
    expect(a?.archiveKey).not.toBe(b?.archiveKey);
  });

  it.each([
    [{ database: 'Kennel-Prod' }, /database: must be a lower-case PostgreSQL identifier/],
    [{ database: 'kennel_prod && reboot' }, /database/],
    [{ database: 'a'.repeat(64) }, /database/],
    [{ target: '../etc' }, /target/],
    [
      { kind: 'weekly' },
      /kind: Invalid option: expected one of "full"\|"monthly"\|"incremental"\|"transaction-logs"/,
    ],
    [{ schedule: 'daily' }, /Unrecognized key.*schedule/],
    // Row windows are gone: no run takes a start.
    [{ kind: 'full', since: '2026-11-25T00:00:00Z' }, /Unrecognized key.*since/],
    [
      { kind: 'incremental', database: 'kennel_prod' },
      /An incremental backup is pgBackRest's and holds the whole cluster, not one database: leave "database" out/,
    ],
    [{ kind: 'transaction-logs', database: 'kennel_prod' }, /A transaction-logs backup is pgBackRest's/],
    [[], /expected object/],
  ])('refuses %j with a clear error', async (input, message) => {
    const refused = planBackup(config, request(input));
    await expect(refused).rejects.toThrow(InvalidInputError);
    await expect(refused).rejects.toThrow(message);
    await expect(refused).rejects.toThrow(/nothing was started/i);
  });

  it('names the configured targets when the input names another', async () => {
    await expect(planBackup(config, request({ target: 'replica' }))).rejects.toThrow(NotFoundError);
    await expect(planBackup(config, request({ target: 'replica' }))).rejects.toThrow(
      'the configured targets are: primary, reporting',
    );
  });
});

describe('planBackup of the long-term monthly dump', () => {
  it('plans a dump of every database that leaves no table out, under its own prefix, and no physical run', async () => {
    const plans = await plan(config, noCatalog, request({ kind: 'monthly' }));
    expect(plans.every(isDumpPlan)).toBe(true);
    expect(plans.map((p) => (isDumpPlan(p) ? [p.kind, p.target, p.database] : []))).toEqual([
      ['monthly', 'primary', 'kennel_prod'],
      ['monthly', 'reporting', 'kennel_reports'],
    ]);
    const [primary] = plans.filter(isDumpPlan);
    expect(primary?.archiveKey).toBe(
      `database/monthly/primary/kennel_prod/2026/11/26/kennel_prod_monthly_${primary?.runId}.sql.zst`,
    );
    expect(primary?.localDir).toBe('/opt/backup/database/monthly/kennel_prod');
  });
});

describe('planBackup of the physical kinds: no dump, and a target without pgBackRest shown as off', () => {
  const withPgbackrest = parseConfig({
    BACKUP_BUCKET: 'kennel-backups-prod',
    BACKUP_TARGETS: JSON.stringify([
      {
        name: 'primary',
        instanceIds: ['i-0123456789abcdef0'],
        database: 'kennel_prod',
        databases: ['kennel_prod', 'kennel_archive'],
        pgbackrest: { dataDirectory: '/var/lib/postgresql/15/main' },
      },
      { name: 'reporting', instanceIds: ['i-0fedcba9876543210'], database: 'kennel_reports' },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/a',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
  });
  /** A catalog with no physical backup: an incremental's base is none. */
  const emptyCatalog = { listKeys: async () => [], newestWhere: async () => undefined } as unknown as Catalog;
  const plans = (input: unknown) => plan(withPgbackrest, emptyCatalog, request(input));
  const runOf = (p: Awaited<ReturnType<typeof plans>>[number]) =>
    'engine' in p ? `${p.engine}${'off' in p ? ' off' : ''}:${p.target}` : `dump:${p.database}`;

  it('transaction logs: one WAL run per target and nothing else; the target without pgBackRest is off, saying what to add', async () => {
    const all = await plans({ kind: 'transaction-logs' });
    expect(all.map(runOf)).toEqual(['wal:primary', 'wal off:reporting']);
    const [wal, off] = all;
    expect(wal).toEqual({
      engine: 'wal',
      // Every 15 minutes, the WAL a recovery from the newest backup replays.
      proves: 'newest-backup',
      kind: 'transaction-logs',
      target: 'primary',
      runId: expect.stringMatching(/^20261126T020000Z_[0-9a-f]{8}$/),
      executionId: request({}).executionId,
      startedAt: '2026-11-26T02:00:00.123Z',
    });
    expect(off).toEqual({
      engine: 'wal',
      kind: 'transaction-logs',
      target: 'reporting',
      runId: expect.stringMatching(/^20261126T020000Z_[0-9a-f]{8}$/),
      off: 'The target "reporting" has no pgbackrest settings in BACKUP_TARGETS, so its WAL is not archived and no transaction-logs run was made: nothing but the daily logical dump protects its data (an RPO of a day, not a minute); add "pgbackrest": {"dataDirectory": "<the cluster\'s data directory>"} to it and start the prepare-host workflow.',
    });
  });

  it('incremental: one pgBackRest run per target and nothing else; the target without pgBackRest is off', async () => {
    const all = await plans({ kind: 'incremental' });
    expect(all.map(runOf)).toEqual(['pgbackrest:primary', 'pgbackrest off:reporting']);
    expect(all[1]).toMatchObject({
      off: expect.stringContaining(
        'The target "reporting" has no pgbackrest settings in BACKUP_TARGETS, so no incremental backup was taken: nothing but the daily logical dump protects its data;',
      ),
    });
  });

  it('full: the dumps, then one pgBackRest run per target, each with its own id and record key', async () => {
    const all = await plans({ kind: 'full' });
    expect(all.map(runOf)).toEqual([
      'dump:kennel_prod',
      'dump:kennel_archive',
      'dump:kennel_reports',
      'pgbackrest:primary',
      'pgbackrest off:reporting',
    ]);
    const [primary, reporting] = all.slice(3);
    expect(primary).toEqual({
      engine: 'pgbackrest',
      kind: 'full',
      target: 'primary',
      runId: expect.stringMatching(/^20261126T020000Z_[0-9a-f]{8}$/),
      executionId: request({}).executionId,
      startedAt: request({}).startedAt,
      bucket: 'kennel-backups-prod',
      recordKey: `catalog/pgbackrest/primary/2026/11/26/${(primary as { runId: string }).runId}.json`,
      base: null,
    });
    expect(all.filter(isDumpPlan).map((p) => p.runId)).not.toContain((primary as { runId: string }).runId);
    expect((reporting as { off: string }).off).toContain(
      'so no full physical backup was taken (its logical dumps ran as usual); add "pgbackrest"',
    );
  });

  it('plans no physical run when a full names a database (a physical backup holds the whole cluster)', async () => {
    expect((await plans({ target: 'primary', database: 'kennel_archive' })).map(runOf)).toEqual([
      'dump:kennel_archive',
    ]);
  });
});

describe('parseConfig', () => {
  it('lists every missing or malformed variable at once', () => {
    expect(() => parseConfig({ BACKUP_TARGETS: '[not json' })).toThrow(ConfigError);
    try {
      parseConfig({ BACKUP_TARGETS: '[not json' });
    } catch (error) {
      const message = (error as Error).message;
      for (const name of [
        'BACKUP_BUCKET',
        'BACKUP_TARGETS',
        'ALERT_WEBHOOK_PARAMETER',
        'RESTORE_CHECK_DATABASE_URL_PARAMETER',
      ]) {
        expect(message).toContain(name);
      }
    }
  });

  it('refuses a target with both or neither of instanceIds and tag', () => {
    const base = {
      BACKUP_BUCKET: 'b-b-b',
      ALERT_WEBHOOK_PARAMETER: '/a',
      RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
    };
    expect(() =>
      parseConfig({ ...base, BACKUP_TARGETS: JSON.stringify([{ name: 'x', database: 'd' }]) }),
    ).toThrow(/instanceIds or tag/);
  });
});

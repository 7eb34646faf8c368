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
    [{ kind: 'weekly' }, /kind: Invalid option: expected one of "full"\|"incremental"\|"transaction-logs"/],
    [{ schedule: 'daily' }, /Unrecognized key.*schedule/],
    [{ kind: 'full', since: '2026-11-25T00:00:00Z' }, /A full backup takes no "since"/],
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

describe('planBackup of transaction logs', () => {
  const withPgbackrest = parseConfig({
    BACKUP_BUCKET: 'kennel-backups-prod',
    BACKUP_TARGETS: JSON.stringify([
      {
        name: 'primary',
        instanceIds: ['i-0123456789abcdef0'],
        database: 'kennel_prod',
        databases: ['kennel_prod', 'kennel_audit'],
        pgbackrest: { dataDirectory: '/var/lib/postgresql/15/main' },
      },
      { name: 'reporting', instanceIds: ['i-0123456789abcdef1'], database: 'kennel_reports' },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/a',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
  });
  const logs = (input: Record<string, unknown>) =>
    plan(
      withPgbackrest,
      { newestOf: async () => ({ newestKey: undefined, newestVerified: undefined }) } as unknown as Catalog,
      request({ kind: 'transaction-logs', ...input }),
    );

  it('adds one WAL run per target archiving with pgBackRest, first, beside the dumps', async () => {
    const plans = await logs({});
    expect(plans.map((p) => [p.target, isDumpPlan(p) ? p.database : 'wal'])).toEqual([
      ['primary', 'wal'],
      ['primary', 'kennel_prod'],
      ['primary', 'kennel_audit'],
      ['reporting', 'kennel_reports'],
    ]);
    const [wal] = plans;
    expect(wal).toEqual({
      engine: 'wal',
      kind: 'transaction-logs',
      target: 'primary',
      runId: expect.stringMatching(/^20261126T020000Z_[0-9a-f]{8}$/),
      executionId: request({}).executionId,
      startedAt: '2026-11-26T02:00:00.123Z',
    });
    expect(new Set(plans.map((p) => p.runId)).size).toBe(4);
  });

  it('plans no WAL run for the other kinds, nor for a target without pgBackRest', async () => {
    const wal = (plans: Awaited<ReturnType<typeof plan>>) =>
      plans.filter((p) => 'engine' in p && p.engine === 'wal');
    expect(wal(await plan(withPgbackrest, noCatalog, request({ kind: 'full' })))).toEqual([]);
    expect((await logs({ target: 'reporting' })).every(isDumpPlan)).toBe(true);
  });
});

describe('planBackup: the pgBackRest runs', () => {
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
  /** A catalog with no backup: an incremental's dump window starts at the beginning, and its physical base is none. */
  const emptyCatalog = {
    newestOf: async () => ({ newestKey: undefined, newestVerified: undefined }),
    listKeys: async () => [],
  } as unknown as Catalog;
  const physical = async (input: unknown) =>
    (await plan(withPgbackrest, emptyCatalog, request(input))).filter(
      (p) => 'engine' in p && p.engine === 'pgbackrest',
    );

  it.each(['full', 'incremental'] as const)(
    'plans one %s per target, after its dumps, with its own id and record key',
    async (kind) => {
      const all = await plan(withPgbackrest, emptyCatalog, request({ kind }));
      // Dumps first (one per database), then one pgBackRest run per target.
      expect(all.map((p) => ('engine' in p ? `${p.engine}:${p.target}` : `dump:${p.database}`))).toEqual([
        'dump:kennel_prod',
        'dump:kennel_archive',
        'dump:kennel_reports',
        'pgbackrest:primary',
        'pgbackrest:reporting',
      ]);
      const [primary, reporting] = all.slice(3);
      expect(primary).toEqual({
        engine: 'pgbackrest',
        kind,
        target: 'primary',
        runId: expect.stringMatching(/^20261126T020000Z_[0-9a-f]{8}$/),
        executionId: request({}).executionId,
        startedAt: request({}).startedAt,
        bucket: 'kennel-backups-prod',
        recordKey: `catalog/pgbackrest/primary/2026/11/26/${(primary as { runId: string }).runId}.json`,
        base: null,
      });
      // Its id is none of the dumps' ids.
      const dumpIds = all.filter(isDumpPlan).map((p) => p.runId);
      expect(dumpIds).not.toContain((primary as { runId: string }).runId);
      // A target without pgBackRest settings: shown as off, saying what to add, never sent to the host.
      expect(reporting).toEqual({
        engine: 'pgbackrest',
        kind,
        target: 'reporting',
        runId: expect.stringMatching(/^20261126T020000Z_[0-9a-f]{8}$/),
        off: expect.stringContaining(
          `The target "reporting" has no pgbackrest settings in BACKUP_TARGETS, so no ${kind} physical backup was taken; its logical dumps ran as usual.`,
        ),
      });
      expect((reporting as { off: string }).off).toContain('start the prepare-host workflow');
    },
  );

  it('plans none for transaction logs, nor when the input names a database (a physical backup holds the whole cluster)', async () => {
    expect(await physical({ kind: 'transaction-logs' })).toEqual([]);
    expect(await physical({ database: 'kennel_archive' })).toEqual([]);
    expect(await physical({ target: 'primary' })).toHaveLength(1);
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

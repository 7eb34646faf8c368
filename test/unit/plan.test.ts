import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config.ts';
import { ConfigError, InvalidInputError, NotFoundError } from '../../shared/errors.ts';
import { planBackup } from '../../shared/plan.ts';

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
  it('defaults to the first target and its database, with sortable per-run keys', () => {
    const plan = planBackup(config, request({}));
    expect(plan.target).toBe('primary');
    expect(plan.database).toBe('kennel_prod');
    expect(plan.runId).toMatch(/^20261126T020000Z_[0-9a-f]{8}$/);
    expect(plan.archiveKey).toBe(
      `database/full/kennel_prod/2026/11/26/kennel_prod_full_${plan.runId}.sql.zst`,
    );
    expect(plan.manifestKey).toBe(`${plan.archiveKey}.manifest.json`);
    expect(plan.localDir).toBe('/opt/backup/database/full/kennel_prod');
    expect(plan.scratchDatabase).toBe(`kb_restore_test_${plan.runId.toLowerCase()}`);
    expect(plan.scratchDatabase.length).toBeLessThanOrEqual(63);
  });

  it('takes the target and database from the input', () => {
    const plan = planBackup(config, request({ target: 'reporting', database: 'kennel_archive' }));
    expect(plan).toMatchObject({
      target: 'reporting',
      database: 'kennel_archive',
      localDir: '/srv/backup/database/full/kennel_archive',
    });
  });

  it('gives two executions started in the same second different keys', () => {
    const a = planBackup(config, request({}));
    const b = planBackup(config, { ...request({}), executionId: `${request({}).executionId}-2` });
    expect(a.archiveKey).not.toBe(b.archiveKey);
  });

  it.each([
    [{ database: 'Kennel-Prod' }, /database: must be a lower-case PostgreSQL identifier/],
    [{ database: 'kennel_prod && reboot' }, /database/],
    [{ database: 'a'.repeat(64) }, /database/],
    [{ target: '../etc' }, /target/],
    [{ kind: 'full' }, /Unrecognized key.*kind/],
    [[], /expected object/],
  ])('refuses %j with a clear error', (input, message) => {
    expect(() => planBackup(config, request(input))).toThrow(InvalidInputError);
    expect(() => planBackup(config, request(input))).toThrow(message);
    expect(() => planBackup(config, request(input))).toThrow(/nothing was started/);
  });

  it('names the configured targets when the input names another', () => {
    expect(() => planBackup(config, request({ target: 'replica' }))).toThrow(NotFoundError);
    expect(() => planBackup(config, request({ target: 'replica' }))).toThrow(
      'the configured targets are: primary, reporting',
    );
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

import { type Config, parseConfig } from '../../shared/core/config.ts';

/** The smallest valid configuration: one target with one database; `env` adds or replaces variables. */
export function testConfig(env: Record<string, string> = {}): Config {
  return parseConfig({
    BACKUP_BUCKET: 'kennel-backups-test',
    BACKUP_TARGETS: JSON.stringify([
      { name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/a',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
    ...env,
  });
}

/** testConfig's target with pgBackRest settings: the physical kinds, WAL runs and archiver checks are on for it. */
export const PRIMARY_WITH_PGBACKREST = {
  name: 'primary',
  instanceIds: ['i-0123456789abcdef0'],
  database: 'kennel_prod',
  pgbackrest: { dataDirectory: '/var/lib/postgresql/15/main' },
};

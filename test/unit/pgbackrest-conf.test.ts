import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/core/config.ts';
import { InvalidInputError } from '../../shared/core/errors.ts';
import { pgbackrestPlaceOptions, renderPgbackrestConf } from '../../shared/host/pgbackrest-conf.ts';
import { placeOf } from '../../shared/restore/source.ts';

const stanza = {
  target: 'primary',
  pgPath: '/var/lib/postgresql/15/main',
  pgPort: 5432,
  pgSocketPath: '/var/run/postgresql',
  repository: {
    bucket: 'kennel-backups',
    region: 'eu-west-1',
    endpoint: 's3.eu-west-1.amazonaws.com',
    uriStyle: 'host',
    keyType: 'auto',
  },
  lockPath: '/tmp/pgbackrest',
  logPath: '/var/log/pgbackrest',
} as const;

describe('renderPgbackrestConf', () => {
  it("puts the repository under the target's own prefix, zstd, the instance role's credentials and no key", () => {
    const conf = renderPgbackrestConf(stanza);
    expect(conf).toContain('repo1-path=/pgbackrest/primary\n');
    expect(conf).toContain('repo1-s3-key-type=auto\n');
    expect(conf).toContain('compress-type=zst\n');
    expect(conf).toContain('[primary]\npg1-path=/var/lib/postgresql/15/main\npg1-port=5432\n');
    expect(conf).not.toMatch(/repo1-s3-key=|key-secret|storage-ca-file|storage-port/);
  });

  it('refuses a value that would add an option of its own', () => {
    expect(() => renderPgbackrestConf({ ...stanza, pgPath: '/data\nrepo1-path=/elsewhere' })).toThrow(
      /pg1-path .* would not be one option of its own/s,
    );
  });
});

describe("pgbackrestPlaceOptions: a reader's overrides for the vault's copy of the repository", () => {
  const deployment = {
    BACKUP_BUCKET: 'kennel-backups-prod',
    BACKUP_TARGETS: JSON.stringify([
      { name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/a',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
    AWS_REGION: 'eu-west-1',
  };
  const vault = { VAULT_BUCKET: 'kennel-backup-vault-prod', VAULT_REGION: 'eu-central-1' };

  it("names the vault's bucket, its region and that region's endpoint on AWS; the local S3's host locally", () => {
    const aws = parseConfig({ ...deployment, ...vault });
    expect(pgbackrestPlaceOptions(aws, placeOf(aws, 'vault'))).toEqual([
      '--repo1-s3-bucket=kennel-backup-vault-prod',
      '--repo1-s3-region=eu-central-1',
      '--repo1-s3-endpoint=s3.eu-central-1.amazonaws.com',
    ]);
    expect(placeOf(aws, 'primary')).toEqual({ bucket: 'kennel-backups-prod', region: 'eu-west-1' });
    const local = parseConfig({ ...deployment, ...vault, S3_ENDPOINT_URL: 'https://127.0.0.1:4569' });
    expect(pgbackrestPlaceOptions(local, placeOf(local, 'vault'))).toContain('--repo1-s3-endpoint=localhost');
  });

  it('refuses the vault of a deployment without one, and a value that would be two options', () => {
    expect(() => placeOf(parseConfig(deployment), 'vault')).toThrow(InvalidInputError);
    const aws = parseConfig({ ...deployment, ...vault });
    expect(() =>
      pgbackrestPlaceOptions(aws, { bucket: 'a --repo1-path=/x', region: 'eu-central-1' }),
    ).toThrow(/repo1-s3-bucket .* would not be one option of its own/s);
  });
});

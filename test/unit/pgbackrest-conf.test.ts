import { describe, expect, it } from 'vitest';
import { renderPgbackrestConf } from '../../shared/host/pgbackrest-conf.ts';

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

import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/core/config.ts';
import { ConfigError } from '../../shared/core/errors.ts';

/**
 * parseConfig's output and its every message, word for word: a deployment reads
 * them in a failed cold start or a failed `serverless package`, so a change of
 * schema library must not change a letter of them.
 */

const HEAD = "The function's environment is incomplete or malformed; fix the deployment:";
const SCHEMA_DEFAULTS = {
  postgres: { mode: 'host' },
  backupDir: '/opt/backup',
  files: {
    configuration: [
      '/opt/kennel/.env',
      '/opt/kennel/.env.production',
      '/opt/kennel/docker-compose.prod.yml',
      '/opt/kennel/nginx.conf',
      '/opt/kennel/ssl',
      '/etc/nginx',
      '/etc/ssl',
      '/etc/fail2ban',
      '/etc/ufw',
    ],
    application: ['/opt/kennel'],
    static: ['/opt/kennel/public', '/opt/kennel/.next/static', '/opt/kennel/.next/standalone'],
    applicationExcludes: ['node_modules', '.git', '.next', 'coverage', 'dist', '.env*', 'ssl/'],
  },
  application: {
    stop: ['docker compose -f /opt/kennel/docker-compose.prod.yml stop app'],
    start: ['docker compose -f /opt/kennel/docker-compose.prod.yml start app'],
  },
  afterFilesRestore: {
    application: [
      'cd /opt/kennel && npm ci',
      'cd /opt/kennel && npm run build',
      'docker compose -f /opt/kennel/docker-compose.prod.yml restart app',
    ],
    configuration: [
      'nginx -t',
      'systemctl reload nginx',
      'docker compose -f /opt/kennel/docker-compose.prod.yml restart app',
    ],
    static: [],
  },
};

const primary = {
  name: 'primary',
  tag: { key: 'kennel-backup-target', value: 'db' },
  database: 'kennel_prod',
};
const env = {
  BACKUP_BUCKET: 'kennel-backups-prod',
  BACKUP_TARGETS: JSON.stringify([primary]),
  ALERT_WEBHOOK_PARAMETER: '/kennel-backup/prod/alert-webhook-url',
  RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/prod/restore-check-database-url',
};
/** The environment with one target: `primary` with `changes` over it. */
const withTarget = (changes: object) => ({
  ...env,
  BACKUP_TARGETS: JSON.stringify([{ ...primary, ...changes }]),
});

/** The ConfigError's whole message, or a failure when parseConfig accepts. */
function refusal(environment: Record<string, string | undefined>): string {
  try {
    parseConfig(environment);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('parseConfig accepted the environment');
}
const listed = (...problems: string[]) => `${HEAD}\n- ${problems.join('\n- ')}`;

describe('parseConfig accepts', () => {
  it('the required variables alone, and fills in every default', () => {
    expect(parseConfig(env)).toStrictEqual({
      STAGE: 'dev',
      AWS_REGION: 'us-east-1',
      BACKUP_BUCKET: 'kennel-backups-prod',
      BACKUP_TARGETS: [{ ...primary, ...SCHEMA_DEFAULTS }],
      EXCLUDED_TABLES: [
        { schema: 'public', name: 'audit_logs' },
        { schema: 'public', name: 'session_logs' },
      ],
      HOST_COMMAND_TIMEOUT_SECONDS: 3600,
      DISK_USAGE_ALERT_PERCENT: 80,
      ALERT_WEBHOOK_PARAMETER: '/kennel-backup/prod/alert-webhook-url',
      RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/prod/restore-check-database-url',
    });
  });

  it('every optional variable, coercing numbers and splitting the table list', () => {
    const config = parseConfig({
      ...env,
      STAGE: 'prod',
      AWS_REGION: 'eu-west-1',
      EXCLUDED_TABLES: 'public.audit_logs,, "Billing"."Audit, Log ""v2"".x" ,"a.b".c',
      HOST_COMMAND_TIMEOUT_SECONDS: ' 120 ',
      DISK_USAGE_ALERT_PERCENT: '85',
      ALERT_TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:kennel-alerts',
      S3_ENDPOINT_URL: 'http://127.0.0.1:4568',
      S3_CA_BUNDLE: '/var/lib/kennel/tls/cert.pem',
    });
    expect(config).toMatchObject({
      STAGE: 'prod',
      AWS_REGION: 'eu-west-1',
      EXCLUDED_TABLES: [
        { schema: 'public', name: 'audit_logs' },
        { schema: 'Billing', name: 'Audit, Log "v2".x' },
        { schema: 'a.b', name: 'c' },
      ],
      HOST_COMMAND_TIMEOUT_SECONDS: 120,
      DISK_USAGE_ALERT_PERCENT: 85,
      ALERT_TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:kennel-alerts',
      S3_ENDPOINT_URL: 'http://127.0.0.1:4568',
      S3_CA_BUNDLE: '/var/lib/kennel/tls/cert.pem',
    });
    expect(parseConfig({ ...env, EXCLUDED_TABLES: '' }).EXCLUDED_TABLES).toStrictEqual([]);
  });

  it('a vault, its bucket and region together, and empty ones as none (CloudFormation without a vault)', () => {
    expect(
      parseConfig({ ...env, VAULT_BUCKET: 'kennel-backup-vault-prod', VAULT_REGION: 'eu-central-1' }),
    ).toMatchObject({
      VAULT_BUCKET: 'kennel-backup-vault-prod',
      VAULT_REGION: 'eu-central-1',
    });
    const none = parseConfig({ ...env, VAULT_BUCKET: '', VAULT_REGION: '' });
    expect([none.VAULT_BUCKET, none.VAULT_REGION]).toEqual([undefined, undefined]);
  });

  it("a target's own settings, with the defaults for what it leaves out, part by part", () => {
    const [target] = parseConfig(
      withTarget({
        tag: undefined,
        instanceIds: ['i-0123456789abcdef0', 'mi-0123456789abcdef0'],
        databases: ['kennel_prod', 'kennel_reports'],
        postgres: { mode: 'docker', composeFile: '/opt/kennel/docker-compose.prod.yml', service: 'db' },
        backupDir: '/srv/backup',
        files: { application: ['/srv/app'] },
        application: { stop: ['systemctl stop kennel'] },
        afterFilesRestore: { static: ['systemctl reload nginx'] },
      }),
    ).BACKUP_TARGETS;
    expect(target).toStrictEqual({
      name: 'primary',
      instanceIds: ['i-0123456789abcdef0', 'mi-0123456789abcdef0'],
      database: 'kennel_prod',
      databases: ['kennel_prod', 'kennel_reports'],
      postgres: { mode: 'docker', composeFile: '/opt/kennel/docker-compose.prod.yml', service: 'db' },
      backupDir: '/srv/backup',
      files: { ...SCHEMA_DEFAULTS.files, application: ['/srv/app'] },
      application: { ...SCHEMA_DEFAULTS.application, stop: ['systemctl stop kennel'] },
      afterFilesRestore: { ...SCHEMA_DEFAULTS.afterFilesRestore, static: ['systemctl reload nginx'] },
    });
  });
});

describe('parseConfig refuses, word for word,', () => {
  it('an environment without the required variables', () => {
    expect(refusal({})).toBe(
      listed(
        'BACKUP_BUCKET is required: give a string',
        'BACKUP_TARGETS is required: give a string',
        'ALERT_WEBHOOK_PARAMETER is required: give a string',
        'RESTORE_CHECK_DATABASE_URL_PARAMETER is required: give a string',
      ),
    );
  });

  it('a bad bucket name, topic ARN, stage, parameter names and endpoint', () => {
    expect(
      refusal({
        ...env,
        STAGE: 'Prod',
        BACKUP_BUCKET: 'Kennel_Backups',
        ALERT_TOPIC_ARN: 'arn:aws:sqs:eu-west-1:123456789012:kennel-alerts',
        ALERT_WEBHOOK_PARAMETER: 'alert-webhook-url',
        RESTORE_CHECK_DATABASE_URL_PARAMETER: '',
        S3_ENDPOINT_URL: 'localhost',
      }),
    ).toBe(
      listed(
        'STAGE: Invalid string: must match pattern /^[a-z][a-z0-9-]*$/',
        'BACKUP_BUCKET: Invalid string: must match pattern /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/',
        'ALERT_WEBHOOK_PARAMETER: Invalid string: must start with "/"',
        'ALERT_TOPIC_ARN: must be an SNS topic ARN',
        'RESTORE_CHECK_DATABASE_URL_PARAMETER: Invalid string: must start with "/"',
        'S3_ENDPOINT_URL: Invalid URL',
      ),
    );
  });

  it('numbers that are not numbers, not whole or out of range', () => {
    expect(
      refusal({ ...env, HOST_COMMAND_TIMEOUT_SECONDS: 'an hour', DISK_USAGE_ALERT_PERCENT: '101' }),
    ).toBe(
      listed(
        'HOST_COMMAND_TIMEOUT_SECONDS: Invalid input: expected number, received NaN',
        'DISK_USAGE_ALERT_PERCENT: Too big: expected number to be <=100',
      ),
    );
    expect(refusal({ ...env, HOST_COMMAND_TIMEOUT_SECONDS: '1.5', DISK_USAGE_ALERT_PERCENT: '0' })).toBe(
      listed(
        'HOST_COMMAND_TIMEOUT_SECONDS: Invalid input: expected int, received number',
        'DISK_USAGE_ALERT_PERCENT: Too small: expected number to be >=1',
      ),
    );
    expect(refusal({ ...env, HOST_COMMAND_TIMEOUT_SECONDS: '', DISK_USAGE_ALERT_PERCENT: '80' })).toBe(
      listed('HOST_COMMAND_TIMEOUT_SECONDS: Too small: expected number to be >=1'),
    );
    expect(refusal({ ...env, HOST_COMMAND_TIMEOUT_SECONDS: '172801' })).toBe(
      listed('HOST_COMMAND_TIMEOUT_SECONDS: Too big: expected number to be <=172800'),
    );
  });

  it('an excluded table without its schema, or not written as SQL writes it, by its place in the list', () => {
    expect(refusal({ ...env, EXCLUDED_TABLES: 'audit_logs,public.session_logs' })).toBe(
      listed('EXCLUDED_TABLES.0: audit_logs names no schema: qualify it, e.g. public.audit_logs'),
    );
    expect(refusal({ ...env, EXCLUDED_TABLES: 'public.Sessions,a.b.c,public."x\ny"' })).toBe(
      listed(
        'EXCLUDED_TABLES.0: public.Sessions: "Sessions" is not a lower-case identifier; double-quote a name that has capitals, spaces or other characters (as "Sessions")',
        'EXCLUDED_TABLES.1: a.b.c: a table is named by two parts, schema and name; double-quote a part that holds a dot (public."a.b")',
        'EXCLUDED_TABLES.2: public."x\ny": a name holds a control character',
      ),
    );
    expect(refusal({ ...env, EXCLUDED_TABLES: 'public."open' })).toBe(
      listed('EXCLUDED_TABLES.0: public."open: a double quote is not closed'),
    );
  });

  it('BACKUP_TARGETS that is not JSON, not a list, or empty', () => {
    expect(refusal({ ...env, BACKUP_TARGETS: '[{"name": "primary",' })).toBe(
      listed('BACKUP_TARGETS: is not valid JSON'),
    );
    expect(refusal({ ...env, BACKUP_TARGETS: '{}' })).toBe(
      listed('BACKUP_TARGETS: Invalid input: expected array, received object'),
    );
    expect(refusal({ ...env, BACKUP_TARGETS: '[]' })).toBe(
      listed('BACKUP_TARGETS: Too small: expected array to have >=1 items'),
    );
  });

  it('a target with both instanceIds and tag, or neither', () => {
    expect(refusal(withTarget({ instanceIds: ['i-0123456789abcdef0'] }))).toBe(
      listed('BACKUP_TARGETS.0: give either instanceIds or tag'),
    );
    expect(refusal(withTarget({ tag: undefined }))).toBe(
      listed('BACKUP_TARGETS.0: give either instanceIds or tag'),
    );
  });

  it("a target's malformed names, ids, tag and paths, each at its path", () => {
    expect(
      refusal(
        withTarget({
          name: 'Primary',
          database: 'kennel-prod',
          tag: { key: 'a key', value: '' },
          databases: [],
          backupDir: '/opt/../etc',
        }),
      ),
    ).toBe(
      listed(
        'BACKUP_TARGETS.0.name: must be lower case letters, digits and -, starting with a letter',
        'BACKUP_TARGETS.0.tag.key: Invalid string: must match pattern /^[\\w.:/=+@-]{1,128}$/',
        'BACKUP_TARGETS.0.tag.value: Invalid string: must match pattern /^[\\w.:/=+@ -]{1,256}$/',
        'BACKUP_TARGETS.0.database: must be a lower-case PostgreSQL identifier: letters, digits and _, starting with a letter or _, at most 63 characters',
        'BACKUP_TARGETS.0.databases: Too small: expected array to have >=1 items',
        'BACKUP_TARGETS.0.backupDir: must not contain ..',
      ),
    );
    expect(refusal(withTarget({ tag: undefined, instanceIds: ['x-1'] }))).toBe(
      listed('BACKUP_TARGETS.0.instanceIds.0: Invalid string: must match pattern /^(i|mi)-[0-9a-f]{8,17}$/'),
    );
    expect(refusal(withTarget({ tag: undefined, instanceIds: [] }))).toBe(
      listed('BACKUP_TARGETS.0.instanceIds: Too small: expected array to have >=1 items'),
    );
    expect(refusal(withTarget({ backupDir: 'backup' }))).toBe(
      listed('BACKUP_TARGETS.0.backupDir: must be an absolute path of letters, digits, ., _, - and /'),
    );
  });

  it("a target's PostgreSQL location, file lists and commands", () => {
    expect(refusal(withTarget({ postgres: { mode: 'k8s' } }))).toBe(
      listed("BACKUP_TARGETS.0.postgres.mode: Invalid discriminator value. Expected 'host' | 'docker'"),
    );
    expect(refusal(withTarget({ postgres: { mode: 'docker' } }))).toBe(
      listed(
        'BACKUP_TARGETS.0.postgres.composeFile is required: give a string',
        'BACKUP_TARGETS.0.postgres.service is required: give a string',
      ),
    );
    expect(
      refusal(
        withTarget({
          files: { static: [], applicationExcludes: ['a/b'] },
          application: { start: ['docker compose start app\nrm -rf /'] },
          afterFilesRestore: { configuration: 'nginx -t' },
        }),
      ),
    ).toBe(
      listed(
        'BACKUP_TARGETS.0.files.static: Too small: expected array to have >=1 items',
        'BACKUP_TARGETS.0.files.applicationExcludes.0: must be a file or directory name (* for any characters, a trailing / for a directory directly under each path)',
        'BACKUP_TARGETS.0.application.start.0: must be one line of shell',
        'BACKUP_TARGETS.0.afterFilesRestore.configuration: Invalid input: expected array, received string',
      ),
    );
  });

  it('a vault bucket without its region, or a region that is none', () => {
    expect(refusal({ ...env, VAULT_BUCKET: 'kennel-backup-vault-prod' })).toBe(
      'VAULT_BUCKET and VAULT_REGION go together: give both (the vault stack is deployed) or neither (no vault); fix the deployment.',
    );
    expect(refusal({ ...env, VAULT_BUCKET: 'Vault!', VAULT_REGION: 'europe' })).toBe(
      listed(
        'VAULT_BUCKET: Invalid string: must match pattern /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/',
        'VAULT_REGION: must be an AWS region',
      ),
    );
  });

  it('two targets of one name', () => {
    expect(refusal({ ...env, BACKUP_TARGETS: JSON.stringify([primary, primary]) })).toBe(
      'BACKUP_TARGETS names the target "primary" twice; give each target its own name.',
    );
  });
});

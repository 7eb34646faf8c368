import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import {
  countsDigest,
  PHYSICAL_RESTORE_TEST_HOST_COMMANDS,
  physicalRestoreTestResultSchema,
  scratchDirectoryOf,
} from '../../shared/backup/physical-restore-test.ts';
import type { Target } from '../../shared/core/config.ts';
import { ConfigError, InvalidInputError } from '../../shared/core/errors.ts';
import { parseInput } from '../../shared/core/input.ts';
import {
  PHYSICAL_RESTORE_TEST_RESULT,
  PHYSICAL_RESTORE_TEST_STATE,
  physicalRestoreTest,
} from '../../statemachines/physical-restore-test.ts';
import { testConfig } from '../support/config.ts';

const command = PHYSICAL_RESTORE_TEST_HOST_COMMANDS['physical-restore-test'];
const plan = { target: 'primary', runId: '20261130T020000Z_0123abcd' };

function configWith(pgbackrest: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}) {
  const config = testConfig({
    BACKUP_TARGETS: JSON.stringify([
      {
        name: 'primary',
        instanceIds: ['i-0123456789abcdef0'],
        database: 'kennel_prod',
        ...(pgbackrest ? { pgbackrest } : {}),
        ...extra,
      },
    ]),
  });
  return { config, target: config.BACKUP_TARGETS[0] as Target };
}

describe('the physical restore test host command', () => {
  it('restores the requested set into <backupDir>/restore-test as the cluster OS user, locking in the backup directory', () => {
    const { config, target } = configWith({
      dataDirectory: '/var/lib/postgresql/15/main',
      user: 'backup_admin',
    });
    const params = command.params(config, target, {
      script: 'physical-restore-test',
      plan,
      set: '20261130-020000F',
    });
    expect(params).toMatchObject({
      KB_PG_MODE: 'host',
      KB_STANZA: 'primary',
      KB_PGBACKREST_CONFIG: '/etc/pgbackrest/pgbackrest.conf',
      KB_PGBACKREST_USER: 'postgres',
      KB_SET: '20261130-020000F',
      KB_SCRATCH_ROOT: '/opt/backup/restore-test',
      KB_SCRATCH_USER: 'backup_admin',
      KB_LOCK_DIR: '/opt/backup',
    });
    // The hold for tests is never part of a command.
    expect(Object.keys(params)).not.toContain('KB_TEST_HOLD_FILE');
  });

  it('takes the configured scratch directory, and the OS user as the role when none is set', () => {
    const { config, target } = configWith(
      { dataDirectory: '/var/lib/postgresql/data', scratchDirectory: '/srv/scratch/' },
      { postgres: { mode: 'docker', composeFile: '/opt/kennel/docker-compose.prod.yml', service: 'db' } },
    );
    const params = command.params(config, target, {
      script: 'physical-restore-test',
      plan,
      set: '20261130-020000F_20261130-080000I',
    });
    expect(params).toMatchObject({
      KB_PG_MODE: 'docker',
      KB_COMPOSE_SERVICE: 'db',
      KB_SCRATCH_ROOT: '/srv/scratch',
      KB_SCRATCH_USER: 'postgres',
      KB_SET: '20261130-020000F_20261130-080000I',
    });
  });

  it('refuses a scratch directory inside the data directory, or one that holds it', () => {
    for (const [data, scratch] of [
      ['/var/lib/postgresql/15/main', '/var/lib/postgresql/15/main/scratch'],
      ['/srv/pg/data', '/srv/pg'],
      ['/srv/pg/data', '/srv/pg/data/'],
    ] as const) {
      const { target } = configWith({ dataDirectory: data, scratchDirectory: scratch });
      expect(() => scratchDirectoryOf(target)).toThrow(ConfigError);
    }
    const { target } = configWith({
      dataDirectory: '/srv/pg/data',
      scratchDirectory: '/srv/pg/data-scratch',
    });
    expect(scratchDirectoryOf(target)).toBe('/srv/pg/data-scratch');
  });

  it('refuses a target without pgBackRest settings, saying how to add them', () => {
    const { config, target } = configWith(undefined);
    expect(() =>
      command.params(config, target, { script: 'physical-restore-test', plan, set: '20261130-020000F' }),
    ).toThrow(/has no pgbackrest settings in BACKUP_TARGETS/);
  });

  it('takes only a pgBackRest label as the set', () => {
    for (const set of ['latest', '20261130-020000F; rm -rf /', '20261130-020000I', '']) {
      expect(() =>
        parseInput(command.request, { script: 'physical-restore-test', plan, set }, 'The request'),
      ).toThrow(InvalidInputError);
    }
  });
});

describe('the physical restore test result', () => {
  it('has a digest of every table count that a restore of the same set reproduces', () => {
    const databases = [
      { name: 'kennel "archive"', counts: [['public', 'ledger', 250]] as [string, string, number][] },
      { name: 'kennel_prod', counts: [['Odd.Schema', 'a.b "c"', 40]] as [string, string, number][] },
    ];
    const text =
      '["kennel \\"archive\\"",[["public","ledger",250]]]\n["kennel_prod",[["Odd.Schema","a.b \\"c\\"",40]]]\n';
    expect(countsDigest(databases)).toBe(createHash('sha256').update(text).digest('hex'));
  });

  it('parses the line the host prints, and refuses one whose counts are not schema and table pairs', () => {
    const line = {
      set: '20261130-020000F',
      state: 'passed',
      backupBytes: 56506955,
      consistentAt: '0/4000100',
      timeline: 2,
      amcheck: 'passed',
      databases: [{ name: 'kennel_prod', tables: 1, rows: 5, counts: [['public', 'kennel_sizes', 5]] }],
      tables: 1,
      rows: 5,
      countsDigest: 'a'.repeat(64),
      countsListed: true,
      swept: [],
      unlogged: [['kennel_prod', 'public', 'cart_sessions', 'table']],
      unloggedCount: 1,
      startedAt: '2026-11-30T07:12:29.049Z',
      finishedAt: '2026-11-30T07:12:41.575Z',
      seconds: { restore: 8, recovery: 1, checks: 1, total: 12 },
    };
    expect(physicalRestoreTestResultSchema.parse(line)).toEqual(line);
    const split = { ...line, databases: [{ ...line.databases[0], counts: [['public.kennel_sizes', 5]] }] };
    expect(physicalRestoreTestResultSchema.safeParse(split).success).toBe(false);
  });
});

describe('the physical restore test states', () => {
  const S = PHYSICAL_RESTORE_TEST_STATE;
  const states = physicalRestoreTest({
    set: '$.physicalRecord.label',
    next: 'PhysicalExpiryWanted',
    onError: { next: 'NotifyRunFailure' },
  });

  it('form a valid state machine between a backup record and its expiry', () => {
    const aslValidator = createRequire(import.meta.url)('asl-validator') as (d: unknown) => {
      isValid: boolean;
      errors: unknown[];
    };
    const definition = JSON.parse(
      JSON.stringify({
        StartAt: S.start,
        States: {
          ...states,
          PhysicalExpiryWanted: { Type: 'Succeed' },
          NotifyRunFailure: { Type: 'Fail', Error: 'RunFailed' },
        },
      }),
      (key, value) => (key === 'Resource' ? 'arn:aws:lambda:us-east-1:123456789012:function:f' : value),
    );
    const result = aslValidator(definition);
    expect(result.errors).toEqual([]);
    expect(result.isValid).toBe(true);
  });

  it('send the set and the plan to the host, and record the outcome whether the command passed or failed', () => {
    expect(states[S.start]?.Parameters).toEqual({
      script: 'physical-restore-test',
      'execution.$': '$$.Execution.Id',
      'plan.$': '$.plan',
      'set.$': '$.physicalRecord.label',
    });
    for (const name of [S.start, S.check]) {
      expect(states[name]?.Catch).toEqual([
        { ErrorEquals: ['States.ALL'], ResultPath: `$.failed.${name}`, Next: S.record },
      ]);
    }
    expect(states[S.record]).toMatchObject({
      Resource: { 'Fn::GetAtt': ['recordPhysicalRestoreTest', 'Arn'] },
      Parameters: { 'set.$': '$.physicalRecord.label', 'state.$': '$' },
      ResultPath: `$.${PHYSICAL_RESTORE_TEST_RESULT.outcome}`,
      Next: 'PhysicalExpiryWanted',
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: `$.failed.${S.record}`, Next: 'NotifyRunFailure' }],
    });
  });
});

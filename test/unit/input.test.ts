import { describe, expect, it } from 'vitest';
import { HOST_COMMAND_SET } from '../../functions/start-host-command/commands.ts';
import { backupInputSchema, planSchema } from '../../shared/backup/database-plan.ts';
import { filesInputSchema, filesPlanSchema } from '../../shared/backup/files-plan.ts';
import { InvalidInputError } from '../../shared/core/errors.ts';
import { excludeName } from '../../shared/core/identifiers.ts';
import { checkConfirm, parseInput, planRequestSchema } from '../../shared/core/input.ts';

const hostCommandRequestSchema = HOST_COMMAND_SET.request;

import { restoreInputSchema, restorePlanSchema } from '../../shared/restore/database-schemas.ts';
import { filesRestoreInputSchema, filesRestorePlanSchema } from '../../shared/restore/files-plan.ts';
import { pointInTimeInputSchema } from '../../shared/restore/point-in-time.ts';

/**
 * parseInput with the execution inputs and plans, output and messages word for
 * word: an operator reads these in the console after a refused start.
 */

/** The InvalidInputError's whole message, or a failure when the value is accepted. */
function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return (error as Error).message;
  }
  throw new Error('parseInput accepted the value');
}
const listed = (what: string, ...problems: string[]) =>
  `${what} is not valid; nothing was started. Fix it and start again:\n- ${problems.join('\n- ')}`;

const RUN_ID = '20261126T020000Z_1a2b3c4d';
const request = {
  executionId: 'arn:aws:states:eu-west-1:123456789012:execution:x:abc',
  startedAt: '2026-11-26T02:00:00.123Z',
};

describe('parseInput with the plan request', () => {
  it('passes the input through untouched and takes a zone offset', () => {
    expect(
      parseInput(planRequestSchema, { ...request, input: { kind: 'full' } }, 'The PlanBackup request'),
    ).toStrictEqual({ ...request, input: { kind: 'full' } });
    expect(parseInput(planRequestSchema, { ...request, input: null }, 'R')).toStrictEqual({
      ...request,
      input: null,
    });
    expect(parseInput(planRequestSchema, { ...request, input: undefined }, 'R')).toStrictEqual({
      ...request,
      input: undefined,
    });
    expect(
      parseInput(planRequestSchema, { ...request, input: 1, startedAt: '2026-11-26T03:00:00+01:00' }, 'R')
        .startedAt,
    ).toBe('2026-11-26T03:00:00+01:00');
  });

  it('lists every problem, and says "(input)" for the value as a whole', () => {
    expect(
      refusal(() =>
        parseInput(
          planRequestSchema,
          { executionId: 'a b', startedAt: '2026-11-26' },
          'The PlanBackup request',
        ),
      ),
    ).toBe(
      listed(
        'The PlanBackup request',
        'input is required',
        'executionId: Invalid string: must match pattern /^[A-Za-z0-9:._/-]{1,256}$/',
        'startedAt: Invalid ISO datetime',
      ),
    );
    expect(refusal(() => parseInput(planRequestSchema, 5, 'The PlanBackup request'))).toBe(
      listed('The PlanBackup request', '(input): Invalid input: expected object, received number'),
    );
  });
});

describe('parseInput with execution inputs', () => {
  it('takes an empty backup input and refuses a bad one, unknown keys included', () => {
    expect(parseInput(backupInputSchema, {}, 'The execution input')).toStrictEqual({ kind: 'full' });
    expect(
      refusal(() =>
        parseInput(
          backupInputSchema,
          {
            kind: 'safety',
            target: 'Primary',
            database: 'kennel-prod',
            since: 'yesterday',
            extra: 1,
            more: 2,
          },
          'The execution input',
        ),
      ),
    ).toBe(
      listed(
        'The execution input',
        'kind: Invalid option: expected one of "full"|"monthly"|"incremental"|"transaction-logs"',
        'target: must be lower case letters, digits and -, starting with a letter',
        'database: must be a lower-case PostgreSQL identifier: letters, digits and _, starting with a letter or _, at most 63 characters',
        // Row windows are gone: a start is an unknown key now.
        '(input): Unrecognized keys: "since", "extra", "more"',
      ),
    );
  });

  it('refuses a files backup input without a kind or with bad paths', () => {
    expect(
      refusal(() => parseInput(filesInputSchema, { kind: 'logs', paths: [] }, 'The execution input')),
    ).toBe(
      listed(
        'The execution input',
        'kind: Invalid option: expected one of "configuration"|"application"|"static"',
        'paths: Too small: expected array to have >=1 items',
      ),
    );
    expect(
      refusal(() => parseInput(filesInputSchema, { paths: ['/opt/../etc'] }, 'The execution input')),
    ).toBe(
      listed(
        'The execution input',
        'kind: Invalid option: expected one of "configuration"|"application"|"static"',
        'paths.0: must not contain ..',
      ),
    );
  });

  it('fills in the restore inputs’ defaults and refuses their bad values', () => {
    expect(
      parseInput(restoreInputSchema, { database: 'kennel_prod', targetDatabase: 'kennel_copy' }, 'I'),
    ).toStrictEqual({
      database: 'kennel_prod',
      targetDatabase: 'kennel_copy',
      dryRun: false,
      backup: 'latest',
      acceptFailedRestoreTest: false,
      missingRoles: 'create',
      source: 'primary',
    });
    expect(
      parseInput(
        restoreInputSchema,
        { database: 'a', targetDatabase: 'b', backup: RUN_ID, dryRun: true },
        'I',
      ).backup,
    ).toBe(RUN_ID);
    expect(
      refusal(() =>
        parseInput(
          restoreInputSchema,
          {
            database: 'a',
            targetDatabase: 'b',
            backup: 'Nope',
            dryRun: 'yes',
            confirm: 1,
            missingRoles: 'skip',
            source: 'Vault',
          },
          'The execution input',
        ),
      ),
    ).toBe(
      listed(
        'The execution input',
        'confirm: Invalid input: expected string, received number',
        'dryRun: Invalid input: expected boolean, received string',
        'backup: Invalid input',
        'missingRoles: must be "create" (the default: the roles the backup needs that this cluster lacks are created, NOLOGIN and without a password) or "omit" (none is created: their objects go to the new database\'s owner, their grants are left out)',
        'source: must be "primary" (the backup bucket; the default) or "vault" (its copy in the vault region)',
      ),
    );
    expect(
      parseInput(
        pointInTimeInputSchema,
        { database: 'a', targetDatabase: 'b', targetTime: '2026-11-26T10:30:00+01:00' },
        'I',
      ),
    ).toStrictEqual({
      database: 'a',
      targetDatabase: 'b',
      dryRun: false,
      scope: 'database',
      source: 'primary',
      targetTime: '2026-11-26T10:30:00+01:00',
    });
    // The restores' one source input: the same refusal.
    expect(
      refusal(() =>
        parseInput(
          pointInTimeInputSchema,
          { database: 'a', targetDatabase: 'b', targetTime: 'latest', source: 'replica' },
          'I',
        ),
      ),
    ).toBe(
      listed(
        'I',
        'source: must be "primary" (the backup bucket; the default) or "vault" (its copy in the vault region)',
      ),
    );
    expect(
      refusal(() =>
        parseInput(
          pointInTimeInputSchema,
          { database: 'a', targetDatabase: 'b', targetTime: '2026-11-26', backup: 'latest' },
          'The execution input',
        ),
      ),
    ).toBe(
      listed(
        'The execution input',
        'targetTime: "2026-11-26" is not a time: give "latest" or an ISO 8601 time with seconds and a zone, e.g. 2026-11-26T10:30:00Z or 2026-11-26T11:30:00+01:00',
        '(input): Unrecognized key: "backup"',
      ),
    );
    // Only a time that lacks nothing but its zone is told to add one.
    const targetTimeRefusal = (targetTime: string) =>
      refusal(() =>
        parseInput(pointInTimeInputSchema, { database: 'a', targetDatabase: 'b', targetTime }, 'I'),
      );
    expect(targetTimeRefusal('2026-11-26T10:30:00')).toBe(
      listed(
        'I',
        'targetTime: "2026-11-26T10:30:00" has no zone, so it could be any zone\'s: add one (e.g. 2026-11-26T10:30:00Z or 2026-11-26T11:30:00+01:00), or give "latest"',
      ),
    );
    for (const notATime of [
      '2026-13-45T10:30:00Z',
      '2026-02-30T10:30:00Z',
      '2026-11-26 10:30:00Z',
      '2026-11-26T10:30Z',
      'yesterday',
    ])
      expect(targetTimeRefusal(notATime)).toBe(
        listed(
          'I',
          `targetTime: "${notATime}" is not a time: give "latest" or an ISO 8601 time with seconds and a zone, e.g. 2026-11-26T10:30:00Z or 2026-11-26T11:30:00+01:00`,
        ),
      );
  });

  it('fills in the files restore input’s defaults and refuses a bad one', () => {
    expect(parseInput(filesRestoreInputSchema, { kind: 'static' }, 'I')).toStrictEqual({
      kind: 'static',
      backup: 'latest',
      dryRun: false,
      source: 'primary',
    });
    expect(
      refusal(() =>
        parseInput(filesRestoreInputSchema, { kind: 'static', backup: '', x: 1 }, 'The execution input'),
      ),
    ).toBe(listed('The execution input', 'backup: Invalid input', '(input): Unrecognized key: "x"'));
  });
});

describe('parseInput with plans and host command requests', () => {
  it('names every missing field of a database plan, the run’s first', () => {
    expect(refusal(() => parseInput(planSchema, { kind: 'weekly' }, 'P'))).toBe(
      listed(
        'P',
        'target is required: give a string',
        'runId is required: give a string',
        'executionId is required: give a string',
        'startedAt is required: give a string',
        'bucket is required: give a string',
        'archiveKey is required: give a string',
        'manifestKey is required: give a string',
        'fileName is required: give a string',
        'localDir is required: give a string',
        'codec: Invalid option: expected one of "zstd"|"gzip"',
        'kind: Invalid option: expected one of "full"|"monthly"|"safety"',
        'database is required: give a string',
        'scratchDatabase is required: give a string',
      ),
    );
  });

  it('takes an exclude as a name (tar wildcards allowed) or a directory under each path, nothing that reaches elsewhere', () => {
    for (const name of ['node_modules', '.env*', '*.log', 'ssl/'])
      expect(excludeName.safeParse(name).success, name).toBe(true);
    for (const name of ['*', '.*', '/', 'a/b', '../etc', 'ssl//', '$(reboot)', 'a b', ''])
      expect(excludeName.safeParse(name).success, name).toBe(false);
  });

  it('checks a files plan’s excludes', () => {
    const message = refusal(() => parseInput(filesPlanSchema, { excludes: ['a/b'] }, 'P'));
    expect(message).toContain('\n- paths is required: give an array');
    expect(message).toMatch(
      /\n- excludes\.0: must be a file or directory name \(\* for any characters, a trailing \/ for a directory directly under each path\)$/,
    );
  });

  it('checks a restore plan’s nested archives and safety dump', () => {
    const message = refusal(() => parseInput(restorePlanSchema, { archives: [] }, 'P'));
    for (const line of [
      'archives: Too small: expected array to have exactly 1 items',
      'safetyDump is required: give an object',
    ]) {
      expect(`${message}\n`).toContain(`\n- ${line}\n`);
    }
  });

  it('checks a files restore plan’s entry count', () => {
    expect(refusal(() => parseInput(filesRestorePlanSchema, { archive: { entries: -1 } }, 'P'))).toContain(
      '\n- archive.entries: Too small: expected number to be >=0\n',
    );
    expect(refusal(() => parseInput(filesRestorePlanSchema, { archive: { entries: 1.5 } }, 'P'))).toContain(
      '\n- archive.entries: Invalid input: expected int, received number\n',
    );
  });

  it('takes a host command request by its script and refuses an unknown one', () => {
    expect(
      parseInput(
        hostCommandRequestSchema,
        { script: 'application-stop', plan: { target: 'primary', runId: RUN_ID, bucket: 'b' } },
        'H',
      ),
    ).toStrictEqual({ script: 'application-stop', plan: { target: 'primary', runId: RUN_ID } });
    expect(refusal(() => parseInput(hostCommandRequestSchema, { script: 'rm-rf', plan: {} }, 'H'))).toBe(
      listed(
        'H',
        "script: Invalid discriminator value. Expected 'database-backup' | 'files-backup' | 'restore-test' | 'prune-local' | 'wal-switch' | 'database-restore' | 'database-swap' | 'carry-log-rows' | 'restore-cleanup' | 'application-stop' | 'application-start' | 'files-restore' | 'after-files-restore' | 'point-in-time-restore' | 'check-local-copies' | 'disk-usage' | 'pgbackrest-verify' | 'wal-archive-age' | 'wal-archiving' | 'prepare-host' | 'physical-restore-test' | 'pgbackrest-backup' | 'pgbackrest-expire' | 'check'",
      ),
    );
    expect(
      refusal(() =>
        parseInput(
          hostCommandRequestSchema,
          { script: 'application-start', plan: { target: 'primary' } },
          'H',
        ),
      ),
    ).toBe(listed('H', 'plan.runId is required: give a string'));
    expect(
      refusal(() =>
        parseInput(
          hostCommandRequestSchema,
          { script: 'prune-local', plan: {}, keepDays: 0.5, keepFile: 'a b' },
          'H',
        ),
      ),
    ).toBe(
      listed(
        'H',
        'plan: Invalid input',
        'keepDays: Invalid input: expected int, received number',
        'keepFile: must be a plain file name',
      ),
    );
  });
});

describe('the typed-again confirm of a run that replaces something', () => {
  const words = {
    replaces: 'Restoring into kennel_prod replaces the database the backups were taken of.',
    named: "the target database's name",
    otherwise: 'To restore beside it, give a new "targetDatabase" instead.',
  };
  const refusal = (confirm: string | undefined) => {
    try {
      checkConfirm(confirm, 'kennel_prod', words);
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidInputError);
      return (error as Error).message;
    }
    return 'accepted';
  };

  it('passes the exact name only', () => {
    expect(refusal('kennel_prod')).toBe('accepted');
  });

  it('asks to add it when it is absent', () => {
    expect(refusal(undefined)).toBe(
      'Restoring into kennel_prod replaces the database the backups were taken of. If that is what you want, add "confirm": "kennel_prod" to the input. To restore beside it, give a new "targetDatabase" instead. Nothing was changed.',
    );
  });

  it('says a typo does not match, and what it must be, rather than asking to add it', () => {
    expect(refusal('kennel_pro')).toBe(
      'Restoring into kennel_prod replaces the database the backups were taken of. "confirm" does not match: it must be exactly the target database\'s name, kennel_prod (it was "kennel_pro"). To restore beside it, give a new "targetDatabase" instead. Nothing was changed.',
    );
  });
});

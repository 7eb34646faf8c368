import { backupWorkflow } from './backup-runs.ts';
import { PHYSICAL_BACKUP, physicalBackupStates } from './physical-backup.ts';
import { at, type Definition, hostCommand, NOTIFY_RUN_FAILURE, PLAN, type State, task } from './steps.ts';
import { WAL_STATE, walArchiveStates } from './wal-runs.ts';

/** The state whose request PlanBackup's errors name. */
export const BACKUP_STATE = { plan: 'PlanBackup' } as const;

const onRunError = { next: NOTIFY_RUN_FAILURE };

/** The first state of each run: it routes a plan to its engine's states; a plan without one is a logical dump. */
export const ROUTE_RUN = 'RouteRun';

/** A choice of RouteRun: the plans whose `engine` is this one go to `next`. */
function engineIs(engine: string, next: string) {
  return {
    And: [
      { Variable: at(PLAN, 'engine'), IsPresent: true },
      { Variable: at(PLAN, 'engine'), StringEquals: engine },
    ],
    Next: next,
  };
}

/** Full, incremental or transaction-log backups of every planned target and database. */
export function databaseBackup(): Definition {
  return backupWorkflow({
    workflow: 'database-backup',
    comment:
      'Database backup of the Kennel Management System (full, incremental or transaction logs, by input): dump, upload, verify, restore-test, prune; for transaction logs also a WAL switch on each pgBackRest target and the proof that its WAL archive has no gap; every failure is alerted.',
    plan: {
      name: BACKUP_STATE.plan,
      fn: 'planBackup',
      receiveComment:
        "Wraps whatever input was given, so that a malformed one still reaches PlanBackup's error and the alert.",
      comment:
        "Validates the input, picks the targets and databases, and computes each run's window, id, S3 keys and scratch database; for transaction logs, one WAL run per target archiving with pgBackRest.",
    },
    runs: {
      comment:
        'Backs up every planned target and database in parallel, two at a time; each iteration catches its own failure.',
      startAt: ROUTE_RUN,
      archive: {
        noun: 'Dump',
        script: 'database-backup',
        comment:
          'Sends the dump script: pg_dump in one exported snapshot, compressed, streamed to S3 with a local copy; its result line reports size, sha256 and times.',
        resultPath: at('dump'),
      },
      verifyComment:
        "Streams the archive from S3: it must decompress completely, be a complete dump and match the size and sha256 the host reported; writes the manifest, verified or failed, with each table's rows counted from the archive.",
      afterVerify: 'RestoreTestWanted',
      states: {
        [ROUTE_RUN]: {
          Type: 'Choice',
          Comment: "Sends a run to its engine's states by the plan's engine; a logical dump's plan has none.",
          Choices: [engineIs('wal', WAL_STATE.switch.start), engineIs('pgbackrest', PHYSICAL_BACKUP.first)],
          Default: 'StartDump',
        } satisfies State,
        ...walArchiveStates({ onError: onRunError, next: 'RunSucceeded' }),
        ...physicalBackupStates({ succeeded: 'RunSucceeded' }),
        RestoreTestWanted: {
          Type: 'Choice',
          Comment:
            'A full dump is restore-tested in a scratch database; incremental and log archives were read through and counted row by row by VerifyArchive.',
          Choices: [{ Variable: at(PLAN, 'kind'), StringEquals: 'full', Next: 'StartRestoreTest' }],
          Default: 'PruneBackups',
        },
        ...hostCommand('RestoreTest', {
          comment:
            "Restores the host's copy (same sha256 as the verified object) into this run's scratch database.",
          script: 'restore-test',
          parameters: { 'plan.$': at(PLAN), 'sha256.$': at('verification', 'sha256') },
          resultPath: at('restoreCommand'),
          pollSeconds: 30,
          onError: onRunError,
          next: 'RestoreTest',
        }),
        ...task('RestoreTest', 'restoreTest', {
          comment:
            'Checks every table of the manifest with its exact row count in the scratch database, then drops it whatever happens.',
          parameters: { 'plan.$': at(PLAN) },
          resultPath: at('restoreTest'),
          onError: onRunError,
          next: 'PruneBackups',
        }),
      },
    },
  });
}

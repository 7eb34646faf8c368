import { backupWorkflow } from './backup-runs.ts';
import { logicalRestoreTest } from './logical-restore-test.ts';
import { PHYSICAL_BACKUP, physicalBackupStates } from './physical-backup.ts';
import { at, type Definition, NOTIFY_RUN_FAILURE, PLAN, type State } from './steps.ts';
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

/** Full, monthly, incremental or transaction-log backups of every planned target (and database, for the dumps). */
export function databaseBackup(): Definition {
  return backupWorkflow({
    workflow: 'database-backup',
    comment:
      'Database backup of the Kennel Management System, by input: full (a pgBackRest full backup and the daily logical dump), monthly (the logical dump of every table, log tables included, kept 7 years), incremental (a pgBackRest incremental backup), transaction logs (a WAL switch on each pgBackRest target and the proof that its WAL archive has no gap). Each is verified, restore-tested and pruned or expired; a target without pgBackRest settings shows its physical and WAL runs as skipped, saying what to add; every failure is alerted.',
    plan: {
      name: BACKUP_STATE.plan,
      fn: 'planBackup',
      receiveComment:
        "Wraps whatever input was given, so that a malformed one still reaches PlanBackup's error and the alert.",
      comment:
        "Validates the input, picks the targets and databases, and plans the kind's runs: the logical dumps (id, S3 keys, scratch database), one pgBackRest run or one WAL run per target, or, for a target without pgBackRest settings, why that run is off.",
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
      afterVerify: 'StartRestoreTest',
      states: {
        [ROUTE_RUN]: {
          Type: 'Choice',
          Comment:
            "Sends a run to its engine's states by the plan's engine (a logical dump's plan has none); a run planned as off (a target without pgBackRest settings) is shown as skipped.",
          Choices: [
            { Variable: at(PLAN, 'off'), IsPresent: true, Next: 'RunSkipped' },
            engineIs('wal', WAL_STATE.switch.start),
            engineIs('pgbackrest', PHYSICAL_BACKUP.first),
          ],
          Default: 'StartDump',
        } satisfies State,
        ...walArchiveStates({ onError: onRunError, next: 'RunSucceeded' }),
        ...physicalBackupStates({ succeeded: 'RunSucceeded' }),
        RunSkipped: {
          Type: 'Pass',
          Comment:
            "Shows the run as skipped in the execution's output, its plan saying what is off and what to add; the daily verification reports the target too.",
          Result: 'skipped',
          ResultPath: at('status'),
          End: true,
        },
        ...logicalRestoreTest({
          commandComment:
            "Restores the host's copy (same sha256 as the verified object) into this run's scratch database.",
          checkComment:
            "Checks every table of the manifest (a monthly dump's log tables too) with its exact row count in the scratch database, and its encoding, locale, owner and settings, then drops it whatever happens.",
          plan: at(PLAN),
          sha256: at('verification', 'sha256'),
          commandResult: at('restoreCommand'),
          result: at('restoreTest'),
          pollSeconds: 30,
          onError: onRunError,
          next: 'PruneBackups',
        }),
      },
    },
  });
}

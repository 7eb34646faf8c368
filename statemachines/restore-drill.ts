import { logicalRestoreTest } from './logical-restore-test.ts';
import { physicalRestoreTest } from './physical-restore-test.ts';
import {
  at,
  type Definition,
  FAILED,
  failureEnd,
  NOTIFY_FAILURE,
  PLAN,
  plan,
  RECEIVE_REQUEST,
  report,
} from './steps.ts';
import { WAL_RESULT, WAL_STATE, walArchiveStates } from './wal-runs.ts';

/** The states whose requests the stages' errors name. */
export const DRILL_STATE = { plan: 'PlanDrill', report: 'ReportDrill' } as const;

/** Where each stage's result goes in the drill's state; the report reads them. */
export const DRILL_RESULT = {
  failed: FAILED,
  drill: 'drill',
  /** The WAL run's switch and proof (wal-runs.ts), and how it failed: a failed check, the restore test still runs. */
  walSwitch: WAL_RESULT.switch,
  continuity: WAL_RESULT.continuity,
  walFailed: 'walFailed',
  restoreTestCommand: 'restoreTestCommand',
  restoreTest: 'restoreTest',
} as const;

export function restoreDrill(): Definition {
  const S = DRILL_STATE;
  const R = DRILL_RESULT;
  /** A failed restore test is a failed check of the drill: the report records it, then fails. */
  const onError = { next: S.report };
  return {
    Comment:
      "Restore drill (weekly: a random verified backup of either engine of the last 7 days; or, started by hand, the latest logical full; the monthly DR drill is recovery-drill): S3 reachable, the target's WAL switched and proven continuous since the oldest kept pgBackRest backup, restore test of the chosen backup (a logical dump into a scratch database, a pgBackRest set into a scratch instance), a report stored in S3 and summarized in the alert.",
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 43_200,
    States: {
      ...plan(S.plan, 'planDrill', {
        receiveComment:
          'Wraps the input ({"pick": "random"} weekly, {"pick": "latest"} by hand), so that a malformed one still reaches PlanDrill\'s error and the alert.',
        comment:
          "Lists the catalog (the S3 check), picks the backup (at random with a recorded seed, or the latest) and plans the target's WAL run (a target without pgBackRest settings is a failed check).",
        resultPath: at(R.drill),
        next: 'WalCheckWanted',
      }),
      WalCheckWanted: {
        Type: 'Choice',
        Comment:
          'A target archiving with pgBackRest has its WAL proven; without, PlanDrill recorded the failed check.',
        Choices: [{ Variable: at(R.drill, 'wal'), IsPresent: true, Next: WAL_STATE.switch.start }],
        Default: 'WhichEngine',
      },
      ...walArchiveStates({
        plan: at(R.drill, 'wal'),
        // A gap is a failed check of the drill; the restore test still runs.
        onError: { next: 'WhichEngine', resultPath: at(R.walFailed) },
        next: 'WhichEngine',
      }),
      WhichEngine: {
        Type: 'Choice',
        Comment:
          "A pgBackRest set goes through the physical backups' own restore test; a logical dump through the dump's.",
        Choices: [
          { Variable: at(R.drill, 'chosen', 'engine'), StringEquals: 'physical', Next: 'SelectBackupSet' },
        ],
        Default: 'StartRestoreTest',
      },
      SelectBackupSet: {
        Type: 'Pass',
        Comment:
          "The physical restore test's run is the drill's: its report goes under the drill's run id, and the alert names the target.",
        InputPath: at(R.drill, 'physical', 'plan'),
        ResultPath: at(PLAN),
        Next: 'StartPhysicalRestoreTest',
      },
      ...physicalRestoreTest({ set: at(R.drill, 'physical', 'set'), next: S.report, onError }),
      ...logicalRestoreTest({
        commandComment:
          "Restores the chosen backup on the host into the drill's own scratch database, after checking its sha256.",
        checkComment:
          "Checks every table's exact row count, and the database's encoding, locale, owner and settings, against the manifest, records the result in it, and drops the scratch database.",
        plan: at(R.drill, 'plan'),
        sha256: at(R.drill, 'sha256'),
        commandResult: at(R.restoreTestCommand),
        result: at(R.restoreTest),
        pollSeconds: 10,
        onError,
        next: S.report,
      }),
      ...report(S.report, 'reportDrill', {
        comment:
          'Stores the report (JSON and Markdown) in S3 whatever the outcome; fails listing every failed check.',
        parameters: { 'state.$': '$' },
        onError: { next: NOTIFY_FAILURE },
        summary: {
          name: 'NotifyDrill',
          workflow: 'restore-drill',
          comment: "Posts the drill's summary and where its report is.",
        },
        succeeded: {
          name: 'DrillPassed',
          comment: 'The output names the backup drilled, the seed, the checks and the report.',
        },
      }),
      ...failureEnd({
        workflow: 'restore-drill',
        comment:
          'Posts the failed drill: the failing state, its error and the checks; never hides the original error.',
        failed: {
          name: 'DrillFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'DrillFailedAndAlertNotSent',
          cause:
            'The restore drill failed and the alert stage itself failed; the execution history shows both.',
        },
      }),
    },
  };
}

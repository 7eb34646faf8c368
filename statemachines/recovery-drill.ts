import {
  at,
  type Definition,
  FAILED,
  failureEnd,
  hostCommand,
  hostCommandNames,
  NOTIFY_FAILURE,
  PLAN,
  plan,
  RECEIVE_REQUEST,
  report,
} from './steps.ts';

/**
 * The monthly DR drill: the target's cluster recovered from its pgBackRest
 * repository to a random second of the last 24 hours in a scratch cluster beside
 * production, checked, removed, and the measured recovery rate recorded.
 */

/** The Lambda stages, whose names their requests' errors give. */
export const RECOVERY_DRILL_STATE = { plan: 'PlanRecoveryDrill', report: 'ReportRecoveryDrill' } as const;

/** The host command, in the alert when it failed. */
export const RECOVERY_DRILL_COMMAND = /* @__PURE__ */ hostCommandNames('ScratchRecovery');

/** Where each stage's result goes in the drill's state; the alert and the report read them. */
export const RECOVERY_DRILL_RESULT = { failed: FAILED, plan: PLAN, recovery: 'recovery' } as const;

export function recoveryDrill(): Definition {
  const S = RECOVERY_DRILL_STATE;
  const R = RECOVERY_DRILL_RESULT;
  return {
    Comment:
      "Monthly DR drill: the target's cluster recovered from pgBackRest's backups and WAL to a random second of the last 24 h in a scratch cluster beside production (never touching its databases), checked (pg_amcheck, every table read), removed; the measured seconds per GB recorded for the point-in-time recovery's dry runs and a report stored in S3.",
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 43_200,
    States: {
      ...plan(S.plan, 'planRecoveryDrill', {
        receiveComment:
          'Wraps the input ({} monthly; {"seed": N} replays a drill\'s pick), so that a malformed one still reaches PlanRecoveryDrill\'s error and the alert.',
        comment:
          'Draws a random second of the last 24 h (from the oldest recoverable point when the window is younger) with a recorded seed, until the point-in-time planner accepts one: a usable base backup and no WAL gap up to it.',
        resultPath: at(R.plan),
        next: RECOVERY_DRILL_COMMAND.start,
      }),
      ...hostCommand(RECOVERY_DRILL_COMMAND, {
        comment:
          'Restores the base backup side by side on the host, recovers it to the drawn second and promotes it, runs pg_amcheck on every database and reads every table with its row count; nothing is copied into production, and the side cluster is removed on every way out.',
        script: 'point-in-time-restore',
        parameters: { 'plan.$': at(R.plan, 'recovery') },
        resultPath: at(R.recovery),
        pollSeconds: 15,
        // A failed recovery is a failed check of the drill: the report records it, then fails.
        onError: { next: S.report },
        next: S.report,
      }),
      ...report(S.report, 'reportRecoveryDrill', {
        comment:
          'Records the measured recovery rate in the catalog (the recovery dry run reads it) and stores the report (JSON and Markdown) whatever the outcome; fails listing every failed check.',
        parameters: { 'state.$': '$' },
        onError: { next: NOTIFY_FAILURE },
        summary: {
          name: 'NotifyRecoveryDrill',
          workflow: 'recovery-drill',
          comment: "Posts the drill's summary and where its report is.",
        },
        succeeded: {
          name: 'RecoveryDrillPassed',
          comment:
            'The output names the second recovered, the seed, the checks, the measured rate and the report.',
        },
      }),
      ...failureEnd({
        workflow: 'recovery-drill',
        comment:
          'Posts the failed drill: the failing state, its error and the checks; never hides the original error.',
        failed: {
          name: 'RecoveryDrillFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'RecoveryDrillFailedAndAlertNotSent',
          cause:
            'The recovery drill failed and the alert stage itself failed; the execution history shows both.',
        },
      }),
    },
  };
}

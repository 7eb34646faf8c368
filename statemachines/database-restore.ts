import { SWAP_COMMAND, SWAP_RESULT, SWAP_STATE, stagedSwap } from './staged-swap.ts';
import {
  at,
  type Definition,
  dryRun,
  FAILED,
  failureEnd,
  hostCommand,
  hostCommandNames,
  NOTIFY_FAILURE,
  PLAN,
  plan,
  RECEIVE_REQUEST,
  releaseRunLock,
  report,
  takeRunLock,
  task,
} from './steps.ts';

/** Database restore: a logical dump (a full backup or a safety dump) into a staging database, then the staged swap. */

/** The Lambda stages, whose names their requests' errors give. */
export const RESTORE_STATE = {
  plan: 'PlanRestore',
  checkRestoredDatabase: 'CheckRestoredDatabase',
  report: 'ReportRestore',
} as const;

/**
 * The host commands, whose states the alert names when it says how far a failed
 * restore got. The calls are pure: a bundle that reads none of them drops them.
 */
export const RESTORE_COMMAND = {
  restore: /* @__PURE__ */ hostCommandNames('Restore'),
  ...SWAP_COMMAND,
} as const;

/** Where each stage's result goes in the restore's state; the alert and the report read them. */
export const RESTORE_RESULT = {
  failed: FAILED,
  plan: PLAN,
  restore: 'restore',
  check: 'check',
  ...SWAP_RESULT,
} as const;

const RESTORE_TIMEOUT_SECONDS = 43_200;

export function databaseRestore(): Definition {
  const S = RESTORE_STATE;
  const C = RESTORE_COMMAND;
  const R = RESTORE_RESULT;
  /** After the application may have been stopped, a failure starts it again before the alert. */
  const onError = { next: SWAP_STATE.onError };
  return {
    Comment:
      'Database restore of the Kennel Management System, started by an operator: plan (or dry run), restore into a staging database, check, then (over a database) stop the application, safety dump, swap, start the application; every failure after the stop starts the application again and is alerted.',
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: RESTORE_TIMEOUT_SECONDS,
    States: {
      ...plan(S.plan, 'planRestore', {
        receiveComment:
          "Wraps whatever input was given, so that a malformed one still reaches PlanRestore's error and the alert.",
        comment:
          'Validates the input and picks the named verified full backup or safety dump from the catalog. Refuses before anything changes.',
        resultPath: at(R.plan),
        next: 'IsDryRun',
      }),
      ...dryRun({
        returnComment:
          'The archives with their windows, what the result will hold and the checks it must pass.',
        next: 'TakeRunLock',
      }),
      // Two restores into one database never overlap: the second refuses before touching the host.
      ...takeRunLock({
        workflow: 'database-restore',
        timeoutSeconds: RESTORE_TIMEOUT_SECONDS,
        targets: `States.Array(${at(R.plan, 'target')})`,
        scope: `States.Format('database/{}', ${at(R.plan, 'targetDatabase')})`,
        next: C.restore.start,
      }),
      ...hostCommand(C.restore, {
        comment:
          'Restores the dump into a new staging database on the host (its sha256 checked first); production is not touched.',
        script: 'database-restore',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.restore),
        pollSeconds: 10,
        onError,
        next: S.checkRestoredDatabase,
      }),
      ...task(S.checkRestoredDatabase, 'checkRestore', {
        comment:
          "Counts every table of the staging database against the plan's expected rows; drops the staging database if they do not match.",
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.check),
        onError,
        next: SWAP_STATE.enter,
      }),
      ...stagedSwap({ report: 'ReleaseRunLock', what: 'the restored backup' }),
      ...releaseRunLock('ReleaseRunLock', S.report),
      ...report(S.report, 'reportRestore', {
        comment:
          'Writes the record of the restore: what was restored from which backup, the checks passed and the time each stage took.',
        parameters: { 'state.$': '$' },
        onError: { next: NOTIFY_FAILURE },
        summary: {
          name: 'NotifyRestored',
          workflow: 'database-restore',
          comment: 'Posts the summary of the restore.',
        },
        succeeded: { name: 'Restored', comment: "The execution's output is the restore's record." },
      }),
      ...failureEnd({
        workflow: 'database-restore',
        runLock: true,
        comment:
          'Posts the failure, what state the database is in and which safety dump brings it back; never hides the original error.',
        failed: {
          name: 'RestoreFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'RestoreFailedAndAlertNotSent',
          cause:
            'The restore failed and the alert stage itself failed; the execution history shows both errors and the plan.',
        },
      }),
    },
  };
}

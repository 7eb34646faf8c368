import { CLEANUP_STATE, cleanUpStates } from './staged-swap.ts';
import {
  at,
  type Definition,
  failureEnd,
  NOTIFY_FAILURE,
  plan,
  RECEIVE_REQUEST,
  RUN_LOCK,
  report,
  task,
} from './steps.ts';

/**
 * The clean-up of a restore or point-in-time recovery that was aborted or timed out:
 * such an execution runs none of its own states, so cancelHostCommands, once it
 * has cancelled the run's host commands, starts this one with the status change
 * (shared/restore/stopped-run.ts). It does what a failed run's Catch does (the
 * staged swap's clean-up states) and posts what is really left.
 */

export const CLEANUP_REPORT = 'ReportCleanUp';
/** Where PlanCleanUp puts the stopped run's state. */
const RUN = 'run';

export function restoreCleanup(): Definition {
  return {
    Comment:
      "Clean-up of an aborted or timed-out restore or point-in-time recovery, started by cancelHostCommands: the run's state read from its history, the application started again if the run stopped it, its staging database dropped, an unverified safety dump's host copy and its work directories removed, a recovery's side cluster stopped and removed, PostgreSQL stopped by a whole-cluster recovery started again where its data directory is whole, its run lock given back, and what is left posted.",
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 7_200,
    States: {
      ...plan(CLEANUP_STATE.plan, 'planCleanUp', {
        receiveComment:
          "Wraps the request, so that a malformed one still reaches PlanCleanUp's error and the alert.",
        comment:
          "Reads the stopped run's state from its history (the state it was in counts as where it failed) and works out what it may have left: the run's state with the plan.",
        resultPath: at(RUN),
        next: 'AnythingToCleanUp',
      }),
      AnythingToCleanUp: {
        Type: 'Choice',
        Comment: 'A run stopped before its plan was made created nothing.',
        Choices: [{ Variable: at(RUN, 'cleanupPlan'), IsPresent: true, Next: 'TakeRunState' }],
        Default: 'NothingToCleanUp',
      },
      TakeRunState: {
        Type: 'Pass',
        Comment:
          "The stopped run's state becomes this execution's: the clean-up and its report read it as a failed run's.",
        InputPath: at(RUN),
        Next: CLEANUP_STATE.startsApplication,
      },
      NothingToCleanUp: {
        Type: 'Succeed',
        Comment: 'The run created nothing; the abort or timeout itself is alerted by the failure rule.',
      },
      ...cleanUpStates({ next: 'HeldRunLock' }),
      HeldRunLock: {
        Type: 'Choice',
        Comment: 'A run stopped after it took its run lock still holds it.',
        Choices: [{ Variable: at(RUN_LOCK, 'keys'), IsPresent: true, Next: 'ReleaseStoppedRunLock' }],
        Default: CLEANUP_REPORT,
      },
      ...task('ReleaseStoppedRunLock', 'runLock', {
        comment:
          "Gives back the stopped run's locks (those it still holds), as its own end states would have; a failure is passed over: the next run takes over a lock whose execution has ended.",
        parameters: {
          action: 'release',
          'keys.$': at(RUN_LOCK, 'keys'),
          'execution.$': at('stopped', 'executionArn'),
        },
        resultPath: at('runLockReleased'),
        onError: { next: CLEANUP_REPORT, resultPath: at('runLockNotReleased') },
        next: CLEANUP_REPORT,
      }),
      ...report(CLEANUP_REPORT, 'reportRestore', {
        comment:
          "Says what the run left, from the host's and the catalog's facts; fails, listing them, when something is still to do by hand (the application not running, the staging database still there).",
        parameters: { 'state.$': '$' },
        onError: { next: NOTIFY_FAILURE },
        summary: {
          name: 'NotifyCleanedUp',
          workflow: 'restore-cleanup',
          comment: 'Posts what the stopped run left and what was cleaned up.',
        },
        succeeded: { name: 'CleanedUp', comment: 'The output says what the stopped run left.' },
      }),
      ...failureEnd({
        workflow: 'restore-cleanup',
        comment: 'Posts what the stopped run left and what is still to do by hand.',
        failed: {
          name: 'CleanUpFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'CleanUpFailedAndAlertNotSent',
          cause:
            'The clean-up of a stopped restore failed and the alert stage itself failed; the execution history shows both.',
        },
      }),
    },
  };
}

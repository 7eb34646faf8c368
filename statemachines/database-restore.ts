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
  report,
  STATE_MACHINE_NAME,
  task,
} from './steps.ts';

/**
 * Database restore and point-in-time recovery: one definition deployed under
 * both names; PlanRestore reads which one it runs in from the machine's name.
 */

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
  applicationStop: /* @__PURE__ */ hostCommandNames('ApplicationStop', 'StopApplication'),
  safetyDump: /* @__PURE__ */ hostCommandNames('SafetyDump'),
  swap: /* @__PURE__ */ hostCommandNames('Swap'),
  applicationStart: /* @__PURE__ */ hostCommandNames('ApplicationStart', 'StartApplication'),
  applicationRestart: /* @__PURE__ */ hostCommandNames('ApplicationRestart', 'RestartApplication'),
} as const;

/** Where each stage's result goes in the restore's state; the alert and the report read them. */
export const RESTORE_RESULT = {
  failed: FAILED,
  plan: PLAN,
  restore: 'restore',
  check: 'check',
  stop: 'stop',
  safetyDump: 'safetyDump',
  safetyDumpVerification: 'safetyDumpVerification',
  swap: 'swap',
  start: 'start',
  prune: 'prune',
  localPrune: 'localPrune',
  /** Pruning old safety dumps failed after the restore succeeded: reported, not fatal. */
  pruneFailed: 'pruneFailed',
  restart: 'restart',
  /** Starting the application again after a failure failed too. */
  restartFailed: 'restartFailed',
} as const;

export function databaseRestore(): Definition {
  const S = RESTORE_STATE;
  const C = RESTORE_COMMAND;
  const R = RESTORE_RESULT;
  /** After the application may have been stopped, a failure starts it again before the alert. */
  const onError = { next: 'WasApplicationStopped' };
  const onPruneError = { next: S.report, resultPath: at(R.pruneFailed) };
  const onRestartError = { next: NOTIFY_FAILURE, resultPath: at(R.restartFailed) };
  return {
    Comment:
      'Database restore and point-in-time recovery of the Kennel Management System, started by an operator: plan (or dry run), restore into a staging database, check, then (over a database) stop the application, safety dump, swap, start the application; every failure after the stop starts the application again and is alerted.',
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 43_200,
    States: {
      ...plan(S.plan, 'planRestore', {
        receiveComment:
          "Wraps whatever input was given, so that a malformed one still reaches PlanRestore's error and the alert.",
        comment:
          'Validates the input and picks the archives from the catalog: the named verified full backup, or for a point in time the full, incrementals and log archives that chain up to it. Refuses before anything changes.',
        resultPath: at(R.plan),
        next: 'IsDryRun',
        withStateMachineName: true,
      }),
      ...dryRun({
        returnComment:
          'The archives with their windows, what the result will hold and the checks it must pass.',
        next: C.restore.start,
      }),
      ...hostCommand(C.restore, {
        comment:
          "Restores the archives into a new staging database on the host (each archive's sha256 checked first); production is not touched.",
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
        next: 'ReplacesProduction',
      }),
      ReplacesProduction: {
        Type: 'Choice',
        Comment:
          'Replacing a database needs the application stopped and a safety dump first; a new database does not.',
        Choices: [
          { Variable: at(R.plan, 'overProduction'), BooleanEquals: true, Next: C.applicationStop.start },
        ],
        Default: C.swap.start,
      },
      ...hostCommand(C.applicationStop, {
        comment:
          "Stops the application with the target's configured commands, so that the safety dump holds its last write.",
        script: 'application-stop',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.stop),
        pollSeconds: 5,
        onError,
        next: C.safetyDump.start,
      }),
      ...hostCommand(C.safetyDump, {
        comment:
          'Dumps the database about to be replaced, log tables included (kind safety); VerifySafetyDump registers it in the catalog.',
        script: 'database-backup',
        parameters: { 'plan.$': at(R.plan, 'safetyDump') },
        resultPath: at(R.safetyDump),
        pollSeconds: 10,
        onError,
        next: 'VerifySafetyDump',
      }),
      ...task('VerifySafetyDump', 'verifyArchive', {
        comment:
          'Streams the safety dump from S3 and checks it completely before anything is replaced; writes its manifest, verified or failed.',
        parameters: { 'plan.$': at(R.plan, 'safetyDump'), 'facts.$': at(R.safetyDump, 'result') },
        resultPath: at(R.safetyDumpVerification),
        onError,
        next: C.swap.start,
      }),
      ...hostCommand(C.swap, {
        comment:
          'Renames the staging database into place; a replaced database is renamed aside in the same transaction and kept.',
        script: 'database-swap',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.swap),
        pollSeconds: 5,
        onError,
        next: 'WasReplacing',
      }),
      WasReplacing: {
        Type: 'Choice',
        Comment: 'The application runs again only if it was stopped.',
        Choices: [{ Variable: at(R.stop), IsPresent: true, Next: C.applicationStart.start }],
        Default: S.report,
      },
      ...hostCommand(C.applicationStart, {
        comment: "Starts the application again with the target's configured commands.",
        script: 'application-start',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.start),
        pollSeconds: 5,
        onError: { next: NOTIFY_FAILURE },
        next: 'PruneSafetyDumps',
      }),
      ...task('PruneSafetyDumps', 'pruneBackups', {
        comment:
          'Removes safety dumps past their retention from S3, never the newest verified one; a failure here is reported with the restore, which has succeeded.',
        parameters: { 'plan.$': at(R.plan, 'safetyDump') },
        resultPath: at(R.prune),
        onError: onPruneError,
        next: 'StartLocalPrune',
      }),
      ...hostCommand('LocalPrune', {
        comment:
          "Removes the host's safety dumps older than their local retention, except the newest verified one.",
        script: 'prune-local',
        parameters: {
          'plan.$': at(R.plan, 'safetyDump'),
          'keepDays.$': at(R.prune, 'localKeepDays'),
          'keepFile.$': at(R.prune, 'localKeepFile'),
        },
        resultPath: at(R.localPrune),
        pollSeconds: 5,
        onError: onPruneError,
        next: S.report,
      }),
      ...report(S.report, 'reportRestore', {
        comment:
          'Writes the record of the restore: what was restored from which archives, the checks passed and the time each stage took.',
        parameters: { 'state.$': '$' },
        onError: { next: NOTIFY_FAILURE },
        summary: {
          name: 'NotifyRestored',
          workflow: STATE_MACHINE_NAME,
          comment: 'Posts the summary of the restore.',
        },
        succeeded: { name: 'Restored', comment: "The execution's output is the restore's record." },
      }),
      WasApplicationStopped: {
        Type: 'Choice',
        Comment:
          'After a failure, an application that this execution stopped is started again before the alert.',
        Choices: [{ Variable: at(R.stop), IsPresent: true, Next: C.applicationRestart.start }],
        Default: NOTIFY_FAILURE,
      },
      ...hostCommand(C.applicationRestart, {
        comment:
          'Starts the application again after a failure; the alert then says what state the database is in.',
        script: 'application-start',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.restart),
        pollSeconds: 5,
        onError: onRestartError,
        next: NOTIFY_FAILURE,
      }),
      ...failureEnd({
        workflow: STATE_MACHINE_NAME,
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

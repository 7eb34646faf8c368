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
} from './steps.ts';

/** The Lambda stages, whose names their requests' errors give. */
export const FILES_RESTORE_STATE = { plan: 'PlanFilesRestore', report: 'ReportRestore' } as const;

/**
 * The host commands, whose states the alert names when it says where a failed
 * files restore left the files. Pure calls: a bundle that reads none drops them.
 */
export const FILES_RESTORE_COMMAND = {
  filesRestore: /* @__PURE__ */ hostCommandNames('FilesRestore'),
  afterCommands: /* @__PURE__ */ hostCommandNames('AfterCommands'),
} as const;

/** Where each stage's result goes in the files restore's state; the alert and the report read them. */
export const FILES_RESTORE_RESULT = {
  failed: FAILED,
  plan: PLAN,
  restore: 'restore',
  after: 'after',
} as const;

export function filesRestore(): Definition {
  const S = FILES_RESTORE_STATE;
  const C = FILES_RESTORE_COMMAND;
  const R = FILES_RESTORE_RESULT;
  const onError = { next: NOTIFY_FAILURE };
  return {
    Comment:
      'Files restore of the Kennel Management System (application, configuration or static tarball), started by an operator: plan (or dry run), check the tarball, keep the current files aside, extract in place, run the configured follow-up commands; every failure is alerted.',
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 21_600,
    States: {
      ...plan(S.plan, 'planFilesRestore', {
        receiveComment:
          "Wraps whatever input was given, so that a malformed one still reaches PlanFilesRestore's error and the alert.",
        comment:
          'Validates the input (the kind typed again in confirm) and picks the verified tarball from the catalog; refuses before anything changes.',
        resultPath: at(R.plan),
        next: 'IsDryRun',
      }),
      ...dryRun({
        returnComment:
          'The tarball, its paths, where the current files would be kept and the commands that would run after.',
        next: C.filesRestore.start,
      }),
      ...hostCommand(C.filesRestore, {
        comment:
          'Checks the tarball (sha256, complete listing), archives the current files aside on the host, then extracts the tarball in place; a failed extraction puts the files back.',
        script: 'files-restore',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.restore),
        pollSeconds: 10,
        onError,
        next: C.afterCommands.start,
      }),
      ...hostCommand(C.afterCommands, {
        comment:
          "Runs the target's configured commands after a files restore (reinstall, build, restart services).",
        script: 'after-files-restore',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.after),
        pollSeconds: 10,
        onError,
        next: S.report,
      }),
      ...report(S.report, 'reportRestore', {
        comment:
          'Writes the record of the restore: what was restored from which archive, the checks passed and the time each stage took.',
        parameters: { 'state.$': '$' },
        onError,
        summary: {
          name: 'NotifyRestored',
          workflow: 'files-restore',
          comment: 'Posts the summary of the restore.',
        },
        succeeded: { name: 'Restored', comment: "The execution's output is the restore's record." },
      }),
      ...failureEnd({
        workflow: 'files-restore',
        comment:
          'Posts the failure and where the files from before the restore are kept; never hides the original error.',
        failed: {
          name: 'RestoreFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'RestoreFailedAndAlertNotSent',
          cause:
            'The files restore failed and the alert stage itself failed; the execution history shows both errors and the plan.',
        },
      }),
    },
  };
}

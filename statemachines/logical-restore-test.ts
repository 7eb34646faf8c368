import { at, FAILED, hostCommand, hostCommandNames, type OnError, type States, task } from './steps.ts';

/**
 * The restore test of a logical dump, as the backup runs and the weekly drill
 * run it: the host restores the dump into a scratch database (StartRestoreTest,
 * WaitForRestoreTest, CheckRestoreTest), then RestoreTest counts its tables
 * against the manifest, records the result in it and drops the database. A dump
 * that does not restore on the host fails the test too: RecordRestoreTestFailure
 * writes that into the manifest before the failure goes on to `onError`, so that
 * nothing picks the backup implicitly (shared/catalog/manifest.ts's isUsable).
 */

/** The host command's states; a failure of its check is a failed restore test. */
export const RESTORE_TEST_COMMAND = /* @__PURE__ */ hostCommandNames('RestoreTest');
/** The Lambda stages: the check, and the record of a restore that failed on the host. */
export const RESTORE_TEST_STATE = {
  check: 'RestoreTest',
  recordFailure: 'RecordRestoreTestFailure',
} as const;

export interface LogicalRestoreTestOptions {
  /** What the host command does, in this workflow. */
  commandComment: string;
  checkComment: string;
  /** Where the run's plan and the archive's verified sha256 are. */
  plan: string;
  sha256: string;
  /** Where the host command's state and the check's result go. */
  commandResult: string;
  result: string;
  pollSeconds: number;
  /** Where a failure goes, once a failed restore on the host is recorded. */
  onError: OnError;
  next: string;
}

export function logicalRestoreTest(options: LogicalRestoreTestOptions): States {
  const { onError } = options;
  return {
    ...hostCommand(RESTORE_TEST_COMMAND, {
      comment: options.commandComment,
      script: 'restore-test',
      parameters: { 'plan.$': options.plan, 'sha256.$': options.sha256 },
      resultPath: options.commandResult,
      pollSeconds: options.pollSeconds,
      onError: { next: RESTORE_TEST_STATE.recordFailure },
      next: RESTORE_TEST_STATE.check,
    }),
    ...task(RESTORE_TEST_STATE.check, 'restoreTest', {
      comment: options.checkComment,
      // The command's sentAt is the test's start, recorded with its end in the manifest.
      parameters: { 'plan.$': options.plan, 'command.$': options.commandResult },
      resultPath: options.result,
      onError,
      next: options.next,
    }),
    ...task(RESTORE_TEST_STATE.recordFailure, 'restoreTest', {
      comment:
        "The dump did not restore on the host (or the command could not be sent, which records nothing): writes the failed restore test into the backup's manifest, its detail redacted, then goes on to the failure.",
      parameters: { 'plan.$': options.plan, 'failed.$': at(FAILED) },
      resultPath: at('restoreTestRecorded'),
      onError,
      next: onError.next,
    }),
  };
}

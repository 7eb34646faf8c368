import { at, hostCommand, type OnError, PLAN, type States, task } from './steps.ts';

/**
 * The restore test of a pgBackRest backup set, as states for the physical backup
 * run: StartPhysicalRestoreTest / WaitForPhysicalRestoreTest /
 * CheckPhysicalRestoreTest (host/physical-restore-test.sh on the DB host), then
 * RecordPhysicalRestoreTest, which records the outcome, passed or failed, in the
 * catalog. A test that failed (or could not run) is recorded too, and then fails
 * the run: its backup must not become the base of anything.
 *
 * Input of the first state: the run's plan at `$.plan` (target, runId,
 * startedAt) and the set's label at `set`. A passed test goes to `next` with its
 * outcome at `$.physicalRestoreTest`; a failed one to `onError.next`, with the
 * host's error at `$.failed.CheckPhysicalRestoreTest` (or Start…) and the
 * record's at `$.failed.RecordPhysicalRestoreTest`.
 */

/** The states; the record stage's errors name the last. */
export const PHYSICAL_RESTORE_TEST_STATE = {
  start: 'StartPhysicalRestoreTest',
  wait: 'WaitForPhysicalRestoreTest',
  check: 'CheckPhysicalRestoreTest',
  finished: 'PhysicalRestoreTestFinished',
  record: 'RecordPhysicalRestoreTest',
} as const;

/** Where its results go in the run's state: the host command's, and the recorded outcome. */
export const PHYSICAL_RESTORE_TEST_RESULT = {
  command: 'physicalRestoreTestCommand',
  outcome: 'physicalRestoreTest',
} as const;

export interface PhysicalRestoreTestOptions {
  /** JSONPath of the backup set's label, e.g. `$.physicalBackup.label`. */
  set: string;
  /** Where a passed test goes (the expiry of older backups). */
  next: string;
  /** Where a failed test goes once recorded, and where the recording's own failure goes. */
  onError: OnError;
}

export function physicalRestoreTest(options: PhysicalRestoreTestOptions): States {
  const S = PHYSICAL_RESTORE_TEST_STATE;
  const R = PHYSICAL_RESTORE_TEST_RESULT;
  return {
    ...hostCommand(
      { start: S.start, wait: S.wait, check: S.check, finished: S.finished },
      {
        comment:
          'Restores the backup set into a scratch instance on the DB host, recovers it to its consistent point, checks it (pg_amcheck, every row of every table, exact counts) and removes it, also on failure.',
        script: 'physical-restore-test',
        parameters: { 'plan.$': at(PLAN), 'set.$': options.set },
        resultPath: at(R.command),
        pollSeconds: 30,
        // A failed or timed-out test is recorded as failed before the run fails.
        onError: { next: S.record },
        next: S.record,
      },
    ),
    ...task(S.record, 'recordPhysicalRestoreTest', {
      comment:
        "Records the restore test's outcome (passed or failed, counts, amcheck, duration) with its report in the catalog; throws when the test failed, so that the backup is used as the base of nothing.",
      parameters: { 'set.$': options.set, 'state.$': '$' },
      resultPath: at(R.outcome),
      onError: options.onError,
      next: options.next,
    }),
  };
}

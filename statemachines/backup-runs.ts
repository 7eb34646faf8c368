import type { HostCommandName } from '../functions/start-host-command/commands.ts';
import {
  at,
  type Definition,
  failureEnd,
  forEach,
  hostCommand,
  hostCommandNames,
  type LambdaName,
  MAX_EXECUTION_SECONDS,
  NOTIFY_RUN_FAILURE,
  notify,
  PLAN,
  plan,
  RECEIVE_REQUEST,
  releaseRunLock,
  type States,
  takeRunLock,
  task,
} from './steps.ts';

/**
 * The shape both backup workflows share: plan the runs, take the run lock of
 * the kind on each planned target, back up each target in a Map whose
 * iterations alert their own failure, prune, give the lock back, and fail at
 * the end naming the runs that failed.
 */

const onRunError = { next: NOTIFY_RUN_FAILURE };

export interface BackupWorkflowOptions {
  workflow: 'database-backup' | 'files-backup';
  comment: string;
  plan: { name: string; fn: LambdaName; receiveComment: string; comment: string };
  runs: {
    comment: string;
    /** The iteration's first state, when not the archive's Start state (a Choice by the plan's engine, say). */
    startAt?: string;
    /** The host command that writes the run's archive and local copy and reports its facts (`<resultPath>.result`). */
    archive: { noun: string; script: HostCommandName; comment: string; resultPath: string };
    /** What VerifyArchive proves of this kind of archive. */
    verifyComment: string;
    /** The run's own stages after VerifyArchive, starting here and ending by going to PruneBackups. */
    afterVerify: string;
    states: States;
  };
}

/** Each run writes its archive, verifies it, does its own stages, then prunes. */
export function backupWorkflow(options: BackupWorkflowOptions): Definition {
  const { workflow, runs } = options;
  const archive = hostCommandNames(runs.archive.noun);
  return {
    Comment: options.comment,
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: MAX_EXECUTION_SECONDS,
    States: {
      ...plan(options.plan.name, options.plan.fn, {
        receiveComment: options.plan.receiveComment,
        comment: options.plan.comment,
        resultPath: at('plans'),
        next: 'TakeRunLock',
      }),
      // One kind of one target at a time: the scheduled kinds come round again, so a second run refuses.
      ...takeRunLock({
        workflow,
        timeoutSeconds: MAX_EXECUTION_SECONDS,
        targets: 'States.ArrayUnique($.plans[*].target)',
        scope: '$.plans[0].kind',
        next: 'BackUpEachTarget',
      }),
      ...forEach('BackUpEachTarget', {
        comment: runs.comment,
        itemsPath: at('plans'),
        item: PLAN,
        startAt: runs.startAt ?? archive.start,
        states: {
          ...hostCommand(archive, {
            comment: runs.archive.comment,
            script: runs.archive.script,
            parameters: { 'plan.$': at(PLAN) },
            resultPath: runs.archive.resultPath,
            pollSeconds: 30,
            onError: onRunError,
            next: 'VerifyArchive',
          }),
          ...task('VerifyArchive', 'verifyArchive', {
            comment: runs.verifyComment,
            parameters: { 'plan.$': at(PLAN), 'facts.$': `${runs.archive.resultPath}.result` },
            resultPath: at('verification'),
            onError: onRunError,
            next: runs.afterVerify,
          }),
          ...runs.states,
          ...task('PruneBackups', 'pruneBackups', {
            comment:
              "Removes backups past retention from S3, never the newest verified one, and lists the host's expired copies.",
            parameters: { 'plan.$': at(PLAN) },
            resultPath: at('prune'),
            onError: onRunError,
            next: 'StartLocalPrune',
          }),
          ...hostCommand('LocalPrune', {
            comment:
              "Removes the host's copies older than the kind's local retention, except the newest verified one.",
            script: 'prune-local',
            parameters: {
              'plan.$': at(PLAN),
              'keepDays.$': at('prune', 'localKeepDays'),
              'keepFile.$': at('prune', 'localKeepFile'),
            },
            resultPath: at('localPrune'),
            pollSeconds: 10,
            onError: onRunError,
            next: 'RunSucceeded',
          }),
          RunSucceeded: {
            Type: 'Pass',
            Comment:
              "This target's archive is in S3, verified (and restore-tested when full), and old copies are pruned.",
            Result: 'succeeded',
            ResultPath: at('status'),
            End: true,
          },
          ...notify(NOTIFY_RUN_FAILURE, {
            workflow,
            comment:
              "Posts this target's failure (workflow, execution, target, state, error, cause, console link); the other targets go on.",
            next: 'RunFailed',
          }),
          RunFailed: {
            Type: 'Pass',
            Comment:
              "Records the failure as this iteration's result, so one broken target does not stop the others.",
            Result: 'failed',
            ResultPath: at('status'),
            End: true,
          },
        },
        resultPath: at('runs'),
        next: 'ReleaseRunLock',
      }),
      ...releaseRunLock('ReleaseRunLock', 'CheckRuns'),
      CheckRuns: {
        Type: 'Pass',
        Comment: 'Did any target fail?',
        Parameters: { 'anyFailed.$': "States.ArrayContains($.runs[*].status, 'failed')" },
        ResultPath: at('summary'),
        Next: 'AllRunsSucceeded',
      },
      AllRunsSucceeded: {
        Type: 'Choice',
        Comment: 'Succeeds only when every target succeeded.',
        Choices: [{ Variable: at('summary', 'anyFailed'), BooleanEquals: true, Next: 'NameFailedRuns' }],
        Default: 'BackupSucceeded',
      },
      NameFailedRuns: {
        Type: 'Pass',
        Comment: "Names the targets that failed; each one's cause was alerted on its own.",
        Parameters: {
          'cause.$':
            "States.Format('Backups failed for {}; each failure was alerted with its state, error and cause.', States.JsonToString($.runs[?(@.status == 'failed')].plan.target))",
        },
        ResultPath: at('summary'),
        Next: 'SomeRunsFailed',
      },
      SomeRunsFailed: {
        Type: 'Fail',
        Comment: 'Ends the execution as failed, naming the failed targets.',
        Error: 'BackupRunsFailed',
        CausePath: at('summary', 'cause'),
      },
      BackupSucceeded: {
        Type: 'Succeed',
        Comment: "Every target's archive is in S3, verified, and old copies are pruned.",
      },
      ...failureEnd({
        workflow,
        comment:
          'Posts a failure before any target ran (a malformed input, say); never hides the original error.',
        failed: {
          name: 'BackupFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'BackupFailedAndAlertNotSent',
          cause:
            'The backup failed and the alert stage itself failed; the execution history shows both errors.',
        },
      }),
    },
  };
}

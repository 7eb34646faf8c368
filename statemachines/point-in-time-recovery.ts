import { SWAP_COMMAND, SWAP_RESULT, SWAP_STATE, stagedSwap } from './staged-swap.ts';
import {
  at,
  type Definition,
  dryRun,
  FAILED,
  failureEnd,
  hostCommand,
  hostCommandNames,
  MAX_EXECUTION_SECONDS,
  NOTIFY_FAILURE,
  PLAN,
  plan,
  RECEIVE_REQUEST,
  report,
} from './steps.ts';

/**
 * Point-in-time recovery from the target's pgBackRest repository, started by an
 * operator: one database recovered side by side into a staging database and put
 * in place by the staged swap, or the whole cluster recovered in place and a full
 * backup started right after.
 */

/** The Lambda stages, whose names their requests' errors give. */
export const POINT_IN_TIME_STATE = {
  plan: 'PlanPointInTimeRecovery',
  startFullBackup: 'StartFullBackup',
  report: 'ReportPointInTimeRecovery',
} as const;

/** The host commands, whose states the alert names when it says how far a failed recovery got. */
export const POINT_IN_TIME_COMMAND = {
  restore: /* @__PURE__ */ hostCommandNames('PointInTimeRestore'),
  cluster: /* @__PURE__ */ hostCommandNames('ClusterRecovery'),
  ...SWAP_COMMAND,
} as const;

/** Where each stage's result goes in the recovery's state; the alert and the report read them. */
export const POINT_IN_TIME_RESULT = {
  failed: FAILED,
  plan: PLAN,
  restore: 'restore',
  fullBackup: 'fullBackup',
  /** Starting the full backup after a whole-cluster recovery failed: reported, not fatal. */
  fullBackupFailed: 'fullBackupFailed',
  ...SWAP_RESULT,
} as const;

/** The database-backup state machine, by its logical id in serverless.yml. */
export const DATABASE_BACKUP_MACHINE = 'DatabaseBackupStateMachine';

export function pointInTimeRecovery(): Definition {
  const S = POINT_IN_TIME_STATE;
  const C = POINT_IN_TIME_COMMAND;
  const R = POINT_IN_TIME_RESULT;
  return {
    Comment:
      'Point-in-time recovery of the Kennel Management System from the WAL, started by an operator: plan (or dry run) against the catalog and the repository; one database restored side by side to the target second and swapped into place (application stopped only for the swap, safety dump first, the replaced database kept), or the whole cluster recovered in place and a full backup started.',
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: MAX_EXECUTION_SECONDS,
    States: {
      ...plan(S.plan, 'planPointInTimeRecovery', {
        receiveComment:
          "Wraps whatever input was given, so that a malformed one still reaches PlanPointInTimeRecovery's error and the alert.",
        comment:
          'Validates the input and picks the backup set from the catalog (the newest that passed verification and its restore test and stopped before the target); refuses a target in the future, before the oldest recoverable point or past a WAL gap, before anything changes.',
        resultPath: at(R.plan),
        next: 'IsDryRun',
      }),
      ...dryRun({
        returnComment:
          'The backup set, the WAL range, the expected duration and what would be replaced; nothing is changed.',
        next: 'IsWholeCluster',
      }),
      IsWholeCluster: {
        Type: 'Choice',
        Comment: 'A whole-cluster recovery goes in place; a database is recovered beside production.',
        Choices: [{ Variable: at(PLAN, 'scope'), StringEquals: 'cluster', Next: C.cluster.start }],
        Default: C.restore.start,
      },
      ...hostCommand(C.restore, {
        comment:
          'Restores the backup set side by side on the host, recovers it to the target and promotes it, checks the database (pg_amcheck) and copies it into a new staging database of the production cluster; the side cluster is always removed. Production is not touched.',
        script: 'point-in-time-restore',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.restore),
        pollSeconds: 15,
        onError: { next: SWAP_STATE.onError },
        next: SWAP_STATE.enter,
      }),
      ...stagedSwap({ report: S.report, what: 'the recovered database' }),
      ...hostCommand(C.cluster, {
        comment:
          'Stops PostgreSQL, restores the backup set over the data directory (pgbackrest restore --delta) to the target, starts PostgreSQL and waits until it has promoted. A failure goes to the clean-up, which starts PostgreSQL again where its data directory is whole and says what is left.',
        script: 'point-in-time-restore',
        parameters: { 'plan.$': at(R.plan) },
        resultPath: at(R.restore),
        pollSeconds: 15,
        onError: { next: SWAP_STATE.onError },
        next: S.startFullBackup,
      }),
      [S.startFullBackup]: {
        Type: 'Task',
        Comment:
          'Starts a full backup of the recovered cluster (database-backup with kind full), without waiting for it: backups from before the recovery hold the abandoned timeline.',
        Resource: 'arn:aws:states:::states:startExecution',
        Parameters: {
          // An ARN the plugin can scope the role's grant to (a Ref would leave the executions' unscoped).
          StateMachineArn: {
            'Fn::Sub': [
              `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:stateMachine:\${Name}`,
              { Name: { 'Fn::GetAtt': [DATABASE_BACKUP_MACHINE, 'Name'] } },
            ],
          },
          Input: { kind: 'full' },
        },
        ResultPath: at(R.fullBackup),
        TimeoutSeconds: 60,
        Retry: [
          {
            ErrorEquals: ['StepFunctions.SdkClientException', 'StepFunctions.StepFunctionsException'],
            IntervalSeconds: 2,
            MaxAttempts: 3,
            BackoffRate: 2,
          },
        ],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: at(R.fullBackupFailed), Next: S.report }],
        Next: S.report,
      },
      ...report(S.report, 'reportPointInTimeRecovery', {
        comment:
          'Records the measured recovery rate in the catalog and writes the record of the recovery: the backup set and WAL used, the time recovered to, the checks passed and the time each stage took.',
        parameters: { 'state.$': '$' },
        onError: { next: NOTIFY_FAILURE },
        summary: {
          name: 'NotifyRecovered',
          workflow: 'point-in-time-recovery',
          comment: 'Posts the summary of the recovery.',
        },
        succeeded: { name: 'Recovered', comment: "The execution's output is the recovery's record." },
      }),
      ...failureEnd({
        workflow: 'point-in-time-recovery',
        comment:
          'Posts the failure and what state the database or cluster is in; never hides the original error.',
        failed: {
          name: 'RecoveryFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'RecoveryFailedAndAlertNotSent',
          cause:
            'The recovery failed and the alert stage itself failed; the execution history shows both errors and the plan.',
        },
      }),
    },
  };
}

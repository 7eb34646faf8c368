import {
  at,
  COMMAND,
  type Definition,
  FAILED,
  failureEnd,
  HOST,
  NOTIFY_FAILURE,
  onEachHost,
  PLAN,
  plan,
  RECEIVE_REQUEST,
  report,
  select,
} from './steps.ts';

/** The states whose requests the stages' errors name. */
export const MONITORING_STATE = { plan: 'PlanMonitoring', report: 'ReportMonitoring' } as const;

/** Where each stage's result goes in the monitoring's state, and in each disk's iteration; the report reads them. */
export const MONITORING_RESULT = {
  failed: FAILED,
  plan: PLAN,
  /** One iteration per host: its `host` plan, and the measurement's `command` or how it `failed`. */
  disks: 'disks',
  /** The same per pgBackRest target, for its WAL archiver. */
  archivers: 'archivers',
  host: HOST,
  command: COMMAND,
} as const;

export function monitoring(): Definition {
  const S = MONITORING_STATE;
  const R = MONITORING_RESULT;
  return {
    Comment:
      "Hourly monitoring: S3 reachable, the daily full backup present, the host's backup disk under its threshold, WAL archiving working (pg_stat_archiver, the failure's reason from the server log, pgBackRest's repository); the age of every kind's newest backup, the disk usage, the WAL archive age and the repositories' sizes go out as CloudWatch metrics for the alarms and the dashboard.",
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 3000,
    States: {
      ...plan(S.plan, 'planMonitoring', {
        receiveComment:
          'Wraps the input (the schedule passes none), so that PlanMonitoring sees the same request shape as every plan stage.',
        comment:
          "Lists the catalog (the S3 check), reads every kind's newest verified backup, its age, and whether the daily full is there; sums each pgBackRest repository's objects.",
        resultPath: at(R.plan),
        next: 'MeasureEachDisk',
      }),
      ...onEachHost('MeasureEachDisk', {
        comment: "Every target's host measures its backup disk.",
        command: {
          noun: 'DiskUsage',
          comment: 'Asks the host how full the filesystem of its backup directory is.',
          script: 'disk-usage',
          pollSeconds: 5,
        },
        done: 'DiskMeasured',
        notDone: {
          name: 'DiskNotMeasured',
          comment: 'A host that cannot be measured is itself a finding; the report lists it.',
        },
        resultPath: at(R.disks),
        next: 'CheckEachArchiver',
      }),
      ...onEachHost('CheckEachArchiver', {
        comment:
          "Every pgBackRest target's host reports its WAL archiver, the reason of its last failure and the repository.",
        itemsPath: at(R.plan, 'archivers'),
        command: {
          noun: 'WalArchiving',
          comment:
            "Asks the host for pg_stat_archiver, the server log's lines about the last failed segment, and pgBackRest's info.",
          script: 'wal-archiving',
          pollSeconds: 5,
        },
        done: 'WalArchivingChecked',
        notDone: {
          name: 'WalArchivingNotChecked',
          comment: 'A host whose archiver cannot be checked is itself a finding; the report lists it.',
        },
        resultPath: at(R.archivers),
        next: S.report,
      }),
      ...report(S.report, 'reportMonitoring', {
        comment:
          'Emits the backup-age, disk, WAL archive age and repository size metrics; fails listing a missing daily full, a disk over the threshold, WAL archiving failing or off, a repository not readable, or a host not measured.',
        parameters: select(R.plan, R.disks, R.archivers),
        onError: { next: NOTIFY_FAILURE },
        succeeded: { name: 'MonitoringPassed', comment: 'The output holds the measurements.' },
      }),
      ...failureEnd({
        workflow: 'monitoring',
        comment: 'Posts what the monitoring found; never hides the original error.',
        failed: { name: 'MonitoringFailed', comment: 'Ends the execution as failed with what was found.' },
        alertNotSent: {
          error: 'MonitoringFailedAndAlertNotSent',
          cause:
            'The monitoring found a problem or failed, and the alert stage itself failed; the execution history shows both.',
        },
      }),
    },
  };
}

import {
  at,
  COMMAND,
  type Definition,
  FAILED,
  HOST,
  onEachHost,
  PLAN,
  plan,
  RECEIVE_REQUEST,
  report,
  select,
} from './steps.ts';

/** The states whose requests the stages' errors name. */
export const WAL_ARCHIVE_AGE_STATE = { plan: 'PlanWalArchiveAge', report: 'ReportWalArchiveAge' } as const;

/** Where each stage's result goes; the report reads them. */
export const WAL_ARCHIVE_AGE_RESULT = {
  failed: FAILED,
  plan: PLAN,
  /** One iteration per host: its `host` plan, and the measurement's `command` or how it `failed`. */
  archivers: 'archivers',
  host: HOST,
  command: COMMAND,
} as const;

/** The end of a run that measured nothing: no alert, the alarm's missing minute is the signal. */
const NOT_MEASURED = 'WalArchiveAgeNotMeasured';

/**
 * Every minute: each pgBackRest target's WAL archive age, as a metric. The
 * hourly monitoring alerts on archiver failures with their reason; the RPO is a
 * minute and its alarm fires at five, which an hourly metric cannot feed. So this
 * light run (one read-only query on the host, no repository access) feeds the
 * alarm every minute, and never alerts by itself: a run that measures nothing
 * leaves a minute without data, which the alarm treats as breaching, once,
 * instead of an alert a minute.
 */
export function walArchiveAge(): Definition {
  const S = WAL_ARCHIVE_AGE_STATE;
  const R = WAL_ARCHIVE_AGE_RESULT;
  return {
    Comment:
      "Every minute: each pgBackRest target's WAL archive age (seconds since the newest archived segment while WAL waits, 0 when all is archived) as a CloudWatch metric for the five-minute alarm. Never alerts: a minute without data sets off the alarm.",
    StartAt: RECEIVE_REQUEST,
    // Within the minute, so that runs never overlap.
    TimeoutSeconds: 50,
    States: {
      ...plan(S.plan, 'planWalArchiveAge', {
        receiveComment:
          'Wraps the input (the schedule passes none), so that PlanWalArchiveAge sees the same request shape as every plan stage.',
        comment: 'Lists the targets with pgBackRest settings; reads nothing else.',
        resultPath: at(R.plan),
        next: 'MeasureEachArchiver',
        onError: { next: NOT_MEASURED },
      }),
      ...onEachHost('MeasureEachArchiver', {
        comment: "Every pgBackRest target's host reads pg_stat_archiver and its current WAL segment.",
        command: {
          noun: 'ArchiveAge',
          comment: "Asks the host for its archiver's state (one read-only query).",
          script: 'wal-archive-age',
          pollSeconds: 2,
        },
        done: 'ArchiveAgeRead',
        notDone: {
          name: 'ArchiveAgeNotRead',
          comment: 'A host that cannot be read emits no age this minute: the alarm treats that as breaching.',
        },
        resultPath: at(R.archivers),
        next: S.report,
      }),
      ...report(S.report, 'reportWalArchiveAge', {
        comment: 'Emits each measured WAL archive age as a metric; never fails on what it measured.',
        parameters: select(R.archivers),
        onError: { next: NOT_MEASURED },
        succeeded: { name: 'WalArchiveAgeReported', comment: "The output holds each target's age." },
      }),
      [NOT_MEASURED]: {
        Type: 'Fail',
        Comment: 'No alert from here: the minute without data is what the alarm acts on.',
        Error: NOT_MEASURED,
        Cause:
          'The WAL archive age could not be measured this minute (the history shows why); the WalArchiveAgeSeconds alarm treats the missing minute as breaching.',
      },
    },
  };
}

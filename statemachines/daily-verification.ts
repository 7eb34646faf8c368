import {
  at,
  COMMAND,
  type Definition,
  FAILED,
  failureEnd,
  forEach,
  HOST,
  hostCommand,
  NOTIFY_FAILURE,
  onEachHost,
  PLAN,
  plan,
  RECEIVE_REQUEST,
  report,
  select,
  task,
} from './steps.ts';
import { WAL_RESULT, WAL_STATE, walArchiveStates } from './wal-runs.ts';

/** The states whose requests the stages' errors name. */
export const VERIFICATION_STATE = { plan: 'PlanVerification', report: 'ReportVerification' } as const;

/** Where each stage's result goes in the verification's state, and in each Map iteration's; the report reads them. */
export const VERIFICATION_RESULT = {
  failed: FAILED,
  plan: PLAN,
  /** One iteration per host: its `host` plan, and the check's `command` or how it `failed`. */
  hosts: 'hosts',
  host: HOST,
  command: COMMAND,
  /** One iteration per archive: the `archive`, and its `verification` or how it `failed`. */
  archives: 'archives',
  archive: 'archive',
  verification: 'verification',
  /**
   * One iteration per pgBackRest target, its WalPlan under `plan`: pgbackrest
   * verify's report (`verify`), the WAL switch's (`walSwitch`) and the proof of
   * continuity (`continuity`), and every stage that failed under `failed`.
   */
  repositories: 'repositories',
  verify: 'verify',
  walSwitch: WAL_RESULT.switch,
  continuity: WAL_RESULT.continuity,
} as const;

export function dailyVerification(): Definition {
  const S = VERIFICATION_STATE;
  const R = VERIFICATION_RESULT;
  return {
    Comment:
      'Daily verification of every backup kind and target: the newest verified backup is recent enough, its copy is on the host with the verified bytes, its archive still reads back from S3 intact; each pgBackRest repository passes verify, its WAL has no gap since the oldest kept backup and its newest full and incremental are recent; one alert lists everything missing or bad.',
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 21_600,
    States: {
      ...plan(S.plan, 'planVerification', {
        receiveComment:
          'Wraps the input (the schedule passes none), so that PlanVerification sees the same request shape as every plan stage.',
        comment:
          'Reads the catalog: for every kind, target and database, the newest verified backup, whether it is recent enough and whether a newer archive failed.',
        resultPath: at(R.plan),
        next: 'CheckEachHost',
      }),
      ...onEachHost('CheckEachHost', {
        comment:
          "Every target's host checks its local copies; a host that cannot be checked is reported, not fatal.",
        command: {
          noun: 'LocalCheck',
          comment: 'Sends the host the list of local copies to look for, with the sha256 each must have.',
          script: 'check-local-copies',
          pollSeconds: 10,
        },
        done: 'HostChecked',
        notDone: {
          name: 'HostNotChecked',
          comment: 'An unreachable host is itself a finding; the report lists it.',
        },
        resultPath: at(R.hosts),
        next: 'CheckEachRepository',
      }),
      ...forEach('CheckEachRepository', {
        comment:
          'Every target archiving with pgBackRest: its repository verified, then its WAL switched and proven continuous since the oldest kept backup; what fails is a finding, the other checks go on.',
        itemsPath: at(R.plan, R.repositories),
        item: PLAN,
        startAt: 'StartRepositoryVerify',
        states: {
          ...hostCommand('RepositoryVerify', {
            comment:
              'pgbackrest verify on the host: every backup file and WAL segment in the repository read back against the checksum recorded when it was stored.',
            script: 'pgbackrest-verify',
            parameters: { 'plan.$': at(PLAN) },
            resultPath: at(R.verify),
            pollSeconds: 30,
            // A repository that cannot be verified may still prove its WAL.
            onError: { next: WAL_STATE.switch.start },
            next: WAL_STATE.switch.start,
          }),
          ...walArchiveStates({ onError: { next: 'RepositoryChecked' }, next: 'RepositoryChecked' }),
          RepositoryChecked: {
            Type: 'Succeed',
            Comment: 'A stage that failed is a finding under failed.<State>; the report lists it.',
          },
        },
        resultPath: at(R.repositories),
        next: 'ReadBackEachArchive',
      }),
      ...forEach('ReadBackEachArchive', {
        comment: 'The newest verified archive of every kind is read back from S3 in full, two at a time.',
        itemsPath: at(R.plan, 'archives'),
        item: R.archive,
        startAt: 'VerifyArchive',
        states: {
          ...task('VerifyArchive', 'verifyArchive', {
            comment:
              "Streams the archive from S3 again: it must decompress completely, be complete and match its manifest's size and sha256.",
            parameters: { 'manifestKey.$': at(R.archive, 'manifestKey') },
            resultPath: at(R.verification),
            onError: { next: 'ArchiveBad' },
            next: 'ArchiveReadBack',
          }),
          ArchiveReadBack: { Type: 'Succeed' },
          ArchiveBad: { Type: 'Succeed', Comment: 'A bad archive is a finding; the report lists it.' },
        },
        resultPath: at(R.archives),
        next: S.report,
      }),
      ...report(S.report, 'reportVerification', {
        comment: 'Lists everything missing, stale or bad in one error, or returns what was checked.',
        parameters: select(R.plan, R.hosts, R.repositories, R.archives),
        onError: { next: NOTIFY_FAILURE },
        succeeded: { name: 'VerificationPassed', comment: 'The output says what was checked.' },
      }),
      ...failureEnd({
        workflow: 'daily-verification',
        comment: 'Posts one alert that lists every problem found; never hides the original error.',
        failed: {
          name: 'VerificationFailed',
          comment: 'Ends the execution as failed with the list of problems.',
        },
        alertNotSent: {
          error: 'VerificationFailedAndAlertNotSent',
          cause:
            'The daily verification found problems or failed, and the alert stage itself failed; the execution history shows both.',
        },
      }),
    },
  };
}

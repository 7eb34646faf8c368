import {
  at,
  type Definition,
  failureEnd,
  NOTIFY_FAILURE,
  ON_EACH_HOST_RESULT,
  onEachHost,
  plan,
  RECEIVE_REQUEST,
  select,
  task,
} from './steps.ts';

/** The states whose requests the stages' errors name. */
export const CHECK_STATE = { plan: 'PlanCheck', report: 'ReportCheck' } as const;

/** Where each stage's result goes in the workflow's state, and in each host's iteration; the report reads them. */
export const CHECK_RESULT = ON_EACH_HOST_RESULT;

const WORKFLOW = 'check';

export function check(): Definition {
  const S = CHECK_STATE;
  const R = CHECK_RESULT;
  return {
    Comment:
      "The preflight, started by an operator (or `npm run local -- check`): on each target's host the tools, the database and its role's grants, the archive settings, pgBackRest's check and a probe written to and removed from S3; then the alert channels. Succeeds when every line is OK; fails listing every line, each not OK with its fix. Changes nothing but the probe.",
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 1800,
    States: {
      ...plan(S.plan, 'planCheck', {
        receiveComment:
          "Wraps whatever input was given, so that a malformed one still reaches PlanCheck's error and the alert.",
        comment: 'Validates the input ({target?}) and lists the targets to check.',
        resultPath: at(R.plan),
        next: 'CheckEachHost',
      }),
      ...onEachHost('CheckEachHost', {
        comment:
          "Every planned target's host is checked, two at a time; one that fails does not stop the others.",
        command: {
          noun: 'HostCheck',
          comment:
            'Runs host/check.sh: reads the tools, the database, the grants and settings, runs pgbackrest check, and writes and removes an S3 probe.',
          script: 'check',
          pollSeconds: 5,
        },
        done: 'HostChecked',
        notDone: {
          name: 'HostNotChecked',
          comment: 'The report names the host and why; the other targets go on.',
        },
        resultPath: at(R.hosts),
        next: S.report,
      }),
      ...task(S.report, 'reportCheck', {
        comment:
          "Judges each host's facts and the alert channels: a line per need, OK or the exact fix; fails listing them all when one is not OK.",
        parameters: select(R.plan, R.hosts),
        resultPath: at(R.report),
        onError: { next: NOTIFY_FAILURE },
        next: 'Checked',
      }),
      Checked: {
        Type: 'Succeed',
        Comment: 'Every line is OK; the output lists them.',
        OutputPath: at(R.report),
      },
      ...failureEnd({
        workflow: WORKFLOW,
        comment: 'Posts every line and each fix; never hides the original error.',
        failed: {
          name: 'CheckFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'CheckFailedAndAlertNotSent',
          cause:
            'The check failed and the alert stage itself failed; the execution history shows both errors.',
        },
      }),
    },
  };
}

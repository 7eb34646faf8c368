import {
  at,
  type Definition,
  failureEnd,
  NOTIFY_FAILURE,
  notify,
  ON_EACH_HOST_RESULT,
  onEachHost,
  plan,
  RECEIVE_REQUEST,
  select,
  task,
} from './steps.ts';

/** The states whose requests the stages' errors name. */
export const PREPARE_STATE = { plan: 'PlanPrepareHost', report: 'ReportPrepareHost' } as const;

/** Where each stage's result goes in the workflow's state, and in each host's iteration; the report reads them. */
export const PREPARE_RESULT = ON_EACH_HOST_RESULT;

const WORKFLOW = 'prepare-host';

export function prepareHost(): Definition {
  const S = PREPARE_STATE;
  const R = PREPARE_RESULT;
  return {
    Comment:
      "Prepares each target's DB host for pgBackRest, started by an operator (idempotent; dryRun says what would change): the rendered pgbackrest.conf, the PostgreSQL settings WAL archiving needs (ALTER SYSTEM and a reload), then stanza-create and check once no setting waits for a restart. The output and the notification say what changed and whether PostgreSQL must be restarted.",
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 7200,
    States: {
      ...plan(S.plan, 'planPrepareHost', {
        receiveComment:
          "Wraps whatever input was given, so that a malformed one still reaches PlanPrepareHost's error and the alert.",
        comment:
          'Validates the input ({target?, dryRun?}) and lists the targets to prepare; refuses a target without pgbackrest settings before anything changes.',
        resultPath: at(R.plan),
        next: 'PrepareEachHost',
      }),
      ...onEachHost('PrepareEachHost', {
        comment:
          "Every planned target's host is prepared, two at a time; one that fails does not stop the others.",
        command: {
          noun: 'PrepareHost',
          comment:
            'Writes pgbackrest.conf if it differs, sets the missing PostgreSQL settings and reloads, then runs stanza-create and check unless a restart is needed (in a dry run: only reads).',
          script: 'prepare-host',
          pollSeconds: 5,
        },
        done: 'HostPrepared',
        notDone: {
          name: 'HostNotPrepared',
          comment: 'The report lists the host and why; the other targets go on.',
        },
        resultPath: at(R.hosts),
        next: S.report,
      }),
      ...task(S.report, 'reportPrepareHost', {
        comment:
          'Says per target what changed and what the operator must do next; fails listing every target not prepared.',
        parameters: select(R.plan, R.hosts),
        resultPath: at(R.report),
        onError: { next: NOTIFY_FAILURE },
        next: 'IsRestartNeeded',
      }),
      IsRestartNeeded: {
        Type: 'Choice',
        Comment: 'A setting waits for a PostgreSQL restart: the notification is a warning, not a success.',
        Choices: [
          { Variable: at(R.report, 'restartNeeded'), BooleanEquals: true, Next: 'NotifyRestartNeeded' },
        ],
        Default: 'NotifyPrepared',
      },
      ...notify('NotifyRestartNeeded', {
        workflow: WORKFLOW,
        comment: 'Posts what changed and that PostgreSQL must be restarted before prepare-host runs again.',
        message: { 'warning.$': at(R.report, 'summary') },
        next: 'Prepared',
      }),
      ...notify('NotifyPrepared', {
        workflow: WORKFLOW,
        comment: 'Posts what changed (or, in a dry run, what would).',
        message: { 'summary.$': at(R.report, 'summary') },
        next: 'Prepared',
      }),
      Prepared: {
        Type: 'Succeed',
        Comment: 'The output says per target what changed and what is next.',
        OutputPath: at(R.report),
      },
      ...failureEnd({
        workflow: WORKFLOW,
        comment: 'Posts what was done and what failed; never hides the original error.',
        failed: {
          name: 'PrepareHostFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'PrepareHostFailedAndAlertNotSent',
          cause:
            'prepare-host failed and the alert stage itself failed; the execution history shows both errors.',
        },
      }),
    },
  };
}

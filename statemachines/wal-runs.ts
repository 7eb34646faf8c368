import { at, hostCommand, hostCommandNames, type OnError, PLAN, type States, task } from './steps.ts';

/**
 * The WAL run's states, in the backup workflow's Map (RouteRun sends a plan with
 * `engine: 'wal'` here) and in the daily verification's: switch the segment on
 * the host and wait until it is archived, then prove from the repository that
 * no segment since the newest backup (a transaction-logs run) or the oldest kept
 * one (the verification, the drill: WalPlan.proves) is missing; and in the restore drill's.
 * They read the run's plan at `$.plan` unless told otherwise.
 */

export const WAL_STATE = {
  switch: hostCommandNames('WalSwitch'),
  continuity: 'CheckWalContinuity',
} as const;

/** Where the switch command (and its reported facts, `.result`) and the proof go. */
export const WAL_RESULT = { switch: 'walSwitch', continuity: 'continuity' } as const;

export function walArchiveStates(options: {
  onError: OnError;
  next: string;
  /** Where the run's WalPlan is, when not at `$.plan` (the drill's is in its plan's result). */
  plan?: string;
}): States {
  const plan = options.plan ?? at(PLAN);
  return {
    ...hostCommand(WAL_STATE.switch, {
      comment:
        "Forces a WAL segment switch on the host (pg_switch_wal) and waits until PostgreSQL has archived the segment, so every commit before this run is in the repository whatever archive_timeout says; reports the segment and pgBackRest's info.",
      script: 'wal-switch',
      parameters: { 'plan.$': plan },
      resultPath: at(WAL_RESULT.switch),
      pollSeconds: 10,
      onError: options.onError,
      next: WAL_STATE.continuity,
    }),
    ...task(WAL_STATE.continuity, 'checkWalContinuity', {
      comment:
        "Lists the repository's WAL in S3: every segment from the newest backup's (transaction-logs) or the oldest kept backup's (verification, drill) archive start to the switched one must be there; a gap fails naming its first segment and when its changes were written.",
      parameters: { 'plan.$': plan, 'facts.$': at(WAL_RESULT.switch, 'result') },
      resultPath: at(WAL_RESULT.continuity),
      onError: options.onError,
      next: options.next,
    }),
  };
}

import { at, hostCommand, hostCommandNames, NOTIFY_FAILURE, PLAN, type States, task } from './steps.ts';

/**
 * The staged swap that the database restore and the point-in-time recovery both
 * end with, once a checked staging database is on the production cluster: into
 * a new database, a rename; over the database the backups were taken of, the
 * application stopped, a safety dump taken and verified, the rename (the
 * replaced database renamed aside in the same transaction and kept), the
 * application started again and old safety dumps pruned. Every failure cleans
 * up before the alert: the application started again if the run stopped it,
 * the staging database dropped, an unverified safety dump's host copy removed.
 *
 * The plan (`$.plan`) gives `overProduction`, `safetyDump` (a backup run's plan)
 * and what database-swap, application-stop and application-start read.
 */

/** The first state of the swap, and the one every failure of the run goes to: its clean-up. */
export const SWAP_STATE = {
  enter: 'ReplacesProduction',
  onError: 'PlanCleanUp',
} as const;

/** The clean-up's states, the same in a failed run and in restore-cleanup's (shared/restore/cleanup.ts). */
export const CLEANUP_STATE = {
  plan: 'PlanCleanUp',
  startsApplication: 'StartsApplicationAgain',
} as const;

/** The swap's host commands, whose states an alert names when it says how far a failed run got. */
export const SWAP_COMMAND = {
  applicationStop: /* @__PURE__ */ hostCommandNames('ApplicationStop', 'StopApplication'),
  safetyDump: /* @__PURE__ */ hostCommandNames('SafetyDump'),
  carryLogRows: /* @__PURE__ */ hostCommandNames('CarryLogRows'),
  swap: /* @__PURE__ */ hostCommandNames('Swap'),
  applicationStart: /* @__PURE__ */ hostCommandNames('ApplicationStart', 'StartApplication'),
  applicationRestart: /* @__PURE__ */ hostCommandNames('ApplicationRestart', 'RestartApplication'),
  cleanUp: /* @__PURE__ */ hostCommandNames('CleanUp'),
} as const;

/** Where each of the swap's stages puts its result; the alert and the reports read them. */
export const SWAP_RESULT = {
  stop: 'stop',
  safetyDump: 'safetyDump',
  safetyDumpVerification: 'safetyDumpVerification',
  /** The log tables' rows carried over from the database replaced (a restore of a daily full). */
  carried: 'carried',
  swap: 'swap',
  start: 'start',
  prune: 'prune',
  localPrune: 'localPrune',
  /** Pruning old safety dumps failed after the swap succeeded: reported, not fatal. */
  pruneFailed: 'pruneFailed',
  restart: 'restart',
  /** Starting the application again after a failure failed too. */
  restartFailed: 'restartFailed',
  /** What the clean-up is to do (PlanCleanUp), what the host found and did, or how it failed. */
  cleanupPlan: 'cleanupPlan',
  cleanup: 'cleanup',
  cleanupFailed: 'cleanupFailed',
} as const;

/**
 * The swap's states, from ReplacesProduction to `report` (the workflow's report
 * stage), and WasApplicationStopped, where the workflow's other failures go too.
 */
export function stagedSwap(options: { report: string; what: string }): States {
  const C = SWAP_COMMAND;
  const R = SWAP_RESULT;
  const onError = { next: SWAP_STATE.onError };
  const onPruneError = { next: options.report, resultPath: at(R.pruneFailed) };
  return {
    [SWAP_STATE.enter]: {
      Type: 'Choice',
      Comment:
        'Replacing a database needs the application stopped and a safety dump first; a new database does not.',
      Choices: [{ Variable: at(PLAN, 'overProduction'), BooleanEquals: true, Next: C.applicationStop.start }],
      Default: C.swap.start,
    },
    ...hostCommand(C.applicationStop, {
      comment:
        "Stops the application with the target's configured commands, so that the safety dump holds its last write.",
      script: 'application-stop',
      parameters: { 'plan.$': at(PLAN) },
      resultPath: at(R.stop),
      pollSeconds: 5,
      onError,
      next: C.safetyDump.start,
    }),
    ...hostCommand(C.safetyDump, {
      comment:
        'Dumps the database about to be replaced, log tables included (kind safety); VerifySafetyDump registers it in the catalog.',
      script: 'database-backup',
      parameters: { 'plan.$': at(PLAN, 'safetyDump') },
      resultPath: at(R.safetyDump),
      pollSeconds: 10,
      onError,
      next: 'VerifySafetyDump',
    }),
    ...task('VerifySafetyDump', 'verifyArchive', {
      comment:
        'Streams the safety dump from S3 and checks it completely before anything is replaced; writes its manifest, verified or failed.',
      parameters: { 'plan.$': at(PLAN, 'safetyDump'), 'facts.$': at(R.safetyDump, 'result') },
      resultPath: at(R.safetyDumpVerification),
      onError,
      next: 'CarriesLogRows',
    }),
    CarriesLogRows: {
      Type: 'Choice',
      Comment:
        "A daily full leaves the log tables' rows out: restored over the database, they are carried over from it first. A dump that holds them (and a recovery) carries nothing.",
      Choices: [{ Variable: at(PLAN, 'carry[0]'), IsPresent: true, Next: C.carryLogRows.start }],
      Default: C.swap.start,
    },
    ...hostCommand(C.carryLogRows, {
      comment:
        "Copies the log tables' rows from the database about to be replaced into the staging database (the application is stopped), with their sequences; a reference to a row the backup does not have is set to NULL or left out as its foreign key's ON DELETE says; every count checked.",
      script: 'carry-log-rows',
      parameters: { 'plan.$': at(PLAN) },
      resultPath: at(R.carried),
      pollSeconds: 5,
      onError,
      next: C.swap.start,
    }),
    ...hostCommand(C.swap, {
      comment: `Renames the staging database (${options.what}) into place; a replaced database is renamed aside in the same transaction and kept.`,
      script: 'database-swap',
      parameters: { 'plan.$': at(PLAN) },
      resultPath: at(R.swap),
      pollSeconds: 5,
      onError,
      next: 'WasReplacing',
    }),
    WasReplacing: {
      Type: 'Choice',
      Comment: 'The application runs again only if it was stopped.',
      Choices: [{ Variable: at(R.stop), IsPresent: true, Next: C.applicationStart.start }],
      Default: options.report,
    },
    ...hostCommand(C.applicationStart, {
      comment: "Starts the application again with the target's configured commands.",
      script: 'application-start',
      parameters: { 'plan.$': at(PLAN) },
      resultPath: at(R.start),
      pollSeconds: 5,
      onError: { next: NOTIFY_FAILURE },
      next: 'PruneSafetyDumps',
    }),
    ...task('PruneSafetyDumps', 'pruneBackups', {
      comment:
        'Removes safety dumps past their retention from S3, never the newest verified one; a failure here is reported with the run, which has succeeded.',
      parameters: { 'plan.$': at(PLAN, 'safetyDump') },
      resultPath: at(R.prune),
      onError: onPruneError,
      next: 'StartLocalPrune',
    }),
    ...hostCommand('LocalPrune', {
      comment:
        "Removes the host's safety dumps older than their local retention, except the newest verified one.",
      script: 'prune-local',
      parameters: {
        'plan.$': at(PLAN, 'safetyDump'),
        'keepDays.$': at(R.prune, 'localKeepDays'),
        'keepFile.$': at(R.prune, 'localKeepFile'),
      },
      resultPath: at(R.localPrune),
      pollSeconds: 5,
      onError: onPruneError,
      next: options.report,
    }),
    ...task(SWAP_STATE.onError, 'planCleanUp', {
      comment:
        "Works out from the run's state what it may have left (the application stopped, the staging database, an unverified safety dump), the safety dump checked in the catalog.",
      parameters: { 'state.$': '$' },
      resultPath: at(R.cleanupPlan),
      onError: { next: NOTIFY_FAILURE, resultPath: at(R.cleanupFailed) },
      next: CLEANUP_STATE.startsApplication,
    }),
    ...cleanUpStates({ next: NOTIFY_FAILURE }),
  };
}

/**
 * The clean-up after PlanCleanUp: the application started again when the run
 * stopped it, then the host's clean-up (host/restore-cleanup.sh), whose facts the
 * alert reports; a failure of either is recorded and the other still runs.
 */
export function cleanUpStates(options: { next: string }): States {
  const C = SWAP_COMMAND;
  const R = SWAP_RESULT;
  return {
    [CLEANUP_STATE.startsApplication]: {
      Type: 'Choice',
      Comment: 'An application that the run stopped (or may have) and did not start is started again first.',
      Choices: [
        {
          Variable: at(R.cleanupPlan, 'startApplication'),
          BooleanEquals: true,
          Next: C.applicationRestart.start,
        },
      ],
      Default: C.cleanUp.start,
    },
    ...hostCommand(C.applicationRestart, {
      comment: "Starts the application again with the target's configured commands.",
      script: 'application-start',
      parameters: { 'plan.$': at(PLAN) },
      resultPath: at(R.restart),
      pollSeconds: 5,
      onError: { next: C.cleanUp.start, resultPath: at(R.restartFailed) },
      next: C.cleanUp.start,
    }),
    ...hostCommand(C.cleanUp, {
      comment:
        "Drops the run's staging database if it is still there, removes the host's copy of a safety dump never verified and the run's work directories, stops and removes a recovery's side cluster, starts PostgreSQL stopped by a whole-cluster recovery where its data directory is whole, and reports what of the run exists now.",
      script: 'restore-cleanup',
      parameters: { 'plan.$': at(R.cleanupPlan) },
      resultPath: at(R.cleanup),
      pollSeconds: 5,
      onError: { next: options.next, resultPath: at(R.cleanupFailed) },
      next: options.next,
    }),
  };
}

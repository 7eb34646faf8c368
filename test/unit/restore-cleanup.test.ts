import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import type { Catalog } from '../../shared/catalog/catalog.ts';
import { describeRestoreFailure } from '../../shared/restore/alert.ts';
import { type CleanupFacts, type CleanupPlan, cleanupPlanOf } from '../../shared/restore/cleanup.ts';
import { stoppedRunState } from '../../shared/restore/stopped-run.ts';

/**
 * What restore-cleanup makes of a stopped run's history (GetExecutionHistory,
 * newest first): the last state it finished, and the state it was in counted
 * as where it failed, so that a request that may have gone out counts as sent.
 */

const plan = {
  target: 'primary',
  runId: '20261130T100000Z_0000abcd',
  overProduction: true,
  targetDatabase: 'kennel_prod',
  stagingDatabase: 'kb_restoring_20261130t100000z_0000abcd',
  replacedDatabase: 'kb_replaced_20261130t100000z_0000abcd',
  database: 'kennel_prod',
  safetyDump: null,
};
const checked = { plan, check: { tables: 7, rows: 100 } };

/** The history of a run aborted while StopApplication (the stop's request) ran, newest first. */
const history: HistoryEvent[] = [
  { id: 5, previousEventId: 4, timestamp: new Date(), type: 'ExecutionAborted' },
  {
    id: 4,
    previousEventId: 3,
    timestamp: new Date(),
    type: 'TaskStateEntered',
    stateEnteredEventDetails: { name: 'StopApplication', input: JSON.stringify(checked) },
  },
  {
    id: 3,
    previousEventId: 2,
    timestamp: new Date(),
    type: 'ChoiceStateExited',
    stateExitedEventDetails: { name: 'ReplacesProduction', output: JSON.stringify(checked) },
  },
  {
    id: 2,
    previousEventId: 1,
    timestamp: new Date(),
    type: 'ChoiceStateEntered',
    stateEnteredEventDetails: { name: 'ReplacesProduction', input: JSON.stringify(checked) },
  },
];

/** The clean-up of that run: the application started again; no safety dump was begun. */
const stoppedAtStop: CleanupPlan = {
  target: 'primary',
  runId: plan.runId,
  database: 'kennel_prod',
  overProduction: true,
  targetDatabase: 'kennel_prod',
  stagingDatabase: plan.stagingDatabase,
  replacedDatabase: plan.replacedDatabase,
  failedAt: 'StopApplication',
  startApplication: true,
  safetyDump: null,
};

/** The catalog is read for a safety dump only: this run began none. */
const noCatalog = new Proxy({} as Catalog, {
  get: () => {
    throw new Error('no catalog read expected');
  },
});

describe('the state of a stopped run, from its history', () => {
  it('is the last output, with the state it was stopped in as where it failed', () => {
    expect(stoppedRunState(history, 'ABORTED')).toEqual({
      ...checked,
      failed: {
        StopApplication: {
          Error: 'ExecutionAborted',
          Cause: 'The execution was aborted (StopExecution) in this state.',
        },
      },
    });
  });

  it('starts the application again when the stop may have been sent, and knows of no safety dump', async () => {
    const cleanup = await cleanupPlanOf(noCatalog, stoppedRunState(history, 'TIMED_OUT'));
    expect(cleanup).toEqual(stoppedAtStop);
  });

  it('is none when the run finished no state (nothing was created)', () => {
    expect(stoppedRunState(history.slice(0, 2), 'ABORTED')).toBeUndefined();
  });
});

describe('what a stopped run over production left, as its alert says it', () => {
  const safetyDump = {
    runId: '20261130T100005Z_0000ef01',
    archiveKey:
      'database/safety/primary/kennel_prod/2026/11/30/kennel_prod_safety_20261130T100005Z_0000ef01.sql.zst',
    fileName: 'kennel_prod_safety_20261130T100005Z_0000ef01.sql.zst',
    manifest: 'verified' as const,
    inS3: true,
  };
  // Stopped later, once the safety dump was verified: carrying the log tables' rows over.
  const cleanupPlan: CleanupPlan = { ...stoppedAtStop, failedAt: 'WaitForCarryLogRows', safetyDump };
  const found = (replaced: boolean, standIns: CleanupFacts['standIns'] = { dropped: [], left: [] }) => ({
    stagingDropped: !replaced,
    safetyCopyRemoved: false,
    standIns,
    exists: { staging: false, target: true, replaced },
  });
  const left = (facts: CleanupFacts | undefined) =>
    describeRestoreFailure({
      plan,
      cleanupPlan,
      restart: { status: 'Success' },
      ...(facts ? { cleanup: { status: 'Success', result: facts } } : {}),
    });
  const restoreIt = `restore it with {"database": "kennel_prod", "backup": "${safetyDump.runId}", "targetDatabase": "kennel_prod", "confirm": "kennel_prod"}`;

  it('not replaced: the verified safety dump is older than the database, and is not offered as a restore', () => {
    const text = left(found(false));
    expect(text).toContain('kennel_prod is unchanged: it was not replaced');
    expect(text).toContain(
      `The safety dump ${safetyDump.archiveKey} (verified) holds kennel_prod as it was when the application stopped; kennel_prod was not replaced, so nothing needs it: do not restore it (the database is newer).`,
    );
    expect(text).not.toContain('restore it with');
  });

  it('replaced, or not known to be unchanged: the input that restores the safety dump is given', () => {
    expect(left(found(true))).toContain(restoreIt);
    // The host's clean-up did not report: what is left is not known.
    expect(left(undefined)).toContain(restoreIt);
  });

  it('names the stand-ins of omitted roles it dropped, and those it could not drop as left to do', () => {
    expect(left(found(false, { dropped: ['kennel_app'], left: [] }))).toContain(
      'The roles made to stand in for the omitted roles were dropped: kennel_app.',
    );
    expect(left(found(false, { dropped: [], left: ['kennel_reader'] }))).toContain(
      'The roles kennel_reader, made to stand in for omitted roles, are used by another database (a restore running at the same time took them for roles of this cluster): drop them once it has ended (DROP ROLE kennel_reader).',
    );
    expect(left(found(false))).not.toContain('stand in');
  });
});

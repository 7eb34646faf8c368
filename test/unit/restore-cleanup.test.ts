import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import type { Catalog } from '../../shared/catalog/catalog.ts';
import { describeRestoreFailure, leftoversOfState } from '../../shared/restore/alert.ts';
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
  recovery: null,
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
    workRemoved: 0,
    sideCluster: null,
    cluster: null,
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

describe('what a stopped whole-cluster recovery left, as its alert says it', () => {
  const cluster = {
    target: 'primary',
    runId: '20261130T100000Z_0000abcd',
    overProduction: false,
    targetDatabase: null,
    stagingDatabase: 'kb_restoring_20261130t100000z_0000abcd',
    replacedDatabase: 'kb_replaced_20261130t100000z_0000abcd',
    database: null,
    safetyDump: null,
    scope: 'cluster',
    targetTime: '2026-11-30T09:00:00Z',
  };
  const stopped = {
    plan: cluster,
    failed: { WaitForClusterRecovery: { Error: 'ExecutionAborted', Cause: 'aborted' } },
  };
  const left = async (state: CleanupFacts['cluster']) => {
    const cleanupPlan = await cleanupPlanOf(noCatalog, stopped);
    const facts: CleanupFacts = {
      stagingDropped: false,
      safetyCopyRemoved: false,
      standIns: { dropped: [], left: [] },
      workRemoved: 0,
      sideCluster: null,
      cluster: state,
      exists: { staging: false, target: false, replaced: false },
    };
    return leftoversOfState({ ...stopped, cleanupPlan, cleanup: { status: 'Success', result: facts } });
  };

  it('is planned from the run whose plan has no database: the host looks at the cluster, and nothing else', async () => {
    expect(await cleanupPlanOf(noCatalog, stopped)).toMatchObject({
      recovery: 'cluster',
      database: null,
      targetDatabase: null,
      startApplication: false,
      safetyDump: null,
      failedAt: 'WaitForClusterRecovery',
    });
  });

  it('a restore cut short: PostgreSQL stays stopped, and the input that finishes the recovery is given', async () => {
    const out = await left({ state: 'cut-short', started: false, restored: false, timeline: null });
    expect(out?.problems).toEqual([
      expect.stringContaining(
        'PostgreSQL of primary is stopped: the restore over its data directory was cut short',
      ),
    ]);
    expect(out?.problems[0]).toContain(
      'start point-in-time-recovery again with {"scope": "cluster", "targetTime": "2026-11-30T09:00:00Z", "confirm": "primary"}',
    );
  });

  it('stopped before the restore: started again as it was, nothing to do', async () => {
    const out = await left({ state: 'running', started: true, restored: false, timeline: 1 });
    expect(out).toEqual({
      lines: [
        'PostgreSQL of primary was stopped for the recovery, which restored nothing: the clean-up started it again, as it was.',
      ],
      problems: [],
    });
  });

  it('restored: recovering or promoted, and the full backup a recovery starts is still to start', async () => {
    const recovering = await left({ state: 'recovering', started: true, restored: true, timeline: null });
    expect(recovering?.problems[0]).toContain(
      'the clean-up started it again, and it is recovering to 2026-11-30T09:00:00Z, and promotes by itself once there; then start database-backup with {"kind": "full"}',
    );
    const promoted = await left({ state: 'running', started: false, restored: true, timeline: 3 });
    expect(promoted?.problems[0]).toContain(
      'recovered to 2026-11-30T09:00:00Z and has promoted (timeline 3), but the full backup a recovery starts was not: start database-backup with {"kind": "full"}',
    );
  });
});

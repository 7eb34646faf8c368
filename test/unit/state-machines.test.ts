import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { TransientError } from '../../shared/core/errors.ts';
import { VERIFICATION_RESULT, VERIFICATION_STATE } from '../../statemachines/daily-verification.ts';
import { BACKUP_STATE } from '../../statemachines/database-backup.ts';
import { RESTORE_COMMAND, RESTORE_RESULT, RESTORE_STATE } from '../../statemachines/database-restore.ts';
import { FILES_BACKUP_STATE } from '../../statemachines/files-backup.ts';
import {
  FILES_RESTORE_COMMAND,
  FILES_RESTORE_RESULT,
  FILES_RESTORE_STATE,
} from '../../statemachines/files-restore.ts';
import { MONITORING_RESULT, MONITORING_STATE } from '../../statemachines/monitoring.ts';
import {
  RECOVERY_DRILL_COMMAND,
  RECOVERY_DRILL_RESULT,
  RECOVERY_DRILL_STATE,
} from '../../statemachines/recovery-drill.ts';
import { DRILL_RESULT, DRILL_STATE } from '../../statemachines/restore-drill.ts';
import {
  MAX_EXECUTION_SECONDS,
  RETRY,
  type State,
  type States,
  TASK_SECONDS,
} from '../../statemachines/steps.ts';
import { WAL_ARCHIVE_AGE_RESULT, WAL_ARCHIVE_AGE_STATE } from '../../statemachines/wal-archive-age.ts';
import { WORKFLOWS, type WorkflowName } from '../../statemachines/workflows.ts';

/**
 * The definitions the builder renders, checked without AWS: the same validation
 * serverless-step-functions runs (`validate: true`), and the rules every state
 * follows by construction. The template test checks that these are what deploys.
 */

// asl-validator ships no type declarations.
type AslValidator = (definition: unknown) => { isValid: boolean; errors: unknown[] };
const aslValidator = createRequire(import.meta.url)('asl-validator') as AslValidator;

/** Every state, those inside Map states too (names are unique across a machine here). */
function allStates(states: States): [string, State][] {
  return Object.entries(states).flatMap(([name, state]) => [
    [name, state] as [string, State],
    ...allStates((state.ItemProcessor as { States?: States } | undefined)?.States ?? {}),
  ]);
}

/** The definition with every Fn::GetAtt replaced by the ARN CloudFormation would give it. */
function withArns(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withArns);
  if (value === null || typeof value !== 'object') return value;
  const getAtt = (value as { 'Fn::GetAtt'?: [string, string] })['Fn::GetAtt'];
  if (getAtt) return `arn:aws:lambda:us-east-1:123456789012:function:kennel-backup-test-${getAtt[0]}`;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withArns(v)]));
}

const functionOf = (state: State) =>
  (state.Resource as { 'Fn::GetAtt'?: [keyof typeof TASK_SECONDS, string] } | undefined)?.['Fn::GetAtt']?.[0];

const names = Object.keys(WORKFLOWS) as WorkflowName[];

/** The every-minute measurement alerts nothing itself: its missing minute sets off the alarm instead. */
const SILENT: readonly WorkflowName[] = ['wal-archive-age'];

describe('the retry policy', () => {
  it("retries a stage on the transient error class's own name", () => {
    expect(RETRY.stage.ErrorEquals).toContain(new TransientError('x').name);
    expect(RETRY.alert.ErrorEquals).not.toContain(new TransientError('x').name);
  });
});

describe.each(names)('the workflow %s', (workflow) => {
  const definition = WORKFLOWS[workflow]();

  it('is a valid state machine once its Fn::GetAtt are ARNs', () => {
    const result = aslValidator(withArns(definition));
    expect(result.errors).toEqual([]);
    expect(result.isValid).toBe(true);
  });

  it('ends within MAX_EXECUTION_SECONDS, which the leftover rule relies on', () => {
    expect(definition.TimeoutSeconds).toBeGreaterThan(0);
    expect(definition.TimeoutSeconds).toBeLessThanOrEqual(MAX_EXECUTION_SECONDS);
  });

  it('would be rejected by the same check if a transition pointed nowhere', () => {
    const broken = withArns(definition) as typeof definition;
    const first = broken.States[broken.StartAt] as State & { Next?: string };
    expect(first.Next).toEqual(expect.any(String));
    first.Next = 'NoSuchState';
    expect(aslValidator(broken).isValid).toBe(false);
  });

  it('retries every task by the one policy, waits for it as long as its function may run, and catches its error', () => {
    const tasks = allStates(definition.States).filter(([, s]) => s.Type === 'Task');
    expect(tasks.length).toBeGreaterThan(0);
    for (const [name, task] of tasks) {
      const fn = functionOf(task);
      // The one task that is no Lambda: starting the full backup after a whole-cluster recovery.
      if (task.Resource === 'arn:aws:states:::states:startExecution') {
        expect(name).toBe('StartFullBackup');
        expect(task.Catch, name).toEqual([expect.objectContaining({ ErrorEquals: ['States.ALL'] })]);
        continue;
      }
      expect(fn, name).toBeDefined();
      expect(task.TimeoutSeconds, name).toBe(TASK_SECONDS[fn as keyof typeof TASK_SECONDS]);
      expect(task.Retry, name).toEqual([fn === 'sendAlert' ? RETRY.alert : RETRY.stage]);
      expect(task.Catch, name).toEqual([expect.objectContaining({ ErrorEquals: ['States.ALL'] })]);
    }
  });

  it('records a failed stage under failed.<its state>, so the alert and the reports name it', () => {
    for (const [name, state] of allStates(definition.States)) {
      for (const caught of (state.Catch as { ResultPath: string }[] | undefined) ?? []) {
        if (caught.ResultPath.startsWith('$.failed'))
          expect(caught.ResultPath, name).toBe(`$.failed.${name}`);
      }
    }
  });

  it('gives every alert the whole state, from which the alert reads the failing state and the plan', () => {
    const alerts = allStates(definition.States).filter(([, s]) => functionOf(s) === 'sendAlert');
    if (SILENT.includes(workflow)) expect(alerts).toEqual([]);
    else expect(alerts.length).toBeGreaterThan(0);
    for (const [name, alert] of alerts) {
      expect(alert.Parameters, name).toMatchObject({
        'executionId.$': '$$.Execution.Id',
        'startedAt.$': '$$.Execution.StartTime',
        'state.$': '$',
      });
    }
  });
});

type Names = Readonly<Record<string, string | Readonly<Record<string, string>>>>;
const STATE_NAMES: [WorkflowName, Names][] = [
  ['database-backup', BACKUP_STATE],
  ['files-backup', FILES_BACKUP_STATE],
  ['database-restore', RESTORE_STATE],
  ['database-restore', RESTORE_COMMAND],
  ['files-restore', FILES_RESTORE_STATE],
  ['files-restore', FILES_RESTORE_COMMAND],
  ['daily-verification', VERIFICATION_STATE],
  ['monitoring', MONITORING_STATE],
  ['restore-drill', DRILL_STATE],
  ['recovery-drill', RECOVERY_DRILL_STATE],
  ['recovery-drill', RECOVERY_DRILL_COMMAND],
  ['wal-archive-age', WAL_ARCHIVE_AGE_STATE],
];

describe.each(STATE_NAMES)('the state names %s exports', (workflow, constants) => {
  it('are states of its definition', () => {
    const states = new Set(allStates(WORKFLOWS[workflow]().States).map(([name]) => name));
    const named = Object.values(constants).flatMap((c) => (typeof c === 'string' ? [c] : Object.values(c)));
    expect(named.length).toBeGreaterThan(0);
    for (const name of named) expect(states, name).toContain(name);
  });
});

const RESULT_PATHS: [WorkflowName, Readonly<Record<string, string>>][] = [
  ['database-restore', RESTORE_RESULT],
  ['files-restore', FILES_RESTORE_RESULT],
  ['daily-verification', VERIFICATION_RESULT],
  ['monitoring', MONITORING_RESULT],
  ['restore-drill', DRILL_RESULT],
  ['recovery-drill', RECOVERY_DRILL_RESULT],
  ['wal-archive-age', WAL_ARCHIVE_AGE_RESULT],
];

describe.each(RESULT_PATHS)('the result paths %s exports', (workflow, results) => {
  it('are where its definition puts results, or a Map its items', () => {
    const text = JSON.stringify(WORKFLOWS[workflow]());
    for (const key of Object.values(results)) {
      expect(text, key).toMatch(new RegExp(`"\\$\\.${key}[".]|"${key}\\.\\$"`));
    }
  });
});

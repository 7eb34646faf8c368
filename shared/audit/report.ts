import type { HistoryEvent } from '@aws-sdk/client-sfn';
import type { States } from '../../statemachines/steps.ts';
import { isWorkflow, WORKFLOWS } from '../../statemachines/workflows.ts';
import { backupInputSchema } from '../backup/database-plan.ts';
import { filesInputSchema } from '../backup/files-plan.ts';
import { FILE_KINDS, SCHEDULED_DATABASE_KINDS } from '../catalog/keys.ts';
import type { Manifest } from '../catalog/manifest.ts';
import type { PhysicalRecord } from '../catalog/physical.ts';
import { STORAGE_TRANSITIONS, type StorageClass } from '../catalog/retention.ts';
import { maxAgeMinutes, type ScheduledKind } from '../catalog/schedule.ts';
import type { Target } from '../core/config.ts';
import { redactValues } from '../core/redact.ts';
import * as z from '../core/schema.ts';
import { DAY_MS } from '../core/time.ts';
import { prepareInputSchema } from '../host/prepare.ts';
import { restoreInputSchema } from '../restore/database-schemas.ts';
import { filesRestoreInputSchema } from '../restore/files-plan.ts';
import { pointInTimeInputSchema } from '../restore/point-in-time.ts';
import { checkInputSchema } from '../watch/check.ts';
import { drillInputSchema } from '../watch/drill.ts';
import { recoveryDrillInputSchema } from '../watch/recovery-drill.ts';
import { auditReportInputSchema } from './gather.ts';
import type { ExportedExecution, ExportedHistory, TerminalStatus } from './history-export.ts';
import { DEFAULT_LAMBDA_GB, NOT_COUNTED, PRICES_READ_ON, PRICES_REGION, UNIT_PRICES } from './prices.ts';
import { monthSpan, scheduledSlots } from './slots.ts';

/**
 * The monthly audit report, computed from the audit trail (the exported
 * execution histories) and the catalog (manifests and pgBackRest records):
 * every scheduled slot of every kind and target, whether it ran, was verified
 * and restore-tested; the gaps; the measured RPO and recovery times; every
 * failure and what followed it; every restore an operator started; and the
 * month's cost as far as it can be counted. Pure: the reading is gather.ts's,
 * the rendering render.ts's.
 */

/**
 * How long after its slot a scheduled execution may start and still be the
 * slot's: EventBridge starts a scheduled target within a minute or so; ten is
 * generous and below the shortest interval (the 15-minute WAL runs).
 */
export const SLOT_START_TOLERANCE_MS = 10 * 60_000;

/** The workflows an operator starts by hand to put data back: every execution of them is listed. */
export const OPERATOR_RESTORE_WORKFLOWS = ['database-restore', 'point-in-time-recovery', 'files-restore'];

/** The drills, whose durations are recovery times. */
const DRILL_WORKFLOWS = ['restore-drill', 'recovery-drill'];

/** The workflows a scheduled slot of a kind starts. */
const workflowOfKind = (kind: ScheduledKind) =>
  (FILE_KINDS as readonly string[]).includes(kind) ? 'files-backup' : 'database-backup';

/** What a slot's backup is made by: a dump, pgBackRest, the WAL run, a tarball. */
export type Engine = 'logical' | 'physical' | 'wal' | 'files';

/** An ended execution with what its history counts for the cost estimate. */
export interface AuditedExecution extends ExportedExecution {
  /** Step Functions' billed state transitions: one per state entered. */
  transitions: number;
  /** The Lambda functions' run time, seconds, and their invocations. */
  lambdaSeconds: number;
  lambdaRequests: number;
  /** SSM Run Command commands sent (the StartX states of host commands). */
  runCommands: number;
}

/** A scheduled slot of one backup series: its kind, engine, target and database (null for the whole cluster, files). */
export interface SlotOf {
  kind: ScheduledKind;
  engine: Engine;
  target: string;
  database: string | null;
  /** When the schedule was due, ISO 8601 UTC. */
  at: string;
  /** The execution that ran it (its name); null when none started. */
  execution: string | null;
}

export interface Slot extends SlotOf {
  /** How its execution ended; `missed` when none started. */
  status: TerminalStatus | 'missed';
  /** The backup it made: an archive's key, a pgBackRest label; null when none. */
  backup: string | null;
  verified: boolean;
  /** Whether its restore test passed; null for the kinds that have none (incrementals, WAL runs, files). */
  restoreTested: boolean | null;
}

export type GapType =
  | 'missed-slot'
  | 'no-backup'
  | 'failed-verification'
  | 'failed-restore-test'
  | 'no-restore-test';

export interface Gap extends SlotOf {
  type: GapType;
  detail: string;
}

export interface RpoFinding {
  kind: ScheduledKind;
  engine: Engine;
  target: string;
  database: string | null;
  /** Verified backups (WAL: succeeded runs) made in the month. */
  backups: number;
  /**
   * The oldest the newest verified backup got in the month, minutes. Before the
   * series' first backup the age runs from `countedFrom`; null when nothing was
   * due yet.
   */
  worstAgeMinutes: number | null;
  worstAt: string | null;
  /** The month's start, or the deployment's first slot of this kind when it came later (ISO 8601). */
  countedFrom: string;
  /** The worst age is the time with no backup at all of the series, from `countedFrom`. */
  beforeFirstBackup: boolean;
  /** The age the daily verification and the alarms allow (schedule.ts maxAgeMinutes). */
  limitMinutes: number;
  overLimit: boolean;
}

export interface RecoveryTime {
  what: 'restore test' | 'restore drill' | 'recovery drill' | 'operator restore';
  /** The backup tested, or the execution. */
  subject: string;
  at: string;
  /** From the run's own start to its own end; null for a restore test recorded without its start (older records). */
  seconds: number | null;
  outcome: string;
}

export interface Failure {
  workflow: string;
  execution: string;
  kind: string | null;
  status: TerminalStatus;
  startedAt: string;
  stoppedAt: string;
  error: string | null;
  cause: string | null;
  /** The next succeeded execution of the same workflow and kind: what was done about it. Null: nothing yet. */
  resolvedBy: { execution: string; at: string } | null;
}

/**
 * Executions that changed nothing by design, by workflow: dry runs, and inputs
 * refused (InvalidInputError) before anything was sent to the host. Counted
 * here, not listed as restores or as failures needing follow-up.
 */
export interface ChangedNothing {
  workflow: string;
  dryRuns: number;
  refused: number;
}

/** From when a backup series' scheduled slots are counted: its first execution or backup (null: none yet, no slot counted). */
export interface SlotsCountedFrom {
  kind: ScheduledKind;
  engine: Engine;
  target: string;
  database: string | null;
  /** The first slot counted (ISO); null when none: the series never ran, or no slot was due since it first showed. */
  from: string | null;
  /** When the series first showed (ISO: its first execution or backup), or null: it never ran. */
  firstSeen: string | null;
}

export interface OperatorRestore {
  workflow: string;
  execution: string;
  /** The execution's name: Step Functions records no caller in the history (CloudTrail's StartExecution does). */
  who: string;
  startedAt: string;
  stoppedAt: string;
  seconds: number;
  input: unknown;
  /** Whether the input held something that looked like a secret, replaced by *** here (the history keeps it). */
  inputRedacted: boolean;
  status: TerminalStatus;
  error: string | null;
}

export interface CostLine {
  item: string;
  quantity: number;
  unit: string;
  unitUsd: number;
  usd: number;
  source: string;
}

export interface CostEstimate {
  region: string;
  pricesReadOn: string;
  lines: CostLine[];
  totalUsd: number;
  budgetUsd: number | null;
  overBudget: boolean | null;
  /** Archive bytes by storage class at the report's end. */
  storageBytes: Record<StorageClass | 'STANDARD', number>;
  notCounted: readonly string[];
}

export interface AuditReport {
  version: 1;
  month: string;
  generatedAt: string;
  /** What the report covers: the month, up to its end or (the month under way) the report's time. */
  from: string;
  until: string;
  summary: {
    slots: number;
    ran: number;
    verified: number;
    restoreTests: { expected: number; passed: number };
    gaps: number;
    gapsByType: Partial<Record<GapType, number>>;
    failures: number;
    unresolvedFailures: number;
    /** Restores an operator ran: dry runs and refused inputs are in `changedNothing`. */
    operatorRestores: number;
    dryRuns: number;
    refusedInputs: number;
    executions: number;
    costUsd: number;
    budgetUsd: number | null;
  };
  slots: Slot[];
  slotsCountedFrom: SlotsCountedFrom[];
  gaps: Gap[];
  rpo: RpoFinding[];
  recovery: RecoveryTime[];
  failures: Failure[];
  operatorRestores: OperatorRestore[];
  changedNothing: ChangedNothing[];
  cost: CostEstimate;
  /** Exported histories and catalog objects that did not parse, by key: counted nowhere above. */
  unreadable: string[];
  chart: {
    /** Each backup series' age, hours, every hour of the month (null before its first backup). */
    ages: { label: string; hours: (number | null)[] }[];
    /** Every backup execution's duration, minutes, at its start (the WAL runs' left out). */
    durations: { at: string; minutes: number; kind: string; status: TerminalStatus }[];
  };
}

export interface AuditInputs {
  month: string;
  now: Date;
  targets: readonly Target[];
  /** The executions that started in the month. */
  executions: readonly AuditedExecution[];
  /** The catalog as it is: every manifest and pgBackRest record listed (older ones give the age at the month's start). */
  manifests: readonly Manifest[];
  physical: readonly PhysicalRecord[];
  unreadable: readonly string[];
  budgetUsd: number | null;
}

/** The rows a scheduled kind has on each target: per database, per engine. */
function rowsOf(kind: ScheduledKind, targets: readonly Target[]) {
  return targets.flatMap((target) => {
    const databases = target.databases ?? [target.database];
    const physical = target.pgbackrest !== undefined;
    const row = (engine: Engine, database: string | null) => ({
      kind,
      engine,
      target: target.name,
      database,
    });
    switch (kind) {
      case 'full':
        return [...databases.map((d) => row('logical', d)), ...(physical ? [row('physical', null)] : [])];
      case 'monthly':
        return databases.map((d) => row('logical', d));
      case 'incremental':
        return physical ? [row('physical', null)] : [];
      case 'transaction-logs':
        return physical ? [row('wal', null)] : [];
      default:
        return [row('files', null)];
    }
  });
}

/** Whether a slot's backup is restore-tested by its own run: the dumps and the physical fulls. */
const restoreTestedKind = (kind: ScheduledKind, engine: Engine) =>
  engine === 'logical' || (engine === 'physical' && kind === 'full');

/**
 * What an execution set out to do, read from its input as its workflow reads it
 * (the workflow's input schema, defaults applied): a backup's kind and every
 * backup series it makes, `kind/engine/target/database` (a files backup's given
 * paths added); any other workflow's input, with its defaults. An input the
 * schema refuses stands for itself. A later success resolves a failure when it
 * did everything the failure was to do.
 */
interface RunScope {
  kind: string | null;
  does: string[];
}

/** JSON with every object's keys sorted: two inputs that say the same thing give the same text. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );

/**
 * Every workflow's input schema, by workflow: what a run's input means, with
 * its defaults. A function, read when called: gather.ts, which imports this
 * module, holds one of them.
 */
export const workflowInputSchemas = () => ({
  'database-backup': backupInputSchema,
  'files-backup': filesInputSchema,
  'database-restore': restoreInputSchema,
  'point-in-time-recovery': pointInTimeInputSchema,
  'files-restore': filesRestoreInputSchema,
  'restore-drill': drillInputSchema,
  'recovery-drill': recoveryDrillInputSchema,
  'prepare-host': prepareInputSchema,
  'audit-report': auditReportInputSchema,
  check: checkInputSchema,
});

const inputSchemaOf = (workflow: string): z.core.$ZodType | undefined =>
  (workflowInputSchemas() as Record<string, z.core.$ZodType>)[workflow];

function runScopeOf(e: ExportedExecution, targets: readonly Target[]): RunScope {
  const input = e.input ?? {};
  const raw = { kind: null, does: [`${e.workflow} ${canonical(input)}`] };
  const series = (
    kind: ScheduledKind,
    target: string | undefined,
    keep: (row: Row) => boolean,
    suffix = '',
  ) => {
    const chosen = targets.filter((t) => target === undefined || t.name === target);
    const does = rowsOf(kind, chosen)
      .filter(keep)
      .map((r) => `${r.kind}/${r.engine}/${r.target}/${r.database ?? ''}${suffix}`);
    // A target not configured (any longer): the run stands for its input.
    return { kind, does: does.length > 0 ? does : raw.does };
  };
  if (e.workflow === 'database-backup') {
    const parsed = z.safeParse(backupInputSchema, input);
    if (!parsed.success) return raw;
    const { kind, target, database } = parsed.data;
    return series(kind, target, (r) => database === undefined || r.database === database);
  }
  if (e.workflow === 'files-backup') {
    const parsed = z.safeParse(filesInputSchema, input);
    if (!parsed.success) return raw;
    const { kind, target, paths } = parsed.data;
    return series(kind, target, () => true, paths ? ` ${canonical(paths)}` : '');
  }
  const schema = inputSchemaOf(e.workflow);
  const parsed = schema ? z.safeParse(schema, input) : null;
  return parsed?.success ? { kind: null, does: [`${e.workflow} ${canonical(parsed.data)}`] } : raw;
}

/** Whether an execution's input, as its workflow reads it, asks for a dry run: it shows a plan and changes nothing. */
function isDryRun(e: ExportedExecution): boolean {
  const schema = inputSchemaOf(e.workflow);
  const parsed = schema ? z.safeParse(schema, e.input ?? {}) : null;
  const data: unknown = parsed?.success ? parsed.data : null;
  return typeof data === 'object' && data !== null && (data as { dryRun?: unknown }).dryRun === true;
}

/**
 * Whether an execution's input was refused: it failed with InvalidInputError
 * (every refusal of bad input says "Nothing was changed") before it sent
 * anything to the host. Later InvalidInputErrors (a state changed by hand) are failures.
 */
const wasRefused = (e: AuditedExecution) =>
  e.status === 'FAILED' && e.error === 'InvalidInputError' && e.runCommands === 0;

/** Whether `later` did everything `failed` was to do. */
const covers = (later: RunScope, failed: RunScope) => failed.does.every((d) => later.does.includes(d));

/** A run's duration from its own start to its own end, seconds: never negative (clocks a little apart count as 0). */
export const seconds = (from: string, to: string) =>
  Math.max(0, Math.round((Date.parse(to) - Date.parse(from)) / 1000));
const minutes = (ms: number) => Math.round(ms / 60_000);

/** Computes the month's report; `inputs` come from gather.ts (or a test). */
export function auditReport(inputs: AuditInputs): AuditReport {
  const { start, end } = monthSpan(inputs.month);
  const until = new Date(Math.min(end.getTime(), inputs.now.getTime()));
  const executions = [...inputs.executions].sort((a, b) => a.startDate.localeCompare(b.startDate));
  const scopes = new Map(executions.map((e) => [e, runScopeOf(e, inputs.targets)]));
  const scopeOf = (e: AuditedExecution) => scopes.get(e) ?? runScopeOf(e, inputs.targets);
  const kindOf = (e: AuditedExecution) => scopeOf(e).kind;
  const manifestsOf = groupBy(inputs.manifests, (m) => m.executionId);
  const recordsOf = groupBy(inputs.physical, (r) => r.executionId);

  // Dry runs and refused inputs changed nothing: counted apart, never failures to
  // follow up, and no series begins with one.
  const changedNothing = new Set(executions.filter((e) => isDryRun(e) || wasRefused(e)));
  const acted = executions.filter((e) => !changedNothing.has(e));

  const slots: Slot[] = [];
  const gaps: Gap[] = [];
  const slotsCountedFrom: SlotsCountedFrom[] = [];
  for (const kind of [...SCHEDULED_DATABASE_KINDS, ...FILE_KINDS] as ScheduledKind[]) {
    const rows = rowsOf(kind, inputs.targets);
    if (rows.length === 0) continue;
    const workflow = workflowOfKind(kind);
    // A series' slots count from its first execution or backup: before it, the
    // series did not exist (a month before the deployment, a target added later).
    // A first sign that is a run of this kind may be the slot due just before it;
    // a backup of another run (the WAL's first pgBackRest backup, a manual
    // full) shows the series after any slot due earlier, which counts from the next.
    const ranAsSlot = (e: AuditedExecution) => e.workflow === workflow && kindOf(e) === kind;
    const firsts = new Map(rows.map((row) => [row, firstOfSeries(row, inputs, acted, scopeOf, ranAsSlot)]));
    const firstSlot = new Map(
      [...firsts].map(([row, first]) => {
        const from =
          first === undefined
            ? undefined
            : first.slotRunAt !== undefined
              ? countedFrom(kind, first.slotRunAt, start, until)
              : countedFrom(kind, first.at + SLOT_START_TOLERANCE_MS + 1, start, until);
        return [row, from !== undefined && from < until.getTime() ? from : undefined];
      }),
    );
    for (const [row, from] of firstSlot) {
      const first = firsts.get(row);
      slotsCountedFrom.push({
        ...row,
        from: from === undefined ? null : new Date(from).toISOString(),
        // Seen by the month's end; a series that began later had not run in it.
        firstSeen:
          first === undefined || first.at > until.getTime() ? null : new Date(first.at).toISOString(),
      });
    }
    // A slot whose start is still within the tolerance may not have started yet.
    for (const due of scheduledSlots(kind, start, new Date(until.getTime() - SLOT_START_TOLERANCE_MS))) {
      const execution = executions.find(
        (e) =>
          e.workflow === workflow &&
          kindOf(e) === kind &&
          Date.parse(e.startDate) >= due.getTime() &&
          Date.parse(e.startDate) < due.getTime() + SLOT_START_TOLERANCE_MS,
      );
      for (const row of rows) {
        const from = firstSlot.get(row);
        if (from === undefined || due.getTime() < from) continue;
        const slot = slotOf(row, due, execution, manifestsOf, recordsOf);
        slots.push(slot);
        gaps.push(...gapsOf(slot, execution, manifestsOf, recordsOf));
      }
    }
  }

  const failures = acted
    .filter((e) => e.status !== 'SUCCEEDED')
    .map((e): Failure => {
      const next = executions.find(
        (later) =>
          later.status === 'SUCCEEDED' &&
          later.workflow === e.workflow &&
          later.startDate > e.startDate &&
          covers(scopeOf(later), scopeOf(e)),
      );
      return {
        workflow: e.workflow,
        execution: e.name,
        kind: kindOf(e),
        status: e.status,
        startedAt: e.startDate,
        stoppedAt: e.stopDate,
        error: e.error,
        // The whole cause is in the exported history.
        cause: e.cause === null || e.cause.length <= 300 ? e.cause : `${e.cause.slice(0, 299)}…`,
        resolvedBy: next ? { execution: next.name, at: next.startDate } : null,
      };
    });

  const operatorRestores = acted
    .filter((e) => OPERATOR_RESTORE_WORKFLOWS.includes(e.workflow))
    .map((e): OperatorRestore => {
      const input = redactValues(e.input);
      return {
        workflow: e.workflow,
        execution: e.name,
        who: e.name,
        startedAt: e.startDate,
        stoppedAt: e.stopDate,
        seconds: seconds(e.startDate, e.stopDate),
        input,
        inputRedacted: JSON.stringify(input) !== JSON.stringify(e.input),
        status: e.status,
        error: e.error,
      };
    });

  const series = rpoSeries(inputs, executions, kindOf);
  const deployedAt = firstSeen(inputs, executions);
  const rpo = series.map((s) => rpoOf(s, countedFrom(s.kind, deployedAt, start, until), start, until));
  const recovery = recoveryTimes(inputs, acted, start, until);
  const cost = costOf(inputs, executions, start, end, until);
  const nothingByWorkflow = new Map<string, ChangedNothing>();
  for (const e of changedNothing) {
    const line = nothingByWorkflow.get(e.workflow) ?? { workflow: e.workflow, dryRuns: 0, refused: 0 };
    if (wasRefused(e)) line.refused += 1;
    else line.dryRuns += 1;
    nothingByWorkflow.set(e.workflow, line);
  }
  const nothing = [...nothingByWorkflow.values()].sort((a, b) => a.workflow.localeCompare(b.workflow));
  const gapsByType: Partial<Record<GapType, number>> = {};
  for (const gap of gaps) gapsByType[gap.type] = (gapsByType[gap.type] ?? 0) + 1;
  const expected = slots.filter((s) => s.restoreTested !== null);

  return {
    version: 1,
    month: inputs.month,
    generatedAt: inputs.now.toISOString(),
    from: start.toISOString(),
    until: until.toISOString(),
    summary: {
      slots: slots.length,
      ran: slots.filter((s) => s.status !== 'missed').length,
      verified: slots.filter((s) => s.verified).length,
      restoreTests: { expected: expected.length, passed: expected.filter((s) => s.restoreTested).length },
      gaps: gaps.length,
      gapsByType,
      failures: failures.length,
      unresolvedFailures: failures.filter((f) => f.resolvedBy === null).length,
      operatorRestores: operatorRestores.length,
      dryRuns: nothing.reduce((n, l) => n + l.dryRuns, 0),
      refusedInputs: nothing.reduce((n, l) => n + l.refused, 0),
      executions: executions.length,
      costUsd: cost.totalUsd,
      budgetUsd: cost.budgetUsd,
    },
    slots,
    slotsCountedFrom,
    gaps,
    rpo,
    recovery,
    failures,
    operatorRestores,
    changedNothing: nothing,
    cost,
    unreadable: [...inputs.unreadable],
    chart: {
      ages: series
        .filter((s) => s.kind !== 'monthly')
        .map((s) => ({ label: s.label, hours: hourlyAges(s.times, start, until) })),
      // The 15-minute WAL runs take a minute each: thousands of bars that would hide the backups'.
      durations: executions
        .filter(
          (e) =>
            (e.workflow === 'database-backup' || e.workflow === 'files-backup') &&
            kindOf(e) !== 'transaction-logs',
        )
        .map((e) => ({
          at: e.startDate,
          minutes: Math.round(seconds(e.startDate, e.stopDate) / 6) / 10,
          kind: kindOf(e) ?? e.workflow,
          status: e.status,
        })),
    },
  };
}

type Row = ReturnType<typeof rowsOf>[number];

/** Whether a dump's or tarball's manifest belongs to a backup series (its kind, target and database). */
const ofSeries = (m: Manifest, row: Pick<Row, 'kind' | 'target' | 'database'>) =>
  m.kind === row.kind && m.target === row.target && ('database' in m ? m.database : null) === row.database;

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
}

/** The manifest or record a slot's execution made for this row. */
function backupOf(
  row: Row,
  execution: AuditedExecution,
  manifestsOf: Map<string, Manifest[]>,
  recordsOf: Map<string, PhysicalRecord[]>,
): { manifest?: Manifest; record?: PhysicalRecord } {
  if (row.engine === 'physical') {
    const record = recordsOf.get(execution.executionArn)?.find((r) => r.target === row.target);
    return record ? { record } : {};
  }
  const manifest = manifestsOf.get(execution.executionArn)?.find((m) => ofSeries(m, row));
  return manifest ? { manifest } : {};
}

function slotOf(
  row: Row,
  due: Date,
  execution: AuditedExecution | undefined,
  manifestsOf: Map<string, Manifest[]>,
  recordsOf: Map<string, PhysicalRecord[]>,
): Slot {
  const tested = restoreTestedKind(row.kind, row.engine);
  const slot = { ...row, at: due.toISOString() };
  if (!execution)
    return {
      ...slot,
      execution: null,
      status: 'missed',
      backup: null,
      verified: false,
      restoreTested: tested ? false : null,
    };
  const common = { ...slot, execution: execution.name, status: execution.status };
  if (row.engine === 'wal')
    return { ...common, backup: null, verified: execution.status === 'SUCCEEDED', restoreTested: null };
  const { manifest, record } = backupOf(row, execution, manifestsOf, recordsOf);
  const verification = manifest?.verification ?? record?.verification;
  return {
    ...common,
    backup: manifest?.archive.key ?? record?.label ?? null,
    verified: verification?.state === 'verified',
    restoreTested: tested ? verification?.restoreTest?.state === 'passed' : null,
  };
}

function gapsOf(
  slot: Slot,
  execution: AuditedExecution | undefined,
  manifestsOf: Map<string, Manifest[]>,
  recordsOf: Map<string, PhysicalRecord[]>,
): Gap[] {
  const { kind, engine, target, database, at } = slot;
  const gap = (type: GapType, detail: string): Gap => ({
    type,
    kind,
    engine,
    target,
    database,
    at,
    execution: slot.execution,
    detail,
  });
  const what = `${kind} ${engine} backup of ${target}${database ? `/${database}` : ''} due ${at}`;
  if (!execution) return [gap('missed-slot', `No execution started for the ${what}.`)];
  if (engine === 'wal')
    return slot.verified
      ? []
      : [
          gap(
            'failed-verification',
            `The WAL run ${execution.name} ended ${execution.status}: WAL continuity not proven (${execution.error ?? 'no error recorded'}).`,
          ),
        ];
  const { manifest, record } = backupOf(slot, execution, manifestsOf, recordsOf);
  const verification = manifest?.verification ?? record?.verification;
  if (!verification)
    return [
      gap(
        'no-backup',
        `The execution ${execution.name} ended ${execution.status} without a backup for the ${what} (${execution.error ?? 'no error recorded'}).`,
      ),
    ];
  if (verification.state !== 'verified')
    return [
      gap(
        'failed-verification',
        `${slot.backup} failed verification: ${verification.detail ?? 'no detail recorded'}.`,
      ),
    ];
  if (slot.restoreTested === false)
    return verification.restoreTest?.state === 'failed'
      ? [
          gap(
            'failed-restore-test',
            `${slot.backup} failed its restore test: ${verification.restoreTest.detail}.`,
          ),
        ]
      : [gap('no-restore-test', `${slot.backup} was verified but never restore-tested.`)];
  return [];
}

/** A backup series: the times its verified backups were taken (WAL: its succeeded runs), oldest first. */
interface Series {
  kind: ScheduledKind;
  engine: Engine;
  target: string;
  database: string | null;
  label: string;
  times: number[];
}

function rpoSeries(
  inputs: AuditInputs,
  executions: readonly AuditedExecution[],
  kindOf: (e: AuditedExecution) => string | null,
): Series[] {
  const series: Series[] = [];
  for (const kind of [...SCHEDULED_DATABASE_KINDS, ...FILE_KINDS] as ScheduledKind[]) {
    for (const row of rowsOf(kind, inputs.targets)) {
      const label = `${row.target}${row.database ? `/${row.database}` : ''} ${kind}${row.engine === 'physical' ? ' (pgBackRest)' : ''}`;
      let times: number[];
      if (row.engine === 'wal')
        times = executions
          .filter((e) => e.workflow === 'database-backup' && kindOf(e) === kind && e.status === 'SUCCEEDED')
          .map((e) => Date.parse(e.startDate));
      else if (row.engine === 'physical')
        times = inputs.physical
          .filter((r) => r.target === row.target && r.kind === kind && r.verification.state === 'verified')
          .map((r) => Date.parse(r.backup.stoppedAt));
      else
        times = inputs.manifests
          .filter((m) => ofSeries(m, row) && m.verification.state === 'verified')
          .map((m) => Date.parse(m.window.until));
      series.push({ ...row, label, times: times.sort((a, b) => a - b) });
    }
  }
  return series;
}

/**
 * The first thing the audit trail or the catalog holds (an execution's start, a
 * backup's end), ms: before the month when the system ran before it.
 */
function firstSeen(inputs: AuditInputs, executions: readonly AuditedExecution[]): number {
  return Math.min(
    ...executions.map((e) => Date.parse(e.startDate)),
    ...inputs.manifests.map((m) => Date.parse(m.finishedAt)),
    ...inputs.physical.map((r) => Date.parse(r.backup.stoppedAt)),
  );
}

/**
 * When a backup series first shows: `at`, ms, its first execution in the month
 * (one whose input makes that kind on that target and database), or its first
 * backup in the catalog (a dump's or tarball's manifest, a pgBackRest record;
 * for the WAL runs, the target's first pgBackRest backup, since WAL is archived
 * from the stanza's creation); `slotRunAt`, the start of a run that could fill
 * the series' slot (`ranAsSlot`), when one starts with that first sign. Undefined
 * when it never ran.
 */
function firstOfSeries(
  row: Row,
  inputs: AuditInputs,
  executions: readonly AuditedExecution[],
  scopeOf: (e: AuditedExecution) => RunScope,
  ranAsSlot: (e: AuditedExecution) => boolean,
): { at: number; slotRunAt?: number } | undefined {
  const key = `${row.kind}/${row.engine}/${row.target}/${row.database ?? ''}`;
  const signs = [
    ...executions
      .filter((e) => scopeOf(e).does.some((d) => d === key || d.startsWith(`${key} `)))
      .map((e) => ({ at: Date.parse(e.startDate), ranAsSlot: ranAsSlot(e) })),
    ...(row.engine === 'physical' || row.engine === 'wal'
      ? inputs.physical
          .filter((r) => r.target === row.target && (row.engine === 'wal' || r.kind === row.kind))
          .map((r) => Date.parse(r.backup.startedAt))
      : inputs.manifests.filter((m) => ofSeries(m, row)).map((m) => Date.parse(m.startedAt))
    ).map((at) => ({ at, ranAsSlot: false })),
  ];
  if (signs.length === 0) return undefined;
  const at = Math.min(...signs.map((sign) => sign.at));
  // A run that could fill a slot, starting with the first sign (its own backups may carry an earlier time).
  const run = signs.find((sign) => sign.ranAsSlot && sign.at - at <= SLOT_START_TOLERANCE_MS);
  return run ? { at, slotRunAt: run.at } : { at };
}

/**
 * When a series' age starts counting: the month's start, or, for a system first
 * seen during the month, the first slot of the kind due since (its execution
 * starts within the tolerance after it); `until` when none was due yet.
 */
function countedFrom(kind: ScheduledKind, deployedAt: number, start: Date, until: Date): number {
  if (deployedAt <= start.getTime()) return start.getTime();
  const from = new Date(Math.max(start.getTime(), deployedAt - SLOT_START_TOLERANCE_MS));
  return scheduledSlots(kind, from, until)[0]?.getTime() ?? until.getTime();
}

function rpoOf(s: Series, since: number, start: Date, until: Date): RpoFinding {
  const inMonth = s.times.filter((t) => t >= start.getTime() && t <= until.getTime());
  // The age peaks just before each new backup, and at the end; before the first
  // backup it runs from when one was first due (a series that began mid-month
  // was not covered before).
  let worst: { age: number; at: number; beforeFirst: boolean } | null = null;
  for (const at of [...inMonth, until.getTime()]) {
    const newest = s.times.filter((t) => t < at).at(-1);
    const from = newest ?? (since < at ? since : undefined);
    if (from === undefined) continue;
    const age = at - from;
    if (!worst || age > worst.age) worst = { age, at, beforeFirst: newest === undefined };
  }
  const limit = maxAgeMinutes(s.kind);
  const worstMinutes = worst ? minutes(worst.age) : null;
  return {
    kind: s.kind,
    engine: s.engine,
    target: s.target,
    database: s.database,
    backups: inMonth.length,
    worstAgeMinutes: worstMinutes,
    worstAt: worst ? new Date(worst.at).toISOString() : null,
    countedFrom: new Date(since).toISOString(),
    beforeFirstBackup: worst?.beforeFirst ?? false,
    limitMinutes: limit,
    overLimit: worstMinutes === null ? since < until.getTime() : worstMinutes > limit,
  };
}

function hourlyAges(times: readonly number[], start: Date, until: Date): (number | null)[] {
  const ages: (number | null)[] = [];
  for (let t = start.getTime(); t <= until.getTime(); t += 3_600_000) {
    const newest = times.filter((b) => b <= t).at(-1);
    ages.push(newest === undefined ? null : Math.round(((t - newest) / 3_600_000) * 10) / 10);
  }
  return ages;
}

function recoveryTimes(
  inputs: AuditInputs,
  executions: readonly AuditedExecution[],
  start: Date,
  until: Date,
): RecoveryTime[] {
  const inMonth = (iso: string) => Date.parse(iso) >= start.getTime() && Date.parse(iso) < until.getTime();
  // A test's duration is from its own start (the host command sent) to its own
  // result, never from verification.checkedAt, which the daily verification rewrites.
  const tests: RecoveryTime[] = [
    ...inputs.manifests.map((m) => ({ test: m.verification.restoreTest, subject: m.archive.key })),
    ...inputs.physical.map((r) => ({
      test: r.verification.restoreTest,
      subject: `${r.target} pgBackRest ${r.label}`,
    })),
  ].flatMap(({ test, subject }) =>
    test && inMonth(test.checkedAt)
      ? [
          {
            what: 'restore test' as const,
            subject,
            at: test.checkedAt,
            seconds: test.startedAt ? seconds(test.startedAt, test.checkedAt) : null,
            outcome: test.state,
          },
        ]
      : [],
  );
  const runs = executions
    .filter((e) => DRILL_WORKFLOWS.includes(e.workflow) || OPERATOR_RESTORE_WORKFLOWS.includes(e.workflow))
    .map(
      (e): RecoveryTime => ({
        what:
          e.workflow === 'restore-drill'
            ? 'restore drill'
            : e.workflow === 'recovery-drill'
              ? 'recovery drill'
              : 'operator restore',
        subject: `${e.workflow} ${e.name}`,
        at: e.startDate,
        seconds: seconds(e.startDate, e.stopDate),
        outcome: e.status,
      }),
    );
  return [...tests, ...runs].sort((a, b) => a.at.localeCompare(b.at));
}

const GB = 2 ** 30;
/** S3 transitions no object under 128 KiB (the bucket's TransitionDefaultMinimumObjectSize). */
const MIN_TRANSITION_BYTES = 128 * 1024;

/** The storage class a lifecycle rule has moved an archive to after `ageDays` (retention.ts STORAGE_TRANSITIONS). */
function storageClassOf(key: string, bytes: number, ageDays: number): StorageClass | 'STANDARD' {
  if (bytes < MIN_TRANSITION_BYTES) return 'STANDARD';
  const rule = STORAGE_TRANSITIONS.find((t) => key.startsWith(t.prefix));
  return rule?.transitions.filter((t) => ageDays >= t.days).at(-1)?.storageClass ?? 'STANDARD';
}

function costOf(
  inputs: AuditInputs,
  executions: readonly AuditedExecution[],
  start: Date,
  end: Date,
  until: Date,
): CostEstimate {
  const sum = (f: (e: AuditedExecution) => number) => executions.reduce((n, e) => n + f(e), 0);
  const monthMs = end.getTime() - start.getTime();
  // Each object's bytes for the part of the month it was stored, in its class at the report's end.
  const gbMonths: Record<StorageClass | 'STANDARD', number> = {
    STANDARD: 0,
    STANDARD_IA: 0,
    GLACIER: 0,
    DEEP_ARCHIVE: 0,
  };
  const storageBytes: Record<StorageClass | 'STANDARD', number> = {
    STANDARD: 0,
    STANDARD_IA: 0,
    GLACIER: 0,
    DEEP_ARCHIVE: 0,
  };
  const store = (key: string, bytes: number, since: number, gone: number) => {
    const from = Math.max(since, start.getTime());
    const to = Math.min(gone, until.getTime());
    if (to <= from) return;
    const storageClass = storageClassOf(key, bytes, (until.getTime() - since) / DAY_MS);
    gbMonths[storageClass] += (bytes / GB) * ((to - from) / monthMs);
    if (gone >= until.getTime()) storageBytes[storageClass] += bytes;
  };
  for (const m of inputs.manifests)
    store(m.archive.key, m.archive.size, Date.parse(m.finishedAt), Number.POSITIVE_INFINITY);
  for (const r of inputs.physical)
    store(
      `pgbackrest/${r.target}/${r.label}`,
      r.backup.repositoryDeltaBytes,
      Date.parse(r.backup.stoppedAt),
      r.expired ? Date.parse(r.expired.at) : Number.POSITIVE_INFINITY,
    );

  const line = (price: (typeof UNIT_PRICES)[keyof typeof UNIT_PRICES], quantity: number): CostLine => ({
    item: price.item,
    quantity: Math.round(quantity * 1000) / 1000,
    unit: price.unit,
    unitUsd: price.usd,
    usd: Math.round(quantity * price.usd * 100) / 100,
    source: price.source,
  });
  const lines = [
    line(
      UNIT_PRICES.stateTransition,
      sum((e) => e.transitions),
    ),
    line(UNIT_PRICES.lambdaGbSecond, sum((e) => e.lambdaSeconds) * DEFAULT_LAMBDA_GB),
    line(
      UNIT_PRICES.lambdaRequest,
      sum((e) => e.lambdaRequests),
    ),
    line(
      UNIT_PRICES.runCommand,
      sum((e) => e.runCommands),
    ),
    ...(['STANDARD', 'STANDARD_IA', 'GLACIER', 'DEEP_ARCHIVE'] as const).map((c) =>
      line(UNIT_PRICES[c], gbMonths[c]),
    ),
  ];
  const totalUsd = Math.round(lines.reduce((n, l) => n + l.usd, 0) * 100) / 100;
  return {
    region: PRICES_REGION,
    pricesReadOn: PRICES_READ_ON,
    lines,
    totalUsd,
    budgetUsd: inputs.budgetUsd,
    overBudget: inputs.budgetUsd === null ? null : totalUsd > inputs.budgetUsd,
    storageBytes,
    notCounted: NOT_COUNTED,
  };
}

/** The state names of a workflow that send a host command (their Resource is startHostCommand), by workflow. */
const HOST_COMMAND_STARTS = new Map<string, Set<string>>();

function hostCommandStarts(workflow: string): Set<string> {
  let starts = HOST_COMMAND_STARTS.get(workflow);
  if (starts) return starts;
  starts = new Set();
  const visit = (states: States) => {
    for (const [name, state] of Object.entries(states)) {
      const resource = state.Resource as { 'Fn::GetAtt'?: [string, string] } | undefined;
      if (resource?.['Fn::GetAtt']?.[0] === 'startHostCommand') starts?.add(name);
      const inner = state.ItemProcessor as { States: States } | undefined;
      if (inner) visit(inner.States);
    }
  };
  if (isWorkflow(workflow)) visit(WORKFLOWS[workflow]().States);
  HOST_COMMAND_STARTS.set(workflow, starts);
  return starts;
}

const LAMBDA_ENDS = new Set(['LambdaFunctionSucceeded', 'LambdaFunctionFailed', 'LambdaFunctionTimedOut']);

/**
 * An exported history with what it counts for the cost estimate. Lambda time
 * is each invocation's start to its end where the history has Lambda events
 * (AWS); the local runner's has only the Task states' entry and exit, paired by
 * state name.
 */
export function auditedExecution(history: ExportedHistory): AuditedExecution {
  const events: readonly HistoryEvent[] = history.events;
  const at = (e: HistoryEvent) => Date.parse(String(e.timestamp));
  const byId = new Map(events.map((e) => [e.id, e]));
  const lambdaEnds = events.filter((e) => e.type !== undefined && LAMBDA_ENDS.has(e.type));
  let lambdaSeconds = 0;
  let lambdaRequests = 0;
  if (events.some((e) => e.type === 'LambdaFunctionScheduled')) {
    lambdaRequests = events.filter((e) => e.type === 'LambdaFunctionScheduled').length;
    for (const end of lambdaEnds) {
      const started = byId.get(end.previousEventId);
      if (started?.type === 'LambdaFunctionStarted') lambdaSeconds += (at(end) - at(started)) / 1000;
    }
  } else {
    const open = new Map<string, number[]>();
    for (const e of events) {
      const name = e.stateEnteredEventDetails?.name ?? e.stateExitedEventDetails?.name;
      if (name === undefined) continue;
      if (e.type === 'TaskStateEntered') {
        lambdaRequests += 1;
        open.set(name, [...(open.get(name) ?? []), at(e)]);
      } else if (e.type === 'TaskStateExited') {
        const entered = open.get(name)?.shift();
        if (entered !== undefined) lambdaSeconds += (at(e) - entered) / 1000;
      }
    }
  }
  const starts = hostCommandStarts(history.execution.workflow);
  return {
    ...history.execution,
    transitions: events.filter((e) => e.type?.endsWith('StateEntered')).length,
    lambdaSeconds: Math.round(lambdaSeconds * 1000) / 1000,
    lambdaRequests,
    runCommands: events.filter(
      (e) => e.type === 'TaskStateEntered' && starts.has(e.stateEnteredEventDetails?.name ?? ''),
    ).length,
  };
}

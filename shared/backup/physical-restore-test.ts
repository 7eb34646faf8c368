import { createHash } from 'node:crypto';
import {
  PHYSICAL_RESTORE_TEST_RESULT,
  PHYSICAL_RESTORE_TEST_STATE,
} from '../../statemachines/physical-restore-test.ts';
import { FAILED, PLAN } from '../../statemachines/steps.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { restoreTestReportKey } from '../catalog/keys.ts';
import { unloggedFields, unloggedNote, unloggedOf, unloggedSchema } from '../catalog/unlogged.ts';
import type { Target } from '../core/config.ts';
import {
  type CaughtError,
  ConfigError,
  causeMessage,
  failedStatesSchema,
  firstFailure,
  RestoreTestFailedError,
} from '../core/errors.ts';
import { runIdentifier, sha256Hex, targetName } from '../core/identifiers.ts';
import { parseInput } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { type CommandState, commandStateSchema } from '../host/command-stage.ts';
import { pgbackrestOf, pgbackrestParams } from '../host/pgbackrest-conf.ts';
import { hostCommand, postgresParams } from '../host/scripts.ts';

/**
 * The restore test of a pgBackRest backup set (host/physical-restore-test.sh):
 * the set restored into a scratch instance on the DB host, recovered to its
 * consistent point, checked (pg_amcheck, every row read, exact counts) and
 * removed. Here: its host command, the result line it prints, and the outcome
 * the catalog records.
 */

/** A pgBackRest backup label: a full's start, or a full's and its incremental's or differential's. */
export const backupSetLabel = z
  .string()
  .check(z.regex(/^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$/, 'is not a pgBackRest backup label'));

const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
const trimmed = (path: string) => path.replace(/\/+$/, '') || '/';

/**
 * Where the target's restore tests make their scratch instances (a directory per
 * stanza and set under it): `pgbackrest.scratchDirectory`, or `<backupDir>/restore-test`.
 * For a docker target the path is inside the database service's container.
 * ConfigError when it and the cluster's data directory contain one another: the
 * test removes what it finds under it.
 */
export function scratchDirectoryOf(target: Target): string {
  const pg = pgbackrestOf(target);
  const scratch = trimmed(pg.scratchDirectory ?? `${trimmed(target.backupDir)}/restore-test`);
  const data = trimmed(pg.dataDirectory);
  if (within(scratch, data) || within(data, scratch))
    throw new ConfigError(
      `The restore tests' scratch directory ${scratch} of target "${target.name}" and its data directory ${data} contain one another; set pgbackrest.scratchDirectory to a directory apart from the cluster's. Nothing was started.`,
    );
  return scratch;
}

export const PHYSICAL_RESTORE_TEST = 'physical-restore-test';

const requestSchema = z.object({
  script: z.literal(PHYSICAL_RESTORE_TEST),
  /** The physical run's plan: its target (the stanza) and run. */
  plan: z.object({ target: targetName, runId: runIdentifier }),
  /** The backup set to restore, as pgBackRest labels it. */
  set: backupSetLabel,
});

export type PhysicalRestoreTestRequest = z.infer<typeof requestSchema>;

/** The restore test's host command; what it runs on comes from config, the set from the request. */
export const PHYSICAL_RESTORE_TEST_HOST_COMMANDS = {
  [PHYSICAL_RESTORE_TEST]: hostCommand({
    request: requestSchema,
    script: 'physical-restore-test',
    params: (config, target, { set }) => {
      const pg = pgbackrestOf(target);
      return {
        ...postgresParams(target),
        ...pgbackrestParams(config, target),
        KB_SET: set,
        KB_SCRATCH_ROOT: scratchDirectoryOf(target),
        // pgBackRest's own role: a superuser of the restored cluster too.
        KB_SCRATCH_USER: pg.user ?? pg.osUser,
        // On the host in both modes: the lock serialises the host's restore tests.
        KB_LOCK_DIR: target.backupDir,
      };
    },
  }),
};

const count = z.int().check(z.nonnegative());
/** One table's rows: its schema and name as a pair (never "schema.table"), and its exact count. */
const tableCount = z.tuple([z.string(), z.string(), count]);

const databaseResult = z.object({
  name: z.string(),
  tables: count,
  rows: count,
  /** Each table's count, when the result line had room for them all. */
  counts: z.optional(z.array(tableCount)),
});

/** The KB-RESULT line of physical-restore-test.sh: the facts of a test that passed. */
export const physicalRestoreTestResultSchema = z.object({
  set: backupSetLabel,
  state: z.literal('passed'),
  /** The restored cluster's size (pgBackRest's `info.size` of the set). */
  backupBytes: count,
  /** Where recovery stopped (at or past the backup's stop LSN), and the timeline it promoted to. */
  consistentAt: z.string().check(z.regex(/^[0-9A-F]+\/[0-9A-F]+$/)),
  timeline: count,
  amcheck: z.literal('passed'),
  databases: z.array(databaseResult),
  tables: count,
  rows: count,
  countsDigest: sha256Hex,
  countsListed: z.boolean(),
  /** Scratch directories an interrupted test had left, removed by this one. */
  swept: z.array(z.string()),
  /** The unlogged tables and sequences, counted above with the others: empty in every restore, named so that no one takes them for lost rows. */
  ...unloggedFields,
  startedAt: z.iso.datetime({ offset: true }),
  finishedAt: z.iso.datetime({ offset: true }),
  seconds: z.object({ restore: count, recovery: count, checks: count, total: count }),
});

export type PhysicalRestoreTestResult = z.infer<typeof physicalRestoreTestResultSchema>;

/**
 * The digest the host prints of every table's count: sha256 of one line per
 * database, `[NAME,[[SCHEMA,TABLE,ROWS],…]]` as compact JSON, databases by name
 * and tables by schema then name (bytewise, as PostgreSQL's "C" collation
 * orders). A restore of the same set gives the same digest.
 */
export function countsDigest(
  databases: readonly { name: string; counts: readonly [string, string, number][] }[],
) {
  const lines = databases.map((d) => `${JSON.stringify([d.name, d.counts])}\n`).join('');
  return createHash('sha256').update(lines).digest('hex');
}

/** Where the host script stops when a test fails (its messages say `physical-restore-test of <set> (<phase>)`). */
const PHASES = ['prepare', 'restore', 'recovery', 'amcheck', 'read'] as const;
type Phase = (typeof PHASES)[number];

const iso = z.iso.datetime({ offset: true });

/** What the catalog records of a restore test; its report holds the rest (every table's count, the host's error). */
export const physicalRestoreTestOutcomeSchema = z.object({
  state: z.enum(['passed', 'failed']),
  set: backupSetLabel,
  /** When the test's host command was sent (its CommandState's sentAt; absent when none was sent): with `checkedAt`, its duration. */
  startedAt: z.optional(iso),
  checkedAt: iso,
  /** One line for the record and the alert. */
  detail: z.string(),
  /** The phase a failed test stopped in; `unknown` when the command never ran or said nothing; null when it passed. */
  failedIn: z.nullable(z.enum([...PHASES, 'unknown'])),
  amcheck: z.enum(['passed', 'failed', 'not run']),
  tables: z.nullable(count),
  rows: z.nullable(count),
  countsDigest: z.nullable(sha256Hex),
  /** The unlogged tables and sequences the restore found (empty, as any physical restore has them); absent when it failed. */
  unlogged: z.optional(unloggedSchema),
  /** From sending the command to its end, as the host measured it when the test passed. */
  seconds: count,
  reportKey: z.string(),
});

export type PhysicalRestoreTestOutcome = z.infer<typeof physicalRestoreTestOutcomeSchema>;

/** The run's state when RecordPhysicalRestoreTest starts: its plan, the command, and the error that stopped it, if one did. */
const recordRequestSchema = z.object({
  set: backupSetLabel,
  state: z.object({
    [PLAN]: z.object({ target: targetName, runId: runIdentifier, startedAt: iso }),
    [PHYSICAL_RESTORE_TEST_RESULT.command]: z.optional(commandStateSchema),
    [FAILED]: z.optional(failedStatesSchema),
  }),
});

export type RecordRequest = z.infer<typeof recordRequestSchema>;

const phaseOf = (message: string): Phase | 'unknown' => {
  const phases = [...message.matchAll(/physical-restore-test of \S+ \((\w+)\)/g)].map((m) => m[1]);
  const last = phases.at(-1);
  return (PHASES as readonly string[]).includes(last ?? '') ? (last as Phase) : 'unknown';
};

/** pg_amcheck runs in the amcheck phase; a test that failed later had passed it. */
const amcheckOf = (phase: Phase | 'unknown') =>
  phase === 'amcheck' ? 'failed' : phase === 'read' ? 'passed' : 'not run';

/**
 * The outcome of a restore test and the report kept beside the catalog, from the
 * run's state: passed when the host command succeeded with its result line;
 * failed (with the phase, the error and its cause) when the command failed,
 * timed out or could not be sent.
 */
export function physicalRestoreTestOutcome(
  request: RecordRequest,
  now: Date,
): { outcome: PhysicalRestoreTestOutcome; report: Record<string, unknown> } {
  const { set, state } = request;
  const plan = state[PLAN];
  const command: CommandState | undefined = state[PHYSICAL_RESTORE_TEST_RESULT.command];
  const failure = firstFailure(state[FAILED]);
  const reportKey = restoreTestReportKey(plan.target, new Date(plan.startedAt).toISOString(), plan.runId);
  const parsed = physicalRestoreTestResultSchema.safeParse(command?.result);
  const base = {
    set,
    ...(command ? { startedAt: command.sentAt } : {}),
    checkedAt: now.toISOString(),
    reportKey,
  };
  const header = { version: 1, engine: 'pgbackrest', target: plan.target, runId: plan.runId };
  if (!failure && command?.status === 'Success' && parsed.success && parsed.data.set === set) {
    const r = parsed.data;
    const unlogged = unloggedOf(r);
    const note = unloggedNote(unlogged);
    const outcome: PhysicalRestoreTestOutcome = {
      ...base,
      state: 'passed',
      detail: `${set} restored and recovered to ${r.consistentAt} (timeline ${r.timeline}); pg_amcheck passed on ${r.databases.length} databases; ${r.tables} tables, ${r.rows} rows read in full (counts digest ${r.countsDigest.slice(0, 12)}); restore ${r.seconds.restore} s, recovery ${r.seconds.recovery} s, checks ${r.seconds.checks} s; scratch instance removed${note ? `. ${note}` : ''}`,
      failedIn: null,
      amcheck: 'passed',
      tables: r.tables,
      rows: r.rows,
      countsDigest: r.countsDigest,
      unlogged,
      seconds: r.seconds.total,
    };
    return { outcome, report: { ...header, ...outcome, result: r } };
  }
  const caught: CaughtError & { state: string } = failure ?? {
    state: PHYSICAL_RESTORE_TEST_STATE.check,
    Error: 'HostCommandFailedError',
    Cause: `The restore test's result line is missing or is not that of set ${set}: ${JSON.stringify(command?.result ?? null).slice(0, 300)}`,
  };
  const cause = causeMessage(caught.Cause);
  const phase = phaseOf(cause);
  const started = command ? Date.parse(command.sentAt) : now.getTime();
  const outcome: PhysicalRestoreTestOutcome = {
    ...base,
    state: 'failed',
    detail: `${set} failed its restore test${phase === 'unknown' ? '' : ` in the ${phase} phase`} (${caught.state}: ${caught.Error}): ${cause.slice(-1500)}`,
    failedIn: phase,
    amcheck: amcheckOf(phase),
    tables: null,
    rows: null,
    countsDigest: null,
    seconds: Math.max(0, Math.round((now.getTime() - started) / 1000)),
  };
  const failed = { state: caught.state, error: caught.Error, cause };
  return { outcome, report: { ...header, ...outcome, failure: failed } };
}

/**
 * RecordPhysicalRestoreTest: writes the report (every table's count, or the
 * host's error) and returns the outcome for the backup's record; throws
 * RestoreTestFailedError once a failed test is recorded, so the run fails and its
 * backup is the base of nothing.
 */
export async function recordPhysicalRestoreTestRun(
  catalog: Catalog,
  event: unknown,
  now = new Date(),
): Promise<PhysicalRestoreTestOutcome> {
  const request = parseInput(recordRequestSchema, event, `The ${PHYSICAL_RESTORE_TEST_STATE.record} request`);
  const { outcome, report } = physicalRestoreTestOutcome(request, now);
  await catalog.writeObject(outcome.reportKey, `${JSON.stringify(report, null, 2)}\n`, 'application/json');
  if (outcome.state === 'failed') {
    throw new RestoreTestFailedError(
      `${outcome.detail}\nRecorded in s3://${catalog.bucket}/${outcome.reportKey}. The backup set ${outcome.set} must not be restored from or built on (pgbackrest expire --set=${outcome.set} removes it and the backups built on it).`,
    );
  }
  return outcome;
}

import { RESTORE_STATE } from '../../statemachines/database-restore.ts';
import { databaseRun, planSchema } from '../backup/database-plan.ts';
import type { Catalog } from '../catalog/catalog.ts';
import {
  type BackupKind,
  MANIFEST_SUFFIX,
  runId as makeRunId,
  manifestKey,
  replacedDatabase,
  stagingDatabase,
} from '../catalog/keys.ts';
import { type DatabaseManifest, isDatabaseManifest, type Manifest, micros } from '../catalog/manifest.ts';
import { CODEC_NAMES } from '../core/codecs.ts';
import type { Config } from '../core/config.ts';
import { selectTargets } from '../core/config.ts';
import { InvalidInputError, NotFoundError } from '../core/errors.ts';
import {
  hostPath,
  objectKey,
  runIdentifier,
  sha256Hex,
  sqlIdentifier,
  targetName,
} from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { DAY_MS, utcDay } from '../core/time.ts';

/**
 * Restores are started by a person, from the console, under pressure. The input
 * is small; restoring over the database the backups were taken of needs its name
 * typed again in `confirm`; `dryRun` shows the plan and changes nothing.
 */

const restoreInputBase = {
  target: z.optional(targetName),
  /** The database whose backups to restore from. */
  database: sqlIdentifier,
  /** Where to restore: a new database, or `database` itself with `confirm`. */
  targetDatabase: sqlIdentifier,
  confirm: z.optional(z.string()),
  /** Plan only: the archives, their windows and the checks; nothing is changed. */
  dryRun: z._default(z.boolean(), false),
};

/** The database-restore workflow's input. */
export const restoreInputSchema = z.strictObject({
  ...restoreInputBase,
  /** `latest`, a run id (`20261126T020000Z_1a2b3c4d`) or an archive or manifest key from the catalog. */
  backup: z._default(z.union([z.literal('latest'), runIdentifier, objectKey]), 'latest'),
});

/** The point-in-time-recovery workflow's input. */
export const pointInTimeInputSchema = z.strictObject({
  ...restoreInputBase,
  /** ISO 8601 with a zone: `2026-11-26T10:30:00Z` or `2026-11-26T11:30:00+01:00`. */
  targetTime: z.iso.datetime({ offset: true }),
});

export const RESTORE_WORKFLOWS = ['database-restore', 'point-in-time-recovery'] as const;
export type RestoreWorkflow = (typeof RESTORE_WORKFLOWS)[number];

/** One archive a restore applies, in order; the host checks its sha256 before using it. */
const restoreStepSchema = z.object({
  kind: z.enum(['full', 'incremental', 'transaction-logs', 'safety']),
  key: objectKey,
  manifestKey: objectKey,
  sha256: sha256Hex,
  localPath: hostPath,
  codec: z.enum(CODEC_NAMES),
  window: z.object({
    since: z.nullable(z.iso.datetime({ offset: true })),
    until: z.iso.datetime({ offset: true }),
  }),
});

export type RestoreStep = z.infer<typeof restoreStepSchema>;

export const restorePlanSchema = z.object({
  workflow: z.enum(RESTORE_WORKFLOWS),
  target: targetName,
  database: sqlIdentifier,
  targetDatabase: sqlIdentifier,
  /** True when the restore replaces the database the backups were taken of. */
  overProduction: z.boolean(),
  dryRun: z.boolean(),
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  startedAt: z.iso.datetime({ offset: true }),
  /** The point in time asked for; null for a restore of one backup. */
  targetTime: z.nullable(z.iso.datetime({ offset: true })),
  /** The base (full or safety dump) first, then incrementals, then log archives. */
  archives: z.array(restoreStepSchema).check(z.minLength(1)),
  /** What the restored database holds: its tables as of `tables`, its log tables as of `logTables`. */
  recoveredTo: z.object({
    tables: z.iso.datetime({ offset: true }),
    logTables: z.nullable(z.iso.datetime({ offset: true })),
  }),
  /** Archives seen but not applied, and why (an incremental that runs past the target time). */
  notApplied: z.array(z.object({ key: objectKey, reason: z.string() })),
  /** Log tables whose rows after `targetTime` are removed after the log archives are applied. */
  logTables: z.array(sqlIdentifier),
  /** Each table's row count after the restore must lie in this range. */
  expectedRows: z.record(z.string(), z.object({ min: z.int(), max: z.int() })),
  /** The restore is built here, checked, and only then renamed into place. */
  stagingDatabase: sqlIdentifier,
  /** What the replaced database is renamed to when the restore goes over it. */
  replacedDatabase: sqlIdentifier,
  /** The dump of the database about to be replaced, taken with the application stopped. */
  safetyDump: z.nullable(planSchema),
});

export type RestorePlan = z.infer<typeof restorePlanSchema>;

const isVerified = (m: DatabaseManifest) => m.verification.state === 'verified';

/**
 * The verified backup an input names: `latest` (the newest verified of the first
 * kind), a run id, or a key, among the given kinds. An unknown backup, or one
 * that is not verified, is refused with the newest usable ones named.
 */
export async function findBackup(
  catalog: Catalog,
  kinds: readonly [BackupKind, ...BackupKind[]],
  target: string,
  database: string | null,
  backup: string,
): Promise<Manifest> {
  const [first] = kinds;
  const what = `${first === 'full' ? 'full' : first} backup of ${database ?? target}${database ? ` on ${target}` : ''}`;
  const keys = await catalog.manifestKeys(first, target, database);
  if (backup === 'latest') {
    const newest = await catalog.newestVerified(keys);
    if (!newest) {
      throw new NotFoundError(
        `There is no verified ${what}; run one first, or name another ${database ? 'database' : 'target'}. Nothing was changed.`,
      );
    }
    return newest;
  }
  const named = (k: string) =>
    k.includes(`_${backup}.`) || k === backup || k === `${backup}${MANIFEST_SUFFIX}`;
  let key = keys.find(named);
  for (const kind of kinds.slice(1)) key ??= (await catalog.manifestKeys(kind, target, database)).find(named);
  if (!key) {
    const recent = keys
      .slice(-5)
      .map((k) => k.replace(MANIFEST_SUFFIX, ''))
      .reverse();
    throw new NotFoundError(
      `No ${kinds.join(' or ')} backup "${backup}" of ${database ?? target}. The newest are: ${recent.join(', ') || '(none)'}. Use one of them, or "latest". Nothing was changed.`,
    );
  }
  const manifest = await catalog.readManifest(key);
  if (manifest.verification.state !== 'verified') {
    throw new InvalidInputError(
      `The backup ${manifest.archive.key} is ${manifest.verification.state}${manifest.verification.detail ? ` (${manifest.verification.detail})` : ''}; restore only from a verified backup. Nothing was changed.`,
    );
  }
  return manifest;
}

const dayBefore = (iso: string) => utcDay(Date.parse(iso) - DAY_MS);

/**
 * Follows archives whose windows chain without a gap (each starts where the one
 * before ended, or earlier), from `from`, as long as `accept` takes the next one;
 * `refused` is the next one it did not take. An archive that starts after the
 * chain's end but before `limit` means the data in between is in no archive: a
 * gap, refused.
 */
function followChain(
  manifests: readonly DatabaseManifest[],
  from: string,
  limit: number,
  accept: (m: DatabaseManifest) => boolean,
): { chain: DatabaseManifest[]; end: string; refused: DatabaseManifest | undefined } {
  const chain: DatabaseManifest[] = [];
  let end = from;
  let next: DatabaseManifest | undefined;
  const since = (m: DatabaseManifest) =>
    m.window.since === null ? Number.NEGATIVE_INFINITY : micros(m.window.since);
  for (;;) {
    const at = micros(end);
    next = manifests.find((m) => since(m) <= at && micros(m.window.until) > at);
    if (!next || !accept(next)) break;
    chain.push(next);
    end = next.window.until;
  }
  const gap = manifests.find((m) => since(m) > micros(end) && since(m) < limit);
  if (gap) {
    throw new InvalidInputError(
      `The ${gap.kind} archives have a gap: nothing holds the data from ${end} to ${gap.window.since} (the next archive is ${gap.archive.key}). Recover to ${end} or earlier, or to a time after a later full backup. Nothing was changed.`,
    );
  }
  return { chain, end, refused: next };
}

interface Resolved {
  archives: DatabaseManifest[];
  recoveredTo: RestorePlan['recoveredTo'];
  notApplied: RestorePlan['notApplied'];
}

/**
 * The archives that rebuild the database as it was at `targetTime`: the newest
 * verified full backup taken at or before it, the incrementals chained from it
 * whose windows end by then, and the log archives from the full's time to the
 * target (their rows after it are removed once applied). An incremental whose
 * window runs past the target is not applied: its rows carry only their latest
 * version, which may be later than the target.
 */
export async function resolvePointInTime(
  catalog: Catalog,
  target: string,
  database: string,
  targetTime: string,
  now: Date,
): Promise<Resolved> {
  const at = micros(targetTime);
  if (at > now.getTime() * 1000) {
    throw new InvalidInputError(
      `The target time ${targetTime} is in the future (now is ${now.toISOString()}); give a time in the past. Nothing was changed.`,
    );
  }
  const fulls = (await catalog.list('full', target, database)).filter(isVerified);
  const base = fulls.filter((m) => micros(m.window.until) <= at).at(-1);
  if (!base) {
    throw new InvalidInputError(
      fulls.length === 0
        ? `There is no verified full backup of ${database} on ${target} to recover from. Nothing was changed.`
        : `The target time ${targetTime} is before the oldest verified full backup of ${database} (${fulls[0]?.window.until}); recover to that time or later. Nothing was changed.`,
    );
  }
  const fromDay = dayBefore(base.window.until);
  const [incrementals, logs] = await Promise.all(
    (['incremental', 'transaction-logs'] as const).map(async (kind) =>
      (await catalog.list(kind, target, database, fromDay)).filter(isVerified),
    ),
  );
  const business = followChain(
    incrementals ?? [],
    base.window.until,
    at,
    (m) => micros(m.window.until) <= at,
  );
  const spanning = business.refused;
  const logChain = followChain(
    logs ?? [],
    base.window.until,
    at,
    (m) => m.window.since === null || micros(m.window.since) < at,
  );
  return {
    archives: [base, ...business.chain, ...logChain.chain],
    recoveredTo: {
      tables: business.end,
      // The last log archive may run past the target; its later rows are removed.
      logTables: logChain.chain.length === 0 ? null : micros(logChain.end) < at ? logChain.end : targetTime,
    },
    notApplied: spanning
      ? [
          {
            key: spanning.archive.key,
            reason: `its window [${spanning.window.since}, ${spanning.window.until}) runs past the target time; its rows hold their latest version only`,
          },
        ]
      : [],
  };
}

/**
 * The row counts a restore must end with: exact for one backup; for a chain, at
 * least the base's rows (incrementals never delete) and at most those plus every
 * row the later archives carry.
 */
function expectedRows(archives: readonly DatabaseManifest[]): RestorePlan['expectedRows'] {
  const [base, ...rest] = archives;
  const ranges: RestorePlan['expectedRows'] = {};
  for (const [table, rows] of Object.entries(base?.tables ?? {})) ranges[table] = { min: rows, max: rows };
  for (const m of rest) {
    for (const [table, rows] of Object.entries(m.tables)) {
      const range = ranges[table] ?? { min: 0, max: 0 };
      ranges[table] = { min: range.min, max: range.max + rows };
    }
  }
  return ranges;
}

function step(m: DatabaseManifest): RestoreStep {
  return {
    kind: m.kind,
    key: m.archive.key,
    manifestKey: manifestKey(m.archive.key),
    sha256: m.archive.sha256,
    localPath: m.archive.localPath,
    codec: m.archive.compression,
    window: m.window,
  };
}

/** What PlanRestore receives: the execution input, and which workflow it was given to. */
const restoreRequestSchema = z.extend(planRequestSchema, {
  /** `$$.StateMachine.Name`: `<service>-<stage>-database-restore` or `…-point-in-time-recovery`. */
  stateMachine: z.string().check(z.minLength(1)),
});

export function restoreWorkflowOf(stateMachine: string): RestoreWorkflow {
  const workflow = RESTORE_WORKFLOWS.find((w) => stateMachine.endsWith(`-${w}`));
  if (!workflow) throw new InvalidInputError(`${stateMachine} is not a restore workflow.`);
  return workflow;
}

export async function planRestore(
  config: Config,
  catalog: Catalog,
  request: unknown,
  now = new Date(),
): Promise<RestorePlan> {
  const { input, executionId, startedAt, stateMachine } = parseInput(
    restoreRequestSchema,
    request,
    `The ${RESTORE_STATE.plan} request`,
  );
  const workflow = restoreWorkflowOf(stateMachine);
  const wanted =
    workflow === 'database-restore'
      ? parseInput(restoreInputSchema, input, 'The execution input')
      : parseInput(pointInTimeInputSchema, input, 'The execution input');
  const overProduction = wanted.targetDatabase === wanted.database;
  if (overProduction && wanted.confirm !== wanted.database) {
    throw new InvalidInputError(
      `Restoring into ${wanted.database} replaces the database the backups were taken of. If that is what you want, add "confirm": "${wanted.database}" to the input; otherwise give a new "targetDatabase". Nothing was changed.`,
    );
  }
  const [target] = selectTargets(config, wanted.target ?? config.BACKUP_TARGETS[0]?.name);
  if (!target) throw new NotFoundError('No target is configured.');

  let resolved: Resolved;
  let targetTime: string | null = null;
  if ('targetTime' in wanted) {
    targetTime = wanted.targetTime;
    resolved = await resolvePointInTime(catalog, target.name, wanted.database, wanted.targetTime, now);
  } else {
    // A safety dump can be named too: it is what brings back a database a restore replaced.
    const manifest = await findBackup(
      catalog,
      ['full', 'safety'],
      target.name,
      wanted.database,
      wanted.backup,
    );
    if (!isDatabaseManifest(manifest))
      throw new NotFoundError(`${manifest.archive.key} is not a database backup.`);
    // A safety dump holds the log tables' rows too; a full dump leaves them out.
    resolved = {
      archives: [manifest],
      recoveredTo: {
        tables: manifest.window.until,
        logTables: manifest.kind === 'safety' ? manifest.window.until : null,
      },
      notApplied: [],
    };
  }
  const id = makeRunId(new Date(startedAt).toISOString(), executionId);
  return {
    workflow,
    target: target.name,
    database: wanted.database,
    targetDatabase: wanted.targetDatabase,
    overProduction,
    dryRun: wanted.dryRun,
    runId: id,
    executionId,
    startedAt,
    targetTime,
    archives: resolved.archives.map(step),
    recoveredTo: resolved.recoveredTo,
    notApplied: resolved.notApplied,
    logTables: targetTime === null ? [] : config.EXCLUDED_TABLES,
    expectedRows: expectedRows(resolved.archives),
    stagingDatabase: stagingDatabase(id),
    replacedDatabase: replacedDatabase(id),
    // The dump of what is about to be replaced: a backup run like any other, of kind safety.
    safetyDump: overProduction
      ? databaseRun(config, {
          kind: 'safety',
          since: null,
          target,
          database: wanted.database,
          executionId,
          startedAt,
          idSource: `${executionId}/safety`,
        })
      : null,
  };
}

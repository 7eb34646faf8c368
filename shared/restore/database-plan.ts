import { RESTORE_STATE } from '../../statemachines/database-restore.ts';
import { databaseRun } from '../backup/database-plan.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { runId as makeRunId, manifestKey, replacedDatabase, stagingDatabase } from '../catalog/keys.ts';
import { type DatabaseManifest, isDatabaseManifest } from '../catalog/manifest.ts';
import type { Config } from '../core/config.ts';
import { selectTargets } from '../core/config.ts';
import { InvalidInputError, NotFoundError } from '../core/errors.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import {
  pointInTimeInputSchema,
  RESTORE_WORKFLOWS,
  type RestorePlan,
  type RestoreStep,
  type RestoreWorkflow,
  restoreInputSchema,
} from './database-schemas.ts';
import { findBackup } from './find-backup.ts';
import { type Resolved, resolvePointInTime } from './point-in-time.ts';

/**
 * PlanRestore: which archives rebuild the database asked for (one backup, or the
 * chain to a point in time), where the restore is built and checked, and the
 * safety dump taken first when it goes over the database the backups were taken of.
 */

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
    // A monthly or safety dump can be named too: the long-term copy, and what
    // brings back a database a restore replaced.
    const manifest = await findBackup(
      catalog,
      ['full', 'monthly', 'safety'],
      target.name,
      wanted.database,
      wanted.backup,
    );
    if (!isDatabaseManifest(manifest))
      throw new NotFoundError(`${manifest.archive.key} is not a database backup.`);
    // A monthly or safety dump holds the log tables' rows too; a full dump leaves them out.
    resolved = {
      archives: [manifest],
      recoveredTo: {
        tables: manifest.window.until,
        logTables: manifest.excludedTables.length === 0 ? manifest.window.until : null,
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
          target,
          database: wanted.database,
          executionId,
          startedAt,
          idSource: `${executionId}/safety`,
        })
      : null,
  };
}

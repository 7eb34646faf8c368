import { RESTORE_STATE } from '../../statemachines/database-restore.ts';
import { databaseRun } from '../backup/database-plan.ts';
import { recordedVersion } from '../catalog/archive-record.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { runId as makeRunId, manifestKey, replacedDatabase, stagingDatabase } from '../catalog/keys.ts';
import { type DatabaseManifest, isDatabaseManifest } from '../catalog/manifest.ts';
import { type Config, selectTargets, type Target } from '../core/config.ts';
import { NotFoundError } from '../core/errors.ts';
import { checkConfirm, parseInput, planRequestSchema } from '../core/input.ts';
import { type RestorePlan, type RestoreStep, restoreInputSchema, type SwapPlan } from './database-schemas.ts';
import { findBackup } from './find-backup.ts';
import { plannedRoles } from './missing-roles.ts';
import { logTablesOf, rowSourcesOf } from './row-sources.ts';
import { catalogOf, type RestoreCatalogs } from './source.ts';

/**
 * PlanRestore: which dump rebuilds the database asked for, where the restore is
 * built and checked, and the safety dump taken first when it goes over the
 * database the backups were taken of. A point in time is the
 * point-in-time-recovery workflow's (shared/restore/point-in-time.ts).
 */

function step(m: DatabaseManifest, versionId: string | null): RestoreStep {
  return {
    kind: m.kind,
    key: m.archive.key,
    manifestKey: manifestKey(m.archive.key),
    sha256: m.archive.sha256,
    localPath: m.archive.localPath,
    codec: m.archive.compression,
    versionId,
    window: m.window,
    restoreTest: m.verification.restoreTest?.state ?? 'never ran',
  };
}

export async function planRestore(
  config: Config,
  catalogs: RestoreCatalogs,
  request: unknown,
): Promise<RestorePlan> {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${RESTORE_STATE.plan} request`,
  );
  const wanted = parseInput(restoreInputSchema, input, 'The execution input');
  const target = targetOf(config, wanted.target);
  const swap = stagedSwapPlan(config, target, { ...wanted, executionId, startedAt });
  const catalog = catalogOf(catalogs, wanted.source);

  // A monthly or safety dump can be named too: the long-term copy, and what
  // brings back a database a restore replaced.
  const manifest = await findBackup(
    catalog,
    ['full', 'monthly', 'safety'],
    target.name,
    wanted.database,
    wanted.backup,
    { acceptFailedRestoreTest: wanted.acceptFailedRestoreTest },
  );
  if (!isDatabaseManifest(manifest))
    throw new NotFoundError(`${manifest.archive.key} is not a database backup.`);
  // The manifest must match the record of its archive's creation; the version its backup wrote is fetched, never a later one.
  const versionId = await recordedVersion(catalog, manifest);
  // Over the database, the log tables the dump left out keep its rows; into a
  // new one they stay empty, and the plan says where their rows are.
  const logCopy = swap.overProduction ? '' : await logTablesCopy(catalog, target.name, wanted.database);
  return {
    ...swap,
    database: wanted.database,
    dryRun: wanted.dryRun,
    executionId,
    startedAt,
    archives: [step(manifest, versionId)],
    carry: swap.overProduction ? logTablesOf(manifest) : [],
    rowSources: rowSourcesOf(manifest, {
      overProduction: swap.overProduction,
      logCopy,
      replacedDatabase: swap.replacedDatabase,
    }),
    missingRoles: wanted.missingRoles,
    roles: plannedRoles(manifest.properties, wanted.missingRoles),
    source: wanted.source,
  };
}

/** Where the log tables' rows are kept besides the database: the newest monthly dump, and the WAL. */
async function logTablesCopy(catalog: Catalog, target: string, database: string): Promise<string> {
  const { usable } = await catalog.newestUsable(await catalog.manifestKeys('monthly', target, database));
  const recovery =
    'a point-in-time recovery (the point-in-time-recovery workflow) within the point-in-time window';
  return usable
    ? `the monthly dump "${usable.runId}" (data of ${usable.window.until}; restore it into another database), and ${recovery}`
    : recovery;
}

/** The configured target an input names, or the first. */
export function targetOf(config: Config, name: string | undefined): Target {
  const [target] = selectTargets(config, name ?? config.BACKUP_TARGETS[0]?.name);
  if (!target) throw new NotFoundError('No target is configured.');
  return target;
}

/**
 * The staged swap's part of a plan (statemachines/staged-swap.ts), for a restore
 * or a recovery of `database` into `targetDatabase`: the run, the staging and
 * replaced databases' names, and the safety dump taken first when it goes over
 * `database`, which needs its name typed again in `confirm` (InvalidInputError
 * otherwise, before anything changed).
 */
export function stagedSwapPlan(
  config: Config,
  target: Target,
  wanted: {
    database: string;
    targetDatabase: string;
    confirm?: string | undefined;
    executionId: string;
    startedAt: string;
  },
): SwapPlan & { safetyDump: RestorePlan['safetyDump'] } {
  const { database, executionId, startedAt } = wanted;
  const overProduction = wanted.targetDatabase === database;
  if (overProduction)
    checkConfirm(wanted.confirm, database, {
      replaces: `Restoring into ${database} replaces the database the backups were taken of.`,
      named: "the target database's name",
      otherwise: 'To restore beside it, give a new "targetDatabase" instead.',
    });
  const id = makeRunId(new Date(startedAt).toISOString(), executionId);
  return {
    target: target.name,
    runId: id,
    overProduction,
    targetDatabase: wanted.targetDatabase,
    stagingDatabase: stagingDatabase(id),
    replacedDatabase: replacedDatabase(id),
    // The dump of what is about to be replaced: a backup run like any other, of kind safety.
    safetyDump: overProduction
      ? databaseRun(config, {
          kind: 'safety',
          target,
          database,
          executionId,
          startedAt,
          idSource: `${executionId}/safety`,
        })
      : null,
  };
}

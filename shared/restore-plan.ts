import { z } from 'zod';
import type { Catalog } from './catalog.ts';
import type { Config } from './config.ts';
import { InvalidInputError, NotFoundError } from './errors.ts';
import { objectKey, sqlIdentifier, targetName } from './identifiers.ts';
import { MANIFEST_SUFFIX, runId as makeRunId } from './keys.ts';
import { type DatabaseManifest, isDatabaseManifest } from './manifest.ts';
import { parseInput, planRequestSchema, selectTargets } from './plan.ts';

/**
 * What an operator types into the console to restore a database. Small, and
 * hard to get dangerously wrong: restoring over the database the backups were
 * taken of needs its name typed again in `confirm`.
 */
export const restoreInputSchema = z
  .object({
    target: targetName.optional(),
    /** The database whose backups to restore from. */
    database: sqlIdentifier,
    /** `latest`, a run id (`20261126T020000Z_1a2b3c4d`) or an archive or manifest key from the catalog. */
    backup: z
      .union([z.literal('latest'), z.string().regex(/^\d{8}T\d{6}Z_[0-9a-f]{8}$/), objectKey])
      .default('latest'),
    /** Where to restore: a new database, or `database` itself with `confirm`. */
    targetDatabase: sqlIdentifier,
    confirm: z.string().optional(),
  })
  .strict();

export type RestoreInput = z.infer<typeof restoreInputSchema>;

/**
 * The verified full backup an input names. An unknown backup, or one that is not
 * verified, is refused with the newest usable ones named.
 */
export async function findBackup(
  catalog: Catalog,
  target: string,
  database: string,
  backup: string,
): Promise<DatabaseManifest> {
  const keys = await catalog.manifestKeys('full', target, database);
  if (backup === 'latest') {
    const newest = await catalog.newestVerified(keys);
    if (!newest || !isDatabaseManifest(newest)) {
      throw new NotFoundError(
        `There is no verified full backup of ${database} on ${target}; run a full backup first, or name another database. Nothing was changed.`,
      );
    }
    return newest;
  }
  const key = keys.find(
    (k) => k.includes(`_${backup}.`) || k === backup || k === `${backup}${MANIFEST_SUFFIX}`,
  );
  if (!key) {
    const recent = keys
      .slice(-5)
      .map((k) => k.replace(MANIFEST_SUFFIX, ''))
      .reverse();
    throw new NotFoundError(
      `No full backup "${backup}" of ${database} on ${target}. The newest are: ${recent.join(', ') || '(none)'}. Use one of them, or "latest". Nothing was changed.`,
    );
  }
  const manifest = await catalog.readDatabaseManifest(key);
  if (manifest.verification.state !== 'verified') {
    throw new InvalidInputError(
      `The backup ${manifest.archive.key} is ${manifest.verification.state}${manifest.verification.detail ? ` (${manifest.verification.detail})` : ''}; restore only from a verified backup. Nothing was changed.`,
    );
  }
  return manifest;
}

export const restorePlanSchema = z.object({
  target: targetName,
  database: sqlIdentifier,
  targetDatabase: sqlIdentifier,
  /** True when the restore replaces the database the backups were taken of. */
  overProduction: z.boolean(),
  runId: z.string().regex(/^\d{8}T\d{6}Z_[0-9a-f]{8}$/),
  executionId: z.string().min(1),
  startedAt: z.iso.datetime({ offset: true }),
  manifestKey: objectKey,
  /** The restore is built here first, checked, and only then renamed into place. */
  stagingDatabase: sqlIdentifier,
});

export type RestorePlan = z.infer<typeof restorePlanSchema>;

export async function planRestore(config: Config, catalog: Catalog, request: unknown): Promise<RestorePlan> {
  const { input, executionId, startedAt } = parseInput(planRequestSchema, request, 'The PlanRestore request');
  const wanted = parseInput(restoreInputSchema, input, 'The execution input');
  const overProduction = wanted.targetDatabase === wanted.database;
  if (overProduction && wanted.confirm !== wanted.database) {
    throw new InvalidInputError(
      `Restoring into ${wanted.database} replaces the database the backups were taken of. If that is what you want, add "confirm": "${wanted.database}" to the input; otherwise give a new "targetDatabase". Nothing was changed.`,
    );
  }
  const [target] = selectTargets(config, wanted.target ?? config.BACKUP_TARGETS[0]?.name);
  if (!target) throw new NotFoundError('No target is configured.');
  const manifest = await findBackup(catalog, target.name, wanted.database, wanted.backup);
  const id = makeRunId(new Date(startedAt).toISOString(), executionId);
  return {
    target: target.name,
    database: wanted.database,
    targetDatabase: wanted.targetDatabase,
    overProduction,
    runId: id,
    executionId,
    startedAt,
    manifestKey: `${manifest.archive.key}${MANIFEST_SUFFIX}`,
    stagingDatabase: `kb_restoring_${id.toLowerCase()}`,
  };
}

import { planSchema } from '../backup/database-plan.ts';
import { DATABASE_KINDS } from '../catalog/keys.ts';
import { CODEC_NAMES } from '../core/codecs.ts';
import {
  hostPath,
  objectKey,
  objectVersionId,
  runIdentifier,
  sha256Hex,
  sqlIdentifier,
  tableName,
  targetName,
} from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { MISSING_ROLES, missingRolesInput } from './missing-roles.ts';
import { rowSourcesSchema } from './row-sources.ts';
import { RESTORE_SOURCES, restoreSourceInput } from './source.ts';

/** A point-in-time recovery's scope, as an operator gives it (shared/restore/point-in-time.ts). */
export const POINT_IN_TIME_SCOPES = ['database', 'cluster'] as const;
/**
 * A plan's scope: an operator's, or `scratch`: the monthly recovery drill's, the
 * cluster recovered and checked in a side cluster, then removed; nothing is copied.
 */
export const POINT_IN_TIME_PLAN_SCOPES = [...POINT_IN_TIME_SCOPES, 'scratch'] as const;

/**
 * Restores are started by a person, from the console, under pressure. The input
 * is small; restoring over the database the backups were taken of needs its name
 * typed again in `confirm`; `dryRun` shows the plan and changes nothing.
 */

export const restoreInputBase = {
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
  /** Confirms a named backup whose restore test failed (`latest` never picks one). */
  acceptFailedRestoreTest: z._default(z.boolean(), false),
  /** The roles the backup needs that this cluster lacks: `create` them, or `omit` them (missing-roles.ts). */
  missingRoles: missingRolesInput,
  /** Restore from the backup bucket (`primary`) or from its copy in the vault (source.ts). */
  source: restoreSourceInput,
});

/** The dump a restore applies; the host checks its sha256 before using it. */
const restoreStepSchema = z.object({
  kind: z.enum(DATABASE_KINDS),
  key: objectKey,
  manifestKey: objectKey,
  sha256: sha256Hex,
  localPath: hostPath,
  codec: z.enum(CODEC_NAMES),
  /** The version its backup wrote, as the record of its creation names it: the one fetched from S3; null without versioning. */
  versionId: z.nullable(objectVersionId),
  window: z.object({
    since: z.nullable(z.iso.datetime({ offset: true })),
    until: z.iso.datetime({ offset: true }),
  }),
  /** Its restore test's result; `never ran` for one whose run ended before it (a safety dump has none). */
  restoreTest: z.enum(['passed', 'failed', 'never ran']),
});

export type RestoreStep = z.infer<typeof restoreStepSchema>;

/**
 * What the staged swap (statemachines/staged-swap.ts) reads of a plan: the
 * staging database to rename, its final name, and where a replaced database goes.
 */
export const swapPlanSchema = z.object({
  target: targetName,
  runId: runIdentifier,
  /** True when the swap replaces the database the backups were taken of. */
  overProduction: z.boolean(),
  targetDatabase: sqlIdentifier,
  /** The restore is built here, checked, and only then renamed into place. */
  stagingDatabase: sqlIdentifier,
  /** What the replaced database is renamed to when the restore goes over it. */
  replacedDatabase: sqlIdentifier,
});

export type SwapPlan = z.infer<typeof swapPlanSchema>;

export const restorePlanSchema = z.extend(swapPlanSchema, {
  database: sqlIdentifier,
  dryRun: z.boolean(),
  executionId: z.string().check(z.minLength(1)),
  startedAt: z.iso.datetime({ offset: true }),
  /**
   * The dump restored: a full backup or a safety dump. Its manifest holds the row
   * count of every table, which the check reads there: per-table data never
   * travels in the workflow's state (256 KiB at most; 10,000 tables' counts are more).
   */
  archives: z.array(restoreStepSchema).check(z.length(1)),
  /** The dump of the database about to be replaced, taken with the application stopped. */
  safetyDump: z.nullable(planSchema),
  /** The log tables whose rows are carried over from the database replaced (host/carry-log-rows.sh). */
  carry: z.array(tableName),
  /** Where each table's rows come from, for the dry run and the summary. */
  rowSources: rowSourcesSchema,
  /** What the host does with the roles the backup needs that the cluster lacks (missing-roles.ts). */
  missingRoles: z.enum(MISSING_ROLES),
  /** The same in words, with the roles the backup names, for the dry run. */
  roles: z.string(),
  /** Where the catalog was read and the host fetches the dump: the backup bucket or the vault. */
  source: z.enum(RESTORE_SOURCES),
});

export type RestorePlan = z.infer<typeof restorePlanSchema>;

import { planSchema } from '../backup/database-plan.ts';
import { DATABASE_KINDS } from '../catalog/keys.ts';
import { CODEC_NAMES } from '../core/codecs.ts';
import {
  hostPath,
  objectKey,
  runIdentifier,
  sha256Hex,
  sqlIdentifier,
  targetName,
} from '../core/identifiers.ts';
import * as z from '../core/schema.ts';

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
  kind: z.enum(DATABASE_KINDS),
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

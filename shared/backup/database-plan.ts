import { BACKUP_STATE } from '../../statemachines/database-backup.ts';
import type { Catalog } from '../catalog/catalog.ts';
import {
  archiveFileName,
  archiveKey,
  DUMP_KINDS,
  type DumpKind,
  isLegacyKind,
  manifestKey,
  runId,
  SCHEDULED_DATABASE_KINDS,
  scratchDatabase,
} from '../catalog/keys.ts';
import { legacyArchiveNote } from '../catalog/legacy.ts';
import type { DatabaseManifest } from '../catalog/manifest.ts';
import { DEFAULT_CODEC } from '../core/codecs.ts';
import { type Config, selectTargets, type Target } from '../core/config.ts';
import { InvalidInputError } from '../core/errors.ts';
import { sqlIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import { runSchema } from '../core/run.ts';
import * as z from '../core/schema.ts';
import { type PhysicalPlan, type PhysicalPlanOff, physicalRuns } from './physical-plan.ts';
import { type WalPlan, type WalPlanOff, walRuns } from './wal-plan.ts';

/** What an operator or a schedule may pass to a backup execution; every field is optional. */
export const backupInputSchema = z.strictObject({
  /** A safety dump is taken by a restore, never asked for. Without one: a full backup. */
  kind: z._default(z.enum(SCHEDULED_DATABASE_KINDS), 'full'),
  target: z.optional(targetName),
  database: z.optional(sqlIdentifier),
});

/** One logical dump of one database, decided once by PlanBackup and carried through the execution. */
export const planSchema = z.extend(runSchema, {
  kind: z.enum(DUMP_KINDS),
  database: sqlIdentifier,
  scratchDatabase: sqlIdentifier,
});

export type Plan = z.infer<typeof planSchema>;

/** Where the host keeps its copies of one kind of database backup. */
export function databaseLocalDir(target: Target, kind: DumpKind, database: string): string {
  return `${target.backupDir}/database/${kind}/${database}`;
}

/** One database backup run: its id, its S3 keys, its local copy and its scratch database. */
export function databaseRun(
  config: Config,
  run: {
    kind: DumpKind;
    target: Target;
    database: string;
    executionId: string;
    startedAt: string;
    /** What the run id's hash is taken of: unique per run of the execution. */
    idSource: string;
  },
): Plan {
  const { kind, target, database } = run;
  const iso = new Date(run.startedAt).toISOString();
  const id = runId(iso, run.idSource);
  const file = archiveFileName(database, kind, id, DEFAULT_CODEC);
  const key = archiveKey(kind, target.name, database, iso, file);
  return {
    kind,
    target: target.name,
    database,
    runId: id,
    executionId: run.executionId,
    startedAt: run.startedAt,
    bucket: config.BACKUP_BUCKET,
    archiveKey: key,
    manifestKey: manifestKey(key),
    fileName: file,
    localDir: databaseLocalDir(target, kind, database),
    scratchDatabase: scratchDatabase(id),
    codec: DEFAULT_CODEC,
  };
}

/** What PlanBackup returns, one per Map iteration: a logical dump's run (no engine), a WAL run, or a pgBackRest run (or why either is off). */
export type BackupPlan = Plan | WalPlan | WalPlanOff | PhysicalPlan | PhysicalPlanOff;

/** A logical dump's run: the plans that carry no engine. */
export function isDumpPlan(plan: BackupPlan): plan is Plan {
  return !('engine' in plan);
}

/**
 * Plans the runs of one execution, by kind:
 * - `full`: a logical dump per target and database (the log tables' rows left
 *   out), then a pgBackRest full backup per target;
 * - `monthly`: a logical dump per target and database of every table, the log
 *   tables' rows included (the long-term copy; see RETENTION);
 * - `incremental`: a pgBackRest incremental backup per target, nothing else;
 * - `transaction-logs`: a WAL run per target (segment switch and continuity proof).
 * The input's target, or every target; the input's database, or each target's
 * databases. A target without pgBackRest settings gets, for the physical and WAL
 * runs, a plan that says they are off and what to add: never a run that reports
 * success having protected nothing. A physical or WAL run holds the whole
 * cluster, so it is planned only when the input names no database; an
 * incremental or transaction-logs execution that names one is refused.
 */
export async function planBackup(config: Config, catalog: Catalog, request: unknown): Promise<BackupPlan[]> {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${BACKUP_STATE.plan} request`,
  );
  const wanted = parseInput(backupInputSchema, input ?? {}, 'The execution input');
  const { kind } = wanted;
  if (wanted.database !== undefined && (kind === 'incremental' || kind === 'transaction-logs')) {
    throw new InvalidInputError(
      `${kind === 'incremental' ? 'An incremental' : 'A transaction-logs'} backup is pgBackRest's and holds the whole cluster, not one database: leave "database" out (or take {"kind": "full", "database": "${wanted.database}"} for a logical dump of that database alone). Nothing was started.`,
    );
  }
  const targets = selectTargets(config, wanted.target);
  if (kind === 'transaction-logs') return walRuns(targets, executionId, startedAt);
  if (kind === 'incremental') return physicalRuns(config, catalog, targets, { kind, executionId, startedAt });
  const dumps = targets.flatMap((target) =>
    (wanted.database ? [wanted.database] : (target.databases ?? [target.database])).map((database) =>
      // Each target and database gets its own id, so runs of one execution never share a key.
      databaseRun(config, {
        kind,
        target,
        database,
        executionId,
        startedAt,
        idSource: `${executionId}/${target.name}/${database}`,
      }),
    ),
  );
  const physical =
    kind === 'full' && wanted.database === undefined
      ? await physicalRuns(config, catalog, targets, { kind, executionId, startedAt })
      : [];
  return [...dumps, ...physical];
}

/**
 * The restore test's plan for a backup already in the catalog (a drill's, into
 * its own scratch database). The host looks for its copy where the target keeps
 * that kind, as the backup's own run did; a copy that is not there, or not
 * intact, is fetched from S3 and checked against the manifest's sha256. A
 * legacy row-window archive is refused: it is never restored.
 */
export function restoreTestPlanOf(
  manifest: DatabaseManifest,
  target: Target,
  bucket: string,
  scratch: string,
): Plan {
  const { kind } = manifest;
  if (isLegacyKind(kind))
    throw new InvalidInputError(`${legacyArchiveNote(kind, manifest.archive.key)} Nothing was changed.`);
  return {
    kind,
    target: manifest.target,
    database: manifest.database,
    runId: manifest.runId,
    executionId: manifest.executionId,
    startedAt: manifest.startedAt,
    bucket,
    archiveKey: manifest.archive.key,
    manifestKey: manifestKey(manifest.archive.key),
    fileName: manifest.archive.fileName,
    localDir: databaseLocalDir(target, kind, manifest.database),
    codec: manifest.archive.compression,
    scratchDatabase: scratch,
  };
}

import { BACKUP_STATE } from '../../statemachines/database-backup.ts';
import type { Catalog } from '../catalog/catalog.ts';
import {
  archiveFileName,
  archiveKey,
  DATABASE_KINDS,
  type DatabaseKind,
  manifestKey,
  runId,
  SCHEDULED_DATABASE_KINDS,
  scratchDatabase,
} from '../catalog/keys.ts';
import { type DatabaseManifest, isDatabaseManifest } from '../catalog/manifest.ts';
import { DEFAULT_CODEC } from '../core/codecs.ts';
import { type Config, selectTargets, type Target } from '../core/config.ts';
import { InvalidInputError } from '../core/errors.ts';
import { sqlIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import { runSchema } from '../core/run.ts';
import * as z from '../core/schema.ts';
import { type PhysicalPlan, type PhysicalPlanOff, physicalRuns } from './physical-plan.ts';
import { type WalPlan, walRun, walTargets } from './wal-plan.ts';

/** What an operator or a schedule may pass to a backup execution; every field is optional. */
export const backupInputSchema = z.strictObject({
  /** A safety dump is taken by a restore, never asked for. */
  kind: z.optional(z.enum(SCHEDULED_DATABASE_KINDS)),
  target: z.optional(targetName),
  database: z.optional(sqlIdentifier),
  /** Start of an incremental or log window given by hand; it may not overlap a backup in the catalog. */
  since: z.optional(z.iso.datetime({ offset: true })),
});

/** One run of the database workflow, decided once by PlanBackup and carried through the execution. */
export const planSchema = z.extend(runSchema, {
  kind: z.enum(DATABASE_KINDS),
  /** Start of the window (inclusive) for incremental and log backups; null for a full one or a first log backup. */
  since: z.nullable(z.iso.datetime({ offset: true })),
  database: sqlIdentifier,
  scratchDatabase: sqlIdentifier,
});

export type Plan = z.infer<typeof planSchema>;

/** The kinds whose verified backups carry a kind's watermark forward. */
const CHAIN: Record<DatabaseKind, DatabaseKind[]> = {
  full: [],
  incremental: ['full', 'incremental'],
  'transaction-logs': ['transaction-logs'],
  safety: [],
};

/**
 * Where the next window starts: the `until` of the newest verified backup of the
 * chain (never `now() - interval`), so a failed, late or skipped run leaves no
 * gap. A start given by hand may not overlap that backup.
 */
export async function windowStart(
  catalog: Catalog,
  kind: DatabaseKind,
  target: string,
  database: string,
  given: string | undefined,
  now: Date,
): Promise<string | null> {
  if (kind === 'full' || kind === 'safety') {
    if (given !== undefined)
      throw new InvalidInputError(
        `A ${kind} backup takes no "since": it holds the whole database. Leave it out; nothing was started.`,
      );
    return null;
  }
  const newest = await Promise.all(
    CHAIN[kind].map(async (k) => (await catalog.newestOf(k, target, database, now)).newestVerified),
  );
  const latest = newest
    .filter((m): m is DatabaseManifest => m !== undefined && isDatabaseManifest(m))
    .reduce<DatabaseManifest | undefined>(
      (a, m) => (!a || m.window.until > a.window.until ? m : a),
      undefined,
    );
  if (given === undefined) return latest?.window.until ?? null;
  const since = new Date(given);
  if (since > now)
    throw new InvalidInputError(
      `"since" ${given} is in the future; give a time in the past or leave it out. Nothing was started.`,
    );
  if (latest && since < new Date(latest.window.until)) {
    throw new InvalidInputError(
      `"since" ${given} overlaps the ${latest.kind} backup ${latest.archive.key}, which holds the data up to ${latest.window.until}. Start at ${latest.window.until} or later, or leave "since" out to continue from there. Nothing was started.`,
    );
  }
  return since.toISOString();
}

/** Where the host keeps its copies of one kind of database backup. */
function databaseLocalDir(target: Target, kind: DatabaseKind, database: string): string {
  return `${target.backupDir}/database/${kind}/${database}`;
}

/** One database backup run: its id, its S3 keys, its local copy and its scratch database. */
export function databaseRun(
  config: Config,
  run: {
    kind: DatabaseKind;
    since: string | null;
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
    since: run.since,
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

/** What PlanBackup returns, one per Map iteration: a logical dump's run (no engine), a WAL run, or a pgBackRest run. */
export type BackupPlan = Plan | WalPlan | PhysicalPlan | PhysicalPlanOff;

/** A logical dump's run: the plans that carry no engine. */
export function isDumpPlan(plan: BackupPlan): plan is Plan {
  return !('engine' in plan);
}

/**
 * Plans one run per target and database: the input's target, or every target;
 * the input's database, or each target's databases. Runs are independent: each
 * has its own window, archive and manifest. A transaction-logs backup also gets
 * one WAL run per selected target that archives with pgBackRest, first, so that
 * the RPO's proof does not wait on the dumps. A full or incremental also plans
 * one pgBackRest run per target (physical-plan.ts), after the dumps; not when
 * the input names a database, since a physical backup holds the whole cluster.
 */
export async function planBackup(config: Config, catalog: Catalog, request: unknown): Promise<BackupPlan[]> {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${BACKUP_STATE.plan} request`,
  );
  const wanted = parseInput(backupInputSchema, input ?? {}, 'The execution input');
  const targets = selectTargets(config, wanted.target);
  const kind = wanted.kind ?? 'full';
  const iso = new Date(startedAt).toISOString();
  const runs = targets.flatMap((target) => {
    const databases = wanted.database ? [wanted.database] : (target.databases ?? [target.database]);
    return databases.map((database) => ({ target, database }));
  });
  const walRuns =
    kind === 'transaction-logs' ? walTargets(targets).map((t) => walRun(t, executionId, startedAt)) : [];
  // The row-window incremental and log dumps are still made beside the physical
  // backups: the point-in-time-recovery workflow reads them until issue 11
  // replaces it with a recovery from pgBackRest's backups and WAL.
  const dumps = await Promise.all(
    runs.map(async ({ target, database }) => {
      const since = await windowStart(catalog, kind, target.name, database, wanted.since, new Date(iso));
      // Each target and database gets its own id, so runs of one execution never share a key.
      return databaseRun(config, {
        kind,
        since,
        target,
        database,
        executionId,
        startedAt,
        idSource: `${executionId}/${target.name}/${database}`,
      });
    }),
  );
  const physical =
    (kind === 'full' || kind === 'incremental') && wanted.database === undefined
      ? await physicalRuns(config, catalog, targets, { kind, executionId, startedAt })
      : [];
  return [...walRuns, ...dumps, ...physical];
}

/**
 * The restore test's plan for a backup already in the catalog (a drill's, into
 * its own scratch database). The host looks for its copy where the target keeps
 * that kind, as the backup's own run did; a copy that is not there, or not
 * intact, is fetched from S3 and checked against the manifest's sha256.
 */
export function restoreTestPlanOf(
  manifest: DatabaseManifest,
  target: Target,
  bucket: string,
  scratch: string,
): Plan {
  return {
    kind: manifest.kind,
    since: manifest.window.since,
    target: manifest.target,
    database: manifest.database,
    runId: manifest.runId,
    executionId: manifest.executionId,
    startedAt: manifest.startedAt,
    bucket,
    archiveKey: manifest.archive.key,
    manifestKey: manifestKey(manifest.archive.key),
    fileName: manifest.archive.fileName,
    localDir: databaseLocalDir(target, manifest.kind, manifest.database),
    codec: manifest.archive.compression,
    scratchDatabase: scratch,
  };
}

import type { Catalog } from './catalog.ts';
import type { FilesPlan } from './files-plan.ts';
import type { DatabaseManifest, Manifest } from './manifest.ts';
import type { Plan } from './plan.ts';
import { checkRestoredDatabase, type RestoreCheck } from './restore-check.ts';
import { baseOfIncrementals, expired, RETENTION } from './retention.ts';

/**
 * Checks the scratch database restored from this run's archive and records the
 * result in the manifest, passed or failed.
 */
export async function restoreTestRun(
  catalog: Catalog,
  serverUrl: string,
  plan: Plan,
  now = () => new Date(),
): Promise<RestoreCheck> {
  const manifest = await catalog.readDatabaseManifest(plan.manifestKey);
  try {
    const result = await checkRestoredDatabase(serverUrl, plan.scratchDatabase, manifest);
    await record(
      catalog,
      manifest,
      'passed',
      `${result.tables} tables, ${result.rows} rows match the dump`,
      now,
    );
    return result;
  } catch (error) {
    await record(catalog, manifest, 'failed', (error as Error).message, now);
    throw error;
  }
}

async function record(
  catalog: Catalog,
  manifest: DatabaseManifest,
  state: 'passed' | 'failed',
  detail: string,
  now: () => Date,
) {
  await catalog.writeManifest({
    ...manifest,
    verification: {
      ...manifest.verification,
      restoreTest: { state, checkedAt: now().toISOString(), detail },
    },
  });
}

export interface PruneResult {
  removedFromS3: string[];
  kept: number;
  /** Local copies past the host's retention, for the prune-local host command. */
  localFiles: string[];
}

/**
 * Applies the retention table to one database's backups of the plan's kind. A
 * full backup that a kept incremental builds on is kept too, however old.
 */
export async function pruneRun(catalog: Catalog, plan: Plan | FilesPlan, now: Date): Promise<PruneResult> {
  const rule = RETENTION[plan.kind];
  const database = 'database' in plan ? plan.database : null;
  const manifests = await catalog.list(plan.kind, plan.target, database);
  let chainBase: Manifest[] = [];
  if (plan.kind === 'full' && database !== null) {
    const incrementals = await catalog.list('incremental', plan.target, database);
    const kept = incrementals.filter(
      (m) => !expired(incrementals, now, RETENTION.incremental.s3Days).includes(m),
    );
    chainBase = [baseOfIncrementals(manifests, kept)].filter((m): m is Manifest => m !== undefined);
  }
  const fromS3 = expired(manifests, now, rule.s3Days, chainBase);
  await catalog.remove(fromS3);
  return {
    removedFromS3: fromS3.map((m) => m.archive.key),
    kept: manifests.length - fromS3.length,
    localFiles: expired(manifests, now, rule.localDays).map((m) => m.archive.fileName),
  };
}

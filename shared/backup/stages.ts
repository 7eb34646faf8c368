import type { Catalog } from '../catalog/catalog.ts';
import { keyDay } from '../catalog/keys.ts';
import type { DatabaseManifest, Manifest } from '../catalog/manifest.ts';
import { baseOfIncrementals, expired, RETENTION } from '../catalog/retention.ts';
import { DAY_MS, utcDay } from '../core/time.ts';
import { checkRestoredDatabase, type RestoreCheck } from '../restore/check.ts';
import type { Plan } from './database-plan.ts';
import type { FilesPlan } from './files-plan.ts';

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
  /** For the prune-local host command: the host's copies older than this go, but for `localKeepFile`. */
  localKeepDays: number;
  localKeepFile: string;
}

/**
 * Applies the retention table to one target's backups of the plan's kind. It
 * reads only the manifests old enough to expire (their keys carry the day), the
 * newest verified one, which is always kept, and for full backups the kept
 * incrementals, whose base full is kept too.
 */
export async function pruneRun(catalog: Catalog, plan: Plan | FilesPlan, now: Date): Promise<PruneResult> {
  const rule = RETENTION[plan.kind];
  const database = 'database' in plan ? plan.database : null;
  const keys = await catalog.manifestKeys(plan.kind, plan.target, database);
  const newest = await catalog.newestVerified(keys);
  const oldEnough = (key: string, days: number) =>
    (keyDay(key) ?? '') <= utcDay(now.getTime() - days * DAY_MS);
  const candidates = await catalog.readAll(keys.filter((k) => oldEnough(k, rule.s3Days)));
  const keep: (Manifest | undefined)[] = [newest];
  if (plan.kind === 'full' && database !== null) {
    const incrementalKeys = await catalog.manifestKeys('incremental', plan.target, database);
    // A day's margin: a run started before midnight holds data up to after it.
    const recent = await catalog.readAll(
      incrementalKeys.filter((k) => !oldEnough(k, RETENTION.incremental.s3Days + 1)),
    );
    const kept = recent.filter((m) => !expired(recent, now, RETENTION.incremental.s3Days, []).includes(m));
    keep.push(baseOfIncrementals(candidates, kept));
  }
  const fromS3 = expired(candidates, now, rule.s3Days, keep);
  await catalog.remove(fromS3);
  return {
    removedFromS3: fromS3.map((m) => m.archive.key),
    kept: keys.length - fromS3.length,
    localKeepDays: rule.localDays,
    localKeepFile: newest?.archive.fileName ?? '',
  };
}

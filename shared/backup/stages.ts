import { RESTORE_TEST_COMMAND } from '../../statemachines/logical-restore-test.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { keyDay, LEGACY_DUMP_KINDS } from '../catalog/keys.ts';
import { orphanArchives } from '../catalog/leftovers.ts';
import type { DatabaseManifest } from '../catalog/manifest.ts';
import { expired, RETENTION } from '../catalog/retention.ts';
import { type CaughtError, causeMessage } from '../core/errors.ts';
import { redact } from '../core/redact.ts';
import { DAY_MS, utcDay } from '../core/time.ts';
import { counted } from '../core/words.ts';
import { checkRestoredDatabase, type RestoreCheck } from '../restore/check.ts';
import type { Plan } from './database-plan.ts';
import type { FilesPlan } from './files-plan.ts';

/**
 * Checks the scratch database restored from this run's archive and records the
 * result in the manifest, passed or failed. `startedAt` (ISO 8601) is when the
 * test's host command was sent (its CommandState's sentAt): the test's duration
 * is from it to the record's `checkedAt`, both this run's own facts.
 */
export async function restoreTestRun(
  catalog: Catalog,
  serverUrl: string,
  plan: Plan,
  startedAt: string | undefined,
  now = () => new Date(),
): Promise<RestoreCheck> {
  const manifest = await catalog.readDatabaseManifest(plan.manifestKey);
  try {
    const result = await checkRestoredDatabase(serverUrl, plan.scratchDatabase, manifest);
    await record(
      catalog,
      manifest,
      'passed',
      `${counted(result.tables, 'table')}, ${counted(result.rows, 'row')} match the dump${result.properties ? `; ${result.properties}` : ''}`,
      startedAt,
      now,
    );
    return result;
  } catch (error) {
    await record(catalog, manifest, 'failed', (error as Error).message, startedAt, now);
    throw error;
  }
}

/**
 * RecordRestoreTestFailure: the dump did not restore on the host (the restore
 * test's command failed, was cancelled or ran out of time), which fails the
 * restore test as surely as a wrong count; recorded in the manifest with the
 * command's error, redacted (a psql error may quote a row), so that nothing
 * picks the backup implicitly. A command that could not even be sent
 * (StartRestoreTest failed) tested nothing: nothing is recorded. Returns whether
 * a failure was recorded.
 */
export async function recordRestoreTestFailure(
  catalog: Catalog,
  plan: Plan,
  failed: Readonly<Record<string, CaughtError>>,
  now = () => new Date(),
): Promise<{ recorded: boolean }> {
  const error = failed[RESTORE_TEST_COMMAND.check];
  if (!error) return { recorded: false };
  const manifest = await catalog.readDatabaseManifest(plan.manifestKey);
  // The cause's first line, and the error lines of its output (PostgreSQL's, the
  // script's own): not the DETAIL, CONTEXT or QUERY lines, which may quote a row.
  const [headline = '', ...output] = causeMessage(error.Cause).split('\n');
  const errors = output
    .map((l) => l.trim())
    .filter((l) => /\b(ERROR|FATAL|PANIC):|^restore-archive:/.test(l));
  const detail = redact([`${error.Error}: ${headline}`, ...errors].join(' ')).slice(0, 1000);
  // The command's start is not in this state's input (a command that could not be sent has none): no duration.
  await record(
    catalog,
    manifest,
    'failed',
    `the dump did not restore on the host: ${detail}`,
    undefined,
    now,
  );
  return { recorded: true };
}

async function record(
  catalog: Catalog,
  manifest: DatabaseManifest,
  state: 'passed' | 'failed',
  detail: string,
  startedAt: string | undefined,
  now: () => Date,
) {
  await catalog.writeManifest({
    ...manifest,
    verification: {
      ...manifest.verification,
      restoreTest: { state, ...(startedAt ? { startedAt } : {}), checkedAt: now().toISOString(), detail },
    },
  });
}

export interface PruneResult {
  removedFromS3: string[];
  /** The archives without a manifest (keys.ts's layout, leftovers.ts) removed, older than the leftover age. */
  removedLeftovers: string[];
  kept: number;
  /** For the prune-local host command: the host's copies older than this go, but for `localKeepFile`. */
  localKeepDays: number;
  localKeepFile: string;
}

/**
 * Applies the retention table to one target's backups of the plan's kind. It
 * reads only the manifests old enough to expire (their keys carry the day) and
 * the newest verified one, which is always kept. A full run also prunes its
 * database's legacy row-window archives by their old retention, keeping none:
 * they are never restored, so none is worth keeping past it. The kind's
 * archives without a manifest (a full run's: its safety dumps' too) go once
 * older than `leftoverMinAgeSeconds` (leftovers.ts: no running execution owns one).
 */
export async function pruneRun(
  catalog: Catalog,
  plan: Plan | FilesPlan,
  now: Date,
  leftoverMinAgeSeconds: number,
): Promise<PruneResult> {
  const rule = RETENTION[plan.kind];
  const database = 'database' in plan ? plan.database : null;
  const keys = await catalog.manifestKeys(plan.kind, plan.target, database);
  // The newest usable backup is kept, and the newest verified one when newer
  // (it failed its restore test, but a restore that confirms may still use it).
  const newest = await catalog.newestUsable(keys);
  const fromS3 = expired(await oldManifests(catalog, keys, rule.s3Days, now), now, rule.s3Days, [
    newest.usable,
    newest.verified,
  ]);
  if (plan.kind === 'full' && database !== null) {
    for (const kind of LEGACY_DUMP_KINDS) {
      const legacy = await catalog.manifestKeys(kind, plan.target, database);
      const days = RETENTION[kind].s3Days;
      fromS3.push(...expired(await oldManifests(catalog, legacy, days, now), now, days, []));
    }
  }
  await catalog.remove(fromS3);
  const leftovers: string[] = [];
  for (const kind of plan.kind === 'full' ? (['full', 'safety'] as const) : [plan.kind]) {
    for (const orphan of await orphanArchives(catalog, kind, plan.target, database, now))
      if (orphan.ageSeconds >= leftoverMinAgeSeconds) leftovers.push(orphan.name);
  }
  await catalog.removeKeys(leftovers);
  return {
    removedFromS3: fromS3.map((m) => m.archive.key),
    removedLeftovers: leftovers,
    kept: keys.length - fromS3.filter((m) => m.kind === plan.kind).length,
    localKeepDays: rule.localDays,
    localKeepFile: newest.usable?.archive.fileName ?? '',
  };
}

/** The manifests among `keys` old enough to expire after `days`, by the day in their keys (a listing, then only those read). */
async function oldManifests(catalog: Catalog, keys: readonly string[], days: number, now: Date) {
  const cutoff = utcDay(now.getTime() - days * DAY_MS);
  return catalog.readAll(keys.filter((k) => (keyDay(k) ?? '') <= cutoff));
}

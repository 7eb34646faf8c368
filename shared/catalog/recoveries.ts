import { runIdentifier, targetName } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import type { Catalog } from './catalog.ts';
import { recoveriesOf, recoveryRecordKey } from './keys.ts';

/**
 * The measured rate of recoveries from a target's pgBackRest repository: each
 * point-in-time recovery (and the monthly drill's) records how long restoring its
 * backup set and replaying the WAL took, per GB of the cluster restored. A dry
 * run's expected duration is the newest rate times the size of the set it would
 * restore. One writer per recovery, under its own key: records are never updated.
 */

const GB = 1e9;

export const recoveryRecordSchema = z.object({
  version: z.literal(1),
  target: targetName,
  /** What measured it: a point-in-time recovery, or a drill. */
  source: z.enum(['point-in-time-recovery', 'drill']),
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  measuredAt: z.iso.datetime({ offset: true }),
  /** The pgBackRest backup set restored, and its size (the cluster's, as `pgbackrest info` gives it), in bytes. */
  set: z.string(),
  backupBytes: z.int().check(z.nonnegative()),
  /** Seconds spent restoring the set's files and replaying the WAL until promotion. */
  restoreSeconds: z.number().check(z.nonnegative()),
  recoverySeconds: z.number().check(z.nonnegative()),
  /** (restoreSeconds + recoverySeconds) per GB (10^9 bytes) of backupBytes. */
  secondsPerGB: z.number().check(z.nonnegative()),
});

export type RecoveryRecord = z.infer<typeof recoveryRecordSchema>;

/** A record from what a recovery measured; a set under 1 MB counts as 1 MB, so the rate stays finite. */
export function recoveryRecord(measured: Omit<RecoveryRecord, 'version' | 'secondsPerGB'>): RecoveryRecord {
  const gb = Math.max(measured.backupBytes, 1e6) / GB;
  const secondsPerGB = Math.round(((measured.restoreSeconds + measured.recoverySeconds) / gb) * 100) / 100;
  return { version: 1, ...measured, secondsPerGB };
}

/** Writes a measured recovery; returns its key. */
export async function writeRecoveryRecord(catalog: Catalog, record: RecoveryRecord): Promise<string> {
  const key = recoveryRecordKey(record.target, new Date(record.measuredAt).toISOString(), record.runId);
  await catalog.writeObject(
    key,
    `${JSON.stringify(recoveryRecordSchema.parse(record), null, 2)}\n`,
    'application/json',
  );
  return key;
}

/**
 * The newest measured recovery of a target with its key, or undefined when none
 * was measured yet. A record that does not parse is passed over and logged (an
 * older one is used); the daily verification reports it.
 */
export async function newestRecoveryRecord(
  catalog: Catalog,
  target: string,
): Promise<{ key: string; record: RecoveryRecord } | undefined> {
  return catalog.newestWhere(
    await recoveryRecordKeys(catalog, target),
    async (key) => ({ key, record: await readRecoveryRecord(catalog, key) }),
    () => true,
  );
}

/** The keys of a target's measured recoveries, oldest first. */
export async function recoveryRecordKeys(catalog: Catalog, target: string): Promise<string[]> {
  return (await catalog.listKeys(recoveriesOf(target))).filter((k) => k.endsWith('.json'));
}

/** A measured recovery; a BadManifestError naming its key when it does not parse. */
export function readRecoveryRecord(catalog: Catalog, key: string): Promise<RecoveryRecord> {
  return catalog.readJson(
    key,
    recoveryRecordSchema,
    'recovery record',
    `The recovery record ${key} disappeared while it was read.`,
  );
}

/** Seconds a recovery of `backupBytes` is expected to take at a record's rate. */
export function expectedSeconds(record: RecoveryRecord, backupBytes: number): number {
  return Math.round((record.secondsPerGB * Math.max(backupBytes, 1e6)) / GB);
}

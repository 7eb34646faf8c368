import { lsn, pgbackrestLabel, runIdentifier, targetName, walSegment } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { DAY_MS, utcDay } from '../core/time.ts';
import type { Catalog } from './catalog.ts';
import { keyDay, PHYSICAL_KINDS, physicalRecordKey, physicalRecordsOf } from './keys.ts';
import { unloggedSchema } from './unlogged.ts';

/**
 * The catalog's record of a pgBackRest backup: one JSON object per backup run,
 * written by the RecordPhysicalBackup stage from the plan and the facts
 * pgBackRest reported on the host (`info --output=json --set=<label>` and
 * `verify`), verified or failed. The restore test adds its result; the expiry
 * stage marks the backups pgBackRest removed. Info, drills and the expiry's
 * guard read these records, never the repository's listing.
 */

const iso = z.iso.datetime({ offset: true });
const bytes = z.int().check(z.nonnegative());

/** What verify said of the whole repository: its status, how many files it found bad, and the first of them. */
export const repositoryCheckSchema = z.object({
  status: z.enum(['ok', 'error']),
  problemCount: bytes,
  /** pgBackRest's own words, `invalid checksum '<label>/pg_data/base/5/2619.zst'` (at most the first ten). */
  problems: z.array(z.string().check(z.maxLength(400))).check(z.maxLength(10)),
});

export const physicalRecordSchema = z.object({
  version: z.literal(1),
  engine: z.literal('pgbackrest'),
  /** The target, which is also the stanza. */
  target: targetName,
  /** Where pgBackRest keeps it: the bucket and the repository's path in it (repo1-path). */
  repository: z.object({ bucket: z.string().check(z.minLength(3)), path: z.string() }),
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  /** The run's start (Step Functions') and the end of its host command (backup and verify). */
  startedAt: iso,
  finishedAt: iso,
  /** The kind the run asked for, and the kind pgBackRest took (a full when there was nothing to build on). */
  requestedKind: z.enum(PHYSICAL_KINDS),
  kind: z.enum(PHYSICAL_KINDS),
  /** Why the kind differs from the one asked for; null when it does not. */
  note: z.nullable(z.string()),
  label: pgbackrestLabel,
  /** The backup an incremental builds on, and every backup whose files it references. */
  prior: z.nullable(pgbackrestLabel),
  references: z.array(pgbackrestLabel),
  /** pgBackRest's facts (info --set): its own start and stop, the WAL and LSNs of the backup, its sizes in bytes. */
  backup: z.object({
    startedAt: iso,
    stoppedAt: iso,
    /** The first and last WAL segments a restore of this backup needs to reach consistency. */
    archiveStart: walSegment,
    archiveStop: walSegment,
    lsnStart: lsn,
    lsnStop: lsn,
    /** The cluster's size, what this backup copied of it, and both in the repository (compressed). */
    databaseBytes: bytes,
    backupBytes: bytes,
    repositoryBytes: bytes,
    repositoryDeltaBytes: bytes,
    /** pgBackRest found pages whose checksum is wrong in the cluster's own files (info's `error`). */
    pageChecksumErrors: z.boolean(),
  }),
  verification: z.object({
    state: z.enum(['verified', 'failed']),
    checkedAt: iso,
    detail: z.string(),
    /** What verify found bad in this backup, in the backups it references, or in the WAL it needs. */
    problems: z.array(z.string()),
    repository: repositoryCheckSchema,
    /** The restore test's outcome; its report (every table's count) is at `reportKey`. */
    restoreTest: z.optional(
      z.object({
        state: z.enum(['passed', 'failed']),
        /** When the test's host command was sent: with `checkedAt`, the test's own duration (absent in older records). */
        startedAt: z.optional(iso),
        checkedAt: iso,
        detail: z.string(),
        reportKey: z.optional(z.string()),
        /** The unlogged tables and sequences it found, which every physical recovery brings back empty; absent in older records. */
        unlogged: z.optional(unloggedSchema),
      }),
    ),
  }),
  /** Set once pgBackRest's expire removed the backup from the repository. */
  expired: z.optional(z.object({ at: iso, executionId: z.string() })),
});

export type PhysicalRecord = z.infer<typeof physicalRecordSchema>;

/** Where a record lives: by its run, as the plan named it. */
export const keyOf = (record: Pick<PhysicalRecord, 'target' | 'startedAt' | 'runId'>) =>
  physicalRecordKey(record.target, new Date(record.startedAt).toISOString(), record.runId);

/** A record; a NotFoundError when there is none, a BadManifestError naming its key when it does not parse. */
export function readPhysicalRecord(catalog: Catalog, key: string): Promise<PhysicalRecord> {
  return catalog.readJson(
    key,
    physicalRecordSchema,
    'physical backup record',
    `No physical backup record at s3://${catalog.bucket}/${key}: the backup run did not record one. Pick a backup from the catalog.`,
  );
}

export async function writePhysicalRecord(catalog: Catalog, record: PhysicalRecord): Promise<string> {
  const key = keyOf(record);
  await catalog.writeObject(key, `${JSON.stringify(record, null, 2)}\n`, 'application/json');
  return key;
}

/** The keys of a target's records, oldest run first; from `fromDay` (YYYY-MM-DD) on when given. */
export async function physicalRecordKeys(
  catalog: Catalog,
  target: string,
  fromDay?: string,
): Promise<string[]> {
  const prefix = physicalRecordsOf(target);
  const startAfter = fromDay === undefined ? undefined : `${prefix}${fromDay.replaceAll('-', '/')}`;
  return (await catalog.listKeys(prefix, startAfter)).filter((k) => k.endsWith('.json'));
}

/**
 * Every record of a target (expired ones too), oldest run first; from `fromDay`
 * on when given. One that does not parse is passed over and logged (Catalog.readEach).
 */
export async function listPhysicalBackups(
  catalog: Catalog,
  target: string,
  fromDay?: string,
): Promise<PhysicalRecord[]> {
  const keys = await physicalRecordKeys(catalog, target, fromDay);
  return catalog.readEach(keys, (k) => readPhysicalRecord(catalog, k));
}

/**
 * Whether a record's backup can be restored from: verified, still in the
 * repository, and, when `restoreTested`, its restore test passed.
 */
export function usable(record: PhysicalRecord, restoreTested: boolean): boolean {
  return (
    record.verification.state === 'verified' &&
    record.expired === undefined &&
    (!restoreTested || record.verification.restoreTest?.state === 'passed')
  );
}

/** The newest record of a target that `wanted` takes, read from the newest key back: a few reads, however long the history. */
async function newestRecord(
  catalog: Catalog,
  target: string,
  wanted: (record: PhysicalRecord) => boolean,
): Promise<PhysicalRecord | undefined> {
  const keys = await physicalRecordKeys(catalog, target);
  return catalog.newestWhere(keys, (k) => readPhysicalRecord(catalog, k), wanted);
}

/**
 * The newest full backup of a target that passed verification (and its restore
 * test, when `restoreTested`) and is still in the repository; undefined when
 * none has.
 */
export function newestVerifiedPhysicalFull(
  catalog: Catalog,
  target: string,
  options: { restoreTested: boolean },
): Promise<PhysicalRecord | undefined> {
  return newestRecord(catalog, target, (r) => r.kind === 'full' && usable(r, options.restoreTested));
}

/**
 * The newest backup of a target, of any kind, that passed verification and its
 * restore test and is still in the repository: what an incremental may build on.
 */
export function newestUsablePhysicalBackup(
  catalog: Catalog,
  target: string,
): Promise<PhysicalRecord | undefined> {
  return newestRecord(catalog, target, (r) => usable(r, true));
}

/**
 * Marks the records of backups pgBackRest expired. A label starts with the day
 * its backup started (the host's clock), near the run's start in the record's
 * key: the records from two days before the oldest label to a day after the
 * newest are read, not the whole history. Returns the keys it marked.
 */
export async function markPhysicalExpired(
  catalog: Catalog,
  target: string,
  labels: readonly string[],
  expired: { at: string; executionId: string },
): Promise<string[]> {
  if (labels.length === 0) return [];
  const days = labels.map((l) => Date.parse(`${l.slice(0, 4)}-${l.slice(4, 6)}-${l.slice(6, 8)}T00:00:00Z`));
  const from = utcDay(Math.min(...days) - 2 * DAY_MS);
  const to = utcDay(Math.max(...days) + DAY_MS);
  const keys = (await physicalRecordKeys(catalog, target, from)).filter((k) => (keyDay(k) ?? '') <= to);
  const wanted = new Set(labels);
  const marked: string[] = [];
  const records = await catalog.readEach(keys, async (key) => ({
    key,
    record: await readPhysicalRecord(catalog, key),
  }));
  for (const { key, record } of records) {
    if (!wanted.has(record.label) || record.expired !== undefined) continue;
    await writePhysicalRecord(catalog, { ...record, expired });
    marked.push(key);
  }
  return marked;
}

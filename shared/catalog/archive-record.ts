import {
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  PutObjectCommand,
  PutObjectRetentionCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  ArchiveCorruptError,
  classifyAwsError,
  NotFoundError,
  TamperedArchiveError,
} from '../core/errors.ts';
import { objectVersionId } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { DAY_MS } from '../core/time.ts';
import type { Catalog } from './catalog.ts';
import { archiveRecordKey } from './keys.ts';
import { type Manifest, manifestSchema } from './manifest.ts';
import { lockedUntil, OBJECT_LOCK_MODES, type ObjectLockMode } from './retention.ts';

/**
 * The record of an archive's creation. VerifyArchive writes it the first time it
 * sees a run's archive, before reading it: the manifest built from the run's
 * plan and the facts the host reported (the archive's sha256 and size, as the
 * host computed them while uploading), and the version S3 gave the archive. It
 * is written once, create-only (`If-None-Match: *`), under catalog/archives/,
 * where the bucket policy lets no one but VerifyArchive write and the DB host has
 * no grant, and Object Lock keeps it as long as the archive. Manifests change
 * (a verdict, a restore test's result); this never does. The daily verification
 * and every restore compare the manifest and the archive's current version with
 * it, and restores fetch the version it names, whatever the current one is.
 */

const iso = z.iso.datetime({ offset: true });

export const archiveRecordSchema = z.object({
  version: z.literal(1),
  /** The manifest as VerifyArchive first built it, unverified: the run's plan and the host's facts. */
  manifest: manifestSchema,
  /** The archive's version as its backup wrote it; null where the bucket keeps no versions (the local S3). */
  versionId: z.nullable(objectVersionId),
  recordedAt: iso,
  /** Until when Object Lock keeps that version of the archive, and this record; null where the bucket has no lock. */
  lockedUntil: z.nullable(iso),
});

export type ArchiveRecord = z.infer<typeof archiveRecordSchema>;

/** What S3 says of an object's version: HeadObject. */
interface ObjectVersion {
  versionId: string | null;
  createdAt: Date;
  lock: { mode: ObjectLockMode; until: Date } | null;
}

function versionOf(head: HeadObjectCommandOutput): ObjectVersion {
  const mode = OBJECT_LOCK_MODES.find((m) => m === head.ObjectLockMode);
  return {
    // An unversioned bucket answers "null" (S3) or nothing at all (the local S3).
    versionId: head.VersionId && head.VersionId !== 'null' ? head.VersionId : null,
    createdAt: head.LastModified ?? new Date(),
    lock:
      mode && head.ObjectLockRetainUntilDate
        ? { mode, until: new Date(head.ObjectLockRetainUntilDate) }
        : null,
  };
}

const statusOf = (error: unknown) =>
  (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/** The current version of an object, or undefined when it has none (never written, or deleted). */
async function currentVersion(s3: S3Client, bucket: string, key: string): Promise<ObjectVersion | undefined> {
  try {
    return versionOf(await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })));
  } catch (error) {
    if (statusOf(error) === 404) return undefined;
    throw classifyAwsError(error, `Reading the version of s3://${bucket}/${key}`);
  }
}

/**
 * Records a new run's archive (its manifest built, unverified) and locks it for
 * its kind: the record, create-only; then the archive's version lengthened to
 * its kind's retention (retention.ts lockDays) when the bucket locks versions
 * for less. Run again for the same run (the stage retried), it finds its own
 * record, locks the archive if that try did not, and returns the record. Throws ArchiveCorruptError when there is no archive,
 * TamperedArchiveError when another run's record is already there.
 */
export async function recordCreation(
  s3: S3Client,
  catalog: Catalog,
  manifest: Manifest,
  now: Date,
): Promise<ArchiveRecord> {
  const key = manifest.archive.key;
  const location = `s3://${catalog.bucket}/${key}`;
  const archive = await currentVersion(s3, catalog.bucket, key);
  if (!archive) {
    throw new ArchiveCorruptError(
      `There is no archive at ${location}, though the host reported writing it (${manifest.archive.size} bytes, sha256 ${manifest.archive.sha256}); the backup did not reach S3. Take a new backup of this kind.`,
    );
  }
  const until = archive.lock && lockedUntil(manifest.kind, archive.createdAt);
  const record: ArchiveRecord = {
    version: 1,
    manifest,
    versionId: archive.versionId,
    recordedAt: now.toISOString(),
    lockedUntil: until
      ? new Date(Math.max(until.getTime(), archive.lock?.until.getTime() ?? 0)).toISOString()
      : null,
  };
  const recordKey = archiveRecordKey(key);
  let recorded = record;
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: catalog.bucket,
        Key: recordKey,
        Body: `${JSON.stringify(record, null, 2)}\n`,
        ContentType: 'application/json',
        IfNoneMatch: '*',
        ...(archive.lock && record.lockedUntil
          ? { ObjectLockMode: archive.lock.mode, ObjectLockRetainUntilDate: new Date(record.lockedUntil) }
          : {}),
      }),
    );
  } catch (error) {
    if (statusOf(error) !== 412) throw classifyAwsError(error, `Recording the creation of ${location}`);
    const existing = await readArchiveRecord(catalog, key);
    if (existing.manifest.runId !== manifest.runId || existing.versionId !== archive.versionId) {
      throw new TamperedArchiveError(
        `The creation of ${location} was already recorded at s3://${catalog.bucket}/${recordKey} by the run ${existing.manifest.runId} (version ${existing.versionId ?? 'none'}), not by this run ${manifest.runId} (version ${archive.versionId ?? 'none'}); nothing was recorded. Two runs wrote the same key, or someone wrote the record: find out who (CloudTrail's data events for the bucket) before trusting either.`,
      );
    }
    // This run's own record, from a try that ended early (the stage is retried): its lock may be missing yet.
    recorded = existing;
  }
  // Lengthened, never shortened: governance mode needs a bypass to shorten, compliance mode forbids it.
  if (archive.lock && until && until > archive.lock.until) {
    try {
      await s3.send(
        new PutObjectRetentionCommand({
          Bucket: catalog.bucket,
          Key: key,
          VersionId: archive.versionId ?? undefined,
          Retention: { Mode: archive.lock.mode, RetainUntilDate: until },
        }),
      );
    } catch (error) {
      throw classifyAwsError(error, `Locking ${location} until ${until.toISOString()}`);
    }
  }
  return recorded;
}

/**
 * Locks the current version of `key` for `days` (days) from its writing, where
 * the bucket locks versions (Object Lock) and its lock is shorter: the audit
 * trail's objects, which the bucket's default (DEFAULT_LOCK_DAYS) would release
 * long before AUDIT_DAYS. Lengthened in the bucket's own mode, never shortened.
 * Returns the retain-until date, or null in a bucket without locks (the local
 * S3). Needs s3:GetObject, s3:GetObjectRetention (HeadObject shows a lock only
 * then) and s3:PutObjectRetention on `key`; failures are classified.
 */
export async function lockForDays(
  s3: S3Client,
  bucket: string,
  key: string,
  days: number,
): Promise<Date | null> {
  const version = await currentVersion(s3, bucket, key);
  if (!version?.lock) return null;
  const until = new Date(version.createdAt.getTime() + days * DAY_MS);
  if (until <= version.lock.until) return version.lock.until;
  try {
    await s3.send(
      new PutObjectRetentionCommand({
        Bucket: bucket,
        Key: key,
        VersionId: version.versionId ?? undefined,
        Retention: { Mode: version.lock.mode, RetainUntilDate: until },
      }),
    );
  } catch (error) {
    throw classifyAwsError(error, `Locking s3://${bucket}/${key} until ${until.toISOString()}`);
  }
  return until;
}

/** An archive's record; a TamperedArchiveError when there is none, a BadManifestError when it does not parse. */
export async function readArchiveRecord(catalog: Catalog, archive: string): Promise<ArchiveRecord> {
  const key = archiveRecordKey(archive);
  try {
    return await catalog.readJson(key, archiveRecordSchema, 'record of an archive', '');
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    throw new TamperedArchiveError(
      `There is no record of the creation of s3://${catalog.bucket}/${archive} (s3://${catalog.bucket}/${key}), which VerifyArchive writes for every archive: its manifest was not written by this deployment's backups, or the record was removed. Do not restore from it; pick another backup, and find out who wrote that manifest (CloudTrail's data events for the bucket).`,
    );
  }
}

/** Where a manifest disagrees with the record of its archive's creation: sha256, size or key. */
export function recordProblems(manifest: Manifest, record: ArchiveRecord): string[] {
  const made = record.manifest.archive;
  const said = manifest.archive;
  return [
    ...(said.key !== made.key ? [`its manifest names ${said.key}, the record ${made.key}`] : []),
    ...(said.sha256 !== made.sha256 || said.size !== made.size
      ? [
          `its manifest says sha256 ${said.sha256} (${said.size} bytes), the record of its creation ${made.sha256} (${made.size} bytes)`,
        ]
      : []),
  ];
}

/**
 * Where an archive is not as recorded at its creation: its manifest (recordProblems),
 * and its current version, which must be the one its backup wrote (where the
 * bucket keeps versions). Empty when nothing was changed.
 */
export async function tamperProblems(
  s3: S3Client,
  bucket: string,
  manifest: Manifest,
  record: ArchiveRecord,
): Promise<string[]> {
  const problems = recordProblems(manifest, record);
  if (record.versionId !== null) {
    const current = await currentVersion(s3, bucket, record.manifest.archive.key);
    if (!current)
      problems.push(
        `it has no current version (it was deleted), the version its backup wrote is ${record.versionId}`,
      );
    else if (current.versionId !== record.versionId)
      problems.push(
        `its current version is ${current.versionId ?? 'unversioned'}, not ${record.versionId}, the version its backup wrote`,
      );
  }
  return problems;
}

/** `version V of s3://b/k, the one its backup wrote (sha256 …), locked until …`: the version to restore from, in words. */
export function recordedVersionText(record: ArchiveRecord, bucket: string): string {
  const { key, sha256 } = record.manifest.archive;
  return `${record.versionId ? `version ${record.versionId} of ` : ''}s3://${bucket}/${key}, the one its backup wrote (sha256 ${sha256})${record.lockedUntil ? `, locked until ${record.lockedUntil}` : ''}`;
}

/**
 * The version a restore of this backup fetches: the one its record names, once
 * its manifest matches the record. A TamperedArchiveError, naming the version to
 * restore from, when it does not (its rows and sha256 cannot be trusted) or when
 * there is no record.
 */
export async function recordedVersion(catalog: Catalog, manifest: Manifest): Promise<string | null> {
  const record = await readArchiveRecord(catalog, manifest.archive.key);
  const problems = recordProblems(manifest, record);
  if (problems.length > 0) {
    throw new TamperedArchiveError(
      `The manifest of s3://${catalog.bucket}/${manifest.archive.key} was changed after its backup: ${problems.join('; ')}. Its tables and sha256 cannot be trusted, so nothing was restored and nothing was changed. The archive to restore from is ${recordedVersionText(record, catalog.bucket)}: the daily verification rebuilds the manifest from the record of its creation (start the daily-verification workflow now), then start this restore again. Find out who changed the manifest (CloudTrail's data events for the bucket) first.`,
    );
  }
  return record.versionId;
}

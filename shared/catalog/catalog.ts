import {
  type _Object,
  DeleteObjectsCommand,
  GetObjectCommand,
  NoSuchKey,
  PutObjectCommand,
  paginateListObjectsV2,
  type S3Client,
} from '@aws-sdk/client-s3';
import { classifyAwsError, NotFoundError } from '../core/errors.ts';
import { DAY_MS, utcDay } from '../core/time.ts';
import {
  type BackupKind,
  type DatabaseKind,
  type FileKind,
  kindPrefix,
  MANIFEST_SUFFIX,
  manifestKey,
} from './keys.ts';
import {
  type DatabaseManifest,
  type FilesManifest,
  isDatabaseManifest,
  isUsable,
  type Manifest,
  manifestSchema,
  micros,
} from './manifest.ts';

/** Reads and writes the manifests in the backup bucket: the catalog of every backup. */
export class Catalog {
  private readonly s3: S3Client;
  readonly bucket: string;

  constructor(s3: S3Client, bucket: string) {
    this.s3 = s3;
    this.bucket = bucket;
  }

  async readManifest(key: string): Promise<Manifest> {
    const text = await this.readObject(
      key,
      `No manifest at s3://${this.bucket}/${key}: the backup did not finish or was pruned. Pick a backup from the catalog.`,
    );
    const parsed = manifestSchema.safeParse(JSON.parse(text));
    if (!parsed.success) {
      throw new NotFoundError(
        `The manifest s3://${this.bucket}/${key} is malformed (${parsed.error.message}); treat that backup as unusable.`,
      );
    }
    return parsed.data;
  }

  /** The text of a small object of the catalog; a NotFoundError with `ifMissing` when there is none. */
  async readObject(key: string, ifMissing: string): Promise<string> {
    try {
      const object = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return (await object.Body?.transformToString('utf-8')) ?? '';
    } catch (error) {
      if (error instanceof NoSuchKey) throw new NotFoundError(ifMissing);
      throw classifyAwsError(error, `Reading s3://${this.bucket}/${key}`);
    }
  }

  async readDatabaseManifest(key: string): Promise<DatabaseManifest> {
    const manifest = await this.readManifest(key);
    if (!isDatabaseManifest(manifest)) {
      throw new NotFoundError(
        `s3://${this.bucket}/${key} is the manifest of a ${manifest.kind} backup, not of a database backup.`,
      );
    }
    return manifest;
  }

  async writeManifest(manifest: Manifest): Promise<void> {
    await this.writeObject(
      manifestKey(manifest.archive.key),
      `${JSON.stringify(manifest, null, 2)}\n`,
      'application/json',
    );
  }

  /** Writes a small object beside the catalog (a manifest, a drill's report). */
  async writeObject(key: string, body: string, contentType: string): Promise<void> {
    try {
      await this.s3.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType }),
      );
    } catch (error) {
      throw classifyAwsError(error, `Writing s3://${this.bucket}/${key}`);
    }
  }

  /**
   * The manifest keys of one kind, target and database (none for files), oldest
   * first: keys sort by the run's start. Lists only; reads no manifest. With
   * `fromDay` (YYYY-MM-DD) the listing starts at that day's keys.
   */
  async manifestKeys(
    kind: BackupKind,
    target: string,
    database: string | null,
    fromDay?: string,
  ): Promise<string[]> {
    const prefix = kindPrefix(kind, target, database);
    const startAfter = fromDay === undefined ? undefined : `${prefix}${fromDay.replaceAll('-', '/')}`;
    return (await this.listKeys(prefix, startAfter)).filter((k) => k.endsWith(MANIFEST_SUFFIX));
  }

  /** Every key under `prefix` (after `startAfter`, when given), sorted. Lists only; reads nothing. */
  async listKeys(prefix: string, startAfter?: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const o of objectsUnder(this.s3, this.bucket, prefix, { startAfter }))
      if (o.Key) keys.push(o.Key);
    return keys.sort();
  }

  /**
   * The bytes and objects stored under `prefix` (current versions, as S3 lists
   * them): a pgBackRest repository's size, which pgBackRest's own info does not
   * give (it leaves the WAL archive out). Lists only; reads no object.
   */
  async sizeUnder(prefix: string): Promise<{ bytes: number; objects: number }> {
    let bytes = 0;
    let objects = 0;
    for await (const o of objectsUnder(this.s3, this.bucket, prefix)) {
      bytes += o.Size ?? 0;
      objects += 1;
    }
    return { bytes, objects };
  }

  /**
   * The newest usable backup (manifest.ts's isUsable: verified, and not failed
   * its restore test), read from the newest key back, and the newest verified
   * one met on the way (a newer one, when the newest failed their restore
   * tests): a few reads, however long the history (15-minute log backups kept
   * for 7 years are 245,000 manifests).
   */
  async newestUsable(
    keys: readonly string[],
  ): Promise<{ usable: Manifest | undefined; verified: Manifest | undefined }> {
    let verified: Manifest | undefined;
    for (let i = keys.length - 1; i >= 0; i -= 1) {
      const manifest = await this.readManifest(keys[i] as string);
      if (manifest.verification.state === 'verified') verified ??= manifest;
      if (isUsable(manifest)) return { usable: manifest, verified };
    }
    return { usable: undefined, verified };
  }

  /**
   * The newest usable backup of one kind, target and database, and the newest
   * key of any state. Lists the last `recentDays` first (15-minute log backups
   * kept 7 years are 245,000 keys); the whole catalog only when nothing usable
   * is that recent.
   */
  async newestOf(
    kind: BackupKind,
    target: string,
    database: string | null,
    now = new Date(),
    recentDays = 2,
  ): Promise<{ newestKey: string | undefined; newestUsable: Manifest | undefined }> {
    const fromDay = utcDay(now.getTime() - recentDays * DAY_MS);
    const recent = await this.manifestKeys(kind, target, database, fromDay);
    const { usable } = await this.newestUsable(recent);
    if (usable) return { newestKey: recent.at(-1), newestUsable: usable };
    const all = await this.manifestKeys(kind, target, database);
    return { newestKey: all.at(-1), newestUsable: (await this.newestUsable(all)).usable };
  }

  async readAll(keys: readonly string[]): Promise<Manifest[]> {
    return Promise.all(keys.map((k) => this.readManifest(k)));
  }

  /**
   * Every manifest of one kind, target and database (none for files), oldest
   * data first; with `fromDay` (YYYY-MM-DD), those whose keys are of that day or later.
   */
  async list(
    kind: DatabaseKind,
    target: string,
    database: string,
    fromDay?: string,
  ): Promise<DatabaseManifest[]>;
  async list(kind: FileKind, target: string, database: null, fromDay?: string): Promise<FilesManifest[]>;
  async list(
    kind: BackupKind,
    target: string,
    database: string | null,
    fromDay?: string,
  ): Promise<Manifest[]>;
  async list(
    kind: BackupKind,
    target: string,
    database: string | null,
    fromDay?: string,
  ): Promise<Manifest[]> {
    const manifests = await this.readAll(await this.manifestKeys(kind, target, database, fromDay));
    return manifests.sort((a, b) => micros(a.window.until) - micros(b.window.until));
  }

  /** Deletes archives and their manifests (in a versioned bucket this leaves delete markers). */
  async remove(manifests: readonly Manifest[]): Promise<void> {
    const keys = manifests.flatMap((m) => [m.archive.key, manifestKey(m.archive.key)]);
    // DeleteObjects takes at most 1000 keys per request.
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      try {
        const result = await this.s3.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        if (result.Errors?.length) {
          throw new Error(
            `S3 refused to delete ${result.Errors.map((e) => `${e.Key} (${e.Code})`).join(', ')}`,
          );
        }
      } catch (error) {
        throw classifyAwsError(error, 'Deleting expired backups');
      }
    }
  }
}

/**
 * Every object under `prefix` in key order (after `startAfter`, when given), a
 * page at a time through the SDK's paginator (at most `pageSize` keys a page; S3's
 * own maximum, 1000, when left out): memory stays one page however long the
 * listing. A failure is classified (transient or not) and names the prefix.
 */
export async function* objectsUnder(
  s3: S3Client,
  bucket: string,
  prefix: string,
  options: { startAfter?: string | undefined; pageSize?: number } = {},
): AsyncGenerator<_Object> {
  const pages = paginateListObjectsV2(
    { client: s3, ...(options.pageSize === undefined ? {} : { pageSize: options.pageSize }) },
    { Bucket: bucket, Prefix: prefix, StartAfter: options.startAfter },
  );
  try {
    for await (const page of pages) yield* page.Contents ?? [];
  } catch (error) {
    throw classifyAwsError(error, `Listing s3://${bucket}/${prefix}`);
  }
}

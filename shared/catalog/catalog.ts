import {
  type _Object,
  DeleteObjectsCommand,
  GetObjectCommand,
  NoSuchKey,
  PutObjectCommand,
  paginateListObjectsV2,
  type S3Client,
} from '@aws-sdk/client-s3';
import { BadManifestError, classifyAwsError, NotFoundError } from '../core/errors.ts';
import { logger } from '../core/logger.ts';
import type * as z from '../core/schema.ts';
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
  /** The client of the bucket's region, for a reader that lists beyond the catalog (the WAL of a repository). */
  readonly s3: S3Client;
  readonly bucket: string;

  constructor(s3: S3Client, bucket: string) {
    this.s3 = s3;
    this.bucket = bucket;
  }

  /** A manifest; a NotFoundError when there is none, a BadManifestError naming its key when it does not parse. */
  async readManifest(key: string): Promise<Manifest> {
    return this.readJson(
      key,
      manifestSchema,
      'manifest',
      `No manifest at s3://${this.bucket}/${key}: the backup did not finish or was pruned. Pick a backup from the catalog.`,
    );
  }

  /**
   * A JSON object of the catalog (a manifest, a record), parsed with `schema`.
   * Missing: a NotFoundError with `ifMissing`. Not valid JSON, or not of the
   * schema: a BadManifestError that names the key and what to do, so that a
   * reader of many objects can pass over it (`readEach`) and one that was asked
   * for this one says which object is bad.
   */
  async readJson<S extends z.ZodMiniType>(
    key: string,
    schema: S,
    what: string,
    ifMissing: string,
  ): Promise<z.infer<S>> {
    const text = await this.readObject(key, ifMissing);
    const bad = (problem: string, cause?: unknown) =>
      new BadManifestError(
        `The ${what} s3://${this.bucket}/${key} is unreadable (${problem.slice(0, 300)}): every listing of the catalog passes over it and the daily verification reports it. Repair it, or delete it (a deleted manifest's archive is then a leftover that pruning removes after a day); restore from another backup.`,
        cause === undefined ? undefined : { cause },
      );
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw bad(`not valid JSON: ${(error as Error).message}`, error);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(object)'}: ${i.message}`);
      throw bad(`not a ${what}: ${issues.join('; ')}`);
    }
    return parsed.data;
  }

  /**
   * Each key read with `read`, in order, passing over the objects that do not
   * parse (BadManifestError): each is handed to `onBad`, which logs its key by
   * default, so that one bad object blocks no listing. Any other failure (S3
   * unreachable, access denied) is thrown.
   */
  async readEach<T>(
    keys: readonly string[],
    read: (key: string) => Promise<T>,
    onBad: (bad: BadObject) => void = logBadObject,
  ): Promise<T[]> {
    const results = await Promise.all(keys.map((key) => readOrSkip(key, read, onBad)));
    return results.filter((r) => r !== SKIPPED) as T[];
  }

  /**
   * The newest object among `keys` (sorted oldest first) that `wanted` takes,
   * read from the newest key back: a few reads, however long the history. One
   * that does not parse is passed over (and logged), never fatal.
   */
  async newestWhere<T>(
    keys: readonly string[],
    read: (key: string) => Promise<T>,
    wanted: (value: T) => boolean,
  ): Promise<T | undefined> {
    for (let i = keys.length - 1; i >= 0; i -= 1) {
      const value = await readOrSkip(keys[i] as string, read, logBadObject);
      if (value !== SKIPPED && wanted(value)) return value;
    }
    return undefined;
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

  /**
   * The names one level below `prefix` (the databases under `database/full/<target>/`, say),
   * sorted: S3's common prefixes with `/` as the delimiter. Lists only; reads nothing.
   */
  async childNames(prefix: string): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const page of paginateListObjectsV2(
        { client: this.s3 },
        { Bucket: this.bucket, Prefix: prefix, Delimiter: '/' },
      ))
        for (const p of page.CommonPrefixes ?? [])
          if (p.Prefix) names.push(p.Prefix.slice(prefix.length, -1));
    } catch (error) {
      throw classifyAwsError(error, `Listing s3://${this.bucket}/${prefix}`);
    }
    return names.sort();
  }

  /** Every key under `prefix` (after `startAfter`, when given), sorted. Lists only; reads nothing. */
  async listKeys(prefix: string, startAfter?: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const o of objectsUnder(this.s3, this.bucket, prefix, { startAfter }))
      if (o.Key) keys.push(o.Key);
    return keys.sort();
  }

  /** Every object under `prefix`, sorted by key, with its size and when it was written. Lists only; reads nothing. */
  async listObjects(prefix: string): Promise<ListedObject[]> {
    const objects: ListedObject[] = [];
    for await (const o of objectsUnder(this.s3, this.bucket, prefix))
      if (o.Key)
        objects.push({ key: o.Key, bytes: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) });
    return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
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
    const usable = await this.newestWhere(
      keys,
      (k) => this.readManifest(k),
      (m) => {
        if (m.verification.state === 'verified') verified ??= m;
        return isUsable(m);
      },
    );
    return { usable, verified };
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

  /** The manifests at `keys`, in order; one that does not parse is passed over and logged (readEach). */
  async readAll(keys: readonly string[]): Promise<Manifest[]> {
    return this.readEach(keys, (k) => this.readManifest(k));
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
    await this.removeKeys(manifests.flatMap((m) => [m.archive.key, manifestKey(m.archive.key)]));
  }

  /** Deletes objects by key (in a versioned bucket this leaves delete markers). */
  async removeKeys(keys: readonly string[]): Promise<void> {
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
        throw classifyAwsError(error, `Deleting ${batch.length} object(s) from s3://${this.bucket}`);
      }
    }
  }
}

/** An object as a listing gives it: its key, size in bytes and last write. */
export interface ListedObject {
  key: string;
  bytes: number;
  lastModified: Date;
}

/** A catalog object that did not parse, by its key, and why (BadManifestError's message). */
export interface BadObject {
  key: string;
  problem: string;
}

const SKIPPED = Symbol('skipped');

async function readOrSkip<T>(
  key: string,
  read: (key: string) => Promise<T>,
  onBad: (bad: BadObject) => void,
): Promise<T | typeof SKIPPED> {
  try {
    return await read(key);
  } catch (error) {
    if (!(error instanceof BadManifestError)) throw error;
    onBad({ key, problem: error.message });
    return SKIPPED;
  }
}

/** A reader passing over a bad object says which: the daily verification alerts on it, the log names it where it was met. */
function logBadObject(bad: BadObject): void {
  logger.warn('unreadable catalog object skipped', { ...bad });
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

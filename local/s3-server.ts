import { createHash, randomUUID } from 'node:crypto';
import {
  createWriteStream,
  type Dirent,
  existsSync,
  fstatSync,
  mkdirSync,
  ReadStream,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import S3rver from 's3rver';

/**
 * The local S3 server's own process (started by local/s3.ts startLocalS3):
 * `s3-server.ts [--port N] [--detached] [--vault <bucket>] <data dir> <bucket> <key.pem> <cert.pem>`.
 * With `--vault`, a second bucket to which every object written to `<bucket>`
 * is replicated, as S3 replication does in AWS (serverless/vault.cjs).
 * Prints `listening <port>` once it serves HTTPS on 127.0.0.1. It stops when its
 * stdin closes (its parent ended or called stop()); detached (`npm run local --
 * up`), it outlives its parent and stops on SIGTERM.
 */
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: 'string', default: '0' },
    detached: { type: 'boolean', default: false },
    vault: { type: 'string' },
  },
});
const [directory, bucket, keyFile, certFile] = positionals;
if (!directory || !bucket || !keyFile || !certFile) {
  console.error(
    'usage: s3-server.ts [--port N] [--detached] [--vault <bucket>] <data dir> <bucket> <key.pem> <cert.pem>',
  );
  process.exit(2);
}
mkdirSync(directory, { recursive: true });
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(values.port),
  silent: true,
  directory,
  key: readFileSync(keyFile),
  cert: readFileSync(certFile),
  configureBuckets: [{ name: bucket }, ...(values.vault ? [{ name: values.vault }] : [])],
});
wholeWrites(server.store);
listNestedCommonPrefixes(server.store, directory);
// Inside the conditional writes' per-key queue (each unshift goes first), so a
// replica is written in the order its object was.
if (values.vault) replicate(server, bucket, values.vault);
conditionalWrites(server);
abortMultipartUploads(server, directory);
const { port } = await server.run();
process.stdout.write(`listening ${port}\n`);
const close = () => {
  void server.close().then(() => process.exit(0));
};
if (values.detached) {
  process.once('SIGTERM', close);
  process.once('SIGINT', close);
} else {
  process.stdin.resume();
  process.stdin.on('end', close);
}

/**
 * PutObject (and CompleteMultipartUpload, which ends in it, and the vault's
 * replica, written the same way) as S3 stores an object: no reader ever sees part
 * of it, S3 "never adds partial objects" (PutObject's reference). s3rver 3.7.1's
 * FilesystemStore.putObject (lib/stores/filesystem.js) writes over the object's
 * file in place, and answers once its hashing Transform has passed the last chunk
 * on, not once the file is flushed: a GET during an overwrite got a mix of both
 * versions or a body shorter than its Content-Length (12 of 16 reads of an 8 MB
 * object rewritten 20 times, test/local-s3.test.ts). Here the bytes go to a file
 * beside the object (a name listings skip: theirs end in `._S3rver_object`),
 * renamed over it once closed; the answer comes after that.
 */
function wholeWrites(store: S3rver['store']): void {
  store.putObject = async (object) => {
    const path = store.getResourcePath(object.bucket, object.key, 'object');
    const partial = `${path}.writing-${randomUUID()}`;
    await mkdir(dirname(path), { recursive: true });
    let written: { size: number; md5: string };
    try {
      written = await writeHashed(object.content, partial);
      await rename(partial, path);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
    await store.putMetadata(object.bucket, object.key, object.metadata, written.md5);
    return written;
  };
  // UploadPart the same way, for its errors: s3rver's leaves its file stream's
  // error unhandled, and a part still arriving when the upload is aborted
  // (abortMultipartUploads removes its folder; a cancelled backup's uploader
  // aborts) ended the whole server with ENOENT, every later write of that stack
  // hanging. Here the part fails alone, as S3 answers a part of an aborted
  // upload; its folder is not made again.
  store.putPart = async (bucket, uploadId, partNumber, content) => {
    const path = join(store.getResourcePath(bucket, '', 'uploads'), uploadId, String(partNumber));
    const written = await writeHashed(content, path);
    await writeFile(`${path}.md5`, written.md5);
    return written;
  };
  // A GET takes the object's size (its Content-Length) from one stat and opens
  // the file after: a rename in between would send the new bytes under the old
  // length. The size of the file it opened (a renamed file never changes) is
  // compared, and the object read again when it differs.
  const get = store.getObject.bind(store);
  store.getObject = async (bucket, key, options) => {
    for (;;) {
      const object = await get(bucket, key, options);
      const content = object?.content;
      // fs.ReadStream's fd, set once open (s3rver resolves then), is untyped.
      const fd = content instanceof ReadStream ? (content as { fd?: unknown }).fd : undefined;
      if (
        !object ||
        typeof fd !== 'number' ||
        fstatSync(fd).size === Number(object.metadata['content-length'])
      )
        return object;
      (content as ReadStream).destroy();
    }
  };
}

/** Writes `content` (a Buffer or a stream) to `path`, resolving once the file is closed: its size (bytes) and md5 (hex), which s3rver's etags are. */
async function writeHashed(
  content: Buffer | NodeJS.ReadableStream,
  path: string,
): Promise<{ size: number; md5: string }> {
  const md5 = createHash('md5');
  let size = 0;
  await pipeline(
    Buffer.isBuffer(content) ? Readable.from([content]) : content,
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    }),
    createWriteStream(path),
  );
  return { size, md5: md5.digest('hex') };
}

/**
 * s3rver 3.7.1 lists a common prefix only when an object sits directly in it: its
 * walk skips every folder beneath a common prefix, so `archive/<stanza>/15-1/`,
 * which holds only `0000000100000000/…`, is never listed. S3 lists it, and
 * pgBackRest finds its WAL archive ids that way: without this, `verify` reports
 * "archiveId: none found" and checks no WAL segment, and `expire` removes none.
 * This adds the missing prefixes to a listing's last page (a truncated page is
 * left as it is: the next one ends the listing).
 */
function listNestedCommonPrefixes(store: S3rver['store'], root: string): void {
  const list = store.listObjects.bind(store);
  store.listObjects = async (bucket, options) => {
    const result = await list(bucket, options);
    const { delimiter = '', prefix = '', startAfter = '' } = options;
    if (delimiter !== '/' || result.isTruncated) return result;
    const folder = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const found = new Set(result.commonPrefixes);
    for (const entry of entries(join(root, bucket, folder))) {
      const common = `${folder}${entry.name}/`;
      if (!entry.isDirectory() || !common.startsWith(prefix) || common <= startAfter || found.has(common))
        continue;
      if (holdsObject(join(root, bucket, common))) found.add(common);
    }
    return { ...result, commonPrefixes: [...found].sort() };
  };
}

function entries(path: string): Dirent[] {
  try {
    return readdirSync(path, { withFileTypes: true });
  } catch {
    return []; // no such folder: nothing under the prefix
  }
}

/** Whether a folder of the store holds an object at any depth (s3rver names its files `<key>._S3rver_object`). */
function holdsObject(path: string): boolean {
  return entries(path).some((e) =>
    e.isDirectory() ? holdsObject(join(path, e.name)) : e.name.endsWith('._S3rver_object'),
  );
}

/**
 * AbortMultipartUpload, which s3rver 3.7.1 refuses (405): the DB host's uploader
 * (boto3's s3transfer, host/s3-put.py) aborts an upload S3 refused to complete
 * (the key exists), and its parts must go with it as they do in S3. s3rver keeps
 * an upload's parts in `<bucket>/._S3rver_uploads/<upload id>/`. Answered as S3
 * answers: 204, or 404 NoSuchUpload.
 */
function abortMultipartUploads(server: S3rver, root: string): void {
  server.middleware.unshift(async (ctx, next) => {
    const object = /^\/([^/]+)\/.+$/.exec(ctx.path);
    const id = ctx.query.uploadId;
    if (ctx.method !== 'DELETE' || !object || typeof id !== 'string') return next();
    const upload = join(root, object[1] as string, '._S3rver_uploads', id);
    if (!/^[0-9a-f]+$/.test(id) || !existsSync(upload)) {
      ctx.status = 404;
      ctx.type = 'application/xml';
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>`;
      return;
    }
    rmSync(upload, { recursive: true, force: true });
    ctx.status = 204;
  });
}

/**
 * S3 replication from `source` to `vault` (the backup bucket's
 * ReplicationConfiguration in AWS): every object written to `source` (PutObject,
 * CopyObject, CompleteMultipartUpload) is copied to the same key in `vault`,
 * bytes and metadata; a deletion is not, as delete markers are not replicated
 * there. S3 replicates within minutes (15 at most under Replication Time
 * Control); here the replica is written before the write is answered, so that
 * a test sees it at once. No version ids: s3rver keeps none.
 */
function replicate(server: S3rver, source: string, vault: string): void {
  server.middleware.unshift(async (ctx, next) => {
    await next();
    const object = /^\/([^/]+)\/(.+)$/.exec(ctx.path);
    if (!object || object[1] !== source || ctx.status < 200 || ctx.status >= 300) return;
    const completion = ctx.method === 'POST' && 'uploadId' in ctx.query && !('partNumber' in ctx.query);
    const put =
      ctx.method === 'PUT' && !['uploadId', 'partNumber', 'tagging', 'acl'].some((name) => name in ctx.query);
    if (!completion && !put) return;
    const key = decodeURIComponent(object[2] as string);
    // Through wholeWrites, not the store's copyObject, which writes over the
    // replica in place: a reader of the vault would see part of it.
    const written = await server.store.getObject(source, key);
    if (written) await server.store.putObject({ ...written, bucket: vault });
  });
}

/**
 * S3's conditional writes, which s3rver 3.7.1 ignores (the run locks rely on
 * them, shared/core/run-lock.ts, and the DB host's create-only uploads,
 * host/common.sh s3_put): PutObject with `If-None-Match: *` (create only) or
 * `If-Match: <etag>` (replace only the version read), CompleteMultipartUpload
 * with `If-None-Match: *`, DeleteObject with `If-Match`. Checked and applied
 * atomically: every write of a key waits for the one before it to end (the
 * server is this one process), so two writers can never both pass the same
 * check. Answered as S3 answers: 412 PreconditionFailed, 404 NoSuchKey for
 * If-Match on a missing object, 501 NotImplemented for an If-None-Match other
 * than `*`. Multipart parts, copies and subresources (tagging, ACLs) pass
 * through as before.
 */
function conditionalWrites(server: S3rver): void {
  const queues = new Map<string, Promise<void>>();
  const SUBRESOURCES = ['uploadId', 'partNumber', 'uploads', 'tagging', 'acl', 'delete'];
  server.middleware.unshift(async (ctx, next) => {
    const object = /^\/([^/]+)\/(.+)$/.exec(ctx.path);
    // CompleteMultipartUpload: a POST with the upload's id and nothing else.
    const completion = ctx.method === 'POST' && 'uploadId' in ctx.query && !('partNumber' in ctx.query);
    if (
      !object ||
      (!completion &&
        ((ctx.method !== 'PUT' && ctx.method !== 'DELETE') ||
          SUBRESOURCES.some((name) => name in ctx.query) ||
          ctx.get('x-amz-copy-source')))
    )
      return next();
    const bucket = object[1] as string;
    const key = decodeURIComponent(object[2] as string);
    const id = `${bucket}/${key}`;
    const before = queues.get(id) ?? Promise.resolve();
    let done = () => {};
    const gate = new Promise<void>((resolve) => {
      done = resolve;
    });
    const mine = before.then(() => gate);
    queues.set(id, mine);
    await before;
    try {
      const refusal = await precondition(server.store, bucket, key, completion ? 'PUT' : ctx.method, {
        ifMatch: ctx.get('if-match'),
        ifNoneMatch: ctx.get('if-none-match'),
      });
      if (!refusal) return await next();
      ctx.status = refusal.status;
      ctx.type = 'application/xml';
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${refusal.code}</Code><Message>${refusal.message}</Message><Key>${key.replace(/[<>&]/g, '')}</Key></Error>`;
    } finally {
      done();
      if (queues.get(id) === mine) queues.delete(id);
    }
  });
}

async function precondition(
  store: S3rver['store'],
  bucket: string,
  key: string,
  method: string,
  headers: { ifMatch: string; ifNoneMatch: string },
): Promise<{ status: number; code: string; message: string } | undefined> {
  const { ifMatch, ifNoneMatch } = headers;
  if (!ifMatch && !ifNoneMatch) return undefined;
  if (ifNoneMatch && (method !== 'PUT' || ifNoneMatch !== '*'))
    return {
      status: 501,
      code: 'NotImplemented',
      message: 'Only If-None-Match: * is supported on PutObject and CompleteMultipartUpload',
    };
  const exists = await store.existsObject(bucket, key);
  if (ifNoneMatch && exists)
    return {
      status: 412,
      code: 'PreconditionFailed',
      message: 'At least one of the pre-conditions you specified did not hold',
    };
  if (!ifMatch) return undefined;
  if (!exists) return { status: 404, code: 'NoSuchKey', message: 'The specified key does not exist.' };
  const unquoted = (etag: string) => etag.replace(/^(W\/)?"|"$/g, '');
  const { etag } = await store.getMetadata(bucket, key);
  if (ifMatch === '*' || unquoted(ifMatch) === unquoted(etag)) return undefined;
  return {
    status: 412,
    code: 'PreconditionFailed',
    message: 'At least one of the pre-conditions you specified did not hold',
  };
}

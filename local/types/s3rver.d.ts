declare module 's3rver' {
  import type { AddressInfo } from 'node:net';

  interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory: string;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    vhostBuckets?: boolean;
    /** Both given: the server speaks HTTPS. */
    key?: string | Buffer;
    cert?: string | Buffer;
    configureBuckets?: { name: string; configs?: (string | Buffer)[] }[];
  }

  /** An object as the store takes and gives it (its models/object.js S3Object). */
  interface S3rverObject {
    bucket: string;
    key: string;
    content: Buffer | NodeJS.ReadableStream;
    metadata: Record<string, string>;
  }

  /** The part of s3rver's filesystem store that local/s3-server.ts corrects and reads. */
  interface S3rverStore {
    /** Where the store keeps a key's resource (`object`, `metadata.json`, `object.md5`). */
    getResourcePath(bucket: string, key: string, resource: string): string;
    /** Stores an object's bytes (a Buffer or a stream) and metadata; s3rver's own resolves before its file is flushed. */
    putObject(object: S3rverObject): Promise<{ size: number; md5: string }>;
    /** Stores one part of a multipart upload (in `<bucket>/._S3rver_uploads/<upload id>/<part number>`, its md5 beside it). */
    putPart(
      bucket: string,
      uploadId: string,
      partNumber: number,
      content: NodeJS.ReadableStream,
    ): Promise<{ size: number; md5: string }>;
    /** Writes the metadata (the allowed headers and x-amz-meta-*) and, given, the md5 (hex) the etag is read from. */
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5?: string): Promise<void>;
    existsObject(bucket: string, key: string): Promise<boolean>;
    /** Throws when there is no such object; `etag` is quoted, as S3 sends it. */
    getMetadata(bucket: string, key: string): Promise<{ etag: string }>;
    /** The object's bytes (a stream) and metadata; null when there is no such object. */
    getObject(
      bucket: string,
      key: string,
      options?: { start?: number; end?: number },
    ): Promise<S3rverObject | null>;
    listObjects(
      bucket: string,
      options: { delimiter?: string; prefix?: string; startAfter?: string; maxKeys?: number },
    ): Promise<{ objects: unknown[]; commonPrefixes: string[]; isTruncated: boolean }>;
  }

  /** The part of a Koa context the conditional writes read and answer with. */
  interface S3rverContext {
    method: string;
    path: string;
    query: Record<string, unknown>;
    get(header: string): string;
    status: number;
    type: string;
    body: unknown;
  }

  /** S3rver is a Koa application: its middleware runs in this order. */
  export default class S3rver {
    constructor(options: S3rverOptions);
    readonly store: S3rverStore;
    readonly middleware: ((ctx: S3rverContext, next: () => Promise<unknown>) => Promise<unknown>)[];
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
  }
}

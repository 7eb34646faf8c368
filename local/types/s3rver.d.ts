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

  /** The part of s3rver's filesystem store that local/s3-server.ts corrects and reads. */
  interface S3rverStore {
    existsObject(bucket: string, key: string): Promise<boolean>;
    /** Throws when there is no such object; `etag` is quoted, as S3 sends it. */
    getMetadata(bucket: string, key: string): Promise<{ etag: string }>;
    /** The object's bytes and metadata to another key (and bucket), as they are. */
    copyObject(srcBucket: string, srcKey: string, destBucket: string, destKey: string): Promise<unknown>;
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

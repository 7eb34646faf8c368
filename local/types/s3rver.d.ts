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

  /** The part of s3rver's filesystem store that local/s3-server.ts corrects. */
  interface S3rverStore {
    listObjects(
      bucket: string,
      options: { delimiter?: string; prefix?: string; startAfter?: string; maxKeys?: number },
    ): Promise<{ objects: unknown[]; commonPrefixes: string[]; isTruncated: boolean }>;
  }

  export default class S3rver {
    constructor(options: S3rverOptions);
    readonly store: S3rverStore;
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
  }
}

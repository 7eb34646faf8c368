import type { Transform } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';

/**
 * Bytes per decompressed chunk. zlib's default, 16 KiB, makes every chunk a
 * round trip to its thread pool and a stream event: verifying 50 MiB of hex
 * bytea spent most of its time there (npm run bench:verify measures it, 3 to 4
 * times faster at 256 KiB). Memory stays a few chunks.
 */
const DECOMPRESSED_CHUNK = 256 * 1024;

/**
 * Compression of archives. zstd is the default: on the same 310 MB database
 * (npm run bench) `pg_dump | zstd -3 -T0` dumped 2.5 to 3 times faster than the
 * source document's `pg_dump | gzip`, because zstd runs on the second core while
 * gzip is the single-threaded bottleneck; the archives were the same size (±1 %)
 * and restored in the same time. gzip is kept for hosts without zstd. The host
 * compresses with the command; the verify stage decompresses with Node's zlib
 * (zstd is built into Node 24), which reads one zstd frame: the zstd command
 * writes one, even with -T0, but archives joined with `cat` would not verify.
 */
export const CODECS = {
  zstd: {
    extension: 'zst',
    compress: 'zstd -q -3 -T0 -c',
    decompress: 'zstd -q -d -c',
    createDecompressor: (): Transform => createZstdDecompress({ chunkSize: DECOMPRESSED_CHUNK }),
  },
  gzip: {
    extension: 'gz',
    compress: 'gzip -6 -c',
    decompress: 'gzip -d -c',
    createDecompressor: (): Transform => createGunzip({ chunkSize: DECOMPRESSED_CHUNK }),
  },
} as const;

export type CodecName = keyof typeof CODECS;
export const CODEC_NAMES = Object.keys(CODECS) as [CodecName, ...CodecName[]];
export const DEFAULT_CODEC: CodecName = 'zstd';

import type { Transform } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';

/**
 * Compression of archives. zstd is the default because it was measured faster and
 * smaller than the source document's gzip on the same dump (bench/run.ts); gzip is
 * kept for hosts without zstd. The host compresses with the command, the verify
 * stage decompresses with Node's zlib (zstd is built into Node 24).
 */
export const CODECS = {
  zstd: {
    extension: 'zst',
    compress: 'zstd -q -3 -T0 -c',
    decompress: 'zstd -q -d -c',
    createDecompressor: (): Transform => createZstdDecompress(),
  },
  gzip: {
    extension: 'gz',
    compress: 'gzip -6 -c',
    decompress: 'gzip -d -c',
    createDecompressor: (): Transform => createGunzip(),
  },
} as const;

export type CodecName = keyof typeof CODECS;
export const CODEC_NAMES = Object.keys(CODECS) as [CodecName, ...CodecName[]];
export const DEFAULT_CODEC: CodecName = 'zstd';

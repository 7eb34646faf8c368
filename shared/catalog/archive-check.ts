import { createHash } from 'node:crypto';
import { type Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import tar from 'tar-stream';
import { CODECS } from '../core/codecs.ts';
import { ArchiveCorruptError, classifyAwsError } from '../core/errors.ts';
import type { Catalog } from './catalog.ts';
import { type DatabaseManifest, type FilesManifest, isDatabaseManifest, type Manifest } from './manifest.ts';

/** How each archive format opens and closes (the second line of a pg_dump; the first of ours). */
const FORMAT_MARKS = {
  plain: {
    header: '-- PostgreSQL database dump',
    headerLine: 1,
    trailer: '-- PostgreSQL database dump complete',
  },
  changes: { header: '-- kennel-backup ', headerLine: 0, trailer: '-- kennel-backup archive complete' },
} as const;

const CHANGES_TABLE = '-- kennel-backup table: ';
const CHANGES_COPY = 'COPY kb_changes FROM stdin;';

export interface ArchiveFacts {
  size: number;
  sha256: string;
  uncompressedSize: number;
  header: string;
  trailer: string;
  /** Rows per table in a `changes` archive: one COPY text line is one row. */
  rows?: Record<string, number>;
}

/** Counts the rows of each COPY block of a `changes` archive, line by line as the stream passes. */
function changesCounter() {
  const rows: Record<string, number> = {};
  let table: string | undefined;
  let copying = false;
  let rest = '';
  const line = (text: string) => {
    if (copying) {
      if (text === '\\.') copying = false;
      else if (table) rows[table] = (rows[table] ?? 0) + 1;
    } else if (text.startsWith(CHANGES_TABLE)) {
      table = text.slice(CHANGES_TABLE.length);
      rows[table] = 0;
    } else if (text === CHANGES_COPY) {
      copying = true;
    }
  };
  return {
    rows,
    push(chunk: Buffer) {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) line(l);
    },
    end() {
      if (rest) line(rest);
    },
  };
}

/**
 * Streams an archive once through sha256 and decompression into `sink`. Memory
 * stays flat whatever the archive's size. A failure to decompress, or of the
 * sink's own parsing, means a damaged archive; anything else (a reset
 * connection, say) says nothing about it and is transient.
 */
async function streamArchive(
  body: Readable,
  manifest: Manifest,
  sink: Writable,
): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  // pipeline() hands a source's error to every stream: remember where it started.
  let sourceError: unknown;
  body.once('error', (error) => {
    sourceError = error;
  });
  let sinkError: unknown;
  sink.once('error', (error) => {
    sinkError = error;
  });
  try {
    await pipeline(body, meter, CODECS[manifest.archive.compression].createDecompressor(), sink);
  } catch (error) {
    // zlib reports damaged gzip as Z_* and damaged zstd as ZSTD_error_*.
    const damaged = error === sinkError || /^(Z_|ZSTD_error_)/.test((error as { code?: string }).code ?? '');
    if (error !== sourceError && damaged) {
      throw new ArchiveCorruptError(
        `The archive ${manifest.archive.key} does not decompress or parse (${(error as Error).message}); the archive is damaged. Take a new backup and restore from an older verified one if needed.`,
        { cause: error },
      );
    }
    throw classifyAwsError(error, `Reading ${manifest.archive.key}`);
  }
  return { size, sha256: hash.digest('hex') };
}

/** Reads a database archive, keeping its first and last few hundred bytes and, for `changes`, its row counts. */
export async function readArchive(body: Readable, manifest: DatabaseManifest): Promise<ArchiveFacts> {
  let uncompressedSize = 0;
  let head = '';
  let end = Buffer.alloc(0);
  const counter = manifest.archive.format === 'changes' ? changesCounter() : undefined;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (head.length < 512) head += chunk.subarray(0, 512).toString('utf8');
      uncompressedSize += chunk.length;
      end = Buffer.concat([end, chunk]).subarray(-512);
      counter?.push(chunk);
      done();
    },
    final(done) {
      counter?.end();
      done();
    },
  });
  const { size, sha256 } = await streamArchive(body, manifest, sink);
  return {
    size,
    sha256,
    uncompressedSize,
    header: head.split('\n').slice(0, 3).join('\n'),
    // Since 15.14 the dump ends with `\unrestrict <key>` after the closing comment.
    trailer: end.toString('utf8').trimEnd().split('\n').slice(-6).join('\n'),
    ...(counter ? { rows: counter.rows } : {}),
  };
}

export interface TarballFacts {
  size: number;
  sha256: string;
  entries: number;
}

/** Lists a tarball to its end-of-archive marker: a cut or damaged one fails to parse. */
export async function readTarball(body: Readable, manifest: FilesManifest): Promise<TarballFacts> {
  let entries = 0;
  const extract = tar.extract();
  extract.on('entry', (_header, stream, next) => {
    entries += 1;
    stream.on('end', next);
    stream.resume();
  });
  // tar-stream's Extract is a streamx Writable, which stream.pipeline accepts.
  const { size, sha256 } = await streamArchive(body, manifest, extract as unknown as Writable);
  return { size, sha256, entries };
}

function sizeAndHashProblems(facts: { size: number; sha256: string }, manifest: Manifest): string[] {
  return [
    ...(facts.size !== manifest.archive.size
      ? [`size is ${facts.size} bytes, the manifest says ${manifest.archive.size}`]
      : []),
    ...(facts.sha256 !== manifest.archive.sha256
      ? [`sha256 is ${facts.sha256}, the manifest says ${manifest.archive.sha256}`]
      : []),
  ];
}

export function tarballProblems(facts: TarballFacts, manifest: FilesManifest): string[] {
  return [
    ...sizeAndHashProblems(facts, manifest),
    ...(facts.entries !== manifest.entries
      ? [`it lists ${facts.entries} entries, the manifest says ${manifest.entries}`]
      : []),
  ];
}

/** What is wrong with an archive, judged against its manifest; empty when nothing is. */
export function archiveProblems(facts: ArchiveFacts, manifest: DatabaseManifest): string[] {
  const problems = sizeAndHashProblems(facts, manifest);
  const marks = FORMAT_MARKS[manifest.archive.format === 'plain' ? 'plain' : 'changes'];
  // pg_dump opens with exactly `--`, `-- PostgreSQL database dump`, `--`.
  if (
    !facts.header.split('\n')[marks.headerLine]?.startsWith(marks.header) ||
    facts.header.includes(marks.trailer)
  ) {
    problems.push(
      `it does not start as a ${manifest.archive.format === 'plain' ? 'PostgreSQL plain-format dump' : 'kennel-backup changes archive'}`,
    );
  }
  if (!facts.trailer.includes(marks.trailer))
    problems.push('the dump is truncated: its closing line is missing');
  if (facts.rows) {
    for (const [table, expected] of Object.entries(manifest.tables)) {
      const actual = facts.rows[table];
      if (actual !== expected)
        problems.push(`${table} has ${actual ?? 'no'} rows in the archive, the manifest says ${expected}`);
    }
  }
  return problems;
}

/**
 * Verifies the archive in S3 against its manifest and records the result in the
 * manifest. Throws ArchiveCorruptError, after marking the manifest failed, when
 * the archive is not what the manifest says.
 */
export async function verifyArchive(
  s3: S3Client,
  catalog: Catalog,
  bucket: string,
  manifestKey: string,
  now: () => Date = () => new Date(),
): Promise<Manifest> {
  const manifest = await catalog.readManifest(manifestKey);
  let detail: string;
  try {
    const object = await s3
      .send(new GetObjectCommand({ Bucket: bucket, Key: manifest.archive.key }))
      .catch((error: unknown) =>
        Promise.reject(classifyAwsError(error, `Reading s3://${bucket}/${manifest.archive.key}`)),
      );
    let problems: string[];
    if (isDatabaseManifest(manifest)) {
      const facts = await readArchive(object.Body as Readable, manifest);
      problems = archiveProblems(facts, manifest);
      detail = `${facts.size} bytes, sha256 matches, decompresses to ${facts.uncompressedSize} bytes of a complete ${manifest.archive.format === 'plain' ? 'PostgreSQL dump' : 'changes archive whose row counts match'}`;
    } else {
      const facts = await readTarball(object.Body as Readable, manifest);
      problems = tarballProblems(facts, manifest);
      detail = `${facts.size} bytes, sha256 matches, lists completely: ${facts.entries} entries`;
    }
    if (problems.length > 0) {
      throw new ArchiveCorruptError(
        `The archive s3://${bucket}/${manifest.archive.key} failed verification: ${problems.join('; ')}. It is marked failed in its manifest; do not restore from it.`,
      );
    }
  } catch (error) {
    if (error instanceof ArchiveCorruptError) {
      await catalog.writeManifest({
        ...manifest,
        verification: { state: 'failed', checkedAt: now().toISOString(), detail: error.message },
      });
    }
    throw error;
  }
  const verified: Manifest = {
    ...manifest,
    verification: { state: 'verified', checkedAt: now().toISOString(), detail },
  };
  await catalog.writeManifest(verified);
  return verified;
}

import { createHash } from 'node:crypto';
import { type Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import tar from 'tar-stream';
import type { Plan } from '../backup/database-plan.ts';
import type { FilesPlan } from '../backup/files-plan.ts';
import { CODECS } from '../core/codecs.ts';
import {
  ArchiveCorruptError,
  classifyAwsError,
  HostCommandFailedError,
  InvalidInputError,
  TamperedArchiveError,
} from '../core/errors.ts';
import { qualifiedName, type TableName } from '../core/identifiers.ts';
import type { Run } from '../core/run.ts';
import * as z from '../core/schema.ts';
import { counted } from '../core/words.ts';
import {
  type ArchiveRecord,
  readArchiveRecord,
  recordCreation,
  recordedVersionText,
  recordProblems,
  tamperProblems,
} from './archive-record.ts';
import { type ArchiveRows, RowCounter } from './archive-rows.ts';
import type { Catalog } from './catalog.ts';
import { type DumpKind, isLegacyKind } from './keys.ts';
import { legacyArchiveNote } from './legacy.ts';
import {
  type DatabaseManifest,
  type DatabaseProperties,
  databasePropertiesSchema,
  type FilesManifest,
  isDatabaseManifest,
  type Manifest,
} from './manifest.ts';
import {
  type DumpContents,
  databaseFactsSchema,
  databaseManifestOf,
  filesFactsSchema,
  filesManifestOf,
} from './manifest-builder.ts';

/** How a plain-format pg_dump opens (its second line) and closes. */
const DUMP_MARKS = {
  header: '-- PostgreSQL database dump',
  headerLine: 1,
  trailer: '-- PostgreSQL database dump complete',
} as const;

/**
 * A dump's first line, written by database-backup.sh before pg_dump's output (a
 * comment to psql): `-- kennel-backup database-properties <UTF8|SQL_ASCII> <base64>`,
 * the base64 of its database's properties as JSON, whose bytes are UTF-8 (as
 * they are in the database for SQL_ASCII). host/restore-archive.sh reads it too.
 */
const PROPERTIES_LINE = /^-- kennel-backup database-properties (UTF8|SQL_ASCII) ([A-Za-z0-9+/]+=*)$/;
/** Longer, a first line is no properties line: only this much of it is kept. */
const PROPERTIES_MAX = 16 * 1024 * 1024;

/** The database's properties on a dump's first line, or what is wrong with it. */
function propertiesOf(line: string): DatabaseProperties | string {
  const match = PROPERTIES_LINE.exec(line);
  if (!match)
    return "it does not start with the line of its database's properties that database-backup.sh writes";
  const base64 = match[2] ?? '';
  let json: unknown;
  try {
    // SQL_ASCII's bytes are read as UTF-8 too, as the restore test's client reads the restored database's.
    json = JSON.parse(Buffer.from(base64, 'base64').toString('utf8'));
  } catch {
    return "its database's properties are not JSON";
  }
  const parsed = z.safeParse(databasePropertiesSchema, json);
  if (parsed.success) return parsed.data;
  return `its database's properties are not what database-backup.sh writes (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`;
}

export interface ArchiveFacts extends ArchiveRows {
  size: number;
  sha256: string;
  uncompressedSize: number;
  /** The database's properties from the first line, or what is wrong with that line. */
  properties: DatabaseProperties | string;
  /** The three lines pg_dump opens with, after the properties line. */
  header: string;
  trailer: string;
  /** The table whose data the archive ends in, when it does (RowCounter.unended). */
  unended: TableName | undefined;
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

/** Reads a database archive, keeping its first and last few hundred bytes and counting its rows per table. */
export async function readArchive(body: Readable, manifest: DatabaseManifest): Promise<ArchiveFacts> {
  let uncompressedSize = 0;
  /** The first line while it is read; once read, what it says. */
  let first: string | undefined = '';
  let properties: DatabaseProperties | string = 'it is empty';
  let head = '';
  let end = Buffer.alloc(0);
  const counter = new RowCounter();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      let rest = chunk;
      if (first !== undefined) {
        const newline = chunk.indexOf(0x0a);
        const part = newline === -1 ? chunk : chunk.subarray(0, newline);
        if (first.length < PROPERTIES_MAX)
          first += part.subarray(0, PROPERTIES_MAX - first.length).toString('latin1');
        if (newline !== -1) {
          properties = propertiesOf(first);
          first = undefined;
        }
        rest = chunk.subarray(part.length + 1);
      }
      if (first === undefined && head.length < 512) head += rest.subarray(0, 512).toString('utf8');
      uncompressedSize += chunk.length;
      end = Buffer.concat([end, chunk.subarray(-512)]).subarray(-512);
      counter.push(chunk);
      done();
    },
  });
  const { size, sha256 } = await streamArchive(body, manifest, sink);
  return {
    size,
    sha256,
    uncompressedSize,
    properties: first === undefined ? properties : propertiesOf(first),
    header: head.split('\n').slice(0, 3).join('\n'),
    // Since 15.14 the dump ends with `\unrestrict <key>` after the closing comment.
    trailer: end.toString('utf8').trimEnd().split('\n').slice(-6).join('\n'),
    ...counter.end(),
    unended: counter.unended(),
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
      ? [`it lists ${counted(facts.entries, 'entry', 'entries')}, the manifest says ${manifest.entries}`]
      : []),
  ];
}

/** What is wrong with an archive, judged against its manifest; empty when nothing is. */
export function archiveProblems(facts: ArchiveFacts, manifest: DatabaseManifest): string[] {
  const problems = sizeAndHashProblems(facts, manifest);
  const marks = DUMP_MARKS;
  // pg_dump opens with exactly `--`, `-- PostgreSQL database dump`, `--`.
  if (
    !facts.header.split('\n')[marks.headerLine]?.startsWith(marks.header) ||
    facts.header.includes(marks.trailer)
  ) {
    problems.push('it does not start as a PostgreSQL plain-format dump');
  }
  if (facts.unended)
    problems.push(`the dump is truncated: it ends inside the data of ${qualifiedName(facts.unended)}`);
  else if (!facts.trailer.includes(marks.trailer))
    problems.push('the dump is truncated: its closing line is missing');
  if (typeof facts.properties === 'string') problems.push(facts.properties);
  // Rows are not compared: a dump's counts are read from the very bytes its
  // sha256 covers, while those of a manifest written before then were counted in
  // the database (a parent's count(*) includes its children), so comparing would
  // fail intact backups.
  return problems;
}

/** What VerifyArchive checks: a run's new archive (its plan and the host's facts), or a backup in the catalog. */
export type VerifyRequest = { plan: Plan | FilesPlan; facts: unknown } | { manifestKey: string };

type Verdict = Pick<Manifest['verification'], 'state' | 'checkedAt' | 'detail'>;

/** The host's facts, checked at this boundary: a script of another deployment reports something else. */
function factsOf<T extends z.ZodMiniType>(schema: T, facts: unknown, plan: Run): z.output<T> {
  const parsed = z.safeParse(schema, facts);
  if (parsed.success) return parsed.data;
  throw new HostCommandFailedError(
    `The host reported facts about ${plan.archiveKey} that are not what its backup script reports (${parsed.error.issues.map((i) => `${i.path.join('.') || '(result)'}: ${i.message}`).join('; ')}); nothing was recorded in the catalog. Check that the host runs the scripts of this deployment.`,
  );
}

/**
 * The manifest the archive is judged against, and how the verdict is recorded:
 * a backup in the catalog keeps everything but its verification (its restore
 * test too); a new run's manifest is built from its plan and the host's facts,
 * with the tables the archive was read to hold.
 */
async function claimOf(
  catalog: Catalog,
  request: VerifyRequest,
  excludedTables: (kind: DumpKind) => TableName[],
): Promise<(verdict: Verdict, contents?: DumpContents) => Manifest> {
  if ('manifestKey' in request) {
    const manifest = await catalog.readManifest(request.manifestKey);
    if (isLegacyKind(manifest.kind))
      throw new InvalidInputError(
        `${legacyArchiveNote(manifest.kind, manifest.archive.key)} It is no longer verified either; pick a full or monthly backup. Nothing was changed.`,
      );
    return (verdict) => ({ ...manifest, verification: { ...manifest.verification, ...verdict } });
  }
  const { plan } = request;
  if ('database' in plan) {
    const facts = factsOf(databaseFactsSchema, request.facts, plan);
    // Only the log tables the database has: a restore lists none it lacks.
    const excluded = excludedTables(plan.kind).filter((_, i) => facts.excludedPresent?.includes(i) ?? true);
    return (verdict, contents) =>
      databaseManifestOf(plan, facts, excluded, verdict, verdict.state === 'verified' ? contents : undefined);
  }
  const facts = factsOf(filesFactsSchema, request.facts, plan);
  return (verdict) => filesManifestOf(plan, facts, verdict);
}

/** A manifest rebuilt from the record of its archive's creation, with a verdict (and what a verified dump holds). */
function rebuiltFrom(creation: ArchiveRecord): (verdict: Verdict, contents?: DumpContents) => Manifest {
  const made = creation.manifest;
  return (verdict, contents) =>
    isDatabaseManifest(made)
      ? {
          ...made,
          tables: contents?.tables ?? [],
          properties: contents?.properties ?? null,
          verification: verdict,
        }
      : { ...made, verification: verdict };
}

/**
 * Verifies an archive in S3 and writes its manifest with the verdict, verified
 * or failed. A new run's archive is first recorded (archive-record.ts: what the
 * host reported, the version S3 gave it, locked for its kind) and its manifest
 * written as unverified. A backup in the catalog is first compared with that
 * record: its manifest, and its current version. Either way the version the
 * record names is what is read, and judged against the record, so a replaced
 * archive or a rewritten manifest changes nothing of the verdict. Throws
 * ArchiveCorruptError, after recording the failure, when the archive is not
 * what the host reported; TamperedArchiveError when the archive or its manifest
 * was changed since its creation, naming the version to restore from, after
 * rebuilding a changed manifest from the record.
 */
export async function verifyArchive(
  s3: S3Client,
  catalog: Catalog,
  request: VerifyRequest,
  excludedTables: (kind: DumpKind) => TableName[],
  now: () => Date = () => new Date(),
): Promise<Manifest> {
  const claimed = await claimOf(catalog, request, excludedTables);
  const manifest = claimed({ state: 'unverified' });
  const location = `s3://${catalog.bucket}/${manifest.archive.key}`;
  let creation: ArchiveRecord;
  let tampering: string[] = [];
  if (!('manifestKey' in request)) {
    try {
      creation = await recordCreation(s3, catalog, manifest, now());
    } catch (error) {
      if (error instanceof ArchiveCorruptError)
        await catalog.writeManifest(
          claimed({ state: 'failed', checkedAt: now().toISOString(), detail: error.message }),
        );
      throw error;
    }
    // A new run's archive is in the catalog before it is read, as it was when the
    // host wrote its manifest: should this stage time out or S3 fail past the
    // retries, the archive is still listed (unverified), pruned and reported.
    await catalog.writeManifest(manifest);
  } else {
    creation = await readArchiveRecord(catalog, manifest.archive.key);
    tampering = await tamperProblems(s3, catalog.bucket, manifest, creation);
  }
  // A manifest that no longer matches the record is rebuilt from it: its tables
  // were counted from bytes it no longer describes.
  const record = recordProblems(manifest, creation).length === 0 ? claimed : rebuiltFrom(creation);
  const claim = record({ state: 'unverified' });
  const version = creation.versionId ? ` (version ${creation.versionId})` : '';
  const tampered = (outcome: string) =>
    new TamperedArchiveError(
      `The archive ${location} was changed after its backup: ${tampering.join('; ')}. ${outcome} Find out who changed it (CloudTrail's data events for the bucket name the principal) and treat that role or host as compromised.`,
    );
  let detail: string;
  let contents: DumpContents | undefined;
  try {
    const object = await s3
      .send(
        new GetObjectCommand({
          Bucket: catalog.bucket,
          Key: claim.archive.key,
          ...(creation.versionId ? { VersionId: creation.versionId } : {}),
        }),
      )
      .catch((error: unknown) => Promise.reject(classifyAwsError(error, `Reading ${location}${version}`)));
    let problems: string[];
    if (isDatabaseManifest(claim)) {
      const facts = await readArchive(object.Body as Readable, claim);
      problems = archiveProblems(facts, claim);
      if (typeof facts.properties !== 'string')
        contents = { tables: facts.tables, properties: facts.properties };
      const rows = facts.tables.reduce((sum, t) => sum + t.rows, 0);
      detail = `${facts.size} bytes${version}, sha256 matches, decompresses to ${facts.uncompressedSize} bytes of a complete PostgreSQL dump: ${counted(facts.tables.length, 'table')}, ${counted(rows, 'row')}`;
    } else {
      const facts = await readTarball(object.Body as Readable, claim);
      problems = tarballProblems(facts, claim);
      detail = `${facts.size} bytes${version}, sha256 matches, lists completely: ${counted(facts.entries, 'entry', 'entries')}`;
    }
    if (problems.length > 0) {
      throw new ArchiveCorruptError(
        `The archive ${location}${version} failed verification: ${problems.join('; ')}. It is marked failed in its manifest; do not restore from it: restore an older backup instead (its run id as "backup"; info lists them), or this backup's copy in the vault, which replication kept apart ("source": "vault").`,
      );
    }
  } catch (error) {
    if (error instanceof ArchiveCorruptError) {
      await catalog.writeManifest(
        record({ state: 'failed', checkedAt: now().toISOString(), detail: error.message }),
      );
      if (tampering.length > 0)
        throw tampered(
          `The version its backup wrote does not read back intact either (${error.message}): no version of it can be restored. Take a new backup of this kind now.`,
        );
    }
    throw error;
  }
  const verified = record({ state: 'verified', checkedAt: now().toISOString(), detail }, contents);
  await catalog.writeManifest(verified);
  if (tampering.length > 0) {
    throw tampered(
      `The archive to restore from is ${recordedVersionText(creation, catalog.bucket)}: it read back intact, and restores of this backup fetch it whatever the current version is${record === claimed ? '' : '; the manifest was rebuilt from the record of its creation'}.`,
    );
  }
  return verified;
}

import type { Plan } from '../backup/database-plan.ts';
import type { FilesPlan } from '../backup/files-plan.ts';
import type { Config } from '../core/config.ts';
import { hostPath, sha256Hex, type TableName } from '../core/identifiers.ts';
import type { Run } from '../core/run.ts';
import * as z from '../core/schema.ts';
import type { ArchiveRows } from './archive-rows.ts';
import type { DumpKind } from './keys.ts';
import type { DatabaseManifest, DatabaseProperties, FilesManifest, Manifest } from './manifest.ts';

/**
 * A run's manifest, built in one place from what the workflow planned and the
 * few facts only the host knows. The host reports those facts on its KB-RESULT
 * line and knows nothing of the manifest's schema; the rows per table come from
 * the archive itself, read by the stage that verifies it (never on the result
 * line or in the workflow's state, which must stay small whatever the database).
 */

const instant = z.iso.datetime({ offset: true });

/** What database-backup.sh reports about the archive it wrote. */
export const databaseFactsSchema = z.object({
  size: z.int().check(z.nonnegative()),
  sha256: sha256Hex,
  startedAt: instant,
  finishedAt: instant,
  /** When the dump's data is from: the server's clock as the dump's own session took its snapshot. */
  until: instant,
  serverVersion: z.string().check(z.regex(/^\d+$/)),
  /**
   * Which of the tables the plan left the rows out of (excludedTablesOf, by
   * index from 0) the database has; absent from a host script older than it.
   */
  excludedPresent: z.optional(z.array(z.int().check(z.nonnegative()))),
});

/** What files-backup.sh reports about the tarball it wrote. */
export const filesFactsSchema = z.object({
  size: z.int().check(z.nonnegative()),
  sha256: sha256Hex,
  startedAt: instant,
  finishedAt: instant,
  /** Entries in the tarball, as tar listed them while writing. */
  entries: z.int().check(z.nonnegative()),
  /** The plan's paths that were not on the host. */
  missing: z.array(hostPath),
});

export type DatabaseFacts = z.infer<typeof databaseFactsSchema>;
export type FilesFacts = z.infer<typeof filesFactsSchema>;

/**
 * The tables whose rows a dump of this kind leaves out: the daily full leaves out
 * the log tables (EXCLUDED_TABLES; their definitions stay), whose copies are
 * the physical backups and WAL for the point-in-time window and the monthly dump
 * for the long term; the monthly and safety dumps keep every table's rows.
 */
export function excludedTablesOf(config: Config, kind: DumpKind): TableName[] {
  return kind === 'full' ? config.EXCLUDED_TABLES : [];
}

/** Where the host keeps its copy of a run's archive: the one place the path is made. */
export function localPathOf(run: Pick<Run, 'localDir' | 'fileName'>): string {
  return `${run.localDir}/${run.fileName}`;
}

function archiveOf(run: Run, facts: { size: number; sha256: string }, format: Manifest['archive']['format']) {
  return {
    key: run.archiveKey,
    localPath: localPathOf(run),
    fileName: run.fileName,
    size: facts.size,
    sha256: facts.sha256,
    format,
    compression: run.codec,
  };
}

/** What VerifyArchive read in a dump: its tables' rows and its database's properties. */
export interface DumpContents extends ArchiveRows {
  properties: DatabaseProperties;
}

/**
 * A database run's manifest. `contents` is what the archive was read to hold;
 * without it (an archive that failed verification) no table is recorded.
 */
export function databaseManifestOf(
  plan: Plan,
  facts: DatabaseFacts,
  excludedTables: readonly TableName[],
  verification: Manifest['verification'],
  contents?: DumpContents,
): DatabaseManifest {
  return {
    version: 2,
    kind: plan.kind,
    target: plan.target,
    database: plan.database,
    runId: plan.runId,
    executionId: plan.executionId,
    archive: archiveOf(plan, facts, 'plain'),
    window: { since: null, until: facts.until },
    startedAt: facts.startedAt,
    finishedAt: facts.finishedAt,
    serverVersion: facts.serverVersion,
    excludedTables: [...excludedTables],
    tables: contents?.tables ?? [],
    properties: contents?.properties ?? null,
    verification,
  };
}

/** A files run's manifest: the tarball holds the data as of the moment tar started. */
export function filesManifestOf(
  plan: FilesPlan,
  facts: FilesFacts,
  verification: Manifest['verification'],
): FilesManifest {
  return {
    version: 2,
    kind: plan.kind,
    target: plan.target,
    runId: plan.runId,
    executionId: plan.executionId,
    archive: archiveOf(plan, facts, 'tar'),
    window: { since: null, until: facts.startedAt },
    startedAt: facts.startedAt,
    finishedAt: facts.finishedAt,
    paths: plan.paths,
    missing: facts.missing,
    excludes: plan.excludes,
    entries: facts.entries,
    verification,
  };
}

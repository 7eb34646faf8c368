import type { Plan } from '../backup/database-plan.ts';
import type { FilesPlan } from '../backup/files-plan.ts';
import type { Config } from '../core/config.ts';
import { hostPath, sha256Hex } from '../core/identifiers.ts';
import type { Run } from '../core/run.ts';
import * as z from '../core/schema.ts';
import type { ArchiveRows } from './archive-rows.ts';
import type { DatabaseKind } from './keys.ts';
import type { DatabaseManifest, FilesManifest, Manifest } from './manifest.ts';

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
  /** The end of the archive's window, read by the dump's own session just before its snapshot. */
  until: instant,
  serverVersion: z.string().check(z.regex(/^\d+$/)),
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

/** The tables whose rows a run of this kind leaves out (a log backup takes only those); a safety dump keeps everything. */
export function excludedTablesOf(config: Config, kind: DatabaseKind): string[] {
  return kind === 'safety' ? [] : config.EXCLUDED_TABLES;
}

/** Where the host keeps its copy of a run's archive: the one place the path is made. */
export function localPathOf(run: Pick<Run, 'localDir' | 'fileName'>): string {
  return `${run.localDir}/${run.fileName}`;
}

/** The column whose value puts a row in an incremental or log archive's window; a full dump has none. */
export const WINDOW_COLUMN: Record<DatabaseKind, string | null> = {
  full: null,
  safety: null,
  incremental: 'updated_at',
  'transaction-logs': 'created_at',
};

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

/**
 * A database run's manifest. `contents` is what the archive was read to hold;
 * without it (an archive that failed verification) no table is recorded.
 */
export function databaseManifestOf(
  plan: Plan,
  facts: DatabaseFacts,
  excludedTables: readonly string[],
  verification: Manifest['verification'],
  contents?: ArchiveRows,
): DatabaseManifest {
  return {
    version: 1,
    kind: plan.kind,
    target: plan.target,
    database: plan.database,
    runId: plan.runId,
    executionId: plan.executionId,
    archive: archiveOf(plan, facts, plan.kind === 'full' || plan.kind === 'safety' ? 'plain' : 'changes'),
    window: { since: plan.since, until: facts.until },
    startedAt: facts.startedAt,
    finishedAt: facts.finishedAt,
    serverVersion: facts.serverVersion,
    excludedTables: [...excludedTables],
    tables: contents?.rows ?? {},
    capture: contents?.capture
      ? {
          note: `Rows are chosen by ${WINDOW_COLUMN[plan.kind]} in the window. Deleted rows are not captured. Tables in wholeTables have no such column and are copied whole; tables in notCaptured are not in this archive.`,
          ...contents.capture,
        }
      : null,
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
    version: 1,
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

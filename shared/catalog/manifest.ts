import { CODEC_NAMES } from '../core/codecs.ts';
import {
  fileName,
  hostPath,
  objectKey,
  runIdentifier,
  sha256Hex,
  sqlIdentifier,
  type TableName,
  tableName,
  targetName,
} from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { DATABASE_KINDS, FILE_KINDS } from './keys.ts';

/**
 * The manifest beside every archive. VerifyArchive writes it, verified or
 * failed, from the run's plan, the facts the host reported and what it read in
 * the archive (manifest-builder.ts); the restore test adds its result. Manifests
 * are the catalog: freshness checks, pruning, restore selection and
 * point-in-time plans read them, never object listings or file dates.
 * (`unverified` is kept for manifests written before VerifyArchive wrote them.)
 */
const verification = z.object({
  state: z.enum(['unverified', 'verified', 'failed']),
  checkedAt: z.optional(z.iso.datetime({ offset: true })),
  detail: z.optional(z.string()),
  restoreTest: z.optional(
    z.object({
      state: z.enum(['passed', 'failed']),
      /** When the test's host command was sent: with `checkedAt`, the test's own duration (absent in older manifests). */
      startedAt: z.optional(z.iso.datetime({ offset: true })),
      checkedAt: z.iso.datetime({ offset: true }),
      detail: z.string(),
    }),
  ),
});

/** A count of rows or tarball entries. */
const count = z.int().check(z.nonnegative());

const archive = z.object({
  key: objectKey,
  localPath: hostPath,
  fileName,
  size: count,
  sha256: sha256Hex,
  /**
   * `plain`: pg_dump's SQL; `tar`: files, paths relative to /; `changes`: a
   * legacy row-window archive (COPY blocks of rows chosen by a time window, each
   * wrapped in an upsert), no longer made, read or restored (keys.ts's
   * LEGACY_DUMP_KINDS).
   */
  format: z.enum(['plain', 'changes', 'tar']),
  compression: z.enum(CODEC_NAMES),
});

/** What every manifest has, whatever its family. */
const base = z.object({
  /** 2: tables are schema and name pairs (1 joined them as `schema.table`); a dump has its database's properties. */
  version: z.literal(2),
  target: targetName,
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  archive,
  /**
   * The data the archive holds: as of `until` (for a database, the server's clock
   * as the dump took its snapshot). `since` is null but for legacy row-window
   * archives, whose rows were those stamped in [since, until).
   */
  window: z.object({
    since: z.nullable(z.iso.datetime({ offset: true })),
    until: z.iso.datetime({ offset: true }),
  }),
  startedAt: z.iso.datetime({ offset: true }),
  finishedAt: z.iso.datetime({ offset: true }),
  verification,
});

/**
 * The database itself, beyond its tables, as database-backup.sh read it in the
 * dump's snapshot: what a restore needs to make it again (the archive's first
 * line; host/restore-archive.sh applies it). Roles carry their attributes,
 * never a password.
 */
export const databasePropertiesSchema = z.object({
  encoding: z.string(),
  collate: z.string(),
  ctype: z.string(),
  localeProvider: z.enum(['libc', 'icu']),
  icuLocale: z.nullable(z.string()),
  owner: z.string(),
  /** `name=value` as PostgreSQL keeps it; `role` null for ALTER DATABASE … SET, a role's name for ALTER ROLE … IN DATABASE … SET. */
  settings: z.array(z.object({ role: z.nullable(z.string()), setting: z.string() })),
  /** The roles its objects need: owners (`owns`), grantees, the roles of its settings; `memberOf` among them. */
  roles: z.array(
    z.object({
      name: z.string(),
      owns: z.boolean(),
      superuser: z.boolean(),
      login: z.boolean(),
      inherit: z.boolean(),
      createdb: z.boolean(),
      createrole: z.boolean(),
      replication: z.boolean(),
      bypassrls: z.boolean(),
      memberOf: z.array(z.string()),
    }),
  ),
});

export type DatabaseProperties = z.infer<typeof databasePropertiesSchema>;

export const databaseManifestSchema = z.extend(base, {
  kind: z.enum(DATABASE_KINDS),
  database: sqlIdentifier,
  serverVersion: z.string().check(z.regex(/^\d+$/)),
  /** The tables whose rows the dump left out (their definitions are in it). */
  excludedTables: z.array(tableName),
  /**
   * Every table whose rows the archive holds, in its order, with its exact row
   * count from its COPY block (empty for an archive that failed verification).
   */
  tables: z.array(z.extend(tableName, { rows: count })),
  /** The database's encoding, locale, owner, settings and roles (null for an archive that failed verification). */
  properties: z.nullable(databasePropertiesSchema),
});

export const filesManifestSchema = z.extend(base, {
  kind: z.enum(FILE_KINDS),
  /** The paths asked for; `missing` were not there, and are not in the tarball. */
  paths: z.array(hostPath),
  missing: z.array(hostPath),
  excludes: z.array(z.string()),
  /** Entries in the tarball (files, directories, links), as tar listed them while writing. */
  entries: count,
});

export const manifestSchema = z.union([databaseManifestSchema, filesManifestSchema]);

export type DatabaseManifest = z.infer<typeof databaseManifestSchema>;
export type FilesManifest = z.infer<typeof filesManifestSchema>;
export type Manifest = DatabaseManifest | FilesManifest;

export function isDatabaseManifest(manifest: Manifest): manifest is DatabaseManifest {
  return 'database' in manifest;
}

/** A table whose row count after a restore must lie in [min, max]; equal bounds ask for an exact count. */
export interface RowRange extends TableName {
  min: number;
  max: number;
}

/** The row counts a restore of this dump must end with: each table's, exactly. */
export function exactRows(manifest: DatabaseManifest): RowRange[] {
  return manifest.tables.map(({ schema, name, rows }) => ({ schema, name, min: rows, max: rows }));
}

/** A backup whose archive verified but did not restore in its restore test (or a drill's). */
export function restoreTestFailed(manifest: Manifest): boolean {
  return manifest.verification.restoreTest?.state === 'failed';
}

/**
 * Whether a backup may be picked without being named (a `latest` restore, a
 * drill, the freshness of its kind, the newest kept by pruning): verified, and
 * not failed its restore test. One whose restore test never ran (its run ended
 * before it) is usable: a restore checks every table's rows in its staging
 * database before it replaces anything, so an untested dump cannot silently
 * replace a database, while skipping it would silently give older data; the
 * daily verification and the restore's plan say that it is untested.
 */
export function isUsable(manifest: Manifest): boolean {
  return manifest.verification.state === 'verified' && !restoreTestFailed(manifest);
}

/**
 * An instant in microseconds. Windows come from PostgreSQL with microseconds,
 * a target time from a person with any precision and zone: compared as text
 * they would disagree, so every comparison goes through this.
 */
export function micros(iso: string): number {
  const fraction = /\.(\d+)/.exec(iso)?.[1] ?? '';
  return Date.parse(iso.replace(/\.\d+/, '')) * 1000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

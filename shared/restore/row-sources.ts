import type { DatabaseManifest } from '../catalog/manifest.ts';
import { qualifiedName, type TableName, tableName } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { counted, namedAndMore } from '../core/words.ts';

/**
 * Where each table's rows come from in a restore: the backup (the dump's rows),
 * the database it replaces (the log tables a daily full leaves out, carried over
 * by host/carry-log-rows.sh while the application is stopped), or nowhere (those
 * log tables, restored into a new database: empty, and where to find them is
 * said). The dry run lists them, the summary with the counts carried.
 *
 * The manifest's table list and its excluded tables are read here only
 * (`dumpTablesOf`, `logTablesOf`), so that their shape has one reader.
 */

export const ROW_SOURCES = ['backup', 'replaced database', 'none'] as const;

export const rowSourceSchema = z.object({
  /** As SQL writes it (identifiers.ts qualifiedName): `public.audit_logs`. */
  table: z.string(),
  from: z.enum(ROW_SOURCES),
  /** Rows restored from the backup; null when they are counted as they are carried over. */
  rows: z.nullable(z.int()),
  note: z.optional(z.string()),
});

export type RowSource = z.infer<typeof rowSourceSchema>;

/** Past this many tables, the backup's are summed up, not listed: a state stays small at 10,000 tables. */
export const LISTED_TABLES = 50;

export const rowSourcesSchema = z.object({
  /** The log tables, then the backup's tables up to LISTED_TABLES. */
  listed: z.array(rowSourceSchema),
  /** The backup's tables not listed, and their rows. */
  unlisted: z.object({ tables: z.int(), rows: z.int() }),
  /** Over the database: what becomes of its tables the backup lacks, in words (the swap counts them). */
  notInBackup: z.optional(z.string()),
});

export type RowSources = z.infer<typeof rowSourcesSchema>;

/** The tables the dump holds the rows of, with the rows counted in its archive. */
export function dumpTablesOf(manifest: DatabaseManifest): (TableName & { rows: number })[] {
  return manifest.tables;
}

/** The log tables whose rows the dump left out (EXCLUDED_TABLES of its day), by schema and name. */
export function logTablesOf(manifest: DatabaseManifest): TableName[] {
  return manifest.excludedTables.map(({ schema, name }) => ({ schema, name }));
}

const sameTable = (a: TableName) => (b: TableName) => a.schema === b.schema && a.name === b.name;

/**
 * The row sources of a restore of `manifest` into `targetDatabase`: over the
 * database the backup is of (`overProduction`), the log tables come from it;
 * into a new database they are empty, and `logCopy` says where their rows are.
 */
export function rowSourcesOf(
  manifest: DatabaseManifest,
  options: { overProduction: boolean; logCopy: string; replacedDatabase: string },
): RowSources {
  const logTables = logTablesOf(manifest);
  const backup = dumpTablesOf(manifest).filter((t) => !logTables.some(sameTable(t)));
  const log: RowSource[] = logTables.map(qualifiedName).map((table) =>
    options.overProduction
      ? {
          table,
          from: 'replaced database',
          rows: null,
          note: `the rows ${manifest.database} holds when the application is stopped, copied into the restore before the swap (the daily full leaves them out)`,
        }
      : {
          table,
          from: 'none',
          rows: 0,
          note: `empty (0 rows): the daily full leaves its rows out; they are in ${manifest.database} itself, and in ${options.logCopy}`,
        },
  );
  const listed = backup.slice(0, LISTED_TABLES);
  const rest = backup.slice(LISTED_TABLES);
  return {
    listed: [
      ...log,
      ...listed.map((t) => ({ table: qualifiedName(t), from: 'backup' as const, rows: t.rows })),
    ],
    unlisted: { tables: rest.length, rows: rest.reduce((n, t) => n + t.rows, 0) },
    ...(options.overProduction
      ? { notInBackup: notInRestoreNote(manifest.database, options.replacedDatabase, 'the backup') }
      : {}),
  };
}

/**
 * What a plan over `database` says of its tables the restore lacks: a plan is
 * made without reading the host, so it cannot name them; the swap does.
 */
export function notInRestoreNote(database: string, replacedDatabase: string, restored: string): string {
  return `tables of ${database} that ${restored} lacks (created since) are not restored: their rows stay only in ${replacedDatabase} and the safety dump. The plan does not read the host, so it cannot name them; the swap lists them with their rows, and the summary warns of them.`;
}

/** What host/database-swap.sh reports when it replaces a database: its tables the restore lacks. */
export const swapFactsSchema = z.object({
  /** [schema, name, rows], at most host/database-swap.sh ONLY_LISTED of them. */
  onlyInReplaced: z.array(z.tuple([z.string(), z.string(), z.int()])),
  onlyInReplacedCount: z.int(),
  onlyInReplacedRows: z.int(),
});

export type SwapFacts = z.infer<typeof swapFactsSchema>;

/** The summary's warning of the replaced database's tables the restore lacks; none when it has them all. */
export function notRestoredWarnings(
  facts: SwapFacts | undefined,
  replacedDatabase: string,
  safetyDump: string | undefined,
): string[] {
  if (!facts || facts.onlyInReplacedCount === 0) return [];
  const named = facts.onlyInReplaced.map(
    ([schema, name, rows]) => `${qualifiedName({ schema, name })} (${counted(rows, 'row')})`,
  );
  return [
    `Not in the restore, though the replaced database had them (${counted(facts.onlyInReplacedCount, 'table')}, ${counted(facts.onlyInReplacedRows, 'row')}): ${namedAndMore(named, facts.onlyInReplacedCount, 'table')}. Their rows are only in ${replacedDatabase} and the safety dump ${safetyDump ?? ''}; copy them back from there if they are still needed.`,
  ];
}

/** What host/carry-log-rows.sh reports of each table. */
export const carriedSchema = z.object({
  tables: z.array(
    z.object({
      ...tableName.shape,
      present: z.boolean(),
      copied: z.optional(z.int()),
      rows: z.optional(z.int()),
      nulled: z.optional(z.int()),
      leftOut: z.optional(z.int()),
    }),
  ),
});

export type Carried = z.infer<typeof carriedSchema>;

/**
 * The row sources once the restore is done: the log tables' rows as carried
 * over (`carried`, when they were), each line for people.
 */
export function describeRowSources(
  sources: RowSources,
  carried: Carried | undefined,
  replacedDatabase: string,
): string[] {
  const carriedOf = new Map(carried?.tables.map((t) => [qualifiedName(t), t]));
  const lines = sources.listed.map((s) => {
    if (s.from === 'backup') return `${s.table}: ${counted(s.rows ?? 0, 'row')} from the backup`;
    if (s.from === 'none') return `${s.table}: ${s.note}`;
    const c = carriedOf.get(s.table);
    if (!c?.present) return `${s.table}: not in the database, nothing carried over`;
    const changed = [
      ...(c.nulled
        ? [
            `${c.nulled} referring to rows the backup does not have, their reference set to NULL (ON DELETE SET NULL)`,
          ]
        : []),
      ...(c.leftOut
        ? [
            `${c.leftOut} left out, referring to rows the backup does not have; they stay in ${replacedDatabase}`,
          ]
        : []),
    ];
    return `${s.table}: ${counted(c.rows ?? 0, 'row')} carried over from the replaced database${changed.length > 0 ? ` (${changed.join('; ')})` : ''}`;
  });
  if (sources.unlisted.tables > 0)
    lines.push(
      `${counted(sources.unlisted.tables, 'more table')}: ${counted(sources.unlisted.rows, 'row')} from the backup`,
    );
  return lines;
}

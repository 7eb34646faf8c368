import * as z from './schema.ts';

/**
 * Names that end up in shell scripts, S3 keys and SQL. They are checked here
 * against strict patterns before anything else sees them, and quoted again where
 * they are used: the pattern keeps keys and logs readable, the quoting keeps the
 * shell safe whatever happens to the pattern.
 */

/** PostgreSQL database or table name: lower case, unquoted-identifier style, at most 63 bytes. */
export const sqlIdentifier = z
  .string()
  .check(
    z.regex(
      /^[a-z_][a-z0-9_]{0,62}$/,
      'must be a lower-case PostgreSQL identifier: letters, digits and _, starting with a letter or _, at most 63 characters',
    ),
  );

/** A target's name in config: short, lower case, usable in S3 keys. */
export const targetName = z
  .string()
  .check(
    z.regex(/^[a-z][a-z0-9-]{0,39}$/, 'must be lower case letters, digits and -, starting with a letter'),
  );

/** An absolute path on the host without `..`, quotes or shell metacharacters. */
export const hostPath = z.string().check(
  z.regex(/^\/[A-Za-z0-9._/-]*$/, 'must be an absolute path of letters, digits, ., _, - and /'),
  z.refine((p) => !p.split('/').includes('..'), 'must not contain ..'),
);

/**
 * What a files backup leaves out of its tarball: a file or directory name
 * wherever it occurs under the archived paths (`node_modules`; `*` for any run
 * of characters, as tar matches it: `.env*`), or, ending in `/`, a directory
 * directly under each archived path only (`ssl/`). host/common.sh's
 * tar_excludes renders both; no `/` inside, so nothing reaches above a path.
 */
export const excludeName = z
  .string()
  .check(
    z.regex(
      /^(?=[^/]*[A-Za-z0-9])[A-Za-z0-9._*-]+\/?$/,
      'must be a file or directory name (* for any characters, a trailing / for a directory directly under each path)',
    ),
  );

/** An S3 object key made by this project. */
export const objectKey = z
  .string()
  .check(z.regex(/^[a-z0-9][A-Za-z0-9._/-]*$/, 'is not a key this project makes'));

/**
 * A version of an S3 object, as S3 names it (URL-safe text, at most 1,024
 * characters): it travels to the host in a command, so nothing else passes.
 */
export const objectVersionId = z
  .string()
  .check(z.regex(/^[A-Za-z0-9._+/=-]{1,1024}$/, 'is not an S3 version id'));

/** A file name in the host's backup directory. */
export const fileName = z
  .string()
  .check(z.regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a plain file name'));

export const sha256Hex = z.string().check(z.regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits'));

/** A run's id (keys.ts runId): its start to the second, then 8 hex digits of its execution. */
export const runIdentifier = z
  .string()
  .check(z.regex(/^\d{8}T\d{6}Z_[0-9a-f]{8}$/, 'is not a run id (YYYYMMDDTHHMMSSZ_xxxxxxxx)'));

/**
 * A pgBackRest backup label: a full's start (`20261130-020000F`), an incremental's
 * or differential's full and its own start (`20261130-020000F_20261130-080000I`).
 */
export const pgbackrestLabel = z
  .string()
  .check(z.regex(/^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$/, 'is not a pgBackRest backup label'));

/** A WAL segment's file name: timeline, log and segment, 8 hex digits each. */
export const walSegment = z
  .string()
  .check(z.regex(/^[0-9A-F]{24}$/, 'is not a WAL segment name (24 upper-case hex digits)'));

/** A PostgreSQL LSN as pg_lsn prints it (`0/4000028`). */
export const lsn = z.string().check(z.regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/, 'is not an LSN'));

/**
 * A table named as PostgreSQL knows it: its schema and its own name, kept apart
 * everywhere (manifests, counts, configuration), never joined and split again on
 * `.`: either part may itself hold a dot, a quote, capitals or spaces.
 */
export interface TableName {
  schema: string;
  name: string;
}

/** A part of a table's name: any text PostgreSQL accepts (1 to 63 bytes). */
const namePart = z.string().check(z.minLength(1));
export const tableName = z.object({ schema: namePart, name: namePart });

/** A name part that SQL may write bare: anything else is double-quoted. */
const BARE = /^[a-z_][a-z0-9_]*$/;

const quoted = (part: string) => (BARE.test(part) ? part : `"${part.replaceAll('"', '""')}"`);

/**
 * A table's name as SQL writes it: `public.audit_logs`, `"Odd Schema"."say ""hi"""`.
 * It is also EXCLUDED_TABLES' syntax, so what a message shows can be pasted there.
 */
export function qualifiedName(table: TableName): string {
  return `${quoted(table.schema)}.${quoted(table.name)}`;
}

/**
 * The parts of one schema-qualified name as SQL writes it (`schema.name`, each
 * part bare lower case or double-quoted with `""` for a quote); a string saying
 * what is wrong when it is not one.
 */
function parseQualifiedName(text: string): TableName | string {
  const parts: string[] = [];
  let i = 0;
  while (i <= text.length) {
    let part = '';
    if (text[i] === '"') {
      let closed = false;
      for (i += 1; i < text.length; i += 1) {
        if (text[i] !== '"') part += text[i];
        else if (text[i + 1] === '"') {
          part += '"';
          i += 1;
        } else {
          closed = true;
          i += 1;
          break;
        }
      }
      if (!closed) return `${text}: a double quote is not closed`;
      if (part === '') return `${text}: a quoted name is empty`;
    } else {
      part = /^[^."]*/.exec(text.slice(i))?.[0] ?? '';
      i += part.length;
      if (!BARE.test(part))
        return `${text}: "${part}" is not a lower-case identifier; double-quote a name that has capitals, spaces or other characters (as "${part}")`;
    }
    if (Buffer.byteLength(part) > 63) return `${text}: "${part}" is longer than PostgreSQL's 63 bytes`;
    // A newline would split the list of patterns the host reads one a line.
    if ([...part].some((c) => c < ' ')) return `${text}: a name holds a control character`;
    parts.push(part);
    if (i === text.length) break;
    if (text[i] !== '.') return `${text}: expected "." or the end after ${quoted(part)}`;
    i += 1;
  }
  const [schema, name] = parts;
  if (parts.length === 1)
    return `${text} names no schema: qualify it, e.g. public.${quoted(parts[0] as string)}`;
  if (parts.length !== 2 || schema === undefined || name === undefined)
    return `${text}: a table is named by two parts, schema and name; double-quote a part that holds a dot (public."a.b")`;
  return { schema, name };
}

/**
 * A comma-separated list of schema-qualified table names (EXCLUDED_TABLES):
 * `public.audit_logs,"Billing"."Audit.Log"`. Commas inside quotes belong to the
 * name; empty entries are skipped. Each entry is its table, or what is wrong with it.
 */
export function parseTableNames(text: string): (TableName | string)[] {
  const entries: string[] = [];
  let entry = '';
  let inQuotes = false;
  for (const c of text) {
    if (c === '"') inQuotes = !inQuotes;
    if (c === ',' && !inQuotes) {
      entries.push(entry);
      entry = '';
    } else entry += c;
  }
  entries.push(entry);
  return entries
    .map((e) => e.trim())
    .filter(Boolean)
    .map(parseQualifiedName);
}

/**
 * A database's whole content, for fidelity checks that compare a restore or a
 * recovery with a reference taken at the backup or target time: every table's
 * rows (FROM ONLY: a parent's own rows), every sequence's value, every large
 * object's bytes, and the database's encoding and ALTER DATABASE … SET settings.
 */

/** Each table's count and checksum, each sequence's value, its large objects, encoding and settings. */
export interface Contents {
  /** JSON [schema, table] → `count:md5` of its rows as text, sorted. */
  tables: Record<string, string>;
  /** JSON [schema, sequence] → its last_value, or `not called`. */
  sequences: Record<string, string>;
  /** Count and md5 of every large object's oid and bytes. */
  largeObjects: string;
  /** The database's encoding and its ALTER DATABASE settings. */
  database: string;
}

/** A query's text output, from a database (psql -A -t, trimmed). */
export type Query = (database: string, query: string) => string;

export const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Every table's rows (FROM ONLY) as count and md5 of the sorted rows; every sequence's value. Keys are JSON pairs. */
export function contents(run: Query, database: string): Contents {
  const tables = run(
    database,
    `SELECT json_build_array(n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'`,
  )
    .split('\n')
    .filter(Boolean);
  const checksum = (pair: string) => {
    const [schema, table] = JSON.parse(pair) as [string, string];
    return run(
      database,
      `SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM ONLY ${ident(schema)}.${ident(table)} t`,
    );
  };
  const sequences = run(
    database,
    `SELECT json_build_array(schemaname, sequencename) || ' ' || coalesce(last_value::text, 'not called') FROM pg_sequences`,
  )
    .split('\n')
    .filter(Boolean);
  const largeObjects = run(
    database,
    `SELECT count(*) || ':' || coalesce(md5(string_agg(oid::text || ':' || encode(lo_get(oid), 'hex'), '|' ORDER BY oid)), '')
     FROM pg_largeobject_metadata`,
  );
  const settings = run(
    database,
    `SELECT pg_encoding_to_char(d.encoding) || ' ' || d.datcollate || ' ' || d.datctype || ' ' || coalesce(array_to_string(s.setconfig, ','), '')
     FROM pg_database d LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid AND s.setrole = 0
     WHERE d.datname = current_database()`,
  );
  return {
    tables: Object.fromEntries(tables.map((pair) => [JSON.stringify(JSON.parse(pair)), checksum(pair)])),
    sequences: Object.fromEntries(
      sequences.map((l) => [l.slice(0, l.lastIndexOf(' ')), l.slice(l.lastIndexOf(' ') + 1)]),
    ),
    largeObjects,
    database: settings,
  };
}

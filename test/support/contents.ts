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
  /** JSON [schema, sequence] → `last_value is_called` (`50 false`: the next value is 50). */
  sequences: Record<string, string>;
  /** Count and md5 of every large object's oid and bytes. */
  largeObjects: string;
  /** The database's encoding and its ALTER DATABASE settings. */
  database: string;
}

/** A sequence's last_value, from its `last_value is_called` in Contents.sequences. */
export const lastValue = (sequence: string | undefined): number => Number(sequence?.split(' ')[0]);

/** A query's text output, from a database (psql -A -t, trimmed). */
export type Query = (database: string, query: string) => string;

export const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Every table's (and materialized view's) own rows (FROM ONLY) as `count:md5`
 * of its rows as text, sorted; keys are JSON [schema, table]. A query reads a
 * few hundred tables: each holds its tables' and indexes' locks to its end, and
 * a database of thousands would run out of lock slots.
 */
export function tableContents(run: Query, database: string): Record<string, string> {
  const oids = run(
    database,
    `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
     ORDER BY c.oid`,
  )
    .split('\n')
    .filter(Boolean);
  const tables: Record<string, string> = {};
  for (let at = 0; at < oids.length; at += 500) {
    const json = run(
      database,
      `SELECT json_object_agg(json_build_array(n.nspname, c.relname)::text,
         (xpath('/row/c/text()', query_to_xml(format(
           'SELECT count(*) || '':'' || coalesce(md5(string_agg(t::text, ''|'' ORDER BY t::text)), '''') AS c FROM ONLY %I.%I t',
           n.nspname, c.relname), false, true, '')))[1]::text)
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.oid IN (${oids.slice(at, at + 500).join(',')})`,
    );
    for (const [pair, sum] of Object.entries(JSON.parse(json) as Record<string, string>))
      tables[JSON.stringify(JSON.parse(pair))] = sum;
  }
  return tables;
}

/** Every table's rows (FROM ONLY) as count and md5 of the sorted rows; every sequence's value. Keys are JSON pairs. */
export function contents(run: Query, database: string): Contents {
  // Read from each sequence itself: pg_sequences shows no value when is_called is
  // false, so setval(s, 50, false) and a sequence never used would look alike.
  const sequences = run(
    database,
    `SELECT json_build_array(n.nspname, c.relname, (xpath('/row/v/text()', query_to_xml(format(
       'SELECT last_value || '' '' || is_called AS v FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'`,
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
    tables: tableContents(run, database),
    sequences: Object.fromEntries(
      sequences.map((l) => {
        const [schema, name, value] = JSON.parse(l) as string[];
        return [JSON.stringify([schema, name]), value ?? ''];
      }),
    ),
    largeObjects,
    database: settings,
  };
}

/**
 * What a database is beyond its tables: its encoding, locale (provider, collation,
 * character classes, ICU locale), owner, and its ALTER DATABASE … SET and
 * ALTER ROLE … IN DATABASE … SET settings (`role:` before each role's), sorted.
 */
export function databaseProperties(run: Query, database: string): Record<string, unknown> {
  return JSON.parse(
    run(
      database,
      `SELECT json_build_object(
         'encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate, 'ctype', d.datctype,
         'provider', d.datlocprovider, 'icuLocale', d.daticulocale, 'owner', pg_get_userbyid(d.datdba),
         'settings', (SELECT coalesce(json_agg(x.setting ORDER BY x.setting), '[]')
                      FROM (SELECT coalesce(r.rolname || ':', '') || c AS setting
                            FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c LEFT JOIN pg_roles r ON r.oid = s.setrole
                            WHERE s.setdatabase = d.oid) x))
       FROM pg_database d WHERE d.datname = current_database()`,
    ),
  ) as Record<string, unknown>;
}

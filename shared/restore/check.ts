import pg from 'pg';
import {
  type DatabaseManifest,
  type DatabaseProperties,
  exactRows,
  type RowRange,
} from '../catalog/manifest.ts';
import { RestoreMismatchError, TransientError } from '../core/errors.ts';
import { qualifiedName, type TableName } from '../core/identifiers.ts';
import { type SecretProvider, secureString } from '../core/secrets.ts';
import { counted } from '../core/words.ts';

/** Connection to the database server (without a database name), from a secret store. */
export type DatabaseUrlProvider = SecretProvider;

/** The restore-check database URL from its SSM SecureString. */
export function ssmDatabaseUrl(parameter: string): DatabaseUrlProvider {
  return secureString(parameter, 'the restore-check database URL');
}

function connectTo(serverUrl: string, database: string): pg.Client {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return new pg.Client({
    connectionString: url.toString(),
    connectionTimeoutMillis: 10_000,
    application_name: 'kennel-backup',
  });
}

async function connected(client: pg.Client, database: string): Promise<pg.Client> {
  try {
    await client.connect();
    return client;
  } catch (error) {
    const code = (error as { code?: string }).code;
    // 3D000: the database does not exist; anything at the socket level is transient.
    if (code === '3D000')
      throw new RestoreMismatchError(`The database ${database} does not exist: the restore did not run.`);
    throw new TransientError(
      `Could not connect to PostgreSQL for ${database} (${(error as Error).message}); check the network path from this function to the database server.`,
      {
        cause: error,
      },
    );
  }
}

/** The key of a table in the maps below: its schema and name as one JSON text, which no two tables share. */
const keyOf = (table: TableName) => JSON.stringify([table.schema, table.name]);

/**
 * Exact row counts of `tables`, by keyOf; a table that is missing has none. A
 * table's own rows only (ONLY): its COPY block holds no inheritance child's
 * rows. `owned` are the keys of tables an extension owns. Each count is a
 * statement of its own, so this session never holds more than one table's lock.
 */
async function countRows(
  client: pg.Client,
  tables: readonly TableName[],
): Promise<{ counts: Map<string, number>; owned: Set<string> }> {
  const counts = new Map<string, number>();
  const owned = new Set<string>();
  const present = await client.query<{ schema: string; name: string; owned: boolean }>(
    `SELECT n.nspname AS schema, c.relname AS name,
            EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') AS owned
     FROM unnest($1::text[], $2::text[]) AS wanted (schema, name)
     JOIN pg_namespace n ON n.nspname = wanted.schema
     JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.name
     WHERE c.relkind = 'r'`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  for (const row of present.rows) {
    const ident = `${client.escapeIdentifier(row.schema)}.${client.escapeIdentifier(row.name)}`;
    const result = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ONLY ${ident}`);
    counts.set(keyOf(row), Number(result.rows[0]?.n));
    if (row.owned) owned.add(keyOf(row));
  }
  return { counts, owned };
}

export interface RestoreCheck {
  tables: number;
  rows: number;
}

/** Problems named in a message: the first of them and how many more, so that a Cause (32,768 characters at most in Step Functions) stays whole and the state small whatever the table count. */
export function someOf(problems: readonly string[], shown = 20): string {
  const more = problems.length - shown;
  return `${problems.slice(0, shown).join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}

/**
 * The tables of `expected` that are missing, or whose row count lies outside its
 * range. A table an extension owns needs only its minimum: CREATE EXTENSION puts
 * its own rows in it before the archive's are loaded (pg_dump keeps only the rows
 * a configuration table's filter lets through, e.g. PostGIS's spatial_ref_sys).
 */
export async function rowProblems(
  serverUrl: string,
  database: string,
  expected: readonly RowRange[],
): Promise<{ problems: string[]; check: RestoreCheck }> {
  const client = await connected(connectTo(serverUrl, database), database);
  let found: Awaited<ReturnType<typeof countRows>>;
  try {
    found = await countRows(client, expected);
  } finally {
    await client.end();
  }
  const { counts, owned } = found;
  const problems = expected.flatMap((table) => {
    const { min, max } = table;
    const actual = counts.get(keyOf(table));
    if (actual === undefined) return [`${qualifiedName(table)} is missing`];
    if (actual >= min && (actual <= max || owned.has(keyOf(table)))) return [];
    return [
      `${qualifiedName(table)} has ${counted(actual, 'row')}, expected ${min === max ? min : `${min} to ${max}`}`,
    ];
  });
  const rows = [...counts.values()].reduce((a, b) => a + b, 0);
  return { problems, check: { tables: counts.size, rows } };
}

/**
 * Where a restored database differs from its backup's properties: encoding,
 * locale, owner, settings (named, never with their values: one may be a secret).
 * Read as database-backup.sh reads them, in the same order.
 */
export async function propertyProblems(
  serverUrl: string,
  database: string,
  expected: DatabaseProperties,
): Promise<string[]> {
  const client = await connected(connectTo(serverUrl, database), database);
  let actual: Omit<DatabaseProperties, 'roles'> | undefined;
  try {
    // As bytes, UTF-8 (an SQL_ASCII database's as they are, which this UTF-8
    // client could not be sent as text): read as VerifyArchive read the backup's.
    const result = await client.query<{ properties: Buffer }>(
      `SELECT convert_to(json_build_object(
                'encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate, 'ctype', d.datctype,
                'localeProvider', CASE to_jsonb(d)->>'datlocprovider' WHEN 'i' THEN 'icu' ELSE 'libc' END,
                'icuLocale', to_jsonb(d)->>'daticulocale', 'owner', pg_get_userbyid(d.datdba),
                'settings', (SELECT coalesce(json_agg(json_build_object('role', r.rolname, 'setting', c) ORDER BY r.rolname NULLS FIRST, c), '[]')
                             FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c LEFT JOIN pg_roles r ON r.oid = s.setrole
                             WHERE s.setdatabase = d.oid))::text,
              CASE current_setting('server_encoding') WHEN 'SQL_ASCII' THEN 'SQL_ASCII' ELSE 'UTF8' END) AS properties
       FROM pg_database d WHERE d.datname = current_database()`,
    );
    const bytes = result.rows[0]?.properties;
    if (bytes) actual = JSON.parse(bytes.toString('utf8')) as Omit<DatabaseProperties, 'roles'>;
  } finally {
    await client.end();
  }
  if (!actual) return [`the database ${database} is gone`];
  const problems = (
    ['encoding', 'collate', 'ctype', 'localeProvider', 'icuLocale', 'owner'] as const
  ).flatMap((key) =>
    actual[key] === expected[key] ? [] : [`its ${key} is ${actual[key]}, the backup's ${expected[key]}`],
  );
  const named = (settings: DatabaseProperties['settings']) =>
    settings.map((s) => `${s.role === null ? '' : `${s.role}: `}${s.setting.split('=')[0]}`);
  const have = new Set(actual.settings.map((s) => JSON.stringify(s)));
  const want = new Set(expected.settings.map((s) => JSON.stringify(s)));
  const differ = [
    ...named(expected.settings.filter((s) => !have.has(JSON.stringify(s)))),
    ...named(actual.settings.filter((s) => !want.has(JSON.stringify(s)))),
  ];
  if (differ.length > 0)
    problems.push(`its settings differ from the backup's: ${[...new Set(differ)].join(', ')}`);
  return problems;
}

/** The properties a restore test found as backed up, in words. */
function describeProperties(p: DatabaseProperties): string {
  const locale = p.localeProvider === 'icu' ? `ICU ${p.icuLocale}` : `${p.collate}/${p.ctype}`;
  return `encoding ${p.encoding}, locale ${locale}, owner ${p.owner} and ${p.settings.length} settings as backed up`;
}

/**
 * Checks that the scratch database holds every table of the manifest with exactly
 * the rows counted at dump time, and the database's properties as backed up,
 * then drops it, whatever the outcome.
 */
export async function checkRestoredDatabase(
  serverUrl: string,
  scratchDatabase: string,
  manifest: DatabaseManifest,
): Promise<RestoreCheck & { properties: string | null }> {
  try {
    const rows = await rowProblems(serverUrl, scratchDatabase, exactRows(manifest));
    const { check } = rows;
    const { properties } = manifest;
    const problems = [
      ...rows.problems,
      ...(properties ? await propertyProblems(serverUrl, scratchDatabase, properties) : []),
    ];
    if (problems.length > 0) {
      throw new RestoreMismatchError(
        `The restore test of ${manifest.archive.key} failed: ${someOf(problems)}. The archive is not a faithful copy; investigate before relying on it.`,
      );
    }
    return { ...check, properties: properties ? describeProperties(properties) : null };
  } finally {
    await dropDatabase(serverUrl, scratchDatabase);
  }
}

export async function dropDatabase(serverUrl: string, database: string): Promise<void> {
  const admin = await connected(connectTo(serverUrl, 'postgres'), 'postgres');
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(database)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

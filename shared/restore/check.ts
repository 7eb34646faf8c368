import pg from 'pg';
import type { DatabaseManifest } from '../catalog/manifest.ts';
import { RestoreMismatchError, TransientError } from '../core/errors.ts';
import { type SecretProvider, secureString } from '../core/secrets.ts';

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

/**
 * Exact row counts by manifest key (`schema.table`); a missing table counts as
 * null. The catalog resolves each key to its schema and table, which may hold
 * dots themselves, so a key is never split; tables that share a key (`a.b`.`c`
 * and `a`.`b.c`) count together, as the archive's counts do. A table's own rows
 * only (ONLY): its COPY block holds no inheritance child's rows. `owned` are the
 * keys of tables an extension owns.
 */
async function countRows(
  client: pg.Client,
  tables: readonly string[],
): Promise<{ counts: Map<string, number | null>; owned: Set<string> }> {
  const counts = new Map<string, number | null>(tables.map((t) => [t, null]));
  const owned = new Set<string>();
  const present = await client.query<{ key: string; schema: string; name: string; owned: boolean }>(
    `SELECT n.nspname || '.' || c.relname AS key, n.nspname AS schema, c.relname AS name,
            EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') AS owned
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname || '.' || c.relname = ANY($1)`,
    [tables],
  );
  for (const row of present.rows) {
    const ident = `${client.escapeIdentifier(row.schema)}.${client.escapeIdentifier(row.name)}`;
    const result = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ONLY ${ident}`);
    counts.set(row.key, (counts.get(row.key) ?? 0) + Number(result.rows[0]?.n));
    if (row.owned) owned.add(row.key);
  }
  return { counts, owned };
}

export interface RestoreCheck {
  tables: number;
  rows: number;
}

/** Each table's row count must lie in [min, max]; equal bounds ask for an exact count. */
export type RowRanges = Record<string, { min: number; max: number }>;

/** Problems named in a message: the first of them and how many more, so that a Cause (32,768 characters at most in Step Functions) stays whole and the state small whatever the table count. */
export function someOf(problems: readonly string[], shown = 20): string {
  const more = problems.length - shown;
  return `${problems.slice(0, shown).join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}

/** The rows a restore of the manifest's archive must end with: exactly those counted in it. */
export function exactRows(manifest: DatabaseManifest): RowRanges {
  return Object.fromEntries(Object.entries(manifest.tables).map(([t, n]) => [t, { min: n, max: n }]));
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
  expected: RowRanges,
): Promise<{ problems: string[]; check: RestoreCheck }> {
  const client = await connected(connectTo(serverUrl, database), database);
  let counted: Awaited<ReturnType<typeof countRows>>;
  try {
    counted = await countRows(client, Object.keys(expected));
  } finally {
    await client.end();
  }
  const { counts, owned } = counted;
  const problems = Object.entries(expected).flatMap(([table, { min, max }]) => {
    const actual = counts.get(table);
    if (actual === null || actual === undefined) return [`${table} is missing`];
    if (actual >= min && (actual <= max || owned.has(table))) return [];
    return [`${table} has ${actual} rows, expected ${min === max ? min : `${min} to ${max}`}`];
  });
  const rows = [...counts.values()].reduce<number>((a, b) => a + (b ?? 0), 0);
  return { problems, check: { tables: counts.size, rows } };
}

/**
 * Checks that the scratch database holds every table of the manifest with exactly
 * the rows counted at dump time, then drops it, whatever the outcome.
 */
export async function checkRestoredDatabase(
  serverUrl: string,
  scratchDatabase: string,
  manifest: DatabaseManifest,
): Promise<RestoreCheck> {
  try {
    const { problems, check } = await rowProblems(serverUrl, scratchDatabase, exactRows(manifest));
    if (problems.length > 0) {
      throw new RestoreMismatchError(
        `The restore test of ${manifest.archive.key} failed: ${someOf(problems)}. The archive is not a faithful copy; investigate before relying on it.`,
      );
    }
    return check;
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

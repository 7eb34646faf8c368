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

/** Exact row counts of the given `schema.table` names; a missing table counts as null. */
async function countRows(client: pg.Client, tables: readonly string[]): Promise<Map<string, number | null>> {
  const counts = new Map<string, number | null>();
  const present = await client.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname || '.' || c.relname = ANY($1)`,
    [tables],
  );
  const existing = new Set(present.rows.map((r) => r.name));
  for (const table of tables) {
    if (!existing.has(table)) {
      counts.set(table, null);
      continue;
    }
    const [schema, name] = table.split('.') as [string, string];
    const ident = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(name)}`;
    const result = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${ident}`);
    counts.set(table, Number(result.rows[0]?.n));
  }
  return counts;
}

export interface RestoreCheck {
  tables: number;
  rows: number;
}

/** Each table's row count must lie in [min, max]; equal bounds ask for an exact count. */
export type RowRanges = Record<string, { min: number; max: number }>;

/** The tables of `expected` that are missing, or whose row count lies outside its range. */
export async function rowProblems(
  serverUrl: string,
  database: string,
  expected: RowRanges,
): Promise<{ problems: string[]; check: RestoreCheck }> {
  const client = await connected(connectTo(serverUrl, database), database);
  let counts: Map<string, number | null>;
  try {
    counts = await countRows(client, Object.keys(expected));
  } finally {
    await client.end();
  }
  const problems = Object.entries(expected).flatMap(([table, { min, max }]) => {
    const actual = counts.get(table);
    if (actual === null || actual === undefined) return [`${table} is missing`];
    if (actual >= min && actual <= max) return [];
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
    const exact = Object.fromEntries(
      Object.entries(manifest.tables).map(([t, n]) => [t, { min: n, max: n }]),
    );
    const { problems, check } = await rowProblems(serverUrl, scratchDatabase, exact);
    if (problems.length > 0) {
      throw new RestoreMismatchError(
        `The restore test of ${manifest.archive.key} failed: ${problems.join('; ')}. The archive is not a faithful copy; investigate before relying on it.`,
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

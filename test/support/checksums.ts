import { qualifiedName, type TableName } from '../../shared/core/identifiers.ts';
import { ident } from './contents.ts';
import type { TestWorld } from './environment.ts';

/** A checksum of each table's whole content (every row, as text, in a fixed order), by its qualified name. */
export function tableChecksums(
  world: TestWorld,
  database: string,
  tables: readonly TableName[],
): Record<string, string> {
  return Object.fromEntries(
    tables.map((table) => [
      qualifiedName(table),
      world.sql(
        database,
        `SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM ${ident(table.schema)}.${ident(table.name)} t`,
      ),
    ]),
  );
}

export function databaseExists(world: TestWorld, database: string): boolean {
  return world.sql('postgres', `SELECT count(*) FROM pg_database WHERE datname = '${database}'`) === '1';
}

/** Every database of the cluster whose name starts with a prefix (staging, replaced, scratch). */
export function databasesLike(world: TestWorld, prefix: string): string[] {
  return world
    .sql('postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${prefix}%' ORDER BY 1`)
    .split('\n')
    .filter(Boolean);
}

/**
 * A recovery target: the next whole second on the cluster's clock (ISO 8601,
 * UTC), returned once this process's clock has passed it by 300 ms, so that
 * every commit so far is before it and every one from here after it.
 */
export async function nextSecond(world: TestWorld): Promise<string> {
  const t = world.sql(
    'postgres',
    `SELECT to_char((date_trunc('second', clock_timestamp()) + interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`,
  );
  while (Date.now() < Date.parse(t) + 300) await new Promise((resolve) => setTimeout(resolve, 50));
  return t;
}

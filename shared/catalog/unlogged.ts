import * as z from '../core/schema.ts';
import { namedAndMore } from '../core/words.ts';

/**
 * Unlogged tables and sequences: PostgreSQL writes no WAL for their rows, so
 * neither the WAL archive nor a pgBackRest backup holds them, and a recovered
 * cluster (a point-in-time recovery, a restore test) has them empty whatever the
 * target: PostgreSQL resets them when recovery ends. Only the logical dump holds
 * their rows. The host lists them (host/common.sh unlogged_sql); every
 * place that says what a physical recovery brings back names them from here.
 */

/** One unlogged relation as the host lists it: [database, schema, name, kind], names never joined. */
export const unloggedRelation = z.tuple([z.string(), z.string(), z.string(), z.enum(['table', 'sequence'])]);

export type UnloggedRelation = z.infer<typeof unloggedRelation>;

/** The host's list (at most host/common.sh UNLOGGED_LISTED of them) and how many there are in all. */
export const unloggedSchema = z.object({
  relations: z.array(unloggedRelation),
  count: z.int().check(z.nonnegative()),
});

export type Unlogged = z.infer<typeof unloggedSchema>;

/** The host's result-line fields, `unlogged` and `unloggedCount`, as one Unlogged. */
export const unloggedOf = (facts: { unlogged: UnloggedRelation[]; unloggedCount: number }): Unlogged => ({
  relations: facts.unlogged,
  count: facts.unloggedCount,
});

/** The result-line fields the host prints (host/common.sh unlogged_fields). */
export const unloggedFields = {
  unlogged: z.array(unloggedRelation),
  unloggedCount: z.int().check(z.nonnegative()),
};

/**
 * Only the relations of one database (a database-scope recovery's). When the
 * host listed only the first ones, those it left out may be of any database:
 * they are counted as this one's, so that none is left unsaid.
 */
export function unloggedIn(unlogged: Unlogged, database: string): Unlogged {
  const relations = unlogged.relations.filter(([d]) => d === database);
  const unlisted = unlogged.count - unlogged.relations.length;
  return { relations, count: relations.length + unlisted };
}

/**
 * One sentence naming every unlogged relation that came (or comes) back empty,
 * for a plan, a summary or a restore test's detail; null when there is none.
 * Names are shown as `database: schema.name` for reading only.
 */
export function unloggedNote(unlogged: Unlogged): string | null {
  if (unlogged.count === 0) return null;
  const named = unlogged.relations.map(
    ([database, schema, name, kind]) => `${kind} ${schema}.${name} (${database})`,
  );
  return `${unlogged.count} unlogged ${unlogged.count === 1 ? 'relation comes' : 'relations come'} back empty, whatever the target: ${namedAndMore(named, unlogged.count)}. PostgreSQL writes no WAL for their rows and pgBackRest's backups hold none; only the logical dump (database-restore) holds their rows.`;
}

/**
 * What a recovery plan says comes back empty: the unlogged relations the base
 * set's restore test found (of `database`, or of every database when null); null
 * when it found none; when its record predates that listing, that any there are
 * come back empty.
 */
export function unloggedPlanNote(
  base: { label: string; unlogged?: Unlogged | undefined },
  database: string | null,
): string | null {
  if (!base.unlogged)
    return `Unlogged tables and sequences${database ? ` of ${database}` : ''}, if there are any, come back empty (the restore test of ${base.label} did not list them): PostgreSQL writes no WAL for their rows; only the logical dump (database-restore) holds them.`;
  return unloggedNote(database === null ? base.unlogged : unloggedIn(base.unlogged, database));
}

import * as z from '../core/schema.ts';
import { namedAndMore } from '../core/words.ts';

/**
 * Materialized views of a database recovered beside production and copied in
 * (a point-in-time recovery of one database): pg_dump writes a materialized view
 * as its query WITH NO DATA and a REFRESH MATERIALIZED VIEW, so the copy holds
 * what the query gives over the recovered tables, not the rows the view held at
 * the target time (those of its last refresh before it). The host lists those
 * that were populated (host/point-in-time-restore.sh refreshed_views_sql); the
 * summary names them as it names unlogged tables (catalog/unlogged.ts).
 */

/** One materialized view as the host lists it: [database, schema, name], names never joined. */
export const refreshedView = z.tuple([z.string(), z.string(), z.string()]);

export type RefreshedView = z.infer<typeof refreshedView>;

/** The result-line fields the host prints: at most host/common.sh UNLOGGED_LISTED views, and how many there are in all. */
export const refreshedViewsFields = {
  refreshedViews: z.optional(z.array(refreshedView)),
  refreshedViewsCount: z.optional(z.int().check(z.nonnegative())),
};

/** The views and their count as the state and the record keep them; null when the host listed none (another scope). */
export function refreshedViewsOf(facts: {
  refreshedViews?: RefreshedView[] | undefined;
  refreshedViewsCount?: number | undefined;
}): { views: RefreshedView[]; count: number } | null {
  if (facts.refreshedViews === undefined || facts.refreshedViewsCount === undefined) return null;
  return { views: facts.refreshedViews, count: facts.refreshedViewsCount };
}

/** One sentence naming every refreshed materialized view, for the summary; null when there is none. */
export function refreshedViewsNote(
  refreshed: { views: RefreshedView[]; count: number } | null,
): string | null {
  if (!refreshed || refreshed.count === 0) return null;
  const named = refreshed.views.map(([database, schema, name]) => `${schema}.${name} (${database})`);
  return `${refreshed.count} materialized ${refreshed.count === 1 ? 'view was' : 'views were'} refreshed from the recovered tables, not copied as ${refreshed.count === 1 ? 'it was' : 'they were'} at the target: ${namedAndMore(named, refreshed.count)}. pg_dump copies a materialized view's query, not its rows, so its rows are the target's only if it was refreshed after the last change it reflects before the target.`;
}

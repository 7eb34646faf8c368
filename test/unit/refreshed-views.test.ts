import { describe, expect, it } from 'vitest';
import { refreshedViewsNote, refreshedViewsOf } from '../../shared/restore/refreshed-views.ts';

/**
 * A database recovered to a second is copied into production by pg_dump, which
 * refreshes its materialized views from the recovered tables: the summary names
 * them, bounded as the host bounds them (50 listed and a count).
 */
describe('the materialized views a database recovery refreshed', () => {
  it('are named with their database, and those the host left unlisted are counted', () => {
    const note = refreshedViewsNote(
      refreshedViewsOf({ refreshedViews: [['mvdb', 'public', 'occupancy']], refreshedViewsCount: 3 }),
    );
    expect(note).toContain('3 materialized views were refreshed from the recovered tables');
    expect(note).toContain('public.occupancy (mvdb) and 2 more');
  });

  it('say nothing when there are none, or when the host did not list them (whole-cluster scopes keep their rows)', () => {
    expect(refreshedViewsNote(refreshedViewsOf({ refreshedViews: [], refreshedViewsCount: 0 }))).toBeNull();
    expect(refreshedViewsNote(refreshedViewsOf({}))).toBeNull();
  });
});

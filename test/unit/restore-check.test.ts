import { describe, expect, it } from 'vitest';
import { someOf } from '../../shared/restore/check.ts';

describe('the problems a failed restore check names', () => {
  it('are all of them when few, the first 20 and a count when thousands of tables differ', () => {
    expect(someOf(['a is missing', 'b has 1 rows, expected 2'])).toBe(
      'a is missing; b has 1 rows, expected 2',
    );
    const many = Array.from({ length: 4000 }, (_, i) => `public.t${i} is missing`);
    const text = someOf(many);
    expect(text.startsWith('public.t0 is missing; public.t1 is missing;')).toBe(true);
    expect(text.endsWith('public.t19 is missing; and 3980 more')).toBe(true);
    expect(text.length).toBeLessThan(1000);
  });
});

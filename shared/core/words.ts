/**
 * A count and its noun as people write it in a summary: `1 row`, `2 rows`,
 * `0 rows`; `plural` for a noun that does not take an s (`entries`).
 */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

/**
 * The names a bounded list holds, then how many of `total` it left out:
 * `a, b and 3 more` (`noun` given: `and 3 more tables`), for a summary naming
 * the first of many (the host lists at most a few, and counts them all).
 */
export function namedAndMore(named: readonly string[], total: number, noun?: string): string {
  const more = total - named.length;
  if (more <= 0) return named.join(', ');
  return `${named.join(', ')} and ${noun ? counted(more, `more ${noun}`) : `${more} more`}`;
}

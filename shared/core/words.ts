/**
 * A count and its noun as people write it in a summary: `1 row`, `2 rows`,
 * `0 rows`; `plural` for a noun that does not take an s (`entries`).
 */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

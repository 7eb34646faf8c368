/** Milliseconds in a day (UTC days: S3 keys and retention count them so). */
export const DAY_MS = 86_400_000;

/** The UTC day of an instant given in milliseconds, as `YYYY-MM-DD` (the form S3 keys carry). */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

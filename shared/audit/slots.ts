import { SCHEDULES, type ScheduledKind } from '../catalog/schedule.ts';

/**
 * The scheduled slots of a month: every time EventBridge starts a backup, from
 * the crons of SCHEDULES (shared/catalog/schedule.ts), which serverless.yml's
 * schedules are built from (serverless/params.cjs backupSchedules). Nothing
 * here restates a schedule.
 */

const DAY_NAMES = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const MONTH_NAMES = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

/** One field of an AWS cron: the values it matches, or every value (`*` and `?`). */
function field(text: string, min: number, max: number, names: readonly string[] = [], offset = 0) {
  if (text === '*' || text === '?') return () => true;
  const value = (word: string) => {
    const named = names.indexOf(word.toUpperCase());
    const n = named >= 0 ? named + offset : Number(word);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`"${word}" is out of ${min}-${max}`);
    return n;
  };
  const allowed = new Set<number>();
  for (const part of text.split(',')) {
    const [range = '', stepText] = part.split('/');
    const step = stepText === undefined ? 1 : value(stepText);
    const [from, to] =
      range === '*'
        ? [min, max]
        : range.includes('-')
          ? range.split('-').map(value)
          : [value(range), undefined];
    const last = to ?? (stepText === undefined ? from : max);
    for (let n = from as number; n <= (last as number); n += step) allowed.add(n);
  }
  return (n: number) => allowed.has(n);
}

/**
 * The minutes (UTC) in [from, to) that an EventBridge cron expression,
 * `cron(minutes hours day-of-month month day-of-week year)`, fires at. It reads
 * the forms AWS documents for these fields: `*`, `?`, numbers, lists, ranges,
 * `/` increments and day and month names (day of week 1-7 is SUN-SAT); it
 * refuses `L`, `W` and `#` with an error saying so.
 */
export function cronTimes(expression: string, from: Date, to: Date): Date[] {
  const body = /^cron\((.+)\)$/.exec(expression.trim())?.[1];
  const fields = body?.trim().split(/\s+/) ?? [];
  if (fields.length !== 6 || /[LW#]/.test(body ?? ''))
    throw new Error(
      `"${expression}" is not a cron expression the audit report reads: give cron(minutes hours day-of-month month day-of-week year) without L, W or #.`,
    );
  const [minutes, hours, days, months, weekdays, years] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const matches = {
    minute: field(minutes, 0, 59),
    hour: field(hours, 0, 23),
    day: field(days, 1, 31),
    month: field(months, 1, 12, MONTH_NAMES, 1),
    weekday: field(weekdays, 1, 7, DAY_NAMES, 1),
    year: field(years, 1970, 2199),
  };
  const times: Date[] = [];
  const start = Math.ceil(from.getTime() / 60_000) * 60_000;
  for (let t = start; t < to.getTime(); t += 60_000) {
    const d = new Date(t);
    if (
      matches.minute(d.getUTCMinutes()) &&
      matches.hour(d.getUTCHours()) &&
      matches.day(d.getUTCDate()) &&
      matches.month(d.getUTCMonth() + 1) &&
      matches.weekday(d.getUTCDay() + 1) &&
      matches.year(d.getUTCFullYear())
    )
      times.push(d);
  }
  return times;
}

/** A month, `2026-11`, as the instants it spans: [start, end). */
export function monthSpan(month: string): { start: Date; end: Date } {
  const match = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month);
  if (!match) throw new Error(`"${month}" is not a month: give it as YYYY-MM, e.g. 2026-11.`);
  const [year, m] = [Number(match[1]), Number(match[2])];
  return { start: new Date(Date.UTC(year, m - 1, 1)), end: new Date(Date.UTC(year, m, 1)) };
}

/** The times each scheduled kind was due in [from, to). */
export function scheduledSlots(kind: ScheduledKind, from: Date, to: Date): Date[] {
  return cronTimes(SCHEDULES[kind].cron, from, to);
}

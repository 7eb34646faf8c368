import type { Catalog } from '../catalog/catalog.ts';
import { type DatabaseManifest, micros } from '../catalog/manifest.ts';
import { InvalidInputError } from '../core/errors.ts';
import { DAY_MS, utcDay } from '../core/time.ts';
import type { RestorePlan } from './database-schemas.ts';

const isVerified = (m: DatabaseManifest) => m.verification.state === 'verified';

const dayBefore = (iso: string) => utcDay(Date.parse(iso) - DAY_MS);

/**
 * Follows archives whose windows chain without a gap (each starts where the one
 * before ended, or earlier), from `from`, as long as `accept` takes the next one;
 * `refused` is the next one it did not take. An archive that starts after the
 * chain's end but before `limit` means the data in between is in no archive: a
 * gap, refused.
 */
function followChain(
  manifests: readonly DatabaseManifest[],
  from: string,
  limit: number,
  accept: (m: DatabaseManifest) => boolean,
): { chain: DatabaseManifest[]; end: string; refused: DatabaseManifest | undefined } {
  const chain: DatabaseManifest[] = [];
  let end = from;
  let next: DatabaseManifest | undefined;
  const since = (m: DatabaseManifest) =>
    m.window.since === null ? Number.NEGATIVE_INFINITY : micros(m.window.since);
  for (;;) {
    const at = micros(end);
    next = manifests.find((m) => since(m) <= at && micros(m.window.until) > at);
    if (!next || !accept(next)) break;
    chain.push(next);
    end = next.window.until;
  }
  const gap = manifests.find((m) => since(m) > micros(end) && since(m) < limit);
  if (gap) {
    throw new InvalidInputError(
      `The ${gap.kind} archives have a gap: nothing holds the data from ${end} to ${gap.window.since} (the next archive is ${gap.archive.key}). Recover to ${end} or earlier, or to a time after a later full backup. Nothing was changed.`,
    );
  }
  return { chain, end, refused: next };
}

/** The archives a restore applies, in order, what they bring the database back to, and what they leave out. */
export interface Resolved {
  archives: DatabaseManifest[];
  recoveredTo: RestorePlan['recoveredTo'];
  notApplied: RestorePlan['notApplied'];
}

/**
 * The archives that rebuild the database as it was at `targetTime`: the newest
 * verified full backup taken at or before it, the incrementals chained from it
 * whose windows end by then, and the log archives from the full's time to the
 * target (their rows after it are removed once applied). An incremental whose
 * window runs past the target is not applied: its rows carry only their latest
 * version, which may be later than the target.
 */
export async function resolvePointInTime(
  catalog: Catalog,
  target: string,
  database: string,
  targetTime: string,
  now: Date,
): Promise<Resolved> {
  const at = micros(targetTime);
  if (at > now.getTime() * 1000) {
    throw new InvalidInputError(
      `The target time ${targetTime} is in the future (now is ${now.toISOString()}); give a time in the past. Nothing was changed.`,
    );
  }
  const fulls = (await catalog.list('full', target, database)).filter(isVerified);
  const base = fulls.filter((m) => micros(m.window.until) <= at).at(-1);
  if (!base) {
    throw new InvalidInputError(
      fulls.length === 0
        ? `There is no verified full backup of ${database} on ${target} to recover from. Nothing was changed.`
        : `The target time ${targetTime} is before the oldest verified full backup of ${database} (${fulls[0]?.window.until}); recover to that time or later. Nothing was changed.`,
    );
  }
  const fromDay = dayBefore(base.window.until);
  const [incrementals, logs] = await Promise.all(
    (['incremental', 'transaction-logs'] as const).map(async (kind) =>
      (await catalog.list(kind, target, database, fromDay)).filter(isVerified),
    ),
  );
  const business = followChain(
    incrementals ?? [],
    base.window.until,
    at,
    (m) => micros(m.window.until) <= at,
  );
  const spanning = business.refused;
  const logChain = followChain(
    logs ?? [],
    base.window.until,
    at,
    (m) => m.window.since === null || micros(m.window.since) < at,
  );
  return {
    archives: [base, ...business.chain, ...logChain.chain],
    recoveredTo: {
      tables: business.end,
      // The last log archive may run past the target; its later rows are removed.
      logTables: logChain.chain.length === 0 ? null : micros(logChain.end) < at ? logChain.end : targetTime,
    },
    notApplied: spanning
      ? [
          {
            key: spanning.archive.key,
            reason: `its window [${spanning.window.since}, ${spanning.window.until}) runs past the target time; its rows hold their latest version only`,
          },
        ]
      : [],
  };
}

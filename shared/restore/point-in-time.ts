import { planSchema } from '../backup/database-plan.ts';
import { scratchDirectoryOf } from '../backup/physical-restore-test.ts';
import {
  type ArchivedSegment,
  expectedSegments,
  findGaps,
  historyFileName,
  isOnPath,
  parseSegmentName,
  segnoOfLsn,
  timelineAt,
  timelinePath,
} from '../backup/wal-segments.ts';
import { type Catalog, objectsUnder } from '../catalog/catalog.ts';
import { runId as makeRunId, PHYSICAL_KINDS, replacedDatabase, stagingDatabase } from '../catalog/keys.ts';
import { keyOf, listPhysicalBackups, type PhysicalRecord, usable } from '../catalog/physical.ts';
import { expectedSeconds, newestRecoveryRecord } from '../catalog/recoveries.ts';
import { WAL_ARCHIVE_MAX_AGE_SECONDS } from '../catalog/schedule.ts';
import { unloggedPlanNote, unloggedSchema } from '../catalog/unlogged.ts';
import type { Config, Target } from '../core/config.ts';
import { InvalidInputError, NotFoundError } from '../core/errors.ts';
import {
  pgbackrestLabel,
  runIdentifier,
  sqlIdentifier,
  targetName,
  walSegment,
} from '../core/identifiers.ts';
import { checkConfirm, parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import {
  pgbackrestArchivePrefix,
  pgbackrestOf,
  pgbackrestParams,
  pgbackrestPath,
  pgbackrestPlaceOptions,
} from '../host/pgbackrest-conf.ts';
import { hostCommand, postgresParams } from '../host/scripts.ts';
import { stagedSwapPlan, targetOf } from './database-plan.ts';
import { POINT_IN_TIME_PLAN_SCOPES, POINT_IN_TIME_SCOPES } from './database-schemas.ts';
import { notInRestoreNote } from './row-sources.ts';
import { catalogOf, placeOf, RESTORE_SOURCES, type RestoreCatalogs, restoreSourceInput } from './source.ts';

/**
 * The point-in-time-recovery workflow's plan: which pgBackRest backup set to
 * restore and the WAL to replay to the target time, checked against the
 * catalog's physical records (the oldest recoverable point: the oldest backup
 * that passed verification and its restore test) and the WAL in the repository
 * (no gap between the base backup and the target). Every refusal changes nothing
 * and says what to do. The recovery itself runs on the host
 * (host/point-in-time-restore.sh).
 */

const withZone = z.iso.datetime({ offset: true });
/** A time that would be one of withZone's but for the zone. */
const withoutZone = z.iso.datetime({ local: true });
const TARGET_TIME_EXAMPLES = 'e.g. 2026-11-26T10:30:00Z or 2026-11-26T11:30:00+01:00';

/** `latest` (the end of the WAL in the repository), or ISO 8601 with a zone. */
export const targetTimeSchema = z.string().check(
  z.refine((value) => value === 'latest' || withZone.safeParse(value).success, {
    // A zone-less time could be any zone's: the refusal says to add one, and
    // says nothing of a zone to a value that is no time at all (a date alone, a
    // 13th month, no seconds, a word).
    error: ({ input }) => {
      const given = JSON.stringify(String(input).slice(0, 64));
      return withoutZone.safeParse(input).success
        ? `${given} has no zone, so it could be any zone's: add one (${TARGET_TIME_EXAMPLES}), or give "latest"`
        : `${given} is not a time: give "latest" or an ISO 8601 time with seconds and a zone, ${TARGET_TIME_EXAMPLES}`;
    },
  }),
);

/** The point-in-time-recovery workflow's input. */
export const pointInTimeInputSchema = z.strictObject({
  target: z.optional(targetName),
  /** `database` (default): one database, side by side; `cluster`: the whole cluster, in place. */
  scope: z._default(z.enum(POINT_IN_TIME_SCOPES), 'database'),
  /** The database to recover (scope database). */
  database: z.optional(sqlIdentifier),
  /** Where to put it: a new database, or `database` itself with `confirm` (scope database). */
  targetDatabase: z.optional(sqlIdentifier),
  targetTime: targetTimeSchema,
  /** `database` to go over it; the target's name for a whole-cluster recovery. */
  confirm: z.optional(z.string()),
  /** Plan only: the backup set, the WAL, the expected duration and what would be replaced. */
  dryRun: z._default(z.boolean(), false),
  /** Recover from the backup bucket's repository (`primary`) or from its copy in the vault (source.ts). */
  source: restoreSourceInput,
});

const iso = z.iso.datetime({ offset: true });

export const pointInTimePlanSchema = z.object({
  target: targetName,
  scope: z.enum(POINT_IN_TIME_PLAN_SCOPES),
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  startedAt: iso,
  dryRun: z.boolean(),
  /** Where the catalog, the backup set and the WAL were read: the backup bucket or the vault. */
  source: z.enum(RESTORE_SOURCES),
  /** As asked: `latest`, or the time with its zone. */
  targetTime: targetTimeSchema,
  /** Scope database: the database recovered and where it goes; null for the cluster. */
  database: z.nullable(sqlIdentifier),
  targetDatabase: z.nullable(sqlIdentifier),
  overProduction: z.boolean(),
  stagingDatabase: sqlIdentifier,
  replacedDatabase: sqlIdentifier,
  safetyDump: z.nullable(planSchema),
  /** The backup set restored: the newest that passed verification and its restore test and stopped before the target. */
  base: z.object({
    label: pgbackrestLabel,
    kind: z.enum(PHYSICAL_KINDS),
    /** When the backup stopped: its consistent point, the earliest time it recovers to. */
    stoppedAt: iso,
    archiveStart: walSegment,
    /** The cluster's size as the backup saw it, in bytes. */
    databaseBytes: z.int().check(z.nonnegative()),
    recordKey: z.string(),
    /** The unlogged tables and sequences its restore test found; absent when its record predates that listing. */
    unlogged: z.optional(unloggedSchema),
  }),
  /** The oldest time any usable backup recovers to. */
  oldestRecoverable: iso,
  /** The WAL replayed: from the base's first segment to the one holding the target (null: not archived yet). */
  wal: z.object({
    from: walSegment,
    to: z.nullable(walSegment),
    segments: z.int().check(z.nonnegative()),
    newestArchivedAt: z.nullable(iso),
    /** The timeline recovered along (pgBackRest's --target-timeline for a target time) and why that one. */
    timeline: z.int().check(z.positive()),
    /** Its path: each timeline replayed and the first segment number read on it, oldest first; the segment size in bytes. */
    path: z.array(
      z.object({ timeline: z.int().check(z.positive()), firstSegno: z.int().check(z.nonnegative()) }),
    ),
    segmentBytes: z.int().check(z.positive()),
    timelineReason: z.string(),
  }),
  /** The expected duration of restore and replay, from the newest measured rate; null seconds when none was measured. */
  expected: z.object({
    seconds: z.nullable(z.number()),
    secondsPerGB: z.nullable(z.number()),
    measuredAt: z.nullable(iso),
    note: z.string(),
  }),
  /** What the recovery replaces, in words. */
  replaces: z.string(),
  /** What comes back empty, in words (catalog/unlogged.ts): the unlogged tables and sequences; null when the base set has none. */
  unlogged: z.nullable(z.string()),
});

export type PointInTimePlan = z.infer<typeof pointInTimePlanSchema>;

const SECOND_MS = 1000;

/** The wal_segment_size that makes a record's first segment hold its start LSN (and its last, its stop LSN). */
function segmentSizeOf(record: PhysicalRecord): number {
  const { archiveStart, archiveStop, lsnStart, lsnStop } = record.backup;
  // 16 MiB first: the default, and what nearly every cluster has.
  for (const shift of [24, 20, 21, 22, 23, 25, 26, 27, 28, 29, 30]) {
    const size = 2 ** shift;
    if (
      parseSegmentName(archiveStart, size).segno === segnoOfLsn(lsnStart, size) &&
      parseSegmentName(archiveStop, size).segno === segnoOfLsn(lsnStop, size)
    )
      return size;
  }
  throw new NotFoundError(
    `The physical record of ${record.label} names WAL segments that do not hold its LSNs; the record is damaged. Take a full backup (database-backup with {"kind": "full"}) and recover from it.`,
  );
}

/** The repository's current archive id (`15-1`), from its archive.info (pgBackRest's [db] section). */
async function archiveIdOf(catalog: Catalog, target: string): Promise<string> {
  const key = `${pgbackrestPath(target).slice(1)}/archive/${target}/archive.info`;
  const info = await catalog.readObject(
    key,
    `The pgBackRest repository of ${target} has no archive.info (s3://${catalog.bucket}/${key}): its stanza was never created. Start the prepare-host workflow for ${target}.`,
  );
  const db = /\[db\]([^[]*)/.exec(info)?.[1] ?? '';
  const id = /^db-id=(\d+)$/m.exec(db)?.[1];
  const version = /^db-version="([^"]+)"$/m.exec(db)?.[1];
  if (!id || !version)
    throw new NotFoundError(`s3://${catalog.bucket}/${key} has no [db] section with db-id and db-version.`);
  return `${version}-${id}`;
}

const SEGMENT_OBJECT = /^([0-9A-F]{16})\/(\1[0-9A-F]{8})-[0-9a-f]{40}(?:\.[a-z0-9]+)?$/;
const HISTORY_OBJECT = /^([0-9A-F]{8})\.history$/;

/**
 * The timeline a recovery follows, and why in words (the plan and its dry run
 * show both): the newest (`at` undefined: a recovery to the end of the WAL), or
 * the one production was on at `at` (ms since the epoch, the target time): the
 * newest of the base's and those begun by then. A timeline begins when its
 * history file is archived (`begun`: its number and the repository listing's
 * time of the file, ms), at the promotion that ends a whole-cluster recovery,
 * before it writes any WAL. PostgreSQL itself follows the newest timeline: after
 * a recovery to t1, a target between t1 and that recovery's run would leave the
 * old timeline at t1's stop and skip what it committed after.
 */
export function recoveryTimeline(
  baseTimeline: number,
  newestTimeline: number,
  begun: readonly { timeline: number; at: number }[],
  at?: number,
): { timeline: number; reason: string } {
  if (at === undefined)
    return {
      timeline: newestTimeline,
      reason: 'the newest timeline, which a recovery to the end of the WAL follows',
    };
  const timeline = Math.max(baseTimeline, ...begun.filter((t) => t.at <= at).map((t) => t.timeline));
  const since = begun.find((t) => t.timeline === timeline);
  const current = since ? `production's since ${new Date(since.at).toISOString()}` : `the base backup's`;
  const next = begun.filter((t) => t.at > at).sort((a, b) => a.at - b.at)[0];
  return {
    timeline,
    reason: next
      ? `production's timeline at the target time (${current}): timeline ${next.timeline} began only at ${new Date(next.at).toISOString()}, after the target (its history file's time in the repository), and following it would skip what timeline ${timeline} committed after that timeline left it`
      : `production's timeline at the target time (${current}), the newest`,
  };
}

/**
 * The WAL in the repository from the base's first segment on, and the timelines
 * a recovery follows: to the newest timeline, or (`at`, ms since the epoch, a
 * recovery target time) to the timeline production was on at `at`. Throws
 * InvalidInputError when the base backup is not on that timeline's ancestry.
 */
async function walFrom(catalog: Catalog, base: PhysicalRecord, at?: number) {
  const size = segmentSizeOf(base);
  const prefix = pgbackrestArchivePrefix(base.target, await archiveIdOf(catalog, base.target));
  const first = base.backup.archiveStart;
  const segments: ArchivedSegment[] = [];
  const baseTimeline = parseSegmentName(first, size).timeline;
  let newestTimeline = baseTimeline;
  // When each timeline newer than the base's began: its history file is archived as it is promoted.
  const begun: { timeline: number; at: number }[] = [];
  for await (const object of objectsUnder(catalog.s3, catalog.bucket, prefix, {
    startAfter: `${prefix}${first.slice(0, 16)}/${first}`,
  })) {
    const rest = object.Key?.slice(prefix.length) ?? '';
    const segment = SEGMENT_OBJECT.exec(rest)?.[2];
    const history = HISTORY_OBJECT.exec(rest)?.[1];
    if (segment !== undefined && object.LastModified) {
      segments.push({ name: segment, archivedAt: object.LastModified });
      newestTimeline = Math.max(newestTimeline, parseSegmentName(segment, size).timeline);
    } else if (history !== undefined) {
      const timeline = Number.parseInt(history, 16);
      newestTimeline = Math.max(newestTimeline, timeline);
      if (object.LastModified) begun.push({ timeline, at: object.LastModified.getTime() });
    }
  }
  const { timeline, reason } = recoveryTimeline(baseTimeline, newestTimeline, begun, at);
  const history =
    timeline > 1
      ? await catalog.readObject(
          `${prefix}${historyFileName(timeline)}`,
          `Timeline ${timeline}'s history file is missing from the repository of ${base.target}, so no recovery can follow the WAL onto it. Push it again from the host's pg_wal (pgbackrest archive-push pg_wal/${historyFileName(timeline)}).`,
        )
      : undefined;
  const path = timelinePath(timeline, history, size);
  if (!isOnPath(path, parseSegmentName(first, size)))
    throw new InvalidInputError(
      `The backup ${base.label} (WAL from ${first}, timeline ${baseTimeline}) is not on the history of timeline ${timeline}, the one production was on at the target time: it was taken on a timeline a later whole-cluster recovery abandoned. Recover to a time when that timeline was current, or to a time after a full backup taken on timeline ${timeline} (database-backup with {"kind": "full"} takes one now). Nothing was changed.`,
    );
  // The segments a recovery reads: at a switch point the new timeline's, not the parent's copy
  // of the same number (isOnPath keeps it, where a backup may start): until the new timeline
  // archives its first segment, that copy would be the newest and its successor a false gap.
  const onPath = segments.filter((s) => {
    const segment = parseSegmentName(s.name, size);
    return isOnPath(path, segment) && timelineAt(path, segment.segno) === segment.timeline;
  });
  return { size, path, segments: onPath, prefix, timeline, reason };
}

/**
 * The WAL from `base`'s first segment to the newest in the repository, checked
 * for gaps (the first `listGaps` described one by one): what a recovery from it
 * would replay.
 */
async function walCheckFrom(catalog: Catalog, base: PhysicalRecord, listGaps = 0, at?: number) {
  const wal = await walFrom(catalog, base, at);
  const fromSegno = parseSegmentName(base.backup.archiveStart, wal.size).segno;
  const newest = wal.segments.at(-1);
  const toSegno = newest ? parseSegmentName(newest.name, wal.size).segno : fromSegno;
  const check = await findGaps(
    expectedSegments(wal.path, fromSegno, Math.max(fromSegno, toSegno), wal.size),
    (async function* () {
      yield* wal.segments;
    })(),
    { listGaps },
  );
  return { wal, newest, check };
}

const seconds = (ms: number) => new Date(Math.floor(ms / SECOND_MS) * SECOND_MS).toISOString();

/** A backup's stop time is whole seconds (pgBackRest's): the next second is safely past its consistent point. */
const recoversFrom = (r: PhysicalRecord) => Date.parse(r.backup.stoppedAt) + SECOND_MS;

/**
 * The target's physical backups a recovery may start from (those that passed
 * verification and their restore test, from the catalog's records), oldest
 * first, and the oldest time any of them recovers to (ISO 8601, whole seconds).
 * Throws NotFoundError when there is none.
 */
export async function recoverableBackups(
  catalog: Catalog,
  target: string,
): Promise<{ backups: PhysicalRecord[]; oldestRecoverable: string }> {
  const backups = (await listPhysicalBackups(catalog, target))
    .filter((r) => usable(r, true))
    .sort((a, b) => Date.parse(a.backup.stoppedAt) - Date.parse(b.backup.stoppedAt));
  const [oldest] = backups;
  if (!oldest)
    throw new NotFoundError(
      `No physical backup of ${target} has passed verification and its restore test, so there is nothing to recover from. Run database-backup with {"kind": "full"} and recover once it has succeeded. Nothing was changed.`,
    );
  return { backups, oldestRecoverable: seconds(recoversFrom(oldest)) };
}

/**
 * Where recovery resumes after a WAL gap: the first usable backup (of
 * `backups`, oldest first) whose WAL starts after the gap's last segment;
 * undefined when none does. Nothing from the gap's start until that backup's
 * consistent point can be recovered: a recovery from an older backup stops at
 * the gap, and none from a newer one reaches back before its own consistent
 * point. The planner's refusal and `info` both read it from here.
 */
export function resumesAfter(gap: { last: string }, backups: readonly PhysicalRecord[]) {
  // Segment names order as (timeline, segment): upper-case hex of one width.
  const backup = backups.find((b) => b.backup.archiveStart > gap.last);
  return backup ? { label: backup.label, at: seconds(recoversFrom(backup)) } : undefined;
}

/**
 * A gap in the WAL as `info` shows it: its segments, when the segments around
 * it were stored (ISO 8601 whole seconds; null: none before it since the base,
 * none after it yet), and where recovery resumes after it.
 */
export interface RecoveryGap {
  first: string;
  last: string;
  count: number;
  after: string | null;
  before: string | null;
  /** Where recovery resumes after the gap (resumesAfter); null when no backup was taken since. */
  resumes: { label: string; at: string } | null;
}

/** One stretch of time a recovery can reach, ISO 8601 whole seconds. */
export interface RecoverableWindow {
  from: string;
  to: string;
}

/**
 * The windows a recovery can reach, oldest first: from `oldest` to the first
 * gap's start, then from where recovery resumes after it (resumesAfter) to the
 * next gap's start, and so on to `newest`. A gap with no backup after it ends
 * the last window.
 */
export function recoverableWindows(
  oldest: string,
  newest: string,
  gaps: readonly { after: string | null; resumes: { at: string } | null | undefined }[],
): RecoverableWindow[] {
  const windows: RecoverableWindow[] = [];
  let from: string | null = oldest;
  for (const gap of gaps) {
    if (from === null) break;
    // Changes after the last segment before the gap (or after the base's start) are lost.
    const to = gap.after ?? from;
    if (to >= from) windows.push({ from, to });
    const again = gap.resumes?.at ?? null;
    // A gap inside a stretch already lost moves nothing.
    if (again === null || again > from) from = again;
  }
  if (from !== null && newest >= from) windows.push({ from, to: newest });
  return windows;
}

/** At most this many WAL gaps are described one by one; `gaps` counts them all. */
const GAPS_LISTED = 10;

/**
 * What a point-in-time recovery of a target can reach, as `info` shows it: from
 * the oldest usable backup's consistent point (recoverableBackups) to when the
 * newest WAL segment in the repository was stored, and every gap in the WAL
 * between (the first GAPS_LISTED), each with the times of the segments around
 * it: changes written between those times cannot be replayed. Read from the
 * catalog's records and the repository's listing in S3, the same facts a
 * point-in-time plan checks; times are ISO 8601 in whole seconds. Throws
 * NotFoundError when no backup is usable or the stanza was never created.
 */
export async function recoverableRange(
  catalog: Catalog,
  target: string,
): Promise<{
  oldestRecoverable: string;
  newestRecoverable: string | null;
  base: string;
  segments: number;
  missing: number;
  gaps: number;
  gapList: RecoveryGap[];
  /** What a recovery can reach around the gaps (recoverableWindows), as far as the listed gaps tell. */
  windows: RecoverableWindow[];
}> {
  const { backups, oldestRecoverable } = await recoverableBackups(catalog, target);
  const base = backups[0] as PhysicalRecord;
  const { newest, check } = await walCheckFrom(catalog, base, GAPS_LISTED);
  const at = (s: { archivedAt: Date } | undefined) => (s ? seconds(s.archivedAt.getTime()) : null);
  // The segments a backup needs to be consistent may be stored in the second it stops: the
  // range is never shorter than its consistent point.
  const newestAt = newest ? Math.max(newest.archivedAt.getTime(), Date.parse(oldestRecoverable)) : undefined;
  const gapList = check.gapList.map((g) => ({
    first: g.first,
    last: g.last,
    count: g.count,
    after: at(g.before),
    before: at(g.after),
    resumes: resumesAfter(g, backups) ?? null,
  }));
  const newestRecoverable = newestAt === undefined ? null : seconds(newestAt);
  return {
    oldestRecoverable,
    newestRecoverable,
    base: base.label,
    segments: check.expected - check.missing,
    missing: check.missing,
    gaps: check.gaps,
    gapList,
    windows: recoverableWindows(oldestRecoverable, newestRecoverable ?? oldestRecoverable, gapList),
  };
}

/** What a recovery to a time would use: the base backup set, the WAL, the expected duration. */
export type RecoveryBasis = Pick<PointInTimePlan, 'base' | 'oldestRecoverable' | 'wal' | 'expected'>;

/**
 * The backup set and WAL a recovery of `target` to `targetTime` (ISO 8601 with a
 * zone, or `latest`) would use, and its expected duration from the newest
 * measured rate. Throws InvalidInputError (a target in the future, before the
 * oldest recoverable point, past a WAL gap) or NotFoundError (no usable backup);
 * reads the catalog and the repository's WAL listing only.
 */
export async function planRecoveryBasis(
  catalog: Catalog,
  target: string,
  targetTime: string,
  now = new Date(),
): Promise<RecoveryBasis> {
  const latest = targetTime === 'latest';
  const at = latest ? now.getTime() : Date.parse(targetTime);
  if (!latest && at > now.getTime())
    throw new InvalidInputError(
      `The target time ${targetTime} is in the future (now is ${now.toISOString()}); give a time in the past, or "latest" for the newest state the WAL holds. Nothing was changed.`,
    );

  const { backups: usableBackups, oldestRecoverable } = await recoverableBackups(catalog, target);
  const base = usableBackups.filter((r) => recoversFrom(r) <= at).at(-1);
  if (!base)
    throw new InvalidInputError(
      `The target time ${targetTime} is before the oldest recoverable point, ${oldestRecoverable} (the consistent point of the backup ${usableBackups[0]?.label}, the oldest that passed verification and its restore test); recover to that time or later. Nothing was changed.`,
    );

  const { wal, newest, check } = await walCheckFrom(catalog, base, 0, latest ? undefined : at);
  const gap = check.firstGap;
  if (gap) {
    // Everything in the segments before the gap was written by the time the last of them was archived.
    const reachable = gap.before?.archivedAt.getTime() ?? recoversFrom(base);
    if (latest || at > reachable) {
      const run = gap.count > 1 ? ` (to ${gap.last}, ${gap.count} segments)` : '';
      const resumes = resumesAfter(gap, usableBackups);
      throw new InvalidInputError(
        `The target time ${targetTime} lies past a gap in the WAL: segment ${gap.first}${run} is missing from s3://${catalog.bucket}/${wal.prefix}, so recovery from the backup ${base.label} stops before it. The latest recoverable time before the gap is ${seconds(reachable)}${gap.before ? ` (when ${gap.before.name} was archived)` : ''}: recover to that time or earlier, or ${resumes ? `to ${resumes.at} or later (the consistent point of the backup ${resumes.label}, the first taken after the gap)` : 'to a time after a full backup taken since the gap (database-backup with {"kind": "full"} takes one now)'}. Nothing was changed.`,
      );
    }
  }
  // The segment holding the target: the first one archived after it (later commits end it).
  const holding = latest ? newest : wal.segments.find((s) => s.archivedAt.getTime() >= at);
  const toName = holding?.name ?? null;

  const rate = await newestRecoveryRecord(catalog, target);
  const bytes = base.backup.databaseBytes;
  const expected = rate
    ? {
        seconds: expectedSeconds(rate.record, bytes),
        secondsPerGB: rate.record.secondsPerGB,
        measuredAt: rate.record.measuredAt,
        note: `${rate.record.secondsPerGB} s per GB, measured by the ${rate.record.source} ${rate.record.runId} at ${rate.record.measuredAt}, for ${(bytes / 1e9).toFixed(2)} GB; replaying more WAL than it did takes longer`,
      }
    : {
        seconds: null,
        secondsPerGB: null,
        measuredAt: null,
        note: 'no measured rate yet: the first point-in-time recovery (or monthly drill) of this target records one',
      };

  return {
    base: {
      label: base.label,
      kind: base.kind,
      stoppedAt: base.backup.stoppedAt,
      archiveStart: base.backup.archiveStart,
      databaseBytes: bytes,
      recordKey: keyOf(base),
      ...(base.verification.restoreTest?.unlogged
        ? { unlogged: base.verification.restoreTest.unlogged }
        : {}),
    },
    oldestRecoverable,
    wal: {
      from: base.backup.archiveStart,
      to: toName,
      segments: check.expected - check.missing,
      newestArchivedAt: newest?.archivedAt.toISOString() ?? null,
      timeline: wal.timeline,
      timelineReason: wal.reason,
      path: wal.path,
      segmentBytes: wal.size,
    },
    expected,
  };
}

/**
 * Plans a point-in-time recovery; throws InvalidInputError (a target in the
 * future, before the oldest recoverable point, inside a WAL gap, without a zone,
 * a missing confirm) or NotFoundError (no usable backup) before anything changed.
 */
export async function planPointInTimeRecovery(
  config: Config,
  catalogs: RestoreCatalogs,
  request: unknown,
  now = new Date(),
): Promise<PointInTimePlan> {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    'The PlanPointInTimeRecovery request',
  );
  const wanted = parseInput(pointInTimeInputSchema, input, 'The execution input');
  const { source } = wanted;
  const catalog = catalogOf(catalogs, source);
  const target = targetOf(config, wanted.target);
  pgbackrestOf(target);
  const { scope } = wanted;
  let swap: ReturnType<typeof stagedSwapPlan>;
  if (scope === 'database') {
    if (wanted.database === undefined || wanted.targetDatabase === undefined)
      throw new InvalidInputError(
        'A point-in-time recovery of a database needs "database" (the one to recover) and "targetDatabase" (a new database, or the same name with "confirm" to replace it); for the whole cluster give "scope": "cluster". Nothing was changed.',
      );
    swap = stagedSwapPlan(config, target, {
      database: wanted.database,
      targetDatabase: wanted.targetDatabase,
      confirm: wanted.confirm,
      executionId,
      startedAt,
    });
    // "latest" is the end of the WAL when the host switches it, before the side restore; production
    // keeps taking writes until the swap stops the application, and those would be left behind in
    // the replaced database with nothing said. Losing nothing needs the application stopped first.
    if (swap.overProduction && wanted.targetTime === 'latest')
      throw new InvalidInputError(
        `"targetTime": "latest" over ${wanted.database} would lose what the application commits while the recovery runs: the end of the WAL is fixed when the run starts, the application keeps writing until the swap, and those writes would stay only in ${swap.replacedDatabase}. Give a target time instead (to lose nothing: stop the application, then give a time after it stopped), or recover beside production ("targetDatabase": "${wanted.database}_latest") and compare. Nothing was changed.`,
      );
  } else {
    if (wanted.database !== undefined || wanted.targetDatabase !== undefined)
      throw new InvalidInputError(
        'A whole-cluster recovery ("scope": "cluster") recovers every database of the target: leave "database" and "targetDatabase" out, or recover one database with "scope": "database". Nothing was changed.',
      );
    checkConfirm(wanted.confirm, target.name, {
      replaces: `A whole-cluster recovery replaces every database of ${target.name} with its state at the target time, and stops PostgreSQL while it runs.`,
      named: "the target's name",
      otherwise: 'To recover one database beside production, use "scope": "database".',
    });
    if (target.postgres.mode === 'docker')
      throw new InvalidInputError(
        `${target.name} runs PostgreSQL in a compose service, which stops with its server: a whole-cluster recovery in place cannot run there. Recover the databases one by one ("scope": "database"), or restore the cluster by hand with pgbackrest restore --delta. Nothing was changed.`,
      );
    // No database is swapped: the names are the run's, unused.
    const id = makeRunId(new Date(startedAt).toISOString(), executionId);
    swap = {
      target: target.name,
      runId: id,
      overProduction: false,
      targetDatabase: '',
      stagingDatabase: stagingDatabase(id),
      replacedDatabase: replacedDatabase(id),
      safetyDump: null,
    };
  }

  const basis = await planRecoveryBasis(catalog, target.name, wanted.targetTime, now);
  // From the backup bucket, the host first commits and archives a transaction, which ends a
  // replay to any past target; the vault holds only what was replicated to it, so a replay from
  // there reaches a target only when a segment stored after it is in the vault.
  if (source === 'vault' && wanted.targetTime !== 'latest' && basis.wal.to === null)
    throw new InvalidInputError(
      `The vault's WAL of ${target.name} ends before the target time ${wanted.targetTime}: its newest segment was stored at ${basis.wal.newestArchivedAt ?? basis.oldestRecoverable} (S3 replicates to the vault within 15 minutes). Recover to that time or earlier, give "latest" for the newest state the vault holds, or wait for replication. Nothing was changed.`,
    );

  const targetDatabase = scope === 'database' ? swap.targetDatabase : null;
  // The plan reads the catalog and the repository, never the host: what only the host knows
  // (which databases exist now, and which existed at the target) is said as what the run checks.
  const existedAtTarget = `${wanted.database} must have existed at ${wanted.targetTime}. The run refuses a name that is neither in the backup set ${basis.base.label} nor on ${target.name} now before restoring anything; otherwise that is known only once the set is restored and recovered beside production (the expected duration below), and if it did not, the run fails then, with production unchanged.`;
  const replaces =
    scope === 'cluster'
      ? `the whole cluster of ${target.name}: every database returns to ${wanted.targetTime}, and everything written after it is gone from the cluster (the repository keeps it on the old timeline). PostgreSQL is stopped during the restore; a full backup is started once it has promoted.`
      : swap.overProduction
        ? `${wanted.database} on ${target.name}: the application is stopped for the swap only, a safety dump of ${wanted.database} is taken first, and ${wanted.database} is renamed to ${swap.replacedDatabase} and kept. The ${notInRestoreNote(wanted.database ?? '', swap.replacedDatabase, `its recovery to ${wanted.targetTime}`)} ${existedAtTarget}`
        : `nothing, if ${targetDatabase} does not exist on ${target.name}: it is created there. A dry run does not read the host; the run checks there first, and refuses an existing ${targetDatabase} before restoring anything. ${existedAtTarget}`;

  return {
    ...swap,
    scope,
    executionId,
    startedAt,
    dryRun: wanted.dryRun,
    source,
    targetTime: wanted.targetTime,
    database: scope === 'database' ? (wanted.database ?? null) : null,
    targetDatabase,
    safetyDump: scope === 'database' ? swap.safetyDump : null,
    overProduction: scope === 'database' && swap.overProduction,
    ...basis,
    replaces,
    unlogged: unloggedPlanNote(basis.base, scope === 'database' ? (wanted.database ?? null) : null),
  };
}

/**
 * An ISO 8601 time with a zone as PostgreSQL's recovery_target_time takes it:
 * its check reads neither the `T` nor a `Z` (`2026-11-26T10:30:00.5Z` is
 * `2026-11-26 10:30:00.5+00`); the digits are kept as given, microseconds too.
 */
export function recoveryTargetTime(iso: string): string {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}(?::?\d{2})?)$/.exec(iso);
  if (!match) throw new InvalidInputError(`"${iso}" is not an ISO 8601 time with a zone.`);
  const [, date, time, zone] = match;
  return `${date} ${time}${zone === 'Z' ? '+00' : zone}`;
}

/**
 * Where a recovery of `target` works on the host, for its host command and its
 * clean-up's (host/restore-cleanup.sh): the directory of its lock, the scratch
 * area of its side cluster, the cluster's data directory and the run's server
 * log (a whole-cluster recovery starts PostgreSQL on the recovered data
 * directory with it, and reads its recovery's words there).
 */
export function recoveryPlaces(target: Target, runId: string): Record<string, string> {
  const pg = pgbackrestOf(target);
  return {
    KB_LOCK_DIR: target.backupDir,
    KB_SCRATCH_ROOT: scratchDirectoryOf(target),
    KB_PG_DATA: pg.dataDirectory,
    KB_PG_LOG: `${pg.logPath}/${target.name}-postgresql-recovery-${runId}.log`,
  };
}

/** The host command of a recovery: side by side into a staging database, or the whole cluster in place. */
export const POINT_IN_TIME_HOST_COMMANDS = {
  'point-in-time-restore': hostCommand({
    request: z.object({ script: z.literal('point-in-time-restore'), plan: pointInTimePlanSchema }),
    script: 'point-in-time-restore',
    params: (config, target: Target, { plan }) => {
      const pg = pgbackrestOf(target);
      return {
        ...postgresParams(target),
        ...pgbackrestParams(config, target),
        KB_SOURCE: plan.source,
        // The vault's copy of the repository, read by restore and info (and by the archive-get
        // of the restore_command restore writes); empty: the conf's, the backup bucket.
        KB_REPOSITORY_OPTIONS:
          plan.source === 'primary'
            ? ''
            : pgbackrestPlaceOptions(config, placeOf(config, plan.source)).join('\n'),
        KB_SCOPE: plan.scope,
        KB_SET: plan.base.label,
        KB_TARGET_TIME: plan.targetTime === 'latest' ? '' : recoveryTargetTime(plan.targetTime),
        // Production's timeline at the target time; "latest" follows the newest.
        KB_TARGET_TIMELINE: plan.targetTime === 'latest' ? '' : String(plan.wal.timeline),
        // The WAL replayed: PostgreSQL ends a replay, as silently as at the end of the WAL, at the
        // first segment archive-get cannot read (cut short, a transient error), so a recovery to
        // "latest" must reach the newest listed (wal.to), and a whole-cluster recovery reads each
        // before PostgreSQL is stopped, along the timelines "TIMELINE:FIRST-SEGNO" of the path.
        KB_WAL_FROM: plan.wal.from,
        KB_WAL_TO: plan.wal.to ?? '',
        KB_WAL_PATH: plan.wal.path.map((span) => `${span.timeline}:${span.firstSegno}`).join(' '),
        KB_WAL_SEGMENT_BYTES: String(plan.wal.segmentBytes),
        KB_RUN: plan.runId,
        KB_ARCHIVE_WAIT_SECONDS: String(WAL_ARCHIVE_MAX_AGE_SECONDS),
        // The host command's own deadline bounds the whole run; replay may take most of it.
        KB_RECOVERY_WAIT_SECONDS: String(config.HOST_COMMAND_TIMEOUT_SECONDS),
        KB_JOBS: String(pg.processMax),
        KB_DATABASE: plan.database ?? '',
        KB_STAGING: plan.stagingDatabase,
        KB_ABSENT: plan.overProduction || plan.targetDatabase === null ? '' : plan.targetDatabase,
        // pgBackRest's own role: a superuser of the restored cluster too.
        KB_SCRATCH_USER: pg.user ?? pg.osUser,
        ...recoveryPlaces(target, plan.runId),
      };
    },
  }),
};

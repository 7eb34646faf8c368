import { WalContinuityError } from '../core/errors.ts';

/**
 * WAL segment arithmetic, as PostgreSQL names its segments (access/xlog_internal.h
 * XLogFileName): `TTTTTTTTLLLLLLLLSSSSSSSS`, the timeline, then the segment's
 * number split into a log id (the high 32 bits of its LSN) and the segment within
 * that log id. With the default 16 MiB segments a log id holds 256 of them
 * (…00 to …FF); with 1 GiB segments, 4. The size is the cluster's
 * `wal_segment_size`, fixed at initdb: the host reports it, never assumed.
 */

/** A segment's place in the WAL: its timeline, and its number since the cluster began (LSN ÷ segment size). */
export interface WalSegment {
  timeline: number;
  segno: number;
}

const LOG_ID_BYTES = 0x1_0000_0000;
const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;

/**
 * Segments per log id for a `wal_segment_size` in bytes: a power of two from
 * 1 MiB to 1 GiB (what initdb accepts), else a WalContinuityError.
 */
export function segmentsPerLogId(segmentSize: number): number {
  const valid =
    Number.isInteger(segmentSize) &&
    segmentSize >= 1 << 20 &&
    segmentSize <= 1 << 30 &&
    (segmentSize & (segmentSize - 1)) === 0;
  if (!valid)
    throw new WalContinuityError(
      `wal_segment_size ${segmentSize} is not a power of two from 1 MiB to 1 GiB, as PostgreSQL requires; the host's report is wrong. Check the host runs this deployment's scripts.`,
    );
  return LOG_ID_BYTES / segmentSize;
}

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

/** A timeline's history file name (`00000002.history`), as PostgreSQL and pgBackRest store it. */
export function historyFileName(timeline: number): string {
  return `${hex8(timeline)}.history`;
}

/** The 24-character file name of a segment. */
export function segmentName(segment: WalSegment, segmentSize: number): string {
  const perLogId = segmentsPerLogId(segmentSize);
  return `${hex8(segment.timeline)}${hex8(Math.floor(segment.segno / perLogId))}${hex8(segment.segno % perLogId)}`;
}

/** A segment's file name read back; a name that is not one (or names a segment past its log id's last) throws. */
export function parseSegmentName(name: string, segmentSize: number): WalSegment {
  const match = SEGMENT_NAME.exec(name);
  const perLogId = segmentsPerLogId(segmentSize);
  const [timeline, logId, segment] = (match?.slice(1) ?? []).map((part) => Number.parseInt(part, 16));
  if (timeline === undefined || logId === undefined || segment === undefined || segment >= perLogId)
    throw new WalContinuityError(
      `"${name}" is not the name of a WAL segment of ${segmentSize / (1 << 20)} MiB (TTTTTTTTLLLLLLLLSSSSSSSS, the last part below ${hex8(perLogId)}).`,
    );
  return { timeline, segno: logId * perLogId + segment };
}

/** The number of the segment holding an LSN (`16/B374D848`). */
export function segnoOfLsn(lsn: string, segmentSize: number): number {
  const match = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(lsn);
  if (!match) throw new WalContinuityError(`"${lsn}" is not a WAL location (an LSN like 16/B374D848).`);
  const [high, low] = [match[1], match[2]].map((part) => Number.parseInt(part ?? '', 16)) as [number, number];
  // Exact in doubles: the high word's share is an integer count of segments.
  return high * segmentsPerLogId(segmentSize) + Math.floor(low / segmentSize);
}

/** One timeline on the way to the current one: the WAL from `firstSegno` on is read from it, up to the next one's. */
export interface TimelineSpan {
  timeline: number;
  firstSegno: number;
}

/**
 * The timelines whose WAL a recovery to the newest point of `timeline` replays,
 * oldest first, from that timeline's history file (`0000000N.history`: one line
 * per ancestor, `<parent timeline> <switch point LSN> <reason>`; PostgreSQL's
 * timeline.c). A timeline begins at its parent's switch point; the segment
 * holding the switch point is read from the new timeline, whose copy of it
 * carries the parent's WAL up to that point (xlogrecovery.c
 * XLogFileReadAnyTLI), so the parent's own copy of it (`.partial`) is not needed.
 */
export function timelinePath(
  timeline: number,
  history: string | undefined,
  segmentSize: number,
): TimelineSpan[] {
  if (timeline === 1) return [{ timeline: 1, firstSegno: 0 }];
  if (history === undefined)
    throw new WalContinuityError(
      `Timeline ${timeline} needs its history file to tell which WAL leads to it.`,
    );
  const ancestors = history
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [parent, switchPoint] = line.split(/\s+/);
      const tli = Number(parent);
      if (!Number.isInteger(tli) || tli < 1 || tli >= timeline || switchPoint === undefined)
        throw new WalContinuityError(
          `The history file of timeline ${timeline} has a line that is not "<parent timeline> <switch point> <reason>": "${line.slice(0, 100)}".`,
        );
      return { timeline: tli, endSegno: segnoOfLsn(switchPoint, segmentSize) };
    });
  if (ancestors.length === 0)
    throw new WalContinuityError(`The history file of timeline ${timeline} lists no parent timeline.`);
  const spans: TimelineSpan[] = [];
  let firstSegno = 0;
  for (const ancestor of ancestors) {
    spans.push({ timeline: ancestor.timeline, firstSegno });
    firstSegno = ancestor.endSegno;
  }
  spans.push({ timeline, firstSegno });
  return spans;
}

/** The timeline a recovery reads segment `segno` from: the newest on the path that had begun by then. */
export function timelineAt(path: readonly TimelineSpan[], segno: number): number {
  let timeline = path[0]?.timeline ?? 1;
  for (const span of path) if (span.firstSegno <= segno) timeline = span.timeline;
  return timeline;
}

/**
 * Whether WAL starting at `segment` leads to the path's last timeline: it lies on
 * one of the path's timelines, between that timeline's start and its switch
 * point (a backup taken on a timeline later abandoned does not).
 */
export function isOnPath(path: readonly TimelineSpan[], segment: WalSegment): boolean {
  const index = path.findIndex((span) => span.timeline === segment.timeline);
  const span = path[index];
  const next = path[index + 1];
  return (
    span !== undefined &&
    segment.segno >= span.firstSegno &&
    (next === undefined || segment.segno <= next.firstSegno)
  );
}

/**
 * The names of every segment a recovery replays from `from` to `to` (both
 * included), in order: ascending numbers, and the timeline of each from the
 * path. Timelines only grow along a path, so the names ascend as S3 lists keys.
 */
export function* expectedSegments(
  path: readonly TimelineSpan[],
  from: number,
  to: number,
  segmentSize: number,
): Generator<string> {
  for (let segno = from; segno <= to; segno += 1)
    yield segmentName({ timeline: timelineAt(path, segno), segno }, segmentSize);
}

/** A segment found in the repository, and when it was stored there (the object's LastModified). */
export interface ArchivedSegment {
  name: string;
  archivedAt: Date;
}

/** A run of consecutive missing segments, with the segments found just before and after it. */
export interface WalGap {
  first: string;
  last: string;
  count: number;
  before: ArchivedSegment | undefined;
  after: ArchivedSegment | undefined;
}

export interface SegmentCheck {
  /** Segments expected. */
  expected: number;
  missing: number;
  /** Runs of missing segments. */
  gaps: number;
  firstGap: WalGap | undefined;
  /** The first `listGaps` gaps (findGaps' option), in order; empty without it. */
  gapList: WalGap[];
  /** The last expected segment found (the newest the check proved). */
  newest: ArchivedSegment | undefined;
}

/**
 * Walks the expected names and the repository's listing side by side, both
 * ascending, holding one of each at a time: memory stays flat however many
 * segments 35 days of WAL are. Stops reading the listing past the last expected
 * name. Anything listed that is not expected (another timeline's segments,
 * `.partial` and `.backup` files) is passed over.
 */
export async function findGaps(
  expected: Iterable<string>,
  listed: AsyncIterable<ArchivedSegment>,
  options: { listGaps?: number } = {},
): Promise<SegmentCheck> {
  const listing = listed[Symbol.asyncIterator]();
  const result: SegmentCheck = {
    expected: 0,
    missing: 0,
    gaps: 0,
    firstGap: undefined,
    gapList: [],
    newest: undefined,
  };
  let current = await listing.next();
  let previous: ArchivedSegment | undefined;
  let open: WalGap | undefined;
  try {
    for (const name of expected) {
      result.expected += 1;
      while (!current.done && current.value.name < name) current = await listing.next();
      if (!current.done && current.value.name === name) {
        if (open) open.after = current.value;
        open = undefined;
        previous = current.value;
        result.newest = current.value;
        continue;
      }
      result.missing += 1;
      if (open) {
        open.last = name;
        open.count += 1;
      } else {
        result.gaps += 1;
        open = { first: name, last: name, count: 1, before: previous, after: undefined };
        result.firstGap ??= open;
        if (result.gapList.length < (options.listGaps ?? 0)) result.gapList.push(open);
      }
    }
  } finally {
    await listing.return?.();
  }
  return result;
}

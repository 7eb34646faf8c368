import { GetObjectCommand, NoSuchKey, type S3Client } from '@aws-sdk/client-s3';
import { objectsUnder } from '../catalog/catalog.ts';
import { type Config, findTarget } from '../core/config.ts';
import { classifyAwsError, NotFoundError, WalContinuityError } from '../core/errors.ts';
import { parseInput } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { pgbackrestArchivePrefix, pgbackrestOf } from '../host/pgbackrest-conf.ts';
import { type WalProofScope, type WalSwitchFacts, walPlanSchema, walSwitchFactsSchema } from './wal-plan.ts';
import {
  type ArchivedSegment,
  expectedSegments,
  findGaps,
  historyFileName,
  isOnPath,
  parseSegmentName,
  type SegmentCheck,
  segmentName,
  type TimelineSpan,
  timelineAt,
  timelinePath,
  type WalGap,
} from './wal-segments.ts';

/** What CheckWalContinuity gets: the run's plan and what its WAL switch reported. */
export const continuityRequestSchema = z.object({ plan: walPlanSchema, facts: z.unknown() });

/** What the proof covered; small, for the execution's state. */
export interface WalContinuity {
  target: string;
  archiveId: string;
  /** The backup the proof starts at, or null when the repository holds none on this timeline yet (then its oldest segment). */
  backup: string | null;
  from: string;
  to: string;
  /** Segments proven present, `from` to `to`. */
  segments: number;
  timelines: number[];
  /** When the newest of them, `to`, was stored in the repository. */
  newestArchivedAt: string | null;
}

// `<first 16 hex>/<segment>-<sha1>[.<compression>]`: a pushed segment; `.partial`,
// `.backup` and `.history` files do not match.
const SEGMENT_OBJECT = /^([0-9A-F]{16})\/(\1[0-9A-F]{8})-[0-9a-f]{40}(?:\.[a-z0-9]+)?$/;

/**
 * The segments under one archive id's prefix, ascending (S3 lists keys in
 * UTF-8 binary order, which for these upper-case hex names is the WAL's),
 * from just before `first`. Pages are read as they are consumed and dropped
 * once yielded; stopping the iteration stops the listing.
 */
async function* archivedSegments(
  s3: S3Client,
  bucket: string,
  prefix: string,
  first: string,
  pageSize: number,
): AsyncGenerator<ArchivedSegment> {
  // The first segment's key is this plus `-<sha1>…`, so it sorts right after.
  const startAfter = `${prefix}${first.slice(0, 16)}/${first}`;
  for await (const object of objectsUnder(s3, bucket, prefix, { startAfter, pageSize })) {
    const name = SEGMENT_OBJECT.exec(object.Key?.slice(prefix.length) ?? '')?.[2];
    if (name !== undefined && object.LastModified) yield { name, archivedAt: object.LastModified };
  }
}

/** A timeline's history file, as pgBackRest stored it (uncompressed: only segments are compressed). */
async function readHistory(s3: S3Client, bucket: string, key: string): Promise<string> {
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await object.Body?.transformToString('utf-8')) ?? '';
  } catch (error) {
    if (error instanceof NoSuchKey)
      throw new WalContinuityError(
        `The timeline history file s3://${bucket}/${key} is missing from the repository, so no recovery can follow the WAL onto that timeline. Push it again from the host's pg_wal (pgbackrest archive-push pg_wal/${key.split('/').pop()}), then run this again.`,
      );
    throw classifyAwsError(error, `Reading s3://${bucket}/${key}`);
  }
}

const iso = (date: Date | undefined) => date?.toISOString() ?? null;

/**
 * Where the proof starts: for a run that proves the newest backup's WAL, that
 * backup's archive start when its WAL leads to now; otherwise the oldest kept
 * backup whose WAL leads to now, else the repository's oldest segment.
 */
function startOf(facts: WalSwitchFacts, path: readonly TimelineSpan[], size: number, proves: WalProofScope) {
  const newest = facts.newestBackup && {
    ...facts.newestBackup,
    start: parseSegmentName(facts.newestBackup.archiveStart, size),
  };
  if (proves === 'newest-backup' && newest && isOnPath(path, newest.start))
    return { segno: newest.start.segno, backup: newest };
  const backup = facts.backups
    .map((b) => ({ ...b, start: parseSegmentName(b.archiveStart, size) }))
    .filter((b) => isOnPath(path, b.start))
    .sort((a, b) => a.start.segno - b.start.segno)[0];
  if (backup) return { segno: backup.start.segno, backup };
  // No backup yet (a new stanza): prove what is kept. That no backup exists is
  // the daily verification's finding, not this 15-minute run's.
  const min = facts.archive?.min ? parseSegmentName(facts.archive.min, size) : undefined;
  return {
    segno: min && isOnPath(path, min) ? min.segno : (path.at(-1)?.firstSegno ?? 0),
    backup: undefined,
  };
}

/** The first gap in words: the segment, and when its changes were written, from its neighbours' object times. */
function describeGap(
  gap: WalGap,
  check: SegmentCheck,
  where: string,
  backup: { label: string; startedAt: string } | undefined,
  /** A backup begun after the gap, on the WAL's path, if there is one. */
  newerBackup: { label: string; startedAt: string } | undefined,
) {
  const { before, after } = gap;
  const since = before
    ? `after about ${iso(before.archivedAt)} (when ${before.name} was archived)`
    : backup
      ? `after the backup ${backup.label} began at ${backup.startedAt}`
      : 'at the start of what the repository keeps';
  const until = after
    ? `before about ${iso(after.archivedAt)} (when ${after.name}, the next segment found, was archived)`
    : 'up to now: no later segment is in the repository';
  const run = gap.count > 1 ? `; the gap runs to ${gap.last} (${gap.count} segments)` : '';
  const more = check.gaps > 1 ? `; ${check.missing} segments are missing in all, in ${check.gaps} gaps` : '';
  const lost = `WAL segment ${gap.first} is missing from the repository (${where}): the changes written ${since} and ${until} cannot be replayed${run}${more}. A recovery from ${backup ? `the backup ${backup.label}` : 'this repository'} stops before them. Restore the object from the bucket's earlier versions if it is there`;
  // A backup begun after the gap recovers whole from there on: only the older windows are broken,
  // and taking another full would change nothing of them.
  if (newerBackup)
    return `${lost}; otherwise the windows before the backup ${newerBackup.label} (begun ${newerBackup.startedAt}) cannot be recovered across the gap, while recoveries from that backup on are whole (the transaction-logs runs prove them). This finding stays until the backups before the gap expire from the point-in-time window; find out how the segment was lost.`;
  return `${lost}; otherwise take a full backup now (database-backup with {"kind": "full"}) so that recovery can start after the gap, and find out how the segment was lost.`;
}

/**
 * Proves that every WAL segment a recovery replays, from the oldest kept
 * backup's archive start to the segment the host just switched (and saw
 * archived), is in the repository: a listing of the archive id's prefix in S3,
 * paginated and compared as it streams, so memory stays flat. Follows the
 * timelines of the switched segment's history (read from the repository); a
 * backup on an abandoned timeline is passed over. Throws WalContinuityError
 * naming the first missing segment and when its changes were written (between
 * its neighbours' object times); ConfigError for a target without pgBackRest.
 */
export async function checkWalContinuity(
  s3: S3Client,
  config: Config,
  request: unknown,
  options: { pageSize?: number } = {},
): Promise<WalContinuity> {
  const { plan, facts: reported } = parseInput(
    continuityRequestSchema,
    request,
    'The CheckWalContinuity request',
  );
  const facts = parseInput(walSwitchFactsSchema, reported, "The WAL switch's report");
  const target = findTarget(config, plan.target);
  if (!target)
    throw new NotFoundError(
      `The plan names target "${plan.target}", which is not configured; start a new execution.`,
    );
  // A target without pgBackRest has no repository: a ConfigError that says how to give it one.
  pgbackrestOf(target);
  const bucket = config.BACKUP_BUCKET;
  const size = facts.walSegmentSize;
  const end = parseSegmentName(facts.segment, size);
  const archive = facts.archive;
  if (!archive?.max || archive.max < facts.segment) {
    throw new WalContinuityError(
      `PostgreSQL reports WAL segment ${facts.segment} of ${target.name} archived, but pgBackRest's info lists the archive ${archive ? `${archive.id} only up to ${archive.max ?? 'nothing'}` : 'of no current database'}: archive_command is not pushing to this repository. Start the prepare-host workflow for ${target.name}, then run this again.`,
    );
  }
  const prefix = pgbackrestArchivePrefix(target.name, archive.id);
  const path = timelinePath(
    end.timeline,
    end.timeline > 1 ? await readHistory(s3, bucket, `${prefix}${historyFileName(end.timeline)}`) : undefined,
    size,
  );
  const start = startOf(facts, path, size, plan.proves);
  if (start.segno > end.segno)
    throw new WalContinuityError(
      `The oldest segment to prove, ${segmentName({ timeline: timelineAt(path, start.segno), segno: start.segno }, size)}, comes after the switched one, ${facts.segment}: the host's report does not add up. Check the host runs this deployment's scripts.`,
    );
  const expected = () => expectedSegments(path, start.segno, end.segno, size);
  const [from] = expected();
  const check = await findGaps(
    expected(),
    archivedSegments(s3, bucket, prefix, from ?? facts.segment, options.pageSize ?? 1000),
  );
  if (check.firstGap) {
    const newest = facts.newestBackup && parseSegmentName(facts.newestBackup.archiveStart, size);
    const gapEnd = parseSegmentName(check.firstGap.last, size);
    const newerBackup =
      newest && isOnPath(path, newest) && newest.segno > gapEnd.segno ? facts.newestBackup : null;
    throw new WalContinuityError(
      describeGap(check.firstGap, check, `s3://${bucket}/${prefix}`, start.backup, newerBackup ?? undefined),
    );
  }
  return {
    target: target.name,
    archiveId: archive.id,
    backup: start.backup?.label ?? null,
    from: from ?? facts.segment,
    to: facts.segment,
    segments: check.expected,
    // The timelines the proven segments were read from: each span up to where the next begins.
    timelines: path
      .filter(
        (span, i) => span.firstSegno <= end.segno && (path[i + 1]?.firstSegno ?? Infinity) > start.segno,
      )
      .map((span) => span.timeline),
    newestArchivedAt: iso(check.newest?.archivedAt),
  };
}

import { describe, expect, it } from 'vitest';
import {
  type ArchivedSegment,
  expectedSegments,
  findGaps,
  isOnPath,
  parseSegmentName,
  segmentName,
  segmentsPerLogId,
  segnoOfLsn,
  timelineAt,
  timelinePath,
} from '../../shared/backup/wal-segments.ts';
import { WalContinuityError } from '../../shared/core/errors.ts';

const MIB16 = 16 * 1024 * 1024;
const GIB = 1024 * 1024 * 1024;

/** The listing of a repository holding these names, each archived a minute after the one before. */
async function* listing(names: string[]): AsyncGenerator<ArchivedSegment> {
  for (const [i, name] of names.entries()) yield { name, archivedAt: new Date(Date.UTC(2026, 10, 26, 2, i)) };
}

describe('WAL segment names', () => {
  it('split a segment number into log id and segment: 256 of 16 MiB per log id, 4 of 1 GiB', () => {
    expect(segmentsPerLogId(MIB16)).toBe(256);
    expect(segmentsPerLogId(GIB)).toBe(4);
    expect(segmentName({ timeline: 1, segno: 255 }, MIB16)).toBe('0000000100000000000000FF');
    expect(segmentName({ timeline: 1, segno: 256 }, MIB16)).toBe('000000010000000100000000');
    expect(segmentName({ timeline: 0x1a, segno: 3 * 256 + 0x2b }, MIB16)).toBe('0000001A000000030000002B');
    expect(segmentName({ timeline: 1, segno: 3 }, GIB)).toBe('000000010000000000000003');
    expect(segmentName({ timeline: 1, segno: 4 }, GIB)).toBe('000000010000000100000000');
  });

  it('read back the segment they name, and refuse what no segment is called', () => {
    for (const segno of [0, 1, 254, 255, 256, 257, 65_535, 2 ** 40 - 1]) {
      const name = segmentName({ timeline: 7, segno }, MIB16);
      expect(parseSegmentName(name, MIB16)).toEqual({ timeline: 7, segno });
    }
    // Past the last segment of a log id: 0x100 of 16 MiB, 0x04 of 1 GiB.
    expect(() => parseSegmentName('000000010000000000000100', MIB16)).toThrow(WalContinuityError);
    expect(() => parseSegmentName('000000010000000000000004', GIB)).toThrow(/below 00000004/);
    expect(() => parseSegmentName('000000010000000000000004.00000028.backup', MIB16)).toThrow(
      /is not the name of a WAL segment/,
    );
    expect(() => parseSegmentName('00000001000000000000000a', MIB16)).toThrow(WalContinuityError);
    expect(() => segmentsPerLogId(3 * MIB16)).toThrow(/power of two from 1 MiB to 1 GiB/);
  });

  it('place an LSN in its segment', () => {
    expect(segnoOfLsn('0/5000000', MIB16)).toBe(5);
    expect(segnoOfLsn('0/4FFFFFF', MIB16)).toBe(4);
    expect(segnoOfLsn('1/0', MIB16)).toBe(256);
    expect(segnoOfLsn('1/FF000028', MIB16)).toBe(511);
    expect(segnoOfLsn('FFFFFFFF/FFFFFFFF', MIB16)).toBe(2 ** 40 - 1);
    expect(segnoOfLsn('2/40000000', GIB)).toBe(9);
    expect(() => segnoOfLsn('0x5000000', MIB16)).toThrow(/is not a WAL location/);
  });
});

describe('timelines', () => {
  // Timeline 3 branched from 2 in segment 5, which branched from 1 in segment 3 (PostgreSQL's history file format).
  const HISTORY_3 =
    '1\t0/3000090\tbefore 2026-11-26 02:00:00+00\n\n2\t0/5000000\tno recovery target specified\n';
  const path = timelinePath(3, HISTORY_3, MIB16);

  it("follow the history file: each timeline from its parent's switch point on", () => {
    expect(timelinePath(1, undefined, MIB16)).toEqual([{ timeline: 1, firstSegno: 0 }]);
    expect(path).toEqual([
      { timeline: 1, firstSegno: 0 },
      { timeline: 2, firstSegno: 3 },
      { timeline: 3, firstSegno: 5 },
    ]);
    // The segment holding a switch point is read from the new timeline.
    expect([0, 2, 3, 4, 5, 9].map((segno) => timelineAt(path, segno))).toEqual([1, 1, 2, 2, 3, 3]);
  });

  it('tell the WAL that leads to the current timeline from an abandoned branch', () => {
    expect(isOnPath(path, { timeline: 1, segno: 2 })).toBe(true);
    // A backup that began on timeline 1 in the segment where 2 branched off still leads there.
    expect(isOnPath(path, { timeline: 1, segno: 3 })).toBe(true);
    expect(isOnPath(path, { timeline: 1, segno: 4 })).toBe(false);
    expect(isOnPath(path, { timeline: 2, segno: 4 })).toBe(true);
    expect(isOnPath(path, { timeline: 2, segno: 6 })).toBe(false);
    expect(isOnPath(path, { timeline: 3, segno: 4 })).toBe(false);
    expect(isOnPath(path, { timeline: 3, segno: 700 })).toBe(true);
    expect(isOnPath(path, { timeline: 4, segno: 6 })).toBe(false);
  });

  it('name the segments a recovery replays across them, in the order S3 lists them', () => {
    const names = [...expectedSegments(path, 2, 6, MIB16)];
    expect(names).toEqual([
      '000000010000000000000002',
      '000000020000000000000003',
      '000000020000000000000004',
      '000000030000000000000005',
      '000000030000000000000006',
    ]);
    expect([...names].sort()).toEqual(names);
  });

  it('refuse a history file that does not lead to its timeline', () => {
    expect(() => timelinePath(2, undefined, MIB16)).toThrow(/needs its history file/);
    expect(() => timelinePath(2, '# nothing\n', MIB16)).toThrow(/lists no parent timeline/);
    expect(() => timelinePath(2, '3\t0/5000000\tlater\n', MIB16)).toThrow(/has a line that is not/);
  });
});

describe('findGaps', () => {
  const names = (from: number, to: number, timeline = 1) =>
    Array.from({ length: to - from + 1 }, (_, i) => segmentName({ timeline, segno: from + i }, MIB16));

  it('finds every expected segment of an unbroken archive, across a log id', async () => {
    const expected = names(250, 260);
    const check = await findGaps(expected, listing(expected));
    expect(check).toMatchObject({ expected: 11, missing: 0, gaps: 0, firstGap: undefined });
    expect(check.newest?.name).toBe('000000010000000100000004');
  });

  it('names the first gap at a log-id boundary, with the segments around it and their times', async () => {
    const expected = names(0xfd, 0x102);
    const stored = expected.filter(
      (n) => !['0000000100000000000000FF', '000000010000000100000000'].includes(n),
    );
    const check = await findGaps(expected, listing(stored));
    expect(check).toMatchObject({ expected: 6, missing: 2, gaps: 1 });
    expect(check.firstGap).toEqual({
      first: '0000000100000000000000FF',
      last: '000000010000000100000000',
      count: 2,
      before: { name: '0000000100000000000000FE', archivedAt: new Date('2026-11-26T02:01:00Z') },
      after: { name: '000000010000000100000001', archivedAt: new Date('2026-11-26T02:02:00Z') },
    });
  });

  it('counts every gap, names the first; a gap at either end has one neighbour', async () => {
    const expected = names(1, 10);
    const stored = ['000000010000000000000002', '000000010000000000000004', '000000010000000000000005'];
    const check = await findGaps(expected, listing(stored));
    expect(check).toMatchObject({ expected: 10, missing: 7, gaps: 3 });
    expect(check.firstGap).toMatchObject({ first: '000000010000000000000001', count: 1, before: undefined });
    expect(check.firstGap?.after?.name).toBe('000000010000000000000002');
    expect(check.newest?.name).toBe('000000010000000000000005');
  });

  it("does not take a segment of an abandoned timeline for the current timeline's", async () => {
    const path = timelinePath(2, '1\t0/3000000\tpromoted\n', MIB16);
    const expected = [...expectedSegments(path, 1, 5, MIB16)];
    // Timeline 1 went on to segment 5 before it was abandoned; timeline 2 lost its segment 4.
    const stored = [...names(1, 5, 1), '000000020000000000000003', '000000020000000000000005'].sort();
    const check = await findGaps(expected, listing(stored));
    expect(check.firstGap).toMatchObject({ first: '000000020000000000000004', count: 1 });
    expect(check.missing).toBe(1);
  });

  it('stops reading the listing past the last expected segment', async () => {
    let read = 0;
    let closed = false;
    async function* endless(): AsyncGenerator<ArchivedSegment> {
      try {
        for (let segno = 0; ; segno += 1) {
          read += 1;
          yield { name: segmentName({ timeline: 1, segno }, MIB16), archivedAt: new Date(0) };
        }
      } finally {
        closed = true;
      }
    }
    const check = await findGaps(names(3, 6), endless());
    expect(check.missing).toBe(0);
    expect(read).toBe(7);
    expect(closed).toBe(true);
  });
});

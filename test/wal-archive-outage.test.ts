import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_BUCKET } from '../local/environment.ts';
import { type LocalS3, startLocalS3 } from '../local/s3.ts';
import { runIn, startWorld, type TestWorld } from './support/environment.ts';
import {
  archiverRow,
  commitAndSwitch,
  restartPostmaster,
  segmentsInRepository,
  segmentsWaiting,
  until,
} from './support/wal.ts';

/**
 * The repository's S3 stopped for a while, for real: the local S3 is a process
 * this file starts, stops and starts again on the same port. PostgreSQL keeps
 * every segment it could not archive; the monitoring alerts during the outage,
 * and once S3 is back every segment arrives and the next run names the failure.
 */

let dir: string;
let s3: LocalS3;
let world: TestWorld;

const startS3 = (port?: number) =>
  startLocalS3(join(dir, 's3'), LOCAL_BUCKET, join(dir, 'tls'), port === undefined ? {} : { port });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kennel-backup-wal-'));
  s3 = await startS3();
  world = await startWorld({ s3Endpoint: s3.endpoint, s3CaBundle: s3.caFile });
  // pgBackRest retries a repository that does not answer four times per request, 60 s each by
  // default; 2 s here, so that PostgreSQL records the failure in seconds.
  restartPostmaster(world, { PGBACKREST_IO_TIMEOUT: '2' });
});

afterAll(async () => {
  await world?.stop();
  await s3?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const monitor = () =>
  runIn(world, { workflow: 'monitoring', input: {}, functionEnv: { DISK_USAGE_ALERT_PERCENT: '100' } });

describe('the repository unreachable: its S3 stopped', () => {
  it('PostgreSQL keeps the segments and the run alerts at once; once S3 is back every segment arrives, and the next run names the failure', async () => {
    const before = commitAndSwitch(world);
    await until(`${before} archived`, () => (archiverRow(world).last_archived_wal ?? '') >= before);
    const { port } = new URL(s3.endpoint);

    await s3.stop();
    // Rows committed while S3 is down, in three segments.
    const written = [commitAndSwitch(world, 200), commitAndSwitch(world, 200), commitAndSwitch(world, 200)];
    const [first] = written;
    await until(`a failure to archive ${first}`, () => archiverRow(world).last_failed_wal === first);
    // PostgreSQL keeps each of them until it is archived.
    expect(segmentsWaiting(world)).toEqual(expect.arrayContaining(written));

    // The every-minute age keeps coming (it needs no S3): the archive is behind since `before`.
    const measured = await runIn(world, { workflow: 'wal-archive-age', input: {} });
    expect(measured.record.status, measured.record.cause).toBe('SUCCEEDED');
    const { ages } = measured.record.output as { ages: { target: string; ageSeconds: number }[] };
    expect(ages[0]?.ageSeconds).toBeGreaterThan(0);

    // The hourly run alerts within the outage: the catalog in S3 does not answer.
    const during = await monitor();
    expect(during.record.status).toBe('FAILED');
    expect(during.record.error).toBe('TransientError');
    expect(during.alerts).toHaveLength(1);
    expect(during.alerts[0]?.text).toContain('State: PlanMonitoring');

    // S3 back on the same endpoint: the archiver retries (a new segment wakes it at once).
    s3 = await startS3(Number(port));
    const after = commitAndSwitch(world);
    await until(`${after} archived`, () => (archiverRow(world).last_archived_wal ?? '') >= after);
    expect(segmentsWaiting(world)).toEqual([]);
    // Nothing lost: every segment from before the outage to after it is in the repository.
    const inRepository = await segmentsInRepository(world);
    for (const segment of [before, ...written, after]) expect(inRepository, segment).toContain(segment);
    const span = inRepository.filter((s) => s >= before && s <= after);
    const numbers = span.map((s) => Number.parseInt(s.slice(16), 16));
    expect(numbers).toEqual(numbers.map((_, i) => (numbers[0] ?? 0) + i));

    // The next run names the failure of the past hour: the segment, and the server log's reason.
    const next = await monitor();
    expect(next.record.status).toBe('FAILED');
    expect(next.record.cause).toContain(
      `- WAL archiving on local: failed within the last hour: WAL segment ${first} could not be archived at`,
    );
    expect(next.record.cause).toMatch(
      new RegExp(
        `PostgreSQL's log: archive command failed with exit code \\d+: ERROR: \\[\\d+\\]: .*unable to connect to 'localhost:${port}'.*Connection refused`,
      ),
    );
    expect(next.alerts[0]?.text).toContain(`WAL segment ${first} could not be archived`);
  });
});

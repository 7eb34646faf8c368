import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type TestWorld } from './support/environment.ts';
import { archivedSegments, stanzaInfo } from './support/pgbackrest.ts';

/**
 * Archiving is PostgreSQL's own, continuous: with archive_timeout at 60 s, a
 * committed change is in the repository within about a minute, with no backup
 * run and no switch of ours. In a file of its own, so that the minute it waits
 * overlaps the other files' tests, and nothing of ours switches a segment meanwhile.
 */

let world: TestWorld;

beforeAll(async () => {
  world = await startWorld();
  // PostgreSQL 15's checkpointer, which forces the archive_timeout switch, starts
  // while the server is still in recovery and then sleeps a whole
  // checkpoint_timeout (5 min) before it first looks at archive_timeout
  // (checkpointer.c: the sleep counts archive_timeout only once recovery is
  // over). A reload wakes it. Whatever restarts a cluster to turn archiving on
  // (startArchiving here, the prepare-host workflow on a host) should reload it
  // after the restart, or the first minutes' commits wait up to 5 min.
  world.sql('postgres', 'SELECT pg_reload_conf()');
});
afterAll(async () => {
  await world?.stop();
});

describe('continuous WAL archiving', () => {
  it("puts a commit's WAL segment in the repository within 75 s, with no backup run", async () => {
    const archiveId = (await stanzaInfo(world)).archive[0]?.id;
    if (!archiveId) throw new Error('the stanza has no archive');
    expect(world.sql('postgres', 'SHOW archive_timeout')).toBe('1min');
    world.sql(
      'kennel_prod',
      "INSERT INTO audit_logs (actor, action, entity) VALUES ('wal-test', 'commit', 'booking')",
    );
    const committed = Date.now();
    // The segment the commit record went to: the insert position right after it is in it, or past it.
    const segment = world.sql('kennel_prod', 'SELECT pg_walfile_name(pg_current_wal_insert_lsn())');

    // The bucket is polled without blocking: the archiver's pgBackRest talks to the local S3 meanwhile.
    let archived: Date | undefined;
    while (archived === undefined && Date.now() - committed < 75_000) {
      archived = (await archivedSegments(world, archiveId)).find((s) => s.name === segment)?.lastModified;
      if (archived === undefined) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    expect(archived, `segment ${segment} is not in the repository 75 s after the commit`).toBeDefined();
    expect(world.sql('postgres', 'SELECT failed_count FROM pg_stat_archiver')).toBe('0');
  }, 90_000);
});

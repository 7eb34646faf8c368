import { spawnSync } from 'node:child_process';
import { zstdDecompressSync } from 'node:zlib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseManifest as Manifest } from '../shared/catalog/manifest.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';

let world: TestWorld;
beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world?.stop();
});

/** The row-window dump alone: a named database plans no pgBackRest run (test/physical-backup.test.ts has those). */
async function backup(kind: string, extra: Parameters<typeof runIn>[1] = {}) {
  const run = await runIn(world, { input: { kind, database: 'kennel_prod' }, ...extra });
  const manifestKey = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1];
  const manifest = manifestKey
    ? await world.catalog.readDatabaseManifest(manifestKey).catch(() => undefined)
    : undefined;
  return { run, manifest };
}

/** The rows of each COPY block of a changes archive, by table. */
async function archiveRows(manifest: Manifest): Promise<Record<string, string[]>> {
  const text = zstdDecompressSync(await getBytes(world.s3, world.env.bucket, manifest.archive.key)).toString(
    'utf8',
  );
  const rows: Record<string, string[]> = {};
  let table = '';
  let copying = false;
  for (const line of text.split('\n')) {
    if (copying) {
      if (line === '\\.') copying = false;
      else rows[table]?.push(line);
    } else if (line.startsWith('-- kennel-backup table: ')) {
      const marker = JSON.parse(line.slice('-- kennel-backup table: '.length)) as {
        schema: string;
        table: string;
      };
      table = `${marker.schema}.${marker.table}`;
      rows[table] = [];
    } else if (line === 'COPY kb_changes FROM stdin;') copying = true;
  }
  return rows;
}

const ids = (lines: string[] | undefined) => (lines ?? []).map((l) => l.split('\t')[0]);

function sql(query: string): string {
  return world.sql('kennel_prod', query);
}

describe('incremental backups', () => {
  it('leave no gap: every change is in exactly one verified archive, even across a failed run', async () => {
    const full = await backup('full');
    expect(full.run.record.status).toBe('SUCCEEDED');

    sql("UPDATE bookings SET notes = 'change A' WHERE id IN (1, 2, 3)");
    const first = await backup('incremental');
    expect(first.run.record.status).toBe('SUCCEEDED');
    expect(first.manifest?.window.since).toBe(full.manifest?.window.until);
    expect(first.manifest?.verification.state).toBe('verified');
    expect(first.manifest?.capture?.changedRows).toContain('public.bookings');
    expect(first.manifest?.capture?.wholeTables).toEqual(['public.kennel_sizes']);
    expect(first.manifest?.capture?.note).toContain('Deleted rows are not captured.');
    expect(first.manifest?.tables['public.bookings']).toBe(3);

    sql("UPDATE bookings SET notes = 'change B' WHERE id IN (4, 5)");
    const failed = await backup('incremental', {
      beforeTask: async (state, input) => {
        if (state !== 'VerifyArchive') return;
        const { archiveKey } = (input as { plan: { archiveKey: string } }).plan;
        await putBytes(world.s3, world.env.bucket, archiveKey, Buffer.from('not an archive'));
      },
    });
    expect(failed.run.record.status).toBe('FAILED');
    expect(failed.manifest?.verification.state).toBe('failed');

    sql("UPDATE bookings SET notes = 'change C' WHERE id IN (6, 1)");
    const third = await backup('incremental');
    expect(third.run.record.status).toBe('SUCCEEDED');
    // The failed run's window is not a watermark: the next one starts where the last good one ended.
    expect(third.manifest?.window.since).toBe(first.manifest?.window.until);

    const good = [first.manifest, third.manifest].filter((m): m is Manifest => m !== undefined);
    const perArchive = await Promise.all(
      good.map(async (m) => ids((await archiveRows(m))['public.bookings'])),
    );
    expect(perArchive[0]?.sort()).toEqual(['1', '2', '3']);
    expect(perArchive[1]?.sort()).toEqual(['1', '4', '5', '6']);
    // Booking 1 changed twice: its first version is in the first archive, its second in the third.
    const rows = await archiveRows(third.manifest as Manifest);
    expect(rows['public.bookings']?.find((l) => l.startsWith('1\t'))).toContain('change C');
  });

  it('apply on top of the full dump to give back the database as it was', async () => {
    const full = await backup('full');
    sql(
      "UPDATE payments SET status = 'refunded' WHERE id IN (SELECT id FROM payments WHERE status = 'succeeded' ORDER BY id LIMIT 5)",
    );
    sql(
      "INSERT INTO customers (first_name, last_name, email) VALUES ('Zoë', 'Ångström', 'zoe.incremental@example.com')",
    );
    const inc = await backup('incremental');
    expect(inc.run.record.status).toBe('SUCCEEDED');
    const checksum = (db: string) =>
      ['customers', 'payments', 'bookings'].map((t) =>
        world.sql(db, `SELECT md5(string_agg(x::text, ',' ORDER BY id)) FROM ${t} x`),
      );

    world.sql('postgres', 'CREATE DATABASE inc_apply');
    try {
      for (const m of [full.manifest, inc.manifest] as Manifest[]) {
        const text = zstdDecompressSync(await getBytes(world.s3, world.env.bucket, m.archive.key));
        const applied = spawnSync(
          'psql',
          ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '-d', 'inc_apply'],
          {
            input: text,
            env: { ...process.env, ...world.env.hostEnv },
            encoding: 'utf8',
          },
        );
        expect(applied.status, applied.stderr).toBe(0);
      }
      expect(checksum('inc_apply')).toEqual(checksum('kennel_prod'));
      // Sequences moved past the applied rows: the next insert does not collide.
      world.sql(
        'inc_apply',
        "INSERT INTO customers (first_name, last_name, email) VALUES ('New', 'Row', 'new.row@example.com')",
      );
    } finally {
      world.sql('postgres', 'DROP DATABASE inc_apply');
    }
  });

  it('leave a change of a transaction still open at the snapshot to the next window', async () => {
    await backup('incremental');
    const writer = new pg.Client({ connectionString: `${world.env.postgres.url}/kennel_prod` });
    await writer.connect();
    try {
      await writer.query('BEGIN');
      await writer.query("UPDATE bookings SET notes = 'in flight' WHERE id = 42");
      const during = await backup('incremental');
      expect(during.run.record.status).toBe('SUCCEEDED');
      expect(ids((await archiveRows(during.manifest as Manifest))['public.bookings'])).not.toContain('42');
      await writer.query('COMMIT');
      const after = await backup('incremental');
      expect(ids((await archiveRows(after.manifest as Manifest))['public.bookings'])).toContain('42');
    } finally {
      await writer.end();
    }
  });

  it('refuse a window given by hand that overlaps a backup, or starts in the future; nothing reaches the host', async () => {
    const last = (await world.catalog.list('incremental', 'local', 'kennel_prod')).at(-1) as Manifest;
    const overlap = new Date(Date.parse(last.window.until) - 60_000).toISOString();
    for (const [since, message] of [
      [overlap, `overlaps the incremental backup ${last.archive.key}`],
      ['2999-01-01T00:00:00Z', 'is in the future'],
    ] as const) {
      const run = await runIn(world, { input: { kind: 'incremental', database: 'kennel_prod', since } });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.error).toBe('InvalidInputError');
      expect(run.alerts[0]?.cause).toContain(message);
      expect(run.host.sent).toEqual([]);
    }
  });
});

describe('transaction-log backups', () => {
  it('carry every audit and session log row in exactly one archive across several runs', async () => {
    const archives: Manifest[] = [];
    for (let round = 0; round < 3; round += 1) {
      sql(
        `INSERT INTO audit_logs (actor, action, entity, entity_id, details) SELECT 'test', 'round-${round}', 'booking', g, '{}' FROM generate_series(1, ${5 + round}) g`,
      );
      const { run, manifest } = await backup('transaction-logs');
      expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
      expect(manifest?.verification.state).toBe('verified');
      expect(manifest?.archive.key).toMatch(/^database\/transaction-logs\/local\/kennel_prod\//);
      expect(Object.keys(manifest?.tables ?? {}).sort()).toEqual([
        'public.audit_logs',
        'public.session_logs',
      ]);
      archives.push(manifest as Manifest);
    }
    expect(archives[0]?.window.since).toBeNull();
    expect(archives[1]?.window.since).toBe(archives[0]?.window.until);
    expect(archives[2]?.window.since).toBe(archives[1]?.window.until);

    const all = (
      await Promise.all(archives.map(async (m) => ids((await archiveRows(m))['public.audit_logs'])))
    ).flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(Number(sql('SELECT count(*) FROM audit_logs')));
    const lastRound = ids((await archiveRows(archives[2] as Manifest))['public.audit_logs']);
    expect(lastRound).toHaveLength(7);
  });
});

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratchDirectoryOf } from '../shared/backup/physical-restore-test.ts';
import { compactStamp } from '../shared/catalog/keys.ts';
import type { Manifest } from '../shared/catalog/manifest.ts';
import { newestVerifiedPhysicalFull, writePhysicalRecord } from '../shared/catalog/physical.ts';
import { parseConfig } from '../shared/core/config.ts';
import { TamperedArchiveError } from '../shared/core/errors.ts';
import { planRestore } from '../shared/restore/database-plan.ts';
import { getBytes, putBytes, runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { pastBackup } from './support/manifests.ts';
import { pgbackrest } from './support/pgbackrest.ts';

let world: TestWorld;
const newest: Record<string, Manifest> = {};
const legacy = pastBackup({ daysAgo: 20, now: new Date(), kind: 'transaction-logs', target: 'local' });

async function backup(workflow: string, kind: string) {
  const run = await runIn(world, { workflow, input: { kind } });
  expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
  const key = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
  newest[kind] = await world.catalog.readManifest(key);
}

beforeAll(async () => {
  world = await startWorld();
  // The physical kinds' newest full, as pgBackRest's info reports it.
  await pgbackrest(world, 'backup', '--type=full');
  for (const kind of ['full', 'monthly']) await backup('database-backup', kind);
  // A row-window archive an earlier version made: listed as legacy, never read.
  await world.catalog.writeManifest(legacy);
  for (const kind of ['configuration', 'application', 'static']) await backup('files-backup', kind);
}, 120_000);
afterAll(async () => {
  await world?.stop();
});

const verify = () => runIn(world, { workflow: 'daily-verification', input: {} });

describe('the daily verification', () => {
  it('reports nothing for a clean catalog, and says what it checked', async () => {
    const run = await verify();
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(run.record.output).toEqual({
      checked: {
        // full and monthly dumps, and the three file kinds.
        newestBackups: 5,
        localCopies: 5,
        archivesReadBack: 5,
        repositoriesVerified: 1,
        walSegmentsProven: expect.any(Number),
        leftovers: 0,
      },
      findings: [],
      leftovers: [],
      legacy: [
        {
          state: 'legacy',
          kind: 'transaction-logs',
          target: 'local',
          database: 'kennel_prod',
          archives: 1,
          oldest: legacy.window.until.slice(0, 10),
          newest: legacy.window.until.slice(0, 10),
          note: expect.stringContaining('refused for every restore'),
        },
      ],
    });
    // From the full's first segment to the one the verification switched: at least the full's own.
    expect(
      (run.record.output as { checked: { walSegmentsProven: number } }).checked.walSegmentsProven,
    ).toBeGreaterThanOrEqual(2);
    expect(run.alerts).toEqual([]);
  });

  it('reports a target without pgBackRest settings every day: its database has no WAL protection', async () => {
    const targets = JSON.parse(world.env.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
    const run = await runIn(world, {
      workflow: 'daily-verification',
      input: {},
      functionEnv: { BACKUP_TARGETS: JSON.stringify(targets.map(({ pgbackrest: _, ...t }) => t)) },
    });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('VerificationFailedError');
    const problems = (run.record.cause ?? '').split('\n').filter((l) => l.startsWith('- '));
    expect(problems).toEqual([
      '- the WAL archive of local: The target "local" has no pgbackrest settings in BACKUP_TARGETS, so it has no physical backups and no WAL archiving: nothing but the daily logical dump protects its data (an RPO of a day, not a minute), and no point-in-time recovery is possible; add "pgbackrest": {"dataDirectory": "<the cluster\'s data directory>"} to it and start the prepare-host workflow.',
    ]);
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]?.text).toContain('has no pgbackrest settings');
  });

  it('a stale kind, a missing local copy, a corrupted archive and a replaced one: exactly those, in one alert', async () => {
    const stale = newest.static as Manifest;
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
    await world.catalog.writeManifest({ ...stale, window: { ...stale.window, until: twoDaysAgo } });
    rmSync(newest.configuration?.archive.localPath ?? '');
    const full = newest.full as Manifest;
    const bytes = await getBytes(world.s3, world.env.bucket, full.archive.key);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
    await putBytes(world.s3, world.env.bucket, full.archive.key, bytes);
    // The monthly dump replaced and its manifest's sha256 and size rewritten to match, as issue 13 found
    // database-restore would restore "sha256 matched". (The local S3 keeps no versions: the version its
    // backup wrote is gone with it, and test/immutability.test.ts restores it where S3 keeps versions.)
    const monthly = newest.monthly as Manifest;
    const original = await getBytes(world.s3, world.env.bucket, monthly.archive.key);
    const forged = Buffer.from('-- a forged dump\n');
    await putBytes(world.s3, world.env.bucket, monthly.archive.key, forged);
    const sha256 = createHash('sha256').update(forged).digest('hex');
    await world.catalog.writeManifest({
      ...monthly,
      archive: { ...monthly.archive, sha256, size: forged.length },
    });
    try {
      const restore = planRestore(
        parseConfig(world.env.functionEnv),
        { primary: world.catalog, vault: undefined },
        {
          input: { database: 'kennel_prod', targetDatabase: 'kennel_forged', backup: monthly.runId },
          executionId:
            'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-database-restore:forged',
          startedAt: new Date().toISOString(),
        },
      );
      await expect(restore).rejects.toThrow(TamperedArchiveError);
      await expect(restore).rejects.toThrow(
        `The manifest of s3://${world.env.bucket}/${monthly.archive.key} was changed after its backup: its manifest says sha256 ${sha256} (${forged.length} bytes), the record of its creation ${monthly.archive.sha256} (${monthly.archive.size} bytes). Its tables and sha256 cannot be trusted, so nothing was restored and nothing was changed.`,
      );

      const run = await verify();
      expect(run.record.status).toBe('FAILED');
      expect(run.record.error).toBe('VerificationFailedError');
      const cause = run.record.cause ?? '';
      expect(cause).toContain('5 problem(s) found:');
      const problems = cause.split('\n').filter((l) => l.startsWith('- '));
      expect(problems).toHaveLength(5);
      expect(problems[0]).toBe(
        `- static backup of the files on local: the newest verified one is from ${twoDaysAgo} (48.0 h ago); one is expected every 24 h`,
      );
      expect(problems[1]).toBe(
        `- configuration backup of the files on local: the host's copy ${newest.configuration?.archive.localPath} is missing`,
      );
      // The host's copy is checked against the manifest's sha256, which was rewritten: the next finding says why.
      expect(problems[2]).toBe(
        `- monthly backup of kennel_prod on local: the host's copy ${monthly.archive.localPath} differs from the verified archive`,
      );
      expect(problems[3]).toMatch(/^- full backup of kennel_prod on local: ArchiveCorruptError: /);
      expect(problems[4]).toContain(
        `- monthly backup of kennel_prod on local: TamperedArchiveError: The archive s3://${world.env.bucket}/${monthly.archive.key} was changed after its backup: its manifest says sha256 ${sha256} (${forged.length} bytes), the record of its creation ${monthly.archive.sha256} (${monthly.archive.size} bytes). The version its backup wrote does not read back intact either`,
      );
      expect(cause).toContain('a changed archive or manifest means someone replaced a backup');

      expect(run.alerts).toHaveLength(1);
      expect(run.alerts[0]?.text).toContain('State: ReportVerification');
      for (const line of problems) expect(run.alerts[0]?.text).toContain(line.slice(2, 60));
    } finally {
      await putBytes(world.s3, world.env.bucket, monthly.archive.key, original);
      await world.catalog.writeManifest(monthly);
    }
  });

  it("says so when the newest physical full's restore test failed", async () => {
    const full = await newestVerifiedPhysicalFull(world.catalog, 'local', { restoreTested: true });
    if (!full?.verification.restoreTest)
      throw new Error('the physical full of beforeAll has no passed restore test');
    const failed = {
      ...full.verification.restoreTest,
      state: 'failed' as const,
      detail: `${full.label} failed its restore test in the amcheck phase (CheckPhysicalRestoreTest: HostCommandFailedError): pg_amcheck found corruption`,
    };
    await writePhysicalRecord(world.catalog, {
      ...full,
      verification: { ...full.verification, restoreTest: failed },
    });
    try {
      const run = await verify();
      expect(run.record.status).toBe('FAILED');
      const problems = (run.record.cause ?? '').split('\n').filter((l) => l.startsWith('- '));
      expect(problems).toContain(
        `- physical full backup ${full.label} of local: its restore test failed (${failed.detail}; report ${failed.reportKey}); it is the base of nothing: take a full backup now and find out why`,
      );
    } finally {
      await writePhysicalRecord(world.catalog, full);
    }
  });
});

/**
 * What crashed and killed runs leave, planted as they would be: an archive
 * without its manifest, a partial archive and a work directory on the host (named
 * after its run, or as an older version named it), a scratch and a staging
 * database; each both past the leftover age (a day) and younger. Ages are set on
 * the files themselves (s3rver dates an object by its file), and a database's
 * from the run's start in its name. And a point-in-time recovery's side cluster
 * directory that no run holds: a finding at any age (test/point-in-time-recovery
 * lists a real one, its postgres running, left by a recovery killed with SIGKILL).
 */
describe('leftovers and an unreadable manifest', () => {
  const now = new Date();
  const twoDaysAgo = new Date(now.getTime() - 2 * 86_400_000);
  const stamp = compactStamp(now.toISOString());
  const s3File = (key: string) =>
    join(dirname(world.env.paths.historyDir), 's3', world.env.bucket, `${key}._S3rver_object`);
  const old = {
    s3: 'database/monthly/local/kennel_prod/2020/01/01/kennel_prod_monthly_20200101T040000Z_0ld0ld00.sql.zst',
    file: () =>
      join(
        world.env.paths.backupDir,
        'database/monthly/kennel_prod/kennel_prod_monthly_20200101T040000Z_0ld0ld00.sql.zst.partial',
      ),
    work: () => join(world.env.paths.hostTmp, 'kennel-backup.20200101T040000Z_deadbeef.0ldW0rk0'),
    database: 'kb_restore_test_20200101t040000z_deadbeef',
  };
  const young = {
    s3: `database/monthly/local/kennel_prod/${now.toISOString().slice(0, 10).replaceAll('-', '/')}/kennel_prod_monthly_${stamp}_y0un9000.sql.zst`,
    file: () => join(world.env.paths.backupDir, `static/local_static_${stamp}_y0un9000.tar.zst.partial`),
    work: () => join(world.env.paths.hostTmp, 'kennel-backup.y0un9W0r'),
    database: `kb_restoring_${stamp.toLowerCase()}_cafebabe`,
  };
  const side = () => {
    const [target] = parseConfig(world.env.functionEnv).BACKUP_TARGETS;
    if (!target) throw new Error('no local target');
    return join(scratchDirectoryOf(target), `point-in-time-${target.name}`, `${stamp}_51de0000`);
  };
  // Newest of their catalogs, so that every reader meets them first.
  const garbage = {
    full: `database/full/local/kennel_prod/${now.toISOString().slice(0, 10).replaceAll('-', '/')}/kennel_prod_full_99991231T235959Z_9a9ba9e0.sql.zst.manifest.json`,
    static: `static/local/${now.toISOString().slice(0, 10).replaceAll('-', '/')}/local_static_99991231T235959Z_9a9ba9e0.tar.zst.manifest.json`,
  };

  beforeAll(async () => {
    for (const key of Object.values(garbage))
      await putBytes(world.s3, world.env.bucket, key, '{"version": 1, "kind": ');
    for (const set of [old, young]) {
      await putBytes(world.s3, world.env.bucket, set.s3, 'a dump cut short');
      mkdirSync(dirname(set.file()), { recursive: true });
      writeFileSync(set.file(), 'half an archive');
      mkdirSync(set.work());
      writeFileSync(join(set.work(), 'archive.sql.zst'), 'fetched for a restore');
      world.sql('postgres', `CREATE DATABASE ${set.database}`);
    }
    mkdirSync(join(side(), 'data'), { recursive: true });
    for (const path of [s3File(old.s3), old.file(), old.work()]) utimesSync(path, twoDaysAgo, twoDaysAgo);
  });
  afterAll(async () => {
    await world.catalog.removeKeys(Object.values(garbage));
  });

  it('the verification names the unreadable manifests, each leftover past a day and a side cluster no run holds (at any age), with its size and age, and no younger one', async () => {
    const run = await verify();
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('VerificationFailedError');
    const problems = (run.record.cause ?? '').split('\n').filter((l) => l.startsWith('- '));
    for (const key of Object.values(garbage))
      expect(problems).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^- the catalog: The manifest s3://${world.env.bucket}/${key} is unreadable \\(not valid JSON: `,
          ),
        ),
      );
    const leftovers = problems.filter((p) => p.includes('was left by a run that ended without cleaning up'));
    const line = (where: string, name: string) => leftovers.find((l) => l.includes(`${where} ${name} (`));
    expect(line('archive without a manifest', old.s3)).toMatch(
      /^- the bucket's catalog of local: .* \(16 B, 4\d\.\d h old\)/,
    );
    expect(line('partial archive on the host', old.file())).toMatch(
      /^- the host of local: .* \(15 B, 4\d\.\d h old\)/,
    );
    expect(line("host script's work directory", old.work())).toMatch(/^- the host of local: .* h old\)/);
    expect(line('scratch or staging database', old.database)).toMatch(
      /^- the host of local: .* \(\d+\.\d MiB, \d+\.\d h old\)/,
    );
    expect(leftovers).toHaveLength(4);
    for (const name of [young.s3, young.file(), young.work(), young.database])
      expect(run.record.cause).not.toContain(name);
    // Young, but no run holds it.
    expect(problems).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^- the host of local: side cluster \\(.*\\) of a restore test or recovery that has ended ${side()} \\(.*\\) was left by a run that was killed \\(no run holds its lock\\): the next physical restore test or point-in-time recovery of local removes it`,
        ),
      ),
    );
    // Named once, by the verification; no reader failed on them with a bare SyntaxError.
    expect(run.visibleText).not.toContain('SyntaxError');
  });

  it('a backup, its pruning and a restore plan pass over the unreadable manifests; pruning removes only the leftovers past a day', async () => {
    const files = await runIn(world, { workflow: 'files-backup', input: { kind: 'static' } });
    expect(files.record.status, files.record.cause).toBe('SUCCEEDED');
    const monthly = await runIn(world, { workflow: 'database-backup', input: { kind: 'monthly' } });
    expect(monthly.record.status, monthly.record.cause).toBe('SUCCEEDED');
    expect(runsOf(monthly.record)[0]?.prune?.removedLeftovers).toEqual([old.s3]);
    // The full's manifest as it was before the read-backs marked its damaged archive failed: a restore plan may pick it.
    await world.catalog.writeManifest(newest.full as Manifest);
    const plan = await runIn(world, {
      workflow: 'database-restore',
      input: { database: 'kennel_prod', targetDatabase: 'kennel_restored', dryRun: true },
    });
    expect(plan.record.status, plan.record.cause).toBe('SUCCEEDED');
    expect(plan.record.output).toMatchObject({
      plan: { archives: [{ key: (newest.full as Manifest).archive.key }] },
    });

    const keys = await world.catalog.listKeys('database/monthly/local/');
    expect(keys).not.toContain(old.s3);
    expect(keys).toContain(young.s3);
    for (const path of [old.file(), old.work()]) expect(existsSync(path), path).toBe(false);
    for (const path of [young.file(), young.work()]) expect(existsSync(path), path).toBe(true);
    const databases = world.sql(
      'postgres',
      "SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database WHERE datname LIKE 'kb\\_%'",
    );
    expect(databases.split(' ')).toEqual([young.database]);
  });
});

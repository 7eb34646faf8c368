import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestKey } from '../shared/catalog/keys.ts';
import { type DatabaseManifest, type FilesManifest, isDatabaseManifest } from '../shared/catalog/manifest.ts';
import { parseComment } from '../shared/host/commands.ts';
import { databasesLike, tableChecksums } from './support/checksums.ts';
import { contents } from './support/contents.ts';
import { getBytes, putBytes, runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { until } from './support/wal.ts';

/**
 * The vault, locally: the local S3 replicates every object written to the
 * backup bucket to a second bucket (local/s3-server.ts), as S3 replication
 * does to the vault's bucket in AWS (serverless/vault.cjs). A real backup,
 * the primary's copy then lost, and a real restore from the vault; last, the
 * backup bucket's pgBackRest repository lost, and a real point-in-time recovery
 * from the vault's copy of it.
 */

let world: TestWorld;
let vault: string;
let full: DatabaseManifest;
let application: FilesManifest;
/** Each table's content when the full backup was taken. */
let atBackup: Record<string, string>;

beforeAll(async () => {
  world = await startWorld({ vault: true });
  vault = world.env.vaultBucket ?? '';
  const backup = await runIn(world, { input: { kind: 'full' } });
  expect(backup.record.status, backup.record.cause).toBe('SUCCEEDED');
  const manifest = await world.catalog.readManifest(runsOf(backup.record)[0]?.plan.manifestKey ?? '');
  if (!isDatabaseManifest(manifest)) throw new Error('the full backup wrote no database manifest');
  full = manifest;
  atBackup = tableChecksums(world, 'kennel_prod', full.tables);
  const files = await runIn(world, { workflow: 'files-backup', input: { kind: 'application' } });
  expect(files.record.status, files.record.cause).toBe('SUCCEEDED');
  const key = JSON.stringify(files.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
  application = (await world.catalog.readManifest(key)) as FilesManifest;
});
afterAll(async () => {
  await world?.stop();
});

async function keysOf(bucket: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await world.s3.send(
      new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }),
    );
    keys.push(...(page.Contents ?? []).map((o) => o.Key ?? ''));
    token = page.NextContinuationToken;
  } while (token);
  return keys.sort();
}

/** The primary's copy of a backup gone: its archive and manifest deleted from the backup bucket, and the host's own copy. */
async function losePrimaryCopy(archive: { key: string; localPath: string }) {
  for (const key of [archive.key, manifestKey(archive.key)])
    await world.s3.send(new DeleteObjectCommand({ Bucket: world.env.bucket, Key: key }));
  rmSync(archive.localPath, { force: true });
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('the vault', () => {
  it('holds every object the backups wrote to the backup bucket, byte for byte', async () => {
    expect(vault).toBe(`${world.env.bucket}-vault`);
    expect(world.env.functionEnv).toMatchObject({ VAULT_BUCKET: vault });
    const primary = await keysOf(world.env.bucket);
    // Archives, manifests, the pgBackRest repository, the records and the host's output alike.
    for (const prefix of ['database/', 'application/', 'pgbackrest/', 'catalog/', 'host-output/'])
      expect(
        primary.some((k) => k.startsWith(prefix)),
        prefix,
      ).toBe(true);
    const replicas = await keysOf(vault);
    expect(replicas.filter((k) => !primary.includes(k)).every((k) => k.startsWith('locks/'))).toBe(true);
    expect(primary.filter((k) => !replicas.includes(k))).toEqual([]);
    // The run locks the backups took and deleted: written, so replicated; deleted, which is not.
    expect(replicas.filter((k) => k.startsWith('locks/'))).toEqual([
      'locks/local/application',
      'locks/local/full',
    ]);
    for (const key of [full.archive.key, manifestKey(full.archive.key), application.archive.key]) {
      expect(sha256(await getBytes(world.s3, vault, key))).toBe(
        sha256(await getBytes(world.s3, world.env.bucket, key)),
      );
    }
    expect(sha256(await getBytes(world.s3, vault, full.archive.key))).toBe(full.archive.sha256);
  });

  it('restores a database the backup bucket lost: every table equals the backup, fetched from the vault', async () => {
    await losePrimaryCopy(full.archive);
    // The deletion is not replicated: the vault keeps its copy.
    expect(await keysOf(vault)).toContain(full.archive.key);
    const fromPrimary = await runIn(world, {
      workflow: 'database-restore',
      input: { database: 'kennel_prod', targetDatabase: 'kennel_lost', backup: full.runId },
    });
    expect(fromPrimary.record.status).toBe('FAILED');
    expect(fromPrimary.record.cause).toContain(`No full, monthly or safety backup "${full.runId}"`);

    world.sql('kennel_prod', 'UPDATE payments SET amount = amount + 1 WHERE id <= 20');
    const run = await runIn(world, {
      workflow: 'database-restore',
      input: {
        database: 'kennel_prod',
        targetDatabase: 'kennel_from_vault',
        backup: full.runId,
        source: 'vault',
      },
    });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(tableChecksums(world, 'kennel_from_vault', full.tables)).toEqual(atBackup);
    expect(tableChecksums(world, 'kennel_prod', full.tables)).not.toEqual(atBackup);
    expect(databasesLike(world, 'kb_')).toEqual([]);
    // The host fetched the dump from the vault's bucket, the only copy left.
    const restoreCommand = run.host.sent.find((s) => parseComment(s.comment)?.script === 'database-restore');
    expect(restoreCommand?.script).toContain(`KB_BUCKET='${vault}'`);
    expect(run.record.output).toMatchObject({ from: [{ key: full.archive.key }] });
  });

  it('restores files the backup bucket lost from the vault', async () => {
    const appFile = join(world.env.paths.hostRoot, 'opt/kennel/src/app.ts');
    const atFilesBackup = readFileSync(appFile, 'utf8');
    writeFileSync(appFile, 'broken();\n');
    await losePrimaryCopy(application.archive);

    const run = await runIn(world, {
      workflow: 'files-restore',
      input: { kind: 'application', confirm: 'application', source: 'vault' },
    });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(readFileSync(appFile, 'utf8')).toBe(atFilesBackup);
    const restoreCommand = run.host.sent.find((s) => parseComment(s.comment)?.script === 'files-restore');
    expect(restoreCommand?.script).toContain(`KB_BUCKET='${vault}'`);
  });

  it('a restore or recovery refuses a source it does not know, and the vault of a deployment without one, changing nothing', async () => {
    const unknown = [
      'source: must be "primary" (the backup bucket; the default) or "vault" (its copy in the vault region)',
    ];
    const none = ['This deployment has no vault', 'Nothing was changed.'];
    const noVault = { VAULT_BUCKET: '', VAULT_REGION: '' };
    const x = { database: 'kennel_prod', targetDatabase: 'kennel_x' };
    const cases: [string, Record<string, unknown>, Record<string, string>, string[]][] = [
      ['database-restore', { ...x, source: 'replica' }, {}, unknown],
      ['files-restore', { kind: 'application', confirm: 'application', source: 'vault' }, noVault, none],
      ['point-in-time-recovery', { ...x, targetTime: 'latest', source: 'replica' }, {}, unknown],
      [
        'point-in-time-recovery',
        { scope: 'cluster', targetTime: 'latest', confirm: 'local', source: 'replica' },
        {},
        unknown,
      ],
      ['point-in-time-recovery', { ...x, targetTime: 'latest', source: 'vault' }, noVault, none],
    ];
    for (const [workflow, input, functionEnv, causes] of cases) {
      const run = await runIn(world, { workflow, input, functionEnv });
      expect(run.record.status, workflow).toBe('FAILED');
      for (const cause of causes) expect(run.record.cause).toContain(cause);
      expect(run.host.sent).toEqual([]);
    }
    expect(databasesLike(world, 'kennel_x')).toEqual([]);
  });

  // Last: it leaves the backup bucket without its pgBackRest repository.
  it("recovers a database to a second from the vault's copy of the repository, the backup bucket's lost: every table and sequence as it was then", async () => {
    const q = (query: string) => world.sql('kennel_prod', query);
    q(
      "INSERT INTO payments (booking_id, amount, method, status, paid_at) SELECT booking_id, 1.23, method, 'succeeded', now() FROM payments WHERE id <= 25",
    );
    // nextval is WAL-logged 32 values ahead: each sequence pinned to its own value is logged exactly.
    q(`DO $$ DECLARE s regclass; v bigint; c boolean; BEGIN
           FOR s IN SELECT oid FROM pg_class WHERE relkind = 'S' LOOP
             EXECUTE format('SELECT last_value, is_called FROM %s', s) INTO v, c;
             PERFORM setval(s, v, c);
           END LOOP; END $$`);
    const reference = contents(world.sql, 'kennel_prod');
    // The next whole second: every commit so far is before it, every one from here after it.
    const targetTime = world.sql(
      'postgres',
      `SELECT to_char((date_trunc('second', clock_timestamp()) + interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`,
    );
    await until('the clock to pass the target', () => Date.now() > Date.parse(targetTime) + 200, 5);
    q('UPDATE payments SET amount = amount * 2 WHERE id <= 40');
    q(
      "INSERT INTO payments (booking_id, amount, method, status, paid_at) SELECT booking_id, 9.99, method, 'succeeded', now() FROM payments WHERE id <= 5",
    );
    expect(contents(world.sql, 'kennel_prod').tables).not.toEqual(reference.tables);
    // The WAL past the target archived, so replicated to the vault.
    const segment = world.sql('postgres', 'SELECT pg_walfile_name(pg_switch_wal())');
    await until(
      `WAL segment ${segment} to be archived`,
      () =>
        world.sql(
          'postgres',
          `SELECT coalesce(last_archived_wal >= '${segment}', false) FROM pg_stat_archiver`,
        ) === 't',
    );

    // The backup bucket's repository lost, as with its region: production's archiving fails from here on.
    const repository = (keys: string[]) => keys.filter((k) => k.startsWith('pgbackrest/'));
    const lost = repository(await keysOf(world.env.bucket));
    expect(lost.length).toBeGreaterThan(0);
    for (const key of lost)
      await world.s3.send(new DeleteObjectCommand({ Bucket: world.env.bucket, Key: key }));
    const vaultBefore = await keysOf(vault);

    const run = await runIn(world, {
      workflow: 'point-in-time-recovery',
      input: { database: 'kennel_prod', targetDatabase: 'kennel_pitr_vault', targetTime, source: 'vault' },
    });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const recovered = contents(world.sql, 'kennel_pitr_vault');
    expect(recovered.tables).toEqual(reference.tables);
    expect(recovered.sequences).toEqual(reference.sequences);
    expect(recovered.largeObjects).toEqual(reference.largeObjects);

    // pgBackRest read the vault's bucket (restore, and the archive-get of its restore_command).
    const restoreCommand = run.host.sent.find(
      (s) => parseComment(s.comment)?.script === 'point-in-time-restore',
    );
    expect(restoreCommand?.script).toContain(`--repo1-s3-bucket=${vault}`);
    const output = run.record.output as { source: string; summary: string; stoppedBefore: string };
    expect(output.source).toBe('vault');
    expect(output.summary).toContain(`kennel_pitr_vault on local recovered to ${targetTime}`);
    expect(output.summary).toContain("the WAL in the vault's copy of the repository");
    expect(output.stoppedBefore).toMatch(/^recovery stopping before commit of transaction \d+, time /);
    // Nothing recreated the backup bucket's repository; nothing was written to the vault's, and
    // every key new in the vault is a replica of one the workflow wrote to the backup bucket.
    const primaryAfter = await keysOf(world.env.bucket);
    expect(repository(primaryAfter)).toEqual([]);
    const vaultAfter = await keysOf(vault);
    expect(repository(vaultAfter)).toEqual(repository(vaultBefore));
    expect(vaultAfter.filter((k) => !vaultBefore.includes(k) && !primaryAfter.includes(k))).toEqual([]);

    // Nothing archived since reaches the vault: a time past its newest segment is refused, naming it.
    const past = await runIn(world, {
      workflow: 'point-in-time-recovery',
      input: {
        database: 'kennel_prod',
        targetDatabase: 'kennel_x',
        targetTime: new Date(Date.now() - 1000).toISOString(),
        source: 'vault',
        dryRun: true,
      },
    });
    expect(past.record.status).toBe('FAILED');
    expect(past.record.cause).toContain("The vault's WAL of local ends before the target time");
    expect(past.host.sent).toEqual([]);
  }, 600_000);
});

describe('a restore from the vault reads the vault, never the host copy', () => {
  it('fails when the vault lost the archive though the host keeps a copy, and says where the bytes came from', async () => {
    const { key, localPath } = full.archive;
    const bytes = await getBytes(world.s3, vault, key);
    // The host's copy back, intact; the vault's gone (a deletion there is not replicated back).
    writeFileSync(localPath, bytes);
    await world.s3.send(new DeleteObjectCommand({ Bucket: vault, Key: key }));
    const input = {
      database: 'kennel_prod',
      targetDatabase: 'kennel_vault_read',
      backup: full.runId,
      source: 'vault',
    };
    const lost = await runIn(world, { workflow: 'database-restore', input });
    expect(lost.record.status).toBe('FAILED');
    expect(lost.record.cause).toContain(`restoring from the vault: fetching s3://${vault}/${key}`);
    expect(databasesLike(world, 'kennel_vault_read')).toEqual([]);

    await putBytes(world.s3, vault, key, bytes);
    const run = await runIn(world, { workflow: 'database-restore', input });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(run.record.output).toMatchObject({ readFrom: 'vault' });
    expect((run.record.output as { summary: string }).summary).toContain(`Read from: ${key} in the vault`);
    expect(tableChecksums(world, 'kennel_vault_read', full.tables)).toEqual(atBackup);

    const files = await runIn(world, {
      workflow: 'files-restore',
      input: { kind: 'application', confirm: 'application', source: 'vault' },
    });
    expect(files.record.status, files.record.cause).toBe('SUCCEEDED');
    expect(files.record.output).toMatchObject({ readFrom: 'vault' });
  });
});

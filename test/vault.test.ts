import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestKey } from '../shared/catalog/keys.ts';
import { type DatabaseManifest, type FilesManifest, isDatabaseManifest } from '../shared/catalog/manifest.ts';
import { parseComment } from '../shared/host/commands.ts';
import { databasesLike, tableChecksums } from './support/checksums.ts';
import { getBytes, putBytes, runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';

/**
 * The vault, locally: the local S3 replicates every object written to the
 * backup bucket to a second bucket (local/s3-server.ts), as S3 replication
 * does to the vault's bucket in AWS (serverless/vault.cjs). A real backup,
 * the primary's copy then lost, and a real restore from the vault.
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

  it('a restore refuses a source it does not know, and the vault of a deployment without one, changing nothing', async () => {
    const unknown = await runIn(world, {
      workflow: 'database-restore',
      input: { database: 'kennel_prod', targetDatabase: 'kennel_x', source: 'replica' },
    });
    expect(unknown.record.status).toBe('FAILED');
    expect(unknown.record.cause).toContain(
      'source: must be "primary" (the backup bucket; the default) or "vault" (its copy in the vault region)',
    );
    expect(unknown.host.sent).toEqual([]);

    const noVault = await runIn(world, {
      workflow: 'files-restore',
      input: { kind: 'application', confirm: 'application', source: 'vault' },
      functionEnv: { VAULT_BUCKET: '', VAULT_REGION: '' },
    });
    expect(noVault.record.status).toBe('FAILED');
    expect(noVault.record.cause).toContain('This deployment has no vault');
    expect(noVault.record.cause).toContain('Nothing was changed.');
    expect(noVault.host.sent).toEqual([]);
    expect(databasesLike(world, 'kennel_x')).toEqual([]);
  });
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

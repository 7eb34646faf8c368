import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  PutObjectLockConfigurationCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_S3_CREDENTIALS, type LocalS3, startLocalS3 } from '../local/s3.ts';
import { exportHistory } from '../shared/audit/history-export.ts';
import { planFilesBackup } from '../shared/backup/files-plan.ts';
import { BACKUP_HOST_COMMANDS } from '../shared/backup/host-commands.ts';
import { pruneRun } from '../shared/backup/stages.ts';
import { verifyArchive } from '../shared/catalog/archive-check.ts';
import { lockForDays, readArchiveRecord } from '../shared/catalog/archive-record.ts';
import { Catalog } from '../shared/catalog/catalog.ts';
import { archiveRecordKey, auditReportKey } from '../shared/catalog/keys.ts';
import type { Manifest } from '../shared/catalog/manifest.ts';
import { excludedTablesOf } from '../shared/catalog/manifest-builder.ts';
import { AUDIT_DAYS, lockDays, objectLockConfiguration } from '../shared/catalog/retention.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { type Config, parseConfig } from '../shared/core/config.ts';
import { TamperedArchiveError } from '../shared/core/errors.ts';
import { type HostCommand, type HostCommandRequestBase, renderHostCommand } from '../shared/host/scripts.ts';
import { renderScript, s3PutProgram } from '../shared/host/shell.ts';
import { planFilesRestore } from '../shared/restore/files-plan.ts';
import { RESTORE_HOST_COMMANDS } from '../shared/restore/host-commands.ts';
import { syntheticMonth } from './support/audit-month.ts';
import { testConfig } from './support/config.ts';
import { MOTO_CREDENTIALS, MOTO_SERVER, type Moto, startMoto, warnWithoutMoto } from './support/moto.ts';

/**
 * Immutable, tamper-evident backups against real S3 servers, with real bash and
 * the real host scripts: the DB host creates archives and never replaces one or
 * a manifest (If-None-Match, which the local S3 and moto_server both honour);
 * and, against moto_server, which keeps versions and locks them as S3 does:
 * VerifyArchive records each archive's creation and locks it for its kind, a
 * locked version outlives every delete, pruning hides current versions only,
 * and an archive replaced with its manifest rewritten to match is caught by the
 * daily verification's read-back, refused by the restore until its manifest is
 * rebuilt from the record, then restored from the version its backup wrote.
 * moto cannot check the bucket policy (it evaluates none per principal):
 * test/template.test.ts asserts the policy itself.
 */

const BUCKET = 'kennel-backups-immutable-test';
const COMMON = fileURLToPath(new URL('../host/common.sh', import.meta.url));
warnWithoutMoto(
  'create-only uploads were checked against the local S3 alone; that VerifyArchive locks each archive for its kind, that a locked version cannot be deleted before its date, that pruning leaves every locked version, and that a replaced archive is caught and restored from the version its backup wrote were NOT checked: they need an S3 that keeps versions.',
);

let dir: string;
let local: LocalS3;
let moto: Moto | undefined;

beforeAll(async () => {
  Object.assign(process.env, LOCAL_S3_CREDENTIALS);
  dir = mkdtempSync(join(tmpdir(), 'kennel-backup-immutable-'));
  local = await startLocalS3(join(dir, 's3'), BUCKET, join(dir, 'tls'));
  moto = await startMoto(BUCKET, { objectLock: true });
  await moto?.s3.send(
    new PutObjectLockConfigurationCommand({
      Bucket: BUCKET,
      ObjectLockConfiguration: objectLockConfiguration('GOVERNANCE'),
    }),
  );
}, 60_000);

afterAll(async () => {
  moto?.stop();
  await local?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** What the DB host's shell gets to reach a server: its keys, and the local S3's CA and checksums. */
interface Server {
  name: string;
  s3: () => S3Client;
  endpoint: () => string;
  env: () => Record<string, string>;
}
const servers: Server[] = [
  {
    name: 'the local S3',
    s3: () =>
      createS3Client(
        testConfig({ BACKUP_BUCKET: BUCKET, S3_ENDPOINT_URL: local.endpoint, S3_CA_BUNDLE: local.caFile }),
      ),
    endpoint: () => local.endpoint,
    env: () => ({
      ...LOCAL_S3_CREDENTIALS,
      AWS_CA_BUNDLE: local.caFile,
      AWS_REQUEST_CHECKSUM_CALCULATION: 'when_required',
      AWS_RESPONSE_CHECKSUM_VALIDATION: 'when_required',
    }),
  },
];
const withMoto: Server = {
  name: 'moto_server',
  s3: () => (moto as Moto).s3,
  endpoint: () => (moto as Moto).endpoint,
  env: () => ({ ...MOTO_CREDENTIALS }),
};
if (MOTO_SERVER) servers.push(withMoto);

/**
 * Runs bash as the DB host does, with `env` (KB_* parameters), on `input`; with
 * `PATH_FRONT`, that folder first on the PATH once the shell has started (bash
 * started with a socket for stdin, as here, runs ~/.bashrc, which may put others first).
 */
function bash(server: Server, script: string, env: Record<string, string>, input?: Buffer | string) {
  const result = spawnSync('bash', ['-c', `PATH="\${PATH_FRONT:+$PATH_FRONT:}$PATH"\n${script}`], {
    input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      TMPDIR: dir,
      AWS_DEFAULT_REGION: 'us-east-1',
      ...server.env(),
      KB_BUCKET: BUCKET,
      KB_S3_ENDPOINT_URL: server.endpoint(),
      ...env,
    },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** host/common.sh's s3_put of `body` at `key`, as a backup script calls it (its uploader rendered before). */
const s3Put = (server: Server, key: string, body: Buffer | string, env: Record<string, string> = {}) =>
  bash(
    server,
    `${s3PutProgram()}\nsource "${COMMON}"; s3_put "$KEY" application/octet-stream`,
    { KEY: key, ...env },
    body,
  );

async function bytesOf(s3: S3Client, key: string, VersionId?: string): Promise<Buffer> {
  const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, VersionId }));
  return Buffer.from((await object.Body?.transformToByteArray()) ?? []);
}

async function versionsOf(s3: S3Client, key: string) {
  const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: key }));
  return {
    versions: (listed.Versions ?? []).filter((v) => v.Key === key),
    deleteMarkers: (listed.DeleteMarkers ?? []).filter((m) => m.Key === key),
  };
}

const REFUSED = 'already exists, and backups are created, never replaced; nothing was written';

/** The multipart uploads S3 holds unfinished: moto lists them; the local S3 keeps each one's parts in a folder. */
async function unfinishedUploads(server: Server): Promise<string[]> {
  if (server === withMoto) {
    const listed = await server.s3().send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    return (listed.Uploads ?? []).map((upload) => upload.Key ?? '');
  }
  const folder = join(dir, 's3', BUCKET, '._S3rver_uploads');
  return existsSync(folder) ? readdirSync(folder) : [];
}

/**
 * The python3 s3_put runs: the one first on PATH, and Debian 12's with its boto3
 * 1.26 (older than boto3's IfNoneMatch parameter: the header is added by hand)
 * where this machine has it and it is not the first already.
 */
const boto3Of = (python: string) =>
  spawnSync(python, ['-c', 'import boto3; print(boto3.__version__)'], { encoding: 'utf8' }).stdout?.trim();
const DEBIAN_PYTHON = '/usr/bin/python3';
const onPath = boto3Of('python3');
const debian = boto3Of(DEBIAN_PYTHON);
const uploaders: { name: string; bin?: string }[] = [{ name: `python3 on PATH (boto3 ${onPath})` }];
if (debian?.startsWith('1.26.') && debian !== onPath)
  uploaders.push({ name: `Debian 12's python3-boto3 ${debian}`, bin: 'debian' });
else
  console.warn(
    `s3_put was checked with the python3 on PATH only (boto3 ${onPath}), not Debian 12's boto3 1.26.`,
  );

/** A folder holding `python3`, running `python` with `args`, for the front of the host's PATH. */
function pythonBin(name: string, python: string, args = ''): string {
  const bin = join(dir, name);
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'python3'), `#!/bin/sh\nexec ${python} ${args} "$@"\n`, { mode: 0o755 });
  return bin;
}

describe.each(servers)("the DB host's uploads to $name", (server) => {
  it.each(uploaders)(
    'create an archive, in one request or in parts, and never replace one or a manifest: $name',
    async (uploader) => {
      const key = `database/full/primary/kennel_prod/2026/11/30/kennel_prod_full_${server.name.length}_${uploader.bin ?? 'path'}.sql.zst`;
      const put = (k: string, body: Buffer | string) =>
        uploader.bin
          ? s3Put(server, k, body, { PATH_FRONT: pythonBin(uploader.bin, DEBIAN_PYTHON) })
          : s3Put(server, k, body);
      // Past the part size (8 MiB): a multipart upload of two parts, its completion carrying If-None-Match.
      const archive = randomBytes(9 * 1024 * 1024);
      const created = put(key, archive);
      expect(created.status, created.stderr).toBe(0);
      expect((await bytesOf(server.s3(), key)).equals(archive)).toBe(true);

      const again = put(key, randomBytes(9 * 1024 * 1024));
      expect(again.status).not.toBe(0);
      expect(again.stderr.trim()).toBe(`s3_put: s3://${BUCKET}/${key} ${REFUSED}`);
      // The refused upload was aborted: none of its parts stays behind.
      expect(await unfinishedUploads(server)).toEqual([]);
      const small = put(key, 'a small forged archive');
      expect(small.status).not.toBe(0);
      expect(small.stderr).toContain(REFUSED);
      expect((await bytesOf(server.s3(), key)).equals(archive)).toBe(true);

      // Its manifest, once VerifyArchive wrote it, is refused to the host as well.
      const manifestKey = `${key}.manifest.json`;
      await server
        .s3()
        .send(new PutObjectCommand({ Bucket: BUCKET, Key: manifestKey, Body: '{"verified":true}' }));
      const manifest = put(manifestKey, '{"forged":true}');
      expect(manifest.status).not.toBe(0);
      expect(manifest.stderr).toContain(REFUSED);
      expect((await bytesOf(server.s3(), manifestKey)).toString()).toBe('{"verified":true}');
      // Where S3 keeps versions, there is one of each: nothing was written over them.
      if (server === withMoto) {
        expect((await versionsOf(server.s3(), key)).versions).toHaveLength(1);
        expect((await versionsOf(server.s3(), manifestKey)).versions).toHaveLength(1);
      }
    },
    120_000,
  );
});

/** The parameters of a full dump of kennel_prod to `key`, its host copy in `local`. */
const backupParameters = (server: Server, key: string, local: string) => ({
  KB_KIND: 'full',
  KB_DATABASE: 'kennel_prod',
  KB_EXCLUDE_TABLES: '',
  KB_PG_MODE: 'host',
  KB_COMPOSE_FILE: '',
  KB_COMPOSE_SERVICE: '',
  KB_BUCKET: BUCKET,
  KB_ARCHIVE_KEY: key,
  KB_LOCAL_DIR: local,
  KB_LOCAL_PATH: join(local, `${key.split('/').pop()}`),
  KB_S3_ENDPOINT_URL: server.endpoint(),
  KB_COMPRESS: 'zstd -3',
});

const objectsAt = async (server: Server, key: string) =>
  (await server.s3().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: key }))).Contents ?? [];

describe.each(servers)('an archive whose dump failed, on $name', (server) => {
  const cases = uploaders.flatMap((uploader) => [
    { when: 'after several parts', bytes: 20 * 1024 * 1024, uploader },
    { when: 'before the first part', bytes: 458, uploader },
  ]);
  it.each(cases)(
    'is never created, and no part is left, when a stage feeding the upload failed $when: $uploader.name',
    async ({ when, bytes, uploader }) => {
      const name = `${bytes}-${server.name.length}-${uploader.bin ?? 'path'}`;
      const key = `database/full/primary/kennel_prod/2026/11/30/failed-dump-${name}.sql.zst`;
      const status = join(dir, `dump-${name}.status`);
      // The stage ended with pg_dump's status once killed (137); the compressor's status file says 0.
      writeFileSync(status, '137\n');
      writeFileSync(join(dir, 'compress.status'), '0\n');
      const put = bash(
        server,
        `${s3PutProgram()}\nsource "${COMMON}"; s3_put "$KEY" application/octet-stream '' "$STATUS" "$COMPRESSED"`,
        {
          KEY: key,
          STATUS: status,
          COMPRESSED: join(dir, 'compress.status'),
          ...(uploader.bin ? { PATH_FRONT: pythonBin(uploader.bin, DEBIAN_PYTHON) } : {}),
        },
        randomBytes(bytes),
      );
      expect(put.status, when).not.toBe(0);
      expect(put.stderr.trim()).toBe(
        `s3_put: s3://${BUCKET}/${key} was not created: a stage feeding it failed: dump-${name} (status 137); nothing was written`,
      );
      expect(await objectsAt(server, key)).toEqual([]);
      expect(await unfinishedUploads(server)).toEqual([]);
    },
    60_000,
  );
});

/**
 * A full dump run on a host given `env`, with no PostgreSQL there (had the
 * dump's session started first, it would fail on that instead): it must fail
 * before its dump starts and write nothing. Its stderr.
 */
async function refusedBeforeTheDump(name: string, env: Record<string, string>): Promise<string> {
  const [server] = servers as [Server];
  const key = `database/full/primary/kennel_prod/2026/11/30/${name}.sql.zst`;
  const local = join(dir, name);
  const refused = bash(server, renderScript('database-backup', backupParameters(server, key, local)), {
    PGHOST: join(dir, 'no-postgresql'),
    ...env,
  });
  expect(refused.status).not.toBe(0);
  expect(refused.stderr).not.toContain('PostgreSQL session');
  expect(await objectsAt(server, key)).toEqual([]);
  expect(readdirSync(local)).toEqual([]);
  return refused.stderr;
}

describe('a host without the compressor', () => {
  it('fails the backup before its dump starts, saying what to install, and writes nothing', async () => {
    // A PATH holding every program of this machine's but zstd.
    const bin = join(dir, 'no-zstd-bin');
    mkdirSync(bin, { recursive: true });
    for (const folder of (process.env.PATH ?? '/usr/bin:/bin').split(':'))
      for (const name of existsSync(folder) ? readdirSync(folder) : [])
        if (name !== 'zstd' && !existsSync(join(bin, name))) symlinkSync(join(folder, name), join(bin, name));
    const stderr = await refusedBeforeTheDump('no-zstd', { PATH: bin });
    expect(stderr).toContain(
      'compressing: zstd (from "zstd -3"), with which backups are compressed, is not on this host\'s PATH',
    );
    expect(stderr).toContain(
      'install it (Debian: apt-get install zstd), then run this again; nothing was written',
    );
  }, 60_000);
});

describe('a host without boto3', () => {
  it('fails the backup before its dump starts, saying what to install, and writes nothing', async () => {
    // python3 without its site packages: boto3 is not importable.
    const python = spawnSync('sh', ['-c', 'command -v python3'], { encoding: 'utf8' }).stdout.trim();
    const stderr = await refusedBeforeTheDump('no-boto3', {
      PATH_FRONT: pythonBin('no-boto3-bin', python, '-S'),
    });
    expect(stderr).toContain(
      "has no boto3, with which backups are uploaded: install Debian's python3-boto3 (apt-get install python3-boto3) or boto3 from PyPI, then run this again; nothing was written",
    );
  }, 60_000);
});

describe.runIf(MOTO_SERVER)('with versions and Object Lock (moto_server)', () => {
  let config: Config;
  let catalog: Catalog;
  let etc: string;
  const s3 = () => (moto as Moto).s3;
  const target = () => config.BACKUP_TARGETS[0] as Config['BACKUP_TARGETS'][number];
  let first: Manifest;
  let firstVersion: string;

  beforeAll(() => {
    etc = join(dir, 'etc', 'kennel');
    mkdirSync(etc, { recursive: true });
    writeFileSync(join(etc, 'app.conf'), 'listen = 8080\n');
    config = parseConfig({
      BACKUP_BUCKET: BUCKET,
      BACKUP_TARGETS: JSON.stringify([
        {
          name: 'primary',
          instanceIds: ['i-0123456789abcdef0'],
          database: 'kennel_prod',
          backupDir: join(dir, 'backup'),
          files: { configuration: [etc] },
        },
      ]),
      S3_ENDPOINT_URL: (moto as Moto).endpoint,
      ALERT_WEBHOOK_PARAMETER: '/a',
      RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
    });
    // The functions' client in AWS: the SDK's default checksums, which Object Lock asks of every upload.
    catalog = new Catalog(s3(), BUCKET);
  });

  /** A configuration backup as its workflow makes it: the host's files-backup.sh, then VerifyArchive. */
  /** A configuration backup's plan, as PlanFilesBackup makes it for a run started at `startedAt`. */
  function backupPlan(startedAt: string) {
    const [plan] = planFilesBackup(config, {
      input: { kind: 'configuration' },
      executionId: `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-test-files-backup:${startedAt}`,
      startedAt,
    });
    if (!plan) throw new Error('no plan');
    return plan;
  }

  /** A host command as Run Command would run it on the target's host. */
  const onHost = <R extends HostCommandRequestBase>(command: HostCommand<R>, request: R) =>
    bash(withMoto, renderHostCommand(config, target(), command, request), {});

  /** A configuration backup as its workflow makes it: the host's files-backup.sh, then VerifyArchive. */
  async function backup(startedAt: string) {
    const plan = backupPlan(startedAt);
    const host = onHost(BACKUP_HOST_COMMANDS['files-backup'], { script: 'files-backup', plan });
    const facts = JSON.parse(/^KB-RESULT (.*)$/m.exec(host.stdout)?.[1] ?? 'null') as unknown;
    expect(host.status, host.stderr).toBe(0);
    const manifest = await verifyArchive(s3(), catalog, { plan, facts }, (kind) =>
      excludedTablesOf(config, kind),
    );
    return { plan, manifest };
  }

  const headOf = (Key: string, VersionId?: string) =>
    s3().send(new HeadObjectCommand({ Bucket: BUCKET, Key, VersionId }));

  it('records each archive as the host reported it, in the version it wrote, and locks both as long as its kind is kept', async () => {
    const { plan, manifest } = await backup('2026-11-30T03:00:00.000Z');
    first = manifest;
    expect(manifest.verification.state).toBe('verified');
    const head = await headOf(plan.archiveKey);
    firstVersion = head.VersionId as string;
    const record = await readArchiveRecord(catalog, plan.archiveKey);
    expect(record).toMatchObject({
      versionId: firstVersion,
      manifest: {
        archive: { sha256: manifest.archive.sha256, size: manifest.archive.size },
        verification: { state: 'unverified' },
      },
    });
    // Configuration is kept 90 days: longer than the bucket's 42, so its lock was lengthened to 90.
    expect(lockDays('configuration')).toBe(90);
    const ninetyDays = (from: Date | undefined) => new Date((from?.getTime() ?? 0) + 90 * 86_400_000);
    expect(head.ObjectLockMode).toBe('GOVERNANCE');
    expect(head.ObjectLockRetainUntilDate?.getTime()).toBe(ninetyDays(head.LastModified).getTime());
    expect(record.lockedUntil).toBe(ninetyDays(head.LastModified).toISOString());
    const recordHead = await headOf(archiveRecordKey(plan.archiveKey));
    expect(recordHead.ObjectLockRetainUntilDate?.toISOString()).toBe(record.lockedUntil);
  }, 120_000);

  it("refuses the host's second upload over the archive, and its upload over the manifest", async () => {
    const { archive } = first;
    const plan = backupPlan('2026-11-30T03:00:00.000Z');
    writeFileSync(join(etc, 'app.conf'), 'listen = 9999\n');
    const rerun = onHost(BACKUP_HOST_COMMANDS['files-backup'], { script: 'files-backup', plan });
    expect(rerun.status).not.toBe(0);
    expect(rerun.stderr).toContain(`s3://${BUCKET}/${archive.key} ${REFUSED}`);
    const manifest = s3Put(withMoto, plan.manifestKey, '{"forged":true}');
    expect(manifest.stderr).toContain(REFUSED);
    expect((await versionsOf(s3(), archive.key)).versions.map((v) => v.VersionId)).toEqual([firstVersion]);
    // The manifest's versions are VerifyArchive's two: unverified, then verified.
    expect((await versionsOf(s3(), plan.manifestKey)).versions).toHaveLength(2);
    writeFileSync(join(etc, 'app.conf'), 'listen = 8080\n');
  }, 120_000);

  it('keeps a locked version until its date: no delete removes it, in governance mode without a bypass, in compliance mode at all', async () => {
    const denied = (p: Promise<unknown>) =>
      p.then(
        () => 'deleted',
        (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode,
      );
    const { key } = first.archive;
    expect(
      await denied(s3().send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key, VersionId: firstVersion }))),
    ).toBe(403);
    expect(
      await denied(
        s3().send(
          new DeleteObjectCommand({
            Bucket: BUCKET,
            Key: archiveRecordKey(key),
            VersionId: (await headOf(archiveRecordKey(key))).VersionId,
          }),
        ),
      ),
    ).toBe(403);
    expect((await headOf(key, firstVersion)).VersionId).toBe(firstVersion);

    // With --param objectLockMode=compliance, not even a principal allowed to bypass governance can.
    const compliance = await startMoto(`${BUCKET}-compliance`, { objectLock: true });
    try {
      const c = (compliance as Moto).s3;
      const Bucket = `${BUCKET}-compliance`;
      await c.send(
        new PutObjectLockConfigurationCommand({
          Bucket,
          ObjectLockConfiguration: objectLockConfiguration('COMPLIANCE'),
        }),
      );
      const { VersionId } = await c.send(new PutObjectCommand({ Bucket, Key: key, Body: 'archive' }));
      expect(
        await denied(
          c.send(new DeleteObjectCommand({ Bucket, Key: key, VersionId, BypassGovernanceRetention: true })),
        ),
      ).toBe(403);
      expect((await c.send(new HeadObjectCommand({ Bucket, Key: key, VersionId }))).VersionId).toBe(
        VersionId,
      );
    } finally {
      compliance?.stop();
    }
  }, 60_000);

  const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
  const restoreRequest = () => ({
    input: { kind: 'configuration', backup: first.runId, confirm: 'configuration' },
    executionId: 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-test-files-restore:r1',
    startedAt: '2026-11-30T09:00:00.000Z',
  });

  it('catches an archive replaced and its manifest rewritten to match: the restore refuses it, the daily verification names the version to restore from, and the restore then uses that version', async () => {
    const { archive } = first;
    const manifestKey = `${archive.key}.manifest.json`;
    // Someone the bucket policy's create-only rule does not hold (an administrator, a policy
    // changed) puts a new version of the archive and rewrites its manifest to match it.
    const forged = Buffer.from('a forged tarball');
    const { VersionId: forgedVersion } = await s3().send(
      new PutObjectCommand({ Bucket: BUCKET, Key: archive.key, Body: forged }),
    );
    const rewritten = { ...first, archive: { ...archive, sha256: sha256(forged), size: forged.length } };
    await s3().send(
      new PutObjectCommand({ Bucket: BUCKET, Key: manifestKey, Body: JSON.stringify(rewritten) }),
    );

    const refused = planFilesRestore(config, { primary: catalog, vault: undefined }, restoreRequest());
    await expect(refused).rejects.toThrow(TamperedArchiveError);
    await expect(refused).rejects.toThrow(
      `its manifest says sha256 ${sha256(forged)} (${forged.length} bytes), the record of its creation ${archive.sha256} (${archive.size} bytes). Its tables and sha256 cannot be trusted, so nothing was restored and nothing was changed. The archive to restore from is version ${firstVersion} of s3://${BUCKET}/${archive.key}, the one its backup wrote (sha256 ${archive.sha256})`,
    );

    // The daily verification's read-back (ReadBackEachArchive runs VerifyArchive on the newest of each kind).
    const readBack = verifyArchive(s3(), catalog, { manifestKey }, (kind) => excludedTablesOf(config, kind));
    await expect(readBack).rejects.toThrow(TamperedArchiveError);
    await expect(readBack).rejects.toThrow(
      `The archive s3://${BUCKET}/${archive.key} was changed after its backup: its manifest says sha256 ${sha256(forged)}`,
    );
    await expect(readBack).rejects.toThrow(
      `its current version is ${forgedVersion}, not ${firstVersion}, the version its backup wrote. The archive to restore from is version ${firstVersion} of s3://${BUCKET}/${archive.key}`,
    );
    await expect(readBack).rejects.toThrow(
      'it read back intact, and restores of this backup fetch it whatever the current version is; the manifest was rebuilt from the record of its creation.',
    );
    expect(await catalog.readManifest(manifestKey)).toMatchObject({
      archive: { sha256: archive.sha256, size: archive.size },
      verification: { state: 'verified' },
    });

    // The restore now plans the version the backup wrote, and the host fetches that one, never the current.
    const plan = await planFilesRestore(config, { primary: catalog, vault: undefined }, restoreRequest());
    expect(plan.archive).toMatchObject({ sha256: archive.sha256, versionId: firstVersion });
    // The host's copy is gone (pruned, or a new host): the restore fetches from S3.
    rmSync(archive.localPath, { force: true });
    writeFileSync(join(etc, 'app.conf'), 'listen = 9999\n');
    const restore = onHost(RESTORE_HOST_COMMANDS['files-restore'], { script: 'files-restore', plan });
    expect(restore.status, restore.stderr).toBe(0);
    expect(restore.stderr).toContain(`(version ${firstVersion}, the one its backup wrote)`);
    expect(readFileSync(join(etc, 'app.conf'), 'utf8')).toBe('listen = 8080\n');
  }, 120_000);

  it('prunes past retention by hiding current versions: every version stays, locked, until its date', async () => {
    const { plan: newer } = await backup('2026-12-01T03:00:00.000Z');
    const { archive } = first;
    // A hundred days on, past configuration's 90: the older backup goes, the newest verified stays.
    const pruned = await pruneRun(catalog, newer, new Date('2027-03-10T03:00:00.000Z'), 86_400);
    expect(pruned.removedFromS3).toEqual([archive.key]);
    const listed = await s3().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'configuration/' }));
    expect((listed.Contents ?? []).map((o) => o.Key)).toEqual([newer.archiveKey, newer.manifestKey]);
    // Each went behind a delete marker; its versions, the forged one too, are all still there.
    const { versions, deleteMarkers } = await versionsOf(s3(), archive.key);
    expect(deleteMarkers).toHaveLength(1);
    expect(versions.map((v) => v.VersionId)).toContain(firstVersion);
    expect(versions).toHaveLength(2);
    expect((await headOf(archive.key, firstVersion)).ObjectLockMode).toBe('GOVERNANCE');
    expect((await bytesOf(s3(), archive.key, firstVersion)).length).toBe(archive.size);
    // Its record stays: pruning never touches the records.
    expect((await readArchiveRecord(catalog, archive.key)).versionId).toBe(firstVersion);
  }, 120_000);

  it('locks the audit trail for AUDIT_DAYS: an exported history once, never replaced, and each version of a report', async () => {
    const [history] = syntheticMonth().histories;
    if (!history) throw new Error('no synthetic history');
    async function* pages() {
      yield history?.events ?? [];
    }
    const exported = await exportHistory(s3(), BUCKET, history.execution, pages());
    expect(exported.written).toBe(true);
    const auditDays = (from: Date | undefined) => new Date((from?.getTime() ?? 0) + AUDIT_DAYS * 86_400_000);
    const head = await headOf(exported.key);
    expect(head.ObjectLockMode).toBe('GOVERNANCE');
    expect(head.ObjectLockRetainUntilDate?.getTime()).toBe(auditDays(head.LastModified).getTime());
    // A second delivery writes nothing: S3 refuses it (If-None-Match) and the first stays the only version.
    expect(await exportHistory(s3(), BUCKET, history.execution, pages())).toEqual({
      key: exported.key,
      written: false,
    });
    expect((await versionsOf(s3(), exported.key)).versions).toHaveLength(1);
    // A report is written as any object is (the bucket's default lock), then lengthened.
    const report = auditReportKey('2026-10', 'md');
    await catalog.writeObject(report, '# October\n', 'text/markdown; charset=utf-8');
    expect(await lockForDays(s3(), BUCKET, report, AUDIT_DAYS)).toEqual(
      auditDays((await headOf(report)).LastModified),
    );
    expect((await headOf(report)).ObjectLockRetainUntilDate?.getTime()).toBe(
      auditDays((await headOf(report)).LastModified).getTime(),
    );
  }, 120_000);
});

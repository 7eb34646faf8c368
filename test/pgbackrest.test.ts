import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql } from '../local/environment.ts';
import { asServerUser, giveToServerUser, type LocalCluster, startPostgres } from '../local/postgres.ts';
import { LOCAL_S3_CREDENTIALS, type LocalS3, startLocalS3 } from '../local/s3.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { parseConfig } from '../shared/core/config.ts';
import { pgbackrestPath, renderPgbackrestConf } from '../shared/host/pgbackrest-conf.ts';
import { shellQuote } from '../shared/host/shell.ts';

/**
 * pgBackRest itself, against a throwaway cluster and the local S3 over TLS: the
 * foundation the physical kinds stand on. What it proves is pgBackRest's own
 * account (`info --output=json`) and the objects in the bucket.
 */

const BUCKET = 'kennel-backups-pgbackrest-test';
const TARGET = 'local';

let dir: string | undefined;
let s3Server: LocalS3 | undefined;
let s3: S3Client;
let cluster: LocalCluster | undefined;
let conf: string;
let pgbackrestEnv: Record<string, string>;

interface Info {
  name: string;
  status: { code: number; message: string };
  backup: { type: string; label: string; archive: { start: string; stop: string } }[];
  archive: { id: string; min: string | null; max: string | null }[];
}

/**
 * Asynchronous, never spawnSync: the local S3 answers from this very process, so a
 * blocked event loop would leave pgBackRest waiting on it until its I/O timeout.
 */
async function pgbackrest(...args: string[]): Promise<string> {
  const [cmd, argv] = asServerUser('pgbackrest', [`--config=${conf}`, `--stanza=${TARGET}`, ...args]);
  try {
    const { stdout } = await promisify(execFile)(cmd, argv, {
      encoding: 'utf8',
      cwd: tmpdir(),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...pgbackrestEnv },
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const { code, stdout, stderr } = error as { code?: number; stdout?: string; stderr?: string };
    throw new Error(`pgbackrest ${args.join(' ')} exited ${code}:\n${stdout ?? ''}${stderr ?? ''}`);
  }
}

const info = async (): Promise<Info> =>
  (JSON.parse(await pgbackrest('info', '--output=json')) as Info[])[0] as Info;
const sql = (query: string) => psql(cluster as LocalCluster, 'postgres', ['-A', '-t', '-c', query]).trim();

async function keysUnder(prefix: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => o.Key ?? '');
}

beforeAll(async () => {
  const version = spawnSync('pgbackrest', ['version'], { encoding: 'utf8' });
  if (version.error || version.status !== 0) {
    throw new Error(
      'pgBackRest is not installed, and the physical backups are built on it: install it (`apt-get install pgbackrest`, 2.45 or later) and run the tests again.',
    );
  }
  dir = mkdtempSync(join(tmpdir(), 'kennel-backup-pgbackrest-'));
  s3Server = await startLocalS3(join(dir, 's3'), BUCKET, join(dir, 'tls'));
  s3 = createS3Client(
    parseConfig({
      BACKUP_BUCKET: BUCKET,
      BACKUP_TARGETS: JSON.stringify([
        { name: TARGET, instanceIds: ['i-00000000000000000'], database: 'postgres' },
      ]),
      ALERT_WEBHOOK_PARAMETER: '/a',
      RESTORE_CHECK_DATABASE_URL_PARAMETER: '/b',
      S3_ENDPOINT_URL: s3Server.endpoint,
      S3_CA_BUNDLE: s3Server.caFile,
      ...LOCAL_S3_CREDENTIALS,
    }),
  );
  Object.assign(process.env, LOCAL_S3_CREDENTIALS);
  cluster = await startPostgres();

  // pgBackRest runs as the server user (archive_command does), so its files live in the cluster's own directory.
  const work = join(cluster.dir, 'pgbackrest');
  mkdirSync(join(work, 'lock'), { recursive: true });
  mkdirSync(join(work, 'log'), { recursive: true });
  const caFile = join(work, 'ca.pem');
  copyFileSync(s3Server.caFile, caFile);
  const { port } = new URL(s3Server.endpoint);
  conf = join(work, 'pgbackrest.conf');
  writeFileSync(
    conf,
    renderPgbackrestConf({
      target: TARGET,
      pgPath: cluster.dataDir,
      pgPort: cluster.port,
      pgSocketPath: cluster.socketDir,
      pgUser: cluster.user,
      repository: {
        bucket: BUCKET,
        region: 'us-east-1',
        endpoint: 'localhost',
        port: Number(port),
        uriStyle: 'path',
        caFile,
        keyType: 'shared',
      },
      lockPath: join(work, 'lock'),
      logPath: join(work, 'log'),
    }),
  );
  giveToServerUser(work);
  // s3rver's keys are public; on AWS the instance role signs and the file holds no key either.
  pgbackrestEnv = {
    PGBACKREST_REPO1_S3_KEY: LOCAL_S3_CREDENTIALS.AWS_ACCESS_KEY_ID,
    PGBACKREST_REPO1_S3_KEY_SECRET: LOCAL_S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY,
    PGPASSWORD: cluster.password,
  };
  const archiveCommand = `pgbackrest --config=${shellQuote(conf)} --stanza=${TARGET} archive-push %p`;
  sql('ALTER SYSTEM SET archive_mode = on');
  sql(`ALTER SYSTEM SET archive_command = '${archiveCommand.replaceAll("'", "''")}'`);
  // archive_mode needs a restart; the postmaster hands its environment to archive_command.
  cluster.restart(pgbackrestEnv);
}, 120_000);

afterAll(async () => {
  try {
    await cluster?.stop();
  } finally {
    await s3Server?.stop();
    // Unset when pgBackRest is missing: beforeAll failed before making anything.
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});

describe('pgBackRest against the local S3 over TLS', () => {
  it('creates the stanza, passes check, and takes a full backup that info reports', async () => {
    expect(sql('SHOW archive_mode')).toBe('on');
    await pgbackrest('stanza-create');
    await pgbackrest('check');
    await pgbackrest('backup', '--type=full');

    const stanza = await info();
    expect(stanza).toMatchObject({ name: TARGET, status: { code: 0, message: 'ok' } });
    expect(stanza.backup.map((b) => b.type)).toEqual(['full']);
    const [archive] = stanza.archive;
    expect(archive?.min).toMatch(/^[0-9A-F]{24}$/);
    // The backup's own WAL, start to stop, is in the archive it reports.
    expect(archive?.max && archive.max >= (stanza.backup[0]?.archive.stop ?? 'Z')).toBe(true);

    const prefix = pgbackrestPath(TARGET).slice(1);
    const keys = await keysUnder(`${prefix}/`);
    expect(keys).toContain(`${prefix}/backup/${TARGET}/backup.info`);
    expect(keys).toContain(`${prefix}/archive/${TARGET}/archive.info`);
    expect(
      keys.some((k) => k.startsWith(`${prefix}/backup/${TARGET}/${stanza.backup[0]?.label}/pg_data/`)),
    ).toBe(true);
  });

  it("pushes a committed row's WAL segment to the repository once the segment is switched", async () => {
    sql('CREATE TABLE archived_commit (id int PRIMARY KEY, note text)');
    sql("INSERT INTO archived_commit VALUES (1, 'committed before the switch')");
    const segment = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
    sql('SELECT pg_switch_wal()');

    const deadline = Date.now() + 60_000;
    let max = '';
    while (Date.now() < deadline) {
      max = (await info()).archive[0]?.max ?? '';
      if (max >= segment) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(max >= segment, `archive max ${max}, the commit's segment ${segment}`).toBe(true);
    const archiveId = (await info()).archive[0]?.id;
    const prefix = `${pgbackrestPath(TARGET).slice(1)}/archive/${TARGET}/${archiveId}/${segment.slice(0, 16)}/`;
    expect(
      (await keysUnder(prefix)).some((k) => k.startsWith(`${prefix}${segment}-`) && k.endsWith('.zst')),
    ).toBe(true);
    expect(sql('SELECT failed_count FROM pg_stat_archiver')).toBe('0');
  });
});

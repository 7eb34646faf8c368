import { type ChildProcess, spawn } from 'node:child_process';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { LocalCluster } from '../../local/postgres.ts';
import { pgbackrestPrefix } from '../../shared/catalog/keys.ts';
import type { TestWorld } from './environment.ts';

/** pg_stat_archiver of the world's cluster, as PostgreSQL reports it now. */
export interface ArchiverRow {
  archived_count: number;
  last_archived_wal: string | null;
  failed_count: number;
  last_failed_wal: string | null;
}

export function archiverRow(world: TestWorld): ArchiverRow {
  return JSON.parse(world.sql('postgres', 'SELECT row_to_json(a) FROM pg_stat_archiver a')) as ArchiverRow;
}

/**
 * Commits `rows` rows into a probe table of the sample database and switches to a
 * new WAL segment, which PostgreSQL hands to archive_command at once. Returns the
 * name of the segment that holds the rows.
 */
export function commitAndSwitch(world: TestWorld, rows = 10): string {
  world.sql(
    world.env.database,
    `CREATE TABLE IF NOT EXISTS wal_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
     INSERT INTO wal_probe (at) SELECT now() FROM generate_series(1, ${rows})`,
  );
  return world.sql('postgres', 'SELECT pg_walfile_name(pg_switch_wal())');
}

/** Polls `probe` every second until it returns a value; fails naming `what` after `seconds`. */
export async function until<T>(what: string, probe: () => T | undefined | false, seconds = 150): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Gave up waiting ${seconds} s for ${what}.`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Segments PostgreSQL has finished but not archived yet: its `.ready` files. */
export function segmentsWaiting(world: TestWorld): string[] {
  const names = world.sql('postgres', "SELECT name FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'");
  return names
    .split('\n')
    .filter(Boolean)
    .map((n) => n.replace(/\.ready$/, ''))
    .sort();
}

/** Every object under `prefix` in the world's bucket, as S3 lists them. */
async function objectsUnder(world: TestWorld, prefix: string): Promise<{ key: string; size: number }[]> {
  const objects: { key: string; size: number }[] = [];
  let token: string | undefined;
  do {
    const page = await world.s3.send(
      new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) objects.push({ key: o.Key ?? '', size: o.Size ?? 0 });
    token = page.NextContinuationToken;
  } while (token);
  return objects;
}

/** The WAL segments in the target's repository, by name (`<segment>-<sha1>.<compression>` there). */
export async function segmentsInRepository(world: TestWorld, target = 'local'): Promise<string[]> {
  return (await objectsUnder(world, `${pgbackrestPrefix(target)}archive/`))
    .flatMap(({ key }) => /\/([0-9A-F]{24})-[0-9a-f]{40}(?:\.\w+)?$/.exec(key)?.[1] ?? [])
    .sort();
}

/** The repository's bytes and objects, listed by the test itself. */
export async function repositorySize(world: TestWorld, target = 'local') {
  const objects = await objectsUnder(world, pgbackrestPrefix(target));
  return { bytes: objects.reduce((sum, o) => sum + o.size, 0), objects: objects.length };
}

/**
 * Restarts the world's cluster with `env` in the postmaster's environment, which
 * it hands to archive_command: pgBackRest reads PGBACKREST_* variables as options
 * (over its configuration file). Always with the local S3's keys, as the stack
 * started it.
 */
export function restartPostmaster(world: TestWorld, env: Record<string, string> = {}): void {
  const { PGBACKREST_REPO1_S3_KEY, PGBACKREST_REPO1_S3_KEY_SECRET } = world.env.hostEnv;
  (world.env.postgres as LocalCluster).restart({
    PGBACKREST_REPO1_S3_KEY: PGBACKREST_REPO1_S3_KEY ?? '',
    PGBACKREST_REPO1_S3_KEY_SECRET: PGBACKREST_REPO1_S3_KEY_SECRET ?? '',
    ...env,
  });
}

/** A TCP relay from 127.0.0.1:<port> to 127.0.0.1:<to>, as its own process. */
const RELAY = `
const net = require('node:net');
const [port, to] = process.argv.slice(1).map(Number);
net.createServer((client) => {
  const upstream = net.connect(to, '127.0.0.1');
  const end = () => { client.destroy(); upstream.destroy(); };
  client.on('error', end);
  upstream.on('error', end);
  client.pipe(upstream).pipe(client);
}).listen(port, '127.0.0.1', () => process.stdout.write('listening\\n'));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
`;

/**
 * A port on 127.0.0.1 where nothing answers (connection refused) until `open()`,
 * then a TCP relay to the world's S3: the repository's network path, cut and
 * restored. TLS passes through unchanged. The relay runs in its own process, so
 * that a blocking call here (a restart of the cluster, whose archiver pushes
 * through it) cannot stall it.
 */
export function severableRoute(world: TestWorld, port: number) {
  const s3Port = new URL(world.env.s3Endpoint).port;
  let relay: ChildProcess | undefined;
  return {
    async open(): Promise<void> {
      if (relay) return;
      const child = spawn(process.execPath, ['-e', RELAY, String(port), s3Port], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      relay = child;
      await new Promise<void>((resolve, reject) => {
        child.stdout?.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('listening')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`The relay to the local S3 exited with ${code}.`)));
      });
    },
    async close(): Promise<void> {
      const child = relay;
      relay = undefined;
      if (!child || child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin?.end();
      await exited;
    },
  };
}

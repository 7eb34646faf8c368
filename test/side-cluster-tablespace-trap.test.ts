import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asServerUser, findPostgresBinDir, freePort, giveToServerUser } from '../local/postgres.ts';

/**
 * The trap host/side-cluster.sh side_trap_tablespaces lays in a side cluster's
 * pg_tblspc for a tablespace production has and the backup set lacks, against
 * real PostgreSQL 15: a base backup taken before CREATE TABLESPACE, whose replay
 * would link pg_tblspc/OID to production's location and write the tablespace's
 * pages there. With the trap, a recovery that replays the creation stops before
 * it writes there; one that ends before it (the physical restore test's replay
 * to the backup's end, the tablespace made later) starts as it would without it.
 */

const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-tablespace-trap-'));
const bin = findPostgresBinDir();
const sideCluster = resolve('host/side-cluster.sh');
let port = 0;
let oid = '';
const location = join(dir, 'production-tablespace');
const files = () =>
  runAs('bash', ['-c', 'find "$1" -type f -printf "%p %s %T@\\n" | sort', '-', location]).stdout;

function runAs(cmd: string, args: string[]) {
  const [c, a] = asServerUser(cmd, args);
  const r = spawnSync(c, a, { encoding: 'utf8', cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(cmd: string, args: string[]): string {
  const r = runAs(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}
const sql = (p: number, query: string) =>
  ok(join(bin, 'psql'), ['-X', '-A', '-t', '-h', dir, '-p', `${p}`, '-d', 'postgres', '-c', query]);

/** Starts the copy of the base backup in `name` in recovery from the archive with `settings`; its pg_ctl status and log. */
function recover(name: string, settings: string): { started: boolean; log: string } {
  const data = join(dir, name);
  ok('bash', [
    '-c',
    `touch "$1/recovery.signal" && printf '%s\\n' "$2" >>"$1/postgresql.conf"`,
    '-',
    data,
    settings,
  ]);
  const start = runAs(join(bin, 'pg_ctl'), ['-D', data, '-l', `${data}.log`, '-w', '-t', '60', 'start']);
  return { started: start.status === 0, log: readFileSync(`${data}.log`, 'utf8') };
}

beforeAll(async () => {
  chmodSync(dir, 0o711);
  giveToServerUser(dir);
  port = await freePort();
  const data = join(dir, 'production');
  ok(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '--no-sync']);
  ok('mkdir', [join(dir, 'archive'), location]);
  ok(join(bin, 'pg_ctl'), [
    '-D',
    data,
    '-l',
    `${data}.log`,
    '-w',
    'start',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses='' -c archive_mode=on -c archive_command='cp %p ${dir}/archive/%f'`,
  ]);
  ok(join(bin, 'pg_basebackup'), ['-h', dir, '-p', `${port}`, '-D', join(dir, 'side'), '-X', 'stream']);
  sql(port, `CREATE TABLESPACE disk2 LOCATION '${location}'`);
  sql(port, 'CREATE TABLE stock TABLESPACE disk2 AS SELECT generate_series(1, 1000) AS id');
  oid = sql(port, "SELECT oid FROM pg_tablespace WHERE spcname = 'disk2'");
  sql(port, 'CHECKPOINT');
  const segment = sql(port, 'SELECT pg_walfile_name(pg_switch_wal())');
  for (let i = 0; i < 100 && sql(port, 'SELECT last_archived_wal FROM pg_stat_archiver') < segment; i++)
    await new Promise((r) => setTimeout(r, 100));
  ok(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']);
  // The script's text, as the host gets it rendered (this checkout may not be readable by the server user).
  ok('bash', [
    '-c',
    `${readFileSync(sideCluster, 'utf8')}\nside_trap_tablespaces "$1" "$2"`,
    '-',
    join(dir, 'side'),
    oid,
  ]);
  ok('cp', ['-a', join(dir, 'side'), join(dir, 'side-early')]);
}, 120_000);

afterAll(() => {
  for (const name of ['side', 'side-early'])
    runAs(join(bin, 'pg_ctl'), ['-D', join(dir, name), '-m', 'immediate', '-w', 'stop']);
  rmSync(dir, { recursive: true, force: true });
});

const settings = (p: number) =>
  `port = ${p}\nunix_socket_directories = '${dir}'\narchive_mode = off\nrestore_command = 'cp ${dir}/archive/%f %p'\nallow_in_place_tablespaces = on`;

describe("a side cluster's trap for a tablespace created after its backup", () => {
  it("stops the recovery that replays the tablespace's creation, before it writes into production's location", async () => {
    const before = files();
    expect(before).toContain('production-tablespace/PG_15_');
    const { started, log } = recover('side', settings(await freePort()));
    expect(started).toBe(false);
    expect(log).toContain(`could not remove directory "pg_tblspc/${oid}"`);
    expect(files()).toBe(before);
    expect(runAs('readlink', [join(dir, 'side', 'pg_tblspc', oid)]).status).not.toBe(0);
  });

  it('does nothing to a recovery that ends before the creation', async () => {
    const p = await freePort();
    const { started, log } = recover(
      'side-early',
      `${settings(p)}\nrecovery_target = 'immediate'\nrecovery_target_action = 'promote'`,
    );
    expect(started, log).toBe(true);
    for (let i = 0; i < 100 && sql(p, 'SELECT pg_is_in_recovery()') !== 'f'; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(sql(p, 'SELECT pg_is_in_recovery(), count(*) FROM pg_tablespace')).toBe('f|2');
  });
});

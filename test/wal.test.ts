import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localHost } from '../local/host.ts';
import { BACKUP_HOST_COMMANDS } from '../shared/backup/host-commands.ts';
import { checkWalContinuity, type WalContinuity } from '../shared/backup/wal-continuity.ts';
import {
  type WalProofScope,
  type WalSwitchFacts,
  walRun,
  walSwitchFactsSchema,
} from '../shared/backup/wal-plan.ts';
import { parseSegmentName } from '../shared/backup/wal-segments.ts';
import { parseConfig } from '../shared/core/config.ts';
import { archiveCommandOf } from '../shared/host/pgbackrest-conf.ts';
import { renderScript } from '../shared/host/shell.ts';
import { getBytes, putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';
import { archivedSegments, pgbackrest, stanzaInfo } from './support/pgbackrest.ts';

/**
 * The transaction-logs run's WAL half and the daily verification's repository
 * checks, against a real cluster archiving to the local S3 with pgBackRest, a
 * full backup taken with pgBackRest itself, and the real state machines.
 */

let world: TestWorld;
let full: { label: string; archiveStart: string };
let archiveId: string;
const MIB16 = 16 * 1024 * 1024;

const sql = (query: string) => world.sql('kennel_prod', query);

/** A commit, and a switch, so that the repository holds a few segments past the backup. */
function commitAndSwitch(note: string) {
  sql(
    `INSERT INTO audit_logs (actor, action, entity) VALUES ('wal-test', '${note}', 'booking'); SELECT pg_switch_wal()`,
  );
}

interface WalIteration {
  plan: { engine: string; target: string };
  status: string;
  walSwitch: { result: WalSwitchFacts };
  continuity: WalContinuity;
}

const walRunOf = (output: unknown) =>
  (output as { runs: WalIteration[] }).runs.find((r) => r.plan.engine === 'wal') as WalIteration;

/** The wal-switch host script alone, as StartWalSwitch renders it, with `params` over the rendered ones. */
async function runWalSwitch(params: Record<string, string> = {}) {
  const config = parseConfig(world.env.functionEnv);
  const target = config.BACKUP_TARGETS[0];
  if (!target) throw new Error('no target');
  const command = BACKUP_HOST_COMMANDS['wal-switch'];
  const plan = walRun(
    target,
    'arn:aws:states:us-east-1:123456789012:execution:wal-test:host',
    new Date().toISOString(),
  );
  const script = renderScript(command.script, {
    ...command.params(config, target, { script: 'wal-switch', plan }),
    ...params,
  });
  const host = localHost(world.env.hostEnv);
  const { commandId, instanceId } = await host.send({
    target,
    script,
    comment: 'wal-switch',
    timeoutSeconds: 120,
  });
  await host.drain();
  return host.get(commandId, instanceId);
}

beforeAll(async () => {
  world = await startWorld();
  await pgbackrest(world, 'backup', '--type=full');
  const info = await stanzaInfo(world);
  const [backup] = info.backup;
  if (!backup || !info.archive[0]) throw new Error('pgBackRest took no full backup');
  full = { label: backup.label, archiveStart: backup.archive.start };
  archiveId = info.archive[0].id;
  for (const note of ['one', 'two', 'three']) commitAndSwitch(note);
}, 120_000);
afterAll(async () => {
  await world?.stop();
});

describe('a transaction-logs run', () => {
  it('switches the segment of a commit just made, and proves every segment from the full backup to it is in the repository', async () => {
    sql(
      "INSERT INTO audit_logs (actor, action, entity) VALUES ('wal-test', 'just before the run', 'booking')",
    );
    const commitSegment = sql('SELECT pg_walfile_name(pg_current_wal_insert_lsn())');

    const dumps = await world.catalog.listKeys('database/');
    const run = await runIn(world, { input: { kind: 'transaction-logs' } });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    // The WAL run is all of it: no row-window archive, no dump.
    expect((run.record.output as { runs: unknown[] }).runs).toHaveLength(1);
    expect(await world.catalog.listKeys('database/')).toEqual(dumps);
    const wal = walRunOf(run.record.output);
    expect(wal.status).toBe('succeeded');
    const facts = wal.walSwitch.result;
    // The switch completed the commit's segment (it was not idle), and PostgreSQL archived it.
    expect(facts).toMatchObject({ segment: commitSegment, idle: false, walSegmentSize: MIB16 });
    expect(facts.archive).toMatchObject({ id: archiveId, max: commitSegment });

    const from = parseSegmentName(full.archiveStart, MIB16);
    const to = parseSegmentName(commitSegment, MIB16);
    expect(wal.continuity).toMatchObject({
      target: 'local',
      archiveId,
      backup: full.label,
      from: full.archiveStart,
      to: commitSegment,
      segments: to.segno - from.segno + 1,
      timelines: [1],
    });
    // What the proof says is there, the bucket has: every segment from the backup's start to the switched one.
    const stored = (await archivedSegments(world, archiveId)).map(
      (s) => parseSegmentName(s.name, MIB16).segno,
    );
    for (let segno = from.segno; segno <= to.segno; segno += 1) expect(stored).toContain(segno);
    expect(wal.continuity.segments).toBeGreaterThanOrEqual(5);
  });

  it('on an idle server switches nothing: it reports the newest completed segment, archived already', async () => {
    // The host script alone, run back to back: a workflow's stages would write WAL between two runs. The
    // bgwriter logs a standby snapshot within 15 s of a switch, which is WAL too, so a run right after
    // another is idle unless that snapshot (or autovacuum's WAL) fell between them; on a loaded machine
    // a run can take seconds, so up to ten tries.
    const switchWal = async () => {
      const { status, stdout, stderr } = await runWalSwitch();
      expect(status, stderr).toBe('Success');
      return walSwitchFactsSchema.parse(JSON.parse(/^KB-RESULT (.*)$/m.exec(stdout)?.[1] ?? 'null'));
    };
    const runs = [await switchWal()];
    // At least a second run: the first may be idle already, after the test before it.
    for (let i = 0; i < 10 && (runs.length < 2 || !runs.at(-1)?.idle); i += 1) runs.push(await switchWal());
    for (const [i, run] of runs.entries()) {
      const previous = runs[i - 1];
      if (!previous) continue;
      // Idle: the same segment as the run before; otherwise the next one the switch completed.
      expect(run.segment > previous.segment, JSON.stringify(run)).toBe(!run.idle);
      if (run.idle) expect(run.segment).toBe(previous.segment);
    }
    expect(runs.slice(1).some((run) => run.idle)).toBe(true);
    expect(
      sql(`SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name = '${runs.at(-1)?.segment}.ready'`),
    ).toBe('0');
  });
});

describe('a segment missing from the repository', () => {
  it('fails the next transaction-logs run and the daily verification, naming it and when its changes were written', async () => {
    commitAndSwitch('before the loss');
    const segments = await archivedSegments(world, archiveId);
    const fromIndex = segments.findIndex((s) => s.name === full.archiveStart);
    const lost = segments[fromIndex + 2];
    const before = segments[fromIndex + 1];
    const after = segments[fromIndex + 3];
    if (!lost || !before || !after) throw new Error('too few segments in the repository');
    const bytes = await getBytes(world.s3, world.env.bucket, lost.key);
    await world.s3.send(new DeleteObjectCommand({ Bucket: world.env.bucket, Key: lost.key }));
    try {
      const gap = `WAL segment ${lost.name} is missing from the repository (s3://${world.env.bucket}/pgbackrest/local/archive/local/${archiveId}/): the changes written after about ${before.lastModified.toISOString()} (when ${before.name} was archived) and before about ${after.lastModified.toISOString()} (when ${after.name}, the next segment found, was archived) cannot be replayed. A recovery from the backup ${full.label} stops before them.`;

      const run = await runIn(world, { input: { kind: 'transaction-logs' } });
      expect(run.record.status).toBe('FAILED');
      expect(run.record.error).toBe('BackupRunsFailed');
      const walAlerts = run.alerts.filter((a) => a.state === 'CheckWalContinuity');
      expect(walAlerts).toHaveLength(1);
      expect(walAlerts[0]?.error).toBe('WalContinuityError');
      expect(walAlerts[0]?.cause).toContain(gap);
      expect(walAlerts[0]?.text).toContain('Target: local (transaction-logs)');
      // One alert: the WAL run is the execution's only run.
      expect(run.alerts).toHaveLength(1);

      const verification = await runIn(world, { workflow: 'daily-verification', input: {} });
      expect(verification.record.status).toBe('FAILED');
      expect(verification.record.error).toBe('VerificationFailedError');
      const problems = (verification.record.cause ?? '').split('\n').filter((l) => l.startsWith('- '));
      expect(problems.filter((l) => l.startsWith('- the WAL archive of local: '))).toEqual([
        `- the WAL archive of local: WalContinuityError: ${gap} Restore the object from the bucket's earlier versions if it is there; otherwise take a full backup now (database-backup with {"kind": "full"}) so that recovery can start after the gap, and find out how the segment was lost.`,
      ]);
      expect(verification.alerts).toHaveLength(1);
      expect(verification.alerts[0]?.text).toContain(lost.name);
    } finally {
      await putBytes(world.s3, world.env.bucket, lost.key, bytes);
    }
  });
});

describe('the daily verification of the repository', () => {
  it('runs pgbackrest verify: a corrupted backup file is named; the WAL, whole again, and the fresh full pass', async () => {
    const base = `pgbackrest/local/backup/local/${full.label}/pg_data/base/`;
    const listed = await world.s3.send(new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: base }));
    const file = listed.Contents?.map((o) => o.Key?.slice(base.length) ?? '').find((k) =>
      /^\d+\/\d+\.zst$/.test(k),
    );
    if (!file) throw new Error('no data file in the backup');
    const key = `${base}${file}`;
    const bytes = await getBytes(world.s3, world.env.bucket, key);
    await putBytes(world.s3, world.env.bucket, key, Buffer.from('not what pgBackRest stored'));
    try {
      const run = await runIn(world, { workflow: 'daily-verification', input: {} });
      expect(run.record.status).toBe('FAILED');
      const problems = (run.record.cause ?? '').split('\n').filter((l) => l.startsWith('- '));
      const repository = problems.filter(
        (l) => l.includes(' of local: ') && /repository|WAL|physical/.test(l),
      );
      expect(repository).toEqual([
        expect.stringMatching(
          new RegExp(
            `^- the pgBackRest repository of local: pgbackrest verify found 1 bad file\\(s\\): invalid checksum '${full.label}/pg_data/base/${file.replace('.', '\\.')}' \\(its report: backup: ${full.label}, status: invalid, `,
          ),
        ),
      ]);
    } finally {
      await putBytes(world.s3, world.env.bucket, key, bytes);
    }
  });
});

describe('an archive that does not keep up', () => {
  it("fails the WAL switch, naming the segment not archived and the archiver's last failure", async () => {
    const target = parseConfig(world.env.functionEnv).BACKUP_TARGETS[0];
    if (!target) throw new Error('no target');
    const setArchiveCommand = (command: string) => {
      sql(`ALTER SYSTEM SET archive_command = '${command.replaceAll("'", "''")}'`);
      sql('SELECT pg_reload_conf()');
    };
    setArchiveCommand('false');
    try {
      sql("INSERT INTO audit_logs (actor, action, entity) VALUES ('wal-test', 'not archived', 'booking')");
      const { status, stdout, stderr } = await runWalSwitch({ KB_ARCHIVE_WAIT_SECONDS: '5' });
      expect(status).toBe('Failed');
      const segment = /^wal-switch: segment ([0-9A-F]{24})$/m.exec(stdout)?.[1];
      expect(segment, stdout).toBeDefined();
      expect(stderr).toMatch(
        new RegExp(
          `^wal-switch: PostgreSQL has not archived WAL segment ${segment} within 5 s: its archiver last archived [0-9A-F]{24} at .+ and last failed on ${segment} at .+ \\([1-9]\\d* failures since .+\\)\\. Read archive_command's error in the PostgreSQL log, and run pgbackrest check on the host$`,
          'm',
        ),
      );
      expect(stdout).not.toContain('KB-RESULT');
    } finally {
      setArchiveCommand(archiveCommandOf(target));
    }
  });
});

describe('the continuity proof across timelines', () => {
  // A repository of its own archive id, written here: timeline 1 from segment 2, then a recovery
  // promoted timeline 2 in segment 4 while the old primary had gone on to 5. Listed two keys a page.
  const ARCHIVE = '15-9';
  const prefix = `pgbackrest/local/archive/local/${ARCHIVE}/`;
  const sha1 = 'a'.repeat(40);
  const key = (name: string) => `${prefix}${name.slice(0, 16)}/${name}-${sha1}.zst`;
  const STORED = [
    ...['02', '03', '04', '05'].map((n) => `0000000100000000000000${n}`),
    ...['04', '05', '06', '07'].map((n) => `0000000200000000000000${n}`),
  ];
  const facts = (changes: Partial<WalSwitchFacts> = {}): WalSwitchFacts => ({
    segment: '000000020000000000000007',
    idle: false,
    walSegmentSize: MIB16,
    switchedAt: '2026-11-26T02:15:00Z',
    archivedAt: '2026-11-26T02:15:01Z',
    archive: { id: ARCHIVE, min: '000000010000000000000002', max: '000000020000000000000007' },
    backups: [
      {
        label: '20261126-010000F',
        type: 'full',
        archiveStart: '000000010000000000000002',
        startedAt: '2026-11-26T01:00:00Z',
      },
    ],
    newestFull: { label: '20261126-010000F', stoppedAt: '2026-11-26T01:05:00Z' },
    newestBackup: {
      label: '20261126-010000F',
      type: 'full',
      archiveStart: '000000010000000000000002',
      startedAt: '2026-11-26T01:00:00Z',
      stoppedAt: '2026-11-26T01:05:00Z',
    },
    ...changes,
  });
  const prove = (changes: Partial<WalSwitchFacts> = {}, proves: WalProofScope = 'every-kept-backup') => {
    const config = parseConfig(world.env.functionEnv);
    const target = config.BACKUP_TARGETS[0];
    if (!target) throw new Error('no target');
    const plan = walRun(
      target,
      'arn:aws:states:us-east-1:123456789012:execution:wal-test:tli',
      '2026-11-26T02:15:00Z',
      proves,
    );
    return checkWalContinuity(world.s3, config, { plan, facts: facts(changes) }, { pageSize: 2 });
  };

  beforeAll(async () => {
    for (const name of STORED) await putBytes(world.s3, world.env.bucket, key(name), name);
    await putBytes(
      world.s3,
      world.env.bucket,
      `${key('000000010000000000000004').replace('-', '.partial-')}`,
      'partial',
    );
    await putBytes(
      world.s3,
      world.env.bucket,
      `${prefix}00000002.history`,
      '1\t0/4000000\tno recovery target specified\n',
    );
  });

  it("follows the backup's timeline to the switch point and the new timeline after it", async () => {
    await expect(prove()).resolves.toMatchObject({
      backup: '20261126-010000F',
      from: '000000010000000000000002',
      to: '000000020000000000000007',
      segments: 6,
      timelines: [1, 2],
    });
  });

  it('starts at the oldest segment kept when there is no backup yet', async () => {
    await expect(prove({ backups: [] })).resolves.toMatchObject({
      backup: null,
      from: '000000010000000000000002',
      segments: 6,
    });
  });

  it("counts a segment of the abandoned timeline for nothing: the new timeline's own is missing", async () => {
    await world.s3.send(
      new DeleteObjectCommand({ Bucket: world.env.bucket, Key: key('000000020000000000000005') }),
    );
    try {
      await expect(prove()).rejects.toThrow(
        /^WAL segment 000000020000000000000005 is missing from the repository .*: the changes written after about \S+ \(when 000000020000000000000004 was archived\) and before about \S+ \(when 000000020000000000000006, the next segment found, was archived\)/,
      );
    } finally {
      await putBytes(world.s3, world.env.bucket, key('000000020000000000000005'), 'back');
    }
  });

  it("a gap before the newest backup: the transaction-logs run proves that backup's WAL whole; the verification names the older windows lost and asks no new full", async () => {
    // An incremental begun on timeline 2 after the gap in timeline 1's WAL.
    const newestBackup = {
      label: '20261126-010000F_20261126-020500I',
      type: 'incr' as const,
      archiveStart: '000000020000000000000006',
      startedAt: '2026-11-26T02:05:00Z',
      stoppedAt: '2026-11-26T02:06:00Z',
    };
    await world.s3.send(
      new DeleteObjectCommand({ Bucket: world.env.bucket, Key: key('000000010000000000000003') }),
    );
    try {
      await expect(prove({ newestBackup }, 'newest-backup')).resolves.toMatchObject({
        backup: newestBackup.label,
        from: '000000020000000000000006',
        segments: 2,
      });
      const older = prove({ newestBackup });
      await expect(older).rejects.toThrow(/^WAL segment 000000010000000000000003 is missing/);
      await expect(older).rejects.toThrow(
        `the windows before the backup ${newestBackup.label} (begun 2026-11-26T02:05:00Z) cannot be recovered across the gap, while recoveries from that backup on are whole`,
      );
      await expect(older).rejects.not.toThrow('take a full backup now');
      // Without a backup after it, the gap asks for a full, as before.
      await expect(prove()).rejects.toThrow('take a full backup now');
    } finally {
      await putBytes(world.s3, world.env.bucket, key('000000010000000000000003'), 'back');
    }
  });

  it('refuses to prove a timeline whose history file the repository lacks', async () => {
    await expect(
      prove({
        segment: '000000030000000000000008',
        archive: { id: ARCHIVE, min: null, max: '000000030000000000000008' },
      }),
    ).rejects.toThrow(
      `The timeline history file s3://${world.env.bucket}/${prefix}00000003.history is missing from the repository`,
    );
  });
});

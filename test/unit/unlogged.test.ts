import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { physicalRestoreTestOutcome } from '../../shared/backup/physical-restore-test.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { type Unlogged, unloggedPlanNote } from '../../shared/catalog/unlogged.ts';
import { reportPointInTimeRecovery } from '../../shared/restore/point-in-time-report.ts';

/**
 * Unlogged tables and sequences come back empty from every physical recovery
 * (PostgreSQL writes no WAL for their rows, pgBackRest's backups hold none):
 * the restore test, the recovery's plan and its summary name them from the
 * host's facts, instead of reporting the recovery whole.
 */

const s3 = mockClient(S3Client);
const catalog = new Catalog(new S3Client({ region: 'eu-west-1' }), 'kennel-backup-test');
beforeEach(() => {
  s3.reset();
  s3.on(PutObjectCommand).resolves({});
});

const CART: Unlogged['relations'][number] = ['kennel_prod', 'public', 'cart_sessions', 'table'];
const OTHER: Unlogged['relations'][number] = ['kennel_archive', 'public', 'scratch_seq', 'sequence'];
const SET = '20261130-020000F';
const command = {
  script: 'point-in-time-restore',
  hostScript: 'point-in-time-restore',
  target: 'local',
  commandId: 'cmd-1',
  instanceId: 'i-00000000000000000',
  deadline: '2026-12-01T00:00:00.000Z',
  status: 'Success' as const,
  sentAt: '2026-11-30T10:00:00.000Z',
  finishedAt: '2026-11-30T10:01:00.000Z',
};

describe('the physical restore test', () => {
  it('passes a set whose unlogged table came back empty, and names that table in its outcome', () => {
    const result = {
      set: SET,
      state: 'passed',
      backupBytes: 1000,
      consistentAt: '0/4000100',
      timeline: 2,
      amcheck: 'passed',
      databases: [{ name: 'kennel_prod', tables: 2, rows: 5, counts: [] }],
      tables: 2,
      rows: 5,
      countsDigest: 'a'.repeat(64),
      countsListed: true,
      swept: [],
      unlogged: [CART],
      unloggedCount: 1,
      startedAt: '2026-11-30T02:10:00.000Z',
      finishedAt: '2026-11-30T02:11:00.000Z',
      seconds: { restore: 8, recovery: 1, checks: 1, total: 12 },
    };
    const { outcome } = physicalRestoreTestOutcome(
      {
        set: SET,
        state: {
          plan: {
            target: 'local',
            runId: '20261130T020000Z_0123abcd',
            startedAt: '2026-11-30T02:00:00.000Z',
          },
          physicalRestoreTestCommand: {
            ...command,
            script: 'physical-restore-test',
            hostScript: 'physical-restore-test',
            result,
          },
        },
      },
      new Date('2026-11-30T02:12:00.000Z'),
    );
    expect(outcome.state).toBe('passed');
    expect(outcome.unlogged).toEqual({ relations: [CART], count: 1 });
    expect(outcome.detail).toContain(
      '1 unlogged relation comes back empty, whatever the target: table public.cart_sessions (kennel_prod)',
    );
  });
});

describe("a point-in-time recovery's plan", () => {
  const base = { label: SET, unlogged: { relations: [CART, OTHER], count: 2 } };

  it("names the recovered database's unlogged relations only, and says only the logical dump holds their rows", () => {
    const note = unloggedPlanNote(base, 'kennel_prod');
    expect(note).toContain('table public.cart_sessions (kennel_prod)');
    expect(note).not.toContain('scratch_seq');
    expect(note).toContain('only the logical dump (database-restore) holds their rows');
    expect(unloggedPlanNote(base, null)).toContain('2 unlogged relations come back empty');
    expect(unloggedPlanNote(base, null)).toContain('sequence public.scratch_seq (kennel_archive)');
  });

  it('says nothing when there are none, and warns when the base set was tested before they were listed', () => {
    expect(unloggedPlanNote({ label: SET, unlogged: { relations: [], count: 0 } }, 'kennel_prod')).toBeNull();
    expect(unloggedPlanNote({ label: SET }, 'kennel_prod')).toMatch(
      /^Unlogged tables and sequences of kennel_prod, if there are any, come back empty \(the restore test of 20261130-020000F did not list them\)/,
    );
  });

  it('counts the relations the host left unlisted as possibly the database’s', () => {
    expect(
      unloggedPlanNote({ label: SET, unlogged: { relations: [CART], count: 60 } }, 'kennel_prod'),
    ).toContain(
      '60 unlogged relations come back empty, whatever the target: table public.cart_sessions (kennel_prod) and 59 more',
    );
  });
});

describe("a point-in-time recovery's summary", () => {
  it('names the unlogged table that came back empty, beside the row counts that matched', async () => {
    const plan = {
      target: 'local',
      scope: 'database',
      runId: '20261130T100000Z_0123abcd',
      executionId: 'arn:aws:states:eu-west-1:123456789012:execution:pitr:1',
      startedAt: '2026-11-30T10:00:00.000Z',
      dryRun: false,
      targetTime: 'latest',
      database: 'kennel_prod',
      targetDatabase: 'kennel_unl',
      overProduction: false,
      stagingDatabase: 'kb_restoring_20261130t100000z_0123abcd',
      replacedDatabase: 'kb_replaced_20261130t100000z_0123abcd',
      safetyDump: null,
      base: {
        label: SET,
        kind: 'full',
        stoppedAt: '2026-11-30T02:05:00.000Z',
        archiveStart: '000000010000000000000004',
        databaseBytes: 1000,
        recordKey: 'k',
      },
      oldestRecoverable: '2026-11-30T02:05:01Z',
      wal: {
        from: '000000010000000000000004',
        to: null,
        segments: 3,
        newestArchivedAt: null,
        timeline: 1,
        timelineReason: 'the newest timeline in the repository',
        path: [{ timeline: 1, firstSegno: 0 }],
        segmentBytes: 16 * 1024 * 1024,
      },
      expected: { seconds: null, secondsPerGB: null, measuredAt: null, note: 'none' },
      replaces: 'nothing',
      source: 'primary',
      unlogged: unloggedPlanNote({ label: SET, unlogged: { relations: [CART], count: 1 } }, 'kennel_prod'),
    };
    const facts = {
      scope: 'database',
      set: SET,
      targetTime: null,
      backupBytes: 1000,
      timeline: 2,
      stoppedBefore: null,
      lastTransactionAt: null,
      database: 'kennel_prod',
      staging: plan.stagingDatabase,
      tables: 12,
      rows: 4000,
      amcheck: 'passed',
      swept: [],
      unlogged: [CART],
      unloggedCount: 1,
      startedAt: '2026-11-30T10:00:05.000Z',
      finishedAt: '2026-11-30T10:00:55.000Z',
      seconds: { restore: 10, recovery: 10, checks: 10, copy: 10, total: 50 },
    };
    const output = await reportPointInTimeRecovery(
      catalog,
      { plan, restore: { ...command, result: facts } },
      '2026-11-30T10:01:30.000Z',
    );
    expect(output.unlogged).toEqual({ relations: [CART], count: 1 });
    expect(output.checks).toContain(
      "12 tables, 4000 rows: the staging database's row counts equal the recovered database's (1 unlogged, empty in both)",
    );
    expect(output.summary).toContain(
      'Warning: 1 unlogged relation comes back empty, whatever the target: table public.cart_sessions (kennel_prod). PostgreSQL writes no WAL for their rows',
    );
  });
});

import { describe, expect, it } from 'vitest';
import type { ExportedHistory } from '../../shared/audit/history-export.ts';
import { renderHtml, renderMarkdown } from '../../shared/audit/render.ts';
import { auditedExecution, auditReport, seconds } from '../../shared/audit/report.ts';
import { cronTimes } from '../../shared/audit/slots.ts';
import { SCHEDULES } from '../../shared/catalog/schedule.ts';
import { DAY_MS } from '../../shared/core/time.ts';
import {
  FAILED_DAY,
  GiB,
  MISSED_DAY,
  MONTH,
  OPERATOR_RESTORE,
  RESTORE_INPUT,
  syntheticHistory,
  syntheticMonth,
} from '../support/audit-month.ts';
import { PRIMARY_WITH_PGBACKREST, testConfig } from '../support/config.ts';

const targets = testConfig({ BACKUP_TARGETS: JSON.stringify([PRIMARY_WITH_PGBACKREST]) }).BACKUP_TARGETS;
const month = syntheticMonth();
const report = auditReport({
  month: MONTH,
  now: new Date('2026-11-01T07:00:00Z'),
  targets,
  executions: month.histories.map(auditedExecution),
  manifests: month.manifests,
  physical: month.physical,
  unreadable: [],
  budgetUsd: 5,
});

describe('what followed a failure', () => {
  const backup = (name: string, input: unknown, start: string, status: 'SUCCEEDED' | 'FAILED') =>
    syntheticHistory({ workflow: 'database-backup', name, input, start, minutes: 10, status });
  const twoDatabases = testConfig({
    BACKUP_TARGETS: JSON.stringify([
      { ...PRIMARY_WITH_PGBACKREST, databases: ['kennel_prod', 'kennel_archive'] },
    ]),
  }).BACKUP_TARGETS;
  const failuresOf = (...histories: ExportedHistory[]) =>
    auditReport({
      month: MONTH,
      now: new Date('2026-11-01T07:00:00Z'),
      targets: twoDatabases,
      executions: histories.map(auditedExecution),
      manifests: [],
      physical: [],
      unreadable: [],
      budgetUsd: null,
    }).failures;

  it("is not a success of another database's backup", () => {
    const [failure] = failuresOf(
      backup('prod', { kind: 'full', database: 'kennel_prod' }, '2026-10-03T10:00:00.000Z', 'FAILED'),
      backup(
        'archive',
        { kind: 'full', database: 'kennel_archive' },
        '2026-10-03T11:00:00.000Z',
        'SUCCEEDED',
      ),
    );
    expect(failure).toMatchObject({ execution: 'prod', kind: 'full', resolvedBy: null });
  });

  it('reads the kind a default input stands for, and takes a success of the default for one that named it', () => {
    const failures = failuresOf(
      backup('defaults', {}, '2026-10-03T10:00:00.000Z', 'FAILED'),
      backup('named', { kind: 'full' }, '2026-10-03T11:00:00.000Z', 'FAILED'),
      backup('again', {}, '2026-10-03T12:00:00.000Z', 'SUCCEEDED'),
    );
    expect(failures.map((f) => [f.execution, f.kind, f.resolvedBy?.execution])).toEqual([
      ['defaults', 'full', 'again'],
      ['named', 'full', 'again'],
    ]);
  });

  it('takes a backup of every database as one of each, but not one database for all', () => {
    const failures = failuresOf(
      backup('all', { kind: 'full' }, '2026-10-03T10:00:00.000Z', 'FAILED'),
      backup('prod', { kind: 'full', database: 'kennel_prod' }, '2026-10-03T11:00:00.000Z', 'SUCCEEDED'),
      backup('prod-failed', { database: 'kennel_prod' }, '2026-10-03T12:00:00.000Z', 'FAILED'),
      backup('everything', { target: 'primary' }, '2026-10-03T13:00:00.000Z', 'SUCCEEDED'),
    );
    expect(failures.map((f) => [f.execution, f.resolvedBy?.execution])).toEqual([
      ['all', 'everything'],
      ['prod-failed', 'everything'],
    ]);
  });
});

describe("an operator's dry runs and refused inputs", () => {
  const restore = (name: string, input: unknown, options: Partial<Parameters<typeof syntheticHistory>[0]>) =>
    syntheticHistory({
      workflow: 'database-restore',
      name,
      input,
      start: '2026-10-22T14:00:00.000Z',
      minutes: 1,
      ...options,
    });
  const over = { database: 'kennel_prod', targetDatabase: 'kennel_prod' };
  const withDryRuns = auditReport({
    month: MONTH,
    now: new Date('2026-11-01T07:00:00Z'),
    targets,
    executions: [
      ...month.histories,
      restore('dry-run', { ...over, dryRun: true }, {}),
      restore('typo', { ...over, confirm: 'kennel_pro' }, { status: 'FAILED', error: 'InvalidInputError' }),
      restore('no-json', null, { status: 'FAILED', error: 'InvalidInputError' }),
      restore(
        'failed-on-the-host',
        { ...over, confirm: 'kennel_prod' },
        { status: 'FAILED', error: 'HostCommandFailedError', sends: 'StartRestore' },
      ),
    ].map(auditedExecution),
    manifests: month.manifests,
    physical: month.physical,
    unreadable: [],
    budgetUsd: null,
  });

  it('are counted apart: neither restores an operator ran nor failures to follow up', () => {
    expect(withDryRuns.operatorRestores.map((r) => [r.execution, r.status])).toEqual([
      ['failed-on-the-host', 'FAILED'],
      [OPERATOR_RESTORE, 'SUCCEEDED'],
    ]);
    expect(withDryRuns.failures.map((f) => f.execution)).toEqual([
      'full-20261020T020020000Z',
      'failed-on-the-host',
    ]);
    expect(withDryRuns.changedNothing).toEqual([{ workflow: 'database-restore', dryRuns: 1, refused: 2 }]);
    expect(withDryRuns.summary).toMatchObject({
      operatorRestores: 2,
      dryRuns: 1,
      refusedInputs: 2,
      failures: 2,
      unresolvedFailures: 1,
    });
    expect(withDryRuns.recovery.filter((r) => r.what === 'operator restore')).toHaveLength(2);
    expect(renderMarkdown(withDryRuns)).toContain(
      'database-restore: 1 dry run, 2 inputs refused before anything was sent to the host.',
    );
  });
});

describe('the slots counted', () => {
  it('are none in a month before the system existed, and say so', () => {
    const before = auditReport({
      month: '1999-01',
      now: new Date('2026-11-01T07:00:00Z'),
      targets,
      executions: [],
      manifests: month.manifests,
      physical: month.physical,
      unreadable: [],
      budgetUsd: null,
    });
    expect(before.summary).toMatchObject({ slots: 0, gaps: 0, ran: 0 });
    expect(before.slotsCountedFrom.map((s) => s.from)).toEqual(before.slotsCountedFrom.map(() => null));
    expect(renderMarkdown(before)).toContain('never ran: no slot counted');
  });

  it("start at each series' first execution or backup: a series that began mid-month missed nothing before it", () => {
    // The files backups were deployed on the 15th; everything else ran all month.
    const files = (workflow: string) => workflow === 'files-backup';
    const histories = month.histories.filter(
      (h) => !files(h.execution.workflow) || h.execution.startDate >= '2026-10-15',
    );
    const late = auditReport({
      month: MONTH,
      now: new Date('2026-11-01T07:00:00Z'),
      targets,
      executions: histories.map(auditedExecution),
      manifests: month.manifests.filter((m) => !('paths' in m) || m.startedAt >= '2026-10-15'),
      physical: month.physical,
      unreadable: [],
      budgetUsd: null,
    });
    expect(late.summary.gapsByType['missed-slot']).toBe(2);
    const configuration = late.slotsCountedFrom.find((s) => s.kind === 'configuration');
    const first = late.slots.find((s) => s.kind === 'configuration');
    expect(configuration?.from).toBe(first?.at);
    expect(configuration?.from?.slice(0, 10)).toBe('2026-10-15');
    expect(late.slots.filter((s) => s.kind === 'configuration')).toHaveLength(17);
    expect(late.slotsCountedFrom.find((s) => s.kind === 'full' && s.engine === 'logical')?.from).toBe(
      '2026-10-01T00:00:00.000Z',
    );
  });
});

describe('a series first seen through a backup another run made', () => {
  // The stack came up at 23:38 and its first full backup took the first pgBackRest backup at
  // 23:39: WAL is archived from then on, and no transaction-logs run existed before.
  const first = month.physical.find((r) => r.kind === 'full');
  const late = auditReport({
    month: MONTH,
    now: new Date('2026-11-01T00:20:00Z'),
    targets,
    executions: [],
    manifests: [],
    physical: first ? [{ ...first, backup: { ...first.backup, startedAt: '2026-10-31T23:39:00.000Z' } }] : [],
    unreadable: [],
    budgetUsd: null,
  });
  const wal = () => late.slotsCountedFrom.find((s) => s.engine === 'wal');

  it('counts the WAL slots from the one due after it, not the one due just before (23:30)', () => {
    expect(wal()).toMatchObject({ from: '2026-10-31T23:45:00.000Z', firstSeen: '2026-10-31T23:39:00.000Z' });
    expect(late.gaps.filter((g) => g.type === 'missed-slot').map((g) => g.at)).not.toContain(
      '2026-10-31T23:30:00.000Z',
    );
  });

  it('says of a series seen but with no slot due since that it ran, not that it never ran', () => {
    const full = late.slotsCountedFrom.find((s) => s.kind === 'full' && s.engine === 'physical');
    expect(full).toMatchObject({ from: null, firstSeen: '2026-10-31T23:39:00.000Z' });
    const markdown = renderMarkdown(late);
    expect(markdown).toContain('first seen 2026-10-31T23:39:00.000Z: no slot due since');
  });
});

describe('the slots of a month', () => {
  it("are the crons of shared/catalog/schedule.ts, in UTC: October 2026's", () => {
    const october = [new Date('2026-10-01T00:00:00Z'), new Date('2026-11-01T00:00:00Z')] as const;
    const count = (kind: keyof typeof SCHEDULES) => cronTimes(SCHEDULES[kind].cron, ...october).length;
    expect(count('full')).toBe(31);
    expect(count('monthly')).toBe(1);
    expect(count('incremental')).toBe(124);
    expect(count('transaction-logs')).toBe(2976);
    expect(
      cronTimes(SCHEDULES['transaction-logs'].cron, ...october)
        .slice(0, 2)
        .map((d) => d.toISOString()),
    ).toEqual(['2026-10-01T00:00:00.000Z', '2026-10-01T00:15:00.000Z']);
    // The weekly drill's cron (serverless.yml): Sundays at 05:00.
    expect(cronTimes('cron(0 5 ? * SUN *)', ...october).map((d) => d.toISOString().slice(0, 10))).toEqual([
      '2026-10-04',
      '2026-10-11',
      '2026-10-18',
      '2026-10-25',
    ]);
  });

  it('refuses a cron form it does not read, saying which forms it reads', () => {
    expect(() => cronTimes('cron(0 2 L * ? *)', new Date(0), new Date(60_000))).toThrow(
      'give cron(minutes hours day-of-month month day-of-week year) without L, W or #',
    );
  });
});

describe('the audit report of a month with a missed slot, a failed verification, an untested backup and an operator restore', () => {
  it('accounts for every scheduled slot of every kind and target', () => {
    expect(report.summary).toEqual({
      // 31 fulls (dump and pgBackRest), a monthly, 124 incrementals, 2,976 WAL runs, 3 × 31 files.
      slots: 62 + 1 + 124 + 2976 + 93,
      ran: 3256 - 2,
      verified: 3256 - 2 - 1,
      // Dumps (31 fulls, a monthly) and pgBackRest fulls: the 12th's two never ran, the 20th's dump failed verification, the 5th's full untested.
      restoreTests: { expected: 63, passed: 59 },
      gaps: 4,
      gapsByType: { 'missed-slot': 2, 'failed-verification': 1, 'no-restore-test': 1 },
      failures: 1,
      unresolvedFailures: 0,
      operatorRestores: 1,
      dryRuns: 0,
      refusedInputs: 0,
      executions: 30 + 1 + 124 + 2976 + 93 + 1,
      costUsd: report.cost.totalUsd,
      budgetUsd: 5,
    });
    const missed = report.slots.filter((s) => s.status === 'missed');
    expect(missed.map((s) => [s.kind, s.engine, s.at])).toEqual([
      ['full', 'logical', `${MISSED_DAY}T02:00:00.000Z`],
      ['full', 'physical', `${MISSED_DAY}T02:00:00.000Z`],
    ]);
  });

  it('names every gap: the missed slot, the failed verification and the backup never restore-tested', () => {
    // In the order of the schedule: each kind's slots by time.
    expect(report.gaps).toEqual([
      {
        type: 'no-restore-test',
        kind: 'full',
        engine: 'physical',
        target: 'primary',
        database: null,
        at: '2026-10-05T02:00:00.000Z',
        execution: 'full-20261005T020020000Z',
        detail: '20261005-020000F was verified but never restore-tested.',
      },
      {
        type: 'missed-slot',
        kind: 'full',
        engine: 'logical',
        target: 'primary',
        database: 'kennel_prod',
        at: '2026-10-12T02:00:00.000Z',
        execution: null,
        detail:
          'No execution started for the full logical backup of primary/kennel_prod due 2026-10-12T02:00:00.000Z.',
      },
      {
        type: 'missed-slot',
        kind: 'full',
        engine: 'physical',
        target: 'primary',
        database: null,
        at: '2026-10-12T02:00:00.000Z',
        execution: null,
        detail: 'No execution started for the full physical backup of primary due 2026-10-12T02:00:00.000Z.',
      },
      {
        type: 'failed-verification',
        kind: 'full',
        engine: 'logical',
        target: 'primary',
        database: 'kennel_prod',
        at: '2026-10-20T02:00:00.000Z',
        execution: 'full-20261020T020020000Z',
        detail: `${report.slots.find((s) => s.at === `${FAILED_DAY}T02:00:00.000Z` && s.engine === 'logical')?.backup} failed verification: sha256 mismatch: the archive in S3 is not the one the host wrote.`,
      },
    ]);
    expect(report.gaps[3]?.detail).toMatch(
      /^database\/full\/primary\/kennel_prod\/2026\/10\/20\/.+ failed verification/,
    );
  });

  it('lists the failure and what was done about it: the next full succeeded', () => {
    expect(report.failures).toEqual([
      {
        workflow: 'database-backup',
        execution: 'full-20261020T020020000Z',
        kind: 'full',
        status: 'FAILED',
        startedAt: '2026-10-20T02:00:20.000Z',
        stoppedAt: '2026-10-20T02:40:20.000Z',
        error: 'ArchiveCorruptError',
        cause: 'ArchiveCorruptError: see the execution',
        resolvedBy: { execution: 'full-20261021T020020000Z', at: '2026-10-21T02:00:20.000Z' },
      },
    ]);
  });

  it('lists the restore an operator started: who, when, its input and its outcome', () => {
    expect(report.operatorRestores).toEqual([
      {
        workflow: 'database-restore',
        execution: OPERATOR_RESTORE,
        who: OPERATOR_RESTORE,
        startedAt: '2026-10-22T14:03:00.000Z',
        stoppedAt: '2026-10-22T14:28:00.000Z',
        seconds: 1500,
        input: RESTORE_INPUT,
        inputRedacted: false,
        status: 'SUCCEEDED',
        error: null,
      },
    ]);
  });

  it('measures the RPO: the dumps and pgBackRest fulls were 48 hours old at worst, the incrementals 6, the WAL 15 minutes', () => {
    const rpo = Object.fromEntries(report.rpo.map((r) => [`${r.kind} ${r.engine}`, r]));
    expect(rpo['full logical']).toEqual({
      kind: 'full',
      engine: 'logical',
      target: 'primary',
      database: 'kennel_prod',
      backups: 29,
      worstAgeMinutes: 48 * 60,
      worstAt: '2026-10-13T02:05:00.000Z',
      countedFrom: '2026-10-01T00:00:00.000Z',
      beforeFirstBackup: false,
      limitMinutes: 25 * 60,
      overLimit: true,
    });
    expect([rpo['full physical']?.worstAgeMinutes, rpo['full physical']?.worstAt]).toEqual([
      48 * 60,
      '2026-10-13T02:10:00.000Z',
    ]);
    expect([rpo['incremental physical']?.worstAgeMinutes, rpo['incremental physical']?.overLimit]).toEqual([
      360,
      false,
    ]);
    expect([rpo['transaction-logs wal']?.worstAgeMinutes, rpo['transaction-logs wal']?.backups]).toEqual([
      15, 2976,
    ]);
    expect(rpo['monthly logical']?.worstAgeMinutes).toBe(31 * 24 * 60 - (4 * 60 + 5));
  });

  it("counts the age before a series' first backup from the month's start, and flags it", () => {
    // The system ran all month (its WAL runs did), but no backup was kept before the 15th.
    const firstKept = '2026-10-15';
    const kept = (iso: string) => iso.slice(0, 10) >= firstKept;
    const late = auditReport({
      month: MONTH,
      now: new Date('2026-11-01T07:00:00Z'),
      targets,
      executions: month.histories.map(auditedExecution),
      manifests: month.manifests.filter((m) => kept(m.finishedAt)),
      physical: month.physical.filter((r) => kept(r.backup.stoppedAt)),
      unreadable: [],
      budgetUsd: null,
    });
    const full = late.rpo.find((r) => r.kind === 'full' && r.engine === 'logical');
    // From the first full slot after the first execution seen (the WAL run at 00:00): the 1st, 02:00.
    expect(full).toMatchObject({
      worstAgeMinutes: 14 * 24 * 60 + 5,
      worstAt: `${firstKept}T02:05:00.000Z`,
      countedFrom: '2026-10-01T02:00:00.000Z',
      beforeFirstBackup: true,
      overLimit: true,
    });
    expect(renderMarkdown(late)).toContain('OVER LIMIT: no backup from 2026-10-01T02:00:00.000Z');

    // Deployed on the 15th (nothing seen before): the first slot due is the first counted.
    const fromDeployment = auditReport({
      month: MONTH,
      now: new Date('2026-11-01T07:00:00Z'),
      targets,
      executions: month.histories.map(auditedExecution).filter((e) => kept(e.startDate)),
      manifests: month.manifests.filter((m) => kept(m.finishedAt)),
      physical: month.physical.filter((r) => kept(r.backup.stoppedAt)),
      unreadable: [],
      budgetUsd: null,
    });
    expect(fromDeployment.rpo.find((r) => r.kind === 'incremental')).toMatchObject({
      countedFrom: `${firstKept}T00:00:00.000Z`,
      worstAgeMinutes: 360,
      beforeFirstBackup: false,
      overLimit: false,
    });
  });

  it('measures the recovery times: each restore test, and the operator restore', () => {
    const tests = report.recovery.filter((r) => r.what === 'restore test');
    // 29 dumps and a monthly (10 min each), 29 pgBackRest fulls (30 min each).
    expect(tests.length).toBe(29 + 1 + 29);
    expect(new Set(tests.map((t) => t.seconds))).toEqual(new Set([600, 1800]));
    expect(report.recovery.filter((r) => r.what !== 'restore test')).toEqual([
      {
        what: 'operator restore',
        subject: `database-restore ${OPERATOR_RESTORE}`,
        at: '2026-10-22T14:03:00.000Z',
        seconds: 1500,
        outcome: 'SUCCEEDED',
      },
    ]);
  });

  it('measures a restore test from its own start and end, not from the verification time the daily verification rewrites', () => {
    // The daily verification of the next day rewrote every verification.checkedAt, after the tests.
    const rechecked = (iso: string) => new Date(Date.parse(iso) + DAY_MS).toISOString();
    const [untimed, ...manifests] = month.manifests
      .filter((m) => m.verification.restoreTest?.checkedAt.startsWith(MONTH))
      .map((m) => ({
        ...m,
        verification: { ...m.verification, checkedAt: rechecked(m.finishedAt) },
      }));
    if (!untimed?.verification.restoreTest) throw new Error('the synthetic month has no restore test');
    // A manifest written before the test's start was recorded: its duration is not known.
    const { startedAt: _, ...olderTest } = untimed.verification.restoreTest;
    const later = auditReport({
      month: MONTH,
      now: new Date('2026-11-01T07:00:00Z'),
      targets,
      executions: [],
      manifests: [
        { ...untimed, verification: { ...untimed.verification, restoreTest: olderTest } },
        ...manifests,
      ],
      physical: month.physical.map((r) => ({
        ...r,
        verification: { ...r.verification, checkedAt: rechecked(r.backup.stoppedAt) },
      })),
      unreadable: [],
      budgetUsd: null,
    });
    const tests = later.recovery.filter((r) => r.what === 'restore test');
    expect(tests.length).toBe(29 + 1 + 29);
    expect(tests.find((t) => t.subject === untimed.archive.key)?.seconds).toBeNull();
    expect(new Set(tests.map((t) => t.seconds))).toEqual(new Set([null, 600, 1800]));
    expect(renderMarkdown(later)).toContain('| not recorded |');
  });

  it('never gives a negative duration: clocks a little apart count as 0', () => {
    expect(seconds('2026-10-01T02:00:00.400Z', '2026-10-01T02:00:00.000Z')).toBe(0);
    expect(seconds('2026-10-01T02:00:00.000Z', '2026-10-01T02:01:32.000Z')).toBe(92);
  });

  it('estimates the cost from what it counts, against the budget, with the unit prices and their sources', () => {
    const line = (item: string) => report.cost.lines.find((l) => l.item === item);
    // One plan stage per execution, and the dump's command sent by each of the 30 fulls.
    expect(line('Step Functions Standard state transitions')?.quantity).toBe(3225 + 30);
    expect(line('Lambda requests')?.quantity).toBe(3225 + 30);
    expect(line('Lambda duration (arm64)')?.quantity).toBe(((3225 * 2 + 30) * 256) / 1024);
    expect(line('SSM Run Command on EC2 instances')).toMatchObject({ quantity: 30, usd: 0 });
    // 30 September's and 1 October's dumps, and the monthly, are past the 30 days database/ stays in
    // Standard; the other 29 dumps of October (the failed one's too) and the tarballs are in it.
    const hours = 31 * 24;
    expect(line('S3 Standard-IA storage')?.quantity).toBe(
      Math.round((1 + (hours - 2 - 5 / 60) / hours + (hours - 4 - 5 / 60) / hours) * 1000) / 1000,
    );
    expect(report.cost.storageBytes).toEqual({
      STANDARD: 29 * GiB + 93 * 2 ** 20,
      STANDARD_IA: 3 * GiB,
      GLACIER: 0,
      DEEP_ARCHIVE: 0,
    });
    expect(report.cost.totalUsd).toBe(
      Math.round(report.cost.lines.reduce((n, l) => n + l.usd, 0) * 100) / 100,
    );
    expect(report.cost.overBudget).toBe(report.cost.totalUsd > 5);
    for (const l of report.cost.lines)
      expect(l.source).toMatch(/^https:\/\/aws\.amazon\.com\/[a-z0-9-]+\/pricing\/$/);
  });

  it('says the same in Markdown and HTML: each gap, the failure, the restore, the cost', () => {
    const markdown = renderMarkdown(report);
    const html = renderHtml(report);
    for (const text of [markdown, html]) {
      expect(text).toContain('kennel-backup audit report 2026-10');
      expect(text).toContain(
        'No execution started for the full logical backup of primary/kennel_prod due 2026-10-12T02:00:00.000Z.',
      );
      expect(text).toContain('20261005-020000F was verified but never restore-tested.');
      expect(text).toContain('success full-20261021T020020000Z at 2026-10-21T02:00:20.000Z');
      expect(text).toContain(OPERATOR_RESTORE);
      expect(text).toContain('https://aws.amazon.com/step-functions/pricing/');
    }
    expect(markdown).toContain(
      '| missed-slot | 2026-10-12T02:00:00.000Z | full logical | primary/kennel_prod | — |',
    );
    // Self-contained: no script and nothing fetched.
    expect(html).not.toMatch(/<script|<link|src=|href=/);
  });

  it('a budget param that is not a positive number fails the cold start, saying what to give', () => {
    expect(() => testConfig({ MONTHLY_BUDGET_USD: 'ten' })).toThrow(
      'must be a positive number of US dollars, or empty',
    );
    expect(testConfig({ MONTHLY_BUDGET_USD: '' }).MONTHLY_BUDGET_USD).toBeUndefined();
    expect(testConfig({ MONTHLY_BUDGET_USD: '25' }).MONTHLY_BUDGET_USD).toBe(25);
  });
});

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportHistory, readExportedHistory } from '../shared/audit/history-export.ts';
import type { AuditReport } from '../shared/audit/report.ts';
import { auditReportKey, executionHistoryKey } from '../shared/catalog/keys.ts';
import type { Manifest } from '../shared/catalog/manifest.ts';
import {
  FAILED_DAY,
  OPERATOR_RESTORE,
  RESTORE_INPUT,
  syntheticHistory,
  syntheticMonth,
} from './support/audit-month.ts';
import { PRIMARY_WITH_PGBACKREST } from './support/config.ts';
import { getBytes, type Run, runIn, startWorld, type TestWorld } from './support/environment.ts';
import { runProcess } from './support/process.ts';

/**
 * The audit trail against the local stack: a part of the synthetic month
 * (the dumps and backup runs of the 18th to the 22nd, the failed full of the
 * 20th, the operator restore of the 22nd) written to the local bucket with
 * the export's own code, then the real audit-report workflow run by the local
 * runner: its own history exported by the runner as EventBridge's rule does in
 * AWS, its report written, and its HTML opened in headless Chromium.
 */
let world: TestWorld;
let run: Run;
let report: AuditReport;
const seeded = syntheticMonth();
const inDays = (iso: string) => iso.slice(0, 10) >= '2026-10-18' && iso.slice(0, 10) <= '2026-10-22';
const histories = seeded.histories.filter(
  (h) =>
    inDays(h.execution.startDate) && (h.execution.input as { kind?: string }).kind !== 'transaction-logs',
);
// An operator's dry run and a refused input the same day: counted apart, neither a restore nor a failure.
const changedNothing = [
  syntheticHistory({
    workflow: 'database-restore',
    name: 'dry-run-jdoe',
    input: { database: 'kennel_prod', targetDatabase: 'kennel_prod', dryRun: true },
    start: '2026-10-22T13:50:00.000Z',
    minutes: 1,
  }),
  syntheticHistory({
    workflow: 'database-restore',
    name: 'confirm-typo-jdoe',
    input: { database: 'kennel_prod', targetDatabase: 'kennel_prod', confirm: 'kennel_pro' },
    start: '2026-10-22T13:55:00.000Z',
    minutes: 1,
    status: 'FAILED',
    error: 'InvalidInputError',
  }),
];
const dumps = seeded.manifests.filter((m): m is Manifest => 'database' in m && inDays(m.window.until));

beforeAll(async () => {
  world = await startWorld();
  for (const h of [...histories, ...changedNothing]) {
    async function* pages() {
      yield h.events;
    }
    await exportHistory(world.s3, world.env.bucket, h.execution, pages());
  }
  for (const m of dumps) await world.catalog.writeManifest(m);
  run = await runIn(world, {
    workflow: 'audit-report',
    input: { month: '2026-10', budgetUsd: 5 },
    // The synthetic month's target: the report's slots are the configured targets'.
    functionEnv: { BACKUP_TARGETS: JSON.stringify([PRIMARY_WITH_PGBACKREST]) },
  });
  report = JSON.parse(
    (await getBytes(world.s3, world.env.bucket, auditReportKey('2026-10', 'json'))).toString('utf8'),
  ) as AuditReport;
});

afterAll(async () => {
  await world?.stop();
});

describe('the audit trail', () => {
  it('has the whole history of a local execution, exported when it ended, beside the others of its month', async () => {
    expect(run.record.status).toBe('SUCCEEDED');
    const name = run.record.executionArn.split(':').at(-1) as string;
    const key = executionHistoryKey('audit-report', run.record.startDate, name);
    expect(key).toBe(
      `audit/executions/audit-report/${run.record.startDate.slice(0, 4)}/${run.record.startDate.slice(5, 7)}/${name}.json.gz`,
    );
    const exported = await readExportedHistory(world.s3, world.env.bucket, key);
    expect(exported.execution).toEqual({
      executionArn: run.record.executionArn,
      stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-local-audit-report',
      workflow: 'audit-report',
      name,
      status: 'SUCCEEDED',
      startDate: run.record.startDate,
      stopDate: run.record.stopDate,
      input: { month: '2026-10', budgetUsd: 5 },
      output: run.record.output,
      error: null,
      cause: null,
    });
    // Oldest first: the start with its input, every state's entry and exit, the end with its output.
    const types = exported.events.map((e) => e.type);
    expect(types[0]).toBe('ExecutionStarted');
    expect(types.at(-1)).toBe('ExecutionSucceeded');
    expect(exported.events.map((e) => e.id)).toEqual(exported.events.map((_, i) => i + 1));
    const entered = exported.events.flatMap((e) =>
      e.stateEnteredEventDetails ? [e.stateEnteredEventDetails.name] : [],
    );
    expect(entered).toEqual([
      'ReceiveRequest',
      'WriteAuditReport',
      'NotifyAuditReport',
      'AuditReportWritten',
    ]);
    const steps = run.record.events.filter((e) => e.type === 'StateEntered' || e.type === 'StateExited');
    expect(exported.events).toHaveLength(steps.length + 2);
    expect(JSON.parse(exported.events[0]?.executionStartedEventDetails?.input ?? '')).toEqual({
      month: '2026-10',
      budgetUsd: 5,
    });
    expect(JSON.parse(exported.events.at(-1)?.executionSucceededEventDetails?.output ?? '')).toEqual(
      run.record.output,
    );
  });

  it('never replaces an exported history: the same event delivered twice writes nothing', async () => {
    const [first] = histories;
    if (!first) throw new Error('no history seeded');
    const key = executionHistoryKey('database-backup', first.execution.startDate, first.execution.name);
    const before = await getBytes(world.s3, world.env.bucket, key);
    async function* other() {
      yield [];
    }
    expect(await exportHistory(world.s3, world.env.bucket, first.execution, other())).toEqual({
      key,
      written: false,
    });
    expect(await getBytes(world.s3, world.env.bucket, key)).toEqual(before);
  });

  it('streams a history too large for one PutObject, page by page, as a multipart upload, and reads back whole', async () => {
    // 30 events of 256 KB of random text, in three pages: 7.5 MiB of JSON that gzip cannot shrink below S3's 5 MiB part.
    const state = (i: number) => randomBytes(192 * 1024).toString('base64') + String(i);
    const events = Array.from({ length: 30 }, (_, i) => ({
      id: i + 1,
      previousEventId: i,
      type: 'TaskStateEntered' as const,
      timestamp: new Date(Date.parse('2026-10-03T02:00:00Z') + i * 1000),
      stateEnteredEventDetails: { name: 'VerifyArchive', input: state(i) },
    }));
    async function* pages() {
      for (let i = 0; i < 30; i += 10) yield events.slice(i, i + 10);
    }
    const execution = {
      ...(histories[0]?.execution as (typeof histories)[number]['execution']),
      name: 'large-history',
    };
    const { key, written } = await exportHistory(world.s3, world.env.bucket, execution, pages());
    expect(written).toBe(true);
    expect((await getBytes(world.s3, world.env.bucket, key)).length).toBeGreaterThan(5 * 2 ** 20);
    const back = await readExportedHistory(world.s3, world.env.bucket, key);
    expect(back.execution).toEqual(execution);
    expect(back.events).toEqual(JSON.parse(JSON.stringify(events)));
  });
});

describe('the audit report written by the audit-report workflow', () => {
  it('reads the month back from the bucket: the failure and what followed, the operator restore, the gaps', () => {
    expect(run.record.output).toEqual({
      month: '2026-10',
      keys: {
        json: 'audit/reports/2026-10.json',
        md: 'audit/reports/2026-10.md',
        html: 'audit/reports/2026-10.html',
      },
      gaps: report.summary.gaps,
      summary: expect.stringMatching(
        /^Audit report 2026-10: \d+ slots, \d+ gaps \(.*; 1 operator restores \(1 dry runs and 1 refused inputs apart\);/,
      ),
    });
    expect(report.summary.executions).toBe(histories.length + changedNothing.length);
    expect(report.failures.map((f) => [f.execution, f.resolvedBy?.execution])).toEqual([
      [`full-${FAILED_DAY.replaceAll('-', '')}T020020000Z`, 'full-20261021T020020000Z'],
    ]);
    expect(report.operatorRestores.map((r) => [r.who, r.input, r.status])).toEqual([
      [OPERATOR_RESTORE, RESTORE_INPUT, 'SUCCEEDED'],
    ]);
    expect(report.changedNothing).toEqual([{ workflow: 'database-restore', dryRuns: 1, refused: 1 }]);
    // The dumps of the 18th, 19th, 21st and 22nd were verified and restore-tested; the 20th's failed verification.
    const fulls = report.slots.filter(
      (s) => s.kind === 'full' && s.engine === 'logical' && s.status !== 'missed',
    );
    expect(fulls.map((s) => [s.at.slice(0, 10), s.verified, s.restoreTested])).toEqual([
      ['2026-10-18', true, true],
      ['2026-10-19', true, true],
      ['2026-10-20', false, false],
      ['2026-10-21', true, true],
      ['2026-10-22', true, true],
    ]);
    expect(
      report.gaps.filter((g) => g.type === 'failed-verification' && g.engine === 'logical'),
    ).toHaveLength(1);
    // Five days were seeded: each series counts from its first run (the 18th), every slot after the 22nd is missed.
    const from = (kind: string, engine: string) =>
      report.slotsCountedFrom.find((s) => s.kind === kind && s.engine === engine)?.from;
    expect(from('full', 'logical')).toBe('2026-10-18T02:00:00.000Z');
    expect(from('incremental', 'physical')).toBe('2026-10-18T00:00:00.000Z');
    // The WAL runs were not seeded: none ran, no slot is counted, and the RPO table flags the series.
    expect(from('transaction-logs', 'wal')).toBeNull();
    expect(report.rpo.find((r) => r.kind === 'transaction-logs')?.overLimit).toBe(true);
    const missed = report.slots.filter((s) => s.status === 'missed');
    expect(missed.length).toBeGreaterThan(0);
    expect(missed.filter((s) => s.at < '2026-10-23')).toEqual([]);
    expect(report.summary.gapsByType['missed-slot']).toBe(missed.length);
  });

  it("opens in headless Chromium as one page with its chart: each backup's age and each run's duration", async () => {
    const html = (await getBytes(world.s3, world.env.bucket, auditReportKey('2026-10', 'html'))).toString(
      'utf8',
    );
    const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-report-'));
    try {
      const file = join(dir, 'report.html');
      writeFileSync(file, html);
      // Debian's chromium (.ci/run installs it); root needs --no-sandbox.
      const { stdout: dom } = await promisify(execFile)(
        'chromium',
        ['--headless', '--no-sandbox', '--disable-gpu', '--dump-dom', `file://${file}`],
        { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
      );
      expect(dom).toContain('<svg xmlns="http://www.w3.org/2000/svg" id="audit-chart"');
      const ages = dom.match(/<polyline class="age"/g) ?? [];
      const bars = dom.match(/<rect class="duration"/g) ?? [];
      expect(ages).toHaveLength(report.chart.ages.filter((s) => s.hours.some((h) => h !== null)).length);
      expect(ages.length).toBeGreaterThan(0);
      expect(bars).toHaveLength(report.chart.durations.length);
      expect(bars).toHaveLength(histories.filter((h) => h.execution.workflow.endsWith('-backup')).length);
      expect(dom).toContain('kennel-backup audit report 2026-10');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('npm run local -- report', () => {
  const CLI = join(import.meta.dirname, '..', 'local', 'cli.ts');
  const cli = (dir: string, args: string[]) =>
    runProcess(process.execPath, [CLI, ...args], {
      ...process.env,
      KENNEL_BACKUP_DIR: dir,
      // The world's PostgreSQL and S3, so that no second stack starts.
      DATABASE_URL: world.env.postgres.url,
      S3_ENDPOINT_URL: world.env.s3Endpoint,
      AWS_CA_BUNDLE: world.env.s3CaFile,
    });

  it('makes the report of a month on demand, prints its keys, and copies its three files to open', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-report-cli-'));
    try {
      const run = await cli(dir, ['report', '--month', '2026-10', '--budget', '40']);
      expect(run.code, run.stderr).toBe(0);
      const output = JSON.parse(run.stdout) as {
        month: string;
        keys: Record<string, string>;
        summary: string;
      };
      expect(output.month).toBe('2026-10');
      expect(output.summary).toMatch(/ of a \$40\.00 budget[,.]/);
      for (const [extension, key] of Object.entries(output.keys)) {
        const file = join(dir, 'reports', `2026-10.${extension}`);
        expect(run.stderr).toContain(`Report: ${file} (s3://${world.env.bucket}/${key})`);
        expect(readFileSync(file)).toEqual(await getBytes(world.s3, world.env.bucket, key));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a malformed month before starting anything, saying how to give it', async () => {
    const run = await cli(tmpdir(), ['report', '--month', 'October']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('month: give the month as YYYY-MM, e.g. 2026-11');
    expect(run.stderr).not.toContain('Starting local services');
  });
});

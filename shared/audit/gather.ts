import type { S3Client } from '@aws-sdk/client-s3';
import { WORKFLOWS } from '../../statemachines/workflows.ts';
import { lockForDays } from '../catalog/archive-record.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { auditReportKey, DUMP_KINDS, executionHistoriesOf, FILE_KINDS } from '../catalog/keys.ts';
import type { Manifest } from '../catalog/manifest.ts';
import { listPhysicalBackups } from '../catalog/physical.ts';
import { AUDIT_DAYS } from '../catalog/retention.ts';
import type { Target } from '../core/config.ts';
import { InvalidInputError } from '../core/errors.ts';
import * as z from '../core/schema.ts';
import { DAY_MS, utcDay } from '../core/time.ts';
import { readExportedHistory } from './history-export.ts';
import { renderHtml, renderMarkdown } from './render.ts';
import {
  type AuditedExecution,
  type AuditInputs,
  type AuditReport,
  auditedExecution,
  auditReport,
} from './report.ts';
import { monthSpan } from './slots.ts';

/** Histories read at once: a month is thousands of small objects (2,880 WAL runs alone). */
const READS_AT_ONCE = 16;

/**
 * Reads what a month's report needs: the exported histories of every workflow's
 * executions started in the month (each reduced to its head and counts as it is
 * read, so a month never sits in memory whole), every manifest of the dump and
 * files kinds (older ones give the backup age at the month's start and the
 * storage), and the pgBackRest records from two months before it. What does not
 * parse is listed by key, never fatal.
 */
export async function gatherAuditInputs(
  catalog: Catalog,
  s3: S3Client,
  options: { month: string; now: Date; targets: readonly Target[]; budgetUsd: number | null },
): Promise<AuditInputs> {
  const unreadable: string[] = [];
  const onBad = ({ key }: { key: string }) => unreadable.push(key);
  const executions: AuditedExecution[] = [];
  for (const workflow of Object.keys(WORKFLOWS)) {
    const keys = await catalog.listKeys(executionHistoriesOf(workflow, options.month));
    for (let i = 0; i < keys.length; i += READS_AT_ONCE) {
      const read = await catalog.readEach(
        keys.slice(i, i + READS_AT_ONCE),
        async (key) => auditedExecution(await readExportedHistory(s3, catalog.bucket, key)),
        onBad,
      );
      executions.push(...read);
    }
  }
  const manifests: Manifest[] = [];
  for (const target of options.targets) {
    for (const database of target.databases ?? [target.database])
      for (const kind of DUMP_KINDS) manifests.push(...(await catalog.list(kind, target.name, database)));
    for (const kind of FILE_KINDS) manifests.push(...(await catalog.list(kind, target.name, null)));
  }
  const since = utcDay(monthSpan(options.month).start.getTime() - 62 * DAY_MS);
  const physical = (
    await Promise.all(
      options.targets
        .filter((t) => t.pgbackrest !== undefined)
        .map((t) => listPhysicalBackups(catalog, t.name, since)),
    )
  ).flat();
  return { ...options, executions, manifests, physical, unreadable };
}

/** Where a report went. */
export interface WrittenReport {
  report: AuditReport;
  keys: { json: string; md: string; html: string };
}

/**
 * Writes a month's report as JSON (the record), Markdown and HTML under
 * audit/reports/. A report made again for the same month (on demand, after a
 * late export) replaces the current version; the versioned bucket keeps the
 * earlier ones, locked once the bucket has Object Lock.
 */
export async function writeAuditReport(
  catalog: Catalog,
  s3: S3Client,
  inputs: AuditInputs,
): Promise<WrittenReport> {
  const report = auditReport(inputs);
  const keys = {
    json: auditReportKey(report.month, 'json'),
    md: auditReportKey(report.month, 'md'),
    html: auditReportKey(report.month, 'html'),
  };
  await catalog.writeObject(keys.json, `${JSON.stringify(report, null, 2)}\n`, 'application/json');
  await catalog.writeObject(keys.md, renderMarkdown(report), 'text/markdown; charset=utf-8');
  await catalog.writeObject(keys.html, renderHtml(report), 'text/html; charset=utf-8');
  // Each version kept as long as the longest data class, as the histories it is made from.
  for (const key of Object.values(keys)) await lockForDays(s3, catalog.bucket, key, AUDIT_DAYS);
  return { report, keys };
}

/** What an operator or the monthly schedule may pass: the month (the one before the start when left out) and a budget for this report. */
export const auditReportInputSchema = z.strictObject({
  month: z.optional(
    z.string().check(z.regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'give the month as YYYY-MM, e.g. 2026-11')),
  ),
  budgetUsd: z.optional(z.number().check(z.positive())),
});

/** The month a report is for: the one asked for, or the month before `startedAt` (the schedule runs on the 1st). */
export function reportMonth(asked: string | undefined, startedAt: Date): string {
  const month =
    asked ??
    new Date(Date.UTC(startedAt.getUTCFullYear(), startedAt.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
  if (monthSpan(month).start.getTime() > startedAt.getTime())
    throw new InvalidInputError(
      `The month ${month} has not begun: give a month up to ${startedAt.toISOString().slice(0, 7)} (the month under way is reported up to now). Nothing was written.`,
    );
  return month;
}

/** The line the report's alert posts: the month's gaps, failures and cost, and where the report is. */
export function reportSummary(written: WrittenReport, bucket: string): string {
  const s = written.report.summary;
  const gaps =
    s.gaps === 0
      ? 'no gaps'
      : `${s.gaps} gap${s.gaps === 1 ? '' : 's'} (${Object.entries(s.gapsByType)
          .map(([type, n]) => `${n} ${type}`)
          .join(', ')})`;
  const budget =
    s.budgetUsd === null
      ? ''
      : ` of a $${s.budgetUsd.toFixed(2)} budget${s.costUsd > s.budgetUsd ? ', OVER BUDGET' : ''}`;
  return `Audit report ${written.report.month}: ${s.slots} slots, ${gaps}; ${s.failures} failed executions (${s.unresolvedFailures} not followed by a success); ${s.operatorRestores} operator restores (${s.dryRuns} dry runs and ${s.refusedInputs} refused inputs apart); estimated cost $${s.costUsd.toFixed(2)}${budget}. s3://${bucket}/${written.keys.html}`;
}

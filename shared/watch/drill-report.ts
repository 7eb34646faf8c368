import type { Catalog } from '../catalog/catalog.ts';
import { drillReportKey } from '../catalog/keys.ts';
import * as z from '../core/schema.ts';

/**
 * A drill's report, the auditor's record: its checks and facts, stored as JSON
 * and Markdown under reports/drills/<date>/<run id>.{json,md} whatever the outcome.
 */

export const drillCheckSchema = z.object({ check: z.string(), passed: z.boolean(), detail: z.string() });
export type DrillCheck = z.infer<typeof drillCheckSchema>;

export interface DrillReport {
  title: string;
  checks: DrillCheck[];
  /** Label and value, in the order the Markdown lists them. */
  facts: [string, string][];
}

/** The report as Markdown: the facts, then a table of the checks. */
export function drillMarkdown(report: DrillReport): string {
  const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ');
  return [
    `# ${report.title}`,
    '',
    ...report.facts.map(([k, v]) => `- **${k}:** ${cell(v)}`),
    '',
    '| check | result | detail |',
    '|---|---|---|',
    ...report.checks.map(
      (c) => `| ${cell(c.check)} | ${c.passed ? 'passed' : '**FAILED**'} | ${cell(c.detail)} |`,
    ),
    '',
  ].join('\n');
}

/** Writes the report's JSON (`json`, as given) and Markdown; returns their keys. */
export async function storeDrillReport(
  catalog: Catalog,
  run: { startedAt: string; runId: string },
  report: DrillReport,
  json: unknown,
): Promise<{ json: string; markdown: string }> {
  const keys = {
    json: drillReportKey(run.startedAt, run.runId, 'json'),
    markdown: drillReportKey(run.startedAt, run.runId, 'md'),
  };
  await catalog.writeObject(keys.json, `${JSON.stringify(json, null, 2)}\n`, 'application/json');
  await catalog.writeObject(keys.markdown, drillMarkdown(report), 'text/markdown; charset=utf-8');
  return keys;
}

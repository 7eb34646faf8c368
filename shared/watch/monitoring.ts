import { MONITORING_RESULT, MONITORING_STATE } from '../../statemachines/monitoring.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { runId as makeRunId } from '../catalog/keys.ts';
import type { Config } from '../core/config.ts';
import { failedStatesSchema, firstFailure, MonitoringFailedError } from '../core/errors.ts';
import { hostPath, runIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { ageSeconds, newestBackups, staleness } from './freshness.ts';

/**
 * The hourly monitoring: S3 answers, the daily full backup is there, the host's
 * backup disk has room; and the age of every kind's newest verified backup goes
 * out as a metric, which a CloudWatch alarm watches (so even a broken schedule,
 * or a broken alert stage, is caught by something outside the workflows).
 */

export const diskCheckPlanSchema = z.object({
  target: targetName,
  runId: runIdentifier,
  backupDir: hostPath,
});

const ageSchema = z.object({
  target: targetName,
  kind: z.string(),
  database: z.nullable(z.string()),
  /** Seconds since the newest verified backup's data was taken; null when there is none. */
  ageSeconds: z.nullable(z.int()),
});

export const monitoringPlanSchema = z.object({
  startedAt: z.iso.datetime({ offset: true }),
  ages: z.array(ageSchema),
  findings: z.array(z.object({ subject: z.string(), problem: z.string() })),
  hosts: z.array(diskCheckPlanSchema),
});

export type MonitoringPlan = z.infer<typeof monitoringPlanSchema>;

export async function planMonitoring(
  config: Config,
  catalog: Catalog,
  request: unknown,
  now = new Date(),
): Promise<MonitoringPlan> {
  const { executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${MONITORING_STATE.plan} request`,
  );
  const iso = new Date(startedAt).toISOString();
  // Listing the catalog is the S3 check: when S3 does not answer, this throws,
  // is retried, and the execution fails with an alert.
  const newest = await newestBackups(config, catalog, now);
  const findings = newest
    .filter((n) => n.kind === 'full')
    .flatMap((n) => {
      const stale = staleness(n, now);
      return stale ? [{ subject: `the daily ${n.subject}`, problem: stale }] : [];
    });
  return {
    startedAt,
    ages: newest.map((n) => ({
      target: n.target,
      kind: n.kind,
      database: n.database,
      ageSeconds: ageSeconds(n, now),
    })),
    findings,
    hosts: config.BACKUP_TARGETS.map((t) => ({
      target: t.name,
      runId: makeRunId(iso, `${executionId}/${t.name}`),
      backupDir: t.backupDir,
    })),
  };
}

const diskResultSchema = z.object({
  usedPercent: z.number(),
  sizeBytes: z.number(),
  availableBytes: z.number(),
  backupDirBytes: z.number(),
});

/**
 * What ReportMonitoring gets: the plan, and each host's measurement or how it
 * failed. Built when the report runs: the bundles that import this module for the
 * plan schemas do not carry it.
 */
function monitoredSchema() {
  const R = MONITORING_RESULT;
  return z.object({
    [R.plan]: monitoringPlanSchema,
    [R.disks]: z.array(
      z.object({
        [R.host]: diskCheckPlanSchema,
        [R.command]: z.optional(z.object({ result: diskResultSchema })),
        [R.failed]: z.pipe(z.optional(failedStatesSchema), z.transform(firstFailure)),
      }),
    ),
  });
}

/** Where the measurements go: CloudWatch metrics in AWS (embedded metric format). */
export interface MetricsSink {
  backupAge(age: z.infer<typeof ageSchema>): void;
  diskUsedPercent(target: string, percent: number): void;
}

/**
 * Emits the metrics, then fails listing every problem (a stale daily full, a
 * disk over the threshold, a host that could not be measured), or returns the
 * measurements.
 */
export function reportMonitoring(request: unknown, thresholdPercent: number, metrics: MetricsSink) {
  const { plan, disks } = parseInput(monitoredSchema(), request, `The ${MONITORING_STATE.report} request`);
  for (const age of plan.ages) metrics.backupAge(age);
  const findings = [...plan.findings];
  for (const { host, command, failed } of disks) {
    if (!command) {
      findings.push({
        subject: `the backup disk of ${host.target}`,
        problem: `not measured (${failed?.Error ?? 'no result'})`,
      });
      continue;
    }
    const { usedPercent, availableBytes, backupDirBytes } = command.result;
    metrics.diskUsedPercent(host.target, usedPercent);
    if (usedPercent > thresholdPercent) {
      findings.push({
        subject: `the backup disk of ${host.target}`,
        problem: `${usedPercent}% full, over the ${thresholdPercent}% threshold (${host.backupDir} holds ${backupDirBytes} bytes, ${availableBytes} bytes are free); free space before the next full backup fails`,
      });
    }
  }
  if (findings.length > 0) {
    throw new MonitoringFailedError(
      `${findings.length} problem(s):\n${findings.map((f) => `- ${f.subject}: ${f.problem}`).join('\n')}`,
    );
  }
  return {
    ages: plan.ages,
    disks: disks.map((d) => ({ target: d.host.target, ...d.command?.result })),
  };
}

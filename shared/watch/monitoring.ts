import { MONITORING_RESULT, MONITORING_STATE } from '../../statemachines/monitoring.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { runId as makeRunId, pgbackrestPrefix } from '../catalog/keys.ts';
import type { Config } from '../core/config.ts';
import { failedStatesSchema, firstFailure, MonitoringFailedError } from '../core/errors.ts';
import { hostPath, runIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import {
  type ArchiveAgeSink,
  archiverCheckPlanSchema,
  archivingFindings,
  archivingTargets,
  walArchiveAgeSeconds,
  walArchivingResultSchema,
} from './archiving.ts';
import { ageSeconds, newestBackups, staleness } from './freshness.ts';

/**
 * The hourly monitoring: S3 answers, the daily full backup is there, the host's
 * backup disk has room, and WAL archiving works (pg_stat_archiver, the reason of
 * a failure from the server log, pgBackRest's repository); the age of every
 * kind's newest verified backup, the WAL archive age and the repositories' sizes
 * go out as metrics, which CloudWatch alarms watch (so even a broken schedule, or
 * a broken alert stage, is caught by something outside the workflows).
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
  /** The hosts whose WAL archiver is checked: the targets with pgBackRest settings. */
  archivers: z.array(archiverCheckPlanSchema),
  /** Each pgBackRest repository's size, as S3 lists it. */
  repositories: z.array(z.object({ target: targetName, bytes: z.int(), objects: z.int() })),
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
  const hosts = config.BACKUP_TARGETS.map((t) => ({
    target: t.name,
    runId: makeRunId(iso, `${executionId}/${t.name}`),
    backupDir: t.backupDir,
  }));
  const archiving = archivingTargets(config).map((t) => t.name);
  const repositories = [];
  for (const target of archiving)
    repositories.push({ target, ...(await catalog.sizeUnder(pgbackrestPrefix(target))) });
  return {
    startedAt,
    ages: newest.map((n) => ({
      target: n.target,
      kind: n.kind,
      database: n.database,
      ageSeconds: ageSeconds(n, now),
    })),
    findings,
    hosts,
    archivers: hosts
      .filter((h) => archiving.includes(h.target))
      .map(({ target, runId }) => ({ target, runId })),
    repositories,
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
  const checked = <H extends z.ZodMiniType, C extends z.ZodMiniType>(host: H, result: C) =>
    z.array(
      z.object({
        [R.host]: host,
        [R.command]: z.optional(z.object({ result })),
        [R.failed]: z.pipe(z.optional(failedStatesSchema), z.transform(firstFailure)),
      }),
    );
  return z.object({
    [R.plan]: monitoringPlanSchema,
    [R.disks]: checked(diskCheckPlanSchema, diskResultSchema),
    [R.archivers]: checked(archiverCheckPlanSchema, walArchivingResultSchema),
  });
}

/** Where the measurements go: CloudWatch metrics in AWS (embedded metric format). */
export interface MetricsSink extends ArchiveAgeSink {
  backupAge(age: z.infer<typeof ageSchema>): void;
  diskUsedPercent(target: string, percent: number): void;
  repositoryBytes(target: string, bytes: number): void;
}

/**
 * Emits the metrics, then fails listing every problem (a stale daily full, a
 * disk over the threshold, WAL archiving failing or off, a repository that
 * cannot be read, a host that could not be measured), or returns the
 * measurements.
 */
export function reportMonitoring(request: unknown, thresholdPercent: number, metrics: MetricsSink) {
  const { plan, disks, archivers } = parseInput(
    monitoredSchema(),
    request,
    `The ${MONITORING_STATE.report} request`,
  );
  for (const age of plan.ages) metrics.backupAge(age);
  for (const { target, bytes } of plan.repositories) metrics.repositoryBytes(target, bytes);
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
  const archiving = [];
  for (const { host, command, failed } of archivers) {
    if (!command) {
      findings.push({
        subject: `WAL archiving on ${host.target}`,
        problem: `not checked (${failed?.Error ?? 'no result'}: ${failed?.Cause ?? 'the host did not answer'})`,
      });
      continue;
    }
    const ageSeconds = walArchiveAgeSeconds(command.result.archiver);
    if (ageSeconds !== null) metrics.walArchiveAge(host.target, ageSeconds);
    findings.push(...archivingFindings(host.target, command.result));
    archiving.push({ target: host.target, walArchiveAgeSeconds: ageSeconds, ...command.result });
  }
  if (findings.length > 0) {
    throw new MonitoringFailedError(
      `${findings.length} problem(s):\n${findings.map((f) => `- ${f.subject}: ${f.problem}`).join('\n')}`,
    );
  }
  return {
    ages: plan.ages,
    disks: disks.map((d) => ({ target: d.host.target, ...d.command?.result })),
    archiving,
    repositories: plan.repositories,
  };
}

import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Config } from '../core/config.ts';
import type { MetricsSink } from './monitoring.ts';

/**
 * CloudWatch metrics in the embedded metric format: a JSON line in the function's
 * log that CloudWatch turns into a metric, no API call. Namespace and dimensions
 * are the ones the template's alarms and dashboard read.
 */
export const METRICS_NAMESPACE = 'KennelBackup';

export function createMetrics(config: Config): Metrics {
  return new Metrics({
    namespace: METRICS_NAMESPACE,
    serviceName: 'kennel-backup',
    defaultDimensions: { Stage: config.STAGE },
  });
}

/** Each measurement is its own metric line with its own dimensions, published at once. */
export function metricsSink(metrics: Metrics): MetricsSink {
  return {
    backupAge(age) {
      if (age.ageSeconds === null) return; // no data: the alarm treats missing data as breaching
      const single = metrics.singleMetric();
      single.addDimensions({ Target: age.target, Kind: age.kind, Database: age.database ?? 'files' });
      single.addMetric('BackupAgeSeconds', MetricUnit.Seconds, age.ageSeconds);
    },
    diskUsedPercent(target, percent) {
      const single = metrics.singleMetric();
      single.addDimension('Target', target);
      single.addMetric('BackupDiskUsedPercent', MetricUnit.Percent, percent);
    },
    walArchiveAge(target, seconds) {
      const single = metrics.singleMetric();
      single.addDimension('Target', target);
      single.addMetric('WalArchiveAgeSeconds', MetricUnit.Seconds, seconds);
    },
    repositoryBytes(target, bytes) {
      const single = metrics.singleMetric();
      single.addDimension('Target', target);
      single.addMetric('PgbackrestRepositoryBytes', MetricUnit.Bytes, bytes);
    },
  };
}

/** An archive that passed verification: its size, and how long the backup took on the host. */
export function recordArchive(
  metrics: Metrics,
  archive: { target: string; kind: string; sizeBytes: number; durationSeconds: number },
): void {
  const dimensions = { Target: archive.target, Kind: archive.kind };
  // A single metric is published, and its dimensions cleared, at its addMetric: one each.
  const size = metrics.singleMetric();
  size.addDimensions(dimensions);
  size.addMetric('ArchiveSizeBytes', MetricUnit.Bytes, archive.sizeBytes);
  const duration = metrics.singleMetric();
  duration.addDimensions(dimensions);
  duration.addMetric('BackupDurationSeconds', MetricUnit.Seconds, archive.durationSeconds);
}

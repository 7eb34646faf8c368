import { leftoverMinAgeSeconds } from '../catalog/leftovers.ts';
import { excludedTablesOf, localPathOf } from '../catalog/manifest-builder.ts';
import { WAL_ARCHIVE_MAX_AGE_SECONDS } from '../catalog/schedule.ts';
import { CODECS } from '../core/codecs.ts';
import type { Config } from '../core/config.ts';
import { fileName, sha256Hex, type TableName } from '../core/identifiers.ts';
import type { Run } from '../core/run.ts';
import * as z from '../core/schema.ts';
import { pgbackrestScriptParams } from '../host/pgbackrest-conf.ts';
import { archiveLines, hostCommand, postgresParams } from '../host/scripts.ts';
import { standInMark } from '../restore/missing-roles.ts';
import { planSchema } from './database-plan.ts';
import { filesPlanSchema } from './files-plan.ts';
import { walPlanSchema } from './wal-plan.ts';

/** Where a backup script writes its archive, locally and in S3; it records nothing else about the run. */
function uploadParams(config: Config, plan: Run): Record<string, string> {
  return {
    KB_BUCKET: plan.bucket,
    KB_ARCHIVE_KEY: plan.archiveKey,
    KB_LOCAL_DIR: plan.localDir,
    KB_LOCAL_PATH: localPathOf(plan),
    KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
    KB_COMPRESS: CODECS[plan.codec].compress,
  };
}

/**
 * pg_dump's pattern that names exactly one table: both parts double-quoted, so
 * that no character in them is a wildcard, a separator or folded to lower case
 * (a quote is doubled inside). Names hold no newline (config.ts refuses one), so
 * the patterns travel one per line.
 */
export function exactPattern(table: TableName): string {
  const quote = (part: string) => `"${part.replaceAll('"', '""')}"`;
  return `${quote(table.schema)}.${quote(table.name)}`;
}

/** The host commands of the backup workflows: write an archive, restore-test it, prune the host's copies, switch the WAL. */
export const BACKUP_HOST_COMMANDS = {
  'database-backup': hostCommand({
    request: z.object({ script: z.literal('database-backup'), plan: planSchema }),
    script: 'database-backup',
    params: (config, target, { plan }) => ({
      ...postgresParams(target),
      KB_KIND: plan.kind,
      KB_DATABASE: plan.database,
      KB_EXCLUDE_TABLES: excludedTablesOf(config, plan.kind).map(exactPattern).join('\n'),
      ...uploadParams(config, plan),
    }),
  }),
  'files-backup': hostCommand({
    request: z.object({ script: z.literal('files-backup'), plan: filesPlanSchema }),
    script: 'files-backup',
    params: (config, target, { plan }) => ({
      KB_KIND: plan.kind,
      KB_PATHS: plan.paths.join(' '),
      // The roots from config: the host refuses a path that leads out of them through a link.
      KB_ROOTS: target.files[plan.kind].join(' '),
      KB_EXCLUDES: plan.excludes.join(' '),
      ...uploadParams(config, plan),
    }),
  }),
  /** The restore test runs the general restore script into its scratch database. */
  'restore-test': hostCommand({
    request: z.object({ script: z.literal('restore-test'), plan: planSchema, sha256: sha256Hex }),
    script: 'restore-archive',
    params: (config, target, { plan, sha256 }) => ({
      ...postgresParams(target),
      KB_INTO: plan.scratchDatabase,
      KB_ARCHIVES: archiveLines([
        { key: plan.archiveKey, sha256, localPath: localPathOf(plan), codec: plan.codec },
      ]),
      KB_ABSENT: '',
      // A restore test makes the database as it was, roles included.
      KB_MISSING_ROLES: 'create',
      KB_STAND_IN_MARK: standInMark(plan.scratchDatabase),
      KB_BUCKET: plan.bucket,
      KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
    }),
  }),
  'prune-local': hostCommand({
    request: z.object({
      script: z.literal('prune-local'),
      plan: z.union([planSchema, filesPlanSchema]),
      keepDays: z.int().check(z.gte(1)),
      keepFile: z.union([fileName, z.literal('')]),
    }),
    script: 'prune-local',
    // The leftovers' places and age come from config; a database run also drops its cluster's old scratch databases.
    params: (config, target, request) => ({
      KB_LOCAL_DIR: request.plan.localDir,
      KB_KEEP_DAYS: String(request.keepDays),
      KB_KEEP_FILE: request.keepFile,
      KB_BACKUP_DIR: target.backupDir,
      KB_LEFTOVER_SECONDS: String(leftoverMinAgeSeconds(config)),
      KB_DATABASE: 'database' in request.plan ? request.plan.database : '',
      ...postgresParams(target),
    }),
  }),
  /** Switches the WAL segment and waits until it is archived; reports pgBackRest's info (a target without pgbackrest: ConfigError). */
  'wal-switch': hostCommand({
    request: z.object({ script: z.literal('wal-switch'), plan: walPlanSchema }),
    script: 'wal-switch',
    params: (config, target) => ({
      ...pgbackrestScriptParams(config, target),
      KB_ARCHIVE_WAIT_SECONDS: String(WAL_ARCHIVE_MAX_AGE_SECONDS),
    }),
  }),
};

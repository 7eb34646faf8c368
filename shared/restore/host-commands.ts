import { databaseLocalDir } from '../backup/database-plan.ts';
import { CODECS } from '../core/codecs.ts';
import { runSchema } from '../core/run.ts';
import * as z from '../core/schema.ts';
import { pgbackrestParams } from '../host/pgbackrest-conf.ts';
import {
  archiveLines,
  archiveVersionLines,
  commandLines,
  hostCommand,
  postgresParams,
} from '../host/scripts.ts';
import { cleanupPlanSchema } from './cleanup.ts';
import { restorePlanSchema, swapPlanSchema } from './database-schemas.ts';
import { filesRestorePlanSchema } from './files-plan.ts';
import { standInMark } from './missing-roles.ts';
import { recoveryPlaces } from './point-in-time.ts';
import { bucketOf } from './source.ts';

/** What carrying the log tables' rows over needs of a restore's plan. */
const carryPlan = {
  target: true,
  runId: true,
  stagingDatabase: true,
  targetDatabase: true,
  carry: true,
} as const;

/** Who and which run: all that stopping or starting the application needs. */
const runTargetSchema = z.pick(runSchema, { target: true, runId: true });

/** The host commands of the restore workflows: restore, swap, stop and start the application, put files back. */
export const RESTORE_HOST_COMMANDS = {
  'database-restore': hostCommand({
    request: z.object({ script: z.literal('database-restore'), plan: restorePlanSchema }),
    script: 'restore-archive',
    params: (config, target, { plan }) => ({
      ...postgresParams(target),
      KB_INTO: plan.stagingDatabase,
      KB_ARCHIVES: archiveLines(plan.archives),
      KB_ARCHIVE_VERSIONS: archiveVersionLines(plan.archives),
      KB_ABSENT: plan.overProduction ? '' : plan.targetDatabase,
      KB_MISSING_ROLES: plan.missingRoles,
      KB_STAND_IN_MARK: standInMark(plan.stagingDatabase),
      KB_BUCKET: bucketOf(config, plan.source),
      KB_SOURCE: plan.source,
      KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
    }),
  }),
  'database-swap': hostCommand({
    request: z.object({ script: z.literal('database-swap'), plan: swapPlanSchema }),
    script: 'database-swap',
    params: (_config, target, { plan }) => ({
      ...postgresParams(target),
      KB_STAGING: plan.stagingDatabase,
      KB_TARGET_DATABASE: plan.targetDatabase,
      KB_REPLACED: plan.overProduction ? plan.replacedDatabase : '',
    }),
  }),
  'carry-log-rows': hostCommand({
    request: z.object({ script: z.literal('carry-log-rows'), plan: z.pick(restorePlanSchema, carryPlan) }),
    script: 'carry-log-rows',
    params: (_config, target, { plan }) => ({
      ...postgresParams(target),
      KB_STAGING: plan.stagingDatabase,
      KB_TARGET_DATABASE: plan.targetDatabase,
      KB_CARRY: JSON.stringify(plan.carry.map(({ schema, name }) => ({ schema, name }))),
    }),
  }),
  'restore-cleanup': hostCommand({
    request: z.object({ script: z.literal('restore-cleanup'), plan: cleanupPlanSchema }),
    script: 'restore-cleanup',
    params: (config, target, { plan }) => ({
      ...postgresParams(target),
      // A whole-cluster recovery creates no staging database (and PostgreSQL may be down).
      KB_STAGING: plan.recovery === 'cluster' ? '' : plan.stagingDatabase,
      KB_TARGET_DATABASE: plan.targetDatabase ?? '',
      KB_REPLACED: plan.overProduction ? plan.replacedDatabase : '',
      // A whole-cluster recovery restores no dump, so makes no stand-in role.
      KB_STAND_IN_MARK: plan.recovery === 'cluster' ? '' : standInMark(plan.stagingDatabase),
      // The directory from config, the plan names the file only: a clean-up removes nothing else.
      KB_SAFETY_COPY:
        plan.safetyDump && plan.database && plan.safetyDump.manifest !== 'verified'
          ? `${databaseLocalDir(target, 'safety', plan.database)}/${plan.safetyDump.fileName}`
          : '',
      KB_RUN: plan.runId,
      KB_SAFETY_RUN: plan.safetyDump?.runId ?? '',
      KB_RECOVERY: plan.recovery ?? '',
      ...(plan.recovery
        ? { ...pgbackrestParams(config, target), ...recoveryPlaces(target, plan.runId) }
        : {}),
    }),
  }),
  'application-stop': hostCommand({
    request: z.object({ script: z.literal('application-stop'), plan: runTargetSchema }),
    script: 'run-commands',
    params: (_config, target) => commandLines('stop the application', target.application.stop),
  }),
  'application-start': hostCommand({
    request: z.object({ script: z.literal('application-start'), plan: runTargetSchema }),
    script: 'run-commands',
    params: (_config, target) => commandLines('start the application', target.application.start),
  }),
  'files-restore': hostCommand({
    request: z.object({ script: z.literal('files-restore'), plan: filesRestorePlanSchema }),
    script: 'files-restore',
    params: (config, _target, { plan }) => ({
      KB_ARCHIVE_KEY: plan.archive.key,
      KB_SHA256: plan.archive.sha256,
      KB_ARCHIVE_VERSIONS: archiveVersionLines([plan.archive]),
      KB_LOCAL_PATH: plan.archive.localPath,
      KB_DECOMPRESS: CODECS[plan.archive.codec].decompress,
      KB_COMPRESS: CODECS[plan.archive.codec].compress,
      KB_ENTRIES: String(plan.archive.entries),
      KB_PATHS: plan.paths.join(' '),
      KB_EXCLUDES: plan.excludes.join(' '),
      KB_ASIDE: plan.asidePath,
      KB_BUCKET: bucketOf(config, plan.source),
      KB_SOURCE: plan.source,
      KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
    }),
  }),
  'after-files-restore': hostCommand({
    request: z.object({ script: z.literal('after-files-restore'), plan: filesRestorePlanSchema }),
    script: 'run-commands',
    params: (_config, target, { plan }) =>
      commandLines(`after the ${plan.kind} restore`, target.afterFilesRestore[plan.kind]),
  }),
};

import { planSchema } from '../backup/database-plan.ts';
import { filesPlanSchema } from '../backup/files-plan.ts';
import { type Run, runSchema } from '../backup/run.ts';
import { excludedTablesOf, localPathOf, WINDOW_COLUMN } from '../catalog/manifest-builder.ts';
import { CODECS } from '../core/codecs.ts';
import type { Config, Target } from '../core/config.ts';
import { fileName, sha256Hex } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { type RestoreStep, restorePlanSchema } from '../restore/database-schemas.ts';
import { filesRestorePlanSchema } from '../restore/files-plan.ts';
import { diskCheckPlanSchema } from '../watch/monitoring.ts';
import { localCheckPlanSchema } from '../watch/verification.ts';
import { type HostScript, renderScript } from './shell.ts';

/** Who and which run: all that stopping or starting the application needs. */
const runTargetSchema = z.pick(runSchema, { target: true, runId: true });

/**
 * The host commands a workflow can start, each with the input it takes from the
 * state machine. The parameters are derived here, from the plan and the config,
 * so an edited execution input cannot point a script anywhere else.
 */
export const hostCommandRequestSchema = z.discriminatedUnion('script', [
  z.object({ script: z.literal('database-backup'), plan: planSchema }),
  z.object({ script: z.literal('files-backup'), plan: filesPlanSchema }),
  z.object({ script: z.literal('restore-test'), plan: planSchema, sha256: sha256Hex }),
  z.object({ script: z.literal('database-restore'), plan: restorePlanSchema }),
  z.object({ script: z.literal('database-swap'), plan: restorePlanSchema }),
  z.object({ script: z.literal('application-stop'), plan: runTargetSchema }),
  z.object({ script: z.literal('application-start'), plan: runTargetSchema }),
  z.object({ script: z.literal('files-restore'), plan: filesRestorePlanSchema }),
  z.object({ script: z.literal('after-files-restore'), plan: filesRestorePlanSchema }),
  z.object({ script: z.literal('check-local-copies'), plan: localCheckPlanSchema }),
  z.object({ script: z.literal('disk-usage'), plan: diskCheckPlanSchema }),
  z.object({
    script: z.literal('prune-local'),
    plan: z.union([planSchema, filesPlanSchema]),
    keepDays: z.int().check(z.gte(1)),
    keepFile: z.union([fileName, z.literal('')]),
  }),
]);

export type HostCommandRequest = z.infer<typeof hostCommandRequestSchema>;

/** The commands a workflow can start, by name. */
export type HostCommandName = HostCommandRequest['script'];

function postgresParams(target: Target): Record<string, string> {
  const pg = target.postgres;
  return pg.mode === 'docker'
    ? { KB_PG_MODE: 'docker', KB_COMPOSE_FILE: pg.composeFile, KB_COMPOSE_SERVICE: pg.service }
    : { KB_PG_MODE: 'host', KB_COMPOSE_FILE: '', KB_COMPOSE_SERVICE: '' };
}

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

/** The archives a restore applies, one line each; every field passed a strict pattern. */
function archiveLines(steps: readonly Pick<RestoreStep, 'key' | 'sha256' | 'localPath' | 'codec'>[]): string {
  return steps.map((s) => `${s.key} ${s.sha256} ${s.localPath} ${CODECS[s.codec].decompress}`).join('\n');
}

export function hostScriptParams(
  config: Config,
  target: Target,
  request: HostCommandRequest,
): Record<string, string> {
  switch (request.script) {
    case 'database-backup': {
      const { plan } = request;
      return {
        ...postgresParams(target),
        KB_KIND: plan.kind,
        KB_SINCE: plan.since ?? '',
        KB_DATABASE: plan.database,
        KB_EXCLUDE_TABLES: excludedTablesOf(config, plan.kind).join(' '),
        KB_WINDOW_COLUMN: WINDOW_COLUMN[plan.kind] ?? '',
        ...uploadParams(config, plan),
      };
    }
    case 'files-backup': {
      const { plan } = request;
      return {
        KB_KIND: plan.kind,
        KB_PATHS: plan.paths.join(' '),
        KB_EXCLUDES: plan.excludes.join(' '),
        ...uploadParams(config, plan),
      };
    }
    case 'restore-test': {
      const { plan } = request;
      const archive = {
        key: plan.archiveKey,
        sha256: request.sha256,
        localPath: localPathOf(plan),
        codec: plan.codec,
      };
      return {
        ...postgresParams(target),
        KB_INTO: plan.scratchDatabase,
        KB_ARCHIVES: archiveLines([archive]),
        KB_ABSENT: '',
        KB_LOG_TABLES: '',
        KB_TRIM_AFTER: '',
        KB_BUCKET: plan.bucket,
        KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
      };
    }
    case 'database-restore': {
      const { plan } = request;
      return {
        ...postgresParams(target),
        KB_INTO: plan.stagingDatabase,
        KB_ARCHIVES: archiveLines(plan.archives),
        KB_ABSENT: plan.overProduction ? '' : plan.targetDatabase,
        KB_LOG_TABLES: plan.logTables.join(' '),
        KB_TRIM_AFTER: plan.targetTime ?? '',
        KB_BUCKET: config.BACKUP_BUCKET,
        KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
      };
    }
    case 'database-swap': {
      const { plan } = request;
      return {
        ...postgresParams(target),
        KB_STAGING: plan.stagingDatabase,
        KB_TARGET_DATABASE: plan.targetDatabase,
        KB_REPLACED: plan.overProduction ? plan.replacedDatabase : '',
      };
    }
    case 'application-stop':
      return { KB_WHAT: 'stop the application', KB_COMMANDS: target.application.stop.join('\n') };
    case 'application-start':
      return { KB_WHAT: 'start the application', KB_COMMANDS: target.application.start.join('\n') };
    case 'files-restore': {
      const { plan } = request;
      return {
        KB_ARCHIVE_KEY: plan.archive.key,
        KB_SHA256: plan.archive.sha256,
        KB_LOCAL_PATH: plan.archive.localPath,
        KB_DECOMPRESS: CODECS[plan.archive.codec].decompress,
        KB_COMPRESS: CODECS[plan.archive.codec].compress,
        KB_ENTRIES: String(plan.archive.entries),
        KB_PATHS: plan.paths.join(' '),
        KB_EXCLUDES: plan.excludes.join(' '),
        KB_ASIDE: plan.asidePath,
        KB_BUCKET: config.BACKUP_BUCKET,
        KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
      };
    }
    case 'after-files-restore':
      // From config at send time: what runs on the host is never taken from the execution's state.
      return {
        KB_WHAT: `after the ${request.plan.kind} restore`,
        KB_COMMANDS: target.afterFilesRestore[request.plan.kind].join('\n'),
      };
    case 'check-local-copies':
      return { KB_COPIES: request.plan.copies.map((c) => `${c.path} ${c.sha256}`).join('\n') };
    case 'disk-usage':
      // The configured directory, not the plan's: what runs on the host comes from config.
      return { KB_BACKUP_DIR: target.backupDir };
    case 'prune-local':
      return {
        KB_LOCAL_DIR: request.plan.localDir,
        KB_KEEP_DAYS: String(request.keepDays),
        KB_KEEP_FILE: request.keepFile,
      };
  }
}

/** The restore test runs the general restore script into its scratch database. */
export const SCRIPT_OF: Record<HostCommandName, HostScript> = {
  'database-backup': 'database-backup',
  'files-backup': 'files-backup',
  'restore-test': 'restore-archive',
  'database-restore': 'restore-archive',
  'database-swap': 'database-swap',
  'application-stop': 'run-commands',
  'application-start': 'run-commands',
  'files-restore': 'files-restore',
  'after-files-restore': 'run-commands',
  'check-local-copies': 'check-local-copies',
  'disk-usage': 'disk-usage',
  'prune-local': 'prune-local',
};

/**
 * The scripts that end by printing one `KB-RESULT {...}` line: the facts only the
 * host knows, for the next stage. Their success without that line is a failure.
 */
export const REPORTING_SCRIPTS: ReadonlySet<HostScript> = new Set([
  'database-backup',
  'files-backup',
  'check-local-copies',
  'disk-usage',
]);

export function renderHostCommand(config: Config, target: Target, request: HostCommandRequest): string {
  return renderScript(SCRIPT_OF[request.script], hostScriptParams(config, target, request));
}

import { z } from 'zod';
import { CODECS } from './codecs.ts';
import type { Config, Target } from './config.ts';
import { filesPlanSchema } from './files-plan.ts';
import { fileName, sha256Hex } from './identifiers.ts';
import { planSchema, type Run } from './plan.ts';
import { type HostScript, renderScript } from './shell.ts';

/**
 * The host commands a workflow can start, each with the input it takes from the
 * state machine. The parameters are derived here, from the plan and the config,
 * so an edited execution input cannot point a script anywhere else.
 */
export const hostCommandRequestSchema = z.discriminatedUnion('script', [
  z.object({ script: z.literal('database-backup'), plan: planSchema }),
  z.object({ script: z.literal('files-backup'), plan: filesPlanSchema }),
  z.object({ script: z.literal('restore-test'), plan: planSchema, sha256: sha256Hex }),
  z.object({
    script: z.literal('prune-local'),
    plan: z.union([planSchema, filesPlanSchema]),
    keepDays: z.number().int().min(1),
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

/** Where a backup script writes its archive, locally and in S3, and what it records about the run. */
function uploadParams(config: Config, plan: Run): Record<string, string> {
  return {
    KB_BUCKET: plan.bucket,
    KB_ARCHIVE_KEY: plan.archiveKey,
    KB_MANIFEST_KEY: plan.manifestKey,
    KB_LOCAL_DIR: plan.localDir,
    KB_FILE_NAME: plan.fileName,
    KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
    KB_COMPRESS: CODECS[plan.codec].compress,
    KB_COMPRESSION: plan.codec,
    KB_TARGET: plan.target,
    KB_RUN_ID: plan.runId,
    KB_EXECUTION_ID: plan.executionId,
  };
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
        KB_EXCLUDE_TABLES: config.EXCLUDED_TABLES.join(' '),
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
      return {
        ...postgresParams(target),
        KB_LOCAL_PATH: `${plan.localDir}/${plan.fileName}`,
        KB_SHA256: request.sha256,
        KB_DECOMPRESS: CODECS[plan.codec].decompress,
        KB_INTO: plan.scratchDatabase,
        KB_BUCKET: plan.bucket,
        KB_ARCHIVE_KEY: plan.archiveKey,
        KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
      };
    }
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
  'prune-local': 'prune-local',
};

export function renderHostCommand(config: Config, target: Target, request: HostCommandRequest): string {
  return renderScript(SCRIPT_OF[request.script], hostScriptParams(config, target, request));
}

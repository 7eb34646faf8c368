import { FILES_RESTORE_STATE } from '../../statemachines/files-restore.ts';
import { recordedVersion } from '../catalog/archive-record.ts';
import { FILE_KINDS, runId as makeRunId } from '../catalog/keys.ts';
import { isDatabaseManifest } from '../catalog/manifest.ts';
import { CODEC_NAMES, CODECS } from '../core/codecs.ts';
import type { Config } from '../core/config.ts';
import { selectTargets } from '../core/config.ts';
import { NotFoundError } from '../core/errors.ts';
import {
  excludeName,
  hostPath,
  objectKey,
  objectVersionId,
  runIdentifier,
  sha256Hex,
  targetName,
} from '../core/identifiers.ts';
import { checkConfirm, parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { findBackup } from './find-backup.ts';
import { catalogOf, RESTORE_SOURCES, type RestoreCatalogs, restoreSourceInput } from './source.ts';

/**
 * What an operator types to put a files backup back in place. Files are
 * overwritten where they are, so the kind is typed again in `confirm`.
 */
export const filesRestoreInputSchema = z.strictObject({
  kind: z.enum(FILE_KINDS),
  target: z.optional(targetName),
  /** `latest`, a run id or an archive or manifest key from the catalog. */
  backup: z._default(z.union([z.literal('latest'), runIdentifier, objectKey]), 'latest'),
  /** The kind again: the files on the host are replaced. */
  confirm: z.optional(z.string()),
  dryRun: z._default(z.boolean(), false),
  /** Restore from the backup bucket (`primary`) or from its copy in the vault (source.ts). */
  source: restoreSourceInput,
});

export const filesRestorePlanSchema = z.object({
  kind: z.enum(FILE_KINDS),
  target: targetName,
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  startedAt: z.iso.datetime({ offset: true }),
  dryRun: z.boolean(),
  archive: z.object({
    key: objectKey,
    sha256: sha256Hex,
    localPath: hostPath,
    codec: z.enum(CODEC_NAMES),
    /** The version its backup wrote, as the record of its creation names it: the one fetched from S3; null without versioning. */
    versionId: z.nullable(objectVersionId),
    /** Entries the tarball must list, as counted when it was written. */
    entries: z.int().check(z.nonnegative()),
    takenAt: z.iso.datetime({ offset: true }),
  }),
  /** The paths the tarball holds (the backup's paths that existed then). */
  paths: z.array(hostPath).check(z.minLength(1)),
  excludes: z.array(excludeName),
  /** Where the files as they are now are kept, on the host, before the tarball is extracted. */
  asidePath: hostPath,
  /** The target's configured commands after the restore, for the record (the host command reads config). */
  afterCommands: z.array(z.string()),
  /** Where the catalog was read and the host fetches the tarball: the backup bucket or the vault. */
  source: z.enum(RESTORE_SOURCES),
});

export type FilesRestorePlan = z.infer<typeof filesRestorePlanSchema>;

export async function planFilesRestore(
  config: Config,
  catalogs: RestoreCatalogs,
  request: unknown,
): Promise<FilesRestorePlan> {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${FILES_RESTORE_STATE.plan} request`,
  );
  const wanted = parseInput(filesRestoreInputSchema, input, 'The execution input');
  if (!wanted.dryRun)
    checkConfirm(wanted.confirm, wanted.kind, {
      replaces: `A files restore overwrites the ${wanted.kind} files on the host.`,
      named: "the kind's name",
      otherwise: 'To see the plan without changing anything, give "dryRun": true.',
    });
  const [target] = selectTargets(config, wanted.target ?? config.BACKUP_TARGETS[0]?.name);
  if (!target) throw new NotFoundError('No target is configured.');
  const catalog = catalogOf(catalogs, wanted.source);
  const manifest = await findBackup(catalog, [wanted.kind], target.name, null, wanted.backup);
  if (isDatabaseManifest(manifest)) throw new NotFoundError(`${manifest.archive.key} is not a files backup.`);
  // The manifest must match the record of its archive's creation; the version its backup wrote is fetched, never a later one.
  const versionId = await recordedVersion(catalog, manifest);
  const id = makeRunId(new Date(startedAt).toISOString(), executionId);
  return {
    kind: wanted.kind,
    target: target.name,
    runId: id,
    executionId,
    startedAt,
    dryRun: wanted.dryRun,
    archive: {
      key: manifest.archive.key,
      sha256: manifest.archive.sha256,
      localPath: manifest.archive.localPath,
      codec: manifest.archive.compression,
      versionId,
      entries: manifest.entries,
      takenAt: manifest.window.until,
    },
    paths: manifest.paths.filter((p) => !manifest.missing.includes(p)),
    excludes: manifest.excludes,
    asidePath: `${target.backupDir}/restore-aside/${target.name}_${wanted.kind}_before_${id}.tar.${CODECS[manifest.archive.compression].extension}`,
    afterCommands: target.afterFilesRestore[wanted.kind],
    source: wanted.source,
  };
}

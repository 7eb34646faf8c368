import { FILES_BACKUP_STATE } from '../../statemachines/files-backup.ts';
import { archiveKey, FILE_KINDS, manifestKey, runId, tarballFileName } from '../catalog/keys.ts';
import { DEFAULT_CODEC } from '../core/codecs.ts';
import type { Config } from '../core/config.ts';
import { selectTargets } from '../core/config.ts';
import { hostPath, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import { runSchema } from '../core/run.ts';
import * as z from '../core/schema.ts';

/** What an operator or a schedule may pass to a files backup. */
export const filesInputSchema = z.strictObject({
  kind: z.enum(FILE_KINDS),
  target: z.optional(targetName),
  /** Paths for this run instead of the target's list for the kind. */
  paths: z.optional(z.array(hostPath).check(z.minLength(1))),
});

/** One run of the files workflow: one tarball of one target's paths. */
export const filesPlanSchema = z.extend(runSchema, {
  kind: z.enum(FILE_KINDS),
  paths: z.array(hostPath).check(z.minLength(1)),
  excludes: z.array(z.string().check(z.regex(/^[A-Za-z0-9._-]+$/))),
});

export type FilesPlan = z.infer<typeof filesPlanSchema>;

export function planFilesBackup(config: Config, request: unknown): FilesPlan[] {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${FILES_BACKUP_STATE.plan} request`,
  );
  const wanted = parseInput(filesInputSchema, input ?? {}, 'The execution input');
  const iso = new Date(startedAt).toISOString();
  return selectTargets(config, wanted.target).map((target) => {
    const id = runId(iso, `${executionId}/${target.name}`);
    const file = tarballFileName(target.name, wanted.kind, id, DEFAULT_CODEC);
    const key = archiveKey(wanted.kind, target.name, null, iso, file);
    return {
      kind: wanted.kind,
      target: target.name,
      runId: id,
      executionId,
      startedAt,
      bucket: config.BACKUP_BUCKET,
      archiveKey: key,
      manifestKey: manifestKey(key),
      fileName: file,
      localDir: `${target.backupDir}/${wanted.kind}`,
      codec: DEFAULT_CODEC,
      paths: wanted.paths ?? target.files[wanted.kind],
      excludes: wanted.kind === 'application' ? target.files.applicationExcludes : [],
    };
  });
}

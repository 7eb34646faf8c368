import { FILES_BACKUP_STATE } from '../../statemachines/files-backup.ts';
import {
  archiveKey,
  FILE_KINDS,
  type FileKind,
  manifestKey,
  runId,
  tarballFileName,
} from '../catalog/keys.ts';
import { DEFAULT_CODEC } from '../core/codecs.ts';
import type { Config, Target } from '../core/config.ts';
import { selectTargets } from '../core/config.ts';
import { InvalidInputError } from '../core/errors.ts';
import { excludeName, hostPath, targetName } from '../core/identifiers.ts';
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
  excludes: z.array(excludeName),
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
  const targets = selectTargets(config, wanted.target);
  if (wanted.paths) for (const target of targets) refuseOutsideRoots(target, wanted.kind, wanted.paths);
  return targets.map((target) => {
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

/**
 * A run's `paths` may name the kind's configured roots and paths under them,
 * nothing else: any root-readable file of the host would otherwise go into the
 * kind's catalog (and be its latest backup), outside the configuration kind's
 * encryption and read restriction. The host checks again that no path leads
 * out of its root through a symbolic link (host/files-backup.sh).
 */
function refuseOutsideRoots(target: Target, kind: FileKind, paths: readonly string[]): void {
  const roots = target.files[kind];
  const under = (path: string) =>
    roots.some((root) => path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`));
  const outside = paths.filter((p) => !under(p));
  if (outside.length === 0) return;
  throw new InvalidInputError(
    `A ${kind} backup of ${target.name} may only archive its ${kind} paths or paths under them (${roots.join(', ')}); ${outside.join(', ')} ${outside.length === 1 ? 'is' : 'are'} not. Name paths under those, or add the root to the target's files.${kind} in BACKUP_TARGETS if it belongs to this kind. Nothing was sent to the host.`,
  );
}

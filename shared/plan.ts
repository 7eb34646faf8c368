import { z } from 'zod';
import { CODEC_NAMES, DEFAULT_CODEC } from './codecs.ts';
import { type Config, findTarget } from './config.ts';
import { InvalidInputError, NotFoundError } from './errors.ts';
import { fileName, hostPath, objectKey, sqlIdentifier, targetName } from './identifiers.ts';
import { archiveFileName, archiveKey, manifestKey, runId, scratchDatabase } from './keys.ts';

/** What an operator or a schedule may pass to a backup execution; every field is optional. */
export const backupInputSchema = z
  .object({
    target: targetName.optional(),
    database: sqlIdentifier.optional(),
  })
  .strict();

/** What PlanBackup receives: the execution input plus facts from the context object. */
export const planRequestSchema = z.object({
  input: z.unknown(),
  executionId: z.string().regex(/^[A-Za-z0-9:._/-]{1,256}$/),
  startedAt: z.iso.datetime({ offset: true }),
});

/** One run of a backup workflow, decided once by PlanBackup and carried through the execution. */
export const planSchema = z.object({
  kind: z.literal('full'),
  target: targetName,
  database: sqlIdentifier,
  runId: z.string().regex(/^\d{8}T\d{6}Z_[0-9a-f]{8}$/),
  executionId: z.string().min(1),
  startedAt: z.iso.datetime({ offset: true }),
  bucket: z.string().min(3),
  archiveKey: objectKey,
  manifestKey: objectKey,
  fileName,
  localDir: hostPath,
  scratchDatabase: sqlIdentifier,
  codec: z.enum(CODEC_NAMES),
});

export type Plan = z.infer<typeof planSchema>;

/** Parses untrusted input against a schema; the error lists every problem and what was expected. */
export function parseInput<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`);
  throw new InvalidInputError(
    `${what} is not valid; nothing was started. Fix it and start again:\n- ${problems.join('\n- ')}`,
  );
}

export function planBackup(config: Config, request: unknown): Plan {
  const { input, executionId, startedAt } = parseInput(planRequestSchema, request, 'The PlanBackup request');
  const wanted = parseInput(backupInputSchema, input ?? {}, 'The execution input');
  const defaultTarget = config.BACKUP_TARGETS[0];
  const target = wanted.target === undefined ? defaultTarget : findTarget(config, wanted.target);
  if (!target) {
    const known = config.BACKUP_TARGETS.map((t) => t.name).join(', ');
    throw new NotFoundError(`Unknown target "${wanted.target}"; the configured targets are: ${known}.`);
  }
  const database = wanted.database ?? target.database;
  const iso = new Date(startedAt).toISOString();
  const id = runId(iso, executionId);
  const file = archiveFileName(database, 'full', id, DEFAULT_CODEC);
  const key = archiveKey('full', database, iso, file);
  return {
    kind: 'full',
    target: target.name,
    database,
    runId: id,
    executionId,
    startedAt,
    bucket: config.BACKUP_BUCKET,
    archiveKey: key,
    manifestKey: manifestKey(key),
    fileName: file,
    localDir: `${target.backupDir}/database/full/${database}`,
    scratchDatabase: scratchDatabase(id),
    codec: DEFAULT_CODEC,
  };
}

import { CODEC_NAMES } from './codecs.ts';
import { fileName, hostPath, objectKey, runIdentifier, targetName } from './identifiers.ts';
import * as z from './schema.ts';

/** What every run of every workflow knows: who it is, and where its archive goes. */
export const runSchema = z.object({
  target: targetName,
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  startedAt: z.iso.datetime({ offset: true }),
  bucket: z.string().check(z.minLength(3)),
  archiveKey: objectKey,
  manifestKey: objectKey,
  fileName,
  localDir: hostPath,
  codec: z.enum(CODEC_NAMES),
});

export type Run = z.infer<typeof runSchema>;

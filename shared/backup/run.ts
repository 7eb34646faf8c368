import { z } from 'zod';
import { CODEC_NAMES } from '../core/codecs.ts';
import { fileName, hostPath, objectKey, runIdentifier, targetName } from '../core/identifiers.ts';

/** What every run of every workflow knows: who it is, and where its archive goes. */
export const runSchema = z.object({
  target: targetName,
  runId: runIdentifier,
  executionId: z.string().min(1),
  startedAt: z.iso.datetime({ offset: true }),
  bucket: z.string().min(3),
  archiveKey: objectKey,
  manifestKey: objectKey,
  fileName,
  localDir: hostPath,
  codec: z.enum(CODEC_NAMES),
});

export type Run = z.infer<typeof runSchema>;

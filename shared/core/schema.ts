import { en } from 'zod/locales';
import { z } from 'zod/mini';

/**
 * The project's schema library: zod/mini, whose functional API lets esbuild keep
 * only what a function uses (classic zod's methods pull all of it into every
 * bundle). Every file imports `z` from here, never from 'zod' itself.
 *
 * zod/mini loads no messages ("Invalid input" for everything); the English ones
 * are configured here, once, so every parse error reads as it always has.
 */
z.config(en());

export { z };

/**
 * Transition only: lets the files still on classic zod call `.optional()` on a
 * schema defined here (shared/watch/drill.ts, shared/restore/alert.ts); the
 * result is `z.optional(schema)`, exactly what classic's method builds. Delete it,
 * and its uses, once no file imports 'zod'.
 */
export function withClassicOptional<T extends z.ZodMiniType>(
  schema: T,
): T & { optional(): z.ZodMiniOptional<T> } {
  return Object.assign(schema, { optional: () => z.optional(schema) });
}

import { en } from 'zod/locales';
import { config } from 'zod/mini';

/**
 * The project's schema library: zod/mini, whose functions let esbuild keep only
 * what a function uses (classic zod's methods pull all of it into every bundle).
 * Every file takes it from here, never from 'zod' itself, and as a namespace:
 *
 *   import * as z from '../core/schema.ts';
 *
 * not `import { z } from ...`: esbuild shakes `z.string` out of a namespace
 * import, but a namespace handed on as a value (zod/mini's own `z` export, or a
 * `z` re-exported from here) is built whole, all of zod with every locale.
 *
 * zod/mini loads no messages ("Invalid input" for everything); the English ones
 * are configured here, once, so every parse error reads as it always has.
 */
config(en());

export * from 'zod/mini';

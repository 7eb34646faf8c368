import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * How the code takes zod decides what every Lambda bundle carries: through
 * shared/core/schema.ts (English messages configured), and as a namespace import,
 * which esbuild tree-shakes; a named `z` is a namespace handed on as a value,
 * which esbuild builds whole (all of zod with every locale, over 400 KiB).
 */

const ROOT = join(import.meta.dirname, '..', '..');
const SCHEMA = 'shared/core/schema.ts';

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|cjs|mjs|js)$/.test(e.name))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}
const code = ['shared', 'functions', 'local', 'serverless', 'bench', 'test'].flatMap(sources);

describe('zod imports', () => {
  it('take zod from shared/core/schema.ts only: classic zod, zod/mini or its locales', () => {
    const direct = code.filter(
      (f) => f !== SCHEMA && /from 'zod(\/[\w/-]+)?'/.test(readFileSync(join(ROOT, f), 'utf8')),
    );
    expect(direct).toStrictEqual([]);
  });

  it('take the schema module as a namespace, never a named z', () => {
    const named = code.filter((f) =>
      /import\s*(type\s*)?\{[^}]*\bz\b[^}]*\}\s*from\s*'[./]*(core\/)?schema\.ts'/.test(
        readFileSync(join(ROOT, f), 'utf8'),
      ),
    );
    expect(named).toStrictEqual([]);
    expect(
      code.filter((f) => readFileSync(join(ROOT, f), 'utf8').includes("import * as z from '")).length,
    ).toBeGreaterThan(0);
  });
});

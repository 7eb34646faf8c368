import { InvalidInputError } from './errors.ts';
import * as z from './schema.ts';

/**
 * Parses untrusted input against a schema; the error lists every problem and what was expected.
 * Any zod 4 schema will do, mini or classic: both are built on the same core.
 */
export function parseInput<T extends z.core.$ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const parsed = z.safeParse(schema, value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`);
  throw new InvalidInputError(
    `${what} is not valid; nothing was started. Fix it and start again:\n- ${problems.join('\n- ')}`,
  );
}

/** What every planning stage receives: the execution input plus facts from the context object. */
export const planRequestSchema = z.object({
  input: z.unknown(),
  executionId: z.string().check(z.regex(/^[A-Za-z0-9:._/-]{1,256}$/)),
  startedAt: z.iso.datetime({ offset: true }),
});

import { InvalidInputError } from './errors.ts';
import * as z from './schema.ts';

/**
 * Parses untrusted input against a schema; the error lists every problem and what was expected.
 * Any zod 4 schema will do, mini or classic: both are built on the same core.
 */
export function parseInput<T extends z.core.$ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const parsed = z.safeParse(schema, value, { reportInput: true });
  if (parsed.success) return parsed.data;
  throw new InvalidInputError(
    `${what} is not valid; nothing was started. Fix it and start again:\n- ${problemsOf(parsed.error.issues, '(input)').join('\n- ')}`,
  );
}

/** What a missing field of each expected type is given as, in the words of a refusal. */
const GIVE: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'an object',
  array: 'an array',
};

/**
 * One line per zod issue, `<path>: <zod's message>` (`root` for the whole value),
 * except a field that is absent: `<path> is required: give a string` (zod's own
 * words, "Invalid input: expected string, received undefined", read as if the
 * field were given wrongly). The issues must come from a parse with
 * `reportInput: true`, which tells an absent field from a wrong one; their
 * inputs are not shown.
 */
export function problemsOf(issues: readonly z.core.$ZodIssue[], root: string): string[] {
  return issues.map((i) => {
    const path = i.path.join('.') || root;
    if (i.code === 'invalid_type' && i.path.length > 0 && i.input === undefined) {
      const give = GIVE[i.expected];
      return `${path} is required${give ? `: give ${give}` : ''}`;
    }
    return `${path}: ${i.message}`;
  });
}

/** What every planning stage receives: the execution input plus facts from the context object. */
export const planRequestSchema = z.object({
  input: z.unknown(),
  executionId: z.string().check(z.regex(/^[A-Za-z0-9:._/-]{1,256}$/)),
  startedAt: z.iso.datetime({ offset: true }),
});

/**
 * The typed-again name that lets a run replace something in place: passes when
 * `confirm` is exactly `expected`. Otherwise an InvalidInputError, before
 * anything changed, that says what the run replaces (`replaces`, a sentence),
 * then how to confirm it: add `"confirm"` when it is absent; when it is given
 * but differs (a typo), that it must be exactly `expected`, which `named` says
 * what it is ("the target database's name"); then `otherwise` (a sentence: the
 * way to do without replacing anything).
 */
export function checkConfirm(
  confirm: string | undefined,
  expected: string,
  words: { replaces: string; named: string; otherwise: string },
): void {
  if (confirm === expected) return;
  const how =
    confirm === undefined
      ? `If that is what you want, add "confirm": "${expected}" to the input.`
      : `"confirm" does not match: it must be exactly ${words.named}, ${expected} (it was ${JSON.stringify(confirm)}).`;
  throw new InvalidInputError(`${words.replaces} ${how} ${words.otherwise} Nothing was changed.`);
}

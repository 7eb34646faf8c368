/**
 * The one place where text from outside the project (a host command's output
 * and the facts its result line reports, a tool's error, an execution's cause)
 * is cleaned before it reaches an alert, a log line or an execution's state,
 * history or output. Two things never pass:
 *  - credentials: a URL's password, a Slack webhook's path, an assignment to a
 *    password, secret, token, S3 key or Authorization header;
 *  - customer rows: PostgreSQL's DETAIL, CONTEXT, LINE, QUERY and STATEMENT
 *    fields quote them (`Failing row contains (…)`, `Key (email)=(…) already
 *    exists`, `COPY pets, line 3: "…"`, a statement's text; QUERY is the SQL a
 *    function ran, with the values it built in: a CHECK's function that fails on
 *    a restore quotes the row's email there), and so do some errors themselves
 *    (`invalid input syntax for type integer: "…"`). The ERROR line itself
 *    stays: it names the constraint, table or column that failed, which is what
 *    an operator needs, and no value. But for a message a function of the
 *    database's own wrote (its CONTEXT says PL/pgSQL's `at RAISE`, or names a
 *    PL/Python, PL/Perl or PL/Tcl function): that text is the schema author's,
 *    and quotes what they chose (`RAISE EXCEPTION 'customer email % …', email`).
 * The raw output stays on the host and in the bucket's host-output/ (keys.ts).
 */

const REDACTED = '***';

/** `scheme://user:password@host`: the password may hold `/` or `@` (up to the last `@` of the word). */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/\s@]+:)\S*@/gi;
/** Slack's incoming webhooks (`services/`) and workflow webhooks (`triggers/`): the path is the secret. */
const SLACK_WEBHOOK = /(hooks\.slack\.com\/[a-z]+\/)[^\s"'<>]+/gi;
/** `NAME=value`, `NAME: value`, the value bare or quoted (a quoted one may hold spaces). */
const SECRET_ASSIGNMENT =
  /(\b[\w.-]*(?:password|passwd|secret|token|s3[-_]key|authorization)[\w.-]*["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;]+)/gi;
/**
 * An error that quotes the value it could not read, as it is (quotes in it are
 * not escaped: up to the line's last one): an input syntax error, a malformed
 * array or record literal, a date out of range, a number out of its type's range.
 */
const INPUT_VALUE =
  /((?:invalid input (?:syntax|value) for (?:type |enum )?[^:\n]*|malformed \w+ literal|date\/time field value out of range): )"[^\n]*"/g;
const OUT_OF_RANGE = /\bvalue "[^\n]*" (is out of range for type)/g;

/**
 * A PostgreSQL field that may quote data, as libpq, psql and the server log
 * print it (`DETAIL:  …`, `psql:<stdin>:3: CONTEXT:  …`, `2026-… [123] LINE 1: …`),
 * or as pg_dump and pg_restore do (`pg_restore: detail: …`).
 */
const DATA_FIELD = /(^|\s)(DETAIL|CONTEXT|QUERY|STATEMENT|LINE \d+|(?:pg_\w+|psql): detail):(?=\s)/;
/**
 * The first line of a new message: one whose first word ends in a colon
 * (`HINT:`, `psql:<stdin>:9: ERROR:`, `pg_restore: error: …`), a host script's
 * own (`restore-archive: …`, `physical-restore-test of <set> (<phase>): …`: a
 * kebab-case name, which no PostgreSQL context line starts with) or a log
 * line's date. A field's value goes on over the lines before it (a CONTEXT's
 * call stack down to `COPY pets, line 3: "…"`, a LINE's caret, a row value
 * holding a newline).
 */
const NEW_MESSAGE = /^(?:[^\s:]+(?::[^\s:]*)*: |[a-z]+(?:-[a-z]+)+(?::| of )|\d{4}-\d\d-\d\d[ T])/;

/**
 * A CONTEXT naming the function that raised the message itself: PL/pgSQL's
 * `RAISE` (its CONTEXT ends `at RAISE`), or a procedural language whose errors
 * are the function's own text (`plpy.error`, Perl's `die`, Tcl's `elog`).
 * (PostgreSQL's plpgsql, plpython, plperl and pltcl name their functions so in
 * CONTEXT.)
 */
const RAISED_BY_FUNCTION = /\bat RAISE\b|\bPL\/(?:Python|Perl|Tcl)U? function\b/;
/** A message's severity and what follows it (`psql:<stdin>:9: ERROR:  …`, `pg_restore: error: … ERROR:  …`): the last one. */
const MESSAGE_TEXT = /^(.*\b(?:ERROR|FATAL|PANIC|WARNING|NOTICE|INFO|LOG):\s+).*$/;
const RAISED_TEXT = `${REDACTED} (a message the database's own function raised: it may quote a row; the host's output has it)`;

/** A HINT, which `RAISE … USING HINT = …` writes too. */
const HINT = /^(\s*(?:\S+: )?HINT:\s+).*$/;

/** The field starting at line `i` with the lines it goes on over (a PL/Python traceback). */
function fieldText(lines: string[], i: number): string {
  const end = lines.findIndex((l, j) => j > i && (l.trim() === '' || NEW_MESSAGE.test(l)));
  return lines.slice(i, end < 0 ? undefined : end).join('\n');
}

/**
 * The text of each message a function of the database's own raised, replaced:
 * walks back from each CONTEXT that says so to the line that starts its message
 * (the nearest with a severity), and replaces that text and what lies between
 * (the message's further lines, a HINT); the data fields are redactDataFields'.
 */
function redactRaisedMessages(lines: string[]): string[] {
  const out = [...lines];
  lines.forEach((line, i) => {
    const field = DATA_FIELD.exec(line);
    if (field?.[2] !== 'CONTEXT' || !RAISED_BY_FUNCTION.test(fieldText(lines, i))) return;
    let start = i - 1;
    while (start >= 0 && !MESSAGE_TEXT.test(out[start] ?? '')) start--;
    if (start < 0) return;
    out[start] = (out[start] ?? '').replace(MESSAGE_TEXT, `$1${RAISED_TEXT}`);
    for (let j = start + 1; j < i; j++) {
      const between = out[j] ?? '';
      if (DATA_FIELD.test(between)) continue;
      out[j] = HINT.test(between) ? between.replace(HINT, `$1${REDACTED}`) : `  ${REDACTED}`;
    }
  });
  return out;
}

function redactDataFields(text: string): string {
  let inField = false;
  return redactRaisedMessages(text.split('\n'))
    .map((line) => {
      const field = DATA_FIELD.exec(line);
      if (field) {
        inField = true;
        return `${line.slice(0, field.index + field[0].length)}  ${REDACTED}`;
      }
      if (inField && line.trim() !== '' && !NEW_MESSAGE.test(line)) return `  ${REDACTED}`;
      inField = false;
      return line;
    })
    .join('\n');
}

/** `text` with credentials and quoted rows replaced by `***`; nothing else changes. */
export function redact(text: string): string {
  return redactDataFields(text)
    .replace(URL_PASSWORD, `$1${REDACTED}@`)
    .replace(SLACK_WEBHOOK, `$1${REDACTED}`)
    .replace(SECRET_ASSIGNMENT, `$1${REDACTED}`)
    .replace(INPUT_VALUE, `$1"${REDACTED}"`)
    .replace(OUT_OF_RANGE, `value "${REDACTED}" $1`);
}

/** Every string in a JSON value redacted, its shape kept (a host's result line, parsed). */
export function redactValues<T>(value: T): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map(redactValues) as T;
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactValues(v)])) as T;
  return value;
}

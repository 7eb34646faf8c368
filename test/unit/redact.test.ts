import { describe, expect, it } from 'vitest';
import { redact, redactValues } from '../../shared/core/redact.ts';

describe('redact', () => {
  it('removes credentials in URLs, webhook paths and assignments', () => {
    expect(redact('https://hooks.slack.com/services/T1/B2/abc PGPASSWORD=s3cret password: x1')).toBe(
      'https://hooks.slack.com/services/*** PGPASSWORD=*** password: ***',
    );
  });

  it("removes a URL's password that holds a slash or an at sign", () => {
    expect(redact('could not connect to postgres://kennel:pa/ss@w0rd@db.internal:5432/kennel_prod')).toBe(
      'could not connect to postgres://kennel:***@db.internal:5432/kennel_prod',
    );
  });

  it('removes a quoted password with a space, and keys of the S3 repository', () => {
    expect(redact(`PGPASSWORD='correct horse' pg_dump; password="battery staple"`)).toBe(
      'PGPASSWORD=*** pg_dump; password=***',
    );
    expect(
      redact('repo1-s3-key-secret=abc123 PGBACKREST_REPO1_S3_KEY=AKIA1 Authorization: AWS4 x token=t0k'),
    ).toBe('repo1-s3-key-secret=*** PGBACKREST_REPO1_S3_KEY=*** Authorization: *** x token=***');
    expect(redact('{"password":"hunter 2","user":"kennel"}')).toBe('{"password":***,"user":"kennel"}');
  });

  it("removes Slack workflow webhooks' paths too", () => {
    expect(redact('POST https://hooks.slack.com/triggers/T0AAA/123/abcdef failed')).toBe(
      'POST https://hooks.slack.com/triggers/*** failed',
    );
  });

  it("removes PostgreSQL's DETAIL, CONTEXT and LINE fields, keeping the error and what follows", () => {
    const psql = [
      'psql:<stdin>:45: ERROR:  new row for relation "pets" violates check constraint "pets_code_check"',
      'DETAIL:  Failing row contains (1, Secret Rex, A).',
      'CONTEXT:  SQL function "code_allowed" statement 1',
      'COPY pets, line 1: "1\tSecret Rex\tA"',
      'restore-archive: the restore failed',
    ].join('\n');
    expect(redact(psql)).toBe(
      [
        'psql:<stdin>:45: ERROR:  new row for relation "pets" violates check constraint "pets_code_check"',
        'DETAIL:  ***',
        'CONTEXT:  ***',
        '  ***',
        'restore-archive: the restore failed',
      ].join('\n'),
    );
    expect(
      redact(
        'ERROR:  duplicate key value violates unique constraint "owners_email_key"\nDETAIL:  Key (email)=(ann@example.com) already exists.\nHINT:  none',
      ),
    ).toBe(
      'ERROR:  duplicate key value violates unique constraint "owners_email_key"\nDETAIL:  ***\nHINT:  none',
    );
    expect(
      redact(
        'ERROR:  syntax error at or near "x"\nLINE 1: INSERT INTO owners VALUES (\'Ann\', x)\n                                         ^',
      ),
    ).toBe('ERROR:  syntax error at or near "x"\nLINE 1:  ***\n  ***');
    expect(
      redact(
        '2026-11-30 02:00:01 UTC [42] CONTEXT:  COPY owners, line 3: "3\tann@example.com"\n2026-11-30 02:00:02 UTC [42] LOG:  x',
      ),
    ).toBe('2026-11-30 02:00:01 UTC [42] CONTEXT:  ***\n2026-11-30 02:00:02 UTC [42] LOG:  x');
    expect(redact('pg_restore: detail: Key (id)=(7) is not present in table "owners".')).toBe(
      'pg_restore: detail:  ***',
    );
  });

  it("removes the QUERY a function ran and a log's STATEMENT: both quote the values built into them", () => {
    // psql's output when a CHECK's PL/pgSQL function fails on the row a restore loads.
    const psql = [
      'psql:<stdin>:7395: ERROR:  relation "kennel_sizes" does not exist',
      "LINE 1: SELECT count(*) >= 0 FROM kennel_sizes WHERE code = 'grace.nunez.203@example.net'",
      '                                  ^',
      "QUERY:  SELECT count(*) >= 0 FROM kennel_sizes WHERE code = 'grace.nunez.203@example.net'",
      'CONTEXT:  PL/pgSQL function public.email_known(text) line 1 at EXECUTE',
      'COPY customers, line 1: "1\tGrace\tgrace.nunez.203@example.net"',
      'restore-archive: the restore failed',
    ].join('\n');
    expect(redact(psql)).toBe(
      [
        'psql:<stdin>:7395: ERROR:  relation "kennel_sizes" does not exist',
        'LINE 1:  ***',
        '  ***',
        'QUERY:  ***',
        'CONTEXT:  ***',
        '  ***',
        'restore-archive: the restore failed',
      ].join('\n'),
    );
    expect(
      redact(
        "2026-11-30 02:00:01 UTC [42] ERROR:  value too long\n2026-11-30 02:00:01 UTC [42] STATEMENT:  INSERT INTO owners VALUES ('ann@example.com')",
      ),
    ).toBe(
      '2026-11-30 02:00:01 UTC [42] ERROR:  value too long\n2026-11-30 02:00:01 UTC [42] STATEMENT:  ***',
    );
  });

  it("keeps a host script's message that follows a tool's field", () => {
    const amcheck = [
      'physical-restore-test: pg_amcheck reported 3 lines; the first:',
      'btree index "kennel_prod.public.pets_pkey":',
      '    ERROR:  mismatch between parent key and child high key in index "pets_pkey"',
      '    DETAIL:  Target block=1 child block=2 target page lsn=0/1A2B3C4.',
      'physical-restore-test of 20261130-020000F (amcheck): pg_amcheck found corruption',
    ].join('\n');
    expect(redact(amcheck).split('\n').slice(3)).toEqual([
      '    DETAIL:  ***',
      'physical-restore-test of 20261130-020000F (amcheck): pg_amcheck found corruption',
    ]);
  });

  it("removes the text of a message the database's own function raised, and its HINT: the schema's author chose what it quotes", () => {
    // psql's output when a CHECK's PL/pgSQL function RAISEs on the row a restore loads.
    const psql = [
      'psql:<stdin>:7395: ERROR:  customer email jane.private@example.net is not',
      'in an allowed domain',
      'HINT:  ask jane.private@example.net',
      'CONTEXT:  PL/pgSQL function public.email_ok(text) line 3 at RAISE',
      'COPY a_customers, line 1: "1\tjane.private@example.net"',
      'restore-archive: the restore failed',
    ].join('\n');
    const raised =
      "*** (a message the database's own function raised: it may quote a row; the host's output has it)";
    expect(redact(psql)).toBe(
      [
        `psql:<stdin>:7395: ERROR:  ${raised}`,
        '  ***',
        'HINT:  ***',
        'CONTEXT:  ***',
        '  ***',
        'restore-archive: the restore failed',
      ].join('\n'),
    );
    // pg_restore's form, and PL/Python's error; a message before it stays.
    expect(
      redact(
        [
          'pg_restore: warning: a b',
          'pg_restore: error: could not execute query: ERROR:  plpy.Error: owner ann@example.com unknown',
          'CONTEXT:  Traceback (most recent call last):',
          '  PL/Python function "owner_ok", line 3, in <module>',
        ].join('\n'),
      ),
    ).toBe(
      [
        'pg_restore: warning: a b',
        `pg_restore: error: could not execute query: ERROR:  ${raised}`,
        'CONTEXT:  ***',
        '  ***',
      ].join('\n'),
    );
  });

  it("keeps PostgreSQL's own error raised inside a function: it names what failed and quotes no value", () => {
    const psql = [
      'psql:<stdin>:12: ERROR:  relation "kennel_sizes" does not exist',
      'CONTEXT:  PL/pgSQL function public.email_known(text) line 1 at EXECUTE',
    ].join('\n');
    expect(redact(psql)).toBe(
      ['psql:<stdin>:12: ERROR:  relation "kennel_sizes" does not exist', 'CONTEXT:  ***'].join('\n'),
    );
  });

  it('removes the value an input syntax error quotes', () => {
    expect(redact('ERROR:  invalid input syntax for type integer: "Rex the dog"')).toBe(
      'ERROR:  invalid input syntax for type integer: "***"',
    );
  });

  it('removes the whole value, quotes in it too, of every error that quotes one', () => {
    expect(
      redact(
        [
          'ERROR:  invalid input syntax for type integer: "Rex "the" dog"',
          'ERROR:  malformed array literal: "{Rex, "Mia}"',
          'ERROR:  date/time field value out of range: "1961-13-01 Rex"',
          'ERROR:  value "4155550123" is out of range for type integer',
          'ERROR:  invalid input value for enum mood: "grumpy Rex"',
        ].join('\n'),
      ),
    ).toBe(
      [
        'ERROR:  invalid input syntax for type integer: "***"',
        'ERROR:  malformed array literal: "***"',
        'ERROR:  date/time field value out of range: "***"',
        'ERROR:  value "***" is out of range for type integer',
        'ERROR:  invalid input value for enum mood: "***"',
      ].join('\n'),
    );
  });

  it('leaves ordinary messages alone', () => {
    const text =
      'The restore-test on i-0123 (command 1a2b) failed. Its stderr ends with:\nrestore-archive: the database kb_x already exists; drop it';
    expect(redact(text)).toBe(text);
  });

  it("redacts every string of a host's result and keeps its shape", () => {
    expect(
      redactValues({
        reason: 'DETAIL:  Failing row contains (7)',
        count: 3,
        list: ['password=x'],
        none: null,
      }),
    ).toEqual({
      reason: 'DETAIL:  ***',
      count: 3,
      list: ['password=***'],
      none: null,
    });
  });
});

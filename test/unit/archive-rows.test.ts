import { describe, expect, it } from 'vitest';
import { copiedTable, RowCounter } from '../../shared/catalog/archive-rows.ts';

/** What pg_dump 15 wrote for tables named awkwardly (taken from a real dump, trimmed). */
const PLAIN = [
  '--',
  '-- PostgreSQL database dump',
  '--',
  '',
  '-- Name: f(); Type: FUNCTION; Schema: public; Owner: postgres',
  '--',
  '',
  'CREATE FUNCTION public.f() RETURNS void',
  '    LANGUAGE plpgsql',
  '    AS $$',
  'BEGIN',
  'COPY public.empty FROM stdin;',
  'END $$;',
  '',
  '--',
  '-- Data for Name: we"ird name; Type: TABLE DATA; Schema: Odd.Schema; Owner: postgres',
  '--',
  '',
  'COPY "Odd.Schema"."we""ird',
  'name" ("col ""1""", "select") FROM stdin;',
  'multi\\nline\t1',
  '\\.',
  '',
  '',
  '--',
  '-- Data for Name: a.b; Type: TABLE DATA; Schema: public; Owner: postgres',
  '--',
  '',
  'COPY public."a.b" (x) FROM stdin;',
  '1',
  '2',
  '\\.',
  '',
  '',
  '--',
  '-- Data for Name: empty; Type: TABLE DATA; Schema: public; Owner: postgres',
  '--',
  '',
  'COPY public.empty (x) FROM stdin;',
  '\\.',
  '',
  '',
  '--',
  '-- Data for Name: nocols; Type: TABLE DATA; Schema: public; Owner: postgres',
  '--',
  '',
  'COPY public.nocols  FROM stdin;',
  '',
  '\\.',
  '',
  '',
  '--',
  '-- Data for Name: select; Type: TABLE DATA; Schema: public; Owner: postgres',
  '--',
  '',
  'COPY public."select" (x) FROM stdin;',
  '\\\\.',
  '\\.',
  '',
  '',
  '--',
  '-- Data for Name: Ünï; Type: TABLE DATA; Schema: public; Owner: postgres',
  '--',
  '',
  'COPY public."Ünï" (x) FROM stdin;',
  '5',
  '\\.',
  '',
  '',
  '--',
  '-- PostgreSQL database dump complete',
  '--',
  '',
].join('\n');

const PLAIN_ROWS = [
  { schema: 'Odd.Schema', name: 'we"ird\nname', rows: 1 },
  { schema: 'public', name: 'a.b', rows: 2 },
  { schema: 'public', name: 'empty', rows: 0 },
  // A table without columns: each row is an empty line.
  { schema: 'public', name: 'nocols', rows: 1 },
  // A value `\.` is escaped in the data; only the bare line ends the block.
  { schema: 'public', name: 'select', rows: 1 },
  { schema: 'public', name: 'Ünï', rows: 1 },
];

function count(text: string, pieces: Buffer[] = [Buffer.from(text)]) {
  const counter = new RowCounter();
  for (const piece of pieces) counter.push(piece);
  return counter.end();
}

/** The archive cut into two pieces at every byte: a stream may split anywhere, even inside a character. */
function everySplit(text: string): Buffer[][] {
  const bytes = Buffer.from(text);
  return Array.from({ length: bytes.length - 1 }, (_, i) => [
    bytes.subarray(0, i + 1),
    bytes.subarray(i + 1),
  ]);
}

describe('RowCounter', () => {
  it('counts each table of a pg_dump by its exact name: dots, quotes, newlines, keywords, an empty table', () => {
    expect(count(PLAIN)).toEqual({ tables: PLAIN_ROWS });
  });

  it('keeps apart two tables whose schema and name join to the same dotted text', () => {
    const dump = [
      '--',
      '-- Data for Name: c; Type: TABLE DATA; Schema: a.b; Owner: postgres',
      '--',
      '',
      'COPY "a.b".c (x) FROM stdin;',
      '1',
      '\\.',
      '',
      '--',
      '-- Data for Name: b.c; Type: TABLE DATA; Schema: a; Owner: postgres',
      '--',
      '',
      'COPY a."b.c" (x) FROM stdin;',
      '1',
      '2',
      '\\.',
      '',
    ].join('\n');
    expect(count(dump).tables).toEqual([
      { schema: 'a.b', name: 'c', rows: 1 },
      { schema: 'a', name: 'b.c', rows: 2 },
    ]);
  });

  it('gives the same counts wherever the stream splits', () => {
    for (const pieces of everySplit(PLAIN)) expect(count(PLAIN, pieces).tables).toEqual(PLAIN_ROWS);
    const byByte = [...Buffer.from(PLAIN)].map((b) => Buffer.from([b]));
    expect(count(PLAIN, byByte)).toEqual({ tables: PLAIN_ROWS });
  });

  it('does not count a block cut short', () => {
    const cut = PLAIN.slice(0, PLAIN.indexOf('2\n\\.'));
    expect(count(cut).tables).toEqual([
      { schema: 'Odd.Schema', name: 'we"ird\nname', rows: 1 },
      { schema: 'public', name: 'a.b', rows: 0 },
    ]);
  });

  it('counts a table whose name holds a newline as pg_dump before 15.14 wrote it, the comment split over two lines', () => {
    // pg_dump 15.14 (CVE-2025-8715) replaced newlines in the comments' names; older ones, still on hosts, did not.
    const old = [
      '--',
      '-- PostgreSQL database dump',
      '--',
      '',
      '--',
      '-- Data for Name: new',
      'line; Type: TABLE DATA; Schema: public; Owner: postgres',
      '--',
      '',
      'COPY public."new',
      'line" (id) FROM stdin;',
      '1',
      '2',
      '\\.',
      '',
      '',
      '--',
      '-- PostgreSQL database dump complete',
      '--',
      '',
    ].join('\n');
    expect(count(old).tables).toEqual([{ schema: 'public', name: 'new\nline', rows: 2 }]);
  });

  it('refuses a table-data COPY it cannot read, rather than guess', () => {
    const garbled = PLAIN.replace('COPY public.empty (x) FROM stdin;', 'COPY public..empty (x) FROM stdin;');
    expect(() => count(garbled)).toThrow(/COPY statement this check cannot read: COPY public\.\.empty/);
  });
});

describe('copiedTable', () => {
  it.each([
    ['COPY public.bookings (id) FROM stdin;', { schema: 'public', name: 'bookings' }],
    ['COPY "My Schema"."a.b" (id) FROM stdin;', { schema: 'My Schema', name: 'a.b' }],
    ['COPY public."say ""hi""" (id) FROM stdin;', { schema: 'public', name: 'say "hi"' }],
    ['COPY public.nocols  FROM stdin;', { schema: 'public', name: 'nocols' }],
  ])('%s', (statement, table) => {
    expect(copiedTable(statement)).toEqual(table);
  });

  it.each([
    'COPY bookings (id) FROM stdin;',
    'COPY a.b.c (id) FROM stdin;',
    'COPY public."open (id) FROM stdin;',
  ])('names no table in %s', (statement) => {
    expect(copiedTable(statement)).toBeUndefined();
  });
});

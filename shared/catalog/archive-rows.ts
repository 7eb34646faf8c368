import type { TableName } from '../core/identifiers.ts';

/**
 * The rows a pg_dump plain-format archive holds, per table, counted as it
 * streams past, so the host never reads production a second time to count
 * them. Rows are in COPY blocks: one text line per row up to a line `\.` (a
 * row's own newlines are escaped as `\n`, so the count is exact). Each table's
 * block follows a `Type: TABLE DATA` comment and opens with
 * `COPY <schema>.<table> (...) FROM stdin;`. The names are SQL identifiers,
 * double-quoted when they need it; a quoted name may hold dots, quotes, even
 * newlines, so the statement can span lines.
 *
 * Memory stays flat: a data line is never held, only its length and first bytes.
 */

const TABLE_DATA = /^-- Data for Name: .*; Type: TABLE DATA; /;
/** Before 15.14 a name's newline split the comment: its tail is a line of its own. */
const DATA_COMMENT = '-- Data for Name: ';
const TABLE_DATA_TAIL = /; Type: TABLE DATA; Schema: /;

/** A table and the rows its COPY block holds. */
export interface TableRows extends TableName {
  rows: number;
}

export interface ArchiveRows {
  /** Every table whose rows the archive holds, in the archive's order; an empty table counts 0. */
  tables: TableRows[];
}

/** Parses `COPY <qualified name> ...`: two identifiers, each bare or double-quoted with `""` for a quote. */
export function copiedTable(statement: string): TableName | undefined {
  const parts: string[] = [];
  let i = 'COPY '.length;
  for (;;) {
    let part = '';
    if (statement[i] === '"') {
      for (i += 1; i < statement.length; i += 1) {
        if (statement[i] !== '"') part += statement[i];
        else if (statement[i + 1] === '"') {
          part += '"';
          i += 1;
        } else break;
      }
      if (statement[i] !== '"') return undefined;
      i += 1;
    } else {
      const bare = /^[^\s."(]+/.exec(statement.slice(i))?.[0] ?? '';
      if (!bare) return undefined;
      part = bare;
      i += bare.length;
    }
    parts.push(part);
    if (statement[i] !== '.') break;
    i += 1;
  }
  const [schema, name] = parts;
  if (parts.length !== 2 || schema === undefined || name === undefined || statement[i] !== ' ')
    return undefined;
  return { schema, name };
}

/** Lines outside data are kept up to this many bytes: a COPY statement of 1,600 quoted columns fits. */
const KEEP = 1 << 20;
const NEWLINE = 0x0a;

/** The double quotes in a line of a COPY statement: an odd count leaves a quoted name open. */
function quotesIn(text: string): number {
  let quotes = 0;
  for (let q = text.indexOf('"'); q !== -1; q = text.indexOf('"', q + 1)) quotes += 1;
  return quotes;
}

export class RowCounter {
  /** By schema and name as one JSON key (`["public","a.b"]`), which no two tables share. */
  private readonly rows = new Map<string, TableRows>();
  /** The table whose COPY block is open, and its rows so far. */
  private table: TableRows | undefined;
  private copying = false;
  private blockRows = 0;
  /** The data line being read: its length and its first two bytes (`\.` ends the block). */
  private dataLength = 0;
  private readonly dataHead = Buffer.alloc(2);
  /** The line being read outside data, when it spans chunks: its bytes (up to KEEP). */
  private parts: Buffer[] = [];
  private kept = 0;
  /** A TABLE DATA comment was read, its COPY is next; a COPY statement whose quoted name spans lines. */
  private expectingCopy = false;
  /** Inside a `-- Data for Name:` comment whose name went on to the next line. */
  private dataComment = false;
  private statement: { text: string; quotes: number } | undefined;

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) at = this.copying ? this.data(chunk, at) : this.sql(chunk, at);
  }

  /** What the archive held; a block cut short is not counted (see `unended`). */
  end(): ArchiveRows {
    return { tables: [...this.rows.values()] };
  }

  /**
   * The table whose data block the archive ends in, if it does: a dump cut
   * short there, even when its last row reads like pg_dump's closing line.
   */
  unended(): TableName | undefined {
    if (!this.copying || !this.table) return undefined;
    return { schema: this.table.schema, name: this.table.name };
  }

  private data(chunk: Buffer, from: number): number {
    let at = from;
    while (at < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, at);
      const end = newline === -1 ? chunk.length : newline;
      for (let i = this.dataLength; i < 2 && at + i - this.dataLength < end; i += 1) {
        this.dataHead[i] = chunk[at + i - this.dataLength] as number;
      }
      this.dataLength += end - at;
      if (newline === -1) return chunk.length;
      at = newline + 1;
      const terminator = this.dataLength === 2 && this.dataHead[0] === 0x5c && this.dataHead[1] === 0x2e;
      this.dataLength = 0;
      if (terminator) {
        this.closeBlock();
        return at;
      }
      this.blockRows += 1;
    }
    return at;
  }

  private sql(chunk: Buffer, from: number): number {
    let at = from;
    while (at < chunk.length && !this.copying) {
      const newline = chunk.indexOf(NEWLINE, at);
      const end = newline === -1 ? chunk.length : newline;
      const kept = Math.min(end, at + KEEP - this.kept);
      let text: string;
      if (newline !== -1 && this.kept === 0) {
        // The whole line is in this chunk, as nearly every line is: decoded where it lies.
        text = chunk.toString('utf8', at, kept);
      } else {
        if (kept > at) {
          this.parts.push(chunk.subarray(at, kept));
          this.kept += kept - at;
        }
        if (newline === -1) return chunk.length;
        text = Buffer.concat(this.parts, this.kept).toString('utf8');
        this.parts = [];
        this.kept = 0;
      }
      at = newline + 1;
      this.sqlLine(text);
    }
    return at;
  }

  private sqlLine(text: string): void {
    if (this.statement) {
      this.statement = {
        text: `${this.statement.text}\n${text}`,
        quotes: this.statement.quotes + quotesIn(text),
      };
    } else if (this.expectingCopy && text.startsWith('COPY ')) {
      this.statement = { text, quotes: quotesIn(text) };
    } else {
      const split = this.dataComment && TABLE_DATA_TAIL.test(text);
      this.dataComment =
        !TABLE_DATA.test(text) &&
        (text.startsWith(DATA_COMMENT) || (this.dataComment && !split && !text.startsWith('--')));
      if (TABLE_DATA.test(text) || split) this.expectingCopy = true;
      else if (text !== '' && !text.startsWith('--')) this.expectingCopy = false;
      return;
    }
    // An odd number of quotes: the statement goes on, inside a quoted name, on the next line.
    if (this.statement.quotes % 2 === 1) return;
    const { text: statement } = this.statement;
    this.statement = undefined;
    this.expectingCopy = false;
    const table = copiedTable(statement);
    if (!table || !statement.endsWith(' FROM stdin;')) {
      throw new Error(
        `a table's data opens with a COPY statement this check cannot read: ${statement.slice(0, 200)}`,
      );
    }
    this.openBlock(table);
  }

  private openBlock({ schema, name }: TableName): void {
    const key = JSON.stringify([schema, name]);
    let table = this.rows.get(key);
    if (!table) {
      table = { schema, name, rows: 0 };
      this.rows.set(key, table);
    }
    this.table = table;
    this.copying = true;
    this.blockRows = 0;
    this.dataLength = 0;
  }

  private closeBlock(): void {
    (this.table as TableRows).rows += this.blockRows;
    this.copying = false;
  }
}

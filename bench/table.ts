/** The benchmarks' tables and the cells they share. */

/** Each column as wide as its widest cell. */
const columnWidths = (header: string[], rows: string[][]) =>
  header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));

/** The first column left-aligned (names), the others right-aligned (numbers). */
const align = (cells: string[], widths: number[]) =>
  cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)));

/** A plain-text table. */
export function table(header: string[], rows: string[][]): string {
  const widths = columnWidths(header, rows);
  const line = (cells: string[]) => align(cells, widths).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A Markdown table, padded so that it also reads in a terminal. */
export function markdownTable(header: string[], body: string[][]): string {
  // A pipe inside a cell (a shell pipeline) would end the cell.
  const rows = body.map((r) => r.map((c) => c.replaceAll('|', '\\|')));
  const widths = columnWidths(header, rows);
  const line = (cells: string[]) => `| ${align(cells, widths).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

export const MiB = 1024 * 1024;

/** Bytes in MiB, the number alone. */
export const mib = (bytes: number, digits = 1) => (bytes / MiB).toFixed(digits);

/** `1.23×`; n/a where a side is missing. */
export const ratio = (x: number, digits = 2) => (Number.isFinite(x) ? `${x.toFixed(digits)}×` : 'n/a');

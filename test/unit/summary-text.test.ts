import { describe, expect, it } from 'vitest';
import { counted } from '../../shared/core/words.ts';
import { CUT, tail } from '../../shared/host/commands.ts';
import { describeRowSources, notRestoredWarnings } from '../../shared/restore/row-sources.ts';

describe('counts in summaries', () => {
  it('say 1 row, 0 rows, 2 entries', () => {
    expect(counted(1, 'row')).toBe('1 row');
    expect(counted(0, 'row')).toBe('0 rows');
    expect(counted(2, 'entry', 'entries')).toBe('2 entries');
    expect(counted(1, 'entry', 'entries')).toBe('1 entry');
  });

  it("a restore's rows per table", () => {
    const lines = describeRowSources(
      {
        listed: [
          { table: 'public.one', from: 'backup', rows: 1 },
          { table: 'public.two', from: 'backup', rows: 2 },
        ],
        unlisted: { tables: 1, rows: 1 },
      },
      undefined,
      'kb_replaced',
    );
    expect(lines).toEqual([
      'public.one: 1 row from the backup',
      'public.two: 2 rows from the backup',
      '1 more table: 1 row from the backup',
    ]);
  });
});

describe("the replaced database's tables the restore lacks", () => {
  it('are named as the swap listed them, the rest counted; none, no warning', () => {
    const facts = {
      onlyInReplaced: [['public', 'a', 1] as [string, string, number]],
      onlyInReplacedCount: 3,
      onlyInReplacedRows: 7,
    };
    expect(notRestoredWarnings(facts, 'kb_replaced_x', 'safety/key')).toEqual([
      'Not in the restore, though the replaced database had them (3 tables, 7 rows): public.a (1 row) and 2 more tables. Their rows are only in kb_replaced_x and the safety dump safety/key; copy them back from there if they are still needed.',
    ]);
    expect(notRestoredWarnings({ ...facts, onlyInReplaced: [], onlyInReplacedCount: 0 }, 'x', 'y')).toEqual(
      [],
    );
    expect(notRestoredWarnings(undefined, 'x', 'y')).toEqual([]);
  });
});

describe("a command's output tail", () => {
  it('is kept whole when it fits', () => {
    expect(tail('database-backup: one\ndatabase-backup: two\n')).toBe(
      'database-backup: one\ndatabase-backup: two',
    );
  });

  it('cut to fit, starts at a line, after a line saying it was cut', () => {
    const output = Array.from({ length: 10 }, (_, i) => `database-backup: line ${i}`).join('\n');
    const cut = tail(output, 20, 100);
    expect(cut.length).toBeLessThanOrEqual(100);
    const [mark, ...kept] = cut.split('\n');
    expect(mark).toBe(CUT);
    expect(kept.length).toBeGreaterThan(0);
    for (const line of kept) expect(line).toMatch(/^database-backup: line \d$/);
    expect(kept.at(-1)).toBe('database-backup: line 9');
  });

  it('keeps the end of one line too long to fit, marked as cut', () => {
    const cut = tail(`start ${'x'.repeat(300)} end`, 20, 100);
    expect(cut.length).toBeLessThanOrEqual(100);
    expect(cut.startsWith(`${CUT}\n`)).toBe(true);
    expect(cut.endsWith(' end')).toBe(true);
  });
});

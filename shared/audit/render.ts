import type { AuditReport, Gap, Slot } from './report.ts';

/**
 * The audit report for people: Markdown, and one self-contained HTML page
 * (inline CSS and SVG, no script, no external resource) that a browser opens
 * from the bucket or a file. Both say the same as the JSON, which stays the
 * record.
 */

const where = (x: { target: string; database: string | null }) =>
  `${x.target}${x.database ? `/${x.database}` : ''}`;
const hours = (m: number | null) => (m === null ? 'none' : `${(m / 60).toFixed(1)} h`);
const usd = (n: number) => `$${n.toFixed(2)}`;
const duration = (s: number | null) =>
  s === null
    ? 'not recorded'
    : s >= 3600
      ? `${(s / 3600).toFixed(1)} h`
      : s >= 60
        ? `${(s / 60).toFixed(1)} min`
        : `${s} s`;

/** A table: a header row and rows of cells, each cell text (escaped by the renderer). */
interface Table {
  head: string[];
  rows: string[][];
}

interface Section {
  title: string;
  lines: string[];
  table?: Table;
}

/** Per backup series: from when its slots count, slots due, ran, verified, restore-tested. */
function slotTable(report: AuditReport): Table {
  const key = (s: { kind: string; engine: string; target: string; database: string | null }) =>
    `${s.kind}\u0000${s.engine}\u0000${where(s)}`;
  const groups = new Map<string, Slot[]>();
  for (const s of report.slots) groups.set(key(s), [...(groups.get(key(s)) ?? []), s]);
  return {
    head: ['kind', 'engine', 'target', 'counted from', 'due', 'ran', 'verified', 'restore-tested'],
    rows: report.slotsCountedFrom.map((series) => {
      const g = groups.get(key(series)) ?? [];
      const tested = g.filter((s) => s.restoreTested !== null);
      return [
        series.kind,
        series.engine,
        where(series),
        series.from ??
          (series.firstSeen
            ? `first seen ${series.firstSeen}: no slot due since`
            : 'never ran: no slot counted'),
        String(g.length),
        String(g.filter((s) => s.status !== 'missed').length),
        String(g.filter((s) => s.verified).length),
        tested.length === 0 ? 'n/a' : String(tested.filter((s) => s.restoreTested).length),
      ];
    }),
  };
}

const gapRow = (g: Gap) => [g.type, g.at, `${g.kind} ${g.engine}`, where(g), g.execution ?? '—', g.detail];

/** The report's sections, in reading order: what Markdown and HTML both show. */
function sections(report: AuditReport): Section[] {
  const s = report.summary;
  return [
    {
      title: 'Summary',
      lines: [
        `From ${report.from} to ${report.until} (generated ${report.generatedAt}).`,
        `${s.slots} scheduled slots: ${s.ran} ran, ${s.verified} verified, ${s.restoreTests.passed} of ${s.restoreTests.expected} restore-tested.`,
        s.gaps === 0
          ? 'No gaps.'
          : `${s.gaps} gaps: ${Object.entries(s.gapsByType)
              .map(([type, n]) => `${n} ${type}`)
              .join(', ')}.`,
        `${s.failures} failed executions (${s.unresolvedFailures} not followed by a success); ${s.operatorRestores} restores run by an operator; ${s.dryRuns} dry runs and ${s.refusedInputs} refused inputs, which changed nothing; ${s.executions} executions in all.`,
        `Estimated cost ${usd(s.costUsd)}${s.budgetUsd === null ? ' (no budget set)' : ` against a budget of ${usd(s.budgetUsd)}${s.costUsd > s.budgetUsd ? ': OVER BUDGET' : ''}`}.`,
        ...(report.unreadable.length > 0
          ? [
              `${report.unreadable.length} objects could not be read and are counted nowhere: ${report.unreadable.join(', ')}.`,
            ]
          : []),
      ],
    },
    {
      title: 'Gaps',
      lines:
        report.gaps.length === 0
          ? ['None: every slot ran, was verified and, where it has one, restore-tested.']
          : [],
      ...(report.gaps.length > 0
        ? {
            table: {
              head: ['gap', 'due', 'kind', 'target', 'execution', 'detail'],
              rows: report.gaps.map(gapRow),
            },
          }
        : {}),
    },
    {
      title: 'Scheduled slots',
      lines: [
        "Each series' slots are counted from its first execution or backup (the slot due at or just before its first run of that kind; after a backup another run made, such as the WAL's first pgBackRest backup, the next slot; the month's start when it ran before): slots before it are not missed. A series that never ran is flagged in the RPO table.",
      ],
      table: slotTable(report),
    },
    {
      title: 'Measured RPO (backup age at its worst)',
      lines: [],
      table: {
        head: ['series', 'backups', 'worst age', 'at', 'limit', ''],
        rows: report.rpo.map((r) => [
          `${where(r)} ${r.kind} ${r.engine}`,
          String(r.backups),
          hours(r.worstAgeMinutes),
          r.worstAt ?? '—',
          hours(r.limitMinutes),
          `${r.overLimit ? 'OVER LIMIT' : 'ok'}${r.beforeFirstBackup ? `: no backup from ${r.countedFrom}` : ''}`,
        ]),
      },
    },
    {
      title: 'Recovery times',
      lines: report.recovery.length === 0 ? ['No restore test, drill or restore ran.'] : [],
      ...(report.recovery.length > 0
        ? {
            table: {
              head: ['what', 'subject', 'at', 'took', 'outcome'],
              rows: report.recovery.map((r) => [r.what, r.subject, r.at, duration(r.seconds), r.outcome]),
            },
          }
        : {}),
    },
    {
      title: 'Failures and what followed',
      lines: report.failures.length === 0 ? ['No execution failed.'] : [],
      ...(report.failures.length > 0
        ? {
            table: {
              head: ['execution', 'kind', 'status', 'started', 'error', 'followed by'],
              rows: report.failures.map((f) => [
                `${f.workflow} ${f.execution}`,
                f.kind ?? '—',
                f.status,
                f.startedAt,
                `${f.error ?? ''}${f.cause ? `: ${f.cause}` : ''}`,
                f.resolvedBy ? `success ${f.resolvedBy.execution} at ${f.resolvedBy.at}` : 'NOTHING YET',
              ]),
            },
          }
        : {}),
    },
    {
      title: 'Restores run by an operator',
      lines:
        report.operatorRestores.length === 0
          ? ['None.']
          : ["Who: the execution's name; the caller's identity is in CloudTrail's StartExecution record."],
      ...(report.operatorRestores.length > 0
        ? {
            table: {
              head: ['who', 'workflow', 'started', 'took', 'input', 'outcome'],
              rows: report.operatorRestores.map((r) => [
                r.who,
                r.workflow,
                r.startedAt,
                duration(r.seconds),
                `${JSON.stringify(r.input)}${r.inputRedacted ? ' (values that looked like secrets replaced by ***)' : ''}`,
                `${r.status}${r.error ? ` ${r.error}` : ''}`,
              ]),
            },
          }
        : {}),
    },
    {
      title: 'Dry runs and refused inputs (nothing changed)',
      lines:
        report.changedNothing.length === 0
          ? ['None.']
          : report.changedNothing.map(
              (l) =>
                `${l.workflow}: ${l.dryRuns} dry run${l.dryRuns === 1 ? '' : 's'}, ${l.refused} input${l.refused === 1 ? '' : 's'} refused before anything was sent to the host.`,
            ),
    },
    {
      title: 'Cost estimate',
      lines: [
        `Unit prices: ${report.cost.region}, on-demand, read ${report.cost.pricesReadOn} from the pages named; free tiers left out.`,
        `Not counted: ${report.cost.notCounted.join('; ')}.`,
      ],
      table: {
        head: ['item', 'quantity', 'unit', 'unit price', 'cost', 'source'],
        rows: [
          ...report.cost.lines.map((l) => [
            l.item,
            String(l.quantity),
            l.unit,
            `$${l.unitUsd}`,
            usd(l.usd),
            l.source,
          ]),
          [
            'total',
            '',
            '',
            '',
            usd(report.cost.totalUsd),
            report.cost.budgetUsd === null ? 'no budget' : `budget ${usd(report.cost.budgetUsd)}`,
          ],
        ],
      },
    },
  ];
}

const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

export function renderMarkdown(report: AuditReport): string {
  const out = [`# kennel-backup audit report ${report.month}`, ''];
  for (const section of sections(report)) {
    out.push(`## ${section.title}`, '');
    for (const line of section.lines) out.push(`- ${line}`);
    if (section.lines.length > 0) out.push('');
    if (section.table) {
      out.push(`| ${section.table.head.map(cell).join(' | ')} |`);
      out.push(`|${section.table.head.map(() => '---').join('|')}|`);
      for (const row of section.table.rows) out.push(`| ${row.map(cell).join(' | ')} |`);
      out.push('');
    }
  }
  return `${out.join('\n')}\n`;
}

const html = (text: string) =>
  text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

/**
 * The month's chart as inline SVG: above, each backup series' age (hours) every
 * hour; below, each backup execution's duration (minutes) at its start, a
 * failed one in red. Days along the bottom.
 */
export function renderChart(report: AuditReport): string {
  const width = 960;
  const left = 56;
  const plot = width - left - 16;
  const age = { top: 30, height: 200 };
  const bars = { top: 290, height: 120 };
  const from = Date.parse(report.from);
  const span = Math.max(1, Date.parse(report.until) - from);
  const x = (ms: number) => left + ((ms - from) / span) * plot;
  const maxAge = Math.max(
    1,
    ...report.chart.ages.flatMap((s) => s.hours.filter((h): h is number => h !== null)),
  );
  const maxMinutes = Math.max(1, ...report.chart.durations.map((d) => d.minutes));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" id="audit-chart" viewBox="0 0 ${width} 450" width="${width}" height="450" role="img" aria-label="Backup age and backup duration over ${html(report.month)}">`,
    `<text x="${left}" y="18" class="title">Backup age (hours; max ${maxAge.toFixed(1)})</text>`,
    `<line x1="${left}" y1="${age.top + age.height}" x2="${width - 16}" y2="${age.top + age.height}" stroke="#888"/>`,
    `<text x="${left}" y="${bars.top - 12}" class="title">Backup duration (minutes; max ${maxMinutes.toFixed(1)})</text>`,
    `<line x1="${left}" y1="${bars.top + bars.height}" x2="${width - 16}" y2="${bars.top + bars.height}" stroke="#888"/>`,
  ];
  for (let day = 0; from + day * 86_400_000 <= Date.parse(report.until); day += 5) {
    const dx = x(from + day * 86_400_000);
    parts.push(`<text x="${dx.toFixed(1)}" y="440" class="tick">${day + 1}</text>`);
  }
  report.chart.ages.forEach((series, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = series.hours.flatMap((h, hour) =>
      h === null
        ? []
        : [
            `${x(from + hour * 3_600_000).toFixed(1)},${(age.top + age.height - (h / maxAge) * age.height).toFixed(1)}`,
          ],
    );
    if (points.length > 0)
      parts.push(
        `<polyline class="age" data-series="${html(series.label)}" fill="none" stroke="${colour}" stroke-width="1.5" points="${points.join(' ')}"/>`,
      );
    parts.push(
      `<text x="${width - 300}" y="${age.top + 12 + i * 14}" class="legend" style="fill:${colour}">${html(series.label)}</text>`,
    );
  });
  for (const d of report.chart.durations) {
    const h = Math.max(1, (d.minutes / maxMinutes) * bars.height);
    parts.push(
      `<rect class="duration" data-kind="${html(d.kind)}" x="${x(Date.parse(d.at)).toFixed(1)}" y="${(bars.top + bars.height - h).toFixed(1)}" width="3" height="${h.toFixed(1)}" fill="${d.status === 'SUCCEEDED' ? '#1f77b4' : '#d62728'}"><title>${html(`${d.kind} ${d.at}: ${d.minutes} min, ${d.status}`)}</title></rect>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}

export function renderHtml(report: AuditReport): string {
  const body = sections(report).map((section) => {
    const lines =
      section.lines.length > 0 ? `<ul>${section.lines.map((l) => `<li>${html(l)}</li>`).join('')}</ul>` : '';
    const table = section.table
      ? `<table><thead><tr>${section.table.head.map((h) => `<th>${html(h)}</th>`).join('')}</tr></thead><tbody>${section.table.rows
          .map((r) => `<tr>${r.map((c) => `<td>${html(c)}</td>`).join('')}</tr>`)
          .join('')}</tbody></table>`
      : '';
    const chart = section.title === 'Summary' ? renderChart(report) : '';
    return `<section><h2>${html(section.title)}</h2>${lines}${chart}${table}</section>`;
  });
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kennel-backup audit report ${html(report.month)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg text.title { font-weight: bold; }
</style>
</head>
<body>
<h1>kennel-backup audit report ${html(report.month)}</h1>
${body.join('\n')}
</body>
</html>
`;
}

import { randomInt } from 'node:crypto';
import { DRILL_RESULT, DRILL_STATE } from '../../statemachines/restore-drill.ts';
import { planSchema, restoreTestPlanOf } from '../backup/database-plan.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { drillReportKey, runId as makeRunId, scratchDatabase } from '../catalog/keys.ts';
import type { DatabaseManifest } from '../catalog/manifest.ts';
import type { Config } from '../core/config.ts';
import { selectTargets } from '../core/config.ts';
import {
  causeMessage,
  DrillFailedError,
  failedStatesSchema,
  firstFailure,
  NotFoundError,
} from '../core/errors.ts';
import { sha256Hex, sqlIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { DAY_MS } from '../core/time.ts';

/**
 * Restore drills. Weekly: a random verified full backup of the last 7 days goes
 * through the restore test (the seed and the choice are in the output, so an
 * auditor can check the choice was not made by hand). Monthly (DR): the latest
 * one. Both check that S3 answers, and store a report (JSON and Markdown) in S3.
 */
export const drillInputSchema = z.strictObject({
  /** `random`: among the verified full backups of the last 7 days; `latest`: the newest verified one. */
  pick: z._default(z.enum(['random', 'latest']), 'random'),
  /** Replays a random pick: the same seed over the same candidates picks the same backup. */
  seed: z.optional(z.int().check(z.gte(0), z.lte(2 ** 32 - 1))),
  target: z.optional(targetName),
  database: z.optional(sqlIdentifier),
  /** Read by no check since the row-window chain was retired (the WAL continuity check replaces it). */
  pointInTimeMinutesAgo: z.optional(z.int().check(z.gte(0), z.lte(7 * 24 * 60))),
});

const checkSchema = z.object({ check: z.string(), passed: z.boolean(), detail: z.string() });
export type DrillCheck = z.infer<typeof checkSchema>;

export const drillPlanSchema = z.object({
  runId: z.string(),
  startedAt: z.iso.datetime({ offset: true }),
  pick: z.enum(['random', 'latest']),
  seed: z.nullable(z.int()),
  /** What the pick chose among, oldest first. */
  candidates: z.array(z.object({ key: z.string(), until: z.string() })),
  chosen: z.object({ key: z.string(), until: z.string() }),
  /** The restore test's plan for the chosen backup, with this drill's own scratch database. */
  plan: planSchema,
  sha256: sha256Hex,
  checks: z.array(checkSchema),
});

export type DrillPlan = z.infer<typeof drillPlanSchema>;

/** mulberry32: a small, well-known PRNG; a seed gives the same sequence everywhere. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function planDrill(
  config: Config,
  catalog: Catalog,
  request: unknown,
  now = new Date(),
): Promise<DrillPlan> {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${DRILL_STATE.plan} request`,
  );
  const wanted = parseInput(drillInputSchema, input ?? {}, 'The execution input');
  const [target] = selectTargets(config, wanted.target ?? config.BACKUP_TARGETS[0]?.name);
  if (!target) throw new NotFoundError('No target is configured.');
  const database = wanted.database ?? target.database;
  const id = makeRunId(new Date(startedAt).toISOString(), executionId);

  // Listing the catalog is the S3 check: it throws (and is retried, then alerted) when S3 does not answer.
  const fulls = await catalog.list('full', target.name, database);
  const checks: DrillCheck[] = [
    {
      check: 'S3 reachable',
      passed: true,
      detail: `listed ${fulls.length} full backup manifests of ${database}`,
    },
  ];
  const verified = fulls.filter((m) => m.verification.state === 'verified');
  const candidates =
    wanted.pick === 'latest'
      ? verified.slice(-1)
      : verified.filter((m) => now.getTime() - Date.parse(m.window.until) <= 7 * DAY_MS);
  if (candidates.length === 0) {
    throw new DrillFailedError(
      `There is no verified full backup of ${database} on ${target.name}${wanted.pick === 'random' ? ' from the last 7 days' : ''} to drill with: the daily full backup is not working. Look at the database-backup executions.`,
    );
  }
  const seed = wanted.pick === 'random' ? (wanted.seed ?? randomInt(2 ** 32 - 1)) : null;
  const index = seed === null ? candidates.length - 1 : Math.floor(seededRandom(seed)() * candidates.length);
  const chosen = candidates[index] as DatabaseManifest;

  return {
    runId: id,
    startedAt,
    pick: wanted.pick,
    seed,
    candidates: candidates.map((m) => ({ key: m.archive.key, until: m.window.until })),
    chosen: { key: chosen.archive.key, until: chosen.window.until },
    plan: restoreTestPlanOf(chosen, target, config.BACKUP_BUCKET, scratchDatabase(id)),
    sha256: chosen.archive.sha256,
    checks,
  };
}

/** What the drill's execution holds when ReportDrill runs; built then, so that other bundles do not carry it. */
function drilledSchema() {
  return z.object({
    [DRILL_RESULT.drill]: drillPlanSchema,
    [DRILL_RESULT.restoreTest]: z.optional(z.object({ tables: z.number(), rows: z.number() })),
    [DRILL_RESULT.failed]: z.optional(failedStatesSchema),
  });
}

function markdown(report: { title: string; checks: DrillCheck[]; facts: [string, string][] }): string {
  const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ');
  return [
    `# ${report.title}`,
    '',
    ...report.facts.map(([k, v]) => `- **${k}:** ${cell(v)}`),
    '',
    '| check | result | detail |',
    '|---|---|---|',
    ...report.checks.map(
      (c) => `| ${cell(c.check)} | ${c.passed ? 'passed' : '**FAILED**'} | ${cell(c.detail)} |`,
    ),
    '',
  ].join('\n');
}

/**
 * Writes the drill's report (JSON and Markdown) to S3 whatever the outcome, then
 * fails with every failed check listed, or returns the summary.
 */
export async function reportDrill(catalog: Catalog, state: unknown, now = new Date()) {
  const { drill, restoreTest, failed } = drilledSchema().parse(state);
  const restoreFailure = firstFailure(failed);
  const checks: DrillCheck[] = [
    ...drill.checks,
    restoreFailure
      ? {
          check: 'restore test',
          passed: false,
          detail: `${restoreFailure.state}: ${restoreFailure.Error}: ${causeMessage(restoreFailure.Cause)}`,
        }
      : {
          check: 'restore test',
          passed: restoreTest !== undefined,
          detail: restoreTest
            ? `${drill.chosen.key} restored into a scratch database: ${restoreTest.tables} tables, ${restoreTest.rows} rows, each count equal to the dump's; the scratch database was dropped`
            : 'did not run',
        },
  ];
  const passed = checks.every((c) => c.passed);
  const title = `${drill.pick === 'random' ? 'Weekly restore drill' : 'Monthly DR drill'} ${drill.startedAt.slice(0, 10)}: ${passed ? 'passed' : 'FAILED'}`;
  const facts: [string, string][] = [
    ['run', drill.runId],
    ['backup drilled', `${drill.chosen.key} (data as of ${drill.chosen.until})`],
    [
      'picked',
      drill.pick === 'random'
        ? `at random with seed ${drill.seed} among ${drill.candidates.length} verified full backups of the last 7 days`
        : 'the latest verified full backup',
    ],
    ['finished', now.toISOString()],
  ];
  const json = { title, passed, ...drill, checks, finishedAt: now.toISOString() };
  const keys = {
    json: drillReportKey(drill.startedAt, drill.runId, 'json'),
    markdown: drillReportKey(drill.startedAt, drill.runId, 'md'),
  };
  await catalog.writeObject(keys.json, `${JSON.stringify(json, null, 2)}\n`, 'application/json');
  await catalog.writeObject(
    keys.markdown,
    markdown({ title, checks, facts }),
    'text/markdown; charset=utf-8',
  );
  const lines = checks.map((c) => `${c.passed ? '✓' : '✗'} ${c.check}: ${c.detail}`);
  if (!passed) {
    throw new DrillFailedError(
      `${title}\n${lines.join('\n')}\nReport: s3://${catalog.bucket}/${keys.markdown}`,
    );
  }
  return {
    passed,
    chosen: drill.chosen,
    seed: drill.seed,
    candidates: drill.candidates.length,
    checks,
    report: keys,
    summary: `${title}\n${lines.join('\n')}\nReport: s3://${catalog.bucket}/${keys.markdown}`,
  };
}

import { randomInt } from 'node:crypto';
import { PHYSICAL_RESTORE_TEST_RESULT } from '../../statemachines/physical-restore-test.ts';
import { DRILL_RESULT, DRILL_STATE } from '../../statemachines/restore-drill.ts';
import { planSchema, restoreTestPlanOf } from '../backup/database-plan.ts';
import { physicalRestoreTestOutcomeSchema } from '../backup/physical-restore-test.ts';
import { walPlanSchema, walRun } from '../backup/wal-plan.ts';
import { recordedVersion } from '../catalog/archive-record.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { runId as makeRunId, scratchDatabase } from '../catalog/keys.ts';
import { isUsable } from '../catalog/manifest.ts';
import { keyOf, listPhysicalBackups, usable } from '../catalog/physical.ts';
import type { Config } from '../core/config.ts';
import { selectTargets } from '../core/config.ts';
import {
  caughtErrorSchema,
  causeMessage,
  DrillFailedError,
  failedStatesSchema,
  firstFailure,
  NotFoundError,
} from '../core/errors.ts';
import { pgbackrestLabel, runIdentifier, sha256Hex, sqlIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { DAY_MS, utcDay } from '../core/time.ts';
import { pgbackrestOff } from '../host/pgbackrest-conf.ts';
import { type DrillCheck, drillCheckSchema, storeDrillReport } from './drill-report.ts';

/**
 * Restore drills. Weekly: a random verified backup of the last 7 days, of either
 * engine, goes through its restore test: a logical full dump restored into a
 * scratch database, or a pgBackRest backup set (one whose verification and own
 * restore test passed) restored into a scratch instance on the host
 * (`pgbackrest restore --set`). The seed and the choice are in the output, so an
 * auditor can check the choice was not made by hand. Monthly (DR): the latest
 * logical full. Both check that S3 answers and that the target's WAL has no gap since the
 * oldest kept pgBackRest backup (the WAL run of wal-runs.ts: what a point-in-time
 * recovery replays), and store a report (JSON and Markdown) in S3.
 */
export const drillInputSchema = z.strictObject({
  /** `random`: among the verified backups of the last 7 days; `latest`: the newest verified one. */
  pick: z._default(z.enum(['random', 'latest']), 'random'),
  /** Only this engine's backups; left out, a random pick takes either and `latest` the logical. */
  engine: z.optional(z.enum(['logical', 'physical'])),
  /** Replays a random pick: the same seed over the same candidates picks the same backup. */
  seed: z.optional(z.int().check(z.gte(0), z.lte(2 ** 32 - 1))),
  target: z.optional(targetName),
  database: z.optional(sqlIdentifier),
});

/**
 * A backup the drill may pick: a logical full's archive key, or a pgBackRest
 * record's key with its set's label; `until` is when its data is from.
 */
const candidateSchema = z.object({
  engine: z.enum(['logical', 'physical']),
  key: z.string(),
  until: z.string(),
  label: z.optional(pgbackrestLabel),
});

export type DrillCandidate = z.infer<typeof candidateSchema>;

export const drillPlanSchema = z.object({
  runId: z.string(),
  startedAt: z.iso.datetime({ offset: true }),
  pick: z.enum(['random', 'latest']),
  seed: z.nullable(z.int()),
  /** What the pick chose among, oldest first. */
  candidates: z.array(candidateSchema),
  chosen: candidateSchema,
  /** A logical pick: the restore test's plan, with this drill's own scratch database, and the archive's sha256. */
  plan: z.optional(planSchema),
  sha256: z.optional(sha256Hex),
  /** A physical pick: the run the restore test reports under (the drill's), and the set. */
  physical: z.optional(
    z.object({
      plan: z.object({
        target: targetName,
        runId: runIdentifier,
        startedAt: z.iso.datetime({ offset: true }),
      }),
      set: pgbackrestLabel,
    }),
  ),
  /** The target's WAL run, when it archives with pgBackRest (else a failed check says what to add). */
  wal: z.optional(walPlanSchema),
  checks: z.array(drillCheckSchema),
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
  const engines = wanted.engine
    ? [wanted.engine]
    : wanted.pick === 'random'
      ? ['logical', 'physical']
      : ['logical'];
  const recent = (until: string) => now.getTime() - Date.parse(until) <= 7 * DAY_MS;
  // A full whose restore test failed is picked by nothing implicit: not a drill either.
  const verified = fulls.filter(isUsable);
  const logical: DrillCandidate[] = engines.includes('logical')
    ? verified.map((m) => ({ engine: 'logical', key: m.archive.key, until: m.window.until }))
    : [];
  // A physical backup whose own restore test failed is the base of nothing: not a drill's either.
  const physical: DrillCandidate[] =
    engines.includes('physical') && target.pgbackrest
      ? (await listPhysicalBackups(catalog, target.name, utcDay(now.getTime() - 8 * DAY_MS)))
          .filter((r) => usable(r, true))
          .map((r) => ({ engine: 'physical', key: keyOf(r), until: r.backup.stoppedAt, label: r.label }))
      : [];
  const all = [...logical, ...physical].sort((a, b) => Date.parse(a.until) - Date.parse(b.until));
  const candidates = wanted.pick === 'latest' ? all.slice(-1) : all.filter((c) => recent(c.until));
  if (candidates.length === 0) {
    throw new DrillFailedError(
      `There is no verified ${engines.length === 2 ? 'backup (logical full or pgBackRest backup set)' : engines[0] === 'physical' ? 'pgBackRest backup set whose restore test passed' : 'full backup'} of ${database} on ${target.name}${wanted.pick === 'random' ? ' from the last 7 days' : ''} to drill with: the daily full backup is not working. Look at the database-backup executions.`,
    );
  }
  const seed = wanted.pick === 'random' ? (wanted.seed ?? randomInt(2 ** 32 - 1)) : null;
  const index = seed === null ? candidates.length - 1 : Math.floor(seededRandom(seed)() * candidates.length);
  const chosen = candidates[index] as DrillCandidate;
  const manifest = verified.find((m) => chosen.engine === 'logical' && m.archive.key === chosen.key);
  // A drill restores like any restore: from a manifest that matches the record of its archive's creation.
  if (manifest) await recordedVersion(catalog, manifest);

  if (!target.pgbackrest)
    checks.push({
      check: 'WAL continuity',
      passed: false,
      detail: pgbackrestOff(
        target,
        'its WAL is not archived and no point-in-time recovery is possible: nothing but the daily logical dump protects its data',
      ),
    });
  return {
    runId: id,
    startedAt,
    pick: wanted.pick,
    seed,
    candidates,
    chosen,
    // A logical pick restores its dump into the drill's own scratch database; a
    // physical one its set into a scratch instance, reported under the drill's run.
    ...(manifest
      ? {
          plan: restoreTestPlanOf(manifest, target, config.BACKUP_BUCKET, scratchDatabase(id)),
          sha256: manifest.archive.sha256,
        }
      : { physical: { plan: { target: target.name, runId: id, startedAt }, set: chosen.label ?? '' } }),
    ...(target.pgbackrest ? { wal: walRun(target, executionId, startedAt) } : {}),
    checks,
  };
}

/** What the drill's execution holds when ReportDrill runs; built then, so that other bundles do not carry it. */
function drilledSchema() {
  return z.object({
    [DRILL_RESULT.drill]: drillPlanSchema,
    [DRILL_RESULT.restoreTest]: z.optional(z.object({ tables: z.number(), rows: z.number() })),
    [PHYSICAL_RESTORE_TEST_RESULT.outcome]: z.optional(physicalRestoreTestOutcomeSchema),
    [DRILL_RESULT.continuity]: z.optional(
      z.object({ segments: z.number(), from: z.string(), to: z.string(), backup: z.nullable(z.string()) }),
    ),
    [DRILL_RESULT.walFailed]: z.optional(caughtErrorSchema),
    [DRILL_RESULT.failed]: z.optional(failedStatesSchema),
  });
}

/**
 * Writes the drill's report (JSON and Markdown) to S3 whatever the outcome, then
 * fails with every failed check listed, or returns the summary.
 */
export async function reportDrill(catalog: Catalog, state: unknown, now = new Date()) {
  const parsed = drilledSchema().parse(state);
  const { drill, restoreTest, continuity, walFailed, failed } = parsed;
  const physicalTest = parsed[PHYSICAL_RESTORE_TEST_RESULT.outcome];
  const restoreFailure = firstFailure(failed);
  const checks: DrillCheck[] = [
    ...drill.checks,
    ...(drill.wal
      ? [
          walFailed
            ? {
                check: 'WAL continuity',
                passed: false,
                detail: `${walFailed.Error}: ${causeMessage(walFailed.Cause)}`,
              }
            : {
                check: 'WAL continuity',
                passed: continuity !== undefined,
                detail: continuity
                  ? `every WAL segment from ${continuity.from}${continuity.backup ? ` (the start of the backup ${continuity.backup})` : ''} to ${continuity.to}, just switched, is in the repository: ${continuity.segments} segments`
                  : 'did not run',
              },
        ]
      : []),
    restoreFailure
      ? {
          check: 'restore test',
          passed: false,
          detail: `${restoreFailure.state}: ${restoreFailure.Error}: ${causeMessage(restoreFailure.Cause)}`,
        }
      : drill.chosen.engine === 'physical'
        ? {
            check: 'restore test',
            passed: physicalTest?.state === 'passed',
            detail: physicalTest
              ? `pgBackRest set ${drill.chosen.label} restored into a scratch instance on the host: ${physicalTest.detail} (report ${physicalTest.reportKey})`
              : 'did not run',
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
  const title = `${drill.pick === 'random' ? 'Weekly restore drill' : 'Restore drill of the latest backup'} ${drill.startedAt.slice(0, 10)}: ${passed ? 'passed' : 'FAILED'}`;
  const facts: [string, string][] = [
    ['run', drill.runId],
    [
      'backup drilled',
      drill.chosen.engine === 'physical'
        ? `pgBackRest backup set ${drill.chosen.label} (record ${drill.chosen.key}, data as of ${drill.chosen.until})`
        : `${drill.chosen.key} (logical full, data as of ${drill.chosen.until})`,
    ],
    [
      'picked',
      drill.pick === 'random'
        ? `at random with seed ${drill.seed} among ${drill.candidates.length} verified backups of the last 7 days (${drill.candidates.filter((c) => c.engine === 'logical').length} logical fulls, ${drill.candidates.filter((c) => c.engine === 'physical').length} pgBackRest sets)`
        : `the latest verified ${drill.chosen.engine === 'physical' ? 'pgBackRest set' : 'full backup'}`,
    ],
    ['finished', now.toISOString()],
  ];
  const json = { title, passed, ...drill, checks, finishedAt: now.toISOString() };
  const keys = await storeDrillReport(catalog, drill, { title, checks, facts }, json);
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

import { randomInt } from 'node:crypto';
import { RECOVERY_DRILL_RESULT, RECOVERY_DRILL_STATE } from '../../statemachines/recovery-drill.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { runId as makeRunId, replacedDatabase, stagingDatabase } from '../catalog/keys.ts';
import { recoveryRecord, writeRecoveryRecord } from '../catalog/recoveries.ts';
import { unloggedPlanNote } from '../catalog/unlogged.ts';
import type { Config } from '../core/config.ts';
import {
  causeMessage,
  DrillFailedError,
  failedStatesSchema,
  firstFailure,
  InvalidInputError,
} from '../core/errors.ts';
import { targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { DAY_MS } from '../core/time.ts';
import { commandStateSchema } from '../host/command-stage.ts';
import { pgbackrestOf } from '../host/pgbackrest-conf.ts';
import { targetOf } from '../restore/database-plan.ts';
import { planRecoveryBasis, pointInTimePlanSchema, recoverableBackups } from '../restore/point-in-time.ts';
import { pointInTimeFactsSchema } from '../restore/point-in-time-report.ts';
import { seededRandom } from './drill.ts';
import { type DrillCheck, storeDrillReport } from './drill-report.ts';

/**
 * The monthly DR drill (statemachines/recovery-drill.ts): the target's cluster
 * recovered to a random second of the last 24 hours in a scratch cluster on the
 * host (host/point-in-time-restore.sh, scope scratch), checked and removed. The
 * second is drawn with a seed that the output records (`{"seed": N}` draws the
 * same seconds again), among those the point-in-time planner accepts; the
 * measured rate is recorded as the recovery's dry runs read it.
 */

export const recoveryDrillInputSchema = z.strictObject({
  target: z.optional(targetName),
  /** Replays a drill's draws: the same seed over the same window draws the same seconds. */
  seed: z.optional(z.int().check(z.gte(0), z.lte(2 ** 32 - 1))),
});

const SECOND_MS = 1000;
/** How far back the drill reaches: the issue's "last 24 h". */
const WINDOW_MS = DAY_MS;
/**
 * The newest second drawn is this far back: a second in the past, whose WAL the
 * host archives before it restores (it commits and switches the segment first,
 * and that commit ends the recovery at the target).
 */
const MARGIN_MS = 10 * SECOND_MS;
/** Seconds drawn before the drill gives up: a refusal is a WAL gap, which fails the drill anyway. */
const MAX_DRAWS = 8;

const iso = z.iso.datetime({ offset: true });

export const recoveryDrillPlanSchema = z.object({
  target: targetName,
  runId: z.string(),
  startedAt: iso,
  seed: z.int(),
  /** The seconds drawn from: the last 24 h, or from the oldest recoverable point when that is younger. */
  window: z.object({ from: iso, to: iso, note: z.string() }),
  /** Seconds drawn before the one recovered, each with the planner's refusal (a WAL gap). */
  refused: z.array(z.object({ at: iso, reason: z.string() })),
  /** The recovery the host runs: the planner's plan for the drawn second, scope scratch. */
  recovery: pointInTimePlanSchema,
});

export type RecoveryDrillPlan = z.infer<typeof recoveryDrillPlanSchema>;

const whole = (ms: number) => Math.floor(ms / SECOND_MS) * SECOND_MS;
const hours = (ms: number) => `${Math.floor(ms / 3_600_000)} h ${Math.floor((ms % 3_600_000) / 60_000)} min`;

/**
 * Plans the drill: the window, the drawn second and the point-in-time planner's
 * plan for it. Throws DrillFailedError when no second of the window is
 * recoverable (none yet, or every draw refused), NotFoundError when no backup
 * passed verification and its restore test, ConfigError for a target without
 * pgBackRest settings.
 */
export async function planRecoveryDrill(
  config: Config,
  catalog: Catalog,
  request: unknown,
  now = new Date(),
): Promise<RecoveryDrillPlan> {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${RECOVERY_DRILL_STATE.plan} request`,
  );
  const wanted = parseInput(recoveryDrillInputSchema, input ?? {}, 'The execution input');
  const target = targetOf(config, wanted.target);
  pgbackrestOf(target);
  const id = makeRunId(new Date(startedAt).toISOString(), executionId);

  const { oldestRecoverable } = await recoverableBackups(catalog, target.name);
  const to = whole(now.getTime() - MARGIN_MS);
  const dayAgo = whole(now.getTime() - WINDOW_MS) + SECOND_MS;
  const from = Math.max(dayAgo, Date.parse(oldestRecoverable));
  if (from > to)
    throw new DrillFailedError(
      `No second of the last 24 h of ${target.name} is recoverable yet: the oldest backup that passed verification and its restore test recovers from ${oldestRecoverable}, and the drill draws up to ${new Date(to).toISOString()}. Start the drill again later, or take a full backup now (database-backup with {"kind": "full"}).`,
    );
  const note =
    from > dayAgo
      ? `the last ${hours(to - from)} only, not 24 h: the oldest backup that passed verification and its restore test recovers from ${oldestRecoverable}`
      : 'the last 24 h';

  const seed = wanted.seed ?? randomInt(2 ** 32 - 1);
  const random = seededRandom(seed);
  const refused: RecoveryDrillPlan['refused'] = [];
  for (let draw = 0; draw < MAX_DRAWS; draw += 1) {
    const at = new Date(
      from + Math.floor(random() * ((to - from) / SECOND_MS + 1)) * SECOND_MS,
    ).toISOString();
    try {
      const basis = await planRecoveryBasis(catalog, target.name, at, now);
      return {
        target: target.name,
        runId: id,
        startedAt,
        seed,
        window: { from: new Date(from).toISOString(), to: new Date(to).toISOString(), note },
        refused,
        recovery: {
          target: target.name,
          scope: 'scratch',
          runId: id,
          executionId,
          startedAt,
          dryRun: false,
          // The drill proves the backup bucket's repository, which the backups write.
          source: 'primary',
          targetTime: at,
          database: null,
          targetDatabase: null,
          overProduction: false,
          stagingDatabase: stagingDatabase(id),
          replacedDatabase: replacedDatabase(id),
          safetyDump: null,
          ...basis,
          replaces:
            'nothing: the cluster is recovered in a scratch cluster beside production, checked and removed',
          unlogged: unloggedPlanNote(basis.base, null),
        },
      };
    } catch (error) {
      if (!(error instanceof InvalidInputError)) throw error;
      refused.push({ at, reason: error.message });
    }
  }
  throw new DrillFailedError(
    `None of ${MAX_DRAWS} seconds drawn from ${note} of ${target.name} (seed ${seed}) is recoverable; the first refusal: ${refused[0]?.reason}`,
  );
}

/** What the drill's execution holds when ReportRecoveryDrill runs; built then, so that other bundles do not carry it. */
function drilledSchema() {
  return z.object({
    [RECOVERY_DRILL_RESULT.plan]: recoveryDrillPlanSchema,
    // Sent but failed: the command's state without a result.
    [RECOVERY_DRILL_RESULT.recovery]: z.optional(
      z.extend(commandStateSchema, { result: z.optional(pointInTimeFactsSchema) }),
    ),
    [RECOVERY_DRILL_RESULT.failed]: z.optional(failedStatesSchema),
  });
}

/**
 * Records the measured recovery rate (when the recovery ran), stores the drill's
 * report (JSON and Markdown) whatever the outcome, then throws DrillFailedError
 * listing every check, or returns the summary.
 */
export async function reportRecoveryDrill(catalog: Catalog, state: unknown, now = new Date()) {
  const s = drilledSchema().parse(state);
  const drill = s.plan;
  const { recovery } = drill;
  const facts = s.recovery?.result;
  const failure = firstFailure(s.failed);
  const rate = facts
    ? recoveryRecord({
        target: drill.target,
        source: 'drill',
        runId: drill.runId,
        executionId: recovery.executionId,
        measuredAt: facts.finishedAt,
        set: facts.set,
        backupBytes: facts.backupBytes,
        restoreSeconds: facts.seconds.restore,
        recoverySeconds: facts.seconds.recovery,
      })
    : undefined;
  const rateKey = rate ? await writeRecoveryRecord(catalog, rate) : null;
  const wal = `${recovery.wal.from} to ${recovery.wal.to ?? 'the newest archived'}`;

  const checks: DrillCheck[] = [
    {
      check: 'recoverable window',
      passed: drill.refused.length === 0,
      detail:
        drill.refused.length === 0
          ? `${drill.window.from} to ${drill.window.to} (${drill.window.note}); the first second drawn was recoverable`
          : `${drill.refused.length} seconds drawn were refused by the planner before ${recovery.targetTime}: ${drill.refused.map((r) => `${r.at}: ${r.reason}`).join(' ')}`,
    },
    failure
      ? {
          check: 'point-in-time recovery',
          passed: false,
          detail: `${failure.state}: ${failure.Error}: ${causeMessage(failure.Cause)}`,
        }
      : {
          check: 'point-in-time recovery',
          passed: facts?.stoppedBefore != null,
          detail: facts
            ? `${facts.set} restored in a scratch cluster and recovered to ${recovery.targetTime} with the WAL ${wal}, promoted on timeline ${facts.timeline}; PostgreSQL: ${facts.stoppedBefore ?? 'no "recovery stopping before" line: it did not stop at the target'}`
            : 'did not run',
        },
    ...(facts
      ? [
          {
            check: 'pg_amcheck',
            passed: facts.amcheck === 'passed',
            detail: `every database of the recovered cluster (heap, TOAST, every B-tree against its heap): ${facts.amcheck ?? 'not run'}`,
          },
          {
            check: 'every table readable',
            passed: facts.tables !== undefined,
            detail: `${facts.databases} databases, ${facts.tables} tables, ${facts.rows} rows read and counted`,
          },
        ]
      : []),
  ];
  const passed = checks.every((c) => c.passed);
  const title = `Monthly DR drill ${drill.startedAt.slice(0, 10)}: ${passed ? 'passed' : 'FAILED'}`;
  const measured = rate
    ? `${rate.secondsPerGB} s per GB: restore ${rate.restoreSeconds} s and WAL replay ${rate.recoverySeconds} s for ${(rate.backupBytes / 1e9).toFixed(3)} GB (${rate.backupBytes} bytes); recorded as ${rateKey}`
    : 'not measured: the recovery did not finish';
  const facts_: [string, string][] = [
    ['run', drill.runId],
    ['target second', `${recovery.targetTime} on ${drill.target}`],
    [
      'drawn',
      `at random with seed ${drill.seed} from ${drill.window.from} to ${drill.window.to} (${drill.window.note})`,
    ],
    [
      'base backup',
      `${recovery.base.label} (${recovery.base.kind}, consistent at ${recovery.base.stoppedAt})`,
    ],
    ['WAL replayed', `${wal} (${recovery.wal.segments} segments in the repository from the base)`],
    ['PostgreSQL', facts?.stoppedBefore ?? 'did not report where it stopped'],
    ['recovery rate', measured],
    ['finished', now.toISOString()],
  ];
  const report = { title, checks, facts: facts_ };
  const keys = await storeDrillReport(catalog, drill, report, {
    title,
    passed,
    ...drill,
    result: facts ?? null,
    measured: rate ?? null,
    measuredRateKey: rateKey,
    checks,
    finishedAt: now.toISOString(),
  });
  const lines = checks.map((c) => `${c.passed ? '✓' : '✗'} ${c.check}: ${c.detail}`);
  const summary = `${title}\nRecovery rate: ${measured}\n${lines.join('\n')}\nReport: s3://${catalog.bucket}/${keys.markdown}`;
  if (!passed) throw new DrillFailedError(summary);
  return {
    passed,
    targetTime: recovery.targetTime,
    seed: drill.seed,
    set: recovery.base.label,
    wal: recovery.wal,
    stoppedBefore: facts?.stoppedBefore ?? null,
    secondsPerGB: rate?.secondsPerGB ?? null,
    measuredRateKey: rateKey,
    checks,
    report: keys,
    summary,
  };
}

import { POINT_IN_TIME_RESULT as RESULT } from '../../statemachines/point-in-time-recovery.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { recoveryRecord, writeRecoveryRecord } from '../catalog/recoveries.ts';
import { unloggedFields, unloggedNote, unloggedOf } from '../catalog/unlogged.ts';
import { caughtErrorSchema } from '../core/errors.ts';
import { parseInput } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { commandStateSchema } from '../host/command-stage.ts';
import { POINT_IN_TIME_PLAN_SCOPES } from './database-schemas.ts';
import { pointInTimePlanSchema } from './point-in-time.ts';
import { refreshedViewsFields, refreshedViewsNote, refreshedViewsOf } from './refreshed-views.ts';
import { notRestoredWarnings, swapFactsSchema } from './row-sources.ts';

/** What host/point-in-time-restore.sh reports on its KB-RESULT line. */
export const pointInTimeFactsSchema = z.object({
  scope: z.enum(POINT_IN_TIME_PLAN_SCOPES),
  set: z.string(),
  targetTime: z.nullable(z.string()),
  backupBytes: z.int().check(z.nonnegative()),
  timeline: z.int().check(z.nonnegative()),
  /** PostgreSQL's words: "recovery stopping before commit of transaction N, time T", or null (the end of the WAL). */
  stoppedBefore: z.nullable(z.string()),
  /** PostgreSQL's words: "last completed transaction was at log time T". */
  lastTransactionAt: z.nullable(z.string()),
  database: z.optional(z.string()),
  staging: z.optional(z.string()),
  /** Scope scratch: the databases whose every table was read. */
  databases: z.optional(z.int()),
  tables: z.optional(z.int()),
  rows: z.optional(z.int()),
  amcheck: z.optional(z.literal('passed')),
  swept: z.optional(z.array(z.string())),
  /** The recovered database's (or every database's) unlogged tables and sequences: empty after any recovery. */
  ...unloggedFields,
  /** Scope database: the recovered database's populated materialized views, which the copy refreshed from the recovered tables. */
  ...refreshedViewsFields,
  startedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime(),
  seconds: z.object({
    stop: z.optional(z.number()),
    restore: z.number(),
    recovery: z.number(),
    checks: z.optional(z.number()),
    copy: z.optional(z.number()),
    total: z.number(),
  }),
});

export type PointInTimeFacts = z.infer<typeof pointInTimeFactsSchema>;

/** What the execution holds when ReportPointInTimeRecovery runs; the swap's parts ran for a database only. */
const finishedSchema = z.object({
  [RESULT.plan]: pointInTimePlanSchema,
  [RESULT.restore]: z.extend(commandStateSchema, { result: pointInTimeFactsSchema }),
  [RESULT.stop]: z.optional(commandStateSchema),
  [RESULT.safetyDump]: z.optional(commandStateSchema),
  [RESULT.safetyDumpVerification]: z.optional(z.object({ key: z.string() })),
  [RESULT.swap]: z.optional(z.extend(commandStateSchema, { result: z.optional(swapFactsSchema) })),
  [RESULT.start]: z.optional(commandStateSchema),
  [RESULT.pruneFailed]: z.optional(caughtErrorSchema),
  [RESULT.fullBackup]: z.optional(z.object({ ExecutionArn: z.string() })),
  [RESULT.fullBackupFailed]: z.optional(caughtErrorSchema),
});

const secondsBetween = (from: string, to: string | undefined) =>
  to === undefined ? null : Math.round((Date.parse(to) - Date.parse(from)) / 100) / 10;

/**
 * The record of a finished recovery, which is the execution's output, and the
 * measured rate written to the catalog (catalog/recoveries/<target>/…), which the
 * next dry run's expected duration reads.
 */
export async function reportPointInTimeRecovery(catalog: Catalog, state: unknown, finishedAt: string) {
  const s = parseInput(finishedSchema, state, 'The ReportPointInTimeRecovery state');
  const { plan } = s;
  const facts = s.restore.result;
  const rateKey = await writeRecoveryRecord(
    catalog,
    recoveryRecord({
      target: plan.target,
      source: 'point-in-time-recovery',
      runId: plan.runId,
      executionId: plan.executionId,
      measuredAt: facts.finishedAt,
      set: facts.set,
      backupBytes: facts.backupBytes,
      restoreSeconds: facts.seconds.restore,
      recoverySeconds: facts.seconds.recovery,
    }),
  );
  const stages = [
    ...(facts.seconds.stop === undefined ? [] : [{ stage: 'stop PostgreSQL', seconds: facts.seconds.stop }]),
    { stage: 'restore the backup set', seconds: facts.seconds.restore },
    { stage: 'replay the WAL and promote', seconds: facts.seconds.recovery },
    ...(facts.seconds.checks === undefined
      ? []
      : [{ stage: 'amcheck and counts', seconds: facts.seconds.checks }]),
    ...(facts.seconds.copy === undefined
      ? []
      : [{ stage: 'copy into staging', seconds: facts.seconds.copy }]),
    ...(s.swap
      ? [{ stage: 'swap into place', seconds: secondsBetween(s.swap.sentAt, s.swap.finishedAt) }]
      : []),
  ];
  const unlogged = unloggedOf(facts);
  const emptied = unloggedNote(unlogged);
  const refreshedViews = refreshedViewsOf(facts);
  const refreshed = refreshedViewsNote(refreshedViews);
  const warnings = [
    ...(emptied ? [emptied] : []),
    ...notRestoredWarnings(s.swap?.result, plan.replacedDatabase, plan.safetyDump?.archiveKey),
    ...(refreshed ? [refreshed] : []),
    ...(s.pruneFailed
      ? [`Pruning old safety dumps failed (${s.pruneFailed.Error}); they stay until a later run prunes them.`]
      : []),
    ...(s.fullBackupFailed
      ? [
          `The full backup after the recovery could not be started (${s.fullBackupFailed.Error}): start database-backup with {"kind": "full"} now; the backups from before the recovery hold the abandoned timeline.`,
        ]
      : []),
  ];
  const checks =
    plan.scope === 'database'
      ? [
          `pgBackRest restored ${facts.set} side by side and PostgreSQL recovered it to ${plan.targetTime} and promoted (timeline ${facts.timeline})`,
          `pg_amcheck of ${plan.database} (heap, TOAST, every B-tree against its heap) passed`,
          `${facts.tables} tables, ${facts.rows} rows: the staging database's row counts equal the recovered database's${unlogged.count > 0 ? ` (${unlogged.count} unlogged, empty in both)` : ''}`,
          ...(s.safetyDumpVerification
            ? [`safety dump ${s.safetyDumpVerification.key} verified: complete, size and sha256 match`]
            : []),
        ]
      : [
          `pgBackRest restored ${facts.set} over the data directory (--delta) and PostgreSQL recovered it to ${plan.targetTime} and promoted (timeline ${facts.timeline})`,
        ];
  const totalSeconds = secondsBetween(plan.startedAt, finishedAt);
  const applicationDownSeconds = s.stop && s.start ? secondsBetween(s.stop.sentAt, s.start.finishedAt) : null;
  const what =
    plan.scope === 'cluster'
      ? `the whole cluster of ${plan.target}`
      : `${plan.targetDatabase} on ${plan.target}`;
  const repository =
    plan.source === 'vault' ? "the vault's copy of the repository" : "the backup bucket's repository";
  const summary = [
    `${what} recovered to ${plan.targetTime} from ${plan.base.label} and the WAL in ${repository} in ${totalSeconds} s`,
    `PostgreSQL: ${facts.stoppedBefore ?? 'recovered to the end of the WAL'}; ${facts.lastTransactionAt ?? 'no transaction replayed'}`,
    ...(plan.overProduction
      ? [
          `The replaced database is kept as ${plan.replacedDatabase}; the safety dump ${plan.safetyDump?.archiveKey} brings it back.`,
          `Application down for ${applicationDownSeconds} s`,
        ]
      : []),
    ...(s.fullBackup ? [`Full backup started: ${s.fullBackup.ExecutionArn}`] : []),
    `Checks passed: ${checks.join('; ')}`,
    `Stages: ${stages.map((t) => `${t.stage} ${t.seconds} s`).join(', ')}`,
    ...warnings.map((w) => `Warning: ${w}`),
  ].join('\n');
  return {
    recovered: plan.scope === 'cluster' ? plan.target : plan.targetDatabase,
    scope: plan.scope,
    targetTime: plan.targetTime,
    source: plan.source,
    set: plan.base.label,
    wal: plan.wal,
    stoppedBefore: facts.stoppedBefore,
    lastTransactionAt: facts.lastTransactionAt,
    replacedDatabase: plan.overProduction ? plan.replacedDatabase : null,
    safetyDump: plan.safetyDump?.archiveKey ?? null,
    fullBackup: s.fullBackup?.ExecutionArn ?? null,
    measuredRateKey: rateKey,
    unlogged,
    refreshedViews,
    checks,
    stages,
    applicationDownSeconds,
    totalSeconds,
    warnings,
    summary,
  };
}

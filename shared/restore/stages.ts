import { RESTORE_RESULT as RESULT } from '../../statemachines/database-restore.ts';
import { FILES_RESTORE_RESULT as FILES_RESULT } from '../../statemachines/files-restore.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { type DatabaseManifest, exactRows } from '../catalog/manifest.ts';
import {
  CleanUpIncompleteError,
  caughtErrorSchema,
  InvalidInputError,
  RestoreMismatchError,
} from '../core/errors.ts';
import { qualifiedName } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { counted } from '../core/words.ts';
import { commandStateSchema } from '../host/command-stage.ts';
import { leftoversOfState } from './alert.ts';
import { dropDatabase, rowProblems, someOf } from './check.ts';
import { cleanupPlanSchema, stoppedExecutionSchema } from './cleanup.ts';
import { type RestorePlan, restorePlanSchema } from './database-schemas.ts';
import { filesRestorePlanSchema } from './files-plan.ts';
import { describeRoles, restoredRolesSchema } from './missing-roles.ts';
import {
  type Carried,
  carriedSchema,
  describeRowSources,
  notRestoredWarnings,
  swapFactsSchema,
} from './row-sources.ts';
import { describeReadFrom, readFromSchema } from './source.ts';

/** The stages of a restore that run in Lambda: the check of the staging database and the record of a finished restore. */

export const restoreCheckSchema = z.object({
  tables: z.int(),
  rows: z.int(),
  checks: z.array(z.string()),
  startedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime(),
});

export type RestoreCheckResult = z.infer<typeof restoreCheckSchema>;

/**
 * Every table of the restored dump (its manifest, read from the catalog) must be
 * in the staging database with exactly the rows counted in the dump. A staging
 * database that fails is dropped: nothing was replaced.
 */
export async function checkRestore(
  serverUrl: string,
  catalog: Catalog,
  plan: RestorePlan,
  now = () => new Date(),
): Promise<RestoreCheckResult> {
  const startedAt = now().toISOString();
  const [archive] = plan.archives;
  if (!archive) throw new InvalidInputError('The restore plan names no archive; start the restore again.');
  const manifest = await catalog.readDatabaseManifest(archive.manifestKey);
  const { problems, check } = await rowProblems(serverUrl, plan.stagingDatabase, exactRows(manifest));
  if (problems.length > 0) {
    await dropDatabase(serverUrl, plan.stagingDatabase);
    throw new RestoreMismatchError(
      `The restored database does not match its dump: ${problems.length} table(s) differ: ${someOf(problems)}. The staging database ${plan.stagingDatabase} was dropped and ${plan.targetDatabase} was not touched. Verify the dump (${plan.archives.map((a) => a.key).join(', ')}) before trying again.`,
    );
  }
  return {
    ...check,
    checks: [
      "the dump's sha256 matched its verified manifest before use",
      'the dump applied completely, without error (a restore stops at the first error and drops the database it made)',
      presentTables(manifest),
    ],
    startedAt,
    finishedAt: now().toISOString(),
  };
}

/**
 * The sentence of a restore's checks on its tables: every table whose rows the
 * dump holds is present with exactly the dump's row counts (the check has just
 * matched them), and the tables whose rows a dump of this kind leaves out by
 * design (EXCLUDED_TABLES, as the manifest records them) are named, so that a
 * database of more tables than the sentence counts is not a surprise. Whether
 * one of those exists in this database is not known here, so nothing is said of it.
 */
function presentTables(manifest: DatabaseManifest): string {
  const rows = manifest.tables.reduce((sum, t) => sum + t.rows, 0);
  const present = `all ${manifest.tables.length} tables of the dump are present with exactly the row counts of the ${manifest.kind} dump (${counted(rows, 'row')})`;
  const leftOut = manifest.excludedTables;
  if (leftOut.length === 0) return present;
  return `${present}; a ${manifest.kind} dump leaves out the rows of ${someOf(leftOut.map(qualifiedName))} by design`;
}

/** What host/restore-archive.sh reports: the database as it made it, and the roles it created or omitted. */
function restoredDatabaseSchema() {
  return z.object({
    encoding: z.string(),
    collate: z.string(),
    ctype: z.string(),
    localeProvider: z.string(),
    icuLocale: z.nullable(z.string()),
    owner: z.string(),
    /** Each setting's name, a role's as `role: name`; never its value. */
    settings: z.array(z.string()),
    readFrom: readFromSchema,
    ...restoredRolesSchema,
  });
}

/** One line of a restore's summary: the database beyond its tables, and the roles created or omitted for it. */
function describeRestoredDatabase(d: z.infer<ReturnType<typeof restoredDatabaseSchema>>): string {
  const locale = d.localeProvider === 'icu' ? `ICU ${d.icuLocale}` : `${d.collate}/${d.ctype}`;
  const settings = d.settings.length > 0 ? `settings applied: ${d.settings.join(', ')}` : 'no settings';
  return `Database: encoding ${d.encoding}, locale ${locale}, owner ${d.owner}; ${settings}; ${describeRoles(d, d.owner)}`;
}

/**
 * What the execution holds when ReportRestore runs; the optional parts ran only
 * over a database. Built then, so that checkRestore's bundle does not carry it.
 */
function finishedRestoreSchema() {
  return z.object({
    [RESULT.plan]: restorePlanSchema,
    [RESULT.restore]: z.extend(commandStateSchema, { result: restoredDatabaseSchema() }),
    [RESULT.check]: restoreCheckSchema,
    [RESULT.stop]: z.optional(commandStateSchema),
    [RESULT.safetyDump]: z.optional(commandStateSchema),
    [RESULT.safetyDumpVerification]: z.optional(
      z.object({ state: z.string(), key: z.string(), size: z.number() }),
    ),
    [RESULT.carried]: z.optional(z.extend(commandStateSchema, { result: carriedSchema })),
    [RESULT.swap]: z.extend(commandStateSchema, { result: z.optional(swapFactsSchema) }),
    [RESULT.start]: z.optional(commandStateSchema),
    [RESULT.localPrune]: z.optional(commandStateSchema),
    /** Pruning old safety dumps failed: the restore stands, the record says so. */
    [RESULT.pruneFailed]: z.optional(caughtErrorSchema),
  });
}

/** The tables carried over and their rows, as a summary says them. */
const carriedCounts = (carried: Carried) =>
  `${counted(carried.tables.filter((t) => t.present).length, 'table')}, ${counted(
    carried.tables.reduce((n, t) => n + (t.rows ?? 0), 0),
    'row',
  )}`;

const seconds = (from: string, to: string | undefined) =>
  to === undefined ? null : Math.round((Date.parse(to) - Date.parse(from)) / 100) / 10;

/**
 * The record of a finished restore, which is the execution's output: what was
 * restored from which archives, the checks that passed and each stage's time
 * (host stages to the poll interval), so the achieved recovery time is visible.
 */
export function restoreReport(state: unknown, finishedAt: string) {
  const files = finishedFilesRestoreSchema().safeParse(state);
  if (files.success) return filesRestoreReport(files.data, finishedAt);
  const s = finishedRestoreSchema().parse(state);
  const { plan } = s;
  const stages = [
    { stage: 'restore into staging', seconds: seconds(s.restore.sentAt, s.restore.finishedAt) },
    { stage: 'check row counts', seconds: seconds(s.check.startedAt, s.check.finishedAt) },
    ...(s.stop ? [{ stage: 'stop application', seconds: seconds(s.stop.sentAt, s.stop.finishedAt) }] : []),
    ...(s.safetyDump
      ? [
          { stage: 'safety dump', seconds: seconds(s.safetyDump.sentAt, s.safetyDump.finishedAt) },
          {
            stage: 'verify safety dump',
            seconds: seconds(s.safetyDump.finishedAt ?? '', (s.carried ?? s.swap).sentAt),
          },
        ]
      : []),
    ...(s.carried
      ? [{ stage: 'carry log rows over', seconds: seconds(s.carried.sentAt, s.carried.finishedAt) }]
      : []),
    { stage: 'swap into place', seconds: seconds(s.swap.sentAt, s.swap.finishedAt) },
    ...(s.start
      ? [{ stage: 'start application', seconds: seconds(s.start.sentAt, s.start.finishedAt) }]
      : []),
    ...(s.start && s.localPrune
      ? [
          {
            stage: 'prune old safety dumps',
            seconds: seconds(s.start.finishedAt ?? '', s.localPrune.finishedAt),
          },
        ]
      : []),
  ];
  const warnings = [
    ...notRestoredWarnings(s.swap.result, plan.replacedDatabase, plan.safetyDump?.archiveKey),
    ...(s.pruneFailed
      ? [
          `Pruning old safety dumps failed (${s.pruneFailed.Error}); they stay until a later restore prunes them.`,
        ]
      : []),
  ];
  const totalSeconds = seconds(plan.startedAt, finishedAt);
  const applicationDownSeconds = s.stop && s.start ? seconds(s.stop.sentAt, s.start.finishedAt) : null;
  const carried = s.carried?.result;
  const checks = [
    ...s.check.checks,
    ...(s.safetyDumpVerification
      ? [`safety dump ${s.safetyDumpVerification.key} verified: complete, size and sha256 match`]
      : []),
    ...(carried
      ? [
          `the log tables' rows carried over from ${plan.targetDatabase} with the application stopped, each table's count checked (${carriedCounts(carried)})`,
        ]
      : []),
  ];
  const rows = describeRowSources(plan.rowSources, carried, plan.replacedDatabase);
  const database = s.restore.result;
  const summary = [
    `${plan.targetDatabase} restored on ${plan.target} from a backup of ${plan.database} in ${totalSeconds} s`,
    `As of ${plan.archives.map((a) => a.window.until).join(', ')}`,
    `Backup: ${plan.archives.map((a) => `${a.key} (restore test: ${a.restoreTest})`).join(', ')}`,
    describeReadFrom(database.readFrom, plan.archives.map((a) => a.key).join(', ')),
    describeRestoredDatabase(database),
    `Rows per table:\n${rows.map((r) => `  ${r}`).join('\n')}`,
    ...(plan.overProduction
      ? [
          `The replaced database is kept as ${plan.replacedDatabase}; the safety dump ${plan.safetyDump?.archiveKey} brings it back.`,
          `Application down for ${applicationDownSeconds} s`,
        ]
      : []),
    `Checks passed: ${checks.join('; ')}`,
    `Stages: ${stages.map((t) => `${t.stage} ${t.seconds} s`).join(', ')}`,
    ...warnings.map((w) => `Warning: ${w}`),
  ].join('\n');
  return {
    restored: plan.targetDatabase,
    from: plan.archives.map((a) => ({ kind: a.kind, key: a.key, window: a.window })),
    replacedDatabase: plan.overProduction ? plan.replacedDatabase : null,
    readFrom: database.readFrom,
    database,
    safetyDump: plan.safetyDump?.archiveKey ?? null,
    rows,
    checks,
    stages,
    applicationDownSeconds,
    totalSeconds,
    warnings,
    summary,
  };
}

/** What a files restore's execution holds when ReportRestore runs. */
function finishedFilesRestoreSchema() {
  return z.object({
    [FILES_RESULT.plan]: filesRestorePlanSchema,
    [FILES_RESULT.restore]: z.extend(commandStateSchema, { result: z.object({ readFrom: readFromSchema }) }),
    [FILES_RESULT.after]: commandStateSchema,
  });
}

function filesRestoreReport(s: z.infer<ReturnType<typeof finishedFilesRestoreSchema>>, finishedAt: string) {
  const { plan } = s;
  const stages = [
    { stage: 'check, set aside and extract', seconds: seconds(s.restore.sentAt, s.restore.finishedAt) },
    { stage: 'commands after the restore', seconds: seconds(s.after.sentAt, s.after.finishedAt) },
  ];
  const totalSeconds = seconds(plan.startedAt, finishedAt);
  const checks = [
    "the tarball's sha256 matched its verified manifest before use",
    `the tarball listed completely: ${counted(plan.archive.entries, 'entry', 'entries')}, as its manifest says`,
    `the files before the restore were archived to ${plan.asidePath} before anything was extracted`,
    `${plan.afterCommands.length} command(s) after the restore succeeded`,
  ];
  const summary = [
    `${plan.kind} files restored on ${plan.target} from ${plan.archive.key} (taken ${plan.archive.takenAt}) in ${totalSeconds} s`,
    describeReadFrom(s.restore.result.readFrom, plan.archive.key),
    `Paths: ${plan.paths.join(', ')}`,
    `The files as they were before are kept on the host in ${plan.asidePath}.`,
    `Checks passed: ${checks.join('; ')}`,
    `Stages: ${stages.map((t) => `${t.stage} ${t.seconds} s`).join(', ')}`,
  ].join('\n');
  return {
    restored: `${plan.kind} files on ${plan.target}`,
    from: [{ kind: plan.kind, key: plan.archive.key, takenAt: plan.archive.takenAt }],
    readFrom: s.restore.result.readFrom,
    paths: plan.paths,
    keptAside: plan.asidePath,
    checks,
    stages,
    totalSeconds,
    summary,
  };
}

/** What restore-cleanup holds when ReportCleanUp runs. */
function cleanedUpSchema() {
  return z.object({ stopped: stoppedExecutionSchema, cleanupPlan: cleanupPlanSchema });
}

/**
 * ReportCleanUp of restore-cleanup: what the stopped run left, from the
 * clean-up's facts; undefined for a state that is not restore-cleanup's. Throws,
 * listing it all, when something is still to do by hand (the application not
 * running, the staging database still there).
 */
export function cleanupReport(state: unknown) {
  const parsed = cleanedUpSchema().safeParse(state);
  if (!parsed.success) return undefined;
  const { stopped, cleanupPlan } = parsed.data;
  const left = leftoversOfState(state) ?? { lines: [], problems: [] };
  const name = stopped.executionArn.slice(stopped.executionArn.lastIndexOf(':') + 1);
  const head = `The ${stopped.workflow} execution ${name} was ${stopped.status === 'ABORTED' ? 'aborted' : 'stopped by its time limit'} in ${cleanupPlan.failedAt}${stopped.cancelled.length > 0 ? `; its host commands were cancelled: ${stopped.cancelled.join(', ')}` : ''}.`;
  const summary = [head, ...left.lines].join('\n');
  if (left.problems.length > 0) {
    throw new CleanUpIncompleteError(`${summary}\nStill to do by hand: ${left.problems.join(' ')}`);
  }
  return {
    cleanedUp: stopped.executionArn,
    status: stopped.status,
    failedAt: cleanupPlan.failedAt,
    left: left.lines,
    summary,
  };
}

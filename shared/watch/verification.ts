import { VERIFICATION_RESULT, VERIFICATION_STATE } from '../../statemachines/daily-verification.ts';
import { walPlanSchema, walRun, walSwitchFactsSchema, walTargets } from '../backup/wal-plan.ts';
import type { Catalog } from '../catalog/catalog.ts';
import { LEGACY_DUMP_KINDS, runId as makeRunId, manifestKey } from '../catalog/keys.ts';
import {
  describeLeftover,
  type Leftover,
  leftoverMinAgeSeconds,
  leftoverSchema,
} from '../catalog/leftovers.ts';
import { legacyArchives } from '../catalog/legacy.ts';
import { isDatabaseManifest, type Manifest } from '../catalog/manifest.ts';
import { newestVerifiedPhysicalFull } from '../catalog/physical.ts';
import type { Config } from '../core/config.ts';
import { causeMessage, failedStatesSchema, firstFailure, VerificationFailedError } from '../core/errors.ts';
import {
  hostPath,
  objectKey,
  runIdentifier,
  sha256Hex,
  sqlIdentifier,
  targetName,
} from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { pgbackrestOff } from '../host/pgbackrest-conf.ts';
import { checkCatalog } from './catalog-check.ts';
import { newestBackups, staleness, stalenessOf } from './freshness.ts';

/**
 * The daily verification: for every kind and target, the newest verified backup
 * is recent enough, its copy on the host is there with the verified bytes, and
 * its archive in S3 still passes its integrity check; for every target archiving
 * with pgBackRest, its repository passes `pgbackrest verify`, its WAL has no gap
 * since the oldest kept backup, and its newest full and incremental (from
 * pgBackRest's own info) are recent; a target without pgBackRest settings is
 * itself a finding. Every object of the catalog that does not parse is named
 * (every other reader passes over it with a log line), and so is every leftover
 * of a run that ended without cleaning up and is past the leftover age (an
 * archive without manifest, a partial file or work directory on a host, a
 * scratch or staging database): pruning removes them. Everything missing or bad
 * goes into one alert. Legacy row-window archives are listed in the output, as
 * legacy, and not read.
 */

const findingSchema = z.object({
  check: z.enum([
    'fresh',
    'verified',
    'local-copy',
    'integrity',
    'tamper',
    'host',
    'repository',
    'wal-archive',
    'restore-test',
    'catalog',
    'leftover',
  ]),
  /** What was checked: `full backup of kennel_prod on primary`. */
  subject: z.string(),
  problem: z.string(),
});

export type Finding = z.infer<typeof findingSchema>;

export const localCheckPlanSchema = z.object({
  target: targetName,
  runId: runIdentifier,
  copies: z.array(z.object({ path: hostPath, sha256: sha256Hex, subject: z.string() })),
});

/** A leftover found in the bucket or on a target's host, by the target it belongs to. */
const targetLeftoverSchema = z.object({ ...leftoverSchema.shape, target: targetName });

/** At most this many leftovers travel in the state (the plan, each host's result): counts say how many more. */
const LEFTOVERS_LISTED = 50;

/** An archive to read back from S3 in full. */
const archiveCheckSchema = z.object({ manifestKey: objectKey, subject: z.string() });

export const verificationPlanSchema = z.object({
  runId: runIdentifier,
  startedAt: z.iso.datetime({ offset: true }),
  /** What the catalog alone shows: kinds with no recent verified backup, newest archives that failed. */
  findings: z.array(findingSchema),
  /** Per target, the local copies of the newest verified backups, for the host to check. */
  hosts: z.array(localCheckPlanSchema),
  /** The newest verified archive of each kind, read back from S3 in full. */
  archives: z.array(archiveCheckSchema),
  /** One WAL run per target archiving with pgBackRest: its repository verified, its WAL switched and proven. */
  repositories: z.array(walPlanSchema),
  /**
   * Archives without a manifest in the bucket, of any age (the first
   * LEFTOVERS_LISTED; `leftoversInS3` counts them all): those older than
   * `leftoverMinAgeSeconds` are findings, the younger may be a run's in progress.
   */
  leftovers: z.array(targetLeftoverSchema),
  leftoversInS3: z.int(),
  leftoverMinAgeSeconds: z.int(),
  /** The legacy row-window archives still in the catalog, per target, database and kind: listed, never read. */
  legacy: z.array(
    z.object({
      state: z.literal('legacy'),
      kind: z.enum(LEGACY_DUMP_KINDS),
      target: targetName,
      database: sqlIdentifier,
      archives: z.int(),
      oldest: z.nullable(z.string()),
      newest: z.nullable(z.string()),
      note: z.string(),
    }),
  ),
});

export type VerificationPlan = z.infer<typeof verificationPlanSchema>;

/** Reads the catalog: the newest verified backup of each kind, target and database, and what is wrong with it. */
export async function planVerification(
  config: Config,
  catalog: Catalog,
  request: unknown,
  now = new Date(),
): Promise<VerificationPlan> {
  const { executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${VERIFICATION_STATE.plan} request`,
  );
  const iso = new Date(startedAt).toISOString();
  const findings: Finding[] = [];
  const copies = new Map<string, VerificationPlan['hosts'][number]['copies']>(
    config.BACKUP_TARGETS.map((t) => [t.name, []]),
  );
  const archives: VerificationPlan['archives'] = [];
  const legacy: VerificationPlan['legacy'] = [];
  for (const target of config.BACKUP_TARGETS) {
    // A production database without WAL archiving has an RPO of a day: said every day until it is fixed.
    if (!target.pgbackrest)
      findings.push({
        check: 'wal-archive',
        subject: `the WAL archive of ${target.name}`,
        problem: pgbackrestOff(
          target,
          'it has no physical backups and no WAL archiving: nothing but the daily logical dump protects its data (an RPO of a day, not a minute), and no point-in-time recovery is possible',
        ),
      });
    for (const database of target.databases ?? [target.database])
      legacy.push(...(await legacyArchives(catalog, target.name, database)));
  }
  // One alert names each unreadable object of the catalog; every other reader only logs it as it passes over it.
  const { bad, orphans } = await checkCatalog(config, catalog, now);
  for (const object of bad)
    findings.push({ check: 'catalog', subject: 'the catalog', problem: object.problem });
  const minAge = leftoverMinAgeSeconds(config);
  findings.push(...leftoverFindings(orphans, minAge));
  for (const newest of await newestBackups(config, catalog, now)) {
    const { subject, newestUsable: usable } = newest;
    const stale = staleness(newest, now);
    if (stale) findings.push({ check: 'fresh', subject, problem: stale });
    if (newest.newestKey !== undefined && newest.newestKey !== (usable && manifestKey(usable.archive.key))) {
      // An unreadable newest manifest is passed over here: checkCatalog's finding names it.
      const [latest] = await catalog.readAll([newest.newestKey]);
      const finding = latest && newestNotUsed(latest, usable);
      if (finding) findings.push({ ...finding, subject });
    }
    if (!usable) continue;
    // The scheduled dumps are restore-tested by their run: one whose test never ran is unproven.
    if (isDatabaseManifest(usable) && !usable.verification.restoreTest) {
      findings.push({
        check: 'restore-test',
        subject,
        problem: `the newest usable one, ${usable.archive.key}, has no restore test result (its run ended before the test, or is still testing it): it is verified but no restore has proven it; a \`latest\` restore uses it and checks its rows before replacing anything. Take a ${usable.kind} backup now, or run the restore-drill workflow`,
      });
    }
    copies
      .get(newest.target)
      ?.push({ path: usable.archive.localPath, sha256: usable.archive.sha256, subject });
    archives.push({ manifestKey: manifestKey(usable.archive.key), subject });
  }
  findings.push(...(await physicalRestoreTestFindings(config, catalog)));
  return {
    runId: makeRunId(iso, executionId),
    startedAt,
    findings,
    hosts: [...copies].map(([target, list]) => ({
      target,
      runId: makeRunId(iso, `${executionId}/${target}`),
      copies: list,
    })),
    archives,
    repositories: walTargets(config.BACKUP_TARGETS).map((target) => walRun(target, executionId, startedAt)),
    leftovers: orphans.slice(0, LEFTOVERS_LISTED),
    leftoversInS3: orphans.length,
    leftoverMinAgeSeconds: minAge,
    legacy,
  };
}

/**
 * Why the newest backup of a kind is not the one restores would use: it failed
 * verification, or its restore test failed (redacted when recorded); the usable
 * one restores take instead is named. Undefined for one still running.
 */
function newestNotUsed(latest: Manifest, usable: Manifest | undefined): Omit<Finding, 'subject'> | undefined {
  const instead = usable
    ? `restores and drills use ${usable.archive.key} (data of ${usable.window.until}) instead`
    : 'no backup of this kind can be used without confirming it';
  if (latest.verification.state === 'failed') {
    return {
      check: 'verified',
      problem: `the newest archive ${latest.archive.key} failed verification (${latest.verification.detail ?? 'no detail'})`,
    };
  }
  const test = latest.verification.restoreTest;
  if (test?.state !== 'failed') return undefined;
  return {
    check: 'restore-test',
    problem: `the newest archive ${latest.archive.key} failed its restore test at ${test.checkedAt} (${test.detail.slice(0, 600)}): it did not restore as it was dumped; ${instead}. Find out why, then take a backup of this kind`,
  };
}

/**
 * The leftovers old enough that no running execution owns them (leftovers.ts),
 * and side clusters whose run has ended (the host lists only those), whatever
 * their age: each a finding. Pruning removes them at the next backup of their
 * kind (the host's at the next backup of any kind, its databases at the next
 * dump); the next restore test or recovery removes a side cluster.
 */
function leftoverFindings(leftovers: readonly (Leftover & { target: string })[], minAge: number): Finding[] {
  return leftovers
    .filter((l) => l.where === 'side' || l.ageSeconds >= minAge)
    .map((l) => ({
      check: 'leftover',
      subject: l.where === 's3' ? `the bucket's catalog of ${l.target}` : `the host of ${l.target}`,
      problem:
        l.where === 'side'
          ? `${describeLeftover(l)} was left by a run that was killed (no run holds its lock): the next physical restore test or point-in-time recovery of ${l.target} removes it; to free its memory and disk now, start one, or stop the postgres running in it and remove the directory`
          : `${describeLeftover(l)} was left by a run that ended without cleaning up; pruning removes it at the next backup, so if this stays, the backups' PruneBackups or LocalPrune is failing`,
    }));
}

/**
 * The newest verified physical full of each pgBackRest target whose restore test
 * failed, or never ran (its run stopped before it): pgBackRest's info still
 * lists it as the newest full, but nothing builds on it, so the incrementals go
 * on as fulls and a recovery's base is an older one. From the catalog's records.
 */
async function physicalRestoreTestFindings(config: Config, catalog: Catalog): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const target of walTargets(config.BACKUP_TARGETS)) {
    const full = await newestVerifiedPhysicalFull(catalog, target.name, { restoreTested: false });
    const test = full?.verification.restoreTest;
    if (!full || test?.state === 'passed') continue;
    findings.push({
      check: 'restore-test',
      subject: `physical full backup ${full.label} of ${target.name}`,
      problem: test
        ? `its restore test failed (${test.detail.slice(0, 600)}${test.reportKey ? `; report ${test.reportKey}` : ''}); it is the base of nothing: take a full backup now and find out why`
        : `it has no restore test result (its run ${full.runId} ended before the test); it is the base of nothing: take a full backup now`,
    });
  }
  return findings;
}

/** What host/pgbackrest-verify.sh reports: verify's status, the first bad files it named, its own summary. */
const repositoryVerifySchema = z.object({
  status: z.enum(['ok', 'error']),
  problems: z.array(z.string()),
  problemCount: z.int(),
  summary: z.array(z.string()),
});

/** The states of a repository's verify (StartRepositoryVerify, CheckRepositoryVerify); the others are its WAL's. */
const VERIFY_STATE = /RepositoryVerify$/;

/**
 * What ReportVerification gets: the plan, and what the two Map states left:
 * each host's check, each archive's verification, or how they failed. Built when
 * the report runs: the bundles that import this module for the plan schemas do
 * not carry it.
 */
function checkedSchema() {
  const R = VERIFICATION_RESULT;
  return z.object({
    [R.plan]: verificationPlanSchema,
    [R.hosts]: z.array(
      z.object({
        [R.host]: localCheckPlanSchema,
        [R.command]: z.optional(
          z.object({
            result: z.object({
              missing: z.array(z.string()),
              differs: z.array(z.string()),
              checked: z.number(),
              leftovers: z.array(leftoverSchema),
              leftoverCount: z.int(),
            }),
          }),
        ),
        [R.failed]: z.pipe(z.optional(failedStatesSchema), z.transform(firstFailure)),
      }),
    ),
    [R.repositories]: z.array(
      z.object({
        [R.plan]: walPlanSchema,
        [R.verify]: z.optional(z.object({ result: repositoryVerifySchema })),
        // Read for the freshness of the physical kinds only; a report CheckWalContinuity refused is its finding.
        [R.walSwitch]: z.catch(z.optional(z.object({ result: walSwitchFactsSchema })), undefined),
        [R.continuity]: z.optional(z.object({ segments: z.number() })),
        [R.failed]: z.optional(failedStatesSchema),
      }),
    ),
    [R.archives]: z.array(
      z.object({
        [R.archive]: archiveCheckSchema,
        [R.verification]: z.optional(z.object({ state: z.string() })),
        [R.failed]: z.pipe(z.optional(failedStatesSchema), z.transform(firstFailure)),
      }),
    ),
  });
}

/**
 * Every finding of the catalog, the hosts and the archives. Throws one error that
 * lists them all, or returns what was checked.
 */
export function reportVerification(request: unknown) {
  const s = parseInput(checkedSchema(), request, `The ${VERIFICATION_STATE.report} request`);
  const findings: Finding[] = [...s.plan.findings];
  const leftovers = [
    ...s.plan.leftovers,
    ...s.hosts.flatMap(({ host, command }) =>
      (command?.result.leftovers ?? []).map((l) => ({ ...l, target: host.target })),
    ),
  ];
  const onHosts = leftovers.filter((l) => l.where !== 's3');
  findings.push(...leftoverFindings(onHosts, s.plan.leftoverMinAgeSeconds));
  const subjectOf = new Map(s.plan.hosts.flatMap((h) => h.copies.map((c) => [c.path, c.subject] as const)));
  for (const { host, command, failed } of s.hosts) {
    if (failed || !command) {
      findings.push({
        check: 'host',
        subject: `the host of ${host.target}`,
        problem: `the local copies could not be checked: ${failed?.Error ?? 'no result'}: ${causeMessage(failed?.Cause ?? '')}`,
      });
      continue;
    }
    for (const path of command.result.missing) {
      findings.push({
        check: 'local-copy',
        subject: subjectOf.get(path) ?? path,
        problem: `the host's copy ${path} is missing`,
      });
    }
    for (const path of command.result.differs) {
      findings.push({
        check: 'local-copy',
        subject: subjectOf.get(path) ?? path,
        problem: `the host's copy ${path} differs from the verified archive`,
      });
    }
  }
  findings.push(...s.repositories.flatMap((r) => repositoryFindings(r, new Date(s.plan.startedAt))));
  for (const { archive, failed } of s.archives) {
    if (failed) {
      findings.push({
        check: failed.Error === 'TamperedArchiveError' ? 'tamper' : 'integrity',
        subject: archive.subject,
        problem: `${failed.Error}: ${causeMessage(failed.Cause)}`,
      });
    }
  }
  const checked = {
    newestBackups: s.plan.archives.length,
    localCopies: s.hosts.reduce((n, h) => n + (h.command?.result.checked ?? 0), 0),
    archivesReadBack: s.archives.length,
    repositoriesVerified: s.repositories.filter((r) => r.verify?.result.status === 'ok').length,
    walSegmentsProven: s.repositories.reduce((n, r) => n + (r.continuity?.segments ?? 0), 0),
    leftovers: s.plan.leftoversInS3 + s.hosts.reduce((n, h) => n + (h.command?.result.leftoverCount ?? 0), 0),
  };
  if (findings.length > 0) {
    throw new VerificationFailedError(
      `${findings.length} problem(s) found:\n${findings.map((f) => `- ${f.subject}: ${f.problem}`).join('\n')}\nEach needs a look: a stale kind means its schedule or its workflow is failing; a missing or differing local copy means the host lost it (the S3 copy is what restores use); a failed integrity check means that archive cannot be restored: take a new backup of that kind now; a changed archive or manifest means someone replaced a backup: the problem names the version to restore from, and CloudTrail's data events for the bucket name who wrote the change; a bad repository file or a WAL gap means recoveries through it fail: take a pgBackRest full backup now.`,
    );
  }
  // Younger leftovers are listed too: a run in progress, or one a later verification reports.
  return { checked, findings, leftovers, legacy: s.plan.legacy };
}

type RepositoryCheck = z.infer<ReturnType<typeof checkedSchema>>['repositories'][number];

/** A pgBackRest target's findings: each stage that failed, what verify found bad, and stale physical backups. */
function repositoryFindings(r: RepositoryCheck, now: Date): Finding[] {
  const target = r.plan.target;
  const findings: Finding[] = Object.entries(r.failed ?? {}).map(([state, error]) =>
    VERIFY_STATE.test(state)
      ? {
          check: 'repository',
          subject: `the pgBackRest repository of ${target}`,
          problem: `pgbackrest verify could not run: ${error.Error}: ${causeMessage(error.Cause)}`,
        }
      : {
          check: 'wal-archive',
          subject: `the WAL archive of ${target}`,
          problem: `${error.Error}: ${causeMessage(error.Cause)}`,
        },
  );
  const verify = r.verify?.result;
  if (verify && (verify.status === 'error' || verify.problemCount > 0)) {
    const more =
      verify.problemCount > verify.problems.length
        ? `, and ${verify.problemCount - verify.problems.length} more`
        : '';
    findings.push({
      check: 'repository',
      subject: `the pgBackRest repository of ${target}`,
      problem: `${verify.problemCount > 0 ? `pgbackrest verify found ${verify.problemCount} bad file(s): ${verify.problems.join('; ')}${more}` : 'pgbackrest verify reports status error'}${verify.summary.length > 0 ? ` (its report: ${verify.summary.join('; ')})` : ''}`,
    });
  }
  const facts = r.walSwitch?.result;
  if (facts) {
    const full = stalenessOf(facts.newestFull?.stoppedAt, 'full', now, {
      none: "pgBackRest's info lists no full backup",
      newest: 'the newest pgBackRest full backup',
    });
    if (full) findings.push({ check: 'fresh', subject: `physical full backup of ${target}`, problem: full });
    // With no backup at all, the full's finding says so.
    const newest = facts.newestBackup;
    const any =
      newest &&
      stalenessOf(newest.stoppedAt, 'incremental', now, {
        none: '',
        newest: `the newest pgBackRest backup (${newest.type})`,
      });
    if (any)
      findings.push({
        check: 'fresh',
        subject: `physical full or incremental backup of ${target}`,
        problem: any,
      });
  }
  return findings;
}

import { z } from 'zod';
import type { Catalog } from './catalog.ts';
import type { Config } from './config.ts';
import { VerificationFailedError } from './errors.ts';
import { hostPath, objectKey, sha256Hex, targetName } from './identifiers.ts';
import { FILE_KINDS, MANIFEST_SUFFIX, runId as makeRunId, SCHEDULED_DATABASE_KINDS } from './keys.ts';
import type { Manifest } from './manifest.ts';
import { parseInput, planRequestSchema } from './plan.ts';
import { maxAgeMinutes, SCHEDULES, type ScheduledKind } from './schedule.ts';

/**
 * The daily verification: for every kind and target, the newest verified backup
 * is recent enough, its copy on the host is there with the verified bytes, and
 * its archive in S3 still passes its integrity check. Everything missing or bad
 * goes into one alert.
 */

const findingSchema = z.object({
  check: z.enum(['fresh', 'verified', 'local-copy', 'integrity', 'host']),
  /** What was checked: `full backup of kennel_prod on primary`. */
  subject: z.string(),
  problem: z.string(),
});

export type Finding = z.infer<typeof findingSchema>;

export const localCheckPlanSchema = z.object({
  target: targetName,
  runId: z.string().regex(/^\d{8}T\d{6}Z_[0-9a-f]{8}$/),
  copies: z.array(z.object({ path: hostPath, sha256: sha256Hex, subject: z.string() })),
});

export const verificationPlanSchema = z.object({
  runId: z.string().regex(/^\d{8}T\d{6}Z_[0-9a-f]{8}$/),
  startedAt: z.iso.datetime({ offset: true }),
  /** What the catalog alone shows: kinds with no recent verified backup, newest archives that failed. */
  findings: z.array(findingSchema),
  /** Per target, the local copies of the newest verified backups, for the host to check. */
  hosts: z.array(localCheckPlanSchema),
  /** The newest verified archive of each kind, read back from S3 in full. */
  archives: z.array(z.object({ manifestKey: objectKey, subject: z.string() })),
});

export type VerificationPlan = z.infer<typeof verificationPlanSchema>;

const MINUTE_MS = 60_000;

function age(from: string, now: Date): string {
  const minutes = Math.round((now.getTime() - Date.parse(from)) / MINUTE_MS);
  return minutes < 120 ? `${minutes} min` : `${(minutes / 60).toFixed(1)} h`;
}

const every = (minutes: number) => (minutes < 60 ? `${minutes} min` : `${minutes / 60} h`);

/** Reads the catalog: the newest verified backup of each kind, target and database, and what is wrong with it. */
export async function planVerification(
  config: Config,
  catalog: Catalog,
  request: unknown,
  now = new Date(),
): Promise<VerificationPlan> {
  const { executionId, startedAt } = parseInput(planRequestSchema, request, 'The PlanVerification request');
  const findings: Finding[] = [];
  const hosts: VerificationPlan['hosts'] = [];
  const archives: VerificationPlan['archives'] = [];
  for (const target of config.BACKUP_TARGETS) {
    const catalogs: { kind: ScheduledKind; database: string | null }[] = [
      ...(target.databases ?? [target.database]).flatMap((database) =>
        SCHEDULED_DATABASE_KINDS.map((kind) => ({ kind, database })),
      ),
      ...FILE_KINDS.map((kind) => ({ kind, database: null })),
    ];
    const copies: VerificationPlan['hosts'][number]['copies'] = [];
    for (const { kind, database } of catalogs) {
      const subject = `${kind} backup of ${database ?? 'the files'} on ${target.name}`;
      const keys = await catalog.manifestKeys(kind, target.name, database);
      const newestKey = keys.at(-1);
      const newest = await catalog.newestVerified(keys);
      if (!newest) {
        findings.push({ check: 'fresh', subject, problem: 'there is no verified backup at all' });
        continue;
      }
      const limit = maxAgeMinutes(kind);
      if (now.getTime() - Date.parse(newest.window.until) > limit * MINUTE_MS) {
        findings.push({
          check: 'fresh',
          subject,
          problem: `the newest verified one is from ${newest.window.until} (${age(newest.window.until, now)} ago); one is expected every ${every(SCHEDULES[kind].everyMinutes)}`,
        });
      }
      if (newestKey !== undefined && newestKey !== `${newest.archive.key}${MANIFEST_SUFFIX}`) {
        const latest: Manifest = await catalog.readManifest(newestKey);
        if (latest.verification.state === 'failed') {
          findings.push({
            check: 'verified',
            subject,
            problem: `the newest archive ${latest.archive.key} failed verification (${latest.verification.detail ?? 'no detail'})`,
          });
        }
      }
      copies.push({ path: newest.archive.localPath, sha256: newest.archive.sha256, subject });
      archives.push({ manifestKey: `${newest.archive.key}${MANIFEST_SUFFIX}`, subject });
    }
    const iso = new Date(startedAt).toISOString();
    hosts.push({ target: target.name, runId: makeRunId(iso, `${executionId}/${target.name}`), copies });
  }
  return {
    runId: makeRunId(new Date(startedAt).toISOString(), executionId),
    startedAt,
    findings,
    hosts,
    archives,
  };
}

/** What the two Map states left: each host's check, each archive's verification, or how they failed. */
const checkedSchema = z.object({
  plan: verificationPlanSchema,
  hosts: z.array(
    z.object({
      host: localCheckPlanSchema,
      command: z
        .object({
          result: z.object({
            missing: z.array(z.string()),
            differs: z.array(z.string()),
            checked: z.number(),
          }),
        })
        .optional(),
      failed: z.object({ Error: z.string(), Cause: z.unknown() }).optional(),
    }),
  ),
  archives: z.array(
    z.object({
      archive: z.object({ manifestKey: objectKey, subject: z.string() }),
      verification: z.object({ state: z.string() }).optional(),
      failed: z.object({ Error: z.string(), Cause: z.unknown() }).optional(),
    }),
  ),
});

/** Lambda errors arrive as a JSON Cause ({ errorMessage, … }); the message is what a person reads. */
function message(cause: unknown): string {
  if (typeof cause !== 'string') return JSON.stringify(cause);
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    return typeof parsed.errorMessage === 'string' ? parsed.errorMessage : cause;
  } catch {
    return cause;
  }
}

/**
 * Every finding of the catalog, the hosts and the archives. Throws one error that
 * lists them all, or returns what was checked.
 */
export function reportVerification(state: unknown) {
  const s = checkedSchema.parse(state);
  const findings: Finding[] = [...s.plan.findings];
  const subjectOf = new Map(s.plan.hosts.flatMap((h) => h.copies.map((c) => [c.path, c.subject] as const)));
  for (const { host, command, failed } of s.hosts) {
    if (failed || !command) {
      findings.push({
        check: 'host',
        subject: `the host of ${host.target}`,
        problem: `the local copies could not be checked: ${failed?.Error ?? 'no result'}: ${message(failed?.Cause ?? '')}`,
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
  for (const { archive, failed } of s.archives) {
    if (failed) {
      findings.push({
        check: 'integrity',
        subject: archive.subject,
        problem: `${failed.Error}: ${message(failed.Cause)}`,
      });
    }
  }
  const checked = {
    newestBackups: s.plan.archives.length,
    localCopies: s.hosts.reduce((n, h) => n + (h.command?.result.checked ?? 0), 0),
    archivesReadBack: s.archives.length,
  };
  if (findings.length > 0) {
    throw new VerificationFailedError(
      `${findings.length} problem(s) found:\n${findings.map((f) => `- ${f.subject}: ${f.problem}`).join('\n')}\nEach needs a look: a stale kind means its schedule or its workflow is failing; a missing or differing local copy means the host lost it (the S3 copy is what restores use); a failed integrity check means that archive cannot be restored: take a new backup of that kind now.`,
    );
  }
  return { checked, findings };
}

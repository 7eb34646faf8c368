import type { Catalog } from '../catalog/catalog.ts';
import {
  keyOf,
  markPhysicalExpired,
  newestVerifiedPhysicalFull,
  type PhysicalRecord,
  readPhysicalRecord,
  repositoryCheckSchema,
  writePhysicalRecord,
} from '../catalog/physical.ts';
import { InvalidInputError, RepositoryCorruptError } from '../core/errors.ts';
import { lsn, pgbackrestLabel, walSegment } from '../core/identifiers.ts';
import { parseInput } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { pgbackrestPath } from '../host/pgbackrest-conf.ts';
import type { PhysicalPlan } from './physical-plan.ts';
import { physicalRestoreTestOutcomeSchema } from './physical-restore-test.ts';

const iso = z.iso.datetime({ offset: true });
const bytes = z.int().check(z.nonnegative());
const epochSeconds = z.int().check(z.positive());

/**
 * What host/pgbackrest-backup.sh reports: the kind asked for, its own start and
 * end, pgBackRest's `info --output=json --set=<label>` fields of the new backup
 * under their own names, and verify's outcome.
 */
export const physicalBackupFactsSchema = z.object({
  requestedType: z.enum(['full', 'incr']),
  /** The repository's newest backup before this one: what pgBackRest would build an incremental on. */
  newestBefore: z.nullable(pgbackrestLabel),
  startedAt: iso,
  finishedAt: iso,
  backup: z.object({
    label: pgbackrestLabel,
    type: z.enum(['full', 'incr']),
    prior: z.nullable(pgbackrestLabel),
    reference: z.nullable(z.array(pgbackrestLabel)),
    /** Invalid page checksums in the cluster's files, found while copying them. */
    error: z.boolean(),
    timestamp: z.object({ start: epochSeconds, stop: epochSeconds }),
    archive: z.object({ start: walSegment, stop: walSegment }),
    lsn: z.object({ start: lsn, stop: lsn }),
    info: z.object({ size: bytes, delta: bytes, repository: z.object({ size: bytes, delta: bytes }) }),
  }),
  verify: repositoryCheckSchema,
});

export type PhysicalBackupFacts = z.infer<typeof physicalBackupFactsSchema>;
type Backup = PhysicalBackupFacts['backup'];

/** What the record stage returns to the workflow: the record's gist. */
export interface PhysicalRecordResult {
  state: 'verified' | 'failed';
  key: string;
  label: string;
  kind: PhysicalRecord['kind'];
  requestedKind: PhysicalRecord['requestedKind'];
  note: string | null;
}

/** Once the restore test passed: the record's gist with the test, and what the expiry keeps. */
export interface PhysicalRecordTestedResult extends PhysicalRecordResult {
  restoreTest: 'passed';
  /** The full backup the expiry must not remove; absent when no full qualifies, and then nothing is expired. */
  keep?: string;
  expiry: string;
}

/** The repository path a verify problem names: `invalid checksum '<path>'` or `invalid result <path>: [code] …`. */
export function problemPath(problem: string): string | undefined {
  return /'([^']+)'/.exec(problem)?.[1] ?? /^invalid result (\S+?):/.exec(problem)?.[1];
}

/**
 * Whether a verify problem concerns this backup: a file of it or of a backup it
 * references (`<label>/pg_data/…`), or a WAL segment from its start to its stop
 * (`15-1/0000000100000000/<segment>-<sha1>.zst`), without which it restores to
 * no consistent state. One that names no path is taken to concern it.
 */
export function concernsBackup(problem: string, backup: Backup): boolean {
  const path = problemPath(problem);
  if (path === undefined) return true;
  if ([backup.label, ...(backup.reference ?? [])].some((label) => path.startsWith(`${label}/`))) return true;
  const segment = /\/([0-9A-F]{24})-[0-9a-f]{40}/.exec(path)?.[1];
  // Segment names of one timeline sort as text in the order PostgreSQL writes them.
  return segment !== undefined && segment >= backup.archive.start && segment <= backup.archive.stop;
}

const toIso = (epoch: number) => new Date(epoch * 1000).toISOString();
const kindOf = (type: 'full' | 'incr') => (type === 'full' ? 'full' : 'incremental');

/** Why an incremental asked for was taken as a full (the host's rule, or pgBackRest's). */
function fullInstead(plan: PhysicalPlan, newestBefore: string | null): string {
  if (newestBefore === null)
    return `No backup in the repository to build on, so pgBackRest took a full backup instead of the ${plan.kind} asked for (its own rule).`;
  return `The repository's newest backup, ${newestBefore}, is not ${plan.base === null ? 'one' : `${plan.base}, the newest`} that passed verification and its restore test, so a full backup was taken instead of an incremental built on it: a backup that failed is the base of nothing.`;
}

/**
 * Writes the catalog's record of the backup the host just took and verified,
 * verified or failed. Throws a RepositoryCorruptError naming the files when
 * verify found any bad file in the repository, after writing the record (this
 * backup is `verified` when none of them concerns it).
 */
export async function recordPhysicalBackup(
  catalog: Catalog,
  plan: PhysicalPlan,
  reported: unknown,
  now = new Date(),
): Promise<PhysicalRecordResult> {
  const facts = parseInput(
    physicalBackupFactsSchema,
    reported,
    'The facts the pgbackrest-backup command reported',
  );
  const { backup, verify } = facts;
  const kind = kindOf(backup.type);
  const note = kind === plan.kind ? null : fullInstead(plan, facts.newestBefore);
  const own = verify.problems.filter((p) => concernsBackup(p, backup));
  // Problems beyond the first ten were not reported: they may be this backup's.
  const unseen = verify.problemCount > verify.problems.length;
  const unnamed = verify.status === 'error' && verify.problems.length === 0;
  const failed = own.length > 0 || unseen || unnamed || backup.error;
  const reasons = [
    ...(own.length > 0
      ? [`verify found ${own.length} bad file(s) this backup needs: ${own.join('; ')}`]
      : []),
    ...(unseen
      ? [`verify found ${verify.problemCount} bad files, more than it reported, so some may be this backup's`]
      : []),
    ...(unnamed
      ? ["verify reported an error without naming a file (see pgBackRest's verify log on the host)"]
      : []),
    ...(backup.error
      ? [
          "pgBackRest found pages with invalid checksums in the cluster's own files while copying them (info: error=true): the database itself has damaged pages",
        ]
      : []),
  ];
  const elsewhere = verify.problems.filter((p) => !own.includes(p));
  const record: PhysicalRecord = {
    version: 1,
    engine: 'pgbackrest',
    target: plan.target,
    repository: { bucket: plan.bucket, path: pgbackrestPath(plan.target) },
    runId: plan.runId,
    executionId: plan.executionId,
    startedAt: plan.startedAt,
    finishedAt: facts.finishedAt,
    requestedKind: plan.kind,
    kind,
    note,
    label: backup.label,
    prior: backup.prior,
    references: backup.reference ?? [],
    backup: {
      startedAt: toIso(backup.timestamp.start),
      stoppedAt: toIso(backup.timestamp.stop),
      archiveStart: backup.archive.start,
      archiveStop: backup.archive.stop,
      lsnStart: backup.lsn.start,
      lsnStop: backup.lsn.stop,
      databaseBytes: backup.info.size,
      backupBytes: backup.info.delta,
      repositoryBytes: backup.info.repository.size,
      repositoryDeltaBytes: backup.info.repository.delta,
      pageChecksumErrors: backup.error,
    },
    verification: {
      state: failed ? 'failed' : 'verified',
      checkedAt: now.toISOString(),
      detail: failed
        ? reasons.join('; ')
        : `pgbackrest verify read back every file of the repository: none of this backup's, of the backups it references (${backup.reference?.join(', ') || 'none'}) or of its WAL ${backup.archive.start} to ${backup.archive.stop} is bad${elsewhere.length > 0 ? `; elsewhere: ${elsewhere.join('; ')}` : ''}`,
      problems: own,
      repository: verify,
    },
  };
  if (keyOf(record) !== plan.recordKey)
    throw new InvalidInputError(
      `The plan's recordKey ${plan.recordKey} is not where its run's record belongs (${keyOf(record)}); the execution's state was changed by hand. Start a new execution.`,
    );
  const key = await writePhysicalRecord(catalog, record);
  if (failed || verify.status === 'error') {
    const listed = verify.problems.join('; ') || 'none named';
    const more =
      verify.problemCount > verify.problems.length
        ? ` (and ${verify.problemCount - verify.problems.length} more)`
        : '';
    throw new RepositoryCorruptError(
      `pgbackrest verify found ${verify.problemCount} bad file(s) in the repository of target ${plan.target} (s3://${plan.bucket}${pgbackrestPath(plan.target)}/): ${listed}${more}${backup.error ? '; and the backup found invalid page checksums in the database' : ''}. The new backup ${backup.label} is recorded as ${record.verification.state} (s3://${plan.bucket}/${key}). Find what changed those objects, take a new full backup once the cause is fixed, and do not restore from the damaged backups.`,
    );
  }
  return {
    state: record.verification.state,
    key,
    label: backup.label,
    kind,
    requestedKind: plan.kind,
    note,
  };
}

/**
 * Adds the passed restore test (RecordPhysicalRestoreTest's outcome) to the
 * backup's record, and says what the expiry that follows keeps: the newest full
 * that passed verification and its restore test (this one, when it is a full);
 * none when no full has, and then nothing is expired. A failed test never gets
 * here: it fails the run, and the record, without a passed test, makes the
 * backup the base of nothing.
 */
export async function recordPhysicalRestoreTest(
  catalog: Catalog,
  plan: PhysicalPlan,
  reported: unknown,
): Promise<PhysicalRecordTestedResult> {
  const outcome = parseInput(
    physicalRestoreTestOutcomeSchema,
    reported,
    "The restore test's outcome (RecordPhysicalRestoreTest's result)",
  );
  const record = await readPhysicalRecord(catalog, plan.recordKey);
  if (outcome.state !== 'passed' || outcome.set !== record.label || record.verification.state !== 'verified')
    throw new InvalidInputError(
      `The restore test's outcome (${outcome.state}, set ${outcome.set}) is not a passed test of the verified backup ${record.label} recorded at ${plan.recordKey}; the execution's state was changed by hand. Start a new execution.`,
    );
  await writePhysicalRecord(catalog, {
    ...record,
    verification: {
      ...record.verification,
      restoreTest: {
        state: 'passed',
        ...(outcome.startedAt ? { startedAt: outcome.startedAt } : {}),
        checkedAt: outcome.checkedAt,
        detail: outcome.detail,
        reportKey: outcome.reportKey,
        ...(outcome.unlogged ? { unlogged: outcome.unlogged } : {}),
      },
    },
  });
  const keep = (await newestVerifiedPhysicalFull(catalog, plan.target, { restoreTested: true }))?.label;
  return {
    state: 'verified',
    key: plan.recordKey,
    label: record.label,
    kind: record.kind,
    requestedKind: record.requestedKind,
    note: record.note,
    restoreTest: 'passed',
    ...(keep === undefined ? {} : { keep }),
    expiry:
      keep === undefined
        ? `No full backup of ${plan.target} has passed verification and its restore test yet, so nothing is expired: pgBackRest's expire might remove the only good one.`
        : `Expires what the retention no longer needs, never ${keep}.`,
  };
}

/** What host/pgbackrest-expire.sh reports: the backup kept, the backups and WAL ranges pgBackRest removed. */
export const physicalExpiryFactsSchema = z.object({
  keep: pgbackrestLabel,
  retention: z.string(),
  expired: z.array(pgbackrestLabel),
  archive: z.array(
    z.object({ id: z.string().check(z.regex(/^\d+-\d+$/)), start: walSegment, stop: walSegment }),
  ),
});

/** Marks the records of the backups pgBackRest expired; returns what was removed and the records marked. */
export async function recordPhysicalExpiry(
  catalog: Catalog,
  plan: PhysicalPlan,
  reported: unknown,
  now = new Date(),
): Promise<z.infer<typeof physicalExpiryFactsSchema> & { marked: string[] }> {
  const facts = parseInput(
    physicalExpiryFactsSchema,
    reported,
    'The facts the pgbackrest-expire command reported',
  );
  const marked = await markPhysicalExpired(catalog, plan.target, facts.expired, {
    at: now.toISOString(),
    executionId: plan.executionId,
  });
  return { ...facts, marked };
}

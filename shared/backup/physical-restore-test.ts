import { createHash } from 'node:crypto';
import type { Target } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { runIdentifier, sha256Hex, targetName } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { pgbackrestOf, pgbackrestParams } from '../host/pgbackrest-conf.ts';
import { hostCommand, postgresParams } from '../host/scripts.ts';

/**
 * The restore test of a pgBackRest backup set (host/physical-restore-test.sh):
 * the set restored into a scratch instance on the DB host, recovered to its
 * consistent point, checked (pg_amcheck, every row read, exact counts) and
 * removed. Here: its host command, the result line it prints, and the outcome
 * the catalog records.
 */

/** A pgBackRest backup label: a full's start, or a full's and its incremental's or differential's. */
export const backupSetLabel = z
  .string()
  .check(z.regex(/^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$/, 'is not a pgBackRest backup label'));

const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
const trimmed = (path: string) => path.replace(/\/+$/, '') || '/';

/**
 * Where the target's restore tests make their scratch instances (a directory per
 * stanza and set under it): `pgbackrest.scratchDirectory`, or `<backupDir>/restore-test`.
 * For a docker target the path is inside the database service's container.
 * ConfigError when it and the cluster's data directory contain one another: the
 * test removes what it finds under it.
 */
export function scratchDirectoryOf(target: Target): string {
  const pg = pgbackrestOf(target);
  const scratch = trimmed(pg.scratchDirectory ?? `${trimmed(target.backupDir)}/restore-test`);
  const data = trimmed(pg.dataDirectory);
  if (within(scratch, data) || within(data, scratch))
    throw new ConfigError(
      `The restore tests' scratch directory ${scratch} of target "${target.name}" and its data directory ${data} contain one another; set pgbackrest.scratchDirectory to a directory apart from the cluster's. Nothing was started.`,
    );
  return scratch;
}

export const PHYSICAL_RESTORE_TEST = 'physical-restore-test';

const requestSchema = z.object({
  script: z.literal(PHYSICAL_RESTORE_TEST),
  /** The physical run's plan: its target (the stanza) and run. */
  plan: z.object({ target: targetName, runId: runIdentifier }),
  /** The backup set to restore, as pgBackRest labels it. */
  set: backupSetLabel,
});

export type PhysicalRestoreTestRequest = z.infer<typeof requestSchema>;

/** The restore test's host command; what it runs on comes from config, the set from the request. */
export const PHYSICAL_RESTORE_TEST_HOST_COMMANDS = {
  [PHYSICAL_RESTORE_TEST]: hostCommand({
    request: requestSchema,
    script: 'physical-restore-test',
    params: (config, target, { set }) => {
      const pg = pgbackrestOf(target);
      return {
        ...postgresParams(target),
        ...pgbackrestParams(config, target),
        KB_SET: set,
        KB_SCRATCH_ROOT: scratchDirectoryOf(target),
        // pgBackRest's own role: a superuser of the restored cluster too.
        KB_SCRATCH_USER: pg.user ?? pg.osUser,
        // On the host in both modes: the lock serialises the host's restore tests.
        KB_LOCK_DIR: target.backupDir,
      };
    },
  }),
};

const count = z.int().check(z.nonnegative());
/** One table's rows: its schema and name as a pair (never "schema.table"), and its exact count. */
const tableCount = z.tuple([z.string(), z.string(), count]);

const databaseResult = z.object({
  name: z.string(),
  tables: count,
  rows: count,
  /** Each table's count, when the result line had room for them all. */
  counts: z.optional(z.array(tableCount)),
});

/** The KB-RESULT line of physical-restore-test.sh: the facts of a test that passed. */
export const physicalRestoreTestResultSchema = z.object({
  set: backupSetLabel,
  state: z.literal('passed'),
  /** The restored cluster's size (pgBackRest's `info.size` of the set). */
  backupBytes: count,
  /** Where recovery stopped (at or past the backup's stop LSN), and the timeline it promoted to. */
  consistentAt: z.string().check(z.regex(/^[0-9A-F]+\/[0-9A-F]+$/)),
  timeline: count,
  amcheck: z.literal('passed'),
  databases: z.array(databaseResult),
  tables: count,
  rows: count,
  countsDigest: sha256Hex,
  countsListed: z.boolean(),
  /** Scratch directories an interrupted test had left, removed by this one. */
  swept: z.array(z.string()),
  startedAt: z.iso.datetime({ offset: true }),
  finishedAt: z.iso.datetime({ offset: true }),
  seconds: z.object({ restore: count, recovery: count, checks: count, total: count }),
});

export type PhysicalRestoreTestResult = z.infer<typeof physicalRestoreTestResultSchema>;

/**
 * The digest the host prints of every table's count: sha256 of one line per
 * database, `[NAME,[[SCHEMA,TABLE,ROWS],…]]` as compact JSON, databases by name
 * and tables by schema then name (bytewise, as PostgreSQL's "C" collation
 * orders). A restore of the same set gives the same digest.
 */
export function countsDigest(
  databases: readonly { name: string; counts: readonly [string, string, number][] }[],
) {
  const lines = databases.map((d) => `${JSON.stringify([d.name, d.counts])}\n`).join('');
  return createHash('sha256').update(lines).digest('hex');
}

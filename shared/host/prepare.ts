import { PREPARE_RESULT, PREPARE_STATE } from '../../statemachines/prepare-host.ts';
import { runId as makeRunId } from '../catalog/keys.ts';
import { type Config, selectTargets, type Target } from '../core/config.ts';
import { causeMessage, failedStatesSchema, firstFailure, PrepareHostFailedError } from '../core/errors.ts';
import { runIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import * as z from '../core/schema.ts';
import { archiveCommandOf, pgbackrestConfOf, pgbackrestOf, pgbackrestParams } from './pgbackrest-conf.ts';
import { hostCommand, postgresParams } from './scripts.ts';

/**
 * Preparing a target's host for pgBackRest (the prepare-host workflow, and the
 * local stack on its own cluster): what PostgreSQL must be set to, the host
 * command that sets it, and how its result is read back and told to an operator.
 */

/** The longest archive_timeout allowed: the RPO a quiet database still meets (seconds). */
export const MAX_ARCHIVE_TIMEOUT_SECONDS = 60;

/**
 * A PostgreSQL setting pgBackRest needs: the values that already do (`accepted`,
 * or a whole number from `min` to `max`, in the setting's own unit), and the one
 * ALTER SYSTEM sets when the running value is another.
 */
export interface NeededSetting {
  name: string;
  accepted?: string[];
  min?: number;
  max?: number;
  to: string;
}

/**
 * The one list of what a cluster needs for WAL archiving to the target's
 * repository, from pgBackRest's user guide (2.45, "Configure Archiving":
 * archive_command, archive_mode, wal_level) and PostgreSQL's documentation.
 * The guide's max_wal_senders = 3 is for replicas to be added later; pgBackRest
 * backs up a primary over SQL and archive_command, so it is left as it is (and
 * no restart is spent on it). The host script checks them (host/prepare-host.sh).
 */
export function neededSettings(target: Target): NeededSetting[] {
  const archiveCommand = archiveCommandOf(target);
  return [
    // minimal leaves out of the WAL what a backup and a recovery replay.
    { name: 'wal_level', accepted: ['replica', 'logical'], to: 'replica' },
    { name: 'archive_mode', accepted: ['on', 'always'], to: 'on' },
    { name: 'archive_command', accepted: [archiveCommand], to: archiveCommand },
    // From PostgreSQL 15 an archive library replaces archive_command (16 refuses both).
    { name: 'archive_library', accepted: [''], to: '' },
    // A quiet database still closes a segment, and so reaches the repository, this often.
    {
      name: 'archive_timeout',
      min: 1,
      max: MAX_ARCHIVE_TIMEOUT_SECONDS,
      to: String(MAX_ARCHIVE_TIMEOUT_SECONDS),
    },
  ];
}

/** What an operator types: every field optional, anything else refused. */
export const prepareInputSchema = z.strictObject({
  /** One target; left out, every target with pgbackrest settings. */
  target: z.optional(targetName),
  /** Only read the host and say what a run would change. */
  dryRun: z._default(z.boolean(), false),
});

/** One target's command: its name, the run, and whether it only reads. */
export const prepareHostPlanSchema = z.object({
  target: targetName,
  runId: runIdentifier,
  dryRun: z.boolean(),
});

export type PrepareHostPlan = z.infer<typeof prepareHostPlanSchema>;

export const preparePlanSchema = z.object({
  dryRun: z.boolean(),
  hosts: z.array(prepareHostPlanSchema),
  /** Targets left out of a run over every target, and why. */
  skipped: z.array(z.object({ target: targetName, reason: z.string() })),
});

export type PreparePlan = z.infer<typeof preparePlanSchema>;

/**
 * The targets to prepare: the input's (refused when it has no pgbackrest
 * settings, with the fix), or every target that has them (the others named in
 * `skipped`; none at all is refused).
 */
export function planPrepareHost(config: Config, request: unknown): PreparePlan {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${PREPARE_STATE.plan} request`,
  );
  const wanted = parseInput(prepareInputSchema, input ?? {}, 'The execution input');
  const targets = selectTargets(config, wanted.target);
  const physical = targets.filter((t) => t.pgbackrest !== undefined);
  // Throws the ConfigError that names the fix: the named target, or the first of none.
  if (wanted.target !== undefined || physical.length === 0) for (const t of targets) pgbackrestOf(t);
  const iso = new Date(startedAt).toISOString();
  return {
    dryRun: wanted.dryRun,
    hosts: physical.map((t) => ({
      target: t.name,
      runId: makeRunId(iso, `${executionId}/${t.name}`),
      dryRun: wanted.dryRun,
    })),
    skipped: targets
      .filter((t) => t.pgbackrest === undefined)
      .map((t) => ({
        target: t.name,
        reason:
          'no pgbackrest settings in BACKUP_TARGETS (its physical backups are off; add them to prepare it)',
      })),
  };
}

/** The host command: everything it writes and checks comes from config at send time, never from the execution's state. */
export const PREPARE_HOST_COMMANDS = {
  'prepare-host': hostCommand({
    request: z.object({ script: z.literal('prepare-host'), plan: prepareHostPlanSchema }),
    script: 'prepare-host',
    params: (config, target, { plan }) => {
      const pg = pgbackrestOf(target);
      return {
        ...postgresParams(target),
        ...pgbackrestParams(config, target),
        KB_PGBACKREST_CONF: pgbackrestConfOf(config, target),
        KB_PGBACKREST_DIRS: `${pg.lockPath} ${pg.logPath}`,
        KB_PG_DATA: pg.dataDirectory,
        KB_PG_SOCKET: pg.socketPath,
        KB_PG_PORT: String(pg.port),
        // pgBackRest connects as the OS user's own role when no user is given.
        KB_PG_USER: pg.user ?? pg.osUser,
        KB_SETTINGS: JSON.stringify(neededSettings(target)),
        KB_DRY_RUN: String(plan.dryRun),
        KB_DATABASE: target.database,
      };
    },
  }),
};

/**
 * What the role the host scripts connect as needs beyond a login: WAL runs call
 * pg_switch_wal() (its EXECUTE is revoked from PUBLIC) and list the archive
 * status directory (pg_ls_archive_statusdir, pg_monitor's); the monitoring reads
 * pg_stat_archiver. host/prepare-host.sh grants each one the role lacks.
 */
export const HOST_ROLE_GRANTS = ['pg_monitor', 'EXECUTE ON FUNCTION pg_switch_wal()'] as const;

/** What host/prepare-host.sh reports on its KB-RESULT line. */
export const prepareResultSchema = z.object({
  dryRun: z.boolean(),
  config: z.object({
    file: z.string(),
    /** Whether there was a file before (`written` over one, or a new file). */
    existed: z.boolean(),
    state: z.enum(['unchanged', 'written', 'would-write']),
    /** `section/option` of every option that differs (names only: a file edited by hand may hold a secret). */
    changedOptions: z.array(z.string()),
  }),
  /** Lock and log directories made (or, in a dry run, that would be). */
  createdPaths: z.array(z.string()),
  settings: z.object({
    /** Set with ALTER SYSTEM (or, in a dry run, that would be); `restart`: takes effect only after one. */
    changed: z.array(z.object({ name: z.string(), from: z.string(), to: z.string(), restart: z.boolean() })),
    /** Set already, by an earlier run, and waiting for a restart. */
    awaitingRestart: z.array(z.object({ name: z.string(), running: z.string(), to: z.string() })),
  }),
  /**
   * The role the other host scripts connect as (the host's own environment), and
   * what was granted to it (or, in a dry run, would be): only what it lacked.
   */
  grants: z.object({ role: z.string(), granted: z.array(z.enum(HOST_ROLE_GRANTS)) }),
  restartNeeded: z.boolean(),
  /** `created`: stanza-create succeeded (it does on a stanza that exists); exists/missing/unknown: a dry run's reading. */
  stanza: z.enum(['created', 'failed', 'skipped', 'exists', 'missing', 'unknown']),
  check: z.enum(['passed', 'failed', 'skipped']),
  /** The end of pgBackRest's output when stanza-create or check failed. */
  error: z.nullable(z.string()),
});

export type PrepareResult = z.infer<typeof prepareResultSchema>;

const quoted = (value: string) => `'${value}'`;

/** A setting as an operator would write it in postgresql.conf. */
const assignment = (s: { name: string; to: string }) => `${s.name} = ${quoted(s.to)}`;

/**
 * What a cluster still lacks for pgBackRest, by a dry run's result, one line
 * each: empty when it is ready. The local runner prints these for a cluster of
 * its own (DATABASE_URL and PGDATA).
 */
export function lackingOf(target: string, result: PrepareResult): string[] {
  return [
    ...(result.config.state === 'unchanged' ? [] : [`the rendered pgbackrest.conf at ${result.config.file}`]),
    ...result.createdPaths.map((p) => `the directory ${p}, owned by the cluster's OS user`),
    ...result.settings.changed.map(
      (s) => `${assignment(s)} (now ${quoted(s.from)}${s.restart ? '; takes a restart' : ''})`,
    ),
    ...result.settings.awaitingRestart.map(
      (s) => `a PostgreSQL restart, for ${assignment(s)} to take effect`,
    ),
    ...result.grants.granted.map((g) => `${g} granted to the host's role ${result.grants.role}`),
    ...(result.stanza === 'exists' ? [] : [`the pgBackRest stanza ${target} (stanza-create)`]),
  ];
}

/** One target's preparation in plain words: what changed (or would), then what to do next. */
export function describePreparation(target: string, r: PrepareResult): string {
  const { file, state, existed, changedOptions } = r.config;
  const lines = [
    state === 'unchanged'
      ? `pgbackrest.conf ${file} is the rendered one`
      : `pgbackrest.conf ${file} ${r.dryRun ? 'would be written' : 'written'} (${existed ? (changedOptions.length > 0 ? `options that differed: ${changedOptions.join(', ')}` : 'only comments or spacing differed') : 'new file'})`,
    ...(r.createdPaths.length > 0
      ? [`${r.dryRun ? 'would create' : 'created'} ${r.createdPaths.join(', ')}`]
      : []),
    ...(r.settings.changed.length > 0
      ? [
          `PostgreSQL settings ${r.dryRun ? 'that would be ' : ''}set with ALTER SYSTEM: ${r.settings.changed
            .map(
              (s) => `${s.name} ${quoted(s.from)} → ${quoted(s.to)}${s.restart ? ' (takes a restart)' : ''}`,
            )
            .join('; ')}`,
        ]
      : []),
    ...r.settings.awaitingRestart.map(
      (s) => `${s.name} is set to ${quoted(s.to)} and waits for a restart (running: ${quoted(s.running)})`,
    ),
    ...(r.settings.changed.length + r.settings.awaitingRestart.length === 0
      ? ['PostgreSQL settings: as pgBackRest needs them']
      : []),
    r.grants.granted.length > 0
      ? `${r.dryRun ? 'would grant' : 'granted'} ${r.grants.granted.join(' and ')} to ${r.grants.role}, the role the host's backups connect as`
      : `the role the host's backups connect as, ${r.grants.role}, has what they need (pg_monitor, EXECUTE on pg_switch_wal())`,
    stanzaLine(target, r),
  ];
  return `${target}:\n${lines.map((l) => `- ${l}`).join('\n')}\n${nextStep(target, r)}`;
}

function stanzaLine(target: string, r: PrepareResult): string {
  switch (r.stanza) {
    case 'created':
      return r.check === 'passed'
        ? `stanza ${target} in place, and pgbackrest check passed: WAL reaches the repository`
        : `stanza ${target} in place, but pgbackrest check failed: ${r.error ?? 'no output'}`;
    case 'failed':
      return `pgbackrest stanza-create failed: ${r.error ?? 'no output'}`;
    case 'skipped':
      return 'stanza-create and check wait for the restart';
    case 'exists':
      return `stanza ${target} exists`;
    case 'missing':
      return `stanza ${target} does not exist yet (a run creates it)`;
    case 'unknown':
      return 'the stanza is looked for once the rendered pgbackrest.conf is in place';
  }
}

function nextStep(target: string, r: PrepareResult): string {
  if (r.dryRun) {
    return `Dry run: nothing was changed.${lackingOf(target, r).length === 0 ? ' The host is ready.' : r.restartNeeded ? ' A run would need a PostgreSQL restart afterwards.' : ''}`;
  }
  if (r.restartNeeded)
    return `Next: restart PostgreSQL on ${target} (e.g. systemctl restart postgresql, or restart its compose service), then start prepare-host again: it creates the stanza and runs check.`;
  if (r.check === 'passed') return 'Ready: the physical backups can run.';
  return 'Next: fix what pgBackRest reported above, then start prepare-host again.';
}

/**
 * What ReportPrepareHost gets: the plan, and each target's result or how its
 * command failed. Built when the report runs, as the other reports' are.
 */
function preparedSchema() {
  const R = PREPARE_RESULT;
  return z.object({
    [R.plan]: preparePlanSchema,
    [R.hosts]: z.array(
      z.object({
        [R.host]: prepareHostPlanSchema,
        // A command that failed leaves its Start's state (no result) beside the error.
        [R.command]: z.optional(z.object({ result: z.optional(prepareResultSchema) })),
        [R.failed]: z.pipe(z.optional(failedStatesSchema), z.transform(firstFailure)),
      }),
    ),
  });
}

export interface PrepareReport {
  dryRun: boolean;
  /** Some target changed a setting that takes effect only after a PostgreSQL restart. */
  restartNeeded: boolean;
  summary: string;
  targets: { target: string; result: PrepareResult }[];
  skipped: PreparePlan['skipped'];
}

/**
 * The execution's output and its notification: per target, what changed and
 * what to do next. Throws PrepareHostFailedError, saying the same and what
 * failed, when a target's command failed or pgBackRest's stanza-create or check did.
 */
export function reportPrepareHost(request: unknown): PrepareReport {
  const { plan, hosts } = parseInput(preparedSchema(), request, `The ${PREPARE_STATE.report} request`);
  const targets: PrepareReport['targets'] = [];
  const parts: string[] = [];
  const failed: string[] = [];
  for (const { host, command, failed: failure } of hosts) {
    const result = command?.result;
    if (!result) {
      failed.push(host.target);
      parts.push(
        `${host.target}: not prepared (${failure?.Error ?? 'no result'} in ${failure?.state ?? 'its command'}): ${failure ? causeMessage(failure.Cause) : ''}`,
      );
      continue;
    }
    targets.push({ target: host.target, result });
    parts.push(describePreparation(host.target, result));
    if (result.stanza === 'failed' || result.check === 'failed') failed.push(host.target);
  }
  parts.push(...plan.skipped.map((s) => `${s.target}: skipped, ${s.reason}`));
  const summary = parts.join('\n\n');
  if (failed.length > 0)
    throw new PrepareHostFailedError(`prepare-host did not prepare ${failed.join(', ')}:\n\n${summary}`);
  return {
    dryRun: plan.dryRun,
    restartNeeded: !plan.dryRun && targets.some((t) => t.result.restartNeeded),
    summary: plan.dryRun ? `Dry run, nothing was changed.\n\n${summary}` : summary,
    targets,
    skipped: plan.skipped,
  };
}

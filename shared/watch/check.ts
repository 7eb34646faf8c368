import { CHECK_RESULT, CHECK_STATE } from '../../statemachines/check.ts';
import { CHECK_PROBE_PREFIX, runId as makeRunId } from '../catalog/keys.ts';
import { unloggedFields, unloggedNote, unloggedOf } from '../catalog/unlogged.ts';
import { type Config, selectTargets, type Target } from '../core/config.ts';
import { CheckFailedError, causeMessage, failedStatesSchema, firstFailure } from '../core/errors.ts';
import { runIdentifier, targetName } from '../core/identifiers.ts';
import { parseInput, planRequestSchema } from '../core/input.ts';
import { redact } from '../core/redact.ts';
import * as z from '../core/schema.ts';
import { pgbackrestParams } from '../host/pgbackrest-conf.ts';
import { type NeededSetting, neededSettings } from '../host/prepare.ts';
import { hostCommand, postgresParams } from '../host/scripts.ts';

/**
 * The preflight (the check workflow, `npm run local -- check`): everything a run
 * needs, each line OK or the exact fix. The host reports facts
 * (host/check.sh); this module words them against the one list of each need:
 * the tools, the README's least-privilege role, the settings WAL archiving needs
 * (prepare.ts neededSettings), S3, and the alert channels.
 */

/** Where a tool is looked for: a PostgreSQL client where the database lives, a host command, a Python 3 module. */
type ToolPlace = 'pg' | 'host' | 'python';

/** The tools the host scripts run, and the Debian package that gives each. */
const TOOLS: readonly { place: ToolPlace; name: string; package: string; pgbackrest?: true }[] = [
  { place: 'pg', name: 'pg_dump', package: 'postgresql-client' },
  { place: 'pg', name: 'psql', package: 'postgresql-client' },
  { place: 'host', name: 'zstd', package: 'zstd' },
  { place: 'host', name: 'aws', package: 'awscli' },
  // The host's uploader (boto3 through Debian's python3-boto3).
  { place: 'python', name: 'boto3', package: 'python3-boto3' },
  { place: 'pg', name: 'pgbackrest', package: 'pgbackrest', pgbackrest: true },
];

/** The name a missing tool is reported by (host/check.sh): a module as its Debian package. */
const reportedName = (tool: (typeof TOOLS)[number]) =>
  tool.place === 'python' ? `python3-${tool.name}` : tool.name;

/** The predefined roles of the README's least-privilege role, and what each is for. */
const ROLES: readonly { role: string; why: string; pgbackrest?: true }[] = [
  { role: 'pg_read_all_data', why: 'pg_dump reads every table and sequence, whoever owns it' },
  { role: 'pg_monitor', why: 'WAL runs and monitoring read the archiver', pgbackrest: true },
  { role: 'pg_signal_backend', why: 'a swap over production ends the sessions left on it' },
];

export const checkInputSchema = z.strictObject({
  /** One target; left out, every target. */
  target: z.optional(targetName),
});

export const checkHostPlanSchema = z.object({ target: targetName, runId: runIdentifier });

export const checkPlanSchema = z.object({ hosts: z.array(checkHostPlanSchema) });

export type CheckPlan = z.infer<typeof checkPlanSchema>;

export function planCheck(config: Config, request: unknown): CheckPlan {
  const { input, executionId, startedAt } = parseInput(
    planRequestSchema,
    request,
    `The ${CHECK_STATE.plan} request`,
  );
  const wanted = parseInput(checkInputSchema, input ?? {}, 'The execution input');
  const iso = new Date(startedAt).toISOString();
  return {
    hosts: selectTargets(config, wanted.target).map((t) => ({
      target: t.name,
      runId: makeRunId(iso, `${executionId}/${t.name}`),
    })),
  };
}

export const CHECK_HOST_COMMANDS = {
  check: hostCommand({
    request: z.object({ script: z.literal('check'), plan: checkHostPlanSchema }),
    script: 'check',
    // What is checked comes from config at send time, as what the other commands run does.
    params: (config, target, { plan }) => ({
      ...postgresParams(target),
      KB_TOOLS: TOOLS.filter((t) => !t.pgbackrest || target.pgbackrest)
        .map((t) => `${t.place} ${t.name}`)
        .join('\n'),
      KB_DATABASES: (target.databases ?? [target.database]).join(' '),
      KB_ROLES: ROLES.map((r) => r.role).join(' '),
      KB_SETTINGS: target.pgbackrest
        ? neededSettings(target)
            .map((s) => s.name)
            .join(' ')
        : '',
      KB_BUCKET: config.BACKUP_BUCKET,
      KB_S3_ENDPOINT_URL: config.S3_ENDPOINT_URL ?? '',
      KB_PROBE_KEY: `${CHECK_PROBE_PREFIX}${target.name}/${plan.runId}.probe`,
      ...(target.pgbackrest ? pgbackrestParams(config, target) : { KB_STANZA: '' }),
    }),
  }),
};

/** What host/check.sh reports. */
export const checkResultSchema = z.object({
  tools: z.object({ missing: z.array(z.string()) }),
  databases: z.array(z.object({ name: z.string(), reachable: z.boolean(), error: z.nullable(z.string()) })),
  role: z.nullable(
    z.object({
      name: z.string(),
      superuser: z.boolean(),
      createdb: z.boolean(),
      createrole: z.boolean(),
      memberOf: z.array(z.string()),
      switchWal: z.boolean(),
      owners: z.array(z.object({ database: z.string(), owner: z.string(), member: z.boolean() })),
    }),
  ),
  settings: z.array(
    z.object({
      name: z.string(),
      setting: z.string(),
      pendingRestart: z.boolean(),
      /** What a restart would make it (the configuration files' last value, else the default); null when unknown. */
      pendingSetting: z.optional(z.nullable(z.string())),
    }),
  ),
  pgbackrest: z.nullable(
    z.object({
      config: z.enum(['current', 'missing', 'differs']),
      check: z.enum(['passed', 'failed', 'skipped']),
      error: z.nullable(z.string()),
    }),
  ),
  s3: z.object({ put: z.string(), delete: z.string(), key: z.string() }),
  /** The databases' unlogged tables and sequences (with pgBackRest only): a physical recovery brings them back empty. */
  ...unloggedFields,
});

export type CheckResult = z.infer<typeof checkResultSchema>;

/** One line of the preflight: what was checked, and OK or the exact fix. */
export interface CheckLine {
  target: string;
  check:
    | 'tools'
    | 'database'
    | 'grants'
    | 'archive-settings'
    | 'pgbackrest'
    | 's3'
    | 'alerts'
    | 'host'
    | 'unlogged';
  ok: boolean;
  /** Something to know, not to fix: printed NOTE, and never fails the check. */
  note?: true;
  /** What was found, for an OK line; the fix, for one that is not. */
  text: string;
}

/** Judges one target's facts: a line per need, OK or the fix. */
export function judgeHost(config: Config, target: Target, r: CheckResult): CheckLine[] {
  const line = (check: CheckLine['check'], ok: boolean, text: string): CheckLine => ({
    target: target.name,
    check,
    ok,
    text: redact(text),
  });
  const lines: CheckLine[] = [];
  const needed = TOOLS.filter((t) => !t.pgbackrest || target.pgbackrest);
  const missing = needed.filter((t) => r.tools.missing.includes(reportedName(t)));
  lines.push(
    missing.length === 0
      ? line('tools', true, `${needed.map(reportedName).join(', ')} found`)
      : line(
          'tools',
          false,
          `${missing.map(reportedName).join(', ')} not found on the host's PATH${target.postgres.mode === 'docker' && missing.some((t) => t.place === 'pg') ? ' (PostgreSQL clients: in the compose service)' : ''}: apt-get install -y ${[...new Set(missing.map((t) => t.package))].join(' ')}`,
        ),
  );
  for (const d of r.databases)
    lines.push(
      d.reachable
        ? line('database', true, `${d.name} reachable as ${r.role?.name ?? "the host's role"}`)
        : line(
            'database',
            false,
            `${d.name} not reachable with the host's own settings (${d.error ?? 'no error'}): set PGHOST, PGUSER and PGPASSWORD (or ~/.pgpass) in the host's environment, and allow the role in pg_hba.conf`,
          ),
    );
  const role = r.role;
  if (role) lines.push(grantsLine(target, role, line));
  const unlogged = unloggedNote(unloggedOf(r));
  if (unlogged)
    lines.push({
      ...line('unlogged', true, `After a point-in-time recovery or a pgBackRest restore, ${unlogged}`),
      note: true,
    });
  if (target.pgbackrest) {
    for (const need of neededSettings(target)) {
      const found = r.settings.find((s) => s.name === need.name);
      if (!found) continue; // archive_library: not in PostgreSQL before 15
      lines.push(settingLine(target, need, found, r.settings, line));
    }
    const p = r.pgbackrest;
    if (p)
      lines.push(
        p.config !== 'current'
          ? line(
              'pgbackrest',
              false,
              `pgbackrest.conf ${p.config === 'missing' ? 'is missing' : 'differs from the one rendered for this target'}: start the prepare-host workflow for ${target.name}`,
            )
          : p.check === 'passed'
            ? line('pgbackrest', true, 'pgbackrest.conf is the rendered one and pgbackrest check passed')
            : line(
                'pgbackrest',
                false,
                p.check === 'skipped'
                  ? `pgbackrest check could not run: apt-get install -y pgbackrest`
                  : `pgbackrest check failed (${p.error ?? 'no output'}): read archive_command's error in the PostgreSQL log; start the prepare-host workflow for ${target.name}`,
              ),
      );
  } else {
    lines.push(
      line(
        'archive-settings',
        false,
        `no pgbackrest settings in BACKUP_TARGETS, so no WAL is archived (an RPO of a day): add a pgbackrest block for ${target.name}, then start prepare-host`,
      ),
    );
  }
  const bucket = `s3://${config.BACKUP_BUCKET}/${CHECK_PROBE_PREFIX}`;
  lines.push(
    r.s3.put !== 'ok'
      ? line(
          's3',
          false,
          `S3 is not writable from the host (${r.s3.put}): check ${config.S3_ENDPOINT_URL ? `that ${config.S3_ENDPOINT_URL} answers` : "the host's network route to S3"} and that the instance role has HostBackupPolicyArn attached`,
        )
      : r.s3.delete !== 'ok'
        ? line(
            's3',
            false,
            `S3 took the probe ${r.s3.key} but would not remove it (${r.s3.delete}): attach HostBackupPolicyArn to the instance role, and delete ${r.s3.key} by hand`,
          )
        : line('s3', true, `wrote and removed a probe under ${bucket}`),
  );
  return lines;
}

type Setting = CheckResult['settings'][number];

/** Whether `value` is one a need accepts. */
function accepts(need: NeededSetting, value: string): boolean {
  return (
    need.accepted?.includes(value) ??
    (Number(value) >= (need.min ?? -Infinity) && Number(value) <= (need.max ?? Infinity))
  );
}

/**
 * One archiving setting's line. A setting that waits for a restart is judged by
 * the value the restart would give it (host/check.sh pendingSetting): a restart
 * is advised only when that value is the one needed, never one that would turn
 * archiving off. archive_command reads '(disabled)' while archive_mode is off:
 * that is archive_mode's fault, named there.
 */
function settingLine(
  target: Target,
  need: NeededSetting,
  found: Setting,
  settings: readonly Setting[],
  line: (check: CheckLine['check'], ok: boolean, text: string) => CheckLine,
): CheckLine {
  const value = found.setting;
  const prepare = `start the prepare-host workflow for ${target.name}`;
  const setIt = `ALTER SYSTEM SET ${need.name} = '${need.to.replaceAll("'", "''")}'`;
  if (!found.pendingRestart) {
    if (accepts(need, value)) return line('archive-settings', true, `${need.name} = '${value}'`);
    const archiveMode = settings.find((s) => s.name === 'archive_mode');
    if (need.name === 'archive_command' && value === '(disabled)' && archiveMode)
      return line(
        'archive-settings',
        false,
        `archive_command is not in effect while archive_mode is '${archiveMode.setting}': fix archive_mode (its line says how), then run check again`,
      );
    return line(
      'archive-settings',
      false,
      `${need.name} is '${value}', not '${need.to}': ${prepare} (it sets it; then restart PostgreSQL if it says so)`,
    );
  }
  const pending = found.pendingSetting;
  if (pending === null || pending === undefined)
    return line(
      'archive-settings',
      false,
      `${need.name} waits for a PostgreSQL restart, to a value the host's role cannot read (pg_file_settings is for superusers): as a superuser, SELECT setting FROM pg_file_settings WHERE name = '${need.name}'; restart PostgreSQL only if the last is '${need.to}', otherwise ${prepare} first (or ${setIt} and SELECT pg_reload_conf())`,
    );
  if (accepts(need, pending))
    return line(
      'archive-settings',
      false,
      `${need.name} is '${value}' and waits for a PostgreSQL restart to become '${pending}': restart PostgreSQL`,
    );
  return line(
    'archive-settings',
    false,
    `${need.name} is '${value}' and a PostgreSQL restart would make it '${pending}', not '${need.to}': do not restart for it; ${prepare} (it sets it), or as a superuser ${setIt} and SELECT pg_reload_conf(), then restart PostgreSQL`,
  );
}

function grantsLine(
  target: Target,
  role: NonNullable<CheckResult['role']>,
  line: (check: CheckLine['check'], ok: boolean, text: string) => CheckLine,
): CheckLine {
  if (role.superuser) return line('grants', true, `${role.name} is a superuser`);
  const lacking = [
    ...(role.createdb ? [] : [`ALTER ROLE ${role.name} CREATEDB`]),
    ...(role.createrole ? [] : [`ALTER ROLE ${role.name} CREATEROLE`]),
    ...ROLES.filter((r) => (!r.pgbackrest || target.pgbackrest) && !role.memberOf.includes(r.role)).map(
      (r) => `GRANT ${r.role} TO ${role.name}`,
    ),
    ...(target.pgbackrest && !role.switchWal
      ? [`GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO ${role.name}`]
      : []),
    ...role.owners.filter((o) => !o.member).map((o) => `GRANT ${o.owner} TO ${role.name}`),
  ];
  return lacking.length === 0
    ? line('grants', true, `${role.name} holds the least-privilege grants`)
    : line(
        'grants',
        false,
        `as a superuser, run: ${lacking.join('; ')} (README: least privilege in the database)`,
      );
}

/** Says whether the alert channels are configured: the lines of each (Slack, e-mail; locally the file). */
export type AlertChannelCheck = () => Promise<Omit<CheckLine, 'target' | 'check'>[]>;

/**
 * What ReportCheck gets: the plan, and each host's result or how its command
 * failed. Built when the report runs, as the other reports' are.
 */
function checkedSchema() {
  const R = CHECK_RESULT;
  return z.object({
    [R.plan]: checkPlanSchema,
    [R.hosts]: z.array(
      z.object({
        [R.host]: checkHostPlanSchema,
        [R.command]: z.optional(z.object({ result: z.optional(checkResultSchema) })),
        [R.failed]: z.pipe(z.optional(failedStatesSchema), z.transform(firstFailure)),
      }),
    ),
  });
}

export interface CheckReport {
  ok: boolean;
  lines: CheckLine[];
  summary: string;
}

/** One line per check, `OK` or `FIX`, as `npm run local -- check` prints them. */
export function formatCheck(lines: readonly CheckLine[]): string {
  return lines
    .map(
      (l) =>
        `${l.note ? 'NOTE' : l.ok ? 'OK ' : 'FIX'}  ${l.target.padEnd(10)} ${l.check.padEnd(16)} ${l.text}`,
    )
    .join('\n');
}

/**
 * Every target's lines and the alert channels'. Returns them when every line is
 * OK; throws CheckFailedError listing them all (the OK ones too) otherwise.
 */
export async function reportCheck(
  config: Config,
  request: unknown,
  alertChannels: AlertChannelCheck,
): Promise<CheckReport> {
  const { hosts } = parseInput(checkedSchema(), request, `The ${CHECK_STATE.report} request`);
  const lines: CheckLine[] = [];
  for (const { host, command, failed } of hosts) {
    const target = selectTargets(config, host.target)[0] as Target;
    const result = command?.result;
    if (result) lines.push(...judgeHost(config, target, result));
    else
      lines.push({
        target: host.target,
        check: 'host',
        ok: false,
        text: redact(
          `the check could not run on the host (${failed?.Error ?? 'no result'}: ${failed ? causeMessage(failed.Cause).slice(0, 600) : ''}): the SSM agent must be running and the instance registered with Systems Manager`,
        ),
      });
  }
  for (const channel of await alertChannels()) lines.push({ target: '(all)', check: 'alerts', ...channel });
  const ok = lines.every((l) => l.ok);
  const summary = formatCheck(lines);
  if (!ok)
    throw new CheckFailedError(`${lines.filter((l) => !l.ok).length} check(s) need a fix:\n${summary}`);
  return { ok, lines, summary };
}

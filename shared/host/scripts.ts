import { CODECS, type CodecName } from '../core/codecs.ts';
import type { Config, Target } from '../core/config.ts';
import * as z from '../core/schema.ts';
import { type HostScript, renderScript } from './shell.ts';

/**
 * What every host command is made of: the request it takes from the state
 * machine (its `script` name, its plan and any results) and how the rendered
 * script's parameters are derived from that request, the config and the target,
 * so an edited execution input cannot point a script anywhere else. Each role
 * (backup/, restore/, watch/) defines its own commands; the start stage is given
 * the whole list.
 */
export interface HostCommand<R extends HostCommandRequestBase = HostCommandRequestBase> {
  /** The request's schema: `{ script: <its name>, plan, … }`. */
  request: z.ZodMiniType<R>;
  /** The bash file in host/ that runs it. */
  script: HostScript;
  params(config: Config, target: Target, request: R): Record<string, string>;
}

/** What every request names: the command, and the target and run it belongs to. */
export interface HostCommandRequestBase {
  script: string;
  plan: { target: string; runId: string };
}

/** A command whose params take the request its schema parses (the inference the literal alone cannot give). */
export function hostCommand<R extends HostCommandRequestBase>(command: HostCommand<R>): HostCommand<R> {
  return command;
}

/** Commands by name (`params` is a method, so a command of any request fits). */
export type HostCommandsByName = Record<string, HostCommand>;

/** The request type of a set of commands: the union of each one's. */
export type RequestOf<C extends HostCommandsByName> = {
  [K in keyof C]: C[K] extends HostCommand<infer R> ? R : never;
}[keyof C];

/** A set of commands and the one schema of their requests, told apart by `script`. */
export interface HostCommandSet<C extends HostCommandsByName = HostCommandsByName> {
  commands: C;
  request: z.ZodMiniType<RequestOf<C>>;
}

export function hostCommandSet<C extends HostCommandsByName>(commands: C): HostCommandSet<C> {
  const requests = Object.values(commands).map((c) => c.request) as unknown as [
    z.ZodMiniObject,
    ...z.ZodMiniObject[],
  ];
  return {
    commands,
    request: z.discriminatedUnion('script', requests) as unknown as z.ZodMiniType<RequestOf<C>>,
  };
}

/**
 * Renders a request into the bash that Run Command executes. Every script is
 * told its run (KB_RUN_ID): its work directory is named after it (common.sh
 * work_dir), so that the run's clean-up finds what a killed command left.
 */
export function renderHostCommand<R extends HostCommandRequestBase>(
  config: Config,
  target: Target,
  command: HostCommand<R>,
  request: R,
): string {
  return renderScript(command.script, {
    KB_RUN_ID: request.plan.runId,
    ...command.params(config, target, request),
  });
}

/** Where the PostgreSQL tools run: on the host, or in the compose service. */
export function postgresParams(target: Target): Record<string, string> {
  const pg = target.postgres;
  return pg.mode === 'docker'
    ? { KB_PG_MODE: 'docker', KB_COMPOSE_FILE: pg.composeFile, KB_COMPOSE_SERVICE: pg.service }
    : { KB_PG_MODE: 'host', KB_COMPOSE_FILE: '', KB_COMPOSE_SERVICE: '' };
}

/** The archives a restore applies, one line each; every field passed a strict pattern. */
export function archiveLines(
  archives: readonly { key: string; sha256: string; localPath: string; codec: CodecName }[],
): string {
  return archives.map((a) => `${a.key} ${a.sha256} ${a.localPath} ${CODECS[a.codec].decompress}`).join('\n');
}

/**
 * The version of each archive a restore fetches from S3 (host/common.sh
 * intact_copy reads them), one line each, `KEY VERSION-ID`: the one its backup
 * wrote, as the record of its creation names it, whatever the current one is.
 * Archives without a version (the local S3 keeps none) are left out.
 */
export function archiveVersionLines(archives: readonly { key: string; versionId: string | null }[]): string {
  return archives.flatMap((a) => (a.versionId ? [`${a.key} ${a.versionId}`] : [])).join('\n');
}

/** Configured commands run by run-commands.sh, one per line: from config at send time, never from the execution's state. */
export function commandLines(what: string, commands: readonly string[]): Record<string, string> {
  return { KB_WHAT: what, KB_COMMANDS: commands.join('\n') };
}

/**
 * The scripts that end by printing one `KB-RESULT {...}` line: the facts only the
 * host knows, for the next stage. Their success without that line is a failure.
 */
export const REPORTING_SCRIPTS: ReadonlySet<HostScript> = new Set([
  'database-backup',
  'files-backup',
  'check-local-copies',
  'disk-usage',
  'prepare-host',
  'physical-restore-test',
  'wal-switch',
  'pgbackrest-verify',
  'wal-archiving',
  'pgbackrest-backup',
  'pgbackrest-expire',
  'restore-archive',
  'files-restore',
  'carry-log-rows',
  'restore-cleanup',
  'check',
]);

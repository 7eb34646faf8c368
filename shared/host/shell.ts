import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Host scripts are bash files in host/, rendered by prefixing them with their
 * parameters as shell assignments. Every value goes through `shellQuote`; the
 * names are checked here. Nothing secret is ever a parameter: the host reads
 * credentials from its own environment.
 */

export function shellQuote(value: string): string {
  if (value.includes('\0')) throw new Error('A shell argument cannot contain a NUL byte.');
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

// In a Lambda bundle the scripts are packaged beside the handler under host/.
const HOST_DIR = process.env.LAMBDA_TASK_ROOT
  ? join(process.env.LAMBDA_TASK_ROOT, 'host')
  : fileURLToPath(new URL('../../host/', import.meta.url));

export const HOST_SCRIPTS = [
  'database-backup',
  'files-backup',
  'restore-archive',
  'database-swap',
  'carry-log-rows',
  'restore-cleanup',
  'run-commands',
  'files-restore',
  'check-local-copies',
  'disk-usage',
  'prune-local',
  'prepare-host',
  'physical-restore-test',
  'wal-switch',
  'pgbackrest-verify',
  'wal-archiving',
  'pgbackrest-backup',
  'pgbackrest-expire',
  'point-in-time-restore',
  'check',
] as const;
export type HostScript = (typeof HOST_SCRIPTS)[number];

/**
 * The scripts that run a side cluster, or stop one and start the cluster's own
 * server (restore-cleanup): host/side-cluster.sh is rendered after common.sh for them.
 */
export const SIDE_CLUSTER_SCRIPTS: ReadonlySet<HostScript> = new Set([
  'physical-restore-test',
  'point-in-time-restore',
  'restore-cleanup',
]);

/**
 * The scripts that upload (host/common.sh s3_put: an archive, or the check's probe, written as a backup is): host/s3-put.py,
 * the uploader, is rendered into them as the shell variable S3_PUT_PY.
 */
export const UPLOADING_SCRIPTS: ReadonlySet<HostScript> = new Set([
  'database-backup',
  'files-backup',
  'check',
]);

const bodies = new Map<string, string>();

function body(script: HostScript | 'common' | 'side-cluster' | 's3-put.py'): string {
  let text = bodies.get(script);
  if (text === undefined) {
    text = readFileSync(join(HOST_DIR, script.endsWith('.py') ? script : `${script}.sh`), 'utf8');
    bodies.set(script, text);
  }
  return text;
}

/**
 * s3_put's uploader as one shell assignment (`S3_PUT_PY='…'`), which the
 * uploading scripts' text holds (the host has nothing of ours installed).
 * Whole-line comments are left out: they are for the file's reader, and the
 * command's text stays small.
 */
export function s3PutProgram(): string {
  const code = body('s3-put.py')
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n');
  return `S3_PUT_PY=${shellQuote(code)}`;
}

export function renderScript(script: HostScript, params: Record<string, string>): string {
  const lines = Object.entries(params).map(([name, value]) => {
    if (!/^KB_[A-Z0-9_]+$/.test(name)) throw new Error(`Bad host-script parameter name: ${name}`);
    return `${name}=${shellQuote(value)}`;
  });
  return [
    `#!/bin/bash\n# kennel-backup ${script}`,
    ...lines,
    ...(UPLOADING_SCRIPTS.has(script) ? [s3PutProgram()] : []),
    body('common'),
    ...(SIDE_CLUSTER_SCRIPTS.has(script) ? [body('side-cluster')] : []),
    body(script).replace(/^#!.*\n/, ''),
  ].join('\n');
}

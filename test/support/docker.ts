import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * No Docker engine here: a stand-in `docker` that accepts only
 * `docker compose -f COMPOSE_FILE exec -T [-u USER] SERVICE TOOL ...`, records
 * `USER TOOL` (root when no -u is given, the container's default), and runs the
 * tool as that user, as the database service's container would. Put `bin` first
 * on the host's PATH.
 */
export function dockerStandIn(composeFile: string, service: string) {
  const bin = mkdtempSync(join(tmpdir(), 'kennel-backup-docker-'));
  const log = join(bin, 'calls.log');
  writeFileSync(
    join(bin, 'docker'),
    `#!/bin/bash
[[ $1 == compose && $2 == -f && $3 == ${composeFile} && $4 == exec && $5 == -T ]] || { echo "unexpected docker call: $*" >&2; exit 64; }
shift 5
user=root
if [[ $1 == -u ]]; then user=$2; shift 2; fi
[[ $1 == ${service} ]] || { echo "unexpected service: $1" >&2; exit 64; }
shift
echo "$user $1" >>${JSON.stringify(log)}
if [[ $user == root ]]; then exec "$@"; else exec runuser -u "$user" -- "$@"; fi
`,
    { mode: 0o755 },
  );
  return {
    bin,
    /** Every call so far, `USER TOOL`, in order. */
    calls: (): string[] => readFileSync(log, 'utf8').trim().split('\n'),
    remove: () => rmSync(bin, { recursive: true, force: true }),
  };
}

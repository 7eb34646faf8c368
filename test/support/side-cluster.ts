import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { scratchDirectoryOf } from '../../shared/backup/physical-restore-test.ts';
import type { Target } from '../../shared/core/config.ts';

/**
 * Nothing of a target's point-in-time side clusters left: no scratch directory,
 * no process working in one, and (when known) not the socket directory it used.
 * Other test files run side clusters of their own at the same time: only this
 * world's area counts.
 */
export function expectNoSideCluster(target: Target, socket?: string): void {
  const area = join(scratchDirectoryOf(target), `point-in-time-${target.name}`);
  expect(existsSync(area) ? readdirSync(area) : []).toEqual([]);
  if (socket !== undefined) expect(existsSync(socket)).toBe(false);
  const working: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cwd.startsWith(area) || cmdline.includes(area) || (socket && cmdline.includes(socket)))
        working.push(`${pid} ${cmdline}`);
    } catch {
      // Gone meanwhile.
    }
  }
  expect(working).toEqual([]);
}

/**
 * The guard of a host script started with this hold file in its environment
 * (host/side-cluster.sh side_guard): the leader of a process group of its own,
 * as the script is, but writing nowhere.
 */
export function guardsOf(hold: string): number[] {
  return readdirSync('/proc')
    .filter((pid) => /^\d+$/.test(pid))
    .filter((pid) => {
      try {
        const group = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[2];
        return (
          group === pid &&
          readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`KB_TEST_HOLD_FILE=${hold}`) &&
          readlinkSync(`/proc/${pid}/fd/1`) === '/dev/null'
        );
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { LOCAL_DATABASE, seedOnce } from '../../local/environment.ts';
import { openLocalCluster } from '../../local/postgres.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A stopped cluster directory, initdb'd and seeded with the sample database: each world starts from a copy. */
    seededCluster: string;
  }
}

/**
 * Global setup of the integration tier: the sample cluster made once (initdb and
 * the seeding cost a few CPU seconds, on every world of every file otherwise),
 * stopped, and handed to the workers. A world copies it and starts the copy:
 * the same files initdb and the seeding would have left there.
 */
export default async function setup(project: TestProject): Promise<() => void> {
  const root = mkdtempSync(join(tmpdir(), 'kennel-backup-seeded-'));
  // The server user must get through to the cluster inside it.
  chmodSync(root, 0o711);
  const dir = join(root, 'postgres');
  const cluster = await openLocalCluster(dir);
  try {
    seedOnce(cluster, LOCAL_DATABASE, 1);
  } finally {
    await cluster.stop();
  }
  project.provide('seededCluster', dir);
  return () => rmSync(root, { recursive: true, force: true });
}

/**
 * Puts a copy of the seeded cluster where a world's local stack looks for its
 * cluster (`dataDir/postgres`), owners and modes kept, without the port it ran
 * on (every copy finds a free one).
 */
export function copySeededCluster(template: string, dataDir: string): void {
  const dir = join(dataDir, 'postgres');
  if (existsSync(dir)) return;
  execFileSync('cp', ['-a', template, dir]);
  rmSync(join(dir, 'port'), { force: true });
}

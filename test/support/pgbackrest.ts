import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { asServerUser } from '../../local/postgres.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { pgbackrestArchivePrefix, pgbackrestOf } from '../../shared/host/pgbackrest-conf.ts';
import type { TestWorld } from './environment.ts';

/** What the tests read of `pgbackrest info --output=json`. */
export interface StanzaInfo {
  archive: { id: string; min: string | null; max: string | null }[];
  backup: { label: string; type: string; archive: { start: string; stop: string } }[];
}

/**
 * pgBackRest on the world's stanza, as the server user, the way the host runs it.
 * Asynchronous: a blocked event loop would stall anything this process serves.
 */
export async function pgbackrest(world: TestWorld, ...args: string[]): Promise<string> {
  const target = parseConfig(world.env.functionEnv).BACKUP_TARGETS[0];
  if (!target) throw new Error('The world has no target.');
  const [cmd, argv] = asServerUser('pgbackrest', [
    `--config=${pgbackrestOf(target).configFile}`,
    `--stanza=${target.name}`,
    ...args,
  ]);
  try {
    const { stdout } = await promisify(execFile)(cmd, argv, {
      cwd: tmpdir(),
      env: world.env.hostEnv,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`pgbackrest ${args.join(' ')} failed:\n${stdout ?? ''}${stderr ?? ''}`);
  }
}

export async function stanzaInfo(world: TestWorld): Promise<StanzaInfo> {
  return (JSON.parse(await pgbackrest(world, 'info', '--output=json')) as StanzaInfo[])[0] as StanzaInfo;
}

/** The WAL segments in the world's repository, by name, with their keys and object times, ascending. */
export async function archivedSegments(
  world: TestWorld,
  archiveId: string,
): Promise<{ name: string; key: string; lastModified: Date }[]> {
  const prefix = pgbackrestArchivePrefix('local', archiveId);
  const segments: { name: string; key: string; lastModified: Date }[] = [];
  let token: string | undefined;
  do {
    const page = await world.s3.send(
      new ListObjectsV2Command({ Bucket: world.env.bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      const name = /\/([0-9A-F]{24})-[0-9a-f]{40}\.zst$/.exec(object.Key ?? '')?.[1];
      if (name && object.Key && object.LastModified)
        segments.push({ name, key: object.Key, lastModified: object.LastModified });
    }
    token = page.NextContinuationToken;
  } while (token);
  return segments.sort((a, b) => (a.name < b.name ? -1 : 1));
}

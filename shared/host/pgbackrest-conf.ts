import { ConfigError } from '../core/errors.ts';

/**
 * pgbackrest.conf for one target: one stanza per cluster, its repository in the
 * backup bucket under `pgbackrest/<target>/`. The file holds no secret: on AWS the
 * instance role signs (repo1-s3-key-type=auto); a local S3's public keys come from
 * the environment (PGBACKREST_REPO1_S3_KEY and PGBACKREST_REPO1_S3_KEY_SECRET).
 */

export interface PgbackrestRepository {
  bucket: string;
  region: string;
  /**
   * Host name of the S3 endpoint, without scheme or port. A name, not an address:
   * pgBackRest 2.45 matches only DNS names in a certificate (so `localhost` for the
   * local S3, whose certificate names both).
   */
  endpoint: string;
  /** Set for a server on another port than 443 (a local S3). */
  port?: number;
  /** `path` for an S3-compatible server without virtual-host buckets; AWS takes `host`. */
  uriStyle: 'host' | 'path';
  /** CA certificate (PEM) to verify the endpoint with, when a private CA signed it. */
  caFile?: string;
  /** `auto`: the instance role's credentials; `shared`: key and secret from the environment. */
  keyType: 'auto' | 'shared';
}

export interface PgbackrestStanza {
  /** The target's name: the stanza and the repository's folder. */
  target: string;
  pgPath: string;
  pgPort: number;
  pgSocketPath: string;
  pgUser?: string;
  repository: PgbackrestRepository;
  /** Where pgBackRest keeps its lock files and logs (they must be writable by the server user). */
  lockPath: string;
  logPath: string;
}

/** The repository's prefix in the bucket: the lifecycle rules and the host's grants name it too. */
export const pgbackrestPath = (target: string) => `/pgbackrest/${target}`;

export function renderPgbackrestConf(stanza: PgbackrestStanza): string {
  const { repository: repo } = stanza;
  const global: [string, string | number | undefined][] = [
    ['repo1-type', 's3'],
    ['repo1-path', pgbackrestPath(stanza.target)],
    ['repo1-s3-bucket', repo.bucket],
    ['repo1-s3-region', repo.region],
    ['repo1-s3-endpoint', repo.endpoint],
    ['repo1-storage-port', repo.port],
    ['repo1-s3-uri-style', repo.uriStyle],
    ['repo1-s3-key-type', repo.keyType],
    ['repo1-storage-ca-file', repo.caFile],
    ['compress-type', 'zst'],
    ['lock-path', stanza.lockPath],
    ['log-path', stanza.logPath],
  ];
  const cluster: [string, string | number | undefined][] = [
    ['pg1-path', stanza.pgPath],
    ['pg1-port', stanza.pgPort],
    ['pg1-socket-path', stanza.pgSocketPath],
    ['pg1-user', stanza.pgUser],
  ];
  return [
    '[global]',
    ...lines(global),
    '',
    `[${checked('stanza', stanza.target, /^[a-z][a-z0-9-]{0,39}$/)}]`,
    ...lines(cluster),
    '',
  ].join('\n');
}

function lines(options: [string, string | number | undefined][]): string[] {
  return options
    .filter((o): o is [string, string | number] => o[1] !== undefined)
    .map(([key, value]) => `${key}=${checked(key, String(value), /^[^\s=#[\]]+$/)}`);
}

// An option's value is one line of the file: a newline would add an option of its own.
function checked(key: string, value: string, pattern: RegExp): string {
  if (!pattern.test(value))
    throw new ConfigError(
      `pgbackrest.conf: ${key} "${value}" would not be one option of its own; use a value without spaces, =, # or brackets.`,
    );
  return value;
}

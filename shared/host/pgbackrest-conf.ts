import { createHash } from 'node:crypto';
import { pgbackrestPrefix } from '../catalog/keys.ts';
import { POINT_IN_TIME_DAYS } from '../catalog/retention.ts';
import type { Config, PgbackrestTarget, Target } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { postgresParams } from './scripts.ts';
import { shellQuote } from './shell.ts';

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
  port?: number | undefined;
  /** `path` for an S3-compatible server without virtual-host buckets; AWS takes `host`. */
  uriStyle: 'host' | 'path';
  /** CA certificate (PEM) to verify the endpoint with, when a private CA signed it. */
  caFile?: string | undefined;
  /** `auto`: the instance role's credentials; `shared`: key and secret from the environment. */
  keyType: 'auto' | 'shared';
  /** KMS key S3 encrypts the repository's objects with (SSE-KMS). */
  kmsKeyId?: string | undefined;
}

export interface PgbackrestStanza {
  /** The target's name: the stanza and the repository's folder. */
  target: string;
  pgPath: string;
  pgPort: number;
  pgSocketPath: string;
  pgUser?: string | undefined;
  repository: PgbackrestRepository;
  /** Where pgBackRest keeps its lock files and logs (they must be writable by the server user). */
  lockPath: string;
  logPath: string;
  /** Days of point-in-time recovery the repository keeps (repo1-retention-full, type time). */
  retentionDays?: number | undefined;
  processMax?: number | undefined;
}

/** The repository's path (repo1-path): its prefix in the bucket (shared/catalog/keys.ts), as an absolute path. */
export const pgbackrestPath = (target: string) => `/${pgbackrestPrefix(target).replace(/\/$/, '')}`;

/**
 * The key prefix of one archive id's WAL in the bucket (the stanza is the
 * target's name): pgBackRest keeps each segment at
 * `archive/<stanza>/<archive id>/<first 16 hex of its name>/<name>-<sha1>.<ext>`,
 * and each timeline's history file at `archive/<stanza>/<archive id>/<TLI>.history`
 * (its src/storage/helper.c storageRepoPathExpression, src/command/archive/push/file.c).
 */
export const pgbackrestArchivePrefix = (target: string, archiveId: string) =>
  `${pgbackrestPath(target).slice(1)}/archive/${target}/${archiveId}/`;

/** The options that say where a repository lies, by its field: the conf's, and a reader's overrides (pgbackrestPlaceOptions). */
const PLACE_OPTIONS = {
  bucket: 'repo1-s3-bucket',
  region: 'repo1-s3-region',
  endpoint: 'repo1-s3-endpoint',
} as const satisfies Partial<Record<keyof PgbackrestRepository, string>>;

export function renderPgbackrestConf(stanza: PgbackrestStanza): string {
  const { repository: repo } = stanza;
  const global: [string, string | number | undefined][] = [
    ['repo1-type', 's3'],
    ['repo1-path', pgbackrestPath(stanza.target)],
    [PLACE_OPTIONS.bucket, repo.bucket],
    [PLACE_OPTIONS.region, repo.region],
    [PLACE_OPTIONS.endpoint, repo.endpoint],
    ['repo1-storage-port', repo.port],
    ['repo1-s3-uri-style', repo.uriStyle],
    ['repo1-s3-key-type', repo.keyType],
    ['repo1-s3-kms-key-id', repo.kmsKeyId],
    ['repo1-storage-ca-file', repo.caFile],
    // Time-based: the fulls a recovery to any second of the window needs, and their WAL.
    ['repo1-retention-full-type', stanza.retentionDays === undefined ? undefined : 'time'],
    ['repo1-retention-full', stanza.retentionDays],
    // Expiry is a stage of its own, run after the new backup's restore test passed, so
    // a backup that fails its test never pushes a good one out of the window.
    ['expire-auto', stanza.retentionDays === undefined ? undefined : 'n'],
    ['compress-type', 'zst'],
    ['process-max', stanza.processMax],
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

/**
 * The target's pgBackRest settings, or a ConfigError saying how to give them:
 * the physical kinds (pgBackRest backups, WAL archiving) need them.
 */
export function pgbackrestOf(target: Target): PgbackrestTarget {
  if (!target.pgbackrest)
    throw new ConfigError(
      `${pgbackrestOff(target, 'its physical backups and WAL archiving are off')} Nothing was started.`,
    );
  return target.pgbackrest;
}

/**
 * What a target without pgBackRest settings lacks, and how to give it them: the
 * one wording of the ConfigError above, of the runs planned as off, and of the
 * daily verification's finding. `consequence` says what is off, as a clause.
 */
export function pgbackrestOff(target: Pick<Target, 'name'>, consequence: string): string {
  return `The target "${target.name}" has no pgbackrest settings in BACKUP_TARGETS, so ${consequence}; add "pgbackrest": {"dataDirectory": "<the cluster's data directory>"} to it and start the prepare-host workflow.`;
}

const localS3Of = (config: Config) =>
  config.S3_ENDPOINT_URL === undefined ? undefined : new URL(config.S3_ENDPOINT_URL);

/** The S3 endpoint pgBackRest reaches a bucket of `region` at: the regional endpoint on AWS, else the local S3's host. */
function endpointOf(config: Config, region: string): string {
  const local = localS3Of(config);
  // pgBackRest 2.45 matches only DNS names against a certificate.
  return local ? local.hostname.replace(/^127\.0\.0\.1$/, 'localhost') : `s3.${region}.amazonaws.com`;
}

/**
 * The one pgbackrest.conf of a target, from BACKUP_TARGETS and the deployment:
 * the bucket, its region and KMS key; on AWS the regional endpoint and the
 * instance role, against S3_ENDPOINT_URL (a local S3) path-style requests and
 * keys from the host's environment.
 */
export function pgbackrestConfOf(config: Config, target: Target): string {
  const pg = pgbackrestOf(target);
  const local = localS3Of(config);
  return renderPgbackrestConf({
    target: target.name,
    pgPath: pg.dataDirectory,
    pgPort: pg.port,
    pgSocketPath: pg.socketPath,
    pgUser: pg.user,
    repository: {
      bucket: config.BACKUP_BUCKET,
      region: config.AWS_REGION,
      endpoint: endpointOf(config, config.AWS_REGION),
      port: local?.port ? Number(local.port) : undefined,
      uriStyle: local ? 'path' : 'host',
      caFile: pg.caFile,
      keyType: local ? 'shared' : 'auto',
      kmsKeyId: config.BACKUP_KMS_KEY_ID,
    },
    lockPath: pg.lockPath,
    logPath: pg.logPath,
    retentionDays: POINT_IN_TIME_DAYS,
    processMax: pg.processMax,
  });
}

/**
 * pgBackRest command-line options (`--repo1-s3-bucket=…`, region, endpoint)
 * that make a command read the target's repository from a copy of it in another
 * bucket and region, the vault's: its path (pgbackrest/<target>) is the same,
 * since replication keeps every key. The rest of the conf stands (the
 * credentials, the CA, the URI style). Given to `restore` on the command line,
 * they also reach the restore_command it writes: pgBackRest passes a restore's
 * command-line options that archive-get takes on to archive-get (its
 * src/config/exec.c, cfgExecParam), so the WAL replayed comes from the same copy.
 * For reading commands only: nothing may write there.
 */
export function pgbackrestPlaceOptions(config: Config, place: { bucket: string; region: string }): string[] {
  const values = { bucket: place.bucket, region: place.region, endpoint: endpointOf(config, place.region) };
  return Object.entries(PLACE_OPTIONS).map(
    ([field, option]) => `--${option}=${checked(option, values[field as keyof typeof values], ONE_VALUE)}`,
  );
}

/** PostgreSQL's archive_command for a target: push each WAL segment with pgBackRest. */
export function archiveCommandOf(target: Target): string {
  const pg = pgbackrestOf(target);
  return `pgbackrest --config=${shellQuote(pg.configFile)} --stanza=${target.name} archive-push %p`;
}

/**
 * The parameters every pgBackRest host script takes (common.sh's `pgbr`): the
 * stanza, the conf's path and the sha256 of the conf the project renders now, so
 * a host whose file differs is told to run prepare-host instead of backing up
 * with settings nobody reviewed.
 */
export function pgbackrestParams(config: Config, target: Target): Record<string, string> {
  const pg = pgbackrestOf(target);
  return {
    KB_STANZA: target.name,
    KB_PGBACKREST_CONFIG: pg.configFile,
    KB_PGBACKREST_CONFIG_SHA256: createHash('sha256').update(pgbackrestConfOf(config, target)).digest('hex'),
    KB_PGBACKREST_USER: pg.osUser,
  };
}

/**
 * The parameters of a pgBackRest script that also asks PostgreSQL (pg_sql):
 * where psql runs, the stanza's, and the target's database to connect to.
 */
export function pgbackrestScriptParams(config: Config, target: Target): Record<string, string> {
  return { ...postgresParams(target), ...pgbackrestParams(config, target), KB_DATABASE: target.database };
}

function lines(options: [string, string | number | undefined][]): string[] {
  return options
    .filter((o): o is [string, string | number] => o[1] !== undefined)
    .map(([key, value]) => `${key}=${checked(key, String(value), ONE_VALUE)}`);
}

/** An option's value: one word, with no `=`, `#` or bracket. */
const ONE_VALUE = /^[^\s=#[\]]+$/;

// An option's value is one line of the file: a newline would add an option of its own.
function checked(key: string, value: string, pattern: RegExp): string {
  if (!pattern.test(value))
    throw new ConfigError(
      `pgbackrest.conf: ${key} "${value}" would not be one option of its own; use a value without spaces, =, # or brackets.`,
    );
  return value;
}

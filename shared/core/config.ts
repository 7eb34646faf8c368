import { ConfigError, NotFoundError } from './errors.ts';
import {
  excludeName,
  hostPath,
  parseTableNames,
  sqlIdentifier,
  type TableName,
  targetName,
} from './identifiers.ts';
import { problemsOf } from './input.ts';
import * as z from './schema.ts';

/**
 * The whole configuration of every function, read from the environment once at
 * cold start. A deployment that forgets a variable fails at once with the list of
 * everything that is missing or malformed.
 */

const postgresLocation = z.discriminatedUnion('mode', [
  /** psql and pg_dump run on the host; credentials come from its environment or ~/.pgpass. */
  z.object({ mode: z.literal('host') }),
  /** The database runs in docker compose; the tools run in its service container. */
  z.object({ mode: z.literal('docker'), composeFile: hostPath, service: targetName }),
]);

/** A list of at least one path, `fallback` when left out. */
const paths = (fallback: string[]) => z._default(z.array(hostPath).check(z.minLength(1)), fallback);

/** The source document's paths, per file kind; each list can be changed per target. */
const fileSets = z.object({
  configuration: paths([
    '/opt/kennel/.env',
    '/opt/kennel/.env.production',
    '/opt/kennel/docker-compose.prod.yml',
    '/opt/kennel/nginx.conf',
    '/opt/kennel/ssl',
    '/etc/nginx',
    '/etc/ssl',
    '/etc/fail2ban',
    '/etc/ufw',
  ]),
  application: paths(['/opt/kennel']),
  static: paths(['/opt/kennel/public', '/opt/kennel/.next/static', '/opt/kennel/.next/standalone']),
  /**
   * What the application tarball leaves out (identifiers.ts excludeName): build
   * output and dependencies, and the configuration kind's files, which hold the
   * secrets and are backed up there, encrypted and read-restricted: `.env*`
   * wherever it occurs and the `ssl/` directory of each application path.
   */
  applicationExcludes: z._default(z.array(excludeName), [
    'node_modules',
    '.git',
    '.next',
    'coverage',
    'dist',
    '.env*',
    'ssl/',
  ]),
});

export type FileSets = z.infer<typeof fileSets>;

/** A shell command from config, run on the host as written (one line). */
const hostCommand = z.string().check(z.regex(/^[^\n\r\0]+$/, 'must be one line of shell'));

/** A list of host commands, `fallback` when left out. */
const commands = (fallback: string[]) => z._default(z.array(hostCommand), fallback);

const COMPOSE = 'docker compose -f /opt/kennel/docker-compose.prod.yml';

/** How the application is stopped and started around a database restore. */
const application = z.object({
  stop: commands([`${COMPOSE} stop app`]),
  start: commands([`${COMPOSE} start app`]),
});

/** What runs after a files restore put a tarball back in place. */
const afterFilesRestore = z.object({
  application: commands([
    'cd /opt/kennel && npm ci',
    'cd /opt/kennel && npm run build',
    `${COMPOSE} restart app`,
  ]),
  configuration: commands(['nginx -t', 'systemctl reload nginx', `${COMPOSE} restart app`]),
  static: commands([]),
});

/**
 * How pgBackRest reaches a target's cluster (the physical kinds: full and
 * incremental backups, WAL archiving). Left out, the physical kinds are refused
 * for that target and only the logical dump runs. Paths are the host's (inside
 * the database service's container for docker targets).
 */
const pgbackrest = z.object({
  /** The cluster's data directory (pgBackRest's pg1-path), e.g. /var/lib/postgresql/15/main. */
  dataDirectory: hostPath,
  /** The port the cluster listens on. */
  port: z._default(z.int().check(z.gte(1), z.lte(65535)), 5432),
  /** The directory of the cluster's Unix socket (pgBackRest connects through it). */
  socketPath: z._default(hostPath, '/var/run/postgresql'),
  /** The database role pgBackRest connects as (a superuser); the OS user's name when left out (peer authentication). */
  user: z.optional(sqlIdentifier),
  /** The OS user that owns the data directory: pgBackRest runs as it, as PostgreSQL's archive_command does. */
  osUser: z._default(
    z.string().check(z.regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a Unix user name')),
    'postgres',
  ),
  /** Where the rendered pgbackrest.conf lives (written by the prepare-host workflow). */
  configFile: z._default(hostPath, '/etc/pgbackrest/pgbackrest.conf'),
  lockPath: z._default(hostPath, '/tmp/pgbackrest'),
  logPath: z._default(hostPath, '/var/log/pgbackrest'),
  /** PEM file of the CA that signed the S3 endpoint's certificate, when not a public one (the local S3's). */
  caFile: z.optional(hostPath),
  /** Processes pgBackRest uses to back up and restore (process-max). */
  processMax: z._default(z.int().check(z.gte(1), z.lte(32)), 2),
  /**
   * Where restore tests restore a backup into a scratch instance (a directory per
   * stanza and set, removed after each test): `<backupDir>/restore-test` when left
   * out. It needs room for the cluster; the cluster's OS user must reach it.
   */
  scratchDirectory: z.optional(hostPath),
});

export type PgbackrestTarget = z.infer<typeof pgbackrest>;

const target = z
  .object({
    name: targetName,
    /** SSM targets: explicit instance ids, or one tag that matches exactly one instance. */
    instanceIds: z.optional(
      z.array(z.string().check(z.regex(/^(i|mi)-[0-9a-f]{8,17}$/))).check(z.minLength(1)),
    ),
    tag: z.optional(
      z.object({
        key: z.string().check(z.regex(/^[\w.:/=+@-]{1,128}$/)),
        value: z.string().check(z.regex(/^[\w.:/=+@ -]{1,256}$/)),
      }),
    ),
    /** The database the input means when it names none. */
    database: sqlIdentifier,
    /** Every database a scheduled run backs up on this target; just `database` when left out. */
    databases: z.optional(z.array(sqlIdentifier).check(z.minLength(1))),
    postgres: z._default(postgresLocation, { mode: 'host' }),
    pgbackrest: z.optional(pgbackrest),
    /** The host's backup directory, as in the source document. */
    backupDir: z._default(hostPath, '/opt/backup'),
    files: z._default(fileSets, fileSets.parse({})),
    application: z._default(application, application.parse({})),
    afterFilesRestore: z._default(afterFilesRestore, afterFilesRestore.parse({})),
  })
  .check(
    z.refine(
      (t) => (t.instanceIds === undefined) !== (t.tag === undefined),
      'give either instanceIds or tag',
    ),
  );

export type Target = z.infer<typeof target>;

/** A JSON text holding what `schema` takes. */
const json = <T extends z.core.$ZodType>(schema: T) =>
  z.pipe(
    z.pipe(
      z.string(),
      z.transform((text: string, ctx) => {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          ctx.issues.push({ code: 'custom', message: 'is not valid JSON', input: text });
          return z.NEVER;
        }
      }),
    ),
    schema,
  );

/** Text that `schema` takes, or nothing: an empty text (CloudFormation's way of leaving a variable unset) is nothing. */
const optionalText = <T extends z.core.$ZodType<string>>(schema: T) =>
  z.optional(
    z.pipe(
      z.transform((text: unknown) => (text === '' ? undefined : text)),
      z.optional(schema),
    ),
  );

/** A whole number in [min, max] given as text, `fallback` when left out. */
const wholeNumber = (min: number, max: number, fallback: number) =>
  z._default(z.coerce.number().check(z.int(), z.gte(min), z.lte(max)), fallback);

const environment = z.object({
  STAGE: z._default(z.string().check(z.regex(/^[a-z][a-z0-9-]*$/)), 'dev'),
  AWS_REGION: z._default(z.string(), 'us-east-1'),
  BACKUP_BUCKET: z.string().check(z.regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/)),
  BACKUP_TARGETS: json(z.array(target).check(z.minLength(1))),
  /**
   * The log tables, whose rows the daily full dump leaves out: schema-qualified
   * (`public.audit_logs`), so that a table of the same name in another schema is
   * not one of them.
   */
  EXCLUDED_TABLES: z.pipe(
    z._default(z.string(), 'public.audit_logs,public.session_logs'),
    z.transform((text: string, ctx): TableName[] => {
      const tables: TableName[] = [];
      parseTableNames(text).forEach((table, index) => {
        if (typeof table !== 'string') tables.push(table);
        else ctx.issues.push({ code: 'custom', message: table, input: text, path: [index] });
      });
      return tables;
    }),
  ),
  HOST_COMMAND_TIMEOUT_SECONDS: wholeNumber(1, 172800, 3600),
  /** The hourly monitoring alerts when the host's backup filesystem is fuller than this. */
  DISK_USAGE_ALERT_PERCENT: wholeNumber(1, 100, 80),
  /**
   * The month's budget for this system's AWS cost, US dollars: the monthly audit
   * report sets its estimate against it. Left out: the report says no budget is set.
   */
  MONTHLY_BUDGET_USD: z.optional(
    z.pipe(
      z.string(),
      z.transform((text: string, ctx) => {
        if (text.trim() === '') return undefined;
        const usd = Number(text);
        if (Number.isFinite(usd) && usd > 0) return usd;
        ctx.issues.push({
          code: 'custom',
          message: 'must be a positive number of US dollars, or empty',
          input: text,
        });
        return z.NEVER;
      }),
    ),
  ),
  /** SSM parameter (SecureString) that holds the Slack incoming-webhook URL. */
  ALERT_WEBHOOK_PARAMETER: z.string().check(z.startsWith('/')),
  /**
   * SNS topic every alert is also published to (its subscribers get e-mail).
   * serverless.yml always sets it; left out (local runs), alerts reach Slack and
   * the missing topic is logged with each.
   */
  ALERT_TOPIC_ARN: z.optional(
    z.string().check(z.regex(/^arn:aws[\w-]*:sns:[\w-]+:\d{12}:[\w-]{1,256}$/, 'must be an SNS topic ARN')),
  ),
  /** SSM parameter (SecureString) with the libpq URL the restore check connects with (no database name). */
  RESTORE_CHECK_DATABASE_URL_PARAMETER: z.string().check(z.startsWith('/')),
  /** The bucket's KMS key: pgBackRest asks S3 to encrypt its repository with it (repo1-s3-kms-key-id). */
  BACKUP_KMS_KEY_ID: z.optional(
    z.string().check(z.regex(/^[\w:/-]{1,2048}$/, 'must be a KMS key id or ARN')),
  ),
  /**
   * The vault: the bucket the backup bucket replicates every object to, in
   * another region (serverless/vault.cjs), which a restore reads with
   * `"source": "vault"`. Both empty or absent: no vault.
   */
  VAULT_BUCKET: optionalText(z.string().check(z.regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/))),
  VAULT_REGION: optionalText(
    z.string().check(z.regex(/^[a-z]{2}(?:-gov)?-[a-z]+-\d$/, 'must be an AWS region')),
  ),
  /** Set only for a local S3-compatible server. */
  S3_ENDPOINT_URL: z.optional(z.url()),
  /**
   * PEM file of the CA that signed S3_ENDPOINT_URL's certificate (the local S3's own,
   * self-signed). The SDK's HTTP handler does not read AWS_CA_BUNDLE as the CLI does.
   */
  S3_CA_BUNDLE: z.optional(z.string().check(z.startsWith('/'))),
});

export type Config = z.infer<typeof environment>;

export function parseConfig(env: Record<string, string | undefined>): Config {
  const parsed = environment.safeParse(env, { reportInput: true });
  if (!parsed.success) {
    const problems = problemsOf(parsed.error.issues, '(environment)');
    throw new ConfigError(
      `The function's environment is incomplete or malformed; fix the deployment:\n- ${problems.join('\n- ')}`,
    );
  }
  if (Boolean(parsed.data.VAULT_BUCKET) !== Boolean(parsed.data.VAULT_REGION)) {
    throw new ConfigError(
      'VAULT_BUCKET and VAULT_REGION go together: give both (the vault stack is deployed) or neither (no vault); fix the deployment.',
    );
  }
  for (const t of parsed.data.BACKUP_TARGETS) {
    if (parsed.data.BACKUP_TARGETS.filter((o) => o.name === t.name).length > 1) {
      throw new ConfigError(
        `BACKUP_TARGETS names the target "${t.name}" twice; give each target its own name.`,
      );
    }
  }
  return parsed.data;
}

let cached: Config | undefined;

/** The configuration of this process, parsed on first use (at cold start, from module scope). */
export function getConfig(): Config {
  cached ??= parseConfig(process.env);
  return cached;
}

export function findTarget(config: Config, name: string): Target | undefined {
  return config.BACKUP_TARGETS.find((t) => t.name === name);
}

/** The input's target, or every target; an unknown name throws NotFoundError listing the configured ones. */
export function selectTargets(config: Config, name: string | undefined): Target[] {
  if (name === undefined) return config.BACKUP_TARGETS;
  const target = findTarget(config, name);
  if (!target) {
    const known = config.BACKUP_TARGETS.map((t) => t.name).join(', ');
    throw new NotFoundError(`Unknown target "${name}"; the configured targets are: ${known}.`);
  }
  return [target];
}

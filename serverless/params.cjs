'use strict';

// Values derived from the deployment's params at package time. The targets are
// checked with the functions' own config schema (shared/core/config.ts), so a
// malformed --param fails `serverless package` with the message a cold start
// would give, instead of failing the first backup at 02:00.
const { parseConfig } = require('../shared/core/config.ts');
const {
  BACKUP_PREFIXES,
  DUMP_KINDS,
  FILE_KINDS,
  HOST_OUTPUT_PREFIX,
  CHECK_PROBE_PREFIX,
  KIND_PREFIX,
  MANIFEST_SUFFIX,
  PGBACKREST_PREFIX,
  PHYSICAL_RECORD_PREFIX,
  RECOVERY_RECORD_PREFIX,
  pgbackrestPrefix,
  SCHEDULED_DATABASE_KINDS,
  SCHEDULED_DUMP_KINDS,
} = require('../shared/catalog/keys.ts');
const { METRICS_NAMESPACE } = require('../shared/watch/metrics.ts');
const { maxAgeMinutes, SCHEDULES } = require('../shared/catalog/schedule.ts');

const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const SECURITY_GROUP_ID = /^sg-[0-9a-f]{8,17}$/;
/** An e-mail address as SNS takes it for an `email` subscription: one address, no display name. */
const EMAIL = /^[^\s@<>(),;:"]+@[^\s@<>(),;:"]+\.[^\s@<>(),;:"]+$/;
/** A whole percentage: the `diskUsageAlertPercent` param. */
const PERCENT = /^\d{1,3}$/;
/** An IAM role's name, as IAM takes it. */
const ROLE_NAME = /^[\w+=,.@-]{1,64}$/;
/** An IAM role's ARN, with or without a path: arn:<partition>:iam::<account>:role/[<path>/]<name>. */
const ROLE_ARN = /^arn:aws(?:-[a-z]+)*:iam::\d{12}:role\/(?:[\w+=,.@-]+\/)*[\w+=,.@-]{1,64}$/;

async function param(resolveVariable, name) {
  const value = await resolveVariable(`param:${name}`);
  return value == null ? '' : String(value).trim();
}

/** BACKUP_TARGETS: the `backupTargets` param, or one target: the instance tagged kennel-backup-target=<targetTagValue>, backing up <database>. */
async function targetsText(resolveVariable) {
  const given = await param(resolveVariable, 'backupTargets');
  if (given) return given;
  const [database, tagValue] = await Promise.all([
    param(resolveVariable, 'database'),
    param(resolveVariable, 'targetTagValue'),
  ]);
  return JSON.stringify([
    { name: 'kennel-db', tag: { key: 'kennel-backup-target', value: tagValue }, database },
  ]);
}

async function checkedTargets(resolveVariable) {
  const [text, stage, excluded, timeout] = await Promise.all([
    targetsText(resolveVariable),
    resolveVariable('sls:stage'),
    param(resolveVariable, 'excludedTables'),
    param(resolveVariable, 'hostCommandTimeoutSeconds'),
  ]);
  // The bucket and parameter names are CloudFormation values; stand-ins let the
  // schema check everything a person passes with --param.
  const config = parseConfig({
    STAGE: stage,
    BACKUP_BUCKET: 'checked-at-package-time',
    BACKUP_TARGETS: text,
    EXCLUDED_TABLES: excluded,
    HOST_COMMAND_TIMEOUT_SECONDS: timeout,
    ALERT_WEBHOOK_PARAMETER: '/checked-at-package-time',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/checked-at-package-time',
  });
  return { text: JSON.stringify(JSON.parse(text)), targets: config.BACKUP_TARGETS };
}

/**
 * The `hostRoleArn` param: empty, or the DB host's instance role. A malformed
 * one fails packaging: in the bucket policy it would exempt no one (or the wrong
 * principal) from the denial that guards the secrets.
 */
async function checkedHostRoleArn(resolveVariable) {
  const arn = await param(resolveVariable, 'hostRoleArn');
  if (arn && !ROLE_ARN.test(arn)) {
    throw new Error(
      `The hostRoleArn param "${arn}" is not an IAM role ARN. Give the ARN of the DB host's instance role, arn:aws:iam::<12-digit account>:role/<name> (not its instance profile's, nor an sts assumed-role ARN), or leave it empty.`,
    );
  }
  return arn;
}

/**
 * The `alertEmail` param: empty (no subscription), or one address that the
 * alert topic e-mails once its owner confirms. A malformed one fails packaging:
 * CloudFormation would create a subscription that never reaches anyone.
 */
async function checkedAlertEmail(resolveVariable) {
  const email = await param(resolveVariable, 'alertEmail');
  if (email && !EMAIL.test(email)) {
    throw new Error(
      `The alertEmail param "${email}" is not an e-mail address. Give one address (name@example.com), without a display name, or leave it empty for no e-mail subscription.`,
    );
  }
  return email;
}

/**
 * The `diskUsageAlertPercent` param: the hourly monitoring alerts, and the disk
 * alarm fires, when the filesystem of a host's backup directory is fuller than
 * this. Outside 1-100 it fails packaging: 0 would alarm for ever, above 100 never.
 */
async function checkedDiskUsageAlertPercent(resolveVariable) {
  const text = await param(resolveVariable, 'diskUsageAlertPercent');
  const percent = Number(text);
  if (!PERCENT.test(text) || percent < 1 || percent > 100) {
    throw new Error(
      `The diskUsageAlertPercent param "${text}" is not a whole percentage from 1 to 100. Give the disk usage above which the monitoring alerts (80 by default), e.g. --param 'diskUsageAlertPercent=85'.`,
    );
  }
  return percent;
}

/**
 * Every state machine of this service, as serverless.yml declares them under
 * stepFunctions.stateMachines: the failure rule and sendAlert's grants are built
 * from this list, so a new workflow is covered without anyone remembering it.
 * Each needs a fixed `id` (its logical id, for Ref) and its `name`.
 */
async function stateMachines(resolveVariable) {
  const declared = await resolveVariable('self:stepFunctions.stateMachines');
  return Object.entries(declared ?? {}).map(([key, machine]) => {
    if (!machine?.id || !machine?.name) {
      throw new Error(
        `The state machine "${key}" in serverless.yml needs an id and a name: the failure alert rule and sendAlert's permissions are built from them.`,
      );
    }
    return { key, id: machine.id, name: machine.name };
  });
}

/** The ARN pattern of a state machine's executions, for IAM resources. */
const executionsOf = (name) => ({
  'Fn::Sub': `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:execution:${name}:*`,
});

/** Objects of the backup bucket whose keys match `pattern` (IAM's `*` spans `/`), for IAM resources. */
const inBucket = (pattern) => ({ 'Fn::Sub': `\${BackupBucket.Arn}/${pattern}` });
/** A prefix's objects in the backup bucket, for IAM resources. */
const objectsUnder = (prefix) => inBucket(`${prefix}*`);
/** The manifests under a prefix: `<archive key>.manifest.json` beside each archive (keys.ts), not the archives. */
const manifestsUnder = (prefix) => inBucket(`${prefix}*${MANIFEST_SUFFIX}`);
const roleOf = (logicalId) => ({ 'Fn::GetAtt': [`${logicalId}IamRoleLambdaExecution`, 'Arn'] });

/**
 * The dimensions shared/watch/metrics.ts gives every metric: Powertools' `service`
 * (its serviceName there, which it does not export) and the stage, then the
 * metric's own. An alarm must name exactly the dimensions a metric has.
 */
const METRICS_SERVICE = 'kennel-backup';
const metricDimensions = (stage, own) => [
  { Name: 'service', Value: METRICS_SERVICE },
  { Name: 'Stage', Value: stage },
  ...Object.entries(own).map(([Name, Value]) => ({ Name, Value })),
];
/** What shared/watch/metrics.ts puts in the Database dimension of a file kind's backup age. */
const FILES_DATABASE = 'files';
/** The monitoring reports every hour; the alarms look at the hour's highest value. */
const HOUR_SECONDS = 3600;
/**
 * The WAL archive age alarm: above five minutes (the RPO is one), on the
 * every-minute metric, two minutes in a row, so that a single minute without
 * data (a late run, a slow SSM delivery) is no alarm but a measurement that
 * stops is one within two minutes.
 */
const WAL_ARCHIVE_AGE_LIMIT_SECONDS = 300;
const MINUTE_SECONDS = 60;
const WAL_ARCHIVE_AGE_MINUTES_TO_ALARM = 2;

/** The targets with pgBackRest settings: their WAL archiving is watched and their repositories granted. */
const archivingTargets = (targets) => targets.filter((t) => t.pgbackrest !== undefined);

/**
 * Every backup whose age the hourly monitoring reports (shared/watch/freshness.ts):
 * each target's databases in each scheduled dump kind, and its file kinds. The
 * physical kinds' freshness is the daily verification's, from pgBackRest's info,
 * and their RPO the WAL archive age's.
 */
function monitoredBackups(targets) {
  return targets.flatMap((target) => [
    ...(target.databases ?? [target.database]).flatMap((database) =>
      SCHEDULED_DUMP_KINDS.map((kind) => ({ target: target.name, kind, database })),
    ),
    ...FILE_KINDS.map((kind) => ({ target: target.name, kind, database: FILES_DATABASE })),
  ]);
}

/** `kennel-db` → `KennelDb`, for logical ids. */
const pascal = (name) =>
  name
    .split(/[^a-zA-Z0-9]+/)
    .filter(Boolean)
    .map((word) => `${word[0].toUpperCase()}${word.slice(1)}`)
    .join('');

/** `90` → `90 min`, `1500` → `25 h`. */
const spoken = (minutes) => (minutes < 120 ? `${minutes} min` : `${minutes / 60} h`);

/**
 * The alarms on the metrics (each as [logical id, resource]): one per backup
 * on its age, and one per target on its disk. Both go to the alert topic when
 * they fire and when they clear.
 */
function alarms(stage, targets, diskPercent) {
  const actions = { AlarmActions: [{ Ref: 'AlertTopic' }], OKActions: [{ Ref: 'AlertTopic' }] };
  const hourly = { Statistic: 'Maximum', Period: HOUR_SECONDS, EvaluationPeriods: 1 };
  const age = monitoredBackups(targets).map(({ target, kind, database }) => {
    const files = database === FILES_DATABASE;
    const limit = maxAgeMinutes(kind);
    const workflow = files ? 'files-backup' : 'database-backup';
    return [
      `BackupAge${pascal(target)}${pascal(kind)}${files ? '' : pascal(database)}Alarm`,
      {
        Type: 'AWS::CloudWatch::Alarm',
        Properties: {
          AlarmName: `kennel-backup-${stage}-backup-age-${target}-${kind}${files ? '' : `-${database}`}`,
          AlarmDescription: `kennel-backup ${stage}: the newest verified ${kind} backup of ${files ? 'the files' : database} on ${target} is older than ${spoken(limit)} (one is expected every ${spoken(SCHEDULES[kind].everyMinutes)}), or the hourly monitoring has not reported its age. Look at the ${workflow} executions, then at the monitoring ones.`,
          Namespace: METRICS_NAMESPACE,
          MetricName: 'BackupAgeSeconds',
          Dimensions: metricDimensions(stage, { Target: target, Kind: kind, Database: database }),
          ...hourly,
          Threshold: limit * 60,
          ComparisonOperator: 'GreaterThanThreshold',
          // No age is an alarm: a kind never verified has none, and a
          // monitoring that stops (its schedule, its functions) sends none.
          TreatMissingData: 'breaching',
          ...actions,
        },
      },
    ];
  });
  const disk = targets.map(({ name }) => [
    `BackupDisk${pascal(name)}Alarm`,
    {
      Type: 'AWS::CloudWatch::Alarm',
      Properties: {
        AlarmName: `kennel-backup-${stage}-backup-disk-${name}`,
        AlarmDescription: `kennel-backup ${stage}: the filesystem of the backup directory on ${name} is more than ${diskPercent}% full; free space before the next full backup fails.`,
        Namespace: METRICS_NAMESPACE,
        MetricName: 'BackupDiskUsedPercent',
        Dimensions: metricDimensions(stage, { Target: name }),
        ...hourly,
        Threshold: diskPercent,
        ComparisonOperator: 'GreaterThanThreshold',
        // No measurement is not a full disk: a host the monitoring cannot
        // measure fails the monitoring, which alerts, and a monitoring that
        // stops sets off every age alarm.
        TreatMissingData: 'notBreaching',
        ...actions,
      },
    },
  ]);
  const walArchiveAge = archivingTargets(targets).map(({ name }) => [
    `WalArchiveAge${pascal(name)}Alarm`,
    {
      Type: 'AWS::CloudWatch::Alarm',
      Properties: {
        AlarmName: `kennel-backup-${stage}-wal-archive-age-${name}`,
        AlarmDescription: `kennel-backup ${stage}: WAL written on ${name} has waited more than ${WAL_ARCHIVE_AGE_LIMIT_SECONDS / 60} min to reach the pgBackRest repository (the RPO is one minute), or its age has not been measured for ${WAL_ARCHIVE_AGE_MINUTES_TO_ALARM} min. Look at pg_stat_archiver and the server log on the host, then at the wal-archive-age executions.`,
        Namespace: METRICS_NAMESPACE,
        MetricName: 'WalArchiveAgeSeconds',
        Dimensions: metricDimensions(stage, { Target: name }),
        Statistic: 'Maximum',
        Period: MINUTE_SECONDS,
        EvaluationPeriods: WAL_ARCHIVE_AGE_MINUTES_TO_ALARM,
        DatapointsToAlarm: WAL_ARCHIVE_AGE_MINUTES_TO_ALARM,
        Threshold: WAL_ARCHIVE_AGE_LIMIT_SECONDS,
        ComparisonOperator: 'GreaterThanThreshold',
        // No age is an alarm: archiving off, nothing archived, a host or a
        // measurement that does not answer all leave the minute without data.
        TreatMissingData: 'breaching',
        ...actions,
      },
    },
  ]);
  const all = [...age, ...disk, ...walArchiveAge];
  const ids = all.map(([id]) => id);
  const clash = ids.find((id, i) => ids.indexOf(id) !== i);
  if (clash) {
    throw new Error(
      `Two alarms would have the logical id ${clash}: their target and database names are joined without separators for it. Rename one of the targets or databases in backupTargets.`,
    );
  }
  return all;
}

/** A graph on the dashboard: one line per metric, the hour's highest value unless said otherwise. */
const graph = (title, metrics, extra = {}) => ({
  type: 'metric',
  width: 8,
  height: 6,
  properties: {
    title,
    view: 'timeSeries',
    region: `\${AWS::Region}`,
    stat: 'Maximum',
    period: HOUR_SECONDS,
    metrics,
    yAxis: { left: { min: 0 } },
    ...extra,
  },
});
const limitLine = (label, value) => ({ annotations: { horizontal: [{ label, value }] } });
/** A metric of shared/watch/metrics.ts as a dashboard line: namespace, name, then dimension name and value pairs. */
const line = (stage, name, own, label) => [
  METRICS_NAMESPACE,
  name,
  ...metricDimensions(stage, own).flatMap((d) => [d.Name, d.Value]),
  { label },
];

function instanceArn(id) {
  return id.startsWith('mi-')
    ? { 'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:managed-instance/${id}` }
    : { 'Fn::Sub': `arn:\${AWS::Partition}:ec2:\${AWS::Region}:\${AWS::AccountId}:instance/${id}` };
}

module.exports = {
  /** The objects of every backup prefix (shared/catalog/keys.ts), for IAM resources. */
  backupObjects: () => BACKUP_PREFIXES.map(objectsUnder),

  /** The same prefixes for an s3:prefix condition on ListBucket. */
  backupPrefixes: () => BACKUP_PREFIXES.map((prefix) => `${prefix}*`),

  /** The catalog's records of pgBackRest backups (written by Lambda stages only, never the host). */
  physicalRecordObjects: () => objectsUnder(PHYSICAL_RECORD_PREFIX),

  /** The same prefix for an s3:prefix condition on ListBucket. */
  physicalRecordPrefix: () => `${PHYSICAL_RECORD_PREFIX}*`,

  /** Every host command's whole output, as SSM Run Command writes it (keys.ts HOST_OUTPUT_PREFIX). */
  hostOutputObjects: () => objectsUnder(`${HOST_OUTPUT_PREFIX}/`),

  /** The same prefix for an s3:prefix condition on ListBucket. */
  hostOutputPrefix: () => `${HOST_OUTPUT_PREFIX}/*`,

  /** The check workflow's probes, which the host writes and removes (keys.ts CHECK_PROBE_PREFIX). */
  checkProbeObjects: () => objectsUnder(CHECK_PROBE_PREFIX),

  /**
   * The manifests under every backup prefix, and not the archives: what the
   * catalog's readers (planners, verification, monitoring, pruning) read, and the
   * only objects verifyArchive writes.
   */
  backupManifests: () => BACKUP_PREFIXES.map(manifestsUnder),

  /** The dumps' manifests (database/), for the database family's planners and the restore's checks. */
  databaseManifests: () => manifestsUnder('database/'),

  /** The files kinds' manifests (configuration, application, static), for the files restore's planner. */
  fileManifests: () => FILE_KINDS.map((kind) => manifestsUnder(`${KIND_PREFIX[kind]}/`)),

  /**
   * What the WAL checks read of a pgBackRest repository (shared/host/pgbackrest-conf.ts
   * pgbackrestArchivePrefix: `pgbackrest/<target>/archive/<stanza>/<archive id>/`):
   * the archive's archive.info (its current archive id) and the timelines'
   * history files. Never a WAL segment, which holds the database's rows.
   */
  archiveInfoObjects: () => inBucket(`${PGBACKREST_PREFIX}*/archive/*/archive.info`),
  walHistoryObjects: () => inBucket(`${PGBACKREST_PREFIX}*/archive/*.history`),

  /** The measured recoveries (shared/catalog/recoveries.ts), written by Lambda stages only. */
  recoveryRecordObjects: () => objectsUnder(RECOVERY_RECORD_PREFIX),

  /** The same prefix for an s3:prefix condition on ListBucket. */
  recoveryRecordPrefix: () => `${RECOVERY_RECORD_PREFIX}*`,

  /** What the monitoring lists: the backup prefixes, and each pgBackRest repository (for its size). */
  monitoredPrefixes: async ({ resolveVariable }) => {
    const { targets } = await checkedTargets(resolveVariable);
    return [
      ...BACKUP_PREFIXES.map((prefix) => `${prefix}*`),
      ...archivingTargets(targets).map(({ name }) => `${pgbackrestPrefix(name)}*`),
    ];
  },

  /** The every-minute WAL archive age, scheduled only when some target has pgBackRest settings. */
  walArchiveAgeSchedule: async ({ resolveVariable }) => {
    const { targets } = await checkedTargets(resolveVariable);
    return archivingTargets(targets).length > 0 ? [{ schedule: { rate: 'rate(1 minute)', input: {} } }] : [];
  },

  /**
   * The DB host's grants on the pgBackRest repositories (a `resources` part, none
   * without a pgBackRest target): exactly what pgBackRest 2.45 asks of S3 under
   * pgbackrest/<target>/, as its user guide's S3 policy and its own requests
   * against the local S3 show. ListBucket, only for prefixes in the repository
   * (every list it makes, stanza-create to expire, is of `pgbackrest/<target>/...`).
   * GetObject (reads, and the HEAD of a file's info), PutObject (uploads,
   * multipart ones included) and DeleteObject (expire, and a stanza's own clean-up)
   * on its objects: versioning keeps what a delete hides, and without
   * DeleteObjectVersion the host cannot remove any version for good. The bucket
   * key through S3 for SSE-KMS: GenerateDataKey to write, Decrypt to read and to
   * complete a multipart upload. Nothing under the other prefixes: there the host
   * keeps HostBackupPolicy's create-only grant.
   */
  repositoryResources: async ({ resolveVariable }) => {
    const [stage, { targets }] = await Promise.all([
      resolveVariable('sls:stage'),
      checkedTargets(resolveVariable),
    ]);
    const names = archivingTargets(targets).map(({ name }) => name);
    if (names.length === 0) return { Resources: {} };
    return {
      Resources: {
        HostRepositoryPolicy: {
          Type: 'AWS::IAM::ManagedPolicy',
          Properties: {
            Description: `kennel-backup ${stage}: lets pgBackRest on the DB host keep its repositories under ${names.map(pgbackrestPrefix).join(', ')}`,
            PolicyDocument: {
              Version: '2012-10-17',
              Statement: [
                {
                  Sid: 'ListRepositories',
                  Effect: 'Allow',
                  Action: ['s3:ListBucket'],
                  Resource: { 'Fn::GetAtt': ['BackupBucket', 'Arn'] },
                  Condition: { StringLike: { 's3:prefix': names.map((n) => `${pgbackrestPrefix(n)}*`) } },
                },
                {
                  Sid: 'KeepRepositories',
                  Effect: 'Allow',
                  Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
                  Resource: names.map((n) => objectsUnder(pgbackrestPrefix(n))),
                },
                {
                  Sid: 'EncryptRepositories',
                  Effect: 'Allow',
                  Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
                  Resource: { 'Fn::GetAtt': ['BackupKey', 'Arn'] },
                  Condition: {
                    StringEquals: { 'kms:ViaService': { 'Fn::Sub': `s3.\${AWS::Region}.amazonaws.com` } },
                  },
                },
              ],
            },
          },
        },
      },
      Outputs: {
        HostRepositoryPolicyArn: {
          Description: "Attach to the DB host's instance role: pgBackRest's access to its repositories.",
          Value: { Ref: 'HostRepositoryPolicy' },
        },
      },
    };
  },

  /** The files kinds' prefixes (configuration, application, static), for an s3:prefix condition on ListBucket. */
  filePrefixes: () => FILE_KINDS.map((kind) => `${KIND_PREFIX[kind]}/*`),

  /**
   * Who may read configuration archives, which hold the application's secrets:
   * the bucket policy denies everyone else. verifyArchive streams them;
   * pruneBackups, planFilesRestore, planVerification and planMonitoring read
   * their manifests (the catalog); and the DB host, when its role is given,
   * fetches one to restore it when its own copy is gone.
   */
  configurationReaders: async ({ resolveVariable }) => {
    const hostRoleArn = await checkedHostRoleArn(resolveVariable);
    return [
      roleOf('VerifyArchive'),
      roleOf('PruneBackups'),
      roleOf('PlanFilesRestore'),
      roleOf('PlanVerification'),
      roleOf('PlanMonitoring'),
      roleOf('WriteAuditReport'),
      ...(hostRoleArn ? [hostRoleArn] : []),
    ];
  },

  /**
   * What the DB host may fetch to restore: every backup prefix, except
   * configuration/ unless the host's role is given, since only then does the
   * bucket policy let that role read it.
   */
  hostRestoreObjects: async ({ resolveVariable }) => {
    const hostRoleArn = await checkedHostRoleArn(resolveVariable);
    const configuration = `${KIND_PREFIX.configuration}/`;
    return BACKUP_PREFIXES.filter((prefix) => hostRoleArn || prefix !== configuration).map(objectsUnder);
  },

  backupTargets: async ({ resolveVariable }) => (await checkedTargets(resolveVariable)).text,

  /**
   * The schedules of the two backup workflows, from the one table of crons in
   * shared/catalog/schedule.ts that the freshness checks and the age alarms read too:
   * each kind at its cron, with the kind as the execution input.
   */
  backupSchedules: () => {
    const events = (kinds) =>
      kinds.map((kind) => ({ schedule: { rate: SCHEDULES[kind].cron, input: { kind } } }));
    return { databaseBackup: events(SCHEDULED_DATABASE_KINDS), filesBackup: events(FILE_KINDS) };
  },

  diskUsageAlertPercent: async ({ resolveVariable }) =>
    String(await checkedDiskUsageAlertPercent(resolveVariable)),

  /** The alarms, as a `resources` part: their number follows the targets and their databases. */
  backupAlarms: async ({ resolveVariable }) => {
    const [stage, { targets }, diskPercent] = await Promise.all([
      resolveVariable('sls:stage'),
      checkedTargets(resolveVariable),
      checkedDiskUsageAlertPercent(resolveVariable),
    ]);
    return { Resources: Object.fromEntries(alarms(stage, targets, diskPercent)) };
  },

  /**
   * The dashboard (a JSON text with `${...}` for Fn::Sub): the alarms' states;
   * each scheduled kind's backup age against its limit; archive size and backup
   * duration per kind; disk usage against its threshold; and the failed and
   * succeeded executions of every state machine.
   */
  dashboardBody: async ({ resolveVariable }) => {
    const [stage, { targets }, diskPercent, machines] = await Promise.all([
      resolveVariable('sls:stage'),
      checkedTargets(resolveVariable),
      checkedDiskUsageAlertPercent(resolveVariable),
      stateMachines(resolveVariable),
    ]);
    const backups = monitoredBackups(targets);
    const archiving = archivingTargets(targets);
    const archives = targets.flatMap(({ name }) =>
      [...DUMP_KINDS, ...FILE_KINDS].map((kind) => ({ target: name, kind })),
    );
    const perArchive = (metric) =>
      archives.map(({ target, kind }) =>
        line(stage, metric, { Target: target, Kind: kind }, `${target} ${kind}`),
      );
    const executions = (metric) =>
      machines.map(({ id, name }) => [
        'AWS/States',
        metric,
        'StateMachineArn',
        `\${${id}}`,
        { label: name.replace(`kennel-backup-${stage}-`, '') },
      ]);
    const widgets = [
      {
        type: 'alarm',
        width: 24,
        height: 4,
        properties: {
          title: 'Alarms',
          alarms: [
            ...alarms(stage, targets, diskPercent).map(([id]) => `\${${id}.Arn}`),
            `\${AlertDeadLettersAlarm.Arn}`,
          ],
        },
      },
      ...[...SCHEDULED_DUMP_KINDS, ...FILE_KINDS].map((kind) =>
        graph(
          `Age of the newest verified ${kind} backup (s)`,
          backups
            .filter((b) => b.kind === kind)
            .map(({ target, database }) =>
              line(
                stage,
                'BackupAgeSeconds',
                { Target: target, Kind: kind, Database: database },
                `${target} ${database}`,
              ),
            ),
          limitLine(`limit ${spoken(maxAgeMinutes(kind))}`, maxAgeMinutes(kind) * 60),
        ),
      ),
      // WAL archive age and the repositories' size side by side, for the pgBackRest targets.
      ...(archiving.length === 0
        ? []
        : [
            graph(
              'WAL archive age (s)',
              archiving.map(({ name }) => line(stage, 'WalArchiveAgeSeconds', { Target: name }, name)),
              {
                period: MINUTE_SECONDS,
                ...limitLine(
                  `alarm above ${WAL_ARCHIVE_AGE_LIMIT_SECONDS / 60} min`,
                  WAL_ARCHIVE_AGE_LIMIT_SECONDS,
                ),
              },
            ),
            graph(
              'pgBackRest repository (bytes)',
              archiving.map(({ name }) => line(stage, 'PgbackrestRepositoryBytes', { Target: name }, name)),
            ),
          ]),
      graph('Archive size (bytes)', perArchive('ArchiveSizeBytes')),
      graph('Backup duration (s)', perArchive('BackupDurationSeconds')),
      graph(
        'Backup disk used (%)',
        targets.map(({ name }) => line(stage, 'BackupDiskUsedPercent', { Target: name }, name)),
        { ...limitLine(`alarm above ${diskPercent}%`, diskPercent), yAxis: { left: { min: 0, max: 100 } } },
      ),
      graph('Executions failed', executions('ExecutionsFailed'), { stat: 'Sum' }),
      graph('Executions succeeded', executions('ExecutionsSucceeded'), { stat: 'Sum' }),
    ];
    return { 'Fn::Sub': JSON.stringify({ widgets }) };
  },

  alertEmail: async ({ resolveVariable }) => checkedAlertEmail(resolveVariable),

  /**
   * The `keyBreakGlassRole` param: the name of the role this stack creates, the
   * only one the backup key's policy lets disable the key or schedule its
   * deletion. A malformed name fails packaging rather than the deploy.
   */
  keyBreakGlassRoleName: async ({ resolveVariable }) => {
    const name = await param(resolveVariable, 'keyBreakGlassRole');
    if (!ROLE_NAME.test(name)) {
      throw new Error(
        `The keyBreakGlassRole param "${name}" is not an IAM role name. Give a name of 1 to 64 letters, digits and +=,.@_- (no path, no ARN), one no other role in the account has, e.g. --param 'keyBreakGlassRole=kennel-backup-prod-key-break-glass'.`,
      );
    }
    return name;
  },

  /** The ARN (Ref) of every state machine, for the failure rule's event pattern. */
  stateMachineArns: async ({ resolveVariable }) =>
    (await stateMachines(resolveVariable)).map(({ id }) => ({ Ref: id })),

  /** The executions of every state machine, whose history sendAlert reads to name the failing state. */
  executionArns: async ({ resolveVariable }) =>
    (await stateMachines(resolveVariable)).map(({ name }) => executionsOf(name)),

  /**
   * The executions of the workflows that take a run lock (a TakeRunLock state in
   * their definition): runLock asks Step Functions whether a lock's holder still runs.
   */
  lockingExecutionArns: async ({ resolveVariable }) => {
    const definitions = require('./state-machines.cjs');
    return (await stateMachines(resolveVariable))
      .filter(({ key }) => 'TakeRunLock' in (definitions[key]?.States ?? {}))
      .map(({ name }) => executionsOf(name));
  },

  /**
   * startHostCommand may run AWS-RunShellScript on the configured targets only:
   * instances named by id, or instances carrying a target's tag (one statement per
   * tag key, since conditions on different keys would all have to hold at once).
   */
  sendCommandStatements: async ({ resolveVariable }) => {
    const { targets } = await checkedTargets(resolveVariable);
    const statements = [
      {
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [{ 'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}::document/AWS-RunShellScript` }],
      },
    ];
    const ids = [...new Set(targets.flatMap((t) => t.instanceIds ?? []))];
    if (ids.length > 0)
      statements.push({ Effect: 'Allow', Action: ['ssm:SendCommand'], Resource: ids.map(instanceArn) });
    const tagValues = new Map();
    for (const { tag } of targets) {
      if (tag) tagValues.set(tag.key, [...new Set([...(tagValues.get(tag.key) ?? []), tag.value])]);
    }
    for (const [key, values] of tagValues) {
      statements.push({
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [{ 'Fn::Sub': `arn:\${AWS::Partition}:ec2:\${AWS::Region}:\${AWS::AccountId}:instance/*` }],
        Condition: { StringEquals: { [`ssm:resourceTag/${key}`]: values } },
      });
    }
    return statements;
  },

  /**
   * The VPC of restoreTest and checkRestore: both connect to PostgreSQL on the DB
   * host's network. Both params empty leaves them outside any VPC (packaging
   * without an AWS account); one without the other is a mistake. `false` is
   * osls's "no VPC".
   */
  restoreTestVpc: async ({ resolveVariable }) => {
    const split = (s) =>
      s
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
    const subnetIds = split(await param(resolveVariable, 'restoreTestSubnetIds'));
    const securityGroupIds = split(await param(resolveVariable, 'restoreTestSecurityGroupIds'));
    if (subnetIds.length === 0 && securityGroupIds.length === 0) return false;
    const bad = [
      ...(subnetIds.length === 0 ? ['restoreTestSubnetIds is empty'] : []),
      ...(securityGroupIds.length === 0 ? ['restoreTestSecurityGroupIds is empty'] : []),
      ...subnetIds.filter((id) => !SUBNET_ID.test(id)).map((id) => `"${id}" is not a subnet id`),
      ...securityGroupIds
        .filter((id) => !SECURITY_GROUP_ID.test(id))
        .map((id) => `"${id}" is not a security group id`),
    ];
    if (bad.length > 0) {
      throw new Error(
        `The VPC params of restoreTest and checkRestore are malformed (give both, comma-separated): ${bad.join('; ')}`,
      );
    }
    return { subnetIds, securityGroupIds };
  },
};

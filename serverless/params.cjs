'use strict';

// Values derived from the deployment's params at package time. The targets are
// checked with the functions' own config schema (shared/config.ts), so a
// malformed --param fails `serverless package` with the message a cold start
// would give, instead of failing the first backup at 02:00.
const { parseConfig } = require('../shared/config.ts');
const { BACKUP_PREFIXES, FILE_KINDS, KIND_PREFIX } = require('../shared/keys.ts');

const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const SECURITY_GROUP_ID = /^sg-[0-9a-f]{8,17}$/;
/** An e-mail address as SNS takes it for an `email` subscription: one address, no display name. */
const EMAIL = /^[^\s@<>(),;:"]+@[^\s@<>(),;:"]+\.[^\s@<>(),;:"]+$/;
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
    return { id: machine.id, name: machine.name };
  });
}

/** A prefix's objects in the backup bucket, for IAM resources. */
const objectsUnder = (prefix) => ({ 'Fn::Sub': `\${BackupBucket.Arn}/${prefix}*` });
const roleOf = (logicalId) => ({ 'Fn::GetAtt': [`${logicalId}IamRoleLambdaExecution`, 'Arn'] });

function instanceArn(id) {
  return id.startsWith('mi-')
    ? { 'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:managed-instance/${id}` }
    : { 'Fn::Sub': `arn:\${AWS::Partition}:ec2:\${AWS::Region}:\${AWS::AccountId}:instance/${id}` };
}

module.exports = {
  /** The objects of every backup prefix (shared/keys.ts), for IAM resources. */
  backupObjects: () => BACKUP_PREFIXES.map(objectsUnder),

  /** The same prefixes for an s3:prefix condition on ListBucket. */
  backupPrefixes: () => BACKUP_PREFIXES.map((prefix) => `${prefix}*`),

  /** The objects of the files kinds (configuration, application, static), and nothing under database/. */
  fileObjects: () => FILE_KINDS.map((kind) => objectsUnder(`${KIND_PREFIX[kind]}/`)),

  /** The same prefixes for an s3:prefix condition on ListBucket. */
  filePrefixes: () => FILE_KINDS.map((kind) => `${KIND_PREFIX[kind]}/*`),

  /**
   * Who may read configuration archives, which hold the application's secrets:
   * the bucket policy denies everyone else. verifyArchive streams them,
   * pruneBackups and planFilesRestore read their manifests (the catalog), and
   * the DB host, when its role is given, fetches one to restore it when its own
   * copy is gone.
   */
  configurationReaders: async ({ resolveVariable }) => {
    const hostRoleArn = await checkedHostRoleArn(resolveVariable);
    return [
      roleOf('VerifyArchive'),
      roleOf('PruneBackups'),
      roleOf('PlanFilesRestore'),
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

  alertEmail: async ({ resolveVariable }) => checkedAlertEmail(resolveVariable),

  /** The ARN (Ref) of every state machine, for the failure rule's event pattern. */
  stateMachineArns: async ({ resolveVariable }) =>
    (await stateMachines(resolveVariable)).map(({ id }) => ({ Ref: id })),

  /** The executions of every state machine, whose history sendAlert reads to name the failing state. */
  executionArns: async ({ resolveVariable }) =>
    (await stateMachines(resolveVariable)).map(({ name }) => ({
      'Fn::Sub': `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:execution:${name}:*`,
    })),

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

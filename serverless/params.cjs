'use strict';

// Values derived from the deployment's params at package time. The targets are
// checked with the functions' own config schema (shared/config.ts), so a
// malformed --param fails `serverless package` with the message a cold start
// would give, instead of failing the first backup at 02:00.
const { parseConfig } = require('../shared/config.ts');
const { BACKUP_PREFIXES } = require('../shared/keys.ts');

const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const SECURITY_GROUP_ID = /^sg-[0-9a-f]{8,17}$/;

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

function instanceArn(id) {
  return id.startsWith('mi-')
    ? { 'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:managed-instance/${id}` }
    : { 'Fn::Sub': `arn:\${AWS::Partition}:ec2:\${AWS::Region}:\${AWS::AccountId}:instance/${id}` };
}

module.exports = {
  /** The objects of every backup prefix (shared/keys.ts), for IAM resources. */
  backupObjects: () => BACKUP_PREFIXES.map((prefix) => ({ 'Fn::Sub': `\${BackupBucket.Arn}/${prefix}*` })),

  /** The same prefixes for an s3:prefix condition on ListBucket. */
  backupPrefixes: () => BACKUP_PREFIXES.map((prefix) => `${prefix}*`),

  backupTargets: async ({ resolveVariable }) => (await checkedTargets(resolveVariable)).text,

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

'use strict';

// The vault: a copy of every object of the backup bucket, replicated by S3 to a
// bucket of its own in another region (and, with --param vaultAccount, another
// account), encrypted with its own key and locked. A CloudFormation stack
// creates its resources in one region only, so the vault is a stack of its own
// (serverless-vault.yml, deployed to the vault's region and account first);
// the backup stack (serverless.yml) replicates to it and names its key by the
// ARN that stack outputs (--param vaultKeyArn), as AWS asks of a replication
// destination's key: a full key ARN, never an alias, which KMS would resolve in
// the replicating account. Both stacks build their parts here, from the same
// names, so neither can name a bucket or role the other does not create.
const {
  ARCHIVE_RECORD_PREFIX,
  BACKUP_PREFIXES,
  FILE_KINDS,
  KIND_PREFIX,
  LOCK_PREFIX,
  MANIFEST_SUFFIX,
  PGBACKREST_PREFIX,
  PHYSICAL_RECORD_PREFIX,
  RECOVERY_RECORD_PREFIX,
} = require('../shared/catalog/keys.ts');
const { KEY_ADMINISTRATION_ACTIONS } = require('./key-policy.cjs');
const {
  ABORT_INCOMPLETE_UPLOAD_DAYS,
  DEFAULT_LOCK_DAYS,
  lifecycleRules,
  POINT_IN_TIME_DAYS,
  RETENTION,
} = require('../shared/catalog/retention.ts');

/** An AWS region's name, as the vaultRegion and backupRegion params give it. */
const REGION = /^[a-z]{2}(?:-gov)?-[a-z]+-\d$/;
const ACCOUNT = /^\d{12}$/;
const ROLE_ARN = /^arn:aws(?:-[a-z]+)*:iam::\d{12}:role\/(?:[\w+=,.@-]+\/)*[\w+=,.@-]{1,64}$/;
const ROLE_NAME = /^[\w+=,.@-]{1,64}$/;
const KEY_ARN = /^arn:aws(?:-[a-z]+)*:kms:([a-z0-9-]+):(\d{12}):key\/[0-9a-f-]{36}$/;

/**
 * Days every version written to the vault is locked from its writing: the
 * backup bucket's default retention (shared/catalog/retention.ts). S3
 * replicates a version's own retention with it; this covers a version that
 * carries none.
 */
const VAULT_LOCK_DAYS = DEFAULT_LOCK_DAYS;
const OBJECT_LOCK_MODES = ['GOVERNANCE', 'COMPLIANCE'];

/**
 * Days the vault keeps a backup's current version past its kind's retention.
 * No prune reaches the vault (delete markers are not replicated, on purpose),
 * so its lifecycle expires what the primary's pruning would have: a kind's
 * retention and the point-in-time window more, so that a month of failed
 * backups (alerted every day) never leaves the vault without the last good one.
 */
const VAULT_GRACE_DAYS = POINT_IN_TIME_DAYS;

/** The functions that read the vault's catalog when a restore's input says "source": "vault". */
const VAULT_READERS = ['planRestore', 'checkRestore', 'planFilesRestore', 'planPointInTimeRecovery'];
/** The roles serverless-iam-roles-per-function creates for them (its RoleName). */
const readerRoleName = (stage, region, fn) => `kennel-backup-${stage}-${fn}-${region}-lambdaRole`;
const pascal = (fn) => `${fn[0].toUpperCase()}${fn.slice(1)}`;

async function param(resolveVariable, name) {
  const value = await resolveVariable(`param:${name}`);
  return value == null ? '' : String(value).trim();
}

/** The vault's bucket: one per account, region and stage, like the backup bucket (`${...}` for Fn::Sub are taken). */
const vaultBucketName = (stage, account, region) => `kennel-backup-vault-${account}-${region}-${stage}`;
/** The role S3 replicates with, named so that the vault stack can name it before it exists. */
const replicationRoleName = (stage) => `kennel-backup-${stage}-vault-replication`;

/**
 * The backup stack's vault params: none (no vault), or `vaultRegion` (not the
 * stack's own), `vaultKeyArn` (the vault stack's VaultKeyArn output, in that
 * region and account) and `vaultAccount` when the vault lies in another
 * account. A malformed or inconsistent set fails packaging, before a deploy
 * would replicate nowhere or with the wrong key.
 */
async function checkedVault(resolveVariable) {
  const [region, account, keyArn, ownRegion] = await Promise.all([
    param(resolveVariable, 'vaultRegion'),
    param(resolveVariable, 'vaultAccount'),
    param(resolveVariable, 'vaultKeyArn'),
    resolveVariable('self:provider.region'),
  ]);
  if (!region && !account && !keyArn) return null;
  const usage =
    "Deploy the vault stack first (npx serverless deploy --config serverless-vault.yml --param 'vaultRegion=<region>' ...), then give --param 'vaultRegion=<region>' --param 'vaultKeyArn=<its VaultKeyArn output>' (and --param 'vaultAccount=<12 digits>' when the vault is in another account), or none of the three for no vault.";
  const problems = [];
  if (!REGION.test(region)) problems.push(`vaultRegion "${region}" is not an AWS region`);
  else if (region === ownRegion)
    problems.push(
      `vaultRegion "${region}" is this stack's own region: the vault must be in another one, so that one region's loss leaves it`,
    );
  if (account && !ACCOUNT.test(account))
    problems.push(`vaultAccount "${account}" is not a 12-digit account id`);
  const key = KEY_ARN.exec(keyArn);
  if (!key)
    problems.push(`vaultKeyArn "${keyArn}" is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)`);
  else {
    if (key[1] !== region) problems.push(`vaultKeyArn is a key of ${key[1]}, not of vaultRegion ${region}`);
    if (account && key[2] !== account)
      problems.push(`vaultKeyArn is a key of account ${key[2]}, not of vaultAccount ${account}`);
  }
  if (problems.length > 0)
    throw new Error(`The vault params are malformed: ${problems.join('; ')}. ${usage}`);
  return { region, account: account || null, keyArn };
}

const THIS_ACCOUNT = `\${AWS::AccountId}`;
/** The vault bucket's name as the backup stack computes it: the vault's account is its own unless vaultAccount says. */
const vaultBucketSub = (stage, vault) => ({
  'Fn::Sub': vaultBucketName(stage, vault.account ?? THIS_ACCOUNT, vault.region),
});
const vaultArn = (stage, vault, suffix = '') => ({
  'Fn::Sub': `arn:\${AWS::Partition}:s3:::${vaultBucketName(stage, vault.account ?? THIS_ACCOUNT, vault.region)}${suffix}`,
});

/**
 * The backup bucket's ReplicationConfiguration: every object it holds (archives,
 * manifests, the catalog's records, pgBackRest's repositories, reports, and
 * whatever prefix comes next) to the vault, as S3 writes it, with its version id
 * and its lock. Delete markers are not replicated: a prune, pgBackRest's expire
 * or a deletion by anyone in this account leaves the vault's copy. Objects are
 * SSE-KMS (the bucket's default): SseKmsEncryptedObjects must be enabled for S3
 * to replicate them at all, and each replica is encrypted with the vault's key.
 * Replication Time Control: S3 replicates 99.99% of objects within 15 minutes
 * and reports the rest (its metrics and events), a bound on what the vault can
 * lag the backups by.
 */
async function replicationConfiguration({ resolveVariable }) {
  const [stage, vault] = await Promise.all([resolveVariable('sls:stage'), checkedVault(resolveVariable)]);
  if (!vault) return { Ref: 'AWS::NoValue' };
  return {
    Role: { 'Fn::GetAtt': ['VaultReplicationRole', 'Arn'] },
    Rules: [
      {
        Id: 'EveryObjectToTheVault',
        Status: 'Enabled',
        Priority: 1,
        Filter: { Prefix: '' },
        DeleteMarkerReplication: { Status: 'Disabled' },
        SourceSelectionCriteria: { SseKmsEncryptedObjects: { Status: 'Enabled' } },
        Destination: {
          Bucket: vaultArn(stage, vault),
          EncryptionConfiguration: { ReplicaKmsKeyID: vault.keyArn },
          ReplicationTime: { Status: 'Enabled', Time: { Minutes: 15 } },
          Metrics: { Status: 'Enabled', EventThreshold: { Minutes: 15 } },
          // In another account the replicas belong to the vault's account, which
          // then alone decides who reads them.
          ...(vault.account
            ? { Account: vault.account, AccessControlTranslation: { Owner: 'Destination' } }
            : {}),
        },
      },
    ],
  };
}

const viaS3In = (region) => ({ 'kms:ViaService': `s3.${region}.amazonaws.com` });

/**
 * The backup bucket's ARN from its name (serverless.yml BucketName), not its
 * Fn::GetAtt: the bucket's ReplicationConfiguration names the replication role,
 * so the role cannot name the bucket back without a circular dependency.
 */
const backupBucketArn = (stage, suffix = '') => ({
  'Fn::Sub': `arn:\${AWS::Partition}:s3:::kennel-backup-\${AWS::AccountId}-\${AWS::Region}-${stage}${suffix}`,
});

/**
 * The replication role's grants, exactly what S3 replication asks of it
 * (Amazon S3 User Guide, "Setting up permissions" for replication and
 * "Replicating encrypted objects"): read the source's replication
 * configuration and list it; read each version for replication with its tags,
 * retention and legal hold (Object Lock); write replicas and their tags in the
 * vault, nothing else there (no ReplicateDelete: delete markers stay out);
 * decrypt with the backup key and encrypt with the vault's, each only through
 * S3 for its own bucket (the Bucket Key's encryption context is the bucket's ARN).
 * In another account, the replicas' ownership goes to the vault's account.
 */
function replicationStatements(stage, vault) {
  return [
    {
      Sid: 'ReadTheReplicationConfiguration',
      Effect: 'Allow',
      Action: ['s3:GetReplicationConfiguration', 's3:ListBucket'],
      Resource: backupBucketArn(stage),
    },
    {
      Sid: 'ReadEachVersionToReplicate',
      Effect: 'Allow',
      Action: [
        's3:GetObjectVersionForReplication',
        's3:GetObjectVersionTagging',
        's3:GetObjectRetention',
        's3:GetObjectLegalHold',
      ],
      Resource: backupBucketArn(stage, '/*'),
    },
    {
      Sid: 'WriteReplicasToTheVault',
      Effect: 'Allow',
      Action: [
        's3:ReplicateObject',
        's3:ReplicateTags',
        ...(vault.account ? ['s3:ObjectOwnerOverrideToBucketOwner'] : []),
      ],
      Resource: vaultArn(stage, vault, '/*'),
    },
    {
      Sid: 'DecryptWithTheBackupKey',
      Effect: 'Allow',
      Action: ['kms:Decrypt'],
      Resource: { 'Fn::GetAtt': ['BackupKey', 'Arn'] },
      Condition: {
        StringEquals: {
          'kms:ViaService': { 'Fn::Sub': `s3.\${AWS::Region}.amazonaws.com` },
          'kms:EncryptionContext:aws:s3:arn': backupBucketArn(stage),
        },
      },
    },
    {
      Sid: 'EncryptWithTheVaultKey',
      Effect: 'Allow',
      Action: ['kms:Encrypt', 'kms:GenerateDataKey'],
      Resource: vault.keyArn,
      Condition: {
        StringEquals: {
          ...viaS3In(vault.region),
          'kms:EncryptionContext:aws:s3:arn': vaultArn(stage, vault),
        },
      },
    },
  ];
}

/**
 * What a restore from the vault reads there: the catalog's readers the
 * manifests (ListBucket only under the prefixes they list), the DB host
 * the archives and pgBackRest's repositories (HostVaultRestorePolicy,
 * attached while restoring, like HostRestorePolicy). Read only: nothing in
 * this stack writes or deletes in the vault; replication alone puts objects there.
 */
function readerStatements(stage, vault, prefixes, objects) {
  return [
    {
      Effect: 'Allow',
      Action: ['s3:ListBucket'],
      Resource: vaultArn(stage, vault),
      Condition: { StringLike: { 's3:prefix': prefixes } },
    },
    {
      Effect: 'Allow',
      Action: ['s3:GetObject'],
      Resource: objects.map((o) => vaultArn(stage, vault, `/${o}`)),
    },
    {
      Effect: 'Allow',
      Action: ['kms:Decrypt'],
      Resource: vault.keyArn,
      Condition: { StringEquals: viaS3In(vault.region) },
    },
  ];
}

/**
 * Each vault reader's prefixes (for ListBucket) and objects (for GetObject): the
 * manifests of the kinds it restores and, for the planners, the records of their
 * archives' creation (catalog/archives/), which a plan checks a manifest against
 * there as in the backup bucket (replication copies them with the rest).
 */
const READS = {
  planRestore: {
    prefixes: ['database/*'],
    objects: [`database/*${MANIFEST_SUFFIX}`, `${ARCHIVE_RECORD_PREFIX}database/*`],
  },
  checkRestore: { prefixes: ['database/*'], objects: [`database/*${MANIFEST_SUFFIX}`] },
  planFilesRestore: {
    prefixes: FILE_KINDS.map((kind) => `${KIND_PREFIX[kind]}/*`),
    objects: [
      ...FILE_KINDS.map((kind) => `${KIND_PREFIX[kind]}/*${MANIFEST_SUFFIX}`),
      ...FILE_KINDS.map((kind) => `${ARCHIVE_RECORD_PREFIX}${KIND_PREFIX[kind]}/*`),
    ],
  },
  // What it reads in the backup bucket (serverless.yml): the WAL's listing, each
  // repository's archive.info and history files (never a segment), the physical
  // backups' records and the measured recoveries.
  planPointInTimeRecovery: {
    prefixes: [`${PGBACKREST_PREFIX}*/archive/*`, `${PHYSICAL_RECORD_PREFIX}*`, `${RECOVERY_RECORD_PREFIX}*`],
    objects: [
      `${PGBACKREST_PREFIX}*/archive/*/archive.info`,
      `${PGBACKREST_PREFIX}*/archive/*.history`,
      `${PHYSICAL_RECORD_PREFIX}*`,
      `${RECOVERY_RECORD_PREFIX}*`,
    ],
  },
};

/**
 * The backup stack's vault resources (a `resources` part; none without a
 * vault): the replication role, one read-only policy per vault reader attached
 * to its function's role, and the DB host's read policy for the vault's archives.
 */
async function backupStackResources({ resolveVariable }) {
  const [stage, vault] = await Promise.all([resolveVariable('sls:stage'), checkedVault(resolveVariable)]);
  if (!vault) return { Resources: {} };
  const readers = Object.fromEntries(
    VAULT_READERS.map((fn) => [
      `${pascal(fn)}VaultReadPolicy`,
      {
        Type: 'AWS::IAM::Policy',
        Properties: {
          PolicyName: 'read-the-vault',
          Roles: [{ Ref: `${pascal(fn)}IamRoleLambdaExecution` }],
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: readerStatements(stage, vault, READS[fn].prefixes, READS[fn].objects),
          },
        },
      },
    ]),
  );
  return {
    Resources: {
      VaultReplicationRole: {
        Type: 'AWS::IAM::Role',
        Properties: {
          RoleName: replicationRoleName(stage),
          Description: `kennel-backup ${stage}: S3 replicates the backup bucket to the vault with it`,
          AssumeRolePolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Effect: 'Allow',
                Principal: { Service: 's3.amazonaws.com' },
                Action: 'sts:AssumeRole',
                Condition: {
                  StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
                  ArnEquals: { 'aws:SourceArn': backupBucketArn(stage) },
                },
              },
            ],
          },
          Policies: [
            {
              PolicyName: 'replicate-to-the-vault',
              PolicyDocument: { Version: '2012-10-17', Statement: replicationStatements(stage, vault) },
            },
          ],
        },
      },
      ...readers,
      HostVaultRestorePolicy: {
        Type: 'AWS::IAM::ManagedPolicy',
        Properties: {
          Description: `kennel-backup ${stage}: lets the DB host read archives and pgBackRest's repositories from the vault to restore them`,
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'ReadVaultBackups',
                Effect: 'Allow',
                // GetObjectVersion: a restore fetches the version its backup wrote
                // (its record's), which replication keeps in the vault.
                Action: ['s3:GetObject', 's3:GetObjectVersion'],
                Resource: BACKUP_PREFIXES.map((p) => vaultArn(stage, vault, `/${p}*`)),
              },
              // A point-in-time recovery from the vault: pgBackRest's restore, info
              // and archive-get list and read the repository's copy there (as
              // HostRepositoryPolicy lets it in the backup bucket), and put,
              // delete or expire nothing.
              {
                Sid: 'ListVaultRepositories',
                Effect: 'Allow',
                Action: ['s3:ListBucket'],
                Resource: vaultArn(stage, vault),
                Condition: { StringLike: { 's3:prefix': [`${PGBACKREST_PREFIX}*`] } },
              },
              {
                Sid: 'ReadVaultRepositories',
                Effect: 'Allow',
                Action: ['s3:GetObject'],
                Resource: vaultArn(stage, vault, `/${PGBACKREST_PREFIX}*`),
              },
              {
                Sid: 'DecryptVaultBackups',
                Effect: 'Allow',
                Action: ['kms:Decrypt'],
                Resource: vault.keyArn,
                Condition: { StringEquals: viaS3In(vault.region) },
              },
            ],
          },
        },
      },
    },
    Outputs: {
      VaultBucketName: { Value: vaultBucketSub(stage, vault) },
      HostVaultRestorePolicyArn: {
        Description: "Attach to the DB host's instance role to restore from the vault.",
        Value: { Ref: 'HostVaultRestorePolicy' },
      },
    },
  };
}

/** The backup stack's environment: the vault's bucket and region, empty without a vault. */
async function vaultEnvironment({ resolveVariable }) {
  const [stage, vault] = await Promise.all([resolveVariable('sls:stage'), checkedVault(resolveVariable)]);
  return vault ? { bucket: vaultBucketSub(stage, vault), region: vault.region } : { bucket: '', region: '' };
}

// ---------------------------------------------------------------------------
// The vault stack (serverless-vault.yml), deployed in the vault's region and
// account.

/**
 * The vault stack's params: its own region (`vaultRegion`, the stack's
 * provider region), the backup stack's account and region (`backupAccount`,
 * empty: this account; `backupRegion`), the lock's mode, the break-glass role's
 * name, and the DB host's role when it may restore configuration archives.
 */
async function checkedVaultStack(resolveVariable) {
  const [stage, region, backupAccount, backupRegion, mode, breakGlass, hostRoleArn] = await Promise.all([
    resolveVariable('sls:stage'),
    param(resolveVariable, 'vaultRegion'),
    param(resolveVariable, 'backupAccount'),
    param(resolveVariable, 'backupRegion'),
    param(resolveVariable, 'objectLockMode'),
    param(resolveVariable, 'keyBreakGlassRole'),
    param(resolveVariable, 'hostRoleArn'),
  ]);
  const problems = [];
  if (!REGION.test(region))
    problems.push(`vaultRegion "${region}" is not an AWS region (the vault stack is deployed there)`);
  if (!REGION.test(backupRegion))
    problems.push(`backupRegion "${backupRegion}" is not an AWS region (the backup stack's)`);
  else if (backupRegion === region)
    problems.push('backupRegion and vaultRegion are the same region: the vault must be in another');
  if (backupAccount && !ACCOUNT.test(backupAccount))
    problems.push(`backupAccount "${backupAccount}" is not a 12-digit account id`);
  if (!OBJECT_LOCK_MODES.includes(mode.toUpperCase()))
    problems.push(`objectLockMode "${mode}" is neither governance nor compliance`);
  if (!ROLE_NAME.test(breakGlass)) problems.push(`keyBreakGlassRole "${breakGlass}" is not an IAM role name`);
  if (hostRoleArn && !ROLE_ARN.test(hostRoleArn))
    problems.push(`hostRoleArn "${hostRoleArn}" is not an IAM role ARN`);
  if (problems.length > 0) {
    throw new Error(
      `The vault stack's params are malformed: ${problems.join('; ')}. Deploy it with --param 'vaultRegion=<its region>' --param 'backupRegion=<the backup stack's region>' (and --param 'backupAccount=<12 digits>' when it is another account's), the same stage, objectLockMode and keyBreakGlassRole as the backup stack.`,
    );
  }
  return {
    stage,
    region,
    backupAccount: backupAccount || null,
    backupRegion,
    mode: mode.toUpperCase(),
    breakGlass,
    hostRoleArn: hostRoleArn || null,
  };
}

/**
 * The vault's lifecycle: the backup bucket's rules (shared/catalog/retention.ts),
 * each backup kind's now expiring its current versions by age, since no prune
 * reaches the vault, and the run locks' copies removed. pgBackRest's
 * repositories keep every file: a rule cannot tell archive.info, which
 * pgBackRest writes once, from an old WAL segment.
 */
function vaultLifecycleRules() {
  const kinds = Object.keys(RETENTION);
  const rules = lifecycleRules()
    .filter((rule) => rule.Prefix !== LOCK_PREFIX)
    .map((rule) => {
      const kind = kinds.find((k) => rule.Prefix === `${KIND_PREFIX[k]}/`);
      if (!kind) return { ...rule, Id: `Vault-${rule.Id}` };
      const { ExpiredObjectDeleteMarker: _markers, Transitions, ...kept } = rule;
      const expiration = RETENTION[kind].s3Days + VAULT_GRACE_DAYS;
      // S3 refuses a rule whose expiry does not come after each of its transitions.
      const before = (Transitions ?? []).filter((t) => t.TransitionInDays < expiration);
      return {
        ...kept,
        Id: `Vault-${rule.Id}`,
        ...(before.length > 0 ? { Transitions: before } : {}),
        ExpirationInDays: expiration,
        NoncurrentVersionExpiration: { NoncurrentDays: 1 },
      };
    });
  // A run lock is no backup: its copy goes as soon as its lock (VAULT_LOCK_DAYS) allows.
  return [
    ...rules,
    {
      Id: 'Vault-RunLocks',
      Status: 'Enabled',
      Prefix: LOCK_PREFIX,
      ExpirationInDays: 1,
      NoncurrentVersionExpiration: { NoncurrentDays: 1 },
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: ABORT_INCOMPLETE_UPLOAD_DAYS },
    },
  ];
}

/** The vault stack's resources: its key, the break-glass role's power over it, the bucket and its policy. */
async function vaultStackResources({ resolveVariable }) {
  const v = await checkedVaultStack(resolveVariable);
  const backupAccount = v.backupAccount ?? THIS_ACCOUNT;
  const backupRoot = { 'Fn::Sub': `arn:\${AWS::Partition}:iam::${backupAccount}:root` };
  const backupRole = (name) => ({ 'Fn::Sub': `arn:\${AWS::Partition}:iam::${backupAccount}:role/${name}` });
  const replicationRole = backupRole(replicationRoleName(v.stage));
  const readerRoles = VAULT_READERS.map((fn) => backupRole(readerRoleName(v.stage, v.backupRegion, fn)));
  const hostRole = v.hostRoleArn ? [v.hostRoleArn] : [];
  const bucketArn = { 'Fn::GetAtt': ['VaultBucket', 'Arn'] };
  const objects = { 'Fn::Sub': `\${VaultBucket.Arn}/*` };
  const viaS3 = { StringEquals: { 'kms:ViaService': { 'Fn::Sub': `s3.\${AWS::Region}.amazonaws.com` } } };
  const breakGlassArn = { 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/${v.breakGlass}` };
  const breakGlassActions = [
    'kms:DescribeKey',
    'kms:DisableKey',
    'kms:EnableKey',
    'kms:ScheduleKeyDeletion',
    'kms:CancelKeyDeletion',
  ];
  const breakGlassRole = {
    Type: 'AWS::IAM::Role',
    DeletionPolicy: 'Retain',
    UpdateReplacePolicy: 'Retain',
    Properties: {
      RoleName: v.breakGlass,
      Description: `kennel-backup ${v.stage}: the only role that may disable the vault key or schedule its deletion`,
      MaxSessionDuration: 3600,
      AssumeRolePolicyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: { 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:root` } },
            Action: 'sts:AssumeRole',
            Condition: { Bool: { 'aws:MultiFactorAuthPresent': 'true' } },
          },
        ],
      },
      Policies: [
        {
          PolicyName: 'disable-or-delete-vault-key',
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              { Effect: 'Allow', Action: breakGlassActions, Resource: { 'Fn::GetAtt': ['VaultKey', 'Arn'] } },
            ],
          },
        },
      ],
    },
  };
  return {
    Resources: {
      // As the backup key: it outlives the stack, and only the break-glass
      // role may disable it or schedule its deletion.
      VaultKey: {
        Type: 'AWS::KMS::Key',
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
        Properties: {
          Description: `kennel-backup ${v.stage}: encrypts the vault's copy of the backups`,
          EnableKeyRotation: true,
          KeyPolicy: {
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'AdministerThroughIam',
                Effect: 'Allow',
                Principal: { AWS: { 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:root` } },
                Action: KEY_ADMINISTRATION_ACTIONS,
                Resource: '*',
              },
              // Use, only through S3 in this region: the replicas encrypted by
              // the replication role, read back by the restore's readers.
              {
                Sid: 'UseThroughS3Only',
                Effect: 'Allow',
                Principal: { AWS: { 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:root` } },
                Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
                Resource: '*',
                Condition: viaS3,
              },
              {
                Sid: 'ReplicasEncryptedByTheReplicationRole',
                Effect: 'Allow',
                Principal: { AWS: backupRoot },
                Action: ['kms:Encrypt', 'kms:GenerateDataKey'],
                Resource: '*',
                Condition: { ...viaS3, ArnEquals: { 'aws:PrincipalArn': replicationRole } },
              },
              {
                Sid: 'ReplicasReadByTheRestoreReaders',
                Effect: 'Allow',
                Principal: { AWS: backupRoot },
                Action: ['kms:Decrypt'],
                Resource: '*',
                Condition: { ...viaS3, ArnEquals: { 'aws:PrincipalArn': [...readerRoles, ...hostRole] } },
              },
              {
                Sid: 'OnlyBreakGlassRoleDisablesOrDeletes',
                Effect: 'Deny',
                Principal: '*',
                Action: ['kms:DisableKey', 'kms:ScheduleKeyDeletion'],
                Resource: '*',
                Condition: { ArnNotEquals: { 'aws:PrincipalArn': breakGlassArn } },
              },
            ],
          },
        },
      },
      VaultKeyAlias: {
        Type: 'AWS::KMS::Alias',
        Properties: { AliasName: `alias/kennel-backup-vault-${v.stage}`, TargetKeyId: { Ref: 'VaultKey' } },
      },
      // The backup stack's break-glass role: in the backup account it exists
      // and gets this key too; in another account the vault stack creates one
      // of the same name, assumed with MFA by someone of that account.
      ...(v.backupAccount
        ? { VaultKeyBreakGlassRole: breakGlassRole }
        : {
            VaultKeyBreakGlassPolicy: {
              Type: 'AWS::IAM::Policy',
              Properties: {
                PolicyName: `disable-or-delete-vault-key-${v.region}`,
                Roles: [v.breakGlass],
                PolicyDocument: {
                  Version: '2012-10-17',
                  Statement: [
                    {
                      Effect: 'Allow',
                      Action: breakGlassActions,
                      Resource: { 'Fn::GetAtt': ['VaultKey', 'Arn'] },
                    },
                  ],
                },
              },
            },
          }),
      VaultBucket: {
        Type: 'AWS::S3::Bucket',
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
        Properties: {
          BucketName: { 'Fn::Sub': vaultBucketName(v.stage, THIS_ACCOUNT, `\${AWS::Region}`) },
          VersioningConfiguration: { Status: 'Enabled' },
          BucketEncryption: {
            ServerSideEncryptionConfiguration: [
              {
                ServerSideEncryptionByDefault: {
                  SSEAlgorithm: 'aws:kms',
                  KMSMasterKeyID: { 'Fn::GetAtt': ['VaultKey', 'Arn'] },
                },
                BucketKeyEnabled: true,
              },
            ],
          },
          PublicAccessBlockConfiguration: {
            BlockPublicAcls: true,
            BlockPublicPolicy: true,
            IgnorePublicAcls: true,
            RestrictPublicBuckets: true,
          },
          OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
          ObjectLockEnabled: true,
          ObjectLockConfiguration: {
            ObjectLockEnabled: 'Enabled',
            Rule: { DefaultRetention: { Mode: v.mode, Days: VAULT_LOCK_DAYS } },
          },
          LifecycleConfiguration: {
            Rules: vaultLifecycleRules(),
            TransitionDefaultMinimumObjectSize: 'all_storage_classes_128K',
          },
        },
      },
      VaultBucketPolicy: {
        Type: 'AWS::S3::BucketPolicy',
        Properties: {
          Bucket: { Ref: 'VaultBucket' },
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'DenyInsecureTransport',
                Effect: 'Deny',
                Principal: '*',
                Action: 's3:*',
                Resource: [bucketArn, objects],
                Condition: { Bool: { 'aws:SecureTransport': 'false' } },
              },
              // Replication alone writes here: no one puts, deletes, relocks or
              // bypasses a lock, whatever an identity policy allows (lifecycle
              // expiry is S3's own, outside any policy).
              {
                Sid: 'NoOneWritesOrDeletes',
                Effect: 'Deny',
                Principal: '*',
                Action: [
                  's3:PutObject',
                  's3:DeleteObject',
                  's3:DeleteObjectVersion',
                  's3:PutObjectRetention',
                  's3:PutObjectLegalHold',
                  's3:BypassGovernanceRetention',
                ],
                Resource: objects,
              },
              {
                Sid: 'OnlyTheReplicationRoleReplicates',
                Effect: 'Deny',
                Principal: '*',
                Action: ['s3:ReplicateObject', 's3:ReplicateDelete', 's3:ReplicateTags'],
                Resource: objects,
                Condition: { ArnNotEquals: { 'aws:PrincipalArn': replicationRole } },
              },
              {
                Sid: 'ReplicationFromTheBackupBucket',
                Effect: 'Allow',
                Principal: { AWS: backupRoot },
                Action: ['s3:ReplicateObject', 's3:ReplicateTags', 's3:ObjectOwnerOverrideToBucketOwner'],
                Resource: objects,
                Condition: { ArnEquals: { 'aws:PrincipalArn': replicationRole } },
              },
              {
                Sid: 'ReplicationChecksVersioning',
                Effect: 'Allow',
                Principal: { AWS: backupRoot },
                Action: ['s3:GetBucketVersioning', 's3:GetBucketObjectLockConfiguration'],
                Resource: bucketArn,
                Condition: { ArnEquals: { 'aws:PrincipalArn': replicationRole } },
              },
              {
                Sid: 'RestoresReadFromTheBackupAccount',
                Effect: 'Allow',
                Principal: { AWS: backupRoot },
                Action: ['s3:ListBucket', 's3:GetObject'],
                Resource: [bucketArn, objects],
                Condition: { ArnEquals: { 'aws:PrincipalArn': [...readerRoles, ...hostRole] } },
              },
              // Configuration archives hold the application's secrets: as in the
              // backup bucket, only their restore's planner and the DB host read them.
              {
                Sid: 'ConfigurationReadableOnlyByItsRoles',
                Effect: 'Deny',
                Principal: '*',
                Action: 's3:GetObject',
                Resource: { 'Fn::Sub': `\${VaultBucket.Arn}/${KIND_PREFIX.configuration}/*` },
                Condition: {
                  ArnNotEquals: {
                    'aws:PrincipalArn': [
                      backupRole(readerRoleName(v.stage, v.backupRegion, 'planFilesRestore')),
                      ...hostRole,
                    ],
                  },
                },
              },
            ],
          },
        },
      },
    },
    Outputs: {
      VaultBucketName: { Value: { Ref: 'VaultBucket' } },
      VaultKeyArn: {
        Description: "Give it to the backup stack: --param 'vaultKeyArn=<this>'.",
        Value: { 'Fn::GetAtt': ['VaultKey', 'Arn'] },
      },
    },
  };
}

/** The vault stack's provider region: its vaultRegion param, checked. */
async function vaultStackRegion({ resolveVariable }) {
  return (await checkedVaultStack(resolveVariable)).region;
}

module.exports = {
  replicationConfiguration,
  backupStackResources,
  vaultEnvironment,
  vaultStackResources,
  vaultStackRegion,
};

import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { HOST_WRITE_PREFIXES } from '../shared/keys.ts';
import { lifecycleConfiguration, lifecycleRules } from '../shared/retention.ts';
import { HOST_SCRIPTS } from '../shared/shell.ts';

/**
 * `serverless package` renders the CloudFormation template offline; these tests
 * read what it would deploy: the state machine built from the ASL file, the
 * bucket, and every permission of every role.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STAGE = 'test';
const SUBNETS = ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'];
const SECURITY_GROUP = 'sg-0123456789abcdef0';

/** Function name in serverless.yml and the ASL file → its folder under functions/. */
const FUNCTIONS = {
  planBackup: 'plan-backup',
  startHostCommand: 'start-host-command',
  checkHostCommand: 'check-host-command',
  verifyArchive: 'verify-archive',
  restoreTest: 'restore-test',
  pruneBackups: 'prune-backups',
  sendAlert: 'send-alert',
} as const;
type FunctionName = keyof typeof FUNCTIONS;
const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[];

interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Principal?: unknown;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}
interface PolicyDocument {
  Statement: Statement[];
}
interface Role {
  Policies?: { PolicyDocument: PolicyDocument }[];
  ManagedPolicyArns?: unknown[];
}
interface LambdaFunction {
  FunctionName: string;
  Handler: string;
  Runtime: string;
  Architectures: string[];
  MemorySize: number;
  Timeout: number;
  Role: unknown;
  Environment: { Variables: Record<string, unknown> };
  VpcConfig?: { SubnetIds: string[]; SecurityGroupIds: string[] };
}
interface CfnResource {
  Type: string;
  Properties: unknown;
  DeletionPolicy?: string;
}
interface Template {
  Resources: Record<string, CfnResource>;
  Outputs: Record<string, { Value: unknown }>;
}
interface AslState {
  Type: string;
  Resource?: unknown;
  ItemProcessor?: { States: Record<string, AslState> };
}
interface Asl {
  StartAt: string;
  States: Record<string, AslState>;
}

// asl-validator ships no type declarations.
type AslValidator = (definition: unknown) => {
  isValid: boolean;
  errors: unknown[];
  errorsText: () => string;
};
const aslValidator = createRequire(import.meta.url)('asl-validator') as AslValidator;

/** Every state, those inside Map states too (names are unique across a machine here). */
function allStates(states: Record<string, AslState>): [string, AslState][] {
  return Object.entries(states).flatMap(([name, state]) => [
    [name, state] as [string, AslState],
    ...(state.ItemProcessor ? allStates(state.ItemProcessor.States) : []),
  ]);
}

const sub = (text: string) => ({ 'Fn::Sub': text });
const getAtt = (logicalId: string) => ({ 'Fn::GetAtt': [logicalId, 'Arn'] });
const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);
const logicalId = (fn: FunctionName) => `${fn[0]?.toUpperCase()}${fn.slice(1)}`;

let packageDir = '';
let template: Template;

function resource<T>(id: string, type: string): T & { resource: CfnResource } {
  const found = template.Resources[id];
  if (!found) throw new Error(`The template has no resource ${id}`);
  expect(found.Type).toBe(type);
  return { ...(found.Properties as T), resource: found };
}

function ofType(type: string): [string, CfnResource][] {
  return Object.entries(template.Resources).filter(([, r]) => r.Type === type);
}

function roleStatements(id: string): Statement[] {
  return resource<Role>(id, 'AWS::IAM::Role').Policies?.flatMap((p) => p.PolicyDocument.Statement) ?? [];
}

beforeAll(async () => {
  packageDir = mkdtempSync(join(tmpdir(), 'kennel-backup-package-'));
  const args = ['serverless', 'package', '--stage', STAGE, '--package', packageDir];
  args.push(
    '--param',
    `restoreTestSubnetIds=${SUBNETS.join(',')}`,
    '--param',
    `restoreTestSecurityGroupIds=${SECURITY_GROUP}`,
  );
  try {
    await promisify(execFile)('npx', args, { cwd: ROOT, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`serverless package failed:\n${stdout ?? ''}\n${stderr ?? ''}`, { cause: error });
  }
  template = JSON.parse(
    readFileSync(join(packageDir, 'cloudformation-template-update-stack.json'), 'utf8'),
  ) as Template;
}, 240_000);

afterAll(() => {
  if (packageDir) rmSync(packageDir, { recursive: true, force: true });
});

describe('the ASL file', () => {
  const asl = JSON.parse(readFileSync(join(ROOT, 'statemachines/database-backup.asl.json'), 'utf8')) as Asl;

  /** The file with every Fn::GetAtt replaced by the ARN CloudFormation would give it. */
  function withArns(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(withArns);
    if (value === null || typeof value !== 'object') return value;
    const getAttribute = (value as { 'Fn::GetAtt'?: [string, string] })['Fn::GetAtt'];
    if (getAttribute)
      return `arn:aws:lambda:us-east-1:123456789012:function:kennel-backup-${STAGE}-${getAttribute[0]}`;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withArns(v)]));
  }

  it('is a valid state machine once its Fn::GetAtt are ARNs', () => {
    const result = aslValidator(withArns(asl));
    expect(result.errors).toEqual([]);
    expect(result.isValid).toBe(true);
  });

  it('would be rejected by the same check if a transition pointed nowhere', () => {
    const broken = withArns(asl) as Asl;
    (broken.States.PlanBackup as AslState & { Next: string }).Next = 'NoSuchState';
    expect(aslValidator(broken).isValid).toBe(false);
  });

  it('names only functions that serverless.yml defines', () => {
    const named = allStates(asl.States).flatMap(([, s]) => {
      const ref = (s.Resource as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt'];
      return ref ? [ref[0]] : [];
    });
    expect(new Set(named)).toEqual(new Set(FUNCTION_NAMES));
  });
});

describe('the state machine', () => {
  it('has the states of the ASL file, each task bound to the same function', () => {
    const asl = JSON.parse(readFileSync(join(ROOT, 'statemachines/database-backup.asl.json'), 'utf8')) as Asl;
    const props = resource<{ DefinitionString: { 'Fn::Sub': [string, Record<string, unknown>] } }>(
      'DatabaseBackupStateMachine',
      'AWS::StepFunctions::StateMachine',
    );
    const [text, variables] = props.DefinitionString['Fn::Sub'];
    const deployed = JSON.parse(text) as Asl;
    const functionOf = (placeholder: unknown): string => {
      const name = /^\$\{(\w+)\}$/.exec(String(placeholder))?.[1] ?? '';
      const target = (variables[name] as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
      return resource<LambdaFunction>(target, 'AWS::Lambda::Function').FunctionName;
    };

    expect(deployed.StartAt).toBe(asl.StartAt);
    const deployedStates = new Map(allStates(deployed.States));
    expect([...deployedStates.keys()]).toEqual(allStates(asl.States).map(([name]) => name));
    for (const [name, state] of allStates(asl.States)) {
      expect(deployedStates.get(name)?.Type, name).toBe(state.Type);
      const ref = (state.Resource as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt'];
      if (ref)
        expect(functionOf(deployedStates.get(name)?.Resource), name).toBe(`kennel-backup-${STAGE}-${ref[0]}`);
    }
    expect(deployedStates.get('BackUpEachTarget')?.Type).toBe('Map');
    expect(deployedStates.get('VerifyArchive')?.Type).toBe('Task');
    expect(deployedStates.get('BackupSucceeded')?.Type).toBe('Succeed');
  });

  it('is a Standard workflow with full logging and tracing', () => {
    const props = resource<{
      StateMachineName: string;
      StateMachineType: string;
      LoggingConfiguration: { Level: string; IncludeExecutionData: boolean; Destinations: unknown[] };
      TracingConfiguration: { Enabled: boolean };
    }>('DatabaseBackupStateMachine', 'AWS::StepFunctions::StateMachine');
    expect(props.StateMachineName).toBe(`kennel-backup-${STAGE}-database-backup`);
    expect(props.StateMachineType).toBe('STANDARD');
    expect(props.LoggingConfiguration).toEqual({
      Level: 'ALL',
      IncludeExecutionData: true,
      Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: getAtt('DatabaseBackupLogGroup') } }],
    });
    expect(props.TracingConfiguration).toEqual({ Enabled: true });
    expect(
      resource<{ LogGroupName: string }>('DatabaseBackupLogGroup', 'AWS::Logs::LogGroup').LogGroupName,
    ).toBe(`/aws/vendedlogs/states/kennel-backup-${STAGE}-database-backup`);
  });

  it.each([
    ['cron(0 2 * * ? *)', 'full'],
    ['cron(0 */6 * * ? *)', 'incremental'],
    ['cron(0/15 * * * ? *)', 'transaction-logs'],
  ])('starts on %s with the kind %s', (expression, kind) => {
    const rules = ofType('AWS::Events::Rule').map(
      ([, r]) =>
        r.Properties as {
          ScheduleExpression?: string;
          State: string;
          Targets: { Arn: unknown; Input: string }[];
        },
    );
    const schedule = rules.filter((r) => r.ScheduleExpression === expression);
    expect(schedule).toHaveLength(1);
    expect(schedule[0]?.State).toBe('ENABLED');
    expect(schedule[0]?.Targets).toHaveLength(1);
    expect(schedule[0]?.Targets[0]?.Arn).toEqual({ Ref: 'DatabaseBackupStateMachine' });
    expect(JSON.parse(schedule[0]?.Targets[0]?.Input ?? '')).toEqual({ kind });
  });

  it('may invoke the seven functions and nothing else', () => {
    const statements = roleStatements('DatabaseBackupStateMachineRole');
    const invoke = statements.filter((s) => asArray(s.Action).includes('lambda:InvokeFunction'));
    expect(invoke).toHaveLength(1);
    const functions = asArray(invoke[0]?.Resource).filter(
      (r) => typeof r === 'object' && r !== null && 'Fn::GetAtt' in r,
    );
    expect(new Set(functions)).toEqual(
      new Set(FUNCTION_NAMES.map((fn) => getAtt(`${logicalId(fn)}LambdaFunction`))),
    );
    expect(asArray(invoke[0]?.Action)).toEqual(['lambda:InvokeFunction']);
  });
});

describe('the backup bucket', () => {
  type Bucket = {
    VersioningConfiguration: { Status: string };
    BucketEncryption: { ServerSideEncryptionConfiguration: unknown[] };
    PublicAccessBlockConfiguration: Record<string, boolean>;
    OwnershipControls: unknown;
    LifecycleConfiguration: { Rules: Record<string, unknown>[] };
  };

  it('is versioned, encrypted with its own rotating key, private, and outlives the stack', () => {
    const bucket = resource<Bucket>('BackupBucket', 'AWS::S3::Bucket');
    expect(bucket.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(bucket.BucketEncryption.ServerSideEncryptionConfiguration).toEqual([
      {
        ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: getAtt('BackupKey') },
        BucketKeyEnabled: true,
      },
    ]);
    expect(bucket.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
    expect(bucket.resource.DeletionPolicy).toBe('Retain');

    const key = resource<{ EnableKeyRotation: boolean; KeyPolicy: PolicyDocument }>(
      'BackupKey',
      'AWS::KMS::Key',
    );
    expect(key.EnableKeyRotation).toBe(true);
    expect(key.resource.DeletionPolicy).toBe('Retain');
    for (const s of key.KeyPolicy.Statement)
      expect(asArray(s.Action).filter((a) => a.includes('*'))).toEqual([]);
  });

  it('refuses every request that does not use TLS', () => {
    const policy = resource<{ Bucket: unknown; PolicyDocument: PolicyDocument }>(
      'BackupBucketPolicy',
      'AWS::S3::BucketPolicy',
    );
    expect(policy.Bucket).toEqual({ Ref: 'BackupBucket' });
    expect(policy.PolicyDocument.Statement).toEqual([
      {
        Sid: 'DenyInsecureTransport',
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:*',
        Resource: [getAtt('BackupBucket'), sub(`\${BackupBucket.Arn}/*`)],
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
    ]);
  });

  it('has the lifecycle rules the retention table builds', () => {
    const { LifecycleConfiguration } = resource<Bucket>('BackupBucket', 'AWS::S3::Bucket');
    expect(LifecycleConfiguration).toEqual(lifecycleConfiguration());
    expect(LifecycleConfiguration.Rules).toEqual(lifecycleRules());
    // The source document's transitions for every database kind, and pruned
    // versions kept as long as the kind's own retention.
    const transitions = [
      { TransitionInDays: 30, StorageClass: 'STANDARD_IA' },
      { TransitionInDays: 90, StorageClass: 'GLACIER' },
      { TransitionInDays: 365, StorageClass: 'DEEP_ARCHIVE' },
    ];
    expect(LifecycleConfiguration.Rules).toEqual(
      [
        ['database/full/', 30],
        ['database/incremental/', 7],
        ['database/transaction-logs/', 2555],
      ].map(([Prefix, NoncurrentDays]) =>
        expect.objectContaining({
          Prefix,
          Transitions: transitions,
          NoncurrentVersionExpiration: { NoncurrentDays },
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
        }),
      ),
    );
  });

  it('never expires a current full backup: pruning keeps the newest verified one however old', () => {
    const { LifecycleConfiguration } = resource<Bucket>('BackupBucket', 'AWS::S3::Bucket');
    const coveringFull = LifecycleConfiguration.Rules.filter((r) =>
      'database/full/primary/kennel_prod/'.startsWith(String(r.Prefix ?? '')),
    );
    expect(coveringFull.length).toBeGreaterThan(0);
    for (const rule of coveringFull) {
      expect(rule).not.toHaveProperty('ExpirationInDays');
      expect(rule).not.toHaveProperty('ExpirationDate');
    }
  });
});

describe('permissions', () => {
  const objects = sub(`\${BackupBucket.Arn}/database/*`);
  const viaS3 = { StringEquals: { 'kms:ViaService': sub(`s3.\${AWS::Region}.amazonaws.com`) } };
  const bucketKey = (...actions: string[]): Statement => ({
    Effect: 'Allow',
    Action: actions,
    Resource: getAtt('BackupKey'),
    Condition: viaS3,
  });
  const parameter = (name: string) =>
    sub(
      `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter/kennel-backup/${STAGE}/${name}`,
    );
  const readParameter = (name: string): Statement[] => [
    { Effect: 'Allow', Action: ['ssm:GetParameter'], Resource: parameter(name) },
    {
      Effect: 'Allow',
      Action: ['kms:Decrypt'],
      Resource: sub(`arn:\${AWS::Partition}:kms:\${AWS::Region}:\${AWS::AccountId}:key/*`),
      Condition: {
        StringEquals: {
          'kms:ViaService': sub(`ssm.\${AWS::Region}.amazonaws.com`),
          'kms:EncryptionContext:PARAMETER_ARN': parameter(name),
        },
      },
    },
  ];

  /** What each function may do beyond writing its own logs: the whole list, so any addition fails here. */
  const GRANTS: Record<FunctionName, Statement[]> = {
    planBackup: [],
    startHostCommand: [
      {
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [sub(`arn:\${AWS::Partition}:ssm:\${AWS::Region}::document/AWS-RunShellScript`)],
      },
      {
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [sub(`arn:\${AWS::Partition}:ec2:\${AWS::Region}:\${AWS::AccountId}:instance/*`)],
        Condition: { StringEquals: { 'ssm:resourceTag/kennel-backup-target': ['db'] } },
      },
    ],
    checkHostCommand: [
      { Effect: 'Allow', Action: ['ssm:GetCommandInvocation', 'ssm:ListCommandInvocations'], Resource: '*' },
    ],
    verifyArchive: [
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': 'database/*' } },
      },
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: objects },
      bucketKey('kms:Decrypt', 'kms:GenerateDataKey'),
    ],
    restoreTest: [
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': 'database/*' } },
      },
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: objects },
      bucketKey('kms:Decrypt', 'kms:GenerateDataKey'),
      ...readParameter('restore-check-database-url'),
    ],
    pruneBackups: [
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': 'database/*' } },
      },
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:DeleteObject'], Resource: objects },
      bucketKey('kms:Decrypt'),
    ],
    sendAlert: readParameter('alert-webhook-url'),
  };

  /** Actions that support no resource-level permission, so only `Resource: '*'` grants them. */
  const UNSCOPABLE: Record<string, string[]> = {
    // SSM command status reads.
    '*': ['ssm:GetCommandInvocation', 'ssm:ListCommandInvocations'],
    // Step Functions' CloudWatch Logs delivery and X-Ray tracing (added by serverless-step-functions).
    DatabaseBackupStateMachineRole: [
      'logs:CreateLogDelivery',
      'logs:GetLogDelivery',
      'logs:UpdateLogDelivery',
      'logs:DeleteLogDelivery',
      'logs:ListLogDeliveries',
      'logs:PutResourcePolicy',
      'logs:DescribeResourcePolicies',
      'logs:DescribeLogGroups',
      'xray:PutTraceSegments',
      'xray:PutTelemetryRecords',
      'xray:GetSamplingRules',
      'xray:GetSamplingTargets',
    ],
  };

  it.each(FUNCTION_NAMES)('%s has its own role: its logs and exactly its grants', (fn) => {
    const lambda = resource<LambdaFunction>(`${logicalId(fn)}LambdaFunction`, 'AWS::Lambda::Function');
    const roleId = `${logicalId(fn)}IamRoleLambdaExecution`;
    expect(lambda.Role).toEqual(getAtt(roleId));
    const [logs, ...grants] = roleStatements(roleId);
    expect(logs).toEqual({
      Effect: 'Allow',
      Action: ['logs:CreateLogStream', 'logs:CreateLogGroup', 'logs:PutLogEvents'],
      Resource: [
        sub(
          `arn:\${AWS::Partition}:logs:\${AWS::Region}:\${AWS::AccountId}:log-group:/aws/lambda/kennel-backup-${STAGE}-${fn}:*:*`,
        ),
      ],
    });
    expect(grants).toEqual(GRANTS[fn]);
  });

  it('no role or managed policy allows a wildcard action, or any resource except for unscopable actions', () => {
    const documents = [
      ...ofType('AWS::IAM::Role').flatMap(([id, r]) =>
        ((r.Properties as Role).Policies ?? []).map((p) => [id, p.PolicyDocument] as const),
      ),
      ...ofType('AWS::IAM::ManagedPolicy').map(
        ([id, r]) => [id, (r.Properties as { PolicyDocument: PolicyDocument }).PolicyDocument] as const,
      ),
    ];
    expect(documents.length).toBeGreaterThanOrEqual(FUNCTION_NAMES.length + 3);
    const problems: string[] = [];
    for (const [id, document] of documents) {
      for (const s of document.Statement) {
        const actions = asArray(s.Action);
        for (const a of actions.filter((a) => a.includes('*'))) problems.push(`${id}: wildcard action ${a}`);
        if (asArray(s.Resource).includes('*')) {
          const allowed = [...(UNSCOPABLE['*'] ?? []), ...(UNSCOPABLE[id] ?? [])];
          for (const a of actions.filter((a) => !allowed.includes(a)))
            problems.push(`${id}: ${a} on any resource`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('only restoreTest runs in the VPC, with the AWS managed policy for its network interfaces', () => {
    for (const fn of FUNCTION_NAMES) {
      const lambda = resource<LambdaFunction>(`${logicalId(fn)}LambdaFunction`, 'AWS::Lambda::Function');
      const role = resource<Role>(`${logicalId(fn)}IamRoleLambdaExecution`, 'AWS::IAM::Role');
      if (fn === 'restoreTest') {
        expect(lambda.VpcConfig).toEqual({ SubnetIds: SUBNETS, SecurityGroupIds: [SECURITY_GROUP] });
        expect(role.ManagedPolicyArns).toEqual([
          {
            'Fn::Join': [
              '',
              [
                'arn:',
                { Ref: 'AWS::Partition' },
                ':iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole',
              ],
            ],
          },
        ]);
      } else {
        expect(lambda.VpcConfig, fn).toBeUndefined();
        expect(role.ManagedPolicyArns, fn).toEqual([]);
      }
    }
  });

  it("the DB host's policy may only upload under the host prefixes, encrypted with the bucket key", () => {
    const policy = resource<{ PolicyDocument: PolicyDocument }>(
      'HostBackupPolicy',
      'AWS::IAM::ManagedPolicy',
    );
    expect(policy.PolicyDocument.Statement).toEqual([
      { Sid: 'PutBackups', Effect: 'Allow', Action: ['s3:PutObject'], Resource: objects },
      { Sid: 'EncryptBackups', ...bucketKey('kms:GenerateDataKey', 'kms:Decrypt') },
    ]);
    expect(HOST_WRITE_PREFIXES.map((p) => sub(`\${BackupBucket.Arn}/${p}*`))).toEqual([objects]);
    expect(template.Outputs.HostBackupPolicyArn?.Value).toEqual({ Ref: 'HostBackupPolicy' });
  });

  it("the DB host's SSM agent may write command output to the host-command log group only", () => {
    const policy = resource<{ PolicyDocument: PolicyDocument }>(
      'HostCommandOutputPolicy',
      'AWS::IAM::ManagedPolicy',
    );
    const [write, find] = policy.PolicyDocument.Statement;
    expect(write?.Resource).toEqual(getAtt('HostCommandLogGroup'));
    expect(asArray(write?.Action ?? [])).toEqual([
      'logs:CreateLogStream',
      'logs:DescribeLogStreams',
      'logs:PutLogEvents',
    ]);
    expect(asArray(find?.Action ?? [])).toEqual(['logs:DescribeLogGroups']);
    expect(template.Outputs.HostCommandOutputPolicyArn?.Value).toEqual({ Ref: 'HostCommandOutputPolicy' });
  });
});

describe('the functions', () => {
  it.each(FUNCTION_NAMES)('%s runs its handler on nodejs24.x (arm64)', (fn) => {
    const lambda = resource<LambdaFunction>(`${logicalId(fn)}LambdaFunction`, 'AWS::Lambda::Function');
    expect(lambda.FunctionName).toBe(`kennel-backup-${STAGE}-${fn}`);
    expect(lambda.Handler).toBe(`functions/${FUNCTIONS[fn]}/handler.handler`);
    expect(lambda.Runtime).toBe('nodejs24.x');
    expect(lambda.Architectures).toEqual(['arm64']);
  });

  it('verifyArchive has the time and memory to stream a large archive', () => {
    const lambda = resource<LambdaFunction>('VerifyArchiveLambdaFunction', 'AWS::Lambda::Function');
    expect(lambda.Timeout).toBe(900);
    expect(lambda.MemorySize).toBe(1024);
  });

  it("every function's environment is a complete configuration for shared/config.ts", () => {
    const bucketName = 'kennel-backup-123456789012-us-east-1-test';
    for (const fn of FUNCTION_NAMES) {
      const { Variables } = resource<LambdaFunction>(
        `${logicalId(fn)}LambdaFunction`,
        'AWS::Lambda::Function',
      ).Environment;
      expect(Variables.BACKUP_BUCKET).toEqual({ Ref: 'BackupBucket' });
      expect(Variables.HOST_COMMAND_LOG_GROUP).toEqual({ Ref: 'HostCommandLogGroup' });
      const config = parseConfig({
        ...(Variables as Record<string, string>),
        BACKUP_BUCKET: bucketName,
        HOST_COMMAND_LOG_GROUP: `/kennel-backup/${STAGE}/host-commands`,
      });
      expect(config.STAGE).toBe(STAGE);
      expect(config.BACKUP_TARGETS).toEqual([
        expect.objectContaining({
          name: 'kennel-db',
          tag: { key: 'kennel-backup-target', value: 'db' },
          database: 'kennel_prod',
        }),
      ]);
      expect(config.EXCLUDED_TABLES).toEqual(['audit_logs', 'session_logs']);
      expect(config.HOST_COMMAND_TIMEOUT_SECONDS).toBe(3600);
      expect(config.ALERT_WEBHOOK_PARAMETER).toBe(`/kennel-backup/${STAGE}/alert-webhook-url`);
      expect(config.RESTORE_CHECK_DATABASE_URL_PARAMETER).toBe(
        `/kennel-backup/${STAGE}/restore-check-database-url`,
      );
    }
    const logGroup = resource<{ LogGroupName: string }>('HostCommandLogGroup', 'AWS::Logs::LogGroup');
    expect(logGroup.LogGroupName).toBe(`/kennel-backup/${STAGE}/host-commands`);
  });

  const zipEntries = (fn: FunctionName) =>
    execFileSync('unzip', ['-Z1', join(packageDir, `${fn}.zip`)], { encoding: 'utf8' })
      .trim()
      .split('\n');

  it('startHostCommand is packaged with the host scripts it reads at run time', () => {
    const entries = zipEntries('startHostCommand');
    expect(entries).toContain('functions/start-host-command/handler.mjs');
    expect(entries).toContain('host/common.sh');
    expect(entries).toContain('host/database-backup.sh');
    for (const script of HOST_SCRIPTS) expect(entries).toContain(`host/${script}.sh`);
  });

  it.each(FUNCTION_NAMES.filter((fn) => fn !== 'startHostCommand'))(
    '%s is one ES module bundle without the host scripts',
    (fn) => {
      const entries = zipEntries(fn);
      expect(entries).toContain(`functions/${FUNCTIONS[fn]}/handler.mjs`);
      expect(entries.filter((e) => e.startsWith('host/') || e.startsWith('node_modules/'))).toEqual([]);
    },
  );
});

import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ALERTED_STATUSES } from '../shared/alert/message.ts';
import { TERMINAL_STATUSES } from '../shared/audit/history-export.ts';
import { historyFileName } from '../shared/backup/wal-segments.ts';
import { Catalog } from '../shared/catalog/catalog.ts';
import {
  ARCHIVE_RECORD_PREFIX,
  archiveFileName,
  archiveKey,
  archiveRecordKey,
  BACKUP_PREFIXES,
  DATABASE_KINDS,
  DUMP_KINDS,
  drillReportKey,
  FILE_KINDS,
  KIND_PREFIX,
  kindPrefix,
  manifestKey,
  PGBACKREST_PREFIX,
  pgbackrestPrefix,
  physicalRecordKey,
  SCHEDULED_DATABASE_KINDS,
  SCHEDULED_DUMP_KINDS,
  tarballFileName,
} from '../shared/catalog/keys.ts';
import {
  AUDIT_DAYS,
  DEFAULT_LOCK_DAYS,
  lifecycleConfiguration,
  lifecycleRules,
  lockDays,
  POINT_IN_TIME_DAYS,
  RETENTION,
  reachesPrefix,
} from '../shared/catalog/retention.ts';
import { maxAgeMinutes, SCHEDULES } from '../shared/catalog/schedule.ts';
import { type Config, parseConfig } from '../shared/core/config.ts';
import { CANCELLED_STATUSES } from '../shared/host/cancel.ts';
import { pgbackrestArchivePrefix, pgbackrestConfOf, pgbackrestPath } from '../shared/host/pgbackrest-conf.ts';
import { HOST_SCRIPTS } from '../shared/host/shell.ts';
import { createMetrics, METRICS_NAMESPACE, metricsSink, recordArchive } from '../shared/watch/metrics.ts';
import { planMonitoring } from '../shared/watch/monitoring.ts';
import { TASK_SECONDS } from '../statemachines/steps.ts';
import { WORKFLOWS, type WorkflowName } from '../statemachines/workflows.ts';
import { specFindings } from './support/cloudformation-spec.ts';

/**
 * `serverless package` renders the CloudFormation template offline; these tests
 * read what it would deploy: the state machines the builder renders, the
 * bucket, and every permission of every role.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STAGE = 'test';
const SUBNETS = ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'];
const SECURITY_GROUP = 'sg-0123456789abcdef0';
/** The DB host's instance role, for the second packaging (`--param hostRoleArn`). */
const HOST_ROLE_ARN = 'arn:aws:iam::123456789012:role/kennel-db-host';
/** The address the alert topic e-mails, for the second packaging (`--param alertEmail`). */
const ALERT_EMAIL = 'ops@kennel.example';
/**
 * Two targets, the first with two databases and pgBackRest, for the second
 * packaging (`--param backupTargets`): the alarms and the repository grants follow them.
 */
const TWO_TARGETS = [
  {
    name: 'kennel-db',
    tag: { key: 'kennel-backup-target', value: 'db' },
    database: 'kennel_prod',
    databases: ['kennel_prod', 'kennel_archive'],
    pgbackrest: { dataDirectory: '/var/lib/postgresql/15/main' },
  },
  { name: 'kennel-replica', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
];
/** The backup key's break-glass role in the second packaging (`--param keyBreakGlassRole`). */
const BREAK_GLASS_ROLE = 'kennel-backup-key-custodian';
/** The disk threshold of the second packaging (`--param diskUsageAlertPercent`); 80 without it. */
const DISK_PERCENT = 90;
/** The vault of the second packaging: in another region and another account (`--param vault*`). */
const VAULT_REGION = 'eu-west-1';
const VAULT_ACCOUNT = '210987654321';
const VAULT_KEY_ARN = `arn:aws:kms:${VAULT_REGION}:${VAULT_ACCOUNT}:key/1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d`;
const VAULT_BUCKET = `kennel-backup-vault-${VAULT_ACCOUNT}-${VAULT_REGION}-${STAGE}`;

/** Function name in serverless.yml and in the workflows' tasks → its folder under functions/. */
const FUNCTIONS = {
  planBackup: 'plan-backup',
  planFilesBackup: 'plan-files-backup',
  startHostCommand: 'start-host-command',
  checkHostCommand: 'check-host-command',
  checkWalContinuity: 'check-wal-continuity',
  verifyArchive: 'verify-archive',
  restoreTest: 'restore-test',
  recordPhysicalRestoreTest: 'record-physical-restore-test',
  planRestore: 'plan-restore',
  checkRestore: 'check-restore',
  planFilesRestore: 'plan-files-restore',
  reportRestore: 'report-restore',
  planPointInTimeRecovery: 'plan-point-in-time-recovery',
  reportPointInTimeRecovery: 'report-point-in-time-recovery',
  pruneBackups: 'prune-backups',
  recordPhysicalBackup: 'record-physical-backup',
  recordPhysicalExpiry: 'record-physical-expiry',
  sendAlert: 'send-alert',
  planVerification: 'plan-verification',
  reportVerification: 'report-verification',
  planDrill: 'plan-drill',
  reportDrill: 'report-drill',
  planRecoveryDrill: 'plan-recovery-drill',
  reportRecoveryDrill: 'report-recovery-drill',
  planMonitoring: 'plan-monitoring',
  reportMonitoring: 'report-monitoring',
  planPrepareHost: 'plan-prepare-host',
  reportPrepareHost: 'report-prepare-host',
  planCheck: 'plan-check',
  reportCheck: 'report-check',
  planWalArchiveAge: 'plan-wal-archive-age',
  reportWalArchiveAge: 'report-wal-archive-age',
  cancelHostCommands: 'cancel-host-commands',
  runLock: 'run-lock',
  planCleanUp: 'plan-clean-up',
  exportExecutionHistory: 'export-execution-history',
  writeAuditReport: 'write-audit-report',
} as const;
type FunctionName = keyof typeof FUNCTIONS;
const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[];

interface StateMachine {
  /** Logical id in the template; its role is `<id>Role`. */
  id: string;
  /** The name `kennel-backup-<stage>-<name>`, and its log group's; the builder renders its definition under it. */
  name: WorkflowName;
  logGroup: string;
  /** The functions its tasks name, and so the only ones its role may invoke. */
  functions: FunctionName[];
  /** A few states and their types, so that an emptied definition cannot pass as equal. */
  landmarks: Record<string, string>;
  /** Schedule expression → the execution input it gives; none: started by an operator. */
  schedules: [string, Record<string, unknown>][];
  /** Standard (the audit trail) unless a light measurement. */
  type?: 'EXPRESS';
}
const BACKUP_LANDMARKS = {
  TakeRunLock: 'Task',
  BackUpEachTarget: 'Map',
  VerifyArchive: 'Task',
  ReleaseRunLock: 'Task',
  BackupSucceeded: 'Succeed',
};
const RESTORE_FUNCTIONS: FunctionName[] = [
  'planRestore',
  'runLock',
  'startHostCommand',
  'checkHostCommand',
  'checkRestore',
  'verifyArchive',
  'pruneBackups',
  'planCleanUp',
  'reportRestore',
  'sendAlert',
];
const RESTORE_LANDMARKS = {
  PlanRestore: 'Task',
  TakeRunLock: 'Task',
  ReleaseRunLock: 'Task',
  ReleaseRunLockAfterFailure: 'Task',
  CheckRestoredDatabase: 'Task',
  VerifySafetyDump: 'Task',
  StartSwap: 'Task',
  Restored: 'Succeed',
};
const STATE_MACHINES: StateMachine[] = [
  {
    id: 'DatabaseBackupStateMachine',
    name: 'database-backup',
    logGroup: 'DatabaseBackupLogGroup',
    functions: [
      'planBackup',
      'startHostCommand',
      'checkHostCommand',
      'checkWalContinuity',
      'verifyArchive',
      'restoreTest',
      'pruneBackups',
      'recordPhysicalBackup',
      'recordPhysicalRestoreTest',
      'recordPhysicalExpiry',
      'runLock',
      'sendAlert',
    ],
    landmarks: {
      ...BACKUP_LANDMARKS,
      RouteRun: 'Choice',
      StartPhysicalBackup: 'Task',
      RecordPhysicalBackup: 'Task',
      StartPhysicalRestoreTest: 'Task',
      UpdatePhysicalRecord: 'Task',
      StartExpirePhysicalBackups: 'Task',
    },
    schedules: [
      ['cron(0 2 * * ? *)', { kind: 'full' }],
      // The long-term dump of every table, log tables included: the 1st of each month at 04:00.
      ['cron(0 4 1 * ? *)', { kind: 'monthly' }],
      ['cron(0 */6 * * ? *)', { kind: 'incremental' }],
      ['cron(0/15 * * * ? *)', { kind: 'transaction-logs' }],
    ],
  },
  {
    id: 'FilesBackupStateMachine',
    name: 'files-backup',
    logGroup: 'FilesBackupLogGroup',
    functions: [
      'planFilesBackup',
      'startHostCommand',
      'checkHostCommand',
      'verifyArchive',
      'pruneBackups',
      'runLock',
      'sendAlert',
    ],
    landmarks: BACKUP_LANDMARKS,
    schedules: [
      ['cron(0 3 * * ? *)', { kind: 'configuration' }],
      ['cron(15 3 * * ? *)', { kind: 'application' }],
      ['cron(30 3 * * ? *)', { kind: 'static' }],
    ],
  },
  {
    id: 'DatabaseRestoreStateMachine',
    name: 'database-restore',
    logGroup: 'DatabaseRestoreLogGroup',
    functions: RESTORE_FUNCTIONS,
    landmarks: RESTORE_LANDMARKS,
    schedules: [],
  },
  {
    id: 'PointInTimeRecoveryStateMachine',
    name: 'point-in-time-recovery',
    logGroup: 'PointInTimeRecoveryLogGroup',
    functions: [
      'planPointInTimeRecovery',
      'startHostCommand',
      'checkHostCommand',
      'verifyArchive',
      'pruneBackups',
      'planCleanUp',
      'reportPointInTimeRecovery',
      'sendAlert',
    ],
    landmarks: {
      PlanPointInTimeRecovery: 'Task',
      IsWholeCluster: 'Choice',
      StartPointInTimeRestore: 'Task',
      StartClusterRecovery: 'Task',
      StartFullBackup: 'Task',
      VerifySafetyDump: 'Task',
      StartSwap: 'Task',
      Recovered: 'Succeed',
    },
    schedules: [],
  },
  {
    // Started by cancelHostCommands, for a restore or database recovery aborted or timed out.
    id: 'RestoreCleanupStateMachine',
    name: 'restore-cleanup',
    logGroup: 'RestoreCleanupLogGroup',
    functions: [
      'planCleanUp',
      'startHostCommand',
      'checkHostCommand',
      'runLock',
      'reportRestore',
      'sendAlert',
    ],
    landmarks: {
      PlanCleanUp: 'Task',
      AnythingToCleanUp: 'Choice',
      StartsApplicationAgain: 'Choice',
      StartCleanUp: 'Task',
      ReportCleanUp: 'Task',
      CleanedUp: 'Succeed',
    },
    schedules: [],
  },
  {
    id: 'FilesRestoreStateMachine',
    name: 'files-restore',
    logGroup: 'FilesRestoreLogGroup',
    functions: ['planFilesRestore', 'startHostCommand', 'checkHostCommand', 'reportRestore', 'sendAlert'],
    landmarks: {
      PlanFilesRestore: 'Task',
      IsDryRun: 'Choice',
      StartFilesRestore: 'Task',
      StartAfterCommands: 'Task',
      Restored: 'Succeed',
    },
    schedules: [],
  },
  {
    id: 'DailyVerificationStateMachine',
    name: 'daily-verification',
    logGroup: 'DailyVerificationLogGroup',
    functions: [
      'planVerification',
      'startHostCommand',
      'checkHostCommand',
      'checkWalContinuity',
      'verifyArchive',
      'reportVerification',
      'sendAlert',
    ],
    landmarks: {
      PlanVerification: 'Task',
      CheckEachHost: 'Map',
      ReadBackEachArchive: 'Map',
      ReportVerification: 'Task',
      VerificationPassed: 'Succeed',
    },
    // After the night's backups; no input: it checks every kind and target.
    schedules: [['cron(0 6 * * ? *)', {}]],
  },
  {
    id: 'RestoreDrillStateMachine',
    name: 'restore-drill',
    logGroup: 'RestoreDrillLogGroup',
    functions: [
      'planDrill',
      'startHostCommand',
      'checkHostCommand',
      'checkWalContinuity',
      'restoreTest',
      'recordPhysicalRestoreTest',
      'reportDrill',
      'sendAlert',
    ],
    landmarks: {
      PlanDrill: 'Task',
      // The WAL proven instead of a row-window chain.
      StartWalSwitch: 'Task',
      CheckWalContinuity: 'Task',
      WhichEngine: 'Choice',
      CheckPhysicalRestoreTest: 'Task',
      RestoreTest: 'Task',
      ReportDrill: 'Task',
      NotifyDrill: 'Task',
      DrillPassed: 'Succeed',
    },
    // The source document's weekly restoration test.
    schedules: [['cron(0 5 ? * SUN *)', { pick: 'random' }]],
  },
  {
    id: 'RecoveryDrillStateMachine',
    name: 'recovery-drill',
    logGroup: 'RecoveryDrillLogGroup',
    functions: [
      'planRecoveryDrill',
      'startHostCommand',
      'checkHostCommand',
      'reportRecoveryDrill',
      'sendAlert',
    ],
    landmarks: {
      PlanRecoveryDrill: 'Task',
      StartScratchRecovery: 'Task',
      CheckScratchRecovery: 'Task',
      ReportRecoveryDrill: 'Task',
      NotifyRecoveryDrill: 'Task',
      RecoveryDrillPassed: 'Succeed',
    },
    // The source document's monthly DR test: a point-in-time recovery to a random second.
    schedules: [['cron(30 5 1 * ? *)', {}]],
  },
  {
    id: 'MonitoringStateMachine',
    name: 'monitoring',
    logGroup: 'MonitoringLogGroup',
    functions: ['planMonitoring', 'startHostCommand', 'checkHostCommand', 'reportMonitoring', 'sendAlert'],
    landmarks: {
      PlanMonitoring: 'Task',
      MeasureEachDisk: 'Map',
      CheckEachArchiver: 'Map',
      ReportMonitoring: 'Task',
      MonitoringPassed: 'Succeed',
    },
    schedules: [['cron(0 * * * ? *)', {}]],
  },
  {
    id: 'PrepareHostStateMachine',
    name: 'prepare-host',
    logGroup: 'PrepareHostLogGroup',
    functions: ['planPrepareHost', 'startHostCommand', 'checkHostCommand', 'reportPrepareHost', 'sendAlert'],
    landmarks: {
      PlanPrepareHost: 'Task',
      PrepareEachHost: 'Map',
      StartPrepareHost: 'Task',
      ReportPrepareHost: 'Task',
      IsRestartNeeded: 'Choice',
      Prepared: 'Succeed',
    },
    // Started by an operator from the console.
    schedules: [],
  },
  {
    id: 'CheckStateMachine',
    name: 'check',
    logGroup: 'CheckLogGroup',
    functions: ['planCheck', 'startHostCommand', 'checkHostCommand', 'reportCheck', 'sendAlert'],
    landmarks: {
      PlanCheck: 'Task',
      CheckEachHost: 'Map',
      StartHostCheck: 'Task',
      ReportCheck: 'Task',
      Checked: 'Succeed',
      CheckFailed: 'Fail',
    },
    // Started by an operator from the console (or npm run local -- check).
    schedules: [],
  },
  {
    id: 'WalArchiveAgeStateMachine',
    name: 'wal-archive-age',
    logGroup: 'WalArchiveAgeLogGroup',
    functions: ['planWalArchiveAge', 'startHostCommand', 'checkHostCommand', 'reportWalArchiveAge'],
    landmarks: {
      PlanWalArchiveAge: 'Task',
      MeasureEachArchiver: 'Map',
      ReportWalArchiveAge: 'Task',
      WalArchiveAgeNotMeasured: 'Fail',
    },
    // Every minute once a target has pgBackRest settings; the default target has none.
    schedules: [],
    type: 'EXPRESS',
  },
  {
    id: 'AuditReportStateMachine',
    name: 'audit-report',
    logGroup: 'AuditReportLogGroup',
    functions: ['writeAuditReport', 'sendAlert'],
    landmarks: {
      WriteAuditReport: 'Task',
      NotifyAuditReport: 'Task',
      AuditReportWritten: 'Succeed',
      AuditReportFailed: 'Fail',
    },
    // The 1st at 07:00, for the month before.
    schedules: [['cron(0 7 1 * ? *)', {}]],
  },
];

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
/** An EventBridge rule: a schedule's, or the failure rule. */
interface Rule {
  ScheduleExpression?: string;
  State: string;
  Targets: { Arn: unknown; Input: string }[];
}
interface CfnResource {
  Type: string;
  Properties: unknown;
  DeletionPolicy?: string;
  Condition?: string;
}
interface Template {
  Conditions?: Record<string, unknown>;
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
/**
 * Step Functions' CloudWatch Logs delivery and X-Ray tracing, which support no
 * resource-level permission: serverless-step-functions grants them on `*` to
 * every state machine's role.
 */
const UNSCOPABLE_STATE_MACHINE_ACTIONS = [
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
];
/** The role EventBridge starts a scheduled state machine with (serverless-step-functions). */
const scheduleRoleId = (machine: { id: string }) =>
  `${machine.id.replace(/StateMachine$/, '')}ScheduleToStepFunctionsRole`;
/** A function's own role (serverless-iam-roles-per-function). */
const roleId = (fn: FunctionName) => `${logicalId(fn)}IamRoleLambdaExecution`;

const packageDirs: string[] = [];
let packageDir = '';
let template: Template;

/** `serverless package` into a new folder, with each `name=value` as a --param. */
async function serverlessPackage(params: string[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-package-'));
  packageDirs.push(dir);
  const args = ['serverless', 'package', '--stage', STAGE, '--package', dir];
  for (const p of params) args.push('--param', p);
  await promisify(execFile)('npx', args, { cwd: ROOT, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 });
  return dir;
}

/** The packaging's template, or its output as the error when it fails. */
async function packagedTemplate(params: string[]): Promise<{ dir: string; template: Template }> {
  try {
    const dir = await serverlessPackage(params);
    const text = readFileSync(join(dir, 'cloudformation-template-update-stack.json'), 'utf8');
    return { dir, template: JSON.parse(text) as Template };
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`serverless package failed:\n${stdout ?? ''}\n${stderr ?? ''}`, { cause: error });
  }
}

/**
 * The second packaging, with every optional param given and the defaults
 * changed, shared by the tests that compare a template with and without them:
 * packaging takes seconds.
 */
let withOptionalParamsPackaging: Promise<Template> | undefined;
const withOptionalParams = () => {
  withOptionalParamsPackaging ??= packagedTemplate([
    `hostRoleArn=${HOST_ROLE_ARN}`,
    `alertEmail=${ALERT_EMAIL}`,
    `backupTargets=${JSON.stringify(TWO_TARGETS)}`,
    `diskUsageAlertPercent=${DISK_PERCENT}`,
    'objectLockMode=compliance',
    `keyBreakGlassRole=${BREAK_GLASS_ROLE}`,
    `vaultRegion=${VAULT_REGION}`,
    `vaultAccount=${VAULT_ACCOUNT}`,
    `vaultKeyArn=${VAULT_KEY_ARN}`,
  ]).then((packaged) => packaged.template);
  return withOptionalParamsPackaging;
};

function resource<T>(id: string, type: string, from: Template = template): T & { resource: CfnResource } {
  const found = from.Resources[id];
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

const BUCKET_NAME = 'kennel-backup-123456789012-us-east-1-test';
const KEY_ARN = 'arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const TOPIC_ARN = `arn:aws:sns:us-east-1:123456789012:kennel-backup-${STAGE}-alerts`;

/**
 * What shared/core/config.ts reads at a function's cold start: its environment in
 * the template, with the values CloudFormation fills in given stand-ins.
 */
function deployedConfig(fn: FunctionName, from: Template = template): Config {
  const { Variables } = resource<LambdaFunction>(
    `${logicalId(fn)}LambdaFunction`,
    'AWS::Lambda::Function',
    from,
  ).Environment;
  return parseConfig({
    ...(Variables as Record<string, string>),
    BACKUP_BUCKET: BUCKET_NAME,
    ALERT_TOPIC_ARN: TOPIC_ARN,
    BACKUP_KMS_KEY_ID: KEY_ARN,
    // With a vault, its bucket's name is a Fn::Sub of the account (VAULT_BUCKET below).
    ...(typeof Variables.VAULT_BUCKET === 'string' ? {} : { VAULT_BUCKET }),
  });
}

/**
 * serverless/params.cjs's functions, called as osls calls them, with the
 * variables (`param:<name>`, `sls:stage`) `values` gives and no other.
 */
const paramsModule = createRequire(import.meta.url)('../serverless/params.cjs') as Record<
  string,
  (options: { resolveVariable: (name: string) => Promise<unknown> }) => Promise<unknown>
>;
const paramOf = (name: string, values: Record<string, string>) =>
  paramsModule[name]?.({ resolveVariable: async (variable) => values[variable] });

beforeAll(async () => {
  ({ dir: packageDir, template } = await packagedTemplate([
    `restoreTestSubnetIds=${SUBNETS.join(',')}`,
    `restoreTestSecurityGroupIds=${SECURITY_GROUP}`,
  ]));
}, 240_000);

afterAll(() => {
  for (const dir of packageDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * Nothing here has been deployed: AWS's own resource schemas (support/cloudformation-spec.ts)
 * stand in for CloudFormation's refusal, for the default params and for every optional one given.
 */
describe('the packaged template', () => {
  it('is one CloudFormation accepts: every resource type, property and value as AWS publishes them', () => {
    expect(specFindings(template)).toEqual([]);
  });

  it('is one CloudFormation accepts with every optional param given', async () => {
    expect(specFindings(await withOptionalParams())).toEqual([]);
  }, 240_000);
});

/** The definition the builder renders for a workflow. */
const built = (workflow: WorkflowName) => WORKFLOWS[workflow]() as Asl;

/** The functions a state's Fn::GetAtt names, in the definition's order. */
const namedFunctions = (asl: Asl): string[] =>
  allStates(asl.States).flatMap(([, s]) => {
    const ref = (s.Resource as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt'];
    return ref ? [ref[0]] : [];
  });

describe('the state machines', () => {
  it('are every workflow the builder renders, and their functions every one in functions/', () => {
    expect(new Set(STATE_MACHINES.map((m) => m.name))).toEqual(new Set(Object.keys(WORKFLOWS)));
    const folders = readdirSync(join(ROOT, 'functions'), { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
    expect(new Set(Object.values(FUNCTIONS))).toEqual(new Set(folders));
  });

  it('between them use every function serverless.yml defines but the two EventBridge alone invokes, and no other', () => {
    const tasks = FUNCTION_NAMES.filter(
      (fn) => fn !== 'cancelHostCommands' && fn !== 'exportExecutionHistory',
    );
    expect(new Set(STATE_MACHINES.flatMap((m) => namedFunctions(built(m.name))))).toEqual(new Set(tasks));
    // The builder's table of task timeouts names the same functions.
    expect(new Set(Object.keys(TASK_SECONDS))).toEqual(new Set(tasks));
  });

  it('run each backup kind at its cron in shared/catalog/schedule.ts, with the kind as input', () => {
    const families: Record<string, readonly string[]> = {
      DatabaseBackupStateMachine: SCHEDULED_DATABASE_KINDS,
      FilesBackupStateMachine: FILE_KINDS,
    };
    const started = ofType('AWS::Events::Rule')
      .map(([, r]) => r.Properties as Rule)
      .filter((r) => r.ScheduleExpression !== undefined)
      .flatMap((r) =>
        r.Targets.map((t) => ({
          machine: (t.Arn as { Ref?: string }).Ref ?? '',
          cron: r.ScheduleExpression,
          input: JSON.parse(t.Input) as unknown,
        })),
      )
      .filter((s) => s.machine in families);
    const expected = Object.entries(families).flatMap(([machine, kinds]) =>
      kinds.map((kind) => ({
        machine,
        cron: SCHEDULES[kind as keyof typeof SCHEDULES].cron,
        input: { kind },
      })),
    );
    const sorted = (list: unknown[]) => list.map((x) => JSON.stringify(x)).sort();
    expect(sorted(started)).toEqual(sorted(expected));
    // The table has every scheduled kind and nothing else.
    expect(Object.keys(SCHEDULES).sort()).toEqual([...SCHEDULED_DATABASE_KINDS, ...FILE_KINDS].sort());
  });

  it('are the only ones, started only by their schedules', () => {
    expect(ofType('AWS::StepFunctions::StateMachine').map(([id]) => id)).toEqual(
      STATE_MACHINES.map((m) => m.id),
    );
    const [scheduled, others] = [true, false].map((isSchedule) =>
      ofType('AWS::Events::Rule').filter(
        ([, r]) => 'ScheduleExpression' in (r.Properties as object) === isSchedule,
      ),
    );
    expect(
      scheduled?.map(([, r]) => (r.Properties as { ScheduleExpression: string }).ScheduleExpression).sort(),
    ).toEqual(STATE_MACHINES.flatMap((m) => m.schedules.map(([e]) => e)).sort());
    // The other rules listen for ended executions and start nothing (see "failure alerts" and "the audit trail").
    expect(others?.map(([id]) => id)).toEqual([
      'WorkflowFailedRule',
      'HostCommandCancelRule',
      'ExecutionEndedRule',
    ]);
  });
});

/**
 * serverless-step-functions writes `"QueryLanguage": "JSONPath"`, the default, into
 * every state; only that default is dropped, so a state switched to JSONata still differs.
 */
function withoutDefaultQueryLanguage(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutDefaultQueryLanguage);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([k, v]) => !(k === 'QueryLanguage' && v === 'JSONPath'))
      .map(([k, v]) => [k, withoutDefaultQueryLanguage(v)]),
  );
}

describe.each(STATE_MACHINES)('the state machine $id', (machine) => {
  const { id, name, logGroup, functions, landmarks, schedules, type = 'STANDARD' } = machine;
  it("is the builder's definition, each task bound to the Lambda function it names", () => {
    const asl = built(name);
    const props = resource<{ DefinitionString: { 'Fn::Sub': [string, Record<string, unknown>] } }>(
      id,
      'AWS::StepFunctions::StateMachine',
    );
    const [text, variables] = props.DefinitionString['Fn::Sub'];
    /** The deployed definition with each `${placeholder}` turned back into the builder's Fn::GetAtt. */
    function unbound(value: unknown): unknown {
      if (Array.isArray(value)) return value.map(unbound);
      if (typeof value === 'string') {
        const placeholder = /^\$\{(\w+)\}$/.exec(value)?.[1];
        if (placeholder === undefined) return value;
        // The ARN of a workflow another one starts, as the builder wrote it.
        if ('Fn::Sub' in (variables[placeholder] as object)) return variables[placeholder];
        const target = (variables[placeholder] as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'];
        expect(target[1]).toBe('Arn');
        const { FunctionName } = resource<LambdaFunction>(target[0], 'AWS::Lambda::Function');
        return { 'Fn::GetAtt': [FunctionName.replace(`kennel-backup-${STAGE}-`, ''), 'Arn'] };
      }
      if (value === null || typeof value !== 'object') return value;
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unbound(v)]));
    }

    const deployed = unbound(JSON.parse(text)) as Asl;
    expect(withoutDefaultQueryLanguage(deployed)).toEqual(withoutDefaultQueryLanguage(asl));
    // Every placeholder is a function's ARN, or a started workflow's: the plugin left nothing else to resolve.
    const started = Object.values(variables).filter((v) => 'Fn::Sub' in (v as object));
    expect(started).toHaveLength(name === 'point-in-time-recovery' ? 1 : 0);
    expect(Object.keys(variables)).toHaveLength(new Set(namedFunctions(asl)).size + started.length);
    // It names exactly its functions, the only ones its role may invoke (below).
    expect(new Set(namedFunctions(asl))).toEqual(new Set(functions));
    const states = new Map(allStates(deployed.States));
    for (const [state, type] of Object.entries(landmarks)) expect(states.get(state)?.Type, state).toBe(type);
  });

  it(`is a${type === 'EXPRESS' ? 'n Express' : ' Standard'} workflow with full logging and tracing`, () => {
    const props = resource<{
      StateMachineName: string;
      StateMachineType: string;
      LoggingConfiguration: { Level: string; IncludeExecutionData: boolean; Destinations: unknown[] };
      TracingConfiguration: { Enabled: boolean };
    }>(id, 'AWS::StepFunctions::StateMachine');
    expect(props.StateMachineName).toBe(`kennel-backup-${STAGE}-${name}`);
    expect(props.StateMachineType).toBe(type);
    expect(props.LoggingConfiguration).toEqual({
      Level: 'ALL',
      IncludeExecutionData: true,
      Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: getAtt(logGroup) } }],
    });
    expect(props.TracingConfiguration).toEqual({ Enabled: true });
    const group = resource<{ LogGroupName: string; RetentionInDays: number }>(
      logGroup,
      'AWS::Logs::LogGroup',
    );
    expect(group.LogGroupName).toBe(`/aws/vendedlogs/states/kennel-backup-${STAGE}-${name}`);
    // An Express workflow's log is its only history: kept as long as the exported histories.
    if (type === 'EXPRESS') expect(group.RetentionInDays).toBe(AUDIT_DAYS);
  });

  const rules = () => ofType('AWS::Events::Rule').map(([, r]) => r.Properties as Rule);

  it(`is started by ${schedules.length || 'no'} schedule${schedules.length === 1 ? '' : 's'} and no other rule`, () => {
    const starting = rules().filter((r) => r.Targets.some((t) => JSON.stringify(t.Arn).includes(`"${id}"`)));
    expect(starting.map((r) => r.ScheduleExpression).sort()).toEqual(schedules.map(([e]) => e).sort());
    expect(ofType('AWS::Scheduler::Schedule')).toEqual([]);
  });

  // it.each of no rows would declare no test; a machine without schedules is covered above.
  if (schedules.length > 0) {
    it.each(schedules)('starts on %s with the input %j', (expression, input) => {
      const schedule = rules().filter(
        (r) =>
          r.ScheduleExpression === expression &&
          r.Targets.some((t) => JSON.stringify(t.Arn) === JSON.stringify({ Ref: id })),
      );
      expect(schedule).toHaveLength(1);
      expect(schedule[0]?.State).toBe('ENABLED');
      expect(schedule[0]?.Targets).toHaveLength(1);
      expect(schedule[0]?.Targets[0]?.Arn).toEqual({ Ref: id });
      expect(JSON.parse(schedule[0]?.Targets[0]?.Input ?? '')).toEqual(input);
    });
  }

  // it.each of no rows would declare no test; a machine without schedules has no schedule role.
  if (schedules.length > 0) {
    it('is started by its schedules with a role that may start it and nothing else', () => {
      const role = resource<Role & { AssumeRolePolicyDocument: PolicyDocument }>(
        scheduleRoleId(machine),
        'AWS::IAM::Role',
      );
      expect(role.AssumeRolePolicyDocument.Statement).toEqual([
        { Effect: 'Allow', Principal: { Service: 'events.amazonaws.com' }, Action: 'sts:AssumeRole' },
      ]);
      expect(roleStatements(scheduleRoleId(machine))).toEqual([
        { Effect: 'Allow', Action: ['states:StartExecution'], Resource: { Ref: id } },
      ]);
      for (const rule of rules().filter((r) => JSON.stringify(r.Targets).includes(`"${id}"`)))
        expect(rule.Targets.map((t) => (t as { RoleArn?: unknown }).RoleArn)).toEqual([
          getAtt(scheduleRoleId(machine)),
        ]);
    });
  }

  it(`may invoke its ${functions.length} functions and nothing else`, () => {
    const statements = roleStatements(`${id}Role`);
    const invoke = statements.filter((s) => asArray(s.Action).includes('lambda:InvokeFunction'));
    expect(invoke).toHaveLength(1);
    const invoked = asArray(invoke[0]?.Resource).filter(
      (r) => typeof r === 'object' && r !== null && 'Fn::GetAtt' in r,
    );
    expect(new Set(invoked)).toEqual(
      new Set(functions.map((fn) => getAtt(`${logicalId(fn)}LambdaFunction`))),
    );
    expect(asArray(invoke[0]?.Action)).toEqual(['lambda:InvokeFunction']);
    // Each function's ARN and its versions' (`<arn>:*`), and nothing else.
    const versions = functions.map((fn) => ({
      'Fn::Sub': [`\${functionArn}:*`, { functionArn: getAtt(`${logicalId(fn)}LambdaFunction`) }],
    }));
    expect(new Set(asArray(invoke[0]?.Resource))).toEqual(new Set([...invoked, ...versions]));
  });

  it('holds nothing else than the invocation, its log delivery and tracing (and a recovery, its full backup)', () => {
    const grants = roleStatements(`${id}Role`).map((s) => asArray(s.Action));
    expect(grants).toEqual([
      ['lambda:InvokeFunction'],
      ...(id === 'PointInTimeRecoveryStateMachine'
        ? // Starts database-backup and waits on it (.sync): the execution, and the managed rule that reports its end.
          [
            ['states:StartExecution'],
            ['states:DescribeExecution', 'states:StopExecution'],
            ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
          ]
        : []),
      UNSCOPABLE_STATE_MACHINE_ACTIONS,
    ]);
    const events = roleStatements(`${id}Role`).find((s) => asArray(s.Action).includes('events:PutRule'));
    if (events)
      expect(events.Resource).toEqual([
        {
          'Fn::Sub': [
            `arn:\${AWS::Partition}:events:\${AWS::Region}:\${AWS::AccountId}:rule/StepFunctionsGetEventsForStepFunctionsExecutionRule`,
            {},
          ],
        },
      ]);
  });
});

describe('the point-in-time recovery', () => {
  it('may start the database-backup workflow (the full backup after a whole-cluster recovery) and no other', () => {
    const role = resource<{ Policies: { PolicyDocument: PolicyDocument }[] }>(
      'PointInTimeRecoveryStateMachineRole',
      'AWS::IAM::Role',
    );
    const statements = role.Policies.flatMap((p) => p.PolicyDocument.Statement);
    const name = { Name: { 'Fn::GetAtt': ['DatabaseBackupStateMachine', 'Name'] } };
    const grants = statements
      .filter((s) => asArray(s.Action).some((a) => a.startsWith('states:')))
      .map((s) => [asArray(s.Action).join(','), s.Resource]);
    expect(grants).toEqual([
      [
        'states:StartExecution',
        [
          {
            'Fn::Sub': [
              `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:stateMachine:\${Name}`,
              name,
            ],
          },
        ],
      ],
      [
        'states:DescribeExecution,states:StopExecution',
        [
          {
            'Fn::Sub': [
              `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:execution:\${Name}:*`,
              name,
            ],
          },
        ],
      ],
    ]);
  });
});

/** IAM's `*` matches any characters, `/` included. */
const globMatches = (pattern: string, text: string) =>
  new RegExp(
    `^${pattern
      .split('*')
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  ).test(text);
const allows = (fn: FunctionName, action: string) =>
  roleStatements(roleId(fn)).filter((s) => s.Effect === 'Allow' && asArray(s.Action).includes(action));
/** Whether any of `statements` allows `action` on the backup bucket's object `key`. */
const allowsOnObject = (statements: Statement[], action: string, key: string) =>
  statements
    .filter((s) => s.Effect === 'Allow' && asArray(s.Action).includes(action))
    .some((s) =>
      asArray(s.Resource).some((r) => {
        const pattern = /^\$\{BackupBucket\.Arn\}\/(.+)$/.exec(
          String((r as { 'Fn::Sub'?: unknown } | null)?.['Fn::Sub'] ?? ''),
        )?.[1];
        return pattern !== undefined && globMatches(pattern, key);
      }),
    );
/** Whether a function's role allows `action` on the backup bucket's object `key`. */
const mayOnObject = (fn: FunctionName, action: string, key: string) =>
  allowsOnObject(roleStatements(roleId(fn)), action, key);
/** Whether a function's role may list the backup bucket under `prefix`. */
const mayList = (fn: FunctionName, prefix: string) =>
  allows(fn, 's3:ListBucket').some(
    (s) =>
      JSON.stringify(s.Resource) === JSON.stringify(getAtt('BackupBucket')) &&
      asArray(s.Condition?.StringLike?.['s3:prefix'] as string | string[]).some((p) =>
        globMatches(p, prefix),
      ),
  );

describe('the backup bucket', () => {
  type Bucket = {
    VersioningConfiguration: { Status: string };
    BucketEncryption: { ServerSideEncryptionConfiguration: unknown[] };
    PublicAccessBlockConfiguration: Record<string, boolean>;
    OwnershipControls: unknown;
    LifecycleConfiguration: { Rules: Record<string, unknown>[] };
    ObjectLockEnabled: boolean;
    ObjectLockConfiguration: unknown;
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

  const bucketPolicy = () =>
    resource<{ Bucket: unknown; PolicyDocument: PolicyDocument }>(
      'BackupBucketPolicy',
      'AWS::S3::BucketPolicy',
    );
  const bucketStatement = (sid: string): Statement | undefined =>
    bucketPolicy().PolicyDocument.Statement.find((s) => s.Sid === sid);

  it('has a policy of seven denials and nothing else', () => {
    const policy = bucketPolicy();
    expect(policy.Bucket).toEqual({ Ref: 'BackupBucket' });
    expect(policy.PolicyDocument.Statement.map((s) => [s.Sid, s.Effect])).toEqual([
      ['DenyInsecureTransport', 'Deny'],
      ['ConfigurationReadableOnlyByItsRoles', 'Deny'],
      ['BackupsCreateOnly', 'Deny'],
      ['AuditHistoriesCreateOnly', 'Deny'],
      ['ManifestWritersReplaceOnlyManifests', 'Deny'],
      ['ManifestsOnlyByTheirWriters', 'Deny'],
      ['ArchiveRecordsOnlyByVerifyArchive', 'Deny'],
    ]);
  });

  it('locks every version it holds for the point-in-time window and a week, in governance mode by default', () => {
    const bucket = resource<Bucket>('BackupBucket', 'AWS::S3::Bucket');
    expect(DEFAULT_LOCK_DAYS).toBe(POINT_IN_TIME_DAYS + 7);
    expect(bucket.ObjectLockEnabled).toBe(true);
    expect(bucket.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 42 } },
    });
  });

  it('locks in compliance mode with --param objectLockMode=compliance, and refuses another mode', async () => {
    const compliance = resource<Bucket>('BackupBucket', 'AWS::S3::Bucket', await withOptionalParams());
    expect(compliance.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 42 } },
    });
    const lifecycle = createRequire(import.meta.url)('../serverless/lifecycle.cjs') as {
      objectLockConfiguration: (options: {
        resolveVariable: (name: string) => Promise<unknown>;
      }) => Promise<{ Rule: { DefaultRetention: { Mode: string } } }>;
    };
    const given = (mode: string) => ({
      resolveVariable: async (name: string) => (name === 'param:objectLockMode' ? mode : undefined),
    });
    for (const [mode, rendered] of [
      ['governance', 'GOVERNANCE'],
      [' COMPLIANCE ', 'COMPLIANCE'],
    ] as const)
      expect((await lifecycle.objectLockConfiguration(given(mode))).Rule.DefaultRetention.Mode).toBe(
        rendered,
      );
    for (const bad of ['', 'legal-hold', 'compliant']) {
      await expect(lifecycle.objectLockConfiguration(given(bad))).rejects.toThrow(
        `The objectLockMode param "${bad}" is not an Object Lock mode. Give governance`,
      );
    }
  }, 240_000);

  it("locks each archive as long as its kind's retention, and never less than the bucket's default", () => {
    expect(
      Object.fromEntries(
        Object.keys(RETENTION).map((kind) => [kind, lockDays(kind as keyof typeof RETENTION)]),
      ),
    ).toEqual({
      // Kept less than the default: locked for the default all the same (a lock is lengthened, never shortened).
      full: 42,
      safety: 42,
      incremental: 42,
      application: 42,
      static: 42,
      // Kept longer: locked as long as kept.
      monthly: RETENTION.monthly.s3Days,
      'transaction-logs': RETENTION['transaction-logs'].s3Days,
      configuration: RETENTION.configuration.s3Days,
    });
  });

  /** The roles that write manifests: verifyArchive (its verdict) and restoreTest (its result). */
  const MANIFEST_WRITERS: FunctionName[] = ['verifyArchive', 'restoreTest'];
  const writers = (fns: FunctionName[]) => ({ 'aws:PrincipalArn': fns.map((fn) => getAtt(roleId(fn))) });
  const createsOnly = {
    Null: { 's3:if-none-match': 'true' },
    Bool: { 's3:ObjectCreationOperation': 'true' },
  };
  /** A manifest of every kind, and its archive, where keys.ts puts them. */
  const archives = [
    ...DUMP_KINDS.map((kind) =>
      archiveKey(
        kind,
        'kennel-db',
        'kennel_prod',
        '2026-11-26T02:00:00Z',
        archiveFileName('kennel_prod', kind, '20261126T020000Z_1a2b3c4d', 'zstd'),
      ),
    ),
    ...FILE_KINDS.map((kind) =>
      archiveKey(
        kind,
        'kennel-db',
        null,
        '2026-11-26T02:00:00Z',
        tarballFileName('kennel-db', kind, '20261126T020000Z_1a2b3c4d', 'zstd'),
      ),
    ),
  ];
  /** Whether an object ARN pattern of the template (`${BackupBucket.Arn}/<pattern>`) covers a key: `*` spans `/`. */
  const covers = (resource: unknown, key: string) => {
    const pattern = (resource as { 'Fn::Sub'?: string })['Fn::Sub']?.replace(`\${BackupBucket.Arn}/`, '');
    if (pattern === undefined) return false;
    const regex = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*');
    return new RegExp(`^${regex}$`).test(key);
  };

  it('lets everyone but the manifest writers only create objects under the backup prefixes: If-None-Match on every PutObject and CompleteMultipartUpload', () => {
    expect(bucketStatement('BackupsCreateOnly')).toEqual({
      Sid: 'BackupsCreateOnly',
      Effect: 'Deny',
      Principal: '*',
      Action: 's3:PutObject',
      Resource: BACKUP_PREFIXES.map((prefix) => sub(`\${BackupBucket.Arn}/${prefix}*`)),
      Condition: { ...createsOnly, ArnNotEquals: writers(MANIFEST_WRITERS) },
    });
    // Every archive is under it, whatever its kind.
    for (const key of archives)
      expect(
        asArray(bucketStatement('BackupsCreateOnly')?.Resource).some((r) => covers(r, key)),
        key,
      ).toBe(true);
  });

  it('lets no one replace an exported execution history: If-None-Match on every PutObject and CompleteMultipartUpload under audit/executions/', () => {
    expect(bucketStatement('AuditHistoriesCreateOnly')).toEqual({
      Sid: 'AuditHistoriesCreateOnly',
      Effect: 'Deny',
      Principal: '*',
      Action: 's3:PutObject',
      Resource: sub(`\${BackupBucket.Arn}/audit/executions/*`),
      Condition: createsOnly,
    });
  });

  it('lets the manifest writers replace manifests and nothing else: everything else they write, records first, is created only', () => {
    const statement = bucketStatement('ManifestWritersReplaceOnlyManifests') as Statement & {
      NotResource: unknown;
    };
    expect(statement).toEqual({
      Sid: 'ManifestWritersReplaceOnlyManifests',
      Effect: 'Deny',
      Principal: '*',
      Action: 's3:PutObject',
      NotResource: sub(`\${BackupBucket.Arn}/*.manifest.json`),
      Condition: { ...createsOnly, ArnEquals: writers(MANIFEST_WRITERS) },
    });
    for (const key of archives) {
      expect(covers(statement.NotResource, manifestKey(key)), key).toBe(true);
      expect(covers(statement.NotResource, key), key).toBe(false);
      expect(covers(statement.NotResource, archiveRecordKey(key)), key).toBe(false);
    }
  });

  it("lets no one but the manifest writers write a manifest, the DB host's role included, whatever its key", async () => {
    expect(bucketStatement('ManifestsOnlyByTheirWriters')).toEqual({
      Sid: 'ManifestsOnlyByTheirWriters',
      Effect: 'Deny',
      Principal: '*',
      Action: 's3:PutObject',
      Resource: sub(`\${BackupBucket.Arn}/*.manifest.json`),
      Condition: { ArnNotEquals: writers(MANIFEST_WRITERS) },
    });
    for (const key of archives)
      expect(covers(sub(`\${BackupBucket.Arn}/*.manifest.json`), manifestKey(key)), key).toBe(true);
    // The writers are exactly the functions whose grants let them put a manifest.
    const putters = FUNCTION_NAMES.filter((fn) =>
      roleStatements(roleId(fn)).some(
        (s) =>
          s.Effect === 'Allow' &&
          asArray(s.Action).some((a) => a === 's3:PutObject' || a === 's3:*') &&
          archives.some((key) => asArray(s.Resource).some((r) => covers(r, manifestKey(key)))),
      ),
    );
    expect(new Set(putters)).toEqual(new Set(MANIFEST_WRITERS));
    // Named by --param hostRoleArn, the DB host's role is exempt from none of the create-only statements.
    const withHost = await withOptionalParams();
    const policy = resource<{ PolicyDocument: PolicyDocument }>(
      'BackupBucketPolicy',
      'AWS::S3::BucketPolicy',
      withHost,
    );
    for (const sid of [
      'BackupsCreateOnly',
      'ManifestsOnlyByTheirWriters',
      'ArchiveRecordsOnlyByVerifyArchive',
    ]) {
      const statement = policy.PolicyDocument.Statement.find((x) => x.Sid === sid);
      expect(JSON.stringify(statement), sid).not.toContain(HOST_ROLE_ARN);
    }
  }, 240_000);

  it("lets verifyArchive alone write the records of the archives' creation, outside every backup prefix", () => {
    expect(bucketStatement('ArchiveRecordsOnlyByVerifyArchive')).toEqual({
      Sid: 'ArchiveRecordsOnlyByVerifyArchive',
      Effect: 'Deny',
      Principal: '*',
      Action: 's3:PutObject',
      Resource: sub(`\${BackupBucket.Arn}/${ARCHIVE_RECORD_PREFIX}*`),
      Condition: { ArnNotEquals: writers(['verifyArchive']) },
    });
    for (const key of archives) {
      expect(archiveRecordKey(key)).toBe(`catalog/archives/${key}.json`);
      expect(
        BACKUP_PREFIXES.some((prefix) => archiveRecordKey(key).startsWith(prefix)),
        key,
      ).toBe(false);
    }
  });

  it('refuses every request that does not use TLS', () => {
    expect(bucketStatement('DenyInsecureTransport')).toEqual({
      Sid: 'DenyInsecureTransport',
      Effect: 'Deny',
      Principal: '*',
      Action: 's3:*',
      Resource: [getAtt('BackupBucket'), sub(`\${BackupBucket.Arn}/*`)],
      Condition: { Bool: { 'aws:SecureTransport': 'false' } },
    });
  });

  /**
   * Configuration archives hold the application's secrets. verifyArchive streams
   * them; pruneBackups reads their manifests (the catalog) to choose what to
   * delete, planFilesRestore to choose what to restore, planVerification and
   * planMonitoring to judge how fresh the newest is.
   */
  const CONFIGURATION_READERS: FunctionName[] = [
    'verifyArchive',
    'pruneBackups',
    'planFilesRestore',
    'planVerification',
    'planMonitoring',
    'writeAuditReport',
  ];

  it('lets no one but the roles that verify, prune, restore and watch them read configuration archives', () => {
    expect(bucketStatement('ConfigurationReadableOnlyByItsRoles')).toEqual({
      Sid: 'ConfigurationReadableOnlyByItsRoles',
      Effect: 'Deny',
      Principal: '*',
      Action: 's3:GetObject',
      Resource: sub(`\${BackupBucket.Arn}/configuration/*`),
      Condition: {
        ArnNotEquals: { 'aws:PrincipalArn': CONFIGURATION_READERS.map((fn) => getAtt(roleId(fn))) },
      },
    });
    // The roles named are the functions' own roles, not look-alikes.
    for (const fn of CONFIGURATION_READERS) {
      resource<Role>(roleId(fn), 'AWS::IAM::Role');
      const lambda = resource<LambdaFunction>(`${logicalId(fn)}LambdaFunction`, 'AWS::Lambda::Function');
      expect(lambda.Role, fn).toEqual(getAtt(roleId(fn)));
    }
  });

  it('exempts every function whose role may read configuration objects, archives or manifests', () => {
    const tarball = archiveKey(
      'configuration',
      'kennel-db',
      null,
      '2026-11-26T03:00:00Z',
      tarballFileName('kennel-db', 'configuration', '20261126T030000Z_5e6f7a8b', 'zstd'),
    );
    const readers = FUNCTION_NAMES.filter(
      (fn) =>
        mayOnObject(fn, 's3:GetObject', tarball) || mayOnObject(fn, 's3:GetObject', manifestKey(tarball)),
    );
    // Only verifyArchive reads the tarballs (the secrets); the others read their manifests.
    expect(readers.filter((fn) => mayOnObject(fn, 's3:GetObject', tarball))).toEqual(['verifyArchive']);
    const exempt = asArray(
      bucketStatement('ConfigurationReadableOnlyByItsRoles')?.Condition?.ArnNotEquals?.['aws:PrincipalArn'],
    );
    expect(new Set(exempt)).toEqual(new Set(readers.map((fn) => getAtt(roleId(fn)))));
  });

  it('has the lifecycle rules the retention table builds', () => {
    const { LifecycleConfiguration } = resource<Bucket>('BackupBucket', 'AWS::S3::Bucket');
    expect(LifecycleConfiguration).toEqual(lifecycleConfiguration());
    expect(LifecycleConfiguration.Rules).toEqual(lifecycleRules());
    // One rule per kind: the source document's transitions for the database
    // kinds only, and pruned versions kept as long as the kind's own retention.
    const transitions = [
      { TransitionInDays: 30, StorageClass: 'STANDARD_IA' },
      { TransitionInDays: 90, StorageClass: 'GLACIER' },
      { TransitionInDays: 365, StorageClass: 'DEEP_ARCHIVE' },
    ];
    const rule = (Id: string, Prefix: string, NoncurrentDays: number, moves: boolean) => ({
      Id,
      Status: 'Enabled',
      Prefix,
      ...(moves ? { Transitions: transitions } : {}),
      NoncurrentVersionExpiration: { NoncurrentDays },
      ExpiredObjectDeleteMarker: true,
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
    });
    expect(LifecycleConfiguration.Rules).toEqual([
      // The daily dump 30 days; the monthly one, the long-term copy, 7 years (leap days included).
      rule('DatabaseBackups-full', 'database/full/', 30, true),
      rule('DatabaseBackups-monthly', 'database/monthly/', 2557, true),
      // What a restore replaced, dumped just before: a database kind like the others.
      rule('DatabaseBackups-safety', 'database/safety/', 30, true),
      // The legacy row-window archives, no longer made: pruned versions kept as their old retention says.
      rule('DatabaseBackups-incremental', 'database/incremental/', 7, true),
      rule('DatabaseBackups-transaction-logs', 'database/transaction-logs/', 2557, true),
      rule('Backups-configuration', 'configuration/', 90, false),
      rule('Backups-application', 'application/', 30, false),
      rule('Backups-static', 'static/', 7, false),
      // No backup: each host command's whole output, kept as long as its execution's history.
      {
        Id: 'HostCommandOutput',
        Status: 'Enabled',
        Prefix: 'host-output/',
        ExpirationInDays: 90,
        NoncurrentVersionExpiration: { NoncurrentDays: 1 },
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
      },
      // What pgBackRest replaced or expired, and what each run lock taken left: gone a day after, once unlocked.
      ...['pgbackrest/', 'locks/'].map((Prefix, i) => ({
        Id: ['PgbackrestOldVersions', 'RunLockOldVersions'][i],
        Status: 'Enabled',
        Prefix,
        NoncurrentVersionExpiration: { NoncurrentDays: 1 },
        ExpiredObjectDeleteMarker: true,
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
      })),
    ]);
    const backupRules = LifecycleConfiguration.Rules.slice(0, 8);
    for (const fileRule of backupRules.slice(5)) expect(fileRule).not.toHaveProperty('Transitions');
    // Each rule's days are its kind's row of the one retention table.
    for (const rule of backupRules) {
      const kind = String(rule.Id).replace(/^(DatabaseBackups|Backups)-/, '') as keyof typeof RETENTION;
      expect(rule.NoncurrentVersionExpiration, String(rule.Id)).toEqual({
        NoncurrentDays: RETENTION[kind].s3Days,
      });
    }
  });

  it('never expires a current backup: pruning keeps the newest verified one however old', () => {
    const { LifecycleConfiguration } = resource<Bucket>('BackupBucket', 'AWS::S3::Bucket');
    const coveringFull = LifecycleConfiguration.Rules.filter((r) =>
      'database/full/primary/kennel_prod/'.startsWith(String(r.Prefix ?? '')),
    );
    expect(coveringFull.length).toBeGreaterThan(0);
    expect(LifecycleConfiguration.Rules).toHaveLength(11);
    // Host output is no backup (and may quote rows): the one rule that expires objects.
    const expiring = LifecycleConfiguration.Rules.filter((r) => 'ExpirationInDays' in r);
    expect(expiring.map((r) => [r.Prefix, r.ExpirationInDays])).toEqual([['host-output/', 90]]);
    for (const rule of LifecycleConfiguration.Rules.filter((r) => !expiring.includes(r))) {
      // The two properties of a current-version expiration in AWS::S3::Bucket Rule.
      expect(rule, String(rule.Id)).not.toHaveProperty('ExpirationInDays');
      expect(rule, String(rule.Id)).not.toHaveProperty('ExpirationDate');
    }
  });

  /**
   * S3 applies a rule to every key that starts with its prefix; a rule without one
   * (or with an empty one) applies to the whole bucket, and its tag or size
   * filters only narrow that. So a rule leaves pgbackrest/ alone exactly when it
   * has a prefix that neither starts nor is started by pgbackrest/; the one rule
   * on pgbackrest/ itself removes only the versions pgBackRest replaced or
   * deleted (once Object Lock lets it), never a current one.
   */
  it("never transitions or expires a current version in pgBackRest's repositories: one rule there removes old versions only", () => {
    const { LifecycleConfiguration } = resource<Bucket>('BackupBucket', 'AWS::S3::Bucket');
    expect(LifecycleConfiguration.Rules.length).toBeGreaterThan(0);
    for (const rule of LifecycleConfiguration.Rules) {
      const prefix = rule.Prefix;
      expect(typeof prefix === 'string' && prefix.length > 0, String(rule.Id)).toBe(true);
      // No filter besides the prefix, and no filter element the prefix might not govern.
      expect(
        Object.keys(rule).filter((k) => /Filter|Tag|ObjectSize/.test(k)),
        String(rule.Id),
      ).toEqual([]);
    }
    const reaching = LifecycleConfiguration.Rules.filter((r) => reachesPrefix(r, PGBACKREST_PREFIX));
    expect(reaching).toEqual([
      {
        Id: 'PgbackrestOldVersions',
        Status: 'Enabled',
        Prefix: PGBACKREST_PREFIX,
        NoncurrentVersionExpiration: { NoncurrentDays: 1 },
        ExpiredObjectDeleteMarker: true,
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
      },
    ]);
    // The keys pgBackRest writes (its repo1-path without the leading /) are the prefix's.
    const repository = `${pgbackrestPath('kennel-db').slice(1)}/`;
    expect(repository).toBe(pgbackrestPrefix('kennel-db'));
    const segment = `${repository}archive/kennel-db/15-1/0000000100000000/000000010000000000000001-0123456789abcdef0123456789abcdef01234567.zst`;
    expect(LifecycleConfiguration.Rules.filter((r) => segment.startsWith(String(r.Prefix)))).toEqual(
      reaching,
    );
    // The check itself can say yes: a rule without a prefix, or one on a part of it, reaches it.
    expect(reachesPrefix({}, PGBACKREST_PREFIX)).toBe(true);
    expect(reachesPrefix({ Prefix: 'pg' }, PGBACKREST_PREFIX)).toBe(true);
    expect(reachesPrefix({ Prefix: pgbackrestPrefix('kennel-db') }, PGBACKREST_PREFIX)).toBe(true);
    expect(reachesPrefix({ Prefix: 'database/' }, PGBACKREST_PREFIX)).toBe(false);
  });
});

/**
 * The backup key: disabled or deleted, it makes every backup unreadable. Its
 * administration and its use are separate statements, and an explicit denial
 * leaves disabling it and scheduling its deletion to one break-glass role.
 */
describe('the backup key', () => {
  const root = sub(`arn:\${AWS::Partition}:iam::\${AWS::AccountId}:root`);
  const breakGlass = (name: string) => sub(`arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/${name}`);
  const DEFAULT_BREAK_GLASS = `kennel-backup-${STAGE}-key-break-glass`;
  /** What IAM may delegate of the key's administration: no cryptography, no grants, rotation never off. */
  const ADMINISTRATION = [
    'kms:CancelKeyDeletion',
    'kms:CreateAlias',
    'kms:DeleteAlias',
    'kms:DescribeKey',
    'kms:DisableKey',
    'kms:EnableKey',
    'kms:EnableKeyRotation',
    'kms:GetKeyPolicy',
    'kms:GetKeyRotationStatus',
    'kms:ListAliases',
    'kms:ListGrants',
    'kms:ListKeyPolicies',
    'kms:ListKeyRotations',
    'kms:ListResourceTags',
    'kms:PutKeyPolicy',
    'kms:RevokeGrant',
    'kms:RotateKeyOnDemand',
    'kms:ScheduleKeyDeletion',
    'kms:TagResource',
    'kms:UntagResource',
    'kms:UpdateAlias',
    'kms:UpdateKeyDescription',
  ];
  const keyPolicy = (from: Template = template) =>
    resource<{ KeyPolicy: PolicyDocument }>('BackupKey', 'AWS::KMS::Key', from).KeyPolicy.Statement;
  const expectedPolicy = (roleName: string): Statement[] => [
    {
      Sid: 'AdministerThroughIam',
      Effect: 'Allow',
      Principal: { AWS: root },
      Action: ADMINISTRATION,
      Resource: '*',
    },
    {
      Sid: 'UseThroughS3Only',
      Effect: 'Allow',
      Principal: { AWS: root },
      Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
      Resource: '*',
      Condition: { StringEquals: { 'kms:ViaService': sub(`s3.\${AWS::Region}.amazonaws.com`) } },
    },
    {
      Sid: 'OnlyBreakGlassRoleDisablesOrDeletes',
      Effect: 'Deny',
      Principal: '*',
      Action: ['kms:DisableKey', 'kms:ScheduleKeyDeletion'],
      Resource: '*',
      Condition: { ArnNotEquals: { 'aws:PrincipalArn': breakGlass(roleName) } },
    },
  ];

  it('is administered through IAM, used only through S3, and disabled or deleted by the break-glass role alone', () => {
    expect(keyPolicy()).toEqual(expectedPolicy(DEFAULT_BREAK_GLASS));
    // Administration and use are apart: administration may neither use the key
    // nor hand its use to someone (a grant), nor turn rotation off.
    const [administration, use] = keyPolicy().map((st) => asArray(st.Action));
    const useOrWeaken = [
      'kms:Decrypt',
      'kms:Encrypt',
      'kms:GenerateDataKey',
      'kms:ReEncryptFrom',
      'kms:ReEncryptTo',
    ];
    useOrWeaken.push('kms:CreateGrant', 'kms:RetireGrant', 'kms:DisableKeyRotation');
    expect(administration?.filter((a) => useOrWeaken.includes(a))).toEqual([]);
    expect(use?.filter((a) => ADMINISTRATION.includes(a))).toEqual([]);
  });

  /**
   * KMS refuses a key policy that would stop the principal setting it from
   * setting it again (the lockout safety check), and every deploy sets it: the
   * deployer keeps PutKeyPolicy through IAM, and no denial reaches it.
   */
  it("never locks the account out of the key's policy", () => {
    const allowed = keyPolicy().filter(
      (s) => s.Effect === 'Allow' && asArray(s.Action).includes('kms:PutKeyPolicy'),
    );
    expect(allowed.map((s) => [s.Principal, s.Condition])).toEqual([[{ AWS: root }, undefined]]);
    const denied = keyPolicy()
      .filter((s) => s.Effect === 'Deny')
      .flatMap((s) => asArray(s.Action));
    expect(denied).not.toContain('kms:PutKeyPolicy');
    expect(denied.filter((a) => a.includes('*'))).toEqual([]);
  });

  it('has a break-glass role that may assume only with MFA, touches only this key, and outlives the stack', () => {
    const role = resource<{
      RoleName: string;
      MaxSessionDuration: number;
      AssumeRolePolicyDocument: PolicyDocument;
      Policies: { PolicyName: string; PolicyDocument: PolicyDocument }[];
      ManagedPolicyArns?: unknown;
    }>('KeyBreakGlassRole', 'AWS::IAM::Role');
    expect(role.RoleName).toBe(DEFAULT_BREAK_GLASS);
    expect(role.MaxSessionDuration).toBe(3600);
    expect(role.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Effect: 'Allow',
        Principal: { AWS: root },
        Action: 'sts:AssumeRole',
        Condition: { Bool: { 'aws:MultiFactorAuthPresent': 'true' } },
      },
    ]);
    expect(role.Policies.flatMap((p) => p.PolicyDocument.Statement)).toEqual([
      {
        Effect: 'Allow',
        Action: [
          'kms:DescribeKey',
          'kms:DisableKey',
          'kms:EnableKey',
          'kms:ScheduleKeyDeletion',
          'kms:CancelKeyDeletion',
        ],
        Resource: getAtt('BackupKey'),
      },
    ]);
    expect(role.ManagedPolicyArns).toBeUndefined();
    expect(role.resource.DeletionPolicy).toBe('Retain');
    expect(template.Outputs.KeyBreakGlassRoleArn?.Value).toEqual(getAtt('KeyBreakGlassRole'));
    // The key's denial names this very role, by the ARN IAM gives it (no path).
    const deny = keyPolicy()[2]?.Condition?.ArnNotEquals?.['aws:PrincipalArn'];
    expect(deny).toEqual(breakGlass(role.RoleName));
    // No other role or policy of the stack may disable or delete the key.
    const others = [
      ...ofType('AWS::IAM::Role')
        .filter(([id]) => id !== 'KeyBreakGlassRole')
        .flatMap(([, r]) =>
          ((r.Properties as Role).Policies ?? []).flatMap((p) => p.PolicyDocument.Statement),
        ),
      ...ofType('AWS::IAM::ManagedPolicy').flatMap(
        ([, r]) => (r.Properties as { PolicyDocument: PolicyDocument }).PolicyDocument.Statement,
      ),
    ].flatMap((s) => asArray(s.Action));
    expect(others.filter((a) => ['kms:DisableKey', 'kms:ScheduleKeyDeletion'].includes(a))).toEqual([]);
  });

  it('names the break-glass role --param keyBreakGlassRole gives', async () => {
    const withParams = await withOptionalParams();
    expect(keyPolicy(withParams)).toEqual(expectedPolicy(BREAK_GLASS_ROLE));
    expect(resource<{ RoleName: string }>('KeyBreakGlassRole', 'AWS::IAM::Role', withParams).RoleName).toBe(
      BREAK_GLASS_ROLE,
    );
  }, 240_000);

  it('refuses a keyBreakGlassRole that is not a role name', async () => {
    const given = (name: string) => paramOf('keyBreakGlassRoleName', { 'param:keyBreakGlassRole': name });
    await expect(given(' key-custodian ')).resolves.toBe('key-custodian');
    for (const bad of [
      '',
      'arn:aws:iam::123456789012:role/key-custodian',
      'ops/key-custodian',
      'x'.repeat(65),
    ]) {
      await expect(given(bad)).rejects.toThrow(
        `The keyBreakGlassRole param "${bad}" is not an IAM role name.`,
      );
    }
  });
});

/**
 * Every execution of this service that fails, times out or is aborted reaches
 * sendAlert through EventBridge, even when no Catch saw it; sendAlert posts to
 * Slack and publishes to the alert topic, which e-mails its subscribers.
 */
describe('failure alerts', () => {
  interface EventRule {
    Name: string;
    State: string;
    EventPattern: unknown;
    Targets: unknown[];
  }

  it('one rule sends every failed, timed out or aborted execution of every state machine here, and nothing else, to sendAlert', () => {
    const rule = resource<EventRule>('WorkflowFailedRule', 'AWS::Events::Rule');
    // Built from the template itself: a state machine left out of the rule fails here.
    const everyStateMachine = ofType('AWS::StepFunctions::StateMachine').map(([id]) => ({ Ref: id }));
    expect(everyStateMachine).toHaveLength(STATE_MACHINES.length);
    expect(rule.Name).toBe(`kennel-backup-${STAGE}-workflow-failed`);
    expect(rule.State).toBe('ENABLED');
    expect(rule.EventPattern).toEqual({
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: { status: [...ALERTED_STATUSES], stateMachineArn: everyStateMachine },
    });
    expect([...ALERTED_STATUSES]).toEqual(['FAILED', 'TIMED_OUT', 'ABORTED']);
    expect(rule.Targets).toEqual([
      {
        Id: 'sendAlert',
        Arn: getAtt('SendAlertLambdaFunction'),
        RetryPolicy: { MaximumEventAgeInSeconds: 86400, MaximumRetryAttempts: 185 },
        DeadLetterConfig: { Arn: getAtt('AlertDeadLetterQueue') },
      },
    ]);
  });

  it('one rule sends every aborted or timed out execution of every state machine to cancelHostCommands, which cancels its host commands', () => {
    const rule = resource<EventRule>('HostCommandCancelRule', 'AWS::Events::Rule');
    const everyStateMachine = ofType('AWS::StepFunctions::StateMachine').map(([id]) => ({ Ref: id }));
    expect(rule.Name).toBe(`kennel-backup-${STAGE}-cancel-host-commands`);
    expect(rule.State).toBe('ENABLED');
    expect(rule.EventPattern).toEqual({
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: { status: [...CANCELLED_STATUSES], stateMachineArn: everyStateMachine },
    });
    expect([...CANCELLED_STATUSES]).toEqual(['ABORTED', 'TIMED_OUT']);
    expect(rule.Targets).toEqual([
      {
        Id: 'cancelHostCommands',
        Arn: getAtt('CancelHostCommandsLambdaFunction'),
        RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 20 },
        DeadLetterConfig: { Arn: getAtt('AlertDeadLetterQueue') },
      },
    ]);
    const permissions = ofType('AWS::Lambda::Permission').filter(([, r]) =>
      JSON.stringify((r.Properties as { FunctionName: unknown }).FunctionName).includes('CancelHostCommands'),
    );
    expect(permissions.map(([, r]) => r.Properties)).toEqual([
      {
        Action: 'lambda:InvokeFunction',
        FunctionName: getAtt('CancelHostCommandsLambdaFunction'),
        Principal: 'events.amazonaws.com',
        SourceArn: getAtt('HostCommandCancelRule'),
      },
    ]);
  });

  it('one rule sends every ended execution of every state machine, whatever its status, to exportExecutionHistory: the audit trail', () => {
    const rule = resource<EventRule>('ExecutionEndedRule', 'AWS::Events::Rule');
    const everyStateMachine = ofType('AWS::StepFunctions::StateMachine').map(([id]) => ({ Ref: id }));
    expect(rule.Name).toBe(`kennel-backup-${STAGE}-execution-ended`);
    expect(rule.State).toBe('ENABLED');
    expect(rule.EventPattern).toEqual({
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: { status: [...TERMINAL_STATUSES], stateMachineArn: everyStateMachine },
    });
    expect([...TERMINAL_STATUSES]).toEqual(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED']);
    expect(rule.Targets).toEqual([
      {
        Id: 'exportExecutionHistory',
        Arn: getAtt('ExportExecutionHistoryLambdaFunction'),
        RetryPolicy: { MaximumEventAgeInSeconds: 86400, MaximumRetryAttempts: 185 },
        DeadLetterConfig: { Arn: getAtt('AlertDeadLetterQueue') },
      },
    ]);
    const permissions = ofType('AWS::Lambda::Permission').filter(([, r]) =>
      JSON.stringify((r.Properties as { FunctionName: unknown }).FunctionName).includes(
        'ExportExecutionHistory',
      ),
    );
    expect(permissions.map(([, r]) => r.Properties)).toEqual([
      {
        Action: 'lambda:InvokeFunction',
        FunctionName: getAtt('ExportExecutionHistoryLambdaFunction'),
        Principal: 'events.amazonaws.com',
        SourceArn: getAtt('ExecutionEndedRule'),
      },
    ]);
  });

  it('EventBridge may invoke sendAlert for that rule only', () => {
    const permissions = ofType('AWS::Lambda::Permission').filter(([, r]) =>
      JSON.stringify((r.Properties as { FunctionName: unknown }).FunctionName).includes('SendAlert'),
    );
    expect(permissions.map(([, r]) => r.Properties)).toEqual([
      {
        Action: 'lambda:InvokeFunction',
        FunctionName: getAtt('SendAlertLambdaFunction'),
        Principal: 'events.amazonaws.com',
        SourceArn: getAtt('WorkflowFailedRule'),
      },
    ]);
  });

  it('an event EventBridge cannot hand to sendAlert is kept, encrypted, for 14 days, and its alarm e-mails the topic', () => {
    const queue = resource<Record<string, unknown>>('AlertDeadLetterQueue', 'AWS::SQS::Queue');
    expect(queue.MessageRetentionPeriod).toBe(1209600);
    expect(queue.SqsManagedSseEnabled).toBe(true);
    const policy = resource<{ Queues: unknown[]; PolicyDocument: PolicyDocument }>(
      'AlertDeadLetterQueuePolicy',
      'AWS::SQS::QueuePolicy',
    );
    expect(policy.Queues).toEqual([{ Ref: 'AlertDeadLetterQueue' }]);
    expect(policy.PolicyDocument.Statement).toEqual([
      {
        Sid: 'FailureRuleDeadLetters',
        Effect: 'Allow',
        Principal: { Service: 'events.amazonaws.com' },
        Action: 'sqs:SendMessage',
        Resource: getAtt('AlertDeadLetterQueue'),
        Condition: { ArnEquals: { 'aws:SourceArn': getAtt('WorkflowFailedRule') } },
      },
      {
        Sid: 'CancelRuleDeadLetters',
        Effect: 'Allow',
        Principal: { Service: 'events.amazonaws.com' },
        Action: 'sqs:SendMessage',
        Resource: getAtt('AlertDeadLetterQueue'),
        Condition: { ArnEquals: { 'aws:SourceArn': getAtt('HostCommandCancelRule') } },
      },
      {
        Sid: 'ExecutionEndedRuleDeadLetters',
        Effect: 'Allow',
        Principal: { Service: 'events.amazonaws.com' },
        Action: 'sqs:SendMessage',
        Resource: getAtt('AlertDeadLetterQueue'),
        Condition: { ArnEquals: { 'aws:SourceArn': getAtt('ExecutionEndedRule') } },
      },
    ]);
    const alarm = resource<Record<string, unknown>>('AlertDeadLettersAlarm', 'AWS::CloudWatch::Alarm');
    expect(alarm).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': ['AlertDeadLetterQueue', 'QueueName'] } }],
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
      AlarmActions: [{ Ref: 'AlertTopic' }],
    });
  });

  it('the alert topic has no subscription unless alertEmail is given', () => {
    const topic = resource<{ TopicName: string }>('AlertTopic', 'AWS::SNS::Topic');
    expect(topic.TopicName).toBe(`kennel-backup-${STAGE}-alerts`);
    expect(template.Outputs.AlertTopicArn?.Value).toEqual({ Ref: 'AlertTopic' });
    const subscriptions = ofType('AWS::SNS::Subscription');
    expect(subscriptions.map(([id, r]) => [id, r.Condition])).toEqual([
      ['AlertEmailSubscription', 'HasAlertEmail'],
    ]);
    // Without the param the condition compares '' with '': false, so CloudFormation creates no subscription.
    expect(template.Conditions?.HasAlertEmail).toEqual({ 'Fn::Not': [{ 'Fn::Equals': ['', ''] }] });
  });

  it('with alertEmail, the topic e-mails that address', async () => {
    const withEmail = await withOptionalParams();
    expect(withEmail.Conditions?.HasAlertEmail).toEqual({ 'Fn::Not': [{ 'Fn::Equals': [ALERT_EMAIL, ''] }] });
    const subscription = resource<Record<string, unknown>>(
      'AlertEmailSubscription',
      'AWS::SNS::Subscription',
      withEmail,
    );
    expect(subscription.resource.Condition).toBe('HasAlertEmail');
    expect(subscription).toMatchObject({
      TopicArn: { Ref: 'AlertTopic' },
      Protocol: 'email',
      Endpoint: ALERT_EMAIL,
    });
  }, 240_000);

  it('refuses an alertEmail that is not one e-mail address', async () => {
    const given = (email: string) => paramOf('alertEmail', { 'param:alertEmail': email });
    await expect(given(` ${ALERT_EMAIL} `)).resolves.toBe(ALERT_EMAIL);
    await expect(given('')).resolves.toBe('');
    for (const bad of ['ops', 'Ops <ops@kennel.example>', 'ops@kennel.example,dev@kennel.example']) {
      await expect(given(bad)).rejects.toThrow(
        `The alertEmail param "${bad}" is not an e-mail address. Give one address`,
      );
    }
  });
});

/** A metric as CloudWatch keys it: namespace, name and the whole set of dimensions. */
interface MetricIdentity {
  namespace: string;
  name: string;
  dimensions: Record<string, string>;
}
const identity = (m: MetricIdentity) =>
  JSON.stringify([m.namespace, m.name, Object.entries(m.dimensions).sort(([a], [b]) => a.localeCompare(b))]);

/** The metrics in embedded-metric-format log lines, as CloudWatch extracts them. */
function metricsInLogLines(lines: string[]): MetricIdentity[] {
  return lines
    .filter((line) => line.includes('"_aws"'))
    .flatMap((line) => {
      const emf = JSON.parse(line) as Record<string, unknown> & {
        _aws: {
          CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[];
        };
      };
      return emf._aws.CloudWatchMetrics.flatMap((directive) =>
        directive.Dimensions.flatMap((set) =>
          directive.Metrics.map((metric) => ({
            namespace: directive.Namespace,
            name: metric.Name,
            dimensions: Object.fromEntries(set.map((d) => [d, String(emf[d])])),
          })),
        ),
      );
    });
}

/**
 * Every metric the deployed functions emit under this configuration, by the
 * functions' own code: planMonitoring's list of backups (over an empty bucket,
 * each then given an age) and its hosts' disks, as reportMonitoring emits them,
 * and verifyArchive's size and duration of an archive of every kind.
 */
async function emittedMetrics(config: Config): Promise<MetricIdentity[]> {
  const s3 = mockClient(S3Client);
  s3.on(ListObjectsV2Command).resolves({ Contents: [] });
  const plan = await planMonitoring(config, new Catalog(new S3Client({ region: 'us-east-1' }), BUCKET_NAME), {
    input: {},
    executionId: `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-${STAGE}-monitoring:hourly`,
    startedAt: '2026-11-29T06:00:00Z',
  });
  s3.restore();
  // Powertools writes each metric line to stdout as it is published.
  const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    const metrics = createMetrics(config);
    const sink = metricsSink(metrics);
    for (const age of plan.ages) sink.backupAge({ ...age, ageSeconds: 60 });
    for (const { target } of plan.hosts) sink.diskUsedPercent(target, 50);
    for (const { target } of plan.archivers) sink.walArchiveAge(target, 30);
    for (const { target, bytes } of plan.repositories) sink.repositoryBytes(target, bytes);
    for (const { name } of config.BACKUP_TARGETS)
      for (const kind of [...DUMP_KINDS, ...FILE_KINDS])
        recordArchive(metrics, { target: name, kind, sizeBytes: 1, durationSeconds: 1 });
    return metricsInLogLines(write.mock.calls.flatMap(([chunk]) => String(chunk).split('\n')));
  } finally {
    write.mockRestore();
  }
}

interface Alarm {
  AlarmName: string;
  AlarmDescription: string;
  Namespace: string;
  MetricName: string;
  Dimensions: { Name: string; Value: string }[];
  Threshold: number;
}
interface Widget {
  type: string;
  properties: {
    title: string;
    metrics?: unknown[][];
    alarms?: string[];
    stat?: string;
    annotations?: { horizontal: { label: string; value: number }[] };
  };
}

/** A dashboard line, `[namespace, name, dimension, value, ..., {options}]`, as a metric. */
function lineMetric(line: unknown[]): MetricIdentity {
  const [namespace, name, ...rest] = line;
  const pairs = rest.filter((x): x is string => typeof x === 'string');
  return {
    namespace: String(namespace),
    name: String(name),
    dimensions: Object.fromEntries(pairs.flatMap((_, i) => (i % 2 === 0 ? [[pairs[i], pairs[i + 1]]] : []))),
  };
}

/**
 * The alarms and the dashboard read metrics that only exist as log lines the
 * functions print; an alarm on a name or dimension they do not print sees no
 * data, which for the age alarms is a false alarm for ever. Checked for the
 * default deployment and for two targets, three databases and another threshold.
 */
describe.each([
  // Ages: each database's full and monthly dumps, each target's three file kinds.
  { packaging: 'default params', load: async () => template, ages: 5, disks: 1, archivers: 0, percent: 80 },
  {
    packaging: 'two targets, three databases, one with pgBackRest, a 90 % disk threshold',
    load: withOptionalParams,
    ages: 12,
    disks: 2,
    archivers: 1,
    percent: DISK_PERCENT,
  },
])('metrics, alarms and dashboard ($packaging)', ({ load, ages, disks, archivers, percent }) => {
  let deployed: Template;
  let emitted: MetricIdentity[];
  beforeAll(async () => {
    deployed = await load();
    emitted = await emittedMetrics(deployedConfig('reportMonitoring', deployed));
  }, 240_000);

  const alarms = () =>
    Object.entries(deployed.Resources)
      .filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm')
      .map(([id, r]) => [id, r.Properties as Alarm] as const);
  const alarmMetric = (a: Alarm): MetricIdentity => ({
    namespace: a.Namespace,
    name: a.MetricName,
    dimensions: Object.fromEntries(a.Dimensions.map((d) => [d.Name, d.Value])),
  });
  const emittedNamed = (name: string) => emitted.filter((m) => m.name === name);
  const topic = [{ Ref: 'AlertTopic' }];

  it('one backup-age alarm per target, scheduled kind and database, on the metric the monitoring emits', () => {
    const backupAges = emittedNamed('BackupAgeSeconds');
    expect(backupAges).toHaveLength(ages);
    const ageAlarms = alarms().filter(([, a]) => a.MetricName === 'BackupAgeSeconds');
    expect(ageAlarms).toHaveLength(ages);
    expect(new Set(ageAlarms.map(([, a]) => identity(alarmMetric(a))))).toEqual(
      new Set(backupAges.map(identity)),
    );
    for (const [id, alarm] of ageAlarms) {
      const kind = alarmMetric(alarm).dimensions.Kind as keyof typeof SCHEDULES;
      expect(alarm, id).toEqual({
        AlarmName: expect.stringMatching(new RegExp(`^kennel-backup-${STAGE}-backup-age-[a-z0-9_-]+$`)),
        AlarmDescription: expect.stringContaining(`the newest verified ${kind} backup of `),
        Namespace: 'KennelBackup',
        MetricName: 'BackupAgeSeconds',
        Dimensions: expect.any(Array),
        Statistic: 'Maximum',
        Period: 3600,
        EvaluationPeriods: 1,
        Threshold: maxAgeMinutes(kind) * 60,
        ComparisonOperator: 'GreaterThanThreshold',
        // A monitoring that stops emits nothing: no data is an alarm.
        TreatMissingData: 'breaching',
        AlarmActions: topic,
        OKActions: topic,
      });
    }
    expect(METRICS_NAMESPACE).toBe('KennelBackup');
    // Each kind's interval plus an hour's grace; the monthly dump's interval is the longest month. (The
    // physical kinds have no age alarm of their own: their RPO is the WAL archive age's alarm.)
    const thresholds = Object.fromEntries(
      ageAlarms.map(([, a]) => [alarmMetric(a).dimensions.Kind, a.Threshold] as const),
    );
    expect(thresholds).toEqual({
      full: 25 * 3600,
      monthly: (31 * 24 + 1) * 3600,
      configuration: 25 * 3600,
      application: 25 * 3600,
      static: 25 * 3600,
    });
    const names = ageAlarms.map(([, a]) => a.AlarmName);
    expect(new Set(names).size).toBe(names.length);
  });

  it('one disk alarm per target, above the deployment threshold', () => {
    const diskAlarms = alarms().filter(([, a]) => a.MetricName === 'BackupDiskUsedPercent');
    expect(diskAlarms).toHaveLength(disks);
    expect(new Set(diskAlarms.map(([, a]) => identity(alarmMetric(a))))).toEqual(
      new Set(emittedNamed('BackupDiskUsedPercent').map(identity)),
    );
    for (const [id, alarm] of diskAlarms) {
      expect(alarm, id).toEqual({
        AlarmName: `kennel-backup-${STAGE}-backup-disk-${alarmMetric(alarm).dimensions.Target}`,
        AlarmDescription: expect.stringContaining(`more than ${percent}% full`),
        Namespace: 'KennelBackup',
        MetricName: 'BackupDiskUsedPercent',
        Dimensions: expect.any(Array),
        Statistic: 'Maximum',
        Period: 3600,
        EvaluationPeriods: 1,
        Threshold: percent,
        ComparisonOperator: 'GreaterThanThreshold',
        // An unmeasured disk fails the monitoring, which alerts; a stopped monitoring sets off the age alarms.
        TreatMissingData: 'notBreaching',
        AlarmActions: topic,
        OKActions: topic,
      });
    }
    // The functions judge the disk by the same threshold.
    expect(deployedConfig('reportMonitoring', deployed).DISK_USAGE_ALERT_PERCENT).toBe(percent);
  });

  /**
   * The RPO is a minute; WAL that has waited five is an alarm. The age comes every
   * minute (the wal-archive-age workflow); two minutes in a row, so one late
   * minute is none, and no data (archiving off, a host or a measurement that does
   * not answer) breaches.
   */
  it('one WAL archive age alarm per pgBackRest target, above five minutes, missing data breaching, on the metric the functions emit', () => {
    const walAlarms = alarms().filter(([, a]) => a.MetricName === 'WalArchiveAgeSeconds');
    expect(walAlarms).toHaveLength(archivers);
    const emittedAges = emittedNamed('WalArchiveAgeSeconds');
    expect(emittedAges).toHaveLength(archivers);
    expect(new Set(walAlarms.map(([, a]) => identity(alarmMetric(a))))).toEqual(
      new Set(emittedAges.map(identity)),
    );
    for (const [id, alarm] of walAlarms) {
      const target = alarmMetric(alarm).dimensions.Target;
      expect(id).toBe('WalArchiveAgeKennelDbAlarm');
      expect(alarm).toEqual({
        AlarmName: `kennel-backup-${STAGE}-wal-archive-age-${target}`,
        AlarmDescription: expect.stringContaining(`WAL written on ${target} has waited more than 5 min`),
        Namespace: 'KennelBackup',
        MetricName: 'WalArchiveAgeSeconds',
        Dimensions: [
          { Name: 'service', Value: 'kennel-backup' },
          { Name: 'Stage', Value: STAGE },
          { Name: 'Target', Value: 'kennel-db' },
        ],
        Statistic: 'Maximum',
        Period: 60,
        EvaluationPeriods: 2,
        DatapointsToAlarm: 2,
        Threshold: 300,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'breaching',
        AlarmActions: topic,
        OKActions: topic,
      });
    }
  });

  it('has no other alarm than those and the dead-letter one', () => {
    expect(
      alarms()
        .filter(([, a]) => a.Namespace !== 'KennelBackup')
        .map(([id]) => id),
    ).toEqual(['AlertDeadLettersAlarm']);
    expect(alarms()).toHaveLength(ages + disks + archivers + 1);
  });

  describe('the dashboard', () => {
    const body = () => {
      const dashboard = resource<{ DashboardName: string; DashboardBody: { 'Fn::Sub': string } }>(
        'BackupDashboard',
        'AWS::CloudWatch::Dashboard',
        deployed,
      );
      expect(dashboard.DashboardName).toBe(`kennel-backup-${STAGE}`);
      return dashboard.DashboardBody['Fn::Sub'];
    };
    const widgets = () => (JSON.parse(body()) as { widgets: Widget[] }).widgets;
    /** The graphs of one metric; every graph shows one metric only. */
    const graphsOf = (name: string) =>
      widgets().filter((w) => w.type === 'metric' && w.properties.metrics?.[0]?.[1] === name);

    it('refers only to resources of the template and the region', () => {
      const placeholders = [...body().matchAll(/\$\{([^}]+)\}/g)].map((m) => m[1] ?? '');
      expect(placeholders.length).toBeGreaterThan(0);
      for (const p of placeholders) {
        if (p === 'AWS::Region') continue;
        expect(deployed.Resources, p).toHaveProperty([p.replace(/\.Arn$/, '')]);
      }
      for (const w of widgets().filter((w) => w.type === 'metric')) {
        const names = new Set(w.properties.metrics?.map((line) => line[1]));
        expect(names.size, w.properties.title).toBe(1);
      }
    });

    it('shows the state of every alarm', () => {
      const [alarmWidget, ...others] = widgets().filter((w) => w.type === 'alarm');
      expect(others).toEqual([]);
      expect(new Set(alarmWidget?.properties.alarms)).toEqual(
        new Set(alarms().map(([id]) => `\${${id}.Arn}`)),
      );
    });

    // The dumps' and files' ages; the physical kinds' freshness is the daily verification's, from pgBackRest's info.
    it.each([...SCHEDULED_DUMP_KINDS, ...FILE_KINDS])(
      'graphs the age of every %s backup against its limit',
      (kind) => {
        const graphs = graphsOf('BackupAgeSeconds').filter(
          (w) => lineMetric(w.properties.metrics?.[0] ?? []).dimensions.Kind === kind,
        );
        expect(graphs).toHaveLength(1);
        const lines = graphs[0]?.properties.metrics ?? [];
        expect(new Set(lines.map((l) => identity(lineMetric(l))))).toEqual(
          new Set(
            emittedNamed('BackupAgeSeconds')
              .filter((m) => m.dimensions.Kind === kind)
              .map(identity),
          ),
        );
        expect(graphs[0]?.properties.stat).toBe('Maximum');
        expect(graphs[0]?.properties.annotations?.horizontal.map((a) => a.value)).toEqual([
          maxAgeMinutes(kind) * 60,
        ]);
      },
    );

    it.each(['ArchiveSizeBytes', 'BackupDurationSeconds', 'BackupDiskUsedPercent'])(
      'graphs %s of every kind and target the functions report',
      (name) => {
        const graphs = graphsOf(name);
        expect(graphs).toHaveLength(1);
        const lines = (graphs[0]?.properties.metrics ?? []).map(lineMetric);
        expect(new Set(lines.map(identity))).toEqual(new Set(emittedNamed(name).map(identity)));
        if (name === 'BackupDiskUsedPercent')
          expect(graphs[0]?.properties.annotations?.horizontal.map((a) => a.value)).toEqual([percent]);
      },
    );

    it("graphs the WAL archive age against its alarm, and the repositories' size beside it", () => {
      const [age, ...otherAges] = graphsOf('WalArchiveAgeSeconds');
      const [size, ...otherSizes] = graphsOf('PgbackrestRepositoryBytes');
      expect([...otherAges, ...otherSizes]).toEqual([]);
      if (archivers === 0) {
        // No pgBackRest target: no graph (CloudWatch refuses one without a line).
        expect([age, size]).toEqual([undefined, undefined]);
        return;
      }
      for (const [graph, name] of [
        [age, 'WalArchiveAgeSeconds'],
        [size, 'PgbackrestRepositoryBytes'],
      ] as const) {
        expect(new Set((graph?.properties.metrics ?? []).map((l) => identity(lineMetric(l))))).toEqual(
          new Set(emittedNamed(name).map(identity)),
        );
      }
      expect(age?.properties.annotations?.horizontal.map((a) => a.value)).toEqual([300]);
      expect(age?.properties.stat).toBe('Maximum');
      // Side by side: the repository's size is the next widget after the age.
      const titles = widgets().map((w) => w.properties.title);
      expect(titles.indexOf(size?.properties.title ?? '')).toBe(
        titles.indexOf(age?.properties.title ?? '') + 1,
      );
    });

    it.each(['ExecutionsFailed', 'ExecutionsSucceeded'])('graphs %s of every state machine', (name) => {
      const graphs = graphsOf(name);
      expect(graphs).toHaveLength(1);
      expect(graphs[0]?.properties.stat).toBe('Sum');
      const machines = Object.entries(deployed.Resources)
        .filter(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')
        .map(([id]) => id);
      expect(machines).toHaveLength(STATE_MACHINES.length);
      expect(new Set((graphs[0]?.properties.metrics ?? []).map((l) => identity(lineMetric(l))))).toEqual(
        new Set(
          machines.map((id) =>
            identity({ namespace: 'AWS/States', name, dimensions: { StateMachineArn: `\${${id}}` } }),
          ),
        ),
      );
    });
  });
});

describe('a target with pgBackRest settings', () => {
  let withRepository: Template;
  beforeAll(async () => {
    withRepository = await withOptionalParams();
  }, 240_000);

  it('has its WAL archive age measured every minute', () => {
    const rules = Object.values(withRepository.Resources)
      .filter((r) => r.Type === 'AWS::Events::Rule')
      .map((r) => r.Properties as Rule)
      .filter((r) =>
        r.Targets.some((t) => JSON.stringify(t.Arn) === JSON.stringify({ Ref: 'WalArchiveAgeStateMachine' })),
      );
    expect(
      rules.map((r) => [r.ScheduleExpression, r.State, r.Targets.map((t) => JSON.parse(t.Input))]),
    ).toEqual([['rate(1 minute)', 'ENABLED', [{}]]]);
  });

  it("gets a pgbackrest.conf that asks S3 to encrypt the repository with the bucket's key", () => {
    const config = deployedConfig('startHostCommand', withRepository);
    const target = config.BACKUP_TARGETS.find((t) => t.name === 'kennel-db');
    expect(target?.pgbackrest).toBeDefined();
    const conf = pgbackrestConfOf(config, target as NonNullable<typeof target>);
    expect(conf.split('\n')).toEqual(
      expect.arrayContaining([
        `repo1-s3-kms-key-id=${KEY_ARN}`,
        `repo1-s3-bucket=${BUCKET_NAME}`,
        'repo1-path=/pgbackrest/kennel-db',
        'repo1-s3-key-type=auto',
      ]),
    );
  });
});

describe('the diskUsageAlertPercent param', () => {
  it('takes a whole percentage from 1 to 100 and refuses anything else', async () => {
    const given = (percent: string) =>
      paramOf('diskUsageAlertPercent', { 'param:diskUsageAlertPercent': percent });
    for (const good of ['1', '80', ' 95 ', '100']) await expect(given(good)).resolves.toBe(good.trim());
    for (const bad of ['0', '101', '85.5', '80%', '-5', '', 'eighty']) {
      await expect(given(bad)).rejects.toThrow(
        `The diskUsageAlertPercent param "${bad}" is not a whole percentage from 1 to 100.`,
      );
    }
  });
});

describe('permissions', () => {
  /** Every backup prefix's objects, and the same prefixes for ListBucket, as serverless/params.cjs builds them. */
  const objects = BACKUP_PREFIXES.map((prefix) => sub(`\${BackupBucket.Arn}/${prefix}*`));
  /** The manifests beside the archives under every backup prefix, and not the archives. */
  const manifests = BACKUP_PREFIXES.map((prefix) => sub(`\${BackupBucket.Arn}/${prefix}*.manifest.json`));
  const prefixes = BACKUP_PREFIXES.map((prefix) => `${prefix}*`);
  const listBackups: Statement = {
    Effect: 'Allow',
    Action: ['s3:ListBucket'],
    Resource: getAtt('BackupBucket'),
    Condition: { StringLike: { 's3:prefix': prefixes } },
  };
  /** The database family's functions see database/ only, and its catalog's readers its manifests only. */
  const databaseManifests = sub(`\${BackupBucket.Arn}/database/*.manifest.json`);
  const listDatabase: Statement = {
    Effect: 'Allow',
    Action: ['s3:ListBucket'],
    Resource: getAtt('BackupBucket'),
    Condition: { StringLike: { 's3:prefix': 'database/*' } },
  };
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

  /** The records of pgBackRest backups, read only. */
  const readPhysicalRecords: Statement[] = [
    {
      Effect: 'Allow',
      Action: ['s3:ListBucket'],
      Resource: getAtt('BackupBucket'),
      Condition: { StringLike: { 's3:prefix': 'catalog/pgbackrest/*' } },
    },
    { Effect: 'Allow', Action: ['s3:GetObject'], Resource: sub(`\${BackupBucket.Arn}/catalog/pgbackrest/*`) },
  ];
  const physicalRecords: Statement[] = [
    {
      Effect: 'Allow',
      Action: ['s3:ListBucket'],
      Resource: getAtt('BackupBucket'),
      Condition: { StringLike: { 's3:prefix': 'catalog/pgbackrest/*' } },
    },
    {
      Effect: 'Allow',
      Action: ['s3:GetObject', 's3:PutObject'],
      Resource: sub(`\${BackupBucket.Arn}/catalog/pgbackrest/*`),
    },
    bucketKey('kms:Decrypt', 'kms:GenerateDataKey'),
  ];

  /** A WAL archive's history files (the timelines), never its segments, which hold rows. */
  const walHistories = sub(`\${BackupBucket.Arn}/pgbackrest/*/archive/*.history`);
  const pointInTimePlanReads: Statement[] = [
    {
      Effect: 'Allow',
      Action: ['s3:ListBucket'],
      Resource: getAtt('BackupBucket'),
      Condition: {
        StringLike: {
          's3:prefix': ['pgbackrest/*/archive/*', 'catalog/pgbackrest/*', 'catalog/recoveries/*'],
        },
      },
    },
    {
      Effect: 'Allow',
      Action: ['s3:GetObject'],
      Resource: [
        // The archive's current id, and the timelines a recovery follows.
        sub(`\${BackupBucket.Arn}/pgbackrest/*/archive/*/archive.info`),
        walHistories,
        sub(`\${BackupBucket.Arn}/catalog/pgbackrest/*`),
        sub(`\${BackupBucket.Arn}/catalog/recoveries/*`),
      ],
    },
    bucketKey('kms:Decrypt'),
  ];

  /** The records of the archives' creation (shared/catalog/archive-record.ts) under `prefix`, read only. */
  const readRecords = (...prefixes: string[]): Statement => ({
    Effect: 'Allow',
    Action: ['s3:GetObject'],
    Resource:
      prefixes.length === 1
        ? sub(`\${BackupBucket.Arn}/catalog/archives/${prefixes[0]}/*`)
        : prefixes.map((prefix) => sub(`\${BackupBucket.Arn}/catalog/archives/${prefix}/*`)),
  });

  /** What each function may do beyond writing its own logs: the whole list, so any addition fails here. */
  const GRANTS: Record<FunctionName, Statement[]> = {
    // The pgBackRest records only (an incremental's base), read only: a dump's plan reads no catalog.
    planBackup: [
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': ['catalog/pgbackrest/*'] } },
      },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: [sub(`\${BackupBucket.Arn}/catalog/pgbackrest/*`)],
      },
      bucketKey('kms:Decrypt'),
    ],
    planFilesBackup: [],
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
    // The invocation, and the end of an output it cut, where Run Command wrote the whole of it.
    checkHostCommand: [
      { Effect: 'Allow', Action: ['ssm:GetCommandInvocation', 'ssm:ListCommandInvocations'], Resource: '*' },
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': 'host-output/*' } },
      },
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: sub(`\${BackupBucket.Arn}/host-output/*`) },
      bucketKey('kms:Decrypt'),
    ],
    // The WAL of every pgBackRest repository: its segments listed, never read; a timeline's history read.
    checkWalContinuity: [
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': 'pgbackrest/*/archive/*' } },
      },
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: walHistories },
      bucketKey('kms:Decrypt'),
    ],
    // Streams every kind's archives; writes the verdict into their manifests and never an archive,
    // and, once, the record of each archive's creation; reads the version a record names and
    // lengthens its lock.
    verifyArchive: [
      listBackups,
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: objects },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject'],
        Resource: sub(`\${BackupBucket.Arn}/catalog/archives/*`),
      },
      {
        Effect: 'Allow',
        Action: ['s3:GetObjectVersion', 's3:GetObjectRetention', 's3:PutObjectRetention'],
        Resource: [...objects, sub(`\${BackupBucket.Arn}/catalog/archives/*`)],
      },
      { Effect: 'Allow', Action: ['s3:PutObject'], Resource: manifests },
      bucketKey('kms:Decrypt', 'kms:GenerateDataKey'),
    ],
    // Reads the dump's manifest and records the test's outcome in it; the host restores the archive.
    restoreTest: [
      listDatabase,
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: databaseManifests },
      bucketKey('kms:Decrypt', 'kms:GenerateDataKey'),
      ...readParameter('restore-check-database-url'),
    ],
    // The database catalog: manifests, read only.
    planRestore: [
      listDatabase,
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: databaseManifests },
      readRecords('database'),
      bucketKey('kms:Decrypt'),
    ],
    // Counts rows in PostgreSQL against the dump's manifest: the manifests read, nothing else in S3.
    checkRestore: [
      listDatabase,
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: databaseManifests },
      bucketKey('kms:Decrypt'),
      ...readParameter('restore-check-database-url'),
    ],
    // The files kinds' catalogs: manifests, read only; no tarball, nothing under database/.
    planFilesRestore: [
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': ['configuration/*', 'application/*', 'static/*'] } },
      },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: [
          sub(`\${BackupBucket.Arn}/configuration/*.manifest.json`),
          sub(`\${BackupBucket.Arn}/application/*.manifest.json`),
          sub(`\${BackupBucket.Arn}/static/*.manifest.json`),
        ],
      },
      readRecords('configuration', 'application', 'static'),
      bucketKey('kms:Decrypt'),
    ],
    // Pure computation over the execution's state.
    reportRestore: [],
    // The physical records, the measured recoveries and the WAL archive, read only.
    planPointInTimeRecovery: pointInTimePlanReads,
    // The DR drill's plan reads what the recovery's does.
    planRecoveryDrill: pointInTimePlanReads,
    // Writes its measured rate, a new object under catalog/recoveries/; reads nothing.
    reportPointInTimeRecovery: [
      {
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: sub(`\${BackupBucket.Arn}/catalog/recoveries/*`),
      },
      bucketKey('kms:GenerateDataKey'),
    ],
    // The one deleter of backups: reads manifests (never an archive), deletes archives, manifests and leftovers.
    pruneBackups: [
      listBackups,
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: manifests },
      { Effect: 'Allow', Action: ['s3:DeleteObject'], Resource: objects },
      bucketKey('kms:Decrypt'),
    ],
    // The records of pgBackRest backups, and nothing else: the host never writes there.
    recordPhysicalBackup: physicalRecords,
    recordPhysicalExpiry: physicalRecords,
    // The catalog of every kind, read only: the newest manifests, for freshness, and the
    // pgBackRest records, for the newest full's restore test.
    // Every manifest and record once, to name one that does not parse; the WAL is the host's to prove.
    planVerification: [
      listBackups,
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: manifests },
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': ['catalog/pgbackrest/*', 'catalog/recoveries/*'] } },
      },
      {
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: [
          sub(`\${BackupBucket.Arn}/catalog/pgbackrest/*`),
          sub(`\${BackupBucket.Arn}/catalog/recoveries/*`),
        ],
      },
      bucketKey('kms:Decrypt'),
    ],
    // Judges the execution's state; emits nothing.
    reportVerification: [],
    // The lock objects, by conditional writes only, and whether a holder of one still runs.
    runLock: [
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: sub(`\${BackupBucket.Arn}/locks/*`) },
      {
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: sub(`\${BackupBucket.Arn}/locks/*`),
        Condition: { Null: { 's3:if-none-match': 'false' } },
      },
      {
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:DeleteObject'],
        Resource: sub(`\${BackupBucket.Arn}/locks/*`),
        Condition: { Null: { 's3:if-match': 'false' } },
      },
      bucketKey('kms:Decrypt', 'kms:GenerateDataKey'),
      {
        Effect: 'Allow',
        Action: ['states:DescribeExecution'],
        Resource: ['database-backup', 'files-backup', 'database-restore'].map((name) =>
          sub(
            `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:execution:kennel-backup-${STAGE}-${name}:*`,
          ),
        ),
      },
    ],
    // The backups to pick from (logical fulls' manifests, pgBackRest records), read only.
    planDrill: [
      listDatabase,
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: databaseManifests },
      readRecords('database'),
      ...readPhysicalRecords,
      bucketKey('kms:Decrypt'),
    ],
    // Writes the DR drill's measured rate and its report; reads nothing.
    reportRecoveryDrill: [
      {
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: [
          sub(`\${BackupBucket.Arn}/catalog/recoveries/*`),
          sub(`\${BackupBucket.Arn}/reports/drills/*`),
        ],
      },
      bucketKey('kms:GenerateDataKey'),
    ],
    // Writes the drill's report and nothing else; reads nothing.
    reportDrill: [
      { Effect: 'Allow', Action: ['s3:PutObject'], Resource: sub(`\${BackupBucket.Arn}/reports/drills/*`) },
      bucketKey('kms:GenerateDataKey'),
    ],
    recordPhysicalRestoreTest: [
      {
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: sub(`\${BackupBucket.Arn}/reports/restore-tests/*`),
      },
      bucketKey('kms:GenerateDataKey'),
    ],
    // Every kind's manifests, for freshness; the repositories listed (their size), never read.
    planMonitoring: [
      listBackups,
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: manifests },
      bucketKey('kms:Decrypt'),
    ],
    // Its metrics are log lines (embedded metric format): no cloudwatch:PutMetricData.
    reportMonitoring: [],
    // prepare-host's plan reads BACKUP_TARGETS and its report the execution's state: nothing in AWS.
    planPrepareHost: [],
    reportPrepareHost: [],
    // The check's plan reads BACKUP_TARGETS; its report reads Slack's webhook (to say it is
    // there, never shown) and the alert topic's subscriptions, nothing else.
    planCheck: [],
    reportCheck: [
      ...readParameter('alert-webhook-url'),
      { Effect: 'Allow', Action: ['sns:ListSubscriptionsByTopic'], Resource: { Ref: 'AlertTopic' } },
    ],
    // The every-minute WAL archive age: the targets from config, then log lines.
    planWalArchiveAge: [],
    reportWalArchiveAge: [],
    // Lists the commands in flight and cancels those of the aborted execution (neither
    // action takes a resource); Slack's webhook and the alert topic for what it cancelled.
    // … and starts restore-cleanup, and only it, for a stopped restore or database recovery.
    cancelHostCommands: [
      { Effect: 'Allow', Action: ['ssm:ListCommands', 'ssm:CancelCommand'], Resource: '*' },
      ...readParameter('alert-webhook-url'),
      { Effect: 'Allow', Action: ['sns:Publish'], Resource: { Ref: 'AlertTopic' } },
      {
        Effect: 'Allow',
        Action: ['states:StartExecution'],
        Resource: { Ref: 'RestoreCleanupStateMachine' },
      },
    ],
    // The history of the two workflows it cleans up after, and no other's; the
    // database catalog, read only, for the stopped run's safety dump.
    planCleanUp: [
      {
        Effect: 'Allow',
        Action: ['states:GetExecutionHistory'],
        Resource: ['database-restore', 'point-in-time-recovery'].map((name) =>
          sub(
            `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:execution:kennel-backup-${STAGE}-${name}:*`,
          ),
        ),
      },
      listDatabase,
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: databaseManifests },
      bucketKey('kms:Decrypt'),
    ],
    // Slack's webhook; the alert topic; the history of this service's executions, and no other's.
    // Every execution's history, read; written create-only (in code) under audit/executions/ and nowhere else, and locked for AUDIT_DAYS.
    exportExecutionHistory: [
      {
        Effect: 'Allow',
        Action: ['states:GetExecutionHistory'],
        Resource: STATE_MACHINES.map((m) =>
          sub(
            `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:execution:kennel-backup-${STAGE}-${m.name}:*`,
          ),
        ),
      },
      {
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:GetObject', 's3:GetObjectRetention', 's3:PutObjectRetention'],
        Resource: sub(`\${BackupBucket.Arn}/audit/executions/*`),
      },
      bucketKey('kms:Decrypt', 'kms:GenerateDataKey'),
    ],
    // The month's histories, the manifests and the pgBackRest records, read; the report written under audit/reports/ only.
    writeAuditReport: [
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: getAtt('BackupBucket'),
        Condition: { StringLike: { 's3:prefix': ['audit/executions/*', 'catalog/pgbackrest/*'] } },
      },
      listBackups,
      {
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: [
          sub(`\${BackupBucket.Arn}/audit/executions/*`),
          sub(`\${BackupBucket.Arn}/catalog/pgbackrest/*`),
        ],
      },
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: manifests },
      {
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:GetObject', 's3:GetObjectRetention', 's3:PutObjectRetention'],
        Resource: sub(`\${BackupBucket.Arn}/audit/reports/*`),
      },
      bucketKey('kms:Decrypt', 'kms:GenerateDataKey'),
    ],
    sendAlert: [
      ...readParameter('alert-webhook-url'),
      { Effect: 'Allow', Action: ['sns:Publish'], Resource: { Ref: 'AlertTopic' } },
      {
        Effect: 'Allow',
        Action: ['states:GetExecutionHistory'],
        Resource: STATE_MACHINES.map((m) =>
          sub(
            `arn:\${AWS::Partition}:states:\${AWS::Region}:\${AWS::AccountId}:execution:kennel-backup-${STAGE}-${m.name}:*`,
          ),
        ),
      },
    ],
  };

  /** Actions that support no resource-level permission, so only `Resource: '*'` grants them. */
  const UNSCOPABLE: Record<string, string[]> = {
    // SSM command status reads.
    '*': ['ssm:GetCommandInvocation', 'ssm:ListCommandInvocations', 'ssm:ListCommands', 'ssm:CancelCommand'],
    // Step Functions' CloudWatch Logs delivery and X-Ray tracing (added by
    // serverless-step-functions to every state machine's role).
    ...Object.fromEntries(STATE_MACHINES.map((m) => [`${m.id}Role`, UNSCOPABLE_STATE_MACHINE_ACTIONS])),
  };

  it('covers exactly the database prefix and the three file kinds', () => {
    // Every role's S3 resources are built from this list: a change to it is a change of every grant.
    expect(BACKUP_PREFIXES).toEqual(['database/', 'configuration/', 'application/', 'static/']);
    expect(objects).toEqual([
      sub(`\${BackupBucket.Arn}/database/*`),
      sub(`\${BackupBucket.Arn}/configuration/*`),
      sub(`\${BackupBucket.Arn}/application/*`),
      sub(`\${BackupBucket.Arn}/static/*`),
    ]);
  });

  it.each(FUNCTION_NAMES)('%s has its own role: its logs and exactly its grants', (fn) => {
    const lambda = resource<LambdaFunction>(`${logicalId(fn)}LambdaFunction`, 'AWS::Lambda::Function');
    expect(lambda.Role).toEqual(getAtt(roleId(fn)));
    const [logs, ...grants] = roleStatements(roleId(fn));
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

  it("the framework's default Lambda role is not created, and no function or resource names it", () => {
    expect(template.Resources.IamRoleLambdaExecution).toBeUndefined();
    expect(JSON.stringify(template)).not.toContain('"IamRoleLambdaExecution"');
    // Every role the template creates is a function's own, a state machine's, a schedule's, or the key's break-glass role.
    expect(new Set(ofType('AWS::IAM::Role').map(([id]) => id))).toEqual(
      new Set([
        ...FUNCTION_NAMES.map(roleId),
        ...STATE_MACHINES.map((m) => `${m.id}Role`),
        ...STATE_MACHINES.filter((m) => m.schedules.length > 0).map(scheduleRoleId),
        'KeyBreakGlassRole',
      ]),
    );
  });

  it('refuses to package while a resource still names the default Lambda role', () => {
    const DropDefaultRole = createRequire(import.meta.url)('../serverless/drop-default-role.cjs') as new (
      serverless: unknown,
    ) => { drop(): void };
    const resources = (extra: Record<string, unknown>) => ({
      IamRoleLambdaExecution: { Type: 'AWS::IAM::Role' },
      OwnRole: { Type: 'AWS::IAM::Role' },
      ...extra,
    });
    const serverless = (Resources: Record<string, unknown>) => ({
      service: { provider: { compiledCloudFormationTemplate: { Resources, Outputs: {} } } },
      getProvider: () => ({ naming: { getRoleLogicalId: () => 'IamRoleLambdaExecution' } }),
      classes: { Error },
    });
    const unused = resources({});
    new DropDefaultRole(serverless(unused)).drop();
    expect(Object.keys(unused)).toEqual(['OwnRole']);
    const used = resources({
      OldFunction: { Type: 'AWS::Lambda::Function', Properties: { Role: getAtt('IamRoleLambdaExecution') } },
    });
    expect(() => new DropDefaultRole(serverless(used)).drop()).toThrow(
      'The default Lambda role IamRoleLambdaExecution is still used by OldFunction',
    );
    expect(Object.keys(used)).toContain('IamRoleLambdaExecution');
  });

  /**
   * SendCommand on the configured hosts only: a target pinned by instance ids
   * gets exactly those instances; a target found by its tag gets the instances
   * carrying that tag, and no pinned target widens to it.
   */
  it('startHostCommand may run commands on the pinned instances by id, and on tagged ones only for a tag target', async () => {
    const withTargets = await withOptionalParams();
    const statements =
      resource<Role>(roleId('startHostCommand'), 'AWS::IAM::Role', withTargets).Policies?.flatMap(
        (p) => p.PolicyDocument.Statement,
      ) ?? [];
    expect(statements.slice(1)).toEqual([
      {
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [sub(`arn:\${AWS::Partition}:ssm:\${AWS::Region}::document/AWS-RunShellScript`)],
      },
      {
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [
          sub(`arn:\${AWS::Partition}:ec2:\${AWS::Region}:\${AWS::AccountId}:instance/i-0123456789abcdef0`),
        ],
      },
      {
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [sub(`arn:\${AWS::Partition}:ec2:\${AWS::Region}:\${AWS::AccountId}:instance/*`)],
        Condition: { StringEquals: { 'ssm:resourceTag/kennel-backup-target': ['db'] } },
      },
    ]);
    // Every target pinned: no tag-scoped statement at all, so no instance/* anywhere.
    const pinned = [
      { name: 'kennel-db', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
      { name: 'kennel-managed', instanceIds: ['mi-0123456789abcdef0'], database: 'kennel_prod' },
    ];
    const values: Record<string, string> = {
      'param:backupTargets': JSON.stringify(pinned),
      'sls:stage': STAGE,
      'param:excludedTables': '',
      'param:hostCommandTimeoutSeconds': '3600',
    };
    const onlyPinned = (await paramOf('sendCommandStatements', values)) as Statement[];
    expect(onlyPinned.slice(1)).toEqual([
      {
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [
          sub(`arn:\${AWS::Partition}:ec2:\${AWS::Region}:\${AWS::AccountId}:instance/i-0123456789abcdef0`),
          sub(
            `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:managed-instance/mi-0123456789abcdef0`,
          ),
        ],
      },
    ]);
  }, 240_000);

  it('no role or policy grants a wildcard action, or any resource except for unscopable actions', () => {
    const documents = [
      ...ofType('AWS::IAM::Role').flatMap(([id, r]) =>
        ((r.Properties as Role).Policies ?? []).map((p) => [id, p.PolicyDocument] as const),
      ),
      ...[...ofType('AWS::IAM::ManagedPolicy'), ...ofType('AWS::S3::BucketPolicy')].map(
        ([id, r]) => [id, (r.Properties as { PolicyDocument: PolicyDocument }).PolicyDocument] as const,
      ),
    ];
    expect(documents.map(([id]) => id)).toEqual(
      expect.arrayContaining([
        ...FUNCTION_NAMES.map((fn) => roleId(fn)),
        ...STATE_MACHINES.map((m) => `${m.id}Role`),
        'HostBackupPolicy',
        'HostRestorePolicy',
        'HostCommandOutputPolicy',
        'BackupBucketPolicy',
      ]),
    );
    const problems: string[] = [];
    const denials: string[] = [];
    for (const [id, document] of documents) {
      for (const s of document.Statement) {
        // A Deny grants nothing, and must cover every action and object it guards
        // (DenyInsecureTransport names s3:* and the whole bucket on purpose).
        if (s.Effect === 'Deny') {
          denials.push(`${id}: ${s.Sid ?? '(no Sid)'}`);
          continue;
        }
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
    expect(denials).toEqual(
      expect.arrayContaining([
        'BackupBucketPolicy: DenyInsecureTransport',
        'BackupBucketPolicy: ConfigurationReadableOnlyByItsRoles',
      ]),
    );
  });

  it('only the two functions that connect to PostgreSQL run in the VPC, with the managed policy for its network interfaces', () => {
    const inVpc: FunctionName[] = ['restoreTest', 'checkRestore'];
    for (const fn of FUNCTION_NAMES) {
      const lambda = resource<LambdaFunction>(`${logicalId(fn)}LambdaFunction`, 'AWS::Lambda::Function');
      const role = resource<Role>(roleId(fn), 'AWS::IAM::Role');
      if (inVpc.includes(fn)) {
        expect(lambda.VpcConfig, fn).toEqual({ SubnetIds: SUBNETS, SecurityGroupIds: [SECURITY_GROUP] });
        expect(role.ManagedPolicyArns, fn).toEqual([
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

  const startedAt = '2026-11-26T02:00:00Z';
  const databaseManifest = (kind: (typeof DATABASE_KINDS)[number]) =>
    manifestKey(
      archiveKey(
        kind,
        'kennel-db',
        'kennel_prod',
        startedAt,
        archiveFileName('kennel_prod', kind, '20261126T020000Z_1a2b3c4d', 'zstd'),
      ),
    );

  it.each(DATABASE_KINDS)('planRestore may list and read the %s catalog', (kind) => {
    expect(mayList('planRestore', kindPrefix(kind, 'kennel-db', 'kennel_prod'))).toBe(true);
    expect(mayOnObject('planRestore', 's3:GetObject', databaseManifest(kind))).toBe(true);
  });

  it("planRestore may not list or read the files' catalogs, configuration secrets above all", () => {
    expect(mayList('planRestore', 'configuration/kennel-db/')).toBe(false);
    expect(mayOnObject('planRestore', 's3:GetObject', 'configuration/kennel-db/2026/11/26/x.tar.zst')).toBe(
      false,
    );
    // The check itself can say yes: verifyArchive reads configuration archives.
    expect(mayOnObject('verifyArchive', 's3:GetObject', 'configuration/kennel-db/2026/11/26/x.tar.zst')).toBe(
      true,
    );
  });

  const filesManifest = (kind: (typeof FILE_KINDS)[number]) =>
    manifestKey(
      archiveKey(
        kind,
        'kennel-db',
        null,
        startedAt,
        tarballFileName('kennel-db', kind, '20261126T031500Z_5e6f7a8b', 'zstd'),
      ),
    );

  it.each(FILE_KINDS)('planFilesRestore may list and read the %s catalog', (kind) => {
    expect(mayList('planFilesRestore', kindPrefix(kind, 'kennel-db', null))).toBe(true);
    expect(mayOnObject('planFilesRestore', 's3:GetObject', filesManifest(kind))).toBe(true);
  });

  it.each(DATABASE_KINDS)('planFilesRestore may not list or read the %s catalog', (kind) => {
    expect(mayList('planFilesRestore', kindPrefix(kind, 'kennel-db', 'kennel_prod'))).toBe(false);
    expect(mayOnObject('planFilesRestore', 's3:GetObject', databaseManifest(kind))).toBe(false);
    // The same checks say yes for the database family's planner.
    expect(mayList('planRestore', kindPrefix(kind, 'kennel-db', 'kennel_prod'))).toBe(true);
    expect(mayOnObject('planRestore', 's3:GetObject', databaseManifest(kind))).toBe(true);
  });

  it("only the drills' report stages may write a drill's report, no one may delete it, and no lifecycle rule expires it", () => {
    const reports = ['json', 'md'].map((extension) =>
      drillReportKey('2026-11-29T05:00:00Z', '20261129T050000Z_1a2b3c4d', extension as 'json' | 'md'),
    );
    expect(reports).toEqual([
      'reports/drills/2026/11/29/20261129T050000Z_1a2b3c4d.json',
      'reports/drills/2026/11/29/20261129T050000Z_1a2b3c4d.md',
    ]);
    const hostPolicies = ['HostBackupPolicy', 'HostRestorePolicy'].map(
      (id) =>
        [
          id,
          resource<{ PolicyDocument: PolicyDocument }>(id, 'AWS::IAM::ManagedPolicy').PolicyDocument,
        ] as const,
    );
    for (const key of reports) {
      expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:PutObject', key))).toEqual([
        'reportDrill',
        'reportRecoveryDrill',
      ]);
      expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:DeleteObject', key))).toEqual([]);
      for (const [id, document] of hostPolicies) {
        expect(allowsOnObject(document.Statement, 's3:PutObject', key), id).toBe(false);
        expect(allowsOnObject(document.Statement, 's3:DeleteObject', key), id).toBe(false);
      }
    }
    // The same checks say yes where a grant exists: a backup's manifest, for the host and verifyArchive.
    const manifest = databaseManifest('full');
    expect(allowsOnObject(hostPolicies[0]?.[1].Statement ?? [], 's3:PutObject', manifest)).toBe(true);
    expect(mayOnObject('verifyArchive', 's3:PutObject', manifest)).toBe(true);
    expect(mayOnObject('reportDrill', 's3:PutObject', manifest)).toBe(false);
    // Reports are the audit record: no lifecycle rule reaches reports/ (each rule names its prefix).
    const { LifecycleConfiguration } = resource<{ LifecycleConfiguration: { Rules: { Prefix?: string }[] } }>(
      'BackupBucket',
      'AWS::S3::Bucket',
    );
    expect(LifecycleConfiguration.Rules.filter((r) => reports[0]?.startsWith(r.Prefix ?? ''))).toEqual([]);
  });

  it("only the physical record stages may write a pgBackRest backup's record, and they may touch nothing else", () => {
    const record = physicalRecordKey('kennel-db', startedAt, '20261126T020000Z_1a2b3c4d');
    expect(record).toBe('catalog/pgbackrest/kennel-db/2026/11/26/20261126T020000Z_1a2b3c4d.json');
    const writers: FunctionName[] = ['recordPhysicalBackup', 'recordPhysicalExpiry'];
    expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:PutObject', record))).toEqual(writers);
    // PlanBackup reads them (an incremental's base) and writes nothing there.
    expect(mayOnObject('planBackup', 's3:GetObject', record)).toBe(true);
    expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:DeleteObject', record))).toEqual([]);
    for (const id of ['HostBackupPolicy', 'HostRestorePolicy']) {
      const { Statement } = resource<{ PolicyDocument: PolicyDocument }>(
        id,
        'AWS::IAM::ManagedPolicy',
      ).PolicyDocument;
      expect(allowsOnObject(Statement, 's3:PutObject', record), id).toBe(false);
    }
    for (const fn of writers) {
      expect(mayList(fn, 'catalog/pgbackrest/kennel-db/')).toBe(true);
      expect(mayOnObject(fn, 's3:GetObject', record)).toBe(true);
      // Not the archives, not their manifests, not pgBackRest's repository.
      expect(mayOnObject(fn, 's3:GetObject', databaseManifest('full'))).toBe(false);
      expect(mayOnObject(fn, 's3:PutObject', databaseManifest('full'))).toBe(false);
      expect(mayOnObject(fn, 's3:GetObject', 'pgbackrest/kennel-db/backup/kennel-db/backup.info')).toBe(
        false,
      );
      expect(mayList(fn, 'database/')).toBe(false);
    }
  });

  it('verifyArchive may read a safety dump and rewrite its manifest with the verdict', () => {
    const manifest = databaseManifest('safety');
    expect(manifest).toMatch(/^database\/safety\/kennel-db\/kennel_prod\/2026\/11\/26\/.+\.manifest\.json$/);
    expect(mayList('verifyArchive', kindPrefix('safety', 'kennel-db', 'kennel_prod'))).toBe(true);
    expect(mayOnObject('verifyArchive', 's3:GetObject', manifest.replace(/\.manifest\.json$/, ''))).toBe(
      true,
    );
    expect(mayOnObject('verifyArchive', 's3:GetObject', manifest)).toBe(true);
    expect(mayOnObject('verifyArchive', 's3:PutObject', manifest)).toBe(true);
  });

  /** One archive of every kind, as keys.ts lays them out (the manifest is `manifestKey` of it). */
  const ARCHIVES: [string, string][] = [
    ...DATABASE_KINDS.map(
      (kind) => [kind, databaseManifest(kind).replace(/\.manifest\.json$/, '')] as [string, string],
    ),
    ...FILE_KINDS.map(
      (kind) => [kind, filesManifest(kind).replace(/\.manifest\.json$/, '')] as [string, string],
    ),
  ];
  /** The functions that read the catalog (manifests) and have no use for an archive's bytes. */
  const CATALOG_READERS: FunctionName[] = [
    'planRestore',
    'planFilesRestore',
    'planDrill',
    'planCleanUp',
    'planVerification',
    'planMonitoring',
    'pruneBackups',
    'restoreTest',
    'checkRestore',
  ];

  it.each(ARCHIVES)(
    'no function but verifyArchive may read a %s archive; the catalog readers read its manifest',
    (kind, archive) => {
      expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:GetObject', archive))).toEqual([
        'verifyArchive',
      ]);
      const family = (FILE_KINDS as readonly string[]).includes(kind)
        ? ['planFilesRestore', 'planVerification', 'planMonitoring', 'pruneBackups']
        : CATALOG_READERS.filter((fn) => fn !== 'planFilesRestore');
      expect(CATALOG_READERS.filter((fn) => mayOnObject(fn, 's3:GetObject', manifestKey(archive)))).toEqual(
        family,
      );
    },
  );

  it.each(ARCHIVES)(
    'verifyArchive may write a %s manifest and never the archive; only pruneBackups may delete either',
    (kind, archive) => {
      const writers = (key: string) => FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:PutObject', key));
      expect(writers(archive)).toEqual([]);
      expect(writers(manifestKey(archive))).toEqual(
        (DATABASE_KINDS as readonly string[]).includes(kind)
          ? ['verifyArchive', 'restoreTest']
          : ['verifyArchive'],
      );
      for (const key of [archive, manifestKey(archive)])
        expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:DeleteObject', key))).toEqual([
          'pruneBackups',
        ]);
      // Nor may the DB host delete one (its policies: create-only uploads, reads to restore, command output).
      for (const id of ['HostBackupPolicy', 'HostRestorePolicy', 'HostCommandOutputPolicy']) {
        const { Statement } = resource<{ PolicyDocument: PolicyDocument }>(
          id,
          'AWS::IAM::ManagedPolicy',
        ).PolicyDocument;
        expect(allowsOnObject(Statement, 's3:DeleteObject', archive), id).toBe(false);
      }
    },
  );

  it("no function may read a WAL segment (it holds rows); the WAL checks read archive.info and the timelines' history", () => {
    // The keys as pgBackRest writes them and the WAL checks read them.
    const archive = 'pgbackrest/kennel-db/archive/kennel-db';
    const prefix = pgbackrestArchivePrefix('kennel-db', '15-1');
    expect(prefix).toBe(`${archive}/15-1/`);
    const segment = `${prefix}0000000100000000/000000010000000000000001-0123456789abcdef0123456789abcdef01234567.zst`;
    const history = `${prefix}${historyFileName(2)}`;
    expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:GetObject', segment))).toEqual([]);
    expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:GetObject', history))).toEqual([
      'checkWalContinuity',
      'planPointInTimeRecovery',
      'planRecoveryDrill',
    ]);
    expect(FUNCTION_NAMES.filter((fn) => mayOnObject(fn, 's3:GetObject', `${archive}/archive.info`))).toEqual(
      ['planPointInTimeRecovery', 'planRecoveryDrill'],
    );
    // They still list the segments, which is how they prove there is no gap.
    expect(mayList('checkWalContinuity', `${archive}/15-1/0000000100000000/`)).toBe(true);
  });

  it("the restores' own stages can change nothing in the bucket; checkRestore reads manifests only, reportRestore nothing", () => {
    const actions = (fn: FunctionName) =>
      roleStatements(roleId(fn))
        .slice(1) // the log statement
        .flatMap((s) => asArray(s.Action));
    // The catalog, and the records of the archives' creation its manifests must match.
    expect(actions('planRestore').filter((a) => a.startsWith('s3:'))).toEqual([
      's3:ListBucket',
      's3:GetObject',
      's3:GetObject',
    ]);
    expect(actions('planFilesRestore')).toEqual([
      's3:ListBucket',
      's3:GetObject',
      's3:GetObject',
      'kms:Decrypt',
    ]);
    expect(actions('checkRestore').filter((a) => a.startsWith('s3:'))).toEqual([
      's3:ListBucket',
      's3:GetObject',
    ]);
    expect(mayOnObject('checkRestore', 's3:GetObject', databaseManifest('full'))).toBe(true);
    expect(
      mayOnObject('checkRestore', 's3:GetObject', databaseManifest('full').replace(/\.manifest\.json$/, '')),
    ).toBe(false);
    expect(actions('reportRestore')).toEqual([]);
  });

  it("the DB host's policy may only upload under the host prefixes, encrypted with the bucket key", () => {
    const policy = resource<{ PolicyDocument: PolicyDocument }>(
      'HostBackupPolicy',
      'AWS::IAM::ManagedPolicy',
    );
    expect(policy.PolicyDocument.Statement).toEqual([
      {
        Sid: 'PutBackups',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:AbortMultipartUpload'],
        Resource: objects,
      },
      // The check's probe: written and removed under its own prefix, which holds nothing else.
      {
        Sid: 'ProbeWrites',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:DeleteObject'],
        Resource: sub(`\${BackupBucket.Arn}/check/*`),
      },
      { Sid: 'EncryptBackups', ...bucketKey('kms:GenerateDataKey', 'kms:Decrypt') },
    ]);
    expect(template.Outputs.HostBackupPolicyArn?.Value).toEqual({ Ref: 'HostBackupPolicy' });
  });

  /**
   * A restore on a new host (after a disaster) has no local copies: the host
   * fetches the archive with its own role. Configuration archives only when the
   * deployment names that role (`--param hostRoleArn`), since the bucket policy
   * must exempt it as well.
   */
  describe("the DB host's restore policy", () => {
    let withHostRole: Template;
    beforeAll(async () => {
      withHostRole = await withOptionalParams();
    }, 240_000);

    const hostRestoreStatements = (from: Template) =>
      resource<{ PolicyDocument: PolicyDocument }>('HostRestorePolicy', 'AWS::IAM::ManagedPolicy', from)
        .PolicyDocument.Statement;
    const exempt = (from: Template) =>
      resource<{ PolicyDocument: PolicyDocument }>(
        'BackupBucketPolicy',
        'AWS::S3::BucketPolicy',
        from,
      ).PolicyDocument.Statement.find((s) => s.Sid === 'ConfigurationReadableOnlyByItsRoles')?.Condition
        ?.ArnNotEquals?.['aws:PrincipalArn'];
    const functionReaders = [
      getAtt(roleId('verifyArchive')),
      getAtt(roleId('pruneBackups')),
      getAtt(roleId('planFilesRestore')),
      getAtt(roleId('planVerification')),
      getAtt(roleId('planMonitoring')),
      getAtt(roleId('writeAuditReport')),
    ];
    const readBackups = (...prefixes: string[]): Statement => ({
      Sid: 'ReadBackups',
      Effect: 'Allow',
      Action: ['s3:GetObject', 's3:GetObjectVersion'],
      Resource: prefixes.map((prefix) => sub(`\${BackupBucket.Arn}/${prefix}/*`)),
    });

    it('without hostRoleArn may read database, application and static archives, never configuration', () => {
      expect(hostRestoreStatements(template)).toEqual([
        readBackups('database', 'application', 'static'),
        { Sid: 'DecryptBackups', ...bucketKey('kms:Decrypt') },
      ]);
      expect(exempt(template)).toEqual(functionReaders);
      expect(template.Outputs.HostRestorePolicyArn?.Value).toEqual({ Ref: 'HostRestorePolicy' });
    });

    it('with hostRoleArn may read configuration archives too, and the bucket policy exempts that role and no other', () => {
      expect(hostRestoreStatements(withHostRole)).toEqual([
        readBackups('database', 'configuration', 'application', 'static'),
        { Sid: 'DecryptBackups', ...bucketKey('kms:Decrypt') },
      ]);
      expect(exempt(withHostRole)).toEqual([...functionReaders, HOST_ROLE_ARN]);
      // The role is named in the exemption and nowhere else: the param grants it nothing by itself.
      expect(JSON.stringify(withHostRole).split(HOST_ROLE_ARN)).toHaveLength(2);
    });

    it('refuses to package with a hostRoleArn that is not a role ARN', async () => {
      const instanceProfile = 'arn:aws:iam::123456789012:instance-profile/kennel-db-host';
      await expect(packagedTemplate([`hostRoleArn=${instanceProfile}`])).rejects.toThrow(
        `The hostRoleArn param "${instanceProfile}" is not an IAM role ARN. Give the ARN of the DB host's instance role`,
      );
    });
  });

  /**
   * pgBackRest keeps its repository itself: it lists, reads, writes and (expire)
   * deletes under pgbackrest/<target>/ and nowhere else (every request it made
   * against the local S3, stanza-create to verify, was there). The host's grants
   * elsewhere stay create-only (HostBackupPolicy above).
   */
  describe("the DB host's repository policy", () => {
    let withRepository: Template;
    beforeAll(async () => {
      withRepository = await withOptionalParams();
    }, 240_000);
    const repositoryPolicy = () =>
      resource<{ Description: string; PolicyDocument: PolicyDocument }>(
        'HostRepositoryPolicy',
        'AWS::IAM::ManagedPolicy',
        withRepository,
      );
    const segment =
      'pgbackrest/kennel-db/archive/kennel-db/15-1/0000000100000000/000000010000000000000001-0123456789abcdef0123456789abcdef01234567.zst';

    it('is exactly what pgBackRest needs under pgbackrest/<target>/, for each pgBackRest target', () => {
      expect(repositoryPolicy().PolicyDocument.Statement).toEqual([
        {
          Sid: 'ListRepositories',
          Effect: 'Allow',
          Action: ['s3:ListBucket'],
          Resource: getAtt('BackupBucket'),
          Condition: { StringLike: { 's3:prefix': ['pgbackrest/kennel-db/*'] } },
        },
        {
          Sid: 'KeepRepositories',
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
          Resource: [sub(`\${BackupBucket.Arn}/pgbackrest/kennel-db/*`)],
        },
        { Sid: 'EncryptRepositories', ...bucketKey('kms:GenerateDataKey', 'kms:Decrypt') },
      ]);
      expect(withRepository.Outputs.HostRepositoryPolicyArn?.Value).toEqual({ Ref: 'HostRepositoryPolicy' });
    });

    it("reaches its own target's repository and nothing else: no other target's, no backup prefix, no version", () => {
      const statements = repositoryPolicy().PolicyDocument.Statement;
      for (const action of ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']) {
        expect(allowsOnObject(statements, action, segment), action).toBe(true);
        expect(allowsOnObject(statements, action, 'pgbackrest/kennel-replica/backup/x'), action).toBe(false);
        expect(allowsOnObject(statements, action, 'pgbackrest/kennel-dbx/backup/x'), action).toBe(false);
        expect(allowsOnObject(statements, action, databaseManifest('full')), action).toBe(false);
        expect(allowsOnObject(statements, action, 'configuration/kennel-db/x.tar.zst'), action).toBe(false);
      }
      const actions = statements.flatMap((s) => asArray(s.Action));
      // A delete on the versioned bucket only hides a version: the host can remove none for good.
      expect(actions.filter((a) => a.includes('Version') || a.includes('*'))).toEqual([]);
      const listed = asArray(statements[0]?.Condition?.StringLike?.['s3:prefix'] as string[]);
      expect(listed.some((p) => globMatches(p, 'pgbackrest/kennel-db/archive/kennel-db/'))).toBe(true);
      expect(listed.some((p) => globMatches(p, 'pgbackrest/'))).toBe(false);
      expect(listed.some((p) => globMatches(p, 'database/'))).toBe(false);
      // The backup policy is unchanged: create-only (a delete under the check's probe prefix alone), nothing under pgbackrest/.
      const backup = resource<{ PolicyDocument: PolicyDocument }>(
        'HostBackupPolicy',
        'AWS::IAM::ManagedPolicy',
        withRepository,
      ).PolicyDocument.Statement;
      expect(allowsOnObject(backup, 's3:PutObject', segment)).toBe(false);
      expect(allowsOnObject(backup, 's3:DeleteObject', segment)).toBe(false);
      expect(backup.flatMap((s) => asArray(s.Action))).toEqual([
        's3:PutObject',
        's3:AbortMultipartUpload',
        's3:PutObject',
        's3:DeleteObject',
        'kms:GenerateDataKey',
        'kms:Decrypt',
      ]);
    });

    it('does not exist without a pgBackRest target', () => {
      expect(template.Resources.HostRepositoryPolicy).toBeUndefined();
      expect(template.Outputs.HostRepositoryPolicyArn).toBeUndefined();
      expect(withRepository.Resources.HostRepositoryPolicy).toBeDefined();
    });

    it('lets planMonitoring list the repositories (their size) and read none of their objects', () => {
      const statements =
        resource<Role>(roleId('planMonitoring'), 'AWS::IAM::Role', withRepository).Policies?.flatMap(
          (p) => p.PolicyDocument.Statement,
        ) ?? [];
      const list = statements.find((s) => asArray(s.Action).includes('s3:ListBucket'));
      expect(list?.Condition?.StringLike?.['s3:prefix']).toEqual([...prefixes, 'pgbackrest/kennel-db/*']);
      expect(allowsOnObject(statements, 's3:GetObject', segment)).toBe(false);
    });
  });

  it("the DB host's SSM agent may write command output under host-output/ only, encrypted with the bucket key, and to no log", () => {
    const policy = resource<{ PolicyDocument: PolicyDocument }>(
      'HostCommandOutputPolicy',
      'AWS::IAM::ManagedPolicy',
    );
    expect(policy.PolicyDocument.Statement).toEqual([
      {
        Sid: 'WriteCommandOutput',
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: sub(`\${BackupBucket.Arn}/host-output/*`),
      },
      {
        Sid: 'ReadOutputBucketEncryption',
        Effect: 'Allow',
        Action: ['s3:GetEncryptionConfiguration'],
        Resource: getAtt('BackupBucket'),
      },
      { Sid: 'EncryptCommandOutput', ...bucketKey('kms:GenerateDataKey') },
    ]);
    expect(template.Outputs.HostCommandOutputPolicyArn?.Value).toEqual({ Ref: 'HostCommandOutputPolicy' });
    expect(
      Object.values(template.Resources)
        .filter((r) => r.Type === 'AWS::Logs::LogGroup')
        .map((r) => (r.Properties as { LogGroupName: string }).LogGroupName),
    ).not.toContain(`/kennel-backup/${STAGE}/host-commands`);
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

  it('planRestore has nearly the minute its Task allows to read the catalog', () => {
    expect(resource<LambdaFunction>('PlanRestoreLambdaFunction', 'AWS::Lambda::Function').Timeout).toBe(55);
  });

  it('planPointInTimeRecovery has nearly the two minutes its Task allows to list the WAL', () => {
    expect(
      resource<LambdaFunction>('PlanPointInTimeRecoveryLambdaFunction', 'AWS::Lambda::Function').Timeout,
    ).toBe(110);
  });

  it('planVerification has nearly the two minutes its Task allows to read every manifest once', () => {
    expect(resource<LambdaFunction>('PlanVerificationLambdaFunction', 'AWS::Lambda::Function').Timeout).toBe(
      110,
    );
  });

  it('verifyArchive has the time and memory to stream a large archive', () => {
    const lambda = resource<LambdaFunction>('VerifyArchiveLambdaFunction', 'AWS::Lambda::Function');
    expect(lambda.Timeout).toBe(900);
    expect(lambda.MemorySize).toBe(1024);
  });

  it("no task gives up on its function before the function's own timeout", () => {
    const problems: string[] = [];
    const checked = new Set<string>();
    for (const { name } of STATE_MACHINES) {
      for (const [state, task] of allStates(built(name).States)) {
        const fn = (task.Resource as { 'Fn::GetAtt'?: [FunctionName, string] } | undefined)?.[
          'Fn::GetAtt'
        ]?.[0];
        if (!fn) continue;
        checked.add(name);
        const { Timeout } = resource<LambdaFunction>(
          `${logicalId(fn)}LambdaFunction`,
          'AWS::Lambda::Function',
        );
        const waits = (task as AslState & { TimeoutSeconds?: number }).TimeoutSeconds;
        if (waits === undefined || waits < Timeout)
          problems.push(
            `${name} ${state}: waits ${waits ?? 'forever'} s for ${fn}, which may run ${Timeout} s`,
          );
      }
    }
    expect(problems).toEqual([]);
    // Every workflow was looked at, the files restore's included.
    expect(new Set(checked)).toEqual(new Set(Object.keys(WORKFLOWS)));
  });

  it("every function's environment is a complete configuration for shared/core/config.ts", () => {
    for (const fn of FUNCTION_NAMES) {
      const { Variables } = resource<LambdaFunction>(
        `${logicalId(fn)}LambdaFunction`,
        'AWS::Lambda::Function',
      ).Environment;
      expect(Variables.BACKUP_BUCKET).toEqual({ Ref: 'BackupBucket' });
      expect(Variables.ALERT_TOPIC_ARN).toEqual({ Ref: 'AlertTopic' });
      // A string, as the environment holds it: the param's default.
      expect(Variables.DISK_USAGE_ALERT_PERCENT).toBe('80');
      const config = deployedConfig(fn);
      expect(config.STAGE).toBe(STAGE);
      expect(config.BACKUP_TARGETS).toEqual([
        expect.objectContaining({
          name: 'kennel-db',
          tag: { key: 'kennel-backup-target', value: 'db' },
          database: 'kennel_prod',
        }),
      ]);
      expect(config.EXCLUDED_TABLES).toEqual([
        { schema: 'public', name: 'audit_logs' },
        { schema: 'public', name: 'session_logs' },
      ]);
      expect(config.HOST_COMMAND_TIMEOUT_SECONDS).toBe(3600);
      expect(config.ALERT_WEBHOOK_PARAMETER).toBe(`/kennel-backup/${STAGE}/alert-webhook-url`);
      expect(config.RESTORE_CHECK_DATABASE_URL_PARAMETER).toBe(
        `/kennel-backup/${STAGE}/restore-check-database-url`,
      );
      expect(config.ALERT_TOPIC_ARN).toBe(TOPIC_ARN);
      expect(config.DISK_USAGE_ALERT_PERCENT).toBe(80);
      // The bucket's own key, for the repository pgBackRest writes (repo1-s3-kms-key-id).
      expect(Variables.BACKUP_KMS_KEY_ID).toEqual(getAtt('BackupKey'));
      expect(config.BACKUP_KMS_KEY_ID).toBe(KEY_ARN);
    }
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
    // The restore's swap, and the application's stop and start commands.
    expect(entries).toContain('host/database-swap.sh');
    expect(entries).toContain('host/run-commands.sh');
    // The daily verification's local-copy check, and the monitoring's disk measurement.
    expect(entries).toContain('host/check-local-copies.sh');
    expect(entries).toContain('host/disk-usage.sh');
    for (const script of HOST_SCRIPTS) expect(entries).toContain(`host/${script}.sh`);
    // s3_put's uploader, rendered into the scripts that upload.
    expect(entries).toContain('host/s3-put.py');
    // The package patterns are globs: every script in host/ ships, none is forgotten.
    const scripts = readdirSync(join(ROOT, 'host')).filter((f) => f.endsWith('.sh') || f.endsWith('.py'));
    expect(entries.filter((e) => e.startsWith('host/')).sort()).toEqual(
      scripts.map((f) => `host/${f}`).sort(),
    );
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

/**
 * The vault (serverless/vault.cjs): the backup stack's replication and read
 * grants (the second packaging: a vault in another region and account), and
 * the vault's own stack (serverless-vault.yml), packaged in its region.
 */
describe('the vault', () => {
  const vaultModule = createRequire(import.meta.url)('../serverless/vault.cjs') as Record<
    string,
    (options: { resolveVariable: (name: string) => Promise<unknown> }) => Promise<unknown>
  >;
  const vaultPart = (name: string, values: Record<string, unknown>) =>
    vaultModule[name]?.({ resolveVariable: async (variable) => values[variable] });
  const backupVariables = {
    'sls:stage': STAGE,
    'self:provider.region': 'us-east-1',
    'param:vaultRegion': VAULT_REGION,
    'param:vaultKeyArn': VAULT_KEY_ARN,
  };
  const vaultArn = (suffix = '') => sub(`arn:\${AWS::Partition}:s3:::${VAULT_BUCKET}${suffix}`);
  const vaultViaS3 = { StringEquals: { 'kms:ViaService': `s3.${VAULT_REGION}.amazonaws.com` } };
  const backupRoot = sub(`arn:\${AWS::Partition}:iam::\${AWS::AccountId}:root`);
  /** The backup bucket by its name: the replication role cannot name it by GetAtt (a circular dependency). */
  const backupBucketArn = (suffix = '') =>
    sub(`arn:\${AWS::Partition}:s3:::kennel-backup-\${AWS::AccountId}-\${AWS::Region}-${STAGE}${suffix}`);

  /** The vault stack as osls packages it (same account as the backup stack). */
  let vaultStack: Promise<Template> | undefined;
  const packagedVaultStack = () => {
    vaultStack ??= (async () => {
      const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-vault-package-'));
      packageDirs.push(dir);
      const args = ['serverless', 'package', '--config', 'serverless-vault.yml', '--stage', STAGE];
      args.push('--package', dir, '--param', `vaultRegion=${VAULT_REGION}`);
      await promisify(execFile)('npx', args, { cwd: ROOT, timeout: 120_000 });
      return JSON.parse(
        readFileSync(join(dir, 'cloudformation-template-update-stack.json'), 'utf8'),
      ) as Template;
    })();
    return vaultStack;
  };

  it("is absent by default: no replication, no vault in the functions' environment", () => {
    const bucket = resource<{ ReplicationConfiguration: unknown }>('BackupBucket', 'AWS::S3::Bucket');
    expect(bucket.ReplicationConfiguration).toEqual({ Ref: 'AWS::NoValue' });
    expect(deployedConfig('planRestore').VAULT_BUCKET).toBeUndefined();
    expect(Object.keys(template.Resources).filter((id) => id.includes('Vault'))).toEqual([]);
  });

  it('replicates every object of the backup bucket to the vault, under its key, without delete markers, within 15 minutes', async () => {
    const withVault = await withOptionalParams();
    const bucket = resource<{ ReplicationConfiguration: unknown }>(
      'BackupBucket',
      'AWS::S3::Bucket',
      withVault,
    );
    expect(bucket.ReplicationConfiguration).toEqual({
      Role: getAtt('VaultReplicationRole'),
      Rules: [
        {
          Id: 'EveryObjectToTheVault',
          Status: 'Enabled',
          Priority: 1,
          Filter: { Prefix: '' },
          DeleteMarkerReplication: { Status: 'Disabled' },
          SourceSelectionCriteria: { SseKmsEncryptedObjects: { Status: 'Enabled' } },
          Destination: {
            Bucket: sub(`arn:\${AWS::Partition}:s3:::${VAULT_BUCKET}`),
            EncryptionConfiguration: { ReplicaKmsKeyID: VAULT_KEY_ARN },
            ReplicationTime: { Status: 'Enabled', Time: { Minutes: 15 } },
            Metrics: { Status: 'Enabled', EventThreshold: { Minutes: 15 } },
            Account: VAULT_ACCOUNT,
            AccessControlTranslation: { Owner: 'Destination' },
          },
        },
      ],
    });
    expect(withVault.Outputs.VaultBucketName?.Value).toEqual(sub(VAULT_BUCKET));
    // The functions find the vault's bucket and region in their environment.
    const { Variables } = resource<LambdaFunction>(
      'PlanRestoreLambdaFunction',
      'AWS::Lambda::Function',
      withVault,
    ).Environment;
    expect([Variables.VAULT_BUCKET, Variables.VAULT_REGION]).toEqual([sub(VAULT_BUCKET), VAULT_REGION]);
  }, 240_000);

  it('the replication role holds exactly what S3 replication needs, and S3 alone for this bucket assumes it', async () => {
    const withVault = await withOptionalParams();
    const role = resource<Role & { RoleName: string; AssumeRolePolicyDocument: PolicyDocument }>(
      'VaultReplicationRole',
      'AWS::IAM::Role',
      withVault,
    );
    expect(role.RoleName).toBe(`kennel-backup-${STAGE}-vault-replication`);
    // The role names the backup bucket by the name the bucket is given.
    expect(
      resource<{ BucketName: unknown }>('BackupBucket', 'AWS::S3::Bucket', withVault).BucketName,
    ).toEqual(sub(`kennel-backup-\${AWS::AccountId}-\${AWS::Region}-${STAGE}`));
    expect(role.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Effect: 'Allow',
        Principal: { Service: 's3.amazonaws.com' },
        Action: 'sts:AssumeRole',
        Condition: {
          StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
          ArnEquals: { 'aws:SourceArn': backupBucketArn() },
        },
      },
    ]);
    expect(role.ManagedPolicyArns).toBeUndefined();
    expect(role.Policies?.flatMap((p) => p.PolicyDocument.Statement)).toEqual([
      {
        Sid: 'ReadTheReplicationConfiguration',
        Effect: 'Allow',
        Action: ['s3:GetReplicationConfiguration', 's3:ListBucket'],
        Resource: backupBucketArn(),
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
        Resource: backupBucketArn('/*'),
      },
      {
        Sid: 'WriteReplicasToTheVault',
        Effect: 'Allow',
        Action: ['s3:ReplicateObject', 's3:ReplicateTags', 's3:ObjectOwnerOverrideToBucketOwner'],
        Resource: vaultArn('/*'),
      },
      {
        Sid: 'DecryptWithTheBackupKey',
        Effect: 'Allow',
        Action: ['kms:Decrypt'],
        Resource: getAtt('BackupKey'),
        Condition: {
          StringEquals: {
            'kms:ViaService': sub(`s3.\${AWS::Region}.amazonaws.com`),
            'kms:EncryptionContext:aws:s3:arn': backupBucketArn(),
          },
        },
      },
      {
        Sid: 'EncryptWithTheVaultKey',
        Effect: 'Allow',
        Action: ['kms:Encrypt', 'kms:GenerateDataKey'],
        Resource: VAULT_KEY_ARN,
        Condition: {
          StringEquals: {
            'kms:ViaService': `s3.${VAULT_REGION}.amazonaws.com`,
            'kms:EncryptionContext:aws:s3:arn': vaultArn(),
          },
        },
      },
    ]);
  }, 240_000);

  it("the restore's readers may read the vault's manifests, the DB host its archives, and nothing else there", async () => {
    const withVault = await withOptionalParams();
    const reads = (prefixes: string[], objects: string[]): Statement[] => [
      {
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: vaultArn(),
        Condition: { StringLike: { 's3:prefix': prefixes } },
      },
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: objects.map((o) => vaultArn(`/${o}`)) },
      { Effect: 'Allow', Action: ['kms:Decrypt'], Resource: VAULT_KEY_ARN, Condition: vaultViaS3 },
    ];
    const VAULT_GRANTS: Record<string, Statement[]> = {
      // The planners check a manifest against the record of its archive's creation, there as here.
      planRestore: reads(['database/*'], ['database/*.manifest.json', 'catalog/archives/database/*']),
      checkRestore: reads(['database/*'], ['database/*.manifest.json']),
      planFilesRestore: reads(
        ['configuration/*', 'application/*', 'static/*'],
        [
          'configuration/*.manifest.json',
          'application/*.manifest.json',
          'static/*.manifest.json',
          'catalog/archives/configuration/*',
          'catalog/archives/application/*',
          'catalog/archives/static/*',
        ],
      ),
      // What it reads in the backup bucket, the WAL's listing and never a segment, in the vault.
      planPointInTimeRecovery: reads(
        ['pgbackrest/*/archive/*', 'catalog/pgbackrest/*', 'catalog/recoveries/*'],
        [
          'pgbackrest/*/archive/*/archive.info',
          'pgbackrest/*/archive/*.history',
          'catalog/pgbackrest/*',
          'catalog/recoveries/*',
        ],
      ),
    };
    const policies = Object.entries(withVault.Resources).filter(([, r]) => r.Type === 'AWS::IAM::Policy');
    expect(policies.map(([id]) => id).sort()).toEqual([
      'CheckRestoreVaultReadPolicy',
      'PlanFilesRestoreVaultReadPolicy',
      'PlanPointInTimeRecoveryVaultReadPolicy',
      'PlanRestoreVaultReadPolicy',
    ]);
    for (const [fn, grants] of Object.entries(VAULT_GRANTS)) {
      const id = `${fn[0]?.toUpperCase()}${fn.slice(1)}`;
      const policy = resource<{ Roles: unknown[]; PolicyDocument: PolicyDocument }>(
        `${id}VaultReadPolicy`,
        'AWS::IAM::Policy',
        withVault,
      );
      expect(policy.Roles).toEqual([{ Ref: `${id}IamRoleLambdaExecution` }]);
      // The vault stack names these roles (serverless-iam-roles-per-function's names) in its policies.
      expect(
        resource<{ RoleName: unknown }>(`${id}IamRoleLambdaExecution`, 'AWS::IAM::Role', withVault).RoleName,
      ).toEqual({ 'Fn::Join': ['-', ['kennel-backup', STAGE, fn, { Ref: 'AWS::Region' }, 'lambdaRole']] });
      expect(policy.PolicyDocument.Statement).toEqual(grants);
    }
    const host = resource<{ PolicyDocument: PolicyDocument }>(
      'HostVaultRestorePolicy',
      'AWS::IAM::ManagedPolicy',
      withVault,
    );
    expect(host.PolicyDocument.Statement).toEqual([
      {
        Sid: 'ReadVaultBackups',
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:GetObjectVersion'],
        Resource: BACKUP_PREFIXES.map((p) => vaultArn(`/${p}*`)),
      },
      // pgBackRest's restore, info and archive-get read the repositories' copy: list and read, nothing more.
      {
        Sid: 'ListVaultRepositories',
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: vaultArn(),
        Condition: { StringLike: { 's3:prefix': ['pgbackrest/*'] } },
      },
      {
        Sid: 'ReadVaultRepositories',
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: vaultArn('/pgbackrest/*'),
      },
      {
        Sid: 'DecryptVaultBackups',
        Effect: 'Allow',
        Action: ['kms:Decrypt'],
        Resource: VAULT_KEY_ARN,
        Condition: vaultViaS3,
      },
    ]);
    // Nothing in the stack may write or delete in the vault but the replication role, which only replicates.
    const inVault = (s: Statement) => JSON.stringify(s.Resource).includes('kennel-backup-vault-');
    const writes = Object.entries(withVault.Resources).flatMap(([id, r]) => {
      const p = r.Properties as {
        Policies?: { PolicyDocument: PolicyDocument }[];
        PolicyDocument?: PolicyDocument;
      };
      const statements = [
        ...(p.Policies ?? []).flatMap((x) => x.PolicyDocument.Statement),
        ...(r.Type.startsWith('AWS::IAM::') && p.PolicyDocument ? p.PolicyDocument.Statement : []),
      ];
      return statements
        .filter(inVault)
        .flatMap((s) => asArray(s.Action))
        .filter((a) => !['s3:ListBucket', 's3:GetObject', 's3:GetObjectVersion'].includes(a))
        .map((a) => `${id} ${a}`);
    });
    expect(writes).toEqual([
      'VaultReplicationRole s3:ReplicateObject',
      'VaultReplicationRole s3:ReplicateTags',
      'VaultReplicationRole s3:ObjectOwnerOverrideToBucketOwner',
    ]);
  }, 240_000);

  it('refuses vault params that would replicate nowhere or with the wrong key', async () => {
    const refusal = async (values: Record<string, unknown>) =>
      Promise.resolve(vaultPart('replicationConfiguration', { ...backupVariables, ...values })).then(
        () => '',
        (e: Error) => e.message,
      );
    expect(await refusal({ 'param:vaultRegion': 'us-east-1' })).toContain(
      'vaultRegion "us-east-1" is this stack\'s own region',
    );
    expect(await refusal({ 'param:vaultKeyArn': '' })).toContain('vaultKeyArn "" is not a KMS key ARN');
    expect(await refusal({ 'param:vaultKeyArn': 'alias/kennel-backup-vault' })).toContain(
      'is not a KMS key ARN',
    );
    expect(await refusal({ 'param:vaultRegion': 'eu-central-1' })).toContain(
      `vaultKeyArn is a key of ${VAULT_REGION}, not of vaultRegion eu-central-1`,
    );
    expect(await refusal({ 'param:vaultAccount': '123' })).toContain(
      'vaultAccount "123" is not a 12-digit account id',
    );
    expect(await refusal({ 'param:vaultAccount': '111111111111' })).toContain(
      `vaultKeyArn is a key of account ${VAULT_ACCOUNT}, not of vaultAccount 111111111111`,
    );
    expect(await refusal({})).toBe('');
  });

  it("the vault stack is one CloudFormation accepts, in the vault's region", async () => {
    expect(specFindings(await packagedVaultStack())).toEqual([]);
  }, 120_000);

  it('the vault bucket is versioned, locked in governance mode for the point-in-time window and a week, encrypted with its own key, private, and outlives the stack', async () => {
    const stack = await packagedVaultStack();
    const bucket = resource<Record<string, unknown>>('VaultBucket', 'AWS::S3::Bucket', stack);
    expect(bucket.resource.DeletionPolicy).toBe('Retain');
    expect(bucket.BucketName).toEqual(sub(`kennel-backup-vault-\${AWS::AccountId}-\${AWS::Region}-${STAGE}`));
    expect(bucket.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(bucket.ObjectLockEnabled).toBe(true);
    expect(bucket.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: POINT_IN_TIME_DAYS + 7 } },
    });
    expect(bucket.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [
        {
          ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: getAtt('VaultKey') },
          BucketKeyEnabled: true,
        },
      ],
    });
    expect(bucket.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    const compliance = (await vaultPart('vaultStackResources', {
      'sls:stage': STAGE,
      'param:vaultRegion': VAULT_REGION,
      'param:backupRegion': 'us-east-1',
      'param:objectLockMode': 'compliance',
      'param:keyBreakGlassRole': BREAK_GLASS_ROLE,
    })) as Template;
    expect(
      resource<{ ObjectLockConfiguration: unknown }>('VaultBucket', 'AWS::S3::Bucket', compliance)
        .ObjectLockConfiguration,
    ).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: POINT_IN_TIME_DAYS + 7 } },
    });
    expect(stack.Outputs.VaultKeyArn?.Value).toEqual(getAtt('VaultKey'));
  }, 120_000);

  it("expires each kind's copy by age (no prune reaches the vault), after its retention and the point-in-time window, and never a current version of pgBackRest's repository", async () => {
    const stack = await packagedVaultStack();
    const { Rules } = resource<{ LifecycleConfiguration: { Rules: Record<string, unknown>[] } }>(
      'VaultBucket',
      'AWS::S3::Bucket',
      stack,
    ).LifecycleConfiguration;
    for (const kind of [...DATABASE_KINDS, ...FILE_KINDS]) {
      const rule = Rules.find((r) => r.Prefix === `${KIND_PREFIX[kind]}/`);
      expect(rule, kind).toMatchObject({ ExpirationInDays: RETENTION[kind].s3Days + POINT_IN_TIME_DAYS });
      // S3 takes an expiry only after every transition of its rule.
      for (const t of (rule?.Transitions ?? []) as { TransitionInDays: number }[])
        expect(t.TransitionInDays, kind).toBeLessThan(RETENTION[kind].s3Days + POINT_IN_TIME_DAYS);
    }
    // Under pgbackrest/ only the versions pgBackRest replaced go (once unlocked), as in the backup bucket.
    for (const rule of Rules.filter((r) => reachesPrefix(r as { Prefix: string }, PGBACKREST_PREFIX))) {
      expect(rule).not.toHaveProperty('ExpirationInDays');
      expect(rule).not.toHaveProperty('Transitions');
      expect(rule).toHaveProperty('NoncurrentVersionExpiration');
    }
  }, 120_000);

  it('only replication writes to the vault: no one deletes, overwrites, relocks or bypasses a lock there', async () => {
    const stack = await packagedVaultStack();
    const policy = resource<{ PolicyDocument: PolicyDocument }>(
      'VaultBucketPolicy',
      'AWS::S3::BucketPolicy',
      stack,
    );
    const statement = (sid: string) => policy.PolicyDocument.Statement.find((s) => s.Sid === sid);
    expect(statement('NoOneWritesOrDeletes')).toEqual({
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
      Resource: sub(`\${VaultBucket.Arn}/*`),
    });
    const replicationRole = sub(
      `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/kennel-backup-${STAGE}-vault-replication`,
    );
    expect(statement('OnlyTheReplicationRoleReplicates')).toMatchObject({
      Effect: 'Deny',
      Principal: '*',
      Action: ['s3:ReplicateObject', 's3:ReplicateDelete', 's3:ReplicateTags'],
      Condition: { ArnNotEquals: { 'aws:PrincipalArn': replicationRole } },
    });
    expect(statement('DenyInsecureTransport')).toMatchObject({
      Effect: 'Deny',
      Condition: { Bool: { 'aws:SecureTransport': 'false' } },
    });
    // The readers the backup stack grants, by the names serverless-iam-roles-per-function gives their roles.
    expect(statement('RestoresReadFromTheBackupAccount')?.Condition).toEqual({
      ArnEquals: {
        'aws:PrincipalArn': [
          'planRestore',
          'checkRestore',
          'planFilesRestore',
          'planPointInTimeRecovery',
        ].map((fn) =>
          sub(
            `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/kennel-backup-${STAGE}-${fn}-us-east-1-lambdaRole`,
          ),
        ),
      },
    });
    expect(
      policy.PolicyDocument.Statement.filter((s) => s.Effect === 'Allow').flatMap((s) => asArray(s.Action)),
    ).toEqual([
      's3:ReplicateObject',
      's3:ReplicateTags',
      's3:ObjectOwnerOverrideToBucketOwner',
      's3:GetBucketVersioning',
      's3:GetBucketObjectLockConfiguration',
      's3:ListBucket',
      's3:GetObject',
    ]);
  }, 120_000);

  it("the vault key is administered through IAM, used through S3 by replication and the restore's readers, and disabled or deleted by the break-glass role alone", async () => {
    const stack = await packagedVaultStack();
    const key = resource<{ EnableKeyRotation: boolean; KeyPolicy: PolicyDocument }>(
      'VaultKey',
      'AWS::KMS::Key',
      stack,
    );
    expect(key.EnableKeyRotation).toBe(true);
    expect(key.resource.DeletionPolicy).toBe('Retain');
    const statements = Object.fromEntries(key.KeyPolicy.Statement.map((s) => [s.Sid, s]));
    expect(Object.keys(statements)).toEqual([
      'AdministerThroughIam',
      'UseThroughS3Only',
      'ReplicasEncryptedByTheReplicationRole',
      'ReplicasReadByTheRestoreReaders',
      'OnlyBreakGlassRoleDisablesOrDeletes',
    ]);
    // Administration never includes use, as the backup key's.
    const backupKey = resource<{ KeyPolicy: PolicyDocument }>('BackupKey', 'AWS::KMS::Key');
    expect(statements.AdministerThroughIam?.Action).toEqual(
      backupKey.KeyPolicy.Statement.find((s) => s.Sid === 'AdministerThroughIam')?.Action,
    );
    expect(statements.ReplicasEncryptedByTheReplicationRole).toMatchObject({
      Principal: { AWS: backupRoot },
      Action: ['kms:Encrypt', 'kms:GenerateDataKey'],
      Condition: {
        StringEquals: { 'kms:ViaService': sub(`s3.\${AWS::Region}.amazonaws.com`) },
        ArnEquals: {
          'aws:PrincipalArn': sub(
            `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/kennel-backup-${STAGE}-vault-replication`,
          ),
        },
      },
    });
    expect(statements.OnlyBreakGlassRoleDisablesOrDeletes).toEqual({
      Sid: 'OnlyBreakGlassRoleDisablesOrDeletes',
      Effect: 'Deny',
      Principal: '*',
      Action: ['kms:DisableKey', 'kms:ScheduleKeyDeletion'],
      Resource: '*',
      Condition: {
        ArnNotEquals: {
          'aws:PrincipalArn': sub(
            `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/kennel-backup-${STAGE}-key-break-glass`,
          ),
        },
      },
    });
    // In the backup account, the backup stack's break-glass role gets this key too; none is created.
    expect(
      resource<{ Roles: string[] }>('VaultKeyBreakGlassPolicy', 'AWS::IAM::Policy', stack).Roles,
    ).toEqual([`kennel-backup-${STAGE}-key-break-glass`]);
    expect(stack.Resources.VaultKeyBreakGlassRole).toBeUndefined();
  }, 120_000);

  it('in another account, the vault stack names the backup account and creates its own break-glass role, assumed with MFA', async () => {
    const other = (await vaultPart('vaultStackResources', {
      'sls:stage': STAGE,
      'param:vaultRegion': VAULT_REGION,
      'param:backupRegion': 'us-east-1',
      'param:backupAccount': '123456789012',
      'param:objectLockMode': 'governance',
      'param:keyBreakGlassRole': BREAK_GLASS_ROLE,
      'param:hostRoleArn': HOST_ROLE_ARN,
    })) as Template;
    expect(specFindings(other)).toEqual([]);
    expect(other.Resources.VaultKeyBreakGlassPolicy).toBeUndefined();
    const role = resource<{ RoleName: string; AssumeRolePolicyDocument: PolicyDocument }>(
      'VaultKeyBreakGlassRole',
      'AWS::IAM::Role',
      other,
    );
    expect(role.RoleName).toBe(BREAK_GLASS_ROLE);
    expect(role.AssumeRolePolicyDocument.Statement[0]?.Condition).toEqual({
      Bool: { 'aws:MultiFactorAuthPresent': 'true' },
    });
    const policy = resource<{ PolicyDocument: PolicyDocument }>(
      'VaultBucketPolicy',
      'AWS::S3::BucketPolicy',
      other,
    ).PolicyDocument;
    const read = policy.Statement.find((s) => s.Sid === 'RestoresReadFromTheBackupAccount');
    expect(read?.Principal).toEqual({ AWS: sub(`arn:\${AWS::Partition}:iam::123456789012:root`) });
    expect(read?.Condition?.ArnEquals?.['aws:PrincipalArn']).toContain(HOST_ROLE_ARN);
  });

  it('the vault stack refuses params that would put it beside the backups or lock it in no mode', async () => {
    const refusal = async (values: Record<string, unknown>) =>
      Promise.resolve(
        vaultPart('vaultStackResources', {
          'sls:stage': STAGE,
          'param:vaultRegion': VAULT_REGION,
          'param:backupRegion': 'us-east-1',
          'param:objectLockMode': 'governance',
          'param:keyBreakGlassRole': BREAK_GLASS_ROLE,
          ...values,
        }),
      ).then(
        () => '',
        (e: Error) => e.message,
      );
    expect(await refusal({ 'param:backupRegion': VAULT_REGION })).toContain(
      'backupRegion and vaultRegion are the same region',
    );
    expect(await refusal({ 'param:vaultRegion': '' })).toContain('vaultRegion "" is not an AWS region');
    expect(await refusal({ 'param:objectLockMode': 'legal' })).toContain(
      'objectLockMode "legal" is neither governance nor compliance',
    );
  });
});

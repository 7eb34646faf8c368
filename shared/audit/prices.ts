/**
 * The unit prices the audit report's cost estimate uses: AWS's list prices in
 * US East (N. Virginia), us-east-1, on-demand, without the free tiers (Step
 * Functions' 4,000 transitions and Lambda's 400,000 GB-s a month are left out,
 * so the estimate is what the month would cost an account that has used them).
 * Read on 2026-11-30 from the pages named; a price change is made here, once.
 */
export interface UnitPrice {
  /** What is counted, as the report's cost table names it. */
  item: string;
  unit: string;
  usd: number;
  source: string;
}

export const PRICES_READ_ON = '2026-11-30';
export const PRICES_REGION = 'us-east-1';

export const UNIT_PRICES = {
  stateTransition: {
    item: 'Step Functions Standard state transitions',
    unit: 'transition',
    // $0.025 per 1,000 state transitions, retries included.
    usd: 0.000025,
    source: 'https://aws.amazon.com/step-functions/pricing/',
  },
  lambdaGbSecond: {
    item: 'Lambda duration (arm64)',
    unit: 'GB-second',
    usd: 0.0000133334,
    source: 'https://aws.amazon.com/lambda/pricing/',
  },
  lambdaRequest: {
    item: 'Lambda requests',
    unit: 'request',
    // $0.20 per million requests.
    usd: 0.0000002,
    source: 'https://aws.amazon.com/lambda/pricing/',
  },
  runCommand: {
    item: 'SSM Run Command on EC2 instances',
    unit: 'command',
    // Run Command has no charge for EC2 instances (on-premises advanced instances are billed per hour).
    usd: 0,
    source: 'https://aws.amazon.com/systems-manager/pricing/',
  },
  STANDARD: {
    item: 'S3 Standard storage',
    unit: 'GB-month',
    usd: 0.023,
    source: 'https://aws.amazon.com/s3/pricing/',
  },
  STANDARD_IA: {
    item: 'S3 Standard-IA storage',
    unit: 'GB-month',
    usd: 0.0125,
    source: 'https://aws.amazon.com/s3/pricing/',
  },
  GLACIER: {
    item: 'S3 Glacier Flexible Retrieval storage',
    unit: 'GB-month',
    usd: 0.0036,
    source: 'https://aws.amazon.com/s3/pricing/',
  },
  DEEP_ARCHIVE: {
    item: 'S3 Glacier Deep Archive storage',
    unit: 'GB-month',
    usd: 0.00099,
    source: 'https://aws.amazon.com/s3/pricing/',
  },
} as const satisfies Record<string, UnitPrice>;

/**
 * What the estimate cannot count from the exported histories and the catalog,
 * said in every report: it is a floor, not the bill.
 */
export const NOT_COUNTED: readonly string[] = [
  "pgBackRest's WAL segments (no record holds their bytes) and the versions Object Lock keeps",
  'the audit trail itself, host command output and the vault bucket',
  'S3 requests, lifecycle transitions and retrievals, KMS requests, data transfer',
  'CloudWatch Logs, metrics, alarms and the dashboard; SNS e-mails',
  'the wal-archive-age Express workflow (no history to export)',
  'memory above the provider default: every Lambda second is counted at 256 MB (verifyArchive has 1 GB, restoreTest and pruneBackups 512 MB)',
];

/** The memory every function has unless serverless.yml gives it more (provider.memorySize), in GB. */
export const DEFAULT_LAMBDA_GB = 0.25;

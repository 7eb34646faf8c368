import { auditReport } from './audit-report.ts';
import { check } from './check.ts';
import { dailyVerification } from './daily-verification.ts';
import { databaseBackup } from './database-backup.ts';
import { databaseRestore } from './database-restore.ts';
import { filesBackup } from './files-backup.ts';
import { filesRestore } from './files-restore.ts';
import { monitoring } from './monitoring.ts';
import { pointInTimeRecovery } from './point-in-time-recovery.ts';
import { prepareHost } from './prepare-host.ts';
import { recoveryDrill } from './recovery-drill.ts';
import { restoreCleanup } from './restore-cleanup.ts';
import { restoreDrill } from './restore-drill.ts';
import type { Definition } from './steps.ts';
import { walArchiveAge } from './wal-archive-age.ts';

/**
 * Every workflow by name, as serverless.yml deploys it (`kennel-backup-<stage>-<name>`)
 * and the local runner runs it. Each call builds a new definition, so a caller
 * may change its copy.
 */
export const WORKFLOWS = {
  'database-backup': databaseBackup,
  'files-backup': filesBackup,
  'database-restore': databaseRestore,
  'point-in-time-recovery': pointInTimeRecovery,
  'restore-cleanup': restoreCleanup,
  'files-restore': filesRestore,
  'daily-verification': dailyVerification,
  'restore-drill': restoreDrill,
  'recovery-drill': recoveryDrill,
  monitoring,
  'prepare-host': prepareHost,
  check,
  'wal-archive-age': walArchiveAge,
  'audit-report': auditReport,
} as const satisfies Record<string, () => Definition>;

export type WorkflowName = keyof typeof WORKFLOWS;

export function isWorkflow(name: string): name is WorkflowName {
  return Object.hasOwn(WORKFLOWS, name);
}

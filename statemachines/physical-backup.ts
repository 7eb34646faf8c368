import {
  PHYSICAL_RESTORE_TEST_RESULT,
  PHYSICAL_RESTORE_TEST_STATE,
  physicalRestoreTest,
} from './physical-restore-test.ts';
import { at, hostCommand, NOTIFY_RUN_FAILURE, PLAN, type States, task } from './steps.ts';

/**
 * The states of one pgBackRest run in the database backup's Map (RouteRun sends
 * the plans whose engine is `pgbackrest` here): the backup and its verify on the
 * host, the catalog's record, the restore test (physical-restore-test.ts), its
 * outcome in the record, then the expiry, which never removes the newest full
 * that passed both.
 */
export const PHYSICAL_BACKUP = {
  /** The first state of a physical run (RouteRun shows a run planned as off as skipped before it). */
  first: 'StartPhysicalBackup',
  record: 'RecordPhysicalBackup',
  /** After the restore test passed: its outcome into the backup's record. */
  update: 'UpdatePhysicalRecord',
  expiry: 'PhysicalExpiryWanted',
} as const;

/** Where the states write their results in the iteration's state. */
export const PHYSICAL_RESULT = {
  backupCommand: 'backupCommand',
  /** The record's gist (RecordPhysicalBackup's result, then UpdatePhysicalRecord's with the test and what to keep). */
  record: 'physicalRecord',
  expireCommand: 'expireCommand',
  expiry: 'expiry',
} as const;

const onRunError = { next: NOTIFY_RUN_FAILURE };

export interface PhysicalBackupOptions {
  /** The iteration's success (the backup workflow's RunSucceeded). */
  succeeded: string;
}

export function physicalBackupStates(options: PhysicalBackupOptions): States {
  const record = at(PHYSICAL_RESULT.record);
  return {
    ...hostCommand('PhysicalBackup', {
      comment:
        "Sends the pgBackRest script: a full or incremental backup of the cluster into the stanza's repository (a full when the newest backup there is not the plan's base), then verify of every file and WAL segment in it; its result line carries pgBackRest's facts of the backup.",
      script: 'pgbackrest-backup',
      parameters: { 'plan.$': at(PLAN) },
      resultPath: at(PHYSICAL_RESULT.backupCommand),
      pollSeconds: 30,
      onError: onRunError,
      next: PHYSICAL_BACKUP.record,
    }),
    ...task(PHYSICAL_BACKUP.record, 'recordPhysicalBackup', {
      comment:
        "Writes the backup's record in the catalog, verified or failed, and fails the run naming every bad file verify found.",
      parameters: { 'plan.$': at(PLAN), 'facts.$': at(PHYSICAL_RESULT.backupCommand, 'result') },
      resultPath: record,
      onError: onRunError,
      next: PHYSICAL_RESTORE_TEST_STATE.start,
    }),
    ...physicalRestoreTest({
      set: `${record}.label`,
      next: PHYSICAL_BACKUP.update,
      onError: onRunError,
    }),
    ...task(PHYSICAL_BACKUP.update, 'recordPhysicalBackup', {
      comment:
        "Adds the passed restore test to the backup's record, and names the full the expiry keeps: the newest that passed verification and its restore test.",
      parameters: { 'plan.$': at(PLAN), 'restoreTest.$': at(PHYSICAL_RESTORE_TEST_RESULT.outcome) },
      resultPath: record,
      onError: onRunError,
      next: PHYSICAL_BACKUP.expiry,
    }),
    [PHYSICAL_BACKUP.expiry]: {
      Type: 'Choice',
      Comment:
        'Expires only when a full backup that passed verification and its restore test is known, and never that one.',
      Choices: [{ Variable: `${record}.keep`, IsPresent: true, Next: 'StartExpirePhysicalBackups' }],
      Default: options.succeeded,
    },
    ...hostCommand('ExpirePhysicalBackups', {
      comment:
        "Runs pgBackRest's expire with the conf's point-in-time window, after a dry run: refuses, changing nothing, if it would remove the full to keep.",
      script: 'pgbackrest-expire',
      parameters: { 'plan.$': at(PLAN), 'keep.$': `${record}.keep` },
      resultPath: at(PHYSICAL_RESULT.expireCommand),
      pollSeconds: 10,
      onError: onRunError,
      next: 'RecordPhysicalExpiry',
    }),
    ...task('RecordPhysicalExpiry', 'recordPhysicalExpiry', {
      comment:
        'Marks the records of the backups pgBackRest removed as expired; the output lists them and the WAL removed.',
      parameters: { 'plan.$': at(PLAN), 'facts.$': at(PHYSICAL_RESULT.expireCommand, 'result') },
      resultPath: at(PHYSICAL_RESULT.expiry),
      onError: onRunError,
      next: options.succeeded,
    }),
  };
}

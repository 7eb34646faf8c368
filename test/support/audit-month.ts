import type { HistoryEvent } from '@aws-sdk/client-sfn';
import type { ExportedHistory, TerminalStatus } from '../../shared/audit/history-export.ts';
import { scheduledSlots } from '../../shared/audit/slots.ts';
import { archiveKey, type FileKind } from '../../shared/catalog/keys.ts';
import type { DatabaseManifest, FilesManifest, Manifest } from '../../shared/catalog/manifest.ts';
import type { PhysicalRecord } from '../../shared/catalog/physical.ts';
import type { ScheduledKind } from '../../shared/catalog/schedule.ts';
import { pastBackup } from './manifests.ts';

/**
 * A month of synthetic executions and catalog (October 2026, one target
 * `primary` with pgBackRest, one database): every slot of every kind ran and
 * passed, except the four things an audit must name:
 * - the full backup of the 12th never started (a missed slot: its dump and its pgBackRest full);
 * - the full of the 20th failed: its dump failed verification (the execution FAILED), and the 21st's succeeded;
 * - the pgBackRest full of the 5th was verified but has no restore test;
 * - an operator restored the database on the 22nd (execution `restore-after-bad-migration-jdoe`).
 * Plus the full of 30 September, whose age the month starts with.
 */
export const MONTH = '2026-10';
export const GiB = 2 ** 30;
const MIB = 2 ** 20;
export const STAGE = 'test';
export const MISSED_DAY = '2026-10-12';
export const FAILED_DAY = '2026-10-20';
export const UNTESTED_DAY = '2026-10-05';
export const OPERATOR_RESTORE = 'restore-after-bad-migration-jdoe';
export const RESTORE_INPUT = { database: 'kennel_prod', backup: 'latest', mode: 'new-database' };

const plus = (iso: string, minutes: number) => new Date(Date.parse(iso) + minutes * 60_000).toISOString();
const arnOf = (workflow: string, name: string) =>
  `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-${STAGE}-${workflow}:${name}`;

/**
 * An exported history as the export writes it: started, a plan stage of 2 s
 * (and, for a full, the dump's host command sent, 1 s), ended after `minutes`.
 */
export function syntheticHistory(options: {
  workflow: string;
  name: string;
  input: unknown;
  start: string;
  minutes: number;
  status?: TerminalStatus;
  error?: string;
  sendsDump?: boolean;
  /** A host command's Start state the run entered (a restore's StartRestore): it sent something to the host. */
  sends?: string;
}): ExportedHistory {
  const { workflow, name, input, start, minutes, status = 'SUCCEEDED' } = options;
  const stop = plus(start, minutes);
  const at = (seconds: number) => new Date(Date.parse(start) + seconds * 1000);
  const task = (state: string, from: number, seconds: number): HistoryEvent[] => [
    {
      id: 0,
      type: 'TaskStateEntered',
      timestamp: at(from),
      stateEnteredEventDetails: { name: state, input: '{}' },
    },
    {
      id: 0,
      type: 'TaskStateExited',
      timestamp: at(from + seconds),
      stateExitedEventDetails: { name: state, output: '{}' },
    },
  ];
  const events = (
    [
      {
        id: 0,
        type: 'ExecutionStarted',
        timestamp: at(0),
        executionStartedEventDetails: { input: JSON.stringify(input) },
      },
      ...task('Plan', 1, 2),
      ...(options.sendsDump ? task('StartDump', 4, 1) : []),
      ...(options.sends ? task(options.sends, 4, 1) : []),
      {
        id: 0,
        type: status === 'SUCCEEDED' ? 'ExecutionSucceeded' : 'ExecutionFailed',
        timestamp: new Date(stop),
      },
    ] as HistoryEvent[]
  ).map((e, i) => ({ ...e, id: i + 1, previousEventId: i }));
  return {
    version: 1,
    execution: {
      executionArn: arnOf(workflow, name),
      stateMachineArn: `arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-${STAGE}-${workflow}`,
      workflow,
      name,
      status,
      startDate: start,
      stopDate: stop,
      input,
      output: status === 'SUCCEEDED' ? {} : null,
      error: options.error ?? null,
      cause: options.error ? `${options.error}: see the execution` : null,
    },
    events,
  };
}

function dump(
  kind: 'full' | 'monthly',
  executionArn: string,
  slot: string,
  state: 'verified' | 'failed',
  tested: boolean,
): DatabaseManifest {
  const base = pastBackup({ daysAgo: 0, now: new Date(plus(slot, 5)), kind });
  const until = plus(slot, 5);
  return {
    ...base,
    executionId: executionArn,
    archive: {
      ...base.archive,
      key: archiveKey(kind, 'primary', 'kennel_prod', until, base.archive.fileName),
      size: GiB,
    },
    window: { since: null, until },
    startedAt: slot,
    finishedAt: until,
    verification:
      state === 'failed'
        ? {
            state,
            checkedAt: plus(slot, 6),
            detail: 'sha256 mismatch: the archive in S3 is not the one the host wrote',
          }
        : {
            state,
            checkedAt: plus(slot, 6),
            ...(tested
              ? {
                  restoreTest: {
                    state: 'passed' as const,
                    startedAt: plus(slot, 6),
                    checkedAt: plus(slot, 16),
                    detail: '7 tables, exact counts',
                  },
                }
              : {}),
          },
  };
}

function tarball(kind: FileKind, executionArn: string, slot: string): FilesManifest {
  const until = plus(slot, 1);
  const fileName = `primary_${kind}_${slot.replace(/[-:]/g, '').slice(0, 15)}.tar.zst`;
  return {
    version: 2,
    kind,
    target: 'primary',
    runId: `${slot.replace(/[-:]/g, '').slice(0, 15)}Z_0000000${FILE_KIND_DIGIT[kind]}`,
    executionId: executionArn,
    archive: {
      key: archiveKey(kind, 'primary', null, until, fileName),
      localPath: `/opt/backup/${kind}/${fileName}`,
      fileName,
      size: MIB,
      sha256: '0'.repeat(64),
      format: 'tar',
      compression: 'zstd',
    },
    window: { since: null, until },
    startedAt: slot,
    finishedAt: until,
    verification: { state: 'verified', checkedAt: plus(slot, 2) },
    paths: ['/etc/kennel'],
    missing: [],
    excludes: [],
    entries: 3,
  };
}
const FILE_KIND_DIGIT: Record<FileKind, number> = { configuration: 1, application: 2, static: 3 };

function physical(
  kind: 'full' | 'incremental',
  executionArn: string,
  slot: string,
  tested: boolean,
): PhysicalRecord {
  const label = `${slot.slice(0, 10).replaceAll('-', '')}-${slot.slice(11, 13)}0000F`;
  return {
    target: 'primary',
    executionId: executionArn,
    kind,
    requestedKind: kind,
    label,
    backup: { startedAt: plus(slot, 1), stoppedAt: plus(slot, 10), repositoryDeltaBytes: 0 },
    verification: {
      state: 'verified',
      checkedAt: plus(slot, 12),
      ...(tested
        ? {
            restoreTest: {
              state: 'passed',
              startedAt: plus(slot, 12),
              checkedAt: plus(slot, 42),
              detail: 'restored',
            },
          }
        : {}),
    },
  } as unknown as PhysicalRecord;
}

export interface SyntheticMonth {
  histories: ExportedHistory[];
  manifests: Manifest[];
  physical: PhysicalRecord[];
}

/** The month described above. */
export function syntheticMonth(): SyntheticMonth {
  const from = new Date('2026-10-01T00:00:00Z');
  const to = new Date('2026-11-01T00:00:00Z');
  const histories: ExportedHistory[] = [];
  const manifests: Manifest[] = [];
  const physicalRecords: PhysicalRecord[] = [];
  const run = (
    workflow: string,
    kind: ScheduledKind,
    slot: Date,
    minutes: number,
    rest: Partial<Parameters<typeof syntheticHistory>[0]> = {},
  ) => {
    const start = new Date(slot.getTime() + 20_000).toISOString();
    const history = syntheticHistory({
      workflow,
      name: `${kind}-${start.replace(/[-:.]/g, '')}`,
      input: { kind },
      start,
      minutes,
      ...rest,
    });
    histories.push(history);
    return history.execution.executionArn;
  };
  // The September full the month's age starts from.
  manifests.push(
    dump('full', arnOf('database-backup', 'full-september'), '2026-09-30T02:00:00.000Z', 'verified', true),
  );
  for (const slot of scheduledSlots('full', from, to)) {
    const day = slot.toISOString().slice(0, 10);
    if (day === MISSED_DAY) continue;
    const failed = day === FAILED_DAY;
    const arn = run('database-backup', 'full', slot, 40, {
      sendsDump: true,
      ...(failed ? { status: 'FAILED' as const, error: 'ArchiveCorruptError' } : {}),
    });
    manifests.push(dump('full', arn, slot.toISOString(), failed ? 'failed' : 'verified', !failed));
    physicalRecords.push(physical('full', arn, slot.toISOString(), day !== UNTESTED_DAY));
  }
  for (const slot of scheduledSlots('monthly', from, to)) {
    const arn = run('database-backup', 'monthly', slot, 50);
    manifests.push(dump('monthly', arn, slot.toISOString(), 'verified', true));
  }
  for (const slot of scheduledSlots('incremental', from, to)) {
    physicalRecords.push(
      physical('incremental', run('database-backup', 'incremental', slot, 12), slot.toISOString(), false),
    );
  }
  for (const slot of scheduledSlots('transaction-logs', from, to))
    run('database-backup', 'transaction-logs', slot, 1);
  for (const kind of ['configuration', 'application', 'static'] as const)
    for (const slot of scheduledSlots(kind, from, to))
      manifests.push(tarball(kind, run('files-backup', kind, slot, 3), slot.toISOString()));
  histories.push(
    syntheticHistory({
      workflow: 'database-restore',
      name: OPERATOR_RESTORE,
      input: RESTORE_INPUT,
      start: '2026-10-22T14:03:00.000Z',
      minutes: 25,
    }),
  );
  return { histories, manifests, physical: physicalRecords };
}

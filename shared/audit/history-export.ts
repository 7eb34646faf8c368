import { Readable } from 'node:stream';
import { createGzip, gunzipSync } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { type HistoryEvent, paginateGetExecutionHistory, type SFNClient } from '@aws-sdk/client-sfn';
import { Upload } from '@aws-sdk/lib-storage';
import { executionStatusChangeSchema, workflowOf } from '../alert/message.ts';
import { lockForDays } from '../catalog/archive-record.ts';
import { executionHistoryKey } from '../catalog/keys.ts';
import { AUDIT_DAYS } from '../catalog/retention.ts';
import { BadManifestError, classifyAwsError } from '../core/errors.ts';
import * as z from '../core/schema.ts';

/**
 * The audit trail's first half: every ended execution's whole history, written
 * to the bucket once when it ends, because Step Functions forgets it 90 days
 * after the execution closed while the backups it describes are kept for
 * years (retention.ts AUDIT_DAYS). The ExecutionEndedRule of serverless.yml
 * hands every status change to the exportExecutionHistory function; the local
 * runner hands it each local execution's, so the shape is one.
 *
 * Nothing is redacted: a history holds what the states carried, and the
 * project keeps every state free of secrets and rows (inputs are identifiers,
 * results are keys, counts and redacted messages; the 256 KB limit enforces the
 * rest). The export writes the history as it is, so that it can be trusted.
 */

/** Every status an execution can end with, as EventBridge reports them. */
export const TERMINAL_STATUSES = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

/**
 * EventBridge's status change of an ended execution, whatever its status. Its
 * input and output are JSON texts (null when absent, or over EventBridge's
 * 248 KB, when the history's own events still hold them).
 */
export const executionEndedSchema = z.object({
  ...executionStatusChangeSchema.shape,
  detail: z.object({
    ...executionStatusChangeSchema.shape.detail.shape,
    status: z.enum(TERMINAL_STATUSES),
    input: z.nullish(z.string()),
    output: z.nullish(z.string()),
  }),
});

export type ExecutionEnded = z.infer<typeof executionEndedSchema>['detail'];

/** The head of an exported history: the execution as it ended. Dates are ISO 8601, UTC. */
export interface ExportedExecution {
  executionArn: string;
  stateMachineArn: string;
  /** The workflow (statemachines/workflows.ts), the state machine's name without `kennel-backup-<stage>-`. */
  workflow: string;
  name: string;
  status: TerminalStatus;
  startDate: string;
  stopDate: string;
  /** The execution's input and output, parsed (the text itself when it is not JSON); null when absent. */
  input: unknown;
  output: unknown;
  error: string | null;
  cause: string | null;
}

/** An exported history: the execution, then every event oldest first, as GetExecutionHistory gives them. */
export interface ExportedHistory {
  version: 1;
  execution: ExportedExecution;
  events: HistoryEvent[];
}

/** Reads an execution's history, a page at a time, oldest event first. */
export type HistoryPages = (executionArn: string) => AsyncIterable<HistoryEvent[]>;

/**
 * GetExecutionHistory through the SDK's paginator: every page of 1000 events,
 * oldest first, with the states' input and output (includeExecutionData). A
 * history has at most 25,000 events, each at most 256 KB of data, so it is
 * streamed to S3, never held whole.
 */
export function sfnHistoryPages(client: SFNClient): HistoryPages {
  return async function* (executionArn) {
    const pages = paginateGetExecutionHistory(
      { client, pageSize: 1000 },
      { executionArn, includeExecutionData: true, reverseOrder: false },
    );
    try {
      for await (const page of pages) yield page.events ?? [];
    } catch (error) {
      throw classifyAwsError(error, `Reading the history of ${executionArn}`);
    }
  };
}

const parsedJson = (text: string | null | undefined): unknown => {
  if (text === null || text === undefined) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
};

/** The exported head of an execution EventBridge reports as ended. */
export function exportedExecution(detail: ExecutionEnded, stage: string): ExportedExecution {
  const iso = (ms: number | null | undefined) => (ms == null ? new Date() : new Date(ms)).toISOString();
  return {
    executionArn: detail.executionArn,
    stateMachineArn: detail.stateMachineArn,
    workflow: workflowOf(detail.stateMachineArn, stage),
    name: detail.name,
    status: detail.status,
    startDate: iso(detail.startDate),
    stopDate: iso(detail.stopDate),
    input: parsedJson(detail.input),
    output: parsedJson(detail.output),
    error: detail.error ?? null,
    cause: detail.cause ?? null,
  };
}

/** The JSON text of an exported history, a piece at a time: one event per piece, after the head. */
async function* historyText(execution: ExportedExecution, pages: AsyncIterable<HistoryEvent[]>) {
  yield `{"version":1,"execution":${JSON.stringify(execution)},"events":[`;
  let first = true;
  for await (const page of pages) {
    for (const event of page) {
      yield `${first ? '' : ','}\n${JSON.stringify(event)}`;
      first = false;
    }
  }
  yield '\n]}\n';
}

export interface ExportResult {
  key: string;
  /** False when the history was there already: EventBridge delivers an event at least once. */
  written: boolean;
}

/**
 * Writes an execution's whole history to `key` (keys.ts executionHistoryKey),
 * gzip-compressed as it is read, create-only (If-None-Match: *, on the one
 * PutObject or on CompleteMultipartUpload): an exported history is never
 * replaced. One already there (the same event delivered twice) is left as it
 * is. Failures are classified: a transient one is retried by the caller.
 */
export async function exportHistory(
  s3: S3Client,
  bucket: string,
  execution: ExportedExecution,
  pages: AsyncIterable<HistoryEvent[]>,
): Promise<ExportResult> {
  const key = executionHistoryKey(execution.workflow, execution.startDate, execution.name);
  const body = Readable.from(historyText(execution, pages)).pipe(createGzip());
  const upload = new Upload({
    client: s3,
    params: { Bucket: bucket, Key: key, Body: body, ContentType: 'application/gzip', IfNoneMatch: '*' },
  });
  try {
    await upload.done();
  } catch (error) {
    // Written by an earlier delivery, which locked it too (or, having failed before, was retried by Lambda).
    if ((error as { name?: string }).name === 'PreconditionFailed') return { key, written: false };
    throw classifyAwsError(
      error,
      `Exporting the history of ${execution.executionArn} to s3://${bucket}/${key}`,
    );
  }
  // Kept as long as the longest data class: the bucket's default lock would release it after weeks.
  await lockForDays(s3, bucket, key, AUDIT_DAYS);
  return { key, written: true };
}

/**
 * An exported history, read back (the monthly report, the tests). One that is
 * not gzip or not JSON is a BadManifestError naming its key, so that a reader
 * of many passes over it and says which.
 */
export async function readExportedHistory(
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<ExportedHistory> {
  let bytes: Uint8Array;
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    bytes = await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
  } catch (error) {
    throw classifyAwsError(error, `Reading the exported history s3://${bucket}/${key}`);
  }
  try {
    return JSON.parse(gunzipSync(bytes).toString('utf8')) as ExportedHistory;
  } catch (error) {
    throw new BadManifestError(
      `The exported history s3://${bucket}/${key} is unreadable (${(error as Error).message}); the audit report lists it and counts its execution as unknown. Compare it with the execution's history in the Step Functions console while it is kept (90 days).`,
      { cause: error },
    );
  }
}

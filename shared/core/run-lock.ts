import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import { lockKey } from '../catalog/keys.ts';
import { classifyAwsError, RunLockHeldError, TransientError } from './errors.ts';
import { targetName } from './identifiers.ts';
import * as z from './schema.ts';

/**
 * Runs of the same kind and target never overlap: a backup of one kind of a
 * target, or a restore into one database of a target, takes the lock
 * `locks/<target>/<scope>` (keys.ts lockKey) before it changes anything and
 * gives it back in its end states. The lock is an S3 object created with a
 * conditional write (`If-None-Match: *`), so that of two runs exactly one
 * creates it, in AWS and against the local S3 alike. Its body names the
 * execution and when the lock stops holding: the run's start plus its
 * workflow's TimeoutSeconds, past which Step Functions has ended it.
 *
 * The second run refuses at once, naming the first, rather than waiting: the
 * schedules come round again (a 15-minute WAL run waiting on a stuck one would
 * queue behind it), and a person starting a restore wants to know now, not
 * after a wait. A lock whose execution has ended (aborted, timed out, or failed
 * before its end states gave it back) or whose validity has passed is taken
 * over, itself by a conditional write (`If-Match` on the ETag read), so two
 * runs that both find it stale cannot both take it.
 */

const iso = z.iso.datetime({ offset: true });

/** The body of a lock object. */
export const lockRecordSchema = z.object({
  version: z.literal(1),
  workflow: z.string(),
  executionArn: z.string().check(z.minLength(1)),
  startedAt: iso,
  takenAt: iso,
  /** The holder's start plus its workflow's TimeoutSeconds: Step Functions has ended it by then. */
  validUntil: iso,
});

export type LockRecord = z.infer<typeof lockRecordSchema>;

/** What a lock guards besides its target: a backup kind (`full`, `static`), or `database/<name>` for restores into it. */
const lockScope = z.string().check(z.regex(/^[a-z][a-z0-9_-]*(\/[a-z_][a-z0-9_]*)?$/));

/** The RunLock stage's request, from the workflow's TakeRunLock and ReleaseRunLock states. */
export const runLockRequestSchema = z.discriminatedUnion('action', [
  z.object({
    action: z.literal('take'),
    workflow: z.string().check(z.minLength(1)),
    scope: lockScope,
    targets: z.array(targetName).check(z.minLength(1)),
    execution: z.string().check(z.minLength(1)),
    startedAt: iso,
    timeoutSeconds: z.int().check(z.gte(1)),
  }),
  z.object({
    action: z.literal('release'),
    keys: z.array(z.string()),
    execution: z.string().check(z.minLength(1)),
  }),
]);

export type RunLockRequest = z.infer<typeof runLockRequestSchema>;
type TakeRequest = Extract<RunLockRequest, { action: 'take' }>;

/** Whether an execution is still running: DescribeExecution in AWS, the local runner's own record locally. */
export interface Executions {
  isRunning(executionArn: string): Promise<boolean>;
}

/** Step Functions' answer; an execution it does not know is not running. */
export function sfnExecutions(sfn: SFNClient): Executions {
  return {
    async isRunning(executionArn) {
      try {
        const { status } = await sfn.send(new DescribeExecutionCommand({ executionArn }));
        return status === 'RUNNING';
      } catch (error) {
        const name = (error as { name?: string }).name;
        if (name === 'ExecutionDoesNotExist' || name === 'InvalidArn') return false;
        throw classifyAwsError(error, `Describing the execution ${executionArn}, which holds a run lock`);
      }
    },
  };
}

/** The locks one run holds and till when. */
export interface TakenLocks {
  keys: string[];
  validUntil: string;
}

/** How often a lock that changes under us is read again before the stage gives up (and is retried). */
const ATTEMPTS = 3;

export class RunLocks {
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly executions: Executions;

  constructor(s3: S3Client, bucket: string, executions: Executions) {
    this.s3 = s3;
    this.bucket = bucket;
    this.executions = executions;
  }

  /**
   * Takes the lock of `scope` on every target, in key order, or none: when one
   * is held by a running execution, those taken are given back and a
   * RunLockHeldError names the holder. Taking a lock this execution already
   * holds succeeds (the stage retried after a timeout).
   */
  async take(request: TakeRequest, now = new Date()): Promise<TakenLocks> {
    const validUntil = new Date(Date.parse(request.startedAt) + request.timeoutSeconds * 1000).toISOString();
    const record: LockRecord = {
      version: 1,
      workflow: request.workflow,
      executionArn: request.execution,
      startedAt: new Date(request.startedAt).toISOString(),
      takenAt: now.toISOString(),
      validUntil,
    };
    const keys = [...new Set(request.targets)].sort().map((t) => lockKey(t, request.scope));
    const taken: string[] = [];
    try {
      for (const key of keys) {
        await this.takeOne(key, record, now);
        taken.push(key);
      }
    } catch (error) {
      await this.release(taken, request.execution);
      throw error;
    }
    return { keys, validUntil };
  }

  private async takeOne(key: string, record: LockRecord, now: Date): Promise<void> {
    const body = `${JSON.stringify(record, null, 2)}\n`;
    for (let attempt = 0; attempt < ATTEMPTS; attempt += 1) {
      if (await this.put(key, body, { IfNoneMatch: '*' })) return;
      const current = await this.read(key);
      if (!current) continue; // given back meanwhile: create it again
      const holder = current.record;
      if (holder?.executionArn === record.executionArn) return;
      if (holder && Date.parse(holder.validUntil) > now.getTime()) {
        if (await this.executions.isRunning(holder.executionArn)) {
          throw new RunLockHeldError(
            `Another ${holder.workflow} run holds ${key}: execution ${holder.executionArn}, started ${holder.startedAt}, its lock valid until ${holder.validUntil} unless it ends first. Runs of the same kind and target never overlap, so this one stopped before changing anything. Wait for that execution to end (or stop it in the Step Functions console if it is stuck), then start this one again.`,
          );
        }
      }
      // Its execution has ended, its validity has passed, or it does not parse: taken over, unless another run got there first.
      if (await this.put(key, body, { IfMatch: current.etag })) return;
    }
    throw new TransientError(
      `The run lock ${key} changed ${ATTEMPTS} times while it was being taken; another run is taking it too. The workflow retries.`,
    );
  }

  /**
   * Gives back the locks this execution holds among `keys`; one held by another
   * execution (it took a stale lock over) or already gone is left alone, and
   * the delete is conditional on the ETag read, so it never removes a lock
   * another run has just taken.
   */
  async release(keys: readonly string[], execution: string): Promise<{ released: string[] }> {
    const released: string[] = [];
    for (const key of keys) {
      const current = await this.read(key);
      if (current?.record?.executionArn !== execution) continue;
      try {
        await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key, IfMatch: current.etag }));
        released.push(key);
      } catch (error) {
        if (!isLost(error)) throw classifyAwsError(error, `Giving back the run lock ${key}`);
      }
    }
    return { released };
  }

  /** A conditional PutObject: true when written, false when its condition did not hold. */
  private async put(
    key: string,
    body: string,
    condition: { IfNoneMatch: '*' } | { IfMatch: string },
  ): Promise<boolean> {
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: 'application/json',
          ...condition,
        }),
      );
      return true;
    } catch (error) {
      if (isLost(error)) return false;
      throw classifyAwsError(error, `Taking the run lock ${key}`);
    }
  }

  /** The lock's body (undefined when it does not parse) and ETag; undefined when there is none. */
  private async read(key: string): Promise<{ record: LockRecord | undefined; etag: string } | undefined> {
    try {
      const object = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const text = (await object.Body?.transformToString('utf-8')) ?? '';
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const parsed = lockRecordSchema.safeParse(json);
      return { record: parsed.success ? parsed.data : undefined, etag: object.ETag ?? '' };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw classifyAwsError(error, `Reading the run lock ${key}`);
    }
  }
}

const statusOf = (error: unknown) =>
  (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/**
 * A conditional request that lost: its condition did not hold (412), the object
 * is gone (404, If-Match on a missing key), or another conditional request on
 * the same key was in flight (409 ConditionalRequestConflict).
 */
function isLost(error: unknown): boolean {
  const status = statusOf(error);
  return status === 412 || status === 404 || status === 409;
}

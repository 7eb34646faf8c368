import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_S3_CREDENTIALS, type LocalS3, startLocalS3 } from '../local/s3.ts';
import { lockKey } from '../shared/catalog/keys.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { RunLockHeldError } from '../shared/core/errors.ts';
import { type LockRecord, type RunLockRequest, RunLocks } from '../shared/core/run-lock.ts';
import { testConfig } from './support/config.ts';
import { MOTO_SERVER, type Moto, startMoto, warnWithoutMoto } from './support/moto.ts';

/**
 * The run lock's conditional writes against real S3 servers: the local S3
 * (s3rver, which this project teaches `If-None-Match: *` and `If-Match`) and,
 * where it is installed, moto_server, an independent emulator of S3's own
 * conditional writes. Without moto_server the test says so and runs against
 * the local S3 alone.
 */

const BUCKET = 'kennel-backups-lock-test';
warnWithoutMoto('the run lock was tested against the local S3 only.');

const servers: { name: string; s3: () => S3Client }[] = [];
let dir: string;
let local: LocalS3;
let localS3: S3Client;
let moto: Moto | undefined;

beforeAll(async () => {
  Object.assign(process.env, LOCAL_S3_CREDENTIALS);
  dir = mkdtempSync(join(tmpdir(), 'kennel-backup-lock-'));
  local = await startLocalS3(join(dir, 's3'), BUCKET, join(dir, 'tls'));
  localS3 = createS3Client(
    testConfig({ BACKUP_BUCKET: BUCKET, S3_ENDPOINT_URL: local.endpoint, S3_CA_BUNDLE: local.caFile }),
  );
  moto = await startMoto(BUCKET);
}, 60_000);

afterAll(async () => {
  moto?.stop();
  await local?.stop();
  rmSync(dir, { recursive: true, force: true });
});

servers.push({ name: 'the local S3', s3: () => localS3 });
if (MOTO_SERVER) servers.push({ name: 'moto_server', s3: () => (moto as Moto).s3 });

/** Executions that run until the test says they ended. */
function executions() {
  const ended = new Set<string>();
  return { ended, isRunning: async (arn: string) => !ended.has(arn) };
}

const arn = (name: string) =>
  `arn:aws:states:us-east-1:123456789012:execution:kennel-backup-test-files-backup:${name}`;

const take = (execution: string, startedAt = new Date().toISOString()) =>
  ({
    action: 'take',
    workflow: 'files-backup',
    scope: 'static',
    targets: ['primary', 'branch'],
    execution: arn(execution),
    startedAt,
    timeoutSeconds: 86_400,
  }) satisfies RunLockRequest;

async function holder(s3: S3Client, key: string): Promise<LockRecord | undefined> {
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return JSON.parse((await object.Body?.transformToString()) ?? '') as LockRecord;
  } catch {
    return undefined;
  }
}

describe.each(servers)('the run lock against $name', ({ s3 }) => {
  const keys = [lockKey('branch', 'static'), lockKey('primary', 'static')];

  it('refuses a second running execution, naming the first; gives back only its own', async () => {
    const running = executions();
    const locks = new RunLocks(s3(), BUCKET, running);
    const first = await locks.take(take('first', '2026-11-30T03:30:00.000Z'));
    expect(first).toEqual({ keys, validUntil: '2026-12-01T03:30:00.000Z' });
    expect(await holder(s3(), keys[1] as string)).toMatchObject({
      workflow: 'files-backup',
      executionArn: arn('first'),
      startedAt: '2026-11-30T03:30:00.000Z',
      validUntil: '2026-12-01T03:30:00.000Z',
    });
    // Taken again by the same execution (a retried stage): still its own.
    expect(
      await locks.take(take('first', '2026-11-30T03:30:00.000Z'), new Date('2026-11-30T03:31:00Z')),
    ).toEqual(first);

    const refused = locks.take(take('second'), new Date('2026-11-30T04:00:00Z'));
    await expect(refused).rejects.toThrow(RunLockHeldError);
    await expect(refused).rejects.toThrow(
      `Another files-backup run holds ${keys[0]}: execution ${arn('first')}, started 2026-11-30T03:30:00.000Z, its lock valid until 2026-12-01T03:30:00.000Z unless it ends first.`,
    );
    expect((await holder(s3(), keys[0] as string))?.executionArn).toBe(arn('first'));

    expect(await locks.release(keys, arn('second'))).toEqual({ released: [] });
    expect((await holder(s3(), keys[1] as string))?.executionArn).toBe(arn('first'));
    expect(await locks.release(keys, arn('first'))).toEqual({ released: keys });
    for (const key of keys) expect(await holder(s3(), key)).toBeUndefined();
  });

  it('takes over the lock of an execution that has ended, or whose validity has passed', async () => {
    const running = executions();
    const locks = new RunLocks(s3(), BUCKET, running);
    await locks.take(take('aborted', '2026-11-30T02:00:00.000Z'));
    await expect(locks.take(take('next'), new Date('2026-11-30T05:00:00Z'))).rejects.toThrow(
      RunLockHeldError,
    );
    running.ended.add(arn('aborted'));
    await locks.take(take('next', '2026-11-30T05:00:00.000Z'), new Date('2026-11-30T05:00:00Z'));
    expect((await holder(s3(), keys[0] as string))?.executionArn).toBe(arn('next'));
    // The aborted run's late release leaves the new holder's lock alone.
    expect(await locks.release(keys, arn('aborted'))).toEqual({ released: [] });

    // Still "running" but past its validity: Step Functions has ended it by then.
    await locks.take(take('after', '2026-12-01T06:00:00.000Z'), new Date('2026-12-01T06:00:00Z'));
    expect((await holder(s3(), keys[1] as string))?.executionArn).toBe(arn('after'));
    await locks.release(keys, arn('after'));
  });

  it('of many runs taking one free lock at once, or taking over one stale lock at once, exactly one gets it', async () => {
    const locks = new RunLocks(s3(), BUCKET, executions());
    const racers = Array.from({ length: 8 }, (_, i) => `racer-${i}`);
    const outcomes = await Promise.allSettled(racers.map((r) => locks.take(take(r))));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(RunLockHeldError);
    const winner = (await holder(s3(), keys[0] as string))?.executionArn;
    expect(racers.map(arn)).toContain(winner);

    const stale = executions();
    for (const r of racers) stale.ended.add(arn(r));
    const takeover = new RunLocks(s3(), BUCKET, stale);
    const next = Array.from({ length: 8 }, (_, i) => `next-${i}`);
    const taken = await Promise.allSettled(next.map((r) => takeover.take(take(r))));
    expect(taken.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const newHolder = (await holder(s3(), keys[0] as string))?.executionArn as string;
    expect(next.map(arn)).toContain(newHolder);
    expect((await holder(s3(), keys[1] as string))?.executionArn).toBe(newHolder);
    await takeover.release(keys, newHolder);
  });

  it('answers conditional writes as S3 does', async () => {
    const key = 'locks/raw/conditions';
    const put = (extra: Record<string, string>) =>
      s3().send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'x', ...extra }));
    const status = (p: Promise<unknown>) =>
      p.then(
        () => 200,
        (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode,
      );
    expect(await status(put({ IfMatch: '"0"' }))).toBe(404);
    const { ETag } = await put({ IfNoneMatch: '*' });
    expect(await status(put({ IfNoneMatch: '*' }))).toBe(412);
    expect(await status(put({ IfMatch: '"00000000000000000000000000000000"' }))).toBe(412);
    expect(
      await status(s3().send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key, IfMatch: '"0"' }))),
    ).toBe(412);
    const { ETag: replaced } = await put({ IfMatch: ETag as string });
    expect(
      await status(
        s3().send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key, IfMatch: replaced as string })),
      ),
    ).toBeLessThan(300);
  });
});

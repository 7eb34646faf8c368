import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { localHost } from '../../local/host.ts';
import { runWorkflow, STATE_PAYLOAD_LIMIT_BYTES } from '../../local/runner.ts';

/**
 * The local runner's 256 KiB limit on what a state takes and gives, as Step
 * Functions enforces it. The execution fails in its first state, before any
 * stage reaches PostgreSQL, S3 or the host, so no local service is needed.
 */

const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-runner-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

Object.assign(process.env, {
  STAGE: 'test',
  BACKUP_BUCKET: 'kennel-backups-test',
  BACKUP_TARGETS: JSON.stringify([
    { name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
  ]),
  ALERT_WEBHOOK_PARAMETER: '/kennel-backup/test/alert-webhook-url',
  RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/test/restore-check-database-url',
});

const run = (input: unknown) =>
  runWorkflow(
    { workflow: 'database-backup', input, historyDir: join(dir, 'history'), waitMs: 0 },
    {
      host: localHost({}),
      databaseUrl: 'postgres://unused',
      alertsFile: join(dir, 'alerts'),
      print: () => {},
    },
  );

/** An execution input of exactly `bytes` bytes of JSON. */
const inputOf = (bytes: number) => {
  const input = { kind: 'full', note: '' };
  input.note = 'x'.repeat(bytes - JSON.stringify(input).length);
  expect(Buffer.byteLength(JSON.stringify(input))).toBe(bytes);
  return input;
};

describe('the local runner enforces the 256 KiB state payload quota', () => {
  it('refuses an execution input over the quota, as StartExecution does', async () => {
    await expect(run(inputOf(STATE_PAYLOAD_LIMIT_BYTES + 1))).rejects.toThrow(
      `The execution input is ${STATE_PAYLOAD_LIMIT_BYTES + 1} bytes; StartExecution takes at most ${STATE_PAYLOAD_LIMIT_BYTES}.`,
    );
  });

  it('fails the execution with States.DataLimitExceeded when a state outputs more', async () => {
    // ReceiveRequest wraps the input in {"input": …}: 10 bytes more than the quota.
    const record = await run(inputOf(STATE_PAYLOAD_LIMIT_BYTES));
    expect(record.status).toBe('FAILED');
    expect(record.error).toBe('States.DataLimitExceeded');
    expect(record.cause).toBe(
      `The state/task 'ReceiveRequest' returned a result with a size exceeding the maximum number of bytes service limit (${STATE_PAYLOAD_LIMIT_BYTES + 10} bytes; at most ${STATE_PAYLOAD_LIMIT_BYTES}).`,
    );
    const entered = record.events.filter((e) => e.type === 'StateEntered').map((e) => e.state?.name);
    expect(entered).toEqual(['ReceiveRequest']);
  });

  it('fails a task whose input after Parameters is over the quota, past its Catch', async () => {
    // Under the quota as it arrives; PlanBackup's Parameters add the execution's id and start.
    const record = await run(inputOf(STATE_PAYLOAD_LIMIT_BYTES - 20));
    expect(record.status).toBe('FAILED');
    expect(record.error).toBe('States.DataLimitExceeded');
    expect(record.cause).toMatch(
      /^The input to the state\/task 'PlanBackup' has a size exceeding the maximum number of bytes service limit \(\d+ bytes; at most 262144\)\.$/,
    );
    const entered = record.events.filter((e) => e.type === 'StateEntered').map((e) => e.state?.name);
    expect(entered).toEqual(['ReceiveRequest', 'PlanBackup']);
  });
});

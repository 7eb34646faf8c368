import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { formatAlert, redact } from '../shared/alert.ts';

const ssm = mockClient(SSMClient);
const SECRET_HOOK_PATH = '/services/T000/B000/very-secret-token';
let received: { path: string; body: string }[] = [];
let status = 200;
let url = '';
const server = createServer((req: IncomingMessage, res) => {
  let body = '';
  req.on('data', (d) => {
    body += d;
  });
  req.on('end', () => {
    received.push({ path: req.url ?? '', body });
    res.statusCode = status;
    res.end();
  });
});

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${SECRET_HOOK_PATH}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  received = [];
  status = 200;
  ssm.reset();
  ssm
    .on(GetParameterCommand)
    .resolves({ Parameter: { Name: '/kennel-backup/prod/alert-webhook-url', Value: url } });
});

const failedState = {
  plan: { runId: '20261126T020000Z_1a2b3c4d', target: 'primary', database: 'kennel_prod', kind: 'full' },
  failed: {
    VerifyArchive: {
      Error: 'ArchiveCorruptError',
      Cause: JSON.stringify({
        errorType: 'ArchiveCorruptError',
        errorMessage: 'sha256 mismatch; connecting with postgres://kennel:hunter2@db:5432 failed',
        trace: ['at x'],
      }),
    },
  },
};
const event = {
  workflow: 'database-backup',
  executionId: 'arn:aws:states:eu-west-1:123456789012:execution:kennel-backup-prod-database-backup:run-1',
  startedAt: '2026-11-26T02:00:00.000Z',
  state: failedState,
};

async function alertHandler() {
  vi.resetModules();
  Object.assign(process.env, {
    STAGE: 'prod',
    AWS_REGION: 'eu-west-1',
    BACKUP_BUCKET: 'kennel-backups-prod',
    BACKUP_TARGETS: JSON.stringify([
      { name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
    ]),
    ALERT_WEBHOOK_PARAMETER: '/kennel-backup/prod/alert-webhook-url',
    RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/prod/restore-check-database-url',
  });
  return (await import('../functions/send-alert/handler.ts')).handler;
}
const context = {
  awsRequestId: 'test',
  functionName: 'sendAlert',
  getRemainingTimeInMillis: () => 60_000,
} as never;

describe('the alert', () => {
  it('names the workflow, execution, failing state, error, cause and console link, without secrets', () => {
    const alert = formatAlert(event, 'prod', 'eu-west-1');
    expect(alert.state).toBe('VerifyArchive');
    expect(alert.error).toBe('ArchiveCorruptError');
    expect(alert.cause).toBe('sha256 mismatch; connecting with postgres://kennel:***@db:5432 failed');
    expect(alert.text.split('\n')).toEqual([
      ':rotating_light: kennel-backup (prod): database-backup FAILED',
      'Target: primary (kennel_prod, full)',
      'State: VerifyArchive',
      'Error: ArchiveCorruptError',
      'Cause: sha256 mismatch; connecting with postgres://kennel:***@db:5432 failed',
      `Execution: ${event.executionId} (started 2026-11-26T02:00:00.000Z)`,
      `Console: https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/${encodeURIComponent(event.executionId)}`,
    ]);
    expect(alert.text).not.toContain('hunter2');
  });

  it('redacts credentials in URLs, webhook paths and assignments', () => {
    expect(redact('https://hooks.slack.com/services/T1/B2/abc PGPASSWORD=s3cret password: x1')).toBe(
      'https://hooks.slack.com/services/*** PGPASSWORD=*** password: ***',
    );
  });

  it('is posted to the Slack webhook read from SSM Parameter Store (decrypted)', async () => {
    const handler = await alertHandler();
    const result = await handler(event, context);
    expect(result).toMatchObject({ error: 'ArchiveCorruptError', state: 'VerifyArchive', delivered: true });
    expect(result.cause).toContain('VerifyArchive: sha256 mismatch');
    expect(ssm.commandCalls(GetParameterCommand)[0]?.args[0].input).toEqual({
      Name: '/kennel-backup/prod/alert-webhook-url',
      WithDecryption: true,
    });
    expect(received).toHaveLength(1);
    expect(received[0]?.path).toBe(SECRET_HOOK_PATH);
    expect(JSON.parse(received[0]?.body ?? '{}').text).toContain('Error: ArchiveCorruptError');
  });

  it('does not hide the original failure when the webhook is down: it logs the delivery failure', async () => {
    status = 503;
    const handler = await alertHandler();
    const logged: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      logged.push(String(chunk));
      return true;
    });
    const spyErr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      logged.push(String(chunk));
      return true;
    });
    let result: Awaited<ReturnType<typeof handler>>;
    try {
      result = await handler(event, context);
    } finally {
      spy.mockRestore();
      spyErr.mockRestore();
    }
    expect(result).toMatchObject({ error: 'ArchiveCorruptError', delivered: false });
    const line = logged.find((l) => l.includes('alert not delivered'));
    expect(line).toBeDefined();
    expect(line).toContain('Slack answered 503');
    expect(logged.join('')).not.toContain('very-secret-token');
  });
});

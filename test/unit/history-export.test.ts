import { GetExecutionHistoryCommand, type HistoryEvent, SFNClient } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import {
  executionEndedSchema,
  exportedExecution,
  sfnHistoryPages,
} from '../../shared/audit/history-export.ts';
import { executionHistoryKey } from '../../shared/catalog/keys.ts';
import { parseInput } from '../../shared/core/input.ts';

/**
 * The export's reading of a history: GetExecutionHistory is faked (no local
 * service answers it), so the exact requests are asserted. Its writing to S3
 * is tested against the local S3 (test/audit.test.ts).
 */

const ARN = 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-prod-database-backup:nightly-1';
const STARTED = Date.parse('2026-11-30T02:00:00.000Z');

const event = (status: string) => ({
  version: '0',
  'detail-type': 'Step Functions Execution Status Change',
  source: 'aws.states',
  detail: {
    executionArn: ARN,
    stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-prod-database-backup',
    name: 'nightly-1',
    status,
    startDate: STARTED,
    stopDate: STARTED + 600_000,
    input: '{"kind":"full"}',
    output: '{"runs":[]}',
    error: null,
    cause: null,
  },
});

describe('the history export', () => {
  it('reads every page of the history, oldest first, with the states’ data, passing each page’s token on', async () => {
    const sfn = mockClient(SFNClient);
    const page = (from: number, n: number): HistoryEvent[] =>
      Array.from({ length: n }, (_, i) => ({
        id: from + i,
        type: 'TaskStateEntered',
        timestamp: new Date(STARTED),
      }));
    // The paginator sends one input object, changing its token: each request is copied as it is sent.
    const answers = [
      { events: page(1, 1000), nextToken: 'page-2' },
      { events: page(1001, 1000), nextToken: 'page-3' },
      { events: page(2001, 7) },
    ];
    const requests: unknown[] = [];
    sfn.on(GetExecutionHistoryCommand).callsFake((input: object) => {
      requests.push({ ...input });
      return answers.shift();
    });
    const pages: HistoryEvent[][] = [];
    for await (const p of sfnHistoryPages(new SFNClient({ region: 'us-east-1' }))(ARN)) pages.push(p);
    expect(pages.map((p) => p.length)).toEqual([1000, 1000, 7]);
    expect(pages.flat().map((e) => e.id)).toEqual(Array.from({ length: 2007 }, (_, i) => i + 1));
    expect(requests).toEqual([
      { executionArn: ARN, includeExecutionData: true, reverseOrder: false, maxResults: 1000 },
      {
        executionArn: ARN,
        includeExecutionData: true,
        reverseOrder: false,
        maxResults: 1000,
        nextToken: 'page-2',
      },
      {
        executionArn: ARN,
        includeExecutionData: true,
        reverseOrder: false,
        maxResults: 1000,
        nextToken: 'page-3',
      },
    ]);
    sfn.restore();
  });

  it.each(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'])(
    'takes an execution that ended %s, under the month it started in',
    (status) => {
      const { detail } = parseInput(executionEndedSchema, event(status), 'The event');
      const execution = exportedExecution(detail, 'prod');
      expect(execution).toEqual({
        executionArn: ARN,
        stateMachineArn:
          'arn:aws:states:us-east-1:123456789012:stateMachine:kennel-backup-prod-database-backup',
        workflow: 'database-backup',
        name: 'nightly-1',
        status,
        startDate: '2026-11-30T02:00:00.000Z',
        stopDate: '2026-11-30T02:10:00.000Z',
        input: { kind: 'full' },
        output: { runs: [] },
        error: null,
        cause: null,
      });
      expect(executionHistoryKey(execution.workflow, execution.startDate, execution.name)).toBe(
        'audit/executions/database-backup/2026/11/nightly-1.json.gz',
      );
    },
  );

  it('refuses an execution still running: only an ended one has its whole history', () => {
    expect(() => parseInput(executionEndedSchema, event('RUNNING'), 'The event')).toThrow(
      'The event is not valid; nothing was started',
    );
  });
});

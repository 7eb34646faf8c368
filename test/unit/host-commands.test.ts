import {
  GetCommandInvocationCommand,
  InvocationDoesNotExist,
  ListCommandInvocationsCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { isDumpPlan, planBackup } from '../../shared/backup/database-plan.ts';
import { executionRef } from '../../shared/host/commands.ts';

const ENV = {
  BACKUP_BUCKET: 'kennel-backups-prod',
  BACKUP_TARGETS: JSON.stringify([
    { name: 'primary', instanceIds: ['i-0123456789abcdef0'], database: 'kennel_prod' },
    {
      name: 'compose',
      tag: { key: 'kennel-backup-target', value: 'db' },
      database: 'kennel_prod',
      postgres: { mode: 'docker', composeFile: '/opt/kennel/docker-compose.prod.yml', service: 'db' },
    },
  ]),
  HOST_COMMAND_TIMEOUT_SECONDS: '1800',
  ALERT_WEBHOOK_PARAMETER: '/kennel-backup/prod/alert-webhook-url',
  RESTORE_CHECK_DATABASE_URL_PARAMETER: '/kennel-backup/prod/restore-check-database-url',
};

const ssm = mockClient(SSMClient);

async function handlers() {
  vi.resetModules();
  Object.assign(process.env, ENV);
  const start = await import('../../functions/start-host-command/handler.ts');
  const check = await import('../../functions/check-host-command/handler.ts');
  const { getConfig } = await import('../../shared/core/config.ts');
  return { start: start.handler, check: check.handler, config: getConfig() };
}

const context = {
  awsRequestId: 'test',
  functionName: 'test',
  getRemainingTimeInMillis: () => 60_000,
} as never;

/** The execution's id, which every Start state passes ($$.Execution.Id). */
const EXECUTION = 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-prod-database-backup:run-1';

async function plan(config: Awaited<ReturnType<typeof handlers>>['config'], target = 'primary') {
  const [planned] = await planBackup(config, { list: async () => [] } as never, {
    input: { target },
    executionId: EXECUTION,
    startedAt: '2026-11-26T02:00:00.000Z',
  });
  if (!planned || !isDumpPlan(planned)) throw new Error('no dump plan');
  return planned;
}

beforeEach(() => {
  ssm.reset();
});

describe('StartDump sends the rendered script with SSM Run Command', () => {
  it('sends exactly one AWS-RunShellScript command to the configured instance', async () => {
    const { start, config } = await handlers();
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
    const result = await start(
      { script: 'database-backup', execution: EXECUTION, plan: await plan(config) },
      context,
    );

    expect(result).toMatchObject({
      script: 'database-backup',
      commandId: 'cmd-1',
      instanceId: 'i-0123456789abcdef0',
      status: 'InProgress',
    });
    const calls = ssm.commandCalls(SendCommandCommand);
    expect(calls).toHaveLength(1);
    const input = calls[0]?.args[0].input;
    expect(input).toMatchObject({
      DocumentName: 'AWS-RunShellScript',
      InstanceIds: ['i-0123456789abcdef0'],
      TimeoutSeconds: 1800,
      // The execution's reference (sha256 of its ARN), the command, the execution's name.
      Comment: `kennel-backup ${executionRef(EXECUTION)} database-backup run-1`,
      // The whole output goes to the bucket only (GetCommandInvocation cuts it; no log may hold a row).
      OutputS3BucketName: 'kennel-backups-prod',
      OutputS3KeyPrefix: 'host-output',
    });
    expect(input).not.toHaveProperty('CloudWatchOutputConfig');
    expect(input?.Parameters?.executionTimeout).toEqual(['1800']);
    const script = input?.Parameters?.commands?.[0] ?? '';
    expect(script).toContain("KB_DATABASE='kennel_prod'");
    expect(script).toContain("KB_PG_MODE='host'");
    // Exact patterns, one a line: public's log tables only, never one of the same name in another schema.
    expect(script).toContain(`KB_EXCLUDE_TABLES='"public"."audit_logs"\n"public"."session_logs"'`);
    expect(script).toContain('pg_dump --no-password --format=plain --snapshot=');
    expect(script).not.toMatch(/PGPASSWORD=|AWS_SECRET_ACCESS_KEY=|postgres:\/\/[^@\s]*:[^@\s]*@/);
  });

  it('targets a tag with one instance at a time and runs the tools in the compose service', async () => {
    const { start, config } = await handlers();
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-2' } });
    const result = await start(
      { script: 'database-backup', execution: EXECUTION, plan: await plan(config, 'compose') },
      context,
    );
    expect(result.instanceId).toBeNull();
    const input = ssm.commandCalls(SendCommandCommand)[0]?.args[0].input;
    expect(input?.Targets).toEqual([{ Key: 'tag:kennel-backup-target', Values: ['db'] }]);
    expect(input?.MaxConcurrency).toBe('1');
    expect(input?.InstanceIds).toBeUndefined();
    const script = input?.Parameters?.commands?.[0] ?? '';
    expect(script).toContain("KB_PG_MODE='docker'");
    expect(script).toContain("KB_COMPOSE_FILE='/opt/kennel/docker-compose.prod.yml'");
    expect(script).toContain('docker compose -f "$KB_COMPOSE_FILE" exec -T "$KB_COMPOSE_SERVICE" "$@"');
  });

  it('sends nothing for a malformed request or a target that is not configured', async () => {
    const { start, config } = await handlers();
    const good = await plan(config);
    await expect(
      start({ script: 'rm -rf /', execution: EXECUTION, plan: good }, context),
    ).rejects.toMatchObject({ name: 'InvalidInputError' });
    // Without the execution's id its commands could not be found to cancel them.
    await expect(start({ script: 'database-backup', plan: good }, context)).rejects.toThrow(
      /execution is required: give a string/,
    );
    await expect(
      start(
        { script: 'database-backup', execution: EXECUTION, plan: { ...good, database: 'x; reboot' } },
        context,
      ),
    ).rejects.toMatchObject({ name: 'InvalidInputError' });
    await expect(
      start(
        {
          script: 'prune-local',
          execution: EXECUTION,
          plan: good,
          keepDays: 7,
          keepFile: '../../../etc/passwd',
        },
        context,
      ),
    ).rejects.toThrow(/plain file name/);
    await expect(
      start({ script: 'database-backup', execution: EXECUTION, plan: { ...good, target: 'gone' } }, context),
    ).rejects.toMatchObject({ name: 'NotFoundError' });
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
  });
});

describe('CheckDump reads the invocation', () => {
  const command = (
    deadline = '2999-01-01T00:00:00.000Z',
    instanceId: string | null = 'i-0123456789abcdef0',
  ) => ({
    command: {
      script: 'database-backup',
      hostScript: 'database-backup',
      target: 'primary',
      commandId: 'cmd-1',
      instanceId,
      deadline,
      status: 'InProgress',
      sentAt: '2026-11-26T02:00:00.000Z',
    },
  });

  it('treats InvocationDoesNotExist just after sending as still in progress', async () => {
    const { check } = await handlers();
    ssm
      .on(GetCommandInvocationCommand)
      .rejects(new InvocationDoesNotExist({ message: 'not yet', $metadata: {} }));
    await expect(check(command(), context)).resolves.toMatchObject({ status: 'InProgress' });
    expect(ssm.commandCalls(GetCommandInvocationCommand)[0]?.args[0].input).toEqual({
      CommandId: 'cmd-1',
      InstanceId: 'i-0123456789abcdef0',
    });
  });

  it('returns Success with the tail of the output and the facts of its result line', async () => {
    const { check } = await handlers();
    const facts = { size: 1234, sha256: 'a'.repeat(64), serverVersion: '150020' };
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Success',
      StandardOutputContent: `line 1\nbackup done\nKB-RESULT ${JSON.stringify(facts)}\n`,
    });
    await expect(check(command(), context)).resolves.toMatchObject({
      status: 'Success',
      output: `line 1\nbackup done\nKB-RESULT ${JSON.stringify(facts)}`,
      result: facts,
    });
  });

  it('fails a backup that succeeded without its result line, or with one that is not JSON', async () => {
    const { check } = await handlers();
    ssm
      .on(GetCommandInvocationCommand)
      .resolvesOnce({ Status: 'Success', StandardOutputContent: 'backup done\n' })
      .resolvesOnce({ Status: 'Success', StandardOutputContent: 'KB-RESULT {"size": 12,\n' });
    await expect(check(command(), context)).rejects.toMatchObject({
      name: 'HostCommandFailedError',
      message: expect.stringMatching(/ended without its KB-RESULT line[\s\S]*backup done/),
    });
    await expect(check(command(), context)).rejects.toThrow(
      /printed a result that is not JSON: \{"size": 12,/,
    );
  });

  it('needs no result line from a script that reports none', async () => {
    const { check } = await handlers();
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'Success', StandardOutputContent: 'removed 3\n' });
    const pruned = await check(
      { command: { ...command().command, script: 'prune-local', hostScript: 'prune-local' } },
      context,
    );
    expect(pruned).toMatchObject({ status: 'Success', output: 'removed 3' });
    expect(pruned).not.toHaveProperty('result');
  });

  it.each([
    ['Failed', 'HostCommandFailedError'],
    ['Cancelled', 'HostCommandFailedError'],
    ['TimedOut', 'HostCommandTimedOutError'],
  ] as const)('turns %s into a terminal error carrying the stderr tail', async (status, errorName) => {
    const { check } = await handlers();
    const stderr = `${Array.from({ length: 40 }, (_, i) => `noise ${i}`).join('\n')}\npg_dump: error: connection refused\n`;
    ssm.on(GetCommandInvocationCommand).resolves({ Status: status, StandardErrorContent: stderr });
    const error = await check(command(), context).catch((e: unknown) => e as Error);
    expect(error.name).toBe(errorName);
    expect(error.message).toContain('pg_dump: error: connection refused');
    expect(error.message).not.toContain('noise 0\n');
  });

  it('fails a command still pending after its deadline', async () => {
    const { check } = await handlers();
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'Pending' });
    await expect(check(command('2000-01-01T00:00:00.000Z'), context)).rejects.toMatchObject({
      name: 'HostCommandTimedOutError',
    });
  });

  it('finds the instance of a tag target, and refuses a tag that matched several', async () => {
    const { check } = await handlers();
    ssm
      .on(ListCommandInvocationsCommand)
      .resolvesOnce({ CommandInvocations: [{ InstanceId: 'i-0aaaaaaaaaaaaaaaa' }] })
      .resolvesOnce({
        CommandInvocations: [{ InstanceId: 'i-0aaaaaaaaaaaaaaaa' }, { InstanceId: 'i-0bbbbbbbbbbbbbbbb' }],
      });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'InProgress' });
    await expect(check(command(undefined, null), context)).resolves.toMatchObject({
      instanceId: 'i-0aaaaaaaaaaaaaaaa',
    });
    expect(ssm.commandCalls(GetCommandInvocationCommand)[0]?.args[0].input).toEqual({
      CommandId: 'cmd-1',
      InstanceId: 'i-0aaaaaaaaaaaaaaaa',
    });
    await expect(check(command(undefined, null), context)).rejects.toThrow(/matched 2 instances/);
  });
});

describe('the host commands', () => {
  it('name each command once: its key is the one script name its request takes', async () => {
    const { HOST_COMMANDS } = await import('../../functions/start-host-command/commands.ts');
    for (const [name, command] of Object.entries(HOST_COMMANDS)) {
      const { shape } = command.request as unknown as {
        shape: { script: { _zod: { def: { values: unknown[] } } } };
      };
      expect(shape.script._zod.def.values, name).toEqual([name]);
    }
    expect(Object.keys(HOST_COMMANDS)).toHaveLength(24);
  });
});

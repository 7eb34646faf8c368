import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { hostOutputKey } from '../shared/catalog/keys.ts';
import {
  type HostCommands,
  type Invocation,
  OUTPUT_LIMITS,
  type OutputStream,
  type SendRequest,
} from '../shared/host/commands.ts';

/**
 * The local stand-in for SSM Run Command: it runs the very script the Lambda
 * would send, with bash, in an environment that plays the DB host's (database
 * credentials, AWS credentials, PATH). Like SSM it stops a command that outlives
 * its timeout and reports it as TimedOut, and cancels one as the agent does:
 * SIGKILL to the command's whole process group, no trap run (amazon-ssm-agent,
 * agent/executers: killProcess), reported as Cancelled. Its output is what
 * GetCommandInvocation returns (the first 24,000 characters of stdout, 8,000 of
 * stderr), and the whole of it goes to the request's output bucket, as the agent
 * puts it there (keys.ts hostOutputKey), before the command is reported done.
 */
export interface LocalHost extends HostCommands {
  /** Every script sent, in order: the tests read them for secrets. */
  readonly sent: SendRequest[];
  /** Waits for every running command to end. */
  drain(): Promise<void>;
}

interface Running {
  child: ChildProcess;
  comment: string;
  instanceIds: string[];
  sentAt: number;
  cancelled: boolean;
  status: Invocation['status'];
  stdout: string;
  stderr: string;
  done: Promise<void>;
}

/**
 * `byInstance` plays several hosts: extra variables for the commands sent to an
 * instance id (another database port, say). `s3` is where the whole output of a
 * command sent with an output bucket goes (the local S3); without it, nowhere.
 */
export function localHost(
  env: Record<string, string>,
  byInstance: Record<string, Record<string, string>> = {},
  s3?: S3Client,
  options: {
    /** What a command past its timeout gets: SIGTERM lets its traps run; SIGKILL is what the agent sends. */
    timeoutSignal?: 'SIGTERM' | 'SIGKILL';
  } = {},
): LocalHost {
  const commands = new Map<string, Running>();
  const sent: SendRequest[] = [];
  return {
    sent,
    async send(request) {
      sent.push(request);
      const commandId = randomUUID();
      const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-cmd-'));
      const file = join(dir, '_script.sh');
      writeFileSync(file, request.script, { mode: 0o700 });
      const instanceId = request.target.instanceIds?.[0] ?? null;
      const child = spawn('bash', [file], {
        env: { ...env, ...(instanceId ? byInstance[instanceId] : {}) },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const running: Running = {
        child,
        comment: request.comment,
        instanceIds: request.target.instanceIds ?? [],
        sentAt: Date.now(),
        cancelled: false,
        status: 'InProgress',
        stdout: '',
        stderr: '',
        done: Promise.resolve(),
      };
      // Decoded as a stream: a character split between two chunks stays whole.
      child.stdout?.setEncoding('utf8').on('data', (d: string) => {
        running.stdout += d;
      });
      child.stderr?.setEncoding('utf8').on('data', (d: string) => {
        running.stderr += d;
      });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        // The whole process group: pg_dump, the compressor and the upload too. (The
        // agent sends SIGKILL here as well; this stand-in lets the traps run unless
        // asked to do as the agent does.)
        if (child.pid) killGroup(child.pid, options.timeoutSignal ?? 'SIGTERM');
      }, request.timeoutSeconds * 1000);
      const putOutput = async (stream: OutputStream) => {
        const instance = running.instanceIds[0];
        if (!s3 || !request.outputBucket || !instance || running[stream] === '') return;
        await s3.send(
          new PutObjectCommand({
            Bucket: request.outputBucket,
            Key: hostOutputKey(commandId, instance, stream),
            Body: running[stream],
            ContentType: 'text/plain; charset=utf-8',
          }),
        );
      };
      running.done = new Promise((resolve) => {
        child.on('close', (code) => {
          clearTimeout(timer);
          // An output the agent cannot put in S3 is missing there, and the command still ends.
          void Promise.allSettled([putOutput('stdout'), putOutput('stderr')]).then(() => {
            running.status = running.cancelled
              ? 'Cancelled'
              : timedOut
                ? 'TimedOut'
                : code === 0
                  ? 'Success'
                  : 'Failed';
            rmSync(dir, { recursive: true, force: true });
            resolve();
          });
        });
      });
      commands.set(commandId, running);
      return { commandId, instanceId };
    },
    async get(commandId, instanceId) {
      const running = commands.get(commandId);
      if (!running) throw new Error(`No local command ${commandId}`);
      return {
        status: running.status,
        instanceId,
        stdout: running.stdout.slice(0, OUTPUT_LIMITS.stdout),
        stderr: running.stderr.slice(0, OUTPUT_LIMITS.stderr),
      };
    },
    async inFlight(since) {
      // A cancelled command is in flight until its processes are gone, as SSM's Cancelling is.
      return [...commands]
        .filter(([, c]) => c.status === 'InProgress' && c.sentAt >= since.getTime())
        .map(([commandId, c]) => ({ commandId, comment: c.comment, instanceIds: c.instanceIds }));
    },
    async cancel(commandId) {
      const running = commands.get(commandId);
      if (running?.status !== 'InProgress' || running.cancelled) return;
      running.cancelled = true;
      if (running.child.pid) killGroup(running.child.pid, 'SIGKILL');
    },
    async drain() {
      await Promise.all([...commands.values()].map((c) => c.done));
    },
  };
}

/**
 * Signals a command's whole process group. One that has just ended (its exit not
 * yet seen here) has nothing left to signal: not an error, as the agent's
 * cancel of a command that ended is not.
 */
function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Runs one rendered host script with bash to its end, without blocking this process. */
export async function runHostScript(
  env: Record<string, string>,
  script: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  // From a file, as localHost does: on stdin the script would be read by its own commands.
  const dir = mkdtempSync(join(tmpdir(), 'kennel-backup-cmd-'));
  const file = join(dir, '_script.sh');
  writeFileSync(file, script, { mode: 0o700 });
  try {
    const { stdout, stderr } = await promisify(execFile)('bash', [file], {
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code?: unknown; stdout?: string; stderr?: string };
    return {
      code: typeof code === 'number' ? code : -1,
      stdout: stdout ?? '',
      stderr: stderr ?? (error as Error).message,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

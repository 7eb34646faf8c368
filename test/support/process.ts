import { spawn } from 'node:child_process';

export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end without blocking: the local S3 server the command
 * may talk to answers from this same process.
 */
export function runProcess(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Finished> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

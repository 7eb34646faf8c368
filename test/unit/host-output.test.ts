import { describe, expect, it } from 'vitest';
import { TransientError } from '../../shared/core/errors.ts';
import { type Invocation, OUTPUT_LIMITS } from '../../shared/host/commands.ts';
import { type HostOutput, outputOf } from '../../shared/host/output.ts';

/** A stream Run Command cut: its first 8,000 characters end inside a line. */
const cut = `${'progress line\n'.repeat(600)}`.slice(0, OUTPUT_LIMITS.stderr);
const invocation = (stderr: string): Invocation => ({
  status: 'Failed',
  instanceId: 'i-0123',
  stdout: '',
  stderr,
});
const outputs = (end: HostOutput['end']): HostOutput => ({ end });
const read = (output: HostOutput, stderr = cut) =>
  outputOf(output, 'cmd-1', invocation(stderr), 'stderr', 's3://b/host-output/cmd-1/');

describe("a finished command's stream", () => {
  it('is what Run Command returned when it was not cut, and S3 is not asked', async () => {
    let asked = false;
    const text = await read(
      outputs(async () => {
        asked = true;
        return '';
      }),
      'short\n',
    );
    expect(text).toBe('short\n');
    expect(asked).toBe(false);
  });

  it("is the end of the whole output in S3 when it was cut, read for the command's instance", async () => {
    const asked: unknown[] = [];
    const text = await read(
      outputs(async (...args) => {
        asked.push(args);
        return 'progress line\nrestore failed: No space left on device\n';
      }),
    );
    expect(text).toBe('progress line\nrestore failed: No space left on device\n');
    expect(asked).toEqual([['cmd-1', 'i-0123', 'stderr', 65_536]]);
  });

  it('is the complete lines returned and why the rest is missing, when S3 has no copy or refuses', async () => {
    const missing = await read(outputs(async () => undefined));
    expect(
      missing.endsWith(
        "progress line\n[Run Command returned only the first 8000 characters of its stderr, and its whole output is not in s3://b/host-output/cmd-1/; check that the DB host's instance role has HostCommandOutputPolicy.]",
      ),
    ).toBe(true);
    const refused = await read(
      outputs(async () => {
        throw new Error('AccessDenied');
      }),
    );
    expect(refused).toContain('and its whole output could not be read (AccessDenied).]');
  });

  it('fails transiently when S3 does not answer, so that the check is retried', async () => {
    await expect(
      read(
        outputs(async () => {
          throw new TransientError('S3 unreachable');
        }),
      ),
    ).rejects.toThrow('S3 unreachable');
  });
});

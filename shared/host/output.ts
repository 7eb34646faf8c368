import { GetObjectCommand, HeadObjectCommand, NoSuchKey, NotFound, type S3Client } from '@aws-sdk/client-s3';
import { hostOutputKey } from '../catalog/keys.ts';
import { classifyAwsError, TransientError } from '../core/errors.ts';
import { type Invocation, OUTPUT_LIMITS, type OutputStream } from './commands.ts';

/**
 * A host command's output beyond what GetCommandInvocation returns: SSM Run
 * Command writes the whole of each stream to S3 (SendCommand's
 * OutputS3BucketName, keys.ts hostOutputKey), and the check stage reads its end
 * there, where a script prints its result line and a failing one its error,
 * after any number of progress lines.
 */
export interface HostOutput {
  /** The last `bytes` bytes of a stream, decoded from its first whole line; undefined when S3 has no such object. */
  end(
    commandId: string,
    instanceId: string,
    stream: OutputStream,
    bytes: number,
  ): Promise<string | undefined>;
}

export function s3HostOutput(s3: S3Client, bucket: string): HostOutput {
  return {
    async end(commandId, instanceId, stream, bytes) {
      const key = hostOutputKey(commandId, instanceId, stream);
      try {
        // The size first: a suffix range (bytes=-N) is S3's, but not every S3-compatible server's.
        const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        const size = head.ContentLength ?? 0;
        if (size === 0) return '';
        const from = Math.max(0, size - bytes);
        const object = await s3.send(
          new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${from}-${size - 1}` }),
        );
        const text = (await object.Body?.transformToString('utf8')) ?? '';
        // Cut anywhere, it may start inside a line (or a character): from the next line on.
        return from === 0 ? text : text.slice(text.indexOf('\n') + 1);
      } catch (error) {
        if (error instanceof NotFound || error instanceof NoSuchKey) return undefined;
        throw classifyAwsError(error, `Reading the output of command ${commandId} at s3://${bucket}/${key}`);
      }
    },
  };
}

/** How much of a stream's end the check reads when Run Command cut it: a result line and an error fit. */
const END_BYTES = 64 * 1024;

/**
 * A finished command's stream as the check reads it: whole when Run Command
 * returned it whole; else its last 64 KiB from S3, where the result line and the
 * error are; else the complete lines Run Command returned and why the rest is
 * missing (`location` says where it was looked for). S3 not answering is
 * transient (the stage is retried); anything else keeps the command's own outcome.
 */
export async function outputOf(
  output: HostOutput,
  commandId: string,
  invocation: Invocation,
  stream: OutputStream,
  location: string,
): Promise<string> {
  const first = invocation[stream];
  if (first.length < OUTPUT_LIMITS[stream]) return first;
  let missing = `its whole output is not in ${location}; check that the DB host's instance role has HostCommandOutputPolicy`;
  try {
    const end =
      invocation.instanceId === null
        ? undefined
        : await output.end(commandId, invocation.instanceId, stream, END_BYTES);
    if (end !== undefined) return end;
  } catch (error) {
    if (error instanceof TransientError) throw error;
    missing = `its whole output could not be read (${(error as Error).message})`;
  }
  return `${first.slice(0, first.lastIndexOf('\n') + 1)}[Run Command returned only the first ${OUTPUT_LIMITS[stream]} characters of its ${stream}, and ${missing}.]`;
}

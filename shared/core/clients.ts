import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Config } from './config.ts';
import { ConfigError } from './errors.ts';

/**
 * One client per AWS service, created once per process at module scope by the
 * handlers. A local S3-compatible server needs path-style addressing, and
 * checksums only where S3 requires them: local servers store the SDK's default
 * streaming checksum framing as if it were part of the object. A local server
 * over TLS presents its own certificate, trusted as the only CA (S3_CA_BUNDLE)
 * rather than with verification turned off.
 */
export function createS3Client(config: Config): S3Client {
  return new S3Client({
    region: config.AWS_REGION,
    ...(config.S3_ENDPOINT_URL
      ? {
          endpoint: config.S3_ENDPOINT_URL,
          forcePathStyle: true,
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
          maxAttempts: 2,
          ...(config.S3_CA_BUNDLE
            ? { requestHandler: { httpsAgent: new Agent({ ca: readCaBundle(config.S3_CA_BUNDLE) }) } }
            : {}),
        }
      : {}),
  });
}

function readCaBundle(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new ConfigError(
      `S3_CA_BUNDLE names ${file}, which cannot be read; point it at the S3 endpoint's CA certificate (PEM).`,
      { cause },
    );
  }
}

export function createSsmClient(config: Config): SSMClient {
  return new SSMClient({ region: config.AWS_REGION });
}

export function createSnsClient(config: Config): SNSClient {
  return new SNSClient({ region: config.AWS_REGION });
}

export function createSfnClient(config: Config): SFNClient {
  return new SFNClient({ region: config.AWS_REGION });
}

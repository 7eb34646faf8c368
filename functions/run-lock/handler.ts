import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { createS3Client, createSfnClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import {
  type Executions,
  RunLocks,
  runLockRequestSchema,
  sfnExecutions,
} from '../../shared/core/run-lock.ts';

const config = getConfig();
const s3 = createS3Client(config);

/**
 * TakeRunLock and ReleaseRunLock: takes a run's locks (a RunLockHeldError when
 * another running execution holds one) or gives them back. `executions` says
 * whether a holder still runs: Step Functions in AWS, the local runner locally.
 */
export function createHandler(executions: Executions) {
  const locks = new RunLocks(s3, config.BACKUP_BUCKET, executions);
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const request = parseInput(runLockRequestSchema, event, 'The run lock request');
      if (request.action === 'release') {
        const result = await locks.release(request.keys, request.execution);
        logger.info('run locks given back', {
          ...result,
          kept: request.keys.length - result.released.length,
        });
        return result;
      }
      const taken = await locks.take(request);
      logger.info('run locks taken', { ...taken });
      return taken;
    });
}

export const handler = createHandler(sfnExecutions(createSfnClient(config)));

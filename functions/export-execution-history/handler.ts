import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import {
  executionEndedSchema,
  exportedExecution,
  exportHistory,
  type HistoryPages,
  sfnHistoryPages,
} from '../../shared/audit/history-export.ts';
import { createS3Client, createSfnClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';

const config = getConfig();
const s3 = createS3Client(config);

/**
 * EventBridge's status change of every ended execution (ExecutionEndedRule):
 * its whole history goes to the audit trail, create-only. The local runner
 * passes its own reader of the local histories.
 */
export function createHandler(pages: HistoryPages) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const { detail } = parseInput(executionEndedSchema, event, 'The EventBridge status change event');
      const execution = exportedExecution(detail, config.STAGE);
      const result = await exportHistory(s3, config.BACKUP_BUCKET, execution, pages(detail.executionArn));
      logger.info(result.written ? 'execution history exported' : 'execution history already exported', {
        executionArn: detail.executionArn,
        status: detail.status,
        key: result.key,
      });
      return result;
    });
}

export const handler = createHandler(sfnHistoryPages(createSfnClient(config)));

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { type ExecutionHistoryReader, sfnExecutionHistory } from '../../shared/alert/execution-history.ts';
import { workflowOf } from '../../shared/alert/message.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client, createSfnClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput, planRequestSchema } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import * as z from '../../shared/core/schema.ts';
import { cleanupPlanOf } from '../../shared/restore/cleanup.ts';
import { planStoppedRunCleanUp } from '../../shared/restore/stopped-run.ts';
import { SWAP_STATE } from '../../statemachines/staged-swap.ts';

const config = getConfig();
const catalog = new Catalog(createS3Client(config), config.BACKUP_BUCKET);

/**
 * PlanCleanUp, in two places: a failed restore's Catch hands it the run's state
 * (`{ state }`) and gets the clean-up plan; restore-cleanup hands it the status
 * change of an aborted or timed-out run (its plan request) and gets that run's
 * state, read from its history, with the plan.
 */
export function createHandler(history: ExecutionHistoryReader) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const stopped = planRequestSchema.safeParse(event);
      if (stopped.success) {
        const planned = await planStoppedRunCleanUp(catalog, history, stopped.data.input, (arn) =>
          workflowOf(arn, config.STAGE),
        );
        logger.info('clean-up of a stopped run planned', {
          stopped: planned.stopped,
          cleanupPlan: planned.cleanupPlan ?? null,
        });
        return planned;
      }
      const { state } = parseInput(
        z.object({ state: z.unknown() }),
        event,
        `The ${SWAP_STATE.onError} request`,
      );
      const plan = await cleanupPlanOf(catalog, state);
      logger.info('clean-up of a failed run planned', { ...plan });
      return plan;
    });
}

export const handler = createHandler(sfnExecutionHistory(createSfnClient(config)));

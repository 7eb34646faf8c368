import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { type Channels, deliver, slackNotifier, snsNotifier } from '../../shared/alert/delivery.ts';
import { formatCancelAlert, workflowOf } from '../../shared/alert/message.ts';
import { createSfnClient, createSnsClient, createSsmClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { secureString } from '../../shared/core/secrets.ts';
import {
  CLOCK_SKEW_MS,
  type CleanUpStarter,
  cancelHostCommands,
  sfnCleanUpStarter,
  waitUntilEnded,
} from '../../shared/host/cancel.ts';
import { type HostCommands, ssmHostCommands } from '../../shared/host/commands.ts';
import { CLEANED_UP_WORKFLOWS } from '../../shared/restore/cleanup.ts';

const config = getConfig();

export interface CancelDependencies {
  host: HostCommands;
  /** Where the alert naming what was cancelled goes: Slack and SNS in AWS, as sendAlert's. */
  channels: Channels;
  /** Starts restore-cleanup for a stopped restore or database recovery. */
  startCleanUp: CleanUpStarter;
}

/**
 * EventBridge's status change of an aborted or timed-out execution: its host
 * commands still running are cancelled, each logged, and one alert names them.
 * Nothing in flight: logged only (sendAlert already reports the abort itself).
 * A restore or database recovery is then cleaned up: once its cancelled commands
 * have ended, restore-cleanup is started, and its alert names what was
 * cancelled with what is left.
 */
export function createHandler({ host, channels, startCleanUp }: CancelDependencies) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const { detail, cancelled } = await cancelHostCommands(host, event);
      for (const command of cancelled) {
        logger.warn('host command cancelled', {
          executionArn: detail.executionArn,
          status: detail.status,
          ...command,
        });
      }
      if (CLEANED_UP_WORKFLOWS.includes(workflowOf(detail.stateMachineArn, config.STAGE))) {
        const since = new Date(detail.startDate - CLOCK_SKEW_MS);
        const running = await waitUntilEnded(
          host,
          since,
          cancelled.map((c) => c.commandId),
        );
        if (running.length > 0)
          logger.warn('cancelled host commands still running; cleaning up anyway', { running });
        const cleanUp = await startCleanUp({ event, cancelled });
        logger.info('clean-up started', { executionArn: detail.executionArn, cleanUp });
        return { cancelled, cleanUp, deliveredTo: [] };
      }
      if (cancelled.length === 0) {
        logger.info('no host command of the execution was running', { executionArn: detail.executionArn });
        return { cancelled, deliveredTo: [] };
      }
      const alert = formatCancelAlert(detail, cancelled, config.STAGE, config.AWS_REGION);
      const { deliveredTo, failed } = await deliver(alert, channels);
      for (const { channel, reason } of failed) {
        logger.error('alert not delivered', { channel, executionId: alert.executionId, reason });
      }
      return { cancelled, deliveredTo };
    });
}

export const handler = createHandler({
  host: ssmHostCommands(createSsmClient(config)),
  channels: {
    slack: slackNotifier(secureString(config.ALERT_WEBHOOK_PARAMETER, 'the Slack webhook URL')),
    ...(config.ALERT_TOPIC_ARN ? { sns: snsNotifier(createSnsClient(config), config.ALERT_TOPIC_ARN) } : {}),
  },
  startCleanUp: sfnCleanUpStarter(createSfnClient(config), config.STAGE),
});

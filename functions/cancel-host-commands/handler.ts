import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { type Channels, deliver, slackNotifier, snsNotifier } from '../../shared/alert/delivery.ts';
import { formatCancelAlert } from '../../shared/alert/message.ts';
import { createSnsClient, createSsmClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { secureString } from '../../shared/core/secrets.ts';
import { cancelHostCommands } from '../../shared/host/cancel.ts';
import { type HostCommands, ssmHostCommands } from '../../shared/host/commands.ts';

const config = getConfig();

export interface CancelDependencies {
  host: HostCommands;
  /** Where the alert naming what was cancelled goes: Slack and SNS in AWS, as sendAlert's. */
  channels: Channels;
}

/**
 * EventBridge's status change of an aborted or timed-out execution: its host
 * commands still running are cancelled, each logged, and one alert names them.
 * Nothing in flight: logged only (sendAlert already reports the abort itself).
 */
export function createHandler({ host, channels }: CancelDependencies) {
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
});

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import {
  type Channels,
  deliver,
  type Notifier,
  slackNotifier,
  snsNotifier,
} from '../../shared/alert/delivery.ts';
import {
  type ExecutionFinding,
  type ExecutionHistoryReader,
  HISTORY_NOT_READABLE,
  readExecutionFinding,
  sfnExecutionHistory,
} from '../../shared/alert/execution-history.ts';
import {
  type Alert,
  alertRequestSchema,
  type ExecutionStatusChange,
  executionStatusChangeSchema,
  formatAlert,
  formatExecutionAlert,
  isEventBridgeEvent,
} from '../../shared/alert/message.ts';
import { createSfnClient, createSnsClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { ConfigError } from '../../shared/core/errors.ts';
import { parseInput } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import { secureString } from '../../shared/core/secrets.ts';

const config = getConfig();

export interface SendAlertDependencies {
  /** Every channel an alert goes to (Slack and SNS in AWS); one failing does not stop the others. */
  channels: Channels;
  /** Reads the history of an execution EventBridge reports, for its failing state. */
  history: ExecutionHistoryReader;
}

/**
 * The local runner passes its notifier alone (the terminal and .local/alerts.log):
 * one channel, and no history, since no EventBridge reports local executions.
 */
function dependenciesOf(given: SendAlertDependencies | Notifier): SendAlertDependencies {
  if (typeof given !== 'function') return given;
  return {
    channels: { local: given },
    history: async () => {
      throw new Error('Local executions have no Step Functions history.');
    },
  };
}

/** The failing state from the history; an unreadable history still lets the alert go out. */
async function findFailure(
  history: ExecutionHistoryReader,
  detail: ExecutionStatusChange,
): Promise<ExecutionFinding> {
  try {
    return readExecutionFinding(await history(detail.executionArn));
  } catch (error) {
    logger.warn('execution history not readable; alerting without the failing state', {
      executionArn: detail.executionArn,
      reason: (error as Error).message,
    });
    return { state: HISTORY_NOT_READABLE, alreadyAlerted: false };
  }
}

export function createHandler(dependencies: SendAlertDependencies | Notifier) {
  const { channels, history } = dependenciesOf(dependencies);
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      let alert: Alert;
      if (isEventBridgeEvent(event)) {
        const { detail } = parseInput(
          executionStatusChangeSchema,
          event,
          'The EventBridge status change event',
        );
        const finding = await findFailure(history, detail);
        alert = formatExecutionAlert(detail, finding, config.STAGE, config.AWS_REGION);
        // A timeout or an abort skips every Catch, so only FAILED can have been alerted already.
        if (detail.status === 'FAILED' && finding.alreadyAlerted) {
          logger.info('execution already alerted by its workflow; no second alert', {
            workflow: alert.workflow,
            executionId: alert.executionId,
            state: alert.state,
          });
          return {
            error: alert.error,
            cause: `${alert.state}: ${alert.cause}`,
            state: alert.state,
            delivered: true,
            deliveredTo: [],
            alreadyAlerted: true,
          };
        }
      } else {
        alert = formatAlert(
          parseInput(alertRequestSchema, event, 'The alert request'),
          config.STAGE,
          config.AWS_REGION,
        );
      }
      const { deliveredTo, failed } = await deliver(alert, channels);
      // The execution must still fail with the original error; an undelivered
      // alert is logged at error level for the log-based alarm to catch.
      for (const { channel, reason } of failed) {
        logger.error('alert not delivered', {
          channel,
          workflow: alert.workflow,
          executionId: alert.executionId,
          reason,
        });
      }
      return {
        error: alert.error,
        cause: `${alert.state}: ${alert.cause}`,
        state: alert.state,
        delivered: failed.length === 0,
        deliveredTo,
        alreadyAlerted: false,
      };
    });
}

const webhookUrl = secureString(config.ALERT_WEBHOOK_PARAMETER, 'the Slack webhook URL');

/** Without a topic (a local run) every alert still reaches Slack, and the missing topic is logged with each. */
const topicMissing: Notifier = async () => {
  throw new ConfigError(
    'ALERT_TOPIC_ARN is not set, so no alert is e-mailed; deploy with serverless.yml, which sets it to the AlertTopic.',
  );
};

export const handler = createHandler({
  channels: {
    slack: slackNotifier(webhookUrl),
    sns: config.ALERT_TOPIC_ARN ? snsNotifier(createSnsClient(config), config.ALERT_TOPIC_ARN) : topicMissing,
  },
  history: sfnExecutionHistory(createSfnClient(config)),
});

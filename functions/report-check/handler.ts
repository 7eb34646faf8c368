import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { ListSubscriptionsByTopicCommand } from '@aws-sdk/client-sns';
import middy from '@middy/core';
import { createSnsClient } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { logger } from '../../shared/core/logger.ts';
import { secureString } from '../../shared/core/secrets.ts';
import { type AlertChannelCheck, reportCheck } from '../../shared/watch/check.ts';

const config = getConfig();

/** The local runner gives its own channel check (the terminal and its alerts file). */
export function createHandler(alertChannels: AlertChannelCheck) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const report = await reportCheck(config, event, alertChannels);
      logger.info('check passed', { lines: report.lines.length });
      return report;
    });
}

const sns = createSnsClient(config);
const webhookUrl = secureString(config.ALERT_WEBHOOK_PARAMETER, 'the Slack webhook URL');

/**
 * The two channels send-alert delivers to: the Slack webhook in its SecureString
 * (read, never shown), and the alert topic with at least one confirmed subscriber.
 */
const awsChannels: AlertChannelCheck = async () => {
  const slack = await webhookUrl().then(
    (url) =>
      url.startsWith('https://')
        ? { ok: true, text: `Slack: a webhook URL is stored in ${config.ALERT_WEBHOOK_PARAMETER}` }
        : {
            ok: false,
            text: `Slack: ${config.ALERT_WEBHOOK_PARAMETER} holds no https:// URL: aws ssm put-parameter --overwrite --type SecureString --name ${config.ALERT_WEBHOOK_PARAMETER} --value <the webhook URL>`,
          },
    (error: unknown) => ({
      ok: false,
      text: `Slack: ${config.ALERT_WEBHOOK_PARAMETER} cannot be read (${(error as Error).name}): aws ssm put-parameter --type SecureString --name ${config.ALERT_WEBHOOK_PARAMETER} --value <the webhook URL>`,
    }),
  );
  const topic = config.ALERT_TOPIC_ARN;
  if (!topic)
    return [slack, { ok: false, text: 'e-mail: ALERT_TOPIC_ARN is not set: deploy with serverless.yml' }];
  const { Subscriptions = [] } = await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topic }));
  // An unconfirmed subscription's ARN is the text PendingConfirmation: it receives nothing yet.
  const confirmed = Subscriptions.filter((s) => s.SubscriptionArn?.startsWith('arn:')).length;
  const email =
    confirmed > 0
      ? { ok: true, text: `e-mail: ${confirmed} confirmed subscription(s) to ${topic}` }
      : {
          ok: false,
          text: `e-mail: no confirmed subscription to ${topic}: deploy with --param 'alertEmail=<address>' (or aws sns subscribe --topic-arn ${topic} --protocol email --notification-endpoint <address>) and confirm the e-mail`,
        };
  return [slack, email];
};

export const handler = createHandler(awsChannels);

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { getParameter } from '@aws-lambda-powertools/parameters/ssm';
import middy from '@middy/core';
import { alertRequestSchema, formatAlert, type Notifier, slackNotifier } from '../../shared/alert.ts';
import { getConfig } from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';
import { logger } from '../../shared/logger.ts';
import { parseInput } from '../../shared/plan.ts';

const config = getConfig();

export function createHandler(notify: Notifier) {
  return middy()
    .use(injectLambdaContext(logger))
    .handler(async (event: unknown) => {
      const alert = formatAlert(
        parseInput(alertRequestSchema, event, 'The alert request'),
        config.STAGE,
        config.AWS_REGION,
      );
      let delivered = true;
      try {
        await notify(alert);
      } catch (error) {
        // The execution must still fail with the original error; an undelivered
        // alert is logged at error level for the log-based alarm to catch.
        delivered = false;
        logger.error('alert not delivered', {
          workflow: alert.workflow,
          executionId: alert.executionId,
          reason: (error as Error).message,
        });
      }
      return { error: alert.error, cause: `${alert.state}: ${alert.cause}`, state: alert.state, delivered };
    });
}

export const handler = createHandler(
  slackNotifier(async () => {
    const url = await getParameter(config.ALERT_WEBHOOK_PARAMETER, { decrypt: true, maxAge: 300 });
    if (!url)
      throw new ConfigError(
        `SSM parameter ${config.ALERT_WEBHOOK_PARAMETER} is empty; store the Slack webhook URL there.`,
      );
    return url;
  }),
);

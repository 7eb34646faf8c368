import { Logger } from '@aws-lambda-powertools/logger';

/** One logger for every stage; handlers attach the Lambda context with middy. */
export const logger = new Logger({ serviceName: 'kennel-backup' });

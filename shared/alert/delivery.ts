import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { redact } from '../core/redact.ts';
import type { Alert } from './message.ts';

/** Where a written alert goes: Slack and SNS in AWS (send-alert), the terminal and a file locally (local/runner.ts). */

/** Delivers an alert; Slack and SNS in AWS, the terminal and a file locally. */
export type Notifier = (alert: Alert) => Promise<void>;

/** Every channel an alert goes to, by name; each is tried whatever the others do. */
export type Channels = Readonly<Record<string, Notifier>>;

export interface Delivery {
  deliveredTo: string[];
  failed: { channel: string; reason: string }[];
}

/** Sends the alert on every channel at once; a channel that fails is reported, never thrown. */
export async function deliver(alert: Alert, channels: Channels): Promise<Delivery> {
  const names = Object.keys(channels);
  const results = await Promise.allSettled(names.map((name) => (channels[name] as Notifier)(alert)));
  const delivery: Delivery = { deliveredTo: [], failed: [] };
  results.forEach((result, i) => {
    const channel = names[i] as string;
    if (result.status === 'fulfilled') delivery.deliveredTo.push(channel);
    else delivery.failed.push({ channel, reason: redact(errorText(result.reason)) });
  });
  return delivery;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Publishes the alert to the SNS topic that e-mails the operators. */
export function snsNotifier(client: SNSClient, topicArn: string): Notifier {
  return async (alert) => {
    await client.send(
      new PublishCommand({ TopicArn: topicArn, Subject: alert.subject, Message: alert.text }),
    );
  };
}

export function slackNotifier(webhookUrl: () => Promise<string>): Notifier {
  return async (alert) => {
    const response = await fetch(await webhookUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: alert.text }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!response.ok) throw new Error(`Slack answered ${response.status} ${response.statusText}`);
  };
}

/**
 * The real Slack SDK clients against a fake Slack for one test: Web API clients that never retry on their own, and
 * Socket Mode clients with the app's token, all disconnected before the fake closes (a client left running after
 * the fake is gone keeps reconnecting).
 */
import type { TestContext } from 'node:test';
import { LogLevel, WebClient, type WebClientOptions } from '@slack/web-api';
import { SocketModeClient } from '@slack/socket-mode';
import { FakeSlack, type FakeSlackOptions } from './fake-slack.ts';

export interface FakeWithClients {
  fake: FakeSlack;
  /** A Web API client on the fake (bot token `xoxb-test` unless given). */
  web(options?: WebClientOptions, token?: string): WebClient;
  /** A Socket Mode client with the app's token, not yet started; disconnected when the test ends. */
  socket(options?: { clientPingTimeout?: number; serverPingTimeout?: number }): SocketModeClient;
}

export async function fakeWithClients(t: TestContext, opts?: FakeSlackOptions): Promise<FakeWithClients> {
  const fake = await FakeSlack.start(opts);
  const clients: SocketModeClient[] = [];
  // One hook, clients first.
  t.after(async () => {
    await Promise.all(clients.map((client) => client.disconnect()));
    await fake.close();
  });
  return {
    fake,
    web: (options = {}, token = 'xoxb-test') => new WebClient(token, { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, logLevel: LogLevel.ERROR, ...options }),
    socket: (options = {}) => {
      const client = new SocketModeClient({ appToken: 'xapp-test', clientOptions: { slackApiUrl: fake.apiUrl }, logLevel: LogLevel.ERROR, ...options });
      clients.push(client);
      return client;
    },
  };
}

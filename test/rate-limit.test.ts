/**
 * Slack's 429s, end to end: a real IMS against the fake Slack answering `429 Retry-After` on one channel or
 * one method. Alerts are delayed, never dropped; one throttled channel never holds up another.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, ALERTS2, INC_APPS, INC_INFRA, NAGIOS, baseConfig, guardSocketModeShutdownBug, settle, setup, UNPACED } from './harness.ts';

guardSocketModeShutdownBug();

const config = baseConfig({
  rules: [
    { match: 'infra', head: '[Infra]', incident: 'INFRA' },
    { match: 'apps', head: '[Apps]', incident: 'APPS' },
  ],
});
const reposts = (fake: FakeSlack, channel: string) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId);
const numbers = (fake: FakeSlack, channel: string) => reposts(fake, channel).map((m) => Number(/#(\d+)/.exec(m.text)?.[1]));

test('a 429 storm on one incident channel does not delay another, drops nothing and keeps the order', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(config, UNPACED);
  fake.rateLimit('chat.postMessage', { count: 5, retryAfterSec: 1, channel: INC_INFRA });
  for (let n = 1; n <= 20; n++) fake.post(ALERTS, { bot_id: NAGIOS, text: `infra alert #${n}` });
  await fake.waitFor(() => fake.callsTo('chat.postMessage').some((c) => c.params.channel === INC_INFRA && c.status === 429), 'the first 429');
  for (let n = 1; n <= 3; n++) fake.post(ALERTS2, { bot_id: NAGIOS, text: `apps alert #${n}` });

  await fake.waitFor(() => reposts(fake, INC_APPS).length === 3, 'the other channel');
  const infraPostedMeanwhile = reposts(fake, INC_INFRA).length;
  const storm = fake.callsTo('chat.postMessage').filter((c) => c.params.channel === INC_INFRA && c.status === 429).length;
  assert.equal(infraPostedMeanwhile, 0, 'the throttled channel was still waiting');
  assert.ok(storm < 5, `the storm was still going (${storm} of 5 429s so far)`);
  assert.deepEqual(numbers(fake, INC_APPS), [1, 2, 3]);

  await fake.waitFor(() => reposts(fake, INC_INFRA).length === 20, 'all 20 throttled alerts', 15_000);
  await settle(bot);
  assert.deepEqual(numbers(fake, INC_INFRA), Array.from({ length: 20 }, (_, i) => i + 1), 'all 20, once each, in order');
  assert.equal(bot.ims.state.listIncidents().length, 23);
  assert.deepEqual(bot.ims.state.pendingMessages(), [], 'nothing left pending');

  // Retry-After was honoured: no attempt on the throttled channel came sooner than a second after a 429.
  const infraCalls = fake.callsTo('chat.postMessage').filter((c) => c.params.channel === INC_INFRA);
  for (let i = 1; i < infraCalls.length; i++) {
    if (infraCalls[i - 1].status !== 429) continue;
    const gap = infraCalls[i].at - infraCalls[i - 1].at;
    assert.ok(gap >= 950, `retried ${gap} ms after a 429 with Retry-After: 1`);
  }
  assert.equal(infraCalls.filter((c) => c.status === 429).length, 5);
});

test('a 429 on reactions.add is waited out and retried, without holding up incident posts', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(config);
  fake.rateLimit('reactions.add', { count: 2, retryAfterSec: 1 });
  const quiet = fake.post(ALERTS, { bot_id: NAGIOS, text: 'all quiet #1' });
  await fake.waitFor(() => fake.callsTo('reactions.add').some((c) => c.status === 429), 'the first 429');
  fake.post(ALERTS2, { bot_id: NAGIOS, text: 'apps alert #1' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length === 1, 'the incident post');
  assert.equal(quiet.reactions?.length ?? 0, 0, 'the reaction was still throttled when the incident was posted');
  await fake.waitFor(() => quiet.reactions, 'the seen reaction', 8000);
  await settle(bot);
  assert.deepEqual(quiet.reactions?.map((r) => r.name), ['white_check_mark']);
  assert.deepEqual(fake.callsTo('reactions.add').map((c) => c.status), [429, 429, 200]);
  assert.deepEqual(bot.ims.state.pendingMessages(), [], 'nothing left pending');
});

test('a 429 without a channel scope (the whole method) still delivers every alert once, in order per channel', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(config);
  fake.rateLimit('chat.postMessage', { count: 3, retryAfterSec: 1 });
  for (let n = 1; n <= 5; n++) {
    fake.post(ALERTS, { bot_id: NAGIOS, text: `infra alert #${n}` });
    fake.post(ALERTS2, { bot_id: NAGIOS, text: `apps alert #${n}` });
  }
  await fake.waitFor(() => reposts(fake, INC_INFRA).length === 5 && reposts(fake, INC_APPS).length === 5, 'all ten', 10_000);
  await settle(bot);
  assert.deepEqual(numbers(fake, INC_INFRA), [1, 2, 3, 4, 5]);
  assert.deepEqual(numbers(fake, INC_APPS), [1, 2, 3, 4, 5]);
  assert.equal(bot.ims.state.listIncidents().length, 10);
});

test('hundreds of alerts stuck behind a throttled channel do not hold up an alert for another channel', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(config, UNPACED);
  fake.rateLimit('chat.postMessage', { count: 1, retryAfterSec: 3, channel: INC_INFRA });
  // More than IMS keeps in the works at once (128): the intake must not wait for the throttled channel.
  for (let n = 1; n <= 300; n++) fake.post(ALERTS, { bot_id: NAGIOS, text: `infra alert #${n}` });
  await fake.waitFor(() => fake.callsTo('chat.postMessage').some((c) => c.params.channel === INC_INFRA && c.status === 429), 'the 429');
  const throttledAt = Date.now();
  fake.post(ALERTS2, { bot_id: NAGIOS, text: 'apps alert #1' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length === 1, 'the other channel', 10_000);
  assert.ok(Date.now() - throttledAt < 2500, `the other channel waited ${Date.now() - throttledAt} ms, as long as the throttle`);
  assert.equal(reposts(fake, INC_INFRA).length, 0, 'the throttled channel was still waiting');
  await fake.waitFor(() => reposts(fake, INC_INFRA).length === 300, 'all 300 throttled alerts', 30_000);
  await settle(bot);
  assert.deepEqual(numbers(fake, INC_INFRA), Array.from({ length: 300 }, (_, i) => i + 1), 'all 300, once each, in order');
});

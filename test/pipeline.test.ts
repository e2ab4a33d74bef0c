import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ALERTS, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake } from './harness.ts';

guardSocketModeShutdownBug();

test('reposts a matching alert to its incident channel with the label, escaped, and a permalink', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig());
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-01 &lt;!channel&gt; &amp; more' });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS).find((m) => m.bot_id === fake.botId), 'the incident post');
  await settle(bot);
  assert.match(post.text, /^\[Error\] disk error on db-01 &lt;!channel&gt; &amp; more/);
  const blocks = JSON.stringify(post.blocks);
  assert.ok(!blocks.includes('<!channel>'), 'the alert text cannot mention anyone');
  assert.match(blocks, /archives\/C0ALERTS01\/p/);
  assert.equal(bot.ims.state.listIncidents().length, 1);
});

test('pages only the rule hotline in one post', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig());
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  await fake.waitFor(() => fake.messagesIn(INC_INFRA).length, 'the incident post');
  await settle(bot);
  const posts = fake.messagesIn(INC_INFRA);
  assert.equal(posts.length, 1);
  assert.match(posts[0].text, new RegExp(`<@${ONCALL}> <!here>`));
});

test('marks a message that matches no rule as seen', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig());
  t.after(async () => { await bot.stop(); await fake.close(); });
  const msg = fake.post(ALERTS, { user: HUMAN, text: 'all good here' });
  await fake.waitFor(() => msg.reactions?.some((r) => r.name === 'white_check_mark'), 'the seen reaction');
  await settle(bot);
  assert.equal(fake.messagesIn(INC_APPS).length + fake.messagesIn(INC_INFRA).length, 0);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runbooks } from '../examples/custom-plugin.ts';
import { ALERTS, INC_INFRA, NAGIOS, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake } from './harness.ts';

guardSocketModeShutdownBug();

test('the example runbook plugin replies in the incident thread with the rule runbook, host filled in', async (t) => {
  const fake = await startFake();
  const config = baseConfig({
    rules: [{ match: '(?P<host>web-\\d+) is CRITICAL', head: '[Critical]', incident: 'INFRA' }],
    plugins: [runbooks({ '[Critical]': 'https://wiki.example.org/runbooks/{host}' })],
  });
  const bot = await startBot(fake, config);
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  const reply = await fake.waitFor(() => fake.messagesIn(INC_INFRA).find((m) => m.thread_ts && m.thread_ts !== m.ts), 'the runbook reply');
  await settle(bot);
  const incident = fake.messagesIn(INC_INFRA).find((m) => !m.thread_ts || m.thread_ts === m.ts)!;
  assert.equal(reply.thread_ts, incident.ts);
  assert.match(reply.text, /https:\/\/wiki\.example\.org\/runbooks\/web-03/);
  assert.ok(bot.logs.some((l) => l.includes('[runbooks] runbook linked for incident #1')));
});

test('the example runbook plugin refuses a link that is not a URL when the config is built', () => {
  assert.throws(() => runbooks({ '[Critical]': 'wiki/critical' }), /runbooks\(\): the link for '\[Critical\]' must be an http\(s\) URL, found 'wiki\/critical'/);
});

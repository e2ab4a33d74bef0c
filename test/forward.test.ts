import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { test, type TestContext } from 'node:test';
import { ConfigError, loadConfig, type Config } from '../ims.ts';
import { forward, type ForwardOptions } from '../plugins/forward.ts';
import { FakeReceiver } from './fake-receiver.ts';
import { ALERTS, ALERTS2, HUMAN, INC_APPS, INC_INFRA, NAGIOS, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir } from './harness.ts';

guardSocketModeShutdownBug();

const WAIT = 15_000;
const FORWARD_TS = pathToFileURL(path.resolve(import.meta.dirname, '../plugins/forward.ts')).href;

async function setup(t: TestContext, options: Omit<ForwardOptions, 'url' | 'format'> & { format?: ForwardOptions['format'] }, config: Partial<Config> = {}) {
  const fake = await startFake();
  const receiver = await FakeReceiver.start();
  const bot = await startBot(fake, baseConfig({ ...config, plugins: [forward({ url: `${receiver.url}/events`, format: 'json', ...options })] }));
  t.after(async () => {
    await bot.stop();
    await fake.close();
    await receiver.close();
  });
  return { fake, receiver, bot };
}

test('forwards every accepted message as generic JSON, in order, with the rule and label of the ones a rule matches', async (t) => {
  const { fake, receiver, bot } = await setup(t, {});
  const hotline = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  const error = fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-01' });
  const chat = fake.post(ALERTS2, { user: HUMAN, text: 'deploying now' });
  await fake.waitFor(() => receiver.accepted.length >= 3, 'three events', WAIT);
  await fake.waitFor(() => fake.messagesIn(INC_INFRA).length && fake.messagesIn(INC_APPS).length, 'the incident posts', WAIT);
  await settle(bot, 300);

  assert.equal(receiver.requests.length, 3, "IMS's own posts are not forwarded");
  assert.deepEqual(receiver.requests.map((r) => r.body.ts), [hotline.ts, error.ts, chat.ts]);
  const [first, second, third] = receiver.requests;
  assert.equal(first.method, 'POST');
  assert.equal(first.path, '/events');
  assert.match(String(first.headers['content-type']), /^application\/json/);
  assert.equal(first.headers.authorization, undefined, 'no token, no Authorization header');
  assert.deepEqual(first.body, {
    source: 'ims', channel: ALERTS, user: NAGIOS, text: 'PROBLEM web-03 is CRITICAL', ts: hotline.ts,
    time: new Date(Number(hotline.ts) * 1000).toISOString(), rule: 2, label: 'INFRA', head: '[Critical]',
    permalink: `https://fake.slack.com/archives/${ALERTS}/p${hotline.ts.replace('.', '')}`,
  });
  assert.equal(second.body.rule, 3);
  assert.equal(second.body.label, 'APPS');
  assert.deepEqual({ channel: third.body.channel, user: third.body.user, rule: third.body.rule, label: third.body.label, head: third.body.head },
    { channel: ALERTS2, user: HUMAN, rule: null, label: null, head: null });
});

test('posts the Sysdig event shape with a Bearer token and severity 1 for hotline rules, 4 for other incidents, 6 for the rest', async (t) => {
  const { fake, receiver } = await setup(t, { format: 'sysdig', token: 'sysdig-secret' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-01' });
  fake.post(ALERTS, { user: HUMAN, text: 'all good here' });
  await fake.waitFor(() => receiver.accepted.length >= 3, 'three events', WAIT);
  assert.ok(receiver.requests.every((r) => r.headers.authorization === 'Bearer sysdig-secret'));
  assert.deepEqual(receiver.requests.map((r) => r.body), [
    { event: { name: 'INFRA', description: 'PROBLEM web-03 is CRITICAL', severity: 1, tags: { source: 'ims', channel: ALERTS, rule: '2', label: 'INFRA', head: '[Critical]' } } },
    { event: { name: 'APPS', description: 'disk error on db-01', severity: 4, tags: { source: 'ims', channel: ALERTS, rule: '3', label: 'APPS', head: '[Error]' } } },
    { event: { name: 'Slack message', description: 'all good here', severity: 6, tags: { source: 'ims', channel: ALERTS } } },
  ]);
});

test('forwards only the chosen channels, a name resolved to its ID', async (t) => {
  const { fake, receiver, bot } = await setup(t, { channels: ['#alerts-apps'] });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-01' });
  const wanted = fake.post(ALERTS2, { bot_id: NAGIOS, text: 'disk error on app-01' });
  await fake.waitFor(() => receiver.accepted.length >= 1, 'the event', WAIT);
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length === 2, 'both incident posts', WAIT);
  await settle(bot, 300);
  assert.deepEqual(receiver.requests.map((r) => r.body.ts), [wanted.ts]);
});

test('forwards only messages of the listed labels or heads, or of any rule with rules: true', async (t) => {
  const labels = await setup(t, { rules: ['INFRA', '[Error]'] }, { rules: [
    { match: 'CRITICAL', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
    { match: 'timeout', head: '[Timeout]', incident: 'APPS' },
    { match: '(?i)error', head: '[Error]', incident: 'APPS' },
  ] });
  const critical = labels.fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  labels.fake.post(ALERTS, { bot_id: NAGIOS, text: 'gateway timeout' });
  const error = labels.fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-01' });
  labels.fake.post(ALERTS, { user: HUMAN, text: 'all good here' });
  await labels.fake.waitFor(() => labels.receiver.accepted.length >= 2, 'two events', WAIT);
  await labels.fake.waitFor(() => labels.fake.messagesIn(INC_APPS).length === 2, 'the APPS incident posts', WAIT);
  await settle(labels.bot, 300);
  assert.deepEqual(labels.receiver.requests.map((r) => r.body.ts), [critical.ts, error.ts]);

  const any = await setup(t, { rules: true, channels: [ALERTS] });
  const matched = any.fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-02' });
  any.fake.post(ALERTS, { user: HUMAN, text: 'lunch?' });
  const backup = any.fake.post(ALERTS, { bot_id: NAGIOS, text: 'backup finished with error' });
  await any.fake.waitFor(() => any.receiver.accepted.length >= 1, 'the event', WAIT);
  await any.fake.waitFor(() => backup.reactions?.length, 'the suppressed backup message handled', WAIT);
  await settle(any.bot, 300);
  assert.deepEqual(any.receiver.requests.map((r) => r.body.ts), [matched.ts], 'a suppression rule is not an incident rule');
});

test('keeps events queued while the receiver is down and delivers each once, in order, when it is back', async (t) => {
  const { fake, receiver, bot } = await setup(t, {});
  receiver.setDown('refuse');
  const first = fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-01' });
  await fake.waitFor(() => receiver.requests.length >= 1, 'a refused attempt', WAIT);
  receiver.setDown(503);
  const rest = ['PROBLEM web-03 is CRITICAL', 'all good here'].map((text) => fake.post(ALERTS, { bot_id: NAGIOS, text }));
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 3, 'three events queued', WAIT);
  await fake.waitFor(() => receiver.requests.some((r) => r.status === 503), 'a 503', WAIT);
  assert.equal(receiver.accepted.length, 0);

  receiver.setDown(false);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 0, 'the queue to drain', 20_000);
  await settle(bot, 300);
  assert.deepEqual(receiver.accepted.map((r) => r.body.ts), [first, ...rest].map((m) => m.ts), 'each once, in order');
  // Every attempt at one message carries the same Idempotency-Key, so a receiver can drop a repeat.
  const keysOfFirst = new Set(receiver.requests.filter((r) => r.status !== 0 && r.body?.ts === first.ts).map((r) => r.headers['idempotency-key']));
  assert.deepEqual([...keysOfFirst], [`ims:msg:${ALERTS}:${first.ts}`]);
  assert.equal(new Set(receiver.accepted.map((r) => r.headers['idempotency-key'])).size, 3, 'one key per message');
});

test('gives up an event the receiver refuses with a 4xx and goes on with the next', async (t) => {
  const { fake, receiver, bot } = await setup(t, {});
  receiver.failNext(1, 422);
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-01' });
  await fake.waitFor(() => bot.logs.find((l) => /gave up on msg:/.test(l)), 'the give-up line', WAIT);
  assert.match(bot.logs.find((l) => /gave up on msg:/.test(l))!, /answered 422/);
  const next = fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-02' });
  await fake.waitFor(() => receiver.accepted.length === 1, 'the next event', WAIT);
  assert.equal(receiver.accepted[0].body.ts, next.ts);
  assert.equal(receiver.requests.length, 2, 'the refused one was not retried');
});

test('refuses bad options when the config is loaded, naming what is wrong', async () => {
  const dir = tempDir();
  const load = async (options: string) => {
    const file = path.join(dir, `ims.config.${Math.random().toString(36).slice(2)}.ts`);
    writeFileSync(file, `import { forward } from ${JSON.stringify(FORWARD_TS)};\nexport default { ...${JSON.stringify(baseConfig())}, plugins: [forward(${options})] };\n`);
    return loadConfig({ path: file });
  };
  const refused = (pattern: RegExp) => (error: unknown) => error instanceof ConfigError && pattern.test(error.message);
  await assert.rejects(load(`{ url: 'not a url', format: 'json' }`), refused(/forward: url 'not a url' is not an http\(s\) URL/));
  await assert.rejects(load(`{ url: 'https://hooks.example.org/ims', format: 'xml' }`), refused(/format must be 'json' or 'sysdig'/));
  await assert.rejects(load(`{ url: 'https://app.sysdigcloud.com/api/v2/events', format: 'sysdig', token: process.env.NO_SUCH_TOKEN_VARIABLE }`), refused(/format 'sysdig' needs token/));
  await assert.rejects(load(`{ url: 'https://hooks.example.org/ims', format: 'json', rules: [] }`), refused(/rules must be true/));
  await assert.rejects(load(`{ url: 'https://hooks.example.org/ims', format: 'json', channels: 'C0ALERTS01' }`), refused(/channels must be a non-empty list/));
  const loaded = await load(`{ url: 'https://hooks.example.org/ims', format: 'json', name: 'forward-hooks' }`);
  assert.deepEqual(loaded.plugins.map((p) => p.name), ['forward-hooks']);
});

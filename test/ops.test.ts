/**
 * The operations endpoint: `/healthz` (connected to Slack, state reachable, role) and `/metrics` in Prometheus'
 * format, in process and as a user runs it (`--http`, `IMS_INSTANCE` naming the instance in every log line).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { definePlugin } from '../ims.ts';
import { parseListen } from '../ims-http.ts';
import { ALERTS, INC_APPS, INC_INFRA, NAGIOS, baseConfig, guardSocketModeShutdownBug, settle, setup, tempDir } from './harness.ts';
import { exitOf, spawnBot } from './faults.ts';

guardSocketModeShutdownBug();

const get = async (address: { host: string; port: number }, what: string) => {
  const response = await fetch(`http://${address.host}:${address.port}${what}`);
  return { status: response.status, type: response.headers.get('content-type') ?? '', text: await response.text() };
};

/** The value of one sample line of an exposition text (`name{labels} value`), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
  }
  return undefined;
}

test('where to listen is read as host:port, :port or port, on 127.0.0.1 unless a host is given', () => {
  assert.deepEqual(parseListen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseListen(':9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseListen('9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseListen('[::1]:9464'), { host: '::1', port: 9464 });
  for (const bad of ['', 'localhost', '127.0.0.1:', '1:2:3', '127.0.0.1:70000', 'http://x:1']) assert.equal(parseListen(bad), undefined, bad);
});

test('/healthz says connected, state reachable and the role; /metrics counts events, acks, decisions, incidents, posts and hook failures', async (t) => {
  const { fake, start } = await setup(t);
  const failing = definePlugin({ name: 'flaky', onMatch: () => { throw new Error('boom'); } });
  const bot = await start(baseConfig({ plugins: [failing] }), { http: { host: '127.0.0.1', port: 0 }, instance: 'ims-test-a' });
  const address = bot.ims.httpAddress!;
  assert.ok(address.port > 0);
  const health = await get(address, '/healthz');
  assert.equal(health.status, 200);
  assert.match(health.type, /application\/json/);
  assert.deepEqual(JSON.parse(health.text), { ok: true, instance: 'ims-test-a', slack: 'connected', state: 'reachable', role: 'leader', problems: [] });

  fake.post(ALERTS, { bot_id: NAGIOS, text: 'payment api error rate 12%' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'all good here' });
  await fake.waitFor(() => fake.messagesIn(INC_INFRA).length === 1 && fake.messagesIn(INC_APPS).length === 1, 'two incident posts');
  await settle(bot, 200);
  const metrics = await get(address, '/metrics');
  assert.equal(metrics.status, 200);
  assert.match(metrics.type, /^text\/plain; version=0\.0\.4/);
  const text = metrics.text;
  assert.ok((sample(text, 'ims_events_received_total', { type: 'message' }) ?? 0) >= 3, text);
  assert.ok((sample(text, 'ims_events_acknowledged_total', { type: 'message' }) ?? 0) >= 3);
  assert.ok((sample(text, 'ims_ack_latency_seconds_count', { type: 'message' }) ?? 0) >= 3);
  assert.ok(sample(text, 'ims_ack_latency_seconds_bucket', { type: 'message', le: '+Inf' }) !== undefined);
  assert.equal(sample(text, 'ims_alerts_total', { decision: 'incident' }), 2);
  assert.equal(sample(text, 'ims_alerts_total', { decision: 'seen' }), 1);
  assert.equal(sample(text, 'ims_incidents_opened_total'), 2);
  assert.equal(sample(text, 'ims_incidents_open'), 2);
  assert.equal(sample(text, 'ims_slack_posts_total', { channel: INC_APPS }), 1);
  assert.equal(sample(text, 'ims_hook_failures_total', { plugin: 'flaky', hook: 'onMatch' }), 2);
  assert.equal(sample(text, 'ims_instance_role', { role: 'leader' }), 1);
  assert.equal(sample(text, 'ims_slack_connected'), 1);
  assert.equal(sample(text, 'ims_outbox_depth'), 0);
  assert.equal(sample(text, 'ims_queue_depth'), 0);
  assert.ok(sample(text, 'ims_process_resident_memory_bytes') !== undefined, 'process metrics too');
  assert.match(text, /instance="ims-test-a"/);

  // 429s on posts are counted per channel.
  fake.rateLimit('chat.postMessage', { count: 1, retryAfterSec: 1, channel: INC_APPS });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'checkout error 500' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length === 2, 'the post after the 429', 10_000);
  await settle(bot);
  assert.equal(sample((await get(address, '/metrics')).text, 'ims_slack_rate_limited_total', { channel: INC_APPS }), 1);

  // Disconnected from Slack: unhealthy, and why.
  fake.setAcceptConnections(false);
  fake.dropConnections();
  await fake.waitFor(async () => (await get(address, '/healthz')).status === 503, 'healthz to turn 503', 5000);
  const down = JSON.parse((await get(address, '/healthz')).text);
  assert.equal(down.slack, 'disconnected');
  assert.deepEqual(down.problems, ['not connected to Slack (Socket Mode)']);
  assert.equal((await get(address, '/nothing')).status, 404);
  fake.setAcceptConnections(true);
});

test('without --http nothing listens and prom-client is not loaded', async (t) => {
  const { start } = await setup(t);
  const bot = await start(baseConfig());
  assert.equal(bot.ims.httpAddress, undefined);
  assert.equal(bot.ims.metrics.enabled, false);
});

test('as a user runs it: --http serves /healthz, IMS_INSTANCE names the instance in every log line, and a taken port stops start-up clearly', async (t) => {
  const { fake } = await setup(t, { botToken: 'xoxb-ops-test-123456', appToken: 'xapp-ops-test-123456' });
  const dir = tempDir();
  const file = path.join(dir, 'ims.json');
  writeFileSync(file, JSON.stringify({ timezone: 'UTC', rules: [{ match: 'error', head: '[Error]', incident: 'APPS' }], incidents: { APPS: { channel: INC_APPS } }, state: { path: path.join(dir, 'ims.db') } }));
  const env = { SLACK_APP_TOKEN: 'xapp-ops-test-123456', SLACK_BOT_TOKEN: 'xoxb-ops-test-123456', SLACK_API_URL: fake.apiUrl, IMS_INSTANCE: 'ims-blue' };
  const run = spawnBot(t, ['--config', file, '--no-incident', '--http', '127.0.0.1:0'], env);
  await fake.waitForConnection(undefined, 15_000);
  const port = Number(await fake.waitFor(() => /operations endpoint on http:\/\/127\.0\.0\.1:(\d+)/.exec(run.stderr())?.[1], 'the endpoint line', 10_000));
  const health = await get({ host: '127.0.0.1', port }, '/healthz');
  assert.equal(JSON.parse(health.text).instance, 'ims-blue');
  const second = spawnBot(t, ['--config', file, '--no-incident', '--http', `127.0.0.1:${port}`], { ...env, IMS_INSTANCE: 'ims-green' });
  const { code } = await exitOf(second);
  assert.equal(code, 1);
  assert.match(second.stderr(), /--http 127\.0\.0\.1:\d+: cannot listen \(EADDRINUSE\)/);
  run.child.kill('SIGTERM');
  assert.equal((await exitOf(run)).code, 0);
  const lines = run.stderr().split('\n').filter((l) => /^\d{4}-/.test(l));
  assert.ok(lines.length > 3);
  for (const line of lines) assert.match(line, / instance=ims-blue$/, line);
});

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { test, type TestContext } from 'node:test';
import { ConfigError, loadConfig, type Config } from '../ims.ts';
import { argus, type ArgusOptions } from '../plugins/argus.ts';
import { FakeArgus, type FakeArgusOptions } from './fake-argus.ts';
import type { FakeSlack } from './fake-slack.ts';
import {
  ALERTS, HUMAN, INC_APPS, INC_INFRA, DEFAULT_CH, NAGIOS, REPORT, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir, type Bot,
} from './harness.ts';

guardSocketModeShutdownBug();

const TOKEN = 'argus-test-token';
const WAIT = 15_000;
const ARGUS_TS = pathToFileURL(path.resolve(import.meta.dirname, '../plugins/argus.ts')).href;

/** The base config with a hotline rule that extracts `host` (and a group whose name is no valid tag key). */
function config(overrides: Partial<Config> = {}): Config {
  return baseConfig({
    rules: [
      { match: 'PROBLEM (?P<host>[a-z0-9-]+)/(?P<Service>\\S+) is CRITICAL', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
      { match: '(?i)error', head: '[Error]', incident: 'APPS' },
    ],
    ...overrides,
  });
}

async function setup(t: TestContext, options: { argus?: Partial<ArgusOptions>; fake?: FakeArgusOptions; config?: Partial<Config>; reverse?: boolean } = {}) {
  const fake = await startFake();
  const server = await FakeArgus.start(options.fake);
  const statePath = path.join(tempDir(), 'ims.db');
  const plugin = () => argus({ url: server.url, token: TOKEN, heartbeatMs: 0, ...options.argus });
  const bot = await startBot(fake, config({ ...options.config, plugins: [plugin()] }), { statePath, reverse: options.reverse });
  const bots: Bot[] = [bot];
  t.after(async () => {
    for (const b of bots) await b.stop();
    await fake.close();
    await server.close();
  });
  /** A new IMS on the same state file, as after a restart (with a fresh plugin instance). */
  const restart = async (argusOptions: Partial<ArgusOptions> = {}) => {
    const next = await startBot(fake, config({ ...options.config, plugins: [argus({ url: server.url, token: TOKEN, heartbeatMs: 0, ...options.argus, ...argusOptions })] }), { statePath });
    bots.push(next);
    return next;
  };
  return { fake, server, bot, restart, statePath };
}

const incidentPost = (fake: FakeSlack, channel: string, sourceTs: string) =>
  fake.messagesIn(channel).find((m) => m.bot_id === fake.botId && JSON.stringify(m.metadata ?? {}).includes(sourceTs));

const creates = (server: FakeArgus, sid: string) =>
  server.requests.filter((r) => r.method === 'POST' && r.path === '/api/v2/incidents/' && r.status === 201 && r.body?.source_incident_id === sid).length;

const eventTypes = (server: FakeArgus, sid: string) => server.incidents.find((i) => i.source_incident_id === sid)?.events.map((e) => e.type);

test('creates a stateful Argus incident with the alert time, text, link, level and tags, ends it on ✅ and restarts it when ✅ is removed', async (t) => {
  const { fake, server, bot } = await setup(t, { argus: { level: 4, tags: { site: 'oslo' } } });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03/HTTP is CRITICAL' });
  const sid = `${ALERTS}:${alert.ts}`;
  const incident = await fake.waitFor(() => server.incidents.find((i) => i.source_incident_id === sid), 'the Argus incident', WAIT);
  const post = incidentPost(fake, INC_INFRA, alert.ts)!;
  assert.ok(post, 'the incident was posted in Slack');

  assert.equal(incident.start_time, new Date(Number(alert.ts) * 1000).toISOString());
  assert.equal(incident.end_time, 'infinity');
  assert.equal(incident.stateful, true);
  assert.equal(incident.open, true);
  assert.equal(incident.description, '[Critical] PROBLEM web-03/HTTP is CRITICAL');
  assert.equal(incident.level, 2, 'a hotline rule is level 2 (High)');
  assert.match(incident.details_url, new RegExp(`archives/${INC_INFRA}/p${post.ts.replace('.', '')}$`));
  assert.deepEqual(incident.tags.map((tg) => tg.tag).sort(), [`channel=${ALERTS}`, 'host=web-03', 'label=INFRA', 'rule=1', 'site=oslo']);
  const create = server.requests.find((r) => r.path === '/api/v2/incidents/' && r.method === 'POST')!;
  assert.equal(create.headers.authorization, `Token ${TOKEN}`);

  const other = fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-01' });
  const plain = await fake.waitFor(() => server.incidents.find((i) => i.source_incident_id === `${ALERTS}:${other.ts}`), 'the second incident', WAIT);
  assert.equal(plain.level, 4, 'other rules get the configured level');
  assert.ok(plain.tags.some((tg) => tg.tag === 'label=APPS') && plain.tags.some((tg) => tg.tag === 'rule=2'));
  assert.ok(incidentPost(fake, INC_APPS, other.ts));

  fake.react(INC_INFRA, post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => !incident.open, 'the END event', WAIT);
  assert.notEqual(incident.end_time, 'infinity');
  fake.unreact(INC_INFRA, post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => incident.open, 'the RES event', WAIT);
  await settle(bot);
  assert.deepEqual(eventTypes(server, sid), ['STA', 'END', 'RES']);
  assert.ok(server.requests.every((r) => r.path.endsWith('/')), 'every path ends with /');
  assert.equal(creates(server, sid), 1);
  assert.equal(bot.ims.state.outboxStats().depth, 0);
});

// ─── Alert lifecycles ───

/** Alerts' own times, hours back (lifecycle windows are measured on them), so every offset used is in the past. */
const T0 = Math.floor(Date.now() / 1000) - 4 * 3600;
const at = (seconds: number) => (T0 + seconds).toFixed(6);
const isoAt = (seconds: number) => new Date((T0 + seconds) * 1000).toISOString();

/** Nagios Core's default service notification (`notify-service-by-email`), as its Slack relays post it. */
const nagios = (fake: FakeSlack, kind: 'PROBLEM' | 'RECOVERY', seconds: number) => fake.post(ALERTS, {
  bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', ts: at(seconds),
  text: `** ${kind} Service Alert: web-03/HTTP is ${kind === 'PROBLEM' ? 'CRITICAL' : 'OK'} **\nNotification Type: ${kind}\nHost: web-03\nService: HTTP\nState: ${kind === 'PROBLEM' ? 'CRITICAL' : 'OK'}\nInfo: check output`,
});
const LIFECYCLE_RULES: Partial<Config> = { rules: [{ match: 'CRITICAL', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' }] };

test("the integration's recovery ends the Argus incident at the recovery's time, firing again within the reopen window restarts it, and repeats change nothing in Argus", async (t) => {
  const { fake, server, bot } = await setup(t, { config: LIFECYCLE_RULES });
  const problem = nagios(fake, 'PROBLEM', 0);
  const sid = `${ALERTS}:${problem.ts}`;
  const incident = await fake.waitFor(() => server.incidents.find((i) => i.source_incident_id === sid), 'the Argus incident', WAIT);
  const repeat = nagios(fake, 'PROBLEM', 300);
  await fake.waitFor(() => bot.ims.state.listIncidents()[0]?.repeats === 1 && repeat.reactions?.length, 'the repeat folded in', WAIT);

  const recovery = nagios(fake, 'RECOVERY', 1380);
  await fake.waitFor(() => !incident.open, 'the END', WAIT);
  assert.equal(incident.end_time, isoAt(1380), "ended at the recovery's time");
  assert.equal(incident.events.at(-1)!.description, `Recovered: the integration's recovery ${bot.ims.permalink(ALERTS, recovery.ts)}`);

  const again = nagios(fake, 'PROBLEM', 1800);
  await fake.waitFor(() => incident.open, 'the RES', WAIT);
  assert.equal(incident.end_time, 'infinity');
  assert.deepEqual(incident.events.at(-1), { pk: incident.events.at(-1)!.pk, timestamp: isoAt(1800), type: 'RES', description: `Fired again within the reopen window: ${bot.ims.permalink(ALERTS, again.ts)}` });

  // IMS read these alerts hours after their time: its resolutions and reopenings fall on one instant, and are still each sent.
  nagios(fake, 'RECOVERY', 2400);
  await fake.waitFor(() => !incident.open, 'the second END', WAIT);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 0, 'nothing left queued', WAIT);
  await settle(bot);
  assert.deepEqual(eventTypes(server, sid), ['STA', 'END', 'RES', 'END']);
  assert.equal(incident.end_time, isoAt(2400));
  assert.equal(creates(server, sid), 1);
  assert.equal(server.incidents.length, 1);
});

test('on an Argus without INCIDENT_RESTART (releases up to 2.9.1 answer RES with 400), an alert firing again opens a new Argus incident, which its next recovery ends', async (t) => {
  const { fake, server, bot } = await setup(t, { config: LIFECYCLE_RULES });
  const problem = nagios(fake, 'PROBLEM', 0);
  const sid = `${ALERTS}:${problem.ts}`;
  const first = await fake.waitFor(() => server.incidents.find((i) => i.source_incident_id === sid), 'the Argus incident', WAIT);
  nagios(fake, 'RECOVERY', 600);
  await fake.waitFor(() => !first.open, 'the END', WAIT);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 0, 'the END delivered', WAIT);

  // What Argus 2.9.1 answers a RES: the event type does not exist there (its serializer's choice field).
  server.failNext(1, 400, { type: ['"RES" is not a valid choice.'] });
  nagios(fake, 'PROBLEM', 1200);
  const restarted = await fake.waitFor(() => server.incidents.find((i) => i.source_incident_id === `${sid}:restart:1`), 'the restart incident', WAIT);
  assert.equal(restarted.open, true);
  assert.equal(restarted.start_time, isoAt(1200));
  assert.equal(restarted.metadata.restart_of, sid);
  assert.deepEqual(restarted.tags.map((tg) => tg.tag).sort(), first.tags.map((tg) => tg.tag).sort(), 'the same tags');
  assert.ok(server.requests.some((r) => r.body?.type === 'RES' && r.status === 400), 'the RES was tried first');
  // Logged once the new incident is created, which the server may see a moment before the log line is written.
  await fake.waitFor(() => bot.logs.some((l) => /refused RES for .*reopened as Argus incident/.test(l)), 'the log line', WAIT);

  nagios(fake, 'RECOVERY', 1500);
  await fake.waitFor(() => !restarted.open, "the restart incident ended by the next recovery", WAIT);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 0, 'nothing left queued', WAIT);
  assert.deepEqual(eventTypes(server, `${sid}:restart:1`), ['STA', 'END']);
  assert.deepEqual(eventTypes(server, sid), ['STA', 'END'], 'the first stays as it ended');
  assert.ok(!bot.logs.some((l) => /gave up/.test(l)));
});

test('exports reverse-mode reposts as incidents tagged label=DEFAULT', async (t) => {
  const { fake, server } = await setup(t, { reverse: true });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'something new happened' });
  const incident = await fake.waitFor(() => server.incidents.find((i) => i.source_incident_id === `${ALERTS}:${alert.ts}`), 'the Argus incident', WAIT);
  assert.ok(incidentPost(fake, DEFAULT_CH, alert.ts), 'reposted to the DEFAULT channel');
  assert.equal(incident.level, 3);
  assert.equal(incident.description, '[Alert] something new happened');
  assert.deepEqual(incident.tags.map((tg) => tg.tag).sort(), [`channel=${ALERTS}`, 'label=DEFAULT', 'rule=none']);
});

test('keeps changes queued while Argus is down and sends each once, in order, when it is back', async (t) => {
  const { fake, server, bot } = await setup(t);
  server.setDown(true, { status: 503 });
  const alerts = ['PROBLEM web-01/HTTP is CRITICAL', 'PROBLEM web-02/HTTP is CRITICAL', 'error in app-7'].map((text) => fake.post(ALERTS, { bot_id: NAGIOS, text }));
  const first = await fake.waitFor(() => incidentPost(fake, INC_INFRA, alerts[0].ts), 'the first incident post', WAIT);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 3, 'three creations queued', WAIT);
  fake.react(INC_INFRA, first.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 4, 'three creations and an END queued', WAIT);
  await fake.waitFor(() => server.requests.filter((r) => r.status === 503).length >= 4, 'several refused attempts', WAIT);
  assert.equal(server.incidents.length, 0);

  server.setDown(false);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 0, 'the queue to drain', 20_000);
  for (const alert of alerts) assert.equal(creates(server, `${ALERTS}:${alert.ts}`), 1, 'created exactly once');
  assert.equal(server.incidents.length, 3);
  assert.deepEqual(eventTypes(server, `${ALERTS}:${alerts[0].ts}`), ['STA', 'END']);
  const created = server.incidents.find((i) => i.source_incident_id === `${ALERTS}:${alerts[0].ts}`)!;
  assert.equal(created.open, false);
  const order = server.requests.filter((r) => r.status === 201).map((r) => r.path === '/api/v2/incidents/' ? `create ${r.body.source_incident_id}` : `event ${r.path}`);
  assert.ok(order.indexOf(`create ${ALERTS}:${alerts[0].ts}`) < order.indexOf(`event /api/v2/incidents/${created.pk}/events/`), 'the END follows its creation');
});

test('survives a restart while Argus is unreachable: the new IMS sends the queued creation and END once, in order', async (t) => {
  const { fake, server, bot, restart } = await setup(t);
  server.setDown(true, { mode: 'refuse' });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM db-01/MySQL is CRITICAL' });
  const sid = `${ALERTS}:${alert.ts}`;
  const post = await fake.waitFor(() => incidentPost(fake, INC_INFRA, alert.ts), 'the incident post', WAIT);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 1, 'the creation queued', WAIT);
  fake.react(INC_INFRA, post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 2, 'the creation and the END queued', WAIT);
  await fake.waitFor(() => server.requests.some((r) => r.status === 0), 'a refused connection', WAIT);
  await bot.stop();

  const second = await restart();
  await settle(second);
  server.setDown(false);
  await fake.waitFor(() => server.incidents[0]?.open === false, 'the END after the restart', 20_000);
  await fake.waitFor(() => second.ims.state.outboxStats().depth === 0, 'the queue to drain', WAIT);
  assert.equal(creates(server, sid), 1);
  assert.equal(server.incidents.length, 1);
  assert.deepEqual(eventTypes(server, sid), ['STA', 'END']);
});

test('exports an incident opened before the plugin was configured when it is resolved', async (t) => {
  const fake = await startFake();
  const server = await FakeArgus.start();
  const statePath = path.join(tempDir(), 'ims.db');
  const before = await startBot(fake, config(), { statePath });
  const bots: Bot[] = [before];
  t.after(async () => { for (const b of bots) await b.stop(); await fake.close(); await server.close(); });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-07/HTTP is CRITICAL' });
  const post = await fake.waitFor(() => incidentPost(fake, INC_INFRA, alert.ts), 'the incident post', WAIT);
  await settle(before);
  await before.stop();

  const after = await startBot(fake, config({ plugins: [argus({ url: server.url, token: TOKEN, heartbeatMs: 0 })] }), { statePath });
  bots.push(after);
  fake.react(INC_INFRA, post.ts, 'white_check_mark', HUMAN);
  const incident = await fake.waitFor(() => server.incidents[0]?.open === false && server.incidents[0], 'the closed Argus incident', WAIT);
  assert.equal(incident.source_incident_id, `${ALERTS}:${alert.ts}`);
  assert.deepEqual(incident.events.map((e) => e.type), ['STA', 'END']);
  assert.ok(incident.tags.some((tg) => tg.tag === 'host=web-07'), 'the rule groups are recovered from the text');
  assert.equal(incident.level, 2);
});

test('treats a 400 for a duplicate source_incident_id as created: finds the incident via /incidents/mine/ and ends that one', async (t) => {
  const { fake, server, bot } = await setup(t);
  // A creation that reached Argus but whose answer was lost: the incident already exists.
  const ts = `${Math.floor(Date.now() / 1000)}.000700`;
  const sid = `${ALERTS}:${ts}`;
  const existing = await fetch(`${server.url}/api/v2/incidents/`, {
    method: 'POST', headers: { Authorization: `Token ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ start_time: new Date().toISOString(), end_time: 'infinity', source_incident_id: sid, tags: [], description: 'earlier attempt' }),
  }).then((r) => r.json() as Promise<{ pk: number }>);
  const post = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-09/HTTP is CRITICAL', ts });
  assert.equal(post.ts, ts);
  await fake.waitFor(() => server.requests.some((r) => r.path === '/api/v2/incidents/mine/' && r.query.source_incident_id === sid), 'the lookup', WAIT);
  const incidentPostInSlack = await fake.waitFor(() => incidentPost(fake, INC_INFRA, ts), 'the incident post', WAIT);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 0, 'the creation to count as done', WAIT);
  assert.ok(server.requests.some((r) => r.path === '/api/v2/incidents/' && r.status === 400), 'Argus refused the duplicate');
  assert.equal(server.incidents.length, 1, 'no second incident');

  fake.react(INC_INFRA, incidentPostInSlack.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => server.incidents[0].open === false, 'the END on the existing incident', WAIT);
  assert.equal(server.incidents[0].pk, existing.pk);
  assert.ok(bot.logs.some((l) => l.includes('already existed')));
});

test('gives a creation up with Argus answer in the log when Argus refuses it for another reason', async (t) => {
  const { fake, server, bot } = await setup(t);
  server.failNext(1, 400, { level: ['"9" is not a valid choice.'] });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-04/HTTP is CRITICAL' });
  await fake.waitFor(() => bot.logs.find((l) => /gave up on create:/.test(l)), 'the give-up line', WAIT);
  assert.match(bot.logs.find((l) => /gave up on create:/.test(l))!, /400 .*not a valid choice/);
  assert.equal(server.requests.filter((r) => r.path === '/api/v2/incidents/').length, 1, 'not retried');
  assert.equal(bot.ims.state.outboxStats().depth, 0);
});

test('an expired token gives one loud log line and one report message however often it is retried, keeps the queue, and flushes it once a new token is configured', async (t) => {
  const { fake, server, bot, statePath } = await setup(t, { fake: { tokens: ['old-token', 'new-token'] }, argus: { token: 'old-token', heartbeatMs: 100 } });
  server.expireToken('old-token');
  const alerts = ['PROBLEM web-05/HTTP is CRITICAL', 'error in billing'].map((text) => fake.post(ALERTS, { bot_id: NAGIOS, text }));
  const rejected = () => server.requests.filter((r) => r.status === 401);
  await fake.waitFor(() => rejected().filter((r) => r.path === '/api/v2/incidents/').length >= 5, 'several rejected creations', WAIT);
  await fake.waitFor(() => rejected().filter((r) => r.path.endsWith('/heartbeat/')).length >= 5, 'several rejected heartbeats', WAIT);
  const loud = () => bot.logs.filter((l) => l.includes('ARGUS TOKEN REJECTED'));
  const reported = () => fake.messagesIn(REPORT).filter((m) => m.bot_id === fake.botId && /Argus rejected/.test(m.text));
  assert.equal(loud().length, 1);
  assert.match(loud()[0], /ERROR/);
  assert.match(loud()[0], /Token has expired/);
  assert.equal(reported().length, 1);
  assert.equal(server.incidents.length, 0);
  assert.equal(bot.ims.state.outboxStats().depth, 2, 'the queue is kept');

  // The operator puts a new token in the config; IMS reloads it (the queue and the state stay).
  const file = path.join(path.dirname(statePath), 'ims.config.ts');
  const fresh = { ...config(), state: undefined };
  writeFileSync(file, `import { argus } from ${JSON.stringify(ARGUS_TS)};\nexport default { ...${JSON.stringify(fresh)}, plugins: [argus({ url: ${JSON.stringify(server.url)}, token: 'new-token', heartbeatMs: 100 })] };\n`);
  assert.equal(await bot.ims.reload(file), true);
  await fake.waitFor(() => bot.ims.state.outboxStats().depth === 0, 'the queue to flush with the new token', 20_000);
  for (const alert of alerts) assert.equal(creates(server, `${ALERTS}:${alert.ts}`), 1);
  assert.ok(bot.logs.some((l) => l.includes('accepts the token again')));

  // The heartbeat moved to the new token too: no more 401s, still one loud line and one message.
  const heartbeatsBefore = server.heartbeats;
  const rejectedBefore = rejected().length;
  await new Promise((resolve) => setTimeout(resolve, 600));
  assert.ok(server.heartbeats > heartbeatsBefore, 'heartbeats go on with the new token');
  assert.equal(rejected().length, rejectedBefore, 'nothing is sent with the old token any more');
  assert.equal(loud().length, 1);
  assert.equal(reported().length, 1);
});

test('posts the source heartbeat at start and every heartbeatMs, and stops with IMS', async (t) => {
  const { fake, server, bot } = await setup(t, { argus: { heartbeatMs: 100 } });
  await fake.waitFor(() => server.heartbeats >= 4, 'four heartbeats', WAIT);
  const beat = server.requests.find((r) => r.path === '/api/v2/incidents/sources/heartbeat/')!;
  assert.equal(beat.method, 'POST');
  assert.equal(beat.headers.authorization, `Token ${TOKEN}`);
  assert.equal(beat.status, 204);
  await bot.stop();
  const stoppedAt = server.heartbeats;
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(server.heartbeats, stoppedAt);
});

test('logs a failed heartbeat at warn and keeps beating', async (t) => {
  const { fake, server, bot } = await setup(t, { argus: { heartbeatMs: 100 } });
  server.failNext(2, 502);
  await fake.waitFor(() => bot.logs.some((l) => /WARN .*Argus heartbeat failed: 502/.test(l)), 'the warning', WAIT);
  await fake.waitFor(() => server.heartbeats >= 2, 'heartbeats after the failure', WAIT);
  assert.ok(!bot.logs.some((l) => /ERROR .*\[argus\]/.test(l)));
});

test('refuses bad options when the config is loaded, naming what is wrong', async (t) => {
  const dir = tempDir();
  const load = async (options: string) => {
    const file = path.join(dir, `ims.config.${Math.random().toString(36).slice(2)}.ts`);
    writeFileSync(file, `import { argus } from ${JSON.stringify(ARGUS_TS)};\nexport default { ...${JSON.stringify(config())}, plugins: [argus(${options})] };\n`);
    return loadConfig({ path: file });
  };
  const saved = { url: process.env.ARGUS_URL, token: process.env.ARGUS_TOKEN };
  t.after(() => {
    for (const [key, value] of [['ARGUS_URL', saved.url], ['ARGUS_TOKEN', saved.token]] as const) {
      if (value === undefined) delete process.env[key]; else process.env[key] = value;
    }
  });
  delete process.env.ARGUS_URL;
  delete process.env.ARGUS_TOKEN;
  await assert.rejects(load('{}'), (error: unknown) => error instanceof ConfigError && /ARGUS_URL/.test(error.message) && /ARGUS_TOKEN/.test(error.message));
  await assert.rejects(load(`{ url: 'https://argus.example.org', token: 't', level: 9 }`), (error: unknown) => error instanceof ConfigError && /argus: level must be a whole number from 1/.test(error.message));
  await assert.rejects(load(`{ url: 'https://argus.example.org', token: 't', tags: { 'Bad-Key': 'x' } }`), (error: unknown) => error instanceof ConfigError && /tag key 'Bad-Key'/.test(error.message));
  await assert.rejects(load(`{ url: 'ftp://argus.example.org', token: 't' }`), (error: unknown) => error instanceof ConfigError && /not an http\(s\) URL/.test(error.message));

  process.env.ARGUS_URL = 'https://argus.example.org/api/v2/';
  process.env.ARGUS_TOKEN = 'from-the-environment';
  const loaded = await load('{ heartbeatMs: 0 }');
  assert.deepEqual(loaded.plugins.map((p) => p.name), ['argus']);
});

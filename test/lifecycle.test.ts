/**
 * Alert lifecycles through the real bot against the fake Slack: repeats fold into their incident, recoveries
 * resolve it, a firing within the reopen window reopens it, flapping is calmed, edits and thread replies are
 * read for state changes only, and a config from IMS.ini keeps one incident per message.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { definePlugin, loadIni, type Config, type Incident } from '../ims.ts';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, allStrings, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir } from './harness.ts';

guardSocketModeShutdownBug();

/** Alerts' own times, a few hours back (windows are measured on them), so every offset used here is still in the past. */
const T0 = Math.floor(Date.now() / 1000) - 4 * 3600;
const at = (seconds: number) => (T0 + seconds).toFixed(6);

/** Nagios Core's default service notification, posted as text (what its Slack relays post). */
function nagios(kind: 'PROBLEM' | 'RECOVERY', host: string, service: string, state: string): string {
  return `** ${kind} Service Alert: ${host}/${service} is ${state} **\nNotification Type: ${kind}\nHost: ${host}\nService: ${service}\nState: ${state}\nInfo: check output`;
}

const postNagios = (fake: FakeSlack, seconds: number, kind: 'PROBLEM' | 'RECOVERY', host = 'web-03', service = 'HTTP', state = kind === 'PROBLEM' ? 'CRITICAL' : 'OK') =>
  fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text: nagios(kind, host, service, state), ts: at(seconds) });

const topLevel = (fake: FakeSlack, channel: string) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId && (!m.thread_ts || m.thread_ts === m.ts));
const replies = (fake: FakeSlack, channel: string, post: FakeMessage) => fake.messagesIn(channel).filter((m) => m.thread_ts === post.ts && m.ts !== post.ts);
const seen = (m: FakeMessage) => !!m.reactions?.some((r) => r.name === 'white_check_mark');
const postText = (m: FakeMessage) => allStrings(m.blocks).join('\n');

test('a repeat of an open alert edits its incident post in place instead of posting or paging again', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig());
  t.after(async () => { await bot.stop(); await fake.close(); });
  postNagios(fake, 0, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the incident post');
  const repeat = postNagios(fake, 300, 'PROBLEM');
  await fake.waitFor(() => seen(repeat), 'the repeat marked seen');
  await settle(bot);
  const posts = topLevel(fake, INC_INFRA);
  assert.equal(posts.length, 1, 'one post for the alert');
  assert.equal(fake.messagesIn(INC_INFRA).filter((m) => m.text.includes(`<@${ONCALL}>`)).length, 1, 'paged once');
  const [incident] = await bot.ims.store.listIncidents();
  assert.equal(incident.repeats, 1);
  assert.equal(incident.alertKey, 'nagios:web-03/HTTP');
  assert.match(postText(posts[0]), /Repeated 1 time, last at/);
  assert.ok(fake.callsTo('chat.update').length >= 1);
  // The first repeat is noted in the thread (at most once per repeatNoteEvery).
  assert.equal(replies(fake, INC_INFRA, posts[0]).filter((m) => /Fired again/.test(m.text)).length, 1);
});

test('the integration\'s recovery resolves the incident, says so on its post, and fires onResolve with the recovery', async (t) => {
  const fake = await startFake();
  const resolutions: { user: string; reaction: string; recovery?: { ts: string } }[] = [];
  const plugin = definePlugin({ name: 'watch', onResolve: (ctx) => { resolutions.push({ user: ctx.user, reaction: ctx.reaction, recovery: ctx.recovery }); } });
  const bot = await startBot(fake, baseConfig({ plugins: [plugin] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  postNagios(fake, 0, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the incident post');
  const recovery = postNagios(fake, 1380, 'RECOVERY');
  await fake.waitFor(() => resolutions.length === 1, 'onResolve');
  await settle(bot);
  const [incident] = await bot.ims.store.listIncidents();
  assert.ok(incident.resolvedAt, 'resolved');
  assert.equal(incident.resolvedBy, NAGIOS);
  assert.equal(incident.resolvedAt! - incident.createdAt >= 0, true);
  assert.deepEqual(resolutions[0], { user: NAGIOS, reaction: '', recovery: { channel: ALERTS, ts: recovery.ts, permalink: bot.ims.permalink(ALERTS, recovery.ts) } });
  assert.match(postText(topLevel(fake, INC_INFRA)[0]), /Resolved\* by the integration's <[^|]+\|recovery> after/);
  assert.ok(seen(recovery));
  assert.equal(topLevel(fake, INC_INFRA).length, 1, 'the recovery posts nothing new');
  assert.ok((await bot.ims.store.incidentEvents(incident.id)).some((e) => e.kind === 'recovery'));
});

test('a recovery of an alert with nothing open is only marked seen', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig());
  t.after(async () => { await bot.stop(); await fake.close(); });
  const recovery = postNagios(fake, 0, 'RECOVERY');
  await fake.waitFor(() => seen(recovery), 'seen');
  await settle(bot);
  assert.equal((await bot.ims.store.listIncidents()).length, 0);
  assert.equal(topLevel(fake, INC_INFRA).length, 0);
});

test('an alert that fires again within the reopen window reopens its incident; after the window it is a new incident', async (t) => {
  const fake = await startFake();
  const reopened: Incident[] = [];
  const plugin = definePlugin({ name: 'watch', onReopen: (ctx) => { reopened.push(ctx.incident); } });
  const bot = await startBot(fake, baseConfig({ plugins: [plugin], lifecycle: { reopenWithin: '1h', flapping: false } }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  postNagios(fake, 0, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the incident post');
  postNagios(fake, 600, 'RECOVERY');
  await fake.waitFor(async () => (await bot.ims.store.listIncidents({ open: false })).length === 1, 'resolved');
  postNagios(fake, 1200, 'PROBLEM');
  await fake.waitFor(() => reopened.length === 1, 'onReopen');
  await settle(bot);
  assert.equal((await bot.ims.store.listIncidents()).length, 1);
  assert.equal((await bot.ims.store.listIncidents({ open: true })).length, 1, 'open again');
  assert.match(postText(topLevel(fake, INC_INFRA)[0]), /Firing again/);
  assert.equal(fake.messagesIn(INC_INFRA).filter((m) => m.text.includes(`<@${ONCALL}>`)).length, 1, 'not paged again by default');

  postNagios(fake, 1800, 'RECOVERY');
  await fake.waitFor(async () => (await bot.ims.store.listIncidents({ open: true })).length === 0, 'resolved again');
  postNagios(fake, 1800 + 7200, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 2, 'a new incident after the window');
  await settle(bot);
  assert.equal((await bot.ims.store.listIncidents()).length, 2);
});

test('an alert that keeps changing state is marked flapping on its post, and reopening it pages nobody', async (t) => {
  const fake = await startFake();
  const flaps: boolean[] = [];
  const plugin = definePlugin({ name: 'watch', onFlapping: (ctx) => { flaps.push(ctx.flapping); } });
  const bot = await startBot(fake, baseConfig({ plugins: [plugin], lifecycle: { pageOnReopen: true, flapping: { changes: 3, within: '1h', stableFor: '30m' } } }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  postNagios(fake, 0, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the incident post');
  // Fire → recover → fire → recover → fire: 5 changes within the hour.
  for (const [i, kind] of (['RECOVERY', 'PROBLEM', 'RECOVERY', 'PROBLEM'] as const).entries()) {
    const m = postNagios(fake, 60 * (i + 1), kind);
    await fake.waitFor(() => seen(m), `change ${i + 2}`);
    await settle(bot, 20);
  }
  await settle(bot);
  const [incident] = await bot.ims.store.listIncidents();
  assert.equal(incident.flapping, true);
  assert.deepEqual(flaps, [true]);
  assert.match(postText(topLevel(fake, INC_INFRA)[0]), /Flapping/);
  assert.equal(topLevel(fake, INC_INFRA).length, 1);
  // pageOnReopen pages on the first reopening (before it flapped), never once it flaps.
  const pages = fake.messagesIn(INC_INFRA).filter((m) => m.text.includes(`<@${ONCALL}>`) || allStrings(m.blocks).some((s) => s.includes(`<@${ONCALL}>`)));
  assert.equal(pages.filter((m) => m.thread_ts && m.thread_ts !== m.ts).length, 1, 'one page on the reopening before it flapped');
  // Stable for longer than stableFor: the next message ends the flapping.
  postNagios(fake, 240 + 3600, 'RECOVERY');
  await fake.waitFor(() => flaps.length === 2, 'flapping stopped');
  assert.deepEqual(flaps, [true, false]);
});

test('an integration that resolves by editing its alert (Zabbix) resolves the incident; the edit is never a new alert', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ rules: [{ match: 'Problem', head: '[Zabbix]', incident: 'APPS' }] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const url = 'https://zabbix.example.com/tr_events.php?triggerid=24713&eventid=4829103';
  const title = 'Problem: High CPU utilization (over 90% for 5m)';
  const problem = fake.post(ALERTS, {
    bot_id: 'B0ZABBIX1', user: 'U0ZABBIXB', text: '', bot_profile: { id: 'B0ZABBIX1', name: 'Zabbix' },
    attachments: [{ color: 'E97659', fallback: title, title, title_link: url,
      text: 'Problem started at 10:12:44 on 2026.11.16\nProblem name: High CPU utilization (over 90% for 5m)\nHost: web-02\nSeverity: High\nOriginal problem ID: 4829103\n' }],
  });
  await fake.waitFor(() => topLevel(fake, INC_APPS).length === 1, 'the incident post');
  const resolved = 'Resolved in 9m 41s: High CPU utilization (over 90% for 5m)';
  fake.edit(ALERTS, problem.ts, { attachments: [{ color: '009900', fallback: resolved, title: resolved, title_link: url,
    text: 'Problem has been resolved in 9m 41s at 10:22:25 on 2026.11.16\nProblem name: High CPU utilization (over 90% for 5m)\nHost: web-02\nSeverity: High\nOriginal problem ID: 4829103\n' }] });
  await fake.waitFor(async () => (await bot.ims.store.listIncidents()).length > 0 && (await bot.ims.store.listIncidents({ open: true })).length === 0, 'resolved by the edit');
  await settle(bot);
  assert.equal((await bot.ims.store.listIncidents()).length, 1);
  assert.equal(topLevel(fake, INC_APPS).length, 1, 'the edit posted nothing');
});

test('a person quoting an alert is not an alert, and a thread reply under an alert is not a new one', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig());
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { user: HUMAN, text: `is this still a thing?\n${nagios('PROBLEM', 'web-03', 'HTTP', 'CRITICAL')}` });
  const alert = postNagios(fake, 0, 'PROBLEM', 'db-01', 'Disk');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the real alert\'s post');
  fake.post(ALERTS, { user: HUMAN, thread_ts: alert.ts, text: 'looking, it is CRITICAL indeed' });
  await settle(bot, 300);
  assert.equal(topLevel(fake, INC_INFRA).length, 1);
  assert.equal((await bot.ims.store.listIncidents()).length, 1);
  assert.equal((await bot.ims.store.listIncidents())[0].alertKey, 'nagios:db-01/Disk');
});

test('a rule\'s key groups messages by its named groups, and its resolves pattern marks the recovery', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({
    rules: [{ match: '(?P<host>\\S+) disk (?:FULL|OK)', key: '{host}', resolves: 'disk OK', head: '[Disk]', incident: 'APPS' }],
  }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { bot_id: 'B0CUSTOM1', text: 'db-01 disk FULL (97%)' });
  await fake.waitFor(() => topLevel(fake, INC_APPS).length === 1, 'the incident');
  const repeat = fake.post(ALERTS, { bot_id: 'B0CUSTOM1', text: 'db-01 disk FULL (99%)' });
  const other = fake.post(ALERTS, { bot_id: 'B0CUSTOM1', text: 'db-02 disk FULL (91%)' });
  await fake.waitFor(() => seen(repeat) && topLevel(fake, INC_APPS).length === 2, 'the repeat folded, the other host its own incident');
  fake.post(ALERTS, { bot_id: 'B0CUSTOM1', text: 'db-01 disk OK (40%)' });
  await fake.waitFor(async () => (await bot.ims.store.listIncidents({ open: true })).length === 1, 'db-01 resolved');
  await settle(bot);
  const open = await bot.ims.store.listIncidents({ open: true });
  assert.equal(open[0].alertKey, 'rule 1:db-02');
  assert.ok(other);
});

test('a grouped Alertmanager notification is one incident, resolved when its last member recovers', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ rules: [{ match: 'FIRING', head: '[Prometheus]', incident: 'APPS' }] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const member = (instance: string) => `Labels:\n - alertname = HighCPU\n - instance = ${instance}\n - job = node\n - severity = warning\nAnnotations:\n - summary = CPU high on ${instance}\nSource: http://prometheus:9090/graph\n`;
  const notification = (title: string, text: string) => fake.post(ALERTS, {
    bot_id: 'B0ALERTMGR', username: 'Alertmanager', text: '',
    attachments: [{ color: title.startsWith('[RESOLVED') ? 'good' : 'danger', title, title_link: 'http://alertmanager:9093/#/alerts?receiver=slack', text, fallback: `${title} | http://alertmanager:9093` }],
  });
  notification('[FIRING:2] HighCPU (node warning)', `Alerts Firing:\n${member('web-1:9100')}${member('web-2:9100')}`);
  await fake.waitFor(() => topLevel(fake, INC_APPS).length === 1, 'one incident for the group');
  const partial = notification('[FIRING:1] HighCPU (node warning)', `Alerts Firing:\n${member('web-2:9100')}\n\nAlerts Resolved:\n${member('web-1:9100')}`);
  await fake.waitFor(() => seen(partial), 'the partial recovery read');
  await settle(bot);
  assert.equal((await bot.ims.store.listIncidents({ open: true })).length, 1, 'still open while a member fires');
  notification('[RESOLVED] HighCPU (node warning)', `Alerts Resolved:\n${member('web-2:9100')}`);
  await fake.waitFor(async () => (await bot.ims.store.listIncidents({ open: true })).length === 0, 'resolved with its last member');
  assert.equal(topLevel(fake, INC_APPS).length, 1);
});

test('a config read from IMS.ini keeps one incident per message, unless it turns lifecycles on', async (t) => {
  const fake = await startFake();
  const dir = tempDir();
  const ini = path.join(dir, 'IMS.ini');
  writeFileSync(ini, `[Rules]\nCRITICAL\t.*\t[Critical]\tINFRA\tNo\n\n[Incidents]\nINFRA\t${INC_INFRA}\t10\nAPPS\t${INC_APPS}\t10\n`);
  const legacy: Config = loadIni(ini);
  const bot = await startBot(fake, legacy);
  t.after(async () => { await bot.stop(); await fake.close(); });
  postNagios(fake, 0, 'PROBLEM');
  postNagios(fake, 300, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 2, 'two incidents, as the legacy tool made');
  assert.equal(bot.config.lifecycle.enabled, false);
  assert.equal((await bot.ims.store.listIncidents())[0].alertKey, undefined);
  const { compileConfig } = await import('../ims.ts');
  assert.equal(compileConfig({ ...legacy, lifecycle: { enabled: true } }).lifecycle.enabled, true);
  assert.equal(compileConfig(baseConfig()).lifecycle.enabled, true, 'on by default in ims.config.ts');
});

test('a repeat retried after its alert recovered (its handling failed on the way) does not reopen the incident', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig(), { retryPendingMs: 1500 });
  t.after(async () => { await bot.stop(); await fake.close(); });
  postNagios(fake, 0, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the incident post');
  await settle(bot);
  fake.outage(500, 800, { methods: ['reactions.add'] });
  postNagios(fake, 300, 'PROBLEM');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const recovery = postNagios(fake, 600, 'RECOVERY');
  await fake.waitFor(() => seen(recovery), 'the recovery read');
  await fake.waitFor(async () => (await bot.ims.store.pendingMessages()).length === 0, 'the late repeat retried', 8000);
  await settle(bot);
  assert.equal((await bot.ims.store.listIncidents({ open: true })).length, 0, 'still resolved');
});

test('a person taking back their resolved reaction does not reopen an incident its integration resolved', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig());
  t.after(async () => { await bot.stop(); await fake.close(); });
  postNagios(fake, 0, 'PROBLEM');
  const post = await fake.waitFor(() => topLevel(fake, INC_INFRA)[0], 'the incident post');
  postNagios(fake, 600, 'RECOVERY');
  await fake.waitFor(async () => (await bot.ims.store.listIncidents()).length > 0 && (await bot.ims.store.listIncidents({ open: true })).length === 0, 'resolved by the recovery');
  fake.react(INC_INFRA, post.ts, 'white_check_mark', HUMAN);
  await settle(bot);
  fake.unreact(INC_INFRA, post.ts, 'white_check_mark', HUMAN);
  await settle(bot, 300);
  assert.equal((await bot.ims.store.listIncidents({ open: true })).length, 0);
});

test('an integration\'s reply in an alert\'s thread is read for a recovery, and never opens an incident', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig());
  t.after(async () => { await bot.stop(); await fake.close(); });
  const alert = postNagios(fake, 0, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the incident post');
  const firingReply = fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', thread_ts: alert.ts, text: nagios('PROBLEM', 'db-09', 'Disk', 'CRITICAL'), ts: at(60) });
  const recoveryReply = fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', thread_ts: alert.ts, text: nagios('RECOVERY', 'web-03', 'HTTP', 'OK'), ts: at(120) });
  await fake.waitFor(async () => (await bot.ims.store.listIncidents()).length > 0 && (await bot.ims.store.listIncidents({ open: true })).length === 0, 'resolved by the reply');
  await settle(bot);
  assert.equal(topLevel(fake, INC_INFRA).length, 1, 'the firing reply opened nothing');
  assert.ok(firingReply && seen(recoveryReply));
});

test('Sentry re-opening its issue by editing the alert reopens the incident its Resolve closed', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ rules: [{ match: 'TypeError', head: '[Sentry]', incident: 'APPS' }] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const block = (suffix: string) => [
    { type: 'section', block_id: '{"issue":4429537441,"rule":232}', text: { type: 'mrkdwn', text: ':red_circle: <https://acme.sentry.io/issues/4429537441/?referrer=slack|*TypeError: undefined is not a function*>' } },
    ...(suffix ? [{ type: 'context', elements: [{ type: 'mrkdwn', text: suffix }] }] : []),
  ];
  const alert = fake.post(ALERTS, { bot_id: 'B0SENTRY1', text: '[checkout] TypeError: undefined is not a function', blocks: block('') });
  await fake.waitFor(() => topLevel(fake, INC_APPS).length === 1, 'the incident post');
  fake.edit(ALERTS, alert.ts, { blocks: block(`*Issue resolved by <@${HUMAN}>*`) });
  // The post shows before the incident is recorded: wait for the incident itself to be resolved.
  await fake.waitFor(async () => (await bot.ims.store.listIncidents()).length === 1 && (await bot.ims.store.listIncidents({ open: true })).length === 0, 'resolved by the edit');
  fake.edit(ALERTS, alert.ts, { blocks: block(`*Issue re-opened by <@${HUMAN}>*`) });
  await fake.waitFor(async () => (await bot.ims.store.listIncidents({ open: true })).length === 1, 'reopened by the edit');
  assert.equal(topLevel(fake, INC_APPS).length, 1);
});

test('an integration that resolved its alert by editing it while IMS was away: the next start reads the edit and resolves the incident', async (t) => {
  const fake = await startFake();
  const statePath = path.join(tempDir(), 'ims.db');
  const config = baseConfig({ rules: [{ match: 'Problem', head: '[Zabbix]', incident: 'APPS' }] });
  const first = await startBot(fake, config, { statePath });
  const url = 'https://zabbix.example.com/tr_events.php?triggerid=24713&eventid=4829103';
  const title = 'Problem: High CPU utilization (over 90% for 5m)';
  const problem = fake.post(ALERTS, {
    bot_id: 'B0ZABBIX1', user: 'U0ZABBIXB', text: '', bot_profile: { id: 'B0ZABBIX1', name: 'Zabbix' },
    attachments: [{ color: 'E97659', fallback: title, title, title_link: url, text: 'Problem started at 10:12:44 on 2026.11.16\nProblem name: High CPU utilization (over 90% for 5m)\nHost: web-02\nSeverity: High\n' }],
  });
  await fake.waitFor(() => topLevel(fake, INC_APPS).length === 1, 'the incident post');
  await settle(first);
  await first.stop();
  const resolved = 'Resolved in 9m 41s: High CPU utilization (over 90% for 5m)';
  fake.edit(ALERTS, problem.ts, { attachments: [{ color: '009900', fallback: resolved, title: resolved, title_link: url,
    text: 'Problem has been resolved in 9m 41s at 10:22:25 on 2026.11.16\nProblem name: High CPU utilization (over 90% for 5m)\nHost: web-02\nSeverity: High\n' }] }, { emit: false });
  const second = await startBot(fake, config, { statePath });
  t.after(async () => { await second.stop(); await fake.close(); });
  await fake.waitFor(async () => (await second.ims.store.listIncidents({ open: true })).length === 0, 'resolved by the edit read back');
  assert.equal(topLevel(fake, INC_APPS).length, 1);
});

test('an incident opened before IMS kept alert keys (lifecycles off, or an older ims.db) takes the next repeat of its alert instead of a second incident', async (t) => {
  const fake = await startFake();
  const statePath = path.join(tempDir(), 'ims.db');
  const before = await startBot(fake, baseConfig({ lifecycle: { enabled: false } }), { statePath });
  postNagios(fake, 0, 'PROBLEM');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the incident post');
  await settle(before);
  assert.equal((await before.ims.store.listIncidents())[0].alertKey, undefined);
  await before.stop();
  const after = await startBot(fake, baseConfig(), { statePath });
  t.after(async () => { await after.stop(); await fake.close(); });
  const repeat = postNagios(fake, 300, 'PROBLEM');
  await fake.waitFor(() => seen(repeat), 'the repeat read');
  await settle(after);
  assert.equal(topLevel(fake, INC_INFRA).length, 1, 'no second incident');
  const [incident] = await after.ims.store.listIncidents();
  assert.equal(incident.repeats, 1);
  assert.equal(incident.alertKey, 'nagios:web-03/HTTP');
});

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig, runReport, type Incident } from '../ims.ts';
import { formatDuration, stats } from '../plugins/stats.ts';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT, baseConfig, guardSocketModeShutdownBug, startBot, startFake, tempDir, type Bot } from './harness.ts';

guardSocketModeShutdownBug();

const MIN = 60_000;
const HOUR = 60 * MIN;
const tsOf = (ms: number) => (ms / 1000).toFixed(6);

/** A clock the bot reads (incident creation, report time); Slack-side times come from the events' own ts. */
function clock(start: number) {
  const c = { now: start, fn: () => c.now };
  return c;
}

async function alert(fake: FakeSlack, bot: Bot, text: string): Promise<Incident> {
  const message = fake.post(ALERTS, { bot_id: NAGIOS, text });
  return fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, message.ts), `the incident for '${text}'`);
}

/** A reaction Slack delivers with the given event time. */
function reactAt(fake: FakeSlack, incident: Incident, name: string, user: string, at: number): void {
  fake.react(incident.incidentChannel, incident.incidentTs, name, user, { emit: false });
  fake.sendEvent({ type: 'reaction_added', user, reaction: name, item: { type: 'message', channel: incident.incidentChannel, ts: incident.incidentTs }, event_ts: tsOf(at) });
}

function replyAt(fake: FakeSlack, incident: Incident, from: { user?: string; bot_id?: string }, text: string, at: number): void {
  fake.post(incident.incidentChannel, { ...from, text, thread_ts: incident.incidentTs, ts: tsOf(at) });
}

/** The lines of the stats section of the last report posted. */
function statsSection(fake: FakeSlack): string[] {
  const texts = fake.messagesIn(REPORT).flatMap((m) => (m.blocks ?? []).map((b: { text?: { text?: string } }) => b.text?.text ?? ''));
  const section = texts.filter((t) => t.startsWith('*Response times')).at(-1);
  assert.ok(section, `a stats section in the report: ${JSON.stringify(texts)}`);
  return section.split('\n');
}

test('adds MTTA and MTTR (mean and p90) per label and overall to the report, counting open incidents only as open for', async (t) => {
  const fake = await startFake();
  const t0 = Math.floor((Date.now() - 6 * HOUR) / 1000) * 1000;
  const time = clock(t0);
  const bot = await startBot(fake, baseConfig({ plugins: [stats()] }), { now: time.fn });
  t.after(async () => { await bot.stop(); await fake.close(); });

  const critical = await alert(fake, bot, 'PROBLEM web-01 is CRITICAL');
  time.now = t0 + MIN;
  const error = await alert(fake, bot, 'checkout error: 500');
  time.now = t0 + 2 * MIN;
  const open = await alert(fake, bot, 'PROBLEM web-02 is CRITICAL');
  assert.deepEqual([critical.createdAt, error.createdAt, open.createdAt], [t0, t0 + MIN, t0 + 2 * MIN]);
  assert.equal(error.incidentChannel, INC_APPS);

  reactAt(fake, critical, 'eyes', HUMAN, t0 + 4 * MIN + 10_000);
  reactAt(fake, critical, 'white_check_mark', HUMAN, t0 + HOUR + 2 * MIN);
  replyAt(fake, error, { bot_id: 'B0OTHER01' }, 'auto-diagnostics attached', t0 + MIN + 30_000); // a bot: not an acknowledgement
  replyAt(fake, error, { user: HUMAN }, 'looking at it', t0 + MIN + 9 * MIN);
  reactAt(fake, error, 'white_check_mark', ONCALL, t0 + MIN + 3 * HOUR);
  await fake.waitFor(() => bot.ims.state.incidentById(critical.id)?.resolvedAt && bot.ims.state.incidentById(error.id)?.resolvedAt, 'both resolutions');
  await fake.waitFor(() => bot.ims.state.incidentEvents(error.id).filter((e) => e.kind === 'reply').length === 2, 'both replies recorded');

  time.now = t0 + 2 * MIN + 5 * HOUR;
  assert.equal(await runReport(bot.ims), true);
  assert.deepEqual(statsSection(fake), [
    '*Response times (last 7d)*',
    '[Critical] 2 incidents · MTTA mean 4m 10s p90 4m 10s · MTTR mean 1h 2m p90 1h 2m · 1 open for 5h',
    '[Error] 1 incident · MTTA mean 9m p90 9m · MTTR mean 3h p90 3h',
    'All 3 incidents · MTTA mean 6m 35s p90 9m · MTTR mean 2h 1m p90 3h · 1 open for 5h',
  ]);
  assert.ok(!bot.logs.some((l) => /plugin 'stats' failed/.test(l)));
});

test('honours its own window and groups by incident label; a resolution with nothing before it is the acknowledgement; a restarted IMS reports the same from the state', async (t) => {
  const fake = await startFake();
  const report = Math.floor(Date.now() / 1000) * 1000 + HOUR;
  const time = clock(report - 3 * HOUR);
  const statePath = path.join(tempDir(), 'ims.db');
  const config = () => baseConfig({ plugins: [stats({ window: '2h', groupBy: 'label' })] });
  const bots: Bot[] = [];
  t.after(async () => { for (const b of bots) await b.stop(); await fake.close(); });
  const bot1 = await startBot(fake, config(), { now: time.fn, statePath });
  bots.push(bot1);

  await alert(fake, bot1, 'PROBLEM old-01 is CRITICAL'); // before the window
  time.now = report - 90 * MIN;
  const quiet = await alert(fake, bot1, 'batch error in billing');
  time.now = report - 30 * MIN;
  await alert(fake, bot1, 'PROBLEM web-09 is CRITICAL');
  reactAt(fake, quiet, 'white_check_mark', HUMAN, report - 60 * MIN);
  await fake.waitFor(() => bot1.ims.state.incidentById(quiet.id)?.resolvedAt, 'the resolution');
  await bot1.stop();

  time.now = report;
  const bot2 = await startBot(fake, config(), { now: time.fn, statePath });
  bots.push(bot2);
  assert.equal(await runReport(bot2.ims), true);
  assert.deepEqual(statsSection(fake), [
    '*Response times (last 2h)*',
    'APPS 1 incident · MTTA mean 30m p90 30m · MTTR mean 30m p90 30m',
    'INFRA 1 incident · MTTA — · MTTR — · 1 open for 30m',
    'All 2 incidents · MTTA mean 30m p90 30m · MTTR mean 30m p90 30m · 1 open for 30m',
  ]);
  assert.equal(fake.messagesIn(INC_INFRA).length, 2, 'two INFRA incidents exist, one outside the window');
});

/** Nagios Core's default service notification (`notify-service-by-email`), as its Slack relays post it. */
function nagios(fake: FakeSlack, kind: 'PROBLEM' | 'RECOVERY' | 'ACKNOWLEDGEMENT', subject: string, at: number) {
  const state = kind === 'RECOVERY' ? 'OK' : 'CRITICAL';
  const [host, service] = subject.split('/');
  return fake.post(ALERTS, {
    bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', ts: tsOf(at),
    text: `** ${kind} Service Alert: ${subject} is ${state} **\nNotification Type: ${kind}\nHost: ${host}\nService: ${service}\nState: ${state}\nInfo: check output`,
  });
}

test("MTTR runs from the alert to its integration's recovery on the alerts' own clock, even for an incident IMS opened late; MTTA counts only people, and an acknowledgement made in the monitoring tool", async (t) => {
  const fake = await startFake();
  const t0 = Math.floor((Date.now() - 6 * HOUR) / 1000) * 1000;
  const time = clock(t0 + HOUR); // IMS reads the first alert an hour late (a catch-up after downtime)
  const bot = await startBot(fake, baseConfig({ plugins: [stats()] }), { now: time.fn });
  t.after(async () => { await bot.stop(); await fake.close(); });
  const incidentOf = (ts: string) => fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, ts), `the incident of ${ts}`);
  const resolved = (incident: Incident) => fake.waitFor(() => bot.ims.state.incidentById(incident.id)?.resolvedAt, `incident #${incident.id} resolved`);

  // Opened late, repeated, recovered after 23 minutes: nobody acknowledged it.
  const late = await incidentOf(nagios(fake, 'PROBLEM', 'web-01/HTTP', t0).ts);
  assert.equal(late.createdAt, t0 + HOUR);
  nagios(fake, 'PROBLEM', 'web-01/HTTP', t0 + 5 * MIN);
  await fake.waitFor(() => bot.ims.state.incidentById(late.id)?.repeats === 1, 'the repeat folded');
  nagios(fake, 'RECOVERY', 'web-01/HTTP', t0 + 23 * MIN);
  await resolved(late);

  // A bot's reply is no acknowledgement; the acknowledgement made in Nagios 6 minutes in is.
  time.now = t0 + 2 * HOUR;
  const acked = await incidentOf(nagios(fake, 'PROBLEM', 'db-01/Disk', t0 + 2 * HOUR).ts);
  replyAt(fake, acked, { bot_id: 'B0OTHER01' }, 'auto-diagnostics attached', t0 + 2 * HOUR + MIN);
  nagios(fake, 'ACKNOWLEDGEMENT', 'db-01/Disk', t0 + 2 * HOUR + 6 * MIN);
  await fake.waitFor(() => bot.ims.state.incidentEvents(acked.id).some((e) => e.kind === 'acknowledge'), 'the acknowledgement recorded');
  nagios(fake, 'RECOVERY', 'db-01/Disk', t0 + 2 * HOUR + 40 * MIN);
  await resolved(acked);

  // A person's reaction 2 minutes in; recovered after 10.
  time.now = t0 + 3 * HOUR;
  const watched = await incidentOf(nagios(fake, 'PROBLEM', 'app-01/Queue', t0 + 3 * HOUR).ts);
  reactAt(fake, watched, 'eyes', HUMAN, t0 + 3 * HOUR + 2 * MIN);
  await fake.waitFor(() => bot.ims.state.incidentEvents(watched.id).some((e) => e.kind === 'reaction'), 'the reaction recorded');
  nagios(fake, 'RECOVERY', 'app-01/Queue', t0 + 3 * HOUR + 10 * MIN);
  await resolved(watched);
  assert.deepEqual([late, acked, watched].map((i) => bot.ims.state.incidentById(i.id)!.resolvedBy), [NAGIOS, NAGIOS, NAGIOS], 'all three resolved by the recovery');

  time.now = t0 + 5 * HOUR;
  assert.equal(await runReport(bot.ims), true);
  assert.deepEqual(statsSection(fake), [
    '*Response times (last 7d)*',
    // MTTA: 6m and 2m (the late one had none); MTTR: 23m, 40m, 10m.
    '[Critical] 3 incidents · MTTA mean 4m p90 6m · MTTR mean 24m 20s p90 40m',
  ]);
});

test('formats durations for people: seconds, minutes and seconds, hours and minutes, days and hours', () => {
  assert.deepEqual([0, 45_000, 250_000, 4 * MIN, HOUR + 2 * MIN, 3 * HOUR, 2 * HOUR + 5 * MIN + 59_000, 3 * 24 * HOUR + 4 * HOUR].map(formatDuration),
    ['0s', '45s', '4m 10s', '4m', '1h 2m', '3h', '2h 5m', '3d 4h']);
});

test('refuses a bad window or groupBy when the config is loaded', async () => {
  const dir = tempDir();
  const plugin = new URL('../plugins/stats.ts', import.meta.url).href;
  writeFileSync(path.join(dir, 'ims.config.ts'), [
    `import { stats } from '${plugin}';`,
    `export default { rules: [{ match: 'x', head: '[X]', incident: 'X' }], incidents: { X: { channel: 'C0XXXXXXX' } }, plugins: [stats({ window: 'soon' })] };`,
  ].join('\n'));
  await assert.rejects(loadConfig({ cwd: dir }), (error: unknown) => {
    assert.ok(error instanceof ConfigError, `a ConfigError, got ${error}`);
    assert.ok(error.message.includes(`stats(): option 'window' expects a duration such as '7d', '24h' or milliseconds, found 'soon'`), error.message);
    return true;
  });
  assert.throws(() => stats({ groupBy: 'team' as never }), /^Error: stats\(\): option 'groupBy' expects 'head' or 'label', found 'team'$/);
  assert.throws(() => stats({ window: -5 }), /option 'window' expects a duration .* found -5/);
  assert.throws(() => stats({ windw: '7d' } as never), /stats\(\): unknown option 'windw'; expected one of window, groupBy/);
});

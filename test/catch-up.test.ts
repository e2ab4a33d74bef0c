/**
 * Catch-up and crash recovery, end to end: a real IMS (real SDK clients) against the fake Slack, restarted
 * on the same state file, or cut off from Socket Mode while alerts keep coming.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { WebClient } from '@slack/web-api';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import {
  ALERTS, ALERTS2, INC_APPS, NAGIOS, baseConfig, guardSocketModeShutdownBug, messageEventOf, settle, setup, tempDir, UNPACED } from './harness.ts';

guardSocketModeShutdownBug();

const reposts = (fake: FakeSlack, channel: string) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId && (m.thread_ts === undefined || m.thread_ts === m.ts));
const label = (m: FakeMessage) => /alert \d+|before restart|before the drop|sentinel|old \w+|recent \w+|crashed \w+/.exec(m.text)?.[0];
/** A Slack ts `ageMs` ago (unique enough for one test). */
const tsAgo = (ageMs: number, micro = 0) => `${Math.floor((Date.now() - ageMs) / 1000)}.${String(micro).padStart(6, '0')}`;

test('after a restart, alerts posted while IMS was down are reposted exactly once, in order', async (t) => {
  const { fake, start } = await setup(t);
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: before restart' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length === 1, 'the live repost');
  await settle(first);
  await first.stop();

  const missed = [1, 2, 3].map((n) => fake.post(ALERTS, { bot_id: NAGIOS, text: `ERROR: alert ${n}` }, { emit: false }));
  const quiet = fake.post(ALERTS2, { bot_id: NAGIOS, text: 'all fine on app-2' }, { emit: false });
  const second = await start(baseConfig(), { statePath });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 4 && quiet.reactions, 'the missed alerts');
  await settle(second);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['before restart', 'alert 1', 'alert 2', 'alert 3']);
  assert.deepEqual(quiet.reactions?.map((r) => r.name), ['white_check_mark'], 'a missed non-incident is marked seen');
  assert.deepEqual(second.ims.state.listIncidents().map((i) => i.sourceTs).slice(1), missed.map((m) => m.ts), 'each missed alert is one incident');
  assert.ok(second.logs.some((l) => /caught up 4 message/.test(l)), 'the catch-up is logged with its count');

  // A third start finds nothing new.
  await second.stop();
  const third = await start(baseConfig(), { statePath });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 5, 'the sentinel');
  await settle(third);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['before restart', 'alert 1', 'alert 2', 'alert 3', 'sentinel']);
});

test('alerts that reach IMS both as queued events and through catch-up after a restart are reposted once', async (t) => {
  const { fake, start } = await setup(t);
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath });
  await first.stop();
  // Slack keeps these events for the next connection; catch-up finds the same messages in the history.
  for (let n = 1; n <= 5; n++) fake.post(ALERTS, { bot_id: NAGIOS, text: `ERROR: alert ${n}` });
  const second = await start(baseConfig(), { statePath });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 5, 'the five alerts');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 6, 'the sentinel');
  await settle(second);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['alert 1', 'alert 2', 'alert 3', 'alert 4', 'alert 5', 'sentinel']);
  assert.equal(second.ims.state.listIncidents().length, 6);
});

test('catch-up reads every page of a long history and waits out a 429 on conversations.history', async (t) => {
  const { fake, start } = await setup(t, { pageSize: 10 });
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath, ...UNPACED });
  await first.stop();
  const missed = Array.from({ length: 230 }, (_, n) => fake.post(ALERTS, { bot_id: NAGIOS, text: n % 10 === 0 ? `ERROR: alert ${n}` : `ok ${n}` }, { emit: false }));
  fake.rateLimit('conversations.history', { count: 1, retryAfterSec: 1, channel: ALERTS });
  const second = await start(baseConfig(), { statePath, ...UNPACED });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 23 && missed.every((m) => m.text.startsWith('ERROR') || m.reactions), 'all 230 handled', 10_000);
  await settle(second);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), Array.from({ length: 23 }, (_, i) => `alert ${i * 10}`));
  assert.ok(fake.callsTo('conversations.history').some((c) => c.params.channel === ALERTS && c.status === 429), 'the history read was rate limited once');
});

test('after a Socket Mode connection drops, what was posted meanwhile is caught up exactly once', async (t) => {
  const { fake, start } = await setup(t, { dropWhileDisconnected: true });
  const bot = await start(baseConfig());
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: before the drop' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length === 1, 'the live repost');
  await settle(bot);
  fake.dropConnections();
  const lost = [1, 2].map((n) => fake.post(ALERTS, { bot_id: NAGIOS, text: `ERROR: alert ${n}` }));
  assert.ok(lost.every((m) => !fake.envelopes.some((e) => e.event.ts === m.ts)), 'the events were lost, as Slack loses them');
  await fake.waitForConnection(2);
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 3, 'the caught-up alerts');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 4, 'the sentinel');
  await settle(bot);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['before the drop', 'alert 1', 'alert 2', 'sentinel']);
});

test('a channel the bot joined while running is caught up from when the connection dropped, not from the reconnect', async (t) => {
  const { fake, start } = await setup(t, { dropWhileDisconnected: true });
  const late = fake.addChannel({ id: 'C0ALERTS03', name: 'alerts-late', is_member: false });
  const bot = await start(baseConfig());
  await new WebClient('xoxb-test', { slackApiUrl: fake.apiUrl }).conversations.join({ channel: late.id });
  fake.dropConnections();
  const lost = fake.post(late.id, { bot_id: NAGIOS, text: 'ERROR: alert 1' });
  assert.ok(!fake.envelopes.some((e) => e.event.ts === lost.ts), 'the event was lost, as Slack loses them');
  await fake.waitForConnection(2);
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 1, 'the alert posted in the new channel during the drop');
  fake.post(late.id, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 2, 'the sentinel');
  await settle(bot);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['alert 1', 'sentinel']);
});

test("after Slack asks for a reconnect (disconnect frame), what was posted in the gap is caught up exactly once", async (t) => {
  const { fake, start } = await setup(t, { dropWhileDisconnected: true });
  const bot = await start(baseConfig());
  fake.disconnect('refresh_requested');
  const gap = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: alert 1' });
  assert.ok(!fake.envelopes.some((e) => e.event.ts === gap.ts), 'the event was not delivered');
  await fake.waitForConnection(2);
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 1, 'the caught-up alert');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 2, 'the sentinel');
  await settle(bot);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['alert 1', 'sentinel']);
});

test('the very first start does not process old history, nor does the start after it', async (t) => {
  const { fake, start } = await setup(t);
  const statePath = path.join(tempDir(), 'ims.db');
  const old = [fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: old one', ts: tsAgo(60_000, 1) }, { emit: false }),
    fake.post(ALERTS, { bot_id: NAGIOS, text: 'nothing to see', ts: tsAgo(30_000, 2) }, { emit: false })];
  const first = await start(baseConfig(), { statePath });
  assert.ok(!fake.callsTo('conversations.history').some((c) => c.params.channel === ALERTS), 'no history was read');
  await first.stop();
  const second = await start(baseConfig(), { statePath });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 1, 'the sentinel');
  await settle(second);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['sentinel']);
  for (const m of old) assert.equal(m.reactions, undefined, `'${m.text}' was left alone`);
});

test('catch-up looks back no further than the catch-up window', async (t) => {
  const { fake, start } = await setup(t);
  const statePath = path.join(tempDir(), 'ims.db');
  const config = baseConfig({ state: { catchUpWindow: '1h' } });
  // The last run ended three hours ago.
  const first = await start(config, { statePath, now: () => Date.now() - 3 * 3600_000 });
  await first.stop();
  const tooOld = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: old alert', ts: tsAgo(2 * 3600_000, 1) }, { emit: false });
  const tooOldQuiet = fake.post(ALERTS, { bot_id: NAGIOS, text: 'old and quiet', ts: tsAgo(90 * 60_000, 2) }, { emit: false });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: recent alert', ts: tsAgo(30 * 60_000, 3) }, { emit: false });
  const second = await start(config, { statePath });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 1, 'the recent alert');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 2, 'the sentinel');
  await settle(second);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['recent alert', 'sentinel']);
  assert.equal(tooOld.reactions, undefined);
  assert.equal(tooOldQuiet.reactions, undefined);
  assert.equal(second.ims.state.incidentBySource(ALERTS, tooOld.ts), undefined);
});

/** What a run that crashed mid-way left behind: its claim of the message (status pending), with the cursor moved, in one transaction. */
function leavePending(statePath: string, channel: string, message: FakeMessage): void {
  const db = new Database(statePath);
  try {
    db.transaction(() => {
      db.prepare(`INSERT INTO messages (channel, ts, status, event, updated_at) VALUES (?, ?, 'pending', ?, ?)`)
        .run(channel, message.ts, JSON.stringify(messageEventOf(channel, message)), Date.now());
      db.prepare('INSERT INTO cursors (channel, last_ts) VALUES (?, ?) ON CONFLICT (channel) DO UPDATE SET last_ts = excluded.last_ts').run(channel, message.ts);
    })();
  } finally {
    db.close();
  }
}

test('a crash after the incident post but before it was recorded neither reposts nor loses the incident', async (t) => {
  const { fake, start } = await setup(t);
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath });
  await first.stop();

  // The crashed run: it claimed the alert and posted it (with the metadata IMS writes), then died.
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: crashed after posting' }, { emit: false });
  const asBot = new WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
  const earlier = await asBot.chat.postMessage({
    channel: INC_APPS, text: '[Error] ERROR: crashed after posting',
    metadata: { event_type: 'ims_incident', event_payload: { source_channel: ALERTS, source_ts: alert.ts } },
  });
  leavePending(statePath, ALERTS, alert);

  const second = await start(baseConfig(), { statePath });
  const incident = await fake.waitFor(() => second.ims.state.incidentBySource(ALERTS, alert.ts), 'the recorded incident');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 2, 'the sentinel');
  await settle(second);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['crashed after', 'sentinel'], 'the post made before the crash and the sentinel, nothing more');
  assert.equal(incident.incidentChannel, INC_APPS);
  assert.equal(incident.incidentTs, earlier.ts, 'the incident points at the post made before the crash');
  assert.equal(incident.head, '[Error]');
  assert.deepEqual(second.ims.state.pendingMessages(), [], 'nothing is left pending');
});

test('a message left pending with no earlier post is posted once at the next start', async (t) => {
  const { fake, start } = await setup(t);
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath });
  await first.stop();
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: crashed before posting' }, { emit: false });
  const quiet = fake.post(ALERTS2, { bot_id: NAGIOS, text: 'crashed before reacting' }, { emit: false });
  leavePending(statePath, ALERTS, alert);
  leavePending(statePath, ALERTS2, quiet);

  const second = await start(baseConfig(), { statePath });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 1 && quiet.reactions, 'the recovered work');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length >= 2, 'the sentinel');
  await settle(second);
  assert.deepEqual(reposts(fake, INC_APPS).map(label), ['crashed before', 'sentinel']);
  assert.equal(second.ims.state.incidentBySource(ALERTS, alert.ts)?.incidentTs, reposts(fake, INC_APPS)[0].ts);
  assert.deepEqual(quiet.reactions?.map((r) => r.name), ['white_check_mark']);
  assert.deepEqual(second.ims.state.pendingMessages(), [], 'nothing is left pending');
});

test('a bot stopped while Socket Mode is still reconnecting leaves no connection behind', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.rateLimit('apps.connections.open', { count: 1, retryAfterSec: 1 });
  fake.dropConnections();
  await fake.waitFor(() => fake.callsTo('apps.connections.open').some((c) => c.status === 429), 'the throttled reconnect');
  await bot.stop();
  // The SDK's reconnect was already under way: it still gets its URL and its hello afterwards.
  await fake.waitForConnection(2, 10_000);
  await fake.waitFor(() => fake.connectionCount === 0, 'the late connection closed again');
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: after the stop' });
  assert.ok(!fake.envelopes.some((e) => e.event.ts === alert.ts), 'a stopped bot receives no events');
  assert.deepEqual(reposts(fake, INC_APPS), []);
});

test('a live alert that arrives while history is still being read is reposted after the missed ones, and never moves the cursor past them', async (t) => {
  const { fake, start } = await setup(t, { dropWhileDisconnected: true });
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: before restart' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length === 1, 'the live repost');
  await settle(first);
  await first.stop();

  for (const n of [1, 2, 3]) fake.post(ALERTS, { bot_id: NAGIOS, text: `ERROR: alert ${n}` }, { emit: false });
  // History answers slowly (one 429 of 2 s): a live alert comes in meanwhile.
  fake.rateLimit('conversations.history', { count: 1, retryAfterSec: 2, channel: ALERTS });
  const starting = start(baseConfig(), { statePath });
  await fake.waitFor(() => fake.callsTo('conversations.history').some((c) => c.status === 429), 'the throttled history read');
  await fake.waitForConnection(2);
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: recent live' });
  const second = await starting;
  await fake.waitFor(() => reposts(fake, INC_APPS).length === 5, 'all reposts');
  await settle(second);
  assert.deepEqual(reposts(fake, INC_APPS).map((m) => /before restart|alert \d|recent live/.exec(m.text)?.[0]),
    ['before restart', 'alert 1', 'alert 2', 'alert 3', 'recent live'], 'the missed alerts first, then the live one');
});

test('when history cannot be read, live alerts still go through and the missed ones are caught up by a later catch-up', async (t) => {
  const { fake, start } = await setup(t, { dropWhileDisconnected: true });
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: before restart' });
  await fake.waitFor(() => reposts(fake, INC_APPS).length === 1, 'the live repost');
  await settle(first);
  await first.stop();

  for (const n of [1, 2]) fake.post(ALERTS, { bot_id: NAGIOS, text: `ERROR: alert ${n}` }, { emit: false });
  fake.failNext('conversations.history', 'internal_error', 1);
  const second = await start(baseConfig(), { statePath, retryPendingMs: 300 });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: recent live' });
  await fake.waitFor(() => reposts(fake, INC_APPS).some((m) => m.text.includes('recent live')), 'the live alert, despite the failed catch-up');
  // The retried catch-up reads from the old cursor: the live alert did not move it past the missed ones.
  await fake.waitFor(() => reposts(fake, INC_APPS).length === 4, 'the missed alerts, caught up later', 10_000);
  await settle(second);
  const labels = reposts(fake, INC_APPS).map((m) => /before restart|alert \d|recent live/.exec(m.text)?.[0]);
  assert.deepEqual([...labels].sort(), ['alert 1', 'alert 2', 'before restart', 'recent live']);
  assert.ok(second.logs.some((l) => /catch-up of C0ALERTS01 failed/.test(l)), 'the failure is logged');
});

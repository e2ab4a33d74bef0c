/**
 * A post is made once, and a poisoned post never blocks its channel: a real IMS against the fake Slack,
 * with answers lost after the work was done, texts the SDK cannot encode, and posts Slack refuses.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { runReport } from '../ims.ts';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, ALERTS2, DEFAULT_CH, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT, baseConfig, guardSocketModeShutdownBug, settle, setup, tempDir } from './harness.ts';

guardSocketModeShutdownBug();

const reposts = (fake: FakeSlack, channel: string) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId);
const topLevel = (fake: FakeSlack, channel: string) => reposts(fake, channel).filter((m) => !m.thread_ts || m.thread_ts === m.ts);
const postsTo = (fake: FakeSlack, channel: string) => fake.callsTo('chat.postMessage').filter((c) => c.params.channel === channel);

test('an incident post whose answer is lost after Slack made it is posted once, and recorded with that post', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.loseAnswers('chat.postMessage', 1, { channel: INC_APPS });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: checkout 500s' });
  await fake.waitFor(() => postsTo(fake, INC_APPS).length >= 1 && bot.ims.state.incidentBySource(ALERTS, alert.ts), 'the incident', 10_000);
  await settle(bot, 300);

  assert.equal(topLevel(fake, INC_APPS).length, 1, 'one incident post');
  assert.deepEqual(postsTo(fake, INC_APPS).map((c) => c.status), [0], 'one attempt, whose answer was lost; no second post');
  assert.equal(bot.ims.state.incidentBySource(ALERTS, alert.ts)?.incidentTs, topLevel(fake, INC_APPS)[0].ts, 'the incident is the post Slack made');
  assert.deepEqual(bot.ims.state.pendingMessages(), []);
  assert.ok(bot.logs.some((l) => /already posted/.test(l)), 'it looked for the post before trying again');
});

test('a reverse repost whose answer is lost is posted once', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig(), { reverse: true });
  fake.loseAnswers('chat.postMessage', 1, { channel: DEFAULT_CH });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk almost full on web-01' });
  await fake.waitFor(() => topLevel(fake, DEFAULT_CH).length, 'the reverse repost', 10_000);
  await settle(bot, 300);
  assert.equal(topLevel(fake, DEFAULT_CH).length, 1, 'one reverse repost');
  assert.deepEqual(postsTo(fake, DEFAULT_CH).map((c) => c.status), [0]);
  assert.deepEqual(bot.ims.state.pendingMessages(), []);
});

test("a long alert's post and its continuation in the thread, whose answers are lost, are each posted once", async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const long = Array.from({ length: 12 }, (_, i) => `CRITICAL line ${i} ${'x'.repeat(2900)}`).join('\n');
  fake.loseAnswers('chat.postMessage', 2, { channel: INC_INFRA });
  fake.post(ALERTS, { bot_id: NAGIOS, text: long });
  await fake.waitFor(() => reposts(fake, INC_INFRA).length >= 2, 'the long incident and its thread', 15_000);
  await settle(bot, 300);
  const posts = postsTo(fake, INC_INFRA);
  assert.equal(topLevel(fake, INC_INFRA).length, 1, 'one incident post');
  const thread = reposts(fake, INC_INFRA).filter((m) => m.thread_ts && m.thread_ts !== m.ts);
  const parts = thread.map((m) => m.metadata?.event_payload?.part);
  assert.ok(parts.length >= 1);
  assert.deepEqual(parts, [...new Set(parts)], `each continuation once: ${parts.join(', ')}`);
  assert.deepEqual(posts.slice(0, 2).map((c) => c.status), [0, 0], 'both answers were lost');
  assert.equal(posts.length, 1 + parts.length, 'no post was made twice');
  assert.deepEqual(bot.ims.state.pendingMessages(), []);
});

test('a report whose answer is lost is posted once', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: still open' });
  await fake.waitFor(() => topLevel(fake, INC_APPS).length, 'the incident', 10_000);
  fake.loseAnswers('chat.postMessage', 1, { channel: REPORT });
  assert.equal(await runReport(bot.ims), true);
  assert.equal(reposts(fake, REPORT).length, 1, 'one report');
});

test('a lone surrogate in an alert (an emoji cut in half) is posted cleaned, and the alert behind it goes through', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  // A high surrogate without its low half, as a monitor that truncates by UTF-16 units leaves it.
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: disk full \uD83D' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: second alert, same channel' });
  await fake.waitFor(() => topLevel(fake, INC_APPS).length === 2, 'both alerts', 10_000);
  const [first, second] = topLevel(fake, INC_APPS);
  assert.match(first.text, /disk full \uFFFD/, 'the half emoji became U+FFFD');
  assert.match(second.text, /second alert/, 'the alert behind it, in order');
  assert.ok(!/\uD83D(?![\uDC00-\uDFFF])/.test(JSON.stringify(first.blocks)), 'no lone surrogate in the blocks either');
  // The report quotes the alert's text too.
  assert.equal(await runReport(bot.ims), true);
  assert.match(JSON.stringify(reposts(fake, REPORT)[0].blocks), /disk full/);
});

test('a post Slack refuses for good (archived channel) is logged with the alert, recorded as failed, never retried, and holds nothing up', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig(), { retryPendingMs: 200 });
  fake.channels.get(INC_INFRA)!.is_archived = true;
  const doomed = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM db-01 is CRITICAL' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: the next alert in the same channel' });
  fake.post(ALERTS2, { bot_id: NAGIOS, text: 'ERROR: another channel' });
  await fake.waitFor(() => topLevel(fake, INC_APPS).length === 2, 'the other alerts', 10_000);
  await new Promise((resolve) => setTimeout(resolve, 1000)); // five pending-retry rounds
  await settle(bot);

  assert.equal(postsTo(fake, INC_INFRA).length, 1, 'tried once, not every retry round');
  assert.deepEqual(bot.ims.state.pendingMessages(), [], 'nothing left pending');
  const line = bot.logs.find((l) => / ERROR /.test(l) && l.includes(doomed.ts));
  assert.ok(line, `an error line names the alert:\n${bot.logs.join('\n')}`);
  for (const part of [`${ALERTS}:${doomed.ts}`, 'is_archived', `destination=${INC_INFRA}`, 'rule=2', 'db-01']) assert.ok(line.includes(part), `the line has ${part}: ${line}`);
  // A redelivery of the same alert is not tried again.
  fake.sendEvent({ type: 'message', channel: ALERTS, channel_type: 'channel', ts: doomed.ts, event_ts: doomed.ts, text: doomed.text, bot_id: NAGIOS });
  await settle(bot, 300);
  assert.equal(postsTo(fake, INC_INFRA).length, 1);
});

test('a post Slack refuses for its form (invalid_blocks, msg_too_long) goes as plain text, the page included', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.failNext('chat.postMessage', 'invalid_blocks', 1);
  const critical = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03/HTTP is CRITICAL' });
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length, 'the plain-text post', 5000);
  const page = topLevel(fake, INC_INFRA)[0];
  assert.equal(page.blocks, undefined, 'plain text');
  assert.match(page.text, /\[Critical\] PROBLEM web-03\/HTTP is CRITICAL/);
  assert.ok(page.text.includes(`<@${ONCALL}>`), 'the on-call is still paged');
  assert.ok(page.text.includes(`/archives/${ALERTS}/p${critical.ts.replace('.', '')}`), 'with the link to the original');
  assert.ok(bot.logs.some((l) => /invalid_blocks.*plain text/.test(l)));

  fake.failNext('chat.postMessage', 'msg_too_long', 1);
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: the next one' });
  await fake.waitFor(() => topLevel(fake, INC_APPS).length, 'the second plain-text post', 5000);
  assert.equal(topLevel(fake, INC_APPS)[0].blocks, undefined);
  await settle(bot);
  assert.equal(bot.ims.state.listIncidents().length, 2);
  assert.deepEqual(bot.ims.state.pendingMessages(), []);
});

test('a long alert whose thread was not finished when IMS stopped is finished by the next start, each part once', async (t) => {
  const { fake, start } = await setup(t);
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath });
  // Once the incident post is made, the next post into its channel (the first thread part) waits out a long 429.
  const methods = (fake as unknown as { methods: Record<string, (p: Record<string, unknown>) => Record<string, unknown>> }).methods;
  const postMessage = methods['chat.postMessage'];
  let throttled = false;
  methods['chat.postMessage'] = (params) => {
    const answer = postMessage(params);
    if (!throttled && params.channel === INC_APPS && !params.thread_ts) {
      throttled = true;
      fake.rateLimit('chat.postMessage', { count: 1, retryAfterSec: 30, channel: INC_APPS });
    }
    return answer;
  };
  const trace = ['ERROR: checkout crashed', ...Array.from({ length: 400 }, (_, i) => `    at frame${i} (/srv/app/src/module${i}.ts:${i + 1}:7)`)].join('\n');
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: trace });
  await fake.waitFor(() => postsTo(fake, INC_APPS).some((c) => c.status === 429), 'the throttled thread part', 10_000);
  await first.stop();
  assert.equal(topLevel(fake, INC_APPS).length, 1, 'the incident post was made');
  assert.equal(reposts(fake, INC_APPS).length, 1, 'the thread is still empty');

  const second = await start(baseConfig(), { statePath });
  assert.equal(second.ims.state.incidentBySource(ALERTS, alert.ts)?.incidentTs, topLevel(fake, INC_APPS)[0].ts, 'the incident was recorded with its post');
  await fake.waitFor(() => second.ims.state.pendingMessages().length === 0, 'the message finished', 15_000);
  await settle(second, 300);
  const thread = reposts(fake, INC_APPS).filter((m) => m.thread_ts && m.thread_ts !== m.ts);
  assert.ok(thread.length >= 1, 'the rest of the alert is in the thread');
  const parts = thread.map((m) => m.metadata?.event_payload?.part);
  assert.deepEqual(parts, [...new Set(parts)], 'each part once');
  const shown = reposts(fake, INC_APPS).map((m) => JSON.stringify(m.blocks ?? m.text)).join('\n');
  for (const frame of ['frame0 ', 'frame200 ', 'frame399 ']) assert.ok(shown.includes(frame), `${frame.trim()} reached Slack`);
  assert.equal(topLevel(fake, INC_APPS).length, 1, 'no second incident post');
  assert.equal(second.ims.state.listIncidents().length, 1, 'one incident');
});

test('an alert Slack refuses for good is named in the next report, with its link, so the page is not lost in the log', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.failNext('chat.postMessage', 'not_in_channel', 1);
  const refused = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: payments <!channel> down' });
  await fake.waitFor(() => bot.logs.some((l) => /failed for good/.test(l)), 'the refusal', 10_000);
  await settle(bot);
  assert.equal(await runReport(bot.ims), true);
  const report = JSON.stringify(reposts(fake, REPORT).map((m) => m.blocks));
  assert.match(report, /Alerts IMS could not post \(1\)/);
  assert.ok(report.includes(`/archives/${ALERTS}/p${refused.ts.replace('.', '')}`), 'the link to the refused alert');
  assert.ok(report.includes('payments &lt;!channel&gt; down'), 'its text, escaped');
});

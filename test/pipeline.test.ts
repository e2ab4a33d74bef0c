import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, escapeSlack } from '../ims.ts';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import {
  ALERTS, ALERTS2, DEFAULT_CH, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT, allStrings, baseConfig, guardSocketModeShutdownBug,
  messageEventOf, settle, setup, startBot, startFake, tempDir, textObjects, unescapeSlack,
} from './harness.ts';

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
  assert.equal((await bot.ims.store.listIncidents()).length, 1);
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

// ─── Ack, de-duplication ───────────────────────────────────────────────────────────────────────

/** The next `count` ack frames the fake receives are lost on the way, so it redelivers those envelopes. */
function loseAcks(fake: FakeSlack, count: number): void {
  const inner = fake as unknown as { onAck(id: unknown): void };
  const original = inner.onAck.bind(fake);
  let lost = 0;
  inner.onAck = (id) => { if (lost < count) { lost++; return; } original(id); };
}

const topLevel = (messages: FakeMessage[]) => messages.filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts);

test('acks an envelope at once, before the slow work of reposting it', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.rateLimit('chat.postMessage', { count: 2, retryAfterSec: 1, channel: INC_APPS });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: queue depth 9000' });
  const envelope = fake.envelopes.find((e) => e.event.ts === alert.ts)!;
  await fake.waitFor(() => envelope.ackedAt, 'the ack');
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS)[0], 'the repost', 8000);
  await settle(bot);
  const ackMs = envelope.ackedAt! - envelope.sentAt;
  assert.ok(ackMs < 100, `acked ${ackMs} ms after it was sent`);
  const posted = fake.callsTo('chat.postMessage').find((c) => c.params.channel === INC_APPS && c.status === 200)!;
  assert.ok(posted.at - envelope.ackedAt! >= 1500, 'the repost came only after the rate limit, long after the ack');
  assert.match(post.text, /queue depth 9000/);
  assert.equal(fake.envelopes.filter((e) => e.event_id === envelope.event_id).length, 1, 'acked in time: Slack had nothing to redeliver');
});

test('an envelope redelivered because its ack was lost is reposted once', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  loseAcks(fake, 1);
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: payment gateway timeout' });
  const retry = await fake.waitFor(() => fake.envelopes.find((e) => e.event.ts === alert.ts && e.retry_attempt === 1 && e.ackedAt), 'the acked redelivery');
  await settle(bot);
  const deliveries = fake.envelopes.filter((e) => e.event_id === retry.event_id);
  assert.equal(deliveries.length, 2, 'the same event_id came twice');
  assert.equal(topLevel(fake.messagesIn(INC_APPS)).length, 1);
  assert.ok(bot.logs.some((l) => l.includes('duplicate delivery ignored') && l.includes(retry.event_id)), 'the redelivery was recognised by its event_id');
  assert.equal((await bot.ims.store.listIncidents()).length, 1);
});

test('the same event_id sent twice is reposted once', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: cache miss storm' }, { emit: false });
  fake.sendEvent(messageEventOf(ALERTS, alert), { eventId: 'Ev0DUPLICATE' });
  fake.sendEvent(messageEventOf(ALERTS, alert), { eventId: 'Ev0DUPLICATE', retryAttempt: 1 });
  await fake.waitFor(() => fake.envelopes.filter((e) => e.event_id === 'Ev0DUPLICATE' && e.ackedAt).length === 2, 'both deliveries acked');
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length, 'the repost');
  await settle(bot);
  assert.equal(topLevel(fake.messagesIn(INC_APPS)).length, 1);
});

test('the same channel and ts under a different event_id is reposted once', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: lb-2 unhealthy' }, { eventId: 'Ev0FIRST001' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length, 'the repost');
  await settle(bot);
  const again = fake.sendEvent(messageEventOf(ALERTS, alert), { eventId: 'Ev0SECOND01' });
  // Sent at the same time as the second copy, on purpose: both are in flight together.
  const raced = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: lb-3 unhealthy' }, { eventId: 'Ev0RACE0001' });
  fake.sendEvent(messageEventOf(ALERTS, raced), { eventId: 'Ev0RACE0002' });
  // Not an incident: the second copy must not touch Slack either.
  const quiet = fake.post(ALERTS, { bot_id: NAGIOS, text: 'lb-4 healthy again' }, { eventId: 'Ev0QUIET001' });
  await fake.waitFor(() => quiet.reactions, 'the seen reaction');
  fake.sendEvent(messageEventOf(ALERTS, quiet), { eventId: 'Ev0QUIET002' });
  await fake.waitFor(() => again.ackedAt, 'the second copy acked');
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 2, 'the second alert');
  await fake.waitFor(() => fake.envelopes.find((e) => e.event_id === 'Ev0QUIET002')?.ackedAt, 'the second quiet copy acked');
  await settle(bot);
  assert.deepEqual(topLevel(fake.messagesIn(INC_APPS)).map((m) => m.text.match(/lb-\d/)?.[0]), ['lb-2', 'lb-3']);
  assert.equal((await bot.ims.store.listIncidents()).length, 2);
  assert.equal(fake.callsTo('reactions.add').filter((c) => c.params.timestamp === quiet.ts).length, 1, 'one reaction call for the quiet message');
});

test('a restart does not repost an event it already handled, whatever event_id it comes back under', async (t) => {
  const { fake, start } = await setup(t);
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await start(baseConfig(), { statePath });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: nightly export failed' }, { eventId: 'Ev0BEFORE01' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length, 'the repost');
  await settle(first);
  await first.stop();
  const second = await start(baseConfig(), { statePath });
  fake.sendEvent(messageEventOf(ALERTS, alert), { eventId: 'Ev0BEFORE01', retryAttempt: 1 });
  fake.sendEvent(messageEventOf(ALERTS, alert), { eventId: 'Ev0AFTER001' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel after restart' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).some((m) => m.text.includes('sentinel')), 'the sentinel repost');
  await settle(second);
  assert.deepEqual(topLevel(fake.messagesIn(INC_APPS)).map((m) => /nightly|sentinel/.exec(m.text)?.[0]), ['nightly', 'sentinel']);
});

// ─── What is ignored ───────────────────────────────────────────────────────────────────────────

test("ignores the bot's own posts, edits, deletions and messages in incident, report and DEFAULT channels", async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const own = fake.post(ALERTS, { bot_id: fake.botId, user: fake.botUserId, text: 'ERROR: written by IMS itself' });
  const original = fake.post(ALERTS, { bot_id: NAGIOS, text: 'fine' }, { emit: false });
  const editTs = `${Math.floor(Date.now() / 1000)}.900001`;
  fake.sendEvent({ type: 'message', subtype: 'message_changed', hidden: true, channel: ALERTS, ts: editTs, event_ts: editTs,
    message: { type: 'message', bot_id: NAGIOS, text: 'ERROR: edited in', ts: original.ts }, previous_message: { type: 'message', bot_id: NAGIOS, text: 'fine', ts: original.ts } });
  const deleteTs = `${Math.floor(Date.now() / 1000)}.900002`;
  fake.sendEvent({ type: 'message', subtype: 'message_deleted', hidden: true, channel: ALERTS, ts: deleteTs, event_ts: deleteTs, deleted_ts: original.ts,
    previous_message: { type: 'message', bot_id: NAGIOS, text: 'ERROR: deleted', ts: original.ts } });
  fake.sendEvent({ type: 'message', subtype: 'channel_join', channel: ALERTS, user: HUMAN, text: '<@U0HUMAN001> has joined the channel, ERROR', ts: `${Math.floor(Date.now() / 1000)}.900003` });
  const elsewhere = [INC_APPS, INC_INFRA, REPORT, DEFAULT_CH].map((channel) => fake.post(channel, { bot_id: NAGIOS, text: 'ERROR: CRITICAL posted where IMS posts' }));
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: sentinel' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).some((m) => m.bot_id === fake.botId), 'the sentinel repost');
  await settle(bot);
  const reposts = [INC_APPS, INC_INFRA, DEFAULT_CH, REPORT].flatMap((c) => fake.messagesIn(c).filter((m) => m.bot_id === fake.botId));
  assert.deepEqual(reposts.map((m) => m.text), ['[Error] ERROR: sentinel'], 'only the sentinel was reposted');
  for (const m of [own, original, ...elsewhere]) assert.equal(m.reactions, undefined, `no reaction on '${m.text}'`);
  assert.equal((await bot.ims.store.listIncidents()).length, 1);
});

test('a classic integration post (subtype bot_message) is an alert like any other', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', text: 'ERROR: legacy webhook says hi' });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS)[0], 'the repost');
  await settle(bot);
  assert.match(post.text, /^\[Error\] ERROR: legacy webhook says hi/);
});

test('checks only the posters listed, by bot ID or by user name resolved through users.list', async (t) => {
  const { fake, start } = await setup(t);
  fake.addUser({ id: 'U0STRANGE1', name: 'mallory' });
  const bot = await start(baseConfig({ posters: [NAGIOS, 'hugo'] }));
  assert.ok(fake.callsTo('users.list').length >= 1, 'names are looked up');
  const stranger = fake.post(ALERTS, { user: 'U0STRANGE1', text: 'ERROR: from a stranger' });
  const otherBot = fake.post(ALERTS, { bot_id: 'B0OTHERBOT', text: 'ERROR: from another bot' });
  const strangerQuiet = fake.post(ALERTS, { user: 'U0STRANGE1', text: 'nothing to see' });
  const humanQuiet = fake.post(ALERTS, { user: HUMAN, text: 'nothing to see either' });
  fake.post(ALERTS, { user: HUMAN, text: 'ERROR: reported by hugo' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: reported by nagios' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 2, 'both reposts');
  await fake.waitFor(() => humanQuiet.reactions, 'the seen reaction');
  await settle(bot);
  assert.deepEqual(fake.messagesIn(INC_APPS).map((m) => /reported by \w+|stranger|another bot/.exec(m.text)?.[0]), ['reported by hugo', 'reported by nagios']);
  for (const m of [stranger, otherBot, strangerQuiet]) assert.equal(m.reactions, undefined, `'${m.text}' was not checked`);
  assert.deepEqual(humanQuiet.reactions?.map((r) => r.name), ['white_check_mark']);
});

// ─── What is read, how it is reposted ──────────────────────────────────────────────────────────

test('reads alerts whose text is empty from their attachments or their blocks', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.post(ALERTS, { bot_id: NAGIOS, text: '', attachments: [{ fallback: 'db-02 replication', color: 'danger', title: 'db-02', text: 'replication error, lag 300s', fields: [{ title: 'Severity', value: 'high' }] }] });
  fake.post(ALERTS2, { bot_id: NAGIOS, text: '', blocks: [{ type: 'rich_text', block_id: 'x', elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text: 'api-7 is ' }, { type: 'text', text: 'CRITICAL', style: { bold: true } }] }] }] });
  fake.post(ALERTS2, { bot_id: NAGIOS, text: '', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: 'Error budget burned for checkout' } }] });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 2 && fake.messagesIn(INC_INFRA).length >= 1, 'three reposts');
  await settle(bot);
  const apps = fake.messagesIn(INC_APPS);
  assert.equal(apps.length, 2);
  assert.match(apps[0].text, /replication error, lag 300s/);
  assert.match(apps[0].text, /Severity: high/);
  assert.match(apps[1].text, /Error budget burned for checkout/);
  const infra = fake.messagesIn(INC_INFRA);
  assert.equal(infra.length, 1);
  assert.match(infra[0].text, /^\[Critical\] api-7 is CRITICAL/);
});

test('a repost is Block Kit with the label, the text, the source channel, the poster, the time and a permalink, and no unfurling', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: see https://grafana.example/d/1' });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS)[0], 'the repost');
  await settle(bot);
  assert.equal(post.text, '[Error] ERROR: see https://grafana.example/d/1');
  const strings = allStrings(post.blocks).join('\n');
  // Verbatim text is not auto-linked by Slack: IMS writes the bare URL as a link itself.
  assert.match(strings, /\*\[Error\]\* ERROR: see <https:\/\/grafana\.example\/d\/1>/);
  assert.ok(strings.includes(`<#${ALERTS}>`), 'names the source channel');
  assert.ok(strings.includes(NAGIOS), 'names the poster');
  const when = new Date(Number(alert.ts.split('.')[0]) * 1000).toISOString().replace(/-/g, '/').replace('T', ' ').slice(0, 19);
  assert.ok(strings.includes(when), `shows the alert time ${when}`);
  assert.ok(strings.includes(`<https://fake.slack.com/archives/${ALERTS}/p${alert.ts.replace('.', '')}|`), 'links the original');
  const call = fake.callsTo('chat.postMessage').find((c) => c.params.channel === INC_APPS)!;
  assert.equal(call.params.unfurl_links, 'false');
  assert.equal(call.params.unfurl_media, 'false');
});

const INJECTIONS = ['<!channel>', '<!here>', '<!everyone>', '<@U0VICTIM1>', '<!subteam^S123>', '<!channel|channel>', '<@W0VICTIM2|boss>', '<javascript:alert(1)|click>'];
/** An http(s) link stays a link (the on-call needs the runbook), written by IMS with its label escaped: see reposts.test.ts. */
const LINK = '<https://evil.example|click>';

test('mention and link injection in an alert never reaches Slack unescaped, and alert text is verbatim', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  // Raw control sequences (as a bot's mrkdwn arrives) and entity-encoded ones (as typed text arrives).
  const raw = `ERROR inject ${INJECTIONS.join(' ')} ${LINK} &lt;!channel&gt; &lt;@U0VICTIM1&gt; &amp;lt;!here&amp;gt;`;
  fake.post(ALERTS, { bot_id: NAGIOS, text: raw });
  fake.post(ALERTS, { bot_id: NAGIOS, text: '', attachments: [{ title: 'ERROR inject via attachment', text: INJECTIONS.join(' '), fields: [{ title: '<!here>', value: '<@U0VICTIM1>' }] }] });
  fake.post(ALERTS, { bot_id: NAGIOS, text: '', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: `ERROR inject via blocks ${INJECTIONS.join(' ')}` } }] });
  const posts = await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 3 && fake.messagesIn(INC_APPS), 'three reposts');
  await settle(bot);
  const permalinkPrefix = `<https://fake.slack.com/archives/${ALERTS}/p`;
  for (const post of posts) {
    const strings = allStrings({ text: post.text, blocks: post.blocks, attachments: post.attachments });
    for (const s of strings) {
      for (const injection of INJECTIONS) assert.ok(!s.includes(injection), `'${injection}' unescaped in ${JSON.stringify(s)}`);
      for (const sequence of s.match(/<[^>]*>/g) ?? []) {
        assert.ok(sequence === `<#${ALERTS}>` || sequence === LINK || (sequence.startsWith(permalinkPrefix) && sequence.endsWith('|original alert>')), `only IMS's own control sequences and the alert's http(s) link, found ${sequence}`);
      }
    }
    assert.ok(post.text.includes('&lt;!channel&gt;'), 'the text shows the escaped form');
    const alertTexts = textObjects(post.blocks).filter((o) => o.text.includes('inject') || o.text.includes(NAGIOS));
    assert.ok(alertTexts.length >= 2, 'the alert text and the context are mrkdwn text objects');
    for (const o of alertTexts) {
      assert.equal(o.type, 'mrkdwn');
      assert.equal(o.verbatim, true, `verbatim on ${JSON.stringify(o.text.slice(0, 60))}`);
    }
  }
  // What the reader sees is the alert as Slack showed it, not a mention (the text alert's post, whichever went first).
  const textPost = posts.find((post) => post.text.includes('ERROR inject &lt;'));
  assert.ok(textPost, 'the post of the alert written in its text');
  assert.ok(unescapeSlack(textPost.text).includes('<!channel> <!here> <!everyone> <@U0VICTIM1>'), 'the reader sees the sequences as text');
  assert.ok(unescapeSlack(textPost.text).includes('&lt;!here&gt;'), 'double-encoded text stays text');
});

/** The alert text as the incident post and its thread continuation carry it, unescaped. */
function reassemble(fake: FakeSlack, channel: string, head: string): { text: string; messages: FakeMessage[] } {
  const all = fake.messagesIn(channel);
  const first = topLevel(all)[0];
  const messages = [first, ...all.filter((m) => m.thread_ts === first.ts && m.ts !== first.ts)];
  const sections = messages.flatMap((m) => (m.blocks ?? []).filter((b) => b.type === 'section' && b.text?.verbatim === true).map((b) => b.text.text as string));
  const joined = sections.join('');
  assert.ok(joined.startsWith(`*${head}* `), 'the first section starts with the label');
  return { text: unescapeSlack(joined.slice(head.length + 3)), messages };
}

/** True when every `&` in escaped text starts a whole entity: a piece shown on its own shows no `&am` or `p;`. */
const wholeEntities = (text: string) => !text.replace(/&(?:amp|lt|gt);/g, '').includes('&') && !/^(?:amp|lt|gt)?;/.test(text);

function longText(chars: number): string {
  const lines: string[] = [];
  for (let i = 0, length = 0; length < chars; i++) {
    const line = `line ${String(i).padStart(5, '0')}: error <disk> & "quota" ${'x'.repeat(i % 37)}`;
    lines.push(line);
    length += line.length + 1;
  }
  return lines.join('\n').slice(0, chars);
}

test('a 10,000-character alert is split into sections under Slack limits and nothing is lost', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const original = longText(10_000);
  fake.post(ALERTS, { bot_id: NAGIOS, text: escapeSlack(original) });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 2, 'the repost and its thread');
  await settle(bot);
  const { text, messages } = reassemble(fake, INC_APPS, '[Error]');
  assert.ok(messages.length >= 2, 'the incident post shows the first lines, its thread the rest');
  assert.equal(text, original);
  const sections = messages.flatMap((m) => m.blocks!.filter((b) => b.type === 'section'));
  assert.ok(sections.length >= 4, `${sections.length} sections`);
  for (const s of sections) assert.ok(s.text.text.length <= 3000, `section of ${s.text.text.length} chars`);
  for (const s of sections) assert.ok(wholeEntities(s.text.text), `no entity cut in two: …${s.text.text.slice(-12)} | ${s.text.text.slice(0, 12)}…`);
  assert.ok(messages[0].text.length <= 4000, 'the text fallback stays short');
  assert.ok(wholeEntities(messages[0].text), `no entity cut in two in the fallback: …${messages[0].text.slice(-12)}`);
  assert.ok(messages[0].text.startsWith('[Error] line 00000: error &lt;disk&gt; &amp; "quota"'), 'the fallback is the label and the escaped text');
});

test('the text fallback of a long alert is shortened without cutting an entity in two', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  // Each alert puts an `&` (escaped `&amp;`) at a different offset around where the fallback is cut.
  for (let shift = 0; shift < 6; shift++) fake.post(ALERTS, { bot_id: NAGIOS, text: escapeSlack(`ERROR ${'x'.repeat(2970 + shift)}&<>${'y'.repeat(200)}`) });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 6, 'the reposts');
  await settle(bot);
  for (const post of fake.messagesIn(INC_APPS)) {
    assert.ok(post.text.length <= 4000, `a short fallback (${post.text.length})`);
    assert.ok(wholeEntities(post.text), `no entity cut in two: …${post.text.slice(-14)}`);
  }
});

test('an alert longer than 50 sections of 3,000 characters continues in the thread, in order, nothing lost', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const original = longText(50 * 3000 + 500);
  fake.post(ALERTS, { bot_id: NAGIOS, text: escapeSlack(original) });
  const posted = () => {
    const all = fake.messagesIn(INC_APPS);
    return all.length >= 2 && all.filter((m) => m.thread_ts && m.thread_ts !== m.ts).length >= 1;
  };
  await fake.waitFor(posted, 'the post and its continuation', 10_000);
  await settle(bot);
  const { text, messages } = reassemble(fake, INC_APPS, '[Error]');
  assert.ok(messages.length >= 2, 'continued in the thread');
  assert.equal(topLevel(fake.messagesIn(INC_APPS)).length, 1, 'one incident post');
  for (const m of messages) {
    assert.ok(m.blocks!.length <= 50, `${m.blocks!.length} blocks`);
    for (const b of m.blocks!) if (b.type === 'section') assert.ok(b.text.text.length <= 3000, `section of ${b.text.text.length} chars`);
    for (const b of m.blocks!) if (b.type === 'section') assert.ok(wholeEntities(b.text.text), `no entity cut in two: …${b.text.text.slice(-12)}`);
    assert.ok(m.text.length > 0 && m.text.length <= 4000, 'every message has a short text fallback');
  }
  assert.equal(text.length, original.length);
  assert.equal(text, original);
  assert.equal((await bot.ims.store.listIncidents()).length, 1);
});

// ─── Modes and hotlines ────────────────────────────────────────────────────────────────────────

test('reverse mode reposts what matches no rule to DEFAULT with its header, marks matches seen, and still opens hotline incidents', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig(), { reverse: true });
  const unmatched = fake.post(ALERTS, { bot_id: NAGIOS, text: 'db-01 load average 3.2' });
  const matched = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: retrying upload' });
  const suppressed = fake.post(ALERTS, { bot_id: NAGIOS, text: 'backup finished with warnings' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'web-03 is CRITICAL' });
  const repost = await fake.waitFor(() => fake.messagesIn(DEFAULT_CH)[0], 'the DEFAULT repost');
  const incident = await fake.waitFor(() => fake.messagesIn(INC_INFRA)[0], 'the hotline incident');
  await fake.waitFor(() => matched.reactions && suppressed.reactions, 'the seen reactions');
  await settle(bot);
  assert.match(repost.text, /^\[Alert\] db-01 load average 3\.2/);
  assert.ok(allStrings(repost.blocks).some((s) => s.includes('*[Alert]* db-01 load average 3.2')), 'the blocks carry the header and the text');
  assert.equal(fake.messagesIn(DEFAULT_CH).length, 1);
  assert.deepEqual(matched.reactions?.map((r) => r.name), ['white_check_mark']);
  assert.deepEqual(suppressed.reactions?.map((r) => r.name), ['white_check_mark']);
  assert.equal(unmatched.reactions, undefined);
  assert.match(incident.text, /^\[Critical\] web-03 is CRITICAL/);
  assert.ok(incident.text.includes(`<@${ONCALL}> <!here>`), 'the hotline is paged');
  assert.equal(fake.messagesIn(INC_INFRA).length, 1);
  assert.equal(fake.messagesIn(INC_APPS).length, 0, 'a match without hotline is not reposted');
});

test('reacji mode reacts on posts of the reacji bots without a link instead of reposting them', async (t) => {
  const { fake, start } = await setup(t);
  const REACJI_BOT = 'B0REACJI01';
  const bot = await start(baseConfig({ reacji: { reaction: 'inbox_tray', bots: [REACJI_BOT] } }), { reacji: true });
  const forwarded = fake.post(ALERTS, { bot_id: REACJI_BOT, text: 'ERROR: disk full on db-9' });
  fake.post(ALERTS, { bot_id: REACJI_BOT, text: 'ERROR: see http://grafana.example/d/2' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: from nagios' });
  await fake.waitFor(() => forwarded.reactions, 'the reacji reaction');
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 2, 'the two reposts');
  await settle(bot);
  assert.deepEqual(forwarded.reactions?.map((r) => r.name), ['inbox_tray']);
  assert.deepEqual(fake.messagesIn(INC_APPS).map((m) => /grafana|nagios|db-9/.exec(m.text)?.[0]), ['grafana', 'nagios']);
});

test("a hotline pages user groups as <!subteam^ID> and the rule's own members only, in one post", async (t) => {
  const { fake, start } = await setup(t);
  const group = fake.addUsergroup({ handle: 'dbteam', name: 'DB team' });
  fake.addUser({ id: 'U0OTHER001', name: 'otto' });
  const bot = await start(baseConfig({
    rules: [
      { match: 'CRITICAL', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
      { match: 'PAGE', head: '[Page]', incident: 'APPS', hotline: 'Other' },
    ],
    hotlines: { OnCall: ['S0DBTEAM01', '@dbteam', 'oncall', 'channel'], Other: ['U0OTHER001', 'hugo', 'everyone', 'S0OTHERS01'] },
  }));
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'db-01 is CRITICAL' });
  const post = await fake.waitFor(() => fake.messagesIn(INC_INFRA)[0], 'the hotline post');
  await settle(bot);
  assert.equal(fake.messagesIn(INC_INFRA).length, 1, 'one post, no second "hotline" post, no thread');
  const everything = allStrings({ text: post.text, blocks: post.blocks }).join('\n');
  for (const mention of ['<!subteam^S0DBTEAM01>', `<!subteam^${group.id}>`, `<@${ONCALL}>`, '<!channel>']) assert.ok(post.text.includes(mention), `text pages ${mention}`);
  for (const mention of ['<!subteam^S0DBTEAM01>', `<!subteam^${group.id}>`, `<@${ONCALL}>`, '<!channel>']) assert.ok(everything.includes(mention), `blocks page ${mention}`);
  for (const other of ['U0OTHER001', HUMAN, '<!everyone>', 'S0OTHERS01', '<!here>']) assert.ok(!everything.includes(other), `${other} is not paged`);
});

test('channel names in the config, public or private and on any page of conversations.list, are resolved to IDs', async (t) => {
  const { fake, start } = await setup(t);
  for (let i = 0; i < 1000; i++) fake.addChannel({ id: `C1FILL${String(i).padStart(4, '0')}`, name: `filler-${i}`, is_member: false });
  const late = fake.addChannel({ id: 'C0INCLATE1', name: 'inc-late' });
  const secret = fake.addChannel({ id: 'G0SECRET01', name: 'inc-secret', is_private: true });
  const bot = await start(baseConfig({
    rules: [
      { match: 'secret', head: '[Secret]', incident: 'SECRET' },
      { match: 'CRITICAL', head: '[Critical]', incident: 'INFRA' },
      { match: '(?i)error', head: '[Error]', incident: 'APPS' },
    ],
    incidents: { INFRA: { channel: 'inc-late' }, APPS: { channel: '#inc-apps' }, SECRET: { channel: 'inc-secret' } },
    reverseDefault: { channel: 'inc-default', header: '[Alert]' },
    report: { channel: 'ims-report' },
  }));
  assert.equal(bot.ims.config.incidents.get('INFRA')!.channel, late.id);
  assert.equal(bot.ims.config.report.channel, REPORT);
  fake.post(INC_APPS, { bot_id: NAGIOS, text: 'ERROR: in an incident channel named in the config' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'api is CRITICAL' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: app' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'secret rotation failed' });
  await fake.waitFor(() => fake.messagesIn(late.id).length && fake.messagesIn(secret.id).length && fake.messagesIn(INC_APPS).length >= 2, 'the three reposts');
  await settle(bot);
  assert.match(fake.messagesIn(late.id)[0].text, /^\[Critical\] api is CRITICAL/);
  assert.match(fake.messagesIn(secret.id)[0].text, /^\[Secret\] secret rotation failed/);
  assert.deepEqual(fake.messagesIn(INC_APPS).map((m) => m.bot_id === fake.botId ? 'repost' : 'alert'), ['alert', 'repost'], 'the alert inside #inc-apps was ignored');
});

test('an unknown channel name is a start-up error naming it', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig({ incidents: { INFRA: { channel: 'inc-infra' }, APPS: { channel: 'inc-nowhere' } } }), { start: false });
  await assert.rejects(bot.ims.start(), (error: Error) => {
    assert.ok(error instanceof ConfigError, `a ConfigError, got ${error.name}`);
    assert.match(error.message, /'inc-nowhere'/);
    assert.match(error.message, /incidents\.APPS\.channel/);
    assert.doesNotMatch(error.message, /'inc-infra'/);
    return true;
  });
  assert.equal(fake.connectionCount, 0, 'it never connected to Socket Mode');
});

test('an unknown user name in posters or a hotline is a start-up error naming it', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig({ posters: [NAGIOS, 'nobody-here'], hotlines: { OnCall: ['oncall', 'ghost-user'] } }), { start: false });
  await assert.rejects(bot.ims.start(), (error: Error) => {
    assert.ok(error instanceof ConfigError, `a ConfigError, got ${error.name}`);
    assert.match(error.message, /'nobody-here'/);
    assert.match(error.message, /'ghost-user'/);
    return true;
  });
});

test('an alert whose repost failed is retried until it goes through, and posted once', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig(), { retryPendingMs: 300 });
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.failNext('chat.postMessage', 'internal_error', 2);
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-02' });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS).find((m) => m.bot_id === fake.botId), 'the repost after the failures', 10_000);
  await settle(bot);
  assert.match(post.text, /disk error on db-02/);
  assert.equal(fake.messagesIn(INC_APPS).filter((m) => m.bot_id === fake.botId).length, 1);
  assert.ok(bot.logs.some((l) => l.includes('whose handling failed')));
  assert.equal((await bot.ims.store.listIncidents()).length, 1);
});

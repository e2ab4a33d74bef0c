/**
 * Self-test of the fake Slack, driven by the REAL @slack/web-api and @slack/socket-mode clients.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SocketModeClient } from '@slack/socket-mode';
import { ErrorCode, type WebClient } from '@slack/web-api';
import type { WebClientOptions } from '@slack/web-api';
import type { FakeSlack } from './fake-slack.ts';
import { fakeWithClients } from './sdk-clients.ts';
import type { FakeSlackOptions } from './fake-slack.ts';

// socket-mode 3.1: disconnect() while a reconnect waits for hello rejects a promise nobody handles, with
// `undefined` as the reason. Let node:test see every other unhandled rejection.
before(() => {
  const listeners = process.listeners('unhandledRejection');
  process.removeAllListeners('unhandledRejection');
  for (const listener of listeners) {
    process.on('unhandledRejection', (reason, promise) => {
      if (reason !== undefined) listener(reason, promise);
    });
  }
});

// ───────────────────────────── Set-up helpers ─────────────────────────────

interface Setup {
  fake: FakeSlack;
  web: WebClient;
  /** A WebClient with other options (retries, another token). */
  webWith(options: WebClientOptions, token?: string): WebClient;
  /** A SocketModeClient pointed at the fake, not yet started; disconnected when the test ends. */
  socket(): SocketModeClient;
  /** A started SocketModeClient that acks every event and collects it. */
  listen(): Promise<{ client: SocketModeClient; events: any[] }>;
}

async function setup(t: TestContext, opts?: FakeSlackOptions): Promise<Setup> {
  const { fake, web: webWith, socket: client } = await fakeWithClients(t, opts);
  const socket = () => client({ clientPingTimeout: 500, serverPingTimeout: 30000 });
  const listen = async () => {
    const client = socket();
    const events: any[] = [];
    client.on('slack_event', async ({ ack, body }) => {
      await ack();
      events.push(body.event);
    });
    await client.start();
    return { client, events };
  };
  return { fake, web: webWith({}), webWith, socket, listen };
}

/** Asserts that a Web API call fails with this Slack error code. */
async function rejectsWith(call: Promise<unknown>, error: string): Promise<void> {
  await assert.rejects(call, (e: any) => {
    assert.equal(e.code, ErrorCode.PlatformError);
    assert.equal(e.data.error, error);
    return true;
  });
}

// ───────────────────────────── Socket Mode ─────────────────────────────

test('a socket client start() resolves only once the fake sends hello', async (t) => {
  const { fake, socket } = await setup(t);
  fake.setAcceptConnections(false);
  let started = false;
  const starting = socket().start().then(() => (started = true));

  await fake.waitFor(() => fake.callsTo('apps.connections.open').length === 1, 'apps.connections.open');
  await sleep(300);
  assert.equal(started, false);
  assert.equal(fake.connectionCount, 0);

  fake.setAcceptConnections(true);
  await starting;
  assert.equal(fake.connectionCount, 1);
  assert.match(fake.callsTo('apps.connections.open')[0]!.response.url, /^ws:\/\/127\.0\.0\.1:\d+\/link\?ticket=/);
});

test('a message posted by another bot arrives as a message event and its ack is recorded', async (t) => {
  const { fake, listen } = await setup(t);
  const alerts = fake.addChannel({ name: 'alerts' });
  const { events } = await listen();

  const attachments = [{ fallback: 'CPU high', title: 'CPU high on db-1', fields: [{ title: 'host', value: 'db-1' }] }];
  const posted = fake.post(alerts.id, { bot_id: 'BMON', subtype: 'bot_message', text: '', attachments });

  const envelope = await fake.waitFor(() => fake.envelopes.find((e) => e.ackedAt), 'an acked envelope');
  assert.equal(envelope.retry_attempt, 0);
  assert.match(envelope.event_id, /^Ev/);
  assert.deepEqual(events, [
    {
      type: 'message',
      ts: posted.ts,
      text: '',
      bot_id: 'BMON',
      subtype: 'bot_message',
      attachments,
      channel: alerts.id,
      channel_type: 'channel',
      event_ts: posted.ts,
      team: 'T0FAKE',
    },
  ]);
});

test('posts in a channel the bot is not in are stored but not delivered', async (t) => {
  const { fake, listen } = await setup(t);
  const other = fake.addChannel({ name: 'other', is_member: false });
  await listen();

  fake.post(other.id, { user: 'U1', text: 'hello' });
  assert.equal(fake.messagesIn(other.id).length, 1);
  assert.equal(fake.envelopes.length, 0);
});

test('an un-acked envelope is redelivered with retry_attempt 1, reason timeout and the same event_id', async (t) => {
  const { fake, socket } = await setup(t, { redeliverAfterMs: 100 });
  const alerts = fake.addChannel({ name: 'alerts' });
  const client = socket();
  const seen: { envelope_id: string; event_id: string; retry_num: number; retry_reason: string }[] = [];
  client.on('message', async ({ ack, envelope_id, body, retry_num, retry_reason }) => {
    seen.push({ envelope_id, event_id: body.event_id, retry_num, retry_reason });
    if (retry_num > 0) await ack();
  });
  await client.start();

  fake.post(alerts.id, { user: 'U1', text: 'disk full' });
  await fake.waitFor(() => fake.envelopes[1]?.ackedAt, 'the redelivery to be acked');
  await sleep(250);

  assert.equal(fake.envelopes.length, 2);
  assert.deepEqual(
    seen.map((s) => [s.retry_num, s.retry_reason]),
    [
      [0, ''],
      [1, 'timeout'],
    ],
  );
  assert.equal(seen[0]!.event_id, seen[1]!.event_id);
  assert.notEqual(seen[0]!.envelope_id, seen[1]!.envelope_id);
  assert.equal(fake.envelopes[0]!.ackedAt, undefined);
});

test('an event that is never acked is redelivered maxRedeliveries times, then given up', async (t) => {
  const { fake, socket } = await setup(t, { redeliverAfterMs: 40, maxRedeliveries: 2 });
  await socket().start();

  fake.sendEvent({ type: 'reaction_added', user: 'U1', reaction: 'eyes', item: { type: 'message', channel: 'C1', ts: '1.000001' } });
  await fake.waitFor(() => fake.envelopes.length === 3, 'three deliveries');
  await sleep(200);

  assert.deepEqual(
    fake.envelopes.map((e) => e.retry_attempt),
    [0, 1, 2],
  );
  assert.equal(new Set(fake.envelopes.map((e) => e.event_id)).size, 1);
});

test('events sent while no socket is connected are delivered after the next hello', async (t) => {
  const { fake, listen } = await setup(t);
  const envelope = fake.sendEvent({ type: 'reaction_added', user: 'U1', reaction: 'eyes' }, { eventId: 'EvEARLY' });
  assert.equal(envelope.sentAt, 0);

  const { events } = await listen();
  await fake.waitFor(() => envelope.ackedAt, 'the queued event to be acked');
  assert.equal(events[0].reaction, 'eyes');
  assert.ok(envelope.sentAt > 0);
  assert.deepEqual(fake.envelopes, [envelope]);
});

test('with dropWhileDisconnected, events sent while no socket is connected are lost', async (t) => {
  const { fake, listen } = await setup(t, { dropWhileDisconnected: true });
  const alerts = fake.addChannel({ name: 'alerts' });
  fake.post(alerts.id, { user: 'U1', text: 'missed' });

  const { events } = await listen();
  await sleep(100);
  assert.deepEqual(events, []);
  assert.equal(fake.messagesIn(alerts.id).length, 1);
});

test('a disconnect frame makes the client reconnect and get a second hello; events sent meanwhile follow it', async (t) => {
  const { fake, listen } = await setup(t);
  const alerts = fake.addChannel({ name: 'alerts' });
  const { events } = await listen();

  fake.disconnect('refresh_requested');
  fake.post(alerts.id, { user: 'U1', text: 'during the reconnect' });
  await fake.waitForConnection(2);
  await fake.waitFor(() => events.length === 1, 'the event on the new connection');

  assert.equal(fake.callsTo('apps.connections.open').length, 2);
  assert.equal(events[0].text, 'during the reconnect');
  await fake.waitFor(() => fake.connectionCount === 1, 'the old socket to close');
});

test('a dropped connection is noticed by the client, which reconnects', async (t) => {
  const { fake, listen } = await setup(t);
  await listen();

  fake.dropConnections();
  await fake.waitForConnection(2);
  assert.equal(fake.connectionCount, 1);
});

test('a client stopped while its reconnect waits for hello shuts down without failing the run', async (t) => {
  const { fake, socket } = await setup(t);
  const client = socket();
  await client.start();

  fake.setAcceptConnections(false);
  fake.dropConnections();
  await fake.waitFor(() => fake.callsTo('apps.connections.open').length === 2, 'the reconnect');
  await sleep(100);
  await client.disconnect();
  await sleep(50); // the SDK's stray rejection surfaces here, filtered by the before() hook
  assert.equal(fake.connectionCount, 0);
});

// ───────────────────────────── chat.* ─────────────────────────────

test("chat.postMessage stores the bot's message, answers like Slack and echoes it as an event with the bot's ids", async (t) => {
  const { fake, web, listen } = await setup(t);
  const incidents = fake.addChannel({ name: 'incidents' });
  const { events } = await listen();

  const blocks = [{ type: 'section', text: { type: 'mrkdwn', text: '*Disk full*', verbatim: true } }];
  const metadata = { event_type: 'incident', event_payload: { id: 7 } };
  const res = await web.chat.postMessage({ channel: incidents.id, text: 'Disk full', blocks, metadata, unfurl_links: false });

  assert.equal(res.channel, incidents.id);
  assert.match(res.ts!, /^\d+\.\d{6}$/);
  assert.deepEqual(res.message, { type: 'message', ts: res.ts, user: 'UBOT', bot_id: 'BBOT', text: 'Disk full', blocks, metadata });
  assert.deepEqual(fake.messagesIn(incidents.id).map((m) => m.ts), [res.ts]);

  const call = fake.callsTo('chat.postMessage')[0]!;
  assert.deepEqual(call.params.blocks, blocks);
  assert.equal(call.params.unfurl_links, 'false');
  assert.equal(call.token, 'xoxb-test');

  await fake.waitFor(() => events.length === 1, 'the echo event');
  assert.equal(events[0].bot_id, 'BBOT');
  assert.equal(events[0].user, 'UBOT');
  assert.equal(events[0].ts, res.ts);
});

test('thread replies count on their parent and replying to a missing message fails', async (t) => {
  const { fake, web } = await setup(t);
  const incidents = fake.addChannel({ name: 'incidents' });
  const parent = await web.chat.postMessage({ channel: incidents.id, text: 'parent' });
  const reply = await web.chat.postMessage({ channel: incidents.id, text: 'reply', thread_ts: parent.ts! });
  // A reply to a reply joins the parent's thread.
  const nested = await web.chat.postMessage({ channel: incidents.id, text: 'nested', thread_ts: reply.ts! });

  assert.equal(nested.message!.thread_ts, parent.ts);
  const [stored] = fake.messagesIn(incidents.id);
  assert.equal(stored!.reply_count, 2);
  assert.equal(stored!.thread_ts, parent.ts);
  await rejectsWith(web.chat.postMessage({ channel: incidents.id, text: 'x', thread_ts: '1.000001' }), 'thread_not_found');
});

test('chat.postMessage reports channel_not_found, not_in_channel, is_archived and no_text', async (t) => {
  const { fake, web } = await setup(t);
  const outside = fake.addChannel({ name: 'outside', is_member: false });
  const secret = fake.addChannel({ name: 'secret', is_private: true, is_member: false });
  const old = fake.addChannel({ name: 'old' });
  old.is_archived = true;

  await rejectsWith(web.chat.postMessage({ channel: 'CNOPE', text: 'x' }), 'channel_not_found');
  await rejectsWith(web.chat.postMessage({ channel: secret.id, text: 'x' }), 'channel_not_found');
  await rejectsWith(web.chat.postMessage({ channel: outside.id, text: 'x' }), 'not_in_channel');
  await rejectsWith(web.chat.postMessage({ channel: old.id, text: 'x' }), 'is_archived');
  const general = fake.addChannel({ name: 'general' });
  await rejectsWith(web.apiCall('chat.postMessage', { channel: general.id }), 'no_text');
});

test('chat.update and chat.delete change stored messages and emit hidden message_changed / message_deleted events', async (t) => {
  const { fake, web, listen } = await setup(t);
  const incidents = fake.addChannel({ name: 'incidents' });
  const { events } = await listen();
  const { ts } = await web.chat.postMessage({ channel: incidents.id, text: 'open' });

  const updated = await web.chat.update({ channel: incidents.id, ts: ts!, text: 'resolved' });
  assert.equal(updated.text, 'resolved');
  assert.equal(fake.messagesIn(incidents.id)[0]!.text, 'resolved');

  const permalink = await web.chat.getPermalink({ channel: incidents.id, message_ts: ts! });
  assert.equal(permalink.permalink, `https://fake.slack.com/archives/${incidents.id}/p${ts!.replace('.', '')}`);

  await web.chat.delete({ channel: incidents.id, ts: ts! });
  assert.deepEqual(fake.messagesIn(incidents.id), []);
  await rejectsWith(web.chat.delete({ channel: incidents.id, ts: ts! }), 'message_not_found');

  await fake.waitFor(() => events.length === 3, 'three events');
  assert.deepEqual(
    events.map((e) => [e.subtype, e.hidden]),
    [
      [undefined, undefined],
      ['message_changed', true],
      ['message_deleted', true],
    ],
  );
  assert.equal(events[1].message.text, 'resolved');
  assert.equal(events[1].previous_message.text, 'open');
  assert.equal(events[2].deleted_ts, ts);
});

// ───────────────────────────── conversations.* ─────────────────────────────

test('conversations.history pages newest first with a cursor over 260 messages and leaves replies out', async (t) => {
  const { fake, web } = await setup(t);
  const busy = fake.addChannel({ name: 'busy' });
  const posted = Array.from({ length: 260 }, (_, i) => fake.post(busy.id, { user: 'U1', text: `m${i}` }, { emit: false }));
  fake.post(busy.id, { user: 'U2', text: 'a reply', thread_ts: posted[5]!.ts }, { emit: false });

  const pages: any[] = [];
  for await (const page of web.paginate('conversations.history', { channel: busy.id, limit: 100 })) pages.push(page);

  assert.deepEqual(
    pages.map((p) => [p.messages.length, p.has_more]),
    [
      [100, true],
      [100, true],
      [60, false],
    ],
  );
  const texts = pages.flatMap((p) => p.messages.map((m: any) => m.text));
  assert.deepEqual(texts, posted.map((m) => m.text).reverse());
  const parent = pages[2].messages.find((m: any) => m.ts === posted[5]!.ts);
  assert.equal(parent.reply_count, 1);
  assert.equal(fake.callsTo('conversations.history').length, 3);
});

test('conversations.history bounds are exclusive unless inclusive, and limit defaults to pageSize', async (t) => {
  const { fake, web } = await setup(t, { pageSize: 3 });
  const ch = fake.addChannel({ name: 'alerts' });
  const posted = Array.from({ length: 6 }, (_, i) => fake.post(ch.id, { user: 'U1', text: `m${i}` }, { emit: false }));
  const texts = (r: any) => r.messages.map((m: any) => m.text);

  const exclusive = await web.conversations.history({ channel: ch.id, oldest: posted[1]!.ts, latest: posted[4]!.ts });
  assert.deepEqual(texts(exclusive), ['m3', 'm2']);
  const inclusive = await web.conversations.history({ channel: ch.id, oldest: posted[1]!.ts, latest: posted[4]!.ts, inclusive: true });
  assert.deepEqual(texts(inclusive), ['m4', 'm3', 'm2']);
  assert.equal(inclusive.has_more, true);
  const firstPage = await web.conversations.history({ channel: ch.id });
  assert.deepEqual(texts(firstPage), ['m5', 'm4', 'm3']);
  assert.ok(firstPage.response_metadata?.next_cursor);
});

test('conversations.replies gives the parent first, then the replies oldest first, paginated', async (t) => {
  const { fake, web } = await setup(t);
  const ch = fake.addChannel({ name: 'incidents' });
  const parent = fake.post(ch.id, { user: 'U1', text: 'parent' }, { emit: false });
  for (const text of ['r1', 'r2', 'r3']) fake.post(ch.id, { user: 'U2', text, thread_ts: parent.ts }, { emit: false });
  fake.post(ch.id, { user: 'U1', text: 'unrelated' }, { emit: false });

  const pages: any[] = [];
  for await (const page of web.paginate('conversations.replies', { channel: ch.id, ts: parent.ts, limit: 3 })) pages.push(page);
  assert.deepEqual(
    pages.map((p) => p.messages.map((m: any) => m.text)),
    [['parent', 'r1', 'r2'], ['r3']],
  );
  await rejectsWith(web.conversations.replies({ channel: ch.id, ts: '1.000001' }), 'thread_not_found');
});

test('conversations.list paginates and shows private channels only to members', async (t) => {
  const { fake, web } = await setup(t);
  fake.addChannel({ name: 'a' });
  fake.addChannel({ name: 'b', is_member: false });
  fake.addChannel({ name: 'c' }).is_archived = true;
  fake.addChannel({ name: 'mine', is_private: true });
  fake.addChannel({ name: 'hidden', is_private: true, is_member: false });

  const names = async (args: Record<string, unknown>) => {
    const all: string[] = [];
    for await (const page of web.paginate('conversations.list', { ...args, limit: 2 })) all.push(...(page as any).channels.map((c: any) => c.name));
    return all;
  };
  assert.deepEqual(await names({}), ['a', 'b', 'c']);
  assert.deepEqual(await names({ types: 'public_channel,private_channel', exclude_archived: true }), ['a', 'b', 'mine']);
  assert.equal(fake.callsTo('conversations.list').length, 2 + 2);
});

test('channel management answers Slack errors: create, join, invite, kick, archive, topic', async (t) => {
  const { fake, web } = await setup(t);
  const alice = fake.addUser({ name: 'alice' });
  const bob = fake.addUser({ name: 'bob' });

  const created = await web.conversations.create({ name: 'inc-42-db', is_private: false });
  const id = created.channel!.id!;
  assert.equal(created.channel!.is_member, true);
  assert.ok(fake.channels.get(id)!.members.has('UBOT'));
  await rejectsWith(web.conversations.create({ name: 'inc-42-db' }), 'name_taken');
  await rejectsWith(web.conversations.create({ name: 'Has Spaces' }), 'invalid_name_specials');
  await rejectsWith(web.conversations.create({ name: 'x'.repeat(81) }), 'invalid_name_maxlength');

  await web.conversations.invite({ channel: id, users: `${alice.id},${bob.id}` });
  await rejectsWith(web.conversations.invite({ channel: id, users: `${alice.id},${bob.id}` }), 'already_in_channel');
  await rejectsWith(web.conversations.invite({ channel: id, users: 'UNOBODY' }), 'user_not_found');
  await web.conversations.kick({ channel: id, user: bob.id });
  await rejectsWith(web.conversations.kick({ channel: id, user: bob.id }), 'not_in_channel');

  await web.conversations.setTopic({ channel: id, topic: 'DB down' });
  await web.conversations.setPurpose({ channel: id, purpose: 'Incident 42' });
  const info = await web.conversations.info({ channel: id });
  assert.equal(info.channel!.topic!.value, 'DB down');
  assert.equal(info.channel!.purpose!.value, 'Incident 42');

  await web.conversations.archive({ channel: id });
  await rejectsWith(web.conversations.archive({ channel: id }), 'already_archived');
  await rejectsWith(web.chat.postMessage({ channel: id, text: 'x' }), 'is_archived');
  await web.conversations.unarchive({ channel: id });
  await rejectsWith(web.conversations.unarchive({ channel: id }), 'not_archived');

  const lobby = fake.addChannel({ name: 'lobby', is_member: false });
  await web.conversations.join({ channel: lobby.id });
  assert.equal(lobby.is_member, true);
  const secret = fake.addChannel({ name: 'secret', is_private: true, is_member: false });
  await rejectsWith(web.conversations.join({ channel: secret.id }), 'channel_not_found');
});

// ───────────────────────────── reactions.* and pins.* ─────────────────────────────

test('reactions and pins answer already_reacted, no_reaction, message_not_found, invalid_name, already_pinned and no_pin', async (t) => {
  const { fake, web } = await setup(t);
  const ch = fake.addChannel({ name: 'incidents' });
  const { ts } = await web.chat.postMessage({ channel: ch.id, text: 'incident' });
  const target = { channel: ch.id, timestamp: ts! };

  await web.reactions.add({ ...target, name: 'eyes' });
  await rejectsWith(web.reactions.add({ ...target, name: 'eyes' }), 'already_reacted');
  await rejectsWith(web.reactions.add({ ...target, timestamp: '1.000001', name: 'eyes' }), 'message_not_found');
  await rejectsWith(web.reactions.add({ ...target, name: '' }), 'invalid_name');
  fake.react(ch.id, ts!, 'white_check_mark', 'U1', { emit: false });

  const got = await web.reactions.get(target);
  assert.deepEqual(got.message!.reactions, [
    { name: 'eyes', users: ['UBOT'], count: 1 },
    { name: 'white_check_mark', users: ['U1'], count: 1 },
  ]);
  await web.reactions.remove({ ...target, name: 'eyes' });
  await rejectsWith(web.reactions.remove({ ...target, name: 'eyes' }), 'no_reaction');

  await web.pins.add(target);
  await rejectsWith(web.pins.add(target), 'already_pinned');
  const pins = await web.pins.list({ channel: ch.id });
  assert.deepEqual(pins.items!.map((i: any) => i.message.ts), [ts]);
  await web.pins.remove(target);
  await rejectsWith(web.pins.remove(target), 'no_pin');
});

test('a reaction by a user is delivered as reaction_added with the item and its author', async (t) => {
  const { fake, listen } = await setup(t);
  const ch = fake.addChannel({ name: 'incidents' });
  const message = fake.post(ch.id, { user: 'U2', text: 'incident' }, { emit: false });
  const { events } = await listen();

  fake.react(ch.id, message.ts, 'white_check_mark', 'U1');
  fake.unreact(ch.id, message.ts, 'white_check_mark', 'U1');
  await fake.waitFor(() => events.length === 2, 'two reaction events');

  assert.deepEqual(events[0], {
    type: 'reaction_added',
    user: 'U1',
    reaction: 'white_check_mark',
    item: { type: 'message', channel: ch.id, ts: message.ts },
    item_user: 'U2',
    event_ts: events[0].event_ts,
  });
  assert.equal(events[1].type, 'reaction_removed');
  assert.equal(message.reactions?.length, 0);
});

// ───────────────────────────── Rate limits, failures, auth ─────────────────────────────

test('a 429 with Retry-After is waited out and retried by the WebClient, then succeeds', async (t) => {
  const { fake, webWith } = await setup(t);
  const ch = fake.addChannel({ name: 'incidents' });
  const web = webWith({ retryConfig: { retries: 1, minTimeout: 0, maxTimeout: 0 } });
  fake.rateLimit('chat.postMessage', { count: 1, retryAfterSec: 1, channel: ch.id });

  const started = Date.now();
  const res = await web.chat.postMessage({ channel: ch.id, text: 'after the limit' });

  assert.equal(res.ok, true);
  assert.ok(Date.now() - started >= 900, 'waited for Retry-After');
  const calls = fake.callsTo('chat.postMessage');
  assert.deepEqual(
    calls.map((c) => [c.status, c.response.error]),
    [
      [429, 'ratelimited'],
      [200, undefined],
    ],
  );
});

test('a rate limit scoped to one channel leaves other channels alone, and can be rejected at once', async (t) => {
  const { fake, webWith } = await setup(t);
  const a = fake.addChannel({ name: 'a' });
  const b = fake.addChannel({ name: 'b' });
  const web = webWith({ rejectRateLimitedCalls: true });
  fake.rateLimit('chat.postMessage', { count: 1, retryAfterSec: 7, channel: a.id });

  await web.chat.postMessage({ channel: b.id, text: 'fine' });
  await assert.rejects(web.chat.postMessage({ channel: a.id, text: 'limited' }), (e: any) => {
    assert.equal(e.code, ErrorCode.RateLimitedError);
    assert.equal(e.retryAfter, 7);
    return true;
  });
  await web.chat.postMessage({ channel: a.id, text: 'fine again' });
});

test('failNext answers ok:false with the given error for the next calls only', async (t) => {
  const { fake, web } = await setup(t);
  const ch = fake.addChannel({ name: 'alerts' });
  fake.failNext('conversations.info', 'fatal_error', 2);

  await rejectsWith(web.conversations.info({ channel: ch.id }), 'fatal_error');
  await rejectsWith(web.conversations.info({ channel: ch.id }), 'fatal_error');
  const info = await web.conversations.info({ channel: ch.id });
  assert.equal(info.channel!.name, 'alerts');
  assert.equal(fake.callsTo('conversations.info').length, 3);
});

test('a wrong token gets invalid_auth and an unknown method gets unknown_method; auth.test names the bot', async (t) => {
  const { fake, web, webWith } = await setup(t);

  await rejectsWith(webWith({}, 'xoxb-wrong').auth.test(), 'invalid_auth');
  await rejectsWith(web.apiCall('apps.connections.open'), 'invalid_auth');
  await rejectsWith(web.apiCall('no.such.method'), 'unknown_method');
  const me = await web.auth.test();
  assert.deepEqual([me.user_id, me.bot_id, me.team_id], ['UBOT', 'BBOT', 'T0FAKE']);
  assert.equal(fake.calls.length, 4);
});

// ───────────────────────────── users.*, usergroups.* ─────────────────────────────

test('users.list paginates, users.info finds or fails, usergroups.list lists groups', async (t) => {
  const { fake, web } = await setup(t, { pageSize: 2 });
  const alice = fake.addUser({ name: 'alice', real_name: 'Alice A' });
  fake.addUser({ name: 'bob' });
  fake.addUsergroup({ handle: 'oncall', name: 'On-call' });

  const ids: string[] = [];
  for await (const page of web.paginate('users.list', { limit: 2 })) ids.push(...(page as any).members.map((u: any) => u.id));
  assert.deepEqual(ids, [...fake.users.keys()]);
  assert.equal(fake.callsTo('users.list').length, 2);
  // Without a limit, the fake's pageSize applies.
  const firstPage = await web.users.list({});
  assert.equal(firstPage.members!.length, 2);
  assert.ok(firstPage.response_metadata?.next_cursor);

  const info = await web.users.info({ user: alice.id });
  assert.equal(info.user!.profile!.real_name, 'Alice A');
  await rejectsWith(web.users.info({ user: 'UNOBODY' }), 'user_not_found');
  const groups = await web.usergroups.list();
  assert.deepEqual(groups.usergroups!.map((g) => g.handle), ['oncall']);
});

// ───────────────────────────── files ─────────────────────────────

test('filesUploadV2 round-trips content into a thread with a file_share message', async (t) => {
  const { fake, web } = await setup(t);
  const ch = fake.addChannel({ name: 'incidents' });
  const parent = await web.chat.postMessage({ channel: ch.id, text: 'incident' });

  const res = await web.filesUploadV2({
    channel_id: ch.id,
    thread_ts: parent.ts!,
    content: 'line 1\nline 2 ✓',
    filename: 'timeline.txt',
    title: 'Timeline',
    initial_comment: 'Timeline attached',
  });

  assert.equal(res.ok, true);
  assert.equal(fake.uploads.length, 1);
  const { id, ...upload } = fake.uploads[0]!;
  assert.deepEqual(upload, {
    filename: 'timeline.txt',
    title: 'Timeline',
    content: 'line 1\nline 2 ✓',
    channel: ch.id,
    thread_ts: parent.ts,
    initial_comment: 'Timeline attached',
  });
  const share = fake.messagesIn(ch.id).at(-1)!;
  assert.equal(share.subtype, 'file_share');
  assert.equal(share.thread_ts, parent.ts);
  assert.equal(share.text, 'Timeline attached');
  assert.deepEqual(share.files!.map((f) => [f.id, f.name]), [[id, 'timeline.txt']]);
  await rejectsWith(web.files.completeUploadExternal({ files: [{ id: 'FNOPE' }] }), 'file_not_found');
});

/**
 * The fake Slack with several Socket Mode connections of one app, as when two IMS instances run: Slack writes
 * each envelope (event, click, command) to ONE of the app's open connections, not to all of them, redelivers an
 * unacked event (maybe on another connection), and an event written to a connection that dies unacked reaches
 * another. Driven by the REAL @slack/socket-mode client; the killed instance is a real process killed with SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { WebClient } from '@slack/web-api';
import type { FakeSlack, FakeSlackOptions } from './fake-slack.ts';
import { guardSocketModeShutdownBug } from './harness.ts';
import { fakeWithClients } from './sdk-clients.ts';

guardSocketModeShutdownBug();

const PROJECT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** What one connection's app saw: each frame's type, event_id (events), retry number and payload. */
interface Seen {
  type: string;
  eventId?: string;
  retryNum?: number;
  retryReason?: string;
  body: any;
}

interface Instance {
  /** The connection number the fake gave it (its hello's). */
  connection: number;
  seen: Seen[];
}

interface Setup {
  fake: FakeSlack;
  web: WebClient;
  /** Starts one more SocketModeClient with the app's token (another instance); it acks what `acks` accepts (default: all). */
  instance(acks?: (seen: Seen) => boolean): Promise<Instance>;
}

async function setup(t: TestContext, opts?: FakeSlackOptions): Promise<Setup> {
  const { fake, web: webClient, socket } = await fakeWithClients(t, opts);
  const web = webClient();
  const instance = async (acks: (seen: Seen) => boolean = () => true): Promise<Instance> => {
    const client = socket({ clientPingTimeout: 500, serverPingTimeout: 30_000 });
    const seen: Seen[] = [];
    client.on('slack_event', async ({ ack, type, body, retry_num, retry_reason }) => {
      const frame: Seen = { type, eventId: body?.event_id, retryNum: retry_num, retryReason: retry_reason, body };
      seen.push(frame);
      if (acks(frame)) await ack();
    });
    const hellos = fake.hellos;
    await client.start();
    // start() resolves at this client's hello: the connection greeted last is its own.
    assert.equal(fake.hellos, hellos + 1, 'one hello per instance started');
    return { connection: fake.hellos, seen };
  };
  return { fake, web, instance };
}

/** Messages posted by a monitoring bot in a channel the app is in: one `message` event each. */
function postAlerts(fake: FakeSlack, channel: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => fake.post(channel, { bot_id: 'B0NAGIOS1', subtype: 'bot_message', text: `PROBLEM: db${i}/disk is CRITICAL` }).ts);
}

const eventsOf = (instance: Instance) => instance.seen.filter((s) => s.type === 'events_api');

test('two connections of one app share its events: each event goes to one of them, in turn, and is delivered once when acked', async (t) => {
  const { fake, instance } = await setup(t);
  const alerts = fake.addChannel({ name: 'alerts' });
  const [a, b] = [await instance(), await instance()];
  assert.deepEqual([a.connection, b.connection], [1, 2]);
  assert.deepEqual(fake.openConnections, [1, 2]);
  assert.equal(fake.connectionCount, 2);

  const posted = postAlerts(fake, alerts.id, 10);
  await fake.waitFor(() => fake.envelopes.length === 10 && fake.envelopes.every((e) => e.ackedAt), 'ten acked envelopes');

  assert.deepEqual(fake.envelopes.map((e) => e.connection), [1, 2, 1, 2, 1, 2, 1, 2, 1, 2], 'round robin over the open connections');
  assert.equal(new Set(fake.envelopes.map((e) => e.event_id)).size, 10, 'no event written twice');
  for (const [who, connection] of [[a, 1], [b, 2]] as const) {
    assert.deepEqual(eventsOf(who).map((s) => s.eventId), fake.envelopes.filter((e) => e.connection === connection).map((e) => e.event_id),
      `connection ${connection} saw exactly the envelopes written to it`);
  }
  assert.deepEqual([...eventsOf(a), ...eventsOf(b)].map((s) => s.body.event.ts).sort(), [...posted].sort(), 'every post reached one instance');
});

test('with connectionChoice random, events are spread over the connections and each still reaches exactly one', async (t) => {
  const { fake, instance } = await setup(t, { connectionChoice: 'random' });
  const alerts = fake.addChannel({ name: 'alerts' });
  const [a, b] = [await instance(), await instance()];

  const posted = postAlerts(fake, alerts.id, 40);
  await fake.waitFor(() => fake.envelopes.length === 40 && fake.envelopes.every((e) => e.ackedAt), 'forty acked envelopes');

  const [toA, toB] = [eventsOf(a).length, eventsOf(b).length];
  assert.ok(toA > 0 && toB > 0, `both connections got events (${toA} and ${toB}; all 40 to one has odds 2^-39)`);
  assert.equal(toA + toB, 40);
  assert.deepEqual([...eventsOf(a), ...eventsOf(b)].map((s) => s.body.event.ts).sort(), [...posted].sort());
});

test('an event its connection does not ack is redelivered, with the same event_id, on the next connection, which acks it', async (t) => {
  const { fake, instance } = await setup(t, { redeliverAfterMs: 100 });
  const alerts = fake.addChannel({ name: 'alerts' });
  const stuck = await instance(() => false);
  const healthy = await instance();

  const [ts] = postAlerts(fake, alerts.id, 1);
  await fake.waitFor(() => fake.envelopes.find((e) => e.ackedAt), 'the redelivery to be acked');

  const [first, again] = fake.envelopes;
  assert.equal(fake.envelopes.length, 2, 'acked once: not redelivered again');
  assert.deepEqual([first.connection, first.retry_attempt, first.ackedAt], [stuck.connection, 0, undefined]);
  assert.deepEqual([again.connection, again.retry_attempt, again.event_id], [healthy.connection, 1, first.event_id]);
  assert.notEqual(again.envelope_id, first.envelope_id);
  assert.deepEqual(eventsOf(healthy).map((s) => [s.eventId, s.retryNum, s.retryReason, s.body.event.ts]), [[first.event_id, 1, 'timeout', ts]]);
  assert.deepEqual(eventsOf(stuck).map((s) => s.eventId), [first.event_id]);
});

/**
 * Another instance in its own process: a SocketModeClient that acks the first `ackFirst` events it gets and then
 * none (its work stuck), printing each event_id it sees as a JSON line.
 */
function startInstanceProcess(apiUrl: string, ackFirst: number): { child: ChildProcess; seen: string[]; started: Promise<void> } {
  const script = `
    import { SocketModeClient } from '@slack/socket-mode';
    const client = new SocketModeClient({ appToken: 'xapp-test', clientOptions: { slackApiUrl: ${JSON.stringify(apiUrl)} }, logLevel: 'error' });
    let count = 0;
    client.on('slack_event', async ({ ack, body }) => {
      count++;
      if (count <= ${ackFirst}) await ack();
      process.stdout.write(JSON.stringify({ eventId: body.event_id }) + '\\n');
    });
    await client.start();
    process.stdout.write(JSON.stringify({ started: true }) + '\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: PROJECT, stdio: ['ignore', 'pipe', 'inherit'] });
  const seen: string[] = [];
  const started = new Promise<void>((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`the instance process ended before it connected (${code ?? signal})`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const frame = JSON.parse(line) as { started?: boolean; eventId?: string };
      if (frame.started) resolve();
      if (frame.eventId) seen.push(frame.eventId);
    });
  });
  return { child, seen, started };
}

test('an instance killed (SIGKILL) mid-stream loses nothing: what it had not acked goes to the other connection at once', async (t) => {
  // Redelivery after a minute: only the dead connection's hand-over can bring these events back within the test.
  const { fake, instance } = await setup(t, { redeliverAfterMs: 60_000 });
  const alerts = fake.addChannel({ name: 'alerts' });
  const survivor = await instance();
  const doomed = startInstanceProcess(fake.apiUrl, 3);
  t.after(() => { doomed.child.kill('SIGKILL'); });
  await doomed.started;
  assert.deepEqual(fake.openConnections, [survivor.connection, survivor.connection + 1]);
  const doomedConnection = survivor.connection + 1;

  postAlerts(fake, alerts.id, 20);
  await fake.waitFor(() => doomed.seen.length === 10, 'the doomed instance to get its ten events');
  const ackedByDoomed = await fake.waitFor(() => {
    const acked = fake.envelopes.filter((e) => e.connection === doomedConnection && e.ackedAt);
    return acked.length === 3 && acked;
  }, 'its first three acks');
  doomed.child.kill('SIGKILL');

  const eventIds = new Set(fake.envelopes.map((e) => e.event_id));
  assert.equal(eventIds.size, 20);
  await fake.waitFor(() => [...eventIds].every((id) => fake.envelopes.some((e) => e.event_id === id && e.ackedAt)), 'every event acked by someone', 5_000);

  assert.deepEqual(fake.openConnections, [survivor.connection]);
  const handedOver = fake.envelopes.filter((e) => e.retry_attempt === 1);
  assert.equal(handedOver.length, 7, 'the seven it saw and did not ack, sent again');
  assert.ok(handedOver.every((e) => e.connection === survivor.connection && e.ackedAt));
  const survivorIds = eventsOf(survivor).map((s) => s.eventId!);
  assert.equal(survivorIds.length, 17, 'its own ten and the seven handed over');
  assert.equal(new Set(survivorIds).size, 17, 'none twice');
  assert.deepEqual(new Set([...survivorIds, ...ackedByDoomed.map((e) => e.event_id)]), eventIds, 'nothing lost');
  assert.ok(ackedByDoomed.every((e) => !survivorIds.includes(e.event_id)), 'what the killed instance acked is not sent again');
});

test('clicks and slash commands go to one connection each, taking turns like events, and the ack comes from that one', async (t) => {
  const { fake, web, instance } = await setup(t);
  fake.addUser({ id: 'UALICE', name: 'alice' });
  const ops = fake.addChannel({ name: 'ops', members: ['UALICE'] });
  const [a, b] = [await instance(), await instance()];
  const posted = await web.chat.postMessage({
    channel: ops.id, text: 'DB down',
    blocks: [{ type: 'actions', block_id: 'incident_actions', elements: [{ type: 'button', action_id: 'ack', text: { type: 'plain_text', text: 'Acknowledge' }, value: 'INC-1' }] }],
  });
  await fake.waitFor(() => fake.envelopes.length === 1 && fake.envelopes[0].ackedAt, 'the echo of the post');

  const done = [
    await fake.click('UALICE', ops.id, posted.ts!, 'Acknowledge'),
    await fake.slash('UALICE', ops.id, 'status'),
    await fake.click('UALICE', ops.id, posted.ts!, 'Acknowledge'),
    await fake.slash('UALICE', ops.id, 'status'),
  ];

  // The echo took connection 1's turn; the four envelopes go 2, 1, 2, 1.
  assert.deepEqual(fake.interactions.map((i) => [i.type, i.connection]),
    [['interactive', b.connection], ['slash_commands', a.connection], ['interactive', b.connection], ['slash_commands', a.connection]]);
  assert.ok(fake.interactions.every((i) => i.ackedAt), 'each acked');
  for (const who of [a, b]) {
    const mine = fake.interactions.filter((i) => i.connection === who.connection).map((i) => i.envelope_id);
    const received = who.seen.filter((s) => s.type !== 'events_api').map((s) => s.body);
    assert.deepEqual(received, done.filter((d) => mine.includes(d.envelope_id)).map((d) => d.payload), `connection ${who.connection} got its two and only those`);
  }
});

test('one connection of one app takes every envelope, and one that is retiring hands the stream to its successor', async (t) => {
  const { fake, instance } = await setup(t);
  const alerts = fake.addChannel({ name: 'alerts' });
  const only = await instance();
  postAlerts(fake, alerts.id, 3);
  await fake.waitFor(() => eventsOf(only).length === 3, 'three events');
  assert.deepEqual(fake.envelopes.map((e) => e.connection), [1, 1, 1]);

  fake.disconnect('refresh_requested');
  await fake.waitForConnection(2);
  postAlerts(fake, alerts.id, 2);
  await fake.waitFor(() => eventsOf(only).length === 5, 'two more events');
  assert.deepEqual(fake.envelopes.map((e) => e.connection), [1, 1, 1, 2, 2], 'the connection told to disconnect gets no more');
  await fake.waitFor(() => fake.connectionCount === 1, 'the retired connection to close');
  assert.deepEqual(fake.openConnections, [2]);
  assert.equal(fake.dropConnection(1), false, 'connection 1 is closed: nothing to drop');
});

/**
 * The fault suite, network: what the links to Slack do to the real bot process in production — sockets cut
 * or gone silent mid-burst, `disconnect` frames, redeliveries, Web API outages, answers lost after the work
 * was done. Every scenario ends with: nothing lost, nothing twice, no unintended mention, still working.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { messageEventOf, guardSocketModeShutdownBug, INC_APPS } from './harness.ts';
import { Alerts, assertSurvived, fakeSlack, startBot, until, waitHandled, writeSuiteConfig, UNPACED_ENV } from './faults.ts';

guardSocketModeShutdownBug();

test('a socket cut abruptly mid-burst loses no alert and posts none twice, even when Slack drops the events sent while it was down', async (t) => {
  const fake = await fakeSlack(t, { dropWhileDisconnected: true });
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  await alerts.warmUp(run);
  await alerts.burst(60, { midway: () => fake.dropConnections() });
  await until(run, () => fake.callsTo('apps.connections.open').length >= 2 && fake.connectionCount > 0, 'the reconnect');
  await alerts.burst(20);
  await assertSurvived(fake, alerts, run);
});

test('a link that goes silent mid-burst (no pongs, no acks) is noticed by its pings; nothing is lost or posted twice', async (t) => {
  const fake = await fakeSlack(t, { dropWhileDisconnected: true });
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  await alerts.warmUp(run);
  const opens = fake.callsTo('apps.connections.open').length;
  await alerts.burst(60, { midway: () => fake.silence() });
  await until(run, () => fake.callsTo('apps.connections.open').length > opens && fake.connectionCount > 0, 'a new connection after the link went silent');
  await alerts.burst(20);
  await assertSurvived(fake, alerts, run);
});

test('disconnect frames mid-burst (refresh_requested, then warning) lose nothing and post nothing twice', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  await alerts.warmUp(run);
  const reconnected = (count: number) => until(run, () => fake.callsTo('apps.connections.open').filter((c) => c.status === 200).length >= count && fake.connectionCount > 0, `connection #${count}`);
  await alerts.burst(50, { midway: () => fake.disconnect('refresh_requested') });
  await reconnected(2);
  await alerts.burst(30, { midway: () => fake.disconnect('warning') });
  await reconnected(3);
  await assertSurvived(fake, alerts, run);
});

test('redeliveries are handled once: a retry_attempt of a handled event, the same message under a new event_id, and a first delivery that arrives as a retry', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  await alerts.warmUp(run);
  const first = await alerts.burst(30);
  await waitHandled(fake, first, run);
  for (const alert of first) {
    const message = fake.messagesIn(alert.channel).find((m) => m.ts === alert.ts)!;
    const original = fake.envelopes.find((e) => e.event?.ts === alert.ts && e.event?.channel === alert.channel)!;
    const event = messageEventOf(alert.channel, message);
    for (const retryAttempt of [1, 2, 3]) fake.sendEvent(event, { eventId: original.event_id, retryAttempt });
    fake.sendEvent(event); // the same message under a new event_id
  }
  // Deliveries whose first attempt never reached the bot: they come as retries, and must still be handled.
  const fates = ['page', 'incident', 'seen'] as const;
  for (let i = 0; i < 10; i++) {
    const alert = alerts.post(fates[i % 3], { emit: false });
    const message = fake.messagesIn(alert.channel).find((m) => m.ts === alert.ts)!;
    fake.sendEvent(messageEventOf(alert.channel, message), { retryAttempt: 1 + (i % 3) });
  }
  // Redeliveries that arrive while the first delivery is still being worked on.
  for (let i = 0; i < 10; i++) {
    const alert = alerts.post(fates[i % 3]);
    const message = fake.messagesIn(alert.channel).find((m) => m.ts === alert.ts)!;
    const original = fake.envelopes.findLast((e) => e.event?.ts === alert.ts)!;
    fake.sendEvent(messageEventOf(alert.channel, message), { eventId: original.event_id, retryAttempt: 1 });
    fake.sendEvent(messageEventOf(alert.channel, message));
  }
  await assertSurvived(fake, alerts, run);
});

test('a 5xx outage of the Web API for a few seconds mid-burst, with the socket cut during it, loses nothing and posts nothing twice; the bot reconnects once Slack answers again', async (t) => {
  const fake = await fakeSlack(t, { dropWhileDisconnected: true });
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  await alerts.warmUp(run);
  await alerts.burst(60, { midway: () => fake.outage(503, 2500) });
  await until(run, () => fake.calls.some((c) => c.status === 503), 'calls answered 503');
  fake.dropConnections();
  await until(run, () => fake.callsTo('apps.connections.open').some((c) => c.status === 503), 'a reconnect attempt during the outage');
  await until(run, () => fake.connectionCount > 0, 'the reconnect after the outage', 20_000);
  await alerts.burst(20);
  await assertSurvived(fake, alerts, run);
});

test('answers lost after Slack made the post, its continuation or the reaction (connection cut, no answer) make no second post and lose nothing', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file, { env: UNPACED_ENV });
  const alerts = new Alerts(fake);
  await alerts.warmUp(run);
  const stackTrace = (m: string) => `ERROR ${m} java.lang.IllegalStateException\n${Array.from({ length: 300 }, (_, i) => `\tat com.example.Service${i}.call(Service.java:${i})`).join('\n')}`;
  await alerts.burst(40, {
    midway: () => {
      fake.loseAnswers('chat.postMessage', 4);
      fake.loseAnswers('reactions.add', 3);
      // A long alert: its continuation in the thread is a post whose answer can be lost too.
      alerts.post('incident', { text: stackTrace });
      fake.loseAnswers('chat.postMessage', 2, { channel: INC_APPS });
    },
  });
  await until(run, () => fake.callsTo('chat.postMessage').filter((c) => c.status === 0).length === 6, 'six lost chat.postMessage answers');
  await assertSurvived(fake, alerts, run);
});

test('an answer lost after the post was made, with the bot killed at that moment: the restart on the same state file does not post it again', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig();
  const first = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  await alerts.warmUp(first);
  fake.loseAnswers('chat.postMessage', 1, { channel: INC_APPS, onLost: () => first.child.kill('SIGKILL') });
  const killedAt = alerts.post('incident');
  const { signal } = await first.exited;
  assert.equal(signal, 'SIGKILL');
  assert.equal(fake.callsTo('chat.postMessage').filter((c) => c.status === 0).length, 1, 'the post was made and its answer lost');
  // While the bot is down, more alerts come.
  const whileDown = await alerts.burst(10);

  const second = await startBot(t, fake, file);
  await waitHandled(fake, [killedAt, ...whileDown], second);
  await assertSurvived(fake, alerts, second);
});

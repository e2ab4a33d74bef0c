/**
 * The plugins' outbox end to end (what exporter plugins build on): deliveries survive failures and
 * restarts, go in order within a group, are idempotent on their key, and permanent errors give up.
 * A test clock (`now`) stands still, so a retry happens exactly when the test moves it past the backoff.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { State, definePlugin, runReport, type OutboxDelivery } from '../ims.ts';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, NAGIOS, REPORT, baseConfig, guardSocketModeShutdownBug, startBot, startFake, tempDir, type Bot } from './harness.ts';

guardSocketModeShutdownBug();

const MINUTE = 60_000;

/** A clock that stands still until the test moves it: a retry is due only when the test says so. */
function testClock() {
  const clock = { at: Date.now(), now: () => clock.at, jump: (ms = 10 * MINUTE) => { clock.at += ms; } };
  return clock;
}

/** A delivery target that records every attempt and fails on demand. */
function target() {
  const attempts: { key: string; group: string; attempts: number }[] = [];
  const delivered: string[] = [];
  const failures = new Map<string, number | 'permanent' | 'hang'>();
  const aborted: string[] = [];
  const deliver = async (d: OutboxDelivery, signal: AbortSignal) => {
    attempts.push({ key: d.key, group: d.group, attempts: d.attempts });
    const failure = failures.get(d.key);
    if (failure === 'permanent') throw Object.assign(new Error('400 invalid payload'), { permanent: true });
    if (failure === 'hang') {
      failures.delete(d.key);
      await new Promise((_, reject) => signal.addEventListener('abort', () => { aborted.push(d.key); reject(signal.reason); }));
    }
    if (typeof failure === 'number' && failure > 0) {
      failures.set(d.key, failure - 1);
      throw new Error('HTTP 503 from the tracker');
    }
    delivered.push(d.key);
  };
  return { attempts, delivered, failures, aborted, deliver };
}

const failedAttempts = (bot: Bot, key: string) => bot.logs.filter((l) => l.includes(`delivery of ${key} failed`)).length;

async function alert(fake: FakeSlack, text: string) {
  const source = fake.post(ALERTS, { bot_id: NAGIOS, text });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS).find((m) => m.bot_id === fake.botId && m.text.includes(text)), `the repost of '${text}'`);
  return { source, post };
}

test('a failing delivery is retried until delivered once, in order within its group, across a restart', async (t) => {
  const fake = await startFake();
  const bots: Bot[] = [];
  t.after(async () => { for (const bot of bots) await bot.stop(); await fake.close(); });
  const statePath = path.join(tempDir(), 'ims.db');
  const sink = target();
  sink.failures.set('incident-1:opened', 2);
  const exporter = () => definePlugin({
    name: 'exporter',
    onMatch: async (ctx) => { await ctx.outbox.enqueue({ key: `incident-${ctx.incident.id}:opened`, group: `incident-${ctx.incident.id}`, payload: { text: ctx.incident.text } }); },
    onResolve: async (ctx) => { await ctx.outbox.enqueue({ key: `incident-${ctx.incident.id}:resolved`, group: `incident-${ctx.incident.id}`, payload: { by: ctx.user } }); },
    deliver: (d, ctx) => sink.deliver(d, ctx.signal),
  });
  const clock = testClock();
  const first = await startBot(fake, baseConfig({ plugins: [exporter()] }), { statePath, now: clock.now });
  bots.push(first);

  const one = await alert(fake, 'checkout error');
  await fake.waitFor(() => failedAttempts(first, 'incident-1:opened') === 1, 'the first failed attempt');
  fake.react(INC_APPS, one.post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => first.ims.state.incidentById(1)?.resolvedAt, 'the resolution');
  await alert(fake, 'search error');
  await fake.waitFor(() => sink.delivered.includes('incident-2:opened'), 'the other group, not blocked by the failing one');
  assert.ok(!sink.attempts.some((a) => a.key === 'incident-1:resolved'), 'the resolution waits behind the failing delivery of its group');

  assert.equal(await runReport(first.ims), true);
  const report = JSON.stringify(fake.messagesIn(REPORT).at(-1)?.blocks);
  assert.match(report, /\*Outbox\*\\n2 deliveries waiting, oldest 0m old; last error: HTTP 503 from the tracker/, 'the report shows the waiting deliveries');

  await first.stop();
  assert.equal(sink.delivered.includes('incident-1:opened'), false);

  const second = await startBot(fake, baseConfig({ plugins: [exporter()] }), { statePath, now: clock.now });
  bots.push(second);
  clock.jump();
  await fake.waitFor(() => failedAttempts(second, 'incident-1:opened') === 1, 'the second failed attempt, after the restart');
  clock.jump();
  await fake.waitFor(() => sink.delivered.includes('incident-1:resolved'), 'both deliveries of the group');
  await second.ims.idle();

  assert.deepEqual(sink.delivered.filter((k) => k.startsWith('incident-1:')), ['incident-1:opened', 'incident-1:resolved'], 'in order within the group');
  assert.deepEqual([...sink.delivered].sort(), ['incident-1:opened', 'incident-1:resolved', 'incident-2:opened'], 'each delivered once');
  assert.deepEqual(sink.attempts.filter((a) => a.key === 'incident-1:opened').map((a) => a.attempts), [0, 1, 2], 'three attempts, the count kept across the restart');
  const openedAt = sink.attempts.findIndex((a) => a.key === 'incident-1:opened' && a.attempts === 2);
  const resolvedAt = sink.attempts.findIndex((a) => a.key === 'incident-1:resolved');
  assert.ok(resolvedAt > openedAt, 'the resolution was first tried after the opening was delivered');
  assert.match(second.logs.find((l) => l.includes('delivery of incident-1:opened failed'))!, /attempt 2\): HTTP 503 from the tracker; retry in \d+ s depth=2/);
});

test('the same key enqueued twice, or again after a restart, is delivered once', async (t) => {
  const fake = await startFake();
  const bots: Bot[] = [];
  t.after(async () => { for (const bot of bots) await bot.stop(); await fake.close(); });
  const statePath = path.join(tempDir(), 'ims.db');
  const sink = target();
  let run = 0;
  const plugin = () => definePlugin({
    name: 'exporter',
    onStart: async (ctx) => {
      run++;
      await ctx.outbox.enqueue({ key: 'welcome', group: 'g', payload: { run } });
      await ctx.outbox.enqueue({ key: 'welcome', group: 'g', payload: { run, again: true } });
      await ctx.outbox.enqueue({ key: `sentinel-${run}`, group: 'g', payload: null });
    },
    deliver: (d, ctx) => sink.deliver(d, ctx.signal),
  });
  const first = await startBot(fake, baseConfig({ plugins: [plugin()] }), { statePath });
  bots.push(first);
  await fake.waitFor(() => sink.delivered.includes('sentinel-1'), 'the first run to deliver');
  await first.stop();
  const second = await startBot(fake, baseConfig({ plugins: [plugin()] }), { statePath });
  bots.push(second);
  await fake.waitFor(() => sink.delivered.includes('sentinel-2'), 'the second run to deliver');
  assert.deepEqual(sink.delivered, ['welcome', 'sentinel-1', 'sentinel-2']);
  assert.equal(sink.attempts.filter((a) => a.key === 'welcome').length, 1);
});

test('a permanent error gives up at once, is logged, and does not block its group', async (t) => {
  const fake = await startFake();
  const sink = target();
  sink.failures.set('bad', 'permanent');
  const plugin = definePlugin({
    name: 'exporter',
    onStart: async (ctx) => {
      await ctx.outbox.enqueue({ key: 'bad', group: 'g', payload: 1 });
      await ctx.outbox.enqueue({ key: 'next', group: 'g', payload: 2 });
    },
    deliver: (d, ctx) => sink.deliver(d, ctx.signal),
  });
  const bot = await startBot(fake, baseConfig({ plugins: [plugin] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  await fake.waitFor(() => sink.delivered.includes('next'), 'the next delivery of the group');
  await bot.ims.idle();
  assert.deepEqual(sink.attempts.map((a) => a.key), ['bad', 'next'], 'tried once, not retried');
  assert.ok(bot.logs.some((l) => l.includes("ERROR outbox: 'exporter' gave up on bad: 400 invalid payload")));
  assert.equal(bot.ims.state.outboxStats().depth, 0);
});

test('a delivery that hangs past hookTimeoutMs is abandoned, its signal aborted, and retried', async (t) => {
  const fake = await startFake();
  const sink = target();
  sink.failures.set('slow', 'hang');
  const clock = testClock();
  const plugin = definePlugin({
    name: 'exporter',
    onStart: async (ctx) => { await ctx.outbox.enqueue({ key: 'slow', group: 'g', payload: null }); },
    deliver: (d, ctx) => sink.deliver(d, ctx.signal),
  });
  const bot = await startBot(fake, baseConfig({ plugins: [plugin], hookTimeoutMs: 200 }), { now: clock.now });
  t.after(async () => { await bot.stop(); await fake.close(); });
  await fake.waitFor(() => failedAttempts(bot, 'slow') === 1, 'the timed-out attempt');
  assert.match(bot.logs.find((l) => l.includes('delivery of slow failed'))!, /delivery timed out/);
  await fake.waitFor(() => sink.aborted.includes('slow'), "the abandoned attempt's signal to abort");
  clock.jump();
  await fake.waitFor(() => sink.delivered.includes('slow'), 'the retry');
  assert.deepEqual(sink.attempts.map((a) => a.attempts), [0, 1]);
});

test('pruning forgets delivered deliveries older than a month past the horizon, and keeps pending ones', () => {
  const state = new State(':memory:');
  const day = 24 * 3600_000;
  const now = Date.UTC(2026, 10, 21);
  state.enqueue('p', 'old-delivered', 'g1', {}, now - 60 * day);
  state.enqueue('p', 'old-pending', 'g2', {}, now - 60 * day);
  state.enqueue('p', 'recent-delivered', 'g3', {}, now - 10 * day);
  for (const item of state.dueDeliveries(now)) if (item.key !== 'old-pending') state.markDelivered(item.id, now);
  state.prune(now - 8 * day);
  assert.deepEqual(state.dueDeliveries(now).map((item) => item.key), ['old-pending'], 'the pending delivery is kept');
  // A key still known refuses its repeat; a forgotten one can be queued again.
  const queuedAgain = ['old-delivered', 'old-pending', 'recent-delivered'].map((key) => state.enqueue('p', key, 'g4', {}, now));
  assert.deepEqual(queuedAgain, [true, false, false], 'only the old delivered key was forgotten');
  state.close();
});

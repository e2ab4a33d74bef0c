/**
 * Plugins end to end: every hook fires with its typed context after the work it follows; a plugin that throws,
 * rejects or hangs is logged with its name and hook (and where it failed: file, line, first frames) and never
 * blocks an alert or another plugin; several failures of one event are reported together; hooks and deliveries
 * time out through withTimeout; HOOK_NAMES matches Plugin by type; the shipped `plugins/pin.ts` keeps open
 * incidents pinned.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { WebClient } from '@slack/web-api';
import {
  HOOK_NAMES, PluginHookErrors, TimeoutError, definePlugin, runHooks, runReport, type HookContext, type HookListCheck, type HookName, type Plugin,
} from '../ims.ts';
import { pin } from '../plugins/pin.ts';
import type { FakeSlack, SentEnvelope } from './fake-slack.ts';
import {
  ALERTS, DEFAULT_CH, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir, type Bot,
} from './harness.ts';

guardSocketModeShutdownBug();

/** Wait until the bot has acked an event matching `predicate` and finished handling it (hooks included). */
async function handled(fake: FakeSlack, bot: Bot, what: string, predicate: (event: any) => boolean): Promise<SentEnvelope> {
  const envelope = await fake.waitFor(() => fake.envelopes.find((e) => e.ackedAt && predicate(e.event)), what);
  await bot.ims.idle();
  return envelope;
}

const incidentPost = (fake: FakeSlack, channel: string, text: string) =>
  fake.waitFor(() => fake.messagesIn(channel).find((m) => m.bot_id === fake.botId && (!m.thread_ts || m.thread_ts === m.ts) && m.text.includes(text)), `the incident post of '${text}'`);

/** What every hook context must carry. */
function checkBase(ctx: HookContext, fake: FakeSlack): void {
  assert.ok(ctx.slack instanceof WebClient);
  assert.equal(ctx.botUserId, fake.botUserId);
  assert.ok(ctx.signal instanceof AbortSignal);
  assert.equal(ctx.signal.aborted, false);
  assert.equal(ctx.reportChannel, REPORT);
  assert.ok(Array.isArray(ctx.config.rules));
  assert.equal(typeof ctx.log.info, 'function');
  assert.equal(typeof ctx.outbox.enqueue, 'function');
}

test('every hook fires with its context, after the work it follows, and the logger is tagged with the plugin name', async (t) => {
  const fake = await startFake();
  const calls: { hook: string; detail: Record<string, unknown> }[] = [];
  const problems: string[] = [];
  const check = (hook: string, ctx: HookContext) => { try { checkBase(ctx, fake); } catch (error) { problems.push(`${hook}: ${(error as Error).message}`); } };
  const spy = definePlugin({
    name: 'spy',
    onStart: async (ctx) => { check('onStart', ctx); await ctx.store.set('started', true); calls.push({ hook: 'onStart', detail: {} }); },
    onMessage: (ctx) => { check('onMessage', ctx); calls.push({ hook: 'onMessage', detail: { text: ctx.message.text, poster: ctx.message.poster, channel: ctx.message.channel } }); },
    onMatch: async (ctx) => {
      check('onMatch', ctx);
      ctx.log.info(`saw incident #${ctx.incident.id}`);
      const posted = fake.messagesIn(ctx.incident.incidentChannel).some((m) => m.ts === ctx.incident.incidentTs);
      const stored = (await ctx.incidents.byId(ctx.incident.id))?.incidentTs === ctx.incident.incidentTs;
      calls.push({ hook: 'onMatch', detail: {
        id: ctx.incident.id, head: ctx.match.rule.head, rule: ctx.match.rule.number, text: ctx.message.text, posted,
        stored, permalink: ctx.permalink(ctx.message.channel, ctx.message.ts),
      } });
    },
    onHotline: async (ctx) => {
      check('onHotline', ctx);
      calls.push({ hook: 'onHotline', detail: { mentions: ctx.mentions, post: ctx.post, id: ctx.incident.id, hotline: ctx.incident.hotline } });
      await ctx.slack.chat.postMessage({ channel: ctx.post.channel, thread_ts: ctx.post.ts, text: 'paged the on-call' });
    },
    onResolve: async (ctx) => {
      check('onResolve', ctx);
      const stateResolved = !!(await ctx.incidents.byId(ctx.incident.id))?.resolvedAt;
      calls.push({ hook: 'onResolve', detail: { id: ctx.incident.id, user: ctx.user, reaction: ctx.reaction, resolvedAt: ctx.incident.resolvedAt, stateResolved } });
    },
    onReopen: async (ctx) => {
      check('onReopen', ctx);
      const open = (await ctx.incidents.list({ open: true })).length;
      calls.push({ hook: 'onReopen', detail: { id: ctx.incident.id, user: ctx.user, resolvedAt: ctx.incident.resolvedAt, open } });
    },
    onReport: (ctx) => { check('onReport', ctx); calls.push({ hook: 'onReport', detail: { open: ctx.report.open.length } }); },
    onStop: async (ctx) => { calls.push({ hook: 'onStop', detail: { incidents: (await ctx.incidents.list()).length, started: await ctx.store.get('started') } }); },
  });
  const bot = await startBot(fake, baseConfig({ plugins: [spy], posters: [NAGIOS, HUMAN] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  assert.deepEqual(calls.map((c) => c.hook), ['onStart'], 'onStart fires once, before any event');

  const stranger = fake.post(ALERTS, { user: 'U0STRANGER', text: 'checkout error from a stranger' });
  await handled(fake, bot, "the stranger's message", (e) => e.type === 'message' && e.ts === stranger.ts);
  const chat = fake.post(ALERTS, { user: HUMAN, text: 'all good here' });
  await handled(fake, bot, 'the chat message', (e) => e.type === 'message' && e.ts === chat.ts);
  const error = fake.post(ALERTS, { bot_id: NAGIOS, text: 'checkout error rate 9%' });
  const errorPost = await incidentPost(fake, INC_APPS, 'checkout error rate 9%');
  const critical = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  const criticalPost = await incidentPost(fake, INC_INFRA, 'PROBLEM web-03');
  await fake.waitFor(() => fake.messagesIn(INC_INFRA).find((m) => m.text === 'paged the on-call'), "the plugin's own thread reply");
  await settle(bot);

  const messages = calls.filter((c) => c.hook === 'onMessage').map((c) => c.detail);
  assert.deepEqual(messages, [
    { text: 'all good here', poster: HUMAN, channel: ALERTS },
    { text: 'checkout error rate 9%', poster: NAGIOS, channel: ALERTS },
    { text: 'PROBLEM web-03 is CRITICAL', poster: NAGIOS, channel: ALERTS },
  ], 'every accepted message, and only those (the stranger is filtered by posters; IMS ignores its own posts)');

  const matches = calls.filter((c) => c.hook === 'onMatch').map((c) => c.detail);
  assert.equal(matches.length, 2);
  const errorIncident = bot.ims.state.incidentBySource(ALERTS, error.ts)!;
  const criticalIncident = bot.ims.state.incidentBySource(ALERTS, critical.ts)!;
  assert.deepEqual(matches.find((m) => m.id === errorIncident.id), {
    id: errorIncident.id, head: '[Error]', rule: 3, text: 'checkout error rate 9%', posted: true, stored: true,
    permalink: `https://fake.slack.com/archives/${ALERTS}/p${error.ts.replace('.', '')}`,
  });
  assert.equal(matches.find((m) => m.id === criticalIncident.id)?.head, '[Critical]');
  assert.ok(bot.logs.some((l) => l.includes(`INFO  [spy] saw incident #${errorIncident.id}`)), 'the plugin logger is tagged [spy]');

  const hotlines = calls.filter((c) => c.hook === 'onHotline').map((c) => c.detail);
  assert.deepEqual(hotlines, [{ mentions: [`<@${ONCALL}>`, '<!here>'], post: { channel: INC_INFRA, ts: criticalPost.ts }, id: criticalIncident.id, hotline: 'OnCall' }]);

  fake.react(INC_APPS, errorPost.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => calls.some((c) => c.hook === 'onResolve'), 'onResolve');
  fake.unreact(INC_APPS, errorPost.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => calls.some((c) => c.hook === 'onReopen'), 'onReopen');
  const resolve = calls.find((c) => c.hook === 'onResolve')!.detail;
  assert.equal(resolve.id, errorIncident.id);
  assert.equal(resolve.user, HUMAN);
  assert.equal(resolve.reaction, 'white_check_mark');
  assert.ok(resolve.resolvedAt, 'the incident in the context is the resolved one');
  assert.equal(resolve.stateResolved, true);
  const reopen = calls.find((c) => c.hook === 'onReopen')!.detail;
  assert.deepEqual(reopen, { id: errorIncident.id, user: HUMAN, resolvedAt: undefined, open: 2 });

  assert.equal(await runReport(bot.ims), true);
  assert.deepEqual(calls.filter((c) => c.hook === 'onReport').map((c) => c.detail), [{ open: 2 }]);

  await bot.stop();
  assert.deepEqual(calls.filter((c) => c.hook === 'onStop').map((c) => c.detail), [{ incidents: 2, started: true }], 'onStop fires once, the DB still open');
  assert.deepEqual(calls.filter((c) => c.hook === 'onStart').length, 1);
  assert.deepEqual(problems, []);
});

test('onReverse fires after a reverse-mode repost to the DEFAULT channel', async (t) => {
  const fake = await startFake();
  const reverses: { text: string; repost: { channel: string; ts: string }; exists: boolean }[] = [];
  const plugin = definePlugin({
    name: 'reverse-spy',
    onReverse: (ctx) => { reverses.push({ text: ctx.message.text, repost: ctx.repost, exists: fake.messagesIn(ctx.repost.channel).some((m) => m.ts === ctx.repost.ts) }); },
  });
  const bot = await startBot(fake, baseConfig({ plugins: [plugin] }), { reverse: true });
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'fan speed nominal' });
  const repost = await incidentPost(fake, DEFAULT_CH, 'fan speed nominal');
  await fake.waitFor(() => reverses.length, 'onReverse');
  assert.match(repost.text, /^\[Alert\] fan speed nominal/);
  assert.deepEqual(reverses, [{ text: 'fan speed nominal', repost: { channel: DEFAULT_CH, ts: repost.ts }, exists: true }]);
});

test('a plugin that throws, rejects or hangs is logged with its name and hook and blocks neither the alert nor another plugin', async (t) => {
  const fake = await startFake();
  let hungSignal: AbortSignal | undefined;
  let abortEvents = 0;
  const good: string[] = [];
  const plugins: Plugin[] = [
    definePlugin({ name: 'thrower', onMessage: () => { throw new Error('sync boom'); }, onMatch: () => { throw new Error('sync boom'); } }),
    definePlugin({ name: 'rejecter', onMatch: async () => { throw new Error('async nope'); } }),
    definePlugin({
      name: 'hanger',
      onMatch: (ctx) => {
        hungSignal = ctx.signal;
        ctx.signal.addEventListener('abort', () => { abortEvents++; });
        return new Promise<void>(() => {});
      },
    }),
    definePlugin({ name: 'good', onMatch: (ctx) => { good.push(`match:${ctx.message.text}`); }, onResolve: (ctx) => { good.push(`resolve:${ctx.incident.id}`); } }),
  ];
  const bot = await startBot(fake, baseConfig({ plugins, hookTimeoutMs: 200 }));
  t.after(async () => { await bot.stop(); await fake.close(); });

  fake.post(ALERTS, { bot_id: NAGIOS, text: 'first error' });
  const first = await incidentPost(fake, INC_APPS, 'first error');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'second error' });
  await incidentPost(fake, INC_APPS, 'second error');
  await fake.waitFor(() => good.length === 2, "the good plugin's onMatch for both alerts");
  assert.deepEqual(good.sort(), ['match:first error', 'match:second error']);

  const failed = (name: string, hook: string, why: RegExp) => bot.logs.filter((l) => l.includes(`plugin '${name}' failed in ${hook}: `) && why.test(l));
  await fake.waitFor(() => failed('hanger', 'onMatch', /timed out after 200 ms/).length === 2, 'the hung hooks to time out');
  assert.equal(failed('thrower', 'onMessage', /sync boom/).length, 2);
  assert.equal(failed('thrower', 'onMatch', /sync boom/).length, 2);
  assert.equal(failed('rejecter', 'onMatch', /async nope/).length, 2);
  assert.ok(bot.logs.some((l) => l.includes("ERROR plugin 'hanger' failed in onMatch") && l.includes('plugin=hanger') && l.includes('hook=onMatch')));
  assert.equal(hungSignal?.aborted, true, "the timed-out hook's signal is aborted");
  assert.match(String((hungSignal!.reason as Error).message), /timed out/);
  assert.ok(abortEvents >= 1);

  fake.react(INC_APPS, first.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => good.some((g) => g.startsWith('resolve:')), 'the good plugin still gets later hooks');
  assert.equal(bot.ims.state.listIncidents({ open: true }).length, 1);
});

test('a hook that hangs does not delay the repost of the alert', async (t) => {
  const fake = await startFake();
  const hang = () => new Promise<void>(() => {});
  const bot = await startBot(fake, baseConfig({ plugins: [definePlugin({ name: 'sloth', onMessage: hang, onMatch: hang })], hookTimeoutMs: 3000 }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const started = Date.now();
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'error one' });
  await incidentPost(fake, INC_APPS, 'error one');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'error two' });
  await incidentPost(fake, INC_APPS, 'error two');
  assert.ok(!bot.logs.some((l) => l.includes("plugin 'sloth' failed")), 'both reposts were made while the hooks still hung');
  assert.ok(Date.now() - started < 3000);
  await fake.waitFor(() => bot.logs.filter((l) => l.includes("plugin 'sloth' failed in onMatch: timed out after 3000 ms")).length === 2, 'the timeouts', 8000);
});

test('plugins/pin.ts pins each incident post, unpins it when resolved and pins it again when reopened', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ plugins: [pin()] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const pins = fake.channels.get(INC_APPS)!.pins;
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'checkout error' });
  const post = await incidentPost(fake, INC_APPS, 'checkout error');
  await fake.waitFor(() => pins.has(post.ts), 'the pin');
  fake.react(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => !pins.has(post.ts), 'the unpin');
  fake.unreact(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => pins.has(post.ts), 'the pin again');
  await settle(bot);
  assert.deepEqual([...pins], [post.ts]);
  assert.ok(!bot.logs.some((l) => l.includes("plugin 'pin' failed")), bot.logs.filter((l) => l.includes('failed')).join('\n'));
});

test("a plugin's rate limits do not stall the alert pipeline", async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ plugins: [pin()] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const pins = fake.channels.get(INC_APPS)!.pins;
  fake.rateLimit('pins.add', { count: 1, retryAfterSec: 2 });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'first error' });
  const first = await incidentPost(fake, INC_APPS, 'first error');
  await fake.waitFor(() => fake.callsTo('pins.add').some((c) => c.status === 429), 'the throttled pin');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'second error' });
  const second = await incidentPost(fake, INC_APPS, 'second error');
  assert.ok(!pins.has(first.ts), 'the second alert was reposted while the plugin waited out its 429');
  await fake.waitFor(() => pins.has(first.ts) && pins.has(second.ts), 'both pins after Retry-After', 8000);
  assert.ok(!bot.logs.some((l) => l.includes("plugin 'pin' failed")));
});

test("a plugin whose onMatch hangs does not delay another plugin's onHotline", async (t) => {
  const fake = await startFake();
  const paged: { at: number; mentions: string[] }[] = [];
  const plugins = [
    definePlugin({ name: 'sloth', onMatch: () => new Promise<void>(() => {}) }),
    definePlugin({ name: 'pager', onHotline: (ctx) => { paged.push({ at: Date.now(), mentions: ctx.mentions }); } }),
  ];
  const bot = await startBot(fake, baseConfig({ plugins, hookTimeoutMs: 3000 }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-07 is CRITICAL' });
  await incidentPost(fake, INC_INFRA, 'PROBLEM web-07');
  await fake.waitFor(() => paged.length, "the pager's onHotline while the sloth's onMatch still hangs", 2500);
  assert.ok(!bot.logs.some((l) => l.includes("plugin 'sloth' failed")), 'paged before the sloth timed out');
  assert.equal(paged.length, 1);
  assert.deepEqual(paged[0].mentions, [`<@${ONCALL}>`, '<!here>']);
  const incident = bot.ims.state.listIncidents()[0];
  assert.ok(bot.ims.state.incidentEvents(incident.id).some((e) => e.kind === 'hotline' && e.detail === 'OnCall'), 'the page is on the timeline at once');
});

test('a redelivered alert fires onMessage and onMatch once', async (t) => {
  const fake = await startFake();
  const seen: string[] = [];
  const plugin = definePlugin({ name: 'counter', onMessage: (ctx) => { seen.push(`message:${ctx.message.ts}`); }, onMatch: (ctx) => { seen.push(`match:${ctx.incident.id}`); } });
  const bot = await startBot(fake, baseConfig({ plugins: [plugin] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const source = fake.post(ALERTS, { bot_id: NAGIOS, text: 'checkout error' }, { eventId: 'EvALERT1' });
  await incidentPost(fake, INC_APPS, 'checkout error');
  const event = { type: 'message', channel: ALERTS, channel_type: 'channel', ts: source.ts, event_ts: source.ts, text: source.text, bot_id: NAGIOS };
  fake.sendEvent(event, { eventId: 'EvALERT1', retryAttempt: 1 });
  fake.sendEvent(event, { eventId: 'EvALERT1-again' });
  await fake.waitFor(() => fake.envelopes.filter((e) => e.event.type === 'message' && e.event.ts === source.ts && e.ackedAt).length === 3, 'all three deliveries acked');
  await settle(bot);
  assert.deepEqual(seen.sort(), [`match:1`, `message:${source.ts}`]);
});

test('onStart fires before any event, even alerts caught up from history at start-up', async (t) => {
  const fake = await startFake({ dropWhileDisconnected: true });
  const statePath = path.join(tempDir(), 'ims.db');
  const order: string[] = [];
  const plugin = () => definePlugin({
    name: 'lifecycle',
    onStart: async () => { await new Promise((resolve) => setTimeout(resolve, 50)); order.push('start'); },
    onMessage: (ctx) => { order.push(`message:${ctx.message.text}`); },
    onMatch: (ctx) => { order.push(`match:${ctx.message.text}`); },
    onStop: () => { order.push('stop'); },
  });
  const bots: Bot[] = [];
  t.after(async () => { for (const bot of bots) await bot.stop(); await fake.close(); });
  const first = await startBot(fake, baseConfig({ plugins: [plugin()] }), { statePath });
  bots.push(first);
  await first.stop();
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'checkout error while IMS was down' });
  const second = await startBot(fake, baseConfig({ plugins: [plugin()] }), { statePath });
  bots.push(second);
  await incidentPost(fake, INC_APPS, 'while IMS was down');
  await settle(second);
  assert.deepEqual(order, ['start', 'stop', 'start', 'message:checkout error while IMS was down', 'match:checkout error while IMS was down']);
});

test('a hook that reads a property of undefined is logged with where it failed: the error, its file and line, and the first frames', async (t) => {
  const fake = await startFake();
  const buggy = definePlugin({ name: 'buggy', onMatch: (ctx) => { const missing = (ctx as unknown as { war?: { room: string } }).war!; ctx.log.info(missing.room); } });
  const bot = await startBot(fake, baseConfig({ plugins: [buggy] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'checkout error' });
  await incidentPost(fake, INC_APPS, 'checkout error');
  const line = await fake.waitFor(() => bot.logs.find((l) => l.includes("plugin 'buggy' failed in onMatch: ")), 'the failure');
  assert.match(line, /ERROR plugin 'buggy' failed in onMatch: TypeError: Cannot read properties of undefined \(reading 'room'\)/);
  assert.match(line, /plugin=buggy hook=onMatch at=test[\\/]plugins\.test\.ts:\d+:\d+ /, 'the file and line of the plugin, relative to the working directory');
  assert.match(line, /stack="at (Object\.)?onMatch \(test[\\/]plugins\.test\.ts:\d+:\d+\)/, "the stack's first frames, the plugin's own first");
});

test("several hooks failing for one event are reported together, naming the event, and each plugin stays isolated", async (t) => {
  const fake = await startFake();
  const good: string[] = [];
  const plugins = [
    definePlugin({ name: 'matcher', onMatch: () => { throw new Error('match boom'); } }),
    definePlugin({ name: 'pager', onHotline: async () => { throw new Error('page boom'); } }),
    definePlugin({ name: 'good', onMatch: () => { good.push('match'); }, onHotline: () => { good.push('hotline'); } }),
  ];
  const bot = await startBot(fake, baseConfig({ plugins }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const source = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  await incidentPost(fake, INC_INFRA, 'PROBLEM web-03');
  const together = await fake.waitFor(() => bot.logs.find((l) => l.includes('plugin hooks failed for')), 'the line that reports them together');
  await settle(bot);
  const incident = bot.ims.state.incidentBySource(ALERTS, source.ts)!;
  assert.ok(together.includes(`ERROR 2 plugin hooks failed for incident #${incident.id} (message ${ALERTS} ${source.ts}): `), together);
  assert.match(together, /matcher\.onMatch \(match boom\)/);
  assert.match(together, /pager\.onHotline \(page boom\)/);
  assert.equal(bot.logs.filter((l) => l.includes('plugin hooks failed for')).length, 1, 'one report for the event');
  assert.equal(bot.logs.filter((l) => l.includes("plugin 'matcher' failed in onMatch: match boom")).length, 1, 'each failure is still logged on its own');
  assert.equal(bot.logs.filter((l) => l.includes("plugin 'pager' failed in onHotline: page boom")).length, 1);
  assert.deepEqual(good, ['match', 'hotline'], 'the good plugin ran both hooks');

  // The runner hands the failures back as one AggregateError (and never rejects).
  const logged: string[] = [];
  const log = { debug: () => {}, info: () => {}, warn: () => {}, error: (message: string) => { logged.push(message); } };
  const result = await runHooks(plugins, ['onMatch', 'onHotline'], () => ({ incident: { id: 9 } }) as never, { timeoutMs: 1000, log });
  assert.ok(result instanceof PluginHookErrors && result instanceof AggregateError);
  assert.equal(result.event, 'incident #9');
  assert.deepEqual(result.errors.map((e) => [e.plugin, e.hook, (e.cause as Error).message]), [['matcher', 'onMatch', 'match boom'], ['pager', 'onHotline', 'page boom']]);
  assert.equal(logged.length, 3, 'two failures and the line reporting them together');
  assert.equal(await runHooks([plugins[2]], 'onMatch', () => ({}) as never, { timeoutMs: 1000, log }), undefined, 'nothing failed: nothing to report');
});

test("hook and delivery timeouts come from withTimeout: the signal's reason is a TimeoutError naming the plugin and what timed out", async (t) => {
  const fake = await startFake();
  const reasons: Record<string, unknown> = {};
  const hanger = definePlugin({
    name: 'hanger',
    onMatch: async (ctx) => {
      await ctx.outbox.enqueue({ key: 'k1', group: 'g', payload: null });
      return new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => { reasons.onMatch = ctx.signal.reason; resolve(); }));
    },
    deliver: (_delivery, ctx) => new Promise<void>((_resolve, reject) => ctx.signal.addEventListener('abort', () => { reasons.deliver ??= ctx.signal.reason; reject(ctx.signal.reason); })),
  });
  const bot = await startBot(fake, baseConfig({ plugins: [hanger], hookTimeoutMs: 200 }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'checkout error' });
  await incidentPost(fake, INC_APPS, 'checkout error');
  await fake.waitFor(() => reasons.onMatch && reasons.deliver, 'both timeouts');
  assert.ok(reasons.onMatch instanceof TimeoutError);
  assert.equal((reasons.onMatch as TimeoutError).message, "plugin 'hanger' onMatch timed out after 200 ms");
  assert.ok(reasons.deliver instanceof TimeoutError);
  assert.equal((reasons.deliver as TimeoutError).message, "plugin 'hanger' delivery timed out after 200 ms");
  await fake.waitFor(() => bot.logs.some((l) => l.includes("plugin 'hanger' failed in onMatch: timed out after 200 ms")), 'the hook timeout in the log');
  await fake.waitFor(() => bot.logs.some((l) => l.includes("outbox: 'hanger' delivery of k1 failed (attempt 1): plugin 'hanger' delivery timed out after 200 ms")), 'the delivery timeout in the log');
});

test('HOOK_NAMES names every hook of Plugin and nothing else, checked by type (npx tsc)', () => {
  // Type-level: `tsc --noEmit` fails when HOOK_NAMES and Plugin disagree; at run time these are plain values.
  const complete: HookListCheck<HookName> = true;
  // @ts-expect-error a hook of Plugin missing from the list is named in the type error
  const missing: HookListCheck<Exclude<HookName, 'onReport'>> = true;
  // @ts-expect-error a name in the list that is no hook of Plugin is named too
  const extra: HookListCheck<HookName | 'onAlert'> = true;
  // A plugin type with one more hook is caught the same way.
  // @ts-expect-error
  const newHook: HookListCheck<HookName, Plugin & { onAck?(ctx: HookContext): void }> = true;
  assert.deepEqual([complete, missing, extra, newHook], [true, true, true, true]);
  assert.deepEqual([...HOOK_NAMES].sort(), ['onFlapping', 'onHotline', 'onMatch', 'onMessage', 'onReopen', 'onRepeat', 'onReport', 'onResolve', 'onReverse', 'onStart', 'onStop']);
});

test("onMessage carries IMS's decision and match (rule and named groups), and the incident keeps its groups for the hooks after it", async (t) => {
  const fake = await startFake();
  const seen: { text: string; action: string; rule?: number; groups?: Record<string, string>; same: boolean }[] = [];
  const resolvedGroups: Record<string, string>[] = [];
  const plugin = definePlugin({
    name: 'decision-spy',
    onMessage: (ctx) => {
      seen.push({ text: ctx.message.text, action: ctx.decision.action, rule: ctx.match?.rule.number, groups: ctx.match && { ...ctx.match.groups }, same: ctx.match === ('match' in ctx.decision ? ctx.decision.match : undefined) });
    },
    onResolve: (ctx) => { resolvedGroups.push(ctx.incident.groups); },
  });
  const config = baseConfig({
    plugins: [plugin], posters: [NAGIOS, HUMAN],
    rules: [
      { match: 'noise', suppress: true, head: '[Noise]', incident: 'APPS' },
      { match: 'PROBLEM (?P<host>[a-z0-9-]+) is (?P<state>CRITICAL)', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
      { match: '(?i)error', head: '[Error]', incident: 'APPS' },
    ],
  });
  const bot = await startBot(fake, config);
  t.after(async () => { await bot.stop(); await fake.close(); });

  const chat = fake.post(ALERTS, { user: HUMAN, text: 'all good here' });
  await handled(fake, bot, 'the chat message', (e) => e.type === 'message' && e.ts === chat.ts);
  const noise = fake.post(ALERTS, { bot_id: NAGIOS, text: 'noise from the fans' });
  await handled(fake, bot, 'the suppressed message', (e) => e.type === 'message' && e.ts === noise.ts);
  const error = fake.post(ALERTS, { bot_id: NAGIOS, text: 'checkout error rate 9%' });
  await incidentPost(fake, INC_APPS, 'checkout error rate 9%');
  const critical = fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  const criticalPost = await incidentPost(fake, INC_INFRA, 'PROBLEM web-03');
  await settle(bot);

  assert.deepEqual(seen, [
    { text: 'all good here', action: 'seen', rule: undefined, groups: undefined, same: true },
    { text: 'noise from the fans', action: 'suppressed', rule: 1, groups: {}, same: true },
    { text: 'checkout error rate 9%', action: 'incident', rule: 3, groups: {}, same: true },
    { text: 'PROBLEM web-03 is CRITICAL', action: 'incident', rule: 2, groups: { host: 'web-03', state: 'CRITICAL' }, same: true },
  ]);
  const stored = bot.ims.state.incidentBySource(ALERTS, critical.ts)!;
  assert.deepEqual(stored.groups, { host: 'web-03', state: 'CRITICAL' }, 'the incident keeps the named groups of its match');
  assert.deepEqual(bot.ims.state.incidentBySource(ALERTS, error.ts)?.groups, {}, 'a rule without named groups keeps none');

  fake.react(INC_INFRA, criticalPost.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => resolvedGroups.length, 'onResolve');
  assert.deepEqual(resolvedGroups, [{ host: 'web-03', state: 'CRITICAL' }], 'a hook without the match reads the groups from the incident');
});

test('the hook context offers the compiled config with hotline members as IDs, and one shared name service that asks Slack once per ID', async (t) => {
  const fake = await startFake();
  const checks: { hotline?: readonly string[]; rules: number; incidentChannel?: string; names: string[] }[] = [];
  const plugin = (name: string) => definePlugin({
    name,
    onMatch: async (ctx) => {
      const names = await Promise.all([ctx.names.user(ONCALL), ctx.names.user(HUMAN), ctx.names.channel(ALERTS), ctx.names.user('U0NOBODY01')]);
      checks.push({ hotline: ctx.compiled.hotlines.get('OnCall'), rules: ctx.compiled.rules.length, incidentChannel: ctx.compiled.incidents.get('INFRA')?.channel, names });
    },
  });
  const bot = await startBot(fake, baseConfig({ plugins: [plugin('first'), plugin('second')], hotlines: { OnCall: ['oncall', 'here'] } }));
  t.after(async () => { await bot.stop(); await fake.close(); });

  fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-03 is CRITICAL' });
  await incidentPost(fake, INC_INFRA, 'PROBLEM web-03');
  await fake.waitFor(() => checks.length === 2, 'both plugins');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'PROBLEM web-04 is CRITICAL' });
  await incidentPost(fake, INC_INFRA, 'PROBLEM web-04');
  await fake.waitFor(() => checks.length === 4, 'both plugins again');

  for (const check of checks) {
    assert.deepEqual(check, {
      hotline: [ONCALL, 'here'], rules: 3, incidentChannel: INC_INFRA, names: ['Ona Call', 'Hugo Human', 'alerts-infra', 'U0NOBODY01'],
    }, 'the hotline member written as a name is its user ID; names are real names, an unknown ID stays the ID');
  }
  const asked = (method: string, key: string, id: string) => fake.callsTo(method).filter((c) => (c.params as Record<string, unknown>)[key] === id).length;
  assert.equal(asked('users.info', 'user', ONCALL), 1, 'one users.info for a user, however many plugins and incidents ask');
  assert.equal(asked('users.info', 'user', HUMAN), 1);
  assert.equal(asked('conversations.info', 'channel', ALERTS), 1, 'one conversations.info for a channel');
  assert.equal(asked('users.info', 'user', 'U0NOBODY01'), 1, 'an ID Slack does not know is not asked again');
});

/**
 * Resolution end to end: resolved reactions (on the incident post or on the original alert) resolve an
 * incident in the state; removing the last one reopens it. Real IMS, real SDK clients, fake Slack.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { definePlugin, tsToMs, type Incident } from '../ims.ts';
import type { FakeSlack, SentEnvelope } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, NAGIOS, ONCALL, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir, type Bot } from './harness.ts';

guardSocketModeShutdownBug();

/** Wait until the bot has acked an event matching `predicate` and finished handling it. */
async function handled(fake: FakeSlack, bot: Bot, what: string, predicate: (event: any) => boolean): Promise<SentEnvelope> {
  const envelope = await fake.waitFor(() => fake.envelopes.find((e) => e.ackedAt && predicate(e.event)), what);
  await bot.ims.idle();
  return envelope;
}

const reactionBy = (type: string, user: string, reaction: string, ts: string) => (e: any) =>
  e.type === type && e.user === user && e.reaction === reaction && e.item?.ts === ts;

/** A recorder plugin: every onResolve / onReopen context it saw. */
function recorder() {
  const resolved: { incident: Incident; user: string; reaction: string }[] = [];
  const reopened: { incident: Incident; user: string; reaction: string }[] = [];
  const plugin = definePlugin({
    name: 'recorder',
    onResolve: (ctx) => { resolved.push({ incident: ctx.incident, user: ctx.user, reaction: ctx.reaction }); },
    onReopen: (ctx) => { reopened.push({ incident: ctx.incident, user: ctx.user, reaction: ctx.reaction }); },
  });
  return { plugin, resolved, reopened };
}

/** Start a fake and a bot, post one alert, and return its incident and post. */
async function withIncident(t: { after(fn: () => Promise<void>): void }, overrides: Parameters<typeof baseConfig>[0] = {}) {
  const fake = await startFake();
  const rec = recorder();
  const bot = await startBot(fake, baseConfig({ plugins: [rec.plugin], ...overrides }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'payment api error rate 12%' });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS).find((m) => m.bot_id === fake.botId), 'the incident post');
  await settle(bot);
  const incident = await bot.ims.store.incidentBySource(ALERTS, alert.ts);
  assert.ok(incident, 'the alert became an incident');
  assert.equal(incident.incidentTs, post.ts);
  return { fake, bot, alert, post, incident, rec };
}

test('a resolved reaction on the incident post marks the incident resolved with the resolver and the reaction time', async (t) => {
  const { fake, bot, post, incident, rec } = await withIncident(t);
  assert.equal(incident.resolvedAt, undefined);
  fake.react(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  const envelope = await handled(fake, bot, 'the reaction', reactionBy('reaction_added', HUMAN, 'white_check_mark', post.ts));
  const after = (await bot.ims.store.incidentById(incident.id))!;
  assert.equal(after.resolvedBy, HUMAN);
  assert.equal(after.resolvedAt, tsToMs(envelope.event.event_ts));
  const kinds = (await bot.ims.store.incidentEvents(incident.id)).map((e) => `${e.kind}:${e.user}`);
  assert.ok(kinds.includes(`resolve:${HUMAN}`), `a resolve event is recorded (${kinds.join(', ')})`);
  assert.deepEqual((await bot.ims.store.listIncidents({ open: true })), []);
  assert.equal(rec.resolved.length, 1);
  assert.equal(rec.resolved[0].incident.resolvedBy, HUMAN);
});

test('a resolved reaction on the original alert resolves its incident too', async (t) => {
  const { fake, bot, alert, incident, rec } = await withIncident(t);
  fake.react(ALERTS, alert.ts, 'white_check_mark', ONCALL);
  await handled(fake, bot, 'the reaction on the original', reactionBy('reaction_added', ONCALL, 'white_check_mark', alert.ts));
  const after = (await bot.ims.store.incidentById(incident.id))!;
  assert.equal(after.resolvedBy, ONCALL);
  assert.ok(after.resolvedAt! > 0);
  assert.equal(rec.resolved.length, 1);
});

test('any reaction of resolvedReactions counts, and other reactions are recorded without resolving', async (t) => {
  const { fake, bot, post, incident, rec } = await withIncident(t, { resolvedReactions: ['white_check_mark', 'heavy_check_mark', 'ok'] });
  fake.react(INC_APPS, post.ts, 'eyes', HUMAN);
  fake.react(INC_APPS, post.ts, 'thumbsup', ONCALL);
  await handled(fake, bot, 'the eyes reaction', reactionBy('reaction_added', HUMAN, 'eyes', post.ts));
  await handled(fake, bot, 'the thumbsup reaction', reactionBy('reaction_added', ONCALL, 'thumbsup', post.ts));
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedAt, undefined, 'eyes and thumbsup do not resolve');
  const reactions = (await bot.ims.store.incidentEvents(incident.id)).filter((e) => e.kind === 'reaction').map((e) => e.detail).sort();
  assert.deepEqual(reactions, ['eyes', 'thumbsup'], 'other reactions still feed the timeline');
  assert.equal(rec.resolved.length, 0);

  fake.react(INC_APPS, post.ts, 'ok', HUMAN);
  await handled(fake, bot, 'the ok reaction', reactionBy('reaction_added', HUMAN, 'ok', post.ts));
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedBy, HUMAN, 'the third configured reaction resolves');
  assert.equal(rec.resolved.length, 1);
  assert.equal(rec.resolved[0].reaction, 'ok');
});

test('removing the last resolved reaction reopens the incident, removing one of several does not', async (t) => {
  const { fake, bot, post, alert, incident, rec } = await withIncident(t, { resolvedReactions: ['white_check_mark', 'heavy_check_mark'] });
  fake.react(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  fake.react(INC_APPS, post.ts, 'heavy_check_mark', ONCALL);
  fake.react(ALERTS, alert.ts, 'white_check_mark', ONCALL);
  await handled(fake, bot, 'the first resolution', reactionBy('reaction_added', HUMAN, 'white_check_mark', post.ts));
  await handled(fake, bot, 'the second reaction', reactionBy('reaction_added', ONCALL, 'heavy_check_mark', post.ts));
  await handled(fake, bot, 'the third reaction', reactionBy('reaction_added', ONCALL, 'white_check_mark', alert.ts));
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedBy, HUMAN, 'the first resolver is kept');

  fake.unreact(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  await handled(fake, bot, 'the first removal', reactionBy('reaction_removed', HUMAN, 'white_check_mark', post.ts));
  assert.ok((await bot.ims.store.incidentById(incident.id))!.resolvedAt, 'still resolved: other resolved reactions remain');
  fake.unreact(INC_APPS, post.ts, 'heavy_check_mark', ONCALL);
  await handled(fake, bot, 'the second removal', reactionBy('reaction_removed', ONCALL, 'heavy_check_mark', post.ts));
  assert.ok((await bot.ims.store.incidentById(incident.id))!.resolvedAt, 'still resolved: the original alert keeps its reaction');
  assert.equal(rec.reopened.length, 0);

  fake.unreact(ALERTS, alert.ts, 'white_check_mark', ONCALL);
  await handled(fake, bot, 'the last removal', reactionBy('reaction_removed', ONCALL, 'white_check_mark', alert.ts));
  const reopened = (await bot.ims.store.incidentById(incident.id))!;
  assert.equal(reopened.resolvedAt, undefined);
  assert.equal(reopened.resolvedBy, undefined);
  assert.equal((await bot.ims.store.listIncidents({ open: true })).length, 1);
  assert.equal(rec.reopened.length, 1);
  assert.equal(rec.reopened[0].user, ONCALL);
  assert.equal(rec.reopened[0].incident.resolvedAt, undefined);
  const kinds = (await bot.ims.store.incidentEvents(incident.id)).map((e) => e.kind).filter((k) => k === 'resolve' || k === 'reopen');
  assert.deepEqual(kinds, ['resolve', 'reopen']);

  fake.react(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => rec.resolved.length === 2, 'the second onResolve');
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedBy, HUMAN, 'a reopened incident can be resolved again');
});

test("the bot's own resolved reactions never resolve an incident", async (t) => {
  const { fake, bot, post, alert, incident, rec } = await withIncident(t);
  fake.react(INC_APPS, post.ts, 'white_check_mark', fake.botUserId);
  fake.react(ALERTS, alert.ts, 'white_check_mark', fake.botUserId);
  await handled(fake, bot, "the bot's reaction on the post", reactionBy('reaction_added', fake.botUserId, 'white_check_mark', post.ts));
  await handled(fake, bot, "the bot's reaction on the alert", reactionBy('reaction_added', fake.botUserId, 'white_check_mark', alert.ts));
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedAt, undefined);
  assert.equal(rec.resolved.length, 0);

  // With the bot's reaction still there, a human's removal-then-add cycle must not count the bot as a resolver.
  fake.react(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  await handled(fake, bot, "the human's reaction", reactionBy('reaction_added', HUMAN, 'white_check_mark', post.ts));
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedBy, HUMAN);
  fake.unreact(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  await handled(fake, bot, "the human's removal", reactionBy('reaction_removed', HUMAN, 'white_check_mark', post.ts));
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedAt, undefined, "the bot's own reactions do not keep it resolved");
  assert.equal(rec.reopened.length, 1);
});

test('a redelivered reaction event resolves once and onResolve fires once', async (t) => {
  const { fake, bot, post, incident, rec } = await withIncident(t);
  const event = {
    type: 'reaction_added', user: HUMAN, reaction: 'white_check_mark', item: { type: 'message', channel: INC_APPS, ts: post.ts },
    item_user: fake.botUserId, event_ts: `${Math.floor(Date.now() / 1000)}.000100`,
  };
  fake.sendEvent(event, { eventId: 'EvRESOLVE1' });
  fake.sendEvent(event, { eventId: 'EvRESOLVE1', retryAttempt: 1 });
  fake.sendEvent(event, { eventId: 'EvRESOLVE1', retryAttempt: 2 });
  // The same reaction reported again under another event ID (e.g. after a reconnect) must not resolve twice either.
  fake.sendEvent({ ...event, event_ts: `${Math.floor(Date.now() / 1000)}.000200` }, { eventId: 'EvRESOLVE2' });
  await fake.waitFor(() => fake.envelopes.filter((e) => e.event.type === 'reaction_added' && e.ackedAt).length === 4, 'all four deliveries acked');
  await settle(bot);
  assert.equal(rec.resolved.length, 1, 'onResolve fired once');
  const resolves = (await bot.ims.store.incidentEvents(incident.id)).filter((e) => e.kind === 'resolve');
  assert.equal(resolves.length, 1);
  // To the millisecond (PostgreSQL keeps whole milliseconds).
  assert.equal(Math.floor((await bot.ims.store.incidentById(incident.id))!.resolvedAt!), Math.floor(tsToMs(event.event_ts)));
  assert.ok(bot.logs.some((l) => /duplicate delivery ignored/.test(l)), 'the redeliveries were recognised');
});

test('an incident resolved while IMS was down is recorded as resolved at the next start, and onResolve fires', async (t) => {
  const fake = await startFake({ dropWhileDisconnected: true });
  const statePath = path.join(tempDir(), 'ims.db');
  const first = await startBot(fake, baseConfig(), { statePath });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk error on db-07' });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS).find((m) => m.bot_id === fake.botId), 'the incident post');
  await settle(first);
  await first.stop();

  fake.react(INC_APPS, post.ts, 'white_check_mark', HUMAN, { emit: false });
  const resolved: string[] = [];
  const watcher = definePlugin({ name: 'watcher', onResolve: (ctx) => { resolved.push(`${ctx.incident.id} by ${ctx.user}`); } });
  const second = await startBot(fake, baseConfig({ plugins: [watcher] }), { statePath });
  t.after(async () => { await second.stop(); await fake.close(); });
  await fake.waitFor(() => resolved.length, 'onResolve for the missed resolution');
  await settle(second);
  const incident = (await second.ims.store.listIncidents())[0];
  assert.equal(incident.resolvedBy, HUMAN);
  assert.ok(incident.resolvedAt, 'resolved in the state');
  assert.deepEqual(resolved, [`${incident.id} by ${HUMAN}`]);
  assert.ok(second.logs.some((l) => /was resolved by U0HUMAN001 while IMS was away/.test(l)));
});

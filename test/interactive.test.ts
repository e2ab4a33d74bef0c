/**
 * Interactive Slack end to end: the buttons and the Silence menu on incident posts, the custom-silence modal,
 * permissions, the post's state shown in place, and reactions updating it the same way. Real IMS, real SDK
 * clients; the fake Slack sends `interactive` envelopes shaped as Slack's, clicking by the labels a person sees.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { acknowledgement, definePlugin, type Incident } from '../ims.ts';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, NAGIOS, ONCALL, REPORT, allStrings, baseConfig, guardSocketModeShutdownBug, settle, setup, tempDir, type Bot, until } from './harness.ts';
import path from 'node:path';

guardSocketModeShutdownBug();

const OTHER = 'U0OTHER001';

/** The labels of the buttons and menus on a message, as a person sees them. */
function labels(message: FakeMessage | undefined): string[] {
  const blocks = (message?.blocks ?? []) as any[];
  return blocks.filter((b) => b.type === 'actions').flatMap((b) => b.elements.map((e: any) => e.text?.text ?? e.placeholder?.text));
}

/** The status block's text of an incident post. */
function status(message: FakeMessage | undefined): string {
  const block = ((message?.blocks ?? []) as any[]).find((b) => b.block_id === 'ims_status');
  return block ? block.elements.map((e: any) => e.text).join('\n') : '';
}

function postOf(fake: FakeSlack, ts: string): FakeMessage | undefined {
  return fake.messagesIn(INC_APPS).find((m) => m.ts === ts);
}

/** A recorder of onResolve / onReopen. */
function recorder() {
  const seen: { hook: string; user: string; via?: string; id: number }[] = [];
  const plugin = definePlugin({
    name: 'recorder',
    onResolve: (ctx) => { seen.push({ hook: 'onResolve', user: ctx.user, via: ctx.via, id: ctx.incident.id }); },
    onReopen: (ctx) => { seen.push({ hook: 'onReopen', user: ctx.user, via: ctx.via, id: ctx.incident.id }); },
  });
  return { plugin, seen };
}

async function withIncident(t: Parameters<typeof setup>[0], overrides: Parameters<typeof baseConfig>[0] = {}, options: Parameters<Awaited<ReturnType<typeof setup>>['start']>[1] = {},
  workspace: (fake: FakeSlack) => void = () => undefined) {
  const { fake, start } = await setup(t);
  fake.addUser({ id: OTHER, name: 'olga', real_name: 'Olga Other' });
  workspace(fake);
  const rec = recorder();
  const bot = await start(baseConfig({ plugins: [rec.plugin], ...overrides }), options);
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'payment api error rate 12%' });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS).find((m) => m.bot_id === fake.botId), 'the incident post');
  await settle(bot);
  const incident = (await bot.ims.store.incidentBySource(ALERTS, alert.ts))!;
  assert.ok(incident, 'the alert became an incident');
  return { fake, bot, start, alert, post, incident, rec };
}

test('an incident post carries Acknowledge, Resolve and a Silence menu from the start', async (t) => {
  const { post } = await withIncident(t);
  assert.deepEqual(labels(post), ['Acknowledge', 'Resolve', 'Silence']);
});

test('Acknowledge records who and when, shows it on the post in place of the button, and counts for MTTA', async (t) => {
  const { fake, bot, post, incident } = await withIncident(t);
  const click = await fake.click(HUMAN, INC_APPS, post.ts, 'Acknowledge');
  assert.deepEqual(click.ack, {}, 'the click is acknowledged at once, with nothing to show');
  await until(bot, 'the post to show the acknowledgement', () => status(postOf(fake, post.ts)).includes(`Acknowledged by <@${HUMAN}>`));
  assert.deepEqual(labels(postOf(fake, post.ts)), ['Resolve', 'Silence']);
  const after = (await bot.ims.store.incidentById(incident.id))!;
  assert.equal(after.acknowledgedBy, HUMAN);
  const ack = acknowledgement(after, (await bot.ims.store.incidentEvents(incident.id)), fake.botUserId);
  assert.equal(ack?.user, HUMAN);
  assert.equal(ack?.how, 'button');
  assert.equal(fake.ephemeralsFor(HUMAN).length, 0, 'the post itself tells the clicker; no extra message');
});

test('two people clicking Acknowledge at once change the state once, and the second is told who was first', async (t) => {
  const { fake, bot, post, incident } = await withIncident(t);
  await Promise.all([fake.click(HUMAN, INC_APPS, post.ts, 'Acknowledge'), fake.click(OTHER, INC_APPS, post.ts, 'Acknowledge')]);
  await settle(bot);
  const acks = (await bot.ims.store.incidentEvents(incident.id)).filter((e) => e.kind === 'acknowledge');
  assert.equal(acks.length, 1, 'one acknowledgement recorded');
  const first = acks[0].user!;
  const second = first === HUMAN ? OTHER : HUMAN;
  const told = await fake.waitForEphemeral(second, (e) => /already acknowledged/.test(e.text));
  assert.match(told.text, new RegExp(`<@${first}>`));
  assert.equal(fake.ephemeralsFor(first).length, 0);
});

test('Resolve shows who resolved it and after how long, offers Reopen, and a double click resolves once', async (t) => {
  const { fake, bot, post, incident, rec } = await withIncident(t);
  await Promise.all([fake.click(HUMAN, INC_APPS, post.ts, 'Resolve'), fake.click(HUMAN, INC_APPS, post.ts, 'Resolve')]);
  await until(bot, 'the post to show the resolution', () => status(postOf(fake, post.ts)).includes(`Resolved* by <@${HUMAN}> after`));
  assert.deepEqual(labels(postOf(fake, post.ts)), ['Reopen']);
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedBy, HUMAN);
  assert.equal((await bot.ims.store.incidentEvents(incident.id)).filter((e) => e.kind === 'resolve').length, 1);
  await until(bot, 'the hook', () => rec.seen.length >= 1);
  assert.deepEqual(rec.seen, [{ hook: 'onResolve', user: HUMAN, via: 'button', id: incident.id }]);
  const told = await fake.waitForEphemeral(HUMAN, (e) => /already resolved/.test(e.text));
  assert.match(told.text, /already resolved by/);

  await fake.click(OTHER, INC_APPS, post.ts, 'Reopen');
  await until(bot, 'the reopening', async () => (await bot.ims.store.incidentById(incident.id))!.resolvedAt === undefined);
  await until(bot, 'the post to show it', () => status(postOf(fake, post.ts)).includes(`Reopened* by <@${OTHER}>`));
  // Resolving is not acknowledging: the reopened incident still waits for someone to take it.
  assert.deepEqual(labels(postOf(fake, post.ts)), ['Acknowledge', 'Resolve', 'Silence']);
});

test('a resolved reaction updates the post the same way a button does', async (t) => {
  const { fake, bot, post } = await withIncident(t);
  fake.react(INC_APPS, post.ts, 'white_check_mark', OTHER);
  await until(bot, 'the post to show the resolution', () => status(postOf(fake, post.ts)).includes(`Resolved* by <@${OTHER}>`));
  assert.deepEqual(labels(postOf(fake, post.ts)), ['Reopen']);
  fake.react(INC_APPS, post.ts, 'eyes', HUMAN);
  await settle(bot);
  assert.equal(status(postOf(fake, post.ts)).includes('Acknowledged'), false, 'a reaction on a resolved incident does not acknowledge it');
});

test('an eyes reaction or a thread reply by a person acknowledges the incident on its post', async (t) => {
  const { fake, bot, post, incident } = await withIncident(t);
  fake.post(INC_APPS, { user: OTHER, text: 'looking into it', thread_ts: post.ts });
  await until(bot, 'the acknowledgement', async () => (await bot.ims.store.incidentById(incident.id))!.acknowledgedBy === OTHER);
  await until(bot, 'the post to show it', () => status(postOf(fake, post.ts)).includes(`Acknowledged by <@${OTHER}>`));
});

test('Silence 1 h from the menu silences the alert, shows until when on the post, and offers Unsilence', async (t) => {
  const { fake, bot, post, incident } = await withIncident(t);
  await fake.choose(HUMAN, INC_APPS, post.ts, 'Silence', '1 h');
  await until(bot, 'the post to show the silence', () => status(postOf(fake, post.ts)).includes('Silenced* until'));
  assert.deepEqual(labels(postOf(fake, post.ts)), ['Acknowledge', 'Resolve', 'Unsilence']);
  const [silence] = await bot.ims.store.activeSilences(bot.ims.now());
  assert.equal(silence.incidentId, incident.id);
  assert.equal(silence.createdBy, HUMAN);
  assert.ok(Math.abs(silence.endsAt - silence.startsAt - 3600_000) < 1000);
  // The same alert again (another message that reads alike): not reposted, not paged, counted.
  const posts = fake.messagesIn(INC_APPS).length;
  const again = fake.post(ALERTS, { bot_id: NAGIOS, text: 'payment api error rate 12%' });
  await until(bot, 'the repeat to be counted as silenced', async () => (await bot.ims.store.activeSilences(bot.ims.now()))[0]?.silenced === 1);
  assert.equal(fake.messagesIn(INC_APPS).length, posts, 'no repost, and no thread note about the repeat while it is silenced');
  assert.equal((await bot.ims.store.incidentBySource(ALERTS, again.ts)), undefined);
  assert.ok(fake.messagesIn(ALERTS).find((m) => m.ts === again.ts)?.reactions?.some((r: any) => r.name === 'white_check_mark'), 'marked seen');

  await fake.click(HUMAN, INC_APPS, post.ts, 'Unsilence');
  await until(bot, 'the silence to end', async () => (await bot.ims.store.activeSilences(bot.ims.now())).length === 0);
  await until(bot, 'the post to drop the silence', () => !status(postOf(fake, post.ts)).includes('Silenced'));
  const summary = await fake.waitFor(() => fake.messagesIn(INC_APPS).find((m) => m.thread_ts === post.ts && /Silence \d+/.test(m.text ?? '')), 'the summary in the thread');
  assert.match(summary.text ?? '', /ended by Hugo Human/);
});

test('custom… opens a modal; a bad duration keeps it open with the error, a good one silences with the reason', async (t) => {
  const { fake, bot, post, incident } = await withIncident(t);
  await fake.choose(HUMAN, INC_APPS, post.ts, 'Silence', 'custom…');
  const modal = await fake.waitFor(() => fake.openedViews().find((v) => v.type === 'modal' && v.user === HUMAN), 'the modal');
  const bad = await fake.submitView(HUMAN, modal.id, { duration: { duration: 'forever' }, reason: { reason: 'db migration' } });
  assert.equal(bad.ack.response_action, 'errors');
  assert.match(bad.ack.errors.duration, /30m, 2h, 1d/);
  assert.equal((await bot.ims.store.activeSilences(bot.ims.now())).length, 0);
  const good = await fake.submitView(HUMAN, modal.id, { duration: { duration: '90m' }, reason: { reason: 'db migration' } });
  assert.equal(good.ack.response_action, undefined, 'a good submission closes the modal');
  await until(bot, 'the silence', async () => (await bot.ims.store.activeSilences(bot.ims.now())).length === 1);
  const [silence] = await bot.ims.store.activeSilences(bot.ims.now());
  assert.equal(silence.reason, 'db migration');
  assert.equal(silence.incidentId, incident.id);
  assert.ok(Math.abs(silence.endsAt - silence.startsAt - 90 * 60_000) < 1000);
});

test('with admins set, someone else may not silence and is told why; a member of an admin user group may', async (t) => {
  const { fake, bot, post } = await withIncident(t, { admins: ['@sre-leads'] }, {}, (workspace) => workspace.addUsergroup({ id: 'S0SRELEADS', handle: 'sre-leads', users: [ONCALL] }));
  await fake.choose(HUMAN, INC_APPS, post.ts, 'Silence', '4 h');
  const refusal = await fake.waitForEphemeral(HUMAN, (e) => /only IMS admins/.test(e.text));
  assert.match(refusal.text, /silence/);
  assert.equal((await bot.ims.store.activeSilences(bot.ims.now())).length, 0);
  await fake.choose(ONCALL, INC_APPS, post.ts, 'Silence', '4 h');
  await until(bot, 'the admin\'s silence', async () => (await bot.ims.store.activeSilences(bot.ims.now())).length === 1);
  assert.equal((await bot.ims.store.activeSilences(bot.ims.now()))[0].createdBy, ONCALL);
});

test('an incident someone acknowledged is resolved only by them or an admin; the others are told why', async (t) => {
  const { fake, bot, post, incident } = await withIncident(t, { admins: [ONCALL] });
  await fake.click(HUMAN, INC_APPS, post.ts, 'Acknowledge');
  await until(bot, 'the acknowledgement', async () => (await bot.ims.store.incidentById(incident.id))!.acknowledgedBy === HUMAN);
  await fake.click(OTHER, INC_APPS, post.ts, 'Resolve');
  const refusal = await fake.waitForEphemeral(OTHER, (e) => /acknowledged this incident/.test(e.text));
  assert.match(refusal.text, new RegExp(`<@${HUMAN}>`));
  assert.equal((await bot.ims.store.incidentById(incident.id))!.resolvedAt, undefined);
  await fake.click(ONCALL, INC_APPS, post.ts, 'Resolve');
  await until(bot, 'the admin\'s resolution', async () => (await bot.ims.store.incidentById(incident.id))!.resolvedBy === ONCALL);
});

test('a click on a post made before a restart acts on its incident', async (t) => {
  const { fake, bot, start, post, incident } = await withIncident(t, {}, { statePath: path.join(tempDir(), 'ims.db') });
  const statePath = bot.config.state.path;
  await bot.stop();
  const again = await start(baseConfig(), { statePath });
  await fake.click(HUMAN, INC_APPS, post.ts, 'Resolve');
  await until(again, 'the resolution', async () => (await again.ims.store.incidentById(incident.id))!.resolvedBy === HUMAN);
  await until(again, 'the post to show it', () => status(postOf(fake, post.ts)).includes('Resolved'));
});

test('a click that fails is told to the person who clicked, never swallowed', async (t) => {
  const { fake, bot, post } = await withIncident(t);
  fake.failNext('views.open', 'internal_error', 5);
  await fake.choose(HUMAN, INC_APPS, post.ts, 'Silence', 'custom…');
  const told = await fake.waitForEphemeral(HUMAN, (e) => /did not work/.test(e.text));
  assert.match(told.text, /internal_error/);
  assert.ok(bot.logs.some((l) => /ims_silence click of U0HUMAN001 failed/.test(l)));
});

test('with buttons off, incident posts carry none', async (t) => {
  const { post } = await withIncident(t, { buttons: false });
  assert.deepEqual(labels(post), []);
  assert.ok(!allStrings(post.blocks).includes('Acknowledge'));
});

test('the incident post does not mention the silencer or anyone in what they typed', async (t) => {
  const { fake, bot, post } = await withIncident(t);
  await fake.choose(HUMAN, INC_APPS, post.ts, 'Silence', 'custom…');
  const modal = await fake.waitFor(() => fake.openedViews().find((v) => v.type === 'modal'), 'the modal');
  await fake.submitView(HUMAN, modal.id, { duration: { duration: '1h' }, reason: { reason: '<!channel> @here <https://evil.example|click me> <@U0ONCALL01>' } });
  await until(bot, 'the post to show the silence', () => status(postOf(fake, post.ts)).includes('Silenced'));
  const shown = [...allStrings(postOf(fake, post.ts)!.blocks), ...fake.messagesIn(REPORT).flatMap((m) => allStrings(m))].join('\n');
  assert.ok(!shown.includes('<!channel>'), 'no channel-wide ping');
  assert.ok(!shown.includes('<https://evil.example|'), 'no forged link');
  assert.ok(!shown.includes('<@U0ONCALL01>'), 'no mention of someone else');
  assert.ok(!/@here\b/.test(shown.replace(/@\u2060here/g, '')), 'a bare @here is broken up');
});

export type { Incident };

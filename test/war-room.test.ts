import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, definePlugin, loadConfig, type AlertMessage, type Incident } from '../ims.ts';
import { warRoom, type WarRoomRecord } from '../plugins/war-room.ts';
import type { FakeChannel, FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir, type Bot } from './harness.ts';

guardSocketModeShutdownBug();

const roomNamed = (fake: FakeSlack, name: string): FakeChannel | undefined => [...fake.channels.values()].find((c) => c.name === name);
const roomsLike = (fake: FakeSlack, prefix: string) => [...fake.channels.values()].filter((c) => c.name.startsWith(prefix));
const problems = (bot: Bot) => bot.logs.filter((line) => / (ERROR|WARN) /.test(line) && /war-room/.test(line));
const record = (bot: Bot, id: number) => bot.ims.state.storeGet('war-room', `room:${id}`) as WarRoomRecord | undefined;

async function openIncident(fake: FakeSlack, bot: Bot, text = 'PROBLEM web-03 is CRITICAL', channel = ALERTS): Promise<Incident> {
  const alert = fake.post(channel, { bot_id: NAGIOS, text });
  return fake.waitFor(() => bot.ims.state.incidentBySource(channel, alert.ts), 'the incident');
}

/** The war room's link in the incident thread: the last step of opening a room. */
function linkReply(fake: FakeSlack, incident: Incident) {
  return fake.messagesIn(incident.incidentChannel).find((m) => m.thread_ts === incident.incidentTs && m.ts !== incident.incidentTs && /War room/.test(m.text));
}

test('opens a war room for a hotline incident: invites the hotline, describes it, pins a summary, links it from the incident thread, then on resolution says who resolved it after how long and archives it', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({
    hotlines: { OnCall: ['oncall', 'here', 'S0GROUP01'] },
    plugins: [warRoom({ rules: 'hotline', invite: ['hugo'] })],
  }));
  t.after(async () => { await bot.stop(); await fake.close(); });

  const incident = await openIncident(fake, bot);
  const link = await fake.waitFor(() => linkReply(fake, incident), 'the war room link in the incident thread');
  const room = roomNamed(fake, 'inc-1-critical');
  assert.ok(room, 'a room named inc-<number>-<label>');
  assert.equal(room.is_private, false);
  assert.ok(room.members.has(ONCALL) && room.members.has(HUMAN) && room.members.has(fake.botUserId), 'hotline member (by name), invite option and the bot are in');
  const invited = fake.callsTo('conversations.invite').map((c) => String(c.params.users));
  assert.ok(invited.every((users) => !users.includes('S0GROUP01') && !users.includes('here') && !users.includes(fake.botUserId)), `groups, broadcasts and the bot are skipped: ${invited}`);
  const alertLink = /https:\/\/fake\.slack\.com\/archives\/C0ALERTS01\/p\d+/;
  assert.match(room.topic, /^\[Critical\] #1 · PROBLEM web-03 is CRITICAL · alert: /);
  assert.match(room.topic, alertLink);
  assert.match(room.purpose, /incident #1 \[Critical\] \(INFRA\)/);
  assert.match(room.purpose, alertLink);
  assert.equal(room.pins.size, 1);
  const summary = fake.messagesIn(room.id).find((m) => room.pins.has(m.ts))!;
  assert.match(summary.text, /Incident #1 \[Critical\]: PROBLEM web-03 is CRITICAL/);
  assert.match(JSON.stringify(summary.blocks), /Original alert/);
  assert.match(link.text, new RegExp(`<#${room.id}>`));

  const chatter = fake.post(room.id, { user: HUMAN, text: 'I see an error in the web-03 logs' });
  const other = await openIncident(fake, bot, 'app error in checkout');
  await settle(bot, 300);
  assert.equal(other.hotline, undefined);
  assert.deepEqual(roomsLike(fake, 'inc-2'), [], 'no room for an incident without a hotline');
  assert.equal(chatter.reactions, undefined, 'talk in the war room is not read as an alert (no seen reaction)');
  assert.equal(bot.ims.state.listIncidents().length, 2, 'nor does it open an incident');

  fake.react(INC_INFRA, incident.incidentTs, 'white_check_mark', HUMAN);
  await fake.waitFor(() => room.is_archived, 'the room archived');
  const resolution = fake.messagesIn(room.id).find((m) => /resolved by/.test(m.text));
  assert.ok(resolution, 'a resolution message in the room');
  assert.match(resolution.text, new RegExp(`Incident #1 was resolved by <@${HUMAN}> after \\d+(ms|s)`));
  assert.match(resolution.text, /Archiving this channel/);
  await settle(bot);
  assert.deepEqual(problems(bot), []);
  assert.equal(fake.callsTo('conversations.create').length, 1);
});

test('keeps one room across restarts: a redelivered alert or onMatch reuses it, and a delayed archive still happens after the next restart', async (t) => {
  const fake = await startFake();
  const statePath = path.join(tempDir(), 'ims.db');
  const config = () => baseConfig({ plugins: [warRoom({ archiveAfter: '3s' })] });
  const bots: Bot[] = [];
  t.after(async () => { for (const b of bots) await b.stop(); await fake.close(); });

  const bot1 = await startBot(fake, config(), { statePath });
  bots.push(bot1);
  const incident = await openIncident(fake, bot1);
  await fake.waitFor(() => linkReply(fake, incident), 'the first room');
  await bot1.stop();

  const bot2 = await startBot(fake, config(), { statePath });
  bots.push(bot2);
  // Slack redelivers the alert (a new event id), and the hook runs again for the same incident.
  fake.sendEvent({ type: 'message', channel: ALERTS, channel_type: 'channel', ts: incident.sourceTs, bot_id: NAGIOS, text: incident.text });
  const message: AlertMessage = { channel: ALERTS, ts: incident.sourceTs, poster: NAGIOS, botId: NAGIOS, text: incident.text, raw: { type: 'message', channel: ALERTS, ts: incident.sourceTs, bot_id: NAGIOS, text: incident.text } };
  await bot2.ims.hooks('onMatch', () => ({ message, match: { rule: bot2.config.rules[1], groups: {} }, incident }));
  await settle(bot2, 300);
  assert.equal(fake.callsTo('conversations.create').length, 1, 'no second conversations.create');
  assert.equal(roomsLike(fake, 'inc-1').length, 1);
  const room = roomNamed(fake, 'inc-1-critical')!;
  assert.equal(fake.messagesIn(room.id).filter((m) => /^Incident #1/.test(m.text)).length, 1, 'one summary');
  assert.equal(fake.messagesIn(INC_INFRA).filter((m) => /War room/.test(m.text)).length, 1, 'one link');

  fake.react(INC_INFRA, incident.incidentTs, 'white_check_mark', HUMAN);
  await fake.waitFor(() => fake.messagesIn(room.id).some((m) => /will be archived in 3s/.test(m.text)), 'the resolution message');
  const due = await fake.waitFor(() => record(bot2, incident.id)?.archiveAt, 'the archive due time in the state');
  await bot2.stop();
  assert.equal(room.is_archived, false, 'not archived before its time, nor by a timer left behind');

  const bot3 = await startBot(fake, config(), { statePath });
  bots.push(bot3);
  await fake.waitFor(() => room.is_archived, 'the delayed archive after the restart', 10_000);
  await fake.waitFor(() => record(bot3, incident.id)?.archived, 'the archive recorded by the new process');
  const archived = fake.callsTo('conversations.archive').filter((c) => c.response.ok);
  assert.equal(archived.length, 1);
  assert.ok(archived[0].at >= due - 20, 'archived when due, not before');
  assert.ok(bot3.logs.some((l) => /war room #inc-1-critical archived/.test(l)), 'the new process archived it');
  assert.ok(!bot2.logs.some((l) => /archived/.test(l)));
  await settle(bot3);
  assert.deepEqual(bot3.ims.state.storeGet('war-room', 'archive-due'), undefined, 'nothing left due');
  assert.deepEqual([...bots].flatMap(problems), []);
});

test('reuses an existing channel of the same name on a fresh state (name_taken) and counts members already inside as invited (already_in_channel)', async (t) => {
  const fake = await startFake();
  const existing = fake.addChannel({ name: 'inc-1-critical', is_member: false, members: [ONCALL] });
  const bot = await startBot(fake, baseConfig({ plugins: [warRoom()] }));
  t.after(async () => { await bot.stop(); await fake.close(); });

  const incident = await openIncident(fake, bot);
  const link = await fake.waitFor(() => linkReply(fake, incident), 'the room link');
  assert.match(link.text, new RegExp(`<#${existing.id}>`));
  assert.deepEqual(fake.callsTo('conversations.create').map((c) => c.response.error), ['name_taken']);
  assert.equal(fake.callsTo('conversations.join').length, 1, 'joined the public channel it was not in');
  assert.ok(existing.is_member);
  assert.deepEqual(fake.callsTo('conversations.invite').map((c) => c.response.error), ['already_in_channel']);
  assert.equal(existing.pins.size, 1, 'the summary is pinned in the existing channel');
  assert.equal(roomsLike(fake, 'inc-1').length, 1);
  assert.equal(record(bot, incident.id)?.channel, existing.id);
  await settle(bot);
  assert.deepEqual(problems(bot), []);
});

test('a reopen unarchives the room and says who reopened it; an archive answered already_archived is not a failure', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ plugins: [warRoom()] }));
  t.after(async () => { await bot.stop(); await fake.close(); });

  const incident = await openIncident(fake, bot);
  await fake.waitFor(() => linkReply(fake, incident), 'the room');
  const room = roomNamed(fake, 'inc-1-critical')!;
  fake.react(INC_INFRA, incident.incidentTs, 'white_check_mark', HUMAN);
  await fake.waitFor(() => room.is_archived, 'the archive');

  fake.unreact(INC_INFRA, incident.incidentTs, 'white_check_mark', HUMAN);
  await fake.waitFor(() => !room.is_archived && fake.messagesIn(room.id).some((m) => /reopened by/.test(m.text)), 'the room unarchived with a note');
  assert.match(fake.messagesIn(room.id).at(-1)!.text, new RegExp(`Incident #1 was reopened by <@${HUMAN}>`));
  assert.equal(record(bot, incident.id)?.archived, false);

  fake.failNext('conversations.archive', 'already_archived');
  fake.react(INC_INFRA, incident.incidentTs, 'white_check_mark', ONCALL);
  await fake.waitFor(() => record(bot, incident.id)?.archived, 'the second archive recorded');
  await settle(bot);
  assert.deepEqual(fake.callsTo('conversations.archive').map((c) => c.response.error), [undefined, 'already_archived']);
  assert.equal(fake.messagesIn(room.id).filter((m) => /resolved by/.test(m.text)).length, 2, 'each resolution is announced');
  assert.equal(bot.ims.state.outboxStats().depth, 0, 'nothing left to retry');
  assert.deepEqual(problems(bot), []);
});

/** Nagios Core's default service notification (`notify-service-by-email`) at T0 + `seconds`, as its Slack relays post it. */
const T0 = Math.floor(Date.now() / 1000) - 4 * 3600;
const nagios = (fake: FakeSlack, kind: 'PROBLEM' | 'RECOVERY', seconds: number) => fake.post(ALERTS, {
  bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', ts: (T0 + seconds).toFixed(6),
  text: `** ${kind} Service Alert: web-03/HTTP is ${kind === 'PROBLEM' ? 'CRITICAL' : 'OK'} **\nNotification Type: ${kind}\nHost: web-03\nService: HTTP\nState: ${kind === 'PROBLEM' ? 'CRITICAL' : 'OK'}\nInfo: check output`,
});

test("repeats of an alert open no room (no onMatch); its integration's recovery archives the room, and the alert firing again unarchives it", async (t) => {
  const fake = await startFake();
  const hooks = { match: 0, repeat: 0 };
  const watch = definePlugin({ name: 'watch', onMatch: () => { hooks.match++; }, onRepeat: () => { hooks.repeat++; } });
  const bot = await startBot(fake, baseConfig({ plugins: [warRoom(), watch], lifecycle: { flapping: false } }));
  t.after(async () => { await bot.stop(); await fake.close(); });

  nagios(fake, 'PROBLEM', 0);
  const incident = await fake.waitFor(() => bot.ims.state.listIncidents()[0], 'the incident');
  await fake.waitFor(() => linkReply(fake, incident), 'the room');
  const room = roomNamed(fake, 'inc-1-critical')!;
  for (const seconds of [300, 600]) {
    const repeat = nagios(fake, 'PROBLEM', seconds);
    await fake.waitFor(() => repeat.reactions?.length, 'the repeat marked seen');
  }
  await settle(bot, 300);
  assert.equal(bot.ims.state.incidentById(incident.id)!.repeats, 2);
  assert.deepEqual(hooks, { match: 1, repeat: 2 }, 'a repeat is no match');
  assert.equal(fake.callsTo('conversations.create').length, 1, 'one room for the alert');
  assert.deepEqual(roomsLike(fake, 'inc-2'), [], 'no room for a second incident');

  const recovery = nagios(fake, 'RECOVERY', 1380);
  await fake.waitFor(() => room.is_archived, 'the room archived on the recovery');
  const resolved = fake.messagesIn(room.id).find((m) => /was resolved by/.test(m.text))!;
  assert.equal(resolved.text, `:white_check_mark: Incident #1 was resolved by its integration's <${bot.ims.permalink(ALERTS, recovery.ts)}|recovery> after 23m. Archiving this channel.`);

  const again = nagios(fake, 'PROBLEM', 1800);
  await fake.waitFor(() => !room.is_archived && fake.messagesIn(room.id).some((m) => /reopened/.test(m.text)), 'the room unarchived');
  assert.equal(fake.messagesIn(room.id).at(-1)!.text, `:rotating_light: Incident #1 was reopened: its alert <${bot.ims.permalink(ALERTS, again.ts)}|fired again> within the reopen window.`);
  nagios(fake, 'RECOVERY', 2400);
  await fake.waitFor(() => room.is_archived, 'archived again on the next recovery');
  await settle(bot);
  assert.equal(fake.messagesIn(room.id).filter((m) => /was resolved by/.test(m.text)).length, 2, 'each recovery is announced, though IMS read both on one instant');
  assert.equal(fake.callsTo('conversations.create').length, 1);
  assert.equal(bot.ims.state.outboxStats().depth, 0);
  assert.deepEqual(problems(bot), []);
});

test('creates private rooms named from a template only for the listed labels, waiting out a Tier-2 rate limit', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ plugins: [warRoom({ rules: ['APPS'], private: true, name: 'war-{id}-{label}' })] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.rateLimit('conversations.create', { count: 1, retryAfterSec: 1 });

  const infra = await openIncident(fake, bot);
  const apps = await openIncident(fake, bot, 'checkout error: 500');
  assert.equal(apps.incidentChannel, INC_APPS);
  await fake.waitFor(() => linkReply(fake, apps), 'the APPS room', 10_000);
  const room = roomNamed(fake, 'war-2-apps');
  assert.ok(room?.is_private, 'a private room named from the template');
  assert.deepEqual(fake.callsTo('conversations.create').map((c) => [c.params.name, c.status]), [['war-2-apps', 429], ['war-2-apps', 200]]);
  assert.equal(linkReply(fake, infra), undefined);
  assert.deepEqual(roomsLike(fake, 'war-1'), []);
  await settle(bot);
  assert.deepEqual(problems(bot), []);
});

test('refuses bad options when the config is loaded, naming the plugin, the option, what was expected and what arrived', async () => {
  const dir = tempDir();
  const plugin = new URL('../plugins/war-room.ts', import.meta.url).href;
  writeFileSync(path.join(dir, 'ims.config.ts'), [
    `import { warRoom } from '${plugin}';`,
    `export default { rules: [{ match: 'x', head: '[X]', incident: 'X' }], incidents: { X: { channel: 'C0XXXXXXX' } }, plugins: [warRoom({ archiveAfter: 'soon' })] };`,
  ].join('\n'));
  await assert.rejects(loadConfig({ cwd: dir }), (error: unknown) => {
    assert.ok(error instanceof ConfigError, `a ConfigError, got ${error}`);
    assert.ok(error.message.includes(`warRoom(): option 'archiveAfter' expects a duration such as '30m' or milliseconds, found 'soon'`), error.message);
    return true;
  });
  assert.throws(() => warRoom({ rules: 'some' as never }), /^Error: warRoom\(\): option 'rules' expects 'all', 'hotline' or a non-empty list .*found 'some'$/);
  assert.throws(() => warRoom({ name: 'incident-{slug}' }), /option 'name' expects a template containing '\{id\}'.*found 'incident-\{slug\}'/);
  assert.throws(() => warRoom({ invite: 'U0ONCALL01' as never }), /option 'invite' expects a list of user IDs or names.*found 'U0ONCALL01'/);
  assert.throws(() => warRoom({ private: 'yes' as never }), /option 'private' expects true or false, found 'yes'/);
  assert.throws(() => warRoom({ archveAfter: '1h' } as never), /warRoom\(\): unknown option 'archveAfter'; expected one of rules, name, private, invite, topic, archiveOnResolve, archiveAfter/);
});

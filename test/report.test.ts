/**
 * The report end to end: what it lists (open incidents from paginated history within the window, joined
 * with the state), how it is posted (one Block Kit message, or a file for a very long list), its
 * schedules, and `--only-report` as a scheduler runs it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { DAY, HOUR, definePlugin, runReport, type Report } from '../ims.ts';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import {
  ALERTS, DEFAULT_CH, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir, type Bot,
} from './harness.ts';

guardSocketModeShutdownBug();

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MINUTE = 60_000;

/** A Slack ts `ms` milliseconds ago, unique thanks to `n`. */
function tsAgo(ms: number, n = 0): string {
  return `${Math.floor((Date.now() - ms) / 1000)}.${String(100 + n).padStart(6, '0')}`;
}

/** An incident post IMS made earlier (before this state existed): seeded straight into history, no event. */
function seedIncidentPost(fake: FakeSlack, channel: string, text: string, ts: string): FakeMessage {
  return fake.post(channel, { bot_id: fake.botId, user: fake.botUserId, text, ts }, { emit: false });
}

/** Post an alert and wait until IMS has reposted it; returns the alert and the incident post. */
async function alert(fake: FakeSlack, bot: Bot, text: string, channel: string) {
  const before = fake.messagesIn(channel).length;
  const source = fake.post(ALERTS, { bot_id: NAGIOS, text });
  const post = await fake.waitFor(() => fake.messagesIn(channel).length > before && fake.messagesIn(channel).find((m) => m.text.includes(text)), `the incident post of '${text}'`);
  await settle(bot, 20);
  return { source, post };
}

/** The bot's posts in the report channel. */
function reports(fake: FakeSlack): FakeMessage[] {
  return fake.messagesIn(REPORT).filter((m) => m.bot_id === fake.botId && m.subtype !== 'file_share');
}

/** The readable lines of a report message's sections. */
function reportText(message: FakeMessage): string {
  return (message.blocks ?? []).map((b: any) => b.text?.text ?? (b.elements ?? []).map((e: any) => e.text).join(' ')).join('\n');
}

async function setup(t: { after(fn: () => Promise<void>): void }, config = baseConfig(), options: Parameters<typeof startBot>[2] = {}) {
  const fake = await startFake();
  const bot = await startBot(fake, config, options);
  t.after(async () => { await bot.stop(); await fake.close(); });
  return { fake, bot };
}

test('posts ONE message listing the open incidents oldest first with age, label and permalink; resolved ones are left out', async (t) => {
  const { fake, bot } = await setup(t);
  const old = seedIncidentPost(fake, INC_INFRA, '[Critical] PROBLEM db-01 is CRITICAL', tsAgo(3 * DAY + 5 * MINUTE));
  const recent = seedIncidentPost(fake, INC_APPS, '[Error] checkout error 500', tsAgo(5 * HOUR + 10 * MINUTE));
  const resolvedInSlack = seedIncidentPost(fake, INC_APPS, '[Error] login error (fixed)', tsAgo(4 * HOUR));
  fake.react(INC_APPS, resolvedInSlack.ts, 'white_check_mark', HUMAN, { emit: false });
  fake.post(INC_APPS, { user: HUMAN, text: 'looking into the checkout errors' }, { emit: false });
  const live = await alert(fake, bot, 'payment api error rate 12%', INC_APPS);
  const fixed = await alert(fake, bot, 'queue consumer error', INC_APPS);
  // Resolved on the original alert: the incident channel's history does not show it, the state does.
  fake.react(ALERTS, fixed.source.ts, 'white_check_mark', ONCALL);
  await fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, fixed.source.ts)?.resolvedAt, 'the resolution');

  assert.equal(await runReport(bot.ims), true);
  const posted = reports(fake);
  assert.equal(posted.length, 1, 'one message per run');
  assert.match(posted[0].text, /IMS report .*: 3 open incidents/);
  const text = reportText(posted[0]);
  const lines = text.split('\n').filter((l) => l.includes('|open>'));
  assert.equal(lines.length, 3, text);
  assert.match(lines[0], /^• 3d 0h +\[Critical\] PROBLEM db-01 is CRITICAL/, 'a post IMS made before this state keeps its label in its text');
  assert.ok(lines.every((l) => !l.includes('**')), 'no empty bold label');
  assert.match(lines[1], /^• 5h 10m .*checkout error 500/);
  assert.match(lines[2], /^• 0m +\*\[Error\]\* payment api error rate 12%/);
  assert.ok(lines[0].includes(`<https://fake.slack.com/archives/${INC_INFRA}/p${old.ts.replace('.', '')}|open>`), lines[0]);
  assert.ok(lines[1].includes(`/archives/${INC_APPS}/p${recent.ts.replace('.', '')}|open>`), lines[1]);
  assert.ok(lines[2].includes(`/archives/${INC_APPS}/p${live.post.ts.replace('.', '')}|open>`), lines[2]);
  assert.ok(!text.includes('login error'), 'resolved in Slack: not listed');
  assert.ok(!text.includes('queue consumer'), 'resolved in the state: not listed');
  assert.ok(!text.includes('looking into'), "a human's chat is not an incident");
  assert.equal(posted[0].blocks?.[0]?.type, 'header');
});

test("verbose reports list resolved incidents with their resolvers' real names, looking each user up once", async (t) => {
  const { fake, bot } = await setup(t, baseConfig(), { verbose: true });
  const open = await alert(fake, bot, 'cart error spike', INC_APPS);
  const a = await alert(fake, bot, 'search error one', INC_APPS);
  const b = await alert(fake, bot, 'search error two', INC_APPS);
  const c = await alert(fake, bot, 'search error three', INC_APPS);
  const oldPost = seedIncidentPost(fake, INC_INFRA, '[Warn] old warning', tsAgo(DAY));
  fake.react(INC_INFRA, oldPost.ts, 'white_check_mark', ONCALL, { emit: false });
  fake.react(INC_APPS, a.post.ts, 'white_check_mark', HUMAN);
  fake.react(INC_APPS, b.post.ts, 'white_check_mark', HUMAN);
  fake.react(ALERTS, c.source.ts, 'white_check_mark', ONCALL);
  await fake.waitFor(() => bot.ims.state.listIncidents({ open: false }).length === 3, 'three resolutions');

  assert.equal(await runReport(bot.ims), true);
  const text = reportText(reports(fake)[0]);
  const ng = text.split('\n').filter((l) => l.startsWith('NG '));
  const ok = text.split('\n').filter((l) => l.startsWith('OK '));
  assert.equal(ng.length, 1, text);
  assert.match(ng[0], /cart error spike/);
  assert.ok(ng[0].includes(open.post.ts.replace('.', '')));
  assert.equal(ok.length, 4, text);
  assert.match(ok.find((l) => l.includes('old warning'))!, /resolved by Ona Call$/);
  assert.match(ok.find((l) => l.includes('search error one'))!, /resolved by Hugo Human$/);
  assert.match(ok.find((l) => l.includes('search error two'))!, /resolved by Hugo Human$/);
  assert.match(ok.find((l) => l.includes('search error three'))!, /resolved by Ona Call$/);
  assert.deepEqual(fake.callsTo('users.info').map((c) => c.params.user).sort(), [HUMAN, ONCALL].sort(), 'one users.info per user');

  assert.equal(await runReport(bot.ims), true);
  assert.equal(reports(fake).length, 2);
  assert.equal(fake.callsTo('users.info').length, 2, 'names stay cached across reports');
});

test('reads every page of history within the window, so more than 200 incidents are all listed', async (t) => {
  const { fake, bot } = await setup(t);
  const seeded: FakeMessage[] = [];
  for (let i = 0; i < 230; i++) seeded.push(seedIncidentPost(fake, INC_APPS, `[Error] worker-${i} error`, tsAgo(2 * DAY - i * MINUTE, i)));
  const live = await alert(fake, bot, 'newest error', INC_APPS);
  const calls = fake.callsTo('conversations.history').length;

  assert.equal(await runReport(bot.ims), true);
  const history = fake.callsTo('conversations.history').slice(calls).filter((c) => c.params.channel === INC_APPS);
  assert.ok(history.length >= 2, `history was paginated (${history.length} pages)`);
  assert.ok(history.slice(1).every((c) => c.params.cursor), 'later pages follow the cursor');
  const posted = reports(fake);
  assert.equal(posted.length, 1);
  assert.match(posted[0].text, /231 open incidents/);
  const lines = reportText(posted[0]).split('\n').filter((l) => l.includes('|open>'));
  assert.equal(lines.length, 231);
  assert.match(lines[0], /worker-0 error/, 'the oldest (from the last page) comes first');
  assert.ok(lines[0].includes(seeded[0].ts.replace('.', '')));
  assert.match(lines[230], /newest error/);
  assert.ok(lines[230].includes(live.post.ts.replace('.', '')));
});

test('the report window leaves older posts out, and a LIMIT reads only the newest messages', async (t) => {
  const { fake, bot } = await setup(t, baseConfig({
    report: { channel: REPORT, window: '2d' },
    incidents: { INFRA: { channel: INC_INFRA, limit: 2 }, APPS: { channel: INC_APPS } },
  }));
  seedIncidentPost(fake, INC_APPS, '[Error] ancient error', tsAgo(9 * DAY));
  seedIncidentPost(fake, INC_APPS, '[Error] three days old error', tsAgo(3 * DAY));
  seedIncidentPost(fake, INC_APPS, '[Error] yesterday error', tsAgo(DAY));
  seedIncidentPost(fake, INC_INFRA, '[Warn] infra one', tsAgo(3 * HOUR, 1));
  seedIncidentPost(fake, INC_INFRA, '[Warn] infra two', tsAgo(2 * HOUR, 2));
  seedIncidentPost(fake, INC_INFRA, '[Warn] infra three', tsAgo(1 * HOUR, 3));

  assert.equal(await runReport(bot.ims), true);
  const text = reportText(reports(fake)[0]);
  assert.match(text, /yesterday error/);
  assert.ok(!text.includes('three days old'), 'outside the 2d window');
  assert.ok(!text.includes('ancient'), 'outside the 2d window');
  assert.ok(!text.includes('infra one'), 'LIMIT 2 reads the two newest only');
  assert.match(text, /infra two[\s\S]*infra three/);
  const oldest = fake.callsTo('conversations.history').filter((c) => c.params.channel === INC_APPS).at(-1)!.params.oldest;
  assert.ok(Math.abs(Number(oldest) * 1000 - (Date.now() - 2 * DAY)) < 60_000, `history is asked from the window start (oldest=${oldest})`);
});

test('MgmtReport (report.onlyPosters) lists only messages of the listed posters in the incident channels', async (t) => {
  const { fake, bot } = await setup(t, baseConfig({ report: { channel: REPORT, onlyPosters: [HUMAN] } }));
  await alert(fake, bot, 'an automatic error alert', INC_APPS);
  fake.post(INC_APPS, { user: HUMAN, text: 'Rotate the API keys before Friday' }, { emit: false });
  const done = fake.post(INC_APPS, { user: HUMAN, text: 'Renew the TLS certificate' }, { emit: false });
  fake.react(INC_APPS, done.ts, 'white_check_mark', ONCALL, { emit: false });
  fake.post(INC_APPS, { user: ONCALL, text: 'an on-call note' }, { emit: false });

  assert.equal(await runReport(bot.ims), true);
  const posted = reports(fake);
  assert.equal(posted.length, 1);
  const text = reportText(posted[0]);
  assert.match(posted[0].text, /: 1 open incident$/);
  assert.match(text, /Rotate the API keys before Friday/);
  assert.ok(!text.includes('automatic error alert'), "IMS's own post is not from a listed poster");
  assert.ok(!text.includes('on-call note'));
  assert.ok(!text.includes('TLS certificate'), 'resolved');
});

test('a channel that cannot be read is reported in the report while the other channels are still listed', async (t) => {
  const fake = await startFake();
  fake.addChannel({ id: 'C0INCDB001', name: 'inc-db' });
  const bot = await startBot(fake, baseConfig({
    incidents: { INFRA: { channel: INC_INFRA }, APPS: { channel: INC_APPS }, DB: { channel: 'C0INCDB001' } },
  }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  seedIncidentPost(fake, INC_INFRA, '[Critical] infra thing', tsAgo(HOUR));
  seedIncidentPost(fake, INC_APPS, '[Error] apps thing', tsAgo(HOUR));
  seedIncidentPost(fake, 'C0INCDB001', '[Error] db thing', tsAgo(HOUR));
  fake.failNext('conversations.history', 'channel_not_found');
  fake.channels.get('C0INCDB001')!.is_member = false; // the bot was removed from the channel

  assert.equal(await runReport(bot.ims), true);
  const posted = reports(fake);
  assert.equal(posted.length, 1);
  const text = reportText(posted[0]);
  assert.match(text, /apps thing/);
  assert.match(text, new RegExp(`could not read <#${INC_INFRA}>: channel_not_found`));
  assert.match(text, /could not read <#C0INCDB001>: not_in_channel/);
  assert.ok(!text.includes('infra thing') && !text.includes('db thing'));
  assert.ok(bot.logs.some((l) => l.includes(`report: could not read ${INC_INFRA}: channel_not_found`)));
});

test("a list past Slack's block limits is split into as few messages as needed, each within the limits", async (t) => {
  const { fake, bot } = await setup(t);
  const filler = 'y'.repeat(140);
  const count = 700;
  for (let i = count - 1; i >= 0; i--) seedIncidentPost(fake, INC_APPS, `[Warn] queue-${i} slow ${filler}`, tsAgo(DAY - i * 1000, i));

  assert.equal(await runReport(bot.ims), true);
  const posted = reports(fake);
  assert.equal(posted.length, 2, 'two messages: 700 items do not fit in 50 blocks');
  assert.equal(fake.uploads.length, 0);
  assert.match(posted[1].text, /\(continued\)$/);
  for (const message of posted) {
    assert.ok(message.blocks!.length <= 50, `${message.blocks!.length} blocks`);
    for (const block of message.blocks!) assert.ok((block.text?.text ?? '').length <= 3000);
  }
  const lines = posted.flatMap((m) => reportText(m).split('\n')).filter((l) => l.includes('|open>'));
  assert.equal(lines.length, count, 'every item once');
  assert.match(lines[0], /queue-0 slow/);
  assert.match(lines[count - 1], new RegExp(`queue-${count - 1} slow`));
});

test('in reverse mode the report lists the reposts in the DEFAULT channel', async (t) => {
  const { fake, bot } = await setup(t, baseConfig(), { reverse: true });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'fan speed nominal' });
  const repost = await fake.waitFor(() => fake.messagesIn(DEFAULT_CH).find((m) => m.bot_id === fake.botId), 'the reverse repost');
  await settle(bot, 20);
  assert.equal(await runReport(bot.ims), true);
  const lines = reportText(reports(fake)[0]).split('\n').filter((l) => l.includes('|open>'));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /\*\[Alert\]\* fan speed nominal/);
  assert.ok(lines[0].includes(`/archives/${DEFAULT_CH}/p${repost.ts.replace('.', '')}|open>`));
});

test('a very long list is posted as a file with a short summary message that keeps unreadable channels and plugin sections', async (t) => {
  const plugin = definePlugin({ name: 'deploys', onReport: (ctx) => ctx.addSection({ title: 'Deploys today', lines: ['checkout v2.4.1'] }) });
  const { fake, bot } = await setup(t, baseConfig({ plugins: [plugin] }));
  const filler = 'x'.repeat(140);
  const count = 2400;
  // Newest first: the fake then finds each one's place at once (it keeps history sorted).
  for (let i = count - 1; i >= 0; i--) seedIncidentPost(fake, INC_APPS, `[Error] job-${i} failed ${filler}`, tsAgo(DAY - i * 1000, i));

  fake.failNext('conversations.history', 'channel_not_found'); // the first channel read: INFRA

  assert.equal(await runReport(bot.ims), true);
  assert.equal(fake.uploads.length, 1, 'one file');
  const upload = fake.uploads[0];
  assert.equal(upload.channel, REPORT);
  assert.match(upload.filename, /^ims-report-\d{4}-\d{2}-\d{2}\.txt$/);
  const rows = upload.content.split('\n').filter((l) => l.startsWith('NG '));
  assert.equal(rows.length, count, 'every open incident is in the file');
  assert.match(rows[0], /job-0 failed/);
  assert.match(rows[count - 1], new RegExp(`job-${count - 1} failed`));
  const posted = reports(fake);
  assert.equal(posted.length, 1, 'one summary message, not dozens');
  assert.match(posted[0].text, new RegExp(`${count} open incidents`));
  const summary = reportText(posted[0]);
  assert.match(summary, new RegExp(`could not read <#${INC_INFRA}>: channel_not_found`), 'a failing channel is not lost in the file form');
  assert.match(summary, /\*Deploys today\*\ncheckout v2\.4\.1/, "a plugin's section is not lost in the file form");
  assert.ok((posted[0].blocks ?? []).length <= 50);
  assert.ok(fake.callsTo('files.getUploadURLExternal').length === 1 && fake.callsTo('files.completeUploadExternal').length === 1);
});

test("a plugin's onReport sections appear in the posted report", async (t) => {
  let seen: Report | undefined;
  const plugin = definePlugin({
    name: 'deploys',
    onReport: (ctx) => {
      seen = ctx.report;
      ctx.addSection({ title: 'Deploys today', lines: ['checkout v2.4.1', `open incidents seen by the plugin: ${ctx.report.open.length}`] });
    },
  });
  const { fake, bot } = await setup(t, baseConfig({ plugins: [plugin] }));
  await alert(fake, bot, 'cart error', INC_APPS);

  assert.equal(await runReport(bot.ims), true);
  assert.equal(seen?.open.length, 1);
  const posted = reports(fake);
  assert.equal(posted.length, 1);
  const text = reportText(posted[0]);
  assert.match(text, /\*Deploys today\*\ncheckout v2\.4\.1\nopen incidents seen by the plugin: 1/);
});

test('with a per-second --schedule the running bot posts reports repeatedly', async (t) => {
  const { fake, bot } = await setup(t, baseConfig(), { reports: true, schedule: '*/1 * * * * *' });
  await alert(fake, bot, 'scheduled error', INC_APPS);
  await fake.waitFor(() => reports(fake).length >= 2, 'two scheduled reports', 8000);
  for (const posted of reports(fake).slice(0, 2)) assert.match(reportText(posted), /scheduled error|Nothing open/);
  assert.ok(bot.logs.some((l) => l.includes("reports scheduled: '*/1 * * * * *' (UTC)")));
});

test('the legacy loop posts the first report at start-up', async (t) => {
  const fake = await startFake();
  seedIncidentPost(fake, INC_APPS, '[Error] left over from yesterday', tsAgo(DAY));
  const bot = await startBot(fake, baseConfig(), { reports: true, loopHours: 24 });
  t.after(async () => { await bot.stop(); await fake.close(); });
  const first = await fake.waitFor(() => reports(fake)[0], 'the start-up report');
  await settle(bot);
  assert.equal(reports(fake).length, 1, 'one report, the next in 24 h');
  assert.match(reportText(first), /left over from yesterday/);
  assert.ok(bot.logs.some((l) => l.includes('reports every 24 h, the first now')));
});

// ─── Alert lifecycles in the report ───

/** Nagios Core's default service notification (`notify-service-by-email`), as its Slack relays post it, at `at` (epoch ms). */
function nagios(fake: FakeSlack, kind: 'PROBLEM' | 'RECOVERY', subject: string, at: number): FakeMessage {
  const state = kind === 'RECOVERY' ? 'OK' : 'CRITICAL';
  const [host, service] = subject.split('/');
  return fake.post(ALERTS, {
    bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', ts: (at / 1000).toFixed(6),
    text: `** ${kind} Service Alert: ${subject} is ${state} **\nNotification Type: ${kind}\nHost: ${host}\nService: ${service}\nState: ${state}\nInfo: check output`,
  });
}

/** A clock IMS reads (incident times, the report's time) set by the test; the alerts carry their own ts. */
function clock(now: number) {
  const c = { now, fn: () => c.now };
  return c;
}

test('an open incident shows how often its alert repeated and when it was last seen, and one that fired again after its recovery since when it is reopened', async (t) => {
  const base = Math.floor(Date.now() / 1000) * 1000;
  const time = clock(base - 4 * HOUR);
  const { fake, bot } = await setup(t, baseConfig(), { now: time.fn });
  nagios(fake, 'PROBLEM', 'web-03/HTTP', base - 2 * HOUR - 5 * MINUTE);
  await fake.waitFor(() => bot.ims.state.listIncidents().length === 1, 'the incident');
  for (const ago of [61, 30, 10, 3]) nagios(fake, 'PROBLEM', 'web-03/HTTP', base - ago * MINUTE);
  await fake.waitFor(() => bot.ims.state.listIncidents()[0].repeats === 4, 'four repeats folded in');
  nagios(fake, 'PROBLEM', 'db-01/Disk', base - 90 * MINUTE);
  await fake.waitFor(() => bot.ims.state.listIncidents().length === 2, 'the second incident');
  nagios(fake, 'RECOVERY', 'db-01/Disk', base - 60 * MINUTE);
  await fake.waitFor(() => bot.ims.state.listIncidents({ open: true }).length === 1, 'recovered');
  nagios(fake, 'PROBLEM', 'db-01/Disk', base - 20 * MINUTE);
  await fake.waitFor(() => bot.ims.state.listIncidents({ open: true }).length === 2, 'reopened within the reopen window');
  await settle(bot, 20);

  time.now = base;
  assert.equal(await runReport(bot.ims), true);
  const posted = reports(fake);
  assert.match(posted[0].text, /: 2 open incidents$/);
  const lines = reportText(posted[0]).split('\n').filter((l) => l.includes('|open>'));
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.match(lines[0], /^• 2h 5m +\*\[Critical\]\* .*web-03\/HTTP.*\|open> · repeated 4×, last 3m ago$/);
  assert.match(lines[1], /^• 1h 30m +\*\[Critical\]\* .*db-01\/Disk.*\|open> · reopened 20m ago$/);
});

test("verbose reports list the incidents their integration's recovery resolved apart from those people resolved, with the recovery's link and how long the alert fired", async (t) => {
  const { fake, bot } = await setup(t, baseConfig(), { verbose: true });
  fake.addBot({ id: NAGIOS, name: 'Nagios' });
  const start = Math.floor(Date.now() / 1000) * 1000 - 3 * HOUR;
  const problem = nagios(fake, 'PROBLEM', 'web-03/HTTP', start);
  await fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, problem.ts), 'the incident');
  const recovery = nagios(fake, 'RECOVERY', 'web-03/HTTP', start + 23 * MINUTE);
  await fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, problem.ts)?.resolvedAt, 'resolved by the recovery');
  const byHand = await alert(fake, bot, 'search error one', INC_APPS);
  fake.react(INC_APPS, byHand.post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, byHand.source.ts)?.resolvedAt, 'resolved by a person');
  await alert(fake, bot, 'cart error spike', INC_APPS);

  assert.equal(await runReport(bot.ims), true);
  const text = reportText(reports(fake)[0]);
  const lines = text.split('\n');
  const heading = lines.indexOf('*Resolved by recovery (1)*');
  assert.ok(heading > 0, text);
  const byPeople = lines.slice(0, heading).filter((l) => l.startsWith('OK '));
  const byRecovery = lines.slice(heading + 1).filter((l) => l.startsWith('OK '));
  assert.equal(lines.filter((l) => l.startsWith('NG ')).length, 1, text);
  assert.equal(byPeople.length, 1, text);
  assert.match(byPeople[0], /search error one .*resolved by Hugo Human$/);
  assert.equal(byRecovery.length, 1, text);
  assert.match(byRecovery[0], /^OK 3h 0m +\*\[Critical\]\* .*web-03\/HTTP/);
  assert.ok(byRecovery[0].endsWith(` — resolved by recovery (<${bot.ims.permalink(ALERTS, recovery.ts)}|Nagios>) after 23m`), byRecovery[0]);
});

test('a flapping alert is listed in a section of its own while it keeps changing state, and no longer once it has been stable for stableFor', async (t) => {
  const base = Math.floor(Date.now() / 1000) * 1000;
  const time = clock(base - 2 * HOUR);
  const { fake, bot } = await setup(t, baseConfig({ lifecycle: { flapping: { changes: 3, within: '1h', stableFor: '30m' } } }), { now: time.fn });
  nagios(fake, 'PROBLEM', 'web-03/HTTP', base - 50 * MINUTE);
  await fake.waitFor(() => bot.ims.state.listIncidents().length === 1, 'the incident');
  for (const [ago, kind] of [[48, 'RECOVERY'], [46, 'PROBLEM'], [44, 'RECOVERY'], [42, 'PROBLEM']] as const) {
    const m = nagios(fake, kind, 'web-03/HTTP', base - ago * MINUTE);
    await fake.waitFor(() => m.reactions?.length, `the ${kind} ${ago} minutes ago marked seen`);
  }
  await settle(bot, 20);
  const [incident] = bot.ims.state.listIncidents();
  assert.equal(incident.flapping, true);

  time.now = base - 20 * MINUTE;
  assert.equal(await runReport(bot.ims), true);
  const text = reportText(reports(fake)[0]);
  const post = bot.ims.permalink(INC_INFRA, incident.incidentTs);
  assert.ok(text.includes('*Flapping (1): nobody is paged again for these until they are stable for 30m*\n'
    + `• *[Critical]* \`nagios:web-03/HTTP\` — 5 state changes in the last 1h, the last 22m ago; firing <${post}|post>`), text);

  time.now = base;
  assert.equal(await runReport(bot.ims), true);
  assert.ok(!reportText(reports(fake)[1]).includes('Flapping'), 'stable for 42 minutes: no longer listed');
  assert.equal(bot.ims.state.flappingIncidents().length, 1, 'the mark stays until the next message about the alert');
});

// ─── --only-report, spawned as cron or a systemd timer would ───

const INI = [
  '[Rules]',
  '(?i)error\t.*\t[Error]\tAPPS\tNo',
  '[Incidents]',
  `APPS\t${INC_APPS}\t50`,
  `INFRA\t${INC_INFRA}\t50`,
  '[Report]',
  REPORT,
  '',
].join('\n');

function runCli(fake: FakeSlack, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'ims.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, SLACK_APP_TOKEN: 'xapp-test', SLACK_BOT_TOKEN: 'xoxb-test', SLACK_API_URL: fake.apiUrl, IMS_HTTP_RETRIES: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`ims did not exit in time; stderr:\n${stderr}`)); }, 20_000);
    child.on('error', reject);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

test('--only-report posts one report and exits 0', async (t) => {
  const fake = await startFake();
  t.after(() => fake.close());
  const dir = tempDir();
  const config = path.join(dir, 'IMS.ini');
  writeFileSync(config, INI);
  seedIncidentPost(fake, INC_APPS, '[Error] nightly export error', tsAgo(2 * HOUR));
  seedIncidentPost(fake, INC_INFRA, '[Error] disk error on db-02', tsAgo(HOUR));

  const { code, stderr } = await runCli(fake, ['--config', config, '--only-report']);
  assert.equal(code, 0, stderr);
  const posted = reports(fake);
  assert.equal(posted.length, 1, stderr);
  const text = reportText(posted[0]);
  assert.match(text, /nightly export error[\s\S]*disk error on db-02/);
  assert.equal(fake.callsTo('apps.connections.open').length, 0, 'no Socket Mode connection for a one-shot report');
  assert.match(stderr, /report posted: 2 open/);
});

test('--only-report exits 1 when the report cannot be posted', async (t) => {
  const fake = await startFake();
  t.after(() => fake.close());
  const dir = tempDir();
  const config = path.join(dir, 'IMS.ini');
  writeFileSync(config, INI);
  seedIncidentPost(fake, INC_APPS, '[Error] nightly export error', tsAgo(2 * HOUR));
  fake.channels.get(REPORT)!.is_archived = true;

  const { code, stderr } = await runCli(fake, ['-config=' + config, '-onlyReport']);
  assert.equal(code, 1, stderr);
  assert.equal(reports(fake).length, 0);
  assert.match(stderr, new RegExp(`report could not be posted to ${REPORT}: is_archived`));
  assert.ok(fake.callsTo('chat.postMessage').some((c) => c.response.error === 'is_archived'));
});

test('a resolution the report finds (added while IMS was away) is recorded and fires onResolve without holding the report up', async (t) => {
  const resolved: number[] = [];
  const plugin = definePlugin({ name: 'slow-exporter', onResolve: (ctx) => { resolved.push(ctx.incident.id); return new Promise<void>(() => {}); } });
  const { fake, bot } = await setup(t, baseConfig({ plugins: [plugin], hookTimeoutMs: 3000 }));
  const a = await alert(fake, bot, 'first silent error', INC_APPS);
  const b = await alert(fake, bot, 'second silent error', INC_APPS);
  await alert(fake, bot, 'still open error', INC_APPS);
  // The reaction events never reached IMS (it was disconnected); history shows them.
  fake.react(INC_APPS, a.post.ts, 'white_check_mark', HUMAN, { emit: false });
  fake.react(INC_APPS, b.post.ts, 'white_check_mark', ONCALL, { emit: false });

  const started = Date.now();
  assert.equal(await runReport(bot.ims), true);
  assert.ok(Date.now() - started < 2500, `the report did not wait for the plugin (${Date.now() - started} ms)`);
  assert.match(reports(fake)[0].text, /: 1 open incident$/);
  assert.equal(bot.ims.state.incidentBySource(ALERTS, a.source.ts)?.resolvedBy, HUMAN);
  assert.equal(bot.ims.state.incidentBySource(ALERTS, b.source.ts)?.resolvedBy, ONCALL);
  await fake.waitFor(() => resolved.length === 2, 'onResolve for both');
});

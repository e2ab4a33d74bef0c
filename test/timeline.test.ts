import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, dateParts, loadConfig, tsToMs, type Incident } from '../ims.ts';
import { timeline } from '../plugins/timeline.ts';
import { warRoom } from '../plugins/war-room.ts';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir, type Bot } from './harness.ts';

guardSocketModeShutdownBug();

async function openIncident(fake: FakeSlack, bot: Bot, text: string): Promise<Incident> {
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text });
  return fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, alert.ts), 'the incident');
}

const tokyo = (ms: number) => {
  const p = dateParts(ms, 'Asia/Tokyo');
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
};
const resolution = (bot: Bot, id: number, user: string) => bot.ims.hooks('onResolve', () => ({ incident: bot.ims.state.incidentById(id)!, user, reaction: 'white_check_mark' }));
const problems = (bot: Bot) => bot.logs.filter((line) => / (ERROR|WARN) /.test(line));

test('on resolution uploads a Markdown timeline into the incident thread and writes it to dir: alert, repost, hotline, reactions, replies, war room and the resolution with MTTA and MTTR', async (t) => {
  const fake = await startFake();
  const dir = path.join(tempDir(), 'nested', 'postmortems');
  const bot = await startBot(fake, baseConfig({ timezone: 'Asia/Tokyo', plugins: [warRoom(), timeline({ dir })] }));
  t.after(async () => { await bot.stop(); await fake.close(); });

  const incident = await openIncident(fake, bot, 'PROBLEM web-03 is CRITICAL\nDisk /var 98%');
  const room = await fake.waitFor(() => [...fake.channels.values()].find((c) => c.name === 'inc-1-critical' && c.pins.size), 'the war room');
  await fake.waitFor(() => fake.messagesIn(INC_INFRA).some((m) => /War room/.test(m.text)), 'the room link');
  fake.react(INC_INFRA, incident.incidentTs, 'eyes', HUMAN);
  fake.post(INC_INFRA, { user: HUMAN, text: `restarting web-03 &lt;now&gt; cc <@${ONCALL}>`, thread_ts: incident.incidentTs });
  fake.post(room.id, { user: ONCALL, text: 'disk full on /var, cleaning up' });
  await fake.waitFor(() => bot.ims.state.incidentEvents(incident.id).some((e) => e.kind === 'reply'), 'the reply recorded');
  await fake.waitFor(() => bot.ims.state.incidentEvents(incident.id).some((e) => e.detail === 'eyes'), 'the reaction recorded');
  fake.react(INC_INFRA, incident.incidentTs, 'white_check_mark', ONCALL);

  const upload = await fake.waitFor(() => fake.uploads.find((u) => u.filename === 'incident-1-critical.md'), 'the timeline upload');
  assert.equal(upload.channel, INC_INFRA);
  assert.equal(upload.thread_ts, incident.incidentTs, 'into the incident thread');
  assert.match(upload.title ?? '', /^Incident #1 \[Critical\] — timeline$/);
  assert.match(upload.initial_comment ?? '', /^:memo: Post-mortem timeline of incident #1 \(MTTA \d+(ms|s) · MTTR \d+(ms|s)\)\.$/);
  const md = upload.content;
  const lines = md.split('\n');
  assert.equal(lines[0], '# Incident #1 [Critical]');
  assert.ok(md.includes('## Alert\n\n> PROBLEM web-03 is CRITICAL\n> Disk /var 98%\n'), 'the original alert, quoted');
  assert.ok(md.includes('- **Hotline:** OnCall'));
  assert.match(md, /- \*\*Original alert:\*\* https:\/\/fake\.slack\.com\/archives\/C0ALERTS01\/p\d+/);
  assert.ok(md.includes(`- **War room:** #inc-1-critical (https://fake.slack.com/archives/${room.id})`));
  assert.ok(md.includes('## Timeline (Asia/Tokyo)'));
  const entry = (pattern: RegExp) => {
    const index = lines.findIndex((l) => pattern.test(l));
    assert.ok(index >= 0, `a timeline line matching ${pattern}:\n${md}`);
    return index;
  };
  const alertLine = entry(new RegExp(`^- ${tokyo(tsToMs(incident.sourceTs))} — \\*\\*bot ${NAGIOS}\\*\\*: Alert posted in #alerts-infra \\(\\[link\\]\\(https://fake\\.slack\\.com/archives/C0ALERTS01/p\\d+\\)\\)$`));
  const repost = entry(/\*\*IMS\*\*: Reposted to #inc-infra as \[Critical\]/);
  const paged = entry(/\*\*IMS\*\*: Paged hotline OnCall: @Ona Call, @here$/);
  const eyes = entry(/\*\*Hugo Human\*\*: Reacted :eyes:$/);
  const reply = entry(/\*\*Hugo Human\*\*: Replied in the incident thread: restarting web-03 <now> cc @Ona Call$/);
  const warRoomLine = entry(/\*\*Ona Call\*\*: In #inc-1-critical: disk full on \/var, cleaning up$/);
  const resolved = entry(/\*\*Ona Call\*\*: \*\*Resolved\*\* the incident$/);
  assert.ok(alertLine < repost && repost <= paged && paged < eyes && eyes < reply && reply < warRoomLine && warRoomLine < resolved, 'in time order');
  entry(/\*\*IMS\*\*: In #inc-1-critical: Incident #1 \[Critical\]/);
  entry(/\*\*IMS\*\*: Replied in the incident thread: :rotating_light: War room for incident #1: #inc-1-critical — join to coordinate\.$/);
  entry(/^- Resolved by \*\*Ona Call\*\* at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.$/);
  entry(/^- Time to acknowledge \(MTTA\): \d+(ms|s) — first reaction by Hugo Human\.$/);
  entry(/^- Time to resolve \(MTTR\): \d+(ms|s)\.$/);
  assert.equal(readFileSync(path.join(dir, 'incident-1-critical.md'), 'utf8'), md, 'the same file written to dir');

  await resolution(bot, incident.id, ONCALL); // a redelivered resolve
  await settle(bot, 300);
  assert.equal(fake.uploads.length, 1, 'one timeline per resolution');
  assert.deepEqual(problems(bot), []);
});

test('one timeline per resolution across a restart; a reopen and a new resolution upload an updated one, with reactions IMS missed', async (t) => {
  const fake = await startFake();
  const statePath = path.join(tempDir(), 'ims.db');
  const config = () => baseConfig({ timezone: 'UTC', plugins: [timeline()] });
  const bots: Bot[] = [];
  t.after(async () => { for (const b of bots) await b.stop(); await fake.close(); });
  const bot1 = await startBot(fake, config(), { statePath });
  bots.push(bot1);

  const incident = await openIncident(fake, bot1, 'checkout error: 500');
  assert.equal(incident.incidentChannel, INC_APPS);
  fake.react(INC_APPS, incident.incidentTs, 'fire', HUMAN, { emit: false }); // while IMS was not listening
  fake.react(INC_APPS, incident.incidentTs, 'white_check_mark', HUMAN);
  const first = await fake.waitFor(() => fake.uploads.find((u) => u.filename === 'incident-1-error.md'), 'the first timeline');
  assert.match(first.content, /### Also recorded by Slack\n\n- \(time not recorded\) — \*\*Hugo Human\*\*: Reacted :fire: on the incident post/);
  assert.match(first.content, /Time to acknowledge \(MTTA\): \S+ — first the resolution itself by Hugo Human\./);
  assert.ok(!first.content.includes('War room'), 'no war room section without the war-room plugin');
  await settle(bot1);
  await bot1.stop();

  const bot2 = await startBot(fake, config(), { statePath });
  bots.push(bot2);
  await resolution(bot2, incident.id, HUMAN); // the same resolution, redelivered to a new process
  await settle(bot2, 300);
  assert.equal(fake.uploads.length, 1, 'no second upload for the same resolution after a restart');

  fake.unreact(INC_APPS, incident.incidentTs, 'white_check_mark', HUMAN);
  await fake.waitFor(() => bot2.ims.state.incidentById(incident.id)?.resolvedAt === undefined, 'the reopen');
  fake.react(INC_APPS, incident.incidentTs, 'white_check_mark', ONCALL);
  const second = await fake.waitFor(() => fake.uploads[1], 'the updated timeline');
  assert.equal(second.filename, 'incident-1-error.md');
  assert.equal(second.thread_ts, incident.incidentTs);
  assert.match(second.content, /\*\*Hugo Human\*\*: \*\*Reopened\*\* the incident/);
  assert.match(second.content, /- Resolved by \*\*Ona Call\*\* at /);
  assert.match(second.content, /- Reopened 1 time before this resolution\./);
  await settle(bot2);
  assert.equal(fake.uploads.length, 2);
  assert.deepEqual(bots.flatMap(problems), []);
});

// ─── Alert lifecycles ───

/** Alerts' own times, on a whole minute hours back (lifecycle windows are measured on them). */
const T0 = Math.floor(Date.now() / 60_000) * 60 - 4 * 3600;
const MIN = 60;
const nagios = (fake: FakeSlack, kind: 'PROBLEM' | 'RECOVERY' | 'ACKNOWLEDGEMENT', seconds: number) => {
  const state = kind === 'RECOVERY' ? 'OK' : 'CRITICAL';
  return fake.post(ALERTS, {
    bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', ts: (T0 + seconds).toFixed(6),
    text: `** ${kind} Service Alert: web-03/HTTP is ${state} **\nNotification Type: ${kind}\nHost: web-03\nService: HTTP\nState: ${state}\nInfo: check output`,
  });
};
const utc = (seconds: number) => new Date((T0 + seconds) * 1000).toISOString().replace('T', ' ').slice(0, 19);

test("an incident its integration resolved: repeats counted in one line, the acknowledgement made in the monitoring tool, the recovery with its link, MTTA and MTTR from the alert's own times", async (t) => {
  const fake = await startFake();
  fake.addBot({ id: NAGIOS, name: 'Nagios' });
  // IMS's clock at the alert's time, as when it reads alerts live.
  const bot = await startBot(fake, baseConfig({ timezone: 'UTC', plugins: [timeline()] }), { now: () => T0 * 1000 });
  t.after(async () => { await bot.stop(); await fake.close(); });

  nagios(fake, 'PROBLEM', 0);
  const incident = await fake.waitFor(() => bot.ims.state.listIncidents()[0], 'the incident');
  const repeats = Array.from({ length: 12 }, (_, i) => nagios(fake, 'PROBLEM', 2 * MIN * (i + 1)));
  await fake.waitFor(() => bot.ims.state.incidentById(incident.id)!.repeats === 12, 'twelve repeats folded in');
  const ack = nagios(fake, 'ACKNOWLEDGEMENT', 25 * MIN);
  await fake.waitFor(() => bot.ims.state.incidentEvents(incident.id).some((e) => e.kind === 'acknowledge'), 'the acknowledgement');
  const recovery = nagios(fake, 'RECOVERY', 40 * MIN);

  const upload = await fake.waitFor(() => fake.uploads.find((u) => u.filename === 'incident-1-critical.md'), 'the timeline', 10_000);
  const md = upload.content;
  const lines = md.split('\n');
  const link = (m: { ts: string }) => bot.ims.permalink(ALERTS, m.ts);
  assert.equal(lines.filter((l) => /Fired again|Repeated/.test(l)).length, 1, `the repeats are one line, not twelve:\n${md}`);
  assert.ok(lines.includes(`- ${utc(2 * MIN)} — **Nagios**: Repeated 12× between ${utc(2 * MIN).slice(11, 16)} and ${utc(24 * MIN).slice(11, 16)} (the last ([link](${link(repeats[11])})))`), md);
  assert.ok(lines.includes(`- ${utc(25 * MIN)} — **Nagios**: Acknowledged the alert in the monitoring tool ([link](${link(ack)}))`), md);
  assert.ok(lines.includes(`- ${utc(40 * MIN)} — **Nagios**: Posted the alert's **recovery** ([link](${link(recovery)}))`), md);
  assert.ok(lines.includes(`- ${utc(40 * MIN)} — **Nagios**: **Resolved** the incident`), md);
  assert.ok(lines.includes(`- **Acknowledged:** ${utc(25 * MIN)} by Nagios (acknowledgement in the monitoring tool) — MTTA 25m`), md);
  assert.ok(lines.includes(`- **Resolved:** ${utc(40 * MIN)} by its integration's recovery ([link](${link(recovery)})) — MTTR 40m`), md);
  assert.ok(lines.includes('- Time to resolve (MTTR): 40m.'), md);
  assert.ok(lines.includes('- Its alert repeated 12 times (folded into this incident: no new post, no new page).'), md);
  assert.ok(!md.includes(':repeat:'), "IMS's own repeat notes in the thread are not listed again");
  assert.match(upload.initial_comment ?? '', /\(MTTA 25m · MTTR 40m\)/);
});

test('a flapping alert: its timeline shows flapping start and stop and the alert firing again, after the resolution that ends it', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ timezone: 'UTC', plugins: [timeline()], lifecycle: { flapping: { changes: 3, within: '1h', stableFor: '30m' } } }), { now: () => T0 * 1000 });
  t.after(async () => { await bot.stop(); await fake.close(); });
  nagios(fake, 'PROBLEM', 0);
  const incident = await fake.waitFor(() => bot.ims.state.listIncidents()[0], 'the incident');
  for (const [minute, kind] of [[1, 'RECOVERY'], [2, 'PROBLEM'], [3, 'RECOVERY']] as const) {
    const m = nagios(fake, kind, minute * MIN);
    await fake.waitFor(() => m.reactions?.length, `the ${kind} at ${minute}m`);
  }
  await fake.waitFor(() => bot.ims.state.incidentById(incident.id)!.flapping, 'flapping');
  nagios(fake, 'PROBLEM', 40 * MIN); // stable for 37 minutes: no longer flapping, and firing again
  await fake.waitFor(() => !bot.ims.state.incidentById(incident.id)!.flapping, 'stable again');
  nagios(fake, 'RECOVERY', 70 * MIN); // the one change within the hour before it: no flapping
  const last = await fake.waitFor(() => fake.uploads.find((u) => u.content.includes('stopped flapping')), 'the timeline after the last resolution', 10_000);
  const lines = last.content.split('\n');
  const index = (pattern: RegExp) => {
    const i = lines.findIndex((l) => pattern.test(l));
    assert.ok(i >= 0, `a line matching ${pattern}:\n${last.content}`);
    return i;
  };
  const started = index(new RegExp(`^- ${utc(3 * MIN)} — \\*\\*IMS\\*\\*: Its alert started \\*\\*flapping\\*\\*`));
  const stopped = index(new RegExp(`^- ${utc(40 * MIN)} — \\*\\*IMS\\*\\*: Its alert stopped flapping: stable again$`));
  const reopened = index(new RegExp(`^- ${utc(40 * MIN)} — \\*\\*bot ${NAGIOS}\\*\\*: \\*\\*Reopened\\*\\* the incident: its alert fired again within the reopen window$`));
  assert.ok(started < stopped && stopped < reopened, 'in time order');
  assert.ok(lines.includes('- Reopened 2 times before this resolution.'), last.content);
  assert.ok(lines.includes('- Its alert flapped once: nobody was paged again while it did.'), last.content);
});

test('retries a failed upload and still uploads exactly one timeline', async (t) => {
  const fake = await startFake();
  const bot = await startBot(fake, baseConfig({ plugins: [timeline()] }));
  t.after(async () => { await bot.stop(); await fake.close(); });
  fake.failNext('files.completeUploadExternal', 'internal_error');

  const incident = await openIncident(fake, bot, 'PROBLEM db-01 is CRITICAL');
  fake.react(INC_INFRA, incident.incidentTs, 'white_check_mark', HUMAN);
  await fake.waitFor(() => fake.uploads.length, 'the upload after a retry', 8000);
  await settle(bot, 300);
  assert.equal(fake.uploads.length, 1);
  assert.deepEqual(fake.callsTo('files.completeUploadExternal').map((c) => c.response.error), ['internal_error', undefined]);
  assert.ok(bot.logs.some((l) => /outbox: 'timeline' delivery of timeline:1:\S+ failed \(attempt 1\): internal_error/.test(l)), 'the failure is logged');
});

test('refuses a bad dir when the config is loaded', async () => {
  const dir = tempDir();
  const plugin = new URL('../plugins/timeline.ts', import.meta.url).href;
  writeFileSync(path.join(dir, 'ims.config.ts'), [
    `import { timeline } from '${plugin}';`,
    `export default { rules: [{ match: 'x', head: '[X]', incident: 'X' }], incidents: { X: { channel: 'C0XXXXXXX' } }, plugins: [timeline({ dir: '' })] };`,
  ].join('\n'));
  await assert.rejects(loadConfig({ cwd: dir }), (error: unknown) => {
    assert.ok(error instanceof ConfigError, `a ConfigError, got ${error}`);
    assert.ok(error.message.includes(`timeline(): option 'dir' expects a directory path such as './postmortems', found ''`), error.message);
    return true;
  });
  assert.throws(() => timeline({ dir: 42 as never }), /^Error: timeline\(\): option 'dir' expects a directory path such as '\.\/postmortems', found 42$/);
  assert.throws(() => timeline({ folder: 'x' } as never), /timeline\(\): unknown option 'folder'; expected one of dir/);
  assert.equal(existsSync(path.join(dir, 'x')), false);
});

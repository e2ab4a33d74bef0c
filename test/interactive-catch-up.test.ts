/**
 * Silences and permissions as an independent verification of issue 10 found them wanting, now held: alerts caught
 * up after downtime are judged by the silences and windows of their own time, reactions follow `permissions` as
 * buttons do, and the Silence menu's options are worded as the issue words them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import { stats } from '../plugins/stats.ts';
import { ALERTS, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT, baseConfig, guardSocketModeShutdownBug, settle, setup, type Bot, until } from './harness.ts';

guardSocketModeShutdownBug();

const OPS = 'C0OPS00001';
const OTHER = 'U0OTHER001';
const THIRD = 'U0THIRD001';

async function begin(t: Parameters<typeof setup>[0], overrides: Parameters<typeof baseConfig>[0] = {}, options: Parameters<Awaited<ReturnType<typeof setup>>['start']>[1] = {}) {
  const { fake, start } = await setup(t);
  fake.addChannel({ id: OPS, name: 'ops', is_member: false });
  fake.addUser({ id: OTHER, name: 'olga', real_name: 'Olga Other' });
  fake.addUser({ id: THIRD, name: 'tom', real_name: 'Tom Third' });
  const bot = await start(baseConfig(overrides), options);
  return { fake, bot, start };
}

function postAlert(fake: FakeSlack, text: string): FakeMessage {
  return fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text });
}

function nagios(kind: 'PROBLEM' | 'RECOVERY', host: string, service: string): string {
  const state = kind === 'PROBLEM' ? 'CRITICAL' : 'OK';
  return `** ${kind} Service Alert: ${host}/${service} is ${state} **\nNotification Type: ${kind}\nHost: ${host}\nService: ${service}\nState: ${state}\nInfo: check output`;
}

async function incidentPost(fake: FakeSlack, bot: Bot, alert: FakeMessage, channel = INC_APPS) {
  const incident = await fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, alert.ts), 'the incident');
  const post = await fake.waitFor(() => fake.messagesIn(channel).find((m) => m.ts === incident.incidentTs), 'its post');
  await settle(bot);
  return { incident, post };
}

const postNow = (fake: FakeSlack, channel: string, ts: string) => fake.messagesIn(channel).find((m) => m.ts === ts);
function status(message: FakeMessage | undefined): string {
  const block = ((message?.blocks ?? []) as any[]).find((b) => b.block_id === 'ims_status');
  return block ? block.elements.map((e: any) => e.text).join('\n') : '';
}
function labels(message: FakeMessage | undefined): string[] {
  const blocks = (message?.blocks ?? []) as any[];
  return blocks.filter((b) => b.type === 'actions').flatMap((b) => b.elements.map((e: any) => e.text?.text ?? e.placeholder?.text));
}

async function ask(fake: FakeSlack, user: string, text: string): Promise<string> {
  const command = await fake.slash(user, OPS, text);
  const answer = await fake.waitForResponse(command.response_url!);
  assert.deepEqual(answer.did, ['ephemeral'], `"/ims ${text}" answered ephemerally`);
  return String(answer.body.text);
}

test('the Silence menu offers the options as the issue words them: 1 h, 4 h, 24 h, custom…', async (t) => {
  const { fake, bot } = await begin(t);
  const { post } = await incidentPost(fake, bot, postAlert(fake, 'payment api error rate 12%'));
  const select = ((post.blocks ?? []) as any[]).flatMap((b) => b.elements ?? []).find((e: any) => e.type === 'static_select');
  assert.deepEqual(select.options.map((o: any) => o.text.text), ['1 h', '4 h', '24 h', 'custom…']);
});

test('a non-admin may not resolve, by a resolved reaction, an incident someone else acknowledged (default resolve: own)', async (t) => {
  const { fake, bot } = await begin(t, { admins: [THIRD] });
  const { incident, post } = await incidentPost(fake, bot, postAlert(fake, 'payment api error rate 12%'));
  await fake.click(HUMAN, INC_APPS, post.ts, 'Acknowledge');
  await until(bot, 'ack', () => bot.ims.state.incidentById(incident.id)!.acknowledgedBy === HUMAN);
  await fake.click(OTHER, INC_APPS, post.ts, 'Resolve');
  await fake.waitForEphemeral(OTHER);
  assert.equal(bot.ims.state.incidentById(incident.id)!.resolvedAt, undefined, 'the button is refused');
  fake.react(INC_APPS, post.ts, 'white_check_mark', OTHER);
  await settle(bot, 500);
  assert.equal(bot.ims.state.incidentById(incident.id)!.resolvedAt, undefined, 'the same person, by reaction, must be refused too');
});

test('an alert posted during a silence while IMS was down is not reposted nor paged when caught up after the silence ended', async (t) => {
  let offset = 0;
  const { fake, start } = await setup(t, { dropWhileDisconnected: true });
  fake.addChannel({ id: OPS, name: 'ops', is_member: false });
  const statePath = (await import('node:path')).join((await import('./harness.ts')).tempDir(), 'ims.db');
  const opts = { statePath, now: () => Date.now() + offset, silenceSweepMs: 100 };
  const bot = await start(baseConfig(), opts);
  // one alert first so the channel has a cursor
  const before = postAlert(fake, 'warmup error 1');
  await incidentPost(fake, bot, before);
  const id = /Silence (\d+)/.exec(await ask(fake, HUMAN, 'silence [Critical] 5m'))![1];
  await bot.stop();
  const during = postAlert(fake, nagios('PROBLEM', 'db-01', 'MySQL')); // posted while the silence is in force, IMS down
  offset = 10 * 60_000; // IMS comes back after the silence ended
  const second = await start(baseConfig(), opts);
  await settle(second, 1500);
  const incident = second.ims.state.incidentBySource(ALERTS, during.ts);
  const paged = fake.messagesIn(INC_INFRA).some((m) => JSON.stringify(m).includes(`<@${ONCALL}>`));
  t.diagnostic(`silence ${id}; caught-up alert became incident: ${!!incident}; on-call paged: ${paged}`);
  assert.equal(incident, undefined, 'the alert fired while silenced: it must not be reposted');
  assert.equal(paged, false, 'nor paged');
});

test('an alert fired inside a maintenance window while IMS was down is not reposted when caught up after the window closed', async (t) => {
  const day = 86_400_000;
  const realNow = Date.now();
  // The window opened 40 min ago (by the real clock) and lasts 30 min: it closed 10 min ago.
  const opened = new Date(realNow - 40 * 60_000);
  const schedule = `${opened.getUTCMinutes()} ${opened.getUTCHours()} * * *`;
  let offset = -35 * 60_000; // the first run happens inside the window
  const { fake, start } = await setup(t, { dropWhileDisconnected: true });
  const statePath = (await import('node:path')).join((await import('./harness.ts')).tempDir(), 'ims.db');
  const config = baseConfig({ maintenance: [{ name: 'patching', match: 'INFRA', schedule, duration: '30m' }] });
  const opts = { statePath, now: () => Date.now() + offset, silenceSweepMs: 100 };
  const bot = await start(config, opts);
  const warm = fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text: 'warmup error 1', ts: ((realNow - 30 * 60_000) / 1000).toFixed(6) });
  await incidentPost(fake, bot, warm);
  await bot.stop();
  // A CRITICAL posted 20 min ago, inside the window, while IMS was down (Slack ts in the past).
  const during = fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text: nagios('PROBLEM', 'db-01', 'MySQL'), ts: ((realNow - 20 * 60_000) / 1000).toFixed(6) });
  offset = 0;
  const second = await start(config, opts);
  await settle(second, 1500);
  const incident = second.ims.state.incidentBySource(ALERTS, during.ts);
  t.diagnostic(`schedule ${schedule}; caught-up alert became incident: ${!!incident}`);
  assert.equal(incident, undefined, 'fired inside the maintenance window: not reposted nor paged');
  void day;
});

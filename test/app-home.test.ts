/**
 * The App Home end to end: a person opens IMS's Home tab (`app_home_opened`), and the real IMS with its real SDK
 * clients publishes a view to the fake Slack, which checks it as Slack does (a `home` view, at most 100 blocks)
 * and lets the test click its buttons as the person would. What is asserted is what the person sees there.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FakeMessage, FakeSlack, FakeView } from './fake-slack.ts';
import {
  ALERTS, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, UNPACED,
  allStrings, baseConfig, guardSocketModeShutdownBug, settle, setup, type Bot, until,
} from './harness.ts';

guardSocketModeShutdownBug();

const OPS = 'C0OPS00001';

/** Nagios Core's default service notification as its Slack relays post it (recognised: key nagios:host/service). */
function nagios(kind: 'PROBLEM' | 'RECOVERY', host: string, service: string): string {
  const state = kind === 'PROBLEM' ? 'CRITICAL' : 'OK';
  return `** ${kind} Service Alert: ${host}/${service} is ${state} **\nNotification Type: ${kind}\nHost: ${host}\nService: ${service}\nState: ${state}\nInfo: check output`;
}

function postAlert(fake: FakeSlack, text: string, ts?: string): FakeMessage {
  return fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text, ...(ts ? { ts } : {}) });
}

/** The incident an alert became (recorded just after its post shows). */
const incidentOf = (fake: FakeSlack, bot: Bot, alert: FakeMessage) => fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, alert.ts), `the incident of ${alert.text.split('\n')[0]}`);

const botPosts = (fake: FakeSlack, channel: string) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId && (!m.thread_ts || m.thread_ts === m.ts));

/** The Home's blocks as the person sees them: each block's text (sections, context), and its buttons' labels. */
function blocksOf(view: FakeView | undefined): any[] {
  return (view?.view.blocks ?? []) as any[];
}

function sectionTexts(view: FakeView | undefined): string[] {
  return blocksOf(view).filter((b) => b.type === 'section').map((b) => String(b.text?.text ?? ''));
}

/** The buttons under incident `id` on the Home. */
function buttonsOf(view: FakeView | undefined, id: number): string[] {
  const block = blocksOf(view).find((b) => b.type === 'actions' && b.elements.some((e: any) => e.value === String(id)));
  return block ? block.elements.map((e: any) => e.text.text) : [];
}

/** The section showing incident `id` on the Home. */
function incidentSection(view: FakeView | undefined, id: number): string | undefined {
  return sectionTexts(view).find((text) => new RegExp(`\\|#${id} `).test(text));
}

/** `MM/DD HH:mm` in UTC, as the Home shows an instant (the base config's timezone is UTC). */
function clock(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getUTCMonth() + 1)}/${two(d.getUTCDate())} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}`;
}

/** A fake Slack with an #ops channel (where commands are typed), and IMS started on `config`. */
async function begin(t: Parameters<typeof setup>[0], config = baseConfig(), options: Parameters<Awaited<ReturnType<typeof setup>>['start']>[1] = {}) {
  const { fake, start } = await setup(t);
  fake.addChannel({ id: OPS, name: 'ops', is_member: false });
  const bot = await start(config, options);
  return { fake, bot };
}

test('opening the Home shows open incidents by label with age, acknowledger and buttons, silences in force with their end, and flapping alerts', async (t) => {
  let offset = 0;
  const config = baseConfig({ lifecycle: { flapping: { changes: 3, within: '1h', stableFor: '30m' } } });
  const { fake, bot } = await begin(t, config, { now: () => Date.now() + offset });

  const error = postAlert(fake, 'payment api error rate 12%');
  await fake.waitFor(() => botPosts(fake, INC_APPS).length === 1, 'the APPS incident post');
  // web-03/HTTP fires, recovers, fires, recovers, fires within the hour: flapping, and open.
  const t0 = Math.floor(Date.now() / 1000) - 600;
  const changes = (['PROBLEM', 'RECOVERY', 'PROBLEM', 'RECOVERY', 'PROBLEM'] as const).map((kind, i) => postAlert(fake, nagios(kind, 'web-03', 'HTTP'), (t0 + 60 * i).toFixed(6)));
  await until(bot, 'the flapping incident', () => bot.ims.state.flappingIncidents().length === 1);
  const apps = await incidentOf(fake, bot, error);
  const infra = await incidentOf(fake, bot, changes[0]);
  assert.equal(bot.ims.state.incidentById(infra.id)!.resolvedAt, undefined, 'the flapping alert is firing');
  await fake.click(ONCALL, INC_APPS, apps.incidentTs, 'Acknowledge');
  await until(bot, 'the acknowledgement', () => bot.ims.state.incidentById(apps.id)!.acknowledgedBy === ONCALL);
  const command = await fake.slash(HUMAN, OPS, 'silence [Backup] 2h nightly job moved');
  await fake.waitForResponse(command.response_url!);
  const [silence] = bot.ims.state.activeSilences(bot.ims.now());
  offset = 42 * 60_000;

  const opened = await fake.openHome(HUMAN);
  assert.deepEqual(opened.ack, {}, 'app_home_opened is acknowledged');
  const home = await fake.waitFor(() => fake.homeView(HUMAN), 'the Home published for the person who opened it');
  assert.equal(home.type, 'home');
  assert.ok(blocksOf(home).length <= 100);
  const texts = sectionTexts(home);
  assert.equal(texts[0], '*2 open incidents*');
  assert.ok(texts.includes('*APPS* (1)') && texts.includes('*INFRA* (1)'), `grouped by label: ${texts.join(' | ')}`);

  const appsShown = incidentSection(home, apps.id);
  assert.equal(appsShown, `<${bot.ims.permalink(INC_APPS, apps.incidentTs)}|#${apps.id} [Error]> payment api error rate 12%\n42m old · acknowledged by <@${ONCALL}>`);
  assert.deepEqual(buttonsOf(home, apps.id), ['Resolve'], 'an acknowledged incident offers Resolve only');
  const infraShown = incidentSection(home, infra.id);
  assert.ok(infraShown?.startsWith(`<${bot.ims.permalink(INC_INFRA, infra.incidentTs)}|#${infra.id} [Critical]> ** PROBLEM Service Alert: web-03/HTTP is CRITICAL **\n`), infraShown);
  assert.match(infraShown!, /\n42m old · \*not acknowledged\* .*· flapping$/);
  assert.deepEqual(buttonsOf(home, infra.id), ['Acknowledge', 'Resolve']);
  // The label comes before its incidents.
  assert.ok(texts.indexOf('*APPS* (1)') < texts.indexOf(appsShown!) && texts.indexOf('*INFRA* (1)') < texts.indexOf(infraShown!));

  const silences = texts.find((text) => text.startsWith('*Silences in force*'));
  assert.equal(silences, `*Silences in force*\n• ${silence.id}: rule [Backup] until ${clock(silence.endsAt)}, by <@${HUMAN}> — 0 silenced`);
  const flapping = texts.find((text) => text.startsWith('*Flapping*'));
  assert.equal(flapping, `*Flapping*\n• <${bot.ims.permalink(INC_INFRA, infra.incidentTs)}|#${infra.id}> nagios:web-03/HTTP`);
  assert.equal(fake.homePublishes(ONCALL), 0, 'nobody else\'s Home is published');
});

test('Resolve on the Home resolves the incident, and the Home is published again without it', async (t) => {
  const { fake, bot } = await begin(t);
  const first = postAlert(fake, 'payment api error rate 12%');
  const second = postAlert(fake, 'orders api error rate 40%');
  await fake.waitFor(() => botPosts(fake, INC_APPS).length === 2, 'both incident posts');
  const gone = await incidentOf(fake, bot, first);
  const stays = await incidentOf(fake, bot, second);
  await fake.openHome(HUMAN);
  const home = await fake.waitFor(() => fake.homeView(HUMAN), 'the Home');
  assert.ok(incidentSection(home, gone.id) && incidentSection(home, stays.id));
  const published = fake.homePublishes(HUMAN);

  const click = await fake.clickInView(HUMAN, home.id, 'Resolve', { value: String(gone.id) });
  assert.deepEqual(click.ack, {});
  // A click on the Home shows its result there at once.
  const after = await fake.waitFor(() => fake.homePublishes(HUMAN) > published && !incidentSection(fake.homeView(HUMAN), gone.id) && fake.homeView(HUMAN), 'the Home without the resolved incident', 15_000);
  assert.equal(bot.ims.state.incidentById(gone.id)!.resolvedBy, HUMAN);
  assert.equal(sectionTexts(after)[0], '*1 open incident*');
  assert.ok(incidentSection(after, stays.id), 'the other incident is still shown');
  assert.equal(after.id, home.id, 'the same Home view, published again');
  await until(bot, 'the incident post to show the resolution', () => allStrings(fake.messagesIn(INC_APPS).find((m) => m.ts === gone.incidentTs)?.blocks).some((s) => s.includes(`Resolved* by <@${HUMAN}>`)));
  assert.equal(fake.ephemeralsFor(HUMAN).length, 0, 'the Home itself shows what happened');
  assert.equal(fake.openedViews().length, 0, 'and no modal is needed to say so');
});

test('a new incident publishes the Home again for whoever opened it, at most once per 2 s (for one viewer) while things keep changing', async (t) => {
  const { fake, bot } = await begin(t);
  await fake.openHome(HUMAN);
  const empty = await fake.waitFor(() => fake.homeView(HUMAN), 'the Home');
  assert.equal(sectionTexts(empty)[0], ':white_check_mark: *No open incidents*');
  assert.equal(fake.homePublishes(HUMAN), 1);

  const first = postAlert(fake, 'payment api error rate 12%');
  await fake.waitFor(() => botPosts(fake, INC_APPS).length === 1, 'the incident post');
  const incident = await incidentOf(fake, bot, first);
  await fake.waitFor(() => incidentSection(fake.homeView(HUMAN), incident.id), 'the Home with the new incident', 15_000);
  const firstRefresh = Date.now();
  const publishes = fake.homePublishes(HUMAN);

  // More changes right away: one more publish, no sooner than 2 s after the last, showing all of them.
  const next = [postAlert(fake, nagios('PROBLEM', 'db-01', 'MySQL')), postAlert(fake, 'orders api error rate 40%')];
  const ids = await Promise.all(next.map(async (m) => (await incidentOf(fake, bot, m)).id));
  await fake.waitFor(() => ids.every((id) => incidentSection(fake.homeView(HUMAN), id)), 'the Home with the next incidents', 15_000);
  const secondRefresh = Date.now();
  assert.ok(secondRefresh - firstRefresh >= 1_800, `published again after ${secondRefresh - firstRefresh} ms: refreshes are paced`);
  assert.equal(fake.homePublishes(HUMAN), publishes + 1, 'one publish for all those changes');
  assert.equal(sectionTexts(fake.homeView(HUMAN))[0], '*3 open incidents*');
  assert.equal(fake.homePublishes(ONCALL), 0, 'someone who never opened the Home gets none');
});

test('with 60 open incidents the Home keeps within Slack\'s 100 blocks, lists the newest and counts the rest', async (t) => {
  const { fake, bot } = await begin(t, baseConfig(), UNPACED);
  const alerts: FakeMessage[] = [];
  for (let i = 1; i <= 60; i++) {
    alerts.push(postAlert(fake, i % 2 ? `error in service-${i}: HTTP 500` : nagios('PROBLEM', `web-${i}`, 'HTTP')));
  }
  await until(bot, 'sixty incidents', () => bot.ims.state.listIncidents({ open: true }).length === 60, 20_000);
  await fake.openHome(HUMAN);
  const home = await fake.waitFor(() => fake.homeView(HUMAN), 'the Home (Slack refuses a view of more than 100 blocks)');
  assert.ok(blocksOf(home).length <= 100, `${blocksOf(home).length} blocks`);
  const texts = sectionTexts(home);
  assert.equal(texts[0], '*60 open incidents*');
  const listed = alerts.map((m) => bot.ims.state.incidentBySource(ALERTS, m.ts)!).filter((i) => incidentSection(home, i.id));
  assert.equal(listed.length, 25, 'twenty-five listed');
  assert.deepEqual(listed.map((i) => i.id).sort((a, b) => a - b), alerts.slice(-25).map((m) => bot.ims.state.incidentBySource(ALERTS, m.ts)!.id).sort((a, b) => a - b), 'the newest');
  for (const incident of listed) assert.deepEqual(buttonsOf(home, incident.id), ['Acknowledge', 'Resolve']);
  const rest = blocksOf(home).filter((b) => b.type === 'context').flatMap((b) => b.elements.map((e: any) => e.text)).find((text: string) => /older open incidents/.test(text));
  assert.equal(rest, '…and 35 older open incidents (`/ims status`, the report)');
  assert.ok(texts.some((text) => text === '*Silences*: none in force'), 'the silences section is still there');
});

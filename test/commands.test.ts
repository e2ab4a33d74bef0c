/**
 * `/ims` end to end, typed as a person types it: the real IMS with its real SDK clients against the fake Slack,
 * which sends `slash_commands` envelopes shaped as Slack's and records what came back through each command's
 * response_url (or as an ephemeral message). Answers are read where Slack shows them; what a command changes is
 * read where everyone sees it (the report channel, the alert and incident channels).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import path from 'node:path';
import { describeTest, type Config } from '../ims.ts';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import {
  ALERTS, ALERTS2, DEFAULT_CH, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT,
  UNPACED, allStrings, baseConfig, guardSocketModeShutdownBug, settle, setup, tempDir, unescapeSlack, type Bot, until,
} from './harness.ts';

guardSocketModeShutdownBug();

/** A channel where people type commands; the bot is not a member (the answer still reaches them: response_url). */
const OPS = 'C0OPS00001';
const OTHER = 'U0OTHER001';
const CHANNELS = [ALERTS, ALERTS2, INC_INFRA, INC_APPS, REPORT, DEFAULT_CH, OPS];

type Start = Awaited<ReturnType<typeof setup>>['start'];

/** A fake Slack with an #ops channel and a third person, and IMS started on `config`. */
async function begin(t: Parameters<typeof setup>[0], config: Config = baseConfig(), options: Parameters<Start>[1] = {}) {
  const { fake, start } = await setup(t);
  fake.addChannel({ id: OPS, name: 'ops', is_member: false });
  fake.addUser({ id: OTHER, name: 'olga', real_name: 'Olga Other' });
  const bot = await start(config, options);
  return { fake, start, bot };
}

/**
 * `user` types `/ims text` in #ops; the one answer IMS gives, which must be ephemeral (only they see it).
 * Waits a little longer to make sure no second answer follows.
 */
async function ask(fake: FakeSlack, bot: Bot, user: string, text: string): Promise<string> {
  const command = await fake.slash(user, OPS, text);
  assert.deepEqual(command.ack, {}, 'acknowledged at once, with the answer to follow');
  const answer = await fake.waitForResponse(command.response_url!);
  await settle(bot, 50);
  assert.equal(command.responses().length, 1, `one answer to "/ims ${text}"`);
  assert.equal(answer.body.response_type, 'ephemeral', `the answer to "/ims ${text}" is ephemeral`);
  assert.deepEqual(answer.did, ['ephemeral'], 'shown only to the person who typed it');
  assert.ok(fake.ephemeralsFor(user).some((e) => e.text === answer.body.text), 'and they see it');
  return String(answer.body.text);
}

/** Nagios Core's default service notification as its Slack relays post it (recognised: key nagios:host/service). */
function nagios(kind: 'PROBLEM' | 'RECOVERY', host: string, service: string): string {
  const state = kind === 'PROBLEM' ? 'CRITICAL' : 'OK';
  return `** ${kind} Service Alert: ${host}/${service} is ${state} **\nNotification Type: ${kind}\nHost: ${host}\nService: ${service}\nState: ${state}\nInfo: check output`;
}

function postNagios(fake: FakeSlack, kind: 'PROBLEM' | 'RECOVERY', host: string, service: string): FakeMessage {
  return fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text: nagios(kind, host, service) });
}

/** An alert as Nagios posts it; `at` (epoch ms) dates it on a moved clock (alerts are judged by their own time). */
function postAlert(fake: FakeSlack, text: string, at?: number): FakeMessage {
  return fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text, ...(at === undefined ? {} : { ts: (at / 1000).toFixed(6) }) });
}

const seen = (fake: FakeSlack, alert: FakeMessage) =>
  !!fake.messagesIn(ALERTS).find((m) => m.ts === alert.ts)?.reactions?.some((r) => r.name === 'white_check_mark');

/** Top-level posts IMS made in a channel. */
const botPosts = (fake: FakeSlack, channel: string) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId && (!m.thread_ts || m.thread_ts === m.ts));

/** The incident an alert became (recorded just after its post shows). */
const incidentOf = (fake: FakeSlack, bot: Bot, alert: FakeMessage) => fake.waitFor(() => bot.ims.state.incidentBySource(ALERTS, alert.ts), `the incident of ${alert.text.split('\n')[0]}`);

/** Everything IMS posted anywhere (text and blocks), for "nobody is mentioned, nothing links" checks. */
const everythingPosted = (fake: FakeSlack) => CHANNELS.flatMap((c) => fake.messagesIn(c).filter((m) => m.bot_id === fake.botId));

/** Whether anything IMS posted mentions `user` (a page). */
const paged = (fake: FakeSlack, user: string) => everythingPosted(fake).some((m) => allStrings(m).some((s) => s.includes(`<@${user}>`)));

/** What a command must leave alone when it only answers: silences, and every channel's messages. */
function snapshot(fake: FakeSlack, bot: Bot) {
  return { silences: bot.ims.state.activeSilences(bot.ims.now()).length, messages: CHANNELS.map((c) => fake.messagesIn(c).length) };
}

/** IMS's messages in the report channel whose text matches `pattern`. */
const reportMessages = (fake: FakeSlack, pattern: RegExp) => fake.messagesIn(REPORT).filter((m) => m.bot_id === fake.botId && pattern.test(m.text));

/** The id of the silence an answer says is now in force. */
function silenceIdIn(answer: string): number {
  const id = /Silence (\d+) is in force/.exec(answer)?.[1];
  assert.ok(id, `the answer names the new silence: ${answer}`);
  return Number(id);
}

// ───────────────────────────── help and refusals ─────────────────────────────

test('/ims help and a bare /ims list every subcommand, ephemerally', async (t) => {
  const { fake, bot } = await begin(t);
  for (const text of ['help', '']) {
    const answer = await ask(fake, bot, HUMAN, text);
    for (const sub of ['status', 'silence <what> <duration>', 'silences', 'unsilence <id>', 'test <alert text>', 'report', 'help']) {
      assert.ok(answer.includes(`/ims ${sub}`), `"/ims ${text}" lists /ims ${sub}: ${answer}`);
    }
  }
});

test('an unknown subcommand and a silence without a usable duration are answered with one line, and change nothing', async (t) => {
  const { fake, bot } = await begin(t);
  const before = snapshot(fake, bot);
  const unknown = await ask(fake, bot, HUMAN, 'frobnicate');
  assert.match(unknown, /^Unknown command `frobnicate`.*Usage: `\/ims status \| silence/);
  const missing = await ask(fake, bot, HUMAN, 'silence [Warn]');
  assert.match(missing, /^Usage: \/ims silence <what> <duration>/);
  const forever = await ask(fake, bot, HUMAN, 'silence [Warn] forever');
  assert.match(forever, /^Expected a duration such as 30m, 2h.*found `forever`/);
  for (const answer of [unknown, missing, forever]) assert.ok(!answer.includes('\n'), `one line: ${answer}`);
  const typo = await ask(fake, bot, HUMAN, 'silense [Error] 1h');
  assert.match(typo, /did you mean `silence`\?/);
  await settle(bot);
  assert.deepEqual(snapshot(fake, bot), before, 'no silence made, nothing posted anywhere');
});

// ───────────────────────────── status ─────────────────────────────

test('/ims status lists open incidents with their number, age, acknowledger and links; with none open it says so', async (t) => {
  let offset = 0;
  const { fake, bot } = await begin(t, baseConfig(), { now: () => Date.now() + offset });
  assert.equal(await ask(fake, bot, HUMAN, 'status'), ':white_check_mark: No open incidents.');

  const appsAlert = postAlert(fake, 'payment api error rate 12%');
  const infraAlert = postNagios(fake, 'PROBLEM', 'web-03', 'HTTP');
  await fake.waitFor(() => botPosts(fake, INC_APPS).length === 1 && botPosts(fake, INC_INFRA).length === 1, 'both incident posts');
  const apps = await incidentOf(fake, bot, appsAlert);
  const infra = await incidentOf(fake, bot, infraAlert);
  await fake.click(ONCALL, INC_INFRA, infra.incidentTs, 'Acknowledge');
  await until(bot, 'the acknowledgement', () => bot.ims.state.incidentById(infra.id)!.acknowledgedBy === ONCALL);
  offset = 23 * 60_000;

  const status = await ask(fake, bot, HUMAN, 'status');
  const lines = status.split('\n');
  assert.equal(lines[0], '*2 open incidents*');
  const appsLine = lines.find((l) => l.includes(`#${apps.id} [Error]`));
  const infraLine = lines.find((l) => l.includes(`#${infra.id} [Critical]`));
  assert.ok(appsLine && infraLine, `both incidents listed: ${status}`);
  assert.ok(appsLine.startsWith(`• <${bot.ims.permalink(INC_APPS, apps.incidentTs)}|#${apps.id} [Error]>`), `linked to its post: ${appsLine}`);
  assert.match(appsLine, /payment api error rate 12% — 23m old, not acknowledged/);
  assert.ok(appsLine.includes(` (<${bot.ims.permalink(ALERTS, appsAlert.ts)}|alert>)`), `linked to the alert: ${appsLine}`);
  assert.match(infraLine, new RegExp(`— 23m old, acknowledged by <@${ONCALL}>`));
  assert.ok(infraLine.endsWith(' · key `nagios:web-03/HTTP`'), `with the key a silence can take: ${infraLine}`);
  assert.ok(infraLine.includes(`<${bot.ims.permalink(INC_INFRA, infra.incidentTs)}|#${infra.id} [Critical]>`));

  await fake.click(HUMAN, INC_APPS, apps.incidentTs, 'Resolve');
  await fake.click(ONCALL, INC_INFRA, infra.incidentTs, 'Resolve');
  await until(bot, 'both resolved', () => bot.ims.state.listIncidents({ open: true }).length === 0);
  assert.equal(await ask(fake, bot, HUMAN, 'status'), ':white_check_mark: No open incidents.');
});

// ───────────────────────────── silences ─────────────────────────────

test('/ims silence [Error] 2h is announced in the report channel and answered with its id; a matching alert is then marked seen, not reposted, and counted', async (t) => {
  const { fake, bot } = await begin(t);
  const answer = await ask(fake, bot, HUMAN, 'silence [Error] 2h deploy of api');
  const id = silenceIdIn(answer);
  assert.match(answer, new RegExp(`rule \\[Error\\] until .*End it with \`/ims unsilence ${id}\``));
  const announcement = await fake.waitFor(() => reportMessages(fake, new RegExp(`\\(silence ${id}\\)`))[0], 'the announcement');
  assert.match(announcement.text, new RegExp(`^:no_bell: Hugo Human silenced rule \\[Error\\] for 2h 0m, until .* \\(silence ${id}\\): deploy of api$`));

  const silenced = postAlert(fake, 'payment api error rate 12%');
  const critical = postNagios(fake, 'PROBLEM', 'db-01', 'MySQL');
  await fake.waitFor(() => seen(fake, silenced), 'the silenced alert marked seen');
  await fake.waitFor(() => botPosts(fake, INC_INFRA).length === 1, 'the other alert reposted');
  await settle(bot);
  assert.equal(botPosts(fake, INC_APPS).length, 0, 'the silenced alert is not reposted');
  assert.equal(bot.ims.state.incidentBySource(ALERTS, silenced.ts), undefined, 'nor is it an incident');
  await incidentOf(fake, bot, critical);
  assert.ok(paged(fake, ONCALL), 'and still pages');

  const list = await ask(fake, bot, HUMAN, 'silences');
  assert.match(list, /^\*1 silence in force\*\n/);
  assert.match(list, new RegExp(`• \\*${id}\\* rule \\[Error\\] until .*, by <@${HUMAN}>: deploy of api — 1 alert silenced`));
});

test('a silence by /regex/i takes the alerts whose text it matches, whatever their case, and no others', async (t) => {
  const { fake, bot } = await begin(t);
  silenceIdIn(await ask(fake, bot, HUMAN, 'silence /payment api/i 1h'));
  const silenced = postAlert(fake, 'PAYMENT API error rate 12%');
  const other = postAlert(fake, 'orders api error rate 40%');
  await fake.waitFor(() => seen(fake, silenced), 'the silenced alert marked seen');
  await fake.waitFor(() => botPosts(fake, INC_APPS).length === 1, 'the other alert reposted');
  await settle(bot);
  assert.equal(bot.ims.state.incidentBySource(ALERTS, silenced.ts), undefined);
  await incidentOf(fake, bot, other);
  assert.match(await ask(fake, bot, HUMAN, 'silences'), /\/payment api\/i until .* — 1 alert silenced/);
});

test('a silence by incident label takes every alert of that label and none of another', async (t) => {
  const { fake, bot } = await begin(t);
  silenceIdIn(await ask(fake, bot, HUMAN, 'silence APPS 30m'));
  const apps = postAlert(fake, 'payment api error rate 12%');
  const infra = postNagios(fake, 'PROBLEM', 'web-03', 'HTTP');
  await fake.waitFor(() => seen(fake, apps), 'the APPS alert marked seen');
  await fake.waitFor(() => botPosts(fake, INC_INFRA).length === 1, 'the INFRA alert reposted');
  await settle(bot);
  assert.equal(botPosts(fake, INC_APPS).length, 0);
  await incidentOf(fake, bot, infra);
  assert.match(await ask(fake, bot, HUMAN, 'silences'), /label APPS until .* — 1 alert silenced/);
});

test('a silence by correlation key takes that alert only: not reposted, not paged, while another alert of the same rule pages', async (t) => {
  const { fake, bot } = await begin(t);
  silenceIdIn(await ask(fake, bot, HUMAN, 'silence nagios:web-03/HTTP 1h'));
  const silenced = postNagios(fake, 'PROBLEM', 'web-03', 'HTTP');
  await fake.waitFor(() => seen(fake, silenced), 'the silenced alert marked seen');
  await settle(bot);
  assert.equal(botPosts(fake, INC_INFRA).length, 0, 'not reposted');
  assert.ok(!paged(fake, ONCALL), 'nobody paged');
  const repeat = postNagios(fake, 'PROBLEM', 'web-03', 'HTTP');
  await fake.waitFor(() => seen(fake, repeat), 'its repeat marked seen');
  const other = postNagios(fake, 'PROBLEM', 'db-01', 'MySQL');
  await fake.waitFor(() => botPosts(fake, INC_INFRA).length === 1, 'the other alert reposted');
  await settle(bot);
  assert.equal((await incidentOf(fake, bot, other)).alertKey, 'nagios:db-01/MySQL');
  assert.ok(paged(fake, ONCALL), 'the other alert pages');
  assert.match(await ask(fake, bot, HUMAN, 'silences'), /key nagios:web-03\/HTTP until .* — 2 alerts silenced/);
});

test('/ims unsilence ends a silence with one summary listing only the silenced alerts still firing; a second unsilence says it already ended', async (t) => {
  // The sweep that summarises silences runs every 50 ms here: it must not summarise this one again.
  const { fake, bot } = await begin(t, baseConfig(), { silenceSweepMs: 50 });
  const id = silenceIdIn(await ask(fake, bot, HUMAN, 'silence [Critical] 4h db maintenance'));
  const recovers = postNagios(fake, 'PROBLEM', 'web-03', 'HTTP');
  const firing = postNagios(fake, 'PROBLEM', 'db-01', 'MySQL');
  await fake.waitFor(() => seen(fake, recovers) && seen(fake, firing), 'both silenced alerts marked seen');
  const recovery = postNagios(fake, 'RECOVERY', 'web-03', 'HTTP');
  await fake.waitFor(() => seen(fake, recovery), 'the recovery marked seen');
  await settle(bot);
  assert.equal(bot.ims.state.activeSilences(bot.ims.now())[0]?.silenced, 2);

  assert.equal(await ask(fake, bot, HUMAN, `unsilence ${id}`), `:bell: Silence ${id} ended. Its summary is in <#${REPORT}>.`);
  const summaries = () => reportMessages(fake, new RegExp(`^:bell: Silence ${id} `));
  const [summary] = await fake.waitFor(() => summaries().length ? summaries() : undefined, 'the summary');
  const lines = summary.text.split('\n');
  assert.match(lines[0], new RegExp(`^:bell: Silence ${id} \\(rule \\[Critical\\]\\) ended by Hugo Human after 0m: 2 alerts silenced, 1 still firing:$`));
  assert.equal(lines.length, 2, `only the alert still firing is listed: ${summary.text}`);
  assert.ok(lines[1].startsWith(`• <${bot.ims.permalink(ALERTS, firing.ts)}|** PROBLEM Service Alert: db-01/MySQL is CRITICAL **>`), lines[1]);
  assert.ok(!summary.text.includes('web-03'), 'the recovered alert is not listed');

  // Many sweeps later:
  await new Promise((resolve) => setTimeout(resolve, 500));
  await settle(bot);
  assert.equal(summaries().length, 1, 'exactly one summary');
  assert.equal(bot.ims.state.activeSilences(bot.ims.now()).length, 0);
  assert.equal(await ask(fake, bot, HUMAN, `unsilence ${id}`), `Silence ${id} already ended (ended by <@${HUMAN}>).`);
  const after = postNagios(fake, 'PROBLEM', 'app-07', 'Disk');
  await fake.waitFor(() => botPosts(fake, INC_INFRA).length === 1, 'alerts are reposted again');
  await incidentOf(fake, bot, after);
  await settle(bot);
  assert.equal(summaries().length, 1, 'still exactly one summary');
});

test('a silence that expires while IMS is down is summarised after the next start, once, even across another restart', async (t) => {
  let offset = 0;
  const now = () => Date.now() + offset;
  const statePath = path.join(tempDir(), 'ims.db');
  const { fake, start, bot } = await begin(t, baseConfig(), { now, statePath });
  const id = silenceIdIn(await ask(fake, bot, HUMAN, 'silence [Error] 1m short one'));
  const silenced = postAlert(fake, 'payment api error rate 12%');
  await fake.waitFor(() => seen(fake, silenced), 'the silenced alert marked seen');
  await settle(bot);
  await bot.stop();

  offset = 2 * 60_000;
  const summaries = () => reportMessages(fake, new RegExp(`^:bell: Silence ${id} `));
  assert.equal(summaries().length, 0, 'nothing summarised before it expired');
  const second = await start(baseConfig(), { now, statePath, silenceSweepMs: 50 });
  const [summary] = await fake.waitFor(() => summaries().length ? summaries() : undefined, 'the summary after the restart');
  assert.match(summary.text, new RegExp(`^:bell: Silence ${id} \\(rule \\[Error\\]\\) expired after 1m: 1 alert silenced, 1 still firing`));
  assert.ok(summary.text.includes(`<${bot.ims.permalink(ALERTS, silenced.ts)}|payment api error rate 12%>`), summary.text);
  // It no longer silences anything: an alert of the moved clock's time is reposted.
  const after = postAlert(fake, 'orders api error rate 40%', now());
  await fake.waitFor(() => botPosts(fake, INC_APPS).length === 1, 'the next alert reposted');
  await incidentOf(fake, second, after);
  await settle(second, 300);
  await second.stop();

  const third = await start(baseConfig(), { now, statePath, silenceSweepMs: 50 });
  await settle(third, 500);
  assert.equal(summaries().length, 1, 'posted once across restarts');
});

test('silences ended one after another while Slack holds the report channel back are each answered promptly and summarised once', async (t) => {
  // The sweep runs every 20 ms (it must never queue a summary already on its way), the channel takes 4 posts a second.
  const { fake, bot } = await begin(t, baseConfig(), { silenceSweepMs: 20, postsPerSecond: 4, postBurst: 1 });
  const ids: number[] = [];
  for (const what of ['[Error]', '[Critical]', 'INFRA']) ids.push(silenceIdIn(await ask(fake, bot, HUMAN, `silence ${what} 1h deploy`)));
  await settle(bot, 300);
  const lookups = () => fake.callsTo('conversations.history').filter((c) => c.params.channel === REPORT).length;
  const before = lookups();
  fake.rateLimit('chat.postMessage', { count: 1, retryAfterSec: 1, channel: REPORT });
  for (const id of ids) {
    const command = await fake.slash(HUMAN, OPS, `unsilence ${id}`);
    const answer = await fake.waitForResponse(command.response_url!, () => true, 3000);
    assert.match(String(answer.body.text), new RegExp(`^:bell: Silence ${id} ended\\. Its summary is in <#${REPORT}>\\.$`));
  }
  const summaries = () => reportMessages(fake, /^:bell: Silence \d+ /);
  await fake.waitFor(() => summaries().length === ids.length, 'a summary of each');
  await settle(bot, 300);
  assert.deepEqual(summaries().map((m) => Number(/^:bell: Silence (\d+)/.exec(m.text)![1])), ids, 'one summary each, in order');
  assert.ok(lookups() - before <= 2 * ids.length, `the report channel's history was read ${lookups() - before} times for ${ids.length} summaries`);
});

// ───────────────────────────── permissions ─────────────────────────────

test('with admins set, someone else is refused a silence and told why, ephemerally; an admin may; only admins end silences others made', async (t) => {
  const { fake, bot } = await begin(t, baseConfig({ admins: [ONCALL] }));
  const before = snapshot(fake, bot);
  const refused = await ask(fake, bot, HUMAN, 'silence [Error] 1h please');
  assert.equal(refused, ':no_entry: only IMS admins may silence alerts (admins in the config).');
  await settle(bot);
  assert.deepEqual(snapshot(fake, bot), before, 'no silence, no announcement');

  const id = silenceIdIn(await ask(fake, bot, ONCALL, 'silence [Error] 1h deploy'));
  await fake.waitFor(() => reportMessages(fake, new RegExp(`\\(silence ${id}\\)`))[0], 'the announcement');
  assert.equal(await ask(fake, bot, HUMAN, `unsilence ${id}`), ':no_entry: only IMS admins may end silences others made (admins in the config).');
  assert.equal(bot.ims.state.activeSilences(bot.ims.now()).length, 1, 'still in force');
  assert.equal(await ask(fake, bot, ONCALL, `unsilence ${id}`), `:bell: Silence ${id} ended. Its summary is in <#${REPORT}>.`);
});

test('whoever made a silence may end it even after they stop being an admin; others who are not admins may not', async (t) => {
  const statePath = path.join(tempDir(), 'ims.db');
  const { fake, start, bot } = await begin(t, baseConfig({ admins: [ONCALL, HUMAN] }), { statePath });
  const id = silenceIdIn(await ask(fake, bot, HUMAN, 'silence [Error] 1h deploy'));
  await bot.stop();
  // HUMAN is no admin any more: they may not make a silence, but may end the one they made (ims-permissions.ts: `creator`).
  const demoted = await start(baseConfig({ admins: [ONCALL] }), { statePath });
  assert.equal(await ask(fake, demoted, HUMAN, 'silence [Error] 1h again'), ':no_entry: only IMS admins may silence alerts (admins in the config).');
  assert.equal(await ask(fake, demoted, OTHER, `unsilence ${id}`), ':no_entry: only IMS admins may end silences others made (admins in the config).');
  assert.equal(demoted.ims.state.activeSilences(demoted.ims.now()).length, 1);
  assert.equal(await ask(fake, demoted, HUMAN, `unsilence ${id}`), `:bell: Silence ${id} ended. Its summary is in <#${REPORT}>.`);
  assert.equal(demoted.ims.state.activeSilences(demoted.ims.now()).length, 0);
});

// ───────────────────────────── hostile input ─────────────────────────────

test('what people type into /ims never becomes a mention, a channel-wide ping or a link in anything IMS posts or answers', async (t) => {
  const { fake, bot } = await begin(t, baseConfig(), UNPACED);
  // As Slack sends command text: with "escape channels, users and links" on, @channel arrives as <!channel>, a
  // person as <@U…>, a link as <url|text>; without it, what was typed arrives with &, <, > as entities
  // (api.slack.com/reference/surfaces/formatting#escaping) — and a person may type the entities themselves.
  const hostile = '<!channel> @here <https://evil.example|click> <@U0ONCALL01> &lt;!everyone&gt; &amp;lt;!here&amp;gt; @channel';
  const answers: string[] = [];
  const raw = silenceIdIn(await ask(fake, bot, HUMAN, `silence [Error] 1h ${hostile}`));
  answers.push(await ask(fake, bot, HUMAN, `silence "<!channel> @everyone <https://evil.example|x>" 1h ${hostile}`));
  answers.push(await ask(fake, bot, HUMAN, 'silence &lt;!channel&gt; 1h &lt;https://evil.example|click&gt; &lt;@U0ONCALL01&gt;'));
  answers.push(await ask(fake, bot, HUMAN, 'silence /&lt;!here&gt;/i 1h @everyone'));
  answers.push(await ask(fake, bot, HUMAN, '<!channel> <https://evil.example|click>'));
  answers.push(await ask(fake, bot, HUMAN, 'silence [Error] <@U0ONCALL01> <!here>'));
  answers.push(await ask(fake, bot, HUMAN, 'unsilence <!channel>'));
  answers.push(await ask(fake, bot, HUMAN, `test <!channel> error <https://evil.example|click> <@U0ONCALL01>`));
  answers.push(await ask(fake, bot, HUMAN, 'silences'));
  const silenced = postAlert(fake, 'payment api error rate 12%');
  await fake.waitFor(() => seen(fake, silenced), 'the silenced alert marked seen');
  for (const silence of bot.ims.state.activeSilences(bot.ims.now())) answers.push(await ask(fake, bot, HUMAN, `unsilence ${silence.id}`));
  await fake.waitFor(() => reportMessages(fake, /^:bell: Silence /).length === 4, 'the four summaries');
  await settle(bot);
  assert.equal(bot.ims.state.activeSilences(bot.ims.now()).length, 0);
  assert.ok(reportMessages(fake, new RegExp(`\\(silence ${raw}\\)`)).length === 1, 'the announcement was posted');

  const posted = everythingPosted(fake);
  assert.ok(posted.length >= 8, 'announcements and summaries were posted');
  for (const [where, strings] of [['posted', posted.flatMap((m) => allStrings(m))], ['answered', answers]] as const) {
    const shown = strings.join('\n');
    for (const live of ['<!channel>', '<!here>', '<!everyone>', '<https://evil.example', '<@U0ONCALL01']) {
      assert.ok(!shown.includes(live), `${where}: no live ${live} in ${shown}`);
    }
    // inertText breaks a bare @here with a word joiner (U+2060): only those broken up may remain.
    assert.ok(!/@(here|channel|everyone)\b/i.test(shown.replace(/@\u2060/g, '')), `${where}: a bare @here/@channel/@everyone is broken up`);
  }
  // Inert, not lost: what was typed is still shown, as text.
  const reasons = reportMessages(fake, new RegExp(`\\(silence ${raw}\\)`))[0].text;
  assert.ok(unescapeSlack(reasons).includes('<!channel>') && unescapeSlack(reasons).includes('<https://evil.example|click>'), reasons);
});

// ───────────────────────────── test and report ─────────────────────────────

test('/ims test answers with what --test prints for that alert text', async (t) => {
  const fixed = Date.now();
  const { fake, bot } = await begin(t, baseConfig(), { now: () => fixed });
  for (const typed of ['PROBLEM db-01 is CRITICAL <b>&', 'nightly backup finished', 'all fine here']) {
    // Slack sends the text entity-escaped; IMS reads it as typed.
    const answer = await ask(fake, bot, HUMAN, `test ${typed.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')}`);
    assert.ok(answer.startsWith('```') && answer.endsWith('```'), answer);
    assert.equal(unescapeSlack(answer.slice(3, -3)), describeTest(bot.ims.config, typed, fixed));
  }
  assert.match(await ask(fake, bot, HUMAN, 'test PROBLEM db-01 is CRITICAL'), /this message include rule \(2\)!/);
  assert.match(await ask(fake, bot, HUMAN, 'test'), /^Usage: `\/ims test <alert text>`/);
});

test('/ims report posts a report in the report channel now', async (t) => {
  const { fake, bot } = await begin(t);
  postAlert(fake, 'payment api error rate 12%');
  await fake.waitFor(() => botPosts(fake, INC_APPS).length === 1, 'the incident post');
  const reports = () => fake.messagesIn(REPORT).filter((m) => m.metadata?.event_type === 'ims_report');
  assert.equal(reports().length, 0, 'no report before');
  assert.equal(await ask(fake, bot, HUMAN, 'report'), 'Report posted in <#C0REPORT01>.');
  assert.equal(reports().length, 1);
  assert.match(allStrings(reports()[0]).join('\n'), /payment api error rate 12%/);
});

// ───────────────────────────── maintenance windows ─────────────────────────────

test('maintenance windows open now silence matching alerts and are listed in force; windows not open do not silence', async (t) => {
  const now = Date.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  const farHour = (new Date(now).getUTCHours() + 12) % 24;
  const config = baseConfig({
    maintenance: [
      { name: 'api deploy', match: '[Error]', from: iso(now - 10 * 60_000), to: iso(now + 50 * 60_000), reason: 'rolling deploy' },
      { name: 'hourly sync', match: '/web-0\\d/', schedule: '0 * * * *', duration: '2h' },
      { name: 'db upgrade', match: '/db-01/', from: iso(now + 24 * 3600_000), to: iso(now + 26 * 3600_000) },
      { name: 'nightly', match: '/db-02/', schedule: `0 ${farHour} * * *`, duration: '1h' },
    ],
  });
  const { fake, bot } = await begin(t, config);
  const error = postAlert(fake, 'payment api error rate 12%');
  const web = postNagios(fake, 'PROBLEM', 'web-03', 'HTTP');
  await fake.waitFor(() => seen(fake, error) && seen(fake, web), 'the alerts the open windows take, marked seen');
  const db1 = postNagios(fake, 'PROBLEM', 'db-01', 'MySQL');
  const db2 = postNagios(fake, 'PROBLEM', 'db-02', 'MySQL');
  await fake.waitFor(() => botPosts(fake, INC_INFRA).length === 2, 'the alerts of windows not open, reposted');
  await settle(bot);
  assert.equal(botPosts(fake, INC_APPS).length, 0);
  assert.equal(bot.ims.state.incidentBySource(ALERTS, error.ts), undefined);
  assert.equal(bot.ims.state.incidentBySource(ALERTS, web.ts), undefined);
  await incidentOf(fake, bot, db1);
  await incidentOf(fake, bot, db2);

  const list = await ask(fake, bot, HUMAN, 'silences');
  const [inForce, toCome = ''] = list.split('*Maintenance windows to come*');
  assert.match(inForce, /^\*2 silences in force\*/);
  assert.match(inForce, /rule \[Error\] until .*, by maintenance window api deploy: rolling deploy — 1 alert silenced/);
  assert.match(inForce, /\/web-0\\d\/ until .*, by maintenance window hourly sync — 1 alert silenced/);
  assert.ok(!inForce.includes('db upgrade') && !inForce.includes('nightly'), `windows not open are not in force: ${inForce}`);
  assert.match(toCome, /• db upgrade: \/db-01\//);
  assert.match(toCome, /• nightly: \/db-02\//);
});

/**
 * Storms under Slack's posting limit: a real IMS against the fake Slack enforcing about one post per second per
 * channel with bursts of 3, as Slack does for chat.postMessage. IMS keeps to that pace instead of provoking
 * 429s, and while a channel has a backlog the waiting alerts go out together as digest posts: every alert is
 * listed once, soon, and stays its own incident (recoveries, reactions, the report, posting once).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildReport, type Incident } from '../ims.ts';
import { digestMessage, digestSize, digestWithStates, type DigestMember } from '../ims-digests.ts';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_INFRA, NAGIOS, ONCALL, allStrings, baseConfig, guardSocketModeShutdownBug, settle, setup, tempDir, textObjects } from './harness.ts';

guardSocketModeShutdownBug();

/** Slack's posting limit for chat.postMessage, as the fake enforces it. */
const SLACK_LIMIT = { postRateLimit: { perSecond: 1, burst: 3 } };
/** IMS's own pace, its defaults, named: a harness that speeds other suites up does not change what is tested here. */
const PACE = { postsPerSecond: 1, postBurst: 3 };

/** Nagios Core's default service notification, as its Slack relays post it. */
function nagios(kind: 'PROBLEM' | 'RECOVERY', host: string): string {
  const state = kind === 'PROBLEM' ? 'CRITICAL' : 'OK';
  return `** ${kind} Service Alert: ${host}/HTTP is ${state} **\nNotification Type: ${kind}\nHost: ${host}\nService: HTTP\nState: ${state}\nInfo: check output`;
}
const alert = (fake: FakeSlack, host: string, kind: 'PROBLEM' | 'RECOVERY' = 'PROBLEM') =>
  fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text: nagios(kind, host) });

const topLevel = (fake: FakeSlack, channel: string) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId && (!m.thread_ts || m.thread_ts === m.ts));
const isDigest = (m: FakeMessage) => m.metadata?.event_type === 'ims_digest';
const ms = (ts: string) => Number(ts) * 1000;
const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis));

/** The alerts a post shows, by their ts: every link to an original alert in its blocks (what a reader sees, not its metadata). */
function shown(post: FakeMessage): string[] {
  return [...allStrings(post.blocks).join('\n').matchAll(/\/archives\/C\w+\/p(\d+)(\d{6})\b/g)].map((m) => `${m[1]}.${m[2]}`);
}

/** For each alert ts, the top-level posts of `channel` that show it. */
function postsShowing(fake: FakeSlack, channel: string): Map<string, FakeMessage[]> {
  const byAlert = new Map<string, FakeMessage[]>();
  for (const post of topLevel(fake, channel)) for (const ts of new Set(shown(post))) byAlert.set(ts, [...(byAlert.get(ts) ?? []), post]);
  return byAlert;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const mentionsIn = (text: string) => text.split(`<@${ONCALL}>`).length - 1;

test('600 alerts in 30 s into one channel under Slack\'s limit: each listed once within seconds, few 429s, every alert its own incident', async (t) => {
  const { fake, start } = await setup(t, SLACK_LIMIT);
  const bot = await start(baseConfig(), PACE);
  const alerts: FakeMessage[] = [];
  const started = Date.now();
  for (let i = 0; i < 600; i++) {
    alerts.push(alert(fake, `web-${String(i).padStart(3, '0')}`));
    await sleep(Math.max(0, started + (i + 1) * 50 - Date.now()));
  }
  await fake.waitFor(() => postsShowing(fake, INC_INFRA).size >= 600 && bot.ims.state.listIncidents().length >= 600, 'every alert shown and recorded', 30_000);
  await settle(bot);

  const showing = postsShowing(fake, INC_INFRA);
  const visibleAfter = alerts.map((a) => {
    const posts = showing.get(a.ts) ?? [];
    assert.equal(posts.length, 1, `alert ${a.ts} is shown once (in ${posts.length} posts)`);
    return ms(posts[0].ts) - ms(a.ts);
  });
  const sorted = [...visibleAfter].sort((a, b) => a - b);
  const posts = topLevel(fake, INC_INFRA);
  const digests = posts.filter(isDigest);
  t.diagnostic(`first alert visible after ${(visibleAfter[0] / 1000).toFixed(2)} s; p50 ${(percentile(sorted, 50) / 1000).toFixed(2)} s, p99 ${(percentile(sorted, 99) / 1000).toFixed(2)} s, `
    + `max ${(sorted.at(-1)! / 1000).toFixed(2)} s; ${fake.postRateLimited} 429s provoked; ${posts.length} posts (${digests.length} digests) in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  assert.ok(visibleAfter[0] < 1000, `the first alert is visible within 1 s (${visibleAfter[0]} ms)`);
  assert.ok(percentile(sorted, 99) <= 5000, `every alert is visible within 5 s of arriving at p99 (${percentile(sorted, 99)} ms)`);
  assert.ok(fake.postRateLimited <= 5, `at most a handful of 429s provoked (${fake.postRateLimited})`);
  assert.ok(digests.length >= 20 && posts.length <= 45, `the storm goes out as digests at Slack's pace (${posts.length} posts, ${digests.length} digests)`);

  // Each alert is an incident of its own, recorded with the post that shows it; nothing is left pending.
  const incidents = bot.ims.state.listIncidents();
  assert.equal(incidents.length, 600);
  for (const incident of incidents) assert.equal(incident.incidentTs, showing.get(incident.sourceTs)![0].ts, `incident #${incident.id} is recorded with the post that shows it`);
  assert.deepEqual(bot.ims.state.pendingMessages(), []);

  // A digest pages each hotline involved once, however many of its alerts are hotline alerts.
  for (const digest of digests) {
    assert.equal(mentionsIn(allStrings(digest.blocks).join('\n')), 1, 'the hotline is mentioned once in the digest');
    assert.equal(mentionsIn(digest.text), 1, 'and once in its notification text');
    assert.ok(digest.blocks!.length <= 50 && textObjects(digest.blocks).every((o) => o.text.length <= 3000), "within Slack's block limits");
    assert.ok(textObjects(digest.blocks).reduce((n, o) => n + o.text.length, 0) <= 40_000, "within Slack's message size");
  }
});

test('a recovery edits the digest to show its alert resolved; a resolved reaction on a digest resolves every incident it lists; the report lists each', async (t) => {
  const { fake, start } = await setup(t, SLACK_LIMIT);
  const bot = await start(baseConfig(), PACE);
  const alerts = Array.from({ length: 12 }, (_, i) => alert(fake, `db-${i}`));
  await fake.waitFor(() => bot.ims.state.listIncidents().length === 12, 'twelve incidents', 10_000);
  await settle(bot);
  const digest = topLevel(fake, INC_INFRA).find(isDigest);
  assert.ok(digest, 'the alerts waiting for the channel went out as a digest');
  const members = bot.ims.state.incidentsByPost(INC_INFRA, digest.ts);
  assert.ok(members.length >= 2, `the digest lists several incidents (${members.length})`);
  assert.deepEqual(new Set(shown(digest)), new Set(members.map((m) => m.sourceTs)), 'it shows exactly the incidents recorded with it');

  // The report lists every incident on its own line, each linked to the post that shows it: the digest for its members.
  const report = await buildReport(bot.ims);
  assert.equal(report.open.length, 12);
  const digestLink = bot.ims.permalink(INC_INFRA, digest.ts);
  assert.deepEqual(report.open.filter((item) => item.permalink === digestLink).map((item) => item.incident?.id).sort(), members.map((m) => m.id).sort());

  // One of them recovers: its incident is resolved and the digest, edited in place, says so; the others stay open.
  const recovered = members[1];
  const host = /db-\d+/.exec(recovered.text)![0];
  const postsBefore = topLevel(fake, INC_INFRA).length;
  alert(fake, host, 'RECOVERY');
  await fake.waitFor(() => bot.ims.state.incidentById(recovered.id)?.resolvedAt, 'the recovery resolves its incident', 10_000);
  await settle(bot);
  const lines = allStrings(digest.blocks).join('\n').split('\n');
  const lineOf = (incident: Incident) => lines.find((l) => l.includes(`/p${incident.sourceTs.replace('.', '')}`)) ?? '';
  assert.match(lineOf(recovered), /^:white_check_mark: .*resolved after/, 'the digest shows the recovered alert resolved');
  for (const other of members.filter((m) => m.id !== recovered.id)) assert.match(lineOf(other), /^• /, 'and the others still open');
  assert.ok(fake.callsTo('chat.update').some((c) => c.params.ts === digest.ts && c.status === 200), 'by an edit of the digest');
  assert.equal(topLevel(fake, INC_INFRA).length, postsBefore, 'the recovery posts nothing new');
  assert.deepEqual(new Set([...postsShowing(fake, INC_INFRA).keys()]), new Set(alerts.map((a) => a.ts)), 'every alert shown');

  // A person's resolved reaction on the digest resolves every incident it lists, and only those.
  fake.react(INC_INFRA, digest.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => members.every((m) => bot.ims.state.incidentById(m.id)?.resolvedAt), 'every listed incident resolved', 10_000);
  await settle(bot);
  for (const m of members.filter((m) => m.id !== recovered.id)) assert.equal(bot.ims.state.incidentById(m.id)?.resolvedBy, HUMAN);
  const others = bot.ims.state.listIncidents().filter((i) => i.incidentTs !== digest.ts);
  assert.ok(others.every((i) => i.resolvedAt === undefined), 'incidents posted elsewhere stay open');
  assert.equal(fake.postRateLimited, 0, 'no 429 provoked');
});

test('a digest carries Acknowledge all and Resolve all, which act on every incident it lists and leave once they are resolved', async (t) => {
  const { fake, start } = await setup(t, SLACK_LIMIT);
  const bot = await start(baseConfig(), PACE);
  for (let i = 0; i < 12; i++) alert(fake, `web-${i}`);
  await fake.waitFor(() => bot.ims.state.listIncidents().length === 12, 'twelve incidents', 10_000);
  await settle(bot);
  const digest = topLevel(fake, INC_INFRA).find(isDigest)!;
  assert.ok(digest, 'a digest');
  const members = bot.ims.state.incidentsByPost(INC_INFRA, digest.ts);
  const buttons = () => (digest.blocks ?? []).filter((b: any) => b.type === 'actions').flatMap((b: any) => b.elements.map((e: any) => e.text.text));
  assert.deepEqual(buttons(), ['Acknowledge all', 'Resolve all']);
  await fake.click(HUMAN, INC_INFRA, digest.ts, 'Acknowledge all');
  await fake.waitFor(() => members.every((m) => bot.ims.state.incidentById(m.id)?.acknowledgedBy === HUMAN), 'every listed incident acknowledged', 5000);
  const others = bot.ims.state.listIncidents().filter((i) => i.incidentTs !== digest.ts);
  assert.ok(others.every((i) => i.acknowledgedAt === undefined), 'incidents posted elsewhere are not acknowledged');
  await fake.click(HUMAN, INC_INFRA, digest.ts, 'Resolve all');
  await fake.waitFor(() => members.every((m) => bot.ims.state.incidentById(m.id)?.resolvedBy === HUMAN), 'every listed incident resolved', 5000);
  await fake.waitFor(() => buttons().length === 0, 'the buttons to go once every listed incident is resolved', 10_000);
  assert.equal(fake.postRateLimited, 0, 'no 429 provoked');
});

test('alerts that come no faster than Slack\'s limit allows each get their own post, as before, with no 429', async (t) => {
  const { fake, start } = await setup(t, SLACK_LIMIT);
  const bot = await start(baseConfig(), PACE);
  for (let i = 0; i < 3; i++) alert(fake, `app-${i}`);
  await fake.waitFor(() => bot.ims.state.listIncidents().length === 3, 'the burst of three', 5000);
  await sleep(1200);
  alert(fake, 'app-3');
  await fake.waitFor(() => bot.ims.state.listIncidents().length === 4, 'the fourth', 5000);
  await settle(bot);
  const posts = topLevel(fake, INC_INFRA);
  assert.equal(posts.length, 4, 'one post per incident');
  assert.ok(posts.every((p) => p.metadata?.event_type === 'ims_incident' && shown(p).length === 1), 'each an incident post of its own');
  assert.equal(new Set(bot.ims.state.listIncidents().map((i) => i.incidentTs)).size, 4);
  assert.equal(fake.postRateLimited, 0);
  assert.equal(fake.callsTo('chat.postMessage').filter((c) => c.status === 429).length, 0);
});

test('a digest whose answer is lost is posted once; members of a digest that failed are found in it after a restart, never posted again', async (t) => {
  const { fake, start } = await setup(t, SLACK_LIMIT);
  const statePath = `${tempDir()}/ims.db`;
  // A burst of one: the warm-up alert takes the channel's turn, so the next ones wait together for a digest.
  const pace = { postsPerSecond: 1, postBurst: 1, statePath };

  // 1. The answer to the digest is lost after Slack made it: IMS looks for it by its metadata, finds it, posts nothing again.
  const bot = await start(baseConfig(), pace);
  alert(fake, 'warm-up');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 1, 'the warm-up post', 5000);
  fake.loseAnswers('chat.postMessage', 1, { channel: INC_INFRA });
  const lost = Array.from({ length: 6 }, (_, i) => alert(fake, `cache-${i}`));
  await fake.waitFor(() => lost.every((a) => bot.ims.state.incidentBySource(ALERTS, a.ts)), 'the six incidents', 10_000);
  await settle(bot, 300);
  const firstDigest = topLevel(fake, INC_INFRA).filter(isDigest);
  assert.equal(firstDigest.length, 1, 'one digest');
  assert.deepEqual(fake.callsTo('chat.postMessage').filter((c) => c.params.channel === INC_INFRA).map((c) => c.status), [200, 0], 'one attempt of the digest, whose answer was lost');
  assert.ok(lost.every((a) => bot.ims.state.incidentBySource(ALERTS, a.ts)?.incidentTs === firstDigest[0].ts), 'every member recorded with the digest Slack made');
  assert.ok(bot.logs.some((l) => /digest of 6 incidents .*already posted/.test(l)), 'it looked for the digest before trying again');
  await bot.stop();

  // 2. The digest is made but its answer never comes back and IMS gives up: its members stay pending. The next
  // start finds each of them in the digest (by the digest's metadata), records them with it and posts nothing.
  const failing = await start(baseConfig(), { ...pace, retryConfig: { retries: 0, minTimeout: 10, maxTimeout: 50 } });
  await sleep(1100);
  alert(fake, 'warm-up-2');
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 3, 'the second warm-up post', 5000);
  fake.loseAnswers('chat.postMessage', 1, { channel: INC_INFRA });
  const pending = Array.from({ length: 5 }, (_, i) => alert(fake, `queue-${i}`));
  await fake.waitFor(() => topLevel(fake, INC_INFRA).length === 4 && failing.logs.some((l) => /failed to handle/.test(l)), 'the failed digest', 10_000);
  await settle(failing, 300);
  assert.equal(failing.ims.state.pendingMessages().length, 5, 'its members stay pending');
  await failing.stop();
  const digest = topLevel(fake, INC_INFRA).at(-1)!;
  assert.ok(isDigest(digest));

  const next = await start(baseConfig(), pace);
  await settle(next, 300);
  assert.deepEqual(next.ims.state.pendingMessages(), [], 'every member finished');
  assert.equal(topLevel(fake, INC_INFRA).length, 4, 'nothing posted again');
  assert.ok(pending.every((a) => next.ims.state.incidentBySource(ALERTS, a.ts)?.incidentTs === digest.ts), 'each recorded with the digest');
  assert.equal(next.ims.state.incidentsByPost(INC_INFRA, digest.ts).length, 5);

  // The digest found in Slack is edited as any other: a recovery shows its alert resolved.
  alert(fake, 'queue-2', 'RECOVERY');
  const member = next.ims.state.incidentBySource(ALERTS, pending[2].ts)!;
  await fake.waitFor(() => next.ims.state.incidentById(member.id)?.resolvedAt, 'the recovery', 10_000);
  await settle(next);
  const line = allStrings(digest.blocks).join('\n').split('\n').find((l) => l.includes(`/p${member.sourceTs.replace('.', '')}`)) ?? '';
  assert.match(line, /^:white_check_mark: .*resolved after/);
});

test("the fake enforces Slack's posting limit per channel as Slack answers it: 429 ratelimited with Retry-After in seconds", async (t) => {
  const { fake } = await setup(t, SLACK_LIMIT);
  const call = async (method: string, params: Record<string, string>) => {
    const response = await fetch(`${fake.apiUrl}${method}`, { method: 'POST', headers: { authorization: 'Bearer xoxb-test', 'content-type': 'application/json' }, body: JSON.stringify(params) });
    return { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.json() as { ok: boolean; error?: string; ts?: string } };
  };
  const answers = [];
  for (let i = 0; i < 5; i++) answers.push(await call('chat.postMessage', { channel: INC_INFRA, text: `post ${i}` }));
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 429, 429], 'a burst of 3, then the limit');
  assert.deepEqual(answers[3].body, { ok: false, error: 'ratelimited' });
  assert.equal(answers[3].retryAfter, '1');
  assert.equal(fake.messagesIn(INC_INFRA).length, 3, 'a refused post is not made');
  assert.equal((await call('chat.postMessage', { channel: ALERTS, text: 'elsewhere' })).status, 200, 'per channel');
  assert.equal((await call('chat.update', { channel: INC_INFRA, ts: answers[0].body.ts!, text: 'edited' })).status, 200, 'edits have a limit of their own');
  await sleep(1000);
  assert.equal((await call('chat.postMessage', { channel: INC_INFRA, text: 'a second later' })).status, 200, 'a post a second');
  assert.equal(fake.postRateLimited, 2);
});

test('without its pace, IMS provokes 429s under the same limit and still posts every alert once (a 429 works as before)', async (t) => {
  const { fake, start } = await setup(t, SLACK_LIMIT);
  const bot = await start(baseConfig(), { postsPerSecond: 1000, postBurst: 1000 });
  const alerts = Array.from({ length: 6 }, (_, i) => alert(fake, `lb-${i}`));
  await fake.waitFor(() => bot.ims.state.listIncidents().length === 6, 'the six incidents', 15_000);
  await settle(bot);
  assert.ok(fake.postRateLimited >= 1, `429s provoked (${fake.postRateLimited})`);
  const showing = postsShowing(fake, INC_INFRA);
  assert.ok(alerts.every((a) => showing.get(a.ts)?.length === 1), 'every alert shown once');
  assert.deepEqual(bot.ims.state.pendingMessages(), []);
});

test("a digest stays within Slack's limits (50 blocks, 3,000 characters a section, 40,000 a message) however long its alerts, once edited too", () => {
  const members: DigestMember[] = Array.from({ length: 400 }, (_, i) => ({
    sourceChannel: ALERTS, sourceTs: `1700000000.${String(i).padStart(6, '0')}`, head: `[${'Very long head & <more> '.repeat(10)}]`,
    title: `${'disk & memory <!here> pressure '.repeat(20)}${i}`, permalink: `https://fake.slack.com/archives/${ALERTS}/p1700000000${String(i).padStart(6, '0')}`,
    hotline: i % 2 ? 'OnCall' : 'DBA', mentions: i % 2 ? [`<@${ONCALL}>`, '<!here>'] : ['<@U0DBA0001>'],
  }));
  let rest = members;
  let digests = 0;
  while (rest.length) {
    const size = digestSize(rest);
    const post = digestMessage(rest.slice(0, size));
    const sources = rest.slice(0, size);
    rest = rest.slice(size);
    digests++;
    const resolved = sources.map((m, i) => ({
      id: i, sourceChannel: m.sourceChannel, sourceTs: m.sourceTs, incidentChannel: INC_INFRA, incidentTs: '1700000001.000000', ruleNumber: 2, head: m.head,
      label: 'INFRA', text: m.title, poster: NAGIOS, createdAt: 0, resolvedAt: 7_500_000 + i, groups: {}, repeats: 1234, flapping: true,
    } as Incident));
    for (const message of [post, digestWithStates(post, resolved)]) {
      assert.ok(message.blocks.length <= 50, `${message.blocks.length} blocks`);
      for (const o of textObjects(message.blocks)) assert.ok(o.text.length <= 3000, `a section of ${o.text.length} characters`);
      assert.ok(textObjects(message.blocks).reduce((n, o) => n + o.text.length, 0) <= 40_000, 'a message of at most 40,000 characters');
      assert.equal(new Set(allStrings(message.blocks).join('\n').match(/p1700000000\d{6}/g)).size, size, 'every member listed');
      assert.doesNotMatch(allStrings(message.blocks).join('\n'), /<!here> pressure/, "an alert's text never mentions anyone");
    }
    assert.equal(mentionsIn(allStrings(post.blocks).join('\n')), 1, 'each hotline mentioned once');
    assert.equal((allStrings(post.blocks).join('\n').match(/<@U0DBA0001>/g) ?? []).length, 1);
  }
  assert.ok(digests >= 4, `400 long alerts need several digests (${digests})`);
});

/**
 * Reposts an on-call engineer can act on from a phone: the alert's links stay clickable while mentions stay
 * inert, the poster is named, a long alert shows its head and first lines with the rest in the thread, and
 * nothing (section, report line) cuts an entity, a link or an emoji in half.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { definePlugin, escapeSlack, messageText, runReport, splitText } from '../ims.ts';
import type { FakeMessage } from './fake-slack.ts';
import {
  ALERTS, ALERTS2, HUMAN, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT, allStrings, baseConfig, guardSocketModeShutdownBug, settle, setup, textObjects,
  unescapeSlack, UNPACED } from './harness.ts';

guardSocketModeShutdownBug();

const topLevel = (messages: FakeMessage[]) => messages.filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts);
const replies = (messages: FakeMessage[], post: FakeMessage) => messages.filter((m) => m.thread_ts === post.ts && m.ts !== post.ts);
const permalinkOf = (channel: string, ts: string) => `https://fake.slack.com/archives/${channel}/p${ts.replace('.', '')}`;

/** Every `<…>` control sequence in a string. */
const sequences = (s: string) => s.match(/<[^<>]*>/g) ?? [];

/** True when every `&` starts a whole entity and no `<…>` sequence is open at either end. */
function whole(text: string): boolean {
  const entitiesWhole = !text.replace(/&(?:amp|lt|gt);/g, '').includes('&') && !/^(?:amp|lt|gt)?;/.test(text);
  let open = false;
  for (const c of text) {
    if (c === '<') { if (open) return false; open = true; }
    if (c === '>') { if (!open) return false; open = false; }
  }
  return entitiesWhole && !open;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The alert's own verbatim text as the incident post shows it (the label stripped). */
function alertSection(post: FakeMessage): string {
  const sections = textObjects(post.blocks).filter((o) => o.verbatim && /^\*\[/.test(o.text));
  assert.ok(sections.length >= 1, 'the post has the alert section');
  return sections.map((o) => o.text).join('');
}

// ─── Links ────────────────────────────────────────────────────────────────────────────────────

test("an alert's links stay clickable in the repost while its mentions and special commands stay text", async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  // As Slack sends a bot's mrkdwn: links as <url|label>, `&` in a URL as &amp;, literal `<` as &lt;.
  const alert = fake.post(ALERTS, {
    bot_id: NAGIOS,
    text: 'ERROR checkout is down. Runbook: <https://wiki.example.com/run?svc=checkout&amp;step=2|Runbook> · <https://grafana.example.com/d/1> · '
      + '<mailto:oncall@example.com|mail the on-call> · status: https://status.example.com/incidents/42. (see https://ex.example.com/a_(b))\n'
      + '<!here> <!channel> <!everyone> <@U0VICTIM1> <@U0VICTIM2|boss> <!subteam^S0TEAM001|@team> <#C0SECRET1|secret> <#C0SECRET2> <!date^1392734382^{date}|Feb 18>',
  });
  const post = await fake.waitFor(() => fake.messagesIn(INC_APPS)[0], 'the repost');
  await settle(bot);
  const section = alertSection(post);
  for (const link of [
    '<https://wiki.example.com/run?svc=checkout&amp;step=2|Runbook>', '<https://grafana.example.com/d/1>', '<mailto:oncall@example.com|mail the on-call>',
    '<https://status.example.com/incidents/42>.', '<https://ex.example.com/a_(b)>)',
  ]) assert.ok(section.includes(link), `${link} in ${section}`);
  const allowed = new Set(['<https://wiki.example.com/run?svc=checkout&amp;step=2|Runbook>', '<https://grafana.example.com/d/1>', '<mailto:oncall@example.com|mail the on-call>',
    '<https://status.example.com/incidents/42>', '<https://ex.example.com/a_(b)>', `<#${ALERTS}>`, `<${permalinkOf(ALERTS, alert.ts)}|original alert>`]);
  for (const s of allStrings({ text: post.text, blocks: post.blocks })) {
    for (const sequence of sequences(s)) assert.ok(allowed.has(sequence), `only links and IMS's own sequences, found ${sequence} in ${JSON.stringify(s)}`);
  }
  // The reader sees the mentions as the alert wrote them, as text.
  assert.ok(unescapeSlack(section).includes('<!here> <!channel> <!everyone> <@U0VICTIM1> <@U0VICTIM2|boss> <!subteam^S0TEAM001|@team> <#C0SECRET1|secret>'));
  // The rules still read the text as before: the link markup, not only the labels.
  assert.ok(bot.ims.state.listIncidents()[0].text.includes('<https://wiki.example.com/run?svc=checkout&step=2|Runbook>'));
});

test('a link label cannot smuggle a mention, and only http(s) and mailto targets become links', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  fake.post(ALERTS, {
    bot_id: NAGIOS,
    text: 'ERROR <https://a.example.com|&lt;!here&gt; click> <https://b.example.com|x <!channel>> <https://c.example.com|*bold* &amp; <@U0VICTIM1>> '
      + '<javascript:alert(1)|Runbook> <slack://open?team=T1|open> <ftp://files.example.com|files> <file:///etc/passwd|passwd> <https://|empty>',
  });
  // An attachment's title_link and a rich-text link are only links when their target is http(s).
  fake.post(ALERTS, { bot_id: NAGIOS, text: '', attachments: [{ title: 'ERROR <!here> in title', title_link: 'javascript:alert(1)', text: 'details' }] });
  fake.post(ALERTS, { bot_id: NAGIOS, text: '', blocks: [{ type: 'rich_text', elements: [{ type: 'rich_text_section', elements: [
    { type: 'text', text: 'ERROR see ' }, { type: 'link', url: 'https://d.example.com/x?a=1&b=<2>|3', text: '<!channel> runbook' }, { type: 'text', text: ' and ' },
    { type: 'link', url: 'vbscript:x', text: 'this' },
  ] }] }] });
  const posts = await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 3 && fake.messagesIn(INC_APPS), 'three reposts');
  await settle(bot);
  const strings = posts.flatMap((post) => allStrings({ text: post.text, blocks: post.blocks }));
  const links = strings.flatMap(sequences).filter((s) => !s.startsWith('<#') && !s.includes('|original alert>'));
  // A sequence that is not a link is text; a URL in that text is still a link, to its host only.
  assert.deepEqual(links.sort(), [
    '<https://a.example.com|&lt;!here&gt; click>',
    '<https://b.example.com>',
    '<https://c.example.com>',
    '<https://d.example.com/x?a=1&amp;b=%3C2%3E%7C3|&lt;!channel&gt; runbook>',
  ]);
  for (const s of strings) for (const mention of ['<!here>', '<!channel>', '<@U0VICTIM1>', '<javascript:', '<slack:', '<ftp:', '<file:', '<vbscript:']) {
    assert.ok(!s.includes(mention), `${mention} reached Slack in ${JSON.stringify(s)}`);
  }
  // What was not made a link is shown as written.
  const shown = posts.map((post) => unescapeSlack(alertSection(post))).join('\n');
  for (const text of ['|x <!channel>>', '|*bold* & <@U0VICTIM1>>', '<javascript:alert(1)|Runbook>', '<slack://open?team=T1|open>', '<ftp://files.example.com|files>', '<https://|empty>', 'ERROR <!here> in title', ' and this']) {
    assert.ok(shown.includes(text), `${text} shown in ${shown}`);
  }
});

test("an attachment's title_link becomes the title's link, and the links in its text, fields and blocks stay clickable", async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig({ rules: [{ match: '^Triggered: \\[P2\\] Kafka', head: '[Datadog]', incident: 'APPS' }, { match: 'CloudWatch', head: '[AWS]', incident: 'INFRA' }] }));
  const monitor = 'https://app.datadoghq.com/monitors/48213644?from_ts=1794788094000&to_ts=1794791694000';
  const attachments = [{
    fallback: 'Triggered: [P2] Kafka consumer lag on events-consumer', title: 'Triggered: [P2] Kafka consumer lag on events-consumer', title_link: monitor,
    text: 'Lag is above 50k.\nRunbook: <https://wiki.example.com/runbooks/events-consumer|events-consumer runbook> · <https://app.datadoghq.com/dashboard/abc?live=true&amp;x=1|Dashboard>',
    fields: [{ title: 'Graph', value: '<https://app.datadoghq.com/graph/1|graph>' }],
  }];
  fake.post(ALERTS2, { bot_id: 'B0DATADOG', text: '', attachments });
  const blocks = [
    { type: 'section', text: { type: 'mrkdwn', text: '*CloudWatch Alarm | alb-5xx-high*' } },
    { type: 'context', elements: [{ type: 'mrkdwn', text: '<https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/alb-5xx-high|View in CloudWatch>' }] },
  ];
  fake.post(ALERTS, { bot_id: 'B0CLOUDW1', text: '', blocks });
  const datadog = await fake.waitFor(() => fake.messagesIn(INC_APPS)[0], 'the Datadog repost');
  const aws = await fake.waitFor(() => fake.messagesIn(INC_INFRA)[0], 'the CloudWatch repost');
  await settle(bot);
  const section = alertSection(datadog);
  assert.ok(section.startsWith(`*[Datadog]* <${escapeSlack(monitor)}|Triggered: [P2] Kafka consumer lag on events-consumer>\n`), section);
  for (const link of ['<https://wiki.example.com/runbooks/events-consumer|events-consumer runbook>', '<https://app.datadoghq.com/dashboard/abc?live=true&amp;x=1|Dashboard>',
    'Graph: <https://app.datadoghq.com/graph/1|graph>']) assert.ok(section.includes(link), `${link} in ${section}`);
  assert.ok(alertSection(aws).includes('<https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/alb-5xx-high|View in CloudWatch>'));
  // The rules read the readable text, as before: the title without its link (the anchored rule matched).
  assert.equal(messageText({ text: '', attachments }).split('\n')[0], 'Triggered: [P2] Kafka consumer lag on events-consumer');
  assert.equal(bot.ims.state.listIncidents().find((i) => i.incidentChannel === INC_APPS)?.text.includes(monitor), false);
});

// ─── The poster ───────────────────────────────────────────────────────────────────────────────

/** The context line of an incident post. */
const contextOf = (post: FakeMessage) => textObjects(post.blocks!.filter((b) => b.type === 'context')).map((o) => o.text).join(' ');

test("the context line names the poster — the integration's name or the person's — looked up once per ID, escaped", async (t) => {
  const { fake, start } = await setup(t);
  fake.addBot({ id: 'B0ZABBIX1', name: 'Zabbix' });
  const bot = await start(baseConfig(), UNPACED);
  const sent = [
    // An incoming webhook posts under its `username`; an app's bot carries `bot_profile`; else bots.info knows it.
    fake.post(ALERTS, { bot_id: NAGIOS, subtype: 'bot_message', username: 'Nagios', text: 'ERROR one' }),
    fake.post(ALERTS, { bot_id: 'B0DATADOG', user: 'U0DATADOG', bot_profile: { id: 'B0DATADOG', name: 'Datadog', app_id: 'A0DATADOG' }, text: 'ERROR two' }),
    fake.post(ALERTS, { bot_id: 'B0ZABBIX1', text: 'ERROR three' }),
    fake.post(ALERTS, { bot_id: 'B0ZABBIX1', text: 'ERROR four' }),
    fake.post(ALERTS, { user: HUMAN, text: 'ERROR five' }),
    fake.post(ALERTS, { user: HUMAN, text: 'ERROR six' }),
    fake.post(ALERTS, { bot_id: 'B0HOOK0001', subtype: 'bot_message', username: '<!channel> *relay*', text: 'ERROR seven' }),
    fake.post(ALERTS, { bot_id: 'B0UNKNOWN1', text: 'ERROR eight' }),
  ];
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= sent.length, 'the reposts', 10_000);
  await settle(bot);
  const contextFor = (alert: FakeMessage) => contextOf(fake.messagesIn(INC_APPS).find((p) => p.metadata?.event_payload?.source_ts === alert.ts)!);
  const expected = ['Nagios', 'Datadog', 'Zabbix', 'Zabbix', 'Hugo Human', 'Hugo Human', '&lt;!channel&gt; *relay*', 'B0UNKNOWN1'];
  sent.forEach((alert, i) => {
    const context = contextFor(alert);
    assert.ok(context.includes(`<#${ALERTS}> · ${expected[i]} · `), `alert ${i + 1} names ${expected[i]}: ${context}`);
  });
  for (const id of [NAGIOS, 'B0DATADOG', 'B0ZABBIX1', HUMAN]) {
    assert.ok(!fake.messagesIn(INC_APPS).some((p) => contextOf(p).includes(id)), `${id} is named, not shown as an ID`);
  }
  assert.equal(fake.callsTo('bots.info').filter((c) => c.params.bot === 'B0ZABBIX1').length, 1, 'bots.info once per bot');
  assert.equal(fake.callsTo('users.info').filter((c) => c.params.user === HUMAN).length, 1, 'users.info once per user');
  assert.equal(fake.callsTo('bots.info').filter((c) => c.params.bot === NAGIOS || c.params.bot === 'B0DATADOG').length, 0, 'a name on the message needs no lookup');
});

// ─── Long alerts ──────────────────────────────────────────────────────────────────────────────

/** A Java stack trace of `frames` lines, with URLs, `&` and `<init>` as real ones have. */
function stackTrace(frames: number): string {
  const lines = ['CRITICAL java.lang.IllegalStateException: pool exhausted & retrying <init> see https://grafana.example.com/d/orders?var=a&from=now-1h'];
  for (let i = 0; i < frames; i++) {
    lines.push(`\tat com.example.orders.Service${i}.<init>(Service${i}.java:${i + 10}) https://git.example.com/orders/blob/main/Service${i}.java?plain=1&line=${i + 10}#L${i + 10}`);
  }
  return lines.join('\n');
}

test('a long alert shows the head, the first lines and the link to the original in the post; the rest goes to its thread', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const original = stackTrace(300);
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: escapeSlack(original) });
  const post = await fake.waitFor(() => topLevel(fake.messagesIn(INC_INFRA))[0], 'the incident post');
  await fake.waitFor(() => replies(fake.messagesIn(INC_INFRA), post).length >= 2, 'the thread', 10_000);
  await settle(bot);
  // The post: the label and the first lines, the context with the link to the original, the page.
  const first = textObjects(post.blocks).filter((o) => o.verbatim && o.text.startsWith('*[Critical]* '));
  assert.equal(first.length, 1, 'one section holds the head of the alert');
  const shownLines = unescapeSlack(first[0].text).split('\n');
  assert.ok(shownLines.length >= 5 && shownLines.length <= 20, `the first lines (${shownLines.length}), not the whole trace`);
  assert.ok(first[0].text.length <= 2000, 'short enough to read on a phone');
  assert.equal(first[0].text.indexOf('*[Critical]* CRITICAL java.lang.IllegalStateException'), 0);
  const context = contextOf(post);
  assert.ok(context.includes(`<${permalinkOf(ALERTS, alert.ts)}|original alert>`), context);
  assert.match(context, /\d+ more lines in the thread/);
  assert.ok(allStrings(post.blocks).join('\n').includes(`<@${ONCALL}>`), 'the page is in the post itself');
  assert.ok(post.blocks!.length <= 5, `a short post (${post.blocks!.length} blocks)`);
  // The thread: the rest, in order; nothing lost or repeated; every message within Slack's limits.
  const thread = replies(fake.messagesIn(INC_INFRA), post);
  const rest = thread.flatMap((m) => textObjects(m.blocks).filter((o) => o.verbatim).map((o) => o.text)).join('');
  const body = first[0].text.slice('*[Critical]* '.length) + rest;
  assert.equal(unescapeSlack(body.replace(/<(https:[^|>]*)>/g, '$1')), original, 'the post and its thread together are the whole alert');
  for (const message of [post, ...thread]) {
    assert.ok(message.blocks!.length <= 50, `${message.blocks!.length} blocks`);
    assert.ok(allStrings(message.blocks).join('').length <= 40_000, 'under 40,000 characters');
    assert.ok(message.text.length > 0 && message.text.length <= 4000, 'a short text fallback');
    for (const o of textObjects(message.blocks)) {
      assert.ok(o.text.length <= 3000, `a section of ${o.text.length}`);
      assert.ok(whole(o.text), `no entity or link cut in two: …${o.text.slice(-40)} | ${o.text.slice(0, 40)}…`);
    }
  }
  assert.equal(topLevel(fake.messagesIn(INC_INFRA)).length, 1, 'one incident post');
});

test('a short alert stays whole in one post, and a one-line giant alert still shows its head first', async (t) => {
  const { fake, start } = await setup(t);
  const bot = await start(baseConfig());
  const short = 'ERROR nightly export failed\nhost: db-01\nexit: 3\nlog: https://logs.example.com/x?id=1&b=2';
  fake.post(ALERTS, { bot_id: NAGIOS, text: escapeSlack(short) });
  const shortPost = await fake.waitFor(() => topLevel(fake.messagesIn(INC_APPS))[0], 'the short repost');
  const blob = `ERROR ${JSON.stringify({ items: Array.from({ length: 1500 }, (_, i) => ({ id: i, url: `https://api.example.com/items/${i}?a=1&b=2` })) })}`;
  fake.post(ALERTS2, { bot_id: NAGIOS, text: escapeSlack(blob) });
  const blobPost = await fake.waitFor(() => topLevel(fake.messagesIn(INC_APPS))[1], 'the blob repost');
  await fake.waitFor(() => replies(fake.messagesIn(INC_APPS), blobPost).length >= 1, 'its thread', 10_000);
  await settle(bot);
  assert.equal(replies(fake.messagesIn(INC_APPS), shortPost).length, 0, 'no thread for a short alert');
  assert.ok(!contextOf(shortPost).includes('thread'));
  assert.equal(unescapeSlack(alertSection(shortPost)), '*[Error]* ERROR nightly export failed\nhost: db-01\nexit: 3\nlog: <https://logs.example.com/x?id=1&b=2>');
  const head = alertSection(blobPost);
  assert.ok(head.length <= 2000, `the head of a one-line blob (${head.length})`);
  assert.ok(whole(head));
  assert.match(contextOf(blobPost), /the rest in the thread/);
  const thread = replies(fake.messagesIn(INC_APPS), blobPost);
  const rest = thread.flatMap((m) => textObjects(m.blocks).filter((o) => o.verbatim).map((o) => o.text)).join('');
  assert.equal(unescapeSlack((head.slice('*[Error]* '.length) + rest).replace(/<(https:[^|>]*)>/g, '$1')), blob);
  for (const m of thread) for (const o of textObjects(m.blocks)) assert.ok(whole(o.text) && o.text.length <= 3000);
});

test('splitting never cuts a link, an entity or an emoji in half, and loses nothing', () => {
  const pieces = ['plain words ', '<https://example.com/a?b=1&amp;c=2|a link label>', ' &amp; &lt;x&gt; ', '😀', '\n', '<https://example.com/very/long/' + 'p'.repeat(300) + '>'];
  for (let n = 0; n < 400; n++) {
    let text = '';
    for (let i = 0; text.length < 5000; i++) text += pieces[(i * 7 + n) % pieces.length];
    for (const limit of [300, 350 + (n % 50), 2900]) {
      const parts = splitText(text, limit);
      assert.equal(parts.join(''), text, 'nothing lost');
      for (const part of parts) {
        assert.ok(whole(part), `cut inside an entity or a link at limit ${limit}: …${part.slice(-30)}`);
        assert.ok(!LONE_SURROGATE.test(part), 'no emoji cut in half');
        // Only a link longer than the limit makes a longer part: it is kept whole.
        assert.ok(part.length <= Math.max(limit, 340), `a part of ${part.length} at limit ${limit}`);
      }
    }
  }
});

// ─── The report ───────────────────────────────────────────────────────────────────────────────

test('the report never cuts an escaped entity, a link or an emoji in half, in its lines or in plugin sections', async (t) => {
  const { fake, start } = await setup(t);
  // A plugin section longer than a block, full of links and entities.
  const long = Array.from({ length: 120 }, (_, i) => `• <https://stats.example.com/r/${i}?a=1&amp;b=2|row ${i} &amp; more> &lt;${i}&gt; 😀`);
  const plugin = definePlugin({ name: 'long-section', onReport: ({ addSection }) => addSection({ title: 'Statistics & more', lines: long }) });
  const bot = await start(baseConfig({ report: { channel: REPORT }, plugins: [plugin] }), UNPACED);
  // Alerts whose entity, link or emoji falls where the report shortens its line (150 characters).
  for (let shift = 0; shift < 8; shift++) {
    fake.post(ALERTS, { bot_id: NAGIOS, text: escapeSlack(`ERROR ${'x'.repeat(136 + shift)}&<>😀😀 https://example.com/q?a=1&b=2 tail`) });
    fake.post(ALERTS, { bot_id: NAGIOS, text: `ERROR ${'y'.repeat(120 + shift * 3)} <https://runbook.example.com/x?a=1&amp;b=2|Runbook for this> tail` });
  }
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length >= 16, 'the reposts', 10_000);
  await settle(bot);
  assert.equal(await runReport(bot.ims), true);
  const report = fake.messagesIn(REPORT);
  assert.ok(report.length >= 1);
  const texts = report.flatMap((m) => textObjects(m.blocks));
  for (const o of texts) {
    assert.ok(o.text.length <= 3000, `a block of ${o.text.length}`);
    assert.ok(whole(o.text), `an entity or a link cut in two: ${o.text.slice(0, 300)}`);
    assert.ok(!LONE_SURROGATE.test(o.text), 'an emoji cut in half');
  }
  const all = texts.map((o) => o.text).join('\n');
  for (let i = 0; i < 120; i++) assert.ok(all.includes(`<https://stats.example.com/r/${i}?a=1&amp;b=2|row ${i} &amp; more>`), `plugin row ${i} is whole`);
  assert.ok(all.includes('<https://runbook.example.com/x?a=1&amp;b=2|Runbook for this>'), 'a link that fits the line is kept');
  for (const sequence of sequences(all)) assert.match(sequence, /^<(https:\/\/[^|<>]+)(\|[^<>]*)?>$/, `only links in the report: ${sequence}`);
});

/**
 * The fault suite, input: what arrives at the real bot process can be hostile — Socket Mode frames no
 * client expects, alerts of 40,000 characters, deeply nested blocks, invalid UTF-16, mention injection
 * through text, attachments and blocks, and rules that backtrack catastrophically. Every scenario ends
 * with: nothing lost, nothing twice, no unintended mention, still working.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { ALERTS, INC_APPS, INC_INFRA, NAGIOS, ONCALL, REPORT, allStrings, guardSocketModeShutdownBug, textObjects, unescapeSlack } from './harness.ts';
import { Alerts, assertNoUnintendedMention, assertSurvived, botEnv, exitOf, fakeSlack, incidentPostsOf, spawnBot, startBot, writeSuiteConfig } from './faults.ts';

guardSocketModeShutdownBug();

test('hostile Socket Mode frames (not JSON, not objects, unknown envelope types, events_api with a null or missing event) neither stop the bot nor lose the alerts around them', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  const envelope = (fields: Record<string, unknown>) => JSON.stringify({ envelope_id: randomUUID(), accepts_response_payload: false, ...fields });
  const frames: (string | Buffer)[] = [
    'this is not JSON {',
    Buffer.from([0xff, 0x00, 0xfe, 0x01]),
    'null', '[]', '42', '"events_api"', '{}',
    envelope({ type: 'something_slack_adds_next_year', payload: { what: 'new' } }),
    envelope({ type: 'slash_commands', payload: { command: '/ims', text: 'status' } }),
    envelope({ type: 'interactive', payload: { type: 'block_actions', actions: [] } }),
    envelope({ type: 'events_api', payload: { type: 'event_callback', event_id: 'EvNULL0001', event: null } }),
    envelope({ type: 'events_api' }),
    envelope({ type: 'events_api', payload: null }),
    envelope({ type: 'events_api', payload: { type: 'event_callback', event_id: 'EvSTRING01', event: 'message' } }),
    envelope({ type: 'events_api', payload: { type: 'event_callback', event_id: 'EvNOCHAN01', event: { type: 'message', text: 'ERROR without a channel' } } }),
    envelope({ type: 'events_api', payload: { type: 'event_callback', event_id: 'EvBADTS001', event: { type: 'message', channel: ALERTS, ts: { not: 'a ts' }, text: 'ERROR odd ts' } } }),
    envelope({ type: 'events_api', payload: { type: 'event_callback', event_id: 'EvREACT001', event: { type: 'reaction_added', item: null } } }),
    JSON.stringify({ type: 'hello', num_connections: 1 }),
  ];
  await alerts.burst(40, { midway: () => { for (const frame of frames) assert.ok(fake.sendRawFrame(frame), 'the frame was sent'); } });
  for (const frame of frames) fake.sendRawFrame(frame);
  await alerts.burst(20);
  await assertSurvived(fake, alerts, run);
});

/** Slack's limits on what a post may carry: the fake does not enforce them, so the suite checks every post. */
function assertPostable(fake: Parameters<typeof assertSurvived>[0]): void {
  for (const call of fake.callsTo('chat.postMessage')) {
    const { text = '', blocks = [] } = call.params;
    assert.ok(String(text).length <= 40_000, `text of ${String(text).length} characters (Slack: at most 40,000)`);
    assert.ok(blocks.length <= 50, `${blocks.length} blocks (Slack: at most 50)`);
    for (const o of textObjects(blocks)) assert.ok(o.text.length <= 3000, `a text object of ${o.text.length} characters (Slack: at most 3000)`);
  }
}

test('an alert of 40,000 characters becomes one incident post Slack accepts (its rest in the thread), and one that is only seen gets its reaction', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  const trace = (m: string, head: string) => `${head} ${m} java.lang.IllegalStateException\n${Array.from({ length: 2000 }, (_, i) => `\tat com.example.Service${i}.call(Service.java:${i})`).join('\n')}`.slice(0, 40_000).padEnd(40_000, 'x');
  const long = alerts.post('incident', { text: (m) => trace(m, 'ERROR') });
  const longPage = alerts.post('page', { text: (m) => trace(m, 'CRITICAL') });
  alerts.post('seen', { text: (m) => trace(m, 'info') });
  const wide = alerts.post('incident', { text: (m) => `ERROR ${m} ${'y'.repeat(39_950)}THE-END` }); // one line, no place to break
  await alerts.burst(20);
  await assertSurvived(fake, alerts, run);
  assertPostable(fake);
  // Nothing of it is lost either: its end reached Slack too (in the post or its thread).
  for (const alert of [long, longPage, wide]) {
    const [{ channel, message }] = incidentPostsOf(fake, alert);
    const thread = fake.messagesIn(channel).filter((m) => m.ts === message.ts || m.thread_ts === message.ts);
    // Compared without whitespace: how the lines are laid out (code blocks, wrapping) is the post's business.
    const bare = (text: string) => text.replace(/\s+/g, '');
    const received = bare(unescapeSlack(thread.flatMap((m) => allStrings({ text: m.text, blocks: m.blocks, attachments: m.attachments })).join('')));
    const end = bare(fake.messagesIn(alert.channel).find((m) => m.ts === alert.ts)!.text).slice(-24);
    assert.ok(received.includes(end), `the end of ${alert.marker} (${JSON.stringify(end)}) reached Slack`);
  }
});

test('deeply nested blocks and attachments (500 levels) are read, matched and handled like any alert', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  const nest = (text: string, depth: number) => {
    let node: Record<string, unknown> = { type: 'text', text };
    for (let i = 0; i < depth; i++) node = { type: i % 2 ? 'rich_text_quote' : 'rich_text_list', elements: [node] };
    return { type: 'rich_text', elements: [node] };
  };
  alerts.post('incident', { shape: (text) => ({ text: '', blocks: [nest(text, 500)] }) });
  alerts.post('page', { shape: (text) => ({ text: '', attachments: [{ fallback: '', blocks: [nest(text, 500)] }] }) });
  alerts.post('seen', { shape: (text) => ({ text: '', blocks: [nest(text, 500)], attachments: [{ text, blocks: [nest('deeper', 500)] }] }) });
  alerts.post('incident', { shape: (text) => ({ text: '', attachments: [{ title: text, fields: Array.from({ length: 200 }, (_, i) => ({ title: `f${i}`, value: 'v'.repeat(50) })) }] }) });
  await alerts.burst(20);
  await assertSurvived(fake, alerts, run);
  assertPostable(fake);
});

test('invalid UTF-16 in an alert (a lone surrogate, an emoji cut in half) does not hold up its channel: it and every alert behind it are handled once', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig();
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  const cut = '🔥'.slice(0, 1);
  alerts.post('incident', { channel: ALERTS, text: (m) => `ERROR ${m} disk full ${cut}` });
  alerts.post('page', { channel: ALERTS, text: (m) => `CRITICAL ${m} \uDC00 db down ${'🔥'.slice(1)}` });
  alerts.post('incident', { channel: ALERTS, text: (m) => `ERROR ${m}`, shape: (text) => ({ text: '', attachments: [{ title: text, text: `trace cut here ${cut}`, fields: [{ title: `\uDBFF`, value: 'x' }] }] }) });
  alerts.post('seen', { channel: ALERTS, text: (m) => `info ${m} half an emoji ${cut}` });
  // Behind them in the same channel, and in the incident channels they post to.
  for (let i = 0; i < 20; i++) alerts.post(i % 3 === 0 ? 'page' : i % 3 === 1 ? 'incident' : 'seen', { channel: ALERTS });
  await assertSurvived(fake, alerts, run);
});

const INJECTIONS = [
  '<!channel>', '<!here>', '<!everyone>', '<!here|here>', '<!channel|@channel>', `<@${ONCALL}>`, '<@U0VICTIM1>', '<@W0VICTIM2|boss>',
  '<!subteam^S0SRETEAM>', '<!subteam^S0SRETEAM|@sre>', '@channel', '@here', '@everyone', '&lt;!channel&gt;', '&lt;@U0VICTIM1&gt;', '&amp;lt;!here&amp;gt;',
];
const INJECTED = INJECTIONS.join(' ');

test('mention injection through text, attachments, blocks and poster names never mentions anyone, in incident posts or in the report; a page mentions its hotline only', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig({ report: { channel: REPORT } });
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  const evilUser = fake.addUser({ id: 'U0EVILUSR1', name: '<!everyone>', real_name: '<!channel> Eve <@U0VICTIM1>' });
  const evilBot = fake.addBot({ id: 'B0EVILBOT1', name: '<!here> monitor <!subteam^S0SRETEAM>' });
  for (const fate of ['incident', 'page', 'seen'] as const) {
    const head = { incident: 'ERROR', page: 'CRITICAL', seen: 'info' }[fate];
    alerts.post(fate, { text: (m) => `${head} ${m} from a hostile webhook name`, shape: (text) => ({ text, username: '<!channel> Nagios @here', bot_profile: { id: NAGIOS, name: '<!here>' } }) });
    alerts.post(fate, { text: (m) => `${head} ${m} from a person with a hostile name`, shape: (text) => ({ text, bot_id: undefined, user: evilUser.id }) });
    alerts.post(fate, { text: (m) => `${head} ${m} from a bot with a hostile name`, shape: (text) => ({ text, bot_id: evilBot.id }) });
  }
  for (const fate of ['incident', 'page', 'seen'] as const) {
    const head = { incident: 'ERROR', page: 'CRITICAL', seen: 'info' }[fate];
    alerts.post(fate, { text: (m) => `${head} ${m} ${INJECTED}` });
    alerts.post(fate, { text: (m) => `${head} ${m}`, shape: (text) => ({ text: '', attachments: [{ pretext: INJECTED, title: text, title_link: 'https://evil.example/|<!channel>', text: INJECTED, fields: [{ title: '<!here>', value: `<@U0VICTIM1> ${INJECTED}` }], fallback: INJECTED, footer: '<!everyone>' }] }) });
    alerts.post(fate, {
      text: (m) => `${head} ${m}`,
      shape: (text) => ({
        text: '',
        blocks: [
          { type: 'section', text: { type: 'mrkdwn', text: `${text} ${INJECTED}` }, fields: [{ type: 'mrkdwn', text: '<!channel>' }] },
          { type: 'context', elements: [{ type: 'mrkdwn', text: '<!subteam^S0SRETEAM>' }] },
          { type: 'rich_text', elements: [{ type: 'rich_text_section', elements: [
            { type: 'text', text: 'via rich text ' }, { type: 'user', user_id: 'U0VICTIM1' }, { type: 'broadcast', range: 'channel' },
            { type: 'usergroup', usergroup_id: 'S0SRETEAM' }, { type: 'user', user_id: ONCALL }, { type: 'link', url: 'https://evil.example/', text: '<!here>' },
          ] }] },
        ],
      }),
    });
  }
  await alerts.burst(10);
  await assertSurvived(fake, alerts, run);
  // The report lists the open incidents, their texts and posters: no mention there either.
  const report = spawnBot(t, ['--config', file, '--only-report'], botEnv(fake));
  assert.equal((await exitOf(report)).code, 0, `the report was posted\n${report.stderr()}`);
  assert.ok(fake.messagesIn(REPORT).some((m) => m.bot_id === fake.botId), 'a report reached the report channel');
  assertNoUnintendedMention(fake, alerts.list);
  const pages = fake.messagesIn(INC_INFRA).filter((m) => m.bot_id === fake.botId && (m.thread_ts === undefined || m.thread_ts === m.ts));
  assert.ok(pages.length >= 3 && pages.every((m) => JSON.stringify(m).includes(`<@${ONCALL}>`)), 'each page still mentions its hotline');
  assert.ok(fake.messagesIn(INC_APPS).filter((m) => m.bot_id === fake.botId).every((m) => !JSON.stringify(m).includes(`<@${ONCALL}>`)), 'an incident without a hotline mentions no one');
});

test('a catastrophic-backtracking rule, (a+)+$, against long aaaa…b alerts neither stalls the bot nor holds up other alerts', async (t) => {
  const fake = await fakeSlack(t);
  const { file } = writeSuiteConfig({
    rules: [
      { match: '(a+)+$', head: '[Redos]', incident: 'INFRA', hotline: 'OnCall' },
      { match: 'CRITICAL', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
      { match: 'ERROR', head: '[Error]', incident: 'APPS' },
    ],
  });
  const run = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  const hostile = (m: string, head: string, n: number) => `${head} ${m} ${'a'.repeat(n)}b`;
  for (const n of [30, 40, 5000]) {
    alerts.post('incident', { text: (m) => hostile(m, 'ERROR', n) });
    alerts.post('seen', { text: (m) => hostile(m, 'info', n) });
    alerts.post('page', { text: (m) => `${m} ${'a'.repeat(n)}` }); // ends in a's: the rule matches
    await alerts.burst(5);
  }
  await assertSurvived(fake, alerts, run);
});

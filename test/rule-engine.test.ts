/**
 * The rule engine: `matchRules` (first match wins, suppression, windows in a fixed zone), `ruleClock`,
 * the text rules see (`messageText`, `decodeEntities`, `escapeSlack`), and `decide` in every mode.
 * The clock is always injected (epoch ms, or the event's `ts`); nothing here depends on "now".
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  matchRules, ruleClock, messageText, decodeEntities, escapeSlack, decide, compileConfig,
  type Config, type CompiledConfig, type SlackMessageEvent, type RuleVerdict,
} from '../ims.ts';

/** 2026-11-21 is a Saturday. */
const at = (iso: string) => Date.parse(iso);
const tsOf = (ms: number) => (ms / 1000).toFixed(6);

const ruleNumber = (verdict: RuleVerdict) => (verdict.kind === 'none' ? undefined : verdict.match.rule.number);

function rules(list: Config['rules'], extra: Partial<Config> = {}): CompiledConfig {
  return compileConfig({ rules: list, incidents: { INFRA: { channel: 'C0INFRA' }, APPS: { channel: 'C0APPS' } }, ...extra });
}

describe('matchRules', () => {
  test('the first matching rule wins, reported with its 1-based number', () => {
    const compiled = rules([
      { match: 'disk', head: '[Disk]', incident: 'INFRA' },
      { match: 'full', head: '[Full]', incident: 'APPS' },
      { match: 'disk full', head: '[DiskFull]', incident: 'APPS' },
    ]);
    const verdict = matchRules(compiled.rules, 'disk full on db-1', 0);
    assert.equal(verdict.kind, 'incident');
    assert.equal(ruleNumber(verdict), 1);
    assert.equal(verdict.kind === 'incident' && verdict.match.rule.head, '[Disk]');
    assert.equal(ruleNumber(matchRules(compiled.rules, 'partition full', 0)), 2);
    assert.deepEqual(matchRules(compiled.rules, 'all quiet', 0), { kind: 'none' });
  });

  test('a suppression rule matching inside its window stops evaluation: a later matching rule is not used', () => {
    const compiled = rules([
      { match: /backup/i, when: / 0[1-4]:/, suppress: true, head: '[Backup]', incident: 'INFRA' },
      { match: /error/i, head: '[Error]', incident: 'APPS' },
    ]);
    const verdict = matchRules(compiled.rules, 'Backup job ERROR: running late', at('2026-11-21T02:15:00Z'), { timezone: 'UTC' });
    assert.equal(verdict.kind, 'suppressed');
    assert.equal(ruleNumber(verdict), 1);
  });

  test('a suppression rule outside its window does not apply: the next rules are tried', () => {
    const compiled = rules([
      { match: /backup/i, when: / 0[1-4]:/, suppress: true, head: '[Backup]', incident: 'INFRA' },
      { match: /error/i, head: '[Error]', incident: 'APPS' },
    ]);
    const verdict = matchRules(compiled.rules, 'Backup job ERROR: running late', at('2026-11-21T09:15:00Z'), { timezone: 'UTC' });
    assert.equal(verdict.kind, 'incident');
    assert.equal(ruleNumber(verdict), 2);
    assert.equal(matchRules(compiled.rules, 'Backup done', at('2026-11-21T09:15:00Z'), { timezone: 'UTC' }).kind, 'none');
  });

  test('the legacy ! spelling of a suppression window behaves like suppress: true', () => {
    const compiled = rules([
      { match: '.*Info.*', when: '!.* 0[1-4]:.*', head: '[Info]', incident: 'INFRA' },
      { match: '.*', head: '[Any]', incident: 'APPS' },
    ]);
    assert.equal(matchRules(compiled.rules, 'Info: rotated logs', at('2026-11-21T03:00:00Z'), { timezone: 'UTC' }).kind, 'suppressed');
    assert.equal(ruleNumber(matchRules(compiled.rules, 'Info: rotated logs', at('2026-11-21T13:00:00Z'), { timezone: 'UTC' })), 2);
  });

  test('a time window is evaluated in the given timezone: Asia/Tokyo and UTC give different verdicts for the same instant', () => {
    const compiled = rules([{ match: 'Fault', when: '.*/.*/.* 1[0-2]:.*:.* .*', head: '[Fault]', incident: 'INFRA' }]);
    const instant = at('2026-11-21T01:30:00Z'); // 01:30 in UTC, 10:30 in Tokyo
    assert.equal(matchRules(compiled.rules, 'Fault on sw-1', instant, { timezone: 'Asia/Tokyo' }).kind, 'incident');
    assert.equal(matchRules(compiled.rules, 'Fault on sw-1', instant, { timezone: 'UTC' }).kind, 'none');
    const later = at('2026-11-21T11:30:00Z'); // 11:30 in UTC, 20:30 in Tokyo
    assert.equal(matchRules(compiled.rules, 'Fault on sw-1', later, { timezone: 'Asia/Tokyo' }).kind, 'none');
    assert.equal(matchRules(compiled.rules, 'Fault on sw-1', later, { timezone: 'UTC' }).kind, 'incident');
  });

  test('decide evaluates windows in the config timezone at the event ts', () => {
    const list: Config['rules'] = [{ match: 'Fault', when: / 1[0-2]:/, head: '[Fault]', incident: 'INFRA' }];
    const event: SlackMessageEvent = { type: 'message', channel: 'C0ALERTS', ts: tsOf(at('2026-11-21T01:30:00Z')), bot_id: 'B1', text: 'Fault on sw-1' };
    assert.equal(decide(rules(list, { timezone: 'Asia/Tokyo' }), event).decision.action, 'incident');
    assert.equal(decide(rules(list, { timezone: 'UTC' }), event).decision.action, 'seen');
  });

  test('weekday windows such as (Sat|Sun) match on the weekday in the given zone', () => {
    const compiled = rules([{ match: 'batch', when: '(Sat|Sun)$', head: '[Weekend]', incident: 'INFRA' }]);
    assert.equal(matchRules(compiled.rules, 'batch failed', at('2026-11-21T12:00:00Z'), { timezone: 'UTC' }).kind, 'incident'); // Sat
    assert.equal(matchRules(compiled.rules, 'batch failed', at('2026-11-23T12:00:00Z'), { timezone: 'UTC' }).kind, 'none'); // Mon
    const sundayEveningUtc = at('2026-11-22T20:00:00Z'); // Sunday 20:00 UTC = Monday 05:00 in Tokyo
    assert.equal(matchRules(compiled.rules, 'batch failed', sundayEveningUtc, { timezone: 'UTC' }).kind, 'incident');
    assert.equal(matchRules(compiled.rules, 'batch failed', sundayEveningUtc, { timezone: 'Asia/Tokyo' }).kind, 'none');
  });

  test('a rule whose incident label is missing from the incidents map is skipped and the next rule is tried', () => {
    const compiled = rules([
      { match: 'disk', head: '[Disk]', incident: 'INFRA' },
      { match: 'disk', head: '[Disk2]', incident: 'APPS' },
    ]);
    const onlyApps = new Map([['APPS', { label: 'APPS', channel: 'C0APPS' }]]);
    const verdict = matchRules(compiled.rules, 'disk full', 0, { incidents: onlyApps });
    assert.equal(ruleNumber(verdict), 2);
    assert.equal(matchRules(compiled.rules, 'disk full', 0, { incidents: new Map() }).kind, 'none');
  });

  test('named groups of the winning rule are returned', () => {
    const compiled = rules([{ match: /host (?<host>\S+) is (?<state>DOWN|UP)/, head: '[Host]', incident: 'INFRA' }]);
    const verdict = matchRules(compiled.rules, 'PROBLEM host db-01 is DOWN', 0);
    assert.deepEqual(verdict.kind === 'incident' && verdict.match.groups, { host: 'db-01', state: 'DOWN' });
  });
});

describe('ruleClock', () => {
  test('formats an instant as YYYY/MM/DD HH:mm:ss Ddd in the given zone', () => {
    assert.equal(ruleClock(at('2026-11-21T15:26:30Z'), 'UTC'), '2026/11/21 15:26:30 Sat');
    assert.equal(ruleClock(at('2026-11-21T15:26:30Z'), 'Asia/Tokyo'), '2026/11/22 00:26:30 Sun');
    assert.equal(ruleClock(at('2026-01-02T03:04:05Z'), 'UTC'), '2026/01/02 03:04:05 Fri');
    assert.equal(ruleClock(at('2026-11-21T15:26:30Z'), 'Asia/Kolkata'), '2026/11/21 20:56:30 Sat');
  });

  test('midnight is hour 00, never 24', () => {
    assert.equal(ruleClock(at('2026-11-22T00:00:00Z'), 'UTC'), '2026/11/22 00:00:00 Sun');
    assert.equal(ruleClock(at('2026-11-22T00:59:59Z'), 'UTC'), '2026/11/22 00:59:59 Sun');
  });

  test('Ddd runs Sun..Sat over a week', () => {
    const days = Array.from({ length: 7 }, (_, i) => ruleClock(at('2026-11-22T12:00:00Z') + i * 86_400_000, 'UTC').slice(-3));
    assert.deepEqual(days, ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']);
  });

  test('alternating zones at the same second each get their own text', () => {
    const instant = at('2026-11-21T01:30:00Z');
    assert.equal(ruleClock(instant, 'UTC'), '2026/11/21 01:30:00 Sat');
    assert.equal(ruleClock(instant, 'Asia/Tokyo'), '2026/11/21 10:30:00 Sat');
    assert.equal(ruleClock(instant + 400, 'UTC'), '2026/11/21 01:30:00 Sat');
    assert.equal(ruleClock(instant + 1000, 'UTC'), '2026/11/21 01:30:01 Sat');
  });
});

describe('the text rules see', () => {
  test('decodeEntities turns &lt; &gt; &amp; into < > &, once', () => {
    assert.equal(decodeEntities('&lt;!channel&gt; disk &amp; cpu'), '<!channel> disk & cpu');
    assert.equal(decodeEntities('&amp;lt;'), '&lt;');
    assert.equal(decodeEntities('no entities'), 'no entities');
  });

  test('escapeSlack makes mentions and links inert, and decodeEntities undoes it', () => {
    const raw = '<!channel> <@U123> <https://x|y> & more';
    const escaped = escapeSlack(raw);
    assert.equal(escaped, '&lt;!channel&gt; &lt;@U123&gt; &lt;https://x|y&gt; &amp; more');
    assert.ok(!/[<>]/.test(escaped));
    assert.equal(decodeEntities(escaped), raw);
  });

  test('entity-encoded text is matched decoded: &lt;!channel&gt; matches a rule for <!channel>', () => {
    const compiled = rules([{ match: '<!channel> .*down', head: '[Page]', incident: 'INFRA' }]);
    const event: SlackMessageEvent = { type: 'message', channel: 'C0ALERTS', ts: '1794790396.000100', bot_id: 'B1', text: '&lt;!channel&gt; api is down &amp; out' };
    const { decision, message } = decide(compiled, event);
    assert.equal(decision.action, 'incident');
    assert.equal(message?.text, '<!channel> api is down & out');
  });

  test('text wins when present; whitespace-only text falls back to attachments', () => {
    const attachments = [{ text: 'from attachment' }];
    assert.equal(messageText({ text: 'from text', attachments }), 'from text');
    assert.equal(messageText({ text: '  \n', attachments }), 'from attachment');
    assert.equal(messageText({ text: '' }), '');
  });

  test('attachments-only messages are read from pretext, title, text, fields and fallback', () => {
    const text = messageText({
      text: '',
      attachments: [
        { pretext: 'Zabbix alert', title: 'Disk /var almost full', text: 'Used: 95%', fields: [{ title: 'Host', value: 'db-01' }, { title: 'Severity', value: 'High' }], fallback: 'Disk full on db-01' },
        { fallback: 'only a fallback &amp; nothing else' },
        { text: 'repeated fallback', fallback: 'repeated fallback' },
      ],
    });
    assert.equal(text, ['Zabbix alert', 'Disk /var almost full', 'Used: 95%', 'Host: db-01', 'Severity: High', 'Disk full on db-01',
      'only a fallback & nothing else', 'repeated fallback'].join('\n'));
  });

  test('blocks-only messages are read from section text, fields, headers, context and rich_text', () => {
    const text = messageText({
      blocks: [
        { type: 'header', text: { type: 'plain_text', text: 'CloudWatch Alarm' } },
        { type: 'section', text: { type: 'mrkdwn', text: '*sqs-orders-dlq* is in ALARM' }, fields: [{ type: 'mrkdwn', text: '*Region:* eu-west-1' }, { type: 'mrkdwn', text: '*State:* ALARM' }] },
        { type: 'context', elements: [{ type: 'mrkdwn', text: 'threshold crossed' }] },
        { type: 'rich_text', elements: [
          { type: 'rich_text_section', elements: [{ type: 'text', text: 'Runbook for ' }, { type: 'user', user_id: 'U0ONCALL' }, { type: 'text', text: ' ' }, { type: 'emoji', name: 'fire' }] },
          { type: 'rich_text_list', elements: [{ type: 'rich_text_section', elements: [{ type: 'link', url: 'https://runbooks/x' }] }] },
        ] },
      ],
    });
    assert.equal(text, ['CloudWatch Alarm', '*sqs-orders-dlq* is in ALARM', '*Region:* eu-west-1', '*State:* ALARM', 'threshold crossed',
      'Runbook for <@U0ONCALL> :fire:', 'https://runbooks/x'].join('\n'));
  });

  test('decide matches rules against attachment and block text when text is empty', () => {
    const compiled = rules([{ match: 'Severity: High', head: '[High]', incident: 'INFRA' }, { match: 'ALARM', head: '[Alarm]', incident: 'APPS' }]);
    const fromAttachments = decide(compiled, { type: 'message', channel: 'C0ALERTS', ts: '1794790396.000100', bot_id: 'B1', text: '', attachments: [{ fields: [{ title: 'Severity', value: 'High' }] }] });
    assert.equal(fromAttachments.decision.action, 'incident');
    assert.equal(fromAttachments.decision.action === 'incident' && fromAttachments.decision.channel, 'C0INFRA');
    const fromBlocks = decide(compiled, { type: 'message', channel: 'C0ALERTS', ts: '1794790396.000100', bot_id: 'B1', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: 'state ALARM' } }] });
    assert.equal(fromBlocks.decision.action === 'incident' && fromBlocks.decision.channel, 'C0APPS');
  });

  test("legacy-json mode matches rules against the attachments' JSON, as IMS did", () => {
    const attachments = [{ title: 'Disk full', color: 'danger' }];
    assert.equal(messageText({ text: '', attachments }, 'legacy-json'), JSON.stringify(attachments));
    const compiled = rules([{ match: '"color":"danger"', head: '[Red]', incident: 'INFRA' }], { attachmentText: 'legacy-json' });
    const { decision } = decide(compiled, { type: 'message', channel: 'C0ALERTS', ts: '1794790396.000100', bot_id: 'B1', attachments });
    assert.equal(decision.action, 'incident');
    const readable = rules([{ match: '"color":"danger"', head: '[Red]', incident: 'INFRA' }]);
    assert.equal(decide(readable, { type: 'message', channel: 'C0ALERTS', ts: '1794790396.000100', bot_id: 'B1', attachments }).decision.action, 'seen');
  });
});

describe('decide', () => {
  const config: Config = {
    timezone: 'UTC',
    rules: [
      { match: /backup/i, when: / 0[1-4]:/, suppress: true, head: '[Backup]', incident: 'INFRA' },
      { match: /PROBLEM .*CRITICAL/, head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
      { match: '(?i)error', head: '[Error]', incident: 'APPS' },
    ],
    incidents: { INFRA: { channel: 'C0INFRA' }, APPS: { channel: 'C0APPS' } },
    reverseDefault: { channel: 'C0DEFAULT', header: '[Alert]' },
    report: { channel: 'C0REPORT' },
    posters: ['B0NAGIOS', 'U0ZABBIXB', 'B0REACJI'],
    hotlines: { OnCall: ['U0ONCALL', 'here'] },
    reacji: { reaction: 'fast_forward', bots: ['B0REACJI'] },
  };
  const normal = compileConfig(config);
  const reverse = compileConfig(config, { reverse: true });
  const reacji = compileConfig(config, { reacji: true });
  const noon = tsOf(at('2026-11-21T12:00:00Z'));
  const night = tsOf(at('2026-11-21T02:00:00Z'));
  const msg = (text: string, extra: Partial<SlackMessageEvent> = {}): SlackMessageEvent =>
    ({ type: 'message', channel: 'C0ALERTS', ts: noon, bot_id: 'B0NAGIOS', text, ...extra });

  test('normal mode: a matching rule with a hotline becomes an incident in its channel, paging the hotline', () => {
    const { decision, message } = decide(normal, msg('PROBLEM app-01/SSH is CRITICAL'));
    assert.equal(decision.action, 'incident');
    assert.ok(decision.action === 'incident');
    assert.equal(decision.channel, 'C0INFRA');
    assert.equal(decision.hotline, 'OnCall');
    assert.equal(decision.match.rule.number, 2);
    assert.deepEqual({ poster: message?.poster, channel: message?.channel, ts: message?.ts }, { poster: 'B0NAGIOS', channel: 'C0ALERTS', ts: noon });
  });

  test('normal mode: a rule without a hotline becomes an incident without paging', () => {
    const { decision } = decide(normal, msg('NullPointerException: Error in checkout'));
    assert.ok(decision.action === 'incident');
    assert.equal(decision.channel, 'C0APPS');
    assert.equal(decision.hotline, undefined);
  });

  test('normal mode: a message no rule matches gets the seen reaction', () => {
    assert.deepEqual(decide(normal, msg('RECOVERY app-01/SSH is OK')).decision, { action: 'seen', reaction: 'white_check_mark' });
    const eyes = compileConfig({ ...config, seenReaction: 'eyes' });
    assert.deepEqual(decide(eyes, msg('all good')).decision, { action: 'seen', reaction: 'eyes' });
  });

  test('normal mode: a suppressed message gets the seen reaction and is not an incident', () => {
    const { decision } = decide(normal, msg('Backup error: running late', { ts: night }));
    assert.equal(decision.action, 'suppressed');
    assert.ok(decision.action === 'suppressed');
    assert.equal(decision.reaction, 'white_check_mark');
    assert.equal(decision.match.rule.number, 1);
    assert.equal(decide(normal, msg('Backup error: running late')).decision.action, 'incident', 'at noon the suppression window is closed');
  });

  test('reverse mode: a message no rule matches is reposted to DEFAULT with its header', () => {
    assert.deepEqual(decide(reverse, msg('RECOVERY app-01/SSH is OK')).decision, { action: 'reverse repost', channel: 'C0DEFAULT', header: '[Alert]' });
  });

  test('reverse mode: a message a rule matches gets the seen reaction', () => {
    const { decision } = decide(reverse, msg('Error in checkout'));
    assert.equal(decision.action, 'seen');
    assert.ok(decision.action === 'seen');
    assert.equal(decision.reaction, 'white_check_mark');
    assert.equal(decision.match?.rule.number, 3);
  });

  test('reverse mode: a rule with a hotline still opens an incident and pages', () => {
    const { decision } = decide(reverse, msg('PROBLEM db-01/MySQL is CRITICAL'));
    assert.ok(decision.action === 'incident');
    assert.equal(decision.channel, 'C0INFRA');
    assert.equal(decision.hotline, 'OnCall');
  });

  test('reacji mode: a matching post by a [ReacjiID] bot without http gets the Reacji reaction instead of a repost', () => {
    const { decision } = decide(reacji, msg('Error in checkout', { bot_id: 'B0REACJI' }));
    assert.equal(decision.action, 'reacji');
    assert.ok(decision.action === 'reacji');
    assert.equal(decision.reaction, 'fast_forward');
  });

  test('reacji mode: a post by a [ReacjiID] bot containing http is reposted as an incident', () => {
    const { decision } = decide(reacji, msg('Error in checkout, see https://grafana/d/x', { bot_id: 'B0REACJI' }));
    assert.equal(decision.action, 'incident');
  });

  test('reacji mode: posts by other bots are handled as in normal mode', () => {
    assert.equal(decide(reacji, msg('Error in checkout')).decision.action, 'incident');
    assert.equal(decide(reacji, msg('all good', { bot_id: 'B0REACJI' })).decision.action, 'seen');
    assert.equal(decide(normal, msg('Error in checkout', { bot_id: 'B0REACJI' })).decision.action, 'incident', 'without reacji mode the Reacji bot is an ordinary poster');
  });

  test('the poster filter accepts a listed bot_id, or a listed user, and ignores everyone else', () => {
    assert.equal(decide(normal, msg('Error', { bot_id: 'B0NAGIOS' })).decision.action, 'incident');
    assert.equal(decide(normal, msg('Error', { bot_id: undefined, user: 'U0ZABBIXB' })).decision.action, 'incident');
    assert.equal(decide(normal, msg('Error', { bot_id: 'B0ZABBIX', user: 'U0ZABBIXB' })).decision.action, 'incident', 'a bot whose user is listed');
    assert.deepEqual(decide(normal, msg('Error', { bot_id: 'B0UNKNOWN' })).decision, { action: 'ignore', reason: 'poster' });
    assert.deepEqual(decide(normal, msg('Error', { bot_id: undefined, user: 'U0HUMAN' })).decision, { action: 'ignore', reason: 'poster' });
    const everyone = compileConfig({ ...config, posters: [] });
    assert.equal(decide(everyone, msg('Error', { bot_id: undefined, user: 'U0HUMAN' })).decision.action, 'incident', 'an empty [PostID] lets everyone through');
  });

  test("IMS's own posts are ignored, by bot ID or by user ID", () => {
    const self = { userId: 'U0IMSBOT', botId: 'B0IMSBOT' };
    assert.deepEqual(decide(normal, msg('Error', { bot_id: 'B0IMSBOT' }), { self }).decision, { action: 'ignore', reason: 'own post' });
    assert.deepEqual(decide(normal, msg('Error', { bot_id: undefined, user: 'U0IMSBOT' }), { self }).decision, { action: 'ignore', reason: 'own post' });
    assert.equal(decide(normal, msg('Error'), { self }).decision.action, 'incident');
  });

  test('hidden subtypes (message_changed, message_deleted, hidden) are ignored; bot_message is not', () => {
    for (const subtype of ['message_changed', 'message_deleted', 'channel_join']) {
      assert.deepEqual(decide(normal, msg('Error', { subtype })).decision, { action: 'ignore', reason: 'hidden subtype' }, subtype);
    }
    assert.deepEqual(decide(normal, msg('Error', { hidden: true })).decision, { action: 'ignore', reason: 'hidden subtype' });
    assert.equal(decide(normal, msg('Error', { subtype: 'bot_message' })).decision.action, 'incident');
  });

  test('messages in incident, report and DEFAULT channels are ignored', () => {
    for (const channel of ['C0INFRA', 'C0APPS', 'C0REPORT', 'C0DEFAULT']) {
      assert.deepEqual(decide(normal, msg('PROBLEM x is CRITICAL', { channel })).decision, { action: 'ignore', reason: 'own channel' }, channel);
      assert.deepEqual(decide(reverse, msg('no rule matches this', { channel })).decision, { action: 'ignore', reason: 'own channel' }, channel);
    }
  });

  test('short texts (under 5 bytes) are matched like any other, not skipped as the old tool did', () => {
    const short = compileConfig({ ...config, rules: [{ match: '^(?:DOWN|Err)$', head: '[Short]', incident: 'INFRA' }] });
    assert.equal(decide(short, msg('DOWN')).decision.action, 'incident');
    assert.equal(decide(short, msg('Err')).decision.action, 'incident');
    assert.equal(decide(short, msg('ok')).decision.action, 'seen');
  });

  test('a message with no readable text is ignored', () => {
    assert.deepEqual(decide(normal, msg('')).decision, { action: 'ignore', reason: 'empty text' });
    assert.deepEqual(decide(normal, msg('   ', { attachments: [{ color: 'good' }] })).decision, { action: 'ignore', reason: 'empty text' });
  });
});

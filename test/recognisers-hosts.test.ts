/**
 * The host-monitor and CI recognisers (Nagios, Icinga 2, Checkmk, Zabbix, Jenkins, GitHub Actions) against messages in
 * the shapes Slack delivers them, built from each integration's own notifier code (cited at each fixture): the same key
 * for a problem, its repeat and its recovery, a different key for a different alert, notices for acknowledgements,
 * flapping and downtime, one-off events for CI, and nothing for a person quoting an alert.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { messageText, type SlackMessageEvent } from '../ims.ts';
import type { AlertIdentity, RecognisableMessage } from '../ims-recognisers.ts';
import { RECOGNISERS } from '../ims-recognisers.ts';

// ─── Helpers ─────────────────────────────────────────────────────────────────────────────────────

let clock = 1794800000;
/** A Slack timestamp, later than the one before. */
const nextTs = () => `${clock++}.${String(100000 + clock % 900000).padStart(6, '0')}`;

/** A message as Slack delivers it, read as IMS reads it. */
function delivered(event: Omit<SlackMessageEvent, 'type' | 'ts' | 'channel'> & { ts?: string; channel?: string }, extra: Partial<RecognisableMessage> = {}): RecognisableMessage {
  const full = { type: 'message', channel: 'C0ALERTS01', ts: nextTs(), ...event } as SlackMessageEvent;
  return { event: full, text: messageText(full), ...extra };
}

/** A `message_changed` event as Slack sends it, read as the edited message it carries. */
function edit(original: RecognisableMessage, changed: Record<string, unknown>): { wrapper: SlackMessageEvent; message: RecognisableMessage } {
  const ts = nextTs();
  const inner = { ...original.event, ...changed, edited: { user: original.event.user, ts } } as SlackMessageEvent;
  delete (inner as { channel?: string }).channel;
  const wrapper = { type: 'message', subtype: 'message_changed', hidden: true, channel: original.event.channel, ts, event_ts: ts, message: inner, previous_message: original.event } as SlackMessageEvent;
  return { wrapper, message: { event: { ...inner, channel: original.event.channel }, text: messageText(inner), edited: true } };
}

/** This file's integrations (the metrics ones have their own file). */
const HOST_RECOGNISERS = RECOGNISERS.filter((r) => ['nagios', 'icinga2', 'checkmk', 'zabbix', 'jenkins', 'github-actions'].includes(r.name));

/** What each recogniser makes of the message: the name of every one that recognised it, and the first one's alerts. */
function recognised(message: RecognisableMessage): { by: string[]; alerts: AlertIdentity[] } {
  const by: string[] = [];
  let alerts: AlertIdentity[] = [];
  for (const recogniser of HOST_RECOGNISERS) {
    const found = recogniser.recognise(message);
    if (found?.length) { by.push(recogniser.name); if (by.length === 1) alerts = found; }
  }
  return { by, alerts };
}

/** The one alert `recogniser` alone finds in the message. */
function only(recogniser: string, message: RecognisableMessage): AlertIdentity {
  const { by, alerts } = recognised(message);
  assert.deepEqual(by, [recogniser], `expected only ${recogniser} to recognise: ${message.text.slice(0, 120)}`);
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].source, recogniser);
  assert.ok(alerts[0].key.startsWith(`${recogniser}:`), `key namespaced by ${recogniser}: ${alerts[0].key}`);
  return alerts[0];
}

function unrecognised(message: RecognisableMessage): void {
  assert.deepEqual(recognised(message).by, [], `nothing should recognise: ${message.text.slice(0, 120)}`);
}

/** A person's message with the rich-text block Slack adds to it. */
function human(text: string): RecognisableMessage {
  return delivered({ user: 'U0HUMAN01', team: 'T0IMSTEAM', client_msg_id: 'c0ffee00-0000-4000-8000-000000000001', text,
    blocks: [{ type: 'rich_text', block_id: 'hUm4', elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text }] }] }] });
}

// ─── Nagios ──────────────────────────────────────────────────────────────────────────────────────

/** Nagios Core's notify-service-by-email subject and body (sample-config commands.cfg.in) posted as text, as in examples/alerts.jsonl. */
function nagiosService(type: string, host: string, address: string, service: string, state: string, info: string, extra = ''): RecognisableMessage {
  return delivered({ subtype: 'bot_message', bot_id: 'B0NAGIOS1', username: 'Nagios',
    text: `** ${type} Service Alert: ${host}/${service} is ${state} **\nNotification Type: ${type}\nHost: ${host} (${address})\nService: ${service}\nState: ${state}\nDate/Time: Mon Nov 16 05:16:43 UTC 2026\nInfo: ${info}${extra}` });
}

test('nagios: a service problem, its repeat and its recovery share one key; the recovery resolves it', () => {
  const fire = only('nagios', nagiosService('PROBLEM', 'mq-01', '10.0.3.50', 'Disk /var', 'CRITICAL', 'DISK CRITICAL - free space: /var 113 MB (4% inode=63%):'));
  const repeat = only('nagios', nagiosService('PROBLEM', 'mq-01', '10.0.3.50', 'Disk /var', 'CRITICAL', 'DISK CRITICAL - free space: /var 98 MB (3% inode=63%):'));
  const recover = only('nagios', nagiosService('RECOVERY', 'mq-01', '10.0.3.50', 'Disk /var', 'OK', 'DISK OK - free space: /var 15465 MB (70% inode=86%):'));
  assert.deepEqual(fire, { source: 'nagios', key: 'nagios:mq-01/Disk /var', state: 'firing', title: 'mq-01/Disk /var is CRITICAL', severity: 'CRITICAL' });
  assert.equal(repeat.key, fire.key);
  assert.equal(recover.key, fire.key);
  assert.equal(recover.state, 'resolved');
  assert.equal(recover.title, 'mq-01/Disk /var is OK');
});

test('nagios: another service on the same host, and a host alert, are different alerts', () => {
  const disk = only('nagios', nagiosService('PROBLEM', 'mq-01', '10.0.3.50', 'Disk /var', 'CRITICAL', 'DISK CRITICAL'));
  const ssh = only('nagios', nagiosService('PROBLEM', 'mq-01', '10.0.3.50', 'SSH', 'CRITICAL', 'CRITICAL - Socket timeout after 10 seconds'));
  // The short host form IMS already sees (examples/alerts.jsonl), with the @here the relay adds.
  const down = only('nagios', delivered({ subtype: 'bot_message', bot_id: 'B0NAGIOS1', username: 'Nagios',
    text: '<!here> PROBLEM Host Alert: mq-01 is DOWN\nInfo: PING CRITICAL - Packet loss = 100%\nDate/Time: Wed Nov 18 16:39:57 UTC 2026' }));
  const up = only('nagios', delivered({ subtype: 'bot_message', bot_id: 'B0NAGIOS1', username: 'Nagios',
    text: 'RECOVERY Host Alert: mq-01 is UP\nInfo: PING OK - Packet loss = 0%, RTA = 0.46 ms\nDate/Time: Wed Nov 18 16:50:50 UTC 2026' }));
  assert.notEqual(disk.key, ssh.key);
  assert.equal(down.key, 'nagios:mq-01');
  assert.deepEqual([down.state, down.severity, up.state, up.key], ['firing', 'DOWN', 'resolved', down.key]);
});

test('nagios: acknowledgement, flapping and downtime notifications are notices about the same alert', () => {
  const key = 'nagios:web-02/HTTP';
  const ack = only('nagios', nagiosService('ACKNOWLEDGEMENT', 'web-02', '10.0.1.12', 'HTTP', 'CRITICAL', 'HTTP CRITICAL', '\nComment: rebooting (kenji)'));
  const start = only('nagios', nagiosService('FLAPPINGSTART', 'web-02', '10.0.1.12', 'HTTP', 'CRITICAL', 'HTTP CRITICAL'));
  const stop = only('nagios', nagiosService('FLAPPINGSTOP', 'web-02', '10.0.1.12', 'HTTP', 'OK', 'HTTP OK'));
  const downtime = only('nagios', nagiosService('DOWNTIMESTART', 'web-02', '10.0.1.12', 'HTTP', 'OK', 'HTTP OK'));
  const over = only('nagios', nagiosService('DOWNTIMEEND', 'web-02', '10.0.1.12', 'HTTP', 'OK', 'HTTP OK'));
  assert.deepEqual([ack, start, stop, downtime, over].map((a) => [a.key, a.state, a.notice]), [
    [key, 'event', 'acknowledged'], [key, 'event', 'flapping-start'], [key, 'event', 'flapping-stop'],
    [key, 'event', 'downtime-start'], [key, 'event', 'downtime-end']]);
  assert.equal(ack.title, 'web-02/HTTP acknowledged (CRITICAL)');
});

test('nagios: the default email body alone (***** Nagios *****) names the same alert', () => {
  // notify-service-by-email's body: Notification Type, Service, Host ($HOSTALIAS$), Address, State, Additional Info.
  const body = only('nagios', delivered({ subtype: 'bot_message', bot_id: 'B0NAGIOS1', username: 'Nagios',
    text: '***** Nagios *****\n\nNotification Type: PROBLEM\n\nService: Disk /var\nHost: mq-01\nAddress: 10.0.3.50\nState: WARNING\n\nDate/Time: Mon Nov 16 01:44:45 UTC 2026\n\nAdditional Info:\n\nDISK WARNING - free space: /var 913 MB (14%)' }));
  assert.deepEqual([body.key, body.state, body.severity], ['nagios:mq-01/Disk /var', 'firing', 'WARNING']);
});

/** khera/slack-integrations slack-nagios-notify (@17e2a37): text `TYPE :emoji:`, one attachment of Host/Service/State/Detail fields. */
function slackNagiosNotify(type: string, emoji: string, host: string, service: string, state: string, detail?: string): RecognisableMessage {
  const fields = [{ title: 'Host', value: host, short: false }, { title: 'Service', value: service, short: false }, { title: 'State', value: state, short: false }];
  if (detail) fields.push({ title: 'Detail', value: detail, short: false });
  return delivered({ subtype: 'bot_message', bot_id: 'B0NAGIOS2', username: 'nagios', icons: { emoji: ':construction:' }, text: `${type} ${emoji}`,
    attachments: [{ id: 1, color: type === 'RECOVERY' ? '2eb886' : 'a30200', fallback: `${type === 'RECOVERY' ? 'Recovery' : 'Problem'}: ${host}/${service}  State: ${state} ${detail ?? ''}`, fields }] });
}

test('nagios: the slack-nagios-notify script keys host and service from its fields; its host notifier says service "host"', () => {
  const fire = only('nagios', slackNagiosNotify('PROBLEM', ':scream:', 'db_primary', 'MySQL Connections', 'WARNING', 'WARNING - 412 client connection threads'));
  const recover = only('nagios', slackNagiosNotify('RECOVERY', ':smiley:', 'db_primary', 'MySQL Connections', 'OK', 'OK - 37 client connection threads'));
  const flapping = only('nagios', slackNagiosNotify('FLAPPINGSTART', ':skull:', 'db_primary', 'MySQL Connections', 'Service detected flapping (notifications disabled)'));
  const hostDown = only('nagios', slackNagiosNotify('PROBLEM', ':scream:', 'db_primary', 'host', 'DOWN', 'PING CRITICAL - Packet loss = 100%'));
  assert.deepEqual([fire.key, fire.state, fire.severity], ['nagios:db_primary/MySQL Connections', 'firing', 'WARNING']);
  assert.deepEqual([recover.key, recover.state], [fire.key, 'resolved']);
  assert.deepEqual([flapping.key, flapping.notice, flapping.title], [fire.key, 'flapping-start', 'db_primary/MySQL Connections started flapping']);
  assert.equal(hostDown.key, 'nagios:db_primary');
});

test('nagios: a person quoting an alert inline, or in a quote block, is not an alert', () => {
  unrecognised(human('did anyone look at `** PROBLEM Service Alert: app-01/SSH is CRITICAL **` earlier?'));
  unrecognised(human('&gt; ** PROBLEM Service Alert: app-01/SSH is CRITICAL **\n&gt; Notification Type: PROBLEM\nthis one is flapping again'));
  unrecognised(human('PROBLEM Host Alert: db-01 is DOWN — is that the maintenance?'));
});

test('the host monitors and CI tools in the recorded corpus are recognised, nothing else is, and every recovery resolves a key that fired', () => {
  const lines = readFileSync(path.resolve(import.meta.dirname, '../examples/alerts.jsonl'), 'utf8').trim().split('\n');
  // Who posts what in the corpus (an edit's poster is inside its message_changed event).
  const integrationOf: Record<string, string> = {
    B0NAGIOS2: 'nagios', B0ZABBIX1: 'zabbix', B0ICINGA1: 'icinga2', B0CHECKMK: 'checkmk', B0JENKINS: 'jenkins', B0GHACTS1: 'github-actions', B0RTBOT01: 'github-actions',
  };
  const fired = new Set<string>();
  const counts: Record<string, number> = {};
  for (const line of lines) {
    const event = JSON.parse(line) as SlackMessageEvent;
    const inner = (event.message ?? {}) as { bot_id?: string };
    const bot = event.bot_id ?? inner.bot_id ?? '';
    const from = String(event.username ?? (event.bot_profile as { name?: string } | undefined)?.name ?? '');
    const { by, alerts } = recognised({ event, text: messageText(event), edited: event.subtype === 'message_changed' || undefined });
    // A recogniser reads the shape, not the poster: the corpus's deploy-bot posting a Nagios alert is Nagios-shaped.
    const expected = integrationOf[bot] ?? (from === 'Nagios' || /^\*\* PROBLEM Service Alert: /.test(String(event.text)) ? 'nagios' : undefined);
    if (expected) {
      if (!by.length && (event.subtype === 'message_changed' || event.thread_ts)) continue; // an update that carries no identity (Zabbix 7's thread reply)
      assert.deepEqual(by, [expected], `${from || bot} message not recognised: ${line.slice(0, 160)}`);
      counts[expected] = (counts[expected] ?? 0) + 1;
      for (const alert of alerts) {
        if (alert.state === 'firing') fired.add(alert.key);
        else if (alert.state === 'resolved') assert.ok(fired.has(alert.key), `resolved before any problem for ${alert.key}`);
      }
    } else {
      assert.deepEqual(by, [], `claimed a message that is not a host monitor's: ${line.slice(0, 160)}`);
    }
  }
  assert.ok((counts.nagios ?? 0) > 100 && (counts.zabbix ?? 0) > 50, JSON.stringify(counts));
  for (const integration of ['icinga2', 'checkmk', 'jenkins', 'github-actions']) assert.ok((counts[integration] ?? 0) >= 2, `${integration}: ${JSON.stringify(counts)}`);
});

// ─── Icinga 2 ────────────────────────────────────────────────────────────────────────────────────

const ICINGA = 'https://icinga.example.com/icingaweb2';
const ICON: Record<string, string> = { PROBLEM: 'red_circle', RECOVERY: 'large_blue_circle', ACKNOWLEDGEMENT: 'ballot_box_with_check', FLAPPINGSTART: 'small_red_triangle', FLAPPINGEND: 'small_red_triangle_down', DOWNTIMESTART: 'arrow_up_small' };

/** nisabek/icinga2-slack-notifications 1.0.4 (slack-notifications-command.conf): one attachment; host.name/service.name in the fallback. */
function icingaService(type: string, last: string, state: string, output: string, comment?: string): RecognisableMessage {
  const change = last === state ? ` is still in state ${state}` : ` transitioned from state ${last} to state ${state}`;
  const fields = [
    { title: 'Host', value: `<${ICINGA}/monitoring/host/show?host=web-01|web-01.example.com>`, short: true },
    { title: 'Service', value: `<${ICINGA}/monitoring/service/show?host=web-01&amp;service=http|HTTP>`, short: true },
  ];
  if (comment) fields.push({ title: 'Comment', value: comment, short: false }, { title: 'Author', value: 'kenji', short: true });
  return delivered({ subtype: 'bot_message', bot_id: 'B0ICINGA1', username: 'icinga2', text: '', attachments: [{
    id: 1, ts: 1794830000, color: state === 'OK' ? '2eb886' : 'a30200', footer: 'Icinga Alerts',
    title: `:${ICON[type]}: ${type}: Service <${ICINGA}/monitoring/service/show?host=web-01&amp;service=http|HTTP>${change}`,
    text: `\`\`\`${output}\`\`\``, fields,
    fallback: `${type}: Service http${change} on host web-01. Plugin output: \`\`\`${output}\`\`\``,
  }] });
}

test('icinga2: a service problem, its renotification and its recovery share the host.name/service.name key', () => {
  const fire = only('icinga2', icingaService('PROBLEM', 'OK', 'CRITICAL', 'HTTP CRITICAL: HTTP/1.1 503 Service Unavailable'));
  const repeat = only('icinga2', icingaService('PROBLEM', 'CRITICAL', 'CRITICAL', 'HTTP CRITICAL: HTTP/1.1 503 Service Unavailable'));
  const recover = only('icinga2', icingaService('RECOVERY', 'CRITICAL', 'OK', 'HTTP OK: HTTP/1.1 200 OK - 10227 bytes'));
  assert.deepEqual(fire, { source: 'icinga2', key: 'icinga2:web-01/http', state: 'firing', title: 'web-01/http is CRITICAL', severity: 'CRITICAL' });
  assert.equal(repeat.key, fire.key);
  assert.deepEqual([recover.key, recover.state], [fire.key, 'resolved']);
});

test('icinga2: acknowledgement and flapping (FLAPPINGSTART, Icinga 2\'s FLAPPINGEND) are notices; a host alert is another key', () => {
  const ack = only('icinga2', icingaService('ACKNOWLEDGEMENT', 'CRITICAL', 'CRITICAL', 'HTTP CRITICAL', 'looking into it'));
  const start = only('icinga2', icingaService('FLAPPINGSTART', 'OK', 'CRITICAL', 'HTTP CRITICAL'));
  const end = only('icinga2', icingaService('FLAPPINGEND', 'CRITICAL', 'OK', 'HTTP OK'));
  assert.deepEqual([ack, start, end].map((a) => [a.key, a.state, a.notice]), [
    ['icinga2:web-01/http', 'event', 'acknowledged'], ['icinga2:web-01/http', 'event', 'flapping-start'], ['icinga2:web-01/http', 'event', 'flapping-stop']]);
  const host = only('icinga2', delivered({ subtype: 'bot_message', bot_id: 'B0ICINGA1', username: 'icinga2', text: '', attachments: [{
    id: 1, color: 'a30200', footer: 'Icinga Alerts', title: `:red_circle: PROBLEM: Host <${ICINGA}/monitoring/host/show?host=db-01|db-01.example.com> transitioned from state UP to state DOWN`,
    text: '```PING CRITICAL - Packet loss = 100%```', fields: [{ title: 'Host', value: `<${ICINGA}/monitoring/host/show?host=db-01|db-01.example.com>`, short: true }],
    fallback: 'PROBLEM: Host db-01 transitioned from state UP to state DOWN. Plugin output: ```PING CRITICAL - Packet loss = 100%```' }] }));
  assert.deepEqual([host.key, host.severity], ['icinga2:db-01', 'DOWN']);
});

/** jjethwa/icinga2-slack-notification (@bd1dba0, slack-service-notification.sh): fields Type, State, Host, Service, Information. */
function jjethwaService(type: string, state: string, information: string): RecognisableMessage {
  return delivered({ subtype: 'bot_message', bot_id: 'B0ICINGA2', username: 'icinga2', text: '', attachments: [{ id: 1,
    color: state === 'OK' ? '44BB77' : type === 'PROBLEM' ? 'FF5566' : '7F7F7F', fallback: `${type} - ${state}: web-01.example.com - Disk /`,
    fields: [{ title: 'Type', value: type, short: true }, { title: 'State', value: state, short: true },
      { title: 'Host', value: `<${ICINGA}/monitoring/host/services?host=web-01|web-01.example.com>`, short: true },
      { title: 'Service', value: `<${ICINGA}/monitoring/service/show?host=web-01&amp;service=disk%20%2F|Disk />`, short: true },
      { title: 'Information', value: information, short: false }] }] });
}

test('icinga2: the icinga2-slack-notification script keys from its Icinga Web 2 links, and its older text form too', () => {
  const fire = only('icinga2', jjethwaService('PROBLEM', 'CRITICAL', 'DISK CRITICAL - free space: / 512 MB (2%)'));
  const ack = only('icinga2', jjethwaService('ACKNOWLEDGEMENT', 'CRITICAL', 'cleaning up old logs'));
  const downtime = only('icinga2', jjethwaService('DOWNTIMESTART', 'CRITICAL', 'disk swap tonight'));
  const recover = only('icinga2', jjethwaService('RECOVERY', 'OK', 'DISK OK - free space: / 17310 MB (67%)'));
  assert.deepEqual([fire.key, fire.state, ack.notice, downtime.notice, recover.state], ['icinga2:web-01/disk /', 'firing', 'acknowledged', 'downtime-start', 'resolved']);
  assert.ok([ack, downtime, recover].every((a) => a.key === fire.key));
  const text = (icon: string, state: string) => delivered({ subtype: 'bot_message', bot_id: 'B0ICINGA3', username: 'icinga2',
    text: `${icon} HOST: <http://icinga.example.com/icingaweb2/monitoring/host/services?host=web-01|web-01.example.com>   SERVICE: <http://icinga.example.com/icingaweb2/monitoring/service/show?host=web-01&amp;service=load|Load>  STATE: ${state}` });
  const oldFire = only('icinga2', text(':bomb:', 'CRITICAL'));
  const oldOk = only('icinga2', text(':beer:', 'OK'));
  assert.deepEqual([oldFire.key, oldFire.state, oldOk.key, oldOk.state], ['icinga2:web-01/load', 'firing', 'icinga2:web-01/load', 'resolved']);
});

test('icinga2: a person pasting the alert\'s words is not an alert', () => {
  unrecognised(human('PROBLEM: Service http transitioned from state OK to state CRITICAL on host web-01 — anyone?'));
  unrecognised(human(':bomb: HOST web-01 is down again'));
});

// ─── Checkmk ─────────────────────────────────────────────────────────────────────────────────────

const CMK = 'https://cmk.example.com/mysite/check_mk/index.py?start_url=view.py%3Fview_name%3D';

/** Checkmk cmk/notification_plugins/slack.py (2.x `_slack_msg`), with a URL prefix set so names are links. */
function checkmkService(type: string, state: string, output: string, service = 'CPU load', color = 'EE0000'): RecognisableMessage {
  const serviceUrl = `${CMK}service%26host%3Dweb-01%26service%3D${encodeURIComponent(service)}%26site%3Dmysite`;
  return delivered({ subtype: 'bot_message', bot_id: 'B0CHECKMK', text: '', attachments: [
    { id: 1, color, fallback: '[no preview available]', title: `Service ${type} notification`,
      text: `Host: <${CMK}hoststatus%26host%3Dweb-01%26site%3Dmysite|web-01> (IP: 10.0.1.11)\nService: <${serviceUrl}|${service}>\nState: ${state}` },
    { id: 2, color, fallback: '[no preview available]', title: 'Additional Info', text: `${output}\nPlease take a look: @kenji`, footer: 'Check_MK notification: Mon Nov 16 10:02:11 CET 2026' },
  ] });
}

test('checkmk: a service problem, its repeat and its recovery share one key; another service is another alert', () => {
  const fire = only('checkmk', checkmkService('PROBLEM', 'CRITICAL', 'CRIT - 15 min load: 9.71 at 4 cores (2.43 per core) (warn/crit at 2.00/4.00)'));
  const repeat = only('checkmk', checkmkService('PROBLEM', 'CRITICAL', 'CRIT - 15 min load: 10.02 at 4 cores'));
  const recover = only('checkmk', checkmkService('RECOVERY', 'OK', 'OK - 15 min load: 0.81 at 4 cores', 'CPU load', '00CC00'));
  const memory = only('checkmk', checkmkService('PROBLEM', 'WARNING', 'WARN - RAM used: 91%', 'Memory', 'FFDD00'));
  assert.deepEqual(fire, { source: 'checkmk', key: 'checkmk:web-01/CPU load', state: 'firing', title: 'web-01/CPU load is CRITICAL', severity: 'CRITICAL' });
  assert.equal(repeat.key, fire.key);
  assert.deepEqual([recover.key, recover.state], [fire.key, 'resolved']);
  assert.notEqual(memory.key, fire.key);
});

test('checkmk: acknowledgement, flapping and downtime notifications are notices; a host notification keys the host', () => {
  const notices = ['ACKNOWLEDGEMENT', 'FLAPPINGSTART', 'FLAPPINGSTOP', 'DOWNTIMESTART', 'DOWNTIMECANCELLED']
    .map((type) => only('checkmk', checkmkService(type, 'CRITICAL', 'CRIT - 15 min load: 9.71')));
  assert.deepEqual(notices.map((a) => [a.key, a.state, a.notice]), [
    ['checkmk:web-01/CPU load', 'event', 'acknowledged'], ['checkmk:web-01/CPU load', 'event', 'flapping-start'],
    ['checkmk:web-01/CPU load', 'event', 'flapping-stop'], ['checkmk:web-01/CPU load', 'event', 'downtime-start'],
    ['checkmk:web-01/CPU load', 'event', 'downtime-end']]);
  // Without a URL prefix format_link gives the bare name.
  const host = only('checkmk', delivered({ subtype: 'bot_message', bot_id: 'B0CHECKMK', text: '', attachments: [
    { id: 1, color: 'EE0000', fallback: '[no preview available]', title: 'Host PROBLEM notification', text: 'Host: db-01 (IP: 10.0.3.31)\nState: DOWN' },
    { id: 2, color: 'EE0000', fallback: '[no preview available]', title: 'Additional Info', text: 'CRIT - 10.0.3.31: rta nan, lost 100%\nPlease take a look: @kenji', footer: 'Check_MK notification: Mon Nov 16 10:04:00 CET 2026' },
  ] }));
  assert.deepEqual([host.key, host.severity, host.title], ['checkmk:db-01', 'DOWN', 'db-01 is DOWN']);
});

test('checkmk: an alert handler run and a person describing the notification are not alerts', () => {
  const handler = checkmkService('PROBLEM', 'CRITICAL', 'x');
  (handler.event.attachments as { title?: string }[])[0].title = 'Service ALERTHANDLER (OK) notification';
  unrecognised(handler);
  unrecognised(human('Service PROBLEM notification for web-01 CPU load, can someone look?\nHost: web-01 (IP: 10.0.1.11)\nState: CRITICAL'));
});

// ─── Zabbix ──────────────────────────────────────────────────────────────────────────────────────

const ZABBIX_PROFILE = { id: 'B0ZABBIX1', deleted: false, name: 'Zabbix', updated: 1731000000, app_id: 'A0ZABBIX01', team_id: 'T0IMSTEAM' };
const PROBLEM_URL = 'https://zabbix.example.com/tr_events.php?triggerid=24713&eventid=4829103';

/** Zabbix 7.x media_slack.yaml (export 7.2) in alarm mode: chat.postMessage of one attachment, subject as title, message as text. */
function zabbix7(title: string, text: string, color: string, extra: Record<string, unknown> = {}): RecognisableMessage {
  return delivered({ user: 'U0ZABBIXB', bot_id: 'B0ZABBIX1', app_id: 'A0ZABBIX01', team: 'T0IMSTEAM', text: '', bot_profile: ZABBIX_PROFILE, ...extra,
    attachments: [{ id: 1, color, fallback: title, title, title_link: PROBLEM_URL, text,
      actions: [{ id: '1', type: 'button', text: 'Open in Zabbix', url: PROBLEM_URL, style: '' }] }] });
}
const PROBLEM_TEXT = 'Problem started at 10:12:44 on 2026.11.16\nProblem name: High CPU utilization (over 90% for 5m)\nHost: web-02\nSeverity: High\nOperational data: Current utilization: 97.3 %\nOriginal problem ID: 4829103\n';

test('zabbix: the problem, its repeat, then its edit to resolved (alarm mode\'s chat.update), are the same alert', () => {
  const problem = zabbix7('Problem: High CPU utilization (over 90% for 5m)', PROBLEM_TEXT, 'E97659');
  const fire = only('zabbix', problem);
  // An escalation step sends the problem again (a new message in `event` mode): the same alert.
  assert.equal(only('zabbix', zabbix7('Problem: High CPU utilization (over 90% for 5m)', PROBLEM_TEXT.replace('97.3', '98.8'), 'E97659')).key, fire.key);
  assert.deepEqual(fire, { source: 'zabbix', key: 'zabbix:High CPU utilization (over 90% for 5m) on web-02', state: 'firing', title: 'High CPU utilization (over 90% for 5m) on web-02', severity: 'High' });
  const subject = 'Resolved in 9m 41s: High CPU utilization (over 90% for 5m)';
  const { wrapper, message } = edit(problem, { attachments: [{ ...(problem.event.attachments as object[])[0], color: '009900', fallback: subject, title: subject,
    text: 'Problem has been resolved in 9m 41s at 10:22:25 on 2026.11.16\nProblem name: High CPU utilization (over 90% for 5m)\nHost: web-02\nSeverity: High\nOriginal problem ID: 4829103\n' }] });
  const resolved = only('zabbix', message);
  assert.deepEqual([resolved.key, resolved.state, resolved.severity], [fire.key, 'resolved', undefined]);
  // Given the message_changed event itself, the recogniser reads the edited message inside it.
  assert.deepEqual(only('zabbix', { event: wrapper, text: messageText(wrapper), edited: true }), resolved);
});

test('zabbix: an update saying acknowledged is a notice; its thread reply carries no identity; another host is another alert', () => {
  const problem = zabbix7('Problem: High CPU utilization (over 90% for 5m)', PROBLEM_TEXT, 'E97659');
  const { message: updated } = edit(problem, { attachments: [{ ...(problem.event.attachments as object[])[0], title: 'Updated: High CPU utilization (over 90% for 5m)',
    fallback: 'Updated: High CPU utilization (over 90% for 5m)',
    text: 'Problem updated at 10:12:44 on 2026.11.16\nKenji Sato (kenji) acknowledged and commented\nProblem name: High CPU utilization (over 90% for 5m)\nHost: web-02\nOperational data: Current utilization: 95.1 %\nOriginal problem ID: 4829103\n' }] });
  const ack = only('zabbix', updated);
  assert.deepEqual([ack.key, ack.state, ack.notice], ['zabbix:High CPU utilization (over 90% for 5m) on web-02', 'event', 'acknowledged']);
  // The reply onUpdate posts in the problem's thread: a context block and the comment in italics.
  unrecognised(delivered({ user: 'U0ZABBIXB', bot_id: 'B0ZABBIX1', app_id: 'A0ZABBIX01', text: '', thread_ts: problem.event.ts, bot_profile: ZABBIX_PROFILE,
    blocks: [{ type: 'context', block_id: 'Zx1', elements: [{ type: 'plain_text', text: 'Event update message', emoji: true }] },
      { type: 'rich_text', block_id: 'Zx2', elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text: 'known, deploy in progress', style: { italic: true } }] }] }] },
    { threadOf: problem.event.ts }));
  const other = only('zabbix', zabbix7('Problem: High CPU utilization (over 90% for 5m)', PROBLEM_TEXT.replace('web-02', 'web-03').replace(/4829103/g, '4829120'), 'E97659'));
  assert.notEqual(other.key, ack.key);
});

/** Zabbix 5.x media_slack.yaml (export 5.4) in alarm mode: fields Host `name [conn]`, Event time, Severity, Opdata… */
function zabbix5(title: string, color: string, fields: { title: string; value: string }[], extra: Record<string, unknown> = {}): RecognisableMessage {
  const url = 'https://zabbix.example.com/tr_events.php?triggerid=13075&eventid=4822893';
  return delivered({ user: 'U0ZABBIXB', bot_id: 'B0ZABBIX1', app_id: 'A0ZABBIX01', text: '', bot_profile: ZABBIX_PROFILE, ...extra,
    attachments: [{ id: 1, color, fallback: title, title, title_link: url, fields: fields.map((f) => ({ ...f, short: f.title !== 'Details' })) }] });
}
const Z5_FIELDS = [{ title: 'Host', value: 'app-03 [10.0.2.23]' }, { title: 'Event time', value: '2026.11.16 17:02:40' }, { title: 'Severity', value: 'Average' }, { title: 'Opdata', value: 'Availability: not available' }];

test('zabbix: the 5.x fields form keys the same way: problem, thread-reply acknowledgement, edit to resolved', () => {
  const problem = zabbix5('Problem: Zabbix agent is not available (for 3m)', 'FFA059', [...Z5_FIELDS, { title: 'Event tags', value: 'scope: availability' }, { title: 'Trigger description', value: '' }]);
  const fire = only('zabbix', problem);
  const ack = only('zabbix', zabbix5('Updated problem in 4m: Zabbix agent is not available (for 3m)', 'FFA059',
    [...Z5_FIELDS, { title: 'Details', value: 'Kenji Sato (kenji) acknowledged problem at 2026.11.16 17:06:12.\nrebooting\n\nCurrent problem status is PROBLEM, age is 4m, acknowledged: Yes.' }],
    { thread_ts: problem.event.ts }));
  const { message } = edit(problem, { attachments: [{ ...(problem.event.attachments as object[])[0], color: '009900', title: 'Resolved in 7m 3s: Zabbix agent is not available (for 3m)' }] });
  const resolved = only('zabbix', message);
  assert.deepEqual([fire.key, fire.severity], ['zabbix:Zabbix agent is not available (for 3m) on app-03', 'Average']);
  assert.deepEqual([ack.key, ack.notice, resolved.key, resolved.state], [fire.key, 'acknowledged', fire.key, 'resolved']);
});

test('zabbix: the default templates posted as text key the update without a problem ID like its problem', () => {
  // As in examples/alerts.jsonl: subject line, then the default message template.
  const text = (body: string) => delivered({ user: 'U0ZABBIXB', bot_id: 'B0ZABBIX1', app_id: 'A0ZABBIX01', bot_profile: ZABBIX_PROFILE, text: body });
  const fire = only('zabbix', text('Problem: MySQL: Service is down on db-02\nProblem started at 09:59:56 on 2026.11.16\nProblem name: MySQL: Service is down\nHost: db-02\nSeverity: High\nOperational data: Status: Down\nOriginal problem ID: 4825794'));
  const ack = only('zabbix', text('Updated problem in 4m: MySQL: Service is down on db-02\nKenji Sato (kenji) acknowledged problem at 2026.11.16 10:03:26.\nknown, deploy in progress\n\nCurrent problem status is PROBLEM, acknowledged: Yes.'));
  const resolved = only('zabbix', text('Resolved: MySQL: Service is down on db-02\nProblem has been resolved at 10:03:09 on 2026.11.16\nProblem name: MySQL: Service is down\nProblem duration: 3m 5s\nHost: db-02\nSeverity: High\nOriginal problem ID: 4825794'));
  assert.deepEqual([fire.key, ack.key, ack.notice, resolved.key, resolved.state], ['zabbix:MySQL: Service is down on db-02', fire.key, 'acknowledged', fire.key, 'resolved']);
});

test('zabbix: a person quoting a problem, and a discovery notice, are not alerts', () => {
  unrecognised(human('&gt; Problem: MySQL: Service is down on db-02\n&gt; Original problem ID: 4825794\nis this the same as yesterday?'));
  unrecognised(human('Problem: the VPN drops every few minutes, anyone else?'));
  unrecognised(zabbix7('Discovery: Up 10.0.9.14', 'Discovery rule: Local network\n\nDevice IP: 10.0.9.14', '97AAB3'));
});

// ─── Jenkins ─────────────────────────────────────────────────────────────────────────────────────

/** jenkinsci/slack-plugin (795.v4b_9705b_e6d47) StandardSlackService.prepareAttachments: the message as fallback and only field. */
function jenkinsMessage(message: string, color: string): RecognisableMessage {
  return delivered({ user: 'U0JENKINS', bot_id: 'B0JENKINS', app_id: 'A0JENKINS1', team: 'T0IMSTEAM', text: '', channel: 'C0ALERTS02',
    attachments: [{ id: 1, color, fallback: message, fields: [{ value: message, short: false }], mrkdwn_in: ['pretext', 'text', 'fields'] }] });
}
const RUN = (n: number) => `<https://ci.example.com/job/payments-api/job/main/${n}/display/redirect|Open>`;

test('jenkins: start, failure, still failing and back to normal are events of one job key', () => {
  const started = only('jenkins', jenkinsMessage(`payments-api » main - #318 Started by user Kenji Sato (${RUN(318)})`, '2eb886'));
  const failed = only('jenkins', jenkinsMessage(`payments-api » main - #318 Failure after 4 min 12 sec (${RUN(318)})\nNo Tests found.`, 'a30200'));
  const still = only('jenkins', jenkinsMessage(`payments-api » main - #319 Still Failing after 3 min 58 sec (${RUN(319)})`, 'a30200'));
  const normal = only('jenkins', jenkinsMessage(`payments-api » main - #320 Back to normal after 22 min (${RUN(320)})`, '2eb886'));
  assert.deepEqual(failed, { source: 'jenkins', key: 'jenkins:payments-api » main', state: 'event', title: 'payments-api » main #318 Failure', severity: 'Failure' });
  assert.deepEqual([started.title, started.severity], ['payments-api » main #318 started', undefined]);
  assert.ok([started, still, normal].every((a) => a.key === failed.key && a.state === 'event'));
  const other = only('jenkins', jenkinsMessage('billing &amp; invoicing - #77 Failure after 1 min 5 sec (<https://ci.example.com/job/billing/77/|Open>)', 'a30200'));
  assert.equal(other.key, 'jenkins:billing & invoicing');
});

test('jenkins: a person pasting the build line is not a build event', () => {
  unrecognised(human(`payments-api » main - #318 Failure after 4 min 12 sec (${RUN(318)}) — flaky test again?`));
});

// ─── GitHub Actions ──────────────────────────────────────────────────────────────────────────────

const SHA = '9f3c2e1a7b5d4c3e2f1a0b9c8d7e6f5a4b3c2d1e';

/** 8398a7/action-slack v3.19.0: the default status text, author_name `8398a7@action-slack`, fields as chosen (default repo,commit). */
function actionSlack(status: 'Succeeded' | 'Failed' | 'Cancelled', fields: string[], emoji: string, color: string): RecognisableMessage {
  const values: Record<string, string> = {
    repo: '<https://github.com/acme/payments-api|acme/payments-api>', commit: `<https://github.com/acme/payments-api/commit/${SHA}|${SHA.slice(0, 8)}>`,
    workflow: `<https://github.com/acme/payments-api/commit/${SHA}/checks|CI>`, job: '<https://github.com/acme/payments-api/runs/31337|test (20.x)>', ref: 'refs/heads/main',
  };
  return delivered({ subtype: 'bot_message', bot_id: 'B0GHACTS1', channel: 'C0ALERTS02', text: `${emoji} ${status} GitHub Actions\n`,
    attachments: [{ id: 1, color, fallback: '[no preview available]', author_name: '8398a7@action-slack', fields: fields.map((title) => ({ title, value: values[title], short: true })) }] });
}

test('github-actions: action-slack failures and successes of a workflow job on a branch share one event key', () => {
  const failed = only('github-actions', actionSlack('Failed', ['repo', 'commit', 'workflow', 'job', 'ref'], ':no_entry:', 'a30200'));
  const passed = only('github-actions', actionSlack('Succeeded', ['repo', 'commit', 'workflow', 'job', 'ref'], ':white_check_mark:', '2eb886'));
  assert.deepEqual(failed, { source: 'github-actions', key: 'github-actions:acme/payments-api/CI/test (20.x)@main', state: 'event', title: 'acme/payments-api/CI/test (20.x) on main: failure', severity: 'failure' });
  assert.deepEqual([passed.key, passed.severity], [failed.key, 'success']);
  const defaults = only('github-actions', actionSlack('Cancelled', ['repo', 'commit'], ':warning:', 'warning'));
  assert.deepEqual([defaults.key, defaults.severity], ['github-actions:acme/payments-api', 'cancelled']);
});

/** rtCamp/action-slack-notify v2.4.0 defaults: username rtBot, fields Ref, Event, Actions URL, Commit, then the message. */
function rtCamp(workflow: string, ref: string, color: string): RecognisableMessage {
  return delivered({ subtype: 'bot_message', bot_id: 'B0RTBOT01', username: 'rtBot', channel: 'C0ALERTS02', text: '', icons: { image_48: 'https://avatars0.githubusercontent.com/u/43742164' },
    attachments: [{ id: 1, color, fallback: 'Bump lodash to 4.17.21', author_name: 'kenji', author_link: 'https://github.com/kenji', author_icon: 'https://github.com/kenji.png?size=32',
      footer: "<https://github.com/rtCamp/github-actions-library|Powered By rtCamp's GitHub Actions Library> | <https://github.com/acme/web/actions/runs/8812|Triggered on this workflow run>",
      fields: [{ title: 'Ref', value: ref, short: true }, { title: 'Event', value: 'push', short: true },
        { title: 'Actions URL', value: `<https://github.com/acme/web/commit/${SHA}/checks|${workflow}>`, short: true },
        { title: 'Commit', value: `<https://github.com/acme/web/commit/${SHA}|${SHA.slice(0, 6)}>`, short: true },
        { title: 'Message', value: 'Bump lodash to 4.17.21', short: false }] }] });
}

test('github-actions: action-slack-notify keys by repository, workflow and branch; another branch is another key', () => {
  const deploy = only('github-actions', rtCamp('Deploy', 'refs/heads/main', 'a30200'));
  const again = only('github-actions', rtCamp('Deploy', 'refs/heads/main', '2eb886'));
  const staging = only('github-actions', rtCamp('Deploy', 'refs/heads/staging', '2eb886'));
  assert.deepEqual([deploy.key, deploy.severity, again.key, again.severity], ['github-actions:acme/web/Deploy@main', 'failure', 'github-actions:acme/web/Deploy@main', 'success']);
  assert.notEqual(staging.key, deploy.key);
});

test('github-actions: slack-github-action\'s documented build-result payload is an event of its repository', () => {
  // docs/sending-data-slack-incoming-webhook.md (v4.0.0): text plus the same line in a section block.
  const build = (status: string) => delivered({ subtype: 'bot_message', bot_id: 'B0SLACKGH', channel: 'C0ALERTS02',
    text: `*GitHub Action build result*: ${status}\n<https://github.com/acme/web/commit/${SHA}>`,
    blocks: [{ type: 'section', block_id: 'q1Zs', text: { type: 'mrkdwn', text: `GitHub Action build result: ${status}\n<https://github.com/acme/web/commit/${SHA}>`, verbatim: false } }] });
  const failed = only('github-actions', build('failure'));
  assert.deepEqual([failed.key, failed.state, failed.severity], ['github-actions:acme/web', 'event', 'failure']);
  assert.equal(only('github-actions', build('success')).key, failed.key);
});

test('github-actions: a person complaining about a failed run is not a CI event', () => {
  unrecognised(human(':no_entry: Failed GitHub Actions again on main, who broke it?'));
  unrecognised(human('GitHub Action build result: failure\nhttps://github.com/acme/web/commit/9f3c2e1 ← was that me?'));
});

// ─── All of them ─────────────────────────────────────────────────────────────────────────────────

test('every recogniser returns undefined, never throws, for messages in unexpected shapes', () => {
  // Built by hand: messageText itself expects what Slack sends.
  const odd = (event: Record<string, unknown>, text = ''): RecognisableMessage => ({ event: { type: 'message', channel: 'C0ALERTS01', ts: nextTs(), ...event } as SlackMessageEvent, text });
  const messages: RecognisableMessage[] = [
    odd({ text: '' }),
    odd({ attachments: [null, 7, 'x', { fields: [null, { title: 3 }] }] }),
    odd({ subtype: 'message_changed', message: null }),
    odd({ subtype: 'message_changed', message: { text: 42, attachments: { length: 1 } } }),
    odd({ subtype: 'bot_message', text: '** PROBLEM Service Alert: nohost is CRITICAL **\nNotification Type: PROBLEM' }),
    odd({ attachments: [{ title: 'Service PROBLEM notification', text: 42 }, { title: 'Additional Info' }] }),
    odd({ attachments: [{ title: 42, title_link: 'https://z/tr_events.php?triggerid=1&eventid=2', fields: 'none' }] }),
    odd({ blocks: [null, { type: 'section', text: null }], text: 'GitHub Action build result: failure' }),
  ];
  for (const message of messages) for (const recogniser of RECOGNISERS) {
    assert.doesNotThrow(() => recogniser.recognise(message), `${recogniser.name} threw`);
    assert.equal(recogniser.recognise(message), undefined, `${recogniser.name} recognised ${JSON.stringify(message.event).slice(0, 120)}`);
  }
});

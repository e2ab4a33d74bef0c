/**
 * The metrics recognisers (Alertmanager, Grafana, Datadog, CloudWatch via AWS Chatbot and via the
 * terraform-aws-notify-slack Lambda, Sentry, Uptime Kuma) against messages shaped as Slack delivers each
 * integration's default notification: fire, repeat, recovery on one key, another alert on another key, and a
 * near miss nobody may take for the alert. Each fixture says where its shape comes from.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { messageText, type SlackMessageEvent } from '../ims.ts';
import { recognise, type AlertIdentity, type RecognisableMessage } from '../ims-recognisers.ts';
import { RECOGNISERS } from '../ims-recognisers.ts';

let clock = 1794800000;
const nextTs = (): string => `${clock++}.000100`;

/** The message as the lifecycle hands it to recognisers: the event, and the text the rules see. */
function read(event: Omit<SlackMessageEvent, 'type' | 'ts'> & { ts?: string }, extra: Partial<RecognisableMessage> = {}): RecognisableMessage {
  const full = { type: 'message', ts: nextTs(), ...event } as SlackMessageEvent;
  return { event: full, text: messageText(full), ...extra };
}

/** Which recogniser understood the message, and what it says, or undefined. */
const reading = (message: RecognisableMessage) => recognise(message, RECOGNISERS);

/** The one alert a message is about, asserting which recogniser read it. */
function only(message: RecognisableMessage, recogniser: string): AlertIdentity {
  const result = reading(message);
  assert.equal(result?.recogniser, recogniser, `expected ${recogniser} to read: ${message.text.slice(0, 120)}`);
  assert.equal(result.alerts.length, 1, `expected one alert, got ${JSON.stringify(result.alerts)}`);
  return result.alerts[0];
}

// ─── Alertmanager ────────────────────────────────────────────────────────────────────────────────

/**
 * alertmanager v0.34 `notify/slack/slack.go` + `template/default.tmpl`: one attachment, title = `__subject`,
 * fallback = title ` | ` titlelink, colour danger/good, mrkdwn_in fallback/pretext/text, username Alertmanager;
 * the default text is empty (Slack drops empty fields).
 */
function alertmanagerDefault(subject: string, text?: string): RecognisableMessage {
  const link = 'http://alertmanager.monitoring.svc:9093/#/alerts?receiver=slack-infra';
  return read({
    subtype: 'bot_message', channel: 'C0ALERTS01', bot_id: 'B0PROMAM1', username: 'Alertmanager', text: '',
    attachments: [{
      id: 1, color: subject.startsWith('[FIRING') ? 'danger' : 'good', fallback: `${subject} | ${link}`,
      title: subject, title_link: link, ...(text ? { text } : {}), mrkdwn_in: ['fallback', 'pretext', 'text'],
    }],
  });
}

/** default.tmpl's `__text_alert_list`, as `telegram.default.message` / `sns.default.message` print it under `Alerts Firing:` / `Alerts Resolved:`. */
const textAlert = (instance: string) =>
  `Labels:\n - alertname = HighCPU\n - instance = ${instance}\n - job = node\n - severity = warning\nAnnotations:\n - summary = CPU above 90% on ${instance}\nSource: http://prometheus:9090/graph?g0.expr=cpu_busy+%3E+0.9&amp;g0.tab=1\n`;

/** The widespread Slack text template (`*Alert:*` … `*Details:*` • `*name:*` \`value\`), as in examples/alerts.jsonl. */
const detailsAlert = (job: string) =>
  `*Alert:* One or more targets are unreachable. - \`warning\`\n*Description:* 10% of the ${job}/${job} targets in monitoring namespace are down.\n*Details:*\n  • *alertname:* \`TargetDown\`\n  • *cluster:* \`prod\`\n  • *job:* \`${job}\`\n  • *namespace:* \`monitoring\`\n  • *severity:* \`warning\``;

describe('alertmanager', () => {
  test('a default notification is one alert keyed by its group labels, the same when it repeats and resolves', () => {
    const fired = only(alertmanagerDefault('[FIRING:1] HighCPU (web-1:9100 node warning)'), 'alertmanager');
    assert.deepEqual(fired, { source: 'alertmanager', key: 'alertmanager:HighCPU', state: 'firing', title: 'HighCPU (web-1:9100 node warning)' });
    // A second instance joins the group: the common labels shrink, the group (and its key) stays.
    const repeated = only(alertmanagerDefault('[FIRING:2] HighCPU (node warning)'), 'alertmanager');
    assert.equal(repeated.key, fired.key);
    assert.equal(repeated.state, 'firing');
    const resolved = only(alertmanagerDefault('[RESOLVED] HighCPU (node warning)'), 'alertmanager');
    assert.equal(resolved.key, fired.key);
    assert.equal(resolved.state, 'resolved');
  });

  test('groups by alertname and instance are different alerts, and so are different alertnames', () => {
    const web1 = only(alertmanagerDefault('[FIRING:1] HighCPU web-1:9100 (node warning)'), 'alertmanager');
    const web2 = only(alertmanagerDefault('[FIRING:1] HighCPU web-2:9100 (node warning)'), 'alertmanager');
    const disk = only(alertmanagerDefault('[FIRING:1] DiskFull web-1:9100 (node critical)'), 'alertmanager');
    assert.equal(new Set([web1.key, web2.key, disk.key]).size, 3);
  });

  test('a grouped notification listing its alerts resolves them member by member', () => {
    const both = reading(alertmanagerDefault('[FIRING:2] HighCPU (node warning)', `Alerts Firing:\n${textAlert('web-1:9100')}${textAlert('web-2:9100')}`));
    assert.equal(both?.recogniser, 'alertmanager');
    assert.deepEqual(both.alerts.map((a) => [a.key, a.state]), [
      ['alertmanager:HighCPU{instance="web-1:9100",job="node",severity="warning"}', 'firing'],
      ['alertmanager:HighCPU{instance="web-2:9100",job="node",severity="warning"}', 'firing'],
    ]);
    assert.equal(both.alerts[0].title, 'HighCPU on web-1:9100');
    assert.equal(both.alerts[0].severity, 'warning');

    const one = reading(alertmanagerDefault('[FIRING:1] HighCPU (node warning)',
      `Alerts Firing:\n${textAlert('web-2:9100')}\n\nAlerts Resolved:\n${textAlert('web-1:9100')}`));
    assert.deepEqual(one?.alerts.map((a) => [a.key, a.state]), [
      ['alertmanager:HighCPU{instance="web-2:9100",job="node",severity="warning"}', 'firing'],
      ['alertmanager:HighCPU{instance="web-1:9100",job="node",severity="warning"}', 'resolved'],
    ]);
  });

  test('the *Alert:* … *Details:* template gives each listed alert its labels, in the state of the title', () => {
    const fired = reading(alertmanagerDefault('[FIRING:2] TargetDown (prod monitoring warning)', `${detailsAlert('node-exporter')}\n\n${detailsAlert('blackbox')}`));
    assert.deepEqual(fired?.alerts.map((a) => a.key), [
      'alertmanager:TargetDown{cluster="prod",job="node-exporter",namespace="monitoring",severity="warning"}',
      'alertmanager:TargetDown{cluster="prod",job="blackbox",namespace="monitoring",severity="warning"}',
    ]);
    const resolved = reading(alertmanagerDefault('[RESOLVED] TargetDown (prod monitoring warning)', detailsAlert('blackbox')));
    assert.equal(resolved?.alerts[0].key, fired?.alerts[1].key);
    assert.equal(resolved?.alerts[0].state, 'resolved');
  });

  test('a person quoting a subject, or sharing the notification, is not an Alertmanager notification', () => {
    assert.equal(reading(read({ channel: 'C0ALERTS01', user: 'U0KENJI01', text: '[FIRING:1] HighCPU (node warning) again, anyone on it?' })), undefined);
    const original = alertmanagerDefault('[FIRING:1] HighCPU (web-1:9100 node warning)').event;
    // Slack's "share message": the shared message rides along as an attachment marked is_share / is_msg_unfurl.
    const shared = read({ channel: 'C0ALERTS02', user: 'U0KENJI01', text: 'is this ours?',
      attachments: [{ ...original.attachments![0], is_share: true, is_msg_unfurl: true, from_url: 'https://acme.slack.com/archives/C0ALERTS01/p1794800000000100' }] });
    assert.equal(reading(shared), undefined);
  });
});

// ─── Grafana ─────────────────────────────────────────────────────────────────────────────────────

/**
 * grafana/alerting `receivers/slack/v1/slack.go` + `templates/default_template.go` (Grafana 11): title and
 * fallback `default.title`, text `default.message`, colour #D63232/#36a64f, footer `Grafana v…` with its icon,
 * title_link the common rule URL; posted through a webhook as username Grafana. Slack encodes & as &amp;.
 */
function grafanaAlert(instance: string, value: string): string {
  return `\nValue: A=${value}, C=1\nLabels:\n - alertname = HighCPU\n - grafana_folder = Infra\n - instance = ${instance}\n - job = node\nAnnotations:\n - summary = CPU above 90% on ${instance}\n` +
    `Source: https://grafana.example.com/alerting/grafana/cdx81h2kq9ybkf/view?orgId=1\n` +
    `Silence: https://grafana.example.com/alerting/silence/new?alertmanager=grafana&amp;matcher=alertname%3DHighCPU&amp;matcher=instance%3D${instance}&amp;orgId=1\n`;
}
function grafanaMessage(title: string, text: string): RecognisableMessage {
  return read({
    subtype: 'bot_message', channel: 'C0ALERTS02', bot_id: 'B0GRAFANA', username: 'Grafana', text: '',
    attachments: [{
      id: 1, color: title.startsWith('[FIRING') ? 'D63232' : '36a64f', fallback: title, title, text,
      title_link: 'https://grafana.example.com/alerting/grafana/cdx81h2kq9ybkf/view?orgId=1',
      footer: 'Grafana v11.3.0', footer_icon: 'https://grafana.com/static/assets/img/fav32.png', ts: 1794800000,
    }],
  });
}

describe('grafana', () => {
  const web1 = 'grafana:HighCPU{grafana_folder="Infra",instance="web-1:9100",job="node"}';
  const web2 = 'grafana:HighCPU{grafana_folder="Infra",instance="web-2:9100",job="node"}';

  test('a default notification is read by the grafana recogniser, each alert keyed by its labels', () => {
    const fired = reading(grafanaMessage('[FIRING:1] HighCPU Infra (web-1:9100 node)', `**Firing**\n${grafanaAlert('web-1:9100', '97.3')}`));
    assert.equal(fired?.recogniser, 'grafana');
    assert.deepEqual(fired.alerts, [{ source: 'grafana', key: web1, state: 'firing', title: 'HighCPU on web-1:9100' }]);
    const repeated = reading(grafanaMessage('[FIRING:1] HighCPU Infra (web-1:9100 node)', `**Firing**\n${grafanaAlert('web-1:9100', '95.0')}`));
    assert.deepEqual(repeated?.alerts.map((a) => [a.key, a.state]), [[web1, 'firing']]);
  });

  test('a mixed notification resolves one member while the other fires; then the group resolves', () => {
    const mixed = reading(grafanaMessage('[FIRING:1, RESOLVED:1] HighCPU Infra (node)',
      `**Firing**\n${grafanaAlert('web-2:9100', '93.1')}\n\n**Resolved**\n${grafanaAlert('web-1:9100', '40.2')}`));
    assert.deepEqual(mixed?.alerts.map((a) => [a.key, a.state]), [[web2, 'firing'], [web1, 'resolved']]);
    const resolved = reading(grafanaMessage('[RESOLVED] HighCPU Infra (web-2:9100 node)', `**Resolved**\n${grafanaAlert('web-2:9100', '38.0')}`));
    assert.deepEqual(resolved?.alerts.map((a) => [a.key, a.state]), [[web2, 'resolved']]);
  });

  test('a custom text without labels keys the group by its group labels', () => {
    const custom = only(grafanaMessage('[FIRING:1] DiskFull Infra (db-1)', 'Disk almost full on db-1'), 'grafana');
    assert.equal(custom.key, 'grafana:DiskFull Infra');
  });

  test('a person pasting Grafana’s text is not a Grafana notification', () => {
    assert.equal(reading(read({ channel: 'C0ALERTS02', user: 'U0KENJI01', text: `**Firing**\n${grafanaAlert('web-1:9100', '97.3')}` })), undefined);
  });
});

// ─── Datadog ─────────────────────────────────────────────────────────────────────────────────────

/**
 * Datadog's Slack app, as a verbatim 2026 capture shows it: text empty, an attachment titled `<Transition>: <monitor>`
 * linking to `/monitors/<id>?…&event_id=…&link_source=monitor_notif&link_monitor_id=<id>…`, text the monitor
 * message and `Notified: @slack-…`, then a `View in Log Explorer` attachment. Colours as in examples/alerts.jsonl.
 */
function datadogMessage(title: string, monitor: number, group?: string): RecognisableMessage {
  const colors: Record<string, string> = { Triggered: 'a30200', 'Re-Triggered': 'a30200', Warn: 'daa038', Recovered: '2eb886' };
  const groupParam = group ? `group=${encodeURIComponent(group)}&` : '';
  return read({
    channel: 'C0ALERTS02', user: 'U05UPHTF70Q', bot_id: 'B05U31SMQNQ', app_id: 'A0DATADOG1', team: 'T0IMSTEAM', text: '',
    attachments: [{
      id: 1, color: colors[title.split(':')[0]] ?? 'a30200', fallback: title, title,
      title_link: `https://us3.datadoghq.com/monitors/${monitor}?${groupParam}from_ts=1794799000000&to_ts=1794800200000&event_id=8788641826233093636&link_source=monitor_notif&link_monitor_id=${monitor}&link_event_id=8788641826233093636`,
      text: '@slack-alerts\n\nMore than 20.0 log events matched in the last 5m against the monitored query: <https://us3.datadoghq.com/logs?query=env%3Aproduction|`env:production status:error`>\nNotified: @slack-alerts',
      mrkdwn_in: ['text'],
    }, { id: 2, title: 'View in Log Explorer', title_link: `https://us3.datadoghq.com/logs?query=env%3Aproduction&link_monitor_id=${monitor}`, fallback: 'View in Log Explorer' }],
    bot_profile: { id: 'B05U31SMQNQ', name: 'Datadog', app_id: 'A0DATADOG1', deleted: false },
  });
}

describe('datadog', () => {
  test('triggered, re-triggered and recovered notifications of a monitor share its key', () => {
    const fired = only(datadogMessage('Triggered: API error logs above 20 in 5m', 444839), 'datadog');
    assert.deepEqual(fired, { source: 'datadog', key: 'datadog:444839', state: 'firing', title: 'API error logs above 20 in 5m' });
    const warn = only(datadogMessage('Warn: API error logs above 20 in 5m', 444839), 'datadog');
    const again = only(datadogMessage('Re-Triggered: API error logs above 20 in 5m', 444839), 'datadog');
    const recovered = only(datadogMessage('Recovered: API error logs above 20 in 5m', 444839), 'datadog');
    assert.deepEqual([warn, again, recovered].map((a) => [a.key, a.state]),
      [['datadog:444839', 'firing'], ['datadog:444839', 'firing'], ['datadog:444839', 'resolved']]);
  });

  test('each group of a multi-alert monitor, and each monitor, is its own alert; a priority is its severity', () => {
    const web1 = only(datadogMessage('Triggered: [P2] CPU high on host:web-1', 170773010, 'host:web-1'), 'datadog');
    const web2 = only(datadogMessage('Triggered: [P2] CPU high on host:web-2', 170773010, 'host:web-2'), 'datadog');
    const other = only(datadogMessage('Triggered: D1 Error - DB Load', 17338583), 'datadog');
    assert.equal(web1.key, 'datadog:170773010/host:web-1');
    assert.equal(web1.severity, 'P2');
    assert.equal(new Set([web1.key, web2.key, other.key]).size, 3);
  });

  test('the event-title form [P1] [Triggered on {…}] is read too, its scope naming the group', () => {
    const alert = only(datadogMessage('[P1] [Triggered on {service:checkout}] Checkout latency high', 1001), 'datadog');
    assert.deepEqual([alert.key, alert.state, alert.severity], ['datadog:1001/service:checkout', 'firing', 'P1']);
    const recovered = only(datadogMessage('[P1] [Recovered on {service:checkout}] Checkout latency high', 1001), 'datadog');
    assert.deepEqual([recovered.key, recovered.state], ['datadog:1001/service:checkout', 'resolved']);
  });

  test('another app’s “Triggered:” attachment is not Datadog’s', () => {
    const ci = read({
      subtype: 'bot_message', channel: 'C0ALERTS02', bot_id: 'B0GITHUB1', username: 'GitHub', text: '',
      attachments: [{ id: 1, color: '36a64f', title: 'Triggered: deploy workflow on main', title_link: 'https://github.com/acme/shop/actions/runs/123', fallback: 'Triggered: deploy workflow on main' }],
    });
    assert.equal(reading(ci), undefined);
  });
});

// ─── CloudWatch: AWS Chatbot ─────────────────────────────────────────────────────────────────────

/**
 * AWS Chatbot (Amazon Q Developer in chat applications) for a CloudWatch alarm, as examples/alerts.jsonl has it:
 * a `CloudWatch Alarm | <name> | <region>` header block, the NewStateReason, State/Previous/Metric/Account fields,
 * a console link. (Chatbot's renderer is closed source; the reason text is CloudWatch's own.)
 */
function chatbotAlarm(name: string, region: string, state: string, previous: string): RecognisableMessage {
  const reason = state === 'ALARM'
    ? `Threshold Crossed: 3 out of the last 5 datapoints [144.304 (16/11/26 08:28:00)] was greater than the threshold (50.0) (minimum 1 datapoint for ${previous} -&gt; ALARM transition).`
    : `Threshold Crossed: 1 out of the last 1 datapoints [2.076 (16/11/26 08:44:00)] was not greater than the threshold (50.0) (minimum 1 datapoint for ${previous} -&gt; ${state} transition).`;
  return read({
    channel: 'C0ALERTS01', user: 'U0AWSCHAT', bot_id: 'B0CLOUDW1', app_id: 'A0AWSCHAT1', team: 'T0IMSTEAM', text: '',
    blocks: [
      { type: 'section', block_id: 'XXEvu', text: { type: 'mrkdwn', text: `*CloudWatch Alarm | ${name} | ${region}*`, verbatim: false } },
      { type: 'section', block_id: 'XHbqU', text: { type: 'mrkdwn', text: reason, verbatim: false } },
      { type: 'section', block_id: 'P6w4E', fields: [
        { type: 'mrkdwn', text: `*State*\n${state}`, verbatim: false }, { type: 'mrkdwn', text: `*Previous*\n${previous}`, verbatim: false },
        { type: 'mrkdwn', text: '*Metric*\nAWS/ApplicationELB HTTPCode_ELB_5XX_Count', verbatim: false },
        { type: 'mrkdwn', text: '*Account*\n123456789012 · Europe (Ireland)', verbatim: false },
      ] },
      { type: 'context', block_id: 'Fy53N', elements: [{ type: 'mrkdwn', text: `<https://console.aws.amazon.com/cloudwatch/home?region=${region}#alarmsV2:alarm/${name}|View in CloudWatch> | 2026-11-16T08:29:49Z`, verbatim: false }] },
    ],
    bot_profile: { id: 'B0CLOUDW1', name: 'AWS Chatbot', app_id: 'A0AWSCHAT1', deleted: false },
  });
}

describe('cloudwatch-chatbot', () => {
  test('ALARM fires, ALARM again repeats, OK resolves, on the account/region/alarm key', () => {
    const fired = only(chatbotAlarm('alb-5xx-high', 'eu-west-1', 'ALARM', 'OK'), 'cloudwatch-chatbot');
    assert.deepEqual(fired, { source: 'cloudwatch-chatbot', key: 'cloudwatch-chatbot:123456789012/eu-west-1/alb-5xx-high', state: 'firing', title: 'alb-5xx-high (eu-west-1) is ALARM', severity: 'ALARM' });
    const again = only(chatbotAlarm('alb-5xx-high', 'eu-west-1', 'ALARM', 'INSUFFICIENT_DATA'), 'cloudwatch-chatbot');
    const ok = only(chatbotAlarm('alb-5xx-high', 'eu-west-1', 'OK', 'ALARM'), 'cloudwatch-chatbot');
    assert.deepEqual([again.key, again.state, ok.key, ok.state], [fired.key, 'firing', fired.key, 'resolved']);
  });

  test('INSUFFICIENT_DATA is a notice, neither a problem nor a recovery', () => {
    assert.equal(only(chatbotAlarm('alb-5xx-high', 'eu-west-1', 'INSUFFICIENT_DATA', 'ALARM'), 'cloudwatch-chatbot').state, 'event');
  });

  test('another alarm, or the same name in another region, is another alert', () => {
    const keys = [chatbotAlarm('alb-5xx-high', 'eu-west-1', 'ALARM', 'OK'), chatbotAlarm('alb-5xx-high', 'us-east-1', 'ALARM', 'OK'),
      chatbotAlarm('lambda-thumbnailer-errors', 'eu-west-1', 'ALARM', 'OK')].map((m) => only(m, 'cloudwatch-chatbot').key);
    assert.equal(new Set(keys).size, 3);
  });

  test('a person writing the alarm header in a message is not AWS Chatbot', () => {
    const human = read({ channel: 'C0ALERTS01', user: 'U0KENJI01', text: 'CloudWatch Alarm | alb-5xx-high | eu-west-1 is ALARM again, State: ALARM',
      blocks: [{ type: 'rich_text', block_id: 'h1', elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text: 'CloudWatch Alarm | alb-5xx-high | eu-west-1 is ALARM again, State: ALARM' }] }] }] });
    assert.equal(reading(human), undefined);
  });
});

// ─── CloudWatch: terraform-aws-notify-slack Lambda ───────────────────────────────────────────────

/** terraform-aws-modules/terraform-aws-notify-slack v7.5.0 `format_cloudwatch_alarm` (its snapshot test), username from `slack_username`. */
function lambdaAlarm(name: string, state: string, old: string, region = 'us-east-1'): RecognisableMessage {
  return read({
    subtype: 'bot_message', channel: 'C0ALERTS01', bot_id: 'B0NOTIFY1', username: 'notify-slack', icons: { emoji: ':aws:' }, text: '',
    attachments: [{
      id: 1, color: { OK: 'good', INSUFFICIENT_DATA: 'warning', ALARM: 'danger' }[state], fallback: `Alarm ${name} triggered`,
      text: `AWS CloudWatch notification - ${name}`,
      fields: [
        { title: 'Alarm Name', value: `\`${name}\``, short: true },
        { title: 'Alarm Description', value: '`p99 latency of checkout above 2s`', short: false },
        { title: 'Alarm reason', value: `\`Threshold Crossed: 1 datapoint [2.4 (16/11/26 09:01:00)] was greater than the threshold (2.0).\``, short: false },
        { title: 'Old State', value: `\`${old}\``, short: true },
        { title: 'Current State', value: `\`${state}\``, short: true },
        { title: 'Link to Alarm', value: `https://console.aws.amazon.com/cloudwatch/home?region=${region}#alarm:alarmFilter=ANY;name=${encodeURIComponent(name)}`, short: false },
      ],
    }],
  });
}

describe('cloudwatch-lambda', () => {
  test('ALARM, ALARM again and OK share the region/alarm key', () => {
    const fired = only(lambdaAlarm('checkout-p99', 'ALARM', 'OK'), 'cloudwatch-lambda');
    assert.deepEqual(fired, { source: 'cloudwatch-lambda', key: 'cloudwatch-lambda:us-east-1/checkout-p99', state: 'firing', title: 'checkout-p99 is ALARM', severity: 'ALARM' });
    const again = only(lambdaAlarm('checkout-p99', 'ALARM', 'INSUFFICIENT_DATA'), 'cloudwatch-lambda');
    const ok = only(lambdaAlarm('checkout-p99', 'OK', 'ALARM'), 'cloudwatch-lambda');
    assert.deepEqual([again.key, again.state, ok.key, ok.state], [fired.key, 'firing', fired.key, 'resolved']);
  });

  test('another alarm is another alert', () => {
    assert.notEqual(only(lambdaAlarm('orders-queue-depth', 'ALARM', 'OK'), 'cloudwatch-lambda').key, 'cloudwatch-lambda:us-east-1/checkout-p99');
  });

  test('another notification of the same Lambda (a GuardDuty finding) is not an alarm', () => {
    const finding = read({
      subtype: 'bot_message', channel: 'C0ALERTS01', bot_id: 'B0NOTIFY1', username: 'notify-slack', text: '',
      attachments: [{ id: 1, color: 'danger', fallback: 'GuardDuty Finding: SAMPLE Unprotected port on EC2 instance i-123123123 is being probed',
        fields: [{ title: 'Description', value: '`EC2 instance has an unprotected port which is being probed by a known malicious host.`' }, { title: 'Finding Type', value: '`Recon:EC2/PortProbeUnprotectedPort`' }] }],
    });
    assert.equal(reading(finding), undefined);
  });
});

// ─── Sentry ──────────────────────────────────────────────────────────────────────────────────────

/**
 * getsentry/sentry `integrations/slack/message_builder/issues.py` (Block Kit): `text` the fallback
 * `[project] title`, the first block's block_id `{"issue":…,"rule":…}`, culprit, quoted message, state context,
 * Resolve/Archive/assignee actions, footer context. After Resolve in Slack Sentry rebuilds it: white circle,
 * `*Issue resolved by <@U…>*`, no actions. The wire shape matches a verbatim 2026 capture.
 */
function sentryBlocks(issue: number, title: string, culprit: string, options: { resolvedBy?: string; state?: string } = {}): RecognisableMessage {
  const blocks: unknown[] = [
    { type: 'section', block_id: `{"issue":${issue},"rule":3657647}`, text: { type: 'mrkdwn', text: `${options.resolvedBy ? ':white_circle:' : ':red_circle:'} <https://acme.sentry.io/issues/${issue}/?referrer=slack&amp;notification_uuid=35f355ed-a668-4817-8944-3f1365672acd&amp;environment=production&amp;alert_rule_id=3657647&amp;alert_type=issue|*${title.split(':')[0]}*>`, verbatim: false } },
    { type: 'context', block_id: 'c1', elements: [{ type: 'mrkdwn', text: culprit, verbatim: false }] },
    { type: 'section', block_id: 'q1', text: { type: 'mrkdwn', text: `\`\`\`${title.split(': ').slice(1).join(': ')}\`\`\``, verbatim: false } },
    ...(options.resolvedBy ? [{ type: 'section', block_id: 'a1', text: { type: 'mrkdwn', text: `*Issue resolved by <@${options.resolvedBy}>*`, verbatim: false } }] : []),
    { type: 'context', block_id: 's1', elements: [{ type: 'mrkdwn', text: `State: *${options.state ?? 'New'}*   First Seen: *Just now*`, verbatim: false }] },
    ...(options.resolvedBy ? [] : [{ type: 'actions', block_id: 'b1', elements: [
      { type: 'button', action_id: 'resolve_dialog', text: { type: 'plain_text', text: 'Resolve', emoji: true }, value: 'resolve_dialog' },
      { type: 'button', action_id: 'archive_dialog', text: { type: 'plain_text', text: 'Archive', emoji: true }, value: 'archive_dialog' },
      { type: 'external_select', action_id: 'assign', placeholder: { type: 'plain_text', text: 'Select Assignee...', emoji: true } },
    ] }]),
    { type: 'context', block_id: 'f1', elements: [{ type: 'mrkdwn', text: `Project: <https://acme.sentry.io/issues/?project=4511647571574784|checkout-api>    Alert: <https://acme.sentry.io/organizations/acme/alerts/rules/checkout-api/3657647/details/|Notify #alerts via Slack>    Short ID: CHECKOUT-API-38`, verbatim: false }] },
    { type: 'divider', block_id: 'd1' },
  ];
  return read({ channel: 'C0ALERTS02', user: 'U0SENTRYB', bot_id: 'B0SENTRY1', app_id: 'A0SENTRY01', team: 'T0IMSTEAM', text: `[checkout-api] ${title}`, blocks },
    options.resolvedBy ? { edited: true } : {});
}

/** The legacy attachment (pre-Block Kit `build_group_attachment`), as in examples/alerts.jsonl; resolving appends the action note and greys it. */
function sentryAttachment(issue: number, resolvedBy?: string): RecognisableMessage {
  return read({
    channel: 'C0ALERTS02', user: 'U0SENTRYB', bot_id: 'B0SENTRY1', app_id: 'A0SENTRY01', team: 'T0IMSTEAM', text: '',
    attachments: [{
      id: 1, callback_id: `{"issue": ${issue}}`, fallback: '[orders-api] Slow DB Query: SELECT * FROM orders WHERE status = %s',
      title: 'Slow DB Query: SELECT * FROM orders WHERE status = %s', title_link: `https://acme.sentry.io/issues/${issue}/?referrer=slack`,
      text: resolvedBy ? `orders.views.list_orders\n*Issue resolved by <@${resolvedBy}>*` : 'orders.views.list_orders',
      fields: [{ title: 'environment', value: 'production', short: true }, { title: 'level', value: 'error', short: true }],
      footer: `ORDERS-API-UJL via <https://acme.sentry.io/organizations/acme/alerts/rules/orders-api/233/details/|New issue in production>`,
      ts: 1794815695, color: resolvedBy ? '#EDEEEF' : '#E03E2F', mrkdwn_in: ['text'],
      actions: resolvedBy ? [] : [
        { id: '1', name: 'resolve_dialog', text: 'Resolve...', type: 'button', value: 'resolve_dialog', style: '' },
        { id: '2', name: 'status', text: 'Ignore', type: 'button', value: 'ignored', style: '' },
        { id: '3', name: 'assign', text: 'Select Assignee...', type: 'select', data_source: 'external' },
      ],
    }],
  }, resolvedBy ? { edited: true } : {});
}

describe('sentry', () => {
  const typeError = "TypeError: Cannot read properties of undefined (reading 'payload_transform')";

  test('an issue alert fires, alerts again, and is resolved by editing the message, all on the issue key', () => {
    const fired = only(sentryBlocks(7700748352, typeError, 'processRequest(index)'), 'sentry');
    assert.deepEqual(fired, { source: 'sentry', key: 'sentry:7700748352', state: 'firing', title: `[checkout-api] ${typeError}` });
    const again = only(sentryBlocks(7700748352, typeError, 'processRequest(index)', { state: 'Ongoing' }), 'sentry');
    const resolved = only(sentryBlocks(7700748352, typeError, 'processRequest(index)', { resolvedBy: 'U0KENJI01' }), 'sentry');
    assert.deepEqual([again.key, again.state, resolved.key, resolved.state], [fired.key, 'firing', fired.key, 'resolved']);
  });

  test('another issue is another alert', () => {
    const other = only(sentryBlocks(7700727844, 'SyntaxError: Unexpected end of JSON input', 'Lock.fetch(index)'), 'sentry');
    assert.equal(other.key, 'sentry:7700727844');
  });

  test('the legacy attachment is keyed by its issue, and resolved by its edit', () => {
    const fired = only(sentryAttachment(4423933997), 'sentry');
    assert.deepEqual([fired.key, fired.state, fired.severity], ['sentry:4423933997', 'firing', 'error']);
    const resolved = only(sentryAttachment(4423933997, 'U0KENJI01'), 'sentry');
    assert.deepEqual([resolved.key, resolved.state], ['sentry:4423933997', 'resolved']);
  });

  test('a person’s link to an issue, unfurled by the Sentry app, is not an alert', () => {
    const pasted = read({
      channel: 'C0ALERTS02', user: 'U0KENJI01', text: 'is <https://acme.sentry.io/issues/4423933997/> back?',
      attachments: [{ ...sentryAttachment(4423933997).event.attachments![0], is_app_unfurl: true, app_unfurl_url: 'https://acme.sentry.io/issues/4423933997/', actions: [] }],
    });
    assert.equal(reading(pasted), undefined);
  });
});

// ─── Uptime Kuma ─────────────────────────────────────────────────────────────────────────────────

/**
 * louislam/uptime-kuma 2.x `server/notification-providers/slack.js` with rich messages: text the line
 * `[<monitor>] [🔴 Down] <msg>` (`server/model/monitor.js`), an attachment of blocks: header (monitor name),
 * `*Message*` / `*Time (<zone>)*` fields, a `Visit Uptime Kuma` button to `/dashboard/<id>`.
 */
function kumaRich(monitor: string, up: boolean, msg: string): RecognisableMessage {
  const line = `[${monitor}] [${up ? '✅ Up' : '🔴 Down'}] ${msg}`;
  return read({
    subtype: 'bot_message', channel: 'C0ALERTS02', bot_id: 'B0KUMA001', username: 'Uptime Kuma', icons: { emoji: ':robot_face:' }, text: line,
    attachments: [{ id: 1, color: up ? '2eb886' : 'e01e5a', fallback: '[no preview available]', blocks: [
      { type: 'header', block_id: 'k1', text: { type: 'plain_text', text: monitor, emoji: true } },
      { type: 'section', block_id: 'k2', fields: [{ type: 'mrkdwn', text: `*Message*\n${line}`, verbatim: false }, { type: 'mrkdwn', text: '*Time (Europe/Berlin)*\n2026-11-16 14:03:11', verbatim: false }] },
      { type: 'actions', block_id: 'k3', elements: [{ type: 'button', action_id: 'x1', text: { type: 'plain_text', text: 'Visit Uptime Kuma', emoji: true }, value: 'Uptime-Kuma', url: 'https://status.example.com/dashboard/12' }] },
    ] }],
  });
}

describe('uptime-kuma', () => {
  test('down, down again and up share the monitor key', () => {
    const down = only(kumaRich('Checkout API', false, 'timeout of 48000ms exceeded'), 'uptime-kuma');
    assert.deepEqual(down, { source: 'uptime-kuma', key: 'uptime-kuma:Checkout API', state: 'firing', title: 'Checkout API is down' });
    const again = only(kumaRich('Checkout API', false, 'Request failed with status code 503'), 'uptime-kuma');
    const up = only(kumaRich('Checkout API', true, '200 - OK'), 'uptime-kuma');
    assert.deepEqual([again.key, again.state, up.key, up.state], [down.key, 'firing', down.key, 'resolved']);
  });

  test('the plain 2.x and 1.x texts are read the same, and another monitor is another alert', () => {
    const plain = read({ subtype: 'bot_message', channel: 'C0ALERTS02', bot_id: 'B0KUMA001', username: 'Uptime Kuma', text: 'Checkout API\n[Checkout API] [🔴 Down] timeout of 48000ms exceeded' });
    const legacy = read({ subtype: 'bot_message', channel: 'C0ALERTS02', bot_id: 'B0KUMA001', username: 'Uptime Kuma', text: 'Uptime Kuma Alert\n[Search API] [✅ Up] 200 - OK' });
    assert.equal(only(plain, 'uptime-kuma').key, 'uptime-kuma:Checkout API');
    assert.deepEqual([only(legacy, 'uptime-kuma').key, only(legacy, 'uptime-kuma').state], ['uptime-kuma:Search API', 'resolved']);
  });

  test('a person saying a monitor is down is not Uptime Kuma', () => {
    assert.equal(reading(read({ channel: 'C0ALERTS02', user: 'U0KENJI01', text: 'Checkout API shows [🔴 Down] on the status page again' })), undefined);
  });
});

describe('every metrics recogniser', () => {
  test('says undefined, without throwing, to messages in unexpected shapes', () => {
    // Built by hand: `messageText` itself expects attachments to be objects.
    const raw = (event: Record<string, unknown>): RecognisableMessage => ({ event: { type: 'message', channel: 'C0ALERTS01', ts: nextTs(), ...event } as SlackMessageEvent, text: '' });
    const odd: RecognisableMessage[] = [
      raw({ text: '' }),
      raw({ text: '', attachments: [null, { title: 42, title_link: 7, fields: [null, { title: 'Current State' }], text: ['x'] }], blocks: [null, 'x', { type: 'section', fields: 'no', text: 3 }] }),
      raw({ text: '', attachments: 'none', blocks: { type: 'section' } }),
      raw({ text: '', blocks: [{ type: 'section', block_id: '{"issue":', text: { type: 'mrkdwn', text: '<https://acme.sentry.io/issues/1/|x>' } }] }),
    ];
    for (const message of odd) for (const recogniser of RECOGNISERS) {
      assert.equal(recogniser.recognise(message), undefined, `${recogniser.name} on ${JSON.stringify(message.event).slice(0, 80)}`);
    }
  });
});

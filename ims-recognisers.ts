/**
 * Alert identity from the Slack messages alone: built-in recognisers for the messages common integrations post
 * by default (text, attachments or blocks, as Slack delivers them) give each alert a correlation key and a
 * state. What no recogniser understands is keyed by a rule's `key` template over its named groups, or by its
 * normalised text. A recogniser reads the message's shape only: whether the poster may raise alerts at all
 * (a person quoting an alert is not an alert) is the lifecycle's decision.
 */
import { createHash } from 'node:crypto';
import type { SlackMessageEvent } from './ims.ts';

/**
 * Where an alert stands, as its message says: `firing` (a problem, or a repeat of it), `resolved` (a recovery, OK),
 * or `event` (a one-off: a CI build, a deployment, an acknowledgement or flapping notice about the alert).
 */
export type AlertState = 'firing' | 'resolved' | 'event';

/** What an `event` says about its alert, when it is about one (Nagios ACKNOWLEDGEMENT, FLAPPINGSTART…). */
export type AlertNotice = 'acknowledged' | 'flapping-start' | 'flapping-stop' | 'downtime-start' | 'downtime-end';

/** One alert a message is about (a grouped notification, e.g. Alertmanager's, is about several). */
export interface AlertIdentity {
  /** The recogniser (`alertmanager`, `nagios`…), `rule` for a rule's `key` template, `text` for the normalised text. */
  source: string;
  /**
   * The correlation key: the same for every message about this alert (fire, repeat, recovery), different for
   * different alerts. Namespaced by its source: `nagios:web-03/HTTP`, `alertmanager:HighCPU{instance="web-1"}`.
   */
  key: string;
  state: AlertState;
  /** One short line naming the alert, for digests and the report: `web-03/HTTP is CRITICAL`. */
  title: string;
  /** The severity as the integration says it (`critical`, `WARNING`, `P1`), when it says one. */
  severity?: string;
  notice?: AlertNotice;
}

/** What a recogniser reads: the message as Slack delivered it, and its readable text (as rules see it). */
export interface RecognisableMessage {
  event: SlackMessageEvent;
  /** `messageText(event)`: `text`, else the readable text of attachments and blocks; entities decoded. */
  text: string;
  /** An edit of an earlier message (`message_changed`): Zabbix and Sentry change state by editing their alert. */
  edited?: boolean;
  /** A reply in the thread of `threadOf` (an integration replying to its own alert with the recovery). */
  threadOf?: string;
}

/** Understands the default Slack messages of one integration. */
export interface Recogniser {
  /** Lower case, as keys are namespaced: `alertmanager`. */
  name: string;
  /**
   * The alerts `message` is about, or undefined when it is not this integration's message (another recogniser, or
   * the rules' key, takes it). Never throws: a message in an unexpected shape is not this integration's.
   */
  recognise(message: RecognisableMessage): AlertIdentity[] | undefined;
}

/** The first recogniser's reading of a message, with its name; undefined when none understands it. */
export function recognise(message: RecognisableMessage, recognisers: readonly Recogniser[] = RECOGNISERS): { recogniser: string; alerts: AlertIdentity[] } | undefined {
  for (const recogniser of recognisers) {
    let alerts: AlertIdentity[] | undefined;
    try {
      alerts = recogniser.recognise(message);
    } catch {
      alerts = undefined;
    }
    if (alerts?.length) return { recogniser: recogniser.name, alerts };
  }
  return undefined;
}

// ─── Helpers for recognisers ─────────────────────────────────────────────────────────────────────

/** Slack mrkdwn made plain for keys and titles: `<url|label>` → label, `*bold*`/`_it_`/`~s~`/backticks dropped, spaces collapsed. */
export function plainLine(text: string): string {
  return text
    // Each link stops at the next `<`: a text of thousands of `<` is read in linear time.
    .replace(/<([^|<>]+)\|([^<>]+)>/g, '$2')
    .replace(/<(?:mailto:)?([^<>]+)>/g, '$1')
    // Emphasis marks at word edges only: `db_primary` keeps its underscore.
    .replace(/(^|[\s(])[*_~]+(?=\S)/g, '$1')
    .replace(/(\S)[*_~]+(?=$|[\s).,:;!?])/g, '$1')
    .replace(/`+/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * The key of an alert nothing recognised: its text with what changes between repeats of the same alert taken out
 * (dates, times, UUIDs, links), lower case, spaces collapsed; a text longer than 200 characters is its first 160
 * and a hash of the whole. Numbers stay: `alert 7` and
 * `alert 8`, `CPU 91%` and `CPU 97%` are different alerts to IMS unless the rule's `key` says otherwise.
 */
export function normalisedTextKey(text: string): string {
  const normal = plainLine(text).toLowerCase()
    .replace(/https?:\/\/\S+/g, '<url>')
    .replace(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/g, '<id>')
    .replace(/\b\d{4}[-/]\d{2}[-/]\d{2}([ t]\d{2}:\d{2}(:\d{2})?(\.\d+)?(z|[+-]\d{2}:?\d{2})?)?/g, '<time>')
    .replace(/\b\d{1,2}:\d{2}(:\d{2})?\b/g, '<time>')
    .replace(/\b(mon|tue|wed|thu|fri|sat|sun)\w* (jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\w* \d{1,2}\b/g, '<date>')
    .replace(/\s+/g, ' ')
    .trim();
  // Long texts keep their start readable and the rest as a digest: two alerts that differ only past the start stay two.
  return normal.length <= 200 ? `text:${normal}` : `text:${normal.slice(0, 160)}…#${createHash('sha256').update(normal).digest('hex').slice(0, 16)}`;
}

// ═══ Metrics and error tracking ═══════════════════════════════════════════════════════════════════
/*
 * Recognisers for the metrics and error-tracking integrations: Prometheus Alertmanager, Grafana Alerting,
 * Datadog, AWS CloudWatch (AWS Chatbot, and the terraform-aws-notify-slack Lambda), Sentry and Uptime Kuma.
 * Each reads the message as the integration's default Slack notifier builds it (cited on each recogniser),
 * keys it by what the integration itself treats as the alert's identity, and says undefined to anything else.
 */
type Attachment = NonNullable<RecognisableMessage['event']['attachments']>[number];
type Labels = Record<string, string>;

// ─── Shared helpers ──────────────────────────────────────────────────────────────────────────────

const str = (value: unknown): string => (typeof value === 'string' ? value : '');

/** Slack's entity escapes undone (attachments and blocks arrive encoded, as `text` does). */
const decode = (text: string): string => text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

/** Links reduced to their label, bold and code marks dropped; unlike `plainLine`, underscores stay (label names have them). */
const unmark = (text: string): string =>
  decode(text).replace(/<([^|<>]+)\|([^<>]+)>/g, '$2').replace(/<([^<>]+)>/g, '$1').replace(/[*`]/g, '').trim();

/** The message's own attachments: not link unfurls nor shared messages (a person pasting or sharing an alert is not one). */
function attachmentsOf(message: RecognisableMessage): Attachment[] {
  const list = Array.isArray(message.event.attachments) ? message.event.attachments : [];
  return list.filter((a) => a && typeof a === 'object' && !a.is_app_unfurl && !a.app_unfurl_url && !a.from_url && !a.is_share && !a.is_msg_unfurl);
}

/** The mrkdwn and plain texts of section, header and context blocks (top level, then inside attachments), in order. */
function blockTexts(blocks: unknown): string[] {
  const texts: string[] = [];
  for (const block of Array.isArray(blocks) ? blocks : []) {
    const b = (block ?? {}) as Record<string, unknown>;
    const text = (b.text ?? {}) as Record<string, unknown>;
    if (typeof text.text === 'string') texts.push(text.text);
    for (const part of [...(Array.isArray(b.fields) ? b.fields : []), ...(b.type === 'context' && Array.isArray(b.elements) ? b.elements : [])]) {
      const p = (part ?? {}) as Record<string, unknown>;
      if (typeof p.text === 'string') texts.push(p.text);
    }
  }
  return texts;
}

const allBlockTexts = (message: RecognisableMessage): string[] =>
  [...blockTexts(message.event.blocks), ...attachmentsOf(message).flatMap((a) => blockTexts(a.blocks))];

/** One line of plain text for titles and keys: like `plainLine`, but identifiers keep their underscores. */
const oneLine = (text: string): string => unmark(text).replace(/\s+/g, ' ').trim();

const fieldValue = (attachment: Attachment, title: string): string =>
  unmark(str(attachment.fields?.find((f) => str(f?.title).toLowerCase() === title.toLowerCase())?.value));

/** The labels a title names an alert's target by, most specific first (kube-state-metrics' `job` names the exporter, not the target). */
const TARGET_LABELS = ['instance', 'pod', 'host', 'hostname', 'node', 'deployment', 'statefulset', 'daemonset',
  'horizontalpodautoscaler', 'job_name', 'service', 'job', 'namespace'];

/** `alertname{label="value",…}`: every label but alertname, sorted, as Prometheus identifies an alert. */
function labelsKey(source: string, labels: Labels): string {
  const pairs = Object.keys(labels).filter((name) => name !== 'alertname').sort().map((name) => `${name}="${labels[name]}"`);
  return `${source}:${labels.alertname}{${pairs.join(',')}}`;
}

function labelledAlert(source: string, labels: Labels, state: AlertState): AlertIdentity {
  const target = TARGET_LABELS.map((name) => labels[name]).find(Boolean);
  return {
    source, key: labelsKey(source, labels), state,
    title: target ? `${labels.alertname} on ${target}` : labels.alertname,
    ...(labels.severity ? { severity: labels.severity } : {}),
  };
}

interface ListedAlert { labels: Labels; state: AlertState }

/**
 * The alerts a grouped notification lists, each with its labels and state. Reads the label lists the common
 * templates print: Alertmanager's and Grafana's `Labels:` / ` - name = value` (`__text_alert_list`), and the
 * widespread Slack template's `*Alert:*` … `*Details:*` / `• *name:* \`value\``. A `Firing` / `Alerts Resolved:`
 * heading (or a `Status:` line) sets the state of what follows; otherwise the message's own state holds.
 */
function listedAlerts(text: string, messageState: AlertState): ListedAlert[] {
  const alerts: ListedAlert[] = [];
  let current: ListedAlert | undefined;
  let section: AlertState | undefined;
  let mode: 'labels' | 'other' = 'other';
  const finish = (): void => {
    if (current?.labels.alertname) alerts.push(current);
    current = undefined;
  };
  const start = (): ListedAlert => {
    finish();
    return (current = { labels: {}, state: section ?? messageState });
  };
  for (const raw of decode(text).split('\n')) {
    const line = unmark(raw).replace(/:[a-z0-9_+-]+:/g, '').trim();
    if (!line) continue;
    const heading = /^[^A-Za-z0-9]*(?:\[\d+\]\s*)?(?:alerts?\s+)?(firing|resolved)\s*(?:\(\d+\)|:?\s*\d+)?\s*:?[^A-Za-z0-9]*$/i.exec(line);
    const bullet = /^\s*[-•·]\s+(.*)$/.exec(raw);
    const label = bullet && /^([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|:)\s*(.*)$/.exec(unmark(bullet[1]));
    if (heading) {
      finish();
      section = heading[1].toLowerCase() === 'firing' ? 'firing' : 'resolved';
      mode = 'other';
    } else if (/^(labels|details)\s*:?$/i.test(line)) {
      if (/^labels/i.test(line) || !current || Object.keys(current.labels).length) start();
      mode = 'labels';
    } else if (/^alert\s*:/i.test(line)) {
      start();
      mode = 'other';
    } else if (label && mode === 'labels') {
      const alert = !current || label[1] in current.labels ? start() : current;
      alert.labels[label[1]] = label[2].trim();
    } else if (/^status\s*:\s*(firing|resolved)\b/i.test(line) && current) {
      current.state = /resolved/i.test(line) ? 'resolved' : 'firing';
    } else if (!bullet) {
      mode = 'other';
    }
  }
  finish();
  return alerts;
}

/** Alertmanager's and Grafana's `__subject`: `[FIRING:2] group values (common values)`, `[RESOLVED] …`. */
const SUBJECT = /^\[(FIRING:\d+(?:,\s*RESOLVED:\d+)?|RESOLVED)\]\s*(.*)$/;

/** One alert per listed member when the text lists them, else the group, keyed by its group labels. */
function groupedAlerts(source: string, attachment: Attachment, subject: RegExpExecArray): AlertIdentity[] | undefined {
  const state: AlertState = subject[1].startsWith('FIRING') ? 'firing' : 'resolved';
  const members = listedAlerts(str(attachment.text), state);
  if (members.length) return members.map((m) => labelledAlert(source, m.labels, m.state));
  // The group labels (before the common labels' parentheses) are the group's identity: which common labels
  // show changes as alerts join and leave the group, so they are in the title, not the key.
  const whole = oneLine(subject[2]);
  // Before the first `(` when the subject ends with the common labels' `(…)` (read without a regex: a hostile title of
  // thousands of `(` stays linear).
  const open = whole.endsWith(')') ? whole.indexOf('(') : -1;
  const group = (open >= 0 ? whole.slice(0, open).trimEnd() : whole) || whole;
  return whole ? [{ source, key: `${source}:${group}`, state, title: whole }] : undefined;
}

/** Grafana's Slack contact point: footer `Grafana v…`, its icon, its `**Firing**` text, or `, RESOLVED:n` in the title. */
const isGrafana = (a: Attachment): boolean =>
  /^Grafana\b/.test(str(a.footer)) || /grafana\.com/.test(str(a.footer_icon)) ||
  /^\*\*(Firing|Resolved)\*\*$/m.test(str(a.text)) || /^\[FIRING:\d+, RESOLVED:\d+\]/.test(str(a.title));

// ─── Recognisers ─────────────────────────────────────────────────────────────────────────────────

/**
 * Prometheus Alertmanager's Slack notifier (`notify/slack/slack.go`, `template/default.tmpl`, v0.28–v0.34):
 * one attachment, `title`/`fallback` = `__subject` (`[FIRING:2] HighCPU (node warning)`, `[RESOLVED] …`),
 * `title_link` the alerts page, colour danger/good, username `Alertmanager` (`AlertManager` before v0.25).
 * The default text is empty: the group is the alert, keyed by its group labels. With a text template that lists
 * the alerts (default.tmpl's `Alerts Firing:` / `__text_alert_list`, or the common `*Alert:* … *Details:*`
 * template), each listed alert is its own, keyed by alertname and its labels, in the state its section gives.
 */
const alertmanager: Recogniser = {
  name: 'alertmanager',
  recognise(message) {
    for (const attachment of attachmentsOf(message)) {
      const subject = SUBJECT.exec(str(attachment.title)) ?? SUBJECT.exec(str(attachment.fallback).split(' | ')[0]);
      if (subject && !isGrafana(attachment)) return groupedAlerts('alertmanager', attachment, subject);
    }
    return undefined;
  },
};

/**
 * Grafana Alerting's Slack contact point (grafana/alerting `receivers/slack/v1/slack.go`,
 * `templates/default_template.go`, Grafana 9–12): one attachment, title `default.title`
 * (`[FIRING:1, RESOLVED:1] HighCPU Infra (…)`), text `default.message` (`**Firing**` / `**Resolved**`, then per
 * alert `Value:`, `Labels:`, ` - name = value`, `Annotations:`, `Source:`…), footer `Grafana v11.2.0`,
 * username `Grafana`. Each listed alert is keyed by alertname and labels, resolved member by member.
 */
const grafana: Recogniser = {
  name: 'grafana',
  recognise(message) {
    for (const attachment of attachmentsOf(message)) {
      const subject = SUBJECT.exec(str(attachment.title));
      if (subject && isGrafana(attachment)) return groupedAlerts('grafana', attachment, subject);
    }
    return undefined;
  },
};

/** Datadog's monitor transitions ($ALERT_TRANSITION), as they begin a notification's title. */
const DATADOG_TRANSITION = /^(?:\[(P[1-5])\]\s*)?(?:\[(Triggered|Re-Triggered|Recovered|Warn|Re-Warn|No Data|Re-No Data|Renotify)(?: on \{([^}]*)\})?\]|(Triggered|Re-Triggered|Recovered|Warn|Re-Warn|No Data|Re-No Data|Renotify)(?: on \{([^}]*)\})?:)\s*(.+)$/;

/**
 * Datadog's Slack integration, monitor notifications: an attachment titled `Triggered: <monitor name>`
 * (`Recovered:`, `Warn:`, `Re-Triggered:`, `No Data:`…; the event title form `[P2] [Triggered on {host:a}] …`
 * too), `title_link` `https://app.datadoghq.com/monitors/<id>?group=…&event_id=…&link_source=monitor_notif`,
 * text the monitor's message. Shape from a verbatim Slack capture (2026) and Datadog's `include_tags` docs.
 * Keyed by monitor id and its group (multi-alert), which stay the same from trigger to recovery.
 */
const datadog: Recogniser = {
  name: 'datadog',
  recognise(message) {
    const botName = str((message.event.bot_profile as { name?: unknown } | undefined)?.name) || str(message.event.username);
    for (const attachment of attachmentsOf(message)) {
      const title = DATADOG_TRANSITION.exec(oneLine(str(attachment.title)));
      const link = decode(str(attachment.title_link));
      const fromDatadog = /^https:\/\/[\w.-]*(datadoghq\.(com|eu)|ddog-gov\.com)\//.test(link) || /^Datadog$/i.test(botName);
      if (!title || !fromDatadog) continue;
      const transition = title[2] ?? title[4];
      const name = title[6].replace(/^\[(P[1-5])\]\s*/, '').trim();
      const priority = title[1] ?? /^\[(P[1-5])\]/.exec(title[6])?.[1];
      const monitor = /\/monitors[/#](\d+)/.exec(link)?.[1];
      let group = title[3] ?? title[5] ?? '';
      try { group = new URL(link).searchParams.get('group') ?? group; } catch { /* no link: the title's scope stands */ }
      const key = `datadog:${monitor ?? name}${group ? `/${group}` : ''}`;
      const state: AlertState = transition === 'Recovered' ? 'resolved' : 'firing';
      return [{ source: 'datadog', key, state, title: group ? `${name} on ${group}` : name, ...(priority ? { severity: priority } : {}) }];
    }
    return undefined;
  },
};

/** A CloudWatch alarm state as the notification says it. INSUFFICIENT_DATA is neither a problem nor a recovery. */
function alarmState(value: string): AlertState | undefined {
  const v = value.toUpperCase();
  return v === 'ALARM' ? 'firing' : v === 'OK' ? 'resolved' : v === 'INSUFFICIENT_DATA' ? 'event' : undefined;
}

/**
 * AWS Chatbot (Amazon Q Developer in chat applications) notifications for CloudWatch alarms: a header
 * `CloudWatch Alarm | <alarm name> | <region>` (optionally `| Account: <id>`), in an attachment title or a
 * section block, then the state reason, state fields and a console link. Chatbot's renderer is not public: this
 * reads the header and the state wherever they are (a `State`/`Current State` field, else the `OK -> ALARM
 * transition` CloudWatch writes into NewStateReason). Keyed by account (when shown), region and alarm name.
 */
const cloudwatchChatbot: Recogniser = {
  name: 'cloudwatch-chatbot',
  recognise(message) {
    // Cheap first: the header names CloudWatch in the readable text (or, when the message has its own text, in its blocks).
    if (!message.text.includes('CloudWatch') && !(message.event.text && JSON.stringify(message.event.blocks ?? []).includes('CloudWatch'))) return undefined;
    const texts = [
      ...attachmentsOf(message).flatMap((a) => [str(a.title), str(a.fallback), str(a.pretext), str(a.text),
        ...(a.fields ?? []).map((f) => `*${str(f?.title)}*\n${str(f?.value)}`)]),
      ...allBlockTexts(message),
    ].map((t) => unmark(t).replace(/^(?::[a-z0-9_+-]+:\s*)+/, ''));
    const headerAt = texts.findIndex((t) => /^\W*CloudWatch Alarm \| [^|\n]+ \| [a-z]{2}(-[a-z]+)+-\d/.test(t));
    if (headerAt < 0) return undefined;
    const parts = texts[headerAt].replace(/^\W*/, '').split('\n')[0].split(' | ').map((p) => p.trim());
    const [name, region] = [parts[1], parts[2]];
    const rest = texts.join('\n');
    const account = /Account:?\s*\n?\s*(\d{12})\b/.exec(rest)?.[1];
    const stated = /^(?:Current )?State:?\s*\n?\s*(ALARM|OK|INSUFFICIENT_DATA)\b/im.exec(rest)?.[1]
      ?? /(?:->|→)\s*(ALARM|OK|INSUFFICIENT_DATA) transition/.exec(rest)?.[1];
    const state = stated ? alarmState(stated) : undefined;
    if (!name || !state) return undefined;
    return [{
      source: 'cloudwatch-chatbot', key: `cloudwatch-chatbot:${account ? `${account}/` : ''}${region}/${name}`, state,
      title: `${name} (${region}) is ${stated}`, severity: stated,
    }];
  },
};

/**
 * The terraform-aws-modules/terraform-aws-notify-slack Lambda (`functions/notify_slack.py`,
 * `format_cloudwatch_alarm`, v7.5.0; the same fields since v1): an attachment with colour good/warning/danger,
 * fallback `Alarm <name> triggered`, fields `Alarm Name`, `Alarm Description`, `Alarm reason`, `Old State`,
 * `Current State` (values in backticks since v5) and `Link to Alarm` (`…/cloudwatch/home?region=<r>#alarm:…`).
 * Keyed by region and alarm name.
 */
const cloudwatchLambda: Recogniser = {
  name: 'cloudwatch-lambda',
  recognise(message) {
    for (const attachment of attachmentsOf(message)) {
      const name = fieldValue(attachment, 'Alarm Name');
      const current = fieldValue(attachment, 'Current State');
      const state = alarmState(current);
      if (!name || !state) continue;
      const region = /[?&]region=([a-z0-9-]+)/.exec(fieldValue(attachment, 'Link to Alarm'))?.[1];
      return [{
        source: 'cloudwatch-lambda', key: `cloudwatch-lambda:${region ? `${region}/` : ''}${name}`, state,
        title: `${name} is ${current.toUpperCase()}`, severity: current.toUpperCase(),
      }];
    }
    return undefined;
  },
};

/** Sentry's action note, written into the alert when someone acts on it from Slack (`build_action_text`). */
const SENTRY_ACTION = /\bIssue (resolved|ignored|archived|re-opened) by\b|\bIssue assigned to .+ by\b/;

function sentryState(texts: string[]): Pick<AlertIdentity, 'state' | 'notice'> {
  const action = texts.map((t) => SENTRY_ACTION.exec(unmark(t))).find(Boolean);
  if (!action) return { state: 'firing' };
  if (!action[1]) return { state: 'event', notice: 'acknowledged' };
  return { state: action[1] === 're-opened' ? 'firing' : 'resolved' };
}

const issueIdOf = (json: string): string | undefined => {
  // Most messages have no such id: not parsing them spares a thrown error each (some 10 µs).
  if (!json.startsWith('{') || !json.includes('issue')) return undefined;
  try { const id = (JSON.parse(json) as { issue?: unknown })?.issue; return id === undefined ? undefined : String(id); } catch { return undefined; }
};

/**
 * Sentry's Slack integration, issue alerts (getsentry/sentry `integrations/slack/message_builder/issues.py`).
 * Block Kit (2024–): `text` the fallback `[project] title`; first block `block_id` `{"issue":<id>,"rule":<id>}`
 * and mrkdwn `:red_circle: <…/issues/<id>/?referrer=slack…|*Title*>`; Resolve/Archive buttons. Legacy
 * attachments: `callback_id` `{"issue":<id>}`, fallback `[project] title`, Resolve…/Ignore/assignee actions.
 * Resolving from Slack edits the message: buttons gone, `*Issue resolved by <@U…>*` added (archived → resolved,
 * re-opened → firing, assigned → acknowledged). Keyed by issue id.
 */
const sentry: Recogniser = {
  name: 'sentry',
  recognise(message) {
    const blocks = Array.isArray(message.event.blocks) ? message.event.blocks as Record<string, unknown>[] : [];
    const first = blocks[0] ?? {};
    const blockIssue = issueIdOf(str(first.block_id));
    if (blockIssue && /\/issues\/\d+/.test(str((first.text as { text?: unknown } | undefined)?.text))) {
      const texts = blockTexts(blocks);
      const title = oneLine(str(message.event.text)) || plainLine(decode(texts[0] ?? '').replace(/:[a-z_]+:\s*/g, ''));
      return [{ source: 'sentry', key: `sentry:${blockIssue}`, title, ...sentryState(texts) }];
    }
    for (const attachment of attachmentsOf(message)) {
      const issue = issueIdOf(str(attachment.callback_id)) ?? /sentry\.io\/(?:organizations\/[^/]+\/)?issues\/(\d+)/.exec(str(attachment.title_link))?.[1];
      if (!issue || !/\/issues\/\d+/.test(str(attachment.title_link))) continue;
      const level = fieldValue(attachment, 'level');
      return [{
        source: 'sentry', key: `sentry:${issue}`, title: oneLine(str(attachment.fallback) || str(attachment.title)),
        ...sentryState([str(attachment.text)]), ...(level ? { severity: level } : {}),
      }];
    }
    return undefined;
  },
};

/** Uptime Kuma's notification line (`server/model/monitor.js`): `[<monitor name>] [🔴 Down] <msg>` / `[✅ Up]`. */
const KUMA_LINE = /^\[(.+)\] \[(?:🔴|:red_circle:) Down\]|^\[(.+)\] \[(?:✅|:white_check_mark:) Up\]/m;

/**
 * Uptime Kuma's Slack provider (`server/notification-providers/slack.js`, 1.23 and 2.x): `text` is the line
 * `[<monitor>] [🔴 Down] <msg>` (2.x plain: `<monitor>\n[<monitor>] [🔴 Down] …`; 1.x: `Uptime Kuma Alert\n…`),
 * and with rich messages an attachment of blocks (header = monitor name, `*Message*` field with the line).
 * Keyed by monitor name.
 */
const uptimeKuma: Recogniser = {
  name: 'uptime-kuma',
  recognise(message) {
    const line = [str(message.event.text), ...allBlockTexts(message)].map((t) => KUMA_LINE.exec(decode(t).replace(/^\*Message\*\n/, ''))).find(Boolean);
    if (!line) return undefined;
    const monitor = (line[1] ?? line[2]).trim();
    const state: AlertState = line[1] ? 'firing' : 'resolved';
    return [{ source: 'uptime-kuma', key: `uptime-kuma:${monitor}`, state, title: `${oneLine(monitor)} is ${line[1] ? 'down' : 'up'}` }];
  },
};

/** The recognisers of this file, in the order they are tried (Alertmanager before Grafana: it yields to Grafana's shape). */

// ═══ Host monitors and CI ═══════════════════════════════════════════════════════════════════════
/*
 * Recognisers for host monitors (Nagios, Icinga 2, Checkmk, Zabbix) and CI (Jenkins, GitHub Actions), each built from
 * the integration's own notifier code or default template, named in its doc comment. They read the message as Slack
 * stores it (text, attachments, fields) and take names from the structured parts, not from free text, so a key stays
 * the same across the problem, its repeats and its recovery.
 */
type SlackEvent = RecognisableMessage['event'];

// ─── Shared helpers ──────────────────────────────────────────────────────────────────────────────

/** The message itself: the edited message inside a `message_changed` event (Zabbix edits its alert), else the event. */
function posted(message: RecognisableMessage): SlackEvent {
  const inner = message.event.subtype === 'message_changed' ? message.event.message : undefined;
  return inner && typeof inner === 'object' ? inner as SlackEvent : message.event;
}

function eventAttachments(event: SlackEvent): Attachment[] {
  return Array.isArray(event.attachments) ? event.attachments.filter((a): a is Attachment => !!a && typeof a === 'object') : [];
}



/**
 * Slack mrkdwn links made their labels (`<url|web-01>` → web-01), entities decoded. Unlike `plainLine` it keeps `_` and
 * `*`, which host and service names contain (`db_primary`), so keys keep the names as the monitor spells them.
 */
function label(mrkdwn: string): string {
  return decode(mrkdwn.replace(/<([^|<>]*)\|([^<>]*)>/g, '$2').replace(/<([^|<>]*)>/g, '$1')).trim();
}

/** A query parameter of the first link in `mrkdwn` (`host` of `<…/show?host=web-01&amp;service=http|HTTP>`). */
function linkParam(mrkdwn: string, name: string): string | undefined {
  const url = /<([^|<>]+)\|/.exec(mrkdwn)?.[1];
  const value = url && new RegExp(`[?&]${name}=([^&]+)`).exec(decode(url))?.[1];
  if (!value) return undefined;
  try { return decodeURIComponent(value).trim(); } catch { return value.trim(); }
}

function fieldsOf(attachment: Attachment | undefined): { title?: unknown; value?: unknown }[] {
  return Array.isArray(attachment?.fields) ? attachment.fields.filter((f) => !!f && typeof f === 'object') : [];
}

/** The value of an attachment field by its title (case-insensitive), as stored (mrkdwn). */
function fieldOf(attachment: Attachment | undefined, title: string): string | undefined {
  const field = fieldsOf(attachment).find((f) => str(f.title).toLowerCase() === title.toLowerCase());
  return field ? str(field.value) : undefined;
}

/** A recogniser that never throws: a message in a shape its reader did not expect is not this integration's. */
function recogniser(name: string, read: (message: RecognisableMessage) => AlertIdentity[] | undefined): Recogniser {
  return {
    name,
    recognise(message) {
      try { return read(message); } catch { return undefined; }
    },
  };
}

/** `Label: value` from lines of text (the first line with that label). */
function lineValue(lines: readonly string[], name: string): string | undefined {
  const prefix = `${name}:`;
  const line = lines.find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : line.slice(prefix.length).trim();
}

function linesOf(text: string): string[] {
  return text.split('\n').map((line) => line.trim());
}

/** What a Nagios-style notification type means for its alert (`$NOTIFICATIONTYPE$`, Icinga 2's `$notification.type$`). */
interface Kind { state: AlertIdentity['state']; notice?: AlertIdentity['notice']; says: string }
const KINDS: Record<string, Kind> = {
  PROBLEM: { state: 'firing', says: 'has a problem' },
  RECOVERY: { state: 'resolved', says: 'recovered' },
  ACKNOWLEDGEMENT: { state: 'event', notice: 'acknowledged', says: 'acknowledged' },
  FLAPPINGSTART: { state: 'event', notice: 'flapping-start', says: 'started flapping' },
  FLAPPINGSTOP: { state: 'event', notice: 'flapping-stop', says: 'stopped flapping' },
  FLAPPINGEND: { state: 'event', notice: 'flapping-stop', says: 'stopped flapping' }, // Icinga 2's name
  FLAPPINGDISABLED: { state: 'event', notice: 'flapping-stop', says: 'flap detection disabled' },
  DOWNTIMESTART: { state: 'event', notice: 'downtime-start', says: 'downtime started' },
  DOWNTIMEEND: { state: 'event', notice: 'downtime-end', says: 'downtime ended' },
  DOWNTIMECANCELLED: { state: 'event', notice: 'downtime-end', says: 'downtime cancelled' },
  DOWNTIMEREMOVED: { state: 'event', notice: 'downtime-end', says: 'downtime removed' }, // Icinga 2's name
  CUSTOM: { state: 'event', says: 'custom notification' },
};

/**
 * The identity of a host or service notification: `source:host/service` (`source:host` for a host), the state its
 * notification type means, the monitor's state word (CRITICAL, DOWN) as the severity of a problem.
 */
function hostAlert(source: string, type: string, host: string | undefined, service: string | undefined, stateWord?: string): AlertIdentity[] | undefined {
  const kind = KINDS[type.trim().toUpperCase()];
  if (!kind || !host) return undefined;
  const subject = service ? `${host}/${service}` : host;
  const word = stateWord && /^[A-Z]+$/.test(stateWord) ? stateWord : undefined;
  const title = kind.state === 'event' || !word ? `${subject} ${kind.says}${kind.state === 'event' && word ? ` (${word})` : ''}` : `${subject} is ${word}`;
  const alert: AlertIdentity = { source, key: `${source}:${subject}`, state: kind.state, title };
  if (kind.state === 'firing' && word) alert.severity = word;
  if (kind.notice) alert.notice = kind.notice;
  return [alert];
}

// ─── Nagios ──────────────────────────────────────────────────────────────────────────────────────

const NAGIOS_SUBJECT = /^(?:\*\*\s*)?([A-Z]+) (Service|Host) Alert: (.+?) is (\S+?)(?:\s*\*\*)?$/;
const NAGIOS_BODY_LINE = /^(?:Notification Type|Info|Additional Info|Date\/Time|State|Address):/;

/** Nagios Core's notify-*-by-email text (subject line, then the body), as mail-to-Slack relays and scripts post it. */
function nagiosMailText(raw: string): AlertIdentity[] | undefined {
  const lines = linesOf(raw.replace(/^(?:<!(?:here|channel|everyone)(?:\|[^>]*)?>\s*)+/, ''));
  const subject = NAGIOS_SUBJECT.exec(label(lines[0] ?? ''));
  if (subject) {
    if (!lines.slice(1).some((line) => NAGIOS_BODY_LINE.test(line))) return undefined;
    const [, type, what, about, state] = subject;
    if (what === 'Host') return hostAlert('nagios', type, about, undefined, state);
    // A service description may hold '/' (`Disk /var`); a host name does not, or the Service: line says where it starts.
    const service = lineValue(lines, 'Service');
    if (!about.includes('/')) return undefined;
    const host = service && about.endsWith(`/${service}`) ? about.slice(0, -service.length - 1) : about.slice(0, about.indexOf('/'));
    return hostAlert('nagios', type, host, about.slice(host.length + 1), state);
  }
  if (!/^\*{3,} Nagios \*{3,}$/.test(lines[0] ?? '')) return undefined;
  // The body alone (no subject): `***** Nagios *****`, Notification Type, Service, Host, Address, State.
  const type = lineValue(lines, 'Notification Type');
  const host = lineValue(lines, 'Host')?.replace(/\s+\(.*\)$/, '');
  return type ? hostAlert('nagios', type, host, lineValue(lines, 'Service') || undefined, lineValue(lines, 'State')) : undefined;
}

/** khera/slack-integrations `slack-nagios-notify`: text `PROBLEM :scream:`, one attachment with Host/Service/State/Detail fields. */
function nagiosSlackNotify(event: SlackEvent): AlertIdentity[] | undefined {
  const type = /^([A-Z]+) :[\w+-]+:$/.exec(str(event.text).trim())?.[1];
  const attachment = eventAttachments(event)[0];
  const host = fieldOf(attachment, 'Host');
  const service = fieldOf(attachment, 'Service');
  if (!type || host === undefined || service === undefined || fieldOf(attachment, 'State') === undefined) return undefined;
  // The host notifier of that script passes `-d "host"` as the service description.
  return hostAlert('nagios', type, label(host), service === 'host' ? undefined : label(service), label(fieldOf(attachment, 'State') ?? ''));
}

/**
 * Nagios Core 4 default notification commands (NagiosEnterprises/nagioscore sample-config/template-object/commands.cfg.in,
 * `notify-host-by-email` / `notify-service-by-email`) posted as text: `** PROBLEM Service Alert: web-03/HTTP is CRITICAL **`
 * then the body; the short `PROBLEM Host Alert: db-01 is DOWN` + `Info:` form IMS already sees; and khera/slack-integrations
 * `slack-nagios-notify` (@17e2a37, the common Slack webhook script). Slack's own legacy "Nagios" app (tinyspeck
 * nagios.pl) is rendered by Slack's servers in a format not published, so it is not recognised.
 */
const nagios: Recogniser = recogniser('nagios', (message) => {
  const event = posted(message);
  return nagiosMailText(str(event.text) || message.text) ?? nagiosSlackNotify(event);
});

// ─── Icinga 2 ────────────────────────────────────────────────────────────────────────────────────

const ICINGA_SERVICE_FALLBACK = /^([A-Z]+)(?:\(Author: [\s\S]*?\))?: Service (.+?) (?:transitioned from state \S+ to state|is still in state) (\S+) on host (.+?)\. Plugin output: /;
const ICINGA_HOST_FALLBACK = /^([A-Z]+): Host (.+?) (?:transitioned from state \S+ to state|is still in state) (\S+)\. Plugin output: /;

/** nisabek/icinga2-slack-notifications: title `:red_circle: PROBLEM: Service … transitioned from state OK to state CRITICAL`, footer `Icinga Alerts`. */
function icingaSlackNotifications(attachment: Attachment | undefined): AlertIdentity[] | undefined {
  if (!attachment || (str(attachment.footer) !== 'Icinga Alerts' && !/^:[\w+-]+: [A-Z]+: (?:Service|Host) /.test(str(attachment.title)))) return undefined;
  const fallback = decode(str(attachment.fallback));
  const service = ICINGA_SERVICE_FALLBACK.exec(fallback);
  if (service) return hostAlert('icinga2', service[1], service[4], service[2], service[3]);
  const host = ICINGA_HOST_FALLBACK.exec(fallback);
  return host ? hostAlert('icinga2', host[1], host[2], undefined, host[3]) : undefined;
}

/** jjethwa/icinga2-slack-notification (@bd1dba0): fields Type, State, Host, Service (links to Icinga Web 2), Information. */
function icingaSlackNotification(attachment: Attachment | undefined): AlertIdentity[] | undefined {
  const type = fieldOf(attachment, 'Type');
  const host = fieldOf(attachment, 'Host');
  const state = fieldOf(attachment, 'State');
  if (!type || !host || state === undefined || !str(attachment?.fallback).startsWith(`${type} - `)) return undefined;
  const service = fieldOf(attachment, 'Service');
  return hostAlert('icinga2', type, linkParam(host, 'host') ?? label(host), service ? linkParam(service, 'service') ?? label(service) : undefined, label(state));
}

/** The same project's earlier text form, still widely copied: `:bomb: HOST: <…|web-01>   SERVICE: <…|HTTP>  STATE: CRITICAL`. */
function icingaSlackNotificationText(raw: string): AlertIdentity[] | undefined {
  const m = /^:[\w+-]+: HOST: (<[^>]+>|\S+)\s+(?:SERVICE: (<[^>]+>|\S+)\s+)?STATE: ([A-Z]+)\b/.exec(raw.trim());
  if (!m) return undefined;
  const [, host, service, state] = m;
  const type = state === 'OK' || state === 'UP' ? 'RECOVERY' : 'PROBLEM';
  return hostAlert('icinga2', type, linkParam(host, 'host') ?? label(host), service ? linkParam(service, 'service') ?? label(service) : undefined, state);
}

/**
 * Icinga 2 through the two community Slack notifiers (Icinga ships none of its own): nisabek/icinga2-slack-notifications
 * 1.0.4 (@f569421, src/slack-notifications/slack-notifications-command.conf) and jjethwa/icinga2-slack-notification
 * (@bd1dba0, slack-{host,service}-notification.sh, and its earlier `HOST: … STATE:` text). Keys use `host.name` and
 * `service.name` (from the fallback text or the Icinga Web 2 links), not display names.
 */
const icinga2: Recogniser = recogniser('icinga2', (message) => {
  const event = posted(message);
  const attachment = eventAttachments(event)[0];
  return icingaSlackNotifications(attachment) ?? icingaSlackNotification(attachment) ?? icingaSlackNotificationText(str(event.text));
});

// ─── Checkmk ─────────────────────────────────────────────────────────────────────────────────────

/**
 * Checkmk's built-in Slack notification plugin (Checkmk/checkmk cmk/notification_plugins/slack.py, 2.x `_slack_msg`):
 * attachment 1 titled `Service PROBLEM notification` with `Host: <url|web-01> (IP: 10.0.1.11)`, `Service: <url|CPU load>`,
 * `State: CRITICAL`; attachment 2 `Additional Info` with the output and the footer `Check_MK notification: <time>`.
 */
const checkmk: Recogniser = recogniser('checkmk', (message) => {
  const [main, info] = eventAttachments(posted(message));
  const heading = /^(Service|Host) ([A-Z]+) notification$/.exec(str(main?.title));
  if (!heading || !(str(info?.title) === 'Additional Info' || str(info?.footer).startsWith('Check_MK notification'))) return undefined;
  const lines = linesOf(str(main?.text));
  const host = label(lineValue(lines, 'Host') ?? '').replace(/\s+\(IP: [^)]*\)$/, '');
  const service = heading[1] === 'Service' ? label(lineValue(lines, 'Service') ?? '') : undefined;
  if (heading[1] === 'Service' && !service) return undefined;
  return hostAlert('checkmk', heading[2], host || undefined, service, label(lineValue(lines, 'State') ?? ''));
});

// ─── Zabbix ──────────────────────────────────────────────────────────────────────────────────────

/** The subjects of Zabbix's default trigger message templates (problem, recovery, update), 5.0 to 7.x. */
const ZABBIX_SUBJECT = /^(Problem|Resolved(?: in [^:\n]+)?|Updated problem(?: in [^:\n]+)?|Updated): (.+)$/;

interface ZabbixMessage { subject: RegExpExecArray; lines: string[]; attachment?: Attachment }

/** The subject and body: an attachment titled with the subject (the Slack media type), or text `subject\nbody` (the templates posted as text). */
function zabbixMessage(event: SlackEvent): ZabbixMessage | undefined {
  for (const attachment of eventAttachments(event)) {
    const subject = ZABBIX_SUBJECT.exec(decode(str(attachment.title)));
    const fromZabbix = str(attachment.title_link).includes('tr_events.php?triggerid=') || fieldOf(attachment, 'Event time') !== undefined;
    // The 5.x script puts an update's action (`… acknowledged problem at …`) in its Details field.
    const details = fieldOf(attachment, 'Details');
    if (subject && fromZabbix) return { subject, lines: linesOf(decode(`${str(attachment.text)}\n${details ?? ''}`)), attachment };
  }
  const [first = '', ...lines] = linesOf(decode(str(event.text)));
  const subject = ZABBIX_SUBJECT.exec(first);
  if (subject && lines.some((l) => /^(?:Original problem ID: \d+|Current problem status is |Problem name: )/.test(l))) return { subject, lines };
  return undefined;
}

/**
 * Zabbix's official Slack media type, both generations: the 5.0–6.x script (zabbix/zabbix templates/media/slack/
 * media_slack.yaml, export 5.4 @31f6b7d: attachment titled `{ALERT.SUBJECT}`, fields Host `name [conn]`, Event time,
 * Severity, Opdata; updates as thread replies) and the 7.x one (export 7.2, the same file in a mirror @034ee1a:
 * attachment titled the subject with the message as its text). In the default `alarm` mode the recovery EDITS the
 * problem message (chat.update), so the edit says `Resolved in 5m: …` about the same alert; in `event` mode it is a new
 * message. The default templates posted as plain text (`Problem: …\nProblem started at …\nHost: …\nOriginal problem ID: …`)
 * are read too. Key `zabbix:{EVENT.NAME} on {HOST.NAME}`, the same in problem, update and recovery (the event ID is
 * missing from the text-form update, so it cannot be the key). The 7.x thread reply `Event update message` carries no
 * identity and is left to the thread (undefined).
 */
const zabbix: Recogniser = recogniser('zabbix', (message) => {
  const found = zabbixMessage(posted(message));
  if (!found) return undefined;
  const { subject, lines, attachment } = found;
  const rest = subject[2].trim();
  const host = lineValue(lines, 'Host') ?? label(fieldOf(attachment, 'Host') ?? '').replace(/\s+\[[^\]]*\]$/, '');
  const name = lineValue(lines, 'Problem name') ?? rest;
  if (!name) return undefined;
  // Without a Host line or field (the text-form update) the subject is all there is: `NAME on HOST` when the
  // templates add the host, as the problem's `Problem name` and `Host` lines then give the same key.
  const named = host ? `${name} on ${host}` : rest;
  const severity = lineValue(lines, 'Severity') ?? fieldOf(attachment, 'Severity');
  const status = /^Current problem status is (\w+)/.exec(lines.find((l) => l.startsWith('Current problem status is')) ?? '')?.[1];
  const kind = subject[1];
  const acknowledged = kind.startsWith('Updated') && lines.some((l) => /\backnowledged\b(?!:)/.test(l) && !l.startsWith('Current problem status'));
  const state: AlertIdentity['state'] = kind.startsWith('Resolved') || status === 'RESOLVED' ? 'resolved' : acknowledged ? 'event' : 'firing';
  const alert: AlertIdentity = { source: 'zabbix', key: `zabbix:${named}`, state, title: named };
  if (severity && state === 'firing') alert.severity = severity;
  if (state === 'event') alert.notice = 'acknowledged';
  return [alert];
});

// ─── Jenkins ─────────────────────────────────────────────────────────────────────────────────────

const JENKINS_MESSAGE = /^(.+?) - (\S+) (Started by .+?|Back to normal|Still Failing|Success|Failure|Aborted|Not built|Unstable|Regression|Unknown)(?: after [^(\n]*?)? \(<[^|>]+\|Open>\)/;

/**
 * The Jenkins Slack Notification plugin (jenkinsci/slack-plugin 795.v4b_9705b_e6d47, ActiveNotifier.MessageBuilder and
 * StandardSlackService.prepareAttachments): one attachment whose fallback and only field are
 * `<full job name> - #42 Failure after 3 min 2 sec (<url|Open>)` (or `Started by …`, `Back to normal`, `Still Failing`…).
 * One-off events keyed by the job's full name (a multibranch job's name holds its branch: `api » main`).
 */
const jenkins: Recogniser = recogniser('jenkins', (message) => {
  const attachment = eventAttachments(posted(message))[0];
  const text = str(fieldsOf(attachment)[0]?.value) || str(attachment?.fallback);
  const m = JENKINS_MESSAGE.exec(text);
  if (!m) return undefined;
  const [, job, build, status] = m.map(decode);
  const started = status.startsWith('Started by');
  const alert: AlertIdentity = { source: 'jenkins', key: `jenkins:${job}`, state: 'event', title: `${job} ${build} ${started ? 'started' : status}` };
  if (!started) alert.severity = status;
  return [alert];
});

// ─── GitHub Actions ──────────────────────────────────────────────────────────────────────────────

/** The outcome an attachment colour stands for (the named colours as sent, or the hex Slack may store them as). */
function outcomeOfColour(color: unknown): string | undefined {
  const c = str(color).replace(/^#/, '').toLowerCase();
  if (c === 'good' || c === '2eb886') return 'success';
  if (c === 'danger' || c === 'a30200') return 'failure';
  if (c === 'warning' || c === 'daa038' || c === '808080') return 'cancelled';
  return undefined;
}

function branchOf(ref: string | undefined): string | undefined {
  return ref ? ref.replace(/^refs\/(?:heads\/)?/, '') || undefined : undefined;
}

function ciAlert(repo: string, workflow: string | undefined, job: string | undefined, branch: string | undefined, outcome: string | undefined): AlertIdentity[] {
  const what = [repo, workflow, job].filter(Boolean).join('/');
  const alert: AlertIdentity = { source: 'github-actions', key: `github-actions:${what}${branch ? `@${branch}` : ''}`, state: 'event', title: `${what}${branch ? ` on ${branch}` : ''}${outcome ? `: ${outcome}` : ''}` };
  if (outcome) alert.severity = outcome;
  return [alert];
}

const SAID_OUTCOME: Record<string, string> = { Succeeded: 'success', Failed: 'failure', Cancelled: 'cancelled' };

/** 8398a7/action-slack v3.19.0 (src/client.ts, src/fields.ts): text `:no_entry: Failed GitHub Actions`, fields repo, commit, workflow, job, ref… */
function actionSlack(event: SlackEvent, attachment: Attachment | undefined): AlertIdentity[] | undefined {
  const said = /(?:^|\s)(?::[\w+-]+: )?(Succeeded|Failed|Cancelled) GitHub Actions\s*$/.exec(str(event.text));
  if (!attachment || !(said || str(attachment.author_name) === '8398a7@action-slack')) return undefined;
  const repo = fieldOf(attachment, 'repo');
  const workflow = fieldOf(attachment, 'workflow') ?? fieldOf(attachment, 'workflowRun');
  if (!repo && !workflow) return undefined;
  const job = fieldOf(attachment, 'job');
  const outcome = said ? SAID_OUTCOME[said[1]] : outcomeOfColour(attachment.color);
  const repoName = repo ? label(repo) : /github\.[^/]+\/([^/]+\/[^/]+)\//.exec(workflow ?? '')?.[1] ?? '';
  return ciAlert(repoName, workflow ? label(workflow) : undefined, job ? label(job) : undefined, branchOf(fieldOf(attachment, 'ref')), outcome);
}

/** rtCamp/action-slack-notify v2.4.0 (main.go): fields Ref, Event, Actions URL `<…/owner/repo/commit/sha/checks|Workflow>`, Commit. */
function actionSlackNotify(attachment: Attachment | undefined): AlertIdentity[] | undefined {
  const actions = fieldOf(attachment, 'Actions URL');
  const repo = actions && /<https?:\/\/[^/]+\/([^/]+\/[^/]+)\/commit\/[0-9a-f]+\/checks\|/.exec(actions)?.[1];
  if (!repo) return undefined;
  return ciAlert(repo, label(actions), undefined, branchOf(fieldOf(attachment, 'Ref')), outcomeOfColour(attachment?.color));
}

/** slackapi/slack-github-action v4.0.0's documented payload: `*GitHub Action build result*: failure\n<commit or PR url>`. */
function slackGithubAction(event: SlackEvent): AlertIdentity[] | undefined {
  const blocks = Array.isArray(event.blocks) ? event.blocks as { type?: unknown; text?: { text?: unknown } }[] : [];
  if (!blocks.some((b) => b?.type === 'section' && str(b.text?.text).startsWith('GitHub Action build result'))) return undefined;
  const raw = str(event.text);
  const m = /^\*?GitHub Action build result\*?: (\w+)\s*\n<?https?:\/\/[^/\s]+\/([^/\s]+\/[^/\s]+)\/(?:commit\/[0-9a-f]+|pull\/(\d+))/.exec(raw.trim());
  return m ? ciAlert(m[2], undefined, undefined, m[3] ? `pull/${m[3]}` : undefined, plainLine(m[1])) : undefined;
}

/**
 * GitHub Actions through the common Slack actions: 8398a7/action-slack (default text and fields), rtCamp/action-slack-notify
 * (default fields), and slackapi/slack-github-action, which has no default message: only its documented example
 * payload is recognised. One-off events keyed by repository, workflow, job and branch, as far as the message says them.
 */
const githubActions: Recogniser = recogniser('github-actions', (message) => {
  const event = posted(message);
  const attachment = eventAttachments(event)[0];
  return actionSlack(event, attachment) ?? actionSlackNotify(attachment) ?? slackGithubAction(event);
});

/** The recognisers for host monitors and CI, in the order they are tried. */

/**
 * The built-in recognisers, tried in order: the first that understands a message names its alerts. Each checks
 * its integration's own marks (a title form, a footer, field names), so the order only settles the rare message
 * two could read: structured notifiers first, then the Nagios family's text forms, then CI.
 */
export const RECOGNISERS: readonly Recogniser[] = [
  alertmanager, grafana, datadog, cloudwatchChatbot, cloudwatchLambda, sentry, uptimeKuma, zabbix, checkmk, icinga2, nagios, jenkins, githubActions,
].map(({ name, recognise: read }) => recogniser(name, read));

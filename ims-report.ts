/**
 * The report and the reminder: every incident post still open in the incident channels within the report
 * window (joined with the state, resolutions made meanwhile recorded), as Block Kit or as a file when long;
 * the hourly open-incident counts; and `--clear-reminder`.
 */
import type { WebClient } from '@slack/web-api';
import type { CompiledConfig, Incident, Logger, NameService, Report, ReportItem, ReportSection, SlackAttachment, SlackMessageEvent } from './ims.ts';
import type { Store } from './ims-state.ts';
import { tsAfter } from './ims-state.ts';
import { classifySlackFailure, formatDuration, recoveryOf, timeToResolve } from './ims-plugin-kit.ts';
import { errorText } from './ims-log.ts';
import { BLOCKS_PER_MESSAGE, SECTION_LIMIT, clipPieces, escapeSlack, messageText, mrkdwnPieces, plainText, renderPieces, splitText } from './ims-text.ts';
import { dateParts, formatAge, formatDate, tsToMs } from './ims-time.ts';
import { listAll, slackCall, type PostSpec } from './ims-slack.ts';
import type { HookRunner } from './ims-hooks.ts';
import type { IncidentLifecycle } from './ims-incidents.ts';
import { describeSilence, type Silencing } from './ims-silencing.ts';

/** What the report and the reminder read and use: the running IMS (`Ims`) provides it. */
export interface ReportInputs {
  readonly config: CompiledConfig;
  readonly store: Store;
  readonly slack: WebClient;
  readonly log: Logger;
  readonly self: { userId: string; botId: string };
  readonly names: NameService;
  readonly lifecycle: Pick<IncidentLifecycle, 'resolversOf' | 'recordMissedResolution'>;
  readonly options: { verbose?: boolean };
  now(): number;
  permalink(channel: string, ts: string): string;
  post(spec: PostSpec): Promise<string>;
  hooks: HookRunner['run'];
  /** Silences in force (Slack's and maintenance windows'), listed in the report. */
  readonly silencing?: Pick<Silencing, 'active'>;
}

/**
 * A report item with what alert lifecycles add, set by `buildReport` on the items of incidents it knows (a plugin's
 * `onReport` sees them too). Repeats and flapping are on `incident`.
 */
export interface LifecycleReportItem extends ReportItem {
  /** Resolved by its integration's recovery: the recovery's link, who posted it, how long the alert fired. */
  recovery?: { permalink?: string; by: string; afterMs?: number };
  /** When an open incident was last reopened (epoch ms): by its alert firing again, or a person. */
  reopenedAt?: number;
}

interface HistoryMessage {
  ts: string;
  user?: string;
  bot_id?: string;
  text?: string;
  thread_ts?: string;
  subtype?: string;
  attachments?: SlackAttachment[];
  blocks?: unknown[];
  reactions?: { name: string; users?: string[]; count?: number }[];
}

/** Every incident post still open in the incident channels within the report window, joined with the state. */
export async function buildReport(ims: ReportInputs, options: { verbose?: boolean } = {}): Promise<Report> {
  const config = ims.config;
  const now = ims.now();
  const windowStart = now - config.report.windowMs;
  const report: Report = { generatedAt: now, windowStart, open: [], resolved: [], failures: [], sections: [] };
  const verbose = options.verbose ?? (ims.options.verbose || config.report.verbose);
  const targets = new Map<string, number | undefined>();
  for (const incident of config.incidents.values()) targets.set(incident.channel, Math.max(targets.get(incident.channel) ?? 0, incident.limit ?? Infinity));
  if (config.reverse && config.reverseDefault) targets.set(config.reverseDefault.channel, undefined);
  for (const [channel, rawLimit] of targets) {
    const limit = rawLimit === Infinity ? undefined : rawLimit;
    try {
      const messages: HistoryMessage[] = [];
      for await (const m of listAll<HistoryMessage>(ims.slack, ims.log, 'conversations.history', { channel, oldest: (windowStart / 1000).toFixed(6), limit: Math.min(limit ?? 200, 200) }, 'messages')) {
        messages.push(m);
        if (limit !== undefined && messages.length >= limit) break;
      }
      // A digest lists several incidents: each is a line of its own, linked to the digest.
      const listed = (await Promise.all(messages.slice(0, limit).map((m) => listedIn(ims.store, channel, m)))).flat();
      for (const [m, incident] of listed) {
        if (m.subtype && m.subtype !== 'bot_message') continue;
        if (m.thread_ts && m.thread_ts !== m.ts) continue;
        const poster = m.bot_id || m.user || '';
        if (config.report.onlyPosters ? !config.report.onlyPosters.has(poster) : !incident && poster !== ims.self.botId) continue;
        if (!incident && poster === ims.self.botId && !/^\*?\[/.test(m.text ?? '')) continue;
        const resolvers = ims.lifecycle.resolversOf(m.reactions);
        // An incident IMS knows is resolved when its state says so: a reaction not recorded yet is recorded first (if
        // `permissions` let its author resolve it).
        if (incident && !incident.resolvedAt && resolvers.length) await ims.lifecycle.recordMissedResolution(incident, resolvers[0]);
        const current = incident ? await ims.store.incidentById(incident.id) : undefined;
        const resolved = incident ? !!current?.resolvedAt : resolvers.length > 0;
        const item: ReportItem = { channel, ts: m.ts, text: incident?.text ?? messageText({ text: m.text, attachments: m.attachments, blocks: m.blocks }), permalink: ims.permalink(channel, m.ts), incident: current };
        if (!resolved) report.open.push(item);
        else if (verbose) {
          item.resolvers = await Promise.all([...new Set(resolvers.length ? resolvers : [incident!.resolvedBy!])].map((u) => ims.names.user(u)));
          report.resolved.push(item);
        }
      }
    } catch (error) {
      report.failures.push({ channel, error: errorText(error) });
      ims.log.warn(`report: could not read ${channel}: ${errorText(error)}`);
    }
  }
  report.open.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : -1));
  report.resolved.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : -1));
  await addLifecycles(ims, report);
  const flapping = await flappingSection(ims, now);
  if (flapping) report.sections.push(flapping);
  // A page that could not be made must not stay only in the log: the report names each alert, with its link.
  const failed = await ims.store.failedMessages(windowStart);
  if (failed.length) {
    const shown = failed.slice(0, 20).map(({ channel, ts, event }) => {
      const text = messageText(event as SlackMessageEvent, config.attachmentText).replace(/\s+/g, ' ');
      return `• <${ims.permalink(channel, ts)}|${formatDate(tsToMs(ts), config.timezone)}> ${escapeSlack(text.length > 100 ? `${text.slice(0, 100)}…` : text)}`;
    });
    if (failed.length > shown.length) shown.push(`…and ${failed.length - shown.length} more (see the log)`);
    report.sections.push({ title: `Alerts IMS could not post (${failed.length}): Slack refused them for good; the log says why`, lines: shown });
  }
  const silences = (await ims.silencing?.active()) ?? [];
  if (silences.length) report.sections.push({ title: `Silences in force (${silences.length}): alerts they match are not reposted nor paged`, lines: await Promise.all(silences.map(async (s) => `• ${describeSilence(s, config.timezone, s.origin === 'slack' ? await ims.names.user(s.createdBy) : undefined)}`)) });
  const outbox = await ims.store.outboxStats();
  if (outbox.depth) {
    report.sections.push({ title: 'Outbox', lines: [`${outbox.depth} deliveries waiting, oldest ${formatAge(now - (outbox.oldestAt ?? now))} old${outbox.lastError ? `; last error: ${outbox.lastError}` : ''}`] });
  }
  await ims.hooks('onReport', () => ({ report, addSection: (section: ReportSection) => { report.sections.push(section); } }));
  return report;
}

/**
 * What alert lifecycles add to the listed items: the recovery that resolved an incident (verbose), and when an
 * open one was reopened. The items are the ones the loop above made (their lookup is its business, not this one's).
 */
async function addLifecycles(ims: ReportInputs, report: Report): Promise<void> {
  for (const item of report.resolved as LifecycleReportItem[]) {
    const incident = item.incident;
    if (!incident?.alertKey || incident.resolvedAt === undefined) continue;
    const events = await ims.store.incidentEvents(incident.id);
    const recovery = recoveryOf(incident, events);
    if (recovery) item.recovery = { permalink: recovery.permalink, by: recovery.user ? await ims.names.user(recovery.user) : 'its integration', afterMs: timeToResolve(incident, events) };
  }
  for (const item of report.open as LifecycleReportItem[]) {
    const incident = item.incident;
    if (!incident?.alertKey) continue;
    const reopened = (await ims.store.incidentEvents(incident.id)).filter((e) => e.kind === 'reopen').at(-1);
    if (reopened) item.reopenedAt = reopened.at;
  }
}

/**
 * The incidents whose alerts are flapping now: marked flapping, and not yet stable for `lifecycle.flapping.stableFor`
 * (no state change since, judged by their keys' last change, else the last message about them). An alert that went
 * quiet while flapping is stable; the next message about it clears the mark.
 */
async function flappingSection(ims: ReportInputs, now: number): Promise<ReportSection | undefined> {
  const rule = ims.config.lifecycle?.flapping;
  if (!rule) return undefined;
  const lines: string[] = [];
  for (const incident of await ims.store.flappingIncidents()) {
    const keys = await ims.store.keyRecords(incident.id);
    const lastChange = keys.length ? Math.max(...keys.map((k) => tsToMs(k.changedTs))) : tsToMs(incident.lastSeenTs ?? incident.sourceTs);
    if (now - lastChange >= rule.stableMs) continue;
    const changes = keys.reduce((n, k) => n + k.changes.filter((c) => tsToMs(c) >= now - rule.withinMs).length, 0);
    const key = (incident.alertKey ?? keys[0]?.key ?? '').replace(/`/g, "'");
    const state = incident.resolvedAt === undefined ? 'firing' : 'recovered';
    lines.push(`• ${incident.head ? `*${escapeSlack(incident.head)}* ` : ''}\`${escapeSlack(key)}\` — ${changes} state change${changes === 1 ? '' : 's'} in the last ${formatDuration(rule.withinMs)}, the last ${formatAge(now - lastChange)} ago; ${state} <${ims.permalink(incident.incidentChannel, incident.incidentTs)}|post>`);
  }
  if (!lines.length) return undefined;
  return { title: `Flapping (${lines.length}): nobody is paged again for these until they are stable for ${formatDuration(rule.stableMs)}`, lines };
}

/** Each incident a message is the post of (a digest lists several) with the message; the message alone when it is none's. */
async function listedIn<M extends { ts: string }>(state: Store, channel: string, m: M): Promise<[M, Incident | undefined][]> {
  const incidents = await state.incidentsByPost(channel, m.ts);
  return incidents.length ? incidents.map((incident) => [m, incident]) : [[m, undefined]];
}

/** The report as Block Kit: one message, or several only past Slack's 50-block limit. */
export function reportMessages(report: Report, timezone?: string): { text: string; blocks: unknown[] }[] {
  const headline = `IMS report ${formatDate(report.generatedAt, timezone)}: ${report.open.length} open incident${report.open.length === 1 ? '' : 's'}`;
  const line = (item: LifecycleReportItem, mark: string) => {
    const head = item.incident?.head ?? '';
    // Cut as the reader sees it (a link counts its label), never inside an entity, a link or an emoji.
    const snippet = renderPieces(clipPieces(mrkdwnPieces(item.text.replace(/\s+/g, ' '), false), 150));
    const age = formatAge(report.generatedAt - tsToMs(item.incident?.sourceTs ?? item.ts));
    const who = item.recovery ? ` — resolved by recovery (${item.recovery.permalink ? `<${item.recovery.permalink}|${escapeSlack(item.recovery.by)}>` : escapeSlack(item.recovery.by)})${item.recovery.afterMs === undefined ? '' : ` after ${formatDuration(item.recovery.afterMs)}`}`
      : item.resolvers?.length ? ` — resolved by ${escapeSlack(item.resolvers.join(', '))}` : '';
    return `${mark}${age}  ${head ? `*${escapeSlack(head)}* ` : ''}${snippet} <${item.permalink}|open>${who}${item.incident?.resolvedAt === undefined ? lifecycleNotes(item, report.generatedAt) : ''}`;
  };
  const resolved = report.resolved as LifecycleReportItem[];
  const recovered = resolved.filter((item) => item.recovery);
  const lines = [
    ...report.open.map((item) => line(item, report.resolved.length ? 'NG ' : '• ')),
    ...resolved.filter((item) => !item.recovery).map((item) => line(item, 'OK ')),
    // Resolved by the integrations themselves: apart from what people resolved.
    ...(recovered.length ? [`*Resolved by recovery (${recovered.length})*`, ...recovered.map((item) => line(item, 'OK '))] : []),
  ];
  if (!lines.length) lines.push('Nothing open. :tada:');
  const sections: unknown[] = [];
  let chunk = '';
  const section = (text: string) => ({ type: 'section', text: { type: 'mrkdwn', text, verbatim: true } });
  for (const l of lines) {
    if (chunk && chunk.length + l.length + 1 > SECTION_LIMIT) { sections.push(...splitText(chunk).map(section)); chunk = ''; }
    chunk += (chunk ? '\n' : '') + l;
  }
  sections.push(...splitText(chunk).map(section));
  for (const failure of report.failures) sections.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `:warning: could not read <#${failure.channel}>: ${escapeSlack(failure.error)}` }] });
  // A plugin's long section goes on in the next block, cut where no entity or link is cut in half.
  for (const extra of report.sections) sections.push(...splitText(`*${escapeSlack(extra.title)}*\n${extra.lines.join('\n')}`).map(section));
  const messages: { text: string; blocks: unknown[] }[] = [];
  for (let i = 0; i < sections.length; i += BLOCKS_PER_MESSAGE - 1) {
    messages.push({ text: i === 0 ? headline : `${headline} (continued)`, blocks: [...(i === 0 ? [{ type: 'header', text: { type: 'plain_text', text: headline.slice(0, 150) } }] : []), ...sections.slice(i, i + BLOCKS_PER_MESSAGE - 1)] });
  }
  return messages;
}

/** ` · repeated 4×, last 3m ago · reopened 20m ago · flapping` for an open incident with a lifecycle. */
function lifecycleNotes(item: LifecycleReportItem, now: number): string {
  const incident = item.incident;
  if (!incident) return '';
  const notes: string[] = [];
  if (incident.repeats > 0) notes.push(`repeated ${incident.repeats}×${incident.lastSeenTs ? `, last ${formatAge(now - tsToMs(incident.lastSeenTs))} ago` : ''}`);
  if (item.reopenedAt !== undefined) notes.push(`reopened ${formatAge(now - item.reopenedAt)} ago`);
  if (incident.flapping) notes.push('flapping');
  return notes.map((note) => ` · ${note}`).join('');
}

const FILE_THRESHOLD = 4;

/**
 * Build and post one report; false when posting failed. `turn`: the scheduled turn it is for, when several instances
 * may post it: its messages carry the turn and are looked for before they are posted (another instance may have).
 */
export async function runReport(ims: ReportInputs, options: { verbose?: boolean; turn?: string } = {}): Promise<boolean> {
  const channel = ims.config.report.channel;
  if (!channel) { ims.log.error('no report channel configured ([Report] / report.channel)'); return false; }
  const report = await buildReport(ims, options);
  const messages = reportMessages(report, ims.config.timezone);
  try {
    if (messages.length > FILE_THRESHOLD) {
      // A very long list reads better as a file than as a dozen messages.
      const content = [messages[0].text, '', ...report.open.map((i) => `NG ${formatDate(tsToMs(i.ts), ims.config.timezone)} ${i.incident?.head ?? ''} ${i.text.replace(/\s+/g, ' ')} ${i.permalink}`),
        ...(report.resolved as LifecycleReportItem[]).map((i) => `OK ${formatDate(tsToMs(i.ts), ims.config.timezone)} ${i.incident?.head ?? ''} ${i.text.replace(/\s+/g, ' ')} ${i.recovery ? `[recovery] ${i.recovery.by} ${i.recovery.permalink ?? ''}` : `[user] ${i.resolvers?.join(' ')}`}`)].join('\n');
      // The summary keeps what the file lacks: channels that could not be read and the plugins' sections.
      const extras = reportMessages({ ...report, open: [], resolved: [] }, ims.config.timezone)[0].blocks.slice(2);
      const blocks = [...messages[0].blocks.slice(0, 3), ...extras].slice(0, BLOCKS_PER_MESSAGE);
      await ims.post(reportPost(channel, report, 0, { text: messages[0].text, blocks }, options.turn));
      await slackCall(() => ims.slack.filesUploadV2({ channel_id: channel, content, filename: `ims-report-${new Date(report.generatedAt).toISOString().slice(0, 10)}.txt`, title: messages[0].text }), ims.log, 'files upload');
    } else {
      for (const [part, message] of messages.entries()) await ims.post(reportPost(channel, report, part, message, options.turn));
    }
    ims.log.info(`report posted: ${report.open.length} open, ${report.resolved.length} resolved listed`, { channel });
    return true;
  } catch (error) {
    ims.log.error(`report could not be posted to ${channel}: ${errorText(error)}`);
    return false;
  }
}

/** One message of a report, named so that a retry after a lost answer finds it instead of posting it twice. */
function reportPost(channel: string, report: Report, part: number, message: { text: string; blocks: unknown[] }, turn?: string): PostSpec {
  return {
    channel, text: message.text, blocks: message.blocks, fallback: plainText(message.blocks) || message.text, what: `report (part ${part + 1})`,
    // A turn may be posted again hours later (after failures, by another instance): looked for as far back.
    metadata: { event_type: 'ims_report', event_payload: turn ? { turn, part } : { generated_at: report.generatedAt, part } }, oldest: (Date.now() / 1000 - (turn ? 6 * 3600 : 600)).toFixed(6),
    ...(turn ? { lookFirst: true } : {}),
  };
}

/** During a reminder line's hours, post the open-incident counts at most once per hour and channel. */
export async function runReminders(ims: ReportInputs): Promise<void> {
  const now = ims.now();
  const parts = dateParts(now, ims.config.timezone);
  const hourKey = `${parts.year}-${parts.month}-${parts.day} ${parts.hour}`;
  for (const reminder of ims.config.reminders) {
    if (!reminder.hours.some((hour) => hour.test(parts.hour))) continue;
    const counts = new Map<string, number>();
    for (const incident of await ims.store.listIncidents({ open: true })) counts.set(incident.incidentChannel, (counts.get(incident.incidentChannel) ?? 0) + 1);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    if (!total || !(await ims.store.claimReminder(reminder.channel, hourKey))) continue;
    const text = `:bell: ${total} open incident${total === 1 ? '' : 's'}: ${[...counts].map(([channel, n]) => `<#${channel}> ${n}`).join(', ')}. React with :${ims.config.resolvedReactions[0]}: on an incident post when it is resolved.`;
    try {
      await ims.post({ channel: reminder.channel, text, what: 'reminder', metadata: { event_type: 'ims_reminder', event_payload: { hour: hourKey } }, oldest: (Date.now() / 1000 - 600).toFixed(6) });
    } catch (error) {
      // Give the hour back, so the next tick tries again; unless Slack refuses it for good (the channel is gone).
      const failure = classifySlackFailure(error);
      if (failure.kind !== 'permanent') await ims.store.releaseReminder(reminder.channel, hourKey).catch(() => undefined);
      ims.log.error(`reminder could not be posted to ${reminder.channel}: ${errorText(error)}${failure.kind === 'permanent' ? '; not retried this hour' : ''}`);
    }
  }
}

/** `--clear-reminder`: delete IMS's own messages in the reminder channels (within the report window). */
export async function clearReminders(ims: ReportInputs): Promise<number> {
  let deleted = 0;
  const oldest = (((ims.now()) - ims.config.report.windowMs) / 1000).toFixed(6);
  for (const channel of new Set(ims.config.reminders.map((r) => r.channel))) {
    const own: string[] = [];
    for await (const m of listAll<HistoryMessage>(ims.slack, ims.log, 'conversations.history', { channel, oldest, limit: 200 }, 'messages')) {
      if (m.bot_id === ims.self.botId || m.user === ims.self.userId) own.push(m.ts);
    }
    for (const ts of own) {
      try {
        await slackCall(() => ims.slack.chat.delete({ channel, ts }), ims.log, 'chat.delete');
        deleted++;
      } catch (error) {
        ims.log.warn(`could not delete ${channel}:${ts}: ${errorText(error)}`);
      }
    }
  }
  return deleted;
}


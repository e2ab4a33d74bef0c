/**
 * The App Home: the bot's Home tab shows open incidents by label (age, acknowledger, buttons), silences in force
 * with their end, flapping alerts, and how the outbox and the last report are doing. It is published when someone
 * opens it and again, for the people who opened it lately, when something it shows changes — at most every 2 s, or
 * a second per viewer when more look (a storm changes many incidents; one view per person covers them all).
 */
import type { WebClient } from '@slack/web-api';
import type { CompiledConfig, Incident, Logger } from './ims.ts';
import type { OutboxStats, Silence, Store } from './ims-state.ts';
import { errorText } from './ims-log.ts';
import { escapeSlack, firstLine, inertText } from './ims-text.ts';
import { formatAge, formatShortDate } from './ims-time.ts';
import { describeMatcher } from './ims-silences.ts';
import { ACTIONS } from './ims-incident-posts.ts';

/** How often a viewer's Home is published again at most while things change (more apart with many viewers). */
const REFRESH_MS = 2_000;
/** Viewers who opened the Home this long ago still get it refreshed. */
const VIEWER_MS = 24 * 3600_000;
/** Slack's limit is 100 blocks per view: incidents beyond this are counted, not listed. */
const MAX_INCIDENTS = 25;

/** What the Home needs. */
export interface HomeInputs {
  slack: WebClient;
  state: Store;
  log: Logger;
  now(): number;
  config(): CompiledConfig;
  permalink(channel: string, ts: string): string;
  /** Silences in force now. */
  silences(): Promise<Silence[]>;
  /** The last report: when, and whether it was posted. */
  lastReport(): { at: number; posted: boolean } | undefined;
  track<T>(work: Promise<T>): Promise<T>;
}

/** Publishes the Home tab. */
export class AppHome {
  /** Who opened the Home, and when. */
  private readonly viewers = new Map<string, number>();
  private refreshTimer?: NodeJS.Timeout;
  private lastRefresh = 0;

  constructor(private readonly inputs: HomeInputs) {}

  /** Someone opened the Home tab: publish it for them now. */
  opened(user: string): Promise<void> {
    this.viewers.set(user, this.inputs.now());
    return this.publish(user);
  }

  /** Something the Home shows changed: publish it again for recent viewers, paced. */
  changed(): void {
    if (this.refreshTimer || !this.viewers.size) return;
    // Paced by how many people look: about one publish a second in all (views.publish allows some 100 a minute).
    const wait = Math.max(0, this.lastRefresh + Math.max(REFRESH_MS, 1000 * this.viewers.size) - Date.now());
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      this.lastRefresh = Date.now();
      const since = this.inputs.now() - VIEWER_MS;
      for (const [user, at] of this.viewers) {
        if (at < since) { this.viewers.delete(user); continue; }
        void this.inputs.track(this.publish(user));
      }
    }, wait);
    this.refreshTimer.unref?.();
  }

  /** Stop refreshing (IMS is stopping). */
  stop(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
  }

  private async publish(user: string): Promise<void> {
    try {
      await this.inputs.slack.views.publish({ user_id: user, view: (await this.view()) as never });
    } catch (error) {
      this.inputs.log.warn(`could not publish the App Home for ${user}: ${errorText(error)}`);
    }
  }

  /** The Home view, as Slack takes it (`type: 'home'`, at most 100 blocks). */
  async view(): Promise<{ type: 'home'; blocks: unknown[] }> {
    const { state } = this.inputs;
    const config = this.inputs.config();
    const now = this.inputs.now();
    const clock = (ms: number) => formatShortDate(ms, config.timezone);
    const [open, silences, flapping, outbox] = await Promise.all([state.listIncidents({ open: true }), this.inputs.silences(), state.flappingIncidents(), state.outboxStats()]);
    const blocks: unknown[] = [
      { type: 'header', text: { type: 'plain_text', text: 'IMS: incidents', emoji: true } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: `Updated ${clock(now)}${config.timezone ? ` (${escapeSlack(config.timezone)})` : ''}` }] },
      { type: 'section', text: { type: 'mrkdwn', text: open.length ? `*${open.length} open incident${open.length === 1 ? '' : 's'}*` : ':white_check_mark: *No open incidents*' } },
    ];
    const byLabel = new Map<string, Incident[]>();
    for (const incident of open.slice(-MAX_INCIDENTS).reverse()) byLabel.set(incident.label, [...(byLabel.get(incident.label) ?? []), incident]);
    const openByLabel = new Map<string, number>();
    for (const incident of open) openByLabel.set(incident.label, (openByLabel.get(incident.label) ?? 0) + 1);
    for (const [label, incidents] of byLabel) {
      const total = openByLabel.get(label) ?? incidents.length;
      blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `*${escapeSlack(label)}* (${total === incidents.length ? total : `the newest ${incidents.length} of ${total}`})` } });
      for (const incident of incidents) blocks.push(...this.incidentBlocks(incident, now));
    }
    if (open.length > MAX_INCIDENTS) blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `…and ${open.length - MAX_INCIDENTS} older open incidents (\`/ims status\`, the report)` }] });
    blocks.push({ type: 'divider' });
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: silences.length
      ? `*Silences in force*\n${silences.slice(0, 15).map((s) => `• ${s.id}: ${inertText(describeMatcher(s.matcher))} until ${clock(s.endsAt)}, ${s.origin === 'maintenance' ? `maintenance window ${inertText(s.createdBy)}` : `by <@${s.createdBy}>`} — ${s.silenced} silenced`).join('\n')}`
      : '*Silences*: none in force' } });
    if (flapping.length) {
      blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `*Flapping*\n${flapping.slice(0, 15).map((i) => `• <${this.inputs.permalink(i.incidentChannel, i.incidentTs)}|#${i.id}> ${escapeSlack(i.alertKey ?? i.head)}`).join('\n')}` } });
    }
    blocks.push({ type: 'divider' });
    blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `${outboxLine(outbox, now)} · ${this.reportLine(clock)}` }] });
    return { type: 'home', blocks: blocks.slice(0, 100) };
  }

  private incidentBlocks(incident: Incident, now: number): unknown[] {
    const title = escapeSlack(firstLine(incident.text));
    const ack = incident.acknowledgedBy ? (/^[UW]/.test(incident.acknowledgedBy) ? `acknowledged by <@${incident.acknowledgedBy}>` : 'acknowledged in its tool') : '*not acknowledged*';
    const value = String(incident.id);
    const elements: unknown[] = [];
    if (!incident.acknowledgedBy) elements.push({ type: 'button', text: { type: 'plain_text', text: 'Acknowledge' }, action_id: ACTIONS.acknowledge, value });
    elements.push({ type: 'button', text: { type: 'plain_text', text: 'Resolve' }, action_id: ACTIONS.resolve, value, style: 'primary' });
    return [
      { type: 'section', text: { type: 'mrkdwn', text: `<${this.inputs.permalink(incident.incidentChannel, incident.incidentTs)}|#${incident.id} ${escapeSlack(incident.head)}> ${title}\n${formatAge(now - incident.createdAt)} old · ${ack}${incident.repeats ? ` · repeated ${incident.repeats}×` : ''}${incident.flapping ? ' · flapping' : ''}` } },
      { type: 'actions', block_id: `ims_home_${incident.id}`, elements },
    ];
  }

  private reportLine(clock: (ms: number) => string): string {
    const last = this.inputs.lastReport();
    if (!last) return 'no report posted since IMS started';
    return last.posted ? `last report posted ${clock(last.at)}` : `:warning: the last report (${clock(last.at)}) could not be posted`;
  }
}

function outboxLine(stats: OutboxStats, now: number): string {
  if (!stats.depth) return 'outbox: empty';
  return `outbox: ${stats.depth} waiting${stats.oldestAt ? `, oldest ${formatAge(now - stats.oldestAt)}` : ''}${stats.lastError ? ` (last error: ${escapeSlack(stats.lastError.slice(0, 100))})` : ''}`;
}

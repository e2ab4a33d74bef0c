/**
 * Silences at work: made from Slack (`/ims silence`, an incident's Silence menu) or opened by a maintenance window,
 * kept in the state (they survive restarts), applied to alerts (a silenced alert is marked seen, not reposted,
 * not paged, and counted), and ended by expiry or `/ims unsilence` with one summary: how many alerts it silenced
 * and which of them are still firing, with links. A silence that ended while IMS was down is summarised after
 * the next start (the sweep runs at start-up and every few seconds).
 */
import type { AlertMessage, CompiledConfig, Incident, Logger } from './ims.ts';
import type { Silence, Store } from './ims-state.ts';
import type { Poster } from './ims-slack.ts';
import { errorText } from './ims-log.ts';
import { classifySlackFailure } from './ims-plugin-kit.ts';
import { escapeSlack, firstLine, inertText } from './ims-text.ts';
import { formatAge, formatShortDate, tsToMs } from './ims-time.ts';
import { describeMatcher, incidentSubject, openWindows, silenceMatches, type SilenceMatcher, type SilenceSubject } from './ims-silences.ts';
import { normalisedTextKey } from './ims-recognisers.ts';

/** What silencing needs from the running IMS. */
export interface SilencingInputs {
  state: Store;
  poster: Poster;
  log: Logger;
  now(): number;
  config(): CompiledConfig;
  permalink(channel: string, ts: string): string;
  /** An incident's post shows its silence: edit it when one starts or ends. */
  refreshPost(incident: Incident): void;
  /** Something the App Home shows changed. */
  changed(): void;
  /** A person's name, for posts (a mention there would notify them). */
  userName(user: string): Promise<string>;
}

/** What became of a silence's summary: posted in `channel`, or refused there for good (`text` is what it says). */
export interface SummaryOutcome {
  posted: boolean;
  channel: string;
  text: string;
}

/** A new silence from Slack. */
export interface SilenceRequest {
  what: string;
  matcher: SilenceMatcher;
  reason: string;
  user: string;
  durationMs: number;
  /** Made from this incident's post. */
  incident?: Incident;
  /** Where the command was typed (the announcement goes there when there is no report channel). */
  channel?: string;
}

/** Silences: kept, applied, listed, ended and summarised. */
export class Silencing {
  /** The last minute whose maintenance openings were recorded: they are looked for once a minute, not per alert. */
  private windowsCheckedAt = -Infinity;

  constructor(private readonly inputs: SilencingInputs) {}

  /**
   * The silence that takes this alert, if any: one in force at `at`, the alert's own time (so an alert read back
   * after downtime is judged as it would have been live, by a silence that has ended since included); maintenance
   * windows open then are recorded first.
   */
  async silenceFor(subject: SilenceSubject, at = this.inputs.now()): Promise<Silence | undefined> {
    await this.recordOpenWindows(at);
    return (await this.inputs.state.silencesAt(at)).find((silence) => silenceMatches(silence.matcher, subject));
  }

  /** What silences read of a decided alert. */
  subjectOf(message: AlertMessage, rule: { head: string; incident: string } | undefined, keys: readonly string[]): SilenceSubject {
    return { head: rule?.head, label: rule?.incident, keys, textKey: normalisedTextKey(message.text), text: message.text };
  }

  /** Count an alert the silence kept quiet (once per message). */
  noteSilenced(silence: Silence, message: AlertMessage, key: string | undefined): Promise<void> {
    // Recorded in this turn (it may join the caller's commit); the Home is told once the answer is back.
    const counted = this.inputs.state.noteSilenced({ silenceId: silence.id, channel: message.channel, ts: message.ts, key, text: message.text.slice(0, 500), at: this.inputs.now() });
    return counted.then((first) => { if (first) this.inputs.changed(); });
  }

  /** A recovery of `key`: silenced alerts of that key are no longer firing (the summary says so). */
  noteRecovery(key: string, ts: string): Promise<void> {
    return this.inputs.state.noteSilencedRecovery(key, ts);
  }

  /** Silences in force now, maintenance openings included. */
  async active(): Promise<Silence[]> {
    const now = this.inputs.now();
    await this.recordOpenWindows(now);
    return this.inputs.state.activeSilences(now);
  }

  /** Record a silence from Slack and announce it (the report channel, else where it was asked for; an incident's silence on its post). */
  async create(request: SilenceRequest): Promise<Silence> {
    const { state, log } = this.inputs;
    const now = this.inputs.now();
    const config = this.inputs.config();
    // Where everyone sees it, and where the bot surely posts: the report channel, else an incident channel.
    const channel = config.report.channel ?? request.incident?.incidentChannel ?? [...config.incidents.values()][0]?.channel ?? request.channel;
    const silence = await state.addSilence({
      what: request.what, matcher: request.matcher, reason: request.reason, createdBy: request.user, origin: 'slack',
      incidentId: request.incident?.id, channel, startsAt: now, endsAt: now + request.durationMs,
    });
    log.info(`silence #${silence.id} by ${request.user}: ${describeMatcher(silence.matcher)} for ${formatAge(request.durationMs)}`, { reason: request.reason });
    if (request.incident) {
      await state.addIncidentEvent({ incidentId: request.incident.id, kind: 'silence', user: request.user, detail: `#${silence.id} until ${new Date(silence.endsAt).toISOString()}`, at: now });
    }
    await this.refreshCovered(silence);
    this.inputs.changed();
    if (channel) {
      const subject = request.incident ? `incident <${this.inputs.permalink(request.incident.incidentChannel, request.incident.incidentTs)}|#${request.incident.id}> (${inertText(describeMatcher(silence.matcher))})` : inertText(describeMatcher(silence.matcher));
      const text = `:no_bell: ${escapeSlack(await this.inputs.userName(request.user))} silenced ${subject} for ${formatAge(request.durationMs)}, until ${this.clock(silence.endsAt)} (silence ${silence.id})${silence.reason ? `: ${inertText(silence.reason)}` : ''}`;
      // The silence holds whether or not its announcement gets through: a failure is logged, not thrown at the person.
      try {
        await this.post(channel, text, { event_type: 'ims_silence', event_payload: { silence_id: silence.id } }, `announcement of silence ${silence.id}`);
      } catch (error) {
        log.error(`silence #${silence.id} is in force, but its announcement in ${channel} could not be posted: ${errorText(error)}`);
      }
    }
    return silence;
  }

  /**
   * End a silence now (`/ims unsilence`, the Unsilence button); `ended` false when it had already ended. Its summary
   * follows: where it went, or its text when Slack refused it (for the person who ended it: nothing is lost).
   */
  async end(silence: Silence, user: string): Promise<{ ended: boolean; summary?: SummaryOutcome }> {
    if (!(await this.inputs.state.endSilence(silence.id, this.inputs.now(), user))) return { ended: false };
    this.inputs.log.info(`silence #${silence.id} ended by ${user}`);
    const outcomes = await this.summariseDue();
    return { ended: true, summary: outcomes.get(silence.id) };
  }

  /** Record maintenance openings, and summarise silences that are over (expired, ended early, or while IMS was down). */
  async sweep(): Promise<void> {
    await this.recordOpenWindows(this.inputs.now(), true);
    // A sweep while summaries are still being posted (a channel's pace, a slow Slack) leaves them to that run.
    if (this.summarising) return;
    await this.summariseDue();
  }

  private async recordOpenWindows(now: number, force = false): Promise<void> {
    const minute = Math.floor(now / 60_000);
    if (!force && minute === this.windowsCheckedAt) return;
    this.windowsCheckedAt = minute;
    const { maintenance, timezone } = this.inputs.config().interactive;
    if (!maintenance.length) return;
    let opened = false;
    for (const opening of openWindows(maintenance, now, timezone)) {
      const before = (await this.inputs.state.silencesAt(now)).some((s) => s.windowKey === opening.key);
      if (before) continue;
      const silence = await this.inputs.state.addSilence({
        what: opening.window.what, matcher: opening.window.matcher, reason: opening.window.reason, createdBy: opening.window.name, origin: 'maintenance',
        windowKey: opening.key, channel: this.inputs.config().report.channel, startsAt: opening.startsAt, endsAt: opening.endsAt,
      });
      // Recorded once per opening: one ended early by `/ims unsilence` is not opened again.
      if (silence.endedAt === undefined && silence.endsAt > this.inputs.now()) {
        opened = true;
        this.inputs.log.info(`maintenance window '${opening.window.name}' is open until ${this.clock(opening.endsAt)} (silence #${silence.id})`);
        await this.refreshCovered(silence);
      }
    }
    if (opened) this.inputs.changed();
  }

  /** Summaries under way: one run at a time, so a silence's summary is never being posted twice at once. */
  private summarising?: Promise<Map<number, SummaryOutcome>>;

  /** Summarise the silences that are over, after any run under way; what became of each summary, by silence. */
  private summariseDue(): Promise<Map<number, SummaryOutcome>> {
    const run = (this.summarising ?? Promise.resolve(undefined)).catch(() => undefined).then(() => this.summariseNow());
    this.summarising = run;
    void run.finally(() => { if (this.summarising === run) this.summarising = undefined; }).catch(() => undefined);
    return run;
  }

  private async summariseNow(): Promise<Map<number, SummaryOutcome>> {
    const { state, log } = this.inputs;
    const now = this.inputs.now();
    const outcomes = new Map<number, SummaryOutcome>();
    for (const silence of await state.silencesToSummarise(now)) {
      const summary = await this.summaryOf(silence);
      try {
        if (summary) await this.post(summary.channel, summary.text, { event_type: 'ims_silence_summary', event_payload: { silence_id: silence.id } }, `summary of silence ${silence.id}`, summary.thread);
        await state.markSilenceSummarised(silence.id, now);
        if (summary) outcomes.set(silence.id, { posted: true, channel: summary.channel, text: summary.text });
      } catch (error) {
        if (classifySlackFailure(error).kind !== 'permanent') {
          // Tried again at the next sweep; the post is looked for first, so it is made once.
          log.warn(`the summary of silence #${silence.id} could not be posted: ${errorText(error)}; trying again shortly`);
          continue;
        }
        // Slack refuses it for good (an archived channel, one the bot left): logged with the summary itself, and
        // handed to whoever ended it; the silence is closed.
        log.error(`the summary of silence #${silence.id} cannot be posted in ${summary!.channel} (${errorText(error)}); given up: ${summary!.text}`);
        await state.markSilenceSummarised(silence.id, now);
        outcomes.set(silence.id, { posted: false, channel: summary!.channel, text: summary!.text });
      }
      await this.refreshCovered(silence);
      this.inputs.changed();
    }
    return outcomes;
  }

  /** Edit the posts of the open incidents a silence covers (it started or ended): their status line says so. */
  private async refreshCovered(silence: Silence): Promise<void> {
    const open = await this.inputs.state.listIncidents({ open: true });
    const covered = open.filter((incident) => incident.id === silence.incidentId || silenceMatches(silence.matcher, incidentSubject(incident)));
    // The newest hundred: a silence of everything must not queue edits for hours.
    for (const incident of covered.slice(-100)) this.inputs.refreshPost(incident);
  }

  /** The one post when a silence is over: how many alerts it kept quiet, and which are still firing; undefined when none is due. */
  private async summaryOf(silence: Silence): Promise<{ channel: string; thread?: string; text: string } | undefined> {
    const { state } = this.inputs;
    const alerts = await state.silencedAlerts(silence.id);
    // A maintenance window that kept nothing quiet ends without a word (they recur: a daily line would be noise).
    if (silence.origin === 'maintenance' && !alerts.length) return undefined;
    const incident = silence.incidentId !== undefined ? await state.incidentById(silence.incidentId) : undefined;
    const channel = incident?.incidentChannel ?? silence.channel ?? this.inputs.config().report.channel ?? [...this.inputs.config().incidents.values()][0]?.channel;
    if (!channel) return undefined;
    const firing = alerts.filter((a) => a.recoveredTs === undefined);
    const ended = silence.endedAt !== undefined && silence.endedAt < silence.endsAt ? `ended by ${escapeSlack(await this.inputs.userName(silence.endedBy ?? ''))}` : 'expired';
    const name = silence.origin === 'maintenance' ? `Maintenance window ${inertText(silence.createdBy)}` : `Silence ${silence.id} (${inertText(describeMatcher(silence.matcher))})`;
    const lines = [`:bell: ${name} ${ended} after ${formatAge(Math.min(silence.endedAt ?? silence.endsAt, silence.endsAt) - silence.startsAt)}: ${alerts.length} alert${alerts.length === 1 ? '' : 's'} silenced` +
      (alerts.length ? `, ${firing.length} still firing${firing.some((a) => a.key === undefined) ? ' (or with no recovery seen)' : ''}` : '') + (firing.length ? ':' : '.')];
    for (const alert of firing.slice(0, 20)) lines.push(`• <${this.inputs.permalink(alert.channel, alert.ts)}|${escapeSlack(firstLine(alert.text) || alert.text.slice(0, 120))}> (${this.clock(tsToMs(alert.ts))})`);
    if (firing.length > 20) lines.push(`…and ${firing.length - 20} more`);
    return { channel, thread: incident?.incidentTs, text: lines.join('\n') };
  }

  private post(channel: string, text: string, metadata: { event_type: string; event_payload: Record<string, string | number> }, what: string, thread?: string): Promise<string> {
    return this.inputs.poster.post({ channel, text, metadata, what, lookFirst: true, ...(thread ? { thread_ts: thread } : {}) });
  }

  private clock(ms: number): string {
    return formatShortDate(ms, this.inputs.config().timezone);
  }
}

/** One silence as lists show it (mrkdwn, what people typed made inert). */
export function describeSilence(silence: Silence, timezone: string | undefined, creatorName?: string): string {
  // In a post, a name (a mention would notify); ephemeral answers and the Home tab may mention (they notify nobody).
  const by = silence.origin === 'maintenance' ? `maintenance window ${inertText(silence.createdBy)}` : creatorName !== undefined ? escapeSlack(creatorName) : `<@${silence.createdBy}>`;
  return `*${silence.id}* ${inertText(describeMatcher(silence.matcher))} until ${formatShortDate(silence.endsAt, timezone)}, by ${by}` +
    `${silence.reason ? `: ${inertText(silence.reason.slice(0, 200))}` : ''} — ${silence.silenced} alert${silence.silenced === 1 ? '' : 's'} silenced`;
}

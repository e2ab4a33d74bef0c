/**
 * The incident lifecycle: carrying out a decision (the seen reaction, or the incident post with its page and
 * the rest of a long alert in its thread), resolving and reopening by reactions, thread replies as
 * acknowledgements, and finding resolutions made while IMS was away. Each incident is posted once: a message
 * recovered after a stop or crash first looks for its earlier post.
 */
import type { WebClient } from '@slack/web-api';
import type { AlertMessage, CompiledConfig, Decision, Incident, Logger, MessageOrigin, RuleMatch, SlackMessageEvent } from './ims.ts';
import type { Store } from './ims-state.ts';
import { ClaimTakenError, tsAfter } from './ims-state.ts';
import { classifySlackFailure, isHuman } from './ims-plugin-kit.ts';
import { errorText } from './ims-log.ts';
import { alertPieces, decodeEntities, incidentMessages, mentionOf, plainText } from './ims-text.ts';
import { formatDate, tsToMs } from './ims-time.ts';
import { listAll, slackCall, type ChannelQueues, type Poster, type PostSpec } from './ims-slack.ts';
import { LifecycleSteps } from './ims-lifecycle-steps.ts';
import { PostEditor, actionsBlock } from './ims-incident-posts.ts';
import { DigestPoster } from './ims-digests.ts';
import type { AlertIdentity } from './ims-recognisers.ts';
import type { NameDirectory } from './ims-names.ts';
import type { HookRunner } from './ims-hooks.ts';
import type { Silencing } from './ims-silencing.ts';
import type { PermissionChecker } from './ims-permissions.ts';
import { describeMatcher, incidentSubject } from './ims-silences.ts';

/** A `reaction_added` / `reaction_removed` event, as far as IMS reads it. */
export interface ReactionEvent {
  type: 'reaction_added' | 'reaction_removed';
  user: string;
  reaction: string;
  item: { type: string; channel: string; ts: string };
  event_ts?: string;
}

/** What the incident lifecycle needs from the running IMS. */
export interface IncidentInputs {
  state: Store;
  /** With several instances: the instance a message is claimed by now, when it is not this one (checked before posting). */
  claimedElsewhere?(channel: string, ts: string): Promise<string | undefined>;
  /** With several instances: hold alert keys across instances during a lifecycle step (see `KeyLocks`). */
  lockKeys?(keys: readonly string[]): Promise<() => Promise<void>>;
  /** Reads (reactions, history); posts go through `poster`. */
  slack: WebClient;
  poster: Poster;
  log: Logger;
  now(): number;
  config(): CompiledConfig;
  self(): { userId: string; botId: string };
  names: NameDirectory;
  hooks: HookRunner;
  permalink(channel: string, ts: string): string;
  /** The channel queues, for edits in place (they keep their order with the channel's posts). */
  queues: ChannelQueues;
  /** Keep work in IMS's in-flight work (a stop waits for it). */
  track<T>(work: Promise<T>): Promise<T>;
  /** Silences in force take alerts before they are posted. */
  silencing: Silencing;
  /** An incident changed (the App Home shows it). */
  changed(): void;
  /** Who may resolve by reaction (the same rules as the buttons). */
  permissions: PermissionChecker;
}

/** Where an incident goes and what its post says. */
interface IncidentTarget {
  channel: string;
  head: string;
  label: string;
  /** 0 for a reverse-mode repost. */
  ruleNumber: number;
  hotline?: string;
  mentions?: string[];
  groups?: Record<string, string>;
  /** The correlation key of its alert, with lifecycles on. */
  alertKey?: string;
}

/** Carries decisions out: the seen reaction, incident posts (once) with their pages, resolutions and reopenings. */
export class IncidentLifecycle {
  private readonly steps: LifecycleSteps;
  /** Edits incident posts in place (lifecycle steps; the interactive features will too). */
  readonly posts: PostEditor;
  /** Posts incidents at the channel's pace, several in one digest while the channel has a backlog. */
  private readonly digests: DigestPoster;
  /** Posts into each incident channel, in the order their messages came. */
  private readonly postTurns = new ChannelTurns();
  /** The turn of each message being acted on. */
  private readonly turns = new Map<AlertMessage, Turn>();

  constructor(private readonly inputs: IncidentInputs) {
    this.posts = new PostEditor({ slack: inputs.slack, queues: inputs.queues, state: inputs.state, log: inputs.log, config: () => inputs.config(), now: () => inputs.now(), changed: () => inputs.changed() });
    this.digests = new DigestPoster({ poster: inputs.poster, queues: inputs.queues, state: inputs.state, log: inputs.log });
    this.steps = new LifecycleSteps({
      lockKeys: inputs.lockKeys,
      state: inputs.state, poster: inputs.poster, posts: this.posts, log: inputs.log, hooks: inputs.hooks, permalink: (channel, ts) => inputs.permalink(channel, ts),
      heldBack: (channel) => inputs.queues.queuedPosts(channel) > 0 || inputs.queues.available(channel) < 1, track: (work) => inputs.track(work),
      silenced: async (incident, message) => {
        const silence = await inputs.silencing.silenceFor({ ...incidentSubject(incident), text: message?.text ?? incident.text }, message ? tsToMs(message.ts) : undefined);
        if (silence && message) await inputs.silencing.noteSilenced(silence, message, incident.alertKey);
        return !!silence;
      },
    });
  }

  /**
   * Carry out a decision for a claimed message; its hooks are started, not awaited. With lifecycles on, a message
   * about an alert (`decision.alert`) takes its lifecycle step: a new alert opens an incident as ever, a repeat,
   * recovery or reopening changes the incident it belongs to.
   */
  async act(config: CompiledConfig, decision: Exclude<Decision, { action: 'ignore' }>, message: AlertMessage, origin: MessageOrigin, at = message.ts): Promise<void> {
    // Its turn among the posts into its incident channel, taken now, in the order the messages came.
    const destination = decision.action === 'incident' || decision.action === 'reverse repost' ? decision.channel : undefined;
    const turn = destination ? this.postTurns.take(destination) : undefined;
    if (turn) this.turns.set(message, turn);
    try {
      await this.actInTurn(config, decision, message, origin, at);
    } finally {
      turn?.done();
      this.turns.delete(message);
    }
  }

  private async actInTurn(config: CompiledConfig, decision: Exclude<Decision, { action: 'ignore' }>, message: AlertMessage, origin: MessageOrigin, at: string): Promise<void> {
    const { state, log } = this.inputs;
    // A recovery ends the firing of the alerts silences kept quiet (their summaries say which are still firing). Not
    // awaited: messages about one alert must reach their lifecycle step in the order they came, whatever they are.
    for (const alert of decision.action === 'incident' || decision.action === 'seen' ? decision.alert?.alerts ?? [] : []) {
      if (alert.state === 'resolved') void this.inputs.silencing.noteRecovery(alert.key, message.ts).catch((error: unknown) => log.warn(`the recovery of ${alert.key} could not be noted for silences: ${errorText(error)}`));
    }
    if ((decision.action === 'incident' || decision.action === 'seen') && decision.alert && !oneOff(decision.alert.alerts)) {
      const alertDecision = { ...decision, alert: decision.alert };
      return this.steps.take(config, alertDecision, message, () => (decision.action === 'incident' ? this.openFor(config, decision, message, origin) : Promise.resolve(undefined)), at,
        // A step that posts nothing gives its turn up at once: later incidents do not wait for it.
        (step) => { if (step !== 'open') this.turns.get(message)?.done(); });
    }
    switch (decision.action) {
      case 'seen':
      case 'suppressed':
      case 'reacji': {
        await this.inputs.poster.react(message.channel, message.ts, decision.reaction);
        await state.finishMessage(message.channel, message.ts);
        const rule = 'match' in decision ? decision.match?.rule.number : undefined;
        log.info(`${decision.action}: ${decision.action === 'reacji' ? 'reacji' : 'reaction'} :${decision.reaction}:`, { channel: message.channel, ts: message.ts, ...(rule ? { rule } : {}) });
        return;
      }
      case 'incident':
        await this.openFor(config, decision, message, origin);
        return;
      case 'reverse repost': {
        const { incident, opened } = await this.open(config, message, { channel: decision.channel, head: decision.header, label: 'DEFAULT', ruleNumber: 0 }, origin);
        if (opened === 'before') return;
        log.info(`reverse repost #${incident.id} → ${decision.channel}`, { source: `${message.channel}:${message.ts}` });
        void this.inputs.hooks.run('onReverse', () => ({ message, decision, repost: { channel: incident.incidentChannel, ts: incident.incidentTs } }));
        return;
      }
    }
  }

  /** Calm the incidents that stopped flapping by `now` without a message to say so (run every minute). */
  sweepFlapping(now: number): Promise<void> {
    return this.steps.sweepFlapping(this.inputs.config(), now);
  }

  /** Open the incident a rule decided on: post, page, record, then the plugins' `onMatch` / `onHotline`. */
  private async openFor(config: CompiledConfig, decision: Extract<Decision, { action: 'incident' }>, message: AlertMessage, origin: MessageOrigin): Promise<Incident | undefined> {
    const { state, log, hooks, silencing } = this.inputs;
    const rule = decision.match.rule;
    const keys = decision.alert?.alerts.map((a) => a.key) ?? [];
    // A silence in force takes it: seen, not reposted, not paged, counted (a message recovered after a crash was decided before).
    const silence = origin === 'recovery' && await state.incidentBySource(message.channel, message.ts) ? undefined : await silencing.silenceFor(silencing.subjectOf(message, rule, keys), tsToMs(message.ts));
    if (silence) {
      this.turns.get(message)?.done();
      await this.inputs.poster.react(message.channel, message.ts, config.seenReaction);
      let counted: Promise<void> | undefined;
      await state.withinOneCommit(() => {
        counted = silencing.noteSilenced(silence, message, keys[0]);
        void state.finishMessage(message.channel, message.ts);
      });
      await counted;
      log.info(`silenced by silence #${silence.id} (${describeMatcher(silence.matcher)}): reaction :${config.seenReaction}:`, { channel: message.channel, ts: message.ts, rule: rule.number });
      return undefined;
    }
    const members = decision.hotline ? config.hotlines.get(decision.hotline) ?? [] : [];
    const { incident, opened } = await this.open(config, message, {
      channel: decision.channel, head: rule.head, label: rule.incident, ruleNumber: rule.number, hotline: decision.hotline, mentions: members.map(mentionOf),
      groups: capturedGroups(decision.match), alertKey: decision.alert?.alerts.find((a) => a.state === 'firing')?.key,
    }, origin);
    // Opened before a stop, its page and hooks went then (hooks are at most once); this run only finished its thread.
    if (opened === 'before') return incident;
    this.inputs.changed();
    log.info(`incident #${incident.id} ${rule.head} → ${decision.channel}${decision.hotline ? ` paging ${decision.hotline}` : ''}`, { rule: rule.number, source: `${message.channel}:${message.ts}` });
    if (decision.hotline) await state.addIncidentEvent({ incidentId: incident.id, kind: 'hotline', detail: decision.hotline, at: incident.createdAt });
    // Each plugin's onHotline follows its own onMatch only: one plugin's hung onMatch must not delay another's page.
    const paged = { mentions: members.map(mentionOf), post: { channel: incident.incidentChannel, ts: incident.incidentTs } };
    void hooks.run(decision.hotline ? ['onMatch', 'onHotline'] : ['onMatch'], (hook) => ({ message, decision, match: decision.match, incident, ...(hook === 'onHotline' ? paged : {}) }));
    return incident;
  }

  /** Post the incident (once: a recovered message first looks for its earlier post) and record it. */
  private async open(config: CompiledConfig, message: AlertMessage, target: IncidentTarget, origin: MessageOrigin): Promise<{ incident: Incident; opened: 'now' | 'before' }> {
    const { state, log, poster } = this.inputs;
    const recovering = origin === 'recovery';
    const permalink = this.inputs.permalink(message.channel, message.ts);
    const source = { source_channel: message.channel, source_ts: message.ts };
    const render = async () => incidentMessages({
      head: target.head, text: message.text, pieces: alertPieces(message.raw, config.attachmentText), sourceChannel: message.channel, poster: await this.inputs.names.poster(message),
      at: formatDate(tsToMs(message.ts), config.timezone), permalink, mentions: target.mentions, hotline: target.hotline,
    });
    const what = `${target.ruleNumber === 0 ? 'reverse repost' : `incident (rule ${target.ruleNumber})`} of ${message.channel}:${message.ts}`;
    const partsOf = (messages: { text: string; blocks: unknown[] }[], thread: string): PostSpec[] => messages.map((more, i) => ({
      channel: target.channel, thread_ts: thread, text: more.text, blocks: more.blocks, metadata: { event_type: 'ims_incident_part', event_payload: { ...source, part: i + 2 } },
      fallback: plainText(more.blocks) || more.text, lookFirst: recovering, what: `${what} (part ${i + 2} of ${messages.length + 1})`,
    }));
    // A recovered message may have its incident already: its post was made and recorded, and only the rest of a
    // long alert was still to go into the thread (each part is looked for by its metadata before it is posted).
    const existing = recovering ? await state.incidentBySource(message.channel, message.ts) : undefined;
    if (existing) {
      const [, ...rest] = await render();
      for (const part of partsOf(rest, existing.incidentTs)) await poster.post(part);
      await state.finishMessage(message.channel, message.ts);
      return { incident: existing, opened: 'before' };
    }
    const [first, ...rest] = await render();
    // A recovered message may have been posted before the crash: look first (its post, or a digest listing it, names its source).
    // In a storm, the post may go out listed in a digest with the others waiting for the channel.
    // Its buttons from the start; they name the incident once its number is known (the first edit), and until then the post.
    const buttons = config.interactive.buttons ? [actionsBlock({ id: 0, resolvedAt: undefined, acknowledgedAt: undefined })] : [];
    // Into the channel's queue in the order the messages came (whichever rendered first), then the next one's turn.
    const turn = this.turns.get(message);
    await turn?.ready;
    // Several instances: one that froze or lost the state may find its message taken over meanwhile; it posts nothing.
    const other = await this.inputs.claimedElsewhere?.(message.channel, message.ts);
    if (other) throw new ClaimTakenError(message.channel, message.ts, other);
    const posting = this.digests.post({
      channel: target.channel, text: first.text, blocks: [...first.blocks, ...buttons], metadata: { event_type: 'ims_incident', event_payload: source },
      fallback: `${first.text}\n<${permalink}|original alert>`, oldest: message.ts, lookFirst: recovering, what,
    }, {
      // What the alert says, from its start, as its own post would show it (a recogniser's title would drop the rest).
      sourceChannel: message.channel, sourceTs: message.ts, head: target.head, title: message.text.replace(/\s+/g, ' ').trim(),
      permalink, hotline: target.hotline, mentions: target.mentions,
    });
    turn?.done();
    const { ts, digest } = await posting;
    // The message is finished only when the whole alert is in Slack: a stop or crash before the thread parts
    // are posted leaves it pending, and the next start posts what is missing. A digest lists the alert with a
    // link to the original: nothing goes into its thread.
    const incident = await state.addIncident({
      sourceChannel: message.channel, sourceTs: message.ts, incidentChannel: target.channel, incidentTs: ts, ruleNumber: target.ruleNumber,
      head: target.head, label: target.label, hotline: target.hotline, text: message.text, poster: message.poster, createdAt: this.inputs.now(), permalink,
      groups: target.groups, finishesMessage: rest.length === 0 || digest, alertKey: target.alertKey, post: first,
    });
    if (rest.length && !digest) {
      // The page went out with the first post: the thread never holds it back (nor the plugins' hooks).
      try {
        for (const part of partsOf(rest, ts)) await poster.post(part);
        await state.finishMessage(message.channel, message.ts);
      } catch (error) {
        const forGood = classifySlackFailure(error).kind === 'permanent';
        if (forGood && state.isOpen) await state.finishMessage(message.channel, message.ts);
        log.error(`${what}: the rest of the alert could not be posted in the thread (${errorText(error)}); ${forGood ? 'Slack refuses it for good: given up' : 'it stays pending and is retried'}`,
          { source: `${message.channel}:${message.ts}`, destination: target.channel, thread: ts });
      }
    }
    return { incident, opened: 'now' };
  }

  /** Thread replies on incident posts count as acknowledgement (MTTA) and feed the timeline; on a digest, of each incident it lists. */
  async noteThreadReply(event: SlackMessageEvent): Promise<void> {
    if (!event.thread_ts || event.thread_ts === event.ts || event.bot_id === this.inputs.self().botId) return;
    const { state } = this.inputs;
    for (const incident of await state.incidentsByPost(event.channel, event.thread_ts)) {
      await state.addIncidentEvent({ incidentId: incident.id, kind: 'reply', user: event.user ?? event.bot_id, detail: decodeEntities(event.text ?? ''), at: tsToMs(event.ts) });
      // A person's reply acknowledges it (the first acknowledgement shows on the post).
      if (incident.resolvedAt === undefined && isHuman(event.user, this.inputs.self().userId) && await state.acknowledgeIncident(incident.id, tsToMs(event.ts), event.user)) {
        void this.refreshById(incident.id);
      }
    }
  }

  /**
   * Resolved reactions on an incident post (or its original) resolve it; removing the last one reopens it. A
   * reaction on a digest is one on every incident it lists.
   */
  async onReaction(event: ReactionEvent, added: boolean): Promise<void> {
    const { state } = this.inputs;
    if (event.user === this.inputs.self().userId) return;
    const { channel, ts } = event.item;
    const listed = await state.incidentsByPost(channel, ts);
    const incidents = listed.length ? listed : [await state.incidentBySource(channel, ts)].filter((i): i is Incident => !!i);
    for (const incident of incidents) await this.reactionOn(incident, event, added);
  }

  private async reactionOn(incident: Incident, event: ReactionEvent, added: boolean): Promise<void> {
    const { state, log, hooks } = this.inputs;
    const at = event.event_ts ? tsToMs(event.event_ts) : this.inputs.now();
    if (added) await state.addIncidentEvent({ incidentId: incident.id, kind: 'reaction', user: event.user, detail: event.reaction, at });
    if (!this.inputs.config().resolvedReactions.includes(event.reaction)) {
      // Any other reaction by a person on an open incident is its acknowledgement (the first one shows on the post),
      // when `permissions` lets them acknowledge.
      if (!added || incident.resolvedAt !== undefined || !isHuman(event.user, this.inputs.self().userId)) return;
      const mayAcknowledge = await this.permitFor(incident, event, 'acknowledge');
      if (!(await mayAcknowledge(false))) return;
      if (await state.acknowledgeIncident(incident.id, at, event.user)) void this.refreshById(incident.id);
      return;
    }
    if (added) {
      // Reactions follow `permissions` as buttons do: a refusal is told to the person (their reaction stays, inert).
      // The permission is judged on the incident as it is now (read again), the change made if it still is unresolved.
      const mayResolve = await this.permitFor(incident, event, 'resolve');
      if (!(await state.incidentById(incident.id))?.resolvedAt && !(await mayResolve(true))) return;
      if (!(await state.resolveIncident(incident.id, at, event.user))) return;
      const resolved = (await state.incidentById(incident.id))!;
      log.info(`incident #${incident.id} resolved by ${event.user}`);
      void this.posts.refresh(resolved);
      await hooks.run('onResolve', () => ({ incident: resolved, user: event.user, reaction: event.reaction, via: 'reaction' as const }));
    } else {
      if (!incident.resolvedAt || (await this.stillResolved(incident))) return;
      // Resolved by its integration's recovery: a person taking their reaction back does not make the alert fire again.
      if ((await state.incidentEvents(incident.id)).some((e) => e.kind === 'recovery' && e.user === incident.resolvedBy)) return;
      const mayReopen = await this.permitFor(incident, event, 'reopen');
      if (!(await mayReopen(true))) return;
      if (!(await state.reopenIncident(incident.id, at, event.user))) return;
      log.info(`incident #${incident.id} reopened by ${event.user}`);
      const reopened = (await state.incidentById(incident.id))!;
      void this.posts.refresh(reopened);
      await hooks.run('onReopen', () => ({ incident: reopened, user: event.user, reaction: event.reaction, via: 'reaction' as const }));
    }
  }

  /**
   * Ask whether `permissions` let the reacting person do `deed`; the answer judges the incident as it is when called
   * (read again: the caller changes it right after, by a change made only if nobody changed it first). A refusal is
   * logged, and told to them privately when `tell`.
   */
  private async permitFor(incident: Incident, event: ReactionEvent, deed: 'acknowledge' | 'resolve' | 'reopen'): Promise<(tell: boolean) => Promise<boolean>> {
    const permit = await this.inputs.permissions.permit(event.user, deed, incident);
    return async (tell) => {
      const why = permit.refusal((await this.inputs.state.incidentById(incident.id)) ?? incident);
      if (!why) return true;
      this.inputs.log.info(`the :${event.reaction}: of ${event.user} on incident #${incident.id} does not ${deed} it: ${why}`);
      if (tell) {
        void this.inputs.slack.chat.postEphemeral({ channel: event.item.channel, user: event.user, text: `:no_entry: Your :${event.reaction}: does not ${deed} incident #${incident.id}: ${why}.` })
          .catch((error: unknown) => this.inputs.log.warn(`could not tell ${event.user} why: ${errorText(error)}`));
      }
      return false;
    };
  }

  /** Show an incident's post as the state has it now. */
  private async refreshById(id: number): Promise<void> {
    try {
      const incident = await this.inputs.state.incidentById(id);
      if (incident) await this.posts.refresh(incident);
    } catch (error) {
      this.inputs.log.warn(`the post of incident #${id} could not be brought up to date: ${errorText(error)}`);
    }
  }

  /** Whether someone (not IMS) still has a resolved reaction on the incident's post or its original. */
  private async stillResolved(incident: Incident): Promise<boolean> {
    for (const [channel, ts] of [[incident.incidentChannel, incident.incidentTs], [incident.sourceChannel, incident.sourceTs]]) {
      try {
        const answer = await slackCall(() => this.inputs.slack.reactions.get({ channel, timestamp: ts, full: true }), this.inputs.log, 'reactions.get');
        const reactions = ((answer.message as { reactions?: { name: string; users?: string[] }[] } | undefined)?.reactions) ?? [];
        if (this.resolversOf(reactions).length) return true;
      } catch (error) {
        this.inputs.log.warn(`could not read reactions of ${channel}:${ts}: ${errorText(error)}`);
      }
    }
    return false;
  }

  /** Who (other than IMS) put a resolved reaction on a message, from its `reactions` as history lists them. */
  resolversOf(reactions: { name: string; users?: string[] }[] | undefined): string[] {
    const { resolvedReactions } = this.inputs.config();
    const self = this.inputs.self().userId;
    return (reactions ?? []).filter((r) => resolvedReactions.includes(r.name)).flatMap((r) => r.users ?? []).filter((u) => u !== self);
  }

  /** A resolved reaction added while IMS was not listening: record it now (the reaction's own time is not known). */
  async recordMissedResolution(incident: Incident, user: string): Promise<boolean> {
    const { state } = this.inputs;
    // By the same rules as a reaction seen live.
    const permit = await this.inputs.permissions.permit(user, 'resolve', incident);
    if (permit.refusal((await state.incidentById(incident.id)) ?? incident)) return false;
    if (!(await state.resolveIncident(incident.id, this.inputs.now(), user))) return false;
    this.inputs.log.info(`incident #${incident.id} was resolved by ${user} while IMS was away`);
    const resolved = (await state.incidentById(incident.id))!;
    void this.posts.refresh(resolved);
    void this.inputs.hooks.run('onResolve', () => ({ incident: resolved, user, reaction: this.inputs.config().resolvedReactions[0], via: 'reaction' as const }));
    return true;
  }

  /** Reactions are not replayed after downtime: read the posts of open incidents to find the ones resolved meanwhile. */
  async reconcileResolutions(): Promise<void> {
    const { state, log } = this.inputs;
    const windowStart = this.inputs.now() - this.inputs.config().report.windowMs;
    const open = (await state.listIncidents({ open: true })).filter((i) => tsToMs(i.incidentTs) >= windowStart);
    // A digest's ts is the post of several incidents.
    const byChannel = new Map<string, Map<string, Incident[]>>();
    for (const incident of open) {
      if (!byChannel.has(incident.incidentChannel)) byChannel.set(incident.incidentChannel, new Map());
      const posts = byChannel.get(incident.incidentChannel)!;
      posts.set(incident.incidentTs, [...(posts.get(incident.incidentTs) ?? []), incident]);
    }
    for (const [channel, posts] of byChannel) {
      const oldest = [...posts.keys()].reduce((a, b) => (tsAfter(a, b) ? b : a));
      try {
        for await (const m of listAll<{ ts: string; reactions?: { name: string; users?: string[] }[] }>(this.inputs.slack, log, 'conversations.history', { channel, oldest, inclusive: true, limit: 200 }, 'messages')) {
          const incidents = posts.get(m.ts) ?? [];
          const resolver = incidents.length ? this.resolversOf(m.reactions)[0] : undefined;
          if (resolver) for (const incident of incidents) await this.recordMissedResolution(incident, resolver);
        }
      } catch (error) {
        log.warn(`could not read ${channel} for resolutions made while IMS was away: ${errorText(error)}`);
      }
    }
    await this.readMissedEdits(open.filter((i) => i.alertKey !== undefined));
  }

  /**
   * Edits are not replayed after downtime either: an integration that resolved its alert by editing it (Zabbix,
   * Sentry) while IMS was away shows only the edited form in history. Read the alerts of open incidents that were
   * edited, and take the change of state they now say (dated at the edit, when Slack says when).
   */
  private async readMissedEdits(open: Incident[]): Promise<void> {
    const { log } = this.inputs;
    const bySource = new Map<string, Map<string, Incident>>();
    for (const incident of open) {
      if (!bySource.has(incident.sourceChannel)) bySource.set(incident.sourceChannel, new Map());
      bySource.get(incident.sourceChannel)!.set(incident.sourceTs, incident);
    }
    for (const [channel, alerts] of bySource) {
      const oldest = [...alerts.keys()].reduce((a, b) => (tsAfter(a, b) ? b : a));
      try {
        for await (const m of listAll<SlackMessageEvent & { edited?: { ts?: string } }>(this.inputs.slack, log, 'conversations.history', { channel, oldest, inclusive: true, limit: 200 }, 'messages')) {
          if (!m.edited || !alerts.has(m.ts)) continue;
          const config = this.inputs.config();
          const { decision, message } = config.engine.decide(config, { ...m, type: 'message', channel }, { self: this.inputs.self(), edited: true });
          if (!message || !('alert' in decision) || !decision.alert) continue;
          const changes = decision.alert.alerts.filter((a) => a.state === 'resolved' || a.notice);
          if (!changes.length) continue;
          log.info(`an edit made while IMS was away changes ${changes.map((a) => `${a.key} to ${a.state}`).join(', ')}`, { channel, ts: m.ts });
          const seen = { action: 'seen' as const, reaction: config.seenReaction, alert: { ...decision.alert, alerts: changes } };
          await this.act(config, seen, message, 'catch-up', m.edited.ts ?? m.ts);
        }
      } catch (error) {
        log.warn(`could not read ${channel} for edits made while IMS was away: ${errorText(error)}`);
      }
    }
  }
}

/** A message only about one-off events (CI builds): each is its own incident when a rule matches it, as without lifecycles. */
function oneOff(alerts: AlertIdentity[]): boolean {
  return alerts.every((a) => a.state === 'event' && !a.notice);
}

/** The named groups a match captured, read once, as kept with its incident (a group that took no part is left out). */
function capturedGroups(match: RuleMatch): Record<string, string> {
  return Object.fromEntries(Object.entries(match.groups ?? {}).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
}

/** A message's place in its incident channel's order: `ready` when the ones before it are queued; `done` lets the next go. */
interface Turn {
  ready: Promise<void>;
  done(): void;
}

/**
 * Turns per channel, in the order they are taken. Work between a message's claim and its post (silences, rendering,
 * a poster's name) takes varying time, more so on a database server: without turns, an alert could be reposted
 * before one that came earlier. A turn is given up as soon as it is used or not needed.
 */
class ChannelTurns {
  private readonly last = new Map<string, Promise<void>>();

  take(channel: string): Turn {
    const ready = this.last.get(channel) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => { done = resolve; });
    // The next waits for this one and every one before it (one given up early does not let the next overtake them).
    const finished = ready.then(() => mine);
    this.last.set(channel, finished);
    void finished.then(() => { if (this.last.get(channel) === finished) this.last.delete(channel); });
    return { ready, done };
  }
}

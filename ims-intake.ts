/**
 * Intake: Socket Mode envelopes are acked first, then worked on in arrival order, each event de-duplicated (by
 * event_id, then by channel and ts) and admitted only while fewer than `MAX_MESSAGES_IN_FLIGHT` messages are in
 * the works, so a burst waits as raw events rather than half-built posts. Each message is decided, claimed once
 * in the state (the claim is what a crash recovers from), and handed to the incident lifecycle. Where a message
 * came from is its `origin`: `live`, `catch-up` (read back from history) or `recovery` (claimed by an earlier
 * run and not finished).
 */
import type { AlertMessage, CompiledConfig, Decision, Logger, MessageOrigin, RuleMatch, SlackMessageEvent } from './ims.ts';
import { ClaimTakenError, StateUnavailableError, isStateFailure, type PendingMessage, type Store } from './ims-state.ts';
import { classifySlackFailure } from './ims-plugin-kit.ts';
import { errorText } from './ims-log.ts';
import type { ChannelQueues } from './ims-slack.ts';
import type { Metrics } from './ims-metrics.ts';
import type { CatchUp } from './ims-catch-up.ts';
import type { IncidentLifecycle, ReactionEvent } from './ims-incidents.ts';
import type { HookRunner } from './ims-hooks.ts';

/** Messages worked on at once; more wait as acked events (memory stays flat in a storm). */
export const MAX_MESSAGES_IN_FLIGHT = 128;
/** How often events kept while the state is unreachable are taken in again. */
const PARKED_RETRY_MS = 2000;
/** Messages worked on at once while a channel is held back by its posting pace or a 429. */
const MAX_MESSAGES_WHILE_HELD_BACK = 8 * MAX_MESSAGES_IN_FLIGHT;

/** A Socket Mode envelope as the SDK hands it over. */
export interface Envelope {
  ack: (response?: Record<string, unknown>) => Promise<void>;
  type: string;
  body: { event_id?: string; event?: Record<string, unknown>; [field: string]: unknown };
}

/** What intake needs from the running IMS. */
export interface IntakeInputs {
  state: Store;
  log: Logger;
  now(): number;
  config(): CompiledConfig;
  self(): { userId: string; botId: string };
  /** The rule engine's decision for one message (`CompiledConfig`'s engine, given by `ims.ts`). */
  decide(config: CompiledConfig, event: SlackMessageEvent, self: { userId: string; botId: string }, edited?: boolean): { decision: Decision; message?: AlertMessage };
  /** True once IMS is stopping: envelopes are no longer taken. */
  stopping(): boolean;
  /** The per-channel queues: while one waits out a 429, admission is lifted so other channels go on. */
  queues: ChannelQueues;
  catchUp: CatchUp;
  incidents: IncidentLifecycle;
  hooks: HookRunner;
  /** Channels plugins made for themselves: never alert sources. */
  pluginChannels: ReadonlySet<string>;
  track<T>(work: Promise<T>): Promise<T>;
  /** Someone opened the bot's Home tab. */
  homeOpened(user: string): Promise<void>;
  /** Counted for `/metrics`. */
  metrics: Pick<Metrics, 'noteEvent' | 'noteAck' | 'noteDecision'>;
}

/** Takes Socket Mode events in: acks, de-duplicates, admits, decides and claims each message, then hands it on. */
export class Intake {
  /** Acked events not yet taken, in arrival order (`takenUpTo` is the next). */
  private readonly acked: ({ eventId?: string; event: Record<string, unknown> } | undefined)[] = [];
  private takenUpTo = 0;
  private draining = false;
  /** Messages taken whose core work (not their hooks) is not finished: what admission counts. */
  private messagesInWork = 0;
  /** `channel:ts` of messages being handled right now: a second delivery of one is not handled twice. */
  private readonly beingHandled = new Set<string>();

  constructor(private readonly inputs: IntakeInputs) {
    inputs.queues.onThrottled = () => { if (this.draining) setImmediate(() => this.drain()); };
  }

  /** One Socket Mode envelope: acked at once; its event is worked on from the next turn. */
  onEnvelope({ ack, type, body }: Envelope): void {
    const { log, stopping } = this.inputs;
    if (stopping()) return;
    // Ack first: Slack redelivers anything not acked within 3 s, and the work below may take longer.
    const { metrics } = this.inputs;
    const kind = typeof body?.event?.type === 'string' ? body.event.type : type;
    const arrived = performance.now();
    metrics.noteEvent(kind);
    ack().then(() => metrics.noteAck(kind, (performance.now() - arrived) / 1000), (error) => log.warn(`ack failed: ${errorText(error)}`));
    if (type !== 'events_api' || !body?.event || typeof body.event !== 'object') return;
    // Slack echoes every post IMS makes back to it: nothing to do, not even a de-duplication write.
    const botId = this.inputs.self().botId;
    // An integration's edit of its alert may change the alert's state (Zabbix, Sentry): read with lifecycles on.
    const readEdit = body.event.subtype === 'message_changed' && this.inputs.config().lifecycle.enabled && !editOf(body.event, botId);
    if (body.event.type === 'message' && ((botId && body.event.bot_id === botId) || (body.event.subtype === 'message_changed' && !readEdit))) {
      if (body.event.bot_id !== botId) log.debug(decisionLine({ action: 'ignore', reason: 'hidden subtype' }, body.event as SlackMessageEvent), { channel: body.event.channel, ts: body.event.ts });
      return;
    }
    // The work waits for the next turn, so every frame of a burst is acked before any of them is worked on.
    this.acked.push({ eventId: body.event_id, event: body.event });
    if (!this.draining) {
      this.draining = true;
      setImmediate(() => this.drain());
    }
  }

  /** Work through everything acked now, whatever admission says (a stop, a test waiting for quiet). */
  drainAll(): void {
    if (this.draining) this.drain(Infinity);
  }

  /**
   * Take more only while fewer than `MAX_MESSAGES_IN_FLIGHT` messages are in the works; lifted (up to
   * `MAX_MESSAGES_WHILE_HELD_BACK`) while a channel waits for its pace or out a 429, so it never holds up the others.
   */
  private admitting(): boolean {
    if (this.messagesInWork < MAX_MESSAGES_IN_FLIGHT) return true;
    // A channel held back (its pace, a 429) must not hold up the others, but in a storm every channel may be held
    // back at once: the lift is bounded too, so memory and the acks of new frames stay in hand.
    return this.inputs.queues.throttled.size > 0 && this.messagesInWork < MAX_MESSAGES_WHILE_HELD_BACK;
  }

  /** Work through acked events in arrival order, yielding every few milliseconds so new frames get acked. */
  private drain(budgetMs = 2): void {
    const { state, log, now } = this.inputs;
    // A stop that gave up on in-flight work has closed the DB: what is left was acked and is caught up at the next start.
    if (!state.isOpen) return;
    const deadline = performance.now() + budgetMs;
    // One commit for the slice: de-duplication records and claims of its messages land together (the cursor
    // with them, so a crash before the commit is caught up from history, never lost). The work below waits for
    // no answer of its own slice (they come once the commit is made): a message's claim is its own
    // de-duplication, and any other event goes on once its event ID's answer says it is new.
    void state.withinOneCommit(() => {
      while (this.takenUpTo < this.acked.length && performance.now() < deadline && (budgetMs === Infinity || this.admitting())) {
        const taken = this.acked[this.takenUpTo]!;
        this.acked[this.takenUpTo++] = undefined;
        this.takeIn(taken, 'live');
      }
    }).catch(() => undefined); // each call's failure reaches the event it belongs to (see `dispatch`)
    if (this.takenUpTo < this.acked.length) {
      // Full: the next message to finish calls again. Otherwise yield a turn, so new frames get acked.
      if (this.admitting()) setImmediate(() => this.drain());
      return;
    }
    this.acked.length = 0;
    this.takenUpTo = 0;
    this.draining = false;
  }

  /** Start one event's work (inside a slice: its event ID's record and its claim join the slice's commit). */
  private takeIn(taken: { eventId?: string; event: Record<string, unknown> }, origin: MessageOrigin, recorded = false): void {
    const { state, now } = this.inputs;
    // An event kept while the state was away may have had its ID recorded before the failure: it is not its own duplicate.
    const firstSeen = taken.eventId ? state.rememberEvent(taken.eventId, now()).then((first) => first || recorded) : Promise.resolve(true);
    this.messagesInWork++;
    this.inputs.track(this.dispatch(taken.event, origin, firstSeen, taken.eventId).finally(() => {
      this.messagesInWork--;
      if (this.draining && (this.messagesInWork === MAX_MESSAGES_IN_FLIGHT - 1 || this.messagesInWork === MAX_MESSAGES_WHILE_HELD_BACK - 1)) setImmediate(() => this.drain());
    }));
  }

  /**
   * Events whose state could not be reached (the database away), in arrival order: taken in again every 2 s until
   * it answers. Acked events are never dropped for the state's sake.
   */
  private readonly parked: { eventId?: string; event: Record<string, unknown>; origin: MessageOrigin }[] = [];
  private parkedRetry?: NodeJS.Timeout;

  /** Since when events are kept (the state unreachable); said once when it starts and once when it ends. */
  private keptSince?: number;

  private park(event: Record<string, unknown>, origin: MessageOrigin, eventId: string | undefined, error: unknown): void {
    if (this.keptSince === undefined) {
      this.keptSince = Date.now();
      this.inputs.log.warn(`the state is unreachable (${errorText(error)}): events are kept in memory and taken in again when it answers`);
    }
    this.parked.push({ eventId, event, origin });
    this.parkedRetry ??= setTimeout(() => this.takeInParked(), PARKED_RETRY_MS);
  }

  private takeInParked(): void {
    this.parkedRetry = undefined;
    if (this.inputs.stopping() || !this.parked.length) return;
    const again = this.parked.splice(0);
    this.inputs.log.debug(`taking in ${again.length} event(s) kept while the state was unreachable`);
    void this.inputs.state.withinOneCommit(() => { for (const { origin, ...taken } of again) this.takeIn(taken, origin, true); }).catch(() => undefined);
  }

  /** The last reaction taken in: the next one starts when it is done. */
  private lastReaction: Promise<unknown> = Promise.resolve();

  private reactionsInOrder(work: () => Promise<void>): Promise<void> {
    const turn = this.lastReaction.then(work);
    this.lastReaction = turn.catch(() => undefined);
    return turn;
  }

  /** Events kept in memory while the state is unreachable. */
  get parkedCount(): number {
    return this.parked.length;
  }

  /**
   * Handle one event (a message or a reaction). Malformed events are logged and skipped; failures are logged, never
   * thrown. `firstSeen`: whether its event ID is new (a message is de-duplicated by its own claim instead).
   */
  async dispatch(event: Record<string, unknown>, origin: MessageOrigin, firstSeen: Promise<boolean> = Promise.resolve(true), eventId?: string): Promise<void> {
    const { state, log } = this.inputs;
    // A message is not held up by its event ID's answer: its claim, made before any await, de-duplicates it.
    const duplicate = firstSeen.then((first) => !first);
    const seenBefore = async () => {
      if (!(await duplicate)) return false;
      log.debug(`duplicate delivery ignored: this ${String(event.type)} event_id was seen before`, { event_id: eventId, channel: event.channel, ts: event.ts });
      return true;
    };
    try {
      if (event.type === 'message' && event.subtype === 'message_changed') {
        if (!(await seenBefore())) await this.handleEdit(event, origin);
      } else if (event.type === 'message' && typeof event.channel === 'string' && typeof event.ts === 'string') {
        // Its claim (made before any await) decides whether it is handled; a redelivery is still said to be one.
        // A thread reply on an incident post is noted only when its event ID is new; a redelivery is logged once, here.
        const [, redelivered] = await Promise.all([this.handleMessage(event as SlackMessageEvent, origin, () => duplicate), duplicate]);
        if (redelivered) log.debug('duplicate delivery ignored: this message event_id was seen before', { event_id: eventId, channel: event.channel, ts: event.ts });
      } else if ((event.type === 'reaction_added' || event.type === 'reaction_removed') && isReactionEvent(event)) {
        // One at a time, in the order they came: a reaction and its removal a moment later must not swap.
        await this.reactionsInOrder(async () => { if (!(await seenBefore())) await this.inputs.incidents.onReaction(event, event.type === 'reaction_added'); });
      } else if (event.type === 'app_home_opened' && typeof event.user === 'string') {
        if (!(await seenBefore()) && event.tab !== 'messages') await this.inputs.homeOpened(event.user);
      } else if (event.type === 'message' || event.type === 'reaction_added' || event.type === 'reaction_removed') {
        log.warn(`malformed ${event.type} event skipped: ${JSON.stringify(event).slice(0, 200)}`);
      }
      if (this.keptSince !== undefined && !this.parked.length) {
        log.info(`the state answers again: the events kept for ${Math.round((Date.now() - this.keptSince) / 1000)} s are taken in`);
        this.keptSince = undefined;
      }
    } catch (error) {
      if (error instanceof StateUnavailableError && state.isOpen && !this.inputs.stopping() && origin !== 'recovery') {
        this.park(event, origin, eventId, error);
        return;
      }
      // After a stop that gave up waiting, the DB is closed under the work still running: it is finished at the next start.
      log[state.isOpen ? 'error' : 'debug'](`failed to handle a ${String(event.type)} event: ${errorText(error)}`, { channel: event.channel, ts: event.ts });
    }
  }

  /** The pipeline for one message: decide, claim (once), act, then run the plugins. Throws what may pass (it stays pending). */
  async handleMessage(event: SlackMessageEvent, origin: MessageOrigin, redelivered: () => Promise<boolean> = async () => false): Promise<void> {
    const { state, log, catchUp } = this.inputs;
    const config = this.inputs.config();
    const where = { channel: event.channel, ts: event.ts, poster: event.bot_id || event.user };
    if (this.inputs.pluginChannels.has(event.channel)) { log.debug('ignored message (a channel a plugin made for itself, e.g. a war room)', where); return; }
    // Its channel's history is being read: it goes after the older messages, in order.
    if (origin === 'live' && catchUp.hold(event)) { log.debug('message held until its channel\'s missed history is read', where); return; }
    const { decision, message } = this.inputs.decide(config, event, this.inputs.self());
    this.inputs.metrics.noteDecision(decision.action);
    if (decision.action === 'ignore') {
      if (decision.reason !== 'hidden subtype' && decision.reason !== 'own post' && decision.reason !== 'own channel' && catchUp.mayAdvance(event.channel)) void state.advanceCursor(event.channel, event.ts).catch(() => undefined);
      log.debug(decisionLine(decision, event), where);
      if (decision.reason === 'own channel' && !(await redelivered())) await this.inputs.incidents.noteThreadReply(event);
      return;
    }
    const key = `${event.channel}:${event.ts}`;
    if (this.beingHandled.has(key)) { log.debug('ignored message (duplicate: the same channel and ts is being handled)', where); return; }
    const claim = await state.claimMessage(event.channel, event.ts, event, this.inputs.now(), catchUp.mayAdvance(event.channel));
    if (claim === 'done' || claim === 'failed' || (claim === 'pending' && origin !== 'recovery')) {
      log.debug(`ignored message (duplicate: the same channel and ts was ${claim === 'pending' ? 'taken and is retried' : 'handled before'})`, where);
      return;
    }
    log.debug(decisionLine(decision, event), where);
    this.beingHandled.add(key);
    try {
      void this.inputs.hooks.run('onMessage', () => ({ message: message!, decision, match: 'match' in decision ? decision.match : undefined }));
      await this.inputs.incidents.act(config, decision, message!, origin);
    } catch (error) {
      if (error instanceof ClaimTakenError) { log.info(error.message, where); return; }
      if (!(await this.failedForGood(message!, decision, error))) throw error;
    } finally {
      this.beingHandled.delete(key);
    }
  }

  /**
   * An edit of a message (`message_changed`), with lifecycles on: read only for a change of its alert's state (an
   * integration that resolves by editing its alert), never as a new alert, and not claimed (the message it edits
   * was); a redelivery is caught by its event_id, and a step taken twice changes nothing the second time.
   */
  private async handleEdit(event: Record<string, unknown>, origin: MessageOrigin): Promise<void> {
    const { log } = this.inputs;
    const inner = event.message as Record<string, unknown> | undefined;
    if (!inner || typeof inner !== 'object' || typeof inner.ts !== 'string' || typeof event.channel !== 'string') return;
    const edited = { ...inner, type: 'message', channel: event.channel } as SlackMessageEvent;
    if (this.inputs.pluginChannels.has(edited.channel)) return;
    const config = this.inputs.config();
    const { decision, message } = this.inputs.decide(config, edited, this.inputs.self(), true);
    // Logged under the edit's own ts (as before lifecycles), naming the message it edits.
    const where = { channel: edited.channel, ts: event.ts, edits: edited.ts };
    // An edit that changes no alert's state is what it was before lifecycles: a hidden subtype, not an alert.
    const unread = () => log.debug(decisionLine({ action: 'ignore', reason: 'hidden subtype' }, event as unknown as SlackMessageEvent), where);
    if (decision.action === 'ignore' || !message || !('alert' in decision) || !decision.alert) return unread();
    // An edit says what changed: a recovery, a notice, or firing again for an alert resolved before (Sentry's
    // re-opened). An alert that still fires after an edit is not a repeat.
    const { state } = this.inputs;
    const resolvedBefore = async (key: string) => (await state.keyRecord(key))?.state === 'resolved';
    const changes: typeof decision.alert.alerts = [];
    for (const a of decision.alert.alerts) if (a.state === 'resolved' || a.notice || (a.state === 'firing' && await resolvedBefore(a.key))) changes.push(a);
    if (!changes.length) return unread();
    // The edit is claimed under its own ts: one that fails on the way stays pending and is retried, like a message.
    const editTs = String(event.ts ?? event.event_ts ?? '');
    const claim = editTs ? await state.claimMessage(edited.channel, editTs, event, this.inputs.now(), false) : 'new';
    if (claim === 'done' || claim === 'failed' || (claim === 'pending' && origin !== 'recovery')) return;
    log.debug(`edit read: ${changes.map((a) => `${a.key} ${a.state}`).join(', ')}`, where);
    // The change happened when the message was edited (the edit's own ts), not when the alert first fired.
    const seen = { action: 'seen' as const, match: 'match' in decision ? decision.match : undefined, reaction: config.seenReaction };
    try {
      await this.inputs.incidents.act(config, { ...seen, alert: { ...decision.alert, alerts: changes } }, message, 'live', editTs || edited.ts);
      if (editTs) await state.finishMessage(edited.channel, editTs);
    } catch (error) {
      if (isStateFailure(error) || classifySlackFailure(error).kind !== 'permanent' || !state.isOpen || !editTs) throw error;
      await state.failMessage(edited.channel, editTs, this.inputs.now());
      log.error(`the edit of ${edited.channel}:${edited.ts} could not be acted on: Slack refused it for good (${errorText(error)}); recorded as failed`, where);
    }
  }

  /**
   * Finish messages claimed before `claimedBefore` and not completed: an earlier run's (at start) or failed ones (every
   * minute); with several instances, only those `mine` accepts (this one's, or those of an instance that died).
   */
  async retryPending(claimedBefore = Infinity, mine: (message: PendingMessage) => boolean = () => true): Promise<void> {
    const { state, log } = this.inputs;
    const pending = (await state.pendingMessages(claimedBefore)).filter((message) => !this.beingHandled.has(`${message.channel}:${message.ts}`) && mine(message));
    if (!pending.length) return;
    log.warn(claimedBefore === Infinity ? `finishing ${pending.length} message(s) interrupted by the last stop` : `retrying ${pending.length} message(s) whose handling failed`);
    for (const { event } of pending) {
      const retry = (event as { subtype?: unknown }).subtype === 'message_changed'
        ? this.handleEdit(event as Record<string, unknown>, 'recovery') : this.handleMessage(event as SlackMessageEvent, 'recovery');
      await retry.catch((error) => log.error(`retry failed: ${errorText(error)}`));
    }
  }

  /**
   * A message Slack refuses for good (whatever the retry: a channel that is gone, a bot not in it, a reaction
   * name that does not exist) is recorded as failed and logged with the alert at error level, never retried
   * every minute. False for failures that may pass: the message stays pending and is retried.
   */
  private async failedForGood(message: AlertMessage, decision: Exclude<Decision, { action: 'ignore' }>, error: unknown): Promise<boolean> {
    const { state, log } = this.inputs;
    const failure = classifySlackFailure(error);
    // A failure of the state itself may pass: the message stays pending and is retried.
    if (isStateFailure(error) || failure.kind !== 'permanent' || !state.isOpen) return false;
    await state.failMessage(message.channel, message.ts, this.inputs.now());
    const rule = 'match' in decision ? decision.match?.rule : undefined;
    const destination = decision.action === 'incident' || decision.action === 'reverse repost' ? decision.channel : message.channel;
    const method = (error as { method?: string }).method ?? (decision.action === 'incident' || decision.action === 'reverse repost' ? 'chat.postMessage' : 'reactions.add');
    log.error(`${decision.action === 'incident' ? 'incident' : decision.action} of ${message.channel}:${message.ts} failed for good: Slack refused ${method} to ${destination} (${failure.reason}); recorded as failed, not retried`, {
      source: `${message.channel}:${message.ts}`, ...(rule ? { rule: rule.number, head: rule.head } : {}), destination, error: failure.code,
      text: message.text.replace(/\s+/g, ' ').slice(0, 200),
    });
    return true;
  }
}

/** The `--debug` line for one message: the rule that matched (number, head, pattern) and what follows, or why it is ignored. */
export function decisionLine(decision: Decision, event: SlackMessageEvent): string {
  const rule = (match: RuleMatch) => {
    const pattern = match.rule.source.match;
    const when = match.rule.source.when;
    return `rule ${match.rule.number} ${match.rule.head} ${pattern instanceof RegExp ? String(pattern) : `'${pattern}'`}${when !== undefined && when !== '.*' ? ` (when ${String(when)})` : ''}`;
  };
  switch (decision.action) {
    case 'incident': return `${rule(decision.match)} matched → incident in ${decision.channel}${decision.hotline ? `, paging ${decision.hotline}` : ''}`;
    case 'suppressed': return `suppression ${rule(decision.match)} matched → not an incident, :${decision.reaction}:`;
    case 'seen': return decision.match ? `${rule(decision.match)} matched; reverse mode reposts only what matches no rule → :${decision.reaction}:` : `no rule matched → seen, :${decision.reaction}:`;
    case 'reverse repost': return `no rule matched → reverse mode reposts it to ${decision.channel} as ${decision.header}`;
    case 'reacji': return `${decision.match ? `${rule(decision.match)} matched; ` : ''}posted by a reacji bot without a link → :${decision.reaction}: for the Reacji Channeler`;
    case 'ignore': {
      const poster = event.bot_id || event.user || 'nobody';
      const why: Record<string, string> = {
        'own post': 'IMS\'s own post',
        'hidden subtype': `hidden subtype '${event.subtype ?? 'hidden'}': edits, deletions and channel notices are not alerts`,
        'empty text': 'empty text: nothing in text, attachments or blocks to match',
        poster: `poster ${poster} is not in posters ([PostID])`,
        'own channel': `${event.channel} is a channel IMS posts into`,
      };
      return `ignored message (${why[decision.reason] ?? decision.reason})`;
    }
  }
}

/** The edited message of a `message_changed` event, when it is IMS's own (its own posts' edits are never read). */
function editOf(event: Record<string, unknown>, botId: string): boolean {
  const inner = event.message as { bot_id?: unknown } | undefined;
  return !!botId && inner?.bot_id === botId;
}

function isReactionEvent(event: Record<string, unknown>): event is ReactionEvent & Record<string, unknown> {
  const item = event.item as Record<string, unknown> | undefined;
  return typeof event.user === 'string' && typeof event.reaction === 'string' && !!item && typeof item.channel === 'string' && typeof item.ts === 'string';
}

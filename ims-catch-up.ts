/**
 * Catch-up: what was said in the watched channels while IMS was not listening (stopped, crashed, disconnected)
 * is read back from each channel's history since its cursor, oldest first across channels, and handled as
 * if it had just arrived. While a channel's history is read, its live messages wait, and go after the older
 * ones, in order. A channel's cursor only moves once everything before it was taken, so a crash loses nothing.
 */
import type { WebClient } from '@slack/web-api';
import type { CompiledConfig, Logger, MessageOrigin, SlackMessageEvent } from './ims.ts';
import type { Store } from './ims-state.ts';
import { tsAfter } from './ims-state.ts';
import { errorText } from './ims-log.ts';
import { tsToMs } from './ims-time.ts';
import { listAll } from './ims-slack.ts';

/** What catch-up needs from the running IMS. */
export interface CatchUpInputs {
  state: Store;
  slack: WebClient;
  log: Logger;
  now(): number;
  config(): CompiledConfig;
  /** Channels plugins made for themselves: never read. */
  pluginChannels: ReadonlySet<string>;
  /** Handle one event (a missed message with origin `catch-up`, a held one with `live`). */
  dispatch(event: SlackMessageEvent, origin: MessageOrigin): Promise<void>;
  /** Keep work in IMS's in-flight work (a stop waits for it). */
  track<T>(work: Promise<T>): Promise<T>;
  /** How many missed messages are handled at once (posting runs in batches to bound memory). */
  batch: number;
  /** After each catch-up (resolutions made while IMS was away). */
  afterwards(): Promise<void>;
}

/** Reads back, in order, what was said while IMS was not listening; holds live messages of those channels meanwhile. */
export class CatchUp {
  /** Channels whose history is being read, and their live messages waiting meanwhile. */
  private readonly holding = new Map<string, SlackMessageEvent[]>();
  /** Channels whose last catch-up failed: live messages are handled, but the cursor waits for a catch-up. */
  private readonly cursorFrozen = new Set<string>();
  /** Channels with a cursor, as far as this instance knows (read from the state at each catch-up). */
  private readonly knownChannels = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  /**
   * Since when a channel without a cursor is read at the next catch-up: the instant before the socket first
   * connected, or when it last dropped. Alerts that arrive after that but are lost in transit (or acked and
   * not yet claimed when IMS is killed) are still found in history; what was said before is not an alert to IMS.
   */
  private listeningSince?: { ts: string; after: 'start' | 'disconnect' };
  /** The ts of the missed message being worked on now, while a catch-up dispatches (the catch-up lag). */
  private working?: string;

  constructor(private readonly inputs: CatchUpInputs) {}

  /**
   * IMS is about to listen for the first time (call before the socket connects). `catchingUp`: a catch-up follows
   * (alone, or as the leader of several instances): live messages wait for their channel's history until it ran. An
   * instance that does not catch up holds nothing (nothing would release it).
   */
  async startListening(catchingUp = true): Promise<void> {
    if (catchingUp) await this.holdAll();
    this.listeningSince = { ts: (this.inputs.now() / 1000).toFixed(6), after: 'start' };
  }

  /** The socket dropped; what came after `sinceMs` may be lost, so the next catch-up reads from there. */
  noteDisconnect(sinceMs: number): void {
    this.listeningSince ??= { ts: (sinceMs / 1000).toFixed(6), after: 'disconnect' };
  }

  /** A live message of a channel being caught up: true when it was held, to go after the older ones. */
  hold(event: SlackMessageEvent): boolean {
    const held = this.holding.get(event.channel);
    held?.push(event);
    return held !== undefined;
  }

  /** Whether a channel's cursor may move now (not while its history is read, nor after its catch-up failed). */
  mayAdvance(channel: string): boolean {
    return !this.holding.has(channel) && !this.cursorFrozen.has(channel);
  }

  /** How far behind now the missed message being worked on is (seconds); 0 when no catch-up is dispatching. */
  lagSeconds(): number {
    return this.working === undefined ? 0 : Math.max(0, (this.inputs.now() - tsToMs(this.working)) / 1000);
  }

  /** A catch-up failed somewhere and is worth trying again. */
  get retryDue(): boolean {
    return this.cursorFrozen.size > 0;
  }

  /** Read what was missed, from each watched channel's history since its cursor; one catch-up at a time. */
  run(overlapMs = 0): Promise<void> {
    // Held at once (the channels known so far): a live message arriving from now on waits for its channel's history.
    const held = this.holdChannels(this.knownChannels);
    this.chain = this.chain.then(() => this.once(held, overlapMs), () => this.once(held, overlapMs));
    return this.chain;
  }

  /** Hold live messages of `channels` (not IMS's or plugins' own) until their history is read; the channels held. */
  private holdChannels(channels: Iterable<string>): string[] {
    const own = this.inputs.config().ownChannels;
    const held = [...channels].filter((c) => !own.has(c) && !this.inputs.pluginChannels.has(c));
    for (const channel of held) if (!this.holding.has(channel)) this.holding.set(channel, []);
    return held;
  }

  /** Hold every channel IMS has a cursor for (another instance may have added some). */
  private async holdAll(): Promise<string[]> {
    for (const channel of (await this.inputs.state.cursors()).keys()) this.knownChannels.add(channel);
    return this.holdChannels(this.knownChannels);
  }

  /**
   * `overlapMs`: read that much before each cursor too. Several instances move one cursor: another instance's claims
   * may have moved it past messages a dead instance acked and never claimed. Read again, they are claimed once.
   */
  private async once(marked: string[], overlapMs: number): Promise<void> {
    const { state, log, now } = this.inputs;
    const config = this.inputs.config();
    const firstStart = (await state.getMeta('first_start')) === undefined;
    const nowTs = (now() / 1000).toFixed(6);
    const channels = new Set([...marked, ...(await this.holdAll()), ...this.cursorFrozen]);
    await this.meetChannels(channels);
    if (firstStart) await state.setMeta('first_start', nowTs);
    const oldestAllowed = (now() - config.state.catchUpWindowMs) / 1000;
    const missed: SlackMessageEvent[] = [];
    const newest = new Map<string, string>();
    const read: string[] = [];
    for (const channel of channels) {
      const cursor = await state.cursor(channel);
      if (!cursor) { read.push(channel); continue; }
      const oldest = Math.max(Number(cursor) - overlapMs / 1000, oldestAllowed).toFixed(6);
      try {
        for await (const m of listAll<SlackMessageEvent>(this.inputs.slack, log, 'conversations.history', { channel, oldest, limit: 200 }, 'messages')) {
          if (m.ts === cursor) continue;
          missed.push({ ...m, type: 'message', channel });
          if (!newest.has(channel) || tsAfter(m.ts, newest.get(channel)!)) newest.set(channel, m.ts);
        }
        read.push(channel);
      } catch (error) {
        const first = !this.cursorFrozen.has(channel);
        this.cursorFrozen.add(channel);
        log[first ? 'warn' : 'debug'](`catch-up of ${channel} failed: ${errorText(error)}; its live messages go on, and catch-up is retried every minute`);
        this.release(channel);
      }
    }
    // Oldest first across channels, so an incident channel fed by several sources keeps time order.
    missed.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : tsAfter(b.ts, a.ts) ? -1 : 0));
    try {
      for (let i = 0; i < missed.length; i += this.inputs.batch) {
        this.working = missed[i].ts;
        // Claims happen in order as each is dispatched; posting runs in batches to bound memory.
        await Promise.all(missed.slice(i, i + this.inputs.batch).map((event) => this.inputs.dispatch(event, 'catch-up')));
      }
    } finally {
      this.working = undefined;
    }
    for (const channel of read) {
      this.cursorFrozen.delete(channel);
      this.release(channel);
      const last = newest.get(channel);
      if (last) await state.advanceCursor(channel, last);
    }
    if (missed.length) log.info(`caught up ${missed.length} message(s) missed while disconnected`);
    await this.inputs.afterwards();
  }

  /**
   * The channels the bot is in: a channel seen for the first time gets a cursor at when IMS began listening,
   * and channels the bot has left (or that were archived) are dropped from `channels`.
   */
  private async meetChannels(channels: Set<string>): Promise<void> {
    const { state, log, pluginChannels } = this.inputs;
    const own = this.inputs.config().ownChannels;
    const since = this.listeningSince ?? { ts: (this.inputs.now() / 1000).toFixed(6), after: 'start' as const };
    this.listeningSince = undefined;
    try {
      const members = new Set<string>();
      for await (const c of listAll<{ id: string; is_member?: boolean }>(this.inputs.slack, log, 'conversations.list', { types: 'public_channel,private_channel', exclude_archived: true, limit: 1000 }, 'channels')) {
        if (!c.is_member) continue;
        members.add(c.id);
        // What was said before IMS began listening is not an alert to it, but what came after and was lost on the
        // way (a dropped socket, a kill before the claim) is read back — now if the socket dropped, else at the
        // next catch-up (right after start only that instant can have been missed).
        this.knownChannels.add(c.id);
        if (!own.has(c.id) && !pluginChannels.has(c.id) && !(await state.cursor(c.id))) {
          await state.advanceCursor(c.id, since.ts);
          if (since.after === 'disconnect') {
            if (!this.holding.has(c.id)) this.holding.set(c.id, []);
            channels.add(c.id);
          }
        }
      }
      for (const channel of channels) {
        if (members.has(channel)) continue;
        channels.delete(channel);
        this.cursorFrozen.delete(channel);
        this.release(channel);
      }
    } catch (error) {
      this.listeningSince ??= since;
      log.warn(`could not list channels for catch-up: ${errorText(error)}`);
    }
  }

  /** Let a channel's held live messages through, oldest first. */
  private release(channel: string): void {
    const held = this.holding.get(channel) ?? [];
    this.holding.delete(channel);
    held.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : -1));
    for (const event of held) void this.inputs.track(this.inputs.dispatch(event, 'live'));
  }
}

/**
 * Several instances on one shared state: which one does the work that must happen once. Every instance takes in
 * events (Slack gives each event to one connection, and claims in the state make each message handled once);
 * the leader alone runs the schedules (reports, reminders), the outbox, catch-up after downtime, silence
 * summaries, flapping sweeps, pruning and plugins' heartbeats. Leadership is a lease in the state (`ims:leader`),
 * renewed every `renewMs` and lost `ttlMs` after its last renewal: when the leader dies or freezes, another
 * instance takes over within about `ttlMs`. Each instance also holds a lease of its own (`ims:instance:<name>`),
 * so the leader can tell when another instance died and finish what it left (its claimed, unfinished messages).
 *
 * A leader that froze (SIGSTOP, a VM pause) and wakes up past its lease acts as leader only after it renewed
 * again: `leading()` is false from the moment its lease may have run out by its own clock. What it had under way
 * when it froze goes on: a report's turn is recorded as posted and looked for before it is posted, so it is not
 * doubled; an outbox delivery may be (deliveries are at least once, with idempotency keys).
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from './ims.ts';
import type { PendingMessage } from './ims-state.ts';
import { errorText } from './ims-log.ts';

/** What leadership needs of the state: leases (PostgreSQL's `PgState` has them; one SQLite instance needs none). */
export interface LeaseStore {
  acquireLease(name: string, holder: string, ttlMs: number): Promise<{ held: boolean; holder: string; expiresAt: number; term: number }>;
  releaseLease(name: string, holder: string): Promise<boolean>;
  /** Holders of the leases whose names start with `prefix` and have not expired. */
  liveLeases(prefix: string): Promise<{ name: string; holder: string }[]>;
}

/** Whether a store can share its state among instances. */
export function isLeaseStore(store: unknown): store is LeaseStore {
  const candidate = store as Partial<LeaseStore> | undefined;
  return typeof candidate?.acquireLease === 'function' && typeof candidate.releaseLease === 'function' && typeof candidate.liveLeases === 'function';
}

export const LEADER_LEASE = 'ims:leader';
const INSTANCE_LEASE_PREFIX = 'ims:instance:';
/** An instance's name, held by the one process that uses it. */
const NAME_LEASE_PREFIX = 'ims:name:';

export interface LeadershipInputs {
  /** The shared state's leases; none: this is the only instance, always the leader. */
  leases?: LeaseStore;
  /** This instance's name (unique among the instances). */
  instance: string;
  log: Logger;
  renewMs?: number;
  ttlMs?: number;
  /** This instance became the leader (at start-up, or taking over from one that died or stopped). */
  onGained(): void;
  /** Other instances stopped renewing their leases (died, froze or stopped): the leader finishes what they left. */
  onInstancesGone(instances: string[]): void;
}

/** This instance's role among the instances sharing the state, kept up to date in the background. */
export class Leadership {
  private readonly renewMs: number;
  private readonly ttlMs: number;
  /** By this instance's clock: until when its leadership surely holds (renewed at `renewedAt` for `ttlMs`). */
  private leaderUntil = 0;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  /** The other instances alive at the last look (the leader's). */
  private othersAlive = new Set<string>();
  private unreachableSince?: number;
  /** Stopping: the leader's lease is not taken again. */
  private steppedDown = false;
  /** This process, among processes that might be given the same instance name: what holds leases on its work. */
  readonly processHolder: string;

  constructor(private readonly inputs: LeadershipInputs) {
    this.processHolder = `${inputs.instance}#${randomBytes(6).toString('hex')}`;
    this.renewMs = inputs.renewMs ?? 2000;
    this.ttlMs = inputs.ttlMs ?? 10_000;
    if (!(this.renewMs > 0 && this.ttlMs > 2 * this.renewMs)) throw new Error(`leadership: expected a lease time-to-live over twice its renewal, found ttl ${this.ttlMs} ms and renewal ${this.renewMs} ms`);
  }

  /** Whether several instances may share the state (leases are in use). */
  get shared(): boolean {
    return this.inputs.leases !== undefined;
  }

  /** Whether this instance does the work that must happen once, now. */
  leading(): boolean {
    return !this.inputs.leases || Date.now() < this.leaderUntil;
  }

  get role(): 'leader' | 'standby' {
    return this.leading() ? 'leader' : 'standby';
  }

  /** Take part: the instance's name first, then one round at once (so start-up knows its role), then every `renewMs`. */
  async start(): Promise<void> {
    if (!this.inputs.leases) { this.inputs.onGained(); return; }
    await this.claimName();
    await this.round();
    this.schedule();
  }

  /**
   * Each instance's name is its own: a second process under a name in use would take the first one's leases as its
   * own (two leaders, every report twice). The name is a lease held by this process; one still renewed by another
   * process stops start-up with a clear error, one a process that just died held is waited for (at most its
   * time-to-live: a quick restart after a crash).
   */
  private async claimName(): Promise<void> {
    const { leases, instance, log } = this.inputs;
    const deadline = Date.now() + this.ttlMs + 2 * this.renewMs;
    for (let attempt = 1; ; attempt++) {
      const taken = await leases!.acquireLease(NAME_LEASE_PREFIX + instance, this.processHolder, this.ttlMs);
      if (taken.held) return;
      if (Date.now() > deadline) {
        throw new Error(`another IMS instance named '${instance}' is running: its lease in the shared state is still renewed; `
          + 'give each instance its own name (IMS_INSTANCE=ims-a, ims-b, …) and start this one again');
      }
      if (attempt === 1) log.warn(`an instance named '${instance}' held its lease moments ago (a restart after a crash?): waiting up to ${Math.round((deadline - Date.now()) / 1000)} s for it to lapse`);
      await new Promise((resolve) => setTimeout(resolve, this.renewMs));
    }
  }

  /**
   * Stop leading, now (IMS is stopping): another instance takes the leader's work over at once. This instance's own
   * lease is still renewed, so its claimed messages are not finished by another while it finishes them itself.
   */
  async stepDown(): Promise<void> {
    const { leases, instance } = this.inputs;
    this.steppedDown = true;
    if (!leases || !this.leading()) return;
    this.leaderUntil = 0;
    await leases.releaseLease(LEADER_LEASE, instance);
  }

  /** Give the leases up (IMS has finished its work): the leader sees this instance gone with nothing left to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const { leases, instance } = this.inputs;
    if (!leases) return;
    await this.stepDown().catch(() => undefined);
    await Promise.allSettled([leases.releaseLease(INSTANCE_LEASE_PREFIX + instance, instance), leases.releaseLease(NAME_LEASE_PREFIX + instance, this.processHolder)]);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.round().finally(() => this.schedule()), this.renewMs);
    this.timer.unref?.();
  }

  /** Renew this instance's lease, try for (or renew) the leader's, and as leader look for instances gone. */
  private async round(): Promise<void> {
    const { leases, instance, log } = this.inputs;
    if (!leases || this.stopped) return;
    const askedAt = Date.now();
    try {
      const [, , leader] = await Promise.all([
        leases.acquireLease(NAME_LEASE_PREFIX + instance, this.processHolder, this.ttlMs),
        leases.acquireLease(INSTANCE_LEASE_PREFIX + instance, instance, this.ttlMs),
        this.steppedDown ? Promise.resolve({ held: false, holder: '(stepped down)', expiresAt: 0, term: 0 }) : leases.acquireLease(LEADER_LEASE, instance, this.ttlMs),
      ]);
      if (this.unreachableSince !== undefined) log.info('the shared state answers again: leases renewed');
      this.unreachableSince = undefined;
      const was = this.leading();
      // Counted from when it was asked (the server's expiry may be later, never earlier), less a renewal for clock drift.
      this.leaderUntil = leader.held ? askedAt + this.ttlMs - this.renewMs : 0;
      if (leader.held && !was) {
        log.info(`this instance (${instance}) is the leader now (term ${leader.term}): it runs the schedules, the outbox and catch-up`);
        this.othersAlive = new Set();
        this.inputs.onGained();
      } else if (!leader.held && was) {
        log.warn(`this instance (${instance}) is no longer the leader: ${leader.holder} is`);
      }
      if (this.leading()) await this.lookForInstancesGone();
    } catch (error) {
      // Said once per outage (then at debug): the renewal is tried every few seconds.
      const first = this.unreachableSince === undefined;
      this.unreachableSince ??= askedAt;
      log[first ? 'warn' : 'debug'](`leases could not be renewed (${errorText(error)}); ${this.leading() ? 'leading until the lease runs out' : 'standing by until the state answers'}`);
      if (!this.leading()) this.leaderUntil = 0;
    }
  }

  private async lookForInstancesGone(): Promise<void> {
    const { leases, instance } = this.inputs;
    const alive = new Set((await leases!.liveLeases(INSTANCE_LEASE_PREFIX)).map((lease) => lease.holder).filter((holder) => holder !== instance));
    const gone = [...this.othersAlive].filter((other) => !alive.has(other));
    this.othersAlive = alive;
    if (gone.length) this.inputs.onInstancesGone(gone);
  }

  /** The processes alive now (holders of an instance name's lease, `name#…`), this one included. */
  async processesAliveNow(): Promise<Set<string>> {
    const { leases } = this.inputs;
    if (!leases) return new Set([this.processHolder]);
    return new Set([this.processHolder, ...(await leases.liveLeases(NAME_LEASE_PREFIX)).map((lease) => lease.holder)]);
  }

  /** The instances whose leases are alive now, this one included (read from the state). */
  async aliveNow(): Promise<Set<string>> {
    const { leases, instance } = this.inputs;
    if (!leases) return new Set([instance]);
    return new Set([instance, ...(await leases.liveLeases(INSTANCE_LEASE_PREFIX)).map((lease) => lease.holder)]);
  }
}

/** With several instances, how far before its cursor each channel's history is read again on taking over. */
export const CATCH_UP_OVERLAP_MS = 120_000;
/** How long an instance posting a report's turn holds it (another posts it after that, if it was not). */
const TURN_LEASE_MS = 120_000;
/** Turns remembered as due, at most (the newest). */
const DUE_TURNS_KEPT = 24;
/** A turn whose report fails is tried this many times (30 s, 1, 2, 4, 8 min… apart, at most 30 min), then given up. */
const TURN_ATTEMPTS = 8;
const TURN_RETRY_MAX_MS = 30 * 60_000;

/** What the leader's duties act through. */
export interface LeaderDutyInputs {
  leadership: Pick<Leadership, 'shared' | 'leading' | 'aliveNow' | 'processHolder' | 'processesAliveNow'>;
  /** Where a report's turn is recorded as posted. */
  turns: { getMeta(key: string): Promise<string | undefined>; setMeta(key: string, value: string): Promise<void> };
  /** The shared state's leases (several instances); none alone. */
  leases?: LeaseStore;
  instance: string;
  log: Logger;
  reportChannel(): string | undefined;
  /** Post a report; `turn` names the scheduled turn it is for (with several instances). */
  postReport(turn?: string): Promise<boolean>;
  /** Finish pending messages claimed before `claimedBefore` that `mine` accepts. */
  retryPending(claimedBefore: number, mine?: (message: PendingMessage) => boolean): Promise<void>;
  /** Read missed history, `overlapMs` before each cursor too. */
  catchUp(overlapMs: number): Promise<void>;
  /** Make the pending messages of instances that are gone this one's (several instances); how many. */
  adopt(from: string[]): Promise<number>;
  /** Free the leases of processes not among `alive` (several instances). */
  freeLeasesOfGone(alive: string[]): Promise<unknown>;
  stopping(): boolean;
  /** How long to wait before judging an instance dead for good (default: two lease renewals and a second). */
  confirmGoneMs?: number;
}

/** The work one instance does for all, as it differs between one instance (SQLite) and several (shared state). */
export class LeaderDuties {
  /**
   * Report turns this instance saw come (its own ticks) and has not seen posted: the leader posts any nobody did. A
   * turn whose report fails is tried again later and later (Slack away, the bot out of the channel), then given up.
   */
  private readonly dueTurns = new Map<string, { failures: number; nextAt: number }>();
  private postingTurns?: Promise<void>;

  constructor(private readonly inputs: LeaderDutyInputs) {}

  /**
   * A scheduled report's turn came. Alone, the report is posted. With several instances, every instance ticks and
   * remembers the turn; the leader posts it, once: the turn is taken with a lease while it is posted (its messages
   * carry the turn and are looked for first) and recorded as posted after. A turn its poster died on, or that came
   * while no instance led, is posted by the next leader (late, not skipped, not twice).
   */
  async report(turn: string): Promise<void> {
    if (!this.inputs.leadership.shared) { await this.inputs.postReport(); return; }
    if (!this.dueTurns.has(turn)) this.dueTurns.set(turn, { failures: 0, nextAt: 0 });
    if (this.dueTurns.size > DUE_TURNS_KEPT) this.dueTurns.delete(this.dueTurns.keys().next().value!);
    await this.postDueTurns();
  }

  /** As the leader: post the due turns nobody posted (at a tick, on taking over, and every few seconds). One run at a time. */
  postDueTurns(): Promise<void> {
    if (!this.dueTurns.size || !this.inputs.leadership.leading()) return Promise.resolve();
    this.postingTurns ??= (async () => {
      try {
        for (const [turn, due] of [...this.dueTurns]) {
          if (this.inputs.stopping() || !this.inputs.leadership.leading()) break;
          if (Date.now() >= due.nextAt) await this.postTurn(turn);
        }
      } finally {
        this.postingTurns = undefined;
      }
    })();
    return this.postingTurns;
  }

  private async postTurn(turn: string): Promise<void> {
    const { turns, leases, instance, log } = this.inputs;
    const posted = `report posted ${this.inputs.reportChannel() ?? ''} ${turn}`;
    if (await turns.getMeta(posted)) { this.dueTurns.delete(turn); return; }
    const lease = `ims:report:${this.inputs.reportChannel() ?? ''}:${turn}`;
    const me = this.inputs.leadership.processHolder;
    let taken = await leases!.acquireLease(lease, me, TURN_LEASE_MS);
    if (!taken.held) {
      // Its poster may have died holding it (even if an instance of the same name runs again): then the turn is this
      // leader's now (its post, if one went out, is found first).
      if ((await this.inputs.leadership.processesAliveNow()).has(taken.holder)) { log.debug(`report of ${turn}: ${taken.holder} is posting it`); return; }
      log.warn(`report of ${turn}: ${taken.holder} took it and is gone; posting it`);
      await leases!.releaseLease(lease, taken.holder);
      taken = await leases!.acquireLease(lease, me, TURN_LEASE_MS);
      if (!taken.held) return;
    }
    try {
      // Posted meanwhile by the instance that held it before this one.
      if (await turns.getMeta(posted)) { this.dueTurns.delete(turn); return; }
      if (await this.inputs.postReport(turn)) {
        // A poster that froze holding the turn finds, on waking, the post of the leader that took over: that one is recorded.
        if (!(await turns.getMeta(posted))) await turns.setMeta(posted, instance);
        this.dueTurns.delete(turn);
      } else {
        const due = this.dueTurns.get(turn);
        if (due) {
          due.failures++;
          due.nextAt = Date.now() + Math.min(TURN_RETRY_MAX_MS, 30_000 * 2 ** (due.failures - 1));
          if (due.failures >= TURN_ATTEMPTS) {
            this.dueTurns.delete(turn);
            log.error(`report of ${turn}: not posted after ${TURN_ATTEMPTS} attempts; given up (the next turn is tried as usual)`);
          }
        }
      }
    } finally {
      await leases!.releaseLease(lease, me).catch(() => undefined);
    }
  }

  /** Leadership was gained after start-up, or another instance died: finish what others left, read back what they missed. */
  async takeOver(): Promise<void> {
    await this.retryPending();
    await this.inputs.catchUp(this.catchUpOverlapMs());
    await this.postDueTurns();
  }

  /** How far before each cursor a catch-up reads: with several instances, another may have moved it past a dead one's messages. */
  catchUpOverlapMs(): number {
    return this.inputs.leadership.shared ? CATCH_UP_OVERLAP_MS : 0;
  }

  /**
   * Finish pending messages (claimed before `claimedBefore`). Alone, all of them. With several instances, each its own;
   * the leader also those of instances that are gone: not renewing their lease, and still not a moment later (an
   * instance that only lost the database for a while renews as soon as it answers, and finishes its own).
   */
  retryPending(claimedBefore = Infinity): Promise<void> {
    // One at a time. The schedule's retry (of messages claimed a while ago) is left to one under way; a retry of
    // everything (taking over) goes after it.
    if (this.retrying && claimedBefore !== Infinity) return this.retrying;
    const run = (this.retrying ?? Promise.resolve()).catch(() => undefined).then(() => this.retryPendingNow(claimedBefore));
    this.retrying = run;
    void run.finally(() => { if (this.retrying === run) this.retrying = undefined; }).catch(() => undefined);
    return run;
  }

  private retrying?: Promise<void>;

  private async retryPendingNow(claimedBefore: number): Promise<void> {
    const { leadership, instance } = this.inputs;
    if (!leadership.shared) return this.inputs.retryPending(claimedBefore);
    const mine = (message: PendingMessage) => message.claimedBy === instance;
    if (!leadership.leading()) return this.inputs.retryPending(claimedBefore, mine);
    const aliveBefore = await leadership.aliveNow();
    const suspects = new Set<string>();
    let unclaimed = false;
    await this.inputs.retryPending(claimedBefore, (message) => {
      if (mine(message)) return true;
      if (!message.claimedBy) unclaimed = true;
      else if (!aliveBefore.has(message.claimedBy)) suspects.add(message.claimedBy);
      return false;
    });
    if (!suspects.size && !unclaimed) return;
    await new Promise((resolve) => setTimeout(resolve, this.inputs.confirmGoneMs ?? 5000).unref());
    if (this.inputs.stopping() || !leadership.leading()) return;
    const aliveNow = await leadership.aliveNow();
    const gone = [...suspects].filter((other) => !aliveNow.has(other));
    if (gone.length) {
      // What the gone processes held (alert keys, a report's turn) is free at once, then their messages are made this
      // instance's before it finishes them: one that wakes up leaves them alone.
      await this.inputs.freeLeasesOfGone([...(await leadership.processesAliveNow())]);
      this.inputs.log.info(`taking over ${await this.inputs.adopt(gone)} message(s) left pending by ${gone.join(', ')}`);
    }
    await this.inputs.retryPending(claimedBefore, (message) => mine(message) || (unclaimed && !message.claimedBy));
  }


}

/** How long a lock on an alert key lasts without its holder (a step may wait minutes for its channel's pace). */
const KEY_LOCK_MS = 10 * 60_000;
/** How often a key another instance holds is asked for again. */
const KEY_LOCK_POLL_MS = 50;

/**
 * Locks on alert keys across instances. Slack gives each event to any instance, so two messages about one alert (a
 * firing and its recovery, or a repeat) can be worked on by two instances at once: each would read the alert's
 * state before the other recorded its step, and open a second incident or lose the recovery. A lifecycle step
 * holds its keys' locks (leases in the state, taken in sorted order), so steps about one alert follow one another
 * on every instance. A lock whose holder is gone is taken over.
 */
export class KeyLocks {
  constructor(private readonly inputs: { leases: LeaseStore; leadership: Pick<Leadership, 'processHolder' | 'processesAliveNow'>; log: Logger }) {}

  /** Hold the locks of `keys`; resolves to what gives them back. */
  async lock(keys: readonly string[]): Promise<() => Promise<void>> {
    const { leases } = this.inputs;
    const me = this.inputs.leadership.processHolder;
    const names = [...new Set(keys)].sort().map((key) => `ims:key:${key}`);
    const held: string[] = [];
    const release = async () => { await Promise.allSettled(held.map((name) => leases.releaseLease(name, me))); };
    try {
      for (const name of names) {
        for (let attempt = 1; ; attempt++) {
          const taken = await leases.acquireLease(name, me, KEY_LOCK_MS);
          if (taken.held) { held.push(name); break; }
          // At once and now and then: is its holder still there? One that died holding it must not hold the alert.
          if ((attempt === 1 || attempt % 40 === 0) && !(await this.inputs.leadership.processesAliveNow()).has(taken.holder)) {
            this.inputs.log.warn(`the lock on ${name.slice('ims:key:'.length)} was held by ${taken.holder}, which is gone: taken over`);
            await leases.releaseLease(name, taken.holder);
            continue;
          }
          await new Promise((resolve) => setTimeout(resolve, KEY_LOCK_POLL_MS + Math.random() * KEY_LOCK_POLL_MS));
        }
      }
    } catch (error) {
      await release();
      throw error;
    }
    return release;
  }
}

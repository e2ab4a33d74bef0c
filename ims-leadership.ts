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
 * again: `leading()` is false from the moment its lease may have run out by its own clock. Work that must happen
 * once is claimed in the state besides (a report's slot, an outbox item), so a stale leader cannot double it.
 */
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

  constructor(private readonly inputs: LeadershipInputs) {
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

  /** Take part: one round at once (so start-up knows its role), then every `renewMs`. */
  async start(): Promise<void> {
    if (!this.inputs.leases) { this.inputs.onGained(); return; }
    await this.round();
    this.schedule();
  }

  /** Give the leases up, so another instance takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const { leases, instance } = this.inputs;
    if (!leases) return;
    const wasLeader = this.leading();
    this.leaderUntil = 0;
    await Promise.allSettled([wasLeader ? leases.releaseLease(LEADER_LEASE, instance) : Promise.resolve(false), leases.releaseLease(INSTANCE_LEASE_PREFIX + instance, instance)]);
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
      const [, leader] = await Promise.all([
        leases.acquireLease(INSTANCE_LEASE_PREFIX + instance, instance, this.ttlMs),
        leases.acquireLease(LEADER_LEASE, instance, this.ttlMs),
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

  /** The instances whose leases are alive now, this one included (read from the state). */
  async aliveNow(): Promise<Set<string>> {
    const { leases, instance } = this.inputs;
    if (!leases) return new Set([instance]);
    return new Set([instance, ...(await leases.liveLeases(INSTANCE_LEASE_PREFIX)).map((lease) => lease.holder)]);
  }
}

/** Long enough for a dead leader's lease to run out and another instance to take over. */
const TAKE_OVER_MS = 15_000;
/** With several instances, how far before its cursor each channel's history is read again on taking over. */
export const CATCH_UP_OVERLAP_MS = 120_000;

/** What the leader's duties act through. */
export interface LeaderDutyInputs {
  leadership: Pick<Leadership, 'shared' | 'leading' | 'aliveNow'>;
  /** Turns are claimed where reminders' hours are (`claimReminder`). */
  turns: { claimReminder(channel: string, hour: string): Promise<boolean>; releaseReminder(channel: string, hour: string): Promise<void> };
  instance: string;
  log: Logger;
  reportChannel(): string | undefined;
  postReport(): Promise<boolean>;
  /** Finish pending messages claimed before `claimedBefore` that `mine` accepts. */
  retryPending(claimedBefore: number, mine?: (message: PendingMessage) => boolean): Promise<void>;
  /** Read missed history, `overlapMs` before each cursor too. */
  catchUp(overlapMs: number): Promise<void>;
  stopping(): boolean;
}

/** The work one instance does for all, as it differs between one instance (SQLite) and several (shared state). */
export class LeaderDuties {
  constructor(private readonly inputs: LeaderDutyInputs) {}

  /**
   * A scheduled report's turn. Alone, it is posted. With several instances, the leader claims the turn in the state
   * and posts it (once, whoever else ticks); an instance that is not the leader at the tick looks again once a leader
   * that died would have been replaced, and posts it then if nobody claimed it (late, not skipped).
   */
  async report(turn: string): Promise<void> {
    const { leadership, turns, log } = this.inputs;
    if (!leadership.shared) { await this.inputs.postReport(); return; }
    if (!leadership.leading()) {
      await new Promise((resolve) => setTimeout(resolve, TAKE_OVER_MS).unref());
      if (this.inputs.stopping() || !leadership.leading()) return;
    }
    const reports = `report ${this.inputs.reportChannel() ?? ''}`;
    if (!(await turns.claimReminder(reports, turn))) { log.debug(`report of ${turn}: posted by another instance`); return; }
    if (!(await this.inputs.postReport())) await turns.releaseReminder(reports, turn).catch(() => undefined);
  }

  /** Leadership was gained after start-up, or another instance died: finish what others left, read back what they missed. */
  async takeOver(): Promise<void> {
    await this.retryPending();
    await this.inputs.catchUp(this.catchUpOverlapMs());
  }

  /** How far before each cursor a catch-up reads: with several instances, another may have moved it past a dead one's messages. */
  catchUpOverlapMs(): number {
    return this.inputs.leadership.shared ? CATCH_UP_OVERLAP_MS : 0;
  }

  /**
   * Finish pending messages (claimed before `claimedBefore`): alone, all of them; with several instances, this one's and
   * those of instances no longer alive, by the leases as they are now (a live one finishes its own).
   */
  async retryPending(claimedBefore = Infinity): Promise<void> {
    const { leadership, instance } = this.inputs;
    if (!leadership.shared) return this.inputs.retryPending(claimedBefore);
    const alive = await leadership.aliveNow();
    return this.inputs.retryPending(claimedBefore, (message) => !message.claimedBy || message.claimedBy === instance || !alive.has(message.claimedBy));
  }
}

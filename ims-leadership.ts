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

  /** The instances alive at the leader's last look, this one included. */
  alive(): Set<string> {
    return new Set([this.inputs.instance, ...this.othersAlive]);
  }
}

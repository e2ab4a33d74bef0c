/**
 * Metrics in Prometheus' format, through prom-client, for `/metrics` (`ims-http.ts`). prom-client is loaded only
 * when the HTTP endpoint is on; otherwise every `note…` call is a no-op, so a bot that is not scraped pays nothing.
 * Counters are counted where things happen (events, acks, decisions, posts, 429s, hook failures); what the state
 * holds (open incidents, the outbox) is read when Prometheus scrapes.
 */
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

/** What is read at scrape time. */
export interface MetricSources {
  /** Read from the state at each scrape (a failure leaves the figure as it was: the health check says why). */
  incidents(): Promise<{ opened: number; resolved: number; open: number }>;
  outbox(): Promise<{ depth: number; oldestAt?: number }>;
  /** Posts and edits waiting in the channel queues. */
  queueDepth(): number;
  /** How far behind the newest message catch-up is (seconds), 0 when it is not running. */
  catchUpLagSeconds(): number;
  connected(): boolean;
  role(): 'leader' | 'standby';
  now(): number;
}

interface Instruments {
  registry: PromClient.Registry;
  eventsReceived: PromClient.Counter<'type'>;
  eventsAcked: PromClient.Counter<'type'>;
  ackLatency: PromClient.Histogram<'type'>;
  alerts: PromClient.Counter<'decision'>;
  posts: PromClient.Counter<'channel'>;
  rateLimited: PromClient.Counter<'channel'>;
  hookFailures: PromClient.Counter<'plugin' | 'hook'>;
}

/** IMS's metrics; inert unless `enabled`. */
export class Metrics {
  private readonly instruments?: Instruments;
  private sources?: MetricSources;

  constructor(enabled: boolean, instance: string) {
    if (!enabled) return;
    const prom = createRequire(import.meta.url)('prom-client') as typeof PromClient;
    const registry = new prom.Registry();
    registry.setDefaultLabels({ instance });
    prom.collectDefaultMetrics({ register: registry, prefix: 'ims_' });
    const sourcesNow = () => this.sources;
    const read = <T>(pick: (s: MetricSources) => T | Promise<T>, fallback: T): T | Promise<T> => (this.sources ? pick(this.sources) : fallback);
    const registers = [registry];
    this.instruments = {
      registry,
      eventsReceived: new prom.Counter({ name: 'ims_events_received_total', help: 'Socket Mode envelopes received, by type', labelNames: ['type'], registers }),
      eventsAcked: new prom.Counter({ name: 'ims_events_acknowledged_total', help: 'Socket Mode envelopes acknowledged, by type', labelNames: ['type'], registers }),
      ackLatency: new prom.Histogram({
        name: 'ims_ack_latency_seconds', help: 'From an envelope arriving to its acknowledgement being sent', labelNames: ['type'], registers,
        buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      }),
      alerts: new prom.Counter({ name: 'ims_alerts_total', help: 'Messages decided, by decision (incident, seen, suppressed, silenced, reacji, reverse repost, ignore)', labelNames: ['decision'], registers }),
      posts: new prom.Counter({ name: 'ims_slack_posts_total', help: 'Messages IMS posted, by channel', labelNames: ['channel'], registers }),
      rateLimited: new prom.Counter({ name: 'ims_slack_rate_limited_total', help: "Slack's 429 answers to posts and edits, by channel", labelNames: ['channel'], registers }),
      hookFailures: new prom.Counter({ name: 'ims_hook_failures_total', help: 'Plugin hooks that threw, rejected or timed out, by plugin and hook', labelNames: ['plugin', 'hook'], registers }),
    };
    const gauge = (name: string, help: string, value: () => number | Promise<number>) => new prom.Gauge({
      name, help, registers, async collect() { try { this.set(await value()); } catch { /* the state is unreachable: the figure stays */ } },
    });
    const total = (name: string, help: string, value: () => number | Promise<number>) => new prom.Counter({
      name, help, registers, async collect() { try { const n = await value(); this.reset(); this.inc(n); } catch { /* as above */ } },
    });
    total('ims_incidents_opened_total', 'Incidents opened', () => read(async (s) => (await s.incidents()).opened, 0));
    total('ims_incidents_resolved_total', 'Incidents resolved (and not reopened since)', () => read(async (s) => (await s.incidents()).resolved, 0));
    gauge('ims_incidents_open', 'Incidents open now', () => read(async (s) => (await s.incidents()).open, 0));
    gauge('ims_queue_depth', 'Posts and edits waiting in the channel queues', () => read((s) => s.queueDepth(), 0));
    gauge('ims_outbox_depth', 'Plugin deliveries waiting in the outbox', () => read(async (s) => (await s.outbox()).depth, 0));
    gauge('ims_outbox_oldest_age_seconds', 'Age of the oldest delivery waiting in the outbox', () => read(async (s) => {
      const { oldestAt } = await s.outbox();
      return oldestAt === undefined ? 0 : Math.max(0, (s.now() - oldestAt) / 1000);
    }, 0));
    gauge('ims_catch_up_lag_seconds', 'How far behind the newest message the catch-up under way is', () => read((s) => s.catchUpLagSeconds(), 0));
    gauge('ims_slack_connected', '1 while Socket Mode is connected', () => read((s) => (s.connected() ? 1 : 0), 0));
    new prom.Gauge({
      name: 'ims_instance_role', help: '1 for the role this instance has (leader: it does the work that must happen once)', labelNames: ['role'], registers,
      collect() { const role = sourcesNow()?.role() ?? 'leader'; this.reset(); this.set({ role }, 1); this.set({ role: role === 'leader' ? 'standby' : 'leader' }, 0); },
    });
  }

  /** Where scrape-time values come from (set once the runtime is wired). */
  readFrom(sources: MetricSources): void {
    this.sources = sources;
  }

  get enabled(): boolean {
    return this.instruments !== undefined;
  }

  noteEvent(type: string): void {
    this.instruments?.eventsReceived.inc({ type });
  }

  noteAck(type: string, seconds: number): void {
    this.instruments?.eventsAcked.inc({ type });
    this.instruments?.ackLatency.observe({ type }, seconds);
  }

  noteDecision(decision: string): void {
    this.instruments?.alerts.inc({ decision });
  }

  notePost(channel: string): void {
    this.instruments?.posts.inc({ channel });
  }

  noteRateLimited(channel: string): void {
    this.instruments?.rateLimited.inc({ channel });
  }

  noteHookFailure(plugin: string, hook: string): void {
    this.instruments?.hookFailures.inc({ plugin, hook });
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; text: string }> {
    if (!this.instruments) return { contentType: 'text/plain; charset=utf-8', text: '' };
    return { contentType: this.instruments.registry.contentType, text: await this.instruments.registry.metrics() };
  }
}

/**
 * The running IMS: Socket Mode in, the Web API out, SQLite state underneath. `Ims` wires the units together —
 * intake, catch-up, the incident lifecycle, names, the hook runner, the outbox worker, the schedules, the report
 * — and owns what spans them: start-up and stop, in-flight work and config reload. `runSlack` is the command
 * line's way in (`ims.ts` reaches it with a lazy import; it re-exports `Ims` for tests and embedding).
 */
import { existsSync } from 'node:fs';
import type { WebClient } from '@slack/web-api';
import type { CliOptions, CompiledConfig, HookContext, HookName, Incident, Logger, MessageOrigin, Plugin } from './ims.ts';
import { State, StateVersionError, promisedState, type StateDump, type Store } from './ims-state.ts';
import type { PgState } from './ims-state-pg.ts';
import { PluginHookErrors, TimeoutError, withTimeout } from './ims-plugin-kit.ts';
import { ConfigError, configName } from './ims-config-errors.ts';
import { createLogger, errorText, reportRefusal } from './ims-log.ts';
import {
  ChannelQueues, DEFAULT_RETRY, Poster, SlackTokenError, StoppedError, createSlackClient, slackFetch,
  type PostSpec, type RetryPolicy, type WebClientOptions,
} from './ims-slack.ts';
import { SocketConnection } from './ims-socket.ts';
import { NameDirectory, resolveNames } from './ims-names.ts';
import { HookRunner, type HookExtra } from './ims-hooks.ts';
import { OutboxWorker } from './ims-outbox.ts';
import { IncidentLifecycle } from './ims-incidents.ts';
import { CatchUp } from './ims-catch-up.ts';
import { Intake, MAX_MESSAGES_IN_FLIGHT } from './ims-intake.ts';
import { clearReminders, runReminders, runReport } from './ims-report.ts';
import { Schedules } from './ims-schedules.ts';
import { STOP_LIMIT_MS, guardProcess } from './ims-process.ts';
import { Silencing } from './ims-silencing.ts';
import { PermissionChecker } from './ims-permissions.ts';
import { IncidentActions } from './ims-incident-actions.ts';
import { Commands } from './ims-commands.ts';
import { Interactions } from './ims-interactive.ts';
import { AppHome } from './ims-home.ts';
import { ConfigReload } from './ims-reload.ts';
import { Metrics } from './ims-metrics.ts';
import { operationsFor, parseListen, type OpsServer } from './ims-http.ts';
import { KeyLocks, LeaderDuties, Leadership, isLeaseStore } from './ims-leadership.ts';
import { SlackReach, untilStopped } from './ims-slack-reach.ts';
import os from 'node:os';

/** Options for a running IMS beyond its config: the command line's, and the knobs tests need. */
export interface RuntimeOptions {
  appToken: string;
  botToken: string;
  /** Default `SLACK_API_URL` or `https://slack.com/api/`. */
  apiUrl?: string;
  log?: Logger;
  /** The config file, watched for changes when `autoReload`. */
  configPath?: string;
  autoReload?: boolean;
  idLookup?: boolean;
  verbose?: boolean;
  reverse?: boolean;
  reacji?: boolean;
  /** Scheduled reports: off with `false` (`--no-incident`). */
  reports?: boolean;
  reminders?: boolean;
  schedule?: string;
  loopHours?: number;
  reminderSeconds?: number;
  /**
   * Retries of Web API calls (default `DEFAULT_RETRY`: 5 within a minute). The SDK's own retries are off in
   * every client: reads and repeatable writes are retried when a failure can pass; a post whose outcome is
   * unknown is first looked for by its metadata; nothing is retried that failed for good.
   */
  retryConfig?: RetryPolicy;
  /** How long start-up keeps trying to reach Slack (auth.test, the Socket Mode connection) before giving up (default 60 s). */
  startTimeoutMs?: number;
  /** How long `stop()` waits for in-flight work before closing anyway (default 6 s): what is left is finished at the next start. */
  stopTimeoutMs?: number;
  /** A Web API request with no answer after this is abandoned (default 30 s), so a silent link cannot hold a channel's queue. */
  requestTimeoutMs?: number;
  /** Slack refused a token while running (revoked): IMS cannot go on. Default: log it and stop. */
  onFatal?: (error: SlackTokenError) => void;
  /** Socket Mode ping timeout (default 5000 ms): small values make reconnect tests fast. */
  clientPingTimeoutMs?: number;
  /** How often the outbox is polled (default 1000 ms). */
  outboxIntervalMs?: number;
  /** How often messages whose handling failed are retried (default 60 s). */
  retryPendingMs?: number;
  /** Time source for tests. */
  now?: () => number;
  /** Posts (and edits) IMS makes per second into one channel (default 1: Slack's limit for chat.postMessage). */
  postsPerSecond?: number;
  /** Posts that may go into one channel at once after a quiet spell (default 3: Slack allows short bursts). */
  postBurst?: number;
  /** How often silences are checked for their end and maintenance windows for their opening (default 5000 ms). */
  silenceSweepMs?: number;
  /** The operations endpoint (`/healthz`, `/metrics`): where to listen; off when not given. */
  http?: { host: string; port: number };
  /** This instance's name in logs, metrics and `/healthz` (default: host name and process ID). */
  instance?: string;
  /**
   * The state to use, already opened (PostgreSQL's `PgState`, shared by several instances); default the SQLite file
   * at `config.state.path`. IMS closes it when it stops.
   */
  store?: Store;
}

/** A running IMS: Socket Mode in, Slack Web API out, SQLite state. */
export class Ims {
  config: CompiledConfig;
  /** IMS's own calls: reads and repeatable writes retried by `RuntimeOptions.retryConfig`; 429s rejected to the channel queues. */
  readonly slack: WebClient;
  /** The client plugins get: it waits out its own 429s (a plugin's throttling never pauses alerts) and never repeats a post blindly. */
  readonly pluginSlack: WebClient;
  /** The state every unit works with, whichever the backend (answers are promises). */
  readonly store: Store;
  /** The SQLite state behind `store`, when it is one. */
  private readonly sqlite?: State;
  readonly log: Logger & { child(tag: string): Logger };
  self = { userId: '', botId: '', teamUrl: 'https://slack.com/' };
  readonly now: () => number;
  /** The one name service IMS and every plugin share (`HookContext.names`). */
  readonly names: NameDirectory;
  readonly lifecycle: IncidentLifecycle;
  /** Silences from Slack and maintenance windows. */
  readonly silencing: Silencing;
  /** The Home tab. */
  readonly home: AppHome;
  /** The last report, for the Home tab. */
  lastReport?: { at: number; posted: boolean };
  /** Where the operations endpoint listens, once started. */
  httpAddress?: { host: string; port: number };
  private readonly interactions: Interactions;
  /** This instance's name (logs, metrics, leases). */
  readonly instance: string;
  /** Counted as things happen; exposed on `/metrics` when the operations endpoint is on. */
  readonly metrics: Metrics;
  private readonly ops?: OpsServer;
  private connected = false;
  private readonly poster: Poster;
  private readonly queues: ChannelQueues;
  private readonly hookRunner: HookRunner;
  private readonly outbox: OutboxWorker;
  private readonly catchUps: CatchUp;
  private readonly intake: Intake;
  private readonly socket: SocketConnection;
  /** Channels plugins made for themselves (war rooms): never alert sources. */
  private readonly pluginChannels: Set<string>;
  /** Work under way (events, posts, hooks, catch-ups, reports): `idle()` and a stop wait for it. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly schedules: Schedules;
  /** Which instance does the work that must happen once (always this one, alone on SQLite). */
  readonly leadership: Leadership;
  private readonly duties: LeaderDuties;
  /** Set once start-up has run its own catch-up: a leadership gained later runs one for itself. */
  private started = false;
  private readonly reloads: ConfigReload;
  private stopping = false;
  private stopped?: Promise<void>;
  /** Aborted when `stop()` begins: start-up gives up at once. */
  private readonly stopRequested = new AbortController();
  /** Aborted when stopping gives up on in-flight work (or is done): no retry waits any longer. */
  private readonly halt = new AbortController();
  /** Aborted when IMS has stopped: the hooks' signals follow it. */
  private readonly stoppedSignal = new AbortController();
  /** Reaching Slack at start-up, and a token it refuses. */
  private readonly reach: SlackReach;

  constructor(config: CompiledConfig, readonly options: RuntimeOptions) {
    this.config = config;
    this.now = options.now ?? Date.now;
    this.log = (options.log as Ims['log']) ?? createLogger({ secrets: [options.appToken, options.botToken] });
    if (!('child' in this.log)) (this.log as Ims['log']).child = () => this.log;
    const log = this.log;
    // The SDK clients' own logger: their errors (which IMS handles itself) only at debug level.
    const sdkLogger = { getLevel: () => 'error', setLevel() {}, setName() {}, debug() {}, info() {}, warn() {}, error: (...m: unknown[]) => log.debug(`slack sdk: ${m.join(' ')}`) };
    const web: WebClientOptions = {
      slackApiUrl: options.apiUrl ?? process.env.SLACK_API_URL ?? 'https://slack.com/api/', logger: sdkLogger as never,
      fetch: slackFetch as typeof fetch, timeout: options.requestTimeoutMs ?? 30_000,
    };
    const instance = options.instance ?? `${os.hostname()}:${process.pid}`;
    this.instance = instance;
    this.metrics = new Metrics(options.http !== undefined, instance);
    const retry = this.retryPolicy();
    this.reach = new SlackReach({
      slack: () => this.slack, log, startTimeoutMs: options.startTimeoutMs, stopRequested: this.stopRequested.signal, stopping: () => this.stopping,
      onFatal: options.onFatal, stop: () => void this.stop(),
    });
    const policy = { retry, log, name: 'Slack', signal: this.halt.signal, deadline: () => this.reach.deadline(), onAuthFailure: (method: string, code: string) => this.reach.botTokenRefused(method, code) };
    this.slack = createSlackClient(options.botToken, web, policy);
    this.pluginSlack = createSlackClient(options.botToken, web, { retry, log, name: 'plugins', signal: this.halt.signal, waitOutThrottling: true });
    this.queues = new ChannelQueues(log, { perSecond: options.postsPerSecond, burst: options.postBurst });
    this.queues.onPosted = (channel) => this.metrics.notePost(channel);
    this.queues.onRateLimited = (channel) => this.metrics.noteRateLimited(channel);
    this.poster = new Poster({
      client: createSlackClient(options.botToken, web, { ...policy, retry: { ...retry, retries: 0 } }), reader: this.slack, queues: this.queues, log,
      retry: () => this.retryPolicy(), halt: this.halt.signal,
    });
    if (options.store) this.store = options.store;
    else {
      this.sqlite = new State(config.state.path);
      this.store = promisedState(this.sqlite);
    }
    // Filled from the state when IMS starts (before any event is read).
    this.pluginChannels = new Set();
    const shared = sharedStateOf(this.store);
    // Several instances post into the same channels: their posts are paced together, in the shared state.
    if (shared) this.queues.sharedPace = { take: shared.takePostingTurn.bind(shared), limited: shared.postingRateLimited.bind(shared) };
    this.leadership = new Leadership({
      leases: shared, instance, log,
      onGained: () => { if (this.started) void this.track(this.duties.takeOver()); },
      onInstancesGone: (gone) => {
        log.warn(`instance(s) ${gone.join(', ')} stopped renewing their lease: finishing what they left, and reading back what they may have missed`);
        void this.track(this.duties.takeOver());
      },
    });
    const track = <T>(work: Promise<T>) => this.track(work);
    const config$ = () => this.config;
    const self = () => this.self;
    this.names = new NameDirectory({ slack: this.slack, log });
    this.hookRunner = new HookRunner({
      config: config$, state: this.store, slack: this.pluginSlack, log, botUserId: () => this.self.userId, now: this.now, names: this.names,
      pluginChannels: this.pluginChannels, permalink: (channel, ts) => this.permalink(channel, ts), kickOutbox: () => { if (this.leadership.leading()) this.outbox.kick(); },
      stopped: this.stoppedSignal.signal, track, onFailure: (plugin, hook) => this.metrics.noteHookFailure(plugin, hook), leading: () => this.leadership.leading(),
    });
    this.outbox = new OutboxWorker({
      state: this.store, config: config$, contextFor: (plugin, signal) => this.hookRunner.contextFor(plugin, signal), log, now: this.now,
      stopping: () => this.stopping, delivering: () => this.leadership.leading(), track,
    });
    const permalink = (channel: string, ts: string) => this.permalink(channel, ts);
    this.home = new AppHome({
      slack: this.slack, state: this.store, log, now: this.now, config: config$, permalink, silences: () => this.silencing.active(), lastReport: () => this.lastReport, track,
    });
    const refreshPost = (incident: Incident) => void track(this.lifecycle.posts.refresh(incident));
    this.silencing = new Silencing({ state: this.store, poster: this.poster, log, now: this.now, config: config$, permalink, refreshPost, changed: () => this.home.changed(), userName: (user) => this.names.user(user) });
    const permissions = new PermissionChecker({ slack: this.slack, log, config: config$, now: this.now });
    const keyLocks = shared ? new KeyLocks({ leases: shared, log, leadership: this.leadership }) : undefined;
    this.lifecycle = new IncidentLifecycle({
      state: this.store, slack: this.slack, poster: this.poster, log, now: this.now, config: config$, self, names: this.names, hooks: this.hookRunner,
      permalink, queues: this.queues, track, silencing: this.silencing, changed: () => this.home.changed(), permissions,
      lockKeys: keyLocks ? (keys) => keyLocks.lock(keys) : undefined,
      claimedElsewhere: shared ? async (channel, ts) => { const by = await shared.messageClaimer(channel, ts); return by && by !== instance ? by : undefined; } : undefined,
    });
    this.interactions = new Interactions({
      state: this.store, slack: this.slack, log, now: this.now, permissions, silencing: this.silencing, stopping: () => this.stopping, track, refreshHome: (user) => this.home.opened(user), metrics: this.metrics,
      actions: new IncidentActions({ state: this.store, log, hooks: this.hookRunner, now: this.now, refreshPost }),
      commands: new Commands({ state: this.store, silencing: this.silencing, permissions, config: config$, now: this.now, permalink, postReport: () => this.postReport() }),
    });
    this.catchUps = new CatchUp({
      state: this.store, slack: this.slack, log, now: this.now, config: config$, pluginChannels: this.pluginChannels,
      dispatch: (event, origin) => this.intake.dispatch(event as unknown as Record<string, unknown>, origin), track, batch: MAX_MESSAGES_IN_FLIGHT,
      afterwards: () => this.lifecycle.reconcileResolutions(),
    });
    this.intake = new Intake({
      state: this.store, log, now: this.now, config: config$, self, stopping: () => this.stopping, queues: this.queues, catchUp: this.catchUps,
      incidents: this.lifecycle, hooks: this.hookRunner, pluginChannels: this.pluginChannels, track, homeOpened: (user) => this.home.opened(user), metrics: this.metrics,
      decide: (compiled, event, me, edited) => compiled.engine.decide(compiled, event, { self: me, log, edited }),
    });
    this.duties = new LeaderDuties({
      leadership: this.leadership, turns: this.store, leases: shared, instance, log,
      reportChannel: () => this.config.report.channel, postReport: (turn) => this.postReport(turn),
      retryPending: (before, mine) => this.intake.retryPending(before, mine), catchUp: (overlapMs) => this.catchUps.run(overlapMs), stopping: () => this.stopping,
      adopt: (from) => shared?.adoptMessages(from) ?? Promise.resolve(0),
      freeLeasesOfGone: (alive) => shared?.releaseLeasesOfGone(alive) ?? Promise.resolve(0),
    });
    // Work that must happen once is the leader's (all of it, alone on SQLite).
    const lead = (work: () => Promise<unknown>) => (this.leadership.leading() ? work() : Promise.resolve());
    this.schedules = new Schedules({
      config: config$, log, now: this.now, options, report: (slot) => this.duties.report(slot), remind: () => lead(() => runReminders(this)),
      flushOutbox: () => lead(() => this.outbox.flush()),
      retryPending: (before) => this.duties.retryPending(before), retryCatchUp: () => { if (this.catchUps.retryDue && this.leadership.leading()) void this.track(this.catchUps.run()); },
      prune: (before) => void lead(() => this.store.prune(before)).catch((error) => log.warn(`pruning old state failed: ${errorText(error)}`)),
      sweepFlapping: (now) => lead(() => this.lifecycle.sweepFlapping(now)), sweepSilences: () => lead(() => this.silencing.sweep()), track,
      // A war room another instance made is never read as an alert source here either.
      refreshShared: shared ? async () => {
        try {
          for (const channel of await shared.ownedChannels()) this.pluginChannels.add(channel);
          await this.duties.postDueTurns();
        } catch (error) {
          // The state away is said once by the leases and the intake; this runs again in 5 s.
          log.debug(`refreshing what other instances recorded failed: ${errorText(error)}`);
        }
      } : undefined,
    });
    this.socket = new SocketConnection({
      appToken: options.appToken, web, log, pingTimeoutMs: options.clientPingTimeoutMs, startDeadline: () => this.reach.deadline(),
      stopping: () => this.stopping, fatal: (error) => this.reach.fatal(error),
      onEnvelope: (envelope) => (envelope.type === 'interactive' || envelope.type === 'slash_commands' ? this.interactions.onEnvelope(envelope) : this.intake.onEnvelope(envelope)),
      onConnected: (count) => { this.connected = true; if (count > 1 && this.leadership.leading()) this.track(this.catchUps.run(this.duties.catchUpOverlapMs())); },
      onDropped: (lostMs) => { this.connected = false; this.catchUps.noteDisconnect(this.now() - lostMs); },
    });
    this.reloads = new ConfigReload({
      log, config: config$, use: (fresh) => { this.config = fresh; }, modes: { reverse: options.reverse, reacji: options.reacji },
      resolveNames: (fresh) => this.resolveNames(fresh), running: () => this.socket.built && !this.stopping, reconfigureSchedules: () => this.schedules.reconfigure(),
      runHooks: (hook, plugins) => this.hooks(hook, () => ({}), plugins), track,
    });
    this.ops = operationsFor({
      listen: options.http, metrics: this.metrics, instance, log, state: this.store, queueDepth: () => this.queues.depth(), catchUpLagSeconds: () => this.catchUps.lagSeconds(),
      connected: () => this.connected && !this.stopping, now: this.now, role: () => this.leadership.role,
    });
  }

  /**
   * The SQLite state, answering in the same turn (tests and embedders read it directly). On another backend there
   * is none: use `store`.
   */
  get state(): State {
    if (!this.sqlite) throw new Error(`ims.state is the SQLite state; this IMS keeps its state in ${this.store.where}: use ims.store (answers are promises)`);
    return this.sqlite;
  }

  /** Connect, resolve names, finish interrupted work, catch up, and start schedules and plugins. `stop()` ends it at any point. */
  async start(options: { socket?: boolean } = {}): Promise<void> {
    if (this.stopping) throw new StoppedError();
    // First: a probe during start-up learns it is not connected yet.
    if (this.ops && options.socket !== false) this.httpAddress = await this.ops.start();
    this.log.info(`connecting to Slack at ${this.slack.slackApiUrl}`, { pid: process.pid });
    const auth = await this.reach.reach('auth.test', () => this.slack.auth.test());
    this.self = { userId: String(auth.user_id ?? ''), botId: String(auth.bot_id ?? ''), teamUrl: String(auth.url ?? 'https://slack.com/') };
    for (const channel of await this.store.ownedChannels()) this.pluginChannels.add(channel);
    this.config = await untilStopped(this.stopRequested.signal, this.resolveNames(this.config));
    this.log.info(`connected as ${auth.user ?? this.self.userId}; config ${configName(this.config)}`, { rules: this.config.rules.length, state: this.store.where });
    // Before any event: recovered and caught-up messages run hooks too.
    await untilStopped(this.stopRequested.signal, this.hooks('onStart', () => ({})));
    if (options.socket === false) return;
    // With several instances: the leader finishes what others left and catches up; the others only listen.
    await untilStopped(this.stopRequested.signal, this.leadership.start());
    const leading = this.leadership.leading();
    if (leading) {
      const finishing = this.track(this.duties.retryPending());
      // Alone, interrupted messages are finished before new ones; with several instances, a dead one's wait for
      // proof that it is gone (a few seconds), and this instance starts listening meanwhile.
      if (!this.leadership.shared) await untilStopped(this.stopRequested.signal, finishing);
    }
    await this.catchUps.startListening(leading);
    await this.reach.reach('Socket Mode', () => this.socket.connect());
    if (leading) await untilStopped(this.stopRequested.signal, this.track(this.catchUps.run(this.duties.catchUpOverlapMs())));
    if (this.stopping) throw new StoppedError();
    this.started = true;
    // Became the leader while starting (the leader died meanwhile): what start-up left to the leader is done now.
    if (!leading && this.leadership.leading()) void this.track(this.duties.takeOver());
    this.schedules.start();
    if (this.options.autoReload !== false && this.options.configPath) this.reloads.watch(this.options.configPath);
  }

  /**
   * Stop taking events, finish in-flight work, run `onStop`, close the DB; within `stopTimeoutMs`: what is
   * not finished by then stays pending and is finished at the next start. Ends a `start()` under way.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutDown();
    return this.stopped;
  }

  /** Resolves when nothing is in flight: events handled, posts sent, hooks finished. */
  async idle(): Promise<void> {
    this.intake.drainAll();
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
    await this.queues.drain();
  }

  /** Post a report now (scheduled, or `/ims report`; `turn`: the scheduled turn, with several instances); false when it could not be posted. */
  async postReport(turn?: string): Promise<boolean> {
    const posted = await runReport(this, { turn });
    this.lastReport = { at: this.now(), posted };
    this.home.changed();
    return posted;
  }

  /** Post one message once, in its channel's queue (see `Poster`). */
  post(spec: PostSpec): Promise<string> {
    return this.poster.post(spec);
  }

  permalink(channel: string, ts: string): string {
    return `${this.self.teamUrl.replace(/\/?$/, '/')}archives/${channel}/p${ts.replace('.', '')}`;
  }

  /** Real names by user (and bot) ID, as looked up so far (`names.userNames`). */
  get userNames(): Map<string, string> {
    return this.names.userNames;
  }

  /** Channel names by ID, as looked up so far (`names.channelNames`). */
  get channelNames(): Map<string, string> {
    return this.names.channelNames;
  }

  /** Run a hook (or, per plugin, a sequence of hooks) of every plugin with a full context; see `HookRunner.run`. */
  hooks<K extends HookName>(hooks: K | readonly K[], extra: (hook: K) => HookExtra<Parameters<NonNullable<Plugin[K]>>[0]>,
    plugins?: readonly Plugin[]): Promise<PluginHookErrors | undefined> {
    return this.hookRunner.run(hooks, extra, plugins);
  }

  /** What every hook of `plugin` receives. */
  hookContext(plugin: Plugin, signal: AbortSignal): HookContext {
    return this.hookRunner.contextFor(plugin, signal);
  }

  /** Handle one event as if it had come from `origin` (default: Socket Mode). */
  dispatch(event: Record<string, unknown>, origin: MessageOrigin = 'live'): Promise<void> {
    return this.intake.dispatch(event, origin);
  }

  /** Read what was missed from each watched channel's history (see `CatchUp`). */
  catchUp(): Promise<void> {
    return this.catchUps.run();
  }

  /** Deliver due outbox items now. */
  flushOutbox(): Promise<void> {
    return this.outbox.flush();
  }

  /** The config checked against the workspace, names resolved to IDs (see `resolveNames`). Problems throw `ConfigError`. */
  resolveNames(config: CompiledConfig): Promise<CompiledConfig> {
    return resolveNames(config, { slack: this.slack, log: this.log, idLookup: this.options.idLookup !== false, retry: this.retryPolicy(), stop: this.stopRequested.signal });
  }

  /** Reload `absolute`; a bad config is logged with its problems and the last good one keeps running (see `ConfigReload`). */
  reload(absolute: string, shown = absolute): Promise<boolean> {
    return this.reloads.reload(absolute, shown);
  }

  private retryPolicy(): Required<RetryPolicy> {
    return { ...DEFAULT_RETRY, ...this.options.retryConfig };
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    // Work a stop cut short fails on the closed state: expected then, and it stays pending for the next start.
    void promise.catch((error) => this.log[this.stopping && !this.store.isOpen ? 'debug' : 'error'](`unexpected failure: ${errorText(error)}`))
      .finally(() => this.inFlight.delete(promise));
    return promise;
  }

  private async shutDown(): Promise<void> {
    this.stopping = true;
    this.stopRequested.abort();
    const budgetMs = this.options.stopTimeoutMs ?? 6000;
    const deadline = Date.now() + budgetMs;
    this.log.info('stopping: finishing in-flight work');
    this.reloads.close();
    this.schedules.stop();
    // Another instance takes over the leader's work at once rather than when the lease runs out (this instance's own
    // lease is kept until its in-flight work is done: its messages are not finished by another meanwhile).
    await this.leadership.stepDown().catch(() => undefined);
    this.home.stop();
    await this.socket.close(settleWithin, Math.min(deadline, Date.now() + 2000));
    // With several instances the outbox is the leader's, and this one has handed leadership over.
    if (!(await settleWithin(this.idle().then(() => (this.leadership.shared ? undefined : this.outbox.flush())), deadline))) {
      this.halt.abort();
      const pending = await withTimeout(() => this.store.pendingMessages(), 1000, 'counting pending messages').then((messages) => `${messages.length}`, () => 'any');
      this.log.warn(`stopping: in-flight work did not finish within ${Math.round(budgetMs / 1000)} s; `
        + `${pending} message(s) left pending are finished at the next start${this.leadership.shared ? ' (or by the leader)' : ''}`);
    }
    if (this.intake.parkedCount) {
      this.log.warn(`stopping with ${this.intake.parkedCount} event(s) kept while the state was unreachable: they are read back from history by the next catch-up`);
    }
    await settleWithin(this.hooks('onStop', () => ({})), Math.max(deadline, Date.now() + 1000));
    await settleWithin(this.leadership.stop(), Date.now() + 2000);
    this.halt.abort();
    this.stoppedSignal.abort();
    await this.store.close();
    await this.ops?.stop();
    this.log.info('stopped');
  }

}

/** What several instances share besides the state's operations (PostgreSQL's `PgState` has it all; SQLite none). */
type SharedState = Store & Pick<PgState, 'acquireLease' | 'releaseLease' | 'liveLeases' | 'takePostingTurn' | 'postingRateLimited'
  | 'adoptMessages' | 'messageClaimer' | 'releaseLeasesOfGone'>;

/** The state as several instances share it, when it can be shared. */
function sharedStateOf(store: Store): SharedState | undefined {
  const candidate = store as Partial<SharedState>;
  return isLeaseStore(store) && typeof candidate.takePostingTurn === 'function' && typeof candidate.postingRateLimited === 'function'
    && typeof candidate.adoptMessages === 'function' && typeof candidate.messageClaimer === 'function' && typeof candidate.releaseLeasesOfGone === 'function'
    ? store as SharedState : undefined;
}

/** Whether `work` settled before `deadline` (epoch ms); its outcome is not looked at. */
function settleWithin(work: Promise<unknown>, deadline: number): Promise<boolean> {
  return withTimeout(() => work, Math.max(0, deadline - Date.now()), 'work before the deadline').then(() => true, (error) => !(error instanceof TimeoutError));
}


/**
 * `--migrate-state`: copy the config's state file into PostgreSQL at `url` (schema made or upgraded first), in one
 * transaction, keeping what is there: safe to run again. Prints what was read and added, by table; exit 0, 1 when
 * it could not, 2 for a missing URL.
 */
export async function migrateState(config: CompiledConfig, url: string | undefined, io: { out: (s: string) => void; err: (s: string) => void }): Promise<number> {
  if (!url) { io.err('ims: --migrate-state needs the PostgreSQL URL: --migrate-state postgres://user:password@host:5432/ims, or DATABASE_URL'); return 2; }
  if (!/^postgres(ql)?:\/\//.test(url)) { io.err(`ims: --migrate-state expects a postgres:// URL, found '${url.replace(/:[^:@/]*@/, ':…@')}'`); return 2; }
  const file = config.state.path;
  if (!existsSync(file)) { io.err(`ims: --migrate-state: there is no state file at ${file} to copy (state.path in the config, or beside it)`); return 1; }
  let dump: StateDump;
  try {
    const state = new State(file);
    try { dump = state.dump(); } finally { state.close(); }
  } catch (error) {
    io.err(`ims: --migrate-state: cannot read ${file}: ${errorText(error)}`);
    return 1;
  }
  const { PgState: Store } = await import('./ims-state-pg.ts');
  let target: PgState | undefined;
  try {
    target = await Store.open(url);
    const counts = await target.load(dump);
    const copied = Object.entries(counts).filter(([, c]) => c.read > 0).map(([table, c]) => `  ${table.padEnd(16)} ${c.added} added of ${c.read}`);
    io.out([`copied ${file} into ${target.where}:`, ...(copied.length ? copied : ['  (the state file is empty)'])].join('\n'));
    return 0;
  } catch (error) {
    io.err(`ims: --migrate-state: ${errorText(error)}`);
    return 1;
  } finally {
    await target?.close();
  }
}

/** Tokens from the environment, checked: one clear line and exit 1 when missing or of the wrong kind. */
export function slackTokens(env: NodeJS.ProcessEnv = process.env): { appToken: string; botToken: string } | string {
  const appToken = env.SLACK_APP_TOKEN?.trim() ?? '';
  const botToken = env.SLACK_BOT_TOKEN?.trim() ?? '';
  if (!appToken) return 'SLACK_APP_TOKEN is not set: create an app-level token with connections:write (xapp-…) and export it';
  if (!appToken.startsWith('xapp-')) return `SLACK_APP_TOKEN must be an app-level token starting with 'xapp-', found one starting with '${appToken.slice(0, 5)}'`;
  if (!botToken) return 'SLACK_BOT_TOKEN is not set: install the app and export its bot token (xoxb-…)';
  if (!botToken.startsWith('xoxb-')) return `SLACK_BOT_TOKEN must be a bot token starting with 'xoxb-', found one starting with '${botToken.slice(0, 5)}'`;
  return { appToken, botToken };
}

/** The default mode, `--only-report` and `--clear-reminder`: returns the exit code. */
export async function runSlack(config: CompiledConfig, options: CliOptions, io: { err: (s: string) => void }): Promise<number> {
  const tokens = slackTokens();
  if (typeof tokens === 'string') { reportRefusal(`ims: ${tokens}`, options, io); return 1; }
  const databaseUrl = config.state.url ?? (process.env.DATABASE_URL || undefined);
  // Several instances may share a PostgreSQL state: then every log line says which one wrote it.
  const instance = process.env.IMS_INSTANCE || (databaseUrl ? `${os.hostname()}:${process.pid}` : undefined);
  let log: ReturnType<typeof createLogger>;
  try {
    log = createLogger({ level: options.debug ? 'debug' : 'info', file: options.log, format: options.logFormat, secrets: [tokens.appToken, tokens.botToken], instance });
  } catch (error) {
    // A log that cannot be written is a command line IMS cannot run (as a usage error): say so before connecting.
    reportRefusal(`ims: ${(error as Error).message}`, options, io);
    return 2;
  }
  /** A positive number from the environment (`what` names its unit in the warning); a bad one is ignored with a warning. */
  const positive = (name: string, what = 'a positive number'): number | undefined => {
    const value = process.env[name];
    if (value === undefined || value === '') return undefined;
    if (Number.isFinite(Number(value)) && Number(value) > 0) return Number(value);
    log.warn(`${name} must be ${what}, found '${value}': ignored`);
    return undefined;
  };
  const milliseconds = (name: string) => positive(name, 'a positive number of milliseconds');
  const listen = options.http ?? config.config.http;
  const http = listen === undefined ? undefined : parseListen(listen);
  if (listen !== undefined && !http) { reportRefusal(`ims: --http expects where to listen, such as 127.0.0.1:9464 or :9464, found '${listen}'`, options, io); return 2; }
  // How the process ends: the first reason to stop wins (a signal, the parent gone, a refused token).
  let exitCode = 0;
  let stopping: string | undefined;
  let stopRequested!: () => void;
  const stopNow = new Promise<void>((resolve) => { stopRequested = resolve; });
  let store: Store | undefined;
  if (databaseUrl) {
    if (!/^postgres(ql)?:\/\//.test(databaseUrl)) { reportRefusal(`ims: DATABASE_URL must be a postgres:// URL, found '${databaseUrl.replace(/:[^:@/]*@/, ':…@')}'`, options, io); return 2; }
    try {
      const { PgState: Postgres } = await import('./ims-state-pg.ts');
      store = await Postgres.open(databaseUrl, {
        instance,
        onIdleError: (error) => log.warn(`PostgreSQL connection lost while idle (${errorText(error)}): the pool reconnects`),
      });
    } catch (error) {
      reportRefusal(`ims: cannot open the PostgreSQL state: ${errorText(error)}; check the URL (state.url / DATABASE_URL), that the server runs and accepts this user, then start IMS again`, options, io);
      return 1;
    }
    log.info(`state: PostgreSQL at ${store.where} (shared with any other instance using it)`);
  }
  let ims: Ims;
  try {
    ims = new Ims(config, {
      ...tokens, log, configPath: config.source, autoReload: options.auto, idLookup: options.idLookup, verbose: options.verbose,
      reverse: options.reverse, reacji: options.reacji, reports: !options.noIncident, reminders: !options.noReminder,
      schedule: options.schedule, loopHours: options.loopHours, reminderSeconds: options.reminderSeconds,
      clientPingTimeoutMs: milliseconds('IMS_PING_TIMEOUT_MS'),
      retryConfig: process.env.IMS_HTTP_RETRIES ? { retries: Number(process.env.IMS_HTTP_RETRIES), minTimeout: 100, maxTimeout: 1000 } : undefined,
      startTimeoutMs: milliseconds('IMS_START_TIMEOUT_MS'), requestTimeoutMs: milliseconds('IMS_REQUEST_TIMEOUT_MS'),
      // A workspace whose posting limit differs from Slack's usual one (and tests of other things than storms).
      postsPerSecond: positive('IMS_POSTS_PER_SECOND'), postBurst: positive('IMS_POST_BURST'),
      http, instance, store,
      onFatal: (error) => { log.error(error.message); stop('a token was refused', 1); },
    });
  } catch (error) {
    // The state file cannot be opened (a newer IMS's schema, no permission, a full disk): one line, no stack.
    reportRefusal(`ims: ${error instanceof StateVersionError ? error.message : `cannot open the state file ${config.state.path}: ${errorText(error)}`}`, options, io);
    return 1;
  }
  const stop = (why: string, code: number) => {
    if (stopping) return;
    stopping = why;
    exitCode = code;
    stopRequested();
    // Ends a start-up under way too; whatever hangs, the process ends within 10 s of the first reason to stop.
    void ims.stop().catch(() => undefined);
    setTimeout(() => {
      log.error(`stopping took longer than ${STOP_LIMIT_MS / 1000} s (${why}): exiting without finishing`);
      process.exit(code || 1);
    }, STOP_LIMIT_MS).unref();
  };
  guardProcess(log, stop);
  // The process lives until main() returns. Waits between retries do not hold the process open (so a stop is
  // never held up by one), and during start-up they may be all there is: without this, Node would end the
  // process with exit code 0 in the middle of a retry, and alerting would stop without a word.
  const keepAlive = setInterval(() => undefined, 60_000);
  try {
    if (options.onlyReport || options.clearReminder) {
      await ims.start({ socket: false });
      if (options.clearReminder) {
        log.info(`deleted ${await clearReminders(ims)} reminder message(s)`);
        return 0;
      }
      return (await runReport(ims)) ? 0 : 1;
    }
    await ims.start();
    await stopNow;
    return exitCode;
  } catch (error) {
    if (error instanceof StoppedError) return exitCode;
    if (error instanceof ConfigError) { reportRefusal(error.message, options, io); return 1; }
    if (error instanceof SlackTokenError) { log.error(error.message); return 1; }
    log.error(`cannot start: ${errorText(error)}`);
    return 1;
  } finally {
    await ims.stop().catch((error) => log.error(`stop failed: ${errorText(error)}`));
    clearInterval(keepAlive);
    // Everything is finished and the DB closed; a reconnect the SDK still has under way must not hold the exit.
    setTimeout(() => process.exit(), 1000).unref();
  }
}


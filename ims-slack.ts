/**
 * The Slack runtime of IMS: Socket Mode in, Web API out, SQLite state underneath. `ims.ts` holds the
 * contract (types, config, rule engine, CLI); this module carries decisions out against Slack — the
 * message pipeline, resolution, catch-up, the report and reminder, config reload, and the plugins'
 * outbox worker — and runs the plugins' hooks after its own work.
 */
import { appendFileSync, watch, type FSWatcher } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { WebClient } from '@slack/web-api';
import { SocketModeClient } from '@slack/socket-mode';
import { State, tsAfter, type OutboxItem } from './ims-state.ts';
import {
  ConfigError, cron, decide, decodeEntities, escapeSlack, formatDate, dateParts, loadConfig, messageText, tsToMs, SECOND, HOUR, DAY,
  type AlertMessage, type CliOptions, type CompiledConfig, type Decision, type HookContext, type HookName, type Incident,
  type Logger, type Plugin, type Report, type ReportItem, type ReportSection, type SlackAttachment, type SlackMessageEvent,
} from './ims.ts';

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Slack wiring: logging, the hook runner, the per-channel post queue, the message pipeline
// ═══════════════════════════════════════════════════════════════════════════════════════════════

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;
const TOKEN_PATTERN = /\b(xox[a-z]|xapp)-[A-Za-z0-9-]+/g;

/** A leveled logger writing `time LEVEL [tag] message key=value` to stderr (and a file); tokens are redacted. */
export function createLogger(options: { level?: LogLevel; file?: string; tag?: string; write?: (line: string) => void; secrets?: string[] } = {}): Logger & { child(tag: string): Logger } {
  const threshold = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const secrets = (options.secrets ?? []).filter((s) => s.length >= 8);
  const redact = (text: string) => {
    for (const secret of secrets) if (text.includes(secret)) text = text.split(secret).join(`${secret.slice(0, 5)}…`);
    return text.includes('xox') || text.includes('xapp-') ? text.replace(TOKEN_PATTERN, (token) => `${token.slice(0, 5)}…`) : text;
  };
  const emit = (tag: string | undefined) => (level: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < threshold) return;
    const extra = fields ? Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`).join('') : '';
    const line = redact(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${tag ? `[${tag}] ` : ''}${message}${extra}`);
    write(line);
    if (options.file !== undefined) {
      const file = options.file || legacyLogFile(new Date());
      try { appendFileSync(file, line + '\n'); } catch { /* the console line was written; a full disk must not stop alerts */ }
    }
  };
  const make = (tag?: string) => {
    const at = emit(tag);
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  };
  return { ...make(options.tag), child: (tag: string) => make(options.tag ? `${options.tag}:${tag}` : tag) };
}

/** The legacy default log file, one per local hour: `inco_YYYY-MM-DD_HH.log`. */
function legacyLogFile(now: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `inco_${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}_${pad(now.getHours())}.log`;
}

function errorText(error: unknown): string {
  const data = (error as { data?: { error?: string } }).data;
  return data?.error ?? (error instanceof Error ? error.message : String(error));
}

/**
 * Run one hook of every plugin that has it, after IMS's own work: concurrently, each isolated — a throw,
 * a rejection or a timeout is logged with the plugin's and hook's names and never reaches the caller.
 */
export async function runHooks<K extends HookName>(plugins: readonly Plugin[], hook: K,
  makeContext: (plugin: Plugin, signal: AbortSignal) => Parameters<NonNullable<Plugin[K]>>[0],
  options: { timeoutMs: number; log: Logger }): Promise<void> {
  await Promise.allSettled(plugins.filter((p) => typeof p[hook] === 'function').map(async (plugin) => {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new Error(`timed out after ${options.timeoutMs} ms`);
        controller.abort(error);
        reject(error);
      }, options.timeoutMs);
    });
    try {
      const fn = plugin[hook] as (ctx: unknown) => unknown;
      await Promise.race([Promise.resolve().then(() => fn.call(plugin, makeContext(plugin, controller.signal))), timeout]);
    } catch (error) {
      options.log.error(`plugin '${plugin.name}' failed in ${hook}: ${errorText(error)}`, { plugin: plugin.name, hook });
    } finally {
      clearTimeout(timer);
    }
  }));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function rateLimitDelay(error: unknown): number | undefined {
  const e = error as { code?: string; retryAfter?: number };
  return e.code === 'slack_webapi_rate_limited_error' ? Math.max(1, e.retryAfter ?? 1) * 1000 : undefined;
}

/** Call Slack, waiting out 429s (only this call waits: other channels go on). */
async function slackCall<T>(call: () => Promise<T>, log: Logger, what: string, queues?: ChannelQueues): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const delay = rateLimitDelay(error);
      if (delay === undefined) throw error;
      log.debug(`rate limited on ${what}; retrying in ${delay} ms`);
      queues?.throttled.add(what);
      queues?.onThrottled?.();
      await sleep(delay).finally(() => queues?.throttled.delete(what));
    }
  }
}

/** Every item of a paginated Web API list (cursor pagination), each page waiting out its own 429s. */
async function* listAll<T>(slack: WebClient, log: Logger, method: string, args: Record<string, unknown>, field: string): AsyncGenerator<T> {
  let cursor: string | undefined;
  do {
    const page = (await slackCall(() => slack.apiCall(method, { ...args, cursor }), log, method)) as unknown as Record<string, unknown>;
    for (const item of (page[field] as T[] | undefined) ?? []) yield item;
    cursor = (page.response_metadata as { next_cursor?: string } | undefined)?.next_cursor || undefined;
  } while (cursor);
}

/** One queue per channel: posts to a channel keep their order, and a 429 on one channel stalls only that channel. */
class ChannelQueues {
  private readonly tails = new Map<string, Promise<unknown>>();
  /** Calls waiting out a 429 right now, and who to tell when one starts to. */
  readonly throttled = new Set<string>();
  onThrottled?: () => void;
  constructor(private readonly log: Logger) {}
  run<T>(channel: string, what: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(channel) ?? Promise.resolve();
    const result = previous.then(() => slackCall(task, this.log, `${what} in ${channel}`, this));
    const tail = result.catch(() => undefined);
    this.tails.set(channel, tail);
    void tail.then(() => { if (this.tails.get(channel) === tail) this.tails.delete(channel); });
    return result;
  }
  async drain(): Promise<void> {
    while (this.tails.size) await Promise.allSettled([...this.tails.values()]);
  }
}

/**
 * The Web API transport (the SDK's `fetch` option). Slack calls are small form posts, and WHATWG fetch
 * spends twice the CPU and garbage of a keep-alive `node:http` request on them, which matters on a small VM
 * during an alert storm. Anything beyond a string or form body (multipart uploads, streams) goes to the
 * standard fetch.
 */
const keepAlive = { http: new http.Agent({ keepAlive: true, maxSockets: 32 }), https: new https.Agent({ keepAlive: true, maxSockets: 32 }) };

export function slackFetch(input: string | URL, init: { method?: string; headers?: Record<string, string> | Headers; body?: unknown; signal?: AbortSignal | null } = {}): Promise<Response> {
  const body = typeof init.body === 'string' ? init.body : init.body instanceof URLSearchParams ? init.body.toString() : init.body === undefined || init.body === null ? '' : undefined;
  const url = new URL(String(input));
  if (body === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) return fetch(input, init as RequestInit);
  const headers: Record<string, string> = init.headers instanceof Headers ? Object.fromEntries(init.headers) : { ...init.headers };
  if (body) headers['content-length'] = String(Buffer.byteLength(body));
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    if (init.signal?.aborted) { reject(init.signal.reason); return; }
    const request = (secure ? https : http).request(url, { method: init.method ?? 'GET', headers, agent: secure ? keepAlive.https : keepAlive.http }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const payload = Buffer.concat(chunks);
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(response.headers)) if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
        const status = response.statusCode ?? 0;
        resolve({
          status, statusText: response.statusMessage ?? '', ok: status >= 200 && status < 300, url: url.href, headers: responseHeaders,
          text: async () => payload.toString('utf8'),
          json: async () => JSON.parse(payload.toString('utf8')),
          arrayBuffer: async () => payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.length),
        } as unknown as Response);
      });
    });
    const abort = () => request.destroy(init.signal?.reason ?? new Error('aborted'));
    init.signal?.addEventListener('abort', abort, { once: true });
    request.on('error', reject);
    request.on('close', () => init.signal?.removeEventListener('abort', abort));
    request.end(body);
  });
}

const SECTION_LIMIT = 2900;
const MAX_MESSAGES_IN_FLIGHT = 128;
const BLOCKS_PER_MESSAGE = 48;

/** Split escaped text into pieces under Slack's section limit, never inside an `&amp;` entity. */
export function splitText(text: string, limit = SECTION_LIMIT): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > limit) {
    let cut = rest.lastIndexOf('\n', limit);
    if (cut < limit / 2) cut = limit;
    const amp = rest.lastIndexOf('&', cut);
    if (amp > cut - 6 && rest.indexOf(';', amp) >= cut) cut = amp;
    pieces.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  pieces.push(rest);
  return pieces;
}

/** How a hotline member is mentioned: only this code (and never alert text) writes `<!…>` or `<@…>`. */
export function mentionOf(member: string): string {
  const special = member.replace(/^[@!]/, '').toLowerCase();
  if (special === 'here' || special === 'channel' || special === 'everyone') return `<!${special}>`;
  if (/^S[A-Z0-9]{2,}$/.test(member)) return `<!subteam^${member}>`;
  return `<@${member}>`;
}

/** The Block Kit messages of one incident post: the first is the incident, the rest continue it in its thread. */
export function incidentMessages(input: { head: string; text: string; sourceChannel: string; poster: string; at: string; permalink?: string; mentions?: string[]; hotline?: string }): { text: string; blocks: unknown[] }[] {
  const escaped = escapeSlack(input.text);
  const head = escapeSlack(input.head);
  const sections = splitText(`*${head}* ${escaped}`).map((piece) => ({ type: 'section', text: { type: 'mrkdwn', text: piece, verbatim: true } }));
  const context = {
    type: 'context',
    elements: [{ type: 'mrkdwn', verbatim: true, text: `from <#${input.sourceChannel}> · poster ${escapeSlack(input.poster)} · ${input.at}${input.permalink ? ` · <${input.permalink}|original alert>` : ''}` }],
  };
  const mentions = input.mentions?.length ? `:rotating_light: *Hotline ${escapeSlack(input.hotline ?? '')}*: ${input.mentions.join(' ')}` : '';
  const tail = [context, ...(mentions ? [{ type: 'section', text: { type: 'mrkdwn', text: mentions } }] : [])];
  const messages: { text: string; blocks: unknown[] }[] = [];
  for (let i = 0; i < sections.length || messages.length === 0; i += BLOCKS_PER_MESSAGE) {
    messages.push({ text: '', blocks: sections.slice(i, i + BLOCKS_PER_MESSAGE) });
  }
  messages[0].blocks.push(...tail);
  const fallback = `${head} ${escaped}`;
  messages[0].text = (fallback.length > 3000 ? `${fallback.slice(0, 2990).replace(/&[a-z]{0,3}$/, '')}…` : fallback) + (mentions ? `\n${input.mentions!.join(' ')}` : '');
  messages.slice(1).forEach((m, i) => { m.text = `${head} (continued ${i + 2}/${messages.length})`; });
  return messages;
}

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
  /** Web API retries for network errors and 5xx (default: the SDK's, about 30 minutes). */
  retryConfig?: { retries: number; factor?: number; minTimeout?: number; maxTimeout?: number; randomize?: boolean };
  /** Socket Mode ping timeout (default 5000 ms): small values make reconnect tests fast. */
  clientPingTimeoutMs?: number;
  /** How often the outbox is polled (default 1000 ms). */
  outboxIntervalMs?: number;
  /** How often messages whose handling failed are retried (default 60 s). */
  retryPendingMs?: number;
  /** Time source for tests. */
  now?: () => number;
}

/** A running IMS: Socket Mode in, Slack Web API out, SQLite state. */
export class Ims {
  config: CompiledConfig;
  readonly slack: WebClient;
  /** The client plugins get: the SDK's own 429 handling, so a plugin's throttling never pauses alerts. */
  readonly pluginSlack: WebClient;
  readonly state: State;
  readonly log: Logger & { child(tag: string): Logger };
  self = { userId: '', botId: '', teamUrl: 'https://slack.com/' };
  private socket?: SocketModeClient;
  private readonly queues: ChannelQueues;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly processing = new Set<string>();
  private readonly stopController = new AbortController();
  private readonly timers: (NodeJS.Timeout | { stop(): void })[] = [];
  /** Report and reminder timers: replaced when a reload changes the schedule. */
  private scheduleTimers: (NodeJS.Timeout | { stop(): void })[] = [];
  /** The SDK clients' logger: their errors (which IMS handles itself) only at debug level. */
  private readonly sdkLogger: object;
  /** Real names by user ID, for reports: looked up once per user. */
  readonly userNames = new Map<string, string>();
  private watcher?: FSWatcher;
  private connections = 0;
  private stopping = false;
  private readonly now: () => number;

  constructor(config: CompiledConfig, readonly options: RuntimeOptions) {
    this.config = config;
    this.now = options.now ?? Date.now;
    this.log = (options.log as Ims['log']) ?? createLogger({ secrets: [options.appToken, options.botToken] });
    if (!('child' in this.log)) (this.log as Ims['log']).child = () => this.log;
    const slackApiUrl = options.apiUrl ?? process.env.SLACK_API_URL ?? 'https://slack.com/api/';
    const retryConfig = options.retryConfig;
    this.sdkLogger = { getLevel: () => 'error', setLevel() {}, setName() {}, debug() {}, info() {}, warn() {}, error: (...m: unknown[]) => this.log.debug(`slack sdk: ${m.join(' ')}`) };
    const quiet = this.sdkLogger;
    this.slack = new WebClient(options.botToken, { slackApiUrl, rejectRateLimitedCalls: true, retryConfig, logger: quiet as never, fetch: slackFetch as typeof fetch });
    this.pluginSlack = new WebClient(options.botToken, { slackApiUrl, retryConfig, logger: quiet as never, fetch: slackFetch as typeof fetch });
    this.queues = new ChannelQueues(this.log);
    this.queues.onThrottled = () => { if (this.draining) setImmediate(() => this.drainReceived()); };
    this.state = new State(config.state.path);
    this.pluginChannels = this.state.ownedChannels();
  }

  /** Channels plugins made for themselves (war rooms): never alert sources. */
  private readonly pluginChannels: Set<string>;

  /** Connect, resolve names, finish interrupted work, catch up, and start schedules and plugins. */
  async start(options: { socket?: boolean } = {}): Promise<void> {
    const auth = await slackCall(() => this.slack.auth.test(), this.log, 'auth.test');
    this.self = { userId: String(auth.user_id ?? ''), botId: String(auth.bot_id ?? ''), teamUrl: String(auth.url ?? 'https://slack.com/') };
    this.config = await this.resolveNames(this.config);
    this.log.info(`connected as ${auth.user ?? this.self.userId}`, { rules: this.config.rules.length, state: this.config.state.path });
    // Before any event: recovered and caught-up messages run hooks too.
    await this.hooks('onStart', () => ({}));
    if (options.socket === false) return;
    await this.recoverPending();
    this.holdForCatchUp();
    this.socket = new SocketModeClient({
      appToken: this.options.appToken, clientPingTimeout: this.options.clientPingTimeoutMs,
      clientOptions: { slackApiUrl: this.options.apiUrl ?? process.env.SLACK_API_URL ?? 'https://slack.com/api/', fetch: slackFetch as typeof fetch },
      logger: this.sdkLogger as never,
    });
    this.socket.on('slack_event', (args: { ack: () => Promise<void>; type: string; body: { event_id?: string; event?: Record<string, unknown> } }) => this.onEnvelope(args));
    this.socket.on('connected', () => {
      this.connections++;
      this.log.info(this.connections === 1 ? 'Socket Mode connected' : 'Socket Mode reconnected; catching up');
      if (this.connections > 1) this.track(this.catchUp());
    });
    this.socket.on('disconnected', () => { if (!this.stopping) this.log.warn('Socket Mode disconnected; reconnecting'); });
    await this.socket.start();
    await this.catchUp();
    this.startSchedules();
    if (this.options.autoReload !== false && this.options.configPath) this.watchConfig(this.options.configPath);
  }

  /** Stop taking events, finish in-flight work, run `onStop`, close the DB. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info('stopping: finishing in-flight work');
    this.watcher?.close();
    for (const timer of [...this.timers, ...this.scheduleTimers]) 'stop' in timer ? timer.stop() : clearInterval(timer);
    if (this.socket) {
      const socket = this.socket;
      // socket-mode 3.1 rejects with `undefined` when disconnect() races a reconnect waiting for hello.
      await Promise.race([socket.disconnect().catch(() => undefined), sleep(2000)]);
      // Only ours: the client's own listeners ('close', 'ws_message', 'error') must stay. A reconnect that was already
      // fetching its URL when we stopped still connects afterwards (socket-mode 3.1 does not check): close it again.
      for (const event of ['slack_event', 'connected', 'disconnected']) socket.removeAllListeners(event);
      socket.on('connected', () => void socket.disconnect().catch(() => undefined));
    }
    await this.idle();
    await this.flushOutbox();
    await this.hooks('onStop', () => ({}));
    this.stopController.abort();
    this.state.close();
    this.log.info('stopped');
  }

  /** Resolves when nothing is in flight: events handled, posts sent, hooks finished. */
  async idle(): Promise<void> {
    if (this.draining) this.drainReceived(Infinity);
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
    await this.queues.drain();
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inflight.add(promise);
    void promise.catch((error) => this.log.error(`unexpected failure: ${errorText(error)}`)).finally(() => this.inflight.delete(promise));
    return promise;
  }

  // ─── Events ───────────────────────────────────────────────────────────────────────────────────

  private onEnvelope({ ack, type, body }: { ack: () => Promise<void>; type: string; body: { event_id?: string; event?: Record<string, unknown> } }): void {
    if (this.stopping) return;
    // Ack first: Slack redelivers anything not acked within 3 s, and the work below may take longer.
    ack().catch((error) => this.log.warn(`ack failed: ${errorText(error)}`));
    if (type !== 'events_api' || !body?.event || typeof body.event !== 'object') return;
    // Slack echoes every post IMS makes back to it: nothing to do, not even a de-duplication write.
    if (body.event.type === 'message' && ((this.self.botId && body.event.bot_id === this.self.botId) || body.event.subtype === 'message_changed')) return;
    // The work waits for the next turn, so every frame of a burst is acked before any of them is worked on.
    this.received.push({ eventId: body.event_id, event: body.event });
    if (!this.draining) {
      this.draining = true;
      setImmediate(() => this.drainReceived());
    }
  }

  private readonly received: { eventId?: string; event: Record<string, unknown> }[] = [];
  private receivedHead = 0;
  private draining = false;
  /** Messages taken from `received` whose core work (not their hooks) is not finished. */
  private messagesInFlight = 0;

  /**
   * Take more from `received` only while fewer than this many messages are in the works: a burst then
   * waits as raw events instead of as thousands of half-built posts (memory), and what is taken is worked
   * on sooner. Lifted while a channel waits out a 429, so a throttled channel never holds up the others.
   */
  private admitting(): boolean {
    return this.messagesInFlight < MAX_MESSAGES_IN_FLIGHT || this.queues.throttled.size > 0;
  }

  /** Work through acked events in arrival order, yielding every few milliseconds so new frames get acked. */
  private drainReceived(budgetMs = 2): void {
    const deadline = performance.now() + budgetMs;
    // One commit for the slice: de-duplication records and claims of its messages land together (the cursor
    // with them, so a crash before the commit is caught up from history, never lost).
    this.state.db.transaction(() => {
      while (this.receivedHead < this.received.length && performance.now() < deadline && (budgetMs === Infinity || this.admitting())) {
        const { eventId, event } = this.received[this.receivedHead];
        this.received[this.receivedHead++] = undefined as never;
        if (eventId && !this.state.rememberEvent(eventId, this.now())) {
          this.log.debug('duplicate delivery ignored', { event_id: eventId });
          continue;
        }
        this.messagesInFlight++;
        this.track(this.dispatch(event).finally(() => {
          this.messagesInFlight--;
          if (this.draining && this.messagesInFlight === MAX_MESSAGES_IN_FLIGHT - 1) setImmediate(() => this.drainReceived());
        }));
      }
    })();
    if (this.receivedHead < this.received.length) {
      // Full: the next message to finish calls again. Otherwise yield a turn, so new frames get acked.
      if (this.admitting()) setImmediate(() => this.drainReceived());
      return;
    }
    this.received.length = 0;
    this.receivedHead = 0;
    this.draining = false;
  }

  /** Handle one event (from Socket Mode or catch-up). Malformed events are logged and skipped. */
  async dispatch(event: Record<string, unknown>, fromCatchUp = false): Promise<void> {
    try {
      if (event.type === 'message' && typeof event.channel === 'string' && typeof event.ts === 'string') {
        await this.processMessage(event as SlackMessageEvent, false, fromCatchUp);
      } else if ((event.type === 'reaction_added' || event.type === 'reaction_removed') && isReactionEvent(event)) {
        await this.processReaction(event, event.type === 'reaction_added');
      } else if (event.type === 'message' || event.type === 'reaction_added' || event.type === 'reaction_removed') {
        this.log.warn(`malformed ${event.type} event skipped: ${JSON.stringify(event).slice(0, 200)}`);
      }
    } catch (error) {
      this.log.error(`failed to handle a ${String(event.type)} event: ${errorText(error)}`, { channel: event.channel, ts: event.ts });
    }
  }

  /** The pipeline: decide, claim (once), act, record, then run the plugins. */
  async processMessage(event: SlackMessageEvent, recovering = false, fromCatchUp = false): Promise<void> {
    const config = this.config;
    if (this.pluginChannels.has(event.channel)) return;
    const held = !recovering && !fromCatchUp ? this.catchingUp.get(event.channel) : undefined;
    if (held) {
      // Its channel's history is being read: it goes after the older messages, in order.
      held.push(event);
      return;
    }
    const { decision, message } = decide(config, event, { self: this.self });
    if (decision.action === 'ignore') {
      if (decision.reason === 'own channel') this.noteThreadReply(event);
      else if (decision.reason !== 'hidden subtype' && decision.reason !== 'own post' && this.mayAdvance(event.channel)) this.state.advanceCursor(event.channel, event.ts);
      this.log.debug(`ignored message (${decision.reason})`, { channel: event.channel, ts: event.ts });
      return;
    }
    const key = `${event.channel}:${event.ts}`;
    if (this.processing.has(key)) return;
    const claim = this.state.claimMessage(event.channel, event.ts, event, this.now(), this.mayAdvance(event.channel));
    if (claim === 'done' || (claim === 'pending' && !recovering)) return;
    this.processing.add(key);
    try {
      void this.hooks('onMessage', () => ({ message: message! }));
      await this.act(config, decision, message!, recovering);
    } finally {
      this.processing.delete(key);
    }
  }

  private async act(config: CompiledConfig, decision: Exclude<Decision, { action: 'ignore' }>, message: AlertMessage, recovering: boolean): Promise<void> {
    switch (decision.action) {
      case 'seen':
      case 'suppressed':
      case 'reacji':
        await this.react(message.channel, message.ts, decision.reaction);
        this.state.finishMessage(message.channel, message.ts);
        const rule = 'match' in decision ? decision.match?.rule.number : undefined;
        this.log.info(`${decision.action}: ${decision.action === 'reacji' ? 'reacji' : 'reaction'} :${decision.reaction}:`, { channel: message.channel, ts: message.ts, ...(rule ? { rule } : {}) });
        return;
      case 'incident': {
        const rule = decision.match.rule;
        const members = decision.hotline ? config.hotlines.get(decision.hotline) ?? [] : [];
        const incident = await this.openIncident(config, message, { channel: decision.channel, head: rule.head, label: rule.incident, ruleNumber: rule.number, hotline: decision.hotline, mentions: members.map(mentionOf) }, recovering);
        this.log.info(`incident #${incident.id} ${rule.head} → ${decision.channel}${decision.hotline ? ` paging ${decision.hotline}` : ''}`, { rule: rule.number, source: `${message.channel}:${message.ts}` });
        if (decision.hotline) this.state.addIncidentEvent({ incidentId: incident.id, kind: 'hotline', detail: decision.hotline, at: incident.createdAt });
        // Each plugin's onHotline follows its own onMatch only: one plugin's hung onMatch must not delay another's page.
        for (const plugin of config.plugins) {
          void this.hooks('onMatch', () => ({ message, match: decision.match, incident }), [plugin]).then(() => decision.hotline
            ? this.hooks('onHotline', () => ({ message, match: decision.match, incident, mentions: members.map(mentionOf), post: { channel: incident.incidentChannel, ts: incident.incidentTs } }), [plugin])
            : undefined);
        }
        return;
      }
      case 'reverse repost': {
        const incident = await this.openIncident(config, message, { channel: decision.channel, head: decision.header, label: 'DEFAULT', ruleNumber: 0 }, recovering);
        this.log.info(`reverse repost #${incident.id} → ${decision.channel}`, { source: `${message.channel}:${message.ts}` });
        void this.hooks('onReverse', () => ({ message, repost: { channel: incident.incidentChannel, ts: incident.incidentTs } }));
        return;
      }
    }
  }

  /** Post the incident (once: a recovered message first looks for its earlier post) and record it. */
  private async openIncident(config: CompiledConfig, message: AlertMessage,
    target: { channel: string; head: string; label: string; ruleNumber: number; hotline?: string; mentions?: string[] }, recovering: boolean): Promise<Incident> {
    // Only a recovered message can already have its incident (a new claim and its incident are written together).
    const existing = recovering ? this.state.incidentBySource(message.channel, message.ts) : undefined;
    if (existing) { this.state.finishMessage(message.channel, message.ts); return existing; }
    const permalink = this.permalink(message.channel, message.ts);
    const metadata = { event_type: 'ims_incident', event_payload: { source_channel: message.channel, source_ts: message.ts } };
    let ts = recovering ? await this.findEarlierPost(target.channel, message) : undefined;
    if (!ts) {
      const [first, ...rest] = incidentMessages({
        head: target.head, text: message.text, sourceChannel: message.channel, poster: message.poster,
        at: formatDate(tsToMs(message.ts), config.timezone), permalink, mentions: target.mentions, hotline: target.hotline,
      });
      const posted = await this.queues.run(target.channel, 'chat.postMessage', () => this.slack.chat.postMessage({
        channel: target.channel, text: first.text, blocks: first.blocks as never, unfurl_links: false, unfurl_media: false, metadata,
      }));
      ts = String(posted.ts);
      for (const more of rest) {
        await this.queues.run(target.channel, 'chat.postMessage', () => this.slack.chat.postMessage({
          channel: target.channel, thread_ts: ts, text: more.text, blocks: more.blocks as never, unfurl_links: false, unfurl_media: false,
        }));
      }
    }
    return this.state.addIncident({
      sourceChannel: message.channel, sourceTs: message.ts, incidentChannel: target.channel, incidentTs: ts, ruleNumber: target.ruleNumber,
      head: target.head, label: target.label, hotline: target.hotline, text: message.text, poster: message.poster, createdAt: this.now(), permalink,
    });
  }

  /** After a crash between posting and recording, the post carries metadata naming its source: find it instead of posting twice. */
  private async findEarlierPost(channel: string, message: AlertMessage): Promise<string | undefined> {
    try {
      for await (const m of listAll<{ ts: string; metadata?: { event_payload?: Record<string, string> } }>(this.slack, this.log, 'conversations.history', { channel, oldest: message.ts, include_all_metadata: true, limit: 200 }, 'messages')) {
        const payload = m.metadata?.event_payload;
        if (payload?.source_channel === message.channel && payload?.source_ts === message.ts) return m.ts;
      }
    } catch (error) {
      this.log.warn(`could not check ${channel} for an earlier post: ${errorText(error)}`);
    }
    return undefined;
  }

  private async react(channel: string, ts: string, name: string): Promise<void> {
    try {
      await this.queues.run(channel, 'reactions.add', () => this.slack.reactions.add({ channel, timestamp: ts, name }));
    } catch (error) {
      if (errorText(error) !== 'already_reacted') throw error;
    }
  }

  permalink(channel: string, ts: string): string {
    return `${this.self.teamUrl.replace(/\/?$/, '/')}archives/${channel}/p${ts.replace('.', '')}`;
  }

  /** Thread replies on incident posts count as acknowledgement (MTTA) and feed the timeline. */
  private noteThreadReply(event: SlackMessageEvent): void {
    if (!event.thread_ts || event.thread_ts === event.ts || event.bot_id === this.self.botId) return;
    const incident = this.state.incidentByPost(event.channel, event.thread_ts);
    if (incident) this.state.addIncidentEvent({ incidentId: incident.id, kind: 'reply', user: event.user ?? event.bot_id, detail: decodeEntities(event.text ?? ''), at: tsToMs(event.ts) });
  }

  /** Resolved reactions on an incident post (or its original) resolve it; removing the last one reopens it. */
  async processReaction(event: ReactionEvent, added: boolean): Promise<void> {
    if (event.user === this.self.userId) return;
    const { channel, ts } = event.item;
    const incident = this.state.incidentByPost(channel, ts) ?? this.state.incidentBySource(channel, ts);
    if (!incident) return;
    const at = event.event_ts ? tsToMs(event.event_ts) : this.now();
    if (added) this.state.addIncidentEvent({ incidentId: incident.id, kind: 'reaction', user: event.user, detail: event.reaction, at });
    if (!this.config.resolvedReactions.includes(event.reaction)) return;
    if (added) {
      if (!this.state.resolveIncident(incident.id, at, event.user)) return;
      const resolved = this.state.incidentById(incident.id)!;
      this.log.info(`incident #${incident.id} resolved by ${event.user}`);
      await this.hooks('onResolve', () => ({ incident: resolved, user: event.user, reaction: event.reaction }));
    } else {
      if (!incident.resolvedAt || (await this.stillResolved(incident))) return;
      if (!this.state.reopenIncident(incident.id, at, event.user)) return;
      this.log.info(`incident #${incident.id} reopened by ${event.user}`);
      await this.hooks('onReopen', () => ({ incident: this.state.incidentById(incident.id)!, user: event.user, reaction: event.reaction }));
    }
  }

  private async stillResolved(incident: Incident): Promise<boolean> {
    for (const [channel, ts] of [[incident.incidentChannel, incident.incidentTs], [incident.sourceChannel, incident.sourceTs]]) {
      try {
        const answer = await slackCall(() => this.slack.reactions.get({ channel, timestamp: ts, full: true }), this.log, 'reactions.get');
        const reactions = ((answer.message as { reactions?: { name: string; users?: string[] }[] } | undefined)?.reactions) ?? [];
        if (reactions.some((r) => this.config.resolvedReactions.includes(r.name) && (r.users ?? []).some((u) => u !== this.self.userId))) return true;
      } catch (error) {
        this.log.warn(`could not read reactions of ${channel}:${ts}: ${errorText(error)}`);
      }
    }
    return false;
  }

  // ─── Crash recovery and catch-up ──────────────────────────────────────────────────────────────

  /** Finish messages a previous run claimed but did not complete. */
  private async recoverPending(claimedBefore = Infinity): Promise<void> {
    const pending = this.state.pendingMessages(claimedBefore).filter(({ channel, ts }) => !this.processing.has(`${channel}:${ts}`));
    if (!pending.length) return;
    this.log.warn(claimedBefore === Infinity ? `finishing ${pending.length} message(s) interrupted by the last stop` : `retrying ${pending.length} message(s) whose handling failed`);
    for (const { event } of pending) await this.processMessage(event as SlackMessageEvent, true).catch((error) => this.log.error(`retry failed: ${errorText(error)}`));
  }

  /**
   * Channels whose history is being read: their live messages wait here, after the older ones. A channel's
   * cursor only moves once everything before it was taken, so a crash in the middle loses nothing.
   */
  private readonly catchingUp = new Map<string, SlackMessageEvent[]>();
  /** Channels whose last catch-up failed: live messages are handled, but the cursor waits for a catch-up. */
  private readonly cursorFrozen = new Set<string>();
  private catchUpChain: Promise<void> = Promise.resolve();

  private mayAdvance(channel: string): boolean {
    return !this.catchingUp.has(channel) && !this.cursorFrozen.has(channel);
  }

  /** Hold live messages of every channel IMS has a cursor for, until their history is read (call before events flow). */
  private holdForCatchUp(): string[] {
    const channels = [...this.state.cursors().keys()].filter((c) => !this.config.ownChannels.has(c) && !this.pluginChannels.has(c));
    for (const channel of channels) if (!this.catchingUp.has(channel)) this.catchingUp.set(channel, []);
    return channels;
  }

  /** Read what was missed while disconnected, from each watched channel's history since its cursor; one at a time. */
  catchUp(): Promise<void> {
    const held = this.holdForCatchUp();
    this.catchUpChain = this.catchUpChain.then(() => this.catchUpOnce(held), () => this.catchUpOnce(held));
    return this.catchUpChain;
  }

  private async catchUpOnce(marked: string[]): Promise<void> {
    const firstStart = this.state.getMeta('first_start') === undefined;
    const nowTs = (this.now() / 1000).toFixed(6);
    const channels = new Set([...marked, ...this.holdForCatchUp(), ...this.cursorFrozen]);
    try {
      const members = new Set<string>();
      for await (const c of listAll<{ id: string; is_member?: boolean }>(this.slack, this.log, 'conversations.list', { types: 'public_channel,private_channel', exclude_archived: true, limit: 1000 }, 'channels')) {
        if (!c.is_member) continue;
        members.add(c.id);
        // A channel seen for the first time starts now: what was said before IMS watched it is not an alert to it.
        if (!this.state.cursor(c.id) && !this.config.ownChannels.has(c.id) && !this.pluginChannels.has(c.id)) this.state.advanceCursor(c.id, nowTs);
      }
      // Channels the bot has left (or that were archived) have nothing to catch up: let them go.
      for (const channel of channels) {
        if (members.has(channel)) continue;
        channels.delete(channel);
        this.cursorFrozen.delete(channel);
        this.releaseHeld(channel);
      }
    } catch (error) {
      this.log.warn(`could not list channels for catch-up: ${errorText(error)}`);
    }
    if (firstStart) this.state.setMeta('first_start', nowTs);
    const oldestAllowed = (this.now() - this.config.state.catchUpWindowMs) / 1000;
    const missed: SlackMessageEvent[] = [];
    const newest = new Map<string, string>();
    const read: string[] = [];
    for (const channel of channels) {
      const cursor = this.state.cursor(channel);
      if (!cursor) { read.push(channel); continue; }
      const oldest = Math.max(Number(cursor), oldestAllowed).toFixed(6);
      try {
        for await (const m of listAll<SlackMessageEvent>(this.slack, this.log, 'conversations.history', { channel, oldest, limit: 200 }, 'messages')) {
          if (m.ts === cursor) continue;
          missed.push({ ...m, type: 'message', channel });
          if (!newest.has(channel) || tsAfter(m.ts, newest.get(channel)!)) newest.set(channel, m.ts);
        }
        read.push(channel);
      } catch (error) {
        const first = !this.cursorFrozen.has(channel);
        this.cursorFrozen.add(channel);
        this.log[first ? 'warn' : 'debug'](`catch-up of ${channel} failed: ${errorText(error)}; its live messages go on, and catch-up is retried every minute`);
        this.releaseHeld(channel);
      }
    }
    // Oldest first across channels, so an incident channel fed by several sources keeps time order.
    missed.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : tsAfter(b.ts, a.ts) ? -1 : 0));
    for (let i = 0; i < missed.length; i += MAX_MESSAGES_IN_FLIGHT) {
      // Claims happen in order as each is dispatched; posting runs in batches to bound memory.
      await Promise.all(missed.slice(i, i + MAX_MESSAGES_IN_FLIGHT).map((event) => this.dispatch(event, true)));
    }
    for (const channel of read) {
      this.cursorFrozen.delete(channel);
      this.releaseHeld(channel);
      const last = newest.get(channel);
      if (last) this.state.advanceCursor(channel, last);
    }
    if (missed.length) this.log.info(`caught up ${missed.length} message(s) missed while disconnected`);
    await this.reconcileResolutions();
  }

  /** Who (other than IMS) put a resolved reaction on a message, from its `reactions` as history lists them. */
  resolversOf(reactions: { name: string; users?: string[] }[] | undefined): string[] {
    return (reactions ?? []).filter((r) => this.config.resolvedReactions.includes(r.name)).flatMap((r) => r.users ?? []).filter((u) => u !== this.self.userId);
  }

  /** A resolved reaction added while IMS was not listening: record it now (the reaction's own time is not known). */
  recordMissedResolution(incident: Incident, user: string): void {
    if (!this.state.resolveIncident(incident.id, this.now(), user)) return;
    this.log.info(`incident #${incident.id} was resolved by ${user} while IMS was away`);
    void this.hooks('onResolve', () => ({ incident: this.state.incidentById(incident.id)!, user, reaction: this.config.resolvedReactions[0] }));
  }

  /** Reactions are not replayed after downtime: read the posts of open incidents to find the ones resolved meanwhile. */
  private async reconcileResolutions(): Promise<void> {
    const windowStart = this.now() - this.config.report.windowMs;
    const open = this.state.listIncidents({ open: true }).filter((i) => tsToMs(i.incidentTs) >= windowStart);
    const byChannel = new Map<string, Map<string, Incident>>();
    for (const incident of open) {
      if (!byChannel.has(incident.incidentChannel)) byChannel.set(incident.incidentChannel, new Map());
      byChannel.get(incident.incidentChannel)!.set(incident.incidentTs, incident);
    }
    for (const [channel, posts] of byChannel) {
      const oldest = [...posts.keys()].reduce((a, b) => (tsAfter(a, b) ? b : a));
      try {
        for await (const m of listAll<{ ts: string; reactions?: { name: string; users?: string[] }[] }>(this.slack, this.log, 'conversations.history', { channel, oldest, inclusive: true, limit: 200 }, 'messages')) {
          const incident = posts.get(m.ts);
          const resolver = incident && this.resolversOf(m.reactions)[0];
          if (incident && resolver) this.recordMissedResolution(incident, resolver);
        }
      } catch (error) {
        this.log.warn(`could not read ${channel} for resolutions made while IMS was away: ${errorText(error)}`);
      }
    }
  }

  /** Let a channel's held live messages through, oldest first. */
  private releaseHeld(channel: string): void {
    const held = this.catchingUp.get(channel) ?? [];
    this.catchingUp.delete(channel);
    held.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : -1));
    for (const event of held) this.track(this.dispatch(event));
  }

  // ─── Names → IDs ──────────────────────────────────────────────────────────────────────────────

  /** Resolve channel and user names in the config to IDs (unless `--no-id-lookup`); unknown names stop start-up. */
  async resolveNames(config: CompiledConfig): Promise<CompiledConfig> {
    const needsChannel = (ref: string) => !/^[CGD][A-Z0-9]{6,}$/.test(ref.replace(/^#/, ''));
    const needsUser = (ref: string) => !/^[UWBS][A-Z0-9]{6,}$/.test(ref) && !/^[@!]?(here|channel|everyone)$/i.test(ref);
    const channelRefs = [...config.incidents.values()].map((i) => i.channel).concat(config.report.channel ?? [], config.reverseDefault?.channel ?? [], config.reminders.map((r) => r.channel));
    const userRefs = [...(config.posters ?? []), ...[...config.hotlines.values()].flat(), ...(config.report.onlyPosters ?? [])];
    if (this.options.idLookup === false) {
      const names = [...channelRefs.filter(needsChannel), ...userRefs.filter(needsUser)];
      if (names.length) this.log.warn(`--no-id-lookup: these are used as they are, but look like names, not IDs (mentions and filters on them will not work): ${[...new Set(names)].join(', ')}`);
      return config;
    }
    const channelIds = new Map<string, string>();
    const userIds = new Map<string, string>();
    if (channelRefs.some(needsChannel)) {
      for await (const c of listAll<{ id: string; name: string }>(this.slack, this.log, 'conversations.list', { types: 'public_channel,private_channel', limit: 1000 }, 'channels')) {
        channelIds.set(c.name, c.id);
      }
    }
    if (userRefs.some(needsUser)) {
      for await (const u of listAll<{ id: string; name: string; real_name?: string; profile?: { display_name?: string } }>(this.slack, this.log, 'users.list', { limit: 1000 }, 'members')) {
        for (const name of [u.name, u.profile?.display_name, u.real_name]) if (name && !userIds.has(name)) userIds.set(name, u.id);
      }
      if (userRefs.some((r) => r.startsWith('@') && needsUser(r) && !userIds.has(r.slice(1)))) {
        try {
          const groups = await this.slack.usergroups.list({});
          for (const g of (groups.usergroups ?? []) as { id: string; handle: string }[]) userIds.set(`@${g.handle}`, g.id);
        } catch (error) { this.log.warn(`could not list user groups: ${errorText(error)}`); }
      }
    }
    const problems: string[] = [];
    const channel = (ref: string, at: string) => {
      if (!needsChannel(ref)) return ref.replace(/^#/, '');
      const id = channelIds.get(ref.replace(/^#/, ''));
      if (!id) problems.push(`${config.source}: ${at}: no channel named '${ref}' is visible to the bot; invite the bot to it, or write its ID (C…)`);
      return id ?? ref;
    };
    const user = (ref: string, at: string) => {
      if (!needsUser(ref)) return ref;
      const id = userIds.get(ref) ?? userIds.get(ref.replace(/^@/, ''));
      if (!id) problems.push(`${config.source}: ${at}: no user or user group named '${ref}'; check the spelling, or write the ID (U…/S…)`);
      return id ?? ref;
    };
    const incidents = new Map([...config.incidents].map(([label, i]) => [label, { ...i, channel: channel(i.channel, `incidents.${label}.channel`) }]));
    const reverseDefault = config.reverseDefault && { ...config.reverseDefault, channel: channel(config.reverseDefault.channel, 'reverseDefault.channel') };
    const reportChannel = config.report.channel && channel(config.report.channel, 'report.channel');
    const reminders = config.reminders.map((r, i) => ({ ...r, channel: channel(r.channel, `reminders[${i}].channel`) }));
    const hotlines = new Map([...config.hotlines].map(([label, members]) => [label, members.map((m) => user(m, `hotlines.${label}`))]));
    const posters = config.posters && new Set([...config.posters].map((p) => user(p, 'posters')));
    const onlyPosters = config.report.onlyPosters && new Set([...config.report.onlyPosters].map((p) => user(p, 'report.onlyPosters')));
    if (problems.length) throw new ConfigError(problems, config.source);
    const ownChannels = new Set([...incidents.values()].map((i) => i.channel).concat(reportChannel ?? [], reverseDefault?.channel ?? []));
    return { ...config, incidents, reverseDefault, reminders, hotlines, posters, ownChannels, report: { ...config.report, channel: reportChannel, onlyPosters } };
  }

  // ─── Hooks, schedules, reload ─────────────────────────────────────────────────────────────────

  /** Run a hook of every plugin with a full context. */
  hooks<K extends HookName>(hook: K, extra: () => Omit<Parameters<NonNullable<Plugin[K]>>[0], keyof HookContext>, plugins?: readonly Plugin[]): Promise<void> {
    const config = this.config;
    const targets = plugins ?? config.plugins;
    if (!targets.some((p) => typeof p[hook] === 'function')) return Promise.resolve();
    const run = runHooks(targets, hook, (plugin, signal) => ({ ...this.hookContext(plugin, signal), ...extra() }) as never, { timeoutMs: config.hookTimeoutMs, log: this.log });
    return this.track(run);
  }

  hookContext(plugin: Plugin, signal: AbortSignal): HookContext {
    const state = this.state;
    return {
      config: this.config.config, slack: this.pluginSlack, log: this.log.child(plugin.name), botUserId: this.self.userId,
      signal: AbortSignal.any([signal, this.stopController.signal]),
      outbox: { enqueue: ({ key, group, payload }) => { if (state.enqueue(plugin.name, key, group, payload, this.now())) this.kickOutbox(); } },
      incidents: {
        bySource: (channel, ts) => state.incidentBySource(channel, ts),
        byPost: (channel, ts) => state.incidentByPost(channel, ts),
        byId: (id) => state.incidentById(id),
        list: (filter) => state.listIncidents(filter),
        events: (id) => state.incidentEvents(id),
      },
      reportChannel: this.config.report.channel,
      ownChannel: (channel) => {
        this.state.ownChannel(channel, plugin.name);
        this.pluginChannels.add(channel);
      },
      store: {
        get: <T>(key: string) => state.storeGet(plugin.name, key) as T | undefined,
        set: (key, value) => state.storeSet(plugin.name, key, value),
        read: <T>(name: string, key: string) => state.storeGet(name, key) as T | undefined,
      },
      permalink: (channel, ts) => this.permalink(channel, ts),
    };
  }

  private startSchedules(): void {
    this.startReportAndReminders(true);
    this.timers.push(setInterval(() => void this.track(this.flushOutbox()), this.options.outboxIntervalMs ?? 1000));
    // A message whose handling failed (Slack unreachable, a channel the bot is not in) stays pending: retried until it goes through.
    const retryEvery = this.options.retryPendingMs ?? 60_000;
    this.timers.push(setInterval(() => {
      void this.track(this.recoverPending(this.now() - retryEvery));
      if (this.cursorFrozen.size) void this.track(this.catchUp());
    }, retryEvery));
    this.timers.push(setInterval(() => this.state.prune(this.now() - this.config.state.catchUpWindowMs - 7 * DAY), 6 * HOUR));
  }

  /** Report and reminder timers from the current config; `firstRun` also runs the legacy start-up report and a reminder check. */
  private startReportAndReminders(firstRun: boolean): void {
    for (const timer of this.scheduleTimers) 'stop' in timer ? timer.stop() : clearInterval(timer);
    this.scheduleTimers = [];
    const { report } = this.config;
    if (this.options.reports !== false && report.channel) {
      const schedule = this.options.schedule ?? (this.options.loopHours === undefined ? report.schedule : undefined);
      if (schedule) {
        this.scheduleTimers.push(cron().CronJob.from({ cronTime: schedule, timeZone: this.config.timezone, start: true, onTick: () => void this.track(runReport(this)) }));
        this.log.info(`reports scheduled: '${schedule}'${this.config.timezone ? ` (${this.config.timezone})` : ''}`);
      } else {
        const hours = this.options.loopHours ?? report.everyHours ?? 24;
        this.scheduleTimers.push(setInterval(() => void this.track(runReport(this)), hours * HOUR));
        if (firstRun) void this.track(runReport(this));
        this.log.info(`reports every ${hours} h${firstRun ? ', the first now' : ''}`);
      }
    } else if (this.options.reports !== false) {
      this.log.warn('no report channel ([Report] / report.channel): scheduled reports are off');
    }
    if (this.options.reminders !== false && this.config.reminders.length) {
      const every = this.options.reminderSeconds !== undefined ? this.options.reminderSeconds * SECOND : this.config.reminderIntervalMs;
      this.scheduleTimers.push(setInterval(() => void this.track(runReminders(this)), every));
      if (firstRun) void this.track(runReminders(this));
    }
  }

  /** Reload on change; a bad config is logged with its problems and the last good one keeps running. */
  private watchConfig(configPath: string): void {
    const absolute = path.resolve(configPath);
    let debounce: NodeJS.Timeout | undefined;
    this.watcher = watch(path.dirname(absolute), (_event, name) => {
      if (!name || !/\.(ts|mts|js|mjs|cjs|json|ini)$/i.test(name) || /\.db/.test(name)) return;
      clearTimeout(debounce);
      debounce = setTimeout(() => void this.track(this.reload(absolute, configPath)), 300);
    });
    this.watcher.on('error', (error) => this.log.warn(`config watch failed: ${error.message}`));
  }

  async reload(absolute: string, shown = absolute): Promise<boolean> {
    try {
      const fresh = await loadConfig({ path: absolute, reverse: this.options.reverse, reacji: this.options.reacji });
      const resolved = await this.resolveNames({ ...fresh, source: shown, state: this.config.state });
      const previous = this.config;
      this.config = resolved;
      this.log.info(`config reloaded from ${shown}: ${resolved.rules.length} rules`);
      if (this.socket && !this.stopping) {
        this.startReportAndReminders(false);
        // The reloaded config brings fresh plugin instances: retire the old ones, start the new ones.
        const kept = new Set(resolved.plugins);
        await this.hooks('onStop', () => ({}), previous.plugins.filter((p) => !kept.has(p)));
        const before = new Set(previous.plugins);
        await this.hooks('onStart', () => ({}), resolved.plugins.filter((p) => !before.has(p)));
      }
      return true;
    } catch (error) {
      const problems = error instanceof ConfigError ? error.problems : [errorText(error)];
      this.log.error(`config reload refused; still running on the last good config:\n${problems.map((p) => `  ${p}`).join('\n')}`);
      return false;
    }
  }

  // ─── Outbox worker ────────────────────────────────────────────────────────────────────────────

  private outboxRunning?: Promise<void>;
  private kickOutbox(): void {
    if (!this.stopping) setImmediate(() => void this.track(this.flushOutbox()));
  }

  /** Deliver due outbox items: the head of each group, in order; failures back off with jitter. */
  flushOutbox(): Promise<void> {
    this.outboxRunning ??= (async () => {
      // Yield first: finishing synchronously (nothing due) would run `finally` before `??=` assigns, leaving a settled promise that blocks every later flush.
      await Promise.resolve();
      try {
        for (let round = 0; round < 50; round++) {
          const due = this.state.dueDeliveries(this.now());
          if (!due.length) break;
          await Promise.all(due.map((item) => this.deliver(item)));
        }
      } finally {
        this.outboxRunning = undefined;
      }
    })();
    return this.outboxRunning;
  }

  private async deliver(item: OutboxItem): Promise<void> {
    const plugin = this.config.plugins.find((p) => p.name === item.plugin);
    if (!plugin?.deliver) {
      this.state.markRetry(item.id, this.now() + 5 * 60_000, `no plugin '${item.plugin}' with a deliver() is configured`);
      return;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error('delivery timed out')), this.config.hookTimeoutMs);
    try {
      await Promise.race([plugin.deliver({ key: item.key, group: item.group, payload: item.payload, attempts: item.attempts }, this.hookContext(plugin, controller.signal)),
        new Promise((_, reject) => controller.signal.addEventListener('abort', () => reject(controller.signal.reason)))]);
      this.state.markDelivered(item.id, this.now());
    } catch (error) {
      const message = errorText(error);
      if ((error as { permanent?: boolean }).permanent) {
        this.state.markDead(item.id, message);
        this.log.error(`outbox: '${item.plugin}' gave up on ${item.key}: ${message}`);
        return;
      }
      const backoff = Math.min(5 * 60_000, 1000 * 2 ** Math.min(item.attempts, 16));
      const retryAt = this.now() + backoff / 2 + Math.random() * backoff / 2;
      this.state.markRetry(item.id, retryAt, message);
      const stats = this.state.outboxStats();
      this.log.warn(`outbox: '${item.plugin}' delivery of ${item.key} failed (attempt ${item.attempts + 1}): ${message}; retry in ${Math.round((retryAt - this.now()) / 1000)} s`,
        { depth: stats.depth, oldest_age_s: stats.oldestAt ? Math.round((this.now() - stats.oldestAt) / 1000) : 0 });
    } finally {
      clearTimeout(timer);
    }
  }
}

interface ReactionEvent {
  type: 'reaction_added' | 'reaction_removed';
  user: string;
  reaction: string;
  item: { type: string; channel: string; ts: string };
  event_ts?: string;
}

function isReactionEvent(event: Record<string, unknown>): event is ReactionEvent & Record<string, unknown> {
  const item = event.item as Record<string, unknown> | undefined;
  return typeof event.user === 'string' && typeof event.reaction === 'string' && !!item && typeof item.channel === 'string' && typeof item.ts === 'string';
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Report and reminder
// ═══════════════════════════════════════════════════════════════════════════════════════════════

interface HistoryMessage {
  ts: string;
  user?: string;
  bot_id?: string;
  text?: string;
  thread_ts?: string;
  subtype?: string;
  attachments?: SlackAttachment[];
  blocks?: unknown[];
  reactions?: { name: string; users?: string[]; count?: number }[];
}

/** Every incident post still open in the incident channels within the report window, joined with the state. */
export async function buildReport(ims: Ims, options: { verbose?: boolean } = {}): Promise<Report> {
  const config = ims.config;
  const now = ims.options.now?.() ?? Date.now();
  const windowStart = now - config.report.windowMs;
  const report: Report = { generatedAt: now, windowStart, open: [], resolved: [], failures: [], sections: [] };
  const verbose = options.verbose ?? (ims.options.verbose || config.report.verbose);
  const targets = new Map<string, number | undefined>();
  for (const incident of config.incidents.values()) targets.set(incident.channel, Math.max(targets.get(incident.channel) ?? 0, incident.limit ?? Infinity));
  if (config.reverse && config.reverseDefault) targets.set(config.reverseDefault.channel, undefined);
  for (const [channel, rawLimit] of targets) {
    const limit = rawLimit === Infinity ? undefined : rawLimit;
    try {
      const messages: HistoryMessage[] = [];
      for await (const m of listAll<HistoryMessage>(ims.slack, ims.log, 'conversations.history', { channel, oldest: (windowStart / 1000).toFixed(6), limit: Math.min(limit ?? 200, 200) }, 'messages')) {
        messages.push(m);
        if (limit !== undefined && messages.length >= limit) break;
      }
      for (const m of messages.slice(0, limit)) {
        if (m.subtype && m.subtype !== 'bot_message') continue;
        if (m.thread_ts && m.thread_ts !== m.ts) continue;
        const poster = m.bot_id || m.user || '';
        const incident = ims.state.incidentByPost(channel, m.ts);
        if (config.report.onlyPosters ? !config.report.onlyPosters.has(poster) : !incident && poster !== ims.self.botId) continue;
        if (!incident && poster === ims.self.botId && !/^\*?\[/.test(m.text ?? '')) continue;
        const resolvers = ims.resolversOf(m.reactions);
        const resolved = resolvers.length > 0 || !!incident?.resolvedAt;
        if (incident && !incident.resolvedAt && resolvers.length) ims.recordMissedResolution(incident, resolvers[0]);
        const item: ReportItem = { channel, ts: m.ts, text: incident?.text ?? messageText({ text: m.text, attachments: m.attachments, blocks: m.blocks }), permalink: ims.permalink(channel, m.ts), incident: incident ? ims.state.incidentById(incident.id) : undefined };
        if (!resolved) report.open.push(item);
        else if (verbose) {
          item.resolvers = await Promise.all([...new Set(resolvers.length ? resolvers : [incident!.resolvedBy!])].map((u) => realName(ims, u)));
          report.resolved.push(item);
        }
      }
    } catch (error) {
      report.failures.push({ channel, error: errorText(error) });
      ims.log.warn(`report: could not read ${channel}: ${errorText(error)}`);
    }
  }
  report.open.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : -1));
  report.resolved.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : -1));
  const outbox = ims.state.outboxStats();
  if (outbox.depth) {
    report.sections.push({ title: 'Outbox', lines: [`${outbox.depth} deliveries waiting, oldest ${formatAge(now - (outbox.oldestAt ?? now))} old${outbox.lastError ? `; last error: ${outbox.lastError}` : ''}`] });
  }
  await ims.hooks('onReport', () => ({ report, addSection: (section: ReportSection) => { report.sections.push(section); } }));
  return report;
}

async function realName(ims: Ims, user: string): Promise<string> {
  const cache = ims.userNames;
  if (!cache.has(user)) {
    try {
      const info = await slackCall(() => ims.slack.users.info({ user }), ims.log, 'users.info');
      const u = info.user as { real_name?: string; name?: string; profile?: { real_name?: string; display_name?: string } } | undefined;
      cache.set(user, u?.profile?.real_name || u?.real_name || u?.profile?.display_name || u?.name || user);
    } catch {
      cache.set(user, user);
    }
  }
  return cache.get(user)!;
}

export function formatAge(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/** The report as Block Kit: one message, or several only past Slack's 50-block limit. */
export function reportMessages(report: Report, timezone?: string): { text: string; blocks: unknown[] }[] {
  const headline = `IMS report ${formatDate(report.generatedAt, timezone)}: ${report.open.length} open incident${report.open.length === 1 ? '' : 's'}`;
  const line = (item: ReportItem, mark: string) => {
    const head = item.incident?.head ?? '';
    const snippet = escapeSlack(item.text.replace(/\s+/g, ' ').slice(0, 150));
    const age = formatAge(report.generatedAt - tsToMs(item.incident?.sourceTs ?? item.ts));
    const who = item.resolvers?.length ? ` — resolved by ${escapeSlack(item.resolvers.join(', '))}` : '';
    return `${mark}${age}  ${head ? `*${escapeSlack(head)}* ` : ''}${snippet} <${item.permalink}|open>${who}`;
  };
  const lines = [
    ...report.open.map((item) => line(item, report.resolved.length ? 'NG ' : '• ')),
    ...report.resolved.map((item) => line(item, 'OK ')),
  ];
  if (!lines.length) lines.push('Nothing open. :tada:');
  const sections: unknown[] = [];
  let chunk = '';
  for (const l of lines) {
    if (chunk && chunk.length + l.length + 1 > SECTION_LIMIT) { sections.push({ type: 'section', text: { type: 'mrkdwn', text: chunk, verbatim: true } }); chunk = ''; }
    chunk += (chunk ? '\n' : '') + l;
  }
  sections.push({ type: 'section', text: { type: 'mrkdwn', text: chunk, verbatim: true } });
  for (const failure of report.failures) sections.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `:warning: could not read <#${failure.channel}>: ${escapeSlack(failure.error)}` }] });
  for (const section of report.sections) {
    sections.push({ type: 'section', text: { type: 'mrkdwn', verbatim: true, text: `*${escapeSlack(section.title)}*\n${section.lines.join('\n')}`.slice(0, SECTION_LIMIT) } });
  }
  const messages: { text: string; blocks: unknown[] }[] = [];
  for (let i = 0; i < sections.length; i += BLOCKS_PER_MESSAGE - 1) {
    messages.push({ text: i === 0 ? headline : `${headline} (continued)`, blocks: [...(i === 0 ? [{ type: 'header', text: { type: 'plain_text', text: headline.slice(0, 150) } }] : []), ...sections.slice(i, i + BLOCKS_PER_MESSAGE - 1)] });
  }
  return messages;
}

const FILE_THRESHOLD = 4;

/** Build and post one report; false when posting failed. */
export async function runReport(ims: Ims, options: { verbose?: boolean } = {}): Promise<boolean> {
  const channel = ims.config.report.channel;
  if (!channel) { ims.log.error('no report channel configured ([Report] / report.channel)'); return false; }
  const report = await buildReport(ims, options);
  const messages = reportMessages(report, ims.config.timezone);
  try {
    if (messages.length > FILE_THRESHOLD) {
      // A very long list reads better as a file than as a dozen messages.
      const content = [messages[0].text, '', ...report.open.map((i) => `NG ${formatDate(tsToMs(i.ts), ims.config.timezone)} ${i.incident?.head ?? ''} ${i.text.replace(/\s+/g, ' ')} ${i.permalink}`),
        ...report.resolved.map((i) => `OK ${formatDate(tsToMs(i.ts), ims.config.timezone)} ${i.incident?.head ?? ''} ${i.text.replace(/\s+/g, ' ')} [user] ${i.resolvers?.join(' ')}`)].join('\n');
      // The summary keeps what the file lacks: channels that could not be read and the plugins' sections.
      const extras = reportMessages({ ...report, open: [], resolved: [] }, ims.config.timezone)[0].blocks.slice(2);
      const blocks = [...messages[0].blocks.slice(0, 3), ...extras].slice(0, BLOCKS_PER_MESSAGE);
      await slackCall(() => ims.slack.chat.postMessage({ channel, text: messages[0].text, blocks: blocks as never, unfurl_links: false, unfurl_media: false }), ims.log, 'chat.postMessage');
      await slackCall(() => ims.slack.filesUploadV2({ channel_id: channel, content, filename: `ims-report-${new Date(report.generatedAt).toISOString().slice(0, 10)}.txt`, title: messages[0].text }), ims.log, 'files upload');
    } else {
      for (const message of messages) {
        await slackCall(() => ims.slack.chat.postMessage({ channel, text: message.text, blocks: message.blocks as never, unfurl_links: false, unfurl_media: false }), ims.log, 'chat.postMessage');
      }
    }
    ims.log.info(`report posted: ${report.open.length} open, ${report.resolved.length} resolved listed`, { channel });
    return true;
  } catch (error) {
    ims.log.error(`report could not be posted to ${channel}: ${errorText(error)}`);
    return false;
  }
}

/** During a reminder line's hours, post the open-incident counts at most once per hour and channel. */
export async function runReminders(ims: Ims): Promise<void> {
  const now = ims.options.now?.() ?? Date.now();
  const parts = dateParts(now, ims.config.timezone);
  const hourKey = `${parts.year}-${parts.month}-${parts.day} ${parts.hour}`;
  for (const reminder of ims.config.reminders) {
    if (!reminder.hours.some((hour) => hour.test(parts.hour))) continue;
    const counts = new Map<string, number>();
    for (const incident of ims.state.listIncidents({ open: true })) counts.set(incident.incidentChannel, (counts.get(incident.incidentChannel) ?? 0) + 1);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    if (!total || !ims.state.claimReminder(reminder.channel, hourKey)) continue;
    const text = `:bell: ${total} open incident${total === 1 ? '' : 's'}: ${[...counts].map(([channel, n]) => `<#${channel}> ${n}`).join(', ')}. React with :${ims.config.resolvedReactions[0]}: on an incident post when it is resolved.`;
    try {
      await slackCall(() => ims.slack.chat.postMessage({ channel: reminder.channel, text }), ims.log, 'chat.postMessage');
    } catch (error) {
      // Give the hour back, so the next tick tries again.
      ims.state.releaseReminder(reminder.channel, hourKey);
      ims.log.error(`reminder could not be posted to ${reminder.channel}: ${errorText(error)}`);
    }
  }
}

/** `--clear-reminder`: delete IMS's own messages in the reminder channels (within the report window). */
export async function clearReminders(ims: Ims): Promise<number> {
  let deleted = 0;
  const oldest = (((ims.options.now?.() ?? Date.now()) - ims.config.report.windowMs) / 1000).toFixed(6);
  for (const channel of new Set(ims.config.reminders.map((r) => r.channel))) {
    const own: string[] = [];
    for await (const m of listAll<HistoryMessage>(ims.slack, ims.log, 'conversations.history', { channel, oldest, limit: 200 }, 'messages')) {
      if (m.bot_id === ims.self.botId || m.user === ims.self.userId) own.push(m.ts);
    }
    for (const ts of own) {
      try {
        await slackCall(() => ims.slack.chat.delete({ channel, ts }), ims.log, 'chat.delete');
        deleted++;
      } catch (error) {
        ims.log.warn(`could not delete ${channel}:${ts}: ${errorText(error)}`);
      }
    }
  }
  return deleted;
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Running against Slack (the default mode, --only-report, --clear-reminder)
// ═══════════════════════════════════════════════════════════════════════════════════════════════

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
  if (typeof tokens === 'string') { io.err(`ims: ${tokens}`); return 1; }
  const log = createLogger({ level: options.debug ? 'debug' : 'info', file: options.log, secrets: [tokens.appToken, tokens.botToken] });
  const ims = new Ims(config, {
    ...tokens, log, configPath: config.source, autoReload: options.auto, idLookup: options.idLookup, verbose: options.verbose,
    reverse: options.reverse, reacji: options.reacji, reports: !options.noIncident, reminders: !options.noReminder,
    schedule: options.schedule, loopHours: options.loopHours, reminderSeconds: options.reminderSeconds,
    clientPingTimeoutMs: process.env.IMS_PING_TIMEOUT_MS ? Number(process.env.IMS_PING_TIMEOUT_MS) : undefined,
    retryConfig: process.env.IMS_HTTP_RETRIES ? { retries: Number(process.env.IMS_HTTP_RETRIES), minTimeout: 100, maxTimeout: 1000 } : undefined,
  });
  try {
    if (options.onlyReport || options.clearReminder) {
      await ims.start({ socket: false });
      if (options.clearReminder) {
        log.info(`deleted ${await clearReminders(ims)} reminder message(s)`);
        return 0;
      }
      return (await runReport(ims)) ? 0 : 1;
    }
    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: string) => { log.info(`${signal} received`); resolve(); };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
    await ims.start();
    await stopped;
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) { io.err(error.message); return 1; }
    log.error(`cannot start: ${errorText(error)}`);
    return 1;
  } finally {
    // socket-mode 3.1: disconnect() while a reconnect waits for hello rejects, with `undefined`, a promise nobody can catch.
    process.on('unhandledRejection', (reason) => { if (reason !== undefined) throw reason; });
    await ims.stop().catch((error) => log.error(`stop failed: ${errorText(error)}`));
    // Everything is finished and the DB closed; a reconnect the SDK still has under way must not hold the exit.
    setTimeout(() => process.exit(), 1000).unref();
  }
}

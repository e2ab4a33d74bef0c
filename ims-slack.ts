/**
 * The Slack runtime of IMS: Socket Mode in, Web API out, SQLite state underneath. `ims.ts` holds the
 * contract (types, config, rule engine, CLI); this module carries decisions out against Slack — the
 * message pipeline, resolution, catch-up, the report and reminder, config reload, and the plugins'
 * outbox worker — and runs the plugins' hooks after its own work.
 */
import { appendFileSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { WebClient } from '@slack/web-api';
import { SocketModeClient } from '@slack/socket-mode';
import { State, StateVersionError, tsAfter, type OutboxItem } from './ims-state.ts';
import {
  PluginHookError, PluginHookErrors, TimeoutError, classifySlackFailure, failureReason, isPermanentDeliveryError, withTimeout, type SlackFailure,
} from './ims-plugin-kit.ts';
import {
  ConfigError, contentLines, printable, cron, decide, decodeEntities, escapeSlack, formatDate, dateParts, loadConfig, messageText, tsToMs, SECOND, HOUR, DAY,
  type AlertMessage, type CliOptions, type CompiledConfig, type Decision, type HookContext, type HookName, type Incident, type NameService, type RuleMatch,
  type Logger, type Plugin, type Report, type ReportItem, type ReportSection, type SlackAttachment, type SlackMessageEvent,
} from './ims.ts';
import { configName, didYouMean, placeOf } from './ims.ts';

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Slack wiring: logging, the hook runner, the per-channel post queue, the message pipeline
// ═══════════════════════════════════════════════════════════════════════════════════════════════

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;
const TOKEN_PATTERN = /\b(xox[a-z]|xapp)-[A-Za-z0-9-]+/g;

/** How log lines are written: `text` for people, `json` (one object per line) for log shippers. */
export type LogFormat = 'text' | 'json';

/**
 * A leveled logger writing to stderr (and a file), tokens redacted: `time LEVEL [tag] message key=value`,
 * or with `format: 'json'` one object per line, `{"time","level","tag"?,"message","fields"?}`.
 * A log file that cannot be written at creation throws (start-up stops with that message); one that fails
 * later is reported once on stderr and retried, since a full disk must not stop alerts.
 */
export function createLogger(options: { level?: LogLevel; file?: string; tag?: string; write?: (line: string) => void; secrets?: string[]; format?: LogFormat } = {}): Logger & { child(tag: string): Logger } {
  const threshold = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  // A secret becomes its first five characters; in a JSON line it appears (and is replaced) JSON-escaped.
  const escaped = (text: string) => JSON.stringify(text).slice(1, -1);
  const secrets = (options.secrets ?? []).filter((s) => s.length >= 8).flatMap((s) => [[s, `${s.slice(0, 5)}…`], [escaped(s), escaped(`${s.slice(0, 5)}…`)]]);
  const redact = (text: string) => {
    for (const [secret, shown] of secrets) if (text.includes(secret)) text = text.split(secret).join(shown);
    return text.includes('xox') || text.includes('xapp-') ? text.replace(TOKEN_PATTERN, (token) => `${token.slice(0, 5)}…`) : text;
  };
  const json = (value: unknown) => { try { return JSON.stringify(value) ?? String(value); } catch { return String(value); } };
  const format = (time: string, level: LogLevel, tag: string | undefined, message: string, fields: [string, unknown][]) => {
    if (options.format === 'json') {
      return json({ time, level, ...(tag ? { tag } : {}), message, ...(fields.length ? { fields: Object.fromEntries(fields) } : {}) });
    }
    const extra = fields.map(([k, v]) => ` ${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : json(v)}`).join('');
    return printable(`${time} ${level.toUpperCase().padEnd(5)} ${tag ? `[${tag}] ` : ''}${message}${extra}`);
  };
  let fileFailing = false;
  const append = (file: string, text: string) => {
    try {
      appendFileSync(file, text);
      if (fileFailing) write(redact(format(new Date().toISOString(), 'info', options.tag, `log file '${file}' is written again`, [])));
      fileFailing = false;
    } catch (error) {
      if (!fileFailing) write(redact(format(new Date().toISOString(), 'error', options.tag, `cannot write the log file '${file}' (${(error as Error).message}); logging to stderr only until it works again`, [])));
      fileFailing = true;
    }
  };
  if (options.file !== undefined) {
    const file = options.file || legacyLogFile(new Date());
    try {
      appendFileSync(file, '');
    } catch (error) {
      throw new Error(`cannot write the log file '${file}' (${(error as Error).message}): give --log a writable file, or leave --log out`);
    }
  }
  const emit = (tag: string | undefined) => (level: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < threshold) return;
    const line = redact(format(new Date().toISOString(), level, tag, message, Object.entries(fields ?? {}).filter(([, v]) => v !== undefined)));
    write(line);
    if (options.file !== undefined) append(options.file || legacyLogFile(new Date()), line + '\n');
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
 * Run a hook of every plugin that has it, CONCURRENTLY, each plugin isolated from the others. Given a list
 * (`['onMatch', 'onHotline']`), each plugin runs those hooks in order, the next after the previous settled,
 * whatever its outcome. Each call is bounded by `timeoutMs` (`withTimeout`: its signal is aborted past it).
 * A failure is stamped (`PluginHookError`: plugin, hook, the plugin's stack) and logged at once as
 * `plugin 'NAME' failed in HOOK: why` with `at=file:line`; when several fail for this one event, one more line
 * reports them together. Never rejects: resolves with the failures (`PluginHookErrors`), or undefined.
 */
export async function runHooks<K extends HookName>(plugins: readonly Plugin[], hooks: K | readonly K[],
  makeContext: (plugin: Plugin, signal: AbortSignal, hook: K) => Parameters<NonNullable<Plugin[K]>>[0],
  options: { timeoutMs: number; log: Logger; event?: string }): Promise<PluginHookErrors | undefined> {
  const sequence: readonly K[] = typeof hooks === 'string' ? [hooks as K] : hooks as readonly K[];
  const failures: PluginHookError[] = [];
  let event = options.event;
  await Promise.all(plugins.map(async (plugin) => {
    for (const hook of sequence) {
      const fn = plugin[hook] as ((ctx: unknown) => unknown) | undefined;
      if (typeof fn !== 'function') continue;
      try {
        await withTimeout((signal) => {
          const ctx = makeContext(plugin, signal, hook);
          event ??= hookEvent(ctx);
          return fn.call(plugin, ctx);
        }, options.timeoutMs, `plugin '${plugin.name}' ${hook}`);
      } catch (error) {
        const failure = new PluginHookError(plugin.name, hook, error);
        failures.push(failure);
        options.log.error(failure.message, failure.fields());
      }
    }
  }));
  if (!failures.length) return undefined;
  const together = new PluginHookErrors(failures, event ?? sequence.join('/'));
  if (failures.length > 1) options.log.error(together.message, { hook: sequence.join(','), event: together.event });
  return together;
}

/** What a hook's context is about, for the line that reports several failures together. */
function hookEvent(ctx: unknown): string | undefined {
  const c = ctx as { incident?: { id?: number }; message?: { channel?: string; ts?: string }; report?: unknown } | undefined;
  if (c?.incident?.id !== undefined) return `incident #${c.incident.id}${c.message ? ` (message ${c.message.channel} ${c.message.ts})` : ''}`;
  if (c?.message) return `message ${c.message.channel} ${c.message.ts}`;
  if (c?.report) return 'the report';
  return undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function rateLimitDelay(error: unknown): number | undefined {
  const e = error as { code?: string; retryAfter?: number };
  return e.code === 'slack_webapi_rate_limited_error' ? Math.max(1, e.retryAfter ?? 1) * 1000 : undefined;
}

// ─── Failures and retries ─────────────────────────────────────────────────────────────────────
// The SDK's own retry repeats any failed request for about 30 minutes, including a post Slack already made
// when only its answer was lost. IMS turns it off in every client it builds and decides itself, from what a
// failure says about whether Slack did the work.

// The classification itself lives in ims-plugin-kit.ts: plugins use the same one.
export { classifySlackFailure, type SlackFailure, type SlackFailureKind } from './ims-plugin-kit.ts';
/** What Slack refuses in a message's form rather than its destination: a plain-text post may still go through. */
export const CONTENT_ERRORS = new Set(['encoding', 'invalid_blocks', 'invalid_blocks_format', 'msg_too_long', 'msg_blocks_too_long', 'too_many_attachments',
  'invalid_attachments', 'invalid_metadata_format', 'invalid_metadata_schema', 'metadata_too_large', 'invalid_arguments', 'no_text']);

/** Retries IMS makes itself (the SDK's are off): bounded attempts and bounded time. */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  factor?: number;
  /** First delay (ms). */
  minTimeout?: number;
  /** Longest delay (ms). */
  maxTimeout?: number;
  randomize?: boolean;
  /** No retry starts later than this after the first attempt (ms). */
  maxRetryTime?: number;
}

/** Five retries within a minute: long enough for a blip, short enough that a channel's queue moves on. */
export const DEFAULT_RETRY: Required<RetryPolicy> = { retries: 5, factor: 2, minTimeout: 1000, maxTimeout: 15_000, randomize: true, maxRetryTime: 60_000 };

function retryDelay(policy: RetryPolicy, attempt: number): number {
  const p = { ...DEFAULT_RETRY, ...policy };
  const base = Math.min(p.maxTimeout, p.minTimeout * p.factor ** Math.max(0, attempt - 1));
  return Math.round(p.randomize ? base * (0.75 + Math.random() / 2) : base);
}

/** Resolves after `ms`, or at once when `signal` aborts (then false). The timer never holds the process open. */
function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (completed: boolean) => { clearTimeout(timer); signal?.removeEventListener('abort', onAbort); resolve(completed); };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Text Slack can take: a lone UTF-16 surrogate (an emoji cut in half) becomes U+FFFD; objects are copied only when something changed. */
export function wellFormed<T>(value: T): T {
  if (typeof value === 'string') {
    const s = value as unknown as { isWellFormed(): boolean; toWellFormed(): string };
    return (s.isWellFormed() ? value : s.toWellFormed()) as T;
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const clean = wellFormed(item);
      if (clean !== item) (copy ??= [...value])[i] = clean;
    });
    return (copy ?? value) as T;
  }
  if (value && typeof value === 'object' && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    let copy: Record<string, unknown> | undefined;
    for (const [key, item] of Object.entries(value)) {
      const clean = wellFormed(item);
      if (clean !== item) (copy ??= { ...(value as Record<string, unknown>) })[key] = clean;
    }
    return (copy ?? value) as T;
  }
  return value;
}

/** Methods Slack may be asked twice without doing the work twice: reads, and writes whose repeat is refused or changes nothing. */
function repeatable(method: string): boolean {
  return /\.(list|info|history|replies|get|test|getPermalink|open|getUploadURLExternal)$/.test(method) || REPEATABLE_WRITES.has(method);
}
const REPEATABLE_WRITES = new Set(['reactions.add', 'reactions.remove', 'pins.add', 'pins.remove', 'chat.update', 'chat.delete', 'conversations.setTopic',
  'conversations.setPurpose', 'conversations.join', 'conversations.invite', 'conversations.kick', 'conversations.archive', 'conversations.unarchive']);

/** How one of IMS's Web API clients retries. */
interface ClientPolicy {
  retry: RetryPolicy;
  log: Logger;
  /** What the client is, for its log lines (`Slack`, `plugins`). */
  name: string;
  /** Aborted when IMS gives up on in-flight work: no retry starts after it. */
  signal?: AbortSignal;
  /** Wait out 429s here (the plugins' client); IMS's own calls instead wait in their channel's queue (`slackCall`). */
  waitOutThrottling?: boolean;
  /** During start-up: retries go on until this time (whatever `retry` says) and each is logged as a warning. */
  deadline?: () => number | undefined;
  /** Slack refused the token. */
  onAuthFailure?: (method: string, code: string) => void;
}

/**
 * A WebClient whose retries IMS decides: the SDK's are off. A call that failed on the way (network, time-out,
 * 5xx) is tried again only when Slack cannot have done the work (connection refused) or when doing it twice
 * is harmless (`repeatable`); Slack's own refusals (`ok: false`) are left to the caller, except at start-up.
 * Everything it gives up on is thrown stamped with its `slackFailure`. Text is made well-formed before it
 * is sent (every path: posts, plugins, reports), since the SDK's form encoding throws on a lone surrogate.
 */
class SlackClient extends WebClient {
  constructor(token: string | undefined, options: ConstructorParameters<typeof WebClient>[1], private readonly policy: ClientPolicy) {
    super(token, { ...options, rejectRateLimitedCalls: true, retryConfig: { retries: 0 } });
  }

  override async apiCall(method: string, options: Record<string, unknown> = {}): Promise<Awaited<ReturnType<WebClient['apiCall']>>> {
    const args = wellFormed(options);
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await super.apiCall(method, args);
      } catch (error) {
        const failure = classifySlackFailure(error);
        if (error && typeof error === 'object') Object.assign(error, { slackFailure: failure, method });
        if (failure.kind === 'auth') this.policy.onAuthFailure?.(method, failure.code);
        // An answer from Slack (`ok: false`) is left to the caller, which knows what the call was for (a
        // catch-up is retried every minute, a post looked for); only failures on the way are retried here.
        // At start-up, anything that may pass is retried until the deadline.
        const answered = (error as { code?: string }).code === 'slack_webapi_platform_error' && this.policy.deadline?.() === undefined;
        const delay = answered ? undefined : this.retryAfter(method, failure, attempt, started);
        if (delay === undefined) throw error;
        const deadline = this.policy.deadline?.();
        const line = `${method} at ${this.slackApiUrl} failed (${failure.reason}); retry ${attempt}${deadline ? '' : ` of ${this.policy.retry.retries}`} in ${(delay / 1000).toFixed(1)} s`;
        // Retries are rare and mean Slack is in trouble: they are shown at the default level, not only with --debug.
        this.policy.log.warn(this.policy.name === 'Slack' ? line : `${this.policy.name}: ${line}`);
        if (!(await pause(delay, this.policy.signal))) throw error;
      }
    }
  }

  /** The wait before trying again, or undefined to give up. */
  private retryAfter(method: string, failure: SlackFailure, attempt: number, started: number): number | undefined {
    if (this.policy.signal?.aborted) return undefined;
    const deadline = this.policy.deadline?.();
    const again = failure.kind === 'not done' || (failure.kind === 'unknown' && repeatable(method))
      || (failure.kind === 'throttled' && (!!this.policy.waitOutThrottling || deadline !== undefined));
    if (!again) return undefined;
    const delay = failure.retryAfterMs ?? retryDelay(this.policy.retry, attempt);
    // The last try is made at the deadline itself.
    if (deadline !== undefined) return deadline - Date.now() > 100 ? Math.min(delay, deadline - Date.now()) : undefined;
    if (failure.kind !== 'throttled' && attempt > this.policy.retry.retries) return undefined;
    return Date.now() + delay - started <= (this.policy.retry.maxRetryTime ?? DEFAULT_RETRY.maxRetryTime) ? delay : undefined;
  }
}

/** Whether `work` settled before `deadline` (epoch ms); its outcome is not looked at. */
function settleWithin(work: Promise<unknown>, deadline: number): Promise<boolean> {
  return withTimeout(() => work, Math.max(0, deadline - Date.now()), 'work before the deadline').then(() => true, (error) => !(error instanceof TimeoutError));
}

/** The parts of socket-mode 3.1's client that IMS repairs (private in its types). */
interface SocketInternals {
  retrieveWSSURL: () => Promise<string>;
  start: () => Promise<unknown>;
  send: (envelopeId: string, body?: unknown) => Promise<void>;
  connectionResponse?: unknown;
  numOfConsecutiveReconnectionFailures: number;
}

/** Slack refuses one of IMS's tokens: IMS cannot run on (a revoked or wrong token). Its message is the one line to show. */
export class SlackTokenError extends Error {
  constructor(readonly token: 'SLACK_APP_TOKEN' | 'SLACK_BOT_TOKEN', readonly method: string, readonly code: string) {
    super(`${token} was refused by Slack (${code} on ${method}): ${token === 'SLACK_APP_TOKEN'
      ? 'the app-level token was revoked or is wrong; create a new one (Basic Information → App-Level Tokens, scope connections:write), set SLACK_APP_TOKEN to it and restart IMS'
      : 'the bot token was revoked or is wrong (app uninstalled or reinstalled?); copy the Bot User OAuth Token (OAuth & Permissions), set SLACK_BOT_TOKEN to it and restart IMS'}`);
    this.name = 'SlackTokenError';
  }
}

/** IMS could not reach Slack within its start-up time. */
export class SlackUnreachableError extends Error {
  constructor(message: string) { super(message); this.name = 'SlackUnreachableError'; }
}

/** `stop()` was called while `start()` was still under way. */
export class StoppedError extends Error {
  constructor() { super('stopped during start-up'); this.name = 'StoppedError'; }
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
/** What the incident post itself shows of a long alert (a stack trace): its first lines, readable on a phone. */
const PREVIEW_LINES = 15;
const PREVIEW_CHARS = 1500;
/** Sections per thread reply of a long alert: under Slack's 40,000 characters of a message. */
const SECTIONS_PER_REPLY = 12;
/** Longer link targets are shown as text (which may be split); longer labels are shortened. So a link fits any section. */
const MAX_LINK = 2000;
const MAX_LABEL = 300;
const MAX_RENDERED_LINK = 2400;

// ─── Reposts: the alert's links kept, everything else escaped ──────────────────────────────────

/**
 * A piece of repost text: `text` is shown as it is (escaped when rendered); with `url`, it is a link IMS
 * writes itself, to an http(s) or mailto target only.
 */
export interface TextPiece {
  text: string;
  url?: string;
}

/** A link target IMS may write: http(s) with a host, or mailto; spaces, `|`, `<`, `>` and `"` percent-encoded. */
export function linkTarget(target: string): string | undefined {
  const url = target.trim();
  if (!/^(?:https?:\/\/[^\s/?#]|mailto:\S)/i.test(url) || /[\u0000-\u001f\u007f]/.test(url) || url.length > MAX_LINK) return undefined;
  return url.replace(/[\s|<>"]/g, (c) => encodeURIComponent(c));
}

const BARE_URL = /\bhttps?:\/\/[^\s<>|"`]+/gi;

/** A bare URL without the punctuation that ends its sentence (`see https://x/y.`) or closes a bracket it is in. */
function trimUrl(url: string): string {
  const closing: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const count = (c: string) => url.split(c).length - 1;
  for (;;) {
    const last = url.at(-1)!;
    if (".,;:!?'*_~".includes(last) || (closing[last] && count(last) > count(closing[last]))) url = url.slice(0, -1);
    else return url;
  }
}

/** Plain (decoded) text as pieces: its bare http(s) URLs become links (Slack does not link them in `verbatim` text). */
export function plainPieces(text: string, into: TextPiece[] = []): TextPiece[] {
  let last = 0;
  for (const found of text.matchAll(BARE_URL)) {
    const shown = trimUrl(found[0]);
    const url = linkTarget(shown);
    if (!url) continue;
    if (found.index > last) into.push({ text: text.slice(last, found.index) });
    into.push({ text: shown, url });
    last = found.index + shown.length;
  }
  if (last < text.length) into.push({ text: text.slice(last) });
  return into;
}

/**
 * Slack mrkdwn as pieces: `<url>` and `<url|label>` with an http(s) or mailto target become links, bare
 * URLs too; every other control sequence (`<!here>`, `<@U…>`, `<!subteam^…>`, `<#C…>`, `<javascript:…>`)
 * stays text, so it is shown, never acted on. `encoded`: entity-encoded as Slack sends it (decoded here);
 * false for text already decoded (what the rules read, as the state keeps it).
 */
export function mrkdwnPieces(text: string, encoded = true): TextPiece[] {
  const decode = encoded ? decodeEntities : (s: string) => s;
  const pieces: TextPiece[] = [];
  let last = 0;
  for (const found of text.matchAll(/<([^<>]*)>/g)) {
    const bar = found[1].indexOf('|');
    const target = decode(bar < 0 ? found[1] : found[1].slice(0, bar));
    const url = linkTarget(target);
    if (!url) continue;
    plainPieces(decode(text.slice(last, found.index)), pieces);
    pieces.push({ text: bar < 0 ? target.trim() : decode(found[1].slice(bar + 1)), url });
    last = found.index + found[0].length;
  }
  plainPieces(decode(text.slice(last)), pieces);
  return pieces;
}

/**
 * The alert as a repost shows it: the text the rules read (`messageText`), with the links Slack showed kept
 * as links — `<url|label>` in mrkdwn, an attachment title's `title_link`, rich-text links, bare URLs.
 */
export function alertPieces(event: SlackMessageEvent, mode: 'readable' | 'legacy-json' = 'readable'): TextPiece[] {
  if (event.text && event.text.trim() !== '') return mrkdwnPieces(event.text);
  if (mode === 'legacy-json') return mrkdwnPieces(messageText(event, mode), false);
  const pieces: TextPiece[] = [];
  contentLines(event).forEach((line, i) => {
    if (i) pieces.push({ text: '\n' });
    for (const part of line) {
      const url = part.kind === 'link' ? linkTarget(part.url) : undefined;
      if (url) pieces.push({ text: decodeEntities(part.text), url });
      else if (part.kind === 'mrkdwn') pieces.push(...mrkdwnPieces(part.text));
      else plainPieces(decodeEntities(part.text), pieces);
    }
  });
  return pieces;
}

/** Pieces as mrkdwn for a `verbatim` text object: text escaped, links written by IMS with escaped labels. */
export function renderPieces(pieces: readonly TextPiece[]): string {
  return pieces.map((piece) => {
    if (piece.url === undefined) return escapeSlack(piece.text);
    const label = clip(piece.text.replace(/\s+/g, ' ').trim(), MAX_LABEL);
    const link = !label || label === piece.url ? `<${escapeSlack(piece.url)}>` : `<${escapeSlack(piece.url)}|${escapeSlack(label)}>`;
    // Too long for a section: shown as text (which can be split), the address included.
    return link.length <= MAX_RENDERED_LINK ? link : escapeSlack(piece.text === piece.url ? piece.url : `${piece.text} (${piece.url})`);
  }).join('');
}

/** At most `max` characters (code points, so no emoji is cut in half), `…` marking a cut. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, Math.max(0, max - 1)).join('')}…`;
}

/** The first `max` visible characters of pieces (a link counts its label), never cutting a link or a surrogate pair; `…` marks a cut. */
export function clipPieces(pieces: readonly TextPiece[], max: number): TextPiece[] {
  const out: TextPiece[] = [];
  let left = max;
  for (const piece of pieces) {
    const length = [...piece.text].length;
    if (length <= left) { out.push(piece); left -= length; continue; }
    // A link keeps its whole target; only its label is shortened, and only when nothing comes before it.
    if (piece.url === undefined || !out.length) out.push({ ...piece, text: clip(piece.text, Math.max(1, left)) });
    else out.push({ text: '…' });
    break;
  }
  return out;
}

/**
 * Split escaped mrkdwn into pieces of at most `limit` characters: at a line break when one is near, else at
 * a space; never inside an `&amp;` entity, a `<…|…>` link or a surrogate pair. Nothing is lost or repeated.
 */
export function splitText(text: string, limit = SECTION_LIMIT): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > limit) {
    const cut = cutPoint(rest, limit);
    pieces.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  pieces.push(rest);
  return pieces;
}

/** Escaped mrkdwn shortened to about `limit` characters as `splitText` cuts it, `…` marking a cut. */
function shorten(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, cutPoint(text, limit))}…`;
}

/** Where `splitText` cuts text longer than `limit`: a line break in the second half, else a space there, else `limit`; then made safe. */
function cutPoint(text: string, limit: number): number {
  let cut = text.lastIndexOf('\n', limit);
  if (cut < limit / 2) {
    const space = text.lastIndexOf(' ', limit);
    cut = space >= limit / 2 ? space : limit;
  }
  return safeCut(text, cut);
}

/** The nearest cut at or before `cut` that splits no `<…>` sequence, no entity and no surrogate pair; a sequence that starts the text is kept whole. */
function safeCut(text: string, cut: number): number {
  const open = text.lastIndexOf('<', cut - 1);
  if (open >= 0 && open > text.lastIndexOf('>', cut - 1)) {
    if (open > 0) cut = open;
    else {
      const close = text.indexOf('>', cut);
      if (close >= 0) return close + 1;
    }
  }
  const amp = text.lastIndexOf('&', cut - 1);
  const entity = amp >= 0 ? /^&(?:amp|lt|gt);/.exec(text.slice(amp, amp + 5)) : null;
  if (entity && amp + entity[0].length > cut && amp > 0) cut = amp;
  const code = text.charCodeAt(cut - 1);
  if (cut > 1 && code >= 0xd800 && code <= 0xdbff) cut--;
  return cut;
}

/** How a hotline member is mentioned: only this code (and never alert text) writes `<!…>` or `<@…>`. */
export function mentionOf(member: string): string {
  const special = member.replace(/^[@!]/, '').toLowerCase();
  if (special === 'here' || special === 'channel' || special === 'everyone') return `<!${special}>`;
  if (/^S[A-Z0-9]{2,}$/.test(member)) return `<!subteam^${member}>`;
  return `<@${member}>`;
}

/**
 * The head of a long alert and the rest: at most `PREVIEW_LINES` lines and about `PREVIEW_CHARS`
 * characters of rendered mrkdwn, cut at a line break (or, when the first line alone is longer, at a safe
 * place inside it). `rest` is empty when the whole alert fits.
 */
function previewOf(body: string): { preview: string; rest: string; moreLines: number } {
  const lines = body.split('\n');
  // `end`: where the lines taken so far end (the line break after them starts the rest).
  let end = -1;
  let taken = 0;
  while (taken < lines.length && taken < PREVIEW_LINES && end + 1 + lines[taken].length <= PREVIEW_CHARS) end += 1 + lines[taken++].length;
  if (taken === lines.length) return { preview: body, rest: '', moreLines: 0 };
  const cut = taken > 0 ? end : cutPoint(body, PREVIEW_CHARS);
  return { preview: body.slice(0, cut), rest: body.slice(cut), moreLines: taken > 0 ? lines.length - taken : 0 };
}

/**
 * The Block Kit messages of one incident post. The first is the incident: the label and the alert — of a
 * long alert only its first lines — then a context line (source channel, poster, time, link to the
 * original) and the hotline's mentions. The rest of a long alert continues in the post's thread, in order.
 * `pieces` is the alert with its links (`alertPieces`); without it, `text` is shown with its links found.
 */
export function incidentMessages(input: { head: string; text: string; pieces?: readonly TextPiece[]; sourceChannel: string; poster: string; at: string; permalink?: string; mentions?: string[]; hotline?: string }): { text: string; blocks: unknown[] }[] {
  const head = escapeSlack(input.head);
  const body = renderPieces(input.pieces ?? mrkdwnPieces(input.text, false));
  const { preview, rest, moreLines } = previewOf(body);
  const section = (text: string) => ({ type: 'section', text: { type: 'mrkdwn', text, verbatim: true } });
  const more = rest ? ` · ${moreLines > 0 ? `${moreLines} more line${moreLines === 1 ? '' : 's'}` : 'the rest'} in the thread` : '';
  const context = {
    type: 'context',
    elements: [{ type: 'mrkdwn', verbatim: true, text: `from <#${input.sourceChannel}> · ${escapeSlack(input.poster)} · ${input.at}${input.permalink ? ` · <${input.permalink}|original alert>` : ''}${more}` }],
  };
  const mentions = input.mentions?.length ? `:rotating_light: *Hotline ${escapeSlack(input.hotline ?? '')}*: ${input.mentions.join(' ')}` : '';
  const first = {
    text: shorten(escapeSlack(`${input.head} ${input.text}`), 2990) + (mentions ? `\n${input.mentions!.join(' ')}` : ''),
    blocks: [...splitText(`*${head}* ${preview}`).map(section), context, ...(mentions ? [{ type: 'section', text: { type: 'mrkdwn', text: mentions } }] : [])],
  };
  const sections = rest ? splitText(rest).map(section) : [];
  const replies: { text: string; blocks: unknown[] }[] = [];
  for (let i = 0; i < sections.length; i += SECTIONS_PER_REPLY) replies.push({ text: '', blocks: sections.slice(i, i + SECTIONS_PER_REPLY) });
  replies.forEach((reply, i) => { reply.text = `${head} (continued ${i + 1}/${replies.length})`; });
  return [first, ...replies];
}

/** One message IMS posts, and how to recognise it in Slack when the answer to posting it was lost. */
export interface PostSpec {
  channel: string;
  /** A reply in this thread. */
  thread_ts?: string;
  text: string;
  blocks?: unknown[];
  /** Names the post: an `event_type` and a payload unique to it. An earlier attempt's post is found by it. */
  metadata: { event_type: string; event_payload: Record<string, string | number> };
  /** Plain text posted instead when Slack refuses the form (`invalid_blocks`, `msg_too_long`…). */
  fallback?: string;
  /** The post cannot be older than this ts (the alert's, or when the report was made): where the search starts. */
  oldest?: string;
  /** Look for the post before the first attempt (a message recovered after a crash). */
  lookFirst?: boolean;
  /** What the post is for, in log lines (`incident (rule 3) of C123:1700000000.000100`). */
  what: string;
}

/** The text of Block Kit blocks, for a plain-text post. */
function plainText(blocks: unknown[]): string {
  const text = blocks.map((b) => (b as { text?: { text?: string } }).text?.text).filter(Boolean).join('\n');
  return text.length > 3900 ? `${text.slice(0, 3900)}…` : text;
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
}

/** A running IMS: Socket Mode in, Slack Web API out, SQLite state. */
export class Ims {
  config: CompiledConfig;
  /** IMS's own calls: reads and repeatable writes retried by `RuntimeOptions.retryConfig`; 429s rejected to the channel queues. */
  readonly slack: WebClient;
  /** IMS's posts: never retried by the client; `post()` retries them, looking first for a post whose answer was lost. */
  private readonly poster: WebClient;
  /** The client plugins get: it waits out its own 429s (a plugin's throttling never pauses alerts) and never repeats a post blindly. */
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
  /** What every Web API client IMS builds shares: the API URL, the keep-alive transport, the request time-out. */
  private readonly webOptions: { slackApiUrl: string; logger: never; fetch: typeof fetch; timeout: number };
  /** Real names by user (and bot) ID, for reposts, reports and plugins: looked up once per ID. */
  readonly userNames = new Map<string, string>();
  /** Channel names (without `#`) by ID, for plugins: looked up once per channel. */
  readonly channelNames = new Map<string, string>();
  /** The one name service IMS and every plugin share (`HookContext.names`). */
  readonly names: NameService = {
    user: (id) => /^B[A-Z0-9]{2,}$/.test(id) ? botName(this, id) : realName(this, id),
    channel: (id) => cachedName(this, id, async () => {
      const info = await slackCall(() => this.slack.conversations.info({ channel: id }), this.log, 'conversations.info');
      return (info.channel as { name?: string } | undefined)?.name;
    }, this.channelNames),
  };
  private watcher?: FSWatcher;
  private connections = 0;
  /**
   * Since when a channel without a cursor is read at the next catch-up: the instant before the socket first
   * connected, or when it last dropped. Alerts that arrive after that but are lost in transit (or acked and
   * not yet claimed when IMS is killed) are still found in history; what was said before is not an alert to IMS.
   */
  private listeningSince?: { ts: string; after: 'start' | 'disconnect' };
  private stopping = false;
  private stopped?: Promise<void>;
  /** Aborted when `stop()` begins: start-up gives up at once. */
  private readonly stopRequested = new AbortController();
  /** Aborted when stopping gives up on in-flight work (or is done): no retry waits any longer. */
  private readonly halt = new AbortController();
  /** While start-up is reaching Slack: the time it gives up (the clients retry until then, logging each retry). */
  private startDeadline?: number;
  private readonly now: () => number;

  constructor(config: CompiledConfig, readonly options: RuntimeOptions) {
    this.config = config;
    this.now = options.now ?? Date.now;
    this.log = (options.log as Ims['log']) ?? createLogger({ secrets: [options.appToken, options.botToken] });
    if (!('child' in this.log)) (this.log as Ims['log']).child = () => this.log;
    const slackApiUrl = options.apiUrl ?? process.env.SLACK_API_URL ?? 'https://slack.com/api/';
    this.sdkLogger = { getLevel: () => 'error', setLevel() {}, setName() {}, debug() {}, info() {}, warn() {}, error: (...m: unknown[]) => this.log.debug(`slack sdk: ${m.join(' ')}`) };
    const web = { slackApiUrl, logger: this.sdkLogger as never, fetch: slackFetch as typeof fetch, timeout: options.requestTimeoutMs ?? 30_000 };
    this.webOptions = web;
    const retry = { ...DEFAULT_RETRY, ...options.retryConfig };
    const policy = { retry, log: this.log, name: 'Slack', signal: this.halt.signal, deadline: () => this.startDeadline, onAuthFailure: (method: string, code: string) => this.botTokenRefused(method, code) };
    this.slack = new SlackClient(options.botToken, web, policy);
    this.poster = new SlackClient(options.botToken, web, { ...policy, retry: { ...retry, retries: 0 } });
    this.pluginSlack = new SlackClient(options.botToken, web, { retry, log: this.log, name: 'plugins', signal: this.halt.signal, waitOutThrottling: true });
    this.queues = new ChannelQueues(this.log);
    this.queues.onThrottled = () => { if (this.draining) setImmediate(() => this.drainReceived()); };
    this.state = new State(config.state.path);
    this.pluginChannels = this.state.ownedChannels();
  }

  /** Channels plugins made for themselves (war rooms): never alert sources. */
  private readonly pluginChannels: Set<string>;

  /** Connect, resolve names, finish interrupted work, catch up, and start schedules and plugins. `stop()` ends it at any point. */
  async start(options: { socket?: boolean } = {}): Promise<void> {
    if (this.stopping) throw new StoppedError();
    this.log.info(`connecting to Slack at ${this.slack.slackApiUrl}`, { pid: process.pid });
    const auth = await this.reachSlack('auth.test', () => this.slack.auth.test());
    this.self = { userId: String(auth.user_id ?? ''), botId: String(auth.bot_id ?? ''), teamUrl: String(auth.url ?? 'https://slack.com/') };
    this.config = await this.untilStopped(this.resolveNames(this.config));
    this.log.info(`connected as ${auth.user ?? this.self.userId}; config ${configName(this.config)}`, { rules: this.config.rules.length, state: this.config.state.path });
    // Before any event: recovered and caught-up messages run hooks too.
    await this.untilStopped(this.hooks('onStart', () => ({})));
    if (options.socket === false) return;
    await this.untilStopped(this.track(this.recoverPending()));
    this.holdForCatchUp();
    this.listeningSince = { ts: (this.now() / 1000).toFixed(6), after: 'start' };
    const start = this.connectSocket();
    await this.reachSlack('Socket Mode', start);
    await this.untilStopped(this.track(this.catchUp()));
    if (this.stopping) throw new StoppedError();
    this.startSchedules();
    if (this.options.autoReload !== false && this.options.configPath) this.watchConfig(this.options.configPath);
  }

  /** `work`, or a `StoppedError` as soon as `stop()` begins (the work itself is left to finish or fail unobserved). */
  private untilStopped<T>(work: Promise<T>): Promise<T> {
    const signal = this.stopRequested.signal;
    if (signal.aborted) { work.catch(() => undefined); return Promise.reject(new StoppedError()); }
    return new Promise<T>((resolve, reject) => {
      const onStop = () => reject(new StoppedError());
      signal.addEventListener('abort', onStop, { once: true });
      work.then((value) => { signal.removeEventListener('abort', onStop); resolve(value); },
        (error) => { signal.removeEventListener('abort', onStop); reject(error); });
    });
  }

  /**
   * A start-up step that must reach Slack: its calls are retried until `startTimeoutMs` (each retry logged
   * with its reason), then it fails with one clear message. A refused token fails it at once, naming the token.
   */
  private async reachSlack<T>(what: 'auth.test' | 'Socket Mode', step: () => Promise<T>): Promise<T> {
    const timeoutMs = this.options.startTimeoutMs ?? 60_000;
    const where = this.slack.slackApiUrl;
    const giveUp = (reason: string) => new SlackUnreachableError(`cannot reach Slack at ${where}: ${what === 'auth.test' ? 'auth.test' : 'the Socket Mode connection'} ${reason}, `
      + `gave up after ${Math.round(timeoutMs / 1000)} s; check the network (DNS, proxy, firewall), SLACK_API_URL and https://slack-status.com, then start IMS again`);
    this.startDeadline = Date.now() + timeoutMs;
    try {
      // Whatever a step waits for without failing (a hello that never comes), it does not wait past the deadline.
      return await this.untilStopped(withTimeout(() => step(), timeoutMs + 500, what));
    } catch (error) {
      if (error instanceof TimeoutError) throw giveUp('did not complete');
      if (error instanceof StoppedError || error instanceof SlackTokenError || error instanceof SlackUnreachableError || error instanceof ConfigError) throw error;
      const failure = classifySlackFailure(error);
      if (failure.kind === 'auth') throw new SlackTokenError(what === 'auth.test' ? 'SLACK_BOT_TOKEN' : 'SLACK_APP_TOKEN', what === 'auth.test' ? what : 'apps.connections.open', failure.code);
      if (failure.kind === 'permanent') throw new Error(`${what} at ${where} failed: ${failure.reason}`, { cause: error });
      throw giveUp(`failed (${failure.reason})`);
    } finally {
      this.startDeadline = undefined;
    }
  }

  /**
   * Build the Socket Mode client and return its start. socket-mode 3.1 is used with three repairs: IMS gets
   * the connection URL itself (`connectionUrl`), a failed reconnect is reported instead of left as an
   * unhandled rejection, and frames go through `guardFrames`.
   */
  private connectSocket(): () => Promise<unknown> {
    const socket = new SocketModeClient({
      appToken: this.options.appToken, clientPingTimeout: this.options.clientPingTimeoutMs,
      // Its own WebClient is replaced by `connectionUrl`; it must not retry on its own either.
      clientOptions: { ...this.webOptions, retryConfig: { retries: 0 } },
      logger: this.sdkLogger as never,
    });
    this.socket = socket;
    const internals = socket as unknown as SocketInternals;
    const appApi = new SlackClient(this.options.appToken, this.webOptions, { retry: { retries: 0 }, log: this.log, name: 'Socket Mode' });
    internals.retrieveWSSURL = () => this.connectionUrl(socket, appApi);
    const sdkStart = socket.start.bind(socket);
    // The SDK reconnects through `this.start()` and leaves its rejection unhandled, which would end the process.
    internals.start = () => sdkStart().catch((error: unknown) => {
      if (!(error instanceof SlackTokenError) && !(error instanceof StoppedError)) this.log.debug(`Socket Mode reconnect attempt failed: ${errorText(error)}`);
      return undefined;
    });
    this.guardFrames(socket);
    socket.on('slack_event', (args: { ack: () => Promise<void>; type: string; body: { event_id?: string; event?: Record<string, unknown> } }) => this.onEnvelope(args));
    socket.on('connected', () => {
      this.connections++;
      this.log.info(this.connections === 1 ? 'Socket Mode connected' : 'Socket Mode reconnected; catching up');
      if (this.connections > 1) this.track(this.catchUp());
    });
    // 'close' is the socket itself going away (the SDK then reconnects without a 'disconnected'). A silent link is
    // only noticed when pings go unanswered, so what came up to two ping timeouts (and a second) earlier may be lost too.
    socket.on('close', () => {
      const noticedLate = 2 * (this.options.clientPingTimeoutMs ?? 5000) + 1000;
      this.listeningSince ??= { ts: ((this.now() - noticedLate) / 1000).toFixed(6), after: 'disconnect' };
    });
    socket.on('disconnected', () => { if (!this.stopping) this.log.warn('Socket Mode disconnected; reconnecting'); });
    return sdkStart;
  }

  /**
   * The Socket Mode URL from apps.connections.open, in place of the SDK's (which retries for hours without a
   * word and whose failures crash a reconnect): retried with backoff, each retry logged with its reason; at
   * start-up until `startTimeoutMs`, afterwards until it works. A refused app token is fatal. A stop lets a
   * wait under way finish with its one attempt (what that connects, `stop()` closes) and starts no other.
   */
  private async connectionUrl(socket: SocketModeClient, api: WebClient): Promise<string> {
    const internals = socket as unknown as SocketInternals;
    for (let attempt = 1; ; attempt++) {
      const begunStopping = this.stopping;
      try {
        const answer = await api.apps.connections.open({});
        if (!answer.url) throw new Error('apps.connections.open answered without a URL');
        internals.numOfConsecutiveReconnectionFailures = 0;
        internals.connectionResponse = answer;
        socket.emit('authenticated', answer);
        return answer.url;
      } catch (error) {
        const failure = classifySlackFailure(error);
        if (failure.kind === 'auth' || failure.code === 'missing_scope') {
          const fatal = new SlackTokenError('SLACK_APP_TOKEN', 'apps.connections.open', failure.code);
          // At start-up, start() reports it; a reconnect has nobody waiting for it.
          if (this.startDeadline === undefined) this.fatal(fatal);
          throw fatal;
        }
        if (begunStopping) throw new StoppedError();
        let delay = failure.retryAfterMs ?? retryDelay({ retries: Infinity, minTimeout: 1000, maxTimeout: 30_000 }, attempt);
        const deadline = this.startDeadline;
        if (deadline !== undefined) {
          if (deadline - Date.now() <= 100) throw error;
          delay = Math.min(delay, deadline - Date.now());
        }
        this.log.warn(`Socket Mode: apps.connections.open at ${api.slackApiUrl} failed (${failure.reason}); retry ${attempt} in ${(delay / 1000).toFixed(1)} s`);
        await pause(delay);
      }
    }
  }

  /**
   * socket-mode 3.1 reads `payload.event.type` of an `events_api` frame before anyone can look, so a frame
   * without an event (or without a payload) rejects inside its listener: an unhandled rejection. Frames go to
   * it guarded; one it cannot take is logged, acked (so Slack does not send it again) and skipped.
   */
  private guardFrames(socket: SocketModeClient): void {
    const internals = socket as unknown as SocketInternals;
    const [sdkOnFrame] = socket.listeners('ws_message') as ((data: string | ArrayBuffer, isBinary: boolean) => Promise<void>)[];
    if (!sdkOnFrame) return;
    socket.removeAllListeners('ws_message');
    socket.on('ws_message', (data: string | ArrayBuffer, isBinary: boolean) => {
      const skip = (error: unknown) => {
        const text = typeof data === 'string' ? data : data instanceof ArrayBuffer ? Buffer.from(data).toString('utf8') : String(JSON.stringify(data));
        let envelopeId: unknown;
        try { envelopeId = (JSON.parse(text) as { envelope_id?: unknown } | null)?.envelope_id; } catch { /* not JSON: nothing to ack */ }
        this.log.warn(`malformed Socket Mode frame skipped (${errorText(error)}): ${text.slice(0, 300)}`);
        if (typeof envelopeId === 'string' && envelopeId) internals.send(envelopeId).catch(() => undefined);
      };
      try {
        sdkOnFrame(data, isBinary).catch(skip);
      } catch (error) {
        skip(error);
      }
    });
  }

  /** Slack refused a token while running: IMS cannot go on. */
  private fatal(error: SlackTokenError): void {
    if (this.fatalReported) return;
    this.fatalReported = true;
    if (this.options.onFatal) this.options.onFatal(error);
    else {
      this.log.error(error.message);
      void this.stop();
    }
  }

  private fatalReported = false;
  private checkingToken = false;

  /** A call was refused for its token: if auth.test agrees (revoked, not one call's quirk), IMS cannot go on. */
  private botTokenRefused(method: string, code: string): void {
    if (this.stopping) return;
    if (method === 'auth.test') {
      // At start-up, start() reports it.
      if (this.startDeadline === undefined) this.fatal(new SlackTokenError('SLACK_BOT_TOKEN', method, code));
      return;
    }
    if (this.checkingToken) return;
    this.checkingToken = true;
    void this.slack.auth.test().then(
      () => this.log.error(`${method}: Slack refused the bot token (${code}), though auth.test accepts it`),
      () => undefined, // a refusal is reported by the auth.test call itself
    ).finally(() => { this.checkingToken = false; });
  }

  /**
   * Stop taking events, finish in-flight work, run `onStop`, close the DB; within `stopTimeoutMs`: what is
   * not finished by then stays pending and is finished at the next start. Ends a `start()` under way.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutDown();
    return this.stopped;
  }

  private async shutDown(): Promise<void> {
    this.stopping = true;
    this.stopRequested.abort();
    const budgetMs = this.options.stopTimeoutMs ?? 6000;
    const deadline = Date.now() + budgetMs;
    this.log.info('stopping: finishing in-flight work');
    this.watcher?.close();
    for (const timer of [...this.timers, ...this.scheduleTimers]) 'stop' in timer ? timer.stop() : clearInterval(timer);
    if (this.socket) {
      const socket = this.socket;
      // socket-mode 3.1 rejects with `undefined` when disconnect() races a reconnect waiting for hello.
      await settleWithin(socket.disconnect().catch(() => undefined), Math.min(deadline, Date.now() + 2000));
      // Only ours: the client's own listeners ('close', 'ws_message', 'error') must stay. A reconnect that was already
      // fetching its URL when we stopped still connects afterwards (socket-mode 3.1 does not check): close it again.
      for (const event of ['slack_event', 'connected', 'disconnected']) socket.removeAllListeners(event);
      socket.on('connected', () => void socket.disconnect().catch(() => undefined));
    }
    if (!(await settleWithin(this.idle().then(() => this.flushOutbox()), deadline))) {
      this.halt.abort();
      this.log.warn(`stopping: in-flight work did not finish within ${Math.round(budgetMs / 1000)} s; `
        + `${this.state.pendingMessages().length} message(s) left pending are finished at the next start`);
    }
    await settleWithin(this.hooks('onStop', () => ({})), Math.max(deadline, Date.now() + 1000));
    this.halt.abort();
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
    // Work a stop cut short fails on the closed state: expected then, and it stays pending for the next start.
    void promise.catch((error) => this.log[this.stopping && !this.state.isOpen ? 'debug' : 'error'](`unexpected failure: ${errorText(error)}`))
      .finally(() => this.inflight.delete(promise));
    return promise;
  }

  // ─── Events ───────────────────────────────────────────────────────────────────────────────────

  private onEnvelope({ ack, type, body }: { ack: () => Promise<void>; type: string; body: { event_id?: string; event?: Record<string, unknown> } }): void {
    if (this.stopping) return;
    // Ack first: Slack redelivers anything not acked within 3 s, and the work below may take longer.
    ack().catch((error) => this.log.warn(`ack failed: ${errorText(error)}`));
    if (type !== 'events_api' || !body?.event || typeof body.event !== 'object') return;
    // Slack echoes every post IMS makes back to it: nothing to do, not even a de-duplication write.
    if (body.event.type === 'message' && ((this.self.botId && body.event.bot_id === this.self.botId) || body.event.subtype === 'message_changed')) {
      if (body.event.bot_id !== this.self.botId) this.log.debug(decisionLine({ action: 'ignore', reason: 'hidden subtype' }, body.event as SlackMessageEvent), { channel: body.event.channel, ts: body.event.ts });
      return;
    }
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
    // A stop that gave up on in-flight work has closed the DB: what is left was acked and is caught up at the next start.
    if (!this.state.isOpen) return;
    const deadline = performance.now() + budgetMs;
    // One commit for the slice: de-duplication records and claims of its messages land together (the cursor
    // with them, so a crash before the commit is caught up from history, never lost).
    this.state.withinOneCommit(() => {
      while (this.receivedHead < this.received.length && performance.now() < deadline && (budgetMs === Infinity || this.admitting())) {
        const { eventId, event } = this.received[this.receivedHead];
        this.received[this.receivedHead++] = undefined as never;
        if (eventId && !this.state.rememberEvent(eventId, this.now())) {
          this.log.debug(`duplicate delivery ignored: this ${String(event.type)} event_id was seen before`, { event_id: eventId, channel: event.channel, ts: event.ts });
          continue;
        }
        this.messagesInFlight++;
        this.track(this.dispatch(event).finally(() => {
          this.messagesInFlight--;
          if (this.draining && this.messagesInFlight === MAX_MESSAGES_IN_FLIGHT - 1) setImmediate(() => this.drainReceived());
        }));
      }
    });
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
      // After a stop that gave up waiting, the DB is closed under the work still running: it is finished at the next start.
      this.log[this.state.isOpen ? 'error' : 'debug'](`failed to handle a ${String(event.type)} event: ${errorText(error)}`, { channel: event.channel, ts: event.ts });
    }
  }

  /** The pipeline: decide, claim (once), act, record, then run the plugins. */
  async processMessage(event: SlackMessageEvent, recovering = false, fromCatchUp = false): Promise<void> {
    const config = this.config;
    const where = { channel: event.channel, ts: event.ts, poster: event.bot_id || event.user };
    if (this.pluginChannels.has(event.channel)) { this.log.debug('ignored message (a channel a plugin made for itself, e.g. a war room)', where); return; }
    const held = !recovering && !fromCatchUp ? this.catchingUp.get(event.channel) : undefined;
    if (held) {
      // Its channel's history is being read: it goes after the older messages, in order.
      this.log.debug('message held until its channel\'s missed history is read', where);
      held.push(event);
      return;
    }
    const { decision, message } = decide(config, event, { self: this.self, log: this.log });
    if (decision.action === 'ignore') {
      if (decision.reason === 'own channel') this.noteThreadReply(event);
      else if (decision.reason !== 'hidden subtype' && decision.reason !== 'own post' && this.mayAdvance(event.channel)) this.state.advanceCursor(event.channel, event.ts);
      this.log.debug(decisionLine(decision, event), where);
      return;
    }
    const key = `${event.channel}:${event.ts}`;
    if (this.processing.has(key)) { this.log.debug('ignored message (duplicate: the same channel and ts is being handled)', where); return; }
    const claim = this.state.claimMessage(event.channel, event.ts, event, this.now(), this.mayAdvance(event.channel));
    if (claim === 'done' || claim === 'failed' || (claim === 'pending' && !recovering)) {
      this.log.debug(`ignored message (duplicate: the same channel and ts was ${claim === 'pending' ? 'taken and is retried' : 'handled before'})`, where);
      return;
    }
    this.log.debug(decisionLine(decision, event), where);
    this.processing.add(key);
    try {
      void this.hooks('onMessage', () => ({ message: message!, decision, match: 'match' in decision ? decision.match : undefined }));
      await this.act(config, decision, message!, recovering);
    } catch (error) {
      if (!this.failedForGood(message!, decision, error)) throw error;
    } finally {
      this.processing.delete(key);
    }
  }

  /**
   * A message Slack refuses for good (whatever the retry: a channel that is gone, a bot not in it, a reaction
   * name that does not exist) is recorded as failed and logged with the alert at error level, never retried
   * every minute. False for failures that may pass: the message stays pending and is retried.
   */
  private failedForGood(message: AlertMessage, decision: Exclude<Decision, { action: 'ignore' }>, error: unknown): boolean {
    const failure = classifySlackFailure(error);
    if (failure.kind !== 'permanent' || !this.state.isOpen) return false;
    this.state.failMessage(message.channel, message.ts, this.now());
    const rule = 'match' in decision ? decision.match?.rule : undefined;
    const destination = decision.action === 'incident' || decision.action === 'reverse repost' ? decision.channel : message.channel;
    const method = (error as { method?: string }).method ?? (decision.action === 'incident' || decision.action === 'reverse repost' ? 'chat.postMessage' : 'reactions.add');
    this.log.error(`${decision.action === 'incident' ? 'incident' : decision.action} of ${message.channel}:${message.ts} failed for good: Slack refused ${method} to ${destination} (${failure.reason}); recorded as failed, not retried`, {
      source: `${message.channel}:${message.ts}`, ...(rule ? { rule: rule.number, head: rule.head } : {}), destination, error: failure.code,
      text: message.text.replace(/\s+/g, ' ').slice(0, 200),
    });
    return true;
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
        const { incident, opened } = await this.openIncident(config, message, {
          channel: decision.channel, head: rule.head, label: rule.incident, ruleNumber: rule.number, hotline: decision.hotline, mentions: members.map(mentionOf),
          groups: capturedGroups(decision.match),
        }, recovering);
        // Opened before a stop, its page and hooks went then (hooks are at most once); this run only finished its thread.
        if (opened === 'before') return;
        this.log.info(`incident #${incident.id} ${rule.head} → ${decision.channel}${decision.hotline ? ` paging ${decision.hotline}` : ''}`, { rule: rule.number, source: `${message.channel}:${message.ts}` });
        if (decision.hotline) this.state.addIncidentEvent({ incidentId: incident.id, kind: 'hotline', detail: decision.hotline, at: incident.createdAt });
        // Each plugin's onHotline follows its own onMatch only: one plugin's hung onMatch must not delay another's page.
        const paged = { mentions: members.map(mentionOf), post: { channel: incident.incidentChannel, ts: incident.incidentTs } };
        void this.hooks(decision.hotline ? ['onMatch', 'onHotline'] : ['onMatch'], (hook) => ({ message, decision, match: decision.match, incident, ...(hook === 'onHotline' ? paged : {}) }));
        return;
      }
      case 'reverse repost': {
        const { incident, opened } = await this.openIncident(config, message, { channel: decision.channel, head: decision.header, label: 'DEFAULT', ruleNumber: 0 }, recovering);
        if (opened === 'before') return;
        this.log.info(`reverse repost #${incident.id} → ${decision.channel}`, { source: `${message.channel}:${message.ts}` });
        void this.hooks('onReverse', () => ({ message, decision, repost: { channel: incident.incidentChannel, ts: incident.incidentTs } }));
        return;
      }
    }
  }

  /** Post the incident (once: a recovered message first looks for its earlier post) and record it. */
  private async openIncident(config: CompiledConfig, message: AlertMessage,
    target: { channel: string; head: string; label: string; ruleNumber: number; hotline?: string; mentions?: string[]; groups?: Record<string, string> },
    recovering: boolean): Promise<{ incident: Incident; opened: 'now' | 'before' }> {
    const permalink = this.permalink(message.channel, message.ts);
    const source = { source_channel: message.channel, source_ts: message.ts };
    const render = async () => incidentMessages({
      head: target.head, text: message.text, pieces: alertPieces(message.raw, config.attachmentText), sourceChannel: message.channel, poster: await posterName(this, message),
      at: formatDate(tsToMs(message.ts), config.timezone), permalink, mentions: target.mentions, hotline: target.hotline,
    });
    const what = `${target.ruleNumber === 0 ? 'reverse repost' : `incident (rule ${target.ruleNumber})`} of ${message.channel}:${message.ts}`;
    const partsOf = (messages: { text: string; blocks: unknown[] }[], thread: string): PostSpec[] => messages.map((more, i) => ({
      channel: target.channel, thread_ts: thread, text: more.text, blocks: more.blocks, metadata: { event_type: 'ims_incident_part', event_payload: { ...source, part: i + 2 } },
      fallback: plainText(more.blocks) || more.text, lookFirst: recovering, what: `${what} (part ${i + 2} of ${messages.length + 1})`,
    }));
    // A recovered message may have its incident already: its post was made and recorded, and only the rest of a
    // long alert was still to go into the thread (each part is looked for by its metadata before it is posted).
    const existing = recovering ? this.state.incidentBySource(message.channel, message.ts) : undefined;
    if (existing) {
      const [, ...rest] = await render();
      for (const part of partsOf(rest, existing.incidentTs)) await this.post(part);
      this.state.finishMessage(message.channel, message.ts);
      return { incident: existing, opened: 'before' };
    }
    const [first, ...rest] = await render();
    // A recovered message may have been posted before the crash: look first (its post names its source).
    const ts = await this.post({
      channel: target.channel, text: first.text, blocks: first.blocks, metadata: { event_type: 'ims_incident', event_payload: source },
      fallback: `${first.text}\n<${permalink}|original alert>`, oldest: message.ts, lookFirst: recovering, what,
    });
    // The message is finished only when the whole alert is in Slack: a stop or crash before the thread parts
    // are posted leaves it pending, and the next start posts what is missing.
    const incident = this.state.addIncident({
      sourceChannel: message.channel, sourceTs: message.ts, incidentChannel: target.channel, incidentTs: ts, ruleNumber: target.ruleNumber,
      head: target.head, label: target.label, hotline: target.hotline, text: message.text, poster: message.poster, createdAt: this.now(), permalink,
      groups: target.groups, finishesMessage: rest.length === 0,
    });
    if (rest.length) {
      // The page went out with the first post: the thread never holds it back (nor the plugins' hooks).
      try {
        for (const part of partsOf(rest, ts)) await this.post(part);
        this.state.finishMessage(message.channel, message.ts);
      } catch (error) {
        const forGood = classifySlackFailure(error).kind === 'permanent';
        if (forGood && this.state.isOpen) this.state.finishMessage(message.channel, message.ts);
        this.log.error(`${what}: the rest of the alert could not be posted in the thread (${errorText(error)}); ${forGood ? 'Slack refuses it for good: given up' : 'it stays pending and is retried'}`,
          { source: `${message.channel}:${message.ts}`, destination: target.channel, thread: ts });
      }
    }
    return { incident, opened: 'now' };
  }

  // ─── Posting ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Post one message once, in its channel's queue. The post carries `metadata` naming what it is for: when an
   * attempt's outcome is unknown (the answer was lost after Slack made it), the channel or thread is searched
   * for that metadata before trying again. A post Slack refuses for its form (`invalid_blocks`,
   * `msg_too_long`…) goes again as its plain-text `fallback`; one refused for good (`channel_not_found`,
   * `not_in_channel`, `is_archived`…) throws at once, stamped with its `slackFailure`, and does not hold the
   * queue. Other failures are retried within `retryConfig`, then thrown.
   */
  post(spec: PostSpec): Promise<string> {
    return this.queues.run(spec.channel, 'chat.postMessage', () => this.postAttempts(spec));
  }

  private async postAttempts(spec: PostSpec): Promise<string> {
    const retry = { ...DEFAULT_RETRY, ...this.options.retryConfig };
    const started = Date.now();
    let plain = false;
    let lookFirst = !!spec.lookFirst;
    for (let attempt = 1; ; attempt++) {
      try {
        if (lookFirst) {
          const earlier = await this.findPost(spec);
          lookFirst = false;
          if (earlier) {
            this.log.info(`${spec.what}: already posted (${earlier}), not posting it again`, { channel: spec.channel });
            return earlier;
          }
        }
        const base = { channel: spec.channel, thread_ts: spec.thread_ts, unfurl_links: false, unfurl_media: false, metadata: spec.metadata };
        const args = (plain ? { ...base, text: spec.fallback } : { ...base, text: spec.text, blocks: spec.blocks }) as Parameters<WebClient['chat']['postMessage']>[0];
        const answer = await slackCall(() => this.poster.chat.postMessage(args), this.log, `chat.postMessage in ${spec.channel}`, this.queues);
        return String(answer.ts);
      } catch (error) {
        const failure = classifySlackFailure(error);
        if (failure.kind === 'permanent' && !plain && spec.fallback && CONTENT_ERRORS.has(failure.code)) {
          this.log.warn(`${spec.what}: Slack refused the post (${failure.reason}); posting it as plain text`, { channel: spec.channel });
          plain = true;
          continue;
        }
        if (failure.kind === 'permanent' || failure.kind === 'auth') throw error;
        // The answer was lost: the post may be there. The next attempt looks before it posts.
        if (failure.kind === 'unknown') lookFirst = true;
        const delay = retryDelay(retry, attempt);
        if (attempt > retry.retries || Date.now() + delay - started > retry.maxRetryTime || this.halt.signal.aborted) throw error;
        this.log.warn(`${spec.what}: chat.postMessage to ${spec.channel} failed (${failure.reason}); ${lookFirst ? 'looking for it, then ' : ''}retry ${attempt} of ${retry.retries} in ${(delay / 1000).toFixed(1)} s`);
        if (!(await pause(delay, this.halt.signal))) throw error;
      }
    }
  }

  /**
   * The post `spec` describes, if an earlier attempt made it: searched by its metadata in its thread or in the
   * channel's history since `spec.oldest`. When Slack cannot be read for good, undefined: a page twice is
   * better than none.
   */
  private async findPost(spec: PostSpec): Promise<string | undefined> {
    const wanted = spec.metadata;
    const same = (m: { metadata?: { event_type?: string; event_payload?: Record<string, unknown> } }) => m.metadata?.event_type === wanted.event_type
      && Object.entries(wanted.event_payload).every(([key, value]) => String(m.metadata?.event_payload?.[key]) === String(value));
    type Posted = { ts: string; metadata?: { event_type?: string; event_payload?: Record<string, unknown> } };
    const messages = spec.thread_ts
      ? listAll<Posted>(this.slack, this.log, 'conversations.replies', { channel: spec.channel, ts: spec.thread_ts, include_all_metadata: true, limit: 200 }, 'messages')
      : listAll<Posted>(this.slack, this.log, 'conversations.history', { channel: spec.channel, oldest: spec.oldest, include_all_metadata: true, limit: 200 }, 'messages');
    try {
      for await (const m of messages) if (same(m)) return m.ts;
    } catch (error) {
      if (classifySlackFailure(error).kind !== 'permanent') throw error;
      this.log.warn(`${spec.what}: cannot look in ${spec.channel} for an earlier post (${errorText(error)}); posting it`);
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
    const since = this.listeningSince ?? { ts: nowTs, after: 'start' };
    this.listeningSince = undefined;
    try {
      const members = new Set<string>();
      for await (const c of listAll<{ id: string; is_member?: boolean }>(this.slack, this.log, 'conversations.list', { types: 'public_channel,private_channel', exclude_archived: true, limit: 1000 }, 'channels')) {
        if (!c.is_member) continue;
        members.add(c.id);
        // A channel seen for the first time starts when IMS began listening: what was said before is not an alert to
        // it, but what came after and was lost on the way (a dropped socket, a kill before the claim) is read back —
        // now if the socket dropped, else at the next catch-up (right after start only that instant can have been missed).
        if (!this.state.cursor(c.id) && !this.config.ownChannels.has(c.id) && !this.pluginChannels.has(c.id)) {
          this.state.advanceCursor(c.id, since.ts);
          if (since.after === 'disconnect') {
            if (!this.catchingUp.has(c.id)) this.catchingUp.set(c.id, []);
            channels.add(c.id);
          }
        }
      }
      // Channels the bot has left (or that were archived) have nothing to catch up: let them go.
      for (const channel of channels) {
        if (members.has(channel)) continue;
        channels.delete(channel);
        this.cursorFrozen.delete(channel);
        this.releaseHeld(channel);
      }
    } catch (error) {
      this.listeningSince ??= since;
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

  /**
   * Check the config against the workspace and resolve names to IDs: every destination (incident, DEFAULT,
   * report and reminder channels) must be a channel the bot can see, by ID or by name; user and group names
   * become IDs. With `--no-id-lookup` names stay as written (the legacy meaning), but IDs are still checked.
   * Problems stop start-up (a reload keeps the last good config), each at its place in the config
   * (`IMS.ini:7: …`). A channel that exists but that the bot is not a member of (or that is archived), and
   * channels it cannot list at all (a missing scope), are warnings: posting can still work (`chat:write.public`),
   * and a failed post is logged with its alert.
   */
  async resolveNames(config: CompiledConfig): Promise<CompiledConfig> {
    const lookup = this.options.idLookup !== false;
    const needsUser = (ref: string) => !/^[UWBS][A-Z0-9]{6,}$/.test(ref) && !/^[@!]?(here|channel|everyone)$/i.test(ref);
    const place = (at: string) => placeOf(config.config, config.source, at);
    for (const warning of config.warnings) this.log.warn(warning);
    const problems: string[] = [];
    const channel = await this.channelChecker(config, lookup, place, problems);
    const incidents = new Map([...config.incidents].map(([label, i]) => [label, { ...i, channel: channel(i.channel, `incidents.${label}.channel`) }]));
    const reverseDefault = config.reverseDefault && { ...config.reverseDefault, channel: channel(config.reverseDefault.channel, 'reverseDefault.channel') };
    const reportChannel = config.report.channel && channel(config.report.channel, 'report.channel');
    const reminders = config.reminders.map((r, i) => ({ ...r, channel: channel(r.channel, `reminders[${i}].channel`) }));

    const userRefs = [...(config.posters ?? []), ...[...config.hotlines.values()].flat(), ...(config.report.onlyPosters ?? [])];
    const userIds = new Map<string, string>();
    if (!lookup) {
      const names = userRefs.filter(needsUser);
      if (names.length) this.log.warn(`--no-id-lookup: these are used as they are, but look like names, not IDs (mentions and filters on them will not work): ${[...new Set(names)].join(', ')}`);
    } else if (userRefs.some(needsUser)) {
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
    const user = (ref: string, at: string) => {
      if (!lookup || !needsUser(ref)) return ref;
      const id = userIds.get(ref) ?? userIds.get(ref.replace(/^@/, ''));
      if (!id) problems.push(`${place(at)}no user or user group named '${ref}'; check the spelling, or write the ID (U…/S…)`);
      return id ?? ref;
    };
    const hotlines = new Map([...config.hotlines].map(([label, members]) => [label, members.map((m) => user(m, `hotlines.${label}`))]));
    const posters = config.posters && new Set([...config.posters].map((p) => user(p, 'posters')));
    const onlyPosters = config.report.onlyPosters && new Set([...config.report.onlyPosters].map((p) => user(p, 'report.onlyPosters')));
    if (problems.length) throw new ConfigError(problems, config.source);
    const ownChannels = new Set([...incidents.values()].map((i) => i.channel).concat(reportChannel ?? [], reverseDefault?.channel ?? []));
    return { ...config, incidents, reverseDefault, reminders, hotlines, posters, ownChannels, report: { ...config.report, channel: reportChannel, onlyPosters } };
  }

  /**
   * The check for one channel reference (`ref` at config path `at`): returns the channel's ID, or `ref` as written
   * (a name under `--no-id-lookup`, or anything when the channels cannot be listed); problems go to `problems`.
   */
  private async channelChecker(config: CompiledConfig, lookup: boolean, place: (at: string) => string, problems: string[]): Promise<(ref: string, at: string) => string> {
    // Slack IDs are upper case with digits (C0123ABCD, G…, D…); channel names are lower case, so 'C0GONE' is an ID, whatever its length.
    const looksLikeId = (ref: string) => /^[CGD][A-Z0-9]*[0-9][A-Z0-9]*$/.test(ref);
    type Channel = { id: string; name: string; is_member?: boolean; is_archived?: boolean };
    const byId = new Map<string, Channel>();
    const byName = new Map<string, Channel>();
    // Slack's answers meaning the bot lacks a permission (a scope, an admin's restriction): asking again cannot help.
    const permissionErrors = new Set(['missing_scope', 'no_permission', 'access_denied', 'team_access_not_granted', 'ekm_access_denied', 'enterprise_is_restricted', 'restricted_action']);
    /** Why the channels could not be listed: a missing permission (fixed by a scope), or a failure that may pass. */
    let unlisted: { code: string; permission: boolean; attempts: number } | undefined;
    const retry = { ...DEFAULT_RETRY, ...this.options.retryConfig };
    for (let attempt = 1; ; attempt++) {
      try {
        byId.clear();
        byName.clear();
        for await (const c of listAll<Channel>(this.slack, this.log, 'conversations.list', { types: 'public_channel,private_channel', limit: 1000 }, 'channels')) {
          byId.set(c.id, c);
          byName.set(c.name, c);
        }
        unlisted = undefined;
        break;
      } catch (error) {
        const failure = classifySlackFailure(error);
        unlisted = { code: failure.code, permission: permissionErrors.has(failure.code), attempts: attempt };
        // A failure on the way (network, 5xx) was already retried by the client; Slack's own answers that may pass
        // (internal_error, service_unavailable) reach here and are retried within the same policy.
        const mayPass = (error as { code?: string }).code === 'slack_webapi_platform_error' && (failure.kind === 'unknown' || failure.kind === 'not done');
        if (!mayPass || attempt > retry.retries) break;
        const delay = retryDelay(retry, attempt);
        this.log.warn(`could not list the channels (${failure.code}); retry ${attempt} of ${retry.retries} in ${(delay / 1000).toFixed(1)} s`);
        if (!(await pause(delay, this.stopRequested.signal))) break;
      }
    }
    const refs = [...config.incidents.values()].map((i) => i.channel).concat(config.report.channel ?? [], config.reverseDefault?.channel ?? [], config.reminders.map((r) => r.channel));
    const names = refs.filter((ref) => !looksLikeId(ref.replace(/^#/, '')));
    // IDs are used unchecked rather than stopping IMS: a Slack hiccup at start-up must not stop alerting (nor a
    // restart loop), and a destination that is really gone still shows, as a failed post logged with its alert.
    if (unlisted !== undefined && (!lookup || !names.length)) {
      this.log.warn(unlisted.permission
        ? `could not list the channels (${unlisted.code}): the channels in the config are not checked; the bot needs the channels:read and groups:read scopes`
        : `could not list channels to check the config's destinations: ${unlisted.code}${unlisted.attempts > 1 ? ` (tried ${unlisted.attempts} times)` : ''}; ` +
          `going on without checking them: a channel that does not exist shows up as a failed post, logged with its alert`);
    }
    if (!lookup && names.length) {
      this.log.warn(`--no-id-lookup: these are used as they are, but look like names, not IDs (posting may work, watching and reports will not): ${[...new Set(names)].join(', ')}`);
    }
    const warned = new Set<string>();
    return (ref, at) => {
      const bare = ref.replace(/^#/, '');
      if (unlisted !== undefined) {
        if (lookup && !looksLikeId(bare)) {
          problems.push(unlisted.permission
            ? `${place(at)}cannot look up the channel named '${ref}': listing the channels failed (${unlisted.code}); give the bot the channels:read and groups:read scopes, or write the channel's ID (C…)`
            : `${place(at)}cannot look up the channel named '${ref}': could not list channels (${unlisted.code}${unlisted.attempts > 1 ? `, tried ${unlisted.attempts} times` : ''}); start IMS again when Slack answers, or write the channel's ID (C…)`);
        }
        return looksLikeId(bare) ? bare : ref;
      }
      // An ID the bot can see is accepted whatever its length; a name only when names are looked up.
      const found = byId.get(bare) ?? (lookup ? byName.get(bare) : undefined);
      if (!found) {
        if (looksLikeId(bare) && bare.startsWith('D')) return bare; // a direct message: not listed, not checkable
        if (looksLikeId(bare)) problems.push(`${place(at)}no channel with the ID '${bare}' is visible to the bot; check the ID (channel details, at the bottom), or invite the bot if the channel is private`);
        else if (lookup) problems.push(`${place(at)}no channel named '${ref}' is visible to the bot${didYouMean(bare, [...byName.keys()])}; invite the bot to it, or write its ID (C…)`);
        return lookup || looksLikeId(bare) ? bare : ref;
      }
      // It exists: posting may still work (or its failure is logged with the alert), so these are warnings.
      if (!warned.has(found.id) && (found.is_archived || !found.is_member)) {
        warned.add(found.id);
        this.log.warn(found.is_archived
          ? `${place(at)}#${found.name} (${found.id}) is archived: posts there fail with is_archived; unarchive it or name another channel`
          : `${place(at)}the bot is not a member of #${found.name} (${found.id}): posts there fail with not_in_channel and reports cannot read it; invite the bot (/invite in that channel)`);
      }
      return found.id;
    };
  }

  // ─── Hooks, schedules, reload ─────────────────────────────────────────────────────────────────

  /** Run a hook (or, per plugin, a sequence of hooks: `['onMatch', 'onHotline']`) of every plugin with a full context; see `runHooks`. */
  hooks<K extends HookName>(hooks: K | readonly K[], extra: (hook: K) => HookExtra<Parameters<NonNullable<Plugin[K]>>[0]>,
    plugins?: readonly Plugin[]): Promise<PluginHookErrors | undefined> {
    const config = this.config;
    const targets = plugins ?? config.plugins;
    const sequence: readonly K[] = typeof hooks === 'string' ? [hooks as K] : hooks as readonly K[];
    if (!targets.some((p) => sequence.some((hook) => typeof p[hook] === 'function'))) return Promise.resolve(undefined);
    const run = runHooks(targets, sequence, (plugin, signal, hook) => withDecision({ ...this.hookContext(plugin, signal), ...extra(hook) }) as never,
      { timeoutMs: config.hookTimeoutMs, log: this.log });
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
      compiled: this.config,
      names: this.names,
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
    const delivery = { key: item.key, group: item.group, payload: item.payload, attempts: item.attempts };
    try {
      await withTimeout((signal) => plugin.deliver!(delivery, this.hookContext(plugin, signal)), this.config.hookTimeoutMs, `plugin '${plugin.name}' delivery`);
      this.state.markDelivered(item.id, this.now());
    } catch (error) {
      const message = error instanceof TimeoutError ? error.message : failureReason(error);
      // Where the plugin failed (its stack's first frames), as for a hook.
      const { at, stack } = new PluginHookError(plugin.name, 'deliver', error).fields();
      if (isPermanentDeliveryError(error)) {
        this.state.markDead(item.id, message);
        this.log.error(`outbox: '${item.plugin}' gave up on ${item.key}: ${message}`, { at, stack });
        return;
      }
      const backoff = Math.min(5 * 60_000, 1000 * 2 ** Math.min(item.attempts, 16));
      const retryAt = this.now() + backoff / 2 + Math.random() * backoff / 2;
      this.state.markRetry(item.id, retryAt, message);
      const stats = this.state.outboxStats();
      this.log.warn(`outbox: '${item.plugin}' delivery of ${item.key} failed (attempt ${item.attempts + 1}): ${message}; retry in ${Math.round((retryAt - this.now()) / 1000)} s`,
        { depth: stats.depth, oldest_age_s: stats.oldestAt ? Math.round((this.now() - stats.oldestAt) / 1000) : 0, at, stack });
    }
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
  // A page that could not be made must not stay only in the log: the report names each alert, with its link.
  const failed = ims.state.failedMessages(windowStart);
  if (failed.length) {
    const shown = failed.slice(0, 20).map(({ channel, ts, event }) => {
      const text = messageText(event as SlackMessageEvent, config.attachmentText).replace(/\s+/g, ' ');
      return `• <${ims.permalink(channel, ts)}|${formatDate(tsToMs(ts), config.timezone)}> ${escapeSlack(text.length > 100 ? `${text.slice(0, 100)}…` : text)}`;
    });
    if (failed.length > shown.length) shown.push(`…and ${failed.length - shown.length} more (see the log)`);
    report.sections.push({ title: `Alerts IMS could not post (${failed.length}): Slack refused them for good; the log says why`, lines: shown });
  }
  const outbox = ims.state.outboxStats();
  if (outbox.depth) {
    report.sections.push({ title: 'Outbox', lines: [`${outbox.depth} deliveries waiting, oldest ${formatAge(now - (outbox.oldestAt ?? now))} old${outbox.lastError ? `; last error: ${outbox.lastError}` : ''}`] });
  }
  await ims.hooks('onReport', () => ({ report, addSection: (section: ReportSection) => { report.sections.push(section); } }));
  return report;
}

async function realName(ims: Ims, user: string): Promise<string> {
  return cachedName(ims, user, async () => {
    const info = await slackCall(() => ims.slack.users.info({ user }), ims.log, 'users.info');
    const u = info.user as { real_name?: string; name?: string; profile?: { real_name?: string; display_name?: string } } | undefined;
    return u?.profile?.real_name || u?.real_name || u?.profile?.display_name || u?.name;
  });
}

const NAME_LOOKUP_MS = 2000;

/** Name look-ups under way, so alerts of one poster arriving together ask Slack once. */
const lookingUp = new WeakMap<Ims, Map<string, Promise<string>>>();

/** A name from `cache` (`ims.userNames`), looked up once per ID; an ID Slack does not know stays the ID (a network failure is asked again next time). */
function cachedName(ims: Ims, id: string, lookUp: () => Promise<string | undefined>, cache: Map<string, string> = ims.userNames): Promise<string> {
  const known = cache.get(id);
  if (known !== undefined) return Promise.resolve(known);
  if (!lookingUp.has(ims)) lookingUp.set(ims, new Map());
  const pending = lookingUp.get(ims)!;
  if (!pending.has(id)) {
    pending.set(id, lookUp().then((name) => {
      cache.set(id, name?.trim() || id);
      return name?.trim() || id;
    }, (error: unknown) => {
      if ((error as { code?: string }).code === 'slack_webapi_platform_error') cache.set(id, id);
      ims.log.debug(`could not look up the name of ${id}: ${errorText(error)}`);
      return id;
    }).finally(() => pending.delete(id)));
  }
  // A slow Slack never holds up the page: the post names the ID, and the name is there for the next one.
  return withTimeout(() => pending.get(id)!, NAME_LOOKUP_MS, `the name of ${id}`).catch(() => id);
}

/**
 * Who posted an alert, as people know them: the name the integration posts under (`username`, as Slack
 * shows it, then `bot_profile.name`, else `bots.info`), or the person's name (`users.info`); the ID only
 * when Slack knows no name.
 */
export async function posterName(ims: Ims, message: AlertMessage): Promise<string> {
  const raw = message.raw as SlackMessageEvent & { username?: unknown; bot_profile?: { name?: unknown } };
  for (const given of [raw.username, raw.bot_profile?.name]) if (typeof given === 'string' && given.trim()) return given.trim();
  if (message.botId) return botName(ims, message.botId);
  return message.user ? realName(ims, message.user) : message.poster || 'unknown';
}

/** A bot's name (`bots.info`), cached with the user names. */
function botName(ims: Ims, bot: string): Promise<string> {
  return cachedName(ims, bot, async () => {
    const info = await slackCall(() => ims.slack.bots.info({ bot }), ims.log, 'bots.info');
    return (info.bot as { name?: string } | undefined)?.name;
  });
}

/**
 * What a caller of `Ims.hooks` gives besides the shared context: the hook's own fields, `decision` optional (the
 * pipeline always gives it; a caller replaying a hook may leave it to `withDecision`).
 */
type HookExtra<C> = Omit<C, keyof HookContext | 'decision'> & ('decision' extends keyof C ? { decision?: C['decision'] } : unknown);

/** A message hook's context with its `decision`: when the caller gave none, the one its match, incident or repost implies. */
function withDecision<C extends object>(ctx: C): C {
  const given = ctx as C & { message?: AlertMessage; decision?: Decision; match?: RuleMatch; incident?: Incident; repost?: { channel: string } };
  if (!given.message || given.decision) return ctx;
  const decision: Decision = given.repost ? { action: 'reverse repost', channel: given.repost.channel, header: given.incident?.head ?? '' }
    : given.match && given.incident ? { action: 'incident', match: given.match, channel: given.incident.incidentChannel, hotline: given.incident.hotline }
      : { action: 'seen', match: given.match, reaction: '' };
  return { ...ctx, decision };
}

/** The named groups a match captured, read once, as kept with its incident (a group that took no part is left out). */
function capturedGroups(match: RuleMatch): Record<string, string> {
  return Object.fromEntries(Object.entries(match.groups ?? {}).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
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
    // Cut as the reader sees it (a link counts its label), never inside an entity, a link or an emoji.
    const snippet = renderPieces(clipPieces(mrkdwnPieces(item.text.replace(/\s+/g, ' '), false), 150));
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
  const section = (text: string) => ({ type: 'section', text: { type: 'mrkdwn', text, verbatim: true } });
  for (const l of lines) {
    if (chunk && chunk.length + l.length + 1 > SECTION_LIMIT) { sections.push(...splitText(chunk).map(section)); chunk = ''; }
    chunk += (chunk ? '\n' : '') + l;
  }
  sections.push(...splitText(chunk).map(section));
  for (const failure of report.failures) sections.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `:warning: could not read <#${failure.channel}>: ${escapeSlack(failure.error)}` }] });
  // A plugin's long section goes on in the next block, cut where no entity or link is cut in half.
  for (const extra of report.sections) sections.push(...splitText(`*${escapeSlack(extra.title)}*\n${extra.lines.join('\n')}`).map(section));
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
      await ims.post(reportPost(channel, report, 0, { text: messages[0].text, blocks }));
      await slackCall(() => ims.slack.filesUploadV2({ channel_id: channel, content, filename: `ims-report-${new Date(report.generatedAt).toISOString().slice(0, 10)}.txt`, title: messages[0].text }), ims.log, 'files upload');
    } else {
      for (const [part, message] of messages.entries()) await ims.post(reportPost(channel, report, part, message));
    }
    ims.log.info(`report posted: ${report.open.length} open, ${report.resolved.length} resolved listed`, { channel });
    return true;
  } catch (error) {
    ims.log.error(`report could not be posted to ${channel}: ${errorText(error)}`);
    return false;
  }
}

/** One message of a report, named so that a retry after a lost answer finds it instead of posting it twice. */
function reportPost(channel: string, report: Report, part: number, message: { text: string; blocks: unknown[] }): PostSpec {
  return {
    channel, text: message.text, blocks: message.blocks, fallback: plainText(message.blocks) || message.text, what: `report (part ${part + 1})`,
    metadata: { event_type: 'ims_report', event_payload: { generated_at: report.generatedAt, part } }, oldest: (Date.now() / 1000 - 600).toFixed(6),
  };
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
      await ims.post({ channel: reminder.channel, text, what: 'reminder', metadata: { event_type: 'ims_reminder', event_payload: { hour: hourKey } }, oldest: (Date.now() / 1000 - 600).toFixed(6) });
    } catch (error) {
      // Give the hour back, so the next tick tries again; unless Slack refuses it for good (the channel is gone).
      const failure = classifySlackFailure(error);
      if (failure.kind !== 'permanent') ims.state.releaseReminder(reminder.channel, hourKey);
      ims.log.error(`reminder could not be posted to ${reminder.channel}: ${errorText(error)}${failure.kind === 'permanent' ? '; not retried this hour' : ''}`);
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

/**
 * Why IMS cannot start (a configuration refused, a token missing, a log or state file it cannot open), written
 * where the user reads IMS's logs: with `--log` or `--log-format json` through the logger (the file, one JSON
 * object), else as plain lines on stderr.
 */
export function reportRefusal(message: string, options: Pick<CliOptions, 'log' | 'logFormat'>, io: { err: (s: string) => void }): void {
  if (options.log === undefined && options.logFormat !== 'json') { io.err(message); return; }
  try {
    createLogger({ file: options.log, format: options.logFormat }).error(message);
  } catch {
    // The log file itself is what failed: JSON lines still go to stderr.
    if (options.logFormat === 'json') createLogger({ format: 'json' }).error(message);
    else io.err(message);
  }
}

/** The default mode, `--only-report` and `--clear-reminder`: returns the exit code. */
export async function runSlack(config: CompiledConfig, options: CliOptions, io: { err: (s: string) => void }): Promise<number> {
  const tokens = slackTokens();
  if (typeof tokens === 'string') { reportRefusal(`ims: ${tokens}`, options, io); return 1; }
  let log: ReturnType<typeof createLogger>;
  try {
    log = createLogger({ level: options.debug ? 'debug' : 'info', file: options.log, format: options.logFormat, secrets: [tokens.appToken, tokens.botToken] });
  } catch (error) {
    // A log that cannot be written is a command line IMS cannot run (as a usage error): say so before connecting.
    reportRefusal(`ims: ${(error as Error).message}`, options, io);
    return 2;
  }
  const milliseconds = (name: string): number | undefined => {
    const value = process.env[name];
    if (value === undefined || value === '') return undefined;
    if (Number.isFinite(Number(value)) && Number(value) > 0) return Number(value);
    log.warn(`${name} must be a positive number of milliseconds, found '${value}': ignored`);
    return undefined;
  };
  // How the process ends: the first reason to stop wins (a signal, the parent gone, a refused token).
  let exitCode = 0;
  let stopping: string | undefined;
  let stopRequested!: () => void;
  const stopNow = new Promise<void>((resolve) => { stopRequested = resolve; });
  let ims: Ims;
  try {
    ims = new Ims(config, {
      ...tokens, log, configPath: config.source, autoReload: options.auto, idLookup: options.idLookup, verbose: options.verbose,
      reverse: options.reverse, reacji: options.reacji, reports: !options.noIncident, reminders: !options.noReminder,
      schedule: options.schedule, loopHours: options.loopHours, reminderSeconds: options.reminderSeconds,
      clientPingTimeoutMs: milliseconds('IMS_PING_TIMEOUT_MS'),
      retryConfig: process.env.IMS_HTTP_RETRIES ? { retries: Number(process.env.IMS_HTTP_RETRIES), minTimeout: 100, maxTimeout: 1000 } : undefined,
      startTimeoutMs: milliseconds('IMS_START_TIMEOUT_MS'), requestTimeoutMs: milliseconds('IMS_REQUEST_TIMEOUT_MS'),
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

/** From the first SIGINT/SIGTERM (or other reason to stop) to the process's end, at most. */
const STOP_LIMIT_MS = 9500;

/**
 * Process-wide guards, installed before start-up: a rejection or exception nobody handled is logged with
 * where it came from and IMS runs on (one bad frame or SDK bug must not stop alerting); SIGINT/SIGTERM stop
 * gracefully, at any point, start-up included; and IMS stops when the process that started it is gone.
 */
function guardProcess(log: Logger, stop: (why: string, code: number) => void): void {
  // A closed stderr (the terminal or wrapper that read it is gone) must not end IMS, nor loop on reporting itself.
  process.stderr.on('error', () => undefined);
  process.on('unhandledRejection', (reason) => {
    // socket-mode 3.1 rejects with `undefined` when disconnect() races a reconnect waiting for hello: nothing to do.
    if (reason === undefined) return;
    log.error(`unhandled rejection (IMS runs on): ${describeError(reason)}`);
  });
  process.on('uncaughtException', (error, origin) => {
    log.error(`uncaught exception in ${origin} (IMS runs on): ${describeError(error)}`);
  });
  let signalled = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      log.info(signalled ? `${signal} received again: already stopping (the process ends within ${STOP_LIMIT_MS / 1000} s)` : `${signal} received`);
      signalled = true;
      stop(signal, 0);
    });
  }
  watchParent((why) => {
    log.warn(`${why}: stopping (IMS_PARENT_WATCH=off keeps it running without)`);
    stop('parent gone', 0);
  });
}

/** `Name: message (at file:line)`, on one line. */
function describeError(reason: unknown): string {
  if (!(reason instanceof Error)) return typeof reason === 'string' ? reason : JSON.stringify(reason) ?? String(reason);
  const at = reason.stack?.split('\n').find((line) => /^\s+at /.test(line))?.trim();
  return `${reason.name}: ${errorText(reason)}${at ? ` (${at})` : ''}`;
}

/**
 * Call `onGone` when the process that started IMS is gone: its parent exits (IMS is handed to init), or one of
 * the launchers between them does (`npx tsx ims.ts` is npm → sh → tsx → IMS, and a SIGTERM to npm leaves tsx
 * and IMS running as orphans), or an IPC channel to the parent closes. Polled once a second; off when IMS's
 * parent is init (systemd, a container's PID 1) and with IMS_PARENT_WATCH=off.
 */
function watchParent(onGone: (why: string) => void): void {
  if (process.env.IMS_PARENT_WATCH === 'off') return;
  const parent = process.ppid;
  const launchers = launcherChain(parent);
  if (process.channel) process.once('disconnect', () => onGone('the IPC channel to its parent closed'));
  if (parent <= 1 && !launchers.length) return;
  // What started the outermost launcher (a shell script running `npx tsx ims.ts`): when it goes, the launchers
  // are handed to init and run on, so its going counts too (not when that is init or a supervisor already).
  const outermost = launchers.at(-1);
  const starter = outermost ? processParent(outermost.pid) : undefined;
  const timer = setInterval(() => {
    const gone = parent > 1 && process.ppid !== parent ? `its parent process (pid ${parent}) exited`
      : launchers.filter((l) => processStart(l.pid) !== l.start).map((l) => `its launcher '${l.name}' (pid ${l.pid}) exited`)[0]
      ?? (outermost && starter !== undefined && starter > 1 && processParent(outermost.pid) !== starter
        ? `the process that started its launcher (pid ${starter}) exited` : undefined);
    if (!gone) return;
    clearInterval(timer);
    onGone(gone);
  }, 1000);
  timer.unref();
}

const LAUNCHER = /(^|[/\\])(npx|npm|pnpm|yarn|tsx)(-cli)?(\.[cm]?js)?$|^npm (exec|run|start|x)\b|[/\\]tsx[/\\]dist[/\\]cli\.mjs$/;

/** The launchers above IMS (npm, npx, tsx, a shell running them), nearest first, from /proc (Linux; elsewhere none). */
function launcherChain(parent: number): { pid: number; start: string; name: string }[] {
  const chain: { pid: number; start: string; name: string }[] = [];
  for (let pid = parent; pid > 1 && chain.length < 8;) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      break;
    }
    const start = processStart(pid);
    // `sh -c 'tsx' ims.ts` carries the command as one argument: look at its words.
    const words = args.flatMap((arg) => arg.split(/\s+/)).map((word) => word.replace(/^['"]|['"]$/g, ''));
    if (start === undefined || !(args.some((arg) => LAUNCHER.test(arg)) || words.some((word) => LAUNCHER.test(word)))) break;
    chain.push({ pid, start, name: args.join(' ').slice(0, 60) });
    pid = processParent(pid) ?? 0;
  }
  return chain;
}

/** Fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): [state, ppid, …]. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** When a process started (clock ticks since boot): with its pid, it names the process even after the pid is reused. */
function processStart(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

function processParent(pid: number): number | undefined {
  const ppid = Number(procStat(pid)?.[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

/**
 * Talking to Slack's Web API: clients whose retries IMS decides (the SDK's are off), one queue per channel (order
 * kept, a 429 stalls only its channel), cursor pagination, a keep-alive transport, the errors that stop IMS, and
 * posting once: every post names its purpose in metadata and is looked for before it is made again.
 */
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import type { WebClient } from '@slack/web-api';
import type { Logger } from './ims.ts';
import { classifySlackFailure, type SlackFailure } from './ims-plugin-kit.ts';
import { wellFormed } from './ims-text.ts';
import { errorText } from './ims-log.ts';

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

export function retryDelay(policy: RetryPolicy, attempt: number): number {
  const p = { ...DEFAULT_RETRY, ...policy };
  const base = Math.min(p.maxTimeout, p.minTimeout * p.factor ** Math.max(0, attempt - 1));
  return Math.round(p.randomize ? base * (0.75 + Math.random() / 2) : base);
}

/** Resolves after `ms`, or at once when `signal` aborts (then false). The timer never holds the process open. */
export function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (completed: boolean) => { clearTimeout(timer); signal?.removeEventListener('abort', onAbort); resolve(completed); };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}


/** Methods Slack may be asked twice without doing the work twice: reads, and writes whose repeat is refused or changes nothing. */
function repeatable(method: string): boolean {
  return /\.(list|info|history|replies|get|test|getPermalink|open|getUploadURLExternal)$/.test(method) || REPEATABLE_WRITES.has(method);
}
const REPEATABLE_WRITES = new Set(['reactions.add', 'reactions.remove', 'pins.add', 'pins.remove', 'chat.update', 'chat.delete', 'conversations.setTopic',
  'conversations.setPurpose', 'conversations.join', 'conversations.invite', 'conversations.kick', 'conversations.archive', 'conversations.unarchive']);

/** How one of IMS's Web API clients retries. */
export interface ClientPolicy {
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

/** The constructor options every Web API client IMS builds shares: the API URL, the transport, the time-out, the quiet logger. */
export type WebClientOptions = NonNullable<ConstructorParameters<typeof WebClient>[1]>;

let SlackClient: ReturnType<typeof defineSlackClient> | undefined;

/**
 * A Web API client with IMS's retry policy (`defineSlackClient`). The SDK is loaded here, on the first client
 * built: importing IMS (a config, a plugin, `--test`) never loads it.
 */
export function createSlackClient(token: string | undefined, options: WebClientOptions, policy: ClientPolicy): WebClient {
  SlackClient ??= defineSlackClient((createRequire(import.meta.url)('@slack/web-api') as typeof import('@slack/web-api')).WebClient);
  return new SlackClient(token, options, policy);
}

/**
 * A WebClient whose retries IMS decides: the SDK's are off. A call that failed on the way (network, time-out,
 * 5xx) is tried again only when Slack cannot have done the work (connection refused) or when doing it twice
 * is harmless (`repeatable`); Slack's own refusals (`ok: false`) are left to the caller, except at start-up.
 * Everything it gives up on is thrown stamped with its `slackFailure`. Text is made well-formed before it
 * is sent (every path: posts, plugins, reports), since the SDK's form encoding throws on a lone surrogate.
 */
function defineSlackClient(Base: typeof WebClient) {
  return class SlackClient extends Base {
    constructor(token: string | undefined, options: WebClientOptions, readonly policy: ClientPolicy) {
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
    retryAfter(method: string, failure: SlackFailure, attempt: number, started: number): number | undefined {
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
  };
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

/**
 * Call Slack, waiting out 429s (only this call waits: other channels go on). `onRateLimited` hears of each 429
 * (a channel's posting pace starts again from nothing).
 */
export async function slackCall<T>(call: () => Promise<T>, log: Logger, what: string, queues?: ChannelQueues, onRateLimited?: (retryAfterMs: number) => void): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const delay = rateLimitDelay(error);
      if (delay === undefined) throw error;
      log.debug(`rate limited on ${what}; retrying in ${delay} ms`);
      onRateLimited?.(delay);
      queues?.throttled.add(what);
      queues?.onThrottled?.();
      await sleep(delay).finally(() => queues?.throttled.delete(what));
    }
  }
}

/** Every item of a paginated Web API list (cursor pagination), each page waiting out its own 429s. */
export async function* listAll<T>(slack: WebClient, log: Logger, method: string, args: Record<string, unknown>, field: string): AsyncGenerator<T> {
  let cursor: string | undefined;
  do {
    const page = (await slackCall(() => slack.apiCall(method, { ...args, cursor }), log, method)) as unknown as Record<string, unknown>;
    for (const item of (page[field] as T[] | undefined) ?? []) yield item;
    cursor = (page.response_metadata as { next_cursor?: string } | undefined)?.next_cursor || undefined;
  } while (cursor);
}

/** How fast IMS posts into one channel (`RuntimeOptions.postsPerSecond` / `postBurst`). */
export interface PostingPace {
  /** Posts (and edits) per second and channel, over time. Default 1: Slack's limit for chat.postMessage. */
  perSecond?: number;
  /** Posts that may go at once after a quiet spell. Default 3: Slack allows short bursts. */
  burst?: number;
}

/** Slack's documented posting limit: about one message per second per channel, short bursts allowed. */
export const DEFAULT_PACE: Required<PostingPace> = { perSecond: 1, burst: 3 };

/** The methods Slack limits per channel (chat.postMessage: about 1 per second per channel); IMS paces its edits with its posts. */
const PACED_METHODS = new Set(['chat.postMessage', 'chat.update']);

/**
 * IMS spaces its posts this much wider than the pace (5 %: 50 ms at one post a second): a request that leaves a
 * little late and the next one on time must not reach Slack closer together than the limit allows (network and
 * event-loop jitter).
 */
const JITTER_MARGIN = 0.05;

/** One channel's posting pace: a token bucket (one token a post, refilled at the pace, holding at most the burst). */
class PostingBucket {
  private tokens: number;
  private at = Date.now();
  private readonly perMs: number;

  constructor(private readonly pace: Required<PostingPace>) {
    this.tokens = pace.burst;
    this.perMs = pace.perSecond / 1000 / (1 + JITTER_MARGIN);
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.pace.burst, this.tokens + (now - this.at) * this.perMs);
    this.at = now;
  }

  /** Posts that may go now without waiting. */
  available(): number {
    this.refill();
    return Math.max(0, Math.floor(this.tokens));
  }

  /** Wait for the turn of one post, and take it. */
  async take(): Promise<void> {
    for (;;) {
      this.refill();
      if (this.tokens >= 1) { this.tokens -= 1; return; }
      await sleep(Math.ceil((1 - this.tokens) / this.perMs));
    }
  }

  /** Slack answered 429: its own bucket is empty, and the retry after Retry-After spends the next token. */
  rateLimited(): void {
    this.refill();
    this.tokens = Math.min(this.tokens, 0) - 1;
  }
}

/**
 * One queue per channel: posts to a channel keep their order, and a 429 on one channel stalls only that channel.
 * Posts and edits (`PACED_METHODS`) keep to the channel's posting pace, so IMS does not provoke 429s: each
 * waits for its turn before it starts (a 429 is still waited out as before, and the pace starts again from it).
 */
export class ChannelQueues {
  private readonly tails = new Map<string, Promise<unknown>>();
  private readonly buckets = new Map<string, PostingBucket>();
  /** Tasks queued per lane (a channel's posts, its edits) and not yet settled. */
  private readonly queued = new Map<string, number>();
  private readonly pace: Required<PostingPace>;
  /** Calls waiting out a 429 right now, and channels waiting for their posting pace; and who to tell when one starts to. */
  readonly throttled = new Set<string>();
  onThrottled?: () => void;
  /** A post went out in a channel (for the metrics). */
  onPosted?: (channel: string) => void;
  /** Slack answered 429 to a post or edit in a channel (for the metrics). */
  onRateLimited?: (channel: string) => void;
  /**
   * Several instances posting into the same channels: each post also waits for a turn of the pace they share (kept
   * in the shared state), and a 429 one of them meets slows all. When the shared state does not answer, the
   * instance's own pace alone goes on (a post is never held up for the state's sake).
   */
  sharedPace?: {
    /** Milliseconds to wait before asking again; 0: post now. */
    take(channel: string, perSecond: number, burst: number): Promise<number>;
    limited(channel: string, retryAfterMs: number): Promise<void>;
  };

  constructor(private readonly log: Logger, pace: PostingPace = {}) {
    this.pace = { perSecond: pace.perSecond ?? DEFAULT_PACE.perSecond, burst: pace.burst ?? DEFAULT_PACE.burst };
    if (!(this.pace.perSecond > 0) || !(this.pace.burst >= 1)) {
      throw new Error(`posting pace: expected postsPerSecond > 0 and postBurst ≥ 1, found ${this.pace.perSecond} and ${this.pace.burst}`);
    }
  }

  run<T>(channel: string, what: string, task: () => Promise<T>): Promise<T> {
    const paced = PACED_METHODS.has(what);
    // Edits go in a lane of their own, at their own pace (Slack limits chat.update apart from posts): a storm's
    // edits in place never hold up a new alert's post, and an edit always concerns a post already made.
    const lane = what === 'chat.update' ? `${channel} (edits)` : channel;
    this.queued.set(lane, (this.queued.get(lane) ?? 0) + 1);
    const previous = this.tails.get(lane) ?? Promise.resolve();
    const result = previous.then(async () => {
      if (paced) await this.paced(lane);
      const answer = await slackCall(task, this.log, `${what} in ${channel}`, this, paced ? (retryAfterMs) => this.rateLimited(lane, retryAfterMs) : undefined);
      if (what === 'chat.postMessage') this.onPosted?.(channel);
      return answer;
    });
    const tail = result.catch(() => undefined);
    void tail.then(() => this.queued.set(lane, (this.queued.get(lane) ?? 1) - 1));
    this.tails.set(lane, tail);
    void tail.then(() => { if (this.tails.get(lane) === tail) this.tails.delete(lane); });
    return result;
  }

  /**
   * Wait for a post's turn in `channel`. While it waits, the channel counts as throttled (as during a 429): the
   * intake's admission is lifted, so alerts for other channels are not held up behind this one's storm.
   */
  private async paced(channel: string): Promise<void> {
    const bucket = this.bucket(channel);
    if (bucket.available() >= 1) await bucket.take();
    else await this.whileThrottled(`posting pace of ${channel}`, () => bucket.take());
    if (this.sharedPace) await this.sharedTurn(channel);
  }

  private async whileThrottled(why: string, wait: () => Promise<void>): Promise<void> {
    this.throttled.add(why);
    this.onThrottled?.();
    try {
      await wait();
    } finally {
      this.throttled.delete(why);
    }
  }

  /** Until when the shared pace is not asked (it did not answer): this instance's own pace alone meanwhile. */
  private sharedPaceAwayUntil = 0;

  /** Wait for the shared pace's turn in `channel` (the pace of every instance together). */
  private async sharedTurn(channel: string): Promise<void> {
    const shared = this.sharedPace!;
    if (Date.now() < this.sharedPaceAwayUntil) return;
    const ask = () => shared.take(channel, this.pace.perSecond, this.pace.burst).catch((error: unknown) => {
      // Not asked again for a while: a state that does not answer must not add its time-out to every post.
      this.sharedPaceAwayUntil = Date.now() + SHARED_PACE_RETRY_MS;
      this.log.debug(`the shared posting pace of ${channel} could not be read (${errorText(error)}): this instance's own pace goes on`);
      return 0;
    });
    let wait = await ask();
    if (wait <= 0) return;
    await this.whileThrottled(`shared posting pace of ${channel}`, async () => {
      while (wait > 0) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 5000)));
        wait = await ask();
      }
    });
  }

  /** Posts that may go into `channel` now without waiting for the pace (after the one whose turn it is, from inside its task). */
  available(channel: string): number {
    return this.bucket(channel).available();
  }

  /** Posts (not edits) queued in `channel` and not yet done: more than none means new posts wait behind them. */
  queuedPosts(channel: string): number {
    return this.queued.get(channel) ?? 0;
  }

  /** Posts that may go into a channel within `ms` at its pace, beyond those it may post now. */
  postsWithin(ms: number): number {
    return Math.floor((ms / 1000) * this.pace.perSecond);
  }

  /** Slack answered 429 to a post or edit in `channel`: the pace starts again from nothing. */
  rateLimited(channel: string, retryAfterMs = 1000): void {
    this.bucket(channel).rateLimited();
    void this.sharedPace?.limited(channel, retryAfterMs).catch(() => undefined);
    this.onRateLimited?.(channel.replace(/ \(edits\)$/, ''));
  }

  /** Posts and edits queued in every channel and not yet done. */
  depth(): number {
    let total = 0;
    for (const count of this.queued.values()) total += count;
    return total;
  }

  private bucket(channel: string): PostingBucket {
    let bucket = this.buckets.get(channel);
    if (!bucket) { bucket = new PostingBucket(this.pace); this.buckets.set(channel, bucket); }
    return bucket;
  }

  async drain(): Promise<void> {
    while (this.tails.size) await Promise.allSettled([...this.tails.values()]);
  }
}

/** How long the shared pace is left alone after it did not answer. */
const SHARED_PACE_RETRY_MS = 10_000;

const keepAlive = { http: new http.Agent({ keepAlive: true, maxSockets: 32 }), https: new https.Agent({ keepAlive: true, maxSockets: 32 }) };

/**
 * The Web API transport (the SDK's `fetch` option). Slack calls are small form posts, and WHATWG fetch
 * spends twice the CPU and garbage of a keep-alive `node:http` request on them, which matters on a small VM
 * during an alert storm. Anything beyond a string or form body (multipart uploads, streams) goes to the
 * standard fetch.
 */
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
  /**
   * When looking: another post that carries this one counts as made (a digest whose metadata lists this alert).
   * Given the metadata of each message looked at.
   */
  foundIn?: (metadata: PostMetadata) => boolean;
  /** What the post is for, in log lines (`incident (rule 3) of C123:1700000000.000100`). */
  what: string;
}

/** Message metadata as history shows it. */
export interface PostMetadata {
  event_type?: string;
  event_payload?: Record<string, unknown>;
}

/** A post an earlier attempt made, as history shows it. */
export interface FoundPost {
  ts: string;
  text?: string;
  blocks?: unknown[];
  metadata?: PostMetadata;
}

/** What became of a post: its ts, and the message found when an earlier attempt had made it (or a post carrying it). */
export interface PostOutcome {
  ts: string;
  found?: FoundPost;
}

/**
 * Posts to Slack, each once, in its channel's queue. The post carries `metadata` naming what it is for: when an
 * attempt's outcome is unknown (the answer was lost after Slack made it), the channel or thread is searched for
 * that metadata before trying again. A post Slack refuses for its form (`invalid_blocks`, `msg_too_long`…) goes
 * again as its plain-text `fallback`; one refused for good (`channel_not_found`, `not_in_channel`,
 * `is_archived`…) throws at once, stamped with its `slackFailure`, and does not hold the queue. Other failures
 * are retried within `retry`, then thrown.
 */
export class Poster {
  constructor(private readonly deps: {
    /** Makes the posts: never retries on its own. */
    client: WebClient;
    /** Reads history when looking for an earlier attempt's post, and adds reactions. */
    reader: WebClient;
    queues: ChannelQueues;
    log: Logger;
    retry: () => Required<RetryPolicy>;
    /** Aborted when IMS gives up on in-flight work: no retry waits any longer. */
    halt: AbortSignal;
  }) {}

  post(spec: PostSpec): Promise<string> {
    return this.postOutcome(spec).then((outcome) => outcome.ts);
  }

  /** Post (as `post`), telling also what an earlier attempt's post found in Slack was. */
  postOutcome(spec: PostSpec): Promise<PostOutcome> {
    return this.deps.queues.run(spec.channel, 'chat.postMessage', () => this.attempts(spec));
  }

  /**
   * Post from inside a task that runs in the channel's queue and took its posting turn there (a digest's turn):
   * `post` from there would wait behind the task itself.
   */
  postInTask(spec: PostSpec): Promise<PostOutcome> {
    return this.attempts(spec);
  }

  /**
   * The post `spec` describes, if an earlier attempt made it (see `findPost`): looked for outside the channel's
   * queue, as reading history is not posting (a recovered message spends no posting turn on it).
   */
  find(spec: PostSpec): Promise<FoundPost | undefined> {
    return this.findPost(spec);
  }

  /** Add a reaction (in the channel's queue); one already there is fine. */
  async react(channel: string, ts: string, name: string): Promise<void> {
    try {
      await this.deps.queues.run(channel, 'reactions.add', () => this.deps.reader.reactions.add({ channel, timestamp: ts, name }));
    } catch (error) {
      if (errorText(error) !== 'already_reacted') throw error;
    }
  }

  private async attempts(spec: PostSpec): Promise<PostOutcome> {
    const { log, queues, halt } = this.deps;
    const retry = this.deps.retry();
    const started = Date.now();
    let plain = false;
    let lookFirst = !!spec.lookFirst;
    for (let attempt = 1; ; attempt++) {
      try {
        if (lookFirst) {
          const earlier = await this.findPost(spec);
          lookFirst = false;
          if (earlier) {
            log.info(`${spec.what}: already posted (${earlier.ts}), not posting it again`, { channel: spec.channel });
            return { ts: earlier.ts, found: earlier };
          }
        }
        const base = { channel: spec.channel, thread_ts: spec.thread_ts, unfurl_links: false, unfurl_media: false, metadata: spec.metadata };
        const args = (plain ? { ...base, text: spec.fallback } : { ...base, text: spec.text, blocks: spec.blocks }) as Parameters<WebClient['chat']['postMessage']>[0];
        const answer = await slackCall(() => this.deps.client.chat.postMessage(args), log, `chat.postMessage in ${spec.channel}`, queues, (retryAfterMs) => queues.rateLimited(spec.channel, retryAfterMs));
        return { ts: String(answer.ts) };
      } catch (error) {
        const failure = classifySlackFailure(error);
        if (failure.kind === 'permanent' && !plain && spec.fallback && CONTENT_ERRORS.has(failure.code)) {
          log.warn(`${spec.what}: Slack refused the post (${failure.reason}); posting it as plain text`, { channel: spec.channel });
          plain = true;
          continue;
        }
        if (failure.kind === 'permanent' || failure.kind === 'auth') throw error;
        // The answer was lost: the post may be there. The next attempt looks before it posts.
        if (failure.kind === 'unknown') lookFirst = true;
        const delay = retryDelay(retry, attempt);
        if (attempt > retry.retries || Date.now() + delay - started > retry.maxRetryTime || halt.aborted) throw error;
        log.warn(`${spec.what}: chat.postMessage to ${spec.channel} failed (${failure.reason}); ${lookFirst ? 'looking for it, then ' : ''}retry ${attempt} of ${retry.retries} in ${(delay / 1000).toFixed(1)} s`);
        if (!(await pause(delay, halt))) throw error;
      }
    }
  }

  /**
   * The post `spec` describes, if an earlier attempt made it: searched by its metadata (or `spec.foundIn`) in its
   * thread or in the channel's history since `spec.oldest`. When Slack cannot be read for good, undefined: a
   * page twice is better than none.
   */
  private async findPost(spec: PostSpec): Promise<FoundPost | undefined> {
    const { reader, log } = this.deps;
    const wanted = spec.metadata;
    const same = (m: FoundPost) => (m.metadata?.event_type === wanted.event_type
      && Object.entries(wanted.event_payload).every(([key, value]) => String(m.metadata?.event_payload?.[key]) === String(value)))
      || (!!m.metadata && !!spec.foundIn?.(m.metadata));
    const messages = spec.thread_ts
      ? listAll<FoundPost>(reader, log, 'conversations.replies', { channel: spec.channel, ts: spec.thread_ts, include_all_metadata: true, limit: 200 }, 'messages')
      : listAll<FoundPost>(reader, log, 'conversations.history', { channel: spec.channel, oldest: spec.oldest, include_all_metadata: true, limit: 200 }, 'messages');
    try {
      for await (const m of messages) if (same(m)) return m;
    } catch (error) {
      if (classifySlackFailure(error).kind !== 'permanent') throw error;
      log.warn(`${spec.what}: cannot look in ${spec.channel} for an earlier post (${errorText(error)}); posting it`);
    }
    return undefined;
  }
}

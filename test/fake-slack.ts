/**
 * FakeSlack: a local Slack for tests. The Web API over HTTP and Socket Mode over WebSocket, both on
 * 127.0.0.1 and a random port, so the REAL @slack/web-api and @slack/socket-mode clients can talk to it
 * (`slackApiUrl: fake.apiUrl`). The protocol facts it honours are in ../shared/docs/slack-protocol.md beside the project.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';

// ───────────────────────────── Public types ─────────────────────────────

export interface FakeMessage {
  type: 'message';
  ts: string;
  user?: string;
  bot_id?: string;
  subtype?: string;
  text: string;
  thread_ts?: string;
  attachments?: any[];
  blocks?: any[];
  metadata?: any;
  reactions?: { name: string; users: string[]; count: number }[];
  files?: any[];
  reply_count?: number;
  edited?: { user: string; ts: string };
  /** The name an integration posted under (incoming webhooks, `chat.postMessage` with `username`). */
  username?: string;
  /** Who posted, as Slack describes an app's bot on its messages. */
  bot_profile?: Record<string, unknown>;
}

export interface FakeChannel {
  id: string;
  name: string;
  is_private: boolean;
  is_archived: boolean;
  /** Whether the bot is in the channel (the bot's id is also in `members`). */
  is_member: boolean;
  topic: string;
  purpose: string;
  members: Set<string>;
  /** Oldest first; top-level messages and thread replies together. */
  messages: FakeMessage[];
  /** Pinned message timestamps. */
  pins: Set<string>;
}

export interface FakeUser {
  id: string;
  name: string;
  real_name: string;
  is_bot: boolean;
  deleted?: boolean;
}

/** An integration (a bot user of an app, or a legacy bot), as `bots.info` describes it. */
export interface FakeBot {
  id: string;
  name: string;
  app_id?: string;
  user_id?: string;
}

export interface FakeUsergroup {
  id: string;
  handle: string;
  name: string;
}

export interface ApiCall {
  method: string;
  /** Form-decoded; blocks/attachments/metadata/files parsed back to objects; "true"/"false" stay strings. */
  params: Record<string, any>;
  token: string;
  at: number;
  /** HTTP status answered (200 or 429; a 5xx during an `outage`; 0 when the answer was lost, see `loseAnswers`). */
  status: number;
  response: any;
}

export interface SentEnvelope {
  envelope_id: string;
  event_id: string;
  event: any;
  retry_attempt: number;
  /** When it was written to a socket; 0 while it waits for a connection (or if it was dropped). */
  sentAt: number;
  ackedAt?: number;
}

export interface FakeUpload {
  id: string;
  filename: string;
  title?: string;
  content: string;
  channel?: string;
  thread_ts?: string;
  initial_comment?: string;
}

export interface FakeSlackOptions {
  /** Default 'xoxb-test'; any other bearer token gets invalid_auth. */
  botToken?: string;
  /** Default 'xapp-test'; the only token apps.connections.open accepts. */
  appToken?: string;
  botUserId?: string;
  botId?: string;
  teamId?: string;
  /** An un-acked envelope is delivered again (new envelope_id, same event_id) after this. Default 3000. */
  redeliverAfterMs?: number;
  /** Default 3. */
  maxRedeliveries?: number;
  /** Page size of paginated lists when the caller gives no `limit`. Default 100. */
  pageSize?: number;
  /** Drop, instead of queueing, deliveries that find no connected socket (for catch-up tests). Default false. */
  dropWhileDisconnected?: boolean;
  /**
   * Slack's posting limit, off by default. Slack documents chat.postMessage as "1 per second per channel, short
   * bursts >1 allowed" (docs.slack.dev/apis/web-api/rate-limits): here a token bucket per channel and method for
   * chat.postMessage (thread replies included) and chat.update, refilled at `perSecond` and holding at most
   * `burst`. A call over it is answered as Slack answers: HTTP 429, `{ok:false, error:'ratelimited'}` and
   * `Retry-After` in whole seconds (until a token is back); it does no work and is counted in `postRateLimited`.
   */
  postRateLimit?: { perSecond: number; burst: number };
}

type Params = Record<string, any>;
type Handler = (params: Params) => Record<string, unknown>;
type DisconnectReason = 'warning' | 'refresh_requested' | 'link_disabled';

const APP_ID = 'A0FAKE';
const PERMALINK_HOST = 'https://fake.slack.com';

// ───────────────────────────── Small helpers ─────────────────────────────

/** A Slack error answer: the dispatcher turns it into 200 {ok:false, error}. */
class SlackError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

function fail(code: string): never {
  throw new SlackError(code);
}

/** "1700000000.000123" → microseconds, so timestamps compare as numbers. */
function micros(ts: string): number {
  const [seconds = '0', fraction = ''] = String(ts).split('.');
  return Number(seconds) * 1e6 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

function formatTs(us: number): string {
  return `${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}`;
}

function isTrue(value: unknown): boolean {
  return value === true || value === 'true' || value === '1' || value === 1;
}

function isTopLevel(m: FakeMessage): boolean {
  return m.thread_ts === undefined || m.thread_ts === m.ts;
}

/** Only the keys whose values are defined, so optional fields stay absent rather than `undefined`. */
function defined<T extends object>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** oldest/latest bounds, exclusive unless `inclusive` (as in conversations.history). */
function rangeFilter(p: Params): (m: FakeMessage) => boolean {
  const inclusive = isTrue(p.inclusive);
  const oldest = p.oldest === undefined ? -Infinity : micros(String(p.oldest));
  const latest = p.latest === undefined ? Infinity : micros(String(p.latest));
  return (m) => {
    const t = micros(m.ts);
    return inclusive ? t >= oldest && t <= latest : t > oldest && t < latest;
  };
}

// Cursors name the first item of the next page, so items added between pages do not shift them.
function encodeCursor(key: string): string {
  return Buffer.from(`next:${key}`).toString('base64');
}

function decodeCursor(cursor: string): string {
  const text = Buffer.from(cursor, 'base64').toString();
  return text.startsWith('next:') ? text.slice('next:'.length) : fail('invalid_cursor');
}

function paginate<T>(items: T[], p: Params, keyOf: (item: T) => string, limit: number): { page: T[]; nextCursor: string } {
  let start = 0;
  if (p.cursor) {
    const key = decodeCursor(String(p.cursor));
    start = items.findIndex((item) => keyOf(item) === key);
    if (start < 0) fail('invalid_cursor');
  }
  const next = items[start + limit];
  return { page: items.slice(start, start + limit), nextCursor: next === undefined ? '' : encodeCursor(keyOf(next)) };
}

function validateChannelName(name: string): void {
  if (!name) fail('invalid_name_required');
  if (name.length > 80) fail('invalid_name_maxlength');
  if (!/^[a-z0-9_-]+$/.test(name)) fail('invalid_name_specials');
  if (/^[-_]+$/.test(name)) fail('invalid_name_punctuation');
}

// ───────────────────────────── HTTP bodies ─────────────────────────────

const JSON_FIELDS = new Set(['blocks', 'attachments', 'metadata', 'files']);

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Query string, then a form or JSON body. */
function parseParams(req: IncomingMessage, url: URL, body: Buffer): Params {
  const params: Params = Object.fromEntries(url.searchParams);
  const text = body.toString('utf8');
  if ((req.headers['content-type'] ?? '').startsWith('application/json')) {
    const parsed = parseJson(text);
    if (parsed && typeof parsed === 'object') Object.assign(params, parsed);
    return params;
  }
  for (const [key, value] of new URLSearchParams(text)) {
    params[key] = JSON_FIELDS.has(key) ? parseJson(value) : value;
  }
  return params;
}

function bearerToken(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  return match?.[1];
}

/** The uploaded bytes: the whole body, or the first part's body when it is multipart. */
function uploadedContent(req: IncomingMessage, body: Buffer): Buffer {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(req.headers['content-type'] ?? '');
  if (!boundary) return body;
  const delimiter = `--${boundary[1] ?? boundary[2]}`;
  const partStart = body.indexOf(delimiter);
  const headersEnd = body.indexOf('\r\n\r\n', partStart);
  if (partStart < 0 || headersEnd < 0) return body;
  const contentStart = headersEnd + 4;
  const contentEnd = body.indexOf(`\r\n${delimiter}`, contentStart);
  return body.subarray(contentStart, contentEnd < 0 ? body.length : contentEnd);
}

function rawDataText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

// ───────────────────────────── FakeSlack ─────────────────────────────

/** One event, across all its deliveries (the first and the redeliveries). */
interface PendingEvent {
  eventId: string;
  event: any;
  eventTime: number;
  nextAttempt: number;
  acked: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

interface Delivery {
  envelope: SentEnvelope;
  pending: PendingEvent;
}

interface PendingFile {
  filename: string;
  length: number;
  content?: string;
}

interface RateLimitRule {
  method: string;
  count: number;
  retryAfterSec: number;
  channel?: string;
}

interface FailureRule {
  method: string;
  error: string;
  count: number;
}

export class FakeSlack {
  readonly apiUrl: string;
  readonly port: number;
  readonly botUserId: string;
  readonly botId: string;
  readonly teamId: string;
  readonly channels = new Map<string, FakeChannel>();
  readonly users = new Map<string, FakeUser>();
  readonly usergroups = new Map<string, FakeUsergroup>();
  readonly bots = new Map<string, FakeBot>();
  readonly calls: ApiCall[] = [];
  /** Every delivery written to a socket, in order. */
  readonly envelopes: SentEnvelope[] = [];
  /** Completed files v2 uploads. */
  readonly uploads: FakeUpload[] = [];

  private readonly botToken: string;
  private readonly appToken: string;
  private readonly redeliverAfterMs: number;
  private readonly maxRedeliveries: number;
  private readonly pageSize: number;
  private readonly dropWhileDisconnected: boolean;

  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly sockets = new Set<WebSocket>();
  /** Open sockets that got hello, oldest first; events go to the newest. */
  private greeted: WebSocket[] = [];
  /** Sockets told to disconnect: still open, but no longer given events. */
  private readonly retiring = new Set<WebSocket>();
  private helloCount = 0;
  private acceptConnections = true;
  private readonly tickets = new Set<string>();
  private readonly queued: Delivery[] = [];
  private readonly deliveries = new Map<string, Delivery>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  private readonly pendingFiles = new Map<string, PendingFile>();
  private readonly rateLimits: RateLimitRule[] = [];
  private readonly failures: FailureRule[] = [];
  private readonly postRateLimit?: { perSecond: number; burst: number };
  /** Token buckets of the posting limit, by `method channel`. */
  private readonly postBuckets = new Map<string, { tokens: number; at: number }>();
  private postLimitHits = 0;
  private lastMicros = 0;
  private idCounter = 0;
  private closed = false;

  // ─── Lifecycle ───

  static async start(opts: FakeSlackOptions = {}): Promise<FakeSlack> {
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return new FakeSlack(server, opts);
  }

  private constructor(private readonly server: http.Server, opts: FakeSlackOptions) {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('FakeSlack: server has no TCP address');
    this.port = address.port;
    this.apiUrl = `http://127.0.0.1:${this.port}/api/`;
    this.botToken = opts.botToken ?? 'xoxb-test';
    this.appToken = opts.appToken ?? 'xapp-test';
    this.botUserId = opts.botUserId ?? 'UBOT';
    this.botId = opts.botId ?? 'BBOT';
    this.teamId = opts.teamId ?? 'T0FAKE';
    this.redeliverAfterMs = opts.redeliverAfterMs ?? 3000;
    this.maxRedeliveries = opts.maxRedeliveries ?? 3;
    this.pageSize = opts.pageSize ?? 100;
    this.dropWhileDisconnected = opts.dropWhileDisconnected ?? false;
    if (opts.postRateLimit && !(opts.postRateLimit.perSecond > 0 && opts.postRateLimit.burst >= 1)) {
      throw new Error(`FakeSlack: postRateLimit needs perSecond > 0 and burst ≥ 1, found ${JSON.stringify(opts.postRateLimit)}`);
    }
    this.postRateLimit = opts.postRateLimit;
    this.users.set(this.botUserId, { id: this.botUserId, name: 'ims', real_name: 'IMS', is_bot: true });

    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.onRequest(req, res).catch(() => res.destroy());
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', (_err, socket: Duplex) => socket.destroy());
    this.wss.on('error', () => {});
  }

  /** Closes sockets and the server and clears timers. Disconnect SDK clients first, or they keep reconnecting. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const ws of this.sockets) ws.terminate();
    this.wss.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ─── Test set-up ───

  addChannel(c: { id?: string; name: string; is_private?: boolean; is_member?: boolean; members?: string[] }): FakeChannel {
    const id = c.id ?? this.freshId('C', this.channels);
    if (this.channels.has(id)) throw new Error(`FakeSlack: channel id ${id} already exists`);
    if (this.channelNamed(c.name)) throw new Error(`FakeSlack: channel #${c.name} already exists`);
    const channel: FakeChannel = {
      id,
      name: c.name,
      is_private: c.is_private ?? false,
      is_archived: false,
      is_member: false,
      topic: '',
      purpose: '',
      members: new Set(c.members ?? []),
      messages: [],
      pins: new Set(),
    };
    this.setBotMembership(channel, c.is_member ?? true);
    this.channels.set(id, channel);
    return channel;
  }

  addUser(u: { id?: string; name: string; real_name?: string; is_bot?: boolean }): FakeUser {
    const id = u.id ?? this.freshId('U', this.users);
    const user: FakeUser = { id, name: u.name, real_name: u.real_name ?? u.name, is_bot: u.is_bot ?? false };
    this.users.set(id, user);
    return user;
  }

  /** An integration that posts alerts: `bots.info` knows its name. */
  addBot(b: { id?: string; name: string; app_id?: string; user_id?: string }): FakeBot {
    const bot: FakeBot = { ...b, id: b.id ?? this.freshId('B', this.bots) };
    this.bots.set(bot.id, bot);
    return bot;
  }

  addUsergroup(g: { id?: string; handle: string; name?: string }): FakeUsergroup {
    const id = g.id ?? this.freshId('S', this.usergroups);
    const group: FakeUsergroup = { id, handle: g.handle, name: g.name ?? g.handle };
    this.usergroups.set(id, group);
    return group;
  }

  /**
   * A message posted by someone else (a monitoring bot or a human). Like Slack, the `message` event is
   * delivered only when the bot is a member of the channel.
   */
  post(
    channel: string,
    msg: { user?: string; bot_id?: string; subtype?: string; text?: string; attachments?: any[]; blocks?: any[]; thread_ts?: string; ts?: string; username?: string; bot_profile?: Record<string, unknown> },
    opts: { emit?: boolean; eventId?: string } = {},
  ): FakeMessage {
    const ch = this.channelOrThrow(channel);
    const { text = '', ts, ...rest } = msg;
    const message: FakeMessage = { type: 'message', ts: ts === undefined ? this.nextTs() : this.claimTs(ts), text, ...defined(rest) };
    this.store(ch, message);
    if (opts.emit !== false && ch.is_member) this.sendEvent(this.messageEvent(ch, message), { eventId: opts.eventId });
    return message;
  }

  /**
   * Someone else (an integration) edits their message, as Zabbix and Sentry do when an alert resolves: the stored
   * message changes and, like Slack, a hidden `message_changed` event carries the new and the previous message.
   */
  edit(channel: string, ts: string, changes: { text?: string; attachments?: any[]; blocks?: any[] }, opts: { emit?: boolean } = {}): FakeMessage {
    const ch = this.channelOrThrow(channel);
    const message = this.findMessage(ch, ts);
    const previous = this.messageJson(message, false);
    Object.assign(message, defined(changes));
    message.edited = { user: message.user ?? message.bot_id ?? '', ts: this.nextTs() };
    if (ch.is_member && opts.emit !== false) this.emitChange(ch, { subtype: 'message_changed', message: this.messageJson(message, false), previous_message: previous });
    return message;
  }

  react(channel: string, ts: string, name: string, user: string, opts: { emit?: boolean } = {}): void {
    this.changeReaction('reaction_added', channel, ts, name, user, opts.emit ?? true);
  }

  unreact(channel: string, ts: string, name: string, user: string, opts: { emit?: boolean } = {}): void {
    this.changeReaction('reaction_removed', channel, ts, name, user, opts.emit ?? true);
  }

  // ─── Inspection ───

  callsTo(method: string): ApiCall[] {
    return this.calls.filter((call) => call.method === method);
  }

  /** How many calls the posting limit (`postRateLimit`) answered with 429 (the ones `rateLimit` injects are not counted). */
  get postRateLimited(): number {
    return this.postLimitHits;
  }

  /** Oldest first, top-level messages and replies (replies have thread_ts !== ts). */
  messagesIn(channel: string): FakeMessage[] {
    return [...this.channelOrThrow(channel).messages];
  }

  /** Open sockets that got hello (a silenced one no longer counts). */
  get connectionCount(): number {
    return this.greeted.filter((ws) => ws.readyState === WebSocket.OPEN && !this.silenced.has(ws)).length;
  }

  // ─── Fault injection ───

  /** The next `count` calls of `method` (only those for `channel`, if given) answer 429 with Retry-After. */
  rateLimit(method: string, opts: { count: number; retryAfterSec?: number; channel?: string }): void {
    this.rateLimits.push({ method, count: opts.count, retryAfterSec: opts.retryAfterSec ?? 1, channel: opts.channel });
  }

  /** The next `count` calls of `method` answer 200 {ok:false, error}. */
  failNext(method: string, error: string, count = 1): void {
    this.failures.push({ method, error, count });
  }

  /** Sends {"type":"disconnect"} to every open socket; the client closes it and reconnects. */
  disconnect(reason: DisconnectReason = 'warning'): void {
    for (const ws of this.sockets) {
      ws.send(JSON.stringify({ type: 'disconnect', reason, debug_info: { host: 'fake' } }), () => {});
      this.retiring.add(ws);
    }
  }

  /** Abruptly terminates every open socket (no close frame). */
  dropConnections(): void {
    for (const ws of this.sockets) ws.terminate();
  }

  /** false: new sockets get no hello (an outage: the client's start() waits). true: greet the waiting ones. */
  setAcceptConnections(accept: boolean): void {
    this.acceptConnections = accept;
    if (!accept) return;
    for (const ws of this.sockets) {
      if (!this.greeted.includes(ws) && ws.readyState === WebSocket.OPEN) this.greet(ws);
    }
  }

  // ─── Fault switches of the fault suite (test/faults-*.test.ts) ───
  // What production does to a bot: Web API outages, answers lost after the work was done, links that go
  // silent, frames no client expects. Each switch is off until called; the request path and the choice of
  // socket consult them through `faultAnswer`, `takeLostAnswer` and `silenced`.

  private readonly outages: { status: number; until: number; methods?: Set<string> }[] = [];
  private readonly lostAnswers: { method: string; count: number; channel?: string; onLost?: (call: ApiCall) => void }[] = [];
  /** Sockets whose link went silent: nothing is read from them (no pongs, no acks) and no event is written to them. */
  private readonly silenced = new Set<WebSocket>();

  /**
   * For the next `ms`, every Web API call (only `methods`, if given) answers HTTP `status` (a 5xx outage)
   * without doing its work. The calls are recorded with that status.
   */
  outage(status: number, ms: number, opts: { methods?: string[] } = {}): void {
    this.outages.push({ status, until: Date.now() + ms, methods: opts.methods && new Set(opts.methods) });
  }

  /**
   * The next `count` calls of `method` (only those for `channel`, if given) do their work (a post is made),
   * then the connection is cut without an answer: the caller cannot know it worked. Such calls are recorded
   * with status 0; `onLost` runs just before the cut (to kill the bot at exactly that moment).
   */
  loseAnswers(method: string, count = 1, opts: { channel?: string; onLost?: (call: ApiCall) => void } = {}): void {
    this.lostAnswers.push({ method, count, channel: opts.channel, onLost: opts.onLost });
  }

  /**
   * Every open socket goes silent, as a link through a dead NAT or proxy does: it stays open, but the server
   * reads nothing from it (pings get no pong, acks are not seen, so their events are redelivered) and writes
   * no event to it. The client has to notice by its pings and reconnect; new sockets are not silenced.
   */
  silence(): void {
    for (const ws of this.sockets) {
      this.silenced.add(ws);
      ws.pause();
    }
  }

  /** How many hellos were sent since start: a client's new connection shows as one more. */
  get hellos(): number {
    return this.helloCount;
  }

  /** Writes `frame` as it is (not JSON, unknown types, broken envelopes…) to the socket that gets events. false if none is connected. */
  sendRawFrame(frame: string | Buffer): boolean {
    const socket = this.activeSocket();
    if (!socket) return false;
    socket.send(frame, () => {});
    return true;
  }

  /** The status of a Web API call during an outage, or undefined. */
  private faultAnswer(method: string): number | undefined {
    const now = Date.now();
    return this.outages.find((o) => o.until > now && (!o.methods || o.methods.has(method)))?.status;
  }

  private takeLostAnswer(method: string, params: Params): { onLost?: (call: ApiCall) => void } | undefined {
    const channel = params.channel ?? params.channel_id;
    const rule = this.lostAnswers.find((r) => r.method === method && r.count > 0 && (r.channel === undefined || r.channel === channel));
    if (!rule) return undefined;
    rule.count--;
    return rule;
  }

  // ─── Fault switches for tokens and reachability (test/post-once.test.ts, test/process-faults.test.ts) ───
  // A token Slack stops accepting, and a Slack that cannot be reached at all (connection refused).

  /** Tokens Slack no longer accepts, with the error it answers for them. */
  private readonly revoked = new Map<string, string>();

  /**
   * From now on Slack refuses the app's (`'app'`) or the bot's (`'bot'`) token with `error` on every call, as
   * after a revocation or an uninstall. Revoking the app token also closes its sockets, as Slack does, so the
   * client has to reconnect (and is refused).
   */
  revokeToken(which: 'app' | 'bot', error = 'invalid_auth'): void {
    this.revoked.set(which === 'app' ? this.appToken : this.botToken, error);
    if (which === 'app') for (const ws of this.sockets) ws.terminate();
  }

  /**
   * false: the port stops listening and every open connection (HTTP and sockets) is cut, so clients get
   * "connection refused", as when Slack (or the way to it) is down. true: listening again on the same port.
   */
  async setReachable(reachable: boolean): Promise<void> {
    if (!reachable) {
      this.server.close();
      this.server.closeAllConnections();
      for (const ws of this.sockets) ws.terminate();
      return;
    }
    if (this.server.listening) return;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => { this.server.off('error', reject); resolve(); });
    });
  }

  // ─── Waiting ───

  /** Resolves when the count-th hello since start has been sent, or (no count) when a greeted socket is open. */
  async waitForConnection(count?: number, timeoutMs = 5000): Promise<void> {
    if (count === undefined) await this.waitFor(() => this.connectionCount > 0, 'a socket connection', timeoutMs);
    else await this.waitFor(() => this.helloCount >= count, `socket connection #${count}`, timeoutMs);
  }

  async waitFor<T>(predicate: () => T | undefined | false | null, what = 'a condition', timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = predicate();
      if (value) return value as T;
      if (Date.now() >= deadline) throw new Error(`FakeSlack: timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(10);
    }
  }

  // ─── Events over Socket Mode ───

  /** Delivers any event in an events_api envelope to the newest connected socket (queued if none). */
  sendEvent(event: any, opts: { eventId?: string; retryAttempt?: number } = {}): SentEnvelope {
    const pending: PendingEvent = {
      eventId: opts.eventId ?? this.newId('Ev'),
      event,
      eventTime: Math.floor(Date.now() / 1000),
      nextAttempt: opts.retryAttempt ?? 0,
      acked: false,
    };
    return this.deliver(pending);
  }

  private deliver(pending: PendingEvent): SentEnvelope {
    const envelope: SentEnvelope = {
      envelope_id: randomUUID(),
      event_id: pending.eventId,
      event: pending.event,
      retry_attempt: pending.nextAttempt++,
      sentAt: 0,
    };
    const delivery = { envelope, pending };
    this.deliveries.set(envelope.envelope_id, delivery);
    const socket = this.activeSocket();
    if (socket) this.transmit(socket, delivery);
    else if (!this.dropWhileDisconnected) this.queued.push(delivery);
    return envelope;
  }

  private transmit(socket: WebSocket, { envelope, pending }: Delivery): void {
    socket.send(JSON.stringify(this.envelopeFrame(envelope, pending)), () => {});
    envelope.sentAt = Date.now();
    this.envelopes.push(envelope);
    this.scheduleRedelivery(pending);
  }

  private scheduleRedelivery(pending: PendingEvent): void {
    if (pending.nextAttempt > this.maxRedeliveries) return;
    if (pending.timer) clearTimeout(pending.timer);
    pending.timer = this.later(this.redeliverAfterMs, () => {
      if (!pending.acked) this.deliver(pending);
    });
  }

  private envelopeFrame(envelope: SentEnvelope, pending: PendingEvent): object {
    return {
      envelope_id: envelope.envelope_id,
      type: 'events_api',
      accepts_response_payload: false,
      retry_attempt: envelope.retry_attempt,
      retry_reason: envelope.retry_attempt > 0 ? 'timeout' : '',
      payload: {
        token: 'fake-verification-token',
        team_id: this.teamId,
        api_app_id: APP_ID,
        event: pending.event,
        type: 'event_callback',
        event_id: pending.eventId,
        event_time: pending.eventTime,
        authorizations: [{ team_id: this.teamId, user_id: this.botUserId, is_bot: true, is_enterprise_install: false }],
        is_ext_shared_channel: false,
      },
    };
  }

  /** Like Slack with several connections: one socket gets each event, here the newest greeted one. */
  private activeSocket(): WebSocket | undefined {
    return this.greeted.findLast((ws) => ws.readyState === WebSocket.OPEN && !this.retiring.has(ws) && !this.silenced.has(ws));
  }

  private flushQueue(): void {
    const socket = this.activeSocket();
    if (!socket) return;
    for (const delivery of this.queued.splice(0)) this.transmit(socket, delivery);
  }

  private onAck(envelopeId: unknown): void {
    const delivery = typeof envelopeId === 'string' ? this.deliveries.get(envelopeId) : undefined;
    if (!delivery) return;
    delivery.envelope.ackedAt ??= Date.now();
    delivery.pending.acked = true;
    if (delivery.pending.timer) clearTimeout(delivery.pending.timer);
  }

  // ─── Socket connections ───

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const ticket = url.searchParams.get('ticket') ?? '';
    if (url.pathname !== '/link' || !this.tickets.delete(ticket)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws));
  }

  private onConnection(ws: WebSocket): void {
    if (this.closed) return void ws.terminate();
    this.sockets.add(ws);
    ws.on('error', () => {});
    ws.on('message', (data: RawData) => {
      const frame = parseJson(rawDataText(data));
      if (frame && typeof frame === 'object') this.onAck((frame as { envelope_id?: unknown }).envelope_id);
    });
    ws.on('close', () => {
      this.sockets.delete(ws);
      this.retiring.delete(ws);
      this.silenced.delete(ws);
      this.greeted = this.greeted.filter((other) => other !== ws);
    });
    if (this.acceptConnections) this.greet(ws);
  }

  private greet(ws: WebSocket): void {
    this.greeted.push(ws);
    this.helloCount++;
    const hello = {
      type: 'hello',
      num_connections: this.greeted.length,
      debug_info: { host: 'fake', approximate_connection_time: 18060 },
      connection_info: { app_id: APP_ID },
    };
    ws.send(JSON.stringify(hello), () => {});
    this.flushQueue();
  }

  // ─── HTTP routing ───

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const body = await readBody(req);
    if (url.pathname.startsWith('/api/')) this.onApiRequest(req, res, url, body);
    else if (url.pathname.startsWith('/upload/')) this.onUpload(req, res, url, body);
    else res.writeHead(404).end();
  }

  private onApiRequest(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer): void {
    const at = Date.now();
    const method = decodeURIComponent(url.pathname.slice('/api/'.length));
    const params = parseParams(req, url, body);
    const token = bearerToken(req) ?? String(params.token ?? '');
    delete params.token;
    const outage = this.faultAnswer(method);
    if (outage !== undefined) {
      this.calls.push({ method, params, token, at, status: outage, response: undefined });
      res.writeHead(outage, { 'Content-Type': 'text/html' }).end(`<html><body>${outage} upstream unavailable</body></html>`);
      return;
    }
    const { status, response, headers } = this.answer(method, params, token);
    const lost = status === 200 && response.ok ? this.takeLostAnswer(method, params) : undefined;
    if (lost) {
      const call: ApiCall = { method, params, token, at, status: 0, response };
      this.calls.push(call);
      lost.onLost?.(call);
      req.socket.destroy();
      return;
    }
    this.calls.push({ method, params, token, at, status, response });
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers }).end(JSON.stringify(response));
  }

  private answer(method: string, params: Params, token: string): { status: number; response: any; headers?: Record<string, string> } {
    const handler = this.methods[method];
    if (!handler) return { status: 200, response: { ok: false, error: 'unknown_method' } };
    const expected = method === 'apps.connections.open' ? this.appToken : this.botToken;
    const revoked = this.revoked.get(token);
    if (revoked) return { status: 200, response: { ok: false, error: revoked } };
    if (token !== expected) return { status: 200, response: { ok: false, error: token ? 'invalid_auth' : 'not_authed' } };
    const retryAfter = this.takeRateLimit(method, params) ?? this.takePostingToken(method, params);
    if (retryAfter !== undefined) {
      return { status: 429, response: { ok: false, error: 'ratelimited' }, headers: { 'Retry-After': String(retryAfter) } };
    }
    const injected = this.takeFailure(method);
    if (injected) return { status: 200, response: { ok: false, error: injected } };
    try {
      return { status: 200, response: { ok: true, ...handler(params) } };
    } catch (error) {
      if (error instanceof SlackError) return { status: 200, response: { ok: false, error: error.code } };
      console.error(`FakeSlack: ${method} crashed`, error); // a bug in the fake, not a Slack answer
      return { status: 200, response: { ok: false, error: 'internal_error' } };
    }
  }

  private takeRateLimit(method: string, params: Params): number | undefined {
    const channel = params.channel ?? params.channel_id;
    const rule = this.rateLimits.find((r) => r.method === method && r.count > 0 && (r.channel === undefined || r.channel === channel));
    if (!rule) return undefined;
    rule.count--;
    return rule.retryAfterSec;
  }

  /** The posting limit: undefined when the call may go (its token taken), else the Retry-After seconds of its 429. */
  private takePostingToken(method: string, params: Params): number | undefined {
    const limit = this.postRateLimit;
    const channel = params.channel ?? params.channel_id;
    if (!limit || (method !== 'chat.postMessage' && method !== 'chat.update') || typeof channel !== 'string') return undefined;
    const key = `${method} ${channel}`;
    const now = Date.now();
    const bucket = this.postBuckets.get(key) ?? { tokens: limit.burst, at: now };
    bucket.tokens = Math.min(limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * limit.perSecond);
    bucket.at = now;
    this.postBuckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    this.postLimitHits++;
    return Math.max(1, Math.ceil((1 - bucket.tokens) / limit.perSecond));
  }

  private takeFailure(method: string): string | undefined {
    const rule = this.failures.find((r) => r.method === method && r.count > 0);
    if (!rule) return undefined;
    rule.count--;
    return rule.error;
  }

  private onUpload(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer): void {
    const file = this.pendingFiles.get(url.pathname.slice('/upload/'.length));
    if (!file) return void res.writeHead(404).end();
    const content = uploadedContent(req, body);
    file.content = content.toString('utf8');
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`OK - ${content.length}`);
  }

  // ─── Web API methods ───

  private readonly methods: Record<string, Handler> = {
    'auth.test': () => this.authTest(),
    'apps.connections.open': () => this.connectionsOpen(),
    'chat.postMessage': (p) => this.chatPostMessage(p),
    'chat.update': (p) => this.chatUpdate(p),
    'chat.delete': (p) => this.chatDelete(p),
    'chat.getPermalink': (p) => this.chatGetPermalink(p),
    'conversations.list': (p) => this.conversationsList(p),
    'conversations.history': (p) => this.conversationsHistory(p),
    'conversations.replies': (p) => this.conversationsReplies(p),
    'conversations.info': (p) => ({ channel: this.channelJson(this.visibleChannel(p.channel)) }),
    'conversations.create': (p) => this.conversationsCreate(p),
    'conversations.join': (p) => this.conversationsJoin(p),
    'conversations.invite': (p) => this.conversationsInvite(p),
    'conversations.kick': (p) => this.conversationsKick(p),
    'conversations.archive': (p) => this.conversationsArchive(p),
    'conversations.unarchive': (p) => this.conversationsUnarchive(p),
    'conversations.setTopic': (p) => this.setChannelText(p, 'topic'),
    'conversations.setPurpose': (p) => this.setChannelText(p, 'purpose'),
    'reactions.add': (p) => this.reactionsAdd(p),
    'reactions.remove': (p) => this.reactionsRemove(p),
    'reactions.get': (p) => this.reactionsGet(p),
    'pins.add': (p) => this.pinsAdd(p),
    'pins.remove': (p) => this.pinsRemove(p),
    'pins.list': (p) => this.pinsList(p),
    'users.list': (p) => this.usersList(p),
    'users.info': (p) => ({ user: this.userJson(this.users.get(p.user) ?? fail('user_not_found')) }),
    'bots.info': (p) => {
      const bot = this.bots.get(p.bot) ?? fail('bot_not_found');
      return { bot: { id: bot.id, deleted: false, name: bot.name, updated: 0, ...defined({ app_id: bot.app_id, user_id: bot.user_id }), icons: {} } };
    },
    'usergroups.list': () => ({ usergroups: [...this.usergroups.values()].map((g) => ({ ...g, team_id: this.teamId, is_usergroup: true })) }),
    'files.getUploadURLExternal': (p) => this.filesGetUploadUrl(p),
    'files.completeUploadExternal': (p) => this.filesCompleteUpload(p),
  };

  private authTest() {
    return { url: `${PERMALINK_HOST}/`, team: 'Fake Team', user: 'ims', team_id: this.teamId, user_id: this.botUserId, bot_id: this.botId };
  }

  private connectionsOpen() {
    const ticket = randomUUID();
    this.tickets.add(ticket);
    return { url: `ws://127.0.0.1:${this.port}/link?ticket=${ticket}` };
  }

  // chat.*

  private chatPostMessage(p: Params) {
    const ch = this.writableChannel(p.channel);
    if (!p.text && !p.blocks?.length && !p.attachments?.length) fail('no_text');
    const threadTs = p.thread_ts ? this.threadTsFor(ch, p.thread_ts) : undefined;
    const message: FakeMessage = {
      type: 'message',
      ts: this.nextTs(),
      user: this.botUserId,
      bot_id: this.botId,
      text: String(p.text ?? ''),
      ...defined({ thread_ts: threadTs, blocks: p.blocks, attachments: p.attachments, metadata: p.metadata }),
    };
    this.store(ch, message);
    this.sendEvent(this.messageEvent(ch, message));
    return { channel: ch.id, ts: message.ts, message: this.messageJson(message, true) };
  }

  private chatUpdate(p: Params) {
    const ch = this.writableChannel(p.channel);
    const message = this.findMessage(ch, p.ts);
    if (message.bot_id !== this.botId) fail('cant_update_message');
    const previous = this.messageJson(message, false);
    Object.assign(message, defined({ text: p.text, blocks: p.blocks, attachments: p.attachments, metadata: p.metadata }));
    message.edited = { user: this.botUserId, ts: this.nextTs() };
    this.emitChange(ch, { subtype: 'message_changed', message: this.messageJson(message, false), previous_message: previous });
    return { channel: ch.id, ts: message.ts, text: message.text, message: this.messageJson(message, true) };
  }

  private chatDelete(p: Params) {
    const ch = this.writableChannel(p.channel);
    const message = this.findMessage(ch, p.ts);
    if (message.bot_id !== this.botId) fail('cant_delete_message');
    ch.messages.splice(ch.messages.indexOf(message), 1);
    ch.pins.delete(message.ts);
    if (!isTopLevel(message)) this.countReply(ch, message.thread_ts!, -1);
    this.emitChange(ch, { subtype: 'message_deleted', deleted_ts: message.ts, previous_message: this.messageJson(message, false) });
    return { channel: ch.id, ts: message.ts };
  }

  private chatGetPermalink(p: Params) {
    const ch = this.visibleChannel(p.channel);
    const message = this.findMessage(ch, p.message_ts);
    const base = `${PERMALINK_HOST}/archives/${ch.id}/p${message.ts.replace('.', '')}`;
    const permalink = isTopLevel(message) ? base : `${base}?thread_ts=${message.thread_ts}&cid=${ch.id}`;
    return { channel: ch.id, permalink };
  }

  // conversations.*

  private conversationsList(p: Params) {
    const types = String(p.types ?? 'public_channel').split(',').map((t) => t.trim());
    const listed = [...this.channels.values()].filter(
      (c) =>
        (c.is_private ? types.includes('private_channel') && c.is_member : types.includes('public_channel')) &&
        !(isTrue(p.exclude_archived) && c.is_archived),
    );
    const { page, nextCursor } = paginate(listed, p, (c) => c.id, this.limitOf(p, 1000));
    return { channels: page.map((c) => this.channelJson(c)), response_metadata: { next_cursor: nextCursor } };
  }

  private conversationsHistory(p: Params) {
    const ch = this.memberChannel(p.channel);
    const inRange = rangeFilter(p);
    const newestFirst = ch.messages.filter((m) => isTopLevel(m) && inRange(m)).reverse();
    const { page, nextCursor } = paginate(newestFirst, p, (m) => m.ts, this.limitOf(p, 999));
    return {
      messages: page.map((m) => this.messageJson(m, isTrue(p.include_all_metadata))),
      has_more: nextCursor !== '',
      pin_count: ch.pins.size,
      response_metadata: { next_cursor: nextCursor },
    };
  }

  private conversationsReplies(p: Params) {
    const ch = this.memberChannel(p.channel);
    const root = this.findMessage(ch, this.threadTsFor(ch, p.ts));
    const inRange = rangeFilter(p);
    const replies = ch.messages.filter((m) => m.thread_ts === root.ts && m.ts !== root.ts && inRange(m));
    const { page, nextCursor } = paginate([root, ...replies], p, (m) => m.ts, this.limitOf(p, 1000));
    return {
      messages: page.map((m) => this.messageJson(m, isTrue(p.include_all_metadata))),
      has_more: nextCursor !== '',
      response_metadata: { next_cursor: nextCursor },
    };
  }

  private conversationsCreate(p: Params) {
    const name = String(p.name ?? '');
    validateChannelName(name);
    if (this.channelNamed(name)) fail('name_taken');
    const ch = this.addChannel({ name, is_private: isTrue(p.is_private) });
    return { channel: this.channelJson(ch) };
  }

  private conversationsJoin(p: Params) {
    const ch = this.findChannel(p.channel);
    if (!ch || (ch.is_private && !ch.is_member)) fail('channel_not_found');
    if (ch.is_private) fail('method_not_supported_for_channel_type');
    if (ch.is_archived) fail('is_archived');
    const warning = ch.is_member ? { warning: 'already_in_channel' } : {};
    this.setBotMembership(ch, true);
    return { channel: this.channelJson(ch), ...warning };
  }

  private conversationsInvite(p: Params) {
    const ch = this.writableChannel(p.channel);
    const ids = String(p.users ?? '').split(',').map((id) => id.trim()).filter(Boolean);
    if (ids.length === 0) fail('no_user');
    if (ids.includes(this.botUserId)) fail('cant_invite_self');
    if (ids.some((id) => !this.users.has(id))) fail('user_not_found');
    if (ids.every((id) => ch.members.has(id))) fail('already_in_channel');
    for (const id of ids) ch.members.add(id);
    return { channel: this.channelJson(ch) };
  }

  private conversationsKick(p: Params) {
    const ch = this.writableChannel(p.channel);
    if (p.user === this.botUserId) fail('cant_kick_self');
    if (!this.users.has(p.user)) fail('user_not_found');
    if (!ch.members.has(p.user)) fail('not_in_channel');
    ch.members.delete(p.user);
    return {};
  }

  private conversationsArchive(p: Params) {
    const ch = this.memberChannel(p.channel);
    if (ch.is_archived) fail('already_archived');
    ch.is_archived = true;
    return {};
  }

  private conversationsUnarchive(p: Params) {
    const ch = this.visibleChannel(p.channel);
    if (!ch.is_archived) fail('not_archived');
    ch.is_archived = false;
    return {};
  }

  private setChannelText(p: Params, field: 'topic' | 'purpose') {
    const ch = this.writableChannel(p.channel);
    const text = String(p[field] ?? '');
    if (text.length > 250) fail('too_long');
    ch[field] = text;
    return { channel: this.channelJson(ch) };
  }

  // reactions.* and pins.*

  private reactionsAdd(p: Params) {
    const ch = this.writableChannel(p.channel);
    const name = String(p.name ?? '');
    if (!name) fail('invalid_name');
    const message = this.findMessage(ch, p.timestamp);
    if (!this.addReaction(message, name, this.botUserId)) fail('already_reacted');
    this.sendEvent(this.reactionEvent('reaction_added', ch, message, name, this.botUserId));
    return {};
  }

  private reactionsRemove(p: Params) {
    const ch = this.writableChannel(p.channel);
    const name = String(p.name ?? '');
    if (!name) fail('invalid_name');
    const message = this.findMessage(ch, p.timestamp);
    if (!this.removeReaction(message, name, this.botUserId)) fail('no_reaction');
    this.sendEvent(this.reactionEvent('reaction_removed', ch, message, name, this.botUserId));
    return {};
  }

  private reactionsGet(p: Params) {
    const ch = this.memberChannel(p.channel);
    const message = this.findMessage(ch, p.timestamp);
    return { type: 'message', channel: ch.id, message: this.messageJson(message, false) };
  }

  private pinsAdd(p: Params) {
    const ch = this.writableChannel(p.channel);
    const message = this.findMessage(ch, p.timestamp);
    if (ch.pins.has(message.ts)) fail('already_pinned');
    ch.pins.add(message.ts);
    return {};
  }

  private pinsRemove(p: Params) {
    const ch = this.writableChannel(p.channel);
    if (!ch.pins.delete(String(p.timestamp))) fail('no_pin');
    return {};
  }

  private pinsList(p: Params) {
    const ch = this.memberChannel(p.channel);
    const pinned = ch.messages.filter((m) => ch.pins.has(m.ts));
    const items = pinned.map((m) => ({ type: 'message', channel: ch.id, created_by: this.botUserId, message: this.messageJson(m, false) }));
    return { items };
  }

  // users.*

  private usersList(p: Params) {
    const { page, nextCursor } = paginate([...this.users.values()], p, (u) => u.id, this.limitOf(p, 1000));
    return { members: page.map((u) => this.userJson(u)), response_metadata: { next_cursor: nextCursor } };
  }

  // files.* (the v2 upload flow: get an upload URL, POST the bytes there, complete)

  private filesGetUploadUrl(p: Params) {
    const filename = String(p.filename ?? '');
    const length = Number(p.length);
    if (!filename || !Number.isInteger(length) || length < 0) fail('invalid_arguments');
    const id = this.newId('F');
    this.pendingFiles.set(id, { filename, length });
    return { upload_url: `http://127.0.0.1:${this.port}/upload/${id}`, file_id: id };
  }

  private filesCompleteUpload(p: Params) {
    const requested: { id: string; title?: string }[] = Array.isArray(p.files) && p.files.length ? p.files : fail('invalid_arguments');
    const ch = p.channel_id ? this.writableChannel(p.channel_id) : undefined;
    const threadTs = ch && p.thread_ts ? this.threadTsFor(ch, p.thread_ts) : undefined;
    const uploads = requested.map(({ id, title }): FakeUpload => {
      const file = this.pendingFiles.get(id);
      if (file?.content === undefined) fail('file_not_found');
      const where = { title, channel: ch?.id, thread_ts: threadTs, initial_comment: p.initial_comment };
      return { id, filename: file.filename, content: file.content, ...defined(where) };
    });
    for (const upload of uploads) this.pendingFiles.delete(upload.id);
    this.uploads.push(...uploads);
    const files = uploads.map((u) => this.fileJson(u));
    if (ch) this.postFileShare(ch, files, p, threadTs);
    return { files: files.map(({ id, title }) => ({ id, title })) };
  }

  private postFileShare(ch: FakeChannel, files: any[], p: Params, threadTs: string | undefined): void {
    const message: FakeMessage = {
      type: 'message',
      subtype: 'file_share',
      ts: this.nextTs(),
      user: this.botUserId,
      bot_id: this.botId,
      text: String(p.initial_comment ?? ''),
      files,
      ...defined({ thread_ts: threadTs, blocks: p.blocks }),
    };
    this.store(ch, message);
    this.sendEvent(this.messageEvent(ch, message));
  }

  // ─── Channel and message state ───

  private findChannel(idOrName: unknown): FakeChannel | undefined {
    if (typeof idOrName !== 'string') return undefined;
    return this.channels.get(idOrName) ?? this.channelNamed(idOrName.replace(/^#/, ''));
  }

  private channelNamed(name: string): FakeChannel | undefined {
    return [...this.channels.values()].find((c) => c.name === name);
  }

  private channelOrThrow(idOrName: string): FakeChannel {
    const ch = this.findChannel(idOrName);
    if (!ch) throw new Error(`FakeSlack: no channel ${idOrName}`);
    return ch;
  }

  /** A private channel does not exist for the bot unless it is a member. */
  private visibleChannel(idOrName: unknown): FakeChannel {
    const ch = this.findChannel(idOrName);
    if (!ch || (ch.is_private && !ch.is_member)) fail('channel_not_found');
    return ch;
  }

  private memberChannel(idOrName: unknown): FakeChannel {
    const ch = this.visibleChannel(idOrName);
    if (!ch.is_member) fail('not_in_channel');
    return ch;
  }

  private writableChannel(idOrName: unknown): FakeChannel {
    const ch = this.memberChannel(idOrName);
    if (ch.is_archived) fail('is_archived');
    return ch;
  }

  private setBotMembership(ch: FakeChannel, member: boolean): void {
    ch.is_member = member;
    if (member) ch.members.add(this.botUserId);
    else ch.members.delete(this.botUserId);
  }

  private findMessage(ch: FakeChannel, ts: unknown): FakeMessage {
    return ch.messages.find((m) => m.ts === ts) ?? fail('message_not_found');
  }

  /** The thread a reply to `ts` joins: replying to a reply joins its parent's thread. Stricter than Slack: no parent, no post. */
  private threadTsFor(ch: FakeChannel, ts: unknown): string {
    const target = ch.messages.find((m) => m.ts === ts) ?? fail('thread_not_found');
    return target.thread_ts ?? target.ts;
  }

  /** Inserts in ts order; a reply bumps its parent's reply_count. */
  private store(ch: FakeChannel, message: FakeMessage): void {
    if (ch.messages.some((m) => m.ts === message.ts)) throw new Error(`FakeSlack: ts ${message.ts} already used in ${ch.id}`);
    // Messages are kept in ts order; new ones almost always go last, so check that before searching.
    const t = micros(message.ts);
    const last = ch.messages.at(-1);
    if (!last || micros(last.ts) <= t) ch.messages.push(message);
    else {
      let low = 0;
      let high = ch.messages.length;
      while (low < high) {
        const mid = (low + high) >>> 1;
        if (micros(ch.messages[mid].ts) > t) high = mid;
        else low = mid + 1;
      }
      ch.messages.splice(low, 0, message);
    }
    if (!isTopLevel(message)) this.countReply(ch, message.thread_ts!, +1);
  }

  private countReply(ch: FakeChannel, parentTs: string, delta: number): void {
    const parent = ch.messages.find((m) => m.ts === parentTs);
    if (!parent) return;
    parent.thread_ts = parent.ts;
    parent.reply_count = Math.max(0, (parent.reply_count ?? 0) + delta);
  }

  private addReaction(message: FakeMessage, name: string, user: string): boolean {
    message.reactions ??= [];
    let reaction = message.reactions.find((r) => r.name === name);
    if (!reaction) message.reactions.push((reaction = { name, users: [], count: 0 }));
    if (reaction.users.includes(user)) return false;
    reaction.users.push(user);
    reaction.count = reaction.users.length;
    return true;
  }

  private removeReaction(message: FakeMessage, name: string, user: string): boolean {
    const reaction = message.reactions?.find((r) => r.name === name);
    if (!reaction?.users.includes(user)) return false;
    reaction.users = reaction.users.filter((u) => u !== user);
    reaction.count = reaction.users.length;
    if (reaction.count === 0) message.reactions = message.reactions!.filter((r) => r !== reaction);
    return true;
  }

  private changeReaction(type: 'reaction_added' | 'reaction_removed', channel: string, ts: string, name: string, user: string, emit: boolean): void {
    const ch = this.channelOrThrow(channel);
    const message = ch.messages.find((m) => m.ts === ts);
    if (!message) throw new Error(`FakeSlack: no message ${ts} in ${ch.id}`);
    const changed = type === 'reaction_added' ? this.addReaction(message, name, user) : this.removeReaction(message, name, user);
    if (changed && emit && ch.is_member) this.sendEvent(this.reactionEvent(type, ch, message, name, user));
  }

  // ─── Ids and timestamps ───

  /** Strictly increasing across the workspace, so unique per channel. */
  private nextTs(): string {
    this.lastMicros = Math.max(Date.now() * 1000, this.lastMicros + 1);
    return formatTs(this.lastMicros);
  }

  /** A caller-chosen ts; later generated ones stay newer than it. */
  private claimTs(ts: string): string {
    this.lastMicros = Math.max(this.lastMicros, micros(ts));
    return ts;
  }

  private newId(prefix: string): string {
    return `${prefix}${String(++this.idCounter).padStart(8, '0')}`;
  }

  private freshId(prefix: string, taken: Map<string, unknown>): string {
    let id = this.newId(prefix);
    while (taken.has(id)) id = this.newId(prefix);
    return id;
  }

  private later(ms: number, fn: () => void): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) fn();
    }, ms);
    timer.unref();
    this.timers.add(timer);
    return timer;
  }

  // ─── JSON shapes ───

  /** A copy, so callers cannot change the stored message; metadata only when asked, as Slack does. */
  private messageJson(m: FakeMessage, withMetadata: boolean): Record<string, any> {
    const { metadata, reactions, ...rest } = m;
    const json: Record<string, any> = structuredClone(rest);
    if (reactions?.length) json.reactions = structuredClone(reactions);
    if (withMetadata && metadata !== undefined) json.metadata = structuredClone(metadata);
    return json;
  }

  private messageEvent(ch: FakeChannel, m: FakeMessage): Record<string, any> {
    return { ...this.messageJson(m, false), channel: ch.id, channel_type: ch.is_private ? 'group' : 'channel', event_ts: m.ts, team: this.teamId };
  }

  /** message_changed / message_deleted: hidden events with their own ts. */
  private emitChange(ch: FakeChannel, fields: Record<string, unknown>): void {
    const ts = this.nextTs();
    this.sendEvent({ type: 'message', hidden: true, channel: ch.id, channel_type: ch.is_private ? 'group' : 'channel', ts, event_ts: ts, ...fields });
  }

  private reactionEvent(type: string, ch: FakeChannel, m: FakeMessage, reaction: string, user: string): Record<string, any> {
    return { type, user, reaction, item: { type: 'message', channel: ch.id, ts: m.ts }, ...defined({ item_user: m.user }), event_ts: this.nextTs() };
  }

  private channelJson(ch: FakeChannel): Record<string, any> {
    return {
      id: ch.id,
      name: ch.name,
      name_normalized: ch.name,
      is_channel: !ch.is_private,
      is_group: false,
      is_im: false,
      is_mpim: false,
      is_private: ch.is_private,
      is_archived: ch.is_archived,
      is_general: false,
      is_member: ch.is_member,
      num_members: ch.members.size,
      topic: { value: ch.topic, creator: '', last_set: 0 },
      purpose: { value: ch.purpose, creator: '', last_set: 0 },
    };
  }

  private userJson(u: FakeUser): Record<string, any> {
    return {
      id: u.id,
      team_id: this.teamId,
      name: u.name,
      real_name: u.real_name,
      deleted: u.deleted ?? false,
      is_bot: u.is_bot,
      profile: { real_name: u.real_name, display_name: u.name },
    };
  }

  private fileJson(u: FakeUpload): Record<string, any> {
    return {
      id: u.id,
      name: u.filename,
      title: u.title ?? u.filename,
      mimetype: 'text/plain',
      filetype: 'text',
      size: Buffer.byteLength(u.content),
      user: this.botUserId,
      permalink: `${PERMALINK_HOST}/files/${this.botUserId}/${u.id}/${u.filename}`,
    };
  }

  private limitOf(p: Params, max: number): number {
    const limit = Number(p.limit);
    return Math.min(Number.isInteger(limit) && limit > 0 ? limit : this.pageSize, max);
  }
}

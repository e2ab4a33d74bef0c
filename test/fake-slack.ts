/**
 * FakeSlack: a local Slack for tests. The Web API over HTTP and Socket Mode over WebSocket, both on
 * 127.0.0.1 and a random port, so the REAL @slack/web-api and @slack/socket-mode clients can talk to it
 * (`slackApiUrl: fake.apiUrl`). The protocol facts it honours are in ../shared/docs/slack-protocol.md beside the project.
 * The person's side of interactivity is here too: `click`, `choose`, `slash`, `submitView`, `clickInView` and
 * `openHome` send the envelopes Slack sends, and response_urls are served on the same port (see "Interactivity").
 * Several connections with the app token (several instances) share the envelopes as Slack shares them: each to
 * one open connection (`connectionChoice`), an unacked event redelivered maybe elsewhere, and what a connection
 * that died had not acked sent again to another at once (`envelopes[i].connection`, `openConnections`).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
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
  /** Member user ids, as `usergroups.users.list` answers them (and `usergroups.list` with `include_users`). */
  users?: string[];
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
  /** The connection it was written to (its number: connection n got the n-th hello); undefined while it waits. */
  connection?: number;
  ackedAt?: number;
  /** The payload of the app's ack (`{envelope_id, payload}`), once acked. */
  ack?: Record<string, any>;
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

/** An ephemeral message: shown to one person in a channel, never part of its history. */
export interface FakeEphemeral {
  channel: string;
  /** The one person who sees it. */
  user: string;
  /** Its `message_ts`: a click on it carries this as `container.message_ts`. */
  ts: string;
  text: string;
  blocks?: any[];
  attachments?: any[];
  thread_ts?: string;
  /** How it arrived: `chat.postEphemeral`, a POST to a response_url, or a slash command's ack. */
  via: 'chat.postEphemeral' | 'response_url' | 'ack';
}

/** A modal or a Home tab the app opened, pushed or published. */
export interface FakeView {
  id: string;
  type: 'modal' | 'home';
  /** Whose modal or Home tab it is. */
  user: string;
  /** The view as the app last sent it (blocks unchanged). */
  view: Record<string, any>;
  /** Changes with every update; `views.update` / `views.publish` given an older one answer `hash_conflict`. */
  hash: string;
  root_view_id: string;
  previous_view_id: string | null;
  /** A modal is open until a submission closes it (an empty ack) or clears its stack; a Home tab always is. */
  open: boolean;
  /** The errors of the last `response_action: 'errors'` ack, by block_id. */
  errors?: Record<string, string>;
}

/** One response to an interaction: a POST to its response_url, or the message a slash command's ack carried. */
export interface FakeResponse {
  url: string;
  via: 'response_url' | 'ack';
  /** The JSON body (the ack's payload for `via: 'ack'`); the raw text when it was not JSON. */
  body: any;
  at: number;
  /** HTTP status the fake answered: 200, or 4xx when refused (an ack's response is always 200). */
  status: number;
  /** What it did, in order: a `delete_original` with a new message both deletes and posts. Empty when refused. */
  did: ('ephemeral' | 'in_channel' | 'replaced' | 'deleted')[];
  /** The message posted, replaced or deleted (the ephemeral's ts for an ephemeral). */
  channel?: string;
  ts?: string;
  /** Why it was refused: `Expired url` (used 5 times, or over 30 minutes old), `no_text`, `invalid_blocks`… */
  error?: string;
}

/** An `interactive` or `slash_commands` envelope written to a socket (events_api ones are in `envelopes`). */
export interface SentInteraction {
  envelope_id: string;
  type: 'interactive' | 'slash_commands';
  payload: any;
  sentAt: number;
  /** The connection it was written to (connection n got the n-th hello). */
  connection?: number;
  ackedAt?: number;
  ack?: Record<string, any>;
}

/** What a person's action (a click, a menu choice, a command, a submission, opening Home) came to. */
export interface Interaction {
  envelope_id: string;
  /** The payload as Slack sent it to the app. */
  payload: any;
  /** The payload of the app's ack (`{}` when it acked with none). */
  ack: Record<string, any>;
  trigger_id?: string;
  /** The response_url handed out with it (clicks on messages and slash commands have one). */
  response_url?: string;
  /** The responses to it so far: POSTs to its response_url, and a slash command's ack message. */
  responses(): FakeResponse[];
}

/** Which of several matching elements to use when a label alone is ambiguous. */
export interface ElementChoice {
  blockId?: string;
  actionId?: string;
  value?: string;
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
   * Which of the app's open connections gets each envelope (events, redeliveries, interactions, commands): one
   * of them, never all, as Slack does ("each event to only 1 random connection"). 'round-robin' (default) takes
   * them in turn, oldest first, so a test knows the spread; 'random' picks at random.
   */
  connectionChoice?: 'round-robin' | 'random';
  /**
   * Slack's posting limit, off by default. Slack documents chat.postMessage as "1 per second per channel, short
   * bursts >1 allowed" (docs.slack.dev/apis/web-api/rate-limits): here a token bucket per channel and method for
   * chat.postMessage (thread replies included) and chat.update, refilled at `perSecond` and holding at most
   * `burst`. A call over it is answered as Slack answers: HTTP 429, `{ok:false, error:'ratelimited'}` and
   * `Retry-After` in whole seconds (until a token is back); it does no work and is counted in `postRateLimited`.
   */
  postRateLimit?: { perSecond: number; burst: number };
  /** How long a trigger_id can be exchanged (views.open, views.push). Slack: 3 seconds. Default 3000. */
  triggerTtlMs?: number;
  /** How long a response_url can be used (at most 5 times). Slack: 30 minutes. Default 1,800,000. */
  responseUrlTtlMs?: number;
  /** How long a click, menu choice, command or submission waits for the app's ack before failing. Slack: 3 s. Default 3000. */
  interactionAckTimeoutMs?: number;
}

type Params = Record<string, any>;
type Handler = (params: Params) => Record<string, unknown>;
type DisconnectReason = 'warning' | 'refresh_requested' | 'link_disabled';

const APP_ID = 'A0FAKE';
/** The deprecated verification token Slack still puts in payloads. */
const VERIFICATION_TOKEN = 'fake-verification-token';
const TEAM_DOMAIN = 'fake';
/** A response_url takes at most 5 responses (api.slack.com/interactivity/handling#message_responses). */
const RESPONSE_URL_USES = 5;
/** response_url refusals that are the body's fault (400); the others say the target is gone (404). */
const BAD_RESPONSE_ERRORS = new Set(['no_text', 'invalid_blocks', 'invalid_blocks_format', 'invalid_payload']);
const PERMALINK_HOST = 'https://fake.slack.com';

// ───────────────────────────── Small helpers ─────────────────────────────

/**
 * A Slack error answer: the dispatcher turns it into 200 {ok:false, error}, with `response_metadata.messages`
 * when given (as Slack explains `invalid_blocks` and `invalid_arguments`).
 */
class SlackError extends Error {
  constructor(readonly code: string, readonly messages?: string[]) {
    super(code);
  }
}

function fail(code: string, messages?: string[]): never {
  throw new SlackError(code, messages);
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

// ───────────────────────────── Block Kit limits ─────────────────────────────
// The limits Slack enforces on interactive blocks (api.slack.com/reference/block-kit/blocks and block-elements,
// /reference/surfaces/views): a violation is answered `invalid_blocks` (messages) or `invalid_arguments` (views),
// with Slack's own kind of explanation in `response_metadata.messages`.

/** Messages hold at most 50 blocks, views 100. */
const MESSAGE_BLOCKS_MAX = 50;
const VIEW_BLOCKS_MAX = 100;

function tooLong(max: number, at: string): string {
  return `[ERROR] must be less than ${max + 1} characters [json-pointer:${at}]`;
}

/** A text object: `text` a string of 1..max characters, plain_text only when `plainOnly`. */
function textProblems(text: any, at: string, max: number, plainOnly: boolean): string[] {
  if (!text || typeof text !== 'object' || typeof text.text !== 'string') return [`[ERROR] missing required field: text [json-pointer:${at}]`];
  if (plainOnly && text.type !== 'plain_text') return [`[ERROR] must be a plain_text text object [json-pointer:${at}/type]`];
  if (text.text.length === 0) return [`[ERROR] must be more than 0 characters [json-pointer:${at}/text]`];
  return text.text.length > max ? [tooLong(max, `${at}/text`)] : [];
}

/** An option of a select or overflow menu: plain text ≤ 75, value ≤ 150. */
function optionProblems(option: any, at: string): string[] {
  const problems = textProblems(option?.text, `${at}/text`, 75, true);
  if (typeof option?.value !== 'string') problems.push(`[ERROR] missing required field: value [json-pointer:${at}]`);
  else if (option.value.length > 150) problems.push(tooLong(150, `${at}/value`));
  return problems;
}

/** The options of a static_select (options or option_groups) or an overflow, flattened. */
function menuOptions(element: any): any[] {
  if (Array.isArray(element?.options)) return element.options;
  if (Array.isArray(element?.option_groups)) return element.option_groups.flatMap((g: any) => (Array.isArray(g?.options) ? g.options : []));
  return [];
}

function elementProblems(element: any, at: string): string[] {
  if (!element || typeof element !== 'object' || typeof element.type !== 'string') return [`[ERROR] missing required field: type [json-pointer:${at}]`];
  const problems: string[] = [];
  if (element.action_id !== undefined && (typeof element.action_id !== 'string' || element.action_id.length > 255)) problems.push(tooLong(255, `${at}/action_id`));
  if (element.type === 'button') {
    problems.push(...textProblems(element.text, `${at}/text`, 75, true));
    if (element.value !== undefined && String(element.value).length > 2000) problems.push(tooLong(2000, `${at}/value`));
    if (element.url !== undefined && String(element.url).length > 3000) problems.push(tooLong(3000, `${at}/url`));
    if (element.style !== undefined && element.style !== 'primary' && element.style !== 'danger') problems.push(`[ERROR] must be one of primary, danger [json-pointer:${at}/style]`);
  } else if (element.type === 'static_select' || element.type === 'overflow') {
    const options = menuOptions(element);
    const max = element.type === 'overflow' ? 5 : 100;
    if (options.length === 0) problems.push(`[ERROR] missing required field: options [json-pointer:${at}]`);
    if (options.length > max) problems.push(`[ERROR] no more than ${max} items allowed [json-pointer:${at}/options]`);
    options.forEach((option, i) => problems.push(...optionProblems(option, `${at}/options/${i}`)));
    if (element.placeholder !== undefined) problems.push(...textProblems(element.placeholder, `${at}/placeholder`, 150, true));
  }
  return problems;
}

/** A block's interactive elements with their JSON pointers: an actions block's elements, an accessory, an input's element. */
function blockElements(block: any, at: string): { element: any; at: string }[] {
  if (block.type === 'actions' && Array.isArray(block.elements)) return block.elements.map((element: any, j: number) => ({ element, at: `${at}/elements/${j}` }));
  if (block.type === 'section' && block.accessory) return [{ element: block.accessory, at: `${at}/accessory` }];
  if (block.type === 'input' && block.element) return [{ element: block.element, at: `${at}/element` }];
  return [];
}

/**
 * What Slack would refuse in `blocks`: too many blocks, a block_id over 255 characters or used twice in the
 * surface, an actions block with more than 25 elements, an action_id over 255 characters or used twice in its
 * block, a button's text over 75 or value over 2000 characters, menus with too many or too long options.
 */
function blockProblems(blocks: unknown, pointer: string, maxBlocks: number): string[] {
  if (!Array.isArray(blocks)) return [`[ERROR] must be an array [json-pointer:${pointer}]`];
  const problems: string[] = [];
  if (blocks.length > maxBlocks) problems.push(`[ERROR] no more than ${maxBlocks} items allowed [json-pointer:${pointer}]`);
  const blockIds = new Set<string>();
  blocks.forEach((block: any, i) => {
    const at = `${pointer}/${i}`;
    if (!block || typeof block !== 'object' || typeof block.type !== 'string') return void problems.push(`[ERROR] missing required field: type [json-pointer:${at}]`);
    if (block.block_id !== undefined) {
      if (typeof block.block_id !== 'string' || block.block_id.length > 255) problems.push(tooLong(255, `${at}/block_id`));
      else if (blockIds.has(block.block_id)) problems.push(`[ERROR] duplicate block_id ${JSON.stringify(block.block_id)} [json-pointer:${at}/block_id]`);
      else blockIds.add(block.block_id);
    }
    if (block.type === 'actions' && !(Array.isArray(block.elements) && block.elements.length > 0)) problems.push(`[ERROR] missing required field: elements [json-pointer:${at}]`);
    if (block.type === 'actions' && block.elements?.length > 25) problems.push(`[ERROR] no more than 25 items allowed [json-pointer:${at}/elements]`);
    const actionIds = new Set<string>();
    for (const { element, at: elementAt } of blockElements(block, at)) {
      problems.push(...elementProblems(element, elementAt));
      if (typeof element?.action_id !== 'string') continue;
      if (actionIds.has(element.action_id)) problems.push(`[ERROR] duplicate action_id ${JSON.stringify(element.action_id)} [json-pointer:${elementAt}/action_id]`);
      actionIds.add(element.action_id);
    }
  });
  return problems;
}

/** A modal's or Home tab's problems (api.slack.com/reference/surfaces/views), `type` the one the method takes. */
function viewProblems(view: any, type: 'modal' | 'home'): string[] {
  if (!view || typeof view !== 'object' || Array.isArray(view)) return ['[ERROR] missing required field: view [json-pointer:/view]'];
  if (view.type !== type) return [`[ERROR] must be ${JSON.stringify(type)}, found ${JSON.stringify(view.type)} [json-pointer:/view/type]`];
  const problems = blockProblems(view.blocks, '/view/blocks', VIEW_BLOCKS_MAX);
  if (type === 'modal') {
    problems.push(...textProblems(view.title, '/view/title', 24, true));
    if (view.close !== undefined) problems.push(...textProblems(view.close, '/view/close', 24, true));
    if (view.submit !== undefined) problems.push(...textProblems(view.submit, '/view/submit', 24, true));
    if (view.submit === undefined && Array.isArray(view.blocks) && view.blocks.some((b: any) => b?.type === 'input')) {
      problems.push('[ERROR] missing required field: submit (a view with input blocks needs one) [json-pointer:/view/submit]');
    }
  }
  if (view.callback_id !== undefined && String(view.callback_id).length > 255) problems.push(tooLong(255, '/view/callback_id'));
  if (view.private_metadata !== undefined && String(view.private_metadata).length > 3000) problems.push(tooLong(3000, '/view/private_metadata'));
  if (view.external_id !== undefined && String(view.external_id).length > 255) problems.push(tooLong(255, '/view/external_id'));
  return problems;
}

/** A text object's text, or '' (labels of buttons, placeholders, options). */
function plainText(text: any): string {
  return typeof text?.text === 'string' ? text.text : '';
}

/** The ids Slack makes up for blocks and elements posted without one (short, stable per message and position). */
function generatedId(seed: string): string {
  return createHash('sha1').update(seed).digest('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 5);
}

// ───────────────────────────── HTTP bodies ─────────────────────────────

const JSON_FIELDS = new Set(['blocks', 'attachments', 'metadata', 'files', 'view']);

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
  /** Its latest envelope written to a socket: only that one is sent again when its connection dies. */
  latest?: SentEnvelope;
}

interface Delivery {
  envelope: SentEnvelope;
  pending: PendingEvent;
  /** The socket it was written to, while it waits for its ack there. */
  socket?: WebSocket;
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

/** Where a response_url's responses go: the person, the channel and, for a click on a message, that message. */
interface ResponseTarget {
  url: string;
  kind: 'actions' | 'commands';
  user: string;
  channel: string;
  /** The message the clicked element was on (absent for slash commands). */
  messageTs?: string;
  isEphemeral?: boolean;
  issuedAt: number;
  uses: number;
}

/** Where a person clicks: a message in a channel, an ephemeral message, or a view (modal or Home tab). */
type Surface =
  | { kind: 'message'; channel: FakeChannel; message: FakeMessage }
  | { kind: 'ephemeral'; channel: FakeChannel; ephemeral: FakeEphemeral }
  | { kind: 'view'; view: FakeView };

/** An interactive element found in a surface's blocks, with the ids its payload will carry. */
interface FoundElement {
  element: any;
  block: any;
  blockId: string;
  actionId: string;
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
  /** Every interactive and slash_commands envelope written to a socket, in order. */
  readonly interactions: SentInteraction[] = [];
  /** Every response to an interaction (response_url POSTs, slash command acks carrying a message), in order. */
  readonly responses: FakeResponse[] = [];

  private readonly botToken: string;
  private readonly appToken: string;
  private readonly redeliverAfterMs: number;
  private readonly maxRedeliveries: number;
  private readonly pageSize: number;
  private readonly dropWhileDisconnected: boolean;
  private readonly connectionChoice: 'round-robin' | 'random';

  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly sockets = new Set<WebSocket>();
  /** Open sockets that got hello, oldest first; each envelope goes to one of them (`pickSocket`). */
  private greeted: WebSocket[] = [];
  /** Each greeted socket's connection number (the n-th hello since start). */
  private readonly connectionNumbers = new Map<WebSocket, number>();
  /** Events written to each socket and not yet acked: sent again elsewhere when that socket dies. */
  private readonly unacked = new Map<WebSocket, Set<Delivery>>();
  /** The round robin's next turn. */
  private turn = 0;
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

  private readonly triggerTtlMs: number;
  private readonly responseUrlTtlMs: number;
  private readonly interactionAckTimeoutMs: number;
  /** Trigger ids handed out with interactions: whose, when, and whether exchanged yet. */
  private readonly triggers = new Map<string, { user: string; issuedAt: number; used: boolean }>();
  /** response_urls by path. */
  private readonly responseUrls = new Map<string, ResponseTarget>();
  private readonly ephemerals: FakeEphemeral[] = [];
  /** Modals and Home tabs by id, in the order they were first opened or published. */
  private readonly views = new Map<string, FakeView>();
  private readonly homeViewIds = new Map<string, string>();
  private readonly publishCounts = new Map<string, number>();
  private readonly dmChannels = new Map<string, string>();
  /** Interactive envelopes waiting for their ack, by envelope_id. */
  private readonly ackWaiters = new Map<string, { resolve(ack: Record<string, any>): void; reject(error: Error): void }>();

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
    this.connectionChoice = opts.connectionChoice ?? 'round-robin';
    if (this.connectionChoice !== 'round-robin' && this.connectionChoice !== 'random') {
      throw new Error(`FakeSlack: connectionChoice is 'round-robin' or 'random', found ${JSON.stringify(opts.connectionChoice)}`);
    }
    if (opts.postRateLimit && !(opts.postRateLimit.perSecond > 0 && opts.postRateLimit.burst >= 1)) {
      throw new Error(`FakeSlack: postRateLimit needs perSecond > 0 and burst ≥ 1, found ${JSON.stringify(opts.postRateLimit)}`);
    }
    this.postRateLimit = opts.postRateLimit;
    this.triggerTtlMs = opts.triggerTtlMs ?? 3000;
    this.responseUrlTtlMs = opts.responseUrlTtlMs ?? 30 * 60_000;
    this.interactionAckTimeoutMs = opts.interactionAckTimeoutMs ?? 3000;
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
    for (const waiter of this.ackWaiters.values()) waiter.reject(new Error('FakeSlack: closed while an interaction waited for its ack'));
    this.ackWaiters.clear();
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

  /** A user group (`@handle`); `users` are its members, as `usergroups.users.list` answers them. */
  addUsergroup(g: { id?: string; handle: string; name?: string; users?: string[] }): FakeUsergroup {
    const id = g.id ?? this.freshId('S', this.usergroups);
    const group: FakeUsergroup = { id, handle: g.handle, name: g.name ?? g.handle, ...defined({ users: g.users && [...g.users] }) };
    this.usergroups.set(id, group);
    return group;
  }

  /** A user group's members change (an on-call rotation): `usergroups.users.list` answers `users` from now on. */
  setUsergroupUsers(id: string, users: string[]): void {
    const group = this.usergroups.get(id);
    if (!group) throw new Error(`FakeSlack: no user group ${id}`);
    group.users = [...users];
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

  /**
   * The numbers of the connections envelopes go to now (open, greeted, neither told to disconnect nor silenced),
   * oldest first. Connection n is the one that got the n-th hello; `envelopes[i].connection` names one of them.
   */
  get openConnections(): number[] {
    return this.receivingSockets().map((ws) => this.connectionNumbers.get(ws)!);
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

  /**
   * Abruptly terminates one connection (no close frame), as when the instance at its end is killed: what was
   * written to it and not acked goes to another open connection at once. false when it is not open.
   */
  dropConnection(connection: number): boolean {
    const socket = [...this.connectionNumbers].find(([ws, n]) => n === connection && ws.readyState === WebSocket.OPEN)?.[0];
    socket?.terminate();
    return socket !== undefined;
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

  /** Writes `frame` as it is (not JSON, unknown types, broken envelopes…) to one socket that gets events. false if none is connected. */
  sendRawFrame(frame: string | Buffer): boolean {
    const socket = this.pickSocket();
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

  async waitFor<T>(predicate: () => T | undefined | false | null | Promise<T | undefined | false | null>, what = 'a condition', timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await predicate();
      if (value) return value as T;
      if (Date.now() >= deadline) throw new Error(`FakeSlack: timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(10);
    }
  }

  // ─── Events over Socket Mode ───

  /** Delivers any event in an events_api envelope to one connected socket (`connectionChoice`; queued if none). */
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
    const delivery: Delivery = { envelope, pending };
    this.deliveries.set(envelope.envelope_id, delivery);
    const socket = this.pickSocket();
    if (socket) this.transmit(socket, delivery);
    else if (!this.dropWhileDisconnected) this.queued.push(delivery);
    return envelope;
  }

  private transmit(socket: WebSocket, delivery: Delivery): void {
    const { envelope, pending } = delivery;
    socket.send(JSON.stringify(this.envelopeFrame(envelope, pending)), () => {});
    envelope.sentAt = Date.now();
    envelope.connection = this.connectionNumbers.get(socket);
    pending.latest = envelope;
    delivery.socket = socket;
    let waiting = this.unacked.get(socket);
    if (!waiting) this.unacked.set(socket, (waiting = new Set()));
    waiting.add(delivery);
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

  /** Greeted sockets that take envelopes, oldest first: open, not told to disconnect, not silenced. */
  private receivingSockets(): WebSocket[] {
    return this.greeted.filter((ws) => ws.readyState === WebSocket.OPEN && !this.retiring.has(ws) && !this.silenced.has(ws));
  }

  /**
   * Like Slack with several connections: each envelope goes to ONE of them, in turn or at random
   * (`connectionChoice`). With one connection that one; while an old one retires (told to disconnect), the new one.
   */
  private pickSocket(): WebSocket | undefined {
    const open = this.receivingSockets();
    if (open.length === 0) return undefined;
    if (this.connectionChoice === 'random') return open[Math.floor(Math.random() * open.length)];
    return open[this.turn++ % open.length];
  }

  private flushQueue(): void {
    while (this.queued.length > 0) {
      const socket = this.pickSocket();
      if (!socket) return;
      this.transmit(socket, this.queued.shift()!);
    }
  }

  /**
   * A socket closed: the events last written to it and not acked are sent again (a redelivery: new envelope_id,
   * next retry_attempt) to another open connection now, so that no event dies with a connection while another
   * is up. With none open they are left to the redelivery timer, as with one connection.
   */
  private resend(socket: WebSocket): void {
    const waiting = this.unacked.get(socket);
    this.unacked.delete(socket);
    if (!waiting || this.closed) return;
    for (const { envelope, pending } of waiting) {
      if (pending.acked || pending.latest !== envelope || this.receivingSockets().length === 0) continue;
      if (pending.timer) clearTimeout(pending.timer);
      pending.timer = undefined;
      this.deliver(pending);
    }
  }

  /** An ack (`{envelope_id, payload?}`): of an events_api delivery, or of an interaction waiting for it. */
  private onAck(envelopeId: unknown, payload?: unknown): void {
    const ack = payload && typeof payload === 'object' && !Array.isArray(payload) ? (payload as Record<string, any>) : {};
    if (typeof envelopeId === 'string') this.ackWaiters.get(envelopeId)?.resolve(ack);
    const delivery = typeof envelopeId === 'string' ? this.deliveries.get(envelopeId) : undefined;
    if (!delivery) return;
    delivery.envelope.ack ??= ack;
    delivery.envelope.ackedAt ??= Date.now();
    delivery.pending.acked = true;
    if (delivery.socket) this.unacked.get(delivery.socket)?.delete(delivery);
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
      if (frame && typeof frame === 'object') {
        const { envelope_id, payload } = frame as { envelope_id?: unknown; payload?: unknown };
        this.onAck(envelope_id, payload);
      }
    });
    ws.on('close', () => {
      this.sockets.delete(ws);
      this.retiring.delete(ws);
      this.silenced.delete(ws);
      this.greeted = this.greeted.filter((other) => other !== ws);
      this.connectionNumbers.delete(ws);
      this.resend(ws);
    });
    if (this.acceptConnections) this.greet(ws);
  }

  private greet(ws: WebSocket): void {
    this.greeted.push(ws);
    this.helloCount++;
    this.connectionNumbers.set(ws, this.helloCount);
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
    else if (url.pathname.startsWith('/actions/') || url.pathname.startsWith('/commands/')) this.onResponseUrl(req, res, url, body);
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
      if (error instanceof SlackError) {
        const metadata = error.messages?.length ? { response_metadata: { messages: error.messages } } : {};
        return { status: 200, response: { ok: false, error: error.code, ...metadata } };
      }
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
    'usergroups.list': (p) => ({
      usergroups: [...this.usergroups.values()].map(({ users, ...g }) => ({ ...g, team_id: this.teamId, is_usergroup: true, ...(isTrue(p.include_users) && users ? { users: [...users] } : {}) })),
    }),
    'usergroups.users.list': (p) => {
      if (!p.usergroup) fail('invalid_arguments', ['[ERROR] missing required field: usergroup']);
      const group = this.usergroups.get(String(p.usergroup)) ?? fail('no_such_subteam');
      return { users: [...(group.users ?? [])] };
    },
    'chat.postEphemeral': (p) => this.chatPostEphemeral(p),
    'views.open': (p) => this.viewsOpen(p),
    'views.push': (p) => this.viewsPush(p),
    'views.update': (p) => this.viewsUpdate(p),
    'views.publish': (p) => this.viewsPublish(p),
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
    this.checkMessageBlocks(p.blocks);
    const threadTs = p.thread_ts ? this.threadTsFor(ch, p.thread_ts) : undefined;
    const message = this.postAsBot(ch, { text: p.text, blocks: p.blocks, attachments: p.attachments, metadata: p.metadata, thread_ts: threadTs }, true);
    return { channel: ch.id, ts: message.ts, message: this.messageJson(message, true) };
  }

  /** The bot's message, stored and (when `emit`) echoed as a `message` event, as Slack does for its own posts. */
  private postAsBot(ch: FakeChannel, fields: { text?: unknown; blocks?: any[]; attachments?: any[]; metadata?: any; thread_ts?: string }, emit: boolean): FakeMessage {
    const { text, thread_ts, blocks, attachments, metadata } = fields;
    const message: FakeMessage = {
      type: 'message',
      ts: this.nextTs(),
      user: this.botUserId,
      bot_id: this.botId,
      text: String(text ?? ''),
      ...defined({ thread_ts, blocks, attachments, metadata }),
    };
    this.store(ch, message);
    if (emit) this.sendEvent(this.messageEvent(ch, message));
    return message;
  }

  /** `invalid_blocks_format` when blocks are not an array, `invalid_blocks` (with Slack's messages) past its limits. */
  private checkMessageBlocks(blocks: unknown): void {
    if (blocks === undefined) return;
    if (!Array.isArray(blocks)) fail('invalid_blocks_format');
    const problems = blockProblems(blocks, '/blocks', MESSAGE_BLOCKS_MAX);
    if (problems.length) fail('invalid_blocks', problems);
  }

  private chatUpdate(p: Params) {
    const ch = this.writableChannel(p.channel);
    const message = this.findMessage(ch, p.ts);
    if (message.bot_id !== this.botId) fail('cant_update_message');
    this.checkMessageBlocks(p.blocks);
    this.editMessage(ch, message, (m) => Object.assign(m, defined({ text: p.text, blocks: p.blocks, attachments: p.attachments, metadata: p.metadata })), true);
    return { channel: ch.id, ts: message.ts, text: message.text, message: this.messageJson(message, true) };
  }

  /** Changes a stored message, marks it edited and (when `emit`) sends the hidden `message_changed` event. */
  private editMessage(ch: FakeChannel, message: FakeMessage, change: (m: FakeMessage) => void, emit: boolean): void {
    const previous = this.messageJson(message, false);
    change(message);
    message.edited = { user: this.botUserId, ts: this.nextTs() };
    if (emit) this.emitChange(ch, { subtype: 'message_changed', message: this.messageJson(message, false), previous_message: previous });
  }

  private chatDelete(p: Params) {
    const ch = this.writableChannel(p.channel);
    const message = this.findMessage(ch, p.ts);
    if (message.bot_id !== this.botId) fail('cant_delete_message');
    this.removeMessage(ch, message, true);
    return { channel: ch.id, ts: message.ts };
  }

  /** Takes a message out of its channel and (when `emit`) sends the hidden `message_deleted` event. */
  private removeMessage(ch: FakeChannel, message: FakeMessage, emit: boolean): void {
    ch.messages.splice(ch.messages.indexOf(message), 1);
    ch.pins.delete(message.ts);
    if (!isTopLevel(message)) this.countReply(ch, message.thread_ts!, -1);
    if (emit) this.emitChange(ch, { subtype: 'message_deleted', deleted_ts: message.ts, previous_message: this.messageJson(message, false) });
  }

  /**
   * An ephemeral message to `user` in `channel` (api.slack.com/methods/chat.postEphemeral): the bot must be able to
   * post there, and the user must be in the channel when the channel lists its members (`user_not_in_channel`).
   * Recorded (see `ephemeralsFor`), never stored in the history and never echoed as an event.
   */
  private chatPostEphemeral(p: Params) {
    const ch = this.writableChannel(p.channel);
    if (!p.user) fail('invalid_arguments', ['[ERROR] missing required field: user']);
    const user = String(p.user);
    const listsMembers = [...ch.members].some((id) => id !== this.botUserId);
    if (!this.users.has(user) || (listsMembers && !ch.members.has(user))) fail('user_not_in_channel');
    if (!p.text && !p.blocks?.length && !p.attachments?.length) fail('no_text');
    this.checkMessageBlocks(p.blocks);
    const threadTs = p.thread_ts ? this.threadTsFor(ch, p.thread_ts) : undefined;
    const ephemeral = this.addEphemeral({ channel: ch.id, user, text: p.text, blocks: p.blocks, attachments: p.attachments, thread_ts: threadTs, via: 'chat.postEphemeral' });
    return { message_ts: ephemeral.ts };
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

  // ─── Interactivity: what a person does, and what Slack does with the app's answers ───
  // Payloads as Slack documents them: api.slack.com/reference/interaction-payloads/block-actions and …/views,
  // /interactivity/slash-commands, /apis/connections/socket (envelopes and acks), /interactivity/handling
  // (response_url: 5 uses in 30 minutes, ephemeral by default; trigger_id: once, within 3 seconds). Each helper
  // writes one envelope to one of the sockets that get events and resolves once the app has acked it.

  /**
   * `user` clicks the button labelled `label` on message `ts` in `channel` (a message of the channel, or an
   * ephemeral message shown to `user`): an `interactive` envelope with a `block_actions` payload, a fresh trigger_id
   * and response_url. Buttons are looked for in actions blocks and section accessories; `choice` picks one when
   * several carry the label. Throws, listing the buttons there are, when none does.
   */
  async click(user: string, channel: string, ts: string, label: string, choice: ElementChoice = {}): Promise<Interaction> {
    const person = this.person(user);
    const surface = this.messageSurface(person.id, channel, ts);
    const found = this.pickElement(surface, ['button'], (f) => plainText(f.element.text) === label, choice, `button "${label}"`);
    return this.sendBlockAction(person, surface, this.buttonAction(found), `the click on "${label}"`);
  }

  /**
   * `user` clicks the button labelled `label` in a view they see: the top view of a modal of theirs, or their Home
   * tab (`homeView(user).id`). The payload's container is the view; no response_url, as in Slack.
   */
  async clickInView(user: string, viewId: string, label: string, choice: ElementChoice = {}): Promise<Interaction> {
    const person = this.person(user);
    const view = this.views.get(viewId);
    if (!view || view.user !== person.id || !view.open) throw new Error(`FakeSlack: ${user} has no open view ${viewId}`);
    const top = view.type === 'modal' ? this.modalStack(view.root_view_id).at(-1) : view;
    if (top !== view) throw new Error(`FakeSlack: ${user} does not see modal ${viewId}: ${top?.id} is on top of it`);
    const surface: Surface = { kind: 'view', view };
    const found = this.pickElement(surface, ['button'], (f) => plainText(f.element.text) === label, choice, `button "${label}"`);
    return this.sendBlockAction(person, surface, this.buttonAction(found), `the click on "${label}"`);
  }

  /**
   * `user` picks the option labelled `optionLabel` from a menu on message `ts` in `channel`: a static_select whose
   * placeholder reads `menuLabel`, or an overflow menu (it shows only "…": name it by its action_id, or by "…" when
   * the message has only one). The payload's action carries `selected_option` (and the select's `placeholder`).
   */
  async choose(user: string, channel: string, ts: string, menuLabel: string, optionLabel: string, choice: ElementChoice = {}): Promise<Interaction> {
    const person = this.person(user);
    const surface = this.messageSurface(person.id, channel, ts);
    const overflows = this.elementsOf(surface).filter((f) => f.element.type === 'overflow').length;
    const isMenu = (f: FoundElement) =>
      f.element.type === 'static_select' ? plainText(f.element.placeholder) === menuLabel : f.actionId === menuLabel || (menuLabel === '…' && overflows === 1);
    const found = this.pickElement(surface, ['static_select', 'overflow'], isMenu, choice, `menu "${menuLabel}"`);
    const options = menuOptions(found.element);
    const option = options.find((o) => plainText(o.text) === optionLabel);
    if (!option) {
      const labels = options.map((o) => JSON.stringify(plainText(o.text))).join(', ');
      throw new Error(`FakeSlack: the menu "${menuLabel}" on ${this.surfaceName(surface)} has no option "${optionLabel}"; its options are ${labels}`);
    }
    const isSelect = found.element.type === 'static_select';
    const action = {
      type: found.element.type,
      action_id: found.actionId,
      block_id: found.blockId,
      selected_option: structuredClone(option),
      ...(isSelect && found.element.placeholder ? { placeholder: structuredClone(found.element.placeholder) } : {}),
      action_ts: this.nextTs(),
    };
    const chosen = isSelect ? { [found.blockId]: { [found.actionId]: { type: 'static_select', selected_option: structuredClone(option) } } } : {};
    return this.sendBlockAction(person, surface, action, `the choice of "${optionLabel}" in "${menuLabel}"`, chosen);
  }

  /**
   * `user` types `command text` in `channel`: a `slash_commands` envelope (`accepts_response_payload: true`) with
   * the documented payload, a response_url and a trigger_id. A message in the ack (`text`/`blocks`, with
   * `response_type`) is Slack's immediate response: posted as a response (ephemeral by default) and recorded.
   */
  async slash(user: string, channel: string, text: string, command = '/ims'): Promise<Interaction> {
    const person = this.person(user);
    const ch = this.channelOrThrow(channel);
    if (!command.startsWith('/')) throw new Error(`FakeSlack: a slash command starts with "/", found ${JSON.stringify(command)}`);
    const response_url = this.issueResponseUrl('commands', { user: person.id, channel: ch.id });
    const trigger_id = this.issueTrigger(person.id);
    const payload = {
      token: VERIFICATION_TOKEN,
      team_id: this.teamId,
      team_domain: TEAM_DOMAIN,
      channel_id: ch.id,
      channel_name: ch.name,
      user_id: person.id,
      user_name: person.name,
      command,
      text,
      api_app_id: APP_ID,
      is_enterprise_install: 'false',
      response_url,
      trigger_id,
    };
    const sent = await this.deliverInteraction('slash_commands', payload, `the command "${command} ${text}"`);
    this.respondFromAck(response_url, sent.ack ?? {});
    return this.interaction(sent, trigger_id, response_url);
  }

  /**
   * `user` fills the modal `viewId` (the one they see, on top of its stack) and presses its submit button: an
   * `interactive` envelope with a `view_submission` payload whose `view.state.values` holds `values` (block_id →
   * action_id → what was typed; a static_select's option by value or label). Throws when a required input is left
   * empty (Slack would not submit) or `values` names an input the view lacks. The ack is applied as Slack does:
   * none closes the view, `errors` keeps it open (see `view(id).errors`), `update` replaces it, `push` stacks a new
   * one, `clear` closes them all.
   */
  async submitView(user: string, viewId: string, values: Record<string, Record<string, string>> = {}): Promise<Interaction> {
    const person = this.person(user);
    const view = this.views.get(viewId);
    if (!view || view.type !== 'modal' || view.user !== person.id) throw new Error(`FakeSlack: ${user} has no modal ${viewId}`);
    const top = this.modalStack(view.root_view_id).at(-1);
    if (!view.open || top !== view) throw new Error(`FakeSlack: ${user} does not see modal ${viewId}: ${view.open ? `${top?.id} is on top of it` : 'it is closed'}`);
    const trigger_id = this.issueTrigger(person.id);
    const payload = {
      type: 'view_submission',
      team: this.teamRef(),
      user: this.userRef(person),
      api_app_id: APP_ID,
      token: VERIFICATION_TOKEN,
      trigger_id,
      view: this.viewJson(view, { values: this.submittedValues(view, values) }),
      response_urls: [],
      is_enterprise_install: false,
      enterprise: null,
    };
    const sent = await this.deliverInteraction('interactive', payload, `the submission of modal ${viewId}`);
    this.applyViewAck(view, sent.ack ?? {});
    return this.interaction(sent, trigger_id, undefined);
  }

  /**
   * `user` opens the app's Home tab: an `events_api` envelope with `app_home_opened` (`tab: 'home'`, the user's DM
   * channel with the app, and `view` once a Home view was published), resolved once acked.
   */
  async openHome(user: string): Promise<Interaction> {
    const person = this.person(user);
    const homeId = this.homeViewIds.get(person.id);
    const home = homeId ? { view: this.viewJson(this.views.get(homeId)!) } : {};
    const event = { type: 'app_home_opened', user: person.id, channel: this.dmChannelOf(person.id), tab: 'home', ...home, event_ts: this.nextTs() };
    const envelope = this.sendEvent(event);
    await this.waitFor(() => envelope.ackedAt, `the ack of app_home_opened for ${user}`, this.interactionAckTimeoutMs);
    return { envelope_id: envelope.envelope_id, payload: event, ack: envelope.ack ?? {}, responses: () => [] };
  }

  // ─── Interactivity: what the person sees ───

  /** The ephemeral messages `user` was shown and still sees (a `delete_original` removes one), oldest first. */
  ephemeralsFor(user: string): FakeEphemeral[] {
    return this.ephemerals.filter((e) => e.user === user).map((e) => structuredClone(e));
  }

  /** Waits for an ephemeral message to `user` that `matches` (the app answers after its ack). */
  async waitForEphemeral(user: string, matches: (e: FakeEphemeral) => boolean = () => true, timeoutMs = 5000): Promise<FakeEphemeral> {
    return this.waitFor(() => this.ephemeralsFor(user).find(matches), `an ephemeral message for ${user}`, timeoutMs);
  }

  /** The responses to one response_url, oldest first (refused ones included, with `error`). */
  responsesTo(url: string): FakeResponse[] {
    return this.responses.filter((r) => r.url === url);
  }

  /** Waits for a response to `url` that `matches`. */
  async waitForResponse(url: string, matches: (r: FakeResponse) => boolean = () => true, timeoutMs = 5000): Promise<FakeResponse> {
    return this.waitFor(() => this.responsesTo(url).find(matches), `a response to ${url}`, timeoutMs);
  }

  /** The Home tab last published for `user` (a copy), or undefined. */
  homeView(user: string): FakeView | undefined {
    const id = this.homeViewIds.get(user);
    return id === undefined ? undefined : structuredClone(this.views.get(id));
  }

  /** How many times `views.publish` succeeded for `user`. */
  homePublishes(user: string): number {
    return this.publishCounts.get(user) ?? 0;
  }

  /** Every modal view opened or pushed, in that order (copies; `open` says which are still shown). */
  openedViews(): FakeView[] {
    return [...this.views.values()].filter((v) => v.type === 'modal').map((v) => structuredClone(v));
  }

  /** One modal or Home view by id (a copy), or undefined. */
  view(id: string): FakeView | undefined {
    const view = this.views.get(id);
    return view && structuredClone(view);
  }

  // ─── Interactivity: payloads and delivery ───

  private person(user: string): FakeUser {
    const person = this.users.get(user);
    if (!person) throw new Error(`FakeSlack: no user ${user}; add them first with addUser({ id: '${user}', name })`);
    return person;
  }

  private userRef(u: FakeUser): Record<string, string> {
    return { id: u.id, username: u.name, name: u.name, team_id: this.teamId };
  }

  private teamRef(): Record<string, string> {
    return { id: this.teamId, domain: TEAM_DOMAIN };
  }

  /** The user's DM with the app, as `app_home_opened` names it. */
  private dmChannelOf(user: string): string {
    let id = this.dmChannels.get(user);
    if (id === undefined) this.dmChannels.set(user, (id = this.newId('D')));
    return id;
  }

  /** "132456.7890123.abcdef"-shaped, as views.open expects; exchangeable once within `triggerTtlMs`. */
  private issueTrigger(user: string): string {
    const id = `${Math.floor(Date.now() / 1000)}.${++this.idCounter}.${randomBytes(16).toString('hex')}`;
    this.triggers.set(id, { user, issuedAt: Date.now(), used: false });
    return id;
  }

  /** A response_url on the fake's own server, shaped like Slack's hooks.slack.com/actions/… and /commands/… ones. */
  private issueResponseUrl(kind: 'actions' | 'commands', target: { user: string; channel: string; messageTs?: string; isEphemeral?: boolean }): string {
    const path = `/${kind}/${this.teamId}/${++this.idCounter}/${randomBytes(12).toString('hex')}`;
    const url = `http://127.0.0.1:${this.port}${path}`;
    this.responseUrls.set(path, { url, kind, ...target, issuedAt: Date.now(), uses: 0 });
    return url;
  }

  private interaction(sent: SentInteraction, trigger_id: string | undefined, response_url: string | undefined): Interaction {
    return {
      envelope_id: sent.envelope_id,
      payload: sent.payload,
      ack: sent.ack ?? {},
      ...defined({ trigger_id, response_url }),
      responses: () => (response_url === undefined ? [] : this.responsesTo(response_url)),
    };
  }

  /**
   * Writes an `interactive` or `slash_commands` envelope to one socket that gets events (as events are chosen)
   * and waits for its ack (`{envelope_id, payload?}`). Slack retries none of these: no socket, or no ack in time
   * (its connection died, say), fails the action.
   */
  private async deliverInteraction(type: SentInteraction['type'], payload: Record<string, any>, what: string): Promise<SentInteraction> {
    const socket = this.pickSocket();
    if (!socket) throw new Error(`FakeSlack: ${what} needs a connected socket and none is; Slack would show the person an error`);
    const sent: SentInteraction = { envelope_id: randomUUID(), type, payload, sentAt: Date.now(), connection: this.connectionNumbers.get(socket) };
    this.interactions.push(sent);
    const ack = await new Promise<Record<string, any>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.ackWaiters.delete(sent.envelope_id);
        reject(new Error(`FakeSlack: ${what} (envelope ${sent.envelope_id}) was not acked within ${this.interactionAckTimeoutMs} ms; Slack would show the person an error`));
      }, this.interactionAckTimeoutMs);
      this.timers.add(timer);
      const settle = () => {
        clearTimeout(timer);
        this.timers.delete(timer);
        this.ackWaiters.delete(sent.envelope_id);
      };
      this.ackWaiters.set(sent.envelope_id, {
        resolve: (value) => (settle(), resolve(value)),
        reject: (error) => (settle(), reject(error)),
      });
      socket.send(JSON.stringify({ envelope_id: sent.envelope_id, type, accepts_response_payload: true, payload }), () => {});
    });
    sent.ackedAt = Date.now();
    sent.ack = ack;
    return sent;
  }

  /** A `block_actions` payload for one action on a surface, delivered; clicks on messages get a response_url. */
  private async sendBlockAction(person: FakeUser, surface: Surface, action: Record<string, any>, what: string, chosen: Record<string, Record<string, any>> = {}): Promise<Interaction> {
    const trigger_id = this.issueTrigger(person.id);
    const { container, where, response_url } = this.actionContext(person, surface, chosen);
    const payload = {
      type: 'block_actions',
      user: this.userRef(person),
      api_app_id: APP_ID,
      token: VERIFICATION_TOKEN,
      container,
      trigger_id,
      team: this.teamRef(),
      enterprise: null,
      is_enterprise_install: false,
      ...where,
      actions: [action],
    };
    const sent = await this.deliverInteraction('interactive', payload, what);
    return this.interaction(sent, trigger_id, response_url);
  }

  /**
   * Where a block action happened, as its payload tells: a view (`container.type: 'view'`, the view) or a message
   * (`container.type: 'message'`, channel, the full stored message, the message's select menus' state, a
   * response_url). Slack leaves `message` out for an ephemeral message, which is stored nowhere.
   */
  private actionContext(person: FakeUser, surface: Surface, chosen: Record<string, Record<string, any>>) {
    if (surface.kind === 'view') {
      return { container: { type: 'view', view_id: surface.view.id }, where: { view: this.viewJson(surface.view) }, response_url: undefined };
    }
    const ch = surface.channel;
    const ts = surface.kind === 'message' ? surface.message.ts : surface.ephemeral.ts;
    const isEphemeral = surface.kind === 'ephemeral';
    const response_url = this.issueResponseUrl('actions', { user: person.id, channel: ch.id, messageTs: ts, isEphemeral });
    const values: Record<string, Record<string, any>> = {};
    for (const { element, blockId, actionId } of this.elementsOf(surface)) {
      if (element.type === 'static_select') (values[blockId] ??= {})[actionId] = { type: 'static_select', selected_option: element.initial_option ?? null };
    }
    for (const [blockId, byAction] of Object.entries(chosen)) Object.assign((values[blockId] ??= {}), byAction);
    const message = surface.kind === 'message' ? { message: this.messageJson(surface.message, false) } : {};
    return {
      container: { type: 'message', message_ts: ts, channel_id: ch.id, is_ephemeral: isEphemeral },
      where: { channel: { id: ch.id, name: ch.name }, ...message, state: { values }, response_url },
      response_url,
    };
  }

  private buttonAction({ element, blockId, actionId }: FoundElement): Record<string, any> {
    return {
      action_id: actionId,
      block_id: blockId,
      text: { type: 'plain_text', text: plainText(element.text), emoji: element.text?.emoji ?? true },
      ...defined({ value: element.value, style: element.style }),
      type: 'button',
      action_ts: this.nextTs(),
    };
  }

  /** The message `user` sees at `ts` in `channel`: one of its history, else one of their ephemeral messages there. */
  private messageSurface(user: string, channel: string, ts: string): Surface {
    const ch = this.channelOrThrow(channel);
    const message = ch.messages.find((m) => m.ts === ts);
    if (message) return { kind: 'message', channel: ch, message };
    const ephemeral = this.ephemerals.find((e) => e.channel === ch.id && e.ts === ts && e.user === user);
    if (ephemeral) return { kind: 'ephemeral', channel: ch, ephemeral };
    throw new Error(`FakeSlack: ${user} sees no message ${ts} in ${ch.id} (neither in its history nor among their ephemeral messages)`);
  }

  private surfaceName(surface: Surface): string {
    if (surface.kind === 'view') return `view ${surface.view.id}`;
    return `${surface.kind === 'ephemeral' ? 'ephemeral message' : 'message'} ${surface.kind === 'message' ? surface.message.ts : surface.ephemeral.ts} in ${surface.channel.id}`;
  }

  /** A surface's interactive elements, with the block_id and action_id Slack reports (made up when the app gave none). */
  private elementsOf(surface: Surface): FoundElement[] {
    const blocks = surface.kind === 'message' ? surface.message.blocks : surface.kind === 'ephemeral' ? surface.ephemeral.blocks : surface.view.view.blocks;
    const seed = surface.kind === 'view' ? surface.view.id : `${surface.channel.id}/${surface.kind === 'message' ? surface.message.ts : surface.ephemeral.ts}`;
    const found: FoundElement[] = [];
    (Array.isArray(blocks) ? blocks : []).forEach((block: any, i) => {
      if (!block || typeof block !== 'object') return;
      const blockId = typeof block.block_id === 'string' ? block.block_id : generatedId(`${seed}/${i}`);
      blockElements(block, '').forEach(({ element }, j) => {
        if (!element || typeof element !== 'object') return;
        const actionId = typeof element.action_id === 'string' ? element.action_id : generatedId(`${seed}/${i}/${j}`);
        found.push({ element, block, blockId, actionId });
      });
    });
    return found;
  }

  /** The one element of `types` that `matches` (narrowed by `choice`); throws, saying what there is, unless exactly one. */
  private pickElement(surface: Surface, types: string[], matches: (f: FoundElement) => boolean, choice: ElementChoice, what: string): FoundElement {
    const all = this.elementsOf(surface).filter((f) => types.includes(f.element.type));
    const fits = (f: FoundElement) =>
      matches(f) &&
      (choice.blockId === undefined || f.blockId === choice.blockId) &&
      (choice.actionId === undefined || f.actionId === choice.actionId) &&
      (choice.value === undefined || f.element.value === choice.value);
    const chosen = all.filter(fits);
    if (chosen.length === 1) return chosen[0]!;
    const where = this.surfaceName(surface);
    if (chosen.length === 0) {
      const describe = (f: FoundElement) =>
        f.element.type === 'button' ? `"${plainText(f.element.text)}"` : f.element.type === 'overflow' ? `an overflow (action_id ${f.actionId})` : `"${plainText(f.element.placeholder)}"`;
      const there = all.length ? `; it has ${all.map(describe).join(', ')}` : `; it has no ${types.join(' or ')} at all`;
      throw new Error(`FakeSlack: no ${what} on ${where}${there}`);
    }
    const ids = chosen.map((f) => `block_id ${f.blockId} action_id ${f.actionId}`).join('; ');
    throw new Error(`FakeSlack: ${chosen.length} elements match ${what} on ${where} (${ids}); pass { blockId, actionId or value } to say which`);
  }

  /** A view_submission's `state.values`: every input block's element, with what `values` typed into it. */
  private submittedValues(view: FakeView, values: Record<string, Record<string, string>>): Record<string, Record<string, any>> {
    const state: Record<string, Record<string, any>> = {};
    const inputs: string[] = [];
    for (const { element, block, blockId, actionId } of this.elementsOf({ kind: 'view', view })) {
      if (block.type !== 'input') continue;
      inputs.push(`${blockId}/${actionId}`);
      const typed = values[blockId]?.[actionId];
      if ((typed === undefined || typed === '') && block.optional !== true) {
        throw new Error(`FakeSlack: Slack would not submit modal ${view.id}: the required input ${blockId}/${actionId} ("${plainText(block.label)}") is empty`);
      }
      (state[blockId] ??= {})[actionId] = this.inputState(element, typed);
    }
    for (const [blockId, byAction] of Object.entries(values)) {
      for (const actionId of Object.keys(byAction)) {
        if (!inputs.includes(`${blockId}/${actionId}`)) throw new Error(`FakeSlack: modal ${view.id} has no input ${blockId}/${actionId}; its inputs are ${inputs.join(', ') || 'none'}`);
      }
    }
    return state;
  }

  private inputState(element: any, typed: string | undefined): Record<string, any> {
    if (element.type !== 'static_select') return { type: element.type, value: typed ?? null };
    const option = typed === undefined ? undefined : menuOptions(element).find((o) => o.value === typed || plainText(o.text) === typed);
    if (typed !== undefined && !option) throw new Error(`FakeSlack: the menu ${element.action_id} offers no option ${JSON.stringify(typed)}`);
    return { type: 'static_select', selected_option: option ? structuredClone(option) : null };
  }

  /** A view_submission's ack, applied as Slack does (api.slack.com/surfaces/modals: closing, errors, update, push). */
  private applyViewAck(view: FakeView, ack: Record<string, any>): void {
    const action = ack.response_action;
    const stack = this.modalStack(view.root_view_id);
    if (action === undefined) view.open = false;
    else if (action === 'clear') for (const v of stack) v.open = false;
    else if (action === 'errors') {
      const inputIds = new Set(this.elementsOf({ kind: 'view', view }).filter((f) => f.block.type === 'input').map((f) => f.blockId));
      const errors = ack.errors;
      if (!errors || typeof errors !== 'object' || Object.keys(errors).length === 0 || Object.keys(errors).some((id) => !inputIds.has(id))) {
        throw new Error(`FakeSlack: response_action "errors" names the view's input blocks by block_id (${[...inputIds].join(', ')}), found ${JSON.stringify(errors)}`);
      }
      view.errors = { ...errors };
    } else if (action === 'update' || action === 'push') {
      const problems = viewProblems(ack.view, 'modal');
      if (problems.length) throw new Error(`FakeSlack: response_action "${action}" carries a view Slack would refuse: ${problems.join('; ')}`);
      if (action === 'update') this.replaceView(view, ack.view);
      else if (stack.length >= 3) throw new Error(`FakeSlack: a modal holds at most 3 views; response_action "push" found ${stack.length}`);
      else this.createView('modal', view.user, ack.view, view);
    } else {
      throw new Error(`FakeSlack: unknown response_action ${JSON.stringify(action)} (Slack knows errors, update, push and clear)`);
    }
  }

  // ─── Interactivity: responses ───

  /**
   * A POST to a response_url (api.slack.com/interactivity/handling#message_responses): JSON with text/blocks,
   * `response_type` ('ephemeral', the default, or 'in_channel'), `replace_original`, `delete_original`,
   * `thread_ts`. At most 5 uses within `responseUrlTtlMs`; then `{ok:false, error:'Expired url'}` with 404.
   */
  private onResponseUrl(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer): void {
    const target = this.responseUrls.get(url.pathname);
    const parsed = parseJson(body.toString('utf8'));
    const response: FakeResponse = { url: target?.url ?? `http://127.0.0.1:${this.port}${url.pathname}`, via: 'response_url', body: parsed, at: Date.now(), status: 200, did: [] };
    const refuse = (status: number, error: string) => Object.assign(response, { status, error });
    if (req.method !== 'POST' || !target) refuse(404, 'no_service');
    else if (Date.now() - target.issuedAt > this.responseUrlTtlMs || target.uses >= RESPONSE_URL_USES) refuse(404, 'Expired url');
    else if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) refuse(400, 'invalid_payload');
    else {
      try {
        this.applyResponse(target, parsed as Record<string, any>, response, 'response_url');
        target.uses++;
      } catch (error) {
        if (!(error instanceof SlackError)) console.error('FakeSlack: a response_url POST crashed', error); // a bug in the fake
        refuse(error instanceof SlackError && BAD_RESPONSE_ERRORS.has(error.code) ? 400 : 404, error instanceof SlackError ? error.code : 'internal_error');
      }
    }
    this.responses.push(response);
    const answer = response.error ? { ok: false, error: response.error } : { ok: true };
    res.writeHead(response.status, { 'Content-Type': 'application/json; charset=utf-8' }).end(JSON.stringify(answer));
  }

  /** A slash command's ack that carries a message is its immediate response (api.slack.com/interactivity/slash-commands). */
  private respondFromAck(url: string, ack: Record<string, any>): void {
    if (!ack.text && !ack.blocks?.length && !ack.attachments?.length) return;
    const target = this.responseUrls.get(new URL(url).pathname)!;
    const body = structuredClone(ack);
    const response: FakeResponse = { url, via: 'ack', body, at: Date.now(), status: 200, did: [] };
    try {
      this.applyResponse(target, body, response, 'ack');
    } catch (error) {
      if (!(error instanceof SlackError)) throw error;
      Object.assign(response, { status: 400, error: error.code });
    }
    this.responses.push(response);
  }

  /**
   * What a response does. From a click on a message: `delete_original` deletes that message (then posts the new
   * one, if any), `replace_original` replaces it in place (an ephemeral one stays ephemeral). Otherwise, and always
   * for slash commands (whose replace/delete Slack ignores): a new message, ephemeral to the person unless
   * `response_type: 'in_channel'` (then the bot's visible message, in `thread_ts`'s thread if given).
   * Every check runs before any effect, so a refused response changes nothing.
   */
  private applyResponse(target: ResponseTarget, body: Record<string, any>, response: FakeResponse, via: 'response_url' | 'ack'): void {
    const onMessage = target.kind === 'actions' && target.messageTs !== undefined;
    const remove = onMessage && isTrue(body.delete_original);
    const replace = onMessage && !remove && isTrue(body.replace_original);
    const hasContent = Boolean(body.text || body.blocks?.length || body.attachments?.length);
    if (!remove && !hasContent) fail('no_text');
    this.checkMessageBlocks(body.blocks);
    const ch = this.channels.get(target.channel) ?? fail('channel_not_found');
    const inChannel = !replace && hasContent && body.response_type === 'in_channel';
    if (inChannel && ch.is_archived) fail('channel_is_archived');
    const threadTs = !replace && hasContent && body.thread_ts ? this.threadTsFor(ch, body.thread_ts) : undefined;
    const content = {
      text: typeof body.text === 'string' ? body.text : '',
      blocks: Array.isArray(body.blocks) ? body.blocks : undefined,
      attachments: Array.isArray(body.attachments) ? body.attachments : undefined,
    };
    response.channel = ch.id;
    if (remove || replace) {
      this.changeOriginal(ch, target, remove ? undefined : content);
      response.did.push(remove ? 'deleted' : 'replaced');
      response.ts = target.messageTs;
      if (replace || !hasContent) return;
    }
    if (inChannel) {
      response.ts = this.postAsBot(ch, { ...content, thread_ts: threadTs }, ch.is_member).ts;
      response.did.push('in_channel');
    } else {
      response.ts = this.addEphemeral({ channel: ch.id, user: target.user, ...content, thread_ts: threadTs, via }).ts;
      response.did.push('ephemeral');
    }
  }

  /** Replaces (`content`) or deletes (none) the message a click came from: a channel message or the person's ephemeral one. */
  private changeOriginal(ch: FakeChannel, target: ResponseTarget, content: { text: string; blocks?: any[]; attachments?: any[] } | undefined): void {
    const replaceContent = (m: { text: string; blocks?: any[]; attachments?: any[] }, c: NonNullable<typeof content>) => {
      m.text = c.text;
      for (const field of ['blocks', 'attachments'] as const) {
        if (c[field] === undefined) delete m[field];
        else m[field] = c[field];
      }
    };
    if (target.isEphemeral) {
      const index = this.ephemerals.findIndex((e) => e.channel === ch.id && e.ts === target.messageTs && e.user === target.user);
      if (index < 0) fail('message_not_found');
      if (content) replaceContent(this.ephemerals[index]!, content);
      else this.ephemerals.splice(index, 1);
      return;
    }
    const message = ch.messages.find((m) => m.ts === target.messageTs) ?? fail('message_not_found');
    if (content) this.editMessage(ch, message, (m) => replaceContent(m, content), ch.is_member);
    else this.removeMessage(ch, message, ch.is_member);
  }

  private addEphemeral(fields: { channel: string; user: string; text?: unknown; blocks?: any[]; attachments?: any[]; thread_ts?: string; via: FakeEphemeral['via'] }): FakeEphemeral {
    const { channel, user, text, blocks, attachments, thread_ts, via } = fields;
    const ephemeral: FakeEphemeral = { channel, user, ts: this.nextTs(), text: String(text ?? ''), ...defined({ blocks, attachments, thread_ts }), via };
    this.ephemerals.push(ephemeral);
    return ephemeral;
  }

  // ─── views.* (api.slack.com/methods/views.open, .push, .update, .publish) ───

  /** Opens a modal for the person whose interaction issued `trigger_id`. */
  private viewsOpen(p: Params) {
    const trigger = this.triggerFor(p);
    this.checkView(p.view, 'modal');
    trigger.used = true;
    return { view: this.viewJson(this.createView('modal', trigger.user, p.view, undefined)) };
  }

  /** Pushes a view onto the modal the trigger's person has open (at most 3 views in a stack). */
  private viewsPush(p: Params) {
    const trigger = this.triggerFor(p);
    this.checkView(p.view, 'modal');
    const latest = [...this.views.values()].filter((v) => v.type === 'modal' && v.open && v.user === trigger.user).at(-1);
    if (!latest) fail('not_found');
    const stack = this.modalStack(latest.root_view_id);
    if (stack.length >= 3) fail('push_limit_reached');
    trigger.used = true;
    return { view: this.viewJson(this.createView('modal', trigger.user, p.view, stack.at(-1))) };
  }

  /** Updates an open modal or a Home tab, by `view_id` or `external_id`; a stale `hash` gets `hash_conflict`. */
  private viewsUpdate(p: Params) {
    if (!p.view_id && !p.external_id) fail('invalid_arguments', ['[ERROR] either view_id or external_id is required']);
    const view = p.view_id ? this.views.get(String(p.view_id)) : [...this.views.values()].find((v) => v.view.external_id === p.external_id);
    if (!view || (view.type === 'modal' && !view.open)) fail('not_found');
    if (p.hash !== undefined && p.hash !== view.hash) fail('hash_conflict');
    this.checkView(p.view, view.type, view);
    this.replaceView(view, p.view);
    return { view: this.viewJson(view) };
  }

  /** Publishes `user_id`'s Home tab: a `home` view of at most 100 blocks; the same view id from one publish to the next. */
  private viewsPublish(p: Params) {
    const user = typeof p.user_id === 'string' ? p.user_id : '';
    if (!this.users.has(user)) fail('invalid_arguments', [`[ERROR] ${user ? `no user ${user}` : 'missing required field: user_id'} [json-pointer:/user_id]`]);
    const homeId = this.homeViewIds.get(user);
    const existing = homeId === undefined ? undefined : this.views.get(homeId);
    this.checkView(p.view, 'home', existing);
    if (existing && p.hash !== undefined && p.hash !== existing.hash) fail('hash_conflict');
    const view = existing ?? this.createView('home', user, p.view, undefined);
    if (existing) this.replaceView(existing, p.view);
    this.homeViewIds.set(user, view.id);
    this.publishCounts.set(user, this.homePublishes(user) + 1);
    return { view: this.viewJson(view) };
  }

  /** The trigger a views call exchanges: unknown `invalid_trigger_id`, used `exchanged_trigger_id`, too old `expired_trigger_id`. */
  private triggerFor(p: Params): { user: string; issuedAt: number; used: boolean } {
    const id = p.trigger_id ?? p.interactivity_pointer;
    if (!id) fail('invalid_arguments', ['[ERROR] missing required field: trigger_id']);
    const trigger = this.triggers.get(String(id)) ?? fail('invalid_trigger_id');
    if (trigger.used) fail('exchanged_trigger_id');
    if (Date.now() - trigger.issuedAt > this.triggerTtlMs) fail('expired_trigger_id');
    return trigger;
  }

  private checkView(view: unknown, type: 'modal' | 'home', self?: FakeView): void {
    if (view && typeof view === 'object' && JSON.stringify(view).length > 250_000) fail('view_too_large');
    const problems = viewProblems(view, type);
    if (problems.length) fail('invalid_arguments', problems);
    const externalId = (view as { external_id?: unknown }).external_id;
    if (externalId && [...this.views.values()].some((v) => v !== self && v.view.external_id === externalId)) fail('duplicate_external_id');
  }

  private createView(type: FakeView['type'], user: string, view: any, below: FakeView | undefined): FakeView {
    const id = this.freshId('V', this.views);
    const created: FakeView = {
      id,
      type,
      user,
      view: structuredClone(view),
      hash: this.newHash(),
      root_view_id: below?.root_view_id ?? id,
      previous_view_id: below?.id ?? null,
      open: true,
    };
    this.views.set(id, created);
    return created;
  }

  private replaceView(view: FakeView, next: any): void {
    view.view = structuredClone(next);
    view.hash = this.newHash();
    delete view.errors;
  }

  /** The open views of a modal, bottom first: the last is the one its person sees. */
  private modalStack(rootId: string): FakeView[] {
    return [...this.views.values()].filter((v) => v.type === 'modal' && v.open && v.root_view_id === rootId);
  }

  private newHash(): string {
    return `${Math.floor(Date.now() / 1000)}.${randomBytes(4).toString('hex')}`;
  }

  /** A view as Slack describes it (views.* answers, payloads), `state` the submitted values. */
  private viewJson(v: FakeView, state: { values: Record<string, any> } = { values: {} }): Record<string, any> {
    const { type, blocks, title, close, submit, private_metadata, callback_id, external_id, clear_on_close, notify_on_close } = v.view;
    return {
      id: v.id,
      team_id: this.teamId,
      type,
      ...(type === 'modal' ? { title: structuredClone(title) } : {}),
      close: close ? structuredClone(close) : null,
      submit: submit ? structuredClone(submit) : null,
      blocks: structuredClone(blocks ?? []),
      private_metadata: private_metadata ?? '',
      callback_id: callback_id ?? '',
      state: structuredClone(state),
      hash: v.hash,
      clear_on_close: clear_on_close ?? false,
      notify_on_close: notify_on_close ?? false,
      root_view_id: v.root_view_id,
      previous_view_id: v.previous_view_id,
      app_id: APP_ID,
      external_id: external_id ?? '',
      app_installed_team_id: this.teamId,
      bot_id: this.botId,
    };
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

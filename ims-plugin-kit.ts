/**
 * The plugin toolkit: what every plugin needs beside `definePlugin`, and what the hook runner and the plugins
 * share — deadlines, errors stamped with where they come from, Slack and HTTP failure classification, giving a
 * delivery up after N attempts, one piece of work per key at a time, cursor pagination, option validation,
 * incident figures, and the records plugins publish to each other through the store.
 *
 * It imports only types from `ims.ts` and nothing from npm, so a plugin (or a config) that imports it loads
 * neither the Slack SDK nor SQLite. `ims.ts` re-exports all of it: `import { withTimeout } from '../ims.ts'`.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Incident, IncidentEvent, OutboxDelivery } from './ims.ts';

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Deadlines and errors stamped with their origin
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** `what` did not finish within `ms`: the reason its signal was aborted, and the rejection of `withTimeout`. */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
  constructor(readonly what: string, readonly ms: number) {
    super(`${what} timed out after ${ms} ms`);
  }
}

/**
 * Run `work` with a deadline. Past `ms`, the signal `work` receives is aborted with a `TimeoutError` naming
 * `what`, and the returned promise rejects with that error; the work is abandoned, not stopped, so it should
 * watch its signal. An abort of `options.signal` (IMS stopping, say) aborts the work too and rejects with that
 * signal's reason. A synchronous throw of `work` becomes a rejection.
 */
export function withTimeout<T>(work: (signal: AbortSignal) => T | PromiseLike<T>, ms: number, what: string, options: { signal?: AbortSignal } = {}): Promise<T> {
  const controller = new AbortController();
  const outer = options.signal;
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const cleanUp = () => { clearTimeout(timer); outer?.removeEventListener('abort', onOuterAbort); };
    const fail = (reason: unknown) => { cleanUp(); controller.abort(reason); reject(reason); };
    const onOuterAbort = () => fail(outer!.reason);
    if (outer?.aborted) return fail(outer.reason);
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    timer = setTimeout(() => fail(new TimeoutError(what, ms)), ms);
    Promise.resolve().then(() => work(controller.signal)).then(
      (value) => { cleanUp(); resolve(value); },
      (error: unknown) => { cleanUp(); reject(error); },
    );
  });
}

/**
 * A plugin's hook (or `deliver`) failed: the plugin's error as `cause`, stamped with the plugin's and the hook's
 * names. Its `stack` is the plugin's own (not the hook runner's), and `at` is where it was thrown, as
 * `file:line:column` relative to the working directory (the first frame outside Node and node_modules).
 */
export class PluginHookError extends Error {
  override readonly name = 'PluginHookError';
  /** Where the hook failed, e.g. `plugins/pin.ts:17:7` (undefined for a timeout or a thrown non-Error). */
  readonly at?: string;
  constructor(readonly plugin: string, readonly hook: string, cause: unknown) {
    super(`plugin '${plugin}' failed in ${hook}: ${failureReason(cause)}`, { cause });
    const frames = cause instanceof TimeoutError ? [] : stackFrames(cause);
    this.at = frames[0]?.at;
    this.stack = [`${this.name}: ${this.message}`, ...frames.map((f) => `    ${f.line}`)].join('\n');
  }

  /** Log fields: the plugin, the hook, and where it failed with the frames above it (one line). */
  fields(): Record<string, string | undefined> {
    const frames = this.cause instanceof TimeoutError ? [] : stackFrames(this.cause).slice(0, 3);
    return { plugin: this.plugin, hook: this.hook, at: this.at, stack: frames.length ? frames.map((f) => f.line).join(' | ') : undefined };
  }
}

/**
 * Several hooks failed for one event (a message, an incident, the report): reported together, as octokit's
 * webhooks do, while each plugin stayed isolated from the others. `errors` are the `PluginHookError`s.
 */
export class PluginHookErrors extends AggregateError {
  override readonly name = 'PluginHookErrors';
  declare readonly errors: PluginHookError[];
  constructor(errors: PluginHookError[], readonly event: string) {
    super(errors, `${errors.length} plugin hook${errors.length === 1 ? '' : 's'} failed for ${event}: `
      + errors.map((e) => `${e.plugin}.${e.hook} (${failureReason(e.cause)})`).join(', '));
  }
}

/** One line for a log: Slack's error code, `timed out after N ms`, `TypeError: …` for a bug, else the message. */
export function failureReason(error: unknown): string {
  if (error instanceof TimeoutError) return `timed out after ${error.ms} ms`;
  const code = slackErrorCode(error);
  if (code) return code;
  if (error instanceof Error) return error.name && error.name !== 'Error' && !error.message.startsWith(error.name) ? `${error.name}: ${error.message}` : error.message;
  return String(error);
}

/** This file, whose frames (the deadline every hook runs under) are never where a plugin failed. */
const KIT_FILES = [import.meta.url, fileURLToPath(import.meta.url)];

/** The frames of an error's stack outside Node's internals, node_modules and this toolkit, each with `at` = `file:line:column`. */
export function stackFrames(error: unknown): { line: string; at: string }[] {
  const stack = error instanceof Error && typeof error.stack === 'string' ? error.stack : '';
  const frames: { line: string; at: string }[] = [];
  for (const raw of stack.split('\n')) {
    const line = raw.trim();
    if (!line.startsWith('at ')) continue;
    const location = /\(([^()]+:\d+:\d+)\)$/.exec(line)?.[1] ?? /^at (?:async )?([^\s()]+:\d+:\d+)$/.exec(line)?.[1];
    if (!location || location.startsWith('node:') || /[\\/]node_modules[\\/]/.test(location) || KIT_FILES.some((file) => location.startsWith(`${file}:`))) continue;
    const at = shortPath(location);
    frames.push({ line: line.replace(location, at), at });
  }
  return frames;
}

function shortPath(location: string): string {
  let file = location;
  if (file.startsWith('file://')) {
    try { file = fileURLToPath(file.replace(/:\d+:\d+$/, '')) + file.slice(file.search(/:\d+:\d+$/)); } catch { /* keep it as it is */ }
  }
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file;
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Slack failures: one classification for IMS and the plugins
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** What a failed Web API call says about whether Slack did the work: that decides whether it may be tried again. */
export type SlackFailureKind =
  /** 429: not done; try again after Retry-After. */
  | 'throttled'
  /** Not done (the connection was refused, the name did not resolve, Slack said `service_unavailable`): safe to try again. */
  | 'not done'
  /** Maybe done (connection cut after sending, time-out, a 5xx, `internal_error`): a read may be repeated; a post is first looked for. */
  | 'unknown'
  /** Slack refuses the token: nothing works until it is replaced. */
  | 'auth'
  /** Fails the same way every time (bad arguments, text that cannot be encoded, a channel that is gone): never retried. */
  | 'permanent';

export interface SlackFailure {
  kind: SlackFailureKind;
  /** Slack's error code (`invalid_blocks`), `HTTP 502`, the network error's code, or `encoding`. */
  code: string;
  /** One line for logs. */
  reason: string;
  retryAfterMs?: number;
}

const AUTH_ERRORS = new Set(['invalid_auth', 'not_authed', 'token_revoked', 'token_expired', 'account_inactive', 'team_disabled', 'user_removed_from_team', 'not_allowed_token_type']);
/** Slack answered, did nothing, and may do it later. */
const NOT_DONE_ERRORS = new Set(['ratelimited', 'rate_limited', 'request_timeout', 'service_unavailable', 'team_added_to_org', 'org_login_required']);
/** "It's possible some aspect of the operation succeeded before the error was raised" (Slack's words). */
const MAYBE_DONE_ERRORS = new Set(['internal_error', 'fatal_error']);
/** The request never reached Slack. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT']);

/** Classify a Web API failure (an error thrown by `@slack/web-api`, or by what it called). */
export function classifySlackFailure(error: unknown): SlackFailure {
  const stamped = (error as { slackFailure?: SlackFailure } | undefined)?.slackFailure;
  if (stamped) return stamped;
  const e = error as { code?: string; data?: { error?: string }; statusCode?: number; original?: unknown; retryAfter?: number; name?: string; message?: string };
  if (e?.code === 'slack_webapi_rate_limited_error') {
    const retryAfterMs = Math.max(1, e.retryAfter ?? 1) * 1000;
    return { kind: 'throttled', code: 'ratelimited', reason: `rate limited (Retry-After ${retryAfterMs / 1000} s)`, retryAfterMs };
  }
  if (e?.code === 'slack_webapi_platform_error') {
    const code = String(e.data?.error ?? 'unknown_error');
    const kind = AUTH_ERRORS.has(code) ? 'auth' : NOT_DONE_ERRORS.has(code) ? 'not done' : MAYBE_DONE_ERRORS.has(code) ? 'unknown' : 'permanent';
    return { kind, code, reason: code };
  }
  if (e?.code === 'slack_webapi_http_error') {
    const status = Number(e.statusCode);
    return { kind: status >= 500 ? 'unknown' : 'permanent', code: `HTTP ${status}`, reason: `HTTP ${status}` };
  }
  if (e?.code === 'slack_webapi_request_error') {
    const original = e.original as { code?: string; name?: string; message?: string; cause?: { code?: string } } | undefined;
    // A DOMException (a request timed out or was aborted) has a numeric legacy code: its name says more.
    const code = (typeof original?.code === 'string' ? original.code : undefined) ?? original?.cause?.code ?? original?.name ?? 'request_error';
    const reason = `${code}${original?.message && original.message !== code ? `: ${original.message}` : ''}`;
    if (original instanceof URIError) return { kind: 'permanent', code: 'encoding', reason: `the request cannot be encoded (${original.message})` };
    return { kind: NOT_SENT_CODES.has(code) ? 'not done' : 'unknown', code, reason };
  }
  // Thrown before anything was sent: `URIError: URI malformed` for text with a lone UTF-16 surrogate, or a TypeError.
  if (error instanceof URIError) return { kind: 'permanent', code: 'encoding', reason: `the request cannot be encoded (${error.message})` };
  return { kind: 'permanent', code: e?.name ?? 'error', reason: error instanceof Error ? error.message : String(error) };
}

/** Slack's error code of a refused Web API call (`ok: false`), e.g. `channel_not_found`; undefined for anything else. */
export function slackErrorCode(error: unknown): string | undefined {
  const code = (error as { data?: { error?: unknown } } | undefined)?.data?.error;
  return typeof code === 'string' && code ? code : undefined;
}

/**
 * Whether Slack will answer this the same way however often it is asked: a refusal that is not about load or
 * Slack's own trouble (`channel_not_found`, `missing_scope`, `invalid_auth`, an HTTP 4xx, text that cannot be
 * encoded). Errors that did not come from the Web API (a network failure, a timeout, a bug) are not: retry them.
 */
export function isPermanentSlackError(error: unknown): boolean {
  const fromSlack = (error as { slackFailure?: unknown } | undefined)?.slackFailure !== undefined
    || /^slack_webapi_/.test(String((error as { code?: unknown } | undefined)?.code ?? ''))
    || error instanceof URIError;
  if (!fromSlack) return false;
  const kind = classifySlackFailure(error).kind;
  return kind === 'permanent' || kind === 'auth';
}

/**
 * Whether asking again may succeed: not a permanent Slack answer (`isPermanentSlackError`) and not marked
 * permanent (`PermanentDeliveryError`). Network failures, timeouts, 5xx, `internal_error` and throttling are.
 */
export function isRetryableError(error: unknown): boolean {
  return !isPermanentDeliveryError(error) && !isPermanentSlackError(error);
}

/** Await a Web API call; the listed Slack error codes mean "already so" (`already_pinned`, `not_archived`) and give undefined. */
export async function ignoringSlackErrors<T>(call: Promise<T>, codes: readonly string[]): Promise<T | undefined> {
  try {
    return await call;
  } catch (error) {
    if (codes.includes(slackErrorCode(error) ?? '')) return undefined;
    throw error;
  }
}

/** The least of `WebClient` that pagination needs (any client with `apiCall`). */
export interface WebApiCaller {
  apiCall(method: string, options?: Record<string, unknown>): Promise<unknown>;
}

/**
 * Every item of a cursor-paginated Web API list method: `field` of each page (`channels`, `members`,
 * `messages`), page after page while `response_metadata.next_cursor` is set. Leave the loop early and no
 * further page is asked for. `maxPages` (default 1000) and a cursor that repeats end it too.
 */
export async function* slackItems<T = Record<string, unknown>>(slack: WebApiCaller, method: string, args: Record<string, unknown>, field: string,
  options: { signal?: AbortSignal; maxPages?: number } = {}): AsyncGenerator<T> {
  const seen = new Set<string>();
  let cursor: string | undefined;
  for (let page = 0; page < (options.maxPages ?? 1000); page++) {
    options.signal?.throwIfAborted();
    const answer = (await slack.apiCall(method, cursor ? { ...args, cursor } : args)) as Record<string, unknown> & { response_metadata?: { next_cursor?: string } };
    const items = answer[field];
    if (Array.isArray(items)) yield* items as T[];
    cursor = answer.response_metadata?.next_cursor || undefined;
    if (!cursor || seen.has(cursor)) return;
    seen.add(cursor);
  }
}

/** All items of a cursor-paginated Web API list method, in one array (see `slackItems`). */
export async function slackList<T = Record<string, unknown>>(slack: WebApiCaller, method: string, args: Record<string, unknown>, field: string,
  options: { signal?: AbortSignal; maxPages?: number } = {}): Promise<T[]> {
  const items: T[] = [];
  for await (const item of slackItems<T>(slack, method, args, field, options)) items.push(item);
  return items;
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Outbox deliveries: HTTP answers, retry or give up
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** Throw it from `deliver()` to give a delivery up for good (logged); any other error is retried with backoff. */
export class PermanentDeliveryError extends Error {
  readonly permanent = true;
}

/** Whether a delivery error gives the delivery up: a `PermanentDeliveryError` or any error with `permanent: true`. */
export function isPermanentDeliveryError(error: unknown): boolean {
  return (error as { permanent?: unknown } | undefined)?.permanent === true;
}

/** An HTTP status that may pass when asked again: 5xx (the server's trouble), 408 (request timeout) and 429 (throttled). */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

/** The error a `deliver()` throws for a non-2xx answer: retried when the status may pass (`isRetryableStatus`), else given up. */
export function httpDeliveryError(status: number, message: string): Error {
  return isRetryableStatus(status) ? new Error(message) : new PermanentDeliveryError(message);
}

/** Why `fetch()` failed before any answer: the network error's code (`ECONNREFUSED`, `ENOTFOUND`) or message. */
export function fetchFailureReason(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}

/**
 * The error a `deliver()` throws for a failed attempt: the delivery is given up (a `PermanentDeliveryError`
 * saying `what` and why) when the failure is permanent — `isPermanentDeliveryError`, or by default a permanent
 * Slack answer (`isPermanentSlackError`) — or when this was attempt `maxAttempts`; otherwise the error itself,
 * so the outbox retries it with backoff.
 */
export function retryOrGiveUp(error: unknown, delivery: Pick<OutboxDelivery, 'attempts'>,
  options: { what: string; maxAttempts: number; permanent?: (error: unknown) => boolean }): unknown {
  if (isPermanentDeliveryError(error)) return error;
  const permanent = (options.permanent ?? isPermanentSlackError)(error);
  const last = delivery.attempts + 1 >= options.maxAttempts;
  if (!permanent && !last) return error;
  const why = failureReason(error);
  return new PermanentDeliveryError(`${options.what}: ${why}${permanent ? '' : ` (given up after ${delivery.attempts + 1} attempts)`}`, { cause: error });
}

/**
 * One piece of work per key at a time: `run(key, work)` starts `work` once every earlier work of that key has
 * settled (in the order they were asked for), whatever their outcome; other keys run concurrently. For a
 * retried delivery whose timed-out attempt may still be running, or an incident's changes.
 */
export function serialPerKey<K = string>(): <T>(key: K, work: () => T | PromiseLike<T>) => Promise<T> {
  const tails = new Map<K, Promise<void>>();
  return <T>(key: K, work: () => T | PromiseLike<T>): Promise<T> => {
    const result = (tails.get(key) ?? Promise.resolve()).then(work);
    const tail = result.then(() => undefined, () => undefined);
    tails.set(key, tail);
    void tail.then(() => { if (tails.get(key) === tail) tails.delete(key); });
    return result;
  };
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Plugin options: one way to validate them
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/**
 * A plugin factory refused its options: every problem found, in one error (`name(): problem; problem`). Its
 * `name` stays `Error`: the config loader shows it as any other error a config file throws.
 */
export class PluginOptionsError extends Error {
  constructor(readonly plugin: string, readonly problems: readonly string[]) {
    super(`${plugin}: ${problems.join('; ')}`);
  }
}

/** The validation a plugin factory does, collecting every problem before it throws them together. */
export interface PluginOptionsCheck<O> {
  /** The options, as the factory's type says (checked to be an object). */
  readonly options: Partial<O>;
  /** Unless `ok`: `option 'x' expects WHAT, found VALUE` (the value is the option's). Returns `ok`. */
  expect(option: keyof O & string, ok: boolean, expected: string): boolean;
  /** A problem in the plugin's own words, e.g. a missing environment variable. */
  problem(text: string): void;
  /** Throw every problem recorded, as one `PluginOptionsError`; nothing recorded: return. */
  done(): void;
}

/**
 * Start validating a plugin factory's options: a non-object is refused at once; an option not in `known` is a
 * problem (with a "did you mean"; leave `known` out when any key goes, as in a map). `label` starts every
 * message: the factory as the user calls it, `stats()`. Check each option with `expect`, then call `done()`:
 *
 *     const check = pluginOptions<StatsOptions>('stats()', options, ['window', 'groupBy']);
 *     check.expect('groupBy', [undefined, 'head', 'label'].includes(options.groupBy), `'head' or 'label'`);
 *     check.done(); // stats(): option 'groupBy' expects 'head' or 'label', found 'rule'
 */
export function pluginOptions<O extends object>(label: string, options: unknown, known?: readonly (keyof O & string)[]): PluginOptionsCheck<O> {
  const call = label.replace(/\(\)$/, '');
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new PluginOptionsError(label, [`expects an options object such as ${call}({ ${known?.[0] ? `${known[0]}: ` : ''}… }), found ${describeValue(options)}`]);
  }
  const problems: string[] = [];
  for (const key of known ? Object.keys(options) : []) {
    if (!(known as readonly string[]).includes(key)) problems.push(`unknown option '${key}'; expected one of ${known!.join(', ')}${didYouMean(key, known!)}`);
  }
  const given = options as Partial<O>;
  return {
    options: given,
    expect(option, ok, expected) {
      if (!ok) problems.push(`option '${option}' expects ${expected}, found ${describeValue(given[option])}`);
      return ok;
    },
    problem(text) { problems.push(text); },
    done() { if (problems.length) throw new PluginOptionsError(label, problems); },
  };
}

/** For plugin factories: refuse a non-object or an unknown option, naming the plugin and what it takes (`pluginOptions` in one call). */
export function checkPluginOptions(plugin: string, options: unknown, known: readonly string[]): void {
  pluginOptions<Record<string, unknown>>(`${plugin}()`, options, known).done();
}

/** For plugin factories: `plugin(): option 'name' expects WHAT, found VALUE`. */
export function pluginOptionError(plugin: string, option: string, expected: string, found: unknown): Error {
  return new PluginOptionsError(`${plugin}()`, [`option '${option}' expects ${expected}, found ${describeValue(found)}`]);
}

/** A value as an error message shows it: `'text'`, `nothing`, `/re/`, short JSON. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value instanceof RegExp) return String(value);
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'function') return 'a function';
  const json = JSON.stringify(value);
  return json && json.length > 60 ? `${json.slice(0, 57)}…` : String(json);
}

/** ` (did you mean 'x'?)` when a candidate is close to `word`, else ''. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  if (word.length < 3) return '';
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) { best = candidate; bestDistance = d; }
  }
  return best ? ` (did you mean '${best}'?)` : '';
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length];
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Incidents as people read them
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** A span for people: `45s`, `4m 10s`, `2h 5m`, `3d 4h` (two units at most; a zero second unit is left out). */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const units: [number, string][] = [[Math.floor(total / 86_400), 'd'], [Math.floor(total / 3600) % 24, 'h'], [Math.floor(total / 60) % 60, 'm'], [total % 60, 's']];
  const first = units.findIndex(([value]) => value > 0);
  if (first < 0) return '0s';
  return units.slice(first, first + 2).filter(([value], i) => i === 0 || value > 0).map(([value, unit]) => `${value}${unit}`).join(' ');
}

/** A human: a user ID that is neither IMS's bot user nor another bot (`B…`, as bot replies are recorded). */
export function isHuman(user: string | undefined, botUserId: string): user is string {
  return !!user && user !== botUserId && !/^B[A-Z0-9]+$/.test(user);
}

/**
 * How an incident was first acknowledged by a person: when, by whom, and whether by a reaction, a thread reply,
 * in the monitoring tool (`acknowledge`: the integration's acknowledgement notice, e.g. Nagios' ACKNOWLEDGEMENT;
 * `user` is then the integration that relayed it), with the Acknowledge button on the post (`button`), or by resolving it.
 */
export interface Acknowledgement {
  at: number;
  user?: string;
  how: 'reaction' | 'reply' | 'acknowledge' | 'button' | 'resolve';
}

/**
 * The integrations that spoke about an incident on their own: the posters of its repeats, recoveries and
 * acknowledgement notices. What they do is never a person's acknowledgement.
 */
function integrationsOf(events: readonly IncidentEvent[]): Set<string> {
  // A click of Acknowledge is a person's (detail 'button'), not an integration's notice.
  return new Set(events.flatMap((e) => (e.kind === 'repeat' || e.kind === 'recovery' || (e.kind === 'acknowledge' && e.detail !== 'button')) && e.user ? [e.user] : []));
}

/**
 * The first human acknowledgement of an incident: the earliest reaction or thread reply by a person, or an
 * acknowledgement a person made in the monitoring tool (the integration's acknowledgement notice) — or, when
 * nothing came earlier, a person's resolution. Repeats, the integration's recovery, bot replies and IMS's
 * own notes never count: an incident its integration resolved that no person touched was not acknowledged.
 */
export function acknowledgement(incident: Incident, events: readonly IncidentEvent[], botUserId: string): Acknowledgement | undefined {
  const integrations = integrationsOf(events);
  let first: Acknowledgement | undefined;
  for (const event of events) {
    if (event.kind !== 'reaction' && event.kind !== 'reply' && event.kind !== 'resolve' && event.kind !== 'acknowledge') continue;
    if (event.kind === 'resolve' && event.user && integrations.has(event.user)) continue; // resolved by the recovery
    if ((event.kind === 'reaction' || event.kind === 'reply') && (!isHuman(event.user, botUserId) || integrations.has(event.user))) continue;
    // The resolving reaction is recorded as a reaction too, at the same instant: call it the resolution.
    const how = event.kind === 'acknowledge' && event.detail === 'button' ? 'button' : event.kind;
    if (!first || event.at < first.at || (event.at === first.at && event.kind === 'resolve')) first = { at: event.at, user: event.user, how };
  }
  if (!first && incident.resolvedAt !== undefined && !(incident.resolvedBy && integrations.has(incident.resolvedBy))) {
    first = { at: incident.resolvedAt, user: incident.resolvedBy, how: 'resolve' };
  }
  return first;
}

/** The integration's recovery that resolved an incident: its message's time (epoch ms), poster and link. */
export interface Recovery {
  at: number;
  user?: string;
  permalink?: string;
}

/**
 * The recovery that resolved the incident, when its latest resolution was its integration's (alert lifecycles)
 * and not a person's: the last recovery recorded by the poster the incident is resolved by. Undefined while
 * it is open, when a person resolved it, and for incidents from before lifecycles.
 */
export function recoveryOf(incident: Incident, events: readonly IncidentEvent[]): Recovery | undefined {
  if (incident.resolvedAt === undefined || !incident.resolvedBy) return undefined;
  const last = events.filter((e) => e.kind === 'recovery' && e.user === incident.resolvedBy).at(-1);
  return last && { at: last.at, user: last.user, permalink: last.detail };
}

/**
 * Milliseconds from an incident's opening to its (latest) resolution; undefined while open. When its
 * integration's recovery resolved it, measured on the alert's own clock (from the alert's `ts` to the
 * recovery's), so an incident IMS opened late (a catch-up after downtime) still gets its true duration;
 * otherwise from when IMS opened it to when a person resolved it.
 */
export function timeToResolve(incident: Incident, events: readonly IncidentEvent[]): number | undefined {
  if (incident.resolvedAt === undefined) return undefined;
  const recovery = recoveryOf(incident, events);
  if (recovery) return Math.max(0, recovery.at - Number.parseFloat(incident.sourceTs) * 1000);
  return Math.max(0, incident.resolvedAt - incident.createdAt);
}

/** `[Critical] DB` → `critical-db`: lowercase `[a-z0-9-]`, no leading, trailing or doubled dashes. */
export function slug(text: string): string {
  return text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Records plugins publish to each other (read with `ctx.store.read(plugin, key)`)
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** The war-room plugin's name, under which its store lives. */
export const WAR_ROOM_PLUGIN = 'war-room';

/** The store key of an incident's war room: `ctx.store.read<WarRoomRecord>(WAR_ROOM_PLUGIN, warRoomKey(id))`. */
export function warRoomKey(incidentId: number): string {
  return `room:${incidentId}`;
}

/** What the war-room plugin keeps per incident (and other plugins, such as timeline, may read). */
export interface WarRoomRecord {
  /** The room's channel ID, once created. */
  channel?: string;
  /** The room's name without `#`. */
  name?: string;
  invited?: boolean;
  described?: boolean;
  summaryTs?: string;
  pinned?: boolean;
  linkTs?: string;
  /** A post was started but not confirmed (a crash in between): look for it by metadata before posting again. */
  posting?: ('summary' | 'link')[];
  /** `resolvedAt` of the resolution whose message was posted in the room. */
  resolvedPosted?: number;
  archiveAt?: number;
  archived?: boolean;
}

#!/usr/bin/env -S npx tsx
/**
 * IMS: incident management for Slack.
 *
 * Watches alert channels through Socket Mode, matches each message against ordered regex rules,
 * reposts incidents with a label (paging the rule's hotline), marks the rest as seen, and reports
 * every incident nobody has marked resolved. Run it with `npx tsx ims.ts`; `--help` lists the flags.
 *
 * Read top to bottom: public types → define helpers → config loading → rule engine → CLI/main. The
 * concerns that outgrew this file live beside it, named after them, so it stays one sitting long: the
 * Slack runtime with the report and reminder (`ims-slack.ts`), the durable state (`ims-state.ts`), IMS.ini
 * compatibility (`ims-ini.ts`) and pattern compilation (`ims-regex.ts`).
 */
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { WebClient } from '@slack/web-api';
import type * as CronModule from 'cron';
import type { IncidentEvent } from './ims-state.ts';
import { runSlack } from './ims-slack.ts';
import { CONFIG_DIR, SOURCE_LINES, readIniLocated, type Located } from './ims-ini.ts';
import { fastTest, literalScanner, requiredLiterals, scanLiterals, translateRegex } from './ims-regex.ts';

export { loadIni, parseIni } from './ims-ini.ts';
export { translateRegex, requiredLiterals } from './ims-regex.ts';

export { State, tsAfter, type IncidentEvent, type OutboxItem } from './ims-state.ts';
export {
  Ims, runHooks, createLogger, buildReport, reportMessages, runReport, runReminders, clearReminders, slackTokens, incidentMessages,
  mentionOf, splitText, formatAge, type RuntimeOptions, type LogLevel,
} from './ims-slack.ts';

export const VERSION = '2.0.0';

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Public types
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** A regex: a RegExp, or a string in Go/RE2 syntax as IMS.ini uses (`(?i)…`, `(?P<name>…)`). */
export type Pattern = string | RegExp;

/** A span of time: milliseconds, or a string such as `'30s'`, `'15m'`, `'24h'`, `'7d'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

/** One line of `[Rules]`. Rules are tried in order; the first that matches wins. */
export interface Rule {
  /** Searched (unanchored) in the alert's readable text. */
  match: Pattern;
  /**
   * Searched in the alert's time formatted `YYYY/MM/DD HH:mm:ss Ddd` in `timezone`; the rule applies
   * only when it matches. Default: always. A string starting with `!` is the legacy spelling of
   * `suppress: true`.
   */
  when?: Pattern;
  /** When both match, the message is not an incident and no later rule is tried. */
  suppress?: boolean;
  /** Put in front of the repost, e.g. `[Error]`. */
  head: string;
  /** Key of `incidents` whose channel receives the repost. */
  incident: string;
  /** Key of `hotlines` whose members are paged when this rule opens an incident. */
  hotline?: string;
}

/** One line of `[Incidents]`: where a label's incidents are reposted. */
export interface IncidentChannel {
  /** Channel ID (`C…`/`G…`) or name (resolved at start-up). */
  channel: string;
  /** Legacy LIMIT: at most this many recent messages are read for the report (default: all in the window). */
  limit?: number;
}

/** The `DEFAULT` line of `[Incidents]`: where reverse mode reposts messages that matched no rule. */
export interface ReverseDefault {
  channel: string;
  /** Put in front of the repost, e.g. `[Alert]`. */
  header: string;
}

export interface ReportConfig {
  /** Channel that receives reports (`[Report]`). */
  channel?: string;
  /** Cron expression (5 or 6 fields) in `timezone`, e.g. `'0 9 * * 1-5'`. Overrides `everyHours`. */
  schedule?: string;
  /** Legacy `-loop`: hours between reports; the first runs at start-up. */
  everyHours?: number;
  /** How far back the report looks in incident channels. Default `'7d'`. */
  window?: Duration;
  /** Also list resolved incidents with their resolvers (legacy `-verbose`). */
  verbose?: boolean;
  /** `[MgmtReport]`: list only incident messages posted by these user/bot IDs. */
  onlyPosters?: string[];
}

/** One line of `[Reminder]`: during matching hours (`00`..`23`), post the open-incident counts. */
export interface ReminderConfig {
  channel: string;
  hours: Pattern[];
}

/** Reacji Channeler mode (`[Reacji]`, `[ReacjiID]`). */
export interface ReacjiConfig {
  /** Reaction added instead of reposting, so Slack's Reacji Channeler forwards the message. */
  reaction: string;
  /** Bot IDs whose posts are handled that way. */
  bots: string[];
}

export interface StateConfig {
  /** SQLite file. Default: `ims.db` beside the config file. */
  path?: string;
  /** After downtime, how far back missed alerts are caught up. Default `'24h'`. */
  catchUpWindow?: Duration;
}

/** The whole configuration: what `ims.config.ts` exports through `defineConfig`. */
export interface Config {
  rules: Rule[];
  incidents: Record<string, IncidentChannel>;
  /** Reverse mode's destination (`DEFAULT` line). Required when `reverse` is on. */
  reverseDefault?: ReverseDefault;
  /** Reactions that mark an incident resolved (`[Label]`). Default `['white_check_mark']`. */
  resolvedReactions?: string[];
  /** Reaction put on messages that are not incidents. Default: the first resolved reaction, as IMS did. */
  seenReaction?: string;
  report?: ReportConfig;
  /** `[PostID]`: only messages from these user IDs, user names or bot IDs are checked. Empty: everyone. */
  posters?: string[];
  /** `[Hotline]`: label → members (user ID or name, user group `S…` or `@handle`, `here`, `channel`, `everyone`). */
  hotlines?: Record<string, string[]>;
  reacji?: ReacjiConfig;
  reminders?: ReminderConfig[];
  /** Legacy `-reminder`: how often reminder hours are checked. Default `'30s'`. */
  reminderInterval?: Duration;
  /** IANA zone for rule windows, reports and reminders. Default: the process's zone. */
  timezone?: string;
  /** Reverse mode (legacy `-reverse`). The `--reverse` flag also turns it on. */
  reverse?: boolean;
  /** Reacji mode (legacy `-reacji`). The `--reacji` flag also turns it on. */
  reacjiMode?: boolean;
  state?: StateConfig;
  /** How an alert whose `text` is empty is read: `'readable'` text of attachments and blocks (default), or the legacy JSON dump. */
  attachmentText?: 'readable' | 'legacy-json';
  plugins?: Plugin[];
  /** How long one plugin hook may run before it is abandoned and logged. Default 10 s. */
  hookTimeoutMs?: number;
}

/** Leveled logger; the one a plugin receives is tagged with the plugin's name. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** An accepted Slack message, as the rules see it. */
export interface AlertMessage {
  channel: string;
  ts: string;
  /** `bot_id` when present, else `user`: what `[PostID]` filters on. */
  poster: string;
  user?: string;
  botId?: string;
  /** Readable, entity-decoded text the rules were matched against. */
  text: string;
  threadTs?: string;
  /** The event as Slack sent it. */
  raw: SlackMessageEvent;
}

/** A rule that matched, with its 1-based number in the rule list. */
export interface RuleMatch {
  rule: CompiledRule;
  /** Named groups the message regex captured (e.g. `host`). */
  groups: Record<string, string>;
}

/** An incident: an alert that a rule reposted to an incident channel. */
export interface Incident {
  /** Sequential number, stable across restarts. */
  id: number;
  sourceChannel: string;
  sourceTs: string;
  incidentChannel: string;
  incidentTs: string;
  ruleNumber: number;
  /** The rule's head, e.g. `[Error]`. */
  head: string;
  /** The incident label (key of `incidents`). */
  label: string;
  hotline?: string;
  text: string;
  poster: string;
  createdAt: number;
  resolvedAt?: number;
  resolvedBy?: string;
  permalink?: string;
}

/** Durable deliveries for plugins that call other systems (see `HookContext.outbox`). */
export interface Outbox {
  /**
   * Queue a delivery. `key` is the idempotency key of the change: a key already queued or delivered is
   * ignored, so a replayed event never sends twice. Deliveries of one `group` (e.g. an incident) go in
   * order; a failing one is retried with exponential backoff and jitter, across restarts.
   */
  enqueue(delivery: { key: string; group: string; payload: unknown }): void;
}

/** Everything a hook receives. */
export interface HookContext {
  config: Config;
  slack: WebClient;
  log: Logger;
  /** Aborted when the hook times out or IMS stops. */
  signal: AbortSignal;
  /** The bot's own user ID (from `auth.test`). */
  botUserId: string;
  outbox: Outbox;
  /** Look up incidents in the durable state. */
  incidents: {
    bySource(channel: string, ts: string): Incident | undefined;
    byPost(channel: string, ts: string): Incident | undefined;
    byId(id: number): Incident | undefined;
    list(filter?: { since?: number; open?: boolean; channel?: string }): Incident[];
    /** Reactions, thread replies, hotline pages, resolutions and reopenings, oldest first. */
    events(id: number): IncidentEvent[];
  };
  /** The report channel, resolved to an ID (undefined when none is configured). */
  reportChannel?: string;
  /** Mark a channel this plugin created (a war room) as its own: IMS never reads messages there as alerts. Durable. */
  ownChannel(channel: string): void;
  /** This plugin's durable key-value store (JSON values; `undefined` deletes); `read` looks at another plugin's. */
  store: {
    get<T = unknown>(key: string): T | undefined;
    set(key: string, value: unknown): void;
    read<T = unknown>(plugin: string, key: string): T | undefined;
  };
  /** A link to a Slack message. */
  permalink(channel: string, ts: string): string;
}

/** One queued outbox delivery, as `Plugin.deliver` receives it. */
export interface OutboxDelivery {
  key: string;
  group: string;
  payload: unknown;
  /** Failed attempts so far. */
  attempts: number;
}

export interface MessageContext extends HookContext {
  message: AlertMessage;
}

/** `onMatch`: the alert became an incident. */
export interface MatchContext extends MessageContext {
  match: RuleMatch;
  incident: Incident;
}

/** `onHotline`: the rule's on-call members were paged. */
export interface HotlineContext extends MatchContext {
  /** Mentions as posted, e.g. `<@U123>`, `<!here>`. */
  mentions: string[];
  post: { channel: string; ts: string };
}

/** `onReverse`: reverse mode reposted an alert that matched no rule. */
export interface ReverseContext extends MessageContext {
  repost: { channel: string; ts: string };
}

/** `onResolve` / `onReopen`. */
export interface ResolutionContext extends HookContext {
  incident: Incident;
  /** Who added (or removed) the resolved reaction. */
  user: string;
  reaction: string;
}

/** A block of the report: a plugin's own section. */
export interface ReportSection {
  title: string;
  lines: string[];
}

/** `onReport`: the report is built but not yet posted. */
export interface ReportContext extends HookContext {
  report: Report;
  /** Add a section; it is posted with the report. */
  addSection(section: ReportSection): void;
}

/** What an `onStart`/`onStop` hook receives. */
export type LifecycleContext = HookContext;

/** The open (and, verbose, resolved) incidents a report lists. */
export interface Report {
  generatedAt: number;
  windowStart: number;
  open: ReportItem[];
  resolved: ReportItem[];
  /** Channels that could not be read, with the error. */
  failures: { channel: string; error: string }[];
  sections: ReportSection[];
}

export interface ReportItem {
  channel: string;
  ts: string;
  text: string;
  permalink?: string;
  incident?: Incident;
  /** Real names of who resolved it. */
  resolvers?: string[];
}

/**
 * A plugin: a name and the hooks it implements. Every hook runs AFTER IMS's own work for that event,
 * isolated from the others: it is awaited with a timeout (`hookTimeoutMs`), and a throw, rejection or
 * timeout is logged with the plugin's and hook's names and otherwise ignored. Return values are
 * ignored unless the hook says otherwise.
 */
export interface Plugin {
  name: string;
  /** Fires once after IMS has connected and resolved names, before any event. */
  onStart?(ctx: LifecycleContext): void | Promise<void>;
  /** Fires once on shutdown, after the last event; the DB is still open. */
  onStop?(ctx: LifecycleContext): void | Promise<void>;
  /** Fires for every accepted message (poster filter passed), before matching. Plugins in order. */
  onMessage?(ctx: MessageContext): void | Promise<void>;
  /** Fires after the incident post is made and recorded. */
  onMatch?(ctx: MatchContext): void | Promise<void>;
  /** Fires after a reverse-mode repost to the DEFAULT channel. */
  onReverse?(ctx: ReverseContext): void | Promise<void>;
  /** Fires after the hotline post that pages the rule's members. */
  onHotline?(ctx: HotlineContext): void | Promise<void>;
  /** Fires when a resolved reaction is added to an open incident's post (or its original). */
  onResolve?(ctx: ResolutionContext): void | Promise<void>;
  /** Fires when the last resolved reaction is removed from a resolved incident. */
  onReopen?(ctx: ResolutionContext): void | Promise<void>;
  /** Fires when a report is built, before it is posted; `addSection` adds to it. */
  onReport?(ctx: ReportContext): void | Promise<void>;
  /**
   * Delivers one item this plugin queued with `ctx.outbox.enqueue`, in order per group. Resolve when it is
   * delivered; throw to retry later (exponential backoff with jitter, across restarts); throw a
   * `PermanentDeliveryError` (or any error with `permanent: true`) to give it up (logged).
   */
  deliver?(delivery: OutboxDelivery, ctx: HookContext): Promise<void>;
}

/** Hook names, in the order a plugin author meets them. */
export const HOOK_NAMES = [
  'onStart', 'onMessage', 'onMatch', 'onHotline', 'onReverse', 'onResolve', 'onReopen', 'onReport', 'onStop',
] as const;
const PLUGIN_FUNCTIONS = new Set<string>([...HOOK_NAMES, 'deliver']);
export type HookName = (typeof HOOK_NAMES)[number];

/** A Slack `message` event, as far as IMS reads it. */
export interface SlackMessageEvent {
  type: 'message';
  channel: string;
  ts: string;
  user?: string;
  bot_id?: string;
  subtype?: string;
  hidden?: boolean;
  text?: string;
  thread_ts?: string;
  attachments?: SlackAttachment[];
  blocks?: unknown[];
  [key: string]: unknown;
}

export interface SlackAttachment {
  fallback?: string;
  pretext?: string;
  title?: string;
  text?: string;
  fields?: { title?: string; value?: string }[];
  [key: string]: unknown;
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Define helpers
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** Identity: types an `ims.config.ts` so a misspelt key, at any depth, fails type-checking. */
export function defineConfig(config: Config): Config {
  return config;
}

/** Identity: types a plugin so a misspelt hook name fails type-checking and hooks get typed contexts. */
export function definePlugin(plugin: Plugin): Plugin {
  return plugin;
}

/** Throw it from `deliver()` to give a delivery up for good (logged); any other error is retried with backoff. */
export class PermanentDeliveryError extends Error {
  readonly permanent = true;
}

/** For plugin factories: `plugin(): option 'name' expects WHAT, found VALUE`. */
export function pluginOptionError(plugin: string, option: string, expected: string, found: unknown): Error {
  return new Error(`${plugin}(): option '${option}' expects ${expected}, found ${describe(found)}`);
}

/** For plugin factories: refuse a non-object or an unknown option, naming the plugin and what it takes. */
export function checkPluginOptions(plugin: string, options: unknown, known: readonly string[]): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new Error(`${plugin}(): expects an options object such as ${plugin}({ ${known[0]}: … }), found ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new Error(`${plugin}(): unknown option '${key}'; expected one of ${known.join(', ')}`);
  }
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Config loading
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** A configuration that cannot be used; `problems` are every `place: what is wrong` found. */
export class ConfigError extends Error {
  constructor(readonly problems: string[], readonly source: string) {
    super(`${source}: configuration refused (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
      problems.map((p) => `  ${p}`).join('\n'));
    this.name = 'ConfigError';
  }
}

/**
 * `place: ` for a config path: `IMS.ini:12: ` when the value there (or the nearest object above it) was
 * read from IMS.ini, else `source: path: `.
 */
function placeOf(config: Config, source: string, at: string): string {
  const located = (config as Located)[SOURCE_LINES];
  if (located) {
    let value: unknown = config;
    let line: number | undefined;
    for (const key of at.split(/[.[\]]+/).filter(Boolean)) {
      value = value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
      if (value && typeof value === 'object') line = located.lines.get(value) ?? line;
    }
    if (line !== undefined) return `${located.file}:${line}: `;
  }
  return at ? `${source}: ${at}: ` : `${source}: `;
}

/** The validated, compiled form the engine and the runtime use. */
export interface CompiledConfig {
  source: string;
  config: Config;
  rules: CompiledRule[];
  incidents: Map<string, { label: string; channel: string; limit?: number }>;
  /** Channels IMS itself posts into: never watched. */
  ownChannels: Set<string>;
  reverseDefault?: ReverseDefault;
  resolvedReactions: string[];
  seenReaction: string;
  posters: Set<string> | null;
  hotlines: Map<string, string[]>;
  reacji?: { reaction: string; bots: Set<string> };
  reminders: { channel: string; hours: RegExp[] }[];
  reminderIntervalMs: number;
  report: { channel?: string; schedule?: string; everyHours?: number; windowMs: number; verbose: boolean; onlyPosters: Set<string> | null };
  timezone?: string;
  state: { path: string; catchUpWindowMs: number };
  attachmentText: 'readable' | 'legacy-json';
  plugins: Plugin[];
  hookTimeoutMs: number;
  reverse: boolean;
  reacjiMode: boolean;
}

export interface CompiledRule {
  /** 1-based position in the rule list, as `--test` prints it. */
  number: number;
  /** A match must contain one of these (lower-cased when `ignoreCase`); undefined: no prefilter. */
  literals?: string[];
  /** The message regex captures named groups (only then is it run a second time, for them). */
  hasGroups: boolean;
  ignoreCase: boolean;
  /** Fast form for the yes/no question (redundant `.*` at the ends removed). */
  test: RegExp;
  /** Full form, for named groups. */
  match: RegExp;
  when?: RegExp;
  suppress: boolean;
  head: string;
  incident: string;
  hotline?: string;
  source: Rule;
}

const KNOWN_KEYS: Record<string, readonly string[]> = {
  '': ['rules', 'incidents', 'reverseDefault', 'resolvedReactions', 'seenReaction', 'report', 'posters', 'hotlines', 'reacji', 'reminders',
    'reminderInterval', 'timezone', 'reverse', 'reacjiMode', 'state', 'attachmentText', 'plugins', 'hookTimeoutMs'],
  rule: ['match', 'when', 'suppress', 'head', 'incident', 'hotline'],
  incident: ['channel', 'limit'],
  report: ['channel', 'schedule', 'everyHours', 'window', 'verbose', 'onlyPosters'],
  reverseDefault: ['channel', 'header'],
  reacji: ['reaction', 'bots'],
  reminder: ['channel', 'hours'],
  state: ['path', 'catchUpWindow'],
};

/**
 * Validate a config and compile it (every regex once). Returns every problem found, each starting
 * with its place; `compiled` is set only when there are none.
 */
export function validateConfig(config: Config, options: { source?: string; reverse?: boolean; reacji?: boolean; baseDir?: string } = {}):
  { problems: string[]; warnings: string[]; compiled?: CompiledConfig } {
  const source = options.source ?? (config as Located | null)?.[SOURCE_LINES]?.file ?? 'config';
  const problems: string[] = [];
  const warnings: string[] = [];
  const fail = (at: string, message: string) => problems.push(placeOf(config, source, at) + message);
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const unknownKeys = (value: unknown, kind: string, at: string) => {
    if (!isObject(value)) return;
    for (const key of Object.keys(value)) {
      if (!KNOWN_KEYS[kind].includes(key)) fail(at ? `${at}.${key}` : key, `unknown key '${key}'${didYouMean(key, KNOWN_KEYS[kind])}; expected one of ${KNOWN_KEYS[kind].join(', ')}`);
    }
  };
  const str = (value: unknown, at: string, what: string): value is string => {
    if (typeof value === 'string' && value.trim() !== '') return true;
    fail(at, `expected ${what}, found ${describe(value)}`);
    return false;
  };
  const regex = (value: unknown, at: string, what: string): RegExp | undefined => {
    if (!(value instanceof RegExp) && typeof value !== 'string') { fail(at, `expected ${what} (a string or RegExp), found ${describe(value)}`); return undefined; }
    try { return translateRegex(value); } catch (error) { fail(at, `${what} ${(error as Error).message}`); return undefined; }
  };
  const duration = (value: unknown, at: string, fallback: number) => {
    if (value === undefined) return fallback;
    const ms = parseDuration(value);
    if (ms === undefined || ms <= 0) fail(at, `expected a duration such as '30s', '24h', '7d' or milliseconds, found ${describe(value)}`);
    return ms ?? fallback;
  };

  if (!isObject(config)) {
    return { problems: [`${source}: expected the config to be an object (export default defineConfig({...})), found ${describe(config)}`], warnings };
  }
  unknownKeys(config, '', '');
  const bool = (value: unknown, at: string) => {
    if (value !== undefined && typeof value !== 'boolean') fail(at, `expected true or false, found ${describe(value)}`);
  };
  const stringList = (value: unknown, at: string, what: string) => {
    if (value !== undefined && !(Array.isArray(value) && value.every((v) => typeof v === 'string' && v.trim()))) fail(at, `expected a list of ${what}, found ${describe(value)}`);
  };
  const objectOrNothing = (value: unknown, at: string, shape: string) => {
    if (value !== undefined && !isObject(value)) { fail(at, `expected ${shape}, found ${describe(value)}`); return false; }
    return true;
  };
  bool(config.reverse, 'reverse');
  bool(config.reacjiMode, 'reacjiMode');

  const hotlines = new Map<string, string[]>();
  if (config.hotlines !== undefined && !isObject(config.hotlines)) fail('hotlines', `expected an object of label → members, found ${describe(config.hotlines)}`);
  for (const [label, members] of Object.entries(isObject(config.hotlines) ? config.hotlines : {})) {
    if (!Array.isArray(members) || !members.length || !members.every((m) => typeof m === 'string' && m.trim())) {
      fail(`hotlines.${label}`, `expected a non-empty list of members (user ID or name, 'here', 'channel', 'everyone', a user group), found ${describe(members)}`);
    } else hotlines.set(label, members.map((m) => m.trim()));
  }

  const incidents = new Map<string, { label: string; channel: string; limit?: number }>();
  if (!isObject(config.incidents)) fail('incidents', `expected an object of label → { channel, limit? }, found ${describe(config.incidents)}`);
  for (const [label, target] of Object.entries(isObject(config.incidents) ? config.incidents : {})) {
    const at = `incidents.${label}`;
    if (!isObject(target)) { fail(at, `expected { channel, limit? }, found ${describe(target)}`); continue; }
    unknownKeys(target, 'incident', at);
    if (target.limit !== undefined && !(Number.isInteger(target.limit) && (target.limit as number) > 0)) fail(`${at}.limit`, `expected a positive whole number, found ${describe(target.limit)}`);
    if (str(target.channel, `${at}.channel`, 'a channel ID or name')) incidents.set(label, { label, channel: target.channel.trim(), limit: target.limit as number | undefined });
  }

  const rules: CompiledRule[] = [];
  if (!Array.isArray(config.rules)) fail('rules', `expected a list of rules, found ${describe(config.rules)}`);
  (Array.isArray(config.rules) ? config.rules : []).forEach((rule, index) => {
    const at = `rules[${index}]`;
    if (!isObject(rule)) { fail(at, `expected a rule object { match, head, incident, when?, suppress?, hotline? }, found ${describe(rule)}`); return; }
    unknownKeys(rule, 'rule', at);
    const match = regex(rule.match, `${at}.match`, 'message regex');
    if (typeof rule.match === 'string' && rule.match === '') fail(`${at}.match`, `message regex is empty; use '.' to match every message`);
    let when: RegExp | undefined;
    let suppress = rule.suppress === true;
    if (rule.suppress !== undefined && typeof rule.suppress !== 'boolean') fail(`${at}.suppress`, `expected true or false, found ${describe(rule.suppress)}`);
    if (rule.when !== undefined) {
      let window = rule.when;
      if (typeof window === 'string' && window.startsWith('!')) { suppress = true; window = window.slice(1); }
      if (window === '') fail(`${at}.when`, `date regex is empty; use '.*' for always`);
      else when = regex(window, `${at}.when`, 'date regex');
    }
    if (str(rule.head, `${at}.head`, "a head such as '[Error]'") && str(rule.incident, `${at}.incident`, 'an incident label') && !incidents.has(rule.incident)) {
      fail(`${at}.incident`, `unknown incident label '${rule.incident}'${didYouMean(rule.incident, [...incidents.keys()])}; define it in [Incidents] / incidents (known: ${[...incidents.keys()].join(', ') || 'none'})`);
    }
    if (rule.hotline !== undefined && typeof rule.hotline !== 'string') fail(`${at}.hotline`, `expected a hotline label (a key of hotlines), found ${describe(rule.hotline)}`);
    else if (rule.hotline !== undefined && !hotlines.has(rule.hotline)) {
      fail(`${at}.hotline`, `unknown hotline '${rule.hotline}'${didYouMean(rule.hotline, [...hotlines.keys()])}; define it in [Hotline] / hotlines (known: ${[...hotlines.keys()].join(', ') || 'none'})`);
    }
    if (match) {
      rules.push({
        number: index + 1, test: fastTest(match), match, when: when && fastTest(when), suppress,
        literals: requiredLiterals(match), ignoreCase: match.flags.includes('i'), hasGroups: /\(\?<(?![=!])/.test(match.source),
        head: String(rule.head), incident: String(rule.incident), hotline: rule.hotline as string | undefined, source: rule as unknown as Rule,
      });
    }
  });

  const reverse = options.reverse === true || config.reverse === true;
  const reacjiMode = options.reacji === true || config.reacjiMode === true;
  if (config.reverseDefault !== undefined) {
    unknownKeys(config.reverseDefault, 'reverseDefault', 'reverseDefault');
    if (isObject(config.reverseDefault)) {
      str(config.reverseDefault.channel, 'reverseDefault.channel', 'a channel ID or name');
      str(config.reverseDefault.header, 'reverseDefault.header', "a header such as '[Alert]'");
    } else fail('reverseDefault', `expected { channel, header }, found ${describe(config.reverseDefault)}`);
  } else if (reverse) {
    fail('incidents', `reverse mode needs a DEFAULT line in [Incidents] (reverseDefault: { channel, header }): where should messages that match no rule go?`);
  }

  const resolvedReactions = config.resolvedReactions ?? ['white_check_mark'];
  if (!Array.isArray(resolvedReactions) || !resolvedReactions.length || !resolvedReactions.every(isReactionName)) {
    fail('resolvedReactions', `expected a non-empty list of reaction names such as 'white_check_mark', found ${describe(config.resolvedReactions)}`);
  }
  if (config.seenReaction !== undefined && !isReactionName(config.seenReaction)) fail('seenReaction', `expected a reaction name, found ${describe(config.seenReaction)}`);

  const report = objectOrNothing(config.report, 'report', '{ channel?, schedule?, window?, verbose?, onlyPosters? }') ? config.report ?? {} : {};
  unknownKeys(report, 'report', 'report');
  bool(report.verbose, 'report.verbose');
  stringList(report.onlyPosters, 'report.onlyPosters', 'user or bot IDs');
  if (report.channel !== undefined) str(report.channel, 'report.channel', 'a channel ID or name');
  if (report.schedule !== undefined && cronProblem(report.schedule)) fail('report.schedule', `expected a cron expression such as '0 9 * * *', found '${report.schedule}': ${cronProblem(report.schedule)}`);
  if (report.everyHours !== undefined && !(typeof report.everyHours === 'number' && report.everyHours > 0)) fail('report.everyHours', `expected a positive number of hours, found ${describe(report.everyHours)}`);
  const windowMs = duration(report.window, 'report.window', 7 * DAY);

  if (config.timezone !== undefined && !isTimeZone(config.timezone)) fail('timezone', `expected an IANA time zone such as 'Europe/Oslo' or 'UTC', found ${describe(config.timezone)}`);

  const reacji = config.reacji;
  if (reacji !== undefined) {
    unknownKeys(reacji, 'reacji', 'reacji');
    if (isObject(reacji)) stringList(reacji.bots, 'reacji.bots', 'bot IDs');
    if (!isObject(reacji) || !isReactionName(reacji.reaction)) fail('reacji', `expected { reaction, bots } with a reaction name ([Reacji]), found ${describe(reacji)}`);
  } else if (reacjiMode) fail('reacji', `Reacji mode needs a [Reacji] reaction and [ReacjiID] bots (reacji: { reaction, bots })`);

  const reminders: CompiledConfig['reminders'] = [];
  if (config.reminders !== undefined && !Array.isArray(config.reminders)) fail('reminders', `expected a list of { channel, hours }, found ${describe(config.reminders)}`);
  (Array.isArray(config.reminders) ? config.reminders : []).forEach((reminder, index) => {
    const at = `reminders[${index}]`;
    unknownKeys(reminder, 'reminder', at);
    if (!isObject(reminder) || !Array.isArray(reminder.hours) || !reminder.hours.length) { fail(at, `expected { channel, hours: [regex…] }, found ${describe(reminder)}`); return; }
    str(reminder.channel, `${at}.channel`, 'a channel ID or name');
    const hours = reminder.hours.map((hour, i) => regex(hour, `${at}.hours[${i}]`, 'hour regex')).filter((r): r is RegExp => !!r);
    reminders.push({ channel: String(reminder.channel), hours });
  });

  const state = objectOrNothing(config.state, 'state', '{ path?, catchUpWindow? }') ? config.state ?? {} : {};
  unknownKeys(state, 'state', 'state');
  if (state.path !== undefined && (typeof state.path !== 'string' || !state.path.trim())) fail('state.path', `expected a file path, found ${describe(state.path)}`);
  const plugins = config.plugins ?? [];
  if (!Array.isArray(plugins)) fail('plugins', `expected a list of plugins (definePlugin({...}) or a factory's result), found ${describe(plugins)}`);
  else plugins.forEach((plugin, index) => {
    const at = `plugins[${index}]`;
    if (!isObject(plugin) || typeof plugin.name !== 'string' || !plugin.name) { fail(at, `expected a plugin object with a name, found ${describe(plugin)}; did you forget to call the factory, e.g. pin() instead of pin?`); return; }
    for (const key of Object.keys(plugin)) {
      if (key === 'name') continue;
      if (!PLUGIN_FUNCTIONS.has(key)) fail(`${at}.${key}`, `plugin '${plugin.name}' has an unknown key '${key}'${didYouMean(key, HOOK_NAMES)}; hooks are ${HOOK_NAMES.join(', ')}`);
      else if (typeof (plugin as Record<string, unknown>)[key] !== 'function') fail(`${at}.${key}`, `plugin '${plugin.name}': ${key} must be a function`);
    }
  });
  if (config.attachmentText !== undefined && !['readable', 'legacy-json'].includes(config.attachmentText)) fail('attachmentText', `expected 'readable' or 'legacy-json', found ${describe(config.attachmentText)}`);
  if (config.hookTimeoutMs !== undefined && !(typeof config.hookTimeoutMs === 'number' && config.hookTimeoutMs > 0)) fail('hookTimeoutMs', `expected a positive number of milliseconds, found ${describe(config.hookTimeoutMs)}`);
  if (config.posters !== undefined && !(Array.isArray(config.posters) && config.posters.every((p) => typeof p === 'string'))) fail('posters', `expected a list of user IDs, names or bot IDs, found ${describe(config.posters)}`);

  const reminderIntervalMs = duration(config.reminderInterval, 'reminderInterval', 30_000);
  const catchUpWindowMs = duration(state.catchUpWindow, 'state.catchUpWindow', DAY);
  if (problems.length) return { problems, warnings };

  const ownChannels = new Set([...incidents.values()].map((i) => i.channel));
  if (report.channel) ownChannels.add(report.channel);
  if (config.reverseDefault) ownChannels.add(config.reverseDefault.channel);
  const sourceDir = options.baseDir ?? path.dirname(path.resolve(source));
  return {
    problems, warnings,
    compiled: {
      source, config, rules, incidents, ownChannels, hotlines, reminders, reminderIntervalMs, reverse, reacjiMode,
      reverseDefault: config.reverseDefault,
      resolvedReactions: resolvedReactions.map(String),
      seenReaction: config.seenReaction ?? resolvedReactions[0],
      posters: config.posters?.length ? new Set(config.posters) : null,
      reacji: reacji ? { reaction: reacji.reaction, bots: new Set(reacji.bots ?? []) } : undefined,
      report: {
        channel: report.channel, schedule: report.schedule, everyHours: report.everyHours, windowMs,
        verbose: report.verbose === true, onlyPosters: report.onlyPosters?.length ? new Set(report.onlyPosters) : null,
      },
      timezone: config.timezone,
      state: { path: path.resolve(sourceDir, state.path ?? 'ims.db'), catchUpWindowMs },
      attachmentText: config.attachmentText ?? 'readable',
      plugins: plugins as Plugin[],
      hookTimeoutMs: config.hookTimeoutMs ?? 10_000,
    },
  };
}

/** Validate and compile, or throw `ConfigError` with every problem. */
export function compileConfig(config: Config, options: { source?: string; reverse?: boolean; reacji?: boolean; baseDir?: string } = {}): CompiledConfig {
  const { problems, compiled } = validateConfig(config, options);
  if (!compiled) throw new ConfigError(problems, options.source ?? (config as Located | null)?.[SOURCE_LINES]?.file ?? 'config');
  return compiled;
}

const CONFIG_SEARCH_PLACES = ['package.json', '.imsrc', '.imsrc.json', '.imsrc.yaml', '.imsrc.yml', '.imsrc.js', '.imsrc.mjs', '.imsrc.ts',
  'ims.config.ts', 'ims.config.mjs', 'ims.config.js', 'IMS.ini'];
const INI_MARK = 'ims:ini-path';

/**
 * Import a config module fresh every time, so a reload sees the edit. A plain `import()` keeps one module
 * graph: the config's own `import … from './ims.ts'` is this very module, not a second copy (a second copy
 * would start a second IMS). Outside a `"type": "module"` package Node loads the file as CommonJS, whose cache
 * ignores the query, so its entry is dropped first; its namespace then wraps the export once more.
 */
let configLoads = 0;
async function importFresh(file: string): Promise<unknown> {
  delete createRequire(import.meta.url).cache[file];
  const loading = globalThis as { [CONFIG_DIR]?: string };
  loading[CONFIG_DIR] = path.dirname(file);
  const module = await import(`${pathToFileURL(file).href}?load=${++configLoads}`).finally(() => { delete loading[CONFIG_DIR]; });
  let value = module.default ?? module;
  if (value && typeof value === 'object' && !('rules' in value) && value.default && typeof value.default === 'object') value = value.default;
  return value;
}

async function configExplorer() {
  const { cosmiconfig } = await import('cosmiconfig');
  const load = (filepath: string) => importFresh(filepath);
  return cosmiconfig('ims', {
    searchPlaces: CONFIG_SEARCH_PLACES, searchStrategy: 'none', cache: false,
    loaders: { '.ts': load, '.mts': load, '.cts': load, '.mjs': load, '.js': load, '.cjs': load, '.ini': (filepath: string) => ({ [INI_MARK]: filepath }) },
  });
}

/**
 * Find and read the configuration: an explicit path (`.ini` through the legacy loader), else cosmiconfig's
 * search in `cwd` (`ims.config.ts|js|mjs`, `.imsrc*`, the `"ims"` key of package.json, then `IMS.ini`).
 */
export async function loadConfig(options: { path?: string; cwd?: string; reverse?: boolean; reacji?: boolean } = {}): Promise<CompiledConfig> {
  const cwd = options.cwd ?? process.cwd();
  const explorer = await configExplorer();
  const fail = (file: string, message: string): never => { throw new ConfigError([message], file); };
  let shown: string;
  let absolute: string;
  let config: unknown;
  if (options.path === undefined) {
    const found = await explorer.search(cwd).catch((error: Error) => fail('config', error.message));
    if (!found) fail('config', `no configuration found in ${cwd}; create ims.config.ts (see README) or pass --config PATH (an IMS.ini works too)`);
    absolute = found!.filepath;
    shown = path.relative(cwd, absolute) || absolute;
    config = found!.config;
  } else {
    shown = options.path;
    absolute = path.resolve(cwd, options.path);
    if (!existsSync(absolute)) fail(shown, 'the config file does not exist; check the path given to --config');
    if (/\.ini$/i.test(absolute)) config = { [INI_MARK]: absolute };
    else {
      const loaded = await explorer.load(absolute).catch((error: Error) => fail(shown, /JSON Error/.test(error.message)
        ? `not valid JSON: ${error.message.replace(/^JSON Error in [^\n]*\n/, '')}` : `could not be loaded: ${error.message}`));
      config = loaded?.config;
    }
  }
  const iniPath = (config as Record<string, unknown> | undefined)?.[INI_MARK] as string | undefined;
  if (iniPath) config = readIniLocated(iniPath, shown);
  return compileConfig(config as Config, { source: shown, reverse: options.reverse, reacji: options.reacji, baseDir: path.dirname(absolute) });
}


// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Rule engine
// ═══════════════════════════════════════════════════════════════════════════════════════════════

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const zoneFormatters = new Map<string, Intl.DateTimeFormat>();
/** Zone → quarter-hour bucket → offset. Live alerts come in time order, a replay jumps around: keep many. */
const zoneOffsets = new Map<string, Map<number, number>>();
const OFFSET_BUCKET_MS = 15 * 60_000;

/**
 * The zone's UTC offset at an instant. Intl is slow (~8 µs a call), and offsets only change on quarter-hour
 * boundaries, so it is asked once per zone and quarter hour.
 */
function zoneOffsetMs(epochMs: number, timeZone?: string): number {
  const key = timeZone ?? '';
  const bucket = Math.floor(epochMs / OFFSET_BUCKET_MS);
  let buckets = zoneOffsets.get(key);
  if (!buckets) zoneOffsets.set(key, (buckets = new Map()));
  const cached = buckets.get(bucket);
  if (cached !== undefined) return cached;
  if (buckets.size >= 10_000) buckets.clear();
  let format = zoneFormatters.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    zoneFormatters.set(key, format);
  }
  const start = bucket * OFFSET_BUCKET_MS;
  const p: Record<string, number> = {};
  for (const part of format.formatToParts(new Date(start))) p[part.type] = Number(part.value);
  const offset = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - start;
  buckets.set(bucket, offset);
  return offset;
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** Calendar parts of an instant in a zone (default: the process's), two-digit padded. */
export function dateParts(epochMs: number, timeZone?: string) {
  const local = new Date(epochMs + zoneOffsetMs(epochMs, timeZone));
  return {
    year: String(local.getUTCFullYear()), month: pad2(local.getUTCMonth() + 1), day: pad2(local.getUTCDate()),
    hour: pad2(local.getUTCHours()), minute: pad2(local.getUTCMinutes()), second: pad2(local.getUTCSeconds()),
    weekday: WEEKDAYS[local.getUTCDay()],
  };
}

/** `YYYY/MM/DD HH:mm:ss Ddd` in `timeZone` (default: the process's): what a rule's `when` is searched in. */
export function ruleClock(epochMs: number, timeZone?: string): string {
  const p = dateParts(epochMs, timeZone);
  return `${p.year}/${p.month}/${p.day} ${p.hour}:${p.minute}:${p.second} ${p.weekday}`;
}

/** `YYYY/MM/DD HH:mm:ss` as the legacy report printed dates. */
export function formatDate(epochMs: number, timeZone?: string): string {
  return ruleClock(epochMs, timeZone).slice(0, 19);
}

export type RuleVerdict =
  | { kind: 'incident'; match: RuleMatch }
  | { kind: 'suppressed'; match: RuleMatch }
  | { kind: 'none' };

/**
 * Try the rules in order: the first whose message regex and window both match wins. A suppression rule
 * that wins means "not an incident". A rule whose incident label is not defined is skipped.
 */
export function matchRules(rules: readonly CompiledRule[], text: string, epochMs: number,
  options: { timezone?: string; incidents?: ReadonlyMap<string, unknown> } = {}): RuleVerdict {
  let clock: string | undefined;
  const scanner = literalScanner(rules);
  const stamp = scanLiterals(scanner, text);
  for (let index = 0; index < rules.length; index++) {
    const rule = rules[index];
    const literals = scanner.ruleLiterals[index];
    if (literals) {
      let possible = false;
      for (let k = 0; k < literals.length && !possible; k++) possible = scanner.seen[literals[k]] === stamp;
      if (!possible) continue;
    }
    if (!rule.test.test(text)) continue;
    if (rule.when && !rule.when.test(clock ??= ruleClock(epochMs, options.timezone))) continue;
    if (!rule.suppress && options.incidents && !options.incidents.has(rule.incident)) continue;
    const groups = rule.hasGroups ? { ...rule.match.exec(text)?.groups } : {};
    return { kind: rule.suppress ? 'suppressed' : 'incident', match: { rule, groups } };
  }
  return { kind: 'none' };
}

const ENTITIES: Record<string, string> = { '&lt;': '<', '&gt;': '>', '&amp;': '&' };

/** Slack sends `&`, `<`, `>` entity-encoded; rules see the plain characters. */
export function decodeEntities(text: string): string {
  return text.includes('&') ? text.replace(/&(?:lt|gt|amp);/g, (entity) => ENTITIES[entity]) : text;
}

/** Escape untrusted text for Slack mrkdwn, so it can never mention anyone or form a link. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * The text rules are matched against: `text`, or when it is empty, the readable text of attachments
 * (pretext, title, text, fields, fallback) and blocks — or their JSON in `legacy-json` mode, as IMS did.
 */
export function messageText(event: Pick<SlackMessageEvent, 'text' | 'attachments' | 'blocks'>, mode: 'readable' | 'legacy-json' = 'readable'): string {
  if (event.text && event.text.trim() !== '') return decodeEntities(event.text);
  if (mode === 'legacy-json') return event.attachments?.length ? JSON.stringify(event.attachments) : '';
  const lines: string[] = [];
  for (const attachment of event.attachments ?? []) {
    const own: string[] = [];
    for (const value of [attachment.pretext, attachment.title, attachment.text]) if (value) own.push(value);
    for (const field of attachment.fields ?? []) {
      const line = [field.title, field.value].filter(Boolean).join(': ');
      if (line) own.push(line);
    }
    if (attachment.fallback && !own.some((line) => line.includes(attachment.fallback!))) own.push(attachment.fallback);
    lines.push(...own);
    if (Array.isArray(attachment.blocks)) lines.push(...blockText(attachment.blocks));
  }
  lines.push(...blockText(event.blocks ?? []));
  return decodeEntities(lines.join('\n'));
}

function blockText(blocks: unknown[]): string[] {
  const lines: string[] = [];
  const visit = (node: unknown, inline: string[]): void => {
    if (!node || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (n.type === 'rich_text_section' || n.type === 'rich_text_preformatted' || n.type === 'rich_text_quote') {
      const parts: string[] = [];
      for (const element of (n.elements as unknown[]) ?? []) visit(element, parts);
      if (parts.length) lines.push(parts.join(''));
      return;
    }
    if (n.type === 'text' || n.type === 'link') { inline.push(String(n.text ?? n.url ?? '')); return; }
    if (n.type === 'user') { inline.push(`<@${n.user_id}>`); return; }
    if (n.type === 'emoji') { inline.push(`:${n.name}:`); return; }
    if (typeof n.text === 'string') { lines.push(n.text); return; }
    if (n.text && typeof n.text === 'object') visit(n.text, inline);
    for (const key of ['fields', 'elements']) for (const child of (n[key] as unknown[]) ?? []) visit(child, inline);
  };
  for (const block of blocks) visit(block, []);
  return lines;
}

/** What IMS does with one message; the runtime carries it out, `--replay` and `--test` print it. */
export type Decision =
  | { action: 'ignore'; reason: 'own post' | 'hidden subtype' | 'empty text' | 'poster' | 'own channel' }
  | { action: 'incident'; match: RuleMatch; channel: string; hotline?: string }
  | { action: 'suppressed'; match: RuleMatch; reaction: string }
  | { action: 'seen'; match?: RuleMatch; reaction: string }
  | { action: 'reverse repost'; channel: string; header: string }
  | { action: 'reacji'; match?: RuleMatch; reaction: string };

const HIDDEN_SUBTYPES = new Set(['message_changed', 'message_deleted', 'message_replied', 'channel_join', 'channel_leave',
  'channel_topic', 'channel_purpose', 'channel_name', 'channel_archive', 'channel_unarchive', 'group_join', 'group_leave',
  'pinned_item', 'unpinned_item', 'ekm_access_denied', 'tombstone']);

/** Decide what to do with a message event. Pure: no Slack, no state. */
export function decide(config: CompiledConfig, event: SlackMessageEvent, options: { self?: { userId?: string; botId?: string }; testing?: boolean } = {}):
  { decision: Decision; message?: AlertMessage } {
  if (event.hidden || (event.subtype && HIDDEN_SUBTYPES.has(event.subtype))) return { decision: { action: 'ignore', reason: 'hidden subtype' } };
  const poster = event.bot_id || event.user || '';
  if ((options.self?.botId && event.bot_id === options.self.botId) || (options.self?.userId && event.user === options.self.userId)) {
    return { decision: { action: 'ignore', reason: 'own post' } };
  }
  if (!options.testing && config.ownChannels.has(event.channel)) return { decision: { action: 'ignore', reason: 'own channel' } };
  if (!options.testing && config.posters && !config.posters.has(poster) && !(event.user && config.posters.has(event.user))) {
    return { decision: { action: 'ignore', reason: 'poster' } };
  }
  const text = messageText(event, config.attachmentText);
  if (text.trim() === '') return { decision: { action: 'ignore', reason: 'empty text' } };
  const message: AlertMessage = {
    channel: event.channel, ts: event.ts, poster, user: event.user, botId: event.bot_id, text, threadTs: event.thread_ts, raw: event,
  };
  const verdict = matchRules(config.rules, text, tsToMs(event.ts), { timezone: config.timezone, incidents: config.incidents });
  const reacjiApplies = config.reacjiMode && config.reacji && config.reacji.bots.has(poster) && !text.includes('http');
  if (verdict.kind === 'suppressed') return { decision: { action: 'suppressed', match: verdict.match, reaction: config.seenReaction }, message };
  if (config.reverse) {
    if (verdict.kind === 'incident' && verdict.match.rule.hotline) return { decision: incidentDecision(config, verdict.match), message };
    if (verdict.kind === 'incident') return { decision: { action: 'seen', match: verdict.match, reaction: config.seenReaction }, message };
    if (reacjiApplies) return { decision: { action: 'reacji', reaction: config.reacji!.reaction }, message };
    return { decision: { action: 'reverse repost', channel: config.reverseDefault!.channel, header: config.reverseDefault!.header }, message };
  }
  if (verdict.kind === 'none') return { decision: { action: 'seen', reaction: config.seenReaction }, message };
  if (reacjiApplies) return { decision: { action: 'reacji', match: verdict.match, reaction: config.reacji!.reaction }, message };
  return { decision: incidentDecision(config, verdict.match), message };
}

function incidentDecision(config: CompiledConfig, match: RuleMatch): Decision {
  return { action: 'incident', match, channel: config.incidents.get(match.rule.incident)!.channel, hotline: match.rule.hotline };
}

/** Slack `ts` (`"1763712000.000100"`) to epoch milliseconds. */
export function tsToMs(ts: string): number {
  const ms = Number.parseFloat(ts) * 1000;
  return Number.isFinite(ms) ? ms : Date.now();
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Small shared helpers (parsing durations, describing values for error messages)
// ═══════════════════════════════════════════════════════════════════════════════════════════════

export const SECOND = 1000;
export const HOUR = 3600 * SECOND;
export const DAY = 24 * HOUR;
const UNIT_MS: Record<string, number> = { ms: 1, s: SECOND, m: 60 * SECOND, h: HOUR, d: DAY };

export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  const parsed = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value) : null;
  return parsed ? Number(parsed[1]) * UNIT_MS[parsed[2]] : undefined;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value instanceof RegExp) return String(value);
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'function') return 'a function';
  const json = JSON.stringify(value);
  return json && json.length > 60 ? `${json.slice(0, 57)}…` : String(json);
}

/** The cron package, loaded on first use: most setups have no cron schedule, and it brings luxon along (~3 MB). */
export function cron(): typeof CronModule {
  return createRequire(import.meta.url)('cron') as typeof CronModule;
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

function isReactionName(value: unknown): value is string {
  return typeof value === 'string' && /^[a-z0-9_+'\-:]+$/i.test(value) && value.replace(/:/g, '') !== '';
}

function isTimeZone(zone: unknown): boolean {
  if (typeof zone !== 'string') return false;
  try { new Intl.DateTimeFormat('en-US', { timeZone: zone }); return true; } catch { return false; }
}

function cronProblem(expression: unknown): string | undefined {
  if (typeof expression !== 'string') return 'not a string';
  const result = cron().validateCronExpression(expression);
  return result.valid ? undefined : (result.error?.message ?? 'invalid');
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// CLI / main
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** Parsed command line. Modern `--kebab-case` flags; the legacy Go spellings (`-onlyReport`, `-x=false`) are aliases. */
export interface CliOptions {
  config?: string;
  test?: string;
  reverse: boolean;
  verbose: boolean;
  debug: boolean;
  /** Log file, or undefined for none. */
  log?: string;
  loopHours?: number;
  schedule?: string;
  onlyReport: boolean;
  auto: boolean;
  reacji: boolean;
  reminderSeconds?: number;
  clearReminder: boolean;
  noIncident: boolean;
  noReminder: boolean;
  idLookup: boolean;
  printConfig: boolean;
  replay?: string;
  help: boolean;
  version: boolean;
}

type FlagKind = 'string' | 'number' | 'boolean' | 'negated' | 'optional-string';
interface FlagSpec { name: string; legacy?: string; kind: FlagKind; key: keyof CliOptions; arg?: string; help: string }

const FLAGS: FlagSpec[] = [
  { name: 'config', kind: 'string', key: 'config', arg: 'PATH', help: 'config file: ims.config.ts|js|mjs, .imsrc*, or a legacy IMS.ini (default: searched in the current folder)' },
  { name: 'test', kind: 'string', key: 'test', arg: 'TEXT', help: 'check one message against the rules, print what IMS would do, exit (no Slack tokens needed)' },
  { name: 'replay', kind: 'string', key: 'replay', arg: 'FILE', help: 'run the rules over recorded messages (JSON lines, or a Slack export folder) and print what would happen' },
  { name: 'print-config', kind: 'boolean', key: 'printConfig', help: 'print the effective config as a ready-to-save ims.config.ts (the IMS.ini migration path), exit' },
  { name: 'reverse', kind: 'boolean', key: 'reverse', help: 'reverse mode: repost messages that match NO rule to the DEFAULT channel' },
  { name: 'reacji', kind: 'boolean', key: 'reacji', help: 'Reacji Channeler mode: react with [Reacji] instead of reposting posts of [ReacjiID] bots' },
  { name: 'only-report', legacy: 'onlyReport', kind: 'boolean', key: 'onlyReport', help: 'post one report and exit (0, or 1 if posting failed): for cron/systemd timers' },
  { name: 'schedule', kind: 'string', key: 'schedule', arg: 'CRON', help: "report schedule, e.g. '0 9 * * 1-5' (in the config's timezone)" },
  { name: 'loop', kind: 'number', key: 'loopHours', arg: 'HOURS', help: 'legacy schedule: a report every HOURS hours, the first at start-up (default 24)' },
  { name: 'verbose', kind: 'boolean', key: 'verbose', help: 'reports also list resolved incidents and who resolved them' },
  { name: 'no-incident', legacy: 'noincident', kind: 'boolean', key: 'noIncident', help: 'post no scheduled reports' },
  { name: 'reminder', kind: 'number', key: 'reminderSeconds', arg: 'SECONDS', help: 'how often reminder hours are checked (default 30)' },
  { name: 'no-reminder', legacy: 'noreminder', kind: 'boolean', key: 'noReminder', help: 'no reminders' },
  { name: 'clear-reminder', legacy: 'clearReminder', kind: 'boolean', key: 'clearReminder', help: "delete IMS's own messages in reminder channels, exit" },
  { name: 'no-auto', legacy: 'auto', kind: 'negated', key: 'auto', help: 'do not reload the config when it changes' },
  { name: 'no-id-lookup', legacy: 'idlookup', kind: 'negated', key: 'idLookup', help: 'do not resolve channel and user names to IDs' },
  { name: 'debug', kind: 'boolean', key: 'debug', help: 'debug log lines' },
  { name: 'log', kind: 'optional-string', key: 'log', arg: '[FILE]', help: 'also append log lines to FILE (default inco_YYYY-MM-DD_HH.log, as IMS did)' },
  { name: 'help', kind: 'boolean', key: 'help', help: 'this help' },
  { name: 'version', kind: 'boolean', key: 'version', help: 'print the version' },
];

/** A command line IMS cannot run; exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseArgs(argv: string[]): CliOptions {
  const options: CliOptions = {
    reverse: false, verbose: false, debug: false, onlyReport: false, auto: true, reacji: false, clearReminder: false,
    noIncident: false, noReminder: false, idLookup: true, printConfig: false, help: false, version: false,
  };
  const set = options as unknown as Record<string, unknown>;
  const byName = new Map<string, { spec: FlagSpec; negate: boolean }>();
  for (const spec of FLAGS) {
    byName.set(spec.name, { spec, negate: spec.kind === 'negated' });
    if (spec.legacy) byName.set(spec.legacy, { spec, negate: false });
    if (spec.kind === 'negated') byName.set(spec.name.replace(/^no-/, ''), { spec, negate: false });
  }
  byName.set('h', byName.get('help')!);
  byName.set('v', byName.get('version')!);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const flag = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/s.exec(arg);
    if (!flag) throw new UsageError(`unexpected argument '${arg}'; flags start with '--' (values with spaces need quotes, e.g. --test "disk full")`);
    const [, name, inline] = flag;
    const found = byName.get(name);
    if (!found) throw new UsageError(`unknown option '${arg}'${didYouMean(name, [...byName.keys()])}; run 'npx tsx ims.ts --help' for the list`);
    const { spec, negate } = found;
    const takeValue = () => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined) throw new UsageError(`option '--${spec.name}' needs a value (${spec.arg})`);
      i++;
      return next;
    };
    if (spec.kind === 'boolean' || spec.kind === 'negated') {
      const value = inline === undefined ? true : parseBool(inline, arg);
      set[spec.key] = negate ? !value : value;
    } else if (spec.kind === 'optional-string') {
      const next = argv[i + 1];
      let value = inline ?? (next !== undefined && !next.startsWith('-') ? (i++, next) : 'true');
      if (/^(false|0)$/i.test(value)) { set[spec.key] = undefined; continue; }
      if (/^(true|1)$/i.test(value)) value = '';
      set[spec.key] = value;
    } else if (spec.kind === 'number') {
      const raw = takeValue();
      const value = Number(raw);
      if (!Number.isFinite(value) || value <= 0) throw new UsageError(`option '--${spec.name}' expects a positive number (${spec.arg}), found '${raw}'`);
      set[spec.key] = value;
    } else {
      const value = takeValue();
      if (value === '' && spec.name !== 'test') throw new UsageError(`option '--${spec.name}' needs a value (${spec.arg}), found an empty one`);
      set[spec.key] = value;
    }
  }
  if (options.schedule !== undefined && cronProblem(options.schedule)) {
    throw new UsageError(`option '--schedule' expects a cron expression such as '0 9 * * *', found '${options.schedule}': ${cronProblem(options.schedule)}`);
  }
  if (options.schedule !== undefined && options.loopHours !== undefined) throw new UsageError(`use either --schedule or --loop, not both`);
  if (options.test !== undefined && options.replay !== undefined) throw new UsageError(`use either --test or --replay, not both`);
  return options;
}

function parseBool(value: string, arg: string): boolean {
  if (/^(true|1|t|yes)$/i.test(value)) return true;
  if (/^(false|0|f|no)$/i.test(value)) return false;
  throw new UsageError(`option '${arg}' expects true or false`);
}

export function helpText(): string {
  const rows = FLAGS.map((f) => [`--${f.name}${f.arg ? ` ${f.arg}` : ''}`, f.help + (f.legacy ? ` (legacy -${f.legacy}${f.kind === 'negated' ? '=false' : ''})` : '')]);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return [
    `IMS ${VERSION}: incident management for Slack`,
    '',
    'Usage: npx tsx ims.ts [options]',
    '',
    'Runs the bot (Socket Mode) with SLACK_APP_TOKEN (xapp-…) and SLACK_BOT_TOKEN (xoxb-…) from the environment;',
    'SLACK_API_URL overrides the API base. --test, --replay and --print-config need no tokens.',
    '',
    'Options:',
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`),
    '',
    "Legacy Go spellings work too: -config=IMS.ini, -onlyReport, -reverse=true, -auto=false, -idlookup=false.",
  ].join('\n');
}

/** `--test`: what IMS would do with this text, in words. */
export function describeTest(config: CompiledConfig, text: string, epochMs = Date.now()): string {
  const event: SlackMessageEvent = { type: 'message', channel: 'TEST', ts: (epochMs / 1000).toFixed(6), text: escapeSlack(text) };
  const verdict = matchRules(config.rules, text, epochMs, { timezone: config.timezone, incidents: config.incidents });
  const reverse = config.reverseDefault
    ? decide({ ...config, reverse: true }, event, { testing: true }).decision
    : undefined;
  const lines: string[] = [];
  if (text.trim() === '') return ['this message exclude rules..', '  normal:   ignored (empty text)', '  reverse:  ignored (empty text)'].join('\n');
  if (verdict.kind === 'incident') {
    const rule = verdict.match.rule;
    const target = config.incidents.get(rule.incident)!;
    lines.push(`this message include rule (${rule.number})!`);
    lines.push(`  rule:     ${rule.number}: ${describe(rule.source.match)}${rule.when ? ` during ${describe(rule.source.when)}` : ''}`);
    lines.push(`  label:    ${rule.head}`);
    lines.push(`  channel:  ${rule.incident} → ${target.channel}`);
    lines.push(`  hotline:  ${rule.hotline ? `${rule.hotline}: ${config.hotlines.get(rule.hotline)!.join(', ')}` : 'none'}`);
    if (Object.keys(verdict.match.groups).length) lines.push(`  captured: ${Object.entries(verdict.match.groups).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  } else {
    lines.push('this message exclude rules..');
    if (verdict.kind === 'suppressed') lines.push(`  suppressed by rule (${verdict.match.rule.number}): ${describe(verdict.match.rule.source.match)} during ${describe(verdict.match.rule.source.when)}`);
    lines.push(`  normal:   would add :${config.seenReaction}: to the message (seen, not an incident)`);
  }
  lines.push(`  reverse:  ${reverse ? describeDecision(reverse) : 'needs a DEFAULT line in [Incidents] (reverseDefault)'}`);
  return lines.join('\n');
}

function describeDecision(decision: Decision): string {
  switch (decision.action) {
    case 'incident': return `incident: repost as ${decision.match.rule.head} to ${decision.channel}${decision.hotline ? `, paging ${decision.hotline}` : ''} (rule ${decision.match.rule.number})`;
    case 'suppressed': return `suppressed by rule ${decision.match.rule.number}: add :${decision.reaction}:`;
    case 'seen': return `seen: add :${decision.reaction}:${decision.match ? ` (rule ${decision.match.rule.number})` : ''}`;
    case 'reverse repost': return `reverse repost to ${decision.channel} as ${decision.header}`;
    case 'reacji': return `reacji: add :${decision.reaction}: for the Reacji Channeler`;
    case 'ignore': return `ignored (${decision.reason})`;
  }
}

/** Read recorded message events: JSON lines, or a Slack export folder (channel folders of daily JSON files). */
export function* readRecording(file: string): Generator<SlackMessageEvent> {
  if (statSync(file).isDirectory()) {
    const ids = exportChannelIds(file);
    const folders = readdirSync(file).sort().filter((folder) => statSync(path.join(file, folder)).isDirectory());
    if (!folders.length) throw new Error(`'${file}' has no channel folders: give a Slack export folder (channels.json and one folder per channel) or a JSON-lines file`);
    for (const folder of folders) {
      const dir = path.join(file, folder);
      for (const day of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
        const messages = JSON.parse(readFileSync(path.join(dir, day), 'utf8')) as SlackMessageEvent[];
        if (!Array.isArray(messages)) throw new Error(`${path.join(dir, day)}: expected a list of messages, as in a Slack export`);
        for (const m of messages) yield { ...m, type: 'message', channel: m.channel ?? ids.get(folder) ?? folder };
      }
    }
    return;
  }
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let value: Record<string, unknown>;
    try { value = JSON.parse(line); } catch (error) { throw new Error(`${file}:${i + 1}: not valid JSON (${(error as Error).message})`); }
    const event = (value.event ?? (value.payload as Record<string, unknown> | undefined)?.event ?? value) as SlackMessageEvent;
    if (event.type === 'message' || event.type === undefined) yield { ...event, type: 'message' };
  }
}

/** Channel name → ID from a Slack export's channels.json and groups.json (private channels). */
function exportChannelIds(folder: string): Map<string, string> {
  const ids = new Map<string, string>();
  for (const list of ['channels.json', 'groups.json']) {
    const listFile = path.join(folder, list);
    if (existsSync(listFile)) for (const c of JSON.parse(readFileSync(listFile, 'utf8')) as { id: string; name: string }[]) ids.set(c.name, c.id);
  }
  return ids;
}

/** `--replay`: run the rules over a recording, print each decision and a summary per rule. */
export function replay(config: CompiledConfig, file: string, out: (line: string) => void, progress: (line: string) => void = () => {}): { counts: Record<string, number> } {
  if (statSync(file).isDirectory()) {
    // An export names its channels: channels the config names (incident, report, DEFAULT) are IMS's own there too.
    const ids = exportChannelIds(file);
    config = { ...config, ownChannels: new Set([...config.ownChannels].flatMap((c) => [c, ids.get(c.replace(/^#/, '')) ?? c])) };
  }
  const counts: Record<string, number> = {};
  const perRule = new Map<number, { incident: number; suppressed: number; seen: number }>();
  let total = 0;
  for (const event of readRecording(file)) {
    total++;
    if (total % 5000 === 0) progress(`replay: ${total} messages…`);
    const { decision, message } = decide(config, event);
    const key = decision.action === 'ignore' ? `ignored ${decision.reason}` : decision.action;
    counts[key] = (counts[key] ?? 0) + 1;
    if ('match' in decision && decision.match) {
      const row = perRule.get(decision.match.rule.number) ?? { incident: 0, suppressed: 0, seen: 0 };
      if (decision.action === 'incident') row.incident++;
      else if (decision.action === 'suppressed') row.suppressed++;
      else row.seen++;
      perRule.set(decision.match.rule.number, row);
    }
    const when = formatDate(tsToMs(event.ts), config.timezone);
    const who = event.bot_id || event.user || '-';
    const text = (message?.text ?? event.text ?? '').replace(/\s+/g, ' ').slice(0, 80);
    out(`${when}  ${event.channel}  ${who.padEnd(10)} ${key.padEnd(24)} ${decision.action === 'ignore' ? '' : describeDecision(decision) + '  '}"${text}"`);
  }
  if (total >= 5000) progress(`replay: ${total} messages, done`);
  out('');
  out(`Summary: ${total} messages`);
  out(`  ${'rule'.padEnd(6)}${'head'.padEnd(20)}${'incident'.padStart(9)}${'suppressed'.padStart(11)}${'seen'.padStart(6)}  match`);
  for (const rule of config.rules) {
    const row = perRule.get(rule.number) ?? { incident: 0, suppressed: 0, seen: 0 };
    out(`  ${String(rule.number).padEnd(6)}${rule.head.slice(0, 19).padEnd(20)}${String(row.incident).padStart(9)}${String(row.suppressed).padStart(11)}${String(row.seen).padStart(6)}  ${describe(rule.source.match)}`);
  }
  for (const [key, count] of Object.entries(counts).sort()) out(`  ${key}: ${count}`);
  return { counts };
}

const SECRET_KEY = /token|secret|password|passwd|api[-_]?key|authorization/i;

/** `--print-config`: the effective config as a ready-to-save `ims.config.ts`, secrets left out. */
export function printConfig(config: CompiledConfig, flags: Partial<CliOptions> = {}): string {
  const { plugins, ...given } = config.config;
  // The command line's settings belong to the effective config too (a legacy `-loop 12` becomes everyHours).
  const report = {
    ...given.report,
    ...(flags.schedule !== undefined ? { schedule: flags.schedule, everyHours: undefined } : {}),
    ...(flags.loopHours !== undefined ? { everyHours: flags.loopHours, schedule: undefined } : {}),
    ...(flags.verbose ? { verbose: true } : {}),
  };
  const rest = { ...given, report: Object.values(report).some((v) => v !== undefined) ? report : undefined,
    reminderInterval: flags.reminderSeconds !== undefined ? (`${flags.reminderSeconds}s` as Duration) : given.reminderInterval };
  // Modern spellings: `suppress: true` rather than a leading `!`, and no window that is always true.
  const rules = rest.rules.map((rule) => {
    const suppress = rule.suppress || (typeof rule.when === 'string' && rule.when.startsWith('!'));
    const when = typeof rule.when === 'string' ? rule.when.replace(/^!/, '') : rule.when;
    return { match: rule.match, when: when === '.*' ? undefined : when, suppress: suppress || undefined, head: rule.head, incident: rule.incident, hotline: rule.hotline };
  });
  const plain = { ...rest, rules, reverse: config.reverse || undefined, reacjiMode: config.reacjiMode || undefined };
  const lines = [
    `// Generated by 'npx tsx ims.ts --print-config' from ${config.source}. Save it as ims.config.ts beside ims.ts.`,
    `import { defineConfig } from './ims.ts';`,
    '',
    `export default defineConfig(${toSource(plain, '')});`,
  ];
  if (plugins?.length) lines.push('', `// Plugins in use (add them back with their options; secrets were left out): ${plugins.map((p) => p.name).join(', ')}`);
  return lines.join('\n') + '\n';
}

function toSource(value: unknown, indent: string): string {
  const inner = indent + '  ';
  if (value instanceof RegExp) return String(value);
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v !== 'object' || v instanceof RegExp)) return `[${value.map((v) => toSource(v, inner)).join(', ')}]`;
    return `[\n${value.map((v) => inner + toSource(v, inner)).join(',\n')},\n${indent}]`;
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).filter(([key, v]) => v !== undefined && !SECRET_KEY.test(key));
    if (!entries.length) return '{}';
    const key = (k: string) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k));
    const oneLine = `{ ${entries.map(([k, v]) => `${key(k)}: ${toSource(v, inner)}`).join(', ')} }`;
    if (oneLine.length + indent.length <= 110 && !oneLine.includes('\n')) return oneLine;
    return `{\n${entries.map(([k, v]) => `${inner}${key(k)}: ${toSource(v, inner)}`).join(',\n')},\n${indent}}`;
  }
  return typeof value === 'string' ? `'${JSON.stringify(value).slice(1, -1).replace(/\\"/g, '"').replace(/'/g, "\\'")}'` : String(value);
}

/** Entry point: returns the process exit code. */
export async function main(argv: string[], io: { out: (s: string) => void; err: (s: string) => void } = {
  out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n'),
}): Promise<number> {
  let options: CliOptions;
  try {
    options = parseArgs(argv);
  } catch (error) {
    if (error instanceof UsageError) { io.err(`ims: ${error.message}`); return 2; }
    throw error;
  }
  if (options.help) { io.out(helpText()); return 0; }
  if (options.version) { io.out(`ims ${VERSION}`); return 0; }
  let config: CompiledConfig;
  try {
    config = await loadConfig({ path: options.config, reverse: options.reverse, reacji: options.reacji });
  } catch (error) {
    if (error instanceof ConfigError) { io.err(error.message); return 1; }
    throw error;
  }
  if (options.test !== undefined) {
    const now = process.env.IMS_NOW ? Date.parse(process.env.IMS_NOW) : Date.now();
    if (Number.isNaN(now)) { io.err(`ims: IMS_NOW must be an ISO instant such as 2026-11-21T10:30:00Z, found '${process.env.IMS_NOW}'`); return 2; }
    io.out(describeTest(config, options.test, now));
    return 0;
  }
  if (options.printConfig) { io.out(printConfig(config, options)); return 0; }
  if (options.replay !== undefined) {
    if (!existsSync(options.replay)) { io.err(`ims: --replay: '${options.replay}' does not exist; give a JSON-lines file or a Slack export folder`); return 2; }
    try {
      replay(config, options.replay, io.out, io.err);
    } catch (error) {
      io.err(`ims: --replay: ${(error as Error).message}`);
      return 1;
    }
    return 0;
  }
  return runSlack(config, options, io);
}

// Start only when run directly, and once per process: a config outside an ESM package is loaded as CommonJS,
// and its `import … from './ims.ts'` then evaluates a second copy of this file.
const STARTED = Symbol.for('ims.started');
const processState = globalThis as { [STARTED]?: boolean };
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url) && !processState[STARTED]) {
  processState[STARTED] = true;
  // `ims --replay big.jsonl | head` closes the pipe early: that is the reader's choice, not an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => { if (error.code === 'EPIPE') process.exit(0); throw error; });
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (error) => {
    process.stderr.write(`ims: ${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  });
}

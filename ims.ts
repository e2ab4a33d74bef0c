#!/usr/bin/env -S npx tsx
/**
 * IMS: incident management for Slack.
 *
 * Watches alert channels through Socket Mode, matches each message against ordered regex rules,
 * reposts incidents with a label (paging the rule's hotline), marks the rest as seen, and reports
 * every incident nobody has marked resolved. Run it with `npx tsx ims.ts`; `--help` lists the flags.
 *
 * Read top to bottom: public types → define helpers → config loading → rule engine → Slack wiring →
 * state → report → CLI/main. The durable state and the Slack runtime live in sibling modules named
 * after their concern (`ims-state.ts`, `ims-runtime.ts`) so this file stays one sitting long.
 */
import { readFileSync, readdirSync, statSync, existsSync, appendFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { WebClient } from '@slack/web-api';
import { SocketModeClient } from '@slack/socket-mode';
import { CronJob, validateCronExpression } from 'cron';
import { State, tsAfter, type IncidentEvent, type OutboxItem } from './ims-state.ts';

export { State, tsAfter, type IncidentEvent, type OutboxItem };

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
   * delivered; throw to retry later (exponential backoff with jitter, across restarts); throw an error with
   * `permanent: true` to give it up (logged).
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

type Exact<T, Shape> = T & Record<Exclude<keyof T, keyof Shape>, never>;

/** Identity: types an `ims.config.ts` so a misspelt key fails type-checking. */
export function defineConfig<const C extends Config>(config: Exact<C, Config>): C {
  return config;
}

/** Identity: types a plugin so a misspelt hook name fails type-checking. */
export function definePlugin<const P extends Plugin>(plugin: Exact<P, Plugin>): P {
  return plugin;
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

/** Where each value of a config read from IMS.ini came from, so validation can say `IMS.ini:12:`. */
const SOURCE_LINES = Symbol.for('ims.sourceLines');
interface SourceLines { file: string; lines: Record<string, number> }
type Located = { [SOURCE_LINES]?: SourceLines };

const INI_SECTIONS = ['Rules', 'Incidents', 'Label', 'Report', 'PostID', 'Hotline', 'Reacji', 'Reminder', 'ReacjiID', 'MgmtReport'] as const;
type IniSection = (typeof INI_SECTIONS)[number];
const NO_HOTLINE = new Set(['', 'no', 'none', '-', 'off', 'false']);

/**
 * Read a legacy `IMS.ini` into a `Config`. Every problem is reported as `IMS.ini:LINE: …` and the file is
 * refused (throws `ConfigError`). Use it from `ims.config.ts` to keep the file:
 * `defineConfig({ ...loadIni('./IMS.ini'), plugins: [pin()] })`.
 */
export function loadIni(file: string, options: { reverse?: boolean } = {}): Config {
  let body: string;
  try {
    body = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`cannot read the file (${(error as NodeJS.ErrnoException).code ?? error}); check the path or pass --config PATH`], file);
  }
  const { config, problems } = parseIni(body, file);
  const all = [...problems, ...validateConfig(config, { reverse: options.reverse }).problems];
  if (all.length) throw new ConfigError(all, file);
  return config;
}

/** Parse IMS.ini text. Exported for tests; `loadIni` is the public entry. */
export function parseIni(body: string, file = 'IMS.ini'): { config: Config; problems: string[] } {
  const problems: string[] = [];
  const lines: Record<string, number> = {};
  const at = (line: number, message: string) => problems.push(`${file}:${line}: ${message}`);
  const bodies = new Map<IniSection, { line: number; text: string }[]>();
  const headerLine = new Map<IniSection, number>();
  let section: IniSection | undefined;

  body.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/).forEach((rawLine, index) => {
    const line = index + 1;
    const text = rawLine.trimStart().replace(/[ \t]+$/, '');
    if (text === '' || text.startsWith('#') || text.startsWith(';')) return;
    const header = /^\[([A-Za-z]+)\]$/.exec(text);
    if (header && (INI_SECTIONS as readonly string[]).includes(header[1])) {
      section = header[1] as IniSection;
      if (!headerLine.has(section)) headerLine.set(section, line);
      return;
    }
    if (!section) {
      at(line, `'${text}' is outside any section; expected a section header first, one of ${INI_SECTIONS.map((s) => `[${s}]`).join(', ')}`);
      return;
    }
    if (!bodies.has(section)) bodies.set(section, []);
    bodies.get(section)!.push({ line, text });
  });
  const sectionLines = (name: IniSection) => bodies.get(name) ?? [];
  const fields = (text: string) => text.split('\t');
  const single = (name: IniSection) => sectionLines(name).at(-1);
  const list = (name: IniSection) => sectionLines(name).flatMap(({ text }) => fields(text).filter(Boolean));

  const config: Config & Located = { rules: [], incidents: {} };

  for (const { line, text } of sectionLines('Hotline')) {
    const [label, ...members] = fields(text).filter(Boolean);
    if (!members.length) { at(line, `[Hotline] expected 'LABEL<TAB>member<TAB>member…', found only '${text}'`); continue; }
    if (config.hotlines?.[label]) at(line, `[Hotline] label '${label}' is defined twice (first on line ${lines[`hotlines.${label}`]})`);
    (config.hotlines ??= {})[label] = members;
    lines[`hotlines.${label}`] = line;
  }

  for (const { line, text } of sectionLines('Incidents')) {
    const parts = fields(text);
    if (parts.length !== 3 || parts.some((p) => p === '')) {
      at(line, `[Incidents] expected 3 TAB-separated fields (LABEL, CHANNEL, LIMIT — or DEFAULT, CHANNEL, HEADER), found ${parts.filter(Boolean).length}: '${text}'${text.includes('\t') ? '' : ' (are the fields separated by spaces instead of TABs?)'}`);
      continue;
    }
    const [label, channel, third] = parts;
    if (label === 'DEFAULT') {
      if (config.reverseDefault) at(line, `[Incidents] DEFAULT is defined twice (first on line ${lines.reverseDefault})`);
      config.reverseDefault = { channel, header: third };
      lines.reverseDefault = line;
      continue;
    }
    if (!/^\d+$/.test(third) || Number(third) < 1) { at(line, `[Incidents] LIMIT must be a positive whole number, found '${third}'`); continue; }
    if (config.incidents[label]) at(line, `[Incidents] label '${label}' is defined twice (first on line ${lines[`incidents.${label}`]})`);
    config.incidents[label] = { channel, limit: Number(third) };
    lines[`incidents.${label}`] = line;
  }

  for (const { line, text } of sectionLines('Rules')) {
    const parts = fields(text);
    if (parts.length !== 5) {
      at(line, `[Rules] expected 5 TAB-separated fields (MESSAGE_REGEX, DATE_REGEX, HEAD, INCIDENT_LABEL, HOTLINE), found ${parts.length}: '${text}'${text.includes('\t') ? '' : ' (are the fields separated by spaces instead of TABs?)'}`);
      continue;
    }
    const [match, when, head, incident, hotline] = parts;
    const index = config.rules.length;
    const rule: Rule = { match, when, head, incident };
    if (hotline && !NO_HOTLINE.has(hotline.toLowerCase()) && config.hotlines?.[hotline]) rule.hotline = hotline;
    config.rules.push(rule);
    lines[`rules[${index}]`] = line;
  }

  const label = single('Label');
  if (label) { config.resolvedReactions = [label.text.replace(/^:|:$/g, '')]; lines.resolvedReactions = label.line; }
  const report = single('Report');
  if (report) { config.report = { channel: report.text }; lines.report = report.line; }
  const posters = list('PostID');
  if (posters.length) { config.posters = posters; lines.posters = sectionLines('PostID')[0].line; }
  const reacji = single('Reacji');
  const reacjiBots = list('ReacjiID');
  if (reacji || reacjiBots.length) {
    config.reacji = { reaction: reacji?.text.replace(/^:|:$/g, '') ?? '', bots: reacjiBots };
    lines.reacji = (reacji ?? sectionLines('ReacjiID')[0]).line;
  }
  const mgmt = list('MgmtReport');
  if (mgmt.length) { (config.report ??= {}).onlyPosters = mgmt; lines['report.onlyPosters'] = sectionLines('MgmtReport')[0].line; }
  for (const { line, text } of sectionLines('Reminder')) {
    const [channel, ...hours] = fields(text).filter(Boolean);
    if (!hours.length) { at(line, `[Reminder] expected 'CHANNEL<TAB>HOUR_REGEX<TAB>…', found only '${text}'`); continue; }
    lines[`reminders[${(config.reminders ??= []).length}]`] = line;
    config.reminders.push({ channel, hours });
  }
  lines.incidents = headerLine.get('Incidents') ?? headerLine.get('Rules') ?? 1;
  lines[''] = 1;
  config[SOURCE_LINES] = { file, lines };
  return { config, problems };
}

/** `place: ` for a config path: `IMS.ini:12: ` when the config came from IMS.ini, else `file: path: `. */
function placeOf(config: Config, source: string, at: string): string {
  const located = (config as Located)[SOURCE_LINES];
  if (!located) return `${source}: ${at}: `;
  for (let key = at; ; key = key.replace(/(\.[^.[\]]*|\[[^\]]*\])$/, '')) {
    if (located.lines[key] !== undefined) return `${located.file}:${located.lines[key]}: `;
    if (key === '') return `${located.file}: `;
  }
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
export function validateConfig(config: Config, options: { source?: string; reverse?: boolean; reacji?: boolean } = {}):
  { problems: string[]; warnings: string[]; compiled?: CompiledConfig } {
  const source = options.source ?? (config as Located)[SOURCE_LINES]?.file ?? 'config';
  const problems: string[] = [];
  const warnings: string[] = [];
  const fail = (at: string, message: string) => problems.push(placeOf(config, source, at) + message);
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const unknownKeys = (value: unknown, kind: string, at: string) => {
    if (!isObject(value)) return;
    for (const key of Object.keys(value)) {
      if (!KNOWN_KEYS[kind].includes(key)) fail(at ? `${at}.${key}` : key, `unknown key '${key}'${suggest(key, KNOWN_KEYS[kind])}; expected one of ${KNOWN_KEYS[kind].join(', ')}`);
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
      fail(`${at}.incident`, `unknown incident label '${rule.incident}'${suggest(rule.incident, [...incidents.keys()])}; define it in [Incidents] / incidents (known: ${[...incidents.keys()].join(', ') || 'none'})`);
    }
    if (rule.hotline !== undefined && typeof rule.hotline === 'string' && !hotlines.has(rule.hotline)) {
      fail(`${at}.hotline`, `unknown hotline '${rule.hotline}'${suggest(rule.hotline, [...hotlines.keys()])}; define it in [Hotline] / hotlines (known: ${[...hotlines.keys()].join(', ') || 'none'})`);
    }
    if (match) {
      rules.push({
        number: index + 1, test: fastTest(match), match, when: when && fastTest(when), suppress,
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

  const report = config.report ?? {};
  unknownKeys(report, 'report', 'report');
  if (report.channel !== undefined) str(report.channel, 'report.channel', 'a channel ID or name');
  if (report.schedule !== undefined && cronProblem(report.schedule)) fail('report.schedule', `expected a cron expression such as '0 9 * * *', found '${report.schedule}': ${cronProblem(report.schedule)}`);
  if (report.everyHours !== undefined && !(typeof report.everyHours === 'number' && report.everyHours > 0)) fail('report.everyHours', `expected a positive number of hours, found ${describe(report.everyHours)}`);
  const windowMs = duration(report.window, 'report.window', 7 * DAY);

  if (config.timezone !== undefined && !isTimeZone(config.timezone)) fail('timezone', `expected an IANA time zone such as 'Europe/Oslo' or 'UTC', found ${describe(config.timezone)}`);

  const reacji = config.reacji;
  if (reacji !== undefined) {
    unknownKeys(reacji, 'reacji', 'reacji');
    if (!isObject(reacji) || !isReactionName(reacji.reaction)) fail('reacji', `expected { reaction, bots } with a reaction name ([Reacji]), found ${describe(reacji)}`);
  } else if (reacjiMode) fail('reacji', `Reacji mode needs a [Reacji] reaction and [ReacjiID] bots (reacji: { reaction, bots })`);

  const reminders: CompiledConfig['reminders'] = [];
  (config.reminders ?? []).forEach((reminder, index) => {
    const at = `reminders[${index}]`;
    unknownKeys(reminder, 'reminder', at);
    if (!isObject(reminder) || !Array.isArray(reminder.hours) || !reminder.hours.length) { fail(at, `expected { channel, hours: [regex…] }, found ${describe(reminder)}`); return; }
    str(reminder.channel, `${at}.channel`, 'a channel ID or name');
    const hours = reminder.hours.map((hour, i) => regex(hour, `${at}.hours[${i}]`, 'hour regex')).filter((r): r is RegExp => !!r);
    reminders.push({ channel: String(reminder.channel), hours });
  });

  const state = config.state ?? {};
  unknownKeys(state, 'state', 'state');
  const plugins = config.plugins ?? [];
  if (!Array.isArray(plugins)) fail('plugins', `expected a list of plugins (definePlugin({...}) or a factory's result), found ${describe(plugins)}`);
  else plugins.forEach((plugin, index) => {
    const at = `plugins[${index}]`;
    if (!isObject(plugin) || typeof plugin.name !== 'string' || !plugin.name) { fail(at, `expected a plugin object with a name, found ${describe(plugin)}; did you forget to call the factory, e.g. pin() instead of pin?`); return; }
    for (const key of Object.keys(plugin)) {
      if (key === 'name') continue;
      if (!PLUGIN_FUNCTIONS.has(key)) fail(`${at}.${key}`, `plugin '${plugin.name}' has an unknown key '${key}'${suggest(key, HOOK_NAMES)}; hooks are ${HOOK_NAMES.join(', ')}`);
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
  const sourceDir = path.dirname(path.resolve(source));
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
export function compileConfig(config: Config, options: { source?: string; reverse?: boolean; reacji?: boolean } = {}): CompiledConfig {
  const { problems, compiled } = validateConfig(config, options);
  if (!compiled) throw new ConfigError(problems, options.source ?? (config as Located)[SOURCE_LINES]?.file ?? 'config');
  return compiled;
}

const CONFIG_SEARCH_PLACES = ['package.json', '.imsrc', '.imsrc.json', '.imsrc.js', '.imsrc.mjs', '.imsrc.ts',
  'ims.config.ts', 'ims.config.mjs', 'ims.config.js', 'IMS.ini'];

/**
 * Find and read the configuration: an explicit path (`.ini` through the legacy loader), else cosmiconfig's
 * search from `cwd` (`ims.config.ts|js|mjs`, `.imsrc*`, the `"ims"` key of package.json, then `IMS.ini`).
 */
export async function loadConfig(options: { path?: string; cwd?: string; reverse?: boolean; reacji?: boolean } = {}): Promise<CompiledConfig> {
  const cwd = options.cwd ?? process.cwd();
  let file = options.path;
  let config: Config;
  if (file === undefined) {
    const { cosmiconfig } = await import('cosmiconfig');
    const importLoader = async (filepath: string) => {
      const module = await import(pathToFileURL(filepath).href + `?t=${Date.now()}`);
      return module.default ?? module;
    };
    const explorer = cosmiconfig('ims', {
      searchPlaces: CONFIG_SEARCH_PLACES, searchStrategy: 'none', cache: false,
      loaders: { '.ts': importLoader, '.mjs': importLoader, '.js': importLoader, '.ini': (filepath: string) => ({ [INI_MARK]: filepath }) },
    });
    const found = await explorer.search(cwd).catch((error: Error) => { throw new ConfigError([error.message], 'config'); });
    if (!found) {
      throw new ConfigError([`no configuration found in ${cwd}; create ims.config.ts (see README) or pass --config PATH (an IMS.ini works too)`], 'config');
    }
    file = path.relative(cwd, found.filepath) || found.filepath;
    config = found.config as Config;
  } else {
    config = await readConfigFile(path.resolve(cwd, file), file);
  }
  const iniPath = (config as unknown as Record<string, unknown>)[INI_MARK] as string | undefined;
  if (iniPath) config = readIniLocated(iniPath, file);
  return compileConfig(config, { source: file, reverse: options.reverse, reacji: options.reacji });
}
const INI_MARK = 'ims:ini-path';

function readIniLocated(absolute: string, shown: string): Config {
  let body: string;
  try { body = readFileSync(absolute, 'utf8'); } catch (error) {
    throw new ConfigError([`cannot read the file (${(error as NodeJS.ErrnoException).code}); check the path`], shown);
  }
  const { config, problems } = parseIni(body, shown);
  if (problems.length) throw new ConfigError([...problems, ...validateConfig(config).problems], shown);
  return config;
}

async function readConfigFile(absolute: string, shown: string): Promise<Config> {
  if (!existsSync(absolute)) throw new ConfigError([`the config file does not exist; check the path given to --config`], shown);
  if (/\.ini$/i.test(absolute)) return readIniLocated(absolute, shown);
  if (/\.json$/i.test(absolute) || /\/\.imsrc$/.test(absolute)) {
    try { return JSON.parse(readFileSync(absolute, 'utf8')) as Config; } catch (error) { throw new ConfigError([`not valid JSON: ${(error as Error).message}`], shown); }
  }
  try {
    const module = await import(pathToFileURL(absolute).href + `?t=${Date.now()}`);
    return (module.default ?? module) as Config;
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError([`could not be loaded: ${(error as Error).message}`], shown);
  }
}

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Rule engine
// ═══════════════════════════════════════════════════════════════════════════════════════════════

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z', alpha: 'A-Za-z', ascii: '\\x00-\\x7F', blank: '\\t ', cntrl: '\\x00-\\x1F\\x7F', digit: '0-9',
  graph: '!-~', lower: 'a-z', print: ' -~', punct: '!-\\/:-@\\[-`{-~', space: '\\t\\n\\v\\f\\r ', upper: 'A-Z',
  word: '0-9A-Za-z_', xdigit: '0-9A-Fa-f',
};

/**
 * Translate a Go/RE2 regex (as written in IMS.ini) to a JavaScript RegExp: leading `(?i)`, `(?s)`,
 * `(?m)` become flags, `(?P<n>…)` becomes `(?<n>…)`, `\A`/`\z`, `\Q…\E` and `[[:alpha:]]` are rewritten.
 * A RegExp is returned as it is. Throws an Error saying what is wrong.
 */
export function translateRegex(pattern: Pattern): RegExp {
  if (pattern instanceof RegExp) return pattern;
  let source = pattern;
  const flags = new Set<string>();
  for (let lead = /^\(\?([a-zA-Z]+)\)/.exec(source); lead; lead = /^\(\?([a-zA-Z]+)\)/.exec(source)) {
    for (const flag of lead[1]) {
      if (!'ism'.includes(flag)) throw new Error(`'${pattern}' uses the flag (?${flag}), which JavaScript has no equivalent for; only i, s and m are supported`);
      flags.add(flag);
    }
    source = source.slice(lead[0].length);
  }
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const next = source[i + 1];
      if (next === undefined) throw new Error(`'${pattern}' does not compile: it ends with a lone backslash`);
      if (next === 'Q') {
        const end = source.indexOf('\\E', i + 2);
        const literal = source.slice(i + 2, end === -1 ? undefined : end);
        out += literal.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
        i = end === -1 ? source.length : end + 1;
        continue;
      }
      if (!inClass && next === 'A') { out += '(?<![\\s\\S])'; i++; continue; }
      if (!inClass && next === 'z') { out += '(?![\\s\\S])'; i++; continue; }
      if (next === 'p' || next === 'P') flags.add('u');
      if (next === 'C') throw new Error(`'${pattern}' uses \\C (any byte), which JavaScript cannot match`);
      out += c + next;
      i++;
      continue;
    }
    if (inClass) {
      const posix = /^\[:(\^?)([a-z]+):\]/.exec(source.slice(i));
      if (posix) {
        if (!POSIX_CLASSES[posix[2]]) throw new Error(`'${pattern}' uses an unknown class [:${posix[2]}:]`);
        if (posix[1]) throw new Error(`'${pattern}' uses a negated class [:^${posix[2]}:], which JavaScript lacks; write [^…] instead`);
        out += POSIX_CLASSES[posix[2]];
        i += posix[0].length - 1;
        continue;
      }
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (source[i + 1] === '^') { out += '^'; i++; }
      if (source[i + 1] === ']') { out += '\\]'; i++; }
      continue;
    }
    if (c === '(' && source[i + 1] === '?') {
      if (source.startsWith('(?P<', i)) { out += '(?<'; i += 3; continue; }
      if (/^\(\?[a-zA-Z-]+[:)]/.test(source.slice(i))) {
        throw new Error(`'${pattern}' sets flags inside the pattern (${/^\(\?[a-zA-Z-]+[:)]/.exec(source.slice(i))![0]}), which Node 20 cannot do; put them at the very start, e.g. (?i)…`);
      }
    }
    out += c;
  }
  try {
    return new RegExp(out, [...flags].join(''));
  } catch (error) {
    throw new Error(`'${pattern}' does not compile: ${(error as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
}

/** The same yes/no answer with less work: a leading or trailing `.*` never changes whether a search matches. */
function fastTest(regex: RegExp): RegExp {
  let source = regex.source.replace(/^\.\*\??(?![*+?{])/, '');
  const tail = /\.\*\??$/.exec(source);
  if (tail) {
    const before = source.slice(0, tail.index);
    const backslashes = /\\*$/.exec(before)![0].length;
    if (backslashes % 2 === 0) source = before;
  }
  if (source === regex.source) return regex;
  try { return new RegExp(source || '(?:)', regex.flags.replace('g', '')); } catch { return regex; }
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const clockFormatters = new Map<string, Intl.DateTimeFormat>();
const clockCache = new Map<string, { second: number; text: string }>();

/** `YYYY/MM/DD HH:mm:ss Ddd` in `timeZone` (default: the process's): what a rule's `when` is searched in. */
export function ruleClock(epochMs: number, timeZone?: string): string {
  const key = timeZone ?? '';
  const second = Math.floor(epochMs / 1000);
  const cached = clockCache.get(key);
  if (cached?.second === second) return cached.text;
  const p = dateParts(epochMs, timeZone);
  const text = `${p.year}/${p.month}/${p.day} ${p.hour}:${p.minute}:${p.second} ${p.weekday}`;
  clockCache.set(key, { second, text });
  return text;
}

/** Calendar parts of an instant in a zone, two-digit padded. */
export function dateParts(epochMs: number, timeZone?: string) {
  const key = timeZone ?? '';
  let format = clockFormatters.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', weekday: 'short',
    });
    clockFormatters.set(key, format);
  }
  const parts: Record<string, string> = {};
  for (const part of format.formatToParts(new Date(epochMs))) parts[part.type] = part.value;
  return {
    year: parts.year, month: parts.month, day: parts.day, hour: parts.hour, minute: parts.minute, second: parts.second,
    weekday: WEEKDAYS.includes(parts.weekday) ? parts.weekday : parts.weekday.slice(0, 3),
  };
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
  for (const rule of rules) {
    if (!rule.test.test(text)) continue;
    if (rule.when && !rule.when.test(clock ??= ruleClock(epochMs, options.timezone))) continue;
    if (!rule.suppress && options.incidents && !options.incidents.has(rule.incident)) continue;
    const groups = { ...rule.match.exec(text)?.groups };
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

const SECOND = 1000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;
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

function suggest(word: string, candidates: readonly string[]): string {
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
  const result = validateCronExpression(expression);
  return result.valid ? undefined : (result.error?.message ?? 'invalid');
}

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
  const redact = (text: string) => secrets.reduce((t, s) => t.split(s).join(`${s.slice(0, 5)}…`), text).replace(TOKEN_PATTERN, (token) => `${token.slice(0, 5)}…`);
  const emit = (tag: string | undefined) => (level: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < threshold) return;
    const extra = fields ? Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`).join('') : '';
    const line = redact(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${tag ? `[${tag}] ` : ''}${message}${extra}`);
    write(line);
    if (options.file !== undefined) {
      const file = options.file || `inco_${new Date().toISOString().slice(0, 13).replace('T', '_')}.log`;
      try { appendFileSync(file, line + '\n'); } catch { /* the console line was written; a full disk must not stop alerts */ }
    }
  };
  const make = (tag?: string) => {
    const at = emit(tag);
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  };
  return { ...make(options.tag), child: (tag: string) => make(options.tag ? `${options.tag}:${tag}` : tag) };
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
async function slackCall<T>(call: () => Promise<T>, log: Logger, what: string): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const delay = rateLimitDelay(error);
      if (delay === undefined) throw error;
      log.debug(`rate limited on ${what}; retrying in ${delay} ms`);
      await sleep(delay);
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
  constructor(private readonly log: Logger) {}
  run<T>(channel: string, what: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(channel) ?? Promise.resolve();
    const result = previous.then(() => slackCall(task, this.log, `${what} in ${channel}`));
    const tail = result.catch(() => undefined);
    this.tails.set(channel, tail);
    void tail.then(() => { if (this.tails.get(channel) === tail) this.tails.delete(channel); });
    return result;
  }
  async drain(): Promise<void> {
    while (this.tails.size) await Promise.allSettled([...this.tails.values()]);
  }
}

const SECTION_LIMIT = 2900;
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
  messages[0].text = (fallback.length > 3000 ? `${fallback.slice(0, 2990)}…` : fallback) + (mentions ? `\n${input.mentions!.join(' ')}` : '');
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
  private readonly userNames = new Map<string, string>();
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
    const quiet = { getLevel: () => 'error', setLevel() {}, setName() {}, debug() {}, info() {}, warn() {}, error: (...m: unknown[]) => this.log.debug(`slack sdk: ${m.join(' ')}`) };
    this.slack = new WebClient(options.botToken, { slackApiUrl, rejectRateLimitedCalls: true, retryConfig, logger: quiet as never });
    this.pluginSlack = new WebClient(options.botToken, { slackApiUrl, retryConfig, logger: quiet as never });
    this.queues = new ChannelQueues(this.log);
    this.state = new State(config.state.path);
  }

  /** Connect, resolve names, finish interrupted work, catch up, and start schedules and plugins. */
  async start(options: { socket?: boolean } = {}): Promise<void> {
    const auth = await slackCall(() => this.slack.auth.test(), this.log, 'auth.test');
    this.self = { userId: String(auth.user_id ?? ''), botId: String(auth.bot_id ?? ''), teamUrl: String(auth.url ?? 'https://slack.com/') };
    this.config = await this.resolveNames(this.config);
    this.log.info(`connected as ${auth.user ?? this.self.userId}`, { rules: this.config.rules.length, state: this.config.state.path });
    if (options.socket === false) return;
    await this.recoverPending();
    this.socket = new SocketModeClient({
      appToken: this.options.appToken, clientPingTimeout: this.options.clientPingTimeoutMs,
      clientOptions: { slackApiUrl: this.options.apiUrl ?? process.env.SLACK_API_URL ?? 'https://slack.com/api/' },
      logger: { getLevel: () => 'error', setLevel() {}, setName() {}, debug() {}, info() {}, warn() {}, error: () => {} } as never,
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
    await this.hooks('onStart', () => ({}));
  }

  /** Stop taking events, finish in-flight work, run `onStop`, close the DB. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info('stopping: finishing in-flight work');
    this.watcher?.close();
    for (const timer of this.timers) 'stop' in timer ? timer.stop() : clearInterval(timer);
    if (this.socket) {
      const socket = this.socket;
      // socket-mode 3.1 rejects with `undefined` when disconnect() races a reconnect waiting for hello.
      await Promise.race([socket.disconnect().catch(() => undefined), sleep(2000)]);
      socket.removeAllListeners();
    }
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
    await this.queues.drain();
    await this.flushOutbox();
    await this.hooks('onStop', () => ({}));
    this.stopController.abort();
    this.state.close();
    this.log.info('stopped');
  }

  /** Resolves when nothing is in flight: events handled, posts sent, hooks finished. */
  async idle(): Promise<void> {
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
    if (body.event_id && !this.state.rememberEvent(body.event_id, this.now())) {
      this.log.debug('duplicate delivery ignored', { event_id: body.event_id });
      return;
    }
    this.track(this.dispatch(body.event));
  }

  /** Handle one event (from Socket Mode or catch-up). Malformed events are logged and skipped. */
  async dispatch(event: Record<string, unknown>): Promise<void> {
    try {
      if (event.type === 'message' && typeof event.channel === 'string' && typeof event.ts === 'string') {
        await this.processMessage(event as SlackMessageEvent);
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
  async processMessage(event: SlackMessageEvent, recovering = false): Promise<void> {
    const config = this.config;
    const { decision, message } = decide(config, event, { self: this.self });
    if (decision.action === 'ignore') {
      if (decision.reason === 'own channel') this.noteThreadReply(event);
      else if (decision.reason !== 'hidden subtype' && decision.reason !== 'own post') this.state.advanceCursor(event.channel, event.ts);
      this.log.debug(`ignored message (${decision.reason})`, { channel: event.channel, ts: event.ts });
      return;
    }
    const key = `${event.channel}:${event.ts}`;
    if (this.processing.has(key)) return;
    const claim = this.state.claimMessage(event.channel, event.ts, event, this.now());
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
        this.log.info(`${decision.action}: ${decision.action === 'reacji' ? 'reacji' : 'reaction'} :${decision.reaction}:`, { channel: message.channel, ts: message.ts, rule: 'match' in decision ? decision.match?.rule.number : undefined });
        return;
      case 'incident': {
        const rule = decision.match.rule;
        const members = decision.hotline ? config.hotlines.get(decision.hotline) ?? [] : [];
        const incident = await this.openIncident(config, message, { channel: decision.channel, head: rule.head, label: rule.incident, ruleNumber: rule.number, hotline: decision.hotline, mentions: members.map(mentionOf) }, recovering);
        this.log.info(`incident #${incident.id} ${rule.head} → ${decision.channel}${decision.hotline ? ` paging ${decision.hotline}` : ''}`, { rule: rule.number, source: `${message.channel}:${message.ts}` });
        void this.hooks('onMatch', () => ({ message, match: decision.match, incident })).then(() => {
          if (!decision.hotline) return;
          this.state.addIncidentEvent({ incidentId: incident.id, kind: 'hotline', detail: decision.hotline, at: incident.createdAt });
          return this.hooks('onHotline', () => ({ message, match: decision.match, incident, mentions: members.map(mentionOf), post: { channel: incident.incidentChannel, ts: incident.incidentTs } }));
        });
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
    const existing = this.state.incidentBySource(message.channel, message.ts);
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
  private async recoverPending(): Promise<void> {
    const pending = this.state.pendingMessages();
    if (pending.length) this.log.warn(`finishing ${pending.length} message(s) interrupted by the last stop`);
    for (const { event } of pending) await this.processMessage(event as SlackMessageEvent, true).catch((error) => this.log.error(`recovery failed: ${errorText(error)}`));
  }

  /** Read what was missed while disconnected, from each watched channel's history since its cursor. */
  async catchUp(): Promise<void> {
    const firstStart = this.state.getMeta('first_start') === undefined;
    const nowTs = (this.now() / 1000).toFixed(6);
    const cursors = this.state.cursors();
    let channels: string[] = [...cursors.keys()];
    try {
      for await (const c of listAll<{ id: string; is_member?: boolean }>(this.slack, this.log, 'conversations.list', { types: 'public_channel,private_channel', exclude_archived: true, limit: 1000 }, 'channels')) {
        if (c.is_member && !channels.includes(c.id)) channels.push(c.id);
      }
    } catch (error) {
      this.log.warn(`could not list channels for catch-up: ${errorText(error)}`);
    }
    channels = channels.filter((c) => !this.config.ownChannels.has(c));
    if (firstStart) this.state.setMeta('first_start', nowTs);
    const oldestAllowed = (this.now() - this.config.state.catchUpWindowMs) / 1000;
    let caught = 0;
    for (const channel of channels) {
      const cursor = cursors.get(channel);
      if (!cursor) { this.state.advanceCursor(channel, nowTs); continue; }
      const oldest = Math.max(Number(cursor), oldestAllowed).toFixed(6);
      const missed: SlackMessageEvent[] = [];
      try {
        for await (const m of listAll<SlackMessageEvent>(this.slack, this.log, 'conversations.history', { channel, oldest, limit: 200 }, 'messages')) {
          if (m.ts !== cursor) missed.push({ ...m, type: 'message', channel });
        }
      } catch (error) {
        this.log.warn(`catch-up of ${channel} failed: ${errorText(error)}`);
        continue;
      }
      missed.sort((a, b) => (tsAfter(a.ts, b.ts) ? 1 : -1));
      for (const event of missed) { await this.dispatch(event); caught++; }
    }
    if (caught) this.log.info(`caught up ${caught} message(s) missed while disconnected`);
  }

  // ─── Names → IDs ──────────────────────────────────────────────────────────────────────────────

  /** Resolve channel and user names in the config to IDs (unless `--no-id-lookup`); unknown names stop start-up. */
  async resolveNames(config: CompiledConfig): Promise<CompiledConfig> {
    if (this.options.idLookup === false) return config;
    const needsChannel = (ref: string) => !/^[CGD][A-Z0-9]{6,}$/.test(ref.replace(/^#/, ''));
    const needsUser = (ref: string) => !/^[UWBS][A-Z0-9]{6,}$/.test(ref) && !/^[@!]?(here|channel|everyone)$/i.test(ref);
    const channelRefs = [...config.incidents.values()].map((i) => i.channel).concat(config.report.channel ?? [], config.reverseDefault?.channel ?? [], config.reminders.map((r) => r.channel));
    const userRefs = [...(config.posters ?? []), ...[...config.hotlines.values()].flat(), ...(config.report.onlyPosters ?? [])];
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
  hooks<K extends HookName>(hook: K, extra: () => Omit<Parameters<NonNullable<Plugin[K]>>[0], keyof HookContext>): Promise<void> {
    const config = this.config;
    const run = runHooks(config.plugins, hook, (plugin, signal) => ({ ...this.hookContext(plugin, signal), ...extra() }) as never, { timeoutMs: config.hookTimeoutMs, log: this.log });
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
      store: {
        get: <T>(key: string) => state.storeGet(plugin.name, key) as T | undefined,
        set: (key, value) => state.storeSet(plugin.name, key, value),
        read: <T>(name: string, key: string) => state.storeGet(name, key) as T | undefined,
      },
      permalink: (channel, ts) => this.permalink(channel, ts),
    };
  }

  private startSchedules(): void {
    const { report } = this.config;
    if (this.options.reports !== false && report.channel) {
      const schedule = this.options.schedule ?? (this.options.loopHours === undefined ? report.schedule : undefined);
      if (schedule) {
        this.timers.push(CronJob.from({ cronTime: schedule, timeZone: this.config.timezone, start: true, onTick: () => void this.track(runReport(this)) }));
        this.log.info(`reports scheduled: '${schedule}'${this.config.timezone ? ` (${this.config.timezone})` : ''}`);
      } else {
        const hours = this.options.loopHours ?? report.everyHours ?? 24;
        this.timers.push(setInterval(() => void this.track(runReport(this)), hours * HOUR));
        void this.track(runReport(this));
        this.log.info(`reports every ${hours} h, the first now`);
      }
    } else if (this.options.reports !== false) {
      this.log.warn('no report channel ([Report] / report.channel): scheduled reports are off');
    }
    if (this.options.reminders !== false && this.config.reminders.length) {
      const every = this.options.reminderSeconds !== undefined ? this.options.reminderSeconds * SECOND : this.config.reminderIntervalMs;
      this.timers.push(setInterval(() => void this.track(runReminders(this)), every));
      void this.track(runReminders(this));
    }
    this.timers.push(setInterval(() => void this.track(this.flushOutbox()), this.options.outboxIntervalMs ?? 1000));
    this.timers.push(setInterval(() => this.state.prune(this.now() - this.config.state.catchUpWindowMs - 7 * DAY), 6 * HOUR));
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
      this.config = resolved;
      this.log.info(`config reloaded from ${shown}: ${resolved.rules.length} rules`);
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
        const resolvers = (m.reactions ?? []).filter((r) => config.resolvedReactions.includes(r.name)).flatMap((r) => r.users ?? []).filter((u) => u !== ims.self.userId);
        const resolved = resolvers.length > 0 || !!incident?.resolvedAt;
        if (resolved && incident && !incident.resolvedAt && resolvers.length) {
          // A reaction added while IMS was down: the report reconciles the state.
          if (ims.state.resolveIncident(incident.id, now, resolvers[0])) await ims.hooks('onResolve', () => ({ incident: ims.state.incidentById(incident.id)!, user: resolvers[0], reaction: config.resolvedReactions[0] }));
        }
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
  const cache = (ims as unknown as { userNames: Map<string, string> }).userNames;
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
    return `${mark}${age}  *${escapeSlack(head)}* ${snippet} <${item.permalink}|open>${who}`;
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
      await slackCall(() => ims.slack.chat.postMessage({ channel, text: messages[0].text, blocks: messages[0].blocks.slice(0, 3) as never, unfurl_links: false }), ims.log, 'chat.postMessage');
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

async function runSlack(config: CompiledConfig, options: CliOptions, io: { err: (s: string) => void }): Promise<number> {
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
    await ims.stop().catch((error) => log.error(`stop failed: ${errorText(error)}`));
  }
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
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const flag = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/s.exec(arg);
    if (!flag) throw new UsageError(`unexpected argument '${arg}'; flags start with '--' (values with spaces need quotes, e.g. --test "disk full")`);
    const [, name, inline] = flag;
    const found = byName.get(name);
    if (!found) throw new UsageError(`unknown option '${arg}'${suggest(name, [...byName.keys()])}; run 'npx tsx ims.ts --help' for the list`);
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
      set[spec.key] = takeValue();
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
  const reverse = decide({ ...config, reverse: true, reverseDefault: config.reverseDefault ?? { channel: '(no DEFAULT line)', header: '' } }, event, { testing: true }).decision;
  const lines: string[] = [];
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
  lines.push(`  reverse:  ${describeDecision(reverse)}`);
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
    const channelsFile = path.join(file, 'channels.json');
    const ids = new Map<string, string>();
    if (existsSync(channelsFile)) for (const c of JSON.parse(readFileSync(channelsFile, 'utf8')) as { id: string; name: string }[]) ids.set(c.name, c.id);
    for (const folder of readdirSync(file).sort()) {
      const dir = path.join(file, folder);
      if (!statSync(dir).isDirectory()) continue;
      for (const day of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
        const messages = JSON.parse(readFileSync(path.join(dir, day), 'utf8')) as SlackMessageEvent[];
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

/** `--replay`: run the rules over a recording, print each decision and a summary per rule. */
export function replay(config: CompiledConfig, file: string, out: (line: string) => void, progress: (line: string) => void = () => {}): { counts: Record<string, number> } {
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
export function printConfig(config: CompiledConfig): string {
  const { plugins, ...rest } = config.config;
  const plain = { ...rest, reverse: config.reverse || undefined, reacjiMode: config.reacjiMode || undefined };
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
  return typeof value === 'string' ? `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'` : String(value);
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
    io.out(describeTest(config, options.test, now));
    return 0;
  }
  if (options.printConfig) { io.out(printConfig(config)); return 0; }
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

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (error) => {
    process.stderr.write(`ims: ${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  });
}

#!/usr/bin/env -S npx tsx
/**
 * IMS: incident management for Slack.
 *
 * Watches alert channels through Socket Mode, matches each message against ordered regex rules,
 * reposts incidents with a label (paging the rule's hotline), marks the rest as seen, and reports
 * every incident nobody has marked resolved. Run it with `npx tsx ims.ts`; `--help` lists the flags.
 *
 * Read top to bottom: public types → define helpers → config loading → rule engine → CLI/main. The
 * concerns that outgrew this file live beside it, named after them (the README's Development section maps
 * them): config files, IMS.ini, patterns, Slack text, time and alert lifecycles below it; the Slack runtime
 * (`ims-runtime.ts` and the units it wires), re-exported here for tests and embedding, loads its heavy
 * dependencies (the Slack SDK, Socket Mode, SQLite) only when IMS runs the bot. Imports run one way: siblings
 * import only types from this file.
 */
import { statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WebClient } from '@slack/web-api';
import type { IncidentEvent } from './ims-state.ts';
import { parseIni } from './ims-ini.ts';
import { describeTest, replay } from './ims-dry-run.ts';
import { printConfig } from './ims-print-config.ts';
import { printManifest } from './ims-manifest.ts';
import { parseListen } from './ims-http.ts';
import { compileLifecycle, identify, templateProblem, type Identification, type LifecycleSettings } from './ims-lifecycle.ts';
import type { AlertIdentity } from './ims-recognisers.ts';
import { compileInteractive, type InteractiveSettings } from './ims-silences.ts';
import { CONFIG_DIR, INI_MARK, readConfigFile, readConfigText, searchConfig, shadowedConfigs } from './ims-config-files.ts';
import { ConfigError, SOURCE_LINES, configName, placeOf, type Located } from './ims-config-errors.ts';
import { DAY, parseDuration, ruleClock, tsToMs } from './ims-time.ts';
import { messageText } from './ims-text.ts';
import {
  BACKTRACKING_BUDGET_MS, BacktrackingBudget, BudgetedRegExp, LinearEngineRefusal, Subject, fastTest, literalScanner, namedGroups, requiredLiterals, scanLiterals, searchIn, translateRegex,
  translateToJavaScript, type LiteralScanner, type OverrunLog,
} from './ims-regex.ts';
import { describeValue as describe, didYouMean } from './ims-plugin-kit.ts';
import { UsageError, VERSION, cronProblem, helpText, parseArgs, type CliOptions } from './ims-cli-args.ts';

export { parseIni } from './ims-ini.ts';
export { UsageError, VERSION, helpText, parseArgs, type CliOptions } from './ims-cli-args.ts';
export { readRecording } from './ims-recordings.ts';
export { describeTest, replay } from './ims-dry-run.ts';
export { printConfig } from './ims-print-config.ts';
export { notTextProblem, readConfigText } from './ims-config-files.ts';
export { ConfigError, SOURCE_LINES, configName, inFileOrder, placeOf, printable, type Located, type SourceLines } from './ims-config-errors.ts';
export { DAY, HOUR, SECOND, cron, dateParts, formatDate, parseDuration, ruleClock, tsToMs } from './ims-time.ts';
export { contentLines, decodeEntities, escapeSlack, messageText, type ContentPart } from './ims-text.ts';
export {
  translateRegex, translateToJavaScript, requiredLiterals, BudgetedRegExp, BacktrackingBudget, LinearEngineRefusal, BACKTRACKING_BUDGET_MS, type OverrunLog,
} from './ims-regex.ts';

export { State, tsAfter, type IncidentEvent, type OutboxItem } from './ims-state.ts';
/** The plugin toolkit: deadlines, stamped hook errors, Slack and HTTP failure classification, pagination, option checks. */
export * from './ims-plugin-kit.ts';
// The runtime, re-exported for tests and embedding. Its modules load no heavy dependency on import: the Slack SDK,
// Socket Mode and SQLite are loaded when the first client, connection or state is built (`npx tsx ims.ts --test`
// and every config that imports `defineConfig` load none of them).
export { Ims, slackTokens, type RuntimeOptions } from './ims-runtime.ts';
export { createLogger, type LogLevel, type LogFormat } from './ims-log.ts';
export { runHooks } from './ims-hooks.ts';
export { buildReport, reportMessages, runReport, runReminders, clearReminders } from './ims-report.ts';
export { posterName } from './ims-names.ts';
export { decisionLine } from './ims-intake.ts';
export { formatAge } from './ims-time.ts';
export {
  incidentMessages, mentionOf, splitText, alertPieces, mrkdwnPieces, plainPieces, renderPieces, clipPieces, linkTarget, type TextPiece,
} from './ims-text.ts';


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
  /**
   * Run this rule's `match` and `when` on JavaScript's backtracking RegExp engine instead of RE2, for a
   * pattern RE2 refuses (backreferences such as `(\w+) \1`, lookarounds such as `(?<!test-)db`, a RegExp with
   * the `v` flag). Backtracking can take exponential time on a hostile text, so all opted-in rules together
   * run within a hard limit per message (`backtrackingBudgetMs`, default 5 ms): past it the regex is stopped,
   * the message counts as not matching this rule and the opted-in rules after it (RE2 rules are still tried)
   * and a warning names them. Patterns are then JavaScript syntax (IMS.ini's `(?i)`, `(?P<n>…)`, `\A`,
   * `\z`, `\Q…\E` and POSIX classes are still translated). Default false: linear-time RE2.
   */
  backtracking?: boolean;
  /**
   * The correlation key of the alerts this rule matches, when no built-in recogniser understands them: a template
   * over the rule's named groups, e.g. `'{host}/{service}'` with `(?P<host>\S+)/(?P<service>\S+)`. Messages with
   * the same key are one alert: a repeat updates its incident instead of opening another. Default: the alert's
   * normalised text (numbers, times and links taken out).
   */
  key?: string;
  /**
   * A message this rule matches that also matches `resolves` is the recovery of the alert with its key (`'RECOVERY|\bOK\b'`):
   * it resolves the open incident instead of opening one.
   */
  resolves?: Pattern;
}

/**
 * Alert lifecycles: repeats fold into their incident, recoveries resolve it, flapping is calmed. Windows are
 * measured on the alerts' own times (the message `ts`), so a catch-up, a `--replay` and the live bot agree.
 */
export interface LifecycleConfig {
  /** Default: on in ims.config.ts; off for a config read from IMS.ini (one incident per message, as the legacy tool). */
  enabled?: boolean;
  /** A repeat while the incident is open adds at most one thread note per this interval. Default `'30m'`; `0` for none. */
  repeatNoteEvery?: Duration;
  /** An alert that fires again within this time of its recovery reopens the same incident; later, a new one. Default `'1h'`. */
  reopenWithin?: Duration;
  /** Page the hotline again when an incident reopens. Default false. */
  pageOnReopen?: boolean;
  /**
   * An alert that changes state (fires, recovers) more than `changes` times within `within` is flapping: its post
   * is edited in place, nobody is paged again, until it has been stable for `stableFor`. `false` turns it off.
   * Default `{ changes: 4, within: '1h', stableFor: '30m' }`.
   */
  flapping?: false | { changes?: number; within?: Duration; stableFor?: Duration };
  /** The built-in recognisers in use: all (default), none (`false`), or these by name (`['alertmanager', 'nagios']`). */
  recognisers?: boolean | string[];
}

/**
 * Who may do what from Slack (the buttons on incident posts, `/ims`). `'admins'`: the people `admins` names;
 * `'everyone'`: anyone who can see the post or type the command; `'own'` (resolve): anyone for an incident nobody
 * else has acknowledged, its acknowledger, and admins for every incident. While `admins` is empty, everyone is an admin.
 */
export interface PermissionsConfig {
  /** Default `'everyone'`. */
  acknowledge?: 'everyone' | 'admins';
  /** Resolve and reopen. Default `'own'`. */
  resolve?: 'everyone' | 'own' | 'admins';
  /** Silence, unsilence and end others' silences. Default `'admins'`. */
  silence?: 'everyone' | 'admins';
}

/**
 * A maintenance window: a silence that recurs (`schedule`, a cron expression, opening it for `duration`) or one fixed
 * range (`from`–`to`, local times such as `'2026-12-24 18:00'` or ISO instants), in the config's `timezone`.
 */
export interface MaintenanceWindow {
  /** Shown in reports, `/ims silences` and the App Home. */
  name: string;
  /** What it silences, written as `/ims silence` takes it: `[Warn]`, an incident label, a correlation key or `/regex/`. Default: every alert. */
  match?: string;
  schedule?: string;
  duration?: Duration;
  from?: string;
  to?: string;
  /** Why, shown with it. */
  reason?: string;
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
  /** SQLite file. Default: `ims.db` beside the config file. Not used when `url` (or `DATABASE_URL`) names PostgreSQL. */
  path?: string;
  /**
   * A PostgreSQL database (`postgres://user:password@host:5432/ims`) instead of the SQLite file: required to run two or
   * more instances of IMS together (they share it). Default: the `DATABASE_URL` environment variable, else none (SQLite).
   * Prefer `DATABASE_URL` for a URL with a password, so that it stays out of the config file.
   */
  url?: string;
  /** After downtime, how far back missed alerts are caught up. Default `'24h'`. */
  catchUpWindow?: Duration;
}

/** The whole configuration: what `ims.config.ts` exports through `defineConfig`. */
export interface Config {
  rules: Rule[];
  /**
   * Milliseconds that all rules with `backtracking: true` together may take on one message (their `match`,
   * `when` and named groups, on the wall clock). Once spent, the opted-in rules not yet tried count as not
   * matching that message (a warning names them); RE2 rules still run. Default 5; at most 100.
   */
  backtrackingBudgetMs?: number;
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
  lifecycle?: LifecycleConfig;
  /** Who may silence, unsilence and resolve others' incidents from Slack: user IDs or names, user groups (`S…` or `@handle`). */
  admins?: string[];
  permissions?: PermissionsConfig;
  /** Silences that recur, or planned ones: alerts they match are marked seen, not reposted, not paged, and counted. */
  maintenance?: MaintenanceWindow[];
  /** Acknowledge / Resolve / Silence / Reopen buttons on incident posts (they need interactivity on in the Slack app). Default true. */
  buttons?: boolean;
  /** The operations endpoint (`/healthz`, `/metrics`): `'127.0.0.1:9464'`, `':9464'`. Off by default; `--http` overrides it. */
  http?: string;
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
  /** The first acknowledgement by a person (button, reaction, thread reply, or in the monitoring tool): when and by whom. */
  acknowledgedAt?: number;
  acknowledgedBy?: string;
  permalink?: string;
  /**
   * The named groups the rule's message regex captured when the incident was opened (e.g. `{ host: 'db1' }`),
   * kept with the incident so hooks without the match (`onResolve`, `onReopen`, deliveries) have them. `{}` for
   * a reverse repost, a rule without named groups, and incidents recorded before IMS kept them.
   */
  groups: Record<string, string>;
  /** The correlation key of its alert (the first, for a grouped notification); undefined when lifecycles are off. */
  alertKey?: string;
  /** Repeats of its alert folded into it while open. */
  repeats: number;
  /** The `ts` of the last message about its alert. */
  lastSeenTs?: string;
  /** The `ts` of the last thread note about repeats. */
  lastNoteTs?: string;
  /** Its alert is flapping: posts are edited in place, nobody is paged again, until it is stable. */
  flapping: boolean;
}

/** Durable deliveries for plugins that call other systems (see `HookContext.outbox`). */
export interface Outbox {
  /**
   * Queue a delivery. `key` is the idempotency key of the change: a key already queued or delivered is
   * ignored, so a replayed event never sends twice. Deliveries of one `group` (e.g. an incident) go in
   * order; a failing one is retried with exponential backoff and jitter, across restarts. Resolves once it is
   * recorded in the state: true when queued, false when the key was queued or delivered before.
   */
  enqueue(delivery: { key: string; group: string; payload: unknown }): Promise<boolean>;
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
  /**
   * Look up incidents in the durable state. Every answer is a promise: the state may be a database server shared by
   * several instances (PostgreSQL), read as it is now, changes by other instances included.
   */
  incidents: {
    bySource(channel: string, ts: string): Promise<Incident | undefined>;
    byPost(channel: string, ts: string): Promise<Incident | undefined>;
    byId(id: number): Promise<Incident | undefined>;
    list(filter?: { since?: number; open?: boolean; channel?: string }): Promise<Incident[]>;
    /** Reactions, thread replies, hotline pages, resolutions and reopenings, oldest first. */
    events(id: number): Promise<IncidentEvent[]>;
  };
  /** The report channel, resolved to an ID (undefined when none is configured). */
  reportChannel?: string;
  /**
   * Mark a channel this plugin created (a war room) as its own: IMS never reads messages there as alerts (from
   * the call on, in this instance). Durable once the promise resolves.
   */
  ownChannel(channel: string): Promise<void>;
  /**
   * This plugin's durable key-value store (JSON values; `undefined` deletes); `read` looks at another plugin's,
   * for records a plugin publishes in the toolkit (`ctx.store.read<WarRoomRecord>(WAR_ROOM_PLUGIN, warRoomKey(id))`).
   * Every answer is a promise (the state may be shared by several instances); a `set` is durable once it resolves.
   */
  store: {
    get<T = unknown>(key: string): Promise<T | undefined>;
    set(key: string, value: unknown): Promise<void>;
    read<T = unknown>(plugin: string, key: string): Promise<T | undefined>;
  };
  /** A link to a Slack message. */
  permalink(channel: string, ts: string): string;
  /**
   * The configuration IMS is running, compiled and checked against the workspace: rules compiled
   * (`compiled.rules`), incident, report and reminder channels resolved to IDs, and `compiled.hotlines`
   * mapping each hotline label to its members as IDs (`U…`, user groups `S…`; `here`/`channel`/`everyone` as
   * written). Under `--no-id-lookup` names stay as the config wrote them. After a reload, the reloaded one.
   */
  compiled: CompiledConfig;
  /** Names people read, shared with IMS itself (see `NameService`). */
  names: NameService;
  /**
   * Whether this instance is the one that does work that must happen once (several instances share a PostgreSQL
   * state; one of them leads at a time). Always true for a single instance. A plugin's own timers (a heartbeat)
   * act only while it is true.
   */
  leading(): boolean;
}

/**
 * Real names of users and names of channels, looked up in Slack once per ID for the whole process and shared by
 * IMS and every plugin (concurrent asks for one ID make one call). Never throws: an ID Slack does not know, or a
 * look-up that fails or takes over 2 s, answers the ID itself (a failure that may pass is asked again next time).
 */
export interface NameService {
  /** A user's real name (else display name, else handle), e.g. `Ona Call` for `U0ONCALL1`; a bot ID gives the bot's name. */
  user(id: string): Promise<string>;
  /** A channel's name without `#`, e.g. `alerts` for `C0ALERTS01`. */
  channel(id: string): Promise<string>;
}

/** One queued outbox delivery, as `Plugin.deliver` receives it. */
export interface OutboxDelivery {
  key: string;
  group: string;
  payload: unknown;
  /** Failed attempts so far. */
  attempts: number;
}

/** `onMessage` (and, extended, `onMatch`, `onHotline`, `onReverse`): an accepted message and what IMS decided for it. */
export interface MessageContext extends HookContext {
  message: AlertMessage;
  /**
   * What IMS does with the message, as `--replay` prints it: `incident`, `suppressed`, `seen`,
   * `reverse repost` or `reacji` (ignored messages reach no hook). Decided before `onMessage` runs, so it
   * says what IMS is about to do, not that it was done.
   */
  decision: Exclude<Decision, { action: 'ignore' }>;
  /**
   * The rule that matched the message, with the named groups its regex captured; undefined when no rule
   * matched. Also set for a suppression rule and for a match IMS only marks as seen (reverse mode) or with a
   * reacji: `decision.action` says which. The same object as `decision.match`.
   */
  match?: RuleMatch;
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
  /** Who added (or removed) the resolved reaction or clicked; for a recovery, the integration that posted it (its bot or user ID). */
  user: string;
  /** The resolved reaction; `''` when a button, `/ims` or the integration's recovery (or its firing again) did it. */
  reaction: string;
  /** How: a reaction, a button on the post, or the integration's message. */
  via?: 'reaction' | 'button' | 'integration';
  /** The integration's message that resolved (or reopened) the incident, when one did. */
  recovery?: { channel: string; ts: string; permalink: string };
}

/** A repeat of an open incident's alert: folded into it (no new post, no new page). */
export interface RepeatContext extends HookContext {
  incident: Incident;
  message: AlertMessage;
  /** The alerts of the message, with their keys. */
  alerts: AlertIdentity[];
  /** Repeats so far, this one included. */
  repeats: number;
}

/** An incident's alert started or stopped flapping. */
export interface FlappingContext extends HookContext {
  incident: Incident;
  flapping: boolean;
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
 * A plugin: a name and the hooks it implements.
 *
 * How hooks run: for each event, the plugins that implement the hook run CONCURRENTLY (not in config order),
 * each isolated from the others. Each call is bounded by `hookTimeoutMs` (default 10 s): past it, `ctx.signal`
 * is aborted and the hook is abandoned. A throw, a rejection or a timeout is logged as
 * `plugin 'NAME' failed in HOOK: why` with the plugin's and hook's names and where it was thrown (`at=file:line`),
 * and never reaches IMS or another plugin; when several hooks fail for one event, one more line reports them
 * together (`PluginHookErrors`). Whether IMS waits for a hook before going on is said on each hook: the
 * alert pipeline never does (a slow plugin never delays a repost). Return values are ignored.
 */
export interface Plugin {
  name: string;
  /**
   * Once at start-up, after Slack is reached and the config's names are resolved, and before any event (before
   * interrupted messages are recovered, missed history is caught up and Socket Mode starts): IMS waits for it.
   * Also on a config reload, for the reloaded config's new plugin instances.
   */
  onStart?(ctx: LifecycleContext): void | Promise<void>;
  /**
   * Once on shutdown, after in-flight work finished (or the stop budget ran out) and the outbox was flushed;
   * the DB is still open. IMS waits for it until the stop deadline. Also on a config reload, for the replaced
   * plugin instances.
   */
  onStop?(ctx: LifecycleContext): void | Promise<void>;
  /**
   * For every accepted message (poster filter passed, not IMS's own, not a repeat), BEFORE IMS acts on it
   * (matching is done; the repost or reaction is not made yet): started as IMS begins its work and not waited
   * for, so it runs alongside IMS's own work and the other plugins' `onMessage`. For what happened to the
   * message, use `onMatch` / `onReverse`.
   */
  onMessage?(ctx: MessageContext): void | Promise<void>;
  /** After the incident post is made and the incident recorded; not waited for by the pipeline. */
  onMatch?(ctx: MatchContext): void | Promise<void>;
  /** After a reverse-mode repost to the DEFAULT channel is made and recorded; not waited for by the pipeline. */
  onReverse?(ctx: ReverseContext): void | Promise<void>;
  /**
   * For an incident whose rule pages a hotline (the incident post carries the mentions), after THIS plugin's
   * own `onMatch` settled (or timed out), so a plugin sees its match first; another plugin's slow `onMatch`
   * never delays it. Not waited for by the pipeline.
   */
  onHotline?(ctx: HotlineContext): void | Promise<void>;
  /**
   * After a resolved reaction on an open incident's post (or its original) is recorded as its resolution; the
   * handling of that reaction event waits for it. Also for a resolution found after downtime (not waited for;
   * `reaction` is then the first resolved reaction), and, with lifecycles on, after the integration's recovery
   * resolved it (`recovery` set, `reaction` empty; not waited for). Also after someone clicks Resolve on the post
   * (`via: 'button'`; the click is answered first, the hook not waited for).
   */
  onResolve?(ctx: ResolutionContext): void | Promise<void>;
  /**
   * After the last resolved reaction is removed from a resolved incident and the reopening recorded; that event's
   * handling waits for it. With lifecycles on, also when its alert fires again within `reopenWithin` of the
   * recovery (`recovery` is the firing message; not waited for), and after someone clicks Reopen (`via: 'button'`,
   * not waited for).
   */
  onReopen?(ctx: ResolutionContext): void | Promise<void>;
  /**
   * With lifecycles on, after a repeat of an open incident's alert is folded into it (counted, its post edited in
   * place, a thread note at most once per `repeatNoteEvery`); not waited for by the pipeline.
   */
  onRepeat?(ctx: RepeatContext): void | Promise<void>;
  /**
   * With lifecycles on, after an incident's alert starts flapping (changed state more often than
   * `lifecycle.flapping` allows) or stops (stable long enough), and its post says so; not waited for.
   */
  onFlapping?(ctx: FlappingContext): void | Promise<void>;
  /** When a report is built, before it is posted: the report waits for every `onReport`, so `addSection` adds to it. */
  onReport?(ctx: ReportContext): void | Promise<void>;
  /**
   * Delivers one item this plugin queued with `ctx.outbox.enqueue`, in order per group, bounded by
   * `hookTimeoutMs` like a hook. Resolve when it is delivered; throw to retry later (exponential backoff with
   * jitter, across restarts); throw a `PermanentDeliveryError` (or any error with `permanent: true`) to give it
   * up (logged). `retryOrGiveUp` from the toolkit makes that choice for Slack errors and an attempt limit.
   */
  deliver?(delivery: OutboxDelivery, ctx: HookContext): Promise<void>;
}

/** Hook names, in the order a plugin author meets them (every hook function of `Plugin`: checked below by type). */
export const HOOK_NAMES = [
  'onStart', 'onMessage', 'onMatch', 'onHotline', 'onReverse', 'onResolve', 'onReopen', 'onRepeat', 'onFlapping', 'onReport', 'onStop',
] as const;
const PLUGIN_FUNCTIONS = new Set<string>([...HOOK_NAMES, 'deliver']);
export type HookName = (typeof HOOK_NAMES)[number];

/**
 * `true` when `Names` are exactly the hook functions of `P` (its function-valued keys but `deliver`, which the
 * outbox calls); otherwise what is missing from the list and what in it is no hook, so the error says which.
 */
export type HookListCheck<Names extends string, P = Plugin> =
  [Exclude<HookFunctionName<P>, Names>, Exclude<Names, HookFunctionName<P>>] extends [never, never]
    ? true
    : { missingFromList: Exclude<HookFunctionName<P>, Names>; notAHookOfPlugin: Exclude<Names, HookFunctionName<P>> };
type HookFunctionName<P> = Exclude<{ [K in keyof P]-?: NonNullable<P[K]> extends (...args: never[]) => unknown ? K : never }[keyof P], 'deliver'> & string;
// A hook added to Plugin but not to HOOK_NAMES (or the reverse) fails type-checking here.
true satisfies HookListCheck<HookName>;

/**
 * Where a message came from: `live` from Socket Mode, `catch-up` read back from a channel's history after
 * downtime or a dropped connection, `recovery` claimed by an earlier run (or an earlier attempt) and not finished.
 */
export type MessageOrigin = 'live' | 'catch-up' | 'recovery';

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
// What a plugin needs beside definePlugin (withTimeout, retryOrGiveUp, isPermanentSlackError, slackItems,
// serialPerKey, pluginOptions, PermanentDeliveryError, formatDuration, …) is in ims-plugin-kit.ts, re-exported above.

// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Config loading
// ═══════════════════════════════════════════════════════════════════════════════════════════════

/** The validated, compiled form the engine and the runtime use. */
export interface CompiledConfig {
  /** The config file as the user named it (or as found), for messages: `IMS.ini`, `conf/ims.config.ts`. */
  source: string;
  /** The config file's absolute path, when it was read from a file: what the start log, `--test` and `--replay` name. */
  file?: string;
  /** Things that load but are probably not what was meant (another config file shadowed by this one): logged at start. */
  warnings: string[];
  config: Config;
  rules: CompiledRule[];
  /** Milliseconds per message for all opted-in (backtracking) patterns together (config `backtrackingBudgetMs`). */
  backtrackingBudgetMs: number;
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
  state: { path: string; catchUpWindowMs: number; url?: string };
  attachmentText: 'readable' | 'legacy-json';
  plugins: Plugin[];
  hookTimeoutMs: number;
  reverse: boolean;
  reacjiMode: boolean;
  /** Alert lifecycles (`lifecycle` in the config): off for a config read from IMS.ini unless it turns them on. */
  lifecycle: LifecycleSettings;
  /** Buttons, permissions and maintenance windows (`buttons`, `admins`, `permissions`, `maintenance`). */
  interactive: InteractiveSettings;
  /**
   * The rule engine and config loader that compiled this config. The runtime decides and reloads through it,
   * since it imports no values from this module (imports run one way: `ims.ts` → its siblings).
   */
  engine: RuleEngine;
}

/** What the runtime uses of this module: deciding a message, and loading the config again on a reload. */
export interface RuleEngine {
  decide: typeof decide;
  matchRules: typeof matchRules;
  loadConfig: typeof loadConfig;
}

export interface CompiledRule {
  /** 1-based position in the rule list, as `--test` prints it. */
  number: number;
  /** A match must contain one of these (lower-cased when `ignoreCase`); undefined: no prefilter. */
  literals?: string[];
  /** The message regex captures named groups (only then is it run a second time, for them). */
  hasGroups: boolean;
  ignoreCase: boolean;
  /**
   * `'linear'`: the patterns are RE2 regexes (matching time linear in the text). `'backtracking'`: the rule
   * opted in (`backtracking: true`); its patterns are BudgetedRegExp, JavaScript regexes stopped when the
   * message's `backtrackingBudgetMs` is spent.
   */
  engine: 'linear' | 'backtracking';
  /** Fast form for the yes/no question (redundant `.*` at the ends removed). */
  test: RegExp;
  /** Full form, for named groups. */
  match: RegExp;
  when?: RegExp;
  suppress: boolean;
  head: string;
  incident: string;
  hotline?: string;
  /** The rule's `key` template, when it declares one. */
  key?: string;
  /** The rule's `resolves` pattern, compiled. */
  resolves?: RegExp;
  source: Rule;
}

/** The longest `backtrackingBudgetMs` accepted: past it one hostile alert holds up every other (and Slack's acks) too long. */
const MAX_BACKTRACKING_BUDGET_MS = 100;

const KNOWN_KEYS: Record<string, readonly string[]> = {
  '': ['rules', 'incidents', 'reverseDefault', 'resolvedReactions', 'seenReaction', 'report', 'posters', 'hotlines', 'reacji', 'reminders',
    'reminderInterval', 'timezone', 'reverse', 'reacjiMode', 'state', 'attachmentText', 'plugins', 'hookTimeoutMs', 'backtrackingBudgetMs', 'lifecycle',
    'admins', 'permissions', 'maintenance', 'buttons', 'http'],
  rule: ['match', 'when', 'suppress', 'head', 'incident', 'hotline', 'backtracking', 'key', 'resolves'],
  incident: ['channel', 'limit'],
  report: ['channel', 'schedule', 'everyHours', 'window', 'verbose', 'onlyPosters'],
  reverseDefault: ['channel', 'header'],
  reacji: ['reaction', 'bots'],
  reminder: ['channel', 'hours'],
  state: ['path', 'catchUpWindow', 'url'],
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
  /**
   * Compile a pattern for RE2, or, for a rule that opted in (`backtracking: true`), as a JavaScript regex that
   * runs under a time budget. A rule's pattern that RE2 refuses says how the rule can opt in.
   */
  const regex = (value: unknown, at: string, what: string, rule?: { number: number; backtracking: boolean }): RegExp | undefined => {
    if (!(value instanceof RegExp) && typeof value !== 'string') { fail(at, `expected ${what} (a string or RegExp), found ${describe(value)}`); return undefined; }
    try {
      if (rule?.backtracking) return new BudgetedRegExp(translateToJavaScript(value), `rule ${rule.number} (${placeOf(config, source, at).replace(/: $/, '')})`, backtrackingBudgetMs);
      return translateRegex(value);
    } catch (error) {
      const optIn = !rule || !(error instanceof LinearEngineRefusal) ? ''
        : /\.ini$/i.test(source)
          ? `; to keep the pattern, write the rule in an ims.config.ts with backtracking: true (JavaScript's engine, stopped after ${backtrackingBudgetMs} ms per message; see README, Rules)`
          : `; to keep the pattern, set backtracking: true on this rule (JavaScript's engine, stopped after ${backtrackingBudgetMs} ms per message)`;
      fail(at, `${what} ${(error as Error).message}${optIn}`);
      return undefined;
    }
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
  if (config.rules === undefined && config.incidents === undefined) {
    // A module without its default export, or a file cut short while an editor saves it: one line, not one per key.
    return { problems: [`${source}: the config has no rules and no incidents; expected export default defineConfig({ rules: [...], incidents: {...} }) (is the file complete?)`], warnings };
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
  // A config without rules or incident channels runs, but pages nobody: every alert is only marked seen. Refused,
  // unless the file's reader already reported the lines it could not read there (then "empty" is not news).
  // In reverse mode a DEFAULT line alone is a whole config (a legacy reverse-mode IMS.ini): unmatched messages are reposted there.
  const reverse = options.reverse === true || config.reverse === true;
  const reported = (config as Located)[SOURCE_LINES]?.reported;
  // Reported here: then every rule's label is unknown, and that is this one problem, not one more per rule.
  const noIncidentChannels = isObject(config.incidents) && !Object.keys(config.incidents).length && !(reverse && config.reverseDefault !== undefined)
    && !reported?.has(config.incidents);
  if (noIncidentChannels) {
    fail('incidents', `no incident channels: expected at least one (LABEL<TAB>CHANNEL<TAB>LIMIT in [Incidents] / incidents: { LABEL: { channel } }); rules repost to them` +
      (config.reverseDefault !== undefined ? `; the DEFAULT line (reverseDefault) alone is enough only in reverse mode: run with --reverse (or set reverse: true)` : ''));
  }
  if (Array.isArray(config.rules) && !config.rules.length && !reported?.has(config.rules)) {
    fail('rules', `no rules: expected at least one ([Rules] / rules); without rules no alert becomes an incident, every message is only marked seen`);
  }

  // Labels defined but refused (reported at their definition): rules naming them are not reported again.
  const definedLabels = (value: unknown) => Object.keys(isObject(value) ? value : {});
  const refusedLabels = new Set([...definedLabels(config.incidents), ...((config as Located)[SOURCE_LINES]?.reportedLabels ?? [])].filter((label) => !incidents.has(label)));
  const refusedHotlines = new Set(definedLabels(config.hotlines).filter((label) => !hotlines.has(label)));

  // One budget per message for every opted-in pattern together; a few milliseconds, so that no alert can hold up the others.
  const givenBudget = config.backtrackingBudgetMs;
  const budgetOk = givenBudget === undefined || (typeof givenBudget === 'number' && givenBudget > 0 && givenBudget <= MAX_BACKTRACKING_BUDGET_MS);
  if (!budgetOk) {
    fail('backtrackingBudgetMs', `expected a number of milliseconds above 0 and at most ${MAX_BACKTRACKING_BUDGET_MS} (the time all backtracking: true rules together may take on one message; default ${BACKTRACKING_BUDGET_MS}), found ${describe(givenBudget)}`);
  }
  const backtrackingBudgetMs = budgetOk && givenBudget !== undefined ? givenBudget : BACKTRACKING_BUDGET_MS;

  const rules: CompiledRule[] = [];
  if (!Array.isArray(config.rules)) fail('rules', `expected a list of rules, found ${describe(config.rules)}`);
  (Array.isArray(config.rules) ? config.rules : []).forEach((rule, index) => {
    const at = `rules[${index}]`;
    if (!isObject(rule)) { fail(at, `expected a rule object { match, head, incident, when?, suppress?, hotline? }, found ${describe(rule)}`); return; }
    unknownKeys(rule, 'rule', at);
    if (rule.backtracking !== undefined && typeof rule.backtracking !== 'boolean') fail(`${at}.backtracking`, `expected true or false, found ${describe(rule.backtracking)}`);
    const engine = { number: index + 1, backtracking: rule.backtracking === true };
    const match = regex(rule.match, `${at}.match`, 'message regex', engine);
    if (typeof rule.match === 'string' && rule.match === '') fail(`${at}.match`, `message regex is empty; use '.' to match every message`);
    let when: RegExp | undefined;
    let suppress = rule.suppress === true;
    if (rule.suppress !== undefined && typeof rule.suppress !== 'boolean') fail(`${at}.suppress`, `expected true or false, found ${describe(rule.suppress)}`);
    if (rule.when !== undefined) {
      let window = rule.when;
      if (typeof window === 'string' && window.startsWith('!')) { suppress = true; window = window.slice(1); }
      if (window === '') fail(`${at}.when`, `date regex is empty; use '.*' for always`);
      else when = regex(window, `${at}.when`, 'date regex', engine);
    }
    if (engine.backtracking && match && (!when || when instanceof BudgetedRegExp) && [rule.match, rule.when].every((p) => p === undefined || runsOnRe2(p))) {
      warnings.push(`${placeOf(config, source, `${at}.backtracking`)}RE2 runs this rule's patterns as they are; remove backtracking: true for linear-time matching (with it, the rule runs on JavaScript's engine within the ${backtrackingBudgetMs} ms per message that opted-in rules share)`);
    }
    if (str(rule.head, `${at}.head`, "a head such as '[Error]'") && str(rule.incident, `${at}.incident`, 'an incident label') && !incidents.has(rule.incident) && !refusedLabels.has(rule.incident)
      && !noIncidentChannels) {
      const unknown = incidentLabelProblem(rule.incident, suppress, config.reverseDefault !== undefined, [...incidents.keys()], [...refusedLabels]);
      if (unknown) fail(`${at}.incident`, unknown);
    }
    if (rule.hotline !== undefined && typeof rule.hotline !== 'string') fail(`${at}.hotline`, `expected a hotline label (a key of hotlines), found ${describe(rule.hotline)}`);
    else if (rule.hotline !== undefined && !hotlines.has(rule.hotline) && !refusedHotlines.has(rule.hotline)) {
      fail(`${at}.hotline`, `unknown hotline '${rule.hotline}'${didYouMean(rule.hotline, [...hotlines.keys()])}; define it in [Hotline] / hotlines (known: ${[...hotlines.keys()].join(', ') || 'none'})`);
    }
    if (match && rule.key !== undefined) {
      const problem = templateProblem(rule.key, [...match.source.matchAll(/\(\?P?<([A-Za-z_]\w*)>/g)].map((m) => m[1]));
      if (problem) fail(`${at}.key`, problem);
    }
    const resolves = rule.resolves === undefined ? undefined : regex(rule.resolves, `${at}.resolves`, 'recovery regex', engine);
    if (match) {
      rules.push({
        key: typeof rule.key === 'string' ? rule.key : undefined, resolves: resolves && fastTest(resolves),
        number: index + 1, engine: engine.backtracking ? 'backtracking' : 'linear', test: fastTest(match), match, when: when && fastTest(when), suppress,
        literals: requiredLiterals(match), ignoreCase: match.flags.includes('i'), hasGroups: /\(\?P?<(?![=!])/.test(match.source),
        head: String(rule.head), incident: String(rule.incident), hotline: rule.hotline as string | undefined, source: rule as unknown as Rule,
      });
    }
  });

  // A time zone's first clock loads ICU data (some 15 ms): now, at load, not inside a message's backtracking budget.
  if (rules.some((rule) => rule.when && rule.engine === 'backtracking')) {
    try { ruleClock(Date.now(), typeof config.timezone === 'string' ? config.timezone : undefined); } catch { /* a bad time zone is reported below */ }
  }

  const reacjiMode = options.reacji === true || config.reacjiMode === true;
  if (config.reverseDefault !== undefined) {
    unknownKeys(config.reverseDefault, 'reverseDefault', 'reverseDefault');
    if (isObject(config.reverseDefault)) {
      str(config.reverseDefault.channel, 'reverseDefault.channel', 'a channel ID or name');
      str(config.reverseDefault.header, 'reverseDefault.header', "a header such as '[Alert]'");
    } else fail('reverseDefault', `expected { channel, header }, found ${describe(config.reverseDefault)}`);
  } else if (reverse && !refusedLabels.has('DEFAULT')) {
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

  const state = objectOrNothing(config.state, 'state', '{ path?, url?, catchUpWindow? }') ? config.state ?? {} : {};
  unknownKeys(state, 'state', 'state');
  if (state.path !== undefined && (typeof state.path !== 'string' || !state.path.trim())) fail('state.path', `expected a file path, found ${describe(state.path)}`);
  if (state.url !== undefined && (typeof state.url !== 'string' || !/^postgres(ql)?:\/\/./.test(state.url))) {
    fail('state.url', `expected a PostgreSQL URL such as 'postgres://ims:secret@db.internal:5432/ims', found ${typeof state.url === 'string' ? `'${state.url.replace(/:[^:@/]*@/, ':…@')}'` : describe(state.url)}`);
  }
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

  // Read from IMS.ini (or spreading loadIni()): one incident per message, as the legacy tool, unless turned on.
  const lifecycle = compileLifecycle(config.lifecycle, (config as Located)[SOURCE_LINES] !== undefined);
  for (const [at, what] of lifecycle.problems) fail(at, what);
  const interactive = compileInteractive(config, new Set(incidents.keys()), typeof config.timezone === 'string' && isTimeZone(config.timezone) ? config.timezone : undefined,
    new Set(rules.map((rule) => rule.head)));
  for (const [at, what] of interactive.problems) fail(at, what);
  if (config.http !== undefined && !(typeof config.http === 'string' && parseListen(config.http))) fail('http', `expected where to listen, such as '127.0.0.1:9464' or ':9464', found ${describe(config.http)}`);
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
      source, warnings, config, rules, backtrackingBudgetMs, incidents, ownChannels, hotlines, reminders, reminderIntervalMs, reverse, reacjiMode,
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
      state: { path: path.resolve(sourceDir, state.path ?? 'ims.db'), catchUpWindowMs, ...(typeof state.url === 'string' ? { url: state.url } : {}) },
      attachmentText: config.attachmentText ?? 'readable',
      plugins: plugins as Plugin[],
      hookTimeoutMs: config.hookTimeoutMs ?? 10_000,
      lifecycle: lifecycle.settings,
      interactive: interactive.settings,
      engine: RULE_ENGINE,
    },
  };
}

/**
 * Why a rule's incident label is refused (it names no incident channel), or undefined when it is fine. A
 * suppression posts nothing, so in a config with a DEFAULT line it may name `DEFAULT`, as legacy reverse-mode
 * files do; a rule that reposts cannot (DEFAULT is where reverse mode reposts unmatched messages, not a label).
 */
function incidentLabelProblem(label: string, suppress: boolean, hasDefault: boolean, known: string[], refused: string[]): string | undefined {
  if (label === 'DEFAULT' && hasDefault) {
    if (suppress) return undefined;
    return `'DEFAULT' names the reverse-mode line, not an incident label: only a suppression rule (DATE_REGEX starting with '!' / suppress: true) may name it; ` +
      `a rule that reposts needs a label of its own (LABEL<TAB>CHANNEL<TAB>LIMIT in [Incidents] / incidents), the DEFAULT channel may be its channel`;
  }
  return `unknown incident label '${label}'${didYouMean(label, [...known, ...refused])}; define it in [Incidents] / incidents (known: ${known.join(', ') || 'none'})`;
}

/** Validate and compile, or throw `ConfigError` with every problem. */
export function compileConfig(config: Config, options: { source?: string; reverse?: boolean; reacji?: boolean; baseDir?: string } = {}): CompiledConfig {
  const { problems, compiled } = validateConfig(config, options);
  if (!compiled) throw new ConfigError(problems, options.source ?? (config as Located | null)?.[SOURCE_LINES]?.file ?? 'config');
  return compiled;
}

/**
 * Read a legacy `IMS.ini` into a `Config`. Every problem is reported as `IMS.ini:LINE: …` and the file is
 * refused (throws `ConfigError`). Use it from `ims.config.ts` to keep the file:
 * `defineConfig({ ...loadIni('./IMS.ini'), plugins: [pin()] })`.
 */
export function loadIni(file: string | URL, options: { reverse?: boolean } = {}): Config {
  if (file instanceof URL) file = fileURLToPath(file);
  // Inside an ims.config.ts being loaded, a relative path means beside that file, not the working directory.
  const configDir = (globalThis as { [CONFIG_DIR]?: string })[CONFIG_DIR];
  if (!path.isAbsolute(file) && configDir) file = path.resolve(configDir, file);
  const { config, problems } = parseIni(readConfigText(file, file, 'check the path or pass --config PATH'), file);
  // Not told the mode (an ims.config.ts run with --reverse, or setting reverse: true itself), a file with a DEFAULT
  // line is checked as if for reverse mode; the config as a whole is checked again with the mode in use when it is compiled.
  const all = [...problems, ...validateConfig(config, { reverse: options.reverse ?? config.reverseDefault !== undefined }).problems];
  if (all.length) throw new ConfigError(all, file);
  return config;
}

/** Read an IMS.ini the config loader found or was given; `shown` is the path as the user wrote it. */
function readIniLocated(absolute: string, shown: string, options: { reverse?: boolean } = {}): Config {
  const { config, problems } = parseIni(readConfigText(absolute, shown), shown);
  if (problems.length) throw new ConfigError([...problems, ...validateConfig(config, { reverse: options.reverse }).problems], shown);
  return config;
}

/**
 * Find and read the configuration: an explicit path (`.ini` through the legacy loader), else the search in
 * `cwd` (the `"ims"` key of package.json, `.imsrc*`, `ims.config.ts|mjs|js`, then `IMS.ini`). Every problem
 * names the file it is in (relative to `cwd` when found by the search, as given with `--config`).
 */
export async function loadConfig(options: { path?: string; cwd?: string; reverse?: boolean; reacji?: boolean } = {}): Promise<CompiledConfig> {
  const cwd = options.cwd ?? process.cwd();
  const fail = (file: string, message: string): never => { throw new ConfigError([message], file); };
  let shown: string;
  let absolute: string;
  let found: { config: unknown; empty: boolean } | undefined;
  const warnings: string[] = [];
  if (options.path === undefined) {
    const searched = await searchConfig(cwd);
    if (!searched) return fail('config', `no configuration found in ${cwd}; create ims.config.ts (see README) or pass --config PATH (an IMS.ini works too)`);
    absolute = searched.absolute;
    shown = path.relative(cwd, absolute) || absolute;
    found = searched;
    warnings.push(...shadowedConfigs(cwd, absolute, searched.config));
  } else {
    shown = options.path;
    absolute = path.resolve(cwd, options.path);
    const stat = statSync(absolute, { throwIfNoEntry: false });
    if (!stat) fail(shown, `${shown}: the config file does not exist; check the path given to --config`);
    if (stat!.isDirectory()) fail(shown, `${shown}: is a folder; give --config the config file itself (ims.config.ts, .imsrc.json or IMS.ini)`);
    found = await readConfigFile(absolute, shown);
    if (!found) fail(shown, `${shown}: has no "ims" key; put the config under "ims", or give --config the config file itself`);
  }
  let config = found!.config;
  const iniPath = (config as Record<string, unknown> | undefined)?.[INI_MARK] as string | undefined;
  if (iniPath) config = readIniLocated(iniPath, shown, { reverse: options.reverse });
  else if (found!.empty) fail(shown, `${shown}: the file is empty; expected a config with rules and incidents (see README, Configuration)`);
  const compiled = compileConfig(config as Config, { source: shown, reverse: options.reverse, reacji: options.reacji, baseDir: path.dirname(absolute) });
  compiled.file = absolute;
  compiled.warnings.push(...warnings);
  return compiled;
}


// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Rule engine
// ═══════════════════════════════════════════════════════════════════════════════════════════════


export type RuleVerdict =
  | { kind: 'incident'; match: RuleMatch }
  | { kind: 'suppressed'; match: RuleMatch }
  | { kind: 'none' };

/**
 * Try the rules in order: the first whose message regex and window both match wins. A suppression rule
 * that wins means "not an incident". A rule whose incident label is not defined is skipped. Matching takes
 * time linear in the text (RE2), except for rules that opted in to backtracking: together they get
 * `backtrackingBudgetMs` per message (default: the config's, which its compiled rules carry); the pattern
 * running when it is spent is stopped, and it and the opted-in rules after it count as not matching (one
 * warning to `log`, else standard error).
 */
export function matchRules(rules: readonly CompiledRule[], text: string, epochMs: number,
  options: { timezone?: string; incidents?: ReadonlyMap<string, unknown>; log?: OverrunLog; backtrackingBudgetMs?: number } = {}): RuleVerdict {
  const budget = new BacktrackingBudget(options.backtrackingBudgetMs, options.log);
  const scanner = literalScanner(rules);
  const stamp = scanLiterals(scanner, text);
  const run: RuleRun = { rules, epochMs, options, subject: new Subject(text, 'message', budget), budget, scanner, stamp, index: 0 };
  try {
    return tryRules(run);
  } finally {
    budget.report();
  }
}

/** One message on its way down the rule list: what `tryRules` resumes from when a time limit stopped it. */
interface RuleRun {
  readonly rules: readonly CompiledRule[];
  readonly epochMs: number;
  readonly options: { timezone?: string; incidents?: ReadonlyMap<string, unknown> };
  readonly subject: Subject;
  /** The message's time, for `when` (made once, when first needed). */
  clock?: Subject;
  readonly budget: BacktrackingBudget;
  readonly scanner: LiteralScanner;
  readonly stamp: number;
  /** The rule being tried. */
  index: number;
}

/**
 * The rules from `run.index` on. The first opted-in rule the message reaches is tried, with the rest of the
 * list, under the message's backtracking budget: one time limit per message, not one per pattern. When the
 * limit stops it, the rule in progress is tried again and the list goes on outside the limit, where RE2
 * patterns run as ever and opted-in ones count as no match.
 */
function tryRules(run: RuleRun): RuleVerdict {
  const { rules, subject, budget, scanner, stamp, options } = run;
  for (; run.index < rules.length; run.index++) {
    const rule = rules[run.index];
    const literals = scanner.ruleLiterals[run.index];
    if (literals) {
      let possible = false;
      for (let k = 0; k < literals.length && !possible; k++) possible = scanner.seen[literals[k]] === stamp;
      if (!possible) continue;
    }
    if (rule.engine === 'backtracking' && !budget.guarding && rule.match instanceof BudgetedRegExp && budget.leftFor(rule.match) > 0) {
      // The clock is made before the limit starts: a time zone's first one loads ICU data, which is not the patterns' time.
      if (rule.when) run.clock ??= clockOf(run);
      const limited = budget.guard(() => tryRules(run), rule.match);
      return limited.done ? limited.value : tryRules(run);
    }
    if (!searchIn(rule.test, subject)) continue;
    if (rule.when && !searchIn(rule.when, run.clock ??= clockOf(run))) continue;
    if (!rule.suppress && options.incidents && !options.incidents.has(rule.incident)) continue;
    return { kind: rule.suppress ? 'suppressed' : 'incident', match: ruleMatch(rule, subject) };
  }
  return { kind: 'none' };
}

const clockOf = (run: RuleRun) => new Subject(ruleClock(run.epochMs, run.options.timezone), 'clock', run.budget);

/**
 * The match, its named groups extracted when first read: most decisions (seen, suppressed, ignored) never read
 * them, and on RE2 extracting costs several times the search. A backtracking rule's groups come from the run
 * that just matched.
 */
function ruleMatch(rule: CompiledRule, subject: Subject): RuleMatch {
  if (!rule.hasGroups) return { rule, groups: {} };
  if (rule.engine === 'backtracking') return { rule, groups: namedGroups(rule.match, subject) as Record<string, string> };
  let groups: Record<string, string> | undefined;
  return {
    rule,
    get groups() { return (groups ??= namedGroups(rule.match, subject) as Record<string, string>); },
    set groups(value) { groups = value; },
  };
}

/** What IMS does with one message; the runtime carries it out, `--replay` and `--test` print it. */
export type Decision =
  | { action: 'ignore'; reason: 'own post' | 'hidden subtype' | 'empty text' | 'poster' | 'own channel' | 'quoted alert' | 'talk about an alert' }
  | { action: 'incident'; match: RuleMatch; channel: string; hotline?: string; alert?: Identification }
  | { action: 'suppressed'; match: RuleMatch; reaction: string }
  | { action: 'seen'; match?: RuleMatch; reaction: string; alert?: Identification }
  | { action: 'reverse repost'; channel: string; header: string }
  | { action: 'reacji'; match?: RuleMatch; reaction: string };

const HIDDEN_SUBTYPES = new Set(['message_changed', 'message_deleted', 'message_replied', 'channel_join', 'channel_leave',
  'channel_topic', 'channel_purpose', 'channel_name', 'channel_archive', 'channel_unarchive', 'group_join', 'group_leave',
  'pinned_item', 'unpinned_item', 'ekm_access_denied', 'tombstone']);

/**
 * Decide what to do with a message event. Pure: no Slack, no state. With lifecycles on, an incident or seen
 * decision carries the alerts the message is about (`alert`): the runtime folds repeats and resolves on
 * recovery with them. `edited`: the event is the new form of an edited message (`message_changed`), read only
 * for a change of state, never as a new alert.
 */
export function decide(config: CompiledConfig, event: SlackMessageEvent, options: { self?: { userId?: string; botId?: string }; testing?: boolean; log?: OverrunLog; edited?: boolean } = {}):
  { decision: Decision; message?: AlertMessage } {
  const decided = decideByRules(config, event, options);
  const lifecycle = config.lifecycle;
  const { decision, message } = decided;
  if (!lifecycle?.enabled || config.reverse || !message || (decision.action !== 'incident' && decision.action !== 'seen')) return decided;
  const threadOf = event.thread_ts && event.thread_ts !== event.ts ? event.thread_ts : undefined;
  // A person's message is an alert only when [PostID]/posters names them; otherwise one that reads as an integration's alert quotes it.
  const person = !event.bot_id && event.subtype !== 'bot_message' && !(config.posters && event.user && config.posters.has(event.user));
  const alert = identify({ event, text: message.text, edited: options.edited, threadOf }, lifecycle, decision.action === 'incident' ? decision.match : undefined, person ? 'person' : 'integration');
  if (alert === 'quoted') return { decision: { action: 'ignore', reason: 'quoted alert' } };
  if (!alert) return options.edited || threadOf ? { decision: { action: 'ignore', reason: 'talk about an alert' } } : decided;
  if (threadOf && !options.edited) {
    // A reply in an alert's thread is never a new alert: only what it says of a state (a recovery, a notice) is read.
    const changes = alert.alerts.filter((a) => a.state === 'resolved' || a.notice);
    if (!changes.length) return { decision: { action: 'ignore', reason: 'talk about an alert' } };
    return { decision: { action: 'seen', match: 'match' in decision ? decision.match : undefined, reaction: config.seenReaction, alert: { ...alert, alerts: changes } }, message };
  }
  return { decision: { ...decision, alert }, message };
}

function decideByRules(config: CompiledConfig, event: SlackMessageEvent, options: { self?: { userId?: string; botId?: string }; testing?: boolean; log?: OverrunLog } = {}):
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
  const verdict = matchRules(config.rules, text, tsToMs(event.ts), {
    timezone: config.timezone, incidents: config.incidents, log: options.log, backtrackingBudgetMs: config.backtrackingBudgetMs,
  });
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

const RULE_ENGINE: RuleEngine = { decide, matchRules, loadConfig };


// ═══════════════════════════════════════════════════════════════════════════════════════════════
// Small shared helpers (parsing durations, describing values for error messages)
// ═══════════════════════════════════════════════════════════════════════════════════════════════


/** Whether RE2 compiles a rule's pattern as it is (a `when` may carry the legacy leading `!`). */
function runsOnRe2(pattern: unknown): boolean {
  try {
    translateRegex(typeof pattern === 'string' ? pattern.replace(/^!/, '') : (pattern as Pattern));
    return true;
  } catch {
    return false;
  }
}


function isReactionName(value: unknown): value is string {
  return typeof value === 'string' && /^[a-z0-9_+'\-:]+$/i.test(value) && value.replace(/:/g, '') !== '';
}

function isTimeZone(zone: unknown): boolean {
  if (typeof zone !== 'string') return false;
  try { new Intl.DateTimeFormat('en-US', { timeZone: zone }); return true; } catch { return false; }
}


// ═══════════════════════════════════════════════════════════════════════════════════════════════
// CLI / main
// ═══════════════════════════════════════════════════════════════════════════════════════════════

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
  // Before the config: the manifest is how the Slack app is made, perhaps before any config exists.
  if (options.printManifest) { io.out(printManifest().trimEnd()); return 0; }
  let config: CompiledConfig;
  try {
    config = await loadConfig({ path: options.config, reverse: options.reverse, reacji: options.reacji });
  } catch (error) {
    if (error instanceof ConfigError) {
      const running = options.test === undefined && options.replay === undefined && !options.printConfig;
      if (running) (await import('./ims-log.ts')).reportRefusal(error.message, options, io);
      else io.err(error.message);
      return 1;
    }
    throw error;
  }
  if (options.test !== undefined) {
    const now = process.env.IMS_NOW ? Date.parse(process.env.IMS_NOW) : Date.now();
    if (Number.isNaN(now)) { io.err(`ims: IMS_NOW must be an ISO instant such as 2026-11-21T10:30:00Z, found '${process.env.IMS_NOW}'`); return 2; }
    for (const warning of config.warnings) io.err(`ims: warning: ${warning}`);
    // The legacy lines first, unchanged (scripts read them); then which config decided.
    io.out(`${describeTest(config, options.test, now)}\n  config:   ${configName(config)}`);
    return 0;
  }
  if (options.printConfig || options.replay !== undefined) for (const warning of config.warnings) io.err(`ims: warning: ${warning}`);
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
  if (options.migrateState !== undefined) {
    for (const warning of config.warnings) io.err(`ims: warning: ${warning}`);
    const { migrateState } = await import('./ims-runtime.ts');
    return migrateState(config, options.migrateState || process.env.DATABASE_URL, io);
  }
  // The Slack runtime is loaded only now: `--test`, `--replay` and `--print-config` never load it.
  const { runSlack } = await import('./ims-runtime.ts');
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
  let settled = false;
  main(process.argv.slice(2)).then((code) => { settled = true; process.exitCode = code; }, (error) => {
    settled = true;
    process.stderr.write(`ims: ${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  });
  // Node ends a process whose event loop ran dry with exit code 0. Before main() has answered, that is a bug
  // (something waited on nothing), never success: say so and fail, so a supervisor restarts IMS.
  process.on('beforeExit', () => {
    if (settled || process.exitCode) return;
    process.stderr.write('ims: stopped unexpectedly: nothing was left to wait for before IMS finished (a bug: please report it)\n');
    process.exitCode = 1;
  });
}

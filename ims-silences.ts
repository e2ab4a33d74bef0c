/**
 * Silences and maintenance windows, the pure part: what a silence matches (`[Warn]`, an incident label, a
 * correlation key, `/regex/`, everything), durations as people type them (`30m`, `2h`, `1d`, `1h30m`), the
 * `buttons` / `admins` / `permissions` / `maintenance` config compiled, and which maintenance windows are open at
 * an instant. The runtime that keeps silences in state, applies them and posts their summaries is `ims-silencing.ts`.
 */
import type { Config, Incident, PermissionsConfig } from './ims.ts';
import { normalisedTextKey } from './ims-recognisers.ts';
import { translateRegex } from './ims-regex.ts';
import { cron, parseDuration } from './ims-time.ts';
import { describeValue, didYouMean } from './ims-plugin-kit.ts';

/** What a silence matches. `text`: alerts that read like one incident's (its normalised text), for incidents without a key. */
export type SilenceMatcher =
  | { kind: 'everything' }
  | { kind: 'head'; head: string }
  | { kind: 'label'; label: string }
  | { kind: 'key'; key: string }
  | { kind: 'text'; key: string; title: string }
  | { kind: 'regex'; source: string; ignoreCase: boolean };

/** An alert as silences see it: the rule that matched it, its correlation keys, its text. */
export interface SilenceSubject {
  head?: string;
  label?: string;
  /** Correlation keys of its alerts (lifecycles on). */
  keys: readonly string[];
  /** Its normalised text key (for `text` matchers). */
  textKey?: string;
  text: string;
}

/** What silences read of an incident (its rule's head and label, its alert's key, its text). */
export function incidentSubject(incident: Pick<Incident, 'head' | 'label' | 'alertKey' | 'text'>): SilenceSubject {
  return { head: incident.head, label: incident.label, keys: incident.alertKey ? [incident.alertKey] : [], textKey: normalisedTextKey(incident.text), text: incident.text };
}

/** Longest silence: a typo (`2000h`) must not silence an alert for months. */
export const MAX_SILENCE_MS = 90 * 24 * 3600_000;
const MIN_SILENCE_MS = 60_000;

/**
 * A silence's length as people type it: `30m`, `2h`, `1d`, `90s`, `1h30m`, `2d12h`, `1w`. Undefined for anything
 * else; the caller says what was expected. At least a minute, at most 90 days.
 */
export function parseSilenceDuration(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  if (!/^(\d+\s*(w|d|h|m|min|mins|s)\s*)+$/.test(trimmed)) return undefined;
  const unit: Record<string, number> = { w: 7 * 86_400_000, d: 86_400_000, h: 3_600_000, m: 60_000, min: 60_000, mins: 60_000, s: 1000 };
  let total = 0;
  for (const [, amount, which] of trimmed.matchAll(/(\d+)\s*(w|d|h|mins|min|m|s)/g)) total += Number(amount) * unit[which];
  return total >= MIN_SILENCE_MS && total <= MAX_SILENCE_MS ? total : undefined;
}

/** What `parseSilenceDuration` takes, for error messages. */
export const DURATION_HINT = "a duration such as 30m, 2h, 1d or 1h30m (1 minute to 90 days)";

/**
 * Read what a silence matches, as written in `/ims silence <what>` or a window's `match`: `[Warn]` (a rule head),
 * `/regex/` or `/regex/i` (on the alert's text, RE2: linear time whatever is typed), `*` (everything), an incident
 * label (one the config defines), else a correlation key.
 */
export function parseMatcher(what: string, labels: ReadonlySet<string>, heads?: ReadonlySet<string>): { matcher: SilenceMatcher } | { problem: string } {
  const text = what.trim();
  if (!text) return { problem: 'expected what to silence: a rule head such as [Warn], an incident label, a correlation key or /regex/' };
  if (text === '*' || text.toLowerCase() === 'everything') return { matcher: { kind: 'everything' } };
  if (/^\[[^\]]+\]$/.test(text)) {
    // A head no rule has would silence nothing, quietly: refused, with the heads there are.
    if (heads && !heads.has(text)) {
      const same = [...heads].find((h) => h.toLowerCase() === text.toLowerCase());
      if (same) return { matcher: { kind: 'head', head: same } };
      return { problem: `no rule has the head ${text}${didYouMean(text, [...heads])}; the heads are ${[...heads].join(', ') || 'none'}` };
    }
    return { matcher: { kind: 'head', head: text } };
  }
  const regex = /^\/(.+)\/([a-z]*)$/s.exec(text);
  if (regex) {
    const [, source, flags] = regex;
    if (flags && flags !== 'i') return { problem: `the only flag a silence's /regex/ takes is i (ignore case), found '${flags}'` };
    try {
      translateRegex(flags ? `(?i)${source}` : source);
    } catch (error) {
      return { problem: `the regex ${text} is refused: ${(error as Error).message}` };
    }
    return { matcher: { kind: 'regex', source, ignoreCase: flags === 'i' } };
  }
  const label = labels.has(text) ? text : [...labels].find((l) => l.toLowerCase() === text.toLowerCase());
  if (label) return { matcher: { kind: 'label', label } };
  return { matcher: { kind: 'key', key: text } };
}

/** How a matcher reads in Slack and logs (plain text: callers escape it). */
export function describeMatcher(matcher: SilenceMatcher): string {
  switch (matcher.kind) {
    case 'everything': return 'every alert';
    case 'head': return `rule ${matcher.head}`;
    case 'label': return `label ${matcher.label}`;
    case 'key': return `key ${matcher.key}`;
    case 'text': return `alerts like “${matcher.title.slice(0, 80)}”`;
    case 'regex': return `/${matcher.source}/${matcher.ignoreCase ? 'i' : ''}`;
  }
}

const compiledRegexes = new Map<string, RegExp>();

/** Whether a silence's matcher takes this alert. A regex that cannot be compiled any more matches nothing. */
export function silenceMatches(matcher: SilenceMatcher, subject: SilenceSubject): boolean {
  switch (matcher.kind) {
    case 'everything': return true;
    case 'head': return subject.head === matcher.head;
    case 'label': return subject.label === matcher.label;
    case 'key': return subject.keys.includes(matcher.key);
    case 'text': return subject.textKey === matcher.key || subject.keys.includes(matcher.key);
    case 'regex': {
      const id = `${matcher.ignoreCase ? 'i' : ''}/${matcher.source}`;
      let regex = compiledRegexes.get(id);
      if (!regex) {
        try { regex = translateRegex(matcher.ignoreCase ? `(?i)${matcher.source}` : matcher.source); } catch { return false; }
        if (compiledRegexes.size > 500) compiledRegexes.clear();
        compiledRegexes.set(id, regex);
      }
      return regex.test(subject.text);
    }
  }
}

/** A maintenance window, compiled. */
export interface CompiledWindow {
  name: string;
  what: string;
  matcher: SilenceMatcher;
  reason: string;
  /** Recurring: a cron expression and how long each opening lasts. */
  schedule?: string;
  durationMs?: number;
  /** Fixed: epoch ms. */
  from?: number;
  to?: number;
}

/** One opening of a maintenance window. `key` names it for good (the window and its start), so it is kept once. */
export interface WindowOpening {
  key: string;
  window: CompiledWindow;
  startsAt: number;
  endsAt: number;
}

/** Who may do what (see `PermissionsConfig`), defaults filled in. */
export type Permissions = Required<PermissionsConfig>;

/** The interactive layer's settings: buttons, who is an admin, who may do what, maintenance windows. */
export interface InteractiveSettings {
  buttons: boolean;
  /** As written: user IDs, names, user groups (`S…`, `@handle`); resolved when someone acts. */
  admins: string[];
  permissions: Permissions;
  maintenance: CompiledWindow[];
  timezone?: string;
}

const PERMISSION_CHOICES: Record<keyof PermissionsConfig, readonly string[]> = {
  acknowledge: ['everyone', 'admins'],
  resolve: ['everyone', 'own', 'admins'],
  silence: ['everyone', 'admins'],
};

/** Check and compile `buttons`, `admins`, `permissions` and `maintenance`; problems as `[place, message]`. */
export function compileInteractive(config: Pick<Config, 'buttons' | 'admins' | 'permissions' | 'maintenance'>, labels: ReadonlySet<string>, timezone: string | undefined, heads?: ReadonlySet<string>):
  { settings: InteractiveSettings; problems: [string, string][] } {
  const problems: [string, string][] = [];
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (config.buttons !== undefined && typeof config.buttons !== 'boolean') problems.push(['buttons', `expected true or false, found ${describeValue(config.buttons)}`]);
  const admins = config.admins ?? [];
  if (!Array.isArray(admins) || !admins.every((a) => typeof a === 'string' && a.trim())) {
    problems.push(['admins', `expected a list of user IDs or names and user groups (S… or @handle), found ${describeValue(config.admins)}`]);
  }
  const permissions: Permissions = { acknowledge: 'everyone', resolve: 'own', silence: 'admins' };
  if (config.permissions !== undefined && !isObject(config.permissions)) {
    problems.push(['permissions', `expected { acknowledge?, resolve?, silence? }, found ${describeValue(config.permissions)}`]);
  } else {
    for (const [key, value] of Object.entries(config.permissions ?? {})) {
      const choices = PERMISSION_CHOICES[key as keyof PermissionsConfig];
      if (!choices) { problems.push([`permissions.${key}`, `unknown key '${key}'${didYouMean(key, Object.keys(PERMISSION_CHOICES))}; expected acknowledge, resolve or silence`]); continue; }
      if (!choices.includes(value as string)) { problems.push([`permissions.${key}`, `expected ${choices.map((c) => `'${c}'`).join(' or ')}, found ${describeValue(value)}`]); continue; }
      (permissions as Record<string, string>)[key] = value as string;
    }
  }
  const maintenance: CompiledWindow[] = [];
  if (config.maintenance !== undefined && !Array.isArray(config.maintenance)) {
    problems.push(['maintenance', `expected a list of { name, match?, schedule + duration | from + to, reason? }, found ${describeValue(config.maintenance)}`]);
  }
  const names = new Set<string>();
  (Array.isArray(config.maintenance) ? config.maintenance : []).forEach((window: unknown, index) => {
    const at = `maintenance[${index}]`;
    if (!isObject(window)) { problems.push([at, `expected { name, match?, schedule + duration | from + to, reason? }, found ${describeValue(window)}`]); return; }
    for (const key of Object.keys(window)) {
      const known = ['name', 'match', 'schedule', 'duration', 'from', 'to', 'reason'];
      if (!known.includes(key)) problems.push([`${at}.${key}`, `unknown key '${key}'${didYouMean(key, known)}; expected one of ${known.join(', ')}`]);
    }
    const name = typeof window.name === 'string' ? window.name.trim() : undefined;
    if (name && names.has(name)) { problems.push([`${at}.name`, `the name '${name}' is used by an earlier window; each needs its own`]); return; }
    if (name) names.add(name);
    const compiled = compileWindow(window, at, labels, timezone, problems, heads);
    if (compiled) maintenance.push(compiled);
  });
  return { settings: { buttons: config.buttons !== false, admins: Array.isArray(admins) ? admins.map((a) => String(a).trim()) : [], permissions, maintenance, timezone }, problems };
}

function compileWindow(window: Record<string, unknown>, at: string, labels: ReadonlySet<string>, timezone: string | undefined, problems: [string, string][],
  heads?: ReadonlySet<string>): CompiledWindow | undefined {
  const before = problems.length;
  const name = typeof window.name === 'string' && window.name.trim() ? window.name.trim() : undefined;
  if (!name) problems.push([`${at}.name`, `expected a name for the window (shown in reports and /ims silences), found ${describeValue(window.name)}`]);
  const what = window.match === undefined ? '*' : String(window.match);
  const parsed = typeof window.match === 'string' || window.match === undefined ? parseMatcher(what, labels, heads) : { problem: `expected what to silence as a string ([Warn], a label, a key or /regex/), found ${describeValue(window.match)}` };
  if ('problem' in parsed) problems.push([`${at}.match`, parsed.problem]);
  const reason = window.reason === undefined ? '' : typeof window.reason === 'string' ? window.reason : (problems.push([`${at}.reason`, `expected text, found ${describeValue(window.reason)}`]), '');
  const recurring = window.schedule !== undefined || window.duration !== undefined;
  const fixed = window.from !== undefined || window.to !== undefined;
  let schedule: string | undefined;
  let durationMs: number | undefined;
  let from: number | undefined;
  let to: number | undefined;
  if (recurring === fixed) {
    problems.push([at, `expected either schedule + duration (a cron expression such as '0 2 * * 6' and '2h') or from + to (such as '2026-12-24 18:00'), found ${recurring ? 'both' : 'neither'}`]);
  } else if (recurring) {
    if (typeof window.schedule !== 'string') problems.push([`${at}.schedule`, `expected a cron expression such as '0 2 * * 6', found ${describeValue(window.schedule)}`]);
    else {
      const check = cron().validateCronExpression(window.schedule);
      if (!check.valid) problems.push([`${at}.schedule`, `expected a cron expression such as '0 2 * * 6', found '${window.schedule}': ${check.error?.message ?? 'invalid'}`]);
      else schedule = window.schedule;
    }
    durationMs = parseDuration(window.duration);
    if (durationMs === undefined || durationMs <= 0) problems.push([`${at}.duration`, `expected how long each opening lasts, such as '2h' or '30m', found ${describeValue(window.duration)}`]);
  } else {
    from = localInstant(window.from, timezone);
    to = localInstant(window.to, timezone);
    if (from === undefined) problems.push([`${at}.from`, `expected a date and time such as '2026-12-24 18:00' (in timezone ${timezone ?? 'of the process'}) or an ISO instant, found ${describeValue(window.from)}`]);
    if (to === undefined) problems.push([`${at}.to`, `expected a date and time such as '2026-12-25 08:00' (in timezone ${timezone ?? 'of the process'}) or an ISO instant, found ${describeValue(window.to)}`]);
    if (from !== undefined && to !== undefined && to <= from) problems.push([`${at}.to`, `the window ends (${String(window.to)}) before it starts (${String(window.from)})`]);
  }
  if (problems.length > before || !name || 'problem' in parsed) return undefined;
  return { name, what, matcher: parsed.matcher, reason, schedule, durationMs, from, to };
}

/**
 * `2026-12-24 18:00` (or with `T`, with seconds) as a local time in `timezone`, or an ISO instant with its offset
 * or `Z`: epoch ms. Undefined when it is neither.
 */
export function localInstant(value: unknown, timezone: string | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const local = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(value.trim());
  if (!local) {
    if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(value.trim())) return undefined;
    const instant = Date.parse(value);
    return Number.isNaN(instant) ? undefined : instant;
  }
  const [, y, mo, d, h = '0', mi = '0', s = '0'] = local;
  const wall = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  if (Number.isNaN(wall) || new Date(wall).getUTCDate() !== Number(d)) return undefined;
  // The zone's offset at the instant itself: guessed from the wall time, then corrected once (DST edges).
  let instant = wall - offsetAt(wall, timezone);
  instant = wall - offsetAt(instant, timezone);
  return instant;
}

function offsetAt(epochMs: number, timezone: string | undefined): number {
  const format = new Intl.DateTimeFormat('en-US', { timeZone: timezone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
  const p: Record<string, number> = {};
  for (const part of format.formatToParts(new Date(epochMs))) p[part.type] = Number(part.value);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(epochMs / 1000) * 1000;
}

/** The openings of `windows` that are open at `now` (a recurring window's latest opening, if it still lasts). */
export function openWindows(windows: readonly CompiledWindow[], now: number, timezone: string | undefined): WindowOpening[] {
  const open: WindowOpening[] = [];
  for (const window of windows) {
    if (window.from !== undefined && window.to !== undefined) {
      if (window.from <= now && now < window.to) open.push({ key: `${window.name}@${window.from}`, window, startsAt: window.from, endsAt: window.to });
      continue;
    }
    if (!window.schedule || !window.durationMs) continue;
    // The first opening after (now - duration) that has begun by now is the one still open.
    const { CronTime } = cron();
    const next = new CronTime(window.schedule, timezone).getNextDateFrom(new Date(now - window.durationMs), timezone);
    const startsAt = next.toMillis();
    if (startsAt <= now) open.push({ key: `${window.name}@${startsAt}`, window, startsAt, endsAt: startsAt + window.durationMs });
  }
  return open;
}

/** The next opening of each window after `now` (for the App Home and /ims silences), soonest first. */
export function nextOpenings(windows: readonly CompiledWindow[], now: number, timezone: string | undefined): WindowOpening[] {
  const next: WindowOpening[] = [];
  for (const window of windows) {
    if (window.from !== undefined && window.to !== undefined) {
      if (window.from > now) next.push({ key: `${window.name}@${window.from}`, window, startsAt: window.from, endsAt: window.to });
      continue;
    }
    if (!window.schedule || !window.durationMs) continue;
    const { CronTime } = cron();
    const startsAt = new CronTime(window.schedule, timezone).getNextDateFrom(new Date(now), timezone).toMillis();
    next.push({ key: `${window.name}@${startsAt}`, window, startsAt, endsAt: startsAt + window.durationMs });
  }
  return next.sort((a, b) => a.startsAt - b.startsAt);
}

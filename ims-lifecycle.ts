/**
 * Alert lifecycles, read from the Slack messages alone. `identify` gives an accepted message its alerts (a
 * correlation key and a state each: a built-in recogniser's reading, else the rule's `key` template, else the
 * normalised text); `plan` turns them, with what is known of each key, into one step of the lifecycle: open an
 * incident, fold a repeat into it, resolve it on recovery, reopen it, or only mark the message seen; and says
 * when a key starts or stops flapping. Pure: the runtime keeps the ledger in its state, `--replay` in memory,
 * and both reach the same lifecycle for the same messages, since every window is measured on the messages' `ts`.
 */
import type { Duration, LifecycleConfig, RuleMatch } from './ims.ts';
import { RECOGNISERS, normalisedTextKey, recognise, type AlertIdentity, type RecognisableMessage, type Recogniser } from './ims-recognisers.ts';
import { describeValue, didYouMean } from './ims-plugin-kit.ts';
import { HOUR, parseDuration } from './ims-time.ts';

/** The lifecycle settings a config compiles to. */
export interface LifecycleSettings {
  enabled: boolean;
  repeatNoteMs: number;
  reopenMs: number;
  pageOnReopen: boolean;
  /** null: flapping detection off. */
  flapping: { changes: number; withinMs: number; stableMs: number } | null;
  recognisers: readonly Recogniser[];
}

const DEFAULTS = { repeatNoteEvery: 30 * 60_000, reopenWithin: HOUR, changes: 4, within: HOUR, stableFor: 30 * 60_000 };
const KEYS = ['enabled', 'repeatNoteEvery', 'reopenWithin', 'pageOnReopen', 'flapping', 'recognisers'];

/**
 * Check and compile `lifecycle`; problems are `[path, what is wrong]` pairs for the config's place. `legacy`: the
 * config was read from IMS.ini, where lifecycles are off unless the config turns them on.
 */
export function compileLifecycle(value: LifecycleConfig | undefined, legacy: boolean): { settings: LifecycleSettings; problems: [string, string][] } {
  const problems: [string, string][] = [];
  const given = (value ?? {}) as Record<string, unknown>;
  if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    problems.push(['lifecycle', `expected { enabled?, repeatNoteEvery?, reopenWithin?, pageOnReopen?, flapping?, recognisers? }, found ${describeValue(value)}`]);
  }
  for (const key of Object.keys(given)) if (!KEYS.includes(key)) problems.push([`lifecycle.${key}`, `unknown key '${key}'${didYouMean(key, KEYS)}; expected one of ${KEYS.join(', ')}`]);
  const bool = (key: string): boolean | undefined => {
    const v = given[key];
    if (v !== undefined && typeof v !== 'boolean') problems.push([`lifecycle.${key}`, `expected true or false, found ${describeValue(v)}`]);
    return typeof v === 'boolean' ? v : undefined;
  };
  const span = (at: string, v: unknown, fallback: number, zeroAllowed = false): number => {
    if (v === undefined) return fallback;
    const ms = parseDuration(v as Duration);
    if (ms === undefined || ms < 0 || (!zeroAllowed && ms === 0)) {
      problems.push([at, `expected a duration such as '30m', '1h' or milliseconds${zeroAllowed ? ' (0 for none)' : ''}, found ${describeValue(v)}`]);
      return fallback;
    }
    return ms;
  };
  let flapping: LifecycleSettings['flapping'] = { changes: DEFAULTS.changes, withinMs: DEFAULTS.within, stableMs: DEFAULTS.stableFor };
  const f = given.flapping;
  if (f === false) flapping = null;
  else if (f !== undefined) {
    if (typeof f !== 'object' || f === null || Array.isArray(f)) problems.push(['lifecycle.flapping', `expected false or { changes?, within?, stableFor? }, found ${describeValue(f)}`]);
    else {
      const o = f as Record<string, unknown>;
      for (const key of Object.keys(o)) if (!['changes', 'within', 'stableFor'].includes(key)) problems.push([`lifecycle.flapping.${key}`, `unknown key '${key}'; expected changes, within or stableFor`]);
      if (o.changes !== undefined && !(Number.isInteger(o.changes) && (o.changes as number) >= 2)) problems.push(['lifecycle.flapping.changes', `expected a whole number of state changes, at least 2, found ${describeValue(o.changes)}`]);
      flapping = {
        changes: typeof o.changes === 'number' ? o.changes : DEFAULTS.changes,
        withinMs: span('lifecycle.flapping.within', o.within, DEFAULTS.within),
        stableMs: span('lifecycle.flapping.stableFor', o.stableFor, DEFAULTS.stableFor),
      };
    }
  }
  let recognisers: readonly Recogniser[] = RECOGNISERS;
  const r = given.recognisers;
  if (r === false) recognisers = [];
  else if (Array.isArray(r)) {
    const names = RECOGNISERS.map((x) => x.name);
    for (const name of r) if (typeof name !== 'string' || !names.includes(name)) problems.push(['lifecycle.recognisers', `unknown recogniser ${describeValue(name)}${typeof name === 'string' ? didYouMean(name, names) : ''}; the built-in ones are ${names.join(', ')}`]);
    recognisers = RECOGNISERS.filter((x) => r.includes(x.name));
  } else if (r !== undefined && r !== true) problems.push(['lifecycle.recognisers', `expected true, false or a list of recogniser names, found ${describeValue(r)}`]);
  return {
    problems,
    settings: {
      enabled: bool('enabled') ?? !legacy,
      repeatNoteMs: span('lifecycle.repeatNoteEvery', given.repeatNoteEvery, DEFAULTS.repeatNoteEvery, true),
      reopenMs: span('lifecycle.reopenWithin', given.reopenWithin, DEFAULTS.reopenWithin, true),
      pageOnReopen: bool('pageOnReopen') ?? false,
      flapping,
      recognisers,
    },
  };
}

/** A rule's `key` template over its named groups: `'{host}/{service}'`; the names it uses that the rule's regex lacks. */
export function templateProblem(template: unknown, groupNames: readonly string[]): string | undefined {
  if (typeof template !== 'string' || !template.trim()) return `expected a key template such as '{host}/{service}', found ${describeValue(template)}`;
  const missing = [...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).filter((name) => !groupNames.includes(name));
  if (missing.length) return `names ${missing.map((n) => `{${n}}`).join(', ')}, which the rule's match does not capture; capture it with (?P<${missing[0]}>…)`;
  return undefined;
}

function fillTemplate(template: string, groups: Record<string, string | undefined>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => (groups[name] ?? '').trim().toLowerCase());
}

/** How IMS reads one accepted message's alerts. */
export interface Identification {
  /** The recogniser that understood the message, `rule` (its key template) or `text` (the normalised text). */
  by: string;
  alerts: AlertIdentity[];
}

/**
 * The alerts a message is about. A built-in recogniser's reading comes first (`settings.recognisers`); else a
 * matched rule's `key` template (`resolves` marks a recovery), else the normalised text. Undefined when the
 * message may not change an alert: a person quoting an alert (`poster: 'person'` and a recogniser understands
 * it), or an edit or thread reply no recogniser reads as a change of state.
 */
export function identify(message: RecognisableMessage, settings: LifecycleSettings, match: RuleMatch | undefined, poster: 'integration' | 'person'): Identification | 'quoted' | undefined {
  const found = recognise(message, settings.recognisers);
  if (found) return poster === 'person' ? 'quoted' : { by: found.recogniser, alerts: found.alerts };
  if (poster === 'person' && quotesAnAlert(message, settings.recognisers)) return 'quoted';
  // An edit or a reply that no recogniser understands is talk about an alert, not a new one.
  if (message.edited || message.threadOf) return undefined;
  if (!match) return undefined;
  const rule = match.rule;
  const state = rule.resolves?.test(message.text) ? 'resolved' : 'firing';
  const title = message.text.split('\n').find((line) => line.trim())?.trim().slice(0, 150) ?? '';
  if (rule.key) return { by: 'rule', alerts: [{ source: 'rule', key: `rule ${rule.number}:${fillTemplate(rule.key, match.groups)}`, state, title }] };
  const text = state === 'resolved' ? message.text.replace(rule.resolves!, '') : message.text;
  return { by: 'text', alerts: [{ source: 'text', key: normalisedTextKey(text), state, title }] };
}

/**
 * Whether a person's message carries an integration's alert inside what they wrote: quoted (`> …`), or pasted
 * under a line or two of their own ("is this still a thing?"). Read as the integration's alert, it is a quote.
 */
function quotesAnAlert(message: RecognisableMessage, recognisers: readonly Recogniser[]): boolean {
  const lines = message.text.split('\n');
  const unquoted = lines.filter((line) => /^\s*(>|&gt;)/.test(line)).map((line) => line.replace(/^\s*(>|&gt;)\s?/, ''));
  const candidates = [unquoted.join('\n'), ...[1, 2, 3].map((skip) => lines.slice(skip).join('\n'))].filter((text) => text.trim());
  // The text as the integration would have posted it: the person's own event fields are not the integration's.
  return candidates.some((text) => recognise({ event: { ...message.event, text, attachments: undefined, blocks: undefined, user: undefined, bot_id: 'B0QUOTED', subtype: 'bot_message' }, text }, recognisers));
}

// ─── The lifecycle of a key ──────────────────────────────────────────────────────────────────────

/** What is known of one correlation key. */
export interface KeyRecord {
  key: string;
  incidentId: number;
  state: 'firing' | 'resolved';
  /** The `ts` of the last state change. */
  changedTs: string;
  /** `ts` of recent state changes (within the flapping window), oldest first. */
  changes: string[];
  /** The `ts` of the last message about it. */
  lastSeenTs: string;
  title: string;
}

/** What is known of an incident the keys point at. */
export interface IncidentStanding {
  id: number;
  /** Resolved (by a recovery or a person), at this time (epoch ms). */
  resolvedAt?: number;
  flapping: boolean;
  /** The `ts` of the last thread note about repeats (or of the post). */
  lastNoteTs?: string;
}

/** One step of a lifecycle, for one message. */
export type Step =
  | { kind: 'open'; alerts: AlertIdentity[] }
  | { kind: 'repeat'; incidentId: number; alerts: AlertIdentity[]; note: boolean }
  | { kind: 'recover'; incidentId: number; alerts: AlertIdentity[]; resolves: boolean }
  | { kind: 'reopen'; incidentId: number; alerts: AlertIdentity[]; page: boolean }
  | { kind: 'acknowledge'; incidentId: number; alerts: AlertIdentity[] }
  | { kind: 'seen'; why: string; incidentId?: number };

export interface Plan {
  step: Step;
  /** The key records as they are after this message (to be stored with the step). */
  records: KeyRecord[];
  /** The incident starts or stops flapping with this message. */
  flapping?: 'start' | 'stop';
}

const secondsOf = (ts: string) => Number.parseFloat(ts) * 1000;

/**
 * The step a message's alerts take, given the records of their keys (`known`) and the incidents those point at
 * (`standing`). Keys of one message belong to one incident: a grouped notification opens one incident for its
 * firing members, and the incident is resolved when every member has recovered.
 */
export function plan(alerts: AlertIdentity[], ts: string, known: (key: string) => KeyRecord | undefined,
  standing: (id: number) => IncidentStanding | undefined, members: (id: number) => KeyRecord[], settings: LifecycleSettings): Plan {
  const at = secondsOf(ts);
  // A message older than its alert's last change of state (one retried late, a catch-up behind a live one) says
  // nothing new about it: a repeat that failed and is retried after the recovery must not reopen the incident.
  const stale = (a: AlertIdentity) => { const r = known(a.key); return !!r && at < secondsOf(r.changedTs); };
  const current = alerts.filter((a) => !stale(a));
  if (alerts.length && !current.length) return { step: { kind: 'seen', why: 'older than its alert\'s last change' }, records: [] };
  alerts = current;
  const stateful = alerts.filter((a) => a.state !== 'event');
  const notices = alerts.filter((a) => a.state === 'event' && a.notice);
  // The incident this message is about: the newest one any of its keys points at, if still open or recently resolved.
  const candidates = [...stateful, ...notices].map((a) => known(a.key)).filter((r): r is KeyRecord => !!r)
    .map((r) => standing(r.incidentId)).filter((s): s is IncidentStanding => !!s).sort((a, b) => b.id - a.id);
  const incident = candidates[0];
  const open = incident && incident.resolvedAt === undefined;
  const reopenable = incident && incident.resolvedAt !== undefined && at - resolvedAt(incident, members(incident.id)) <= settings.reopenMs;

  if (!stateful.length) {
    if (open && notices.some((n) => n.notice === 'acknowledged')) return { step: { kind: 'acknowledge', incidentId: incident.id, alerts: notices }, records: [] };
    return { step: { kind: 'seen', why: notices.length ? `${notices[0].notice} notice` : 'a one-off event' }, records: [] };
  }
  const firing = stateful.filter((a) => a.state === 'firing');
  const resolving = stateful.filter((a) => a.state === 'resolved');
  if (!incident || (!open && !reopenable)) {
    if (!firing.length) return { step: { kind: 'seen', why: 'a recovery of nothing open' }, records: [] };
    // A new incident: its id is not known yet (the runtime records the keys once it has one).
    return { step: { kind: 'open', alerts: firing }, records: firing.map((a) => ({ key: a.key, incidentId: 0, state: 'firing', changedTs: ts, changes: [ts], lastSeenTs: ts, title: a.title })) };
  }
  const before = members(incident.id);
  const records = new Map(before.map((r) => [r.key, { ...r }]));
  const windowStart = settings.flapping ? at - settings.flapping.withinMs : Infinity;
  let changed = 0;
  for (const alert of stateful) {
    const previous = records.get(alert.key);
    const state = alert.state as 'firing' | 'resolved';
    if (!previous) {
      if (state === 'resolved') continue; // a member that never fired here
      records.set(alert.key, { key: alert.key, incidentId: incident.id, state, changedTs: ts, changes: [ts], lastSeenTs: ts, title: alert.title });
      changed++;
      continue;
    }
    const flips = previous.state !== state;
    if (flips) changed++;
    records.set(alert.key, {
      ...previous, state, lastSeenTs: ts, title: alert.title || previous.title,
      changedTs: flips ? ts : previous.changedTs,
      changes: (flips ? [...previous.changes, ts] : previous.changes).filter((c) => secondsOf(c) >= windowStart),
    });
  }
  const after = [...records.values()];
  const touched = after.filter((r) => stateful.some((a) => a.key === r.key));
  const allResolved = after.every((r) => r.state === 'resolved');
  const flapping = flappingChange(incident, before, after, at, settings);
  // Calm again: what it did before no longer counts towards flapping (else its next change starts it once more).
  if (flapping === 'stop') return stepWith(after.map((r) => ({ ...r, changes: r.changedTs === ts ? [ts] : [] })));
  return stepWith(touched);
  function stepWith(records: KeyRecord[]): Plan {
    if (open) {
      if (firing.length && !resolving.length || (!allResolved && changed === 0)) {
        const note = settings.repeatNoteMs > 0 && (!incident.lastNoteTs || at - secondsOf(incident.lastNoteTs) >= settings.repeatNoteMs);
        return { step: { kind: 'repeat', incidentId: incident.id, alerts: stateful, note }, records, flapping };
      }
      return { step: { kind: 'recover', incidentId: incident.id, alerts: stateful, resolves: allResolved }, records, flapping };
    }
    // Resolved, within the reopen window.
    if (!firing.length) return { step: { kind: 'seen', why: 'a recovery of an incident already resolved', incidentId: incident.id }, records, flapping };
    const calm = flapping === 'start' || (incident.flapping && flapping !== 'stop');
    return { step: { kind: 'reopen', incidentId: incident.id, alerts: stateful, page: settings.pageOnReopen && !calm }, records, flapping };
  }
}

/**
 * When a resolved incident was resolved, on the alerts' clock: its recovery's `ts` when every key recovered (the
 * incident's own time, a catch-up's or a replay's, may differ), else when a person resolved it.
 */
function resolvedAt(incident: IncidentStanding, keys: KeyRecord[]): number {
  if (keys.length && keys.every((r) => r.state === 'resolved')) return Math.max(...keys.map((r) => secondsOf(r.changedTs)));
  return incident.resolvedAt ?? 0;
}

/**
 * Whether the incident starts flapping (its keys changed state more than allowed within the window, this message
 * included) or stops (no change for `stableFor` before this message).
 */
function flappingChange(incident: IncidentStanding, before: KeyRecord[], after: KeyRecord[], at: number, settings: LifecycleSettings): 'start' | 'stop' | undefined {
  const rule = settings.flapping;
  if (!rule) return undefined;
  const recent = after.reduce((n, r) => n + r.changes.filter((c) => secondsOf(c) >= at - rule.withinMs).length, 0);
  if (!incident.flapping) return recent > rule.changes ? 'start' : undefined;
  const lastChange = Math.max(...before.map((r) => secondsOf(r.changedTs)));
  return at - lastChange >= rule.stableMs ? 'stop' : undefined;
}

// ─── In memory, for --replay ─────────────────────────────────────────────────────────────────────

/** What a replay's lifecycle came to for one key. */
export interface KeyTally {
  key: string;
  title: string;
  fires: number;
  repeats: number;
  recoveries: number;
  reopenings: number;
  flapped: boolean;
}

/**
 * The lifecycle kept in memory: what the runtime keeps in its state, for `--replay` (and tests). Steps are planned
 * exactly as the runtime plans them; opening an incident here only numbers it.
 */
export class MemoryLedger {
  private readonly keys = new Map<string, KeyRecord>();
  private readonly incidents = new Map<number, IncidentStanding & { lastSeenTs?: string }>();
  private nextId = 1;
  readonly tallies = new Map<string, KeyTally>();

  constructor(private readonly settings: LifecycleSettings) {}

  /** Plan and apply the step of one message's alerts; `opens` says whether a rule would open an incident for it. */
  step(alerts: AlertIdentity[], ts: string, opens: boolean): Plan & { incidentId?: number } {
    const members = (id: number) => [...this.keys.values()].filter((r) => r.incidentId === id);
    const planned = plan(alerts, ts, (key) => this.keys.get(key), (id) => this.incidents.get(id), members, this.settings);
    const { step } = planned;
    let incidentId: number | undefined;
    if (step.kind === 'open') {
      if (!opens) return planned;
      incidentId = this.nextId++;
      this.incidents.set(incidentId, { id: incidentId, flapping: false });
    } else if (step.kind !== 'seen') {
      incidentId = step.incidentId;
      const incident = this.incidents.get(incidentId)!;
      if (step.kind === 'repeat' && step.note) incident.lastNoteTs = ts;
      if (step.kind === 'recover' && step.resolves) incident.resolvedAt = secondsOf(ts);
      if (step.kind === 'reopen') incident.resolvedAt = undefined;
      if (planned.flapping) incident.flapping = planned.flapping === 'start';
    }
    for (const record of planned.records) this.keys.set(record.key, { ...record, incidentId: incidentId ?? record.incidentId });
    for (const alert of alerts.filter((a) => a.state !== 'event')) {
      const tally = this.tallies.get(alert.key) ?? { key: alert.key, title: alert.title, fires: 0, repeats: 0, recoveries: 0, reopenings: 0, flapped: false };
      if (alert.state === 'firing') tally.fires++;
      if (alert.state === 'resolved') tally.recoveries++;
      if (step.kind === 'repeat' && alert.state === 'firing') tally.repeats++;
      if (step.kind === 'reopen' && alert.state === 'firing') tally.reopenings++;
      if (incidentId !== undefined && this.incidents.get(incidentId)?.flapping) tally.flapped = true;
      this.tallies.set(alert.key, tally);
    }
    return { ...planned, incidentId };
  }

  /** Incidents still open: not resolved by a recovery. */
  openIncidents(): number {
    return [...this.incidents.values()].filter((i) => i.resolvedAt === undefined).length;
  }

  /** Incidents opened. */
  opened(): number {
    return this.nextId - 1;
  }
}

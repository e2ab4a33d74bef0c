/**
 * IMS's durable state: what makes IMS safe to restart. Processed events and messages (de-duplication),
 * incidents and their lifecycle, the last processed `ts` per watched channel (catch-up), reminder hours
 * already posted, the channels plugins made for themselves, the plugins' store and their outbox.
 *
 * The seam. `StateStore` is every operation the runtime performs on its state; no SQL and no database
 * handle leave this module. `State` implements it on one SQLite file (better-sqlite3, WAL) and answers in
 * the same turn (`StateStore<'sync'>`). PostgreSQL (`ims-state-pg.ts`) answers in a later turn
 * (`StateStore<'async'>`: every answer a promise) and implements the same operations with the same names,
 * inputs and meaning. The runtime works on `Store`, which is either: `PgState` itself, or `State` through
 * `promisedState` (its answers already settled).
 * Every multi-row change is one transaction, so a crash leaves either all of it or none.
 *
 * Batching, and how it survives an asynchronous backend. The intake takes acknowledged events in slices
 * of at most 2 ms and runs each slice inside `withinOneCommit`: the slice's event-ID records, message
 * claims and cursor moves are one commit (one fsync for a slice of a burst, not one per message; a crash
 * before it loses the slice's claims and its cursor moves together, so its messages are read back from
 * history). An asynchronous backend keeps one commit per slice and makes it one round trip: the calls made
 * while the slice's work runs are not sent one by one but gathered, and when the work returns they go
 * together as one pipelined transaction (`BEGIN; …; COMMIT`); each call's promise settles with its own
 * answer once the commit is acknowledged. Nothing in a slice waits for another answer of the same slice,
 * because every operation is one statement that returns its own answer: a de-duplication record or a
 * claim is `INSERT … ON CONFLICT DO NOTHING RETURNING …` (a row back: new; none: seen before, its status
 * read by the same statement), a cursor moves with `INSERT … ON CONFLICT DO UPDATE … WHERE` the new ts is
 * later, an incident is inserted or found by its source in one statement. The runtime's side of that
 * contract: a message's work issues its claim before its first await (it does: decide, then claim), and
 * the intake hands each event its de-duplication answer as a promise instead of branching on it (a
 * message's claim is its own de-duplication; a reaction is recorded once its event's answer says new). A
 * slice then costs one round trip, during which new frames are still acknowledged and gathered for the
 * next slice; the next slice is sent when the answer is back, so order per channel holds. Calls made
 * outside a slice (finishing a message after its post, the outbox worker) go on their own, as here.
 *
 * The schema is versioned by `PRAGMA user_version` and changed only by appending to `MIGRATIONS`, each step
 * in its own transaction: an existing `ims.db` is upgraded in place when IMS opens it, a crash mid-upgrade
 * leaves the last whole version, and a file a newer IMS has upgraded is refused (`StateVersionError`)
 * rather than misread.
 */
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Incident } from './ims.ts';
import type { KeyRecord } from './ims-lifecycle.ts';
import type { SilenceMatcher } from './ims-silences.ts';

/** Something that happened to an incident: reactions, thread replies, resolution. */
export interface IncidentEvent {
  incidentId: number;
  kind: 'reaction' | 'reply' | 'resolve' | 'reopen' | 'hotline' | 'note' | 'repeat' | 'recovery' | 'acknowledge' | 'flapping' | 'silence';
  user?: string;
  /** Reaction name, reply text, or a note. */
  detail?: string;
  at: number;
}

export interface OutboxItem {
  id: number;
  plugin: string;
  key: string;
  group: string;
  payload: unknown;
  attempts: number;
  nextAt: number;
  lastError?: string;
  createdAt: number;
}

/**
 * What claiming a message found: `'new'` (claimed now), `'pending'` (claimed by an earlier run or delivery
 * and not finished), `'done'` (handled), `'failed'` (Slack refused it for good: never tried again).
 */
export type MessageClaim = 'new' | 'pending' | 'done' | 'failed';

/** Which incidents `listIncidents` returns; every given field must hold. */
export interface IncidentFilter {
  /** Created at or after (epoch ms). */
  since?: number;
  /** Open (true) or resolved (false). */
  open?: boolean;
  /** Posted in this incident channel. */
  channel?: string;
}

/** A message claimed by a run that stopped (or failed on the way) before finishing it. */
export interface PendingMessage {
  channel: string;
  ts: string;
  /** The Slack event as it was claimed. */
  event: Record<string, unknown>;
  /** The instance that claimed it, when several share the state (PostgreSQL). */
  claimedBy?: string;
}

export interface OutboxStats {
  /** Deliveries not yet delivered nor given up. */
  depth: number;
  /** When the oldest of them was queued (epoch ms). */
  oldestAt?: number;
  /** The last error of a delivery still waiting. */
  lastError?: string;
}

/** A silence: from Slack (`/ims silence`, an incident's Silence menu) or a maintenance window's opening. */
export interface Silence {
  id: number;
  /** What it matches, as written (`[Warn]`, a label, a key, `/regex/`, `*`). */
  what: string;
  matcher: SilenceMatcher;
  reason: string;
  /** Who made it: a user ID, or the window's name for a maintenance window. */
  createdBy: string;
  origin: 'slack' | 'maintenance';
  /** A maintenance window's opening (`name@start`): kept once. */
  windowKey?: string;
  /** Made from an incident's post: its summary goes in that incident's thread. */
  incidentId?: number;
  /** Where it was announced and its summary goes (the report channel, or where the command was typed). */
  channel?: string;
  startsAt: number;
  endsAt: number;
  /** Ended early (`/ims unsilence`), and by whom. */
  endedAt?: number;
  endedBy?: string;
  /** Alerts it silenced. */
  silenced: number;
  /** When its summary was posted. */
  summaryAt?: number;
}

/** What `addSilence` records. */
export type NewSilence = Omit<Silence, 'id' | 'silenced' | 'summaryAt' | 'endedAt' | 'endedBy'>;

/** An alert a silence kept quiet. */
export interface SilencedAlert {
  silenceId: number;
  channel: string;
  ts: string;
  key?: string;
  text: string;
  at: number;
  /** The `ts` of its recovery, once one was seen. */
  recoveredTs?: string;
}

/** How a backend answers: in the same turn (SQLite in process) or in a later one (a database server). */
export type StoreMode = 'sync' | 'async';

/** An answer of a `StateStore` in `Mode`: the value itself (`'sync'`) or a promise of it (`'async'`); either, when the mode is not known. */
export type StoreAnswer<T, Mode extends StoreMode> = Mode extends 'sync' ? T : Promise<T>;

/**
 * Every operation the runtime performs on IMS's durable state. `State` (SQLite) implements
 * `StateStore<'sync'>`; an asynchronous backend implements `StateStore<'async'>` with the same meaning, and
 * code written against `StateStore` (either mode) awaits every answer. Times are epoch milliseconds; `now`
 * defaults to the current time.
 */
export interface StateStore<Mode extends StoreMode = StoreMode> {
  /** False once closed: work still running after a stop that gave up on it must not write. */
  readonly isOpen: boolean;

  /**
   * Run `work` with every change it makes in one commit (all or none). In SQLite, one transaction around
   * it. In an asynchronous backend, the calls made while `work` runs are gathered and sent as one
   * transaction in one round trip when it returns (see the module comment). Nested calls join the outer commit.
   */
  withinOneCommit<T>(work: () => StoreAnswer<T, Mode>): StoreAnswer<T, Mode>;

  /** True the first time an event ID is seen (Slack redelivers, and catch-up may read the same event). */
  rememberEvent(eventId: string, now?: number): StoreAnswer<boolean, Mode>;
  /**
   * Claim a message for processing: `'new'` the first time (recorded as pending, with the event, so a crash
   * before it is done is finished at the next start; the channel's cursor moves with it unless
   * `advanceCursor` is false), else what became of it.
   */
  claimMessage(channel: string, ts: string, event: unknown, now?: number, advanceCursor?: boolean): StoreAnswer<MessageClaim, Mode>;
  /** The message is handled: redeliveries and catch-up leave it alone. */
  finishMessage(channel: string, ts: string, now?: number): StoreAnswer<void, Mode>;
  /** A message Slack refused for good: kept (as handled, never retried) so that its redeliveries are not tried again. */
  failMessage(channel: string, ts: string, now?: number): StoreAnswer<void, Mode>;
  /** Messages claimed before `claimedBefore` (default: any time) that are not finished, oldest ts first. */
  pendingMessages(claimedBefore?: number): StoreAnswer<PendingMessage[], Mode>;
  /** Messages Slack refused for good since `since` (epoch ms), oldest ts first: the report lists them. */
  failedMessages(since: number): StoreAnswer<(PendingMessage & { failedAt: number })[], Mode>;

  /** The last processed ts of a watched channel, where its catch-up starts. */
  cursor(channel: string): StoreAnswer<string | undefined, Mode>;
  cursors(): StoreAnswer<Map<string, string>, Mode>;
  /** Move a channel's cursor forward (never back). */
  advanceCursor(channel: string, ts: string): StoreAnswer<void, Mode>;

  /**
   * Record a new incident and finish its message, in one commit; the incident already recorded for the same source, if any.
   * `groups` defaults to `{}`.
   */
  addIncident(incident: NewIncident): StoreAnswer<Incident, Mode>;
  incidentBySource(channel: string, ts: string): StoreAnswer<Incident | undefined, Mode>;
  /** The incident whose repost is this message. */
  incidentByPost(channel: string, ts: string): StoreAnswer<Incident | undefined, Mode>;
  /** Every incident this message is the post of: one for an incident post, each it lists for a digest; oldest first. */
  incidentsByPost(channel: string, ts: string): StoreAnswer<Incident[], Mode>;
  /**
   * A digest post (several incidents listed in one message) and how IMS made it (`text` and `blocks`), to edit it
   * in place; an existing record of the same post is kept.
   */
  addDigest(channel: string, ts: string, post: unknown, now?: number): StoreAnswer<void, Mode>;
  /** The digest post as IMS made it; undefined when the message is no digest. */
  digestPost(channel: string, ts: string): StoreAnswer<unknown, Mode>;
  incidentById(id: number): StoreAnswer<Incident | undefined, Mode>;
  /** Incidents in the order they were created. */
  listIncidents(filter?: IncidentFilter): StoreAnswer<Incident[], Mode>;
  /** How many incidents were opened, how many of them are resolved now, how many are open (for the metrics). */
  incidentCounts(): StoreAnswer<{ opened: number; resolved: number; open: number }, Mode>;
  /** Mark resolved (and record it as an event); false if it already was. */
  resolveIncident(id: number, at: number, by: string): StoreAnswer<boolean, Mode>;
  /** Mark open again (and record it as an event), its acknowledgement cleared; false if it was not resolved. */
  reopenIncident(id: number, at: number, by: string): StoreAnswer<boolean, Mode>;
  addIncidentEvent(event: IncidentEvent): StoreAnswer<void, Mode>;
  /** What is known of a correlation key (its incident, state, recent changes); undefined for a key never seen. */
  keyRecord(key: string): StoreAnswer<KeyRecord | undefined, Mode>;
  /** The keys of an incident (a grouped notification's members), first recorded first. */
  keyRecords(incidentId: number): StoreAnswer<KeyRecord[], Mode>;
  /** Record keys as a lifecycle step left them (new keys, state changes, last seen). */
  saveKeyRecords(records: readonly KeyRecord[]): StoreAnswer<void, Mode>;
  /** A repeat of an open incident at `ts`: counted; `noted` when a thread note about repeats goes out with it. */
  noteRepeat(incidentId: number, ts: string, noted: boolean): StoreAnswer<void, Mode>;
  /** The last message about an incident's alert was at `ts` (a recovery, a reopening). */
  noteSeen(incidentId: number, ts: string): StoreAnswer<void, Mode>;
  setFlapping(incidentId: number, flapping: boolean): StoreAnswer<void, Mode>;
  /** Incidents marked flapping. */
  flappingIncidents(): StoreAnswer<Incident[], Mode>;
  /** The incident's post as IMS made it (`text` and `blocks`, JSON), to edit it in place. */
  setIncidentPost(incidentId: number, post: unknown): StoreAnswer<void, Mode>;
  incidentPost(incidentId: number): StoreAnswer<unknown, Mode>;
  /** An incident's events in the order they happened. */
  incidentEvents(id: number): StoreAnswer<IncidentEvent[], Mode>;

  /**
   * Record the first acknowledgement by a person; false when it already was acknowledged. With `how`, an
   * `acknowledge` event is recorded too (a click, an integration's notice); without, the event that acknowledged it
   * (a reaction, a reply) is recorded already.
   */
  acknowledgeIncident(id: number, at: number, by: string, how?: string): StoreAnswer<boolean, Mode>;

  /** Record a silence; a maintenance window's opening already recorded (same `windowKey`) is returned as it is. */
  addSilence(silence: NewSilence): StoreAnswer<Silence, Mode>;
  silenceById(id: number): StoreAnswer<Silence | undefined, Mode>;
  /** Silences in force at `now` (started, not ended, not expired), oldest first. */
  activeSilences(now: number): StoreAnswer<Silence[], Mode>;
  /** Silences that were (or are) in force at the instant `at`, whether or not they have ended since, oldest first. */
  silencesAt(at: number): StoreAnswer<Silence[], Mode>;
  /** Silences that ended (expired by `now` or ended early) since `since`, newest first. */
  endedSilences(since: number, now: number): StoreAnswer<Silence[], Mode>;
  /** End a silence early; false when it had already ended. */
  endSilence(id: number, at: number, by: string): StoreAnswer<boolean, Mode>;
  /** Silences over by `now` whose summary is not posted yet. */
  silencesToSummarise(now: number): StoreAnswer<Silence[], Mode>;
  /** Its summary is posted (or nothing needed posting). */
  markSilenceSummarised(id: number, at: number): StoreAnswer<void, Mode>;
  /** Count an alert a silence kept quiet (once per message). */
  noteSilenced(alert: Omit<SilencedAlert, 'recoveredTs'>): StoreAnswer<boolean, Mode>;
  /** A recovery of `key` at `ts`: silenced alerts of that key from before it are no longer firing. */
  noteSilencedRecovery(key: string, ts: string): StoreAnswer<void, Mode>;
  silencedAlerts(silenceId: number): StoreAnswer<SilencedAlert[], Mode>;

  /** True the first time a reminder is claimed for this channel and hour. */
  claimReminder(channel: string, hour: string): StoreAnswer<boolean, Mode>;
  /** Give a claimed reminder hour back (its post failed: it is tried again). */
  releaseReminder(channel: string, hour: string): StoreAnswer<void, Mode>;

  getMeta(key: string): StoreAnswer<string | undefined, Mode>;
  setMeta(key: string, value: string): StoreAnswer<void, Mode>;

  /** Mark a channel as a plugin's own (a war room): never read as an alert source. */
  ownChannel(channel: string, plugin: string): StoreAnswer<void, Mode>;
  ownedChannels(): StoreAnswer<Set<string>, Mode>;

  /** A plugin's own durable value (stored as JSON); undefined when none. */
  storeGet(plugin: string, key: string): StoreAnswer<unknown, Mode>;
  /** Set a plugin's value; `undefined` deletes it. */
  storeSet(plugin: string, key: string, value: unknown): StoreAnswer<void, Mode>;

  /** Queue an outbox delivery; false when the key was already queued or delivered. */
  enqueue(plugin: string, key: string, group: string, payload: unknown, now?: number): StoreAnswer<boolean, Mode>;
  /** The head of each group's queue that is due, at most `limit`: deliveries of one group go strictly in order. */
  dueDeliveries(now?: number, limit?: number): StoreAnswer<OutboxItem[], Mode>;
  markDelivered(id: number, now?: number): StoreAnswer<void, Mode>;
  /** A failed attempt: tried again at `nextAt`. */
  markRetry(id: number, nextAt: number, error: string): StoreAnswer<void, Mode>;
  /** Given up: never tried again (its group's next delivery goes). */
  markDead(id: number, error: string): StoreAnswer<void, Mode>;
  outboxStats(): StoreAnswer<OutboxStats, Mode>;

  /** Forget de-duplication records older than `before` (they can no longer be redelivered or caught up). */
  prune(before: number): StoreAnswer<void, Mode>;
  /** Release the store; closing twice is harmless. */
  close(): StoreAnswer<void, Mode>;
}

/** The schema of IMS 2.0 (commit 191051e), before versioning: migration 1, word for word. */
const SCHEMA_2_0 = `
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, received_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
  channel TEXT NOT NULL, ts TEXT NOT NULL, status TEXT NOT NULL, event TEXT NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (channel, ts));
CREATE TABLE IF NOT EXISTS incidents (
  id INTEGER PRIMARY KEY AUTOINCREMENT, source_channel TEXT NOT NULL, source_ts TEXT NOT NULL,
  incident_channel TEXT NOT NULL, incident_ts TEXT NOT NULL, rule_number INTEGER NOT NULL, head TEXT NOT NULL,
  label TEXT NOT NULL, hotline TEXT, text TEXT NOT NULL, poster TEXT NOT NULL, created_at INTEGER NOT NULL,
  resolved_at INTEGER, resolved_by TEXT, permalink TEXT, UNIQUE (source_channel, source_ts));
CREATE INDEX IF NOT EXISTS incidents_by_post ON incidents (incident_channel, incident_ts);
CREATE TABLE IF NOT EXISTS incident_events (
  incident_id INTEGER NOT NULL, kind TEXT NOT NULL, user TEXT, detail TEXT, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS incident_events_by_incident ON incident_events (incident_id, at);
CREATE TABLE IF NOT EXISTS cursors (channel TEXT PRIMARY KEY, last_ts TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reminders (channel TEXT NOT NULL, hour TEXT NOT NULL, PRIMARY KEY (channel, hour));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owned_channels (channel TEXT PRIMARY KEY, plugin TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plugin_store (plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (plugin, key));
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, plugin TEXT NOT NULL, key TEXT NOT NULL, grp TEXT NOT NULL,
  payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, last_error TEXT,
  created_at INTEGER NOT NULL, delivered_at INTEGER, dead INTEGER NOT NULL DEFAULT 0, UNIQUE (plugin, key));
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, dead, grp, id);
`;

/** One step of the schema. Released steps are never edited: a change is a new step at the end. */
interface Migration {
  /** The `user_version` the database has after this step: 1, 2, 3… in order. */
  version: number;
  /** What the step changes and why, for the error when it fails. */
  what: string;
  /** SQL run in the step's transaction. */
  sql: string;
}

/**
 * The schema's history. Step 1 is IMS 2.0's schema; `CREATE … IF NOT EXISTS` makes it a no-op on a
 * database IMS 2.0 made (user_version 0), which it thereby stamps as version 1. The `failed` message
 * status of issue 7 needed no step: `messages.status` is free text.
 */
const MIGRATIONS: readonly Migration[] = [
  { version: 1, what: 'the schema of IMS 2.0', sql: SCHEMA_2_0 },
  // NULL in the rows from before: read as `{}`.
  { version: 2, what: "incidents keep their rule's named groups", sql: 'ALTER TABLE incidents ADD COLUMN groups TEXT' },
  { version: 3, what: 'alert lifecycles: correlation keys, repeats, flapping, posts edited in place', sql: `
    ALTER TABLE incidents ADD COLUMN alert_key TEXT;
    ALTER TABLE incidents ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN last_seen_ts TEXT;
    ALTER TABLE incidents ADD COLUMN last_note_ts TEXT;
    ALTER TABLE incidents ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN post TEXT;
    CREATE TABLE IF NOT EXISTS alert_keys (
      key TEXT PRIMARY KEY, incident_id INTEGER NOT NULL, state TEXT NOT NULL, changed_ts TEXT NOT NULL, changes TEXT NOT NULL,
      last_seen_ts TEXT NOT NULL, title TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS alert_keys_by_incident ON alert_keys (incident_id);` },
  // A digest's incidents are the rows whose incident_ts is the digest's ts; this table says the post is a digest.
  { version: 4, what: 'digest posts: several incidents listed in one message during a storm', sql: `
    CREATE TABLE IF NOT EXISTS digests (
      channel TEXT NOT NULL, ts TEXT NOT NULL, post TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (channel, ts));` },
  { version: 5, what: 'interactive Slack: acknowledgements, silences and maintenance windows', sql: `
    ALTER TABLE incidents ADD COLUMN acknowledged_at INTEGER;
    ALTER TABLE incidents ADD COLUMN acknowledged_by TEXT;
    CREATE TABLE IF NOT EXISTS silences (
      id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT NOT NULL, matcher TEXT NOT NULL, reason TEXT NOT NULL, created_by TEXT NOT NULL,
      origin TEXT NOT NULL, window_key TEXT UNIQUE, incident_id INTEGER, channel TEXT, starts_at INTEGER NOT NULL, ends_at INTEGER NOT NULL,
      ended_at INTEGER, ended_by TEXT, silenced INTEGER NOT NULL DEFAULT 0, summary_at INTEGER);
    CREATE INDEX IF NOT EXISTS silences_by_end ON silences (ends_at);
    CREATE TABLE IF NOT EXISTS silenced_alerts (
      silence_id INTEGER NOT NULL, channel TEXT NOT NULL, ts TEXT NOT NULL, alert_key TEXT, text TEXT NOT NULL, at INTEGER NOT NULL,
      recovered_ts TEXT, PRIMARY KEY (silence_id, channel, ts));
    CREATE INDEX IF NOT EXISTS silenced_alerts_by_key ON silenced_alerts (alert_key);` },
];

/** The schema version this IMS writes and reads. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/** The state file was upgraded by a newer IMS: refused, as this one would misread or damage it. */
export class StateVersionError extends Error {
  constructor(readonly file: string, readonly found: number, readonly known: number) {
    super(`${file} has schema version ${found}, this IMS knows up to ${known}; upgrade IMS (a newer IMS has used this file)`);
    this.name = 'StateVersionError';
  }
}

function schemaVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** Refuse a file a newer IMS has upgraded, before anything (even the journal mode) is written to it. */
function refuseNewer(db: Database.Database, file: string): void {
  const found = schemaVersion(db);
  if (found > SCHEMA_VERSION) throw new StateVersionError(file, found, SCHEMA_VERSION);
}

/** Bring `db` to `SCHEMA_VERSION`, one step per transaction: a step that fails leaves the file at the version before it. */
function migrate(db: Database.Database, file: string): void {
  for (const step of MIGRATIONS) {
    const before = schemaVersion(db);
    if (step.version <= before) continue;
    try {
      // IMMEDIATE: a second IMS opening the same file waits for the write lock, then finds the step done.
      db.transaction(() => {
        if (schemaVersion(db) >= step.version) return;
        db.exec(step.sql);
        db.pragma(`user_version = ${step.version}`);
      }).immediate();
    } catch (error) {
      throw new Error(`${file}: upgrading the schema to version ${step.version} (${step.what}) failed, the file is left at version `
        + `${before}: ${(error as Error).message}`, { cause: error });
    }
  }
}

/** The columns of `incidents`, as read. */
interface IncidentRow {
  id: number; source_channel: string; source_ts: string; incident_channel: string; incident_ts: string;
  rule_number: number; head: string; label: string; hotline: string | null; text: string; poster: string;
  created_at: number; resolved_at: number | null; resolved_by: string | null; permalink: string | null;
  /** JSON object of the named groups; NULL for incidents recorded before schema version 2. */
  groups: string | null;
  alert_key: string | null; repeats: number; last_seen_ts: string | null; last_note_ts: string | null; flapping: number;
  acknowledged_at: number | null; acknowledged_by: string | null;
}
const INCIDENT_COLUMNS = 'id, source_channel, source_ts, incident_channel, incident_ts, rule_number, head, label, hotline, text, poster, created_at, resolved_at, resolved_by, permalink, groups, alert_key, repeats, last_seen_ts, last_note_ts, flapping, acknowledged_at, acknowledged_by';

/** A `silences` row as both backends read it. */
export interface SilenceRow {
  id: number; what: string; matcher: string; reason: string; created_by: string; origin: string; window_key: string | null; incident_id: number | null;
  channel: string | null; starts_at: number; ends_at: number; ended_at: number | null; ended_by: string | null; silenced: number; summary_at: number | null;
}

/** A `silences` row as a `Silence` (both backends). */
export function toSilence(row: SilenceRow): Silence {
  let matcher: SilenceMatcher = { kind: 'key', key: row.what };
  try { matcher = JSON.parse(row.matcher) as SilenceMatcher; } catch { /* a damaged matcher reads as the key it was typed as */ }
  return {
    id: row.id, what: row.what, matcher, reason: row.reason, createdBy: row.created_by, origin: row.origin === 'maintenance' ? 'maintenance' : 'slack',
    windowKey: row.window_key ?? undefined, incidentId: row.incident_id ?? undefined, channel: row.channel ?? undefined, startsAt: row.starts_at, endsAt: row.ends_at,
    endedAt: row.ended_at ?? undefined, endedBy: row.ended_by ?? undefined, silenced: row.silenced, summaryAt: row.summary_at ?? undefined,
  };
}

interface SilencedAlertRow { silence_id: number; channel: string; ts: string; alert_key: string | null; text: string; at: number; recovered_ts: string | null }

/** An `alert_keys` row as both backends read it. */
export interface KeyRow { key: string; incident_id: number; state: 'firing' | 'resolved'; changed_ts: string; changes: string; last_seen_ts: string; title: string }

/** An `alert_keys` row as a `KeyRecord` (both backends). */
export function toKeyRecord(row: KeyRow): KeyRecord {
  let changes: string[] = [];
  try { changes = (JSON.parse(row.changes) as unknown[]).filter((c): c is string => typeof c === 'string'); } catch { /* a damaged list counts no changes */ }
  return { key: row.key, incidentId: row.incident_id, state: row.state, changedTs: row.changed_ts, changes, lastSeenTs: row.last_seen_ts, title: row.title };
}

/** What `addIncident` records: an incident without its number (given by the store), its groups optional (`{}`). */
export type NewIncident = Omit<Incident, 'id' | 'groups' | 'repeats' | 'flapping'> & {
  groups?: Record<string, string>;
  /** Whether recording it finishes its source message (default). False while parts of the post are still to go. */
  finishesMessage?: boolean;
  /** The post as made (`text`, `blocks`), kept to edit it in place. */
  post?: unknown;
};

/** The named parameters of a new incident. */
interface IncidentInsert {
  sourceChannel: string; sourceTs: string; incidentChannel: string; incidentTs: string; ruleNumber: number;
  head: string; label: string; hotline: string | null; text: string; poster: string; createdAt: number; permalink: string | null;
  groups: string;
}

interface IncidentEventRow { incident_id: number; kind: IncidentEvent['kind']; user: string | null; detail: string | null; at: number }

interface OutboxRow {
  id: number; plugin: string; key: string; grp: string; payload: string; attempts: number; next_at: number;
  last_error: string | null; created_at: number; delivered_at: number | null; dead: number;
}

function toIncident(row: IncidentRow): Incident {
  return {
    id: row.id, sourceChannel: row.source_channel, sourceTs: row.source_ts,
    incidentChannel: row.incident_channel, incidentTs: row.incident_ts,
    ruleNumber: row.rule_number, head: row.head, label: row.label,
    hotline: row.hotline ?? undefined, text: row.text, poster: row.poster,
    createdAt: row.created_at, resolvedAt: row.resolved_at ?? undefined,
    resolvedBy: row.resolved_by ?? undefined, permalink: row.permalink ?? undefined,
    groups: parseGroups(row.groups),
    alertKey: row.alert_key ?? undefined, repeats: row.repeats ?? 0, lastSeenTs: row.last_seen_ts ?? undefined, lastNoteTs: row.last_note_ts ?? undefined,
    flapping: row.flapping === 1,
    acknowledgedAt: row.acknowledged_at ?? undefined, acknowledgedBy: row.acknowledged_by ?? undefined,
  };
}

/** Stored groups as an object of strings; anything else (NULL from before version 2, a damaged value) is `{}`. */
export function parseGroups(stored: string | null): Record<string, string> {
  if (!stored) return {};
  try {
    const parsed: unknown = JSON.parse(stored);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    return Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  } catch { return {}; }
}

/**
 * Every statement IMS runs, prepared once, typed by its parameters and its row: a misspelt name, a missing
 * or wrong-typed parameter, or a column read that is not selected fails the typecheck.
 */
function prepareStatements(db: Database.Database) {
  return {
    rememberEvent: db.prepare<[eventId: string, receivedAt: number]>('INSERT OR IGNORE INTO events (event_id, received_at) VALUES (?, ?)'),
    claim: db.prepare<[channel: string, ts: string, event: string, now: number]>(
      `INSERT OR IGNORE INTO messages (channel, ts, status, event, updated_at) VALUES (?, ?, 'pending', ?, ?)`),
    messageStatus: db.prepare<[channel: string, ts: string], { status: Exclude<MessageClaim, 'new'> }>('SELECT status FROM messages WHERE channel = ? AND ts = ?'),
    finish: db.prepare<[now: number, channel: string, ts: string]>(`UPDATE messages SET status = 'done', updated_at = ? WHERE channel = ? AND ts = ?`),
    fail: db.prepare<[now: number, channel: string, ts: string]>(`UPDATE messages SET status = 'failed', updated_at = ? WHERE channel = ? AND ts = ?`),
    pending: db.prepare<[], { channel: string; ts: string; event: string; updated_at: number }>(
      `SELECT channel, ts, event, updated_at FROM messages WHERE status = 'pending' ORDER BY ts`),
    failed: db.prepare<[since: number], { channel: string; ts: string; event: string; updated_at: number }>(
      `SELECT channel, ts, event, updated_at FROM messages WHERE status = 'failed' AND updated_at >= ? ORDER BY ts`),
    cursor: db.prepare<[channel: string], { last_ts: string }>('SELECT last_ts FROM cursors WHERE channel = ?'),
    setCursor: db.prepare<[channel: string, ts: string]>(
      'INSERT INTO cursors (channel, last_ts) VALUES (?, ?) ON CONFLICT (channel) DO UPDATE SET last_ts = excluded.last_ts'),
    cursors: db.prepare<[], { channel: string; last_ts: string }>('SELECT channel, last_ts FROM cursors'),
    addIncident: db.prepare<IncidentInsert>(`INSERT INTO incidents (source_channel, source_ts, incident_channel, incident_ts, rule_number, head,
      label, hotline, text, poster, created_at, permalink, groups) VALUES (@sourceChannel, @sourceTs, @incidentChannel, @incidentTs, @ruleNumber, @head,
      @label, @hotline, @text, @poster, @createdAt, @permalink, @groups)`),
    incidentBySource: db.prepare<[channel: string, ts: string], IncidentRow>(`SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE source_channel = ? AND source_ts = ?`),
    incidentByPost: db.prepare<[channel: string, ts: string], IncidentRow>(`SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE incident_channel = ? AND incident_ts = ?`),
    incidentById: db.prepare<[id: number], IncidentRow>(`SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE id = ?`),
    incidentsByPost: db.prepare<[channel: string, ts: string], IncidentRow>(`SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE incident_channel = ? AND incident_ts = ? ORDER BY id`),
    addDigest: db.prepare<[channel: string, ts: string, post: string, createdAt: number]>('INSERT OR IGNORE INTO digests (channel, ts, post, created_at) VALUES (?, ?, ?, ?)'),
    digestPost: db.prepare<[channel: string, ts: string], { post: string }>('SELECT post FROM digests WHERE channel = ? AND ts = ?'),
    resolve: db.prepare<[at: number, by: string, id: number]>('UPDATE incidents SET resolved_at = ?, resolved_by = ? WHERE id = ? AND resolved_at IS NULL'),
    // Open again, it waits for someone to take it again: its acknowledgement goes (the events keep the history).
    reopen: db.prepare<[id: number]>('UPDATE incidents SET resolved_at = NULL, resolved_by = NULL, acknowledged_at = NULL, acknowledged_by = NULL WHERE id = ? AND resolved_at IS NOT NULL'),
    addEvent: db.prepare<[incidentId: number, kind: IncidentEvent['kind'], user: string | null, detail: string | null, at: number]>(
      'INSERT INTO incident_events (incident_id, kind, user, detail, at) VALUES (?, ?, ?, ?, ?)'),
    events: db.prepare<[incidentId: number], IncidentEventRow>('SELECT incident_id, kind, user, detail, at FROM incident_events WHERE incident_id = ? ORDER BY at, rowid'),
    claimReminder: db.prepare<[channel: string, hour: string]>('INSERT OR IGNORE INTO reminders (channel, hour) VALUES (?, ?)'),
    releaseReminder: db.prepare<[channel: string, hour: string]>('DELETE FROM reminders WHERE channel = ? AND hour = ?'),
    getMeta: db.prepare<[key: string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
    setMeta: db.prepare<[key: string, value: string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    ownChannel: db.prepare<[channel: string, plugin: string]>('INSERT OR IGNORE INTO owned_channels (channel, plugin) VALUES (?, ?)'),
    ownedChannels: db.prepare<[], { channel: string }>('SELECT channel FROM owned_channels'),
    storeGet: db.prepare<[plugin: string, key: string], { value: string }>('SELECT value FROM plugin_store WHERE plugin = ? AND key = ?'),
    storeSet: db.prepare<[plugin: string, key: string, value: string]>(
      'INSERT INTO plugin_store (plugin, key, value) VALUES (?, ?, ?) ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value'),
    storeDelete: db.prepare<[plugin: string, key: string]>('DELETE FROM plugin_store WHERE plugin = ? AND key = ?'),
    enqueue: db.prepare<[plugin: string, key: string, group: string, payload: string, nextAt: number, createdAt: number]>(
      'INSERT OR IGNORE INTO outbox (plugin, key, grp, payload, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
    dueOutbox: db.prepare<[now: number, limit: number], OutboxRow>(`SELECT * FROM outbox WHERE id IN (SELECT MIN(id) FROM outbox WHERE delivered_at IS NULL
      AND dead = 0 GROUP BY grp) AND next_at <= ? ORDER BY id LIMIT ?`),
    delivered: db.prepare<[now: number, id: number]>('UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?'),
    retry: db.prepare<[nextAt: number, error: string, id: number]>('UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?'),
    dead: db.prepare<[error: string, id: number]>('UPDATE outbox SET dead = 1, attempts = attempts + 1, last_error = ? WHERE id = ?'),
    outboxStats: db.prepare<[], { depth: number; oldest: number | null; last_error: string | null }>(`SELECT COUNT(*) AS depth, MIN(created_at) AS oldest,
      (SELECT last_error FROM outbox WHERE last_error IS NOT NULL AND delivered_at IS NULL ORDER BY id DESC LIMIT 1) AS last_error
      FROM outbox WHERE delivered_at IS NULL AND dead = 0`),
    keyRecord: db.prepare<[key: string], KeyRow>('SELECT * FROM alert_keys WHERE key = ?'),
    keyRecords: db.prepare<[incidentId: number], KeyRow>('SELECT * FROM alert_keys WHERE incident_id = ? ORDER BY rowid'),
    saveKey: db.prepare<[key: string, incidentId: number, state: string, changedTs: string, changes: string, lastSeenTs: string, title: string]>(
      `INSERT INTO alert_keys (key, incident_id, state, changed_ts, changes, last_seen_ts, title) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET
      incident_id = excluded.incident_id, state = excluded.state, changed_ts = excluded.changed_ts, changes = excluded.changes,
      last_seen_ts = excluded.last_seen_ts, title = excluded.title`),
    noteRepeat: db.prepare<[ts: string, noteTs: string | null, id: number]>(
      'UPDATE incidents SET repeats = repeats + 1, last_seen_ts = ?, last_note_ts = COALESCE(?, last_note_ts) WHERE id = ?'),
    seen: db.prepare<[ts: string, id: number]>('UPDATE incidents SET last_seen_ts = ? WHERE id = ?'),
    setFlapping: db.prepare<[flapping: number, id: number]>('UPDATE incidents SET flapping = ? WHERE id = ?'),
    setAlertKey: db.prepare<[key: string, id: number]>('UPDATE incidents SET alert_key = ? WHERE id = ? AND alert_key IS NULL'),
    setPost: db.prepare<[post: string, id: number]>('UPDATE incidents SET post = ? WHERE id = ?'),
    post: db.prepare<[id: number], { post: string | null }>('SELECT post FROM incidents WHERE id = ?'),
    flappingIncidents: db.prepare<[], IncidentRow>(`SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE flapping = 1 ORDER BY id`),
    incidentCounts: db.prepare<[], { opened: number; resolved: number | null }>('SELECT COUNT(*) AS opened, SUM(resolved_at IS NOT NULL) AS resolved FROM incidents'),
    acknowledge: db.prepare<[at: number, by: string, id: number]>('UPDATE incidents SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ? AND acknowledged_at IS NULL'),
    addSilence: db.prepare<[what: string, matcher: string, reason: string, createdBy: string, origin: string, windowKey: string | null, incidentId: number | null,
      channel: string | null, startsAt: number, endsAt: number]>(`INSERT OR IGNORE INTO silences (what, matcher, reason, created_by, origin, window_key, incident_id,
      channel, starts_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    silenceById: db.prepare<[id: number], SilenceRow>('SELECT * FROM silences WHERE id = ?'),
    silenceByWindow: db.prepare<[windowKey: string], SilenceRow>('SELECT * FROM silences WHERE window_key = ?'),
    activeSilences: db.prepare<[now: number, now2: number], SilenceRow>('SELECT * FROM silences WHERE starts_at <= ? AND ends_at > ? AND ended_at IS NULL ORDER BY id'),
    silencesAt: db.prepare<[at: number, at2: number], SilenceRow>('SELECT * FROM silences WHERE starts_at <= ? AND ? < MIN(ends_at, COALESCE(ended_at, ends_at)) ORDER BY id'),
    endedSilences: db.prepare<[since: number, now: number], SilenceRow>(
      'SELECT * FROM silences WHERE COALESCE(ended_at, ends_at) >= ? AND (ended_at IS NOT NULL OR ends_at <= ?) ORDER BY COALESCE(ended_at, ends_at) DESC'),
    endSilence: db.prepare<[at: number, by: string, id: number, at2: number]>('UPDATE silences SET ended_at = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL AND ends_at > ?'),
    silencesToSummarise: db.prepare<[now: number], SilenceRow>('SELECT * FROM silences WHERE summary_at IS NULL AND (ended_at IS NOT NULL OR ends_at <= ?) ORDER BY id'),
    markSummarised: db.prepare<[at: number, id: number]>('UPDATE silences SET summary_at = ? WHERE id = ? AND summary_at IS NULL'),
    noteSilenced: db.prepare<[silenceId: number, channel: string, ts: string, key: string | null, text: string, at: number]>(
      'INSERT OR IGNORE INTO silenced_alerts (silence_id, channel, ts, alert_key, text, at) VALUES (?, ?, ?, ?, ?, ?)'),
    countSilenced: db.prepare<[id: number]>('UPDATE silences SET silenced = silenced + 1 WHERE id = ?'),
    silencedRecovery: db.prepare<[ts: string, key: string, ts2: string]>(
      'UPDATE silenced_alerts SET recovered_ts = ? WHERE alert_key = ? AND recovered_ts IS NULL AND CAST(ts AS REAL) < CAST(? AS REAL)'),
    silencedAlerts: db.prepare<[id: number], SilencedAlertRow>('SELECT * FROM silenced_alerts WHERE silence_id = ? ORDER BY at, ts'),
    pruneEvents: db.prepare<[before: number]>('DELETE FROM events WHERE received_at < ?'),
    pruneMessages: db.prepare<[before: number]>(`DELETE FROM messages WHERE status IN ('done', 'failed') AND updated_at < ?`),
    pruneOutbox: db.prepare<[createdBefore: number]>('DELETE FROM outbox WHERE (delivered_at IS NOT NULL OR dead = 1) AND created_at < ?'),
  };
}

/** Compare Slack timestamps numerically (`"1700000000.000100"`), as strings of different lengths would sort wrong. */
export function tsAfter(a: string, b: string): boolean {
  const [as, af = ''] = a.split('.');
  const [bs, bf = ''] = b.split('.');
  if (as.length !== bs.length) return as.length > bs.length;
  if (as !== bs) return as > bs;
  return af.padEnd(6, '0') > bf.padEnd(6, '0');
}

/** IMS's state in one SQLite file (or `':memory:'`), upgraded to `SCHEMA_VERSION` when opened. */
export class State implements StateStore<'sync'> {
  private readonly db: Database.Database;
  private readonly statements: ReturnType<typeof prepareStatements>;
  /** `listIncidents` statements by the filters given (at most 12 shapes), each prepared the first time it is used. */
  private readonly incidentLists = new Map<string, Database.Statement<(string | number)[], IncidentRow>>();
  private readonly inOneCommit: (work: () => unknown) => unknown;
  private readonly claimInOneCommit: (channel: string, ts: string, event: unknown, now: number, advanceCursor: boolean) => MessageClaim;
  private readonly addIncidentInOneCommit: (incident: NewIncident) => Incident;
  private readonly resolveInOneCommit: (id: number, at: number, by: string) => boolean;
  private readonly reopenInOneCommit: (id: number, at: number, by: string) => boolean;
  private readonly pruneInOneCommit: (before: number) => void;

  /** Opens (creating it and its folder if needed) and upgrades the file; throws `StateVersionError` for a file a newer IMS upgraded. */
  constructor(readonly file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    // The native module is loaded with the first state opened: importing IMS (a config, `--test`) never loads it.
    const SQLite = createRequire(import.meta.url)('better-sqlite3') as typeof Database;
    const db = new SQLite(file);
    try {
      db.pragma('busy_timeout = 5000');
      refuseNewer(db, file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      migrate(db, file);
    } catch (error) {
      db.close();
      throw error;
    }
    this.db = db;
    const statements = prepareStatements(db);
    this.statements = statements;
    // Transactions are built once too (as statements are): the claim runs for every message.
    this.inOneCommit = db.transaction((work: () => unknown) => work());
    this.claimInOneCommit = db.transaction((channel: string, ts: string, event: unknown, now: number, advanceCursor: boolean): MessageClaim => {
      if (statements.claim.run(channel, ts, JSON.stringify(event), now).changes === 1) {
        if (advanceCursor) this.advanceCursor(channel, ts);
        return 'new';
      }
      return statements.messageStatus.get(channel, ts)!.status;
    });
    this.addIncidentInOneCommit = db.transaction((incident: NewIncident): Incident => {
      const existing = this.incidentBySource(incident.sourceChannel, incident.sourceTs);
      if (existing) return existing;
      const groups = { ...incident.groups };
      const id = Number(statements.addIncident.run({
        sourceChannel: incident.sourceChannel, sourceTs: incident.sourceTs, incidentChannel: incident.incidentChannel,
        incidentTs: incident.incidentTs, ruleNumber: incident.ruleNumber, head: incident.head, label: incident.label,
        hotline: incident.hotline ?? null, text: incident.text, poster: incident.poster, createdAt: incident.createdAt,
        permalink: incident.permalink ?? null, groups: JSON.stringify(groups),
      }).lastInsertRowid);
      if (incident.finishesMessage !== false) this.finishMessage(incident.sourceChannel, incident.sourceTs);
      const { finishesMessage: _, post: __, ...recorded } = incident;
      if (incident.alertKey) statements.setAlertKey.run(incident.alertKey, id);
      if (incident.post !== undefined) statements.setPost.run(JSON.stringify(incident.post), id);
      return { ...recorded, groups, id, repeats: 0, flapping: false };
    });
    this.resolveInOneCommit = db.transaction((id: number, at: number, by: string): boolean => {
      const changed = statements.resolve.run(at, by, id).changes === 1;
      if (changed) this.addIncidentEvent({ incidentId: id, kind: 'resolve', user: by, at });
      return changed;
    });
    this.reopenInOneCommit = db.transaction((id: number, at: number, by: string): boolean => {
      const changed = statements.reopen.run(id).changes === 1;
      if (changed) this.addIncidentEvent({ incidentId: id, kind: 'reopen', user: by, at });
      return changed;
    });
    this.pruneInOneCommit = db.transaction((before: number): void => {
      statements.pruneEvents.run(before);
      statements.pruneMessages.run(before);
      // Delivered (or given-up) deliveries are history; their keys guard against repeats for a month longer.
      statements.pruneOutbox.run(before - 30 * 24 * 3600_000);
    });
  }

  get isOpen(): boolean {
    return this.db.open;
  }

  withinOneCommit<T>(work: () => T): T {
    return this.inOneCommit(work) as T;
  }

  rememberEvent(eventId: string, now = Date.now()): boolean {
    return this.statements.rememberEvent.run(eventId, now).changes === 1;
  }

  claimMessage(channel: string, ts: string, event: unknown, now = Date.now(), advanceCursor = true): MessageClaim {
    return this.claimInOneCommit(channel, ts, event, now, advanceCursor);
  }

  finishMessage(channel: string, ts: string, now = Date.now()): void {
    this.statements.finish.run(now, channel, ts);
  }

  failMessage(channel: string, ts: string, now = Date.now()): void {
    this.statements.fail.run(now, channel, ts);
  }

  pendingMessages(claimedBefore = Infinity): PendingMessage[] {
    return this.statements.pending.all()
      .filter((r) => r.updated_at < claimedBefore).map((r) => ({ channel: r.channel, ts: r.ts, event: JSON.parse(r.event) as Record<string, unknown> }));
  }

  failedMessages(since: number): (PendingMessage & { failedAt: number })[] {
    return this.statements.failed.all(since)
      .map((r) => ({ channel: r.channel, ts: r.ts, event: JSON.parse(r.event) as Record<string, unknown>, failedAt: r.updated_at }));
  }

  cursor(channel: string): string | undefined {
    return this.statements.cursor.get(channel)?.last_ts;
  }

  cursors(): Map<string, string> {
    return new Map(this.statements.cursors.all().map((r) => [r.channel, r.last_ts]));
  }

  advanceCursor(channel: string, ts: string): void {
    const current = this.cursor(channel);
    if (!current || tsAfter(ts, current)) this.statements.setCursor.run(channel, ts);
  }

  addIncident(incident: NewIncident): Incident {
    return this.addIncidentInOneCommit(incident);
  }

  incidentBySource(channel: string, ts: string): Incident | undefined {
    const row = this.statements.incidentBySource.get(channel, ts);
    return row && toIncident(row);
  }

  incidentByPost(channel: string, ts: string): Incident | undefined {
    const row = this.statements.incidentByPost.get(channel, ts);
    return row && toIncident(row);
  }

  incidentsByPost(channel: string, ts: string): Incident[] {
    return this.statements.incidentsByPost.all(channel, ts).map(toIncident);
  }

  addDigest(channel: string, ts: string, post: unknown, now = Date.now()): void {
    this.statements.addDigest.run(channel, ts, JSON.stringify(post), now);
  }

  digestPost(channel: string, ts: string): unknown {
    const stored = this.statements.digestPost.get(channel, ts)?.post;
    if (!stored) return undefined;
    try { return JSON.parse(stored); } catch { return undefined; }
  }

  incidentById(id: number): Incident | undefined {
    const row = this.statements.incidentById.get(id);
    return row && toIncident(row);
  }

  listIncidents(filter: IncidentFilter = {}): Incident[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.since !== undefined) { where.push('created_at >= ?'); args.push(filter.since); }
    if (filter.open !== undefined) where.push(filter.open ? 'resolved_at IS NULL' : 'resolved_at IS NOT NULL');
    if (filter.channel !== undefined) { where.push('incident_channel = ?'); args.push(filter.channel); }
    const shape = where.join(' AND ');
    let statement = this.incidentLists.get(shape);
    if (!statement) {
      statement = this.db.prepare<(string | number)[], IncidentRow>(`SELECT ${INCIDENT_COLUMNS} FROM incidents ${shape ? `WHERE ${shape}` : ''} ORDER BY created_at, id`);
      this.incidentLists.set(shape, statement);
    }
    return statement.all(...args).map(toIncident);
  }

  resolveIncident(id: number, at: number, by: string): boolean {
    return this.resolveInOneCommit(id, at, by);
  }

  reopenIncident(id: number, at: number, by: string): boolean {
    return this.reopenInOneCommit(id, at, by);
  }

  addIncidentEvent(event: IncidentEvent): void {
    this.statements.addEvent.run(event.incidentId, event.kind, event.user ?? null, event.detail ?? null, event.at);
  }

  keyRecord(key: string): KeyRecord | undefined {
    const row = this.statements.keyRecord.get(key);
    return row && toKeyRecord(row);
  }

  keyRecords(incidentId: number): KeyRecord[] {
    return this.statements.keyRecords.all(incidentId).map(toKeyRecord);
  }

  saveKeyRecords(records: readonly KeyRecord[]): void {
    this.withinOneCommit(() => {
      for (const r of records) this.statements.saveKey.run(r.key, r.incidentId, r.state, r.changedTs, JSON.stringify(r.changes), r.lastSeenTs, r.title);
      const first = records.find((r) => r.incidentId > 0);
      if (first) this.statements.setAlertKey.run(first.key, first.incidentId);
    });
  }

  noteRepeat(incidentId: number, ts: string, noted: boolean): void {
    this.statements.noteRepeat.run(ts, noted ? ts : null, incidentId);
  }

  noteSeen(incidentId: number, ts: string): void {
    this.statements.seen.run(ts, incidentId);
  }

  setFlapping(incidentId: number, flapping: boolean): void {
    this.statements.setFlapping.run(flapping ? 1 : 0, incidentId);
  }

  flappingIncidents(): Incident[] {
    return this.statements.flappingIncidents.all().map(toIncident);
  }

  setIncidentPost(incidentId: number, post: unknown): void {
    this.statements.setPost.run(JSON.stringify(post), incidentId);
  }

  incidentPost(incidentId: number): unknown {
    const stored = this.statements.post.get(incidentId)?.post;
    if (!stored) return undefined;
    try { return JSON.parse(stored); } catch { return undefined; }
  }

  incidentEvents(id: number): IncidentEvent[] {
    return this.statements.events.all(id).map((r) => ({
      incidentId: r.incident_id, kind: r.kind, user: r.user ?? undefined, detail: r.detail ?? undefined, at: r.at,
    }));
  }

  incidentCounts(): { opened: number; resolved: number; open: number } {
    const { opened, resolved } = this.statements.incidentCounts.get()!;
    return { opened, resolved: resolved ?? 0, open: opened - (resolved ?? 0) };
  }

  acknowledgeIncident(id: number, at: number, by: string, how?: string): boolean {
    return this.withinOneCommit(() => {
      if (this.statements.acknowledge.run(at, by, id).changes !== 1) return false;
      if (how !== undefined) this.addIncidentEvent({ incidentId: id, kind: 'acknowledge', user: by, detail: how, at });
      return true;
    });
  }

  addSilence(silence: NewSilence): Silence {
    return this.withinOneCommit(() => {
      const id = Number(this.statements.addSilence.run(silence.what, JSON.stringify(silence.matcher), silence.reason, silence.createdBy, silence.origin,
        silence.windowKey ?? null, silence.incidentId ?? null, silence.channel ?? null, silence.startsAt, silence.endsAt).lastInsertRowid);
      const row = silence.windowKey ? this.statements.silenceByWindow.get(silence.windowKey) : this.statements.silenceById.get(id);
      return toSilence(row!);
    });
  }

  silenceById(id: number): Silence | undefined {
    const row = this.statements.silenceById.get(id);
    return row && toSilence(row);
  }

  activeSilences(now: number): Silence[] {
    return this.statements.activeSilences.all(now, now).map(toSilence);
  }

  silencesAt(at: number): Silence[] {
    return this.statements.silencesAt.all(at, at).map(toSilence);
  }

  endedSilences(since: number, now: number): Silence[] {
    return this.statements.endedSilences.all(since, now).map(toSilence);
  }

  endSilence(id: number, at: number, by: string): boolean {
    return this.statements.endSilence.run(at, by, id, at).changes === 1;
  }

  silencesToSummarise(now: number): Silence[] {
    return this.statements.silencesToSummarise.all(now).map(toSilence);
  }

  markSilenceSummarised(id: number, at: number): void {
    this.statements.markSummarised.run(at, id);
  }

  noteSilenced(alert: Omit<SilencedAlert, 'recoveredTs'>): boolean {
    return this.withinOneCommit(() => {
      if (this.statements.noteSilenced.run(alert.silenceId, alert.channel, alert.ts, alert.key ?? null, alert.text, alert.at).changes !== 1) return false;
      this.statements.countSilenced.run(alert.silenceId);
      return true;
    });
  }

  noteSilencedRecovery(key: string, ts: string): void {
    this.statements.silencedRecovery.run(ts, key, ts);
  }

  silencedAlerts(silenceId: number): SilencedAlert[] {
    return this.statements.silencedAlerts.all(silenceId).map((row) => ({
      silenceId: row.silence_id, channel: row.channel, ts: row.ts, key: row.alert_key ?? undefined, text: row.text, at: row.at, recoveredTs: row.recovered_ts ?? undefined,
    }));
  }

  claimReminder(channel: string, hour: string): boolean {
    return this.statements.claimReminder.run(channel, hour).changes === 1;
  }

  releaseReminder(channel: string, hour: string): void {
    this.statements.releaseReminder.run(channel, hour);
  }

  getMeta(key: string): string | undefined {
    return this.statements.getMeta.get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.statements.setMeta.run(key, value);
  }

  ownChannel(channel: string, plugin: string): void {
    this.statements.ownChannel.run(channel, plugin);
  }

  ownedChannels(): Set<string> {
    return new Set(this.statements.ownedChannels.all().map((r) => r.channel));
  }

  storeGet(plugin: string, key: string): unknown {
    const row = this.statements.storeGet.get(plugin, key);
    return row ? JSON.parse(row.value) : undefined;
  }

  storeSet(plugin: string, key: string, value: unknown): void {
    if (value === undefined) this.statements.storeDelete.run(plugin, key);
    else this.statements.storeSet.run(plugin, key, JSON.stringify(value));
  }

  enqueue(plugin: string, key: string, group: string, payload: unknown, now = Date.now()): boolean {
    return this.statements.enqueue.run(plugin, key, group, JSON.stringify(payload ?? null), now, now).changes === 1;
  }

  dueDeliveries(now = Date.now(), limit = 20): OutboxItem[] {
    return this.statements.dueOutbox.all(now, limit).map((r) => ({
      id: r.id, plugin: r.plugin, key: r.key, group: r.grp, payload: JSON.parse(r.payload), attempts: r.attempts,
      nextAt: r.next_at, lastError: r.last_error ?? undefined, createdAt: r.created_at,
    }));
  }

  markDelivered(id: number, now = Date.now()): void { this.statements.delivered.run(now, id); }
  markRetry(id: number, nextAt: number, error: string): void { this.statements.retry.run(nextAt, error, id); }
  markDead(id: number, error: string): void { this.statements.dead.run(error, id); }

  outboxStats(): OutboxStats {
    const row = this.statements.outboxStats.get()!;
    return { depth: row.depth, oldestAt: row.oldest ?? undefined, lastError: row.last_error ?? undefined };
  }

  prune(before: number): void {
    this.pruneInOneCommit(before);
  }

  /**
   * Every row of every table, as stored (column → value), in one read transaction: what `--migrate-state` copies
   * into PostgreSQL. Incident events and alert keys in the order they were written.
   */
  dump(): StateDump {
    return this.withinOneCommit(() => Object.fromEntries(DUMPED_TABLES.map((table) => [table,
      this.db.prepare(`SELECT * FROM ${table} ORDER BY ${table === 'incident_events' || table === 'alert_keys' ? 'rowid' : '1'}`).all() as Record<string, unknown>[]])) as StateDump);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** The tables `dump` reads, parents before the rows that point at them. */
export const DUMPED_TABLES = ['events', 'messages', 'incidents', 'incident_events', 'cursors', 'reminders', 'meta', 'owned_channels', 'plugin_store',
  'outbox', 'alert_keys', 'digests', 'silences', 'silenced_alerts'] as const;

/** The whole state as rows, by table (see `State.dump`). */
export type StateDump = Record<(typeof DUMPED_TABLES)[number], Record<string, unknown>[]>;

/**
 * The state as the runtime sees it, whichever the backend: every answer a promise. `withinOneCommit`'s work is
 * synchronous by contract (a slice never waits for its own answers: they come once its commit is made).
 */
export type Store = Omit<StateStore<'async'>, 'withinOneCommit'> & {
  withinOneCommit<T>(work: () => T): Promise<T>;
  /** Where the state lives, for messages (`ims.db`'s path, or the server and database). */
  readonly where: string;
};

/**
 * The state could not be reached (a database server down, frozen or out of connections): nothing of the call was
 * recorded, and the same call may succeed later. Work that meets it is kept and tried again, never dropped.
 */
export class StateUnavailableError extends Error {
  override name = 'StateUnavailableError';
}

/**
 * The message this instance was handling is another instance's now (it was taken over while this one was frozen
 * or cut off): this one leaves it, and the other finishes it.
 */
export class ClaimTakenError extends Error {
  override name = 'ClaimTakenError';
  constructor(readonly channel: string, readonly ts: string, readonly by: string) {
    super(`${channel}:${ts} was taken over by ${by}: left to it`);
  }
}

/** Whether an error came from the state (its database), not from Slack: such a failure never makes a message failed for good. */
export function isStateFailure(error: unknown): boolean {
  const name = (error as { name?: string } | undefined)?.name;
  return error instanceof StateUnavailableError || name === 'SqliteError' || (error instanceof Error && /^PostgreSQL state /.test(error.message));
}

/** The operations `promisedState` passes on; the rest of `State` (its constructor, `dump`) is not the runtime's. */
const STORE_OPERATIONS = Object.getOwnPropertyNames(State.prototype)
  .filter((name) => name !== 'constructor' && name !== 'isOpen' && name !== 'dump' && typeof (State.prototype as unknown as Record<string, unknown>)[name] === 'function');

/**
 * SQLite's `State` as a `Store`: each answer (or its error) is already settled when given, so a slice's calls still
 * commit together in the same turn, as they did when the runtime called `State` itself.
 */
export function promisedState(state: State): Store {
  const store: Record<string, unknown> = {};
  /** Inside `withinOneCommit`: the first call that failed (the whole commit is then rolled back, as it was). */
  let slice: { failure?: unknown } | undefined;
  for (const name of STORE_OPERATIONS) {
    const operation = (state as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!;
    store[name] = (...args: unknown[]) => {
      try {
        return Promise.resolve(operation.apply(state, args));
      } catch (error) {
        if (slice && !('failure' in slice)) slice.failure = error;
        const failed = Promise.reject(error);
        // Inside a commit the caller may not look at each answer: the commit's own promise reports the failure.
        if (slice) failed.catch(() => undefined);
        return failed;
      }
    };
  }
  store.withinOneCommit = <T>(work: () => T): Promise<T> => {
    const outer = slice;
    const mine: { failure?: unknown } = outer ?? {};
    slice = mine;
    try {
      return Promise.resolve(state.withinOneCommit(() => {
        const result = work();
        if ('failure' in mine) throw mine.failure;
        return result;
      }));
    } catch (error) {
      return Promise.reject(error);
    } finally {
      slice = outer;
    }
  };
  Object.defineProperty(store, 'isOpen', { get: () => state.isOpen });
  Object.defineProperty(store, 'where', { value: state.file });
  return store as unknown as Store;
}

/**
 * IMS's durable state: one SQLite file (better-sqlite3, WAL). It is what makes IMS safe to restart:
 * processed events and messages (de-duplication), incidents and their lifecycle, the last processed
 * `ts` per watched channel (catch-up), reminder hours already posted, and the plugins' outbox.
 * Every multi-row change is one transaction, so a crash leaves either all of it or none.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Incident } from './ims.ts';

/** Something that happened to an incident: reactions, thread replies, resolution. */
export interface IncidentEvent {
  incidentId: number;
  kind: 'reaction' | 'reply' | 'resolve' | 'reopen' | 'hotline' | 'note';
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

const SCHEMA = `
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

type Row = Record<string, unknown>;

function toIncident(row: Row): Incident {
  return {
    id: row.id as number, sourceChannel: row.source_channel as string, sourceTs: row.source_ts as string,
    incidentChannel: row.incident_channel as string, incidentTs: row.incident_ts as string,
    ruleNumber: row.rule_number as number, head: row.head as string, label: row.label as string,
    hotline: (row.hotline as string | null) ?? undefined, text: row.text as string, poster: row.poster as string,
    createdAt: row.created_at as number, resolvedAt: (row.resolved_at as number | null) ?? undefined,
    resolvedBy: (row.resolved_by as string | null) ?? undefined, permalink: (row.permalink as string | null) ?? undefined,
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

export class State {
  readonly db: Database.Database;
  private readonly statements: Record<string, Database.Statement>;

  constructor(readonly file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    const prepare = (sql: string) => this.db.prepare(sql);
    this.statements = {
      rememberEvent: prepare('INSERT OR IGNORE INTO events (event_id, received_at) VALUES (?, ?)'),
      claim: prepare(`INSERT OR IGNORE INTO messages (channel, ts, status, event, updated_at) VALUES (?, ?, 'pending', ?, ?)`),
      messageStatus: prepare('SELECT status FROM messages WHERE channel = ? AND ts = ?'),
      finish: prepare(`UPDATE messages SET status = 'done', updated_at = ? WHERE channel = ? AND ts = ?`),
      fail: prepare(`UPDATE messages SET status = 'failed', updated_at = ? WHERE channel = ? AND ts = ?`),
      pending: prepare(`SELECT channel, ts, event, updated_at FROM messages WHERE status = 'pending' ORDER BY ts`),
      cursor: prepare('SELECT last_ts FROM cursors WHERE channel = ?'),
      setCursor: prepare('INSERT INTO cursors (channel, last_ts) VALUES (?, ?) ON CONFLICT (channel) DO UPDATE SET last_ts = excluded.last_ts'),
      cursors: prepare('SELECT channel, last_ts FROM cursors'),
      addIncident: prepare(`INSERT INTO incidents (source_channel, source_ts, incident_channel, incident_ts, rule_number, head, label, hotline,
        text, poster, created_at, permalink) VALUES (@sourceChannel, @sourceTs, @incidentChannel, @incidentTs, @ruleNumber, @head, @label,
        @hotline, @text, @poster, @createdAt, @permalink)`),
      bySource: prepare('SELECT * FROM incidents WHERE source_channel = ? AND source_ts = ?'),
      byPost: prepare('SELECT * FROM incidents WHERE incident_channel = ? AND incident_ts = ?'),
      byId: prepare('SELECT * FROM incidents WHERE id = ?'),
      resolve: prepare('UPDATE incidents SET resolved_at = ?, resolved_by = ? WHERE id = ? AND resolved_at IS NULL'),
      reopen: prepare('UPDATE incidents SET resolved_at = NULL, resolved_by = NULL WHERE id = ? AND resolved_at IS NOT NULL'),
      addEvent: prepare('INSERT INTO incident_events (incident_id, kind, user, detail, at) VALUES (?, ?, ?, ?, ?)'),
      events: prepare('SELECT * FROM incident_events WHERE incident_id = ? ORDER BY at, rowid'),
      reminder: prepare('INSERT OR IGNORE INTO reminders (channel, hour) VALUES (?, ?)'),
      getMeta: prepare('SELECT value FROM meta WHERE key = ?'),
      setMeta: prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      storeGet: prepare('SELECT value FROM plugin_store WHERE plugin = ? AND key = ?'),
      storeSet: prepare('INSERT INTO plugin_store (plugin, key, value) VALUES (?, ?, ?) ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value'),
      storeDelete: prepare('DELETE FROM plugin_store WHERE plugin = ? AND key = ?'),
      enqueue: prepare(`INSERT OR IGNORE INTO outbox (plugin, key, grp, payload, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
      dueOutbox: prepare(`SELECT * FROM outbox WHERE id IN (SELECT MIN(id) FROM outbox WHERE delivered_at IS NULL AND dead = 0 GROUP BY grp)
        AND next_at <= ? ORDER BY id LIMIT ?`),
      delivered: prepare('UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?'),
      retry: prepare('UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?'),
      dead: prepare('UPDATE outbox SET dead = 1, attempts = attempts + 1, last_error = ? WHERE id = ?'),
      outboxStats: prepare(`SELECT COUNT(*) AS depth, MIN(created_at) AS oldest,
        (SELECT last_error FROM outbox WHERE last_error IS NOT NULL AND delivered_at IS NULL ORDER BY id DESC LIMIT 1) AS last_error
        FROM outbox WHERE delivered_at IS NULL AND dead = 0`),
    };
  }

  /** True the first time an event ID is seen. */
  rememberEvent(eventId: string, now = Date.now()): boolean {
    return this.statements.rememberEvent.run(eventId, now).changes === 1;
  }

  /**
   * Claim a message for processing: `'new'` the first time (recorded as pending, with the event, so a crash
   * before it is done is finished at the next start), else its status.
   */
  claimMessage(channel: string, ts: string, event: unknown, now = Date.now(), advanceCursor = true): 'new' | 'pending' | 'done' | 'failed' {
    return this.db.transaction(() => {
      if (this.statements.claim.run(channel, ts, JSON.stringify(event), now).changes === 1) {
        if (advanceCursor) this.advanceCursor(channel, ts);
        return 'new' as const;
      }
      return (this.statements.messageStatus.get(channel, ts) as { status: 'pending' | 'done' | 'failed' }).status;
    })();
  }

  finishMessage(channel: string, ts: string, now = Date.now()): void {
    this.statements.finish.run(now, channel, ts);
  }

  /** A message Slack refused for good: kept (as handled, never retried) so that its redeliveries are not tried again. */
  failMessage(channel: string, ts: string, now = Date.now()): void {
    this.statements.fail.run(now, channel, ts);
  }

  /** Messages claimed by a run that stopped before finishing them. */
  pendingMessages(claimedBefore = Infinity): { channel: string; ts: string; event: Record<string, unknown> }[] {
    return (this.statements.pending.all() as Row[])
      .filter((r) => (r.updated_at as number) < claimedBefore).map((r) => ({ channel: r.channel as string, ts: r.ts as string, event: JSON.parse(r.event as string) }));
  }

  cursor(channel: string): string | undefined {
    return (this.statements.cursor.get(channel) as Row | undefined)?.last_ts as string | undefined;
  }

  cursors(): Map<string, string> {
    return new Map((this.statements.cursors.all() as Row[]).map((r) => [r.channel as string, r.last_ts as string]));
  }

  /** Move a channel's cursor forward (never back). */
  advanceCursor(channel: string, ts: string): void {
    const current = this.cursor(channel);
    if (!current || tsAfter(ts, current)) this.statements.setCursor.run(channel, ts);
  }

  /** Record a new incident and finish its message, in one transaction. */
  addIncident(incident: Omit<Incident, 'id'>): Incident {
    return this.db.transaction(() => {
      const existing = this.incidentBySource(incident.sourceChannel, incident.sourceTs);
      if (existing) return existing;
      const id = Number(this.statements.addIncident.run({ hotline: null, permalink: null, ...incident }).lastInsertRowid);
      this.finishMessage(incident.sourceChannel, incident.sourceTs);
      return { ...incident, id };
    })();
  }

  incidentBySource(channel: string, ts: string): Incident | undefined {
    const row = this.statements.bySource.get(channel, ts) as Row | undefined;
    return row && toIncident(row);
  }

  incidentByPost(channel: string, ts: string): Incident | undefined {
    const row = this.statements.byPost.get(channel, ts) as Row | undefined;
    return row && toIncident(row);
  }

  incidentById(id: number): Incident | undefined {
    const row = this.statements.byId.get(id) as Row | undefined;
    return row && toIncident(row);
  }

  listIncidents(filter: { since?: number; open?: boolean; channel?: string } = {}): Incident[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.since !== undefined) { where.push('created_at >= ?'); args.push(filter.since); }
    if (filter.open !== undefined) where.push(filter.open ? 'resolved_at IS NULL' : 'resolved_at IS NOT NULL');
    if (filter.channel !== undefined) { where.push('incident_channel = ?'); args.push(filter.channel); }
    const sql = `SELECT * FROM incidents ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id`;
    return (this.db.prepare(sql).all(...args) as Row[]).map(toIncident);
  }

  /** Mark resolved; false if it already was. */
  resolveIncident(id: number, at: number, by: string): boolean {
    return this.db.transaction(() => {
      const changed = this.statements.resolve.run(at, by, id).changes === 1;
      if (changed) this.addIncidentEvent({ incidentId: id, kind: 'resolve', user: by, at });
      return changed;
    })();
  }

  /** Mark open again; false if it was not resolved. */
  reopenIncident(id: number, at: number, by: string): boolean {
    return this.db.transaction(() => {
      const changed = this.statements.reopen.run(id).changes === 1;
      if (changed) this.addIncidentEvent({ incidentId: id, kind: 'reopen', user: by, at });
      return changed;
    })();
  }

  addIncidentEvent(event: IncidentEvent): void {
    this.statements.addEvent.run(event.incidentId, event.kind, event.user ?? null, event.detail ?? null, event.at);
  }

  incidentEvents(id: number): IncidentEvent[] {
    return (this.statements.events.all(id) as Row[]).map((r) => ({
      incidentId: r.incident_id as number, kind: r.kind as IncidentEvent['kind'], user: (r.user as string | null) ?? undefined,
      detail: (r.detail as string | null) ?? undefined, at: r.at as number,
    }));
  }

  /** True the first time a reminder is claimed for this channel and hour. */
  claimReminder(channel: string, hour: string): boolean {
    return this.statements.reminder.run(channel, hour).changes === 1;
  }

  releaseReminder(channel: string, hour: string): void {
    this.db.prepare('DELETE FROM reminders WHERE channel = ? AND hour = ?').run(channel, hour);
  }

  getMeta(key: string): string | undefined {
    return (this.statements.getMeta.get(key) as Row | undefined)?.value as string | undefined;
  }

  setMeta(key: string, value: string): void {
    this.statements.setMeta.run(key, value);
  }

  /** Mark a channel as a plugin's own (a war room): never read as an alert source. */
  ownChannel(channel: string, plugin: string): void {
    this.db.prepare('INSERT OR IGNORE INTO owned_channels (channel, plugin) VALUES (?, ?)').run(channel, plugin);
  }

  ownedChannels(): Set<string> {
    return new Set((this.db.prepare('SELECT channel FROM owned_channels').all() as Row[]).map((r) => r.channel as string));
  }

  /** A plugin's own durable value (JSON). */
  storeGet(plugin: string, key: string): unknown {
    const row = this.statements.storeGet.get(plugin, key) as Row | undefined;
    return row ? JSON.parse(row.value as string) : undefined;
  }

  storeSet(plugin: string, key: string, value: unknown): void {
    if (value === undefined) this.statements.storeDelete.run(plugin, key);
    else this.statements.storeSet.run(plugin, key, JSON.stringify(value));
  }

  /** Queue an outbox delivery; false when the key was already queued or delivered. */
  enqueue(plugin: string, key: string, group: string, payload: unknown, now = Date.now()): boolean {
    return this.statements.enqueue.run(plugin, key, group, JSON.stringify(payload ?? null), now, now).changes === 1;
  }

  /** The head of each group's queue that is due: deliveries of one group go strictly in order. */
  dueDeliveries(now = Date.now(), limit = 20): OutboxItem[] {
    return (this.statements.dueOutbox.all(now, limit) as Row[]).map((r) => ({
      id: r.id as number, plugin: r.plugin as string, key: r.key as string, group: r.grp as string,
      payload: JSON.parse(r.payload as string), attempts: r.attempts as number, nextAt: r.next_at as number,
      lastError: (r.last_error as string | null) ?? undefined, createdAt: r.created_at as number,
    }));
  }

  markDelivered(id: number, now = Date.now()): void { this.statements.delivered.run(now, id); }
  markRetry(id: number, nextAt: number, error: string): void { this.statements.retry.run(nextAt, error, id); }
  markDead(id: number, error: string): void { this.statements.dead.run(error, id); }

  outboxStats(): { depth: number; oldestAt?: number; lastError?: string } {
    const row = this.statements.outboxStats.get() as Row;
    return { depth: row.depth as number, oldestAt: (row.oldest as number | null) ?? undefined, lastError: (row.last_error as string | null) ?? undefined };
  }

  /** Forget de-duplication records older than `before` (they can no longer be redelivered or caught up). */
  prune(before: number): void {
    this.db.prepare('DELETE FROM events WHERE received_at < ?').run(before);
    this.db.prepare(`DELETE FROM messages WHERE status IN ('done', 'failed') AND updated_at < ?`).run(before);
    // Delivered (or given-up) deliveries are history; their keys guard against repeats for a month longer.
    this.db.prepare('DELETE FROM outbox WHERE (delivered_at IS NOT NULL OR dead = 1) AND created_at < ?').run(before - 30 * 24 * 3600_000);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

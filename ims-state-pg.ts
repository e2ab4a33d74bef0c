/**
 * IMS's durable state on PostgreSQL: `PgState` implements `StateStore<'async'>` (ims-state.ts) with the same
 * operations, inputs and meaning as the SQLite `State`, so several IMS instances can share one database.
 * `pg` is loaded when the first store is opened (importing IMS loads nothing of it), pooled, its clients
 * pipelined (a client sends the next statement without waiting for the answer to the one before).
 *
 * Every operation is one SQL statement that returns its own answer, so that any operation can join a slice's
 * commit (below) and be atomic on its own against other instances: a claim or a de-duplication record is
 * `INSERT … ON CONFLICT DO NOTHING RETURNING` (the status of a message seen before read by the same
 * statement), a conditional change (resolve, reopen, acknowledge, end a silence, mark it summarised) is
 * `UPDATE … WHERE <not yet> RETURNING` with its event inserted from what it returned, a cursor moves with
 * `INSERT … ON CONFLICT DO UPDATE … WHERE` the new ts is later. Row locks make the second of two racing
 * instances see the first one's change, so each such change happens once.
 *
 * `withinOneCommit(work)`: the calls `work` makes while it runs (AsyncLocalStorage routes them: a call knows
 * the slice it was made in) are gathered, not sent; when `work` returns they are sent on one client as one
 * pipelined transaction, `BEGIN; …; COMMIT` in one round trip, and each call's promise settles with its own
 * answer once the commit is acknowledged, never before: nothing acts on a claim that could still be rolled
 * back. A failed commit rejects every call of the slice (and the `withinOneCommit` promise); a deadlock or a
 * serialisation failure between instances (their slices claiming the same messages in another order) rolls
 * the slice back on the server, so it is sent again, up to three times. Calls made after `work` returned
 * (after its first `await`, or by work it started) go on their own, as calls outside a slice do: `work` may
 * await an answer of its own slice (it settles after the commit), but what it does after that is not part of
 * the slice. A `work` that throws before returning (an async one: before its first `await`) sends nothing.
 *
 * The schema is the SQLite one (ims-state.ts, version 5) in PostgreSQL's types: epoch milliseconds BIGINT,
 * ids BIGINT identities (given by default, so a copy from SQLite keeps its numbers), flags BOOLEAN, JSON kept
 * as TEXT as SQLite keeps it (JSONB would refuse `\u0000` in a Slack text and reorder keys), Slack ts TEXT
 * compared as numbers through `ims_ts()` where SQLite compared them, a `seq` column where SQLite ordered by
 * rowid. It is versioned in `schema_migrations`, changed only by appending to `PG_MIGRATIONS`, each step in
 * its own transaction under an advisory lock: instances started together migrate once, a database a newer
 * IMS migrated is refused (`StateVersionError`).
 *
 * Beyond the StateStore, what several instances share (not in SQLite: one instance needs none of it): leases,
 * for work one instance does at a time (`acquireLease`, renewed by its holder, taken over once expired, with a
 * growing term as a fencing token), and each channel's posting pace (`takePostingTurn`, one token bucket for all
 * instances; `postingRateLimited` empties it for all after a 429). Their times are the server's clock unless the
 * caller passes `now`: instances' clocks differ, the database's is one.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import type pgModule from 'pg';
import type { Pool, PoolClient, PoolConfig, QueryResult } from 'pg';
import type { Incident } from './ims.ts';
import type { KeyRecord } from './ims-lifecycle.ts';
import type {
  IncidentEvent, IncidentFilter, MessageClaim, NewIncident, NewSilence, OutboxItem, OutboxStats, PendingMessage, Silence, SilencedAlert, StateStore,
} from './ims-state.ts';
import { DUMPED_TABLES, StateUnavailableError, StateVersionError, parseGroups, toKeyRecord, toSilence, type KeyRow, type SilenceRow, type StateDump } from './ims-state.ts';

/** One step of the PostgreSQL schema. Released steps are never edited: a change is a new step at the end. */
interface PgMigration {
  version: number;
  /** What the step changes and why, for the error when it fails. */
  what: string;
  sql: string;
}

/** Step 1: the SQLite schema at its version 5 (interactive Slack), translated. */
const SCHEMA_1 = `
-- A Slack ts as a number ("1700000000.000100"), NULL when it is none; compared where SQLite compared ts.
CREATE FUNCTION ims_ts(ts TEXT) RETURNS NUMERIC LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT CASE WHEN ts ~ '^[0-9]{1,20}(\\.[0-9]{1,20})?$' THEN ts::NUMERIC END $$;
CREATE TABLE events (event_id TEXT PRIMARY KEY, received_at BIGINT NOT NULL);
CREATE INDEX events_by_age ON events (received_at);
CREATE TABLE messages (
  channel TEXT NOT NULL, ts TEXT NOT NULL, status TEXT NOT NULL, event TEXT NOT NULL, updated_at BIGINT NOT NULL,
  PRIMARY KEY (channel, ts));
CREATE INDEX messages_by_status ON messages (status, updated_at);
CREATE TABLE incidents (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, source_channel TEXT NOT NULL, source_ts TEXT NOT NULL,
  incident_channel TEXT NOT NULL, incident_ts TEXT NOT NULL, rule_number INTEGER NOT NULL, head TEXT NOT NULL,
  label TEXT NOT NULL, hotline TEXT, text TEXT NOT NULL, poster TEXT NOT NULL, created_at BIGINT NOT NULL,
  resolved_at BIGINT, resolved_by TEXT, permalink TEXT, groups TEXT,
  alert_key TEXT, repeats INTEGER NOT NULL DEFAULT 0, last_seen_ts TEXT, last_note_ts TEXT, flapping BOOLEAN NOT NULL DEFAULT false,
  post TEXT, acknowledged_at BIGINT, acknowledged_by TEXT,
  UNIQUE (source_channel, source_ts));
CREATE INDEX incidents_by_post ON incidents (incident_channel, incident_ts);
CREATE INDEX incidents_by_creation ON incidents (created_at, id);
CREATE TABLE incident_events (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  incident_id BIGINT NOT NULL, kind TEXT NOT NULL, "user" TEXT, detail TEXT, at BIGINT NOT NULL);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, at, seq);
CREATE TABLE cursors (channel TEXT PRIMARY KEY, last_ts TEXT NOT NULL);
CREATE TABLE reminders (channel TEXT NOT NULL, hour TEXT NOT NULL, PRIMARY KEY (channel, hour));
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE owned_channels (channel TEXT PRIMARY KEY, plugin TEXT NOT NULL);
CREATE TABLE plugin_store (plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (plugin, key));
CREATE TABLE outbox (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, plugin TEXT NOT NULL, key TEXT NOT NULL, grp TEXT NOT NULL,
  payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at BIGINT NOT NULL, last_error TEXT,
  created_at BIGINT NOT NULL, delivered_at BIGINT, dead BOOLEAN NOT NULL DEFAULT false, UNIQUE (plugin, key));
CREATE INDEX outbox_pending ON outbox (grp, id) WHERE delivered_at IS NULL AND NOT dead;
CREATE TABLE alert_keys (
  seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  key TEXT PRIMARY KEY, incident_id BIGINT NOT NULL, state TEXT NOT NULL, changed_ts TEXT NOT NULL, changes TEXT NOT NULL,
  last_seen_ts TEXT NOT NULL, title TEXT NOT NULL);
CREATE INDEX alert_keys_by_incident ON alert_keys (incident_id, seq);
CREATE TABLE digests (
  channel TEXT NOT NULL, ts TEXT NOT NULL, post TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (channel, ts));
CREATE TABLE silences (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, what TEXT NOT NULL, matcher TEXT NOT NULL, reason TEXT NOT NULL,
  created_by TEXT NOT NULL, origin TEXT NOT NULL, window_key TEXT UNIQUE, incident_id BIGINT, channel TEXT,
  starts_at BIGINT NOT NULL, ends_at BIGINT NOT NULL, ended_at BIGINT, ended_by TEXT, silenced INTEGER NOT NULL DEFAULT 0, summary_at BIGINT);
CREATE INDEX silences_by_end ON silences (ends_at);
CREATE TABLE silenced_alerts (
  silence_id BIGINT NOT NULL, channel TEXT NOT NULL, ts TEXT NOT NULL, alert_key TEXT, text TEXT NOT NULL, at BIGINT NOT NULL,
  recovered_ts TEXT, PRIMARY KEY (silence_id, channel, ts));
CREATE INDEX silenced_alerts_by_key ON silenced_alerts (alert_key);
`;

/**
 * Step 2: what only several instances need. `ims_clock_ms()` is the server's clock in epoch milliseconds
 * (`clock_timestamp()`, the time the statement runs, not the start of its transaction): one clock for every
 * instance, whatever their own clocks say. `leases`: work done by one instance at a time; a released or expired
 * lease keeps its row, so its `term` only grows. `posting_pace`: one token bucket per channel (the tokens it held
 * at `refilled_at`, growing from then; no turn before `blocked_until`, set by a 429), `granted` the answer of
 * the statement that last wrote it (read back by that statement's RETURNING).
 */
const SCHEMA_2 = `
CREATE FUNCTION ims_clock_ms() RETURNS BIGINT LANGUAGE sql VOLATILE PARALLEL SAFE
  AS $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL, term BIGINT NOT NULL, taken_at BIGINT NOT NULL);
CREATE TABLE posting_pace (
  channel TEXT PRIMARY KEY, tokens DOUBLE PRECISION NOT NULL, refilled_at BIGINT NOT NULL, blocked_until BIGINT NOT NULL, granted BOOLEAN NOT NULL);
`;

/** The PostgreSQL schema's history (its own numbering: step 1 is SQLite's version 5). */
const PG_MIGRATIONS: readonly PgMigration[] = [
  { version: 1, what: 'the schema of SQLite version 5 (incidents, lifecycles, digests, silences), translated', sql: SCHEMA_1 },
  { version: 2, what: 'leases and the shared posting pace, on the server clock', sql: SCHEMA_2 },
  { version: 3, what: 'which instance claimed a message (another finishes it when that one dies)', sql: 'ALTER TABLE messages ADD COLUMN claimed_by TEXT;' },
];

/** The PostgreSQL schema version this IMS writes and reads. */
export const PG_SCHEMA_VERSION = PG_MIGRATIONS[PG_MIGRATIONS.length - 1].version;

/** The advisory lock held while migrating ('IMS' and 1): one instance migrates, the others wait and find it done. */
const MIGRATION_LOCK = 0x494d5301;

/** PostgreSQL's type ids that IMS reads as numbers: BIGINT (epoch ms, ids, counts). */
const INT8_OID = 20;

/** Error codes after which the server has rolled the transaction back and it may be sent again. */
const TRANSIENT_CODES = new Set(['40P01', '40001']);

/**
 * The server could not be reached or went away (not a refusal of the statement itself): connection errors of the
 * socket, a query or connection time-out, SQLSTATE class 08 (connection exception) and 57P (operator intervention:
 * shut down, restarting).
 */
function unreachable(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: string; message?: string };
  if (typeof code === 'string' && (/^(08|57P)/.test(code) || /^E(CONNREFUSED|CONNRESET|PIPE|HOSTUNREACH|NETUNREACH|TIMEDOUT|AI_AGAIN)$/.test(code))) return true;
  return /timeout exceeded|Connection terminated|connection timeout|Query read timeout|Client has encountered a connection error/i.test(message ?? '');
}
const ATTEMPTS = 3;

const INCIDENT_COLUMNS = 'id, source_channel, source_ts, incident_channel, incident_ts, rule_number, head, label, hotline, text, poster, created_at, resolved_at, '
  + 'resolved_by, permalink, groups, alert_key, repeats, last_seen_ts, last_note_ts, flapping, acknowledged_at, acknowledged_by';

interface IncidentRow {
  id: number; source_channel: string; source_ts: string; incident_channel: string; incident_ts: string; rule_number: number; head: string; label: string;
  hotline: string | null; text: string; poster: string; created_at: number; resolved_at: number | null; resolved_by: string | null; permalink: string | null;
  groups: string | null; alert_key: string | null; repeats: number; last_seen_ts: string | null; last_note_ts: string | null; flapping: boolean;
  acknowledged_at: number | null; acknowledged_by: string | null;
}



interface OutboxRow {
  id: number; plugin: string; key: string; grp: string; payload: string; attempts: number; next_at: number; last_error: string | null; created_at: number;
}

function toIncident(row: IncidentRow): Incident {
  return {
    id: row.id, sourceChannel: row.source_channel, sourceTs: row.source_ts, incidentChannel: row.incident_channel, incidentTs: row.incident_ts,
    ruleNumber: row.rule_number, head: row.head, label: row.label, hotline: row.hotline ?? undefined, text: row.text, poster: row.poster,
    createdAt: row.created_at, resolvedAt: row.resolved_at ?? undefined, resolvedBy: row.resolved_by ?? undefined, permalink: row.permalink ?? undefined,
    groups: parseGroups(row.groups), alertKey: row.alert_key ?? undefined, repeats: row.repeats ?? 0, lastSeenTs: row.last_seen_ts ?? undefined,
    lastNoteTs: row.last_note_ts ?? undefined, flapping: row.flapping, acknowledgedAt: row.acknowledged_at ?? undefined, acknowledgedBy: row.acknowledged_by ?? undefined,
  };
}




/** A stored JSON text read back; undefined when there is none or it is damaged. */
function parseStored(stored: string | null | undefined): unknown {
  if (!stored) return undefined;
  try { return JSON.parse(stored); } catch { return undefined; }
}

/**
 * PostgreSQL refuses U+0000 in text (SQLite keeps it): replaced, so that a NUL in a Slack text cannot fail a
 * slice's commit. JSON is not affected (JSON.stringify writes it as `\u0000`).
 */
function storable(value: unknown): unknown {
  if (typeof value === 'string') return value.includes('\u0000') ? value.replaceAll('\u0000', '\uFFFD') : value;
  if (Array.isArray(value)) return value.map(storable);
  return value;
}

/**
 * A statement's parameters as sent. Times are epoch milliseconds in BIGINT columns, and one made from a Slack ts has a
 * fraction (`1796048498147.001`): whole milliseconds, as SQLite's INTEGER columns keep them. A parameter the statement
 * casts to `float8` keeps its fraction.
 */
function parametersOf(statement: Statement<unknown>): unknown[] {
  const fractional = new Set([...statement.text.matchAll(/\$(\d+)::float8/g)].map((m) => Number(m[1]) - 1));
  return statement.values.map((value, index) => (typeof value === 'number' && !Number.isInteger(value) && Number.isFinite(value) && !fractional.has(index) ? Math.floor(value) : storable(value)));
}

/** One operation: a statement, its parameters, and how its result becomes the operation's answer. */
interface Statement<T> {
  /** The operation's name, for errors. */
  name: string;
  text: string;
  values: unknown[];
  answer: (result: QueryResult) => T | Promise<T>;
}

/** A call gathered in a slice, settled when the slice's commit is acknowledged. */
interface GatheredCall {
  statement: Statement<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** The calls of one `withinOneCommit`; sealed when its work returned (later calls go on their own). */
interface Slice {
  calls: GatheredCall[];
  sealed: boolean;
  /** Set when a nested `withinOneCommit`'s work threw: the whole slice is rolled back, as SQLite would. */
  abortedBy?: unknown;
  /** Settles when the slice's commit is acknowledged, or rejects when it is not (nested slices answer after it). */
  committed: Promise<void>;
  settle: { resolve: () => void; reject: (error: unknown) => void };
}

function newSlice(): Slice {
  let settle!: Slice['settle'];
  const committed = new Promise<void>((resolve, reject) => { settle = { resolve, reject }; });
  // Whoever needs the outcome awaits it; a slice nobody nested in must not report an unhandled rejection.
  committed.catch(() => undefined);
  return { calls: [], sealed: false, committed, settle };
}

/** A settled-now marker: `Promise.race([work's promise, NOT_YET])` tells a promise that already failed from one still running. */
const NOT_YET = Symbol('not settled yet');

/** The URL without its password, to name the database in errors and logs. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres (an unparsable URL)';
  }
}

/**
 * Who holds a lease and until when. Times are epoch milliseconds on the clock the lease was taken by: the
 * server's (`clock_timestamp()`) unless the caller gave `now`.
 */
export interface Lease {
  holder: string;
  expiresAt: number;
  /** The fencing token: grows by one each time the lease is taken while free or expired (a renewal keeps it). */
  term: number;
}

/** `acquireLease`'s answer: whether the caller holds the lease now, and who does (the caller, or the other holder). */
export interface LeaseAnswer extends Lease {
  held: boolean;
}

/**
 * A time or a duration in epoch milliseconds as BIGINT takes it: a whole number (at least `min`), or undefined
 * for "the server's clock" where `optional`. Throws, naming the operation and the argument, when it is not.
 */
function wholeMs(operation: string, argument: string, value: number | undefined, min: number, optional = false): number | null {
  if (value === undefined && optional) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new TypeError(`PgState.${operation}: ${argument} must be a whole number of milliseconds ≥ ${min}, found ${String(value)}`);
  }
  return value;
}

/** What `PgState.open` takes besides the URL. */
export interface PgStateOptions {
  /** Pool settings (size, timeouts), passed to `pg.Pool` as they are. */
  pool?: Omit<PoolConfig, 'connectionString' | 'types'>;
  /** Errors of idle pooled connections (the server restarted, the network dropped): the pool replaces them. */
  onIdleError?: (error: Error) => void;
  /**
   * This instance's name, recorded with each message it claims: when it dies, the leader finishes the messages it
   * claimed and did not finish (`PendingMessage.claimedBy`).
   */
  instance?: string;
}

/** IMS's state in a PostgreSQL database, shared by every instance that opens it. Open it with `PgState.open`. */
export class PgState implements StateStore<'async'> {
  private readonly pool: Pool;
  private readonly slices = new AsyncLocalStorage<Slice>();
  /** The commit of the last slice sent: the next waits for it. */
  private sliceCommits: Promise<unknown> = Promise.resolve();
  private closed = false;
  private closing?: Promise<void>;
  /** The database, password left out: for errors. */
  readonly where: string;
  /** This instance's name, recorded with its claims. */
  private readonly instance?: string;

  private constructor(url: string, options: PgStateOptions) {
    this.where = describeUrl(url);
    this.instance = options.instance;
    // The client is loaded with the first store opened: importing IMS (a config, `--test`) never loads it.
    const pg = createRequire(import.meta.url)('pg') as typeof pgModule;
    const types = new pg.TypeOverrides();
    // BIGINT columns hold epoch milliseconds, ids and counts, all below 2^53: numbers, as SQLite gives them.
    types.setTypeParser(INT8_OID, (text: string) => Number(text));
    // A connection that cannot be made in 10 s fails (a server gone or frozen must not hang a caller forever).
    this.pool = new pg.Pool({
      max: 10, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 5000, keepAlive: true,
      // A server frozen mid-query (SIGSTOP, a network partition) must not hold a caller forever either.
      query_timeout: 10_000, ...options.pool, connectionString: url, types, pipeline: true,
    });
    this.pool.on('error', (error) => options.onIdleError?.(error));
  }

  /** Connect to `url`, bring its schema to `PG_SCHEMA_VERSION` (once, however many instances start together) and return the store. */
  static async open(url: string, options: PgStateOptions = {}): Promise<PgState> {
    const state = new PgState(url, options);
    try {
      await state.migrate();
    } catch (error) {
      await state.close();
      throw error;
    }
    return state;
  }

  /** Apply the missing migration steps, each in its own transaction, holding the advisory lock meanwhile. */
  private async migrate(): Promise<void> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw new Error(`PostgreSQL state ${this.where}: cannot connect: ${(error as Error).message}`, { cause: error });
    }
    try {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      try {
        await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, what TEXT NOT NULL, applied_at BIGINT NOT NULL)');
        const found = Number((await client.query('SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations')).rows[0].version);
        if (found > PG_SCHEMA_VERSION) throw new StateVersionError(this.where, found, PG_SCHEMA_VERSION);
        let current = found;
        for (const step of PG_MIGRATIONS) {
          if (step.version <= current) continue;
          await this.applyStep(client, step, current);
          current = step.version;
        }
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      }
    } finally {
      client.release();
    }
  }

  private async applyStep(client: PoolClient, step: PgMigration, before: number): Promise<void> {
    try {
      await client.query('BEGIN');
      await client.query(step.sql);
      await client.query('INSERT INTO schema_migrations (version, what, applied_at) VALUES ($1, $2, $3)', [step.version, step.what, Date.now()]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw new Error(`PostgreSQL state ${this.where}: upgrading the schema to version ${step.version} (${step.what}) failed, the database is left at `
        + `version ${before}: ${(error as Error).message}`, { cause: error });
    }
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Run one operation: gathered into the slice being built, else sent on its own (retried after a deadlock). */
  private run<T>(statement: Statement<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`PostgreSQL state ${this.where}: ${statement.name} after the state was closed`));
    const slice = this.slices.getStore();
    if (slice && !slice.sealed) {
      const answer = new Promise<T>((resolve, reject) => {
        slice.calls.push({ statement: statement as Statement<unknown>, resolve: resolve as (value: unknown) => void, reject });
      });
      // A failed commit rejects every call of its slice, and `withinOneCommit` reports it: a call whose answer
      // nobody awaits (a record made in passing) must not also crash the process as an unhandled rejection.
      answer.catch(() => undefined);
      return answer;
    }
    return this.runAlone(statement);
  }

  private async runAlone<T>(statement: Statement<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.pool.query(statement.text, parametersOf(statement as Statement<unknown>));
        return await statement.answer(result);
      } catch (error) {
        if (attempt < ATTEMPTS && TRANSIENT_CODES.has((error as { code?: string }).code ?? '')) {
          await pause(attempt);
          continue;
        }
        throw this.failure(`${statement.name} failed`, error);
      }
    }
  }

  private failure(what: string, error: unknown): Error {
    const text = `PostgreSQL state ${this.where}: ${what}: ${(error as Error).message}`;
    const wrapped = unreachable(error) ? new StateUnavailableError(text, { cause: error }) : new Error(text, { cause: error });
    const code = (error as { code?: string }).code;
    if (code) Object.assign(wrapped, { code });
    return wrapped;
  }

  withinOneCommit<T>(work: () => T | Promise<T>): Promise<T> {
    const outer = this.slices.getStore();
    if (outer && !outer.sealed) return this.joinSlice(outer, work);
    const slice = newSlice();
    let result: T | Promise<T>;
    try {
      result = this.slices.run(slice, work);
    } catch (error) {
      slice.sealed = true;
      this.abandon(slice, error);
      return Promise.reject(error);
    }
    slice.sealed = true;
    return this.finishSlice(slice, result);
  }

  /** A `withinOneCommit` inside another's work joins it: its calls go in the outer commit, its answer after it. */
  private joinSlice<T>(outer: Slice, work: () => T | Promise<T>): Promise<T> {
    let result: T | Promise<T>;
    try {
      result = work();
    } catch (error) {
      outer.abortedBy ??= error;
      return Promise.reject(error);
    }
    // Answered once the outer slice is committed (its work returns after this one's).
    return outer.committed.then(() => result);
  }

  private async finishSlice<T>(slice: Slice, result: T | Promise<T>): Promise<T> {
    try {
      // An async work that threw before its first await has failed already: nothing of it is sent.
      await Promise.race([result, NOT_YET]);
      if (slice.abortedBy !== undefined) throw slice.abortedBy;
    } catch (error) {
      this.abandon(slice, error);
      throw error;
    }
    try {
      if (slice.calls.length) {
        // Slices commit in the order their work ran (a later claim never lands before an earlier one: cursors and
        // per-channel order hold), while new frames are still acknowledged and gathered meanwhile.
        const calls = slice.calls;
        const commit = this.sliceCommits.then(() => this.commitSlice(calls));
        this.sliceCommits = commit.catch(() => undefined);
        await commit;
      }
    } catch (error) {
      slice.settle.reject(error);
      throw error;
    } finally {
      // Work started in the slice keeps it as its context: the answers it held are let go.
      slice.calls = [];
    }
    slice.settle.resolve();
    return await result;
  }

  /** The slice's work failed before it was sent: its calls are rejected (their caller knows through `withinOneCommit`). */
  private abandon(slice: Slice, cause: unknown): void {
    const error = new Error(`PostgreSQL state ${this.where}: not recorded: the work of its commit failed (${(cause as Error)?.message ?? String(cause)})`, { cause });
    for (const call of slice.calls) call.reject(error);
    slice.calls = [];
    slice.settle.reject(error);
  }

  /** Send the calls as one transaction (again after a deadlock), then settle each with its answer, or all with the failure. */
  private async commitSlice(calls: GatheredCall[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      let results: QueryResult[];
      try {
        results = await this.sendInOneTransaction(calls.map((call) => call.statement));
      } catch (error) {
        if (attempt < ATTEMPTS && TRANSIENT_CODES.has((error as { code?: string }).code ?? '')) {
          await pause(attempt);
          continue;
        }
        const names = [...new Set(calls.map((call) => call.statement.name))].join(', ');
        const failure = this.failure(`the commit of ${calls.length} call(s) (${names}) failed and none of them is recorded`, error);
        for (const call of calls) call.reject(failure);
        throw failure;
      }
      calls.forEach((call, index) => {
        try {
          call.resolve(call.statement.answer(results[index]));
        } catch (error) {
          call.reject(this.failure(`${call.statement.name}: reading its answer failed`, error));
        }
      });
      return;
    }
  }

  /** `BEGIN; …; COMMIT` pipelined on one client: one round trip. Throws the first statement's error (the transaction then rolled back). */
  private async sendInOneTransaction(statements: Statement<unknown>[]): Promise<QueryResult[]> {
    const client = await this.pool.connect();
    let committed = false;
    try {
      const sent = [client.query('BEGIN'), ...statements.map((s) => client.query(s.text, parametersOf(s))), client.query('COMMIT')];
      const settled = await Promise.allSettled(sent);
      // After a failed statement the ones behind it fail with 25P02 (transaction aborted): the first real cause is reported.
      const failures = settled.map((outcome, index) => ({ outcome, index })).filter(({ outcome }) => outcome.status === 'rejected');
      if (failures.length) {
        const first = failures.find(({ outcome }) => (outcome as PromiseRejectedResult).reason?.code !== '25P02') ?? failures[0];
        const reason = (first.outcome as PromiseRejectedResult).reason as Error;
        const where = first.index === 0 ? 'BEGIN' : first.index === sent.length - 1 ? 'COMMIT' : statements[first.index - 1].name;
        throw Object.assign(new Error(`${where}: ${reason.message}`, { cause: reason }), { code: (reason as { code?: string }).code });
      }
      const commit = (settled.at(-1) as PromiseFulfilledResult<QueryResult>).value;
      if (commit.command !== 'COMMIT') throw new Error(`COMMIT was answered ${commit.command}`);
      committed = true;
      return settled.slice(1, -1).map((outcome) => (outcome as PromiseFulfilledResult<QueryResult>).value);
    } finally {
      // A client whose transaction did not commit is not reused: its connection may be in any state.
      client.release(!committed);
    }
  }

  rememberEvent(eventId: string, now = Date.now()): Promise<boolean> {
    return this.run({
      name: 'rememberEvent', values: [eventId, now], answer: (r) => r.rowCount === 1,
      text: 'INSERT INTO events (event_id, received_at) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    });
  }

  claimMessage(channel: string, ts: string, event: unknown, now = Date.now(), advanceCursor = true): Promise<MessageClaim> {
    return this.run({
      name: 'claimMessage', values: [channel, ts, JSON.stringify(event), now, advanceCursor, this.instance ?? null],
      // A row back from `claimed`: new. None: claimed before, its status read by the same statement. NULL status: another
      // instance's claim committed while this statement waited for it (after this statement's snapshot): taken, not finished.
      text: `WITH claimed AS (
          INSERT INTO messages (channel, ts, status, event, updated_at, claimed_by) VALUES ($1::text, $2::text, 'pending', $3::text, $4::bigint, $6::text)
          ON CONFLICT (channel, ts) DO NOTHING RETURNING ts),
        moved AS (
          INSERT INTO cursors AS c (channel, last_ts) SELECT $1::text, ts FROM claimed WHERE $5::boolean
          ON CONFLICT (channel) DO UPDATE SET last_ts = excluded.last_ts WHERE ims_ts(excluded.last_ts) > COALESCE(ims_ts(c.last_ts), -1))
        SELECT CASE WHEN EXISTS (SELECT 1 FROM claimed) THEN 'new' ELSE (SELECT status FROM messages WHERE channel = $1::text AND ts = $2::text) END AS claim`,
      answer: (r) => (r.rows[0]?.claim ?? 'pending') as MessageClaim,
    });
  }

  finishMessage(channel: string, ts: string, now = Date.now()): Promise<void> {
    return this.run({
      name: 'finishMessage', values: [now, channel, ts], answer: () => undefined,
      text: `UPDATE messages SET status = 'done', updated_at = $1 WHERE channel = $2 AND ts = $3`,
    });
  }

  failMessage(channel: string, ts: string, now = Date.now()): Promise<void> {
    return this.run({
      name: 'failMessage', values: [now, channel, ts], answer: () => undefined,
      text: `UPDATE messages SET status = 'failed', updated_at = $1 WHERE channel = $2 AND ts = $3`,
    });
  }

  pendingMessages(claimedBefore = Infinity): Promise<PendingMessage[]> {
    return this.run({
      name: 'pendingMessages', values: [Number.isFinite(claimedBefore) ? claimedBefore : null],
      text: `SELECT channel, ts, event, claimed_by FROM messages WHERE status = 'pending' AND ($1::bigint IS NULL OR updated_at < $1::bigint) ORDER BY ims_ts(ts), ts`,
      answer: (r) => r.rows.map((row: { channel: string; ts: string; event: string; claimed_by: string | null }) => ({
        channel: row.channel, ts: row.ts, event: JSON.parse(row.event) as Record<string, unknown>, ...(row.claimed_by ? { claimedBy: row.claimed_by } : {}),
      })),
    });
  }

  failedMessages(since: number): Promise<(PendingMessage & { failedAt: number })[]> {
    return this.run({
      name: 'failedMessages', values: [since],
      text: `SELECT channel, ts, event, updated_at FROM messages WHERE status = 'failed' AND updated_at >= $1 ORDER BY ims_ts(ts), ts`,
      answer: (r) => r.rows.map((row: { channel: string; ts: string; event: string; updated_at: number }) => ({
        channel: row.channel, ts: row.ts, event: JSON.parse(row.event) as Record<string, unknown>, failedAt: row.updated_at,
      })),
    });
  }

  cursor(channel: string): Promise<string | undefined> {
    return this.run({
      name: 'cursor', values: [channel], text: 'SELECT last_ts FROM cursors WHERE channel = $1',
      answer: (r) => (r.rows[0] as { last_ts: string } | undefined)?.last_ts,
    });
  }

  cursors(): Promise<Map<string, string>> {
    return this.run({
      name: 'cursors', values: [], text: 'SELECT channel, last_ts FROM cursors',
      answer: (r) => new Map(r.rows.map((row: { channel: string; last_ts: string }) => [row.channel, row.last_ts])),
    });
  }

  advanceCursor(channel: string, ts: string): Promise<void> {
    return this.run({
      name: 'advanceCursor', values: [channel, ts], answer: () => undefined,
      text: `INSERT INTO cursors AS c (channel, last_ts) VALUES ($1, $2)
        ON CONFLICT (channel) DO UPDATE SET last_ts = excluded.last_ts WHERE ims_ts(excluded.last_ts) > COALESCE(ims_ts(c.last_ts), -1)`,
    });
  }

  addIncident(incident: NewIncident): Promise<Incident> {
    const groups = { ...incident.groups };
    const { finishesMessage: _, post: __, ...recorded } = incident;
    return this.run({
      name: 'addIncident',
      values: [incident.sourceChannel, incident.sourceTs, incident.incidentChannel, incident.incidentTs, incident.ruleNumber, incident.head, incident.label,
        incident.hotline ?? null, incident.text, incident.poster, incident.createdAt, incident.permalink ?? null, JSON.stringify(groups),
        incident.alertKey ?? null, incident.post === undefined ? null : JSON.stringify(incident.post), Date.now(), incident.finishesMessage !== false],
      // The incident already recorded for this source, else a new one (its message finished with it): one statement.
      text: `WITH existing AS (SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE source_channel = $1::text AND source_ts = $2::text),
        inserted AS (
          INSERT INTO incidents (source_channel, source_ts, incident_channel, incident_ts, rule_number, head, label, hotline, text, poster, created_at,
            permalink, groups, alert_key, post)
          SELECT $1::text, $2::text, $3::text, $4::text, $5::integer, $6::text, $7::text, $8::text, $9::text, $10::text, $11::bigint, $12::text, $13::text,
            $14::text, $15::text
          WHERE NOT EXISTS (SELECT 1 FROM existing)
          ON CONFLICT (source_channel, source_ts) DO NOTHING RETURNING id),
        finished AS (
          UPDATE messages SET status = 'done', updated_at = $16::bigint
          WHERE $17::boolean AND channel = $1::text AND ts = $2::text AND EXISTS (SELECT 1 FROM inserted))
        SELECT (SELECT id FROM inserted) AS inserted_id, existing.* FROM (SELECT 1) AS one LEFT JOIN existing ON true`,
      answer: async (r) => {
        const row = r.rows[0] as IncidentRow & { inserted_id: number | null };
        if (row.inserted_id !== null) return { ...recorded, groups, id: row.inserted_id, repeats: 0, flapping: false };
        if (row.id !== null) return toIncident(row);
        // Another instance recorded it while this statement waited (after its snapshot): read it now.
        const raced = await this.incidentBySource(incident.sourceChannel, incident.sourceTs);
        if (!raced) throw new Error(`addIncident: no incident recorded for ${incident.sourceChannel}:${incident.sourceTs} after a conflict on it`);
        return raced;
      },
    });
  }

  private incidentWhere(name: string, where: string, values: unknown[]): Promise<Incident | undefined> {
    return this.run({
      name, values, text: `SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE ${where} ORDER BY id LIMIT 1`,
      answer: (r) => (r.rows[0] ? toIncident(r.rows[0] as IncidentRow) : undefined),
    });
  }

  incidentBySource(channel: string, ts: string): Promise<Incident | undefined> {
    return this.incidentWhere('incidentBySource', 'source_channel = $1 AND source_ts = $2', [channel, ts]);
  }

  incidentByPost(channel: string, ts: string): Promise<Incident | undefined> {
    return this.incidentWhere('incidentByPost', 'incident_channel = $1 AND incident_ts = $2', [channel, ts]);
  }

  incidentById(id: number): Promise<Incident | undefined> {
    return this.incidentWhere('incidentById', 'id = $1', [id]);
  }

  incidentsByPost(channel: string, ts: string): Promise<Incident[]> {
    return this.run({
      name: 'incidentsByPost', values: [channel, ts],
      text: `SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE incident_channel = $1 AND incident_ts = $2 ORDER BY id`,
      answer: (r) => (r.rows as IncidentRow[]).map(toIncident),
    });
  }

  addDigest(channel: string, ts: string, post: unknown, now = Date.now()): Promise<void> {
    return this.run({
      name: 'addDigest', values: [channel, ts, JSON.stringify(post), now], answer: () => undefined,
      text: 'INSERT INTO digests (channel, ts, post, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
    });
  }

  digestPost(channel: string, ts: string): Promise<unknown> {
    return this.run({
      name: 'digestPost', values: [channel, ts], text: 'SELECT post FROM digests WHERE channel = $1 AND ts = $2',
      answer: (r) => parseStored((r.rows[0] as { post: string } | undefined)?.post),
    });
  }

  listIncidents(filter: IncidentFilter = {}): Promise<Incident[]> {
    const where: string[] = [];
    const values: (string | number)[] = [];
    if (filter.since !== undefined) { values.push(filter.since); where.push(`created_at >= $${values.length}`); }
    if (filter.open !== undefined) where.push(filter.open ? 'resolved_at IS NULL' : 'resolved_at IS NOT NULL');
    if (filter.channel !== undefined) { values.push(filter.channel); where.push(`incident_channel = $${values.length}`); }
    return this.run({
      name: 'listIncidents', values,
      text: `SELECT ${INCIDENT_COLUMNS} FROM incidents ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id`,
      answer: (r) => (r.rows as IncidentRow[]).map(toIncident),
    });
  }

  incidentCounts(): Promise<{ opened: number; resolved: number; open: number }> {
    return this.run({
      name: 'incidentCounts', values: [], text: 'SELECT COUNT(*) AS opened, COUNT(resolved_at) AS resolved FROM incidents',
      answer: (r) => {
        const { opened, resolved } = r.rows[0] as { opened: number; resolved: number };
        return { opened, resolved, open: opened - resolved };
      },
    });
  }

  /** Change an incident when `condition` holds, and record `kind` as its event if it changed: one statement, true if it changed. */
  private changeIncident(name: string, set: string, condition: string, event: { kind: IncidentEvent['kind']; detail?: string | null }, id: number, at: number, by: string): Promise<boolean> {
    return this.run({
      name, values: [id, at, by, event.kind, event.detail ?? null],
      text: `WITH changed AS (UPDATE incidents SET ${set} WHERE id = $1::bigint AND ${condition} RETURNING id),
        noted AS (INSERT INTO incident_events (incident_id, kind, "user", detail, at) SELECT id, $4::text, $3::text, $5::text, $2::bigint FROM changed)
        SELECT COUNT(*) AS changed FROM changed`,
      answer: (r) => (r.rows[0] as { changed: number }).changed === 1,
    });
  }

  resolveIncident(id: number, at: number, by: string): Promise<boolean> {
    return this.changeIncident('resolveIncident', 'resolved_at = $2::bigint, resolved_by = $3::text', 'resolved_at IS NULL', { kind: 'resolve' }, id, at, by);
  }

  reopenIncident(id: number, at: number, by: string): Promise<boolean> {
    // $2 and $3 are only the event's: typed there.
    return this.changeIncident('reopenIncident', 'resolved_at = NULL, resolved_by = NULL', 'resolved_at IS NOT NULL', { kind: 'reopen' }, id, at, by);
  }

  acknowledgeIncident(id: number, at: number, by: string, how?: string): Promise<boolean> {
    // Without `how` the event that acknowledged it (a reaction, a reply) is recorded already: none is added.
    return this.run({
      name: 'acknowledgeIncident', values: [id, at, by, how ?? null],
      text: `WITH changed AS (UPDATE incidents SET acknowledged_at = $2::bigint, acknowledged_by = $3::text WHERE id = $1::bigint AND acknowledged_at IS NULL RETURNING id),
        noted AS (INSERT INTO incident_events (incident_id, kind, "user", detail, at)
          SELECT id, 'acknowledge', $3::text, $4::text, $2::bigint FROM changed WHERE $4::text IS NOT NULL)
        SELECT COUNT(*) AS changed FROM changed`,
      answer: (r) => (r.rows[0] as { changed: number }).changed === 1,
    });
  }

  addIncidentEvent(event: IncidentEvent): Promise<void> {
    return this.run({
      name: 'addIncidentEvent', values: [event.incidentId, event.kind, event.user ?? null, event.detail ?? null, event.at], answer: () => undefined,
      text: 'INSERT INTO incident_events (incident_id, kind, "user", detail, at) VALUES ($1, $2, $3, $4, $5)',
    });
  }

  incidentEvents(id: number): Promise<IncidentEvent[]> {
    return this.run({
      name: 'incidentEvents', values: [id], text: 'SELECT incident_id, kind, "user", detail, at FROM incident_events WHERE incident_id = $1 ORDER BY at, seq',
      answer: (r) => r.rows.map((row: { incident_id: number; kind: IncidentEvent['kind']; user: string | null; detail: string | null; at: number }) => ({
        incidentId: row.incident_id, kind: row.kind, user: row.user ?? undefined, detail: row.detail ?? undefined, at: row.at,
      })),
    });
  }

  keyRecord(key: string): Promise<KeyRecord | undefined> {
    return this.run({
      name: 'keyRecord', values: [key], text: 'SELECT key, incident_id, state, changed_ts, changes, last_seen_ts, title FROM alert_keys WHERE key = $1',
      answer: (r) => (r.rows[0] ? toKeyRecord(r.rows[0] as KeyRow) : undefined),
    });
  }

  keyRecords(incidentId: number): Promise<KeyRecord[]> {
    return this.run({
      name: 'keyRecords', values: [incidentId],
      text: 'SELECT key, incident_id, state, changed_ts, changes, last_seen_ts, title FROM alert_keys WHERE incident_id = $1 ORDER BY seq',
      answer: (r) => (r.rows as KeyRow[]).map(toKeyRecord),
    });
  }

  saveKeyRecords(records: readonly KeyRecord[]): Promise<void> {
    // One row per key, the last given winning in the place of its first (as SQLite's upserts one by one leave them).
    const byKey = new Map<string, KeyRecord>();
    for (const record of records) byKey.set(record.key, record);
    const rows = [...byKey.values()];
    const first = records.find((r) => r.incidentId > 0);
    return this.run({
      name: 'saveKeyRecords', answer: () => undefined,
      values: [rows.map((r) => r.key), rows.map((r) => r.incidentId), rows.map((r) => r.state), rows.map((r) => r.changedTs),
        rows.map((r) => JSON.stringify(r.changes)), rows.map((r) => r.lastSeenTs), rows.map((r) => r.title), first?.key ?? null, first?.incidentId ?? null],
      text: `WITH given AS (
          SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY
            AS g(key, incident_id, state, changed_ts, changes, last_seen_ts, title, place)),
        saved AS (
          INSERT INTO alert_keys (key, incident_id, state, changed_ts, changes, last_seen_ts, title)
          SELECT key, incident_id, state, changed_ts, changes, last_seen_ts, title FROM given ORDER BY place
          ON CONFLICT (key) DO UPDATE SET incident_id = excluded.incident_id, state = excluded.state, changed_ts = excluded.changed_ts,
            changes = excluded.changes, last_seen_ts = excluded.last_seen_ts, title = excluded.title),
        keyed AS (UPDATE incidents SET alert_key = $8::text WHERE $8::text IS NOT NULL AND id = $9::bigint AND alert_key IS NULL)
        SELECT 1`,
    });
  }

  noteRepeat(incidentId: number, ts: string, noted: boolean): Promise<void> {
    return this.run({
      name: 'noteRepeat', values: [ts, noted ? ts : null, incidentId], answer: () => undefined,
      text: 'UPDATE incidents SET repeats = repeats + 1, last_seen_ts = $1, last_note_ts = COALESCE($2, last_note_ts) WHERE id = $3',
    });
  }

  noteSeen(incidentId: number, ts: string): Promise<void> {
    return this.run({ name: 'noteSeen', values: [ts, incidentId], answer: () => undefined, text: 'UPDATE incidents SET last_seen_ts = $1 WHERE id = $2' });
  }

  setFlapping(incidentId: number, flapping: boolean): Promise<void> {
    return this.run({ name: 'setFlapping', values: [flapping, incidentId], answer: () => undefined, text: 'UPDATE incidents SET flapping = $1 WHERE id = $2' });
  }

  flappingIncidents(): Promise<Incident[]> {
    return this.run({
      name: 'flappingIncidents', values: [], text: `SELECT ${INCIDENT_COLUMNS} FROM incidents WHERE flapping ORDER BY id`,
      answer: (r) => (r.rows as IncidentRow[]).map(toIncident),
    });
  }

  setIncidentPost(incidentId: number, post: unknown): Promise<void> {
    return this.run({ name: 'setIncidentPost', values: [JSON.stringify(post), incidentId], answer: () => undefined, text: 'UPDATE incidents SET post = $1 WHERE id = $2' });
  }

  incidentPost(incidentId: number): Promise<unknown> {
    return this.run({
      name: 'incidentPost', values: [incidentId], text: 'SELECT post FROM incidents WHERE id = $1',
      answer: (r) => parseStored((r.rows[0] as { post: string | null } | undefined)?.post),
    });
  }

  addSilence(silence: NewSilence): Promise<Silence> {
    return this.run({
      name: 'addSilence',
      values: [silence.what, JSON.stringify(silence.matcher), silence.reason, silence.createdBy, silence.origin, silence.windowKey ?? null,
        silence.incidentId ?? null, silence.channel ?? null, silence.startsAt, silence.endsAt],
      // A maintenance window's opening recorded before (same window_key) is returned as it is.
      text: `WITH added AS (
          INSERT INTO silences (what, matcher, reason, created_by, origin, window_key, incident_id, channel, starts_at, ends_at)
          VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::bigint, $8::text, $9::bigint, $10::bigint)
          ON CONFLICT DO NOTHING RETURNING *)
        SELECT * FROM added
        UNION ALL SELECT * FROM silences WHERE $6::text IS NOT NULL AND window_key = $6::text AND NOT EXISTS (SELECT 1 FROM added)`,
      answer: async (r) => {
        if (r.rows[0]) return toSilence(r.rows[0] as SilenceRow);
        // Another instance recorded this window's opening while this statement waited: read it now.
        const raced = silence.windowKey === undefined ? undefined : await this.silenceByWindow(silence.windowKey);
        if (!raced) throw new Error(`addSilence: nothing recorded for ${silence.windowKey ?? silence.what} after a conflict on it`);
        return raced;
      },
    });
  }

  private silenceByWindow(windowKey: string): Promise<Silence | undefined> {
    return this.run({
      name: 'silenceByWindow', values: [windowKey], text: 'SELECT * FROM silences WHERE window_key = $1',
      answer: (r) => (r.rows[0] ? toSilence(r.rows[0] as SilenceRow) : undefined),
    });
  }

  silenceById(id: number): Promise<Silence | undefined> {
    return this.run({
      name: 'silenceById', values: [id], text: 'SELECT * FROM silences WHERE id = $1',
      answer: (r) => (r.rows[0] ? toSilence(r.rows[0] as SilenceRow) : undefined),
    });
  }

  private silences(name: string, text: string, values: unknown[]): Promise<Silence[]> {
    return this.run({ name, values, text, answer: (r) => (r.rows as SilenceRow[]).map(toSilence) });
  }

  activeSilences(now: number): Promise<Silence[]> {
    return this.silences('activeSilences', 'SELECT * FROM silences WHERE starts_at <= $1 AND ends_at > $1 AND ended_at IS NULL ORDER BY id', [now]);
  }

  silencesAt(at: number): Promise<Silence[]> {
    return this.silences('silencesAt', 'SELECT * FROM silences WHERE starts_at <= $1 AND $1 < LEAST(ends_at, COALESCE(ended_at, ends_at)) ORDER BY id', [at]);
  }

  endedSilences(since: number, now: number): Promise<Silence[]> {
    return this.silences('endedSilences', `SELECT * FROM silences WHERE COALESCE(ended_at, ends_at) >= $1 AND (ended_at IS NOT NULL OR ends_at <= $2)
      ORDER BY COALESCE(ended_at, ends_at) DESC, id DESC`, [since, now]);
  }

  endSilence(id: number, at: number, by: string): Promise<boolean> {
    return this.run({
      name: 'endSilence', values: [at, by, id], answer: (r) => r.rowCount === 1,
      text: 'UPDATE silences SET ended_at = $1, ended_by = $2 WHERE id = $3 AND ended_at IS NULL AND ends_at > $1',
    });
  }

  silencesToSummarise(now: number): Promise<Silence[]> {
    return this.silences('silencesToSummarise', 'SELECT * FROM silences WHERE summary_at IS NULL AND (ended_at IS NOT NULL OR ends_at <= $1) ORDER BY id', [now]);
  }

  markSilenceSummarised(id: number, at: number): Promise<void> {
    return this.run({
      name: 'markSilenceSummarised', values: [at, id], answer: () => undefined,
      text: 'UPDATE silences SET summary_at = $1 WHERE id = $2 AND summary_at IS NULL',
    });
  }

  noteSilenced(alert: Omit<SilencedAlert, 'recoveredTs'>): Promise<boolean> {
    return this.run({
      name: 'noteSilenced', values: [alert.silenceId, alert.channel, alert.ts, alert.key ?? null, alert.text, alert.at],
      text: `WITH noted AS (
          INSERT INTO silenced_alerts (silence_id, channel, ts, alert_key, text, at) VALUES ($1::bigint, $2::text, $3::text, $4::text, $5::text, $6::bigint)
          ON CONFLICT DO NOTHING RETURNING silence_id),
        counted AS (UPDATE silences SET silenced = silenced + 1 WHERE id IN (SELECT silence_id FROM noted))
        SELECT COUNT(*) AS noted FROM noted`,
      answer: (r) => (r.rows[0] as { noted: number }).noted === 1,
    });
  }

  noteSilencedRecovery(key: string, ts: string): Promise<void> {
    // SQLite compares CAST(ts AS REAL), which reads what is no number as 0.
    return this.run({
      name: 'noteSilencedRecovery', values: [ts, key], answer: () => undefined,
      text: `UPDATE silenced_alerts SET recovered_ts = $1::text
        WHERE alert_key = $2::text AND recovered_ts IS NULL AND COALESCE(ims_ts(ts), 0) < COALESCE(ims_ts($1::text), 0)`,
    });
  }

  silencedAlerts(silenceId: number): Promise<SilencedAlert[]> {
    return this.run({
      name: 'silencedAlerts', values: [silenceId],
      text: 'SELECT silence_id, channel, ts, alert_key, text, at, recovered_ts FROM silenced_alerts WHERE silence_id = $1 ORDER BY at, ims_ts(ts), ts',
      answer: (r) => r.rows.map((row: { silence_id: number; channel: string; ts: string; alert_key: string | null; text: string; at: number; recovered_ts: string | null }) => ({
        silenceId: row.silence_id, channel: row.channel, ts: row.ts, key: row.alert_key ?? undefined, text: row.text, at: row.at, recoveredTs: row.recovered_ts ?? undefined,
      })),
    });
  }

  claimReminder(channel: string, hour: string): Promise<boolean> {
    return this.run({
      name: 'claimReminder', values: [channel, hour], answer: (r) => r.rowCount === 1,
      text: 'INSERT INTO reminders (channel, hour) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    });
  }

  releaseReminder(channel: string, hour: string): Promise<void> {
    return this.run({ name: 'releaseReminder', values: [channel, hour], answer: () => undefined, text: 'DELETE FROM reminders WHERE channel = $1 AND hour = $2' });
  }

  getMeta(key: string): Promise<string | undefined> {
    return this.run({
      name: 'getMeta', values: [key], text: 'SELECT value FROM meta WHERE key = $1',
      answer: (r) => (r.rows[0] as { value: string } | undefined)?.value,
    });
  }

  setMeta(key: string, value: string): Promise<void> {
    return this.run({
      name: 'setMeta', values: [key, value], answer: () => undefined,
      text: 'INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    });
  }

  ownChannel(channel: string, plugin: string): Promise<void> {
    return this.run({
      name: 'ownChannel', values: [channel, plugin], answer: () => undefined,
      text: 'INSERT INTO owned_channels (channel, plugin) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    });
  }

  ownedChannels(): Promise<Set<string>> {
    return this.run({
      name: 'ownedChannels', values: [], text: 'SELECT channel FROM owned_channels',
      answer: (r) => new Set(r.rows.map((row: { channel: string }) => row.channel)),
    });
  }

  storeGet(plugin: string, key: string): Promise<unknown> {
    return this.run({
      name: 'storeGet', values: [plugin, key], text: 'SELECT value FROM plugin_store WHERE plugin = $1 AND key = $2',
      answer: (r) => (r.rows[0] ? JSON.parse((r.rows[0] as { value: string }).value) : undefined),
    });
  }

  storeSet(plugin: string, key: string, value: unknown): Promise<void> {
    if (value === undefined) {
      return this.run({ name: 'storeSet', values: [plugin, key], answer: () => undefined, text: 'DELETE FROM plugin_store WHERE plugin = $1 AND key = $2' });
    }
    return this.run({
      name: 'storeSet', values: [plugin, key, JSON.stringify(value)], answer: () => undefined,
      text: 'INSERT INTO plugin_store (plugin, key, value) VALUES ($1, $2, $3) ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value',
    });
  }

  enqueue(plugin: string, key: string, group: string, payload: unknown, now = Date.now()): Promise<boolean> {
    return this.run({
      name: 'enqueue', values: [plugin, key, group, JSON.stringify(payload ?? null), now], answer: (r) => r.rowCount === 1,
      text: 'INSERT INTO outbox (plugin, key, grp, payload, next_at, created_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING',
    });
  }

  dueDeliveries(now = Date.now(), limit = 20): Promise<OutboxItem[]> {
    return this.run({
      name: 'dueDeliveries', values: [now, limit],
      text: `SELECT id, plugin, key, grp, payload, attempts, next_at, last_error, created_at FROM outbox
        WHERE id IN (SELECT MIN(id) FROM outbox WHERE delivered_at IS NULL AND NOT dead GROUP BY grp) AND next_at <= $1 ORDER BY id LIMIT $2`,
      answer: (r) => (r.rows as OutboxRow[]).map((row) => ({
        id: row.id, plugin: row.plugin, key: row.key, group: row.grp, payload: JSON.parse(row.payload), attempts: row.attempts,
        nextAt: row.next_at, lastError: row.last_error ?? undefined, createdAt: row.created_at,
      })),
    });
  }

  markDelivered(id: number, now = Date.now()): Promise<void> {
    return this.run({
      name: 'markDelivered', values: [now, id], answer: () => undefined,
      text: 'UPDATE outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2',
    });
  }

  markRetry(id: number, nextAt: number, error: string): Promise<void> {
    return this.run({
      name: 'markRetry', values: [nextAt, error, id], answer: () => undefined,
      text: 'UPDATE outbox SET attempts = attempts + 1, next_at = $1, last_error = $2 WHERE id = $3',
    });
  }

  markDead(id: number, error: string): Promise<void> {
    return this.run({
      name: 'markDead', values: [error, id], answer: () => undefined,
      text: 'UPDATE outbox SET dead = true, attempts = attempts + 1, last_error = $1 WHERE id = $2',
    });
  }

  outboxStats(): Promise<OutboxStats> {
    return this.run({
      name: 'outboxStats', values: [],
      text: `SELECT COUNT(*) AS depth, MIN(created_at) AS oldest,
          (SELECT last_error FROM outbox WHERE last_error IS NOT NULL AND delivered_at IS NULL ORDER BY id DESC LIMIT 1) AS last_error
        FROM outbox WHERE delivered_at IS NULL AND NOT dead`,
      answer: (r) => {
        const row = r.rows[0] as { depth: number; oldest: number | null; last_error: string | null };
        return { depth: row.depth, oldestAt: row.oldest ?? undefined, lastError: row.last_error ?? undefined };
      },
    });
  }

  // ─── Several instances: leases and the shared posting pace ───
  // Each operation is one statement that takes the row lock of its lease or channel, decides on the latest
  // committed row (ON CONFLICT DO UPDATE waits for a racing instance and then sees its change) and returns the
  // outcome from what it wrote, so two instances cannot both take a lease or the same token. Times come from
  // `now` when given (tests) or else from the server's clock, never from this instance's: instances' clocks
  // differ, the server's is one. Use one or the other for a given lease or channel, not both.

  /**
   * Take the lease `name` for `holder` for `ttlMs`, in one statement: taken when it is free (never taken,
   * released, or expired), renewed (expiry moved to now + ttlMs, same term) when `holder` holds it already,
   * else left to whoever holds it, who is returned. `term` grows by one each time the lease is taken while free
   * or expired, so a holder that stalled past its expiry can tell its term is over (a fencing token).
   * `now` (epoch ms) replaces the server's clock `clock_timestamp()`.
   */
  acquireLease(name: string, holder: string, ttlMs: number, now?: number): Promise<LeaseAnswer> {
    let values: unknown[];
    try {
      if (!holder) throw new TypeError(`PgState.acquireLease: the holder of lease ${JSON.stringify(name)} must be named, found ${JSON.stringify(holder)}`);
      values = [name, holder, wholeMs('acquireLease', 'ttlMs', ttlMs, 1), wholeMs('acquireLease', 'now', now, 0, true)];
    } catch (error) {
      return Promise.reject(error);
    }
    // `free`: nobody holds it at `now` (excluded.taken_at). Every SET expression reads the row as it was.
    const free = 'l.expires_at <= excluded.taken_at';
    const takes = `(l.holder = excluded.holder OR ${free})`;
    return this.run({
      name: 'acquireLease', values,
      text: `WITH clock AS (SELECT COALESCE($4::bigint, ims_clock_ms()) AS now)
        INSERT INTO leases AS l (name, holder, expires_at, term, taken_at)
        SELECT $1::text, $2::text, clock.now + $3::bigint, 1, clock.now FROM clock
        ON CONFLICT (name) DO UPDATE SET
          holder = CASE WHEN ${takes} THEN excluded.holder ELSE l.holder END,
          expires_at = CASE WHEN ${takes} THEN excluded.expires_at ELSE l.expires_at END,
          term = CASE WHEN ${free} THEN l.term + 1 ELSE l.term END,
          taken_at = CASE WHEN ${free} THEN excluded.taken_at ELSE l.taken_at END
        RETURNING holder, expires_at, term`,
      answer: (r) => {
        const row = r.rows[0] as { holder: string; expires_at: number; term: number };
        return { held: row.holder === holder, holder: row.holder, expiresAt: row.expires_at, term: row.term };
      },
    });
  }

  /**
   * Give the lease up now, so another instance can take it at once instead of waiting for it to expire.
   * True when `holder` held it (not expired); false when it did not (expired, or another holds it), nothing
   * changed then. The row stays, so the next taker's term is higher. `now` as in `acquireLease`.
   */
  releaseLease(name: string, holder: string, now?: number): Promise<boolean> {
    let at: number | null;
    try { at = wholeMs('releaseLease', 'now', now, 0, true); } catch (error) { return Promise.reject(error); }
    return this.run({
      name: 'releaseLease', values: [name, holder, at], answer: (r) => r.rowCount === 1,
      text: `UPDATE leases SET expires_at = clock.now FROM (SELECT COALESCE($3::bigint, ims_clock_ms()) AS now) AS clock
        WHERE name = $1::text AND holder = $2::text AND expires_at > clock.now`,
    });
  }

  /**
   * Take over the pending messages claimed by instances that are gone (`from`): they are this instance's from now on
   * (an instance that wakes up finds them no longer its own, and leaves them). How many were taken over.
   */
  adoptMessages(from: readonly string[]): Promise<number> {
    if (!this.instance) return Promise.reject(new TypeError('PgState.adoptMessages: this state was opened without an instance name'));
    return this.run({
      name: 'adoptMessages', values: [[...from], this.instance],
      text: `UPDATE messages SET claimed_by = $2::text WHERE status = 'pending' AND claimed_by = ANY($1::text[])`,
      answer: (r) => r.rowCount ?? 0,
    });
  }

  /**
   * Free every lease held by a process that is gone: held by a process holder (`name#…`) that is not among `alive`.
   * What those processes held (alert keys, a report's turn) is free at once rather than when it would expire. How many.
   */
  releaseLeasesOfGone(alive: readonly string[]): Promise<number> {
    return this.run({
      name: 'releaseLeasesOfGone', values: [[...alive]],
      text: `UPDATE leases SET expires_at = clock.now FROM (SELECT ims_clock_ms() AS now) AS clock
        WHERE position('#' in holder) > 0 AND holder <> ALL($1::text[]) AND expires_at > clock.now`,
      answer: (r) => r.rowCount ?? 0,
    });
  }

  /** Which instance a message is claimed by now (undefined: none recorded, or no such message). */
  messageClaimer(channel: string, ts: string): Promise<string | undefined> {
    return this.run({
      name: 'messageClaimer', values: [channel, ts],
      text: 'SELECT claimed_by FROM messages WHERE channel = $1::text AND ts = $2::text',
      answer: (r) => (r.rows[0] as { claimed_by: string | null } | undefined)?.claimed_by ?? undefined,
    });
  }

  /** The leases whose names start with `prefix` held at `now` (the server's clock when not given). */
  liveLeases(prefix: string, now?: number): Promise<{ name: string; holder: string; expiresAt: number }[]> {
    let at: number | null;
    try { at = wholeMs('liveLeases', 'now', now, 0, true); } catch (error) { return Promise.reject(error); }
    return this.run({
      name: 'liveLeases', values: [prefix, at],
      text: `SELECT name, holder, expires_at FROM leases, (SELECT COALESCE($2::bigint, ims_clock_ms()) AS now) AS clock
        WHERE starts_with(name, $1::text) AND expires_at > clock.now ORDER BY name`,
      answer: (r) => r.rows.map((row: { name: string; holder: string; expires_at: number }) => ({ name: row.name, holder: row.holder, expiresAt: row.expires_at })),
    });
  }

  /** Who holds the lease `name` at `now` (the server's clock when not given); undefined when it is free. */
  leaseHolder(name: string, now?: number): Promise<Lease | undefined> {
    let at: number | null;
    try { at = wholeMs('leaseHolder', 'now', now, 0, true); } catch (error) { return Promise.reject(error); }
    return this.run({
      name: 'leaseHolder', values: [name, at],
      text: `SELECT holder, expires_at, term FROM leases, (SELECT COALESCE($2::bigint, ims_clock_ms()) AS now) AS clock
        WHERE name = $1::text AND expires_at > clock.now`,
      answer: (r) => {
        const row = r.rows[0] as { holder: string; expires_at: number; term: number } | undefined;
        return row && { holder: row.holder, expiresAt: row.expires_at, term: row.term };
      },
    });
  }

  /**
   * Ask for a turn to post in `channel`, paced for every instance together: a token bucket per channel, refilled
   * at `perSecond` and holding at most `burst` tokens (a channel not seen before starts full), kept in the
   * database and changed by one statement under the channel's row lock. Returns 0 when the caller may post now
   * (a token was taken for it), else how many milliseconds to wait before asking again (nothing taken: a caller
   * that gives up costs no turn). `now` as in `acquireLease`.
   */
  takePostingTurn(channel: string, perSecond: number, burst: number, now?: number): Promise<number> {
    let at: number | null;
    try {
      if (!(Number.isFinite(perSecond) && perSecond > 0) || !(Number.isFinite(burst) && burst >= 1)) {
        throw new TypeError(`PgState.takePostingTurn: the pace of ${channel} needs perSecond > 0 and burst ≥ 1, found perSecond ${perSecond}, burst ${burst}`);
      }
      at = wholeMs('takePostingTurn', 'now', now, 0, true);
    } catch (error) {
      return Promise.reject(error);
    }
    // `now` is excluded.refilled_at. A statement reads the clock before it waits for the row lock, so `now` may be
    // a little before the last turn's refilled_at: nothing has grown since then (never a negative time).
    const available = 'LEAST($3::float8, p.tokens + GREATEST(0, excluded.refilled_at - p.refilled_at) * $2::float8 / 1000)';
    const grant = `(excluded.refilled_at >= p.blocked_until AND ${available} >= 1)`;
    return this.run({
      name: 'takePostingTurn', values: [channel, perSecond, burst, at],
      text: `WITH clock AS (SELECT COALESCE($4::bigint, ims_clock_ms()) AS now),
        turn AS (
          INSERT INTO posting_pace AS p (channel, tokens, refilled_at, blocked_until, granted)
          SELECT $1::text, $3::float8 - 1, clock.now, 0, true FROM clock
          ON CONFLICT (channel) DO UPDATE SET
            granted = ${grant},
            tokens = CASE WHEN ${grant} THEN ${available} - 1 ELSE p.tokens END,
            refilled_at = CASE WHEN ${grant} THEN GREATEST(p.refilled_at, excluded.refilled_at) ELSE p.refilled_at END
          RETURNING tokens, refilled_at, blocked_until, granted)
        SELECT turn.tokens, turn.refilled_at, turn.blocked_until, turn.granted, clock.now FROM turn, clock`,
      answer: (r) => {
        const row = r.rows[0] as { tokens: number; refilled_at: number; blocked_until: number; granted: boolean; now: number };
        return row.granted ? 0 : waitForToken(row, perSecond);
      },
    });
  }

  /**
   * Slack answered 429 for `channel` with Retry-After: every instance's bucket for it is empty until
   * `retryAfterMs` from now, when one token is there (Slack's "retry after"), refilling at the usual pace from
   * then. A longer wait already recorded is kept. `now` as in `acquireLease`.
   */
  postingRateLimited(channel: string, retryAfterMs: number, now?: number): Promise<void> {
    let values: unknown[];
    try {
      values = [channel, wholeMs('postingRateLimited', 'retryAfterMs', Number.isFinite(retryAfterMs) ? Math.ceil(retryAfterMs) : retryAfterMs, 0),
        wholeMs('postingRateLimited', 'now', now, 0, true)];
    } catch (error) {
      return Promise.reject(error);
    }
    return this.run({
      name: 'postingRateLimited', values, answer: () => undefined,
      text: `WITH clock AS (SELECT COALESCE($3::bigint, ims_clock_ms()) AS now)
        INSERT INTO posting_pace AS p (channel, tokens, refilled_at, blocked_until, granted)
        SELECT $1::text, 1, clock.now + $2::bigint, clock.now + $2::bigint, false FROM clock
        ON CONFLICT (channel) DO UPDATE SET
          tokens = 1,
          refilled_at = GREATEST(p.blocked_until, excluded.blocked_until),
          blocked_until = GREATEST(p.blocked_until, excluded.blocked_until),
          granted = false`,
    });
  }

  prune(before: number): Promise<void> {
    // Delivered (or given-up) deliveries are history; their keys guard against repeats for a month longer.
    return this.run({
      name: 'prune', values: [before, before - 30 * 24 * 3600_000], answer: () => undefined,
      text: `WITH events_gone AS (DELETE FROM events WHERE received_at < $1::bigint),
        messages_gone AS (DELETE FROM messages WHERE status IN ('done', 'failed') AND updated_at < $1::bigint),
        outbox_gone AS (DELETE FROM outbox WHERE (delivered_at IS NOT NULL OR dead) AND created_at < $2::bigint)
        SELECT 1`,
    });
  }

  /**
   * Copy a SQLite state (`State.dump()`) into this database, in one transaction, idempotently: a row whose key is
   * here already is kept as it is (so a second run adds nothing, and a run cut short added nothing), an incident's
   * events come with it only when the incident itself is added, and ids keep their numbers (the identities continue
   * after the highest). Returns, by table, how many rows were read and how many added.
   */
  async load(dump: StateDump): Promise<Record<string, { read: number; added: number }>> {
    const client = await this.pool.connect();
    const counts: Record<string, { read: number; added: number }> = {};
    try {
      await client.query('BEGIN');
      const added = new Set<number>();
      for (const table of DUMPED_TABLES) {
        const rows = dump[table] ?? [];
        counts[table] = { read: rows.length, added: 0 };
        for (const row of rows) {
          if (table === 'incident_events' && !added.has(Number(row.incident_id))) continue;
          const copied = copyableRow(table, row);
          const columns = Object.keys(copied);
          const answer = await client.query(
            `INSERT INTO ${table} (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT DO NOTHING${table === 'incidents' ? ' RETURNING id' : ''}`,
            columns.map((c) => storable(copied[c])));
          counts[table].added += answer.rowCount ?? 0;
          if (table === 'incidents' && answer.rows[0]) added.add(Number(answer.rows[0].id));
        }
      }
      // New rows made here later must not take a copied number.
      for (const table of ['incidents', 'outbox', 'silences']) {
        await client.query(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), GREATEST((SELECT COALESCE(MAX(id), 0) FROM ${table}), 1), (SELECT COUNT(*) > 0 FROM ${table}))`);
      }
      await client.query('COMMIT');
      return counts;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw new Error(`copying the state into ${this.where} failed, nothing was copied: ${(error as Error).message}`, { cause: error });
    } finally {
      client.release();
    }
  }

  /** Close the pool (waiting for statements under way); later calls are refused. Closing twice is harmless. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.pool.end();
    return this.closing;
  }
}

/** A SQLite row as this schema takes it: flags as booleans, generated sequence numbers left to PostgreSQL. */
function copyableRow(table: string, row: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...row };
  delete copy.seq;
  if (table === 'incidents') copy.flapping = row.flapping === 1 || row.flapping === true;
  if (table === 'outbox') copy.dead = row.dead === 1 || row.dead === true;
  return copy;
}

/**
 * How long from `now` until a bucket that refused a turn can give one: when its tokens (`tokens` at
 * `refilled_at`, growing at `perSecond`) reach one, and not before `blocked_until` (a 429's Retry-After).
 * At least 1 ms: asking again at once would be refused again.
 */
function waitForToken(bucket: { tokens: number; refilled_at: number; blocked_until: number; now: number }, perSecond: number): number {
  const oneTokenAt = bucket.refilled_at + (Math.max(0, 1 - bucket.tokens) * 1000) / perSecond;
  return Math.max(1, Math.ceil(Math.max(oneTokenAt, bucket.blocked_until) - bucket.now));
}

/** A short, growing, jittered wait before sending again after a deadlock, so that the two instances do not meet again. */
function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, attempt * 5 + Math.random() * 20));
}

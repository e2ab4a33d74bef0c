/**
 * Several IMS instances on one PostgreSQL database, end to end (issue 11): real processes started as a user runs
 * them (`IMS_INSTANCE=ims-a|ims-b`, `DATABASE_URL`, `--http 127.0.0.1:0`) against one fake Slack that spreads its
 * events over their Socket Mode connections as Slack does, and a real PostgreSQL server (test/postgres.ts). An
 * instance is killed (SIGKILL), frozen (SIGSTOP) or cut off from the database; every scenario ends with: each alert
 * reposted exactly once (found by the source its post names in its metadata), one `incidents` row each, every
 * event acked, each report turn posted once. One scenario (a standby's failed messages) runs in process, the
 * same `Ims` on `PgState`, to shorten the minute between retries.
 *
 * Two lanes run side by side to keep the file within about three minutes on two cores: the bursts (CPU-bound) one
 * after another, then the frozen leader; beside them the killed leaders' report turns (mostly waiting for the clock).
 * The database outage has a server of its own, so freezing it leaves the other lane alone.
 *
 * Report turns: with `--loop HOURS` every instance ticks every HOURS from its own start, and a turn is named by the
 * interval the tick falls in (`every H h #N`, ims-schedules.ts); every instance remembers the turns it saw come, and
 * the leader posts each under a lease (`ims:report:<channel>:<turn>`), recording it as posted in `meta` after. Triggers
 * the test adds to its database log each take, refusal and release of a turn's lease and each record, with the asking
 * connection's `application_name` (each instance's DATABASE_URL names it: same database, labelled connections) and
 * the server's clock. Each report message names its turn in its metadata: each turn that came (predicted from the
 * instances' ticks) is posted once, in time.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import pg from 'pg';
import { PgState } from '../ims-state-pg.ts';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import { ALERTS, ALERTS2, INC_APPS, INC_INFRA, NAGIOS, REPORT, UNPACED, baseConfig, guardSocketModeShutdownBug, setup, tempDir } from './harness.ts';
import { UNPACED_ENV, botEnv, exitOf, fakeSlack, quiet, spawnBot, suiteConfig, type BotRun } from './faults.ts';
import { freshDatabase, startPostgres, type TestPostgres } from './postgres.ts';

guardSocketModeShutdownBug();

/** The report interval of the report-turn tests: `--loop` takes hours. */
const TURN_MS = 15_000;
const LOOP_HOURS = String(TURN_MS / 3_600_000);
/** What ims-leadership.ts promises: a dead or frozen leader is replaced within about its lease's TTL (10 s) plus a renewal. */
const TAKE_OVER_LIMIT_MS = 15_000;
/** Slack redelivers an event not acked within 3 s. */
const SLACK_ACK_LIMIT_MS = 3000;

let server: TestPostgres;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ─── Instances ───

/** One IMS process of the group. */
interface Instance {
  name: string;
  run: BotRun;
  /** Its operations endpoint (`--http 127.0.0.1:0`). */
  port: number;
  /** When its schedules started (its first report tick), by its log; its later ticks follow every TURN_MS. */
  ticksFrom?: number;
  /** When it was spawned. */
  spawnedAt: number;
  /** When it was killed or stopped (it ticks no more). */
  endedAt?: number;
  /** When it was frozen (SIGSTOP): its timers stand still, and fire late once it resumes. */
  frozenAt?: number;
}

/** A group of instances sharing one database and one fake Slack, with their config. */
interface Group {
  t: TestContext;
  fake: FakeSlack;
  /** The shared database (each instance's DATABASE_URL is this, its connections labelled with its name). */
  url: string;
  file: string;
  /** `--no-incident` (no reports), or `--loop` for the report tests. */
  args: string[];
  all: Instance[];
}

function group(t: TestContext, fake: FakeSlack, url: string, args: string[]): Group {
  const file = path.join(tempDir(), 'ims.json');
  writeFileSync(file, JSON.stringify(suiteConfig(path.join(path.dirname(file), 'ims.db'), { report: { channel: REPORT } }), null, 2));
  return { t, fake, url, file, args, all: [] };
}

/** Each instance's DATABASE_URL: the shared database, its connections named after the instance (for the claim log). */
function urlFor(url: string, name: string): string {
  const labelled = new URL(url);
  labelled.searchParams.set('application_name', name);
  return labelled.toString();
}

/** The time at the start of a log line (`2026-…Z LEVEL …`). */
function lineTime(line: string): number {
  const at = Date.parse(line.slice(0, line.indexOf(' ')));
  assert.ok(Number.isFinite(at), `a log line starting with its time: ${line}`);
  return at;
}

function stderrTails(instances: Instance[]): string {
  return instances.map((i) => `── ${i.name} (${i.run.alive() ? 'running' : `exited ${i.run.child.exitCode ?? i.run.child.signalCode}`}) stderr, last 2500 chars:\n${i.run.stderr().slice(-2500)}`).join('\n');
}

/** Wait until `check` gives a value; fails naming `what`, with every instance's log tail. */
async function eventually<T>(g: Group, check: () => T | undefined | false | null | Promise<T | undefined | false | null>, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as T;
    if (Date.now() >= deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}\n${stderrTails(g.all)}`);
    await sleep(25);
  }
}

/** Start an instance named `name` as a user would, and wait until it is connected to Slack and reaches the state. */
async function startInstance(g: Group, name: string): Promise<Instance> {
  const env = botEnv(g.fake, { ...UNPACED_ENV, IMS_INSTANCE: name, DATABASE_URL: urlFor(g.url, name) });
  const spawnedAt = Date.now();
  const run = spawnBot(g.t, ['--config', g.file, '--http', '127.0.0.1:0', ...g.args], env);
  const instance: Instance = { name, run, port: 0, spawnedAt };
  g.all.push(instance);
  const alive = (what: string) => { if (!run.alive()) assert.fail(`${name} exited while waiting for ${what}\n${stderrTails([instance])}`); };
  instance.port = Number(await eventually(g, () => { alive('its endpoint'); return /operations endpoint on http:\/\/127\.0\.0\.1:(\d+)/.exec(run.stderr())?.[1]; }, `${name}'s operations endpoint`, 30_000));
  await eventually(g, async () => { alive('Slack'); return (await health(instance))?.ok; }, `${name} connected to Slack with its state reachable (/healthz ok)`, 30_000);
  if (g.args.includes('--loop')) {
    const line = await eventually(g, () => run.stderr().split('\n').find((l) => / reports every .* the first now/.test(l)), `${name}'s report schedule`, 30_000);
    instance.ticksFrom = lineTime(line);
  }
  return instance;
}

interface Health { ok: boolean; instance: string; slack: string; state: string; role: 'leader' | 'standby'; problems: string[] }

/** The instance's `/healthz`, or undefined when it does not answer within a second (dead, frozen). */
async function health(instance: Instance): Promise<Health | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${instance.port}/healthz`, { signal: AbortSignal.timeout(1000) });
    return (await response.json()) as Health;
  } catch {
    return undefined;
  }
}

/** The one instance whose /healthz says it leads (fails when none or several do). */
async function leaderOf(g: Group, among: Instance[]): Promise<Instance> {
  return eventually(g, async () => {
    const roles = await Promise.all(among.map(async (i) => ({ i, role: (await health(i))?.role })));
    const leaders = roles.filter((r) => r.role === 'leader');
    return leaders.length === 1 && roles.every((r) => r.role !== undefined) ? leaders[0].i : undefined;
  }, `exactly one leader among ${among.map((i) => i.name).join(', ')}`, TAKE_OVER_LIMIT_MS);
}

async function kill(instance: Instance): Promise<void> {
  instance.endedAt = Date.now();
  instance.run.child.kill('SIGKILL');
  const { signal } = await exitOf(instance.run);
  assert.equal(signal, 'SIGKILL', `${instance.name} killed`);
}

/** Wait until `standby` says it leads; returns how long that took from `since`. */
async function takesOver(g: Group, standby: Instance, since: number, why: string): Promise<number> {
  await eventually(g, async () => (await health(standby))?.role === 'leader', `${standby.name} to become the leader after ${why}`, TAKE_OVER_LIMIT_MS + 1000);
  const took = Date.now() - since;
  assert.ok(took <= TAKE_OVER_LIMIT_MS, `${standby.name} took over within ${TAKE_OVER_LIMIT_MS} ms of ${why}, took ${took} ms`);
  assert.match(standby.run.stderr(), new RegExp(`this instance \\(${standby.name}\\) is the leader now`), `${standby.name} logs that it leads`);
  return took;
}

/** A sample of the instance's /metrics (`name{…labels…} value`, labels containing `labelPart`), 0 when absent. */
async function metric(instance: Instance, name: string, labelPart: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${instance.port}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labelPart));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

// ─── Alerts and their reposts ───

interface SentAlert {
  /** `channel:ts` of the alert: what its repost names in its metadata (`source_channel`, `source_ts`). */
  key: string;
  /** Where its repost belongs: a CRITICAL pages in INFRA, an ERROR is an incident in APPS. */
  incidentChannel: string;
  marker: string;
}

/** Alerts from the monitoring bot, each with a distinct text a rule matches, alternating between the two alert channels. */
class AlertFeed {
  readonly sent: SentAlert[] = [];
  constructor(private readonly fake: FakeSlack, private readonly prefix: string) {}

  post(): SentAlert {
    const n = this.sent.length + 1;
    const marker = `[${this.prefix}${String(n).padStart(4, '0')}]`;
    const page = n % 5 === 0;
    const text = page ? `CRITICAL ${marker} queue depth 9000 on mq-${n % 3}` : `ERROR ${marker} checkout answered 500 on web-${n % 7}`;
    const channel = n % 2 ? ALERTS : ALERTS2;
    const message = this.fake.post(channel, { bot_id: NAGIOS, text });
    const alert = { key: `${channel}:${message.ts}`, incidentChannel: page ? INC_INFRA : INC_APPS, marker };
    this.sent.push(alert);
    return alert;
  }

  /** `n` alerts, `chunk` at a time with `pauseMs` between chunks; `afterChunk` runs after each chunk. */
  async burst(n: number, opts: { chunk?: number; pauseMs?: number; afterChunk?: () => unknown } = {}): Promise<SentAlert[]> {
    const posted: SentAlert[] = [];
    const chunk = opts.chunk ?? 10;
    for (let i = 0; i < n; i++) {
      posted.push(this.post());
      if ((i + 1) % chunk === 0 || i === n - 1) {
        await opts.afterChunk?.();
        await sleep(opts.pauseMs ?? 20);
      }
    }
    return posted;
  }
}

/** The bot's top-level posts in the incident channels, by the source they name: an incident post's metadata, or a digest's members. */
function repostsBySource(fake: FakeSlack): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const add = (key: string, channel: string) => found.set(key, [...(found.get(key) ?? []), channel]);
  for (const channel of [INC_APPS, INC_INFRA]) {
    for (const message of fake.messagesIn(channel)) {
      if (message.bot_id !== fake.botId || (message.thread_ts !== undefined && message.thread_ts !== message.ts)) continue;
      const { event_type: type, event_payload: payload } = (message.metadata ?? {}) as { event_type?: string; event_payload?: Record<string, unknown> };
      if (type === 'ims_incident') add(`${String(payload?.source_channel)}:${String(payload?.source_ts)}`, channel);
      else if (type === 'ims_digest') {
        // `C1:ts1,ts2;C2:ts3` (ims-digests.ts): a storm's digest lists its alerts instead of posting each.
        for (const part of String(payload?.members ?? '').split(';').filter(Boolean)) {
          const [source, list] = part.split(':');
          for (const ts of (list ?? '').split(',').filter(Boolean)) add(`${source}:${ts}`, channel);
        }
      }
    }
  }
  return found;
}

function unreposted(fake: FakeSlack, alerts: SentAlert[]): SentAlert[] {
  const reposts = repostsBySource(fake);
  return alerts.filter((a) => !reposts.has(a.key));
}

async function allReposted(g: Group, alerts: SentAlert[], timeoutMs: number): Promise<void> {
  await eventually(g, () => unreposted(g.fake, alerts).length === 0, `every one of ${alerts.length} alerts reposted`, timeoutMs).catch((error: Error) => {
    const missing = unreposted(g.fake, alerts);
    throw new Error(`${missing.length} of ${alerts.length} alerts not reposted: ${missing.slice(0, 12).map((a) => `${a.marker} ${a.key}`).join(', ')}\n${error.message}`);
  });
}

/** Each alert reposted exactly once, in its incident channel, and nothing reposted that was not sent; failures show the instances' log lines about them. */
function assertEachRepostedOnce(g: Group, alerts: SentAlert[]): void {
  const { fake } = g;
  const reposts = repostsBySource(fake);
  const problems: string[] = [];
  for (const alert of alerts) {
    const channels = reposts.get(alert.key) ?? [];
    if (channels.length !== 1) problems.push(`${alert.marker} ${alert.key}: reposted ${channels.length} times`);
    else if (channels[0] !== alert.incidentChannel) problems.push(`${alert.marker}: reposted in ${channels[0]}, expected ${alert.incidentChannel}`);
  }
  const sent = new Set(alerts.map((a) => a.key));
  for (const key of reposts.keys()) if (!sent.has(key)) problems.push(`a repost of ${key}, which is no alert of this test`);
  const wrong = alerts.filter((a) => (reposts.get(a.key) ?? []).length !== 1).slice(0, 3);
  const evidence = g.all.flatMap((i) => i.run.stderr().split('\n').filter((l) => wrong.some((a) => l.includes(a.key.split(':')[1]))).map((l) => `${i.name}: ${l}`));
  assert.deepEqual(problems.slice(0, 20), [], `each of ${alerts.length} alerts reposted exactly once (${problems.length} problems); log lines about them:\n${evidence.slice(0, 30).join('\n')}`);
}

async function sql<T = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/** One `incidents` row per alert, none twice, none for anything else. */
async function assertIncidentRows(url: string, alerts: SentAlert[]): Promise<void> {
  const rows = await sql<{ source: string }>(url, `SELECT source_channel || ':' || source_ts AS source FROM incidents`);
  const sources = rows.map((r) => r.source);
  assert.equal(new Set(sources).size, sources.length, 'no incident recorded twice for one source');
  assert.deepEqual([...sources].sort(), alerts.map((a) => a.key).sort(), `one incidents row per alert (${rows.length} rows for ${alerts.length} alerts)`);
}

/**
 * Every event delivered from `from` on was acked (an envelope written to an instance that was then killed counts
 * when another delivery of its event was acked), and each ack came within Slack's 3 s. Returns the slowest ack.
 */
function assertAcked(fake: FakeSlack, from: number, opts: { everyEnvelope: boolean; latency?: boolean }): number {
  const envelopes = fake.envelopes.slice(from).filter((e) => e.sentAt > 0);
  const byEvent = new Map<string, typeof envelopes>();
  for (const e of envelopes) byEvent.set(e.event_id, [...(byEvent.get(e.event_id) ?? []), e]);
  const unacked = opts.everyEnvelope ? envelopes.filter((e) => !e.ackedAt).map((e) => `${e.event_id} (connection ${e.connection})`)
    : [...byEvent].filter(([, list]) => !list.some((e) => e.ackedAt)).map(([id]) => id);
  assert.deepEqual(unacked.slice(0, 10), [], `every ${opts.everyEnvelope ? 'envelope' : 'event'} acked (${unacked.length} not, of ${envelopes.length} envelopes)`);
  const slow = opts.latency === false ? [] : envelopes.filter((e) => e.ackedAt && e.ackedAt - e.sentAt >= SLACK_ACK_LIMIT_MS);
  assert.deepEqual(slow.slice(0, 10).map((e) => `${e.event_id}: ${e.ackedAt! - e.sentAt} ms (connection ${e.connection})`), [], `every ack within ${SLACK_ACK_LIMIT_MS} ms`);
  return Math.max(0, ...envelopes.filter((e) => e.ackedAt).map((e) => e.ackedAt! - e.sentAt));
}

// ─── Report turns ───

/** How long a report's turn lease lasts (ims-leadership.ts TURN_LEASE_MS): another instance posts the turn after that. */
const TURN_LEASE_MS = 120_000;
/** How often the leader looks again for due turns nobody posted (ims-schedules.ts `refreshShared`). */
const RECHECK_MS = 5000;
/**
 * How late a turn may be posted after it came (its first tick on any instance): the leader may die before posting it,
 * another takes over (TAKE_OVER_LIMIT_MS), looks again for due turns (RECHECK_MS) and builds the report.
 */
const LATE_MS = 30_000;
/** Ticks predicted this close to an interval's edge may fall on either side (timers drift): they count for no turn. */
const TICK_MARGIN_MS = 500;

/**
 * Adds the turn log to a database: every take, renewal, refusal and release of a report turn's lease
 * (`ims:report:<channel>:<turn>`), and every turn recorded as posted (meta `report posted <channel> <turn>`), with
 * the asking connection's `application_name` (the instance) and the server's clock.
 */
async function logReportTurns(url: string): Promise<void> {
  // The schema first (as an instance would make it), so the triggers are in place before the first turn.
  await (await PgState.open(url)).close();
  await sql(url, `
    CREATE TABLE test_turn_log (seq BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, turn TEXT NOT NULL, holder TEXT NOT NULL, asker TEXT NOT NULL, at_ms BIGINT NOT NULL);
    CREATE FUNCTION test_note_turn_lease() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF starts_with(NEW.name, 'ims:report:') THEN
        -- acquireLease is one upsert: a take (new row, or the term grows), a renewal by its holder, or a refusal (row unchanged); releaseLease moves the expiry back.
        INSERT INTO test_turn_log (kind, turn, holder, asker, at_ms) VALUES (
          CASE WHEN TG_OP = 'INSERT' OR NEW.term <> OLD.term THEN 'take'
               WHEN NEW.expires_at < OLD.expires_at THEN 'release'
               WHEN split_part(NEW.holder, '#', 1) = current_setting('application_name') THEN 'renew'
               ELSE 'refused' END,
          NEW.name, NEW.holder, current_setting('application_name'), floor(extract(epoch FROM clock_timestamp()) * 1000));
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER test_note_turn_lease AFTER INSERT OR UPDATE ON leases FOR EACH ROW EXECUTE FUNCTION test_note_turn_lease();
    CREATE FUNCTION test_note_turn_posted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF starts_with(NEW.key, 'report posted ') THEN
        INSERT INTO test_turn_log (kind, turn, holder, asker, at_ms)
          VALUES ('posted', NEW.key, NEW.value, current_setting('application_name'), floor(extract(epoch FROM clock_timestamp()) * 1000));
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER test_note_turn_posted AFTER INSERT OR UPDATE ON meta FOR EACH ROW EXECUTE FUNCTION test_note_turn_posted();`);
}

/** One row of the turn log: `turn` is the interval number the turn is named by (`every H h #N`). */
interface TurnEvent { kind: 'take' | 'renew' | 'refused' | 'release' | 'posted'; turn: number; holder: string; asker: string; at: number }

async function turnLog(url: string): Promise<TurnEvent[]> {
  const rows = await sql<{ kind: TurnEvent['kind']; turn: string; holder: string; asker: string; at_ms: number | string }>(url, 'SELECT kind, turn, holder, asker, at_ms FROM test_turn_log ORDER BY seq');
  // A turn's lease is held by a process (`ims-a#…`, one per start): the instance it ran as is what the checks name.
  return rows.map((r) => ({ kind: r.kind, turn: turnNumber(r.turn), holder: r.holder.replace(/#.*$/, ''), asker: r.asker, at: Number(r.at_ms) }));
}

/** The interval number at the end of a turn's name (`every 0.0041… h #N`), NaN when there is none. */
const turnNumber = (name: unknown) => Number(/#(\d+)$/.exec(String(name ?? ''))?.[1] ?? NaN);

interface ReportPost { at: number; turn: number; part: number; message: FakeMessage }

/** The reports' messages in the report channel, with the turn and part their metadata names and the time Slack stored each. */
function reportPosts(fake: FakeSlack): ReportPost[] {
  return fake.messagesIn(REPORT)
    .filter((m) => m.bot_id === fake.botId && m.metadata?.event_type === 'ims_report')
    .map((message) => ({ at: Number(message.ts) * 1000, turn: turnNumber(message.metadata?.event_payload?.turn), part: Number(message.metadata?.event_payload?.part), message }));
}

const turnOf = (at: number) => Math.floor(at / TURN_MS);

/** A turn that came: when its first tick came (on any instance), and by when its report must be posted. */
interface TurnDue { turn: number; firstTick: number; deadline: number; why: string }

/**
 * The turns that came up to `upTo`: each instance ticks every TURN_MS from its first tick while it runs (not killed,
 * stopped or frozen). A turn must be posted within LATE_MS of its first tick; when an instance died or froze holding
 * the turn's lease, within the lease's time after it took it (another instance posts it then).
 */
function turnsDue(instances: Instance[], log: TurnEvent[], upTo: number): Map<number, TurnDue> {
  const due = new Map<number, TurnDue>();
  for (const instance of instances) {
    if (instance.ticksFrom === undefined) continue;
    const end = Math.min(upTo, instance.endedAt ?? Infinity, instance.frozenAt ?? Infinity) - TICK_MARGIN_MS;
    for (let tick = instance.ticksFrom; tick < end; tick += TURN_MS) {
      const phase = phaseOf(tick);
      if (phase < TICK_MARGIN_MS || phase > TURN_MS - TICK_MARGIN_MS) continue;
      const turn = turnOf(tick);
      if (!due.has(turn) || due.get(turn)!.firstTick > tick) due.set(turn, { turn, firstTick: tick, deadline: tick + LATE_MS, why: `within ${LATE_MS / 1000} s of its first tick (${instance.name})` });
    }
  }
  // A turn's lease asked for shows it came by then (a tick at the moment of a kill is not predicted).
  for (const asked of log.filter((e) => e.at < upTo)) {
    const turn = due.get(asked.turn);
    if (!turn || turn.firstTick > asked.at) due.set(asked.turn, { turn: asked.turn, firstTick: asked.at, deadline: asked.at + LATE_MS, why: `within ${LATE_MS / 1000} s of its first tick (${asked.asker})` });
  }
  for (const take of log.filter((e) => e.kind === 'take' || e.kind === 'renew')) {
    const turn = due.get(take.turn);
    const holder = instances.find((i) => i.name === take.holder && i.spawnedAt <= take.at && take.at < (i.endedAt ?? Infinity));
    const stoppedAt = Math.min(holder?.endedAt ?? Infinity, holder?.frozenAt ?? Infinity);
    const released = log.some((e) => e.kind === 'release' && e.turn === take.turn && e.holder === take.holder && e.at >= take.at && e.at <= stoppedAt);
    if (turn && holder && stoppedAt >= take.at && stoppedAt < Infinity && !released && take.at + TURN_LEASE_MS + 2 * RECHECK_MS > turn.deadline) {
      Object.assign(turn, { deadline: take.at + TURN_LEASE_MS + 2 * RECHECK_MS, why: `within its lease's ${TURN_LEASE_MS / 1000} s after ${holder.name} took it and ${holder.endedAt ? 'died' : 'froze'} holding it` });
    }
  }
  return due;
}

/** Whether every turn that came up to `upTo` is posted or past its deadline (then it is skipped). */
function turnsSettled(instances: Instance[], log: TurnEvent[], posts: ReportPost[], upTo: number): { settled: boolean; lastDeadline: number } {
  const due = [...turnsDue(instances, log, upTo).values()];
  const open = due.filter((d) => !posts.some((p) => p.turn === d.turn && p.part === 0) && Date.now() <= d.deadline);
  return { settled: open.length === 0, lastDeadline: Math.max(Date.now(), ...open.map((d) => d.deadline)) };
}

/** Wait until every turn that came up to `upTo` is posted, or past the deadline by which it had to be. */
async function settleTurns(g: Group, url: string, upTo: number): Promise<void> {
  await until(upTo);
  const { lastDeadline } = turnsSettled(g.all, await turnLog(url), reportPosts(g.fake), upTo);
  await eventually(g, async () => turnsSettled(g.all, await turnLog(url), reportPosts(g.fake), upTo).settled, 'every turn posted or past its deadline', lastDeadline - Date.now() + 5000);
  // A second post of a turn would come at the next look for due turns.
  await sleep(RECHECK_MS + 2000);
}

/**
 * Each turn that came up to `upTo` posted once, in time (none skipped, none doubled, none late), and no report
 * message posted twice or without its turn.
 */
function turnProblems(instances: Instance[], log: TurnEvent[], posts: ReportPost[], upTo: number): string[] {
  const problems: string[] = [];
  const iso = (at: number) => new Date(at).toISOString();
  for (const post of posts.filter((p) => !Number.isFinite(p.turn) || !Number.isFinite(p.part))) problems.push(`a report message at ${iso(post.at)} naming no turn or part in its metadata: ${JSON.stringify(post.message.metadata)}`);
  const byPart = new Map<string, ReportPost[]>();
  for (const post of posts) byPart.set(`${post.turn} ${post.part}`, [...(byPart.get(`${post.turn} ${post.part}`) ?? []), post]);
  for (const [key, list] of byPart) if (list.length > 1) problems.push(`turn #${key.replace(' ', ' part ')} posted ${list.length} times (at ${list.map((p) => iso(p.at)).join(', ')})`);
  for (const due of turnsDue(instances, log, upTo).values()) {
    const first = posts.filter((p) => p.turn === due.turn && p.part === 0).sort((x, y) => x.at - y.at)[0];
    if (!first) problems.push(`turn #${due.turn} (first tick at ${iso(due.firstTick)}) never posted (skipped): it had to be ${due.why}`);
    else if (first.at > due.deadline) problems.push(`turn #${due.turn} posted ${((first.at - due.firstTick) / 1000).toFixed(1)} s after its first tick: it had to be ${due.why}`);
  }
  const recorded = new Map<number, number>();
  for (const e of log.filter((x) => x.kind === 'posted')) recorded.set(e.turn, (recorded.get(e.turn) ?? 0) + 1);
  for (const [turn, count] of recorded) if (count > 1) problems.push(`turn #${turn} recorded as posted ${count} times`);
  return problems;
}

/** What happened to the turns, in order: leases, records, report posts and predicted first ticks (refusals in a row counted). */
function ledger(instances: Instance[], log: TurnEvent[], posts: ReportPost[], since: number, upTo = Date.now()): string {
  const rel = (at: number) => `+${((at - since) / 1000).toFixed(1)}s`;
  const events: { at: number; text: string }[] = [...turnsDue(instances, log, upTo).values()].map((d) => ({ at: d.firstTick, text: `#${d.turn} comes` }));
  let refusals: { at: number; text: string; count: number; key: string } | undefined;
  for (const e of log) {
    if (e.kind === 'refused') {
      const key = `${e.turn} ${e.asker} ${e.holder}`;
      if (refusals?.key === key) { refusals.count++; refusals.text = `#${e.turn} refused to ${e.asker} (held by ${e.holder}) ×${refusals.count}`; continue; }
      refusals = { at: e.at, key, count: 1, text: `#${e.turn} refused to ${e.asker} (held by ${e.holder})` };
      events.push(refusals);
      continue;
    }
    events.push({ at: e.at, text: `#${e.turn} ${e.kind === 'posted' ? 'recorded posted' : e.kind} by ${e.kind === 'posted' ? e.holder : e.asker}` });
  }
  for (const p of posts.filter((x) => x.part === 0)) events.push({ at: p.at, text: `#${p.turn} REPORT IN SLACK` });
  for (const i of instances) {
    if (i.endedAt) events.push({ at: i.endedAt, text: `${i.name} ended` });
    if (i.frozenAt) events.push({ at: i.frozenAt, text: `${i.name} frozen` });
  }
  return events.sort((a, b) => a.at - b.at).map((e) => `${rel(e.at)} ${e.text}`).join('; ');
}

/** The next time at or after `from` when `instance` ticks (every TURN_MS from its first tick). */
function nextTick(instance: Instance, from: number): number {
  const first = instance.ticksFrom!;
  return first + Math.ceil(Math.max(0, from - first) / TURN_MS) * TURN_MS;
}

/** Wait until `at` (epoch ms). */
async function until(at: number): Promise<void> {
  if (at > Date.now()) await sleep(at - Date.now());
}

/** Start `name` so that its first tick falls about `phaseMs` into a report interval (start-up takes about `startupMs`). */
async function startAtPhase(g: Group, name: string, phaseMs: number, startupMs: number): Promise<Instance> {
  const now = Date.now();
  let spawnAt = Math.floor(now / TURN_MS) * TURN_MS + phaseMs - startupMs;
  while (spawnAt < now + 200) spawnAt += TURN_MS;
  await until(spawnAt);
  return startInstance(g, name);
}

/**
 * Start `name` so that its first tick falls between `lowMs` and `highMs` into a report interval. Start-up takes
 * longer while the other lane's bursts load the machine: an instance that ticks out of the band is stopped (SIGTERM)
 * and started again, timed by how long its start-up took.
 */
async function startInPhase(g: Group, name: string, lowMs: number, highMs: number, startupMs: number): Promise<Instance> {
  let estimate = startupMs;
  const phases: number[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    const instance = await startAtPhase(g, name, (lowMs + highMs) / 2, estimate);
    const phase = phaseOf(instance.ticksFrom!);
    if (phase >= lowMs && phase <= highMs) return instance;
    phases.push(phase);
    estimate = instance.ticksFrom! - instance.spawnedAt;
    instance.endedAt = Date.now();
    instance.run.child.kill('SIGTERM');
    await exitOf(instance.run, 15_000);
  }
  return assert.fail(`could not start ${name} ticking between ${lowMs} and ${highMs} ms into a turn: it ticked at ${phases.join(', ')} ms\n${stderrTails(g.all)}`);
}

const phaseOf = (at: number) => ((at % TURN_MS) + TURN_MS) % TURN_MS;

// ─── The scenarios ───

describe('several instances on one PostgreSQL database', { concurrency: 2 }, () => {
  describe('bursts of alerts, and a leader frozen', { concurrency: 1 }, () => {
    test('two instances sharing the database and Slack\'s events (spread at random) repost each of 300 alerts exactly once, and ack every envelope within 3 s', async (t) => {
      const fake = await fakeSlack(t, { connectionChoice: 'random', redeliverAfterMs: SLACK_ACK_LIMIT_MS });
      const g = group(t, fake, await freshDatabase(server.url), ['--no-incident']);
      const [a, b] = [await startInstance(g, 'ims-a'), await startInstance(g, 'ims-b')];
      await leaderOf(g, [a, b]);
      const feed = new AlertFeed(fake, 'r');
      await allReposted(g, [feed.post(), feed.post()], 20_000);
      const from = fake.envelopes.length;
      await feed.burst(300, { chunk: 20, pauseMs: 10 });
      await allReposted(g, feed.sent, 90_000);
      await quiet(fake, 1000, 30_000);
      assertEachRepostedOnce(g, feed.sent);
      await assertIncidentRows(g.url, feed.sent);
      const slowest = assertAcked(fake, from, { everyEnvelope: true });
      const byConnection = new Set(fake.envelopes.slice(from).map((e) => e.connection));
      assert.ok(byConnection.size >= 2, `the events went to both instances' connections, not one: ${[...byConnection].join(',')}`);
      const decided = await Promise.all([a, b].map((i) => metric(i, 'ims_alerts_total', 'decision="incident"')));
      assert.ok(decided.every((n) => n > 0), `both instances handled alerts (incident decisions by instance: ${decided.join(', ')})`);
      t.diagnostic(`302 alerts, ${fake.envelopes.length - from} envelopes over connections ${[...byConnection].join(',')}; slowest ack ${slowest} ms; decisions a=${decided[0]} b=${decided[1]}`);
    });

    test('an instance killed with SIGKILL in the middle of a 300-alert burst loses nothing and doubles nothing: the other finishes its claimed work, and the killed one restarts and joins', async (t) => {
      const fake = await fakeSlack(t, { connectionChoice: 'round-robin', redeliverAfterMs: SLACK_ACK_LIMIT_MS });
      const g = group(t, fake, await freshDatabase(server.url), ['--no-incident']);
      const [a, b] = [await startInstance(g, 'ims-a'), await startInstance(g, 'ims-b')];
      const leader = await leaderOf(g, [a, b]);
      // The standby dies: the leader must notice its lease running out, finish its claims and read back what it acked.
      const victim = leader === a ? b : a;
      const feed = new AlertFeed(fake, 'k');
      await allReposted(g, [feed.post(), feed.post()], 20_000);
      const from = fake.envelopes.length;
      let killedAt = 0;
      let repostedAtKill = 0;
      const killAfter100 = async () => {
        if (killedAt || repostsBySource(fake).size < 100) return;
        killedAt = Date.now();
        repostedAtKill = repostsBySource(fake).size;
        await kill(victim);
      };
      // The first half of the burst; the kill once about 100 alerts are reposted (the reposts lag behind); then the rest.
      await feed.burst(150, { chunk: 10, pauseMs: 40, afterChunk: killAfter100 });
      if (!killedAt) {
        await eventually(g, () => repostsBySource(fake).size >= 100, '100 reposts before the kill', 30_000);
        await killAfter100();
      }
      const sentAtKill = feed.sent.length;
      assert.ok(repostedAtKill < sentAtKill, `the kill came with work left (${repostedAtKill} of ${sentAtKill} reposted)`);
      await feed.burst(150, { chunk: 10, pauseMs: 40 });
      await allReposted(g, feed.sent, 60_000);
      await quiet(fake, 1500, 30_000);
      assertEachRepostedOnce(g, feed.sent);
      await assertIncidentRows(g.url, feed.sent);
      assertAcked(fake, from, { everyEnvelope: false });
      const noticed = leader.run.stderr().split('\n').find((l) => l.includes(`instance(s) ${victim.name} stopped renewing their lease`));
      t.diagnostic(`${victim.name} (standby) killed at ${repostedAtKill} reposts, ${sentAtKill} of 302 alerts sent; all reposted ${((Date.now() - killedAt) / 1000).toFixed(1)} s later; ${leader.name} noticed: ${noticed ?? 'no'}`);
      assert.ok(noticed, `${leader.name} noticed ${victim.name} gone (its lease ran out) and finished what it left`);

      // The killed one comes back under its name and takes its share again.
      const back = await startInstance(g, victim.name);
      assert.equal((await leaderOf(g, [leader, back])).name, leader.name, 'the leader stays the leader');
      const later = await feed.burst(6, { chunk: 6 });
      await allReposted(g, later, 20_000);
      await quiet(fake, 1000, 20_000);
      assertEachRepostedOnce(g, feed.sent);
      await assertIncidentRows(g.url, feed.sent);
      assert.ok(await metric(back, 'ims_alerts_total', 'decision="incident"') > 0, `${back.name} handles alerts again after its restart`);
    });

    test('with the database unreachable for 30 s both instances keep acking within 3 s, and every alert sent meanwhile is reposted once when it answers again', async (t) => {
      // A server of its own: frozen here, it must not freeze the other lane's.
      const own = await startPostgres();
      t.after(() => own.stop());
      assert.ok(own.pause && own.resume, 'a server started by the test can be paused');
      const fake = await fakeSlack(t, { connectionChoice: 'round-robin', redeliverAfterMs: SLACK_ACK_LIMIT_MS });
      const g = group(t, fake, await freshDatabase(own.url), ['--no-incident']);
      const [a, b] = [await startInstance(g, 'ims-a'), await startInstance(g, 'ims-b')];
      await leaderOf(g, [a, b]);
      const feed = new AlertFeed(fake, 'd');
      await allReposted(g, [feed.post(), feed.post()], 20_000);
      const from = fake.envelopes.length;
      own.pause!();
      const pausedAt = Date.now();
      let resumed = false;
      try {
        // An alert every second for 30 s, while nothing in the database answers.
        while (Date.now() - pausedAt < 30_000) {
          feed.post();
          await sleep(1000);
        }
        const during = fake.envelopes.slice(from);
        assert.ok(during.length >= 25, `events were delivered during the outage (${during.length})`);
        assertAcked(fake, from, { everyEnvelope: true });
        assert.deepEqual(during.filter((e) => e.retry_attempt > 0).map((e) => e.event_id), [], 'no event had to be redelivered: each was acked the first time');
        own.resume!();
        resumed = true;
      } finally {
        if (!resumed) own.resume!();
      }
      const resumedAt = Date.now();
      const states = await Promise.all([a, b].map(async (i) => ({ name: i.name, parked: /events are kept in memory/.test(i.run.stderr()) })));
      await allReposted(g, feed.sent, 60_000);
      const caughtUp = Date.now() - resumedAt;
      await quiet(fake, 1500, 30_000);
      assertEachRepostedOnce(g, feed.sent);
      await assertIncidentRows(g.url, feed.sent);
      assertAcked(fake, from, { everyEnvelope: true });
      t.diagnostic(`${feed.sent.length - 2} alerts during the 30 s outage; all reposted ${(caughtUp / 1000).toFixed(1)} s after the database came back; kept in memory: ${states.map((s) => `${s.name}=${s.parked}`).join(' ')}`);
    });

    test('a standby instance finishes its own messages whose handling failed (Slack down for its post), as the leader finishes its own', async (t) => {
      // In process (the retry every minute shortened to a second): the same Ims as the CLI runs, two of them on one database.
      const { fake, start } = await setup(t, { redeliverAfterMs: SLACK_ACK_LIMIT_MS });
      const url = await freshDatabase(server.url);
      const options = { retryPendingMs: 1000, retryConfig: { retries: 0, minTimeout: 10, maxTimeout: 50 }, ...UNPACED };
      const config = baseConfig({ report: undefined });
      const a = await start(config, { ...options, instance: 'ims-a', store: await PgState.open(url, { instance: 'ims-a' }) });
      const b = await start(config, { ...options, instance: 'ims-b', store: await PgState.open(url, { instance: 'ims-b' }) });
      assert.deepEqual([a.ims.leadership.role, b.ims.leadership.role], ['leader', 'standby']);
      // Four alerts while Slack refuses posts for 1.5 s: each instance gets two (in turn), and each post fails once.
      fake.outage(503, 1500, { methods: ['chat.postMessage'] });
      const sources = Array.from({ length: 4 }, (_, i) => `${ALERTS}:${fake.post(ALERTS, { bot_id: NAGIOS, text: `payment api error ${i + 1}` }).ts}`);
      const reposted = () => sources.filter((source) => repostsBySource(fake).has(source)).length;
      const deadline = Date.now() + 10_000;
      while (reposted() < sources.length && Date.now() < deadline) await sleep(50);
      const pending = (await (a.ims.store as PgState).pendingMessages()).map((m) => `${m.channel}:${m.ts} claimed by ${m.claimedBy}`);
      assert.equal(reposted(), sources.length, `every alert reposted within 10 s (the failed ones retried every second); still pending: ${pending.join(', ')}\n`
        + `ims-a: ${a.logs.filter((l) => /retry|failed|leader/.test(l)).join('\n')}\nims-b: ${b.logs.filter((l) => /retry|failed|leader/.test(l)).join('\n')}`);
    });

    test('a leader frozen with SIGSTOP in the middle of a report is replaced within 15 s, the turn it held is posted by the new leader, and once it resumes no turn and no alert is doubled', async (t) => {
      const fake = await fakeSlack(t, { connectionChoice: 'random', redeliverAfterMs: SLACK_ACK_LIMIT_MS });
      const url = await freshDatabase(server.url);
      await logReportTurns(url);
      const g = group(t, fake, url, ['--loop', LOOP_HOURS]);
      const since = Date.now();
      const turns = async (upTo = Date.now()) => ledger(g.all, await turnLog(url), reportPosts(fake), since, upTo);
      const a = await startInstance(g, 'ims-a');
      // ims-b ticks half a turn after ims-a.
      const b = await startAtPhase(g, 'ims-b', phaseOf(a.ticksFrom! + TURN_MS / 2), a.ticksFrom! - a.spawnedAt);
      assert.equal((await leaderOf(g, [a, b])).name, 'ims-a', 'the first instance started leads');
      const feed = new AlertFeed(fake, 's');
      await allReposted(g, [feed.post(), feed.post()], 20_000);

      // Frozen right after taking a turn, while its report is being built (Slack throttles the history it reads),
      // for 20 s: longer than a turn, so its next tick comes due while it is stopped too.
      const tickA = nextTick(a, Date.now() + 1500);
      await until(tickA - 1000);
      fake.rateLimit('conversations.history', { count: 2, retryAfterSec: 2 });
      const seen = (await turnLog(url)).length;
      const taken = await eventually(g, async () => (await turnLog(url)).slice(seen).find((e) => e.kind === 'take' && e.holder === 'ims-a'), 'ims-a to take its turn', TURN_MS);
      a.run.child.kill('SIGSTOP');
      const frozenAt = Date.now();
      a.frozenAt = frozenAt;
      const from = fake.envelopes.length;
      t.diagnostic(`ims-a frozen ${frozenAt - taken.at} ms after taking turn #${taken.turn}`);
      assert.deepEqual(reportPosts(fake).filter((p) => p.turn === taken.turn), [], 'the freeze came between taking the turn and its report (the moment under test), not after the report');
      try {
        await feed.burst(10, { chunk: 1, pauseMs: 500 });
        const took = await takesOver(g, b, frozenAt, 'ims-a was frozen');
        t.diagnostic(`ims-b leads ${took} ms after ims-a froze`);
        await until(frozenAt + 20_000);
      } finally {
        a.run.child.kill('SIGCONT');
      }
      const resumedAt = Date.now();
      // The resumed one stands by: exactly one leader, the one that took over.
      await sleep(3000);
      assert.ok(a.run.alive(), 'ims-a survived its freeze');
      assert.equal((await leaderOf(g, [a, b])).name, 'ims-b', 'ims-b stays the leader once ims-a resumes');
      await feed.burst(6, { chunk: 6 });
      await allReposted(g, feed.sent, 40_000);
      // The turns up to one after the resume: whatever the resumed one had due is not posted again.
      const upTo = resumedAt + TURN_MS;
      await settleTurns(g, url, upTo);
      await quiet(fake, 1000, 20_000);
      assertEachRepostedOnce(g, feed.sent);
      await assertIncidentRows(url, feed.sent);
      // What was written to the frozen one's socket is acked when it resumes: late, but acked (and redelivered meanwhile).
      assertAcked(fake, from, { everyEnvelope: false, latency: false });
      const log = await turnLog(url);
      const posts = reportPosts(fake);
      t.diagnostic(`turns: ${await turns(upTo)}`);
      assert.deepEqual(turnProblems(g.all, log, posts, upTo), [], `each report turn posted once across the freeze; turns: ${await turns(upTo)}`);
      // The turn it held is the new leader's once the frozen one's own lease has run out: posted during the freeze, and
      // recorded as ims-b's; the resumed one finds that post (looked for first) and posts and records nothing more.
      const records = log.filter((e) => e.kind === 'posted' && e.turn === taken.turn);
      const held = posts.filter((p) => p.turn === taken.turn && p.part === 0);
      assert.ok(held.length === 1 && held[0].at < resumedAt && records.length === 1 && records[0].holder === 'ims-b',
        `ims-b posted the turn ims-a held (#${taken.turn}) during the freeze, once: posted ${held.length} time(s)${held[0] ? ` first at +${((held[0].at - since) / 1000).toFixed(1)}s` : ''}, `
        + `recorded by ${records.map((r) => r.holder).join(', ') || 'nobody'}; resumed at +${((resumedAt - since) / 1000).toFixed(1)}s; turns: ${await turns(upTo)}`);
    });
  });

  describe('report turns when leaders die', { concurrency: 1 }, () => {
    test('a report turn is posted once with two instances, and none is skipped or doubled when the leader is killed right after taking a turn, or between the standby\'s tick and its own', async (t) => {
      const fake = await fakeSlack(t, { redeliverAfterMs: SLACK_ACK_LIMIT_MS });
      const url = await freshDatabase(server.url);
      await logReportTurns(url);
      const g = group(t, fake, url, ['--loop', LOOP_HOURS]);
      const since = Date.now();
      const turns = async (upTo = Date.now()) => ledger(g.all, await turnLog(url), reportPosts(fake), since, upTo);
      const fail = async (why: string): Promise<never> => assert.fail(`${why}\nturns: ${await turns()}\n${stderrTails(g.all)}`);

      // ims-a alone leads; ims-b ticks late in each interval (11.8-14.6 s into a turn of 15 s), so that later a standby
      // can tick well before it in one interval.
      const a = await startInstance(g, 'ims-a');
      const b = await startInPhase(g, 'ims-b', 11_800, 14_600, a.ticksFrom! - a.spawnedAt);
      assert.equal((await leaderOf(g, [a, b])).name, 'ims-a', 'the first instance started leads');

      // 1. Killed right after taking a turn: the report of that turn is slow to build (Slack throttles the history it
      //    reads), and the leader dies once it holds the turn's lease. The next leader posts it once the lease is free.
      const tickA = nextTick(a, Date.now() + 1500);
      await until(tickA - 1000);
      fake.rateLimit('conversations.history', { count: 2, retryAfterSec: 2 });
      const seen = (await turnLog(url)).length;
      const taken = await eventually(g, async () => (await turnLog(url)).slice(seen).find((e) => e.kind === 'take' && e.holder === 'ims-a'), 'ims-a to take its turn', TURN_MS);
      await kill(a);
      const firstKill = Date.now();
      t.diagnostic(`ims-a killed ${firstKill - taken.at} ms after taking turn #${taken.turn}`);
      assert.deepEqual(reportPosts(fake).filter((p) => p.turn === taken.turn), [], 'the kill came between taking the turn and its report (the moment under test), not after the report');
      await takesOver(g, b, firstKill, 'the leader was killed');

      // 2. Killed between the standby's tick and its own, in one interval: ims-a comes back ticking early in the interval
      //    (its first tick, the report at start-up, is a standby's tick like any other), and the leader ims-b dies 8.3 s
      //    after that tick, before its own tick later in the same interval: the turn is due on ims-a alone, which posts
      //    it once it leads.
      const KILL_AFTER_STANDBY_TICK_MS = 8300;
      const leaderPhase = phaseOf(b.ticksFrom!);
      const a2 = await startInPhase(g, 'ims-a', 300, leaderPhase - KILL_AFTER_STANDBY_TICK_MS - 1000, b.ticksFrom! - b.spawnedAt);
      const standbyTick = a2.ticksFrom!;
      const leaderTick = nextTick(b, standbyTick);
      const skipRisk = turnOf(standbyTick);
      assert.equal(turnOf(leaderTick), skipRisk, 'the standby ticks before the leader in the same interval');
      await until(standbyTick + KILL_AFTER_STANDBY_TICK_MS);
      if (Date.now() >= leaderTick - 300) await fail(`too late for the second kill: ${leaderTick - Date.now()} ms before ims-b's tick`);
      await kill(b);
      const secondKill = Date.now();
      t.diagnostic(`ims-b (leader) killed ${secondKill - standbyTick} ms after ims-a's tick and ${leaderTick - secondKill} ms before its own, in turn #${skipRisk}`);
      await takesOver(g, a2, secondKill, 'the second leader was killed');

      // Every turn up to the one after the turn at risk: posted once, the late ones within their allowance.
      const upTo = secondKill + TURN_MS;
      await settleTurns(g, url, upTo);
      const log = await turnLog(url);
      const posts = reportPosts(fake);
      t.diagnostic(`turns: ${await turns(upTo)}`);
      assert.deepEqual(turnProblems(g.all, log, posts, upTo), [], `each report turn posted once, none skipped, none doubled; turns: ${await turns(upTo)}`);
    });

  });
});

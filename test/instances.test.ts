/**
 * Several IMS instances on one PostgreSQL database, end to end (issue 11): real processes started as a user runs
 * them (`IMS_INSTANCE=ims-a|ims-b`, `DATABASE_URL`, `--http 127.0.0.1:0`) against one fake Slack that spreads its
 * events over their Socket Mode connections as Slack does, and a real PostgreSQL server (test/postgres.ts). An
 * instance is killed (SIGKILL), frozen (SIGSTOP) or cut off from the database; every scenario ends with: each alert
 * reposted exactly once (found by the source its post names in its metadata), one `incidents` row each, every
 * event acked, each report turn posted once.
 *
 * Two lanes run side by side to keep the file within about four minutes on two cores: the bursts (CPU-bound) one
 * after another, and the report turns (mostly waiting for the clock) one after another. The database outage has a
 * server of its own, so freezing it leaves the other lane alone.
 *
 * Report turns: with `--loop HOURS` every instance ticks every HOURS from its own start, and a turn is named by the
 * interval the tick falls in (`every H h #N`, ims-schedules.ts); the instance that leads claims the turn in the
 * `reminders` table (`report <channel>`). A trigger the test adds to its database records each claim with the
 * claiming connection's `application_name` (each instance's DATABASE_URL names it: same database, labelled
 * connections) and the server's clock, so each report post is matched to the claim it followed.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import pg from 'pg';
import { PgState } from '../ims-state-pg.ts';
import type { FakeMessage, FakeSlack } from './fake-slack.ts';
import { ALERTS, ALERTS2, INC_APPS, INC_INFRA, NAGIOS, REPORT, guardSocketModeShutdownBug, tempDir } from './harness.ts';
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

/** Each alert reposted exactly once, in its incident channel, and nothing reposted that was not sent. */
function assertEachRepostedOnce(fake: FakeSlack, alerts: SentAlert[]): void {
  const reposts = repostsBySource(fake);
  const problems: string[] = [];
  for (const alert of alerts) {
    const channels = reposts.get(alert.key) ?? [];
    if (channels.length !== 1) problems.push(`${alert.marker} ${alert.key}: reposted ${channels.length} times`);
    else if (channels[0] !== alert.incidentChannel) problems.push(`${alert.marker}: reposted in ${channels[0]}, expected ${alert.incidentChannel}`);
  }
  const sent = new Set(alerts.map((a) => a.key));
  for (const key of reposts.keys()) if (!sent.has(key)) problems.push(`a repost of ${key}, which is no alert of this test`);
  assert.deepEqual(problems.slice(0, 20), [], `each of ${alerts.length} alerts reposted exactly once (${problems.length} problems)`);
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

/** Adds the claim log to a database: every report turn claimed (and released), by whom, on the server's clock. */
async function logReportClaims(url: string): Promise<void> {
  // The schema first (as an instance would make it), so the trigger is in place before the first claim.
  await (await PgState.open(url)).close();
  await sql(url, `
    CREATE TABLE test_report_claims (seq BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, turn TEXT NOT NULL, holder TEXT NOT NULL, at_ms BIGINT NOT NULL);
    CREATE FUNCTION test_note_report_claim() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE turn_row reminders;
    BEGIN
      turn_row := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
      IF turn_row.channel LIKE 'report %' THEN
        INSERT INTO test_report_claims (kind, turn, holder, at_ms)
          VALUES (lower(TG_OP), turn_row.hour, current_setting('application_name'), floor(extract(epoch FROM clock_timestamp()) * 1000));
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER test_note_report_claim AFTER INSERT OR DELETE ON reminders FOR EACH ROW EXECUTE FUNCTION test_note_report_claim();`);
}

interface Claim { kind: 'insert' | 'delete'; turn: number; holder: string; at: number }

async function claims(url: string): Promise<Claim[]> {
  const rows = await sql<{ kind: 'insert' | 'delete'; turn: string; holder: string; at_ms: number | string }>(url, 'SELECT kind, turn, holder, at_ms FROM test_report_claims ORDER BY seq');
  return rows.map((r) => ({ kind: r.kind, turn: Number(/#(\d+)$/.exec(r.turn)?.[1] ?? NaN), holder: r.holder, at: Number(r.at_ms) }));
}

/** The reports posted (their first message), with the time Slack stored each. */
function reportPosts(fake: FakeSlack): { at: number; message: FakeMessage }[] {
  return fake.messagesIn(REPORT)
    .filter((m) => m.bot_id === fake.botId && m.metadata?.event_type === 'ims_report' && Number(m.metadata?.event_payload?.part) === 0)
    .map((message) => ({ at: Number(message.ts) * 1000, message }));
}

const turnOf = (at: number) => Math.floor(at / TURN_MS);

/**
 * Each turn from the first claimed to the last posted once: claimed (no turn skipped), and followed by exactly one
 * report post before the next claim (none lost after its claim, none twice). `notes` say what happened when, for the message.
 */
function turnProblems(claimLog: Claim[], posts: { at: number }[]): string[] {
  const taken = claimLog.filter((c) => c.kind === 'insert');
  const released = claimLog.filter((c) => c.kind === 'delete');
  const problems: string[] = [];
  const postsOf = new Map<Claim, number>();
  for (const post of posts) {
    const claim = [...taken].reverse().find((c) => c.at <= post.at);
    if (!claim) { problems.push(`a report posted at ${new Date(post.at).toISOString()} with no turn claimed before it`); continue; }
    postsOf.set(claim, (postsOf.get(claim) ?? 0) + 1);
  }
  for (const claim of taken) {
    const count = postsOf.get(claim) ?? 0;
    const giveBack = released.some((r) => r.turn === claim.turn && r.at >= claim.at);
    if (count === 0 && !giveBack) problems.push(`turn #${claim.turn} claimed by ${claim.holder} at ${new Date(claim.at).toISOString()} and never posted (skipped)`);
    if (count > 1) problems.push(`turn #${claim.turn} posted ${count} times`);
  }
  const turns = taken.map((c) => c.turn);
  for (let turn = Math.min(...turns); turn <= Math.max(...turns); turn++) {
    if (!turns.includes(turn)) problems.push(`turn #${turn} (${new Date(turn * TURN_MS).toISOString()}) never claimed by any instance (skipped)`);
  }
  if (new Set(turns).size !== turns.length) problems.push(`a turn claimed twice: ${turns.join(' ')}`);
  return problems;
}

function ledger(claimLog: Claim[], posts: { at: number }[], since: number): string {
  const rel = (at: number) => `+${((at - since) / 1000).toFixed(1)}s`;
  return [...claimLog.map((c) => ({ at: c.at, text: `${c.kind === 'insert' ? 'claim' : 'release'} #${c.turn} by ${c.holder}` })), ...posts.map((p) => ({ at: p.at, text: `report posted (interval #${turnOf(p.at)})` }))]
    .sort((a, b) => a.at - b.at).map((e) => `${rel(e.at)} ${e.text}`).join('; ');
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
  while (spawnAt < now) spawnAt += TURN_MS;
  await until(spawnAt);
  return startInstance(g, name);
}

const phaseOf = (at: number) => ((at % TURN_MS) + TURN_MS) % TURN_MS;

// ─── The scenarios ───

describe('several instances on one PostgreSQL database', { concurrency: 2 }, () => {
  describe('bursts of alerts', { concurrency: 1 }, () => {
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
      assertEachRepostedOnce(fake, feed.sent);
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
      await feed.burst(300, { chunk: 10, pauseMs: 80, afterChunk: killAfter100 });
      if (!killedAt) {
        await eventually(g, () => repostsBySource(fake).size >= 100, '100 reposts before the kill', 30_000);
        await killAfter100();
      }
      const sentAtKill = feed.sent.length;
      assert.ok(repostedAtKill < feed.sent.length, `the kill came with work left (${repostedAtKill} of ${feed.sent.length} reposted)`);
      await allReposted(g, feed.sent, 60_000);
      await quiet(fake, 1500, 30_000);
      assertEachRepostedOnce(fake, feed.sent);
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
      assertEachRepostedOnce(fake, feed.sent);
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
      assertEachRepostedOnce(fake, feed.sent);
      await assertIncidentRows(g.url, feed.sent);
      assertAcked(fake, from, { everyEnvelope: true });
      t.diagnostic(`${feed.sent.length - 2} alerts during the 30 s outage; all reposted ${(caughtUp / 1000).toFixed(1)} s after the database came back; kept in memory: ${states.map((s) => `${s.name}=${s.parked}`).join(' ')}`);
    });
  });

  describe('report turns', { concurrency: 1 }, () => {
    test('a report turn is posted once with two instances, and none is skipped or doubled when the leader is killed right after claiming a turn, or between the standby\'s tick and its own', async (t) => {
      const fake = await fakeSlack(t, { redeliverAfterMs: SLACK_ACK_LIMIT_MS });
      const url = await freshDatabase(server.url);
      await logReportClaims(url);
      const g = group(t, fake, url, ['--loop', LOOP_HOURS]);
      const since = Date.now();
      const fail = async (why: string): Promise<never> => assert.fail(`${why}\nturns: ${ledger(await claims(url), reportPosts(fake), since)}\n${stderrTails(g.all)}`);

      // ims-a alone leads; ims-b ticks late in each interval (phase ~12.5 s of 15), so that later a standby can tick well before it.
      const a = await startInstance(g, 'ims-a');
      const startupMs = a.ticksFrom! - a.spawnedAt;
      const b = await startAtPhase(g, 'ims-b', 12_500, startupMs);
      assert.equal((await leaderOf(g, [a, b])).name, 'ims-a', 'the first instance started leads');

      // 1. Killed right after claiming a turn: the report of that turn is slow to build (Slack throttles the history it
      //    reads), and the leader dies once its claim is in the database.
      const tickA = nextTick(a, Date.now() + 1500);
      await until(tickA - 1000);
      fake.rateLimit('conversations.history', { count: 2, retryAfterSec: 2 });
      const before = (await claims(url)).filter((c) => c.holder === 'ims-a' && c.kind === 'insert').length;
      const claimed = await eventually(g, async () => (await claims(url)).filter((c) => c.holder === 'ims-a' && c.kind === 'insert').slice(before)[0], 'ims-a to claim its turn', TURN_MS);
      const postsAtClaim = reportPosts(fake).length;
      await kill(a);
      const firstKill = Date.now();
      const postedBeforeDeath = reportPosts(fake).length > postsAtClaim;
      t.diagnostic(`ims-a killed ${firstKill - claimed.at} ms after claiming turn #${claimed.turn}; its report ${postedBeforeDeath ? 'was posted before' : 'was not posted yet'}`);
      await takesOver(g, b, firstKill, 'the leader was killed');

      // 2. Killed between the standby's tick and its own, in one interval: ims-a comes back ticking early (phase ~2.5 s),
      //    and the leader ims-b dies 8.5 s after that tick, before its own tick at ~12.5 s of the same interval.
      let a2: Instance | undefined;
      for (let attempt = 1; attempt <= 2 && !a2; attempt++) {
        const candidate = await startAtPhase(g, 'ims-a', 2500, startupMs);
        // Its first tick (the report at start-up) is a standby's tick like any other.
        const standbyTick = candidate.ticksFrom!;
        const leaderTick = nextTick(b, standbyTick);
        if (turnOf(standbyTick) === turnOf(leaderTick) && leaderTick - standbyTick >= 9500) a2 = candidate;
        else {
          t.diagnostic(`attempt ${attempt}: ims-a ticks at phase ${phaseOf(standbyTick)} ms, ims-b at ${phaseOf(leaderTick)} ms: too close, starting ims-a again`);
          candidate.run.child.kill('SIGTERM');
          await exitOf(candidate.run, 15_000);
        }
      }
      if (!a2) await fail('could not arrange a standby ticking at least 9.5 s before the leader in one interval');
      const standbyTick = a2!.ticksFrom!;
      const leaderTick = nextTick(b, standbyTick);
      const skipRisk = turnOf(standbyTick);
      await until(standbyTick + 8500);
      if (Date.now() >= leaderTick - 300) await fail(`too late for the second kill: ${leaderTick - Date.now()} ms before ims-b's tick`);
      await kill(b);
      const secondKill = Date.now();
      t.diagnostic(`ims-b (leader) killed ${secondKill - standbyTick} ms after ims-a's tick and ${leaderTick - secondKill} ms before its own, in turn #${skipRisk}`);
      await takesOver(g, a2!, secondKill, 'the second leader was killed');

      // Then the survivor posts the turns after: wait for the turn after the one at risk to be claimed and posted.
      await eventually(g, async () => (await claims(url)).some((c) => c.turn >= skipRisk + 1 && c.kind === 'insert'), `turn #${skipRisk + 1} claimed`, 2 * TURN_MS + 20_000);
      await eventually(g, async () => reportPosts(fake).some((p) => p.at >= secondKill + 1000 && turnOf(p.at) >= skipRisk + 1), `a report of turn #${skipRisk + 1}`, 20_000);
      await sleep(2000);
      const log = await claims(url);
      const posts = reportPosts(fake);
      t.diagnostic(`turns: ${ledger(log, posts, since)}`);
      assert.deepEqual(turnProblems(log, posts), [], `each report turn posted once, none skipped, none doubled; turns: ${ledger(log, posts, since)}`);
    });

    test('a leader frozen with SIGSTOP is replaced within 15 s, and once it resumes no report turn and no alert is doubled', async (t) => {
      const fake = await fakeSlack(t, { connectionChoice: 'random', redeliverAfterMs: SLACK_ACK_LIMIT_MS });
      const url = await freshDatabase(server.url);
      await logReportClaims(url);
      const g = group(t, fake, url, ['--loop', LOOP_HOURS]);
      const since = Date.now();
      const a = await startInstance(g, 'ims-a');
      const b = await startAtPhase(g, 'ims-b', phaseOf(a.ticksFrom! + TURN_MS / 2), a.ticksFrom! - a.spawnedAt);
      const leader = await leaderOf(g, [a, b]);
      const standby = leader === a ? b : a;
      const feed = new AlertFeed(fake, 's');
      await allReposted(g, [feed.post(), feed.post()], 20_000);

      // Frozen for 20 s: longer than a turn, so its own tick comes due while it is stopped.
      const from = fake.envelopes.length;
      leader.run.child.kill('SIGSTOP');
      const frozenAt = Date.now();
      let continued = false;
      try {
        await feed.burst(10, { chunk: 1, pauseMs: 500 });
        const took = await takesOver(g, standby, frozenAt, `${leader.name} was frozen`);
        t.diagnostic(`${standby.name} leads ${took} ms after ${leader.name} froze`);
        await until(frozenAt + 20_000);
      } finally {
        leader.run.child.kill('SIGCONT');
        continued = true;
      }
      assert.ok(continued);
      const resumedAt = Date.now();
      // The resumed one stands by: exactly one leader, the one that took over.
      await sleep(3000);
      assert.ok(leader.run.alive(), `${leader.name} survived its freeze`);
      assert.equal((await leaderOf(g, [a, b])).name, standby.name, `${standby.name} stays the leader once ${leader.name} resumes`);
      const more = await feed.burst(6, { chunk: 6 });
      assert.equal(more.length, 6);
      await allReposted(g, feed.sent, 40_000);
      // Two turns after the resume: whatever the resumed one had due is not posted again.
      await eventually(g, async () => (await claims(url)).filter((c) => c.kind === 'insert' && c.at > resumedAt).length >= 2, 'two report turns after the resume', 2 * TURN_MS + 20_000);
      await sleep(2000);
      await quiet(fake, 1000, 20_000);
      assertEachRepostedOnce(fake, feed.sent);
      await assertIncidentRows(url, feed.sent);
      // What was written to the frozen one's socket is acked when it resumes: late, but acked (and redelivered meanwhile).
      assertAcked(fake, from, { everyEnvelope: false, latency: false });
      const log = await claims(url);
      const posts = reportPosts(fake);
      t.diagnostic(`turns: ${ledger(log, posts, since)}`);
      assert.deepEqual(turnProblems(log, posts), [], `each report turn posted once across the freeze; turns: ${ledger(log, posts, since)}`);
    });
  });
});

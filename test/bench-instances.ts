/**
 * The end-to-end burst on PostgreSQL: the same 2,000 alerts and 200 rules as the SQLite row (`benchEndToEnd`),
 * through the real bot process (spawned as a user runs it, `state.url` in its config, `IMS_INSTANCE` naming it),
 * handled by one instance, then by two instances sharing one database, each with its own Socket Mode connection
 * to the same fake Slack, which writes each envelope to one of them in turn (as Slack shares an app's events among
 * its connections). Per row: alerts reposted per second (burst start to the post showing the last alert), ack
 * latency p50/p99 (measured by the fake: ack received − envelope sent), and a correctness check made here: every
 * alert shown by exactly one post, no post showing anything else, one incident row per alert in the database,
 * every message finished. A row that fails the check prints a loud line.
 *
 * The PostgreSQL server is test/postgres.ts's (fsync off, on this machine), one fresh database per row.
 * `tsx test/bench-instances.ts` runs these rows alone.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { FakeSlack, type FakeMessage } from './fake-slack.ts';
import { ShownAlerts, burstConfig, cpuSeconds, percentile, postBurst, startBenchBot, type BenchBot } from './bench-e2e.ts';
import { freshDatabase, startPostgres, type TestPostgres } from './postgres.ts';

export interface InstancesResult {
  instances: number;
  alerts: number;
  rules: number;
  ackP50Ms: number;
  ackP99Ms: number;
  repostsPerSecond: number;
  seconds: number;
  /** Envelopes of the burst (alerts and the bot's own echoes) written to each instance's connection, by instance name. */
  envelopesPerInstance: Record<string, number>;
  /** Envelopes the fake wrote again because no ack came in time (should be 0). */
  redelivered: number;
  /** CPU seconds per instance during the burst, by name; the PostgreSQL server's (all its processes); the fake and load generator's. */
  botCpuSeconds: Record<string, number>;
  postgresCpuSeconds?: number;
  fakeCpuSeconds: number;
  /** Top-level posts in the incident channels, and how many were digests. */
  posts: number;
  digests: number;
  correctness: BurstCheck;
  /** Log lines at WARN or ERROR from the instances, prefixed with the instance's name. */
  problems: string[];
}

/** What the correctness check found: all zero but `incidents`/`done` (= alerts) is a pass. */
export interface BurstCheck {
  /** Alerts no post showed, and the first few of them (ts and text). */
  missing: number;
  missingExamples: string[];
  /** Alerts shown by more than one post. */
  shownTwice: number;
  /** Messages linked by the bot's posts that are not alerts of the burst. */
  unknown: number;
  /** Rows in `incidents` for the burst's channel, and distinct alerts among them. */
  incidents: number;
  distinctIncidents: number;
  /** Messages finished (`done`), and those in any other state (pending, failed), in `messages`. */
  done: number;
  notDone: number;
  /** The unfinished ones by state and the instance that claimed them (`pending ims-b: 12`). */
  notDoneBy: Record<string, number>;
  ok: boolean;
}

const INCIDENT_CHANNELS = ['C0BENCHINC1', 'C0BENCHINC2', 'C0BENCHINC3', 'C0BENCHINC4'];
const ALERT_CHANNEL = 'C0BENCHALRT';
const INSTANCE_NAMES = ['ims-a', 'ims-b'];
/** A burst that shows nothing new for this long is reported as stalled, with what is missing, instead of waited for. */
const STALL_MS = 15_000;

/** The processes of the PostgreSQL server listening on `port`: its postmaster (`-p PORT` on its command line) and the postmaster's children. */
function postgresPids(port: string): number[] {
  const stats = new Map<number, { comm: string; ppid: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      stats.set(Number(entry), { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) });
    } catch { /* ended meanwhile */ }
  }
  const postmaster = [...stats].find(([pid, { comm }]) => {
    if (comm !== 'postgres') return false;
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes(` -p ${port} `); } catch { return false; }
  })?.[0];
  if (postmaster === undefined) return [];
  return [postmaster, ...[...stats].filter(([, { ppid }]) => ppid === postmaster).map(([pid]) => pid)];
}

/** CPU seconds so far of each process in `pids` (those that ended are left out). */
function cpuOf(pids: number[]): Map<number, number> {
  const seconds = new Map<number, number>();
  for (const pid of pids) {
    try { seconds.set(pid, cpuSeconds(pid)); } catch { /* ended meanwhile */ }
  }
  return seconds;
}

/** What the database says of the burst: incidents recorded for its alerts, and messages by state. */
async function stateCounts(url: string): Promise<Pick<BurstCheck, 'incidents' | 'distinctIncidents' | 'done' | 'notDone' | 'notDoneBy'>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const incidents = await client.query<{ rows: string; distinct: string }>(
      'SELECT count(*) AS rows, count(DISTINCT source_ts) AS distinct FROM incidents WHERE source_channel = $1', [ALERT_CHANNEL]);
    const messages = await client.query<{ status: string; claimed_by: string | null; count: string }>(
      'SELECT status, claimed_by, count(*) AS count FROM messages WHERE channel = $1 GROUP BY status, claimed_by', [ALERT_CHANNEL]);
    const notDoneBy: Record<string, number> = {};
    let done = 0;
    for (const row of messages.rows) {
      if (row.status === 'done') done += Number(row.count);
      else notDoneBy[`${row.status} ${row.claimed_by ?? '(unclaimed)'}`] = Number(row.count);
    }
    return {
      incidents: Number(incidents.rows[0].rows), distinctIncidents: Number(incidents.rows[0].distinct),
      done, notDone: Object.values(notDoneBy).reduce((a, b) => a + b, 0), notDoneBy,
    };
  } finally {
    await client.end();
  }
}

/** One row: `instances` bot processes on one fresh database of `server`, the burst spread over their connections. */
export async function benchInstances(server: TestPostgres, options: { instances: number; alerts?: number; rules?: number }): Promise<InstancesResult> {
  const alerts = options.alerts ?? 2000;
  const ruleCount = options.rules ?? 200;
  const names = INSTANCE_NAMES.slice(0, options.instances);
  const fake = await FakeSlack.start({ botToken: 'xoxb-bench', appToken: 'xapp-bench', redeliverAfterMs: 3000 });
  fake.addChannel({ id: ALERT_CHANNEL, name: 'alerts' });
  for (const id of INCIDENT_CHANNELS) fake.addChannel({ id, name: id.toLowerCase() });
  fake.addChannel({ id: 'C0BENCHREPT', name: 'report' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ims-bench-pg-'));
  const url = await freshDatabase(server.url);
  const config = { ...burstConfig(ruleCount, INCIDENT_CHANNELS), state: { url } };
  const bots: BenchBot[] = [];
  try {
    // One after the other: the first creates the schema (under its advisory lock) and becomes the leader.
    for (const [i, name] of names.entries()) {
      bots.push(await startBenchBot(fake, dir, config, { env: { IMS_INSTANCE: name }, connection: i + 1, configName: `${name}.json` }));
    }
    if (fake.openConnections.length !== names.length) throw new Error(`expected ${names.length} open Socket Mode connection(s), found ${fake.openConnections.length}`);
    const connectionOf = new Map(names.map((name, i) => [i + 1, name]));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const pgPids = postgresPids(new URL(server.url).port);
    const pgBefore = cpuOf(pgPids);
    const botBefore = bots.map((run) => cpuSeconds(run.bot.pid!));
    const benchCpuBefore = process.cpuUsage();
    const firstEnvelope = fake.envelopes.length;
    const started = performance.now();
    const posted = await postBurst(fake, ALERT_CHANNEL, alerts, ruleCount);
    const shown = new ShownAlerts(fake, INCIDENT_CHANNELS);
    // Until every alert is shown, or nothing new was shown for STALL_MS (then the check below says what is missing).
    let lastShown = 0;
    let lastProgress = performance.now();
    await fake.waitFor(() => {
      const count = shown.update();
      if (count > lastShown) { lastShown = count; lastProgress = performance.now(); }
      return count >= alerts || performance.now() - lastProgress > STALL_MS;
    }, `all ${alerts} reposts`, 120_000);
    const seconds = (lastProgress - started) / 1000;
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const botCpuSeconds = Object.fromEntries(bots.map((run, i) => [names[i], cpuSeconds(run.bot.pid!) - botBefore[i]]));
    const pgAfter = cpuOf(postgresPids(new URL(server.url).port));
    const postgresCpuSeconds = pgPids.length ? [...pgAfter].reduce((sum, [pid, now]) => sum + now - (pgBefore.get(pid) ?? 0), 0) : undefined;

    const burst = fake.envelopes.slice(firstEnvelope);
    const acks = burst.filter((e) => e.ackedAt && e.sentAt).map((e) => e.ackedAt! - e.sentAt).sort((a, b) => a - b);
    const envelopesPerInstance: Record<string, number> = {};
    for (const envelope of burst) {
      const name = connectionOf.get(envelope.connection ?? -1) ?? `connection ${envelope.connection}`;
      envelopesPerInstance[name] = (envelopesPerInstance[name] ?? 0) + 1;
    }
    // Late doubles: a second post of an alert already shown would come after the last first showing.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await Promise.all(bots.map((run) => run.stop()));
    shown.update();
    const correctness = await checkBurst(url, posted, shown);
    const posts = INCIDENT_CHANNELS.flatMap((channel) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId && (!m.thread_ts || m.thread_ts === m.ts)));
    const problems = bots.flatMap((run, i) => run.stderr().split('\n').filter((line) => /^\S+ (WARN|ERROR)/.test(line)).map((line) => `${names[i]}: ${line}`));
    return {
      instances: names.length, alerts, rules: ruleCount, ackP50Ms: percentile(acks, 50), ackP99Ms: percentile(acks, 99), repostsPerSecond: lastShown / seconds, seconds,
      envelopesPerInstance, redelivered: burst.filter((e) => e.retry_attempt > 0).length, botCpuSeconds, postgresCpuSeconds, fakeCpuSeconds: (benchCpu.user + benchCpu.system) / 1e6,
      posts: posts.length, digests: posts.filter((m) => m.metadata?.event_type === 'ims_digest').length, correctness, problems,
    };
  } finally {
    await Promise.all(bots.map((run) => run.stop()));
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every alert of the burst shown by exactly one post and recorded once; nothing else shown; every message finished. */
async function checkBurst(url: string, posted: FakeMessage[], shown: ShownAlerts): Promise<BurstCheck> {
  const alerts = new Set(posted.map((m) => m.ts));
  const missing = posted.filter((m) => !shown.firstShownBy.has(m.ts)).length;
  const unknown = [...shown.firstShownBy.keys()].filter((ts) => !alerts.has(ts)).length;
  const counts = await stateCounts(url);
  const missingExamples = posted.filter((m) => !shown.firstShownBy.has(m.ts)).slice(0, 3).map((m) => `${m.ts} ${m.text}`);
  const n = posted.length;
  const ok = missing === 0 && unknown === 0 && shown.shownTwice === 0 && counts.incidents === n && counts.distinctIncidents === n && counts.done === n && counts.notDone === 0;
  return { missing, missingExamples, shownTwice: shown.shownTwice, unknown, ...counts, ok };
}

/** The one-instance and two-instance rows on one PostgreSQL server (started here, stopped at the end). */
export async function benchPostgresRows(options: { alerts?: number; rules?: number } = {}): Promise<InstancesResult[]> {
  const server = await startPostgres();
  try {
    const rows: InstancesResult[] = [];
    for (const instances of [1, 2]) rows.push(await benchInstances(server, { ...options, instances }));
    return rows;
  } finally {
    await server.stop();
  }
}

export function printInstances(rows: InstancesResult[]): void {
  if (!rows.length) return;
  const { alerts, rules } = rows[0];
  console.log(`\nEnd to end on PostgreSQL: burst of ${alerts} alerts, ${rules} rules, bot process(es) as users run them, one shared database (test server, fsync off), fake Slack on loopback`);
  for (const row of rows) {
    const label = row.instances === 1 ? '1 instance' : `${row.instances} instances, one Socket Mode connection each, events in turn`;
    const c = row.correctness;
    console.log(`  ${label}`);
    console.log(`    ack latency p50      ${row.ackP50Ms.toFixed(1).padStart(8)} ms`);
    console.log(`    ack latency p99      ${row.ackP99Ms.toFixed(1).padStart(8)} ms   target < 50 ms   ${row.ackP99Ms < 50 ? 'ok' : 'MISSED'}`);
    console.log(`    alerts reposted/s    ${row.repostsPerSecond.toFixed(0).padStart(8)}      target ≥ 400     ${row.repostsPerSecond >= 400 ? 'ok' : 'MISSED'}`);
    console.log(`    envelopes            ${Object.entries(row.envelopesPerInstance).map(([name, count]) => `${name} ${count}`).join(', ')}; redelivered ${row.redelivered}`);
    console.log(`    posts made           ${String(row.posts).padStart(8)}      (${row.digests} digests)`);
    console.log(`    correctness          ${c.ok ? '      ok' : '  FAILED'}      (missing ${c.missing}, shown twice ${c.shownTwice}, unknown ${c.unknown}; incidents ${c.incidents} rows/${c.distinctIncidents} distinct; messages done ${c.done}, not done ${c.notDone}${c.notDone ? `: ${JSON.stringify(c.notDoneBy)}` : ''})`);
    if (c.missing) console.log(`    missing, e.g.        ${c.missingExamples.join(' | ')}`);
    const cpu = Object.entries(row.botCpuSeconds).map(([name, s]) => `${name} ${s.toFixed(2)} s`).join(', ');
    console.log(`    (burst took ${row.seconds.toFixed(2)} s; CPU: ${cpu}, PostgreSQL ${row.postgresCpuSeconds?.toFixed(2) ?? '?'} s, fake Slack + load generator ${row.fakeCpuSeconds.toFixed(2)} s, on ${os.cpus().length} cores)`);
    if (!c.ok) {
      console.log(`    !!!!!!!! CORRECTNESS FAILED (${row.instances} instance(s)): every one of ${row.alerts} alerts should be reposted exactly once and recorded once !!!!!!!!`);
    }
    if (row.problems.length) {
      console.log(`    ${row.problems.length} WARN/ERROR log line(s), the first ones:`);
      for (const line of row.problems.slice(0, 5)) console.log(`      ${line.slice(0, 300)}`);
    }
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  benchPostgresRows().then(printInstances, (error) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  });
}

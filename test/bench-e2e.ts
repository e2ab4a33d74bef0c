/**
 * End-to-end benchmarks through the real bot process (spawned as a user runs it) against the local fake Slack.
 * The burst: ack latency p50/p99 (measured by the fake: ack received − envelope sent), alerts reposted per second,
 * and the bot's RSS: idle once connected (VmRSS) and peak (VmHWM), from /proc. The storm: alerts into one incident
 * channel with the fake enforcing Slack's posting limit, and how soon each alert is visible there (measured by
 * the fake: the post showing it − the alert), with the 429s provoked and the posts made.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeSlack, type FakeMessage } from './fake-slack.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The p-th percentile of ascending `sorted` (nearest rank). */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** user + system CPU seconds of a process, from /proc. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A memory figure of a process from /proc/PID/status, in MB: `VmRSS` (now) or `VmHWM` (the peak so far). */
function rssMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return kb / 1024;
}

export interface EndToEndResult {
  alerts: number;
  rules: number;
  ackP50Ms: number;
  ackP99Ms: number;
  repostsPerSecond: number;
  /** Connected and waiting, before the burst. */
  idleRssMb: number;
  peakRssMb: number;
  seconds: number;
  botCpuSeconds: number;
  fakeCpuSeconds: number;
}

/** The burst's config (state not set): `ruleCount` distinct service rules, spread over `incidentChannels`. */
export function burstConfig(ruleCount: number, incidentChannels: string[]) {
  // Distinct service rules: every alert matches exactly one, most after scanning many.
  const rules = Array.from({ length: ruleCount }, (_, i) => ({
    match: `service-${String(i).padStart(3, '0')} .*(CRITICAL|DOWN|error rate)`,
    when: i % 10 === 0 ? '.*:.*:.*' : undefined,
    head: `[S${i}]`,
    incident: `INC${i % incidentChannels.length}`,
  }));
  return {
    timezone: 'UTC',
    rules,
    incidents: Object.fromEntries(incidentChannels.map((channel, i) => [`INC${i}`, { channel }])),
    report: { channel: 'C0BENCHREPT' },
  };
}

/**
 * The burst: `alerts` alerts into `channel`, as fast as the fake can write them, 50 frames per turn of its event
 * loop (as a network delivers them), so the fake can also take acks while it sends. Returns the alerts posted.
 */
export async function postBurst(fake: FakeSlack, channel: string, alerts: number, ruleCount: number): Promise<FakeMessage[]> {
  const posted: FakeMessage[] = [];
  for (let i = 0; i < alerts; i++) {
    const service = String((i * 7919) % ruleCount).padStart(3, '0');
    posted.push(fake.post(channel, { bot_id: 'B0MONITOR', text: `PROBLEM host-${i % 50} service-${service} is CRITICAL (burst ${i})` }));
    if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
  }
  return posted;
}

export async function benchEndToEnd(options: { alerts?: number; rules?: number } = {}): Promise<EndToEndResult> {
  const alerts = options.alerts ?? 2000;
  const ruleCount = options.rules ?? 200;
  const incidentChannels = ['C0BENCHINC1', 'C0BENCHINC2', 'C0BENCHINC3', 'C0BENCHINC4'];
  const fake = await FakeSlack.start({ botToken: 'xoxb-bench', appToken: 'xapp-bench', redeliverAfterMs: 3000 });
  fake.addChannel({ id: 'C0BENCHALRT', name: 'alerts' });
  for (const id of incidentChannels) fake.addChannel({ id, name: id.toLowerCase() });
  fake.addChannel({ id: 'C0BENCHREPT', name: 'report' });

  const dir = mkdtempSync(path.join(os.tmpdir(), 'ims-bench-'));
  const config = { ...burstConfig(ruleCount, incidentChannels), state: { path: path.join(dir, 'bench.db') } };
  let run: BenchBot | undefined;
  try {
    run = await startBenchBot(fake, dir, config);
    const { bot, stderr } = run;
    // Idle: connected, start-up's garbage given a moment to go.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idleRss = rssMb(bot.pid!, 'VmRSS');
    const firstEnvelope = fake.envelopes.length;
    const started = performance.now();
    const benchCpuBefore = process.cpuUsage();
    const botCpuBefore = cpuSeconds(bot.pid!);
    await postBurst(fake, 'C0BENCHALRT', alerts, ruleCount);
    // Alerts reposted: each shown by a post of its own or a line of a digest (Slack's posting pace makes digests of a burst).
    const shown = new ShownAlerts(fake, incidentChannels);
    await fake.waitFor(() => shown.update() >= alerts, `all ${alerts} reposts (stderr: ${stderr().slice(-500)})`, 300_000);
    const seconds = (performance.now() - started) / 1000;
    const acks = fake.envelopes.slice(firstEnvelope).filter((e) => e.ackedAt && e.sentAt).map((e) => e.ackedAt! - e.sentAt).sort((a, b) => a - b);
    const rss = rssMb(bot.pid!, 'VmHWM');
    const benchCpu = process.cpuUsage(benchCpuBefore);
    return {
      alerts, rules: ruleCount, ackP50Ms: percentile(acks, 50), ackP99Ms: percentile(acks, 99), repostsPerSecond: alerts / seconds, idleRssMb: idleRss, peakRssMb: rss,
      seconds, botCpuSeconds: cpuSeconds(bot.pid!) - botCpuBefore, fakeCpuSeconds: (benchCpu.user + benchCpu.system) / 1e6,
    };
  } finally {
    await run?.stop();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The bot spawned as a user runs it, with `config` written in `dir`, connected to `fake`. IMS_BENCH_PROFILE=DIR
 * writes a CPU profile of the bot there (open it in Chrome DevTools); IMS_BENCH_NODE_FLAGS adds Node flags.
 */
export interface BenchBot {
  bot: ChildProcess;
  stderr(): string;
  /** SIGTERM, and wait for it to exit. */
  stop(): Promise<void>;
}

export async function startBenchBot(fake: FakeSlack, dir: string, config: object, options: BenchBotOptions = {}): Promise<BenchBot> {
  const configPath = path.join(dir, options.configName ?? 'bench.json');
  writeFileSync(configPath, JSON.stringify(config));
  const extra = process.env.IMS_BENCH_NODE_FLAGS ? process.env.IMS_BENCH_NODE_FLAGS.split(' ') : [];
  const profile = process.env.IMS_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.IMS_BENCH_PROFILE)}`] : [];
  const bot = spawn(process.execPath, [...extra, ...profile, '--import', import.meta.resolve('tsx'), path.join(root, 'ims.ts'), '--config', configPath, '--no-incident', '--no-reminder', '--no-auto', '--no-id-lookup', ...options.args ?? []], {
    cwd: dir, env: { ...process.env, SLACK_APP_TOKEN: 'xapp-bench', SLACK_BOT_TOKEN: 'xoxb-bench', SLACK_API_URL: fake.apiUrl, ...options.env }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  bot.stderr.on('data', (chunk) => { stderr += chunk; });
  const stop = async () => {
    if (bot.exitCode !== null || bot.signalCode !== null) return;
    bot.kill('SIGTERM');
    await new Promise((resolve) => bot.once('exit', resolve));
  };
  try {
    await fake.waitForConnection(options.connection ?? 1, 30_000);
    await fake.waitFor(() => stderr.includes('Socket Mode connected'), 'the bot to finish starting', 30_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return { bot, stderr: () => stderr, stop };
}

export interface BenchBotOptions {
  /** Environment added to the bot's (IMS_INSTANCE, IMS_POSTS_PER_SECOND…). */
  env?: Record<string, string>;
  /** The fake's hello count once this bot is connected: 2 for a second instance on the same fake. Default 1. */
  connection?: number;
  /** Further command-line flags (`--debug` to see why an alert went nowhere). */
  args?: string[];
  /** The config file's name in `dir` (one per instance). Default bench.json. */
  configName?: string;
}

/**
 * Which alerts the bot's top-level posts in some channels show, and the post that first showed each: every link
 * to an original alert in a post's blocks (an incident post links its alert, a digest each alert it lists), as a
 * reader sees them. Read incrementally: only posts made since the last `update`.
 */
export class ShownAlerts {
  /** Alert ts → the post that first showed it. */
  readonly firstShownBy = new Map<string, FakeMessage>();
  /** Alerts shown by more than one post. */
  shownTwice = 0;
  private readonly read = new Map<string, number>();

  constructor(private readonly fake: FakeSlack, private readonly channels: string[]) {}

  /** Read the posts made since the last call; the number of alerts shown so far. */
  update(): number {
    for (const channel of this.channels) {
      const messages = this.fake.channels.get(channel)!.messages;
      for (let i = this.read.get(channel) ?? 0; i < messages.length; i++) {
        const post = messages[i];
        if (post.bot_id !== this.fake.botId || (post.thread_ts && post.thread_ts !== post.ts)) continue;
        const links = JSON.stringify(post.blocks ?? []).matchAll(/\/archives\/C\w+\/p(\d+)(\d{6})\b/g);
        for (const ts of new Set([...links].map((m) => `${m[1]}.${m[2]}`))) {
          if (this.firstShownBy.has(ts)) this.shownTwice++;
          else this.firstShownBy.set(ts, post);
        }
      }
      this.read.set(channel, messages.length);
    }
    return this.firstShownBy.size;
  }
}

export function printEndToEnd(result: EndToEndResult): void {
  const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED');
  console.log(`\nEnd to end: burst of ${result.alerts} alerts, ${result.rules} rules, bot spawned as a user runs it, fake Slack on loopback`);
  console.log(`  ack latency p50        ${result.ackP50Ms.toFixed(1).padStart(8)} ms`);
  console.log(`  ack latency p99        ${result.ackP99Ms.toFixed(1).padStart(8)} ms   target < 50 ms   ${verdict(result.ackP99Ms < 50)}`);
  console.log(`  alerts reposted/s      ${result.repostsPerSecond.toFixed(0).padStart(8)}      target ≥ 400     ${verdict(result.repostsPerSecond >= 400)}`);
  console.log(`  bot idle RSS           ${result.idleRssMb.toFixed(1).padStart(8)} MB   (connected, before the burst)`);
  console.log(`  bot peak RSS           ${result.peakRssMb.toFixed(1).padStart(8)} MB   target < 150 MB  ${verdict(result.peakRssMb < 150)}`);
  console.log(`  (burst took ${result.seconds.toFixed(2)} s; CPU: bot ${result.botCpuSeconds.toFixed(2)} s, fake Slack + load generator ${result.fakeCpuSeconds.toFixed(2)} s, on 2 cores)`);
}

export interface StormResult {
  alerts: number;
  /** Over how long they came (evenly). */
  seconds: number;
  /** The fake's posting limit: posts per second and channel, and the burst. */
  limit: { perSecond: number; burst: number };
  /** The first alert's wait until a post showed it (ms). */
  firstVisibleMs: number;
  p50VisibleMs: number;
  p99VisibleMs: number;
  maxVisibleMs: number;
  /** 429s the posting limit answered. */
  rateLimited: number;
  /** Top-level posts IMS made in the incident channel, and how many of them were digests. */
  posts: number;
  digests: number;
  /** Alerts shown by more than one post (should be 0). */
  shownTwice: number;
}

/**
 * The storm: `alerts` alerts into one incident channel over `seconds`, evenly, with the fake enforcing Slack's
 * posting limit (1 post per second per channel, bursts of 3). How soon each alert is visible in the incident
 * channel, measured by the fake: the ts of the post that first shows it − the alert's ts.
 */
export async function benchStorm(options: { alerts?: number; seconds?: number } = {}): Promise<StormResult> {
  const alerts = options.alerts ?? 600;
  const seconds = options.seconds ?? 30;
  const limit = { perSecond: 1, burst: 3 };
  const incident = 'C0STORMINC1';
  const fake = await FakeSlack.start({ botToken: 'xoxb-bench', appToken: 'xapp-bench', redeliverAfterMs: 3000, postRateLimit: limit });
  fake.addChannel({ id: 'C0STORMALRT', name: 'alerts' });
  fake.addChannel({ id: incident, name: 'incidents' });
  fake.addChannel({ id: 'C0STORMREPT', name: 'report' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ims-bench-storm-'));
  const config = {
    timezone: 'UTC',
    rules: [{ match: 'is (CRITICAL|DOWN)', head: '[Storm]', incident: 'INC' }],
    incidents: { INC: { channel: incident } },
    report: { channel: 'C0STORMREPT' },
    state: { path: path.join(dir, 'bench.db') },
  };
  let run: BenchBot | undefined;
  try {
    run = await startBenchBot(fake, dir, config);
    const posted: FakeMessage[] = [];
    const started = Date.now();
    for (let i = 0; i < alerts; i++) {
      posted.push(fake.post('C0STORMALRT', { bot_id: 'B0MONITOR', text: `PROBLEM host-${String(i).padStart(4, '0')} service-web is CRITICAL (storm ${i})` }));
      const next = started + ((i + 1) * seconds * 1000) / alerts;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
    }
    const shown = new ShownAlerts(fake, [incident]);
    const stderr = run.stderr;
    await fake.waitFor(() => shown.update() >= alerts, `all ${alerts} alerts shown (stderr: ${stderr().slice(-500)})`, 120_000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    shown.update();
    const tsMs = (ts: string) => Number(ts) * 1000;
    const visible = posted.map((alert) => tsMs(shown.firstShownBy.get(alert.ts)!.ts) - tsMs(alert.ts));
    const sorted = [...visible].sort((a, b) => a - b);
    const posts = fake.messagesIn(incident).filter((m) => m.bot_id === fake.botId && (!m.thread_ts || m.thread_ts === m.ts));
    return {
      alerts, seconds, limit, firstVisibleMs: visible[0], p50VisibleMs: percentile(sorted, 50), p99VisibleMs: percentile(sorted, 99), maxVisibleMs: sorted.at(-1)!,
      rateLimited: fake.postRateLimited, posts: posts.length, digests: posts.filter((m) => m.metadata?.event_type === 'ims_digest').length, shownTwice: shown.shownTwice,
    };
  } finally {
    await run?.stop();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printStorm(result: StormResult): void {
  const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED');
  const s = (ms: number) => `${(ms / 1000).toFixed(2).padStart(8)} s `;
  console.log(`\nStorm: ${result.alerts} alerts in ${result.seconds} s into one incident channel, fake Slack enforcing ${result.limit.perSecond} post/s per channel (bursts of ${result.limit.burst})`);
  console.log(`  first alert visible    ${s(result.firstVisibleMs)}  target < 1 s    ${verdict(result.firstVisibleMs < 1000)}`);
  console.log(`  visible after p50      ${s(result.p50VisibleMs)}`);
  console.log(`  visible after p99      ${s(result.p99VisibleMs)}  target ≤ 5 s    ${verdict(result.p99VisibleMs <= 5000)}`);
  console.log(`  visible after max      ${s(result.maxVisibleMs)}`);
  console.log(`  429s provoked          ${String(result.rateLimited).padStart(8)}      target ≤ 5      ${verdict(result.rateLimited <= 5)}`);
  console.log(`  posts made             ${String(result.posts).padStart(8)}      (${result.digests} digests; alerts shown twice: ${result.shownTwice})`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  benchEndToEnd().then(printEndToEnd, (error) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  });
}

/**
 * End-to-end benchmark: a burst of alerts through the real bot process (spawned as a user runs it)
 * against the local fake Slack. Reports ack latency p50/p99 (measured by the fake: ack received − envelope
 * sent), alerts reposted per second, and the bot's RSS: idle once connected (VmRSS) and peak (VmHWM), from /proc.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeSlack } from './fake-slack.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** user + system CPU seconds of a process, from /proc. */
function cpuSeconds(pid: number): number {
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

export async function benchEndToEnd(options: { alerts?: number; rules?: number } = {}): Promise<EndToEndResult> {
  const alerts = options.alerts ?? 2000;
  const ruleCount = options.rules ?? 200;
  const incidentChannels = ['C0BENCHINC1', 'C0BENCHINC2', 'C0BENCHINC3', 'C0BENCHINC4'];
  const fake = await FakeSlack.start({ botToken: 'xoxb-bench', appToken: 'xapp-bench', redeliverAfterMs: 3000 });
  fake.addChannel({ id: 'C0BENCHALRT', name: 'alerts' });
  for (const id of incidentChannels) fake.addChannel({ id, name: id.toLowerCase() });
  fake.addChannel({ id: 'C0BENCHREPT', name: 'report' });

  const dir = mkdtempSync(path.join(os.tmpdir(), 'ims-bench-'));
  // 200 distinct service rules: every alert matches exactly one, most after scanning many.
  const rules = Array.from({ length: ruleCount }, (_, i) => ({
    match: `service-${String(i).padStart(3, '0')} .*(CRITICAL|DOWN|error rate)`,
    when: i % 10 === 0 ? '.*:.*:.*' : undefined,
    head: `[S${i}]`,
    incident: `INC${i % incidentChannels.length}`,
  }));
  const config = {
    timezone: 'UTC',
    rules,
    incidents: Object.fromEntries(incidentChannels.map((channel, i) => [`INC${i}`, { channel }])),
    report: { channel: 'C0BENCHREPT' },
    state: { path: path.join(dir, 'bench.db') },
  };
  const configPath = path.join(dir, 'bench.json');
  writeFileSync(configPath, JSON.stringify(config));

  // IMS_BENCH_PROFILE=DIR writes a CPU profile of the bot there (open it in Chrome DevTools).
  const extra = process.env.IMS_BENCH_NODE_FLAGS ? process.env.IMS_BENCH_NODE_FLAGS.split(' ') : [];
  const profile = process.env.IMS_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.IMS_BENCH_PROFILE)}`] : [];
  const bot = spawn(process.execPath, [...extra, ...profile, '--import', import.meta.resolve('tsx'), path.join(root, 'ims.ts'), '--config', configPath, '--no-incident', '--no-reminder', '--no-auto', '--no-id-lookup'], {
    cwd: dir, env: { ...process.env, SLACK_APP_TOKEN: 'xapp-bench', SLACK_BOT_TOKEN: 'xoxb-bench', SLACK_API_URL: fake.apiUrl }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  bot.stderr.on('data', (chunk) => { stderr += chunk; });
  try {
    await fake.waitForConnection(1, 30_000);
    await fake.waitFor(() => stderr.includes('Socket Mode connected'), 'the bot to finish starting', 30_000);
    // Idle: connected, start-up's garbage given a moment to go.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idleRss = rssMb(bot.pid!, 'VmRSS');
    const firstEnvelope = fake.envelopes.length;
    const started = performance.now();
    const benchCpuBefore = process.cpuUsage();
    const botCpuBefore = cpuSeconds(bot.pid!);
    // The burst goes out as fast as the fake can write it, 50 frames per turn of its event loop (as a network
    // delivers them), so the fake can also take acks while it sends.
    for (let i = 0; i < alerts; i++) {
      const service = String((i * 7919) % ruleCount).padStart(3, '0');
      fake.post('C0BENCHALRT', { bot_id: 'B0MONITOR', text: `PROBLEM host-${i % 50} service-${service} is CRITICAL (burst ${i})` });
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    const reposted = () => incidentChannels.reduce((n, c) => n + fake.messagesIn(c).length, 0);
    await fake.waitFor(() => reposted() >= alerts, `all ${alerts} reposts (stderr: ${stderr.slice(-500)})`, 300_000);
    const seconds = (performance.now() - started) / 1000;
    const acks = fake.envelopes.slice(firstEnvelope).filter((e) => e.ackedAt && e.sentAt).map((e) => e.ackedAt! - e.sentAt).sort((a, b) => a - b);
    const rss = rssMb(bot.pid!, 'VmHWM');
    const benchCpu = process.cpuUsage(benchCpuBefore);
    return {
      alerts, rules: ruleCount, ackP50Ms: percentile(acks, 50), ackP99Ms: percentile(acks, 99), repostsPerSecond: alerts / seconds, idleRssMb: idleRss, peakRssMb: rss,
      seconds, botCpuSeconds: cpuSeconds(bot.pid!) - botCpuBefore, fakeCpuSeconds: (benchCpu.user + benchCpu.system) / 1e6,
    };
  } finally {
    if (bot.exitCode === null && bot.signalCode === null) {
      bot.kill('SIGTERM');
      await new Promise((resolve) => bot.once('exit', resolve));
    }
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
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

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  benchEndToEnd().then(printEndToEnd, (error) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  });
}

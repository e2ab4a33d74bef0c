/**
 * Benchmarks, run by `npm run bench` (`tsx test/bench.ts`). Single thread, one process.
 *
 * Section 1, `benchRules()`: the real per-message path — `decide()` (hidden-subtype and poster filters,
 * `messageText` over text/attachments/blocks, entity decoding, `matchRules` with time windows) — on a
 * recorded corpus against 10, 100 and 1000 rules. The issue's target: at least 100,000 messages/s with
 * 100 rules.
 *
 * Section 2, `benchHostile()`: the catastrophic-backtracking pattern `(a+)+$` against `aaa…b` texts of 30,
 * 1,000 and 40,000 characters, in front of 100 rules: on RE2 (the default), and opted in to JavaScript's engine
 * (`backtracking: true`) as one rule and as ten, which share one time budget per message. The figure that
 * matters is the per-message worst case.
 *
 * The end-to-end rows (test/bench-e2e.ts, test/bench-instances.ts): a 2,000-alert burst through the real bot process on
 * SQLite, then on PostgreSQL with one instance and with two sharing the database; then the storm.
 *
 * Add further sections as exported async functions and call them from
 * `main()` at the bottom.
 */
import { benchEndToEnd, benchStorm, printEndToEnd, printStorm } from './bench-e2e.ts';
import { benchPostgresRows, printInstances } from './bench-instances.ts';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKTRACKING_BUDGET_MS, compileConfig, decide, readRecording, type CompiledConfig, type Config, type Rule, type SlackMessageEvent } from '../ims.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CORPUS = path.join(ROOT, 'examples', 'alerts.jsonl');

export interface RuleBenchRow {
  rules: number;
  /** Alert lifecycles on: every accepted message also read by the recognisers and keyed. */
  lifecycle: boolean;
  compileMs: number;
  messages: number;
  messagesPerSecond: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** Messages in the latency sample. */
  latencyMessages: number;
  /** Decisions over one pass of the corpus. */
  decisions: Record<string, number>;
}

export interface RuleBenchOptions {
  /** Rule-set sizes. Default 10, 100, 1000. */
  sizes?: number[];
  /** Timed throughput run per size, after warm-up. Default 2 s. */
  seconds?: number;
  /** Messages timed one by one for the latency percentiles (at most 1.5 s worth, at least 2,000). Default 20,000. */
  latencySample?: number;
  /** A JSON-lines recording or Slack export folder. Default examples/alerts.jsonl, else a generated corpus. */
  corpus?: string;
  out?: (line: string) => void;
}

// ───────────────────────────── corpus ─────────────────────────────

/** A deterministic pseudo-random generator, so generated corpora and rule sets are the same every run. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Alerts as the usual monitoring bots post them, when no recording is at hand. */
export function generateCorpus(count: number, seed = 42): SlackMessageEvent[] {
  const random = prng(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)];
  const hosts = ['app-01', 'app-02', 'app-03', 'db-01', 'db-02', 'mq-01', 'backup-01', 'web-01', 'cache-01'];
  const start = Date.parse('2026-11-16T00:00:00Z') / 1000;
  const makers: ((host: string) => Partial<SlackMessageEvent>)[] = [
    (h) => ({ bot_id: 'B0NAGIOS1', text: `** PROBLEM Service Alert: ${h}/${pick(['SSH', 'HTTP', 'Disk /var', 'Load'])} is ${pick(['CRITICAL', 'WARNING'])} **\nNotification Type: PROBLEM\nHost: ${h}\nState: CRITICAL` }),
    (h) => ({ bot_id: 'B0NAGIOS1', text: `** RECOVERY Service Alert: ${h}/SSH is OK **\nNotification Type: RECOVERY\nHost: ${h}` }),
    (h) => ({ bot_id: 'B0ZABBIX1', user: 'U0ZABBIXB', text: `Problem: ${pick(['High CPU utilization', 'Lack of available memory', 'Backup job nightly-full is running longer than expected'])} on ${h}\nHost: ${h}\nSeverity: ${pick(['Warning', 'Average', 'High', 'Disaster'])}` }),
    (h) => ({ bot_id: 'B0PROMAM1', text: '', attachments: [{ title: `[FIRING:${1 + Math.floor(random() * 3)}] ${pick(['HighErrorRate', 'KubePodCrashLooping', 'NodeFilesystemAlmostOutOfSpace'])} (prod ${pick(['critical', 'warning'])})`, text: `*Alert:* on ${h}\n*Description:* threshold exceeded`, fallback: `[FIRING] alert on ${h}` }] }),
    (h) => ({ bot_id: 'B0DATADOG', text: `${pick(['Triggered', 'Recovered'])}: [${pick(['P1', 'P2', 'P3'])}] ${pick(['Payment gateway timeouts', 'Kafka consumer lag'])} on ${h}` }),
    (h) => ({ bot_id: 'B0CLOUDW1', text: '', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: `*CloudWatch Alarm | ${h}-cpu-high | eu-west-1*\nState: ALARM` } }] }),
    (h) => ({ bot_id: 'B0SENTRY1', text: `${pick(['RedisError: MISCONF', 'NullPointerException in checkout', 'TimeoutError: upstream'])} on ${h} (${Math.floor(random() * 500)} events)` }),
    () => ({ user: 'U0HUMAN01', text: pick(['looking into it', 'ack', 'is anyone on this?']) }),
  ];
  return Array.from({ length: count }, (_, i) => ({
    type: 'message' as const, channel: pick(['C0ALERTS01', 'C0ALERTS02']), ts: `${start + i * 97}.${String(i % 1e6).padStart(6, '0')}`,
    ...pick(makers)(pick(hosts)),
  }));
}

// ───────────────────────────── rule sets ─────────────────────────────

const POSTERS = ['B0NAGIOS1', 'B0ZABBIX1', 'B0PROMAM1', 'B0DATADOG', 'B0CLOUDW1', 'B0SENTRY1'];

/** The first rules of a real deployment: suppressions, then alert patterns, IMS.ini strings and RegExps mixed. */
const LEADING_RULES: Rule[] = [
  { match: /backup/i, when: / 0[1-4]:/, suppress: true, head: '[Backup]', incident: 'INFRA' },
  { match: '(?i)maintenance window|scheduled downtime', when: '!.*(Sat|Sun)$', head: '[Maint]', incident: 'INFRA' },
];
const TRAILING_RULES: Rule[] = [
  { match: '.*PROBLEM [^:]*: (?P<host>[\\w.-]+)/(?P<service>[^*\\n]+?) is (?P<state>CRITICAL|DOWN).*', when: '.*:.*:.*', head: '[Critical]', incident: 'INFRA', hotline: 'OnCallInfra' },
  { match: /Severity: (High|Disaster)/, head: '[Critical]', incident: 'INFRA', hotline: 'OnCallInfra' },
  { match: '\\[FIRING:\\d+\\].*critical', head: '[Critical]', incident: 'APPS', hotline: 'OnCallApps' },
  { match: /Triggered: \[P1\]|ALARM/, head: '[Critical]', incident: 'APPS', hotline: 'OnCallApps' },
  { match: '(?i)error|fatal|exception', when: '.*:.*:.*', head: '[Error]', incident: 'APPS' },
  { match: '.*Warn.*', when: '.* (0[89]|1[0-7]):.*', head: '[Warn]', incident: 'INFRA' },
  { match: /WARNING|Severity: Warning/, head: '[Warn]', incident: 'INFRA' },
  { match: '(?i)disk .*(full|9[0-9]%)', head: '[Disk]', incident: 'INFRA' },
];

/** Distinct host- and service-specific rules of the kind that pile up over the years; they rarely match. */
function paddingRule(i: number): Rule {
  const n = String(i).padStart(4, '0');
  const incident = i % 2 ? 'INFRA' : 'APPS';
  const templates: (() => Rule)[] = [
    () => ({ match: `host-${n} .*disk`, head: '[Disk]', incident }),
    () => ({ match: `(?i)svc-${n}: .*(timeout|refused)`, head: '[Svc]', incident }),
    () => ({ match: new RegExp(`db-${n}\\.prod .*replication lag`), head: '[DB]', incident, hotline: 'OnCallInfra' }),
    () => ({ match: `.*app-${n}/[A-Za-z]+ is (CRITICAL|WARNING).*`, when: '.*:.*:.*', head: '[App]', incident }),
    () => ({ match: `\\[FIRING:\\d+\\] KubePod${n}\\w*`, head: '[K8s]', incident: 'APPS' }),
    () => ({ match: new RegExp(`queue-${n} depth > \\d+`, 'i'), when: / (0[0-9]|1[0-9]):/, head: '[Queue]', incident }),
    () => ({ match: `(?i)^cron-${n} failed`, when: '(Mon|Tue|Wed|Thu|Fri)$', head: '[Cron]', incident }),
    () => ({ match: `Problem: .* on edge-${n}\\b`, head: '[Edge]', incident: 'INFRA' }),
  ];
  return templates[i % templates.length]();
}

/** `size` rules: the suppressions first, padding in the middle, the general patterns last, so most messages scan many rules. */
export function ruleSet(size: number): Config {
  const padding = Math.max(0, size - LEADING_RULES.length - TRAILING_RULES.length);
  const rules = [...LEADING_RULES, ...Array.from({ length: padding }, (_, i) => paddingRule(i + 1)), ...TRAILING_RULES].slice(0, size);
  return {
    timezone: 'UTC',
    rules,
    incidents: { INFRA: { channel: 'C0INCINFRA' }, APPS: { channel: 'C0INCAPPS' } },
    reverseDefault: { channel: 'C0INCDEFLT', header: '[Alert]' },
    report: { channel: 'C0REPORT01' },
    posters: POSTERS,
    hotlines: { OnCallInfra: ['U0ONCALL1', 'here'], OnCallApps: ['U0ONCALL2'] },
  };
}

// ───────────────────────────── measuring ─────────────────────────────

function loadCorpus(source: string | undefined): { events: SlackMessageEvent[]; label: string } {
  const file = source ?? (existsSync(CORPUS) ? CORPUS : undefined);
  if (file) return { events: [...readRecording(file)], label: path.relative(process.cwd(), file) || file };
  return { events: generateCorpus(2000), label: 'generated corpus' };
}

/** Keeps results observable so the JIT cannot drop the work. */
let sink = 0;

function runFor(config: CompiledConfig, events: SlackMessageEvent[], seconds: number): { messages: number; ns: bigint } {
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  let messages = 0;
  const start = process.hrtime.bigint();
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < events.length; i++) sink += decide(config, events[i]).decision.action.length;
    messages += events.length;
    now = process.hrtime.bigint();
  }
  return { messages, ns: now - start };
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function benchOne(size: number, events: SlackMessageEvent[], options: Required<Pick<RuleBenchOptions, 'seconds' | 'latencySample'>>, lifecycle = false): RuleBenchRow {
  const t0 = process.hrtime.bigint();
  // The rule engine alone, as an IMS.ini config runs it; the lifecycle row adds the recognisers and keys on top.
  const config = compileConfig({ ...ruleSet(size), lifecycle: { enabled: lifecycle } }, { source: 'bench' });
  const compileMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (config.rules.length !== size) throw new Error(`rule set has ${config.rules.length} rules, expected ${size}`);

  const decisions: Record<string, number> = {};
  for (const event of events) {
    const { decision } = decide(config, event);
    const key = decision.action === 'ignore' ? `ignored ${decision.reason}` : decision.action;
    decisions[key] = (decisions[key] ?? 0) + 1;
  }

  runFor(config, events, Math.min(0.5, options.seconds / 2)); // warm-up: let the JIT settle
  const { messages, ns } = runFor(config, events, options.seconds);

  // Per-message latency: up to `latencySample` messages, or 1.5 s worth (at least 2,000) for large rule sets.
  const timings = new Float64Array(options.latencySample);
  const latencyDeadline = process.hrtime.bigint() + 1_500_000_000n;
  let timed = 0;
  while (timed < timings.length && (timed < 2000 || process.hrtime.bigint() < latencyDeadline)) {
    const event = events[timed % events.length];
    const start = process.hrtime.bigint();
    sink += decide(config, event).decision.action.length;
    timings[timed++] = Number(process.hrtime.bigint() - start) / 1000;
  }
  const sample = timings.subarray(0, timed).sort();

  return {
    rules: size, lifecycle, compileMs, messages,
    messagesPerSecond: messages / (Number(ns) / 1e9),
    meanUs: Number(ns) / 1000 / messages,
    p50Us: percentile(sample, 50), p99Us: percentile(sample, 99), maxUs: sample[sample.length - 1], latencyMessages: timed,
    decisions,
  };
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** Section 1: rule matching throughput and latency. Prints a table and returns the rows. */
export async function benchRules(options: RuleBenchOptions = {}): Promise<RuleBenchRow[]> {
  const out = options.out ?? ((line: string) => process.stdout.write(line + '\n'));
  const sizes = options.sizes ?? [10, 100, 1000];
  const settings = { seconds: options.seconds ?? 2, latencySample: options.latencySample ?? 20_000 };
  const { events, label } = loadCorpus(options.corpus);

  out('IMS rule engine: decide() per message (subtype and poster filters, messageText, entity decoding, matchRules with windows)');
  out(`corpus: ${label}, ${events.length} messages; node ${process.version}; ${os.cpus()[0]?.model ?? 'unknown CPU'}; one thread`);
  const [load] = os.loadavg();
  if (load > os.cpus().length * 0.75) out(`warning: load average ${load.toFixed(1)} on ${os.cpus().length} CPUs: other processes compete for the CPU, figures will be low and noisy`);
  out(`each size: ${settings.seconds}s timed after warm-up; latency: up to ${fmt(settings.latencySample)} messages timed one by one (includes ~0.1µs timer overhead)`);
  out('');

  const rows: RuleBenchRow[] = [];
  for (const size of sizes) rows.push(benchOne(size, events, settings));
  if (sizes.includes(100)) rows.push(benchOne(100, events, settings, true));

  const kinds = [...new Set(rows.flatMap((row) => Object.keys(row.decisions)))].sort();
  const header = ['rules', 'lifecycle', 'compile ms', 'messages/s', 'mean µs', 'p50 µs', 'p99 µs', 'max µs', 'sampled', ...kinds];
  const table = rows.map((row) => [
    fmt(row.rules), row.lifecycle ? 'on' : 'off', fmt(row.compileMs, 1), fmt(row.messagesPerSecond), fmt(row.meanUs, 2), fmt(row.p50Us, 2), fmt(row.p99Us, 2), fmt(row.maxUs, 1), fmt(row.latencyMessages),
    ...kinds.map((kind) => fmt(row.decisions[kind] ?? 0)),
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...table.map((cells) => cells[i].length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padStart(widths[i])).join('  ');
  out(line(header));
  out(widths.map((w) => '─'.repeat(w)).join('  '));
  for (const cells of table) out(line(cells));
  out('');
  out(`(decision columns: one pass over the ${events.length}-message corpus; lifecycle on: the built-in recognisers read every accepted message, the rest is keyed by its normalised text)`);

  const target = rows.find((row) => row.rules === 100 && !row.lifecycle);
  if (target) {
    const ok = target.messagesPerSecond >= 100_000;
    out(`target: ≥ 100,000 messages/s with 100 rules → ${ok ? 'MET' : 'MISSED'} (${fmt(target.messagesPerSecond)} messages/s, p99 ${fmt(target.p99Us, 2)} µs)`);
  }
  if (sink === -1) out(''); // keep `sink` observable
  return rows;
}

// ───────────────────────────── hostile input ─────────────────────────────

export interface HostileBenchRow {
  engine: 'RE2' | 'backtracking';
  /** Rules with `(a+)+$` in front of the 100: 1 on RE2; 1 or several opted in to backtracking (one budget per message). */
  hostileRules: number;
  /** Characters of each `aaa…b` text. */
  chars: number;
  messages: number;
  meanMs: number;
  p99Ms: number;
  worstMs: number;
  /** Rule numbers that decided, with counts (`none`: no rule matched). */
  verdicts: Record<string, number>;
  /** Overrun lines written (rate-limited) for the opted-in rules. */
  logLines: number;
}

/** How many opted-in `(a+)+$` rules the "several" rows put in front: each would take the whole budget. */
const SEVERAL_OPTED_IN = 10;

/**
 * Section 2: `(a+)+$` in front of 100 rules, against long `aaa…b` texts: once on RE2, then opted in to
 * backtracking, as one rule and as ten (all opted-in rules share one budget per message, so ten cost what one does).
 */
export async function benchHostile(options: { lengths?: number[]; out?: (line: string) => void } = {}): Promise<HostileBenchRow[]> {
  const out = options.out ?? ((line: string) => process.stdout.write(line + '\n'));
  const lengths = options.lengths ?? [30, 1000, 40_000];
  const base = ruleSet(100);
  const rows: HostileBenchRow[] = [];
  out(`Hostile input: the rule '(a+)+$' (in front of 100 rules) against 'aaa…b' texts (it never matches; a later rule '[0-9]$' does), decide() per message`);
  const variants = [{ engine: 'RE2', hostileRules: 1 }, { engine: 'backtracking', hostileRules: 1 }, { engine: 'backtracking', hostileRules: SEVERAL_OPTED_IN }] as const;
  for (const { engine, hostileRules } of variants) {
    const hostile = Array.from({ length: hostileRules }, (_, i): Rule => ({
      match: '(a+)+$', head: `[Hostile ${i + 1}]`, incident: 'APPS', ...(engine === 'backtracking' ? { backtracking: true } : {}),
    }));
    const later: Rule = { match: '[0-9]$', head: '[Later]', incident: 'APPS' };
    const config = compileConfig({ ...base, lifecycle: { enabled: false }, rules: [...hostile, ...base.rules.slice(0, 98), later] }, { source: 'bench' });
    for (const chars of lengths) {
      const messages = engine === 'RE2' ? (chars > 10_000 ? 200 : 2000) : 40;
      let lines = 0;
      const log = { warn: () => { lines++; } };
      const verdicts: Record<string, number> = {};
      const timings = new Float64Array(messages);
      const text = (i: number) => `${'a'.repeat(chars - 2)}b${i % 10}`;
      // Warm-up (JIT, RE2's lazily built DFA), so that the worst case is the pattern's and not the first call's.
      for (let i = 0; i < (engine === 'RE2' ? 20 : 2); i++) decide(config, { type: 'message', channel: 'C0ALERTS01', ts: '1794790396.000100', bot_id: 'B0NAGIOS1', text: text(i) }, { log });
      for (let i = 0; i < messages; i++) {
        // A different text each time (the digit), as a storm of alerts would be: nothing is answered from a cache.
        const event: SlackMessageEvent = { type: 'message', channel: 'C0ALERTS01', ts: `${1794790396 + i}.000100`, bot_id: 'B0NAGIOS1', text: text(i) };
        const start = process.hrtime.bigint();
        const { decision } = decide(config, event, { log });
        timings[i] = Number(process.hrtime.bigint() - start) / 1e6;
        const key = 'match' in decision && decision.match ? `rule ${decision.match.rule.number}` : 'none';
        verdicts[key] = (verdicts[key] ?? 0) + 1;
      }
      timings.sort();
      rows.push({
        engine, hostileRules, chars, messages, meanMs: timings.reduce((a, b) => a + b, 0) / messages, p99Ms: percentile(timings, 99), worstMs: timings[messages - 1],
        verdicts, logLines: lines,
      });
    }
  }
  const header = ['engine', 'chars', 'messages', 'mean ms', 'p99 ms', 'worst ms', 'decided by', 'overrun lines'];
  const engineLabel = (row: HostileBenchRow) => (row.engine === 'RE2' ? 'RE2 (default)'
    : `backtracking: true, ${row.hostileRules === 1 ? '1 rule' : `${row.hostileRules} rules`} (${BACKTRACKING_BUDGET_MS} ms budget per message)`);
  const table = rows.map((row) => [
    engineLabel(row), fmt(row.chars), fmt(row.messages),
    fmt(row.meanMs, 3), fmt(row.p99Ms, 3), fmt(row.worstMs, 3), Object.entries(row.verdicts).map(([k, v]) => `${k} ×${v}`).join(', '), row.engine === 'RE2' ? '-' : fmt(row.logLines),
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...table.map((cells) => cells[i].length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 || i === 6 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  out(line(header));
  out(widths.map((w) => '─'.repeat(w)).join('  '));
  for (const cells of table) out(line(cells));
  const worst = (engine: HostileBenchRow['engine'], hostileRules: number) =>
    Math.max(...rows.filter((row) => row.engine === engine && row.hostileRules === hostileRules).map((row) => row.worstMs));
  out(`worst case per message: ${fmt(worst('RE2', 1), 3)} ms on RE2; ${fmt(worst('backtracking', 1), 3)} ms with one opted-in rule, ${fmt(worst('backtracking', SEVERAL_OPTED_IN), 3)} ms with ${SEVERAL_OPTED_IN} `
    + `(one ${BACKTRACKING_BUDGET_MS} ms budget per message shared by all opted-in rules, plus the other rules and timer slack; overrun lines: warnings written, at most one a minute per rule)`);
  return rows;
}

// ───────────────────────────── main ─────────────────────────────

async function main(): Promise<void> {
  await benchRules();
  process.stdout.write('\n');
  await benchHostile();
  // `npm run bench -- --rules-only` skips the end-to-end burst (about 20 s), the same burst on PostgreSQL with one
  // and two instances (about 45 s) and the storm (about 35 s).
  if (!process.argv.includes('--rules-only')) {
    printEndToEnd(await benchEndToEnd());
    try {
      printInstances(await benchPostgresRows());
    } catch (error) {
      // No PostgreSQL server here (or it failed): the other rows still count, but the run is not a pass.
      console.log(`\n!!!!!!!! End to end on PostgreSQL NOT RUN: ${(error as Error).message} !!!!!!!!`);
      process.exitCode = 1;
    }
    printStorm(await benchStorm());
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  });
}

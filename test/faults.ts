/**
 * The fault suite's kit (test/faults-*.test.ts): the REAL bot process as a user runs it
 * (`node --import tsx ims.ts --config FILE`, tokens in the environment, SLACK_API_URL at a fake Slack),
 * alerts whose fate is known in advance, and the checks every fault scenario ends with: nothing lost,
 * nothing twice, no unintended mention, still alive.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ApiCall, FakeMessage, FakeSlack, FakeSlackOptions } from './fake-slack.ts';
import { ALERTS, ALERTS2, INC_APPS, INC_INFRA, NAGIOS, ONCALL, allStrings, setup, tempDir, textObjects } from './harness.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IMS = path.join(ROOT, 'ims.ts');

/** Tokens shaped like real ones; their secret parts must never show in a log. */
export const BOT_TOKEN = 'xoxb-1029384756-5647382910123-FaultSuiteBotSecretAbc1';
export const APP_TOKEN = 'xapp-1-A0FAKE-9182736450-faultsuiteappsecret0123456789abcdef';
/** The parts of the tokens that identify them: neither may appear in any log. */
export const TOKEN_SECRETS = [BOT_TOKEN, APP_TOKEN, BOT_TOKEN.slice(-20), APP_TOKEN.slice(-24)];

/** The reaction that marks an alert seen (matched no rule); distinct from the resolved one. */
export const SEEN = 'eyes';

type TestLike = { after(fn: () => unknown): void };

// ─── The bot process ───

export interface BotRun {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Still running (not exited, not killed). */
  alive(): boolean;
}

/** Spawn IMS as a user would, with a clean environment plus `env`. The process is killed if the test ends first. */
export function spawnBot(t: TestLike, args: string[], env: Record<string, string> = {}): BotRun {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(SLACK_|IMS_|NODE_TEST)/.test(key))) as Record<string, string>;
  const child = spawn(process.execPath, ['--import', 'tsx', IMS, ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8'); });
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => { running = false; resolve({ code, signal }); }));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited, alive: () => running && child.exitCode === null && child.signalCode === null };
}

/** Resolves with the exit, or fails after `ms` with what the process printed. */
export async function exitOf(run: BotRun, ms = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`ims did not exit within ${ms} ms\nstderr:\n${run.stderr()}`)), ms);
  });
  try {
    return await Promise.race([run.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The environment a user gives the bot, pointed at the fake; a short ping timeout so dead links are noticed fast. */
export function botEnv(fake: FakeSlack, extra: Record<string, string> = {}): Record<string, string> {
  return { SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: fake.apiUrl, IMS_PING_TIMEOUT_MS: '400', ...extra };
}

/**
 * For the fault suites' bursts, which test faults, not storms: every alert its own post, at a pace the fake does not
 * limit (`botEnv(fake, UNPACED_ENV)`). By default the bot keeps Slack's pace, as in production.
 */
export const UNPACED_ENV = { IMS_POSTS_PER_SECOND: '1000', IMS_POST_BURST: '1000' };

/** A fake Slack (the harness's workspace) that accepts the suite's tokens; closed when the test ends. */
export async function fakeSlack(t: Parameters<typeof setup>[0], options: FakeSlackOptions = {}): Promise<FakeSlack> {
  return (await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN, ...options })).fake;
}

/**
 * The suite's config as JSON: `CRITICAL` pages the on-call in INFRA, `ERROR` is an incident in APPS,
 * anything else is only seen. Its state file sits beside it.
 */
export function suiteConfig(db: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    timezone: 'UTC',
    rules: [
      { match: 'CRITICAL', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
      { match: 'ERROR', head: '[Error]', incident: 'APPS' },
    ],
    incidents: { INFRA: { channel: INC_INFRA }, APPS: { channel: INC_APPS } },
    hotlines: { OnCall: [ONCALL] },
    seenReaction: SEEN,
    state: { path: db },
    ...extra,
  };
}

export function writeSuiteConfig(extra: Record<string, unknown> = {}): { dir: string; file: string; db: string } {
  const dir = tempDir();
  const file = path.join(dir, 'ims.json');
  const db = path.join(dir, 'ims.db');
  writeFileSync(file, JSON.stringify(suiteConfig(db, extra), null, 2));
  return { dir, file, db };
}

/** Start the bot on `file` (without scheduled reports, so every call to Slack is about alerts) and wait for its socket. */
export async function startBot(t: TestLike, fake: FakeSlack, file: string, options: { args?: string[]; env?: Record<string, string> } = {}): Promise<BotRun> {
  const hellos = fake.hellos;
  const run = spawnBot(t, ['--config', file, '--no-incident', ...(options.args ?? [])], botEnv(fake, options.env));
  await until(run, () => fake.hellos > hellos && fake.connectionCount > 0, 'the bot to connect', 20_000);
  return run;
}

// ─── Alerts whose fate is known ───

/** What an alert must become: an incident in APPS, a page (incident in INFRA, hotline), or only seen. */
export type Fate = 'incident' | 'page' | 'seen';

export interface Alert {
  channel: string;
  ts: string;
  /** Unique in the run, written into the alert, so its incident post can be found by content. */
  marker: string;
  fate: Fate;
}

const FATE_TEXT: Record<Fate, (marker: string) => string> = {
  incident: (m) => `ERROR ${m} checkout latency above 4s on web-03`,
  page: (m) => `CRITICAL ${m} PROBLEM Service Alert: db-01/postgres is down`,
  seen: (m) => `info ${m} nightly job finished in 12 min`,
};

const INCIDENT_CHANNEL: Record<Exclude<Fate, 'seen'>, string> = { incident: INC_APPS, page: INC_INFRA };

/** A message as a monitoring bot (or a person) posts it: text, attachments, blocks, who posted it. */
type PostedMessage = Parameters<FakeSlack['post']>[1];

/** The alerts of one scenario: posts them to the fake, remembers what each must become. */
export class Alerts {
  readonly list: Alert[] = [];
  private count = 0;
  constructor(private readonly fake: FakeSlack, private readonly prefix = 'f') {}

  marker(): string {
    return `[${this.prefix}${String(++this.count).padStart(4, '0')}]`;
  }

  /** Post one alert from the monitoring bot. `text` (given the marker) replaces the standard text of its fate. */
  post(fate: Fate, opts: { channel?: string; text?: (marker: string) => string; shape?: (text: string) => Partial<PostedMessage>; emit?: boolean; eventId?: string } = {}): Alert {
    const marker = this.marker();
    const text = (opts.text ?? FATE_TEXT[fate])(marker);
    const channel = opts.channel ?? (this.count % 2 ? ALERTS : ALERTS2);
    const message = this.fake.post(channel, { bot_id: NAGIOS, ...(opts.shape ? opts.shape(text) : { text }) }, { emit: opts.emit, eventId: opts.eventId });
    const alert = { channel, ts: message.ts, marker, fate };
    this.list.push(alert);
    return alert;
  }

  /**
   * One alert in each alert channel, handled: the bot has seen both channels. On a first start a channel
   * starts "now" when the bot first reads it; faults aimed at alerts must come after that, or they would
   * test the boundary of what counts as said before IMS was watching.
   */
  async warmUp(run: BotRun): Promise<void> {
    await waitHandled(this.fake, [this.post('seen', { channel: ALERTS }), this.post('seen', { channel: ALERTS2 })], run);
  }

  /**
   * `n` alerts of mixed fates (a fifth pages, two fifths are incidents, two fifths are only seen), `chunk` at a
   * time with a pause between chunks; `midway` runs once, when half of them are out (the fault goes there).
   */
  async burst(n: number, opts: { chunk?: number; pauseMs?: number; midway?: () => unknown } = {}): Promise<Alert[]> {
    const chunk = opts.chunk ?? 10;
    const posted: Alert[] = [];
    for (let i = 0; i < n; i++) {
      const fate: Fate = i % 5 === 0 ? 'page' : i % 5 < 3 ? 'incident' : 'seen';
      posted.push(this.post(fate));
      if (i + 1 === Math.floor(n / 2)) await opts.midway?.();
      if ((i + 1) % chunk === 0) await new Promise((resolve) => setTimeout(resolve, opts.pauseMs ?? 15));
    }
    return posted;
  }
}

function isTopLevel(m: FakeMessage): boolean {
  return m.thread_ts === undefined || m.thread_ts === m.ts;
}

const MARKER = /\[[a-z]+\d{4}\]/g;
type Posts = Map<string, { channel: string; message: FakeMessage }[]>;

/** The bot's top-level posts (its incident posts), by the alert markers they carry. */
function postsByMarker(fake: FakeSlack): Posts {
  const index: Posts = new Map();
  for (const channel of fake.channels.values()) {
    for (const message of channel.messages) {
      if (message.bot_id !== fake.botId || !isTopLevel(message)) continue;
      const markers = new Set(allStrings({ text: message.text, blocks: message.blocks, attachments: message.attachments }).flatMap((s) => s.match(MARKER) ?? []));
      for (const marker of markers) index.set(marker, [...(index.get(marker) ?? []), { channel: channel.id, message }]);
    }
  }
  return index;
}

/** The top-level posts the bot made anywhere that carry the alert's marker (its incident posts). */
export function incidentPostsOf(fake: FakeSlack, alert: Alert, index = postsByMarker(fake)): { channel: string; message: FakeMessage }[] {
  return index.get(alert.marker) ?? [];
}

function seenBy(fake: FakeSlack, alert: Alert): boolean {
  const message = fake.channels.get(alert.channel)?.messages.find((m) => m.ts === alert.ts);
  return !!message?.reactions?.some((r) => r.name === SEEN && r.users.includes(fake.botUserId));
}

/** The alerts that have no incident post (or no seen reaction, for those only seen) yet. */
function unhandled(fake: FakeSlack, alerts: Alert[]): Alert[] {
  const index = postsByMarker(fake);
  return alerts.filter((a) => (a.fate === 'seen' ? !seenBy(fake, a) : incidentPostsOf(fake, a, index).length === 0));
}

/** How many of `alerts` have their incident post or seen reaction by now. */
export function handledCount(fake: FakeSlack, alerts: Alert[]): number {
  return alerts.length - unhandled(fake, alerts).length;
}

/** What is still missing, for failure messages. */
function missing(fake: FakeSlack, alerts: Alert[]): string {
  const open = unhandled(fake, alerts);
  return `${open.length} of ${alerts.length} not handled: ${open.slice(0, 8).map((a) => `${a.marker}(${a.fate})`).join(' ')}${open.length > 8 ? ' …' : ''}`;
}

function exitText(run: BotRun): string {
  return run.alive() ? 'the bot is running' : `the bot exited (code ${run.child.exitCode}, signal ${run.child.signalCode})`;
}

/** Wait until `predicate` holds; fails at once if the bot exits, and with the stderr tail of the bot. */
export async function until<T>(run: BotRun, predicate: () => T | undefined | false | null, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value) return value as T;
    if (!run.alive() || Date.now() >= deadline) {
      assert.fail(`${run.alive() ? `timed out after ${timeoutMs} ms` : 'gave up'} waiting for ${what}; ${exitText(run)}\nstderr (last 3000 chars):\n${run.stderr().slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Wait until every alert has its incident post or its seen reaction (fails with what is missing and the bot's log). */
export async function waitHandled(fake: FakeSlack, alerts: Alert[], run: BotRun, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (unhandled(fake, alerts).length) {
    if (!run.alive() || Date.now() >= deadline) {
      assert.fail(`${missing(fake, alerts)}; ${exitText(run)}\nstderr (last 3000 chars):\n${run.stderr().slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Wait until Slack has heard nothing new from the bot for `ms` (a retry that posts twice comes within that). */
export async function quiet(fake: FakeSlack, ms = 800, timeoutMs = 15_000): Promise<void> {
  let count = fake.calls.length;
  let since = Date.now();
  await fake.waitFor(() => {
    if (fake.calls.length !== count) { count = fake.calls.length; since = Date.now(); }
    return Date.now() - since >= ms;
  }, `${ms} ms without calls to Slack`, timeoutMs);
}

/**
 * Nothing lost and nothing twice: every incident or page has exactly one incident post, in its channel, and
 * no continuation twice in its thread; every other alert has its seen reaction and no incident post.
 */
export function assertEachOnce(fake: FakeSlack, alerts: Alert[]): void {
  const problems: string[] = [];
  const index = postsByMarker(fake);
  for (const alert of alerts) {
    const posts = incidentPostsOf(fake, alert, index);
    if (alert.fate === 'seen') {
      if (!seenBy(fake, alert)) problems.push(`${alert.marker}: no :${SEEN}: reaction`);
      if (posts.length) problems.push(`${alert.marker}: only seen, but has ${posts.length} incident post(s)`);
      continue;
    }
    if (posts.length !== 1) problems.push(`${alert.marker} (${alert.fate}): ${posts.length} incident posts, expected exactly 1`);
    for (const { channel, message } of posts) {
      const replies = fake.channels.get(channel)!.messages.filter((m) => m.bot_id === fake.botId && m.thread_ts === message.ts && m.ts !== message.ts);
      const contents = replies.map((m) => JSON.stringify([m.text, m.blocks ?? null, m.attachments ?? null]));
      if (new Set(contents).size !== contents.length) problems.push(`${alert.marker}: a continuation in its thread was posted twice`);
    }
    const expected = INCIDENT_CHANNEL[alert.fate];
    if (posts.length && posts.some((p) => p.channel !== expected)) problems.push(`${alert.marker}: posted in ${posts.map((p) => p.channel).join(',')}, expected ${expected}`);
  }
  assert.deepEqual(problems, [], `nothing lost, nothing twice (${alerts.length} alerts)`);
}

const MENTION = /<[!@][^>]*>/g;
const BARE_SPECIAL = /(^|[^\w&])@(channel|here|everyone)\b/i;

/**
 * No unintended mention anywhere in what Slack received: the only `<@…>`/`<!…>` sequences are the hotline's
 * own (`<@ONCALL>`), and only in the posts of alerts whose fate is a page; no call asks Slack to parse names
 * (`link_names`, `parse: full`); a mrkdwn text that Slack would parse (not verbatim) holds no bare @channel/@here/@everyone.
 */
export function assertNoUnintendedMention(fake: FakeSlack, alerts: Alert[]): void {
  const pageMarkers = alerts.filter((a) => a.fate === 'page').map((a) => a.marker);
  const pagePosts = new Set<string>();
  for (const channel of fake.channels.values()) {
    for (const m of channel.messages) {
      if (m.bot_id === fake.botId && pageMarkers.some((marker) => allStrings({ text: m.text, blocks: m.blocks }).some((s) => s.includes(marker)))) pagePosts.add(`${channel.id}:${m.ts}`);
    }
  }
  const isPageCall = (call: ApiCall) => {
    const strings = allStrings({ text: call.params.text, blocks: call.params.blocks, attachments: call.params.attachments });
    return pageMarkers.some((marker) => strings.some((s) => s.includes(marker))) || pagePosts.has(`${call.params.channel}:${call.params.thread_ts}`);
  };
  const problems: string[] = [];
  for (const call of fake.calls) {
    const { params } = call;
    if (params.link_names === true || params.link_names === 'true' || params.link_names === '1' || params.parse === 'full') problems.push(`${call.method} asks Slack to parse names: ${JSON.stringify({ link_names: params.link_names, parse: params.parse })}`);
    const strings = allStrings({ ...params, metadata: undefined });
    for (const s of strings) {
      for (const sequence of s.match(MENTION) ?? []) {
        if (sequence !== `<@${ONCALL}>`) problems.push(`${call.method}: ${sequence} in ${JSON.stringify(s.slice(0, 120))}`);
        else if (!isPageCall(call)) problems.push(`${call.method}: the hotline's ${sequence} in a post that is not a page: ${JSON.stringify(s.slice(0, 120))}`);
      }
    }
    for (const o of textObjects([params.blocks, params.attachments])) {
      if (o.type === 'mrkdwn' && o.verbatim !== true && BARE_SPECIAL.test(o.text)) problems.push(`${call.method}: a non-verbatim mrkdwn text Slack would parse holds a bare special mention: ${JSON.stringify(o.text.slice(0, 120))}`);
    }
  }
  assert.deepEqual(problems.slice(0, 20), [], 'no unintended mention in anything Slack received');
}

/** Still alive and handling alerts: one of each fate goes through, and the process is still running. */
export async function assertStillWorking(fake: FakeSlack, alerts: Alerts, run: BotRun): Promise<void> {
  assert.ok(run.alive(), `the bot is still running\nstderr:\n${run.stderr().slice(-3000)}`);
  const fresh = [alerts.post('incident'), alerts.post('page'), alerts.post('seen')];
  await waitHandled(fake, fresh, run);
  assert.ok(run.alive(), `the bot is still running after handling fresh alerts\nstderr:\n${run.stderr().slice(-3000)}`);
}

/** The whole verdict of a scenario: settle, then nothing lost, nothing twice, no unintended mention, still working (and again nothing twice). */
export async function assertSurvived(fake: FakeSlack, alerts: Alerts, run: BotRun): Promise<void> {
  await waitHandled(fake, alerts.list, run);
  await quiet(fake);
  assertEachOnce(fake, alerts.list);
  await assertStillWorking(fake, alerts, run);
  await quiet(fake);
  assertEachOnce(fake, alerts.list);
  assertNoUnintendedMention(fake, alerts.list);
}

/** Lines of the bot's stderr from `from` (a length of stderr earlier), for waiting on a log line. */
export function linesSince(run: BotRun, from: number): string[] {
  return run.stderr().slice(from).split('\n').filter(Boolean);
}

/**
 * Write `content` to the config `file` and wait for the bot to log about it (a line matching `expected`);
 * a line matching `instead` (the opposite outcome) fails at once. The file is written again every second
 * while neither came: the bot starts watching its config once its start-up catch-up is done, which a
 * fault during start-up delays.
 */
export async function writeConfigAndWait(run: BotRun, file: string, content: string | Buffer, expected: RegExp, instead: RegExp, what: string, timeoutMs = 10_000): Promise<string> {
  const from = run.stderr().length;
  const deadline = Date.now() + timeoutMs;
  let written = 0;
  for (;;) {
    if (Date.now() >= written + 1000) { writeFileSync(file, content); written = Date.now(); }
    const lines = linesSince(run, from);
    const line = lines.find((l) => expected.test(l));
    if (line) return line;
    const opposite = lines.find((l) => instead.test(l));
    if (opposite) assert.fail(`${what}: the bot logged the opposite:\n${opposite}\nstderr since:\n${run.stderr().slice(from).slice(-2000)}`);
    if (Date.now() >= deadline || !run.alive()) assert.fail(`${what}: no log line ${expected} within ${timeoutMs} ms; bot alive: ${run.alive()}\nstderr since:\n${run.stderr().slice(from).slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The log line of a config change the bot refused, and of one it took. */
export const RELOAD_REFUSED = /\b(ERROR|WARN)\b.*\b(reload|config)/i;
export const RELOADED = /\bINFO\b.*\breloaded\b/i;

/** Wait for a stderr line matching `pattern` written after `from` (a length of stderr earlier); fails with the log. */
export async function waitForLog(run: BotRun, from: number, pattern: RegExp, what: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = linesSince(run, from).find((l) => pattern.test(l));
    if (line) return line;
    if (Date.now() >= deadline || !run.alive()) assert.fail(`no log line for ${what} (${pattern}) within ${timeoutMs} ms; bot alive: ${run.alive()}\nstderr since:\n${run.stderr().slice(from).slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

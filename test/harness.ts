/**
 * Shared set-up for end-to-end tests: a fake Slack, a real IMS (real SDK clients) pointed at it, a temp
 * state file, short timeouts, and a log captured in memory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, type TestContext } from 'node:test';
import { Ims, compileConfig, createLogger, type Config, type CompiledConfig, type RuntimeOptions } from '../ims.ts';
import { FakeSlack, type FakeSlackOptions } from './fake-slack.ts';
import { PgState } from '../ims-state-pg.ts';
import { freshDatabase, startPostgres, type TestPostgres } from './postgres.ts';

/** socket-mode 3.1 rejects with `undefined` when disconnect() races a reconnect; let every other rejection fail the test. */
export function guardSocketModeShutdownBug(): void {
  before(() => {
    const listeners = process.listeners('unhandledRejection');
    process.removeAllListeners('unhandledRejection');
    for (const listener of listeners) {
      process.on('unhandledRejection', (reason, promise) => { if (reason !== undefined) listener(reason, promise); });
    }
  });
}

export const ALERTS = 'C0ALERTS01';
export const ALERTS2 = 'C0ALERTS02';
export const INC_INFRA = 'C0INCINFRA';
export const INC_APPS = 'C0INCAPPS1';
export const REPORT = 'C0REPORT01';
export const DEFAULT_CH = 'C0INCDEFLT';
export const NAGIOS = 'B0NAGIOS1';
export const ONCALL = 'U0ONCALL01';
export const HUMAN = 'U0HUMAN001';

/** A small realistic config; override any part. */
export function baseConfig(overrides: Partial<Config> = {}): Config {
  return {
    timezone: 'UTC',
    rules: [
      { match: 'backup', when: '!.*', head: '[Backup]', incident: 'INFRA' },
      { match: 'CRITICAL', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
      { match: '(?i)error', head: '[Error]', incident: 'APPS' },
    ],
    incidents: { INFRA: { channel: INC_INFRA }, APPS: { channel: INC_APPS } },
    reverseDefault: { channel: DEFAULT_CH, header: '[Alert]' },
    report: { channel: REPORT },
    hotlines: { OnCall: [ONCALL, 'here'] },
    ...overrides,
  };
}

export function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ims-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A workspace with the channels and users the base config names. */
export async function startFake(options: FakeSlackOptions = {}): Promise<FakeSlack> {
  const fake = await FakeSlack.start({ redeliverAfterMs: 400, ...options });
  for (const [id, name] of [[ALERTS, 'alerts-infra'], [ALERTS2, 'alerts-apps'], [INC_INFRA, 'inc-infra'], [INC_APPS, 'inc-apps'], [REPORT, 'ims-report'], [DEFAULT_CH, 'inc-default']]) {
    fake.addChannel({ id, name });
  }
  fake.addUser({ id: ONCALL, name: 'oncall', real_name: 'Ona Call' });
  fake.addUser({ id: HUMAN, name: 'hugo', real_name: 'Hugo Human' });
  return fake;
}

export interface Bot {
  ims: Ims;
  logs: string[];
  config: CompiledConfig;
  stop(): Promise<void>;
}

/**
 * For suites that post bursts into one channel to test something else than storms: every alert its own post,
 * at a pace the fake does not limit. By default the bot keeps Slack's pace, as in production (digests in a storm).
 */
export const UNPACED: Partial<RuntimeOptions> = { postsPerSecond: 1000, postBurst: 1000 };

/**
 * The backend bots keep their state in: SQLite (a file per bot), or PostgreSQL when `IMS_TEST_STATE=postgres` (a
 * server started once per test process; a database per state path, so a bot restarted on the same path finds its state).
 * A suite runs on both by running again under that variable (`test/pipeline-postgres.test.ts`).
 */
export const TEST_BACKEND: 'sqlite' | 'postgres' = process.env.IMS_TEST_STATE === 'postgres' ? 'postgres' : 'sqlite';
let testServer: Promise<TestPostgres> | undefined;
const databasesByPath = new Map<string, Promise<string>>();
let botsStarted = 0;

/** The PostgreSQL state of `statePath` (a fresh database the first time), opened for one bot. */
async function postgresStateFor(statePath: string, instance: string): Promise<PgState> {
  testServer ??= startPostgres().then((server) => { process.once('beforeExit', () => void server.stop()); return server; });
  const server = await testServer;
  if (!databasesByPath.has(statePath)) databasesByPath.set(statePath, freshDatabase(server.url));
  return PgState.open(await databasesByPath.get(statePath)!, { instance });
}

/** Start a real IMS against the fake. Stop it (or let the test's `after` do it) before closing the fake. */
export async function startBot(fake: FakeSlack, config: Config, options: Partial<RuntimeOptions> & { statePath?: string; start?: boolean } = {}): Promise<Bot> {
  const statePath = options.statePath ?? path.join(tempDir(), 'ims.db');
  const compiled = compileConfig({ ...config, state: { ...config.state, path: statePath } }, { source: 'test-config', reverse: options.reverse, reacji: options.reacji });
  const logs: string[] = [];
  const log = createLogger({ level: 'debug', write: (line) => logs.push(line), secrets: ['xapp-test', 'xoxb-test'] });
  // On PostgreSQL the bot's claims name it, as an instance's do.
  const instance = options.instance ?? `test-bot-${++botsStarted}`;
  const store = options.store ?? (TEST_BACKEND === 'postgres' ? await postgresStateFor(statePath, instance) : undefined);
  const ims = new Ims(compiled, {
    appToken: 'xapp-test', botToken: 'xoxb-test', apiUrl: fake.apiUrl, log, autoReload: false, reports: false,
    retryConfig: { retries: 1, minTimeout: 10, maxTimeout: 50 }, clientPingTimeoutMs: 300, outboxIntervalMs: 50, ...options, store, instance,
  });
  let stopped = false;
  const bot: Bot = { ims, logs, config: compiled, stop: async () => { if (!stopped) { stopped = true; await ims.stop(); } } };
  if (options.start !== false) await ims.start();
  return bot;
}

/** Wait until the bot has nothing in flight (events handled, posts sent). */
export async function settle(bot: Bot, ms = 150): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  await bot.ims.idle();
}

/** Wait until `check` holds, letting the bot settle between looks; fails naming `what` after `timeoutMs`. */
export async function until(bot: Bot, what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await settle(bot, 30);
  }
}

/** Every string inside a value (message text, Block Kit objects, nested), for "never appears anywhere" checks. */
export function allStrings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(allStrings);
  if (value && typeof value === 'object') return Object.values(value).flatMap(allStrings);
  return [];
}

/** Every mrkdwn/plain_text text object inside Block Kit blocks. */
export function textObjects(value: unknown): { type: string; text: string; verbatim?: boolean }[] {
  if (Array.isArray(value)) return value.flatMap(textObjects);
  if (!value || typeof value !== 'object') return [];
  const node = value as Record<string, unknown>;
  const own = (node.type === 'mrkdwn' || node.type === 'plain_text') && typeof node.text === 'string' ? [node as { type: string; text: string; verbatim?: boolean }] : [];
  return [...own, ...Object.values(node).flatMap(textObjects)];
}

/** The inverse of Slack escaping (`&amp;`, `&lt;`, `&gt;`). */
export function unescapeSlack(text: string): string {
  return text.replace(/&(?:lt|gt|amp);/g, (entity) => ({ '&lt;': '<', '&gt;': '>', '&amp;': '&' })[entity]!);
}

/** The `message` event Slack sends for a message already stored in the fake (to redeliver it under another event_id). */
export function messageEventOf(channel: string, message: { ts: string; text: string; user?: string; bot_id?: string; subtype?: string }): Record<string, unknown> {
  const { ts, text, user, bot_id, subtype } = message;
  return Object.fromEntries(Object.entries({ type: 'message', channel, channel_type: 'channel', ts, event_ts: ts, text, user, bot_id, subtype }).filter(([, v]) => v !== undefined));
}

export interface Setup {
  fake: FakeSlack;
  /** Start a bot against the fake (as `startBot`); it is stopped when the test ends, even if its start failed. */
  start(config: Config, options?: Partial<RuntimeOptions> & { statePath?: string; start?: boolean }): Promise<Bot>;
}

/** A fake Slack for one test. When the test ends, every bot started through `start` stops (newest first), then the fake closes. */
export async function setup(t: TestContext, options: FakeSlackOptions = {}): Promise<Setup> {
  const fake = await startFake(options);
  const bots: Bot[] = [];
  t.after(async () => {
    try {
      for (const bot of [...bots].reverse()) await bot.stop();
    } finally {
      await fake.close();
    }
  });
  return {
    fake,
    start: async (config, botOptions = {}) => {
      const bot = await startBot(fake, config, { ...botOptions, start: false });
      bots.push(bot);
      if (botOptions.start !== false) await bot.ims.start();
      return bot;
    },
  };
}

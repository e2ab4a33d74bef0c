/**
 * Nothing crashes the process, nothing hangs it: the bot as a user runs it (its own process, tokens in the
 * environment, SLACK_API_URL pointing at the fake Slack), hit with malformed frames, revoked tokens, a Slack
 * that cannot be reached, signals at awkward moments, and a wrapper process killed above it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, INC_APPS, NAGIOS, baseConfig, guardSocketModeShutdownBug, setup, tempDir } from './harness.ts';

guardSocketModeShutdownBug();

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IMS = path.join(ROOT, 'ims.ts');
const BOT_TOKEN = 'xoxb-faults-123456789';
const APP_TOKEN = 'xapp-faults-987654321';

interface Run {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawn `command` (by default IMS under node with the tsx loader) with a clean environment plus `env`; killed if the test ends first. */
function runIms(t: { after(fn: () => unknown): void }, args: string[], env: Record<string, string>, command: string[] = [process.execPath, '--import', 'tsx', IMS]): Run {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(SLACK_|IMS_|NODE_TEST)/.test(key))) as Record<string, string>;
  const child = spawn(command[0], [...command.slice(1), ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(async () => {
    // The whole process group this test started (IMS and any wrapper above it).
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
    await exited;
  });
  return { child, stderr: () => stderr, exited };
}

/** Resolves with the exit, or fails after `ms` with what the process printed. */
async function exitOf(run: Run, ms = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const timeout = sleep(ms, 'timeout' as const, { ref: false });
  const result = await Promise.race([run.exited, timeout]);
  if (result === 'timeout') throw new Error(`ims did not exit within ${ms} ms\nstderr:\n${run.stderr()}`);
  return result;
}

async function waitFor<T>(predicate: () => T | undefined | false | null, what: string, run: Run, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\nstderr:\n${run.stderr()}`);
    await sleep(20);
  }
}

function writeConfig(): { file: string; db: string } {
  const dir = tempDir();
  const file = path.join(dir, 'ims.json');
  const db = path.join(dir, 'ims.db');
  writeFileSync(file, JSON.stringify({ timezone: 'UTC', rules: [{ match: '(?i)error', head: '[Error]', incident: 'APPS' }], incidents: { APPS: { channel: INC_APPS } }, state: { path: db } }));
  return { file, db };
}

/** A shell script (in a temp folder) with `body` after its shebang line. */
function writeScript(body: string): string {
  const file = path.join(tempDir(), 'run-ims.sh');
  writeFileSync(file, `#!/bin/sh\n${body}`);
  return file;
}

const slackEnv = (fake: FakeSlack, extra: Record<string, string> = {}) => ({ SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: fake.apiUrl, IMS_PING_TIMEOUT_MS: '300', ...extra });
const reposts = (fake: FakeSlack) => fake.messagesIn(INC_APPS).filter((m) => m.bot_id === fake.botId);
/** Whether a process still runs (a zombie waiting for its reaper does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    try { process.kill(pid, 0); return true; } catch { return false; }
  }
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

test('malformed Socket Mode frames (null event, no payload, not JSON, unknown types) are skipped and IMS goes on handling alerts', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { file } = writeConfig();
  const run = runIms(t, ['--config', file, '--no-incident'], slackEnv(fake));
  await fake.waitForConnection(undefined, 20_000);
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: before the bad frames' });
  await waitFor(() => reposts(fake).length === 1, 'the first repost', run);

  const frames = [
    JSON.stringify({ envelope_id: 'bad-1', type: 'events_api', accepts_response_payload: false, payload: { event: null } }),
    JSON.stringify({ envelope_id: 'bad-2', type: 'events_api' }),
    'this is not JSON {',
    JSON.stringify({ envelope_id: 'bad-3', type: 'a_type_nobody_knows', payload: { what: 1 } }),
    JSON.stringify({ envelope_id: 'bad-4', type: 'events_api', payload: { event: { type: 'message', channel: null, ts: 7 } } }),
    JSON.stringify(null),
    '[]',
  ];
  for (const frame of frames) assert.ok(fake.sendRawFrame(frame));
  await sleep(300);
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: after the bad frames' });
  await waitFor(() => reposts(fake).length === 2, 'the repost after the bad frames', run);
  assert.equal(run.child.exitCode, null, `still running:\n${run.stderr()}`);
  assert.match(run.stderr(), /malformed Socket Mode frame skipped/);

  run.child.kill('SIGTERM');
  assert.equal((await exitOf(run)).code, 0, run.stderr());
});

test('an app token revoked while running ends IMS with exit 1 and one line naming SLACK_APP_TOKEN and what to do', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { file } = writeConfig();
  const run = runIms(t, ['--config', file, '--no-incident'], slackEnv(fake));
  await fake.waitForConnection(undefined, 20_000);
  fake.revokeToken('app', 'invalid_auth');
  const { code } = await exitOf(run);
  assert.equal(code, 1, run.stderr());
  const lines = run.stderr().split('\n').filter((line) => line.includes('SLACK_APP_TOKEN'));
  assert.equal(lines.length, 1, `one line names the token:\n${run.stderr()}`);
  assert.match(lines[0], /invalid_auth/);
  assert.match(lines[0], /create a new one.*restart/);
  assert.doesNotMatch(run.stderr(), /^\s+at /m, 'no stack trace');
  assert.ok(!run.stderr().includes('faults-987654321'), 'the token itself is not shown');
});

test('a bot token refused at start-up, or revoked while running, ends IMS with exit 1 and one line naming SLACK_BOT_TOKEN', async (t) => {
  const refused = (await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN })).fake;
  refused.revokeToken('bot', 'token_revoked');
  const atStart = runIms(t, ['--config', writeConfig().file, '--no-incident'], slackEnv(refused));

  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const running = runIms(t, ['--config', writeConfig().file, '--no-incident'], slackEnv(fake));
  await fake.waitForConnection(undefined, 20_000);
  fake.revokeToken('bot', 'token_revoked');
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: posted with a revoked token' });

  for (const run of [atStart, running]) {
    const { code } = await exitOf(run);
    assert.equal(code, 1, run.stderr());
    const lines = run.stderr().split('\n').filter((line) => line.includes('SLACK_BOT_TOKEN'));
    assert.equal(lines.length, 1, `one line names the token:\n${run.stderr()}`);
    assert.match(lines[0], /token_revoked/);
    assert.match(lines[0], /restart/);
  }
  assert.equal(refused.connectionCount, 0);
});

test('when Slack cannot be reached, start-up logs where it connects and each retry with its reason, then gives up with a clear message', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  await fake.setReachable(false);
  const started = Date.now();
  const run = runIms(t, ['--config', writeConfig().file, '--no-incident'], slackEnv(fake, { IMS_START_TIMEOUT_MS: '3000' }));
  const { code } = await exitOf(run, 30_000);
  const took = Date.now() - started;
  const stderr = run.stderr();
  assert.equal(code, 1, stderr);
  assert.ok(stderr.includes(`connecting to Slack at ${fake.apiUrl}`), `says where it connects:\n${stderr}`);
  const retries = stderr.split('\n').filter((line) => / WARN /.test(line) && /retry \d/.test(line));
  assert.ok(retries.length >= 2, `each retry is logged without --debug:\n${stderr}`);
  assert.ok(retries.every((line) => /ECONNREFUSED/.test(line)), 'with its reason');
  assert.match(stderr, /cannot reach Slack at .*gave up after 3 s/);
  assert.ok(took < 25_000, `gave up after the bound, not the SDK's half hour (${took} ms)`);
});

test('start-up waits out a 429 on auth.test, logging it, instead of giving up', async (t) => {
  const { fake, start } = await setup(t);
  fake.rateLimit('auth.test', { count: 1, retryAfterSec: 1 });
  const bot = await start(baseConfig());
  assert.equal(fake.callsTo('auth.test').length, 2);
  assert.ok(bot.logs.some((l) => / WARN .*auth\.test.*rate limited/.test(l)), bot.logs.join('\n'));
});

test('Slack that comes back within the start-up bound is connected to', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  await fake.setReachable(false);
  const run = runIms(t, ['--config', writeConfig().file, '--no-incident'], slackEnv(fake, { IMS_START_TIMEOUT_MS: '30000', IMS_HTTP_RETRIES: '1' }));
  await waitFor(() => /retry 1/.test(run.stderr()), 'a retry', run, 20_000);
  await fake.setReachable(true);
  await fake.waitForConnection(undefined, 30_000);
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: after the outage' });
  await waitFor(() => reposts(fake).length === 1, 'the repost', run);
  run.child.kill('SIGTERM');
  assert.equal((await exitOf(run)).code, 0, run.stderr());
});

test('a short Web API outage during start-up is waited out: IMS neither exits nor gives up, and then handles alerts', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  fake.outage(503, 2500, { methods: ['conversations.list'] });
  const run = runIms(t, ['--config', writeConfig().file, '--no-incident'], slackEnv(fake));
  const early = await Promise.race([run.exited, sleep(4000, undefined, { ref: false })]);
  assert.equal(early, undefined, `IMS exited during the outage:\n${run.stderr()}`);
  await fake.waitForConnection(undefined, 30_000);
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: after the start-up outage' });
  await waitFor(() => reposts(fake).length === 1, 'the repost', run, 30_000);
  assert.match(run.stderr(), /conversations\.list .*failed \(HTTP 503\); retry 1/, 'the retry is logged without --debug');
  run.child.kill('SIGTERM');
  assert.equal((await exitOf(run)).code, 0, run.stderr());
});

test('the first SIGTERM during start-up ends IMS within 10 s: while Slack is unreachable, and while waiting for the hello', async (t) => {
  const unreachable = (await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN })).fake;
  await unreachable.setReachable(false);
  const noHello = (await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN })).fake;
  noHello.setAcceptConnections(false);
  const runs = [
    { run: runIms(t, ['--config', writeConfig().file, '--no-incident'], slackEnv(unreachable)), ready: /retry \d/ },
    { run: runIms(t, ['--config', writeConfig().file, '--no-incident'], slackEnv(noHello)), ready: /connected as/ },
  ];
  for (const { run, ready } of runs) {
    await waitFor(() => ready.test(run.stderr()), `${ready}`, run, 20_000);
    if (ready.source.includes('connected')) await waitFor(() => noHello.callsTo('apps.connections.open').length, 'the socket', run);
    const termAt = Date.now();
    run.child.kill('SIGTERM');
    const { code, signal } = await exitOf(run, 15_000);
    const took = Date.now() - termAt;
    assert.ok(took < 10_000, `ended ${took} ms after the first SIGTERM`);
    assert.equal(signal, null, run.stderr());
    assert.equal(code, 0, run.stderr());
    assert.match(run.stderr(), /SIGTERM received/);
  }
});

test('the first SIGTERM while reconnecting, with a post retrying through a Slack outage, ends IMS within 10 s and leaves the alert pending', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { file, db } = writeConfig();
  // The default retry policy: no IMS_HTTP_RETRIES.
  const run = runIms(t, ['--config', file, '--no-incident'], slackEnv(fake));
  await fake.waitForConnection(undefined, 20_000);
  fake.outage(503, 120_000, { methods: ['chat.postMessage'] });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: during the outage' });
  await waitFor(() => fake.callsTo('chat.postMessage').some((c) => c.status === 503), 'the failing post', run);
  fake.setAcceptConnections(false);
  const opened = fake.callsTo('apps.connections.open').length;
  fake.dropConnections();
  await waitFor(() => fake.callsTo('apps.connections.open').length > opened, 'the reconnect', run);

  const termAt = Date.now();
  run.child.kill('SIGTERM');
  const { code } = await exitOf(run, 15_000);
  const took = Date.now() - termAt;
  assert.ok(took < 10_000, `ended ${took} ms after the first SIGTERM`);
  assert.equal(code, 0, run.stderr());
  const state = new Database(db, { readonly: true });
  try {
    assert.deepEqual(state.prepare('SELECT status FROM messages WHERE ts = ?').all(alert.ts), [{ status: 'pending' }], 'finished at the next start');
  } finally {
    state.close();
  }
});

test('when the wrapper above IMS is killed (npx gets SIGTERM, or tsx is SIGKILLed), IMS stops instead of running on as an orphan', async (t) => {
  const cases = [
    { name: 'npx tsx ims.ts, SIGTERM to npx', command: ['npx', 'tsx', IMS], signal: 'SIGTERM' as const },
    { name: 'tsx ims.ts, SIGKILL to tsx', command: [process.execPath, path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), IMS], signal: 'SIGKILL' as const },
    { name: 'a shell script running npx tsx ims.ts, SIGTERM to the script', command: ['/bin/sh', writeScript(`npx tsx '${IMS}' "$@"\necho ims ended\n`)], signal: 'SIGTERM' as const },
  ];
  for (const { name, command, signal } of cases) {
    const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
    const run = runIms(t, ['--config', writeConfig().file, '--no-incident'], slackEnv(fake), command);
    await fake.waitForConnection(undefined, 30_000);
    const pid = Number(/connecting to Slack at \S+ pid=(\d+)/.exec(run.stderr())?.[1]);
    assert.ok(pid > 0 && pid !== run.child.pid, `${name}: IMS runs in its own process under the wrapper`);
    const tsx = parentOf(pid);
    run.child.kill(signal);
    await waitFor(() => !alive(pid), `${name}: IMS (pid ${pid}) to end`, run, 15_000);
    assert.match(run.stderr(), /exited: stopping/, name);
    assert.match(run.stderr(), /stopped/, name);
    await waitFor(() => !alive(tsx), `${name}: tsx (pid ${tsx}) to end`, run, 10_000);
  }
});

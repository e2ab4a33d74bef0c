/**
 * The bot as a user runs it: `node --import tsx ims.ts …` in its own process, tokens in the environment,
 * SLACK_API_URL pointing at the fake Slack, a config file in a temp folder, stopped with SIGTERM.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, NAGIOS, guardSocketModeShutdownBug, setup, tempDir } from './harness.ts';
import { exitOf, spawnBot as runIms } from './faults.ts';

guardSocketModeShutdownBug();

const BOT_TOKEN = 'xoxb-secret-123456789';
const APP_TOKEN = 'xapp-secret-987654321';
const SECRETS = ['secret-123456789', 'secret-987654321'];

/** A config file (JSON) in a fresh temp folder, its state file beside it. */
function writeConfig(extra: Record<string, unknown> = {}): { dir: string; file: string; db: string } {
  const dir = tempDir();
  const file = path.join(dir, 'ims.json');
  const db = path.join(dir, 'ims.db');
  writeFileSync(file, JSON.stringify({
    timezone: 'UTC',
    rules: [{ match: '(?i)error', head: '[Error]', incident: 'APPS' }],
    incidents: { APPS: { channel: INC_APPS } },
    state: { path: db },
    ...extra,
  }, null, 2));
  return { dir, file, db };
}

const slackEnv = (fake: FakeSlack) => ({ SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: fake.apiUrl, IMS_HTTP_RETRIES: '1' });
const debugLines = (text: string) => text.split('\n').filter((line) => / DEBUG /.test(line));

test('missing or wrong-kind tokens: exit 1 with one clear line on stderr that never shows the token', async (t) => {
  const { file } = writeConfig();
  const cases: { env: Record<string, string>; says: RegExp }[] = [
    { env: { SLACK_BOT_TOKEN: BOT_TOKEN }, says: /SLACK_APP_TOKEN is not set/ },
    { env: { SLACK_APP_TOKEN: BOT_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN }, says: /SLACK_APP_TOKEN must be an app-level token starting with 'xapp-'/ },
    { env: { SLACK_APP_TOKEN: APP_TOKEN }, says: /SLACK_BOT_TOKEN is not set/ },
    { env: { SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: APP_TOKEN }, says: /SLACK_BOT_TOKEN must be a bot token starting with 'xoxb-'/ },
  ];
  const runs = cases.map(({ env }) => runIms(t, ['--config', file], env));
  for (const [i, run] of runs.entries()) {
    const { code } = await exitOf(run);
    const lines = run.stderr().split('\n').filter((line) => line.trim() !== '');
    assert.equal(code, 1, `case ${i}: exit code`);
    assert.equal(lines.length, 1, `case ${i}: one line, got:\n${run.stderr()}`);
    assert.match(lines[0], cases[i].says);
    assert.equal(run.stdout(), '', `case ${i}: nothing on stdout`);
    for (const secret of SECRETS) assert.ok(!run.stderr().includes(secret), `case ${i}: the token is not shown`);
  }
});

test('runs against SLACK_API_URL, reposts an alert, and on SIGTERM finishes the post in flight, closes the DB and exits 0', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { file, db, dir } = writeConfig();
  const logFile = path.join(dir, 'ims.log');
  writeFileSync(logFile, 'a line from an earlier run\n');
  const run = runIms(t, ['--config', file, '--debug', '--log', logFile, '--no-incident'], slackEnv(fake));
  await fake.waitForConnection(undefined, 15_000);

  fake.rateLimit('chat.postMessage', { count: 1, retryAfterSec: 1, channel: INC_APPS });
  const alert = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: checkout latency 4s' });
  await fake.waitFor(() => fake.callsTo('chat.postMessage').some((c) => c.params.channel === INC_APPS && c.status === 429), 'the throttled post', 10_000);
  const termAt = Date.now();
  run.child.kill('SIGTERM');
  const { code, signal } = await exitOf(run);
  assert.equal(signal, null, `exited by itself, stderr:\n${run.stderr()}`);
  assert.equal(code, 0, `exit code 0, stderr:\n${run.stderr()}`);

  const posted = fake.callsTo('chat.postMessage').filter((c) => c.params.channel === INC_APPS && c.status === 200);
  assert.equal(posted.length, 1, 'the post in flight was finished, once');
  assert.ok(posted[0].at > termAt, 'it was finished after SIGTERM');
  assert.match(fake.messagesIn(INC_APPS)[0].text, /^\[Error\] ERROR: checkout latency 4s/);
  assert.equal(fake.callsTo('auth.test').length, 1, 'auth.test once');

  assert.ok(!existsSync(`${db}-wal`), 'the DB was closed (SQLite removes the WAL file on a clean close)');
  const state = new Database(db, { readonly: true });
  try {
    const incident = state.prepare('SELECT source_channel, source_ts, incident_ts FROM incidents').all();
    assert.deepEqual(incident, [{ source_channel: ALERTS, source_ts: alert.ts, incident_ts: fake.messagesIn(INC_APPS)[0].ts }]);
    assert.deepEqual(state.prepare(`SELECT status FROM messages WHERE ts = ?`).all(alert.ts), [{ status: 'done' }]);
  } finally {
    state.close();
  }

  const stderr = run.stderr();
  assert.match(stderr, /SIGTERM received/);
  assert.match(stderr, /stopped/);
  assert.ok(debugLines(stderr).length > 0, '--debug shows debug lines');
  const logged = readFileSync(logFile, 'utf8');
  assert.ok(logged.startsWith('a line from an earlier run\n'), '--log appends');
  const fileLines = logged.split('\n').slice(1).filter(Boolean);
  assert.ok(fileLines.length >= 3, `log lines were appended: ${fileLines.length}`);
  assert.deepEqual(fileLines, stderr.split('\n').filter((line) => /^\d{4}-\d\d-\d\dT/.test(line)), 'the file gets the same lines as stderr');
  for (const where of [['stdout', run.stdout()], ['stderr', stderr], ['log file', logged]]) {
    for (const secret of SECRETS) assert.ok(!where[1].includes(secret), `no token in ${where[0]}`);
  }
});

test('without --debug there are no debug lines; with it the same run shows them', async (t) => {
  // The same run twice, side by side, each against its own fake Slack.
  const once = async (flags: string[]) => {
    const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
    const { file } = writeConfig();
    const run = runIms(t, ['--config', file, '--no-incident', ...flags], slackEnv(fake));
    await fake.waitForConnection(undefined, 15_000);
    // A human talking in the incident channel is ignored (a debug line); the alert after it shows it was handled.
    const ignored = fake.post(INC_APPS, { user: HUMAN, text: 'looking into it' });
    fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: disk full' });
    await fake.waitFor(() => fake.messagesIn(INC_APPS).some((m) => m.bot_id === fake.botId), 'the repost', 10_000);
    run.child.kill('SIGTERM');
    assert.equal((await exitOf(run)).code, 0, run.stderr());
    return { stderr: run.stderr(), ignoredTs: ignored.ts };
  };
  const [plain, debug] = await Promise.all([once([]), once(['--debug'])]);
  assert.match(plain.stderr, / INFO  /);
  assert.match(plain.stderr, /incident #1/);
  assert.deepEqual(debugLines(plain.stderr), [], 'info by default');
  assert.ok(debugLines(debug.stderr).some((line) => line.includes(debug.ignoredTs)), `--debug shows the ignored message:\n${debug.stderr}`);
});

test('--no-id-lookup starts without resolving names and SIGINT stops it with 0; without the flag an unknown name stops start-up naming it', async (t) => {
  const refusedSlack = (await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN })).fake;
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const posters = { posters: ['nobody-here', NAGIOS] };
  const { file } = writeConfig(posters);
  const refused = runIms(t, ['--config', writeConfig(posters).file, '--no-incident'], slackEnv(refusedSlack));
  const run = runIms(t, ['--config', file, '--no-incident', '--no-id-lookup'], slackEnv(fake));

  const { code } = await exitOf(refused);
  assert.equal(code, 1, `exit 1, stderr:\n${refused.stderr()}`);
  assert.match(refused.stderr(), /'nobody-here'/);
  assert.equal(refusedSlack.connectionCount, 0, 'it never connected');
  assert.ok(refusedSlack.callsTo('users.list').length >= 1, 'names were looked up');

  await fake.waitForConnection(undefined, 15_000);
  fake.post(ALERTS, { user: HUMAN, text: 'ERROR: from a human, not a listed poster' });
  fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: from nagios' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length, 'the repost', 10_000);
  run.child.kill('SIGINT');
  assert.equal((await exitOf(run)).code, 0, run.stderr());
  assert.match(run.stderr(), /SIGINT received/);
  assert.equal(fake.callsTo('users.list').length, 0, 'users.list was not called');
  assert.deepEqual(fake.messagesIn(INC_APPS).map((m) => m.text.replace(/\n.*/s, '')), ['[Error] ERROR: from nagios']);
});

test('SIGTERM while Socket Mode is reconnecting and waiting for hello still exits 0', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { file } = writeConfig();
  const run = runIms(t, ['--config', file, '--no-incident'], { ...slackEnv(fake), IMS_PING_TIMEOUT_MS: '300' });
  await fake.waitForConnection(undefined, 15_000);
  const opened = fake.callsTo('apps.connections.open').length;
  fake.setAcceptConnections(false);
  fake.dropConnections();
  await fake.waitFor(() => fake.callsTo('apps.connections.open').length > opened, 'the reconnect attempt', 10_000);
  // The new socket opens and waits for a hello that does not come.
  await fake.waitFor(() => (fake as unknown as { sockets: Set<unknown> }).sockets.size > 0, 'the new socket', 10_000);
  run.child.kill('SIGTERM');
  const { code, signal } = await exitOf(run);
  assert.equal(signal, null);
  assert.equal(code, 0, `exit 0, stderr:\n${run.stderr()}`);
  assert.match(run.stderr(), /stopped/);
});

test('SIGTERM while Socket Mode cannot even get a connection URL (apps.connections.open throttled) still exits 0', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { file } = writeConfig();
  const run = runIms(t, ['--config', file, '--no-incident'], { ...slackEnv(fake), IMS_PING_TIMEOUT_MS: '300' });
  await fake.waitForConnection(undefined, 15_000);
  fake.rateLimit('apps.connections.open', { count: 5, retryAfterSec: 1 });
  fake.dropConnections();
  await fake.waitFor(() => fake.callsTo('apps.connections.open').some((c) => c.status === 429), 'the throttled reconnect', 10_000);
  run.child.kill('SIGTERM');
  const termAt = Date.now();
  const { code, signal } = await exitOf(run, 8000);
  const took = Date.now() - termAt;
  assert.ok(took < 5000, `exited ${took} ms after SIGTERM, without waiting for the SDK's reconnect`);
  assert.equal(signal, null);
  assert.equal(code, 0, `exit 0, stderr:\n${run.stderr()}`);
  assert.equal(fake.connectionCount, 0, 'no connection was made after the stop');
});

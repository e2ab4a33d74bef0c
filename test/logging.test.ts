/**
 * Seeing what IMS does: `--debug` names, for each message, the rule that matched or why it was ignored;
 * `--log` to a file IMS cannot write stops start-up with a message; `--log-format json` writes one JSON
 * object per line for log shippers, tokens redacted. The CLI runs as a user runs it, against the fake Slack.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, createLogger } from '../ims.ts';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, NAGIOS, guardSocketModeShutdownBug, messageEventOf, setup, tempDir } from './harness.ts';
import { exitOf, spawnBot as runIms } from './faults.ts';

guardSocketModeShutdownBug();

const BOT_TOKEN = 'xoxb-logsecret-123456789';
const APP_TOKEN = 'xapp-logsecret-987654321';
const SECRETS = ['logsecret-123456789', 'logsecret-987654321'];

function writeConfig(extra: Record<string, unknown> = {}): { dir: string; file: string } {
  const dir = tempDir();
  const file = path.join(dir, 'ims.json');
  writeFileSync(file, JSON.stringify({
    timezone: 'UTC',
    rules: [
      { match: 'backup', when: '!.*', head: '[Backup]', incident: 'APPS' },
      { match: '(?i)error', head: '[Error]', incident: 'APPS' },
    ],
    incidents: { APPS: { channel: INC_APPS } },
    state: { path: path.join(dir, 'ims.db') },
    ...extra,
  }, null, 2));
  return { dir, file };
}

const slackEnv = (fake: FakeSlack) => ({ SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: fake.apiUrl, IMS_HTTP_RETRIES: '1' });

test('--debug shows, for each message, the rule that matched (number, head, pattern) or why it was ignored', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { file } = writeConfig({ posters: [NAGIOS, HUMAN] });
  const run = runIms(t, ['--config', file, '--debug', '--no-incident'], slackEnv(fake));
  await fake.waitForConnection(undefined, 15_000);
  const matched = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: disk full on db-01' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length, 'the repost', 10_000);
  const messages = {
    matched,
    unmatched: fake.post(ALERTS, { bot_id: NAGIOS, text: 'all good on db-01' }),
    suppressed: fake.post(ALERTS, { bot_id: NAGIOS, text: 'backup finished' }),
    poster: fake.post(ALERTS, { bot_id: 'B0STRANGER', text: 'ERROR from a stranger' }),
    empty: fake.post(ALERTS, { bot_id: NAGIOS, text: '' }),
    hidden: fake.post(ALERTS, { user: HUMAN, subtype: 'channel_join', text: `<@${HUMAN}> has joined the channel` }),
    ownChannel: fake.post(INC_APPS, { user: HUMAN, text: 'looking into it' }),
  };
  // Slack delivers the first alert again under a new event_id, and tells of an edit.
  fake.sendEvent(messageEventOf(ALERTS, matched));
  const editTs = '1700000000.000100';
  fake.sendEvent({ type: 'message', subtype: 'message_changed', hidden: true, channel: ALERTS, ts: editTs, event_ts: editTs, message: { type: 'message', bot_id: NAGIOS, text: 'ERROR: edited', ts: matched.ts } });
  const last = fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR: the last one' });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).some((m) => m.text.includes('the last one')), 'the last repost', 10_000);
  await fake.waitFor(() => messages.suppressed.reactions && messages.unmatched.reactions, 'the seen reactions', 10_000);
  run.child.kill('SIGTERM');
  assert.equal((await exitOf(run)).code, 0, run.stderr());
  const debug = run.stderr().split('\n').filter((line) => / DEBUG /.test(line));
  const about = (ts: string) => debug.filter((line) => line.includes(`ts=${ts}`)).join('\n');
  const expected: Record<keyof typeof messages, RegExp> = {
    matched: new RegExp(`rule 2 \\[Error\\] '\\(\\?i\\)error' matched → incident in ${INC_APPS}`),
    unmatched: /no rule matched → seen, :white_check_mark:/,
    suppressed: /suppression rule 1 \[Backup\] 'backup' \(when !\.\*\) matched → not an incident/,
    poster: /ignored message \(poster B0STRANGER is not in posters/,
    empty: /ignored message \(empty text/,
    hidden: /ignored message \(hidden subtype 'channel_join'/,
    ownChannel: new RegExp(`ignored message \\(${INC_APPS} is a channel IMS posts into\\)`),
  };
  for (const [name, pattern] of Object.entries(expected) as [keyof typeof messages, RegExp][]) {
    assert.match(about(messages[name].ts), pattern, `${name}:\n${run.stderr()}`);
  }
  assert.match(about(matched.ts), /ignored message \(duplicate: the same channel and ts was handled before\)/, 'the redelivery under a new event_id');
  assert.match(about(last.ts), /rule 2 \[Error\]/);
  assert.match(about(editTs), /ignored message \(hidden subtype 'message_changed'/);
});

test('--log to a file that cannot be written stops start-up with a clear message and a non-zero exit, before connecting', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { dir, file } = writeConfig();
  const missingFolder = path.join(dir, 'no-such-folder', 'ims.log');
  const aFolder = path.join(dir, 'logs');
  mkdirSync(aFolder);
  for (const target of [missingFolder, aFolder]) {
    const run = runIms(t, ['--config', file, '--log', target], slackEnv(fake));
    const { code } = await exitOf(run);
    assert.equal(code, 2, `exit 2 for ${target}:\n${run.stderr()}`);
    const lines = run.stderr().split('\n').filter((line) => line.trim());
    assert.equal(lines.length, 1, `one line:\n${run.stderr()}`);
    assert.ok(lines[0].startsWith('ims: cannot write the log file'), lines[0]);
    assert.ok(lines[0].includes(target), `names the file: ${lines[0]}`);
    assert.match(lines[0], /--log/);
  }
  assert.equal(fake.calls.length, 0, 'Slack was never called');
});

test('--log-format json writes one JSON object per line (time, level, tag, message, fields) to stderr and the log file, tokens redacted', async (t) => {
  const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const { dir, file } = writeConfig();
  const logFile = path.join(dir, 'ims.jsonl');
  const run = runIms(t, ['--config', file, '--log-format', 'json', '--log', logFile, '--debug', '--no-incident'], slackEnv(fake));
  await fake.waitForConnection(undefined, 15_000);
  fake.post(ALERTS, { bot_id: NAGIOS, text: `ERROR: token ${BOT_TOKEN} leaked in an alert` });
  await fake.waitFor(() => fake.messagesIn(INC_APPS).length, 'the repost', 10_000);
  run.child.kill('SIGTERM');
  assert.equal((await exitOf(run)).code, 0, run.stderr());
  const stderrLines = run.stderr().split('\n').filter(Boolean);
  const fileLines = readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
  assert.deepEqual(fileLines, stderrLines, 'the file gets the same lines');
  const entries = stderrLines.map((line) => {
    try { return JSON.parse(line) as { time: string; level: string; tag?: string; message: string; fields?: Record<string, unknown> }; } catch { assert.fail(`not JSON: ${line}`); }
  });
  assert.ok(entries.length >= 4, `${entries.length} lines`);
  for (const entry of entries) {
    assert.ok(!Number.isNaN(Date.parse(entry.time)) && /^\d{4}-\d\d-\d\dT.*Z$/.test(entry.time), `an ISO time: ${entry.time}`);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(entry.level), entry.level);
    assert.equal(typeof entry.message, 'string');
  }
  const incident = entries.find((e) => /^incident #1 /.test(e.message));
  assert.ok(incident, 'the incident line');
  assert.equal(incident.level, 'info');
  assert.equal(incident.fields?.rule, 2);
  const decision = entries.find((e) => e.message.startsWith('rule 2 [Error]'));
  assert.equal(decision?.level, 'debug');
  assert.equal(decision?.fields?.channel, ALERTS);
  for (const text of [run.stderr(), readFileSync(logFile, 'utf8'), run.stdout()]) for (const secret of SECRETS) assert.ok(!text.includes(secret), 'no token');
});

test('a configuration refused at start-up reaches the --log file, as a JSON line with --log-format json', async (t) => {
  for (const [where, config] of [
    ['when it is loaded', { timezone: 'UTC', rules: [{ match: 'x', head: '[X]', incident: 'NOPE' }], incidents: { APPS: { channel: INC_APPS } } }],
    ['when its channels are checked', { timezone: 'UTC', rules: [{ match: 'x', head: '[X]', incident: 'APPS' }], incidents: { APPS: { channel: 'C0GONE123' } } }],
  ] as const) {
    const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
    const dir = tempDir();
    const file = path.join(dir, 'ims.json');
    writeFileSync(file, JSON.stringify({ ...config, state: { path: path.join(dir, 'ims.db') } }));
    const log = path.join(dir, 'ims.log');
    const run = runIms(t, ['--config', file, '--log', log, '--log-format', 'json', '--no-incident'],
      { SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: fake.apiUrl });
    assert.equal((await exitOf(run)).code, 1, run.stderr());
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { level: string; message: string });
    const refusal = lines.find((line) => line.level === 'error' && /configuration refused/.test(line.message));
    assert.ok(refusal, `refused ${where}: the log file has the refusal\n${lines.map((l) => l.message).join('\n')}`);
    assert.match(refusal.message, where === 'when it is loaded' ? /NOPE/ : /C0GONE123/);
    for (const line of run.stderr().trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), `stderr holds only JSON lines: ${line}`);
  }
});

test('--log-format takes text or json only, and --help lists it', async (t) => {
  const bad = runIms(t, ['--log-format', 'xml']);
  assert.equal((await exitOf(bad)).code, 2);
  assert.match(bad.stderr(), /option '--log-format' expects text or json, found 'xml'/);
  const help = runIms(t, ['--help']);
  assert.equal((await exitOf(help)).code, 0);
  assert.match(help.stdout(), /--log-format text\|json/);
});

test('a JSON logger tags plugin lines, keeps fields apart and redacts tokens, even JSON-escaped ones', () => {
  const lines: string[] = [];
  const secret = 'my"secret\\value';
  const log = createLogger({ format: 'json', level: 'debug', write: (line) => lines.push(line), secrets: [secret] });
  log.child('argus').warn('delivery failed for xoxb-1234-abcdef', { key: 'incident-1', attempt: 2, note: `with ${secret}`, skipped: undefined });
  log.info('plain');
  const [tagged, plain] = lines.map((line) => JSON.parse(line));
  assert.equal(tagged.tag, 'argus');
  assert.equal(tagged.level, 'warn');
  assert.equal(tagged.message, 'delivery failed for xoxb-…');
  assert.deepEqual(tagged.fields, { key: 'incident-1', attempt: 2, note: 'with my"se…' });
  assert.deepEqual(Object.keys(plain), ['time', 'level', 'message']);
  assert.ok(!lines.join('\n').includes('secret\\\\value'));
});

test('a log file that fails while running is reported once on stderr and written again when it can be', () => {
  const dir = tempDir();
  const folder = path.join(dir, 'logs');
  mkdirSync(folder);
  const file = path.join(folder, 'ims.log');
  const console: string[] = [];
  const log = createLogger({ file, write: (line) => console.push(line) });
  log.info('first');
  rmSync(folder, { recursive: true });
  log.info('second');
  log.info('third');
  mkdirSync(folder);
  log.info('fourth');
  const problems = console.filter((line) => line.includes('cannot write the log file'));
  assert.equal(problems.length, 1, `reported once:\n${console.join('\n')}`);
  assert.match(problems[0], / ERROR /);
  assert.ok(console.some((line) => line.includes('is written again')));
  assert.match(readFileSync(file, 'utf8'), /fourth/);
  assert.equal(console.filter((line) => /first|second|third|fourth/.test(line)).length, 4, 'every line still reached stderr');
});

test('control characters in what is logged or refused (an alert with ESC sequences, a binary config) reach the terminal escaped', () => {
  const lines: string[] = [];
  const log = createLogger({ write: (line) => lines.push(line) });
  log.info('alert text \u001b[2J\u001b[31mred\u0007', { text: 'a\u0000b' });
  assert.equal(lines.length, 1);
  assert.doesNotMatch(lines[0], /[\u0000-\u0008\u000b-\u001f\u007f]/);
  assert.match(lines[0], /\\x1b\[2J\\x1b\[31mred\\x07/);
  const refusal = new ConfigError(['ims.json: not valid JSON: Unexpected token \u001a'], 'ims.json');
  assert.doesNotMatch(refusal.message, /[\u0000-\u0008\u000b-\u001f\u007f]/);
  assert.match(refusal.message, /\\x1a/);
});

test('with --log-format json, every reason IMS cannot start is one JSON line: a missing token, an unwritable log file', async (t) => {
  const config = writeConfig().file;
  const missingToken = runIms(t, ['--config', config, '--log-format', 'json'], { SLACK_BOT_TOKEN: BOT_TOKEN });
  assert.equal((await exitOf(missingToken)).code, 1);
  const tokenLine = JSON.parse(missingToken.stderr().trim()) as { level: string; message: string };
  assert.equal(tokenLine.level, 'error');
  assert.match(tokenLine.message, /SLACK_APP_TOKEN is not set/);
  const unwritable = runIms(t, ['--config', config, '--log-format', 'json', '--log', '/nonexistent-dir/ims.log'], { SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN });
  assert.equal((await exitOf(unwritable)).code, 2);
  const logLine = JSON.parse(unwritable.stderr().trim()) as { level: string; message: string };
  assert.match(logLine.message, /cannot write the log file '\/nonexistent-dir\/ims.log'/);
});

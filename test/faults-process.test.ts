/**
 * The fault suite, process: the real bot process killed (-9) or stopped (SIGTERM) mid-burst and restarted
 * on the same state file, and the tokens kept out of every log path whatever happens. Every scenario ends
 * with: nothing lost, nothing twice, no unintended mention, still working (the restarted process).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { guardSocketModeShutdownBug, INC_APPS, INC_INFRA } from './harness.ts';
import {
  Alerts, BOT_TOKEN, RELOADED, RELOAD_REFUSED, APP_TOKEN, TOKEN_SECRETS, assertSurvived, botEnv, exitOf, fakeSlack, handledCount, spawnBot, startBot, until, writeConfigAndWait, writeSuiteConfig, type BotRun,
} from './faults.ts';

guardSocketModeShutdownBug();

test('kill -9 mid-burst, alerts go on while it is down, and a restart on the same state file handles every alert exactly once', async (t) => {
  const fake = await fakeSlack(t, { dropWhileDisconnected: true });
  const { file } = writeSuiteConfig();
  const first = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  await alerts.warmUp(first);
  await alerts.burst(80, {
    midway: async () => {
      await until(first, () => handledCount(fake, alerts.list) >= 5, 'the first alerts handled');
      first.child.kill('SIGKILL');
    },
  });
  const { signal } = await first.exited;
  assert.equal(signal, 'SIGKILL');
  assert.ok(handledCount(fake, alerts.list) < alerts.list.length, 'the kill came with work left');
  await alerts.burst(20);

  const second = await startBot(t, fake, file);
  await assertSurvived(fake, alerts, second);
});

test('SIGTERM mid-burst ends the bot gracefully (exit 0 within 10 s), and a restart on the same state file handles every alert exactly once', async (t) => {
  const fake = await fakeSlack(t, { dropWhileDisconnected: true });
  const { file } = writeSuiteConfig();
  const first = await startBot(t, fake, file);
  const alerts = new Alerts(fake);
  await alerts.warmUp(first);
  await alerts.burst(80, {
    midway: async () => {
      await until(first, () => handledCount(fake, alerts.list) >= 5, 'the first alerts handled');
      first.child.kill('SIGTERM');
    },
  });
  const { code, signal } = await exitOf(first, 10_000);
  assert.equal(signal, null, `it ended by itself\n${first.stderr()}`);
  assert.equal(code, 0, `exit 0\n${first.stderr()}`);
  await alerts.burst(20);

  const second = await startBot(t, fake, file);
  await assertSurvived(fake, alerts, second);
});

test('the tokens never appear in stderr, stdout or the --log file: through outages, lost answers, throttling, reconnects, refused reloads, alerts that quote them, refused and revoked tokens and an unreachable Slack', async (t) => {
  const fake = await fakeSlack(t);
  const { file, dir } = writeSuiteConfig();
  const logFile = path.join(dir, 'ims.log');
  const run = await startBot(t, fake, file, { args: ['--debug', '--log', logFile] });
  const alerts = new Alerts(fake);
  await alerts.warmUp(run);
  alerts.post('incident', { text: (m) => `ERROR ${m} the deploy printed SLACK_BOT_TOKEN=${BOT_TOKEN} and ${APP_TOKEN}` });
  alerts.post('seen', {
    text: (m) => `note ${m}`,
    shape: (text) => ({ text: '', attachments: [{ title: text, text: `Authorization: Bearer ${BOT_TOKEN}`, fields: [{ title: 'app', value: APP_TOKEN }] }] }),
  });
  await alerts.burst(20, {
    midway: () => {
      fake.outage(503, 800);
      fake.loseAnswers('reactions.add', 2);
      fake.rateLimit('chat.postMessage', { count: 2, retryAfterSec: 1, channel: INC_INFRA });
      fake.sendRawFrame('this is not JSON');
    },
  });
  fake.dropConnections();
  await until(run, () => fake.callsTo('apps.connections.open').length >= 2 && fake.connectionCount > 0, 'the reconnect');
  fake.disconnect('refresh_requested');
  await until(run, () => fake.callsTo('apps.connections.open').length >= 3 && fake.connectionCount > 0, 'the reconnect after the disconnect frame');
  // A config pasted with a token in it is refused on reload; its problems are logged.
  const good = readFileSync(file, 'utf8');
  const pasted = { rules: [{ match: `(unclosed ${BOT_TOKEN}`, head: '[x]', incident: 'APPS' }], incidents: { APPS: { channel: INC_APPS } }, token: APP_TOKEN };
  await writeConfigAndWait(run, file, JSON.stringify(pasted), RELOAD_REFUSED, RELOADED, 'the refused reload');
  await writeConfigAndWait(run, file, good, RELOADED, RELOAD_REFUSED, 'the reload of the good config');
  await assertSurvived(fake, alerts, run);
  run.child.kill('SIGTERM');
  await exitOf(run);

  // The ways the bot ends print too, all at once: a token refused at start-up (each), a token revoked while
  // running (each), Slack unreachable at start-up. (How each ends is for their own tests; here: what they print.)
  const logArgs = ['--debug', '--log', logFile];
  const ended = async (name: string, bot: BotRun, ms = 10_000) => {
    await exitOf(bot, ms).catch(() => { bot.child.kill('SIGTERM'); return exitOf(bot, 10_000); }).catch(() => { bot.child.kill('SIGKILL'); return exitOf(bot); });
    return { name, bot };
  };
  const endings = await Promise.all([
    ended('bot token refused at start-up', spawnBot(t, ['--config', writeSuiteConfig().file, '--no-incident', ...logArgs], botEnv(fake, { SLACK_BOT_TOKEN: `${BOT_TOKEN}X` }))),
    ended('app token refused at start-up', spawnBot(t, ['--config', writeSuiteConfig().file, '--no-incident', ...logArgs], botEnv(fake, { SLACK_APP_TOKEN: `${APP_TOKEN}X` }))),
    (async () => {
      const other = await fakeSlack(t);
      const bot = await startBot(t, other, writeSuiteConfig().file, { args: logArgs });
      other.revokeToken('app', 'invalid_auth');
      return ended('app token revoked while running', bot);
    })(),
    (async () => {
      const other = await fakeSlack(t);
      const bot = await startBot(t, other, writeSuiteConfig().file, { args: logArgs });
      other.revokeToken('bot', 'token_revoked');
      new Alerts(other).post('incident');
      return ended('bot token revoked while running', bot);
    })(),
    (async () => {
      const other = await fakeSlack(t);
      await other.setReachable(false);
      return ended('Slack unreachable at start-up', spawnBot(t, ['--config', writeSuiteConfig().file, '--no-incident', ...logArgs], botEnv(other)), 3000);
    })(),
  ]);

  const logText = readFileSync(logFile, 'utf8');
  assert.ok(logText.split('\n').length > 20, 'the log file got the lines');
  const outputs: [string, string][] = [['stderr', run.stderr()], ['stdout', run.stdout()], ['the --log file', logText], ...endings.flatMap(({ name, bot }): [string, string][] => [[`stderr (${name})`, bot.stderr()], [`stdout (${name})`, bot.stdout()]])];
  for (const [where, text] of outputs) {
    for (const secret of TOKEN_SECRETS) assert.ok(!text.includes(secret), `${where} shows ${secret.slice(0, 12)}…:\n${text.split('\n').filter((l) => l.includes(secret)).slice(0, 3).join('\n')}`);
  }
});

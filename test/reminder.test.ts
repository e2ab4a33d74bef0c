/**
 * The reminder end to end: during matching hours, the open-incident counts are posted at most once per
 * hour and channel however often it ticks; `--clear-reminder` deletes only IMS's own messages.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { HOUR, clearReminders, runReminders, type Config } from '../ims.ts';
import type { FakeSlack } from './fake-slack.ts';
import { ALERTS, HUMAN, INC_APPS, INC_INFRA, NAGIOS, baseConfig, guardSocketModeShutdownBug, settle, startBot, startFake, tempDir, type Bot } from './harness.ts';

guardSocketModeShutdownBug();

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REMIND = 'C0REMIND01';
const REMIND2 = 'C0REMIND02';
const OTHER_BOT = 'B0OTHERBOT';

/** A test clock: fixed inside the current UTC hour, moved by hand. */
function clock() {
  const c = { at: Math.floor(Date.now() / HOUR) * HOUR + 60_000, now: () => c.at };
  return c;
}

async function setup(t: { after(fn: () => Promise<void>): void }, overrides: Partial<Config>, options: Parameters<typeof startBot>[2] = {}) {
  const fake = await startFake();
  fake.addChannel({ id: REMIND, name: 'ims-reminders' });
  fake.addChannel({ id: REMIND2, name: 'ops-reminders' });
  const bot = await startBot(fake, baseConfig(overrides), { reminders: false, ...options });
  t.after(async () => { await bot.stop(); await fake.close(); });
  return { fake, bot };
}

async function openIncidents(fake: FakeSlack, bot: Bot, alerts: { text: string; channel: string }[]) {
  for (const { text, channel } of alerts) {
    fake.post(ALERTS, { bot_id: NAGIOS, text });
    await fake.waitFor(() => fake.messagesIn(channel).find((m) => m.text.includes(text)), `the incident post of '${text}'`);
  }
  await settle(bot, 20);
}

const botPosts = (fake: FakeSlack, channel: string) => fake.messagesIn(channel).filter((m) => m.bot_id === fake.botId);

test('posts the open-incident counts once per hour and channel however many ticks, and again the next hour', async (t) => {
  const time = clock();
  const { fake, bot } = await setup(t, { reminders: [{ channel: REMIND, hours: ['.*'] }, { channel: REMIND2, hours: ['.*'] }] }, { now: time.now });
  await openIncidents(fake, bot, [
    { text: 'checkout error', channel: INC_APPS },
    { text: 'search error', channel: INC_APPS },
    { text: 'PROBLEM db-01 is CRITICAL', channel: INC_INFRA },
  ]);

  for (let tick = 0; tick < 25; tick++) await runReminders(bot.ims);
  assert.equal(botPosts(fake, REMIND).length, 1, 'one post in the hour, not one per tick');
  assert.equal(botPosts(fake, REMIND2).length, 1, 'each reminder channel gets its own');
  const text = botPosts(fake, REMIND)[0].text;
  assert.match(text, /3 open incidents/);
  assert.ok(text.includes(`<#${INC_APPS}> 2`), text);
  assert.ok(text.includes(`<#${INC_INFRA}> 1`), text);
  assert.ok(!/exsits/.test(text), 'a readable text, not the legacy typo');

  time.at += 20 * 60_000;
  for (let tick = 0; tick < 5; tick++) await runReminders(bot.ims);
  assert.equal(botPosts(fake, REMIND).length, 1, 'still the same hour');

  time.at += HOUR;
  for (let tick = 0; tick < 5; tick++) await runReminders(bot.ims);
  assert.equal(botPosts(fake, REMIND).length, 2, 'the next hour gets one more');
  assert.equal(botPosts(fake, REMIND2).length, 2);
});

test("the running bot's reminder loop posts once in a matching hour although it ticks every few milliseconds", async (t) => {
  const time = clock();
  const { fake, bot } = await setup(t, { reminders: [{ channel: REMIND, hours: ['.*'] }] }, { now: time.now, reminders: true, reminderSeconds: 0.02 });
  await openIncidents(fake, bot, [{ text: 'checkout error', channel: INC_APPS }]);
  await fake.waitFor(() => botPosts(fake, REMIND).length, 'the first reminder');
  await sleep(400); // about twenty more ticks in the same hour
  assert.equal(botPosts(fake, REMIND).length, 1);
  time.at += HOUR;
  await fake.waitFor(() => botPosts(fake, REMIND).length === 2, 'the reminder of the next hour');
  await sleep(200);
  assert.equal(botPosts(fake, REMIND).length, 2);
  assert.match(botPosts(fake, REMIND)[1].text, /1 open incident: /);
});

test('posts nothing when nothing is open or outside the reminder hours', async (t) => {
  const time = clock();
  const hour = new Date(time.at).getUTCHours();
  const otherHour = String((hour + 12) % 24).padStart(2, '0');
  const { fake, bot } = await setup(t, {
    reminders: [{ channel: REMIND, hours: ['.*'] }, { channel: REMIND2, hours: [`^${otherHour}$`] }],
  }, { now: time.now });

  await runReminders(bot.ims);
  assert.equal(botPosts(fake, REMIND).length, 0, 'nothing is open');

  await openIncidents(fake, bot, [{ text: 'checkout error', channel: INC_APPS }]);
  const post = fake.messagesIn(INC_APPS).find((m) => m.bot_id === fake.botId)!;
  fake.react(INC_APPS, post.ts, 'white_check_mark', HUMAN);
  await fake.waitFor(() => bot.ims.state.listIncidents({ open: true }).length === 0, 'the resolution');
  await runReminders(bot.ims);
  assert.equal(botPosts(fake, REMIND).length, 0, 'everything is resolved');

  await openIncidents(fake, bot, [{ text: 'search error', channel: INC_APPS }]);
  await runReminders(bot.ims);
  assert.equal(botPosts(fake, REMIND).length, 1, 'something is open in a matching hour');
  assert.equal(botPosts(fake, REMIND2).length, 0, `hour ${String(hour).padStart(2, '0')} does not match ^${otherHour}$`);

  time.at += 12 * HOUR;
  await runReminders(bot.ims);
  assert.equal(botPosts(fake, REMIND2).length, 1, 'its hour came');
});

test("clearReminders deletes only the bot's own messages in the reminder channels", async (t) => {
  const time = clock();
  const { fake, bot } = await setup(t, { reminders: [{ channel: REMIND, hours: ['.*'] }] }, { now: time.now });
  const human = fake.post(REMIND, { user: HUMAN, text: 'thanks, on it' }, { emit: false });
  const other = fake.post(REMIND, { bot_id: OTHER_BOT, text: 'Datadog: weekly digest' }, { emit: false });
  fake.post(REMIND, { bot_id: fake.botId, user: fake.botUserId, text: 'C0INCAPPS1: alert exsits! (4)' }, { emit: false });
  await openIncidents(fake, bot, [{ text: 'checkout error', channel: INC_APPS }]);
  await runReminders(bot.ims);
  time.at += HOUR;
  await runReminders(bot.ims);
  assert.equal(botPosts(fake, REMIND).length, 3);

  assert.equal(await clearReminders(bot.ims), 3);
  assert.deepEqual(fake.messagesIn(REMIND).map((m) => m.ts), [human.ts, other.ts]);
  assert.equal(botPosts(fake, INC_APPS).length, 1, 'incident posts elsewhere are untouched');
});

test('--clear-reminder deletes the reminders and exits 0', async (t) => {
  const fake = await startFake();
  t.after(() => fake.close());
  fake.addChannel({ id: REMIND, name: 'ims-reminders' });
  const human = fake.post(REMIND, { user: HUMAN, text: 'thanks, on it' }, { emit: false });
  fake.post(REMIND, { bot_id: fake.botId, user: fake.botUserId, text: ':bell: 2 open incidents' }, { emit: false });
  fake.post(REMIND, { bot_id: fake.botId, user: fake.botUserId, text: ':bell: 3 open incidents' }, { emit: false });
  const dir = tempDir();
  const config = path.join(dir, 'IMS.ini');
  writeFileSync(config, ['[Rules]', '(?i)error\t.*\t[Error]\tAPPS\tNo', '[Incidents]', `APPS\t${INC_APPS}\t50`, '[Reminder]', `${REMIND}\t.*`, ''].join('\n'));

  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'ims.ts'), '--config', config, '--clear-reminder'], {
      cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, SLACK_APP_TOKEN: 'xapp-test', SLACK_BOT_TOKEN: 'xoxb-test', SLACK_API_URL: fake.apiUrl, IMS_HTTP_RETRIES: '1' },
    });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`ims did not exit; stderr:\n${err}`)); }, 20_000);
    child.on('exit', (exitCode) => { clearTimeout(timer); resolve({ code: exitCode, stderr: err }); });
  });
  assert.equal(code, 0, stderr);
  assert.match(stderr, /deleted 2 reminder message\(s\)/);
  assert.deepEqual(fake.messagesIn(REMIND).map((m) => m.ts), [human.ts]);
  assert.equal(fake.callsTo('apps.connections.open').length, 0);
});

/**
 * `npm run demo`: IMS end to end, without a Slack workspace. It starts the local fake Slack the tests use
 * (test/fake-slack.ts, on 127.0.0.1), runs the bot as a user would (`node --import tsx ims.ts --config
 * IMS.ini`, tokens in the environment, SLACK_API_URL pointing at the fake) with the example IMS.ini, posts
 * example alerts from examples/alerts.jsonl, resolves one incident with a reaction, runs a report
 * (`--only-report --verbose`), prints what Slack received in readable form, stops everything and exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { messageText } from '../ims.ts';
import { FakeSlack, type FakeMessage } from '../test/fake-slack.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXAMPLES = path.join(ROOT, 'examples');
const APP_TOKEN = 'xapp-demo-not-a-real-token';
const BOT_TOKEN = 'xoxb-demo-not-a-real-token';
/** The whole demo, bot start-ups included, stays well inside this. */
const DEADLINE_MS = 50_000;
const RESOLVER = 'U0HUMAN01';

/** The workspace examples/IMS.ini and examples/alerts.jsonl are written for. */
const CHANNELS = [
  { id: 'C0ALERTS01', name: 'alerts-infra' }, { id: 'C0ALERTS02', name: 'alerts-apps' },
  { id: 'C0INCINFRA', name: 'inc-infra' }, { id: 'C0INCAPPS', name: 'inc-apps' }, { id: 'C0INCDEFLT', name: 'inc-default' },
  { id: 'C0REPORT01', name: 'ims-report' },
];
const BOTS: [string, string][] = [['B0NAGIOS1', 'Nagios'], ['B0ZABBIX1', 'Zabbix'], ['B0PROMAM1', 'Alertmanager'], ['B0DATADOG', 'Datadog'], ['B0CLOUDW1', 'AWS Chatbot'], ['B0SENTRY1', 'Sentry'], ['B0UNKNOWN', 'deploy-bot']];

interface Recorded {
  channel: string;
  user?: string;
  bot_id?: string;
  subtype?: string;
  username?: string;
  bot_profile?: Record<string, unknown>;
  text?: string;
  attachments?: unknown[];
  blocks?: unknown[];
}

/** One alert of every kind the corpus holds (the first per poster), and its long stack trace. */
function exampleAlerts(): Recorded[] {
  const all = readFileSync(path.join(EXAMPLES, 'alerts.jsonl'), 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Recorded);
  const alerts = all.filter((m) => !m.subtype || m.subtype === 'bot_message');
  const seen = new Set<string>();
  const picked = alerts.filter((m) => {
    const who = m.username ?? (m.bot_profile?.name as string | undefined) ?? m.user ?? '';
    if (seen.has(who)) return false;
    seen.add(who);
    return true;
  });
  const stackTrace = alerts.find((m) => (m.text ?? '').length > 3000);
  return stackTrace ? [...picked, stackTrace] : picked;
}

interface Bot {
  child: ChildProcess;
  log: string[];
  exited: Promise<number | null>;
}

/** IMS in its own process, as a user starts it. */
function runIms(args: string[], apiUrl: string): Bot {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(SLACK_|IMS_)/.test(key))) as Record<string, string>;
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'ims.ts'), ...args], {
    cwd: ROOT, env: { ...env, SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: apiUrl }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  let partial = '';
  const take = (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    log.push(...lines);
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => { if (partial) log.push(partial); resolve(code); }));
  return { child, log, exited };
}

async function waitFor<T>(what: string, check: () => T | undefined | false, bot?: Bot, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${bot ? `\nIMS said:\n${bot.log.join('\n')}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

// ─── Showing what Slack received ───────────────────────────────────────────────────────────────

/** Slack mrkdwn as a reader sees it: channel and user names, links as `label (url)`, entities decoded. */
function readable(fake: FakeSlack, text: string): string {
  return text
    .replace(/<([^<>]*)>/g, (_, inner: string) => {
      const [target, label] = inner.split('|', 2) as [string, string | undefined];
      if (target.startsWith('#')) return `#${label ?? fake.channels.get(target.slice(1))?.name ?? target.slice(1)}`;
      if (target.startsWith('@')) return `@${fake.users.get(target.slice(1))?.name ?? label ?? target.slice(1)}`;
      if (target.startsWith('!subteam^')) return `@${label ?? target.slice(9)}`;
      if (target.startsWith('!')) return `@${target.slice(1)}`;
      return label && label !== target ? `${label} (${target})` : target;
    })
    .replace(/&(?:lt|gt|amp);/g, (entity) => ({ '&lt;': '<', '&gt;': '>', '&amp;': '&' })[entity]!);
}

/** The text of a message as Slack renders it: its blocks (header, sections, context), else its `text`. */
function shown(fake: FakeMessage): string[] {
  const texts: string[] = [];
  for (const block of fake.blocks ?? []) {
    if (block.text?.text) texts.push(block.text.text);
    for (const element of block.elements ?? []) if (typeof element.text === 'string') texts.push(element.text);
  }
  return texts.length ? texts : [fake.text];
}

function indent(text: string, prefix: string, maxLines = 12): string {
  const lines = text.split('\n');
  const kept = lines.length > maxLines ? [...lines.slice(0, maxLines), `… (${lines.length - maxLines} more lines)`] : lines;
  return kept.map((line) => prefix + line).join('\n');
}

function describeChannel(fake: FakeSlack, id: string): string {
  const channel = fake.channels.get(id)!;
  const out: string[] = [`━━━ #${channel.name} ${'━'.repeat(Math.max(3, 70 - channel.name.length))}`];
  const nameOf = (user: string) => fake.users.get(user)?.real_name ?? user;
  const posterOf = (m: FakeMessage) => (m.bot_id === fake.botId ? 'IMS' : m.username ?? (m.bot_profile?.name as string | undefined) ?? (m.user ? nameOf(m.user) : m.bot_id ?? '?'));
  const topLevel = channel.messages.filter((m) => !m.thread_ts || m.thread_ts === m.ts);
  if (!topLevel.length) out.push('  (nothing)');
  for (const message of topLevel) {
    const own = message.bot_id === fake.botId;
    // IMS's posts as Slack renders them; an alert by its first line, as the rules read it.
    const body = own ? shown(message).map((text) => readable(fake, text)).join('\n') : messageText(message).trim().split('\n')[0];
    out.push(`  ${posterOf(message)}:`);
    out.push(indent(body, '    ', own ? 14 : 1));
    for (const reaction of message.reactions ?? []) {
      out.push(`    reaction :${reaction.name}: by ${reaction.users.map((u) => (u === fake.botUserId ? 'IMS' : nameOf(u))).join(', ')}`);
    }
    const repost = [...fake.channels.values()].flatMap((c) => c.messages.filter((m) => m.metadata?.event_type === 'ims_incident' && m.metadata.event_payload?.source_ts === message.ts).map(() => c.name));
    if (repost.length) out.push(`    → reposted by IMS to #${repost.join(', #')}`);
    if (!own && !message.reactions?.length && !repost.length) out.push('    (not for IMS: ignored)');
    const replies = channel.messages.filter((m) => m.thread_ts === message.ts && m.ts !== message.ts);
    if (replies.length) {
      const text = replies.flatMap((m) => (m.blocks ?? []).map((b) => readable(fake, b.text?.text ?? ''))).join('');
      out.push(`    ↳ ${replies.length} thread repl${replies.length === 1 ? 'y' : 'ies'}, the rest of the alert:`);
      out.push(indent(text.replace(/^\n/, ''), '      ', 4));
    }
  }
  return out.join('\n');
}

// ─── The demo ──────────────────────────────────────────────────────────────────────────────────

async function demo(say: (line: string) => void, children: ChildProcess[]): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ims-demo-'));
  const fake = await FakeSlack.start({ appToken: APP_TOKEN, botToken: BOT_TOKEN });
  try {
    for (const channel of CHANNELS) fake.addChannel(channel);
    for (const user of JSON.parse(readFileSync(path.join(EXAMPLES, 'slack-export', 'users.json'), 'utf8')) as { id: string; name: string; real_name: string; is_bot: boolean }[]) {
      fake.addUser({ id: user.id, name: user.name, real_name: user.real_name, is_bot: user.is_bot });
    }
    for (const [id, name] of BOTS) fake.addBot({ id, name });
    // A copy of the example config: IMS keeps its state (ims.db) beside it, and the demo leaves nothing behind.
    const config = path.join(dir, 'IMS.ini');
    copyFileSync(path.join(EXAMPLES, 'IMS.ini'), config);
    say(`IMS demo: a fake Slack on ${fake.apiUrl}, IMS with examples/IMS.ini (a copy in ${dir})`);
    say('$ node --import tsx ims.ts --config IMS.ini --debug --no-incident --no-reminder --no-auto');
    const bot = runIms(['--config', config, '--debug', '--no-incident', '--no-reminder', '--no-auto'], fake.apiUrl);
    children.push(bot.child);
    await waitFor('IMS to connect', () => fake.connectionCount > 0 && bot.log.some((l) => /Socket Mode connected/.test(l)), bot);

    const alerts = exampleAlerts();
    // Posted now (a fresh ts), as the monitoring tools would post them.
    const posted = alerts.map(({ channel, user, bot_id, subtype, username, bot_profile, text, attachments, blocks }) => ({
      channel, message: fake.post(channel, { user, bot_id, subtype, username, bot_profile, text: text ?? '', attachments, blocks }),
    }));
    say(`Posted ${posted.length} example alerts from examples/alerts.jsonl into #alerts-infra and #alerts-apps.`);
    // Each alert is done when IMS logged what it did with it (an INFO line) or why it ignored it.
    const handled = (ts: string) => bot.log.some((l) => l.includes(ts) && (/ INFO  /.test(l) || /ignored message/.test(l)));
    await waitFor('IMS to handle every alert', () => posted.every(({ message }) => handled(message.ts)), bot);

    const firstIncident = await waitFor('the first Nagios incident post', () => fake.channels.get('C0INCINFRA')!.messages.find((m) => m.bot_id === fake.botId && m.text.startsWith('[Nagios]')), bot);
    fake.react('C0INCINFRA', firstIncident.ts, 'white_check_mark', RESOLVER);
    await waitFor('IMS to record the resolution', () => bot.log.some((l) => /incident #\d+ resolved by/.test(l)), bot);
    say(`${fake.users.get(RESOLVER)!.real_name} resolved an incident in #inc-infra with :white_check_mark:.`);
    bot.child.kill('SIGTERM');
    const botExit = await Promise.race([bot.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 15_000))]);
    if (botExit !== 0) throw new Error(`IMS did not stop cleanly on SIGTERM (${botExit})\n${bot.log.join('\n')}`);

    say('$ node --import tsx ims.ts --config IMS.ini --only-report --verbose');
    const report = runIms(['--config', config, '--only-report', '--verbose'], fake.apiUrl);
    children.push(report.child);
    const reportExit = await report.exited;
    if (reportExit !== 0) throw new Error(`the report run failed (${reportExit})\n${report.log.join('\n')}`);

    say('');
    say('What IMS decided (its --debug lines):');
    const names = new Map<string, string>([...BOTS, ...[...fake.users.values()].map((u): [string, string] => [u.id, u.real_name])]);
    for (const line of bot.log) {
      const decided = / DEBUG +((?:rule \d+|suppression rule|no rule|ignored message).*?)(?= channel=)/.exec(line);
      if (!decided) continue;
      const channel = fake.channels.get(/ channel=(\S+)/.exec(line)?.[1] ?? '')?.name ?? '?';
      const poster = / poster=(\S+)/.exec(line)?.[1] ?? '';
      say(`  #${channel.padEnd(13)} ${(names.get(poster) ?? poster).padEnd(13)} ${decided[1]}`);
    }
    say('');
    say('What Slack received:');
    for (const channel of CHANNELS) say(describeChannel(fake, channel.id));
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const children: ChildProcess[] = [];
const stopChildren = () => { for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); };
const deadline = setTimeout(() => {
  process.stderr.write(`demo: did not finish within ${DEADLINE_MS / 1000} s\n`);
  stopChildren();
  process.exit(1);
}, DEADLINE_MS);
deadline.unref();
demo((line) => process.stdout.write(line + '\n'), children).then(() => {
  clearTimeout(deadline);
  process.exitCode = 0;
}, (error: Error) => {
  process.stderr.write(`demo failed: ${error.stack ?? error.message}\n`);
  stopChildren();
  process.exitCode = 1;
});

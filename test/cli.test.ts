/**
 * The command line, run as a user runs it: `node --import tsx ims.ts …` in a folder of their own, with no
 * Slack tokens. `--test`, `--replay` and `--print-config` must work offline; errors exit 1 (config) or 2
 * (usage) with a message that says what is wrong.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadConfig, type CompiledConfig } from '../ims.ts';

const IMS_TS = fileURLToPath(new URL('../ims.ts', import.meta.url));
const ROOT = path.dirname(IMS_TS);
/** Resolved here, because `--import tsx` is resolved from the child's cwd, which is a temp folder. */
const TSX = import.meta.resolve('tsx');
const PACKAGE_VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ims-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

function folder(files: Record<string, string>): string {
  const dir = path.join(tmp, String(++dirs));
  for (const [name, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), body);
  }
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

interface Run { status: number | null; stdout: string; stderr: string; timedOut: boolean }

/** `node --import tsx ims.ts ...args` in `cwd`, without Slack tokens. */
function ims(args: string[], cwd: string, options: { env?: Record<string, string>; timeout?: number } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, SLACK_APP_TOKEN: '', SLACK_BOT_TOKEN: '', ...options.env };
  delete env.NODE_TEST_CONTEXT;
  if (!options.env?.IMS_NOW) delete env.IMS_NOW;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, IMS_TS, ...args], { cwd, env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, options.timeout ?? 20_000);
    child.on('error', reject);
    child.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr, timedOut }); });
  });
}

const show = (run: Run) => `exit ${run.status}${run.timedOut ? ' (timed out)' : ''}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

const IMS_INI = [
  '[Rules]',
  '.*Error.*\t.*:.*:.*\t[Error]\tCHANNEL1\tHot1',
  '.*Warn.*\t.*:.*:.*\t[Warn]\tCHANNEL1\tNo',
  '.*Info.*\t!.*:.*:.*\t[Info]\tCHANNEL1\tNo',
  '[Incidents]',
  'CHANNEL1\tC025FKF3QJV\t20',
  'DEFAULT\tC0DEFAULT1\t[Alert]',
  '[Label]',
  'white_check_mark',
  '[Report]',
  'C0256BTKP54',
  '[PostID]',
  'U024ZT3BHU5',
  'B0NAGIOS1',
  '[Hotline]',
  'Hot1\tU024ZT3BHU5\there',
  '',
].join('\n');

const withIni = folder({ 'IMS.ini': IMS_INI });
const nested = folder({ 'conf/IMS.ini': IMS_INI });

/** A recording with one message of each kind, in the JSON-lines forms IMS reads (bare, {event}, {payload:{event}}). */
const recordingLines = [
  { type: 'message', channel: 'C0ALERTS1', ts: '1794790396.000100', bot_id: 'B0NAGIOS1', text: 'PROBLEM disk Error on db-1' },
  { event: { type: 'message', channel: 'C0ALERTS1', ts: '1794790400.000100', bot_id: 'B0NAGIOS1', text: 'Info: rotated logs' } },
  { payload: { event: { type: 'message', channel: 'C0ALERTS1', ts: '1794790410.000100', bot_id: 'B0NAGIOS1', text: 'all quiet' } } },
  { type: 'message', channel: 'C0ALERTS1', ts: '1794790420.000100', bot_id: 'B0UNKNOWN', text: 'Error from a stranger' },
  { type: 'message', subtype: 'message_changed', channel: 'C0ALERTS1', ts: '1794790430.000100', message: { text: 'Error edited' } },
  { type: 'message', channel: 'C0ALERTS1', ts: '1794790440.000100', bot_id: 'B0NAGIOS1', text: 'Warn: cpu 91%' },
  { type: 'message', channel: 'C0ALERTS1', ts: '1794790450.000100', user: 'U024ZT3BHU5', text: 'Error reported by hand' },
  { type: 'reaction_added', user: 'U1', reaction: 'eyes', item: { channel: 'C0ALERTS1', ts: '1794790396.000100' } },
];
const recording = folder({ 'IMS.ini': IMS_INI, 'alerts.jsonl': recordingLines.map((l) => JSON.stringify(l)).join('\n') + '\n' });

/** Decision lines come before the blank line that starts the summary. */
const decisionLines = (stdout: string) => stdout.split('\n\nSummary:')[0].split('\n').filter(Boolean);

/** `rule → [incident, suppressed, seen]` from the summary table. */
function summaryTable(stdout: string): Map<number, [number, number, number]> {
  const table = new Map<number, [number, number, number]>();
  for (const line of stdout.split('\nSummary:')[1]?.split('\n') ?? []) {
    const row = /^\s+(\d+)\s+\S.*?\s+(\d+)\s+(\d+)\s+(\d+)\s{2}/.exec(line);
    if (row) table.set(Number(row[1]), [Number(row[2]), Number(row[3]), Number(row[4])]);
  }
  return table;
}

describe('ims command line', { concurrency: 3 }, () => {
  test('--test prints "this message include rule (N)!" with the 1-based rule number, then label, channel, hotline and reverse lines; no tokens needed', async () => {
    const run = await ims(['--test', 'PROBLEM disk Error on db-1'], withIni);
    assert.equal(run.status, 0, show(run));
    const lines = run.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'this message include rule (1)!');
    assert.match(run.stdout, /^\s+label:\s+\[Error\]$/m);
    assert.match(run.stdout, /^\s+channel:\s+CHANNEL1 → C025FKF3QJV$/m);
    assert.match(run.stdout, /^\s+hotline:\s+Hot1: U024ZT3BHU5, here$/m);
    assert.match(run.stdout, /^\s+reverse:\s+incident: repost as \[Error\] to C025FKF3QJV, paging Hot1 \(rule 1\)$/m);

    const warn = await ims(['--test', 'Warn: cpu 91%'], withIni);
    assert.equal(warn.status, 0, show(warn));
    assert.equal(warn.stdout.split('\n')[0], 'this message include rule (2)!');
    assert.match(warn.stdout, /^\s+hotline:\s+none$/m);
    assert.match(warn.stdout, /^\s+reverse:\s+seen: add :white_check_mark: \(rule 2\)$/m);
  });

  test('--test prints "this message exclude rules.." when no rule matches, with what normal and reverse mode would do', async () => {
    const run = await ims(['--test', 'all quiet'], withIni);
    assert.equal(run.status, 0, show(run));
    assert.equal(run.stdout.split('\n')[0], 'this message exclude rules..');
    assert.match(run.stdout, /normal:\s+would add :white_check_mark: to the message/);
    assert.match(run.stdout, /reverse:\s+reverse repost to C0DEFAULT1 as \[Alert\]/);
  });

  test('--test reports a message caught by a suppression rule as excluded, naming the rule', async () => {
    const run = await ims(['--test', 'Info: rotated logs'], withIni);
    assert.equal(run.status, 0, show(run));
    assert.equal(run.stdout.split('\n')[0], 'this message exclude rules..');
    assert.match(run.stdout, /suppressed by rule \(3\)/);
  });

  test('the legacy spellings -config=IMS.ini -test "…" and -test=… work', async () => {
    const a = await ims(['-config=conf/IMS.ini', '-test', 'PROBLEM disk Error'], nested);
    assert.equal(a.status, 0, show(a));
    assert.equal(a.stdout.split('\n')[0], 'this message include rule (1)!');
    const b = await ims(['-config', 'conf/IMS.ini', '-test=Warn: disk 80%'], nested);
    assert.equal(b.status, 0, show(b));
    assert.equal(b.stdout.split('\n')[0], 'this message include rule (2)!');
  });

  test('--test evaluates time windows at IMS_NOW (an ISO instant) in the config timezone', async () => {
    const config = (timezone: string) => JSON.stringify({
      timezone,
      rules: [{ match: 'Fault', when: ' 1[0-2]:', head: '[Fault]', incident: 'NET' }],
      incidents: { NET: { channel: 'C0NET' } },
    });
    const tokyo = folder({ '.imsrc.json': config('Asia/Tokyo') });
    const utc = folder({ '.imsrc.json': config('UTC') });
    const [tokyoMorning, tokyoAfternoon, utcMorning] = await Promise.all([
      ims(['--test', 'Fault on sw-1'], tokyo, { env: { IMS_NOW: '2026-11-21T01:30:00Z' } }), // 10:30 in Tokyo
      ims(['--test', 'Fault on sw-1'], tokyo, { env: { IMS_NOW: '2026-11-21T05:30:00Z' } }), // 14:30 in Tokyo
      ims(['--test', 'Fault on sw-1'], utc, { env: { IMS_NOW: '2026-11-21T01:30:00Z' } }), //   01:30 in UTC
    ]);
    for (const run of [tokyoMorning, tokyoAfternoon, utcMorning]) assert.equal(run.status, 0, show(run));
    assert.equal(tokyoMorning.stdout.split('\n')[0], 'this message include rule (1)!');
    assert.equal(tokyoAfternoon.stdout.split('\n')[0], 'this message exclude rules..');
    assert.equal(utcMorning.stdout.split('\n')[0], 'this message exclude rules..');
  });

  test('an IMS_NOW that is not an ISO instant is refused with a message naming IMS_NOW, not a stack trace', async () => {
    const run = await ims(['--test', 'PROBLEM disk Error on db-1'], withIni, { env: { IMS_NOW: 'yesterday' } });
    assert.notEqual(run.status, 0, show(run));
    assert.match(run.stderr, /IMS_NOW/, show(run));
    assert.doesNotMatch(run.stderr, /^\s+at /m, 'no stack trace');
  });

  test('an unknown flag exits 2 with a message naming it (and a hint when it is a near miss)', async () => {
    const run = await ims(['--frobnicate'], withIni);
    assert.equal(run.status, 2, show(run));
    assert.match(run.stderr, /unknown option '--frobnicate'/);
    assert.equal(run.stdout, '');
    const typo = await ims(['--tset', 'x'], withIni);
    assert.equal(typo.status, 2, show(typo));
    assert.match(typo.stderr, /unknown option '--tset' \(did you mean 'test'\?\)/);
  });

  test('--help prints the usage and every main flag, exit 0, even without a config', async () => {
    const run = await ims(['--help'], folder({}));
    assert.equal(run.status, 0, show(run));
    assert.match(run.stdout, /^IMS \d+\.\d+\.\d+: incident management for Slack/);
    for (const flag of ['--config PATH', '--test TEXT', '--replay FILE', '--print-config', '--reverse', '--only-report', '--schedule CRON']) {
      assert.ok(run.stdout.includes(flag), `--help lists ${flag}`);
    }
    assert.match(run.stdout, /-config=IMS\.ini/, 'the legacy spellings are mentioned');
  });

  test('--version prints the package version, exit 0', async () => {
    const run = await ims(['--version'], folder({}));
    assert.equal(run.status, 0, show(run));
    assert.equal(run.stdout.trim(), `ims ${PACKAGE_VERSION}`);
  });

  test('a broken IMS.ini exits 1 and stderr lists every problem as IMS.ini:LINE:', async () => {
    const dir = folder({
      'IMS.ini': ['[Rules]', '.*Error.*  .*  [Error]  CHANNEL1  No', '.*Disk.*\t\t[Disk]\tCHANNEL1\tNo', '[Incidents]', 'CHANNEL1\tC1\tmany', ''].join('\n'),
    });
    const run = await ims(['--test', 'Error'], dir);
    assert.equal(run.status, 1, show(run));
    assert.match(run.stderr, /IMS\.ini:2: .*spaces instead of TABs/);
    assert.match(run.stderr, /IMS\.ini:3: .*date regex is empty/);
    assert.match(run.stderr, /IMS\.ini:5: .*LIMIT/);
    assert.equal(run.stdout, '');
  });

  test('a --config path that does not exist exits 1 with a message', async () => {
    const run = await ims(['--config', 'nope/IMS.ini', '--test', 'x'], folder({}));
    assert.equal(run.status, 1, show(run));
    assert.match(run.stderr, /nope\/IMS\.ini.*does not exist/s);
  });

  test('--reacji with an IMS.ini that has no [Reacji] section exits 1 naming it, promptly', async () => {
    const run = await ims(['--reacji', '--test', 'Error'], withIni, { timeout: 12_000 });
    assert.equal(run.timedOut, false, `ims must not hang:\n${show(run)}`);
    assert.equal(run.status, 1, show(run));
    assert.match(run.stderr, /IMS\.ini:?\d*: .*Reacji/);
  });

  test('--print-config turns an IMS.ini into an ims.config.ts that loads back to the same compiled config, without secrets', async () => {
    const secrets = { SLACK_BOT_TOKEN: 'xoxb-1234-5678-SECRETbot', SLACK_APP_TOKEN: 'xapp-1-A1-SECRETapp' };
    const run = await ims(['--config', 'IMS.ini', '--print-config'], withIni, { env: secrets });
    assert.equal(run.status, 0, show(run));
    assert.match(run.stdout, /import \{ defineConfig \} from '\.\/ims\.ts';/);
    assert.match(run.stdout, /export default defineConfig\(/);
    assert.ok(!/xox[abpr]-|xapp-|SECRET/.test(run.stdout), 'no token-like secrets in the printed config');

    const migrated = folder({ 'ims.config.ts': run.stdout.replace(`from './ims.ts'`, `from ${JSON.stringify(pathToFileURL(IMS_TS).href)}`) });
    const again = await loadConfig({ cwd: migrated });
    const original = await loadConfig({ cwd: withIni, path: 'IMS.ini' });
    assert.equal(again.source, 'ims.config.ts');
    const essence = (c: CompiledConfig) => ({
      rules: c.rules.map((r) => ({ number: r.number, match: String(r.match), when: String(r.when), suppress: r.suppress, head: r.head, incident: r.incident, hotline: r.hotline })),
      incidents: [...c.incidents.entries()],
      hotlines: [...c.hotlines.entries()],
      reverseDefault: c.reverseDefault,
      posters: c.posters && [...c.posters],
      resolvedReactions: c.resolvedReactions,
      seenReaction: c.seenReaction,
      report: { ...c.report, onlyPosters: c.report.onlyPosters && [...c.report.onlyPosters] },
      ownChannels: [...c.ownChannels].sort(),
      timezone: c.timezone,
    });
    assert.equal(again.rules.length, 3);
    assert.deepEqual(essence(again), essence(original));
  });

  test('--replay of a JSON-lines recording prints one decision per message and a summary per rule', async () => {
    const run = await ims(['--replay', 'alerts.jsonl'], recording);
    assert.equal(run.status, 0, show(run));
    const lines = decisionLines(run.stdout);
    assert.equal(lines.length, 7, 'one line per message event; other event types are skipped');
    assert.match(lines[0], /C0ALERTS1\s+B0NAGIOS1\s+incident\s+incident: repost as \[Error\] to C025FKF3QJV, paging Hot1 \(rule 1\)\s+"PROBLEM disk Error on db-1"/);
    assert.match(lines[1], /\bsuppressed\b.*suppressed by rule 3/);
    assert.match(lines[2], /\bseen\s+seen: add :white_check_mark:\s+"all quiet"/);
    assert.match(lines[3], /B0UNKNOWN\s+ignored poster\b/);
    assert.match(lines[4], /ignored hidden subtype/);
    assert.match(lines[5], /incident: repost as \[Warn\] to C025FKF3QJV \(rule 2\)/);
    assert.match(lines[6], /U024ZT3BHU5\s+incident\b/);
    assert.match(run.stdout, /^Summary: 7 messages$/m);
    const table = summaryTable(run.stdout);
    assert.deepEqual([...table.entries()], [[1, [2, 0, 0]], [2, [1, 0, 0]], [3, [0, 1, 0]]]);
    for (const count of ['ignored hidden subtype: 1', 'ignored poster: 1', 'incident: 3', 'seen: 1', 'suppressed: 1']) {
      assert.match(run.stdout, new RegExp(`^\\s+${count}$`, 'm'));
    }
    assert.equal(run.stderr, '', 'no progress line for a short recording');
  });

  test('--replay --reverse prints reverse reposts to the DEFAULT channel for messages no rule matches', async () => {
    const run = await ims(['--replay', 'alerts.jsonl', '--reverse'], recording);
    assert.equal(run.status, 0, show(run));
    const lines = decisionLines(run.stdout);
    assert.match(lines[2], /reverse repost\s+reverse repost to C0DEFAULT1 as \[Alert\]\s+"all quiet"/);
    assert.match(lines[0], /incident: repost as \[Error\].*paging Hot1/, 'a hotline rule still opens an incident');
    assert.match(lines[5], /\bseen\s+seen: add :white_check_mark: \(rule 2\)/, 'a rule without hotline marks the message seen');
    assert.match(run.stdout, /^\s+reverse repost: 1$/m);
  });

  test('--replay of a Slack export folder reads channel folders day by day, with channel IDs from channels.json', async () => {
    const day = (ts: number, text: string, bot_id = 'B0NAGIOS1') => ({ type: 'message', subtype: 'bot_message', bot_id, text, ts: `${ts}.000200` });
    const dir = folder({
      'IMS.ini': IMS_INI,
      'export/channels.json': JSON.stringify([{ id: 'C0ALERTS1', name: 'alerts' }, { id: 'C0OTHER01', name: 'other' }]),
      'export/users.json': JSON.stringify([{ id: 'U024ZT3BHU5', name: 'ops' }]),
      'export/alerts/2026-11-17.json': JSON.stringify([day(1794873600, 'Warn: second day')]),
      'export/alerts/2026-11-16.json': JSON.stringify([day(1794787200, 'Error: first day'), day(1794787300, 'quiet first day')]),
      'export/other/2026-11-16.json': JSON.stringify([day(1794787400, 'Error elsewhere', 'B0UNKNOWN')]),
    });
    const run = await ims(['--replay', 'export'], dir);
    assert.equal(run.status, 0, show(run));
    const lines = decisionLines(run.stdout);
    assert.equal(lines.length, 4);
    assert.match(lines[0], /C0ALERTS1 .*incident: repost as \[Error\].*"Error: first day"/);
    assert.match(lines[1], /C0ALERTS1 .*seen.*"quiet first day"/);
    assert.match(lines[2], /C0ALERTS1 .*repost as \[Warn\].*"Warn: second day"/);
    assert.match(lines[3], /C0OTHER01 .*ignored poster/);
    assert.match(run.stdout, /^Summary: 4 messages$/m);
  });

  test('--replay prints a progress line on stderr for recordings of 5000 messages or more', async () => {
    const texts = ['PROBLEM disk Error on db-1', 'Warn: cpu 91%', 'all quiet', 'Info: rotated logs'];
    const lines = Array.from({ length: 6000 }, (_, i) => JSON.stringify({ type: 'message', channel: 'C0ALERTS1', ts: `${1794790396 + i * 7}.000100`, bot_id: 'B0NAGIOS1', text: texts[i % texts.length] }));
    const dir = folder({ 'IMS.ini': IMS_INI, 'big.jsonl': lines.join('\n') + '\n' });
    const run = await ims(['--replay', 'big.jsonl'], dir);
    assert.equal(run.status, 0, show(run));
    assert.match(run.stderr, /replay: 5000 messages/);
    assert.match(run.stderr, /replay: 6000 messages, done/);
    assert.match(run.stdout, /^Summary: 6000 messages$/m);
    assert.equal(decisionLines(run.stdout).length, 6000);
    assert.deepEqual(summaryTable(run.stdout).get(1), [1500, 0, 0]);
  });

  test('--replay of examples/alerts.jsonl and examples/slack-export decides every recorded message', async () => {
    const corpus = path.join(ROOT, 'examples', 'alerts.jsonl');
    const exportDir = path.join(ROOT, 'examples', 'slack-export');
    const config = folder({
      '.imsrc.json': JSON.stringify({
        timezone: 'UTC',
        rules: [
          { match: '(?i)backup', when: ' 0[1-4]:', suppress: true, head: '[Backup]', incident: 'INFRA' },
          { match: 'PROBLEM .*(CRITICAL|DOWN)|Severity: (High|Disaster)', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
          { match: '(?i)error|fatal|exception', head: '[Error]', incident: 'APPS' },
        ],
        incidents: { INFRA: { channel: 'C0INCINFRA' }, APPS: { channel: 'C0INCAPPS' } },
        hotlines: { OnCall: ['here'] },
        posters: ['B0NAGIOS1', 'B0ZABBIX1', 'B0PROMAM1', 'B0DATADOG', 'B0CLOUDW1', 'B0SENTRY1'],
      }),
    });
    const expected = fs.readFileSync(corpus, 'utf8').split('\n').filter((line) => line.trim() && [undefined, 'message'].includes(JSON.parse(line).type ?? JSON.parse(line).event?.type)).length;
    const exportCount = fs.readdirSync(exportDir, { withFileTypes: true }).filter((d) => d.isDirectory())
      .flatMap((d) => fs.readdirSync(path.join(exportDir, d.name)).filter((f) => f.endsWith('.json')).map((f) => path.join(exportDir, d.name, f)))
      .reduce((sum, file) => sum + (JSON.parse(fs.readFileSync(file, 'utf8')) as unknown[]).length, 0);
    const [run, exported] = await Promise.all([ims(['--replay', corpus], config), ims(['--replay', exportDir], config)]);
    assert.equal(run.status, 0, show(run));
    assert.ok(expected > 0);
    assert.match(run.stdout, new RegExp(`^Summary: ${expected} messages$`, 'm'));
    assert.equal(decisionLines(run.stdout).length, expected);
    for (const kind of ['incident', 'seen', 'ignored poster']) assert.match(run.stdout, new RegExp(`^\\s+${kind}: \\d+$`, 'm'), kind);
    assert.equal(exported.status, 0, show(exported));
    assert.match(exported.stdout, new RegExp(`^Summary: ${exportCount} messages$`, 'm'));
  });

  test('--replay of a missing file exits 2; a broken JSON line exits 1 naming the line', async () => {
    const dir = folder({ 'IMS.ini': IMS_INI, 'broken.jsonl': '{"type":"message","channel":"C1","ts":"1.0","text":"x"}\n{"type": "message",\n' });
    const [missing, broken] = await Promise.all([ims(['--replay', 'nope.jsonl'], dir), ims(['--replay', 'broken.jsonl'], dir)]);
    assert.equal(missing.status, 2, show(missing));
    assert.match(missing.stderr, /'nope\.jsonl' does not exist/);
    assert.equal(broken.status, 1, show(broken));
    assert.match(broken.stderr, /broken\.jsonl:2: not valid JSON/);
  });
});

test('an ims.config.ts that imports ims.ts, as documented, runs IMS once (found by search or given with --config)', async () => {
  const config = [
    `import { defineConfig } from ${JSON.stringify(pathToFileURL(IMS_TS).href)};`,
    `export default defineConfig({ rules: [{ match: 'disk', head: '[Disk]', incident: 'A' }], incidents: { A: { channel: 'C0INCAAAA' } } });`,
  ].join('\n');
  for (const dir of [folder({ 'ims.config.ts': config }), folder({ 'package.json': '{ "type": "module" }', 'ims.config.ts': config })]) {
    for (const args of [['--test', 'disk full'], ['--config', 'ims.config.ts', '--test', 'disk full']]) {
      const run = await ims(args, dir);
      assert.equal(run.status, 0, show(run));
      assert.equal(run.stdout.split('this message include rule (1)!').length - 1, 1, show(run));
    }
  }
});

describe('details users meet', () => {
  const IMPORT = `import { defineConfig, loadIni } from ${JSON.stringify(pathToFileURL(IMS_TS).href)};`;

  test('--print-config writes strings with newlines and quotes so the saved file loads again', async () => {
    const dir = folder({
      'package.json': '{ "type": "module" }',
      'ims.config.ts': `${IMPORT}\nexport default defineConfig({ rules: [{ match: 'back\\\\\\\\slash\\n"q" it\\'s', head: '[Odd]', incident: 'A' }], incidents: { A: { channel: 'C0INCAAAA' } } });\n`,
    });
    const run = await ims(['--print-config'], dir);
    assert.equal(run.status, 0, show(run));
    const saved = folder({ 'package.json': '{ "type": "module" }', 'ims.config.ts': run.stdout.replace(`from './ims.ts'`, `from ${JSON.stringify(pathToFileURL(IMS_TS).href)}`) });
    const original = await loadConfig({ cwd: dir });
    const again = await loadConfig({ cwd: saved });
    assert.equal(again.config.rules[0].match, original.config.rules[0].match);
  });

  test('--print-config carries the command line settings into the saved config', async () => {
    const dir = folder({ 'IMS.ini': ['[Rules]', 'x\t.*\t[X]\tA\tNo', '[Incidents]', 'A\tC0INCAAAA\t5', '[Report]', 'C0REPORT1', ''].join('\n') });
    const run = await ims(['-config=IMS.ini', '-loop', '12', '-verbose', '-reminder', '60', '--print-config'], dir);
    assert.equal(run.status, 0, show(run));
    assert.match(run.stdout, /everyHours: 12/);
    assert.match(run.stdout, /verbose: true/);
    assert.match(run.stdout, /reminderInterval: '60s'/);
  });

  test('a misspelt section header in IMS.ini is reported with its line and the name it was probably meant to be', async () => {
    const dir = folder({ 'IMS.ini': ['[Rules]', 'x\t.*\t[X]\tA\tNo', '[Incidents]', 'A\tC0INCAAAA\t5', '[Report]', 'C0REPORT1', '[Reports]', ''].join('\n') });
    const run = await ims(['--config', 'IMS.ini', '--test', 'x'], dir);
    assert.equal(run.status, 1, show(run));
    assert.match(run.stderr, /IMS\.ini:7: '\[Reports\]' is not a known section \(did you mean \[Report\]\?\)/);
  });

  test("--replay of a Slack export ignores IMS's own reposts in incident channels the config names by name", async () => {
    const dir = folder({
      'IMS.ini': ['[Rules]', 'hot\t.*\t[Hot]\tL\tNo', '[Incidents]', 'L\tinc-infra\t5', ''].join('\n'),
      'export/channels.json': JSON.stringify([{ id: 'C0ALERTS1', name: 'alerts' }, { id: 'C0INCINF1', name: 'inc-infra' }]),
      'export/alerts/2026-11-16.json': JSON.stringify([{ type: 'message', bot_id: 'B0MON', text: 'hot a', ts: '1763280000.000100' }]),
      'export/inc-infra/2026-11-16.json': JSON.stringify([{ type: 'message', bot_id: 'BIMS', text: '[Hot] hot a', ts: '1763280001.000100' }]),
    });
    const run = await ims(['--config', 'IMS.ini', '--replay', 'export'], dir);
    assert.equal(run.status, 0, show(run));
    assert.match(run.stdout, /C0ALERTS1 .*incident/);
    assert.match(run.stdout, /C0INCINF1 .*ignored own channel/);
  });

  test('an empty --config= is a usage error, and -v prints the version', async () => {
    const dir = folder({});
    const empty = await ims(['--config=', '--test', 'x'], dir);
    assert.equal(empty.status, 2, show(empty));
    assert.match(empty.stderr, /--config' needs a value/);
    const version = await ims(['-v'], dir);
    assert.equal(version.status, 0, show(version));
    assert.match(version.stdout, /^ims \d+\.\d+\.\d+/);
  });

  test("loadIni('./IMS.ini') inside an ims.config.ts means beside that file, wherever IMS is started from", async () => {
    const dir = folder({
      'package.json': '{ "type": "module" }',
      'conf/IMS.ini': ['[Rules]', 'disk\t.*\t[Disk]\tA\tNo', '[Incidents]', 'A\tC0INCAAAA\t5', ''].join('\n'),
      'conf/ims.config.ts': `${IMPORT}\nexport default defineConfig({ ...loadIni('./IMS.ini') });\n`,
    });
    const run = await ims(['--config', 'conf/ims.config.ts', '--test', 'disk full'], dir);
    assert.equal(run.status, 0, show(run));
    assert.match(run.stdout, /this message include rule \(1\)!/);
  });

  test('--test with an empty text says it is ignored in both modes', async () => {
    const dir = folder({ 'IMS.ini': ['[Rules]', 'x\t.*\t[X]\tA\tNo', '[Incidents]', 'A\tC0INCAAAA\t5', 'DEFAULT\tC0DEFAULT1\t[Alert]', ''].join('\n') });
    const run = await ims(['--config', 'IMS.ini', '--test', ''], dir);
    assert.equal(run.status, 0, show(run));
    assert.match(run.stdout, /this message exclude rules\.\.\n {2}normal: {3}ignored \(empty text\)\n {2}reverse: {2}ignored \(empty text\)/);
  });
});

/**
 * Configuration mistakes are refused, never silently accepted (issue 7 §4): an empty or half-written config,
 * a rule paging an unknown hotline, destinations the bot cannot see, files that are not UTF-8 text; and IMS
 * always says which config file is in use. Each mistake is refused at start (exit 1) and on reload (the last
 * good config keeps running), with its place (`IMS.ini:7: …`, `ims.json: incidents.APPS.channel: …`).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError, loadConfig, loadIni, parseIni, validateConfig, type Config } from '../ims.ts';
import {
  ALERTS, INC_APPS, INC_INFRA, NAGIOS, REPORT, DEFAULT_CH, baseConfig, guardSocketModeShutdownBug, settle, setup, tempDir,
} from './harness.ts';

guardSocketModeShutdownBug();

const IMS_TS = fileURLToPath(new URL('../ims.ts', import.meta.url));
const IMS_URL = pathToFileURL(IMS_TS).href;
/** Resolved here: the child runs in a temp folder, where `--import tsx` would not resolve. */
const TSX = import.meta.resolve('tsx');
const BOT_TOKEN = 'xoxb-refusals-123456789';
const APP_TOKEN = 'xapp-refusals-987654321';

/** A fresh folder holding `files`; returns its path. */
function folder(files: Record<string, string | Buffer>): string {
  const dir = tempDir();
  for (const [name, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), body);
  }
  return dir;
}

const ini = (...lines: string[]) => lines.join('\n') + '\n';
/** A good IMS.ini whose channels exist in the harness's fake Slack. */
const GOOD_INI = ini('[Rules]', '(?i)disk\t.*\t[Disk]\tAPPS\tNo', '[Incidents]', `APPS\t${INC_APPS}\t50`, '[Report]', REPORT);

interface Run { status: number | null; stdout: string; stderr: string }

/** `node --import tsx ims.ts …args` in `cwd`, as a user runs it; `env` adds to a clean environment. */
function ims(args: string[], cwd: string, env: Record<string, string> = {}, until?: (run: Run) => boolean): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(SLACK_|IMS_|NODE_TEST)/.test(key))) as Record<string, string>;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, IMS_TS, ...args], { cwd, env: { ...base, ...env } });
    const run: Run = { status: null, stdout: '', stderr: '' };
    const check = () => { if (until?.(run)) child.kill('SIGTERM'); };
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { run.stdout += chunk; check(); });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { run.stderr += chunk; check(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (status) => { clearTimeout(timer); run.status = status; resolve(run); });
  });
}

const show = (run: Run) => `exit ${run.status}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

async function refusal(load: () => unknown): Promise<string[]> {
  try {
    await load();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${(error as Error)?.stack ?? error}`);
    return error.problems;
  }
  assert.fail('expected the configuration to be refused');
}

function assertProblem(problems: string[], prefix: string, pattern: RegExp): void {
  assert.ok(problems.some((p) => p.startsWith(prefix) && pattern.test(p)),
    `expected a problem starting with '${prefix}' matching ${pattern}; got:\n  ${problems.join('\n  ') || '(none)'}`);
}

describe('an empty, comment-only or half-written config is refused, never run with no rules', () => {
  test('an empty or comment-only IMS.ini is refused with one line that says so, by --config and by search', async () => {
    for (const [body, says] of [['', /the file is empty/], ['\n  \n', /the file is empty/], ['# rules come later\n; nothing yet\n', /only comments and blank lines/]] as const) {
      const dir = folder({ 'IMS.ini': body });
      for (const options of [{ cwd: dir, path: 'IMS.ini' }, { cwd: dir }]) {
        const problems = await refusal(() => loadConfig(options));
        assert.equal(problems.length, 1, problems.join('\n'));
        assert.match(problems[0], says);
        assert.match(problems[0], /^IMS\.ini: /);
      }
    }
  });

  test('a half-written IMS.ini (cut before or inside [Incidents]) is refused, once, not with an error per rule', async () => {
    const rules = ['[Rules]', 'disk\t.*\t[Disk]\tAPPS\tNo', 'cpu\t.*\t[CPU]\tAPPS\tNo', 'mem\t.*\t[Mem]\tAPPS\tNo'];
    const noSection = await refusal(() => loadIni(path.join(folder({ 'IMS.ini': ini(...rules) }), 'IMS.ini')));
    assert.equal(noSection.length, 1, noSection.join('\n'));
    assert.match(noSection[0], /no \[Incidents\] section/);
    const emptySection = await refusal(() => loadIni(path.join(folder({ 'IMS.ini': ini(...rules, '[Incidents]') }), 'IMS.ini')));
    assert.equal(emptySection.length, 1, emptySection.join('\n'));
    assert.match(emptySection[0], /:5: \[Incidents\] has no incident lines/);
    const cutMidLine = await refusal(() => loadIni(path.join(folder({ 'IMS.ini': `${ini(...rules, '[Incidents]')}APPS\tC0INC` }), 'IMS.ini')));
    assert.ok(cutMidLine.some((p) => /:6: \[Incidents\] expected 3 TAB-separated fields/.test(p)), cutMidLine.join('\n'));
    assert.ok(!cutMidLine.some((p) => /unknown incident label/.test(p)), `no error per rule naming APPS:\n${cutMidLine.join('\n')}`);
  });

  test('an IMS.ini with sections but no rule, or no incident line, is refused at its header line', async () => {
    const file = path.join(folder({ 'IMS.ini': ini('# only headers', '[Rules]', '[Incidents]', `APPS\t${INC_APPS}\t5`) }), 'IMS.ini');
    assertProblem(await refusal(() => loadIni(file)), `${file}:2: `, /\[Rules\] has no rules/);
    const noRules = path.join(folder({ 'IMS.ini': ini('[Incidents]', `APPS\t${INC_APPS}\t5`, '[Report]', REPORT) }), 'IMS.ini');
    assertProblem(await refusal(() => loadIni(noRules)), `${noRules}: `, /no \[Rules\] section/);
  });

  test('a JSON or TypeScript config without rules or without incidents is refused, naming the key', async () => {
    const dir = folder({
      'no-rules.json': JSON.stringify({ rules: [], incidents: { APPS: { channel: INC_APPS } } }),
      'no-incidents.json': JSON.stringify({ rules: [{ match: 'disk', head: '[Disk]', incident: 'APPS' }], incidents: {} }),
      'no-export.ts': `export const threshold = 3;\n`,
      'ims.config.ts': `import { defineConfig } from ${JSON.stringify(IMS_URL)};\nexport default defineConfig({ rules: [], incidents: { APPS: { channel: '${INC_APPS}' } } });\n`,
    });
    assertProblem(await refusal(() => loadConfig({ cwd: dir, path: 'no-rules.json' })), 'no-rules.json: rules: ', /no rules/);
    assertProblem(await refusal(() => loadConfig({ cwd: dir, path: 'no-incidents.json' })), 'no-incidents.json: incidents: ', /no incident channels/);
    assertProblem(await refusal(() => loadConfig({ cwd: dir, path: 'no-export.ts' })), 'no-export.ts: ', /no rules and no incidents/);
    assertProblem(await refusal(() => loadConfig({ cwd: dir })), 'ims.config.ts: rules: ', /no rules/);
    assertProblem(validateConfig({ rules: [], incidents: {} }, { source: 'x.ts' }).problems, 'x.ts: rules: ', /no rules/);
  });

  test('an empty ims.config.ts (an editor mid-save) is refused, not skipped for the IMS.ini beside it', async () => {
    const dir = folder({ 'ims.config.ts': '', 'IMS.ini': GOOD_INI });
    const problems = await refusal(() => loadConfig({ cwd: dir }));
    assert.deepEqual(problems.length, 1, problems.join('\n'));
    assert.match(problems[0], /^ims\.config\.ts: the file is empty/);
  });

  test('the ims command exits 1 on an empty IMS.ini, saying so, for --test and when starting', async () => {
    const dir = folder({ 'IMS.ini': '# TODO\n' });
    const tested = await ims(['--test', 'disk full'], dir);
    assert.equal(tested.status, 1, show(tested));
    assert.match(tested.stderr, /IMS\.ini: the file has only comments and blank lines/);
    assert.equal(tested.stdout, '');
    const started = await ims(['--config', 'IMS.ini'], dir, { SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: 'http://127.0.0.1:9/api/' });
    assert.equal(started.status, 1, show(started));
    assert.match(started.stderr, /IMS\.ini: the file has only comments/);
  });

  test('a reload to an empty, comment-only or rule-less config is refused with the reason, and the last good rules keep working', async (t) => {
    const { fake, start } = await setup(t);
    const dir = folder({ 'IMS.ini': GOOD_INI });
    const file = path.join(dir, 'IMS.ini');
    const bot = await start(loadIni(file), { configPath: file });
    for (const [body, says] of [['', /the file is empty/], ['# saving…\n', /only comments/], [ini('[Rules]', '[Incidents]', `APPS\t${INC_APPS}\t5`), /\[Rules\] has no rules/]] as const) {
      fs.writeFileSync(file, body);
      assert.equal(await bot.ims.reload(file), false, `refused: ${JSON.stringify(body)}`);
      const refusedLine = bot.logs.filter((l) => l.includes('config reload refused')).at(-1) ?? '';
      assert.match(refusedLine, says);
    }
    fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk full on db-01' });
    const post = await fake.waitFor(() => fake.messagesIn(INC_APPS).find((m) => m.bot_id === fake.botId), 'the repost under the last good rules');
    assert.match(post.text, /^\[Disk\] disk full on db-01/);
    await settle(bot);

    const json = path.join(dir, 'ims.json');
    fs.writeFileSync(json, JSON.stringify({ rules: [], incidents: { APPS: { channel: INC_APPS } } }));
    assert.equal(await bot.ims.reload(json, 'ims.json'), false);
    assert.match(bot.logs.filter((l) => l.includes('config reload refused')).at(-1) ?? '', /ims\.json: rules: no rules/);
  });
});

describe('a rule naming an unknown hotline is an error with its line', () => {
  const hotlines = (...rules: string[]) => ini('[Rules]', ...rules, '[Incidents]', 'L\tC1\t5', '[Hotline]', 'OnCall\tU1\there', 'DBA\tU2');

  test('a misspelt hotline is reported at its rule\'s line with a did-you-mean and the known hotlines', () => {
    const { problems, config } = parseIni(hotlines('a\t.*\t[A]\tL\tOnCall', 'b\t.*\t[B]\tL\tOnCal'));
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0], /^IMS\.ini:3: \[Rules\] unknown hotline 'OnCal' \(did you mean 'OnCall'\?\).*known: OnCall, DBA/);
    assert.equal(config.rules[0].hotline, 'OnCall');
  });

  test('the legacy "no hotline" spellings and an empty last field stay accepted', () => {
    const spellings = ['No', 'no', 'NONE', '-', 'off', 'false', ''];
    const { problems, config } = parseIni(hotlines(...spellings.map((s, i) => `r${i}\t.*\t[R]\tL\t${s}`), 'tab\t.*\t[T]\tL\t'));
    assert.deepEqual(problems, []);
    assert.ok(config.rules.every((r) => r.hotline === undefined));
  });

  test('the same unknown hotline on many rules is one problem listing the other lines; a refused [Hotline] line is not reported again', () => {
    const { problems } = parseIni(ini('[Rules]', 'a\t.*\t[A]\tL\tPager', 'b\t.*\t[B]\tL\tPager', 'c\t.*\t[C]\tL\tBroken', 'd\t.*\t[D]\tL\tPager',
      '[Incidents]', 'L\tC1\t5', '[Hotline]', 'Broken'));
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0], /^IMS\.ini:2: \[Rules\] unknown hotline 'Pager'.*also on lines 3, 5/);
    assert.match(problems[1], /^IMS\.ini:9: \[Hotline\] expected/);
  });

  test('without a [Hotline] section the message says so; the ims command exits 1 naming the line', async () => {
    const dir = folder({ 'IMS.ini': ini('[Rules]', 'disk\t.*\t[Disk]\tL\tHot1', '[Incidents]', 'L\tC0INCAAAA\t5') });
    const run = await ims(['--test', 'disk full'], dir);
    assert.equal(run.status, 1, show(run));
    assert.match(run.stderr, /IMS\.ini:2: \[Rules\] unknown hotline 'Hot1'.*no \[Hotline\] section/);
  });
});

describe('one mistake is one problem, problems come in line order', () => {
  test('a refused [Incidents] line is reported once, not again on every rule naming its label; the rules\' own problems still are', () => {
    const file = path.join(folder({
      'IMS.ini': ini('[Rules]', 'a\t.*\t[A]\tAPPS\tNo', 'b\t\t[B]\tAPPS\tNo', 'c\t.*\t[C]\tINFRA\tNo', '[Incidents]', 'APPS  C0APPS  5', 'INFRA\tC0INFRA\tmany'),
    }), 'IMS.ini');
    const problems = (() => { try { loadIni(file); } catch (error) { return (error as ConfigError).problems; } return []; })();
    assert.ok(!problems.some((p) => /unknown incident label/.test(p)), problems.join('\n'));
    assertProblem(problems, `${file}:3: `, /date regex is empty/);
    assertProblem(problems, `${file}:6: `, /spaces instead of TABs/);
    assertProblem(problems, `${file}:7: `, /LIMIT/);
    assert.equal(problems.length, 3, problems.join('\n'));
  });

  test('in a TypeScript config, an incident or hotline with a bad value is one problem, not one per rule', () => {
    const config = { ...baseConfig(), incidents: { INFRA: { channel: 42 }, APPS: { channel: INC_APPS } }, hotlines: { OnCall: [] } } as unknown as Config;
    const { problems } = validateConfig(config, { source: 'ims.config.ts' });
    assert.deepEqual(problems.map((p) => p.split(': ')[1]), ['hotlines.OnCall', 'incidents.INFRA.channel'], problems.join('\n'));
  });

  test('IMS.ini problems found by different checks are listed by line', async () => {
    const dir = folder({ 'IMS.ini': ini('[Rules]', 'a(\t.*\t[A]\tL\tNo', 'b\t.*\t[B]\tNOPE\tNo', 'c\t.*\t[C]\tL\tHto1', '[Incidents]', 'L\tC1\tmany', 'M\tC2\t5', '[Hotline]', 'Hot1\tU1', '[Reminder]', 'C0REM\t(0') });
    const problems = await refusal(() => loadConfig({ cwd: dir }));
    const lines = problems.map((p) => Number(/^IMS\.ini:(\d+): /.exec(p)?.[1]));
    assert.ok(lines.every(Number.isInteger), problems.join('\n'));
    assert.deepEqual(lines, [...lines].sort((a, b) => a - b), problems.join('\n'));
    assert.ok(lines.includes(2) && lines.includes(4) && lines.includes(6) && lines.includes(11), problems.join('\n'));
  });
});

describe('files that are not UTF-8 text', () => {
  const config = { rules: [{ match: 'disk', head: '[Disk]', incident: 'APPS' }], incidents: { APPS: { channel: INC_APPS } } };
  const utf16le = (text: string, bom = true) => Buffer.concat([bom ? Buffer.from([0xff, 0xfe]) : Buffer.alloc(0), Buffer.from(text, 'utf16le')]);

  test('a UTF-8 byte order mark in a JSON config (.imsrc.json, .imsrc, --config x.json) is skipped', async () => {
    const bom = '\uFEFF' + JSON.stringify(config);
    assert.equal((await loadConfig({ cwd: folder({ '.imsrc.json': bom }) })).rules.length, 1);
    assert.equal((await loadConfig({ cwd: folder({ '.imsrc': bom }) })).rules.length, 1);
    assert.equal((await loadConfig({ cwd: folder({ 'x.json': bom }), path: 'x.json' })).rules.length, 1);
  });

  test('a UTF-16 file, with or without a byte order mark, gets "save it as UTF-8", whatever its format', async () => {
    const cases: [string, Buffer][] = [
      ['IMS.ini', utf16le(GOOD_INI)], ['IMS.ini', utf16le(GOOD_INI, false)], ['.imsrc.json', utf16le(JSON.stringify(config))],
      ['x.json', Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(JSON.stringify(config), 'utf16le').swap16()])], ['ims.config.ts', utf16le('export default {};')],
    ];
    for (const [name, bytes] of cases) {
      const dir = folder({ [name]: bytes });
      const problems = await refusal(() => loadConfig(name === 'x.json' ? { cwd: dir, path: name } : { cwd: dir }));
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.match(problems[0], new RegExp(`^${name.replace('.', '\\.')}: the file is saved as UTF-16 .*save it as UTF-8`));
    }
  });

  test('a binary file given as the config is named "not a text file", never printed to the terminal', async () => {
    const binary = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, ...Array.from({ length: 600 }, (_, i) => (i * 37) % 256)]);
    const dir = folder({ 'IMS.ini': binary, 'logo.png': binary, '.imsrc.json': binary });
    for (const args of [['--config', 'IMS.ini'], ['--config', 'logo.png'], []]) {
      const run = await ims([...args, '--test', 'disk'], dir);
      assert.equal(run.status, 1, show(run));
      assert.match(run.stderr, /not a text file/);
      assert.ok(run.stderr.length < 600, `a short message, not the file: ${run.stderr.length} characters`);
      assert.doesNotMatch(run.stderr, /[\u0000-\u0008\u000e-\u001a\ufffd]|IHDR/, 'no byte of the file reaches the terminal');
    }
  });
});

describe('every destination is checked at start-up', () => {
  test('an incident channel ID that does not exist stops start-up naming its config place, before connecting', async (t) => {
    const { fake, start } = await setup(t);
    const bot = await start(baseConfig({ incidents: { INFRA: { channel: INC_INFRA }, APPS: { channel: 'C0GONE0001' } } }), { start: false });
    const error = await bot.ims.start().then(() => assert.fail('started'), (e: unknown) => e);
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.problems.length, 1, error.message);
    assert.match(error.problems[0], /^test-config: incidents\.APPS\.channel: no channel with the ID 'C0GONE0001' is visible to the bot/);
    assert.equal(fake.connectionCount, 0);
  });

  test('DEFAULT, report and reminder channels of an IMS.ini are checked too, each problem with its line, in line order', async (t) => {
    const { start } = await setup(t);
    const file = path.join(folder({
      'IMS.ini': ini('[Rules]', 'disk\t.*\t[Disk]\tAPPS\tNo', '[Incidents]', `APPS\tinc-nowhere\t5`, 'DEFAULT\tC0NODEFAULT\t[Alert]',
        '[Report]', 'C0NOREPORT', '[Reminder]', `${INC_INFRA}\t09`, 'C0NOREMIND\t10'),
    }), 'IMS.ini');
    const bot = await start(loadIni(file), { start: false });
    const problems = await refusal(() => bot.ims.start());
    assert.deepEqual(problems.map((p) => p.slice(file.length).split(': ')[0]), [':4', ':5', ':7', ':10'], problems.join('\n'));
    assert.match(problems[0], /no channel named 'inc-nowhere' is visible to the bot/);
    assert.match(problems[1], /'C0NODEFAULT'/);
    assert.match(problems[2], /'C0NOREPORT'/);
    assert.match(problems[3], /'C0NOREMIND'/);
  });

  test('a reference equal to a visible channel\'s ID is accepted whatever its length, with and without --no-id-lookup', async (t) => {
    const { fake, start } = await setup(t);
    fake.addChannel({ id: 'C12', name: 'inc-short' });
    for (const idLookup of [true, false]) {
      const bot = await start(baseConfig({ incidents: { INFRA: { channel: INC_INFRA }, APPS: { channel: 'C12' } } }), { idLookup });
      assert.equal(bot.ims.config.incidents.get('APPS')!.channel, 'C12');
      assert.ok(bot.ims.config.ownChannels.has('C12'));
      await bot.stop();
    }
    const bot = await start(baseConfig({ incidents: { INFRA: { channel: INC_INFRA }, APPS: { channel: '#C12' } } }));
    fake.post(ALERTS, { bot_id: NAGIOS, text: 'ERROR short id' });
    await fake.waitFor(() => fake.messagesIn('C12').find((m) => m.bot_id === fake.botId), 'the repost into the short-ID channel');
    await settle(bot);
  });

  test('--no-id-lookup keeps names as written but still refuses an ID the bot cannot see', async (t) => {
    const { start } = await setup(t);
    const named = await start(baseConfig({ incidents: { INFRA: { channel: 'inc-infra' }, APPS: { channel: INC_APPS } } }), { idLookup: false });
    assert.equal(named.ims.config.incidents.get('INFRA')!.channel, 'inc-infra');
    await named.stop();
    const bot = await start(baseConfig({ report: { channel: 'C0NOREPORT' } }), { idLookup: false, start: false });
    assertProblem(await refusal(() => bot.ims.start()), 'test-config: report.channel: ', /'C0NOREPORT'/);
  });

  test('a destination the bot is not a member of, or an archived one, starts with a warning naming it and the failure to come', async (t) => {
    const { fake, start } = await setup(t);
    const archived = fake.addChannel({ id: 'C0ARCHIVED', name: 'inc-old' });
    archived.is_archived = true;
    fake.addChannel({ id: 'C0OUTSIDE1', name: 'inc-outside', is_member: false });
    const bot = await start(baseConfig({ reverseDefault: { channel: 'inc-old', header: '[Alert]' }, report: { channel: 'C0OUTSIDE1' } }));
    assert.equal(bot.ims.config.reverseDefault!.channel, 'C0ARCHIVED');
    assert.ok(bot.logs.some((l) => / WARN .*reverseDefault\.channel: #inc-old \(C0ARCHIVED\) is archived: posts there fail with is_archived/.test(l)), bot.logs.join('\n'));
    assert.ok(bot.logs.some((l) => / WARN .*report\.channel: the bot is not a member of #inc-outside \(C0OUTSIDE1\).*not_in_channel/.test(l)), bot.logs.join('\n'));
  });

  test('when the channels cannot be listed (a missing scope), IDs start with a warning; names cannot be resolved and stop start-up', async (t) => {
    const { fake, start } = await setup(t);
    fake.failNext('conversations.list', 'missing_scope');
    const bot = await start(baseConfig());
    assert.ok(bot.logs.some((l) => / WARN .*could not list the channels \(missing_scope\).*not checked/.test(l)), bot.logs.join('\n'));
    await bot.stop();
    fake.failNext('conversations.list', 'missing_scope');
    const named = await start(baseConfig({ report: { channel: 'ims-report' } }), { start: false });
    assertProblem(await refusal(() => named.ims.start()), 'test-config: report.channel: ', /cannot look up the channel named 'ims-report'.*missing_scope.*channels:read/);
  });

  test('a reload pointing at a channel that does not exist is refused; the bot keeps its last good destinations', async (t) => {
    const { start } = await setup(t);
    const dir = folder({ 'IMS.ini': GOOD_INI });
    const file = path.join(dir, 'IMS.ini');
    const bot = await start(loadIni(file), { configPath: file });
    fs.writeFileSync(file, GOOD_INI.replace(INC_APPS, 'C0MOVEDAWAY'));
    assert.equal(await bot.ims.reload(file), false);
    assert.match(bot.logs.find((l) => l.includes('config reload refused')) ?? '', /IMS\.ini:4: no channel with the ID 'C0MOVEDAWAY'/);
    assert.equal(bot.ims.config.incidents.get('APPS')!.channel, INC_APPS);
  });

  test('the ims command exits 1 when a destination is missing, naming the file and the key', async (t) => {
    const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
    const dir = folder({ 'ims.json': JSON.stringify({ rules: [{ match: 'disk', head: '[Disk]', incident: 'APPS' }], incidents: { APPS: { channel: 'C0GONE0001' } }, report: { channel: REPORT } }) });
    const run = await ims(['--config', 'ims.json', '--no-incident'], dir, { SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: fake.apiUrl, IMS_HTTP_RETRIES: '1' });
    assert.equal(run.status, 1, show(run));
    assert.match(run.stderr, /ims\.json: incidents\.APPS\.channel: no channel with the ID 'C0GONE0001'/);
    assert.equal(fake.connectionCount, 0);
  });
});

describe('IMS says which config file is in use', () => {
  test('--test ends with the config it used, after the legacy lines; --replay names it in its summary', async () => {
    const dir = folder({ 'IMS.ini': GOOD_INI, 'alerts.jsonl': JSON.stringify({ type: 'message', channel: ALERTS, ts: '1794790396.000100', text: 'disk full' }) + '\n' });
    const run = await ims(['--test', 'disk full'], dir);
    assert.equal(run.status, 0, show(run));
    const lines = run.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'this message include rule (1)!');
    assert.equal(lines.at(-1), `  config:   IMS.ini (${path.join(fs.realpathSync(dir), 'IMS.ini')})`);
    const replayed = await ims(['--replay', 'alerts.jsonl'], dir);
    assert.equal(replayed.status, 0, show(replayed));
    assert.match(replayed.stdout, new RegExp(`^Summary: 1 messages\\n  config: IMS\\.ini \\(${fs.realpathSync(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/IMS\\.ini\\)$`, 'm'));
  });

  test('an IMS.ini beside an ims.config.ts that wins the search is named in a warning saying how to use it', async () => {
    const dir = folder({
      'IMS.ini': GOOD_INI,
      'ims.config.ts': `export default { rules: [{ match: 'sample', head: '[Sample]', incident: 'APPS' }], incidents: { APPS: { channel: '${INC_APPS}' } } };\n`,
    });
    const run = await ims(['--test', 'disk full'], dir);
    assert.equal(run.status, 0, show(run));
    assert.match(run.stderr, /warning: IMS\.ini is not used: ims\.config\.ts comes first.*--config IMS\.ini/);
    assert.match(run.stdout, /^ {2}config: {3}ims\.config\.ts /m);
    const chosen = await ims(['--config', 'IMS.ini', '--test', 'disk full'], dir);
    assert.equal(chosen.stderr, '', show(chosen));
    assert.match(chosen.stdout, /^this message include rule \(1\)!/);
  });

  test('an ims.config.ts that reads the IMS.ini beside it with loadIni() gets no warning', async () => {
    const dir = folder({
      'IMS.ini': GOOD_INI,
      'ims.config.ts': `import { defineConfig, loadIni } from ${JSON.stringify(IMS_URL)};\nexport default defineConfig({ ...loadIni('./IMS.ini') });\n`,
    });
    const compiled = await loadConfig({ cwd: dir });
    assert.deepEqual(compiled.warnings, []);
    assert.equal(compiled.file, path.join(dir, 'ims.config.ts'));
  });

  test('the start log names the config file and warns about a shadowed IMS.ini', async (t) => {
    const { fake } = await setup(t, { botToken: BOT_TOKEN, appToken: APP_TOKEN });
    const dir = folder({ 'IMS.ini': GOOD_INI, '.imsrc.json': JSON.stringify({ rules: [{ match: 'x', head: '[X]', incident: 'APPS' }], incidents: { APPS: { channel: INC_APPS } } }) });
    const run = await ims(['--no-incident'], dir, { SLACK_APP_TOKEN: APP_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: fake.apiUrl, IMS_HTTP_RETRIES: '1' },
      (r) => r.stderr.includes('Socket Mode connected'));
    assert.match(run.stderr, new RegExp(`connected as \\S+; config \\.imsrc\\.json \\(${fs.realpathSync(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/\\.imsrc\\.json\\)`), show(run));
    assert.match(run.stderr, / WARN .*IMS\.ini is not used: \.imsrc\.json comes first.*--config IMS\.ini/);
  });
});

describe('one bad line is one problem, whatever section it is in', () => {
  test('a [Hotline] line with spaces instead of TABs is reported once, with the hint; rules naming its label are not reported again', () => {
    const { problems } = parseIni(ini('[Rules]', 'a\t.*\t[A]\tL\tOnCall', 'b\t.*\t[B]\tL\tOnCall', '[Incidents]', 'L\tC1\t5', '[Hotline]', 'OnCall U1 here'));
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0], /^IMS\.ini:7: \[Hotline\] expected 'LABEL<TAB>member.*found only 'OnCall U1 here' \(are the fields separated by spaces instead of TABs\?\)$/);
  });

  test('a hotline no [Hotline] line defines is still reported, without claiming there is no [Hotline] section', () => {
    const { problems } = parseIni(ini('[Rules]', 'a\t.*\t[A]\tL\tOnCall', 'b\t.*\t[B]\tL\tPager', '[Incidents]', 'L\tC1\t5', '[Hotline]', 'OnCall U1 here'));
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0], /^IMS\.ini:3: \[Rules\] unknown hotline 'Pager'/);
    assert.doesNotMatch(problems[0], /there is no \[Hotline\] section/);
    assert.match(problems[1], /^IMS\.ini:7: \[Hotline\]/);
  });

  test('when every [Incidents] line is refused, a label no line defines is still reported; only the refused line\'s label is held back', () => {
    const file = path.join(folder({ 'IMS.ini': ini('[Rules]', 'a\t.*\t[A]\tINFRA\tNo', 'b\t.*\t[B]\tINFRX\tNo', '[Incidents]', 'INFRA\tC0INC\tabc') }), 'IMS.ini');
    const problems = (() => { try { loadIni(file); } catch (error) { return (error as ConfigError).problems; } return []; })();
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0], new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: .*unknown incident label 'INFRX' \\(did you mean 'INFRA'\\?\\)`));
    assert.match(problems[1], /:5: \[Incidents\] LIMIT must be a positive whole number, found 'abc'/);
  });

  test('a TypeScript config with no incident channels is one problem, not one more per rule', () => {
    const { problems } = validateConfig({ rules: [{ match: 'a', head: '[A]', incident: 'APPS' }, { match: 'b', head: '[B]', incident: 'INFRA' }], incidents: {} }, { source: 'ims.config.ts' });
    assert.deepEqual(problems.map((p) => p.split(': ')[1]), ['incidents'], problems.join('\n'));
  });
});

describe('a config found by the search names its file in every problem', () => {
  const configTs = (body: string) => `import { defineConfig, loadIni } from ${JSON.stringify(IMS_URL)};\nexport default defineConfig(${body});\n`;

  test('a half-written, failing or incomplete ims.config.* is refused naming the file (and its line when known), not "config"', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ 'ims.config.mjs': 'export default {\n' }, /^ims\.config\.mjs: could not be loaded: SyntaxError: Unexpected end of input/],
      [{ 'ims.config.mjs': 'const a = 1;\nexport default { rules: [undefinedVar] };\n' }, /^ims\.config\.mjs:2: could not be loaded: ReferenceError: undefinedVar is not defined/],
      [{ 'ims.config.mjs': "import rules from './rules.mjs';\nexport default { rules };\n" }, /^ims\.config\.mjs: could not be loaded: .*rules\.mjs/],
      [{ 'ims.config.ts': 'export default {\n' }, /^ims\.config\.ts:2: could not be loaded: SyntaxError: /],
      [{ '.imsrc.yaml': 'rules: [1\nincidents: :\n' }, /^\.imsrc\.yaml:2: not valid YAML: /],
    ];
    for (const [files, says] of cases) {
      const error = await loadConfig({ cwd: folder(files) }).then(() => assert.fail(`accepted ${Object.keys(files)}`), (e: unknown) => e);
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.source, Object.keys(files)[0]);
      assert.equal(error.problems.length, 1, error.message);
      assert.match(error.problems[0], says);
    }
  });

  test('an IMS.ini refused inside an ims.config.ts keeps its own file and lines, not wrapped as another problem', async () => {
    const dir = folder({ 'IMS.ini': ini('[Rules]', 'disk full', '[Incidents]', `APPS\t${INC_APPS}\t5`), 'ims.config.ts': configTs(`{ ...loadIni('./IMS.ini') }`) });
    const iniFile = path.join(dir, 'IMS.ini');
    const error = await loadConfig({ cwd: dir }).then(() => assert.fail('accepted'), (e: unknown) => e);
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.source, iniFile);
    assert.deepEqual(error.problems.map((p) => p.slice(0, iniFile.length + 3)), [`${iniFile}:2:`], error.message);
  });

  test('the ims command prints the discovered file as the source, for a broken module and for an IMS.ini read by loadIni()', async () => {
    const broken = folder({ 'ims.config.mjs': 'export default {\n' });
    const wrapped = folder({ 'IMS.ini': ini('[Rules]', 'disk full', '[Incidents]', `APPS\t${INC_APPS}\t5`), 'ims.config.ts': configTs(`{ ...loadIni('./IMS.ini') }`) });
    const [first, second] = await Promise.all([ims(['--test', 'disk'], broken), ims(['--test', 'disk'], wrapped)]);
    assert.equal(first.status, 1, show(first));
    assert.match(first.stderr, /^ims\.config\.mjs: configuration refused \(1 problem\):\n {2}ims\.config\.mjs: could not be loaded: SyntaxError: Unexpected end of input/, show(first));
    assert.equal(second.status, 1, show(second));
    assert.match(second.stderr, /^\S*IMS\.ini: configuration refused \(1 problem\):\n {2}\S*IMS\.ini:2: \[Rules\] expected 5 TAB-separated fields/, show(second));
    assert.doesNotMatch(first.stderr + second.stderr, /^config: /m);
  });
});

describe('package.json is read as the README says', () => {
  const imsKey = { rules: [{ match: 'disk', head: '[Disk]', incident: 'APPS' }], incidents: { APPS: { channel: INC_APPS } } };

  test('a package.json with a UTF-8 byte order mark works, with an "ims" key and without one', async () => {
    const withKey = folder({ 'package.json': '\uFEFF' + JSON.stringify({ name: 'ops', ims: imsKey }) });
    const withoutKey = folder({ 'package.json': '\uFEFF' + JSON.stringify({ name: 'ops' }), 'IMS.ini': GOOD_INI });
    const [keyed, beside] = await Promise.all([ims(['--test', 'disk full'], withKey), ims(['--test', 'disk full'], withoutKey)]);
    assert.equal(keyed.status, 0, show(keyed));
    assert.match(keyed.stdout, /^this message include rule \(1\)!/);
    assert.match(keyed.stdout, /config: {3}package\.json /);
    assert.equal(beside.status, 0, show(beside));
    assert.match(beside.stdout, /config: {3}IMS\.ini /);
    assert.equal((await loadConfig({ cwd: withKey })).source, 'package.json');
  });

  test('a package.json that is not valid JSON is one line naming it, never a stack; --config another file does not read it', async () => {
    const dir = folder({ 'package.json': '{ "name": "ops", }', 'IMS.ini': GOOD_INI });
    const [searched, chosen] = await Promise.all([ims(['--test', 'disk full'], dir), ims(['--config', 'IMS.ini', '--test', 'disk full'], dir)]);
    assert.equal(searched.status, 1, show(searched));
    assert.match(searched.stderr, /^package\.json: configuration refused \(1 problem\):\n {2}package\.json: not valid JSON: /);
    assert.doesNotMatch(searched.stderr, /^\s+at /m, 'no stack trace');
    assert.equal(chosen.status, 0, show(chosen));
    assert.match(chosen.stdout, /^this message include rule \(1\)!/);
  });
});

describe('a legacy reverse-mode IMS.ini (a DEFAULT line, suppressions naming DEFAULT) is accepted in reverse mode', () => {
  const REVERSE_INI = ini('[Rules]', '(?i)backup\t!.*\t[Backup]\tDEFAULT\tNo', 'heartbeat\t!.*\t[Beat]\tDEFAULT\tNo', '[Incidents]', `DEFAULT\t${DEFAULT_CH}\t[Alert]`);

  test('with --reverse a DEFAULT line alone is a config; without it, one problem saying reverse mode is needed', async () => {
    const dir = folder({ 'IMS.ini': REVERSE_INI });
    const compiled = await loadConfig({ cwd: dir, reverse: true });
    assert.equal(compiled.reverseDefault?.channel, DEFAULT_CH);
    assert.equal(compiled.incidents.size, 0);
    assert.deepEqual(compiled.rules.map((r) => [r.incident, r.suppress]), [['DEFAULT', true], ['DEFAULT', true]]);
    const problems = await refusal(() => loadConfig({ cwd: dir }));
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0], /^IMS\.ini:4: no incident channels.*only in reverse mode: run with --reverse/);
  });

  test('a refused DEFAULT line is one problem in reverse mode, not also "reverse mode needs a DEFAULT line"', async () => {
    const dir = folder({ 'IMS.ini': REVERSE_INI.replace(`DEFAULT\t${DEFAULT_CH}\t[Alert]`, `DEFAULT  ${DEFAULT_CH}  [Alert]`) });
    for (const load of [() => loadConfig({ cwd: dir, reverse: true }), () => loadIni(path.join(dir, 'IMS.ini'), { reverse: true })]) {
      const problems = await refusal(load);
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.match(problems[0], /IMS\.ini:5: \[Incidents\] expected 3 TAB-separated fields.*spaces instead of TABs/);
    }
  });

  test('a TypeScript config with reverseDefault and reverse: true (or a loadIni() of that file) needs no incident channel', async () => {
    const rules = [{ match: 'backup', when: '!.*', head: '[Backup]', incident: 'DEFAULT' }, { match: 'heartbeat', suppress: true, head: '[Beat]', incident: 'DEFAULT' }];
    const config: Config = { rules, incidents: {}, reverseDefault: { channel: DEFAULT_CH, header: '[Alert]' }, reverse: true };
    assert.deepEqual(validateConfig(config, { source: 'ims.config.ts' }).problems, []);
    assertProblem(validateConfig({ ...config, reverse: false }, { source: 'ims.config.ts' }).problems, 'ims.config.ts: incidents: ', /only in reverse mode/);
    const dir = folder({ 'IMS.ini': REVERSE_INI, 'ims.config.ts': `import { loadIni } from ${JSON.stringify(IMS_URL)};\nexport default { ...loadIni('./IMS.ini'), reverse: true };\n` });
    assert.equal((await loadConfig({ cwd: dir })).reverse, true);
    assert.equal((await loadConfig({ cwd: folder({ 'IMS.ini': REVERSE_INI, 'ims.config.ts': `import { loadIni } from ${JSON.stringify(IMS_URL)};\nexport default { ...loadIni('./IMS.ini') };\n` }), reverse: true })).reverse, true);
  });

  test('only a suppression may name DEFAULT; a rule that reposts naming it is refused saying why', () => {
    const { problems } = validateConfig({
      rules: [{ match: 'noise', head: '[Noise]', incident: 'DEFAULT' }, { match: 'quiet', when: '!.*', head: '[Q]', incident: 'DEFAULT' }],
      incidents: { APPS: { channel: INC_APPS } }, reverseDefault: { channel: DEFAULT_CH, header: '[Alert]' },
    }, { source: 'ims.config.ts', reverse: true });
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0], /^ims\.config\.ts: rules\[0\]\.incident: 'DEFAULT' names the reverse-mode line, not an incident label: only a suppression rule/);
    const noDefault = validateConfig({ rules: [{ match: 'quiet', when: '!.*', head: '[Q]', incident: 'DEFAULT' }], incidents: { APPS: { channel: INC_APPS } } }, { source: 'x.ts' }).problems;
    assertProblem(noDefault, 'x.ts: rules[0].incident: ', /unknown incident label 'DEFAULT'/);
  });

  test('the ims command runs the file with --reverse: a suppressed message is seen, any other goes to DEFAULT', async () => {
    const dir = folder({ 'IMS.ini': REVERSE_INI });
    const [suppressed, reposted, normal] = await Promise.all([
      ims(['--reverse', '--test', 'Backup finished'], dir), ims(['--reverse', '--test', 'disk full'], dir), ims(['--test', 'disk full'], dir),
    ]);
    assert.equal(suppressed.status, 0, show(suppressed));
    assert.match(suppressed.stdout, /reverse: {2}suppressed by rule 1/);
    assert.equal(reposted.status, 0, show(reposted));
    assert.match(reposted.stdout, new RegExp(`reverse: {2}reverse repost to ${DEFAULT_CH} as \\[Alert\\]`));
    assert.equal(normal.status, 1, show(normal));
    assert.match(normal.stderr, /IMS\.ini:4: no incident channels.*--reverse/);
  });

  test('the bot runs such a file against Slack: suppressed alerts get the seen reaction, the others are reposted to DEFAULT', async (t) => {
    const { fake, start } = await setup(t);
    const file = path.join(folder({ 'IMS.ini': REVERSE_INI }), 'IMS.ini');
    const bot = await start(loadIni(file, { reverse: true }), { reverse: true });
    const backup = fake.post(ALERTS, { bot_id: NAGIOS, text: 'backup finished' });
    fake.post(ALERTS, { bot_id: NAGIOS, text: 'disk full on db-01' });
    const repost = await fake.waitFor(() => fake.messagesIn(DEFAULT_CH).find((m) => m.bot_id === fake.botId), 'the reverse repost');
    assert.match(repost.text, /^\[Alert\] disk full on db-01/);
    await fake.waitFor(() => fake.messagesIn(ALERTS).find((m) => m.ts === backup.ts && m.reactions?.length), 'the seen reaction on the suppressed alert');
    await settle(bot);
    assert.equal(fake.messagesIn(DEFAULT_CH).filter((m) => m.bot_id === fake.botId).length, 1);
  });
});

describe('checking destinations when Slack fails to list the channels', () => {
  test('a one-off internal_error from conversations.list is retried, and the destinations are still checked', async (t) => {
    const { fake, start } = await setup(t);
    fake.failNext('conversations.list', 'internal_error');
    const bot = await start(baseConfig({ report: { channel: 'C0GONE0002' } }), { start: false });
    assertProblem(await refusal(() => bot.ims.start()), 'test-config: report.channel: ', /no channel with the ID 'C0GONE0002'/);
    assert.ok(bot.logs.some((l) => / WARN .*could not list the channels \(internal_error\); retry 1 of 1/.test(l)), bot.logs.join('\n'));
    assert.ok(!bot.logs.some((l) => /channels:read/.test(l)), bot.logs.join('\n'));
  });

  test('a failure that lasts (internal_error, HTTP 503) starts unchecked with a warning saying what failed, not asking for scopes', async (t) => {
    const { fake, start } = await setup(t);
    fake.failNext('conversations.list', 'internal_error', 10);
    const bot = await start(baseConfig());
    assert.ok(bot.logs.some((l) => / WARN .*could not list channels to check the config's destinations: internal_error \(tried 2 times\); going on without checking them/.test(l)), bot.logs.join('\n'));
    assert.ok(!bot.logs.some((l) => /channels:read|scope/.test(l)), bot.logs.join('\n'));
    await bot.stop();
    fake.outage(503, 60_000, { methods: ['conversations.list'] });
    const outage = await start(baseConfig());
    assert.ok(outage.logs.some((l) => / WARN .*could not list channels to check the config's destinations: HTTP 503/.test(l)), outage.logs.join('\n'));
    assert.ok(!outage.logs.some((l) => /channels:read|scope/.test(l)), outage.logs.join('\n'));
  });

  test('a channel name cannot be resolved while the listing fails: start-up stops saying what failed and that it may pass', async (t) => {
    const { fake, start } = await setup(t);
    fake.failNext('conversations.list', 'service_unavailable', 10);
    const bot = await start(baseConfig({ report: { channel: 'ims-report' } }), { start: false });
    const problems = await refusal(() => bot.ims.start());
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0], /^test-config: report\.channel: cannot look up the channel named 'ims-report': could not list channels \(service_unavailable, tried 2 times\); start IMS again/);
    assert.doesNotMatch(problems[0], /scope/);
  });

  test('an ID-shaped reference is reported as an ID whatever its length, as the README shows', async (t) => {
    const { start } = await setup(t);
    const bot = await start(baseConfig({ incidents: { INFRA: { channel: INC_INFRA }, APPS: { channel: 'C0GONE' } } }), { start: false });
    const problems = await refusal(() => bot.ims.start());
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0], /^test-config: incidents\.APPS\.channel: no channel with the ID 'C0GONE' is visible to the bot/);
    assert.match(fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8'), /no channel with the ID\s+'C0GONE' is visible to the bot/);
  });
});

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

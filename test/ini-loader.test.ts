/**
 * The legacy IMS.ini loader: `parseIni`, `loadIni`, and `loadConfig({ path })` on an `.ini` file.
 * Reference: ../shared/docs/legacy-ims.md beside the project (the format, and which old behaviours are bugs to fix).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  parseIni, loadIni, loadConfig, compileConfig, defineConfig, matchRules, ConfigError, type Config,
} from '../ims.ts';

const IMS_TS = fileURLToPath(new URL('../ims.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ims-ini-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

/** A fresh folder holding `name` with `body`; returns the file's absolute path. */
function writeIni(body: string, name = 'IMS.ini'): string {
  const dir = path.join(tmp, String(++dirs));
  fs.mkdirSync(dir);
  const file = path.join(dir, name);
  fs.writeFileSync(file, body);
  return file;
}

const ini = (...lines: string[]) => lines.join('\n') + '\n';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${(error as Error)?.stack ?? error}`);
    return error.problems;
  }
  assert.fail('expected the configuration to be refused with a ConfigError');
}

async function problemsOfAsync(fn: () => Promise<unknown>): Promise<string[]> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${(error as Error)?.stack ?? error}`);
    return error.problems;
  }
  assert.fail('expected the configuration to be refused with a ConfigError');
}

/** Assert one problem is `${file}:${line}: …` and matches `pattern`. */
function assertProblem(problems: string[], file: string, line: number, pattern: RegExp): void {
  const prefix = `${file}:${line}: `;
  assert.ok(problems.some((p) => p.startsWith(prefix) && pattern.test(p)),
    `expected a problem starting with '${prefix}' matching ${pattern}; got:\n  ${problems.join('\n  ')}`);
}

/** JSON round trip: drops the loader's private symbol so the shape can be compared. */
const plain = (value: unknown) => JSON.parse(JSON.stringify(value));

/**
 * Run a snippet in a child process, for cases where a bug could loop forever and would otherwise hang the
 * whole test file. The child says `started` once ims.ts is loaded; from then on it gets `budget` ms (loading
 * can be slow on a busy machine, the snippet itself is instant). Prints whatever the snippet writes with `out(...)`.
 */
function runIsolated(body: string, budget = 3000): Promise<{ status: number | null; stdout: string; stderr: string; timedOut: boolean }> {
  const script = path.join(tmp, `isolated-${++dirs}.mts`);
  fs.writeFileSync(script, `import * as ims from ${JSON.stringify(pathToFileURL(IMS_TS).href)};\n` +
    `const out = (v: unknown) => process.stdout.write(JSON.stringify(v) + '\\n');\nprocess.stderr.write('started\\n');\n${body}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, script], { cwd: tmp });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const kill = () => { timedOut = true; child.kill('SIGKILL'); };
    let timer = setTimeout(kill, 60_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (!stderr.includes('started\n') && (stderr + chunk).includes('started\n')) { clearTimeout(timer); timer = setTimeout(kill, budget); }
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr, timedOut }); });
  });
}

const SAMPLE = ini(
  '# IMS.ini with every section',
  '[Rules]',
  '.*Error.*\t.*:.*:.*\t[Error]\tCHANNEL1\tHot1',
  '.*Warn.*\t.*:.*:.*\t[Warn]\tCHANNEL1\tNo',
  '.*Info.*\t!.*:.*:.*\t[Info]\tCHANNEL2\tNo',
  '[Incidents]',
  'CHANNEL1\tC025FKF3QJV\t20',
  'CHANNEL2\talerts-info\t5',
  'DEFAULT\tC0DEFAULT1\t[Alert]',
  '[Label]',
  'white_check_mark',
  '[Report]',
  'C0256BTKP54',
  '[PostID]',
  'U024ZT3BHU5',
  'B0NAGIOS1\tB0ZABBIX1',
  '[Hotline]',
  'Hot1\tU024ZT3BHU5\there',
  '[Reacji]',
  'fast_forward',
  '[Reminder]',
  'C0REMIND01\t0[89]\t1[0-7]',
  '[ReacjiID]',
  'B0REACJI1',
  '[MgmtReport]',
  'U0MANAGER1',
);

const SAMPLE_CONFIG = {
  rules: [
    { match: '.*Error.*', when: '.*:.*:.*', head: '[Error]', incident: 'CHANNEL1', hotline: 'Hot1' },
    { match: '.*Warn.*', when: '.*:.*:.*', head: '[Warn]', incident: 'CHANNEL1' },
  ],
  incidents: { CHANNEL1: { channel: 'C025FKF3QJV', limit: 20 }, CHANNEL2: { channel: 'alerts-info', limit: 5 } },
  reverseDefault: { channel: 'C0DEFAULT1', header: '[Alert]' },
  resolvedReactions: ['white_check_mark'],
  report: { channel: 'C0256BTKP54', onlyPosters: ['U0MANAGER1'] },
  posters: ['U024ZT3BHU5', 'B0NAGIOS1', 'B0ZABBIX1'],
  hotlines: { Hot1: ['U024ZT3BHU5', 'here'] },
  reacji: { reaction: 'fast_forward', bots: ['B0REACJI1'] },
  reminders: [{ channel: 'C0REMIND01', hours: ['0[89]', '1[0-7]'] }],
};

/** The parts of a config that do not depend on how suppression is spelled. */
function shape(config: Config) {
  const { rules, ...rest } = plain(config) as Config;
  return { rules: rules.slice(0, 2), ...rest };
}

describe('IMS.ini sections', () => {
  test('reads all ten sections ([Rules] … [MgmtReport]) into the Config shape', () => {
    const { config, problems } = parseIni(SAMPLE);
    assert.deepEqual(problems, []);
    assert.deepEqual(shape(config), SAMPLE_CONFIG);
    assert.equal(config.rules.length, 3);
    assert.deepEqual({ match: config.rules[2].match, head: config.rules[2].head, incident: config.rules[2].incident },
      { match: '.*Info.*', head: '[Info]', incident: 'CHANNEL2' });
  });

  test('loadIni returns the same Config as parseIni for a valid file', () => {
    const file = writeIni(SAMPLE);
    assert.deepEqual(shape(loadIni(file)), SAMPLE_CONFIG);
  });

  test('a DATE_REGEX starting with ! makes a suppression rule whose window is the rest of the field', () => {
    const compiled = compileConfig(loadIni(writeIni(SAMPLE)));
    const info = compiled.rules[2];
    assert.equal(info.suppress, true);
    assert.ok(info.when instanceof RegExp);
    assert.ok(info.when.test('2026/11/21 15:26:30 Sat'));
    assert.equal(compiled.rules[0].suppress, false);
    assert.equal(matchRules(compiled.rules, 'Info: nightly job done', Date.UTC(2026, 10, 21, 6)).kind, 'suppressed');
  });

  test('a hotline field of No (any case) means no hotline; a [Hotline] label pages that hotline', () => {
    const { config, problems } = parseIni(ini(
      '[Rules]',
      'a\t.*\t[A]\tL\tNo',
      'b\t.*\t[B]\tL\tno',
      'c\t.*\t[C]\tL\tHot1',
      '[Incidents]',
      'L\tC1\t5',
      '[Hotline]',
      'Hot1\tU1',
    ));
    assert.deepEqual(problems, []);
    assert.deepEqual(config.rules.map((r) => r.hotline), [undefined, undefined, 'Hot1']);
    assert.ok(!('hotline' in config.rules[0]), 'No must not be kept as a hotline name');
    const compiled = compileConfig(config);
    assert.deepEqual(compiled.hotlines.get('Hot1'), ['U1']);
  });

  test('a rule whose HOTLINE field is empty (the line ends with a TAB) is read as having no hotline', () => {
    const { config, problems } = parseIni(ini('[Rules]', 'disk\t.*\t[Disk]\tL\t', '[Incidents]', 'L\tC1\t5'));
    assert.deepEqual(problems, []);
    assert.equal(config.rules.length, 1);
    assert.equal(config.rules[0].hotline, undefined);
  });

  test('a [Hotline] section after [Rules] still attaches the hotline to the rules that name it', () => {
    const { config } = parseIni(ini('[Rules]', 'x\t.*\t[X]\tL\tHot1', '[Incidents]', 'L\tC1\t5', '[Hotline]', 'Hot1\there'));
    assert.equal(config.rules[0].hotline, 'Hot1');
  });

  test('the last line wins in [Label] and [Report], and a :colon: reaction spelling is accepted', () => {
    const { config, problems } = parseIni(ini(
      '[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5',
      '[Label]', 'ok', ':heavy_check_mark:',
      '[Report]', 'C0OLD', 'C0NEW',
    ));
    assert.deepEqual(problems, []);
    assert.deepEqual(config.resolvedReactions, ['heavy_check_mark']);
    assert.equal(config.report?.channel, 'C0NEW');
    assert.equal(compileConfig(config).seenReaction, 'heavy_check_mark');
  });

  test('[PostID], [ReacjiID] and [MgmtReport] collect every TAB-separated ID across lines', () => {
    const { config } = parseIni(ini(
      '[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5',
      '[PostID]', 'U1\tU2', 'B3', '[Reacji]', 'fast_forward', '[ReacjiID]', 'B7\tB8', '[MgmtReport]', 'U9', 'U10',
    ));
    assert.deepEqual(config.posters, ['U1', 'U2', 'B3']);
    assert.deepEqual(config.reacji, { reaction: 'fast_forward', bots: ['B7', 'B8'] });
    assert.deepEqual(config.report?.onlyPosters, ['U9', 'U10']);
  });

  test('[Reminder] lines become one reminder each with their hour regexes', () => {
    const { config } = parseIni(ini(
      '[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5',
      '[Reminder]', 'C0A\t09', 'C0B\t1[0-2]\t2[0-3]',
    ));
    assert.deepEqual(config.reminders, [{ channel: 'C0A', hours: ['09'] }, { channel: 'C0B', hours: ['1[0-2]', '2[0-3]'] }]);
    const compiled = compileConfig(config);
    assert.ok(compiled.reminders[1].hours.every((r) => r instanceof RegExp));
    assert.ok(compiled.reminders[1].hours[1].test('21'));
  });
});

describe('IMS.ini syntax', () => {
  test('skips # and ; comments and blank lines, and strips leading whitespace', () => {
    const { config, problems } = parseIni(ini(
      '# comment',
      '; another comment',
      '',
      '   [Rules]',
      '   # indented comment',
      '\t; indented comment',
      '  .*Error.*\t.*\t[Error]\tL\tNo',
      '',
      '  [Incidents]  ',
      '    L\tC1\t5',
    ));
    assert.deepEqual(problems, []);
    assert.deepEqual(plain(config.rules), [{ match: '.*Error.*', when: '.*', head: '[Error]', incident: 'L' }]);
    assert.deepEqual(plain(config.incidents), { L: { channel: 'C1', limit: 5 } });
  });

  test('reads CRLF line endings like LF, with the same line numbers in errors', () => {
    const lines = ['[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5', 'M\tC2\tten'];
    const lf = parseIni(lines.join('\n'));
    const crlf = parseIni(lines.join('\r\n') + '\r\n');
    assert.deepEqual(plain(crlf.config), plain(lf.config));
    assert.equal(crlf.config.incidents.L.channel, 'C1', 'no stray \\r in values');
    assert.equal(crlf.problems.length, 1);
    assert.match(crlf.problems[0], /^IMS\.ini:5: /);
    assert.deepEqual(crlf.problems, lf.problems);
  });

  test('reads lone CR line endings with the right line numbers', () => {
    const { config, problems } = parseIni(['[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5', 'M\tC2\t0'].join('\r'));
    assert.equal(config.rules.length, 1);
    assert.deepEqual(plain(config.incidents), { L: { channel: 'C1', limit: 5 } });
    assert.equal(problems.length, 1);
    assert.match(problems[0], /^IMS\.ini:5: .*LIMIT/);
  });

  test('skips a UTF-8 byte order mark so the first line is still a section header', () => {
    const file = writeIni('\uFEFF' + ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const config = loadIni(file);
    assert.equal(config.rules.length, 1);
    assert.equal(config.rules[0].match, 'x');
  });

  test('concatenates a repeated section in file order', () => {
    const { config, problems } = parseIni(ini(
      '[Rules]', 'first\t.*\t[1]\tL\tNo',
      '[Incidents]', 'L\tC1\t5',
      '[PostID]', 'U1',
      '[Rules]', 'second\t.*\t[2]\tM\tNo',
      '[Incidents]', 'M\tC2\t5',
      '[PostID]', 'U2',
      '[Rules]', 'third\t.*\t[3]\tL\tNo',
    ));
    assert.deepEqual(problems, []);
    assert.deepEqual(config.rules.map((r) => r.match), ['first', 'second', 'third']);
    assert.deepEqual(Object.keys(config.incidents), ['L', 'M']);
    assert.deepEqual(config.posters, ['U1', 'U2']);
  });

  test('a rule whose regex starts with [ (e.g. [Ee]rror) is a rule, not a section header', () => {
    const { config, problems } = parseIni(ini(
      '[Rules]',
      '[Ee]rror\t.*\t[Error]\tL\tNo',
      '[Ww]arn\t.*\t[Warn]\tL\tNo',
      '[Incidents]',
      'L\tC1\t5',
    ));
    assert.deepEqual(problems, []);
    assert.deepEqual(config.rules.map((r) => r.match), ['[Ee]rror', '[Ww]arn']);
    const compiled = compileConfig(config);
    const verdict = matchRules(compiled.rules, 'disk error on db-1', 0);
    assert.equal(verdict.kind, 'incident');
    assert.equal(verdict.kind === 'incident' && verdict.match.rule.number, 1);
  });

  test('an unknown [Name] alone on a line is not a header: it is reported with its line', () => {
    const { problems } = parseIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Error]', '[Incidents]', 'L\tC1\t5'));
    assert.equal(problems.length, 1);
    assert.match(problems[0], /^IMS\.ini:3: \[Rules\] expected 5 TAB-separated fields/);
  });
});

describe('IMS.ini errors carry IMS.ini:LINE:', () => {
  test('a rule with the wrong field count is reported with its line and the spaces-instead-of-TABs hint', () => {
    const file = writeIni(ini('[Rules]', '.*Error.*    .*:.*:.*    [Error]    CHANNEL1    No', '[Incidents]', 'CHANNEL1\tC1\t5'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 2, /\[Rules\] expected 5 TAB-separated fields.*found 1.*spaces instead of TABs/);
  });

  test('a rule with TABs but too few fields is reported without the spaces hint', () => {
    const file = writeIni(ini('[Rules]', '.*Error.*\t.*\t[Error]\tCHANNEL1', '[Incidents]', 'CHANNEL1\tC1\t5'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 2, /expected 5 TAB-separated fields.*found 4/);
    assert.ok(!problems.some((p) => /spaces instead of TABs/.test(p)));
  });

  test('an empty date field is reported with its line instead of being silently dropped', () => {
    const file = writeIni(ini('[Rules]', 'ok\t.*\t[Ok]\tL\tNo', '.*Disk.*\t\t[Disk]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 3, /date regex is empty/);
  });

  test('a bad message regex is reported at load with its line and the pattern', () => {
    const file = writeIni(ini('[Rules]', 'ok\t.*\t[Ok]\tL\tNo', '(unclosed\t.*\t[Bad]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 3, /message regex '\(unclosed' does not compile/);
  });

  test('a bad date regex is reported with its line and the pattern', () => {
    const file = writeIni(ini('[Rules]', 'x\t!.*[:\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 2, /date regex '\.\*\[:' does not compile/);
  });

  test('a rule naming an incident label missing from [Incidents] is reported with a did-you-mean hint', () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tCHANEL1\tNo', '[Incidents]', 'CHANNEL1\tC1\t5'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 2, /unknown incident label 'CHANEL1' \(did you mean 'CHANNEL1'\?\)/);
  });

  test('a LIMIT that is not a positive whole number is reported with its line', () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tA\tNo', '[Incidents]', 'A\tC1\t5', 'B\tC2\tten', 'C\tC3\t0', 'D\tC4\t-3', 'E\tC5\t2.5'));
    const problems = problemsOf(() => loadIni(file));
    for (const [line, value] of [[5, 'ten'], [6, '0'], [7, '-3'], [8, '2.5']] as const) {
      assertProblem(problems, file, line, new RegExp(`LIMIT must be a positive whole number, found '${value.replace('.', '\\.')}'`));
    }
  });

  test('a DEFAULT line with 2 fields is reported instead of crashing later', () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5', 'DEFAULT\tC0DEFAULT'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 5, /\[Incidents\] expected 3 TAB-separated fields.*found 2/);
  });

  test('an incident label, a hotline label or DEFAULT defined twice is reported, pointing at the first definition', () => {
    const file = writeIni(ini(
      '[Rules]', 'x\t.*\t[X]\tL\tNo',
      '[Incidents]', 'L\tC1\t5', 'DEFAULT\tC0D\t[Alert]', 'L\tC2\t5', 'DEFAULT\tC0E\t[Alert]',
      '[Hotline]', 'Hot1\tU1', 'Hot1\tU2',
    ));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 6, /label 'L' is defined twice \(first on line 4\)/);
    assertProblem(problems, file, 7, /DEFAULT is defined twice \(first on line 5\)/);
    assertProblem(problems, file, 10, /\[Hotline\] label 'Hot1' is defined twice \(first on line 9\)/);
  });

  test('a line before any section header is reported with its line', () => {
    const file = writeIni(ini('# header comment', 'stray text', '[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 2, /'stray text' is outside any section/);
  });

  test('[Hotline] and [Reminder] lines without members or hours are reported', () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5', '[Hotline]', 'Hot1', '[Reminder]', 'C0REM'));
    const problems = problemsOf(() => loadIni(file));
    assertProblem(problems, file, 6, /\[Hotline\] expected/);
    assertProblem(problems, file, 8, /\[Reminder\] expected/);
  });

  test('reverse mode without a DEFAULT line is refused by loadIni(path, { reverse: true }), at the [Incidents] line', () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    assert.equal(loadIni(file).rules.length, 1, 'the same file is fine without reverse mode');
    const problems = problemsOf(() => loadIni(file, { reverse: true }));
    assertProblem(problems, file, 3, /reverse mode needs a DEFAULT line/);
  });

  test('reverse mode without a DEFAULT line is refused by loadConfig({ path, reverse: true })', async () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const problems = await problemsOfAsync(() => loadConfig({ path: 'IMS.ini', cwd: path.dirname(file), reverse: true }));
    assertProblem(problems, 'IMS.ini', 3, /reverse mode needs a DEFAULT line/);
  });

  test('reverse mode with a DEFAULT line loads, with the DEFAULT channel and header', async () => {
    const file = writeIni(SAMPLE);
    const compiled = await loadConfig({ path: file, reverse: true });
    assert.equal(compiled.reverse, true);
    assert.deepEqual(compiled.reverseDefault, { channel: 'C0DEFAULT1', header: '[Alert]' });
    assert.ok(compiled.ownChannels.has('C0DEFAULT1'));
  });

  test('Reacji mode on an IMS.ini without [Reacji] is refused with a line-numbered problem (and does not hang)', async () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const run = await runIsolated(`
      try { await ims.loadConfig({ path: ${JSON.stringify(file)}, reacji: true }); out('loaded'); }
      catch (e) { out((e as any).problems ?? String(e)); }`);
    assert.equal(run.timedOut, false, 'loadConfig must not loop forever on a problem about a key that IMS.ini did not set');
    const problems = JSON.parse(run.stdout.trim()) as string[];
    assert.ok(Array.isArray(problems), run.stdout + run.stderr);
    assert.ok(problems.some((p) => p.startsWith(`${file}:`) && /Reacji/.test(p)), problems.join('\n'));
  });

  test('reports every malformed line with its line number at once, not just the first', () => {
    const file = writeIni(ini(
      '# all problems at once', //                                  1
      'stray line', //                                               2  outside any section
      '[Rules]', //                                                  3
      '.*Error.*  .*:.*:.*  [Error]  CHANNEL1  Hot1', //             4  spaces instead of TABs
      '.*Disk.*\t\t[Disk]\tCHANNEL1\tNo', //                          5  empty date field
      '(unclosed\t.*\t[Bad]\tCHANNEL1\tNo', //                        6  bad regex
      '.*Net.*\t.*\t[Net]\tCHANEL1\tNo', //                           7  unknown incident label
      '[Incidents]', //                                              8
      'CHANNEL1\tC025FKF3QJV\t20', //                                 9
      'CHANNEL2\tC0TWO\tten', //                                      10 bad LIMIT
      'DEFAULT\tC0DEFAULT', //                                        11 DEFAULT with 2 fields
      'CHANNEL1\tC0AGAIN\t5', //                                      12 duplicate label
      '[Hotline]', //                                                13
      'Hot1\tU1', //                                                  14
      'Hot1\tU2', //                                                  15 duplicate hotline
      '[Reminder]', //                                               16
      'C0REM\t(0[89]', //                                             17 bad hour regex
    ));
    let error: unknown;
    try { loadIni(file); } catch (e) { error = e; }
    assert.ok(error instanceof ConfigError, 'the file is refused');
    const lineOf = (p: string) => Number(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:(\\d+): `).exec(p)?.[1]);
    assert.ok(error.problems.every((p) => Number.isInteger(lineOf(p))), `every problem has a line:\n${error.problems.join('\n')}`);
    assert.deepEqual([...new Set(error.problems.map(lineOf))].sort((a, b) => a - b), [2, 4, 5, 6, 7, 10, 11, 12, 15, 17]);
    assert.equal(error.source, file);
    assert.match(error.message, new RegExp(`configuration refused \\(${error.problems.length} problems\\)`));
    for (const problem of error.problems) assert.ok(error.message.includes(problem), 'the message lists every problem');
  });

  test('loadIni on a missing file throws a ConfigError naming the file', () => {
    const missing = path.join(tmp, 'nope', 'IMS.ini');
    const problems = problemsOf(() => loadIni(missing));
    assert.equal(problems.length, 1);
    assert.match(problems[0], /cannot read the file \(ENOENT\)/);
  });

  test('loadConfig({ path }) reads an .ini through the legacy loader and names problems by the path as given', async () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', 'y\t.*\t[Y]\tNOPE\tNo', '[Incidents]', 'L\tC1\t5'), 'legacy.ini');
    const problems = await problemsOfAsync(() => loadConfig({ path: 'legacy.ini', cwd: path.dirname(file) }));
    assertProblem(problems, 'legacy.ini', 3, /unknown incident label 'NOPE'/);
    const good = writeIni(SAMPLE);
    const compiled = await loadConfig({ path: 'IMS.ini', cwd: path.dirname(good) });
    assert.equal(compiled.source, 'IMS.ini');
    assert.equal(compiled.rules.length, 3);
    assert.deepEqual([...compiled.incidents.keys()], ['CHANNEL1', 'CHANNEL2']);
  });
});

describe('loadIni inside ims.config.ts', () => {
  test('a loadIni result spread into defineConfig({ ...loadIni(p), plugins: [] }) compiles and keeps IMS.ini line numbers', () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const config = defineConfig({ ...loadIni(file), plugins: [] });
    const compiled = compileConfig(config);
    assert.equal(compiled.rules.length, 1);
    assert.deepEqual(compiled.plugins, []);
    const problems = problemsOf(() => compileConfig(config, { reverse: true }));
    assertProblem(problems, file, 3, /reverse mode needs a DEFAULT line/);
  });

  test('problems in values added by ims.config.ts are not blamed on IMS.ini lines (and do not hang)', async () => {
    const file = writeIni(ini('[Rules]', 'x\t.*\t[X]\tL\tNo', '[Incidents]', 'L\tC1\t5'));
    const run = await runIsolated(`
      const base = ims.loadIni(${JSON.stringify(file)});
      const attempt = (config: unknown) => {
        try { ims.compileConfig(config as any, { source: 'ims.config.ts' }); return ['compiled']; }
        catch (e) { return (e as any).problems ?? [String(e)]; }
      };
      out({
        prepended: attempt({ ...base, rules: [{ match: 'y', head: '[Y]', incident: 'NOPE' }, ...base.rules] }),
        typo: attempt({ ...base, timezon: 'UTC' }),
      });`);
    assert.equal(run.timedOut, false, 'compileConfig must not loop forever on a top-level key missing from the IMS.ini line map');
    const { prepended, typo } = JSON.parse(run.stdout.trim()) as { prepended: string[]; typo: string[] };
    const notFromIni = (problems: string[], pattern: RegExp) => {
      const problem = problems.find((p) => pattern.test(p));
      assert.ok(problem, `expected a problem matching ${pattern}: ${problems.join('\n')}`);
      assert.ok(!problem.startsWith(`${file}:`), `'${problem}' blames an IMS.ini line for a value written in ims.config.ts`);
      assert.ok(problem.startsWith('ims.config.ts'), `'${problem}' should name ims.config.ts`);
    };
    notFromIni(prepended, /unknown incident label 'NOPE'/);
    notFromIni(typo, /unknown key 'timezon'/);
  });
});

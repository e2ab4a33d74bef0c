/**
 * Matching runs in linear time: rules run on RE2, so no alert text, however hostile, can hold up matching;
 * a pattern RE2 cannot run is refused at load with its place, unless its rule opts in to JavaScript's
 * backtracking engine (`backtracking: true`); all opted-in rules together then get one time budget per message.
 *
 * The only timings asserted are generous bounds that tell "linear" from "hangs" (with backtracking, the hostile
 * texts below take minutes at 30 characters, forever at 40) and one budget per message from one per rule
 * (the middle of five messages, well under ten budgets).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  BACKTRACKING_BUDGET_MS, compileConfig, decide, loadConfig, matchRules, printConfig, translateRegex, validateConfig,
  ConfigError, type Config, type Rule, type SlackMessageEvent,
} from '../ims.ts';

const IMS_TS = fileURLToPath(new URL('../ims.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ims-linear-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

function folder(files: Record<string, string>): string {
  const dir = path.join(tmp, String(++dirs));
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), body);
  return dir;
}

interface Run { status: number | null; stdout: string; stderr: string; timedOut: boolean }

/** `node --import tsx ims.ts ...args` in `cwd`, as a user runs it, killed after `timeout` ms. */
function ims(args: string[], cwd: string, timeout = 60_000): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, SLACK_APP_TOKEN: '', SLACK_BOT_TOKEN: '' };
  delete env.NODE_TEST_CONTEXT;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, IMS_TS, ...args], { cwd, env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeout);
    child.on('error', reject);
    child.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr, timedOut }); });
  });
}

const show = (run: Run) => `exit ${run.status}${run.timedOut ? ' (killed: it hung)' : ''}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

/** `aaa…ab`: what makes `(a+)+$` backtrack through every way of splitting the a's. */
const hostile = (chars: number) => `${'a'.repeat(chars - 1)}b`;

/** Far above what linear matching takes on any machine, far below what backtracking takes on these texts. */
const LINEAR_BOUND_MS = 2000;

function timed<T>(work: () => T): { value: T; ms: number } {
  const start = performance.now();
  const value = work();
  return { value, ms: performance.now() - start };
}

const numberOf = (verdict: ReturnType<typeof matchRules>) => (verdict.kind === 'none' ? 0 : verdict.match.rule.number);

const incidents = { OPS: { channel: 'C0INCOPS01' } };
const rule = (match: Rule['match'], extra: Partial<Rule> = {}): Rule => ({ match, head: '[Alert]', incident: 'OPS', ...extra });

/** A warn-only logger that keeps what it was told. */
function recorder() {
  const lines: string[] = [];
  return { lines, warn: (message: string) => { lines.push(message); } };
}

describe('catastrophic patterns meet hostile texts', () => {
  const CATASTROPHIC = ['(a+)+$', '(a|a)+$', '(a|aa)+$', '(a*)*c$', '^(\\w+\\s?)*\\.$', '(.*a){20}$', '(?i)(A+)+B$'];

  test("'(a+)+$' against a 40-character 'aaa…b' finishes at once through matchRules, and a later rule still matches", () => {
    const config = compileConfig({ rules: [rule('(a+)+$'), rule('b$', { head: '[Later]' })], incidents });
    const { value, ms } = timed(() => matchRules(config.rules, hostile(40), 0, { incidents: config.incidents }));
    assert.equal(numberOf(value), 2);
    assert.ok(ms < LINEAR_BOUND_MS, `matching took ${ms.toFixed(0)} ms`);
  });

  test('every classic catastrophic pattern, on texts of 30, 1,000 and 40,000 characters, is decided in linear time by decide()', () => {
    const config = compileConfig({ rules: [...CATASTROPHIC.map((p) => rule(p)), rule('[0-9]$', { head: '[Later]' })], incidents });
    for (const chars of [30, 1000, 40_000]) {
      for (const text of [hostile(chars) + '1', `${'a'.repeat(chars)}!1`, `${'word '.repeat(chars / 5)}!1`]) {
        const event: SlackMessageEvent = { type: 'message', channel: 'C0ALERTS01', ts: '1794790396.000100', bot_id: 'B0NAGIOS1', text };
        const { value, ms } = timed(() => decide(config, event).decision);
        assert.equal(value.action, 'incident', text.slice(0, 40));
        assert.equal(value.action === 'incident' && value.match.rule.number, CATASTROPHIC.length + 1, `${chars} characters: only the last rule matches`);
        assert.ok(ms < LINEAR_BOUND_MS, `${chars} characters took ${ms.toFixed(0)} ms`);
      }
    }
  });

  test('a catastrophic pattern still matches what it should, with its named groups', () => {
    const config = compileConfig({ rules: [rule('(?P<run>(a+)+)$')], incidents });
    const verdict = matchRules(config.rules, 'xx aaaa', 0);
    assert.equal(verdict.kind, 'incident');
    assert.deepEqual(verdict.kind === 'incident' && verdict.match.groups, { run: 'aaaa' });
  });

  test("a 40-character hostile alert tested with --test against an IMS.ini holding '(a+)+$' answers at once", async () => {
    const dir = folder({ 'IMS.ini': ['[Rules]', '(a+)+$\t.*\t[Hostile]\tOPS\tNo', 'b$\t.*\t[Later]\tOPS\tNo', '[Incidents]', 'OPS\tC0INCOPS01\t5', ''].join('\n') });
    for (const text of [hostile(40), hostile(40_000)]) {
      const run = await ims(['--test', text], dir);
      assert.equal(run.timedOut, false, show(run));
      assert.equal(run.status, 0, show(run));
      assert.match(run.stdout, /rule:\s+2: 'b\$'/, show(run));
    }
  });
});

describe('patterns RE2 cannot run are refused at load', () => {
  const REFUSED: [string, RegExp][] = [
    ['(a)\\1', /uses a backreference \\1, which the linear-time engine \(RE2\) cannot run; write the group's pattern again/],
    ['(?P<x>a)\\k<x>', /uses a named backreference/],
    ['(?P<x>a)(?P=x)', /uses a named backreference/],
    ['disk(?= full)', /uses a lookahead \(\?=…\), which the linear-time engine \(RE2\) cannot run; match the text itself/],
    ['disk(?! ok)', /uses a negative lookahead \(\?!…\).*suppression rule/],
    ['(?<=host )db', /uses a lookbehind \(\?<=…\)/],
    ['(?<!test-)db', /uses a negative lookbehind \(\?<!…\)/],
    ['(?>a+)b', /uses an atomic group/],
    ['a++b', /uses a possessive quantifier \(\+\+\)/],
  ];

  test('ims.config.ts: each refusal names the rule, the construct, why, the fix and the opt-in', () => {
    for (const [pattern, why] of REFUSED) {
      const { problems } = validateConfig({ rules: [rule('fine'), rule(pattern)], incidents }, { source: 'ims.config.ts' });
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.ok(problems[0].startsWith(`ims.config.ts: rules[1].match: message regex '${pattern}' uses `), problems[0]);
      assert.match(problems[0], why);
      assert.match(problems[0], /set backtracking: true on this rule/);
    }
  });

  test('ims.config.ts: a RegExp, a date regex and a reminder hour are refused with their place too (an hour cannot opt in)', () => {
    const { problems } = validateConfig({
      rules: [rule(/(\w+) \1/), rule('ok', { when: '(?<!Sat) 0[89]:' })],
      incidents, reminders: [{ channel: 'C0REMIND01', hours: ['0[89]', '(?=1)1[0-7]'] }],
    }, { source: 'ims.config.ts' });
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems[0], /^ims\.config\.ts: rules\[0\]\.match: message regex \/\(\\w\+\) \\1\/ uses a backreference \\1/);
    assert.match(problems[1], /^ims\.config\.ts: rules\[1\]\.when: date regex '\(\?<!Sat\) 0\[89\]:' uses a negative lookbehind/);
    assert.match(problems[2], /^ims\.config\.ts: reminders\[0\]\.hours\[1\]: hour regex '\(\?=1\)1\[0-7\]' uses a lookahead/);
    assert.doesNotMatch(problems[2], /backtracking/);
  });

  test('IMS.ini: the refusal names the file and line, and says how to keep the pattern (an ims.config.ts rule)', async () => {
    const dir = folder({ 'IMS.ini': ['# rules', '[Rules]', 'PROBLEM\t.*\t[Critical]\tOPS\tNo', '(\\w+) \\1 again\t.*\t[Dup]\tOPS\tNo', 'x\t(?!Sat)\t[X]\tOPS\tNo', '[Incidents]', 'OPS\tC0INCOPS01\t5', ''].join('\n') });
    let problems: string[] = [];
    await assert.rejects(loadConfig({ path: 'IMS.ini', cwd: dir }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      problems = error.problems;
      return true;
    });
    assert.ok(problems.some((p) => /^IMS\.ini:4: message regex '\(\\w\+\) \\1 again' uses a backreference \\1, which the linear-time engine \(RE2\) cannot run; .*ims\.config\.ts with backtracking: true/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /^IMS\.ini:5: date regex '\(\?!Sat\)' uses a negative lookahead/.test(p)), problems.join('\n'));
  });

  test('IMS.ini through the CLI: --test exits 1 with the line and the reason', async () => {
    const dir = folder({ 'IMS.ini': ['[Rules]', '(a)\\1\t.*\t[Dup]\tOPS\tNo', '[Incidents]', 'OPS\tC0INCOPS01\t5', ''].join('\n') });
    const run = await ims(['--test', 'aa'], dir);
    assert.equal(run.status, 1, show(run));
    assert.match(run.stderr, /IMS\.ini:2: message regex '\(a\)\\1' uses a backreference \\1, which the linear-time engine \(RE2\) cannot run/, show(run));
  });

  test("a RegExp with the v flag is refused with its place and the fix (RE2 would read its class as another), unless the rule opts in", () => {
    // new RegExp: the project's TypeScript target predates v-flag literals.
    const v = (source: string) => new RegExp(source, 'v');
    const { problems } = validateConfig({
      rules: [rule('fine'), rule(v('[\\p{L}--[a-z]]')), rule(v('[\\p{L}&&\\p{ASCII}]'), { when: v('.') })],
      incidents, reminders: [{ channel: 'C0REMIND01', hours: [v('0[89]')] }],
    }, { source: 'ims.config.ts' });
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.match(problems[0], /^ims\.config\.ts: rules\[1\]\.match: message regex \/\[\\p\{L\}--\[a-z\]\]\/v uses the v flag \(class set operations.*\), which the linear-time engine \(RE2\) cannot run; write the class without set operations and use the u flag instead .*\[\^\\P\{L\}a-z\].*; to keep the pattern, set backtracking: true on this rule/);
    assert.match(problems[1], /^ims\.config\.ts: rules\[2\]\.match: message regex .* uses the v flag/);
    assert.match(problems[2], /^ims\.config\.ts: rules\[2\]\.when: date regex \/\.\/v uses the v flag/);
    assert.match(problems[3], /^ims\.config\.ts: reminders\[0\]\.hours\[0\]: hour regex \/0\[89\]\/v uses the v flag/);
    assert.doesNotMatch(problems[3], /backtracking/);

    // The suggested rewrite means the same on RE2; opted in, the v pattern runs as JavaScript reads it.
    const config = compileConfig({ rules: [rule(/[^\P{L}a-z]/u, { head: '[RE2]' }), rule(v('[\\p{L}--[a-z]]'), { head: '[V]', backtracking: true })], incidents });
    assert.deepEqual(['É', 'e', '1'].map((text) => numberOf(matchRules([config.rules[0]], text, 0))), [1, 0, 0]);
    assert.deepEqual(['É', 'e', '1'].map((text) => numberOf(matchRules([config.rules[1]], text, 0))), [2, 0, 0]);
    // Flags RE2 honours or that only change what exec returns are taken: i, m, s, u kept; d, g, y dropped.
    assert.equal(translateRegex(/disk/dgiy).flags.replace(/u/, ''), 'i');
    assert.ok(translateRegex(/^b/msu).test('a\nb'));
  });

  test('RE2 limits are explained: more than 1000 repetitions, an unknown POSIX class, \\C', () => {
    assert.throws(() => translateRegex('a{1001}'), /'a\{1001\}' repeats too many times \(\{1001\}\): RE2 allows at most 1000 repetitions/);
    assert.throws(() => translateRegex('(a{100}){100}'), /repeats too many times/);
    assert.throws(() => translateRegex('[[:nonsense:]]'), /unknown class \[:nonsense:\]; known: alnum/);
    assert.throws(() => translateRegex('a\\Cb'), /\\C \(any byte\)/);
  });
});

describe('RE2 syntax that JavaScript lacks now works', () => {
  test('IMS.ini patterns with mid-pattern flags, (?U), \\pN, \\Q…\\E holding / and (?< and POSIX classes match as in Go', () => {
    const config = compileConfig({
      rules: [
        rule('disk (?i:FULL) on (?P<host>[[:alnum:]-]+)'),
        rule('(?U)<(?P<tag>.+)>'),
        rule('load \\pN+%'),
        rule('\\Qhttp://x/(?<y\\E'),
      ],
      incidents,
    });
    const cases: [string, number, Record<string, string>][] = [
      ['disk full on db-01', 1, { host: 'db-01' }],
      ['DISK full on db-01', 0, {}],
      ['<a><b>', 2, { tag: 'a' }],
      ['load ٩٥%', 3, {}],
      ['see http://x/(?<y', 4, {}],
    ];
    for (const [text, number, groups] of cases) {
      const verdict = matchRules(config.rules, text, 0);
      assert.equal(numberOf(verdict), number, text);
      if (verdict.kind === 'incident') assert.deepEqual({ ...verdict.match.groups }, groups, text);
    }
  });

  test('named groups are captured from RE2 and behave as plain values (spread, JSON, assignment)', () => {
    const config = compileConfig({ rules: [rule('PROBLEM (?P<host>\\S+)/(?P<service>\\w+)(?: (?P<note>note))?')], incidents });
    const verdict = matchRules(config.rules, '** PROBLEM сервер-01/SSH is CRITICAL', 0);
    assert.equal(verdict.kind, 'incident');
    if (verdict.kind !== 'incident') return;
    assert.deepEqual({ ...verdict.match.groups }, { host: 'сервер-01', service: 'SSH', note: undefined });
    assert.equal(JSON.parse(JSON.stringify(verdict.match)).groups.host, 'сервер-01');
    verdict.match.groups = { host: 'replaced' };
    assert.deepEqual(verdict.match.groups, { host: 'replaced' });
  });

  test('texts with non-ASCII characters and lone surrogates are matched, before and after them', () => {
    const config = compileConfig({ rules: [rule('disk full on (?P<host>\\w+)$')], incidents });
    for (const text of ['🔥 disk full on db1', '\ud83d disk full on db1', 'Ünïcödé \udc00\ud800 disk full on db1']) {
      const verdict = matchRules(config.rules, text, 0);
      assert.equal(numberOf(verdict), 1, JSON.stringify(text));
      assert.equal(verdict.kind === 'incident' && verdict.match.groups.host, 'db1');
    }
  });
});

describe('a rule that opts in to backtracking', () => {
  const optedIn = (extra: Partial<Config> = {}): Config => ({
    rules: [
      rule(/^(a+)+\1$/, { head: '[Dup]', backtracking: true }),
      rule('(?P<word>\\w+) \\k<word>', { head: '[Repeated]', backtracking: true }),
      rule('b[0-9]*$', { head: '[Later]' }),
    ],
    incidents,
    ...extra,
  });

  test('runs backreferences and lookarounds on JavaScript, with named groups', () => {
    const config = compileConfig({ rules: [rule('\\b(?P<word>\\w+) \\k<word>\\b', { backtracking: true }), rule('(?<!test-)db-\\d+', { backtracking: true, when: '(?<=:)[0-5]' })], incidents });
    const first = matchRules(config.rules, 'the the disk', 0);
    assert.equal(numberOf(first), 1);
    assert.deepEqual(first.kind === 'incident' && { ...first.match.groups }, { word: 'the' });
    assert.equal(numberOf(matchRules(config.rules, 'prod db-7 down', Date.UTC(2026, 0, 1, 9, 10), { timezone: 'UTC' })), 2);
    assert.equal(numberOf(matchRules(config.rules, 'test-db-7 down', Date.UTC(2026, 0, 1, 9, 10), { timezone: 'UTC' })), 0);
    assert.equal(config.rules[0].engine, 'backtracking');
  });

  test('an overrun is stopped within the budget, logged with the rule and its place, counted as no match, and later rules still match', () => {
    const config = compileConfig(optedIn(), { source: 'ims.config.ts' });
    const log = recorder();
    const { value, ms } = timed(() => matchRules(config.rules, hostile(40), 0, { incidents: config.incidents, log }));
    assert.equal(numberOf(value), 3, 'the rule after the stopped one decides');
    assert.ok(ms < LINEAR_BOUND_MS, `took ${ms.toFixed(0)} ms`);
    const lines = log.lines.filter((line) => line.startsWith('rule 1 '));
    assert.equal(lines.length, 1, log.lines.join('\n'));
    assert.match(lines[0], new RegExp(`^rule 1 \\(ims\\.config\\.ts: rules\\[0\\]\\.match\\): the backtracking pattern /\\^\\(a\\+\\)\\+\\\\1\\$/ ran past its ${BACKTRACKING_BUDGET_MS} ms budget on a 40-character text and was stopped; counted as no match`));
  });

  test('a storm of hostile alerts writes one line per rule and minute, each alert bounded by the budget', () => {
    const config = compileConfig(optedIn(), { source: 'ims.config.ts' });
    const log = recorder();
    for (let i = 0; i < 12; i++) {
      const event: SlackMessageEvent = { type: 'message', channel: 'C0ALERTS01', ts: `${1794790396 + i}.000100`, bot_id: 'B0NAGIOS1', text: `${hostile(30 + i)}${i}` };
      const { value, ms } = timed(() => decide(config, event, { log }).decision);
      assert.equal(value.action === 'incident' && value.match.rule.number, 3);
      assert.ok(ms < LINEAR_BOUND_MS, `alert ${i} took ${ms.toFixed(0)} ms`);
    }
    assert.equal(log.lines.filter((line) => line.startsWith('rule 1 ')).length, 1, log.lines.join('\n'));
  });

  test('through the CLI: --test with an ims.config.ts that opts a catastrophic rule in prints the overrun and the later rule', async () => {
    const dir = folder({
      'package.json': '{ "type": "module" }',
      'ims.config.ts': [
        `import { defineConfig } from ${JSON.stringify(pathToFileURL(IMS_TS).href)};`,
        'export default defineConfig({',
        '  rules: [',
        "    { match: /^(a+)+\\1$/, head: '[Dup]', incident: 'OPS', backtracking: true },",
        "    { match: /(a|aa)+c$/, head: '[Hostile]', incident: 'OPS', backtracking: true },",
        "    { match: 'b$', head: '[Later]', incident: 'OPS' },",
        '  ],',
        "  incidents: { OPS: { channel: 'C0INCOPS01' } },",
        '  backtrackingBudgetMs: 3,',
        '});',
        '',
      ].join('\n'),
    });
    const run = await ims(['--test', hostile(40)], dir);
    assert.equal(run.timedOut, false, show(run));
    assert.equal(run.status, 0, show(run));
    assert.match(run.stdout, /rule:\s+3: 'b\$'/, show(run));
    assert.match(run.stderr, /rule 1 \(ims\.config\.ts: rules\[0\]\.match\): the backtracking pattern .* ran past its 3 ms budget .*so rule 2 \(ims\.config\.ts: rules\[1\]\.match\) was not run/, show(run));
  });

  test('backtracking must be true or false, a misspelling is caught, and an unneeded opt-in is warned about', () => {
    const bad = validateConfig({ rules: [rule('x', { backtracking: 'yes' as unknown as boolean }), { ...rule('y'), backtrack: true } as Rule], incidents }, { source: 'ims.config.ts' });
    assert.ok(bad.problems.some((p) => /^ims\.config\.ts: rules\[0\]\.backtracking: expected true or false, found 'yes'/.test(p)), bad.problems.join('\n'));
    assert.ok(bad.problems.some((p) => /^ims\.config\.ts: rules\[1\]\.backtrack: unknown key 'backtrack' \(did you mean 'backtracking'\?\)/.test(p)), bad.problems.join('\n'));
    const unneeded = validateConfig({ rules: [rule('disk full', { backtracking: true }), rule('(a)\\1', { backtracking: true })], incidents }, { source: 'ims.config.ts' });
    assert.deepEqual(unneeded.problems, []);
    assert.equal(unneeded.warnings.filter((w) => /backtracking/.test(w)).length, 1, unneeded.warnings.join('\n'));
    assert.match(unneeded.warnings.find((w) => /backtracking/.test(w))!, /^ims\.config\.ts: rules\[0\]\.backtracking: RE2 runs this rule's patterns as they are; remove backtracking: true/);
  });

  test('--print-config keeps the opt-in and the budget, and the printed config loads back to the same engines', () => {
    const printed = printConfig(compileConfig(optedIn({ backtrackingBudgetMs: 3 }), { source: 'ims.config.ts' }));
    assert.equal(printed.match(/backtracking: true/g)?.length, 2, printed);
    assert.match(printed, /backtrackingBudgetMs: 3/);
    const dir = folder({ 'package.json': '{ "type": "module" }', 'ims.config.ts': printed.replace(`from './ims.ts'`, `from ${JSON.stringify(pathToFileURL(IMS_TS).href)}`) });
    return loadConfig({ path: path.join(dir, 'ims.config.ts') }).then((again) => {
      assert.deepEqual(again.rules.map((r) => r.engine), ['backtracking', 'backtracking', 'linear']);
      assert.equal(again.backtrackingBudgetMs, 3);
    });
  });
});

describe('one backtracking budget per message, shared by every opted-in rule', () => {
  /** Ten opted-in rules that each backtrack without end on `aaa…b`, then an RE2 rule that matches it. */
  const tenCatastrophic = (extra: Partial<Config> = {}): Config => ({
    rules: [
      ...Array.from({ length: 10 }, (_, n) => rule(new RegExp(`(a+)+${n}$`), { head: `[Hostile ${n}]`, backtracking: true })),
      rule('b$', { head: '[Later]' }),
    ],
    incidents,
    ...extra,
  });

  /** The middle of five messages' matching times: one busy moment on a shared machine does not decide it. */
  function medianMs(config: ReturnType<typeof compileConfig>, log: ReturnType<typeof recorder>): number {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const { value, ms } = timed(() => matchRules(config.rules, hostile(41 + i), 0, { incidents: config.incidents, log, backtrackingBudgetMs: config.backtrackingBudgetMs }));
      assert.equal(numberOf(value), 11, 'the RE2 rule after the opted-in ones still decides');
      times.push(ms);
    }
    return times.sort((a, b) => a - b)[2];
  }

  test('ten catastrophic opted-in rules cost one budget per message, not ten, and a later RE2 rule still matches', () => {
    const config = compileConfig(tenCatastrophic(), { source: 'ims.config.ts' });
    assert.equal(config.backtrackingBudgetMs, BACKTRACKING_BUDGET_MS);
    const log = recorder();
    const ms = medianMs(config, log);
    // One budget is 5 ms; a budget per rule would be at least 50 ms.
    assert.ok(ms < 6 * BACKTRACKING_BUDGET_MS, `a message took ${ms.toFixed(1)} ms of matching (budget ${BACKTRACKING_BUDGET_MS} ms)`);
    // One line: the rule that was stopped, and the nine that were then not run at all.
    assert.equal(log.lines.length, 1, log.lines.join('\n'));
    assert.match(log.lines[0], new RegExp(`^rule 1 \\(ims\\.config\\.ts: rules\\[0\\]\\.match\\): the backtracking pattern /\\(a\\+\\)\\+0\\$/ ran past its ${BACKTRACKING_BUDGET_MS} ms budget on a 41-character text and was stopped`));
    assert.match(log.lines[0], /that spent the message's budget, so rule 2 \(ims\.config\.ts: rules\[1\]\.match\), rule 3 .*, rule 10 \(ims\.config\.ts: rules\[9\]\.match\) were not run and count as no match too; later RE2 rules were still tried( \(.*\))?$/);
  });

  test('backtrackingBudgetMs sets the budget, and decide() keeps to it', () => {
    const config = compileConfig(tenCatastrophic({ backtrackingBudgetMs: 2 }), { source: 'ims.config.ts' });
    assert.equal(config.backtrackingBudgetMs, 2);
    const log = recorder();
    const ms = medianMs(config, log);
    assert.ok(ms < 10 * 2, `a message took ${ms.toFixed(1)} ms of matching (budget 2 ms)`);
    const event: SlackMessageEvent = { type: 'message', channel: 'C0ALERTS01', ts: '1794790396.000100', bot_id: 'B0NAGIOS1', text: hostile(50) };
    const { value } = timed(() => decide(config, event, { log }).decision);
    assert.equal(value.action === 'incident' && value.match.rule.number, 11);
    assert.match(log.lines[0], /ran past its 2 ms budget/);
  });

  test("an opted-in when pattern that overruns spends the message's budget too, and the opted-in rules after it are not run", () => {
    const config = compileConfig({
      rules: [
        // Some 60 ms on the 23-character clock even once V8 has compiled it to machine code.
        rule('disk', { when: /^([\s\S]+)+!$/, head: '[Window]', backtracking: true }),
        rule(/(?<!test-)disk/, { head: '[Lookbehind]', backtracking: true }),
        rule('disk', { head: '[RE2]' }),
      ],
      incidents,
    }, { source: 'ims.config.ts' });
    const log = recorder();
    const verdict = matchRules(config.rules, 'disk full on db-01', Date.UTC(2026, 0, 1, 9, 10), { timezone: 'UTC', incidents: config.incidents, log });
    assert.equal(numberOf(verdict), 3);
    assert.equal(log.lines.length, 1, log.lines.join('\n'));
    assert.match(log.lines[0], /^rule 1 \(ims\.config\.ts: rules\[0\]\.when\): the backtracking pattern .* ran past its 5 ms budget on a 23-character text and was stopped; .*so rule 2 \(ims\.config\.ts: rules\[1\]\.match\) was not run and counts as no match too/);
  });

  test('cheap opted-in rules share the budget without using it up: the last of many still matches, with its named groups', () => {
    const config = compileConfig({
      rules: [
        // No literal to rule them out beforehand: each runs on every message.
        ...Array.from({ length: 20 }, (_, n) => rule(new RegExp(`(\\w)\\1{${n + 3}}`), { head: `[Run of ${n + 4}]`, backtracking: true })),
        rule('\\b(?P<word>\\w+) \\k<word>\\b', { head: '[Repeated]', backtracking: true }),
      ],
      incidents,
    });
    const log = recorder();
    for (let i = 0; i < 5; i++) {
      const verdict = matchRules(config.rules, `the the disk ${i}`, 0, { incidents: config.incidents, log });
      assert.equal(numberOf(verdict), 21);
      assert.deepEqual(verdict.kind === 'incident' && { ...verdict.match.groups }, { word: 'the' });
    }
    assert.deepEqual(log.lines, []);
  });

  test('backtrackingBudgetMs must be a number of milliseconds above 0 and at most 100, and a misspelling is caught', () => {
    for (const bad of [0, -1, 101, Number.NaN, '5ms', '5']) {
      const { problems } = validateConfig({ ...tenCatastrophic(), backtrackingBudgetMs: bad as number }, { source: 'ims.config.ts' });
      assert.equal(problems.length, 1, `${String(bad)}: ${problems.join('\n')}`);
      assert.match(problems[0], /^ims\.config\.ts: backtrackingBudgetMs: expected a number of milliseconds above 0 and at most 100 \(the time all backtracking: true rules together may take on one message; default 5\), found /);
    }
    const misspelt = validateConfig({ ...tenCatastrophic(), backtrackingBudget: 2 } as Config, { source: 'ims.config.ts' });
    assert.ok(misspelt.problems.some((p) => /^ims\.config\.ts: backtrackingBudget: unknown key 'backtrackingBudget' \(did you mean 'backtrackingBudgetMs'\?\)/.test(p)), misspelt.problems.join('\n'));
    assert.deepEqual(validateConfig({ ...tenCatastrophic(), backtrackingBudgetMs: 0.5 }).problems, []);
  });
});

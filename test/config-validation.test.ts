/**
 * Validation of TS/JS/JSON configs (`validateConfig`, `compileConfig`) and discovery (`loadConfig`):
 * every problem has a place (`ims.config.ts: rules[1].incidnet: …`), misspellings get a hint, nothing
 * crashes with a TypeError, and a misspelt key in ims.config.ts already fails type-checking.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  validateConfig, compileConfig, loadConfig, definePlugin, ConfigError, type Config,
} from '../ims.ts';
import { pin } from '../plugins/pin.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IMS_URL = pathToFileURL(path.join(ROOT, 'ims.ts')).href;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ims-config-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

/** A fresh folder with the given files; returns its path. */
function folder(files: Record<string, string>): string {
  const dir = path.join(tmp, String(++dirs));
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), body);
  }
  return dir;
}

/** A small valid config to break one piece at a time. */
function base(): Config {
  return {
    rules: [
      { match: /disk full/i, head: '[Disk]', incident: 'INFRA', hotline: 'Hot1' },
      { match: '(?i)error', when: ' 1[0-2]:', head: '[Error]', incident: 'APPS' },
    ],
    incidents: { INFRA: { channel: 'C0INFRA' }, APPS: { channel: 'C0APPS', limit: 50 } },
    hotlines: { Hot1: ['U0ONCALL', 'here'] },
    report: { channel: 'C0REPORT' },
  };
}

/** `validateConfig` on a variant of `base()`; returns the problems. */
function problemsWith(patch: (config: Record<string, any>) => void, options: Parameters<typeof validateConfig>[1] = {}): string[] {
  const config = base() as unknown as Record<string, any>;
  patch(config);
  return validateConfig(config as Config, { source: 'ims.config.ts', ...options }).problems;
}

function assertProblem(problems: string[], prefix: string, pattern: RegExp): void {
  assert.ok(problems.some((p) => p.startsWith(prefix) && pattern.test(p)),
    `expected a problem starting with '${prefix}' matching ${pattern}; got:\n  ${problems.join('\n  ') || '(none)'}`);
}

async function loadProblems(options: Parameters<typeof loadConfig>[0]): Promise<string[]> {
  try {
    await loadConfig(options);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${(error as Error)?.stack ?? error}`);
    return error.problems;
  }
  assert.fail('expected loadConfig to refuse the configuration');
}

const configTs = (body: string) => `import { defineConfig } from ${JSON.stringify(IMS_URL)};\n\nexport default defineConfig(${body});\n`;

describe('unknown keys', () => {
  test('an unknown rule key is reported with its path rules[1].incidnet and a did-you-mean hint', () => {
    const problems = problemsWith((c) => { c.rules[1] = { match: 'x', head: '[X]', incidnet: 'APPS' }; });
    assertProblem(problems, 'ims.config.ts: rules[1].incidnet: ', /unknown key 'incidnet' \(did you mean 'incident'\?\)/);
  });

  test('an unknown top-level key is reported with a did-you-mean hint (timezon → timezone)', () => {
    const problems = problemsWith((c) => { c.timezon = 'UTC'; });
    assert.deepEqual(problems.length, 1);
    assertProblem(problems, 'ims.config.ts: timezon: ', /unknown key 'timezon' \(did you mean 'timezone'\?\); expected one of rules, incidents/);
  });

  test('unknown keys inside incidents, report, reverseDefault, reacji, reminders and state are reported with their paths', () => {
    const problems = problemsWith((c) => {
      c.incidents.APPS.chanel = 'C9';
      c.report.shedule = '0 9 * * *';
      c.reverseDefault = { channel: 'C0DEF', headr: '[Alert]', header: '[Alert]' };
      c.reacji = { reaction: 'fast_forward', bots: [], bot: [] };
      c.reminders = [{ channel: 'C0REM', hours: ['09'], hour: ['10'] }];
      c.state = { pth: 'x.db' };
    });
    assertProblem(problems, 'ims.config.ts: incidents.APPS.chanel: ', /did you mean 'channel'/);
    assertProblem(problems, 'ims.config.ts: report.shedule: ', /did you mean 'schedule'/);
    assertProblem(problems, 'ims.config.ts: reverseDefault.headr: ', /did you mean 'header'/);
    assertProblem(problems, 'ims.config.ts: reacji.bot: ', /did you mean 'bots'/);
    assertProblem(problems, 'ims.config.ts: reminders[0].hour: ', /did you mean 'hours'/);
    assertProblem(problems, 'ims.config.ts: state.pth: ', /did you mean 'path'/);
  });

  test('an unknown key that resembles nothing gets no did-you-mean hint', () => {
    const problems = problemsWith((c) => { c.frobnicate = true; });
    assert.equal(problems.length, 1);
    assert.match(problems[0], /unknown key 'frobnicate'; expected one of/);
    assert.doesNotMatch(problems[0], /did you mean/);
  });
});

describe('wrong types', () => {
  test('a value of the wrong type is reported with its path and what was found', () => {
    const cases: [(c: Record<string, any>) => void, string, RegExp][] = [
      [(c) => { c.rules = 'x'; }, 'rules: ', /expected a list of rules, found 'x'/],
      [(c) => { c.incidents = []; }, 'incidents: ', /expected an object/],
      [(c) => { c.incidents.APPS.channel = 42; }, 'incidents.APPS.channel: ', /expected a channel ID or name, found 42/],
      [(c) => { c.incidents.APPS.limit = 0; }, 'incidents.APPS.limit: ', /expected a positive whole number, found 0/],
      [(c) => { c.rules[0].match = 42; }, 'rules[0].match: ', /expected message regex \(a string or RegExp\), found 42/],
      [(c) => { c.rules[0].match = ''; }, 'rules[0].match: ', /message regex is empty/],
      [(c) => { delete c.rules[0].head; }, 'rules[0].head: ', /expected a head such as '\[Error\]', found nothing/],
      [(c) => { c.rules[0].suppress = 'yes'; }, 'rules[0].suppress: ', /expected true or false, found 'yes'/],
      [(c) => { c.rules[1].when = 7; }, 'rules[1].when: ', /expected date regex/],
      [(c) => { c.rules[0] = 'disk'; }, 'rules[0]: ', /expected a rule object/],
      [(c) => { c.resolvedReactions = 'white_check_mark'; }, 'resolvedReactions: ', /expected a non-empty list of reaction names/],
      [(c) => { c.resolvedReactions = []; }, 'resolvedReactions: ', /expected a non-empty list/],
      [(c) => { c.seenReaction = 'not a reaction!'; }, 'seenReaction: ', /expected a reaction name/],
      [(c) => { c.posters = 'U1'; }, 'posters: ', /expected a list of user IDs/],
      [(c) => { c.hotlines = { Hot1: [] }; }, 'hotlines.Hot1: ', /expected a non-empty list of members/],
      [(c) => { c.hotlines = ['U1']; }, 'hotlines: ', /expected an object of label → members/],
      [(c) => { c.hookTimeoutMs = -1; }, 'hookTimeoutMs: ', /expected a positive number of milliseconds/],
      [(c) => { c.attachmentText = 'json'; }, 'attachmentText: ', /expected 'readable' or 'legacy-json'/],
      [(c) => { c.report.everyHours = 0; }, 'report.everyHours: ', /expected a positive number of hours/],
      [(c) => { c.report.channel = ''; }, 'report.channel: ', /expected a channel ID or name/],
      [(c) => { c.timezone = 5; }, 'timezone: ', /expected an IANA time zone/],
      [(c) => { c.plugins = pin(); }, 'plugins: ', /expected a list of plugins/],
    ];
    for (const [patch, at, pattern] of cases) assertProblem(problemsWith(patch), `ims.config.ts: ${at}`, pattern);
  });

  test('reminders that is not a list is reported as a problem, not thrown as a TypeError', () => {
    const problems = problemsWith((c) => { c.reminders = 'C0REMIND'; });
    assertProblem(problems, 'ims.config.ts: reminders', /expected/);
    const objectProblems = problemsWith((c) => { c.reminders = { channel: 'C0REMIND', hours: ['09'] }; });
    assertProblem(objectProblems, 'ims.config.ts: reminders', /expected/);
  });

  test('report or state that is not an object is reported, not silently ignored', () => {
    assertProblem(problemsWith((c) => { c.report = 'C0REPORT'; }), 'ims.config.ts: report', /expected/);
    assertProblem(problemsWith((c) => { c.state = 'ims.db'; }), 'ims.config.ts: state', /expected/);
  });

  test('a rule hotline that is not a string is reported, not compiled into the rule', () => {
    assertProblem(problemsWith((c) => { c.rules[0].hotline = 5; }), 'ims.config.ts: rules[0].hotline', /expected/);
    assertProblem(problemsWith((c) => { c.rules[0].hotline = ['Hot1']; }), 'ims.config.ts: rules[0].hotline', /expected/);
  });

  test('non-boolean reverse, reacjiMode and report.verbose are reported, not silently treated as false', () => {
    assertProblem(problemsWith((c) => { c.reverse = 'yes'; c.reverseDefault = { channel: 'C0DEF', header: '[Alert]' }; }), 'ims.config.ts: reverse', /true or false/);
    assertProblem(problemsWith((c) => { c.reacjiMode = 'true'; c.reacji = { reaction: 'fast_forward', bots: ['B1'] }; }), 'ims.config.ts: reacjiMode', /true or false/);
    assertProblem(problemsWith((c) => { c.report.verbose = 'yes'; }), 'ims.config.ts: report.verbose', /true or false/);
  });

  test('report.onlyPosters and reacji.bots given as a string instead of a list are reported, not split into letters', () => {
    assertProblem(problemsWith((c) => { c.report.onlyPosters = 'U0BOSS'; }), 'ims.config.ts: report.onlyPosters', /expected a list/);
    assertProblem(problemsWith((c) => { c.reacji = { reaction: 'fast_forward', bots: 'B0REACJI' }; }), 'ims.config.ts: reacji', /list/);
  });

  test('a non-string state.path is reported as a problem, not thrown as a TypeError', () => {
    assertProblem(problemsWith((c) => { c.state = { path: 5 }; }), 'ims.config.ts: state.path', /expected/);
  });

  test('a config that is not an object (null, a list) is reported as a problem, not thrown as a TypeError', () => {
    for (const config of [null, undefined, [], 'rules']) {
      const { problems, compiled } = validateConfig(config as unknown as Config, { source: 'ims.config.ts' });
      assert.equal(compiled, undefined);
      assertProblem(problems, 'ims.config.ts', /expected the config to be an object/);
      const unnamed = validateConfig(config as unknown as Config);
      assertProblem(unnamed.problems, 'config', /expected the config to be an object/);
      assert.throws(() => compileConfig(config as unknown as Config), ConfigError);
    }
  });
});

describe('references and values', () => {
  test('a rule naming an unknown hotline is reported with a did-you-mean hint and the known hotlines', () => {
    const problems = problemsWith((c) => { c.rules[0].hotline = 'Hto1'; });
    assertProblem(problems, 'ims.config.ts: rules[0].hotline: ', /unknown hotline 'Hto1' \(did you mean 'Hot1'\?\).*known: Hot1/);
  });

  test('a rule naming an unknown incident label is reported with a did-you-mean hint', () => {
    const problems = problemsWith((c) => { c.rules[1].incident = 'APP'; });
    assertProblem(problems, 'ims.config.ts: rules[1].incident: ', /unknown incident label 'APP' \(did you mean 'APPS'\?\)/);
  });

  test('a bad timezone is reported; IANA zones such as Asia/Tokyo and UTC are accepted', () => {
    assertProblem(problemsWith((c) => { c.timezone = 'Mars/Olympus_Mons'; }), 'ims.config.ts: timezone: ', /expected an IANA time zone such as 'Europe\/Oslo' or 'UTC', found 'Mars\/Olympus_Mons'/);
    for (const zone of ['Asia/Tokyo', 'UTC', 'Europe/Oslo', 'America/Argentina/Buenos_Aires']) {
      assert.deepEqual(problemsWith((c) => { c.timezone = zone; }), [], zone);
    }
  });

  test('a bad cron in report.schedule is reported; 5- and 6-field expressions are accepted', () => {
    for (const bad of ['every morning', '61 9 * * *', '0 9 * *']) {
      assertProblem(problemsWith((c) => { c.report.schedule = bad; }), 'ims.config.ts: report.schedule: ', new RegExp(`expected a cron expression.*found '${bad.replace(/\*/g, '\\*')}'`));
    }
    for (const good of ['0 9 * * 1-5', '30 0 9 * * *', '*/15 * * * *']) {
      const { problems, compiled } = validateConfig({ ...base(), report: { channel: 'C0REPORT', schedule: good } });
      assert.deepEqual(problems, [], good);
      assert.equal(compiled?.report.schedule, good);
    }
  });

  test('bad durations are reported with their paths; 30s, 15m, 24h, 7d and milliseconds are accepted', () => {
    const problems = problemsWith((c) => {
      c.report.window = '7 days';
      c.reminderInterval = 0;
      c.state = { catchUpWindow: 'soon' };
    });
    assertProblem(problems, 'ims.config.ts: report.window: ', /expected a duration such as '30s', '24h', '7d' or milliseconds, found '7 days'/);
    assertProblem(problems, 'ims.config.ts: reminderInterval: ', /expected a duration.*found 0/);
    assertProblem(problems, 'ims.config.ts: state.catchUpWindow: ', /expected a duration.*found 'soon'/);
    assertProblem(problemsWith((c) => { c.report.window = -5; }), 'ims.config.ts: report.window: ', /found -5/);

    const compiled = compileConfig({ ...base(), report: { window: '7d' }, reminderInterval: '30s', state: { catchUpWindow: '15m' } });
    assert.equal(compiled.report.windowMs, 7 * 24 * 3600_000);
    assert.equal(compiled.reminderIntervalMs, 30_000);
    assert.equal(compiled.state.catchUpWindowMs, 15 * 60_000);
    assert.equal(compileConfig({ ...base(), report: { window: '24h' }, reminderInterval: 1500 }).reminderIntervalMs, 1500);
    assert.equal(compileConfig({ ...base(), report: { window: '24h' } }).report.windowMs, 24 * 3600_000);
  });

  test('reverse mode without reverseDefault and Reacji mode without reacji are refused', () => {
    assertProblem(problemsWith(() => {}, { reverse: true }), 'ims.config.ts: incidents: ', /reverse mode needs a DEFAULT line/);
    assertProblem(problemsWith((c) => { c.reverse = true; }), 'ims.config.ts: incidents: ', /reverse mode needs a DEFAULT line/);
    assertProblem(problemsWith(() => {}, { reacji: true }), 'ims.config.ts: reacji: ', /Reacji mode needs/);
    const compiled = compileConfig({ ...base(), reverseDefault: { channel: 'C0DEF', header: '[Alert]' } }, { reverse: true });
    assert.equal(compiled.reverse, true);
  });

  test('every problem is reported at once; compileConfig throws them all in one ConfigError', () => {
    const config = base() as unknown as Record<string, any>;
    config.rules[0].hotline = 'Hto1';
    config.rules[1].incidnet = 'APPS';
    config.timezone = 'Nowhere/Land';
    config.report.schedule = 'daily';
    config.report.window = 'a week';
    const { problems, compiled } = validateConfig(config as Config, { source: 'ims.config.ts' });
    assert.equal(compiled, undefined);
    assert.equal(problems.length, 5, problems.join('\n'));
    assert.throws(() => compileConfig(config as Config, { source: 'ims.config.ts' }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, problems);
      assert.equal(error.source, 'ims.config.ts');
      assert.match(error.message, /^ims\.config\.ts: configuration refused \(5 problems\):\n {2}ims\.config\.ts: /);
      return true;
    });
  });
});

describe('plugins', () => {
  test('a plugin with an unknown hook key is reported with a did-you-mean hint', () => {
    const problems = problemsWith((c) => { c.plugins = [pin(), { name: 'audit', onMach() {} }]; });
    assertProblem(problems, 'ims.config.ts: plugins[1].onMach: ', /plugin 'audit' has an unknown key 'onMach' \(did you mean 'onMatch'\?\); hooks are onStart/);
  });

  test('a plugin factory passed uncalled (pin instead of pin()) is reported with the fix', () => {
    const problems = problemsWith((c) => { c.plugins = [pin]; });
    assertProblem(problems, 'ims.config.ts: plugins[0]: ', /found a function; did you forget to call the factory, e\.g\. pin\(\) instead of pin\?/);
  });

  test('a plugin hook that is not a function, or a plugin without a name, is reported', () => {
    assertProblem(problemsWith((c) => { c.plugins = [{ name: 'x', onMatch: 'yes' }]; }), 'ims.config.ts: plugins[0].onMatch: ', /must be a function/);
    assertProblem(problemsWith((c) => { c.plugins = [{ onMatch() {} }]; }), 'ims.config.ts: plugins[0]: ', /expected a plugin object with a name/);
  });

  test('definePlugin objects and called factories are accepted and kept in order', () => {
    const audit = definePlugin({ name: 'audit', onMatch() {}, onResolve: async () => {} });
    const compiled = compileConfig({ ...base(), plugins: [pin(), audit] });
    assert.deepEqual(compiled.plugins.map((p) => p.name), ['pin', 'audit']);
  });
});

describe('compiled defaults', () => {
  test('a minimal config compiles with the documented defaults', () => {
    const compiled = compileConfig({ rules: [{ match: 'x', head: '[X]', incident: 'A' }], incidents: { A: { channel: 'C1' } } }, { source: path.join(tmp, 'ims.config.ts') });
    assert.deepEqual(compiled.resolvedReactions, ['white_check_mark']);
    assert.equal(compiled.seenReaction, 'white_check_mark');
    assert.equal(compiled.attachmentText, 'readable');
    assert.equal(compiled.hookTimeoutMs, 10_000);
    assert.equal(compiled.report.windowMs, 7 * 24 * 3600_000);
    assert.equal(compiled.reminderIntervalMs, 30_000);
    assert.equal(compiled.state.catchUpWindowMs, 24 * 3600_000);
    assert.equal(compiled.state.path, path.join(tmp, 'ims.db'), 'the database sits beside the config file');
    assert.equal(compiled.posters, null);
    assert.equal(compiled.reverse, false);
    assert.equal(compiled.reacjiMode, false);
    assert.deepEqual(compiled.plugins, []);
  });

  test('seenReaction defaults to the first resolved reaction and can be set apart', () => {
    assert.equal(compileConfig({ ...base(), resolvedReactions: ['heavy_check_mark', 'white_check_mark'] }).seenReaction, 'heavy_check_mark');
    assert.equal(compileConfig({ ...base(), seenReaction: 'eyes' }).seenReaction, 'eyes');
  });

  test('IMS never watches the channels it posts into: incident, report and DEFAULT channels', () => {
    const compiled = compileConfig({ ...base(), reverseDefault: { channel: 'C0DEF', header: '[Alert]' } });
    assert.deepEqual([...compiled.ownChannels].sort(), ['C0APPS', 'C0DEF', 'C0INFRA', 'C0REPORT']);
  });
});

describe('loadConfig discovery', () => {
  test('finds ims.config.ts in the folder and loads it through defineConfig', async () => {
    const dir = folder({
      'ims.config.ts': configTs(`{
  timezone: 'Asia/Tokyo',
  rules: [
    { match: /disk full/i, head: '[Disk]', incident: 'INFRA', hotline: 'Hot1' },
    { match: '(?i)error', head: '[Error]', incident: 'INFRA' },
  ],
  incidents: { INFRA: { channel: 'C0INFRA' } },
  hotlines: { Hot1: ['here'] },
}`),
    });
    const compiled = await loadConfig({ cwd: dir });
    assert.equal(compiled.source, 'ims.config.ts');
    assert.equal(compiled.timezone, 'Asia/Tokyo');
    assert.equal(compiled.rules.length, 2);
    assert.ok(compiled.rules[1].match.test('ERROR here'));
    assert.equal(compiled.state.path, path.join(dir, 'ims.db'));
  });

  test('reports problems in a discovered ims.config.ts with the file name and path', async () => {
    const dir = folder({
      'ims.config.ts': configTs(`{
  rules: [
    { match: 'x', head: '[X]', incident: 'A' },
    { match: 'y', head: '[Y]', incidnet: 'A' },
  ],
  incidents: { A: { channel: 'C1' } },
} as any`),
    });
    const problems = await loadProblems({ cwd: dir });
    assertProblem(problems, 'ims.config.ts: rules[1].incidnet: ', /did you mean 'incident'/);
  });

  test('finds .imsrc.json', async () => {
    const dir = folder({ '.imsrc.json': JSON.stringify({ rules: [{ match: '(?i)disk', head: '[Disk]', incident: 'A' }], incidents: { A: { channel: 'C1' } } }) });
    const compiled = await loadConfig({ cwd: dir });
    assert.equal(compiled.source, '.imsrc.json');
    assert.ok(compiled.rules[0].match.test('DISK'));
  });

  test('finds the "ims" key in package.json', async () => {
    const dir = folder({ 'package.json': JSON.stringify({ name: 'ops', ims: { rules: [{ match: 'disk', head: '[Disk]', incident: 'A' }], incidents: { A: { channel: 'C1' } } } }) });
    const compiled = await loadConfig({ cwd: dir });
    assert.equal(compiled.source, 'package.json');
    assert.equal(compiled.rules[0].head, '[Disk]');
  });

  test('finds an IMS.ini by search and reports its problems as IMS.ini:LINE:', async () => {
    const good = folder({ 'IMS.ini': '[Rules]\ndisk\t.*\t[Disk]\tA\tNo\n[Incidents]\nA\tC1\t5\n' });
    const compiled = await loadConfig({ cwd: good });
    assert.equal(compiled.source, 'IMS.ini');
    assert.equal(compiled.rules[0].head, '[Disk]');
    const bad = folder({ 'IMS.ini': '[Rules]\ndisk\t.*\t[Disk]\tA\tNo\ndisk  .*  [Disk]  A  No\n[Incidents]\nA\tC1\tmany\n' });
    const problems = await loadProblems({ cwd: bad });
    assertProblem(problems, 'IMS.ini:3: ', /expected 5 TAB-separated fields/);
    assertProblem(problems, 'IMS.ini:5: ', /LIMIT must be a positive whole number/);
  });

  test('a package.json without an "ims" key does not stop the search', async () => {
    const dir = folder({ 'package.json': JSON.stringify({ name: 'ops', type: 'module' }), 'IMS.ini': '[Rules]\ndisk\t.*\t[Disk]\tA\tNo\n[Incidents]\nA\tC1\t5\n' });
    const compiled = await loadConfig({ cwd: dir });
    assert.equal(compiled.source, 'IMS.ini');
  });

  test('an ims.config.ts wins over an IMS.ini in the same folder', async () => {
    const dir = folder({
      'IMS.ini': '[Rules]\nlegacy\t.*\t[Legacy]\tA\tNo\n[Incidents]\nA\tC1\t5\n',
      'ims.config.ts': configTs(`{ rules: [{ match: 'modern', head: '[Modern]', incident: 'A' }], incidents: { A: { channel: 'C1' } } }`),
    });
    const compiled = await loadConfig({ cwd: dir });
    assert.equal(compiled.source, 'ims.config.ts');
    assert.equal(compiled.rules[0].head, '[Modern]');
  });

  test('an empty folder is refused with a message saying what to create', async () => {
    const dir = folder({});
    const problems = await loadProblems({ cwd: dir });
    assert.equal(problems.length, 1);
    assert.match(problems[0], /no configuration found in .*; create ims\.config\.ts .* or pass --config PATH/);
  });
});

describe('loadConfig with an explicit path (--config)', () => {
  test('--config X.ini goes through the legacy loader, with problems named by the path as given', async () => {
    const dir = folder({
      'legacy/X.ini': '[Rules]\ndisk\t.*\t[Disk]\tA\tHot1\n[Incidents]\nA\tC1\t5\n[Hotline]\nHot1\there\n',
      'legacy/broken.ini': '[Rules]\ndisk\t.*\t[Disk]\tB\tNo\n[Incidents]\nA\tC1\t5\n',
    });
    const compiled = await loadConfig({ cwd: dir, path: 'legacy/X.ini' });
    assert.equal(compiled.source, 'legacy/X.ini');
    assert.equal(compiled.rules[0].hotline, 'Hot1');
    assert.equal(compiled.state.path, path.join(dir, 'legacy', 'ims.db'));
    const problems = await loadProblems({ cwd: dir, path: 'legacy/broken.ini' });
    assertProblem(problems, 'legacy/broken.ini:2: ', /unknown incident label 'B'/);
  });

  test('--config accepts .json and .ts files and refuses a missing or unparsable one', async () => {
    const dir = folder({
      'ims.json': JSON.stringify({ rules: [{ match: 'a', head: '[A]', incident: 'A' }], incidents: { A: { channel: 'C1' } } }),
      'other.config.ts': configTs(`{ rules: [{ match: /b/, head: '[B]', incident: 'A' }], incidents: { A: { channel: 'C1' } } }`),
      'broken.json': '{ "rules": [',
    });
    assert.equal((await loadConfig({ cwd: dir, path: 'ims.json' })).rules[0].head, '[A]');
    assert.equal((await loadConfig({ cwd: dir, path: 'other.config.ts' })).rules[0].head, '[B]');
    assert.match((await loadProblems({ cwd: dir, path: 'missing.ts' }))[0], /does not exist/);
    assert.match((await loadProblems({ cwd: dir, path: 'broken.json' }))[0], /not valid JSON/);
  });
});

describe('type-checking ims.config.ts', () => {
  let tsc: { code: number | null; output: string; diagnostics: string[] };
  before(async () => {
    const imsPath = JSON.stringify(path.join(ROOT, 'ims.ts'));
    const dir = folder({
      'package.json': JSON.stringify({ type: 'module' }),
      'tsconfig.json': JSON.stringify({
        extends: path.join(ROOT, 'tsconfig.json'),
        compilerOptions: { typeRoots: [path.join(ROOT, 'node_modules', '@types')] },
        include: ['*.ts'],
      }),
      'typo.ts': `import { defineConfig } from ${imsPath};\nexport default defineConfig({ rules: [], incidents: {}, timezon: 'UTC' });\n`,
      'rule-typo.ts': `import { defineConfig } from ${imsPath};\n` +
        `export default defineConfig({ rules: [{ match: 'x', head: '[X]', incident: 'A', hotlnie: 'Hot1' }], incidents: { A: { channel: 'C1' } } });\n`,
      'incident-typo.ts': `import { defineConfig } from ${imsPath};\n` +
        `export default defineConfig({ rules: [], incidents: { A: { channel: 'C1', limt: 5 } } });\n`,
      'plugin-typo.ts': `import { definePlugin } from ${imsPath};\nexport const audit = definePlugin({ name: 'audit', onMach() {} });\n`,
      'ok.ts': `import { defineConfig, definePlugin } from ${imsPath};\n` +
        `export default defineConfig({ rules: [{ match: 'x', head: '[X]', incident: 'A', hotline: 'Hot1' }], incidents: { A: { channel: 'C1', limit: 5 } }, ` +
        `hotlines: { Hot1: ['here'] }, timezone: 'UTC', plugins: [definePlugin({ name: 'audit', onMatch() {} })] });\n`,
    });
    tsc = await new Promise((resolve, reject) => {
      const child = spawn('npx', ['tsc', '--noEmit', '--pretty', 'true', '-p', path.join(dir, 'tsconfig.json')], { cwd: ROOT, env: { ...process.env, FORCE_COLOR: '0' } });
      let output = '';
      child.stdout.on('data', (chunk) => { output += chunk; });
      child.stderr.on('data', (chunk) => { output += chunk; });
      const timer = setTimeout(() => child.kill(), 30_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        output = output.replace(/\x1b\[[0-9;]*m/g, '');
        resolve({ code, output, diagnostics: output.split('\n').filter((line) => /error TS\d+/.test(line)) });
      });
    });
  });

  test('a misspelt top-level key in defineConfig (timezon) fails tsc, naming the key; the correct spelling passes', () => {
    assert.notEqual(tsc.code, 0, 'tsc must fail');
    assert.ok(tsc.diagnostics.some((line) => line.includes('typo.ts:2:') && !line.includes('-typo.ts')), tsc.output);
    assert.match(tsc.output, /'timezon'/, 'the diagnostic names the misspelt key (the source excerpt alone does not count: it has no quotes)');
    assert.ok(!tsc.diagnostics.some((line) => line.includes('ok.ts')), `the correct spelling must pass:\n${tsc.output}`);
  });

  test('a misspelt hook name in definePlugin (onMach) fails tsc', () => {
    assert.ok(tsc.diagnostics.some((line) => line.includes('plugin-typo.ts:2:')), tsc.output);
    assert.match(tsc.output, /'onMach'/);
  });

  test('a misspelt optional key inside a rule (hotlnie) or an incident (limt) fails tsc too', () => {
    assert.ok(tsc.diagnostics.some((line) => line.includes('rule-typo.ts:2:') && /hotlnie/.test(line)),
      `defineConfig must reject rules[0].hotlnie at type level:\n${tsc.output}`);
    assert.ok(tsc.diagnostics.some((line) => line.includes('incident-typo.ts:2:') && /limt/.test(line)),
      `defineConfig must reject incidents.A.limt at type level:\n${tsc.output}`);
  });
});

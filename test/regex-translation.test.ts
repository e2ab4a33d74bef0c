/**
 * Go/RE2 regexes (as IMS.ini users wrote them) translated to JavaScript by `translateRegex`, and compiled
 * once, at load: matching never builds a RegExp.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { translateRegex, translateToJavaScript, compileConfig, matchRules, decide, type Config, type SlackMessageEvent } from '../ims.ts';

const t = (pattern: string) => translateRegex(pattern);

function refused(pattern: string, message: RegExp): void {
  assert.throws(() => translateRegex(pattern), (error: unknown) => {
    assert.ok(error instanceof Error);
    assert.match(error.message, message);
    return true;
  });
}

describe('inline flags', () => {
  test('a leading (?i) makes the match case-insensitive', () => {
    const re = t('(?i)disk full');
    assert.ok(re.flags.includes('i'));
    assert.ok(re.test('DISK FULL on db-1'));
    assert.equal(re.source, 'disk full');
  });

  test('a leading (?s) lets . match newlines', () => {
    assert.ok(t('(?s)PROBLEM.*CRITICAL').test('PROBLEM\nHost: db-1\nState: CRITICAL'));
    assert.ok(!t('PROBLEM.*CRITICAL').test('PROBLEM\nState: CRITICAL'), 'without (?s), . stops at a newline as in RE2');
  });

  test('a leading (?m) makes ^ and $ match at line starts and ends', () => {
    assert.ok(t('(?m)^State: CRITICAL$').test('Host: db-1\nState: CRITICAL\nInfo: x'));
    assert.ok(!t('^State: CRITICAL$').test('Host: db-1\nState: CRITICAL\nInfo: x'));
  });

  test('combined flags (?is) and repeated leading groups (?i)(?s) both apply', () => {
    for (const pattern of ['(?is)problem.*critical', '(?i)(?s)problem.*critical', '(?si)problem.*critical']) {
      const re = t(pattern);
      assert.ok(re.flags.includes('i') && re.flags.includes('s'), pattern);
      assert.ok(re.test('PROBLEM\nstate: Critical'), pattern);
    }
  });

  // RE2 runs the rules: flags in the middle of a pattern and (?U), which JavaScript lacks, work as in Go.
  test('flags set in the middle of a pattern apply from there on, as in RE2', () => {
    assert.ok(t('disk(?i)full').test('diskFULL'));
    assert.ok(!t('disk(?i)full').test('DISKfull'));
    assert.ok(t('(?i:disk) full').test('DISK full'));
    assert.ok(!t('(?i:disk) full').test('DISK FULL'));
    assert.ok(t('a|(?s:b.c)').test('b\nc'));
    assert.ok(!t('a|b.c').test('b\nc'));
  });

  test('(?U) (ungreedy) makes repetitions take as little as they can, as in RE2', () => {
    assert.equal(t('(?U)a+').exec('aaa')?.[0], 'a');
    assert.equal(t('(?iU)a+').exec('AAA')?.[0], 'A');
    assert.equal(t('(?U)a+?').exec('aaa')?.[0], 'aaa');
  });

  test('the JavaScript translation (for rules that opt in to backtracking) still refuses what JavaScript lacks', () => {
    assert.throws(() => translateToJavaScript('disk(?i)full'), /'disk\(\?i\)full' sets flags inside the pattern.*put them at the very start, e\.g\. \(\?i\)/);
    assert.throws(() => translateToJavaScript('(?U)a+'), /'\(\?U\)a\+' uses the flag \(\?U\), which JavaScript has no equivalent for; only i, s and m are supported/);
    assert.equal(translateToJavaScript('(?i)(?P<h>x)\\1').exec('XX')?.groups?.h, 'X');
  });
});

describe('RE2 syntax', () => {
  test('(?P<host>…) becomes a named group usable in matchRules(...).match.groups', () => {
    const re = t('(?i)host (?P<host>[a-z]+-\\d+) is (?P<state>DOWN|UP)');
    assert.equal(re.exec('Host db-01 is DOWN')?.groups?.host, 'db-01');
    const compiled = compileConfig({
      rules: [{ match: '.*PROBLEM.*(?P<host>app-\\d+)/(?P<service>\\w+).*', head: '[Critical]', incident: 'INFRA' }],
      incidents: { INFRA: { channel: 'C0INFRA' } },
    });
    const verdict = matchRules(compiled.rules, '** PROBLEM Service Alert: app-01/SSH is CRITICAL **', 0);
    assert.equal(verdict.kind, 'incident');
    assert.deepEqual(verdict.kind === 'incident' && verdict.match.groups, { host: 'app-01', service: 'SSH' });
  });

  test('(?<name>…) (the newer RE2 spelling) and non-capturing (?:…) groups pass through', () => {
    assert.equal(t('(?<host>db-\\d+)').exec('on db-7')?.groups?.host, 'db-7');
    assert.ok(t('(?:disk|inode)s? full').test('inodes full'));
  });

  test('\\A and \\z anchor at the start and end of the whole text, even with (?m)', () => {
    const re = t('\\APROBLEM');
    assert.ok(re.test('PROBLEM: x'));
    assert.ok(!re.test('x PROBLEM'));
    const end = t('(?m)CRITICAL\\z');
    assert.ok(end.test('a\nstate CRITICAL'));
    assert.ok(!end.test('state CRITICAL\nmore'), '\\z is the end of the text, not of a line');
    assert.ok(!t('(?m)\\Ab').test('a\nb'), '\\A is the start of the text, not of a line');
  });

  test('\\Q…\\E matches its content literally', () => {
    const re = t('\\Q[FIRING:1] a.b*c (x)\\E done');
    assert.ok(re.test('alert [FIRING:1] a.b*c (x) done'));
    assert.ok(!re.test('alert [FIRING:1] aXbbbc (x) done'));
    assert.ok(t('cost \\Q$5+\\E').test('cost $5+'));
    assert.ok(t('\\Qunterminated.*').test('unterminated.*'), 'a \\Q without \\E runs to the end, as in RE2');
  });

  test('\\Q…\\E with a hyphen still compiles when the pattern also uses \\p{…} (Unicode mode)', () => {
    const re = t('\\p{Lu}+ \\Qeu-west-1\\E');
    assert.ok(re.test('DOWN eu-west-1'), `${re} must match 'DOWN eu-west-1'`);
  });

  test('POSIX classes such as [[:alpha:]] and [[:digit:]]+ are translated', () => {
    assert.ok(t('^[[:alpha:]]+$').test('Disk'));
    assert.ok(!t('^[[:alpha:]]+$').test('Disk1'));
    assert.equal(t('load [[:digit:]]+').exec('load 95 percent')?.[0], 'load 95');
    assert.ok(t('[[:upper:][:digit:]_]+').test('DB_01'));
    assert.ok(t('[^[:space:]]+').test('x'));
    refused('[[:nonsense:]]', /unknown class \[:nonsense:\]/);
  });

  test('\\x{41} (RE2 hex escape) matches the character it names', () => {
    const re = t('\\x{41}BC');
    assert.ok(re.test('ABC'), `${re} must match 'ABC'`);
    assert.ok(!re.test('x'.repeat(41) + 'BC'), `${re} must not read x{41} as 'x' 41 times`);
  });

  test('a bad regex is refused with a message that includes the pattern', () => {
    refused('(unclosed', /'\(unclosed' does not compile: .*/);
    refused('[a-', /'\[a-' does not compile/);
    refused('disk\\', /'disk\\' does not compile: it ends with a lone backslash/);
    refused('a\\Cb', /\\C/);
  });

  test('a RegExp keeps its source and flags on RE2', () => {
    const re = translateRegex(/disk (?<what>full)/i);
    assert.ok(re instanceof RegExp);
    assert.equal(re.source, 'disk (?<what>full)');
    assert.ok(re.flags.includes('i'));
    assert.equal(re.exec('DISK FULL')?.groups?.what, 'FULL');
    assert.ok(translateRegex(/a[^]b/).test('a\nb'), "JavaScript's [^] is any character");
  });
});

describe('compiled once, at load', () => {
  const config: Config = {
    timezone: 'UTC',
    rules: [
      { match: '(?i).*backup.*', when: '!.* 0[1-4]:', head: '[Backup]', incident: 'INFRA' },
      { match: '.*PROBLEM .*(?P<state>CRITICAL|DOWN).*', head: '[Critical]', incident: 'INFRA' },
      { match: /\[FIRING:\d+\].*critical/, head: '[Critical]', incident: 'APPS' },
      { match: '(?i)error|fatal|exception', when: /Mon|Tue|Wed|Thu|Fri/, head: '[Error]', incident: 'APPS' },
      { match: '[[:alpha:]]+-[[:digit:]]+ .*disk', head: '[Disk]', incident: 'INFRA' },
    ],
    incidents: { INFRA: { channel: 'C0INFRA' }, APPS: { channel: 'C0APPS' } },
  };

  test('compileConfig returns RegExp objects for every rule, window and reminder hour', () => {
    const compiled = compileConfig({ ...config, reminders: [{ channel: 'C0REM', hours: ['0[89]', /1[0-7]/] }] });
    for (const rule of compiled.rules) {
      assert.ok(rule.match instanceof RegExp);
      assert.ok(rule.test instanceof RegExp);
      if (rule.source.when !== undefined) assert.ok(rule.when instanceof RegExp);
    }
    assert.ok(compiled.reminders[0].hours.every((h) => h instanceof RegExp));
    assert.equal(compiled.rules[0].suppress, true);
  });

  test('the fast test form gives the same yes/no answer as the full regex', () => {
    const compiled = compileConfig(config);
    const texts = ['backup done', 'PROBLEM host is CRITICAL', '[FIRING:2] x critical', 'fatal: oom', 'db-01 /var disk 95%', 'nothing', 'Error\nsecond line'];
    for (const rule of compiled.rules) {
      for (const text of texts) assert.equal(rule.test.test(text), rule.match.test(text), `rule ${rule.number} on '${text}'`);
    }
  });

  test('matching many messages with matchRules and decide constructs no RegExp', () => {
    const compiled = compileConfig(config);
    const texts = ['nightly backup failed', 'PROBLEM app-01/SSH is CRITICAL', '[FIRING:1] HighErrorRate critical',
      'NullPointerException in checkout', 'db-01 /var disk 95%', 'all good', '&lt;!channel&gt; error'];
    const events: SlackMessageEvent[] = texts.map((text, i) => ({ type: 'message', channel: 'C0ALERTS', ts: `${1794790396 + i * 3607}.000100`, bot_id: 'B0NAGIOS1', text }));
    // Warm the per-zone clock formatter first: it is created once, lazily.
    matchRules(compiled.rules, 'error', Date.UTC(2026, 10, 16, 9), { timezone: 'UTC' });
    const Original = globalThis.RegExp;
    let constructed = 0;
    globalThis.RegExp = new Proxy(Original, {
      construct(target, args, newTarget) { constructed++; return Reflect.construct(target, args, newTarget); },
      apply(target, thisArg, args) { constructed++; return Reflect.apply(target, thisArg, args); },
    });
    let incidents = 0;
    try {
      for (let i = 0; i < 2000; i++) {
        const text = texts[i % texts.length];
        if (matchRules(compiled.rules, text, Date.UTC(2026, 10, 16, i % 24, i % 60), { timezone: 'UTC', incidents: compiled.incidents }).kind === 'incident') incidents++;
        if (decide(compiled, events[i % events.length]).decision.action === 'incident') incidents++;
      }
    } finally {
      globalThis.RegExp = Original;
    }
    assert.equal(globalThis.RegExp, Original, 'RegExp restored');
    assert.ok(incidents > 0, 'the loop did match');
    assert.equal(constructed, 0, `matching built ${constructed} RegExp objects`);
  });

  test('a RegExp rule with the g flag matches every message, not every other one (no lastIndex state)', () => {
    const compiled = compileConfig({ rules: [{ match: /disk/g, when: /:/g, head: '[Disk]', incident: 'A' }], incidents: { A: { channel: 'C1' } } });
    const verdicts = ['disk disk', 'disk full', 'disk x', 'disk disk disk', 'disk'].map((text) => matchRules(compiled.rules, text, 0).kind);
    assert.deepEqual(verdicts, ['incident', 'incident', 'incident', 'incident', 'incident']);
  });
});

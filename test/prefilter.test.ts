import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileConfig, matchRules, messageText, readRecording, requiredLiterals, translateRegex, translateToJavaScript, type CompiledRule } from '../ims.ts';
import { ruleSet } from './bench.ts';

/** The engine without its prefilter: every rule's regex, in order. */
function naiveVerdict(rules: readonly CompiledRule[], text: string): number {
  for (const rule of rules) if (rule.match.test(text)) return rule.number;
  return 0;
}

test('the literal prefilter never changes which rule matches, over the recorded corpus and 1,000 rules', () => {
  const config = compileConfig({ ...ruleSet(1000), rules: ruleSet(1000).rules.map(({ when: _when, suppress: _s, ...rule }) => rule) }, { source: 'bench' });
  let compared = 0;
  for (const event of readRecording('examples/alerts.jsonl')) {
    const text = messageText(event);
    const verdict = matchRules(config.rules, text, 0);
    assert.equal(verdict.kind === 'none' ? 0 : verdict.match.rule.number, naiveVerdict(config.rules, text), text.slice(0, 80));
    compared++;
  }
  assert.ok(compared > 400);
});

test('required literals are only what every match must contain', () => {
  const cases: [string, string[] | undefined][] = [
    ['.*PROBLEM [^:]*: x', ['PROBLEM ']],
    ['(?i)error|fatal|exception', ['error', 'fatal', 'exception']],
    ['colou?r', ['colo']],
    ['ab?c', undefined],
    ['a\\x41bc', ['bc']],
    ['\\p{Lu}+ xyz', [' xyz']],
    ['(?P<a>x)\\d+yy', ['yy']],
    ['x\\.y', ['x.y']],
    ['foo|.*', undefined],
    // RE2 syntax, as RE2 reads it.
    ['[[:alpha:]]+-\\d+ disk', [' disk']],
    ['[]a]bc', ['bc']],
    ['\\Qa.b\\E+ x', ['a.b']],
    ['\\x{41}bc', ['bc']],
    ['\\pLxyz', ['xyz']],
    ['ab(?i)cdef', ['cdef']],
  ];
  for (const [pattern, expected] of cases) assert.deepEqual(requiredLiterals(translateRegex(pattern)), expected, pattern);
  // A rule that opted in to backtracking has JavaScript syntax, backreferences included.
  assert.deepEqual(requiredLiterals(translateToJavaScript('(?P<a>x)\\k<a>yy')), ['yy']);
});

test('case-insensitive and Unicode texts are never filtered out wrongly', () => {
  const config = compileConfig({
    rules: [
      { match: '(?i)disk full', head: '[A]', incident: 'X' },
      { match: 'ERROR', head: '[B]', incident: 'X' },
      { match: 'サーバー停止', head: '[C]', incident: 'X' },
      { match: /straße/iu, head: '[D]', incident: 'X' },
    ],
    incidents: { X: { channel: 'C0X' } },
  });
  const expectations: [string, number][] = [
    ['DISK FULL on nfs-01', 1], ['Disk Full', 1], ['an ERROR', 2], ['an error', 0], ['本番 サーバー停止 です', 3], ['STRASSE', 0], ['Straße closed', 4], ['İ disk full', 1],
    // RE2 folds ſ (long s) to s and K (Kelvin sign) to k: the prefilter must not rule them out.
    ['diſk full', 1], ['DIſK FULL', 1],
  ];
  for (const [text, number] of expectations) {
    const verdict = matchRules(config.rules, text, 0);
    assert.equal(verdict.kind === 'none' ? 0 : verdict.match.rule.number, number, text);
    assert.equal(naiveVerdict(config.rules, text), number, text);
  }
});

test('the rule clock agrees with Intl for random instants in zones with DST, half-hour and 45-minute offsets', async () => {
  const { ruleClock } = await import('../ims.ts');
  const zones = ['Europe/Oslo', 'America/New_York', 'Australia/Lord_Howe', 'Asia/Kathmandu', 'Pacific/Chatham', 'UTC'];
  const reference = (ms: number, timeZone: string) => {
    const parts: Record<string, string> = {};
    for (const p of new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', weekday: 'short' }).formatToParts(new Date(ms))) parts[p.type] = p.value;
    return `${parts.year}/${parts.month}/${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${parts.weekday}`;
  };
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 20_000; i++) {
    const ms = Date.UTC(2020, 0, 1) + Math.floor(random() * 8 * 365 * 86_400_000);
    const zone = zones[i % zones.length];
    assert.equal(ruleClock(ms, zone), reference(ms, zone), `${new Date(ms).toISOString()} in ${zone}`);
  }
});

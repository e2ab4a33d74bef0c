/**
 * Silences, the pure part: durations as people type them, what a silence matches, maintenance windows compiled
 * from the config (with every refusal naming its place) and which of them are open at an instant.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileConfig, validateConfig } from '../ims.ts';
import { localInstant, nextOpenings, openWindows, parseMatcher, parseSilenceDuration, silenceMatches } from '../ims-silences.ts';
import { baseConfig } from './harness.ts';

test('silence durations read as people type them, from one minute to ninety days', () => {
  assert.equal(parseSilenceDuration('30m'), 30 * 60_000);
  assert.equal(parseSilenceDuration('2h'), 2 * 3600_000);
  assert.equal(parseSilenceDuration('1d'), 86_400_000);
  assert.equal(parseSilenceDuration('1h30m'), 90 * 60_000);
  assert.equal(parseSilenceDuration(' 2D12H '), 60 * 3600_000);
  assert.equal(parseSilenceDuration('1w'), 7 * 86_400_000);
  for (const refused of ['', 'forever', '30', '-1h', '2 hours', '10s', '91d', '1h;DROP']) assert.equal(parseSilenceDuration(refused), undefined, refused);
});

test('what a silence matches is read as a rule head, a regex, everything, a known label, or else a correlation key', () => {
  const labels = new Set(['INFRA', 'APPS']);
  assert.deepEqual(parseMatcher('[Warn]', labels), { matcher: { kind: 'head', head: '[Warn]' } });
  assert.deepEqual(parseMatcher('/db-0[1-3]/i', labels), { matcher: { kind: 'regex', source: 'db-0[1-3]', ignoreCase: true } });
  assert.deepEqual(parseMatcher('*', labels), { matcher: { kind: 'everything' } });
  assert.deepEqual(parseMatcher('INFRA', labels), { matcher: { kind: 'label', label: 'INFRA' } });
  assert.deepEqual(parseMatcher('alertmanager:HighCPU:web-1', labels), { matcher: { kind: 'key', key: 'alertmanager:HighCPU:web-1' } });
  assert.match((parseMatcher('/(a)\\1/', labels) as { problem: string }).problem, /refused/, 'a backreference is refused (RE2: linear time)');
  assert.match((parseMatcher('/x/g', labels) as { problem: string }).problem, /only flag .* is i/);
  assert.match((parseMatcher('  ', labels) as { problem: string }).problem, /expected what to silence/);
});

test('a silence matches by head, label, key, text key or regex, and a catastrophic regex runs in linear time', () => {
  const subject = { head: '[Warn]', label: 'APPS', keys: ['k1', 'k2'], textKey: 'disk full on <host>', text: 'WARN disk full on web-03' };
  assert.ok(silenceMatches({ kind: 'head', head: '[Warn]' }, subject));
  assert.ok(!silenceMatches({ kind: 'head', head: '[Error]' }, subject));
  assert.ok(silenceMatches({ kind: 'label', label: 'APPS' }, subject));
  assert.ok(silenceMatches({ kind: 'key', key: 'k2' }, subject));
  assert.ok(!silenceMatches({ kind: 'key', key: 'k3' }, subject));
  assert.ok(silenceMatches({ kind: 'text', key: 'disk full on <host>', title: 'disk full' }, subject));
  assert.ok(silenceMatches({ kind: 'regex', source: 'web-0[1-3]', ignoreCase: false }, subject));
  assert.ok(!silenceMatches({ kind: 'regex', source: 'WEB-03', ignoreCase: false }, subject));
  assert.ok(silenceMatches({ kind: 'regex', source: 'WEB-03', ignoreCase: true }, subject));
  const started = performance.now();
  assert.ok(!silenceMatches({ kind: 'regex', source: '(a+)+$', ignoreCase: false }, { ...subject, text: `${'a'.repeat(40_000)}b` }) || true);
  assert.ok(performance.now() - started < 1000, 'RE2 takes a catastrophic pattern in linear time');
});

test('local times of maintenance windows are read in the config time zone, across a DST change', () => {
  assert.equal(localInstant('2026-12-24 18:00', 'Europe/Oslo'), Date.parse('2026-12-24T17:00:00Z'));
  assert.equal(localInstant('2026-07-01T08:30', 'Europe/Oslo'), Date.parse('2026-07-01T06:30:00Z'));
  assert.equal(localInstant('2026-03-29 12:00', 'Europe/Oslo'), Date.parse('2026-03-29T10:00:00Z'), 'the day summer time begins');
  assert.equal(localInstant('2026-12-24T18:00:00Z', 'Europe/Oslo'), Date.parse('2026-12-24T18:00:00Z'), 'an ISO instant keeps its own offset');
  assert.equal(localInstant('2026-02-30 10:00', 'UTC'), undefined);
  assert.equal(localInstant('next tuesday', 'UTC'), undefined);
});

test('a recurring window is open from each cron time for its duration, and a fixed one between from and to', () => {
  const { interactive } = compileConfig(baseConfig({
    timezone: 'UTC',
    maintenance: [
      { name: 'nightly', match: '[Backup]', schedule: '0 2 * * *', duration: '1h' },
      { name: 'upgrade', match: '/db-0[1-3]/', from: '2026-12-24 18:00', to: '2026-12-25 08:00', reason: 'db upgrade' },
    ],
  }));
  const at = (iso: string) => openWindows(interactive.maintenance, Date.parse(iso), 'UTC').map((o) => o.window.name);
  assert.deepEqual(at('2026-12-01T02:30:00Z'), ['nightly']);
  assert.deepEqual(at('2026-12-01T03:00:00Z'), [], 'closed at the end of its hour');
  assert.deepEqual(at('2026-12-01T01:59:00Z'), []);
  assert.deepEqual(at('2026-12-24T20:00:00Z'), ['upgrade']);
  assert.deepEqual(at('2026-12-25T02:10:00Z'), ['nightly', 'upgrade']);
  const [opening] = openWindows(interactive.maintenance, Date.parse('2026-12-01T02:30:00Z'), 'UTC');
  assert.equal(opening.startsAt, Date.parse('2026-12-01T02:00:00Z'));
  assert.equal(opening.endsAt, Date.parse('2026-12-01T03:00:00Z'));
  assert.equal(opening.key, `nightly@${Date.parse('2026-12-01T02:00:00Z')}`, 'an opening is named by its window and start: kept once');
  const next = nextOpenings(interactive.maintenance, Date.parse('2026-12-01T12:00:00Z'), 'UTC');
  assert.deepEqual(next.map((o) => [o.window.name, new Date(o.startsAt).toISOString()]), [['nightly', '2026-12-02T02:00:00.000Z'], ['upgrade', '2026-12-24T18:00:00.000Z']]);
});

test('bad buttons, admins, permissions and maintenance windows are refused at start-up, each with its place and what was expected', () => {
  const { problems } = validateConfig(baseConfig({
    buttons: 'yes' as never,
    admins: ['U0ADMIN', 42] as never,
    permissions: { resolve: 'anyone', silense: 'admins' } as never,
    maintenance: [
      { name: 'a', schedule: '0 2 * * *' } as never,
      { name: 'b', schedule: 'at two', duration: '1h' },
      { name: 'c', from: '2026-12-25 08:00', to: '2026-12-24 18:00' },
      { name: 'd', from: '2026-12-24', schedule: '0 2 * * *', duration: '1h' } as never,
      { name: 'e', match: '/(a)\\1/', schedule: '0 2 * * *', duration: '1h' },
      { name: 'a', schedule: '0 3 * * *', duration: '1h' },
      { schedule: '0 3 * * *', duration: '1h' } as never,
    ],
  }), { source: 'ims.config.ts' });
  const expect = (pattern: RegExp) => assert.ok(problems.some((p) => pattern.test(p)), `a problem like ${pattern}:\n${problems.join('\n')}`);
  expect(/^ims\.config\.ts: buttons: expected true or false, found 'yes'/);
  expect(/^ims\.config\.ts: admins: expected a list of user IDs or names and user groups/);
  expect(/^ims\.config\.ts: permissions\.resolve: expected 'everyone' or 'own' or 'admins', found 'anyone'/);
  expect(/^ims\.config\.ts: permissions\.silense: unknown key 'silense' \(did you mean 'silence'\?\)/);
  expect(/^ims\.config\.ts: maintenance\[0\]\.duration: expected how long each opening lasts/);
  expect(/^ims\.config\.ts: maintenance\[1\]\.schedule: expected a cron expression such as '0 2 \* \* 6', found 'at two'/);
  expect(/^ims\.config\.ts: maintenance\[2\]\.to: the window ends .* before it starts/);
  expect(/^ims\.config\.ts: maintenance\[3\]: expected either schedule \+ duration .* found both/);
  expect(/^ims\.config\.ts: maintenance\[4\]\.match: the regex .* is refused/);
  expect(/^ims\.config\.ts: maintenance\[5\]\.name: the name 'a' is used by an earlier window/);
  expect(/^ims\.config\.ts: maintenance\[6\]\.name: expected a name for the window/);
});

test('without the interactive keys, buttons are on, everyone is an admin, and resolving is for one\'s own incidents', () => {
  const { interactive } = compileConfig(baseConfig());
  assert.deepEqual(interactive, { buttons: true, admins: [], permissions: { acknowledge: 'everyone', resolve: 'own', silence: 'admins' }, maintenance: [], timezone: 'UTC' });
});

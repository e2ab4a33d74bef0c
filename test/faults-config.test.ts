/**
 * The fault suite, configuration: the real bot process watches its config file, and production edits it
 * while alerts flow — an editor leaves it empty or half-written mid-save, a wrong file lands in its place,
 * a regex does not compile. Each broken state is refused while the last good config keeps handling every
 * alert; the fixed file is then taken. Every scenario ends with: nothing lost, nothing twice, no
 * unintended mention, still working.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { INC_APPS, INC_INFRA, ONCALL, guardSocketModeShutdownBug, tempDir } from './harness.ts';
import { Alerts, RELOADED, RELOAD_REFUSED, SEEN, assertSurvived, fakeSlack, startBot, suiteConfig, waitHandled, writeConfigAndWait, type Alert, type BotRun } from './faults.ts';
import type { FakeSlack } from './fake-slack.ts';

guardSocketModeShutdownBug();

/** Bytes no config is made of: a PNG header, NULs, a terminal escape sequence. */
const BINARY = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x1b, 0x5b, 0x32, 0x4a, 0x07, 0xff, 0xfe, 0x00, 0x5b, 0x52, 0x75, 0x6c, 0x65, 0x73, 0x5d, 0x0a, 0x00, 0x01, 0x02]);

/** A WARN alert: only seen under the first config, an incident in APPS once the fixed one (with a WARN rule) is taken. */
const warn = (m: string) => `WARN ${m} queue depth 12000 on mq-02`;

/** One alert of each fate, and a WARN alert that the current config only marks seen. */
async function oneOfEach(fake: FakeSlack, alerts: Alerts, run: BotRun): Promise<void> {
  const posted: Alert[] = [alerts.post('incident'), alerts.post('page'), alerts.post('seen'), alerts.post('seen', { text: warn })];
  await waitHandled(fake, posted, run);
}

/** Break the config in each of `broken`'s ways, checking each is refused and the last good one keeps working; then fix it. */
async function breakAndFix(fake: FakeSlack, run: BotRun, file: string, broken: [string, string | Buffer][], fixed: string): Promise<Alerts> {
  const alerts = new Alerts(fake);
  await oneOfEach(fake, alerts, run);
  for (const [what, content] of broken) {
    await writeConfigAndWait(run, file, content, RELOAD_REFUSED, RELOADED, `the refusal of ${what}`);
    await alerts.burst(10);
    await oneOfEach(fake, alerts, run);
  }
  await writeConfigAndWait(run, file, fixed, RELOADED, RELOAD_REFUSED, 'the reload of the fixed config');
  alerts.post('incident', { text: warn });
  await alerts.burst(10);
  return alerts;
}

function assertNothingDumped(run: BotRun): void {
  const dumped = run.stderr().split('\n').find((line) => /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(line));
  assert.equal(dumped, undefined, `no control characters from the binary file reached the terminal: ${JSON.stringify(dumped)}`);
}

const INI = `# IMS.ini
[Rules]
CRITICAL\t.*\t[Critical]\tINFRA\tOnCall
ERROR\t.*\t[Error]\tAPPS\tNo

[Incidents]
INFRA\t${INC_INFRA}\t200
APPS\t${INC_APPS}\t200

[Label]
${SEEN}

[Hotline]
OnCall\t${ONCALL}
`;

test('an IMS.ini broken mid-run (empty, comment-only, half-written, binary, a bad regex) is refused each time while the last good rules keep handling every alert, and the fixed file is taken', async (t) => {
  const fake = await fakeSlack(t);
  const dir = tempDir();
  const file = path.join(dir, 'IMS.ini');
  writeFileSync(file, INI);
  const run = await startBot(t, fake, file);
  const alerts = await breakAndFix(fake, run, file, [
    ['an empty file', ''],
    ['a comment-only file', '# IMS.ini, being rewritten\n; nothing here yet\n'],
    ['a file cut inside [Incidents]', INI.slice(0, INI.indexOf('[Incidents]') + 6)],
    ['a file cut before [Incidents]', INI.slice(0, INI.indexOf('[Incidents]'))],
    ['a binary file', BINARY],
    ['a regex that does not compile', INI.replace('[Rules]\n', '[Rules]\n(unclosed\t.*\t[Bad]\tAPPS\tNo\n')],
    ['a backreference the linear-time engine cannot run', INI.replace('[Rules]\n', '[Rules]\n(\\w+) \\1\t.*\t[Twice]\tAPPS\tNo\n')],
  ], INI.replace('[Rules]\n', '[Rules]\nWARN\t.*\t[Warn]\tAPPS\tNo\n'));
  await assertSurvived(fake, alerts, run);
  assertNothingDumped(run);
});

test('a JSON config broken mid-run (empty, half-written, binary, no rules, no incidents, a bad regex) is refused each time while the last good rules keep handling every alert, and the fixed file is taken', async (t) => {
  const fake = await fakeSlack(t);
  const dir = tempDir();
  const file = path.join(dir, 'ims.json');
  const db = path.join(dir, 'ims.db');
  const good = JSON.stringify(suiteConfig(db), null, 2);
  writeFileSync(file, good);
  const run = await startBot(t, fake, file);
  const withRules = (rules: unknown[], extra: Record<string, unknown> = {}) => JSON.stringify({ ...suiteConfig(db), rules, ...extra }, null, 2);
  const goodRules = suiteConfig(db).rules as unknown[];
  const alerts = await breakAndFix(fake, run, file, [
    ['an empty file', ''],
    ['a half-written file', good.slice(0, Math.floor(good.length / 2))],
    ['a binary file', BINARY],
    ['a config without rules', withRules([])],
    ['a config without incidents', withRules(goodRules, { incidents: {} })],
    ['a regex that does not compile', withRules([{ match: '(unclosed', head: '[Bad]', incident: 'APPS' }, ...goodRules])],
  ], withRules([{ match: 'WARN', head: '[Warn]', incident: 'APPS' }, ...goodRules]));
  await assertSurvived(fake, alerts, run);
  assertNothingDumped(run);
});

/**
 * Alert lifecycles on the command line, run as a user runs it: `--test` says which recogniser read the text and
 * the key and state it found, `--replay` shows each message's step and the posts and pages against one incident
 * per message, and `--print-config` writes the lifecycle settings out.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDir } from './harness.ts';

const IMS_TS = fileURLToPath(new URL('../ims.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');

function ims(args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, SLACK_APP_TOKEN: '', SLACK_BOT_TOKEN: '' };
  delete env.NODE_TEST_CONTEXT;
  return spawnSync(process.execPath, ['--import', TSX, IMS_TS, ...args], { cwd, env, encoding: 'utf8', timeout: 30_000 });
}

const CONFIG = `export default {
  timezone: 'UTC',
  rules: [
    { match: 'CRITICAL|DOWN', head: '[Critical]', incident: 'INFRA', hotline: 'OnCall' },
    { match: '(?P<host>\\\\S+) disk (?:FULL|OK)', key: '{host}', resolves: 'disk OK', head: '[Disk]', incident: 'INFRA' },
  ],
  incidents: { INFRA: { channel: 'C0INCINFRA' } },
  hotlines: { OnCall: ['U0ONCALL01'] },
  lifecycle: { flapping: { changes: 3, within: '1h', stableFor: '30m' } },
};
`;

const nagios = (kind: 'PROBLEM' | 'RECOVERY', host: string, service: string, state: string) =>
  `** ${kind} Service Alert: ${host}/${service} is ${state} **\nNotification Type: ${kind}\nHost: ${host}\nService: ${service}\nState: ${state}\nInfo: check`;

function folder(): string {
  const dir = path.join(tempDir(), 'cli');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'ims.config.mjs'), CONFIG);
  return dir;
}

test('--test names the recogniser, the key and the state it read, or the rule key, or the normalised text', () => {
  const dir = folder();
  const recognised = ims(['--test', nagios('RECOVERY', 'web-03', 'HTTP', 'OK')], dir);
  assert.equal(recognised.status, 0, recognised.stderr);
  assert.match(recognised.stdout, /^ {2}alert: {4}nagios:web-03\/HTTP resolved — read by the nagios recogniser$/m);
  const keyed = ims(['--test', 'db-01 disk FULL (97%)'], dir);
  assert.match(keyed.stdout, /^ {2}alert: {4}rule 2:db-01 firing — read by the rule's key$/m);
  const text = ims(['--test', 'Backup job 7 is CRITICAL since 10:02:11'], dir);
  assert.match(text.stdout, /^ {2}alert: {4}text:backup job 7 is critical since <time> firing — read by its normalised text$/m);
  const nothing = ims(['--test', 'all quiet'], dir);
  assert.match(nothing.stdout, /^ {2}alert: {4}not an alert any recogniser or rule key reads$/m);
  // The legacy lines stay first, as scripts read them.
  assert.equal(recognised.stdout.split('\n')[0], 'this message exclude rules..');
});

test('--replay shows each message\'s lifecycle step and the posts and pages against one incident per message', () => {
  const dir = folder();
  const t0 = 1_794_800_000;
  const lines = [
    [0, nagios('PROBLEM', 'web-03', 'HTTP', 'CRITICAL')],
    [300, nagios('PROBLEM', 'web-03', 'HTTP', 'CRITICAL')],
    [600, nagios('PROBLEM', 'db-01', 'Disk', 'CRITICAL')],
    [900, nagios('RECOVERY', 'web-03', 'HTTP', 'OK')],
    [1200, nagios('PROBLEM', 'web-03', 'HTTP', 'CRITICAL')],
    [1500, 'db-02 disk FULL (91%)'],
    [1800, 'db-02 disk OK (40%)'],
    [2100, nagios('RECOVERY', 'mq-01', 'Disk', 'OK')],
  ].map(([offset, text]) => JSON.stringify({ type: 'message', subtype: 'bot_message', channel: 'C0ALERTS01', bot_id: 'B0NAGIOS1', username: 'Nagios', text, ts: `${t0 + Number(offset)}.000100` }));
  writeFileSync(path.join(dir, 'day.jsonl'), `${lines.join('\n')}\n`);
  const run = ims(['--replay', 'day.jsonl'], dir);
  assert.equal(run.status, 0, run.stderr);
  const steps = run.stdout.split('\n').filter((line) => line.includes('C0ALERTS01')).map((line) => /\[([^\]]+)\]  "/.exec(line)?.[1]);
  assert.deepEqual(steps, [
    'opens #1 nagios:web-03/HTTP', 'repeat of #1', 'opens #2 nagios:db-01/Disk', 'recovery resolves #1', 'reopens #1',
    'opens #3 rule 2:db-02', 'recovery resolves #3', 'seen: a recovery of nothing open',
  ]);
  assert.match(run.stdout, /incidents opened: 3 \(one per message: 6\); still open at the end: 2/);
  assert.match(run.stdout, /posts: 3 \(one per message: 6\), plus 4 edits in place and 1 thread notes/);
  assert.match(run.stdout, /pages: 2 \(one per message: 4\)/);
  assert.match(run.stdout, /nagios:web-03\/HTTP +3 +1 +1 +1/);
});

test('--print-config writes the lifecycle settings out: in full for ims.config.ts, enabled: false for IMS.ini', () => {
  const dir = folder();
  const modern = ims(['--print-config'], dir);
  assert.equal(modern.status, 0, modern.stderr);
  assert.match(modern.stdout, /lifecycle: \{\n\s+enabled: true,\n\s+repeatNoteEvery: '30m',\n\s+reopenWithin: '1h',\n\s+pageOnReopen: false,\n\s+flapping: \{ changes: 3, within: '1h', stableFor: '30m' \},?\n/);
  writeFileSync(path.join(dir, 'IMS.ini'), '[Rules]\nCRITICAL\t.*\t[Critical]\tINFRA\tNo\n\n[Incidents]\nINFRA\tC0INCINFRA\t10\n');
  const legacy = ims(['--config', 'IMS.ini', '--print-config'], dir);
  assert.equal(legacy.status, 0, legacy.stderr);
  assert.match(legacy.stdout, /lifecycle: \{ enabled: false \}/);
});

/**
 * `npm run demo` (examples/demo.ts): the fake Slack and the real bot process with the example config, the
 * example alerts, a resolution and a report, printed readably — and everything stopped afterwards.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('the demo shows the incidents, the resolution and the report Slack received, then stops everything and exits 0', async (t) => {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(SLACK_|IMS_|NODE_TEST)/.test(key))) as Record<string, string>;
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'examples', 'demo.ts')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8'); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 55_000);
  const code = await exited;
  clearTimeout(timer);
  assert.equal(code, 0, `exit 0\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  // The incidents, as Slack shows them: channel names, labels, the poster's name, readable links, the page.
  assert.match(stdout, /━━━ #inc-infra/);
  assert.match(stdout, /━━━ #inc-apps/);
  assert.match(stdout, /\*\[Nagios\]\* \*\* PROBLEM Service Alert: app-01\/SSH is CRITICAL \*\*/);
  assert.match(stdout, /from #alerts-infra · Nagios · .* · original alert \(https:\/\/fake\.slack\.com\/archives\/C0ALERTS01\/p\d+\)/);
  assert.match(stdout, /Hotline OnCallInfra\*: @oncall-infra @here/);
  assert.match(stdout, /Triggered: \[P2\] Kafka consumer lag on events-consumer \(https:\/\/app\.datadoghq\.com\/monitors\//, 'a title link shown readably');
  assert.match(stdout, /thread repl(y|ies), the rest of the alert/, 'the stack trace continues in the thread');
  // What happened to the alerts: reposted, marked seen, or ignored.
  assert.match(stdout, /→ reposted by IMS to #inc-infra/);
  assert.match(stdout, /reaction :white_check_mark: by IMS/);
  assert.match(stdout, /\(not for IMS: ignored\)/);
  assert.match(stdout, /rule 5 \[Nagios\] .* matched → incident in C0INCINFRA, paging OnCallInfra/, 'the decisions');
  // The resolution and the report.
  assert.match(stdout, /reaction :white_check_mark: by Kenji Sato/);
  assert.match(stdout, /━━━ #ims-report/);
  assert.match(stdout, /IMS report \d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d: \d+ open incidents/);
  assert.match(stdout, /NG \d+m {2}\*\[/);
  assert.match(stdout, /OK \d+m {2}\*\[Nagios\]\*.*resolved by Kenji Sato/);
  assert.ok(!/xoxb-demo|xapp-demo/.test(stdout + stderr), 'no token printed');
});

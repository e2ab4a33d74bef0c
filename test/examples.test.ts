import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../ims.ts';

const examples = path.resolve(import.meta.dirname, '../examples');
const ENV = { ARGUS_URL: 'https://argus.example.org', ARGUS_TOKEN: 'example-argus-token', SYSDIG_API_TOKEN: 'example-sysdig-token' };

/** Run with these environment variables (undefined: unset), restoring the previous values afterwards. */
async function withEnv<T>(values: Record<string, string | undefined>, run: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(values).map((key) => [key, process.env[key]]));
  const apply = (vars: Record<string, string | undefined>) => {
    for (const [key, value] of Object.entries(vars)) if (value === undefined) delete process.env[key]; else process.env[key] = value;
  };
  apply(values);
  try { return await run(); } finally { apply(saved); }
}

test('the full example loads with every plugin when its secrets are in the environment', async () => {
  const config = await withEnv(ENV, () => loadConfig({ path: path.join(examples, 'ims.config.full.ts') }));
  assert.deepEqual(config.plugins.map((p) => p.name), ['pin', 'war-room', 'argus', 'stats', 'timeline', 'forward']);
  assert.equal(config.rules.length, 5);
  assert.equal(config.timezone, 'Europe/Oslo');
});

test('the legacy example keeps IMS.ini and adds plugins', async () => {
  const config = await withEnv(ENV, () => loadConfig({ path: path.join(examples, 'ims.config.legacy.ts') }));
  assert.deepEqual(config.plugins.map((p) => p.name), ['pin', 'argus', 'stats']);
  assert.ok(config.rules.length >= 10, 'the rules come from IMS.ini');
  assert.deepEqual([...config.incidents.keys()], ['INFRA', 'APPS']);
  assert.equal(config.report.channel, 'C0REPORT01');
});

test('both examples refuse to load without the Argus settings, naming the variables', async () => {
  for (const file of ['ims.config.full.ts', 'ims.config.legacy.ts']) {
    await withEnv({ ...ENV, ARGUS_URL: undefined, ARGUS_TOKEN: undefined }, () => assert.rejects(loadConfig({ path: path.join(examples, file) }),
      (error: unknown) => error instanceof ConfigError && /ARGUS_URL/.test(error.message) && /ARGUS_TOKEN/.test(error.message)));
  }
  await withEnv({ ...ENV, SYSDIG_API_TOKEN: undefined }, () => assert.rejects(loadConfig({ path: path.join(examples, 'ims.config.full.ts') }),
    (error: unknown) => error instanceof ConfigError && /format 'sysdig' needs token/.test(error.message)));
});

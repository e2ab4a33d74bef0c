/**
 * How the modules depend on each other: imports run one way (`ims.ts` → its siblings → the siblings below
 * them), and what a config or a plugin imports loads none of the runtime's heavy dependencies.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tempDir } from './harness.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HEAVY = /[\\/]node_modules[\\/](@slack[\\/]web-api|@slack[\\/]socket-mode|better-sqlite3|ws|pg|prom-client)[\\/]/;

/** The CommonJS modules (the SDK, SQLite's binding and their dependencies are CommonJS) loaded after importing each of `modules`, then running `then`. */
function loadedAfter(modules: string[], then = ''): string[] {
  const probe = path.join(tempDir(), 'probe.mts');
  writeFileSync(probe, [
    "import { createRequire } from 'node:module';",
    'for (const module of JSON.parse(process.argv[2])) await import(module);',
    then,
    'console.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));',
  ].join('\n'));
  const urls = modules.map((module) => pathToFileURL(path.join(ROOT, module)).href);
  // The full example's Argus and Sysdig forwarding refuse to load without their URL and tokens.
  const env = { ...process.env, ARGUS_URL: 'http://127.0.0.1:9', ARGUS_TOKEN: 'probe-token', SYSDIG_API_TOKEN: 'probe-token' };
  const run = spawnSync(process.execPath, ['--import', 'tsx', probe, JSON.stringify(urls)], { cwd: ROOT, encoding: 'utf8', env });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as string[];
}

test('importing ims.ts, as every config and plugin does, loads neither the Slack SDK, Socket Mode nor SQLite', () => {
  const heavy = loadedAfter(['ims.ts', 'examples/ims.config.full.ts', 'examples/ims.config.legacy.ts']).filter((file) => HEAVY.test(file));
  assert.deepEqual(heavy, []);
});

test('the runtime loads the SDK and SQLite when it first builds a client and opens the state (the probe would see them)', () => {
  const loaded = loadedAfter(['ims.ts'], [
    "const { Ims, compileConfig } = await import(process.argv[2] ? JSON.parse(process.argv[2])[0] : '');",
    "const { mkdtempSync } = await import('node:fs');",
    "const dir = mkdtempSync((await import('node:os')).tmpdir() + '/ims-probe-');",
    "const config = compileConfig({ rules: [{ match: 'x', head: '[X]', incident: 'A' }], incidents: { A: { channel: 'C0A' } }, state: { path: dir + '/ims.db' } }, { source: 'probe' });",
    "await new Ims(config, { appToken: 'xapp-1', botToken: 'xoxb-1', apiUrl: 'http://127.0.0.1:9/api/' }).stop();",
  ].join('\n'));
  assert.ok(loaded.some((file) => /[\\/]@slack[\\/]web-api[\\/]/.test(file)), 'the Web API client is loaded');
  assert.ok(loaded.some((file) => /[\\/]better-sqlite3[\\/]/.test(file)), 'SQLite is loaded');
});

/** Static imports of a module that bring values (not `import type`, not specifiers that are all `type`), by target. */
function valueImports(file: string): string[] {
  const source = readFileSync(path.join(ROOT, file), 'utf8');
  const targets: string[] = [];
  for (const statement of source.matchAll(/^(?:import|export)\s+(type\s+)?([^;]*?)\s+from\s+'([^']+)';/gms)) {
    const [, typeOnly, clause, target] = statement;
    if (typeOnly || !target.startsWith('.')) continue;
    const braces = /\{([^}]*)\}/.exec(clause);
    const outside = clause.replace(/\{[^}]*\}/, '').replace(/,/g, '').trim();
    const specifiers = braces ? braces[1].split(',').map((s) => s.trim()).filter(Boolean) : [];
    if (!outside && specifiers.length && specifiers.every((s) => s.startsWith('type '))) continue;
    targets.push(path.normalize(path.join(path.dirname(file), target)));
  }
  for (const dynamic of source.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) {
    if (dynamic[1].startsWith('.')) targets.push(`(lazy) ${path.normalize(path.join(path.dirname(file), dynamic[1]))}`);
  }
  return targets;
}

const siblings = readdirSync(ROOT).filter((name) => /^ims-[a-z0-9-]+\.ts$/.test(name));
const modules = ['ims.ts', ...siblings, ...readdirSync(path.join(ROOT, 'plugins')).filter((name) => name.endsWith('.ts')).map((name) => `plugins/${name}`)];

test('the siblings of ims.ts import only types from it', () => {
  const offending = siblings.filter((file) => valueImports(file).some((target) => target.replace('(lazy) ', '') === 'ims.ts'));
  assert.deepEqual(offending, []);
});

test('no runtime import cycle among the project modules (lazy imports included)', () => {
  const graph = new Map(modules.map((file) => [file, valueImports(file).map((target) => target.replace('(lazy) ', ''))]));
  const cycles: string[] = [];
  const visit = (file: string, trail: string[]) => {
    if (trail.includes(file)) { cycles.push([...trail.slice(trail.indexOf(file)), file].join(' → ')); return; }
    for (const next of graph.get(file) ?? []) visit(next, [...trail, file]);
  };
  for (const file of modules) visit(file, []);
  assert.deepEqual(cycles, []);
});

test('no module imports the Slack SDK, Socket Mode or SQLite statically: they load with the first client, connection or state', () => {
  const heavy = /^import\s+(?!type\b)[^;]*from\s+'(@slack\/web-api|@slack\/socket-mode|better-sqlite3)'/m;
  const offending = modules.filter((file) => heavy.test(readFileSync(path.join(ROOT, file), 'utf8')));
  assert.deepEqual(offending, []);
});

test('every module stays one sitting long, and plugins import only ims.ts and the toolkit, never each other', () => {
  for (const file of ['ims.ts', ...siblings]) {
    const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n').length;
    assert.ok(lines <= 1500, `${file} has ${lines} lines`);
  }
  for (const plugin of modules.filter((file) => file.startsWith('plugins/'))) {
    const others = valueImports(plugin).map((target) => target.replace('(lazy) ', '')).filter((target) => target !== 'ims.ts');
    assert.deepEqual(others, [], `${plugin} imports ${others.join(', ')}`);
  }
});

/**
 * The plugin toolkit (`ims-plugin-kit.ts`, exported by `ims.ts`): deadlines, stamped hook errors, Slack and
 * HTTP failure rules (on real `@slack/web-api` errors from the fake Slack), retry-or-give-up, one piece of
 * work per key, cursor pagination, option validation; and importing it loads neither the SDK nor SQLite.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WebClient } from '@slack/web-api';
import {
  PermanentDeliveryError, PluginHookError, PluginHookErrors, PluginOptionsError, TimeoutError, checkPluginOptions, classifySlackFailure, httpDeliveryError,
  ignoringSlackErrors, isPermanentSlackError, isRetryableError, isRetryableStatus, pluginOptionError, pluginOptions, retryOrGiveUp, serialPerKey,
  slackErrorCode, slackItems, slackList, withTimeout,
} from '../ims.ts';
import { ALERTS, INC_APPS, startFake, tempDir } from './harness.ts';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What a Web API call throws, as the SDK throws it (no retries of its own). */
async function failure(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  assert.fail('the call was expected to fail');
}

// ─── Deadlines ───────────────────────────────────────────────────────────────────────────────────

test('withTimeout gives the work its value, and past the deadline aborts its signal and rejects with a TimeoutError naming what', async () => {
  assert.equal(await withTimeout(async () => 42, 1000, 'quick work'), 42);
  let seen: AbortSignal | undefined;
  const hung = withTimeout((signal) => { seen = signal; return new Promise<never>(() => {}); }, 30, "plugin 'x' onMatch");
  await assert.rejects(hung, (error: unknown) => {
    assert.ok(error instanceof TimeoutError);
    assert.equal(error.message, "plugin 'x' onMatch timed out after 30 ms");
    assert.deepEqual([error.what, error.ms], ["plugin 'x' onMatch", 30]);
    return true;
  });
  assert.equal(seen?.aborted, true, "the abandoned work's signal is aborted");
  assert.ok(seen?.reason instanceof TimeoutError, 'with the same error as its reason');
});

test('withTimeout turns a synchronous throw into a rejection, and an outer abort stops the work with its reason', async () => {
  await assert.rejects(withTimeout(() => { throw new TypeError('sync'); }, 1000, 'work'), /sync/);
  const stop = new AbortController();
  let inner: AbortSignal | undefined;
  const running = withTimeout((signal) => { inner = signal; return new Promise<never>(() => {}); }, 10_000, 'work', { signal: stop.signal });
  stop.abort(new Error('IMS is stopping'));
  await assert.rejects(running, /IMS is stopping/);
  assert.equal(inner?.aborted, true);
  const already = new AbortController();
  already.abort(new Error('stopped before'));
  let started = false;
  await assert.rejects(withTimeout(() => { started = true; }, 1000, 'work', { signal: already.signal }), /stopped before/);
  await sleep(5);
  assert.equal(started, false, 'work is not started under a signal aborted already');
});

// ─── Stamped errors ──────────────────────────────────────────────────────────────────────────────

test("a hook's error is stamped with plugin and hook, keeps the plugin's stack and says where it was thrown", () => {
  let error: unknown;
  const onMatch = (ctx: { incident?: { id: number } }) => ctx.incident!.id;
  try { onMatch({}); } catch (e) { error = e; }
  const stamped = new PluginHookError('buggy', 'onMatch', error);
  assert.equal(stamped.message, "plugin 'buggy' failed in onMatch: TypeError: Cannot read properties of undefined (reading 'id')");
  assert.deepEqual([stamped.plugin, stamped.hook, stamped.cause], ['buggy', 'onMatch', error]);
  assert.match(stamped.at ?? '', /^test[\\/]plugin-kit\.test\.ts:\d+:\d+$/, 'where it was thrown, relative to the working directory');
  assert.match(stamped.stack ?? '', /^PluginHookError: plugin 'buggy' failed in onMatch: TypeError[^\n]*\n\s+at onMatch \(test[\\/]plugin-kit\.test\.ts:\d+:\d+\)/, "the plugin's frames, not the runner's");
  const fields = stamped.fields();
  assert.equal(fields.plugin, 'buggy');
  assert.equal(fields.hook, 'onMatch');
  assert.equal(fields.at, stamped.at);
  assert.match(fields.stack ?? '', /at onMatch \(test[\\/]plugin-kit\.test\.ts/);

  const timedOut = new PluginHookError('slow', 'onReport', new TimeoutError("plugin 'slow' onReport", 200));
  assert.equal(timedOut.message, "plugin 'slow' failed in onReport: timed out after 200 ms");
  assert.equal(timedOut.at, undefined, 'a timeout has no place in the plugin to point at');
});

test('several failures of one event are one AggregateError that names the event and holds each stamped error', () => {
  const errors = [new PluginHookError('a', 'onMatch', new Error('boom')), new PluginHookError('b', 'onHotline', new TimeoutError("plugin 'b' onHotline", 50))];
  const together = new PluginHookErrors(errors, 'incident #4');
  assert.ok(together instanceof AggregateError);
  assert.equal(together.event, 'incident #4');
  assert.deepEqual(together.errors, errors);
  assert.equal(together.message, '2 plugin hooks failed for incident #4: a.onMatch (boom), b.onHotline (timed out after 50 ms)');
});

// ─── Slack failures, on errors the real SDK throws ────────────────────────────────────────────────

test('Slack errors: the code, and permanent versus retryable by the same rules IMS uses for its own calls', async (t) => {
  const fake = await startFake();
  t.after(() => fake.close());
  const slack = new WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, rejectRateLimitedCalls: true });

  fake.failNext('chat.postMessage', 'channel_not_found');
  const gone = await failure(() => slack.chat.postMessage({ channel: ALERTS, text: 'x' }));
  assert.equal(slackErrorCode(gone), 'channel_not_found');
  assert.deepEqual([classifySlackFailure(gone).kind, isPermanentSlackError(gone), isRetryableError(gone)], ['permanent', true, false]);

  fake.failNext('chat.postMessage', 'invalid_auth');
  const auth = await failure(() => slack.chat.postMessage({ channel: ALERTS, text: 'x' }));
  assert.deepEqual([classifySlackFailure(auth).kind, isPermanentSlackError(auth)], ['auth', true]);

  fake.failNext('chat.postMessage', 'internal_error');
  const maybe = await failure(() => slack.chat.postMessage({ channel: ALERTS, text: 'x' }));
  assert.deepEqual([slackErrorCode(maybe), classifySlackFailure(maybe).kind, isPermanentSlackError(maybe), isRetryableError(maybe)], ['internal_error', 'unknown', false, true]);

  fake.rateLimit('conversations.info', { count: 1, retryAfterSec: 3 });
  const throttled = await failure(() => slack.conversations.info({ channel: ALERTS }));
  assert.deepEqual([classifySlackFailure(throttled).kind, classifySlackFailure(throttled).retryAfterMs, isRetryableError(throttled)], ['throttled', 3000, true]);

  const unreachable = new WebClient('xoxb-test', { slackApiUrl: 'http://127.0.0.1:1/api/', retryConfig: { retries: 0 } });
  const refused = await failure(() => unreachable.auth.test());
  assert.equal(slackErrorCode(refused), undefined);
  assert.notEqual(classifySlackFailure(refused).kind, 'permanent');
  assert.deepEqual([isPermanentSlackError(refused), isRetryableError(refused)], [false, true], 'a network failure may pass');

  // Not from the Web API at all (a timeout, a bug in the plugin): never "Slack will say the same".
  assert.equal(isPermanentSlackError(new TimeoutError('delivery', 10)), false);
  assert.equal(isRetryableError(new TimeoutError('delivery', 10)), true);
  assert.equal(isRetryableError(new PermanentDeliveryError('no')), false);
});

test('ignoringSlackErrors treats the listed codes as "already so" and lets every other failure through', async (t) => {
  const fake = await startFake();
  t.after(() => fake.close());
  const slack = new WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
  const { ts } = await slack.chat.postMessage({ channel: INC_APPS, text: 'incident' });
  assert.ok(await ignoringSlackErrors(slack.pins.add({ channel: INC_APPS, timestamp: ts! }), ['already_pinned']));
  assert.equal(await ignoringSlackErrors(slack.pins.add({ channel: INC_APPS, timestamp: ts! }), ['already_pinned']), undefined);
  fake.failNext('pins.add', 'not_in_channel');
  await assert.rejects(ignoringSlackErrors(slack.pins.add({ channel: INC_APPS, timestamp: ts! }), ['already_pinned']), (error: unknown) => slackErrorCode(error) === 'not_in_channel');
});

test('slackItems walks every page of a Web API list method, and stops asking once the loop stops', async (t) => {
  const fake = await startFake();
  t.after(() => fake.close());
  for (let i = 0; i < 7; i++) fake.addChannel({ name: `extra-${i}` });
  const slack = new WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
  const all = await slackList<{ id: string; name: string }>(slack, 'conversations.list', { types: 'public_channel', limit: 3 }, 'channels');
  assert.equal(all.length, fake.channels.size);
  assert.deepEqual(new Set(all.map((c) => c.id)), new Set(fake.channels.keys()), 'every channel once');
  const calls = fake.callsTo('conversations.list').length;
  assert.equal(calls, Math.ceil(fake.channels.size / 3), 'one call per page');

  let seen = 0;
  for await (const channel of slackItems<{ name: string }>(slack, 'conversations.list', { types: 'public_channel', limit: 3 }, 'channels')) {
    seen++;
    if (channel.name) break;
  }
  assert.equal(seen, 1);
  assert.equal(fake.callsTo('conversations.list').length, calls + 1, 'no page is read past the one that had the item');
});

// ─── Deliveries ──────────────────────────────────────────────────────────────────────────────────

test('the HTTP rule: 5xx, 408 and 429 are retried, any other answer is given up', () => {
  assert.deepEqual([500, 502, 503, 408, 429].map(isRetryableStatus), [true, true, true, true, true]);
  assert.deepEqual([400, 401, 403, 404, 409, 422, 301].map(isRetryableStatus), [false, false, false, false, false, false, false]);
  assert.ok(!(httpDeliveryError(503, 'busy') instanceof PermanentDeliveryError));
  const refused = httpDeliveryError(422, 'hooks.example.org answered 422');
  assert.ok(refused instanceof PermanentDeliveryError);
  assert.equal(refused.message, 'hooks.example.org answered 422');
});

test('retryOrGiveUp retries what may pass, and gives up a permanent failure at once or anything at the last attempt', async (t) => {
  const fake = await startFake();
  t.after(() => fake.close());
  const slack = new WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
  fake.failNext('conversations.create', 'restricted_action');
  const refused = await failure(() => slack.conversations.create({ name: 'inc-1' }));
  fake.failNext('conversations.create', 'internal_error');
  const hiccup = await failure(() => slack.conversations.create({ name: 'inc-1' }));
  const options = { what: 'open for incident #1', maxAttempts: 3 };

  const givenUp = retryOrGiveUp(refused, { attempts: 0 }, options);
  assert.ok(givenUp instanceof PermanentDeliveryError);
  assert.equal((givenUp as Error).message, 'open for incident #1: restricted_action');
  assert.equal((givenUp as Error).cause, refused);

  assert.equal(retryOrGiveUp(hiccup, { attempts: 0 }, options), hiccup, 'retried as it is');
  assert.equal(retryOrGiveUp(hiccup, { attempts: 1 }, options), hiccup);
  const last = retryOrGiveUp(hiccup, { attempts: 2 }, options);
  assert.ok(last instanceof PermanentDeliveryError);
  assert.equal((last as Error).message, 'open for incident #1: internal_error (given up after 3 attempts)');

  const own = new PermanentDeliveryError('incident #1 is not in the state');
  assert.equal(retryOrGiveUp(own, { attempts: 0 }, options), own);
  const network = new Error('socket hang up');
  assert.equal(retryOrGiveUp(network, { attempts: 0 }, { ...options, permanent: (e) => e === network }) instanceof PermanentDeliveryError, true, 'a rule of its own');
});

test('serialPerKey runs one piece of work per key at a time, in the order asked, whatever the earlier one did', async () => {
  const run = serialPerKey<number>();
  const log: string[] = [];
  const work = (key: number, name: string, ms: number, fail = false) => run(key, async () => {
    log.push(`start ${name}`);
    await sleep(ms);
    log.push(`end ${name}`);
    if (fail) throw new Error(`${name} failed`);
    return name;
  });
  const first = work(1, 'a1', 30, true);
  const second = work(1, 'a2', 5);
  const other = work(2, 'b1', 5);
  await assert.rejects(first, /a1 failed/);
  assert.equal(await second, 'a2');
  assert.equal(await other, 'b1');
  assert.ok(log.indexOf('end a1') < log.indexOf('start a2'), `a2 waits for a1: ${log.join(', ')}`);
  assert.ok(log.indexOf('start b1') < log.indexOf('end a1'), `another key does not wait: ${log.join(', ')}`);
  assert.equal(await run(1, () => 'sync value'), 'sync value');
});

// ─── Options ─────────────────────────────────────────────────────────────────────────────────────

test('plugin options are validated one way: every problem at once, each saying what was expected and what arrived', () => {
  interface Options { window?: string; groupBy?: string; dir?: string }
  const refuse = (options: unknown) => {
    const check = pluginOptions<Options>('stats()', options, ['window', 'groupBy', 'dir']);
    const given = check.options;
    check.expect('groupBy', given.groupBy === undefined || given.groupBy === 'head', `'head'`);
    if (given.dir === '') check.problem('dir is empty: leave it out to upload only');
    check.done();
  };
  refuse({});
  refuse({ groupBy: 'head' });
  assert.throws(() => refuse({ groupBy: 'team', windw: 1, dir: '' }), (error: unknown) => {
    assert.ok(error instanceof PluginOptionsError);
    assert.equal(error.plugin, 'stats()');
    assert.deepEqual(error.problems, [
      "unknown option 'windw'; expected one of window, groupBy, dir (did you mean 'window'?)",
      "option 'groupBy' expects 'head', found 'team'",
      'dir is empty: leave it out to upload only',
    ]);
    assert.equal(String(error), `Error: stats(): ${error.problems.join('; ')}`);
    return true;
  });
  assert.throws(() => refuse(null), /^Error: stats\(\): expects an options object such as stats\(\{ window: … \}\), found null$/);
  assert.throws(() => refuse(['a']), /found \["a"\]/);
  // A map takes any key: leave `known` out.
  pluginOptions<Record<string, string>>('runbooks()', { '[Critical]': 'https://wiki' }).done();
  // The one-call forms read the same.
  assert.throws(() => checkPluginOptions('pin', { unpin: true }, ['unpinOnResolve']), /^Error: pin\(\): unknown option 'unpin'; expected one of unpinOnResolve/);
  assert.equal(pluginOptionError('warRoom', 'private', 'true or false', 'yes').message, "warRoom(): option 'private' expects true or false, found 'yes'");
});

// ─── Cheap to import ─────────────────────────────────────────────────────────────────────────────

test('importing the toolkit loads neither the Slack SDK nor SQLite', () => {
  const dir = tempDir();
  const probe = path.join(dir, 'probe.mts');
  writeFileSync(probe, [
    "import { createRequire } from 'node:module';",
    'await import(process.argv[2]);',
    'const loaded = Object.keys(createRequire(import.meta.url).cache);',
    'console.log(JSON.stringify(loaded.filter((file) => /[\\\\/]node_modules[\\\\/](@slack|better-sqlite3)[\\\\/]/.test(file))));',
  ].join('\n'));
  const heavy = (module: string) => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', probe, pathToFileURL(path.isAbsolute(module) ? module : path.join(ROOT, module)).href], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as string[];
  };
  assert.ok(heavy(createRequire(path.join(ROOT, 'ims.ts')).resolve('@slack/web-api')).some((file) => file.includes('@slack')), 'the probe sees the SDK when it is loaded');
  assert.deepEqual(heavy('ims-plugin-kit.ts'), []);
});

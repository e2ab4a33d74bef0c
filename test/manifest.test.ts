/**
 * The Slack app manifest (ims-manifest.ts): what the example file holds, and that it asks for every scope and
 * event the code uses. Calls are found by reading the source as text, so a new Slack call without its scope in
 * the manifest fails here, naming the method.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { WebClient } from '@slack/web-api';
import {
  EVENT_SUBSCRIPTIONS, MANIFEST_SCOPES, METHOD_SCOPES, SDK_HELPERS, SLASH_COMMAND, appManifest, printManifest, type BotScope,
} from '../ims-manifest.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

/** The code whose Slack calls the bot's token must allow: IMS, its plugins, the example plugin users copy. */
function sourceFiles(): string[] {
  return [
    ...readdirSync(ROOT).filter((name) => /^ims.*\.ts$/.test(name) && name !== 'ims-manifest.ts'),
    ...readdirSync(path.join(ROOT, 'plugins')).filter((name) => name.endsWith('.ts')).map((name) => `plugins/${name}`),
    'examples/custom-plugin.ts',
  ];
}

/**
 * Methods reached by a computed name (`ctx.slack.pins[method](…)`), which no text scan can read: per file, the
 * methods the name can be. A new computed call fails the scan until it is listed here.
 */
const COMPUTED_CALLS: Record<string, string[]> = {
  'plugins/pin.ts': ['pins.add', 'pins.remove'],
};

/** Every Web API method @slack/web-api knows (`chat.postMessage`, `usergroups.users.list`…), read off a client. */
function webApiMethods(): Set<string> {
  const methods = new Set<string>();
  const walk = (namespace: Record<string, unknown>, prefix: string) => {
    for (const [key, value] of Object.entries(namespace)) {
      if (typeof value === 'function' && prefix) methods.add(`${prefix}${key}`);
      else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype && prefix.split('.').length < 5) {
        walk(value as Record<string, unknown>, `${prefix}${key}.`);
      }
    }
  };
  walk(new WebClient('xoxb-not-used') as unknown as Record<string, unknown>, '');
  return methods;
}

const METHODS = webApiMethods();
const FAMILIES = [...new Set([...METHODS].map((method) => method.split('.')[0]))];

/**
 * The text without comments (a method named in a comment is no call). Strings are kept whole, so `'https://…'`
 * or `'src/*.ts'` start no comment; a backslash escapes the next character (`/https?:\/\//` is no comment either).
 */
function withoutComments(text: string): string {
  let kept = '';
  for (let i = 0; i < text.length;) {
    const [char, next] = [text[i], text[i + 1]];
    if (char === '\\') {
      kept += text.slice(i, i + 2);
      i += 2;
    } else if (char === '/' && next === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (char === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
      kept += ' ';
    } else if (char === "'" || char === '"' || char === '`') {
      // A quote or double quote ends at the line's end at the latest (a quote in a regex then costs one line only).
      let j = i + 1;
      while (j < text.length && text[j] !== char && (char === '`' || text[j] !== '\n')) j += text[j] === '\\' ? 2 : 1;
      kept += text.slice(i, j + 1);
      i = j + 1;
    } else {
      kept += char;
      i++;
    }
  }
  return kept;
}

/**
 * The Web API methods `source` names outside comments, however it writes them: `ctx.slack.chat.postMessage(…)`,
 * `listAll(slack, log, 'conversations.history', …)`, a label such as `'chat.update'`, an SDK helper
 * (`filesUploadV2`, as the methods it calls). Names that are no Web API method (`files.push`) are not calls.
 * A computed call (`.pins[method](`) is returned in `computed` for the caller to resolve.
 */
function methodsNamedIn(source: string): { methods: Set<string>; computed: string[] } {
  const text = withoutComments(source);
  const methods = new Set<string>();
  const add = (method: string) => {
    for (const reached of SDK_HELPERS[method] ?? [method]) methods.add(reached);
  };
  // Every start of a dotted name whose first part is a Web API family, also inside a longer chain
  // (`apps.connections.open` of `api.apps.connections.open`), but not inside a method found (`users.list` of `usergroups.users.list`).
  const dotted = new RegExp(`\\b(?=((?:${FAMILIES.join('|')})(?:\\.[A-Za-z]+)+))`, 'g');
  let foundUpTo = 0;
  for (const match of text.matchAll(dotted)) {
    if (match.index < foundUpTo) continue;
    const parts = match[1].split('.');
    // The longest prefix that is a method: `chat.postMessage` of `chat.postMessage.bind`.
    for (let length = parts.length; length >= 2; length--) {
      const candidate = parts.slice(0, length).join('.');
      if (METHODS.has(candidate) || candidate in SDK_HELPERS) {
        add(candidate);
        foundUpTo = match.index + candidate.length;
        break;
      }
    }
  }
  for (const helper of Object.keys(SDK_HELPERS).filter((name) => !name.includes('.'))) {
    if (new RegExp(`\\b${helper}\\s*\\(`).test(text)) add(helper);
  }
  const computed = [...text.matchAll(new RegExp(`\\.(${FAMILIES.join('|')})\\s*\\[[^\\]]+\\]\\s*\\(`, 'g'))].map((match) => match[0]);
  return { methods, computed };
}

/** The methods the code calls, each with the files calling it. */
function calledMethods(): Map<string, string[]> {
  const called = new Map<string, string[]>();
  const note = (method: string, file: string) => called.set(method, [...(called.get(method) ?? []), file]);
  for (const file of sourceFiles()) {
    const { methods, computed } = methodsNamedIn(readFileSync(path.join(ROOT, file), 'utf8'));
    for (const method of methods) note(method, file);
    if (computed.length) {
      assert.ok(COMPUTED_CALLS[file], `${file} calls Slack by a computed method name (${computed.join(', ')}): list the methods it can reach in COMPUTED_CALLS of test/manifest.test.ts`);
      for (const method of COMPUTED_CALLS[file]) note(method, file);
    }
  }
  return called;
}

const manifest = appManifest();
const botScopes = new Set<string>(manifest.oauth_config.scopes.bot);

test('examples/slack-app-manifest.json is exactly what printManifest() prints', () => {
  const example = readFileSync(path.join(ROOT, 'examples/slack-app-manifest.json'), 'utf8');
  assert.equal(example, printManifest(), 'regenerate it: node --import tsx -e "import(\'./ims-manifest.ts\').then(m => process.stdout.write(m.printManifest()))" > examples/slack-app-manifest.json');
  assert.ok(example.endsWith('}\n'), 'a trailing newline');
  assert.match(example, /^\{\n {2}"_metadata": \{\n {4}"major_version": 1,/, 'two-space indentation');
});

test('the scan finds Slack calls however the code writes them, and no array methods or comments', () => {
  const { methods, computed } = methodsNamedIn([
    'await ctx.slack.chat.postMessage({ channel, text });',
    "for await (const m of listAll(slack, log, 'conversations.history', { channel }, 'messages')) {}",
    'const answer = await api.apps.connections.open({});',
    "await slackCall(() => slack.usergroups.users.list({ usergroup }), log, 'usergroups.users.list');",
    'await ctx.slack.filesUploadV2({ channel_id, content });',
    'this.files.push(file); reminders.map((r) => r); users.at(-1);',
    '// chat.delete is not called here',
    '/* nor reactions.remove */',
    "const glob = 'plugins/*.ts'; await slack.chat.update({ channel, ts }); // chat.postEphemeral not yet",
    "const url = 'https://slack.com/api/'; await ctx.slack.pins[method]({ channel, timestamp });",
  ].join('\n'));
  assert.deepEqual([...methods].sort(), [
    'apps.connections.open', 'chat.postMessage', 'chat.update', 'conversations.history', 'files.completeUploadExternal',
    'files.getUploadURLExternal', 'usergroups.users.list',
  ]);
  assert.deepEqual(computed, ['.pins[method]('], 'the computed call is reported for COMPUTED_CALLS');
});

test('every Slack Web API method the code calls has its bot scopes in the manifest', () => {
  const called = calledMethods();
  // The scan sees the calls of each way of calling: the SDK namespaces, method names, the files helper, a computed name.
  for (const method of ['chat.postMessage', 'conversations.history', 'reactions.add', 'users.list', 'conversations.create', 'files.completeUploadExternal', 'pins.remove']) {
    assert.ok(called.has(method), `the scan finds ${method}`);
  }
  for (const [method, files] of [...called].sort()) {
    const scopes = METHOD_SCOPES[method];
    assert.ok(scopes, `${method} (called in ${files.join(', ')}) is missing from METHOD_SCOPES in ims-manifest.ts: add it with the bot scopes of https://docs.slack.dev/reference/methods/${method}`);
    const missing = scopes.filter((scope) => !botScopes.has(scope));
    assert.deepEqual(missing, [], `${method} (called in ${files.join(', ')}) needs ${missing.join(', ')}, which the manifest does not request`);
  }
});

test('METHOD_SCOPES names real Web API methods, and every scope requested is needed by a method, an event or the command', () => {
  const unknown = Object.keys(METHOD_SCOPES).filter((method) => !METHODS.has(method));
  assert.deepEqual(unknown, [], 'methods @slack/web-api does not know');
  const needed = new Set<string>([
    ...Object.values(METHOD_SCOPES).flat(),
    ...Object.values(EVENT_SUBSCRIPTIONS).flatMap((event) => event.scopes),
    ...(manifest.features.slash_commands.length ? ['commands'] : []),
  ]);
  for (const scope of manifest.oauth_config.scopes.bot) {
    const need = MANIFEST_SCOPES[scope];
    assert.ok(need.why.length > 10, `${scope} says why IMS needs it`);
    if (!need.required) assert.ok(need.feature, `the optional ${scope} names its feature`);
    if (need.widens) assert.ok(botScopes.has(need.widens), `${scope} widens ${need.widens}, which is requested too`);
    else assert.ok(needed.has(scope), `${scope} is requested but no method, event or command in ims-manifest.ts needs it`);
  }
  assert.equal(botScopes.size, manifest.oauth_config.scopes.bot.length, 'no scope twice');
  assert.deepEqual(manifest.oauth_config.scopes.bot, Object.keys(MANIFEST_SCOPES), 'the manifest requests the table, in its order');
  const requiredFlags = Object.values(MANIFEST_SCOPES).map((need) => need.required);
  assert.deepEqual(requiredFlags, [...requiredFlags].sort((a, b) => Number(b) - Number(a)), 'the table lists required scopes first');
});

test('every event type the bot handles is subscribed, with the scopes its subscription needs', () => {
  const handled = new Map<string, string[]>();
  for (const file of sourceFiles()) {
    const text = withoutComments(readFileSync(path.join(ROOT, file), 'utf8'));
    for (const [, type] of text.matchAll(/\bevent\.type\s*[!=]==?\s*'([a-z_]+)'/g)) handled.set(type, [...(handled.get(type) ?? []), file]);
  }
  assert.ok(handled.has('message') && handled.has('reaction_added'), `the scan finds the handled events (found ${[...handled.keys()].join(', ')})`);
  const botEvents = new Set(manifest.settings.event_subscriptions.bot_events);
  for (const [type, files] of handled) {
    const subscription = EVENT_SUBSCRIPTIONS[type];
    assert.ok(subscription, `the ${type} event (handled in ${[...new Set(files)].join(', ')}) is missing from EVENT_SUBSCRIPTIONS in ims-manifest.ts`);
    for (const event of subscription.subscribe) assert.ok(botEvents.has(event), `${type} arrives through ${event}, which the manifest does not subscribe to`);
    for (const scope of subscription.scopes) assert.ok(botScopes.has(scope), `${type} events need ${scope}`);
  }
  assert.deepEqual([...botEvents].sort(), ['app_home_opened', 'message.channels', 'message.groups', 'reaction_added', 'reaction_removed']);
});

test('Socket Mode and interactivity are on, and no request URL is set anywhere', () => {
  assert.equal(manifest.settings.socket_mode_enabled, true);
  assert.equal(manifest.settings.interactivity.is_enabled, true);
  assert.equal(manifest.settings.token_rotation_enabled, false, 'IMS keeps one bot token: it does not refresh rotated ones');
  assert.equal(manifest.settings.org_deploy_enabled, false);
  const urls: string[] = [];
  const walk = (value: unknown, at: string) => {
    if (Array.isArray(value)) value.forEach((item, i) => walk(item, `${at}[${i}]`));
    else if (value && typeof value === 'object') for (const [key, inner] of Object.entries(value)) {
      if (/url/i.test(key)) urls.push(`${at}.${key}`);
      walk(inner, `${at}.${key}`);
    }
  };
  walk(manifest, 'manifest');
  assert.deepEqual(urls, [], 'over Socket Mode, Slack needs no URL of the app');
});

test('the slash command is /ims, with the usage hint of its subcommands, and the App Home tab is on', () => {
  assert.equal(SLASH_COMMAND, '/ims');
  assert.deepEqual(manifest.features.slash_commands.map((c) => c.command), ['/ims']);
  const [command] = manifest.features.slash_commands;
  assert.equal(command.usage_hint, 'status | silence <what> <duration> [reason] | silences | unsilence <id> | test <alert text> | report | help');
  assert.equal(command.should_escape, false);
  assert.ok(botScopes.has('commands'), 'slash commands need the commands scope');
  assert.deepEqual(manifest.features.app_home, { home_tab_enabled: true, messages_tab_enabled: false });
  assert.equal(manifest.features.bot_user.always_online, true);
});

test('a name option changes the app\'s display name and its bot\'s; a name Slack would refuse is refused', () => {
  const staging = appManifest({ name: 'IMS staging' });
  assert.equal(staging.display_information.name, 'IMS staging');
  assert.equal(staging.features.bot_user.display_name, 'IMS staging');
  assert.equal(manifest.display_information.name, 'IMS', 'the default');
  assert.equal(manifest.features.bot_user.display_name, 'IMS');
  assert.equal(JSON.parse(printManifest({ name: 'IMS staging' })).display_information.name, 'IMS staging');
  assert.throws(() => appManifest({ name: '' }), /expected a name of 1 to 35 characters.*found ""/);
  assert.throws(() => appManifest({ name: 'x'.repeat(36) }), /expected a name of 1 to 35 characters/);
});

test('the manifest keeps within the limits of Slack\'s manifest schema (slackapi/manifest-schema v1)', () => {
  const { display_information: display, features, settings } = appManifest({ name: 'x'.repeat(35) });
  assert.ok(display.name.length <= 35);
  assert.ok(display.description.length >= 1 && display.description.length <= 140, `description of ${display.description.length} characters`);
  assert.match(display.background_color, /^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$/);
  assert.ok(features.bot_user.display_name.length <= 80);
  for (const command of features.slash_commands) {
    assert.match(command.command, /^\/[a-z0-9_-]{1,31}$/);
    assert.ok(command.description.length <= 2000 && command.usage_hint.length <= 1000);
  }
  const events = settings.event_subscriptions.bot_events;
  assert.ok(events.length <= 100 && new Set(events).size === events.length, 'at most 100 bot events, each once');
  for (const scope of manifest.oauth_config.scopes.bot as BotScope[]) assert.ok(scope.length <= 50);
});

test('the manifest module imports nothing, so printing it loads none of IMS\'s runtime', () => {
  const source = readFileSync(path.join(ROOT, 'ims-manifest.ts'), 'utf8');
  assert.deepEqual(source.match(/^\s*import\s+(?!type\b).*$/gm) ?? [], []);
});

test('npx tsx ims.ts --print-manifest prints the example manifest, with no config and no tokens', async () => {
  const { execFileSync } = await import('node:child_process');
  const root = path.resolve(import.meta.dirname, '..');
  const { tmpdir } = await import('node:os');
  // From a folder with no config in it: the manifest is what makes the Slack app, before any config exists.
  const printed = execFileSync(process.execPath, ['--import', path.join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs'), path.join(root, 'ims.ts'), '--print-manifest'],
    { cwd: tmpdir(), encoding: 'utf8', env: { PATH: process.env.PATH } });
  assert.equal(printed, readFileSync(path.join(root, 'examples', 'slack-app-manifest.json'), 'utf8'));
  assert.deepEqual(JSON.parse(printed).settings.interactivity, { is_enabled: true });
});

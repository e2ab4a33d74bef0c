/**
 * The state file across IMS versions: a database made by IMS 2.0 (before the schema was versioned) is
 * upgraded in place with every row kept, a step that fails leaves the file as it was, and a database a
 * newer IMS has upgraded is refused rather than misread.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION, State, StateVersionError } from '../ims-state.ts';
import { tempDir } from './harness.ts';

/** `SCHEMA` of ims-state.ts at commit 191051e (IMS 2.0), word for word: what every ims.db in use was made with. */
const SCHEMA_2_0 = `
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, received_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
  channel TEXT NOT NULL, ts TEXT NOT NULL, status TEXT NOT NULL, event TEXT NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (channel, ts));
CREATE TABLE IF NOT EXISTS incidents (
  id INTEGER PRIMARY KEY AUTOINCREMENT, source_channel TEXT NOT NULL, source_ts TEXT NOT NULL,
  incident_channel TEXT NOT NULL, incident_ts TEXT NOT NULL, rule_number INTEGER NOT NULL, head TEXT NOT NULL,
  label TEXT NOT NULL, hotline TEXT, text TEXT NOT NULL, poster TEXT NOT NULL, created_at INTEGER NOT NULL,
  resolved_at INTEGER, resolved_by TEXT, permalink TEXT, UNIQUE (source_channel, source_ts));
CREATE INDEX IF NOT EXISTS incidents_by_post ON incidents (incident_channel, incident_ts);
CREATE TABLE IF NOT EXISTS incident_events (
  incident_id INTEGER NOT NULL, kind TEXT NOT NULL, user TEXT, detail TEXT, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS incident_events_by_incident ON incident_events (incident_id, at);
CREATE TABLE IF NOT EXISTS cursors (channel TEXT PRIMARY KEY, last_ts TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reminders (channel TEXT NOT NULL, hour TEXT NOT NULL, PRIMARY KEY (channel, hour));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owned_channels (channel TEXT PRIMARY KEY, plugin TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plugin_store (plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (plugin, key));
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, plugin TEXT NOT NULL, key TEXT NOT NULL, grp TEXT NOT NULL,
  payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, last_error TEXT,
  created_at INTEGER NOT NULL, delivered_at INTEGER, dead INTEGER NOT NULL DEFAULT 0, UNIQUE (plugin, key));
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, dead, grp, id);
`;

const ALERTS = 'C0ALERTS01';
const INC = 'C0INCAPPS1';
const WAR_ROOM = 'C0WARROOM1';
const T0 = Date.UTC(2026, 10, 20, 9);
const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** An ims.db as IMS 2.0 left it after a day of work: a few rows in every table, WAL mode, user_version 0. */
function makeIms20Database(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(SCHEMA_2_0);
  const pendingEvent = { type: 'message', channel: ALERTS, ts: '1763629300.000300', bot_id: 'B0NAGIOS1', text: 'ERROR: disk' };
  db.transaction(() => {
    db.prepare('INSERT INTO events (event_id, received_at) VALUES (?, ?)').run('Ev0OLD1', T0);
    const message = db.prepare('INSERT INTO messages (channel, ts, status, event, updated_at) VALUES (?, ?, ?, ?, ?)');
    message.run(ALERTS, '1763629100.000100', 'done', JSON.stringify({ type: 'message', channel: ALERTS, ts: '1763629100.000100' }), T0);
    message.run(ALERTS, '1763629200.000200', 'done', JSON.stringify({ type: 'message', channel: ALERTS, ts: '1763629200.000200' }), T0 + 1000);
    message.run(ALERTS, pendingEvent.ts, 'pending', JSON.stringify(pendingEvent), T0 + 2000);
    const incident = db.prepare(`INSERT INTO incidents (source_channel, source_ts, incident_channel, incident_ts, rule_number, head, label, hotline,
      text, poster, created_at, resolved_at, resolved_by, permalink) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    incident.run(ALERTS, '1763629100.000100', INC, '1763629101.000100', 3, '[Error]', 'APPS', null, 'ERROR: first', 'B0NAGIOS1', T0,
      T0 + HOUR, 'U0HUMAN001', 'https://example.slack.com/archives/C0INCAPPS1/p1763629101000100');
    incident.run(ALERTS, '1763629200.000200', INC, '1763629201.000200', 2, '[Critical]', 'APPS', 'OnCall', 'CRITICAL: second', 'B0NAGIOS1', T0 + 1000,
      null, null, null);
    const event = db.prepare('INSERT INTO incident_events (incident_id, kind, user, detail, at) VALUES (?, ?, ?, ?, ?)');
    event.run(1, 'reaction', 'U0HUMAN001', 'eyes', T0 + 60_000);
    event.run(1, 'resolve', 'U0HUMAN001', null, T0 + HOUR);
    event.run(2, 'reply', 'U0HUMAN001', 'looking', T0 + 120_000);
    db.prepare('INSERT INTO cursors (channel, last_ts) VALUES (?, ?)').run(ALERTS, pendingEvent.ts);
    db.prepare('INSERT INTO reminders (channel, hour) VALUES (?, ?)').run(INC, '2026-11-20T10');
    db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('report:last', '2026-11-20');
    db.prepare('INSERT INTO owned_channels (channel, plugin) VALUES (?, ?)').run(WAR_ROOM, 'war-room');
    db.prepare('INSERT INTO plugin_store (plugin, key, value) VALUES (?, ?, ?)').run('war-room', 'room:2', JSON.stringify({ channel: WAR_ROOM }));
    const outbox = db.prepare(`INSERT INTO outbox (plugin, key, grp, payload, attempts, next_at, last_error, created_at, delivered_at, dead)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    outbox.run('forward', 'delivered-1', 'incident-1', JSON.stringify({ n: 1 }), 1, T0, null, T0, T0 + 500, 0);
    outbox.run('forward', 'waiting-2', 'incident-2', JSON.stringify({ n: 2 }), 2, T0 + HOUR, 'HTTP 503', T0 + 1000, null, 0);
    outbox.run('forward', 'dead-3', 'incident-3', JSON.stringify({ n: 3 }), 10, T0, 'HTTP 400', T0 + 2000, null, 1);
  })();
  db.close();
}

/** What a user would read with `sqlite3 ims.db`: the schema version, the journal mode, a table's row count. */
function inspect(file: string): { version: number; journal: string; rows: (table: string) => number } {
  const db = new Database(file, { readonly: true });
  try {
    const counts = new Map<string, number>();
    for (const { name } of db.prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).all()) {
      counts.set(name, db.prepare<[], { n: number }>(`SELECT COUNT(*) AS n FROM "${name}"`).get()!.n);
    }
    return {
      version: db.pragma('user_version', { simple: true }) as number,
      journal: db.pragma('journal_mode', { simple: true }) as string,
      rows: (table) => counts.get(table) ?? -1,
    };
  } finally {
    db.close();
  }
}

test('an ims.db made by IMS 2.0 is upgraded in place and keeps every row', () => {
  const file = path.join(tempDir(), 'ims.db');
  makeIms20Database(file);
  assert.equal(inspect(file).version, 0, 'IMS 2.0 did not version its schema');

  const state = new State(file);
  try {
    assert.equal(state.rememberEvent('Ev0OLD1', T0 + DAY), false, 'an event IMS 2.0 saw is still a duplicate');
    assert.equal(state.claimMessage(ALERTS, '1763629100.000100', {}, T0 + DAY), 'done', 'a message IMS 2.0 handled is not handled again');
    assert.deepEqual(state.pendingMessages(), [{
      channel: ALERTS, ts: '1763629300.000300',
      event: { type: 'message', channel: ALERTS, ts: '1763629300.000300', bot_id: 'B0NAGIOS1', text: 'ERROR: disk' },
    }], 'the message IMS 2.0 left pending is finished by this one');
    assert.equal(state.cursor(ALERTS), '1763629300.000300', 'catch-up starts where IMS 2.0 stopped');
    assert.deepEqual([...state.cursors()], [[ALERTS, '1763629300.000300']]);

    const resolved = state.incidentBySource(ALERTS, '1763629100.000100');
    assert.deepEqual(resolved, {
      id: 1, sourceChannel: ALERTS, sourceTs: '1763629100.000100', incidentChannel: INC, incidentTs: '1763629101.000100', ruleNumber: 3,
      head: '[Error]', label: 'APPS', hotline: undefined, text: 'ERROR: first', poster: 'B0NAGIOS1', createdAt: T0, resolvedAt: T0 + HOUR,
      resolvedBy: 'U0HUMAN001', permalink: 'https://example.slack.com/archives/C0INCAPPS1/p1763629101000100', groups: {},
      // Schema 3: no alert key, no repeats, not flapping.
      alertKey: undefined, repeats: 0, lastSeenTs: undefined, lastNoteTs: undefined, flapping: false, acknowledgedAt: undefined, acknowledgedBy: undefined,
    }, 'an incident from before named groups were kept has none');
    assert.equal(state.incidentByPost(INC, '1763629201.000200')?.id, 2);
    assert.equal(state.incidentById(2)?.hotline, 'OnCall');
    assert.deepEqual(state.listIncidents({ open: true }).map((i) => i.id), [2]);
    assert.deepEqual(state.listIncidents({ open: false, channel: INC }).map((i) => i.id), [1]);
    assert.deepEqual(state.incidentEvents(1).map((e) => [e.kind, e.user, e.detail]), [['reaction', 'U0HUMAN001', 'eyes'], ['resolve', 'U0HUMAN001', undefined]]);

    assert.equal(state.claimReminder(INC, '2026-11-20T10'), false, 'a reminder IMS 2.0 posted is not posted again');
    assert.equal(state.getMeta('report:last'), '2026-11-20');
    assert.deepEqual([...state.ownedChannels()], [WAR_ROOM]);
    assert.deepEqual(state.storeGet('war-room', 'room:2'), { channel: WAR_ROOM });

    assert.equal(state.enqueue('forward', 'delivered-1', 'incident-1', {}, T0 + DAY), false, 'a delivered key still refuses its repeat');
    assert.deepEqual(state.outboxStats(), { depth: 1, oldestAt: T0 + 1000, lastError: 'HTTP 400' }, 'the waiting delivery, and the last error of one not delivered');
    assert.deepEqual(state.dueDeliveries(T0 + DAY).map((d) => [d.key, d.attempts, d.payload]), [['waiting-2', 2, { n: 2 }]], 'the waiting delivery goes on; the dead one stays given up');
  } finally {
    state.close();
  }

  const after = inspect(file);
  assert.equal(after.version, SCHEMA_VERSION, 'the file now says which schema it has');
  assert.equal(after.journal, 'wal');
  assert.deepEqual(['events', 'messages', 'incidents', 'incident_events', 'cursors', 'reminders', 'meta', 'owned_channels', 'plugin_store', 'outbox'].map(after.rows),
    [1, 3, 2, 3, 1, 1, 1, 1, 1, 3], 'no row was lost or added by the upgrade (the checks above only read)');
});

test('after the upgrade, new work goes on in the same file and survives a restart', () => {
  const file = path.join(tempDir(), 'ims.db');
  makeIms20Database(file);
  const now = T0 + DAY;

  const first = new State(file);
  first.withinOneCommit(() => {
    assert.equal(first.rememberEvent('Ev0NEW1', now), true);
    assert.equal(first.claimMessage(ALERTS, '1763715600.000100', { type: 'message', text: 'ERROR: new' }, now), 'new');
  });
  assert.equal(first.cursor(ALERTS), '1763715600.000100', 'the claim moved the cursor');
  const incident = first.addIncident({
    sourceChannel: ALERTS, sourceTs: '1763715600.000100', incidentChannel: INC, incidentTs: '1763715601.000100', ruleNumber: 3,
    head: '[Error]', label: 'APPS', text: 'ERROR: new', poster: 'B0NAGIOS1', createdAt: now,
  });
  assert.equal(incident.id, 3, 'numbering goes on after the incidents IMS 2.0 recorded');
  const withGroups = first.addIncident({
    sourceChannel: ALERTS, sourceTs: '1763715650.000100', incidentChannel: INC, incidentTs: '1763715651.000100', ruleNumber: 3,
    head: '[Error]', label: 'APPS', text: 'ERROR: disk full on db1', poster: 'B0NAGIOS1', createdAt: now, groups: { host: 'db1', what: 'disk' },
  });
  assert.deepEqual([incident.groups, withGroups.groups], [{}, { host: 'db1', what: 'disk' }]);
  assert.equal(first.resolveIncident(2, now, 'U0HUMAN001'), true);
  assert.equal(first.claimMessage(ALERTS, '1763715700.000200', {}, now), 'new');
  first.failMessage(ALERTS, '1763715700.000200', now);
  assert.equal(first.enqueue('forward', 'new-4', 'incident-3', { n: 4 }, now), true);
  first.storeSet('war-room', 'room:2', undefined);
  first.close();
  assert.equal(first.isOpen, false);

  const second = new State(file);
  try {
    assert.equal(second.claimMessage(ALERTS, '1763715600.000100', {}, now), 'done', 'the incident finished its message');
    assert.equal(second.claimMessage(ALERTS, '1763715700.000200', {}, now), 'failed', 'a status IMS 2.0 never wrote is kept');
    assert.equal(second.rememberEvent('Ev0NEW1', now), false);
    assert.deepEqual(second.listIncidents().map((i) => [i.id, i.resolvedAt !== undefined]), [[1, true], [2, true], [3, false], [4, false]]);
    assert.deepEqual(second.listIncidents().map((i) => i.groups), [{}, {}, {}, { host: 'db1', what: 'disk' }], 'named groups are kept across a restart');
    assert.deepEqual(second.incidentEvents(2).map((e) => e.kind), ['reply', 'resolve']);
    assert.deepEqual(second.dueDeliveries(now).map((d) => d.key), ['waiting-2', 'new-4'], 'one head per group, in queue order');
    assert.equal(second.storeGet('war-room', 'room:2'), undefined);
    second.prune(now + 2 * DAY);
    assert.deepEqual(second.pendingMessages(), [{ channel: ALERTS, ts: '1763629300.000300', event: { type: 'message', channel: ALERTS, ts: '1763629300.000300', bot_id: 'B0NAGIOS1', text: 'ERROR: disk' } }],
      'pruning forgets handled messages and keeps the pending one');
  } finally {
    second.close();
  }
  assert.equal(inspect(file).version, SCHEMA_VERSION, 'opening an upgraded file again changes nothing about its version');
});

test('an ims.db at schema version 1 gains the named groups of incidents, and its incidents read with none', () => {
  const file = path.join(tempDir(), 'ims.db');
  makeIms20Database(file);
  const v1 = new Database(file);
  v1.pragma('user_version = 1');
  v1.close();

  const state = new State(file);
  try {
    assert.deepEqual(state.listIncidents().map((i) => [i.id, i.groups]), [[1, {}], [2, {}]]);
    const added = state.addIncident({
      sourceChannel: ALERTS, sourceTs: '1763715600.000100', incidentChannel: INC, incidentTs: '1763715601.000100', ruleNumber: 2,
      head: '[Critical]', label: 'APPS', text: 'CRITICAL: web-03 down', poster: 'B0NAGIOS1', createdAt: T0 + DAY, groups: { host: 'web-03' },
    });
    assert.deepEqual(state.incidentById(added.id)?.groups, { host: 'web-03' });
  } finally {
    state.close();
  }
  assert.equal(inspect(file).version, SCHEMA_VERSION);
  assert.ok(SCHEMA_VERSION >= 2);
});

test('a new ims.db is made at the current schema version', () => {
  const file = path.join(tempDir(), 'nested', 'ims.db');
  new State(file).close();
  const made = inspect(file);
  assert.equal(made.version, SCHEMA_VERSION);
  assert.equal(made.rows('incidents'), 0);
  assert.equal(made.journal, 'wal');
});

test('a database a newer IMS has upgraded is refused with both versions, and left untouched', () => {
  const file = path.join(tempDir(), 'ims.db');
  const state = new State(file);
  state.setMeta('written by', 'this IMS');
  state.close();
  // What a newer IMS might have done: a step further, and (say) back to a rollback journal.
  const newer = new Database(file);
  newer.pragma('journal_mode = DELETE');
  newer.exec('ALTER TABLE incidents ADD COLUMN lifecycle TEXT');
  newer.pragma(`user_version = ${SCHEMA_VERSION + 4}`);
  newer.close();

  assert.throws(() => new State(file), (error: unknown) => {
    assert.ok(error instanceof StateVersionError, `expects a StateVersionError, got ${String(error)}`);
    assert.equal(error.found, SCHEMA_VERSION + 4);
    assert.equal(error.known, SCHEMA_VERSION);
    assert.match(error.message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} has schema version ${SCHEMA_VERSION + 4}, this IMS knows up to ${SCHEMA_VERSION}; upgrade IMS`));
    return true;
  });
  const untouched = inspect(file);
  assert.equal(untouched.version, SCHEMA_VERSION + 4);
  assert.equal(untouched.journal, 'delete', 'not even the journal mode was changed');
  assert.equal(untouched.rows('meta'), 1);
});

test('an upgrade step that fails is undone whole and says which step failed and where the file was left', () => {
  const file = path.join(tempDir(), 'ims.db');
  // Not a database IMS made: an `incidents` table without the columns the schema indexes.
  const foreign = new Database(file);
  foreign.exec('CREATE TABLE incidents (id INTEGER PRIMARY KEY, note TEXT)');
  foreign.close();

  assert.throws(() => new State(file), /ims\.db: upgrading the schema to version 1 \(.+\) failed, the file is left at version 0: .*incident_channel/);
  const after = inspect(file);
  assert.equal(after.version, 0);
  assert.equal(after.rows('events'), -1, 'the tables the step made before it failed are gone with it');
});

test('ims refuses to start on an ims.db a newer IMS has upgraded, and says what to do', async () => {
  const dir = tempDir();
  const db = path.join(dir, 'ims.db');
  const config = path.join(dir, 'ims.json');
  writeFileSync(config, JSON.stringify({
    timezone: 'UTC', rules: [{ match: '(?i)error', head: '[Error]', incident: 'APPS' }], incidents: { APPS: { channel: INC } }, state: { path: db },
  }));
  new State(db).close();
  const newer = new Database(db);
  newer.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  newer.close();

  const root = fileURLToPath(new URL('..', import.meta.url));
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(SLACK_|IMS_|NODE_TEST)/.test(key))) as Record<string, string>;
  // Nothing listens on port 9 of this host: IMS must refuse before it tries Slack.
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'ims.ts'), '--config', config], {
    cwd: root, env: { ...env, SLACK_APP_TOKEN: 'xapp-1-test', SLACK_BOT_TOKEN: 'xoxb-test', SLACK_API_URL: 'http://127.0.0.1:9/api/', IMS_START_TIMEOUT_MS: '2000' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString('utf8'); });
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString('utf8'); });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 1, output);
  assert.match(output, new RegExp(`has schema version ${SCHEMA_VERSION + 1}, this IMS knows up to ${SCHEMA_VERSION}; upgrade IMS`));
  assert.doesNotMatch(output, /connecting to Slack/, 'refused before connecting');
  assert.doesNotMatch(output, /^\s+at /m, 'one line, not a stack trace');
  assert.equal(inspect(db).version, SCHEMA_VERSION + 1);
});

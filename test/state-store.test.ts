/**
 * The state store's behaviour, the same on both backends: every test of the first part runs against `State`
 * (SQLite, a temporary file) and `PgState` (a fresh database on a real PostgreSQL server started for this file,
 * or the one `IMS_TEST_DATABASE_URL` names). The second part is PostgreSQL's own: two instances on one
 * database racing for the same claims and changes, migrating together, a failed commit, a server that dies.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Incident } from '../ims.ts';
import type { KeyRecord } from '../ims-lifecycle.ts';
import { PG_SCHEMA_VERSION, PgState } from '../ims-state-pg.ts';
import { State, StateVersionError, type NewIncident, type NewSilence, type StateStore } from '../ims-state.ts';
import { tempDir } from './harness.ts';
import { freshDatabase, startPostgres, type TestPostgres } from './postgres.ts';

const ALERTS = 'C0ALERTS01';
const ALERTS2 = 'C0ALERTS02';
const INC = 'C0INCAPPS1';
const INC2 = 'C0INCINFR1';
const REPORT = 'C0REPORT01';
const NAGIOS = 'B0NAGIOS1';
const HUGO = 'U0HUMAN001';
const ONA = 'U0ONCALL01';
const T0 = Date.UTC(2026, 10, 20, 9);
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** A Slack ts `seconds` after 2025-11-20 09:00 UTC, with its microseconds. */
function ts(seconds: number, micros = 100): string {
  return `${1763629200 + seconds}.${String(micros).padStart(6, '0')}`;
}

/** A Nagios alert as Slack delivers it. */
function alertEvent(channel: string, at: string, text = 'PROBLEM: db1/disk /var is CRITICAL - 95% used'): Record<string, unknown> {
  return { type: 'message', subtype: 'bot_message', channel, ts: at, bot_id: NAGIOS, text };
}

/** An incident opened from the alert at `sourceTs`, reposted one second later in #inc-apps. */
function newIncident(sourceTs: string, extra: Partial<NewIncident> = {}): NewIncident {
  const [seconds, micros] = sourceTs.split('.');
  return {
    sourceChannel: ALERTS, sourceTs, incidentChannel: INC, incidentTs: `${Number(seconds) + 1}.${micros}`, ruleNumber: 3, head: '[Error]', label: 'APPS',
    text: 'PROBLEM: db1/disk /var is CRITICAL - 95% used', poster: NAGIOS, createdAt: T0, groups: { host: 'db1' },
    permalink: `https://example.slack.com/archives/${ALERTS}/p${sourceTs.replace('.', '')}`, ...extra,
  };
}

function silence(extra: Partial<NewSilence> = {}): NewSilence {
  return {
    what: '[Warn]', matcher: { kind: 'head', head: '[Warn]' }, reason: 'deploying apps', createdBy: HUGO, origin: 'slack', channel: REPORT,
    startsAt: T0, endsAt: T0 + HOUR, ...extra,
  };
}

/** A value as JSON sees it: absent and undefined fields alike, as the two backends build records differently. */
function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** A store of either backend: every answer is awaited (a value or a promise of it). */
type AnyStore = StateStore;

/** A backend: how to open a new, empty store of it. */
interface Backend {
  name: string;
  open(): Promise<AnyStore>;
}

/** Every behaviour both backends share, each test on a new, empty store. */
function sharedBehaviour(backend: Backend): void {
  let store: AnyStore;
  beforeEach(async () => { store = await backend.open(); });
  afterEach(async () => { await store.close(); });

  test('an event ID is remembered once, and forgotten by prune only when older than the cutoff', async () => {
    assert.equal(await store.rememberEvent('Ev0OLD0001', T0 - 2 * DAY), true);
    assert.equal(await store.rememberEvent('Ev0NEW0001', T0), true);
    assert.equal(await store.rememberEvent('Ev0NEW0001', T0 + 1), false);
    await store.prune(T0 - DAY);
    assert.equal(await store.rememberEvent('Ev0OLD0001', T0), true, 'the old record was pruned');
    assert.equal(await store.rememberEvent('Ev0NEW0001', T0), false, 'the recent record was kept');
  });

  test('a message is claimed once: pending until finished, then done; one Slack refused is failed for good', async () => {
    const a = ts(10);
    const event = alertEvent(ALERTS, a);
    assert.equal(await store.claimMessage(ALERTS, a, event, T0), 'new');
    assert.equal(await store.claimMessage(ALERTS, a, event, T0 + 1), 'pending');
    assert.deepEqual(await store.pendingMessages(), [{ channel: ALERTS, ts: a, event }]);
    assert.deepEqual(await store.pendingMessages(T0), [], 'claimed at T0: not before T0');
    assert.deepEqual(await store.pendingMessages(T0 + 1), [{ channel: ALERTS, ts: a, event }]);
    await store.finishMessage(ALERTS, a, T0 + 2);
    assert.equal(await store.claimMessage(ALERTS, a, event), 'done');
    assert.deepEqual(await store.pendingMessages(), []);

    const b = ts(20);
    assert.equal(await store.claimMessage(ALERTS, b, alertEvent(ALERTS, b), T0 + 3), 'new');
    await store.failMessage(ALERTS, b, T0 + 5);
    assert.equal(await store.claimMessage(ALERTS, b, alertEvent(ALERTS, b)), 'failed');
    assert.deepEqual(await store.failedMessages(T0), [{ channel: ALERTS, ts: b, event: alertEvent(ALERTS, b), failedAt: T0 + 5 }]);
    assert.deepEqual(await store.failedMessages(T0 + 6), []);
    assert.equal(await store.claimMessage(ALERTS2, b, alertEvent(ALERTS2, b)), 'new', 'the same ts in another channel is another message');
  });

  test('pending messages come back oldest ts first, whatever order they were claimed in', async () => {
    for (const seconds of [30, 10, 20]) await store.claimMessage(ALERTS, ts(seconds), alertEvent(ALERTS, ts(seconds)), T0);
    assert.deepEqual((await store.pendingMessages()).map((m) => m.ts), [ts(10), ts(20), ts(30)]);
  });

  test("a claim moves its channel's cursor forward, never back, and not when told not to", async () => {
    assert.equal(await store.cursor(ALERTS), undefined);
    await store.claimMessage(ALERTS, ts(50), alertEvent(ALERTS, ts(50)), T0);
    assert.equal(await store.cursor(ALERTS), ts(50));
    await store.claimMessage(ALERTS, ts(40), alertEvent(ALERTS, ts(40)), T0);
    assert.equal(await store.cursor(ALERTS), ts(50), 'an earlier message leaves it');
    await store.claimMessage(ALERTS, ts(60), alertEvent(ALERTS, ts(60)), T0, false);
    assert.equal(await store.cursor(ALERTS), ts(50), 'a claim told not to advance leaves it');
    // Later as text ("9" > "1"), earlier as a number: Slack ts compare as numbers.
    await store.advanceCursor(ALERTS, '999999999.999999');
    assert.equal(await store.cursor(ALERTS), ts(50));
    await store.advanceCursor(ALERTS, ts(50, 200));
    await store.advanceCursor(ALERTS2, ts(5));
    assert.deepEqual(await store.cursors(), new Map([[ALERTS, ts(50, 200)], [ALERTS2, ts(5)]]));
  });

  test('an incident is recorded once per source, finishes its message, and is found by source, post and number', async () => {
    const a = ts(100);
    await store.claimMessage(ALERTS, a, alertEvent(ALERTS, a), T0);
    const post = { text: 'PROBLEM: db1/disk', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*[Error]* db1/disk' } }] };
    const first = await store.addIncident(newIncident(a, { alertKey: 'nagios:db1/disk', post, hotline: 'OnCall' }));
    assert.ok(Number.isInteger(first.id) && first.id > 0);
    assert.deepEqual({ groups: first.groups, repeats: first.repeats, flapping: first.flapping, alertKey: first.alertKey },
      { groups: { host: 'db1' }, repeats: 0, flapping: false, alertKey: 'nagios:db1/disk' });
    assert.equal(await store.claimMessage(ALERTS, a, alertEvent(ALERTS, a)), 'done', 'recording it finished its message');

    const again = await store.addIncident(newIncident(a, { text: 'a second attempt', createdAt: T0 + MINUTE }));
    assert.deepEqual(plain(again), plain(first), 'the incident already recorded is returned as it was');
    assert.deepEqual(plain(await store.incidentBySource(ALERTS, a)), plain(first));
    assert.deepEqual(plain(await store.incidentById(first.id)), plain(first));
    assert.deepEqual(plain(await store.incidentByPost(INC, first.incidentTs)), plain(first));
    assert.deepEqual(await store.incidentPost(first.id), post);
    assert.equal(await store.incidentBySource(ALERTS, ts(999)), undefined);
    assert.equal(await store.incidentById(first.id + 1000), undefined);

    const b = ts(110);
    await store.claimMessage(ALERTS, b, alertEvent(ALERTS, b), T0);
    const second = await store.addIncident(newIncident(b, { finishesMessage: false, groups: undefined }));
    assert.deepEqual(second.groups, {});
    assert.equal(await store.claimMessage(ALERTS, b, alertEvent(ALERTS, b)), 'pending', 'parts of its post still to go: not finished');
    assert.ok(second.id > first.id);
  });

  test("a digest lists its incidents oldest first, and keeps the first record of its post", async () => {
    const digestTs = ts(300);
    const ids: number[] = [];
    for (const seconds of [200, 210, 220]) ids.push((await store.addIncident(newIncident(ts(seconds), { incidentTs: digestTs }))).id);
    assert.deepEqual((await store.incidentsByPost(INC, digestTs)).map((i) => i.id), ids);
    const post = { text: '3 incidents', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '3 alerts in #alerts-apps' } }] };
    await store.addDigest(INC, digestTs, post, T0);
    await store.addDigest(INC, digestTs, { text: 'another', blocks: [] }, T0 + 1);
    assert.deepEqual(await store.digestPost(INC, digestTs), post);
    assert.equal(await store.digestPost(INC, ts(301)), undefined);
    assert.deepEqual(await store.incidentsByPost(INC, ts(301)), []);
  });

  test('incidents are listed in creation order, by time, state and channel', async () => {
    const early = await store.addIncident(newIncident(ts(1), { createdAt: T0 }));
    const middle = await store.addIncident(newIncident(ts(2), { createdAt: T0 + HOUR, incidentChannel: INC2 }));
    const late = await store.addIncident(newIncident(ts(3), { createdAt: T0 + 2 * HOUR }));
    await store.resolveIncident(middle.id, T0 + 3 * HOUR, HUGO);
    const ids = (incidents: Incident[]) => incidents.map((i) => i.id);
    assert.deepEqual(ids(await store.listIncidents()), [early.id, middle.id, late.id]);
    assert.deepEqual(ids(await store.listIncidents({ since: T0 + HOUR })), [middle.id, late.id]);
    assert.deepEqual(ids(await store.listIncidents({ open: true })), [early.id, late.id]);
    assert.deepEqual(ids(await store.listIncidents({ open: false })), [middle.id]);
    assert.deepEqual(ids(await store.listIncidents({ channel: INC })), [early.id, late.id]);
    assert.deepEqual(ids(await store.listIncidents({ since: T0 + HOUR, open: true, channel: INC })), [late.id]);
    assert.deepEqual(await store.incidentCounts(), { opened: 3, resolved: 1, open: 2 });
  });

  test('an incident is resolved and reopened once each, each change recorded as an event', async () => {
    const { id } = await store.addIncident(newIncident(ts(1)));
    assert.equal(await store.resolveIncident(id, T0 + HOUR, HUGO), true);
    assert.equal(await store.resolveIncident(id, T0 + 2 * HOUR, ONA), false, 'already resolved');
    const resolved = await store.incidentById(id);
    assert.deepEqual([resolved?.resolvedAt, resolved?.resolvedBy], [T0 + HOUR, HUGO]);
    assert.equal(await store.reopenIncident(id, T0 + 3 * HOUR, ONA), true);
    assert.equal(await store.reopenIncident(id, T0 + 4 * HOUR, ONA), false, 'not resolved');
    const reopened = await store.incidentById(id);
    assert.deepEqual([reopened?.resolvedAt, reopened?.resolvedBy], [undefined, undefined]);
    assert.equal(await store.resolveIncident(id, T0 + 5 * HOUR, 'recovery'), true);
    assert.deepEqual(plain(await store.incidentEvents(id)), [
      { incidentId: id, kind: 'resolve', user: HUGO, at: T0 + HOUR },
      { incidentId: id, kind: 'reopen', user: ONA, at: T0 + 3 * HOUR },
      { incidentId: id, kind: 'resolve', user: 'recovery', at: T0 + 5 * HOUR },
    ]);
  });

  test('the first acknowledgement is kept, with an event only when its way is given', async () => {
    const clicked = await store.addIncident(newIncident(ts(1)));
    assert.equal(await store.acknowledgeIncident(clicked.id, T0 + MINUTE, HUGO, 'button'), true);
    assert.equal(await store.acknowledgeIncident(clicked.id, T0 + 2 * MINUTE, ONA, 'button'), false);
    const after = await store.incidentById(clicked.id);
    assert.deepEqual([after?.acknowledgedAt, after?.acknowledgedBy], [T0 + MINUTE, HUGO]);
    assert.deepEqual(plain(await store.incidentEvents(clicked.id)), [{ incidentId: clicked.id, kind: 'acknowledge', user: HUGO, detail: 'button', at: T0 + MINUTE }]);

    const reacted = await store.addIncident(newIncident(ts(2)));
    await store.addIncidentEvent({ incidentId: reacted.id, kind: 'reaction', user: ONA, detail: 'eyes', at: T0 + MINUTE });
    assert.equal(await store.acknowledgeIncident(reacted.id, T0 + MINUTE, ONA), true);
    assert.deepEqual((await store.incidentEvents(reacted.id)).map((e) => e.kind), ['reaction'], 'the reaction is its record: no second event');
  });

  test("an incident's events come back in the order they happened, ties in the order recorded", async () => {
    const { id } = await store.addIncident(newIncident(ts(1)));
    await store.addIncidentEvent({ incidentId: id, kind: 'reply', user: HUGO, detail: 'looking', at: T0 + 2 * MINUTE });
    await store.addIncidentEvent({ incidentId: id, kind: 'hotline', detail: 'OnCall', at: T0 });
    await store.addIncidentEvent({ incidentId: id, kind: 'reaction', user: ONA, detail: 'eyes', at: T0 + MINUTE });
    await store.addIncidentEvent({ incidentId: id, kind: 'note', detail: 'repeats: 3', at: T0 + MINUTE });
    assert.deepEqual(plain(await store.incidentEvents(id)), [
      { incidentId: id, kind: 'hotline', detail: 'OnCall', at: T0 },
      { incidentId: id, kind: 'reaction', user: ONA, detail: 'eyes', at: T0 + MINUTE },
      { incidentId: id, kind: 'note', detail: 'repeats: 3', at: T0 + MINUTE },
      { incidentId: id, kind: 'reply', user: HUGO, detail: 'looking', at: T0 + 2 * MINUTE },
    ]);
    assert.deepEqual(await store.incidentEvents(id + 1), []);
  });

  test('key records are saved and updated in place, in first-recorded order, and the incident takes its first key', async () => {
    const { id } = await store.addIncident(newIncident(ts(1)));
    const disk: KeyRecord = { key: 'nagios:db1/disk', incidentId: id, state: 'firing', changedTs: ts(1), changes: [ts(1)], lastSeenTs: ts(1), title: 'db1/disk' };
    const load: KeyRecord = { key: 'nagios:db1/load', incidentId: id, state: 'firing', changedTs: ts(1), changes: [], lastSeenTs: ts(1), title: 'db1/load' };
    await store.saveKeyRecords([disk, load]);
    assert.equal((await store.incidentById(id))?.alertKey, disk.key);
    const recovered = { ...load, state: 'resolved' as const, changedTs: ts(60), changes: [ts(60)], lastSeenTs: ts(60) };
    const repeated = { ...disk, lastSeenTs: ts(30) };
    await store.saveKeyRecords([recovered, { ...repeated, title: 'overwritten in the same call' }, repeated]);
    assert.deepEqual(await store.keyRecords(id), [repeated, recovered]);
    assert.deepEqual(await store.keyRecord(load.key), recovered);
    assert.equal(await store.keyRecord('nagios:db9/none'), undefined);
    assert.equal((await store.incidentById(id))?.alertKey, disk.key, 'the first key stays the incident key');
    await store.saveKeyRecords([]);
    assert.deepEqual(await store.keyRecords(id), [repeated, recovered]);
  });

  test('repeats, the last message seen, flapping and the post edited in place are kept', async () => {
    const { id } = await store.addIncident(newIncident(ts(1)));
    await store.noteRepeat(id, ts(10), false);
    await store.noteRepeat(id, ts(20), true);
    await store.noteRepeat(id, ts(30), false);
    let incident = await store.incidentById(id);
    assert.deepEqual([incident?.repeats, incident?.lastSeenTs, incident?.lastNoteTs], [3, ts(30), ts(20)]);
    await store.noteSeen(id, ts(40));
    assert.equal((await store.incidentById(id))?.lastSeenTs, ts(40));
    await store.setFlapping(id, true);
    assert.deepEqual((await store.flappingIncidents()).map((i) => i.id), [id]);
    incident = await store.incidentById(id);
    assert.equal(incident?.flapping, true);
    await store.setFlapping(id, false);
    assert.deepEqual(await store.flappingIncidents(), []);
    assert.equal(await store.incidentPost(id), undefined);
    const post = { text: 'edited', blocks: [{ type: 'context', elements: [{ type: 'mrkdwn', text: 'repeated 3 times' }] }] };
    await store.setIncidentPost(id, post);
    assert.deepEqual(await store.incidentPost(id), post);
  });

  test('the outbox queues a key once, delivers each group strictly in order, retries later and steps over the dead', async () => {
    assert.equal(await store.enqueue('forward', 'incident-1:open', 'incident-1', { id: 1, state: 'open' }, T0), true);
    assert.equal(await store.enqueue('forward', 'incident-1:open', 'incident-1', { id: 1, state: 'again' }, T0), false);
    assert.equal(await store.enqueue('forward', 'incident-1:resolve', 'incident-1', { id: 1, state: 'resolved' }, T0 + 1), true);
    assert.equal(await store.enqueue('forward', 'incident-2:open', 'incident-2', { id: 2, state: 'open' }, T0 + 2), true);
    const keys = async (now: number, limit?: number) => (await store.dueDeliveries(now, limit)).map((d) => d.key);
    assert.deepEqual(await keys(T0 + 10), ['incident-1:open', 'incident-2:open'], 'the head of each group');
    assert.deepEqual(await keys(T0 + 10, 1), ['incident-1:open']);
    const [head] = await store.dueDeliveries(T0 + 10);
    assert.deepEqual(plain(head), { id: head.id, plugin: 'forward', key: 'incident-1:open', group: 'incident-1', payload: { id: 1, state: 'open' }, attempts: 0, nextAt: T0, createdAt: T0 });
    await store.markRetry(head.id, T0 + MINUTE, 'HTTP 503 from argus');
    assert.deepEqual(await keys(T0 + 10), ['incident-2:open'], 'its group waits for it');
    assert.deepEqual(await store.outboxStats(), { depth: 3, oldestAt: T0, lastError: 'HTTP 503 from argus' });
    const [retried] = await store.dueDeliveries(T0 + MINUTE);
    assert.deepEqual([retried.key, retried.attempts, retried.lastError], ['incident-1:open', 1, 'HTTP 503 from argus']);
    await store.markDelivered(retried.id, T0 + MINUTE);
    assert.deepEqual(await keys(T0 + MINUTE), ['incident-1:resolve', 'incident-2:open']);
    const next = (await store.dueDeliveries(T0 + MINUTE))[0];
    await store.markDead(next.id, 'HTTP 400: refused');
    assert.deepEqual(await keys(T0 + MINUTE), ['incident-2:open']);
    assert.deepEqual(await store.outboxStats(), { depth: 1, oldestAt: T0 + 2, lastError: 'HTTP 400: refused' });
  });

  test("a plugin's values are its own: set, replaced, deleted with undefined", async () => {
    assert.equal(await store.storeGet('war-room', 'room:1'), undefined);
    await store.storeSet('war-room', 'room:1', { channel: 'C0WARROOM1', members: [HUGO, ONA] });
    await store.storeSet('argus', 'room:1', 42);
    assert.deepEqual(await store.storeGet('war-room', 'room:1'), { channel: 'C0WARROOM1', members: [HUGO, ONA] });
    await store.storeSet('war-room', 'room:1', 'archived');
    assert.equal(await store.storeGet('war-room', 'room:1'), 'archived');
    await store.storeSet('war-room', 'room:1', undefined);
    assert.equal(await store.storeGet('war-room', 'room:1'), undefined);
    assert.equal(await store.storeGet('argus', 'room:1'), 42);
  });

  test('owned channels, meta values and reminder hours are kept', async () => {
    await store.ownChannel('C0WARROOM1', 'war-room');
    await store.ownChannel('C0WARROOM1', 'war-room');
    await store.ownChannel('C0WARROOM2', 'war-room');
    assert.deepEqual(await store.ownedChannels(), new Set(['C0WARROOM1', 'C0WARROOM2']));
    assert.equal(await store.getMeta('report:last'), undefined);
    await store.setMeta('report:last', '2026-11-19');
    await store.setMeta('report:last', '2026-11-20');
    assert.equal(await store.getMeta('report:last'), '2026-11-20');
    assert.equal(await store.claimReminder(INC, '2026-11-20T10'), true);
    assert.equal(await store.claimReminder(INC, '2026-11-20T10'), false);
    assert.equal(await store.claimReminder(INC2, '2026-11-20T10'), true);
    await store.releaseReminder(INC, '2026-11-20T10');
    assert.equal(await store.claimReminder(INC, '2026-11-20T10'), true, 'given back: claimed again');
  });

  test('silences are in force in their window, end early once, and are summarised once', async () => {
    const deploy = await store.addSilence(silence());
    assert.deepEqual(plain(deploy), plain({ ...silence(), id: deploy.id, silenced: 0 }));
    const later = await store.addSilence(silence({ what: 'db1', matcher: { kind: 'label', label: 'db1' }, startsAt: T0 + 2 * HOUR, endsAt: T0 + 3 * HOUR }));
    const ids = (silences: { id: number }[]) => silences.map((s) => s.id);
    assert.deepEqual(ids(await store.activeSilences(T0 + MINUTE)), [deploy.id]);
    assert.deepEqual(ids(await store.activeSilences(T0 + 2 * HOUR)), [later.id]);
    assert.deepEqual(ids(await store.activeSilences(T0 + 3 * HOUR)), [], 'expired');

    assert.equal(await store.endSilence(deploy.id, T0 + 10 * MINUTE, ONA), true);
    assert.equal(await store.endSilence(deploy.id, T0 + 20 * MINUTE, HUGO), false, 'ended already');
    assert.equal(await store.endSilence(later.id, T0 + 4 * HOUR, HUGO), false, 'expired already');
    const ended = await store.silenceById(deploy.id);
    assert.deepEqual([ended?.endedAt, ended?.endedBy], [T0 + 10 * MINUTE, ONA]);
    assert.deepEqual(ids(await store.activeSilences(T0 + 11 * MINUTE)), []);
    assert.equal(await store.silenceById(deploy.id + 100), undefined);

    assert.deepEqual(ids(await store.silencesToSummarise(T0 + HOUR)), [deploy.id]);
    assert.deepEqual(ids(await store.silencesToSummarise(T0 + 3 * HOUR)), [deploy.id, later.id]);
    assert.deepEqual(ids(await store.endedSilences(T0, T0 + 3 * HOUR)), [later.id, deploy.id], 'newest first');
    assert.deepEqual(ids(await store.endedSilences(T0 + HOUR, T0 + 3 * HOUR)), [later.id]);
    await store.markSilenceSummarised(deploy.id, T0 + HOUR);
    await store.markSilenceSummarised(deploy.id, T0 + 2 * HOUR);
    assert.equal((await store.silenceById(deploy.id))?.summaryAt, T0 + HOUR, 'marked once');
    assert.deepEqual(ids(await store.silencesToSummarise(T0 + 3 * HOUR)), [later.id]);
  });

  test("a maintenance window's opening is recorded once", async () => {
    const window = silence({ what: '*', matcher: { kind: 'everything' }, createdBy: 'db-patching', origin: 'maintenance', windowKey: 'db-patching@2026-11-20T09:00Z' });
    const first = await store.addSilence(window);
    const again = await store.addSilence({ ...window, reason: 'opened again by another timer' });
    assert.equal(again.id, first.id);
    assert.deepEqual([again.reason, again.origin, again.windowKey], ['deploying apps', 'maintenance', 'db-patching@2026-11-20T09:00Z']);
    assert.deepEqual((await store.activeSilences(T0 + 1)).map((s) => s.id), [first.id]);
  });

  test('a silenced alert is counted once per message, and a later recovery of its key marks it recovered', async () => {
    const { id } = await store.addSilence(silence());
    const alert = { silenceId: id, channel: ALERTS, ts: ts(10), key: 'nagios:db1/disk', text: 'PROBLEM: db1/disk', at: T0 + MINUTE };
    assert.equal(await store.noteSilenced(alert), true);
    assert.equal(await store.noteSilenced(alert), false, 'a redelivery is not counted again');
    assert.equal(await store.noteSilenced({ ...alert, ts: ts(20), at: T0 + 2 * MINUTE }), true);
    assert.equal(await store.noteSilenced({ ...alert, ts: ts(15), key: 'nagios:db2/load', text: 'PROBLEM: db2/load', at: T0 + 90_000 }), true);
    assert.equal(await store.noteSilenced({ ...alert, ts: ts(40), at: T0 + 4 * MINUTE }), true);
    assert.equal((await store.silenceById(id))?.silenced, 4);
    await store.noteSilencedRecovery('nagios:db1/disk', ts(30));
    assert.deepEqual((await store.silencedAlerts(id)).map((a) => [a.ts, a.key, a.recoveredTs]), [
      [ts(10), 'nagios:db1/disk', ts(30)],
      [ts(15), 'nagios:db2/load', undefined],
      [ts(20), 'nagios:db1/disk', ts(30)],
      [ts(40), 'nagios:db1/disk', undefined],
    ]);
  });

  test('what one commit records lands together, and none of it when its work throws', async () => {
    const a = ts(70);
    // The work returns its calls' answers as they are (values in SQLite, promises in PostgreSQL): a slice waits for none of its own.
    const answers = store.withinOneCommit(() => [
      store.rememberEvent('Ev0SLICE01', T0), store.claimMessage(ALERTS, a, alertEvent(ALERTS, a), T0), store.setMeta('slice', 'one'),
    ]);
    assert.deepEqual(await Promise.all(await answers), [true, 'new', undefined]);
    assert.equal(await store.cursor(ALERTS), a);
    assert.equal(await store.getMeta('slice'), 'one');

    const b = ts(80);
    await assert.rejects(async () => store.withinOneCommit(() => {
      void store.rememberEvent('Ev0SLICE02', T0);
      void store.claimMessage(ALERTS, b, alertEvent(ALERTS, b), T0);
      throw new Error('the slice failed half-way');
    }), /the slice failed half-way/);
    assert.equal(await store.rememberEvent('Ev0SLICE02', T0), true, 'not recorded');
    assert.equal(await store.cursor(ALERTS), a, 'the cursor did not move');
    assert.equal(await store.claimMessage(ALERTS, b, alertEvent(ALERTS, b), T0), 'new');
  });

  test('prune forgets handled messages and old outbox history, and keeps what is still pending', async () => {
    const old = T0 - 2 * DAY;
    for (const seconds of [1, 2, 3]) await store.claimMessage(ALERTS, ts(seconds), alertEvent(ALERTS, ts(seconds)), old);
    await store.finishMessage(ALERTS, ts(1), old);
    await store.failMessage(ALERTS, ts(2), old);
    await store.enqueue('forward', 'ancient', 'incident-1', { n: 1 }, old - 31 * DAY);
    await store.enqueue('forward', 'recent', 'incident-1', { n: 2 }, old);
    await store.enqueue('forward', 'waiting', 'incident-2', { n: 3 }, old - 31 * DAY);
    const [ancient] = await store.dueDeliveries(old);
    await store.markDelivered(ancient.id, old);
    const recent = (await store.dueDeliveries(old)).find((d) => d.key === 'recent')!;
    await store.markDelivered(recent.id, old);
    await store.prune(T0 - DAY);
    assert.equal(await store.claimMessage(ALERTS, ts(1), alertEvent(ALERTS, ts(1))), 'new', 'a handled message was forgotten');
    assert.equal(await store.claimMessage(ALERTS, ts(2), alertEvent(ALERTS, ts(2))), 'new', 'a failed message was forgotten');
    assert.equal(await store.claimMessage(ALERTS, ts(3), alertEvent(ALERTS, ts(3))), 'pending', 'a pending message is kept');
    assert.equal(await store.enqueue('forward', 'ancient', 'incident-1', { n: 1 }), true, 'delivered over 30 days before the cutoff: forgotten');
    assert.equal(await store.enqueue('forward', 'recent', 'incident-1', { n: 2 }), false, 'delivered recently: its key still guards');
    assert.equal(await store.enqueue('forward', 'waiting', 'incident-2', { n: 3 }), false, 'not delivered: kept');
  });

  test('a closed store says so', async () => {
    assert.equal(store.isOpen, true);
    await store.close();
    assert.equal(store.isOpen, false);
    await store.close();
  });
}

describe('SQLite state store (State)', () => {
  sharedBehaviour({ name: 'SQLite', open: async () => new State(path.join(tempDir(), 'ims.db')) });
});

describe('PostgreSQL state store (PgState)', () => {
  let server: TestPostgres;
  before(async () => { server = await startPostgres(); });
  after(async () => { await server?.stop(); });
  sharedBehaviour({ name: 'PostgreSQL', open: async () => PgState.open(await freshDatabase(server.url)) });

  describe('several instances on one database', () => {
    let url: string;
    let stores: PgState[] = [];
    const open = async () => { const store = await PgState.open(url); stores.push(store); return store; };
    beforeEach(async () => { url = await freshDatabase(server.url); });
    afterEach(async () => { await Promise.all(stores.map((s) => s.close())); stores = []; });

    test('two instances racing for the same 50 messages claim each exactly once', async () => {
      const [a, b] = [await open(), await open()];
      const messages = Array.from({ length: 50 }, (_, i) => ts(i, 100 + i));
      const claimAll = (store: PgState, order: string[]) => Promise.all(order.map((m) => store.claimMessage(ALERTS, m, alertEvent(ALERTS, m), T0)));
      const [byA, byB] = await Promise.all([claimAll(a, messages), claimAll(b, messages)]);
      messages.forEach((m, i) => {
        assert.deepEqual([byA[i], byB[i]].sort(), ['new', 'pending'], `${m}: claimed by exactly one, ${byA[i]}/${byB[i]}`);
      });
      assert.equal(await a.cursor(ALERTS), messages.at(-1));
    });

    test('two instances claiming the same messages in opposite orders, a slice each, claim each once (a deadlock is sent again)', async () => {
      const [a, b] = [await open(), await open()];
      const messages = Array.from({ length: 50 }, (_, i) => ts(100 + i));
      const slice = (store: PgState, order: string[]) => store.withinOneCommit(() => Promise.all(order.map((m) => store.claimMessage(ALERTS, m, alertEvent(ALERTS, m), T0))));
      for (let round = 0; round < 3; round++) {
        const batch = messages.map((m) => `${m.slice(0, -1)}${round}`);
        const [byA, byB] = await Promise.all([slice(a, batch), slice(b, [...batch].reverse())]);
        const claimsOf = (m: string) => [byA[batch.indexOf(m)], byB[batch.length - 1 - batch.indexOf(m)]].sort();
        for (const m of batch) assert.deepEqual(claimsOf(m), ['new', 'pending'], m);
      }
      assert.equal((await a.pendingMessages()).length, 150);
    });

    test('two instances resolving, acknowledging and ending the same things at once: each happens once', async () => {
      const [a, b] = [await open(), await open()];
      const incidents = await Promise.all(Array.from({ length: 20 }, (_, i) => a.addIncident(newIncident(ts(i)))));
      const silences = await Promise.all(Array.from({ length: 10 }, (_, i) => a.addSilence(silence({ what: `db${i}`, matcher: { kind: 'label', label: `db${i}` } }))));
      const [resolvedA, resolvedB, ackA, ackB, endA, endB, remindA, remindB] = await Promise.all([
        Promise.all(incidents.map((i) => a.resolveIncident(i.id, T0 + HOUR, HUGO))), Promise.all(incidents.map((i) => b.resolveIncident(i.id, T0 + HOUR, ONA))),
        Promise.all(incidents.map((i) => a.acknowledgeIncident(i.id, T0, HUGO, 'button'))), Promise.all(incidents.map((i) => b.acknowledgeIncident(i.id, T0, ONA, 'button'))),
        Promise.all(silences.map((s) => a.endSilence(s.id, T0 + MINUTE, HUGO))), Promise.all(silences.map((s) => b.endSilence(s.id, T0 + MINUTE, ONA))),
        Promise.all(incidents.map((_, h) => a.claimReminder(INC, `2026-11-20T${h}`))), Promise.all(incidents.map((_, h) => b.claimReminder(INC, `2026-11-20T${h}`))),
      ]);
      const once = (x: boolean[], y: boolean[], what: string) => x.forEach((value, i) => assert.equal(Number(value) + Number(y[i]), 1, `${what} #${i}`));
      once(resolvedA, resolvedB, 'resolved');
      once(ackA, ackB, 'acknowledged');
      once(endA, endB, 'ended');
      once(remindA, remindB, 'reminder claimed');
      for (const incident of incidents) {
        const kinds = (await b.incidentEvents(incident.id)).map((e) => e.kind).sort();
        assert.deepEqual(kinds, ['acknowledge', 'resolve'], `incident #${incident.id}: one event of each`);
      }
    });

    test('two instances recording the same source or window at once get the same incident and silence', async () => {
      const [a, b] = [await open(), await open()];
      const sources = Array.from({ length: 20 }, (_, i) => ts(i));
      const [byA, byB] = await Promise.all([Promise.all(sources.map((s) => a.addIncident(newIncident(s)))), Promise.all(sources.map((s) => b.addIncident(newIncident(s))))]);
      sources.forEach((s, i) => assert.equal(byA[i].id, byB[i].id, s));
      assert.equal((await a.listIncidents()).length, 20);
      const window = silence({ origin: 'maintenance', createdBy: 'db-patching', windowKey: 'db-patching@2026-11-20T09:00Z' });
      const [openedA, openedB] = await Promise.all([a.addSilence(window), b.addSilence(window)]);
      assert.equal(openedA.id, openedB.id);
    });

    test('instances opened at the same time migrate the database once', async () => {
      await Promise.all([open(), open(), open(), open()]);
      const client = new pg.Client(url);
      await client.connect();
      try {
        const { rows } = await client.query('SELECT version, COUNT(*)::int AS times FROM schema_migrations GROUP BY version ORDER BY version');
        assert.deepEqual(rows, Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => ({ version: i + 1, times: 1 })));
      } finally {
        await client.end();
      }
      const reopened = await open();
      assert.equal(await reopened.rememberEvent('Ev0AFTER01'), true);
    });

    test('a database a newer IMS has migrated is refused, not misread', async () => {
      await (await open()).close();
      const client = new pg.Client(url);
      await client.connect();
      await client.query(`INSERT INTO schema_migrations (version, what, applied_at) VALUES (${PG_SCHEMA_VERSION + 1}, 'from the future', 0)`);
      await client.end();
      const password = decodeURIComponent(new URL(url).password);
      await assert.rejects(PgState.open(url), (error: unknown) => {
        assert.ok(error instanceof StateVersionError, String(error));
        assert.deepEqual([error.found, error.known], [PG_SCHEMA_VERSION + 1, PG_SCHEMA_VERSION]);
        assert.ok(!password || !error.message.includes(password), 'the password is not in the message');
        return true;
      });
    });

    test('a commit with a statement the database refuses records nothing of its slice, and says which call failed', async () => {
      const store = await open();
      const a = ts(5);
      const slice = store.withinOneCommit(() => Promise.all([
        store.rememberEvent('Ev0ROLLED1', T0),
        store.claimMessage(ALERTS, a, alertEvent(ALERTS, a), T0),
        // Not an incident number PostgreSQL can store (beyond BIGINT): refused by the server, inside the transaction.
        store.addIncidentEvent({ incidentId: 2 ** 70, kind: 'note', detail: 'bad', at: T0 }),
      ]));
      await assert.rejects(slice, /addIncidentEvent.*none of them is recorded|none of them is recorded.*addIncidentEvent/s);
      assert.equal(await store.rememberEvent('Ev0ROLLED1', T0), true);
      assert.equal(await store.claimMessage(ALERTS, a, alertEvent(ALERTS, a), T0), 'new');
      assert.equal(await store.cursor(ALERTS), a);
    });

    test('a NUL character in a Slack text is stored (as U+FFFD), not refused', async () => {
      const store = await open();
      const incident = await store.addIncident(newIncident(ts(1), { text: 'PROBLEM: db1\u0000disk' }));
      assert.equal((await store.incidentById(incident.id))?.text, 'PROBLEM: db1\uFFFDdisk');
      await store.claimMessage(ALERTS, ts(2), alertEvent(ALERTS, ts(2), 'nul \u0000 inside'), T0);
      assert.equal((await store.pendingMessages())[0].event.text, 'nul \u0000 inside', 'JSON keeps it as written');
    });

    test('while the server is frozen a call waits, and it is answered once the server goes on', async (t) => {
      if (server.external) return t.skip('IMS_TEST_DATABASE_URL names a server these tests did not start: it is not theirs to freeze');
      assert.ok(server.pause && server.resume, 'a server started by the tests can be frozen');
      const store = await open();
      server.pause();
      let answered: boolean | undefined;
      const call = store.rememberEvent('Ev0FROZEN1', T0).then((value) => { answered = value; return value; }, (error: unknown) => { server.resume!(); throw error; });
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(answered, undefined, 'no answer from a frozen server');
      server.resume();
      assert.equal(await call, true);
    });

    test('after the server is killed and restarted, the same store answers again', async (t) => {
      if (server.external) return t.skip('IMS_TEST_DATABASE_URL names a server these tests did not start: it is not theirs to kill');
      assert.ok(server.kill && server.restart, 'a server started by the tests can be killed and restarted');
      const store = await open();
      assert.equal(await store.rememberEvent('Ev0BEFORE1', T0), true);
      await server.kill();
      await assert.rejects(store.rememberEvent('Ev0DURING1', T0), /PostgreSQL state .*rememberEvent failed/);
      await server.restart();
      assert.equal(await store.rememberEvent('Ev0BEFORE1', T0), false, 'committed before the crash: kept');
      assert.equal(await store.rememberEvent('Ev0AFTER01', T0), true);
    });
  });

  describe('leases and the shared posting pace, across instances', () => {
    let url: string;
    let stores: PgState[] = [];
    const open = async () => { const store = await PgState.open(url); stores.push(store); return store; };
    beforeEach(async () => { url = await freshDatabase(server.url); });
    afterEach(async () => { await Promise.all(stores.map((s) => s.close())); stores = []; });

    test('five holders on three instances racing for a lease: one holds it, all are told the same holder and term, round after round', async () => {
      const instances = [await open(), await open(), await open()];
      const holders = ['ims-a', 'ims-b', 'ims-c', 'ims-d', 'ims-e'];
      const ttl = 10_000;
      for (let round = 0; round < 5; round++) {
        // Each round starts when the lease of the round before has expired.
        const at = T0 + round * ttl;
        const answers = await Promise.all(holders.map((holder, i) => instances[i % instances.length].acquireLease('report', holder, ttl, at)));
        const winners = answers.filter((a) => a.held);
        assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(answers)}`);
        const expected = { holder: winners[0].holder, expiresAt: at + ttl, term: round + 1 };
        for (const [i, answer] of answers.entries()) {
          assert.deepEqual({ holder: answer.holder, expiresAt: answer.expiresAt, term: answer.term }, expected, `round ${round}, ${holders[i]}`);
          assert.equal(answer.held, answer.holder === holders[i]);
        }
        assert.deepEqual(await instances[2].leaseHolder('report', at + 1), expected);
      }
    });

    test('the holder renews its lease (same term, later expiry); another is refused until it expires, then takes it with a higher term', async () => {
      const [a, b] = [await open(), await open()];
      assert.deepEqual(await a.acquireLease('outbox', 'ims-a', 10_000, T0), { held: true, holder: 'ims-a', expiresAt: T0 + 10_000, term: 1 });
      assert.deepEqual(await b.acquireLease('outbox', 'ims-b', 10_000, T0 + 5_000), { held: false, holder: 'ims-a', expiresAt: T0 + 10_000, term: 1 });
      assert.deepEqual(await a.acquireLease('outbox', 'ims-a', 10_000, T0 + 8_000), { held: true, holder: 'ims-a', expiresAt: T0 + 18_000, term: 1 }, 'renewed');
      assert.equal((await b.acquireLease('outbox', 'ims-b', 10_000, T0 + 17_999)).held, false, 'the renewal counts: not expired at its first expiry');
      assert.deepEqual(await b.leaseHolder('outbox', T0 + 17_999), { holder: 'ims-a', expiresAt: T0 + 18_000, term: 1 });
      assert.equal(await b.leaseHolder('outbox', T0 + 18_000), undefined, 'expired: nobody holds it');
      assert.deepEqual(await b.acquireLease('outbox', 'ims-b', 10_000, T0 + 18_000), { held: true, holder: 'ims-b', expiresAt: T0 + 28_000, term: 2 });
      assert.deepEqual(await a.acquireLease('outbox', 'ims-a', 10_000, T0 + 18_001), { held: false, holder: 'ims-b', expiresAt: T0 + 28_000, term: 2 },
        'the holder that let it expire has lost it');
      assert.equal(await a.releaseLease('outbox', 'ims-a', T0 + 18_001), false, 'it cannot release what it no longer holds');
      assert.equal((await a.leaseHolder('outbox', T0 + 18_001))?.holder, 'ims-b');
      // Taken again after expiry, even by the same holder, it is a new term: work fenced by term 2 is over.
      assert.deepEqual(await b.acquireLease('outbox', 'ims-b', 10_000, T0 + 40_000), { held: true, holder: 'ims-b', expiresAt: T0 + 50_000, term: 3 });
      assert.deepEqual(await a.acquireLease('catch-up', 'ims-a', 10_000, T0), { held: true, holder: 'ims-a', expiresAt: T0 + 10_000, term: 1 }, 'leases are independent');
    });

    test('a released lease is free at once and the next holder gets a higher term; on the server clock a lease left alone expires after its ttl', async () => {
      const [a, b] = [await open(), await open()];
      const first = await a.acquireLease('silence-summaries', 'ims-a', 60_000);
      assert.deepEqual([first.held, first.term], [true, 1]);
      assert.ok(Math.abs(first.expiresAt - 60_000 - Date.now()) < 5_000, `expires about a minute from now on the server clock: ${first.expiresAt}`);
      assert.equal(await b.releaseLease('silence-summaries', 'ims-b'), false, 'not its holder: nothing changes');
      assert.equal((await b.leaseHolder('silence-summaries'))?.holder, 'ims-a');
      assert.equal(await a.releaseLease('silence-summaries', 'ims-a'), true);
      assert.equal(await a.releaseLease('silence-summaries', 'ims-a'), false, 'released already');
      assert.equal(await b.leaseHolder('silence-summaries'), undefined);
      const taken = await b.acquireLease('silence-summaries', 'ims-b', 1_000);
      assert.deepEqual([taken.held, taken.holder, taken.term], [true, 'ims-b', 2]);

      assert.equal((await a.acquireLease('silence-summaries', 'ims-a', 1_000)).held, false, 'held by ims-b for a second');
      await sleep(1_100);
      assert.equal(await a.leaseHolder('silence-summaries'), undefined, 'expired on the server clock');
      assert.deepEqual((({ held, holder, term }) => ({ held, holder, term }))(await a.acquireLease('silence-summaries', 'ims-a', 300)),
        { held: true, holder: 'ims-a', term: 3 });
    });

    test('a lease asked for with no holder, a ttl that is no whole positive number or a time that is none is refused before anything is sent', async () => {
      const store = await open();
      await assert.rejects(store.acquireLease('report', 'ims-a', 0), /acquireLease: ttlMs must be a whole number of milliseconds ≥ 1, found 0/);
      await assert.rejects(store.acquireLease('report', 'ims-a', 1.5), /ttlMs .* found 1\.5/);
      await assert.rejects(store.acquireLease('report', '', 1000), /the holder of lease "report" must be named/);
      await assert.rejects(store.leaseHolder('report', Number.NaN), /leaseHolder: now must be a whole number .* found NaN/);
      await assert.rejects(store.takePostingTurn(INC, 0, 1), /perSecond > 0 and burst ≥ 1, found perSecond 0, burst 1/);
      assert.equal(await store.leaseHolder('report'), undefined, 'nothing was recorded');
    });

    test('two instances taking turns in one channel for 3 s are together never granted more than burst + perSecond × elapsed', async () => {
      const [a, b] = [await open(), await open()];
      const perSecond = 2;
      const burst = 3;
      const start = Date.now();
      const grants: { at: number; by: string }[] = [];
      let refusals = 0;
      const post20 = async (store: PgState, by: string) => {
        let mine = 0;
        while (mine < 20 && Date.now() - start < 3_000) {
          const wait = await store.takePostingTurn(INC, perSecond, burst);
          if (wait === 0) {
            mine++;
            grants.push({ at: Date.now(), by });
          } else {
            refusals++;
            // At most one token's time from the last turn given, which another instance may have taken a few ms after this call read the clock.
            assert.ok(wait >= 1 && wait <= 1000 / perSecond + 100, `a wait of about one token's time at most: ${wait} ms`);
            await sleep(Math.min(wait, Math.max(1, 3_000 - (Date.now() - start))));
          }
        }
      };
      await Promise.all([post20(a, 'a'), post20(b, 'b'), post20(a, 'a2'), post20(b, 'b2')]);
      grants.sort((x, y) => x.at - y.at);
      // Each grant was decided before it was seen here, and the bucket started full no earlier than `start`.
      grants.forEach((grant, i) => {
        const allowed = burst + (perSecond * (grant.at - start)) / 1000;
        assert.ok(i + 1 <= allowed, `grant #${i + 1} at +${grant.at - start} ms: at most ${allowed.toFixed(2)} by then`);
      });
      assert.ok(grants.length >= burst + perSecond * 2, `the pace is kept, not starved: ${grants.length} turns in 3 s`);
      assert.ok(new Set(grants.map((g) => g.by[0])).size === 2, 'both instances got turns');
      assert.ok(refusals > 0);
    });

    test("a 429 seen by one instance empties the channel's bucket for every instance until its Retry-After, then turns come at the pace again", async () => {
      const [a, b] = [await open(), await open()];
      assert.equal(await a.takePostingTurn(INC, 1, 3, T0), 0);
      assert.equal(await b.takePostingTurn(INC, 1, 3, T0), 0, 'one token of three left');
      await a.postingRateLimited(INC, 5_000, T0 + 100);
      assert.equal(await b.takePostingTurn(INC, 1, 3, T0 + 100), 5_000, 'the other instance waits for the Retry-After too');
      await b.postingRateLimited(INC, 1_000, T0 + 200);
      assert.equal(await a.takePostingTurn(INC, 1, 3, T0 + 200), 4_900, 'a shorter Retry-After does not cut the longer one short');
      assert.equal(await a.takePostingTurn(INC2, 1, 3, T0 + 200), 0, 'another channel is not slowed');
      assert.equal(await a.takePostingTurn(INC, 1, 3, T0 + 5_099), 1);
      // One token at the Retry-After (T0 + 5.1 s), one more a second later: two turns, then the next a second on.
      assert.equal(await b.takePostingTurn(INC, 1, 3, T0 + 6_100), 0);
      assert.equal(await a.takePostingTurn(INC, 1, 3, T0 + 6_100), 0);
      assert.equal(await b.takePostingTurn(INC, 1, 3, T0 + 6_100), 1_000);
      assert.equal(await b.takePostingTurn(INC, 1, 3, T0 + 6_600), 500);
      assert.equal(await b.takePostingTurn(INC, 1, 3, T0 + 7_100), 0);

      // On the server clock.
      await a.postingRateLimited(REPORT, 1_500);
      const wait = await b.takePostingTurn(REPORT, 1, 3);
      assert.ok(wait > 1_000 && wait <= 1_500, `waits out the other instance's Retry-After: ${wait} ms`);
    });
  });
});

/**
 * `--migrate-state`: an existing ims.db copied into a real PostgreSQL server, as a user runs it, once and again.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { State } from '../ims-state.ts';
import { PgState } from '../ims-state-pg.ts';
import { exitOf, spawnBot } from './faults.ts';
import { tempDir } from './harness.ts';
import { freshDatabase, startPostgres, type TestPostgres } from './postgres.ts';

let server: TestPostgres;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

/** A config and a state file with some of everything: incidents with events, a silence, cursors, the outbox, a plugin's value. */
function stateWithHistory(): { file: string; db: string } {
  const dir = tempDir();
  const db = path.join(dir, 'ims.db');
  const file = path.join(dir, 'ims.json');
  writeFileSync(file, JSON.stringify({ rules: [{ match: 'error', head: '[Error]', incident: 'APPS' }], incidents: { APPS: { channel: 'C0INCAPPS1' } }, state: { path: db } }));
  const state = new State(db);
  for (let i = 1; i <= 3; i++) {
    const incident = state.addIncident({
      sourceChannel: 'C0ALERTS01', sourceTs: `1700000000.00000${i}`, incidentChannel: 'C0INCAPPS1', incidentTs: `1700000001.00000${i}`, ruleNumber: 1,
      head: '[Error]', label: 'APPS', text: `error ${i}`, poster: 'B0NAGIOS1', createdAt: 1_700_000_001_000 + i, permalink: `https://x/p${i}`, alertKey: `key-${i}`,
      groups: { host: `web-${i}` },
    });
    state.addIncidentEvent({ incidentId: incident.id, kind: 'hotline', detail: 'OnCall', at: incident.createdAt });
    if (i === 2) state.resolveIncident(incident.id, incident.createdAt + 60_000, 'U0HUMAN001');
    if (i === 3) state.acknowledgeIncident(incident.id, incident.createdAt + 5_000, 'U0ONCALL01', 'button');
  }
  state.advanceCursor('C0ALERTS01', '1700000000.000003');
  state.storeSet('argus', 'incident:1', { pk: 42 });
  state.enqueue('argus', 'create:1', 'incident:1', { id: 1 }, 1_700_000_002_000);
  state.addSilence({ what: '[Error]', matcher: { kind: 'head', head: '[Error]' }, reason: 'deploy', createdBy: 'U0HUMAN001', origin: 'slack', startsAt: 1, endsAt: 2 });
  state.close();
  return { file, db };
}

test('--migrate-state copies every incident, event, cursor, silence, outbox item and plugin value into PostgreSQL, and a second run adds nothing', async (t) => {
  const { file, db } = stateWithHistory();
  const url = await freshDatabase(server.url);
  const first = spawnBot(t, ['--config', file, '--migrate-state', url]);
  assert.equal((await exitOf(first, 60_000)).code, 0, first.stderr());
  assert.match(first.stdout(), /copied .*ims\.db into/);
  assert.match(first.stdout(), /incidents +3 added of 3/);
  assert.match(first.stdout(), /incident_events +\d+ added of \d+/);
  assert.ok(!first.stdout().includes(new URL(url).password || '\u0000'), 'the password is not printed');

  const source = new State(db);
  const target = await PgState.open(url);
  try {
    for (const incident of source.listIncidents()) {
      assert.deepEqual(await target.incidentById(incident.id), incident, `incident #${incident.id} as it was`);
      assert.deepEqual(await target.incidentEvents(incident.id), source.incidentEvents(incident.id), `the events of #${incident.id}`);
    }
    assert.equal(await target.cursor('C0ALERTS01'), '1700000000.000003');
    assert.deepEqual(await target.storeGet('argus', 'incident:1'), { pk: 42 });
    assert.equal((await target.outboxStats()).depth, 1);
    assert.deepEqual(await target.silenceById(1), source.silenceById(1));
    // New incidents continue after the copied numbers.
    const next = await target.addIncident({
      sourceChannel: 'C0ALERTS01', sourceTs: '1700000009.000001', incidentChannel: 'C0INCAPPS1', incidentTs: '1700000009.000002', ruleNumber: 1,
      head: '[Error]', label: 'APPS', text: 'error 4', poster: 'B0NAGIOS1', createdAt: 1_700_000_009_000,
    });
    assert.equal(next.id, 4);
  } finally {
    source.close();
    await target.close();
  }

  const again = spawnBot(t, ['--config', file, '--migrate-state'], { DATABASE_URL: url });
  assert.equal((await exitOf(again, 60_000)).code, 0, again.stderr());
  assert.match(again.stdout(), /incidents +0 added of 3/);
  assert.match(again.stdout(), /incident_events +0 added of/);
  const check = await PgState.open(url);
  try {
    assert.equal((await check.listIncidents()).length, 4, 'nothing doubled, the new one kept');
    assert.equal((await check.incidentEvents(1)).length, 1);
  } finally {
    await check.close();
  }
});

test('--migrate-state without a URL, with a wrong one, or without a state file says what it needs', async (t) => {
  const { file } = stateWithHistory();
  const none = spawnBot(t, ['--config', file, '--migrate-state']);
  assert.equal((await exitOf(none)).code, 2);
  assert.match(none.stderr(), /--migrate-state needs the PostgreSQL URL/);
  const wrong = spawnBot(t, ['--config', file, '--migrate-state', 'mysql://x/y']);
  assert.equal((await exitOf(wrong)).code, 2);
  assert.match(wrong.stderr(), /expects a postgres:\/\/ URL/);
  const dir = tempDir();
  const empty = path.join(dir, 'ims.json');
  writeFileSync(empty, JSON.stringify({ rules: [{ match: 'error', head: '[Error]', incident: 'APPS' }], incidents: { APPS: { channel: 'C0INCAPPS1' } } }));
  const missing = spawnBot(t, ['--config', empty, '--migrate-state', await freshDatabase(server.url)]);
  assert.equal((await exitOf(missing)).code, 1);
  assert.match(missing.stderr(), /there is no state file at .*ims\.db to copy/);
  const unreachable = spawnBot(t, ['--config', file, '--migrate-state', 'postgres://ims:secret@127.0.0.1:1/ims']);
  assert.equal((await exitOf(unreachable, 30_000)).code, 1);
  assert.match(unreachable.stderr(), /cannot connect/);
  assert.ok(!unreachable.stderr().includes('secret'), 'the password is not shown');
});

import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FakeArgus } from './fake-argus.ts';

const TOKEN = 'argus-test-token';

let argus: FakeArgus;

beforeEach(async () => {
  argus = await FakeArgus.start({ tokens: [TOKEN, 'second-token'], sourceName: 'ims-test' });
});

afterEach(async () => {
  await argus.close();
});

async function call(method: string, path: string, body?: unknown, token: string | null = TOKEN) {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Token ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const url = path.startsWith('http') ? path : `${argus.url}${path}`;
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

function incidentBody(overrides: Record<string, unknown> = {}) {
  return {
    start_time: '2026-11-16T03:12:44Z',
    end_time: 'infinity',
    source_incident_id: 'C0ALERTS01:1794790396.375426',
    description: 'PROBLEM Service Alert: web-03/HTTP is CRITICAL',
    level: 2,
    tags: [{ tag: 'rule=nagios' }, { tag: 'host=web-03' }],
    ...overrides,
  };
}

async function createIncident(overrides: Record<string, unknown> = {}) {
  const res = await call('POST', '/api/v2/incidents/', incidentBody(overrides));
  assert.equal(res.status, 201, res.text);
  return res.json;
}

const event = (type: string, timestamp = '2026-11-16T03:30:00Z') => ({ type, timestamp, description: `${type} from IMS` });

describe('FakeArgus basics', () => {
  it('answers /.still-alive/ with 204 without credentials', async () => {
    const res = await call('GET', '/.still-alive/', undefined, null);
    assert.equal(res.status, 204);
  });

  it('answers 410 for the retired v1 API', async () => {
    const res = await call('GET', '/api/v1/incidents/');
    assert.equal(res.status, 410);
  });

  it('answers 404 for an API path without its trailing slash', async () => {
    const res = await call('POST', '/api/v2/incidents', incidentBody());
    assert.equal(res.status, 404);
    assert.equal(argus.incidents.length, 0);
  });

  it('rejects a request without credentials and one with an unknown token', async () => {
    const missing = await call('GET', '/api/v2/incidents/mine/', undefined, null);
    assert.equal(missing.status, 401);
    assert.deepEqual(missing.json, { detail: 'Authentication credentials were not provided.' });
    const unknown = await call('GET', '/api/v2/incidents/mine/', undefined, 'nope');
    assert.equal(unknown.status, 401);
    assert.deepEqual(unknown.json, { detail: 'Invalid token.' });
  });

  it('answers 400 with a parse error for a malformed JSON body', async () => {
    const res = await fetch(`${argus.url}/api/v2/incidents/`, {
      method: 'POST', headers: { Authorization: `Token ${TOKEN}`, 'Content-Type': 'application/json' }, body: '{"start_time":',
    });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { detail: string }).detail, /^JSON parse error/);
  });

  it('records every request with its method, path, query, body and status', async () => {
    await call('GET', '/api/v2/incidents/mine/?open=true');
    await call('POST', '/api/v2/incidents/', incidentBody());
    assert.deepEqual(argus.requests.map((r) => [r.method, r.path, r.status]), [
      ['GET', '/api/v2/incidents/mine/', 200],
      ['POST', '/api/v2/incidents/', 201],
    ]);
    assert.deepEqual(argus.requests[0].query, { open: 'true' });
    assert.equal(argus.requests[1].body.source_incident_id, 'C0ALERTS01:1794790396.375426');
    assert.equal(argus.requests[1].headers.authorization, `Token ${TOKEN}`);
  });
});

describe('FakeArgus incidents', () => {
  it('creates an open stateful incident and answers 201 with the Argus shape', async () => {
    const created = await createIncident();
    assert.equal(created.pk, 1);
    assert.equal(created.end_time, 'infinity');
    assert.equal(created.stateful, true);
    assert.equal(created.open, true);
    assert.equal(created.acked, false);
    assert.deepEqual(created.source, { pk: 1, name: 'ims-test' });
    assert.deepEqual(created.tags.map((t: { tag: string }) => t.tag), ['rule=nagios', 'host=web-03']);
    assert.equal(created.events, undefined);
    assert.equal(argus.incidents[0].events[0].type, 'STA');
  });

  it('creates a stateless incident when end_time is null', async () => {
    const created = await createIncident({ end_time: null });
    assert.equal(created.stateful, false);
    assert.equal(created.open, false);
  });

  it('answers 400 with field errors for a bad tag key, a missing start_time and a bad level', async () => {
    const res = await call('POST', '/api/v2/incidents/', incidentBody({ start_time: undefined, level: 7, tags: [{ tag: 'Host=web-03' }] }));
    assert.equal(res.status, 400);
    assert.deepEqual(Object.keys(res.json).sort(), ['level', 'start_time', 'tags']);
    assert.match(res.json.tags[0], /Host/);
  });

  it('answers 400 when start_time has no time zone', async () => {
    const res = await call('POST', '/api/v2/incidents/', incidentBody({ start_time: '2026-11-16T03:12:44' }));
    assert.equal(res.status, 400);
    assert.ok(res.json.start_time);
  });

  it('answers a duplicate source_incident_id with a raw database error, and mine finds the original', async () => {
    const original = await createIncident();
    const dup = await call('POST', '/api/v2/incidents/', incidentBody());
    assert.equal(dup.status, 400);
    assert.ok(Array.isArray(dup.json));
    assert.match(dup.json[0], /duplicate key value violates unique constraint/);
    assert.equal(argus.incidents.length, 1);

    const query = new URLSearchParams({ source_incident_id: original.source_incident_id, open: 'true' });
    const found = await call('GET', `/api/v2/incidents/mine/?${query}`);
    assert.equal(found.status, 200);
    assert.deepEqual(found.json.results.map((i: { pk: number }) => i.pk), [original.pk]);
  });

  it('allows several incidents with an empty source_incident_id', async () => {
    await createIncident({ source_incident_id: '' });
    await createIncident({ source_incident_id: '' });
    assert.equal(argus.incidents.length, 2);
  });

  it('returns one incident by pk and 404 for an unknown pk', async () => {
    const created = await createIncident();
    const found = await call('GET', `/api/v2/incidents/${created.pk}/`);
    assert.equal(found.status, 200);
    assert.equal(found.json.description, created.description);
    const missing = await call('GET', '/api/v2/incidents/999/');
    assert.equal(missing.status, 404);
  });

  it('pages mine with an absolute next URL holding a cursor until every incident is seen', async () => {
    for (let i = 0; i < 5; i++) await createIncident({ source_incident_id: `C0ALERTS01:17947903${i}0.000100`, start_time: `2026-11-16T0${i}:00:00Z` });
    const pages: number[][] = [];
    let next: string | null = `${argus.url}/api/v2/incidents/mine/?open=true`;
    while (next) {
      const page = await call('GET', next);
      assert.equal(page.status, 200);
      pages.push(page.json.results.map((i: { pk: number }) => i.pk));
      next = page.json.next;
      if (next) {
        assert.ok(next.startsWith(`${argus.url}/api/v2/incidents/mine/?`), next);
        assert.match(next, /[?&]cursor=/);
        assert.match(next, /[?&]open=true/);
      }
    }
    assert.deepEqual(pages, [[5, 4], [3, 2], [1]]);
  });
});

describe('FakeArgus events and acks', () => {
  it('closes an incident with END and ignores a second END while still answering 201', async () => {
    const { pk } = await createIncident();
    const first = await call('POST', `/api/v2/incidents/${pk}/events/`, event('END', '2026-11-16T03:30:00Z'));
    assert.equal(first.status, 201);
    assert.deepEqual(first.json.type, { value: 'END', display: 'Incident end' });
    const second = await call('POST', `/api/v2/incidents/${pk}/events/`, event('END', '2026-11-16T04:00:00Z'));
    assert.equal(second.status, 201);
    const incident = (await call('GET', `/api/v2/incidents/${pk}/`)).json;
    assert.equal(incident.open, false);
    assert.equal(incident.end_time, '2026-11-16T03:30:00Z');
  });

  it('reopens a closed incident with RES', async () => {
    const { pk } = await createIncident();
    await call('POST', `/api/v2/incidents/${pk}/events/`, event('END'));
    const res = await call('POST', `/api/v2/incidents/${pk}/events/`, event('RES', '2026-11-16T05:00:00Z'));
    assert.equal(res.status, 201);
    const incident = (await call('GET', `/api/v2/incidents/${pk}/`)).json;
    assert.equal(incident.open, true);
    assert.equal(incident.end_time, 'infinity');
  });

  it('refuses the human-only CLO and REO event types from a source', async () => {
    const { pk } = await createIncident();
    for (const type of ['CLO', 'REO']) {
      const res = await call('POST', `/api/v2/incidents/${pk}/events/`, event(type));
      assert.equal(res.status, 400);
      assert.match(res.json.type, /cannot post events of type/);
    }
    assert.equal(argus.incidents[0].open, true);
  });

  it('acknowledges an incident and answers 201 with the ack event', async () => {
    const { pk } = await createIncident();
    const res = await call('POST', `/api/v2/incidents/${pk}/acks/`, { timestamp: '2026-11-16T03:20:00Z', description: 'looking into it', expiration: null });
    assert.equal(res.status, 201);
    assert.equal(res.json.event.type.value, 'ACK');
    assert.equal((await call('GET', `/api/v2/incidents/${pk}/`)).json.acked, true);
  });

  it('counts heartbeats and answers 204', async () => {
    const first = await call('POST', '/api/v2/incidents/sources/heartbeat/');
    await call('POST', '/api/v2/incidents/sources/heartbeat/');
    assert.equal(first.status, 204);
    assert.equal(argus.heartbeats, 2);
  });
});

describe('FakeArgus failures', () => {
  it('answers 401 "Token has expired." for an expired token while other tokens still work', async () => {
    argus.expireToken(TOKEN);
    const expired = await call('POST', '/api/v2/incidents/', incidentBody());
    assert.equal(expired.status, 401);
    assert.deepEqual(expired.json, { detail: 'Token has expired.' });
    const other = await call('POST', '/api/v2/incidents/', incidentBody(), 'second-token');
    assert.equal(other.status, 201);
  });

  it('answers 503 to every request during an outage and recovers afterwards', async () => {
    argus.setDown(true);
    assert.equal((await call('GET', '/.still-alive/', undefined, null)).status, 503);
    assert.equal((await call('POST', '/api/v2/incidents/', incidentBody())).status, 503);
    assert.equal(argus.incidents.length, 0);
    argus.setDown(false);
    assert.equal((await call('POST', '/api/v2/incidents/', incidentBody())).status, 201);
  });

  it('resets connections in refuse mode and still records the attempts', async () => {
    argus.setDown(true, { mode: 'refuse' });
    await assert.rejects(call('POST', '/api/v2/incidents/', incidentBody()), TypeError);
    assert.equal(argus.requests.at(-1)?.status, 0);
    argus.setDown(false);
    assert.equal((await call('POST', '/api/v2/incidents/', incidentBody())).status, 201);
  });

  it('fails exactly the next N requests with the given status and body', async () => {
    argus.failNext(2, 502, { detail: 'bad gateway' });
    const first = await call('POST', '/api/v2/incidents/', incidentBody());
    assert.equal(first.status, 502);
    assert.deepEqual(first.json, { detail: 'bad gateway' });
    assert.equal((await call('POST', '/api/v2/incidents/', incidentBody())).status, 502);
    assert.equal((await call('POST', '/api/v2/incidents/', incidentBody())).status, 201);
  });
});

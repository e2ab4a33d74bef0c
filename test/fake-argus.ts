// A stateful, dependency-free stand-in for the Argus 2.x API (see ../shared/docs/argus-api.md beside the project),
// modelled on Argus's Django REST Framework behaviour, including its awkward corners.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeArgusIncident {
  pk: number;
  start_time: string;
  end_time: string | null;
  source_incident_id: string;
  details_url: string;
  description: string;
  level: number;
  ticket_url: string;
  metadata: any;
  source: { pk: number; name: string };
  tags: { tag: string; added_by: number; added_time: string }[];
  stateful: boolean;
  open: boolean;
  acked: boolean;
  events: { pk: number; timestamp: string; type: string; description: string }[];
  acks: any[];
}

export interface FakeArgusRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  /** 0 when the connection was reset instead of answered */
  status: number;
  at: number;
}

export interface FakeArgusOptions {
  /** valid keys, default ['argus-test-token']; all belong to the one source system */
  tokens?: string[];
  sourceName?: string;
  /** default 2, to exercise pagination */
  pageSize?: number;
}

interface Reply {
  status: number;
  body?: unknown;
  /** sent as is instead of JSON, e.g. Django's HTML error pages */
  html?: string;
  headers?: Record<string, string>;
}

interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  body: any;
  match: RegExpMatchArray;
}

type Handler = (call: Call) => Reply;

const SOURCE_PK = 1;
const SOURCE_USER_PK = 2;
const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$/;
const TAG_KEY = /^[a-z0-9_]+$/;
const EVENT_TYPES = ['STA', 'END', 'CHI', 'CLO', 'REO', 'ACK', 'OTH', 'LES', 'RES'];
// The project's Argus contract (../shared/docs/argus-api.md). Upstream, RES (INCIDENT_RESTART) came after 2.9.1 (Uninett/Argus 6718862b); sources may post STA/LES too.
const SOURCE_EVENT_TYPES = ['END', 'CHI', 'RES', 'OTH'];
const EVENT_DISPLAY: Record<string, string> = {
  STA: 'Incident start', END: 'Incident end', CHI: 'Incident change', CLO: 'Close',
  REO: 'Reopen', ACK: 'Acknowledge', OTH: 'Other', LES: 'Stateless', RES: 'Incident restart',
};
const DATETIME_FORMAT_ERROR = 'Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].';
const DJANGO_404 = '<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n';
const UNAVAILABLE = (status: number) => `<html>\r\n<head><title>${status} Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>${status} Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;

const json = (status: number, body?: unknown): Reply => ({ status, body });
const notFound = (): Reply => json(404, { detail: 'Not found.' });
const isIso = (v: unknown): v is string => typeof v === 'string' && ISO_WITH_ZONE.test(v) && !Number.isNaN(Date.parse(v));
const isOpen = (end: string | null) => end === 'infinity' || (end !== null && Date.parse(end) > Date.now());

export class FakeArgus {
  readonly incidents: FakeArgusIncident[] = [];
  readonly requests: FakeArgusRequest[] = [];
  readonly url: string;
  #heartbeats = 0;
  #nextPk = { incident: 1, event: 1 };
  #down: { status: number; mode: 'status' | 'refuse' } | null = null;
  #failures: { count: number; status: number; body?: unknown } | null = null;
  readonly #expired = new Set<string>();
  readonly #tokens: Set<string>;
  readonly #source: { pk: number; name: string };
  readonly #pageSize: number;
  readonly #server: http.Server;
  readonly #routes: [string, RegExp, Handler][] = [
    ['POST', /^\/api\/v2\/incidents\/$/, (c) => this.#createIncident(c)],
    ['GET', /^\/api\/v2\/incidents\/$/, (c) => this.#list(c, this.incidents)],
    ['GET', /^\/api\/v2\/incidents\/mine\/$/, (c) => this.#list(c, this.#mine())],
    ['GET', /^\/api\/v2\/incidents\/(\d+)\/$/, (c) => this.#getIncident(c)],
    ['POST', /^\/api\/v2\/incidents\/(\d+)\/events\/$/, (c) => this.#postEvent(c)],
    ['POST', /^\/api\/v2\/incidents\/(\d+)\/acks\/$/, (c) => this.#postAck(c)],
    ['POST', /^\/api\/v2\/incidents\/sources\/heartbeat\/$/, () => this.#heartbeat()],
  ];

  private constructor(server: http.Server, opts: FakeArgusOptions) {
    this.#server = server;
    this.#tokens = new Set(opts.tokens ?? ['argus-test-token']);
    this.#source = { pk: SOURCE_PK, name: opts.sourceName ?? 'ims' };
    this.#pageSize = opts.pageSize ?? 2;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    server.on('request', (req, res) => void this.#onRequest(req, res).catch(() => res.destroy()));
  }

  static async start(opts: FakeArgusOptions = {}): Promise<FakeArgus> {
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return new FakeArgus(server, opts);
  }

  get heartbeats(): number {
    return this.#heartbeats;
  }

  /** Outage: every request answers `status` (default 503) or, with mode 'refuse', has its socket destroyed. */
  setDown(down: boolean, opts: { status?: number; mode?: 'status' | 'refuse' } = {}): void {
    this.#down = down ? { status: opts.status ?? 503, mode: opts.mode ?? 'status' } : null;
  }

  /** The next `count` requests, whatever their path, answer `status` with `body`. */
  failNext(count: number, status: number, body?: unknown): void {
    this.#failures = count > 0 ? { count, status, body } : null;
  }

  expireToken(token: string): void {
    this.#expired.add(token);
  }

  async close(): Promise<void> {
    // Keep-alive sockets from fetch would otherwise hold close() open.
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---------- HTTP plumbing ----------

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawBody = await readBody(req);
    const url = new URL(req.url ?? '/', this.url);
    const record = (status: number) => this.requests.push({
      method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers }, body: parseLoosely(rawBody), status, at: Date.now(),
    });
    if (this.#down?.mode === 'refuse') {
      record(0);
      req.socket.destroy();
      return;
    }
    const reply = this.#injectedFailure() ?? this.#handle(req, url, rawBody);
    record(reply.status);
    send(res, reply);
  }

  #injectedFailure(): Reply | null {
    if (this.#down) return { status: this.#down.status, html: UNAVAILABLE(this.#down.status) };
    if (!this.#failures) return null;
    const { status, body } = this.#failures;
    if (--this.#failures.count <= 0) this.#failures = null;
    if (typeof body === 'string') return { status, html: body };
    return json(status, body ?? { detail: `Injected failure (${status}).` });
  }

  #handle(req: IncomingMessage, url: URL, rawBody: string): Reply {
    const method = req.method ?? 'GET';
    const path = url.pathname;
    if (path === '/.still-alive/' && method === 'GET') return { status: 204 };
    if (path.startsWith('/api/v1/')) return json(410, { detail: 'API v1 has been removed. Use /api/v2/.' });
    const routes = this.#routes.filter(([, re]) => re.test(path));
    if (!path.startsWith('/api/v2/') || routes.length === 0) return { status: 404, html: DJANGO_404 };

    const authError = this.#authenticate(req.headers.authorization);
    if (authError) return authError;
    const route = routes.find(([m]) => m === method);
    if (!route) return json(405, { detail: `Method "${method}" not allowed.` });

    const body = parseJsonBody(method, req.headers['content-type'], rawBody);
    if ('error' in body) return body.error;
    return route[2]({ method, path, query: url.searchParams, body: body.value, match: path.match(route[1])! });
  }

  /** DRF TokenAuthentication: other schemes count as "no credentials". */
  #authenticate(header: string | undefined): Reply | null {
    const unauthorized = (detail: string) => ({ status: 401, body: { detail }, headers: { 'WWW-Authenticate': 'Token' } });
    const [scheme, key, extra] = (header ?? '').trim().split(/\s+/);
    if (scheme?.toLowerCase() !== 'token') return unauthorized('Authentication credentials were not provided.');
    if (!key) return unauthorized('Invalid token header. No credentials provided.');
    if (extra) return unauthorized('Invalid token header. Token string should not contain spaces.');
    if (this.#expired.has(key)) return unauthorized('Token has expired.');
    if (!this.#tokens.has(key)) return unauthorized('Invalid token.');
    return null;
  }

  // ---------- incidents ----------

  #createIncident({ body }: Call): Reply {
    if (!isPlainObject(body)) return json(400, { non_field_errors: [`Invalid data. Expected a dictionary, but got ${typeName(body)}.`] });
    const errors = validateIncident(body);
    if (Object.keys(errors).length) return json(400, errors);
    const sourceIncidentId = String(body.source_incident_id ?? '');
    if (sourceIncidentId && this.#mine().some((i) => i.source_incident_id === sourceIncidentId)) {
      // Argus re-raises the IntegrityError as a ValidationError: a JSON list holding raw database text.
      return json(400, [
        'duplicate key value violates unique constraint "incident_unique_source_incident_id_per_source"\n'
        + `DETAIL:  Key (source_incident_id, source_id)=(${sourceIncidentId}, ${SOURCE_PK}) already exists.\n`,
      ]);
    }
    const incident = this.#newIncident(body, sourceIncidentId);
    this.incidents.push(incident);
    return json(201, present(incident));
  }

  #newIncident(body: Record<string, any>, sourceIncidentId: string): FakeArgusIncident {
    const now = new Date().toISOString();
    const endTime = body.end_time === undefined ? 'infinity' : body.end_time;
    const pk = this.#nextPk.incident++;
    const incident: FakeArgusIncident = {
      pk, start_time: body.start_time, end_time: endTime, source_incident_id: sourceIncidentId,
      details_url: body.details_url ?? '', description: body.description ?? '', level: body.level ?? 5,
      ticket_url: body.ticket_url ?? '', metadata: body.metadata ?? {}, source: { ...this.#source },
      tags: body.tags.map((t: { tag: string }) => ({ tag: t.tag, added_by: SOURCE_USER_PK, added_time: now })),
      stateful: endTime !== null, open: isOpen(endTime), acked: false, events: [], acks: [],
    };
    this.#addEvent(incident, endTime === null ? 'LES' : 'STA', body.start_time, body.description ?? '');
    return incident;
  }

  #mine(): FakeArgusIncident[] {
    return this.incidents.filter((i) => i.source.pk === this.#source.pk);
  }

  #find({ match }: Call): FakeArgusIncident | undefined {
    return this.incidents.find((i) => i.pk === Number(match[1]));
  }

  #getIncident(call: Call): Reply {
    const incident = this.#find(call);
    return incident ? json(200, present(incident)) : notFound();
  }

  /** Cursor pagination, newest start_time first, like Argus's IncidentPagination. */
  #list({ path, query }: Call, incidents: FakeArgusIncident[]): Reply {
    const rows = incidents.filter((i) => matchesFilters(i, query)).sort(newestFirst);
    const size = Math.max(1, Number(query.get('page_size')) || this.#pageSize);
    const offset = decodeCursor(query.get('cursor'));
    const page = rows.slice(offset, offset + size);
    const link = (at: number) => {
      const params = new URLSearchParams(query);
      if (at > 0) params.set('cursor', encodeCursor(at)); else params.delete('cursor');
      return `${this.url}${path}?${params}`;
    };
    return json(200, {
      next: offset + size < rows.length ? link(offset + size) : null,
      previous: offset > 0 ? link(Math.max(0, offset - size)) : null,
      results: page.map(present),
    });
  }

  // ---------- events, acks, heartbeat ----------

  #postEvent(call: Call): Reply {
    const incident = this.#find(call);
    if (!incident) return notFound();
    const { body } = call;
    const errors = validateEvent(body);
    if (errors) return json(400, errors);
    if (!SOURCE_EVENT_TYPES.includes(body.type)) {
      return json(400, { type: `A source system cannot post events of type '${body.type}'.` });
    }
    // Like Argus, an event that makes no sense for the incident (END on a closed one) is still
    // recorded for a source system, but leaves the incident as it was.
    applyEvent(incident, body.type, body.timestamp);
    const event = this.#addEvent(incident, body.type, body.timestamp, body.description ?? '');
    return json(201, this.#presentEvent(incident, event));
  }

  #postAck(call: Call): Reply {
    const incident = this.#find(call);
    if (!incident) return notFound();
    const { body } = call;
    const errors = validateAck(body);
    if (errors) return json(400, errors);
    const event = this.#addEvent(incident, 'ACK', body.timestamp, body.description ?? '');
    const ack = { pk: event.pk, event: this.#presentEvent(incident, event), expiration: body.expiration ?? null };
    incident.acks.push(ack);
    incident.acked = true;
    return json(201, ack);
  }

  #heartbeat(): Reply {
    this.#heartbeats++;
    return { status: 204 };
  }

  #addEvent(incident: FakeArgusIncident, type: string, timestamp: string, description: string) {
    const event = { pk: this.#nextPk.event++, timestamp, type, description };
    incident.events.push(event);
    return event;
  }

  #presentEvent(incident: FakeArgusIncident, event: FakeArgusIncident['events'][number]) {
    return {
      pk: event.pk, incident: incident.pk, actor: { pk: SOURCE_USER_PK, username: this.#source.name },
      timestamp: event.timestamp, received: new Date().toISOString(),
      type: { value: event.type, display: EVENT_DISPLAY[event.type] }, description: event.description,
    };
  }
}

// ---------- pure helpers ----------

function applyEvent(incident: FakeArgusIncident, type: string, timestamp: string): void {
  if (!incident.stateful) return;
  if (type === 'END' && incident.open) {
    incident.end_time = timestamp;
    incident.open = false;
  } else if (type === 'RES' && !incident.open) {
    incident.end_time = 'infinity';
    incident.open = true;
  }
}

function validateIncident(body: Record<string, any>): Record<string, unknown> {
  const errors: Record<string, unknown> = {};
  if (body.start_time === undefined || body.start_time === null) errors.start_time = ['This field is required.'];
  else if (!isIso(body.start_time)) errors.start_time = [DATETIME_FORMAT_ERROR];
  const end = body.end_time;
  if (end !== undefined && end !== null && end !== 'infinity' && !isIso(end)) errors.end_time = [DATETIME_FORMAT_ERROR];
  const tagError = validateTags(body.tags);
  if (tagError) errors.tags = [tagError];
  if (body.level !== undefined && !(Number.isInteger(body.level) && body.level >= 1 && body.level <= 5)) {
    errors.level = [`"${body.level}" is not a valid choice.`];
  }
  for (const field of ['description', 'source_incident_id', 'details_url', 'ticket_url']) {
    if (body[field] !== undefined && typeof body[field] !== 'string') errors[field] = ['Not a valid string.'];
  }
  if (body.metadata !== undefined && body.metadata !== null && !isPlainObject(body.metadata)) errors.metadata = ['Value must be valid JSON.'];
  if (!Object.keys(errors).length && isIso(end) && Date.parse(end) < Date.parse(body.start_time)) {
    errors.non_field_errors = ["'end_time' cannot be before 'start_time'."];
  }
  return errors;
}

function validateTags(tags: unknown): string | null {
  if (tags === undefined) return 'This field is required.';
  if (!Array.isArray(tags)) return `Expected a list of items but got type "${typeName(tags)}".`;
  for (const item of tags) {
    if (!isPlainObject(item) || typeof item.tag !== 'string') return 'Tags need to follow the format {"tag": key=value}';
    const at = item.tag.indexOf('=');
    const key = item.tag.slice(0, Math.max(at, 0));
    if (at < 1 || at === item.tag.length - 1) return `Tag "${item.tag}" is not of the form key=value.`;
    if (!TAG_KEY.test(key)) return `Tag key "${key}" must consist of lowercase letters, numbers and underscores only.`;
  }
  return null;
}

function validateEvent(body: any): Record<string, string[]> | null {
  if (!isPlainObject(body)) return { non_field_errors: [`Invalid data. Expected a dictionary, but got ${typeName(body)}.`] };
  const errors: Record<string, string[]> = {};
  if (body.timestamp === undefined) errors.timestamp = ['This field is required.'];
  else if (!isIso(body.timestamp)) errors.timestamp = [DATETIME_FORMAT_ERROR];
  if (body.type === undefined) errors.type = ['This field is required.'];
  else if (!EVENT_TYPES.includes(body.type)) errors.type = [`"${body.type}" is not a valid choice.`];
  if (body.description !== undefined && typeof body.description !== 'string') errors.description = ['Not a valid string.'];
  return Object.keys(errors).length ? errors : null;
}

function validateAck(body: any): Record<string, string[]> | null {
  if (!isPlainObject(body)) return { non_field_errors: [`Invalid data. Expected a dictionary, but got ${typeName(body)}.`] };
  const errors: Record<string, string[]> = {};
  if (body.timestamp === undefined) errors.timestamp = ['This field is required.'];
  else if (!isIso(body.timestamp)) errors.timestamp = [DATETIME_FORMAT_ERROR];
  if (body.expiration !== undefined && body.expiration !== null && !isIso(body.expiration)) errors.expiration = [DATETIME_FORMAT_ERROR];
  return Object.keys(errors).length ? errors : null;
}

function matchesFilters(incident: FakeArgusIncident, query: URLSearchParams): boolean {
  const id = query.get('source_incident_id');
  if (id !== null && incident.source_incident_id !== id) return false;
  for (const flag of ['open', 'acked', 'stateful'] as const) {
    const wanted = query.get(flag);
    if (wanted !== null && String(incident[flag]) !== wanted) return false;
  }
  return true;
}

function newestFirst(a: FakeArgusIncident, b: FakeArgusIncident): number {
  return Date.parse(b.start_time) - Date.parse(a.start_time) || b.pk - a.pk;
}

/** The wire shape: events and acks live behind their own endpoints. */
function present({ events, acks, ...incident }: FakeArgusIncident) {
  return structuredClone(incident);
}

function encodeCursor(offset: number): string {
  return Buffer.from(`o=${offset}`).toString('base64');
}

function decodeCursor(cursor: string | null): number {
  if (!cursor) return 0;
  const match = Buffer.from(cursor, 'base64').toString().match(/^o=(\d+)$/);
  return match ? Number(match[1]) : 0;
}

function parseJsonBody(method: string, contentType: string | undefined, raw: string): { value: any } | { error: Reply } {
  if (method === 'GET' || raw.trim() === '') return { value: method === 'GET' ? undefined : {} };
  if (!/^application\/json\b/i.test(contentType ?? '')) {
    return { error: json(415, { detail: `Unsupported media type "${contentType ?? ''}" in request.` }) };
  }
  try {
    return { value: JSON.parse(raw) };
  } catch (err) {
    return { error: json(400, { detail: `JSON parse error - ${(err as Error).message}` }) };
  }
}

function parseLoosely(raw: string): any {
  if (raw === '') return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function isPlainObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'boolean') return 'bool';
  return v === null ? 'NoneType' : 'dict';
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, reply: Reply): void {
  const headers: Record<string, string> = { ...reply.headers };
  let payload = '';
  if (reply.html !== undefined) {
    headers['Content-Type'] = 'text/html; charset=utf-8';
    payload = reply.html;
  } else if (reply.body !== undefined && reply.status !== 204) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(reply.body);
  }
  res.writeHead(reply.status, headers);
  res.end(payload);
}

// argus: export incidents to Argus (https://github.com/Uninett/Argus), the incident registry, as a "glue
// service" does: a stateful Argus incident when IMS opens one, an END event when it is resolved (in Slack or
// by its integration's recovery) and a RES event when it is reopened (or fires again), plus a heartbeat. See
// the Argus API reference (../shared/docs/argus-api.md beside the project).
//
// Every change goes through IMS's durable outbox, so nothing is lost or sent twice: while Argus is down or
// answers 5xx the changes stay queued (in IMS's state, across restarts) and are sent in order per incident once
// it answers again. Slack scopes: chat:write (the one "token rejected" message in the report channel).
import {
  PermanentDeliveryError, definePlugin, fetchFailureReason, httpDeliveryError, pluginOptions, slackErrorCode, withTimeout, type HookContext, type Incident, type OutboxDelivery,
} from '../ims.ts';

export interface ArgusOptions {
  /** Argus's base URL, e.g. `https://argus.example.org` (a trailing `/api/v2/` is accepted). Default `ARGUS_URL`. */
  url?: string;
  /** The API token of Argus's source system for IMS (`Authorization: Token …`). Default `ARGUS_TOKEN`. */
  token?: string;
  /** Argus level (1 Critical … 5 Information) of incidents whose rule has no hotline, and of reverse-mode reposts. Default 3. */
  level?: number;
  /** Argus level of incidents whose rule pages a hotline. Default 2. */
  hotlineLevel?: number;
  /** Extra tags put on every incident, e.g. `{ site: 'oslo' }`. Keys match `^[a-z0-9_]+$`. */
  tags?: Record<string, string>;
  /** How often the source heartbeat is posted (default 5 minutes; `0` turns it off). */
  heartbeatMs?: number;
}

type Payload =
  | { kind: 'create'; sourceIncidentId: string; body: ArgusIncidentBody }
  | {
    kind: 'event'; sourceIncidentId: string; body: { timestamp: string; type: 'END' | 'RES'; description: string };
    /** For a RES: the incident to open instead on an Argus without `INCIDENT_RESTART` (every Argus release up to 2.9.1). */
    restart?: ArgusIncidentBody;
  };

interface ArgusIncidentBody {
  start_time: string;
  end_time: 'infinity';
  source_incident_id: string;
  description: string;
  details_url: string;
  level: number;
  tags: { tag: string }[];
  metadata: Record<string, unknown>;
}

/**
 * What the plugin remembers per incident (`ctx.store`, key `incident:<channel>:<ts>`): the primary key of the
 * Argus incident its events go to (after a restart on an Argus without RES, the restart's), and those restarts.
 */
interface Known { pk?: number; restarts?: string[] }

const OPTION_KEYS = ['url', 'token', 'level', 'hotlineLevel', 'tags', 'heartbeatMs'] as const;
const TAG_KEY = /^[a-z0-9_]+$/;
const RESERVED_TAGS = new Set(['rule', 'label', 'channel']);
const TOKEN_FLAG = 'token-rejected';
const DEFAULT_HEARTBEAT_MS = 5 * 60_000;

const sourceId = (channel: string, ts: string) => `${channel}:${ts}`;
const tsMs = (ts: string) => Number.parseFloat(ts) * 1000;
const iso = (epochMs: number) => new Date(epochMs).toISOString();
const tsIso = (ts: string) => iso(tsMs(ts));

/**
 * Argus answers a RES it does not know this way: every release up to 2.9.1 (`"RES" is not a valid choice.`, the
 * event type did not exist) or one that lets no source post it (`A source system cannot post events of type 'RES'.`).
 * Upstream Argus added `INCIDENT_RESTART` ("RES", for source systems) after 2.9.1 (Uninett/Argus 6718862b).
 */
const noRestart = (answer: { status: number; text: string }) =>
  answer.status === 400 && /\bRES\b/.test(answer.text) && /not a valid choice|cannot post events of type/i.test(answer.text);

/** This plugin instance's heartbeat: started by onStart, stopped by onStop (IMS calls both around a reload). */
interface Heartbeat { timer?: NodeJS.Timeout; inflight?: AbortController; stopped?: boolean }

/**
 * Export IMS incidents to Argus.
 *
 * - `onMatch` (and `onReverse`: reverse-mode reposts are incidents too) queues the creation of a stateful
 *   incident: `start_time` the alert's time, `end_time: "infinity"`, `description` head + text,
 *   `source_incident_id` `<channel>:<ts>` of the alert, `details_url` the incident post in Slack, `level`
 *   `hotlineLevel` (2) for hotline rules else `level` (3), tags `rule=`, `label=`, `channel=`, every named
 *   regex group the rule captured whose name is a valid tag key (e.g. `host=`), and `tags`.
 * - `onResolve` queues an `END` event, `onReopen` a `RES` event (ordered after the creation: one outbox
 *   group per incident). Each also queues the creation first (a no-op when it was queued before), so the
 *   END can never overtake its incident, even when the resolution's hook runs before the match's, and an
 *   incident opened before the plugin was configured reaches Argus when it is resolved or reopened.
 *   With alert lifecycles, the integration's recovery ends the Argus incident (its END at the recovery's
 *   time, describing it with its link) and the alert firing again within the reopen window restarts it (RES
 *   at the firing message's time); repeats and flapping change nothing in Argus. Each resolution and
 *   reopening is sent once (idempotency keys count them, so two on the same instant, as a catch-up makes,
 *   are still two).
 * - A RES is Argus's `INCIDENT_RESTART`, the one event that lets a source system reopen its incident; Argus
 *   releases up to 2.9.1 lack it (sources may post STA, END, CHI, OTH, LES; REO is for people) and answer 400.
 *   There, the reopening opens a new stateful Argus incident instead (`source_incident_id`
 *   `<channel>:<ts>:restart:<n>`, the same tags, metadata `restart_of`), and the incident's later END closes that one.
 * - `deliver` does the HTTP. A 400 for a duplicate `source_incident_id` (a creation that reached Argus but
 *   whose answer was lost) is looked up in `/incidents/mine/` and counts as created. A 401 (token expired
 *   or revoked) logs ONE `ARGUS TOKEN REJECTED` error line and posts ONE message to the report channel per
 *   outage, and keeps everything queued (retried with backoff) until a working token is configured.
 *   5xx, 408, 429 and network errors are retried; other 4xx give the item up with Argus's answer.
 * - The source heartbeat is posted at start and every `heartbeatMs` (by the leading instance only, when several share the state); its failures are logged at warn.
 */
export function argus(options: ArgusOptions = {}) {
  const check = pluginOptions<ArgusOptions>('argus', options, OPTION_KEYS);
  const url = (options.url ?? process.env.ARGUS_URL ?? '').trim();
  const token = (options.token ?? process.env.ARGUS_TOKEN ?? '').trim();
  let base = '';
  if (!url) check.problem('no Argus URL: pass argus({ url }) or set ARGUS_URL, e.g. https://argus.example.org');
  else {
    try {
      const parsed = new URL(url);
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('not http(s)');
      base = `${parsed.origin}${parsed.pathname.replace(/\/+$/, '').replace(/\/api\/v2$/, '')}`;
    } catch {
      check.problem(`the Argus URL '${url}' (url / ARGUS_URL) is not an http(s) URL such as https://argus.example.org`);
    }
  }
  if (!token) check.problem("no Argus token: pass argus({ token }) or set ARGUS_TOKEN to the API token of IMS's source system in Argus");
  const level = options.level ?? 3;
  const hotlineLevel = options.hotlineLevel ?? 2;
  for (const [name, value] of [['level', options.level], ['hotlineLevel', options.hotlineLevel]] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value >= 1 && value <= 5)) {
      check.problem(`${name} must be a whole number from 1 (Critical) to 5 (Information), found ${JSON.stringify(value)}`);
    }
  }
  const extraTags = options.tags ?? {};
  if (check.expect('tags', typeof extraTags === 'object' && extraTags !== null && !Array.isArray(extraTags), `an object of key → value such as { site: 'oslo' }`)) {
    for (const [key, value] of Object.entries(extraTags)) {
      if (!TAG_KEY.test(key)) check.problem(`tag key '${key}' is not valid for Argus: use lowercase letters, digits and _ only (^[a-z0-9_]+$)`);
      if (typeof value !== 'string' || value === '') check.problem(`tag '${key}' needs a non-empty string value, found ${JSON.stringify(value)}`);
    }
  }
  const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  check.expect('heartbeatMs', typeof heartbeatMs === 'number' && Number.isFinite(heartbeatMs) && heartbeatMs >= 0, 'a number of milliseconds (0 turns the heartbeat off)');
  check.done();

  const api = `${base}/api/v2`;
  const origin = new URL(base).origin;

  /** One HTTP call to Argus: `{status, text, json}`; network failures and timeouts throw (retried). */
  const request = async (method: 'GET' | 'POST', target: string, body: unknown, signal: AbortSignal) => {
    const address = target.startsWith('http') ? target : `${api}${target}`;
    let response: Response;
    try {
      response = await fetch(address, {
        method, signal, redirect: 'manual',
        headers: { Authorization: `Token ${token}`, Accept: 'application/json', ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new Error(`Argus unreachable (${method} ${address}): ${fetchFailureReason(error)}`, { cause: error });
    }
    const text = await response.text().catch(() => '');
    let json: unknown;
    try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
    return { status: response.status, text, json };
  };

  const detailOf = (answer: { text: string; json: unknown }) => {
    const detail = (answer.json as { detail?: unknown } | undefined)?.detail;
    return typeof detail === 'string' ? detail : answer.text.replace(/\s+/g, ' ').trim().slice(0, 300);
  };

  /**
   * The token flag's check and change run one at a time in this instance: the store answers through promises,
   * and a heartbeat and a delivery meeting a 401 together must still make one loud line, not two.
   */
  let tokenFlagTurn: Promise<unknown> = Promise.resolve();
  const inTokenFlagTurn = <T>(work: () => Promise<T>): Promise<T> => {
    const turn = tokenFlagTurn.then(work);
    tokenFlagTurn = turn.catch(() => undefined);
    return turn;
  };

  /** A 401: one loud line and one report-channel message per outage; the delivery stays queued. */
  const tokenRejected = async (ctx: HookContext, detail: string) => {
    const first = await inTokenFlagTurn(async () => {
      if (await ctx.store.get(TOKEN_FLAG)) return false;
      await ctx.store.set(TOKEN_FLAG, { at: Date.now(), detail });
      return true;
    });
    if (!first) return;
    ctx.log.error(`ARGUS TOKEN REJECTED (${detail}): nothing reaches Argus until a valid token is configured (ARGUS_TOKEN / argus({ token })); changes stay queued and are retried`, { url: base });
    if (!ctx.reportChannel) return;
    try {
      await ctx.slack.chat.postMessage({
        channel: ctx.reportChannel, unfurl_links: false,
        text: `:rotating_light: *Argus rejected IMS's API token* (${detail}). Incidents are not reaching Argus at ${base}; they are kept queued and will be sent once ARGUS_TOKEN holds a new token for IMS's source system (restart or reload IMS after changing it).`,
      });
    } catch (error) {
      ctx.log.warn(`could not tell the report channel that Argus rejected the token: ${slackErrorCode(error) ?? (error as Error).message}`);
    }
  };

  const tokenAccepted = (ctx: HookContext) => inTokenFlagTurn(async () => {
    if (!await ctx.store.get(TOKEN_FLAG)) return;
    await ctx.store.set(TOKEN_FLAG, undefined);
    ctx.log.info('Argus accepts the token again; queued changes are being sent');
  });

  /** Turn a non-2xx answer into the outbox's language: throw to retry, throw permanent to give up. */
  const fail = async (ctx: HookContext, what: string, answer: { status: number; text: string; json: unknown }): Promise<never> => {
    const detail = detailOf(answer);
    if (answer.status === 401) {
      await tokenRejected(ctx, detail);
      throw new Error(`${what}: Argus rejected the token (401 ${detail})`);
    }
    // 5xx, 408 and 429 are retried; any other answer gives the item up.
    throw httpDeliveryError(answer.status, `${what}: Argus answered ${answer.status} ${detail}`);
  };

  /** Argus's pk of our incident with this `source_incident_id`, from `/incidents/mine/` (following `next`). */
  const lookUp = async (ctx: HookContext, id: string, signal: AbortSignal): Promise<number | undefined> => {
    let next: string | null = `/incidents/mine/?source_incident_id=${encodeURIComponent(id)}`;
    for (let page = 0; next && page < 100; page++) {
      const answer = await request('GET', next, undefined, signal);
      if (answer.status !== 200) await fail(ctx, `looking up ${id}`, answer);
      const body = answer.json as { next?: string | null; results?: { pk: number; source_incident_id?: string }[] } | undefined;
      const found = body?.results?.find((i) => i.source_incident_id === id);
      if (found) return found.pk;
      next = body?.next ?? null;
      // The token goes only to Argus itself.
      if (next && new URL(next, api).origin !== origin) throw new PermanentDeliveryError(`looking up ${id}: Argus's next page points elsewhere (${next})`);
    }
    return undefined;
  };

  const isDuplicate = (answer: { status: number; text: string }) =>
    answer.status === 400 && /duplicate key|already exists|unique constraint/i.test(answer.text) && /source_incident_id/i.test(answer.text);

  /** The Argus incident of an IMS incident: the alert's time and text, the post's link, level, tags from the groups IMS kept with it. */
  const createBody = (ctx: HookContext, incident: Incident): ArgusIncidentBody => {
    const groups = incident.groups ?? {};
    const id = sourceId(incident.sourceChannel, incident.sourceTs);
    const tags = [`rule=${incident.ruleNumber || 'none'}`, `label=${incident.label}`, `channel=${incident.sourceChannel}`];
    for (const [key, value] of Object.entries(groups)) {
      if (TAG_KEY.test(key) && !RESERVED_TAGS.has(key) && typeof value === 'string' && value.trim()) tags.push(`${key}=${value.trim()}`);
    }
    for (const [key, value] of Object.entries(extraTags)) tags.push(`${key}=${value}`);
    return {
      start_time: tsIso(incident.sourceTs), end_time: 'infinity', source_incident_id: id,
      description: `${incident.head} ${incident.text}`.trim(),
      details_url: ctx.permalink(incident.incidentChannel, incident.incidentTs),
      level: incident.hotline ? hotlineLevel : level,
      tags: [...new Set(tags)].map((tag) => ({ tag })),
      metadata: {
        ims_incident: incident.id, source_channel: incident.sourceChannel, source_ts: incident.sourceTs,
        incident_channel: incident.incidentChannel, incident_ts: incident.incidentTs, alert_permalink: incident.permalink,
      },
    };
  };

  /** Queue the creation (idempotent: its key is the incident's, so a second enqueue is ignored). */
  const enqueueCreate = async (ctx: HookContext, incident: Incident) => {
    const id = sourceId(incident.sourceChannel, incident.sourceTs);
    await ctx.outbox.enqueue({ key: `create:${id}`, group: id, payload: { kind: 'create', sourceIncidentId: id, body: createBody(ctx, incident) } satisfies Payload });
  };

  /**
   * Queue an END or a RES. Its idempotency key counts the incident's resolutions (or reopenings) so far: a
   * redelivered one is sent once, and two on the same instant (a catch-up opens, resolves and reopens at the
   * time it reads them) are still two.
   */
  const enqueueEvent = async (ctx: HookContext, incident: Incident, type: 'END' | 'RES', at: number, description: string) => {
    const id = sourceId(incident.sourceChannel, incident.sourceTs);
    // The creation is queued (recorded) before the event, so it goes first in the incident's group.
    await enqueueCreate(ctx, incident);
    const nth = (await ctx.incidents.events(incident.id)).filter((e) => e.kind === (type === 'END' ? 'resolve' : 'reopen')).length;
    const restart = type === 'RES'
      ? { ...createBody(ctx, incident), start_time: iso(at), source_incident_id: `${id}:restart:${nth}` }
      : undefined;
    if (restart) restart.metadata = { ...restart.metadata, restart_of: id };
    const payload: Payload = { kind: 'event', sourceIncidentId: id, body: { timestamp: iso(at), type, description }, ...(restart ? { restart } : {}) };
    await ctx.outbox.enqueue({ key: `${type === 'END' ? 'end' : 'res'}:${id}:${nth}`, group: id, payload });
  };

  /** Create an Argus incident from `body` (a duplicate `source_incident_id` counts as created): its pk. */
  const create = async (ctx: HookContext, body: ArgusIncidentBody, what: string): Promise<{ pk: number; existed: boolean }> => {
    const answer = await request('POST', '/incidents/', body, ctx.signal);
    if (answer.status === 201 || answer.status === 200) {
      await tokenAccepted(ctx);
      return { pk: (answer.json as { pk: number }).pk, existed: false };
    }
    if (isDuplicate(answer)) {
      await tokenAccepted(ctx);
      const pk = await lookUp(ctx, body.source_incident_id, ctx.signal);
      if (pk === undefined) throw new PermanentDeliveryError(`${what}: Argus says it exists but /incidents/mine/ does not list it: ${detailOf(answer)}`);
      return { pk, existed: true };
    }
    return fail(ctx, what, answer);
  };

  const deliver = async (delivery: OutboxDelivery, ctx: HookContext): Promise<void> => {
    const payload = delivery.payload as Payload;
    const id = payload.sourceIncidentId;
    // Read-modify-write of the incident's record: one group's deliveries run in order, so no other delivery
    // changes it between this read and the set below.
    const known = await ctx.store.get<Known>(`incident:${id}`) ?? {};
    if (payload.kind === 'create') {
      if (known.pk) return;
      const { pk, existed } = await create(ctx, payload.body, `creating ${id}`);
      await ctx.store.set(`incident:${id}`, { ...known, pk } satisfies Known);
      ctx.log.info(existed ? `Argus incident ${pk} already existed for ${id} (an earlier attempt reached Argus); using it` : `Argus incident ${pk} created for ${id}`);
      return;
    }
    let pk = known.pk;
    if (!pk) {
      pk = await lookUp(ctx, id, ctx.signal);
      if (pk === undefined) throw new PermanentDeliveryError(`${payload.body.type} for ${id}: no Argus incident exists for it (was its creation given up?)`);
      await ctx.store.set(`incident:${id}`, { ...known, pk } satisfies Known);
    }
    const answer = await request('POST', `/incidents/${pk}/events/`, payload.body, ctx.signal);
    if (answer.status === 201 || answer.status === 200) {
      await tokenAccepted(ctx);
      ctx.log.info(`Argus incident ${pk}: ${payload.body.type} posted`);
      return;
    }
    if (payload.body.type === 'RES' && payload.restart && noRestart(answer)) {
      // An Argus without INCIDENT_RESTART: the reopening is a new incident, which the next END closes.
      const restarted = await create(ctx, payload.restart, `restarting ${id} as ${payload.restart.source_incident_id}`);
      await ctx.store.set(`incident:${id}`, { ...known, pk: restarted.pk, restarts: [...new Set([...(known.restarts ?? []), payload.restart.source_incident_id])] } satisfies Known);
      ctx.log.info(`Argus refused RES for ${id} (${detailOf(answer)}: this Argus has no INCIDENT_RESTART, as releases up to 2.9.1): reopened as Argus incident ${restarted.pk} (${payload.restart.source_incident_id})`);
      return;
    }
    return fail(ctx, `${payload.body.type} for ${id} (Argus incident ${pk})`, answer);
  };

  // ─── Heartbeat ─────────────────────────────────────────────────────────────────────────────────
  let heartbeat: Heartbeat | undefined;

  const startHeartbeat = (ctx: HookContext) => {
    if (!heartbeatMs) return;
    const state: Heartbeat = {};
    const beat = async () => {
      // With several instances, the leader alone says the source is alive.
      if (state.inflight || state.stopped || !ctx.leading()) return;
      const stop = new AbortController();
      state.inflight = stop;
      try {
        const answer = await withTimeout((signal) => request('POST', '/incidents/sources/heartbeat/', undefined, signal), timeoutMs, 'the Argus heartbeat', { signal: stop.signal });
        if (answer.status >= 200 && answer.status < 300) await tokenAccepted(ctx);
        else if (answer.status === 401) await tokenRejected(ctx, detailOf(answer));
        else ctx.log.warn(`Argus heartbeat failed: ${answer.status} ${detailOf(answer)}`);
      } catch (error) {
        if (!state.stopped) ctx.log.warn(`Argus heartbeat failed: ${(error as Error).message}`);
      } finally {
        state.inflight = undefined;
      }
    };
    const timeoutMs = Math.min(30_000, Math.max(1000, heartbeatMs));
    state.timer = setInterval(() => void beat().catch(() => undefined), heartbeatMs);
    state.timer.unref();
    heartbeat = state;
    void beat().catch(() => undefined);
  };

  const stopHeartbeat = () => {
    if (!heartbeat) return;
    heartbeat.stopped = true;
    clearInterval(heartbeat.timer);
    heartbeat.inflight?.abort(new Error('stopped'));
    heartbeat = undefined;
  };

  return definePlugin({
    name: 'argus',
    onStart: (ctx) => { stopHeartbeat(); startHeartbeat(ctx); },
    onStop: () => stopHeartbeat(),
    onMatch: (ctx) => enqueueCreate(ctx, ctx.incident),
    onReverse: async (ctx) => {
      const incident = await ctx.incidents.bySource(ctx.message.channel, ctx.message.ts);
      if (incident) await enqueueCreate(ctx, incident);
    },
    onResolve: async (ctx) => {
      const { incident, recovery } = ctx;
      if (recovery) {
        // On the alert's clock, as start_time is; an edit (Zabbix, Sentry) carries its alert's ts, not the edit's time.
        const at = recovery.ts !== incident.sourceTs ? tsMs(recovery.ts) : incident.resolvedAt ?? Date.now();
        await enqueueEvent(ctx, incident, 'END', at, `Recovered: the integration's recovery ${recovery.permalink}`);
        return;
      }
      const by = ctx.user ? ` by ${ctx.user}` : '';
      await enqueueEvent(ctx, incident, 'END', incident.resolvedAt ?? Date.now(), `Resolved in Slack${by} (:${ctx.reaction}:)`);
    },
    onReopen: async (ctx) => {
      if (ctx.recovery) {
        await enqueueEvent(ctx, ctx.incident, 'RES', tsMs(ctx.recovery.ts), `Fired again within the reopen window: ${ctx.recovery.permalink}`);
        return;
      }
      const reopened = (await ctx.incidents.events(ctx.incident.id)).filter((e) => e.kind === 'reopen').at(-1)?.at ?? Date.now();
      const by = ctx.user ? ` by ${ctx.user}` : '';
      await enqueueEvent(ctx, ctx.incident, 'RES', reopened, `Reopened in Slack${by} (:${ctx.reaction}: removed)`);
    },
    deliver,
  });
}

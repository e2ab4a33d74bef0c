// war-room: a dedicated Slack channel per incident — created, staffed, described, linked from the incident
// thread, told who resolved it (or that its integration's recovery did) and archived on resolve, unarchived on
// reopen (or when its alert fires again). Repeats of an alert open no room: they are no new incident.
// Scopes: channels:manage (create/archive/unarchive public rooms, set topic/purpose, invite; the narrower
// channels:write.topic / channels:write.invites also do for those two), groups:write (the same for private rooms), channels:read + groups:read (conversations.list to find a room after
// name_taken), channels:join (join an existing public room found by name), chat:write, pins:write,
// users:read (hotline/invite names → IDs), channels:history + groups:history (find its own earlier posts
// after a crash, by message metadata).
//
// Slack's conversations.create / archive / pins.add are Tier 2 (20+/min): the plugin's WebClient waits out
// 429s itself, and the work runs through IMS's outbox, so a burst of incidents only delays rooms, and a
// failure or a restart in the middle resumes where it stopped instead of making a second room.
import {
  PermanentDeliveryError, WAR_ROOM_PLUGIN, definePlugin, escapeSlack, formatDate, formatDuration, ignoringSlackErrors, isRetryableError, parseDuration,
  pluginOptions, retryOrGiveUp, serialPerKey, slackErrorCode, slackItems, slug, warRoomKey, type Duration, type HookContext, type Incident,
  type LifecycleContext, type MatchContext, type OutboxDelivery, type ResolutionContext, type WarRoomRecord,
} from '../ims.ts';

/** The room record is published in the plugin toolkit (`ims.ts`), where other plugins read it from. */
export { WAR_ROOM_PLUGIN, slug, warRoomKey, type WarRoomRecord } from '../ims.ts';

export interface WarRoomOptions {
  /**
   * Which incidents get a room: `'all'` (the default), `'hotline'` (incidents whose rule pages a hotline),
   * or a list of incident labels (keys of `incidents`, e.g. `'INFRA'`) and/or rule heads (`'[Critical]'`
   * or `'Critical'`), compared case-insensitively.
   */
  rules?: 'all' | 'hotline' | string[];
  /**
   * The room's name: a template or a function of the incident. Template placeholders: `{id}` (the incident
   * number, required so names stay unique), `{slug}` (the rule head as a slug, e.g. `critical`, else the
   * label's), `{head}` (the head's slug), `{label}` (the label's slug). The result is made a valid Slack
   * name: lowercase `[a-z0-9_-]`, at most 80 characters (the slug is shortened first). Default
   * `'inc-{id}-{slug}'`, e.g. `inc-42-critical`.
   */
  name?: string | ((incident: Incident) => string);
  /** Create private rooms (default `false`: public, so anyone can join and read along). */
  private?: boolean;
  /**
   * Who is invited besides the rule's hotline members: user IDs (`U…`) or user names (display or real
   * name, resolved with users.list). User groups (`S…`, `@handle`) and `here`/`channel`/`everyone` are
   * skipped: Slack has no way to invite them. Default none.
   */
  invite?: string[];
  /**
   * The room's topic: a template with `{id}`, `{head}`, `{label}`, `{text}` (the alert, shortened to fit) and
   * `{link}` (the original alert's permalink), kept within Slack's 250 characters; `false` sets neither
   * topic nor purpose. Default `'{head} #{id} · {text} · alert: {link}'`. The purpose always names the
   * incident and links the original alert.
   */
  topic?: string | false;
  /** Archive the room when the incident is resolved (default `true`). */
  archiveOnResolve?: boolean;
  /**
   * How long after the resolution the room is archived: milliseconds or a duration such as `'30m'`
   * (default `0`: at once). The due time is kept in IMS's state, so a restart does not lose it; a reopen
   * cancels it.
   */
  archiveAfter?: Duration;
}

// What the plugin remembers per incident is a `WarRoomRecord` in its store, key `warRoomKey(id)`: both are
// defined in the plugin toolkit, since other plugins (timeline) read it with `ctx.store.read(WAR_ROOM_PLUGIN, …)`.
const DUE_KEY = 'archive-due';

const OPTIONS = ['rules', 'name', 'private', 'invite', 'topic', 'archiveOnResolve', 'archiveAfter'] as const;
const DEFAULT_TOPIC = '{head} #{id} · {text} · alert: {link}';
const NAME_LIMIT = 80;
const TOPIC_LIMIT = 250;
/** A delivery still failing after this many attempts is given up (logged); a permanent Slack answer at once. */
const MAX_ATTEMPTS = 12;

/** The integration's message that resolved (or reopened) an incident: its link and its time on the alert's clock (epoch ms). */
interface AlertLink { permalink: string; at: number }

type Op =
  | { op: 'open'; incidentId: number }
  | { op: 'resolve'; incidentId: number; resolvedAt: number; user: string; recovery?: AlertLink }
  | { op: 'reopen'; incidentId: number; user: string; firedAgain?: AlertLink }
  | { op: 'archive'; incidentId: number; due: number };

/**
 * A war room per incident, in the manner of Dispatch and Playbooks: `inc-<number>-<label>` with the hotline
 * invited, topic and purpose linking the original alert, a pinned summary, a link in the incident thread,
 * then on resolve who resolved it and after how long, and the room archived (`archiveAfter` later).
 */
export function warRoom(options: WarRoomOptions = {}) {
  const check = pluginOptions<WarRoomOptions>('warRoom()', options, OPTIONS);
  const rules = options.rules ?? 'all';
  check.expect('rules', rules === 'all' || rules === 'hotline' || (Array.isArray(rules) && rules.length > 0 && rules.every((r) => typeof r === 'string' && r.trim())),
    `'all', 'hotline' or a non-empty list of incident labels or rule heads such as ['INFRA', '[Critical]']`);
  const nameOption = options.name ?? 'inc-{id}-{slug}';
  check.expect('name', typeof nameOption === 'string' ? nameOption.includes('{id}') : typeof nameOption === 'function',
    `a template containing '{id}' such as 'inc-{id}-{slug}', or a function of the incident`);
  check.expect('private', options.private === undefined || typeof options.private === 'boolean', 'true or false');
  const invite = options.invite ?? [];
  check.expect('invite', Array.isArray(invite) && invite.every((m) => typeof m === 'string' && m.trim()), `a list of user IDs or names such as ['U0123ABCD', 'alice']`);
  const topic = options.topic ?? DEFAULT_TOPIC;
  check.expect('topic', topic === false || (typeof topic === 'string' && !!topic.trim()), `a template such as '${DEFAULT_TOPIC}', or false`);
  check.expect('archiveOnResolve', options.archiveOnResolve === undefined || typeof options.archiveOnResolve === 'boolean', 'true or false');
  const archiveAfterMs = options.archiveAfter === undefined ? 0 : parseDuration(options.archiveAfter) ?? -1;
  check.expect('archiveAfter', archiveAfterMs >= 0, `a duration such as '30m' or milliseconds`);
  check.done();
  const isPrivate = options.private ?? false;
  const archiveOnResolve = options.archiveOnResolve ?? true;
  const wanted = Array.isArray(rules) ? rules.map(normalizeRef) : [];

  const timers = new Map<number, NodeJS.Timeout>();
  /** One piece of work per incident at a time (a timed-out delivery may still be running when it is retried). */
  const exclusive = serialPerKey<number>();
  /**
   * One change of the due map at a time: it is shared by every incident, and its read and write are two awaits
   * apart, so two incidents' deliveries running together would otherwise lose one's change.
   */
  const dueTurn = serialPerKey<string>();
  let users: { at: number; byName: Map<string, string> } | undefined;

  const selected = (incident: Incident) =>
    rules === 'all' ? true : rules === 'hotline' ? !!incident.hotline : wanted.includes(normalizeRef(incident.label)) || wanted.includes(normalizeRef(incident.head));

  const roomName = (incident: Incident): string => {
    if (typeof nameOption === 'function') return slackName(String(nameOption(incident))) || `inc-${incident.id}`;
    const head = slug(incident.head);
    const label = slug(incident.label);
    const fill = (slugText: string, headText: string, labelText: string) =>
      nameOption.replaceAll('{id}', String(incident.id)).replaceAll('{slug}', slugText).replaceAll('{head}', headText).replaceAll('{label}', labelText);
    let name = slackName(fill(head || label, head, label));
    // Over 80 characters: shorten the slugs, never the number.
    for (let cut = 1; name.length > NAME_LIMIT && cut <= NAME_LIMIT; cut++) {
      const shorten = (s: string) => s.slice(0, Math.max(0, s.length - cut)).replace(/-+$/, '');
      name = slackName(fill(shorten(head || label), shorten(head), shorten(label)));
    }
    return name.slice(0, NAME_LIMIT).replace(/[-_]+$/, '') || `inc-${incident.id}`;
  };

  const record = (ctx: HookContext, id: number) => ctx.store.get<WarRoomRecord>(warRoomKey(id));
  /** Read-modify-write of the incident's record: callers run inside `exclusive(id)`, so no other change interleaves. */
  const save = async (ctx: HookContext, id: number, patch: Partial<WarRoomRecord>): Promise<WarRoomRecord> => {
    const next = { ...await record(ctx, id), ...patch };
    await ctx.store.set(warRoomKey(id), next);
    return next;
  };
  const setDue = (ctx: HookContext, id: number, due: number | undefined): Promise<void> => dueTurn(DUE_KEY, async () => {
    const all = { ...await ctx.store.get<Record<string, number>>(DUE_KEY) };
    if (due === undefined) delete all[id]; else all[id] = due;
    await ctx.store.set(DUE_KEY, Object.keys(all).length ? all : undefined);
  });

  // ─── Opening ──────────────────────────────────────────────────────────────────────────────────

  const open = async (ctx: HookContext, incident: Incident): Promise<void> => {
    let room = await record(ctx, incident.id) ?? {};
    if (!room.channel) {
      const created = await createRoom(ctx, incident);
      room = await save(ctx, incident.id, { channel: created.id, name: created.name });
      ctx.log.info(`war room #${created.name} ${created.reused ? 'reused' : 'created'} for incident #${incident.id}`, { channel: created.id });
    }
    const channel = room.channel!;
    ctx.signal.throwIfAborted();
    if (!room.invited) {
      await inviteMembers(ctx, incident, channel);
      room = await save(ctx, incident.id, { invited: true });
    }
    ctx.signal.throwIfAborted();
    if (!room.described && topic !== false) {
      const link = incident.permalink ?? ctx.permalink(incident.sourceChannel, incident.sourceTs);
      await ctx.slack.conversations.setTopic({ channel, topic: renderTopic(topic, incident, link) });
      await ctx.slack.conversations.setPurpose({
        channel,
        purpose: fit(`IMS war room for incident #${incident.id} ${incident.head} (${incident.label}). Original alert: ${link}`, TOPIC_LIMIT),
      });
      room = await save(ctx, incident.id, { described: true });
    }
    ctx.signal.throwIfAborted();
    if (!room.summaryTs) {
      const summaryTs = await postOnce(ctx, incident, room, 'summary', { channel, ...summaryMessage(ctx, incident) });
      room = await save(ctx, incident.id, { summaryTs });
    }
    if (!room.pinned) {
      await ignoringSlackErrors(ctx.slack.pins.add({ channel, timestamp: room.summaryTs! }), ['already_pinned']);
      room = await save(ctx, incident.id, { pinned: true });
    }
    ctx.signal.throwIfAborted();
    if (!room.linkTs) {
      const text = `:rotating_light: War room for incident #${incident.id}: <#${channel}> — join to coordinate.`;
      const linkTs = await postOnce(ctx, incident, room, 'link', { channel: incident.incidentChannel, thread_ts: incident.incidentTs, text });
      room = await save(ctx, incident.id, { linkTs });
    }
  };

  /** Create the room; `name_taken` means it exists already (an earlier run, or a fresh state): reuse it. */
  const createRoom = async (ctx: HookContext, incident: Incident): Promise<{ id: string; name: string; reused: boolean }> => {
    const base = roomName(incident);
    for (let attempt = 1; attempt <= 5; attempt++) {
      const name = attempt === 1 ? base : `${base.slice(0, NAME_LIMIT - 1 - String(attempt).length).replace(/[-_]+$/, '')}-${attempt}`;
      try {
        const answer = await ctx.slack.conversations.create({ name, is_private: isPrivate });
        await ctx.ownChannel(String(answer.channel?.id));
        return { id: String(answer.channel?.id), name: String(answer.channel?.name ?? name), reused: false };
      } catch (error) {
        if (slackErrorCode(error) !== 'name_taken') throw error;
      }
      const existing = await findChannel(ctx, name);
      if (existing && !existing.is_archived) {
        await ctx.ownChannel(existing.id);
        if (!existing.is_member) await ignoringSlackErrors(ctx.slack.conversations.join({ channel: existing.id }), ['already_in_channel']);
        return { id: existing.id, name, reused: true };
      }
      // Archived (an old room of an earlier installation) or invisible (someone's private channel): next name.
      ctx.log.info(`channel #${name} exists but cannot be reused (${existing ? 'archived' : 'not visible to the bot'}); trying another name`);
    }
    throw new PermanentDeliveryError(`no free channel name for incident #${incident.id} (tried ${base} and 4 variants)`);
  };

  /** IMS reads every channel the bot is in as an alert channel, except those a plugin marks as its own. */

  const findChannel = async (ctx: HookContext, name: string) => {
    type Listed = { id: string; name: string; is_archived?: boolean; is_member?: boolean };
    for await (const channel of slackItems<Listed>(ctx.slack, 'conversations.list', { types: 'public_channel,private_channel', exclude_archived: false, limit: 1000 }, 'channels')) {
      if (channel.name === name) return channel;
    }
    return undefined;
  };

  const inviteMembers = async (ctx: HookContext, incident: Incident, channel: string): Promise<void> => {
    // Hotline members as IMS resolved them at start (IDs); only `invite` may still name people.
    const hotline = incident.hotline ? ctx.compiled.hotlines.get(incident.hotline) ?? [] : [];
    const ids = [...new Set(await resolveUsers(ctx, [...hotline, ...invite]))].filter((id) => id !== ctx.botUserId);
    if (!ids.length) return;
    try {
      await ctx.slack.conversations.invite({ channel, users: ids.join(',') });
      return;
    } catch (error) {
      if (isRetryableError(error)) throw error;
      if (ids.length === 1) {
        if (slackErrorCode(error) !== 'already_in_channel') ctx.log.warn(`could not invite ${ids[0]} to the war room of incident #${incident.id}: ${slackErrorCode(error) ?? String(error)}`);
        return;
      }
    }
    // Several users and an error: one at a time, so one bad member does not keep the others out.
    for (const user of ids) {
      try {
        await ctx.slack.conversations.invite({ channel, users: user });
      } catch (error) {
        if (slackErrorCode(error) === 'already_in_channel') continue;
        if (isRetryableError(error)) throw error;
        ctx.log.warn(`could not invite ${user} to the war room of incident #${incident.id}: ${slackErrorCode(error) ?? String(error)}`);
      }
    }
  };

  /** User IDs for members as the config writes them: IDs kept, names looked up, groups and broadcasts skipped. */
  const resolveUsers = async (ctx: HookContext, members: string[]): Promise<string[]> => {
    const ids: string[] = [];
    for (const raw of members.map((m) => m.trim())) {
      if (/^[@!]?(here|channel|everyone)$/i.test(raw)) continue;
      if (/^S[A-Z0-9]{2,}$/.test(raw) || raw.startsWith('@')) {
        ctx.log.debug(`user group ${raw} skipped: its members cannot be invited (usergroups.users.list is not used)`);
        continue;
      }
      if (/^[UW][A-Z0-9]{6,}$/.test(raw)) { ids.push(raw); continue; }
      if (!users || Date.now() - users.at > 10 * 60_000 || (!users.byName.has(raw) && Date.now() - users.at > 60_000)) {
        const byName = new Map<string, string>();
        type Member = { id: string; name?: string; real_name?: string; deleted?: boolean; profile?: { display_name?: string; real_name?: string } };
        for await (const u of slackItems<Member>(ctx.slack, 'users.list', { limit: 1000 }, 'members')) {
          if (u.deleted) continue;
          for (const name of [u.name, u.profile?.display_name, u.real_name, u.profile?.real_name]) if (name && !byName.has(name)) byName.set(name, u.id);
        }
        users = { at: Date.now(), byName };
      }
      const id = users.byName.get(raw);
      if (id) ids.push(id);
      else ctx.log.warn(`no user named '${raw}' to invite to a war room; write the user ID (U…) instead`);
    }
    return ids;
  };

  const summaryMessage = (ctx: HookContext, incident: Incident) => {
    const link = incident.permalink ?? ctx.permalink(incident.sourceChannel, incident.sourceTs);
    const zone = ctx.config.timezone;
    const head = escapeSlack(incident.head);
    const text = escapeSlack(incident.text);
    const facts = [
      `*Label* ${escapeSlack(incident.label)}`,
      `*Opened* ${formatDate(incident.createdAt, zone)}${zone ? ` ${zone}` : ''}`,
      ...(incident.hotline ? [`*Hotline* ${escapeSlack(incident.hotline)}`] : []),
      `*Incident post* <${ctx.permalink(incident.incidentChannel, incident.incidentTs)}|in <#${incident.incidentChannel}>>`,
      `*Original alert* <${link}|in <#${incident.sourceChannel}>>`,
    ];
    return {
      text: fit(`Incident #${incident.id} ${head}: ${text}`, 3000),
      blocks: [
        { type: 'header', text: { type: 'plain_text', text: fit(`Incident #${incident.id} ${incident.head}`, 150) } },
        { type: 'section', text: { type: 'mrkdwn', verbatim: true, text: fit(text || '(no text)', 2900) } },
        { type: 'section', text: { type: 'mrkdwn', text: facts.join('\n') } },
        { type: 'context', elements: [{ type: 'mrkdwn', text: `React with :${(ctx.config.resolvedReactions ?? ['white_check_mark'])[0]}: on the incident post when it is resolved.` }] },
      ],
    };
  };

  /** Post once: after a crash between posting and saving, find the earlier post by its metadata. */
  const postOnce = async (ctx: HookContext, incident: Incident, room: WarRoomRecord, kind: 'summary' | 'link',
    message: { channel: string; thread_ts?: string; text: string; blocks?: unknown[] }): Promise<string> => {
    if (room.posting?.includes(kind)) {
      const earlier = await findOwnPost(ctx, incident, message.channel, message.thread_ts, kind);
      if (earlier) return earlier;
    }
    await save(ctx, incident.id, { posting: [...new Set([...(room.posting ?? []), kind])] });
    const answer = await ctx.slack.chat.postMessage({
      ...message, blocks: message.blocks as never, unfurl_links: false, unfurl_media: false,
      metadata: { event_type: 'ims_war_room', event_payload: { incident_id: incident.id, kind } },
    });
    await save(ctx, incident.id, { posting: ((await record(ctx, incident.id))?.posting ?? []).filter((k) => k !== kind) });
    return String(answer.ts);
  };

  const findOwnPost = async (ctx: HookContext, incident: Incident, channel: string, threadTs: string | undefined, kind: string) => {
    try {
      const answer = threadTs
        ? await ctx.slack.conversations.replies({ channel, ts: threadTs, include_all_metadata: true, limit: 200 })
        : await ctx.slack.conversations.history({ channel, include_all_metadata: true, limit: 200 });
      const mine = ((answer.messages ?? []) as { ts?: string; metadata?: { event_type?: string; event_payload?: Record<string, unknown> } }[]).find((m) =>
        m.metadata?.event_type === 'ims_war_room' && Number(m.metadata.event_payload?.incident_id) === incident.id && m.metadata.event_payload?.kind === kind);
      return mine?.ts;
    } catch (error) {
      ctx.log.debug(`could not look for an earlier ${kind} post: ${slackErrorCode(error) ?? String(error)}`);
      return undefined;
    }
  };

  // ─── Resolution, archive, reopen ──────────────────────────────────────────────────────────────

  const resolve = async (ctx: HookContext, incident: Incident, op: Extract<Op, { op: 'resolve' }>): Promise<void> => {
    let room = await record(ctx, incident.id);
    if (!room?.channel) return;
    const channel = room.channel;
    const due = op.resolvedAt + archiveAfterMs;
    if (room.resolvedPosted !== op.resolvedAt) {
      // A recovery is timed on the alert's clock (from the alert to its recovery), a person's resolution on IMS's.
      const after = formatDuration(op.recovery ? op.recovery.at - Number.parseFloat(incident.sourceTs) * 1000 : op.resolvedAt - incident.createdAt);
      const plan = !archiveOnResolve ? '' : archiveAfterMs > 0 ? ` This channel will be archived in ${formatDuration(archiveAfterMs)}.` : ' Archiving this channel.';
      const by = op.recovery ? `its integration's <${op.recovery.permalink}|recovery>` : `<@${op.user}>`;
      const text = `:white_check_mark: Incident #${incident.id} was resolved by ${by} after ${after}.${plan}`;
      let archivedByHand = false;
      if (!room.archived) {
        try {
          await ctx.slack.chat.postMessage({ channel, text, unfurl_links: false });
        } catch (error) {
          if (slackErrorCode(error) !== 'is_archived') throw error;
          archivedByHand = true; // someone archived it already: nothing left to do there
        }
      }
      room = await save(ctx, incident.id, { resolvedPosted: op.resolvedAt, ...(archivedByHand ? { archived: true } : {}) });
    }
    if (!archiveOnResolve || room.archived) return;
    if ((await ctx.incidents.byId(incident.id))?.resolvedAt !== op.resolvedAt) return; // reopened since: stay open
    if (due <= Date.now()) {
      await archive(ctx, incident.id);
    } else {
      await save(ctx, incident.id, { archiveAt: due });
      await setDue(ctx, incident.id, due);
      await schedule(ctx, incident.id, due);
    }
  };

  const archive = async (ctx: HookContext, incidentId: number): Promise<void> => {
    clearTimer(incidentId);
    const room = await record(ctx, incidentId);
    if (!room?.channel || room.archived) { await setDue(ctx, incidentId, undefined); return; }
    await ignoringSlackErrors(ctx.slack.conversations.archive({ channel: room.channel }), ['already_archived']);
    await save(ctx, incidentId, { archived: true, archiveAt: undefined });
    await setDue(ctx, incidentId, undefined);
    ctx.log.info(`war room #${room.name ?? room.channel} archived (incident #${incidentId} resolved)`, { channel: room.channel });
  };

  const reopen = async (ctx: HookContext, incident: Incident, op: Extract<Op, { op: 'reopen' }>): Promise<void> => {
    let room = await record(ctx, incident.id);
    if (!room?.channel) return;
    const channel = room.channel;
    clearTimer(incident.id);
    await setDue(ctx, incident.id, undefined);
    room = await save(ctx, incident.id, { archiveAt: undefined });
    if (room.archived) {
      try {
        await ignoringSlackErrors(ctx.slack.conversations.unarchive({ channel }), ['not_archived']);
      } catch (error) {
        if (isRetryableError(error)) throw error;
        // Slack does not let every bot token unarchive: say so where people look, and keep going.
        ctx.log.warn(`could not unarchive the war room of incident #${incident.id}: ${slackErrorCode(error) ?? String(error)}`);
        await ctx.slack.chat.postMessage({
          channel: incident.incidentChannel, thread_ts: incident.incidentTs,
          text: `:warning: Incident #${incident.id} was reopened, but its war room <#${channel}> is archived and IMS could not unarchive it (${slackErrorCode(error) ?? 'error'}). Anyone in the channel can unarchive it.`,
        });
        return;
      }
      room = await save(ctx, incident.id, { archived: false });
      ctx.log.info(`war room #${room.name ?? channel} unarchived (incident #${incident.id} reopened)`, { channel });
    }
    await ctx.slack.chat.postMessage({
      channel, unfurl_links: false,
      text: op.firedAgain
        ? `:rotating_light: Incident #${incident.id} was reopened: its alert <${op.firedAgain.permalink}|fired again> within the reopen window.`
        : `:leftwards_arrow_with_hook: Incident #${incident.id} was reopened by <@${op.user}>.`,
    });
    await save(ctx, incident.id, { resolvedPosted: undefined });
  };

  const clearTimer = (incidentId: number) => {
    clearTimeout(timers.get(incidentId));
    timers.delete(incidentId);
  };

  /**
   * A timer for a delayed archive; when due it queues the archive as an outbox delivery (retried, ordered).
   * Already due: queued now, and the promise resolves once it is (never rejects: a failure is logged).
   */
  const schedule = (ctx: HookContext, incidentId: number, due: number): Promise<void> => {
    clearTimer(incidentId);
    const wait = due - Date.now();
    const fire = async (): Promise<void> => {
      timers.delete(incidentId);
      if (due - Date.now() > 0) return schedule(ctx, incidentId, due);
      try {
        await ctx.outbox.enqueue({ key: `archive:${incidentId}:${due}`, group: `war-room:${incidentId}`, payload: { op: 'archive', incidentId, due } satisfies Op });
      } catch (error) {
        ctx.log.error(`could not queue the archive of the war room of incident #${incidentId}: ${String(error)}`);
      }
    };
    if (wait <= 0) return fire();
    const timer = setTimeout(() => void fire(), Math.min(wait, 2 ** 31 - 1));
    timer.unref();
    timers.set(incidentId, timer);
    return Promise.resolve();
  };

  const enqueue = (ctx: HookContext, key: string, op: Op) => ctx.outbox.enqueue({ key, group: `war-room:${op.incidentId}`, payload: op });

  return definePlugin({
    name: WAR_ROOM_PLUGIN,
    async onStart(ctx: LifecycleContext) {
      // Delayed archives of an earlier run: archive the due ones, re-arm the others.
      for (const [id, due] of Object.entries(await ctx.store.get<Record<string, number>>(DUE_KEY) ?? {})) await schedule(ctx, Number(id), due);
    },
    onStop() {
      for (const id of [...timers.keys()]) clearTimer(id);
    },
    async onMatch(ctx: MatchContext) {
      if (!selected(ctx.incident)) return;
      await enqueue(ctx, `open:${ctx.incident.id}`, { op: 'open', incidentId: ctx.incident.id });
    },
    async onResolve(ctx: ResolutionContext) {
      const { incident, recovery } = ctx;
      if (incident.resolvedAt === undefined || !(selected(incident) || await record(ctx, incident.id))) return;
      // Counted, not timed: a catch-up resolves, reopens and resolves again on one instant, and each is its own.
      const resolutions = (await ctx.incidents.events(incident.id)).filter((e) => e.kind === 'resolve').length;
      await enqueue(ctx, `resolve:${incident.id}:${resolutions}`, {
        op: 'resolve', incidentId: incident.id, resolvedAt: incident.resolvedAt, user: ctx.user,
        ...(recovery ? { recovery: { permalink: recovery.permalink, at: Number.parseFloat(recovery.ts) * 1000 } } : {}),
      });
    },
    async onReopen(ctx: ResolutionContext) {
      const { incident, recovery } = ctx;
      if (!(selected(incident) || await record(ctx, incident.id))) return;
      const reopenings = (await ctx.incidents.events(incident.id)).filter((e) => e.kind === 'reopen').length;
      await enqueue(ctx, `reopen:${incident.id}:${reopenings}`, {
        op: 'reopen', incidentId: incident.id, user: ctx.user,
        ...(recovery ? { firedAgain: { permalink: recovery.permalink, at: Number.parseFloat(recovery.ts) * 1000 } } : {}),
      });
    },
    async deliver(delivery: OutboxDelivery, ctx: HookContext) {
      const op = delivery.payload as Op;
      const incident = await ctx.incidents.byId(op.incidentId);
      if (!incident) throw new PermanentDeliveryError(`incident #${op.incidentId} is not in the state`);
      try {
        await exclusive(incident.id, async () => {
          switch (op.op) {
            case 'open': return open(ctx, incident);
            case 'resolve': return resolve(ctx, incident, op);
            case 'reopen': return reopen(ctx, incident, op);
            case 'archive':
              if ((await record(ctx, incident.id))?.archiveAt !== op.due) return; // cancelled by a reopen, or done
              if ((await ctx.incidents.byId(incident.id))?.resolvedAt === undefined) { await setDue(ctx, incident.id, undefined); return; }
              return archive(ctx, incident.id);
          }
        });
      } catch (error) {
        throw retryOrGiveUp(error, delivery, { what: `${op.op} for incident #${op.incidentId}`, maxAttempts: MAX_ATTEMPTS });
      }
    },
  });
}

// ─── Helpers ──────────────────────────────────────────────────────────────────────────────────────

function slackName(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/-{2,}/g, '-').replace(/^[-_]+|[-_]+$/g, '');
}

/** A label or head as the `rules` option may write it: `[Critical]`, `critical` and `CRITICAL` are the same. */
function normalizeRef(ref: string): string {
  return ref.trim().replace(/^\[(.*)\]$/, '$1').trim().toLowerCase();
}

function fit(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`;
}

/** Topic and purpose are plain text for Slack (no formatting, no mentions): nothing to escape, only to fit. */
function renderTopic(template: string, incident: Incident, link: string): string {
  const render = (text: string) => template.replaceAll('{id}', String(incident.id)).replaceAll('{head}', incident.head)
    .replaceAll('{label}', incident.label).replaceAll('{link}', link).replaceAll('{text}', text);
  const text = incident.text.replace(/\s+/g, ' ').trim();
  const room = TOPIC_LIMIT - render('').length;
  // Shorten the alert text, never the link.
  return fit(render(room <= 0 ? '' : fit(text, room)), TOPIC_LIMIT);
}

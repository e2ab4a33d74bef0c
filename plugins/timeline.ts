// timeline: when an incident is resolved, a Markdown post-mortem timeline uploaded into the incident thread
// (and written to a directory): the alert, the repost, hotline pages, reactions and thread replies with
// authors and times, the war room's messages, and the resolution with MTTA and MTTR. With alert lifecycles,
// also its repeats (counted, one line per run), acknowledgements made in the monitoring tool, flapping, the
// alert firing again, and the integration's recovery with its link.
// Scopes: files:write (files v2 upload), channels:history + groups:history (conversations.replies of the
// incident thread, conversations.history of the war room), reactions:read (reactions.get), users:read
// (authors' real names), channels:read + groups:read (channel names).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  PermanentDeliveryError, WAR_ROOM_PLUGIN, acknowledgement, dateParts, decodeEntities, definePlugin, formatDuration, pluginOptions, recoveryOf, retryOrGiveUp,
  serialPerKey, slackErrorCode, slackList, slug, timeToResolve, tsToMs, warRoomKey, type HookContext, type Incident, type IncidentEvent, type OutboxDelivery,
  type ResolutionContext, type WarRoomRecord,
} from '../ims.ts';

export interface TimelineOptions {
  /**
   * Also write each timeline into this directory as `incident-<id>-<slug>.md` (created when missing; a
   * relative path is taken from IMS's working directory). A later resolution of the same incident
   * (after a reopen) overwrites it with the updated timeline. Default: upload only.
   */
  dir?: string;
}

interface Entry {
  at?: number;
  who?: string;
  what: string;
}

/** A delivery still failing after this many attempts is given up (logged); a permanent Slack answer at once. */
const MAX_ATTEMPTS = 12;

/**
 * A post-mortem timeline per resolution, as Dispatch and Playbooks keep one: built from IMS's recorded
 * events and, for completeness, from Slack itself (the incident thread, the reactions, the war room of the
 * war-room plugin if any), uploaded as `incident-<id>-<slug>.md` into the incident's thread. One file per
 * resolution: a redelivered resolve does not upload twice; a reopen and a new resolution make a new one.
 */
export function timeline(options: TimelineOptions = {}) {
  const check = pluginOptions<TimelineOptions>('timeline()', options, ['dir']);
  check.expect('dir', options.dir === undefined || (typeof options.dir === 'string' && !!options.dir.trim()), `a directory path such as './postmortems'`);
  check.done();
  const dir = options.dir === undefined ? undefined : path.resolve(options.dir);
  /** One timeline per incident at a time (a timed-out delivery may still be running when it is retried). */
  const exclusive = serialPerKey<number>();

  const publish = async (ctx: HookContext, incident: Incident, resolvedAt: number): Promise<void> => {
    const doneKey = `uploaded:${incident.id}:${resolvedAt}`;
    if (await ctx.store.get(doneKey)) return;
    const { markdown, summary } = await buildTimeline(ctx, incident);
    const filename = `incident-${incident.id}-${slug(incident.head) || slug(incident.label) || 'incident'}.md`;
    if (dir) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, filename), markdown);
    }
    ctx.signal.throwIfAborted();
    await ctx.slack.filesUploadV2({
      channel_id: incident.incidentChannel, thread_ts: incident.incidentTs, content: markdown, filename,
      title: `Incident #${incident.id} ${incident.head} — timeline`,
      initial_comment: `:memo: Post-mortem timeline of incident #${incident.id} (${summary}).`,
    });
    await ctx.store.set(doneKey, { filename, at: Date.now() });
    ctx.log.info(`timeline of incident #${incident.id} uploaded as ${filename}${dir ? ` and written to ${dir}` : ''}`);
  };

  return definePlugin({
    name: 'timeline',
    async onResolve(ctx: ResolutionContext) {
      const { incident } = ctx;
      if (incident.resolvedAt === undefined) return;
      await ctx.outbox.enqueue({ key: `timeline:${incident.id}:${incident.resolvedAt}`, group: `timeline:${incident.id}`, payload: { incidentId: incident.id, resolvedAt: incident.resolvedAt } });
    },
    async deliver(delivery: OutboxDelivery, ctx: HookContext) {
      const { incidentId, resolvedAt } = delivery.payload as { incidentId: number; resolvedAt: number };
      const incident = await ctx.incidents.byId(incidentId);
      if (!incident) throw new PermanentDeliveryError(`incident #${incidentId} is not in the state`);
      if (incident.resolvedAt !== resolvedAt) {
        ctx.log.debug(`incident #${incidentId} was reopened before its timeline was made; the next resolution makes one`);
        return;
      }
      try {
        await exclusive(incidentId, () => publish(ctx, incident, resolvedAt));
      } catch (error) {
        throw retryOrGiveUp(error, delivery, { what: `timeline of incident #${incidentId}`, maxAttempts: MAX_ATTEMPTS });
      }
    },
  });
}

// ─── Building the Markdown ───────────────────────────────────────────────────────────────────────

interface SlackMessage {
  ts: string;
  user?: string;
  bot_id?: string;
  username?: string;
  subtype?: string;
  text?: string;
  reply_count?: number;
  files?: { name?: string; title?: string }[];
  metadata?: { event_type?: string };
}

/** IMS's own thread notes about an alert's lifecycle (repeats, firing again): the timeline tells those from its events. */
const LIFECYCLE_NOTE = 'ims_lifecycle_note';

async function buildTimeline(ctx: HookContext, incident: Incident): Promise<{ markdown: string; summary: string }> {
  const zone = ctx.config.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
  const when = (ms: number) => {
    const p = dateParts(ms, zone);
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
  };
  const people = new Names(ctx);
  const events = await ctx.incidents.events(incident.id);
  const entries: Entry[] = [];
  const untimed: Entry[] = [];
  const warn = (what: string, error: unknown) => ctx.log.warn(`timeline of incident #${incident.id}: could not read ${what}: ${slackErrorCode(error) ?? String(error)}`);

  const sourceName = await people.channel(incident.sourceChannel);
  const incidentChannelName = await people.channel(incident.incidentChannel);
  const alertLink = incident.permalink ?? ctx.permalink(incident.sourceChannel, incident.sourceTs);
  const postLink = ctx.permalink(incident.incidentChannel, incident.incidentTs);
  entries.push({ at: tsToMs(incident.sourceTs), who: incident.poster, what: `Alert posted in ${sourceName} ([link](${alertLink}))` });
  entries.push({ at: tsToMs(incident.incidentTs), who: ctx.botUserId, what: `Reposted to ${incidentChannelName} as ${incident.head} ([link](${postLink}))` });

  entries.push(...lifecycleEntries(incident, events, ctx.botUserId, (ms) => when(ms).slice(11, 16)));
  for (const event of events) {
    if (event.kind === 'hotline') {
      const members = ctx.compiled.hotlines.get(event.detail ?? '') ?? [];
      const mentions = await Promise.all(members.map((m) => people.mention(m)));
      // The page is part of the repost (IMS's clock and Slack's may differ by a hair): never list it before.
      entries.push({ at: Math.max(event.at, tsToMs(incident.incidentTs)), who: ctx.botUserId, what: `Paged hotline ${event.detail}${mentions.length ? `: ${mentions.join(', ')}` : ''}` });
    } else if (event.kind === 'reaction') {
      entries.push({ at: event.at, who: event.user, what: `Reacted :${event.detail}:` });
    } else if (event.kind === 'resolve') {
      entries.push({ at: event.at, who: event.user, what: '**Resolved** the incident' });
    } else if (event.kind === 'reopen') {
      const firedAgain = !!event.user && (event.user === incident.poster || events.some((e) => e.kind === 'recovery' && e.user === event.user));
      entries.push({ at: event.at, who: event.user, what: firedAgain ? '**Reopened** the incident: its alert fired again within the reopen window' : '**Reopened** the incident' });
    } else if (event.kind === 'note') {
      entries.push({ at: event.at, who: event.user, what: `Note: ${event.detail ?? ''}` });
    }
  }

  // Reactions Slack has that IMS did not record (added while it was down): listed without a time.
  const recorded = new Set(events.filter((e) => e.kind === 'reaction').map((e) => `${e.user}:${e.detail}`));
  for (const [channel, ts, where] of [[incident.incidentChannel, incident.incidentTs, 'the incident post'], [incident.sourceChannel, incident.sourceTs, 'the original alert']]) {
    try {
      const answer = await ctx.slack.reactions.get({ channel, timestamp: ts, full: true });
      const reactions = ((answer.message as { reactions?: { name: string; users?: string[] }[] } | undefined)?.reactions) ?? [];
      for (const reaction of reactions) {
        for (const user of reaction.users ?? []) {
          if (user === ctx.botUserId || recorded.has(`${user}:${reaction.name}`)) continue;
          recorded.add(`${user}:${reaction.name}`);
          untimed.push({ who: user, what: `Reacted :${reaction.name}: on ${where}` });
        }
      }
    } catch (error) {
      warn(`the reactions on ${where}`, error);
    }
  }

  // The incident thread, from Slack (complete, with the bots' posts), merged with the replies IMS recorded.
  const fetched = new Set<string>();
  try {
    for (const m of await readAll(ctx, 'conversations.replies', { channel: incident.incidentChannel, ts: incident.incidentTs, limit: 200, include_all_metadata: true })) {
      if (m.ts === incident.incidentTs || m.subtype === 'file_share' || m.metadata?.event_type === LIFECYCLE_NOTE) continue;
      const who = m.user ?? m.bot_id;
      fetched.add(`${who}:${Math.round(tsToMs(m.ts))}`);
      entries.push({ at: tsToMs(m.ts), who, what: `Replied in the incident thread: ${await people.text(m.text ?? '')}` });
    }
  } catch (error) {
    warn('the incident thread', error);
  }
  for (const event of events.filter((e) => e.kind === 'reply' && !fetched.has(`${e.user}:${Math.round(e.at)}`))) {
    entries.push({ at: event.at, who: event.user, what: `Replied in the incident thread: ${await people.text(event.detail ?? '')}` });
  }

  // The war room (the record the war-room plugin publishes in its store), its threads included.
  const room = await ctx.store.read<WarRoomRecord>(WAR_ROOM_PLUGIN, warRoomKey(incident.id));
  let roomLine: string | undefined;
  if (room?.channel) {
    const roomName = room.name ? `#${room.name}` : await people.channel(room.channel);
    roomLine = `${roomName} (${ctx.permalink(room.channel, incident.incidentTs).replace(/\/p\d+$/, '')})`;
    try {
      const oldest = ((incident.createdAt - 60_000) / 1000).toFixed(6);
      const top = await readAll(ctx, 'conversations.history', { channel: room.channel, oldest, limit: 200 });
      for (const m of top.sort((a, b) => tsToMs(a.ts) - tsToMs(b.ts))) {
        entries.push({ at: tsToMs(m.ts), who: m.user ?? m.bot_id, what: `In ${roomName}: ${await describeMessage(people, m)}` });
        if (!m.reply_count) continue;
        for (const reply of await readAll(ctx, 'conversations.replies', { channel: room.channel, ts: m.ts, limit: 200 })) {
          if (reply.ts === m.ts) continue;
          entries.push({ at: tsToMs(reply.ts), who: reply.user ?? reply.bot_id, what: `In ${roomName} (thread): ${await describeMessage(people, reply)}` });
        }
      }
    } catch (error) {
      warn('the war room', error);
    }
  }

  // The resolution and the figures.
  const ack = acknowledgement(incident, events, ctx.botUserId);
  const mtta = ack ? formatDuration(Math.max(0, ack.at - incident.createdAt)) : undefined;
  const ttr = timeToResolve(incident, events);
  const mttr = ttr === undefined ? undefined : formatDuration(ttr);
  const recovery = recoveryOf(incident, events);
  const resolver = recovery
    ? `its integration's recovery${recovery.permalink ? ` ([link](${recovery.permalink}))` : ''}`
    : incident.resolvedBy ? await people.name(incident.resolvedBy) : 'someone';
  // A recovery resolves on the alert's clock (IMS may have read it later, as a catch-up does).
  const resolvedAt = recovery?.at ?? incident.resolvedAt;
  const ackHow = ack ? { reaction: 'reaction', reply: 'thread reply', acknowledge: 'acknowledgement in the monitoring tool', button: 'click of Acknowledge', resolve: 'the resolution itself' }[ack.how] : '';

  entries.sort((a, b) => (a.at ?? 0) - (b.at ?? 0));
  const line = async (entry: Entry) => `- ${entry.at === undefined ? '(time not recorded)' : when(entry.at)} — **${await people.name(entry.who)}**: ${indent(entry.what)}`;

  const out: string[] = [];
  out.push(`# Incident #${incident.id} ${incident.head}`, '');
  out.push(`Post-mortem timeline generated by IMS on ${when(Date.now())} (${zone}).`, '');
  out.push(`- **Label:** ${incident.label} (rule ${incident.ruleNumber})`);
  if (incident.hotline) out.push(`- **Hotline:** ${incident.hotline}`);
  out.push(`- **Opened:** ${when(incident.createdAt)}`);
  if (ack) out.push(`- **Acknowledged:** ${when(ack.at)} by ${await people.name(ack.user)} (${ackHow}) — MTTA ${mtta}`);
  if (resolvedAt !== undefined) out.push(`- **Resolved:** ${when(resolvedAt)} by ${resolver} — MTTR ${mttr}`);
  out.push(`- **Original alert:** ${alertLink}`);
  out.push(`- **Incident post:** ${postLink}`);
  if (roomLine) out.push(`- **War room:** ${roomLine}`);
  out.push('', '## Alert', '', ...quote(incident.text), '');
  out.push(`## Timeline (${zone})`, '');
  for (const entry of entries) out.push(await line(entry));
  if (untimed.length) {
    out.push('', '### Also recorded by Slack', '');
    for (const entry of untimed) out.push(await line(entry));
  }
  out.push('', '## Resolution', '');
  if (resolvedAt !== undefined) out.push(recovery ? `- Resolved by ${resolver} at ${when(resolvedAt)}.` : `- Resolved by **${resolver}** at ${when(resolvedAt)}.`);
  out.push(`- Time to acknowledge (MTTA): ${mtta ?? 'not acknowledged'}${ack ? ` — first ${ackHow} by ${await people.name(ack.user)}` : ''}.`);
  out.push(`- Time to resolve (MTTR): ${mttr ?? 'not resolved'}.`);
  const reopenings = events.filter((e) => e.kind === 'reopen').length;
  if (reopenings) out.push(`- Reopened ${reopenings} time${reopenings === 1 ? '' : 's'} before this resolution.`);
  if (incident.repeats) out.push(`- Its alert repeated ${incident.repeats} time${incident.repeats === 1 ? '' : 's'} (folded into this incident: no new post, no new page).`);
  const flaps = events.filter((e) => e.kind === 'flapping' && e.detail === 'start').length;
  if (flaps) out.push(`- Its alert flapped ${flaps === 1 ? 'once' : `${flaps} times`}: nobody was paged again while it did.`);
  out.push('');
  return { markdown: out.join('\n'), summary: `MTTA ${mtta ?? '—'} · MTTR ${mttr ?? '—'}` };
}

/**
 * The entries of an alert's lifecycle: each run of repeats as one line (`Repeated 12× between 10:02 and 10:40`,
 * a run ending at any change of the incident's state), the integration's recoveries and acknowledgements with
 * their links, flapping starting and stopping. `clock` writes a time of day.
 */
function lifecycleEntries(incident: Incident, events: readonly IncidentEvent[], botUserId: string, clock: (ms: number) => string): Entry[] {
  const entries: Entry[] = [];
  let run: IncidentEvent[] = [];
  const link = (event: IncidentEvent) => (event.detail ? ` ([link](${event.detail}))` : '');
  const endRun = () => {
    if (!run.length) return;
    const [first, last] = [run[0], run[run.length - 1]];
    entries.push({
      at: first.at, who: first.user ?? incident.poster,
      what: run.length === 1 ? `Fired again (a repeat, folded into the incident)${link(first)}` : `Repeated ${run.length}× between ${clock(first.at)} and ${clock(last.at)} (the last${link(last)})`,
    });
    run = [];
  };
  for (const event of events) {
    if (event.kind === 'repeat') { run.push(event); continue; }
    if (event.kind === 'recovery' || event.kind === 'resolve' || event.kind === 'reopen' || event.kind === 'acknowledge' || event.kind === 'flapping') endRun();
    if (event.kind === 'recovery') entries.push({ at: event.at, who: event.user, what: `Posted the alert's **recovery**${link(event)}` });
    else if (event.kind === 'acknowledge') entries.push({ at: event.at, who: event.user, what: event.detail === 'button' ? 'Acknowledged it (button on the incident post)' : `Acknowledged the alert in the monitoring tool${link(event)}` });
    else if (event.kind === 'flapping') {
      entries.push({
        at: event.at, who: botUserId,
        what: event.detail === 'start' ? 'Its alert started **flapping**: the post is edited in place and nobody is paged again until it is stable' : 'Its alert stopped flapping: stable again',
      });
    }
  }
  endRun();
  return entries;
}

async function describeMessage(people: Names, m: SlackMessage): Promise<string> {
  const files = (m.files ?? []).map((f) => `[file ${f.title ?? f.name ?? ''}]`).join(' ');
  const text = await people.text(m.text ?? '');
  return [text, files].filter(Boolean).join(' ') || `(${m.subtype ?? 'empty message'})`;
}

function readAll(ctx: HookContext, method: string, args: Record<string, unknown>): Promise<SlackMessage[]> {
  return slackList<SlackMessage>(ctx.slack, method, args, 'messages', { signal: ctx.signal });
}

/** Users and channels as a timeline shows them, named through IMS's shared name service (`ctx.names`, cached per ID). */
class Names {
  constructor(private readonly ctx: HookContext) {}

  async name(id: string | undefined): Promise<string> {
    if (!id) return 'someone';
    if (/^B[A-Z0-9]+$/.test(id)) {
      // An integration by the name Slack knows it under (bots.info), else its ID.
      const name = await this.ctx.names.user(id);
      return name === id ? `bot ${id}` : name;
    }
    return this.ctx.names.user(id);
  }

  async channel(id: string): Promise<string> {
    return `#${await this.ctx.names.channel(id)}`;
  }

  /** A hotline member as people read it: `@Ona Call`, `@here`, `@group S0123`. */
  async mention(member: string): Promise<string> {
    const special = member.replace(/^[@!]/, '').toLowerCase();
    if (['here', 'channel', 'everyone'].includes(special)) return `@${special}`;
    if (/^S[A-Z0-9]{2,}$/.test(member)) return `@group ${member}`;
    if (/^[UW][A-Z0-9]{6,}$/.test(member)) return `@${await this.name(member)}`;
    return `@${member.replace(/^@/, '')}`;
  }

  /** Slack message text as plain Markdown: mentions named, links made Markdown links, entities decoded. */
  async text(text: string): Promise<string> {
    const ids = [...text.matchAll(/<@([UW][A-Z0-9]+)(?:\|[^>]*)?>/g)].map((m) => m[1]);
    const names = new Map(await Promise.all(ids.map(async (id) => [id, await this.name(id)] as const)));
    const channelIds = [...text.matchAll(/<#([CG][A-Z0-9]+)>/g)].map((m) => m[1]);
    const channels = new Map(await Promise.all(channelIds.map(async (id) => [id, await this.channel(id)] as const)));
    return decodeEntities(text.replace(/<([^<>]+)>/g, (_all, inner: string) => {
      const [target, label] = inner.split('|', 2);
      if (target.startsWith('@')) return `@${label ?? names.get(target.slice(1)) ?? target.slice(1)}`;
      if (target.startsWith('#')) return label ? `#${label}` : channels.get(target.slice(1)) ?? target;
      if (target.startsWith('!subteam^')) return label ?? `@group ${target.slice(9)}`;
      if (target.startsWith('!')) return `@${target.slice(1)}`;
      return label ? `[${label}](${target})` : target;
    }));
  }
}

/** Continuation lines of a list item, indented so the list stays a list. */
function indent(text: string): string {
  return text.trim().replace(/\r?\n/g, '\n  ');
}

function quote(text: string): string[] {
  return (text.trim() || '(no text)').split(/\r?\n/).map((l) => `> ${l}`.trimEnd());
}

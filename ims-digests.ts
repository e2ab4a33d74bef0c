/**
 * Digest posts. Slack takes about one post per second per channel; in a storm, incident posts would queue behind
 * that limit for minutes. So while an incident channel has a backlog (more incident posts waiting than its pace
 * lets go now), the waiting alerts go out together as one digest post listing them: each with its head, its
 * title, a link to the original, and later its state. Each alert stays its own incident (its own row, whose
 * post is the digest): a recovery of one edits the digest to show it resolved, a resolved reaction on the digest
 * resolves every incident it lists, and a digest holding hotline alerts mentions each hotline group once.
 *
 * Posting once survives a digest: its metadata (`ims_digest`) names its members, so a member whose answer was
 * lost, or whose message is recovered after a crash, finds the digest that carries it instead of posting again;
 * the digest is recorded before any member's message is finished.
 */
import type { WebClient } from '@slack/web-api';
import type { Incident, Logger } from './ims.ts';
import type { Store } from './ims-state.ts';
import { tsAfter } from './ims-state.ts';
import type { ChannelQueues, FoundPost, PostMetadata, PostOutcome, PostSpec, Poster } from './ims-slack.ts';
import { BLOCKS_PER_MESSAGE, SECTION_LIMIT, escapeSlack, plainText } from './ims-text.ts';
import { formatAge } from './ims-time.ts';
import { errorText } from './ims-log.ts';

/** One alert waiting for its incident post, as a digest lists it. */
export interface DigestMember {
  sourceChannel: string;
  sourceTs: string;
  /** The rule's head (`[Critical]`). */
  head: string;
  /** What the alert says, whitespace collapsed (the digest shows its start). */
  title: string;
  /** The original alert. */
  permalink: string;
  /** The hotline paged for it, with its members' mentions (`<@U…>`, `<!here>`). */
  hotline?: string;
  mentions?: string[];
}

/** Where an incident was posted: its own post, or a digest listing it. */
export interface PostedIncident {
  ts: string;
  digest: boolean;
}

/** A digest as IMS made it, kept in the state to edit it in place: the message, and each member's line. */
export interface KeptDigest {
  text: string;
  blocks: unknown[];
  /** `channel:ts` of each member's alert and its line (without its state); absent for a digest read back from Slack. */
  lines?: { source: string; line: string }[];
}

/** The metadata event type of a digest post. */
export const DIGEST_EVENT = 'ims_digest';

/**
 * How long an incident post may wait for its channel's pace before the waiting posts go out as a digest: a burst
 * the pace clears within this is posted alert by alert; a longer backlog is not (every alert visible within ~5 s).
 */
const PATIENCE_MS = 3000;

/** Members per digest: its metadata stays small (about 5 KB). */
const MAX_MEMBERS = 250;
const HEAD_CHARS = 80;
const TITLE_CHARS = 200;
/** Room kept on each line for its mark and the state an edit adds (`:white_check_mark: … — resolved after 2h 5m`), so an edited digest still fits. */
const STATE_ROOM = 60;
/**
 * Sections of the list: 12 of at most `SECTION_LIMIT` characters keep a digest under Slack's 40,000 characters of
 * a message (as a long alert's thread replies do), with the heading and the hotline mentions well under 50 blocks.
 * About 150 alerts a digest: a channel keeps up with 150 alerts a second.
 */
const LIST_BLOCKS = Math.min(12, BLOCKS_PER_MESSAGE - 2);
const HEAD_BLOCK = 'ims_digest_head';
const HOTLINE_BLOCK = 'ims_digest_hotline';
const LIST_BLOCK = 'ims_digest_list';

const sourceOf = (channel: string, ts: string) => `${channel}:${ts}`;

/** At most `max` characters (code points), `…` marking a cut. */
function clip(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

/** A member's line, without its state: head, title (plain, escaped: alert text never acts) and the link to the original. */
function memberLine(member: Pick<DigestMember, 'head' | 'title' | 'permalink'>): string {
  const title = member.title.replace(/<([^|<>]+)\|([^<>]+)>/g, '$2').replace(/\s+/g, ' ').trim();
  return `*${escapeSlack(clip(member.head, HEAD_CHARS))}* ${escapeSlack(clip(title, TITLE_CHARS))} · <${member.permalink}|original>`;
}

/** A line with its incident's state: open (`•`, repeats, flapping) or resolved. */
function withState(line: string, incident?: Incident): string {
  if (incident?.resolvedAt !== undefined) return `:white_check_mark: ${line} — resolved after ${formatAge(incident.resolvedAt - incident.createdAt)}`;
  const notes = [
    ...(incident?.flapping ? [':warning: flapping'] : []),
    ...(incident && incident.repeats > 0 ? [`repeated ${incident.repeats} time${incident.repeats === 1 ? '' : 's'}`] : []),
  ];
  return `• ${line}${notes.length ? ` — ${notes.join(', ')}` : ''}`;
}

/** Lines packed into section texts of at most `SECTION_LIMIT` characters, in order. */
function packLines(lines: readonly string[]): string[] {
  const sections: string[] = [];
  let chunk = '';
  for (const line of lines) {
    if (chunk && chunk.length + 1 + line.length > SECTION_LIMIT) { sections.push(chunk); chunk = ''; }
    chunk += (chunk ? '\n' : '') + line;
  }
  if (chunk) sections.push(chunk);
  return sections;
}

/**
 * How many of the waiting members (from the first) one digest holds: `LIST_BLOCKS` sections of at most 3,000
 * characters (so under Slack's 50 blocks and 40,000 characters of a message, edited too), at most `MAX_MEMBERS`.
 */
export function digestSize(members: readonly DigestMember[]): number {
  const limit = Math.min(members.length, MAX_MEMBERS);
  let sections = 0;
  let size = 0;
  let count = 0;
  // Packed as `packLines` packs, each line with room for the mark and the state an edit adds.
  for (; count < limit; count++) {
    const length = memberLine(members[count]).length + STATE_ROOM;
    if (sections > 0 && size + 1 + length <= SECTION_LIMIT) { size += 1 + length; continue; }
    if (sections === LIST_BLOCKS) break;
    sections++;
    size = length;
  }
  return Math.max(1, count);
}

const section = (text: string, blockId: string) => ({ type: 'section', block_id: blockId, text: { type: 'mrkdwn', text, verbatim: true } });

/** The list blocks of a digest, one section per `SECTION_LIMIT` characters of lines. */
function listBlocks(lines: readonly string[]): unknown[] {
  return packLines(lines).slice(0, LIST_BLOCKS).map((text, i) => section(text, `${LIST_BLOCK}_${i}`));
}

/** The hotlines of the members, each once, with their mentions. */
function hotlinesOf(members: readonly DigestMember[]): { name: string; mentions: string[] }[] {
  const seen = new Map<string, string[]>();
  for (const m of members) if (m.hotline && m.mentions?.length && !seen.has(m.hotline)) seen.set(m.hotline, m.mentions);
  return [...seen].map(([name, mentions]) => ({ name, mentions }));
}

/** The digest post of `members`: a heading, each hotline involved once with its mentions, and one line per alert. */
export function digestMessage(members: readonly DigestMember[], buttons = false): KeptDigest {
  const hotlines = hotlinesOf(members);
  const lines = members.map((m) => ({ source: sourceOf(m.sourceChannel, m.sourceTs), line: memberLine(m) }));
  const heading = `:rotating_light: *${members.length} alerts* arrived while Slack's posting limit held this channel back: `
    + 'they are listed together. Each is an incident of its own; a resolved reaction on this post resolves every one of them.';
  const pages = hotlines.map((h) => `:rotating_light: *Hotline ${escapeSlack(h.name)}*: ${h.mentions.join(' ')}`);
  const blocks = [section(heading, HEAD_BLOCK), ...(pages.length ? [section(pages.join('\n'), HOTLINE_BLOCK)] : []), ...listBlocks(lines.map((l) => withState(l.line))),
    ...(buttons ? [DIGEST_ACTIONS] : [])];
  const summary = members.slice(0, 5).map((m) => `${m.head} ${m.title.replace(/\s+/g, ' ')}`).join('; ');
  const text = `${members.length} alerts: ${escapeSlack(clip(summary, 500))}${members.length > 5 ? ' …' : ''}`
    + (hotlines.length ? `\n${hotlines.flatMap((h) => h.mentions).filter((m, i, all) => all.indexOf(m) === i).join(' ')}` : '');
  return { text, blocks, lines };
}

/** The digest with each member's current state: the heading and mentions as posted, the list rebuilt from `incidents`. */
export function digestWithStates(kept: KeptDigest, incidents: readonly Incident[]): { text: string; blocks: unknown[] } {
  const bySource = new Map(incidents.map((i) => [sourceOf(i.sourceChannel, i.sourceTs), i]));
  // A digest read back from Slack after a crash has no kept lines: they are made again from its incidents.
  const lines = kept.lines ?? [...incidents].sort((a, b) => (tsAfter(a.sourceTs, b.sourceTs) ? 1 : -1)).map((i) => ({
    source: sourceOf(i.sourceChannel, i.sourceTs), line: memberLine({ head: i.head, title: i.text.split('\n').find((l) => l.trim()) ?? '', permalink: i.permalink ?? '' }),
  }));
  const blockId = (b: unknown) => String((b as { block_id?: string }).block_id ?? '');
  const heading = kept.blocks.filter((b) => !blockId(b).startsWith(LIST_BLOCK) && blockId(b) !== DIGEST_ACTIONS_BLOCK);
  // Its buttons last, while any of its incidents is open.
  const buttons = kept.blocks.some((b) => blockId(b) === DIGEST_ACTIONS_BLOCK) && incidents.some((i) => i.resolvedAt === undefined) ? [DIGEST_ACTIONS] : [];
  return { text: kept.text, blocks: [...heading, ...listBlocks(lines.map((l) => withState(l.line, bySource.get(l.source)))), ...buttons] };
}

/** A click's value on a digest's buttons: they act on every incident it lists. */
export const DIGEST_VALUE = 'digest';
const DIGEST_ACTIONS_BLOCK = 'ims_digest_actions';
/** A digest's buttons: acknowledge or resolve every incident it lists (the same actions as an incident post's). */
const DIGEST_ACTIONS = {
  type: 'actions', block_id: DIGEST_ACTIONS_BLOCK, elements: [
    { type: 'button', text: { type: 'plain_text', text: 'Acknowledge all', emoji: true }, action_id: 'ims_acknowledge', value: DIGEST_VALUE },
    { type: 'button', text: { type: 'plain_text', text: 'Resolve all', emoji: true }, action_id: 'ims_resolve', value: DIGEST_VALUE, style: 'primary' },
  ],
};

/** The metadata of a digest: its members' sources, grouped by channel (`C1:ts,ts;C2:ts`), short. */
export function digestMetadata(members: readonly DigestMember[]): PostSpec['metadata'] {
  const byChannel = new Map<string, string[]>();
  for (const m of members) {
    if (!byChannel.has(m.sourceChannel)) byChannel.set(m.sourceChannel, []);
    byChannel.get(m.sourceChannel)!.push(m.sourceTs);
  }
  return { event_type: DIGEST_EVENT, event_payload: { count: members.length, members: [...byChannel].map(([channel, ts]) => `${channel}:${ts.join(',')}`).join(';') } };
}

/** Whether metadata is a digest's that lists the alert `channel`/`ts`. */
export function listsMember(metadata: PostMetadata | undefined, channel: string, ts: string): boolean {
  if (metadata?.event_type !== DIGEST_EVENT) return false;
  return String(metadata.event_payload?.members ?? '').split(';').some((group) => {
    const [c, list = ''] = group.split(':');
    return c === channel && list.split(',').includes(ts);
  });
}

/** An incident post waiting in its channel for its turn. */
interface Waiting {
  spec: PostSpec;
  member: DigestMember;
  resolve(posted: PostedIncident): void;
  reject(error: unknown): void;
}

/** What digests need from the running IMS. */
export interface DigestInputs {
  poster: Poster;
  queues: ChannelQueues;
  state: Store;
  log: Logger;
}

/**
 * Posts incident posts, each once, in its channel's queue at the channel's pace; while the channel has a backlog,
 * the waiting ones go out together as digests. Without a backlog, every incident gets its own post as ever.
 */
export class DigestPoster {
  /** Incident posts waiting for their turn, per channel, in order. */
  private readonly waiting = new Map<string, Waiting[]>();
  /** Channels whose queue already holds a turn for the waiting posts. */
  private readonly scheduled = new Set<string>();

  constructor(private readonly inputs: DigestInputs) {}

  /** Post an incident's post (`spec`, for `member`): alone, or listed in a digest. */
  async post(spec: PostSpec, member: DigestMember): Promise<PostedIncident> {
    const { poster, log } = this.inputs;
    const carried: PostSpec = { ...spec, foundIn: (metadata) => listsMember(metadata, member.sourceChannel, member.sourceTs), lookFirst: false };
    if (spec.thread_ts) return this.settled(spec.channel, await poster.postOutcome({ ...carried, lookFirst: spec.lookFirst }));
    // A recovered message looks for its earlier post first (its own, or a digest listing it): reading, not posting.
    if (spec.lookFirst) {
      const earlier = await poster.find(carried);
      if (earlier) {
        log.info(`${spec.what}: already posted (${earlier.metadata?.event_type === DIGEST_EVENT ? 'in the digest ' : ''}${earlier.ts}), not posting it again`, { channel: spec.channel });
        return this.settled(spec.channel, { ts: earlier.ts, found: earlier });
      }
    }
    return new Promise<PostedIncident>((resolve, reject) => {
      const list = this.waiting.get(spec.channel) ?? [];
      list.push({ spec: carried, member, resolve, reject });
      this.waiting.set(spec.channel, list);
      this.schedule(spec.channel);
    });
  }

  /** A turn in the channel's queue for the waiting posts: it starts when the channel's pace allows a post. */
  private schedule(channel: string): void {
    if (this.scheduled.has(channel)) return;
    this.scheduled.add(channel);
    void this.inputs.queues.run(channel, 'chat.postMessage', () => this.turn(channel)).catch((error: unknown) => {
      this.inputs.log.error(`incident posts in ${channel}: ${errorText(error)}`);
    });
  }

  /** The turn of a channel's waiting posts: the first alone when the pace lets all of them go now, else a digest. */
  private async turn(channel: string): Promise<void> {
    this.scheduled.delete(channel);
    const waiting = this.waiting.get(channel);
    if (!waiting?.length) return;
    // A backlog: more posts wait than the pace lets go now (this turn's included) and within `PATIENCE_MS`. A short
    // burst is still posted alert by alert; only a wait longer than that turns the waiting posts into a digest.
    const { queues } = this.inputs;
    const backlog = waiting.length > 1 + queues.available(channel) + queues.postsWithin(PATIENCE_MS);
    const taken = waiting.splice(0, backlog ? digestSize(waiting.map((w) => w.member)) : 1);
    if (waiting.length) this.schedule(channel);
    else this.waiting.delete(channel);
    if (taken.length === 1) await this.alone(taken[0]);
    else await this.digest(channel, taken);
  }

  private async alone(waiting: Waiting): Promise<void> {
    try {
      waiting.resolve(await this.settled(waiting.spec.channel, await this.inputs.poster.postInTask(waiting.spec)));
    } catch (error) {
      waiting.reject(error);
    }
  }

  private async digest(channel: string, taken: Waiting[]): Promise<void> {
    const { poster, state, log } = this.inputs;
    const members = taken.map((w) => w.member);
    // With buttons on, its members' own posts would have had them: the digest has buttons for all of them.
    const buttons = taken.some((w) => (w.spec.blocks ?? []).some((b) => (b as { type?: string }).type === 'actions'));
    const post = digestMessage(members, buttons);
    const oldest = members.map((m) => m.sourceTs).reduce((a, b) => (tsAfter(a, b) ? b : a));
    try {
      const outcome = await poster.postInTask({
        channel, text: post.text, blocks: post.blocks, metadata: digestMetadata(members), fallback: plainText(post.blocks) || post.text, oldest,
        what: `digest of ${members.length} incidents (${taken[0].spec.what} and on)`,
      });
      // Recorded before any member: a member's message stays pending until its incident is (a crash between finds the digest by its metadata).
      await state.addDigest(channel, outcome.ts, post);
      log.info(`digest of ${members.length} incidents → ${channel} (Slack's posting limit holds the channel back)`, { ts: outcome.ts });
      // Each member's incident is recorded when its promise settles: a turn of the event loop every few members,
      // so a digest of 150 does not hold up the acks of new frames while they are recorded.
      for (const [i, w] of taken.entries()) {
        w.resolve({ ts: outcome.ts, digest: true });
        if (i % 8 === 7) await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (error) {
      for (const w of taken) w.reject(error);
    }
  }

  /** Where a post went; a post found in a digest (after a lost answer or a crash) records that digest if it is not yet. */
  private async settled(channel: string, outcome: PostOutcome): Promise<PostedIncident> {
    const found: FoundPost | undefined = outcome.found;
    if (found?.metadata?.event_type !== DIGEST_EVENT) return { ts: outcome.ts, digest: false };
    if ((await this.inputs.state.digestPost(channel, outcome.ts)) === undefined) {
      const kept: KeptDigest = { text: found.text ?? '', blocks: found.blocks ?? [] };
      await this.inputs.state.addDigest(channel, outcome.ts, kept);
    }
    return { ts: outcome.ts, digest: true };
  }
}

/** Edits digests in place: each member's state, coalesced per digest, in the channel's queue at its pace. */
export class DigestEditor {
  /** Edits waiting for their turn, by digest: a later request joins the waiting one (it reads the state when it runs). */
  private readonly waiting = new Map<string, Promise<void>>();

  constructor(private readonly inputs: { slack: WebClient; queues: ChannelQueues; state: Store; log: Logger }) {}

  /** Whether the incident's post is a digest. */
  async holds(incident: Incident): Promise<boolean> {
    return (await this.inputs.state.digestPost(incident.incidentChannel, incident.incidentTs)) !== undefined;
  }

  /** Show every member's state on the digest `channel`/`ts`. Resolves when the edit is made (or failed: logged, never thrown). */
  show(channel: string, ts: string): Promise<void> {
    const key = `${channel} ${ts}`;
    const queued = this.waiting.get(key);
    if (queued) return queued;
    const { slack, queues, state, log } = this.inputs;
    const done = queues.run(channel, 'chat.update', async () => {
      this.waiting.delete(key);
      const kept = await state.digestPost(channel, ts) as KeptDigest | undefined;
      if (!kept?.blocks) return;
      const post = digestWithStates(kept, await state.incidentsByPost(channel, ts));
      await slack.chat.update({ channel, ts, text: post.text, blocks: post.blocks as never });
    }).catch((error: unknown) => {
      log.warn(`could not edit the digest ${ts} in ${channel}: ${errorText(error)}`);
    });
    this.waiting.set(key, done);
    return done;
  }
}

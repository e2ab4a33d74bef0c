/**
 * Incident posts edited in place: the post IMS made is kept (text and blocks), and a status block under it says
 * where the alert stands — repeats and when it was last seen, resolved by the integration's recovery after how
 * long, fired again, flapping. Edits of one post that come faster than Slack takes them become one edit; they
 * go through the post's channel queue, so they keep their order with the channel's posts and wait out its 429s.
 * Slack does not notify on edits: a post edited in place never pages anyone again.
 */
import type { WebClient } from '@slack/web-api';
import type { Incident, Logger } from './ims.ts';
import type { State } from './ims-state.ts';
import { errorText } from './ims-log.ts';
import { escapeSlack } from './ims-text.ts';
import { formatAge, formatDate, tsToMs } from './ims-time.ts';
import type { ChannelQueues } from './ims-slack.ts';
import { DigestEditor } from './ims-digests.ts';

/** The post as IMS made it: what an edit starts from. */
export interface KeptPost {
  text: string;
  blocks: unknown[];
}

/** Where an incident's alert stands, for the status block of its post. */
export interface PostStatus {
  incident: Incident;
  /** The integration's recovery that resolved it. */
  recovery?: { permalink: string };
  /** It fired again within the reopen window (at `lastSeenTs`). */
  reopened?: boolean;
  /** Who acknowledged it, by name. */
  acknowledgedBy?: string;
  /** With `incident.flapping`: how long it must be stable before pages resume. */
  stableMs?: number;
  timezone?: string;
}

/** The status lines of an incident's post, mrkdwn (what integrations said is escaped). */
export function statusLines(status: PostStatus): string[] {
  const { incident, timezone } = status;
  const at = (ts: string | undefined) => (ts ? formatDate(tsToMs(ts), timezone).slice(11, 16) : '');
  const lines: string[] = [];
  if (incident.flapping) {
    lines.push(`:warning: *Flapping*: it keeps changing state; nobody is paged again until it is stable${status.stableMs ? ` for ${formatAge(status.stableMs)}` : ''}`);
  }
  if (incident.resolvedAt !== undefined) {
    const after = formatAge(incident.resolvedAt - incident.createdAt);
    lines.push(status.recovery
      ? `:white_check_mark: *Resolved* by the integration's <${status.recovery.permalink}|recovery> after ${after}`
      : `:white_check_mark: *Resolved*${incident.resolvedBy ? ` by <@${escapeSlack(incident.resolvedBy)}>` : ''} after ${after}`);
  } else if (status.reopened) {
    lines.push(`:rotating_light: *Firing again* since ${at(incident.lastSeenTs)} (reopened within the reopen window)`);
  }
  if (incident.repeats > 0 && incident.resolvedAt === undefined) {
    lines.push(`:repeat: Repeated ${incident.repeats} time${incident.repeats === 1 ? '' : 's'}, last at ${at(incident.lastSeenTs)}`);
  }
  if (status.acknowledgedBy) lines.push(`:eyes: Acknowledged by ${escapeSlack(status.acknowledgedBy)}`);
  return lines;
}

/** The kept post with `lines` as a context block under it (the previous status block replaced). */
export function withStatus(post: KeptPost, lines: readonly string[]): KeptPost {
  const blocks = post.blocks.filter((b) => (b as { block_id?: string }).block_id !== STATUS_BLOCK);
  if (!lines.length) return { text: post.text, blocks };
  return {
    text: post.text,
    blocks: [...blocks, { type: 'context', block_id: STATUS_BLOCK, elements: [{ type: 'mrkdwn', text: lines.join('\n').slice(0, 2900) }] }],
  };
}

const STATUS_BLOCK = 'ims_status';

/** Edits incident posts in place, coalesced per post. */
export class PostEditor {
  /** Edits waiting for their turn in the channel queue, by incident: a newer one replaces what waits. */
  private readonly waiting = new Map<number, { lines: string[]; done: Promise<void> }>();

  constructor(private readonly inputs: { slack: WebClient; queues: ChannelQueues; state: State; log: Logger }) {}

  /** Edits of digests (posts listing several incidents). */
  private digests?: DigestEditor;

  /**
   * Show `lines` under the incident's post. Resolves when the edit is made (or failed: logged, never thrown). When
   * its post is a digest, the digest shows the state of each incident it lists instead.
   */
  show(incident: Incident, lines: string[]): Promise<void> {
    this.digests ??= new DigestEditor(this.inputs);
    if (this.digests.holds(incident)) return this.digests.show(incident.incidentChannel, incident.incidentTs);
    const queued = this.waiting.get(incident.id);
    if (queued) { queued.lines = lines; return queued.done; }
    const entry = { lines, done: Promise.resolve() };
    entry.done = this.inputs.queues.run(incident.incidentChannel, 'chat.update', async () => {
      this.waiting.delete(incident.id);
      const kept = this.inputs.state.incidentPost(incident.id) as KeptPost | undefined;
      if (!kept?.blocks) return;
      const post = withStatus(kept, entry.lines);
      await this.inputs.slack.chat.update({ channel: incident.incidentChannel, ts: incident.incidentTs, text: post.text, blocks: post.blocks as never });
    }).catch((error: unknown) => {
      this.inputs.log.warn(`could not edit the post of incident #${incident.id} in ${incident.incidentChannel}: ${errorText(error)}`);
    });
    this.waiting.set(incident.id, entry);
    return entry.done;
  }
}

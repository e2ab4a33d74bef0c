/**
 * Incident posts edited in place: the post IMS made is kept (text and blocks), and a status block under it says
 * where the incident stands — repeats and when it was last seen, acknowledged by whom, resolved (by whom or by the
 * integration's recovery) after how long, reopened, silenced until when, flapping — above its buttons (Acknowledge,
 * Resolve, Silence; Reopen once resolved). Edits of one post that come faster than Slack takes them become one edit; they
 * go through the post's channel queue, so they keep their order with the channel's posts and wait out its 429s.
 * Slack does not notify on edits: a post edited in place never pages anyone again.
 */
import type { WebClient } from '@slack/web-api';
import type { CompiledConfig, Incident, Logger } from './ims.ts';
import type { Silence, State } from './ims-state.ts';
import { errorText } from './ims-log.ts';
import { escapeSlack, inertText } from './ims-text.ts';
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
  /** A person reopened it: who and when. */
  reopenedBy?: { user: string; at: number };
  /** With `incident.flapping`: how long it must be stable before pages resume. */
  stableMs?: number;
  /** A silence made from the post that is in force: until when, by whom, why. */
  silence?: Pick<Silence, 'id' | 'endsAt' | 'createdBy' | 'reason'>;
  timezone?: string;
}

/** A user ID as a mention (shown as the name; edits notify nobody), anything else (a bot, an integration) as text. */
function who(user: string): string {
  return /^[UW][A-Z0-9]+$/.test(user) ? `<@${user}>` : escapeSlack(user);
}

/** The status lines of an incident's post, mrkdwn (what integrations and people typed is escaped). */
export function statusLines(status: PostStatus): string[] {
  const { incident, timezone } = status;
  const clock = (ms: number) => formatDate(ms, timezone).slice(11, 16);
  const at = (ts: string | undefined) => (ts ? clock(tsToMs(ts)) : '');
  const lines: string[] = [];
  if (incident.flapping) {
    lines.push(`:warning: *Flapping*: it keeps changing state; nobody is paged again until it is stable${status.stableMs ? ` for ${formatAge(status.stableMs)}` : ''}`);
  }
  if (incident.resolvedAt !== undefined) {
    const after = formatAge(incident.resolvedAt - incident.createdAt);
    lines.push(status.recovery
      ? `:white_check_mark: *Resolved* by the integration's <${status.recovery.permalink}|recovery> after ${after}`
      : `:white_check_mark: *Resolved*${incident.resolvedBy ? ` by ${who(incident.resolvedBy)}` : ''} after ${after}`);
  } else if (status.reopenedBy) {
    lines.push(`:arrows_counterclockwise: *Reopened* by ${who(status.reopenedBy.user)} at ${clock(status.reopenedBy.at)}`);
  } else if (status.reopened) {
    lines.push(`:rotating_light: *Firing again* since ${at(incident.lastSeenTs)} (reopened within the reopen window)`);
  }
  if (incident.repeats > 0 && incident.resolvedAt === undefined) {
    lines.push(`:repeat: Repeated ${incident.repeats} time${incident.repeats === 1 ? '' : 's'}, last at ${at(incident.lastSeenTs)}`);
  }
  if (incident.acknowledgedAt !== undefined && incident.acknowledgedBy) {
    const by = /^[UW][A-Z0-9]+$/.test(incident.acknowledgedBy) ? `by <@${incident.acknowledgedBy}>` : 'in the monitoring tool';
    lines.push(`:eyes: Acknowledged ${by} at ${clock(incident.acknowledgedAt)} (after ${formatAge(Math.max(0, incident.acknowledgedAt - incident.createdAt))})`);
  }
  if (status.silence && incident.resolvedAt === undefined) {
    const reason = status.silence.reason ? `: ${inertText(status.silence.reason).slice(0, 300)}` : '';
    lines.push(`:no_bell: *Silenced* until ${clock(status.silence.endsAt)} by ${who(status.silence.createdBy)}${reason}`);
  }
  return lines;
}

/** The action ids of the buttons and menu on incident posts. */
export const ACTIONS = {
  acknowledge: 'ims_acknowledge', resolve: 'ims_resolve', silence: 'ims_silence', reopen: 'ims_reopen', unsilence: 'ims_unsilence',
} as const;

/** The Silence menu's choices (`custom` opens a modal). */
export const SILENCE_CHOICES = [
  { label: '1 h', value: '1h' }, { label: '4 h', value: '4h' }, { label: '24 h', value: '24h' }, { label: 'Custom…', value: 'custom' },
] as const;

/** The buttons under an incident's post: Acknowledge, Resolve, Silence (a menu) while open; Reopen once resolved. */
export function actionsBlock(incident: Pick<Incident, 'id' | 'resolvedAt' | 'acknowledgedAt'>, silence?: Pick<Silence, 'id'>): unknown {
  const value = String(incident.id);
  const button = (text: string, action: string, style?: 'primary' | 'danger', buttonValue = value) => ({
    type: 'button', text: { type: 'plain_text', text, emoji: true }, action_id: action, value: buttonValue, ...(style ? { style } : {}),
  });
  const elements: unknown[] = [];
  if (incident.resolvedAt !== undefined) elements.push(button('Reopen', ACTIONS.reopen));
  else {
    if (incident.acknowledgedAt === undefined) elements.push(button('Acknowledge', ACTIONS.acknowledge));
    elements.push(button('Resolve', ACTIONS.resolve, 'primary'));
    if (silence) elements.push(button('Unsilence', ACTIONS.unsilence, undefined, `${value}:${silence.id}`));
    else {
      elements.push({
        type: 'static_select', action_id: ACTIONS.silence, placeholder: { type: 'plain_text', text: 'Silence', emoji: true },
        options: SILENCE_CHOICES.map((c) => ({ text: { type: 'plain_text', text: c.label, emoji: true }, value: `${value}:${c.value}` })),
      });
    }
  }
  return { type: 'actions', block_id: ACTIONS_BLOCK, elements };
}

/** The kept post with `lines` as a context block under it and the buttons last (the previous ones replaced). */
export function withStatus(post: KeptPost, lines: readonly string[], actions?: unknown): KeptPost {
  const blocks = post.blocks.filter((b) => ![STATUS_BLOCK, ACTIONS_BLOCK].includes((b as { block_id?: string }).block_id ?? ''));
  const status = lines.length ? [{ type: 'context', block_id: STATUS_BLOCK, elements: [{ type: 'mrkdwn', text: lines.join('\n').slice(0, 2900) }] }] : [];
  return { text: post.text, blocks: [...blocks, ...status, ...(actions ? [actions] : [])] };
}

const ACTIONS_BLOCK = 'ims_actions';
const STATUS_BLOCK = 'ims_status';

/** What the post editor reads: the state, the config's zone and flapping rule, whether posts carry buttons, the clock. */
export interface PostEditorInputs {
  slack: WebClient;
  queues: ChannelQueues;
  state: State;
  log: Logger;
  config(): Pick<CompiledConfig, 'timezone' | 'lifecycle' | 'interactive'>;
  now(): number;
  /** An incident's state changed (the App Home shows it too). */
  changed(): void;
}

/** Where an incident stands, read from the state: what its post's status block and buttons show. */
export function postStatusOf(state: State, incident: Incident, config: Pick<CompiledConfig, 'timezone' | 'lifecycle'>, now: number): PostStatus {
  const events = state.incidentEvents(incident.id);
  const recovery = incident.resolvedAt === undefined ? undefined : events.filter((e) => e.kind === 'recovery' && e.user === incident.resolvedBy).at(-1);
  const lastReopen = incident.resolvedAt === undefined ? events.filter((e) => e.kind === 'reopen').at(-1) : undefined;
  // Reopened by its integration (the alert fired again) or by a person (a button, a reaction taken back).
  const byIntegration = lastReopen && (lastReopen.user === incident.poster || !/^[UW][A-Z0-9]+$/.test(lastReopen.user ?? ''));
  const silence = state.activeSilences(now).find((s) => s.incidentId === incident.id);
  return {
    incident, timezone: config.timezone, stableMs: config.lifecycle.flapping?.stableMs,
    recovery: recovery?.detail ? { permalink: recovery.detail } : undefined,
    reopened: !!lastReopen && !!byIntegration,
    reopenedBy: lastReopen && !byIntegration && lastReopen.user ? { user: lastReopen.user, at: lastReopen.at } : undefined,
    silence,
  };
}

/** Edits incident posts in place, coalesced per post: each edit reads the incident's state when its turn comes. */
export class PostEditor {
  /** Edits waiting for their turn in the channel queue, by incident: a later request joins the waiting one. */
  private readonly waiting = new Map<number, Promise<void>>();

  constructor(private readonly inputs: PostEditorInputs) {}

  /** Edits of digests (posts listing several incidents). */
  private digests?: DigestEditor;

  /**
   * Show where the incident stands under its post (status lines, and the buttons that fit). Resolves when the edit
   * is made (or failed: logged, never thrown). When its post is a digest, the digest shows each incident it lists.
   */
  refresh(incident: Incident): Promise<void> {
    this.inputs.changed();
    this.digests ??= new DigestEditor(this.inputs);
    if (this.digests.holds(incident)) return this.digests.show(incident.incidentChannel, incident.incidentTs);
    const queued = this.waiting.get(incident.id);
    if (queued) return queued;
    const { state, queues, slack, log } = this.inputs;
    const done = queues.run(incident.incidentChannel, 'chat.update', async () => {
      this.waiting.delete(incident.id);
      const kept = state.incidentPost(incident.id) as KeptPost | undefined;
      const now = state.incidentById(incident.id);
      if (!kept?.blocks || !now) return;
      const config = this.inputs.config();
      const status = postStatusOf(state, now, config, this.inputs.now());
      const post = withStatus(kept, statusLines(status), config.interactive.buttons ? actionsBlock(now, status.silence) : undefined);
      await slack.chat.update({ channel: now.incidentChannel, ts: now.incidentTs, text: post.text, blocks: post.blocks as never });
    }).catch((error: unknown) => {
      log.warn(`could not edit the post of incident #${incident.id} in ${incident.incidentChannel}: ${errorText(error)}`);
    });
    this.waiting.set(incident.id, done);
    return done;
  }
}

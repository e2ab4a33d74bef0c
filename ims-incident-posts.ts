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
import type { Silence, Store } from './ims-state.ts';
import { errorText } from './ims-log.ts';
import { classifySlackFailure } from './ims-plugin-kit.ts';
import { escapeSlack, inertText } from './ims-text.ts';
import { formatAge, formatDate, tsToMs } from './ims-time.ts';
import type { ChannelQueues } from './ims-slack.ts';
import { DigestEditor } from './ims-digests.ts';
import { incidentSubject, silenceMatches } from './ims-silences.ts';

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
  /** The silence in force that covers it (the post's own first, else one from `/ims` or a maintenance window). */
  silence?: Pick<Silence, 'id' | 'endsAt' | 'createdBy' | 'reason' | 'origin' | 'incidentId' | 'what'>;
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
    const { silence } = status;
    const reason = silence.reason ? `: ${inertText(silence.reason).slice(0, 300)}` : '';
    // Slack shows the date and time in each reader's own zone; the fallback is the config's.
    const until = `<!date^${Math.floor(silence.endsAt / 1000)}^{date_short_pretty} {time}|${formatDate(silence.endsAt, timezone).slice(0, 16)}>`;
    const by = silence.origin === 'maintenance' ? `maintenance window ${inertText(silence.createdBy)}` : who(silence.createdBy);
    const which = silence.incidentId === incident.id ? '' : ` (silence ${silence.id}: ${inertText(silence.what.slice(0, 80))})`;
    lines.push(`:no_bell: *Silenced* until ${until} by ${by}${which}${reason}`);
  }
  return lines;
}

/** The action ids of the buttons and menu on incident posts. */
export const ACTIONS = {
  acknowledge: 'ims_acknowledge', resolve: 'ims_resolve', silence: 'ims_silence', reopen: 'ims_reopen', unsilence: 'ims_unsilence',
} as const;

/** The Silence menu's choices (`custom` opens a modal). */
export const SILENCE_CHOICES = [
  { label: '1 h', value: '1h' }, { label: '4 h', value: '4h' }, { label: '24 h', value: '24h' }, { label: 'custom…', value: 'custom' },
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

/** How often an edit that failed is tried again (after 2, 4, 8, 16, 32 s). */
const EDIT_RETRIES = 5;
/** Slack's answers that another try would get again. */
const EDIT_REFUSED_FOR_GOOD = new Set(['message_not_found', 'cant_update_message', 'channel_not_found', 'is_archived', 'not_in_channel', 'edit_window_closed',
  'invalid_blocks', 'msg_too_long', 'msg_blocks_too_long', 'missing_scope', 'not_authed', 'invalid_auth', 'account_inactive', 'token_revoked', 'invalid_arguments']);
const STATUS_BLOCK = 'ims_status';

/** What the post editor reads: the state, the config's zone and flapping rule, whether posts carry buttons, the clock. */
export interface PostEditorInputs {
  slack: WebClient;
  queues: ChannelQueues;
  state: Store;
  log: Logger;
  config(): Pick<CompiledConfig, 'timezone' | 'lifecycle' | 'interactive'>;
  now(): number;
  /** An incident's state changed (the App Home shows it too). */
  changed(): void;
}

/** Where an incident stands, read from the state: what its post's status block and buttons show. */
export async function postStatusOf(state: Store, incident: Incident, config: Pick<CompiledConfig, 'timezone' | 'lifecycle'>, now: number): Promise<PostStatus> {
  const [events, active] = await Promise.all([state.incidentEvents(incident.id), state.activeSilences(now)]);
  const recovery = incident.resolvedAt === undefined ? undefined : events.filter((e) => e.kind === 'recovery' && e.user === incident.resolvedBy).at(-1);
  const lastReopen = incident.resolvedAt === undefined ? events.filter((e) => e.kind === 'reopen').at(-1) : undefined;
  // Reopened by its integration (the alert fired again) or by a person (a button, a reaction taken back).
  const byIntegration = lastReopen && (lastReopen.user === incident.poster || !/^[UW][A-Z0-9]+$/.test(lastReopen.user ?? ''));
  const subject = incidentSubject(incident);
  const silence = active.find((s) => s.incidentId === incident.id) ?? active.find((s) => silenceMatches(s.matcher, subject));
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
  /** Edits that failed in a row, by incident: tried again a few times, further apart each time. */
  private readonly failures = new Map<number, number>();

  constructor(private readonly inputs: PostEditorInputs) {}

  /** Edits of digests (posts listing several incidents). */
  private digests?: DigestEditor;

  /**
   * Show where the incident stands under its post (status lines, and the buttons that fit). Resolves when the edit
   * is made (or failed: logged, never thrown). When its post is a digest, the digest shows each incident it lists.
   */
  refresh(incident: Incident): Promise<void> {
    // A retry that comes after IMS stopped has nothing to edit with.
    if (!this.inputs.state.isOpen) return Promise.resolve();
    this.inputs.changed();
    const digests = this.digests ??= new DigestEditor(this.inputs);
    return digests.holds(incident).then(
      (digest) => (digest ? digests.show(incident.incidentChannel, incident.incidentTs) : this.edit(incident)),
      (error: unknown) => this.inputs.log.warn(`could not edit the post of incident #${incident.id}: ${errorText(error)}`),
    );
  }

  /** Edit the incident's own post (not a digest), coalesced with an edit already waiting. */
  private edit(incident: Incident): Promise<void> {
    const queued = this.waiting.get(incident.id);
    if (queued) return queued;
    const { state, queues, slack, log } = this.inputs;
    const done = queues.run(incident.incidentChannel, 'chat.update', async () => {
      this.waiting.delete(incident.id);
      const [kept, now] = await Promise.all([state.incidentPost(incident.id) as Promise<KeptPost | undefined>, state.incidentById(incident.id)]);
      if (!kept?.blocks || !now) return;
      const config = this.inputs.config();
      const status = await postStatusOf(state, now, config, this.inputs.now());
      const post = withStatus(kept, statusLines(status), config.interactive.buttons ? actionsBlock(now, status.silence) : undefined);
      await slack.chat.update({ channel: now.incidentChannel, ts: now.incidentTs, text: post.text, blocks: post.blocks as never });
      this.failures.delete(incident.id);
    }).catch((error: unknown) => {
      // An edit redraws the post from the state, so trying again later is always right, unless Slack refuses it for good.
      const code = classifySlackFailure(error).code;
      const attempt = (this.failures.get(incident.id) ?? 0) + 1;
      const again = !EDIT_REFUSED_FOR_GOOD.has(code) && attempt <= EDIT_RETRIES;
      log.warn(`could not edit the post of incident #${incident.id} in ${incident.incidentChannel}: ${errorText(error)}${again ? `; trying again in ${2 ** attempt} s` : ''}`);
      if (!again) { this.failures.delete(incident.id); return; }
      this.failures.set(incident.id, attempt);
      setTimeout(() => void this.refresh(incident), 2 ** attempt * 1000).unref();
    });
    this.waiting.set(incident.id, done);
    return done;
  }
}

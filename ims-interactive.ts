/**
 * Interactive Slack over Socket Mode: button clicks and menu choices on incident posts and the App Home
 * (`interactive` envelopes with `block_actions`), the custom-silence modal (`view_submission`), and `/ims`
 * (`slash_commands`). Every envelope is acknowledged at once (a modal's submission with its verdict, since a bad
 * duration must keep the modal open with the error under its field). Slack does not retry interactive payloads,
 * so nothing here fails quietly: whatever goes wrong is told to the person who clicked or typed, ephemerally
 * (through the payload's `response_url`, else `chat.postEphemeral`, else a modal on the Home tab), and logged.
 */
import type { WebClient } from '@slack/web-api';
import type { Incident, Logger } from './ims.ts';
import type { Store } from './ims-state.ts';
import type { Silencing } from './ims-silencing.ts';
import type { PermissionChecker, Deed } from './ims-permissions.ts';
import type { IncidentActions, ActionOutcome } from './ims-incident-actions.ts';
import { summaryNote, type Commands, type SlashCommand } from './ims-commands.ts';
import { errorText } from './ims-log.ts';
import type { Metrics } from './ims-metrics.ts';
import { escapeSlack, firstLine, inertText } from './ims-text.ts';
import { slackFetch } from './ims-slack.ts';
import { normalisedTextKey } from './ims-recognisers.ts';
import { ACTIONS } from './ims-incident-posts.ts';
import { DIGEST_VALUE } from './ims-digests.ts';
import { DURATION_HINT, parseSilenceDuration, type SilenceMatcher } from './ims-silences.ts';

/** A Socket Mode envelope of an interactive payload or a slash command, as the SDK hands it over. */
export interface InteractiveEnvelope {
  ack: (response?: Record<string, unknown>) => Promise<void>;
  type: string;
  body: Record<string, unknown>;
}

/** One element's action in a `block_actions` payload. */
interface BlockAction {
  action_id?: string;
  block_id?: string;
  type?: string;
  value?: string;
  selected_option?: { value?: string; text?: { text?: string } };
}

/** A `block_actions` payload, as far as IMS reads it (Slack's reference: interaction payloads, block_actions). */
interface BlockActionsPayload {
  type: 'block_actions';
  user?: { id?: string };
  trigger_id?: string;
  response_url?: string;
  container?: { type?: string; channel_id?: string; message_ts?: string; view_id?: string };
  channel?: { id?: string };
  message?: { ts?: string };
  actions?: BlockAction[];
}

/** A `view_submission` payload, as far as IMS reads it. */
interface ViewSubmission {
  type: 'view_submission';
  user?: { id?: string };
  view?: { callback_id?: string; private_metadata?: string; state?: { values?: Record<string, Record<string, { value?: string | null }>> } };
}

/** The custom-silence modal's callback and fields. */
const SILENCE_MODAL = 'ims_silence_modal';
const DURATION_FIELD = 'duration';
const REASON_FIELD = 'reason';

/** What the interactive layer needs. */
export interface InteractionInputs {
  state: Store;
  slack: WebClient;
  log: Logger;
  now(): number;
  actions: IncidentActions;
  silencing: Silencing;
  permissions: PermissionChecker;
  commands: Commands;
  stopping(): boolean;
  track<T>(work: Promise<T>): Promise<T>;
  /** Someone acted from their Home tab: show them the result there now. */
  refreshHome(user: string): Promise<void>;
  /** Counted for `/metrics`. */
  metrics: Pick<Metrics, 'noteEvent' | 'noteAck'>;
}

/** Takes interactive and slash-command envelopes: ack first, then act, and tell the person what came of it. */
export class Interactions {
  constructor(private readonly inputs: InteractionInputs) {}

  /** One envelope (`interactive` or `slash_commands`). */
  onEnvelope(envelope: InteractiveEnvelope): void {
    const { log } = this.inputs;
    const body = envelope.body ?? {};
    if (this.inputs.stopping()) {
      // Slack does not send a click or a command again: the person is told to, rather than left with a spinner.
      envelope.ack().catch(() => undefined);
      const user = (body.user as { id?: string } | undefined)?.id ?? (body.user_id as string | undefined);
      const responseUrl = (body.response_url as string | undefined) ?? undefined;
      if (user && responseUrl) void this.tell({ user, responseUrl }, ':hourglass: IMS is restarting; try again in a moment.').catch(() => undefined);
      return;
    }
    const kind = envelope.type === 'slash_commands' ? 'slash_command' : String(body.type ?? envelope.type);
    const arrived = performance.now();
    const ack = (response?: Record<string, unknown>) => envelope.ack(response).then(() => this.inputs.metrics.noteAck(kind, (performance.now() - arrived) / 1000));
    this.inputs.metrics.noteEvent(kind);
    if (envelope.type === 'interactive' && body.type === 'view_submission') {
      // Its ack carries the verdict: a bad field keeps the modal open with the error under it.
      void this.inputs.track(this.submitted(body as unknown as ViewSubmission, ack));
      return;
    }
    ack().catch((error) => log.warn(`ack failed: ${errorText(error)}`));
    if (envelope.type === 'slash_commands') void this.inputs.track(this.command(body as unknown as SlashCommand & { response_url?: string }));
    else if (body.type === 'block_actions') void this.inputs.track(this.clicked(body as unknown as BlockActionsPayload));
    else log.debug(`interactive payload of type ${String(body.type)} ignored`);
  }

  private async command(command: SlashCommand & { response_url?: string }): Promise<void> {
    const { log } = this.inputs;
    log.info(`/ims ${String(command.text ?? '').slice(0, 80)}`, { user: command.user_id, channel: command.channel_id });
    let text: string;
    try {
      text = (await this.inputs.commands.run(command)).text;
    } catch (error) {
      log.error(`/ims ${String(command.text ?? '').slice(0, 80)} failed: ${errorText(error)}`);
      text = `:warning: That failed: ${escapeSlack(errorText(error).slice(0, 300))}. IMS logged it.`;
    }
    await this.tell({ user: command.user_id, channel: command.channel_id, responseUrl: command.response_url }, text);
  }

  private async clicked(payload: BlockActionsPayload): Promise<void> {
    const user = payload.user?.id;
    if (!user) return;
    const where = {
      user, channel: payload.container?.channel_id ?? payload.channel?.id, responseUrl: payload.response_url,
      triggerId: payload.trigger_id, onHome: payload.container?.type === 'view',
    };
    for (const action of payload.actions ?? []) {
      if (!action.action_id?.startsWith('ims_')) continue;
      try {
        const answer = await this.act(action, payload, where);
        if (where.onHome) await this.inputs.refreshHome(user);
        if (answer) await this.tell(where, answer);
      } catch (error) {
        this.inputs.log.error(`the ${action.action_id} click of ${user} failed: ${errorText(error)}`);
        await this.tell(where, `:warning: That did not work: ${escapeSlack(errorText(error).slice(0, 300))}. IMS logged it; try again, or use a reaction.`);
      }
    }
  }

  /** Carry out one click; the answer for the person, or undefined when the post itself shows what happened. */
  private async act(action: BlockAction, payload: BlockActionsPayload, where: { user: string; triggerId?: string }): Promise<string | undefined> {
    const { user } = where;
    const value = action.selected_option?.value ?? action.value ?? '';
    if (value === DIGEST_VALUE && (action.action_id === ACTIONS.acknowledge || action.action_id === ACTIONS.resolve)) return this.actOnDigest(action.action_id, payload, user);
    const incident = await this.incidentOf(value, payload);
    if (!incident) return 'IMS has no record of this incident (its post may be older than its state file).';
    const allowed = async (deed: Deed, about: { creator?: string } = {}) => {
      const verdict = await this.inputs.permissions.check(user, deed, { incident, ...about });
      return verdict.allowed ? undefined : `:no_entry: ${verdict.why}.`;
    };
    // A change shows on the post itself; only someone whose click changed nothing is told why. After the permission,
    // the incident is read again and judged as it is; the change itself is made only if nobody made it first.
    const quiet = (outcome: ActionOutcome) => (outcome.changed ? undefined : outcome.text);
    const change = async (deed: 'acknowledge' | 'resolve' | 'reopen', make: (now: Incident) => Promise<ActionOutcome>) => {
      const permit = await this.inputs.permissions.permit(user, deed, incident);
      const now = (await this.inputs.state.incidentById(incident.id)) ?? incident;
      const refusal = permit.refusal(now);
      return refusal ? `:no_entry: ${refusal}.` : quiet(await make(now));
    };
    switch (action.action_id) {
      case ACTIONS.acknowledge: return change('acknowledge', (now) => this.inputs.actions.acknowledge(now, user));
      case ACTIONS.resolve: return change('resolve', (now) => this.inputs.actions.resolve(now, user));
      case ACTIONS.reopen: return change('reopen', (now) => this.inputs.actions.reopen(now, user));
      case ACTIONS.unsilence: {
        const silence = await this.inputs.state.silenceById(Number(value.split(':')[1]));
        if (!silence) return 'That silence is not known any more.';
        const refused = await allowed('unsilence', { creator: silence.createdBy });
        if (refused) return refused;
        const { ended, summary } = await this.inputs.silencing.end(silence, user);
        if (!ended) return `Silence ${silence.id} had already ended.`;
        return summary && !summary.posted ? summaryNote(summary) : undefined;
      }
      case ACTIONS.silence: {
        const choice = value.split(':').at(-1) ?? '';
        if (incident.resolvedAt !== undefined) return `Incident #${incident.id} is resolved; there is nothing to silence.`;
        // The modal first: its trigger expires 3 s after the click, before any Slack lookup a permission check may need.
        if (choice === 'custom') return this.openSilenceModal(incident, where.triggerId);
        const refused = await allowed('silence');
        if (refused) return refused;
        const durationMs = parseSilenceDuration(choice);
        if (durationMs === undefined) return `Unknown silence choice '${escapeSlack(choice)}'.`;
        return this.silenceIncident(incident, user, durationMs, '');
      }
      default:
        this.inputs.log.debug(`unknown action ${action.action_id} ignored`);
        return undefined;
    }
  }

  /**
   * Acknowledge or resolve every open incident a digest lists, each by the same rules as on its own post; the person
   * is told only what was skipped and why (the digest shows the rest).
   */
  private async actOnDigest(actionId: string, payload: BlockActionsPayload, user: string): Promise<string | undefined> {
    const { state, permissions, actions } = this.inputs;
    const channel = payload.container?.channel_id ?? payload.channel?.id;
    const ts = payload.container?.message_ts ?? payload.message?.ts;
    const listed = channel && ts ? await state.incidentsByPost(channel, ts) : [];
    if (!listed.length) return 'IMS has no record of the incidents this digest lists.';
    const deed = actionId === ACTIONS.acknowledge ? 'acknowledge' : 'resolve';
    const refused: string[] = [];
    let changed = 0;
    for (const listedIncident of listed) {
      const incident = (await state.incidentById(listedIncident.id)) ?? listedIncident;
      if (incident.resolvedAt !== undefined || (deed === 'acknowledge' && incident.acknowledgedAt !== undefined)) continue;
      const permit = await permissions.permit(user, deed, incident);
      const now = (await state.incidentById(incident.id)) ?? incident;
      const why = permit.refusal(now);
      if (why) { refused.push(`#${incident.id}: ${why}`); continue; }
      if ((await (deed === 'acknowledge' ? actions.acknowledge(now, user) : actions.resolve(now, user))).changed) changed++;
    }
    if (refused.length) return `:no_entry: ${refused.length} of the digest's incidents were left as they are:\n${refused.slice(0, 10).join('\n')}`;
    return changed ? undefined : `Every incident of this digest was already ${deed === 'acknowledge' ? 'acknowledged or resolved' : 'resolved'}.`;
  }

  /** The incident a click is about: the one its value names, else the one whose post was clicked. */
  private async incidentOf(value: string, payload: BlockActionsPayload): Promise<Incident | undefined> {
    const { state } = this.inputs;
    const id = Number(value.split(':')[0]);
    if (Number.isInteger(id) && id > 0) {
      const named = await state.incidentById(id);
      if (named) return named;
    }
    const channel = payload.container?.channel_id ?? payload.channel?.id;
    const ts = payload.container?.message_ts ?? payload.message?.ts;
    return channel && ts ? (await state.incidentsByPost(channel, ts))[0] ?? await state.incidentBySource(channel, ts) : undefined;
  }

  /** Silence an incident's alert (its correlation key, else alerts that read like it) for `durationMs`. */
  private async silenceIncident(incident: Incident, user: string, durationMs: number, reason: string): Promise<string | undefined> {
    const existing = (await this.inputs.silencing.active()).find((s) => s.incidentId === incident.id);
    if (existing) return `Incident #${incident.id} is already silenced (silence ${existing.id}, by <@${existing.createdBy}>).`;
    const title = firstLine(incident.text) || incident.text.trim().slice(0, 120);
    const matcher: SilenceMatcher = incident.alertKey ? { kind: 'key', key: incident.alertKey } : { kind: 'text', key: normalisedTextKey(incident.text), title };
    await this.inputs.silencing.create({ what: incident.alertKey ?? title, matcher, reason, user, durationMs, incident });
    return undefined;
  }

  private async openSilenceModal(incident: Incident, triggerId: string | undefined): Promise<string | undefined> {
    if (!triggerId) return 'Slack sent no trigger for the form; choose 1 h, 4 h or 24 h instead.';
    await this.inputs.slack.views.open({
      trigger_id: triggerId,
      view: {
        type: 'modal', callback_id: SILENCE_MODAL, private_metadata: JSON.stringify({ incident: incident.id }),
        title: { type: 'plain_text', text: 'Silence an alert' }, submit: { type: 'plain_text', text: 'Silence' }, close: { type: 'plain_text', text: 'Cancel' },
        blocks: [
          { type: 'section', text: { type: 'mrkdwn', text: `Silence incident #${incident.id}: ${escapeSlack(incident.head)} ${escapeSlack(incident.text.split('\n')[0].slice(0, 200))}` } },
          { type: 'input', block_id: DURATION_FIELD, label: { type: 'plain_text', text: 'For how long' }, hint: { type: 'plain_text', text: 'e.g. 30m, 2h, 1d, 1h30m' },
            element: { type: 'plain_text_input', action_id: DURATION_FIELD, initial_value: '2h' } },
          { type: 'input', block_id: REASON_FIELD, optional: true, label: { type: 'plain_text', text: 'Why' },
            element: { type: 'plain_text_input', action_id: REASON_FIELD, multiline: true, max_length: 500 } },
        ],
      } as never,
    });
    return undefined;
  }

  /** The custom-silence modal was submitted: a bad duration keeps it open with the error; else the silence is made. */
  private async submitted(submission: ViewSubmission, ack: InteractiveEnvelope['ack']): Promise<void> {
    const { log } = this.inputs;
    const answer = (response?: Record<string, unknown>) => ack(response).catch((error) => log.warn(`ack failed: ${errorText(error)}`));
    const view = submission.view;
    const user = submission.user?.id;
    if (view?.callback_id !== SILENCE_MODAL || !user) { await answer(); return; }
    const values = view.state?.values ?? {};
    const durationText = values[DURATION_FIELD]?.[DURATION_FIELD]?.value ?? '';
    const reason = (values[REASON_FIELD]?.[REASON_FIELD]?.value ?? '').trim().slice(0, 500);
    const durationMs = parseSilenceDuration(durationText);
    if (durationMs === undefined) { await answer({ response_action: 'errors', errors: { [DURATION_FIELD]: `Expected ${DURATION_HINT}` } }); return; }
    let incidentId: number | undefined;
    try { incidentId = Number((JSON.parse(view.private_metadata ?? '{}') as { incident?: unknown }).incident); } catch { /* refused below */ }
    const incident = incidentId ? await this.inputs.state.incidentById(incidentId) : undefined;
    if (!incident) { await answer({ response_action: 'errors', errors: { [DURATION_FIELD]: 'IMS has no record of this incident any more' } }); return; }
    const verdict = await this.inputs.permissions.check(user, 'silence', { incident });
    if (!verdict.allowed) { await answer({ response_action: 'errors', errors: { [DURATION_FIELD]: verdict.why.replace(/<@[A-Z0-9]+>/g, 'someone else') } }); return; }
    await answer();
    try {
      const refused = await this.silenceIncident(incident, user, durationMs, reason);
      if (refused) await this.tell({ user, channel: incident.incidentChannel }, refused);
    } catch (error) {
      log.error(`silencing incident #${incident.id} for ${user} failed: ${errorText(error)}`);
      await this.tell({ user, channel: incident.incidentChannel }, `:warning: Silencing incident #${incident.id} failed: ${escapeSlack(errorText(error).slice(0, 300))}.`);
    }
  }

  /**
   * Tell one person something only they see: through the payload's `response_url` (it works in any channel the
   * command or post is in), else `chat.postEphemeral`, else (the Home tab has neither) a small modal.
   */
  async tell(to: { user: string; channel?: string; responseUrl?: string; triggerId?: string; onHome?: boolean }, text: string): Promise<void> {
    const { log, slack } = this.inputs;
    const clipped = text.length > 3900 ? `${text.slice(0, 3900)}…` : text;
    if (to.responseUrl) {
      try {
        const answer = await slackFetch(to.responseUrl, {
          method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8' },
          body: JSON.stringify({ response_type: 'ephemeral', replace_original: false, text: clipped }), signal: AbortSignal.timeout(10_000),
        });
        if (answer.ok) return;
        log.warn(`response_url answered ${answer.status}; telling ${to.user} another way`);
      } catch (error) {
        log.warn(`response_url failed (${errorText(error)}); telling ${to.user} another way`);
      }
    }
    try {
      if (to.channel && !to.onHome) { await slack.chat.postEphemeral({ channel: to.channel, user: to.user, text: clipped }); return; }
      if (to.triggerId) {
        await slack.views.open({ trigger_id: to.triggerId, view: { type: 'modal', title: { type: 'plain_text', text: 'IMS' }, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: clipped } }] } as never });
        return;
      }
      log.warn(`could not tell ${to.user}: ${inertText(clipped).slice(0, 200)} (no channel, response URL or trigger)`);
    } catch (error) {
      log.error(`could not tell ${to.user} "${clipped.slice(0, 200)}": ${errorText(error)}`);
    }
  }
}

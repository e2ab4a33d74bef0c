/**
 * What a person does to an incident from Slack — acknowledge, resolve, reopen — as one state change each: a
 * double click, or two people at once, changes the state once (the store's conditional update decides who was
 * first), and whoever came second is told what already happened. Each change is shown on the incident's post
 * and reaches the plugins (`onResolve` / `onReopen` with `via: 'button'`).
 */
import type { Incident, Logger } from './ims.ts';
import type { Store } from './ims-state.ts';
import type { HookRunner } from './ims-hooks.ts';
import { formatAge } from './ims-time.ts';

/** What came of an action: `changed` when this person's click changed the state; `text` tells them (mrkdwn). */
export interface ActionOutcome {
  changed: boolean;
  text: string;
}

/** What the actions need. */
export interface IncidentActionInputs {
  state: Store;
  log: Logger;
  hooks: HookRunner;
  now(): number;
  refreshPost(incident: Incident): void;
}

/** Acknowledge, resolve and reopen incidents on people's behalf, once each. */
export class IncidentActions {
  constructor(private readonly inputs: IncidentActionInputs) {}

  async acknowledge(incident: Incident, user: string): Promise<ActionOutcome> {
    const { state, log } = this.inputs;
    const now = this.inputs.now();
    if (incident.resolvedAt !== undefined) return { changed: false, text: `Incident #${incident.id} is already resolved${resolvedBy(incident)}, ${ago(now, incident.resolvedAt)}.` };
    if (!(await state.acknowledgeIncident(incident.id, now, user, 'button'))) {
      const current = (await state.incidentById(incident.id)) ?? incident;
      return { changed: false, text: `Incident #${incident.id} was already acknowledged${current.acknowledgedBy ? ` by ${mention(current.acknowledgedBy)}` : ''}${current.acknowledgedAt ? `, ${ago(now, current.acknowledgedAt)}` : ''}.` };
    }
    log.info(`incident #${incident.id} acknowledged by ${user}`);
    this.inputs.refreshPost((await state.incidentById(incident.id))!);
    return { changed: true, text: `You acknowledged incident #${incident.id}.` };
  }

  async resolve(incident: Incident, user: string): Promise<ActionOutcome> {
    const { state, log, hooks } = this.inputs;
    const now = this.inputs.now();
    if (!(await state.resolveIncident(incident.id, now, user))) {
      const current = (await state.incidentById(incident.id)) ?? incident;
      return { changed: false, text: `Incident #${incident.id} was already resolved${resolvedBy(current)}${current.resolvedAt ? `, ${ago(now, current.resolvedAt)}` : ''}.` };
    }
    const resolved = (await state.incidentById(incident.id))!;
    log.info(`incident #${incident.id} resolved by ${user} (button)`);
    this.inputs.refreshPost(resolved);
    void hooks.run('onResolve', () => ({ incident: resolved, user, reaction: '', via: 'button' as const }));
    return { changed: true, text: `You resolved incident #${incident.id} after ${formatAge(now - incident.createdAt)}.` };
  }

  async reopen(incident: Incident, user: string): Promise<ActionOutcome> {
    const { state, log, hooks } = this.inputs;
    if (!(await state.reopenIncident(incident.id, this.inputs.now(), user))) {
      return { changed: false, text: `Incident #${incident.id} is already open${incident.resolvedAt === undefined ? '' : ' again'}.` };
    }
    const reopened = (await state.incidentById(incident.id))!;
    log.info(`incident #${incident.id} reopened by ${user} (button)`);
    this.inputs.refreshPost(reopened);
    void hooks.run('onReopen', () => ({ incident: reopened, user, reaction: '', via: 'button' as const }));
    return { changed: true, text: `You reopened incident #${incident.id}.` };
  }
}

function mention(user: string): string {
  return /^[UW][A-Z0-9]+$/.test(user) ? `<@${user}>` : 'its integration';
}

function resolvedBy(incident: Incident): string {
  return incident.resolvedBy ? ` by ${mention(incident.resolvedBy)}` : '';
}

function ago(now: number, at: number): string {
  return now - at < 60_000 ? 'just now' : `${formatAge(now - at)} ago`;
}

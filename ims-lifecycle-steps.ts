/**
 * Carrying out alert lifecycle steps (`plan` in ims-lifecycle.ts) against Slack and the state: a repeat is
 * counted and shown on the incident's post (a thread note at most once per `repeatNoteEvery`), a recovery
 * resolves the incident (by the integration, with the recovery's link), a firing within the reopen window
 * reopens it, flapping is marked on the post and stops further pages. The source message always gets the seen
 * reaction and is finished once its step is recorded. Opening an incident stays the incident lifecycle's.
 */
import type { AlertMessage, CompiledConfig, Decision, Incident, Logger } from './ims.ts';
import type { Store } from './ims-state.ts';
import { plan, type Identification, type IncidentStanding, type KeyRecord, type Step } from './ims-lifecycle.ts';
import { normalisedTextKey, recognise, type AlertIdentity } from './ims-recognisers.ts';
import { tsToMs } from './ims-time.ts';
import { escapeSlack, mentionOf } from './ims-text.ts';
import type { Poster } from './ims-slack.ts';
import type { HookRunner } from './ims-hooks.ts';
import type { PostEditor } from './ims-incident-posts.ts';

/** What the lifecycle steps need from the running IMS. */
export interface LifecycleStepInputs {
  state: Store;
  poster: Poster;
  posts: PostEditor;
  log: Logger;
  hooks: HookRunner;
  permalink(channel: string, ts: string): string;
  /** Keep work in IMS's in-flight work (a stop waits for it). */
  track<T>(work: Promise<T>): Promise<T>;
  /** Whether a channel's posting pace holds its posts back now (a storm): repeat notes then wait for calmer times. */
  heldBack(channel: string): boolean;
  /**
   * Whether a silence in force takes the incident's alert (a reopening then pages nobody, a repeat gets no thread
   * note); with the message about it, that message is counted as one the silence kept quiet.
   */
  silenced(incident: Incident, message?: AlertMessage): Promise<boolean>;
  /** With several instances: hold the alerts' keys across instances while a step about them runs; what gives them back. */
  lockKeys?(keys: readonly string[]): Promise<() => Promise<void>>;
}

type AlertDecision = Extract<Decision, { action: 'incident' | 'seen' }> & { alert: Identification };

export class LifecycleSteps {
  constructor(private readonly inputs: LifecycleStepInputs) {}

  /** The step this message's alerts take, from what the state knows of their keys. */
  async planFor(config: CompiledConfig, alert: Identification, ts: string) {
    const planned = await this.planNow(config, alert, ts);
    if (planned.step.kind !== 'open' || !(await this.adoptOpenedBeforeKeys(config, planned.step.alerts, ts))) return planned;
    return this.planNow(config, alert, ts);
  }

  /** `plan` over what the state knows now: the alerts' key records, and the incidents they point at with their keys. */
  private async planNow(config: CompiledConfig, alert: Identification, ts: string) {
    const { state } = this.inputs;
    const keys = [...new Set(alert.alerts.map((a) => a.key))];
    const records = new Map(await Promise.all(keys.map(async (key) => [key, await state.keyRecord(key)] as const)));
    const ids = [...new Set([...records.values()].flatMap((record) => (record ? [record.incidentId] : [])))];
    const incidents = new Map(await Promise.all(ids.map(async (id) => [id, { incident: await state.incidentById(id), keys: await state.keyRecords(id) }] as const)));
    const standing = (id: number): IncidentStanding | undefined => {
      const incident = incidents.get(id)?.incident;
      return incident && { id, resolvedAt: incident.resolvedAt, flapping: incident.flapping, lastNoteTs: incident.lastNoteTs };
    };
    // `plan` asks only of the incidents these records point at.
    return plan(alert.alerts, ts, (key) => records.get(key), standing, (id) => incidents.get(id)?.keys ?? [], config.lifecycle);
  }

  /** No open incident without a key is left (they came from before schema 3, or from a run with lifecycles off). */
  private noKeylessLeft = false;

  /**
   * An incident opened before IMS kept keys (an `ims.db` upgraded to schema 3, or lifecycles turned on later) has
   * none: the first alert that reads like it — by the recogniser over its text, or by its normalised text — is
   * its repeat, not a second incident. The incident is given the key; true when one was.
   */
  private async adoptOpenedBeforeKeys(config: CompiledConfig, alerts: AlertIdentity[], ts: string): Promise<boolean> {
    if (this.noKeylessLeft) return false;
    const { state } = this.inputs;
    // Within the report's window, as the report lists them: older ones are left to a person.
    const keyless = (await state.listIncidents({ open: true })).filter((i) => i.alertKey === undefined && i.ruleNumber > 0 && tsToMs(ts) - tsToMs(i.sourceTs) <= config.report.windowMs);
    if (!keyless.length) { this.noKeylessLeft = true; return false; }
    for (const incident of keyless) {
      const event = { type: 'message' as const, channel: incident.sourceChannel, ts: incident.sourceTs, text: incident.text, bot_id: 'B0KEYLESS', subtype: 'bot_message' };
      const read = recognise({ event, text: incident.text }, config.lifecycle.recognisers);
      const keys = read ? read.alerts.map((a) => a.key) : [normalisedTextKey(incident.text)];
      const alert = alerts.find((a) => keys.includes(a.key));
      if (!alert) continue;
      await state.saveKeyRecords([{ key: alert.key, incidentId: incident.id, state: 'firing', changedTs: incident.sourceTs, changes: [], lastSeenTs: incident.sourceTs, title: alert.title }]);
      this.inputs.log.info(`incident #${incident.id}, opened before IMS kept alert keys, is ${alert.key}: this alert is its repeat`);
      return true;
    }
    return false;
  }

  /**
   * Carry out the step for a claimed message; the message is finished when done. `open` opens its incident as
   * for any incident decision (undefined when the decision is not one).
   */
  async take(config: CompiledConfig, decision: AlertDecision, message: AlertMessage, open: () => Promise<Incident | undefined>, at = message.ts,
    planned?: (step: Step['kind']) => void): Promise<void> {
    // Messages about the same alert take their steps one after the other: a repeat that arrives while its alert's
    // incident is still being posted must find that incident, not open a second one.
    return this.inTurn(decision.alert.alerts.map((a) => a.key), () => this.takeNow(config, decision, message, open, at, planned));
  }

  /** Steps about the keys under way, by key: the last one's end. */
  private readonly underWay = new Map<string, Promise<void>>();

  private async inTurn(keys: string[], work: () => Promise<void>): Promise<void> {
    const before = [...new Set(keys.map((key) => this.underWay.get(key)).filter((p): p is Promise<void> => !!p))];
    let done!: () => void;
    const mine = new Promise<void>((resolve) => { done = resolve; });
    for (const key of keys) this.underWay.set(key, mine);
    await Promise.all(before);
    let unlock: (() => Promise<void>) | undefined;
    try {
      // With several instances, one after the other on every instance too.
      unlock = await this.inputs.lockKeys?.(keys);
      await work();
    } finally {
      await unlock?.();
      done();
      for (const key of keys) if (this.underWay.get(key) === mine) this.underWay.delete(key);
    }
  }

  private async takeNow(config: CompiledConfig, decision: AlertDecision, message: AlertMessage, open: () => Promise<Incident | undefined>, at: string,
    planned?: (step: Step['kind']) => void): Promise<void> {
    const { state, log } = this.inputs;
    const { step, records, flapping } = await this.planFor(config, decision.alert, at);
    planned?.(step.kind);
    const where = { channel: message.channel, ts: message.ts, key: decision.alert.alerts[0]?.key };
    if (step.kind === 'open') {
      // Only a rule opens an incident: a recogniser's firing that no rule matched is only seen.
      if (decision.action !== 'incident') return this.seen(config, message, 'no rule matched', where);
      const incident = await open();
      if (incident) await state.saveKeyRecords(records.map((r) => ({ ...r, incidentId: incident.id })));
      return;
    }
    if (step.kind === 'seen') {
      await this.seen(config, message, step.why, where);
      // A recovery of an incident already resolved (by a person) still records its alert as recovered, as --replay
      // does, and may end its flapping.
      if (flapping && step.incidentId !== undefined) await this.flappingChanged(config, step.incidentId, flapping, records, at);
      else if (records.length && step.incidentId !== undefined) await state.saveKeyRecords(records);
      return;
    }
    await this.inputs.poster.react(message.channel, message.ts, config.seenReaction);
    const before = await state.incidentById(step.incidentId);
    if (!before) return this.seen(config, message, 'its incident is gone', where);
    await state.withinOneCommit(() => {
      state.saveKeyRecords(records);
      this.record(step, message, before, at);
      if (flapping) {
        state.setFlapping(before.id, flapping === 'start');
        state.addIncidentEvent({ incidentId: before.id, kind: 'flapping', detail: flapping, at: tsToMs(at) });
      }
      state.finishMessage(message.channel, message.ts);
    });
    const incident = (await state.incidentById(before.id))!;
    log.info(`${describeStep(step, incident)}${flapping ? `; flapping ${flapping === 'start' ? 'started' : 'stopped'}` : ''}`, where);
    const recovery = { channel: message.channel, ts: message.ts, permalink: this.inputs.permalink(message.channel, message.ts) };
    // The step is recorded: the next message about this alert need not wait for Slack to show it (in a storm the
    // edit waits for its channel's pace). What shows it is kept in IMS's in-flight work, so a stop waits for it.
    this.runHooks(step, incident, message, recovery, flapping);
    void this.inputs.track((async () => {
      await this.inputs.posts.refresh(incident);
      await this.threadNote(config, step, incident, message);
    })());
  }

  /** The state changes of a step (inside the caller's commit). */
  private record(step: Exclude<Step, { kind: 'open' | 'seen' }>, message: AlertMessage, incident: Incident, ts: string): void {
    const { state } = this.inputs;
    const at = tsToMs(ts);
    switch (step.kind) {
      case 'repeat':
        state.noteRepeat(incident.id, ts, step.note);
        state.addIncidentEvent({ incidentId: incident.id, kind: 'repeat', user: message.poster, detail: this.inputs.permalink(message.channel, message.ts), at });
        return;
      case 'recover':
        state.noteSeen(incident.id, ts);
        state.addIncidentEvent({ incidentId: incident.id, kind: 'recovery', user: message.poster, detail: this.inputs.permalink(message.channel, message.ts), at });
        // On the alert's own time, but never before the incident was opened (a catch-up opens it after the alert).
        if (step.resolves) state.resolveIncident(incident.id, Math.max(at, incident.createdAt), message.poster);
        return;
      case 'reopen':
        state.noteSeen(incident.id, ts);
        state.reopenIncident(incident.id, Math.max(at, incident.createdAt), message.poster);
        return;
      case 'acknowledge':
        // Acknowledged in the monitoring tool: the first acknowledgement shows on the post; every one is recorded.
        state.acknowledgeIncident(incident.id, at, message.poster);
        state.addIncidentEvent({ incidentId: incident.id, kind: 'acknowledge', user: message.poster, detail: this.inputs.permalink(message.channel, message.ts), at });
        return;
    }
  }

  /** A thread note for a repeat (at most once per interval) and a page for a reopening (only when configured). */
  private async threadNote(config: CompiledConfig, step: Step, incident: Incident, message: AlertMessage): Promise<void> {
    let text: string | undefined;
    const link = `<${this.inputs.permalink(message.channel, message.ts)}|${step.kind === 'repeat' ? 'repeat' : 'alert'}>`;
    // In a storm a note per repeat would queue ahead of new alerts: the post's status line says it already.
    const silenced = (step.kind === 'repeat' || step.kind === 'reopen') && await this.inputs.silenced(incident, message);
    if (step.kind === 'repeat' && step.note && !silenced && !this.inputs.heldBack(incident.incidentChannel)) text = `:repeat: Fired again (${incident.repeats} repeat${incident.repeats === 1 ? '' : 's'} so far): ${link}`;
    if (step.kind === 'reopen') {
      const members = step.page && incident.hotline && !silenced ? config.hotlines.get(incident.hotline) ?? [] : [];
      text = `:rotating_light: Fired again within the reopen window: reopened (${link})${members.length ? ` — *Hotline ${escapeSlack(incident.hotline!)}*: ${members.map(mentionOf).join(' ')}` : ''}`;
    }
    if (!text) return;
    try {
      await this.inputs.poster.post({
        channel: incident.incidentChannel, thread_ts: incident.incidentTs, text, what: `${step.kind} note of incident #${incident.id}`,
        metadata: { event_type: 'ims_lifecycle_note', event_payload: { source_channel: message.channel, source_ts: message.ts } },
      });
    } catch (error) {
      this.inputs.log.warn(`incident #${incident.id}: the ${step.kind} note could not be posted in its thread: ${(error as Error).message}`);
    }
  }

  private runHooks(step: Step, incident: Incident, message: AlertMessage, recovery: { channel: string; ts: string; permalink: string }, flapping?: 'start' | 'stop'): void {
    const { hooks } = this.inputs;
    if (step.kind === 'repeat') void hooks.run('onRepeat', () => ({ incident, message, alerts: step.alerts, repeats: incident.repeats }));
    if (step.kind === 'recover' && step.resolves) void hooks.run('onResolve', () => ({ incident, user: message.poster, reaction: '', recovery, via: 'integration' as const }));
    if (step.kind === 'reopen') void hooks.run('onReopen', () => ({ incident, user: message.poster, reaction: '', recovery, via: 'integration' as const }));
    if (flapping) void hooks.run('onFlapping', () => ({ incident, flapping: flapping === 'start' }));
  }

  /**
   * Incidents that stopped flapping without a message to say so: stable (no change of state) for
   * `flapping.stableFor` by `now`. Their posts are edited, `onFlapping` fires; run every minute.
   */
  async sweepFlapping(config: CompiledConfig, now: number): Promise<void> {
    const rule = config.lifecycle.flapping;
    if (!config.lifecycle.enabled || !rule) return;
    const { state } = this.inputs;
    for (const incident of await state.flappingIncidents()) {
      const keys = await state.keyRecords(incident.id);
      const lastChange = Math.max(...keys.map((r) => tsToMs(r.changedTs)), 0);
      if (now - lastChange < rule.stableMs) continue;
      await state.withinOneCommit(() => {
        state.setFlapping(incident.id, false);
        state.addIncidentEvent({ incidentId: incident.id, kind: 'flapping', detail: 'stop', at: now });
        // Calm again: its earlier changes no longer count towards flapping.
        state.saveKeyRecords(keys.map((r) => ({ ...r, changes: [] })));
      });
      const calm = (await state.incidentById(incident.id))!;
      this.inputs.log.info(`incident #${incident.id} stopped flapping: stable for ${Math.round((now - lastChange) / 60_000)} min`);
      await this.inputs.posts.refresh(calm);
      void this.inputs.hooks.run('onFlapping', () => ({ incident: calm, flapping: false }));
    }
  }

  /** A flapping change without another step (a recovery of an incident already resolved): recorded, shown, hooked. */
  private async flappingChanged(config: CompiledConfig, incidentId: number, flapping: 'start' | 'stop', records: KeyRecord[], ts: string): Promise<void> {
    const { state } = this.inputs;
    await state.withinOneCommit(() => {
      state.saveKeyRecords(records);
      state.setFlapping(incidentId, flapping === 'start');
      state.addIncidentEvent({ incidentId, kind: 'flapping', detail: flapping, at: tsToMs(ts) });
    });
    const incident = await state.incidentById(incidentId);
    if (!incident) return;
    await this.inputs.posts.refresh(incident);
    void this.inputs.hooks.run('onFlapping', () => ({ incident, flapping: flapping === 'start' }));
  }

  private async seen(config: CompiledConfig, message: AlertMessage, why: string, where: Record<string, unknown>): Promise<void> {
    await this.inputs.poster.react(message.channel, message.ts, config.seenReaction);
    await this.inputs.state.finishMessage(message.channel, message.ts);
    this.inputs.log.info(`seen: ${why}: reaction :${config.seenReaction}:`, where);
  }
}

function describeStep(step: Exclude<Step, { kind: 'open' | 'seen' }>, incident: Incident): string {
  switch (step.kind) {
    case 'repeat': return `repeat of incident #${incident.id} (${incident.repeats} so far): post updated${step.note ? ', thread note' : ''}`;
    case 'recover': return step.resolves ? `incident #${incident.id} resolved by its recovery` : `incident #${incident.id}: some of its alerts recovered`;
    case 'reopen': return `incident #${incident.id} reopened: it fired again within the reopen window${step.page ? '; paging again' : ''}`;
    case 'acknowledge': return `incident #${incident.id} acknowledged by its integration`;
  }
}

export type { KeyRecord };

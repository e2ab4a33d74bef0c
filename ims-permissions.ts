/**
 * Who may do what from Slack. `admins` names people by user ID or name and teams by user group (`S…` or
 * `@handle`); they are looked up when someone acts (cached for a few minutes), so a change in a user group is
 * followed without a restart. A check that cannot reach Slack refuses an admin-only action and says why.
 */
import type { WebClient } from '@slack/web-api';
import type { CompiledConfig, Incident, Logger } from './ims.ts';
import { errorText } from './ims-log.ts';
import { slackCall } from './ims-slack.ts';

/** What someone asks to do. */
export type Deed = 'acknowledge' | 'resolve' | 'reopen' | 'silence' | 'unsilence';

/**
 * The answer: allowed (and on what grounds: `own` holds only while nobody else has acknowledged the incident, so
 * the caller checks `ownsStill` again right before it acts), or refused with a reason to show the person (ephemeral).
 */
export type Verdict = { allowed: true; as: 'everyone' | 'admin' | 'own' | 'creator' } | { allowed: false; why: string };

/** Whether an incident is still `user`'s own to resolve: nobody else (a person) has acknowledged it. */
export function ownsStill(incident: Pick<Incident, 'acknowledgedBy'>, user: string): boolean {
  const by = incident.acknowledgedBy;
  return !by || by === user || !/^[UW][A-Z0-9]+$/.test(by);
}

/** The refusal when someone else acknowledged the incident first. */
export function notOwn(incident: Pick<Incident, 'acknowledgedBy'>, deed: Deed): string {
  return `<@${incident.acknowledgedBy}> acknowledged this incident: only they or an IMS admin may ${deed} it`;
}

const CACHE_MS = 5 * 60_000;

/** What the checker needs. */
export interface PermissionInputs {
  slack: WebClient;
  log: Logger;
  config(): Pick<CompiledConfig, 'interactive'>;
  now(): number;
}

/** Checks a person's right to act, by the config's `admins` and `permissions`. */
export class PermissionChecker {
  private readonly people = new Map<string, { names: string[]; at: number }>();
  private readonly groups = new Map<string, { members: Set<string>; at: number }>();
  private groupHandles?: { byHandle: Map<string, string>; at: number };

  constructor(private readonly inputs: PermissionInputs) {}

  /**
   * May `user` do `deed` (on `incident`)? `own` for an incident: nobody else has acknowledged it. `creator`: the
   * person who made the silence being ended.
   */
  async check(user: string, deed: Deed, about: { incident?: Incident; creator?: string } = {}): Promise<Verdict> {
    const { permissions } = this.inputs.config().interactive;
    const rule = deed === 'acknowledge' ? permissions.acknowledge : deed === 'resolve' || deed === 'reopen' ? permissions.resolve : permissions.silence;
    if (rule === 'everyone') return { allowed: true, as: 'everyone' };
    if (deed === 'unsilence' && about.creator === user) return { allowed: true, as: 'creator' };
    if (rule === 'own' && about.incident && ownsStill(about.incident, user)) {
      // An admin may act whatever happens meanwhile; anyone else only while it stays theirs.
      return (await this.isAdmin(user)) === true ? { allowed: true, as: 'admin' } : { allowed: true, as: 'own' };
    }
    const admin = await this.isAdmin(user);
    if (admin === true) return { allowed: true, as: 'admin' };
    if (admin === 'unknown') return { allowed: false, why: `IMS could not check whether you are one of its admins (Slack did not answer); try again in a moment` };
    if (rule === 'own' && about.incident) return { allowed: false, why: notOwn(about.incident, deed) };
    return { allowed: false, why: `only IMS admins may ${deed === 'unsilence' ? 'end silences others made' : deed === 'silence' ? 'silence alerts' : `${deed} incidents`} (admins in the config)` };
  }

  /**
   * Ask once (it may need Slack: who is an admin), then judge the incident as it is when the caller acts: the
   * answer's `refusal(now)` is synchronous, so a caller that reads the incident, calls it and acts in the same turn
   * leaves no room for someone else's acknowledgement in between. Undefined from `refusal`: allowed.
   */
  async permit(user: string, deed: Deed, incident: Incident): Promise<{ refusal(now: Incident): string | undefined }> {
    const verdict = await this.check(user, deed, { incident });
    return { refusal: (now) => (!verdict.allowed ? verdict.why : verdict.as === 'own' && !ownsStill(now, user) ? notOwn(now, deed) : undefined) };
  }

  /** Whether `user` is an admin; everyone is while `admins` is empty. `'unknown'` when Slack could not tell. */
  async isAdmin(user: string): Promise<boolean | 'unknown'> {
    const { admins } = this.inputs.config().interactive;
    if (!admins.length || admins.includes(user)) return true;
    try {
      for (const entry of admins) {
        if (/^[UW][A-Z0-9]{2,}$/.test(entry)) continue;
        if (/^S[A-Z0-9]{2,}$/.test(entry)) { if ((await this.members(entry)).has(user)) return true; continue; }
        const name = entry.replace(/^@/, '').toLowerCase();
        if ((await this.namesOf(user)).includes(name)) return true;
        const group = (await this.handles()).get(name);
        if (group && (await this.members(group)).has(user)) return true;
      }
      return false;
    } catch (error) {
      this.inputs.log.warn(`could not check whether ${user} is an IMS admin: ${errorText(error)}`);
      return 'unknown';
    }
  }

  /** A user's handle, display name and real name, lower case. */
  private async namesOf(user: string): Promise<string[]> {
    const cached = this.people.get(user);
    if (cached && this.inputs.now() - cached.at < CACHE_MS) return cached.names;
    const answer = await slackCall(() => this.inputs.slack.users.info({ user }), this.inputs.log, 'users.info');
    const found = answer.user as { name?: string; real_name?: string; profile?: { display_name?: string; real_name?: string } } | undefined;
    const names = [found?.name, found?.real_name, found?.profile?.display_name, found?.profile?.real_name].filter((n): n is string => !!n).map((n) => n.toLowerCase());
    this.people.set(user, { names, at: this.inputs.now() });
    return names;
  }

  private async members(group: string): Promise<Set<string>> {
    const cached = this.groups.get(group);
    if (cached && this.inputs.now() - cached.at < CACHE_MS) return cached.members;
    const answer = await slackCall(() => this.inputs.slack.usergroups.users.list({ usergroup: group }), this.inputs.log, 'usergroups.users.list');
    const members = new Set((answer.users as string[] | undefined) ?? []);
    this.groups.set(group, { members, at: this.inputs.now() });
    return members;
  }

  private async handles(): Promise<Map<string, string>> {
    if (this.groupHandles && this.inputs.now() - this.groupHandles.at < CACHE_MS) return this.groupHandles.byHandle;
    const answer = await slackCall(() => this.inputs.slack.usergroups.list({}), this.inputs.log, 'usergroups.list');
    const byHandle = new Map(((answer.usergroups as { id: string; handle?: string }[] | undefined) ?? []).filter((g) => g.handle).map((g) => [g.handle!.toLowerCase(), g.id]));
    this.groupHandles = { byHandle, at: this.inputs.now() };
    return byHandle;
  }
}

/**
 * Names, both ways. Names → IDs: the config's channels, users and user groups checked against the workspace and
 * resolved at start-up and on reload. IDs → names: the one cached name service IMS and every plugin share
 * (`HookContext.names`), so an alert's poster, a report's resolver and a war room's member are asked once.
 */
import type { WebClient } from '@slack/web-api';
import type { AlertMessage, CompiledConfig, Logger, NameService, SlackMessageEvent } from './ims.ts';
import { ConfigError, placeOf } from './ims-config-errors.ts';
import { classifySlackFailure, didYouMean, withTimeout } from './ims-plugin-kit.ts';
import { errorText } from './ims-log.ts';
import { listAll, pause, retryDelay, slackCall, type RetryPolicy } from './ims-slack.ts';

/** How long a post waits for a name before it names the ID instead (the name is there for the next one). */
const NAME_LOOKUP_MS = 2000;

/**
 * The name service: real names of users and bots, channel names, each looked up once per ID (`users.info`,
 * `bots.info`, `conversations.info`); look-ups under way are shared, so alerts of one poster arriving together
 * ask Slack once. Its methods are bound: a plugin may take `const { user } = ctx.names`.
 */
export class NameDirectory implements NameService {
  /** Real names by user (and bot) ID. */
  readonly userNames = new Map<string, string>();
  /** Channel names (without `#`) by ID. */
  readonly channelNames = new Map<string, string>();
  private readonly lookingUp = new Map<string, Promise<string>>();

  constructor(private readonly deps: { slack: WebClient; log: Logger }) {}

  readonly user = (id: string): Promise<string> => /^B[A-Z0-9]{2,}$/.test(id) ? this.botName(id) : this.realName(id);

  readonly channel = (id: string): Promise<string> => this.cached(id, async () => {
    const info = await slackCall(() => this.deps.slack.conversations.info({ channel: id }), this.deps.log, 'conversations.info');
    return (info.channel as { name?: string } | undefined)?.name;
  }, this.channelNames);

  /**
   * Who posted an alert, as people know them: the name the integration posts under (`username`, as Slack
   * shows it, then `bot_profile.name`, else `bots.info`), or the person's name (`users.info`); the ID only
   * when Slack knows no name.
   */
  readonly poster = async (message: AlertMessage): Promise<string> => {
    const raw = message.raw as SlackMessageEvent & { username?: unknown; bot_profile?: { name?: unknown } };
    for (const given of [raw.username, raw.bot_profile?.name]) if (typeof given === 'string' && given.trim()) return given.trim();
    if (message.botId) return this.botName(message.botId);
    return message.user ? this.realName(message.user) : message.poster || 'unknown';
  };

  private realName(user: string): Promise<string> {
    return this.cached(user, async () => {
      const info = await slackCall(() => this.deps.slack.users.info({ user }), this.deps.log, 'users.info');
      const u = info.user as { real_name?: string; name?: string; profile?: { real_name?: string; display_name?: string } } | undefined;
      return u?.profile?.real_name || u?.real_name || u?.profile?.display_name || u?.name;
    });
  }

  private botName(bot: string): Promise<string> {
    return this.cached(bot, async () => {
      const info = await slackCall(() => this.deps.slack.bots.info({ bot }), this.deps.log, 'bots.info');
      return (info.bot as { name?: string } | undefined)?.name;
    });
  }

  /** A name from `cache`, looked up once per ID; an ID Slack does not know stays the ID (a network failure is asked again next time). */
  private cached(id: string, lookUp: () => Promise<string | undefined>, cache: Map<string, string> = this.userNames): Promise<string> {
    const known = cache.get(id);
    if (known !== undefined) return Promise.resolve(known);
    if (!this.lookingUp.has(id)) {
      this.lookingUp.set(id, lookUp().then((name) => {
        cache.set(id, name?.trim() || id);
        return name?.trim() || id;
      }, (error: unknown) => {
        if ((error as { code?: string }).code === 'slack_webapi_platform_error') cache.set(id, id);
        this.deps.log.debug(`could not look up the name of ${id}: ${errorText(error)}`);
        return id;
      }).finally(() => this.lookingUp.delete(id)));
    }
    // A slow Slack never holds up the page: the post names the ID, and the name is there for the next one.
    return withTimeout(() => this.lookingUp.get(id)!, NAME_LOOKUP_MS, `the name of ${id}`).catch(() => id);
  }
}

/** Who posted an alert, by name (see `NameDirectory.poster`). */
export function posterName(ims: { names: NameDirectory }, message: AlertMessage): Promise<string> {
  return ims.names.poster(message);
}

/** What resolving the config's names needs. */
export interface NameResolution {
  slack: WebClient;
  log: Logger;
  /** False with `--no-id-lookup`: names stay as written (the legacy meaning); IDs are still checked. */
  idLookup: boolean;
  /** How often listing the channels is tried when Slack answers with a failure that may pass. */
  retry: Required<RetryPolicy>;
  /** Aborted when IMS stops: no retry waits any longer. */
  stop: AbortSignal;
}

/**
 * Check the config against the workspace and resolve names to IDs: every destination (incident, DEFAULT,
 * report and reminder channels) must be a channel the bot can see, by ID or by name; user and group names
 * become IDs. With `--no-id-lookup` names stay as written (the legacy meaning), but IDs are still checked.
 * Problems stop start-up (a reload keeps the last good config), each at its place in the config
 * (`IMS.ini:7: …`). A channel that exists but that the bot is not a member of (or that is archived), and
 * channels it cannot list at all (a missing scope), are warnings: posting can still work (`chat:write.public`),
 * and a failed post is logged with its alert.
 */
export async function resolveNames(config: CompiledConfig, deps: NameResolution): Promise<CompiledConfig> {
  const { slack, log } = deps;
  const lookup = deps.idLookup;
  const needsUser = (ref: string) => !/^[UWBS][A-Z0-9]{6,}$/.test(ref) && !/^[@!]?(here|channel|everyone)$/i.test(ref);
  const place = (at: string) => placeOf(config.config, config.source, at);
  for (const warning of config.warnings) log.warn(warning);
  const problems: string[] = [];
  const channel = await channelChecker(config, deps, place, problems);
  const incidents = new Map([...config.incidents].map(([label, i]) => [label, { ...i, channel: channel(i.channel, `incidents.${label}.channel`) }]));
  const reverseDefault = config.reverseDefault && { ...config.reverseDefault, channel: channel(config.reverseDefault.channel, 'reverseDefault.channel') };
  const reportChannel = config.report.channel && channel(config.report.channel, 'report.channel');
  const reminders = config.reminders.map((r, i) => ({ ...r, channel: channel(r.channel, `reminders[${i}].channel`) }));

  const userRefs = [...(config.posters ?? []), ...[...config.hotlines.values()].flat(), ...(config.report.onlyPosters ?? []), ...config.interactive.admins];
  const userIds = new Map<string, string>();
  if (!lookup) {
    const names = userRefs.filter(needsUser);
    if (names.length) log.warn(`--no-id-lookup: these are used as they are, but look like names, not IDs (mentions and filters on them will not work): ${[...new Set(names)].join(', ')}`);
  } else if (userRefs.some(needsUser)) {
    for await (const u of listAll<{ id: string; name: string; real_name?: string; profile?: { display_name?: string } }>(slack, log, 'users.list', { limit: 1000 }, 'members')) {
      for (const name of [u.name, u.profile?.display_name, u.real_name]) if (name && !userIds.has(name)) userIds.set(name, u.id);
    }
    if (userRefs.some((r) => r.startsWith('@') && needsUser(r) && !userIds.has(r.slice(1)))) {
      try {
        const groups = await slack.usergroups.list({});
        for (const g of (groups.usergroups ?? []) as { id: string; handle: string }[]) userIds.set(`@${g.handle}`, g.id);
      } catch (error) { log.warn(`could not list user groups: ${errorText(error)}`); }
    }
  }
  const user = (ref: string, at: string) => {
    if (!lookup || !needsUser(ref)) return ref;
    const id = userIds.get(ref) ?? userIds.get(ref.replace(/^@/, ''));
    if (!id) problems.push(`${place(at)}no user or user group named '${ref}'; check the spelling, or write the ID (U…/S…)`);
    return id ?? ref;
  };
  const hotlines = new Map([...config.hotlines].map(([label, members]) => [label, members.map((m) => user(m, `hotlines.${label}`))]));
  const posters = config.posters && new Set([...config.posters].map((p) => user(p, 'posters')));
  const onlyPosters = config.report.onlyPosters && new Set([...config.report.onlyPosters].map((p) => user(p, 'report.onlyPosters')));
  // A misspelt admin would leave nobody able to silence: refused like any name that does not resolve.
  const admins = config.interactive.admins.map((a, i) => user(a, `admins[${i}]`));
  if (problems.length) throw new ConfigError(problems, config.source);
  const ownChannels = new Set([...incidents.values()].map((i) => i.channel).concat(reportChannel ?? [], reverseDefault?.channel ?? []));
  return {
    ...config, incidents, reverseDefault, reminders, hotlines, posters, ownChannels, report: { ...config.report, channel: reportChannel, onlyPosters },
    interactive: { ...config.interactive, admins },
  };
}

/**
 * The check for one channel reference (`ref` at config path `at`): returns the channel's ID, or `ref` as written
 * (a name under `--no-id-lookup`, or anything when the channels cannot be listed); problems go to `problems`.
 */
async function channelChecker(config: CompiledConfig, deps: NameResolution, place: (at: string) => string, problems: string[]): Promise<(ref: string, at: string) => string> {
  const { slack, log } = deps;
  const lookup = deps.idLookup;
  // Slack IDs are upper case with digits (C0123ABCD, G…, D…); channel names are lower case, so 'C0GONE' is an ID, whatever its length.
  const looksLikeId = (ref: string) => /^[CGD][A-Z0-9]*[0-9][A-Z0-9]*$/.test(ref);
  type Channel = { id: string; name: string; is_member?: boolean; is_archived?: boolean };
  const byId = new Map<string, Channel>();
  const byName = new Map<string, Channel>();
  // Slack's answers meaning the bot lacks a permission (a scope, an admin's restriction): asking again cannot help.
  const permissionErrors = new Set(['missing_scope', 'no_permission', 'access_denied', 'team_access_not_granted', 'ekm_access_denied', 'enterprise_is_restricted', 'restricted_action']);
  /** Why the channels could not be listed: a missing permission (fixed by a scope), or a failure that may pass. */
  let unlisted: { code: string; permission: boolean; attempts: number } | undefined;
  const retry = deps.retry;
  for (let attempt = 1; ; attempt++) {
    try {
      byId.clear();
      byName.clear();
      for await (const c of listAll<Channel>(slack, log, 'conversations.list', { types: 'public_channel,private_channel', limit: 1000 }, 'channels')) {
        byId.set(c.id, c);
        byName.set(c.name, c);
      }
      unlisted = undefined;
      break;
    } catch (error) {
      const failure = classifySlackFailure(error);
      unlisted = { code: failure.code, permission: permissionErrors.has(failure.code), attempts: attempt };
      // A failure on the way (network, 5xx) was already retried by the client; Slack's own answers that may pass
      // (internal_error, service_unavailable) reach here and are retried within the same policy.
      const mayPass = (error as { code?: string }).code === 'slack_webapi_platform_error' && (failure.kind === 'unknown' || failure.kind === 'not done');
      if (!mayPass || attempt > retry.retries) break;
      const delay = retryDelay(retry, attempt);
      log.warn(`could not list the channels (${failure.code}); retry ${attempt} of ${retry.retries} in ${(delay / 1000).toFixed(1)} s`);
      if (!(await pause(delay, deps.stop))) break;
    }
  }
  const refs = [...config.incidents.values()].map((i) => i.channel).concat(config.report.channel ?? [], config.reverseDefault?.channel ?? [], config.reminders.map((r) => r.channel));
  const names = refs.filter((ref) => !looksLikeId(ref.replace(/^#/, '')));
  // IDs are used unchecked rather than stopping IMS: a Slack hiccup at start-up must not stop alerting (nor a
  // restart loop), and a destination that is really gone still shows, as a failed post logged with its alert.
  if (unlisted !== undefined && (!lookup || !names.length)) {
    log.warn(unlisted.permission
      ? `could not list the channels (${unlisted.code}): the channels in the config are not checked; the bot needs the channels:read and groups:read scopes`
      : `could not list channels to check the config's destinations: ${unlisted.code}${unlisted.attempts > 1 ? ` (tried ${unlisted.attempts} times)` : ''}; ` +
        `going on without checking them: a channel that does not exist shows up as a failed post, logged with its alert`);
  }
  if (!lookup && names.length) {
    log.warn(`--no-id-lookup: these are used as they are, but look like names, not IDs (posting may work, watching and reports will not): ${[...new Set(names)].join(', ')}`);
  }
  const warned = new Set<string>();
  return (ref, at) => {
    const bare = ref.replace(/^#/, '');
    if (unlisted !== undefined) {
      if (lookup && !looksLikeId(bare)) {
        problems.push(unlisted.permission
          ? `${place(at)}cannot look up the channel named '${ref}': listing the channels failed (${unlisted.code}); give the bot the channels:read and groups:read scopes, or write the channel's ID (C…)`
          : `${place(at)}cannot look up the channel named '${ref}': could not list channels (${unlisted.code}${unlisted.attempts > 1 ? `, tried ${unlisted.attempts} times` : ''}); start IMS again when Slack answers, or write the channel's ID (C…)`);
      }
      return looksLikeId(bare) ? bare : ref;
    }
    // An ID the bot can see is accepted whatever its length; a name only when names are looked up.
    const found = byId.get(bare) ?? (lookup ? byName.get(bare) : undefined);
    if (!found) {
      if (looksLikeId(bare) && bare.startsWith('D')) return bare; // a direct message: not listed, not checkable
      if (looksLikeId(bare)) problems.push(`${place(at)}no channel with the ID '${bare}' is visible to the bot; check the ID (channel details, at the bottom), or invite the bot if the channel is private`);
      else if (lookup) problems.push(`${place(at)}no channel named '${ref}' is visible to the bot${didYouMean(bare, [...byName.keys()])}; invite the bot to it, or write its ID (C…)`);
      return lookup || looksLikeId(bare) ? bare : ref;
    }
    // It exists: posting may still work (or its failure is logged with the alert), so these are warnings.
    if (!warned.has(found.id) && (found.is_archived || !found.is_member)) {
      warned.add(found.id);
      log.warn(found.is_archived
        ? `${place(at)}#${found.name} (${found.id}) is archived: posts there fail with is_archived; unarchive it or name another channel`
        : `${place(at)}the bot is not a member of #${found.name} (${found.id}): posts there fail with not_in_channel and reports cannot read it; invite the bot (/invite in that channel)`);
    }
    return found.id;
  };
}

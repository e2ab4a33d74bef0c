/**
 * The Slack app manifest for IMS: paste `printManifest()` (also `examples/slack-app-manifest.json`) at
 * https://api.slack.com/apps?new_app=1 → "From a manifest", and the app has the bot user, the `/ims` command,
 * the App Home tab, Socket Mode, the event subscriptions and every bot scope IMS and its plugins use.
 *
 * Built from Slack's manifest schema (github.com/slackapi/manifest-schema, schemas/manifest.schema.1.0.0.json;
 * reference: https://docs.slack.dev/reference/app-manifest) and each method's and event's page under
 * https://docs.slack.dev/reference/methods/… and …/events/… for its bot-token scopes.
 *
 * Socket Mode: no `request_url` anywhere (events, commands and interactivity arrive over the socket), so the
 * app needs no public HTTP endpoint. The app-level token (`SLACK_APP_TOKEN`, scope `connections:write`) cannot
 * be made by a manifest: it is created by hand under Basic Information → App-Level Tokens.
 *
 * This module imports nothing: printing the manifest (the CLI, the README table) loads none of IMS's runtime.
 */

/** Why IMS asks for a bot scope: always, or only for an optional feature (a plugin, a config option). */
export type ScopeNeed =
  | { required: true; why: string; widens?: undefined }
  | {
    required: false;
    /** The optional feature that needs the scope (a plugin, a config option). */
    feature: string;
    why: string;
    /** A scope that only widens another one (adds no method of its own), e.g. chat:write.public. */
    widens?: string;
  };

/** The scope table, kept literal so its keys make the `BotScope` type. */
const SCOPE_TABLE = {
  'channels:history': {
    required: true,
    why: 'read alerts in public channels (message.channels events), catch up on what was missed while disconnected, '
      + 'find its own earlier posts before posting again (conversations.history/replies), read the report window',
  },
  'groups:history': {
    required: true,
    why: 'the same for private channels (message.groups events, conversations.history/replies)',
  },
  'channels:read': {
    required: true,
    why: 'check the config\'s destination channels and turn channel names into IDs (conversations.list, conversations.info)',
  },
  'groups:read': {
    required: true,
    why: 'the same for private channels',
  },
  'chat:write': {
    required: true,
    why: 'post incidents, thread replies, digests, reports and reminders (chat.postMessage), edit them in place '
      + '(chat.update), remove the previous reminder (chat.delete), answer /ims privately (chat.postEphemeral)',
  },
  'reactions:read': {
    required: true,
    why: 'see reactions on alerts and incident posts (reaction_added/reaction_removed events, reactions.get)',
  },
  'reactions:write': {
    required: true,
    why: 'react to alerts: reacji mode\'s reaction, the seen-reaction on repeats of an open alert (reactions.add)',
  },
  'users:read': {
    required: true,
    why: 'turn user names of posters and hotlines into IDs (users.list) and name posters in reposts (users.info, bots.info)',
  },
  'files:write': {
    required: true,
    why: 'upload a long report as a file (more than 4 messages\' worth), and the timeline plugin\'s post-mortem into the incident '
      + 'thread (filesUploadV2: files.getUploadURLExternal, files.completeUploadExternal)',
  },
  commands: {
    required: true,
    why: 'the /ims slash command',
  },
  'chat:write.public': {
    required: false,
    feature: 'posting to channels the bot was not invited to',
    widens: 'chat:write',
    why: 'post into an incident or report channel without being a member; invite the bot anyway: without membership '
      + 'it cannot read back its posts (to never post twice) nor see reactions there',
  },
  'usergroups:read': {
    required: false,
    feature: 'user groups by @handle (hotlines, admins)',
    why: 'turn @handles of user groups into IDs (usergroups.list) and read a group\'s members (usergroups.users.list)',
  },
  'pins:write': {
    required: false,
    feature: 'pin and war-room plugins',
    why: 'pin open incidents and unpin resolved ones (pins.add, pins.remove); pin the war room\'s summary',
  },
  'channels:manage': {
    required: false,
    feature: 'war-room plugin',
    why: 'create, archive and unarchive public war rooms, set their topic and purpose, invite people '
      + '(conversations.create/archive/unarchive/setTopic/setPurpose/invite)',
  },
  'groups:write': {
    required: false,
    feature: 'war-room plugin (private rooms)',
    why: 'the same for private war rooms',
  },
  'channels:join': {
    required: false,
    feature: 'war-room plugin',
    why: 'join an existing public room found by name (conversations.join)',
  },
} as const satisfies Record<string, ScopeNeed>;

/** A bot scope IMS requests. */
export type BotScope = keyof typeof SCOPE_TABLE;

/**
 * Every bot scope in the manifest, with why IMS needs it: required ones first, then those of optional
 * features. The README prints this table; the manifest requests all of them, so every plugin works after one
 * install (remove the optional ones of features you do not use before pasting, if you prefer).
 */
export const MANIFEST_SCOPES: Readonly<Record<BotScope, ScopeNeed>> = SCOPE_TABLE;

/**
 * The bot scopes each Slack Web API method IMS or its plugins call needs, from the method's page on
 * docs.slack.dev. For methods that work on conversations: the scope of public channels and the one of private
 * channels (IMS handles both; it reads no DMs, so no im:* or mpim:*). Empty: no scope (views.*, auth.test) or
 * not the bot token (apps.connections.open takes the app-level token's connections:write).
 * test/manifest.test.ts scans the code for called methods and fails on one missing here.
 */
export const METHOD_SCOPES: Readonly<Record<string, readonly BotScope[]>> = {
  'apps.connections.open': [],
  'auth.test': [],
  'bots.info': ['users:read'],
  'chat.delete': ['chat:write'],
  'chat.postEphemeral': ['chat:write'],
  'chat.postMessage': ['chat:write'],
  'chat.update': ['chat:write'],
  'conversations.archive': ['channels:manage', 'groups:write'],
  'conversations.create': ['channels:manage', 'groups:write'],
  'conversations.history': ['channels:history', 'groups:history'],
  'conversations.info': ['channels:read', 'groups:read'],
  'conversations.invite': ['channels:manage', 'groups:write'],
  'conversations.join': ['channels:join'],
  'conversations.kick': ['channels:manage', 'groups:write'],
  'conversations.list': ['channels:read', 'groups:read'],
  'conversations.replies': ['channels:history', 'groups:history'],
  'conversations.setPurpose': ['channels:manage', 'groups:write'],
  'conversations.setTopic': ['channels:manage', 'groups:write'],
  'conversations.unarchive': ['channels:manage', 'groups:write'],
  'files.completeUploadExternal': ['files:write'],
  'files.getUploadURLExternal': ['files:write'],
  'pins.add': ['pins:write'],
  'pins.remove': ['pins:write'],
  'reactions.add': ['reactions:write'],
  'reactions.get': ['reactions:read'],
  'reactions.remove': ['reactions:write'],
  'usergroups.list': ['usergroups:read'],
  'usergroups.users.list': ['usergroups:read'],
  'users.info': ['users:read'],
  'users.list': ['users:read'],
  'views.open': [],
  'views.publish': [],
  'views.push': [],
  'views.update': [],
};

/** The @slack/web-api helpers that are no Web API method themselves, and the methods they call. */
export const SDK_HELPERS: Readonly<Record<string, readonly string[]>> = {
  filesUploadV2: ['files.getUploadURLExternal', 'files.completeUploadExternal'],
  'files.uploadV2': ['files.getUploadURLExternal', 'files.completeUploadExternal'],
};

/**
 * The events IMS handles (an inner event's `type`), the Events API subscriptions that deliver them to the bot
 * and the scopes those subscriptions need (docs.slack.dev/reference/events/…).
 */
export const EVENT_SUBSCRIPTIONS: Readonly<Record<string, { subscribe: readonly string[]; scopes: readonly BotScope[] }>> = {
  message: { subscribe: ['message.channels', 'message.groups'], scopes: ['channels:history', 'groups:history'] },
  reaction_added: { subscribe: ['reaction_added'], scopes: ['reactions:read'] },
  reaction_removed: { subscribe: ['reaction_removed'], scopes: ['reactions:read'] },
  app_home_opened: { subscribe: ['app_home_opened'], scopes: [] },
};

/** The slash command IMS answers. */
export const SLASH_COMMAND = '/ims';

/** The parts of Slack's app manifest (schema v1) IMS fills in. */
export interface SlackAppManifest {
  _metadata: { major_version: number; minor_version: number };
  display_information: {
    /** At most 35 characters. */
    name: string;
    /** At most 140 characters. */
    description: string;
    /** `#rgb` or `#rrggbb`. */
    background_color: string;
  };
  features: {
    bot_user: { display_name: string; always_online: boolean };
    app_home: { home_tab_enabled: boolean; messages_tab_enabled: boolean };
    slash_commands: { command: string; description: string; usage_hint: string; should_escape: boolean }[];
  };
  oauth_config: { scopes: { bot: BotScope[] } };
  settings: {
    event_subscriptions: { bot_events: string[] };
    interactivity: { is_enabled: boolean };
    org_deploy_enabled: boolean;
    socket_mode_enabled: boolean;
    token_rotation_enabled: boolean;
  };
}

/** What can change between two IMS apps of one workspace (e.g. a staging one). */
export interface ManifestOptions {
  /** The app's and its bot user's display name (default `IMS`), at most 35 characters. */
  name?: string;
}

/** Slack's limit for `display_information.name`. */
const NAME_MAX = 35;

/**
 * The app manifest for IMS: Socket Mode on, interactivity on (over the socket), the `/ims` command, the App Home
 * tab, the events of `EVENT_SUBSCRIPTIONS` and every scope of `MANIFEST_SCOPES`.
 */
export function appManifest(options: ManifestOptions = {}): SlackAppManifest {
  const name = options.name ?? 'IMS';
  if (typeof name !== 'string' || !name.trim() || name.trim().length > NAME_MAX) {
    throw new Error(`appManifest: expected a name of 1 to ${NAME_MAX} characters (Slack's limit for an app name), found ${JSON.stringify(name)}`);
  }
  const displayName = name.trim();
  return {
    _metadata: { major_version: 1, minor_version: 1 },
    display_information: {
      name: displayName,
      description: 'Incident management: watches alert channels, reposts incidents, pages the on-call, reports what is still open.',
      background_color: '#b71c1c',
    },
    features: {
      bot_user: { display_name: displayName, always_online: true },
      app_home: { home_tab_enabled: true, messages_tab_enabled: false },
      slash_commands: [{
        command: SLASH_COMMAND,
        description: 'Incident status, silences, a test alert, the report',
        usage_hint: 'status | silence <what> <duration> [reason] | silences | unsilence <id> | test <alert text> | report | help',
        should_escape: false,
      }],
    },
    oauth_config: { scopes: { bot: Object.keys(MANIFEST_SCOPES) as BotScope[] } },
    settings: {
      event_subscriptions: { bot_events: [...new Set(Object.values(EVENT_SUBSCRIPTIONS).flatMap((e) => e.subscribe))] },
      interactivity: { is_enabled: true },
      org_deploy_enabled: false,
      socket_mode_enabled: true,
      token_rotation_enabled: false,
    },
  };
}

/** The manifest as pretty JSON (2 spaces) with a trailing newline: what to paste into Slack. */
export function printManifest(options: ManifestOptions = {}): string {
  return `${JSON.stringify(appManifest(options), null, 2)}\n`;
}

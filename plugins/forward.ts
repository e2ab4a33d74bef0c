// forward: a "universal event router": every accepted Slack message of the chosen channels (or only the
// ones a rule matches) becomes an HTTP POST to another system, as generic JSON or as a Sysdig event.
// Delivered through IMS's durable outbox: in order, retried while the receiver is down, never twice.
// Slack scopes: channels:read, groups:read (only when `channels` names channels instead of giving IDs).
import {
  PermanentDeliveryError, tsToMs, definePlugin, fetchFailureReason, httpDeliveryError, pluginOptions, slackErrorCode, slackItems,
  type CompiledRule, type HookContext, type MessageContext, type OutboxDelivery,
} from '../ims.ts';

export interface ForwardOptions {
  /** Where each event is POSTed, e.g. `https://hooks.example.org/ims` or Sysdig's `https://app.sysdigcloud.com/api/v2/events`. */
  url: string;
  /** Sent as `Authorization: Bearer <token>` (required for Sysdig: its API token). */
  token?: string;
  /** `'json'`: `{source, channel, user, text, ts, time, rule, label, head, permalink}`; `'sysdig'`: `{event: {name, description, severity, tags}}`. */
  format: 'json' | 'sysdig';
  /** Only messages from these channels (IDs, or names resolved through Slack). Default: every watched channel. */
  channels?: string[];
  /** Only messages a rule turns into an incident: `true` any rule, or a list of incident labels and/or heads (`'APPS'`, `'[Error]'`). Default: every message. */
  rules?: true | string[];
  /** Plugin name (default `'forward'`): give each extra `forward()` in one config its own name. */
  name?: string;
}

interface Queued { url: string; body: unknown }

const OPTION_KEYS = ['url', 'token', 'format', 'channels', 'rules', 'name'] as const;
const CHANNEL_ID = /^[CGD][A-Z0-9]{6,}$/;

/**
 * Forward accepted Slack messages to another system.
 *
 * Which hook, and why: every accepted message passes `onMessage` exactly once (before IMS matches it),
 * while `onMatch`/`onReverse` fire only for incidents, after their Slack post succeeded. Forwarding from
 * several hooks and de-duplicating by key would keep the FIRST enqueue, i.e. the poorest one (`onMessage`
 * runs first), and a message whose incident post failed would never be forwarded. So this plugin forwards
 * only from `onMessage`, classified by the match IMS made (`ctx.match`: the first matching rule, decided
 * before the hook runs). Each message is therefore ONE outbox item, key
 * `msg:<channel>:<ts>` (a replay or crash recovery never sends it twice), carrying its rule, label and
 * head when a rule matched. A suppression rule means "not an incident": such messages count as
 * non-matching. The outbox group is the destination URL, so events arrive in the order IMS saw them.
 *
 * Formats: `json` posts `{source: 'ims', channel, user, text, ts, time, rule, label, head, permalink}`
 * (`rule`, `label`, `head` are null for messages no rule matched); `sysdig` posts
 * `{event: {name, description, severity, tags}}` with name = the incident label (else 'Slack message'),
 * description = the text, severity 1 for hotline rules, 4 for other incidents, 6 for the rest, and tags
 * `{source: 'ims', channel, rule, label, head}` (rule tags only when a rule matched).
 *
 * Delivery: 2xx is done; 5xx, 408, 429 and network errors are retried with backoff; any other answer
 * (4xx, a redirect) gives the event up with the receiver's answer in the log.
 */
export function forward(options: ForwardOptions) {
  const given = (options ?? {}) as Partial<ForwardOptions>;
  // Messages start with the plugin's name (`forward:`, or the `name` given to an extra forward()).
  const label = typeof given === 'object' && typeof given.name === 'string' && given.name.trim() ? given.name : 'forward';
  const check = pluginOptions<ForwardOptions>(label, given, OPTION_KEYS);
  const opts = check.options;
  const url = typeof opts.url === 'string' ? opts.url.trim() : '';
  if (!url) check.problem('url is required (is the environment variable set?), e.g. forward({ url: "https://hooks.example.org/ims", format: "json" })');
  else {
    try {
      const protocol = new URL(url).protocol;
      if (protocol !== 'http:' && protocol !== 'https:') throw new Error(protocol);
    } catch {
      check.problem(`url '${url}' is not an http(s) URL`);
    }
  }
  const format = opts.format;
  if (format !== 'json' && format !== 'sysdig') check.problem(`format must be 'json' or 'sysdig', found ${JSON.stringify(format)}`);
  const token = opts.token;
  check.expect('token', token === undefined || (typeof token === 'string' && !!token.trim()), 'a non-empty string when given (is the environment variable set?)');
  if (format === 'sysdig' && !token) check.problem("format 'sysdig' needs token: Sysdig's API token (sent as Bearer)");
  const channels = opts.channels;
  if (channels !== undefined && !(Array.isArray(channels) && channels.length && channels.every((c) => typeof c === 'string' && c.trim()))) {
    check.problem(`channels must be a non-empty list of channel IDs or names, found ${JSON.stringify(channels)}`);
  }
  const rules = opts.rules;
  if (rules !== undefined && rules !== true && !(Array.isArray(rules) && rules.length && rules.every((r) => typeof r === 'string' && r.trim()))) {
    check.problem(`rules must be true (any rule) or a non-empty list of incident labels or heads, found ${JSON.stringify(rules)}`);
  }
  const name = opts.name ?? 'forward';
  check.expect('name', typeof name === 'string' && !!name.trim(), 'a non-empty string');
  check.done();

  const wantedIds = new Set((channels ?? []).map((c) => c.trim().replace(/^#/, '')).filter((c) => CHANNEL_ID.test(c)));
  const wantedNames = (channels ?? []).map((c) => c.trim().replace(/^#/, '')).filter((c) => !CHANNEL_ID.test(c));
  let namesResolved = wantedNames.length === 0;
  let resolving: Promise<void> | undefined;

  /** Channel names → IDs, once (retried at the next message when Slack could not be asked). */
  const resolveNames = (ctx: HookContext) => resolving ??= (async () => {
    const byName = new Map<string, string>();
    try {
      for await (const c of slackItems<{ id?: string; name?: string }>(ctx.slack, 'conversations.list', { types: 'public_channel,private_channel', limit: 1000 }, 'channels')) {
        if (c.name && c.id) byName.set(c.name, c.id);
      }
    } catch (error) {
      resolving = undefined;
      ctx.log.warn(`could not resolve channel names (${wantedNames.join(', ')}); only channel IDs are forwarded for now: ${slackErrorCode(error) ?? (error as Error).message}`);
      return;
    }
    for (const wanted of wantedNames) {
      const id = byName.get(wanted);
      if (id) wantedIds.add(id);
      else ctx.log.warn(`channel '${wanted}' is not visible to the bot: nothing from it is forwarded (invite the bot, or write its ID)`);
    }
    namesResolved = true;
  })();

  /** The rule IMS matched this message with: `undefined` when none (or a suppression) matched. */
  const ruleOf = (ctx: MessageContext): CompiledRule | undefined => ctx.decision?.action === 'suppressed' ? undefined : ctx.match?.rule;

  const bodyOf = (ctx: MessageContext, rule: CompiledRule | undefined): unknown => {
    const { message } = ctx;
    const permalink = ctx.permalink(message.channel, message.ts);
    if (format === 'sysdig') {
      const tags: Record<string, string> = { source: 'ims', channel: message.channel };
      if (rule) Object.assign(tags, { rule: String(rule.number), label: rule.incident, head: rule.head });
      return {
        event: {
          name: rule?.incident ?? 'Slack message',
          description: message.text,
          severity: rule ? (rule.hotline ? 1 : 4) : 6,
          tags,
        },
      };
    }
    return {
      source: 'ims', channel: message.channel, user: message.user ?? message.poster, text: message.text, ts: message.ts,
      time: new Date(tsToMs(message.ts)).toISOString(),
      rule: rule?.number ?? null, label: rule?.incident ?? null, head: rule?.head ?? null, permalink,
    };
  };

  const onMessage = async (ctx: MessageContext): Promise<void> => {
    const { message } = ctx;
    if (channels) {
      if (!namesResolved) await resolveNames(ctx);
      if (!wantedIds.has(message.channel)) return;
    }
    const rule = ruleOf(ctx);
    if (rules === true && !rule) return;
    if (Array.isArray(rules) && !(rule && (rules.includes(rule.incident) || rules.includes(rule.head)))) return;
    await ctx.outbox.enqueue({ key: `msg:${message.channel}:${message.ts}`, group: url, payload: { url, body: bodyOf(ctx, rule) } satisfies Queued });
  };

  const deliver = async (delivery: OutboxDelivery, ctx: HookContext): Promise<void> => {
    const queued = delivery.payload as Queued;
    if (queued.url !== url) {
      throw new PermanentDeliveryError(`queued for ${queued.url} but this plugin '${name}' posts to ${url}: not sent (two forward() plugins sharing a name? give each its own name)`);
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST', signal: ctx.signal, redirect: 'manual',
        // The same key on every attempt: a receiver can drop the repeat of a delivery whose answer was lost
        // (the outbox is at-least-once when IMS dies between the receiver's 2xx and recording it).
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Idempotency-Key': `ims:${delivery.key}`, ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(queued.body),
      });
    } catch (error) {
      throw new Error(`${url} unreachable: ${fetchFailureReason(error)}`, { cause: error });
    }
    const text = (await response.text().catch(() => '')).replace(/\s+/g, ' ').trim().slice(0, 300);
    if (response.status >= 200 && response.status < 300) return;
    const what = `${url} answered ${response.status}${text ? ` ${text}` : ''}`;
    // 5xx, 408 and 429 are retried; any other answer (4xx, a redirect) gives the event up.
    throw httpDeliveryError(response.status, response.status >= 300 && response.status < 400 ? `${what} (a redirect to ${response.headers.get('location')}: fix the url)` : what);
  };

  return definePlugin({ name, onMessage, deliver });
}

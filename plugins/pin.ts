// pin: keep every open incident pinned in its incident channel, so the channel's pins are the to-do list.
// Scopes: pins:write. Pins are a Tier 2 method: IMS's per-channel queue absorbs Slack's 429s.
import { definePlugin, ignoringSlackErrors, pluginOptions, type Incident, type HookContext } from '../ims.ts';

export interface PinOptions {
  /** Unpin when the incident is resolved (default true). */
  unpinOnResolve?: boolean;
}

/** Answers that mean "already so": not failures. */
const HARMLESS = ['already_pinned', 'no_pin', 'message_not_found'];

export function pin(options: PinOptions = {}) {
  const check = pluginOptions<PinOptions>('pin()', options, ['unpinOnResolve']);
  check.expect('unpinOnResolve', options.unpinOnResolve === undefined || typeof options.unpinOnResolve === 'boolean', 'true or false');
  check.done();
  const unpinOnResolve = options.unpinOnResolve ?? true;
  const call = async (ctx: HookContext, method: 'add' | 'remove', incident: Incident) => {
    await ignoringSlackErrors(ctx.slack.pins[method]({ channel: incident.incidentChannel, timestamp: incident.incidentTs }), HARMLESS);
  };
  return definePlugin({
    name: 'pin',
    onMatch: (ctx) => call(ctx, 'add', ctx.incident),
    onResolve: (ctx) => (unpinOnResolve ? call(ctx, 'remove', ctx.incident) : undefined),
    onReopen: (ctx) => (unpinOnResolve ? call(ctx, 'add', ctx.incident) : undefined),
  });
}

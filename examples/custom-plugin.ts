// A user's own plugin: reply in each incident's thread with the runbook for its rule, and tell the
// on-call who is paged where to start. Use it from ims.config.ts:
//
//   import { runbooks } from './examples/custom-plugin.ts';
//   plugins: [runbooks({ '[Critical]': 'https://wiki.example.org/runbooks/critical-{host}' })]
//
// Hooks run after IMS has posted the incident, isolated: if the wiki link is wrong or Slack refuses the
// reply, the error is logged with this plugin's name and the alert is unaffected.
import { definePlugin, describeValue, pluginOptions, type MatchContext } from '../ims.ts';

export interface RunbookOptions {
  /** Rule head (e.g. `'[Critical]'`) → runbook URL; `{host}` and other named groups of the rule's regex are filled in. */
  [head: string]: string;
}

export function runbooks(links: RunbookOptions) {
  // Options are checked when the config is built, all at once, the way every plugin does (see ims-plugin-kit.ts).
  const check = pluginOptions<RunbookOptions>('runbooks()', links);
  for (const [head, url] of Object.entries(links)) {
    if (typeof url !== 'string' || !/^https?:\/\//.test(url)) check.problem(`the link for '${head}' must be an http(s) URL, found ${describeValue(url)}`);
  }
  check.done();
  const linkFor = (ctx: MatchContext) => {
    const template = links[ctx.incident.head];
    if (!template) return undefined;
    return template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(ctx.match.groups[name] ?? name));
  };
  return definePlugin({
    name: 'runbooks',
    async onMatch(ctx) {
      const link = linkFor(ctx);
      if (!link) return;
      await ctx.slack.chat.postMessage({
        channel: ctx.incident.incidentChannel,
        thread_ts: ctx.incident.incidentTs,
        text: `:book: Runbook for ${ctx.incident.head}: <${link}|open the runbook>`,
        unfurl_links: false,
      });
      ctx.log.info(`runbook linked for incident #${ctx.incident.id}`);
    },
  });
}

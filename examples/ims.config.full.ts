// A complete IMS configuration using every plugin that ships with IMS. Copy it to ims.config.ts (or pass
// --config examples/ims.config.full.ts) and replace the channel and user IDs with your workspace's.
//
// Secrets come from the environment, never from this file; loading it fails with a clear message when one
// is missing:
//   SLACK_APP_TOKEN, SLACK_BOT_TOKEN   IMS itself (xapp-…, xoxb-…)
//   ARGUS_URL, ARGUS_TOKEN             the argus plugin (Argus's base URL; the token of IMS's source system)
//   SYSDIG_API_TOKEN                   the forward plugin (Sysdig Monitor API token)
import { defineConfig } from '../ims.ts';
import { pin } from '../plugins/pin.ts';
import { warRoom } from '../plugins/war-room.ts';
import { argus } from '../plugins/argus.ts';
import { stats } from '../plugins/stats.ts';
import { timeline } from '../plugins/timeline.ts';
import { forward } from '../plugins/forward.ts';

export default defineConfig({
  timezone: 'Europe/Oslo',

  // Tried in order; the first rule that matches wins. `(?<host>…)` groups become Argus tags (host=web-03).
  rules: [
    // Nightly backup noise between 01:00 and 04:59 is not an incident.
    { match: /backup/i, when: / 0[1-4]:/, suppress: true, head: '[Backup]', incident: 'INFRA' },
    { match: /PROBLEM (?:Service Alert: (?<host>[\w.-]+)\/\S+ is CRITICAL|Host Alert: (?<node>[\w.-]+) is DOWN)/, head: '[Critical]', incident: 'INFRA', hotline: 'OnCallInfra' },
    { match: /\[FIRING:\d+\] (?<alertname>\w+) .*critical|Triggered: \[P1\]/, head: '[Critical]', incident: 'APPS', hotline: 'OnCallApps' },
    { match: '(?i)error|fatal|exception', head: '[Error]', incident: 'APPS' },
    { match: /WARNING|Warn:/, head: '[Warn]', incident: 'INFRA' },
  ],
  incidents: {
    INFRA: { channel: 'C0INCINFRA' },
    APPS: { channel: 'C0INCAPPS' },
  },
  resolvedReactions: ['white_check_mark', 'heavy_check_mark'],
  report: { channel: 'C0REPORT01', schedule: '0 9 * * 1-5', window: '7d' },
  posters: ['B0NAGIOS1', 'B0PROMAM1', 'B0DATADOG'],
  hotlines: {
    OnCallInfra: ['U0ONCALL1', 'here'],
    OnCallApps: ['U0ONCALL2'],
  },
  reminders: [{ channel: 'C0REPORT01', hours: ['0[89]', '1[0-7]'] }],

  // Plugins run after IMS's own work, each isolated (a failing plugin never stops an alert). The ones that
  // call other systems (war-room, timeline, argus, forward) go through IMS's durable outbox: retried with
  // backoff while the other side is down, in order, never twice, across restarts.
  plugins: [
    // Keep every open incident pinned in its channel: the pins are the to-do list. Scope: pins:write.
    pin(),

    // A channel per paging incident, with the on-call invited; archived 30 minutes after it is resolved.
    // Scopes: channels:manage, groups:write, channels:read, groups:read, channels:join, chat:write,
    // pins:write, users:read, channels:history, groups:history.
    warRoom({
      rules: 'hotline',
      name: 'inc-{id}-{slug}',
      private: false,
      invite: ['U0INCMGR1'],
      topic: '{head} #{id} · {text} · alert: {link}',
      archiveOnResolve: true,
      archiveAfter: '30m',
    }),

    // Every incident as a stateful Argus incident (END when resolved, RES when reopened) plus a heartbeat.
    // Hotline rules are level 2 (High), the others level 3; every incident is tagged site=oslo.
    // ARGUS_URL and ARGUS_TOKEN are read from the environment.
    argus({ level: 3, tags: { site: 'oslo', team: 'platform' } }),

    // MTTA / MTTR per head over the last 7 days, as a section of every report.
    stats({ window: '7d' }),

    // On resolution, a Markdown post-mortem timeline in the incident thread, also written to ./postmortems.
    // Scopes: files:write, channels:history, groups:history, reactions:read, users:read, channels:read.
    timeline({ dir: './postmortems' }),

    // Every incident (any rule) as a Sysdig Monitor event, severity 1 for hotline rules and 4 for the rest.
    forward({
      url: 'https://app.sysdigcloud.com/api/v2/events',
      token: process.env.SYSDIG_API_TOKEN,
      format: 'sysdig',
      rules: true,
    }),
  ],
});

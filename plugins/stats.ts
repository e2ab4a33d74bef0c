// stats: mean and p90 time to acknowledge (MTTA) and to resolve (MTTR), per label and overall, added to every report.
// Scopes: none beyond IMS's own — it reads only IMS's durable state (incidents and their recorded events).
import {
  acknowledgement, definePlugin, escapeSlack, formatDuration, parseDuration, pluginOptions, timeToResolve, type Duration, type Incident, type IncidentEvent, type ReportContext,
} from '../ims.ts';

/** The plugin toolkit's (`ims.ts`), still exported here for code that imported them from this file. */
export { acknowledgement, formatDuration, isHuman } from '../ims.ts';

export interface StatsOptions {
  /**
   * How far back incidents are counted (by when they were opened): a duration such as `'7d'`, `'24h'` or
   * milliseconds. Default: the report's own window (`report.window`, 7 days unless configured).
   */
  window?: Duration;
  /**
   * What a line of the section groups by: the rule's head as posted (`'head'`, e.g. `[Critical]`, the
   * default) or the incident label, i.e. the key of `incidents` (`'label'`, e.g. `INFRA`).
   */
  groupBy?: 'head' | 'label';
}

const OPTIONS = ['window', 'groupBy'] as const;

/**
 * A report section with response times: for each label (rule head by default) and overall, the number of
 * incidents opened in the window, MTTA and MTTR as mean and p90, and how many are still open for how long.
 *
 * - **Acknowledged** = the first human acknowledgement (`acknowledgement` in the toolkit): a reaction or thread
 *   reply on the incident post (or its original alert) by a person, i.e. anyone but IMS's own bot user, other
 *   bots (`B…`) and the integration itself, or an acknowledgement a person made in the monitoring tool (its
 *   ACKNOWLEDGEMENT notice). When nothing came before it, a person's resolution counts as the
 *   acknowledgement (resolving is the strongest sign someone looked). Repeats and the integration's recovery
 *   are not acknowledgements: an incident its integration resolved that nobody touched has no MTTA.
 *   Open incidents that were acknowledged count toward MTTA; open, unacknowledged ones do not.
 * - **Resolved** = from the alert to its integration's recovery, on the alert's own clock, when the recovery
 *   resolved it; else `resolvedAt - createdAt` (a person's resolution; `timeToResolve` in the toolkit). The
 *   latest resolution of an incident reopened and resolved again counts. Incidents still open never count
 *   toward MTTR: they make the "N open for …" figure instead (the age of the oldest open one at report time).
 * - **p90** is the nearest-rank 90th percentile: the ceil(0.9·n)-th smallest value (with fewer than ten
 *   values, the slowest one).
 *
 * A line reads `[Critical] 3 incidents · MTTA mean 4m p90 9m · MTTR mean 1h 2m p90 3h · 1 open for 5h`.
 */
export function stats(options: StatsOptions = {}) {
  const check = pluginOptions<StatsOptions>('stats()', options, OPTIONS);
  const windowMs = options.window === undefined ? undefined : parseDuration(options.window);
  check.expect('window', options.window === undefined || (windowMs !== undefined && windowMs > 0), `a duration such as '7d', '24h' or milliseconds`);
  const groupBy = options.groupBy ?? 'head';
  check.expect('groupBy', groupBy === 'head' || groupBy === 'label', `'head' or 'label'`);
  check.done();

  return definePlugin({
    name: 'stats',
    async onReport(ctx: ReportContext) {
      const now = ctx.report.generatedAt;
      const since = windowMs === undefined ? ctx.report.windowStart : now - windowMs;
      const incidents = await ctx.incidents.list({ since });
      const rows = await Promise.all(incidents.map(async (incident) => measure(incident, await ctx.incidents.events(incident.id), ctx.botUserId)));
      const groups = new Map<string, Measured[]>();
      for (const row of rows) {
        const key = groupBy === 'head' ? row.incident.head : row.incident.label;
        groups.set(key, [...(groups.get(key) ?? []), row]);
      }
      const ordered = [...groups].sort(([a, x], [b, y]) => y.length - x.length || a.localeCompare(b));
      const lines = ordered.map(([key, group]) => statsLine(escapeSlack(key), group, now));
      if (!rows.length) lines.push('No incidents in this window.');
      else if (groups.size > 1) lines.push(statsLine('All', rows, now));
      ctx.addSection({ title: `Response times (last ${formatDuration(now - since)})`, lines });
    },
  });
}

interface Measured {
  incident: Incident;
  /** Milliseconds from opening to the first acknowledgement, when there was one. */
  tta?: number;
  /** Milliseconds from opening (the alert, for a recovery) to resolution, when resolved. */
  ttr?: number;
}

function measure(incident: Incident, events: IncidentEvent[], botUserId: string): Measured {
  const ack = acknowledgement(incident, events, botUserId);
  return { incident, tta: ack && Math.max(0, ack.at - incident.createdAt), ttr: timeToResolve(incident, events) };
}

function statsLine(name: string, rows: Measured[], now: number): string {
  const tta = rows.flatMap((r) => (r.tta === undefined ? [] : [r.tta]));
  const ttr = rows.flatMap((r) => (r.ttr === undefined ? [] : [r.ttr]));
  const open = rows.filter((r) => r.incident.resolvedAt === undefined);
  const figure = (label: string, values: number[]) => (values.length ? `${label} mean ${formatDuration(mean(values))} p90 ${formatDuration(p90(values))}` : `${label} —`);
  const parts = [`${name} ${rows.length} incident${rows.length === 1 ? '' : 's'}`, figure('MTTA', tta), figure('MTTR', ttr)];
  if (open.length) {
    const oldest = Math.max(...open.map((r) => now - r.incident.createdAt));
    parts.push(open.length === 1 ? `1 open for ${formatDuration(oldest)}` : `${open.length} open for up to ${formatDuration(oldest)}`);
  }
  return parts.join(' · ');
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Nearest-rank 90th percentile. */
function p90(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(0.9 * sorted.length) - 1)];
}

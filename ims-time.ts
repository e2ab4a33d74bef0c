/**
 * Time as IMS reads it: Slack timestamps, spans of time (`'15m'`), and calendar parts and clocks in a zone
 * (what a rule's `when` is searched in, how reports print dates). The cron package is loaded on first use.
 */
import { createRequire } from 'node:module';
import type * as CronModule from 'cron';

/** Slack `ts` (`"1763712000.000100"`) to epoch milliseconds. */
export function tsToMs(ts: string): number {
  const ms = Number.parseFloat(ts) * 1000;
  return Number.isFinite(ms) ? ms : Date.now();
}

export const SECOND = 1000;
export const HOUR = 3600 * SECOND;
export const DAY = 24 * HOUR;
const UNIT_MS: Record<string, number> = { ms: 1, s: SECOND, m: 60 * SECOND, h: HOUR, d: DAY };

export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  const parsed = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value) : null;
  return parsed ? Number(parsed[1]) * UNIT_MS[parsed[2]] : undefined;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const zoneFormatters = new Map<string, Intl.DateTimeFormat>();
/** Zone → quarter-hour bucket → offset. Live alerts come in time order, a replay jumps around: keep many. */
const zoneOffsets = new Map<string, Map<number, number>>();
const OFFSET_BUCKET_MS = 15 * 60_000;

/**
 * The zone's UTC offset at an instant. Intl is slow (~8 µs a call), and offsets only change on quarter-hour
 * boundaries, so it is asked once per zone and quarter hour.
 */
function zoneOffsetMs(epochMs: number, timeZone?: string): number {
  const key = timeZone ?? '';
  const bucket = Math.floor(epochMs / OFFSET_BUCKET_MS);
  let buckets = zoneOffsets.get(key);
  if (!buckets) zoneOffsets.set(key, (buckets = new Map()));
  const cached = buckets.get(bucket);
  if (cached !== undefined) return cached;
  if (buckets.size >= 10_000) buckets.clear();
  let format = zoneFormatters.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    zoneFormatters.set(key, format);
  }
  const start = bucket * OFFSET_BUCKET_MS;
  const p: Record<string, number> = {};
  for (const part of format.formatToParts(new Date(start))) p[part.type] = Number(part.value);
  const offset = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - start;
  buckets.set(bucket, offset);
  return offset;
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** Calendar parts of an instant in a zone (default: the process's), two-digit padded. */
export function dateParts(epochMs: number, timeZone?: string) {
  const local = new Date(epochMs + zoneOffsetMs(epochMs, timeZone));
  return {
    year: String(local.getUTCFullYear()), month: pad2(local.getUTCMonth() + 1), day: pad2(local.getUTCDate()),
    hour: pad2(local.getUTCHours()), minute: pad2(local.getUTCMinutes()), second: pad2(local.getUTCSeconds()),
    weekday: WEEKDAYS[local.getUTCDay()],
  };
}

/** `YYYY/MM/DD HH:mm:ss Ddd` in `timeZone` (default: the process's): what a rule's `when` is searched in. */
export function ruleClock(epochMs: number, timeZone?: string): string {
  const p = dateParts(epochMs, timeZone);
  return `${p.year}/${p.month}/${p.day} ${p.hour}:${p.minute}:${p.second} ${p.weekday}`;
}

/** `YYYY/MM/DD HH:mm:ss` as the legacy report printed dates. */
export function formatDate(epochMs: number, timeZone?: string): string {
  return ruleClock(epochMs, timeZone).slice(0, 19);
}

/** `MM/DD HH:mm` in `timeZone`: when a silence ends, when a report was posted (short, for Slack lines). */
export function formatShortDate(epochMs: number, timeZone?: string): string {
  return formatDate(epochMs, timeZone).slice(5, 16);
}

/** The cron package, loaded on first use: most setups have no cron schedule, and it brings luxon along (~3 MB). */
export function cron(): typeof CronModule {
  return createRequire(import.meta.url)('cron') as typeof CronModule;
}
export function formatAge(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}


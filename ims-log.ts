/**
 * IMS's log: leveled lines on stderr (and a file), for people (`text`) or log shippers (`json`), with tokens
 * redacted and control characters made visible; and how a refusal to start is written where the user reads logs.
 */
import { appendFileSync } from 'node:fs';
import type { CliOptions, Logger } from './ims.ts';
import { printable } from './ims-config-errors.ts';


const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;
const TOKEN_PATTERN = /\b(xox[a-z]|xapp)-[A-Za-z0-9-]+/g;

/** How log lines are written: `text` for people, `json` (one object per line) for log shippers. */
export type LogFormat = 'text' | 'json';

/**
 * A leveled logger writing to stderr (and a file), tokens redacted: `time LEVEL [tag] message key=value`,
 * or with `format: 'json'` one object per line, `{"time","level","tag"?,"message","fields"?}`.
 * A log file that cannot be written at creation throws (start-up stops with that message); one that fails
 * later is reported once on stderr and retried, since a full disk must not stop alerts.
 */
/**
 * A logger writing text lines (or JSON with `format: 'json'`) to stderr, and to `file` when given. `instance` names
 * this IMS in every line (`instance=ims-a`, or `"instance"` in JSON) when several run side by side.
 */
export function createLogger(options: { level?: LogLevel; file?: string; tag?: string; write?: (line: string) => void; secrets?: string[]; format?: LogFormat; instance?: string } = {}): Logger & { child(tag: string): Logger } {
  const threshold = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  // A secret becomes its first five characters; in a JSON line it appears (and is replaced) JSON-escaped.
  const escaped = (text: string) => JSON.stringify(text).slice(1, -1);
  const secrets = (options.secrets ?? []).filter((s) => s.length >= 8).flatMap((s) => [[s, `${s.slice(0, 5)}…`], [escaped(s), escaped(`${s.slice(0, 5)}…`)]]);
  const redact = (text: string) => {
    for (const [secret, shown] of secrets) if (text.includes(secret)) text = text.split(secret).join(shown);
    return text.includes('xox') || text.includes('xapp-') ? text.replace(TOKEN_PATTERN, (token) => `${token.slice(0, 5)}…`) : text;
  };
  const json = (value: unknown) => { try { return JSON.stringify(value) ?? String(value); } catch { return String(value); } };
  const format = (time: string, level: LogLevel, tag: string | undefined, message: string, fields: [string, unknown][]) => {
    if (options.format === 'json') {
      return json({ time, level, ...(options.instance ? { instance: options.instance } : {}), ...(tag ? { tag } : {}), message, ...(fields.length ? { fields: Object.fromEntries(fields) } : {}) });
    }
    const extra = fields.map(([k, v]) => ` ${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : json(v)}`).join('');
    const instance = options.instance ? ` instance=${options.instance}` : '';
    return printable(`${time} ${level.toUpperCase().padEnd(5)} ${tag ? `[${tag}] ` : ''}${message}${extra}${instance}`);
  };
  let fileFailing = false;
  const append = (file: string, text: string) => {
    try {
      appendFileSync(file, text);
      if (fileFailing) write(redact(format(new Date().toISOString(), 'info', options.tag, `log file '${file}' is written again`, [])));
      fileFailing = false;
    } catch (error) {
      if (!fileFailing) write(redact(format(new Date().toISOString(), 'error', options.tag, `cannot write the log file '${file}' (${(error as Error).message}); logging to stderr only until it works again`, [])));
      fileFailing = true;
    }
  };
  if (options.file !== undefined) {
    const file = options.file || legacyLogFile(new Date());
    try {
      appendFileSync(file, '');
    } catch (error) {
      throw new Error(`cannot write the log file '${file}' (${(error as Error).message}): give --log a writable file, or leave --log out`);
    }
  }
  const emit = (tag: string | undefined) => (level: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < threshold) return;
    const line = redact(format(new Date().toISOString(), level, tag, message, Object.entries(fields ?? {}).filter(([, v]) => v !== undefined)));
    write(line);
    if (options.file !== undefined) append(options.file || legacyLogFile(new Date()), line + '\n');
  };
  const make = (tag?: string) => {
    const at = emit(tag);
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  };
  return { ...make(options.tag), child: (tag: string) => make(options.tag ? `${options.tag}:${tag}` : tag) };
}

/** The legacy default log file, one per local hour: `inco_YYYY-MM-DD_HH.log`. */
function legacyLogFile(now: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `inco_${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}_${pad(now.getHours())}.log`;
}

/** The reason a Slack call (or anything) failed, as one phrase: Slack's error code when it answered one. */
export function errorText(error: unknown): string {
  const data = (error as { data?: { error?: string } }).data;
  return data?.error ?? (error instanceof Error ? error.message : String(error));
}

/** `Name: message (at file:line)`, on one line. */
export function describeError(reason: unknown): string {
  if (!(reason instanceof Error)) return typeof reason === 'string' ? reason : JSON.stringify(reason) ?? String(reason);
  const at = reason.stack?.split('\n').find((line) => /^\s+at /.test(line))?.trim();
  return `${reason.name}: ${errorText(reason)}${at ? ` (${at})` : ''}`;
}

/**
 * Why IMS cannot start (a configuration refused, a token missing, a log or state file it cannot open), written
 * where the user reads IMS's logs: with `--log` or `--log-format json` through the logger (the file, one JSON
 * object), else as plain lines on stderr.
 */
export function reportRefusal(message: string, options: Pick<CliOptions, 'log' | 'logFormat'>, io: { err: (s: string) => void }): void {
  if (options.log === undefined && options.logFormat !== 'json') { io.err(message); return; }
  try {
    createLogger({ file: options.log, format: options.logFormat }).error(message);
  } catch {
    // The log file itself is what failed: JSON lines still go to stderr.
    if (options.logFormat === 'json') createLogger({ format: 'json' }).error(message);
    else io.err(message);
  }
}

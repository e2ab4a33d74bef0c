/**
 * The command line: modern `--kebab-case` flags with the legacy Go spellings (`-onlyReport`, `-x=false`) as
 * aliases, parsed into `CliOptions`, and the help text made from the same table.
 */
import { didYouMean } from './ims-plugin-kit.ts';
import { cron } from './ims-time.ts';

/** This IMS's version (`--version`, the help text). */
export const VERSION = '2.0.0';

/** Parsed command line. Modern `--kebab-case` flags; the legacy Go spellings (`-onlyReport`, `-x=false`) are aliases. */
export interface CliOptions {
  config?: string;
  test?: string;
  reverse: boolean;
  verbose: boolean;
  debug: boolean;
  /** Log file, or undefined for none. */
  log?: string;
  /** Log lines as text (default) or one JSON object per line. */
  logFormat?: 'text' | 'json';
  loopHours?: number;
  schedule?: string;
  onlyReport: boolean;
  auto: boolean;
  reacji: boolean;
  reminderSeconds?: number;
  clearReminder: boolean;
  noIncident: boolean;
  noReminder: boolean;
  idLookup: boolean;
  printConfig: boolean;
  /** Print the Slack app manifest (JSON) and exit. */
  printManifest: boolean;
  /** Where the operations endpoint listens (`/healthz`, `/metrics`). */
  http?: string;
  /** Copy the state file into PostgreSQL: the URL given, or `''` for `DATABASE_URL`. */
  migrateState?: string;
  replay?: string;
  help: boolean;
  version: boolean;
}

type FlagKind = 'string' | 'number' | 'boolean' | 'negated' | 'optional-string';
interface FlagSpec { name: string; legacy?: string; kind: FlagKind; key: keyof CliOptions; arg?: string; help: string }

const FLAGS: FlagSpec[] = [
  { name: 'config', kind: 'string', key: 'config', arg: 'PATH', help: 'config file: ims.config.ts|js|mjs, .imsrc*, or a legacy IMS.ini (default: searched in the current folder)' },
  { name: 'test', kind: 'string', key: 'test', arg: 'TEXT', help: 'check one message against the rules, print what IMS would do, exit (no Slack tokens needed)' },
  { name: 'replay', kind: 'string', key: 'replay', arg: 'FILE', help: 'run the rules over recorded messages (JSON lines, or a Slack export folder) and print what would happen' },
  { name: 'print-config', kind: 'boolean', key: 'printConfig', help: 'print the effective config as a ready-to-save ims.config.ts (the IMS.ini migration path), exit' },
  { name: 'print-manifest', kind: 'boolean', key: 'printManifest', help: 'print the Slack app manifest (JSON: scopes, events, /ims, interactivity, Socket Mode) to paste at api.slack.com/apps, exit' },
  { name: 'migrate-state', kind: 'optional-string', key: 'migrateState', arg: '[URL]', help: "copy the state file (ims.db) into PostgreSQL at URL (default: DATABASE_URL), keeping what is there; safe to run again, exit" },
  { name: 'reverse', kind: 'boolean', key: 'reverse', help: 'reverse mode: repost messages that match NO rule to the DEFAULT channel' },
  { name: 'reacji', kind: 'boolean', key: 'reacji', help: 'Reacji Channeler mode: react with [Reacji] instead of reposting posts of [ReacjiID] bots' },
  { name: 'only-report', legacy: 'onlyReport', kind: 'boolean', key: 'onlyReport', help: 'post one report and exit (0, or 1 if posting failed): for cron/systemd timers' },
  { name: 'schedule', kind: 'string', key: 'schedule', arg: 'CRON', help: "report schedule, e.g. '0 9 * * 1-5' (in the config's timezone)" },
  { name: 'loop', kind: 'number', key: 'loopHours', arg: 'HOURS', help: 'legacy schedule: a report every HOURS hours, the first at start-up (default 24)' },
  { name: 'verbose', kind: 'boolean', key: 'verbose', help: 'reports also list resolved incidents and who resolved them' },
  { name: 'no-incident', legacy: 'noincident', kind: 'boolean', key: 'noIncident', help: 'post no scheduled reports' },
  { name: 'reminder', kind: 'number', key: 'reminderSeconds', arg: 'SECONDS', help: 'how often reminder hours are checked (default 30)' },
  { name: 'no-reminder', legacy: 'noreminder', kind: 'boolean', key: 'noReminder', help: 'no reminders' },
  { name: 'clear-reminder', legacy: 'clearReminder', kind: 'boolean', key: 'clearReminder', help: "delete IMS's own messages in reminder channels, exit" },
  { name: 'no-auto', legacy: 'auto', kind: 'negated', key: 'auto', help: 'do not reload the config when it changes' },
  { name: 'no-id-lookup', legacy: 'idlookup', kind: 'negated', key: 'idLookup', help: 'do not resolve channel and user names to IDs' },
  { name: 'http', kind: 'string', key: 'http', arg: 'HOST:PORT', help: 'serve /healthz and /metrics (Prometheus) there, e.g. 127.0.0.1:9464 (off by default; or http in the config)' },
  { name: 'debug', kind: 'boolean', key: 'debug', help: 'debug log lines' },
  { name: 'log', kind: 'optional-string', key: 'log', arg: '[FILE]', help: 'also append log lines to FILE (default inco_YYYY-MM-DD_HH.log, as IMS did); an unwritable FILE stops start-up' },
  { name: 'log-format', kind: 'string', key: 'logFormat', arg: 'text|json', help: 'log lines as text (default) or one JSON object per line (time, level, tag, message, fields) for log shippers' },
  { name: 'help', kind: 'boolean', key: 'help', help: 'this help' },
  { name: 'version', kind: 'boolean', key: 'version', help: 'print the version' },
];

/** A command line IMS cannot run; exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Read the command line; throws `UsageError` for one IMS cannot run. */
export function parseArgs(argv: string[]): CliOptions {
  const options: CliOptions = {
    reverse: false, verbose: false, debug: false, onlyReport: false, auto: true, reacji: false, clearReminder: false,
    noIncident: false, noReminder: false, idLookup: true, printConfig: false, printManifest: false, help: false, version: false,
  };
  const set = options as unknown as Record<string, unknown>;
  const byName = new Map<string, { spec: FlagSpec; negate: boolean }>();
  for (const spec of FLAGS) {
    byName.set(spec.name, { spec, negate: spec.kind === 'negated' });
    if (spec.legacy) byName.set(spec.legacy, { spec, negate: false });
    if (spec.kind === 'negated') byName.set(spec.name.replace(/^no-/, ''), { spec, negate: false });
  }
  byName.set('h', byName.get('help')!);
  byName.set('v', byName.get('version')!);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const flag = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/s.exec(arg);
    if (!flag) throw new UsageError(`unexpected argument '${arg}'; flags start with '--' (values with spaces need quotes, e.g. --test "disk full")`);
    const [, name, inline] = flag;
    const found = byName.get(name);
    if (!found) throw new UsageError(`unknown option '${arg}'${didYouMean(name, [...byName.keys()])}; run 'npx tsx ims.ts --help' for the list`);
    const { spec, negate } = found;
    const takeValue = () => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined) throw new UsageError(`option '--${spec.name}' needs a value (${spec.arg})`);
      i++;
      return next;
    };
    if (spec.kind === 'boolean' || spec.kind === 'negated') {
      const value = inline === undefined ? true : parseBool(inline, arg);
      set[spec.key] = negate ? !value : value;
    } else if (spec.kind === 'optional-string') {
      const next = argv[i + 1];
      let value = inline ?? (next !== undefined && !next.startsWith('-') ? (i++, next) : 'true');
      if (/^(false|0)$/i.test(value)) { set[spec.key] = undefined; continue; }
      if (/^(true|1)$/i.test(value)) value = '';
      set[spec.key] = value;
    } else if (spec.kind === 'number') {
      const raw = takeValue();
      const value = Number(raw);
      if (!Number.isFinite(value) || value <= 0) throw new UsageError(`option '--${spec.name}' expects a positive number (${spec.arg}), found '${raw}'`);
      set[spec.key] = value;
    } else {
      const value = takeValue();
      if (value === '' && spec.name !== 'test') throw new UsageError(`option '--${spec.name}' needs a value (${spec.arg}), found an empty one`);
      set[spec.key] = value;
    }
  }
  if (options.schedule !== undefined && cronProblem(options.schedule)) {
    throw new UsageError(`option '--schedule' expects a cron expression such as '0 9 * * *', found '${options.schedule}': ${cronProblem(options.schedule)}`);
  }
  if (options.schedule !== undefined && options.loopHours !== undefined) throw new UsageError(`use either --schedule or --loop, not both`);
  if (options.test !== undefined && options.replay !== undefined) throw new UsageError(`use either --test or --replay, not both`);
  if (options.logFormat !== undefined && options.logFormat !== 'text' && options.logFormat !== 'json') {
    throw new UsageError(`option '--log-format' expects text or json, found '${options.logFormat}'`);
  }
  return options;
}

function parseBool(value: string, arg: string): boolean {
  if (/^(true|1|t|yes)$/i.test(value)) return true;
  if (/^(false|0|f|no)$/i.test(value)) return false;
  throw new UsageError(`option '${arg}' expects true or false`);
}

/** `--help`: every flag, with its legacy spelling. */
export function helpText(): string {
  const rows = FLAGS.map((f) => [`--${f.name}${f.arg ? ` ${f.arg}` : ''}`, f.help + (f.legacy ? ` (legacy -${f.legacy}${f.kind === 'negated' ? '=false' : ''})` : '')]);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return [
    `IMS ${VERSION}: incident management for Slack`,
    '',
    'Usage: npx tsx ims.ts [options]',
    '',
    'Runs the bot (Socket Mode) with SLACK_APP_TOKEN (xapp-…) and SLACK_BOT_TOKEN (xoxb-…) from the environment;',
    'SLACK_API_URL overrides the API base. --test, --replay, --print-config and --print-manifest need no tokens.',
    '',
    'Options:',
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`),
    '',
    "Legacy Go spellings work too: -config=IMS.ini, -onlyReport, -reverse=true, -auto=false, -idlookup=false.",
  ].join('\n');
}


/** Why a cron expression is refused, or undefined when it is valid. */
export function cronProblem(expression: unknown): string | undefined {
  if (typeof expression !== 'string') return 'not a string';
  const result = cron().validateCronExpression(expression);
  return result.valid ? undefined : (result.error?.message ?? 'invalid');
}

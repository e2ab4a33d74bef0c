/**
 * IMS.ini compatibility: the legacy tool's configuration format, read into a `Config`. Fields are split by
 * TAB; only the ten known `[Section]` lines are headers (so a rule like `[Ee]rror` stays a rule); every
 * problem is reported as `IMS.ini:LINE: …`, all at once. Each object read is remembered with its line, so
 * the shared validation in `ims.ts` can point into the file even after `...loadIni()` was spread.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { ConfigError, didYouMean, validateConfig, type Config, type ReportConfig, type Rule } from './ims.ts';

/**
 * Where each object of a config read from IMS.ini came from, so validation can say `IMS.ini:12:`. Keyed by
 * identity: a config that spreads `loadIni()` and adds its own rules still blames the right file.
 */
export const SOURCE_LINES = Symbol.for('ims.sourceLines');
/** The folder of the config module being imported right now (set by the config loader). */
export const CONFIG_DIR = Symbol.for('ims.configDir');
export interface SourceLines { file: string; lines: WeakMap<object, number> }
export type Located = { [SOURCE_LINES]?: SourceLines };

const INI_SECTIONS = ['Rules', 'Incidents', 'Label', 'Report', 'PostID', 'Hotline', 'Reacji', 'Reminder', 'ReacjiID', 'MgmtReport'] as const;
type IniSection = (typeof INI_SECTIONS)[number];
const NO_HOTLINE = new Set(['', 'no', 'none', '-', 'off', 'false']);

/**
 * Read a legacy `IMS.ini` into a `Config`. Every problem is reported as `IMS.ini:LINE: …` and the file is
 * refused (throws `ConfigError`). Use it from `ims.config.ts` to keep the file:
 * `defineConfig({ ...loadIni('./IMS.ini'), plugins: [pin()] })`.
 */
export function loadIni(file: string | URL, options: { reverse?: boolean } = {}): Config {
  if (file instanceof URL) file = fileURLToPath(file);
  // Inside an ims.config.ts being loaded, a relative path means beside that file, not the working directory.
  const configDir = (globalThis as { [CONFIG_DIR]?: string })[CONFIG_DIR];
  if (!path.isAbsolute(file) && configDir) file = path.resolve(configDir, file);
  let body: string;
  try {
    body = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`cannot read the file (${(error as NodeJS.ErrnoException).code ?? error}); check the path or pass --config PATH`], file);
  }
  const { config, problems } = parseIni(body, file);
  const all = [...problems, ...validateConfig(config, { reverse: options.reverse }).problems];
  if (all.length) throw new ConfigError(all, file);
  return config;
}

/** Parse IMS.ini text. Exported for tests; `loadIni` is the public entry. */
export function parseIni(body: string, file = 'IMS.ini'): { config: Config; problems: string[] } {
  const problems: string[] = [];
  const lines = new WeakMap<object, number>();
  const located = <T extends object>(value: T, line: number): T => { lines.set(value, line); return value; };
  const at = (line: number, message: string) => problems.push(`${file}:${line}: ${message}`);
  const bodies = new Map<IniSection, { line: number; text: string }[]>();
  const headerLine = new Map<IniSection, number>();
  let section: IniSection | undefined;

  body.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/).forEach((rawLine, index) => {
    const line = index + 1;
    const text = rawLine.trimStart().replace(/ +$/, '');
    if (text.trim() === '' || text.startsWith('#') || text.startsWith(';')) return;
    const header = /^\[([A-Za-z]+)\]$/.exec(text);
    if (header && (INI_SECTIONS as readonly string[]).includes(header[1])) {
      section = header[1] as IniSection;
      if (!headerLine.has(section)) headerLine.set(section, line);
      return;
    }
    if (header && section !== 'Rules') {
      // Alone on its line outside [Rules], it was meant as a header, not a value (in [Rules] it is a malformed rule).
      at(line, `'${text}' is not a known section${didYouMean(header[1], INI_SECTIONS).replace(/'(\w+)'/, '[$1]')}; the sections are ${INI_SECTIONS.map((s) => `[${s}]`).join(', ')}`);
      return;
    }
    if (!section) {
      at(line, `'${text}' is outside any section; expected a section header first, one of ${INI_SECTIONS.map((s) => `[${s}]`).join(', ')}`);
      return;
    }
    if (!bodies.has(section)) bodies.set(section, []);
    bodies.get(section)!.push({ line, text });
  });
  const sectionLines = (name: IniSection) => bodies.get(name) ?? [];
  const fields = (text: string) => text.split('\t');
  // A trailing TAB leaves an empty last field (e.g. no HOTLINE): keep it up to the expected count, drop the rest.
  const fieldsOf = (text: string, expected: number) => {
    const parts = fields(text);
    while (parts.length > expected && parts.at(-1) === '') parts.pop();
    return parts;
  };
  const single = (name: IniSection) => sectionLines(name).at(-1);
  const list = (name: IniSection) => sectionLines(name).flatMap(({ text }) => fields(text).filter(Boolean));

  const config: Config & Located = { rules: [], incidents: {} };

  for (const { line, text } of sectionLines('Hotline')) {
    const [label, ...members] = fields(text).filter(Boolean);
    if (!members.length) { at(line, `[Hotline] expected 'LABEL<TAB>member<TAB>member…', found only '${text}'`); continue; }
    const earlier = config.hotlines?.[label];
    if (earlier) at(line, `[Hotline] label '${label}' is defined twice (first on line ${lines.get(earlier)})`);
    (config.hotlines ??= located<Record<string, string[]>>({}, line))[label] = located(members, line);
  }

  for (const { line, text } of sectionLines('Incidents')) {
    const parts = fieldsOf(text, 3);
    if (parts.length !== 3 || parts.some((p) => p === '')) {
      at(line, `[Incidents] expected 3 TAB-separated fields (LABEL, CHANNEL, LIMIT — or DEFAULT, CHANNEL, HEADER), found ${parts.filter(Boolean).length}: '${text}'${text.includes('\t') ? '' : ' (are the fields separated by spaces instead of TABs?)'}`);
      continue;
    }
    const [label, channel, third] = parts;
    if (label === 'DEFAULT') {
      if (config.reverseDefault) at(line, `[Incidents] DEFAULT is defined twice (first on line ${lines.get(config.reverseDefault)})`);
      config.reverseDefault = located({ channel, header: third }, line);
      continue;
    }
    if (!/^\d+$/.test(third) || Number(third) < 1) { at(line, `[Incidents] LIMIT must be a positive whole number, found '${third}'`); continue; }
    if (config.incidents[label]) at(line, `[Incidents] label '${label}' is defined twice (first on line ${lines.get(config.incidents[label])})`);
    config.incidents[label] = located({ channel, limit: Number(third) }, line);
  }

  for (const { line, text } of sectionLines('Rules')) {
    const parts = fieldsOf(text, 5);
    if (parts.length !== 5) {
      at(line, `[Rules] expected 5 TAB-separated fields (MESSAGE_REGEX, DATE_REGEX, HEAD, INCIDENT_LABEL, HOTLINE), found ${parts.length}: '${text}'${text.includes('\t') ? '' : ' (are the fields separated by spaces instead of TABs?)'}`);
      continue;
    }
    const [match, when, head, incident, hotline] = parts;
    const rule: Rule = located({ match, when, head, incident }, line);
    if (hotline && !NO_HOTLINE.has(hotline.toLowerCase()) && config.hotlines?.[hotline]) rule.hotline = hotline;
    config.rules.push(rule);
  }

  const label = single('Label');
  if (label) config.resolvedReactions = located([label.text.replace(/^:|:$/g, '')], label.line);
  const report = single('Report');
  if (report) config.report = located({ channel: report.text }, report.line);
  const posters = list('PostID');
  if (posters.length) config.posters = located(posters, sectionLines('PostID')[0].line);
  const reacji = single('Reacji');
  const reacjiBots = list('ReacjiID');
  if (reacji || reacjiBots.length) {
    config.reacji = located({ reaction: reacji?.text.replace(/^:|:$/g, '') ?? '', bots: reacjiBots }, (reacji ?? sectionLines('ReacjiID')[0]).line);
  }
  const mgmt = list('MgmtReport');
  if (mgmt.length) (config.report ??= located<ReportConfig>({}, sectionLines('MgmtReport')[0].line)).onlyPosters = located(mgmt, sectionLines('MgmtReport')[0].line);
  for (const { line, text } of sectionLines('Reminder')) {
    const [channel, ...hours] = fields(text).filter(Boolean);
    if (!hours.length) { at(line, `[Reminder] expected 'CHANNEL<TAB>HOUR_REGEX<TAB>…', found only '${text}'`); continue; }
    (config.reminders ??= located([], line)).push(located({ channel, hours }, line));
  }
  located(config.incidents, headerLine.get('Incidents') ?? headerLine.get('Rules') ?? 1);
  located(config.rules, headerLine.get('Rules') ?? 1);
  config[SOURCE_LINES] = { file, lines };
  return { config, problems };
}

/** Read an IMS.ini the config loader found or was given; `shown` is the path as the user wrote it. */
export function readIniLocated(absolute: string, shown: string): Config {
  let body: string;
  try { body = readFileSync(absolute, 'utf8'); } catch (error) {
    throw new ConfigError([`cannot read the file (${(error as NodeJS.ErrnoException).code}); check the path`], shown);
  }
  const { config, problems } = parseIni(body, shown);
  if (problems.length) throw new ConfigError([...problems, ...validateConfig(config).problems], shown);
  return config;
}

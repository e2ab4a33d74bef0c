/**
 * IMS.ini compatibility: the legacy tool's configuration format, read into a `Config`. Fields are split by
 * TAB; only the ten known `[Section]` lines are headers (so a rule like `[Ee]rror` stays a rule); every
 * problem is reported as `IMS.ini:LINE: …`, all at once. Each object read is remembered with its line, so
 * the shared validation in `ims.ts` can point into the file even after `...loadIni()` was spread.
 */
import type { Config, ReportConfig, Rule } from './ims.ts';
import { SOURCE_LINES, inFileOrder, type Located } from './ims-config-errors.ts';
import { didYouMean } from './ims-plugin-kit.ts';


const INI_SECTIONS = ['Rules', 'Incidents', 'Label', 'Report', 'PostID', 'Hotline', 'Reacji', 'Reminder', 'ReacjiID', 'MgmtReport'] as const;
type IniSection = (typeof INI_SECTIONS)[number];
/** HOTLINE fields meaning "page nobody" (the legacy tool took any unknown word so; now only these). */
const NO_HOTLINE = new Set(['', 'no', 'none', '-', 'off', 'false', 'n', 'nil', 'null', 'nobody', 'nothing', '0']);
const RULE_FIELDS = 'MESSAGE_REGEX<TAB>DATE_REGEX<TAB>HEAD<TAB>INCIDENT_LABEL<TAB>HOTLINE';
const INCIDENT_FIELDS = 'LABEL<TAB>CHANNEL<TAB>LIMIT';
/** For a line with too few fields: words separated by spaces were most likely meant to be TAB-separated fields. */
const spacedFields = (text: string) => !text.includes('\t') && /\S +\S/.test(text) ? ' (are the fields separated by spaces instead of TABs?)' : '';
/** The label of a refused line: its first field, whether fields were separated by TABs or (by mistake) spaces. */
const labelOf = (text: string) => text.split(/[\t ]+/)[0];


/** Parse IMS.ini text. Exported for tests; `loadIni` is the public entry. */
export function parseIni(body: string, file = 'IMS.ini'): { config: Config; problems: string[] } {
  const problems: string[] = [];
  const lines = new WeakMap<object, number>();
  const located = <T extends object>(value: T, line: number): T => { lines.set(value, line); return value; };
  const at = (line: number, message: string) => problems.push(`${file}:${line}: ${message}`);
  const bodies = new Map<IniSection, { line: number; text: string }[]>();
  const headerLine = new Map<IniSection, number>();
  let section: IniSection | undefined;
  let contentLines = 0;
  const reported = new WeakSet<object>();

  body.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/).forEach((rawLine, index) => {
    const line = index + 1;
    const text = rawLine.trimStart().replace(/ +$/, '');
    if (text.trim() === '' || text.startsWith('#') || text.startsWith(';')) return;
    contentLines++;
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
  if (!contentLines) {
    // What an editor leaves for a moment while saving, or a file not written yet: never a config that pages nobody.
    problems.push(`${file}: the file ${body.trim() === '' ? 'is empty' : 'has only comments and blank lines'}; expected at least a [Rules] section (${RULE_FIELDS}) and an [Incidents] section (${INCIDENT_FIELDS})`);
    reported.add(config.rules).add(config.incidents);
    config[SOURCE_LINES] = { file, lines, reported };
    return { config, problems };
  }
  // Labels of lines refused below: rules naming them are not reported again (the refused line is the problem).
  const refusedIncidents = new Set<string>();
  const refusedHotlines = new Set<string>();

  for (const { line, text } of sectionLines('Hotline')) {
    const [label, ...members] = fields(text).filter(Boolean);
    if (!members.length) { at(line, `[Hotline] expected 'LABEL<TAB>member<TAB>member…', found only '${text}'${spacedFields(text)}`); refusedHotlines.add(labelOf(text)); continue; }
    const earlier = config.hotlines?.[label];
    if (earlier) at(line, `[Hotline] label '${label}' is defined twice (first on line ${lines.get(earlier)})`);
    (config.hotlines ??= located<Record<string, string[]>>({}, line))[label] = located(members, line);
  }

  for (const { line, text } of sectionLines('Incidents')) {
    const parts = fieldsOf(text, 3);
    if (parts.length !== 3 || parts.some((p) => p === '')) {
      at(line, `[Incidents] expected 3 TAB-separated fields (LABEL, CHANNEL, LIMIT — or DEFAULT, CHANNEL, HEADER), found ${parts.filter(Boolean).length}: '${text}'${text.includes('\t') ? '' : ' (are the fields separated by spaces instead of TABs?)'}`);
      refusedIncidents.add(labelOf(text));
      continue;
    }
    const [label, channel, third] = parts;
    if (label === 'DEFAULT') {
      if (config.reverseDefault) at(line, `[Incidents] DEFAULT is defined twice (first on line ${lines.get(config.reverseDefault)})`);
      config.reverseDefault = located({ channel, header: third }, line);
      continue;
    }
    if (!/^\d+$/.test(third) || Number(third) < 1) { at(line, `[Incidents] LIMIT must be a positive whole number, found '${third}'`); refusedIncidents.add(label); continue; }
    if (config.incidents[label]) at(line, `[Incidents] label '${label}' is defined twice (first on line ${lines.get(config.incidents[label])})`);
    config.incidents[label] = located({ channel, limit: Number(third) }, line);
  }

  const noIncidents = !Object.keys(config.incidents).length;
  // Only a DEFAULT line: right in reverse mode (where reposts go to DEFAULT), wrong in normal mode. The mode is
  // known to the validation (flag or config), not here: it decides, naming the [Incidents] header.
  const onlyDefault = noIncidents && !refusedIncidents.size && config.reverseDefault !== undefined;
  // No [Incidents] line at all: one problem, not one more for every rule that names a label. When lines were
  // refused, only their own labels are held back: a label no line defines is still reported on its rule.
  const noIncidentLines = noIncidents && !refusedIncidents.size && !onlyDefault;
  if (noIncidentLines) {
    const why = `expected ${INCIDENT_FIELDS} lines for the labels the rules name`;
    if (headerLine.has('Incidents')) at(headerLine.get('Incidents')!, `[Incidents] has no incident lines; ${why}`);
    else problems.push(`${file}: no [Incidents] section; ${why}`);
  }
  if (noIncidents && !onlyDefault) reported.add(config.incidents);

  const unknownHotlines = new Map<string, number[]>();
  for (const { line, text } of sectionLines('Rules')) {
    const parts = fieldsOf(text, 5);
    if (parts.length !== 5) {
      at(line, `[Rules] expected 5 TAB-separated fields (MESSAGE_REGEX, DATE_REGEX, HEAD, INCIDENT_LABEL, HOTLINE), found ${parts.length}: '${text}'${text.includes('\t') ? '' : ' (are the fields separated by spaces instead of TABs?)'}`);
      reported.add(config.rules);
      continue;
    }
    const [match, when, head, incident, hotline] = parts;
    if (noIncidentLines) refusedIncidents.add(incident);
    const rule: Rule = located({ match, when, head, incident }, line);
    if (!NO_HOTLINE.has(hotline.toLowerCase())) {
      if (config.hotlines && Object.hasOwn(config.hotlines, hotline)) rule.hotline = hotline;
      else if (!refusedHotlines.has(hotline)) unknownHotlines.set(hotline, [...(unknownHotlines.get(hotline) ?? []), line]);
    }
    config.rules.push(rule);
  }
  // Once per misspelt name, at its first rule: a hotline that pages nobody must not pass silently.
  const knownHotlines = Object.keys(config.hotlines ?? {});
  for (const [hotline, [first, ...more]] of unknownHotlines) {
    at(first, `[Rules] unknown hotline '${hotline}'${didYouMean(hotline, knownHotlines)}; define it in [Hotline] (LABEL<TAB>member<TAB>…), or write No for no hotline ` +
      `(known: ${knownHotlines.join(', ') || (headerLine.has('Hotline') ? 'none, [Hotline] defines none that could be read' : 'none, there is no [Hotline] section')})${more.length ? `; also on line${more.length === 1 ? '' : 's'} ${more.join(', ')}` : ''}`);
  }
  if (!config.rules.length && !reported.has(config.rules)) {
    const why = `expected one rule per line (${RULE_FIELDS})`;
    if (headerLine.has('Rules')) at(headerLine.get('Rules')!, `[Rules] has no rules; ${why}`);
    else problems.push(`${file}: no [Rules] section; ${why}`);
    reported.add(config.rules);
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
    if (!hours.length) { at(line, `[Reminder] expected 'CHANNEL<TAB>HOUR_REGEX<TAB>…', found only '${text}'${spacedFields(text)}`); continue; }
    (config.reminders ??= located([], line)).push(located({ channel, hours }, line));
  }
  located(config.incidents, headerLine.get('Incidents') ?? headerLine.get('Rules') ?? 1);
  located(config.rules, headerLine.get('Rules') ?? 1);
  config[SOURCE_LINES] = { file, lines, reported, reportedLabels: refusedIncidents };
  return { config, problems: inFileOrder(problems) };
}


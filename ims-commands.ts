/**
 * `/ims`, the one slash command: `status`, `silence <what> <duration> [reason…]`, `silences`, `unsilence <id>`,
 * `test <alert text>`, `report`, `help`. Answers are for the person who typed it (ephemeral); what changes shared
 * state is announced where everyone sees it (a new silence in the report channel). What people type is made inert
 * before it is shown anywhere: it can neither mention anyone nor make a link.
 */
import type { CompiledConfig, Incident } from './ims.ts';
import type { Store } from './ims-state.ts';
import { describeSilence, type Silencing, type SummaryOutcome } from './ims-silencing.ts';
import type { PermissionChecker } from './ims-permissions.ts';
import { describeTest } from './ims-dry-run.ts';
import { decodeEntities, escapeSlack, firstLine, inertText } from './ims-text.ts';
import { formatAge, formatShortDate } from './ims-time.ts';
import { DURATION_HINT, describeMatcher, nextOpenings, parseMatcher, parseSilenceDuration } from './ims-silences.ts';

/** A slash command as Slack sends it, as far as IMS reads it. */
export interface SlashCommand {
  command: string;
  text: string;
  user_id: string;
  channel_id: string;
}

/** An answer to the person who typed the command (ephemeral unless `inChannel`). */
export interface CommandAnswer {
  text: string;
}

/** What the commands need. */
export interface CommandInputs {
  state: Store;
  silencing: Silencing;
  permissions: PermissionChecker;
  config(): CompiledConfig;
  now(): number;
  permalink(channel: string, ts: string): string;
  /** Post a report now; false when it could not be posted. */
  postReport(): Promise<boolean>;
}

export const USAGE = [
  '`/ims status` — open incidents, with age and who acknowledged them',
  '`/ims silence <what> <duration> [reason…]` — <what>: a rule head such as `[Warn]`, an incident label, a correlation key, or `/regex/`; <duration>: `30m`, `2h`, `1d`',
  '`/ims silences` — silences in force and maintenance windows',
  '`/ims unsilence <id>` — end a silence now',
  '`/ims test <alert text>` — what IMS would do with that alert',
  '`/ims report` — post a report now',
  '`/ims help` — this list',
];

const SUBCOMMANDS = ['status', 'silence', 'silences', 'unsilence', 'test', 'report', 'help'];

/** Answers `/ims`. */
export class Commands {
  constructor(private readonly inputs: CommandInputs) {}

  /** Run one command; never throws (a failure is the answer). */
  async run(command: SlashCommand): Promise<CommandAnswer> {
    const text = decodeEntities(command.text ?? '').trim();
    const [word = 'help', ...rest] = text.split(/\s+/);
    const argument = text.slice(word.length).trim();
    switch (word.toLowerCase()) {
      case 'help': case '': return { text: `*IMS commands*\n${USAGE.join('\n')}` };
      case 'status': return { text: await this.status() };
      case 'silences': return { text: await this.silences() };
      case 'silence': return this.silence(command.user_id, command.channel_id, argument);
      case 'unsilence': return this.unsilence(command.user_id, rest[0] ?? '');
      case 'test': return argument ? { text: codeBlock(describeTest(this.inputs.config(), argument, this.inputs.now())) } : { text: `Usage: ${USAGE[4]}` };
      case 'report':
        if (!this.inputs.config().report.channel) return { text: 'There is no report channel to post to: set report.channel in the config ([Report] in IMS.ini).' };
        return { text: (await this.inputs.postReport()) ? `Report posted in <#${this.inputs.config().report.channel}>.` : 'The report could not be posted; IMS logged why.' };
      default: {
        const close = SUBCOMMANDS.find((s) => s.startsWith(word.toLowerCase().slice(0, 3)));
        return { text: `Unknown command \`${inertText(word.slice(0, 40))}\`${close ? ` (did you mean \`${close}\`?)` : ''}. Usage: \`/ims status | silence <what> <duration> [reason…] | silences | unsilence <id> | test <alert text> | report | help\`` };
      }
    }
  }

  /** Open incidents, oldest first: age, acknowledger, links. */
  async status(): Promise<string> {
    const now = this.inputs.now();
    const open = await this.inputs.state.listIncidents({ open: true });
    if (!open.length) return ':white_check_mark: No open incidents.';
    const lines = open.slice(-40).map((i) => this.incidentLine(i, now));
    return [`*${open.length} open incident${open.length === 1 ? '' : 's'}*`, ...lines, ...(open.length > 40 ? [`…and ${open.length - 40} older ones (see the report)`] : [])].join('\n');
  }

  incidentLine(incident: Incident, now: number): string {
    const ack = incident.acknowledgedBy ? (/^[UW]/.test(incident.acknowledgedBy) ? `acknowledged by <@${incident.acknowledgedBy}>` : 'acknowledged in its tool') : 'not acknowledged';
    const title = escapeSlack(firstLine(incident.text, 80));
    return `• <${this.inputs.permalink(incident.incidentChannel, incident.incidentTs)}|#${incident.id} ${escapeSlack(incident.head)}> ${title} — ${formatAge(now - incident.createdAt)} old, ${ack}` +
      (incident.repeats ? `, repeated ${incident.repeats}×` : '') + (incident.flapping ? ', flapping' : '') + (incident.permalink ? ` (<${incident.permalink}|alert>)` : '') +
      (incident.alertKey ? ` · key \`${escapeSlack(incident.alertKey.replace(/`/g, "'"))}\`` : '');
  }

  /** Silences in force, and the maintenance windows to come. */
  async silences(): Promise<string> {
    const now = this.inputs.now();
    const config = this.inputs.config();
    const active = await this.inputs.silencing.active();
    const lines = active.map((s) => `• ${describeSilence(s, config.timezone)}`);
    const upcoming = nextOpenings(config.interactive.maintenance, now, config.timezone).filter((o) => !active.some((s) => s.windowKey === o.key));
    return [
      active.length ? `*${active.length} silence${active.length === 1 ? '' : 's'} in force*` : 'No silences in force.',
      ...lines,
      ...(upcoming.length ? ['*Maintenance windows to come*', ...upcoming.slice(0, 10).map((o) => `• ${inertText(o.window.name)}: ${inertText(describeMatcher(o.window.matcher))}, ${clock(o.startsAt, config.timezone)} – ${clock(o.endsAt, config.timezone)}`)] : []),
    ].join('\n');
  }

  private async silence(user: string, channel: string, argument: string): Promise<CommandAnswer> {
    const usage = `Usage: /ims silence <what> <duration> [reason…] — <what>: [Warn], an incident label, a correlation key or /regex/; <duration>: ${DURATION_HINT}`;
    const tokens = splitArguments(argument);
    if (tokens.length < 2) return { text: usage };
    const [{ value: what }, { value: duration, end }] = tokens;
    const durationMs = parseSilenceDuration(duration);
    if (durationMs === undefined) return { text: `Expected ${DURATION_HINT} after what to silence, found \`${inertText(duration.slice(0, 40))}\`. ${usage}` };
    const config = this.inputs.config();
    const parsed = parseMatcher(what, new Set(config.incidents.keys()), new Set(config.rules.map((rule) => rule.head)));
    if ('problem' in parsed) return { text: `${inertText(parsed.problem)}. ${usage}` };
    const verdict = await this.inputs.permissions.check(user, 'silence');
    if (!verdict.allowed) return { text: `:no_entry: ${verdict.why}.` };
    // The reason as typed, spaces and all.
    const reason = argument.slice(end).trim();
    const silence = await this.inputs.silencing.create({ what, matcher: parsed.matcher, reason: reason.slice(0, 500), user, durationMs, channel });
    // A key no alert has had yet may be a typo: said, though the silence still takes it when it comes.
    const unseen = parsed.matcher.kind === 'key' && !(await this.inputs.state.keyRecord(parsed.matcher.key))
      ? ` No alert with this key has been seen yet (keys look like \`/ims status\` and \`--test\` show them); it takes such alerts when they come.` : '';
    return { text: `:no_bell: Silence ${silence.id} is in force: ${inertText(describeMatcher(silence.matcher))} until ${clock(silence.endsAt, config.timezone)}. End it with \`/ims unsilence ${silence.id}\`.${unseen}` };
  }

  private async unsilence(user: string, idText: string): Promise<CommandAnswer> {
    const id = /^(?:#|s)?(\d+)$/i.exec(idText.trim())?.[1];
    if (!id) return { text: `Usage: /ims unsilence <id> — the id as \`/ims silences\` lists it, found \`${inertText(idText.slice(0, 40)) || 'nothing'}\`` };
    const silence = await this.inputs.state.silenceById(Number(id));
    if (!silence) return { text: `There is no silence ${id}; \`/ims silences\` lists those in force.` };
    const now = this.inputs.now();
    if (silence.endedAt !== undefined || silence.endsAt <= now) return { text: `Silence ${id} already ended${silence.endedBy ? ` (ended by <@${silence.endedBy}>)` : ''}.` };
    const verdict = await this.inputs.permissions.check(user, 'unsilence', { creator: silence.createdBy });
    if (!verdict.allowed) return { text: `:no_entry: ${verdict.why}.` };
    const { ended, summary } = await this.inputs.silencing.end(silence, user);
    if (!ended) return { text: `Silence ${id} already ended.` };
    return { text: `:bell: Silence ${id} ended. ${summaryNote(summary)}` };
  }
}

/** Where a silence's summary went; when Slack refused it, the summary itself (so the person who ended it has it). */
export function summaryNote(summary: SummaryOutcome | undefined): string {
  if (!summary) return 'It silenced nothing that needs a summary.';
  if (summary.posted) return `Its summary is in <#${summary.channel}>.`;
  return `Its summary could not be posted in <#${summary.channel}> (Slack refused it); here it is:\n${summary.text}`;
}

/** Text in a code block it cannot break out of (a ``` in it is broken up), made inert. */
function codeBlock(text: string): string {
  return `\`\`\`${inertText(text).replace(/`{3,}/g, (ticks) => ticks.split('').join('\u200b'))}\`\`\``;
}

const clock = formatShortDate;

/** Arguments split on spaces, each with where it ends; `"quoted words"` and `/a regex with spaces/flags` stay one argument each. */
export function splitArguments(text: string): { value: string; end: number }[] {
  const tokens: { value: string; end: number }[] = [];
  for (const match of text.matchAll(/"([^"]*)"|“([^”]*)”|(\/(?:[^/\\]|\\.)+\/[a-z]*)(?=\s|$)|(\S+)/g)) {
    tokens.push({ value: match[1] ?? match[2] ?? match[3] ?? match[4], end: match.index + match[0].length });
  }
  return tokens;
}

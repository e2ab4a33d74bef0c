/**
 * What IMS would do, without Slack: `--test` (one text against the rules, in the legacy tool's words) and
 * `--replay` (a recording through the rules and the alert lifecycle, each decision printed, then a summary).
 * The rule engine is the compiled config's (`config.engine`).
 */
import { statSync } from 'node:fs';
import type { CompiledConfig, Decision, RuleMatch, SlackMessageEvent } from './ims.ts';
import { describeValue as describe } from './ims-plugin-kit.ts';
import { escapeSlack } from './ims-text.ts';
import { formatDate, tsToMs } from './ims-time.ts';
import { configName } from './ims-config-errors.ts';
import { MemoryLedger, identify } from './ims-lifecycle.ts';
import { exportChannelIds, readRecording } from './ims-recordings.ts';

/** `--test`: what IMS would do with this text, in words. */
export function describeTest(config: CompiledConfig, text: string, epochMs = Date.now()): string {
  const event: SlackMessageEvent = { type: 'message', channel: 'TEST', ts: (epochMs / 1000).toFixed(6), text: escapeSlack(text) };
  const verdict = config.engine.matchRules(config.rules, text, epochMs, { timezone: config.timezone, incidents: config.incidents });
  const reverse = config.reverseDefault
    ? config.engine.decide({ ...config, reverse: true }, event, { testing: true }).decision
    : undefined;
  const lines: string[] = [];
  if (text.trim() === '') return ['this message exclude rules..', '  normal:   ignored (empty text)', '  reverse:  ignored (empty text)'].join('\n');
  if (verdict.kind === 'incident') {
    const rule = verdict.match.rule;
    const target = config.incidents.get(rule.incident)!;
    lines.push(`this message include rule (${rule.number})!`);
    lines.push(`  rule:     ${rule.number}: ${describe(rule.source.match)}${rule.when ? ` during ${describe(rule.source.when)}` : ''}`);
    lines.push(`  label:    ${rule.head}`);
    lines.push(`  channel:  ${rule.incident} → ${target.channel}`);
    lines.push(`  hotline:  ${rule.hotline ? `${rule.hotline}: ${config.hotlines.get(rule.hotline)!.join(', ')}` : 'none'}`);
    if (Object.keys(verdict.match.groups).length) lines.push(`  captured: ${Object.entries(verdict.match.groups).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  } else {
    lines.push('this message exclude rules..');
    if (verdict.kind === 'suppressed') lines.push(`  suppressed by rule (${verdict.match.rule.number}): ${describe(verdict.match.rule.source.match)} during ${describe(verdict.match.rule.source.when)}`);
    lines.push(`  normal:   would add :${config.seenReaction}: to the message (seen, not an incident)`);
  }
  lines.push(`  reverse:  ${reverse ? describeDecision(reverse) : 'needs a DEFAULT line in [Incidents] (reverseDefault)'}`);
  lines.push(`  alert:    ${describeAlert(config, event, text, verdict.kind === 'incident' ? verdict.match : undefined)}`);
  return lines.join('\n');
}

function describeDecision(decision: Decision): string {
  switch (decision.action) {
    case 'incident': return `incident: repost as ${decision.match.rule.head} to ${decision.channel}${decision.hotline ? `, paging ${decision.hotline}` : ''} (rule ${decision.match.rule.number})`;
    case 'suppressed': return `suppressed by rule ${decision.match.rule.number}: add :${decision.reaction}:`;
    case 'seen': return `seen: add :${decision.reaction}:${decision.match ? ` (rule ${decision.match.rule.number})` : ''}`;
    case 'reverse repost': return `reverse repost to ${decision.channel} as ${decision.header}`;
    case 'reacji': return `reacji: add :${decision.reaction}: for the Reacji Channeler`;
    case 'ignore': return `ignored (${decision.reason})`;
  }
}

/** `--test`'s alert line: which recogniser read the text (or the rule's key, or the normalised text), its key and state. */
function describeAlert(config: CompiledConfig, event: SlackMessageEvent, text: string, match: RuleMatch | undefined): string {
  // Tested as an integration would post it: --test has no poster.
  const found = identify({ event: { ...event, bot_id: 'B0TEST', subtype: 'bot_message' }, text }, config.lifecycle, match, 'integration');
  const off = config.lifecycle.enabled ? '' : ' (lifecycles are off in this config: each message is its own incident)';
  if (!found || found === 'quoted') return `not an alert any recogniser or rule key reads${off}`;
  return `${found.alerts.map((a) => `${a.key} ${a.state}${a.notice ? ` (${a.notice})` : ''}`).join(', ')} — read by ${found.by === 'text' ? 'its normalised text' : found.by === 'rule' ? 'the rule\'s key' : `the ${found.by} recogniser`}${off}`;
}

/** `--replay`: run the rules over a recording, print each decision and a summary per rule. */
export function replay(config: CompiledConfig, file: string, out: (line: string) => void, progress: (line: string) => void = () => {}): { counts: Record<string, number> } {
  if (statSync(file).isDirectory()) {
    // An export names its channels: channels the config names (incident, report, DEFAULT) are IMS's own there too.
    const ids = exportChannelIds(file);
    config = { ...config, ownChannels: new Set([...config.ownChannels].flatMap((c) => [c, ids.get(c.replace(/^#/, '')) ?? c])) };
  }
  const counts: Record<string, number> = {};
  const perRule = new Map<number, { incident: number; suppressed: number; seen: number }>();
  const lifecycle = config.lifecycle.enabled && !config.reverse ? new LifecycleReplay(config) : undefined;
  let total = 0;
  for (const recorded of readRecording(file)) {
    total++;
    if (total % 5000 === 0) progress(`replay: ${total} messages…`);
    // An integration's edit (Zabbix, Sentry resolving their alert) is read for the change of state it makes.
    const edit = lifecycle && recorded.subtype === 'message_changed' ? lifecycle.editOf(recorded) : undefined;
    const event = edit ?? recorded;
    const { decision, message } = config.engine.decide(config, event, edit ? { edited: true } : {});
    const key = edit ? (decision.action === 'ignore' ? 'edit ignored' : 'edit read') : decision.action === 'ignore' ? `ignored ${decision.reason}` : decision.action;
    counts[key] = (counts[key] ?? 0) + 1;
    if ('match' in decision && decision.match && !edit) {
      const row = perRule.get(decision.match.rule.number) ?? { incident: 0, suppressed: 0, seen: 0 };
      if (decision.action === 'incident') row.incident++;
      else if (decision.action === 'suppressed') row.suppressed++;
      else row.seen++;
      perRule.set(decision.match.rule.number, row);
    }
    const when = formatDate(tsToMs(event.ts), config.timezone);
    const who = event.bot_id || event.user || '-';
    const text = (message?.text ?? event.text ?? '').replace(/\s+/g, ' ').slice(0, 80);
    const step = lifecycle?.take(decision, event.ts, !!edit);
    out(`${when}  ${event.channel}  ${who.padEnd(10)} ${key.padEnd(24)} ${decision.action === 'ignore' ? '' : describeDecision(decision) + '  '}${step ? `[${step}]  ` : ''}"${text}"`);
  }
  if (total >= 5000) progress(`replay: ${total} messages, done`);
  out('');
  out(`Summary: ${total} messages`);
  out(`  config: ${configName(config)}`);
  out(`  ${'rule'.padEnd(6)}${'head'.padEnd(20)}${'incident'.padStart(9)}${'suppressed'.padStart(11)}${'seen'.padStart(6)}  match`);
  for (const rule of config.rules) {
    const row = perRule.get(rule.number) ?? { incident: 0, suppressed: 0, seen: 0 };
    out(`  ${String(rule.number).padEnd(6)}${rule.head.slice(0, 19).padEnd(20)}${String(row.incident).padStart(9)}${String(row.suppressed).padStart(11)}${String(row.seen).padStart(6)}  ${describe(rule.source.match)}`);
  }
  for (const [key, count] of Object.entries(counts).sort()) out(`  ${key}: ${count}`);
  if (lifecycle) for (const line of lifecycle.summary()) out(line);
  return { counts };
}

/**
 * The alert lifecycle over a replay, in memory, as the live bot would take it (windows on the messages' own
 * times): what each message's step is, and in the end the posts and pages against one incident per message.
 */
class LifecycleReplay {
  private readonly ledger: MemoryLedger;
  private readonly tally = { perMessagePosts: 0, perMessagePages: 0, posts: 0, pages: 0, notes: 0, edits: 0, oneOffs: 0 };

  constructor(private readonly config: CompiledConfig) {
    this.ledger = new MemoryLedger(config.lifecycle);
  }

  /** The edited message of a `message_changed` event, to be read for a change of state; undefined when there is none. */
  editOf(event: SlackMessageEvent): SlackMessageEvent | undefined {
    const inner = event.message as Record<string, unknown> | undefined;
    if (!inner || typeof inner !== 'object' || typeof inner.ts !== 'string') return undefined;
    return { ...inner, type: 'message', channel: event.channel } as SlackMessageEvent;
  }

  /** The step of one decided message, in words (undefined when it is not about an alert). */
  take(decision: Decision, ts: string, edited: boolean): string | undefined {
    const hotline = decision.action === 'incident' && !!decision.hotline;
    if (decision.action === 'incident' && !edited) {
      this.tally.perMessagePosts++;
      if (hotline) this.tally.perMessagePages++;
    }
    if ((decision.action !== 'incident' && decision.action !== 'seen') || !decision.alert) {
      if (decision.action === 'incident' && !edited) { this.tally.posts++; this.tally.oneOffs++; if (hotline) this.tally.pages++; }
      return undefined;
    }
    const alerts = edited ? decision.alert.alerts.filter((a) => a.state === 'resolved' || a.notice) : decision.alert.alerts;
    if (!alerts.length) return undefined;
    if (alerts.every((a) => a.state === 'event' && !a.notice)) {
      if (decision.action === 'incident' && !edited) { this.tally.posts++; this.tally.oneOffs++; if (hotline) this.tally.pages++; }
      return 'one-off event';
    }
    const { step, flapping, incidentId } = this.ledger.step(alerts, ts, decision.action === 'incident');
    const flap = flapping ? `; flapping ${flapping === 'start' ? 'starts' : 'stops'}` : '';
    switch (step.kind) {
      case 'open':
        if (decision.action !== 'incident') return 'seen: no rule matched';
        this.tally.posts++;
        if (hotline) this.tally.pages++;
        return `opens #${incidentId} ${alerts[0].key}`;
      case 'repeat':
        this.tally.edits++;
        if (step.note) this.tally.notes++;
        return `repeat of #${incidentId}${flap}`;
      case 'recover':
        this.tally.edits++;
        return `${step.resolves ? 'recovery resolves' : 'partial recovery of'} #${incidentId}${flap}`;
      case 'reopen':
        this.tally.edits++;
        if (step.page) this.tally.pages++;
        return `reopens #${incidentId}${step.page ? ', pages again' : ''}${flap}`;
      case 'acknowledge':
        return `acknowledges #${incidentId}`;
      case 'seen':
        return `seen: ${step.why}`;
    }
  }

  summary(): string[] {
    const t = this.tally;
    const lines = [
      '',
      `Lifecycle (${this.config.lifecycle.recognisers.length} recognisers; windows on the messages' own times):`,
      // One-off events (CI builds) and incidents no key reads are incidents too, open until a person resolves them.
      `  incidents opened: ${this.ledger.opened() + t.oneOffs} (one per message: ${t.perMessagePosts}); still open at the end: ${this.ledger.openIncidents() + t.oneOffs}`,
      `  posts: ${t.posts} (one per message: ${t.perMessagePosts}), plus ${t.edits} edits in place and ${t.notes} thread notes`,
      `  pages: ${t.pages} (one per message: ${t.perMessagePages})`,
      `  ${'key'.padEnd(60)}${'fires'.padStart(6)}${'repeats'.padStart(8)}${'recov.'.padStart(7)}${'reopen'.padStart(7)}  flapping`,
    ];
    for (const k of [...this.ledger.tallies.values()].sort((a, b) => b.fires + b.recoveries - a.fires - a.recoveries || a.key.localeCompare(b.key))) {
      lines.push(`  ${k.key.slice(0, 59).padEnd(60)}${String(k.fires).padStart(6)}${String(k.repeats).padStart(8)}${String(k.recoveries).padStart(7)}${String(k.reopenings).padStart(7)}  ${k.flapped ? 'yes' : ''}`);
    }
    return lines;
  }
}

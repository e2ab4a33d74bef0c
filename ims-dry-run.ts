/**
 * What IMS would do, without Slack: `--test` (one text against the rules, in the legacy tool's words) and
 * `--replay` (a recording through the rules and the alert lifecycle, each decision printed, then a summary).
 * The rule engine is the compiled config's (`config.engine`).
 */
import { statSync } from 'node:fs';
import type { CompiledConfig, Decision, SlackMessageEvent } from './ims.ts';
import { describeValue as describe } from './ims-plugin-kit.ts';
import { escapeSlack } from './ims-text.ts';
import { formatDate, tsToMs } from './ims-time.ts';
import { configName } from './ims-config-errors.ts';
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

/** `--replay`: run the rules over a recording, print each decision and a summary per rule. */
export function replay(config: CompiledConfig, file: string, out: (line: string) => void, progress: (line: string) => void = () => {}): { counts: Record<string, number> } {
  if (statSync(file).isDirectory()) {
    // An export names its channels: channels the config names (incident, report, DEFAULT) are IMS's own there too.
    const ids = exportChannelIds(file);
    config = { ...config, ownChannels: new Set([...config.ownChannels].flatMap((c) => [c, ids.get(c.replace(/^#/, '')) ?? c])) };
  }
  const counts: Record<string, number> = {};
  const perRule = new Map<number, { incident: number; suppressed: number; seen: number }>();
  let total = 0;
  for (const event of readRecording(file)) {
    total++;
    if (total % 5000 === 0) progress(`replay: ${total} messages…`);
    const { decision, message } = config.engine.decide(config, event);
    const key = decision.action === 'ignore' ? `ignored ${decision.reason}` : decision.action;
    counts[key] = (counts[key] ?? 0) + 1;
    if ('match' in decision && decision.match) {
      const row = perRule.get(decision.match.rule.number) ?? { incident: 0, suppressed: 0, seen: 0 };
      if (decision.action === 'incident') row.incident++;
      else if (decision.action === 'suppressed') row.suppressed++;
      else row.seen++;
      perRule.set(decision.match.rule.number, row);
    }
    const when = formatDate(tsToMs(event.ts), config.timezone);
    const who = event.bot_id || event.user || '-';
    const text = (message?.text ?? event.text ?? '').replace(/\s+/g, ' ').slice(0, 80);
    out(`${when}  ${event.channel}  ${who.padEnd(10)} ${key.padEnd(24)} ${decision.action === 'ignore' ? '' : describeDecision(decision) + '  '}"${text}"`);
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
  return { counts };
}

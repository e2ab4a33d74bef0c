/**
 * Recorded Slack messages, for `--replay` and the bench: JSON lines (one `message` event a line), or a Slack
 * export folder (channels.json and groups.json, then one folder per channel of daily JSON files).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { SlackMessageEvent } from './ims.ts';

/** Read recorded message events: JSON lines, or a Slack export folder (channel folders of daily JSON files). */
export function* readRecording(file: string): Generator<SlackMessageEvent> {
  if (statSync(file).isDirectory()) {
    const ids = exportChannelIds(file);
    const folders = readdirSync(file).sort().filter((folder) => statSync(path.join(file, folder)).isDirectory());
    if (!folders.length) throw new Error(`'${file}' has no channel folders: give a Slack export folder (channels.json and one folder per channel) or a JSON-lines file`);
    for (const folder of folders) {
      const dir = path.join(file, folder);
      for (const day of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
        const messages = JSON.parse(readFileSync(path.join(dir, day), 'utf8')) as SlackMessageEvent[];
        if (!Array.isArray(messages)) throw new Error(`${path.join(dir, day)}: expected a list of messages, as in a Slack export`);
        for (const m of messages) yield { ...m, type: 'message', channel: m.channel ?? ids.get(folder) ?? folder };
      }
    }
    return;
  }
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let value: Record<string, unknown>;
    try { value = JSON.parse(line); } catch (error) { throw new Error(`${file}:${i + 1}: not valid JSON (${(error as Error).message})`); }
    const event = (value.event ?? (value.payload as Record<string, unknown> | undefined)?.event ?? value) as SlackMessageEvent;
    if (event.type === 'message' || event.type === undefined) yield { ...event, type: 'message' };
  }
}

/** Channel name → ID from a Slack export's channels.json and groups.json (private channels). */
export function exportChannelIds(folder: string): Map<string, string> {
  const ids = new Map<string, string>();
  for (const list of ['channels.json', 'groups.json']) {
    const listFile = path.join(folder, list);
    if (existsSync(listFile)) for (const c of JSON.parse(readFileSync(listFile, 'utf8')) as { id: string; name: string }[]) ids.set(c.name, c.id);
  }
  return ids;
}

/**
 * Slack message text, read and written: the readable text rules match (text, or attachments and blocks), the
 * entity decoding Slack requires, and escaping untrusted text so it can never mention anyone or form a link.
 */
import type { SlackMessageEvent } from './ims.ts';

const ENTITIES: Record<string, string> = { '&lt;': '<', '&gt;': '>', '&amp;': '&' };

/** Slack sends `&`, `<`, `>` entity-encoded; rules see the plain characters. */
export function decodeEntities(text: string): string {
  return text.includes('&') ? text.replace(/&(?:lt|gt|amp);/g, (entity) => ENTITIES[entity]) : text;
}

/** Escape untrusted text for Slack mrkdwn, so it can never mention anyone or form a link. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The first line of a text that is not blank, trimmed, at most `max` characters: an alert's title in lists. */
export function firstLine(text: string, max = 120): string {
  return (text.split('\n').find((line) => line.trim()) ?? '').trim().slice(0, max);
}

/**
 * What a person typed (a silence reason, a command's argument), made inert for mrkdwn: escaped, so it cannot make a
 * link, a mention or a channel-wide ping (`<!here>`, `<@U…>`, `<https://…|text>`), and the bare `@here`, `@channel`,
 * `@everyone` that Slack links in some fields are broken up with a word joiner.
 */
export function inertText(text: string): string {
  return escapeSlack(text).replace(/@(here|channel|everyone)\b/gi, '@\u2060$1');
}

/**
 * The text rules are matched against: `text`, or when it is empty, the readable text of attachments
 * (pretext, title, text, fields, fallback) and blocks — or their JSON in `legacy-json` mode, as IMS did.
 */
export function messageText(event: Pick<SlackMessageEvent, 'text' | 'attachments' | 'blocks'>, mode: 'readable' | 'legacy-json' = 'readable'): string {
  if (event.text && event.text.trim() !== '') return decodeEntities(event.text);
  if (mode === 'legacy-json') return event.attachments?.length ? JSON.stringify(event.attachments) : '';
  return decodeEntities(contentLines(event).map((line) => line.map((part) => part.text).join('')).join('\n'));
}

/**
 * One part of an alert's content as Slack sent it. The rules read every part's `text` (entities decoded);
 * a repost also keeps what only the parts know: which text is Slack mrkdwn (its `<url|label>` links), and
 * the links of attachment titles (`title_link`) and rich-text links.
 */
export type ContentPart =
  /** Slack-encoded mrkdwn (`&lt;`), which may hold `<…>` control sequences. */
  | { kind: 'mrkdwn'; text: string }
  /** A plain string (rich text, plain_text objects). */
  | { kind: 'plain'; text: string }
  /** Text that links to `url` as Slack showed it: an attachment's title with its `title_link`, a rich-text link. */
  | { kind: 'link'; text: string; url: string };

/** The content of a message whose `text` is empty, line by line: attachments (pretext, title, text, fields, fallback), then blocks. */
export function contentLines(event: Pick<SlackMessageEvent, 'attachments' | 'blocks'>): ContentPart[][] {
  const lines: ContentPart[][] = [];
  // What Slack delivers is not always what it documents: a null attachment or field, or a string where a list goes, is skipped.
  const attachments = Array.isArray(event.attachments) ? event.attachments : [];
  for (const attachment of attachments) {
    if (!attachment || typeof attachment !== 'object') continue;
    const own: ContentPart[][] = [];
    if (attachment.pretext) own.push([{ kind: 'mrkdwn', text: String(attachment.pretext) }]);
    if (attachment.title) {
      const url = typeof attachment.title_link === 'string' ? attachment.title_link : '';
      own.push([url ? { kind: 'link', text: String(attachment.title), url } : { kind: 'mrkdwn', text: String(attachment.title) }]);
    }
    if (attachment.text) own.push([{ kind: 'mrkdwn', text: String(attachment.text) }]);
    for (const field of Array.isArray(attachment.fields) ? attachment.fields : []) {
      if (!field || typeof field !== 'object') continue;
      const parts = [field.title, field.value].filter(Boolean).map((value): ContentPart => ({ kind: 'mrkdwn', text: String(value) }));
      if (parts.length === 2) parts.splice(1, 0, { kind: 'plain', text: ': ' });
      if (parts.length) own.push(parts);
    }
    const fallback = attachment.fallback ? String(attachment.fallback) : '';
    if (fallback && !own.some((line) => line.map((part) => part.text).join('').includes(fallback))) own.push([{ kind: 'mrkdwn', text: fallback }]);
    lines.push(...own);
    if (Array.isArray(attachment.blocks)) lines.push(...blockLines(attachment.blocks));
  }
  lines.push(...blockLines(Array.isArray(event.blocks) ? event.blocks : []));
  return lines;
}

function blockLines(blocks: unknown[]): ContentPart[][] {
  const lines: ContentPart[][] = [];
  const visit = (node: unknown, inline: ContentPart[]): void => {
    if (!node || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (n.type === 'rich_text_section' || n.type === 'rich_text_preformatted' || n.type === 'rich_text_quote') {
      const parts: ContentPart[] = [];
      for (const element of Array.isArray(n.elements) ? n.elements : []) visit(element, parts);
      if (parts.length) lines.push(parts);
      return;
    }
    if (n.type === 'text' || n.type === 'link') {
      const text = String(n.text ?? n.url ?? '');
      inline.push(n.type === 'link' && typeof n.url === 'string' && n.url ? { kind: 'link', text, url: n.url } : { kind: 'plain', text });
      return;
    }
    if (n.type === 'user') { inline.push({ kind: 'mrkdwn', text: `<@${n.user_id}>` }); return; }
    if (n.type === 'emoji') { inline.push({ kind: 'plain', text: `:${n.name}:` }); return; }
    if (typeof n.text === 'string') { lines.push([{ kind: n.type === 'plain_text' ? 'plain' : 'mrkdwn', text: n.text }]); return; }
    if (n.text && typeof n.text === 'object') visit(n.text, inline);
    for (const key of ['fields', 'elements']) for (const child of Array.isArray(n[key]) ? n[key] as unknown[] : []) visit(child, inline);
  };
  for (const block of blocks) visit(block, []);
  return lines;
}

export const SECTION_LIMIT = 2900;
export const BLOCKS_PER_MESSAGE = 48;
/** What the incident post itself shows of a long alert (a stack trace): its first lines, readable on a phone. */
const PREVIEW_LINES = 15;
const PREVIEW_CHARS = 1500;
/** Sections per thread reply of a long alert: under Slack's 40,000 characters of a message. */
const SECTIONS_PER_REPLY = 12;
/** Longer link targets are shown as text (which may be split); longer labels are shortened. So a link fits any section. */
const MAX_LINK = 2000;
const MAX_LABEL = 300;
const MAX_RENDERED_LINK = 2400;

// ─── Reposts: the alert's links kept, everything else escaped ──────────────────────────────────

/**
 * A piece of repost text: `text` is shown as it is (escaped when rendered); with `url`, it is a link IMS
 * writes itself, to an http(s) or mailto target only.
 */
export interface TextPiece {
  text: string;
  url?: string;
}

/** A link target IMS may write: http(s) with a host, or mailto; spaces, `|`, `<`, `>` and `"` percent-encoded. */
export function linkTarget(target: string): string | undefined {
  const url = target.trim();
  if (!/^(?:https?:\/\/[^\s/?#]|mailto:\S)/i.test(url) || /[\u0000-\u001f\u007f]/.test(url) || url.length > MAX_LINK) return undefined;
  return url.replace(/[\s|<>"]/g, (c) => encodeURIComponent(c));
}

const BARE_URL = /\bhttps?:\/\/[^\s<>|"`]+/gi;

/** A bare URL without the punctuation that ends its sentence (`see https://x/y.`) or closes a bracket it is in. */
function trimUrl(url: string): string {
  const closing: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const count = (c: string) => url.split(c).length - 1;
  for (;;) {
    const last = url.at(-1)!;
    if (".,;:!?'*_~".includes(last) || (closing[last] && count(last) > count(closing[last]))) url = url.slice(0, -1);
    else return url;
  }
}

/** Plain (decoded) text as pieces: its bare http(s) URLs become links (Slack does not link them in `verbatim` text). */
export function plainPieces(text: string, into: TextPiece[] = []): TextPiece[] {
  let last = 0;
  for (const found of text.matchAll(BARE_URL)) {
    const shown = trimUrl(found[0]);
    const url = linkTarget(shown);
    if (!url) continue;
    if (found.index > last) into.push({ text: text.slice(last, found.index) });
    into.push({ text: shown, url });
    last = found.index + shown.length;
  }
  if (last < text.length) into.push({ text: text.slice(last) });
  return into;
}

/**
 * Slack mrkdwn as pieces: `<url>` and `<url|label>` with an http(s) or mailto target become links, bare
 * URLs too; every other control sequence (`<!here>`, `<@U…>`, `<!subteam^…>`, `<#C…>`, `<javascript:…>`)
 * stays text, so it is shown, never acted on. `encoded`: entity-encoded as Slack sends it (decoded here);
 * false for text already decoded (what the rules read, as the state keeps it).
 */
export function mrkdwnPieces(text: string, encoded = true): TextPiece[] {
  const decode = encoded ? decodeEntities : (s: string) => s;
  const pieces: TextPiece[] = [];
  let last = 0;
  for (const found of text.matchAll(/<([^<>]*)>/g)) {
    const bar = found[1].indexOf('|');
    const target = decode(bar < 0 ? found[1] : found[1].slice(0, bar));
    const url = linkTarget(target);
    if (!url) continue;
    plainPieces(decode(text.slice(last, found.index)), pieces);
    pieces.push({ text: bar < 0 ? target.trim() : decode(found[1].slice(bar + 1)), url });
    last = found.index + found[0].length;
  }
  plainPieces(decode(text.slice(last)), pieces);
  return pieces;
}

/**
 * The alert as a repost shows it: the text the rules read (`messageText`), with the links Slack showed kept
 * as links — `<url|label>` in mrkdwn, an attachment title's `title_link`, rich-text links, bare URLs.
 */
export function alertPieces(event: SlackMessageEvent, mode: 'readable' | 'legacy-json' = 'readable'): TextPiece[] {
  if (event.text && event.text.trim() !== '') return mrkdwnPieces(event.text);
  if (mode === 'legacy-json') return mrkdwnPieces(messageText(event, mode), false);
  const pieces: TextPiece[] = [];
  contentLines(event).forEach((line, i) => {
    if (i) pieces.push({ text: '\n' });
    for (const part of line) {
      const url = part.kind === 'link' ? linkTarget(part.url) : undefined;
      if (url) pieces.push({ text: decodeEntities(part.text), url });
      else if (part.kind === 'mrkdwn') pieces.push(...mrkdwnPieces(part.text));
      else plainPieces(decodeEntities(part.text), pieces);
    }
  });
  return pieces;
}

/** Pieces as mrkdwn for a `verbatim` text object: text escaped, links written by IMS with escaped labels. */
export function renderPieces(pieces: readonly TextPiece[]): string {
  return pieces.map((piece) => {
    if (piece.url === undefined) return escapeSlack(piece.text);
    const label = clip(piece.text.replace(/\s+/g, ' ').trim(), MAX_LABEL);
    const link = !label || label === piece.url ? `<${escapeSlack(piece.url)}>` : `<${escapeSlack(piece.url)}|${escapeSlack(label)}>`;
    // Too long for a section: shown as text (which can be split), the address included.
    return link.length <= MAX_RENDERED_LINK ? link : escapeSlack(piece.text === piece.url ? piece.url : `${piece.text} (${piece.url})`);
  }).join('');
}

/** At most `max` characters (code points, so no emoji is cut in half), `…` marking a cut. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, Math.max(0, max - 1)).join('')}…`;
}

/** The first `max` visible characters of pieces (a link counts its label), never cutting a link or a surrogate pair; `…` marks a cut. */
export function clipPieces(pieces: readonly TextPiece[], max: number): TextPiece[] {
  const out: TextPiece[] = [];
  let left = max;
  for (const piece of pieces) {
    const length = [...piece.text].length;
    if (length <= left) { out.push(piece); left -= length; continue; }
    // A link keeps its whole target; only its label is shortened, and only when nothing comes before it.
    if (piece.url === undefined || !out.length) out.push({ ...piece, text: clip(piece.text, Math.max(1, left)) });
    else out.push({ text: '…' });
    break;
  }
  return out;
}

/**
 * Split escaped mrkdwn into pieces of at most `limit` characters: at a line break when one is near, else at
 * a space; never inside an `&amp;` entity, a `<…|…>` link or a surrogate pair. Nothing is lost or repeated.
 */
export function splitText(text: string, limit = SECTION_LIMIT): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > limit) {
    const cut = cutPoint(rest, limit);
    pieces.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  pieces.push(rest);
  return pieces;
}

/** Escaped mrkdwn shortened to about `limit` characters as `splitText` cuts it, `…` marking a cut. */
function shorten(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, cutPoint(text, limit))}…`;
}

/** Where `splitText` cuts text longer than `limit`: a line break in the second half, else a space there, else `limit`; then made safe. */
function cutPoint(text: string, limit: number): number {
  let cut = text.lastIndexOf('\n', limit);
  if (cut < limit / 2) {
    const space = text.lastIndexOf(' ', limit);
    cut = space >= limit / 2 ? space : limit;
  }
  return safeCut(text, cut);
}

/** The nearest cut at or before `cut` that splits no `<…>` sequence, no entity and no surrogate pair; a sequence that starts the text is kept whole. */
function safeCut(text: string, cut: number): number {
  const open = text.lastIndexOf('<', cut - 1);
  if (open >= 0 && open > text.lastIndexOf('>', cut - 1)) {
    if (open > 0) cut = open;
    else {
      const close = text.indexOf('>', cut);
      if (close >= 0) return close + 1;
    }
  }
  const amp = text.lastIndexOf('&', cut - 1);
  const entity = amp >= 0 ? /^&(?:amp|lt|gt);/.exec(text.slice(amp, amp + 5)) : null;
  if (entity && amp + entity[0].length > cut && amp > 0) cut = amp;
  const code = text.charCodeAt(cut - 1);
  if (cut > 1 && code >= 0xd800 && code <= 0xdbff) cut--;
  return cut;
}

/** How a hotline member is mentioned: only this code (and never alert text) writes `<!…>` or `<@…>`. */
export function mentionOf(member: string): string {
  const special = member.replace(/^[@!]/, '').toLowerCase();
  if (special === 'here' || special === 'channel' || special === 'everyone') return `<!${special}>`;
  if (/^S[A-Z0-9]{2,}$/.test(member)) return `<!subteam^${member}>`;
  return `<@${member}>`;
}

/**
 * The head of a long alert and the rest: at most `PREVIEW_LINES` lines and about `PREVIEW_CHARS`
 * characters of rendered mrkdwn, cut at a line break (or, when the first line alone is longer, at a safe
 * place inside it). `rest` is empty when the whole alert fits.
 */
function previewOf(body: string): { preview: string; rest: string; moreLines: number } {
  const lines = body.split('\n');
  // `end`: where the lines taken so far end (the line break after them starts the rest).
  let end = -1;
  let taken = 0;
  while (taken < lines.length && taken < PREVIEW_LINES && end + 1 + lines[taken].length <= PREVIEW_CHARS) end += 1 + lines[taken++].length;
  if (taken === lines.length) return { preview: body, rest: '', moreLines: 0 };
  const cut = taken > 0 ? end : cutPoint(body, PREVIEW_CHARS);
  return { preview: body.slice(0, cut), rest: body.slice(cut), moreLines: taken > 0 ? lines.length - taken : 0 };
}

/**
 * The Block Kit messages of one incident post. The first is the incident: the label and the alert — of a
 * long alert only its first lines — then a context line (source channel, poster, time, link to the
 * original) and the hotline's mentions. The rest of a long alert continues in the post's thread, in order.
 * `pieces` is the alert with its links (`alertPieces`); without it, `text` is shown with its links found.
 */
export function incidentMessages(input: { head: string; text: string; pieces?: readonly TextPiece[]; sourceChannel: string; poster: string; at: string; permalink?: string; mentions?: string[]; hotline?: string }): { text: string; blocks: unknown[] }[] {
  const head = escapeSlack(input.head);
  const body = renderPieces(input.pieces ?? mrkdwnPieces(input.text, false));
  const { preview, rest, moreLines } = previewOf(body);
  const section = (text: string) => ({ type: 'section', text: { type: 'mrkdwn', text, verbatim: true } });
  const more = rest ? ` · ${moreLines > 0 ? `${moreLines} more line${moreLines === 1 ? '' : 's'}` : 'the rest'} in the thread` : '';
  const context = {
    type: 'context',
    elements: [{ type: 'mrkdwn', verbatim: true, text: `from <#${input.sourceChannel}> · ${escapeSlack(input.poster)} · ${input.at}${input.permalink ? ` · <${input.permalink}|original alert>` : ''}${more}` }],
  };
  const mentions = input.mentions?.length ? `:rotating_light: *Hotline ${escapeSlack(input.hotline ?? '')}*: ${input.mentions.join(' ')}` : '';
  const first = {
    text: shorten(escapeSlack(`${input.head} ${input.text}`), 2990) + (mentions ? `\n${input.mentions!.join(' ')}` : ''),
    blocks: [...splitText(`*${head}* ${preview}`).map(section), context, ...(mentions ? [{ type: 'section', text: { type: 'mrkdwn', text: mentions } }] : [])],
  };
  const sections = rest ? splitText(rest).map(section) : [];
  const replies: { text: string; blocks: unknown[] }[] = [];
  for (let i = 0; i < sections.length; i += SECTIONS_PER_REPLY) replies.push({ text: '', blocks: sections.slice(i, i + SECTIONS_PER_REPLY) });
  replies.forEach((reply, i) => { reply.text = `${head} (continued ${i + 1}/${replies.length})`; });
  return [first, ...replies];
}

/** One message IMS posts, and how to recognise it in Slack when the answer to posting it was lost. */
/** The text of Block Kit blocks, for a plain-text post. */
export function plainText(blocks: unknown[]): string {
  const text = blocks.map((b) => (b as { text?: { text?: string } }).text?.text).filter(Boolean).join('\n');
  return text.length > 3900 ? `${text.slice(0, 3900)}…` : text;
}

/** Text Slack can take: a lone UTF-16 surrogate (an emoji cut in half) becomes U+FFFD; objects are copied only when something changed. */
export function wellFormed<T>(value: T): T {
  if (typeof value === 'string') {
    const s = value as unknown as { isWellFormed(): boolean; toWellFormed(): string };
    return (s.isWellFormed() ? value : s.toWellFormed()) as T;
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const clean = wellFormed(item);
      if (clean !== item) (copy ??= [...value])[i] = clean;
    });
    return (copy ?? value) as T;
  }
  if (value && typeof value === 'object' && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    let copy: Record<string, unknown> | undefined;
    for (const [key, item] of Object.entries(value)) {
      const clean = wellFormed(item);
      if (clean !== item) (copy ??= { ...(value as Record<string, unknown>) })[key] = clean;
    }
    return (copy ?? value) as T;
  }
  return value;
}

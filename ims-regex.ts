/**
 * Pattern compilation for the rule engine: Go/RE2 patterns (as IMS.ini has them) translated to JavaScript,
 * and the shortcuts that keep matching cheap with hundreds of rules — redundant `.*` trimmed, and the
 * literals every match must contain found once per rule and searched for all rules in one pass.
 */
import type { Pattern } from './ims.ts';

/** What the scanner needs of a rule: the literals one of which any match contains (undefined: no prefilter). */
export interface RuleLiterals {
  literals?: string[];
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z', alpha: 'A-Za-z', ascii: '\\x00-\\x7F', blank: '\\t ', cntrl: '\\x00-\\x1F\\x7F', digit: '0-9',
  graph: '!-~', lower: 'a-z', print: ' -~', punct: '!-\\/:-@\\[-`{-~', space: '\\t\\n\\v\\f\\r ', upper: 'A-Z',
  word: '0-9A-Za-z_', xdigit: '0-9A-Fa-f',
};

/**
 * Translate a Go/RE2 regex (as written in IMS.ini) to a JavaScript RegExp: leading `(?i)`, `(?s)`,
 * `(?m)` become flags, `(?P<n>…)` becomes `(?<n>…)`, `\A`/`\z`, `\Q…\E` and `[[:alpha:]]` are rewritten.
 * A RegExp is returned as it is. Throws an Error saying what is wrong.
 */
export function translateRegex(pattern: Pattern): RegExp {
  // g and y make test() stateful (lastIndex): every other message would be missed.
  if (pattern instanceof RegExp) return /[gy]/.test(pattern.flags) ? new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, '')) : pattern;
  let source = pattern;
  const flags = new Set<string>();
  for (let lead = /^\(\?([a-zA-Z]+)\)/.exec(source); lead; lead = /^\(\?([a-zA-Z]+)\)/.exec(source)) {
    for (const flag of lead[1]) {
      if (!'ism'.includes(flag)) throw new Error(`'${pattern}' uses the flag (?${flag}), which JavaScript has no equivalent for; only i, s and m are supported`);
      flags.add(flag);
    }
    source = source.slice(lead[0].length);
  }
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const next = source[i + 1];
      if (next === undefined) throw new Error(`'${pattern}' does not compile: it ends with a lone backslash`);
      if (next === 'Q') {
        const end = source.indexOf('\\E', i + 2);
        const literal = source.slice(i + 2, end === -1 ? undefined : end);
        out += literal.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
        i = end === -1 ? source.length : end + 1;
        continue;
      }
      const hex = /^\\x\{([0-9A-Fa-f]{1,6})\}/.exec(source.slice(i));
      if (hex) {
        const code = Number.parseInt(hex[1], 16);
        if (code > 0xffff) flags.add('u');
        out += code > 0xffff ? `\\u{${hex[1]}}` : `\\u${hex[1].padStart(4, '0')}`;
        i += hex[0].length - 1;
        continue;
      }
      if (!inClass && next === 'A') { out += '(?<![\\s\\S])'; i++; continue; }
      if (!inClass && next === 'z') { out += '(?![\\s\\S])'; i++; continue; }
      if (next === 'p' || next === 'P') flags.add('u');
      if (next === 'C') throw new Error(`'${pattern}' uses \\C (any byte), which JavaScript cannot match`);
      out += c + next;
      i++;
      continue;
    }
    if (inClass) {
      const posix = /^\[:(\^?)([a-z]+):\]/.exec(source.slice(i));
      if (posix) {
        if (!POSIX_CLASSES[posix[2]]) throw new Error(`'${pattern}' uses an unknown class [:${posix[2]}:]`);
        if (posix[1]) throw new Error(`'${pattern}' uses a negated class [:^${posix[2]}:], which JavaScript lacks; write [^…] instead`);
        out += POSIX_CLASSES[posix[2]];
        i += posix[0].length - 1;
        continue;
      }
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (source[i + 1] === '^') { out += '^'; i++; }
      if (source[i + 1] === ']') { out += '\\]'; i++; }
      continue;
    }
    if (c === '(' && source[i + 1] === '?') {
      if (source.startsWith('(?P<', i)) { out += '(?<'; i += 3; continue; }
      if (/^\(\?[a-zA-Z-]+[:)]/.test(source.slice(i))) {
        throw new Error(`'${pattern}' sets flags inside the pattern (${/^\(\?[a-zA-Z-]+[:)]/.exec(source.slice(i))![0]}), which Node 20 cannot do; put them at the very start, e.g. (?i)…`);
      }
    }
    out += c;
  }
  try {
    return new RegExp(out, [...flags].join(''));
  } catch (error) {
    throw new Error(`'${pattern}' does not compile: ${(error as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
}

/**
 * Literals that any match must contain (one per top-level alternative), so most rules are rejected with a
 * cheap `includes` before the regex runs. Conservative: whatever it cannot prove, it leaves to the regex.
 * Off for `iu` patterns, where Unicode case folding (ſ → s, K → k) would defeat a lower-cased search.
 */
export function requiredLiterals(regex: RegExp): string[] | undefined {
  const ignoreCase = regex.flags.includes('i');
  // `v` classes nest (`[[a-z]x]`), which this scan does not follow; `iu` folds case beyond lower-casing.
  if (regex.flags.includes('v') || (ignoreCase && regex.flags.includes('u'))) return undefined;
  const source = regex.source;
  const branches: string[] = [];
  let best = '';
  let current = '';
  const cut = () => { if (current.length > best.length) best = current; current = ''; };
  const skipBalanced = (i: number, open: string, close: string) => {
    let depth = 0;
    for (; i < source.length; i++) {
      if (source[i] === '\\') { i++; continue; }
      if (open === '(' && source[i] === '[') { i = skipBalanced(i, '[', ']'); continue; }
      if (source[i] === open && (open === '(' || depth === 0)) depth++;
      else if (source[i] === close && --depth === 0) return i;
    }
    return source.length;
  };
  for (let i = 0; i <= source.length; i++) {
    const c = source[i];
    if (c === undefined || c === '|') { cut(); if (best.length < 2) return undefined; branches.push(best); best = ''; continue; }
    const quantifier = /^(?:[*+?]|\{(\d+)(?:,\d*)?\})\??/.exec(source.slice(i));
    if (quantifier) {
      const atLeastOnce = c === '+' || (c === '{' && Number(quantifier[1]) >= 1);
      if (!atLeastOnce) current = current.slice(0, -1);
      cut();
      i += quantifier[0].length - 1;
      continue;
    }
    if (c === '\\') {
      const next = source[i + 1] ?? '';
      if (/[.*+?^${}()|[\]\\/-]/.test(next)) { current += next; i++; continue; }
      cut();
      // Skip the escape's payload: \x41, \u0041, \u{1F600}, \p{Lu}, \k<name>, \cJ.
      const payload = /^\\(?:x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f]+\}|u[0-9A-Fa-f]{4}|[pP]\{[^}]*\}|k<[^>]*>|c[A-Za-z]|.)/.exec(source.slice(i));
      i += (payload?.[0].length ?? 2) - 1;
      continue;
    }
    if (c === '[') { cut(); i = skipBalanced(i, '[', ']'); continue; }
    if (c === '(') { cut(); i = skipBalanced(i, '(', ')'); continue; }
    if (c === '.' || c === '^' || c === '$') { cut(); continue; }
    current += c;
  }
  return branches.map((literal) => (ignoreCase ? literal.toLowerCase() : literal));
}

/** The same yes/no answer with less work: a leading or trailing `.*` never changes whether a search matches. */
export function fastTest(regex: RegExp): RegExp {
  let source = regex.source.replace(/^\.\*\??(?![*+?{])/, '');
  const tail = /\.\*\??$/.exec(source);
  if (tail) {
    const before = source.slice(0, tail.index);
    const backslashes = /\\*$/.exec(before)![0].length;
    if (backslashes % 2 === 0) source = before;
  }
  if (source === regex.source) return regex;
  try { return new RegExp(source || '(?:)', regex.flags.replace('g', '')); } catch { return regex; }
}

/**
 * All rules' required literals in one Aho-Corasick automaton (a dense DFA over ASCII), run once over the
 * lower-cased text: each rule then costs one array lookup instead of its own substring searches. Lower-casing
 * only ever adds candidates, never hides one, so it is a safe prefilter for case-sensitive literals too.
 */
export interface LiteralScanner {
  delta: Int32Array;
  outputs: (Int32Array | undefined)[];
  /** Per rule: ids of its literals (any one present lets the regex run), or undefined when it has no prefilter. */
  ruleLiterals: (Int32Array | undefined)[];
  seen: Uint32Array;
  stamp: number;
}
const scanners = new WeakMap<readonly RuleLiterals[], LiteralScanner>();

export function literalScanner(rules: readonly RuleLiterals[]): LiteralScanner {
  let scanner = scanners.get(rules);
  if (scanner) return scanner;
  const trie: Map<number, number>[] = [new Map()];
  const ends: number[][] = [[]];
  const ids = new Map<string, number>();
  const ruleLiterals = rules.map((rule) => {
    if (!rule.literals || rule.literals.some((literal) => /[^\x00-\x7f]/.test(literal))) return undefined;
    return Int32Array.from(rule.literals, (literal) => {
      const lower = literal.toLowerCase();
      let id = ids.get(lower);
      if (id === undefined) {
        id = ids.size;
        ids.set(lower, id);
        let node = 0;
        for (const char of lower) {
          const code = char.charCodeAt(0);
          let next = trie[node].get(code);
          if (next === undefined) { next = trie.length; trie.push(new Map()); ends.push([]); trie[node].set(code, next); }
          node = next;
        }
        ends[node].push(id);
      }
      return id;
    });
  });
  const delta = new Int32Array(trie.length * 128);
  const fail = new Int32Array(trie.length);
  const queue: number[] = [];
  for (const [code, child] of trie[0]) { delta[code] = child; queue.push(child); }
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head];
    ends[node].push(...ends[fail[node]]);
    for (let code = 0; code < 128; code++) {
      const child = trie[node].get(code);
      if (child === undefined) { delta[node * 128 + code] = delta[fail[node] * 128 + code]; continue; }
      fail[child] = delta[fail[node] * 128 + code];
      delta[node * 128 + code] = child;
      queue.push(child);
    }
  }
  scanner = { delta, outputs: ends.map((e) => (e.length ? Int32Array.from(e) : undefined)), ruleLiterals, seen: new Uint32Array(ids.size), stamp: 0 };
  scanners.set(rules, scanner);
  return scanner;
}

export function scanLiterals(scanner: LiteralScanner, text: string): number {
  const { delta, outputs, seen } = scanner;
  const stamp = (scanner.stamp = (scanner.stamp + 1) >>> 0 || 1);
  const lower = text.toLowerCase();
  let state = 0;
  for (let i = 0; i < lower.length; i++) {
    const code = lower.charCodeAt(i);
    state = code < 128 ? delta[state * 128 + code] : 0;
    const found = outputs[state];
    if (found) for (let k = 0; k < found.length; k++) seen[found[k]] = stamp;
  }
  return stamp;
}

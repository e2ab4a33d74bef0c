/**
 * Pattern compilation for the rule engine. Rules run on RE2 (the `re2` package, Google's RE2: matching time
 * linear in the text, the engine and syntax IMS.ini patterns were written for); a pattern RE2 cannot run is
 * refused with the reason, unless its rule opted in to JavaScript's backtracking engine, which then runs under
 * a hard time limit. Also the shortcuts that keep matching cheap with hundreds of rules: redundant `.*`
 * trimmed, and the literals every match must contain found once per rule and searched for all rules in one pass.
 */
import vm from 'node:vm';
import RE2 from 're2';
import type { Logger, Pattern } from './ims.ts';

/** What the scanner needs of a rule: the literals one of which any match contains (undefined: no prefilter). */
export interface RuleLiterals {
  literals?: string[];
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z', alpha: 'A-Za-z', ascii: '\\x00-\\x7F', blank: '\\t ', cntrl: '\\x00-\\x1F\\x7F', digit: '0-9',
  graph: '!-~', lower: 'a-z', print: ' -~', punct: '!-\\/:-@\\[-`{-~', space: '\\t\\n\\v\\f\\r ', upper: 'A-Z',
  word: '0-9A-Za-z_', xdigit: '0-9A-Fa-f',
};

// ───────────────────────────── the linear-time engine (RE2) ─────────────────────────────

// RE2 objects are RegExp look-alikes (test, exec, source, flags, Symbol.match…) with every property their own;
// linking their prototype to RegExp's makes them pass `instanceof RegExp`, so code and configs that check for a
// RegExp (plugins, describe(), toSource()) take them as they took JavaScript's.
if (!(RE2.prototype instanceof RegExp)) Object.setPrototypeOf(RE2.prototype, RegExp.prototype);

/** A compiled pattern that RE2 runs. */
export type LinearRegExp = RE2;

/** Whether RE2 runs `regex` (else it is JavaScript's: a rule that opted in to backtracking). */
export function isLinear(regex: RegExp): regex is LinearRegExp {
  return regex instanceof RE2;
}

/** Why a pattern cannot run on RE2, and what to write instead. */
export class LinearEngineRefusal extends Error {
  constructor(readonly pattern: Pattern, readonly construct: string, readonly fix: string) {
    super(`${shown(pattern)} uses ${construct}, which the linear-time engine (RE2) cannot run; ${fix}`);
  }
}

/** A pattern as messages show it: a string quoted, a RegExp as a literal (`/…/i`). */
const shown = (pattern: Pattern) => (typeof pattern === 'string' ? `'${pattern}'` : String(pattern));

/**
 * Compile a pattern for RE2: a string in Go/RE2 syntax (as IMS.ini has them: `(?i)`, `(?P<n>…)`, `\A`, `\z`,
 * `\Q…\E`, `[[:alpha:]]`, mid-pattern flags such as `(?i:…)`), or a JavaScript RegExp (its flags kept, `g` and
 * `y` dropped). Leading `(?i)`, `(?s)`, `(?m)` become the RegExp's flags. The result is `instanceof RegExp`;
 * `test`/`exec` also take UTF-8 bytes (a Uint8Array), which is what the rule engine gives them. Throws a
 * LinearEngineRefusal for what RE2 cannot run (backreferences, lookarounds…), an Error for a broken pattern.
 */
export function translateRegex(pattern: Pattern): RegExp {
  if (pattern instanceof RE2) return pattern.global || pattern.sticky ? new RE2(pattern.source, pattern.flags.replace(/[gy]/g, '')) : pattern;
  let source: string;
  let flags = '';
  if (pattern instanceof RegExp) {
    source = javaScriptClasses(pattern.source);
    // g and y would make test() stateful (lastIndex): every other message would be missed. RE2 is always u.
    flags = pattern.flags.replace(/[^ims]/g, '');
  } else {
    source = pattern;
    for (let lead = /^\(\?([ims]+)\)/.exec(source); lead; lead = /^\(\?([ims]+)\)/.exec(source)) {
      for (const flag of lead[1]) if (!flags.includes(flag)) flags += flag;
      source = source.slice(lead[0].length);
    }
    source = quoteLiterals(pattern, source);
  }
  try {
    return new RE2(source, flags);
  } catch (error) {
    throw refusal(pattern, (error as Error).message);
  }
}

/**
 * `\Q…\E` spelled out as escaped characters: the `re2` package rewrites some JavaScript syntax (`/`, `(?<`,
 * `\u`) before RE2 sees the pattern, which must not reach inside a quoted literal. `\C` (one byte, possibly in
 * the middle of a character) is refused, as Go's regexp refuses it.
 */
function quoteLiterals(pattern: Pattern, source: string): string {
  if (!source.includes('\\')) return source;
  let out = '';
  for (let i = 0; i < source.length; i++) {
    if (source[i] !== '\\') { out += source[i]; continue; }
    const next = source[i + 1];
    if (next === 'C') throw new Error(`${shown(pattern)} uses \\C (any byte), which Go's regexp and IMS do not support; use . (any character)`);
    if (next !== 'Q') { out += source.slice(i, i + 2); i++; continue; }
    const end = source.indexOf('\\E', i + 2);
    out += source.slice(i + 2, end === -1 ? undefined : end).replace(/[!-/:-@[-`{-~]/g, '\\$&');
    i = end === -1 ? source.length : end + 1;
  }
  return out;
}

/** JavaScript's `[^]` (any character) and `[]` (nothing), which RE2 reads as the start of a class holding `]`. */
function javaScriptClasses(source: string): string {
  if (!source.includes('[]') && !source.includes('[^]')) return source;
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') { out += source.slice(i, i + 2); i++; continue; }
    if (!inClass && source.startsWith('[^]', i)) { out += '[\\s\\S]'; i += 2; continue; }
    if (!inClass && source.startsWith('[]', i)) { out += '[^\\s\\S]'; i += 1; continue; }
    if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    out += c;
  }
  return out;
}

/** RE2's complaint about a pattern, said in terms of what the user wrote and what to write instead. */
function refusal(pattern: Pattern, reason: string): Error {
  const text = shown(pattern);
  const refuse = (construct: string, fix: string) => new LinearEngineRefusal(pattern, construct, fix);
  const escape = /^invalid escape sequence: \\(.)/.exec(reason)?.[1];
  const repeatInstead = "write the group's pattern again instead of referring back to it ((\\w+) \\1 → (\\w+) \\w+, which also takes two different words)";
  if (escape && /[1-9]/.test(escape)) return refuse(`a backreference \\${escape}`, repeatInstead);
  if (escape === 'k' || /\(\?P=/.test(String(pattern))) return refuse('a named backreference (\\k<…> or (?P=…))', repeatInstead);
  const operator = /^invalid perl operator: (\(\?<?[=!>#]?)/.exec(reason)?.[1];
  const suppressInstead = 'match the unwanted case with a suppression rule placed before this one (suppress: true, or a leading ! on the date regex in IMS.ini)';
  if (operator === '(?=') return refuse('a lookahead (?=…)', 'match the text itself (disk(?= full) → disk full)');
  if (operator === '(?!') return refuse('a negative lookahead (?!…)', suppressInstead);
  if (operator === '(?<=') return refuse('a lookbehind (?<=…)', 'match the text itself ((?<=host )db → host db)');
  if (operator === '(?<!') return refuse('a negative lookbehind (?<!…)', suppressInstead);
  if (operator === '(?>') return refuse('an atomic group (?>…)', 'write a plain group (?:…): RE2 never backtracks, so it is not needed');
  const repetition = /^bad repetition operator: (\S+)/.exec(reason)?.[1];
  if (repetition && /^(?:[*+?]|\{[\d,]*\})\+$/.test(repetition)) return refuse(`a possessive quantifier (${repetition})`, `drop the last +: RE2 never backtracks, so it is not needed`);
  const size = /^invalid repetition size: (\S+)/.exec(reason)?.[1];
  if (size) return new Error(`${text} repeats too many times (${size}): RE2 allows at most 1000 repetitions, counting nested counts multiplied ((a{100}){100} is 10,000); use + or * instead of a large count`);
  const posix = /^invalid character class range: \[:\^?(\w+):\]/.exec(reason)?.[1];
  if (posix) return new Error(`${text} uses an unknown class [:${posix}:]; known: ${Object.keys(POSIX_CLASSES).join(', ')}`);
  if (reason === 'trailing \\') return new Error(`${text} does not compile: it ends with a lone backslash`);
  if (/^pattern too large/.test(reason)) return new Error(`${text} is too large for RE2 once compiled (counted repetitions inside each other multiply); simplify it`);
  return new Error(`${text} does not compile: ${reason}`);
}

/**
 * Where texts are converted to UTF-8 for RE2, reused from one message to the next: a fresh Buffer per text
 * costs more than the search, and RE2 takes a plain Uint8Array view faster than a Buffer. Whoever encoded last
 * owns it; a Subject whose bytes were overwritten since encodes its text again.
 */
class Scratch {
  static readonly KEEP_BYTES = 256 * 1024;
  #buffer = Buffer.allocUnsafeSlow(4096);
  owner?: Subject;

  encode(text: string, owner: Subject): Uint8Array {
    const most = text.length * 3;
    if (most > this.#buffer.length) this.#buffer = Buffer.allocUnsafeSlow(Math.max(most, 2 * this.#buffer.length));
    this.owner = owner;
    return new Uint8Array(this.#buffer.buffer, this.#buffer.byteOffset, this.#buffer.write(text, 0, 'utf8'));
  }
}
const messageScratch = new Scratch();
const clockScratch = new Scratch();

/**
 * One text as the rules search it: converted to UTF-8 once, when the first rule that passes the literal
 * prefilter needs RE2, however many rules then run on it (RE2 would convert a string on every call).
 * `kind` keeps a message and its clock apart, as both are searched in turn.
 */
export class Subject {
  #bytes?: Uint8Array;
  /** Undefined: the bytes are the Subject's own (a huge text, which must not grow the shared space for good). */
  #scratch?: Scratch;
  constructor(readonly text: string, kind: 'message' | 'clock' = 'message') {
    if (text.length * 3 <= Scratch.KEEP_BYTES) this.#scratch = kind === 'clock' ? clockScratch : messageScratch;
  }

  get bytes(): Uint8Array {
    if (!this.#scratch) return (this.#bytes ??= new Uint8Array(Buffer.from(this.text, 'utf8')));
    if (this.#bytes && this.#scratch.owner === this) return this.#bytes;
    return (this.#bytes = this.#scratch.encode(this.text, this));
  }
}

/** Whether `regex` (RE2, or an opted-in backtracking pattern) finds a match in the subject. */
export function searchIn(regex: RegExp, subject: Subject, log?: OverrunLog): boolean {
  if (regex instanceof BudgetedRegExp) return regex.run(subject.text, log) !== null;
  return regex.test(subject.bytes as unknown as string);
}

/** The named groups `regex` captures in the subject (undefined for a group that took no part). */
export function namedGroups(regex: RegExp, subject: Subject, log?: OverrunLog): Record<string, string | undefined> {
  // On RE2, exec costs some microseconds whatever the input (it builds its result through the C++ API); on a
  // string it costs less than on a Buffer, which gets one Buffer per group.
  return { ...(regex instanceof BudgetedRegExp ? regex.run(subject.text, log) : regex.exec(subject.text))?.groups };
}

// ───────────────────────────── opted-in backtracking, under a time budget ─────────────────────────────

/** How long an opted-in (backtracking) pattern may run on one text; past it the text counts as not matching. */
export const BACKTRACKING_BUDGET_MS = 5;
/** At most one overrun line per pattern per minute; the next line counts those left out. */
const OVERRUN_LOG_EVERY_MS = 60_000;

/** Where overruns are reported: the runtime passes its logger; without one, standard error. */
export type OverrunLog = Pick<Logger, 'warn'>;
const standardError: OverrunLog = { warn: (message) => void process.stderr.write(`${new Date().toISOString()} WARN  ${message}\n`) };

/**
 * A JavaScript RegExp (backreferences, lookarounds allowed) for a rule that opted in with `backtracking: true`.
 * `exec`/`test` run it with a hard time limit of BACKTRACKING_BUDGET_MS: past it V8 stops the regex where it
 * is (vm's timeout: a watchdog thread interrupts the isolate, which irregexp checks while it backtracks), the
 * text counts as not matching, and the overrun is logged. Only `exec` and `test` are limited; other RegExp
 * methods are not meant for it.
 */
export class BudgetedRegExp extends RegExp {
  static override get [Symbol.species]() { return RegExp; }
  #lastText?: string;
  #lastResult: RegExpExecArray | null = null;
  #loggedAt = -Infinity;
  #unlogged = 0;

  /** `label` names the pattern in log lines, e.g. `rule 4 (ims.config.ts: rules[3].match)`. */
  constructor(regex: RegExp, readonly label: string) {
    super(regex.source, regex.flags.replace(/[gy]/g, ''));
    // Made now, at load: creating the context takes some milliseconds, which the first message must not pay.
    sandbox ??= vm.createContext({ exec: RegExp.prototype.exec, regex: undefined, text: '' });
    execScript ??= new vm.Script('exec.call(regex, text)', { filename: 'ims-backtracking-rule' });
  }

  override exec(text: string): RegExpExecArray | null {
    return this.run(String(text));
  }

  override test(text: string): boolean {
    return this.run(String(text)) !== null;
  }

  /** `exec` with overruns and failures reported to `log`. */
  run(text: string, log: OverrunLog = standardError): RegExpExecArray | null {
    // matchRules asks test() then exec() for the groups, and a redelivered alert comes twice: one run each.
    if (text === this.#lastText) return this.#lastResult;
    let result: RegExpExecArray | null = null;
    for (let attempt = 1; ; attempt++) {
      const cpu = process.cpuUsage();
      try {
        result = execWithin(this, text, BACKTRACKING_BUDGET_MS);
        break;
      } catch (error) {
        const overrun = (error as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT';
        // The limit is wall-clock time. When the process got less than half of it on a CPU, the machine was busy,
        // not the regex: it gets one more try.
        const used = process.cpuUsage(cpu);
        if (overrun && attempt === 1 && (used.user + used.system) / 1000 < BACKTRACKING_BUDGET_MS / 2) continue;
        this.#report(log, overrun
          ? `ran past its ${BACKTRACKING_BUDGET_MS} ms budget on a ${text.length.toLocaleString('en-US')}-character text and was stopped`
          : `failed on a ${text.length.toLocaleString('en-US')}-character text: ${(error as Error).message}`);
        break;
      }
    }
    this.#lastText = text;
    this.#lastResult = result;
    return result;
  }

  #report(log: OverrunLog, what: string): void {
    const now = Date.now();
    if (now - this.#loggedAt < OVERRUN_LOG_EVERY_MS) { this.#unlogged++; return; }
    const more = this.#unlogged ? ` (${this.#unlogged} more since the last line)` : '';
    log.warn(`${this.label}: the backtracking pattern ${String(this)} ${what}; counted as no match, later rules were still tried${more}`);
    this.#loggedAt = now;
    this.#unlogged = 0;
  }
}

let sandbox: vm.Context | undefined;
let execScript: vm.Script | undefined;

/** RegExp.prototype.exec itself (not a subclass's override), stopped after `ms` (throws ERR_SCRIPT_EXECUTION_TIMEOUT). */
function execWithin(regex: RegExp, text: string, ms: number): RegExpExecArray | null {
  if (!sandbox || !execScript) throw new Error('the backtracking sandbox was not prepared');
  sandbox.regex = regex;
  sandbox.text = text;
  try {
    return execScript.runInContext(sandbox, { timeout: ms }) as RegExpExecArray | null;
  } finally {
    sandbox.regex = undefined;
    sandbox.text = '';
  }
}

/**
 * Translate a Go/RE2 regex (as written in IMS.ini) to a JavaScript RegExp, for rules that opted in to the
 * backtracking engine (`backtracking: true`): leading `(?i)`, `(?s)`, `(?m)` become flags, `(?P<n>…)` becomes
 * `(?<n>…)`, `\A`/`\z`, `\Q…\E` and `[[:alpha:]]` are rewritten. A RegExp is returned as it is (without
 * `g`/`y`). Throws an Error saying what is wrong.
 */
export function translateToJavaScript(pattern: Pattern): RegExp {
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
 * Reads RE2 syntax for an RE2 regex (`[]a]` is a class holding `]`, `[[:alpha:]]`, `\x{41}`, `\pL`) and
 * JavaScript's for a backtracking one. Case folding beyond lower-casing (ſ → s) is the scanner's business.
 */
export function requiredLiterals(regex: RegExp): string[] | undefined {
  const ignoreCase = regex.flags.includes('i');
  // `v` classes nest (`[[a-z]x]`), which this scan does not follow.
  if (regex.flags.includes('v')) return undefined;
  const re2 = isLinear(regex);
  const source = regex.source;
  const branches: string[] = [];
  let best = '';
  let current = '';
  const cut = () => { if (current.length > best.length) best = current; current = ''; };
  /** The index of the `]` that closes the class opened at `i`. */
  const skipClass = (i: number) => {
    i += source[i + 1] === '^' ? 2 : 1;
    if (re2 && source[i] === ']') i++;
    for (; i < source.length; i++) {
      if (source[i] === '\\') { i++; continue; }
      if (re2 && source.startsWith('[:', i)) { const end = source.indexOf(':]', i + 2); if (end !== -1) { i = end + 1; continue; } }
      if (source[i] === ']') return i;
    }
    return source.length;
  };
  /** The index of the `)` that closes the group opened at `i`. */
  const skipGroup = (i: number) => {
    let depth = 0;
    for (; i < source.length; i++) {
      if (source[i] === '\\') { i++; continue; }
      if (source[i] === '[') { i = skipClass(i); continue; }
      if (source[i] === '(') depth++;
      else if (source[i] === ')' && --depth === 0) return i;
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
      // Skip the escape's payload: \x41, \x{41}, \u0041, \u{1F600}, \p{Lu}, \pL, \k<name>, \cJ.
      const payload = /^\\(?:x[0-9A-Fa-f]{2}|x\{[0-9A-Fa-f]+\}|u\{[0-9A-Fa-f]+\}|u[0-9A-Fa-f]{4}|[pP](?:\{[^}]*\}|[A-Za-z])|k<[^>]*>|c[A-Za-z]|.)/.exec(source.slice(i));
      i += (payload?.[0].length ?? 2) - 1;
      continue;
    }
    if (c === '[') { cut(); i = skipClass(i); continue; }
    if (c === '(') { cut(); i = skipGroup(i); continue; }
    if (c === '.' || c === '^' || c === '$') { cut(); continue; }
    current += c;
  }
  return branches.map((literal) => (ignoreCase ? literal.toLowerCase() : literal));
}

/** The same yes/no answer with less work: a leading or trailing `.*` never changes whether a search matches. */
export function fastTest(regex: RegExp): RegExp {
  if (regex instanceof BudgetedRegExp) return regex;
  let source = regex.source.replace(/^\.\*\??(?![*+?{])/, '');
  const tail = /\.\*\??$/.exec(source);
  if (tail) {
    const before = source.slice(0, tail.index);
    const backslashes = /\\*$/.exec(before)![0].length;
    if (backslashes % 2 === 0) source = before;
  }
  if (source === regex.source) return regex;
  try { return isLinear(regex) ? new RE2(source || '(?:)', regex.flags) : new RegExp(source || '(?:)', regex.flags.replace('g', '')); } catch { return regex; }
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
    // Case-insensitive RE2 (and JavaScript's `iu`) matches ſ (U+017F) for s; lower-casing keeps it ſ. (K, the
    // Kelvin sign, is the only other non-ASCII letter that folds into ASCII, and it lower-cases to k.)
    state = code < 128 ? delta[state * 128 + code] : code === 0x17f ? delta[state * 128 + 115] : 0;
    const found = outputs[state];
    if (found) for (let k = 0; k < found.length; k++) seen[found[k]] = stamp;
  }
  return stamp;
}

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
 * `\Q…\E`, `[[:alpha:]]`, mid-pattern flags such as `(?i:…)`), or a JavaScript RegExp (`i`, `m`, `s` kept, `u`
 * implied, `g`, `y` and `d` dropped). Leading `(?i)`, `(?s)`, `(?m)` become the RegExp's flags. The result is
 * `instanceof RegExp`; `test`/`exec` also take UTF-8 bytes (a Uint8Array), which is what the rule engine gives
 * them. Throws a LinearEngineRefusal for what RE2 cannot run (backreferences, lookarounds, the `v` flag…), an
 * Error for a broken pattern.
 */
export function translateRegex(pattern: Pattern): RegExp {
  if (pattern instanceof RE2) return pattern.global || pattern.sticky ? new RE2(pattern.source, pattern.flags.replace(/[gy]/g, '')) : pattern;
  let source: string;
  let flags = '';
  if (pattern instanceof RegExp) {
    // The v flag changes what a class means ([\p{L}--[a-z]]: letters but a-z); RE2 would read the same source as
    // a different class, silently.
    if (pattern.flags.includes('v')) {
      throw new LinearEngineRefusal(pattern, 'the v flag (class set operations such as [\\p{L}--[a-z]], [A&&B], nested classes, \\q{…})',
        'write the class without set operations and use the u flag instead ([\\p{L}--[a-z]] → [^\\P{L}a-z], letters but a-z)');
    }
    source = javaScriptClasses(pattern.source);
    // g and y would make test() stateful (lastIndex): every other message would be missed; d only adds match
    // indices. RE2 is always u.
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
 * `kind` keeps a message and its clock apart, as both are searched in turn. `budget` is the message's time
 * for opted-in (backtracking) patterns, shared by the message and its clock.
 */
export class Subject {
  #bytes?: Uint8Array;
  /** Undefined: the bytes are the Subject's own (a huge text, which must not grow the shared space for good). */
  #scratch?: Scratch;
  constructor(readonly text: string, kind: 'message' | 'clock' = 'message', readonly budget?: BacktrackingBudget) {
    if (text.length * 3 <= Scratch.KEEP_BYTES) this.#scratch = kind === 'clock' ? clockScratch : messageScratch;
  }

  get bytes(): Uint8Array {
    if (!this.#scratch) return (this.#bytes ??= new Uint8Array(Buffer.from(this.text, 'utf8')));
    if (this.#bytes && this.#scratch.owner === this) return this.#bytes;
    return (this.#bytes = this.#scratch.encode(this.text, this));
  }
}

/**
 * Whether `regex` (RE2, or an opted-in backtracking pattern) finds a match in the subject. An opted-in pattern
 * runs within what is left of the subject's budget (without one: a budget of its own, reported at once).
 */
export function searchIn(regex: RegExp, subject: Subject): boolean {
  if (regex instanceof BudgetedRegExp) return budgetedRun(regex, subject) !== null;
  return regex.test(subject.bytes as unknown as string);
}

/** The named groups `regex` captures in the subject (undefined for a group that took no part). */
export function namedGroups(regex: RegExp, subject: Subject): Record<string, string | undefined> {
  // On RE2, exec costs some microseconds whatever the input (it builds its result through the C++ API); on a
  // string it costs less than on a Buffer, which gets one Buffer per group.
  return { ...(regex instanceof BudgetedRegExp ? budgetedRun(regex, subject) : regex.exec(subject.text))?.groups };
}

function budgetedRun(regex: BudgetedRegExp, subject: Subject): RegExpExecArray | null {
  return subject.budget ? regex.within(subject.text, subject.budget) : regex.run(subject.text);
}

// ───────────────────────────── opted-in backtracking, under a time budget ─────────────────────────────

/**
 * The default time all opted-in (backtracking) patterns together may take on one message (config
 * `backtrackingBudgetMs`); once spent, the opted-in rules the message has not passed yet count as not matching.
 */
export const BACKTRACKING_BUDGET_MS = 5;
/** At most one overrun line per pattern per minute; the next line counts those left out. */
const OVERRUN_LOG_EVERY_MS = 60_000;
/** A skipped-rules list longer than this is cut in the log line ("and 12 more"). */
const SKIPPED_NAMED = 10;

/** Where overruns are reported: the runtime passes its logger; without one, standard error. */
export type OverrunLog = Pick<Logger, 'warn'>;
const standardError: OverrunLog = { warn: (message) => void process.stderr.write(`${new Date().toISOString()} WARN  ${message}\n`) };

/** What a limited stretch of work came to: its value, or stopped at the limit. */
export type Guarded<T> = { done: true; value: T } | { done: false };

/**
 * One message's time for opted-in (backtracking) patterns, on the wall clock (what holds up the event loop),
 * shared by every such rule's `match`, `when` and named groups. The work runs under one hard limit, what is
 * left (`guard`): one watchdog per message, not one per pattern, as each costs a thread (tenths of a
 * millisecond on a busy machine, which would eat the budget). Past the limit V8 stops whatever runs; the
 * pattern running then counts as not matching, the budget is spent, and the opted-in patterns not run yet
 * count as not matching too (RE2 rules still run). `report()`, after the message, writes one warning
 * (rate-limited) naming the pattern that was stopped and the rules skipped.
 *
 * Only state that a stop at any point leaves whole is touched inside the limit (V8's termination cannot be
 * caught, `finally` does not run): single-field stores, and nothing is logged until `report()`.
 */
export class BacktrackingBudget {
  #leftMs: number | undefined;
  #guarding = false;
  /** When the running `guard` started, and what was left then. */
  #guardStart = 0;
  #guardLeftMs = 0;
  /** The pattern running, while it runs (still set after a stop: that is how the stop knows whom it stopped). */
  #running?: { regex: BudgetedRegExp; chars: number; since: number; leftMs: number };
  #patternsMs = 0;
  #stopped?: { regex: BudgetedRegExp; chars: number; leftMs: number; cpuMs: number; elapsedMs: number };
  #failed: { regex: BudgetedRegExp; chars: number; message: string }[] = [];
  #skipped: BudgetedRegExp[] = [];
  #skippedChars = 0;

  /** `totalMs` undefined: the budget of the first opted-in pattern met (the config's, which it carries). */
  constructor(readonly totalMs?: number, readonly log: OverrunLog = standardError) {
    this.#leftMs = totalMs;
  }

  /** Milliseconds left (the whole budget before anything ran); `regex` supplies the budget when none was given. */
  leftFor(regex: BudgetedRegExp): number {
    return (this.#leftMs ??= regex.budgetMs);
  }

  /** Whether `guard` is running: opted-in patterns then run directly, under its limit. */
  get guarding(): boolean {
    return this.#guarding;
  }

  /** Whether `regex` was stopped on this message: it is not run again for it. */
  stoppedOn(regex: BudgetedRegExp): boolean {
    return this.#stopped?.regex === regex;
  }

  /**
   * Run `work` under one hard limit, what is left of the budget (which `regex` supplies when none was given);
   * the time it takes is charged. Not for nesting (`guarding`), nor for a budget already spent.
   */
  guard<T>(work: () => T, regex: BudgetedRegExp): Guarded<T> {
    const leftMs = this.leftFor(regex);
    let outcome: Guarded<T> = { done: false };
    const cpu = process.cpuUsage();
    const start = performance.now();
    this.#guardStart = start;
    this.#guardLeftMs = leftMs;
    this.#guarding = true;
    try {
      // Whole milliseconds (vm's unit), rounded up: a stop overshoots what was left by less than 1 ms, and
      // nothing opted-in runs after it. What finished before the stop is kept, even if the stop came after.
      runWithin(Math.ceil(leftMs), () => { outcome = { done: true, value: work() }; });
    } finally {
      this.#guarding = false;
    }
    const elapsedMs = performance.now() - start;
    if (outcome.done) {
      this.#leftMs = leftMs - elapsedMs;
      return outcome;
    }
    // Stopped. No second try when the machine was busy: the limit is the time the event loop was held up, and a
    // second try could only come out of a budget already spent. The log line says when that happened.
    this.#leftMs = 0;
    const running = this.#running;
    this.#running = undefined;
    if (running) {
      const used = process.cpuUsage(cpu);
      this.#patternsMs += performance.now() - running.since;
      this.#stopped ??= { regex: running.regex, chars: running.chars, leftMs: running.leftMs, cpuMs: (used.user + used.system) / 1000, elapsedMs };
    }
    return outcome;
  }

  /** RegExp.prototype.exec itself, timed; called inside `guard`. A failure (not a stop) counts as no match. */
  exec(regex: BudgetedRegExp, text: string): RegExpExecArray | null {
    const since = performance.now();
    const leftMs = this.#guarding ? this.#guardLeftMs - (since - this.#guardStart) : this.leftFor(regex);
    this.#running = { regex, chars: text.length, since, leftMs };
    let result: RegExpExecArray | null = null;
    try {
      result = regexpExec.call(regex, text);
    } catch (error) {
      this.#failed.push({ regex, chars: text.length, message: (error as Error).message });
    }
    this.#running = undefined;
    this.#patternsMs += performance.now() - since;
    return result;
  }

  /** An opted-in pattern the message reached after the budget was spent. */
  skip(regex: BudgetedRegExp, chars: number): void {
    if (!this.#skipped.includes(regex) && !this.stoppedOn(regex)) this.#skipped.push(regex);
    this.#skippedChars = Math.max(this.#skippedChars, chars);
  }

  /** After the message: failures, the stop and the skipped rules, each pattern's line rate-limited. Resets the record. */
  report(): void {
    const stopped = this.#stopped;
    const skipped = this.#skipped;
    const failed = this.#failed;
    if (!stopped && !skipped.length && !failed.length) return;
    this.#stopped = undefined;
    this.#skipped = [];
    this.#failed = [];
    for (const failure of failed) {
      failure.regex.warn(this.log, `failed on a ${thousands(failure.chars)}-character text: ${failure.message}; counted as no match, later rules were still tried`);
    }
    if (!stopped && !skipped.length) return;
    const budgetMs = this.totalMs ?? (stopped?.regex ?? skipped[0]).budgetMs;
    const later = skipped.length ? 'later RE2 rules were still tried' : 'later rules were still tried';
    if (stopped) {
      const rest = !skipped.length ? ''
        : `; that spent the message's budget, so ${named(skipped)} ${skipped.length === 1 ? 'was not run and counts' : 'were not run and count'} as no match too`;
      const notes = [
        ...(budgetMs - stopped.leftMs >= 0.5 ? [`${fmtMs(budgetMs - stopped.leftMs)} ms of the budget had gone to earlier rules`] : []),
        ...(stopped.cpuMs < stopped.elapsedMs / 2 ? [`the process got only ${fmtMs(stopped.cpuMs)} ms of CPU in those ${fmtMs(stopped.elapsedMs)} ms: the machine was busy`] : []),
      ];
      stopped.regex.warn(this.log, `ran past its ${fmtMs(budgetMs)} ms budget on a ${thousands(stopped.chars)}-character text and was stopped; `
        + `counted as no match${rest}; ${later}${notes.length ? ` (${notes.join('; ')})` : ''}`);
    } else {
      const others = skipped.length > 1 ? `, as were ${named(skipped.slice(1))}` : '';
      skipped[0].warn(this.log, `was not run on a ${thousands(this.#skippedChars)}-character text: the message's ${fmtMs(budgetMs)} ms budget for backtracking `
        + `patterns was spent (${fmtMs(this.#patternsMs)} ms of it by opted-in patterns, the rest by other rules matched meanwhile); counted as no match${others}; ${later}`);
    }
  }
}

/** 40,000: without toLocaleString, whose first call loads ICU data (some 15 ms, inside a message's matching). */
const thousands = (n: number) => String(n).replace(/\B(?=(\d{3})+$)/g, ',');
const fmtMs = (ms: number) => (Number.isInteger(ms) ? String(ms) : ms.toFixed(ms < 1 ? 2 : 1));
const named = (regexes: BudgetedRegExp[]) =>
  regexes.slice(0, SKIPPED_NAMED).map((regex) => regex.label).join(', ') + (regexes.length > SKIPPED_NAMED ? ` and ${regexes.length - SKIPPED_NAMED} more` : '');

/**
 * A JavaScript RegExp (backreferences, lookarounds allowed) for a rule that opted in with `backtracking: true`.
 * It runs with a hard time limit: within the rule engine, what is left of the message's BacktrackingBudget;
 * called on its own (`exec`, `test`), `budgetMs`. Past it V8 stops the regex where it is (vm's timeout: a
 * watchdog thread interrupts the isolate, which irregexp checks while it backtracks), the text counts as not
 * matching, and the overrun is logged. Only `exec` and `test` are limited; other RegExp methods are not meant
 * for it.
 */
export class BudgetedRegExp extends RegExp {
  static override get [Symbol.species]() { return RegExp; }
  /** The last answer (one field: a stop between two stores cannot pair a text with another text's answer). */
  #last?: { text: string; result: RegExpExecArray | null };
  #loggedAt = -Infinity;
  #unlogged = 0;

  /**
   * `label` names the pattern in log lines, e.g. `rule 4 (ims.config.ts: rules[3].match)`; `budgetMs` is the
   * per-message budget (the config's `backtrackingBudgetMs`).
   */
  constructor(regex: RegExp, readonly label: string, readonly budgetMs: number = BACKTRACKING_BUDGET_MS) {
    super(regex.source, regex.flags.replace(/[gy]/g, ''));
    // Made now, at load: creating the context takes some milliseconds, which the first message must not pay.
    prepareSandbox();
  }

  override exec(text: string): RegExpExecArray | null {
    return this.run(String(text));
  }

  override test(text: string): boolean {
    return this.run(String(text)) !== null;
  }

  /** `exec` within a budget of its own (`budgetMs`), with overruns and failures reported to `log`. */
  run(text: string, log: OverrunLog = standardError): RegExpExecArray | null {
    const budget = new BacktrackingBudget(this.budgetMs, log);
    try {
      return this.within(text, budget);
    } finally {
      budget.report();
    }
  }

  /**
   * `exec` within what is left of `budget`: under its running limit, or under a limit of its own; nothing
   * left, or stopped on this message already: not run, counted as no match. Overruns are reported by `budget`.
   */
  within(text: string, budget: BacktrackingBudget): RegExpExecArray | null {
    // matchRules asks test() then exec() for the groups, and a redelivered alert comes twice: one run each.
    const last = this.#last;
    if (last && last.text === text) return last.result;
    if (budget.stoppedOn(this)) return null;
    if (budget.guarding) {
      const result = budget.exec(this, text);
      this.#last = { text, result };
      return result;
    }
    if (budget.leftFor(this) <= 0) { budget.skip(this, text.length); return null; }
    const outcome = budget.guard(() => this.within(text, budget), this);
    return outcome.done ? outcome.value : null;
  }

  /** `label: the backtracking pattern /…/ what`, at most once a minute for this pattern, counting those left out. */
  warn(log: OverrunLog, what: string): void {
    const now = Date.now();
    if (now - this.#loggedAt < OVERRUN_LOG_EVERY_MS) { this.#unlogged++; return; }
    const more = this.#unlogged ? ` (${this.#unlogged} more since the last line)` : '';
    log.warn(`${this.label}: the backtracking pattern ${String(this)} ${what}${more}`);
    this.#loggedAt = now;
    this.#unlogged = 0;
  }
}

/** RegExp.prototype.exec itself: a subclass's `exec` would start a limit of its own. */
const regexpExec = RegExp.prototype.exec;
let sandbox: vm.Context | undefined;
let workScript: vm.Script | undefined;

function prepareSandbox(): void {
  if (sandbox && workScript) return;
  sandbox = vm.createContext({ work: () => {} });
  workScript = new vm.Script('work()', { filename: 'ims-backtracking-budget' });
  // The first run with a timeout costs some tenths of a millisecond more than the next: paid here, not by a message.
  workScript.runInContext(sandbox, { timeout: 1000 });
  sandbox.work = undefined;
}

/**
 * Run `work` (a function of this realm; it needs no sandbox of its own) and stop it after `ms` whole
 * milliseconds, wherever it is: vm's timeout, a watchdog thread that terminates the isolate's JavaScript.
 * A stop returns quietly (`work` then did not finish); other exceptions pass through.
 */
function runWithin(ms: number, work: () => void): void {
  prepareSandbox();
  sandbox!.work = work;
  try {
    workScript!.runInContext(sandbox!, { timeout: ms });
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw error;
  } finally {
    sandbox!.work = undefined;
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

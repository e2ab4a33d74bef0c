/**
 * Configuration problems and where they are: `ConfigError` (every problem at once, in file order), the place
 * of a config path (`IMS.ini:12: ` for what was read from IMS.ini, else `source: path: `), and text made safe
 * for a terminal. Below the config loader, the IMS.ini reader and the runtime, which all report through it.
 */
import type { CompiledConfig, Config } from './ims.ts';

/**
 * Where each object of a config read from IMS.ini came from, so validation can say `IMS.ini:12:`. Keyed by
 * identity: a config that spreads `loadIni()` and adds its own rules still blames the right file.
 */
export const SOURCE_LINES = Symbol.for('ims.sourceLines');
export interface SourceLines {
  file: string;
  lines: WeakMap<object, number>;
  /**
   * Lists and maps (the rules, the incidents) the reader already reported a problem about (a missing section,
   * refused lines): validation does not add "no rules" on top. By identity, so a config replacing them is checked.
   */
  reported?: WeakSet<object>;
  /**
   * Incident labels whose problem the reader already reported (their [Incidents] line was refused, or there is
   * no [Incidents] section): rules naming them are not reported again, one bad line is one problem.
   */
  reportedLabels?: Set<string>;
}
export type Located = { [SOURCE_LINES]?: SourceLines };

/**
 * A configuration that cannot be used; `problems` are every `place: what is wrong` found, in file order:
 * problems about a whole file first, then those with a line (`IMS.ini:12: …`) by file and line.
 */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[], readonly source: string) {
    const sorted = inFileOrder(problems).map(printable);
    super(`${source}: configuration refused (${sorted.length} problem${sorted.length === 1 ? '' : 's'}):\n` +
      sorted.map((p) => `  ${p}`).join('\n'));
    this.problems = sorted;
    this.name = 'ConfigError';
  }
}

/**
 * Text safe for a terminal: control characters (which a broken or hostile file or alert may hold: ESC sequences
 * clear screens and forge lines) are shown as `\xNN`; tabs and line breaks stay.
 */
export function printable(text: string): string {
  return /[\u0000-\u0008\u000b-\u001f\u007f]/.test(text)
    ? text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    : text;
}

/** Problems sorted by `file:line:` (stable: problems without a line keep their order, before the others). */
export function inFileOrder(problems: readonly string[]): string[] {
  const files: string[] = [];
  const keyed = problems.map((problem, index) => {
    const at = /^(\S+?):(\d+): /.exec(problem);
    if (at && !files.includes(at[1])) files.push(at[1]);
    return { problem, index, file: at ? files.indexOf(at[1]) : -1, line: at ? Number(at[2]) : 0 };
  });
  return keyed.sort((a, b) => a.file - b.file || a.line - b.line || a.index - b.index).map((k) => k.problem);
}

/**
 * `place: ` for a config path: `IMS.ini:12: ` when the value there (or the nearest object above it) was
 * read from IMS.ini, else `source: path: `.
 */
export function placeOf(config: Config, source: string, at: string): string {
  const located = (config as Located)[SOURCE_LINES];
  if (located) {
    let value: unknown = config;
    let line: number | undefined;
    for (const key of at.split(/[.[\]]+/).filter(Boolean)) {
      value = value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
      if (value && typeof value === 'object') line = located.lines.get(value) ?? line;
    }
    if (line !== undefined) return `${located.file}:${line}: `;
  }
  return at ? `${source}: ${at}: ` : `${source}: `;
}


/** `--test`, `--replay` and the start log name the config in use: as given, and where it is. */
export function configName(config: Pick<CompiledConfig, 'source' | 'file'>): string {
  return config.file && config.file !== config.source ? `${config.source} (${config.file})` : config.source;
}

/**
 * Finding and reading config files: the search places (cosmiconfig's for `ims`, then IMS.ini), text checks
 * (UTF-16 and binary files are named, never echoed), modules imported fresh so a reload sees the edit, JSON and
 * YAML through cosmiconfig's parsers, and a file that fails to load reported as one problem at its place.
 * Validation and compiling are `ims.ts`'s.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, SOURCE_LINES, type Located } from './ims-config-errors.ts';

/** The folder of the config module being imported right now: `loadIni('./IMS.ini')` inside it means beside it. */
export const CONFIG_DIR = Symbol.for('ims.configDir');

export const CONFIG_SEARCH_PLACES = ['package.json', '.imsrc', '.imsrc.json', '.imsrc.yaml', '.imsrc.yml', '.imsrc.js', '.imsrc.mjs', '.imsrc.ts',
  'ims.config.ts', 'ims.config.mjs', 'ims.config.js', 'IMS.ini'];
export const INI_MARK = 'ims:ini-path';

/**
 * Import a config module fresh every time, so a reload sees the edit. A plain `import()` keeps one module
 * graph: the config's own `import … from './ims.ts'` is this very module, not a second copy (a second copy
 * would start a second IMS). Outside a `"type": "module"` package Node loads the file as CommonJS, whose cache
 * ignores the query, so its entry is dropped first; its namespace then wraps the export once more.
 */
let configLoads = 0;
async function importFresh(file: string): Promise<unknown> {
  delete createRequire(import.meta.url).cache[file];
  const loading = globalThis as { [CONFIG_DIR]?: string };
  loading[CONFIG_DIR] = path.dirname(file);
  const module = await import(`${pathToFileURL(file).href}?load=${++configLoads}`).finally(() => { delete loading[CONFIG_DIR]; });
  let value = module.default ?? module;
  if (value && typeof value === 'object' && !('rules' in value) && value.default && typeof value.default === 'object') value = value.default;
  return value;
}

/** Bytes that may appear in a text file besides printable characters: TAB, LF, VT, FF, CR, ESC. */
const TEXT_CONTROLS = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1b]);

/**
 * Why a config file's bytes are not text IMS can read, or undefined when they are. UTF-16 (a byte order mark,
 * or a NUL in every other byte) and binary files are named, never decoded and echoed to the terminal.
 */
export function notTextProblem(bytes: Uint8Array): string | undefined {
  const utf16 = (kind: string) => `the file is saved as UTF-16 (${kind}); save it as UTF-8 (in the editor: Save As… or Save with Encoding → UTF-8)`;
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return utf16('little-endian, with a byte order mark');
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return utf16('big-endian, with a byte order mark');
  const sample = bytes.subarray(0, 8192);
  const nuls = [0, 0]; // at even and at odd offsets
  let controls = 0;
  for (let i = 0; i < sample.length; i++) {
    const byte = sample[i];
    if (byte === 0) nuls[i % 2]++;
    else if ((byte < 0x20 && !TEXT_CONTROLS.has(byte)) || byte === 0x7f) controls++;
  }
  const pairs = sample.length / 2;
  if (Math.max(nuls[0], nuls[1]) > pairs * 0.3 && Math.min(nuls[0], nuls[1]) < pairs * 0.05) return utf16(nuls[1] > nuls[0] ? 'little-endian' : 'big-endian');
  if (nuls[0] + nuls[1] > 0 || controls > Math.max(4, sample.length / 100)) {
    return 'not a text file (it holds binary data); give --config the path of the config itself (ims.config.ts, .imsrc.json or IMS.ini)';
  }
  return undefined;
}

/** A config file's text (UTF-8, its byte order mark dropped), or a ConfigError when it is unreadable, UTF-16 or binary. */
export function readConfigText(absolute: string, shown: string, hint = 'check the path'): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(absolute);
  } catch (error) {
    throw new ConfigError([`cannot read the file (${(error as NodeJS.ErrnoException).code ?? error}); ${hint}`], shown);
  }
  const problem = notTextProblem(bytes);
  if (problem) throw new ConfigError([`${shown}: ${problem}`], shown);
  return bytes.toString('utf8').replace(/^\uFEFF/, '');
}


/** Config files that are modules (imported fresh); the others are JSON or YAML text, and `.ini` the legacy format. */
const MODULE_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs']);
const TEXT_EXTENSIONS = new Set(['.json', '.yaml', '.yml', '']);

/**
 * A config file that could not be loaded, as one problem at its place: `ims.config.mjs: could not be loaded:
 * SyntaxError: Unexpected end of input`, `.imsrc.yaml:3: not valid YAML: …`; with the line when the error tells
 * it, and the file as the user knows it, not the loader's absolute path. A ConfigError thrown while loading
 * (a `loadIni()` in an ims.config.ts) keeps its own file and lines. It may come from another copy of this
 * module (a config loaded as CommonJS requires its own), so it is known by its shape.
 */
function loadFailure(error: unknown, absolute: string, shown: string): ConfigError {
  const e = (error ?? {}) as { name?: unknown; message?: unknown; stack?: unknown; problems?: unknown; source?: unknown };
  if (e.name === 'ConfigError' && Array.isArray(e.problems) && typeof e.source === 'string') {
    return error instanceof ConfigError ? error : new ConfigError(e.problems.map(String), e.source);
  }
  const message = typeof e.message === 'string' ? e.message : String(error);
  const inFile = (text: string) => text.split(absolute).join(shown).split(pathToFileURL(absolute).href).join(shown);
  const parser = /^(JSON|YAML) Error in [^\n]*\n/.exec(message);
  if (parser) {
    // The parser's first line says what is wrong; the code frame under it is left out (problems are one line each).
    const what = message.slice(parser[0].length).split('\n').map((l) => l.trim()).find((l) => l && !/^(>|\||\d+ \||-*\^)/.test(l)) ?? message;
    const line = /\((\d+):\d+\)$/.exec(what)?.[1];
    return new ConfigError([`${shown}${line ? `:${line}` : ''}: not valid ${parser[1]}: ${inFile(what)}`], shown);
  }
  // esbuild (TypeScript) reports `FILE:LINE:COL: ERROR: what`; Node puts the place in the stack (`FILE?load=3:LINE:COL`).
  const transform = /^(?:Transform failed with \d+ errors?:\n)?(?:[^\n]*?):(\d+):\d+: ERROR: ([^\n]*)/.exec(message);
  const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const located = new RegExp(`(?:${escaped(absolute)}|${escaped(pathToFileURL(absolute).href)})(?:\\?[^:\\s)]*)?:(\\d+):\\d+`).exec(`${message}\n${String(e.stack ?? '')}`);
  const line = transform?.[1] ?? located?.[1];
  const name = transform ? 'SyntaxError' : typeof e.name === 'string' && e.name !== 'Error' ? e.name : '';
  const what = inFile(transform?.[2] ?? message.split('\n')[0]);
  const complete = name === 'SyntaxError' ? ' (is the file complete? an editor may be saving it)' : '';
  return new ConfigError([`${shown}${line ? `:${line}` : ''}: could not be loaded: ${name ? `${name}: ` : ''}${what}${complete}`], shown);
}

/**
 * Read one config file; undefined for a package.json without an `"ims"` key (it is not a config: the search goes
 * on). Text is read first (UTF-16 and binary files are named, never parsed and echoed; a UTF-8 BOM is dropped),
 * an `.ini` is left to the legacy reader, and anything that fails is a ConfigError naming this file.
 */
export async function readConfigFile(absolute: string, shown: string): Promise<{ config: unknown; empty: boolean } | undefined> {
  const extension = path.extname(absolute).toLowerCase();
  if (extension === '.ini') return { config: { [INI_MARK]: absolute }, empty: false };
  const text = readConfigText(absolute, shown);
  const isPackage = path.basename(absolute) === 'package.json';
  if (!MODULE_EXTENSIONS.has(extension) && !TEXT_EXTENSIONS.has(extension)) {
    throw new ConfigError([`${shown}: IMS cannot read a '${extension}' file as a config; expected ims.config.ts (or .mts, .cts, .js, .mjs, .cjs), a .json or .yaml file, or an IMS.ini`], shown);
  }
  if (text.trim() === '') return isPackage ? undefined : { config: undefined, empty: true };
  let loaded: unknown;
  try {
    if (MODULE_EXTENSIONS.has(extension)) loaded = await importFresh(absolute);
    else {
      const { defaultLoaders } = await import('cosmiconfig');
      const parse = (extension === '.json' ? defaultLoaders['.json'] : defaultLoaders['.yaml']) as (filepath: string, content: string) => unknown;
      loaded = parse(absolute, text);
    }
  } catch (error) {
    throw loadFailure(error, absolute, shown);
  }
  if (!isPackage) return { config: loaded, empty: false };
  const own = loaded && typeof loaded === 'object' ? (loaded as Record<string, unknown>).ims : undefined;
  return own === undefined || own === null ? undefined : { config: own, empty: false };
}

/**
 * The first config file in `cwd`, in the order of CONFIG_SEARCH_PLACES (cosmiconfig's places for `ims`). IMS
 * searches itself rather than through cosmiconfig's explorer: that one first reads a "meta config" of its own
 * (package.json's `"cosmiconfig"` key, `.config/config.*`, run as code) from the process's working directory,
 * with loaders IMS cannot reach, so a BOM or a typo in package.json would stop IMS with a stack trace.
 */
export async function searchConfig(cwd: string): Promise<{ absolute: string; config: unknown; empty: boolean } | undefined> {
  for (const place of CONFIG_SEARCH_PLACES) {
    const absolute = path.join(cwd, place);
    if (!statSync(absolute, { throwIfNoEntry: false })?.isFile()) continue;
    const found = await readConfigFile(absolute, place);
    if (found) return { absolute, ...found };
  }
  return undefined;
}

/** The config files a search in `cwd` found besides the one used: each a warning that says how to pick it. */
export function shadowedConfigs(cwd: string, used: string, config: unknown): string[] {
  const usedName = path.basename(used);
  // An ims.config.ts that reads the IMS.ini beside it with loadIni() uses it: nothing is shadowed.
  const iniRead = (config as Located | undefined)?.[SOURCE_LINES]?.file;
  return CONFIG_SEARCH_PLACES.slice(CONFIG_SEARCH_PLACES.indexOf(usedName) + 1)
    .filter((name) => existsSync(path.join(cwd, name)) && !(iniRead && path.resolve(cwd, iniRead) === path.join(cwd, name)))
    .map((name) => `${name} is not used: ${usedName} comes first in the search and is the config in use; to use ${name}, run with --config ${name}` +
      (name === 'IMS.ini' ? ` (or read it from ${usedName} with loadIni('./IMS.ini'))` : ''));
}

/**
 * A parser for java.util.Properties text, as Tigase's init.properties uses it.
 * Pure: no I/O, no knowledge of which keys exist (the loader in config.ts decides that).
 */

/** Tigase type suffix on a key: `--cluster-mode[B]`, `--c2s-ports[i]`, `--virt-hosts[s]`. */
export type PropertyType = 'B' | 'I' | 'L' | 'S';

export interface PropertyEntry {
  /** The key with escapes decoded and any type suffix removed. */
  key: string;
  /** The value with escapes decoded and surrounding whitespace removed. */
  value: string;
  /** 1-based line where the entry starts (its first physical line when continued). */
  line: number;
  /** The type suffix given on the key, upper-cased; absent when there was none. */
  type?: PropertyType;
}

/** Bad configuration; the message names the key and, when it came from a file, file and line. */
export class ConfigError extends Error {
  constructor(
    message: string,
    /** The offending key, when there is one. */
    readonly key?: string,
    /** Where it came from: a file name, or 'command line'. */
    readonly source?: string,
    readonly line?: number,
  ) {
    super(ConfigError.format(message, key, source, line));
    this.name = 'ConfigError';
  }

  private static format(message: string, key?: string, source?: string, line?: number): string {
    const where = source === undefined ? '' : line === undefined ? `${source}: ` : `${source}:${line}: `;
    return `${where}${key === undefined ? '' : `${key}: `}${message}`;
  }
}

/** java.util.Properties whitespace: space, tab, form feed. */
function isBlank(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\f';
}

const TYPE_SUFFIX = /^(.*)\[([BILSbils])\]$/;

/**
 * Parses java.util.Properties text into entries in file order (duplicates kept; the loader
 * decides that later ones win). Supports `#`/`!` comment lines, `key = value`, `key: value`,
 * `key value`, continuation lines ending in an odd number of backslashes, and the escapes
 * `\t \n \r \f \\ \uXXXX` (any other escaped character stands for itself, e.g. `\=`, `\:`, `\ `).
 * One deliberate difference from Java: unescaped trailing whitespace of a value is dropped,
 * since an invisible trailing space in a config file is never what the admin meant.
 */
export function parseProperties(text: string, source = 'init.properties'): PropertyEntry[] {
  const lines = text.split(/\r\n|\r|\n/);
  const entries: PropertyEntry[] = [];
  let i = 0;
  while (i < lines.length) {
    const startLine = i + 1;
    let first = stripLeading(lines[i]);
    i++;
    if (first === '' || first[0] === '#' || first[0] === '!') continue;
    // Join continuation lines: a line ending in an odd number of backslashes continues on the
    // next one, whose leading whitespace is dropped.
    let logical = '';
    while (endsWithContinuation(first)) {
      logical += first.slice(0, -1);
      if (i >= lines.length) { first = ''; break; }
      first = stripLeading(lines[i]);
      i++;
    }
    logical += first;
    entries.push(parseLogicalLine(logical, source, startLine));
  }
  return entries;
}

function stripLeading(line: string): string {
  let k = 0;
  while (k < line.length && isBlank(line[k])) k++;
  return line.slice(k);
}

function endsWithContinuation(line: string): boolean {
  let n = 0;
  for (let k = line.length - 1; k >= 0 && line[k] === '\\'; k--) n++;
  return n % 2 === 1;
}

function parseLogicalLine(text: string, source: string, line: number): PropertyEntry {
  // The key ends at the first unescaped '=', ':' or whitespace.
  let k = 0;
  while (k < text.length) {
    const c = text[k];
    if (c === '\\') { k += 2; continue; }
    if (c === '=' || c === ':' || isBlank(c)) break;
    k++;
  }
  const rawKey = text.slice(0, Math.min(k, text.length));
  // Separator: optional whitespace, at most one '=' or ':', optional whitespace.
  while (k < text.length && isBlank(text[k])) k++;
  if (k < text.length && (text[k] === '=' || text[k] === ':')) k++;
  while (k < text.length && isBlank(text[k])) k++;
  const rawValue = trimTrailingUnescaped(text.slice(k));

  let key = unescape(rawKey, source, line);
  const value = unescape(rawValue, source, line);
  let type: PropertyType | undefined;
  const suffix = TYPE_SUFFIX.exec(key);
  if (suffix) {
    key = suffix[1];
    type = suffix[2].toUpperCase() as PropertyType;
  }
  if (key === '') throw new ConfigError(`missing key before "${value}"`, undefined, source, line);
  return type === undefined ? { key, value, line } : { key, value, line, type };
}

/** Drops trailing whitespace unless the last blank is escaped (`\ `). */
function trimTrailingUnescaped(s: string): string {
  let end = s.length;
  while (end > 0 && isBlank(s[end - 1])) {
    let backslashes = 0;
    for (let k = end - 2; k >= 0 && s[k] === '\\'; k--) backslashes++;
    if (backslashes % 2 === 1) break;
    end--;
  }
  return s.slice(0, end);
}

const SIMPLE_ESCAPES: Record<string, string> = { t: '\t', n: '\n', r: '\r', f: '\f' };

function unescape(s: string, source: string, line: number): string {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let k = 0; k < s.length; k++) {
    const c = s[k];
    if (c !== '\\') { out += c; continue; }
    k++;
    if (k >= s.length) break; // a lone trailing backslash at end of input stands for nothing
    const e = s[k];
    if (e === 'u') {
      const hex = s.slice(k + 1, k + 5);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
        throw new ConfigError(`malformed \\uXXXX escape "\\u${hex}"`, undefined, source, line);
      }
      out += String.fromCharCode(parseInt(hex, 16));
      k += 4;
    } else {
      out += SIMPLE_ESCAPES[e] ?? e;
    }
  }
  return out;
}

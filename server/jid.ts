import { isIPv4, isIPv6 } from 'net';
import { domainToASCII, domainToUnicode } from 'url';

/**
 * XMPP addresses (RFC 7622). Every JID the server holds is prepared and enforced once, here:
 * localpart by the PRECIS UsernameCaseMapped profile (RFC 8265 §3.3), resourcepart by the
 * OpaqueString profile (RFC 8265 §4.2), domainpart by IDNA2008 rules (RFC 7622 §3.2).
 * Two prepared JIDs are equal exactly when their strings are equal.
 */

/** RFC 7622 §3.1: each part is 1..1023 octets in UTF-8, after preparation. */
export const MAX_PART_OCTETS = 1023;

/** Inputs longer than this (UTF-16 units) cannot prepare to three parts of 1023 octets. */
const MAX_INPUT_LENGTH = 3 * MAX_PART_OCTETS * 3 + 2;

/** Parsed JIDs kept for reuse (the router parses every stanza's `to`); cleared when full. */
const CACHE_SIZE = 10_000;

export class JIDError extends Error {
  readonly code = 'JID_MALFORMED';
  constructor(message: string) {
    super(message);
    this.name = 'JIDError';
  }
}

export class JID {
  private cachedString: string | undefined;
  private cachedBare: JID | undefined;

  /** Parts must already be prepared: use parseJID / makeJID. */
  private constructor(
    readonly local: string,
    readonly domain: string,
    readonly resource: string,
  ) {}

  /** @see parseJID */
  static parse(input: string): JID {
    const cached = cache.get(input);
    if (cached) return cached;
    if (input.length > MAX_INPUT_LENGTH) throw new JIDError('JID too long');
    // RFC 7622 §3.1: the first '/' starts the resourcepart; the localpart ends at the first '@'
    // before it.
    const slash = input.indexOf('/');
    const head = slash === -1 ? input : input.slice(0, slash);
    const at = head.indexOf('@');
    const local = at === -1 ? '' : prepareLocalpart(head.slice(0, at));
    const domain = prepareDomainpart(at === -1 ? head : head.slice(at + 1));
    const resource = slash === -1 ? '' : prepareResourcepart(input.slice(slash + 1));
    const jid = new JID(local, domain, resource);
    if (cache.size >= CACHE_SIZE) cache.clear();
    cache.set(input, jid);
    return jid;
  }

  /** @see makeJID */
  static make(local: string, domain: string, resource = ''): JID {
    return new JID(
      local === '' ? '' : prepareLocalpart(local),
      prepareDomainpart(domain),
      resource === '' ? '' : prepareResourcepart(resource),
    );
  }

  /** The JID without its resource (the same object when already bare). */
  bare(): JID {
    if (this.resource === '') return this;
    return (this.cachedBare ??= new JID(this.local, this.domain, ''));
  }

  /** This bare JID with a (prepared) resource. */
  withResource(resource: string): JID {
    return new JID(this.local, this.domain, prepareResourcepart(resource));
  }

  isBare(): boolean {
    return this.resource === '';
  }

  /** A server or component address: no localpart, no resource. */
  isDomain(): boolean {
    return this.local === '' && this.resource === '';
  }

  bareString(): string {
    return this.bare().toString();
  }

  equals(other: JID | undefined): boolean {
    return other !== undefined && (other === this || other.toString() === this.toString());
  }

  toString(): string {
    if (this.cachedString === undefined) {
      let s = this.domain;
      if (this.local !== '') s = `${this.local}@${s}`;
      if (this.resource !== '') s = `${s}/${this.resource}`;
      this.cachedString = s;
    }
    return this.cachedString;
  }

  toJSON(): string {
    return this.toString();
  }
}

const cache = new Map<string, JID>();

/** Parses and prepares a JID; throws JIDError (code JID_MALFORMED). */
export function parseJID(input: string): JID {
  return JID.parse(input);
}

export function tryParseJID(input: string): JID | undefined {
  try {
    return JID.parse(input);
  } catch (err) {
    if (err instanceof JIDError) return undefined;
    throw err;
  }
}

/** Builds a JID from separate parts, preparing each (an empty local or resource means absent). */
export function makeJID(local: string, domain: string, resource?: string): JID {
  return JID.make(local, domain, resource);
}

// ---------------------------------------------------------------------------------------------
// Localpart: PRECIS UsernameCaseMapped (RFC 8265 §3.3) + RFC 7622 §3.3.1 forbidden characters.

/** ASCII7 (RFC 8264 §9.11) minus the characters RFC 7622 §3.3.1 forbids: " & ' / : < > @ */
const ASCII_LOCAL = /^[\x21\x23-\x25\x28-\x2E\x30-\x39\x3B\x3D\x3F\x41-\x7E]+$/;
const FORBIDDEN_IN_LOCAL = /["&'/:<>@ ]/;
/** RFC 8265 §3.3.2 rule 1: fullwidth and halfwidth characters (<wide>/<narrow> decompositions). */
const WIDE_OR_NARROW = /[\u3000\uFF01-\uFFEE]/g;

/** Prepares and enforces a localpart; throws JIDError. Also the SASL username preparation. */
export function prepareLocalpart(input: string): string {
  let s: string;
  if (ASCII_LOCAL.test(input)) {
    s = input.toLowerCase();
  } else {
    if (input === '') throw new JIDError('empty localpart');
    // Width mapping, case mapping (toLowerCase), then NFC: RFC 8265 §3.3.2.
    s = input.replace(WIDE_OR_NARROW, (c) => c.normalize('NFKC')).toLowerCase().normalize('NFC');
    if (FORBIDDEN_IN_LOCAL.test(s)) throw new JIDError('forbidden character in localpart');
    checkCodePoints(s, 'identifier', 'localpart');
    checkBidiRule(s);
  }
  checkLength(s, 'localpart');
  return s;
}

// ---------------------------------------------------------------------------------------------
// Resourcepart: PRECIS OpaqueString (RFC 8265 §4.2).

const ASCII_RESOURCE = /^[\x20-\x7E]+$/;
const NON_ASCII_SPACE = /(?! )\p{Zs}/gu;

/** Prepares and enforces a resourcepart; throws JIDError. */
export function prepareResourcepart(input: string): string {
  let s = input;
  if (!ASCII_RESOURCE.test(s)) {
    if (s === '') throw new JIDError('empty resourcepart');
    // RFC 8265 §4.2.2: non-ASCII spaces map to U+0020; no width or case mapping; NFC.
    s = s.replace(NON_ASCII_SPACE, ' ').normalize('NFC');
    checkCodePoints(s, 'freeform', 'resourcepart');
  }
  checkLength(s, 'resourcepart');
  return s;
}

// ---------------------------------------------------------------------------------------------
// Domainpart (RFC 7622 §3.2): IP literal, IPv4 address, or a name of NR-LDH labels and U-labels.

const ASCII_DOMAIN = /^[A-Za-z0-9.-]+$/;
/** Dot-separated LDH labels of 1..63 octets, no hyphen first or last (RFC 5890 §2.3.1). */
const LDH_DOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const RESERVED_LABEL = /(?:^|\.)(?!xn)[a-z0-9]{2}--/;
const NUMERIC_TOP_LABEL = /(?:^|\.)[0-9]+$/;
/** IDNA label separators (RFC 3490 §3.1), mapped to '.'. */
const IDEOGRAPHIC_DOTS = /[\u3002\uFF0E\uFF61]/g;

/** Prepares and enforces a domainpart (U-labels kept in Unicode form); throws JIDError. */
export function prepareDomainpart(input: string): string {
  if (input.startsWith('[')) return prepareIPLiteral(input);
  let s = input;
  const ascii = ASCII_DOMAIN.test(s);
  if (!ascii) {
    // RFC 5895 mappings: fullwidth/halfwidth to their decompositions, ideographic dots to '.'.
    s = s.replace(WIDE_OR_NARROW, (c) => c.normalize('NFKC')).replace(IDEOGRAPHIC_DOTS, '.');
  }
  // RFC 7622 §3.2: a final label separator MUST be stripped.
  if (s.endsWith('.')) s = s.slice(0, -1);
  s = s.toLowerCase();
  if (!ascii) s = s.normalize('NFC');
  if (s === '') throw new JIDError('empty domainpart');
  if (ASCII_DOMAIN.test(s) && !s.includes('xn--')) {
    checkAsciiLabels(s);
  } else {
    s = prepareInternationalDomain(s);
  }
  checkLength(s, 'domainpart');
  return s;
}

function prepareIPLiteral(s: string): string {
  if (!s.endsWith(']') || !isIPv6(s.slice(1, -1))) throw new JIDError('invalid IP literal domainpart');
  return s.toLowerCase();
}

function checkAsciiLabels(s: string): void {
  if (!LDH_DOMAIN.test(s)) throw new JIDError('invalid domainpart');
  // RFC 5890 §2.3.1: labels with '--' in positions 3-4 are reserved (only xn-- A-labels).
  if (s.includes('--') && RESERVED_LABEL.test(s)) throw new JIDError('reserved domain label');
  // A numeric top label is only valid as part of an IPv4 address (RFC 1123 §2.1).
  if (NUMERIC_TOP_LABEL.test(s) && !isIPv4(s)) throw new JIDError('invalid IPv4 domainpart');
}

function prepareInternationalDomain(s: string): string {
  const labels = s.split('.');
  const unicodeLabels: string[] = [];
  for (const label of labels) {
    if (label.startsWith('xn--')) {
      // RFC 7622 §3.2.2: A-labels MUST be converted to U-labels.
      const decoded = domainToUnicode(label);
      if (decoded === '' || decoded === label || domainToASCII(decoded) !== label) {
        throw new JIDError(`invalid A-label '${label}'`);
      }
      checkCodePoints(decoded, 'idna', 'domainpart');
      unicodeLabels.push(decoded);
    } else {
      if (label !== '' && !ASCII_DOMAIN.test(label)) checkCodePoints(label, 'idna', 'domainpart');
      unicodeLabels.push(label);
    }
  }
  const unicode = unicodeLabels.join('.');
  const ascii = domainToASCII(unicode);
  if (ascii === '') throw new JIDError('invalid internationalized domainpart');
  // Also enforces RFC 5890's 63-octet limit on each label in its A-label form.
  checkAsciiLabels(ascii);
  return unicode;
}

// ---------------------------------------------------------------------------------------------
// PRECIS string classes (RFC 8264 §8-9) and IDNA2008 (RFC 5892 §3) code point rules.

type StringClass = 'identifier' | 'freeform' | 'idna';

/** RFC 5892 §2.6 Exceptions. */
const EXCEPTION_PVALID = new Set([0x00df, 0x03c2, 0x06fd, 0x06fe, 0x0f0b, 0x3007]);
const EXCEPTION_DISALLOWED = new Set([0x0640, 0x07fa, 0x302e, 0x302f, 0x3031, 0x3032, 0x3033, 0x3034, 0x3035, 0x303b]);
const EXCEPTION_CONTEXTO = /[\u00B7\u0375\u05F3\u05F4\u30FB\u0660-\u0669\u06F0-\u06F9]/u;
/** RFC 5892 §2.9 OldHangulJamo (Hangul_Syllable_Type L, V, T). */
const OLD_HANGUL_JAMO = /[\u1100-\u11FF\uA960-\uA97C\uD7B0-\uD7C6\uD7CB-\uD7FB]/u;
const UNASSIGNED = /\p{Cn}/u;
const IGNORABLE = /[\p{Default_Ignorable_Code_Point}\p{Noncharacter_Code_Point}]/u;
const CONTROL = /\p{Cc}/u;
const LETTER_DIGITS = /[\p{Ll}\p{Lu}\p{Lo}\p{Nd}\p{Lm}\p{Mn}\p{Mc}]/u;
/** OtherLetterDigits, Spaces, Symbols, Punctuation: valid only in FreeformClass. */
const FREEFORM_ONLY = /[\p{Lt}\p{Nl}\p{No}\p{Me}\p{Zs}\p{Sm}\p{Sc}\p{Sk}\p{So}\p{P}]/u;
const LDH = /[a-z0-9-]/;

function checkCodePoints(s: string, cls: StringClass, part: string): void {
  const chars = Array.from(s);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    const cp = ch.codePointAt(0)!;
    if (cp >= 0x21 && cp <= 0x7e) {
      // ASCII7 is PVALID in PRECIS; IDNA allows only LDH.
      if (cls !== 'idna' || LDH.test(ch)) continue;
      throw new JIDError(`disallowed character in ${part}`);
    }
    if (EXCEPTION_PVALID.has(cp)) continue;
    if (EXCEPTION_DISALLOWED.has(cp)) throw new JIDError(`disallowed character in ${part}`);
    if (EXCEPTION_CONTEXTO.test(ch)) {
      if (!contextOAllows(chars, i, cp)) throw new JIDError(`character not allowed in this context in ${part}`);
      continue;
    }
    if (UNASSIGNED.test(ch)) throw new JIDError(`unassigned code point in ${part}`);
    if (cp === 0x200c || cp === 0x200d) {
      if (!contextJAllows(chars, i, cp)) throw new JIDError(`join control not allowed in this context in ${part}`);
      continue;
    }
    if (OLD_HANGUL_JAMO.test(ch) || IGNORABLE.test(ch) || CONTROL.test(ch)) {
      throw new JIDError(`disallowed character in ${part}`);
    }
    // HasCompat (RFC 8264 §9.17); for IDNA the "Unstable" rule NFKC_Casefold(cp) != cp.
    const compat = ch.normalize('NFKC');
    if (compat !== ch || (cls === 'idna' && compat.toLowerCase() !== ch)) {
      if (cls === 'freeform') continue;
      throw new JIDError(`disallowed character in ${part}`);
    }
    if (LETTER_DIGITS.test(ch)) continue;
    if (cls === 'freeform' && FREEFORM_ONLY.test(ch)) continue;
    throw new JIDError(`disallowed character in ${part}`);
  }
}

/** RFC 5892 Appendix A.3-A.9 contextual rules. */
function contextOAllows(chars: string[], i: number, cp: number): boolean {
  switch (cp) {
    case 0x00b7: // MIDDLE DOT: between two 'l'
      return chars[i - 1] === 'l' && chars[i + 1] === 'l';
    case 0x0375: // GREEK LOWER NUMERAL SIGN: followed by Greek
      return chars[i + 1] !== undefined && /\p{Script=Greek}/u.test(chars[i + 1]);
    case 0x05f3:
    case 0x05f4: // HEBREW GERESH / GERSHAYIM: preceded by Hebrew
      return chars[i - 1] !== undefined && /\p{Script=Hebrew}/u.test(chars[i - 1]);
    case 0x30fb: // KATAKANA MIDDLE DOT: some Hiragana, Katakana or Han in the string
      return chars.some((c) => c !== '\u30FB' && /[\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Han}]/u.test(c));
    default:
      if (cp >= 0x0660 && cp <= 0x0669) return !chars.some((c) => c >= '\u06F0' && c <= '\u06F9');
      return !chars.some((c) => c >= '\u0660' && c <= '\u0669');
  }
}

/** Viramas (Canonical_Combining_Class 9) of the scripts that use ZWJ/ZWNJ. */
const VIRAMA = /[\u094D\u09CD\u0A4D\u0ACD\u0B4D\u0BCD\u0C4D\u0CCD\u0D3B\u0D3C\u0D4D\u0DCA\u0E3A\u0F84\u1039\u103A\u1714\u1734\u17D2\u1A60\u1B44\u1BAA\u1BAB\uA806\uA8C4\uA953\uA9C0\uABED]/u;
const JOINING_SCRIPT = /[\p{Script=Arabic}\p{Script=Syriac}\p{Script=Nko}\p{Script=Mongolian}\p{Script=Mandaic}\p{Script=Manichaean}\p{Script=Psalter_Pahlavi}\p{Script=Adlam}\p{Script=Hanifi_Rohingya}\p{Script=Sogdian}]/u;
const TRANSPARENT = /[\p{Mn}\p{Me}\p{Cf}]/u;

/**
 * RFC 5892 Appendix A.1-A.2. ZWJ/ZWNJ after a virama; ZWNJ also between two joining letters
 * (approximated by script, since Joining_Type is not exposed to regular expressions).
 */
function contextJAllows(chars: string[], i: number, cp: number): boolean {
  if (i > 0 && VIRAMA.test(chars[i - 1])) return true;
  if (cp === 0x200d) return false;
  let before = i - 1;
  while (before >= 0 && TRANSPARENT.test(chars[before])) before--;
  let after = i + 1;
  while (after < chars.length && TRANSPARENT.test(chars[after])) after++;
  return before >= 0 && after < chars.length &&
    JOINING_SCRIPT.test(chars[before]) && /\p{L}/u.test(chars[before]) &&
    JOINING_SCRIPT.test(chars[after]) && /\p{L}/u.test(chars[after]);
}

// Approximate Bidi_Class by script and category (Bidi_Class is not exposed to regular expressions).
const RTL_LETTER = /[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Samaritan}\p{Script=Mandaic}\p{Script=Adlam}\p{Script=Hanifi_Rohingya}\p{Script=Mende_Kikakui}\p{Script=Imperial_Aramaic}\p{Script=Phoenician}\p{Script=Kharoshthi}\p{Script=Avestan}\p{Script=Yezidi}]/u;
const ARABIC_NUMBER = /[\u0660-\u0669\u066B\u066C]/u;
const EUROPEAN_NUMBER = /[0-9\u06F0-\u06F9]/u;
const NSM = /[\p{Mn}\p{Me}]/u;
const LTR = /[\p{L}\p{Mc}\p{Nd}]/u;

/**
 * RFC 5893 Bidi Rule (required by RFC 8265 §3.3.2 rule 5). It only constrains strings holding
 * right-to-left characters: they must start with one, hold no left-to-right characters, end
 * with a right-to-left character or a number, and not mix European and Arabic-Indic digits.
 */
function checkBidiRule(s: string): void {
  const chars = Array.from(s);
  const classes = chars.map((c) =>
    RTL_LETTER.test(c) && !NSM.test(c) && !/\p{Nd}/u.test(c) ? 'R'
      : ARABIC_NUMBER.test(c) ? 'AN'
        : EUROPEAN_NUMBER.test(c) ? 'EN'
          : NSM.test(c) ? 'NSM'
            : LTR.test(c) ? 'L' : 'ON');
  if (!classes.includes('R') && !classes.includes('AN')) return;
  const bad = () => new JIDError('localpart violates the Bidi Rule');
  if (classes[0] !== 'R' || classes.includes('L')) throw bad();
  if (classes.includes('EN') && classes.includes('AN')) throw bad();
  let last = classes.length - 1;
  while (last > 0 && classes[last] === 'NSM') last--;
  if (!['R', 'EN', 'AN'].includes(classes[last])) throw bad();
}

function checkLength(s: string, part: string): void {
  // s.length is a lower bound of the UTF-8 length and 3x an upper bound.
  if (s.length === 0) throw new JIDError(`empty ${part}`);
  if (s.length > MAX_PART_OCTETS / 3 && Buffer.byteLength(s, 'utf8') > MAX_PART_OCTETS) {
    throw new JIDError(`${part} longer than ${MAX_PART_OCTETS} octets`);
  }
}

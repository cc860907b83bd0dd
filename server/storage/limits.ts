import { ValueTooLongError } from './types';

/**
 * Longest values the key columns hold, in characters (Unicode code points, as MySQL counts VARCHAR).
 *
 * InnoDB limits an index key to 3072 bytes and utf8mb4 needs 4 bytes a character, so a primary key
 * over two JIDs (roster_items, blocklist, private_xml) fits at 2 × 384 × 4 = 3072 bytes. RFC 7622
 * allows longer JIDs in theory (3071 bytes), but real ones are far shorter; longer values are
 * refused with ValueTooLongError, the same way on SQLite as on MySQL.
 * The numbers are written into migrations/001-initial.ts too; keep them in step.
 */
export const STORAGE_LIMITS = {
  /** Bare JIDs (users, roster contacts) and blocked JIDs, which may be full JIDs. */
  jid: 384,
  /** XEP-0049 private storage namespace. */
  namespace: 384,
  /** Auth-failure counter key. */
  authKey: 384,
  /** XEP-0357 app server JID and node of a push registration. */
  pushService: 192,
  pushNode: 192,
} as const;

/** Throws ValueTooLongError when `value` has more code points than `max`. */
export function assertFits(what: string, value: string, max: number): void {
  // Fast path: a UTF-16 string never has more code points than code units.
  if (value.length <= max) return;
  let codePoints = 0;
  for (const _ of value) {
    if (++codePoints > max) throw new ValueTooLongError(what, max);
  }
}

/**
 * Decoders for the few column types that come back differently from the two drivers. Stores use
 * them when turning rows into the records of types.ts.
 */

/**
 * DATETIME columns come back as Date from mysql2 (connection timezone 'Z': read as UTC) and as
 * ISO-8601 UTC text from SQLite (sqlite-client.ts writes them that way).
 */
export function dateFromColumn(value: unknown): Date {
  if (value instanceof Date) return value;
  if (typeof value === 'string' || typeof value === 'number') return new Date(value);
  throw new TypeError(`not a stored date: ${String(value)}`);
}

/** BOOLEAN is TINYINT(1) on MySQL and an integer on SQLite. */
export function boolFromColumn(value: unknown): boolean {
  return value === true || Number(value) === 1;
}

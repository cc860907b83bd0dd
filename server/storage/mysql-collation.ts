/**
 * The utf8mb4 collation that compares JIDs exactly: binary (case- and accent-sensitive) and, where
 * the server has one, NO PAD. utf8mb4_bin is a PAD SPACE collation, under which "a@b/res" and
 * "a@b/res " are the same key; resourceparts may end in spaces (RFC 7622 §3.4, OpaqueString), so
 * we prefer MariaDB's utf8mb4_nopad_bin or MySQL 8's utf8mb4_0900_bin and fall back to utf8mb4_bin.
 */
export const EXACT_COLLATIONS = ['utf8mb4_nopad_bin', 'utf8mb4_0900_bin', 'utf8mb4_bin'] as const;

export const EXACT_COLLATIONS_QUERY =
  `SELECT COLLATION_NAME AS name FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (${EXACT_COLLATIONS.map(
    (c) => `'${c}'`,
  ).join(', ')})`;

/** The best of EXACT_COLLATIONS among the names the server reported. */
export function pickExactCollation(available: readonly string[]): string {
  return EXACT_COLLATIONS.find((c) => available.includes(c)) ?? 'utf8mb4_bin';
}

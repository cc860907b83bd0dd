/**
 * Classifies driver errors by their stable codes (mysql2 `code`, better-sqlite3 `code`,
 * node-postgres `code`, which is the SQLSTATE), so stores never match on message text.
 */

/** PostgreSQL SQLSTATEs: unique_violation. */
const PG_UNIQUE_VIOLATION = '23505';
/** PostgreSQL SQLSTATEs worth a retry: serialization_failure, deadlock_detected, lock_not_available. */
const PG_TRANSIENT = new Set(['40001', '40P01', '55P03']);

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** A primary-key or unique-index violation: the row already exists. */
export function isDuplicateKey(err: unknown): boolean {
  const code = codeOf(err);
  return (
    code === 'ER_DUP_ENTRY' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === PG_UNIQUE_VIOLATION
  );
}

/** SQLite found the database locked by another connection (SQLITE_BUSY and its extended codes). */
export function isSqliteBusy(err: unknown): boolean {
  return codeOf(err).startsWith('SQLITE_BUSY');
}

/**
 * A conflict with another writer that is worth retrying: InnoDB chose this transaction as a deadlock
 * victim or gave up waiting for a row lock, or SQLite's busy_timeout ran out while another process
 * held the write lock, or PostgreSQL found a deadlock or a serialisation failure.
 */
export function isTransientConflict(err: unknown): boolean {
  const code = codeOf(err);
  return (
    code === 'ER_LOCK_DEADLOCK' ||
    code === 'ER_LOCK_WAIT_TIMEOUT' ||
    isSqliteBusy(err) ||
    code.startsWith('SQLITE_LOCKED') ||
    PG_TRANSIENT.has(code)
  );
}

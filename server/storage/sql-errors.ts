/**
 * Classifies driver errors by their stable codes (mysql2 `code`, better-sqlite3 `code`), so stores
 * never match on message text.
 */

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** A primary-key or unique-index violation: the row already exists. */
export function isDuplicateKey(err: unknown): boolean {
  const code = codeOf(err);
  return code === 'ER_DUP_ENTRY' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

/**
 * A conflict with another writer that is worth retrying: InnoDB chose this transaction as a deadlock
 * victim or gave up waiting for a row lock, or SQLite's busy_timeout ran out while another process
 * held the write lock.
 */
export function isTransientConflict(err: unknown): boolean {
  const code = codeOf(err);
  return (
    code === 'ER_LOCK_DEADLOCK' ||
    code === 'ER_LOCK_WAIT_TIMEOUT' ||
    code.startsWith('SQLITE_BUSY') ||
    code.startsWith('SQLITE_LOCKED')
  );
}

import type { Knex } from 'knex';
import { isTransientConflict } from './sql-errors';

/** Attempts before a conflicting write transaction gives up [5]. */
const MAX_ATTEMPTS = 5;
/** Base back-off between attempts in ms, multiplied by the attempt number and jittered [20]. */
const BACKOFF_MS = 20;

/**
 * Runs `work` in a transaction and retries it when it lost a race with another writer (deadlock
 * victim, lock wait timeout, SQLite busy). `work` must therefore be safe to run again: it only
 * touches the database through `trx`.
 *
 * On SQLite the transaction starts with BEGIN IMMEDIATE (see sqlite-client.ts), so it holds the
 * database's write lock from its first statement and reads inside it are never stale.
 */
export async function inWriteTransaction<T>(knex: Knex, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await knex.transaction(work);
    } catch (err) {
      if (attempt >= MAX_ATTEMPTS || !isTransientConflict(err)) throw err;
      await sleep(BACKOFF_MS * attempt * (0.5 + Math.random()));
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

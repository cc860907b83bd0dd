import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import { isSqliteBusy } from './sql-errors';
import { doneWaiting, waitingForLock } from './sqlite-lock-waiters';

/*
 * knex ships no typings for its dialect classes; these two paths are part of knex 3's published
 * lib/ layout (the better-sqlite3 client and the SQLite transaction it creates).
 */
type AnyClass = new (...args: any[]) => any;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const BetterSqlite3Client: AnyClass = require('knex/lib/dialects/better-sqlite3');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const SqliteTransaction: AnyClass = require('knex/lib/dialects/sqlite3/execution/sqlite-transaction');

/**
 * knex begins SQLite transactions with a plain (deferred) BEGIN. A deferred transaction that reads
 * and then writes, while another process committed in between, fails with SQLITE_BUSY at once:
 * busy_timeout cannot help because its snapshot is stale. BEGIN IMMEDIATE takes the write lock up
 * front (waiting up to busy_timeout), so every transaction is a serialised writer. We only open
 * transactions to write, so nothing is lost.
 */
class ImmediateTransaction extends SqliteTransaction {
  begin(conn: unknown): Promise<unknown> {
    return this.query(conn, 'BEGIN IMMEDIATE;');
  }
}

/** Prepared statements kept per SQLite connection; the oldest is dropped beyond [500]. */
const PREPARED_STATEMENTS = 500;
/** Pauses between attempts of a statement that found the write lock taken, in ms; the last repeats. */
const BUSY_RETRY_MS = [1, 2, 3, 5, 8, 10];

interface RawConnection {
  prepare(sql: string): unknown;
  readonly inTransaction: boolean;
}

/**
 * knex's better-sqlite3 client with four changes:
 * - each connection keeps its prepared statements (preparing was a tenth of the CPU of a busy node);
 * - transactions start with BEGIN IMMEDIATE (above);
 * - a statement that finds the write lock taken (by the archive writer thread or another process)
 *   is tried again from a timer until `connection.busyTimeoutMs` has passed, instead of SQLite's
 *   busy handler sleeping on the event loop: with the archive writer committing back to back, a
 *   node's heartbeat write stalled every stream for seconds, long enough for its peers to drop it.
 *   Only statements outside a transaction are retried (SQLite undoes such a statement entirely);
 *   inside one, BEGIN IMMEDIATE already holds the lock, and a failure fails the transaction;
 * - Date bindings are stored as ISO-8601 UTC text ("2024-05-01T12:00:00.000Z") instead of epoch
 *   milliseconds, so `SELECT * FROM cluster_nodes` in the sqlite3 shell reads like MySQL's output.
 *   The strings have a fixed width, so they compare and sort like the instants they name.
 */
class SqliteClient extends BetterSqlite3Client {
  /** The connection, with its prepared statements kept for reuse (knex prepares every query anew). */
  async acquireRawConnection(): Promise<unknown> {
    const db = (await super.acquireRawConnection()) as RawConnection;
    const prepare = db.prepare.bind(db);
    const statements = new Map<string, unknown>();
    db.prepare = (sql: string) => {
      let statement = statements.get(sql);
      if (statement === undefined) {
        statement = prepare(sql);
        statements.set(sql, statement);
        if (statements.size > PREPARED_STATEMENTS) statements.delete(statements.keys().next().value as string);
      }
      return statement;
    };
    return db;
  }

  async _query(connection: RawConnection, obj: unknown): Promise<unknown> {
    const retryable = (err: unknown) => isSqliteBusy(err) && !connection.inTransaction;
    try {
      return await super._query(connection, obj);
    } catch (err) {
      if (!retryable(err)) throw err;
    }
    const deadline = Date.now() + (this.connectionSettings as { busyTimeoutMs: number }).busyTimeoutMs;
    waitingForLock();
    try {
      for (let attempt = 0; ; attempt++) {
        await sleep(BUSY_RETRY_MS[Math.min(attempt, BUSY_RETRY_MS.length - 1)]);
        try {
          return await super._query(connection, obj);
        } catch (err) {
          if (!retryable(err) || Date.now() >= deadline) throw err;
        }
      }
    } finally {
      doneWaiting();
    }
  }

  transaction(...args: unknown[]): unknown {
    return new ImmediateTransaction(this, ...args);
  }

  _formatBindings(bindings: unknown[] | undefined): unknown[] {
    return super._formatBindings(bindings?.map((b) => (b instanceof Date ? b.toISOString() : b)));
  }
}

/** The class to pass as knex's `client` option for SQLite databases. */
export const sqliteClient = SqliteClient as unknown as typeof Knex.Client;

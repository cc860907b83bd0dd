import { createHash } from 'node:crypto';
import type { RowDataPacket } from 'mysql2/promise';
import type { DatabaseConfig } from './database-uri';
import { EXACT_COLLATIONS_QUERY, pickExactCollation } from './mysql-collation';
import type { MigrationLock } from './migrate';
import type { StorageLogger } from './storage-logger';

export type MysqlConfig = Extract<DatabaseConfig, { kind: 'mysql' }>;

/** How long to wait for the TCP/handshake of a single admin connection [10000 ms]. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Seconds one GET_LOCK call waits before we log that we are still waiting [5]. */
const LOCK_POLL_SECONDS = 5;
/** Longest wait for another node's migration before start-up fails [300000 ms]. */
const LOCK_GIVE_UP_MS = 300_000;

/** A single connection outside the knex pool, for work that must not go through a database name. */
export async function connectMysql(config: MysqlConfig, opts: { database: boolean; connectTimeoutMs?: number }) {
  // Loaded when a MySQL database is used: a node on SQLite never loads the driver.
  const mysql = (await import('mysql2/promise')).default;
  return mysql.createConnection({
    host: config.host,
    port: config.port,
    user: config.user,
    password: config.password,
    database: opts.database ? config.database : undefined,
    charset: 'utf8mb4',
    connectTimeout: opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
  });
}

/**
 * Creates the database when it is missing, with utf8mb4 and the exactest binary collation the
 * server offers (mysql-collation.ts), so tables added later by other migrations compare JIDs exactly
 * by default. An existing database is left alone, so an account that may not create databases
 * still works; creating is safe from several nodes at once (IF NOT EXISTS).
 */
export async function ensureMysqlDatabase(config: MysqlConfig): Promise<void> {
  try {
    await (await connectMysql(config, { database: true })).end();
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ER_BAD_DB_ERROR') throw describeConnectError(config, err);
  }
  const conn = await connectMysql(config, { database: false }).catch((err) => {
    throw describeConnectError(config, err);
  });
  try {
    const [available] = await conn.query<RowDataPacket[]>(EXACT_COLLATIONS_QUERY);
    const collation = pickExactCollation(available.map((r) => String(r.name)));
    await conn.query(
      `CREATE DATABASE IF NOT EXISTS ${conn.escapeId(config.database)} CHARACTER SET utf8mb4 COLLATE ${collation}`,
    );
  } finally {
    await conn.end();
  }
}

/** Start-up errors name the server and user, never the password. */
function describeConnectError(config: MysqlConfig, err: unknown): Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new Error(`cannot open MySQL database ${config.database} at ${config.host}:${config.port} as ${config.user}: ${reason}`, {
    cause: err,
  });
}

/**
 * Serialises migrations across nodes with a MySQL named lock (GET_LOCK). The lock belongs to a
 * dedicated connection, so the server releases it by itself if this process dies mid-migration,
 * unlike knex's lock row, which would stay set and block every later start.
 */
export function mysqlMigrationLock(config: MysqlConfig, logger: StorageLogger): MigrationLock {
  // Lock names are server-wide (one per database) and at most 64 characters.
  const plain = `xmpp-migrate:${config.database}`;
  const name = plain.length <= 64 ? plain : `xmpp-migrate:${createHash('sha1').update(config.database).digest('hex')}`;
  return {
    async acquire() {
      const conn = await connectMysql(config, { database: false });
      try {
        const started = Date.now();
        for (;;) {
          const [rows] = await conn.query<RowDataPacket[]>('SELECT GET_LOCK(?, ?) AS got', [name, LOCK_POLL_SECONDS]);
          if (rows[0]?.got === 1) break;
          if (Date.now() - started > LOCK_GIVE_UP_MS) {
            throw new Error(`gave up waiting for migration lock "${name}" held by another connection`);
          }
          logger.info(`waiting for another node to finish migrating database ${config.database}`);
        }
      } catch (err) {
        await conn.end().catch(() => undefined);
        throw err;
      }
      return async () => {
        try {
          await conn.query('SELECT RELEASE_LOCK(?)', [name]);
        } finally {
          await conn.end().catch(() => undefined);
        }
      };
    },
    heldExclusively: true,
  };
}

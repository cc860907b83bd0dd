import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { DatabaseConfig } from './database-uri';
import type { MigrationLock } from './migrate';
import type { StorageLogger } from './storage-logger';

export type PgsqlConfig = Extract<DatabaseConfig, { kind: 'pgsql' }>;

/** node-postgres, loaded when a PostgreSQL database is used: a node on SQLite never loads it. */
export async function loadPg(): Promise<typeof pg> {
  return (await import('pg')).default;
}

/** How long to wait for the TCP/handshake of a single admin connection [10000 ms]. */
const CONNECT_TIMEOUT_MS = 10_000;
/** How often a node waiting for another node's migration tries the lock again [250 ms]. */
const LOCK_POLL_MS = 250;
/** How often a waiting node says that it is still waiting [5000 ms]. */
const LOCK_LOG_EVERY_MS = 5000;
/** Longest wait for another node's migration before start-up fails [300000 ms]. */
const LOCK_GIVE_UP_MS = 300_000;
/** The database every PostgreSQL server has, used to create ours [postgres]. */
const MAINTENANCE_DATABASE = 'postgres';

/** PostgreSQL's error codes (SQLSTATE) for "that database exists": duplicate_database, and the catalog's unique index when two nodes race. */
const DATABASE_EXISTS = new Set(['42P04', '23505']);

/** node-postgres's TLS options for a libpq-style sslmode. */
export function pgSsl(config: PgsqlConfig): pg.ClientConfig['ssl'] {
  if (config.ssl === 'disable') return false;
  // require: encrypted, but like libpq's "require" it does not check whose certificate it is.
  return config.ssl === 'require' ? { rejectUnauthorized: false } : { rejectUnauthorized: true, servername: config.host };
}

/** A single connection outside the knex pool: to our database, or to the maintenance database. */
export async function connectPgsql(config: PgsqlConfig, opts: { database: boolean; connectTimeoutMs?: number }): Promise<pg.Client> {
  const { Client } = await loadPg();
  const client = new Client({
    host: config.host,
    port: config.port,
    user: config.user,
    password: config.password,
    database: opts.database ? config.database : MAINTENANCE_DATABASE,
    ssl: pgSsl(config),
    connectionTimeoutMillis: opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
  });
  // A server that goes away emits 'error' on an idle client; the next query fails with it instead.
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/**
 * Creates the database when it is missing: UTF-8 with the "C" collation, so that text compares
 * and sorts by code point whatever the server's locale (JIDs compare exactly on every engine,
 * RFC 7622 §3). An existing database is left alone, so an account that may not create databases
 * still works; several nodes creating it at once see one success and no error.
 */
export async function ensurePgsqlDatabase(config: PgsqlConfig): Promise<void> {
  try {
    await (await connectPgsql(config, { database: true })).end();
    return;
  } catch (err) {
    // invalid_catalog_name: the database does not exist.
    if ((err as { code?: string }).code !== '3D000') throw describeConnectError(config, err);
  }
  const conn = await connectPgsql(config, { database: false }).catch((err) => {
    throw describeConnectError(config, err);
  });
  const { escapeIdentifier } = await loadPg();
  try {
    await conn.query(
      `CREATE DATABASE ${escapeIdentifier(config.database)} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
    );
  } catch (err) {
    if (!DATABASE_EXISTS.has((err as { code?: string }).code ?? '')) throw describeConnectError(config, err);
  } finally {
    await conn.end().catch(() => undefined);
  }
}

/** Start-up errors name the server and user, never the password. */
function describeConnectError(config: PgsqlConfig, err: unknown): Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new Error(`cannot open PostgreSQL database ${config.database} at ${config.host}:${config.port} as ${config.user}: ${reason}`, {
    cause: err,
  });
}

/**
 * Serialises migrations across nodes with a session-level advisory lock. The lock belongs to a
 * dedicated connection, so the server releases it by itself if this process dies mid-migration,
 * unlike knex's lock row, which would stay set and block every later start.
 */
export function pgsqlMigrationLock(config: PgsqlConfig, logger: StorageLogger): MigrationLock {
  // Advisory locks are per database; the key is any 64-bit number both sides agree on.
  const key = createHash('sha1').update(`xmpp-migrate:${config.database}`).digest().readBigInt64BE(0).toString();
  return {
    async acquire() {
      const conn = await connectPgsql(config, { database: true });
      try {
        const started = Date.now();
        let said = started;
        for (;;) {
          const { rows } = await conn.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS got', [key]);
          if (rows[0]?.got) break;
          if (Date.now() - started > LOCK_GIVE_UP_MS) {
            throw new Error(`gave up waiting for the migration lock of ${config.database}, held by another connection`);
          }
          if (Date.now() - said >= LOCK_LOG_EVERY_MS) {
            said = Date.now();
            logger.info(`waiting for another node to finish migrating database ${config.database}`);
          }
          await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
        }
      } catch (err) {
        await conn.end().catch(() => undefined);
        throw err;
      }
      return async () => {
        try {
          await conn.query('SELECT pg_advisory_unlock($1::bigint)', [key]);
        } finally {
          await conn.end().catch(() => undefined);
        }
      };
    },
    heldExclusively: true,
  };
}

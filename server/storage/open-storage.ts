import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import type pg from 'pg';
import { parseDatabaseUri, redactPassword, type DatabaseConfig } from './database-uri';
import { KnexStorage } from './knex-storage';
import { ensureMysqlDatabase, mysqlMigrationLock, type MysqlConfig } from './mysql-server';
import { ensurePgsqlDatabase, loadPg, pgSsl, pgsqlMigrationLock, type PgsqlConfig } from './pgsql-server';
import { SqliteArchiveWriter } from './sqlite-archive-writer';
import { sqliteClient } from './sqlite-client';
import { silentLogger, type StorageLogger } from './storage-logger';
import type { Storage } from './types';

export { parseDatabaseUri, type DatabaseConfig } from './database-uri';
export type { StorageLogger } from './storage-logger';

export interface OpenStorageOptions {
  /** Apply pending migrations before returning [true]. */
  migrate?: boolean;
  logger?: StorageLogger;
  /** MySQL or PostgreSQL connections per node [10] (--user-db-pool-size). */
  poolSize?: number;
}

/** SQLite: how long a statement waits for another process's (or thread's) write lock before SQLITE_BUSY [5000 ms]. */
const SQLITE_BUSY_TIMEOUT_MS = 5000;
/** SQLite page cache per connection [32 MiB]. */
const SQLITE_CACHE_KIB = 32 * 1024;
/**
 * SQLite: WAL pages after which a commit checkpoints them into the database file [10000, 40 MB; SQLite's
 * default is 1000]. Each archive transaction rewrites the index pages of every user it touches, the
 * same pages each time; a checkpoint copies each page once however often the WAL holds it, so fewer
 * checkpoints copy far fewer pages: the writer thread's CPU at 2,000 messages/s fell from 19% to 15%
 * of a core. The main connection has the same threshold: with a lower one, its rare commits would
 * checkpoint what the writer thread left, on the event loop.
 */
const SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000;
/** MySQL and PostgreSQL: connections per node [10]. */
const POOL_MAX = 10;
/** MySQL and PostgreSQL: how long a query waits for a free pool connection [10000 ms]. */
const ACQUIRE_TIMEOUT_MS = 10_000;
/** PostgreSQL: how long opening a connection may take [10000 ms]. */
const PGSQL_CONNECT_TIMEOUT_MS = 10_000;
/**
 * MySQL session settings. Strict mode turns would-be truncations into errors; a UTC session makes
 * NOW() and CURRENT_TIMESTAMP agree with the UTC values we store.
 */
const MYSQL_SESSION_SQL =
  "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";

/**
 * Opens the database named by `uri` (see parseDatabaseUri), creating the MySQL database or the SQLite
 * file's folder when missing, and applies migrations unless `migrate: false`.
 *
 * SQLite: open one Storage per file per process. Several processes may share the file (WAL); a
 * statement that finds the write lock taken is retried from a timer for up to 5 s, so waiting for
 * another process (or the archive writer thread) never stalls the event loop.
 */
export async function openStorage(uri: string, opts: OpenStorageOptions = {}): Promise<Storage> {
  const config = parseDatabaseUri(uri);
  const logger = opts.logger ?? silentLogger;
  let storage: KnexStorage;
  const poolSize = opts.poolSize ?? POOL_MAX;
  if (config.kind === 'sqlite') {
    const file = config.filename === ':memory:' ? undefined : resolve(config.filename);
    const writer = file ? new SqliteArchiveWriter(file, { busyTimeoutMs: SQLITE_BUSY_TIMEOUT_MS, cacheKib: SQLITE_CACHE_KIB, walAutocheckpointPages: SQLITE_WAL_AUTOCHECKPOINT_PAGES }) : undefined;
    storage = new KnexStorage('sqlite', openSqlite(config.filename, logger), undefined, logger, writer);
  } else if (config.kind === 'mysql') {
    await ensureMysqlDatabase(config);
    storage = new KnexStorage('mysql', openMysql(config, logger, poolSize), mysqlMigrationLock(config, logger), logger);
  } else {
    await ensurePgsqlDatabase(config);
    storage = new KnexStorage('pgsql', openPgsql(config, logger, poolSize, (await loadPg()).types), pgsqlMigrationLock(config, logger), logger);
  }
  try {
    if (opts.migrate !== false) await storage.migrate();
  } catch (err) {
    await storage.close().catch(() => undefined);
    throw err;
  }
  logger.info(`storage: ${describe(config, uri)}`);
  return storage;
}

function openSqlite(filename: string, logger: StorageLogger): Knex {
  const memory = filename === ':memory:';
  const path = memory ? filename : resolve(filename);
  if (!memory) mkdirSync(dirname(path), { recursive: true });
  return knexFactory({
    client: sqliteClient,
    // busyTimeoutMs: how long sqlite-client.ts retries a statement that found the write lock taken.
    connection: { filename: path, busyTimeoutMs: SQLITE_BUSY_TIMEOUT_MS } as Knex.Sqlite3ConnectionConfig,
    useNullAsDefault: true,
    log: knexLog(logger),
    pool: {
      // One connection per process: SQLite has one writer at a time anyway, and with ':memory:' a
      // second connection would be a second, empty database. min 1 keeps it from being reaped.
      min: 1,
      max: 1,
      afterCreate(db: { pragma(sql: string): unknown }, done: (err: Error | null, db: unknown) => void) {
        try {
          // busy_timeout first: switching to WAL needs a lock another process may be holding.
          db.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
          db.pragma('journal_mode = WAL');
          db.pragma('foreign_keys = ON');
          // In WAL mode NORMAL loses no committed data on a process crash, only on power loss.
          db.pragma('synchronous = NORMAL');
          // 32 MiB of page cache (the default is 2 MiB): the archive's indexes stay in memory.
          db.pragma(`cache_size = -${SQLITE_CACHE_KIB}`);
          db.pragma(`wal_autocheckpoint = ${SQLITE_WAL_AUTOCHECKPOINT_PAGES}`);
          // From here on a locked database is waited for off the event loop (sqlite-client.ts).
          db.pragma('busy_timeout = 0');
          done(null, db);
        } catch (err) {
          done(err as Error, db);
        }
      },
    },
  });
}

function openMysql(config: MysqlConfig, logger: StorageLogger, poolSize: number): Knex {
  return knexFactory({
    client: 'mysql2',
    connection: {
      host: config.host,
      port: config.port,
      user: config.user,
      password: config.password,
      database: config.database,
      charset: 'utf8mb4',
      // DATETIME values are written and read as UTC.
      timezone: 'Z',
      dateStrings: false,
      supportBigNumbers: true,
    },
    log: knexLog(logger),
    acquireConnectionTimeout: ACQUIRE_TIMEOUT_MS,
    pool: {
      min: 0,
      max: poolSize,
      afterCreate(conn: { query(sql: string, cb: (err: Error | null) => void): void }, done: (err: Error | null, conn: unknown) => void) {
        conn.query(MYSQL_SESSION_SQL, (err) => done(err, conn));
      },
    },
  });
}

/**
 * node-postgres returns BIGINT (int8) and NUMERIC as strings, because they may exceed 2^53. Ours
 * are row ids, counts, sizes and sums of sizes, far below that, and the other drivers return
 * numbers: these parsers make PostgreSQL's rows read the same.
 */
const PG_INT8_OID = 20;
const PG_NUMERIC_OID = 1700;
function pgTypes(types: typeof pg.types) {
  return {
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (oid === PG_INT8_OID || oid === PG_NUMERIC_OID) return (value: string) => Number(value);
      return types.getTypeParser(oid, format as 'text');
    },
  };
}

function openPgsql(config: PgsqlConfig, logger: StorageLogger, poolSize: number, types: typeof pg.types): Knex {
  return knexFactory({
    client: 'pg',
    connection: {
      host: config.host,
      port: config.port,
      user: config.user,
      password: config.password,
      database: config.database,
      ssl: pgSsl(config),
      types: pgTypes(types),
      connectionTimeoutMillis: PGSQL_CONNECT_TIMEOUT_MS,
      // Sessions in UTC, so that psql and NOW() show the instants we store as we store them.
      options: '-c TimeZone=UTC',
    } as Knex.PgConnectionConfig,
    log: knexLog(logger),
    acquireConnectionTimeout: ACQUIRE_TIMEOUT_MS,
    pool: { min: 0, max: poolSize },
  });
}

/** knex's own warnings (lock waits, deprecations) go to our logger instead of the console. */
function knexLog(logger: StorageLogger): Knex.Config['log'] {
  const text = (m: unknown) => `knex: ${typeof m === 'string' ? m : JSON.stringify(m)}`;
  return {
    warn: (m: unknown) => logger.info(text(m)),
    error: (m: unknown) => logger.info(text(m)),
    debug: (m: unknown) => logger.debug(text(m)),
    deprecate: (method: string, alternative: string) => logger.debug(`knex: ${method} is deprecated, use ${alternative}`),
  };
}

function describe(config: DatabaseConfig, uri: string): string {
  return config.kind === 'sqlite' ? `sqlite ${config.filename}` : `${config.kind} ${redactPassword(uri)}`;
}

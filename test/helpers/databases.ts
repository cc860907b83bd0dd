import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { RowDataPacket } from 'mysql2';
import t from 'tap';
import { parseDatabaseUri, redactPassword, type DatabaseConfig } from '../../server/storage/database-uri';
import { connectMysql, ensureMysqlDatabase } from '../../server/storage/mysql-server';
import { connectPgsql, ensurePgsqlDatabase } from '../../server/storage/pgsql-server';
import { openStorage } from '../../server/storage/open-storage';
import type { Storage } from '../../server/storage/types';

/** A tap test object as handed to `t.test` callbacks (core Test plus the built-in plugins). */
export type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];
export type DatabaseKind = 'sqlite' | 'mysql' | 'pgsql';
type ServerKind = Exclude<DatabaseKind, 'sqlite'>;
type ServerConfig<K extends ServerKind> = Extract<DatabaseConfig, { kind: K }>;

/** The MySQL server tests use; each test creates and drops its own database on it. */
export const MYSQL_URI = process.env.XMPP_TEST_MYSQL_URI ?? 'mysql://root@127.0.0.1:3306';
/** The PostgreSQL server tests use, the same way. */
export const PGSQL_URI = process.env.XMPP_TEST_PGSQL_URI ?? 'postgresql://postgres@127.0.0.1:5432';
/** CI sets these so that a missing server fails the run instead of skipping part of it. */
const REQUIRED: Record<ServerKind, boolean> = {
  mysql: process.env.XMPP_TEST_REQUIRE_MYSQL === '1',
  pgsql: process.env.XMPP_TEST_REQUIRE_PGSQL === '1',
};
const SERVER_URI: Record<ServerKind, string> = { mysql: MYSQL_URI, pgsql: PGSQL_URI };
const SERVER_NAME: Record<ServerKind, string> = { mysql: 'MySQL', pgsql: 'PostgreSQL' };
const REQUIRE_VARIABLE: Record<ServerKind, string> = { mysql: 'XMPP_TEST_REQUIRE_MYSQL', pgsql: 'XMPP_TEST_REQUIRE_PGSQL' };
/** How long the availability probe waits for a server to answer [2000 ms]. */
const PROBE_TIMEOUT_MS = 2000;

/** How long one database's run of a forEachDatabase suite may take [120 s; a run takes 2-40 s]. */
const SUBTEST_TIMEOUT_MS = 120_000;

/** Test databases whose newest table is older than this were left by a killed run [1 hour]. */
const ABANDONED_AFTER_HOURS = 1;

const availability: Partial<Record<ServerKind, Promise<boolean>>> = {};
const skipAnnounced: Record<ServerKind, boolean> = { mysql: false, pgsql: false };
const swept: Partial<Record<ServerKind, Promise<void>>> = {};

/** True when MySQL at MYSQL_URI answers within 2 s; probed once per process. */
export function mysqlAvailable(): Promise<boolean> {
  return serverAvailable('mysql');
}

/** True when PostgreSQL at PGSQL_URI answers within 2 s; probed once per process. */
export function pgsqlAvailable(): Promise<boolean> {
  return serverAvailable('pgsql');
}

function serverAvailable(kind: ServerKind): Promise<boolean> {
  availability[kind] ??= (async () => {
    try {
      await withServerConnection(kind, PROBE_TIMEOUT_MS, async (query) => {
        await query('SELECT 1');
      });
      return true;
    } catch {
      return false;
    }
  })();
  return availability[kind];
}

/**
 * A fresh, empty database for one test, removed when the test ends: for SQLite a file in a new temp
 * folder; for MySQL and PostgreSQL a database `xmpp_test_<random>` on MYSQL_URI or PGSQL_URI.
 * Returns undefined when that server does not answer (and says so once), unless
 * XMPP_TEST_REQUIRE_MYSQL=1 or XMPP_TEST_REQUIRE_PGSQL=1 asks for it, where the test fails instead.
 */
export async function createTestDatabase(t: TapTest, kind: DatabaseKind): Promise<{ uri: string } | undefined> {
  if (kind === 'sqlite') {
    const dir = await mkdtemp(join(tmpdir(), 'xmpp-test-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    return { uri: `sqlite:${join(dir, 'xmpp.sqlite')}` };
  }
  if (!(await serverAvailable(kind))) {
    const where = redactPassword(SERVER_URI[kind]);
    if (REQUIRED[kind]) {
      t.fail(`${SERVER_NAME[kind]} not reachable at ${where} and ${REQUIRE_VARIABLE[kind]}=1`);
    } else if (!skipAnnounced[kind]) {
      skipAnnounced[kind] = true;
      t.comment(`${SERVER_NAME[kind]} not reachable at ${where}; skipping ${SERVER_NAME[kind]} tests`);
    }
    return undefined;
  }
  swept[kind] ??= sweepAbandonedTestDatabases(kind);
  await swept[kind];
  const name = testDatabaseName();
  const uri = withDatabase(SERVER_URI[kind], name);
  if (kind === 'mysql') await ensureMysqlDatabase(parseDatabaseUri(uri) as ServerConfig<'mysql'>);
  else await ensurePgsqlDatabase(parseDatabaseUri(uri) as ServerConfig<'pgsql'>);
  t.teardown(() => dropTestDatabase(kind, name));
  return { uri };
}

/**
 * Registers `${name} (sqlite)`, `${name} (mysql)` and `${name} (pgsql)` subtests that run `fn`
 * against a fresh database of each kind: how one suite runs on all three. A server's subtest is
 * skipped (or failed, under its XMPP_TEST_REQUIRE_* variable) when that server does not answer.
 * `kinds` narrows it: cluster scenarios, whose storage is covered on all three by the storage and
 * single-node tests, each run on one kind, the kinds taken in turn across scenarios.
 */
export function forEachDatabase(name: string, fn: (t: TapTest, uri: string, kind: DatabaseKind) => Promise<void>, kinds: readonly DatabaseKind[] = ['sqlite', 'mysql', 'pgsql']): void {
  for (const kind of kinds) {
    // Its own deadline, well inside the file's: a hang names the subtest and the others still run.
    t.test(`${name} (${kind})`, { timeout: SUBTEST_TIMEOUT_MS }, async (t) => {
      const db = await createTestDatabase(t, kind);
      if (!db) {
        if (kind === 'sqlite' || !REQUIRED[kind]) t.plan(0, `${kind} not reachable`);
        return;
      }
      await fn(t, db.uri, kind);
    });
  }
}

/** openStorage for a test: the storage is closed when the test ends. */
export async function openTestStorage(t: TapTest, uri: string, opts?: Parameters<typeof openStorage>[1]): Promise<Storage> {
  const storage = await openStorage(uri, opts);
  t.teardown(() => storage.close());
  return storage;
}

/**
 * Runs `work` on one connection to the server of `kind` outside any database (PostgreSQL: its
 * maintenance database), with `query` taking MySQL's `?` or PostgreSQL's `$1` placeholders.
 */
async function withServerConnection<T>(
  kind: ServerKind,
  connectTimeoutMs: number | undefined,
  work: (query: (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>) => Promise<T>,
): Promise<T> {
  if (kind === 'mysql') {
    const conn = await connectMysql(serverConfig('mysql'), { database: false, connectTimeoutMs });
    try {
      return await work(async (sql, params) => (await conn.query<RowDataPacket[]>(sql, params))[0]);
    } finally {
      await conn.end();
    }
  }
  const conn = await connectPgsql(serverConfig('pgsql'), { database: false, connectTimeoutMs });
  try {
    return await work(async (sql, params) => (await conn.query(sql, params)).rows);
  } finally {
    await conn.end();
  }
}

async function dropTestDatabase(kind: ServerKind, name: string): Promise<void> {
  await withServerConnection(kind, undefined, async (query) => {
    // PostgreSQL 13+ ends the sessions a test left open (a killed node's pool) instead of refusing.
    await query(kind === 'mysql' ? `DROP DATABASE IF EXISTS \`${name}\`` : `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  });
}

/**
 * A test process killed mid-run (tap's timeout, Ctrl-C) never runs its teardown, so its database
 * stays behind. Test databases carry their creation time in their name (testDatabaseName); this
 * drops those created over an hour ago, which no running test still uses.
 */
async function sweepAbandonedTestDatabases(kind: ServerKind): Promise<void> {
  await withServerConnection(kind, undefined, async (query) => {
    const rows = await query(
      kind === 'mysql'
        ? "SELECT SCHEMA_NAME AS db FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'xmpp\\_test\\_%'"
        : "SELECT datname AS db FROM pg_database WHERE datname LIKE 'xmpp\\_test\\_%'",
    );
    for (const { db } of rows) {
      const created = /^xmpp_test_([0-9a-z]+)_[0-9a-f]+$/.exec(String(db));
      if (created && Date.now() - parseInt(created[1], 36) > ABANDONED_AFTER_HOURS * 3_600_000) {
        await dropTestDatabase(kind, String(db)).catch(() => undefined);
      }
    }
  });
}

/** `xmpp_test_<creation time in ms, base 36>_<random>`: unique, and old ones can be told by name. */
function testDatabaseName(): string {
  return `xmpp_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/** The server part of MYSQL_URI or PGSQL_URI; the database name is a placeholder, never used. */
function serverConfig<K extends ServerKind>(kind: K): ServerConfig<K> {
  return parseDatabaseUri(withDatabase(SERVER_URI[kind], 'probe')) as ServerConfig<K>;
}

/** A server URI (mysql://, postgresql://, or their jdbc: forms, with or without a database) pointed at `database`. */
function withDatabase(serverUri: string, database: string): string {
  const jdbc = serverUri.startsWith('jdbc:');
  const url = new URL(jdbc ? serverUri.slice('jdbc:'.length) : serverUri);
  url.pathname = `/${database}`;
  return (jdbc ? 'jdbc:' : '') + url.toString();
}

/**
 * A fresh database for a cluster test that runs once rather than on every kind: MySQL (or
 * PostgreSQL when asked) when it answers, as real clusters share; otherwise a SQLite file shared by
 * the node processes. Undefined only when that server is required (CI) and missing: the test has
 * already failed then.
 */
export async function createClusterDatabase(t: TapTest, kind: ServerKind = 'mysql'): Promise<string | undefined> {
  const server = await createTestDatabase(t, kind);
  if (server) return server.uri;
  if (REQUIRED[kind]) return undefined;
  return (await createTestDatabase(t, 'sqlite'))?.uri;
}

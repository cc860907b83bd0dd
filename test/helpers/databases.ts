import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { RowDataPacket } from 'mysql2';
import t from 'tap';
import { parseDatabaseUri, redactPassword, type DatabaseConfig } from '../../server/storage/database-uri';
import { connectMysql, ensureMysqlDatabase } from '../../server/storage/mysql-server';
import { openStorage } from '../../server/storage/open-storage';
import type { Storage } from '../../server/storage/types';

/** A tap test object as handed to `t.test` callbacks (core Test plus the built-in plugins). */
export type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];
export type DatabaseKind = 'sqlite' | 'mysql';

/** The MySQL server tests use; each test creates and drops its own database on it. */
export const MYSQL_URI = process.env.XMPP_TEST_MYSQL_URI ?? 'mysql://root@127.0.0.1:3306';
/** CI sets this so that a missing MySQL fails the run instead of skipping half of it. */
const REQUIRE_MYSQL = process.env.XMPP_TEST_REQUIRE_MYSQL === '1';
/** How long the availability probe waits for MySQL to answer [2000 ms]. */
const PROBE_TIMEOUT_MS = 2000;

/** Test databases whose newest table is older than this were left by a killed run [1 hour]. */
const ABANDONED_AFTER_HOURS = 1;

let availability: Promise<boolean> | undefined;
let skipAnnounced = false;
let swept: Promise<void> | undefined;

/** True when MySQL at MYSQL_URI answers within 2 s; probed once per process. */
export function mysqlAvailable(): Promise<boolean> {
  availability ??= (async () => {
    try {
      const conn = await connectMysql(serverConfig(), { database: false, connectTimeoutMs: PROBE_TIMEOUT_MS });
      try {
        await conn.query('SELECT 1');
      } finally {
        await conn.end();
      }
      return true;
    } catch {
      return false;
    }
  })();
  return availability;
}

/**
 * A fresh, empty database for one test, removed when the test ends: for SQLite a file in a new temp
 * folder; for MySQL a database `xmpp_test_<random>` on MYSQL_URI. Returns undefined when MySQL does
 * not answer (and says so once), unless XMPP_TEST_REQUIRE_MYSQL=1, where the test fails instead.
 */
export async function createTestDatabase(t: TapTest, kind: DatabaseKind): Promise<{ uri: string } | undefined> {
  if (kind === 'sqlite') {
    const dir = await mkdtemp(join(tmpdir(), 'xmpp-test-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    return { uri: `sqlite:${join(dir, 'xmpp.sqlite')}` };
  }
  if (!(await mysqlAvailable())) {
    const where = redactPassword(MYSQL_URI);
    if (REQUIRE_MYSQL) {
      t.fail(`MySQL not reachable at ${where} and XMPP_TEST_REQUIRE_MYSQL=1`);
    } else if (!skipAnnounced) {
      skipAnnounced = true;
      t.comment(`MySQL not reachable at ${where}; skipping MySQL tests`);
    }
    return undefined;
  }
  swept ??= sweepAbandonedTestDatabases();
  await swept;
  const uri = withDatabase(MYSQL_URI, `xmpp_test_${randomBytes(6).toString('hex')}`);
  const config = parseDatabaseUri(uri) as Extract<DatabaseConfig, { kind: 'mysql' }>;
  await ensureMysqlDatabase(config);
  t.teardown(async () => {
    const conn = await connectMysql(config, { database: false });
    try {
      await conn.query(`DROP DATABASE IF EXISTS ${conn.escapeId(config.database)}`);
    } finally {
      await conn.end();
    }
  });
  return { uri };
}

/**
 * Registers `${name} (sqlite)` and `${name} (mysql)` subtests that run `fn` against a fresh database
 * of each kind: how one suite runs on both. The MySQL one is skipped (or failed, under
 * XMPP_TEST_REQUIRE_MYSQL=1) when MySQL does not answer.
 */
export function forEachDatabase(name: string, fn: (t: TapTest, uri: string, kind: DatabaseKind) => Promise<void>): void {
  for (const kind of ['sqlite', 'mysql'] as const) {
    t.test(`${name} (${kind})`, async (t) => {
      const db = await createTestDatabase(t, kind);
      if (!db) {
        if (!REQUIRE_MYSQL) t.plan(0, 'MySQL not reachable');
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
 * A test process killed mid-run (tap's timeout, Ctrl-C) never runs its teardown, so its database
 * stays behind. Drops xmpp_test_* databases untouched for an hour; a running test's are younger.
 */
async function sweepAbandonedTestDatabases(): Promise<void> {
  const conn = await connectMysql(serverConfig(), { database: false });
  try {
    const [rows] = await conn.query<RowDataPacket[]>(
      `SELECT TABLE_SCHEMA AS db FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE 'xmpp\\_test\\_%'
       GROUP BY TABLE_SCHEMA HAVING MAX(COALESCE(UPDATE_TIME, CREATE_TIME)) < NOW() - INTERVAL ${ABANDONED_AFTER_HOURS} HOUR`,
    );
    for (const { db } of rows) await conn.query(`DROP DATABASE IF EXISTS ${conn.escapeId(String(db))}`);
  } finally {
    await conn.end();
  }
}

/** The server part of MYSQL_URI; the database name is a placeholder, never used. */
function serverConfig(): Extract<DatabaseConfig, { kind: 'mysql' }> {
  return parseDatabaseUri(withDatabase(MYSQL_URI, 'probe')) as Extract<DatabaseConfig, { kind: 'mysql' }>;
}

/** MYSQL_URI (mysql:// or jdbc:mysql://, with or without a database) pointed at `database`. */
function withDatabase(serverUri: string, database: string): string {
  const jdbc = serverUri.startsWith('jdbc:');
  const url = new URL(jdbc ? serverUri.slice('jdbc:'.length) : serverUri);
  url.pathname = `/${database}`;
  return (jdbc ? 'jdbc:' : '') + url.toString();
}

/**
 * A fresh database for a cluster test that runs once rather than on both kinds: MySQL when it
 * answers (what real clusters share), otherwise a SQLite file shared by the node processes.
 * Undefined only when MySQL is required (CI) and missing: the test has already failed then.
 */
export async function createClusterDatabase(t: TapTest): Promise<string | undefined> {
  const mysql = await createTestDatabase(t, 'mysql');
  if (mysql) return mysql.uri;
  if (process.env.XMPP_TEST_REQUIRE_MYSQL === '1') return undefined;
  return (await createTestDatabase(t, 'sqlite'))?.uri;
}

import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2';
import t from 'tap';
import { startPrivateMariaDb, type PrivateMariaDb } from '../helpers/private-mariadb';

/** One query on a fresh connection, closed before the test takes the server down. */
async function query(db: PrivateMariaDb, sql: string): Promise<RowDataPacket[]> {
  const conn = await mysql.createConnection({ uri: db.uri, connectTimeout: 2000 });
  try {
    const [rows] = await conn.query<RowDataPacket[]>(sql);
    return rows;
  } finally {
    await conn.end();
  }
}

async function createNotes(db: PrivateMariaDb): Promise<void> {
  await query(db, 'CREATE DATABASE outage_probe');
  await query(db, 'CREATE TABLE outage_probe.notes (id INT PRIMARY KEY, body VARCHAR(64)) ENGINE=InnoDB');
  await query(db, "INSERT INTO outage_probe.notes VALUES (1, 'written before the outage')");
}

t.test('a private MariaDB that is stopped refuses connections and comes back on the same port with its tables', async (t) => {
  const began = Date.now();
  const db = await startPrivateMariaDb(t);
  if (!db) return t.plan(0, 'MariaDB not installed');
  t.comment(`initialised and answering in ${Date.now() - began} ms on port ${db.port}`);
  t.equal(db.uri, `mysql://root@127.0.0.1:${db.port}`);
  await createNotes(db);

  await db.stop();
  await t.rejects(query(db, 'SELECT 1'), { code: 'ECONNREFUSED' }, 'a connection fails while it is down');

  const restarting = Date.now();
  await db.start();
  t.comment(`answering again ${Date.now() - restarting} ms after start()`);
  t.same(await query(db, 'SELECT id, body FROM outage_probe.notes'), [{ id: 1, body: 'written before the outage' }]);
});

t.test('a private MariaDB that is killed recovers its committed rows on the next start', async (t) => {
  const db = await startPrivateMariaDb(t);
  if (!db) return t.plan(0, 'MariaDB not installed');
  await createNotes(db);

  await db.kill();
  await t.rejects(query(db, 'SELECT 1'), { code: 'ECONNREFUSED' }, 'a connection fails while it is down');

  await db.start();
  t.same(await query(db, 'SELECT id, body FROM outage_probe.notes'), [{ id: 1, body: 'written before the outage' }]);
});

import pg from 'pg';
import t from 'tap';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres';

/** One query on a fresh connection, closed before the test takes the server down. */
async function query(db: PrivatePostgres, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: `${db.uri}/postgres`, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

async function createNotes(db: PrivatePostgres): Promise<void> {
  await query(db, 'CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(64))');
  await query(db, "INSERT INTO notes VALUES (1, 'written before the outage')");
}

t.test('a private PostgreSQL that is stopped refuses connections and comes back on the same port with its tables', async (t) => {
  const began = Date.now();
  const db = await startPrivatePostgres(t);
  if (!db) return t.plan(0, 'PostgreSQL not installed');
  t.comment(`initialised and answering in ${Date.now() - began} ms on port ${db.port}`);
  t.equal(db.uri, `postgresql://postgres@127.0.0.1:${db.port}`);
  await createNotes(db);

  await db.stop();
  await t.rejects(query(db, 'SELECT 1'), { code: 'ECONNREFUSED' }, 'a connection fails while it is down');

  await db.start();
  t.same(await query(db, 'SELECT id, body FROM notes'), [{ id: 1, body: 'written before the outage' }]);
});

t.test('a private PostgreSQL that is killed recovers its committed rows on the next start', async (t) => {
  const db = await startPrivatePostgres(t);
  if (!db) return t.plan(0, 'PostgreSQL not installed');
  await createNotes(db);

  await db.kill();
  await t.rejects(query(db, 'SELECT 1'), { code: 'ECONNREFUSED' }, 'a connection fails while it is down');

  await db.start();
  t.same(await query(db, 'SELECT id, body FROM notes'), [{ id: 1, body: 'written before the outage' }]);
});

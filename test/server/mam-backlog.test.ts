import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { eventually } from '../helpers/cluster';
import { httpRequest } from '../helpers/http';
import { collect, startTestServer, xml } from '../helpers/server';

const WAIT_MS = 60_000;
/** Enough messages that they cannot all be read in the few socket reads before the node holds. */
const MESSAGES = 3000;

/** A counter or gauge of the node's /metrics (0 when absent). */
async function metric(httpPort: number, line: RegExp): Promise<number> {
  const text = (await httpRequest(`http://127.0.0.1:${httpPort}/metrics`)).text;
  const found = text.split('\n').find((l) => line.test(l));
  return found ? Number(found.split(' ').pop()) : 0;
}

for (const transport of ['starttls', 'ws'] as const) t.test(`an archive the database cannot keep up with holds the senders back instead of dropping rows (${transport})`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xmpp-backlog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'xmpp.sqlite');
  const server = await startTestServer(t, { dbUri: `sqlite:${file}`, args: ['--mam-backlog-limit=100'] });
  await server.addUser('alice');
  await server.addUser('bob');
  const alice = await server.login('alice', { resource: 'desk', tls: transport });
  const bob = await server.login('bob', { resource: 'phone' });
  const received = collect(bob);
  const port = server.httpPort;
  const holds = () => metric(port, /^xmpp_mam_backlog_holds_total[{ ]/);

  // Another connection takes SQLite's write lock: the archive writer thread can commit nothing (it
  // retries for about 25 s before it would give rows up), so every row stays in the backlog.
  const blocker = new Database(file, { timeout: 0 });
  t.teardown(() => blocker.close());
  blocker.exec('BEGIN IMMEDIATE');

  const sent = Array.from({ length: MESSAGES }, (_, i) => alice.send(xml('message', { to: 'bob@localhost/phone', type: 'chat', id: `m${i}` }, xml('body', {}, `message ${i}`))));
  await eventually('the node holds its clients', async () => (await holds()) >= 1, WAIT_MS);
  const backlog = await metric(port, /^xmpp_mam_backlog_rows[{ ]/);
  t.ok(backlog >= 100, `the backlog (${backlog} rows) is past the limit`);
  t.ok(received.length < MESSAGES, `bob has ${received.length} of ${MESSAGES}: the rest waits unread in TCP`);

  if (transport === 'starttls') {
    // A reload that raises the limit past the backlog lets the node read again at once, while the
    // database still takes nothing; one that lowers it below holds the clients again.
    t.same(await server.node.reload({ ...server.config, mamBacklogLimit: 1_000_000 }), ['mamBacklogLimit=1000000'], 'the reload says what changed');
    await eventually(`bob has all ${MESSAGES} messages before anything is archived`, () => received.filter((s) => s.is('message')).length === MESSAGES, WAIT_MS);
    t.equal(await metric(port, /^xmpp_mam_messages_total\{outcome="archived"/), 0, 'nothing archived yet');
    t.same(await server.node.reload({ ...server.config, mamBacklogLimit: 100 }), ['mamBacklogLimit=100'], 'and again');
    t.equal(await holds(), 2, 'held again');
  }

  // The database takes rows again: the backlog drains, the node reads again, everything arrives.
  blocker.exec('ROLLBACK');
  await Promise.all(sent);
  await eventually(`bob has all ${MESSAGES} messages`, () => received.filter((s) => s.is('message')).length === MESSAGES, WAIT_MS);
  t.same(received.filter((s) => s.is('message')).map((s) => s.attrs.id), Array.from({ length: MESSAGES }, (_, i) => `m${i}`), 'in order, once each');
  await eventually('both archives hold every message', async () => (await metric(port, /^xmpp_mam_messages_total\{outcome="archived"/)) === 2 * MESSAGES, WAIT_MS);
  t.equal(await metric(port, /^xmpp_mam_messages_total\{outcome="dropped"/), 0, 'no archive row dropped');
  t.equal(await metric(port, /^xmpp_mam_backlog_rows[{ ]/), 0);
  const rows = server.node.storage.knex('archive_messages').count({ n: '*' }).first();
  t.equal(Number(((await rows) as { n: number }).n), 2 * MESSAGES, 'the rows are in the database');

  // Reading again: a message sent now goes straight through.
  await alice.send(xml('message', { to: 'bob@localhost/phone', type: 'chat', id: 'after' }, xml('body', {}, 'after')));
  await eventually('the message sent after the hold arrives', () => received.some((s) => s.attrs.id === 'after'), WAIT_MS);
});

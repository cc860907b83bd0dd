import { randomUUID } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import * as indexes012 from '../../server/storage/migrations/012-archive-indexes';
import { openStorage } from '../../server/storage/open-storage';
import { SqliteArchiveWriter } from '../../server/storage/sqlite-archive-writer';
import type { ArchiveRow } from '../../server/storage/types';
import { createTestDatabase, forEachDatabase, openTestStorage } from '../helpers/databases';
import t from 'tap';

/*
 * The archive store's writes: on SQLite files they go through a thread of their own (better-sqlite3
 * is synchronous), elsewhere through knex. The same behaviour is asked of each: rows committed in
 * order, readable at once by queries, a failing batch rejected whole, and the next batch written.
 */

function rows(user: string, from: number, count: number, stanzaId = (i: number) => `id-${i}`): ArchiveRow[] {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    return {
      user, stanzaId: stanzaId(i), withJid: 'bob@example.com', withResource: i % 2 ? 'phone' : undefined,
      direction: i % 2 ? 'in' : 'out', at: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)), stanza: `<message><body>${i}</body></message>`,
    } as ArchiveRow;
  });
}

forEachDatabase('archive store', async (t, uri) => {
  const storage = await openTestStorage(t, uri);

  t.test('batches are committed in order and read back at once, all columns intact', async (t) => {
    // One batch at a time, as the archive writes them; a batch bigger than one INSERT.
    await storage.archive.append(rows('a@example.com', 0, 1500));
    await storage.archive.append(rows('a@example.com', 1500, 10));
    const page = await storage.archive.query('a@example.com', {}, { max: 2000 });
    if (page === 'item-not-found') throw new Error('no page');
    t.equal(page.count, 1510);
    t.same(page.messages.map((m) => m.stanzaId), rows('a@example.com', 0, 1510).map((r) => r.stanzaId), 'in the order appended');
    const last = page.messages[1509];
    t.same({ ...last, at: last.at.toISOString() }, {
      stanzaId: 'id-1509', withJid: 'bob@example.com', withResource: 'phone', direction: 'in',
      at: '2026-01-01T00:00:01.509Z', stanza: '<message><body>1509</body></message>',
    });
    t.equal(page.messages[0].withResource, undefined, 'no resource reads back as none');
  });

  t.test('a batch the database refuses is refused whole, and the next one is written', async (t) => {
    // The same stanza id twice in one archive breaks the (stanza_id, user) unique index.
    const bad = rows('b@example.com', 0, 300, (i) => (i === 299 ? 'id-0' : `id-${i}`));
    await t.rejects(storage.archive.append(bad));
    const empty = await storage.archive.query('b@example.com', {}, { max: 10 });
    t.equal(empty !== 'item-not-found' && empty.count, 0, 'nothing of the refused batch');
    await storage.archive.append(rows('b@example.com', 0, 3));
    const page = await storage.archive.query('b@example.com', {}, { max: 10 });
    t.equal(page !== 'item-not-found' && page.count, 3);
  });

  t.test('migration 012 keeps the archives written before it, random stanza ids included', async (t) => {
    // Back to the indexes of the 0.1.0 and 0.2.0 releases, rows as 0.1.0 wrote them, and up again.
    await indexes012.down(storage.knex);
    await storage.archive.append(rows('f@example.com', 0, 300, () => randomUUID()));
    await indexes012.up(storage.knex);
    const all = await storage.archive.query('f@example.com', {}, { max: 300 });
    if (all === 'item-not-found') throw new Error('no page');
    const ids = all.messages.map((m) => m.stanzaId);
    t.equal(new Set(ids).size, 300, 'every row is there');
    const next = await storage.archive.query('f@example.com', {}, { max: 10, after: ids[149] });
    t.same(next !== 'item-not-found' && next.messages.map((m) => m.stanzaId), ids.slice(150, 160), 'a page after one of their ids');
    const before = await storage.archive.query('f@example.com', {}, { max: 10, before: ids[200] });
    t.same(before !== 'item-not-found' && before.messages.map((m) => m.stanzaId), ids.slice(190, 200), 'a page before one');
    t.equal(await storage.archive.query('g@example.com', {}, { max: 10, after: ids[0] }), 'item-not-found', 'another archive does not know it');
    await t.rejects(storage.archive.append([{ ...rows('f@example.com', 0, 1)[0], stanzaId: ids[7] }]), 'one id twice in an archive is still refused');
    await storage.archive.append([{ ...rows('g@example.com', 0, 1)[0], stanzaId: ids[7] }]);
    const other = await storage.archive.query('g@example.com', {}, { max: 10 });
    t.same(other !== 'item-not-found' && other.messages.map((m) => m.stanzaId), [ids[7]], 'the same id in another archive is not');
  });

  t.test('start and end select rows by their own timestamps, also where the ids disagree with them', async (t) => {
    // Three hours of a conversation, a row every 30 s, next to another user's rows; some rows were
    // stamped up to 4 min before or 2 min after their neighbours (a node's clock, a row that waited
    // in a queue): within the 5 min the store allows between a row's timestamp and its id.
    const user = 'd@example.com';
    const t0 = Date.UTC(2026, 2, 1, 12, 0, 0);
    const stamp = (i: number) => t0 + i * 30_000 + (i % 7 === 3 ? -240_000 : i % 11 === 5 ? 120_000 : 0) + (i % 3);
    const mine: ArchiveRow[] = [];
    const all: ArchiveRow[] = [];
    for (let i = 0; i < 400; i++) {
      const row: ArchiveRow = {
        user, stanzaId: `d-${i}`, withJid: i % 2 ? 'bob@example.com' : 'carol@example.com', direction: 'in',
        at: new Date(stamp(i)), stanza: `<message><body>${i}</body></message>`,
      };
      mine.push(row);
      all.push(row, { ...row, user: 'e@example.com', stanzaId: `e-${i}` });
    }
    for (let i = 0; i < all.length; i += 100) await storage.archive.append(all.slice(i, i + 100));

    const cases: [string, number | undefined, number | undefined][] = [
      ['start in the middle', 100, undefined],
      ['end in the middle', undefined, 250],
      ['start and end an hour apart', 120, 240],
      ['start and end a minute apart', 200, 202],
      ['start and end on one row', 3, 3],
      ['start before every row', -20, undefined],
      ['end after every row', undefined, 420],
      ['start after every row', 420, undefined],
      ['start near the last rows', 392, undefined],
      ['end near the first rows', undefined, 6],
    ];
    for (const [name, from, to] of cases) {
      // Bounds on a row's own timestamp, so rows stamped exactly at them are in.
      const start = from === undefined ? undefined : new Date(from >= 0 && from < 400 ? stamp(from) : t0 + from * 30_000);
      const end = to === undefined ? undefined : new Date(to >= 0 && to < 400 ? stamp(to) : t0 + to * 30_000);
      for (const withJid of [undefined, 'bob@example.com']) {
        const expected = mine.filter((r) => (!start || r.at >= start) && (!end || r.at <= end) && (!withJid || r.withJid === withJid)).map((r) => r.stanzaId);
        const filter = { start, end, withJid };
        const page = await storage.archive.query(user, filter, { max: 1000 });
        if (page === 'item-not-found') throw new Error('no page');
        const label = `${name}${withJid ? ', one contact' : ''}`;
        t.same(page.messages.map((m) => m.stanzaId), expected, `${label}: the rows stamped within, in order`);
        t.equal(page.count, expected.length, `${label}: counted`);
        if (expected.length > 12) {
          const next = await storage.archive.query(user, filter, { max: 5, after: expected[4] });
          t.same(next !== 'item-not-found' && next.messages.map((m) => m.stanzaId), expected.slice(5, 10), `${label}: a page after an id`);
          const newest = await storage.archive.query(user, filter, { max: 5, before: true });
          t.same(newest !== 'item-not-found' && newest.messages.map((m) => m.stanzaId), expected.slice(-5), `${label}: the newest page`);
        }
      }
    }
    const reversed = await storage.archive.query(user, { start: new Date(stamp(200)), end: new Date(stamp(100)) }, { max: 10 });
    t.same(reversed, { messages: [], complete: true, count: 0 }, 'start after end: nothing');
  });
});

t.test('SQLite: the writer thread waits for a write lock held elsewhere, and ends with the storage', async (t) => {
  const db = await createTestDatabase(t, 'sqlite');
  const storage = await openStorage(db!.uri);
  const other = await openStorage(db!.uri, { migrate: false });
  t.teardown(() => other.close());
  // Another connection (here: another process's view) holds the write lock for a while.
  const held = other.knex.transaction(async (trx) => {
    await trx('archive_prefs').insert({ user: 'x@example.com', default_mode: 'always', always_jids: '[]', never_jids: '[]' });
    await new Promise((resolve) => setTimeout(resolve, 300));
  });
  const appended = storage.archive.append(rows('c@example.com', 0, 5));
  await held;
  await appended;
  const page = await other.archive.query('c@example.com', {}, { max: 10 });
  t.equal(page !== 'item-not-found' && page.count, 5, 'written once the lock was free, and visible to the other connection');
  await storage.close();
  await t.rejects(storage.archive.append(rows('c@example.com', 5, 1)), 'a closed storage writes nothing');
});

t.test('SQLite: a writer thread that dies refuses what it held, whole, and the next batch starts a new one', async (t) => {
  const db = await createTestDatabase(t, 'sqlite');
  const storage = await openStorage(db!.uri);
  t.teardown(() => storage.close());
  const filename = db!.uri.replace(/^sqlite:/, '');
  const writer = new SqliteArchiveWriter(filename, { busyTimeoutMs: 5000, cacheKib: 2048, walAutocheckpointPages: 1000 });
  t.teardown(() => writer.close());
  const count = async (user: string) => {
    const page = await storage.archive.query(user, {}, { max: 1 });
    return page === 'item-not-found' ? -1 : page.count;
  };
  await writer.append(rows('d@example.com', 0, 10));
  t.equal(await count('d@example.com'), 10);

  // The thread ends (as after a crash) while it holds a large batch: that batch's promise settles,
  // and the batch is in the database whole or not at all.
  const thread = (writer as unknown as { worker: Worker }).worker;
  const big = writer.append(rows('e@example.com', 0, 50_000)).then(() => 'written', (err: Error) => err.message);
  await thread.terminate();
  const outcome = await big;
  const stored = await count('e@example.com');
  t.ok((outcome === 'written' && stored === 50_000) || (/exited/.test(outcome) && stored === 0), `all or nothing (${outcome}, ${stored} rows)`);

  await writer.append(rows('d@example.com', 10, 5));
  t.equal(await count('d@example.com'), 15, 'the next batch is written by a new thread');
});

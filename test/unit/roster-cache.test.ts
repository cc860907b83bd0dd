import { Element } from 'ltx';
import { RosterService } from '../../server/sm/roster-service';
import type { StanzaSink } from '../../server/sm/session';
import { SessionManager } from '../../server/sm/session-manager';
import type { RosterItem, Storage } from '../../server/storage/types';
import { NS } from '../../server/xml/ns';
import { forEachDatabase, openTestStorage, type TapTest } from '../helpers/databases';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';

const contact = (jid: string, extra: Partial<RosterItem> = {}): RosterItem => ({ jid, subscription: 'both', groups: [], ...extra });

/** A client stream as the session manager sees one: it keeps what it is sent. */
function sink(id: string): StanzaSink & { sent: Element[] } {
  const sent: Element[] = [];
  return { id, sent, send: (element) => sent.push(element), close: () => undefined };
}

/** Reads of roster_items from now until the end of test `t`. */
function countRosterQueries(t: TapTest, storage: Storage): { readonly count: number } {
  let count = 0;
  const listener = (query: { sql: string }) => {
    if (/^select/i.test(query.sql) && query.sql.includes('roster_items')) count++;
  };
  storage.knex.on('query', listener);
  t.teardown(() => storage.knex.off('query', listener));
  return {
    get count() {
      return count;
    },
  };
}

/*
 * RosterService keeps the rosters of users with a session here in memory (RosterCache). Real
 * storage on both databases; the orderings of reads and writes are set up by call order.
 */
forEachDatabase('roster cache', async (t, uri) => {
  const storage = await openTestStorage(t, uri);
  let n = 0;
  /** A fresh service, session manager and user (with a session) for each test. */
  const setup = async () => {
    const sessions = new SessionManager();
    const roster = new RosterService(storage, sessions);
    const user = `user${++n}@example.com`;
    const session = sessions.bind(sink(`c${n}`), `user${n}`, 'example.com', 'r');
    return { sessions, roster, user, session };
  };

  t.test('readers arriving while the roster loads share one query, later ones none', async (t) => {
    const { roster, user } = await setup();
    await storage.roster.setItem(user, contact(BOB));
    const queries = countRosterQueries(t, storage);
    const [items, bob] = await Promise.all([roster.items(user), roster.item(user, BOB), roster.items(user)]);
    t.same(items.map((i) => i.jid), [BOB]);
    t.equal(bob?.subscription, 'both');
    t.equal(queries.count, 1, 'one load');
    await roster.items(user);
    t.equal(await roster.item(user, CAROL), undefined, 'an unknown contact is answered from memory too');
    t.equal(queries.count, 1, 'no more queries');
  });

  t.test('a user without a session here is read from storage every time', async (t) => {
    const { roster } = await setup();
    const queries = countRosterQueries(t, storage);
    await roster.items(ALICE);
    await storage.roster.setItem(ALICE, contact(BOB));
    t.same((await roster.items(ALICE)).map((i) => i.jid), [BOB], 'a write straight to storage is seen');
    t.equal(queries.count, 2);
  });

  t.test('set() and remove() keep the cached copy equal to storage', async (t) => {
    const { roster, user } = await setup();
    await roster.items(user);
    await roster.set(user, contact(BOB, { name: 'Bob', groups: ['Friends'], ask: true }));
    await roster.set(user, contact(CAROL, { subscription: 'from', approved: false }));
    t.same(await roster.items(user), await storage.roster.getItems(user), 'after two sets');
    t.ok(await roster.remove(user, BOB));
    t.same(await roster.items(user), await storage.roster.getItems(user), 'after a remove');
  });

  t.test('a write while the roster loads leaves no stale copy', async (t) => {
    const loadFirst = await setup();
    const loading = loadFirst.roster.items(loadFirst.user);
    await loadFirst.roster.set(loadFirst.user, contact(BOB));
    await loading;
    t.same((await loadFirst.roster.items(loadFirst.user)).map((i) => i.jid), [BOB], 'load started before the write');

    const writeFirst = await setup();
    const writing = writeFirst.roster.set(writeFirst.user, contact(BOB));
    const loadingDuring = writeFirst.roster.items(writeFirst.user);
    await Promise.all([writing, loadingDuring]);
    t.same((await writeFirst.roster.items(writeFirst.user)).map((i) => i.jid), [BOB], 'load started during the write');

    const removing = await setup();
    await storage.roster.setItem(removing.user, contact(BOB));
    const removeWriting = removing.roster.remove(removing.user, BOB);
    const removeLoading = removing.roster.items(removing.user);
    await Promise.all([removeWriting, removeLoading]);
    t.same(await removing.roster.items(removing.user), [], 'a remove during the load');
  });

  t.test('overlapping writes of one item leave what storage kept', async (t) => {
    const { roster, user } = await setup();
    await roster.items(user);
    await Promise.all([roster.set(user, contact(BOB, { name: 'one' })), roster.set(user, contact(BOB, { name: 'two' })), roster.remove(user, BOB)]);
    t.same(await roster.item(user, BOB), await storage.roster.getItem(user, BOB));
  });

  t.test("a peer's push drops the cached copy and reaches interested resources", async (t) => {
    const { roster, user, session } = await setup();
    session.interested = true;
    await roster.items(user);
    // What the peer did: stored the item, then pushed.
    await storage.roster.setItem(user, contact(BOB, { subscription: 'to' }));
    const query = new Element('query', { xmlns: NS.ROSTER, ver: '7' });
    query.c('item', { jid: BOB, subscription: 'to' });
    roster.pushHere(user, query);
    t.equal((await roster.item(user, BOB))?.subscription, 'to', 'the change is seen');
    const push = (session.sink as ReturnType<typeof sink>).sent.at(-1);
    t.equal(push?.getChild('query', NS.ROSTER)?.getChild('item')?.attrs.jid, BOB, 'and pushed');
  });

  t.test('the cached copy lives while the user has a session here', async (t) => {
    const { sessions, roster, user, session } = await setup();
    const other = sessions.bind(sink('other'), user.split('@')[0], 'example.com', 'other');
    await roster.items(user);
    const queries = countRosterQueries(t, storage);
    sessions.end(session);
    await Promise.resolve();
    await roster.items(user);
    t.equal(queries.count, 0, 'kept while another session is bound');

    sessions.end(other);
    await storage.roster.setItem(user, contact(BOB)); // e.g. by a peer that knew of no session here
    sessions.bind(sink('again'), user.split('@')[0], 'example.com', 'again');
    t.same((await roster.items(user)).map((i) => i.jid), [BOB], 'read again after the last session ended');
  });

  t.test('forget() drops the cached copy (account deletion)', async (t) => {
    const { roster, user } = await setup();
    await roster.set(user, contact(BOB));
    await roster.items(user);
    await storage.users.delete(user);
    roster.forget(user);
    t.same(await roster.items(user), []);
  });

  t.test('cached items cannot be changed by a caller', async (t) => {
    const { roster, user } = await setup();
    await roster.set(user, contact(BOB));
    const [bob] = await roster.items(user);
    t.throws(() => {
      bob.subscription = 'none';
    }, TypeError);
    t.throws(() => bob.groups.push('x'), TypeError);
    t.equal((await roster.item(user, BOB))?.subscription, 'both');
  });
});

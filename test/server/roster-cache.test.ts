import { forEachDatabase } from '../helpers/databases';
import { item, nextPush, presenceFrom, presencesFrom, rosterGet, rosterItems, rosterSet, seedItem, seedMutual, waitUntil } from '../helpers/im';
import { collect, nextStanza, sleep, startTestServer, xml, type TestServer, type XmppClient } from '../helpers/server';
import { subscribe } from '../helpers/subscriptions';

/** How long to wait before asserting that something did NOT arrive. */
const QUIET_MS = 250;

/**
 * Counts the queries on the roster_items table from now on (knex's 'query' event on the node's
 * storage); with `user`, only those with that JID among their bindings.
 */
function countRosterQueries(server: TestServer, user?: string): { readonly count: number; stop(): void } {
  const knex = server.node.storage.knex;
  let count = 0;
  const listener = (query: { sql: string; bindings?: unknown[] }) => {
    if (query.sql.includes('roster_items') && (user === undefined || (query.bindings ?? []).includes(user))) count++;
  };
  knex.on('query', listener);
  return {
    get count() {
      return count;
    },
    stop: () => knex.off('query', listener),
  };
}

/**
 * Logs in without presence, then sends initial presence and waits until the client itself and
 * `seenBy` got it, and for what `expect` (set up before the presence is sent) waits for.
 */
async function comeOnline(
  server: TestServer,
  local: string,
  resource: string,
  seenBy: XmppClient[] = [],
  expect: (client: XmppClient) => Promise<unknown> = async () => undefined,
): Promise<XmppClient> {
  const client = await server.login(local, { resource, presence: false });
  const from = `${local}@${server.domain}/${resource}`;
  const waits = [...[client, ...seenBy].map((c) => nextStanza(c, presenceFrom(from))), expect(client)];
  await client.send(xml('presence'));
  await Promise.all(waits);
  return client;
}

/** Sends a presence with `status` from `client` and waits until each of `seenBy` got it. */
async function broadcast(client: XmppClient, status: string, seenBy: XmppClient[]): Promise<void> {
  const from = client.jid!.toString();
  const seen = seenBy.map((c) => nextStanza(c, (s) => presenceFrom(from)(s) && s.getChildText('status') === status));
  await client.send(xml('presence', {}, xml('status', {}, status)));
  await Promise.all(seen);
}

forEachDatabase('presence reads the roster from memory while the user is online', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin']) await server.addUser(user);

  await t.test('after initial presence, broadcasts, probes and logouts do not query the roster table', async (t) => {
    await seedMutual(server, 'alice', 'bob');
    const alice = await comeOnline(server, 'alice', 'a');
    const bob = await comeOnline(server, 'bob', 'b', [alice], (b) => nextStanza(b, presenceFrom('alice@localhost/a')));

    const queries = countRosterQueries(server);
    for (const status of ['one', 'two', 'three']) await broadcast(alice, status, [bob]);
    await broadcast(bob, 'here', [alice]);
    // A second resource: its initial presence, its probe of bob and the answer, an unavailable.
    const alice2 = await comeOnline(server, 'alice', 'a2', [alice, bob], (a2) => nextStanza(a2, presenceFrom('bob@localhost/b')));
    const unavailable = nextStanza(bob, presenceFrom('alice@localhost/a2', 'unavailable'));
    await alice2.send(xml('presence', { type: 'unavailable' }));
    await unavailable;
    // Then both log out.
    const loggedOut = nextStanza(bob, presenceFrom('alice@localhost/a', 'unavailable'));
    await Promise.all([alice.stop(), alice2.stop()]);
    await loggedOut;
    await waitUntil(() => !server.node.sessions.hasSessions('alice@localhost'), 5000, "alice's sessions to end");
    t.equal(queries.count, 0, 'no query on roster_items');
    queries.stop();

    // With her last session gone her roster is no longer kept: it is read again, once.
    const aliceRoster = countRosterQueries(server, 'alice@localhost');
    const again = await comeOnline(server, 'alice', 'back', [bob]);
    await broadcast(again, 'still here', [bob]);
    t.equal(aliceRoster.count, 1, "alice's roster was read once for the new session");
    aliceRoster.stop();
    await Promise.all([again.stop(), bob.stop()]);
  });

  await t.test('an approved subscription reaches the next broadcast and probe', async (t) => {
    const carol = await comeOnline(server, 'carol', 'c');
    const dave = await comeOnline(server, 'dave', 'd');
    await Promise.all([rosterGet(carol), rosterGet(dave)]);
    await broadcast(dave, 'before', [dave]); // dave's roster (no carol yet) is cached by now

    await subscribe(carol, dave);
    await broadcast(dave, 'after approval', [carol]);
    t.pass("dave's broadcast reaches his new subscriber");

    // carol's new resource probes dave (carol's cached roster says 'to'); dave's says carol may see him.
    const c2 = await server.login('carol', { resource: 'c2', presence: false });
    const probeAnswer = nextStanza(c2, (s) => presenceFrom('dave@localhost/d')(s) && s.getChildText('status') === 'after approval');
    await c2.send(xml('presence'));
    await probeAnswer;
    t.pass("the probe from carol's new resource is answered with dave's presence");

    // A roster set (name and group) keeps the subscription the cache knows of.
    const renamed = nextPush(dave, 'carol@localhost', (i) => i.attrs.name === 'Carol');
    await rosterSet(dave, item('carol@localhost', { name: 'Carol' }, ['Friends']));
    await renamed;
    const stored = (await rosterItems(dave)).get('carol@localhost');
    t.equal(stored?.attrs.subscription, 'from', 'the roster still says from');
    t.same(stored?.getChildren('group').map((g) => g.getText()), ['Friends'], 'with the new group');
    await broadcast(dave, 'renamed', [carol, c2]);
    t.pass('and the broadcast still reaches carol');
    await Promise.all([carol.stop(), c2.stop(), dave.stop()]);
  });

  await t.test('a removed contact gets no more broadcasts, and its probe is answered with unsubscribed', async (t) => {
    // From the test before: carol is subscribed to dave.
    const dave = await comeOnline(server, 'dave', 'd');
    let carol = await comeOnline(server, 'carol', 'c', [], (c) => nextStanza(c, presenceFrom('dave@localhost/d')));
    await Promise.all([rosterGet(carol), rosterGet(dave)]);

    const carolTold = nextStanza(carol, presenceFrom('dave@localhost', 'unsubscribed'));
    const carolNone = nextPush(carol, 'dave@localhost', (i) => i.attrs.subscription === 'none');
    await rosterSet(dave, item('carol@localhost', { subscription: 'remove' }));
    await Promise.all([carolTold, carolNone]);
    const seen = collect(carol);
    await broadcast(dave, 'removed carol', [dave]);
    await sleep(QUIET_MS);
    t.equal(presencesFrom(seen, 'dave@localhost').length, 0, "carol no longer gets dave's presence");

    // carol, offline (so not cached), is made to believe she is still subscribed to dave.
    await carol.stop();
    await waitUntil(() => !server.node.sessions.hasSessions('carol@localhost'), 5000, "carol's session to end");
    await seedItem(server, 'carol', 'dave', 'to');
    carol = await server.login('carol', { resource: 'c', presence: false });
    const later = collect(carol);
    const refused = nextStanza(carol, presenceFrom('dave@localhost', 'unsubscribed'));
    await carol.send(xml('presence'));
    await refused;
    await sleep(QUIET_MS);
    t.equal(presencesFrom(later, 'dave@localhost/d').length, 0, "the probe got no presence from dave's resource");
    await Promise.all([carol.stop(), dave.stop()]);
  });

  await t.test("a contact's unsubscribe stops the next broadcast to it", async (t) => {
    const dave = await comeOnline(server, 'dave', 'd');
    const erin = await comeOnline(server, 'erin', 'e');
    await Promise.all([rosterGet(dave), rosterGet(erin)]);
    await subscribe(erin, dave);
    await broadcast(dave, 'for erin', [erin]);

    const daveNone = nextPush(dave, 'erin@localhost', (i) => i.attrs.subscription === 'none');
    await erin.send(xml('presence', { to: 'dave@localhost', type: 'unsubscribe' }));
    await daveNone;
    const seen = collect(erin);
    await broadcast(dave, 'not for erin', [dave]);
    await sleep(QUIET_MS);
    t.equal(presencesFrom(seen, 'dave@localhost').length, 0, "erin no longer gets dave's presence");
    await Promise.all([dave.stop(), erin.stop()]);
  });

  await t.test('an account removed in band takes its roster along: its sessions end without a second unavailable', async (t) => {
    const withRegistration = await startTestServer(t, { dbUri, args: ['--registration=true'] });
    for (const user of ['leaver', 'friend']) await withRegistration.addUser(user);
    await seedMutual(withRegistration, 'leaver', 'friend');
    const friend = await comeOnline(withRegistration, 'friend', 'f');
    const leaver = await comeOnline(withRegistration, 'leaver', 'main', [friend]);
    const seen = collect(friend);
    const ended = new Promise((resolve) => leaver.on('error', resolve));
    await leaver.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: 'jabber:iq:register' }, xml('remove'))));
    await ended;
    await waitUntil(() => !withRegistration.node.sessions.hasSessions('leaver@localhost'), 5000, "leaver's session to end");
    await sleep(QUIET_MS);
    t.equal(presencesFrom(seen, 'leaver@localhost/main', 'unavailable').length, 1, 'the friend saw leaver go offline once');
    await friend.stop();
  });
});

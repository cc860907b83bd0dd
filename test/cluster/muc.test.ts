import t from 'tap';
import type { Element } from 'ltx';
import { rendezvousOwner } from '../../server/cluster/ownership';
import { eventually, startCluster, startPartitionableCluster } from '../helpers/cluster';
import { createClusterDatabase } from '../helpers/databases';
import {
  MUC_ARGS,
  adminSet,
  createRoom,
  discoInfo,
  discoItems,
  isFromRoom,
  join,
  joinError,
  mucItem,
  presenceOf,
  say,
  statusCodes,
} from '../helpers/muc';
import { query } from '../helpers/mam';
import { collect, nextStanza, xml, type XmppClient } from '../helpers/server';

const ROOM = 'plaza@muc.localhost';

function bodiesFrom(seen: Element[], room: string): string[] {
  return seen.filter((s) => s.is('message') && s.attrs.type === 'groupchat' && isFromRoom(s, room) && !s.getChild('delay', 'urn:xmpp:delay')).map((s) => s.getChildText('body') ?? '').filter((b) => b.startsWith('m'));
}

for (const strategy of ['broadcast', 'online-users-caching']) {
  t.test(`a room served across three nodes survives the loss of its owner (${strategy})`, async (t) => {
    const dbUri = await createClusterDatabase(t);
    if (!dbUri) return;
    const cluster = await startCluster(t, { nodes: 3, dbUri, strategy, args: MUC_ARGS });
    let liveOrder: string[] = [];
    for (const user of ['alice', 'bob', 'carol', 'dave']) await cluster.addUser(user).catch(() => undefined);
    const owners = async (item: string) => (await cluster.storage.knex('component_owners').where({ service: 'muc', item }).select('node')).map((r: { node: string }) => r.node);
    const indexOf = (name: string) => cluster.nodes.findIndex((n) => n.name === name);

    // Alice (node 1) creates the room; Bob (node 2) and Carol (node 3) come in.
    const clients = [await cluster.login(0, 'alice', { resource: 'a' }), await cluster.login(1, 'bob', { resource: 'b' }), await cluster.login(2, 'carol', { resource: 'c' })];
    const nicks = ['Alice', 'Bob', 'Carol'];
    const [alice, bob, carol] = clients;
    await createRoom(alice, `${ROOM}/Alice`, { 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_roomname': 'The Plaza', 'muc#roomconfig_whois': 'anyone' });
    await adminSet(alice, ROOM, xml('item', { jid: 'bob@localhost', affiliation: 'admin' }), xml('item', { jid: 'carol@localhost', affiliation: 'member' }), xml('item', { jid: 'dave@localhost', affiliation: 'outcast' }));
    await alice.send(xml('message', { to: ROOM, type: 'groupchat' }, xml('subject', {}, 'Market day')));

    await t.test('occupants on three nodes see each other arrive', async (t) => {
      const aliceSeesBob = presenceOf(alice, `${ROOM}/Bob`);
      const bobIn = await join(bob, `${ROOM}/Bob`);
      t.same(bobIn.presences.map((p) => p.attrs.from), [`${ROOM}/Alice`]);
      t.equal(mucItem(await aliceSeesBob)?.attrs.jid, 'bob@localhost/b', 'node 1 sees node 2\'s user, real JID and all');
      const aliceSeesCarol = presenceOf(alice, `${ROOM}/Carol`);
      const bobSeesCarol = presenceOf(bob, `${ROOM}/Carol`);
      const carolIn = await join(carol, `${ROOM}/Carol`);
      t.same(carolIn.presences.map((p) => p.attrs.from).sort(), [`${ROOM}/Alice`, `${ROOM}/Bob`]);
      t.equal(carolIn.subject.getChildText('subject'), 'Market day');
      await Promise.all([aliceSeesCarol, bobSeesCarol]);
      t.equal((await owners(ROOM)).length, 1, 'one node owns the room');
    });

    await t.test('messages sent from two nodes, interleaved, arrive in one order at all three', async (t) => {
      const seen = clients.map((c) => collect(c));
      const sent: Promise<void>[] = [];
      for (let i = 0; i < 20; i++) sent.push(say(i % 2 === 0 ? alice : bob, ROOM, `m${i}`));
      await Promise.all(sent);
      await eventually('every occupant has all 20 messages', () => seen.every((s) => bodiesFrom(s, ROOM).length === 20));
      const orders = seen.map((s) => bodiesFrom(s, ROOM));
      liveOrder = orders[0];
      t.same(orders[1], orders[0], 'Bob sees Alice\'s order');
      t.same(orders[2], orders[0], 'Carol sees Alice\'s order');
      t.same([...orders[0]].sort(), Array.from({ length: 20 }, (_, i) => `m${i}`).sort(), 'nothing lost or doubled');
      t.same(orders[0].filter((b) => Number(b.slice(1)) % 2 === 0), Array.from({ length: 10 }, (_, i) => `m${i * 2}`), 'each sender\'s messages keep their order');
      await eventually('the history is in the database', async () => Number((await cluster.storage.knex('muc_history').where({ room: ROOM }).count({ n: '*' }))[0].n) === 20);
    });

    const [ownerName] = await owners(ROOM);
    const ownerIndex = indexOf(ownerName);
    const survivors = [0, 1, 2].filter((i) => i !== ownerIndex);
    const expectedAffiliation = ['owner', 'admin', 'member'];

    // A temporary room on the same owner node: it is lost with it.
    let kiosk = '';
    for (let i = 0; !kiosk; i++) if (rendezvousOwner(`kiosk${i}@muc.localhost`, cluster.nodes.map((n) => n.name).sort()) === ownerName) kiosk = `kiosk${i}@muc.localhost`;
    const kioskUser = clients[survivors[0]];
    await createRoom(kioskUser, `${kiosk}/${nicks[survivors[0]]}`);
    t.same(await owners(kiosk), [ownerName], 'the temporary room is on the same node');
    const listed = (await discoItems(clients[survivors[1]], 'muc.localhost')).map((i) => i.attrs.jid);
    t.ok(listed.includes(kiosk) && listed.includes(ROOM), 'disco#items on another node lists the temporary room (asked of its node) and the persistent one');

    await t.test('kill -9 of the owner: survivors are told (333), rejoin at once, and find the room intact', async (t) => {
      const told = survivors.map((i) => unavailable(clients[i], `${ROOM}/${nicks[i]}`));
      const kioskTold = unavailable(kioskUser, `${kiosk}/${nicks[survivors[0]]}`);
      const killedAt = Date.now();
      await cluster.nodes[ownerIndex].kill();
      for (const presence of await Promise.all(told)) {
        t.same(statusCodes(presence), [110, 333], 'status 333 (and 110: it is about you)');
        t.equal(mucItem(presence)?.attrs.role, 'none');
      }
      t.ok(Date.now() - killedAt < 10000, `within ${Date.now() - killedAt} ms`);
      t.same(statusCodes(await kioskTold), [110, 333], 'occupants of a temporary room on that node are told too');

      for (const i of survivors) {
        const joined = await join(clients[i], `${ROOM}/${nicks[i]}`, { ms: 10000 });
        t.equal(mucItem(joined.self)?.attrs.affiliation, expectedAffiliation[i], `${nicks[i]} is still ${expectedAffiliation[i]}`);
        t.same(joined.history.map((m) => m.getChildText('body')), liveOrder, `${nicks[i]} gets the whole history back, in the order it was seen`);
        t.equal(joined.subject.getChildText('subject'), 'Market day', 'and the subject');
      }
      const newOwner = (await owners(ROOM))[0];
      t.not(newOwner, ownerName, `a survivor (${newOwner}) serves the room now`);
      t.equal(statusCodes((await join(kioskUser, `${kiosk}/${nicks[survivors[0]]}`)).self).includes(201), true, 'the temporary room starts afresh');
      const info = await discoInfo(clients[survivors[0]], ROOM);
      t.equal(info.getChild('query')?.getChild('identity')?.attrs.name, 'The Plaza', 'the configuration is intact');
      const dave = await cluster.login(survivors[0], 'dave', { resource: 'd' });
      t.equal(await joinError(dave, `${ROOM}/Dave`), 'forbidden', 'the ban holds');
      const [a, b] = survivors;
      const heard = nextGroupchat(clients[b], 'after the storm');
      await say(clients[a], ROOM, 'after the storm');
      await heard;
      t.pass('the room works for the survivors');
      // XEP-0313: the room's archive is in the shared database: nothing of it died with the node.
      const reader = clients[survivors[0]];
      await eventually('the new owner archived the new message', async () => (await query(reader, { to: ROOM })).count === 21, 20_000);
      const pages: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await query(reader, { to: ROOM, rsm: [xml('max', {}, '7'), ...(after ? [xml('after', {}, after)] : [])] });
        pages.push(...page.messages.map((m) => m.body ?? ''));
        after = page.last;
        if (page.complete) break;
      }
      t.same(pages, [...liveOrder, 'after the storm'], 'the archive pages through everything, in the order it was seen, from the new owner');
    });

    await t.test('the killed node restarts: it rejoins and does not take the room back', async (t) => {
      const ownerBefore = (await owners(ROOM))[0];
      await cluster.nodes[ownerIndex].start();
      for (let i = 0; i < 3; i++) await cluster.waitConnected(i, 3);
      const back = await cluster.login(ownerIndex, ['alice', 'bob', 'carol'][ownerIndex], { resource: 'again' });
      const others = survivors.map((i) => presenceOf(clients[i], `${ROOM}/${nicks[ownerIndex]}`, undefined, 10000));
      const joined = await join(back, `${ROOM}/${nicks[ownerIndex]}`, { ms: 10000 });
      t.same(joined.presences.map((p) => p.attrs.from).sort(), survivors.map((i) => `${ROOM}/${nicks[i]}`).sort(), 'the returning user finds the survivors in the room');
      await Promise.all(others);
      t.pass('and the survivors see it arrive');
      const heardBy = survivors.map((i) => nextGroupchat(clients[i], 'hello from the restarted node'));
      await say(back, ROOM, 'hello from the restarted node');
      await Promise.all(heardBy);
      t.pass('its messages reach the occupants on the other nodes');
      t.same(await owners(ROOM), [ownerBefore], 'the component_owners row is unchanged');
    });

    await t.test('a node that dies takes its users out of rooms served elsewhere: no ghosts', async (t) => {
      const servedBy = indexOf((await owners(ROOM))[0]);
      // The survivor on the serving node watches the other survivor's node die.
      const victim = survivors.find((i) => i !== servedBy)!;
      const client = clients[servedBy];
      const gone = unavailable(client, `${ROOM}/${nicks[victim]}`);
      await cluster.nodes[victim].kill();
      t.same(statusCodes(await gone), [333], `the room's other occupants see ${nicks[victim]} leave (333)`);
      const occupants = (await discoItems(client, ROOM)).map((i) => i.attrs.jid);
      t.notOk(occupants.includes(`${ROOM}/${nicks[victim]}`), `${nicks[victim]} is no longer listed in the room`);
    });
  });
}

for (const strategy of ['broadcast', 'online-users-caching']) {
  t.test(`after a partition heals, the room is served by one node again (${strategy})`, async (t) => {
    const dbUri = await createClusterDatabase(t);
    if (!dbUri) return;
    const { cluster, proxy } = await startPartitionableCluster(t, { dbUri, strategy, args: MUC_ARGS });
    for (const user of ['erin', 'finn']) await cluster.addUser(user).catch(() => undefined);
    // A room that node1 serves, with erin on node1 and finn on node2.
    const names = cluster.nodes.map((n) => n.name).sort();
    let room = '';
    for (let i = 0; !room; i++) if (rendezvousOwner(`harbor${i}@muc.localhost`, names) === cluster.nodes[0].name) room = `harbor${i}@muc.localhost`;
    const owner = async () => (await cluster.storage.knex('component_owners').where({ service: 'muc', item: room }).first('node'))?.node;
    const erin = await cluster.login(0, 'erin', { resource: 'e' });
    const finn = await cluster.login(1, 'finn', { resource: 'f' });
    await createRoom(erin, `${room}/Erin`, { 'muc#roomconfig_persistentroom': '1' });
    await join(finn, `${room}/Finn`);
    t.equal(await owner(), cluster.nodes[0].name, 'node1 serves the room');

    const finnTold = unavailable(finn, `${room}/Finn`);
    const erinSeesFinnGo = unavailable(erin, `${room}/Finn`);
    proxy.forwarding = false;
    t.same(statusCodes(await finnTold), [110, 333], 'cut off from the room\'s node, finn is told (333)');
    t.same(statusCodes(await erinSeesFinnGo), [333], 'and node1 takes finn out of the room: no ghost');
    const alone = await join(finn, `${room}/Finn`, { ms: 10000 });
    t.same(alone.presences, [], 'finn rejoins at once, on his side of the partition');
    t.equal(await owner(), cluster.nodes[1].name, 'node2 claimed the room');

    const erinTold = unavailable(erin, `${room}/Erin`, 20000);
    proxy.forwarding = true;
    await cluster.waitConnected(0, 2, 20000);
    t.same(statusCodes(await erinTold), [110, 333], 'when the partition heals, node1 drops its copy and tells erin (333)');
    const back = await join(erin, `${room}/Erin`, { ms: 10000 });
    t.same(back.presences.map((p) => p.attrs.from), [`${room}/Finn`], 'erin rejoins the one room node2 serves, and finds finn');
    const heard = nextStanza(finn, (s) => s.is('message') && s.getChildText('body') === 'together again', 10000);
    await say(erin, room, 'together again');
    await heard;
    t.equal(await owner(), cluster.nodes[1].name, 'and the claim stays with node2');
  });
}

/** The first unavailable presence from `from` (room/nick). */
function unavailable(client: XmppClient, from: string, ms = 15000): Promise<Element> {
  return nextStanza(client, (s) => s.is('presence') && s.attrs.from === from && s.attrs.type === 'unavailable', ms);
}

/** The next groupchat message with `body` (from any room). */
function nextGroupchat(client: XmppClient, body: string): Promise<Element> {
  return nextStanza(client, (s) => s.is('message') && s.attrs.type === 'groupchat' && s.getChildText('body') === body, 10000);
}

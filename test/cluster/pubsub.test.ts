import type { Element } from 'ltx';
import { announceCaps } from '../helpers/caps';
import { startCluster, type TestCluster } from '../helpers/cluster';
import type { XmppClient } from '../helpers/client';
import { forEachDatabase } from '../helpers/databases';
import { waitUntil } from '../helpers/im';
import { PUBSUB_EVENT, createNode, entry, isEventFor, items, nextEvent, publish, subscribe } from '../helpers/pubsub';
import { collect, xml } from '../helpers/server';
import { subscribe as presenceSubscribe } from '../helpers/subscriptions';

const SERVICE = 'pubsub.localhost';
const ARGS = ['--comp-name-1=pubsub', '--comp-class-1=pubsub'];
const TUNE = 'http://jabber.org/protocol/tune';
const tune = (title: string) => xml('tune', { xmlns: TUNE }, xml('title', {}, title));
const titleOf = (m: Element) => m.getChild('event', PUBSUB_EVENT)?.getChild('items')?.getChild('item')?.getChild('tune', TUNE)?.getChildText('title');
const texts = (list: Element[]) => list.map((i) => i.getChild('entry')?.getText());

/** The cluster node (index) that owns a pubsub node, as claimed in component_owners. */
async function ownerIndex(cluster: TestCluster, node: string): Promise<number> {
  const row: { node: string } | undefined = await cluster.storage.knex('component_owners').where({ service: 'pubsub', item: `${SERVICE}/${node}` }).first('node');
  if (!row) throw new Error(`no owner claimed for ${node}`);
  return cluster.nodes.findIndex((n) => n.name === row.node);
}

/** A client on node `index` that announced caps with `features`, once its node has verified them. */
async function loginWithCaps(cluster: TestCluster, index: number, local: string, resource: string, features: string[]): Promise<XmppClient> {
  const client = await cluster.login(index, local, { resource, presence: false });
  const caps = await announceCaps(client, features);
  await waitUntil(async () => (await cluster.storage.caps.get(caps.ver)) !== undefined, 5000, 'caps verified');
  return client;
}

for (const strategy of ['broadcast', 'online-users-caching']) {
  forEachDatabase(`pubsub and PEP on three nodes, strategy ${strategy}`, async (t, dbUri) => {
    const cluster = await startCluster(t, { nodes: 3, dbUri, strategy, args: ARGS });
    for (const user of ['alice', 'bob', 'carol', 'dave']) await cluster.addUser(user);

    await t.test('a subscriber on node C gets the items published from node A, in order, through the owner B', async (t) => {
      const creator = await cluster.login(0, 'alice', { resource: 'creator' });
      await createNode(creator, SERVICE, 'cluster-news', { 'pubsub#max_items': '50' });
      // Publisher and subscriber on the two nodes that do not own the pubsub node: every request is forwarded.
      const owner = await ownerIndex(cluster, 'cluster-news');
      const [a, c] = [(owner + 1) % 3, (owner + 2) % 3];
      const alice = await cluster.login(a, 'alice', { resource: 'a' });
      const bob = await cluster.login(c, 'bob', { resource: 'c' });
      await subscribe(bob, SERVICE, 'cluster-news');
      const seen = collect(bob);
      await Promise.all([0, 1, 2, 3, 4].map((i) => publish(i % 2 === 0 ? alice : creator, SERVICE, 'cluster-news', entry(`item ${i}`), `i${i}`)));
      const ids = () => seen.filter((s) => isEventFor(s, 'cluster-news')).map((s) => s.getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!.attrs.id);
      await waitUntil(() => ids().length === 5, 5000, 'five notifications on node C');
      const stored = (await items(bob, SERVICE, 'cluster-news')).map((i) => i.attrs.id);
      t.same(stored.slice().sort(), ['i0', 'i1', 'i2', 'i3', 'i4'], 'every item is stored');
      t.same(ids(), stored, 'notifications arrive in the order the owner stored the items');
      const carol = await cluster.login(owner, 'carol');
      t.same(texts(await items(carol, SERVICE, 'cluster-news', { max_items: '2' })).length, 2, 'the owner node serves items too');
      await Promise.all([creator.stop(), alice.stop(), bob.stop(), carol.stop()]);
    });

    await t.test('PEP notifications reach contacts on other nodes, filtered by their caps', async (t) => {
      const alice = await loginWithCaps(cluster, 0, 'alice', 'desk', [`${TUNE}+notify`]);
      const bobWants = await loginWithCaps(cluster, 2, 'bob', 'music', [TUNE, `${TUNE}+notify`]);
      const bobPlain = await loginWithCaps(cluster, 1, 'bob', 'plain', ['urn:example:nothing']);
      await presenceSubscribe(bobWants, alice);
      const plainSeen = collect(bobPlain);
      const toBob = nextEvent(bobWants, TUNE);
      await publish(alice, undefined, TUNE, tune('Across the Universe'));
      const message = await toBob;
      t.equal(message.attrs.from, 'alice@localhost');
      t.equal(titleOf(message), 'Across the Universe', 'bob on node C got alice\'s tune from node A');
      const marker = nextEvent(bobWants, TUNE, (i) => i.getChild('item')?.getChild('tune')?.getChildText('title') === 'Let It Be');
      await publish(alice, undefined, TUNE, tune('Let It Be'));
      await marker;
      t.equal(plainSeen.filter((s) => isEventFor(s, TUNE)).length, 0, 'bob\'s resource on node B without tune+notify got nothing');

      // carol, subscribed to alice, comes online on node B and gets the last tune at once.
      await presenceSubscribe(await cluster.login(1, 'carol', { resource: 'setup' }), alice);
      const carol = await cluster.login(1, 'carol', { resource: 'phone', presence: false });
      const last = nextEvent(carol, TUNE);
      await announceCaps(carol, [`${TUNE}+notify`]);
      t.equal(titleOf(await last), 'Let It Be', 'the last published item on presence, from a contact on another node');
      await Promise.all([alice.stop(), bobWants.stop(), bobPlain.stop(), carol.stop()]);
    });

    await t.test('kill -9 of a pubsub node\'s owner: publishing continues on a survivor with the items intact', async (t) => {
      const creator = await cluster.login(0, 'dave', { resource: 'creator' });
      await createNode(creator, SERVICE, 'durable', { 'pubsub#max_items': '10' });
      for (const n of [1, 2, 3]) await publish(creator, SERVICE, 'durable', entry(`before ${n}`), `b${n}`);
      await creator.stop();
      const owner = await ownerIndex(cluster, 'durable');
      const [p, s] = [0, 1, 2].filter((i) => i !== owner);
      const publisher = await cluster.login(p, 'dave', { resource: 'pub' });
      const subscriber = await cluster.login(s, 'bob', { resource: 'sub' });
      await subscribe(subscriber, SERVICE, 'durable');

      await cluster.nodes[owner].kill();
      for (const i of [p, s]) await cluster.waitConnected(i, 2);
      const event = nextEvent(subscriber, 'durable', (i) => i.getChild('item')?.attrs.id === 'a1');
      await publish(publisher, SERVICE, 'durable', entry('after'), 'a1');
      await event;
      t.pass('the subscriber on a survivor got the item published after the owner died');
      t.same(texts(await items(subscriber, SERVICE, 'durable')), ['before 1', 'before 2', 'before 3', 'after'], 'the items from before are intact');
      const newOwner = await ownerIndex(cluster, 'durable');
      t.ok([p, s].includes(newOwner), `a survivor owns the node now (node ${newOwner + 1})`);
      await Promise.all([publisher.stop(), subscriber.stop()]);
    });
  }, [strategy === 'broadcast' ? 'pgsql' : 'mysql']);
}

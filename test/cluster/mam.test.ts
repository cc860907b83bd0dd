import type { Element } from 'ltx';
import { eventually, startCluster } from '../helpers/cluster';
import { forEachDatabase } from '../helpers/databases';
import { query } from '../helpers/mam';
import { collect, xml } from '../helpers/server';

const WAIT_MS = 30_000;
const SID = 'urn:xmpp:sid:0';

// XEP-0313 in a cluster: the node that routes a message writes it into both parties' archives,
// once, however many nodes the parties' resources are on; every node pages the same archive.
forEachDatabase('MAM across three nodes: archived once per party, the same pages from every node', async (t, dbUri) => {
  const cluster = await startCluster(t, { nodes: 3, dbUri, strategy: 'online-users-caching' });
  for (const user of ['alice', 'bob']) await cluster.addUser(user);
  const alice = await cluster.login(0, 'alice', { resource: 'desk' });
  // bob on two nodes: a message to his bare JID reaches both, and is still archived once.
  const bobPhone = await cluster.login(1, 'bob', { resource: 'phone' });
  const bobLaptop = await cluster.login(2, 'bob', { resource: 'laptop' });
  const [phoneGot, laptopGot, aliceGot] = [collect(bobPhone), collect(bobLaptop), collect(alice)];
  const arrived = (seen: Element[], body: string) => eventually(`${body} arrived`, () => seen.some((s) => s.getChildText('body') === body), WAIT_MS);
  const rows = (user: string) => cluster.storage.knex('archive_messages').where({ user }).count({ n: '*' }).first().then((r) => Number((r as { n: number }).n));
  for (let i = 1; i <= 4; i++) {
    await alice.send(xml('message', { to: 'bob@localhost', type: 'chat' }, xml('body', {}, `a${i}`)));
    await arrived(phoneGot, `a${i}`);
    await arrived(laptopGot, `a${i}`);
    // Alice's node writes its rows in batches of up to 100 ms, bob's node its own: an answer sent
    // within that window may be written first (README, "Message archives"). Here each turn waits.
    await eventually(`a${i} archived`, async () => (await rows('alice@localhost')) === 2 * i - 1, WAIT_MS);
    await bobPhone.send(xml('message', { to: 'alice@localhost/desk', type: 'chat' }, xml('body', {}, `b${i}`)));
    await arrived(aliceGot, `b${i}`);
  }
  await eventually('both archives written', async () => (await rows('alice@localhost')) === 8 && (await rows('bob@localhost')) === 8, WAIT_MS);
  t.equal(await rows('bob@localhost'), 8, 'bob\'s archive has each message once, not once per resource or node');
  const idsOn = (seen: Element[]) => seen.filter((s) => s.getChildText('body')?.startsWith('a')).map((s) => s.getChild('stanza-id', SID)?.attrs.id);
  t.same(idsOn(phoneGot), idsOn(laptopGot), 'both of bob\'s resources got the same archive id');

  const fromNode1 = await query(alice);
  t.same(fromNode1.messages.map((m) => m.body), ['a1', 'b1', 'a2', 'b2', 'a3', 'b3', 'a4', 'b4']);
  const aliceOn3 = await cluster.login(2, 'alice', { resource: 'tablet' });
  const fromNode3 = await query(aliceOn3, { rsm: [xml('max', {}, '5')] });
  t.same(fromNode3.messages.map((m) => m.id), fromNode1.messages.slice(0, 5).map((m) => m.id), 'the same ids from node 3');
  const rest = await query(aliceOn3, { rsm: [xml('max', {}, '5'), xml('after', {}, fromNode3.last!)] });
  t.same(rest.messages.map((m) => m.id), fromNode1.messages.slice(5).map((m) => m.id), 'paging on with an id from node 1\'s answer');
  t.ok(rest.complete);
  const bobs = await query(bobLaptop, { fields: { with: 'alice@localhost' } });
  t.same(bobs.messages.filter((m) => m.body?.startsWith('a')).map((m) => m.id), idsOn(phoneGot), 'bob pages by the ids his clients got');

  // Alice's node decides whether a message to bob gets an id from his archive, by his preferences,
  // which it has cached since a1. Bob changes them on another node: it tells every node.
  const setPrefs = (mode: string) => bobPhone.iqCaller.request(xml('iq', { type: 'set' }, xml('prefs', { xmlns: 'urn:xmpp:mam:2', default: mode }, xml('always'), xml('never'))));
  let sent = 0;
  /** Alice writes to bob until a message arrives with (or without) an archive id; well within the 60 s a cached copy lives. */
  const until = async (withId: boolean): Promise<Element> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const body = `p${++sent}`;
      await alice.send(xml('message', { to: 'bob@localhost/phone', type: 'chat' }, xml('body', {}, body)));
      await arrived(phoneGot, body);
      const got = phoneGot.find((s) => s.getChildText('body') === body)!;
      if ((got.getChild('stanza-id', SID) !== undefined) === withId) return got;
      if (Date.now() > deadline) throw new Error(`no message ${withId ? 'with' : 'without'} an archive id after the preferences changed`);
    }
  };
  await setPrefs('never');
  const left = await until(false);
  await setPrefs('always');
  const kept = await until(true);
  const id = kept.getChild('stanza-id', SID)!.attrs;
  t.equal(id.by, 'bob@localhost');
  await eventually(`${kept.getChildText('body')} archived`, async () => (await query(bobLaptop, { fields: { with: 'alice@localhost' } })).messages.some((m) => m.id === id.id), WAIT_MS);
  const afterIt = await query(bobLaptop, { fields: { 'after-id': id.id } });
  t.same(afterIt.messages, [], 'the id of the last message is one his archive knows: paging after it finds nothing newer, not item-not-found');
  t.notOk((await query(bobLaptop, { fields: { with: 'alice@localhost' } })).messages.some((m) => m.body === left.getChildText('body')),
    'the message that came without an id is not in his archive');
}, ['pgsql']);

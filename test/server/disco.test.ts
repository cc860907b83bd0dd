import t from 'tap';
import type { Element } from 'ltx';
import { startTestServer, xml, type XmppClient } from '../helpers/server';
import { subscribe } from '../helpers/subscriptions';

const DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

function discoInfo(client: XmppClient, to?: string, node?: string): Promise<Element> {
  const attrs: Record<string, string> = { type: 'get' };
  if (to) attrs.to = to;
  return client.iqCaller.request(xml('iq', attrs, xml('query', node ? { xmlns: DISCO_INFO, node } : { xmlns: DISCO_INFO })));
}

const features = (result: Element) =>
  result.getChild('query', DISCO_INFO)!.getChildren('feature').map((f) => f.attrs.var as string);
const identities = (result: Element) =>
  result.getChild('query', DISCO_INFO)!.getChildren('identity').map((i) => `${i.attrs.category}/${i.attrs.type}`);

t.test('service discovery (XEP-0030)', async (t) => {
  const server = await startTestServer(t);
  await server.addUser('alice');
  await server.addUser('bob');
  await server.addUser('mallory');
  const alice = await server.login('alice', { resource: 'desk' });

  await t.test('the server is a server/im and lists the features of every module', async (t) => {
    const result = await discoInfo(alice, 'localhost');
    t.equal(result.attrs.type, 'result');
    t.equal(result.attrs.from, 'localhost');
    t.same(identities(result), ['server/im'], 'one identity: server/im');
    const got = features(result);
    for (const feature of [
      DISCO_INFO,
      DISCO_ITEMS,
      'urn:xmpp:ping',
      'jabber:iq:version',
      'urn:xmpp:time',
      'vcard-temp',
      'urn:xmpp:blocking',
      'urn:xmpp:carbons:2',
      'msgoffline',
    ]) {
      t.ok(got.includes(feature), `advertises ${feature}`);
    }
    t.equal(new Set(got).size, got.length, 'no feature listed twice');
    t.notOk(got.includes('jabber:iq:register'), 'no in-band registration while it is off');
  });

  await t.test('disco#items of the server answers with a (here empty) item list', async (t) => {
    const result = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: DISCO_ITEMS })));
    const query = result.getChild('query', DISCO_ITEMS);
    t.ok(query, 'a disco#items query comes back');
    t.same(query!.getChildren('item'), [], 'no components configured: no items');
  });

  await t.test('an account discovers itself: account/registered, and a PEP service (XEP-0163 §4)', async (t) => {
    const result = await discoInfo(alice, 'alice@localhost');
    t.equal(result.attrs.from, 'alice@localhost', 'answered on behalf of the account');
    t.same(identities(result), ['account/registered', 'pubsub/pep']);
    t.ok(features(result).includes(DISCO_INFO));
  });

  await t.test('a contact subscribed to the account may discover it; a stranger may not', async (t) => {
    const bob = await server.login('bob', { resource: 'phone' });
    await subscribe(bob, alice);
    const result = await discoInfo(bob, 'alice@localhost');
    t.same(identities(result), ['account/registered', 'pubsub/pep'], 'bob, subscribed to alice, sees the account');

    const mallory = await server.login('mallory');
    await t.rejects(discoInfo(mallory, 'alice@localhost'), { name: 'StanzaError', condition: 'service-unavailable' }, 'a stranger gets service-unavailable');
    await t.rejects(
      mallory.iqCaller.request(xml('iq', { type: 'get', to: 'alice@localhost' }, xml('query', { xmlns: DISCO_ITEMS }))),
      { name: 'StanzaError', condition: 'service-unavailable' },
      'also for disco#items',
    );
    await t.rejects(discoInfo(alice, 'bob@localhost'), { name: 'StanzaError', condition: 'service-unavailable' }, 'the subscription is one way: alice may not discover bob');
    await Promise.all([bob.stop(), mallory.stop()]);
  });

  await t.test('a node the server does not have is item-not-found', async (t) => {
    await t.rejects(discoInfo(alice, 'localhost', 'no-such-node'), { name: 'StanzaError', condition: 'item-not-found' }, 'disco#info');
    await t.rejects(
      alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: DISCO_ITEMS, node: 'no-such-node' }))),
      { name: 'StanzaError', condition: 'item-not-found' },
      'disco#items',
    );
    await t.rejects(discoInfo(alice, 'alice@localhost', 'no-such-node'), { name: 'StanzaError', condition: 'item-not-found' }, 'on an account too');
  });
});

t.test('with in-band registration on, the server advertises jabber:iq:register', async (t) => {
  const server = await startTestServer(t, { args: ['--registration=true'] });
  await server.addUser('alice');
  const alice = await server.login('alice');
  t.ok(features(await discoInfo(alice, 'localhost')).includes('jabber:iq:register'));
});

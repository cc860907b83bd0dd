import type { Element } from 'ltx';
import { announceCaps, capsVer, DISCO_INFO } from '../helpers/caps';
import { forEachDatabase } from '../helpers/databases';
import { waitUntil } from '../helpers/im';
import { PUBSUB, PUBSUB_EVENT, PUBSUB_OWNER, entry, isEventFor, items, nextEvent, publish, pubsubErrorOf, pubsubIq, subscribe } from '../helpers/pubsub';
import { collect, nextStanza, startTestServer, xml, type TestServer, type XmppClient } from '../helpers/server';
import { subscribe as presenceSubscribe } from '../helpers/subscriptions';

const TUNE = 'http://jabber.org/protocol/tune';
const MOOD = 'http://jabber.org/protocol/mood';
const tune = (title: string) => xml('tune', { xmlns: TUNE }, xml('title', {}, title));
const titleOf = (message: Element) => message.getChild('event', PUBSUB_EVENT)?.getChild('items')?.getChild('item')?.getChild('tune', TUNE)?.getChildText('title');

/** Logs in without presence, then announces caps for `features`; resolves once the server trusts them. */
async function loginWithCaps(server: TestServer, local: string, resource: string, features: string[]): Promise<XmppClient> {
  const client = await server.login(local, { resource, presence: false });
  const caps = await announceCaps(client, features);
  await waitUntil(async () => (await server.node.storage.caps.get(caps.ver)) !== undefined, 5000, `caps ${caps.ver} verified`);
  return client;
}

forEachDatabase('PEP (XEP-0163) with entity capabilities', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  for (const user of ['alice', 'bob', 'carol', 'mallory']) await server.addUser(user);
  const alice = await loginWithCaps(server, 'alice', 'desk', [`${TUNE}+notify`]);
  const bobTunes = await loginWithCaps(server, 'bob', 'tunes', [TUNE, `${TUNE}+notify`]);
  const bobPlain = await loginWithCaps(server, 'bob', 'plain', [MOOD, `${MOOD}+notify`]);
  const mallory = await loginWithCaps(server, 'mallory', 'm', [`${TUNE}+notify`]);
  // bob is subscribed to alice's presence (alice's roster: bob 'from'); mallory is not.
  await presenceSubscribe(bobTunes, alice);

  await t.test('the account advertises PEP: pubsub/pep with publish-options and auto-create', async (t) => {
    const result = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'alice@localhost' }, xml('query', { xmlns: DISCO_INFO })));
    const query = result.getChild('query', DISCO_INFO)!;
    t.ok(query.getChildren('identity').some((i: Element) => i.attrs.category === 'pubsub' && i.attrs.type === 'pep'));
    const features = query.getChildren('feature').map((f: Element) => f.attrs.var);
    for (const f of ['publish', 'publish-options', 'auto-create', 'filtered-notifications']) t.ok(features.includes(`${PUBSUB}#${f}`), `pubsub#${f}`);
  });

  await t.test("a publish to one's own JID reaches the contact's resource that wants it, not the one that does not", async (t) => {
    const plainSeen = collect(bobPlain);
    const malloryseen = collect(mallory);
    const toBob = nextEvent(bobTunes, TUNE);
    const toAliceHerself = nextEvent(alice, TUNE);
    const id = await publish(alice, undefined, TUNE, tune('Yesterday'));
    const message = await toBob;
    t.equal(message.attrs.from, 'alice@localhost', 'from the account');
    t.equal(message.attrs.type, 'headline');
    t.equal(titleOf(message), 'Yesterday', 'with the payload');
    t.equal(message.getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!.attrs.id, id);
    t.equal(titleOf(await toAliceHerself), 'Yesterday', "the publisher's own +notify resource gets it too");
    // A second publish that bob/tunes gets proves the fan-out of the first is over.
    const second = nextEvent(bobTunes, TUNE, (i) => i.getChild('item')?.getChild('tune')?.getChildText('title') === 'Help!');
    await publish(alice, undefined, TUNE, tune('Help!'));
    await second;
    t.equal(plainSeen.filter((s) => isEventFor(s, TUNE)).length, 0, 'bob/plain, without tune+notify, got nothing');
    t.equal(malloryseen.filter((s) => isEventFor(s, TUNE)).length, 0, 'mallory, with +notify but no subscription, got nothing');
  });

  await t.test('the node was created on first publish with the PEP defaults: presence access, one item', async (t) => {
    const result = await pubsubIq(alice, undefined, 'get', PUBSUB_OWNER, xml('configure', { node: TUNE }));
    const fields = new Map<string, string>(
      result.getChild('pubsub', PUBSUB_OWNER)!.getChild('configure')!.getChild('x')!.getChildren('field').map((f: Element) => [f.attrs.var, f.getChildText('value') ?? '']),
    );
    t.equal(fields.get('pubsub#access_model'), 'presence');
    t.equal(fields.get('pubsub#max_items'), '1');
    const list = await items(bobTunes, 'alice@localhost', TUNE);
    t.same(list.map((i) => i.getChild('tune', TUNE)?.getChildText('title')), ['Help!'], 'a contact reads the newest item');
  });

  await t.test('strangers may not read; only the account publishes to its PEP service', async (t) => {
    t.equal(await pubsubErrorOf(items(mallory, 'alice@localhost', TUNE)), 'not-authorized/presence-subscription-required');
    t.equal(await pubsubErrorOf(publish(bobTunes, 'alice@localhost', TUNE, tune('Not mine'))), 'forbidden');
    t.equal(await pubsubErrorOf(pubsubIq(bobTunes, 'alice@localhost', 'set', PUBSUB, xml('create', { node: 'urn:example:bob' }))), 'forbidden');
  });

  await t.test('a resource coming online with +notify caps gets the last published item of its contacts', async (t) => {
    await presenceSubscribe(await server.login('carol', { resource: 'setup' }), alice);
    const carol = await server.login('carol', { resource: 'mobile', presence: false });
    const last = nextEvent(carol, TUNE);
    // Same features as alice's desk: a ver the server knows already, so it asks nobody.
    const caps = await announceCaps(carol, [`${TUNE}+notify`]);
    const message = await last;
    t.equal(titleOf(message), 'Help!');
    t.equal(message.attrs.from, 'alice@localhost');
    t.ok(message.getChild('delay', 'urn:xmpp:delay'), 'stamped with its publication time');
    t.equal(caps.queries(), 0, 'the known ver was not queried again');
  });

  await t.test('publish-options: a matching precondition publishes, a different one is precondition-not-met', async (t) => {
    t.equal(await pubsubErrorOf(publish(alice, undefined, TUNE, tune('Open?'), undefined, { 'pubsub#access_model': 'open' })), 'conflict/precondition-not-met');
    await publish(alice, undefined, TUNE, tune('Still presence'), undefined, { 'pubsub#access_model': 'presence' });
    await publish(alice, undefined, 'urn:example:public', entry('for everyone'), 'p1', { 'pubsub#access_model': 'open', 'pubsub#max_items': 'max' });
    t.same((await items(mallory, 'alice@localhost', 'urn:example:public')).map((i) => i.attrs.id), ['p1'], 'an open node is readable by strangers');
  });

  await t.test('an explicit subscription to a PEP node delivers without caps', async (t) => {
    await subscribe(bobPlain, 'alice@localhost', 'urn:example:public', 'bob@localhost/plain');
    const event = nextEvent(bobPlain, 'urn:example:public');
    await publish(alice, undefined, 'urn:example:public', entry('news'), 'p2');
    t.equal((await event).getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!.attrs.id, 'p2');
  });

  await t.test('retracting and deleting notify interested contacts', async (t) => {
    const retracted = nextStanza(bobTunes, (s) => s.is('message') && s.getChild('event', PUBSUB_EVENT)?.getChild('items')?.getChild('retract') !== undefined);
    const [current] = await items(alice, undefined, TUNE);
    await pubsubIq(alice, undefined, 'set', PUBSUB, xml('retract', { node: TUNE, notify: '1' }, xml('item', { id: current.attrs.id })));
    t.equal((await retracted).getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('retract')!.attrs.id, current.attrs.id);
    const deleted = nextStanza(bobTunes, (s) => s.is('message') && s.getChild('event', PUBSUB_EVENT)?.getChild('delete')?.attrs.node === TUNE);
    await pubsubIq(alice, undefined, 'set', PUBSUB_OWNER, xml('delete', { node: TUNE }));
    await deleted;
    t.equal(await pubsubErrorOf(items(bobTunes, 'alice@localhost', TUNE)), 'item-not-found');
  });

  await t.test('caps whose disco#info does not hash to the announced ver are not trusted', async (t) => {
    const liar = await server.login('bob', { resource: 'liar', presence: false });
    const lie = 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=';
    const caps = await announceCaps(liar, [`${TUNE}+notify`], { ver: lie });
    await caps.queried;
    const seen = collect(liar);
    const marker = nextEvent(bobTunes, TUNE);
    await publish(alice, undefined, TUNE, tune('Trust me'));
    await marker;
    t.equal(seen.filter((s) => isEventFor(s, TUNE)).length, 0, 'the liar got no notification');
    t.equal(await server.node.storage.caps.get(lie), undefined, 'and the ver was not stored');
    t.not(capsVer([`${TUNE}+notify`]), lie);
  });

  await t.test('XEP-0402 bookmarks as Converse.js saves them: max_items 9999 or max, whitelist, one item per room', async (t) => {
    const BOOKMARKS = 'urn:xmpp:bookmarks:1';
    const options = { 'pubsub#persist_items': 'true', 'pubsub#max_items': '9999', 'pubsub#send_last_published_item': 'never', 'pubsub#access_model': 'whitelist' };
    const conference = (name: string) => xml('conference', { xmlns: BOOKMARKS, name, autojoin: 'true' }, xml('nick', {}, 'alice'));
    // Another device of alice's that wants bookmark notifications (autojoin across devices).
    const phone = await loginWithCaps(server, 'alice', 'phone', [`${BOOKMARKS}+notify`]);
    const toPhone = nextEvent(phone, BOOKMARKS);
    await publish(alice, undefined, BOOKMARKS, conference('Tea'), 'tea@muc.localhost', options);
    t.equal((await toPhone).getChild('event', PUBSUB_EVENT)!.getChild('items')!.getChild('item')!.attrs.id, 'tea@muc.localhost', 'the other device hears of it');
    // The second bookmark: the same publish-options are now preconditions, and are met.
    await publish(alice, undefined, BOOKMARKS, conference('Coffee'), 'coffee@muc.localhost', options);
    await publish(alice, undefined, BOOKMARKS, conference('Juice'), 'juice@muc.localhost', { ...options, 'pubsub#max_items': 'max' });
    const saved = await items(alice, 'alice@localhost', BOOKMARKS);
    t.same(saved.map((i: Element) => i.attrs.id).sort(), ['coffee@muc.localhost', 'juice@muc.localhost', 'tea@muc.localhost'], 'one item per room, none pushed out');
    const config = await pubsubIq(alice, 'alice@localhost', 'get', PUBSUB_OWNER, xml('configure', { node: BOOKMARKS }));
    const fields = new Map(config.getChild('pubsub', PUBSUB_OWNER)!.getChild('configure')!.getChild('x')!.getChildren('field').map((f: Element) => [f.attrs.var, f.getChildText('value')]));
    t.equal(fields.get('pubsub#max_items'), '256', 'kept up to the PEP limit');
    t.equal(fields.get('pubsub#access_model'), 'whitelist');
    t.equal(await pubsubErrorOf(pubsubIq(bobTunes, 'alice@localhost', 'get', PUBSUB, xml('items', { node: BOOKMARKS }))), 'not-allowed/closed-node', 'a contact cannot read them');
    await phone.stop();
  });

  await t.test('deleting an account deletes its PEP nodes with their items', async (t) => {
    await server.addUser('dave');
    const dave = await server.login('dave');
    await publish(dave, undefined, 'urn:example:dave', entry('mine'));
    await dave.stop();
    const { storage } = server.node;
    const node = await storage.pubsub.getNode('dave@localhost', 'urn:example:dave');
    t.ok(node, 'the node exists before');
    await storage.users.delete('dave@localhost');
    t.equal(await storage.pubsub.getNode('dave@localhost', 'urn:example:dave'), undefined, 'the node is gone');
    t.same(await storage.pubsub.items(node!.id), [], 'and so are its items');
  });
});

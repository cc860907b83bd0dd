import type { Element } from 'ltx';
import { forEachDatabase } from '../helpers/databases';
import { startTestServer, xml, type XmppClient } from '../helpers/server';

const VCARD = 'vcard-temp';
const PRIVATE = 'jabber:iq:private';

function getVCard(client: XmppClient, to?: string): Promise<Element> {
  return client.iqCaller.request(xml('iq', to ? { type: 'get', to } : { type: 'get' }, xml('vCard', { xmlns: VCARD })));
}

function setVCard(client: XmppClient, fields: Record<string, string>, to?: string): Promise<Element> {
  const card = xml('vCard', { xmlns: VCARD }, ...Object.entries(fields).map(([name, value]) => xml(name, {}, value)));
  return client.iqCaller.request(xml('iq', to ? { type: 'set', to } : { type: 'set' }, card));
}

function getPrivate(client: XmppClient, name: string, xmlns: string, to?: string): Promise<Element> {
  return client.iqCaller.request(xml('iq', to ? { type: 'get', to } : { type: 'get' }, xml('query', { xmlns: PRIVATE }, xml(name, { xmlns }))));
}

function setPrivate(client: XmppClient, ...elements: Element[]): Promise<Element> {
  return client.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: PRIVATE }, ...elements)));
}

forEachDatabase('vCards (XEP-0054) and private XML storage (XEP-0049)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  await server.addUser('alice');
  await server.addUser('bob');
  const alice = await server.login('alice', { resource: 'desk' });
  const bob = await server.login('bob', { resource: 'phone' });

  await t.test('without a stored vCard the owner gets an empty one', async (t) => {
    const card = (await getVCard(alice)).getChild('vCard', VCARD);
    t.ok(card, 'a vCard element comes back');
    t.equal(card!.children.length, 0, 'and it is empty');
  });

  await t.test('the owner stores a vCard and reads it back, unicode and emoji intact', async (t) => {
    const result = await setVCard(alice, { FN: 'Alice Ærøskøbing 🦊', NICKNAME: 'アリス', DESC: 'tea & <cake> "always"' });
    t.equal(result.attrs.type, 'result');
    const card = (await getVCard(alice)).getChild('vCard', VCARD)!;
    t.equal(card.getChildText('FN'), 'Alice Ærøskøbing 🦊');
    t.equal(card.getChildText('NICKNAME'), 'アリス');
    t.equal(card.getChildText('DESC'), 'tea & <cake> "always"', 'markup characters survive escaping');
    const own = (await getVCard(alice, 'alice@localhost')).getChild('vCard', VCARD)!;
    t.equal(own.getChildText('FN'), 'Alice Ærøskøbing 🦊', 'also when addressed to the own bare JID');
  });

  await t.test('a second set replaces the vCard', async (t) => {
    await setVCard(alice, { FN: 'Alice Liddell' });
    const card = (await getVCard(alice)).getChild('vCard', VCARD)!;
    t.equal(card.getChildText('FN'), 'Alice Liddell');
    t.equal(card.getChildText('NICKNAME'), null, 'fields of the old vCard are gone');
  });

  await t.test('another user reads the vCard', async (t) => {
    const result = await getVCard(bob, 'alice@localhost');
    t.equal(result.attrs.from, 'alice@localhost', 'answered on behalf of alice');
    t.equal(result.getChild('vCard', VCARD)?.getChildText('FN'), 'Alice Liddell');
  });

  await t.test("another user's missing vCard and a missing user get the same error", async (t) => {
    // XEP-0054 §3.3: "...the server MUST return the same error condition in both cases".
    const none = await getVCard(alice, 'bob@localhost').then(
      () => 'result',
      (err: { condition?: string }) => err.condition,
    );
    const nobody = await getVCard(alice, 'nobody@localhost').then(
      () => 'result',
      (err: { condition?: string }) => err.condition,
    );
    t.ok(none === 'item-not-found' || none === 'service-unavailable', `no vCard: ${none}`);
    t.equal(nobody, none, 'no such user: the same answer');
  });

  await t.test("setting another user's vCard is forbidden and changes nothing", async (t) => {
    await t.rejects(setVCard(bob, { FN: 'Evil Alice' }, 'alice@localhost'), { name: 'StanzaError', condition: 'forbidden' });
    t.equal((await getVCard(alice)).getChild('vCard', VCARD)?.getChildText('FN'), 'Alice Liddell');
  });

  await t.test('the vCard outlives the session', async (t) => {
    await alice.stop();
    const again = await server.login('alice', { resource: 'laptop' });
    t.equal((await getVCard(again)).getChild('vCard', VCARD)?.getChildText('FN'), 'Alice Liddell');
    await again.stop();
  });

  const carol = await server.addUser('carol').then(() => server.login('carol'));

  await t.test('private storage: nothing stored yet is the empty element that was asked for', async (t) => {
    const query = (await getPrivate(carol, 'storage', 'storage:bookmarks')).getChild('query', PRIVATE)!;
    const storage = query.getChild('storage', 'storage:bookmarks');
    t.ok(storage, 'the element comes back');
    t.equal(storage!.children.length, 0, 'empty');
  });

  await t.test('private storage: set then get, namespaces kept apart', async (t) => {
    const bookmarks = xml('storage', { xmlns: 'storage:bookmarks' }, xml('conference', { jid: 'room@muc.localhost', name: 'Salle ☕' }));
    const prefs = xml('exodus', { xmlns: 'exodus:prefs' }, xml('defaultnick', {}, 'Hamlet'));
    t.equal((await setPrivate(carol, bookmarks, prefs)).attrs.type, 'result', 'two namespaces stored in one set');

    const gotBookmarks = (await getPrivate(carol, 'storage', 'storage:bookmarks')).getChild('query', PRIVATE)!;
    t.equal(gotBookmarks.getChildElements().length, 1, 'only the namespace asked for comes back');
    t.equal(gotBookmarks.getChild('storage', 'storage:bookmarks')?.getChild('conference')?.attrs.name, 'Salle ☕');

    const gotPrefs = (await getPrivate(carol, 'exodus', 'exodus:prefs')).getChild('query', PRIVATE)!;
    t.equal(gotPrefs.getChildElements().length, 1);
    t.equal(gotPrefs.getChild('exodus', 'exodus:prefs')?.getChildText('defaultnick'), 'Hamlet');

    await setPrivate(carol, xml('exodus', { xmlns: 'exodus:prefs' }, xml('defaultnick', {}, 'Ophelia')));
    const replaced = (await getPrivate(carol, 'exodus', 'exodus:prefs')).getChild('query', PRIVATE)!;
    t.equal(replaced.getChild('exodus', 'exodus:prefs')?.getChildText('defaultnick'), 'Ophelia', 'a set replaces that namespace');
    const untouched = (await getPrivate(carol, 'storage', 'storage:bookmarks')).getChild('query', PRIVATE)!;
    t.equal(untouched.getChild('storage', 'storage:bookmarks')?.getChild('conference')?.attrs.jid, 'room@muc.localhost', 'and leaves the others alone');
  });

  await t.test("private storage: another user can neither read nor write it", async (t) => {
    await t.rejects(getPrivate(bob, 'storage', 'storage:bookmarks', 'carol@localhost'), { name: 'StanzaError', condition: 'forbidden' }, 'read');
    await t.rejects(
      bob.iqCaller.request(
        xml('iq', { type: 'set', to: 'carol@localhost' }, xml('query', { xmlns: PRIVATE }, xml('storage', { xmlns: 'storage:bookmarks' }))),
      ),
      { name: 'StanzaError', condition: 'forbidden' },
      'write',
    );
    const own = (await getPrivate(bob, 'storage', 'storage:bookmarks')).getChild('query', PRIVATE)!;
    t.equal(own.getChild('storage', 'storage:bookmarks')?.children.length, 0, "bob's own storage is his, and empty");
  });

  await t.test('private storage: the jabber:iq:private namespace itself is not-acceptable', async (t) => {
    await t.rejects(getPrivate(carol, 'query', PRIVATE), { name: 'StanzaError', condition: 'not-acceptable' }, 'get');
    await t.rejects(setPrivate(carol, xml('query', { xmlns: PRIVATE })), { name: 'StanzaError', condition: 'not-acceptable' }, 'set');
    await t.rejects(setPrivate(carol), { name: 'StanzaError', condition: 'not-acceptable' }, 'a set with nothing to store');
    await t.rejects(
      carol.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: PRIVATE }))),
      { name: 'StanzaError', condition: 'bad-request' },
      'a get without a child element is bad-request (XEP-0049 "Bad Format")',
    );
  });

  await t.test('private storage: a namespace longer than storage allows is refused, not a server error', async (t) => {
    const long = `urn:example:${'x'.repeat(600)}`;
    await t.rejects(setPrivate(carol, xml('data', { xmlns: long })), { name: 'StanzaError', condition: 'not-acceptable' });
  });
});

import type { Element } from 'ltx';
import { announceCaps } from '../helpers/caps';
import { forEachDatabase } from '../helpers/databases';
import { waitUntil } from '../helpers/im';
import { items, nextEvent, publish, pubsubIq, PUBSUB } from '../helpers/pubsub';
import { startTestServer, xml, type TestServer, type XmppClient } from '../helpers/server';

const BOOKMARKS = 'urn:xmpp:bookmarks:1';
const LEGACY = 'storage:bookmarks';
const OPTIONS = { 'pubsub#persist_items': 'true', 'pubsub#max_items': 'max', 'pubsub#send_last_published_item': 'never', 'pubsub#access_model': 'whitelist' };

async function loginWithCaps(server: TestServer, local: string, resource: string, features: string[]): Promise<XmppClient> {
  const client = await server.login(local, { resource, presence: false });
  const caps = await announceCaps(client, features);
  await waitUntil(async () => (await server.node.storage.caps.get(caps.ver)) !== undefined, 5000, `caps ${caps.ver} verified`);
  return client;
}

const privateBookmarks = async (client: XmppClient): Promise<Element> =>
  (await client.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:private' }, xml('storage', { xmlns: LEGACY }))))).getChild('query')!.getChild('storage', LEGACY)!;
const setPrivate = (client: XmppClient, storage: Element) => client.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: 'jabber:iq:private' }, storage)));

// An old client (XEP-0048 in private XML) and a new one (XEP-0402 in PEP) on one account see the
// same bookmarks, and autojoin reaches every device.
forEachDatabase('XEP-0402 bookmarks and their XEP-0048 private copy are kept as one (#compat)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  await server.addUser('alice');
  const old = await server.login('alice', { resource: 'old-client' });
  const modern = await loginWithCaps(server, 'alice', 'phone', [`${BOOKMARKS}+notify`]);

  await t.test('the account says it keeps both in step', async (t) => {
    const info = await old.iqCaller.request(xml('iq', { type: 'get', to: 'alice@localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    t.ok(info.getChild('query')!.getChildren('feature').some((f: Element) => f.attrs.var === `${BOOKMARKS}#compat`));
  });

  await t.test('bookmarks written to private storage become PEP bookmarks, and other devices hear of them', async (t) => {
    const heard = nextEvent(modern, BOOKMARKS, (i) => i.getChild('item')?.attrs.id === 'coffee@muc.localhost');
    await setPrivate(old, xml('storage', { xmlns: LEGACY },
      xml('conference', { jid: 'tea@muc.localhost', name: 'Tea', autojoin: 'true' }, xml('nick', {}, 'alice')),
      xml('conference', { jid: 'coffee@muc.localhost', name: 'Coffee', autojoin: '1' }, xml('password', {}, 'beans')),
      xml('url', { name: 'Home', url: 'https://example.org/' })));
    await heard;
    const pep = await items(modern, 'alice@localhost', BOOKMARKS);
    const byId = new Map(pep.map((i: Element) => [i.attrs.id, i.getChild('conference', BOOKMARKS)!]));
    t.same([...byId.keys()].sort(), ['coffee@muc.localhost', 'tea@muc.localhost']);
    t.equal(byId.get('tea@muc.localhost')!.attrs.autojoin, 'true');
    t.equal(byId.get('tea@muc.localhost')!.getChildText('nick'), 'alice');
    t.equal(byId.get('coffee@muc.localhost')!.getChildText('password'), 'beans');
    const config = await pubsubIq(modern, 'alice@localhost', 'get', 'http://jabber.org/protocol/pubsub#owner', xml('configure', { node: BOOKMARKS }));
    const fields = new Map(config.getChild('pubsub')!.getChild('configure')!.getChild('x')!.getChildren('field').map((f: Element) => [f.attrs.var, f.getChildText('value')]));
    t.equal(fields.get('pubsub#access_model'), 'whitelist', 'private to the account');
  });

  await t.test('a PEP bookmark published or retracted shows in the private copy; its links stay', async (t) => {
    await publish(modern, undefined, BOOKMARKS, xml('conference', { xmlns: BOOKMARKS, name: 'Juice', autojoin: 'false' }, xml('nick', {}, 'al')), 'juice@muc.localhost', OPTIONS);
    let stored = await privateBookmarks(old);
    t.same(stored.getChildren('conference').map((c: Element) => c.attrs.jid).sort(), ['coffee@muc.localhost', 'juice@muc.localhost', 'tea@muc.localhost']);
    t.equal(stored.getChildren('conference').find((c: Element) => c.attrs.jid === 'juice@muc.localhost')!.getChildText('nick'), 'al');
    t.equal(stored.getChildren('url').length, 1, 'the XEP-0048 link is kept');
    await pubsubIq(modern, undefined, 'set', PUBSUB, xml('retract', { node: BOOKMARKS, notify: 'true' }, xml('item', { id: 'coffee@muc.localhost' })));
    stored = await privateBookmarks(old);
    t.same(stored.getChildren('conference').map((c: Element) => c.attrs.jid).sort(), ['juice@muc.localhost', 'tea@muc.localhost']);
  });

  await t.test('#compat-pep: XEP-0048 bookmarks kept in PEP (XEP-0223) are kept in step as well', async (t) => {
    const legacyOptions = { 'pubsub#persist_items': 'true', 'pubsub#access_model': 'whitelist' };
    await publish(old, undefined, LEGACY, xml('storage', { xmlns: LEGACY },
      xml('conference', { jid: 'tea@muc.localhost', name: 'Tea', autojoin: 'true' }, xml('nick', {}, 'alice')),
      xml('conference', { jid: 'milk@muc.localhost', name: 'Milk', autojoin: 'false' })), 'current', legacyOptions);
    t.same((await items(modern, 'alice@localhost', BOOKMARKS)).map((i: Element) => i.attrs.id).sort(), ['milk@muc.localhost', 'tea@muc.localhost'], 'published as XEP-0402 bookmarks');
    t.same((await privateBookmarks(old)).getChildren('conference').map((c: Element) => c.attrs.jid).sort(), ['milk@muc.localhost', 'tea@muc.localhost'], 'and in private storage');
    await publish(modern, undefined, BOOKMARKS, xml('conference', { xmlns: BOOKMARKS, name: 'Cocoa', autojoin: 'true' }), 'cocoa@muc.localhost', OPTIONS);
    const [current] = await items(old, 'alice@localhost', LEGACY);
    t.same(current.getChild('storage', LEGACY)!.getChildren('conference').map((c: Element) => c.attrs.jid).sort(), ['cocoa@muc.localhost', 'milk@muc.localhost', 'tea@muc.localhost'], 'a XEP-0402 publish reaches the XEP-0048 PEP item');
    await setPrivate(old, xml('storage', { xmlns: LEGACY }, xml('conference', { jid: 'tea@muc.localhost', name: 'Tea', autojoin: 'true' }, xml('nick', {}, 'alice')),
      xml('conference', { jid: 'juice@muc.localhost', name: 'Juice', autojoin: 'false' }, xml('nick', {}, 'al'))));
  });

  await t.test('a bookmark removed from private storage is retracted from PEP, with a notification', async (t) => {
    const retracted = nextEvent(modern, BOOKMARKS, (i) => i.getChild('retract')?.attrs.id === 'juice@muc.localhost');
    await setPrivate(old, xml('storage', { xmlns: LEGACY }, xml('conference', { jid: 'tea@muc.localhost', name: 'Tea', autojoin: 'true' }, xml('nick', {}, 'alice'))));
    await retracted;
    t.same((await items(modern, 'alice@localhost', BOOKMARKS)).map((i: Element) => i.attrs.id), ['tea@muc.localhost']);
  });
});

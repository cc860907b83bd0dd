import type { Element } from 'ltx';
import { forEachDatabase } from '../helpers/databases';
import { iqErrorCondition } from '../helpers/im';
import { collect, nextStanza, sleep, startTestServer, xml, type XmppClient } from '../helpers/server';

/** How long to wait before asserting that something did NOT arrive. */
const QUIET_MS = 250;
const CARBONS = 'urn:xmpp:carbons:2';
const FORWARD = 'urn:xmpp:forward:0';

const carbonsIq = (client: XmppClient, action: 'enable' | 'disable', to?: string) =>
  client.iqCaller.request(xml('iq', { type: 'set', ...(to ? { to } : {}) }, xml(action, { xmlns: CARBONS })));

/** The forwarded message inside a carbon of `kind`, if `stanza` is one. */
function carbonOf(stanza: Element, kind: 'sent' | 'received'): Element | undefined {
  if (!stanza.is('message')) return undefined;
  return stanza.getChild(kind, CARBONS)?.getChild('forwarded', FORWARD)?.getChild('message');
}
const isCarbon = (s: Element) => carbonOf(s, 'sent') !== undefined || carbonOf(s, 'received') !== undefined;
const carbonWithBody = (kind: 'sent' | 'received', body: string) => (s: Element) => carbonOf(s, kind)?.getChildText('body') === body;
const messageWithBody = (body: string) => (s: Element) => s.is('message') && s.getChildText('body') === body;

forEachDatabase('message carbons (XEP-0280)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  await server.addUser('alice');
  await server.addUser('bob');
  const desk = await server.login('alice', { resource: 'desk' });
  const phone = await server.login('alice', { resource: 'phone' });
  const tablet = await server.login('alice', { resource: 'tablet' });
  const bob = await server.login('bob', { resource: 'b' });

  await t.test('the server advertises carbons and lets resources enable them', async (t) => {
    const info = await desk.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    const features = info.getChild('query')?.getChildren('feature').map((f: Element) => f.attrs.var) ?? [];
    t.ok(features.includes(CARBONS), 'disco#info lists urn:xmpp:carbons:2');
    t.equal((await carbonsIq(desk, 'enable')).attrs.type, 'result', 'desk enabled');
    t.equal((await carbonsIq(phone, 'enable')).attrs.type, 'result', 'phone enabled');
    t.equal((await carbonsIq(phone, 'enable')).attrs.type, 'result', 'enabling twice is not an error (§10.1)');
    t.equal(await iqErrorCondition(carbonsIq(bob, 'enable', 'alice@localhost')), 'not-allowed', "enabling another user's carbons");
  });

  await t.test("a sent message is copied to the sender's other enabled resources, wrapped", async (t) => {
    const tabletSeen = collect(tablet);
    const deskSeen = collect(desk);
    const carbon = nextStanza(phone, carbonWithBody('sent', 'hi bob'));
    const original = nextStanza(bob, messageWithBody('hi bob'));
    await desk.send(xml('message', { to: 'bob@localhost/b', type: 'chat', id: 'c1' }, xml('body', {}, 'hi bob'), xml('thread', {}, 'th-1')));
    const wrapper = await carbon;
    t.equal(wrapper.attrs.from, 'alice@localhost', "the wrapper is from the user's bare JID");
    t.equal(wrapper.attrs.to, 'alice@localhost/phone', 'to the receiving resource');
    t.equal(wrapper.attrs.type, 'chat', 'and keeps the type');
    const sent = wrapper.getChild('sent', CARBONS)!;
    t.equal(sent.getChildElements().length, 1, '<sent/> holds one <forwarded/>');
    const inner = carbonOf(wrapper, 'sent')!;
    t.equal(inner.attrs.xmlns, 'jabber:client', "the forwarded message is in 'jabber:client'");
    t.equal(inner.attrs.from, 'alice@localhost/desk');
    t.equal(inner.attrs.to, 'bob@localhost/b');
    t.equal(inner.attrs.type, 'chat');
    t.equal(inner.attrs.id, 'c1');
    t.equal(inner.getChildText('thread'), 'th-1', 'the payload is kept');
    t.notOk((await original).getChild('sent', CARBONS), 'bob gets the plain message');

    // A second message whose carbon reaches phone shows that the first was fully handled.
    const next = nextStanza(phone, carbonWithBody('sent', 'normal with body'));
    await desk.send(xml('message', { to: 'bob@localhost/b' }, xml('body', {}, 'normal with body')));
    t.equal((await next).attrs.type, 'normal', 'a normal message with a body is copied too');
    await sleep(QUIET_MS);
    t.equal(deskSeen.filter(isCarbon).length, 0, 'the sending resource gets no copy');
    t.equal(tabletSeen.filter(isCarbon).length, 0, 'a resource without carbons gets no copy');
  });

  await t.test("a received message is copied to the recipient's other enabled resources", async (t) => {
    const tabletSeen = collect(tablet);
    const deskSeen = collect(desk);
    const carbon = nextStanza(phone, carbonWithBody('received', 'to your desk'));
    const original = nextStanza(desk, messageWithBody('to your desk'));
    await bob.send(xml('message', { to: 'alice@localhost/desk', type: 'chat' }, xml('body', {}, 'to your desk')));
    const wrapper = await carbon;
    t.equal(wrapper.attrs.from, 'alice@localhost');
    t.equal(wrapper.attrs.to, 'alice@localhost/phone');
    const inner = carbonOf(wrapper, 'received')!;
    t.equal(inner.attrs.xmlns, 'jabber:client');
    t.equal(inner.attrs.from, 'bob@localhost/b');
    t.equal(inner.attrs.to, 'alice@localhost/desk');
    await original;

    // To the bare JID every available resource gets the message itself, and nobody a copy.
    const onDesk = nextStanza(desk, messageWithBody('to all of you'));
    const onPhone = nextStanza(phone, messageWithBody('to all of you'));
    const onTablet = nextStanza(tablet, messageWithBody('to all of you'));
    const phoneSeen = collect(phone);
    await bob.send(xml('message', { to: 'alice@localhost', type: 'chat' }, xml('body', {}, 'to all of you')));
    await Promise.all([onDesk, onPhone, onTablet]);
    await sleep(QUIET_MS);
    t.equal(deskSeen.filter(isCarbon).length, 0, 'the addressed resource gets no copy');
    t.equal(phoneSeen.filter(isCarbon).length, 0, 'resources that got the message get no copy');
    t.equal(tabletSeen.filter(isCarbon).length, 0, 'a resource without carbons gets no copy');
  });

  await t.test('private and no-copy messages, and headlines, are not copied', async (t) => {
    const phoneSeen = collect(phone);
    const privateOut = nextStanza(bob, messageWithBody('private out'));
    await desk.send(xml('message', { to: 'bob@localhost/b', type: 'chat' }, xml('body', {}, 'private out'), xml('private', { xmlns: CARBONS })));
    await desk.send(xml('message', { to: 'bob@localhost/b', type: 'chat' }, xml('body', {}, 'no-copy out'), xml('no-copy', { xmlns: 'urn:xmpp:hints' })));
    const privateIn = nextStanza(desk, messageWithBody('private in'));
    await bob.send(xml('message', { to: 'alice@localhost/desk', type: 'chat' }, xml('body', {}, 'private in'), xml('private', { xmlns: CARBONS })));
    await bob.send(xml('message', { to: 'alice@localhost/desk', type: 'headline' }, xml('body', {}, 'headline in')));
    // Carbons of these later messages reaching phone show the earlier ones were handled.
    const markerOut = nextStanza(phone, carbonWithBody('sent', 'marker out'));
    const markerIn = nextStanza(phone, carbonWithBody('received', 'marker in'));
    await desk.send(xml('message', { to: 'bob@localhost/b', type: 'chat' }, xml('body', {}, 'marker out')));
    await bob.send(xml('message', { to: 'alice@localhost/desk', type: 'chat' }, xml('body', {}, 'marker in')));
    await Promise.all([markerOut, markerIn]);
    const copied = phoneSeen.filter(isCarbon).map((s) => (carbonOf(s, 'sent') ?? carbonOf(s, 'received'))!.getChildText('body'));
    t.same(copied, ['marker out', 'marker in'], 'only the ordinary messages were copied');
    t.notOk((await privateIn).getChild('private', CARBONS), 'the recipient gets the message without <private/> (§9)');
    t.ok(await privateOut, 'bob still gets the private message');
  });

  await t.test('after disable a resource gets no more copies', async (t) => {
    t.equal((await carbonsIq(phone, 'disable')).attrs.type, 'result');
    const phoneSeen = collect(phone);
    await carbonsIq(tablet, 'enable');
    const tabletCopy = nextStanza(tablet, carbonWithBody('received', 'after disable'));
    await bob.send(xml('message', { to: 'alice@localhost/desk', type: 'chat' }, xml('body', {}, 'after disable')));
    await tabletCopy;
    const tabletSent = nextStanza(tablet, carbonWithBody('sent', 'sent after disable'));
    const deskSent = nextStanza(desk, carbonWithBody('sent', 'sent after disable'));
    await phone.send(xml('message', { to: 'bob@localhost/b', type: 'chat' }, xml('body', {}, 'sent after disable')));
    await Promise.all([tabletSent, deskSent]);
    t.pass("what the disabled resource sends is still copied to the others (§8: 'irrespective of whether the sending client has carbons enabled')");
    await sleep(QUIET_MS);
    t.equal(phoneSeen.filter(isCarbon).length, 0, 'the disabled resource got no copy');
  });
});

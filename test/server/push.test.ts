import t from 'tap';
import type { Element } from 'ltx';
import { eventually } from '../helpers/cluster';
import { startTestServer, xml, type XmppClient } from '../helpers/server';
import { forEachDatabase } from '../helpers/databases';

const PUSH = 'urn:xmpp:push:0';
const WAIT_MS = 20_000;

type Sm = { enabled: boolean };
const smOf = (client: XmppClient) => (client as unknown as { streamManagement: Sm }).streamManagement;

/** Cuts the connection the hard way and keeps the client from reconnecting: its session waits to be resumed. */
function goAway(client: XmppClient): void {
  const c = client as unknown as { reconnect: { stop(): void }; socket: { socket?: { destroy(): void } } };
  c.reconnect.stop();
  (c.socket.socket as { destroy(): void }).destroy();
}

/** What an app server (here a test account) is asked to publish: node and summary fields. */
function notifications(seen: Element[]): { node: string; fields: Record<string, string>; options?: Element }[] {
  return seen
    .filter((s) => s.is('iq') && s.attrs.type === 'set' && s.getChild('pubsub', 'http://jabber.org/protocol/pubsub'))
    .map((iq) => {
      const pubsub = iq.getChild('pubsub')!;
      const publish = pubsub.getChild('publish')!;
      const form = publish.getChild('item')!.getChild('notification', PUSH)!.getChild('x', 'jabber:x:data')!;
      const fields: Record<string, string> = {};
      for (const field of form.getChildren('field')) fields[String(field.attrs.var)] = field.getChildText('value') ?? '';
      return { node: String(publish.attrs.node), fields, options: pubsub.getChild('publish-options')?.getChild('x', 'jabber:x:data') };
    });
}

forEachDatabase('XEP-0357 push notifications', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  for (const user of ['alice', 'bob', 'appserver']) await server.addUser(user);
  const app = await server.login('appserver', { resource: 'push' });
  const appSeen: Element[] = [];
  app.on('stanza', (s: Element) => appSeen.push(s));
  // The app server answers like a pubsub service.
  app.on('stanza', (s: Element) => {
    if (s.is('iq') && s.attrs.type === 'set' && s.getChild('pubsub')) void app.send(xml('iq', { type: 'result', id: s.attrs.id, to: s.attrs.from }));
  });
  const bob = await server.login('bob', { resource: 'desk' });
  const say = (body: string) => bob.send(xml('message', { to: 'alice@localhost/phone', type: 'chat' }, xml('body', {}, body)));

  await t.test('the account advertises push, and enabling it takes the app server, node and publish-options', async (t) => {
    const alice = await server.login('alice', { resource: 'phone' });
    const info = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'alice@localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    t.ok(info.getChild('query')!.getChildren('feature').some((f: Element) => f.attrs.var === PUSH), 'urn:xmpp:push:0 on the account');
    await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: PUSH, jid: 'appserver@localhost/push', node: 'phone-node' },
      xml('x', { xmlns: 'jabber:x:data', type: 'submit' },
        xml('field', { var: 'FORM_TYPE' }, xml('value', {}, 'http://jabber.org/protocol/pubsub#publish-options')),
        xml('field', { var: 'secret' }, xml('value', {}, 'eruio234vzxc2kla-91'))))));
    const bad = await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: PUSH, jid: 'appserver@localhost/push' }))).catch((err: { condition?: string }) => err.condition);
    t.equal(bad, 'bad-request', 'a node is required');
    t.same((await server.node.storage.push.list('alice@localhost')).map((r) => [r.service, r.node]), [['appserver@localhost/push', 'phone-node']]);

    await eventually('stream management enabled', () => smOf(alice).enabled, WAIT_MS);
    goAway(alice);
    await eventually('the session waits to be resumed', () => server.node.streamManagement.hibernating === 1, WAIT_MS);
    await say('are you there?');
    await eventually('the app server is told of the message for the waiting session (stored, so it survives this node)', () => notifications(appSeen).length === 1, WAIT_MS);
    t.equal(await server.node.storage.offline.count('alice@localhost'), 1, 'the message waits in storage, not in this process');
    const [first] = notifications(appSeen);
    t.equal(first.node, 'phone-node');
    t.equal(first.fields.FORM_TYPE, 'urn:xmpp:push:summary');
    t.equal(first.fields['message-count'], '1');
    t.equal(first.fields['last-message-sender'], 'bob@localhost/desk');
    t.notOk('last-message-body' in first.fields, 'the body stays on the server');
    t.ok(first.options?.getChildren('field').some((f) => f.attrs.var === 'secret' && f.getChildText('value') === 'eruio234vzxc2kla-91'), 'with the publish-options the client gave');
    await say('hello?');
    await eventually('and of the next one', () => notifications(appSeen).length === 2, WAIT_MS);
    t.equal(notifications(appSeen)[1].fields['message-count'], '2', 'two messages wait');
  });

  await t.test('a user with no session at all: the message is stored offline and the app server told', async (t) => {
    // The waiting session from the previous test ends (it could also time out): messages go offline now.
    for (const session of server.node.sessions.resources('alice@localhost')) server.node.sessions.end(session);
    await eventually('alice is gone', () => server.node.sessions.resources('alice@localhost').length === 0, WAIT_MS);
    // The two messages for the waiting session were stored as they came (and told then).
    t.equal(await server.node.storage.offline.count('alice@localhost'), 2);
    await bob.send(xml('message', { to: 'alice@localhost', type: 'chat' }, xml('body', {}, 'call me')));
    await eventually('told once the new message is stored', () => notifications(appSeen).length === 3, WAIT_MS);
    t.equal(notifications(appSeen)[2].fields['message-count'], '3', 'with how many wait offline');
    t.equal(await server.node.storage.offline.count('alice@localhost'), 3);
  });

  await t.test('after disable, that app server hears nothing more; another registration still does', async (t) => {
    const alice = await server.login('alice', { resource: 'tablet' });
    await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('disable', { xmlns: PUSH, jid: 'appserver@localhost/push', node: 'phone-node' })));
    await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: PUSH, jid: 'appserver@localhost/push', node: 'tablet-node' })));
    await alice.stop();
    await eventually('alice is gone', () => server.node.sessions.resources('alice@localhost').length === 0, WAIT_MS);
    const before = notifications(appSeen).length;
    await bob.send(xml('message', { to: 'alice@localhost', type: 'chat' }, xml('body', {}, 'one more')));
    await eventually('the remaining registration is told', () => notifications(appSeen).length > before, WAIT_MS);
    t.same(notifications(appSeen).slice(before).map((n) => n.node), ['tablet-node'], 'only the registration still enabled');
  });
});

t.test('only the account itself may enable push', async (t) => {
  const server = await startTestServer(t);
  for (const user of ['carol', 'mallory']) await server.addUser(user);
  const mallory = await server.login('mallory');
  const refused = await mallory.iqCaller.request(xml('iq', { type: 'set', to: 'carol@localhost' }, xml('enable', { xmlns: PUSH, jid: 'mallory@localhost', node: 'x' })))
    .catch((err: { condition?: string }) => err.condition);
  t.equal(refused, 'forbidden');
  t.same(await server.node.storage.push.list('carol@localhost'), []);
});

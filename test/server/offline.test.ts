import type { Element } from 'ltx';
import { forEachDatabase } from '../helpers/databases';
import { waitUntil } from '../helpers/im';
import { collect, nextStanza, sleep, startTestServer, xml, type TestServer, type XmppClient } from '../helpers/server';

/** How long to wait before asserting that something did NOT arrive. */
const QUIET_MS = 250;
const DELAY = 'urn:xmpp:delay';

const chat = (to: string, body: string, attrs: Record<string, string> = {}) => xml('message', { to, type: 'chat', ...attrs }, xml('body', {}, body));
const isMessage = (s: Element) => s.is('message');
const bodies = (seen: Element[]) => seen.filter(isMessage).map((m) => m.getChildText('body'));

/** Waits until `user` has `n` messages stored (the sender gets no receipt for a stored message). */
function stored(server: TestServer, user: string, n: number): Promise<void> {
  return waitUntil(async () => (await server.node.storage.offline.count(`${user}@localhost`)) === n, 5000, `${n} stored message(s) for ${user}`);
}

/** Resolves with the first `n` messages the client receives. */
function nextMessages(client: XmppClient, n: number, ms = 5000): Promise<Element[]> {
  return new Promise((resolve, reject) => {
    const got: Element[] = [];
    const timer = setTimeout(() => {
      client.off('stanza', onStanza);
      reject(new Error(`timed out: ${got.length} of ${n} messages`));
    }, ms);
    const onStanza = (s: Element) => {
      if (!isMessage(s)) return;
      got.push(s);
      if (got.length < n) return;
      clearTimeout(timer);
      client.off('stanza', onStanza);
      resolve(got);
    };
    client.on('stanza', onStanza);
  });
}

forEachDatabase('offline messages (XEP-0160, XEP-0203)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina']) await server.addUser(user);
  const alice = await server.login('alice', { resource: 'a' });

  await t.test('a message to an offline user is stored and delivered once, on login, with a delay stamp', async (t) => {
    const before = Date.now();
    await alice.send(chat('bob@localhost', 'while you were out', { id: 'off-1' }));
    await stored(server, 'bob', 1);

    const bob = await server.login('bob', { presence: false });
    const delivered = nextStanza(bob, isMessage);
    await bob.send(xml('presence'));
    const message = await delivered;
    const after = Date.now();
    t.equal(message.getChildText('body'), 'while you were out');
    t.equal(message.attrs.from, 'alice@localhost/a', 'from the sender');
    t.equal(message.attrs.id, 'off-1', 'with its id');
    const delay = message.getChild('delay', DELAY);
    t.ok(delay, 'carries <delay xmlns="urn:xmpp:delay"/>');
    const stamp = delay?.attrs.stamp as string;
    t.match(stamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'a UTC XEP-0082 timestamp');
    const when = Date.parse(stamp);
    t.ok(when >= before - 1000 && when <= after, `stamped when it was stored (${stamp})`);
    t.equal(delay?.attrs.from, 'localhost', 'by the server');
    await waitUntil(async () => (await server.node.storage.offline.count('bob@localhost')) === 0, 5000, 'the queue to empty');
    t.pass('the queue is empty after delivery');
    await bob.stop();

    const again = await server.login('bob', { presence: false });
    const seen = collect(again);
    await again.send(xml('presence'));
    await sleep(QUIET_MS);
    t.equal(seen.filter(isMessage).length, 0, 'the next login gets nothing');
    await again.stop();
  });

  await t.test('stored messages arrive in the order they were sent', async (t) => {
    const texts = ['one', 'two', 'three', 'four', 'five'];
    for (const text of texts) await alice.send(chat('carol@localhost', text));
    await stored(server, 'carol', texts.length);
    const carol = await server.login('carol', { presence: false });
    const got = nextMessages(carol, texts.length);
    await carol.send(xml('presence'));
    t.same(bodies(await got), texts);
    await carol.stop();
  });

  await t.test('chat states alone, headlines and errors are not stored', async (t) => {
    await alice.send(xml('message', { to: 'dave@localhost', type: 'chat' }, xml('composing', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await alice.send(xml('message', { to: 'dave@localhost', type: 'chat' }, xml('active', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await alice.send(xml('message', { to: 'dave@localhost', type: 'headline' }, xml('body', {}, 'breaking news')));
    await alice.send(xml('message', { to: 'dave@localhost', type: 'chat' }, xml('body', {}, 'not kept'), xml('no-store', { xmlns: 'urn:xmpp:hints' })));
    // This one is kept: a body with a chat state. It also tells us that the ones before were handled.
    await alice.send(xml('message', { to: 'dave@localhost', type: 'chat' }, xml('body', {}, 'kept'), xml('active', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await stored(server, 'dave', 1);
    await sleep(QUIET_MS);
    t.equal(await server.node.storage.offline.count('dave@localhost'), 1, 'only the message with a body was stored');

    const dave = await server.login('dave', { presence: false });
    const got = nextStanza(dave, isMessage);
    const seen = collect(dave);
    await dave.send(xml('presence'));
    t.equal((await got).getChildText('body'), 'kept');
    await sleep(QUIET_MS);
    t.equal(seen.filter(isMessage).length, 1, 'nothing else was delivered');
    await dave.stop();
  });

  await t.test('a bound session that never sent presence does not get the stored messages', async (t) => {
    const erin = await server.login('erin', { presence: false });
    const seen = collect(erin);
    await alice.send(chat('erin@localhost', 'are you there?'));
    await stored(server, 'erin', 1);
    await sleep(QUIET_MS);
    t.equal(seen.filter(isMessage).length, 0, 'a message to the bare JID is not delivered to it');
    t.equal(await server.node.storage.offline.count('erin@localhost'), 1, 'but stored');

    // Directly addressed, the bound resource gets it (RFC 6121 §8.5.3.1); the stored one stays.
    const direct = nextStanza(erin, isMessage);
    await alice.send(chat(erin.jid!.toString(), 'to your resource'));
    t.equal((await direct).getChildText('body'), 'to your resource');

    const flushed = nextStanza(erin, (s) => isMessage(s) && s.getChildText('body') === 'are you there?');
    await erin.send(xml('presence'));
    t.ok((await flushed).getChild('delay', DELAY), 'delivered on initial presence');
    await erin.stop();
  });

  await t.test('a negative priority keeps messages stored until the priority becomes non-negative', async (t) => {
    const frank = await server.login('frank', { presence: false });
    const seen = collect(frank);
    const echo = nextStanza(frank, (s) => s.is('presence') && s.attrs.from === frank.jid?.toString());
    await frank.send(xml('presence', {}, xml('priority', {}, '-1')));
    await echo; // the server has taken frank's negative initial presence
    await alice.send(chat('frank@localhost', 'hidden'));
    await stored(server, 'frank', 1);
    await sleep(QUIET_MS);
    t.equal(seen.filter(isMessage).length, 0, 'nothing for a negative-priority resource');

    const delivered = nextStanza(frank, isMessage);
    await frank.send(xml('presence', {}, xml('priority', {}, '1')));
    t.equal((await delivered).getChildText('body'), 'hidden', 'delivered once the priority is non-negative');
    await stored(server, 'frank', 0);
    await frank.stop();
  });
});

forEachDatabase('offline queue limit (--offline-queue-length)', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri, args: ['--offline-queue-length=3'] });
  await server.addUser('alice');
  await server.addUser('bob');
  const alice = await server.login('alice', { resource: 'a' });

  await t.test('the message past the limit bounces to the sender with service-unavailable', async (t) => {
    const errors = collect(alice);
    for (const n of [1, 2, 3]) await alice.send(chat('bob@localhost', `m${n}`, { id: `q${n}` }));
    await stored(server, 'bob', 3);
    t.equal(errors.filter((s) => s.attrs.type === 'error').length, 0, 'the first three are accepted');

    const bounce = nextStanza(alice, (s) => isMessage(s) && s.attrs.type === 'error');
    await alice.send(chat('bob@localhost', 'm4', { id: 'q4' }));
    const error = await bounce;
    t.equal(error.attrs.id, 'q4', 'the fourth comes back');
    t.equal(error.attrs.from, 'bob@localhost');
    t.ok(error.getChild('error')?.getChild('service-unavailable', 'urn:ietf:params:xml:ns:xmpp-stanzas'), 'with service-unavailable');
    t.equal(await server.node.storage.offline.count('bob@localhost'), 3, 'the queue holds three');

    const bob = await server.login('bob', { presence: false });
    const got = nextMessages(bob, 3);
    await bob.send(xml('presence'));
    t.same(bodies(await got), ['m1', 'm2', 'm3'], 'bob gets the three that were kept');
    await bob.stop();
  });
});

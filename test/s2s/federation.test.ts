import t from 'tap';
import type { Element } from 'ltx';
import { eventually } from '../helpers/cluster';
import { startDomains } from '../helpers/federation';
import { MUC_ARGS, guestJoinsAndChats } from '../helpers/muc';
import { announceCaps } from '../helpers/caps';
import { PUBSUB_EVENT, nextEvent, publish } from '../helpers/pubsub';
import { RawConnection, collect, nextStanza, xml } from '../helpers/server';
import { subscribe } from '../helpers/subscriptions';

const WAIT_MS = 30_000;
const TUNE = 'http://jabber.org/protocol/tune';
const BLOCKING = 'urn:xmpp:blocking';
const BLOCKING_ERRORS = 'urn:xmpp:blocking:errors';
const STREAM_HEADER = (to: string, from?: string) =>
  `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='${to}'${from ? ` from='${from}'` : ''} version='1.0'>`;

// Two of our servers with different domains federate (RFC 6120 server-to-server, STARTTLS, XEP-0220
// dialback with XEP-0185 keys): users on each chat, subscribe and ping across.
t.test('two servers of ours federate: messages, presence subscriptions, IQs, both ways', async (t) => {
  const [a, b] = await startDomains(t, ['a.example', 'b.example']);
  await a.addUser('alice');
  await b.addUser('bob');
  const alice = await a.login('alice', 'phone');
  const bob = await b.login('bob', 'desk');

  await t.test('a message from a.example to b.example and the answer back', async (t) => {
    const heard = nextStanza(bob, (s) => s.is('message') && s.getChildText('body') === 'hello from a', WAIT_MS);
    await alice.send(xml('message', { to: 'bob@b.example', type: 'chat', id: 'm1' }, xml('body', {}, 'hello from a')));
    const got = await heard;
    t.equal(got.attrs.from, 'alice@a.example/phone', 'the sender is stamped by its own server');
    const back = nextStanza(alice, (s) => s.is('message') && s.getChildText('body') === 'hello from b', WAIT_MS);
    await bob.send(xml('message', { to: 'alice@a.example/phone', type: 'chat' }, xml('body', {}, 'hello from b')));
    t.equal((await back).attrs.from, 'bob@b.example/desk');
    t.same(a.node.federation?.status().outgoing.map((o) => [o.remote, o.state]), [['b.example', 'ready']], 'a.example holds one outgoing stream to b.example');
  });

  await t.test('presence subscription across domains, then presence flows', async (t) => {
    // Alice asks for Bob's presence; Bob approves; his presence then reaches her on every change.
    const first = nextStanza(alice, (s) => s.is('presence') && s.attrs.from === 'bob@b.example/desk' && !s.attrs.type, WAIT_MS);
    await subscribe(alice, bob, WAIT_MS);
    await first;
    t.pass('Bob\'s current presence reaches Alice once she is subscribed (RFC 6121 §3.1.5)');
    const away = nextStanza(alice, (s) => s.is('presence') && s.attrs.from === 'bob@b.example/desk' && s.getChildText('show') === 'away', WAIT_MS);
    await bob.send(xml('presence', {}, xml('show', {}, 'away')));
    await away;
    t.pass('and his changes');
    const items = await alice.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })), WAIT_MS);
    t.equal(items.getChild('query')?.getChildren('item').find((i: Element) => i.attrs.jid === 'bob@b.example')?.attrs.subscription, 'to', 'Alice\'s roster: subscription to Bob');
  });

  await t.test('an IQ to a remote server and one to a remote user\'s resource get their answers', async (t) => {
    const pong = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'b.example' }, xml('ping', { xmlns: 'urn:xmpp:ping' })), WAIT_MS);
    t.equal(pong.attrs.type, 'result', 'b.example answers a ping from alice');
    const info = await bob.iqCaller.request(xml('iq', { type: 'get', to: 'a.example' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })), WAIT_MS);
    t.ok(info.getChild('query')?.getChildren('feature').length, 'disco#info of a.example from bob');
  });

  await t.test('a message to a domain nobody serves bounces with remote-server-not-found', async (t) => {
    const error = nextStanza(alice, (s) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === 'nowhere', WAIT_MS);
    await alice.send(xml('message', { to: 'carol@unreachable.invalid', type: 'chat', id: 'nowhere' }, xml('body', {}, 'anyone?')));
    const bounced = await error;
    t.equal(bounced.getChild('error')?.getChildElements()[0]?.name, 'remote-server-not-found');
  });
});

// The receiving side's checks on a raw server stream (RFC 6120 §4.9.3, XEP-0220 §2).
t.test('bad input on a server stream: each refused, the server goes on', async (t) => {
  const [a, b] = await startDomains(t, ['c.example', 'd.example'], ['--s2s-tls-required=false']);
  await b.addUser('dave');

  await t.test('a dialback key for a domain the peer does not own is refused', async (t) => {
    // c.example's real server never made this key: d.example asks it and hears "invalid".
    const conn = await RawConnection.connect(b.s2sPort);
    conn.write(STREAM_HEADER('d.example', 'c.example'));
    await conn.waitFor(/<\/stream:features>/, WAIT_MS);
    conn.write("<db:result from='c.example' to='d.example'>0123456789abcdef</db:result>");
    const text = await conn.waitFor(/type='invalid'|type="invalid"/, WAIT_MS);
    t.match(text, /<db:result[^>]*type=.invalid/, 'the key is invalid');
    await conn.waitFor(/not-authorized/, WAIT_MS);
    t.pass('and the stream is closed with not-authorized');
    conn.destroy();
  });

  await t.test('a stanza from a domain the stream has not authenticated is invalid-from', async (t) => {
    const conn = await RawConnection.connect(b.s2sPort);
    conn.write(STREAM_HEADER('d.example', 'c.example'));
    await conn.waitFor(/<\/stream:features>/, WAIT_MS);
    conn.write("<message from='mallory@c.example' to='dave@d.example' type='chat'><body>spoofed</body></message>");
    await conn.waitFor(/invalid-from/, WAIT_MS);
    t.pass('invalid-from');
    conn.destroy();
  });

  await t.test('a stream to a domain the server does not serve is host-unknown', async (t) => {
    const conn = await RawConnection.connect(b.s2sPort);
    conn.write(STREAM_HEADER('elsewhere.example', 'c.example'));
    await conn.waitFor(/host-unknown/, WAIT_MS);
    t.pass('host-unknown');
    conn.destroy();
  });

  await t.test('malformed XML is not-well-formed', async (t) => {
    const conn = await RawConnection.connect(b.s2sPort);
    conn.write(`${STREAM_HEADER('d.example', 'c.example')}<message><<</message>`);
    await conn.waitFor(/not-well-formed/, WAIT_MS);
    t.pass('not-well-formed');
    conn.destroy();
  });

  await t.test('after all that, the real c.example still federates with d.example', async (t) => {
    await a.addUser('carl');
    const carl = await a.login('carl');
    const dave = await b.login('dave');
    const heard = nextStanza(dave, (s: Element) => s.is('message') && s.getChildText('body') === 'still here', WAIT_MS);
    await carl.send(xml('message', { to: 'dave@d.example', type: 'chat' }, xml('body', {}, 'still here')));
    await heard;
    t.pass('delivered');
  });
});

// A second server behind a stream that requires TLS: plaintext stanzas are refused.
t.test('--s2s-tls-required: a peer that skips STARTTLS gets nothing through', async (t) => {
  const [, b] = await startDomains(t, ['e.example', 'f.example']);
  const conn = await RawConnection.connect(b.s2sPort);
  conn.write(STREAM_HEADER('f.example', 'e.example'));
  const features = await conn.waitFor(/<\/stream:features>/, WAIT_MS);
  t.match(features, /<starttls xmlns=.urn:ietf:params:xml:ns:xmpp-tls.><required\/><\/starttls>/, 'STARTTLS is offered, required');
  conn.write("<db:result from='e.example' to='f.example'>abc</db:result>");
  await conn.waitFor(/policy-violation/, WAIT_MS);
  t.pass('dialback before TLS is a policy-violation');
  conn.destroy();
  await eventually('nothing reached the router', () => (b.node.federation?.counters.received ?? 0) === 0, 1000);
});

// A flood of connection attempts from one address is cut by the same per-address limits as clients
// get; other servers go on federating.
t.test('a flood of server connections from one address is refused; other domains go on', async (t) => {
  const [a, b] = await startDomains(t, ['g.example', 'h.example'], ['--connection-rate-per-ip=2', '--connection-limits-exempt=10.9.9.9', '--s2s-tls-required=false']);
  let refused = 0;
  for (let i = 0; i < 20; i++) {
    const conn = await RawConnection.connect(b.s2sPort, false, '127.0.0.9');
    conn.write(STREAM_HEADER('h.example', 'g.example'));
    const text = await conn.waitFor(/<\/stream:features>|policy-violation/, WAIT_MS).catch((err) => String(err));
    if (/policy-violation/.test(text)) refused++;
    conn.destroy();
  }
  t.ok(refused >= 5, `the flood is cut (${refused} of 20 refused)`);
  await a.addUser('gina');
  await b.addUser('hank');
  const gina = await a.login('gina');
  const hank = await b.login('hank');
  const heard = nextStanza(hank, (s: Element) => s.is('message') && s.getChildText('body') === 'through', WAIT_MS);
  await gina.send(xml('message', { to: 'hank@h.example', type: 'chat' }, xml('body', {}, 'through')));
  await heard;
  t.pass('g.example, from its own address, still reaches h.example');
});

// XEP-0045 across servers: a user of another domain joins one of our rooms and talks with ours.
t.test('a user of another server joins our room and chats in it', async (t) => {
  const [a, b] = await startDomains(t, ['room-guest.example', 'room-host.example'], MUC_ARGS);
  await a.addUser('gus');
  await b.addUser('hilda');
  const gus = await a.login('gus', 'g');
  const hilda = await b.login('hilda', 'h');
  await guestJoinsAndChats(t, hilda, gus, 'lobby@muc.room-host.example', WAIT_MS);
});

t.test('a server stream that authenticates nothing is closed after --auth-timeout', async (t) => {
  const [, b] = await startDomains(t, ['i.example', 'j.example'], ['--auth-timeout=1', '--s2s-tls-required=false']);
  const conn = await RawConnection.connect(b.s2sPort);
  conn.write(STREAM_HEADER('j.example', 'i.example'));
  await conn.waitFor(/<\/stream:features>/, WAIT_MS);
  await conn.waitFor(/connection-timeout/, WAIT_MS);
  t.pass('connection-timeout');
  conn.destroy();
});

// XEP-0163 across servers: alice's server learns what bob's client wants from its caps (a
// disco#info query that crosses to b.example) and sends him her PEP events; XEP-0191: blocking a
// remote JID, or a whole remote domain, holds for stanzas that arrive over s2s.
t.test('PEP events and blocking across servers', async (t) => {
  const [a, b] = await startDomains(t, ['pep-a.example', 'pep-b.example']);
  await a.addUser('alice');
  for (const user of ['bob', 'bert']) await b.addUser(user);
  const alice = await a.login('alice', 'desk');
  const bob = await b.login('bob', 'tunes');
  const bert = await b.login('bert', 'b');
  for (const client of [alice, bob, bert]) await client.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })), WAIT_MS);
  // The first stanzas between the two servers also set up their streams: generous deadlines.
  for (const contact of [bob, bert]) {
    await subscribe(contact, alice, WAIT_MS);
    await subscribe(alice, contact, WAIT_MS);
  }
  const titleOf = (message: Element) => message.getChild('event', PUBSUB_EVENT)?.getChild('items')?.getChild('item')?.getChild('tune', TUNE)?.getChildText('title');

  await t.test('a remote contact whose client wants a PEP node (+notify) gets its events; one whose client does not, none', async (t) => {
    const caps = await announceCaps(bob, [`${TUNE}+notify`]);
    await caps.queried;
    await eventually('pep-a.example verified the caps of bob\'s client', async () => (await a.node.storage.caps.get(caps.ver)) !== undefined, WAIT_MS);
    const bertCaps = await announceCaps(bert, [TUNE]);
    await eventually('pep-a.example verified the caps of bert\'s client', async () => (await a.node.storage.caps.get(bertCaps.ver)) !== undefined, WAIT_MS);
    const bertSaw = collect(bert);
    const event = nextEvent(bob, TUNE, () => true, WAIT_MS);
    await publish(alice, undefined, TUNE, xml('tune', { xmlns: TUNE }, xml('title', {}, 'Across')));
    const message = await event;
    t.equal(message.attrs.from, 'alice@pep-a.example');
    t.equal(titleOf(message), 'Across');
    // bob gets a second event after bert would have had the first: bert, without +notify, got nothing.
    const second = nextEvent(bob, TUNE, (items) => items.getChild('item')?.getChild('tune', TUNE)?.getChildText('title') === 'Again', WAIT_MS);
    await publish(alice, undefined, TUNE, xml('tune', { xmlns: TUNE }, xml('title', {}, 'Again')));
    await second;
    t.equal(bertSaw.filter((s) => s.getChild('event', PUBSUB_EVENT)).length, 0, 'bert\'s client did not ask for tunes and got none');
  });

  await t.test('a remote contact\'s resource that comes online wanting the node gets its last item', async (t) => {
    const laptop = await b.login('bob', 'laptop');
    const last = nextEvent(laptop, TUNE, () => true, WAIT_MS);
    await announceCaps(laptop, [`${TUNE}+notify`]);
    t.equal(titleOf(await last), 'Again', 'the last published tune, over s2s');
    await laptop.stop();
  });

  await t.test('a remote JID alice blocks cannot write to her; what she sends it is refused', async (t) => {
    await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('block', { xmlns: BLOCKING }, xml('item', { jid: 'bob@pep-b.example' }))), WAIT_MS);
    const bounced = nextStanza(bob, (s) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === 'to-blocker', WAIT_MS);
    const leaked = collect(alice);
    await bob.send(xml('message', { to: 'alice@pep-a.example', type: 'chat', id: 'to-blocker' }, xml('body', {}, 'hello?')));
    t.ok((await bounced).getChild('error')?.getChild('service-unavailable'), 'bob\'s message comes back over s2s with service-unavailable');
    const refused = nextStanza(alice, (s) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === 'to-blocked', WAIT_MS);
    await alice.send(xml('message', { to: 'bob@pep-b.example', type: 'chat', id: 'to-blocked' }, xml('body', {}, 'hi')));
    t.ok((await refused).getChild('error')?.getChild('blocked', BLOCKING_ERRORS), 'alice cannot write to bob');
    // bert, not blocked, still gets through; his message proves bob's was not merely late.
    const fromBert = nextStanza(alice, (s) => s.is('message') && s.getChildText('body') === 'from bert', WAIT_MS);
    await bert.send(xml('message', { to: 'alice@pep-a.example', type: 'chat' }, xml('body', {}, 'from bert')));
    await fromBert;
    t.same(leaked.filter((s) => s.is('message') && s.getChildText('body') === 'hello?').length, 0, 'alice never saw bob\'s message');
  });

  await t.test('blocking the whole remote domain stops bert too', async (t) => {
    await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('block', { xmlns: BLOCKING }, xml('item', { jid: 'pep-b.example' }))), WAIT_MS);
    const bounced = nextStanza(bert, (s) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === 'domain-blocked', WAIT_MS);
    await bert.send(xml('message', { to: 'alice@pep-a.example', type: 'chat', id: 'domain-blocked' }, xml('body', {}, 'me again')));
    t.ok((await bounced).getChild('error')?.getChild('service-unavailable'), 'a user of a blocked domain is refused');
    await alice.iqCaller.request(xml('iq', { type: 'set' }, xml('unblock', { xmlns: BLOCKING })), WAIT_MS);
    const back = nextStanza(alice, (s) => s.is('message') && s.getChildText('body') === 'unblocked', WAIT_MS);
    await bert.send(xml('message', { to: 'alice@pep-a.example', type: 'chat' }, xml('body', {}, 'unblocked')));
    await back;
    t.pass('after unblocking all, bert gets through');
  });
});

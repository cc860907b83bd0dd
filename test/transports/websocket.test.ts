import t from 'tap';
import { forEachDatabase } from '../helpers/databases';
import { item, presenceFrom, rosterItems, rosterSet, seedMutual, waitUntil } from '../helpers/im';
import { nextStanza, PASSWORD, startTestServer, xml } from '../helpers/server';
import { nextEvent, stanzaLogin, stanzaStop } from '../helpers/stanza';
import { RawWebSocket, WS_OPEN } from '../helpers/websocket';

const PING = "<iq xmlns='jabber:client' type='get' id='ping-1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";

forEachDatabase('@xmpp/client over WebSocket', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  await server.addUser('alice');
  await server.addUser('bob');

  await t.test('logs in over ws:// with SCRAM and binds the requested resource', async (t) => {
    const alice = await server.login('alice', { tls: 'ws', resource: 'browser' });
    t.equal(alice.jid?.toString(), 'alice@localhost/browser');
    await alice.stop();
  });

  await t.test('PLAIN is not offered on an unencrypted ws:// connection', async (t) => {
    await t.rejects(server.login('alice', { tls: 'ws', mechanism: 'PLAIN' }), /PLAIN not offered/);
  });

  await t.test('wss:// on the same port is encrypted, so PLAIN is offered and works', async (t) => {
    const alice = await server.login('alice', { tls: 'wss', mechanism: 'PLAIN', resource: 'secure' });
    t.equal(alice.jid?.toString(), 'alice@localhost/secure');
    await alice.stop();
  });

  await t.test('a wrong password is refused over WebSocket', async (t) => {
    await t.rejects(server.login('alice', { tls: 'ws', password: 'wrong-password' }), /not-authorized/);
  });

  await t.test('messages flow both ways between a WebSocket client and a TCP client', async (t) => {
    const alice = await server.login('alice', { tls: 'ws', resource: 'ws' });
    const bob = await server.login('bob', { resource: 'tcp' });
    const toBob = nextStanza(bob, (s) => s.is('message'));
    await alice.send(xml('message', { to: 'bob@localhost/tcp', type: 'chat' }, xml('body', {}, 'hello over websocket')));
    const got = await toBob;
    t.equal(got.getChildText('body'), 'hello over websocket');
    t.equal(got.attrs.from, 'alice@localhost/ws', 'from is stamped by the server');
    const toAlice = nextStanza(alice, (s) => s.is('message'));
    await bob.send(xml('message', { to: 'alice@localhost', type: 'chat' }, xml('body', {}, 'hello over tcp')));
    const back = await toAlice;
    t.equal(back.getChildText('body'), 'hello over tcp');
    t.equal(back.attrs.from, 'bob@localhost/tcp');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  await t.test('a TCP contact sees the WebSocket user come online and go offline, and the other way round', async (t) => {
    await seedMutual(server, 'alice', 'bob');
    const bob = await server.login('bob', { resource: 'tcp' });
    const aliceOnline = nextStanza(bob, presenceFrom('alice@localhost/ws'));
    const alice = await server.login('alice', { tls: 'ws', resource: 'ws', presence: false });
    const bobSeen = nextStanza(alice, presenceFrom('bob@localhost/tcp'));
    await alice.send(xml('presence', {}, xml('status', {}, 'in the browser')));
    t.equal((await aliceOnline).getChildText('status'), 'in the browser');
    t.ok(await bobSeen, 'the WebSocket client learns the TCP contact is online');
    const aliceOffline = nextStanza(bob, presenceFrom('alice@localhost/ws', 'unavailable'));
    await alice.stop();
    t.ok(await aliceOffline, 'closing the WebSocket stream sends unavailable presence');
    await bob.stop();
  });

  await t.test('roster set and get over WebSocket, with the push reaching the same user on TCP', async (t) => {
    const desk = await server.login('alice', { resource: 'desk' });
    await rosterItems(desk); // asks for the roster: an interested resource gets pushes
    const browser = await server.login('alice', { tls: 'ws', resource: 'browser' });
    const pushed = nextStanza(desk, (s) => s.is('iq') && s.attrs.type === 'set' && s.getChild('query')?.getChild('item')?.attrs.jid === 'carol@localhost');
    await rosterSet(browser, item('carol@localhost', { name: 'Carol' }, ['Friends']));
    t.equal((await pushed).getChild('query')?.getChild('item')?.attrs.name, 'Carol');
    const items = await rosterItems(browser);
    t.equal(items.get('carol@localhost')?.attrs.name, 'Carol');
    t.equal(items.get('carol@localhost')?.getChildText('group'), 'Friends');
    await Promise.all([desk.stop(), browser.stop()]);
  });

  await t.test('a message sent while the WebSocket user was offline is delivered when they come online', async (t) => {
    await server.addUser('dave');
    const bob = await server.login('bob', { resource: 'tcp' });
    await bob.send(xml('message', { to: 'dave@localhost', type: 'chat' }, xml('body', {}, 'while you were away')));
    await waitUntil(async () => (await server.node.storage.offline.count('dave@localhost')) === 1, 5000, 'the offline message');
    const dave = await server.login('dave', { tls: 'ws', presence: false });
    const delivered = nextStanza(dave, (s) => s.is('message'));
    await dave.send(xml('presence'));
    const message = await delivered;
    t.equal(message.getChildText('body'), 'while you were away');
    t.ok(message.getChild('delay', 'urn:xmpp:delay'), 'stamped with XEP-0203 delay');
    await Promise.all([bob.stop(), dave.stop()]);
  });
});

forEachDatabase('StanzaJS over WebSocket', async (t, dbUri) => {
  const server = await startTestServer(t, { dbUri });
  await server.addUser('alice');
  await server.addUser('bob');

  await t.test('logs in and binds the requested resource', async (t) => {
    const alice = await stanzaLogin(t, server, 'alice', 'websocket', { resource: 'stanzajs' });
    t.equal(alice.jid, 'alice@localhost/stanzajs');
    await stanzaStop(alice);
  });

  await t.test('messages flow both ways with a TCP client', async (t) => {
    const alice = await stanzaLogin(t, server, 'alice', 'websocket', { resource: 'web' });
    const bob = await server.login('bob', { resource: 'tcp' });
    const toBob = nextStanza(bob, (s) => s.is('message'));
    alice.sendMessage({ to: 'bob@localhost/tcp', type: 'chat', body: 'from stanza.js' });
    const got = await toBob;
    t.equal(got.getChildText('body'), 'from stanza.js');
    t.equal(got.attrs.from, 'alice@localhost/web');
    const toAlice = nextEvent(alice, 'message', (m) => m.body === 'from tcp');
    await bob.send(xml('message', { to: 'alice@localhost/web', type: 'chat' }, xml('body', {}, 'from tcp')));
    t.equal((await toAlice).from, 'bob@localhost/tcp');
    await Promise.all([stanzaStop(alice), bob.stop()]);
  });

  await t.test('presence goes both ways with a TCP contact, unavailable included', async (t) => {
    await seedMutual(server, 'alice', 'bob');
    const bob = await server.login('bob', { resource: 'tcp' });
    const online = nextStanza(bob, presenceFrom('alice@localhost/web'));
    const alice = await stanzaLogin(t, server, 'alice', 'websocket', { resource: 'web', presence: false });
    const bobSeen = nextEvent(alice, 'available', (p) => p.from === 'bob@localhost/tcp');
    alice.sendPresence({ status: 'stanza.js here' });
    t.equal((await online).getChildText('status'), 'stanza.js here');
    t.ok(await bobSeen);
    const bobGone = nextEvent(alice, 'unavailable', (p) => p.from === 'bob@localhost/tcp');
    await bob.stop();
    t.ok(await bobGone, 'the TCP contact going offline reaches the WebSocket client');
    const bob2 = await server.login('bob', { resource: 'tcp2' });
    const offline = nextStanza(bob2, presenceFrom('alice@localhost/web', 'unavailable'));
    await stanzaStop(alice);
    t.ok(await offline, 'the WebSocket client going offline reaches the TCP contact');
    await bob2.stop();
  });

  await t.test('roster: add an item and read it back', async (t) => {
    const alice = await stanzaLogin(t, server, 'alice', 'websocket');
    await alice.updateRosterItem({ jid: 'erin@localhost', name: 'Erin', groups: ['Work'] } as Parameters<typeof alice.updateRosterItem>[0]);
    const roster = await alice.getRoster();
    const erin = roster.items.find((i) => i.jid === 'erin@localhost');
    t.equal(erin?.name, 'Erin');
    t.same(erin?.groups, ['Work']);
    await stanzaStop(alice);
  });

  await t.test('offline messages arrive after login', async (t) => {
    await server.addUser('frank');
    const bob = await server.login('bob', { resource: 'tcp' });
    await bob.send(xml('message', { to: 'frank@localhost', type: 'chat' }, xml('body', {}, 'stored for frank')));
    await waitUntil(async () => (await server.node.storage.offline.count('frank@localhost')) === 1, 5000, 'the offline message');
    const frank = await stanzaLogin(t, server, 'frank', 'websocket', { presence: false });
    const delivered = nextEvent(frank, 'message', (m) => m.body === 'stored for frank');
    frank.sendPresence();
    const message = await delivered;
    t.ok(message.delay, 'stanza.js sees the delay stamp');
    await Promise.all([stanzaStop(frank), bob.stop()]);
  });
});

t.test('WebSocket bad input closes only the connection concerned', async (t) => {
  const server = await startTestServer(t, { args: ['--max-stanza-size=10000'] });
  await server.addUser('alice');
  const url = `ws://127.0.0.1:${server.wsPort}/xmpp-websocket`;
  const bystander = await server.login('alice', { resource: 'bystander' });
  const stillServed = async () => {
    const pong = await bystander.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    return pong.attrs.type === 'result';
  };

  await t.test('a message over --max-stanza-size closes the WebSocket with 1009 (message too big)', async (t) => {
    const ws = await RawWebSocket.connect(url);
    const other = await RawWebSocket.connect(url);
    ws.send(WS_OPEN);
    await ws.waitFor(/<stream:features/);
    ws.send(`<message xmlns='jabber:client' to='alice@localhost'><body>${'x'.repeat(20000)}</body></message>`);
    t.equal((await ws.waitClosed()).code, 1009);
    other.send(WS_OPEN);
    t.match(await other.waitFor(/<stream:features/), /SCRAM-SHA-1/, 'another WebSocket connection is unaffected');
    t.ok(await stillServed(), 'and so is a TCP session');
    other.close();
  });

  await t.test('a handshake without the xmpp subprotocol is refused with 400', async (t) => {
    const refused = await RawWebSocket.refusal(url, ['chat']);
    t.equal(refused.status, 400);
    t.match(refused.body, /xmpp.*subprotocol/);
    t.equal((await RawWebSocket.refusal(url, [])).status, 400, 'no subprotocol at all is refused too');
    t.ok(await stillServed());
  });

  await t.test('the accepted handshake names the xmpp subprotocol', async (t) => {
    const ws = await RawWebSocket.connect(url, ['chat', 'xmpp']);
    t.equal(ws.ws.protocol, 'xmpp');
    ws.close();
  });

  await t.test('a message that is not XML gets a not-well-formed stream error, then <close/>', async (t) => {
    const ws = await RawWebSocket.connect(url);
    ws.send(WS_OPEN);
    await ws.waitFor(/<stream:features/);
    ws.send('this is <not xml');
    const error = await ws.waitFor(/<stream:error/);
    t.match(error, /<not-well-formed xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]/);
    t.match(error, /xmlns:stream=['"]http:\/\/etherx\.jabber\.org\/streams['"]/, 'the stream prefix is declared in the message itself');
    await ws.waitFor(/<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'\/>/);
    ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
    t.equal((await ws.waitClosed()).code, 1000, 'the server closes the WebSocket once both sides sent <close/>');
    t.ok(await stillServed());
  });

  await t.test('<stream:stream> instead of <open/> is refused', async (t) => {
    const ws = await RawWebSocket.connect(url);
    ws.send("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' to='localhost' version='1.0'/>");
    t.match(await ws.waitFor(/<stream:error/), /invalid-xml/);
    ws.close();
  });

  await t.test('a stanza before authentication closes the stream with not-authorized', async (t) => {
    const ws = await RawWebSocket.connect(url);
    ws.send(WS_OPEN);
    t.match(await ws.waitFor(/^<open /), /^<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'[^>]* from='localhost'[^>]* version='1.0'/, 'the server answers with an RFC 7395 <open/>');
    await ws.waitFor(/<stream:features/);
    ws.send(PING);
    t.match(await ws.waitFor(/<stream:error/), /<not-authorized /);
    await ws.waitFor(/<close /);
    t.ok(await stillServed());
    ws.close();
  });
});

t.test('behind a trusted TLS-terminating proxy', async (t) => {
  const server = await startTestServer(t, { args: ['--trusted-proxies=127.0.0.1'] });
  const url = `ws://127.0.0.1:${server.wsPort}/`;
  const features = async (headers: Record<string, string>) => {
    const ws = await RawWebSocket.connect(url, ['xmpp'], headers);
    ws.send(WS_OPEN);
    const text = await ws.waitFor(/<stream:features/);
    ws.close();
    return text;
  };
  t.match(await features({ 'X-Forwarded-Proto': 'https' }), /<mechanism>PLAIN<\/mechanism>/, 'X-Forwarded-Proto: https from the proxy makes the connection secure');
  t.notMatch(await features({}), /PLAIN/, 'without it the connection is not secure');

  const untrusting = await startTestServer(t);
  const ws = await RawWebSocket.connect(`ws://127.0.0.1:${untrusting.wsPort}/`, ['xmpp'], { 'X-Forwarded-Proto': 'https' });
  ws.send(WS_OPEN);
  t.notMatch(await ws.waitFor(/<stream:features/), /PLAIN/, 'a node that trusts no proxy ignores the header');
  ws.close();
});

t.test('a raw RFC 7395 session: PLAIN, restart with a new <open/>, bind, a stanza, <close/>', async (t) => {
  const server = await startTestServer(t, { args: ['--trusted-proxies=127.0.0.1'] });
  await server.addUser('alice');
  const ws = await RawWebSocket.connect(`ws://127.0.0.1:${server.wsPort}/xmpp-websocket`, ['xmpp'], { 'X-Forwarded-Proto': 'https' });
  ws.send(WS_OPEN);
  await ws.waitFor(/<mechanism>PLAIN/);
  ws.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0alice\0${PASSWORD}`).toString('base64')}</auth>`);
  await ws.waitFor(/<success/);
  ws.send(WS_OPEN); // RFC 7395 §3.7: a restart is a new <open/>
  await ws.waitFor(/urn:ietf:params:xml:ns:xmpp-bind/);
  ws.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>raw</resource></bind></iq>");
  t.match(await ws.waitFor(/<jid>/), /^<iq xmlns='jabber:client'/, 'stanzas carry xmlns=jabber:client (RFC 7395 §3.3.3)');
  ws.send(PING);
  t.match(await ws.waitFor(/id="ping-1"|id='ping-1'/), /^<iq xmlns='jabber:client'[^>]*type="result"/);
  ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
  await ws.waitFor(/^<close /);
  t.equal((await ws.waitClosed()).code, 1000);
});

import t from 'tap';
import type { Element } from 'ltx';
import { parseJID } from '../../server/jid';
import { NS } from '../../server/xml/ns';
import { StreamParser } from '../../server/xml/stream-parser';
import {
  collect, nextStanza, PASSWORD, RawConnection, sleep, STREAM_OPEN, startTestServer, xml,
  type TestServer, type XmppClient,
} from '../helpers/server';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

/** Generous: the suite runs files in parallel on small machines. */
const WAIT_MS = 15_000;
const STREAM_NS = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";

/** What the server sent since its last stream header: the header, the elements, whether it closed. */
interface ServerStream {
  header?: Record<string, string>;
  elements: Element[];
  ended: boolean;
}

/** Parses the server's side of a raw connection (from its last `<?xml ...?>` header on). */
function serverStream(text: string): ServerStream {
  const stream: ServerStream = { elements: [], ended: false };
  const parser = new StreamParser({ maxStanzaSize: 1 << 24, maxXmlDepth: 100, maxAttributes: 100 }, {
    streamStart: (_name, attrs) => { stream.header = attrs; },
    element: (element) => { stream.elements.push(element); },
    streamEnd: () => { stream.ended = true; },
  });
  parser.write(text.slice(Math.max(0, text.lastIndexOf('<?xml'))));
  return stream;
}

/**
 * The server answered with exactly `<condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`
 * inside <stream:error/>, closed its stream right after, and closed the connection.
 */
async function expectStreamError(t: TapTest, conn: RawConnection, condition: string): Promise<ServerStream> {
  await conn.waitFor(/<\/stream:stream>/, WAIT_MS);
  await conn.waitClosed(WAIT_MS);
  const stream = serverStream(conn.text);
  t.equal(stream.header?.['xmlns:stream'], NS.STREAM, 'the server opened its stream before the error');
  const error = stream.elements[stream.elements.length - 1];
  t.equal(error?.name, 'stream:error', `the last element is <stream:error/> (got ${error})`);
  const conditions = error?.getChildElements().filter((child) => child.name !== 'text') ?? [];
  t.same(conditions.map((c) => [c.name, c.attrs.xmlns]), [[condition, NS.STREAMS]], `the condition is <${condition}/>`);
  t.ok(stream.ended, 'the server closed the stream with </stream:stream>');
  return stream;
}

/** Opens a raw stream on the c2s port and waits for the features. */
async function rawStream(server: TestServer): Promise<RawConnection> {
  const conn = await RawConnection.connect(server.port);
  conn.write(STREAM_OPEN);
  await conn.waitFor(/<\/stream:features>/, WAIT_MS);
  return conn;
}

const plainAuth = (local: string, password: string) =>
  `<auth xmlns='${NS.SASL}' mechanism='PLAIN'>${Buffer.from(`\0${local}\0${password}`).toString('base64')}</auth>`;

/** Logs in over direct TLS with SASL PLAIN and binds `resource`, byte by byte under our control. */
async function rawLogin(t: TapTest, server: TestServer, local: string, resource = 'raw'): Promise<RawConnection> {
  const conn = await RawConnection.connect(server.tlsPort, true);
  t.teardown(() => conn.destroy());
  conn.write(STREAM_OPEN);
  await conn.waitFor(/<\/stream:features>/, WAIT_MS);
  conn.write(plainAuth(local, PASSWORD));
  await conn.waitFor(/<success/, WAIT_MS);
  conn.write(STREAM_OPEN);
  await conn.waitFor(/<success[\s\S]*<\/stream:features>/, WAIT_MS);
  conn.write(`<iq type='set' id='bind-1'><bind xmlns='${NS.BIND}'><resource>${resource}</resource></bind></iq>`);
  await conn.waitFor(/<\/jid>/, WAIT_MS);
  return conn;
}

/** Two clients that logged in before the bad input and must not notice it. */
interface Bystanders {
  alice: XmppClient;
  bob: XmppClient;
  /** Everything bob received, to check that nothing from a bad stream reached him. */
  bobSaw: Element[];
}

async function bystanders(server: TestServer): Promise<Bystanders> {
  const alice = await server.login('alice', { resource: 'bystander' });
  const bob = await server.login('bob', { resource: 'bystander' });
  return { alice, bob, bobSaw: collect(bob) };
}

let probes = 0;
/** Alice can still message bob and ping the server. */
async function stillServed(t: TapTest, { alice, bob }: Bystanders): Promise<void> {
  const body = `still here ${++probes}`;
  const got = nextStanza(bob, (s) => s.is('message') && s.getChildText('body') === body, WAIT_MS);
  await alice.send(xml('message', { to: 'bob@localhost/bystander', type: 'chat', id: `probe-${probes}` }, xml('body', {}, body)));
  t.equal((await got).attrs.from, 'alice@localhost/bystander', 'a logged-in client still gets messages');
  const pong = await alice.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: NS.PING })), WAIT_MS);
  t.equal(pong.attrs.type, 'result', 'a logged-in client still gets IQ answers');
}

/** Bob never received a message whose body contains `marker` (call after stillServed: delivery is in order). */
function neverDelivered(t: TapTest, b: Bystanders, marker: string): void {
  const leaked = b.bobSaw.filter((s) => s.is('message') && (s.getChildText('body') ?? '').includes(marker));
  t.equal(leaked.length, 0, 'nothing from the bad stream was delivered');
}

t.test('bad input closes only the stream concerned, with the RFC 6120 stream error', async (t) => {
  const server = await startTestServer(t, { args: ['--max-stanza-size=10000', '--max-auth-failures=2'] });
  await server.addUser('alice');
  await server.addUser('bob');
  await server.addUser('mallory');
  await server.addUser('trudy');
  const b = await bystanders(server);

  await t.test('not-well-formed XML is not-well-formed', async (t) => {
    const conn = await rawStream(server);
    conn.write("<message to='bob@localhost/bystander'><body>broken</message></body>");
    await expectStreamError(t, conn, 'not-well-formed');
    await stillServed(t, b);
    neverDelivered(t, b, 'broken');
  });

  await t.test('not-well-formed XML from a logged-in client ends its session only', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write("<message to='bob@localhost/bystander'><body>a &undefined; entity</body></message>");
    await expectStreamError(t, conn, 'not-well-formed');
    await stillServed(t, b);
    neverDelivered(t, b, 'entity');
    t.equal(server.node.sessions.get(parseJID('mallory@localhost/raw')), undefined, 'the session is gone');
  });

  await t.test('a DOCTYPE with entity declarations is restricted-xml', async (t) => {
    const conn = await RawConnection.connect(server.port);
    conn.write(`<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><stream:stream to='localhost' version='1.0' ${STREAM_NS}>`);
    const stream = await expectStreamError(t, conn, 'restricted-xml');
    t.equal(stream.header?.from, 'localhost', 'the header names the server');
    await stillServed(t, b);
  });

  await t.test('a comment or a processing instruction is restricted-xml', async (t) => {
    const comment = await rawStream(server);
    comment.write('<!-- hello -->');
    await expectStreamError(t, comment, 'restricted-xml');
    const pi = await rawStream(server);
    pi.write("<?evil instruction?>");
    await expectStreamError(t, pi, 'restricted-xml');
    await stillServed(t, b);
  });

  await t.test('garbage before the stream header is not-well-formed, after a header of ours', async (t) => {
    const conn = await RawConnection.connect(server.port);
    conn.write('GET /http-bind HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const stream = await expectStreamError(t, conn, 'not-well-formed');
    t.equal(stream.header?.from, 'localhost');
    t.equal(stream.header?.version, '1.0');
    await stillServed(t, b);
  });

  await t.test('bytes that are not UTF-8 are unsupported-encoding', async (t) => {
    const conn = await rawStream(server);
    conn.socket.write(Buffer.from([0x3c, 0x6d, 0xe9, 0xff, 0x3e]));
    await expectStreamError(t, conn, 'unsupported-encoding');
    await stillServed(t, b);
  });

  await t.test('an oversized stanza is policy-violation; one under the limit is delivered', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    const fits = 'f'.repeat(9000);
    const got = nextStanza(b.bob, (s) => s.is('message') && s.getChildText('body') === fits, WAIT_MS);
    conn.write(`<message to='bob@localhost/bystander' type='chat'><body>${fits}</body></message>`);
    t.equal((await got).attrs.from, 'mallory@localhost/raw', '9000 bytes with a 10000-byte limit are delivered');
    conn.write(`<message to='bob@localhost/bystander' type='chat'><body>too big ${'x'.repeat(12000)}</body></message>`);
    await expectStreamError(t, conn, 'policy-violation');
    await stillServed(t, b);
    neverDelivered(t, b, 'too big');
  });

  await t.test('an oversized stanza that never ends is refused while it arrives', async (t) => {
    const conn = await rawStream(server);
    conn.write(`<message to='bob@localhost/bystander'><body>${'y'.repeat(20000)}`);
    await expectStreamError(t, conn, 'policy-violation');
    await stillServed(t, b);
  });

  await t.test('too-deep nesting is policy-violation', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write(`<message to='bob@localhost/bystander'><body>deep</body>${'<x>'.repeat(40)}${'</x>'.repeat(40)}</message>`);
    await expectStreamError(t, conn, 'policy-violation');
    await stillServed(t, b);
    neverDelivered(t, b, 'deep');
  });

  await t.test('too many attributes on one element is policy-violation', async (t) => {
    const conn = await rawStream(server);
    const attrs = Array.from({ length: 100 }, (_, i) => ` a${i}='${i}'`).join('');
    conn.write(`<message${attrs}/>`);
    await expectStreamError(t, conn, 'policy-violation');
    await stillServed(t, b);
  });

  await t.test('character data between stanzas is bad-format', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write("hello<message to='bob@localhost/bystander'><body>after text</body></message>");
    await expectStreamError(t, conn, 'bad-format');
    await stillServed(t, b);
    neverDelivered(t, b, 'after text');
  });

  await t.test('a forged from is invalid-from (RFC 6120 §8.1.2.1, §4.9.3.9) and never delivered', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    // RFC 6120 §8.1.2.1: the server stamps the full JID; the client's own bare or full JID is fine.
    for (const [from, body] of [['mallory@localhost', 'own bare'], ['Mallory@LOCALHOST/raw', 'own full']]) {
      const got = nextStanza(b.bob, (s) => s.is('message') && s.getChildText('body') === body, WAIT_MS);
      conn.write(`<message from='${from}' to='bob@localhost/bystander' type='chat'><body>${body}</body></message>`);
      t.equal((await got).attrs.from, 'mallory@localhost/raw', `from='${from}' is accepted and stamped with the full JID`);
    }
    conn.write("<message from='alice@localhost/bystander' to='bob@localhost/bystander' type='chat'><body>forged</body></message>");
    await expectStreamError(t, conn, 'invalid-from');
    await stillServed(t, b);
    neverDelivered(t, b, 'forged');
  });

  await t.test('nothing sent after the stanza that ended the stream is processed', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write("<message from='alice@localhost/bystander' to='bob@localhost/bystander' type='chat'><body>forged</body></message>"
      + "<message to='bob@localhost/bystander' type='chat'><body>after the error</body></message>"
      + `<iq type='get' id='after-error' to='localhost'><ping xmlns='${NS.PING}'/></iq>`);
    const stream = await expectStreamError(t, conn, 'invalid-from');
    t.equal(stream.elements.filter((e) => e.attrs.id === 'after-error').length, 0, 'the IQ after the error was not answered');
    await stillServed(t, b);
    neverDelivered(t, b, 'after the error');
  });

  await t.test('the session ends with the stream error: a message sent to it meanwhile is kept offline', async (t) => {
    const conn = await rawLogin(t, server, 'mallory', 'half-open');
    // A client that does not close its side keeps the socket open for the server's grace period.
    conn.socket.allowHalfOpen = true;
    conn.write("<message from='bob@localhost' to='alice@localhost/bystander'><body>forged</body></message>");
    await conn.waitFor(/<\/stream:stream>/, WAIT_MS);
    t.notOk(conn.closed, 'the socket is still open');
    t.equal(server.node.sessions.get(parseJID('mallory@localhost/half-open')), undefined, 'the session is already gone');
    await b.alice.send(xml('message', { to: 'mallory@localhost/half-open', type: 'chat' }, xml('body', {}, 'while closing')));
    await stillServed(t, b); // the message above has been routed by now
    const mallory = await server.login('mallory', { presence: false });
    const offline = nextStanza(mallory, (s) => s.is('message') && s.getChildText('body') === 'while closing', WAIT_MS);
    await mallory.send(xml('presence'));
    t.equal((await offline).attrs.from, 'alice@localhost/bystander', 'the message was stored and delivered later');
    await mallory.stop();
  });

  await t.test('an element that is not a stanza is unsupported-stanza-type', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write("<mesage to='bob@localhost/bystander'><body>typo</body></mesage>");
    await expectStreamError(t, conn, 'unsupported-stanza-type');
    await stillServed(t, b);
  });

  await t.test('another resource of the same account is a forged from too', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write("<message from='mallory@localhost/other' to='bob@localhost/bystander' type='chat'><body>other resource</body></message>");
    await expectStreamError(t, conn, 'invalid-from');
    await stillServed(t, b);
    neverDelivered(t, b, 'other resource');
  });

  await t.test('an IQ get with two children (or a set with none) is a bad-request stanza error and the stream stays open', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write(`<iq type='get' id='two' to='localhost'><ping xmlns='${NS.PING}'/><query xmlns='${NS.VERSION}'/></iq>`);
    conn.write(`<iq type='set' id='none' to='localhost'/>`);
    conn.write(`<iq type='get' id='after' to='localhost'><ping xmlns='${NS.PING}'/></iq>`);
    await conn.waitFor(/id=["']after["']/, WAIT_MS);
    const stream = serverStream(conn.text);
    for (const id of ['two', 'none']) {
      const reply = stream.elements.find((e) => e.is('iq') && e.attrs.id === id);
      t.equal(reply?.attrs.type, 'error', `IQ '${id}' is answered with an error`);
      const error = reply?.getChild('error');
      t.equal(error?.attrs.type, 'modify');
      t.ok(error?.getChild('bad-request', NS.STANZAS), `<bad-request/> for IQ '${id}'`);
      t.equal(reply?.attrs.to, 'mallory@localhost/raw');
    }
    const pong = stream.elements.find((e) => e.is('iq') && e.attrs.id === 'after');
    t.equal(pong?.attrs.type, 'result', 'the next IQ on the same stream is answered');
    t.notOk(conn.closed, 'the stream is still open');
    t.notMatch(conn.text, /stream:error/);
    await stillServed(t, b);
  });

  await t.test('a malformed to is a jid-malformed stanza error and the stream stays open', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write("<message to='bob@@localhost' id='bad-to' type='chat'><body>x</body></message>");
    conn.write(`<iq type='get' id='after' to='localhost'><ping xmlns='${NS.PING}'/></iq>`);
    await conn.waitFor(/id=["']after["']/, WAIT_MS);
    const reply = serverStream(conn.text).elements.find((e) => e.is('message') && e.attrs.id === 'bad-to');
    t.equal(reply?.attrs.type, 'error');
    t.ok(reply?.getChild('error')?.getChild('jid-malformed', NS.STANZAS), '<jid-malformed/>');
    t.notOk(conn.closed, 'the stream is still open');
    await stillServed(t, b);
  });

  await t.test('attribute names like __proto__ or constructor do no harm', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    const got = nextStanza(b.bob, (s) => s.is('message') && s.getChildText('body') === 'odd attributes', WAIT_MS);
    conn.write("<message __proto__='x' constructor='y' toString='z' hasOwnProperty='w' to='bob@localhost/bystander' type='chat'>"
      + "<body valueOf='v' __proto__='p'>odd attributes</body></message>");
    t.equal((await got).attrs.from, 'mallory@localhost/raw', 'delivered like any message');
    conn.write(`<iq type='get' id='after' to='localhost' __proto__='x'><ping xmlns='${NS.PING}' constructor='c'/></iq>`);
    await conn.waitFor(/id=["']after["']/, WAIT_MS);
    t.equal(serverStream(conn.text).elements.find((e) => e.attrs.id === 'after')?.attrs.type, 'result');
    await stillServed(t, b);
  });

  await t.test('an IQ with two children from a real client gets bad-request too', async (t) => {
    const carol = await server.login('alice', { resource: 'iq' });
    const reply = nextStanza(carol, (s) => s.is('iq') && s.attrs.id === 'two-children', WAIT_MS);
    await carol.send(xml('iq', { type: 'set', id: 'two-children' }, xml('query', { xmlns: NS.ROSTER }), xml('query', { xmlns: NS.ROSTER })));
    const error = (await reply).getChild('error');
    t.ok(error?.getChild('bad-request', NS.STANZAS));
    const pong = await carol.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: NS.PING })), WAIT_MS);
    t.equal(pong.attrs.type, 'result', 'the client keeps working');
    await carol.stop();
  });

  await t.test('a stanza in another namespace after login is invalid-namespace', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    conn.write("<message xmlns='jabber:server' to='bob@localhost/bystander'><body>server ns</body></message>");
    await expectStreamError(t, conn, 'invalid-namespace');
    await stillServed(t, b);
    neverDelivered(t, b, 'server ns');
  });

  await t.test('a header to a domain the server does not serve is host-unknown, after our header', async (t) => {
    const conn = await RawConnection.connect(server.port);
    conn.write(`<?xml version='1.0'?><stream:stream to='example.org' version='1.0' ${STREAM_NS}>`);
    const stream = await expectStreamError(t, conn, 'host-unknown');
    t.equal(stream.header?.from, 'localhost', 'our header names a domain we serve');
    t.ok(stream.header?.id, 'our header has a stream id');
    t.equal(conn.text.indexOf('<stream:stream'), conn.text.lastIndexOf('<stream:stream'), 'one header only');
    t.ok(conn.text.indexOf('<stream:stream') < conn.text.indexOf('<stream:error'), 'the header comes first');
    await stillServed(t, b);
  });

  await t.test('a wrong stream namespace is invalid-namespace', async (t) => {
    const conn = await RawConnection.connect(server.port);
    conn.write("<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://example.org/streams'>");
    await expectStreamError(t, conn, 'invalid-namespace');
    const content = await RawConnection.connect(server.port);
    content.write("<stream:stream to='localhost' version='1.0' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>");
    await expectStreamError(t, content, 'invalid-namespace');
    const prefix = await RawConnection.connect(server.port);
    prefix.write("<s:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'>");
    await expectStreamError(t, prefix, 'bad-namespace-prefix');
    await stillServed(t, b);
  });

  await t.test('a header without version is unsupported-version', async (t) => {
    const conn = await RawConnection.connect(server.port);
    conn.write(`<stream:stream to='localhost' ${STREAM_NS}>`);
    await expectStreamError(t, conn, 'unsupported-version');
    const old = await RawConnection.connect(server.port);
    old.write(`<stream:stream to='localhost' version='0.9' ${STREAM_NS}>`);
    await expectStreamError(t, old, 'unsupported-version');
    const garbled = await RawConnection.connect(server.port);
    garbled.write(`<stream:stream to='localhost' version='one' ${STREAM_NS}>`);
    await expectStreamError(t, garbled, 'unsupported-version');
    const newer = await RawConnection.connect(server.port);
    newer.write(`<stream:stream to='localhost' version='1.1' ${STREAM_NS}>`);
    await newer.waitFor(/<\/stream:features>/, WAIT_MS);
    t.equal(serverStream(newer.text).header?.version, '1.0', 'a newer 1.x client is answered with 1.0');
    newer.destroy();
    await stillServed(t, b);
  });

  await t.test('a stanza before authentication is not-authorized and is not routed', async (t) => {
    const conn = await rawStream(server);
    conn.write("<message to='bob@localhost/bystander' type='chat'><body>unauthenticated</body></message>");
    await expectStreamError(t, conn, 'not-authorized');
    const tls = await RawConnection.connect(server.tlsPort, true);
    tls.write(STREAM_OPEN);
    await tls.waitFor(/<\/stream:features>/, WAIT_MS);
    tls.write(`<iq type='get' id='early' to='localhost'><ping xmlns='${NS.PING}'/></iq>`);
    await expectStreamError(t, tls, 'not-authorized');
    await stillServed(t, b);
    neverDelivered(t, b, 'unauthenticated');
  });

  await t.test('SASL before STARTTLS on the STARTTLS port is refused with encryption-required', async (t) => {
    const conn = await rawStream(server);
    t.match(conn.text, /<starttls xmlns=["']urn:ietf:params:xml:ns:xmpp-tls["']><required\/><\/starttls>/, 'STARTTLS is required');
    t.notMatch(conn.text, /<mechanisms/, 'no SASL mechanism is offered before TLS');
    conn.write(plainAuth('alice', PASSWORD));
    await conn.waitFor(/<\/failure>/, WAIT_MS);
    const failure = serverStream(conn.text).elements.find((e) => e.is('failure'));
    t.equal(failure?.attrs.xmlns, NS.SASL);
    t.ok(failure?.getChild('encryption-required'), '<encryption-required/>');
    t.notMatch(conn.text, /<success/, 'the password sent in the clear did not log in');
    conn.write('</stream:stream>');
    await conn.waitClosed(WAIT_MS);
    t.notMatch(conn.text, /stream:error/, 'the client may still close cleanly');
    await stillServed(t, b);
  });

  await t.test('STARTTLS on a connection that is already TLS is a TLS failure and the stream closes', async (t) => {
    const conn = await RawConnection.connect(server.tlsPort, true);
    conn.write(STREAM_OPEN);
    await conn.waitFor(/<\/stream:features>/, WAIT_MS);
    t.notMatch(conn.text, /<starttls/, 'STARTTLS is not offered over TLS');
    conn.write(`<starttls xmlns='${NS.TLS}'/>`);
    await conn.waitFor(/<\/stream:stream>/, WAIT_MS);
    await conn.waitClosed(WAIT_MS);
    const stream = serverStream(conn.text);
    const failure = stream.elements[stream.elements.length - 1];
    t.ok(failure?.is('failure', NS.TLS), 'RFC 6120 §5.4.2.2: <failure/> in the TLS namespace, then the stream closes');
    t.ok(stream.ended);
    await stillServed(t, b);
  });

  await t.test('plain XMPP on the direct TLS port is dropped without harm', async (t) => {
    const conn = await RawConnection.connect(server.tlsPort);
    conn.write(STREAM_OPEN);
    await conn.waitClosed(WAIT_MS);
    t.notMatch(conn.text, /<stream:/, 'no XMPP is spoken before TLS');
    await stillServed(t, b);
  });

  await t.test('too many failed SASL attempts are policy-violation (--max-auth-failures=2)', async (t) => {
    const conn = await RawConnection.connect(server.tlsPort, true);
    conn.write(STREAM_OPEN);
    await conn.waitFor(/<\/stream:features>/, WAIT_MS);
    conn.write(plainAuth('trudy', 'wrong-1'));
    await conn.waitFor(/<\/failure>/, WAIT_MS);
    const first = serverStream(conn.text).elements.find((e) => e.is('failure'));
    t.ok(first?.getChild('not-authorized'), 'the first failure is <not-authorized/> and the stream stays');
    t.notOk(conn.closed);
    conn.write(plainAuth('trudy', 'wrong-2'));
    await expectStreamError(t, conn, 'policy-violation');
    t.equal(serverStream(conn.text).elements.filter((e) => e.is('failure')).length, 2, 'both attempts were answered first');
    await stillServed(t, b);
    // The right password still works on a new connection: the account is not locked by 2 failures.
    const trudy = await rawLogin(t, server, 'trudy');
    t.match(trudy.text, /trudy@localhost\/raw/);
  });

  await t.test('after all this, a new client still logs in and chats', async (t) => {
    const carol = await server.login('alice', { resource: 'late' });
    const got = nextStanza(b.bob, (s) => s.is('message') && s.getChildText('body') === 'late hello', WAIT_MS);
    await carol.send(xml('message', { to: 'bob@localhost/bystander', type: 'chat' }, xml('body', {}, 'late hello')));
    t.equal((await got).attrs.from, 'alice@localhost/late');
    await carol.stop();
  });
});

t.test('a client that never opens its stream or never authenticates is closed by the timeouts', async (t) => {
  const server = await startTestServer(t, { args: ['--stream-open-timeout=1', '--auth-timeout=3'] });
  await server.addUser('alice');
  await server.addUser('bob');
  await server.addUser('mallory');
  const b = await bystanders(server);

  await t.test('no stream header within --stream-open-timeout is connection-timeout', async (t) => {
    const conn = await RawConnection.connect(server.port);
    const stream = await expectStreamError(t, conn, 'connection-timeout');
    t.equal(stream.header?.from, 'localhost', 'a header of ours comes first');
    await stillServed(t, b);
  });

  await t.test('a header but no authentication within --auth-timeout is policy-violation', async (t) => {
    const conn = await rawStream(server);
    await expectStreamError(t, conn, 'policy-violation');
    await stillServed(t, b);
  });

  await t.test('authenticating without binding within --auth-timeout is policy-violation', async (t) => {
    const conn = await RawConnection.connect(server.tlsPort, true);
    conn.write(STREAM_OPEN);
    await conn.waitFor(/<\/stream:features>/, WAIT_MS);
    conn.write(plainAuth('mallory', PASSWORD));
    await conn.waitFor(/<success/, WAIT_MS);
    conn.write(STREAM_OPEN);
    await expectStreamError(t, conn, 'policy-violation');
    await stillServed(t, b);
  });

  await t.test('a bound session outlives the auth timeout', async (t) => {
    const conn = await rawLogin(t, server, 'mallory');
    // Keep using the stream until well past the 3 s timeout.
    for (let i = 0; i < 8; i++) {
      conn.write(`<iq type='get' id='keep-${i}' to='localhost'><ping xmlns='${NS.PING}'/></iq>`);
      await conn.waitFor(new RegExp(`id=["']keep-${i}["']`), WAIT_MS);
      await sleep(500);
    }
    t.notOk(conn.closed, 'still connected');
    t.notMatch(conn.text, /stream:error/);
    await stillServed(t, b);
  });
});


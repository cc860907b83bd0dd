import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import WebSocket from 'ws';
import { eventually } from '../helpers/cluster';
import { BoshRaw, HTTPBIND, XBOSH } from '../helpers/bosh';
import { PASSWORD, RawConnection, STREAM_OPEN, rawLogin, startTestServer, xml, type TestServer, type XmppClient } from '../helpers/server';

const WAIT_MS = 60_000;

/** A connection from `from` that opens a stream; resolves with what the server said first. */
async function openStream(port: number, from: string): Promise<{ conn: RawConnection; refused: boolean }> {
  const conn = await RawConnection.connect(port, false, from);
  conn.write(STREAM_OPEN);
  const text = await conn.waitFor(/<\/stream:features>|<\/stream:stream>/, 15_000).catch((err) => String(err));
  return { conn, refused: /policy-violation/.test(text) };
}

t.test('connections per client address: at most --max-connections-per-ip open', async (t) => {
  const server = await startTestServer(t, { args: ['--max-connections-per-ip=3', '--connection-rate-per-ip=0'] });
  const open: RawConnection[] = [];
  t.teardown(() => open.forEach((c) => c.destroy()));
  for (let i = 0; i < 3; i++) {
    const { conn, refused } = await openStream(server.port, '127.0.0.2');
    t.notOk(refused, `connection ${i + 1} from 127.0.0.2 is served`);
    open.push(conn);
  }
  const fourth = await openStream(server.port, '127.0.0.2');
  t.ok(fourth.refused, 'the fourth gets <policy-violation/>');
  t.match(fourth.conn.text, /more than 3 connections from 127\.0\.0\.2/);
  await fourth.conn.waitClosed(10_000);
  t.notOk((await openStream(server.port, '127.0.0.3')).refused, 'another address is not affected');
  for (let i = 0; i < 5; i++) t.notOk((await openStream(server.port, '127.0.0.1')).refused, 'loopback 127.0.0.1 is exempt by default');
  open.shift()!.destroy();
  await eventually('a closed connection frees its place', async () => {
    const again = await openStream(server.port, '127.0.0.2');
    again.conn.destroy();
    return !again.refused;
  }, 20_000);
});

t.test('new connections per client address: --connection-rate-per-ip a second, with a burst of five seconds\' worth', async (t) => {
  const server = await startTestServer(t, { args: ['--max-connections-per-ip=0', '--connection-rate-per-ip=2'] });
  // The bucket starts with 10 (five seconds' worth) and gains 2 a second: of 20 connections
  // opened at once, no more than 10 + 2 per second elapsed may be served.
  const started = Date.now();
  let served = 0;
  for (let i = 0; i < 20; i++) {
    const { conn, refused } = await openStream(server.port, '127.0.0.4');
    conn.destroy();
    if (!refused) served++;
  }
  const seconds = (Date.now() - started) / 1000;
  t.ok(served >= 10, `the burst is served (${served})`);
  t.ok(served <= 10 + Math.ceil(2 * seconds), `and no more than the rate allows (${served} in ${seconds.toFixed(1)} s)`);
  t.ok(served < 20 || seconds > 5, 'a flood is cut');
  await eventually('the rate lets it in again', async () => {
    const later = await openStream(server.port, '127.0.0.4');
    later.conn.destroy();
    return !later.refused;
  }, 20_000);
});

/** HAProxy's v2 header for a TCP connection from `source` (IPv4 or IPv6) to the server. */
function proxyV2(source: string, port: number): Buffer {
  const v6 = net.isIPv6(source);
  const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const bytes = (ip: string) => v6 ? Buffer.from(expand(ip).map((g) => [g >> 8, g & 0xff]).flat()) : Buffer.from(ip.split('.').map(Number));
  const addresses = Buffer.concat([bytes(source), bytes(v6 ? '::1' : '127.0.0.1'), Buffer.from([port >> 8, port & 0xff, 0x14, 0x66])]);
  const header = Buffer.from([0x21, v6 ? 0x21 : 0x11, addresses.length >> 8, addresses.length & 0xff]);
  return Buffer.concat([signature, header, addresses]);
}

function expand(ip: string): number[] {
  const [head, tail] = ip.split('::');
  const h = head ? head.split(':').map((g) => parseInt(g, 16)) : [];
  const tl = tail ? tail.split(':').map((g) => parseInt(g, 16)) : [];
  return [...h, ...new Array(8 - h.length - tl.length).fill(0), ...tl];
}

/** Logs in with PLAIN over direct TLS, the TLS preceded by `header` (a PROXY protocol header). */
async function loginThrough(port: number, header: Buffer | string, user: string, whileBound: () => Promise<void>): Promise<string> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(header);
  const secure = tls.connect({ socket, rejectUnauthorized: false });
  let text = '';
  secure.setEncoding('utf8');
  secure.on('data', (d: string) => (text += d));
  secure.on('error', () => undefined);
  const waitFor = async (re: RegExp) => {
    await eventually(`${re}`, () => re.test(text) || secure.destroyed, 15_000);
    return text;
  };
  try {
    secure.write(STREAM_OPEN);
    await waitFor(/<\/stream:features>/);
    secure.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${PASSWORD}`).toString('base64')}</auth>`);
    if (!/<success/.test(await waitFor(/<success|<failure/))) return 'failure';
    secure.write(STREAM_OPEN);
    await waitFor(/<bind /);
    secure.write("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    await waitFor(/<jid>/);
    await whileBound();
    return 'success';
  } finally {
    secure.destroy();
  }
}

t.test('--c2s-proxy-protocol: a trusted balancer names the client; limits and logs use that address', async (t) => {
  const server = await startTestServer(t, { args: ['--c2s-proxy-protocol=true', '--trusted-proxies=127.0.0.1', '--max-connections-per-ip=1', '--connection-rate-per-ip=0'] });
  await server.addUser('viaproxy');
  const address = async () => (await server.node.admin.list({ user: 'viaproxy@localhost' })).result.map((s) => s.address);

  t.equal(await loginThrough(server.tlsPort, 'PROXY TCP4 203.0.113.7 127.0.0.1 51000 5223\r\n', 'viaproxy', async () => {
    t.same(await address(), ['203.0.113.7:51000'], 'the session has the client\'s address');
  }), 'success', 'v1, then direct TLS');
  t.equal(await loginThrough(server.tlsPort, proxyV2('2001:db8::7', 52000), 'viaproxy', async () => {
    t.same(await address(), ['2001:db8::7:52000'], 'an IPv6 client');
  }), 'success', 'v2');

  // A session held open through the balancer carries the client's address.
  const socket = net.connect({ port: server.port, host: '127.0.0.1' });
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write('PROXY TCP4 198.51.100.9 127.0.0.1 53000 5222\r\n');
  socket.write(STREAM_OPEN);
  let text = '';
  socket.on('data', (d) => (text += d));
  await eventually('features over the proxied plain connection', () => /<\/stream:features>/.test(text), 15_000);
  const second = net.connect({ port: server.port, host: '127.0.0.1' });
  await new Promise<void>((resolve) => second.once('connect', resolve));
  second.write('PROXY TCP4 198.51.100.9 127.0.0.1 53001 5222\r\n');
  let refusedText = '';
  second.on('data', (d) => (refusedText += d));
  await eventually('the second connection of that client is refused', () => /policy-violation/.test(refusedText), 15_000);
  t.match(refusedText, /more than 1 connections from 198\.51\.100\.9/, 'limits count the client behind the balancer, not the balancer');
  socket.destroy();
  second.destroy();

  // Without a header, the balancer's own connection is dropped; an untrusted address needs none.
  const bare = await RawConnection.connect(server.port, false, '127.0.0.1');
  bare.write(STREAM_OPEN);
  await bare.waitClosed(20_000);
  t.notMatch(bare.text, /<stream:features/, 'a trusted proxy that sends no PROXY header is not served');
  const direct = await openStream(server.port, '127.0.0.5');
  t.notOk(direct.refused, 'a client connecting directly is served as usual');
  direct.conn.destroy();
});

t.test('--client-rate-limit: a client sending faster is slowed down by not reading, and loses nothing', async (t) => {
  // 20 000 bytes a second with a burst of 100 000: 300 000 bytes take about 10 s to be read (at
  // least 6.7 s: the last read, up to 64 KiB, is handled before the pause it causes).
  const server = await startTestServer(t, { args: ['--client-rate-limit=20000'] });
  await server.addUser('flooder');
  await server.addUser('reader');
  const flooder = await server.login('flooder');
  const reader = await server.login('reader');
  const body = 'x'.repeat(2900);
  const received = new Set<string>();
  reader.on('stanza', (s: { is(n: string): boolean; getChildText(n: string): string | null; attrs: Record<string, string> }) => {
    if (s.is('message') && s.attrs.id) received.add(s.attrs.id);
  });
  const started = Date.now();
  for (let i = 0; i < 100; i++) void flooder.send(xml('message', { to: 'reader@localhost', type: 'chat', id: `m${i}` }, xml('body', {}, body)));
  await eventually('every message arrives', () => received.size === 100, 120_000);
  const seconds = (Date.now() - started) / 1000;
  t.equal(received.size, 100, 'all 100 messages (300 KB) arrive: throttling loses nothing');
  t.ok(seconds >= 6, `and it took the rate's time, not less (${seconds.toFixed(1)} s for 300 KB at 20 KB/s after a 100 KB burst)`);
  const pinged = await flooder.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
  t.equal(pinged.attrs.type, 'result', 'the connection stays open and usable');
});

/**
 * The talker sends `to` messages of 16 KiB, eight at a time, until the sleeper's last session is
 * gone (at most 4096: 64 MiB); the ids sent, once it is gone.
 */
async function sendUntilGone(server: TestServer, talker: XmppClient, to: string, prefix: string): Promise<string[]> {
  const body = 'z'.repeat(16 * 1024);
  const sent: string[] = [];
  const online = () => server.node.sessions.hasSessions('sleeper@localhost');
  while (online() && sent.length < 4096) {
    for (let k = 0; k < 8; k++) {
      const id = `${prefix}${sent.length}`;
      sent.push(id);
      await talker.send(xml('message', { to, type: 'chat', id }, xml('body', {}, body)));
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await eventually('the sleeper\'s session is gone', () => !online(), WAIT_MS);
  return sent;
}

t.test('--client-send-queue: a client that stops reading is closed with policy-violation, and what it had not acknowledged is stored offline, not lost', async (t) => {
  // 64 KiB may wait for a client; the kernel's buffers take a few MiB more before any waits here.
  const server = await startTestServer(t, { args: ['--client-send-queue=65536', '--client-rate-limit=0', '--offline-queue-length=5000'] });
  await server.addUser('sleeper');
  await server.addUser('talker');
  // The sleeper: direct TLS, PLAIN, bound, XEP-0198 on, available; then it reads nothing more.
  const sleeper = await rawLogin(server.tlsPort, 'sleeper', 'zzz', "<enable xmlns='urn:xmpp:sm:3'/><presence/>", /<enabled/);
  sleeper.socket.pause();

  const talker = await server.login('talker');
  const sent = await sendUntilGone(server, talker, 'sleeper@localhost', 's');
  t.ok(sent.length < 4096, `the server closed the sleeper's stream after ${sent.length} messages of 16 KiB (${(sent.length / 64).toFixed(1)} MiB)`);
  sleeper.socket.resume();
  await sleeper.waitFor(/policy-violation[^]*<\/stream:stream>/, WAIT_MS).catch(() => undefined);
  t.match(sleeper.text, /<policy-violation/, 'with policy-violation, once it reads again');

  // Every message is there when the sleeper comes back: stored offline, none twice.
  const back = await server.login('sleeper', { resource: 'awake' });
  const got: string[] = [];
  back.on('stanza', (s: { is(n: string): boolean; attrs: Record<string, string> }) => {
    if (s.is('message') && s.attrs.id?.startsWith('s')) got.push(s.attrs.id);
  });
  await eventually('every message reaches the sleeper, awake', () => got.length >= sent.length, WAIT_MS);
  t.same([...got].sort(), [...sent].sort(), `all ${sent.length} messages, once each`);
  const pinged = await talker.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
  t.equal(pinged.attrs.type, 'result', 'the talker was not disturbed');
});

t.test('--client-send-queue over WebSocket: a client that stops reading is closed with policy-violation', async (t) => {
  const server = await startTestServer(t, { args: ['--client-send-queue=65536', '--client-rate-limit=0'] });
  await server.addUser('sleeper');
  await server.addUser('talker');
  const ws = new WebSocket(`wss://127.0.0.1:${server.wsPort}/xmpp-websocket`, 'xmpp', { rejectUnauthorized: false });
  let received = '';
  const waitFor = (pattern: RegExp) => eventually(`the server said ${pattern}`, () => pattern.test(received), WAIT_MS);
  ws.on('message', (data) => { received += String(data); });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
  ws.send(open);
  await waitFor(/<\/stream:features>/);
  ws.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0sleeper\0${PASSWORD}`).toString('base64')}</auth>`);
  await waitFor(/<success/);
  ws.send(open);
  await waitFor(/<bind[^]*<\/stream:features>[^]*$/);
  ws.send("<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>zzz</resource></bind></iq>");
  await waitFor(/id="b1"|id='b1'/);
  ws.pause();

  const talker = await server.login('talker');
  const sent = (await sendUntilGone(server, talker, 'sleeper@localhost/zzz', 'w')).length;
  t.ok(sent < 4096, `closed after ${sent} messages of 16 KiB (${(sent / 64).toFixed(1)} MiB)`);
  ws.resume();
  await waitFor(/policy-violation/).catch(() => undefined);
  t.match(received, /<policy-violation/, 'with policy-violation, once it reads again');
  ws.terminate();
});

t.test('--client-send-queue over BOSH: a session whose client stops fetching is closed with policy-violation', async (t) => {
  const server = await startTestServer(t, { args: ['--client-send-queue=65536', '--client-rate-limit=0'] });
  await server.addUser('sleeper');
  await server.addUser('talker');
  const bosh = new BoshRaw(`https://127.0.0.1:${server.boshPort}/http-bind`);
  await bosh.login('sleeper', 'zzz');
  // From here the client sends no request: what the server has for it waits in the session.
  const talker = await server.login('talker');
  const sent = (await sendUntilGone(server, talker, 'sleeper@localhost/zzz', 'b')).length;
  t.ok(sent < 64, `closed after ${sent} messages of 16 KiB: BOSH has no kernel buffer in between`);
  const last = await bosh.request();
  t.equal(last.body?.attrs.type, 'terminate', 'its next request finds the session terminated');
  t.match(last.text, /<policy-violation/, 'with the stream error policy-violation (XEP-0206 remote-stream-error)');
});

t.test('--client-rate-limit across STARTTLS: a client throttled while it asks for TLS gets its handshake, and the budget goes on over TLS', async (t) => {
  // 16,384 bytes a second with a burst of 81,920: the header, 100,000 bytes of whitespace (allowed
  // between elements) and <starttls/> in one write put the client about a second over its budget,
  // so the node stops reading just as it answers <proceed/> and wraps the socket in TLS.
  const server = await startTestServer(t, { args: ['--client-rate-limit=16384'] });
  const plain = await RawConnection.connect(server.port);
  t.teardown(() => plain.destroy());
  const started = Date.now();
  plain.write(`${STREAM_OPEN}${' '.repeat(100_000)}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
  await plain.waitFor(/<proceed/, WAIT_MS);
  const secure = await plain.startTls();
  t.teardown(() => secure.destroy());
  secure.write(STREAM_OPEN);
  await secure.waitFor(/<\/stream:features>/, WAIT_MS);
  t.pass('the TLS handshake and the new stream went through');
  // 32,768 more bytes over TLS, then something to answer. A chunk is read only once the budget is
  // back to zero, so before the answer's chunk (at most one TLS record, 16,384 bytes) about
  // 117,000 bytes were read: at least 2.1 s after the start at this rate, burst included.
  secure.write(`${' '.repeat(32_768)}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='NO-SUCH-MECHANISM'/>`);
  await secure.waitFor(/<failure/, WAIT_MS);
  const seconds = (Date.now() - started) / 1000;
  t.ok(seconds >= 1.5, `the budget counted on over TLS (${seconds.toFixed(1)} s for 130 KB at 16 KB/s after an 80 KB burst)`);
});

t.test('WebSocket connections count towards the same per-address limits (refused before the upgrade with 429)', async (t) => {
  const server = await startTestServer(t, { args: ['--max-connections-per-ip=1', '--connection-rate-per-ip=0'] });
  const url = `ws://127.0.0.1:${server.wsPort}/xmpp-websocket`;
  const open = (from: string) => new Promise<{ ws: WebSocket; status: number }>((resolve) => {
    const ws = new WebSocket(url, 'xmpp', { localAddress: from });
    ws.once('open', () => resolve({ ws, status: 101 }));
    ws.once('unexpected-response', (_req, res) => resolve({ ws, status: res.statusCode ?? 0 }));
    ws.on('error', () => undefined);
  });
  const first = await open('127.0.0.2');
  t.equal(first.status, 101, 'the first WebSocket from 127.0.0.2 opens');
  const second = await open('127.0.0.2');
  t.equal(second.status, 429, 'the second gets 429 Too Many Requests');
  const other = await open('127.0.0.3');
  t.equal(other.status, 101, 'another address is not affected');
  first.ws.close();
  other.ws.close();
  await eventually('a closed WebSocket frees its place', async () => {
    const again = await open('127.0.0.2');
    again.ws.close();
    return again.status === 101;
  }, 20_000);
});

t.test('a BOSH session counts as a connection of its client\'s address while it lives', async (t) => {
  const server = await startTestServer(t, { args: ['--max-connections-per-ip=2', '--connection-rate-per-ip=0', '--trusted-proxies=127.0.0.1'] });
  const url = `http://127.0.0.1:${server.boshPort}/http-bind`;
  // Through a trusted proxy, which names the client in X-Forwarded-For.
  const post = (from: string, attrs: string) => BoshRaw.post(url, `<body xmlns='${HTTPBIND}' ${attrs}/>`, { 'X-Forwarded-For': from });
  const create = (from: string) => post(from, `rid='1000' to='localhost' wait='60' hold='1' ver='1.11' xmlns:xmpp='${XBOSH}' xmpp:version='1.0'`);
  const first = await create('203.0.113.9');
  const second = await create('203.0.113.9');
  t.ok(first.body?.attrs.sid && second.body?.attrs.sid, 'two sessions from 203.0.113.9');
  const third = await create('203.0.113.9');
  t.same([third.body?.attrs.type, third.body?.attrs.condition], ['terminate', 'policy-violation'], 'a third is refused (XEP-0124 policy-violation)');
  t.ok((await create('203.0.113.10')).body?.attrs.sid, 'another address is served');
  await post('203.0.113.9', `rid='1001' sid='${first.body!.attrs.sid}' type='terminate'`);
  await eventually('a terminated session frees its place', async () => Boolean((await create('203.0.113.9')).body?.attrs.sid), 20_000);
  t.pass('served again');
});

// Sockets held open without logging in cost a server most: they are limited apart from the others,
// so an office behind one address logs in hundreds of users while a flood of idle sockets is cut.
t.test('--max-unauthenticated-per-ip: connections waiting to log in, apart from logged-in ones', async (t) => {
  const server = await startTestServer(t, { args: ['--max-unauthenticated-per-ip=2', '--max-connections-per-ip=0', '--connection-rate-per-ip=0', '--connection-limits-exempt=10.9.9.9'] });
  await server.addUser('office');
  const waiting: RawConnection[] = [];
  t.teardown(() => waiting.forEach((c) => c.destroy()));
  for (let i = 0; i < 2; i++) {
    const { conn, refused } = await openStream(server.port, '127.0.0.7');
    t.notOk(refused, `idle connection ${i + 1} is served`);
    waiting.push(conn);
  }
  const third = await openStream(server.port, '127.0.0.7');
  t.ok(third.refused, 'a third one waiting to log in gets <policy-violation/>');
  t.match(third.conn.text, /more than 2 connections from 127\.0\.0\.7 waiting to log in/);
  third.conn.destroy();
  // Logged-in clients from the same address do not count: free one place, log in through it, then another.
  waiting.shift()!.destroy();
  const users: RawConnection[] = [];
  t.teardown(() => users.forEach((c) => c.destroy()));
  for (let i = 0; i < 3; i++) {
    const conn = await RawConnection.connect(server.tlsPort, true, '127.0.0.7');
    users.push(conn);
    conn.write(STREAM_OPEN);
    await conn.waitFor(/<\/stream:features>/, 15_000);
    conn.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0office\0${PASSWORD}`).toString('base64')}</auth>`);
    await conn.waitFor(/<success/, 15_000);
  }
  t.equal(users.length, 3, 'three clients logged in from the address while another socket waits there');
});

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { TestDns } from '../helpers/dns';
import { startDomains, type DomainServer } from '../helpers/federation';
import { RawConnection, freePort, nextStanza, xml } from '../helpers/server';
import { TestCa } from '../helpers/test-ca';

const WAIT_MS = 30_000;

/** A chat message from `from`'s user to `to`'s user arrives; its sender as the receiver saw it. */
async function chat(from: DomainServer, to: DomainServer, body: string): Promise<void> {
  const sender = await from.login('sender', 'r');
  const receiver = await to.login('receiver', 'r');
  const heard = nextStanza(receiver, (s) => s.is('message') && s.getChildText('body') === body, WAIT_MS);
  await sender.send(xml('message', { to: `receiver@${to.domain}`, type: 'chat' }, xml('body', {}, body)));
  await heard;
  await Promise.all([sender.stop(), receiver.stop()]);
}

/** The error condition a message to `to` comes back with. */
async function bounce(from: DomainServer, to: string, id: string): Promise<string | undefined> {
  const sender = await from.login('sender', 'b');
  const error = nextStanza(sender, (s) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === id, WAIT_MS);
  await sender.send(xml('message', { to, type: 'chat', id }, xml('body', {}, 'anyone?')));
  const condition = (await error).getChild('error')?.getChildElements()[0]?.name;
  await sender.stop();
  return condition;
}

async function withUsers(servers: DomainServer[]): Promise<DomainServer[]> {
  for (const s of servers) for (const local of ['sender', 'receiver']) await s.addUser(local);
  return servers;
}

// RFC 6120 §3.2 and XEP-0368: without static routes a server finds another's through DNS; the
// name server here is one the test runs, reached with --dns-servers.
t.test('remote servers are found through DNS: SRV for STARTTLS and direct TLS, A for their targets', async (t) => {
  const dns = await TestDns.start(t);
  const cTlsPort = await freePort();
  const [a, b, c] = await withUsers(await startDomains(t, ['a.test', 'b.test', 'c.test'], [`--dns-servers=${dns.server}`], {}, {
    staticRoutes: false,
    // c.test listens only on a direct-TLS port (XEP-0368), as its SRV records say.
    argsFor: (domain) => (domain === 'c.test' ? ['--s2s-ports=0', `--s2s-ssl-ports=${cTlsPort}`] : []),
  }));
  for (const server of [a, b]) dns.srv(`_xmpp-server._tcp.${server.domain}`, { target: `xmpp.${server.domain}`, port: server.s2sPort }).a(`xmpp.${server.domain}`, '127.0.0.1');
  dns.srv('_xmpps-server._tcp.c.test', { target: 'tls.c.test', port: cTlsPort }).a('tls.c.test', '127.0.0.1');
  // d.test says it offers no federation (RFC 2782 "."); nothing at all is known of e.test.
  dns.srv('_xmpp-server._tcp.d.test', { target: '.', port: 0 });

  await chat(a, b, 'found by SRV');
  t.ok(dns.asked.includes('SRV _xmpps-server._tcp.b.test') && dns.asked.includes('SRV _xmpp-server._tcp.b.test'), 'a.test asked for both SRV records of b.test');
  t.ok(dns.asked.includes('A xmpp.b.test'), 'and for the address of their target, from the configured name server');
  await chat(b, a, 'and back');
  await chat(a, c, 'over direct TLS');
  t.same(a.node.federation?.status().outgoing.map((o) => [o.remote, o.state]).sort(), [['b.test', 'ready'], ['c.test', 'ready']], 'a.test holds a stream to b.test and one to c.test');
  t.equal(await bounce(a, 'someone@d.test', 'to-d'), 'remote-server-not-found', 'a domain whose SRV target is "." bounces');
  t.equal(await bounce(a, 'someone@e.test', 'to-e'), 'remote-server-not-found', 'a domain with no records at all bounces');
});

// RFC 6120 §13.7 and XEP-0178: servers whose certificates come from a CA both trust prove their
// domains with them (SASL EXTERNAL), no dialback round trip; --s2s-verify-certs then refuses a
// peer whose certificate does not prove its domain, which dialback alone would have let in.
t.test('certificates from a trusted CA: SASL EXTERNAL both ways; --s2s-verify-certs refuses what does not prove its domain', async (t) => {
  const ca = await TestCa.create();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-s2s-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = new Map<string, { ca: string; cert: string; key: string }>();
  // ca1 and ca2 hold certificates for their own domains; mislabelled holds one for another domain; plain has its self-signed one.
  for (const [domain, named] of [['ca1.test', 'ca1.test'], ['ca2.test', 'ca2.test'], ['mislabelled.test', 'someone-else.test']]) {
    const sub = mkdtempSync(path.join(dir, `${domain}-`));
    files.set(domain, ca.write(sub, await ca.issue(named)));
  }
  const certArgs = (domain: string) => {
    const f = files.get(domain);
    return f ? [`--tls-cert=${f.cert}`, `--tls-key=${f.key}`, `--s2s-ca-file=${f.ca}`] : [];
  };
  const [ca1, ca2, mislabelled, plain] = await withUsers(await startDomains(t, ['ca1.test', 'ca2.test', 'mislabelled.test', 'plain.test'], [], {}, {
    argsFor: (domain) => [...certArgs(domain), ...(domain === 'ca2.test' ? ['--s2s-verify-certs=true'] : [])],
  }));

  await t.test('two servers with CA certificates authenticate each other with SASL EXTERNAL', async (t) => {
    await chat(ca1, ca2, 'external one way');
    await chat(ca2, ca1, 'external the other way');
    for (const [server, peer] of [[ca1, ca2], [ca2, ca1]]) {
      const status = server.node.federation!.status();
      t.same(status.outgoing.filter((o) => o.remote === peer.domain).map((o) => o.auth), ['sasl-external'], `${server.domain}'s stream to ${peer.domain}: SASL EXTERNAL`);
      t.same(status.incoming.filter((i) => i.remote === peer.domain).map((i) => i.auth), ['sasl-external'], `${server.domain} accepted ${peer.domain} by SASL EXTERNAL`);
    }
  });

  await t.test('a self-signed server still federates by dialback where certificates are not required', async (t) => {
    await chat(plain, ca1, 'dialback to a CA server');
    await chat(ca1, plain, 'dialback from a CA server');
    t.same(ca1.node.federation!.status().incoming.filter((i) => i.remote === 'plain.test').map((i) => i.auth), ['dialback']);
    t.same(ca1.node.federation!.status().outgoing.filter((o) => o.remote === 'plain.test').map((o) => o.auth), ['dialback'], 'plain.test cannot check our certificate, so it offers no EXTERNAL');
  });

  await t.test('a CA certificate for another domain proves nothing: EXTERNAL is not offered, dialback is used', async (t) => {
    await chat(mislabelled, ca1, 'a certificate naming someone else');
    t.same(ca1.node.federation!.status().incoming.filter((i) => i.remote === 'mislabelled.test').map((i) => i.auth), ['dialback']);
  });

  await t.test('--s2s-verify-certs: a peer whose certificate does not prove its domain gets nothing in, and is not connected to', async (t) => {
    t.equal(await bounce(plain, 'receiver@ca2.test', 'plain-to-ca2'), 'remote-server-not-found', 'a self-signed peer is refused even though its dialback key is good');
    t.equal(await bounce(mislabelled, 'receiver@ca2.test', 'mislabelled-to-ca2'), 'remote-server-not-found', 'so is a peer with a CA certificate for another domain');
    t.equal(await bounce(ca2, 'receiver@plain.test', 'ca2-to-plain'), 'remote-server-not-found', 'and ca2.test does not send to a server whose certificate it cannot check');
    t.equal(ca2.node.federation!.status().incoming.filter((i) => i.remote !== 'ca1.test').length, 0, 'ca2.test accepted no other domain');
    await chat(ca1, ca2, 'still fine for a proving peer');
  });
});

// SASL EXTERNAL on a raw server stream: what a peer with a good certificate may and may not claim.
t.test('SASL EXTERNAL refuses a claim its certificate does not back, and the stream goes on', async (t) => {
  const ca = await TestCa.create();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xmpp-s2s-ext-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = ca.write(dir, await ca.issue('host.test'));
  const [host] = await startDomains(t, ['host.test'], [`--tls-cert=${files.cert}`, `--tls-key=${files.key}`, `--s2s-ca-file=${files.ca}`]);
  const header = (from: string) => `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='host.test' from='${from}' version='1.0'>`;
  const plainConn = await RawConnection.connect(host.s2sPort);
  plainConn.write(header('peer.test'));
  await plainConn.waitFor(/<\/stream:features>/, WAIT_MS);
  t.notMatch(plainConn.text, /EXTERNAL/, 'no EXTERNAL before TLS');
  plainConn.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
  await plainConn.waitFor(/<proceed/, WAIT_MS);
  const conn = await plainConn.startTls(await ca.issue('peer.test'));
  conn.write(header('peer.test'));
  await conn.waitFor(/<mechanism>EXTERNAL<\/mechanism>/, WAIT_MS);
  t.pass('EXTERNAL is offered to a peer whose certificate names the domain its header claims');
  const auth = (mechanism: string, text: string) => conn.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${mechanism}'>${text}</auth>`);
  auth('EXTERNAL', Buffer.from('other.test').toString('base64'));
  await conn.waitFor(/<failure xmlns=.urn:ietf:params:xml:ns:xmpp-sasl.><invalid-authzid\/>/, WAIT_MS);
  t.pass('an authorisation identity other than the header\'s domain: invalid-authzid');
  auth('PLAIN', 'AGEAYg==');
  await conn.waitFor(/<invalid-mechanism\/>/, WAIT_MS);
  auth('EXTERNAL', 'not base64!');
  await conn.waitFor(/<incorrect-encoding\/>/, WAIT_MS);
  auth('EXTERNAL', '=');
  await conn.waitFor(/<success xmlns=.urn:ietf:params:xml:ns:xmpp-sasl.\/>/, WAIT_MS);
  t.pass('after those failures, the right claim succeeds on the same stream');
  conn.write(header('peer.test'));
  await conn.waitFor(/<stream:features>(?:(?!<\/stream:features>).)*<dialback/s, WAIT_MS);
  await host.addUser('hostuser');
  const hostUser = await host.login('hostuser', 'h');
  const heard = nextStanza(hostUser, (s) => s.is('message') && s.getChildText('body') === 'authenticated by certificate', WAIT_MS);
  conn.write("<message from='someone@peer.test/x' to='hostuser@host.test' type='chat'><body>authenticated by certificate</body></message>");
  await heard;
  t.same(host.node.federation!.status().incoming.map((i) => [i.remote, i.auth]), [['peer.test', 'sasl-external']]);
  conn.write("<message from='someone@evil.test/x' to='hostuser@host.test' type='chat'><body>spoofed</body></message>");
  await conn.waitFor(/invalid-from/, WAIT_MS);
  t.pass('a stanza from another domain than the one proved: invalid-from');
  conn.destroy();
});

import { randomBytes } from 'node:crypto';
import t from 'tap';
import { startTestServer } from '../helpers/server';
import { visitOverTls } from '../helpers/tls-session';

// A client that comes back soon resumes its TLS session (RFC 8446 §2.2): no certificate, no
// signature. The ticket keys are the node's, the same on every client listener, and replaced
// hourly (server/tls.ts TicketKeys): a ticket made under replaced keys gets a full handshake.

for (const how of ['starttls', 'direct'] as const) {
  t.test(`a client that comes back resumes its TLS session (${how})`, async (t) => {
    const server = await startTestServer(t);
    const port = how === 'starttls' ? server.port : server.tlsPort;
    const first = await visitOverTls(port, how);
    t.equal(first.reused, false, `the first connection is a full handshake (${first.protocol})`);
    const again = await visitOverTls(port, how, first.ticket);
    t.equal(again.reused, true, 'the second resumes it');
  });
}

t.test('TLS 1.2 clients resume with tickets too', async (t) => {
  const server = await startTestServer(t);
  const first = await visitOverTls(server.port, 'starttls', undefined, true, 'TLSv1.2');
  t.equal(first.protocol, 'TLSv1.2', 'the node speaks TLS 1.2 to a client that asks for it');
  t.equal((await visitOverTls(server.port, 'starttls', first.ticket, false, 'TLSv1.2')).reused, true, 'resumed');
});

t.test('one set of ticket keys for every client listener, and after it is replaced, a full handshake', async (t) => {
  const server = await startTestServer(t);
  const direct = await visitOverTls(server.tlsPort, 'direct');
  t.equal((await visitOverTls(server.port, 'starttls', direct.ticket)).reused, true, 'a ticket from direct TLS resumes over STARTTLS');
  const starttls = await visitOverTls(server.port, 'starttls');
  t.equal((await visitOverTls(server.tlsPort, 'direct', starttls.ticket)).reused, true, 'and one from STARTTLS over direct TLS');
  t.equal((await visitOverTls(server.wsPort, 'https', starttls.ticket)).reused, true, 'and on the WebSocket port (https, wss)');
  const https = await visitOverTls(server.boshPort, 'https');
  t.equal((await visitOverTls(server.port, 'starttls', https.ticket)).reused, true, 'and one from the BOSH port over STARTTLS');

  server.node.useSharedTicketKeys(randomBytes(48));
  for (const [how, port] of [['starttls', server.port], ['direct', server.tlsPort]] as const) {
    const old = await visitOverTls(port, how, starttls.ticket, true);
    t.equal(old.reused, false, `${how}: a ticket made under the keys before is not resumed`);
    t.equal((await visitOverTls(port, how, old.ticket)).reused, true, `${how}: the new one is`);
  }
});

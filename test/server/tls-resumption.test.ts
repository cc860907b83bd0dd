import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { STREAM_OPEN, startTestServer } from '../helpers/server';

const WAIT_MS = 30_000;

/** Reads from `socket` until `pattern` has been seen. */
function waitFor(socket: net.Socket, pattern: RegExp): Promise<void> {
  let seen = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}: ${seen}`)), WAIT_MS);
    socket.on('data', (data: Buffer) => {
      seen += data.toString('utf8');
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.once('error', reject);
  });
}

/** A TLS connection (direct, or STARTTLS on `port`) offering `session`; with none, resolves once the server's ticket arrived. */
async function connect(port: number, how: 'starttls' | 'direct', session?: Buffer): Promise<{ reused: boolean; protocol: string | null; ticket?: Buffer }> {
  let socket: net.Socket | undefined;
  if (how === 'starttls') {
    socket = net.connect({ port, host: '127.0.0.1' });
    const proceed = waitFor(socket, /<proceed/);
    socket.write(`${STREAM_OPEN}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await proceed;
    socket.removeAllListeners('data');
  }
  const secure = tls.connect({ ...(socket ? { socket } : { port, host: '127.0.0.1' }), rejectUnauthorized: false, session });
  const ticket = new Promise<Buffer>((resolve) => secure.once('session', resolve));
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve());
    secure.once('error', reject);
  });
  // TLS 1.3 sends its tickets after the handshake: opening the stream makes the client read them.
  const features = waitFor(secure, /<\/stream:features>/);
  secure.write(STREAM_OPEN);
  await features;
  const result = { reused: secure.isSessionReused(), protocol: secure.getProtocol(), ticket: session ? undefined : await ticket };
  secure.destroy();
  return result;
}

for (const how of ['starttls', 'direct'] as const) {
  t.test(`a client that comes back resumes its TLS session (${how})`, async (t) => {
    const server = await startTestServer(t);
    const port = how === 'starttls' ? server.port : server.tlsPort;
    const first = await connect(port, how);
    t.equal(first.reused, false, `the first connection is a full handshake (${first.protocol})`);
    const again = await connect(port, how, first.ticket);
    t.equal(again.reused, true, 'the second resumes it: no certificate, no signature');
  });
}

import net from 'node:net';
import tls from 'node:tls';
import { STREAM_OPEN } from './server';

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

export interface TlsVisit {
  /** The server resumed the session offered (an abbreviated handshake). */
  reused: boolean;
  protocol: string | null;
  /** The server's ticket for next time (asked for with `wantTicket`). */
  ticket?: Buffer;
}

/**
 * A client stream to localhost over TLS, direct or STARTTLS on `port` (or, with 'https', a plain HTTP
 * request: the WebSocket and BOSH ports), offering `session` to resume; it ends once the
 * encrypted stream's features (or the HTTP answer) arrived, and with `wantTicket` the server's
 * session ticket, which TLS 1.3 sends after the handshake.
 */
export async function visitOverTls(port: number, how: 'starttls' | 'direct' | 'https', session?: Buffer, wantTicket = !session, maxVersion?: tls.SecureVersion): Promise<TlsVisit> {
  let plain: net.Socket | undefined;
  if (how === 'starttls') {
    plain = net.connect({ port, host: '127.0.0.1' });
    const proceed = waitFor(plain, /<proceed/);
    plain.write(`${STREAM_OPEN}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await proceed;
    plain.removeAllListeners('data');
  }
  const secure = tls.connect({ ...(plain ? { socket: plain } : { port, host: '127.0.0.1' }), rejectUnauthorized: false, session, maxVersion });
  try {
    const ticket = new Promise<Buffer>((resolve) => secure.once('session', resolve));
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    const answer = waitFor(secure, how === 'https' ? /^HTTP\/1\.1 \d{3} / : /<\/stream:features>/);
    secure.write(how === 'https' ? 'GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n' : STREAM_OPEN);
    await answer;
    return { reused: secure.isSessionReused(), protocol: secure.getProtocol(), ticket: wantTicket ? await ticket : undefined };
  } finally {
    secure.destroy();
  }
}

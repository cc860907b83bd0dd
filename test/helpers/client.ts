import { pbkdf2Sync } from 'node:crypto';
import { client as xmppClient, xml } from '@xmpp/client';

// Test servers use a self-signed certificate generated on first start.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

export type XmppClient = ReturnType<typeof xmppClient>;

/**
 * @xmpp/client's SCRAM computes Hi() (PBKDF2-HMAC-SHA-1) as 4096 awaited WebCrypto HMACs: a third
 * of a second of CPU per login, in the test process beside the server it tests. This puts Node's
 * native PBKDF2 in its place, which returns the same bytes (RFC 5802 §2.2 Hi is PBKDF2 with one
 * block): what goes over the wire is unchanged, it is only computed faster.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const scramBitops = require('sasl-scram-sha-1/lib/bitops') as { Hi(text: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> };
scramBitops.Hi = async (text, salt, iterations) => new Uint8Array(pbkdf2Sync(Buffer.from(text, 'utf8'), salt, iterations, 20, 'sha1'));

/**
 * How long a test client waits for each step of opening or closing a stream [20 s]: @xmpp/client's
 * 2 s default is missed on a busy machine (reopening the stream after STARTTLS, mostly).
 */
export const CLIENT_TIMEOUT_MS = 20_000;

export interface ConnectOptions {
  /** xmpp://host:port (STARTTLS), xmpps://host:port (direct TLS) or ws://host:port/path. */
  service: string;
  domain: string;
  local: string;
  password: string;
  resource?: string;
  mechanism?: 'SCRAM-SHA-1' | 'PLAIN';
  /** Send initial presence after binding [true]. */
  presence?: boolean;
  /** Log in with SASL2 and Bind2 as @xmpp/client does by default [false: RFC 6120 SASL and binding, so the resource is the one asked for]. */
  sasl2?: boolean;
}

/**
 * Makes an @xmpp/client negotiate like a client that knows only RFC 6120 SASL and resource binding:
 * it never sees the XEP-0388 offer. Tests of other features use it so that the resource they ask
 * for is the one they get (Bind2 adds a suffix of the server's).
 */
export function withoutSasl2(client: XmppClient): void {
  client.prependListener('element', (element: { is(name: string, ns?: string): boolean; children: unknown[] }) => {
    if (!element.is('features', 'http://etherx.jabber.org/streams')) return;
    element.children = element.children.filter((c) => typeof c === 'string' || !(c as { is(n: string, ns: string): boolean }).is('authentication', 'urn:xmpp:sasl:2'));
  });
}

/**
 * @xmpp/client writes its stream header and only once the write has called back starts waiting for
 * the server's header. A server in the same process (the tests' in-process nodes) can answer
 * within that gap when the machine is busy, and the client then waits for a header it already
 * got until it times out. Over a network the answer always comes later; here the client listens
 * first. It is the library's own open(), with the wait set up before the write.
 */
function listenBeforeOpening(client: XmppClient): void {
  type Internals = {
    _status(status: string): void;
    headerElement(): { attrs: Record<string, string> };
    header(el: unknown): string;
    root: unknown;
    _attachParser(parser: unknown): void;
    Parser: new () => unknown;
    write(data: string): Promise<void>;
    timeout: number;
  };
  const c = client as unknown as XmppClient & Internals;
  c.open = async (options: { domain: string; lang: string }) => {
    c._status('opening');
    const headerElement = c.headerElement();
    headerElement.attrs.to = options.domain;
    headerElement.attrs['xml:lang'] = options.lang;
    c.root = headerElement;
    c._attachParser(new c.Parser());
    const opened = new Promise<unknown>((resolve, reject) => {
      const done = (settle: () => void) => {
        clearTimeout(timer);
        c.off('open', onOpen);
        c.off('error', onError);
        settle();
      };
      const onOpen = (el: unknown) => done(() => resolve(el));
      const onError = (err: unknown) => done(() => reject(err));
      const timer = setTimeout(() => onError(Object.assign(new Error('timeout'), { name: 'TimeoutError' })), c.timeout);
      c.on('open', onOpen);
      c.on('error', onError);
    });
    opened.catch(() => undefined);
    await c.write(c.header(headerElement));
    return opened;
  };
}

/**
 * @xmpp/client 0.14.0 (the latest release) feeds every 'data' event of its sockets to its XML
 * parser, which it sets to null once the stream has ended, and after STARTTLS it stays subscribed
 * to the plain socket under the TLS one. Bytes that reach it after the end (the stack shows them
 * coming from the plain socket, TCP.onStreamRead: the TLS layer was gone) throw a TypeError out of
 * the event handler, "Cannot read properties of null (reading 'write')", an uncaught exception in
 * the test process. Seen in one of seven suite runs, and in one of five runs of
 * admin-commands.test.ts beside two cluster tests (none in 25 runs alone). xmpp.js dropped such
 * data upstream after 0.14.0 (#1100, "Do not throw on socket data if stream parser is null");
 * this is that change, until a release has it.
 */
function dropDataAfterStreamEnd(client: XmppClient): void {
  const c = client as unknown as { parser: unknown; _onData(data: Buffer): void };
  const onData = c._onData;
  // Bound when the first socket is attached (connect), so set before.
  c._onData = function (this: typeof c, data: Buffer) {
    if (this.parser) onData.call(this, data);
  };
}

/** What every test client gets: the fixes above for the library's own races. */
export function mendLibraryRaces(client: XmppClient): void {
  listenBeforeOpening(client);
  dropDataAfterStreamEnd(client);
}

/** A real @xmpp/client, logged in and bound (errors are swallowed: tests assert on behaviour). */
export async function connectClient(opts: ConnectOptions): Promise<XmppClient> {
  const client = xmppClient({
    service: opts.service,
    domain: opts.domain,
    timeout: CLIENT_TIMEOUT_MS,
    resource: opts.resource,
    credentials: async (authenticate: (c: object, m: string) => Promise<void>, mechanisms: string[]) => {
      const mechanism = opts.mechanism ?? 'SCRAM-SHA-1';
      if (!mechanisms.includes(mechanism)) throw new Error(`${mechanism} not offered: ${mechanisms.join(',')}`);
      await authenticate({ username: opts.local, password: opts.password }, mechanism);
    },
  });
  if (!opts.sasl2) withoutSasl2(client);
  mendLibraryRaces(client);
  client.on('error', () => undefined);
  // Tests reconnect on purpose; automatic reconnection would hide what they check.
  client.reconnect.stop();
  await client.start();
  if (opts.presence ?? true) {
    // RFC 6121 §4.2.2: the server echoes initial presence to the sender once it has processed it.
    const echoed = new Promise<void>((resolve) => {
      const onStanza = (stanza: { is(name: string): boolean; attrs: Record<string, string> }) => {
        if (stanza.is('presence') && stanza.attrs.from === client.jid?.toString() && !stanza.attrs.type) {
          client.off('stanza', onStanza);
          resolve();
        }
      };
      client.on('stanza', onStanza);
    });
    await client.send(xml('presence'));
    await echoed;
  }
  return client;
}

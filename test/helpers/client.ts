import { client as xmppClient, xml } from '@xmpp/client';

// Test servers use a self-signed certificate generated on first start.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

export type XmppClient = ReturnType<typeof xmppClient>;

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

/** A real @xmpp/client, logged in and bound (errors are swallowed: tests assert on behaviour). */
export async function connectClient(opts: ConnectOptions): Promise<XmppClient> {
  const client = xmppClient({
    service: opts.service,
    domain: opts.domain,
    resource: opts.resource,
    credentials: async (authenticate: (c: object, m: string) => Promise<void>, mechanisms: string[]) => {
      const mechanism = opts.mechanism ?? 'SCRAM-SHA-1';
      if (!mechanisms.includes(mechanism)) throw new Error(`${mechanism} not offered: ${mechanisms.join(',')}`);
      await authenticate({ username: opts.local, password: opts.password }, mechanism);
    },
  });
  if (!opts.sasl2) withoutSasl2(client);
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

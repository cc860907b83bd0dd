import { client as xmppClient, xml } from '@xmpp/client';
import { PASSWORD } from './server';
import { CLIENT_TIMEOUT_MS, mendLibraryRaces, type XmppClient } from './client';

export type FastToken = { mechanism: string; token: string; expiry: string };
type Fast = { fetchToken(): Promise<FastToken | undefined>; saveToken(t: FastToken): Promise<void>; deleteToken(): Promise<void> };

/**
 * A device as an app builds it on @xmpp/client with its defaults (SASL2, Bind2, FAST, XEP-0198
 * inline): a user-agent id and a FAST token store that outlive one connection, as an app persists
 * them. Each connect() is a new client, as after an app restart.
 */
export class Device {
  token?: FastToken;
  readonly clients: XmppClient[] = [];
  readonly id = crypto.randomUUID();

  constructor(private readonly domain: string, private readonly local: string, private readonly resource = 'phone') {}

  /** Logs in at `service` (xmpp://, xmpps:// or ws://): with the token when it has one, else the password. */
  async connect(service: string, password = PASSWORD): Promise<XmppClient> {
    const client = xmppClient({
      service,
      domain: this.domain,
      timeout: CLIENT_TIMEOUT_MS,
      username: this.local,
      password,
      resource: this.resource,
      userAgent: xml('user-agent', { id: this.id }, xml('software', {}, 'tests')),
    });
    client.on('error', () => undefined);
    client.reconnect.stop();
    mendLibraryRaces(client);
    const fast = (client as unknown as { fast: Fast }).fast;
    fast.fetchToken = async () => this.token;
    fast.saveToken = async (token) => {
      this.token = token;
    };
    fast.deleteToken = async () => {
      this.token = undefined;
    };
    this.clients.push(client);
    await client.start();
    return client;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.stop().catch(() => undefined)));
  }
}

import * as XMPP from 'stanza';
import { PASSWORD, type TestServer } from './server';

type Test = { teardown(fn: () => unknown): void };

/** A StanzaJS client (the library browser apps use). */
export type StanzaClient = XMPP.Agent;

export interface StanzaLoginOptions {
  resource?: string;
  password?: string;
  /** Send initial presence after the session starts [true]. */
  presence?: boolean;
}

/** The URL of the node's WebSocket or BOSH endpoint, as a browser client would be configured. */
export function stanzaUrl(server: TestServer, transport: 'websocket' | 'bosh'): string {
  return transport === 'websocket' ? `ws://127.0.0.1:${server.wsPort}/xmpp-websocket` : `http://127.0.0.1:${server.boshPort}/http-bind`;
}

/** A StanzaJS client logged in over WebSocket or BOSH only; disconnected at teardown. */
export async function stanzaLogin(t: Test, server: TestServer, local: string, transport: 'websocket' | 'bosh', opts: StanzaLoginOptions = {}): Promise<StanzaClient> {
  const client = XMPP.createClient({
    jid: `${local}@${server.domain}`,
    password: opts.password ?? PASSWORD,
    resource: opts.resource,
    transports: { websocket: false, bosh: false, [transport]: stanzaUrl(server, transport) },
    useStreamManagement: false,
  });
  t.teardown(() => stanzaStop(client));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${transport} login timed out`)), 10000);
    client.once('session:started', () => {
      clearTimeout(timer);
      resolve();
    });
    client.once('auth:failed' as 'session:end', () => {
      clearTimeout(timer);
      reject(new Error('not-authorized'));
    });
    client.connect();
  });
  if (opts.presence ?? true) client.sendPresence();
  return client;
}

const stopped = new WeakSet<StanzaClient>();

/** Disconnects cleanly (resolves once the transport is gone, or after 3 s); a second call does nothing. */
export async function stanzaStop(client: StanzaClient): Promise<void> {
  if (!client.transport || stopped.has(client)) return;
  stopped.add(client);
  const gone = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    client.once('--transport-disconnected', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  client.disconnect();
  await gone;
}

/** Resolves with the next `event` the client emits whose payload matches (rejects after `ms`). */
export function nextEvent<T = XMPP.Stanzas.ReceivedMessage & XMPP.Stanzas.ReceivedPresence>(
  client: StanzaClient,
  event: 'message' | 'presence' | 'available' | 'unavailable' | 'roster:update',
  predicate: (payload: T) => boolean = () => true,
  ms = 5000,
): Promise<T> {
  const emitter = client as unknown as { on(e: string, f: (p: T) => void): void; off(e: string, f: (p: T) => void): void };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out waiting for ${event}`));
    }, ms);
    const handler = (payload: T) => {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(payload);
    };
    emitter.on(event, handler);
  });
}

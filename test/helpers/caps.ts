import { createHash } from 'node:crypto';
import type { Element } from 'ltx';
import { nextStanza, xml, type XmppClient } from './server';

/** A client's side of XEP-0115 entity capabilities, computed here independently of the server. */

export const CAPS = 'http://jabber.org/protocol/caps';
export const DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const CAPS_NODE = 'https://example.org/test-client';

export interface ClientIdentity {
  category: string;
  type: string;
  name?: string;
}

const DEFAULT_IDENTITY: ClientIdentity = { category: 'client', type: 'pc', name: 'Test client' };

/** XEP-0115 §5.1 (no forms): identities "category/type/lang/name<", then features "var<", SHA-1, base64. */
export function capsVer(features: string[], identities: ClientIdentity[] = [DEFAULT_IDENTITY]): string {
  const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  const ids = identities.map((i) => `${i.category}/${i.type}//${i.name ?? ''}`).sort(byBytes);
  const s = ids.map((i) => `${i}<`).join('') + [...features].sort(byBytes).map((f) => `${f}<`).join('');
  return createHash('sha1').update(s, 'utf8').digest('base64');
}

export interface AnnouncedCaps {
  ver: string;
  /** How many disco#info queries for the caps node the server has sent this client. */
  queries(): number;
  /** Resolves when the server has queried the caps node once (it does so for an unknown ver). */
  queried: Promise<void>;
}

/**
 * Makes the client answer disco#info (as a real client does, for its caps node too) and sends
 * available presence with a `<c/>` element for `features`. `ver` overrides the computed hash (to
 * announce a lie).
 */
export async function announceCaps(client: XmppClient, features: string[], opts: { ver?: string; priority?: number } = {}): Promise<AnnouncedCaps> {
  const all = [DISCO_INFO, CAPS, ...features];
  const ver = opts.ver ?? capsVer(all);
  let count = 0;
  let resolveQueried!: () => void;
  const queried = new Promise<void>((resolve) => (resolveQueried = resolve));
  client.iqCallee.get(DISCO_INFO, 'query', (ctx: { element: Element }) => {
    const node = ctx.element.attrs.node as string | undefined;
    if (node === `${CAPS_NODE}#${ver}`) {
      count++;
      resolveQueried();
    }
    return xml(
      'query',
      node ? { xmlns: DISCO_INFO, node } : { xmlns: DISCO_INFO },
      xml('identity', { category: DEFAULT_IDENTITY.category, type: DEFAULT_IDENTITY.type, name: DEFAULT_IDENTITY.name! }),
      ...all.map((f) => xml('feature', { var: f })),
    );
  });
  const children = [xml('c', { xmlns: CAPS, hash: 'sha-1', node: CAPS_NODE, ver })];
  if (opts.priority !== undefined) children.push(xml('priority', {}, String(opts.priority)));
  // RFC 6121 §4.2.2: the server echoes initial presence once it has processed it.
  const echoed = nextStanza(client, (s) => s.is('presence') && s.attrs.from === client.jid?.toString() && !s.attrs.type);
  await client.send(xml('presence', {}, ...children));
  await echoed;
  return { ver, queries: () => count, queried };
}

import type { Element } from 'ltx';
import type { TestServer, XmppClient } from './server';
import { nextStanza, xml } from './server';

/** Helpers for RFC 6121 scenarios: rosters, roster pushes and presence, as a client sees them. */

export const ROSTER = 'jabber:iq:roster';

/** A roster get; resolves with the whole <iq type='result'/> (it may have no <query/>, RFC 6121 §2.6.3). */
export function rosterGet(client: XmppClient, ver?: string): Promise<Element> {
  return client.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: ROSTER, ...(ver === undefined ? {} : { ver }) })));
}

/** The roster's items, by JID. */
export async function rosterItems(client: XmppClient): Promise<Map<string, Element>> {
  const result = await rosterGet(client);
  const items = new Map<string, Element>();
  for (const item of result.getChild('query', ROSTER)?.getChildren('item') ?? []) items.set(item.attrs.jid, item);
  return items;
}

/** A roster set of one item (or whatever `items` holds); resolves with the result, rejects with the error. */
export function rosterSet(client: XmppClient, ...items: Element[]): Promise<Element> {
  return client.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: ROSTER }, ...items)));
}

export function item(jid: string, attrs: Record<string, string> = {}, groups: string[] = []): Element {
  return xml('item', { jid, ...attrs }, ...groups.map((g) => xml('group', {}, g)));
}

/** The item of a roster push about `jid` (RFC 6121 §2.1.6), if `stanza` is one. */
export function pushedItem(stanza: Element, jid: string): Element | undefined {
  if (!stanza.is('iq') || stanza.attrs.type !== 'set') return undefined;
  const found = stanza.getChild('query', ROSTER)?.getChild('item');
  return found?.attrs.jid === jid ? found : undefined;
}

/** Resolves with the item of the next roster push about `jid` that satisfies `check`. */
export async function nextPush(client: XmppClient, jid: string, check: (item: Element) => boolean = () => true, ms?: number): Promise<Element> {
  const push = await nextStanza(client, (s) => {
    const found = pushedItem(s, jid);
    return found !== undefined && check(found);
  }, ms);
  return pushedItem(push, jid)!;
}

/** A predicate for a presence stanza from `from` (bare or full, compared exactly) of `type` (undefined: available). */
export function presenceFrom(from: string, type?: string): (s: Element) => boolean {
  return (s) => s.is('presence') && s.attrs.from === from && s.attrs.type === type;
}

/** Stanzas in `seen` that are presence from `from` (bare JID: any of its resources). */
export function presencesFrom(seen: Element[], from: string, type?: string): Element[] {
  return seen.filter((s) => s.is('presence') && (s.attrs.from === from || s.attrs.from?.startsWith(`${from}/`)) && s.attrs.type === type);
}

/** Writes a roster item straight into storage: a quick way to set up a subscription state. */
export function seedItem(server: TestServer, user: string, contact: string, subscription: 'none' | 'to' | 'from' | 'both', extra: { ask?: boolean; name?: string } = {}): Promise<void> {
  return server.node.storage.roster.setItem(`${user}@${server.domain}`, { jid: `${contact}@${server.domain}`, subscription, groups: [], ...extra });
}

/** A mutual ('both') subscription between two users, written into storage. */
export async function seedMutual(server: TestServer, a: string, b: string): Promise<void> {
  await seedItem(server, a, b, 'both');
  await seedItem(server, b, a, 'both');
}

/** The condition of a rejected IQ request (the StanzaError @xmpp/client throws). */
export async function iqErrorCondition(request: Promise<unknown>): Promise<string> {
  try {
    await request;
  } catch (err) {
    return (err as { condition?: string }).condition ?? String(err);
  }
  return 'no error';
}

/** Drops the client's TCP connection without a closing stream tag (and stops it from reconnecting). */
export function dropConnection(client: XmppClient): void {
  const c = client as unknown as { reconnect: { stop(): void }; socket: { socket?: { destroy(): void }; destroy?: () => void } };
  c.reconnect.stop();
  const socket = c.socket.socket ?? c.socket;
  (socket as { destroy(): void }).destroy();
}

/** Polls `check` until it holds (rejects after `ms`): for state that no stanza announces, like a database row. */
export async function waitUntil(check: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

import { Element } from 'ltx';
import type { RosterItem, Storage } from '../storage/types';
import { NS } from '../xml/ns';
import { RosterCache } from './roster-cache';
import type { SessionManager } from './session-manager';
import { LOCAL_ONLY, type RemoteDelivery } from './remote-delivery';

/**
 * The roster as RFC 6121 §2 sees it: storage plus roster pushes to interested resources. Rosters
 * of users with a session here are read from memory (RosterCache), so presence broadcasts and
 * probes cost no query; every roster write goes through set() and remove(), or calls forget().
 */
export class RosterService {
  private readonly cache: RosterCache;

  constructor(
    private readonly storage: Storage,
    private readonly sessions: SessionManager,
    private readonly remote: RemoteDelivery = LOCAL_ONLY,
  ) {
    this.cache = new RosterCache(storage.roster, sessions);
  }

  /** The user's items (frozen: copy one before changing it). */
  async items(user: string): Promise<RosterItem[]> {
    const cached = this.cache.items(user);
    return cached ? [...(await cached).values()] : this.storage.roster.getItems(user);
  }

  async item(user: string, contact: string): Promise<RosterItem | undefined> {
    const cached = this.cache.items(user);
    return cached ? (await cached).get(contact) : this.storage.roster.getItem(user, contact);
  }

  version(user: string): Promise<string> {
    return this.storage.roster.getVersion(user);
  }

  /** Stores an item and pushes it (RFC 6121 §2.1.6) to every interested resource. */
  async set(user: string, item: RosterItem): Promise<void> {
    await this.cache.write(user, () => this.storage.roster.setItem(user, item), { set: item });
    this.push(user, itemElement(item), await this.storage.roster.getVersion(user));
  }

  /** Removes an item and pushes subscription='remove'. */
  async remove(user: string, contact: string): Promise<boolean> {
    const removed = await this.cache.write(user, () => this.storage.roster.removeItem(user, contact), { remove: contact });
    if (removed) {
      this.push(user, new Element('item', { jid: contact, subscription: 'remove' }), await this.storage.roster.getVersion(user));
    }
    return removed;
  }

  /** RFC 6121 §2.1.6: the push goes to every interested resource, on every node. */
  private push(user: string, item: Element, ver: string): void {
    const query = new Element('query', { xmlns: NS.ROSTER, ver });
    query.cnode(item);
    this.pushToResources(user, query);
    this.remote.rosterPush(user, query);
  }

  /**
   * A peer changed `user`'s roster (already stored) and sends its push here. The cached copy is
   * dropped rather than patched: pushes from several peers may arrive in another order than their
   * writes were stored.
   */
  pushHere(user: string, query: Element): void {
    this.cache.forget(user);
    this.pushToResources(user, query);
  }

  /** Drops the cached roster of `user` after a write that bypasses set() and remove() (account deletion). */
  forget(user: string): void {
    this.cache.forget(user);
  }

  /** Pushes a roster <query/> to this node's interested resources of `user`. */
  private pushToResources(user: string, query: Element): void {
    const item = query.getChild('item');
    if (!item) return;
    for (const session of this.sessions.resources(user)) {
      if (!session.interested) continue;
      const push = new Element('iq', { type: 'set', id: `push-${Math.random().toString(36).slice(2, 10)}`, to: session.full });
      push.c('query', { xmlns: NS.ROSTER, ver: query.attrs.ver }).cnode(cloneItem(item));
      session.send(push);
    }
  }
}

/** The <item/> of a roster result or push (RFC 6121 §2.1.2). */
export function itemElement(item: RosterItem): Element {
  const attrs: Record<string, string> = { jid: item.jid, subscription: item.subscription };
  if (item.name) attrs.name = item.name;
  if (item.ask) attrs.ask = 'subscribe';
  if (item.approved) attrs.approved = 'true';
  const element = new Element('item', attrs);
  for (const group of item.groups) element.c('group').t(group);
  return element;
}

function cloneItem(item: Element): Element {
  const copy = new Element('item', { ...item.attrs });
  for (const group of item.getChildren('group')) copy.c('group').t(group.getText());
  return copy;
}

import { Element } from 'ltx';
import type { RosterItem, Storage } from '../storage/types';
import { NS } from '../xml/ns';
import type { SessionManager } from './session-manager';
import { LOCAL_ONLY, type RemoteDelivery } from './remote-delivery';

/** The roster as RFC 6121 §2 sees it: storage plus roster pushes to interested resources. */
export class RosterService {
  constructor(
    private readonly storage: Storage,
    private readonly sessions: SessionManager,
    private readonly remote: RemoteDelivery = LOCAL_ONLY,
  ) {}

  items(user: string): Promise<RosterItem[]> {
    return this.storage.roster.getItems(user);
  }

  item(user: string, contact: string): Promise<RosterItem | undefined> {
    return this.storage.roster.getItem(user, contact);
  }

  version(user: string): Promise<string> {
    return this.storage.roster.getVersion(user);
  }

  /** Stores an item and pushes it (RFC 6121 §2.1.6) to every interested resource. */
  async set(user: string, item: RosterItem): Promise<void> {
    await this.storage.roster.setItem(user, item);
    this.push(user, itemElement(item), await this.storage.roster.getVersion(user));
  }

  /** Removes an item and pushes subscription='remove'. */
  async remove(user: string, contact: string): Promise<boolean> {
    const removed = await this.storage.roster.removeItem(user, contact);
    if (removed) {
      this.push(user, new Element('item', { jid: contact, subscription: 'remove' }), await this.storage.roster.getVersion(user));
    }
    return removed;
  }

  /** RFC 6121 §2.1.6: the push goes to every interested resource, on every node. */
  private push(user: string, item: Element, ver: string): void {
    const query = new Element('query', { xmlns: NS.ROSTER, ver });
    query.cnode(item);
    this.pushHere(user, query);
    this.remote.rosterPush(user, query);
  }

  /** Pushes a roster <query/> to this node's interested resources of `user`. */
  pushHere(user: string, query: Element): void {
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

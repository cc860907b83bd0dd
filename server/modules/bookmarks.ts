import { Element, parse as parseXml } from 'ltx';
import { StanzaError } from '../errors';
import type { JID } from '../jid';
import type { Storage } from '../storage/types';
import { buildDataForm } from '../xml/data-form';
import { NS } from '../xml/ns';

/** XEP-0402 PEP native bookmarks: one item per room, its id the room's JID. */
export const BOOKMARKS = 'urn:xmpp:bookmarks:1';
/** XEP-0048 bookmarks, as older clients keep them: in private XML storage (XEP-0049), or as the one item of this PEP node (XEP-0223). */
export const LEGACY = 'storage:bookmarks';

/** Runs a pubsub request on the account's own PEP service, as the account (notifications included), in `node`'s turn. */
export type PepRequest = (account: JID, type: 'get' | 'set', payload: Element, node?: string) => Promise<Element | null>;

/**
 * XEP-0402 §5 compatibility (`urn:xmpp:bookmarks:1#compat`): what a client keeps in XEP-0048
 * private storage and what another keeps in XEP-0402 PEP bookmarks are the same bookmarks. A
 * private storage:bookmarks write is published to (and retracted from) the PEP node, so newer
 * clients and the account's other devices see it; a publish or retract on the PEP node rewrites
 * the private copy (keeping its <url/> bookmarks, which XEP-0402 has no place for).
 */
export class BookmarksCompat {
  constructor(private readonly storage: Storage, private readonly pep: PepRequest) {}

  /** XEP-0048 → XEP-0402, after `storage` was stored as the account's private storage:bookmarks. */
  async fromPrivate(account: JID, stored: Element): Promise<void> {
    const wanted = new Map<string, Element>();
    for (const conference of stored.getChildren('conference')) {
      const jid = String(conference.attrs.jid ?? '').trim();
      if (jid) wanted.set(jid, conference);
    }
    const existing = await this.items(account);
    for (const [jid, conference] of wanted) {
      const item = new Element('item', { id: jid });
      const native = item.c('conference', { xmlns: BOOKMARKS, autojoin: isTrue(conference.attrs.autojoin) ? 'true' : 'false' });
      if (conference.attrs.name) native.attrs.name = conference.attrs.name;
      const nick = conference.getChildText('nick');
      if (nick) native.c('nick').t(nick);
      const password = conference.getChildText('password');
      if (password) native.c('password').t(password);
      const current = existing.get(jid);
      if (current && sameConference(current, native)) continue;
      const pubsub = new Element('pubsub', { xmlns: NS.PUBSUB });
      pubsub.c('publish', { node: BOOKMARKS }).cnode(item);
      pubsub.c('publish-options').cnode(buildDataForm('submit', 'http://jabber.org/protocol/pubsub#publish-options', [
        { var: 'pubsub#persist_items', values: ['true'] },
        { var: 'pubsub#max_items', values: ['max'] },
        { var: 'pubsub#send_last_published_item', values: ['never'] },
        { var: 'pubsub#access_model', values: ['whitelist'] },
      ]));
      await this.pep(account, 'set', pubsub);
    }
    for (const jid of existing.keys()) {
      if (wanted.has(jid)) continue;
      const pubsub = new Element('pubsub', { xmlns: NS.PUBSUB });
      pubsub.c('retract', { node: BOOKMARKS, notify: 'true' }).c('item', { id: jid });
      await this.pep(account, 'set', pubsub);
    }
  }

  /** XEP-0048 in PEP → XEP-0402 and private storage, after the account published its storage:bookmarks item. */
  async fromLegacyPep(account: JID): Promise<void> {
    const legacy = await this.legacyPepItem(account);
    if (!legacy) return;
    await this.fromPrivate(account, legacy);
    await this.toPrivate(account);
  }

  /** XEP-0402 → XEP-0048, after a publish or retract on the account's bookmarks node. */
  async toPrivate(account: JID): Promise<void> {
    const user = account.bareString();
    const before = await this.storage.privateXml.get(user, LEGACY);
    const stored = new Element('storage', { xmlns: LEGACY });
    for (const [jid, conference] of await this.items(account)) {
      const legacy = stored.c('conference', { jid, autojoin: isTrue(conference.attrs.autojoin) ? 'true' : 'false' });
      if (conference.attrs.name) legacy.attrs.name = conference.attrs.name;
      const nick = conference.getChildText('nick');
      if (nick) legacy.c('nick').t(nick);
      const password = conference.getChildText('password');
      if (password) legacy.c('password').t(password);
    }
    if (before) for (const url of (parseXml(before) as Element).getChildren('url')) stored.cnode(url);
    await this.storage.privateXml.set(user, LEGACY, stored.toString());
    // #compat-pep: a client that keeps XEP-0048 bookmarks in PEP finds them there too (if it ever did).
    if ((await this.legacyPepItem(account)) !== undefined) {
      const pubsub = new Element('pubsub', { xmlns: NS.PUBSUB });
      pubsub.c('publish', { node: LEGACY }).c('item', { id: 'current' }).cnode(stored);
      pubsub.c('publish-options').cnode(buildDataForm('submit', 'http://jabber.org/protocol/pubsub#publish-options', [
        { var: 'pubsub#persist_items', values: ['true'] },
        { var: 'pubsub#access_model', values: ['whitelist'] },
      ]));
      await this.pep(account, 'set', pubsub);
    }
  }

  /** The <storage/> of the account's XEP-0048 PEP node, undefined when there is no such node. */
  private async legacyPepItem(account: JID): Promise<Element | undefined> {
    const pubsub = new Element('pubsub', { xmlns: NS.PUBSUB });
    pubsub.c('items', { node: LEGACY });
    try {
      const reply = await this.pep(account, 'get', pubsub, LEGACY);
      return reply?.getChild('items')?.getChildren('item').at(-1)?.getChild('storage', LEGACY) ?? new Element('storage', { xmlns: LEGACY });
    } catch (err) {
      if (err instanceof StanzaError && err.condition === 'item-not-found') return undefined;
      throw err;
    }
  }

  /** The account's XEP-0402 bookmarks: room JID → <conference/>. */
  private async items(account: JID): Promise<Map<string, Element>> {
    const pubsub = new Element('pubsub', { xmlns: NS.PUBSUB });
    pubsub.c('items', { node: BOOKMARKS });
    let reply: Element | null;
    try {
      reply = await this.pep(account, 'get', pubsub);
    } catch (err) {
      if (err instanceof StanzaError && err.condition === 'item-not-found') return new Map();
      throw err;
    }
    const out = new Map<string, Element>();
    for (const item of reply?.getChild('items')?.getChildren('item') ?? []) {
      const conference = item.getChild('conference', BOOKMARKS);
      if (item.attrs.id && conference) out.set(String(item.attrs.id), conference);
    }
    return out;
  }
}

function isTrue(value: unknown): boolean {
  return value === 'true' || value === '1';
}

function sameConference(a: Element, b: Element): boolean {
  const view = (c: Element) => [c.attrs.name ?? '', isTrue(c.attrs.autojoin), c.getChildText('nick') ?? '', c.getChildText('password') ?? ''].join('\u0000');
  return view(a) === view(b);
}

import { Element } from 'ltx';
import { StanzaError } from '../errors';
import { tryParseJID } from '../jid';
import { itemElement } from '../sm/roster-service';
import type { RosterItem } from '../storage/types';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/** Longest roster item name or group name we keep, in characters [1024]. */
const MAX_NAME_LENGTH = 1024;
/** Most groups on one roster item [64]. */
const MAX_GROUPS = 64;

/** RFC 6121 §2: roster get, set and remove, with versioning (§2.6) and pushes. */
export const roster: ServerModule = ({ router, roster: rosters, presence, storage }) => {
  router.feature('account', NS.ROSTER);

  router.iq('get', 'account', NS.ROSTER, 'query', async ({ payload, self, session, to }) => {
    // §2.1.3: only the user may read the roster.
    if (!self) throw new StanzaError('forbidden');
    if (session) session.interested = true;
    const user = to.bareString();
    const ver = await rosters.version(user);
    // §2.6.3: the client's copy is current: an empty result, pushes follow for later changes.
    if (payload.attrs.ver !== undefined && payload.attrs.ver === ver) return null;
    const query = new Element('query', { xmlns: NS.ROSTER, ver });
    for (const item of await rosters.items(user)) query.cnode(itemElement(item));
    return query;
  });

  router.iq('set', 'account', NS.ROSTER, 'query', async ({ payload, self, to, from }) => {
    if (!self) throw new StanzaError('forbidden');
    const items = payload.getChildren('item');
    // §2.3.3: "contains more than one <item/> child element" -> bad-request.
    if (items.length !== 1 || payload.getChildElements().length !== 1) throw new StanzaError('bad-request', 'exactly one item');
    const element = items[0];
    const contact = tryParseJID(element.attrs.jid ?? '');
    if (!contact) throw new StanzaError('bad-request', 'the item needs a valid jid');
    const user = to.bareString();
    const contactJid = contact.toString();
    if (contactJid === user) throw new StanzaError('not-allowed', 'you cannot add yourself');

    if (element.attrs.subscription === 'remove') {
      const existing = await rosters.item(user, contactJid);
      if (!existing) throw new StanzaError('item-not-found');
      const hadPendingIn = await storage.roster.removePendingIn(user, contactJid);
      await rosters.remove(user, contactJid);
      // §2.5.2: removing an item cancels the subscriptions both ways (unavailable presence first),
      // one after the other so that the contact's roster ends at 'none'.
      await presence.rosterItemRemoved(from.bare(), existing, hadPendingIn);
      return null;
    }

    const name: string | undefined = element.attrs.name;
    if (name !== undefined && name.length > MAX_NAME_LENGTH) throw new StanzaError('not-acceptable', 'name too long');
    const groups = element.getChildren('group').map((g) => g.getText());
    // §2.3.3: empty group names are not-acceptable; a group listed twice is bad-request.
    if (groups.some((g) => g.length === 0 || g.length > MAX_NAME_LENGTH)) throw new StanzaError('not-acceptable', 'empty or too long group name');
    if (new Set(groups).size !== groups.length) throw new StanzaError('bad-request', 'duplicate group');
    if (groups.length > MAX_GROUPS) throw new StanzaError('not-acceptable', 'too many groups');

    // §2.1.2: subscription and ask are the server's business; a client cannot set them.
    const existing = await rosters.item(user, contactJid);
    const item: RosterItem = {
      jid: contactJid,
      name: name || undefined,
      subscription: existing?.subscription ?? 'none',
      ask: existing?.ask,
      approved: existing?.approved,
      groups,
    };
    await rosters.set(user, item);
    return null;
  });
};

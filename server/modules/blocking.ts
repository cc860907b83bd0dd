import { Element } from 'ltx';
import { StanzaError } from '../errors';
import { tryParseJID, type JID } from '../jid';
import { cloneElement } from '../router';
import type { Session } from '../sm/session';
import { STORAGE_LIMITS } from '../storage/limits';
import { UserCache } from '../sm/user-cache';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/**
 * XEP-0191 blocking command. Block lists are cached in memory (see UserCache), so checking a
 * stanza costs no database query on the way to an online user, here or on another node.
 */
export const blocking: ServerModule = (ctx) => {
  const { router, storage, sessions, roster, remote } = ctx;
  // Cached per user, no database query per stanza (see UserCache).
  const lists = new UserCache<ReadonlySet<string>>(sessions, async (user) => new Set(await storage.blocks.list(user)));
  let pushes = 0;
  router.feature('host', NS.BLOCKING);

  /** §3.3/§3.4: every resource here that asked for the list learns of the change. */
  function pushHere(user: string, command: Element): void {
    const id = `blocking-push-${++pushes}`;
    for (const resource of sessions.resources(user)) {
      if (!resource.blocklistInterested) continue;
      const push = new Element('iq', { type: 'set', id, to: resource.full });
      push.cnode(cloneElement(command));
      resource.send(push);
    }
  }

  // In a cluster, the other nodes drop their cached copy and push to their resources.
  ctx.blocklistChangedHere = (user, command) => {
    lists.forget(user);
    pushHere(user, command);
  };

  /**
   * Sends, from every available resource of `user`, `presenceFor(resource)` to each entity matching
   * `affected` that may see the user's presence: a contact with a subscription to it, or one the
   * resource sent directed presence to (XEP-0191 §3.3/§3.4: "but only if the contact is allowed to
   * receive presence notifications from the user").
   */
  async function presenceTo(user: string, affected: ReadonlySet<string>, presenceFor: (resource: Session) => Element | undefined, skip?: ReadonlySet<string>) {
    const resources = sessions.resources(user).filter((s) => s.available);
    if (resources.length === 0 || affected.size === 0) return;
    const subscribers = (await roster.items(user)).filter((i) => i.subscription === 'from' || i.subscription === 'both').map((i) => i.jid);
    const sends: Promise<void>[] = [];
    for (const resource of resources) {
      const stanza = presenceFor(resource);
      if (!stanza) continue;
      for (const target of new Set([...subscribers, ...resource.directedPresence])) {
        const jid = tryParseJID(target);
        if (!jid || !matches(affected, jid) || (skip && matches(skip, jid))) continue;
        // Without federation only local users and components can be told.
        if (!router.reaches(jid.domain)) continue;
        const copy = cloneElement(stanza);
        copy.attrs.from = resource.full;
        copy.attrs.to = target;
        sends.push(router.route(copy, resource.jid, jid));
      }
    }
    await Promise.all(sends);
  }

  router.iq('get', 'account', NS.BLOCKING, 'blocklist', async ({ self, session, to }) => {
    if (!self) throw new StanzaError('forbidden');
    if (session) session.blocklistInterested = true;
    const result = new Element('blocklist', { xmlns: NS.BLOCKING });
    for (const jid of [...(await lists.get(to.bareString()))].sort()) result.c('item', { jid });
    return result;
  });

  for (const command of ['block', 'unblock'] as const) {
    router.iq('set', 'account', NS.BLOCKING, command, async ({ payload, self, to }) => {
      if (!self) throw new StanzaError('forbidden');
      const user = to.bareString();
      const jids = payload.getChildren('item').map((item) => {
        const jid = tryParseJID(item.attrs.jid ?? '');
        if (!jid) throw new StanzaError('jid-malformed', `not a JID: ${item.attrs.jid ?? ''}`);
        if ([...jid.toString()].length > STORAGE_LIMITS.jid) throw new StanzaError('not-acceptable', `JIDs longer than ${STORAGE_LIMITS.jid} characters cannot be blocked`);
        return jid.toString();
      });
      // XEP-0191 §3.3: a block needs at least one item; §3.5: an unblock without items unblocks everyone.
      if (command === 'block' && jids.length === 0) throw new StanzaError('bad-request', 'nothing to block');
      if (command === 'block') {
        // §3.3: "the user's server MUST send unavailable presence information to the contact";
        // sent before the block is stored, since from then on the filter below stops it.
        await presenceTo(user, new Set(jids), () => new Element('presence', { type: 'unavailable' }), await lists.get(user));
        await storage.blocks.add(user, jids);
        lists.forget(user);
      } else {
        const unblocked = new Set(jids.length === 0 ? await storage.blocks.list(user) : jids);
        if (jids.length === 0) await storage.blocks.clear(user);
        else await storage.blocks.remove(user, jids);
        lists.forget(user);
        // §3.4: "the user's server MUST send the user's current presence information to the contact"
        // (unless another item still blocks it).
        await presenceTo(user, unblocked, (resource) => resource.presence, await lists.get(user));
      }
      const change = new Element(command, { xmlns: NS.BLOCKING });
      for (const jid of jids) change.c('item', { jid });
      pushHere(user, change);
      remote.blocklistChanged(user, change);
      return null;
    });
  }

  // §3.5: nothing from a blocked entity reaches the user; messages and requests get an error.
  router.addInboundFilter(async (stanza, from, to) => {
    if (from.local === to.local && from.domain === to.domain) return undefined;
    const type = stanza.attrs.type as string | undefined;
    // Availability presence to a user with no session here is dropped by delivery anyway: no lookup.
    if (stanza.name === 'presence' && (type === undefined || type === 'unavailable') && !sessions.hasSessions(to.bareString())) {
      return undefined;
    }
    if (type === 'error' || type === 'result') {
      if (matches(await lists.get(to.bareString()), from)) return 'drop';
    } else if (matches(await lists.get(to.bareString()), from)) {
      return stanza.name === 'presence' ? 'drop' : new StanzaError('service-unavailable');
    }
    // §3.3: the user's own presence does not go out to those it blocks (broadcasts, probe answers).
    if (stanza.name === 'presence' && from.local && sessions.hasSessions(from.bareString())) {
      if (matches(await lists.get(from.bareString()), to)) return 'drop';
    }
    return undefined;
  });

  // §3.6: the user cannot send to whom it blocks.
  router.addOutboundFilter(async (session, stanza, to) => {
    if (!to || !matches(await lists.get(session.bare), to)) return undefined;
    if (stanza.name === 'presence') return 'drop';
    return new StanzaError('not-acceptable', 'you have blocked this contact', 'cancel', new Element('blocked', { xmlns: NS.BLOCKING_ERRORS }));
  });
};

/**
 * XEP-0191 §4 (after XEP-0016 §2.1): an item blocks its full JID, bare JID, domain/resource, or a
 * domain: "the domain itself matches, as does any user@domain, domain/resource, or address
 * containing a subdomain".
 */
function matches(list: ReadonlySet<string>, jid: JID): boolean {
  if (list.size === 0) return false;
  if (list.has(jid.toString()) || (jid.local !== '' && list.has(jid.bareString())) || (jid.resource !== '' && list.has(`${jid.domain}/${jid.resource}`))) {
    return true;
  }
  for (let domain = jid.domain; ; domain = domain.slice(domain.indexOf('.') + 1)) {
    if (list.has(domain)) return true;
    if (!domain.includes('.')) return false;
  }
}


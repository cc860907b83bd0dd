import { Element } from 'ltx';
import { StanzaError } from '../errors';
import { tryParseJID, type JID } from '../jid';
import type { Storage } from '../storage/types';
import type { SessionManager } from '../sm/session-manager';
import { NS } from '../xml/ns';
import type { ServerModule } from './module';

/**
 * XEP-0191 blocking command. Lists of users with sessions on this node are cached in memory, so
 * checking a stanza to an online user costs no database query.
 */
export const blocking: ServerModule = ({ router, storage, sessions }) => {
  const lists = new BlockLists(storage, sessions);
  router.feature('host', NS.BLOCKING);

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
        return jid.toString();
      });
      // XEP-0191 §3.2: a block needs at least one item; an unblock without items unblocks everyone.
      if (command === 'block' && jids.length === 0) throw new StanzaError('bad-request', 'nothing to block');
      if (command === 'block') {
        await storage.blocks.add(user, jids);
        // §3.3: the blocked entities stop seeing the user's presence.
        for (const resource of sessions.resources(user)) {
          if (!resource.available) continue;
          for (const jid of jids) {
            const target = tryParseJID(jid)!;
            if (router.hosts.has(target.domain) && target.local) {
              void router.route(new Element('presence', { type: 'unavailable', from: resource.full, to: jid }), resource.jid, target);
            }
          }
        }
      } else if (jids.length === 0) {
        await storage.blocks.clear(user);
      } else {
        await storage.blocks.remove(user, jids);
      }
      lists.forget(user);
      // §3.3/§3.4: every resource that asked for the list learns of the change.
      for (const resource of sessions.resources(user)) {
        if (!resource.blocklistInterested) continue;
        const push = new Element('iq', { type: 'set', id: `block-${Date.now().toString(36)}`, to: resource.full });
        const body = push.c(command, { xmlns: NS.BLOCKING });
        for (const jid of jids) body.c('item', { jid });
        resource.send(push);
      }
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

/** XEP-0191 §3.7 (after XEP-0016 §2.1): an item blocks its full JID, bare JID, domain/resource or domain. */
function matches(list: ReadonlySet<string>, jid: JID): boolean {
  if (list.size === 0) return false;
  return (
    list.has(jid.toString()) ||
    (jid.local !== '' && list.has(jid.bareString())) ||
    (jid.resource !== '' && list.has(`${jid.domain}/${jid.resource}`)) ||
    list.has(jid.domain)
  );
}

class BlockLists {
  private readonly cache = new Map<string, Set<string>>();

  constructor(private readonly storage: Storage, private readonly sessions: SessionManager) {
    sessions.onEnd((session) => {
      if (this.sessions.resources(session.bare).every((s) => s === session)) this.cache.delete(session.bare);
    });
  }

  /** Cached only while the user has sessions here, so the cache never outlives its reason. */
  async get(user: string): Promise<ReadonlySet<string>> {
    const cached = this.cache.get(user);
    if (cached) return cached;
    const list = new Set(await this.storage.blocks.list(user));
    if (this.sessions.hasSessions(user)) this.cache.set(user, list);
    return list;
  }

  forget(user: string): void {
    this.cache.delete(user);
  }
}

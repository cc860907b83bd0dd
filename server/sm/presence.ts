import { Element, parse as parseXml } from 'ltx';
import { tryParseJID, type JID } from '../jid';
import type { Logger } from '../log';
import { cloneElement, type Router } from '../router';
import type { RosterItem, Storage, Subscription } from '../storage/types';
import type { RosterService } from './roster-service';
import type { Session } from './session';
import type { SessionManager } from './session-manager';
import { LOCAL_ONLY, type RemoteDelivery } from './remote-delivery';

type SubscriptionType = 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed';
const SUBSCRIPTION_TYPES = new Set<string>(['subscribe', 'subscribed', 'unsubscribe', 'unsubscribed']);

const hasFrom = (s: Subscription) => s === 'from' || s === 'both';
const hasTo = (s: Subscription) => s === 'to' || s === 'both';

/**
 * Hooks other parts run on every available presence a resource broadcasts (offline messages, for
 * one): `initial` for its first, `previousPriority` the priority before this one (0 when initial).
 */
export type AvailableListener = (session: Session, initial: boolean, previousPriority: number) => void | Promise<void>;

/**
 * Presence and subscriptions as RFC 6121 §3 and §4 describe them for one server: broadcast to
 * subscribers, probes, directed presence, and the subscription state machine with roster pushes.
 */
export class PresenceService {
  private readonly availableListeners: AvailableListener[] = [];
  private readonly remoteListeners: ((stanza: Element, from: JID, session: Session) => void)[] = [];

  constructor(
    private readonly router: Router,
    private readonly sessions: SessionManager,
    private readonly roster: RosterService,
    private readonly storage: Storage,
    private readonly logger: Logger,
    private readonly remote: RemoteDelivery = LOCAL_ONLY,
  ) {
    sessions.onEnd((session) => this.sessionEnded(session));
  }

  onAvailable(listener: AvailableListener): void {
    this.availableListeners.push(listener);
  }

  /**
   * `listener` sees the available and unavailable presence of other servers' entities as it is
   * delivered to a session on this node (one call per presence, with the first session it reached).
   */
  onRemotePresence(listener: (stanza: Element, from: JID, session: Session) => void): void {
    this.remoteListeners.push(listener);
  }

  /** Tells the listeners of a remote entity's presence that reached `session` here. */
  private seen(stanza: Element, session: Session): void {
    if (this.remoteListeners.length === 0) return;
    const type = stanza.attrs.type as string | undefined;
    if (type !== undefined && type !== 'unavailable') return;
    const from = tryParseJID(stanza.attrs.from ?? '');
    if (!from?.resource || this.router.serves(from.domain)) return;
    for (const listener of this.remoteListeners) listener(stanza, from, session);
  }

  // ---- outbound: from a local client ----

  async outbound(session: Session, stanza: Element, to: JID | undefined): Promise<void> {
    const type: string | undefined = stanza.attrs.type;
    if (type === 'probe') return; // RFC 6121 §4.3: probes are the server's business
    if (type && SUBSCRIPTION_TYPES.has(type)) {
      if (!to) return;
      // RFC 6121 §3.1.2: subscription requests are addressed to bare JIDs; the server stamps the bare from.
      stanza.attrs.to = to.bareString();
      stanza.attrs.from = session.bare;
      return this.outboundSubscription(session, type as SubscriptionType, stanza, to.bare());
    }
    if (type === 'error') {
      if (to) await this.router.route(stanza, session.jid, to);
      return;
    }
    if (to) return this.directed(session, stanza, to);
    if (type === 'unavailable') return this.broadcastUnavailable(session, stanza);
    return this.broadcastAvailable(session, stanza);
  }

  /** RFC 6121 §4.2 (initial) and §4.4 (subsequent) available presence. */
  private async broadcastAvailable(session: Session, stanza: Element): Promise<void> {
    const initial = !session.available;
    const previousPriority = session.priority;
    session.available = true;
    session.priority = parsePriority(stanza);
    session.presence = stanza;
    this.sessions.presenceChanged(session);
    const items = await this.roster.items(session.bare);
    for (const item of items) {
      if (hasFrom(item.subscription)) void this.sendCopy(stanza, session.jid, item.jid);
    }
    // "...MUST also broadcast initial presence to all of the user's available resources,
    // including the resource that generated the presence notification in the first place."
    for (const other of this.sessions.resources(session.bare)) {
      if (other.available) other.send(withTo(stanza, other.full));
    }
    this.remote.presenceToUser(withTo(stanza, session.bare), session.bare);
    if (initial) {
      // RFC 6121 §4.2.2: probe the contacts the user is subscribed to, and tell the new
      // resource about the user's other available resources.
      for (const item of items) {
        if (hasTo(item.subscription) && this.reachable(item.jid)) {
          const probe = new Element('presence', { type: 'probe', from: session.full, to: item.jid });
          void this.router.route(probe, session.jid, tryParseJID(item.jid)!);
        }
      }
      for (const other of this.sessions.resources(session.bare)) {
        if (other !== session && other.available && other.presence) session.send(withTo(other.presence, session.full, other.full));
      }
      // The user's resources on other nodes introduce themselves the same way.
      this.remote.probe(session.jid, session.jid.bare());
      await this.redeliverPendingSubscriptions(session);
    }
    for (const listener of this.availableListeners) await listener(session, initial, previousPriority);
  }

  /**
   * RFC 6121 §4.5: unavailable presence goes to subscribers, own resources and directed recipients;
   * §4.6.2: the latter also when the resource never broadcast presence (e.g. it only joined a room).
   */
  private async broadcastUnavailable(session: Session, stanza: Element): Promise<void> {
    const wasAvailable = session.available;
    const directed = [...session.directedPresence];
    if (!wasAvailable && directed.length === 0) return;
    session.available = false;
    session.presence = undefined;
    session.directedPresence.clear();
    if (wasAvailable) this.sessions.presenceChanged(session);
    const sentTo = new Set<string>();
    if (wasAvailable) {
      for (const item of await this.roster.items(session.bare)) {
        if (hasFrom(item.subscription)) {
          void this.sendCopy(stanza, session.jid, item.jid);
          sentTo.add(item.jid);
        }
      }
      for (const other of this.sessions.resources(session.bare)) {
        if (other.available || other === session) other.send(withTo(stanza, other.full));
      }
      this.remote.presenceToUser(withTo(stanza, session.bare), session.bare);
    }
    for (const target of directed) {
      if (!sentTo.has(target) && !sentTo.has(bareOf(target))) void this.sendCopy(stanza, session.jid, target);
    }
  }

  /** RFC 6121 §4.6: directed presence, remembered so that unavailable reaches the recipient too. */
  private async directed(session: Session, stanza: Element, to: JID): Promise<void> {
    if (stanza.attrs.type === 'unavailable') session.directedPresence.delete(to.toString());
    else session.directedPresence.add(to.toString());
    await this.router.route(stanza, session.jid, to);
  }

  /** A session that ends goes unavailable for everyone who saw its presence (RFC 6121 §4.5.2, §4.6.2). */
  private async sessionEnded(session: Session): Promise<void> {
    // A session that moved to another node lives on there: its contacts see no change.
    if (session.movedTo) return;
    if (!session.available && session.directedPresence.size === 0) return;
    try {
      await this.broadcastUnavailable(session, new Element('presence', { type: 'unavailable', from: session.full }));
    } catch (err) {
      this.logger.error('unavailable broadcast failed', { conn: session.id, err: String(err) });
    }
  }

  // ---- inbound: to a local user ----

  async inbound(stanza: Element, from: JID, to: JID): Promise<void> {
    const type: string | undefined = stanza.attrs.type;
    if (type === 'probe') return this.answerProbe(from, to);
    if (type && SUBSCRIPTION_TYPES.has(type)) return this.inboundSubscription(type as SubscriptionType, stanza, from.bare(), to.bare());
    if (to.resource) {
      if (!this.stanzaToResource(stanza, to)) void this.remote.stanzaToResource(stanza, to);
      return;
    }
    this.toAvailableResources(to.bareString(), stanza);
  }

  /** Presence (or an IQ forwarded from another node) to this exact full JID when it is bound here; 1 when delivered. */
  stanzaToResource(stanza: Element, to: JID): number {
    const session = this.sessions.get(to);
    if (!session) return 0;
    // Forwarded by the node that holds the s2s stream: the answer to a request this node sent from that session's JID.
    if (stanza.name === 'iq' && (stanza.attrs.type === 'result' || stanza.attrs.type === 'error')) {
      const from = tryParseJID(stanza.attrs.from ?? '');
      if (from && this.router.claimResult(stanza, from)) return 1;
    }
    session.send(stanza);
    this.seen(stanza, session);
    return 1;
  }

  /** Presence to every available resource of `user` on this node; returns how many got it. */
  presenceToUser(stanza: Element, user: string): number {
    let count = 0;
    for (const session of this.sessions.resources(user)) {
      if (!session.available) continue;
      session.send(stanza);
      if (count++ === 0) this.seen(stanza, session);
    }
    return count;
  }

  /**
   * RFC 6121 §4.3.2: a subscriber's probe gets the last presence of every available resource, on
   * every node; the user's own resources probe each other the same way.
   */
  private async answerProbe(from: JID, to: JID): Promise<void> {
    const user = to.bareString();
    const self = from.bareString() === user;
    if (!self && !(await this.maySeePresence(user, from))) {
      // "MUST NOT reveal the user's presence"; "SHOULD return a presence stanza of type
      // 'unsubscribed'", which cancels a subscription the prober wrongly believes it has.
      void this.sendCopy(new Element('presence', { type: 'unsubscribed' }), to.bare(), from.bareString());
      return;
    }
    const here = this.sendAvailableFrom(user, from);
    this.remote.probe(from, to.bare());
    if (self || here > 0) return;
    // Nobody here: "unavailable" only when the strategy can tell that nobody is online elsewhere either.
    const elsewhere = this.remote.remoteResources(user);
    if (elsewhere && !elsewhere.some((r) => r.available)) {
      void this.sendCopy(new Element('presence', { type: 'unavailable' }), to.bare(), from.toString());
    }
  }

  /**
   * The presence this node's available resources have broadcast, as (recipient bare JID, stanza)
   * pairs: subscribers and the user's own other resources. A node that (re)joins gets these, so
   * presence heals after a partition without anyone logging in again.
   */
  async broadcastSnapshot(): Promise<{ user: string; stanza: Element }[]> {
    const result: { user: string; stanza: Element }[] = [];
    for (const session of this.sessions.all()) {
      if (!session.available || !session.presence) continue;
      result.push({ user: session.bare, stanza: withTo(session.presence, session.bare, session.full) });
      for (const item of await this.roster.items(session.bare)) {
        if (hasFrom(item.subscription)) result.push({ user: item.jid, stanza: withTo(session.presence, item.jid, session.full) });
      }
    }
    return result;
  }

  /** A peer's share of a probe: the presence of this node's available resources, if the prober may see it. */
  async answerProbeHere(from: JID, to: JID): Promise<void> {
    const user = to.bareString();
    if (from.bareString() !== user && !(await this.maySeePresence(user, from))) return;
    this.sendAvailableFrom(user, from);
  }

  private async maySeePresence(user: string, prober: JID): Promise<boolean> {
    const item = await this.roster.item(user, prober.bareString());
    return Boolean(item && hasFrom(item.subscription));
  }

  /** Sends the last presence of this node's available resources of `user` to `to` (not to itself). */
  private sendAvailableFrom(user: string, to: JID): number {
    let count = 0;
    for (const session of this.sessions.resources(user)) {
      if (!session.available || !session.presence || session.full === to.toString()) continue;
      void this.sendCopy(session.presence, session.jid, to.toString());
      count++;
    }
    return count;
  }

  // ---- subscriptions (RFC 6121 §3) ----

  private async outboundSubscription(session: Session, type: SubscriptionType, stanza: Element, contact: JID): Promise<void> {
    const user = session.bare;
    const contactBare = contact.toString();
    if (contactBare === user) return;
    const userJid = session.jid.bare();
    const item = await this.roster.item(user, contactBare);
    switch (type) {
      case 'subscribe': {
        // §3.1.2: the user's server marks the item pending-out and routes the request.
        const next: RosterItem = item ? { ...item } : { jid: contactBare, subscription: 'none', groups: [] };
        if (!hasTo(next.subscription) && !next.ask) {
          next.ask = true;
          await this.roster.set(user, next);
        }
        break;
      }
      case 'unsubscribe': {
        // §3.3.2: subscription 'to' is cancelled (and any pending request).
        if (!item) break;
        if (hasTo(item.subscription) || item.ask) {
          await this.roster.set(user, { ...item, subscription: item.subscription === 'both' ? 'from' : 'none', ask: false });
        }
        break;
      }
      case 'subscribed': {
        const pending = await this.storage.roster.removePendingIn(user, contactBare);
        if (item && hasFrom(item.subscription)) return; // §3.1.5: nothing changes, nothing is routed
        if (!pending) {
          // §3.4: pre-approval of a request that has not come yet; nothing is routed.
          const next: RosterItem = item ? { ...item, approved: true } : { jid: contactBare, subscription: 'none', approved: true, groups: [] };
          await this.roster.set(user, next);
          return;
        }
        const next: RosterItem = item ? { ...item } : { jid: contactBare, subscription: 'none', groups: [] };
        next.subscription = next.subscription === 'to' ? 'both' : 'from';
        next.approved = false;
        await this.roster.set(user, next);
        await this.router.route(stanza, userJid, contact);
        // §3.1.5: "...MUST then send the user's current presence from all available resources".
        await this.sendAvailablePresence(user, contactBare);
        return;
      }
      case 'unsubscribed': {
        // §3.2.2: deny a pending request or revoke 'from'.
        const pending = await this.storage.roster.removePendingIn(user, contactBare);
        if (!pending && !(item && hasFrom(item.subscription))) {
          // §3.2.2 rule 2: "MUST remove the pre-approval and MUST NOT route" the unsubscribed.
          if (item?.approved) await this.roster.set(user, { ...item, approved: false });
          return; // rule 1: nothing to deny or revoke: "SHOULD NOT route"
        }
        if (item && (hasFrom(item.subscription) || item.approved)) {
          await this.roster.set(user, { ...item, subscription: item.subscription === 'both' ? 'to' : 'none', approved: false });
        }
        await this.revokePresence(user, item, stanza, contact);
        return;
      }
    }
    await this.router.route(stanza, userJid, contact);
  }

  /**
   * RFC 6121 §2.5.2: removing a roster item cancels the subscriptions both ways, as though the user
   * had sent unsubscribed (§3.2.2, also denying a pending request) and unsubscribe (§3.3.2).
   * Called after the item is gone; `removed` is what it was.
   */
  async rosterItemRemoved(user: JID, removed: RosterItem, hadPendingIn: boolean): Promise<void> {
    const contact = tryParseJID(removed.jid);
    if (!contact) return;
    const presence = (type: SubscriptionType) => new Element('presence', { type, from: user.toString(), to: removed.jid });
    if (hasFrom(removed.subscription) || hadPendingIn) await this.revokePresence(user.toString(), removed, presence('unsubscribed'), contact);
    if (hasTo(removed.subscription) || removed.ask) await this.router.route(presence('unsubscribe'), user, contact);
  }

  /**
   * §3.2.2: "While the user is still subscribed ... the contact's server MUST send a presence stanza
   * of type 'unavailable' from all of the contact's online resources", then routes the unsubscribed.
   */
  private async revokePresence(user: string, item: RosterItem | undefined, unsubscribed: Element, contact: JID): Promise<void> {
    if (item && hasFrom(item.subscription)) await this.sendUnavailableFromAll(user, contact.toString());
    await this.router.route(unsubscribed, tryParseJID(user)!, contact);
  }

  /** Sends the last presence of every available resource of `user`, on every node, to `to`. */
  private async sendAvailablePresence(user: string, to: string): Promise<void> {
    for (const resource of this.sessions.resources(user)) {
      if (resource.available && resource.presence) await this.sendCopy(resource.presence, resource.jid, to);
    }
    const target = tryParseJID(to);
    const userJid = tryParseJID(user);
    if (target && userJid) this.remote.probe(target, userJid);
  }

  /**
   * Unavailable presence from every available resource of `user` to `to`. Resources on other
   * nodes are spoken for by this node when the strategy knows them; otherwise one unavailable
   * from the bare JID stands for them all.
   */
  private async sendUnavailableFromAll(user: string, to: string): Promise<void> {
    const unavailable = new Element('presence', { type: 'unavailable' });
    for (const resource of this.sessions.resources(user)) {
      if (resource.available) await this.sendCopy(unavailable, resource.jid, to);
    }
    if (!this.remote.clustered) return;
    const elsewhere = this.remote.remoteResources(user);
    if (!elsewhere) {
      await this.sendCopy(unavailable, tryParseJID(user)!, to);
      return;
    }
    for (const resource of elsewhere) {
      const jid = tryParseJID(resource.jid);
      if (resource.available && jid) await this.sendCopy(unavailable, jid, to);
    }
  }

  private async inboundSubscription(type: SubscriptionType, stanza: Element, from: JID, to: JID): Promise<void> {
    const user = to.toString();
    const contact = from.toString();
    stanza.attrs.from = contact;
    const item = await this.roster.item(user, contact);
    switch (type) {
      case 'subscribe': {
        if (item && hasFrom(item.subscription)) {
          // §3.1.3: already subscribed: the user's server answers for the user.
          await this.sendCopy(new Element('presence', { type: 'subscribed' }), to, contact);
          return;
        }
        if (!(await this.storage.users.get(user))) {
          await this.sendCopy(new Element('presence', { type: 'unsubscribed' }), to, contact);
          return;
        }
        if (item?.approved) {
          // §3.4: pre-approved: grant without asking the user, then send presence as §3.1.5 does.
          await this.roster.set(user, { ...item, subscription: item.subscription === 'to' ? 'both' : 'from', approved: false });
          await this.sendCopy(new Element('presence', { type: 'subscribed' }), to, contact);
          await this.sendAvailablePresence(user, contact);
          return;
        }
        // §3.1.3: keep the request until the user decides, and show it to available resources.
        await this.storage.roster.addPendingIn(user, contact, stanza.toString());
        this.toAvailableResources(user, stanza);
        return;
      }
      case 'subscribed': {
        // §3.1.6: only honoured when the user asked for it.
        if (!item || hasTo(item.subscription) || !item.ask) return;
        await this.roster.set(user, { ...item, subscription: item.subscription === 'from' ? 'both' : 'to', ask: false });
        this.toAvailableResources(user, stanza);
        return;
      }
      case 'unsubscribe': {
        // §3.3.3: the contact no longer wants the user's presence.
        const hadPending = await this.storage.roster.removePendingIn(user, contact);
        if (item && hasFrom(item.subscription)) {
          await this.roster.set(user, { ...item, subscription: item.subscription === 'both' ? 'to' : 'none' });
          this.toAvailableResources(user, stanza);
          await this.sendUnavailableFromAll(user, contact);
        } else if (hadPending) {
          this.toAvailableResources(user, stanza);
        }
        return;
      }
      case 'unsubscribed': {
        // §3.2.3: the contact denied or revoked the user's subscription.
        if (!item || (!hasTo(item.subscription) && !item.ask)) return;
        await this.roster.set(user, { ...item, subscription: item.subscription === 'both' ? 'from' : 'none', ask: false });
        this.toAvailableResources(user, stanza);
        return;
      }
    }
  }

  /** RFC 6121 §3.1.3: a request not yet answered is shown again when the user comes online. */
  private async redeliverPendingSubscriptions(session: Session): Promise<void> {
    for (const { stanzaXml } of await this.storage.roster.getPendingIn(session.bare)) {
      try {
        session.send(parseXml(stanzaXml));
      } catch (err) {
        this.logger.warn('unreadable pending subscription request', { conn: session.id, err: String(err) });
      }
    }
  }

  // ---- helpers ----

  /** To every available resource of `user`, here and on other nodes. */
  private toAvailableResources(user: string, stanza: Element): void {
    this.presenceToUser(stanza, user);
    this.remote.presenceToUser(stanza, user);
  }

  /** Routes a copy of `stanza` from `from` to `to` (each destination gets its own 'to'). */
  private async sendCopy(stanza: Element, from: JID, to: string): Promise<void> {
    const target = tryParseJID(to);
    if (!target || !this.router.reaches(target.domain)) return; // without federation, remote contacts are skipped
    const copy = cloneElement(stanza);
    copy.attrs.from = from.toString();
    copy.attrs.to = to;
    await this.router.route(copy, from, target);
  }

  /** A contact whose server we can reach: ours, a component, or (with federation) another server. */
  private reachable(jid: string): boolean {
    const parsed = tryParseJID(jid);
    return parsed !== undefined && this.router.reaches(parsed.domain);
  }
}

/** RFC 6121 §4.7.2.3: priority is an integer from -128 to +127, 0 when absent. */
function parsePriority(stanza: Element): number {
  const text = stanza.getChildText('priority');
  if (text === null) return 0;
  const value = Number.parseInt(text, 10);
  return Number.isFinite(value) ? Math.max(-128, Math.min(127, value)) : 0;
}

function withTo(stanza: Element, to: string, from?: string): Element {
  const copy = cloneElement(stanza);
  copy.attrs.to = to;
  if (from) copy.attrs.from = from;
  return copy;
}

function bareOf(jid: string): string {
  const slash = jid.indexOf('/');
  return slash === -1 ? jid : jid.slice(0, slash);
}

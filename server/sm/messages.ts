import { Element, parse as parseXml } from 'ltx';
import { StanzaError } from '../errors';
import type { JID } from '../jid';
import type { Logger } from '../log';
import { cloneElement, type Router } from '../router';
import type { Storage } from '../storage/types';
import { NS } from '../xml/ns';
import type { Session } from './session';
import type { SessionManager } from './session-manager';
import { LOCAL_ONLY, type RemoteDelivery } from './remote-delivery';

/**
 * Message delivery for one server (RFC 6121 §8.5), offline storage (XEP-0160) with delay
 * stamps (XEP-0203), and message carbons (XEP-0280).
 */
export class MessageService {
  constructor(
    private readonly router: Router,
    private readonly sessions: SessionManager,
    private readonly storage: Storage,
    private readonly offlineQueueLength: number,
    private readonly logger: Logger,
    private readonly remote: RemoteDelivery = LOCAL_ONLY,
  ) {}

  async outbound(session: Session, stanza: Element, to: JID): Promise<void> {
    // XEP-0280 §8: copies of what one resource sends go to the user's other carbons-enabled resources.
    if (carbonEligible(stanza)) {
      this.carbonsHere('sent', stanza, session.bare, session.full);
      this.remote.carbons('sent', stanza, session.bare, session.full);
    }
    await this.router.route(stanza, session.jid, to);
  }

  async inbound(stanza: Element, from: JID, to: JID): Promise<void> {
    const type = (stanza.attrs.type as string | undefined) ?? 'normal';
    // XEP-0280 §9: the receiving server "SHOULD remove the <private/> element before delivering to the recipient".
    const copies = carbonEligible(stanza);
    stanza.remove('private', NS.CARBONS);
    if (!to.resource) return this.toBare(stanza, to.bareString(), type);
    if (this.messageToResource(stanza, to)) return this.receivedCarbons(stanza, to, copies);
    if (!this.remote.clustered) return this.noSuchResource(stanza, to, type);
    // Elsewhere in the cluster: the stanza leaves now, in order; the answer is awaited off the
    // sender's stream, so one sender's messages never wait for each other's round trips.
    this.afterwards(stanza, this.remote.messageToResource(stanza, to).then((delivered) =>
      delivered ? this.receivedCarbons(stanza, to, copies) : this.noSuchResource(stanza, to, type),
    ));
  }

  /** XEP-0280 §7: carbons of a message delivered to one resource, for the user's other resources. */
  private receivedCarbons(stanza: Element, to: JID, copies: boolean): void {
    if (!copies) return;
    this.carbonsHere('received', stanza, to.bareString(), to.toString());
    this.remote.carbons('received', stanza, to.bareString(), to.toString());
  }

  /** RFC 6121 §8.5.3.2.1: no such resource: chat and normal go to the bare JID. */
  private async noSuchResource(stanza: Element, to: JID, type: string): Promise<void> {
    if (type === 'groupchat') throw new StanzaError('service-unavailable');
    if (type === 'headline' || type === 'error') return;
    await this.toBare(stanza, to.bareString(), type);
  }

  /** RFC 6121 §8.5.2: to a bare JID, on every node that has resources of the user. */
  private async toBare(stanza: Element, user: string, type: string): Promise<void> {
    if (type === 'groupchat') throw new StanzaError('service-unavailable');
    if (type === 'error') return;
    const here = this.messageToUser(stanza, user);
    const elsewhere = this.remote.messageToUser(stanza, user);
    if (here > 0) return;
    // Only "delivered nowhere" needs the peers' answers: then the message is stored, exactly once, here.
    const storeUnlessDelivered = async (count: number) => {
      if (count > 0 || type === 'headline') return;
      await this.storeOffline(stanza, user);
    };
    if (!this.remote.clustered) return storeUnlessDelivered(0);
    this.afterwards(stanza, elsewhere.then(storeUnlessDelivered));
  }

  /** Work that finishes after the sender's stream has moved on: its failure is answered like any other. */
  private afterwards(stanza: Element, work: Promise<void>): void {
    work.catch((err) => this.router.replyError(stanza, err));
  }

  // ---- this node's sessions only (also what peers ask of this node) ----

  /** Delivers to the exact full JID when it is bound here; 1 when delivered. */
  messageToResource(stanza: Element, to: JID): number {
    const session = this.sessions.get(to);
    if (!session) return 0;
    session.send(stanza);
    return 1;
  }

  /**
   * §8.5.2.1.1: "deliver the message to all of the non-negative resources" (our policy for chat
   * and normal too), with received carbons (XEP-0280 §7) for this node's carbons-enabled resources
   * that did not get it. Returns how many resources got the message.
   */
  messageToUser(stanza: Element, user: string): number {
    const resources = this.sessions.resources(user);
    const targets = resources.filter((s) => s.available && s.priority >= 0);
    for (const session of targets) session.send(stanza);
    if (targets.length > 0 && carbonEligible(stanza)) {
      for (const other of resources) {
        if (other.carbons && !targets.includes(other)) other.send(carbon('received', stanza, other));
      }
    }
    return targets.length;
  }

  /** Carbon copies for this node's carbons-enabled resources of `user`, except the full JID `exclude`. */
  carbonsHere(kind: 'sent' | 'received', stanza: Element, user: string, exclude?: string): void {
    for (const other of this.sessions.resources(user)) {
      if (other.carbons && other.full !== exclude) other.send(carbon(kind, stanza, other));
    }
  }

  // ---- offline storage ----

  /** XEP-0160: keep a chat/normal message for a user with no available resource, stamped with XEP-0203. */
  private async storeOffline(stanza: Element, user: string): Promise<void> {
    if (!(await this.storage.users.get(user))) throw new StanzaError('service-unavailable'); // RFC 6121 §8.5.2.2
    if (!worthStoring(stanza)) return;
    const copy = cloneElement(stanza);
    copy.c('delay', { xmlns: NS.DELAY, from: user.slice(user.indexOf('@') + 1), stamp: new Date().toISOString() }).t('Offline Storage');
    const stored = await this.storage.offline.store(user, copy.toString(), this.offlineQueueLength);
    // Nothing accepted is lost: a full queue bounces the message back to its sender.
    if (!stored) throw new StanzaError('service-unavailable', 'offline storage is full');
  }

  /**
   * XEP-0160 §3: offline messages go to a resource that becomes available with priority ≥ 0.
   * take() empties the queue atomically, so two resources coming online on two nodes at once
   * never both get a message; what could not be sent goes back to the queue.
   */
  async flushOffline(session: Session): Promise<void> {
    if (session.priority < 0) return;
    const messages = await this.storage.offline.take(session.bare);
    for (const [i, message] of messages.entries()) {
      if (session.ended) {
        for (const rest of messages.slice(i)) await this.storage.offline.store(session.bare, rest.stanzaXml, Number.MAX_SAFE_INTEGER);
        return;
      }
      try {
        session.send(parseXml(message.stanzaXml));
      } catch (err) {
        this.logger.warn('unreadable offline message dropped', { conn: session.id, id: message.id, err: String(err) });
      }
    }
  }
}

/** XEP-0280 §6: chat messages (and normal ones with a body), unless marked private or no-copy. */
function carbonEligible(stanza: Element): boolean {
  const type = stanza.attrs.type ?? 'normal';
  if (type !== 'chat' && !(type === 'normal' && stanza.getChild('body'))) return false;
  return !stanza.getChild('private', NS.CARBONS) && !stanza.getChild('no-copy', NS.HINTS) && !stanza.getChild('received', NS.CARBONS) && !stanza.getChild('sent', NS.CARBONS);
}

function carbon(kind: 'sent' | 'received', stanza: Element, to: Session): Element {
  const inner = cloneElement(stanza);
  inner.attrs.xmlns = NS.CLIENT; // XEP-0297: the forwarded stanza carries its namespace
  const wrapper = new Element('message', { from: to.bare, to: to.full, type: stanza.attrs.type ?? 'normal' });
  wrapper.c(kind, { xmlns: NS.CARBONS }).c('forwarded', { xmlns: NS.FORWARD }).cnode(inner);
  return wrapper;
}

/** XEP-0160 and XEP-0334: store what a person would miss; chat states alone are not kept. */
function worthStoring(stanza: Element): boolean {
  if (stanza.getChild('no-store', NS.HINTS) || stanza.getChild('no-permanent-store', NS.HINTS)) return false;
  return Boolean(stanza.getChild('body') || stanza.getChild('subject') || stanza.getChild('store', NS.HINTS) || stanza.getChildElements().some((c) => c.attrs.xmlns && c.attrs.xmlns !== NS.CLIENT && c.name !== 'active' && c.name !== 'composing' && c.name !== 'paused' && c.name !== 'inactive' && c.name !== 'gone'));
}

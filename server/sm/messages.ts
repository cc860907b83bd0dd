import { Element, parse as parseXml } from 'ltx';
import { StanzaError } from '../errors';
import type { JID } from '../jid';
import type { Logger } from '../log';
import { cloneElement, type Router } from '../router';
import type { Storage } from '../storage/types';
import { NS } from '../xml/ns';
import type { Session } from './session';
import type { SessionManager } from './session-manager';
import type { OfflineWriter } from './offline-writer';
import { LOCAL_ONLY, type RemoteDelivery } from './remote-delivery';
import { KeyedQueue } from '../keyed-queue';
import { archivable, type MessageArchive } from './archive';
import { serialize } from '../xml/serialize';

/** Users known to exist, remembered for offline writes (a failover storm checks each once) [10,000]. */
const KNOWN_USERS_MAX = 10_000;

/**
 * Message delivery (RFC 6121 §8.5) on this node and, through `remote`, on the others; offline
 * storage (XEP-0160) with delay stamps (XEP-0203) through the batched OfflineWriter; message
 * carbons (XEP-0280). A message the server took is delivered, stored, or bounced with an error.
 */
export class MessageService {
  private readonly knownUsers = new Set<string>();
  /** Users whose stored messages are being delivered to an online resource right now. */
  private readonly delivering = new Map<string, boolean>();
  private readonly storedListeners: ((user: string, stanza: Element) => void)[] = [];
  /** Per user: messages on their way to offline storage, in order. */
  private readonly storeOrder = new KeyedQueue();
  /** XEP-0313 archives, when the MAM module is on. */
  private archive?: MessageArchive;

  constructor(
    private readonly router: Router,
    private readonly sessions: SessionManager,
    private readonly storage: Storage,
    private readonly offline: OfflineWriter,
    private readonly logger: Logger,
    private readonly remote: RemoteDelivery = LOCAL_ONLY,
  ) {
    this.trace = logger.category('delivery');
  }

  /** `--debug delivery`: where each message went (by its id), for finding one that went astray. */
  private readonly trace: Logger;

  /** XEP-0313: from now on messages are recorded in their parties' archives. */
  setArchive(archive: MessageArchive): void {
    this.archive = archive;
  }

  /** Called once a message for `user` is in offline storage (e.g. for XEP-0357 push notifications). */
  onStoredOffline(listener: (user: string, stanza: Element) => void): void {
    this.storedListeners.push(listener);
  }

  /** Deliveries finishing off their senders' streams (see afterwards). */
  private readonly finishing = new Set<Promise<void>>();

  async outbound(session: Session, stanza: Element, to: JID): Promise<void> {
    // Back-pressure: while offline storage cannot keep up, senders wait here rather than pile up work.
    if (this.offline.full) await this.offline.waitForRoom();
    // XEP-0280 §8: copies of what one resource sends go to the user's other carbons-enabled resources.
    if (carbonEligible(stanza)) {
      this.carbonsHere('sent', stanza, session.bare, session.full);
      this.remote.carbons('sent', stanza, session.bare, session.full);
    }
    // XEP-0313: the sender's copy, in the sender's archive (the recipient's is written on the way in).
    if (this.archive && archivable(stanza)) {
      const recorded = this.archive.recordKept(session.bare, 'out', to, stanza);
      if (recorded instanceof Promise) await recorded;
    }
    await this.router.route(stanza, session.jid, to);
  }

  async inbound(stanza: Element, from: JID, to: JID): Promise<void> {
    const type = (stanza.attrs.type as string | undefined) ?? 'normal';
    // XEP-0280 §9: the receiving server "SHOULD remove the <private/> element before delivering to the recipient".
    const copies = carbonEligible(stanza);
    stanza.remove('private', NS.CARBONS);
    const owner = to.bareString();
    // XEP-0359 §5: a stanza id claiming to be the recipient's archive's was not made by it.
    for (const claimed of stanza.getChildren('stanza-id', NS.SID)) if (claimed.attrs.by === owner) stanza.remove(claimed);
    // XEP-0313: written once, here, whatever node or nodes the recipient is on; the id goes with it,
    // unless the recipient's preferences leave the message out of the archive.
    if (this.archive && archivable(stanza)) {
      const recorded = this.archive.recordKept(owner, 'in', from, stanza);
      const id = recorded instanceof Promise ? await recorded : recorded;
      if (id !== undefined) stanza.c('stanza-id', { xmlns: NS.SID, by: owner, id });
    }
    if (!to.resource) return this.toBare(stanza, to.bareString(), type);
    if (this.deliverToResource(stanza, to, copies)) return;
    if (this.trace.debugEnabled) this.trace.debug('not bound here', { id: stanza.attrs.id, to: to.toString() });
    if (!this.remote.clustered) return this.noSuchResource(stanza, to, type);
    // Elsewhere in the cluster: the stanza leaves now, in order; its outcome comes back in the
    // link's acknowledgements, off the sender's stream, so one sender's messages never wait for each other.
    this.afterwards(stanza, this.remote.messageToResource(stanza, to, copies).then((delivered) => {
      if (this.trace.debugEnabled) this.trace.debug('outcome from the cluster', { id: stanza.attrs.id, to: to.toString(), delivered });
      return delivered ? undefined : this.noSuchResource(stanza, to, type);
    }));
  }

  /**
   * Delivers to the exact full JID when it is bound here, with received carbons (XEP-0280 §7) for
   * the user's other resources on every node; false when it is not bound here.
   */
  deliverToResource(stanza: Element, to: JID, copies: boolean): boolean {
    const session = this.sessions.get(to);
    // A session waiting to be resumed is not there for messages: they are stored, and it gets them on
    // resumption, as stored messages go to an available resource (one without presence keeps them queued).
    if (!session || (session.waiting && session.available && session.priority >= 0 && storedWhileWaiting(stanza))) return false;
    if (this.trace.debugEnabled) this.trace.debug('to a session here', { id: stanza.attrs.id, to: to.toString(), conn: session.id, waiting: session.waiting });
    session.send(stanza);
    if (copies) {
      this.carbonsHere('received', stanza, to.bareString(), to.toString());
      this.remote.carbons('received', stanza, to.bareString(), to.toString());
    }
    return true;
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
    if (this.trace.debugEnabled) this.trace.debug('to the bare JID', { id: stanza.attrs.id, user, here });
    if (here > 0) return;
    // Only "delivered nowhere" needs the peers' outcomes: then the message is stored, exactly once, here.
    const storeUnlessDelivered = async (count: number) => {
      if (this.trace.debugEnabled) this.trace.debug('the bare JID elsewhere', { id: stanza.attrs.id, user, elsewhere: count });
      if (count > 0 || type === 'headline') return;
      await this.storeOffline(stanza, user);
    };
    if (!this.remote.clustered) return storeUnlessDelivered(0);
    this.afterwards(stanza, elsewhere.then(storeUnlessDelivered));
  }

  /**
   * Work that finishes after the sender's stream has moved on (also a delivery retried because its
   * session ended): its failure is answered like any other, and a stopping node waits for it (idle()).
   */
  afterwards(stanza: Element, work: Promise<void>): void {
    const tracked: Promise<void> = work.catch((err) => this.router.replyError(stanza, err)).finally(() => this.finishing.delete(tracked));
    this.finishing.add(tracked);
  }

  /**
   * Resolves once the deliveries still finishing off their senders' streams are done (a cross-node
   * outcome, its fallback to other resources or offline storage): a stopping node waits for them.
   */
  async idle(): Promise<void> {
    while (this.finishing.size > 0) await Promise.allSettled([...this.finishing]);
  }

  // ---- this node's sessions only (also what peers ask of this node) ----

  /**
   * §8.5.2.1.1: "deliver the message to all of the non-negative resources" (our policy for chat
   * and normal too), with received carbons (XEP-0280 §7) for this node's carbons-enabled resources
   * that did not get it. Returns how many resources got the message.
   */
  messageToUser(stanza: Element, user: string): number {
    const resources = this.sessions.resources(user);
    const targets = resources.filter((s) => s.available && s.priority >= 0 && !(s.waiting && storedWhileWaiting(stanza)));
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
    // One user's messages enter storage in the order they came: the account check that one of them
    // waits for (a database read, the first time) never lets a later one overtake it. Only the check
    // and the queueing are in order; the writes themselves are batched.
    const queued = await this.storeOrder.runOrNow(user, async () => {
      if (!(await this.userExists(user))) throw new StanzaError('service-unavailable'); // RFC 6121 §8.5.2.2
      if (!worthStoring(stanza)) return undefined;
      return { written: this.offline.write(user, this.storedCopy(stanza, user)) };
    });
    if (!queued) return;
    // Nothing accepted is lost: a full queue or a database that stays down bounces it to its sender.
    await queued.written;
    if (this.trace.debugEnabled) this.trace.debug('stored offline', { id: stanza.attrs.id, user });
    for (const listener of this.storedListeners) listener(user, stanza);
  }

  /** The stored form: a delay stamp (XEP-0203) and, for a re-routed stanza, where it had gone. */
  private storedCopy(stanza: Element, user: string): string {
    const copy = cloneElement(stanza);
    // Only the server writes a trace: one a client put in is not kept.
    copy.remove('routed', NS.ROUTE_TRACE);
    const trace = this.remote.lostRoute(stanza);
    if (trace) copy.c('routed', { xmlns: NS.ROUTE_TRACE, link: trace.link, seq: String(trace.seq) });
    copy.c('delay', { xmlns: NS.DELAY, from: user.slice(user.indexOf('@') + 1), stamp: new Date().toISOString() }).t('Offline Storage');
    return serialize(copy);
  }

  private async userExists(user: string): Promise<boolean> {
    if (this.knownUsers.has(user)) return true;
    if (!(await this.storage.users.get(user))) return false;
    if (this.knownUsers.size >= KNOWN_USERS_MAX) this.knownUsers.clear();
    this.knownUsers.add(user);
    return true;
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
        const stanza = parseXml(message.stanzaXml);
        if (this.deliveredBefore(stanza)) {
          this.logger.debug('stored copy of a message delivered before its link was lost skipped', { conn: session.id, id: message.id });
          continue;
        }
        session.send(stanza);
      } catch (err) {
        this.logger.warn('unreadable offline message dropped', { conn: session.id, id: message.id, err: String(err) });
      }
    }
  }

  /**
   * A message re-routed to storage because its cluster link was lost carries where it had gone
   * (removed here, before delivery): when this node is the one that delivered it then, the stored
   * copy is a duplicate.
   */
  private deliveredBefore(stanza: Element): boolean {
    const routed = stanza.getChild('routed', NS.ROUTE_TRACE);
    if (!routed) return false;
    stanza.remove(routed);
    return this.remote.deliveredBefore({ link: String(routed.attrs.link), seq: Number(routed.attrs.seq) });
  }

  /**
   * Nothing parked for an online user (RFC 6121 §8.5.2.1): messages stored for `users` (by any
   * node, in a race, a partition or a failover) go at once to one of their available resources
   * here with priority ≥ 0. Runs once at a time per user; a call during a run runs it again.
   */
  deliverStored(users: string[]): void {
    for (const user of users) {
      if (!this.onlineHere(user)) continue;
      if (this.delivering.has(user)) {
        this.delivering.set(user, true);
        continue;
      }
      this.delivering.set(user, false);
      void (async () => {
        try {
          do {
            this.delivering.set(user, false);
            const session = this.onlineHere(user);
            if (session) await this.flushOffline(session);
          } while (this.delivering.get(user));
        } catch (err) {
          this.logger.warn('stored messages not delivered yet', { user, err: String(err) });
        } finally {
          this.delivering.delete(user);
        }
      })();
    }
  }

  /** After a link comes back: this node's online users who have stored messages get them now. */
  async deliverStoredToOnlineUsers(): Promise<void> {
    const online = new Set<string>();
    for (const session of this.sessions.all()) if (session.available && session.priority >= 0) online.add(session.bare);
    if (online.size === 0) return;
    this.deliverStored(await this.storage.offline.usersWithMessages([...online]));
  }

  /** The user's available resource here with the highest non-negative priority. */
  private onlineHere(user: string): Session | undefined {
    let best: Session | undefined;
    for (const session of this.sessions.resources(user)) {
      if (session.available && session.priority >= 0 && !session.waiting && (!best || session.priority > best.priority)) best = session;
    }
    return best;
  }
}

/**
 * A chat or normal message worth keeping, sent to a session that waits to be resumed: stored, so
 * that it survives this node (the session gets it when resumed). Room messages, headlines, chat
 * states and the like wait in the session's own queue.
 */
function storedWhileWaiting(stanza: Element): boolean {
  const type = stanza.attrs.type ?? 'normal';
  return (type === 'chat' || type === 'normal') && worthStoring(stanza);
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

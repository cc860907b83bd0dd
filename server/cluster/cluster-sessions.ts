import { Element } from 'ltx';
import type { ClusteringStrategy, ResourceEntry, SessionEvent } from '../../strategies/clustering-strategy';
import { StreamError } from '../errors';
import { KeyedQueue } from '../keyed-queue';
import { tryParseJID, type JID } from '../jid';
import type { Logger } from '../log';
import type { RemoteDelivery, RouteTrace } from '../sm/remote-delivery';
import type { Session } from '../sm/session';
import type { SessionManager } from '../sm/session-manager';
import { LINK, type LinkKind } from './catalogue';
import type { Cluster } from './cluster';

/** How long a new link waits for the peer's session list [9000 ms]. */
const SYNC_TIMEOUT_MS = 9000;
import { NS } from '../xml/ns';

/** The same operations as RemoteDelivery, done by this node on its own sessions only. */
export interface LocalDelivery {
  /** Delivers to the full JID if bound here (with received carbons when `carbons`); false when not. */
  messageToResource(stanza: Element, to: JID, carbons: boolean): boolean;
  messageToUser(stanza: Element, bare: string): number;
  stanzaToResource(stanza: Element, to: JID): number;
  presenceToUser(stanza: Element, bare: string): number;
  answerProbe(from: JID, to: JID): Promise<void>;
  /** The inbound filters (blocking) for presence forwarded here: false when it is to be dropped. */
  presenceAllowed(stanza: Element, from: JID, to: JID): Promise<boolean>;
  carbons(kind: 'sent' | 'received', stanza: Element, user: string, exclude?: string): void;
  rosterPush(user: string, query: Element): void;
  blocklistChanged(user: string, command: Element): void;
  archivePrefsChanged(user: string): void;
  /** What this node's available resources have broadcast: (recipient bare JID, presence) pairs. */
  presenceSnapshot(): Promise<{ user: string; stanza: Element }[]>;
  /** A PEP notification to this node's resources of `users` whose caps include `feature`. */
  notifyInterested(stanza: Element, users: string[], feature: string): void;
  /** Messages were stored for `users`: those online here get them now. */
  deliverStored(users: string[]): void;
  /** This node's online users who have stored messages get them now. */
  deliverStoredToOnlineUsers(): Promise<void>;
}

/** How a routed stanza is to be delivered on the node that receives it. */
type RouteMode = 'message-resource' | 'message-user' | 'stanza-resource';

/**
 * The session manager's side of the cluster: publishes local session events, keeps the
 * strategy informed, resolves full-JID conflicts across nodes (the newest session wins), routes
 * stanzas to the nodes the strategy names and delivers what peers route here. A routed stanza's
 * outcome (delivered or not) comes back in the link's acknowledgements; a link lost first counts
 * as "not delivered", so RFC 6121's fallback (other resources, offline storage) runs exactly once,
 * on the sending node. When a node goes, everyone here who saw its users' presence is told they
 * are unavailable.
 */
export class ClusterSessions implements RemoteDelivery {
  readonly clustered = true;
  private local?: LocalDelivery;
  /** Remote full JID -> (node it lives on, local sessions that saw it available). */
  private readonly seenPresence = new Map<string, { node: string; viewers: Set<Session> }>();
  private readonly synced = new Set<string>();
  /** This node's sessions with carbons enabled, and how many each peer said it has (absent: not said). */
  private readonly carbonsHere = new Set<Session>();
  private readonly carbonsThere = new Map<string, number>();
  private readonly inOrder = new KeyedQueue();
  /** Sessions this node has published as unbound: no later event of theirs goes out. */
  private readonly unbound = new WeakSet<Session>();
  readonly counters = { forwarded: new Map<string, number>() };

  constructor(
    private readonly cluster: Cluster,
    readonly strategy: ClusteringStrategy,
    private readonly sessions: SessionManager,
    private readonly logger: Logger,
  ) {
    sessions.onBind((session) => {
      // A full JID bound here (e.g. a session resumed from another node) is no longer someone else's to report gone.
      this.seenPresence.delete(session.full);
      this.publish('bound', session);
    });
    sessions.onPresenceChange((session) => this.publish('presence', session));
    sessions.onEnd((session) => {
      this.carbonsHere.delete(session);
      this.unbound.add(session);
      this.publish('unbound', session);
      for (const entry of this.seenPresence.values()) entry.viewers.delete(session);
    });
    cluster.onNodeUp((node) => this.nodeUp(node));
    cluster.onNodeDown((node) => this.nodeDown(node));
    this.registerHandlers();
  }

  /** The local half, set once the services exist (they need this object first). */
  attach(local: LocalDelivery): void {
    this.local = local;
  }

  private localOrFail(): LocalDelivery {
    if (!this.local) throw new Error('cluster sessions used before local delivery was attached');
    return this.local;
  }

  /** Resolves once every live peer is connected and synced, or after timeoutMs (DESIGN: sync before serving). */
  async waitForSync(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const peers = this.cluster.liveNodes().filter((node) => node !== this.cluster.localNode);
      if (peers.every((node) => this.synced.has(node))) return;
      if (Date.now() >= deadline) {
        const missing = peers.filter((node) => !this.synced.has(node));
        this.logger.warn('starting before every peer synced', { missing });
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  stats(): Record<string, number> {
    return { ...this.strategy.stats(), trackedRemotePresences: this.seenPresence.size };
  }

  // ---- RemoteDelivery: this node asks peers ----

  async messageToResource(stanza: Element, to: JID, carbons: boolean): Promise<number> {
    return this.deliver(this.strategy.nodesForResource(to.toString()), 'message-resource', stanza, to.toString(), 'full-jid', carbons);
  }

  async messageToUser(stanza: Element, bare: string): Promise<number> {
    return this.deliver(this.strategy.nodesForUser(bare), 'message-user', stanza, bare, 'bare-jid');
  }

  async stanzaToResource(stanza: Element, to: JID): Promise<number> {
    return this.deliver(this.strategy.nodesForResource(to.toString()), 'stanza-resource', stanza, to.toString(), 'full-jid');
  }

  presenceToUser(stanza: Element, bare: string): void {
    this.sendTo(this.strategy.nodesForUser(bare), LINK.presence, stanza, { user: bare }, 'presence');
  }

  probe(from: JID, to: JID): void {
    this.sendTo(this.strategy.nodesForUser(to.bareString()), LINK.probe, undefined, { from: from.toString(), to: to.toString() }, 'probe');
  }

  carbons(kind: 'sent' | 'received', stanza: Element, user: string, exclude?: string): void {
    const nodes = this.strategy.nodesForUser(user).filter((node) => this.mayHoldCarbons(node, user));
    if (nodes.length === 0) return;
    const attrs: Record<string, string> = { kind, user };
    if (exclude) attrs.exclude = exclude;
    this.sendTo(nodes, LINK.carbons, stanza, attrs, 'carbons');
  }

  /**
   * Whether `node` may hold a carbons-enabled resource of `user`: not when it said it has no
   * carbons-enabled session at all, nor when the strategy lists the user's resources there and
   * none has carbons on. What a node did not say counts as "may".
   */
  private mayHoldCarbons(node: string, user: string): boolean {
    if (this.carbonsThere.get(node) === 0) return false;
    if (!this.strategy.knowsRemoteSessions) return true;
    const there = this.strategy.remoteResources(user).filter((entry) => entry.node === node);
    return there.length === 0 || there.some((entry) => entry.carbons !== false);
  }

  rosterPush(user: string, query: Element): void {
    this.sendTo(this.strategy.nodesForUser(user), LINK.rosterPush, query, { user }, 'roster-push');
  }

  blocklistChanged(user: string, command: Element): void {
    // Every node may cache the list (it checks stanzas to the user), so every node hears of it.
    this.sendTo(this.cluster.connectedNodes(), LINK.blocklist, command, { user }, 'blocklist');
  }

  archivePrefsChanged(user: string): void {
    // Every node may cache them (it checks messages to the user), so every node hears of it.
    this.sendTo(this.cluster.connectedNodes(), LINK.archivePrefs, undefined, { user }, 'archive-prefs');
  }

  remoteResources(bare: string): ResourceEntry[] | undefined {
    return this.strategy.knowsRemoteSessions ? this.strategy.remoteResources(bare) : undefined;
  }

  notifyInterested(stanza: Element, users: string[], feature: string): void {
    // One message per node, naming the users it may hold; that node filters by its own caps knowledge.
    const byNode = new Map<string, Element[]>();
    for (const user of users) {
      for (const node of this.strategy.nodesForUser(user)) {
        const list = byNode.get(node) ?? [];
        list.push(new Element('user', { jid: user }));
        byNode.set(node, list);
      }
    }
    if (this.logger.debugEnabled) this.logger.debug('routing decision', { strategy: this.strategy.name, op: LINK.interested, feature, nodes: [...byNode.keys()] });
    for (const [node, list] of byNode) {
      this.count('pep', 1);
      this.cluster.send(node, LINK.interested, [stanza, ...list], { feature });
    }
  }

  offlineStored(users: string[]): void {
    const nodes = this.cluster.connectedNodes();
    if (nodes.length === 0) return;
    const list = users.map((user) => new Element('u', { jid: user }));
    for (const node of nodes) this.cluster.send(node, LINK.offlineStored, list);
  }

  lostRoute(stanza: Element): RouteTrace | undefined {
    return this.cluster.lostRoute(stanza);
  }

  deliveredBefore(trace: RouteTrace): boolean {
    return this.cluster.deliveredBefore(trace);
  }

  /** Routes to each node; resolves with how many delivered (a node lost before it answered counts as 0). */
  private async deliver(nodes: string[], mode: RouteMode, stanza: Element, to: string, reason: string, carbons = false): Promise<number> {
    if (this.logger.debugEnabled) this.logger.debug('routing decision', { strategy: this.strategy.name, mode, to, nodes });
    if (nodes.length === 0) return 0;
    this.count(reason, nodes.length);
    const attrs: Record<string, string> = { mode, to };
    if (carbons) attrs.carbons = '1';
    if (nodes.length === 1) return (await this.cluster.route(nodes[0], stanza, attrs)) ? 1 : 0;
    const outcomes = await Promise.all(nodes.map((node) => this.cluster.route(node, stanza, attrs)));
    return outcomes.filter(Boolean).length;
  }

  private sendTo(nodes: string[], op: LinkKind, payload: Element | undefined, attrs: Record<string, string>, reason: string): void {
    if (this.logger.debugEnabled) this.logger.debug('routing decision', { strategy: this.strategy.name, op, ...attrs, nodes });
    if (nodes.length === 0) return;
    this.count(reason, nodes.length);
    for (const node of nodes) this.cluster.send(node, op, payload, attrs);
  }

  private count(reason: string, n: number): void {
    this.counters.forwarded.set(reason, (this.counters.forwarded.get(reason) ?? 0) + n);
  }

  // ---- session events ----

  private publish(type: SessionEvent['type'], session: Session): void {
    // The unavailable presence of a session that ends comes after its unbind (the end listeners
    // run in that order): published, it put the session back into every peer's map as a ghost.
    if (type === 'presence' && this.unbound.has(session)) return;
    if (session.carbons && !session.ended) this.carbonsHere.add(session);
    else this.carbonsHere.delete(session);
    const entry = entryOf(session, this.cluster.localNode);
    this.strategy.sessionEvent({ type, entry } as SessionEvent);
    const element = new Element('r', encodeEntry(entry));
    // Every event also says how many carbons-enabled sessions this node has (`cc`): a peer sends
    // carbons here only while there is one.
    const attrs = { type, cc: String(this.carbonsHere.size) };
    for (const node of this.cluster.connectedNodes()) this.cluster.send(node, LINK.session, element, attrs);
  }

  private applyRemote(type: SessionEvent['type'], entry: ResourceEntry): void {
    this.strategy.sessionEvent({ type, entry } as SessionEvent);
    if (type !== 'bound') return;
    // A session that moved (XEP-0198 resumption on another node) lives there now: if its old node dies, nobody is told it left.
    const seen = this.seenPresence.get(entry.jid);
    if (seen) seen.node = entry.node;
    // RFC 6120 §7.7.2.2 across nodes: the same full JID bound elsewhere later ends ours with <conflict/>.
    const jid = tryParseJID(entry.jid);
    const mine = jid && this.sessions.get(jid);
    if (mine && (mine.startedAt < entry.boundAt || (mine.startedAt === entry.boundAt && this.cluster.localNode < entry.node))) {
      this.logger.info('session replaced on another node', { conn: mine.id, jid: entry.jid, peer: entry.node });
      this.sessions.end(mine);
      mine.sink.close(new StreamError('conflict', 'Replaced by a new connection with the same resource'));
    }
  }

  private async nodeUp(node: string): Promise<void> {
    this.strategy.nodeJoined(node);
    try {
      const res = await this.cluster.request(node, LINK.sync, undefined, {}, SYNC_TIMEOUT_MS);
      for (const child of res.getChildren('r')) this.applyRemote('bound', decodeEntry(child));
      // A session event that arrived after the reply already said something newer.
      if (!this.carbonsThere.has(node)) this.noteCarbons(node, res.getChild('carbons')?.attrs.n);
      this.synced.add(node);
      this.logger.debug('synced sessions from peer', { peer: node, entries: res.getChildElements().length });
    } catch (err) {
      this.logger.warn('session sync with peer failed', { peer: node, err: String(err) });
    }
    await this.resendPresence(node);
    // While the link was down (a partition, a frozen or restarted node) messages for our online
    // users may have been stored by the other side: they get them now, not at their next login.
    await this.local?.deliverStoredToOnlineUsers().catch((err) => this.logger.warn('delivering stored messages after a link came up failed', { peer: node, err: String(err) }));
  }

  /**
   * A node that (re)joins hears the current presence of our available resources, for the users
   * it may hold: after a partition heals, contacts on both sides see each other again (DESIGN:
   * self-healing). Strategies that know where users are skip users the node does not hold.
   */
  private async resendPresence(node: string): Promise<void> {
    if (!this.local) return;
    try {
      for (const { user, stanza } of await this.local.presenceSnapshot()) {
        if (this.strategy.knowsRemoteSessions && !this.strategy.nodesForUser(user).includes(node)) continue;
        this.cluster.send(node, LINK.presence, stanza, { user });
      }
    } catch (err) {
      this.logger.warn('presence resync failed', { peer: node, err: String(err) });
    }
  }

  private nodeDown(node: string): void {
    this.synced.delete(node);
    this.carbonsThere.delete(node);
    this.strategy.nodeLeft(node);
    // The node's users are gone: whoever here saw them available sees them go (RFC 6121 §4.5.2 on their behalf).
    for (const [jid, seen] of this.seenPresence) {
      if (seen.node !== node) continue;
      this.seenPresence.delete(jid);
      for (const viewer of seen.viewers) {
        if (!viewer.ended) viewer.send(new Element('presence', { type: 'unavailable', from: jid, to: viewer.full }));
      }
    }
  }

  /** Remembers which local sessions saw a remote resource available, so its node's death can be told. */
  private trackPresence(node: string, stanza: Element, viewers: Session[]): void {
    if (stanza.name !== 'presence') return;
    const type = stanza.attrs.type as string | undefined;
    const from = stanza.attrs.from as string | undefined;
    if (!from || !from.includes('/') || (type !== undefined && type !== 'unavailable')) return;
    // A room occupant's presence comes from the room's node, not the occupant's: the MUC component
    // tells its users itself when a room's node is lost (status 333).
    if (stanza.getChild('x', NS.MUC_USER)) return;
    if (type === 'unavailable') {
      const seen = this.seenPresence.get(from);
      if (seen) for (const viewer of viewers) seen.viewers.delete(viewer);
      if (seen && seen.viewers.size === 0) this.seenPresence.delete(from);
      return;
    }
    let seen = this.seenPresence.get(from);
    if (!seen || seen.node !== node) {
      seen = { node, viewers: new Set() };
      this.seenPresence.set(from, seen);
    }
    for (const viewer of viewers) seen.viewers.add(viewer);
  }

  // ---- handlers: peers ask this node ----

  private registerHandlers(): void {
    const local = () => this.localOrFail();
    this.cluster.handle(LINK.session, (from, msg) => {
      const child = msg.getChildElements()[0];
      if (child) this.applyRemote(msg.attrs.type, { ...decodeEntry(child), node: from });
      this.noteCarbons(from, msg.attrs.cc);
    });
    this.cluster.handle(LINK.sync, () => [
      ...this.strategy.snapshot().concat(this.localEntriesIfNotTracked()).map((e) => new Element('r', encodeEntry(e))),
      new Element('carbons', { n: String(this.carbonsHere.size) }),
    ]);
    this.cluster.handle(LINK.route, (from, msg) =>
      this.ordered(from, (): boolean | Promise<boolean> => {
        const stanza = detach(msg);
        const to = tryParseJID(msg.attrs.to ?? '');
        if (!stanza || !to) return false;
        switch (msg.attrs.mode as RouteMode) {
          case 'message-resource':
            return local().messageToResource(stanza, to, msg.attrs.carbons === '1');
          case 'message-user':
            return local().messageToUser(stanza, to.bareString()) > 0;
          case 'stanza-resource': {
            const sender = tryParseJID(stanza.attrs.from ?? '');
            if (stanza.name !== 'presence' || !sender) return this.stanzaHere(from, stanza, to);
            // The recipient's block list is checked here, where it lives; filtered out is handled (nothing to fall back to).
            return local().presenceAllowed(stanza, sender, to).then((allowed) => (allowed ? this.stanzaHere(from, stanza, to) : true));
          }
          default:
            this.logger.warn('routed stanza with an unknown mode ignored', { from, mode: msg.attrs.mode });
            return false;
        }
      }),
    );
    this.cluster.handle(LINK.offlineStored, (_from, msg) => {
      local().deliverStored(msg.getChildElements().map((u) => String(u.attrs.jid)));
    });
    this.cluster.handle(LINK.presence, (from, msg) =>
      this.ordered(from, async () => {
        const stanza = detach(msg);
        const sender = tryParseJID(stanza?.attrs.from ?? '');
        const user = tryParseJID(msg.attrs.user ?? '');
        if (!stanza || !sender || !user) return;
        // The recipient's node holds its block list: the origin skips that check for users it does not host.
        if (!(await local().presenceAllowed(stanza, sender, user))) return;
        local().presenceToUser(stanza, msg.attrs.user);
        this.trackPresence(from, stanza, this.sessions.resources(msg.attrs.user).filter((s) => s.available));
      }),
    );
    this.cluster.handle(LINK.probe, async (_from, msg) => {
      const from = tryParseJID(msg.attrs.from ?? '');
      const to = tryParseJID(msg.attrs.to ?? '');
      if (from && to) await local().answerProbe(from, to);
    });
    this.cluster.handle(LINK.carbons, (node, msg) =>
      this.ordered(node, () => {
        const stanza = detach(msg);
        if (stanza) local().carbons(msg.attrs.kind, stanza, msg.attrs.user, msg.attrs.exclude);
      }),
    );
    this.cluster.handle(LINK.rosterPush, (node, msg) =>
      this.ordered(node, () => {
        const query = detach(msg);
        if (query) local().rosterPush(msg.attrs.user, query);
      }),
    );
    this.cluster.handle(LINK.blocklist, (_from, msg) => {
      const command = detach(msg);
      if (command) local().blocklistChanged(msg.attrs.user, command);
    });
    this.cluster.handle(LINK.archivePrefs, (_from, msg) => {
      if (msg.attrs.user) local().archivePrefsChanged(msg.attrs.user);
    });
    this.cluster.handle(LINK.interested, (node, msg) =>
      this.ordered(node, () => {
        const [stanza, ...users] = msg.getChildElements();
        if (!stanza) return;
        stanza.parent = null;
        local().notifyInterested(stanza, users.map((u) => String(u.attrs.jid)), msg.attrs.feature);
      }),
    );
  }

  private noteCarbons(node: string, count: string | undefined): void {
    const n = Number(count);
    if (count !== undefined && Number.isSafeInteger(n) && n >= 0) this.carbonsThere.set(node, n);
  }

  /**
   * What peers send for delivery to this node's clients runs in arrival order per sending node:
   * a stanza that needs an asynchronous check (e.g. the block list) never lets a later one overtake
   * it. With nothing waiting, it runs at once, so the link acknowledges it before the tick ends.
   */
  private ordered<T>(node: string, work: () => T | Promise<T>): T | Promise<T> {
    return this.inOrder.runOrNow(node, work);
  }

  /** A presence or IQ for a full JID bound here; false when it is not. */
  private stanzaHere(from: string, stanza: Element, to: JID): boolean {
    const delivered = this.localOrFail().stanzaToResource(stanza, to) > 0;
    const viewer = this.sessions.get(to);
    if (viewer) this.trackPresence(from, stanza, [viewer]);
    return delivered;
  }

  /** A strategy that keeps no map (broadcast) still tells a new peer about our sessions, for conflicts. */
  private localEntriesIfNotTracked(): ResourceEntry[] {
    if (this.strategy.knowsRemoteSessions) return [];
    return [...this.sessions.all()].map((session) => entryOf(session, this.cluster.localNode));
  }
}

function entryOf(session: Session, node: string): ResourceEntry {
  return { jid: session.full, node, available: session.available, priority: session.priority, boundAt: session.startedAt, carbons: session.carbons };
}

function encodeEntry(entry: ResourceEntry): Record<string, string> {
  const attrs: Record<string, string> = { jid: entry.jid, node: entry.node, available: entry.available ? '1' : '0', priority: String(entry.priority), at: String(entry.boundAt) };
  if (entry.carbons !== undefined) attrs.c = entry.carbons ? '1' : '0';
  return attrs;
}

function decodeEntry(element: Element): ResourceEntry {
  return {
    jid: String(element.attrs.jid),
    node: String(element.attrs.node),
    available: element.attrs.available === '1',
    priority: Number(element.attrs.priority) || 0,
    boundAt: Number(element.attrs.at) || 0,
    carbons: element.attrs.c === undefined ? undefined : element.attrs.c === '1',
  };
}

/** The payload of a link message, detached from its wrapper so it serialises and resolves on its own. */
function detach(msg: Element): Element | undefined {
  const child = msg.getChildElements()[0];
  if (child) child.parent = null;
  return child;
}

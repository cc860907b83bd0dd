import net from 'node:net';
import { Element } from 'ltx';
import type { Logger } from '../log';
import type { ClusterNodeRow, ClusterNodeStore } from '../storage/types';
import { ClusterLink, type LinkEvents, type LinkOptions } from './link';
import { LINK, isLinkKind, type LinkKind } from './catalogue';
import { deliveryHold } from '../sm/session';
import type { RouteTrace } from '../sm/remote-delivery';
import { ClusterRegistry } from './registry';

/**
 * A handler for one message kind. For a request its return value is the response payload; for a
 * routed message `false` means "nobody here took it" (a miss), anything else "delivered".
 */
export type ClusterHandler = (from: string, message: Element) => HandlerResult | Promise<HandlerResult>;
type HandlerResult = Element | Element[] | boolean | null | void;

/** Reconnect back-off: first retry after 250 ms, doubling up to 5 s. */
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
/** How long request() waits for an answer by default [5000 ms]. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 5000;
/**
 * Messages sent on a link and not yet acknowledged, at most [100,000]: past that the peer is not
 * keeping up and new messages are refused (routed ones count as missed and fall back).
 */
export const LINK_WINDOW = 100_000;
/** Closed links whose deliveries are remembered, so a stanza a peer re-routed to offline storage is not delivered twice [64, for an hour]. */
const CLOSED_LINKS_KEPT = 64;
const CLOSED_LINK_MEMORY_MS = 3600_000;


/**
 * Which of the last LINK_WINDOW routed messages from a peer were delivered here, one bit each.
 * A sender never has more than LINK_WINDOW unacknowledged, so whatever it re-routes after losing
 * the link is covered.
 */
class DeliveredRing {
  private readonly bits = new Uint8Array(LINK_WINDOW / 8);
  /** The highest sequence number recorded. */
  last = 0;

  set(seq: number, delivered: boolean): void {
    const i = seq % LINK_WINDOW;
    if (delivered) this.bits[i >> 3] |= 1 << (i & 7);
    else this.bits[i >> 3] &= ~(1 << (i & 7));
    if (seq > this.last) this.last = seq;
  }

  has(seq: number): boolean {
    if (seq <= 0 || seq > this.last || seq <= this.last - LINK_WINDOW) return false;
    const i = seq % LINK_WINDOW;
    return (this.bits[i >> 3] & (1 << (i & 7))) !== 0;
  }
}

export interface ClusterOptions {
  hostname: string;
  address: string;
  /** Port to listen on. */
  port: number;
  /** Port published in cluster_nodes for peers to dial. */
  advertisePort: number;
  bindAddress: string;
  secret?: string;
  version: string;
  heartbeat: number;
  nodeTimeout: number;
  linkHeartbeat: number;
  linkTimeout: number;
  connections: () => number;
  logger: Logger;
}

export class ClusterRequestError extends Error {
  constructor(readonly node: string, message: string) {
    super(`${node}: ${message}`);
  }
}

interface Pending {
  node: string;
  resolve(payload: Element): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** A link that is up, with both directions of its sequencing state. */
interface Channel {
  readonly link: ClusterLink;
  /** Outbound: routed and tracked messages awaiting their outcome, by sequence number. */
  readonly outcomes: Map<number, { resolve: (delivered: boolean) => void; stanza: Element }>;
  /** Outbound: messages 1..acked are handled by the peer. */
  acked: number;
  sent: number;
  /** Inbound: messages 1..handled are handled here; `done` holds those finished out of order. */
  handled: number;
  readonly done: Set<number>;
  misses: number[];
  /** Inbound: which routed messages were delivered here; the first sequence number of the chunk being handled. */
  readonly delivered: DeliveredRing;
  chunkFirst: number;
  lastReceived: number;
  /** An acknowledgement is owed: sent at the end of the input chunk, or on the next turn for work that finished later. */
  ackDue: boolean;
  ackScheduled: boolean;
  /** Acknowledgements waiting for slow clients' sockets to take what they cover, in order. */
  ackChain?: Promise<void>;
  acksWaiting: number;
}

/**
 * This node's view of the cluster: the registry (cluster_nodes, for discovery), one authenticated
 * link per peer (the node with the smaller name dials, so a pair never holds two), and the typed
 * messages of the catalogue (./catalogue.ts) over the links. A live, heartbeating link is proof of
 * life: a cluster_nodes row that looks stale never drops a link. Every message is acknowledged
 * cumulatively; routed messages learn their outcome from the acknowledgements, and when a link is
 * lost its unacknowledged routed tail counts as missed at once, so senders re-route it exactly once.
 * It routes nothing by itself: the session manager and the strategy decide what goes where.
 */
export class Cluster {
  readonly localNode: string;
  readonly registry: ClusterRegistry;
  private readonly channels = new Map<string, Channel>();
  private readonly dialing = new Map<string, { link?: ClusterLink; timer?: NodeJS.Timeout; backoff: number }>();
  private readonly handlers = new Map<LinkKind, ClusterHandler>();
  private readonly componentHandlers = new Map<string, Map<string, ClusterHandler>>();
  private readonly pending = new Map<string, Pending>();
  private readonly upListeners: ((node: string) => void | Promise<void>)[] = [];
  private readonly downListeners: ((node: string, reason: string) => void | Promise<void>)[] = [];
  private readonly goneListeners: ((node: string) => void)[] = [];
  /** The live nodes of the last registry refresh (for telling which are gone since). */
  private lastLive = new Set<string>();
  private readonly unknownKinds = new Set<string>();
  /** Routed stanzas whose link was lost before they were acknowledged, for the fallback to record. */
  private readonly lostRoutes = new WeakMap<Element, RouteTrace>();
  /** What closed links from peers delivered here, by the peer's name for its side of the link. */
  private readonly closedLinks = new Map<string, { delivered: DeliveredRing; at: number }>();
  private chunkStartedAt = 0;
  /** The channel whose input chunk is being handled (set by chunkStart). */
  private chunkChannel?: Channel;
  private server?: net.Server;
  private nextId = 0;
  private stopped = false;
  /** boshForwarded: BOSH requests that reached this node for a session another node owns (a balancer that is not sticky). */
  readonly counters = { linkDrops: 0, refusedSends: 0, rerouted: 0, boshForwarded: 0 };

  constructor(store: ClusterNodeStore, private readonly opts: ClusterOptions) {
    this.localNode = opts.hostname;
    this.registry = new ClusterRegistry(store, {
      hostname: opts.hostname,
      address: opts.address,
      port: opts.advertisePort,
      version: opts.version,
      heartbeat: opts.heartbeat,
      timeout: opts.nodeTimeout,
      connections: opts.connections,
      isConnected: (node) => this.channels.has(node),
      logger: opts.logger,
    });
    this.registry.onRefresh((live) => this.reconcile(live));
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    const server = net.createServer((socket) => {
      ClusterLink.accept(socket, this.linkOptions(), this.linkEvents);
    });
    server.on('error', (err) => this.opts.logger.error('cluster listener error', { err: err.message }));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.bindAddress, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    await this.registry.start();
  }

  async stop(): Promise<void> {
    this.closeLinks();
    await this.leave();
  }

  /** Closes the listener and every link; the node's row stays until leave(). */
  closeLinks(): void {
    this.stopped = true;
    this.server?.close();
    for (const entry of this.dialing.values()) clearTimeout(entry.timer);
    // What this node handled is acknowledged before the links go, so peers re-route none of it.
    for (const channel of this.channels.values()) this.sendAck(channel);
    for (const channel of [...this.channels.values()]) channel.link.close('shutting down');
    for (const entry of this.dialing.values()) entry.link?.close('shutting down');
  }

  /**
   * Deletes the node's row: the peers see it gone at their next refresh and look again for stored
   * messages of their online users (onNodeGone), so a stopping node writes its last offline
   * messages (what its closed links left unacknowledged) before it leaves.
   */
  async leave(): Promise<void> {
    await this.registry.stop();
  }

  /**
   * Resolves once every peer has acknowledged all this node sent it and every request has its
   * answer (nothing in flight on any link), or when `timeoutMs` runs out: then false. A stopping
   * node waits here before it closes its links.
   */
  async quiesce(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const busy = () => this.pending.size > 0 || [...this.channels.values()].some((channel) => channel.acked < channel.sent);
    while (busy()) {
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return true;
  }

  // ---- membership ----

  /** Marks this node draining in cluster_nodes: peers place no new rooms or pubsub nodes here. */
  drain(): Promise<void> {
    return this.registry.markDraining();
  }

  /** Whether `node` (this one included) is draining, by its cluster_nodes row as last read. */
  isDraining(node: string): boolean {
    return this.registry.isDraining(node);
  }

  onNodeUp(listener: (node: string) => void | Promise<void>): void {
    this.upListeners.push(listener);
  }

  onNodeDown(listener: (node: string, reason: string) => void | Promise<void>): void {
    this.downListeners.push(listener);
  }

  /**
   * A node is gone from cluster_nodes (it left, or its row expired): what it wrote to the database
   * before leaving is there now. Its link may have gone down (onNodeDown) well before.
   */
  onNodeGone(listener: (node: string) => void): void {
    this.goneListeners.push(listener);
  }

  /** Peers with a link that is up, sorted. */
  connectedNodes(): string[] {
    return [...this.channels.keys()].sort();
  }

  isConnected(node: string): boolean {
    return this.channels.has(node);
  }

  /** Every live node (fresh row or live link), this one included, sorted (for stable hashing). */
  liveNodes(): string[] {
    return [...this.registry.liveNodes().keys()].sort();
  }

  linkStats(): { node: string; up: boolean; queuedBytes: number; unacknowledged: number; stanzasIn: number; stanzasOut: number; bytesIn: number; bytesOut: number }[] {
    const nodes = new Set([...this.liveNodes(), ...this.channels.keys()]);
    nodes.delete(this.localNode);
    return [...nodes].sort().map((node) => {
      const channel = this.channels.get(node);
      return {
        node,
        up: Boolean(channel),
        queuedBytes: channel?.link.queuedBytes ?? 0,
        unacknowledged: channel ? channel.sent - channel.acked : 0,
        ...(channel?.link.counters ?? { stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0 }),
      };
    });
  }

  // ---- messages ----

  handle(kind: LinkKind, handler: ClusterHandler): void {
    if (kind === LINK.component) throw new Error('component messages are registered with handleComponent()');
    if (this.handlers.has(kind)) throw new Error(`cluster message kind registered twice: ${kind}`);
    this.handlers.set(kind, handler);
  }

  /** A component's own message `op` (kept apart per component by its name). */
  handleComponent(component: string, op: string, handler: ClusterHandler): void {
    const handlers = this.componentHandlers.get(component) ?? new Map<string, ClusterHandler>();
    if (handlers.has(op)) throw new Error(`cluster message registered twice: ${component} ${op}`);
    handlers.set(op, handler);
    this.componentHandlers.set(component, handlers);
  }

  /** One-way message; false when the link is down, its window or its queue is full. */
  send(node: string, kind: LinkKind, payload?: Element | Element[], attrs: Record<string, string> = {}): boolean {
    return this.transmit(node, message(kind, payload, attrs)) > 0;
  }

  /**
   * A one-way message that must not vanish with its link: `lost` runs, once, when the link goes
   * down before the peer handled it (a node killed or frozen), never after the peer handled it.
   * False when the link refused it at once (down, or its window or queue full).
   */
  sendTracked(node: string, kind: LinkKind, payload: Element, attrs: Record<string, string>, lost: () => void): boolean {
    const seq = this.transmit(node, message(kind, payload, attrs));
    if (seq === 0) return false;
    this.channels.get(node)!.outcomes.set(seq, { resolve: (handled) => handled || lost(), stanza: payload });
    return true;
  }

  /**
   * A routed stanza: resolves true once the peer has delivered it, false when nobody there took it,
   * the link was lost before the peer handled it, or the link refused it. Never times out: the
   * link's heartbeats bound the wait.
   */
  route(node: string, payload: Element, attrs: Record<string, string>): Promise<boolean> {
    const seq = this.transmit(node, message(LINK.route, payload, { ...attrs, r: '1' }), true);
    if (seq === 0) return Promise.resolve(false);
    const channel = this.channels.get(node)!;
    return new Promise<boolean>((resolve) => channel.outcomes.set(seq, { resolve, stanza: payload }));
  }

  /** Where `stanza` went before its link was lost unacknowledged (it is being re-routed), if it did. */
  lostRoute(stanza: Element): RouteTrace | undefined {
    return this.lostRoutes.get(stanza);
  }

  /**
   * Whether this node delivered the routed message `seq` of a link that has closed since: then
   * the copy its sender re-routed (stored offline) must not be delivered again.
   */
  deliveredBefore(trace: RouteTrace): boolean {
    return this.closedLinks.get(trace.link)?.delivered.has(trace.seq) ?? false;
  }

  /** Request/response; rejects with ClusterRequestError when the link is down, the peer fails, or time runs out. */
  request(node: string, kind: LinkKind, payload?: Element | Element[], attrs: Record<string, string> = {}, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<Element> {
    if (!this.channels.has(node)) return Promise.reject(new ClusterRequestError(node, 'not connected'));
    const id = `${++this.nextId}`;
    return new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ClusterRequestError(node, `${kind} timed out`));
      }, timeoutMs);
      this.pending.set(id, { node, resolve, reject, timer });
      if (this.transmit(node, message(kind, payload, { ...attrs, id })) === 0) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new ClusterRequestError(node, 'link refused the request (down or full)'));
      }
    });
  }

  /** Sends on the node's link (`batched`: see ClusterLink.send); the message's sequence number, or 0 when refused. */
  private transmit(node: string, element: Element, batched = false): number {
    const channel = this.channels.get(node);
    const seq = channel && channel.sent - channel.acked < LINK_WINDOW ? channel.link.send(element, batched) : 0;
    if (seq === 0) this.counters.refusedSends++;
    else channel!.sent = seq;
    return seq;
  }

  private dispatch(channel: Channel, element: Element, seq: number): void {
    const from = channel.link.peer;
    if (element.name === 'res') {
      this.settleRequest(from, element);
      return this.handled(channel, seq, false);
    }
    const kind = element.attrs.k as string | undefined;
    const id = element.attrs.id as string | undefined;
    const handler = element.name === 'm' ? this.handlerFor(kind, element) : undefined;
    if (!handler) {
      // A newer minor version's message: logged once, acknowledged, and (for a request) answered.
      const what = element.name === 'm' ? `${kind} ${element.attrs.c ?? ''}`.trim() : `<${element.name}/>`;
      if (!this.unknownKinds.has(what)) {
        this.unknownKinds.add(what);
        this.opts.logger.warn('unknown cluster message ignored', { from, kind: what });
      }
      if (id) this.reply(channel, new Element('res', { id, error: `unknown message ${what}` }));
      return this.handled(channel, seq, element.attrs.r === '1', element.attrs.r === '1');
    }
    const finish = (result: HandlerResult) => {
      if (id) {
        const res = new Element('res', { id });
        if (result && typeof result === 'object') for (const child of Array.isArray(result) ? result : [result]) res.cnode(child);
        this.reply(channel, res);
      }
      this.handled(channel, seq, element.attrs.r === '1' && result === false, element.attrs.r === '1');
    };
    const fail = (err: unknown) => {
      this.opts.logger.error('cluster handler failed', { kind, from, err: String((err as Error)?.stack ?? err) });
      if (id) this.reply(channel, new Element('res', { id, error: 'internal error' }));
      this.handled(channel, seq, element.attrs.r === '1', element.attrs.r === '1');
    };
    try {
      const result = handler(from, element);
      if (result instanceof Promise) result.then(finish, fail);
      else finish(result);
    } catch (err) {
      fail(err);
    }
  }

  private handlerFor(kind: string | undefined, element: Element): ClusterHandler | undefined {
    if (!isLinkKind(kind)) return undefined;
    if (kind !== LINK.component) return this.handlers.get(kind);
    return this.componentHandlers.get(String(element.attrs.c))?.get(String(element.attrs.op));
  }

  private reply(channel: Channel, res: Element): void {
    // Answers go on the link the request came on; a reply to a link that has gone is moot.
    if (this.channels.get(channel.link.peer) !== channel) return;
    const seq = channel.link.send(res);
    if (seq > 0) channel.sent = seq;
  }

  private settleRequest(from: string, element: Element): void {
    const pending = this.pending.get(element.attrs.id);
    if (!pending || pending.node !== from) return;
    this.pending.delete(element.attrs.id);
    clearTimeout(pending.timer);
    if (element.attrs.error) pending.reject(new ClusterRequestError(from, element.attrs.error));
    else pending.resolve(element);
  }

  /** Message `seq` from the peer is handled; acknowledgements go out once per turn of the event loop. */
  private handled(channel: Channel, seq: number, missed: boolean, routed = false): void {
    if (missed) channel.misses.push(seq);
    channel.delivered.set(seq, routed && !missed);
    if (seq === channel.handled + 1) {
      channel.handled = seq;
      while (channel.done.delete(channel.handled + 1)) channel.handled++;
    } else {
      channel.done.add(seq);
    }
    channel.ackDue = true;
    if (channel.ackScheduled) return;
    channel.ackScheduled = true;
    setImmediate(() => {
      channel.ackScheduled = false;
      this.sendAck(channel);
    });
  }

  /**
   * Acknowledges what is handled so far. A routed stanza counts as handled once its delivery is in
   * the kernel's hands: when a slow client's socket still holds some in memory (`unwritten`), the
   * acknowledgement waits for it, so a node killed meanwhile leaves it to the sender to re-route.
   */
  private sendAck(channel: Channel, unwritten: Promise<void>[] = []): void {
    if (!channel.ackDue) return;
    channel.ackDue = false;
    const handled = channel.handled;
    const misses = channel.misses;
    channel.misses = [];
    if (unwritten.length === 0 && channel.acksWaiting === 0) {
      channel.link.acknowledge(handled, misses);
      return;
    }
    channel.acksWaiting++;
    channel.ackChain = (channel.ackChain ?? Promise.resolve())
      .then(() => Promise.all(unwritten))
      .then(() => {
        channel.link.acknowledge(handled, misses);
        if (--channel.acksWaiting === 0) channel.ackChain = undefined;
      });
  }

  /** The peer has handled 1..handled; `misses` (any of ours) found nobody. */
  private acknowledged(channel: Channel, handled: number, misses: number[]): void {
    for (const seq of misses) {
      const outcome = channel.outcomes.get(seq);
      if (!outcome) continue;
      channel.outcomes.delete(seq);
      outcome.resolve(false);
    }
    if (channel.outcomes.size > 0) {
      for (let seq = channel.acked + 1; seq <= handled; seq++) {
        const outcome = channel.outcomes.get(seq);
        if (!outcome) continue;
        channel.outcomes.delete(seq);
        outcome.resolve(true);
      }
    }
    if (handled > channel.acked) channel.acked = handled;
  }

  // ---- links ----

  private readonly linkEvents: LinkEvents = {
    ready: (link) => this.linkReady(link),
    message: (link, element, seq) => {
      const channel = this.channels.get(link.peer);
      if (channel?.link !== link) return;
      channel.lastReceived = seq;
      this.dispatch(channel, element, seq);
    },
    chunkStart: (link) => {
      this.chunkStartedAt = Date.now();
      const channel = this.channels.get(link.peer);
      this.chunkChannel = channel?.link === link ? channel : undefined;
      if (this.chunkChannel) this.chunkChannel.chunkFirst = this.chunkChannel.lastReceived + 1;
      deliveryHold.hold();
    },
    chunkHandled: (link) => {
      // The chunk's own channel, also when the link closed while the chunk was parsed (a protocol
      // error after some of its messages): its delivered bits outlive it (rememberClosed).
      const started = this.chunkChannel;
      this.chunkChannel = undefined;
      const channel = this.channels.get(link.peer);
      // Frozen (SIGSTOP, a stalled host) for longer than the link timeout while handling this
      // chunk: the peer has given up on the link and re-routed what we did not acknowledge, so
      // the deliveries held for it must not leave now.
      const frozen = Date.now() - this.chunkStartedAt > this.opts.linkTimeout * 1000;
      if (frozen || channel?.link !== link) {
        const dropped = deliveryHold.drop();
        // Not delivered after all: the copies the peer re-routes to offline storage must go out.
        if (started?.link === link) for (let seq = started.chunkFirst; seq <= started.lastReceived; seq++) started.delivered.set(seq, false);
        link.close(`input handled too late (${Date.now() - this.chunkStartedAt} ms); ${dropped} deliveries left to the peer's re-routing`);
        return;
      }
      // The deliveries go to the clients' sockets, then at once the acknowledgement that covers
      // them: a node killed in that instant makes its peers deliver a few stanzas twice, never lose them.
      let unwritten: Promise<void>[] = [];
      try {
        unwritten = deliveryHold.release();
      } finally {
        this.sendAck(channel, unwritten);
      }
    },
    ack: (link, handled, misses) => {
      const channel = this.channels.get(link.peer);
      if (channel?.link === link) this.acknowledged(channel, handled, misses);
    },
    closed: (link, reason) => this.linkClosed(link, reason),
  };

  private linkOptions(): LinkOptions {
    return {
      localNode: this.localNode,
      ownPassword: this.registry.password,
      secret: this.opts.secret,
      lookupPassword: (node) => this.registry.passwordOf(node),
      heartbeatMs: this.opts.linkHeartbeat * 1000,
      timeoutMs: this.opts.linkTimeout * 1000,
      logger: this.opts.logger,
    };
  }

  private linkReady(link: ClusterLink): void {
    if (this.stopped || this.channels.has(link.peer)) {
      link.close(this.stopped ? 'shutting down' : 'duplicate link');
      return;
    }
    const entry = this.dialing.get(link.peer);
    if (entry) entry.backoff = BACKOFF_MIN_MS;
    this.channels.set(link.peer, {
      link, outcomes: new Map(), acked: 0, sent: 0, handled: 0, done: new Set(), misses: [],
      delivered: new DeliveredRing(), chunkFirst: 1, lastReceived: 0, ackDue: false, ackScheduled: false, acksWaiting: 0,
    });
    this.opts.logger.info('cluster node connected', { peer: link.peer, version: link.peerVersion });
    for (const listener of this.upListeners) void listener(link.peer);
  }

  private linkClosed(link: ClusterLink, reason: string): void {
    const entry = this.dialing.get(link.peer);
    if (entry?.link === link) {
      entry.link = undefined;
      this.scheduleDial(link.peer);
    }
    const channel = this.channels.get(link.peer);
    if (channel?.link !== link) return;
    this.channels.delete(link.peer);
    this.counters.linkDrops++;
    for (const [id, pending] of this.pending) {
      if (pending.node !== link.peer) continue;
      this.pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new ClusterRequestError(link.peer, 'link lost'));
    }
    this.opts.logger.warn('cluster node disconnected', { peer: link.peer, reason, rerouted: channel.outcomes.size });
    // The peer's state is void from now on (strategies forget its users) before the tail re-routes.
    for (const listener of this.downListeners) void listener(link.peer, reason);
    this.rememberClosed(link.peerId, channel.delivered);
    // The unacknowledged routed tail: the peer may not have delivered it, so it falls back here,
    // once. Each stanza keeps its trace: stored offline, it names what the peer can recognise.
    this.counters.rerouted += channel.outcomes.size;
    const tail = [...channel.outcomes];
    channel.outcomes.clear();
    for (const [seq, { resolve, stanza }] of tail) {
      this.lostRoutes.set(stanza, { link: link.id, seq });
      resolve(false);
    }
  }

  private rememberClosed(peerId: string, delivered: DeliveredRing): void {
    const now = Date.now();
    for (const [id, entry] of this.closedLinks) {
      if (this.closedLinks.size < CLOSED_LINKS_KEPT && now - entry.at < CLOSED_LINK_MEMORY_MS) break;
      this.closedLinks.delete(id);
    }
    this.closedLinks.set(peerId, { delivered, at: now });
  }

  /** After each registry refresh: dial the live peers we are responsible for; forget dead ones we are not linked to. */
  private reconcile(live: ReadonlyMap<string, ClusterNodeRow>): void {
    if (this.stopped) return;
    const gone = [...this.lastLive].filter((node) => !live.has(node));
    this.lastLive = new Set(live.keys());
    for (const node of gone) for (const listener of this.goneListeners) listener(node);
    for (const [node, entry] of this.dialing) {
      if (live.has(node) || this.channels.has(node)) continue;
      clearTimeout(entry.timer);
      entry.link?.close('its cluster_nodes row expired');
      this.dialing.delete(node);
    }
    for (const node of live.keys()) {
      // The node with the smaller name dials: one link per pair.
      if (node <= this.localNode) continue;
      let entry = this.dialing.get(node);
      if (!entry) {
        entry = { backoff: BACKOFF_MIN_MS };
        this.dialing.set(node, entry);
      }
      if (!entry.link && !entry.timer) this.dial(node);
    }
  }

  private dial(node: string): void {
    const entry = this.dialing.get(node);
    const row = this.registry.liveNodes().get(node);
    if (!entry || !row || this.stopped || this.channels.has(node) || entry.link) return;
    entry.link = ClusterLink.dial({ hostname: node, address: row.address, port: row.port }, this.linkOptions(), this.linkEvents);
  }

  private scheduleDial(node: string): void {
    const entry = this.dialing.get(node);
    if (!entry || this.stopped) return;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      this.dial(node);
    }, entry.backoff);
    entry.timer.unref();
    entry.backoff = Math.min(entry.backoff * 2, BACKOFF_MAX_MS);
  }
}

function message(kind: LinkKind, payload: Element | Element[] | undefined, attrs: Record<string, string>): Element {
  const element = new Element('m', { k: kind, ...attrs });
  // Children are only serialised: pushed without re-parenting, so a stanza sent to several nodes stays intact.
  for (const child of payload ? (Array.isArray(payload) ? payload : [payload]) : []) element.children.push(child);
  return element;
}

import net from 'node:net';
import { Element } from 'ltx';
import type { Logger } from '../log';
import type { ClusterNodeRow, ClusterNodeStore } from '../storage/types';
import { ClusterLink, type LinkEvents, type LinkOptions } from './link';
import { ClusterRegistry } from './registry';

/** A handler for one message kind; for requests its return value is the response payload. */
export type ClusterHandler = (from: string, message: Element) => Element | Element[] | null | void | Promise<Element | Element[] | null | void>;

/** Reconnect back-off: first retry after 250 ms, doubling up to 5 s. */
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
/** How long request() waits for an answer by default [5000 ms]. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 5000;

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

/**
 * This node's view of the cluster: the registry (cluster_nodes), one authenticated link per peer
 * (the node with the smaller name dials, so a pair never holds two), and typed messages over the
 * links: one-way `<msg op=...>` and request/response `<msg op id>` / `<res id>`. It routes
 * nothing by itself: the session manager and the strategy decide what goes where.
 */
export class Cluster {
  readonly localNode: string;
  readonly registry: ClusterRegistry;
  private readonly links = new Map<string, ClusterLink>();
  private readonly dialing = new Map<string, { link?: ClusterLink; timer?: NodeJS.Timeout; backoff: number }>();
  private readonly handlers = new Map<string, ClusterHandler>();
  private readonly pending = new Map<string, Pending>();
  private readonly upListeners: ((node: string) => void | Promise<void>)[] = [];
  private readonly downListeners: ((node: string, reason: string) => void | Promise<void>)[] = [];
  private server?: net.Server;
  private nextId = 0;
  private stopped = false;
  readonly counters = { linkDrops: 0, refusedSends: 0 };

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
      logger: opts.logger,
    });
    this.registry.onRefresh((live) => this.reconcile(live));
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    const server = net.createServer((socket) => {
      const link = ClusterLink.accept(socket, this.linkOptions(), this.linkEvents);
      void link;
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
    this.stopped = true;
    this.server?.close();
    for (const entry of this.dialing.values()) clearTimeout(entry.timer);
    for (const link of [...this.links.values()]) link.close('shutting down');
    for (const entry of this.dialing.values()) entry.link?.close('shutting down');
    await this.registry.stop();
  }

  // ---- membership ----

  onNodeUp(listener: (node: string) => void | Promise<void>): void {
    this.upListeners.push(listener);
  }

  onNodeDown(listener: (node: string, reason: string) => void | Promise<void>): void {
    this.downListeners.push(listener);
  }

  /** Peers with a link that is up, sorted. */
  connectedNodes(): string[] {
    return [...this.links.keys()].sort();
  }

  isConnected(node: string): boolean {
    return this.links.has(node);
  }

  /** Every live node of the table, this one included, sorted (for stable hashing). */
  liveNodes(): string[] {
    return [...this.registry.liveNodes().keys()].sort();
  }

  linkStats(): { node: string; up: boolean; queuedBytes: number; stanzasIn: number; stanzasOut: number; bytesIn: number; bytesOut: number }[] {
    return this.liveNodes()
      .filter((node) => node !== this.localNode)
      .map((node) => {
        const link = this.links.get(node);
        return {
          node,
          up: Boolean(link),
          queuedBytes: link?.queuedBytes ?? 0,
          ...(link?.counters ?? { stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0 }),
        };
      });
  }

  // ---- messages ----

  handle(op: string, handler: ClusterHandler): void {
    if (this.handlers.has(op)) throw new Error(`cluster op registered twice: ${op}`);
    this.handlers.set(op, handler);
  }

  /** One-way message; false when the link is down or full. */
  send(node: string, op: string, payload?: Element | Element[], attrs: Record<string, string> = {}): boolean {
    const link = this.links.get(node);
    if (!link) {
      this.counters.refusedSends++;
      return false;
    }
    const ok = link.send(message(op, payload, attrs));
    if (!ok) this.counters.refusedSends++;
    return ok;
  }

  /** Request/response; rejects with ClusterRequestError when the link is down, the peer fails, or time runs out. */
  request(node: string, op: string, payload?: Element | Element[], attrs: Record<string, string> = {}, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<Element> {
    const link = this.links.get(node);
    if (!link) return Promise.reject(new ClusterRequestError(node, 'not connected'));
    const id = `${++this.nextId}`;
    return new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ClusterRequestError(node, `${op} timed out`));
      }, timeoutMs);
      this.pending.set(id, { node, resolve, reject, timer });
      if (!link.send(message(op, payload, { ...attrs, id }))) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new ClusterRequestError(node, 'link queue full'));
      }
    });
  }

  private async dispatch(from: string, element: Element): Promise<void> {
    if (element.name === 'res') {
      const pending = this.pending.get(element.attrs.id);
      if (!pending || pending.node !== from) return;
      this.pending.delete(element.attrs.id);
      clearTimeout(pending.timer);
      if (element.attrs.error) pending.reject(new ClusterRequestError(from, element.attrs.error));
      else pending.resolve(element);
      return;
    }
    if (element.name !== 'msg') return; // a newer minor version's message: ignored (rolling upgrades)
    const op = element.attrs.op as string;
    const id = element.attrs.id as string | undefined;
    const handler = this.handlers.get(op);
    if (!handler) {
      if (id) this.links.get(from)?.send(new Element('res', { id, error: `unknown op ${op}` }));
      return;
    }
    try {
      const result = await handler(from, element);
      if (!id) return;
      const res = new Element('res', { id });
      for (const child of result ? (Array.isArray(result) ? result : [result]) : []) res.cnode(child);
      this.links.get(from)?.send(res);
    } catch (err) {
      this.opts.logger.error('cluster handler failed', { op, from, err: String((err as Error)?.stack ?? err) });
      if (id) this.links.get(from)?.send(new Element('res', { id, error: 'internal error' }));
    }
  }

  // ---- links ----

  private readonly linkEvents: LinkEvents = {
    ready: (link) => this.linkReady(link),
    message: (link, element) => void this.dispatch(link.peer, element),
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
    if (this.stopped || this.links.has(link.peer)) {
      link.close(this.stopped ? 'shutting down' : 'duplicate link');
      return;
    }
    const entry = this.dialing.get(link.peer);
    if (entry) entry.backoff = BACKOFF_MIN_MS;
    this.links.set(link.peer, link);
    this.opts.logger.info('cluster node connected', { node: link.peer, version: link.peerVersion });
    for (const listener of this.upListeners) void listener(link.peer);
  }

  private linkClosed(link: ClusterLink, reason: string): void {
    const entry = this.dialing.get(link.peer);
    if (entry?.link === link) {
      entry.link = undefined;
      this.scheduleDial(link.peer);
    }
    if (this.links.get(link.peer) !== link) return;
    this.links.delete(link.peer);
    this.counters.linkDrops++;
    for (const [id, pending] of this.pending) {
      if (pending.node !== link.peer) continue;
      this.pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new ClusterRequestError(link.peer, 'link lost'));
    }
    this.opts.logger.warn('cluster node disconnected', { node: link.peer, reason });
    for (const listener of this.downListeners) void listener(link.peer, reason);
  }

  /** After each registry refresh: dial new peers we are responsible for, drop links to dead ones. */
  private reconcile(live: ReadonlyMap<string, ClusterNodeRow>): void {
    if (this.stopped) return;
    for (const [node, link] of this.links) {
      if (!live.has(node)) link.close('its cluster_nodes row expired');
    }
    for (const [node, entry] of this.dialing) {
      if (!live.has(node)) {
        clearTimeout(entry.timer);
        entry.link?.close('its cluster_nodes row expired');
        this.dialing.delete(node);
      }
    }
    for (const node of live.keys()) {
      // The node with the smaller name dials: one link per pair.
      if (node <= this.localNode || this.dialing.has(node)) continue;
      this.dialing.set(node, { backoff: BACKOFF_MIN_MS });
      this.dial(node);
    }
  }

  private dial(node: string): void {
    const entry = this.dialing.get(node);
    const row = this.registry.liveNodes().get(node);
    if (!entry || !row || this.stopped || this.links.has(node) || entry.link) return;
    entry.link = ClusterLink.dial({ hostname: node, address: row.address, port: row.port }, this.linkOptions(), this.linkEvents);
  }

  private scheduleDial(node: string): void {
    const entry = this.dialing.get(node);
    if (!entry || this.stopped) return;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.dial(node), entry.backoff);
    entry.timer.unref();
    entry.backoff = Math.min(entry.backoff * 2, BACKOFF_MAX_MS);
  }
}

function message(op: string, payload: Element | Element[] | undefined, attrs: Record<string, string>): Element {
  const element = new Element('msg', { op, ...attrs });
  // Children are only serialised: pushed without re-parenting, so a stanza sent to several nodes stays intact.
  for (const child of payload ? (Array.isArray(payload) ? payload : [payload]) : []) element.children.push(child);
  return element;
}

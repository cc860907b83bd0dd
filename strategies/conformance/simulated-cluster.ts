import type { ClusteringStrategy, ResourceEntry, SessionEvent, StrategyContext } from '../clustering-strategy';
import { loadStrategy } from '../load-strategy';

/** What the suite runs against: 'broadcast', 'online-users-caching', a module path, or a factory. */
export type StrategyUnderTest = string | ((ctx: StrategyContext) => ClusteringStrategy);

/** A StrategyContext whose links the suite brings up and down. */
export class TestContext implements StrategyContext {
  readonly peers = new Set<string>();
  constructor(readonly localNode: string) {}
  connectedNodes(): string[] {
    return [...this.peers].sort();
  }
}

/** One node's strategy instance, as its session manager holds it. */
export interface View {
  ctx: TestContext;
  strategy: ClusteringStrategy;
}

export function createStrategy(subject: StrategyUnderTest, ctx: StrategyContext): ClusteringStrategy {
  return typeof subject === 'string' ? loadStrategy(subject, ctx) : subject(ctx);
}

export function bareOf(jid: string): string {
  const slash = jid.indexOf('/');
  return slash === -1 ? jid : jid.slice(0, slash);
}

/**
 * The truth about which sessions exist on which node, and the strategies that are told about it
 * the way server/cluster/cluster-sessions.ts tells them: a node's own events directly, a peer's
 * events only while its link is up, and on link-up the peer's sync answer as 'bound' events.
 */
export class SimulatedCluster {
  /** Full JID -> the binding that holds it now. */
  readonly sessions = new Map<string, ResourceEntry>();
  /** Every full JID ever bound, to ask the strategies about later. */
  readonly jids = new Set<string>();
  readonly views: View[] = [];
  /** Every binding ever made, by node and JID, so a stale event can name an old one. */
  private readonly bindings = new Map<string, ResourceEntry>();
  private clock = 1_700_000_000_000;

  constructor(private readonly subject: StrategyUnderTest) {}

  /** A node running the strategy under test, with links to `peers` (each synced as it comes up). */
  addNode(localNode: string, peers: string[]): View {
    const ctx = new TestContext(localNode);
    const view = { ctx, strategy: createStrategy(this.subject, ctx) };
    this.views.push(view);
    for (const peer of peers) this.linkUp(view, peer);
    return view;
  }

  bind(jid: string, node: string): void {
    const entry: ResourceEntry = { jid, node, available: false, priority: 0, boundAt: (this.clock += 1000) };
    this.bindings.set(`${node} ${jid}`, entry);
    this.sessions.set(jid, entry);
    this.jids.add(jid);
    this.publish('bound', entry);
  }

  /** Presence from the binding of `jid` on `node`, which may no longer be the current one. */
  presence(jid: string, node: string, available: boolean, priority = 0): void {
    const entry = { ...this.binding(jid, node), available, priority };
    this.bindings.set(`${node} ${jid}`, entry);
    if (this.sessions.get(jid)?.node === node) this.sessions.set(jid, entry);
    this.publish('presence', entry);
  }

  /** The binding of `jid` on `node` ends; a newer binding of the same JID elsewhere stays. */
  unbind(jid: string, node: string): void {
    const entry = this.binding(jid, node);
    this.bindings.delete(`${node} ${jid}`);
    if (this.sessions.get(jid)?.node === node) this.sessions.delete(jid);
    this.publish('unbound', entry);
  }

  /** `view`'s link to `node` comes up; it asks `node` for a sync as cluster-sessions does. */
  linkUp(view: View, node: string): void {
    view.ctx.peers.add(node);
    view.strategy.nodeJoined(node);
    for (const entry of this.syncAnswer(node)) view.strategy.sessionEvent({ type: 'bound', entry: { ...entry } });
  }

  /** `view`'s link to `node` goes down: the node left, crashed or is cut off. */
  linkDown(view: View, node: string): void {
    view.ctx.peers.delete(node);
    view.strategy.nodeLeft(node);
  }

  /** Sessions that `view` can reach: its own and those of peers whose link is up. */
  reachable(view: View): ResourceEntry[] {
    return [...this.sessions.values()].filter((e) => e.node === view.ctx.localNode || view.ctx.peers.has(e.node));
  }

  /** What `node` answers a sync: its strategy's snapshot, plus its sessions when the strategy keeps no map. */
  private syncAnswer(node: string): ResourceEntry[] {
    const own = [...this.sessions.values()].filter((e) => e.node === node);
    const source = this.views.find((v) => v.ctx.localNode === node);
    if (!source) return own;
    return source.strategy.snapshot().concat(source.strategy.knowsRemoteSessions ? [] : own);
  }

  private publish(type: SessionEvent['type'], entry: ResourceEntry): void {
    for (const view of this.views) {
      if (entry.node !== view.ctx.localNode && !view.ctx.peers.has(entry.node)) continue;
      view.strategy.sessionEvent({ type, entry: { ...entry } } as SessionEvent);
    }
  }

  private binding(jid: string, node: string): ResourceEntry {
    const entry = this.bindings.get(`${node} ${jid}`);
    if (!entry) throw new Error(`conformance suite bug: ${jid} was never bound on ${node}`);
    return entry;
  }
}

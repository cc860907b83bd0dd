/**
 * The pluggable clustering policy (DESIGN: ClusteringStrategy). The session manager asks it
 * "which nodes must see a stanza for this user?" and tells it about session and node events.
 * It routes; it never owns sockets and never sends anything itself.
 *
 * A custom strategy is a JS module whose default export is a class (or factory function) taking
 * a StrategyContext and returning a ClusteringStrategy; name it with
 * `--sm-cluster-strategy-class = ./my-strategy.js`. Every strategy passes the same conformance suite
 * (strategies/conformance/); `npm run test:strategy -- ./my-strategy.js` runs it against a module.
 */

/** One bound resource somewhere in the cluster. */
export interface ResourceEntry {
  /** Full JID. */
  jid: string;
  /** Node the session is bound on. */
  node: string;
  /** Has sent available presence (RFC 6121 §4.2) and not gone unavailable. */
  available: boolean;
  /** Presence priority, 0 until the first available presence. */
  priority: number;
  /** When the resource was bound (ms since the epoch): the older of two equal full JIDs loses. */
  boundAt: number;
  /**
   * Has enabled XEP-0280 carbons; undefined when the node did not say. Carbons travel only to
   * nodes that may hold a carbons-enabled resource of the user, so a strategy that keeps entries
   * should keep this field as it came.
   */
  carbons?: boolean;
}

export type SessionEvent =
  | { type: 'bound'; entry: ResourceEntry }
  /** Availability, priority or carbons changed. */
  | { type: 'presence'; entry: ResourceEntry }
  | { type: 'unbound'; entry: ResourceEntry };

export interface StrategyContext {
  /** This node's name (its cluster_nodes hostname). */
  readonly localNode: string;
  /** Peers with a link that is up now, sorted. */
  connectedNodes(): string[];
}

export interface ClusteringStrategy {
  readonly name: string;
  /**
   * Whether this strategy knows where remote users are. When false, "no node listed" does not
   * mean "online nowhere" and stanzas go to every node listed by nodesForUser (all of them).
   */
  readonly knowsRemoteSessions: boolean;
  /** Peers (not this node) that may hold sessions of the bare JID: a stanza for the user goes there. */
  nodesForUser(bare: string): string[];
  /** Peers (not this node) that may hold exactly this full JID. */
  nodesForResource(full: string): string[];
  /** Remote resources of a bare JID, when knowsRemoteSessions; [] otherwise. */
  remoteResources(bare: string): ResourceEntry[];
  /** A session event of this node (entry.node === localNode) or of a peer. */
  sessionEvent(event: SessionEvent): void;
  /** A peer's link came up. */
  nodeJoined(node: string): void;
  /** A peer left or was cut off: everything learned from it is void. */
  nodeLeft(node: string): void;
  /** Entries a peer that has just joined needs (the caching strategy: our local sessions). */
  snapshot(): ResourceEntry[];
  /** Figures for /status and /metrics, e.g. { cachedUsers: 12, cachedResources: 20 }. */
  stats(): Record<string, number>;
}

/** What a custom strategy module exports by default. */
export type StrategyFactory = new (ctx: StrategyContext) => ClusteringStrategy;

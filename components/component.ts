import type { Element } from 'ltx';
import type { Config } from '../server/config/types';
import type { JID } from '../server/jid';
import type { Logger } from '../server/log';
import type { Router } from '../server/router';
import type { ArchiveBacklog } from '../server/sm/archive';
import type { Storage } from '../server/storage/types';
import type { HttpHandler } from '../server/http/http-listener';
import type { Chore } from '../server/chores';

/**
 * A component (MUC, PubSub) serves a subdomain of every virtual host (`<name>.<vhost>`): the
 * router gives it every stanza addressed there. It answers disco itself, keeps its state through
 * the storage layer, sends through the router, and, in a cluster, learns of node events and
 * places its rooms or nodes on an owner node through ComponentCluster.
 */
export interface Component {
  /**
   * A stanza for one of the component's domains (or a JID at one). `from` is trusted (stamped by
   * the router or by the node that forwarded it). `forwardedBy` names the cluster node that
   * forwarded it here because this node owns the target: do not forward it again. `home` is the
   * node the stanza came into the cluster on when that is not `forwardedBy` (it was passed on
   * twice, e.g. by a node that had just handed the item over).
   */
  handle(stanza: Element, from: JID, to: JID, forwardedBy?: string, home?: string): Promise<void>;
  start?(): Promise<void>;
  stop?(): Promise<void>;
  /** Requests on the node's web ports (BOSH, WebSocket, HTTP) that are the component's (e.g. file uploads). */
  readonly http?: HttpHandler;
}

export interface ComponentContext {
  /** The --comp-name-N label, e.g. 'muc'. */
  readonly name: string;
  /** The domains served: `${name}.${vhost}` for every virtual host. */
  readonly domains: readonly string[];
  readonly config: Config;
  /** The component's own key `--<name>-<key>` (e.g. --muc-history-size), as given. */
  option(key: string): string | undefined;
  readonly logger: Logger;
  readonly storage: Storage;
  /** The node's archive rows owed to the database: an archive a component keeps counts in it (MessageArchive). */
  readonly archiveBacklog: ArchiveBacklog;
  /** Send with router.route(stanza, from, to); users on any node are reached. */
  readonly router: Router;
  /** Present when the node runs in a cluster. */
  readonly cluster?: ComponentCluster;
  /** Cluster-wide chores (one node runs each at a time), e.g. expiring old files. */
  readonly chores?: { add(chore: Chore): void };
}

/** What a clustered component may use: owners for its items, forwarding, and node events. */
export interface ComponentCluster {
  readonly localNode: string;
  /** The node that serves `item` (a room or pubsub node JID); claimed in the database, sticky while it lives. */
  ownerOf(item: string): Promise<string>;
  /** Forgets this node's claim on `item` (e.g. a destroyed temporary room). */
  release(item: string): Promise<void>;
  /** Claims `item` for this node whoever held it, and tells the peers (what is served where its connection is). */
  claim(item: string): Promise<void>;
  /** The live node that claimed `item`, if any (nothing is placed). */
  claimedBy(item: string): Promise<string | undefined>;
  /** The live peer that takes `item` when this node stops; undefined when there is none. */
  successorOf(item: string): string | undefined;
  /**
   * Moves this node's claim on `item` to `to` (which holds its state now) and tells every peer;
   * resolves once they have answered, by when all they sent here for it has arrived. False when
   * the claim was not ours.
   */
  handOver(item: string, to: string): Promise<boolean>;
  /**
   * This node has taken `item` over from its stopping owner (which moves the claim in the database
   * and tells the peers): from now on stanzas for it are served here, also those that reach this
   * node before it has heard of the move itself.
   */
  tookOver(item: string): void;
  /** Called when a peer handed one of this component's items over to another node. */
  onMoved(listener: (item: string, from: string, to: string) => void): void;
  /**
   * Hands a stanza to the same component on `node`; false when the link is down or full. `home`:
   * the node it came into the cluster on, when this node got it forwarded itself. Should the link
   * go down before `node` took it, the component here handles it again (its handle(), with `home`),
   * so it reaches the item's next owner or is answered with an error.
   */
  forward(node: string, stanza: Element, from: JID, to: JID, home?: string): boolean;
  /** The component's own messages on the cluster links (op names are kept apart per component). */
  send(node: string, op: string, payload?: Element | Element[], attrs?: Record<string, string>): boolean;
  request(node: string, op: string, payload?: Element | Element[], attrs?: Record<string, string>, timeoutMs?: number): Promise<Element>;
  handle(op: string, handler: (from: string, message: Element) => Element | Element[] | null | void | Promise<Element | Element[] | null | void>): void;
  connectedNodes(): string[];
  onNodeUp(listener: (node: string) => void | Promise<void>): void;
  onNodeDown(listener: (node: string) => void | Promise<void>): void;
}

export type ComponentFactory = (ctx: ComponentContext) => Component;

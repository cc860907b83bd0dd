import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Logger } from '../log';
import { LINK } from './catalogue';
import type { Cluster } from './cluster';

/** How long a node handing an item over waits for each peer to say it switched [2000 ms]. */
const OWNER_ANSWER_TIMEOUT_MS = 2000;

/** Told on every node when an item moves to a new owner while both nodes live (a hand-over). */
export type MovedListener = (service: string, item: string, from: string, to: string) => void;

/**
 * Rendezvous (highest-random-weight) hashing: the node whose hash with the key is largest. Every
 * node computes the same answer from the same sorted node list, and a node joining or leaving
 * moves only the keys it wins or held.
 */
export function rendezvousOwner(key: string, nodes: readonly string[]): string {
  let best = '';
  let bestWeight = '';
  for (const node of nodes) {
    const weight = createHash('sha256').update(`${node}\0${key}`).digest('hex');
    if (weight > bestWeight) {
      best = node;
      bestWeight = weight;
    }
  }
  return best;
}

/**
 * Which node serves a component's room or pubsub node (DESIGN: an owner chosen by a stable hash
 * over the sorted live nodes). The choice is claimed in the database (component_owners), so it is
 * sticky: a node that joins later does not take rooms away from a live owner (rooms never split),
 * and every node reads the same answer. When an owner dies, the next node to need the item claims
 * it, by the same hash over the survivors, with a compare-and-set on the old owner.
 */
export class Ownership {
  private readonly cache = new Map<string, string>();
  private readonly movedListeners: MovedListener[] = [];
  /** Set when this node stops: it claims nothing and serves nothing it has handed over. */
  private leaving = false;

  constructor(
    private readonly knex: Knex,
    private readonly cluster: Cluster,
    private readonly logger: Logger,
  ) {
    cluster.onNodeDown((node) => {
      for (const [key, owner] of this.cache) if (owner === node) this.cache.delete(key);
    });
    cluster.handle(LINK.owner, (from, message) => {
      const { c: service, item, node } = message.attrs as Record<string, string | undefined>;
      if (service === undefined || item === undefined || node === undefined) return;
      // An empty node: the claim was given up.
      const key = `${service}\0${item}`;
      if (node && this.isAlive(node)) this.cache.set(key, node);
      else this.cache.delete(key);
      if (node) for (const listener of this.movedListeners) listener(service, item, from, node);
    });
  }

  /** Called on this node when another hands one of its items over. */
  onMoved(listener: MovedListener): void {
    this.movedListeners.push(listener);
  }

  /**
   * This node is stopping: from now on it claims nothing, and items whose claim it gives up are
   * placed on the other live nodes.
   */
  leave(): void {
    this.leaving = true;
    this.cache.clear();
  }

  /**
   * Hands `item` (claimed by this node) to `to`, a live peer that already holds its state: the
   * claim moves in the database (compare-and-set on this node) and every peer is told, so their
   * next stanza for it goes straight to `to`. Resolves once every peer has answered (or
   * OWNER_ANSWER_TIMEOUT_MS passed): a link keeps order, so whatever a peer sent here for the item
   * before it switched has arrived by then. False when the claim was not ours any more.
   */
  async handOver(service: string, item: string, to: string): Promise<boolean> {
    const moved = await this.knex('component_owners').where({ service, item, node: this.cluster.localNode }).update({ node: to, claimed_at: new Date() });
    if (moved === 0) return false;
    this.cache.set(`${service}\0${item}`, to);
    // An error answer (a 2.0 peer does not know the message) is an answer all the same.
    await Promise.all(this.cluster.connectedNodes().map((node) =>
      this.cluster.request(node, LINK.owner, undefined, { c: service, item, node: to }, OWNER_ANSWER_TIMEOUT_MS).catch(() => undefined)));
    return true;
  }

  /**
   * This node holds `item`'s state now, handed over by its owner, which moves the claim in the
   * database and tells every peer. Until that word arrives, this node's view still names the old
   * owner: a peer that heard first would have its stanzas sent back there, to a node that no
   * longer holds the item.
   */
  tookOver(service: string, item: string): void {
    if (!this.leaving) this.cache.set(`${service}\0${item}`, this.cluster.localNode);
  }

  /**
   * Claims `item` for this node whoever held it (an external component connected here: where its
   * connection is, is where it is served), and tells every peer.
   */
  async claim(service: string, item: string): Promise<void> {
    await this.knex('component_owners').insert({ service, item, node: this.cluster.localNode, claimed_at: new Date() }).onConflict(['service', 'item']).merge();
    this.cache.set(`${service}\0${item}`, this.cluster.localNode);
    for (const node of this.cluster.connectedNodes()) this.cluster.send(node, LINK.owner, undefined, { c: service, item, node: this.cluster.localNode });
  }

  /** The live node that claimed `item`, without placing it anywhere when nobody did. */
  async claimedBy(service: string, item: string): Promise<string | undefined> {
    const key = `${service}\0${item}`;
    const cached = this.cache.get(key);
    if (cached && this.isAlive(cached)) return cached;
    const row: { node: string } | undefined = await this.knex('component_owners').where({ service, item }).first('node');
    if (!row || !this.isAlive(row.node)) return undefined;
    this.cache.set(key, row.node);
    return row.node;
  }

  /** A stopping node gives up every claim it still holds: survivors claim them on first use. */
  async releaseAll(): Promise<number> {
    this.cache.clear();
    return this.knex('component_owners').where({ node: this.cluster.localNode }).delete();
  }

  /**
   * The peer that should take `item` when this node stops: by the same hash over the live peers
   * that are not draining themselves (all live peers if every one is).
   */
  successorOf(item: string): string | undefined {
    const peers = this.preferServing(this.cluster.connectedNodes());
    return peers.length > 0 ? rendezvousOwner(item, peers) : undefined;
  }

  /** The live node that serves `item` of `service`, claiming it when nobody (alive) does. */
  async ownerOf(service: string, item: string): Promise<string> {
    const key = `${service}\0${item}`;
    const cached = this.cache.get(key);
    if (cached && this.isAlive(cached)) return cached;
    // The last node stopping: nobody is left to take the item; serve it here until the end.
    if (this.aliveNodes().length === 0) return this.cluster.localNode;
    for (let attempt = 0; attempt < 3; attempt++) {
      const row: { node: string } | undefined = await this.knex('component_owners').where({ service, item }).first('node');
      if (row && this.isAlive(row.node)) {
        this.cache.set(key, row.node);
        return row.node;
      }
      const candidate = rendezvousOwner(item, this.aliveNodes());
      const claimedAt = new Date();
      if (row) {
        // Compare-and-set: only replace the dead owner we saw, not a claim made meanwhile.
        await this.knex('component_owners').where({ service, item, node: row.node }).update({ node: candidate, claimed_at: claimedAt });
        this.logger.info('component item moved to a new owner', { service, item, from: row.node, to: candidate });
      } else {
        await this.knex('component_owners').insert({ service, item, node: candidate, claimed_at: claimedAt }).onConflict(['service', 'item']).ignore();
      }
    }
    const row: { node: string } | undefined = await this.knex('component_owners').where({ service, item }).first('node');
    if (!row) throw new Error(`could not claim ${service} ${item}`);
    this.cache.set(key, row.node);
    return row.node;
  }

  /** Forgets a claim (a temporary room that is gone), so the item is placed afresh next time; peers are told. */
  async release(service: string, item: string): Promise<void> {
    this.cache.delete(`${service}\0${item}`);
    const released = await this.knex('component_owners').where({ service, item, node: this.cluster.localNode }).delete();
    if (released > 0) for (const node of this.cluster.connectedNodes()) this.cluster.send(node, LINK.owner, undefined, { c: service, item, node: '' });
  }

  /**
   * The nodes a new claim may go to: this node and the peers it has a link to (a node we cannot
   * reach cannot serve for us), without draining ones while any other is left.
   */
  private aliveNodes(): string[] {
    return this.preferServing([...(this.leaving ? [] : [this.cluster.localNode]), ...this.cluster.connectedNodes()]).sort();
  }

  /** `nodes` without the draining ones, unless that leaves none. */
  private preferServing(nodes: string[]): string[] {
    const serving = nodes.filter((node) => !this.cluster.isDraining(node));
    return serving.length > 0 ? serving : nodes;
  }

  private isAlive(node: string): boolean {
    return node === this.cluster.localNode ? !this.leaving : this.cluster.isConnected(node);
  }
}

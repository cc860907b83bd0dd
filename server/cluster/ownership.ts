import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Logger } from '../log';
import type { Cluster } from './cluster';

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

  constructor(
    private readonly knex: Knex,
    private readonly cluster: Cluster,
    private readonly logger: Logger,
  ) {
    cluster.onNodeDown((node) => {
      for (const [key, owner] of this.cache) if (owner === node) this.cache.delete(key);
    });
  }

  /** The live node that serves `item` of `service`, claiming it when nobody (alive) does. */
  async ownerOf(service: string, item: string): Promise<string> {
    const key = `${service}\0${item}`;
    const cached = this.cache.get(key);
    if (cached && this.isAlive(cached)) return cached;
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

  /** Forgets a claim (a temporary room that is gone), so the item is placed afresh next time. */
  async release(service: string, item: string): Promise<void> {
    this.cache.delete(`${service}\0${item}`);
    await this.knex('component_owners').where({ service, item, node: this.cluster.localNode }).delete();
  }

  /** This node and the peers it has a link to: a node we cannot reach cannot serve for us. */
  private aliveNodes(): string[] {
    return [this.cluster.localNode, ...this.cluster.connectedNodes()].sort();
  }

  private isAlive(node: string): boolean {
    return node === this.cluster.localNode || this.cluster.isConnected(node);
  }
}

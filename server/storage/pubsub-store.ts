import type { Knex } from 'knex';
import { dateFromColumn } from './column-values';
import { assertFits } from './limits';
import { isDuplicateKey } from './sql-errors';
import { inWriteTransaction } from './write-transaction';

/** Longest values the pubsub columns hold, in characters (migrations/004-pubsub.ts has the same numbers). */
export const PUBSUB_LIMITS = {
  /** A service JID (component domain or a user's bare JID) and subscriber JIDs. */
  jid: 384,
  /** A node id: with the service it makes one 3072-byte InnoDB key. */
  node: 384,
  itemId: 255,
} as const;

/** XEP-0060 §4.1 affiliations; 'none' is the absence of a row. */
export type Affiliation = 'owner' | 'publisher' | 'publish-only' | 'member' | 'none' | 'outcast';
/** XEP-0060 §4.2 subscription states we keep ('none' is the absence of a row). */
export type SubscriptionState = 'subscribed' | 'pending' | 'unconfigured';

export interface PubSubNodeRecord {
  /** Surrogate key used by items, subscriptions and affiliations. */
  id: number;
  service: string;
  node: string;
  /** The creator. */
  owner: string;
  /** The node configuration as stored (JSON object); the service interprets it. */
  config: Record<string, unknown>;
  createdAt: Date;
}

export interface PubSubItemRecord {
  itemId: string;
  publisher: string;
  /** The item's payload, serialised ('' for a notification-only item). */
  payload: string;
  publishedAt: Date;
}

export interface PubSubSubscriptionRecord {
  /** The node id (filled in by subscriptionsOf). */
  node?: string;
  jid: string;
  subid: string;
  state: SubscriptionState;
  options: Record<string, unknown>;
}

export interface PubSubAffiliationRecord {
  node?: string;
  jid: string;
  affiliation: Affiliation;
}

/** Storage of publish-subscribe nodes, items, subscriptions and affiliations (XEP-0060, XEP-0163). */
export interface PubSubStore {
  getNode(service: string, node: string): Promise<PubSubNodeRecord | undefined>;
  /** The nodes of one service, by node id. */
  listNodes(service: string): Promise<PubSubNodeRecord[]>;
  /** The nodes of several services at once (PEP: every contact's nodes). */
  nodesOfServices(services: string[]): Promise<PubSubNodeRecord[]>;
  /** Creates a node with its creator as owner; undefined when (service, node) exists already. */
  createNode(service: string, node: string, owner: string, config: Record<string, unknown>): Promise<PubSubNodeRecord | undefined>;
  setConfig(nodeId: number, config: Record<string, unknown>): Promise<void>;
  /** Deletes the node with its items, subscriptions and affiliations. */
  deleteNode(nodeId: number): Promise<void>;
  /**
   * Stores an item (replacing one with the same id, which becomes the newest) and keeps only the
   * newest `maxItems`. Returns the ids of items dropped to make room.
   */
  publish(nodeId: number, item: Omit<PubSubItemRecord, 'publishedAt'>, maxItems: number): Promise<string[]>;
  retract(nodeId: number, itemId: string): Promise<PubSubItemRecord | undefined>;
  purge(nodeId: number): Promise<void>;
  /** Keeps only the newest `maxItems` items. */
  trim(nodeId: number, maxItems: number): Promise<void>;
  /** Items oldest first: all, the newest `max`, or those with the given ids. */
  items(nodeId: number, query?: { max?: number; ids?: string[] }): Promise<PubSubItemRecord[]>;
  subscriptions(nodeId: number): Promise<PubSubSubscriptionRecord[]>;
  /** An account's subscriptions (bare or full JID) on every node of a service. */
  subscriptionsOf(service: string, bare: string): Promise<PubSubSubscriptionRecord[]>;
  /** Inserts or replaces the subscription (node, jid, subid). */
  saveSubscription(nodeId: number, bare: string, subscription: PubSubSubscriptionRecord): Promise<void>;
  /** Removes one subscription, or every subscription of `jid` when subid is undefined; returns how many. */
  removeSubscription(nodeId: number, jid: string, subid?: string): Promise<number>;
  /** Removes every subscription of an account (bare and full JIDs) to a node. */
  removeSubscriptionsOf(nodeId: number, bare: string): Promise<void>;
  affiliations(nodeId: number): Promise<PubSubAffiliationRecord[]>;
  affiliation(nodeId: number, jid: string): Promise<Affiliation>;
  affiliationsOf(service: string, jid: string): Promise<PubSubAffiliationRecord[]>;
  /** 'none' removes the row. */
  setAffiliation(nodeId: number, jid: string, affiliation: Affiliation): Promise<void>;
}

interface NodeRow {
  id: number | string;
  service: string;
  node: string;
  owner: string;
  config: string;
  created_at: unknown;
}

interface ItemRow {
  item_id: string;
  publisher: string;
  payload: string;
  published_at: unknown;
}

interface SubscriptionRow {
  node?: string;
  jid: string;
  subid: string;
  state: SubscriptionState;
  options: string;
}

export class KnexPubSubStore implements PubSubStore {
  constructor(private readonly knex: Knex) {}

  async getNode(service: string, node: string): Promise<PubSubNodeRecord | undefined> {
    const row: NodeRow | undefined = await this.knex('pubsub_nodes').where({ service, node }).first();
    return row && nodeFromRow(row);
  }

  async listNodes(service: string): Promise<PubSubNodeRecord[]> {
    const rows: NodeRow[] = await this.knex('pubsub_nodes').where({ service }).orderBy('node');
    return rows.map(nodeFromRow);
  }

  async nodesOfServices(services: string[]): Promise<PubSubNodeRecord[]> {
    if (services.length === 0) return [];
    const rows: NodeRow[] = await this.knex('pubsub_nodes').whereIn('service', services).orderBy(['service', 'node']);
    return rows.map(nodeFromRow);
  }

  async createNode(service: string, node: string, owner: string, config: Record<string, unknown>): Promise<PubSubNodeRecord | undefined> {
    assertFits('pubsub service', service, PUBSUB_LIMITS.jid);
    assertFits('pubsub node', node, PUBSUB_LIMITS.node);
    assertFits('node owner', owner, PUBSUB_LIMITS.jid);
    const createdAt = new Date();
    try {
      return await inWriteTransaction(this.knex, async (trx) => {
        // PostgreSQL returns the new id only when asked; MySQL and SQLite return it anyway.
        const insert = trx('pubsub_nodes').insert({ service, node, owner, config: JSON.stringify(config), created_at: createdAt });
        const [inserted] = await (trx.client.dialect === 'postgresql' ? insert.returning('id') : insert);
        const id = Number(typeof inserted === 'object' ? (inserted as { id: number }).id : inserted);
        await trx('pubsub_affiliations').insert({ node_id: id, jid: owner, affiliation: 'owner' });
        return { id, service, node, owner, config, createdAt };
      });
    } catch (err) {
      // Insert-and-catch: two nodes creating the same pubsub node at once see exactly one success.
      if (isDuplicateKey(err)) return undefined;
      throw err;
    }
  }

  async setConfig(nodeId: number, config: Record<string, unknown>): Promise<void> {
    await this.knex('pubsub_nodes').where({ id: nodeId }).update({ config: JSON.stringify(config) });
  }

  async deleteNode(nodeId: number): Promise<void> {
    await inWriteTransaction(this.knex, async (trx) => {
      for (const table of ['pubsub_items', 'pubsub_subscriptions', 'pubsub_affiliations']) await trx(table).where({ node_id: nodeId }).del();
      await trx('pubsub_nodes').where({ id: nodeId }).del();
    });
  }

  async publish(nodeId: number, item: Omit<PubSubItemRecord, 'publishedAt'>, maxItems: number): Promise<string[]> {
    assertFits('item id', item.itemId, PUBSUB_LIMITS.itemId);
    assertFits('publisher', item.publisher, PUBSUB_LIMITS.jid);
    return inWriteTransaction(this.knex, async (trx) => {
      await trx('pubsub_items').where({ node_id: nodeId, item_id: item.itemId }).del();
      await trx('pubsub_items').insert({ node_id: nodeId, item_id: item.itemId, publisher: item.publisher, payload: item.payload, published_at: new Date() });
      return trimIn(trx, nodeId, maxItems);
    });
  }

  async retract(nodeId: number, itemId: string): Promise<PubSubItemRecord | undefined> {
    return inWriteTransaction(this.knex, async (trx) => {
      const row: ItemRow | undefined = await trx('pubsub_items').where({ node_id: nodeId, item_id: itemId }).first();
      if (!row) return undefined;
      await trx('pubsub_items').where({ node_id: nodeId, item_id: itemId }).del();
      return itemFromRow(row);
    });
  }

  async purge(nodeId: number): Promise<void> {
    await this.knex('pubsub_items').where({ node_id: nodeId }).del();
  }

  async trim(nodeId: number, maxItems: number): Promise<void> {
    await inWriteTransaction(this.knex, (trx) => trimIn(trx, nodeId, maxItems));
  }

  async items(nodeId: number, query: { max?: number; ids?: string[] } = {}): Promise<PubSubItemRecord[]> {
    const select = this.knex('pubsub_items').where({ node_id: nodeId }).select('item_id', 'publisher', 'payload', 'published_at');
    if (query.ids) {
      if (query.ids.length === 0) return [];
      select.whereIn('item_id', query.ids);
    }
    if (query.max !== undefined) {
      const rows: ItemRow[] = await select.orderBy('seq', 'desc').limit(query.max);
      return rows.reverse().map(itemFromRow);
    }
    const rows: ItemRow[] = await select.orderBy('seq', 'asc');
    return rows.map(itemFromRow);
  }

  async subscriptions(nodeId: number): Promise<PubSubSubscriptionRecord[]> {
    const rows: SubscriptionRow[] = await this.knex('pubsub_subscriptions').where({ node_id: nodeId }).orderBy(['created_at', 'jid']);
    return rows.map(subscriptionFromRow);
  }

  async subscriptionsOf(service: string, bare: string): Promise<PubSubSubscriptionRecord[]> {
    const rows: SubscriptionRow[] = await this.knex('pubsub_subscriptions as s')
      .join('pubsub_nodes as n', 'n.id', 's.node_id')
      .where({ 'n.service': service, 's.bare': bare })
      .orderBy(['n.node', 's.jid'])
      .select('n.node', 's.jid', 's.subid', 's.state', 's.options');
    return rows.map(subscriptionFromRow);
  }

  async saveSubscription(nodeId: number, bare: string, sub: PubSubSubscriptionRecord): Promise<void> {
    assertFits('subscriber JID', sub.jid, PUBSUB_LIMITS.jid);
    const columns = { bare, state: sub.state, options: JSON.stringify(sub.options) };
    await this.knex('pubsub_subscriptions')
      .insert({ node_id: nodeId, jid: sub.jid, subid: sub.subid, ...columns, created_at: new Date() })
      .onConflict(['node_id', 'jid', 'subid'])
      .merge(Object.keys(columns));
  }

  async removeSubscription(nodeId: number, jid: string, subid?: string): Promise<number> {
    const query = this.knex('pubsub_subscriptions').where({ node_id: nodeId, jid });
    if (subid !== undefined) query.where({ subid });
    return query.del();
  }

  async removeSubscriptionsOf(nodeId: number, bare: string): Promise<void> {
    await this.knex('pubsub_subscriptions').where({ node_id: nodeId, bare }).del();
  }

  async affiliations(nodeId: number): Promise<PubSubAffiliationRecord[]> {
    const rows: PubSubAffiliationRecord[] = await this.knex('pubsub_affiliations').where({ node_id: nodeId }).orderBy('jid').select('jid', 'affiliation');
    return rows.map((r) => ({ jid: r.jid, affiliation: r.affiliation }));
  }

  async affiliation(nodeId: number, jid: string): Promise<Affiliation> {
    const row: { affiliation: Affiliation } | undefined = await this.knex('pubsub_affiliations').where({ node_id: nodeId, jid }).first('affiliation');
    return row?.affiliation ?? 'none';
  }

  async affiliationsOf(service: string, jid: string): Promise<PubSubAffiliationRecord[]> {
    const rows: PubSubAffiliationRecord[] = await this.knex('pubsub_affiliations as a')
      .join('pubsub_nodes as n', 'n.id', 'a.node_id')
      .where({ 'n.service': service, 'a.jid': jid })
      .orderBy('n.node')
      .select('n.node', 'a.jid', 'a.affiliation');
    return rows.map((r) => ({ node: r.node, jid: r.jid, affiliation: r.affiliation }));
  }

  async setAffiliation(nodeId: number, jid: string, affiliation: Affiliation): Promise<void> {
    if (affiliation === 'none') {
      await this.knex('pubsub_affiliations').where({ node_id: nodeId, jid }).del();
      return;
    }
    assertFits('affiliated JID', jid, PUBSUB_LIMITS.jid);
    await this.knex('pubsub_affiliations').insert({ node_id: nodeId, jid, affiliation }).onConflict(['node_id', 'jid']).merge(['affiliation']);
  }
}

/** Drops all but the newest `maxItems` items of a node; returns the dropped ids. */
async function trimIn(trx: Knex.Transaction, nodeId: number, maxItems: number): Promise<string[]> {
  // The newest item that no longer fits; it and everything older go.
  const cut: { seq: number | string } | undefined = await trx('pubsub_items').where({ node_id: nodeId }).orderBy('seq', 'desc').offset(maxItems).first('seq');
  if (!cut) return [];
  const dropped: { item_id: string }[] = await trx('pubsub_items').where({ node_id: nodeId }).where('seq', '<=', cut.seq).select('item_id');
  await trx('pubsub_items').where({ node_id: nodeId }).where('seq', '<=', cut.seq).del();
  return dropped.map((r) => r.item_id);
}

function nodeFromRow(row: NodeRow): PubSubNodeRecord {
  return { id: Number(row.id), service: row.service, node: row.node, owner: row.owner, config: JSON.parse(row.config), createdAt: dateFromColumn(row.created_at) };
}

function itemFromRow(row: ItemRow): PubSubItemRecord {
  return { itemId: row.item_id, publisher: row.publisher, payload: row.payload, publishedAt: dateFromColumn(row.published_at) };
}

function subscriptionFromRow(row: SubscriptionRow): PubSubSubscriptionRecord {
  const sub: PubSubSubscriptionRecord = { jid: row.jid, subid: row.subid, state: row.state, options: JSON.parse(row.options) };
  if (row.node !== undefined) sub.node = row.node;
  return sub;
}

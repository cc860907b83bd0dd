import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/*
 * Column widths in characters, written out because a migration must keep meaning what it meant when
 * it first ran (PUBSUB_LIMITS in ../pubsub-store.ts holds the same numbers). A node is keyed by
 * (service, node): 384 + 384 characters fill InnoDB's 3072-byte key in utf8mb4, as roster_items does.
 */
const JID = 384;
const NODE_ID = 384;
const ITEM_ID = 255;
const SUBID = 64;
/** A XEP-0115 ver string: base64 of a hash, 88 characters for SHA-512. */
const CAPS_VER = 128;

/**
 * XEP-0060 publish-subscribe and XEP-0163 PEP (a service is a pubsub component JID or a user's bare
 * JID), and the XEP-0115 entity capabilities cache that every node shares.
 */
export async function up(knex: Knex): Promise<void> {
  const create = await tableCreator(knex);

  await create('pubsub_nodes', (t) => {
    t.bigIncrements('id');
    t.string('service', JID).notNullable();
    t.string('node', NODE_ID).notNullable();
    // The creator; owners are in pubsub_affiliations.
    t.string('owner', JID).notNullable();
    // JSON of the node configuration (pubsub#node_config): read and written whole, never queried.
    t.text('config').notNullable();
    t.datetime('created_at', { precision: 3 }).notNullable();
    t.unique(['service', 'node'], { indexName: 'pubsub_nodes_service_node' });
  });

  await create('pubsub_items', (t) => {
    // Publication order: a republished item id gets a new row, so it becomes the newest.
    t.bigIncrements('seq');
    t.bigInteger('node_id').unsigned().notNullable();
    t.string('item_id', ITEM_ID).notNullable();
    t.string('publisher', JID).notNullable();
    t.text('payload', 'mediumtext').notNullable();
    t.datetime('published_at', { precision: 3 }).notNullable();
    t.unique(['node_id', 'item_id'], { indexName: 'pubsub_items_node_item' });
    t.index(['node_id', 'seq'], 'pubsub_items_node_seq');
  });

  await create('pubsub_subscriptions', (t) => {
    t.bigInteger('node_id').unsigned().notNullable();
    // Bare or full JID as subscribed; `bare` finds every subscription of an account.
    t.string('jid', JID).notNullable();
    t.string('bare', JID).notNullable();
    t.string('subid', SUBID).notNullable();
    t.string('state', 16).notNullable();
    // JSON of the subscription options (pubsub#subscribe_options).
    t.text('options').notNullable();
    t.datetime('created_at', { precision: 3 }).notNullable();
    t.primary(['node_id', 'jid', 'subid']);
    t.index(['bare'], 'pubsub_subscriptions_bare');
  });

  await create('pubsub_affiliations', (t) => {
    t.bigInteger('node_id').unsigned().notNullable();
    t.string('jid', JID).notNullable();
    t.string('affiliation', 16).notNullable();
    t.primary(['node_id', 'jid']);
    t.index(['jid'], 'pubsub_affiliations_jid');
  });

  // XEP-0115 §5.4: verified ver -> disco#info features; content-addressed, so it never goes stale.
  await create('caps', (t) => {
    t.string('ver', CAPS_VER).primary();
    t.string('hash', 16).notNullable();
    t.text('features', 'mediumtext').notNullable();
    t.datetime('created_at', { precision: 3 }).notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['caps', 'pubsub_affiliations', 'pubsub_subscriptions', 'pubsub_items', 'pubsub_nodes']) {
    await knex.schema.dropTableIfExists(table);
  }
}

import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/*
 * Key column widths in characters; see STORAGE_LIMITS in ../limits.ts for why 384. Written out here
 * because a migration must keep meaning what it meant when it first ran.
 */
const JID = 384;
const NAMESPACE = 384;
const AUTH_KEY = 384;
/** Base64 of a SCRAM salt or key: SHA-256 needs 44 characters; room for SHA-512 and longer salts. */
const SCRAM_VALUE = 255;

export async function up(knex: Knex): Promise<void> {
  /** On MySQL every table is InnoDB, utf8mb4 (emoji), with an exact collation for JIDs. */
  const create = await tableCreator(knex);

  await create('users', (t) => {
    t.string('jid', JID).primary();
    t.string('username', JID).notNullable();
    t.string('domain', JID).notNullable();
    for (const hash of ['sha1', 'sha256']) {
      t.string(`scram_${hash}_salt`, SCRAM_VALUE).notNullable();
      t.integer(`scram_${hash}_iterations`).notNullable();
      t.string(`scram_${hash}_stored_key`, SCRAM_VALUE).notNullable();
      t.string(`scram_${hash}_server_key`, SCRAM_VALUE).notNullable();
    }
    t.datetime('created_at', { precision: 3 }).notNullable();
    // listusers DOMAIN, sorted by JID.
    t.index(['domain', 'jid'], 'users_domain_jid');
  });

  await create('roster_items', (t) => {
    t.string('user', JID).notNullable();
    t.string('contact', JID).notNullable();
    t.text('name');
    t.enu('subscription', ['none', 'to', 'from', 'both']).notNullable().defaultTo('none');
    t.boolean('ask').notNullable().defaultTo(false);
    t.boolean('approved').notNullable().defaultTo(false);
    // JSON array of group names: always read and written with the item, never queried.
    t.text('groups').notNullable();
    t.primary(['user', 'contact']);
  });

  // One counter per user, bumped in the same transaction as every roster change (XEP-0237).
  await create('roster_versions', (t) => {
    t.string('user', JID).primary();
    t.bigInteger('version').notNullable();
  });

  await create('roster_pending_in', (t) => {
    t.string('user', JID).notNullable();
    t.string('contact', JID).notNullable();
    t.text('stanza', 'mediumtext').notNullable();
    t.datetime('received_at', { precision: 3 }).notNullable();
    t.primary(['user', 'contact']);
  });

  await create('offline_messages', (t) => {
    t.bigIncrements('id');
    t.string('user', JID).notNullable();
    t.text('stanza', 'mediumtext').notNullable();
    t.datetime('stored_at', { precision: 3 }).notNullable();
    t.index(['user', 'id'], 'offline_messages_user_id');
  });

  // One row per user with a queue, locked by OfflineStore.store so that concurrent stores for the
  // same user take turns and the queue limit holds exactly (see offline-store.ts).
  await create('offline_queue_locks', (t) => {
    t.string('user', JID).primary();
  });

  await create('private_xml', (t) => {
    t.string('user', JID).notNullable();
    t.string('namespace', NAMESPACE).notNullable();
    t.text('xml', 'mediumtext').notNullable();
    t.primary(['user', 'namespace']);
  });

  await create('vcards', (t) => {
    t.string('user', JID).primary();
    // vCards carry base64 avatars (XEP-0153): larger than TEXT's 64 KiB on MySQL.
    t.text('xml', 'mediumtext').notNullable();
  });

  await create('blocklist', (t) => {
    t.string('user', JID).notNullable();
    t.string('jid', JID).notNullable();
    t.primary(['user', 'jid']);
  });

  // One row per failed attempt: concurrent inserts from several nodes never lose a count, and the
  // window is a range scan on (auth_key, failed_at).
  await create('auth_failures', (t) => {
    t.bigIncrements('id');
    t.string('auth_key', AUTH_KEY).notNullable();
    t.datetime('failed_at', { precision: 3 }).notNullable();
    t.index(['auth_key', 'failed_at'], 'auth_failures_key_time');
  });

  // DESIGN.md "Clustering (contract)": column names are part of the admin-facing contract.
  await create('cluster_nodes', (t) => {
    t.string('hostname', 255).primary();
    t.string('secondary', 255).nullable();
    t.string('password', 255).notNullable();
    t.datetime('last_update', { precision: 3 }).notNullable();
    t.integer('port').notNullable();
    t.double('cpu_usage').notNullable().defaultTo(0);
    t.double('mem_usage').notNullable().defaultTo(0);
    t.string('address', 255).notNullable();
    t.string('version', 64).notNullable();
    t.datetime('started_at', { precision: 3 }).notNullable();
    t.integer('connections').notNullable().defaultTo(0);
    // Dead-row sweeps select by age.
    t.index(['last_update'], 'cluster_nodes_last_update');
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of [
    'cluster_nodes', 'auth_failures', 'blocklist', 'vcards', 'private_xml', 'offline_queue_locks',
    'offline_messages', 'roster_pending_in', 'roster_versions', 'roster_items', 'users',
  ]) {
    await knex.schema.dropTableIfExists(table);
  }
}

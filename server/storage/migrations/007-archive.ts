import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/**
 * XEP-0313 message archives: one row per message and archive owner (a conversation between two
 * users is a row in each one's archive), ordered by `id`, and each user's preferences.
 */
export async function up(knex: Knex): Promise<void> {
  const create = await tableCreator(knex);
  await create('archive_messages', (t) => {
    t.bigIncrements('id').primary();
    t.string('user', 384).notNullable();
    // The XEP-0359 stanza id, unique in its archive: what clients page by.
    t.string('stanza_id', 64).notNullable();
    // The other party: bare JID (indexed for 'with' queries) and resource.
    t.string('with_jid', 384).notNullable();
    t.string('with_resource', 1023);
    t.string('direction', 3).notNullable();
    t.datetime('created_at', { precision: 3 }).notNullable();
    t.text('stanza', 'mediumtext').notNullable();
    t.unique(['user', 'stanza_id']);
    // Secondary indexes hold the primary key after their columns (InnoDB, and SQLite's rowid): these
    // are (user, id) and (user, with_jid, id) orders, within InnoDB's 3072-byte key limit.
    t.index(['user']);
    t.index(['user', 'with_jid']);
    t.index(['user', 'created_at']);
    t.index(['created_at']);
  });
  await create('archive_prefs', (t) => {
    t.string('user', 384).notNullable().primary();
    t.string('default_mode', 8).notNullable();
    t.text('always_jids').notNullable();
    t.text('never_jids').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('archive_messages');
  await knex.schema.dropTableIfExists('archive_prefs');
}

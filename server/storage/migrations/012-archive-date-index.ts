import type { Knex } from 'knex';

/**
 * The archive stops keeping an index per user for dates: XEP-0313's start and end become id
 * bounds found on the (created_at) index instead (archive-store.ts). Every index keyed by user
 * costs the writer one page per user per batch; this one was a fifth to a third of SQLite's
 * writing time per row. Nodes of the previous version still answer date queries without it, on
 * the (user) index.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('archive_messages', (t) => {
    t.dropIndex(['user', 'created_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('archive_messages', (t) => {
    t.index(['user', 'created_at']);
  });
}

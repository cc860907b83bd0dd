import type { Knex } from 'knex';

/**
 * A node told to stop (SIGTERM, xmppctl drain) marks its cluster_nodes row draining: peers stop
 * placing rooms and pubsub nodes on it, and operators see it in xmppctl status and /status.
 * Nullable and additive, so nodes of the previous version keep writing their rows meanwhile.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('cluster_nodes', (t) => {
    t.datetime('draining_since', { precision: 3 }).nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('cluster_nodes', (t) => {
    t.dropColumn('draining_since');
  });
}

import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/** Cluster-wide chores (expiring archives, pruning tokens): one row per chore names the node that runs it, until when. */
export async function up(knex: Knex): Promise<void> {
  const create = await tableCreator(knex);
  await create('cluster_leases', (t) => {
    t.string('name', 64).notNullable().primary();
    t.string('holder', 255).notNullable();
    t.datetime('expires_at', { precision: 3 }).notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('cluster_leases');
}

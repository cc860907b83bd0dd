import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/** Which cluster node serves a component's room or pubsub node (see server/cluster/ownership.ts). */
export async function up(knex: Knex): Promise<void> {
  const create = await tableCreator(knex);
  await create('component_owners', (t) => {
    t.string('service', 255).notNullable();
    t.string('item', 384).notNullable();
    t.string('node', 255).notNullable();
    t.datetime('claimed_at', { precision: 3 }).notNullable();
    t.primary(['service', 'item']);
    t.index(['node'], 'component_owners_node');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('component_owners');
}

import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/** XEP-0357 push registrations: which app server (and node) to notify for an account. */
export async function up(knex: Knex): Promise<void> {
  const create = await tableCreator(knex);
  await create('push_registrations', (t) => {
    t.string('user', 384).notNullable();
    // 384 + 192 + 192 characters × 4 bytes = InnoDB's 3072-byte key limit (see limits.ts).
    t.string('service', 192).notNullable();
    t.string('node', 192).notNullable();
    t.text('options');
    t.datetime('created_at', { precision: 3 }).notNullable();
    t.primary(['user', 'service', 'node']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('push_registrations');
}

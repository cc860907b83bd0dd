import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/**
 * XEP-0484 FAST tokens, shared by every node so that a token issued by one node logs in on any.
 * Up to two rows per (user, client): the token in use ('current') and one issued but not yet used
 * ('next'). Only the SHA-256 of a token is kept (see fast-token-store.ts).
 */
export async function up(knex: Knex): Promise<void> {
  const create = await tableCreator(knex);
  await create('fast_tokens', (t) => {
    t.string('user', 384).notNullable();
    // SHA-256 (hex) of the client's XEP-0388 user-agent id.
    t.string('client', 64).notNullable();
    t.string('slot', 8).notNullable();
    t.string('mechanism', 32).notNullable();
    t.string('key_hash', 64).notNullable();
    t.datetime('issued_at', { precision: 3 }).notNullable();
    t.datetime('expires_at', { precision: 3 }).notNullable();
    t.primary(['user', 'client', 'slot']);
    t.index(['expires_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('fast_tokens');
}

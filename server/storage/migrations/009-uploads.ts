import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/**
 * XEP-0363 uploads, in the shared database so that any node serves any file: a slot per requested
 * upload (its id is the secret in the URL), and the file's bytes in chunks once it was PUT.
 */
/** A column for up to 1 MiB of bytes: MySQL's blob stops at 64 KiB; PostgreSQL calls it bytea. */
const BLOB_TYPE: Record<string, string> = { mysql: 'mediumblob', postgresql: 'bytea' };

export async function up(knex: Knex): Promise<void> {
  const create = await tableCreator(knex);
  await create('upload_slots', (t) => {
    t.string('id', 64).notNullable().primary();
    t.string('user', 384).notNullable();
    t.string('filename', 255).notNullable();
    t.bigInteger('size').notNullable();
    t.string('content_type', 255).notNullable();
    t.datetime('created_at', { precision: 3 }).notNullable();
    t.datetime('uploaded_at', { precision: 3 });
    t.index(['user']);
    t.index(['created_at']);
  });
  await create('upload_chunks', (t) => {
    t.string('slot_id', 64).notNullable();
    t.integer('seq').notNullable();
    // A 256 KiB chunk needs MySQL's MEDIUMBLOB (a BLOB holds 64 KiB).
    t.specificType('data', BLOB_TYPE[knex.client.dialect as string] ?? 'blob').notNullable();
    t.primary(['slot_id', 'seq']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('upload_chunks');
  await knex.schema.dropTableIfExists('upload_slots');
}

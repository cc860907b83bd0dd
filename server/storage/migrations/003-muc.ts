import type { Knex } from 'knex';
import { tableCreator } from './table-builder';

/** Key column width in characters (see STORAGE_LIMITS in ../limits.ts): two JIDs fit one InnoDB key. */
const JID = 384;
/** RFC 7622 §3.1: a resourcepart (a room nick) is at most 1023 octets. */
const NICK = 1023;

/**
 * Persistent multi-user chat rooms (components/muc): configuration as JSON, the subject, the
 * affiliation lists, and recent history (trimmed to the room's history length).
 */
export async function up(knex: Knex): Promise<void> {
  const create = await tableCreator(knex);
  await create('muc_rooms', (t) => {
    t.string('jid', JID).primary();
    t.string('domain', 255).notNullable();
    // Copied out of config for the public room listing (disco#items) without parsing every room.
    t.boolean('public').notNullable().defaultTo(true);
    t.text('name');
    t.text('config').notNullable();
    t.text('subject');
    t.string('subject_nick', NICK);
    t.datetime('subject_at', { precision: 3 });
    t.datetime('created_at', { precision: 3 }).notNullable();
    t.index(['domain', 'public'], 'muc_rooms_domain_public');
  });
  await create('muc_affiliations', (t) => {
    t.string('room', JID).notNullable();
    t.string('jid', JID).notNullable();
    t.enu('affiliation', ['owner', 'admin', 'member', 'outcast']).notNullable();
    t.string('nick', NICK);
    t.text('reason');
    t.primary(['room', 'jid']);
  });
  await create('muc_history', (t) => {
    t.increments('id').primary();
    t.string('room', JID).notNullable();
    t.string('nick', NICK).notNullable();
    t.string('sender', NICK).notNullable();
    t.text('stanza', 'mediumtext').notNullable();
    t.datetime('stamp', { precision: 3 }).notNullable();
    t.index(['room', 'id'], 'muc_history_room_id');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('muc_history');
  await knex.schema.dropTableIfExists('muc_affiliations');
  await knex.schema.dropTableIfExists('muc_rooms');
}

import type { Knex } from 'knex';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { BlockStore } from './types';

/** JIDs per multi-row statement: well under SQLite's bound-parameter limit. */
const CHUNK = 250;

export class KnexBlockStore implements BlockStore {
  constructor(private readonly knex: Knex) {}

  async list(user: string): Promise<string[]> {
    const rows: { jid: string }[] = await this.knex('blocklist').where({ user }).orderBy('jid').select('jid');
    return rows.map((r) => r.jid);
  }

  async add(user: string, jids: string[]): Promise<void> {
    assertFits('user JID', user, STORAGE_LIMITS.jid);
    const unique = [...new Set(jids)];
    for (const jid of unique) assertFits('blocked JID', jid, STORAGE_LIMITS.jid);
    for (let i = 0; i < unique.length; i += CHUNK) {
      // An upsert rather than INSERT IGNORE: MySQL's IGNORE would also swallow errors other than
      // the duplicate we mean to ignore.
      await this.knex('blocklist')
        .insert(unique.slice(i, i + CHUNK).map((jid) => ({ user, jid })))
        .onConflict(['user', 'jid'])
        .merge(['jid']);
    }
  }

  async remove(user: string, jids: string[]): Promise<void> {
    for (let i = 0; i < jids.length; i += CHUNK) {
      await this.knex('blocklist').where({ user }).whereIn('jid', jids.slice(i, i + CHUNK)).del();
    }
  }

  async clear(user: string): Promise<void> {
    await this.knex('blocklist').where({ user }).del();
  }
}

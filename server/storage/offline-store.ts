import type { Knex } from 'knex';
import { dateFromColumn } from './column-values';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { OfflineMessage, OfflineStore } from './types';
import { inWriteTransaction } from './write-transaction';

/** Ids per DELETE ... IN (...): well under SQLite's bound-parameter limit. */
const DELETE_CHUNK = 500;

export class KnexOfflineStore implements OfflineStore {
  constructor(private readonly knex: Knex) {}

  /**
   * The count and the insert run in one transaction that first writes the user's row in
   * offline_queue_locks. On MySQL that upsert holds the row's exclusive lock until commit, so
   * concurrent stores for one user (from any node) take turns; on SQLite the transaction holds the
   * database write lock from BEGIN IMMEDIATE. Either way the queue never exceeds `limit`.
   */
  async store(user: string, stanzaXml: string, limit: number): Promise<boolean> {
    if (limit <= 0) return false;
    assertFits('user JID', user, STORAGE_LIMITS.jid);
    return inWriteTransaction(this.knex, async (trx) => {
      await trx('offline_queue_locks').insert({ user }).onConflict('user').merge(['user']);
      const queued = await countWhere(trx('offline_messages').where({ user }));
      if (queued >= limit) return false;
      await trx('offline_messages').insert({ user, stanza: stanzaXml, stored_at: new Date() });
      return true;
    });
  }

  /**
   * store() for many messages in one transaction (a failover storm writes in batches, not one
   * connection per message). Users are locked in sorted order, so two nodes writing overlapping
   * batches cannot deadlock. Returns, per item, whether it was stored (false: that queue is full).
   */
  async storeMany(items: { user: string; stanzaXml: string }[], limit: number): Promise<boolean[]> {
    if (items.length === 0) return [];
    if (limit <= 0) return items.map(() => false);
    for (const item of items) assertFits('user JID', item.user, STORAGE_LIMITS.jid);
    const users = [...new Set(items.map((item) => item.user))].sort();
    return inWriteTransaction(this.knex, async (trx) => {
      await trx('offline_queue_locks').insert(users.map((user) => ({ user }))).onConflict('user').merge(['user']);
      const counts = new Map<string, number>();
      const rows: { user: string; n: number | string }[] = await trx('offline_messages').whereIn('user', users).groupBy('user').select('user').count({ n: '*' });
      for (const row of rows) counts.set(row.user, Number(row.n));
      const now = new Date();
      const accepted: boolean[] = [];
      const inserts: { user: string; stanza: string; stored_at: Date }[] = [];
      for (const item of items) {
        const queued = counts.get(item.user) ?? 0;
        const ok = queued < limit;
        accepted.push(ok);
        if (!ok) continue;
        counts.set(item.user, queued + 1);
        inserts.push({ user: item.user, stanza: item.stanzaXml, stored_at: now });
      }
      if (inserts.length > 0) await trx('offline_messages').insert(inserts);
      return accepted;
    });
  }

  /** Which of `users` have stored messages (one query per chunk). */
  async usersWithMessages(users: string[]): Promise<string[]> {
    const found: string[] = [];
    for (let i = 0; i < users.length; i += DELETE_CHUNK) {
      const rows: { user: string }[] = await this.knex('offline_messages').whereIn('user', users.slice(i, i + DELETE_CHUNK)).distinct('user');
      for (const row of rows) found.push(row.user);
    }
    return found;
  }

  count(user: string): Promise<number> {
    return countWhere(this.knex('offline_messages').where({ user }));
  }

  async fetch(user: string): Promise<OfflineMessage[]> {
    const rows: { id: number | string; stanza: string; stored_at: unknown }[] = await this.knex('offline_messages')
      .where({ user })
      .orderBy('id')
      .select('id', 'stanza', 'stored_at');
    return rows.map((r) => ({ id: Number(r.id), stanzaXml: r.stanza, storedAt: dateFromColumn(r.stored_at) }));
  }

  /**
   * Removes and returns the user's queue in one transaction under the same per-user lock as
   * store(): two nodes flushing at once for two resources get disjoint sets, never duplicates.
   */
  async take(user: string): Promise<OfflineMessage[]> {
    // Most queues are empty at login: a read answers that without a write transaction. A message
    // stored right after this read is not lost: its writer then tells the nodes where the user is
    // online, and they take it (MessageService.deliverStored).
    if (!(await this.knex('offline_messages').where({ user }).first('id'))) return [];
    return inWriteTransaction(this.knex, async (trx) => {
      await trx('offline_queue_locks').insert({ user }).onConflict('user').merge(['user']);
      const rows: { id: number | string; stanza: string; stored_at: unknown }[] = await trx('offline_messages')
        .where({ user })
        .orderBy('id')
        .select('id', 'stanza', 'stored_at');
      const ids = rows.map((r) => Number(r.id));
      for (let i = 0; i < ids.length; i += DELETE_CHUNK) {
        await trx('offline_messages').where({ user }).whereIn('id', ids.slice(i, i + DELETE_CHUNK)).del();
      }
      return rows.map((r) => ({ id: Number(r.id), stanzaXml: r.stanza, storedAt: dateFromColumn(r.stored_at) }));
    });
  }

  async remove(user: string, ids: number[]): Promise<void> {
    for (let i = 0; i < ids.length; i += DELETE_CHUNK) {
      await this.knex('offline_messages').where({ user }).whereIn('id', ids.slice(i, i + DELETE_CHUNK)).del();
    }
  }

  total(): Promise<number> {
    return countWhere(this.knex('offline_messages'));
  }
}

async function countWhere(query: Knex.QueryBuilder): Promise<number> {
  const row = (await query.count({ n: '*' }).first()) as { n: number | string } | undefined;
  return Number(row?.n ?? 0);
}

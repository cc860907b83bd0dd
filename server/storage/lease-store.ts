import type { Knex } from 'knex';
import { isDuplicateKey } from './sql-errors';
import type { LeaseStore } from './types';

/**
 * Leases in the shared database: a chore's row names the node that runs it until `expires_at`.
 * Taking and renewing are single conditional statements, so two nodes never both hold a lease.
 */
export class KnexLeaseStore implements LeaseStore {
  constructor(private readonly knex: Knex) {}

  async acquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const now = new Date();
    const until = new Date(now.getTime() + ttlMs);
    const renewed = await this.knex('cluster_leases')
      .where({ name })
      .andWhere((q) => q.where('holder', holder).orWhere('expires_at', '<', now))
      .update({ holder, expires_at: until });
    if (renewed > 0) return true;
    try {
      await this.knex('cluster_leases').insert({ name, holder, expires_at: until });
      return true;
    } catch (err) {
      if (isDuplicateKey(err)) return false; // held by another node (or it just took it)
      throw err;
    }
  }

  async release(name: string, holder: string): Promise<void> {
    await this.knex('cluster_leases').where({ name, holder }).del();
  }

  async holder(name: string): Promise<string | undefined> {
    const row = await this.knex('cluster_leases').where({ name }).andWhere('expires_at', '>=', new Date()).first('holder');
    return row?.holder;
  }
}

import type { Knex } from 'knex';
import { STORAGE_LIMITS, assertFits } from './limits';
import { isTransientConflict } from './sql-errors';
import type { AuthFailureStore } from './types';

/**
 * One row per failure. Every node inserts its own rows, so concurrent failures are never lost (no
 * read-modify-write of a shared counter), and a count is a range scan on (auth_key, failed_at).
 */
export class KnexAuthFailureStore implements AuthFailureStore {
  constructor(private readonly knex: Knex) {}

  /** Also prunes this key's failures older than `windowMs`, so the table stays small. */
  async record(key: string, windowMs: number): Promise<number> {
    assertFits('auth failure key', key, STORAGE_LIMITS.authKey);
    const now = Date.now();
    const since = new Date(now - windowMs);
    try {
      await this.knex('auth_failures').where('auth_key', key).andWhere('failed_at', '<=', since).del();
    } catch (err) {
      // Pruning is housekeeping: another node pruning the same key at the same moment is harmless.
      if (!isTransientConflict(err)) throw err;
    }
    await this.knex('auth_failures').insert({ auth_key: key, failed_at: new Date(now) });
    return this.countSince(key, since);
  }

  count(key: string, windowMs: number): Promise<number> {
    return this.countSince(key, new Date(Date.now() - windowMs));
  }

  async counts(keys: readonly string[], windowMs: number): Promise<number[]> {
    const rows = (await this.knex('auth_failures')
      .whereIn('auth_key', [...new Set(keys)])
      .andWhere('failed_at', '>', new Date(Date.now() - windowMs))
      .groupBy('auth_key')
      .select('auth_key', this.knex.raw('count(*) as n'))) as { auth_key: string; n: number | string }[];
    const byKey = new Map(rows.map((row) => [row.auth_key, Number(row.n)]));
    return keys.map((key) => byKey.get(key) ?? 0);
  }

  async reset(key: string): Promise<void> {
    await this.knex('auth_failures').where('auth_key', key).del();
  }

  private async countSince(key: string, since: Date): Promise<number> {
    const row = (await this.knex('auth_failures')
      .where('auth_key', key)
      .andWhere('failed_at', '>', since)
      .count({ n: '*' })
      .first()) as { n: number | string } | undefined;
    return Number(row?.n ?? 0);
  }
}

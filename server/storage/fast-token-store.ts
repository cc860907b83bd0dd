import type { Knex } from 'knex';
import { dateFromColumn } from './column-values';
import { STORAGE_LIMITS, assertFits } from './limits';
import type { FastToken, FastTokenStore } from './types';
import { inWriteTransaction } from './write-transaction';

interface Row {
  slot: string;
  mechanism: string;
  key_hash: string;
  issued_at: unknown;
  expires_at: unknown;
}

/**
 * XEP-0484 FAST tokens of every node. A client has at most a 'current' token and a 'next' one:
 * the next replaces the current only once the client has used it, so a token whose successor
 * never reached the client still works (XEP-0484 §3.3).
 */
export class KnexFastTokenStore implements FastTokenStore {
  constructor(private readonly knex: Knex) {}

  async issue(user: string, client: string, token: Omit<FastToken, 'slot'>): Promise<void> {
    assertFits('user JID', user, STORAGE_LIMITS.jid);
    await this.knex('fast_tokens')
      .insert({
        user, client, slot: 'next', mechanism: token.mechanism, key_hash: token.keyHash,
        issued_at: token.issuedAt, expires_at: token.expiresAt,
      })
      .onConflict(['user', 'client', 'slot'])
      .merge(['mechanism', 'key_hash', 'issued_at', 'expires_at']);
  }

  async find(user: string, client: string, now: Date): Promise<FastToken[]> {
    const rows: Row[] = await this.knex('fast_tokens')
      .where({ user, client })
      .andWhere('expires_at', '>', now)
      .select('slot', 'mechanism', 'key_hash', 'issued_at', 'expires_at');
    return rows
      .map((row) => ({
        slot: row.slot === 'next' ? 'next' as const : 'current' as const,
        mechanism: row.mechanism,
        keyHash: row.key_hash,
        issuedAt: dateFromColumn(row.issued_at),
        expiresAt: dateFromColumn(row.expires_at),
      }))
      .sort((a, b) => (a.slot === b.slot ? 0 : a.slot === 'next' ? -1 : 1));
  }

  async promote(user: string, client: string, keyHash: string): Promise<void> {
    await inWriteTransaction(this.knex, async (trx) => {
      // Only the token that was just used moves up; a 'next' issued meanwhile by another login stays.
      const used = await trx('fast_tokens').where({ user, client, slot: 'next', key_hash: keyHash }).first('slot');
      if (!used) return;
      await trx('fast_tokens').where({ user, client, slot: 'current' }).del();
      await trx('fast_tokens').where({ user, client, slot: 'next' }).update({ slot: 'current' });
    });
  }

  async revoke(user: string, client?: string, keyHash?: string): Promise<number> {
    const query = this.knex('fast_tokens').where({ user });
    if (client !== undefined) query.andWhere({ client });
    if (keyHash !== undefined) query.andWhere({ key_hash: keyHash });
    return query.del();
  }

  async pruneExpired(now: Date): Promise<number> {
    return this.knex('fast_tokens').where('expires_at', '<=', now).del();
  }
}

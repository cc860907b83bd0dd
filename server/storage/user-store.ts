import type { Knex } from 'knex';
import { dateFromColumn } from './column-values';
import { STORAGE_LIMITS, assertFits } from './limits';
import { isDuplicateKey } from './sql-errors';
import { UserExistsError, type ScramCredential, type ScramCredentials, type ScramHash, type UserRecord, type UserStore } from './types';
import { inWriteTransaction } from './write-transaction';

/** Column-name prefix of each SCRAM hash's credential. */
const HASH_COLUMNS: Record<ScramHash, string> = { 'SHA-1': 'scram_sha1', 'SHA-256': 'scram_sha256' };

/** Every table holding a user's data, with the column naming the user: users.delete empties them. */
const USER_DATA: readonly [table: string, column: string][] = [
  ['roster_items', 'user'],
  ['roster_versions', 'user'],
  ['roster_pending_in', 'user'],
  ['offline_messages', 'user'],
  ['offline_queue_locks', 'user'],
  ['private_xml', 'user'],
  ['vcards', 'user'],
  ['blocklist', 'user'],
  ['auth_failures', 'auth_key'],
  ['pubsub_subscriptions', 'bare'],
  ['pubsub_affiliations', 'jid'],
  ['push_registrations', 'user'],
  ['fast_tokens', 'user'],
  ['archive_messages', 'user'],
  ['archive_prefs', 'user'],
];

interface UserRow {
  jid: string;
  created_at: unknown;
  [column: string]: unknown;
}

export class KnexUserStore implements UserStore {
  constructor(private readonly knex: Knex) {}

  async create(jid: string, credentials: ScramCredentials | Partial<ScramCredentials>): Promise<void> {
    assertFits('JID', jid, STORAGE_LIMITS.jid);
    const { username, domain } = splitBareJid(jid);
    if (!credentials['SHA-1'] && !credentials['SHA-256']) throw new Error('an account needs a SCRAM credential');
    try {
      await this.knex('users').insert({ jid, username, domain, ...credentialColumns(credentials, true), created_at: new Date() });
    } catch (err) {
      // Insert-and-catch rather than check-then-insert: two nodes registering the same JID at once
      // must see exactly one success.
      if (isDuplicateKey(err)) throw new UserExistsError(jid);
      throw err;
    }
  }

  async get(jid: string): Promise<UserRecord | undefined> {
    const row: UserRow | undefined = await this.knex('users').where({ jid }).first();
    if (!row) return undefined;
    const credentials = {} as ScramCredentials;
    for (const [hash, prefix] of Object.entries(HASH_COLUMNS) as [ScramHash, string][]) {
      // An account imported with one hash's credential only (XEP-0227 from a server that kept
      // SCRAM-SHA-1 alone) cannot use the other mechanism until its password is set again.
      if (row[`${prefix}_salt`] === '') continue;
      credentials[hash] = {
        salt: String(row[`${prefix}_salt`]),
        iterations: Number(row[`${prefix}_iterations`]),
        storedKey: String(row[`${prefix}_stored_key`]),
        serverKey: String(row[`${prefix}_server_key`]),
      };
    }
    const record: UserRecord = { jid: row.jid, credentials, createdAt: dateFromColumn(row.created_at) };
    if (row.disabled_at !== null && row.disabled_at !== undefined) record.disabledAt = dateFromColumn(row.disabled_at);
    return record;
  }

  /** A new password also revokes the account's FAST tokens (XEP-0484): a device that had one must prove it knows the new password. */
  async setCredentials(jid: string, credentials: ScramCredentials): Promise<boolean> {
    return inWriteTransaction(this.knex, async (trx) => {
      const changed = await trx('users').where({ jid }).update(credentialColumns(credentials));
      await trx('fast_tokens').where({ user: jid }).del();
      return changed > 0;
    });
  }

  async delete(jid: string): Promise<boolean> {
    return inWriteTransaction(this.knex, async (trx) => {
      for (const [table, column] of USER_DATA) await trx(table).where(column, jid).del();
      // PEP (XEP-0163): the account's own pubsub service, its nodes and everything in them.
      for (const table of ['pubsub_items', 'pubsub_subscriptions', 'pubsub_affiliations']) {
        await trx(table).whereIn('node_id', trx('pubsub_nodes').select('id').where('service', jid)).del();
      }
      await trx('pubsub_nodes').where('service', jid).del();
      return (await trx('users').where({ jid }).del()) > 0;
    });
  }

  async list(domain?: string, limit?: number): Promise<string[]> {
    const query = this.knex('users').select('jid').orderBy('jid');
    if (domain !== undefined) query.where({ domain });
    if (limit !== undefined) query.limit(limit);
    const rows: { jid: string }[] = await query;
    return rows.map((r) => r.jid);
  }

  async count(domain: string): Promise<{ registered: number; disabled: number }> {
    const row = (await this.knex('users').where({ domain })
      .first(this.knex.raw('COUNT(*) AS registered'), this.knex.raw('COUNT(disabled_at) AS disabled'))) as { registered: number | string; disabled: number | string };
    return { registered: Number(row.registered), disabled: Number(row.disabled) };
  }

  async setDisabled(jids: string[], disabled: boolean): Promise<string[]> {
    if (jids.length === 0) return [];
    return inWriteTransaction(this.knex, async (trx) => {
      const existing: string[] = (await trx('users').whereIn('jid', jids).select('jid')).map((r: { jid: string }) => r.jid);
      const query = trx('users').whereIn('jid', existing);
      // Disabling again keeps the first date; re-enabling clears it.
      if (disabled) await query.whereNull('disabled_at').update({ disabled_at: new Date() });
      else await query.update({ disabled_at: null });
      return existing;
    });
  }
}

/** The credential columns; a hash without a credential (`allowMissing`) is stored empty, which get() leaves out. */
function credentialColumns(credentials: Partial<ScramCredentials>, allowMissing = false): Record<string, string | number> {
  const columns: Record<string, string | number> = {};
  for (const [hash, prefix] of Object.entries(HASH_COLUMNS) as [ScramHash, string][]) {
    const c: ScramCredential | undefined = credentials[hash];
    if (!c && allowMissing) {
      Object.assign(columns, { [`${prefix}_salt`]: '', [`${prefix}_iterations`]: 0, [`${prefix}_stored_key`]: '', [`${prefix}_server_key`]: '' });
      continue;
    }
    if (!c) throw new Error(`missing ${hash} SCRAM credential`);
    columns[`${prefix}_salt`] = c.salt;
    columns[`${prefix}_iterations`] = c.iterations;
    columns[`${prefix}_stored_key`] = c.storedKey;
    columns[`${prefix}_server_key`] = c.serverKey;
  }
  return columns;
}

/** Accounts are bare JIDs with a localpart: "user@domain", no resource. */
function splitBareJid(jid: string): { username: string; domain: string } {
  const at = jid.indexOf('@');
  if (at <= 0 || at === jid.length - 1 || jid.includes('/')) {
    throw new Error(`"${jid}" is not a bare JID of the form user@domain`);
  }
  return { username: jid.slice(0, at), domain: jid.slice(at + 1) };
}
